//! Every kind of resource the read side returns, built from realistic values (the ANS test
//! INS OID .10), written to a temp dir and checked by HAPI FHIR's R4 validator
//! (`scripts/fhir-validate`). The test fails when the validator cannot run: a skipped
//! validation would pass resources nobody checked.

use std::path::PathBuf;
use std::process::Command;

use dmpflow_consult::fhir::audit_event::{
    AccessTrace, Interaction, Outcome, Purpose, Requestor, audit_event,
};
use dmpflow_consult::fhir::bundle::{Paging, searchset};
use dmpflow_consult::fhir::capability::capability_statement;
use dmpflow_consult::fhir::document_reference::{DocumentInput, Status, document_reference};
use dmpflow_consult::fhir::observation::{LabResultInput, observation};
use dmpflow_consult::fhir::outcome::{Issue, IssueType, Severity, operation_outcome};
use dmpflow_consult::fhir::search::parse_document_query;
use dmpflow_consult::fhir::{PatientId, datetime};
use serde_json::Value;

fn patient() -> PatientId {
    PatientId {
        oid: "1.2.250.1.213.1.4.10".into(),
        ins: "279035121518989".into(),
    }
}

fn doc(id: &str, status: Status, replaces: Option<&str>) -> DocumentInput {
    DocumentInput {
        id: id.into(),
        unique_id: id.into(),
        set_id: "1.2.250.1.999.1.2.20240306".into(),
        status,
        type_code: "11502-2".into(),
        type_display: Some("CR d'examens biologiques".into()),
        class_code: "10".into(),
        format_code: "urn:ihe:lab:xd-lab:2008".into(),
        practice_setting: Some("ETABLISSEMENT".into()),
        title: "CR de biologie".into(),
        patient: patient(),
        author_person: Some("801234534765".into()),
        author_organisation: Some("1750000000".into()),
        creation_time: "20240306111154".into(),
        service_start: Some("20240306080000+0100".into()),
        service_stop: Some("20240306110000".into()),
        stored_at: Some("2024-03-06T10:12:00Z".into()),
        confidentiality: "N".into(),
        visibility: vec!["MASQUE_PS".into(), "INVISIBLE_REP_LEGAUX".into()],
        content_type: "application/hl7-cda+xml".into(),
        size: 18_342,
        sha1: Some([0x5a; 20]),
        replaces: replaces.map(str::to_owned),
    }
}

fn lab(
    id: &str,
    value: &str,
    value_type: &str,
    unit: Option<&str>,
    flag: Option<&str>,
) -> LabResultInput {
    LabResultInput {
        id: id.into(),
        loinc: "2345-7".into(),
        label: "Glucose [Masse/Volume] Sérum/Plasma".into(),
        value: Some(value.into()),
        value_type: Some(value_type.into()),
        unit: unit.map(str::to_owned),
        interpretation: flag.map(str::to_owned),
        reference_low: Some("0.70".into()),
        reference_high: Some("1.00".into()),
        reference_text: None,
        status: Some("F".into()),
        time: "20240306080000".into(),
        patient: patient(),
        document_id: "1.2.250.1.999.1.1.20240306.2".into(),
    }
}

fn trace(purpose: Purpose, outcome: Outcome, interaction: Interaction) -> AccessTrace {
    AccessTrace {
        id: "ae-1".into(),
        recorded: datetime::instant_of(
            time::OffsetDateTime::from_unix_timestamp(1_709_720_102).unwrap(),
        ),
        interaction,
        requestor: Requestor::Professional {
            person_id: "810002909371".into(),
            profession: Some("10".into()),
            organisation_id: Some("1750000000".into()),
        },
        purpose,
        outcome,
        patient: patient(),
        documents: vec!["1.2.250.1.999.1.1.20240306.2".into()],
        query: Some("patient.identifier=urn:oid:1.2.250.1.213.1.4.10|279035121518989".into()),
        observer: "dmpflow-consult".into(),
    }
}

