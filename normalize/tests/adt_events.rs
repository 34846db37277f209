//! The identity feed as hospitals send it (issue #12 item 1): the PAM-FR ADT events that
//! carry a PID update the registry with the ZFA consent read at its PAM-FR 2.11 place
//! (ZFA-9/10 feeding opposition, ZFA-11/12 consultation consent, ZFA-1/2 DMP status),
//! movements are skipped (`hl7.event.skipped`), unknown events stay unsupported.

use dmpflow_normalize::mapping::{AdtAction, adt_action};
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::reasons::{Reason, Reject};
use dmpflow_schemas::{Feed, Normalized, PatientChange, PatientUpdate, UpdateTimes};

const PID: &str = "PID|1||IPP9001^^^SITE&1.2.250.1.999.2&ISO^PI~201019999900109^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS^^20200101||CÉLESTIN^Noël^Noël Jean-Marc^^^^L||20010115|M|||^^^^^^BDL^^99999|||||||||||||||||||||VALI";

/// An ADT message of `event` sent at `msh7` with the given ZFA segment (none if empty).
fn adt(event: &str, msh7: &str, zfa: &str) -> String {
    let structure = match event {
        "A01" | "A04" | "A08" => "ADT_A01",
        "A03" => "ADT_A03",
        _ => "ADT_A05",
    };
    let mut m = format!(
        "MSH|^~\\&|GAM-Z|CHU-TEST|PFI-DMPFLOW|DMPFLOW|{msh7}||ADT^{event}^{structure}|ADT-{event}|P|2.5^FRA^2.11|||||FRA|UNICODE UTF-8\r\
         EVN||{msh7}\r{PID}\rPV1|1|I\r"
    );
    if !zfa.is_empty() {
        m.push_str(zfa);
        m.push('\r');
    }
    m
}

fn run(raw: &str) -> Result<Vec<Normalized>, Reject> {
    normalize(Feed::Identity, raw.as_bytes(), &Config::default())
}

fn update(raw: &str) -> PatientUpdate {
    match run(raw).unwrap_or_else(|e| panic!("{e}")).pop() {
        Some(Normalized::Patient(u)) => *u,
        other => panic!("expected a patient update, got {other:?}"),
    }
}

fn refused(raw: &str) -> Reject {
    run(raw).expect_err("must not map")
}

/// The five combinations of the issue: (ZFA-9, ZFA-11) → (feeding_opposed,
/// consultation_consent).
const COMBINATIONS: [(&str, &str, Option<bool>, Option<bool>); 5] = [
    ("INO", "IC", Some(false), Some(true)),
    ("IO", "IC", Some(true), Some(true)),
    ("INO", "INC", Some(false), Some(false)),
    ("NA", "NA", None, None),
    ("IO", "NA", Some(true), None),
];

#[test]
fn zfa_combinations_in_every_event_that_carries_a_pid() {
    for event in ["A01", "A04", "A05", "A08", "A14", "A28", "A31"] {
        for (zfa9, zfa11, opposed, consent) in COMBINATIONS {
            let zfa = format!(
                "ZFA|ACTIF|20240306111154|||||||{zfa9}|20240306101500|{zfa11}|202403061020"
            );
            let u = update(&adt(event, "20240306111200+0100", &zfa));
            let case = format!("{event} {zfa9}/{zfa11}");
            assert_eq!(u.change, PatientChange::Upsert, "{case}");
            assert_eq!(u.event, event, "{case}");
            assert_eq!(u.patient.ins, "201019999900109", "{case}");
            assert_eq!(u.dmp_status.as_deref(), Some("ACTIF"), "{case}");
            assert_eq!(u.feeding_opposed, opposed, "{case}");
            assert_eq!(u.consultation_consent, consent, "{case}");
            assert_eq!(
                u.times,
                UpdateTimes {
                    message: Some("2024-03-06T11:12:00".into()),
                    dmp_status: Some("2024-03-06T11:11:54".into()),
                    // A date comes only with the value it dates ("NA" dates nothing).
                    feeding_opposed: opposed.map(|_| "2024-03-06T10:15:00".into()),
                    consultation_consent: consent.map(|_| "2024-03-06T10:20:00".into()),
                },
                "{case}"
            );
        }
    }
}

/// The A01 ZFA of domain.md §3.5, as the ANS "Consentement_DMP_PAMFR" examples write it
/// (those messages are not in ../shared/hl7v2-examples; the segment is quoted there).
#[test]
fn ans_consent_example_segment() {
    let u = update(&adt(
        "A01",
        "20240306111154",
        "ZFA|ACTIF|20240306111154|||||||INO|20240306111154|IC|20240306111154",
    ));
    assert_eq!(u.dmp_status.as_deref(), Some("ACTIF"));
    assert_eq!(u.feeding_opposed, Some(false));
    assert_eq!(u.consultation_consent, Some(true));
    let t = "2024-03-06T11:11:54".to_string();
    assert_eq!(
        u.times,
        UpdateTimes {
            message: Some(t.clone()),
            dmp_status: Some(t.clone()),
            feeding_opposed: Some(t.clone()),
            consultation_consent: Some(t),
        }
    );
}

