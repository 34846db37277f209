//! `route_item` end to end on a real store (in-memory SQLite): identity updates that would
//! take over another patient's registry entry come out as `identity.collision` quarantine
//! cases and leave the registry as it was, whether route or the store's own guard sees it.
//! And (issue #12) the feeding opposition: IO holds documents, NA and stale messages change
//! nothing, a newer INO lets the waiting case be filed through the release path.

use dmpflow_route::RouteConfig;
use dmpflow_schemas::{
    Feed, Normalized, PatientChange, PatientIdentity, PatientRecord, PatientUpdate, SourceRef,
};
use dmpflow_store::Store;

use super::{RegistryCache, Routed, route_item};

const INS_A: &str = "279035121518989";
const INS_B: &str = "277076322082910";
const NIR: &str = "1.2.250.1.213.1.4.8";

fn update(change: PatientChange, ins: &str, name: &str, msg: &str) -> Normalized {
    Normalized::Patient(Box::new(PatientUpdate {
        change,
        patient: PatientIdentity {
            ins: ins.into(),
            ins_oid: NIR.into(),
            birth_name: name.into(),
            first_names: vec!["Camille".into()],
            birth_date: "1980-05-17".into(),
            sex: "F".into(),
            identity_status: vec!["VALI".into()],
            ..Default::default()
        },
        feeding_opposed: None,
        dmp_status: None,
        consultation_consent: None,
        times: Default::default(),
        event: String::new(),
        source: SourceRef {
            feed: Some(Feed::Identity),
            sender: "GAM^CHU".into(),
            control_id: msg.into(),
            ..Default::default()
        },
    }))
}

/// Patient A's "identifier change" onto B's INS.
fn a47_onto_b(msg: &str) -> Normalized {
    update(
        PatientChange::IdentifierChange {
            old_ins: INS_A.into(),
            old_oid: NIR.into(),
        },
        INS_B,
        "PREMIER",
        msg,
    )
}

async fn registry(store: &Store) -> (PatientRecord, PatientRecord) {
    (
        store.get_patient(INS_A).await.unwrap().unwrap(),
        store.get_patient(INS_B).await.unwrap().unwrap(),
    )
}

#[track_caller]
fn assert_collision(routed: Routed) {
    match routed {
        Routed::Quarantine(q) => {
            assert_eq!(q.reason, "identity.collision", "{}", q.detail);
            for secret in [INS_A, INS_B, "PREMIER", "SECOND", "Camille", "1980"] {
                assert!(!q.detail.contains(secret), "{}", q.detail);
            }
            assert!(matches!(q.item, Normalized::Patient(_)));
        }
        other => panic!("expected an identity.collision case, got {other:?}"),
    }
}

async fn two_patients() -> Store {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let cfg = RouteConfig::default();
    let cache = RegistryCache::default();
    for (ins, name, msg) in [(INS_A, "PREMIER", "U1"), (INS_B, "SECOND", "U2")] {
        let routed = route_item(
            &store,
            update(PatientChange::Upsert, ins, name, msg),
            &cfg,
            &cache,
        )
        .await
        .unwrap();
        assert!(matches!(routed, Routed::PatientApplied), "{routed:?}");
    }
    store
}

// Issue #16 item 1: route looks both entries up and refuses before the store is asked.
#[tokio::test]
async fn a47_onto_another_patients_ins_is_quarantined_and_changes_nothing() {
    let store = two_patients().await;
    let before = registry(&store).await;
    let cache = RegistryCache::default();
    let routed = route_item(&store, a47_onto_b("U3"), &RouteConfig::default(), &cache)
        .await
        .unwrap();
    assert_collision(routed);
    assert_eq!(registry(&store).await, before);
}

// The store's guard catches what a stale registry view lets through route.
#[tokio::test]
async fn the_store_guard_turns_a_late_collision_into_a_quarantine() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let cfg = RouteConfig::default();
    let cache = RegistryCache::default();
    // The cache learns "no record for B" before B's entry is written behind its back.
    cache.prefetch(&store, &[INS_A, INS_B]).await.unwrap();
    for (ins, name, msg) in [(INS_A, "PREMIER", "U1"), (INS_B, "SECOND", "U2")] {
        let Normalized::Patient(u) = update(PatientChange::Upsert, ins, name, msg) else {
            unreachable!()
        };
        store.apply_patient_update(&u).await.unwrap();
    }
    let before = registry(&store).await;
    let routed = route_item(&store, a47_onto_b("U3"), &cfg, &cache)
        .await
        .unwrap();
    assert_collision(routed);
    assert_eq!(registry(&store).await, before);
}

/// An identity upsert of patient A sent at `msh7`, with ZFA-9 `opposed` dated the same.
fn zfa_update(msg: &str, msh7: &str, opposed: Option<bool>) -> Normalized {
    let mut n = update(PatientChange::Upsert, INS_A, "PREMIER", msg);
    if let Normalized::Patient(u) = &mut n {
        u.feeding_opposed = opposed;
        u.times.message = Some(msh7.into());
        u.times.feeding_opposed = opposed.map(|_| msh7.to_string());
        u.event = "A31".into();
    }
    n
}

