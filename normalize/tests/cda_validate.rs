//! End-to-end check of the CDA writers against the ANS rules: builds a corpus of synthetic
//! records covering the variants the feeds produce, writes each CDA into a temporary
//! folder and runs `../shared/tools/cisis-validate --json` on it (XSD + CI-SIS generic and
//! volet schematrons). Every document must pass with zero errors.
//!
//! The validator is part of the project's shared material: when it is missing the test
//! fails (a skipped check would let an invalid writer through CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use dmpflow_normalize::cda;
use dmpflow_normalize::model::*;
use dmpflow_schemas::{Lifecycle, PatientIdentity};

const LOINC: &str = "2.16.840.1.113883.6.1";
const CIP: &str = "1.2.250.1.213.2.3.2";
const UCD: &str = "1.2.250.1.213.2.61";

/// A synthetic test INS: 13-digit body + key 97 − (body mod 97), test OID.
fn ins(body: &str) -> String {
    let n: u64 = body.parse().unwrap();
    format!("{body}{:02}", 97 - n % 97)
}

fn coded(code: &str, display: &str, system: &str) -> Coded {
    Coded {
        code: code.into(),
        display: display.into(),
        system: system.into(),
    }
}

fn loinc(code: &str, display: &str) -> Coded {
    coded(code, display, LOINC)
}

fn pro(id: &str, family: &str, given: &str, specialty: &str) -> Professional {
    Professional {
        id: id.into(),
        family: family.into(),
        given: given.into(),
        specialty: specialty.into(),
    }
}

fn patient() -> PatientIdentity {
    PatientIdentity {
        ins: ins("2850775056123"),
        ins_oid: "1.2.250.1.213.1.4.10".into(),
        ipp: Some("IPP-0042".into()),
        ipp_authority: Some("1.2.250.1.999.42.1".into()),
        birth_name: "DUPONT-ŒUVRE".into(),
        first_names: vec!["Zoé".into(), "Marie-Hélène".into()],
        birth_date: "1985-07-14".into(),
        sex: "F".into(),
        birth_place: Some("75056".into()),
        identity_status: vec!["VALI".into()],
        other_ins: Vec::new(),
    }
}

fn header(n: u32, sector: &str, author: Professional, org: (&str, &str)) -> DocumentHeader {
    DocumentHeader {
        unique_id: format!("1.2.250.1.999.7.1.{n}"),
        set_id: format!("1.2.250.1.999.7.2.{n}"),
        version: 1,
        lifecycle: Lifecycle::Initial,
        replaces: None,
        effective_time: "20240104160500+0100".into(),
        patient: patient(),
        author: author.clone(),
        organisation: Organisation {
            id: org.0.into(),
            name: org.1.into(),
        },
        legal_authenticator: author,
        facility_sector: sector.into(),
        practice_setting: "AMBULATOIRE".into(),
        service_start: None,
        service_stop: None,
        confidentiality: "N".into(),
    }
}

fn biologist() -> Professional {
    pro("801234567891", "BIOLO", "Marc", "G15_10/SM03")
}

fn lab_header(n: u32) -> DocumentHeader {
    header(
        n,
        "SA25",
        biologist(),
        ("1120459876", "Laboratoire Saint-Éloi & Associés <LBM>"),
    )
}

fn obs(code: Coded, value: ResultValue, status: &str) -> LabObservation {
    LabObservation {
        code,
        value,
        range: ReferenceRange::default(),
        interpretation: None,
        status: status.into(),
        time: None,
        comments: vec![],
    }
}

fn nm(value: &str, unit: &str) -> ResultValue {
    ResultValue::Quantity {
        value: value.into(),
        unit: unit.into(),
    }
}

fn range(low: &str, high: &str) -> ReferenceRange {
    ReferenceRange {
        low: Some(low.into()),
        high: Some(high.into()),
        text: None,
    }
}

