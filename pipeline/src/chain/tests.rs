//! `route_item` and the route stage end to end on a real store (in-memory SQLite): identity
//! updates that would take over another patient's registry entry come out as
//! `identity.collision` quarantine cases and leave the registry as it was, whether route or
//! the store's own guard sees it. And (issue #12) the feeding opposition: IO holds
//! documents, NA and stale messages change nothing, a newer INO lets the waiting case be
//! filed through the release path. And a quarantined CDA is held with the bytes normalize
//! packed and filed with them on release, never packed again; a case an earlier build held
//! (XML inside its JSON) still releases. And a run of upserts applied together is applied
//! before the document that follows it is decided.

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

/// A lab ORU^R01 for patient A (the traits of `update`), NIR OID: what route files once the
/// registry knows A, and quarantines as `ins.unknown` before.
fn lab_oru_for_a(msg: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|SIL|LABO|DMPFLOW|DMP|20241105143000||ORU^R01^ORU_R01|{msg}|P|2.5|||||FRA|UNICODE UTF-8\r\
PID|1||{INS_A}^^^ASIP-SANTE-INS-NIR&{NIR}&ISO^INS||PREMIER^Camille^Camille^^^^L||19800517|F||||||||||||||||||||||||VALI\r\
PV1|1|O\r\
ORC|NW|{msg}-CMD^SIL|||||||20241105143000\r\
OBR|1|{msg}-CMD^SIL||24362-6^Ionogramme sanguin^LN|||20241105080000|||||||||10003456789^DUPONT^CLAIRE||||||20241105143000|||F|||||||801234567866&BIOLO&ANNE\r\
OBX|1|NM|2823-3^Potassium^LN||4.2|mmol/L|3.5-5.1|N|||F|||20241105080000\r"
    )
    .into_bytes()
}

/// The one open case: its id and its document.
async fn the_open_case(store: &Store) -> (i64, dmpflow_schemas::Document) {
    use dmpflow_store::QuarantineStatus;
    let open = store
        .quarantine_list(Some(QuarantineStatus::Open))
        .await
        .unwrap();
    let [case] = open.as_slice() else {
        panic!("one open case, got {}", open.len())
    };
    let Normalized::Document(d) = &case.item else {
        panic!("a document case")
    };
    (case.id, (**d).clone())
}

// The issue "one CDA body type": the normalize stage packs the CDA once; the case route
// quarantines is held with those bytes (not inflated into its JSON), and release files
// them as they are.
#[tokio::test]
async fn a_quarantined_cda_is_held_and_filed_with_the_bytes_normalize_made() {
    use std::sync::Arc;

    use dmpflow_schemas::{Cda, wire};
    use rdkafka::message::OwnedMessage;

    use crate::config::Settings;
    use crate::embedded::Chain;
    use crate::stages::NormalizeStage;

    let settings = Settings::default();
    let raw = lab_oru_for_a("Q1");
    // What the normalize stage produces for this message: the CDA packed, once.
    let input = OwnedMessage::new(
        Some(raw.clone()),
        None,
        settings.topics.feed(Feed::Lab),
        rdkafka::Timestamp::NotAvailable,
        0,
        0,
        None,
    );
    let handled = NormalizeStage::new(Arc::new(settings.clone())).decide(&[input]);
    let [out] = handled.produced.outputs.as_slice() else {
        panic!("one document out of normalize")
    };
    let Normalized::Document(made) = wire::decode(&out.payload).unwrap() else {
        panic!("a document")
    };
    let made = made.cda.as_packed().expect("normalize packs").clone();

    // The whole chain (normalize, route, store) over a registry that does not know A yet.
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let mut chain = Chain::new(store.clone(), settings);
    chain.message(Feed::Lab, &raw).await.unwrap();
    let summary = chain.finish().await.unwrap();
    assert_eq!(summary.quarantined, 1, "{summary:?}");
    let (id, held) = the_open_case(&store).await;
    assert_eq!(
        held.cda,
        Cda::Packed(made.clone()),
        "the case holds normalize's bytes"
    );

    apply(
        &store,
        update(PatientChange::Upsert, INS_A, "PREMIER", "U1"),
    )
    .await;
    assert_eq!(
        super::release_case(&store, &RouteConfig::default(), id)
            .await
            .unwrap(),
        super::Release::Filed("stored")
    );
    let uid = &held.meta.unique_id;
    assert_eq!(
        store.get_document_packed(uid).await.unwrap(),
        Some(made.clone()),
        "filed with normalize's bytes"
    );
    assert_eq!(
        store.get_document_cda(uid).await.unwrap(),
        Some(made.unpack().unwrap())
    );
}

