//! The feed mappings on the synthetic fixtures of tests/fixtures/hl7 (lab with two
//! batteries, imaging, pharmacy with three RXD, ADT A28/A31/A40/A47), the charsets and
//! escapes in patient data, and one test per reject code the mappings emit.

use dmpflow_normalize::mapping::{check_drug_code, records};
use dmpflow_normalize::model::ResultValue;
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{
    CdaOrigin, Document, Entry, Feed, Lifecycle, Normalized, PatientChange, PatientUpdate,
};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

fn doc(feed: Feed, raw: &str) -> Document {
    let mut out =
        normalize(feed, raw.as_bytes(), &Config::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.len(), 1);
    match out.remove(0) {
        Normalized::Document(d) => *d,
        other => panic!("expected a document, got {other:?}"),
    }
}

fn patient_update(raw: &str) -> PatientUpdate {
    let mut out = normalize(Feed::Identity, raw.as_bytes(), &Config::default())
        .unwrap_or_else(|e| panic!("{e}"));
    match out.remove(0) {
        Normalized::Patient(p) => *p,
        other => panic!("expected a patient update, got {other:?}"),
    }
}

fn reason(feed: Feed, raw: &[u8]) -> Reason {
    normalize(feed, raw, &Config::default())
        .expect_err("must be refused")
        .reason
}

/// Every INS of the fixtures has a valid key (97 − body mod 97, 2A/2B → 19/18).
#[test]
fn fixture_ins_keys_are_valid() {
    for (name, ins) in [
        ("lab_oru_r01_two_batteries.hl7", "288059205012397"),
        ("imaging_oru_r01.hl7", "175063300011125"),
        ("pharmacy_rds_o13.hl7", "292022A00401217"),
        ("adt_a28.hl7", "201019999900109"),
    ] {
        assert!(fixture(name).contains(ins));
        let body: String = ins[..13].replace("2A", "19").replace("2B", "18");
        let key = 97 - body.parse::<u64>().unwrap() % 97;
        assert_eq!(format!("{key:02}"), &ins[13..], "{name}");
    }
}

#[test]
fn lab_report_with_two_batteries_and_a_correction() {
    let raw = fixture("lab_oru_r01_two_batteries.hl7");
    let r = records::lab(raw.as_bytes(), &Config::default()).unwrap();
    assert_eq!(r.order_id, "CMD-2024-0001");
    assert_eq!(r.prescriber.as_ref().unwrap().id, "801234567897");
    assert_eq!(r.batteries.len(), 2);
    let (b1, b2) = (&r.batteries[0], &r.batteries[1]);
    assert_eq!(b1.chapter.code, "18719-5", "unknown battery → Biochimie");
    assert_eq!(b2.chapter.code, "18723-7", "58410-2 → Hématologie");
    assert_eq!(b1.code.system, "2.16.840.1.113883.6.1");
    assert_eq!(b1.observations.len(), 4);
    assert_eq!(b2.comments, vec!["Prélèvement légèrement hémolysé"]);
    let glucose = &b1.observations[0];
    assert_eq!(
        glucose.value,
        ResultValue::Quantity {
            value: "5.6".into(),
            unit: "mmol/L".into()
        }
    );
    assert_eq!(glucose.interpretation.as_deref(), Some("H"));
    assert_eq!(glucose.range.low.as_deref(), Some("3.5"));
    assert_eq!(glucose.time.as_deref(), Some("20240315090000"));
    let creat = &b1.observations[1];
    assert_eq!(creat.status, "C");
    assert_eq!(
        creat.comments,
        vec!["Résultat corrigé : erreur de saisie & recontrôle\nValeur validée"]
    );
    assert_eq!(creat.code.display, "Créatinine [Masse/Vol] Sérum");
    let k = &b1.observations[2];
    assert_eq!(
        k.value,
        ResultValue::Structured {
            comparator: "<".into(),
            value: "3.0".into(),
            unit: "mmol/L".into()
        }
    );
    assert_eq!(k.interpretation.as_deref(), Some("LL"));
    assert_eq!(b1.observations[3].range.high.as_deref(), Some("2"));
    assert_eq!(b1.observations[3].range.text.as_deref(), Some("<2"));
    // Two TX lines of the same test are one multi-line value.
    assert_eq!(b2.observations.len(), 4);
    assert_eq!(
        b2.observations[2].value,
        ResultValue::Text("Frottis : ligne un\nligne deux".into())
    );
    assert!(matches!(&b2.observations[1].value, ResultValue::Coded(c) if c.code == "A"));
    // Header: PRT SB author and organisation, lifecycle from ORC-1 RO.
    let h = &r.header;
    assert_eq!(h.lifecycle, Lifecycle::Replace);
    assert_eq!(h.version, 2);
    assert_eq!(h.author.id, "801234567866");
    assert_eq!(h.organisation.id, "1120459876");
    assert_eq!(h.facility_sector, "SA25");
    assert_eq!(h.effective_time, "20240315140000");
    assert_eq!(h.service_start.as_deref(), Some("20240315080000"));
    let p = &h.patient;
    assert_eq!(p.birth_name, "LÉGER");
    assert_eq!(p.first_names, vec!["Zoé", "Marie"]);
    assert_eq!(p.birth_date, "1988-05-14");
    assert_eq!(p.birth_place.as_deref(), Some("92050"));
    assert_eq!(p.ipp.as_deref(), Some("IPP0001"));
    assert_eq!(p.identity_status, vec!["VALI"]);
}

