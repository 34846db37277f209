//! Issue #12, registry side: the PAM-FR ZFA state with its dates (DMP status, feeding
//! opposition, consultation consent), the "an older message never overwrites" rule, NA
//! leaving the stored value, the append-only history, and the `patient.opposed` cases the
//! route stage re-routes once the patient no longer opposes. Every scenario runs on SQLite
//! (in memory) and on a real PostgreSQL (a fresh database each, from
//! `DMPFLOW_DATABASE_URL` or the repo's `.stack.env`; no server is a failure, not a skip).

use dmpflow_schemas::{
    CdaOrigin, Document, DocumentMeta, Feed, Lifecycle, Normalized, PartyRef, PatientChange,
    PatientIdentity, PatientUpdate, Quarantined, SourceRef, UpdateTimes,
};
use dmpflow_store::{Store, StoreItem};

const INS: &str = "279035121518989";
const INS_B: &str = "180012A12345678";
const NIR_OID: &str = "1.2.250.1.213.1.4.8";

fn source(control_id: &str, offset: i64) -> SourceRef {
    SourceRef {
        feed: Some(Feed::Identity),
        sender: "GAM^CH-TEST".into(),
        control_id: control_id.into(),
        topic: Some("dmp.feed.identity".into()),
        partition: Some(0),
        offset: Some(offset),
        ..SourceRef::default()
    }
}

fn identity(ins: &str) -> PatientIdentity {
    PatientIdentity {
        ins: ins.into(),
        ins_oid: NIR_OID.into(),
        birth_name: "TESTNOM".into(),
        first_names: vec!["Prenom".into()],
        birth_date: "1979-03-05".into(),
        sex: "F".into(),
        birth_place: Some("75056".into()),
        identity_status: vec!["VALI".into()],
        ..PatientIdentity::default()
    }
}

/// An upsert of `event` sent at `msh7` ('YYYY-MM-DDTHH:MM:SS'), stating nothing in ZFA.
fn update(event: &str, control_id: &str, msh7: &str) -> PatientUpdate {
    PatientUpdate {
        change: PatientChange::Upsert,
        patient: identity(INS),
        feeding_opposed: None,
        dmp_status: None,
        consultation_consent: None,
        times: UpdateTimes {
            message: Some(msh7.into()),
            ..UpdateTimes::default()
        },
        event: event.into(),
        source: source(control_id, 0),
    }
}

/// ZFA-1/2, ZFA-9/10 and ZFA-11/12 as S1a's normalize maps them.
fn with_zfa(
    mut u: PatientUpdate,
    opposed: Option<bool>,
    consent: Option<bool>,
    at: &str,
) -> PatientUpdate {
    u.dmp_status = Some("ACTIF".into());
    u.times.dmp_status = Some(at.into());
    u.feeding_opposed = opposed;
    u.times.feeding_opposed = opposed.map(|_| at.to_string());
    u.consultation_consent = consent;
    u.times.consultation_consent = consent.map(|_| at.to_string());
    u
}