// Bytes that packing again could never give back (gzip, as builds before zstd wrote): found
// stored after the release, they prove the case was filed without packing it again.
#[tokio::test]
async fn a_released_case_is_filed_without_packing_its_cda_again() {
    use std::io::Write;

    use dmpflow_schemas::{Cda, PackedCda, Quarantined};
    use dmpflow_store::StoreItem;

    let store = Store::connect("sqlite::memory:").await.unwrap();
    let Normalized::Document(mut d) = lab_document("1.2.250.9.7") else {
        unreachable!()
    };
    let xml = "<ClinicalDocument>gzip, as an earlier build packed it</ClinicalDocument>";
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(xml.as_bytes()).unwrap();
    let held = PackedCda {
        bytes: gz.finish().unwrap(),
        sha256: PackedCda::pack(xml).sha256,
        size: xml.len() as i64,
    };
    d.cda = Cda::Packed(held.clone());
    let case = Quarantined {
        reason: "ins.unknown".into(),
        detail: String::new(),
        item: Normalized::Document(d),
    };
    store
        .write_batch(&[StoreItem::Quarantine(case)], &[])
        .await
        .unwrap();
    let (id, _) = the_open_case(&store).await;
    apply(
        &store,
        update(PatientChange::Upsert, INS_A, "PREMIER", "U1"),
    )
    .await;
    assert_eq!(
        super::release_case(&store, &RouteConfig::default(), id)
            .await
            .unwrap(),
        super::Release::Filed("stored")
    );
    assert_eq!(
        store.get_document_packed("1.2.250.9.7").await.unwrap(),
        Some(held)
    );
    assert_eq!(
        store
            .get_document_cda("1.2.250.9.7")
            .await
            .unwrap()
            .as_deref(),
        Some(xml)
    );
}