#[test]
fn lab_document_metadata_and_entries() {
    let raw = fixture("lab_oru_r01_two_batteries.hl7");
    let d = doc(Feed::Lab, &raw);
    let m = &d.meta;
    assert_eq!(m.type_code, "11502-2");
    assert_eq!(m.class_code, "10");
    assert_eq!(m.format_code, "urn:ihe:lab:xd-lab:2008");
    // The practice setting its header states (standardIndustryClassCode).
    assert_eq!(m.practice_setting.as_deref(), Some("AMBULATOIRE"));
    assert_eq!(m.ignored_attachments, 0);
    assert_eq!(m.origin, CdaOrigin::Generated);
    assert_eq!(m.lifecycle, Lifecycle::Replace);
    assert_eq!(m.target_unique_id, None);
    assert_eq!(m.confidentiality, "N");
    assert!(m.unique_id.starts_with("2.25."));
    assert_eq!(m.source.sender, "SIL-Z^LABO-TEST");
    assert_eq!(m.source.control_id, "LAB-0001");
    assert_eq!(m.author.person_id.as_deref(), Some("801234567866"));
    assert_eq!(m.author.organisation_id.as_deref(), Some("1120459876"));
    assert_eq!(d.entries.len(), 8);
    match &d.entries[1] {
        Entry::LabObservation {
            loinc,
            value,
            value_type,
            unit,
            status,
            ..
        } => {
            assert_eq!(
                (
                    loinc.as_str(),
                    value.as_str(),
                    value_type.as_str(),
                    unit.as_deref()
                ),
                ("2160-0", "9.5", "NM", Some("mg/L"))
            );
            assert_eq!(status, "C");
        }
        other => panic!("{other:?}"),
    }
    let cda = d.cda.as_xml().expect("normalize writes XML");
    assert!(cda.contains("ClinicalDocument"), "written by cda::lab");
    assert!(cda.contains(&m.unique_id));
    // Deterministic: the same message gives the same ids; the initial report of the same
    // order (another control id) shares the setId but not the uniqueId.
    assert_eq!(doc(Feed::Lab, &raw).meta, d.meta);
    let initial = raw
        .replacen("ORC|RO|", "ORC|NW|", 1)
        .replacen("|LAB-0001|", "|LAB-0000|", 1)
        .replace("|||C|||2024", "|||F|||2024");
    let first = doc(Feed::Lab, &initial);
    assert_eq!(first.meta.lifecycle, Lifecycle::Initial);
    assert_eq!(first.meta.version, 1);
    assert_eq!(first.meta.set_id, m.set_id);
    assert_ne!(first.meta.unique_id, m.unique_id);
}