/// The state held, then: the newer A31 wins over an older A08 delivered after it.
async fn state_with_dates_and_stale_updates(store: &Store) {
    let a31 = with_zfa(
        update("A31", "A31-1", "2024-03-06T11:11:54"),
        Some(true),
        Some(true),
        "2024-03-06T11:10:00",
    );
    store.apply_patient_update(&a31).await.unwrap();
    let rec = store.get_patient(INS).await.unwrap().unwrap();
    assert_eq!(rec.feeding_opposition(), Some(true));
    assert!(rec.feeding_opposed, "route reads the opposition");
    assert_eq!(
        rec.feeding_opposed_at.as_deref(),
        Some("2024-03-06T11:10:00")
    );
    assert_eq!(rec.dmp_status.as_deref(), Some("ACTIF"));
    assert_eq!(rec.dmp_status_at.as_deref(), Some("2024-03-06T11:10:00"));
    assert_eq!(rec.consultation_consent, Some(true));
    assert_eq!(
        rec.consultation_consent_at.as_deref(),
        Some("2024-03-06T11:10:00")
    );
    assert_eq!(rec.traits_at.as_deref(), Some("2024-03-06T11:11:54"));

    // An A08 written the day before (older MSH-7 and ZFA dates), delivered after: nothing
    // of it applies, neither values nor traits.
    let mut a08 = with_zfa(
        update("A08", "A08-0", "2024-03-05T09:00:00"),
        Some(false),
        Some(false),
        "2024-03-05T08:00:00",
    );
    a08.dmp_status = Some("FERME".into());
    a08.patient.birth_name = "ANCIEN".into();
    a08.patient.identity_status = vec!["PROV".into()];
    store.apply_patient_update(&a08).await.unwrap();
    assert_eq!(
        store.get_patient(INS).await.unwrap().unwrap(),
        rec,
        "stale A08 changed the registry"
    );

    // A newer MSH-7 whose ZFA-10 is older than the opposition held: the traits it states
    // apply, the opposition stays.
    let mut late = update("A08", "A08-2", "2024-03-07T09:00:00");
    late.patient.birth_name = "NOUVEAU".into();
    late.feeding_opposed = Some(false);
    late.times.feeding_opposed = Some("2024-03-01T00:00:00".into());
    store.apply_patient_update(&late).await.unwrap();
    let after = store.get_patient(INS).await.unwrap().unwrap();
    assert_eq!(after.birth_name, "NOUVEAU");
    assert_eq!(after.feeding_opposition(), Some(true));
    assert_eq!(after.traits_at.as_deref(), Some("2024-03-07T09:00:00"));
}

/// NA (None) in ZFA-9/11 leaves what the registry holds, even from a newer message; a
/// later INO clears the opposition.
async fn not_collected_leaves_the_stored_value(store: &Store) {
    let io = with_zfa(
        update("A28", "A28-1", "2024-03-06T11:11:54"),
        Some(true),
        Some(false),
        "2024-03-06T11:11:54",
    );
    store.apply_patient_update(&io).await.unwrap();
    let na = with_zfa(
        update("A01", "A01-1", "2024-03-08T08:00:00"),
        None,
        None,
        "2024-03-08T08:00:00",
    );
    store.apply_patient_update(&na).await.unwrap();
    let rec = store.get_patient(INS).await.unwrap().unwrap();
    assert_eq!(rec.feeding_opposition(), Some(true));
    assert_eq!(rec.consultation_consent, Some(false));
    assert_eq!(
        rec.feeding_opposed_at.as_deref(),
        Some("2024-03-06T11:11:54")
    );

    let ino = with_zfa(
        update("A31", "A31-2", "2024-03-09T08:00:00"),
        Some(false),
        None,
        "2024-03-09T08:00:00",
    );
    store.apply_patient_update(&ino).await.unwrap();
    let rec = store.get_patient(INS).await.unwrap().unwrap();
    assert_eq!(rec.feeding_opposition(), Some(false));
    assert!(!rec.feeding_opposed);
    assert_eq!(rec.consultation_consent, Some(false), "NA kept the refusal");

    // A patient first seen without ZFA: opposition not collected, no consent.
    let mut other = update("A28", "A28-B", "2024-03-06T11:11:54");
    other.patient = identity(INS_B);
    store.apply_patient_update(&other).await.unwrap();
    let b = store.get_patient(INS_B).await.unwrap().unwrap();
    assert_eq!(b.feeding_opposition(), None);
    assert_eq!(b.consultation_consent, None);
}