// A case held by a build before migration 0008: its XML inside the JSON, no bytes column.
// After the upgrade it still releases, its XML packed once, when filed.
#[tokio::test]
async fn a_case_held_by_an_earlier_build_still_releases() {
    let dir = std::env::temp_dir().join(format!("dmpflow-chain-0008-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let before = dir.join("migrations");
    std::fs::create_dir_all(&before).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../store/migrations/sqlite");
    for f in std::fs::read_dir(&all).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0008" {
            std::fs::copy(&f, before.join(&name)).unwrap();
        }
    }
    let url = format!("sqlite://{}", dir.join("old.db").display());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    // The row as those builds wrote it: the item's JSON with the XML inline, put together
    // field by field (not by today's serialiser), and the 15 columns they knew.
    let Normalized::Document(d) = lab_document("1.2.250.9.8") else {
        unreachable!()
    };
    let xml = d.cda.as_xml().unwrap().to_owned();
    let payload = format!(
        r#"{{"type":"document","meta":{},"cda":{},"entries":[]}}"#,
        serde_json::to_string(&d.meta).unwrap(),
        serde_json::to_string(&xml).unwrap()
    );
    sqlx::query(
        "INSERT INTO quarantine (reason, detail, item_key, unique_id, payload, source_feed, \
         source_sender, source_control_id, source_position, source_topic, source_partition, \
         source_offset, status, created_at, patient_ins) VALUES ('ins.unknown', '', \
         'doc:1.2.250.9.8', '1.2.250.9.8', $1, 'lab', 'LABO', '1.2.250.9.8-msg', 0, NULL, NULL, \
         NULL, 'open', '2026-03-01T10:00:00.000000Z', $2)",
    )
    .bind(payload)
    .bind(INS_A)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = Store::connect(&url).await.expect("0008 applies");
    let (id, held) = the_open_case(&store).await;
    assert_eq!(held, *d, "read back as its XML document");
    apply(
        &store,
        update(PatientChange::Upsert, INS_A, "PREMIER", "U1"),
    )
    .await;
    assert_eq!(
        super::release_case(&store, &RouteConfig::default(), id)
            .await
            .unwrap(),
        super::Release::Filed("stored")
    );
    assert_eq!(
        store.get_document_cda("1.2.250.9.8").await.unwrap(),
        Some(xml.clone())
    );
    assert_eq!(
        store.get_document_packed("1.2.250.9.8").await.unwrap(),
        Some(dmpflow_schemas::PackedCda::pack(&xml))
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// Issue #15: the route stage forwards a document routed to the INS it names as its very
// bytes (peeked, not read whole); a merged patient's document is read whole and leaves
// under the surviving INS; a case, an unknown patient and a bad payload go as before.
#[tokio::test]
async fn route_forwards_a_document_as_it_came_and_rewrites_only_what_a_merge_moves() {
    use std::sync::Arc;

    use dmpflow_schemas::{Cda, PackedCda, wire};
    use tokio_util::sync::CancellationToken;

    use crate::config::Settings;
    use crate::stages::{BatchCtx, RouteStage, Stage};

    let store = Store::connect("sqlite::memory:").await.unwrap();
    apply(
        &store,
        update(PatientChange::Upsert, INS_A, "PREMIER", "U1"),
    )
    .await;
    // B: the same person under a second INS, then merged into A.
    apply(
        &store,
        update(PatientChange::Upsert, INS_B, "PREMIER", "U2"),
    )
    .await;
    apply(
        &store,
        update(
            PatientChange::Merge {
                from_ins: INS_B.into(),
                from_oid: NIR.into(),
            },
            INS_A,
            "PREMIER",
            "U3",
        ),
    )
    .await;
    let payload = |uid: &str, ins: &str| {
        let Normalized::Document(mut d) = lab_document(uid) else {
            unreachable!()
        };
        d.meta.patient.ins = ins.into();
        d.cda = Cda::Packed(PackedCda::pack("<ClinicalDocument/>"));
        wire::encode(&Normalized::Document(d))
    };
    let settings = Settings::default();
    let inputs = [
        payload("1.2.250.9.1", INS_A),
        payload("1.2.250.9.2", INS_B),
        payload("1.2.250.9.3", "180017512300045"),
        b"{\"type\":\"document\"}\nnot a payload".to_vec(),
    ];
    let batch = on_documents_topic(&settings, &inputs);
    let mut stage = RouteStage::new(Arc::new(settings.clone()), store);
    let shutdown = CancellationToken::new();
    let ctx = BatchCtx::detached(&shutdown);
    let handled = stage.handle(&batch, &ctx).await.unwrap();
    let out = &handled.produced.outputs;
    assert_eq!(handled.produced.origins, [0, 1, 2, 3]);
    // A's document: the input's own bytes, to the routed topic, keyed by A.
    assert_eq!(out[0].topic, settings.topics.routed);
    assert_eq!(out[0].payload, inputs[0], "forwarded as it came");
    assert_eq!(out[0].key.as_deref(), Some(INS_A));
    // B's document: filed under A (the surviving INS), its head written again.
    assert_eq!(out[1].topic, settings.topics.routed);
    assert_eq!(out[1].key.as_deref(), Some(INS_A));
    assert_ne!(out[1].payload, inputs[1]);
    let Normalized::Document(moved) = wire::decode(&out[1].payload).unwrap() else {
        panic!("a document")
    };
    assert_eq!(moved.meta.patient.ins, INS_A);
    let Normalized::Document(sent) = wire::decode(&inputs[1]).unwrap() else {
        unreachable!()
    };
    assert_eq!(moved.cda, sent.cda, "the CDA bytes pass untouched");
    // An unknown patient: a quarantine case; a bad payload: a dead letter.
    assert_eq!(out[2].topic, settings.topics.quarantine);
    assert_eq!(out[3].topic, settings.topics.dlq);
}

// The route stage applies a run of identity upserts in one transaction, held back until the
// run ends: a document is still decided on the registry as the updates before it in the
// batch left it (the patient created just before: routed, not `ins.unknown`; the opposition
// stated just before: held), a refused upsert is quarantined at its own place, and the
// outputs and outcomes keep the batch's order.
#[tokio::test]
async fn route_applies_a_run_of_upserts_before_the_next_document_is_decided() {
    use std::sync::Arc;

    use dmpflow_schemas::{Cda, PackedCda, wire};
    use tokio_util::sync::CancellationToken;

    use crate::config::Settings;
    use crate::outcome::Kind;
    use crate::stages::{BatchCtx, RouteStage, Stage};

    let store = Store::connect("sqlite::memory:").await.unwrap();
    let document = |uid: &str, ins: &str| {
        let Normalized::Document(mut d) = lab_document(uid) else {
            unreachable!()
        };
        d.meta.patient.ins = ins.into();
        if ins == INS_B {
            d.meta.patient.birth_name = "SECOND".into();
        }
        d.cda = Cda::Packed(PackedCda::pack("<ClinicalDocument/>"));
        wire::encode(&Normalized::Document(d))
    };
    let mut ambiguous = update(PatientChange::Upsert, INS_B, "SECOND", "U9");
    if let Normalized::Patient(u) = &mut ambiguous {
        u.patient.other_ins = vec![INS_A.into()];
    }
    let inputs = [
        wire::encode(&update(PatientChange::Upsert, INS_A, "PREMIER", "U1")),
        document("1.2.250.9.1", INS_A),
        wire::encode(&zfa_update("U2", "2024-03-06T11:00:00", Some(true))),
        wire::encode(&ambiguous),
        wire::encode(&update(PatientChange::Upsert, INS_B, "SECOND", "U3")),
        document("1.2.250.9.2", INS_A),
        document("1.2.250.9.3", INS_B),
    ];
    let settings = Settings::default();
    let batch = on_documents_topic(&settings, &inputs);
    let mut stage = RouteStage::new(Arc::new(settings.clone()), store.clone());
    let shutdown = CancellationToken::new();
    let handled = stage
        .handle(&batch, &BatchCtx::detached(&shutdown))
        .await
        .unwrap();

    let kinds: Vec<(usize, Kind)> = handled
        .report
        .outcomes
        .iter()
        .map(|o| (o.origin, o.kind.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (0, Kind::Patient),
            (1, Kind::Routed),
            (2, Kind::Patient),
            (3, Kind::Quarantined("identity.ambiguous".into())),
            (4, Kind::Patient),
            (5, Kind::Quarantined("patient.opposed".into())),
            (6, Kind::Routed),
        ]
    );
    let out = &handled.produced.outputs;
    assert_eq!(handled.produced.origins, [1, 3, 5, 6]);
    assert_eq!(out[0].topic, settings.topics.routed);
    assert_eq!(out[0].payload, inputs[1], "A's first document, as it came");
    assert_eq!(out[1].topic, settings.topics.quarantine);
    let case = wire::decode_quarantined(&out[1].payload).unwrap();
    assert!(matches!(case.item, Normalized::Patient(_)));
    assert_eq!(out[2].topic, settings.topics.quarantine);
    assert_eq!(out[3].topic, settings.topics.routed);
    assert_eq!(out[3].key.as_deref(), Some(INS_B));

    // The registry holds what the accepted upserts said, the refused one left nothing.
    let (a, b) = registry(&store).await;
    assert!(a.feeding_opposed);
    assert_eq!(b.birth_name, "SECOND");
}

/// `payloads` as the route stage reads them: messages of `dmp.documents`, partition 0, at
/// offsets 0, 1, ...
fn on_documents_topic(
    settings: &crate::config::Settings,
    payloads: &[Vec<u8>],
) -> Vec<rdkafka::message::OwnedMessage> {
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            rdkafka::message::OwnedMessage::new(
                Some(p.clone()),
                None,
                settings.topics.documents.clone(),
                rdkafka::Timestamp::NotAvailable,
                0,
                i as i64,
                None,
            )
        })
        .collect()
}
