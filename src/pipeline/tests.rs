//! `route_item` end to end on a real store (in-memory SQLite): identity updates that would
//! take over another patient's registry entry come out as `identity.collision` quarantine
//! cases and leave the registry as it was, whether route or the store's own guard sees it.

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