/// Each change writes history rows naming the message; stale and NA updates write none;
/// a merge records the retired INS's pointer.
async fn history_rows_for_each_change(store: &Store) {
    let a28 = with_zfa(
        update("A28", "A28-1", "2024-03-06T11:11:54"),
        Some(true),
        Some(true),
        "2024-03-06T11:11:54",
    );
    store.apply_patient_update(&a28).await.unwrap();
    let h = store.patient_history(INS).await.unwrap();
    let fields: Vec<&str> = h.iter().map(|r| r.field.as_str()).collect();
    for f in [
        "identity_status",
        "feeding_opposed",
        "dmp_status",
        "consultation_consent",
        "birth_name",
    ] {
        assert!(fields.contains(&f), "no history row for {f}: {fields:?}");
    }
    let opp = h.iter().find(|r| r.field == "feeding_opposed").unwrap();
    assert_eq!(
        (opp.old_value.as_deref(), opp.new_value.as_deref()),
        (None, Some("IO"))
    );
    assert_eq!(opp.event, "A28");
    assert_eq!(opp.value_time.as_deref(), Some("2024-03-06T11:11:54"));
    assert_eq!(opp.source_sender.as_deref(), Some("GAM^CH-TEST"));
    assert_eq!(opp.source_control_id.as_deref(), Some("A28-1"));
    assert_eq!(opp.source_topic.as_deref(), Some("dmp.feed.identity"));
    assert_eq!(
        (opp.source_partition, opp.source_offset),
        (Some(0), Some(0))
    );
    let name = h.iter().find(|r| r.field == "birth_name").unwrap();
    assert_eq!(
        (name.old_value.as_deref(), name.new_value.as_deref()),
        (None, None),
        "trait values stay out"
    );
    let n = h.len();

    // The same message again, a stale one and an NA one: no rows.
    store.apply_patient_update(&a28).await.unwrap();
    let mut stale = with_zfa(
        update("A08", "A08-0", "2024-03-01T00:00:00"),
        Some(false),
        Some(false),
        "2024-03-01T00:00:00",
    );
    stale.source = source("A08-0", 1);
    store.apply_patient_update(&stale).await.unwrap();
    let na = with_zfa(
        update("A01", "A01-1", "2024-03-07T00:00:00"),
        None,
        None,
        "2024-03-07T00:00:00",
    );
    store.apply_patient_update(&na).await.unwrap();
    assert_eq!(store.patient_history(INS).await.unwrap().len(), n);

    // INO: one row, IO -> INO, from that message.
    let mut ino = with_zfa(
        update("A31", "A31-9", "2024-03-09T00:00:00"),
        Some(false),
        None,
        "2024-03-09T00:00:00",
    );
    ino.source = source("A31-9", 7);
    store.apply_patient_update(&ino).await.unwrap();
    let h = store.patient_history(INS).await.unwrap();
    let last = &h[n..];
    assert_eq!(last.len(), 1, "{last:?}");
    assert_eq!(last[0].field, "feeding_opposed");
    assert_eq!(
        (last[0].old_value.as_deref(), last[0].new_value.as_deref()),
        (Some("IO"), Some("INO"))
    );
    assert_eq!(
        (last[0].source_control_id.as_deref(), last[0].source_offset),
        (Some("A31-9"), Some(7))
    );
    assert!(h.windows(2).all(|w| w[0].id < w[1].id), "oldest first");

    // An A40 merging INS_B into INS: INS_B's history says where it went.
    let mut b = update("A28", "A28-B", "2024-03-06T11:11:54");
    b.patient = identity(INS_B);
    store.apply_patient_update(&b).await.unwrap();
    let mut a40 = update("A40", "A40-1", "2024-03-10T00:00:00");
    a40.change = PatientChange::Merge {
        from_ins: INS_B.into(),
        from_oid: NIR_OID.into(),
    };
    store.apply_patient_update(&a40).await.unwrap();
    let hb = store.patient_history(INS_B).await.unwrap();
    let merged = hb.last().unwrap();
    assert_eq!(merged.field, "merged_into");
    assert_eq!(merged.new_value.as_deref(), Some(INS));
    assert_eq!(merged.event, "A40");
}

fn lab_doc(uid: &str) -> Document {
    Document {
        meta: DocumentMeta {
            unique_id: uid.into(),
            set_id: format!("{uid}.set"),
            version: 1,
            lifecycle: Lifecycle::Initial,
            target_unique_id: None,
            type_code: "11502-2".into(),
            class_code: "10".into(),
            format_code: "urn:ihe:lab:xd-lab:2008".into(),
            title: "CR de biologie".into(),
            patient: identity(INS),
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
                ..SourceRef::default()
            },
        },
        cda: "<ClinicalDocument/>".into(),
        entries: Vec::new(),
    }
}

