//! Scenarios of the read side's store queries (issue #13): document details for the
//! consultation server and the append-only access trace.

use dmpflow_schemas::Lifecycle;
use dmpflow_store::{DocStatus, Store, StoreItem, TraceRow};

use super::{INS_A, INS_B, doc};

/// Details carry authors and the replaced version; one document is found by uniqueId
/// whatever its status; another patient's documents are not listed.
pub async fn document_details(store: &Store) {
    let first = doc(
        "1.2.30.1",
        "1.2.30.s",
        Lifecycle::Initial,
        None,
        INS_A,
        "D1",
        0,
    );
    let second = doc(
        "1.2.30.2",
        "1.2.30.s",
        Lifecycle::Replace,
        Some("1.2.30.1"),
        INS_A,
        "D2",
        1,
    );
    let other = doc(
        "1.2.31.1",
        "1.2.31.s",
        Lifecycle::Initial,
        None,
        INS_B,
        "D3",
        2,
    );
    for d in [first, second, other] {
        store
            .write_batch(&[StoreItem::Document(d)], &[])
            .await
            .unwrap();
    }
    let docs = store.document_metas_for_patient(INS_A).await.unwrap();
    assert_eq!(docs.len(), 2);
    let old = docs.iter().find(|d| d.row.unique_id == "1.2.30.1").unwrap();
    let new = docs.iter().find(|d| d.row.unique_id == "1.2.30.2").unwrap();
    assert_eq!(old.row.status, DocStatus::Superseded);
    assert_eq!(old.replaces, None);
    assert_eq!(new.row.status, DocStatus::Current);
    assert_eq!(new.replaces.as_deref(), Some("1.2.30.1"));
    assert_eq!(new.author_person_id.as_deref(), Some("810000000001"));
    assert_eq!(new.author_organisation_id.as_deref(), Some("1123456789"));
    assert_eq!(new.patient_ins_oid, "1.2.250.1.213.1.4.8");
    assert_eq!(new.row.visibility, vec!["MASQUE_PS".to_owned()]);

    let one = store.document_meta("1.2.30.1").await.unwrap().unwrap();
    assert_eq!(&one, old);
    assert!(store.document_meta("1.2.30.404").await.unwrap().is_none());
    assert_eq!(
        store.document_metas_for_patient(INS_B).await.unwrap().len(),
        1
    );
}

fn trace(ins: &str, action: &str, ids: &[&str], outcome: &str) -> TraceRow {
    TraceRow {
        actor_role: "professional".into(),
        actor_id: "810000000001".into(),
        actor_org: Some("1123456789".into()),
        patient_ins: ins.into(),
        action: action.into(),
        query: Some("patient.identifier=x".into()),
        document_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
        purpose: "break_glass".into(),
        purpose_reason: Some("urgence".into()),
        outcome: outcome.into(),
        reason: "permit.break_glass".into(),
        ..TraceRow::default()
    }
}

/// Traces are appended, numbered, stamped, read back per patient in order, and can be
/// neither changed nor removed.
pub async fn access_trace_append_only(store: &Store) {
    assert_eq!(store.trace_count().await.unwrap(), 0);
    let a = store
        .append_trace(&trace(INS_A, "search", &["1.2.1", "1.2.2"], "permit"))
        .await
        .unwrap();
    let b = store
        .append_trace(&trace(INS_A, "read", &[], "deny"))
        .await
        .unwrap();
    store
        .append_trace(&trace(INS_B, "read", &["9"], "permit"))
        .await
        .unwrap();
    assert!(b > a);
    let rows = store.traces_for_patient(INS_A).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].id, a);
    assert_eq!(rows[0].document_ids, vec!["1.2.1", "1.2.2"]);
    assert_eq!(rows[0].purpose, "break_glass");
    assert_eq!(rows[0].purpose_reason.as_deref(), Some("urgence"));
    assert!(
        rows[0].recorded_at.ends_with('Z'),
        "{}",
        rows[0].recorded_at
    );
    assert_eq!(rows[1].outcome, "deny");
    assert!(rows[1].document_ids.is_empty());
    assert_eq!(store.trace_count().await.unwrap(), 3);

    // A value outside the column's domain is refused, not stored.
    let mut bad = trace(INS_A, "delete", &[], "permit");
    assert!(store.append_trace(&bad).await.is_err());
    bad.action = "read".into();
    bad.outcome = "maybe".into();
    assert!(store.append_trace(&bad).await.is_err());
    assert_eq!(store.trace_count().await.unwrap(), 3);
}

/// Migration 0010: a call nobody could be attributed (role `anonymous`, no actor, no
/// patient) and an ITI-65 provide (`create`) are traced; other roles are still refused.
pub async fn access_trace_every_call(store: &Store) {
    let anonymous = TraceRow {
        actor_role: "anonymous".into(),
        actor_id: String::new(),
        actor_org: None,
        patient_ins: String::new(),
        purpose: "normal".into(),
        purpose_reason: None,
        reason: "auth.token.missing".into(),
        ..trace("", "search", &[], "deny")
    };
    store.append_trace(&anonymous).await.unwrap();
    store
        .append_trace(&trace(INS_A, "create", &["1.2.3"], "permit"))
        .await
        .unwrap();
    let mut bad = anonymous.clone();
    bad.actor_role = "robot".into();
    assert!(store.append_trace(&bad).await.is_err());
    assert_eq!(store.trace_count().await.unwrap(), 2);
    // The unattributed call is nobody's: no patient reads it as theirs.
    assert_eq!(store.traces_for_patient(INS_A).await.unwrap().len(), 1);
}