/// One of each resource, and the variants whose shape differs.
fn examples() -> Vec<(&'static str, Value)> {
    let current = document_reference(&doc(
        "1.2.250.1.999.1.1.20240306.2",
        Status::Current,
        Some("1.2.250.1.999.1.1.20240306.1"),
    ));
    let mut deleted = doc("1.2.250.1.999.1.1.20240306.3", Status::Deleted, None);
    deleted.format_code = "urn:asip:ci-sis:frcp:2011".into();
    deleted.creation_time = "20240306".into();
    deleted.sha1 = None;
    let deleted = document_reference(&deleted);
    let superseded = document_reference(&doc(
        "1.2.250.1.999.1.1.20240306.1",
        Status::Superseded,
        None,
    ));

    let query: Vec<(String, String)> = [
        (
            "patient.identifier",
            "urn:oid:1.2.250.1.213.1.4.10|279035121518989",
        ),
        ("status", "current"),
        ("_count", "2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let parsed = parse_document_query(&query).expect("the query parses");
    let paging = Paging {
        base: "https://dmp.example/fhir".into(),
        resource_type: "DocumentReference".into(),
        params: query.into_iter().filter(|(k, _)| k != "_count").collect(),
        count: parsed.paging.count,
        page: Some("b2Zmc2V0OjI".into()),
        next: Some("b2Zmc2V0OjQ".into()),
        previous: Some(String::new()),
    };
    let bundle = searchset(5, &paging, vec![current.clone(), superseded.clone()]);
    let mut empty_paging = paging.clone();
    (empty_paging.page, empty_paging.next, empty_paging.previous) = (None, None, None);
    let empty = searchset(0, &empty_paging, vec![]);

    let mut obs_text = lab("res-2", "trace", "ST", None, None);
    obs_text.reference_low = None;
    obs_text.reference_high = None;
    obs_text.reference_text = Some("négatif".into());
    let mut obs_absent = lab("res-4", "", "NM", Some("g/L"), None);
    obs_absent.status = Some("C".into());

    vec![
        ("docref-current", current),
        ("docref-superseded", superseded),
        ("docref-deleted", deleted),
        ("bundle-searchset", bundle),
        ("bundle-empty", empty),
        (
            "observation-numeric",
            observation(&lab("res-1", "1,05", "NM", Some("g/L"), Some("H"))),
        ),
        (
            "observation-comparator",
            observation(&lab("res-3", "<0.5", "SN", Some("m[IU]/L"), Some("L"))),
        ),
        ("observation-text", observation(&obs_text)),
        ("observation-absent", observation(&obs_absent)),
        (
            "audit-treatment",
            audit_event(&trace(
                Purpose::Treatment,
                Outcome::Success,
                Interaction::Search,
            )),
        ),
        (
            "audit-btg",
            audit_event(&trace(
                Purpose::BreakTheGlass {
                    reason: "patient inconscient".into(),
                },
                Outcome::Success,
                Interaction::Read,
            )),
        ),
        (
            "audit-denied",
            audit_event(&trace(
                Purpose::Emergency {
                    reason: "régulation SAMU".into(),
                },
                Outcome::Denied {
                    reason: "authz.patient.opposed".into(),
                },
                Interaction::Search,
            )),
        ),
        (
            "operation-outcome",
            operation_outcome(&[Issue {
                severity: Severity::Error,
                code: IssueType::NotSupported,
                reason: "search.param.unknown".into(),
                diagnostics: Some("unknown search parameter 'foo'".into()),
                expression: Some("foo".into()),
            }]),
        ),
        (
            "capability",
            capability_statement("https://dmp.example/fhir", "2024-03-06", "0.1.0"),
        ),
    ]
}

#[test]
fn every_resource_validates_against_fhir_r4() {
    let dir = std::env::temp_dir().join(format!("dmpflow-fhir-valid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let examples = examples();
    for (name, v) in &examples {
        std::fs::write(
            dir.join(format!("{name}.json")),
            serde_json::to_string_pretty(v).unwrap(),
        )
        .unwrap();
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/fhir-validate");
    let out = Command::new(&script)
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "FHIR validation failed (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    // Exit 0 must come from a run that saw every file, not from an empty one.
    let summary = format!(
        "{} valid, 0 invalid, of {} file(s)",
        examples.len(),
        examples.len()
    );
    assert!(
        stdout.contains(&summary),
        "unexpected validator report:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
}