#[test]
fn imaging_report() {
    let raw = fixture("imaging_oru_r01.hl7");
    let r = records::imaging(raw.as_bytes(), &Config::default()).unwrap();
    assert_eq!(
        r.study_instance_uid.as_deref(),
        Some("1.2.250.1.999.3.20240402.77")
    );
    assert_eq!(r.accession_number.as_deref(), Some("ACC-2024-77"));
    assert_eq!(r.modality.as_deref(), Some("CT"));
    assert_eq!(r.exam.code, "24627-2");
    assert_eq!(r.order_id, "CMD-IMG-77");
    assert_eq!(
        r.paragraphs,
        vec![
            "Toux persistante depuis 3 semaines.",
            "Parenchyme pulmonaire normal & pas d'adénopathie.",
            "Conclusion :\nExamen normal.",
        ]
    );
    assert_eq!(r.header.author.id, "801234560001");
    assert_eq!(r.header.facility_sector, "SA29");
    assert_eq!(r.header.lifecycle, Lifecycle::Initial);
    let d = doc(Feed::Imaging, &raw);
    assert_eq!(d.meta.type_code, "18748-4");
    assert_eq!(d.meta.class_code, "31");
    assert_eq!(d.meta.service_start.as_deref(), Some("20240402101500"));
    // Without the study OBX, ZDS-1 gives the UID; without OBR-18, OBR-3 the accession.
    let alt = raw
        .replace(
            "OBX|1|RP|113014^DICOM Study^DCM||1.2.250.1.999.3.20240402.77||||||F\r",
            "",
        )
        .replace("|ACC-2024-77|", "||")
        + "ZDS|1.2.3.4.5^RIS-Z^Application^DICOM\r";
    let r = records::imaging(alt.as_bytes(), &Config::default()).unwrap();
    assert_eq!(r.study_instance_uid.as_deref(), Some("1.2.3.4.5"));
    assert_eq!(r.accession_number.as_deref(), Some("EXA-77"));
}

#[test]
fn pharmacy_dispensation_with_three_items() {
    let raw = fixture("pharmacy_rds_o13.hl7");
    let d = records::dispensation(raw.as_bytes(), &Config::default()).unwrap();
    assert_eq!(d.items.len(), 3);
    assert_eq!(d.items[0].code, "3400935955838");
    assert_eq!(d.items[0].code_system, "1.2.250.1.213.2.3.2");
    assert_eq!(d.items[0].quantity, "2");
    assert_eq!(d.items[0].unit.as_deref(), Some("BTE"));
    assert_eq!(d.items[0].prescription_id.as_deref(), Some("ORD-PH-555"));
    assert_eq!(d.items[2].code_system, "1.2.250.1.213.2.61", "UCD13");
    assert_eq!(d.items[2].dispensed_at, "20240410103100");
    assert_eq!(d.pharmacist.id, "801234569999");
    assert_eq!(d.prescriber.as_ref().unwrap().id, "801234567897");
    assert_eq!(d.header.author.id, "801234569999");
    assert_eq!(d.header.organisation.id, "1120459999", "ORC-21");
    assert_eq!(d.header.patient.ins, "292022A00401217");
    assert_eq!(d.header.patient.birth_place.as_deref(), Some("2A004"));
    assert_eq!(d.header.patient.first_names, vec!["Marie-Ange", "Lucie"]);
    let doc = doc(Feed::Pharmacy, &raw);
    assert_eq!(doc.meta.type_code, "60593-1");
    assert_eq!(doc.meta.class_code, "43");
    assert_eq!(doc.meta.format_code, "urn:ihe:pharm:dis:2010");
    assert_eq!(doc.entries.len(), 3);
    assert!(
        matches!(&doc.entries[2], Entry::Dispensation { code, quantity, .. }
        if code == "3400890000000" && quantity == "10")
    );
    // A wrong check digit, a non-French code.
    let bad = raw.replacen("3400935955838", "3400935955839", 1);
    assert_eq!(
        reason(Feed::Pharmacy, bad.as_bytes()),
        Reason::DrugCip13Checkdigit
    );
    let bad = raw.replacen("3400935955838", "5012345678900", 1);
    assert_eq!(
        reason(Feed::Pharmacy, bad.as_bytes()),
        Reason::DrugCodeInvalid
    );
    assert!(check_drug_code("3400930000120").is_ok());
}