fn battery(
    code: Coded,
    chapter: Coded,
    status: &str,
    observations: Vec<LabObservation>,
) -> LabBattery {
    LabBattery {
        code,
        chapter,
        specimen_time: Some("20240104073500+0100".into()),
        status: status.into(),
        observations,
        comments: vec![],
    }
}

fn biochimie() -> Coded {
    loinc("18719-5", "Biochimie")
}

/// One battery, two NM results with ranges and interpretations (the TSH example).
fn lab_tsh() -> LabReport {
    let mut tsh = obs(
        loinc(
            "3016-3",
            "Thyréostimuline [Unités arbitraires/Volume] Sérum/Plasma ; Numérique",
        ),
        nm("1.950", "m[IU]/L"),
        "F",
    );
    tsh.range = range("0.270", "4.200");
    tsh.interpretation = Some("N".into());
    let mut ft4 = obs(
        loinc(
            "3024-7",
            "Thyroxine libre [Masse/Volume] Sérum/Plasma ; Numérique",
        ),
        nm("7.67", "pg/mL"),
        "F",
    );
    ft4.range = range("9.30", "17.00");
    ft4.interpretation = Some("L".into());
    LabReport {
        header: lab_header(1),
        order_id: "2024010400042".into(),
        prescriber: Some(pro("810002422979", "CHARLES", "Pascal", "G15_10/SM26")),
        batteries: vec![battery(
            loinc("24348-5", "Bilan thyroïdien"),
            biochimie(),
            "F",
            vec![tsh, ft4],
        )],
    }
}

/// Several batteries in three chapters; P/F/C statuses; NM, SN, ST, CE, TX values;
/// unitless values; local codes; NTE comments with characters that need escaping.
fn lab_multi() -> LabReport {
    let mut gly = obs(
        loinc("14749-6", "Glucose [Moles/Volume] Sérum/Plasma ; Numérique"),
        nm("5,4", "mmol/L"),
        "C",
    );
    gly.range = range("4.1", "5.9");
    gly.interpretation = Some("N".into());
    gly.comments = vec!["Résultat corrigé : erreur de saisie <5.4> & contrôle".into()];
    let mut crp = obs(
        loinc(
            "1988-5",
            "Protéine C réactive [Masse/Volume] Sérum/Plasma ; Numérique",
        ),
        ResultValue::Structured {
            comparator: "<".into(),
            value: "0.5".into(),
            unit: "mg/L".into(),
        },
        "F",
    );
    crp.range = ReferenceRange {
        low: None,
        high: Some("5".into()),
        text: None,
    };
    let inr = obs(
        loinc("6301-6", "INR Plasma pauvre en plaquettes ; Numérique"),
        nm("1.1", ""),
        "P",
    );
    let mut hb = obs(
        loinc("718-7", "Hémoglobine [Masse/Volume] Sang ; Numérique"),
        nm("13.2", "g/dL"),
        "F",
    );
    hb.range = range("12", "16");
    hb.interpretation = Some("N".into());
    let mut leuco = obs(
        loinc("6690-2", "Leucocytes [Nombre/Volume] Sang ; Numérique"),
        ResultValue::Structured {
            comparator: ">=".into(),
            value: "12".into(),
            unit: "10*9/L".into(),
        },
        "F",
    );
    leuco.interpretation = Some("H".into());
    leuco.range = ReferenceRange {
        low: None,
        high: None,
        text: Some("4 à 10 (adulte)".into()),
    };
    let mut local = obs(
        coded(
            "ALB-L",
            "Albumine (méthode locale) & co",
            "1.2.250.1.999.42.7",
        ),
        nm("42", "g/L"),
        "F",
    );
    local.range = range("35", "50");
    let groupe = obs(
        loinc(
            "882-1",
            "Groupe sanguin ABO et Rhésus Sang ; Résultat nominal",
        ),
        ResultValue::Coded(coded("278149003", "Groupe A Rh+", "2.16.840.1.113883.6.96")),
        "F",
    );
    let mut hiv = obs(
        loinc(
            "56888-1",
            "VIH 1+2 Ac + VIH1 Ag p24 [Présence] Sérum ; Qualitatif",
        ),
        ResultValue::Text("Négatif".into()),
        "F",
    );
    hiv.interpretation = Some("NEG".into());
    hiv.comments = vec!["Test réalisé < 6 semaines après l'exposition : à contrôler".into()];
    let note = obs(
        loinc("8251-1", "Note de service"),
        ResultValue::Text(
            "Ligne 1 : sérum hémolysé\nLigne 2 : « à refaire » & prévenir le Dr Œillet".into(),
        ),
        "F",
    );
    let mut biochimie_b = battery(
        loinc("24323-8", "Bilan métabolique"),
        biochimie(),
        "C",
        vec![gly, crp, local],
    );
    biochimie_b.comments = vec!["Patient non à jeun & sous traitement".into()];
    let mut hemato = battery(
        loinc("58410-2", "Numération formule sanguine"),
        loinc("18723-7", "Hématologie"),
        "F",
        vec![hb, leuco],
    );
    hemato.specimen_time = Some("20240104080000+0100".into());
    let hemostase = battery(
        coded("HEMOS", "Hémostase (code local)", "1.2.250.1.999.42.8"),
        loinc("18723-7", "Hématologie"),
        "P",
        vec![inr],
    );
    let sero = battery(
        loinc("75622-1", "Sérologie VIH"),
        loinc("18727-8", "Sérologie"),
        "F",
        vec![groupe, hiv, note],
    );
    // An OBR sent before its results: no OBX yet.
    let mut pending = battery(
        loinc("2345-7", "Glucose [Masse/Volume] Sérum/Plasma"),
        biochimie(),
        "P",
        vec![],
    );
    pending.specimen_time = None;
    LabReport {
        header: lab_header(2),
        order_id: "CMD/2024&01<04>".into(),
        prescriber: Some(pro("810002422979", "L'HÔPITAL", "Jean-Noël", "G15_10/SM26")),
        batteries: vec![biochimie_b, hemato, hemostase, sero, pending],
    }
}