/// The open `patient.opposed` cases the route stage's sweeper re-routes: only those whose
/// patient (or the survivor it was merged into) no longer opposes.
async fn opposed_cases_listed_once_opposition_lifted(store: &Store) {
    let io = with_zfa(
        update("A28", "A28-1", "2024-03-06T11:11:54"),
        Some(true),
        None,
        "2024-03-06T11:11:54",
    );
    store.apply_patient_update(&io).await.unwrap();
    let held = Quarantined {
        reason: "patient.opposed".into(),
        detail: "patient opposed feeding the DMP".into(),
        item: Normalized::Document(Box::new(lab_doc("1.2.3.4.1"))),
    };
    store
        .write_batch(&[StoreItem::Quarantine(held)], &[])
        .await
        .unwrap();
    assert!(
        store
            .quarantine_opposition_lifted(10)
            .await
            .unwrap()
            .is_empty()
    );
    // NA changes nothing.
    let na = with_zfa(
        update("A08", "A08-1", "2024-03-07T00:00:00"),
        None,
        None,
        "2024-03-07T00:00:00",
    );
    store.apply_patient_update(&na).await.unwrap();
    assert!(
        store
            .quarantine_opposition_lifted(10)
            .await
            .unwrap()
            .is_empty()
    );
    let ino = with_zfa(
        update("A31", "A31-1", "2024-03-08T00:00:00"),
        Some(false),
        None,
        "2024-03-08T00:00:00",
    );
    store.apply_patient_update(&ino).await.unwrap();
    let ids = store.quarantine_opposition_lifted(10).await.unwrap();
    assert_eq!(ids.len(), 1);
    store.quarantine_mark_released(ids[0]).await.unwrap();
    assert!(
        store
            .quarantine_opposition_lifted(10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// `patients import` writes history too (event `import`, no source): an opposition it
/// lifts is on record, and values it does not carry (ZFA status, consent) stay unchanged.
async fn csv_import_writes_history(store: &Store) {
    let a28 = with_zfa(
        update("A28", "A28-1", "2024-03-06T11:11:54"),
        Some(true),
        Some(true),
        "2024-03-06T11:11:54",
    );
    store.apply_patient_update(&a28).await.unwrap();
    let n = store.patient_history(INS).await.unwrap().len();
    let csv = format!(
        "{}\n{INS},{NIR_OID},TESTNOM,Prenom,1979-03-05,F,75056,VALI,false\n",
        dmpflow_store::CSV_HEADER
    );
    store.import_patients_csv(csv.as_bytes()).await.unwrap();
    let h = store.patient_history(INS).await.unwrap();
    let new: Vec<_> = h[n..]
        .iter()
        .map(|r| {
            (
                r.event.as_str(),
                r.field.as_str(),
                r.old_value.as_deref(),
                r.new_value.as_deref(),
                r.source_sender.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        new,
        [("import", "feeding_opposed", Some("IO"), Some("INO"), None)]
    );
    let rec = store.get_patient(INS).await.unwrap().unwrap();
    assert_eq!(rec.dmp_status.as_deref(), Some("ACTIF"));
    assert_eq!(rec.consultation_consent, Some(true));
}

/// A batch of identity updates (upserts, a stale one, a resend, a merge in the middle) is
/// written as the same updates one at a time would be: the same outcomes, records and
/// history rows, in the same order. The store applies a run of upserts with a few
/// statements for the whole run; this is what that must not change. The reference is an
/// in-memory SQLite fed one update per transaction.
async fn a_batch_of_updates_equals_one_at_a_time(store: &Store) {
    // B: the same person under a second INS (the name A takes at R-4), merged into A at R-6.
    let mut b = update("A28", "R-2", "2024-03-06T11:00:00");
    b.patient = identity(INS_B);
    b.patient.birth_name = "NOUVEAU".into();
    b.source = source("R-2", 2);
    let first = with_zfa(
        update("A28", "R-1", "2024-03-06T11:11:54"),
        Some(true),
        Some(true),
        "2024-03-06T11:10:00",
    );
    let mut stale = update("A08", "R-3", "2024-03-05T09:00:00");
    stale.patient.birth_name = "ANCIEN".into();
    stale.source = source("R-3", 3);
    let mut newer = with_zfa(
        update("A31", "R-4", "2024-03-07T09:00:00"),
        Some(false),
        None,
        "2024-03-07T09:00:00",
    );
    newer.patient.birth_name = "NOUVEAU".into();
    newer.source = source("R-4", 4);
    let mut merge = update("A40", "R-6", "2024-03-08T00:00:00");
    merge.change = PatientChange::Merge {
        from_ins: INS_B.into(),
        from_oid: NIR_OID.into(),
    };
    merge.patient.birth_name = "NOUVEAU".into();
    merge.source = source("R-6", 6);
    let mut b_later = with_zfa(
        update("A31", "R-7", "2024-03-09T00:00:00"),
        None,
        Some(false),
        "2024-03-09T00:00:00",
    );
    b_later.patient = identity(INS_B);
    b_later.patient.birth_name = "NOUVEAU".into();
    b_later.patient.first_names = vec!["Autre".into(), "Prenom".into()];
    b_later.source = source("R-7", 7);
    let mut last = with_zfa(
        update("A08", "R-8", "2024-03-09T10:00:00"),
        None,
        Some(true),
        "2024-03-09T10:00:00",
    );
    last.patient.birth_name = "NOUVEAU".into();
    last.patient.identity_status = vec!["PROV".into()];
    last.source = source("R-8", 8);
    let updates = [
        first.clone(),
        b,
        stale,
        newer,
        first, // a resend
        merge,
        b_later,
        last,
    ];

    let reference = sqlite().await;
    let mut one_by_one = Vec::new();
    for u in &updates {
        one_by_one.push(reference.apply_patient_update(u).await.unwrap());
    }
    let items: Vec<StoreItem> = updates.iter().cloned().map(StoreItem::Patient).collect();
    let together = store.write_batch(&items, &[]).await.unwrap();
    assert_eq!(together, one_by_one);

    for ins in [INS, INS_B] {
        assert_eq!(
            store.get_patient(ins).await.unwrap(),
            reference.get_patient(ins).await.unwrap(),
        );
        let rows = |h: Vec<dmpflow_store::PatientHistoryRow>| -> Vec<_> {
            h.into_iter()
                .map(|r| {
                    (
                        r.event,
                        r.field,
                        r.old_value,
                        r.new_value,
                        r.value_time,
                        r.source_control_id,
                        r.source_offset,
                    )
                })
                .collect()
        };
        let got = rows(store.patient_history(ins).await.unwrap());
        assert!(!got.is_empty());
        assert_eq!(got, rows(reference.patient_history(ins).await.unwrap()));
    }
}

// ---- backends ------------------------------------------------------------------------

async fn sqlite() -> Store {
    Store::connect("sqlite::memory:")
        .await
        .expect("in-memory SQLite")
}

async fn postgres(test: &str) -> (Store, String) {
    dmpflow_store::testing::fresh_postgres("dmpflow_registry", test).await
}

use dmpflow_store::testing::dispose;

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {$(
            #[tokio::test]
            async fn $name() {
                super::$name(&super::sqlite().await).await;
            }
        )*}
        mod on_postgres {$(
            #[tokio::test]
            async fn $name() {
                let (store, db) = super::postgres(stringify!($name)).await;
                super::$name(&store).await;
                super::dispose(store, db).await;
            }
        )*}
    };
}

both_backends!(
    state_with_dates_and_stale_updates,
    not_collected_leaves_the_stored_value,
    history_rows_for_each_change,
    opposed_cases_listed_once_opposition_lifted,
    csv_import_writes_history,
    a_batch_of_updates_equals_one_at_a_time,
);