#[test]
fn identity_messages() {
    let a28 = patient_update(&fixture("adt_a28.hl7"));
    assert_eq!(a28.change, PatientChange::Upsert);
    assert_eq!(a28.patient.ins, "201019999900109");
    assert_eq!(a28.patient.ins_oid, "1.2.250.1.213.1.4.10");
    assert_eq!(a28.patient.birth_name, "CÉLESTIN");
    assert_eq!(a28.patient.first_names, vec!["Noël", "Jean-Marc"]);
    assert_eq!(a28.patient.birth_date, "2001-01-15");
    assert_eq!(a28.patient.sex, "M");
    assert_eq!(a28.dmp_status.as_deref(), Some("ACTIF"));
    // PAM-FR 2.11: ZFA-9 INO (does not oppose), ZFA-11 IC (consents); ZFA-4 is ignored.
    assert_eq!(a28.feeding_opposed, Some(false));
    assert_eq!(a28.consultation_consent, Some(true));
    assert_eq!(a28.event, "A28");
    assert_eq!(
        a28.times.message.as_deref(),
        Some("2024-05-01T09:00:00"),
        "MSH-7 in local time, its zone dropped"
    );
    assert_eq!(a28.source.control_id, "ADT-0028");
    assert_eq!(a28.source.feed, Some(Feed::Identity));

    let a31 = patient_update(&fixture("adt_a31.hl7"));
    assert_eq!(a31.change, PatientChange::Upsert);
    assert_eq!(a31.feeding_opposed, Some(true), "ZFA-9 IO");
    assert_eq!(a31.consultation_consent, None, "ZFA-11 NA");

    let a40 = patient_update(&fixture("adt_a40.hl7"));
    assert_eq!(
        a40.change,
        PatientChange::Merge {
            from_ins: "201019999900208".into(),
            from_oid: "1.2.250.1.213.1.4.10".into()
        }
    );
    assert_eq!(a40.feeding_opposed, None, "no ZFA");

    let a47 = patient_update(&fixture("adt_a47.hl7"));
    assert_eq!(
        a47.change,
        PatientChange::IdentifierChange {
            old_ins: "201019999900208".into(),
            old_oid: "1.2.250.1.213.1.4.10".into()
        }
    );
    // A merge without MRG, or with an MRG-1 that holds no INS.
    let no_mrg = fixture("adt_a40.hl7").replace(
        "MRG|201019999900208^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS~",
        "MRG|",
    );
    assert_eq!(
        reason(Feed::Identity, no_mrg.as_bytes()),
        Reason::Hl7FieldMissing
    );
    let no_mrg = fixture("adt_a47.hl7").replace("\rMRG|", "\rZZZ|");
    assert_eq!(
        reason(Feed::Identity, no_mrg.as_bytes()),
        Reason::Hl7SegmentMissing
    );
}