/// Microbiology-like: culture described in text, organism coded, unitless count.
fn lab_micro() -> LabReport {
    let aspect = obs(
        loinc("5767-9", "Aspect [Aspect] Urine ; Résultat nominal"),
        ResultValue::Text("Trouble".into()),
        "F",
    );
    let culture = obs(
        loinc("630-4", "Bactérie identifiée [Présence] Urine ; Culture"),
        ResultValue::Text(
            "Escherichia coli > 10^5 UFC/mL\nAntibiogramme : voir ci-dessous\nAmoxicilline : R ; Céfotaxime : S".into(),
        ),
        "F",
    );
    let germe = obs(
        loinc("11475-1", "Micro-organisme identifié ; Culture"),
        ResultValue::Coded(coded(
            "112283007",
            "Escherichia coli",
            "2.16.840.1.113883.6.96",
        )),
        "F",
    );
    let mut leuco = obs(
        loinc("5821-4", "Leucocytes [Nombre/Volume] Urine ; Numérique"),
        nm("150000", "/mL"),
        "F",
    );
    leuco.interpretation = Some("H".into());
    let mut b = battery(
        loinc("630-4", "Examen cytobactériologique des urines"),
        loinc("18725-2", "Microbiologie"),
        "F",
        vec![aspect, leuco, culture, germe],
    );
    b.comments = vec!["Prélèvement reçu à +4 °C ; délai > 2 h".into()];
    LabReport {
        header: lab_header(3),
        order_id: "ECBU-77".into(),
        prescriber: None,
        batteries: vec![b],
    }
}