/// ZFA-4 is the facility's access authorisation, not the patient's opposition: `N` there
/// (with nothing in ZFA-9) states no opposition either way.
#[test]
fn zfa4_is_not_an_opposition() {
    for event in ["A28", "A31"] {
        let u = update(&adt(event, "20240501", "ZFA|ACTIF|20240101||N|20240101"));
        assert_eq!(u.feeding_opposed, None, "{event}");
        assert_eq!(u.consultation_consent, None, "{event}");
        let u = update(&adt(event, "20240501", "ZFA|ACTIF|20240101||Y|20240101"));
        assert_eq!(u.feeding_opposed, None, "{event}");
        // ZFA-4 N next to ZFA-9 INO: the patient does not oppose.
        let u = update(&adt(
            event,
            "20240501",
            "ZFA|ACTIF|20240101||N|20240101|N|N|20240101|INO|20240101",
        ));
        assert_eq!(u.feeding_opposed, Some(false), "{event}");
    }
}

#[test]
fn without_zfa_nothing_is_stated() {
    let u = update(&adt("A08", "2024050109", ""));
    assert_eq!((u.feeding_opposed, u.consultation_consent), (None, None));
    assert_eq!(u.dmp_status, None);
    assert_eq!(
        u.times,
        UpdateTimes {
            message: Some("2024-05-01T09:00:00".into()),
            ..Default::default()
        }
    );
}

/// An invalid date is refused naming the field, never showing the value.
#[test]
fn invalid_dates_name_their_field() {
    for (msh7, zfa, field) in [
        ("20240231", "ZFA|ACTIF", "MSH-7"),
        ("20240301", "ZFA|ACTIF|2024-03-01", "ZFA-2"),
        ("20240301", "ZFA|ACTIF||||||||IO|20241301", "ZFA-10"),
        ("20240301", "ZFA|ACTIF||||||||IO||IC|2024030125", "ZFA-12"),
    ] {
        let e = refused(&adt("A28", msh7, zfa));
        assert_eq!(e.reason, Reason::Hl7FieldInvalid, "{field}");
        assert!(e.detail.contains(field), "{field}: {}", e.detail);
    }
}

#[test]
fn movements_and_cancellations_are_skipped() {
    for event in [
        "A02", "A03", "A06", "A07", "A11", "A12", "A13", "A16", "A21", "A22", "A24", "A25", "A26",
        "A27", "A32", "A33", "A37", "A38", "A44", "A52", "A53", "A54", "A55", "Z80", "Z99",
    ] {
        let e = refused(&adt(event, "20240306111154", "ZFA|ACTIF||||||||IO"));
        assert_eq!(e.reason, Reason::Hl7EventSkipped, "{event}");
        assert!(e.reason.is_skip());
        assert_eq!(e.detail, format!("ADT^{event} carries nothing for the DMP"));
        assert_eq!(adt_action(event), Some(AdtAction::Skip));
    }
}

#[test]
fn unknown_events_stay_unsupported() {
    for event in ["A29", "A30", "A34", "A99", "Z00"] {
        assert_eq!(
            refused(&adt(event, "20240306", "")).reason,
            Reason::Hl7MessageTypeUnsupported,
            "{event}"
        );
        assert_eq!(adt_action(event), None);
    }
    // An ADT event outside the identity feed is still not mapped there.
    let e = normalize(
        Feed::Lab,
        adt("A01", "20240306", "").as_bytes(),
        &Config::default(),
    )
    .unwrap_err();
    assert_eq!(e.reason, Reason::Hl7MessageTypeUnsupported);
}

/// A40 and A47 still merge and change identifiers, and read ZFA like the others.
#[test]
fn merges_keep_their_change_and_read_zfa() {
    let mrg = "MRG|201019999900208^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS";
    let raw = adt("A40", "20240306", "ZFA|ACTIF||||||||IO|20240305")
        .replace("PV1|1|I\r", &format!("{mrg}\rPV1|1|I\r"));
    let u = update(&raw);
    assert!(
        matches!(u.change, PatientChange::Merge { ref from_ins, .. } if from_ins == "201019999900208")
    );
    assert_eq!(u.event, "A40");
    assert_eq!(u.feeding_opposed, Some(true));
    assert_eq!(
        u.times.feeding_opposed.as_deref(),
        Some("2024-03-05T00:00:00")
    );
}

/// The MLLP gateway accepts by `mapping::accepts`: on the identity feed, every event of the
/// table (a skipped movement too: AA, then counted by normalize), never an unknown one.
#[test]
fn the_gateway_table_is_the_identity_table() {
    use dmpflow_normalize::hl7::{Message, ReadOptions};
    use dmpflow_normalize::mapping::accepts;
    let opts = ReadOptions::default();
    for (event, accepted) in [
        ("A01", true),
        ("A04", true),
        ("A08", true),
        ("A28", true),
        ("A40", true),
        ("A03", true),
        ("A13", true),
        ("A29", false),
    ] {
        let raw = adt(event, "20240306", "");
        let msg = Message::parse(raw.as_bytes(), &opts).unwrap();
        assert_eq!(
            accepts(Feed::Identity, "ADT", event, &msg),
            accepted,
            "{event}"
        );
        assert!(!accepts(Feed::Lab, "ADT", event, &msg), "{event}");
    }
}