#[test]
fn latin9_bytes_are_decoded() {
    let mut raw = b"MSH|^~\\&|GAM|CHU|PFI|X|20240501||ADT^A28^ADT_A05|L9-1|P|2.5|||||FRA|8859/15\rPID|1||201019999900109^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||B".to_vec();
    raw.extend_from_slice(&[0xBC]);
    raw.extend_from_slice(b"UF^C");
    raw.extend_from_slice(&[0xC9]);
    raw.extend_from_slice(b"LINE^C");
    raw.extend_from_slice(&[0xC9]);
    raw.extend_from_slice(b"LINE Zo");
    raw.extend_from_slice(&[0xE9]);
    raw.extend_from_slice(b"^^^^L||20010115|F\r");
    let out = normalize(Feed::Identity, &raw, &Config::default()).unwrap();
    let Normalized::Patient(p) = &out[0] else {
        panic!()
    };
    assert_eq!(p.patient.birth_name, "BŒUF");
    assert_eq!(p.patient.first_names, vec!["CÉLINE", "Zoé"]);
    // The same bytes declared 8859/1 give the Latin-1 characters.
    let mut raw1 = raw.clone();
    let at = raw1.windows(7).position(|w| w == b"8859/15").unwrap();
    raw1.drain(at + 6..at + 7);
    let out = normalize(Feed::Identity, &raw1, &Config::default()).unwrap();
    let Normalized::Patient(p) = &out[0] else {
        panic!()
    };
    assert_eq!(p.patient.birth_name, "B¼UF");
    // Empty MSH-18 uses the configured default.
    let mut raw2 = raw.clone();
    raw2.drain(at..at + 7);
    let cfg = Config {
        default_charset: "8859/15".into(),
        ..Config::default()
    };
    let out = normalize(Feed::Identity, &raw2, &cfg).unwrap();
    let Normalized::Patient(p) = &out[0] else {
        panic!()
    };
    assert_eq!(p.patient.birth_name, "BŒUF");
    // ...and with the UTF-8 default, those bytes are invalid.
    assert_eq!(reason(Feed::Identity, &raw2), Reason::Hl7CharsetInvalid);
}

#[test]
fn escapes_in_names() {
    let raw = fixture("adt_a28.hl7").replace("CÉLESTIN^Noël", "D\\X27\\ARTAGNAN^Noël");
    let p = patient_update(&raw);
    assert_eq!(p.patient.birth_name, "D'ARTAGNAN");
}

#[test]
fn reject_codes_of_the_mappings() {
    let lab = fixture("lab_oru_r01_two_batteries.hl7");
    let adt = fixture("adt_a28.hl7");
    // Message type not mapped for the feed.
    assert_eq!(
        reason(Feed::Lab, adt.as_bytes()),
        Reason::Hl7MessageTypeUnsupported
    );
    assert_eq!(
        reason(Feed::Identity, lab.as_bytes()),
        Reason::Hl7MessageTypeUnsupported
    );
    assert_eq!(
        reason(Feed::Cancer, lab.as_bytes()),
        Reason::Hl7MessageTypeUnsupported
    );
    assert_eq!(
        reason(Feed::Lab, fixture("pharmacy_rds_o13.hl7").as_bytes()),
        Reason::Hl7MessageTypeUnsupported
    );
    // No INS in PID-3.
    let no_ins = lab.replace("^INS^^20200101", "^NH^^20200101");
    assert_eq!(reason(Feed::Lab, no_ins.as_bytes()), Reason::Hl7InsMissing);
    // Required segments and fields.
    let no_obr: String = lab
        .split('\r')
        .filter(|s| !s.starts_with("OBR") && !s.starts_with("OBX") && !s.starts_with("NTE"))
        .collect::<Vec<_>>()
        .join("\r");
    assert_eq!(
        reason(Feed::Lab, no_obr.as_bytes()),
        Reason::Hl7SegmentMissing
    );
    let no_pid = lab.replacen("\rPID|", "\rZPI|", 1);
    assert_eq!(
        reason(Feed::Lab, no_pid.as_bytes()),
        Reason::Hl7SegmentMissing
    );
    let no_rxd = fixture("pharmacy_rds_o13.hl7").replace("\rRXD|", "\rZXD|");
    assert_eq!(
        reason(Feed::Pharmacy, no_rxd.as_bytes()),
        Reason::Hl7SegmentMissing
    );
    let no_control_id = lab.replacen("|LAB-0001|", "||", 1);
    assert_eq!(
        reason(Feed::Lab, no_control_id.as_bytes()),
        Reason::Hl7FieldMissing
    );
    let not_a_number = lab.replacen("||5.6|mmol/L", "||cinq|mmol/L", 1);
    assert_eq!(
        reason(Feed::Lab, not_a_number.as_bytes()),
        Reason::Hl7FieldInvalid
    );
    let bad_birth_date = lab.replacen("|19880514|", "|19881399|", 1);
    assert_eq!(
        reason(Feed::Lab, bad_birth_date.as_bytes()),
        Reason::Hl7FieldInvalid
    );
    // ORC-1 NW with a corrected result.
    let nw = lab.replacen("ORC|RO|", "ORC|NW|", 1);
    assert_eq!(
        reason(Feed::Lab, nw.as_bytes()),
        Reason::Hl7LifecycleInconsistent
    );
    // Reader-level codes come through normalize unchanged.
    assert_eq!(reason(Feed::Lab, b""), Reason::Hl7MshMissing);
    assert_eq!(reason(Feed::Lab, b"MSH|^~|x\r"), Reason::Hl7EncodingInvalid);
    let ascii = lab.replacen("UNICODE UTF-8", "ASCII", 1);
    assert_eq!(
        reason(Feed::Lab, ascii.as_bytes()),
        Reason::Hl7CharsetUnsupported
    );
    let bad_default = Config {
        default_charset: "EBCDIC".into(),
        ..Config::default()
    };
    assert_eq!(
        normalize(Feed::Lab, lab.as_bytes(), &bad_default)
            .unwrap_err()
            .reason,
        Reason::Hl7CharsetUnsupported
    );
    let bad_seg = lab.replacen("\rPV1|", "\rPv1|", 1);
    assert_eq!(
        reason(Feed::Lab, bad_seg.as_bytes()),
        Reason::Hl7SegmentInvalid
    );
    let small = |m, s, f| Config {
        max_message_bytes: m,
        max_segment_bytes: s,
        max_field_bytes: f,
        ..Config::default()
    };
    let code = |cfg: Config| {
        normalize(Feed::Lab, lab.as_bytes(), &cfg)
            .unwrap_err()
            .reason
    };
    assert_eq!(code(small(1000, 1000, 1000)), Reason::Hl7MessageTooLarge);
    assert_eq!(code(small(1 << 20, 200, 200)), Reason::Hl7SegmentTooLarge);
    assert_eq!(code(small(1 << 20, 1 << 20, 100)), Reason::Hl7FieldTooLarge);
}