/// A replacement (version 2, relatedDocument RPLC), minimal data: no prescriber, no order
/// number, no specialty, unknown sex, no birth place, no IPP.
fn lab_replacement() -> LabReport {
    let mut r = lab_tsh();
    r.header.unique_id = "1.2.250.1.999.7.1.4".into();
    r.header.version = 2;
    r.header.lifecycle = Lifecycle::Replace;
    r.header.replaces = Some("1.2.250.1.999.7.1.1".into());
    r.header.set_id = "1.2.250.1.999.7.2.1".into();
    r.header.patient.sex = "U".into();
    r.header.patient.birth_place = None;
    r.header.patient.ipp = None;
    r.header.patient.ipp_authority = None;
    r.header.author.specialty = String::new();
    r.header.service_start = Some("20240104073500+0100".into());
    r.header.service_stop = Some("20240104160000+0100".into());
    r.prescriber = None;
    r.order_id = String::new();
    r.batteries[0].observations[0].status = "C".into();
    r
}

fn pharmacist() -> Professional {
    pro("807505123456", "DELIVE", "Pierre", "G15_21")
}

fn dispensed(
    code: &str,
    system: &str,
    label: &str,
    quantity: &str,
    unit: Option<&str>,
) -> DispensedItem {
    DispensedItem {
        code: code.into(),
        code_system: system.into(),
        label: label.into(),
        quantity: quantity.into(),
        unit: unit.map(Into::into),
        dispensed_at: "20240105101500+0100".into(),
        prescription_id: None,
    }
}

fn pharmacy_header(n: u32) -> DocumentHeader {
    // The mapping may leave the author empty: the writer uses the pharmacist.
    let mut h = header(
        n,
        "SA33",
        Professional::default(),
        ("2750512345", "Pharmacie de l'Œillet & du Marché"),
    );
    h.legal_authenticator = pharmacist();
    h
}

/// One CIP item, no prescription.
fn pharmacy_one() -> Dispensation {
    Dispensation {
        header: pharmacy_header(10),
        prescription_id: None,
        prescriber: None,
        pharmacist: pharmacist(),
        items: vec![dispensed(
            "3400933516390",
            CIP,
            "PARACETAMOL 500 mg, comprimé <16> & co",
            "2",
            Some("boîte"),
        )],
    }
}

/// Three items (CIP and UCD), prescription number and prescriber, one item with its own
/// prescription number, one without unit; a replacement.
fn pharmacy_three() -> Dispensation {
    let mut h = pharmacy_header(11);
    h.version = 2;
    h.lifecycle = Lifecycle::Replace;
    h.replaces = Some("1.2.250.1.999.7.1.10".into());
    let mut second = dispensed(
        "3400892088310",
        UCD,
        "ŒSTRADIOL 0,06 % gel",
        "1,5",
        Some("tube de 80 g"),
    );
    second.prescription_id = Some("ORD-2024/778".into());
    second.dispensed_at = "20240105101700+0100".into();
    Dispensation {
        header: h,
        prescription_id: Some("ORD-2024/777<A&B>".into()),
        prescriber: Some(pro("810002422979", "L'HÔPITAL", "Jean-Noël", "G15_10/SM26")),
        pharmacist: pharmacist(),
        items: vec![
            dispensed(
                "3400930000007",
                CIP,
                "AMOXICILLINE 1 g, comprimé",
                "3",
                Some("boîte"),
            ),
            second,
            dispensed(
                "3400893875780",
                UCD,
                "Héparine sodique 5000 UI/mL",
                "10",
                None,
            ),
        ],
    }
}

fn radiologist() -> Professional {
    pro("801234560801", "RADIO", "Léa", "G15_10/SM44")
}

fn imaging_header(n: u32) -> DocumentHeader {
    header(
        n,
        "SA08",
        radiologist(),
        ("1920008059", "Centre d'imagerie Œdipe & Sphinx <CIOS>"),
    )
}