fn lab_document(uid: &str) -> Normalized {
    use dmpflow_schemas::{CdaOrigin, Document, DocumentMeta, Lifecycle, PartyRef};
    let Normalized::Patient(u) = update(PatientChange::Upsert, INS_A, "PREMIER", "x") else {
        unreachable!()
    };
    Normalized::Document(Box::new(Document {
        meta: DocumentMeta {
            unique_id: uid.into(),
            set_id: format!("{uid}.1"),
            version: 1,
            lifecycle: Lifecycle::Initial,
            target_unique_id: None,
            type_code: "11502-2".into(),
            class_code: "10".into(),
            format_code: "urn:ihe:lab:xd-lab:2008".into(),
            title: "CR de biologie".into(),
            patient: u.patient,
            author: PartyRef::default(),
            creation_time: "20260301101500+0100".into(),
            service_start: None,
            service_stop: None,
            confidentiality: "N".into(),
            visibility: Vec::new(),
            practice_setting: None,
            ignored_attachments: 0,
            origin: CdaOrigin::Generated,
            source: SourceRef {
                feed: Some(Feed::Lab),
                sender: "LABO".into(),
                control_id: format!("{uid}-msg"),
                ..Default::default()
            },
        },
        cda: "<ClinicalDocument/>".into(),
        entries: Vec::new(),
        packed: None,
    }))
}

async fn route_reason(store: &Store, item: Normalized) -> Option<String> {
    let routed = route_item(
        store,
        item,
        &RouteConfig::default(),
        &RegistryCache::default(),
    )
    .await
    .unwrap();
    match routed {
        Routed::Quarantine(q) => Some(q.reason),
        Routed::Document(_) => None,
        Routed::PatientApplied => panic!("a document was applied as a patient"),
    }
}

async fn apply(store: &Store, item: Normalized) {
    let routed = route_item(
        store,
        item,
        &RouteConfig::default(),
        &RegistryCache::default(),
    )
    .await
    .unwrap();
    assert!(matches!(routed, Routed::PatientApplied), "{routed:?}");
}

// Issue #12 item 3: IO quarantines, NA and a stale INO change nothing, a newer INO lets the
// document through and the waiting case is filed once by the sweeper's release path.
#[tokio::test]
async fn opposition_io_na_stale_ino_then_ino_releases_the_waiting_case() {
    use dmpflow_store::{QuarantineStatus, StoreItem};
    let store = Store::connect("sqlite::memory:").await.unwrap();
    apply(&store, zfa_update("A1", "2024-03-06T11:00:00", Some(true))).await;
    let reason = route_reason(&store, lab_document("1.2.250.9.1")).await;
    assert_eq!(reason.as_deref(), Some("patient.opposed"));
    // Hold the document as the route stage does.
    let routed = route_item(
        &store,
        lab_document("1.2.250.9.1"),
        &RouteConfig::default(),
        &RegistryCache::default(),
    )
    .await
    .unwrap();
    let Routed::Quarantine(q) = routed else {
        panic!("expected a quarantine")
    };
    store
        .write_batch(&[StoreItem::Quarantine(q)], &[])
        .await
        .unwrap();

    // NA (None), newer: not an INO.
    apply(&store, zfa_update("A2", "2024-03-07T11:00:00", None)).await;
    assert_eq!(
        route_reason(&store, lab_document("1.2.250.9.2"))
            .await
            .as_deref(),
        Some("patient.opposed")
    );
    // INO written before the IO, delivered after it: the opposition stands.
    apply(&store, zfa_update("A0", "2024-03-05T11:00:00", Some(false))).await;
    assert_eq!(
        route_reason(&store, lab_document("1.2.250.9.2"))
            .await
            .as_deref(),
        Some("patient.opposed")
    );
    assert!(
        store
            .quarantine_opposition_lifted(10)
            .await
            .unwrap()
            .is_empty()
    );

    // A newer INO: new documents go through, the waiting case is listed for the sweeper.
    apply(&store, zfa_update("A3", "2024-03-08T11:00:00", Some(false))).await;
    assert_eq!(
        route_reason(&store, lab_document("1.2.250.9.2")).await,
        None
    );
    let ids = store.quarantine_opposition_lifted(10).await.unwrap();
    assert_eq!(ids.len(), 1);
    let cfg = RouteConfig::default();
    assert_eq!(
        super::release_case(&store, &cfg, ids[0]).await.unwrap(),
        super::Release::Filed("stored")
    );
    assert_eq!(
        super::release_case(&store, &cfg, ids[0]).await.unwrap(),
        super::Release::NotOpen
    );
    assert_eq!(store.documents_for_patient(INS_A).await.unwrap().len(), 1);
    assert!(
        store
            .quarantine_opposition_lifted(10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .quarantine_list(Some(QuarantineStatus::Open))
            .await
            .unwrap()
            .len(),
        0
    );
}