/// No error detail names patient data: only positions, fields and codes.
#[test]
fn reject_details_hold_no_patient_data() {
    let lab = fixture("lab_oru_r01_two_batteries.hl7");
    for bad in [
        lab.replacen("|19880514|", "|19881399|", 1),
        lab.replacen("||5.6|mmol/L", "||cinq|mmol/L", 1),
        lab.replace("^INS^^20200101", "^NH^^20200101"),
    ] {
        let e = normalize(Feed::Lab, bad.as_bytes(), &Config::default()).unwrap_err();
        for secret in ["288059205012397", "LÉGER", "Zoé", "19881399", "cinq"] {
            assert!(!e.detail.contains(secret), "{} leaks {secret}", e.detail);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever is spliced into a fixture, normalize never panics and every refusal carries
    /// a registered reason code.
    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..7,
        at in 0usize..2000,
        len in 0usize..40,
        insert in "[A-Z0-9|^~&\\\r\n .é˜-]{0,40}",
    ) {
        let names = [
            "lab_oru_r01_two_batteries.hl7",
            "imaging_oru_r01.hl7",
            "pharmacy_rds_o13.hl7",
            "adt_a28.hl7",
            "adt_a31.hl7",
            "adt_a40.hl7",
            "adt_a47.hl7",
        ];
        let src = fixture(names[which]);
        let mut at = at.min(src.len());
        while !src.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + len).min(src.len());
        while !src.is_char_boundary(end) {
            end -= 1;
        }
        let m = format!("{}{}{}", &src[..at], insert, &src[end..]);
        for feed in Feed::ALL {
            if let Err(e) = normalize(feed, m.as_bytes(), &Config::default()) {
                prop_assert_eq!(Reason::parse(e.reason.as_str()), Some(e.reason));
            }
        }
    }
}
