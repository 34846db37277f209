//! The synthetic messages of the normalize benchmarks, one generator per flow, shared by the
//! criterion bench (`benches/normalize.rs`), the CPU-time A/B binary
//! (`src/bin/normalize-flows.rs`) and the allocation count (`src/bin/normalize-allocs.rs`)
//! so all measure exactly the same bytes.
//!
//! `i` makes each copy distinct (MSH-10, order numbers, values), so a pool of copies gives
//! branch predictors and caches a realistic stream rather than one message over and over.

use base64::Engine;
use dmpflow_schemas::Feed;

/// Distinct copies per iteration.
pub const POOL: usize = 64;

/// A flow of the fixtures: its name, its feed and its message generator.
pub type Flow = (&'static str, Feed, fn(usize) -> String);

/// Every flow of the fixtures, in the order the benchmarks print them.
pub const FLOWS: [Flow; 4] = [
    ("lab", Feed::Lab, lab),
    ("imaging", Feed::Imaging, imaging),
    ("pharmacy", Feed::Pharmacy, pharmacy),
    ("cancer", Feed::Cancer, cancer),
];

/// Messages of a file: split at line breaks that precede `MSH|`; a leading non-`M` byte
/// (the feed byte of fuzz seeds) is dropped.
pub fn messages(data: &[u8]) -> Vec<Vec<u8>> {
    let data = match data.first() {
        Some(&b) if b != b'M' && data.get(1..4) == Some(b"MSH") => &data[1..],
        _ => data,
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' && data[i + 1..].starts_with(b"MSH|") {
            out.push(data[start..i].to_vec());
            start = i + 1;
        }
        i += 1;
    }
    if start < data.len() {
        let mut m = &data[start..];
        while m.last() == Some(&b'\n') {
            m = &m[..m.len() - 1];
        }
        out.push(m.to_vec());
    }
    out
}

/// The `POOL` copies of a flow's message, as bytes.
pub fn pool(make: fn(usize) -> String) -> Vec<Vec<u8>> {
    (0..POOL).map(|i| make(i).into_bytes()).collect()
}

// One synthetic, qualified test patient (INS on the test OID .10): the mapping checks the
// INS key and that the embedded CDA names the same patient.
const INS: &str = "111061305595246";
const OID: &str = "1.2.250.1.213.1.4.10";