/// LOINC exam, CT, Study Instance UID and accession number, findings and a conclusion.
fn imaging_full() -> ImagingReport {
    let mut h = imaging_header(20);
    h.service_start = Some("20240104102500+0100".into());
    h.service_stop = Some("20240104111700+0100".into());
    ImagingReport {
        header: h,
        order_id: "DEM-2024-0042".into(),
        study_instance_uid: Some("1.2.250.1.999.3.20240104.1876360".into()),
        accession_number: Some("105234751".into()),
        exam: loinc("24727-0", "CT tête avec contraste IV"),
        modality: Some("CT".into()),
        paragraphs: vec![
            "Indication : céphalées & vertiges depuis 3 jours (patient < 50 ans).".into(),
            "Technique : acquisition hélicoïdale avant et après injection.".into(),
            "Résultats :\nPas de lésion intra-parenchymateuse.\nPas d'effet de masse.".into(),
            "CONCLUSION :".into(),
            "Examen normal. Œdème absent.".into(),
        ],
        prescriber: Some(pro("810002422979", "L'HÔPITAL", "Jean-Noël", "G15_10/SM26")),
    }
}

/// No Study UID, no accession number, local exam code, modality outside the value set, no
/// conclusion heading; a replacement.
fn imaging_minimal() -> ImagingReport {
    let mut h = imaging_header(21);
    h.version = 3;
    h.lifecycle = Lifecycle::Replace;
    h.replaces = Some("1.2.250.1.999.7.1.20".into());
    ImagingReport {
        header: h,
        order_id: "DEM<77>&B".into(),
        study_instance_uid: None,
        accession_number: None,
        exam: coded(
            "ECHO-ABD",
            "Échographie abdominale (code local)",
            "1.2.250.1.999.42.9",
        ),
        modality: Some("ZZ".into()),
        paragraphs: vec!["Foie, vésicule & voies biliaires : aspect normal.".into()],
        prescriber: None,
    }
}

/// MR with an order number only, no report paragraph at all, no prescriber.
fn imaging_no_text() -> ImagingReport {
    ImagingReport {
        header: imaging_header(22),
        order_id: "DEM-9".into(),
        study_instance_uid: Some("1.2.250.1.999.3.20240104.99".into()),
        accession_number: None,
        exam: loinc("24590-2", "IRM cérébrale"),
        modality: Some("MR".into()),
        paragraphs: vec![],
        prescriber: None,
    }
}

fn corpus() -> Vec<(&'static str, String)> {
    vec![
        ("lab_tsh", cda::lab::write(&lab_tsh())),
        ("lab_multi", cda::lab::write(&lab_multi())),
        ("lab_micro", cda::lab::write(&lab_micro())),
        ("lab_replacement", cda::lab::write(&lab_replacement())),
        ("pharmacy_one", cda::pharmacy::write(&pharmacy_one())),
        ("pharmacy_three", cda::pharmacy::write(&pharmacy_three())),
        ("imaging_full", cda::imaging::write(&imaging_full())),
        ("imaging_minimal", cda::imaging::write(&imaging_minimal())),
        ("imaging_no_text", cda::imaging::write(&imaging_no_text())),
    ]
}

fn validator() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/cisis-validate")
}

#[test]
fn every_generated_cda_passes_cisis_validate() {
    let tool = validator();
    assert!(
        tool.exists(),
        "CI-SIS validator not found at {} (the shared material must sit next to the repository)",
        tool.display()
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cda_validate");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let docs = corpus();
    for (name, xml) in &docs {
        std::fs::write(dir.join(format!("{name}.xml")), xml).unwrap();
    }

    let out = Command::new(&tool)
        .arg("--json")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "validator output is not JSON ({e}); status {:?}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let results = report["documents"].as_array().expect("documents array");
    assert_eq!(
        results.len(),
        docs.len(),
        "validator saw {} documents",
        results.len()
    );

    let mut failures = Vec::new();
    for r in results {
        let errors = r["errors"].as_array().cloned().unwrap_or_default();
        if !errors.is_empty() {
            failures.push(format!(
                "{} ({}):\n  {}",
                r["file"].as_str().unwrap_or("?"),
                r["volet"].as_str().unwrap_or("no volet"),
                errors
                    .iter()
                    .map(|e| e.as_str().unwrap_or("?").to_string())
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "CI-SIS errors:\n{}",
        failures.join("\n")
    );
    assert!(
        out.status.success(),
        "validator exit status {:?}\n{stdout}",
        out.status
    );
}