/// One lab test: LOINC, label, unit, reference range.
type Test = (&'static str, &'static str, &'static str, &'static str);
/// One lab panel: its LOINC, its label and its tests.
type Panel = (&'static str, &'static str, &'static [Test]);

fn msh(app: &str, fac: &str, typ: &str, ctrl: &str, version: &str) -> String {
    format!(
        "MSH|^~\\&|{app}|{fac}|DMPFLOW|DMP-HOST|20241101101600||{typ}|{ctrl}|P|{version}|||||FRA|UNICODE UTF-8"
    )
}

fn pid() -> String {
    format!(
        "PID|1||{INS}^^^ASIP-SANTE-INS-NIR&{OID}&ISO^INS~IPP595246^^^DEMO-GAM&1.2.250.1.999.1.1&ISO^PI||MICHEL^PIERRE^PIERRE^^^^L||20110616|M|||^^^^^^BDL^^13055|||||||||||||||||||||VALI"
    )
}

fn join(segs: Vec<String>) -> String {
    let mut s = segs.join("\r");
    s.push('\r');
    s
}

/// A typical lab ORU^R01 of about 3 KB: four panels, 16 OBX, NTE comments with accents
/// and escapes.
pub fn lab(i: usize) -> String {
    let mut segs = vec![
        msh(
            "SIL-DEMO",
            "LABO-DEMO",
            "ORU^R01^ORU_R01",
            &format!("LAB{i:08}"),
            "2.5",
        ),
        pid(),
        "PV1|1|O".into(),
        format!(
            "ORC|NW|CMD{i:08}^SIL-DEMO|||||||20241101101600|||10003456789^DUPONT^CLAIRE^^^DR^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS"
        ),
    ];
    let panels: [Panel; 4] = [
        (
            "24362-6",
            "Ionogramme sanguin",
            &[
                ("2951-2", "Sodium", "mmol/L", "135-145"),
                ("2823-3", "Potassium", "mmol/L", "3.5-5.1"),
                ("2160-0", "Créatinine", "umol/L", "45-104"),
                ("2075-0", "Chlorures", "mmol/L", "98-107"),
            ],
        ),
        (
            "58410-2",
            "Numération formule sanguine",
            &[
                ("718-7", "Hémoglobine", "g/dL", "12.0-16.0"),
                ("6690-2", "Leucocytes", "10*9/L", "4.0-10.0"),
                ("777-3", "Plaquettes", "10*9/L", "150-400"),
                ("789-8", "Hématies", "10*12/L", "4.2-5.7"),
            ],
        ),
        (
            "24331-1",
            "Bilan lipidique",
            &[
                ("2093-3", "Cholestérol total", "g/L", "1.50-2.00"),
                ("2571-8", "Triglycérides", "g/L", "0.35-1.50"),
                ("2085-9", "Cholestérol HDL", "g/L", "0.40-0.90"),
                ("13457-7", "Cholestérol LDL calculé", "g/L", "0.50-1.60"),
            ],
        ),
        (
            "24325-3",
            "Bilan hépatique",
            &[
                ("1920-8", "ASAT", "U/L", "5-34"),
                ("1742-6", "ALAT", "U/L", "0-55"),
                ("2324-2", "Gamma-GT", "U/L", "12-64"),
                ("6768-6", "Phosphatases alcalines", "U/L", "40-150"),
            ],
        ),
    ];
    for (b, (code, label, tests)) in panels.iter().enumerate() {
        segs.push(format!(
            "OBR|{}|CMD{i:08}^SIL-DEMO||{code}^{label}^LN|||20241101101600|||||||||10003456789^DUPONT^CLAIRE||||||20241101101600|||F|||||||801234567866&BIOLO&ANNE",
            b + 1
        ));
        for (o, (loinc, name, unit, range)) in tests.iter().enumerate() {
            let value = format!("{}.{}", 1 + (i + o) % 9, (i * 7 + o) % 100);
            segs.push(format!(
                "OBX|{}|NM|{loinc}^{name}^LN||{value}|{unit}|{range}|N|||F|||20241101101600",
                o + 1
            ));
        }
        segs.push(format!(
            "NTE|1||Résultat contrôlé sur un 2e prélèvement \\T\\ validé par le biologiste (panel {}) ; à interpréter selon le contexte clinique",
            b + 1
        ));
    }
    join(segs)
}

/// An imaging ORU^R01: study UID and a five-line text report.
pub fn imaging(i: usize) -> String {
    join(vec![
        msh("RIS-DEMO", "IMAGERIE-DEMO", "ORU^R01^ORU_R01", &format!("IMG{i:08}"), "2.5"),
        pid(),
        "PV1|1|O".into(),
        format!("ORC|NW|RDV{i:08}^RIS-DEMO|||||||20241101083300"),
        format!("OBR|1|RDV{i:08}^RIS-DEMO|ACC{i:08}^RIS-DEMO|24627-2^CT Thorax^LN|||20241101083300|||||||||10003456790^MARTIN^PAUL||ACC{i:08}||||20241101083300||CT|F|||||||801234567888&RADIO&JEAN"),
        format!("OBX|1|ST|113014^DICOM Study^DCM||1.2.250.1.999.2.{i}.5982||||||F"),
        "OBX|2|TX|18748-4^CR d'imagerie médicale^LN||Indication : bilan de contrôle.||||||F".into(),
        "OBX|3|TX|18748-4^CR d'imagerie médicale^LN||Technique : acquisition CT sans injection.||||||F".into(),
        "OBX|4|TX|18748-4^CR d'imagerie médicale^LN||Résultats : pas d'anomalie décelable ; parenchyme d'aspect normal.||||||F".into(),
        "OBX|5|TX|18748-4^CR d'imagerie médicale^LN||Conclusion : examen normal.||||||F".into(),
    ])
}

/// A pharmacy RDS^O13 with three dispensed lines (valid CIP13 check digits).
pub fn pharmacy(i: usize) -> String {
    let drugs = [
        ("3400934844119", "AMOXICILLINE 1 g cpr"),
        ("3400930123454", "METFORMINE 850 mg cpr"),
        ("3400930000120", "DOLIPRANE 1000 mg cpr"),
    ];
    let mut segs = vec![
        msh(
            "LGO-DEMO",
            "PHARMACIE-DEMO",
            "RDS^O13^RDS_O13",
            &format!("DSP{i:08}"),
            "2.5",
        ),
        pid(),
        format!(
            "ORC|NW|ORD{i:08}^LGO-DEMO|||||||20241102072300|||10003456791^LEROY^MARC^^^DR^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS"
        ),
    ];
    for (n, (cip, label)) in drugs.iter().enumerate() {
        segs.push(format!(
            "RXD|{}|{cip}^{label}^CIP|20241102072300|{}|boîte||ORD{i:08}|||801234567877^PHARMA^LUC",
            n + 1,
            1 + (i + n) % 2
        ));
    }
    join(segs)
}

/// A cancer-care MDM^T02 carrying a finished FRCP CDA in base64 (OBX-5 ED).
pub fn cancer(i: usize) -> String {
    let cda = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<realmCode code="FR"/><typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>
<templateId root="2.16.840.1.113883.2.8.2.1"/><templateId root="1.2.250.1.213.1.1.1.1"/>
<templateId root="1.2.250.1.213.1.1.1.8" extension="2022.01"/>
<id root="1.2.250.1.999.3.{i}"/>
<code code="34794-8" codeSystem="2.16.840.1.113883.6.1" displayName="Compte rendu de réunion de concertation pluridisciplinaire"/>
<title>RRC-DEMO / RCP-DEMO / RCP digestive</title>
<effectiveTime value="20241101101600+0100"/>
<confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>
<languageCode code="fr-FR"/>
<setId root="1.2.250.1.999.4.{i}"/><versionNumber value="1"/>
<recordTarget><patientRole><id root="{OID}" extension="{INS}"/>
<patient><name><family qualifier="BR">MICHEL</family><given>PIERRE</given></name>
<administrativeGenderCode code="M" codeSystem="2.16.840.1.113883.5.1"/>
<birthTime value="20110616"/></patient></patientRole></recordTarget>
<author><time value="20241101101600+0100"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234567899"/>
<representedOrganization><id root="1.2.250.1.71.4.2.2" extension="1750000000"/></representedOrganization></assignedAuthor></author>
<custodian><assignedCustodian><representedCustodianOrganization><id root="1.2.250.1.71.4.2.2" extension="1750000000"/></representedCustodianOrganization></assignedCustodian></custodian>
<documentationOf><serviceEvent><effectiveTime><low value="20241101101600+0100"/><high value="20241101101600+0100"/></effectiveTime></serviceEvent></documentationOf>
<component><structuredBody><component><section><title>Proposition</title><text>Proposition thérapeutique de la RCP.</text></section></component></structuredBody></component>
</ClinicalDocument>
"#
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(cda.as_bytes());
    join(vec![
        msh("DCC-DEMO", "RRC-DEMO", "MDM^T02^MDM_T02", &format!("RCP{i:08}"), "2.6"),
        "EVN||20241101101600".into(),
        pid(),
        "PV1|1|O".into(),
        format!("TXA|1|34794-8|TEXT|20241101101600||||||||1.2.250.1.999.3.{i}||||||LA"),
        format!("OBX|1|ED|34794-8^CR de RCP^LN||^text^XML^Base64^{b64}||||||F"),
        "OBX|2|CWE|MASQUE_PS^Masqué aux professionnels de Santé^MetaDMPMSS||N^^HL70136||||||F".into(),
        "OBX|3|CWE|INVISIBLE_PATIENT^Document Non Visible par le patient^MetaDMPMSS||N^^HL70136||||||F".into(),
    ])
}
