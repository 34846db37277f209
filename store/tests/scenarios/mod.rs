//! Store scenarios shared by the SQLite and PostgreSQL test files: each function takes a
//! freshly migrated, empty `Store`, so both backends run the very same test body.

#![allow(dead_code)]

pub mod consult;

use std::time::Instant;

use dmpflow_schemas::{
    Cda, CdaOrigin, Document, DocumentMeta, Entry, Feed, Lifecycle, Normalized, PackedCda, Packing,
    PartyRef, PatientChange, PatientIdentity, PatientRecord, PatientUpdate, Quarantined, SourceRef,
};
use dmpflow_store::{
    DocStatus, ItemOutcome, OffsetCommit, QuarantineStatus, Store, StoreError, StoreItem,
};

pub const INS_A: &str = "279035121518989";
pub const INS_B: &str = "180012A12345678";
const NIR_OID: &str = "1.2.250.1.213.1.4.8";
pub const TOPIC: &str = "dmp.routed";
pub const GROUP: &str = "dmpflow-store";

fn source(control_id: &str, position: u32, offset: i64) -> SourceRef {
    SourceRef {
        feed: Some(Feed::Lab),
        sender: "LABO^FINESS123".into(),
        control_id: control_id.into(),
        position,
        topic: Some("dmp.feed.lab".into()),
        partition: Some(0),
        offset: Some(offset),
        // No hash: the payloads of earlier builds, deduplicated on the control id alone.
        content_hash: String::new(),
    }
}

fn identity(ins: &str) -> PatientIdentity {
    PatientIdentity {
        ins: ins.into(),
        ins_oid: NIR_OID.into(),
        ipp: None,
        ipp_authority: None,
        birth_name: "TESTNOM".into(),
        first_names: vec!["Prenom".into(), "Second".into()],
        birth_date: "1979-03-05".into(),
        sex: "F".into(),
        birth_place: Some("75056".into()),
        identity_status: vec!["VALI".into()],
        other_ins: Vec::new(),
    }
}

pub fn glucose(value: &str, time: &str) -> Entry {
    Entry::LabObservation {
        loinc: "2345-7".into(),
        label: "Glucose".into(),
        value: value.into(),
        value_type: "NM".into(),
        unit: Some("mmol/L".into()),
        interpretation: Some("N".into()),
        reference_low: Some("3.9".into()),
        reference_high: Some("5.5".into()),
        reference_text: None,
        status: "F".into(),
        time: Some(time.into()),
    }
}

fn cda_for(unique_id: &str, filler: usize) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ClinicalDocument xmlns=\"urn:hl7-org:v3\">\
         <id root=\"{unique_id}\"/><title>Compte rendu d'examens biologiques — résultats</title>{}\
         </ClinicalDocument>",
        "<component><observation><code code=\"2345-7\"/><value value=\"5.1\" unit=\"mmol/L\"/></observation></component>"
            .repeat(filler)
    )
}

/// A lab document. `msg` is the MSH-10 of the carrying message.
pub fn doc(
    unique_id: &str,
    set_id: &str,
    lifecycle: Lifecycle,
    target: Option<&str>,
    ins: &str,
    msg: &str,
    offset: i64,
) -> Document {
    Document {
        meta: DocumentMeta {
            unique_id: unique_id.into(),
            set_id: set_id.into(),
            version: match lifecycle {
                Lifecycle::Initial => 1,
                _ => 2,
            },
            lifecycle,
            target_unique_id: target.map(str::to_owned),
            type_code: "11502-2".into(),
            class_code: "10".into(),
            format_code: "urn:ihe:lab:xd-lab:2008".into(),
            title: "CR de biologie".into(),
            patient: identity(ins),
            author: PartyRef {
                person_id: Some("810000000001".into()),
                organisation_id: Some("1123456789".into()),
            },
            creation_time: "20260301101500+0100".into(),
            service_start: Some("20260301080000+0100".into()),
            service_stop: None,
            confidentiality: "N".into(),
            visibility: vec!["MASQUE_PS".into()],
            practice_setting: None,
            ignored_attachments: 0,
            origin: CdaOrigin::Generated,
            source: source(msg, 0, offset),
        },
        cda: Cda::Xml(cda_for(unique_id, 4)),
        entries: vec![glucose("5.1", "20260301080000+0100")],
    }
}

fn initial(uid: &str, set: &str, msg: &str) -> Document {
    doc(uid, set, Lifecycle::Initial, None, INS_A, msg, 0)
}

fn offset(partition: i32, next: i64) -> OffsetCommit {
    OffsetCommit {
        group: GROUP.into(),
        topic: TOPIC.into(),
        partition,
        next_offset: next,
    }
}

fn items(docs: impl IntoIterator<Item = Document>) -> Vec<StoreItem> {
    docs.into_iter().map(StoreItem::Document).collect()
}

/// The same message three times (three batches, then three times in one batch, then a
/// sender retry with a new uniqueId) → one row.
pub async fn same_message_three_times(store: &Store) {
    let d = initial("1.2.3.1", "1.2.3.100", "MSG1");
    for expected in [
        ItemOutcome::Stored,
        ItemOutcome::Duplicate,
        ItemOutcome::Duplicate,
    ] {
        let out = store.write_batch(&items([d.clone()]), &[]).await.unwrap();
        assert_eq!(out, vec![expected]);
    }
    let d2 = initial("1.2.3.2", "1.2.3.200", "MSG2");
    let out = store
        .write_batch(&items([d2.clone(), d2.clone(), d2]), &[])
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            ItemOutcome::Stored,
            ItemOutcome::Duplicate,
            ItemOutcome::Duplicate
        ]
    );
    // Same MSH-10 and position, different uniqueId: the sender's retry, not a new document.
    let retry = initial("1.2.3.3", "1.2.3.300", "MSG2");
    assert_eq!(
        store.write_batch(&items([retry]), &[]).await.unwrap(),
        [ItemOutcome::Duplicate]
    );
    assert_eq!(store.document_count().await.unwrap(), 2);
}

/// A batch (with its offsets) written twice leaves the same rows, audit and offsets.
pub async fn batch_replayed_twice(store: &Store) {
    let batch = items((0..50).map(|i| {
        let mut d = doc(
            &format!("1.2.4.{i}"),
            &format!("1.2.4.{i}.set"),
            Lifecycle::Initial,
            None,
            INS_A,
            &format!("R{i}"),
            i,
        );
        // Half state their practice setting (XDS practiceSettingCode), half do not.
        if i % 2 == 0 {
            d.meta.practice_setting = Some("ETABLISSEMENT".into());
        }
        d
    }));
    let offs = [offset(0, 50), offset(1, 7)];
    let first = store.write_batch(&batch, &offs).await.unwrap();
    assert!(first.iter().all(|o| *o == ItemOutcome::Stored));
    let counts = store.counts_by_feed_and_outcome().await.unwrap();
    let docs = store.documents_for_patient(INS_A).await.unwrap();
    let stated = |setting: Option<&str>| {
        docs.iter()
            .filter(|d| d.practice_setting.as_deref() == setting)
            .count()
    };
    assert_eq!((stated(Some("ETABLISSEMENT")), stated(None)), (25, 25));
    let second = store.write_batch(&batch, &offs).await.unwrap();
    assert!(second.iter().all(|o| *o == ItemOutcome::Duplicate));
    assert_eq!(store.document_count().await.unwrap(), 50);
    assert_eq!(store.counts_by_feed_and_outcome().await.unwrap(), counts);
    assert_eq!(store.documents_for_patient(INS_A).await.unwrap(), docs);
    assert_eq!(counts, [("lab".to_string(), "stored".to_string(), 50)]);
    assert_eq!(
        store.committed_offsets(GROUP, TOPIC).await.unwrap(),
        [(0, 50), (1, 7)]
    );
}

/// initial → replacement → deletion: supersede, logical delete, audit rows; replays are
/// duplicates.
pub async fn lifecycle_initial_replace_delete(store: &Store) {
    let set = "1.2.5.set";
    let a = initial("1.2.5.1", set, "L1");
    let b = doc("1.2.5.2", set, Lifecycle::Replace, None, INS_A, "L2", 1);
    // Initial and replacement in one batch behave as if they came one by one.
    let out = store
        .write_batch(&items([a, b.clone()]), &[])
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            ItemOutcome::Stored,
            ItemOutcome::Replaced {
                superseded: "1.2.5.1".into()
            }
        ]
    );
    let rows = store.documents_for_patient(INS_A).await.unwrap();
    let st: Vec<_> = rows
        .iter()
        .map(|r| (r.unique_id.as_str(), r.seq, r.status))
        .collect();
    assert_eq!(
        st,
        [
            ("1.2.5.1", 1, DocStatus::Superseded),
            ("1.2.5.2", 2, DocStatus::Current)
        ]
    );
    assert_eq!(rows[1].visibility, ["MASQUE_PS"]);
    assert_eq!(rows[1].lifecycle, "replace");

    // A second replacement, naming its target explicitly.
    let c = doc(
        "1.2.5.3",
        set,
        Lifecycle::Replace,
        Some("1.2.5.2"),
        INS_A,
        "L3",
        2,
    );
    assert_eq!(
        store.write_batch(&items([c]), &[]).await.unwrap(),
        [ItemOutcome::Replaced {
            superseded: "1.2.5.2".into()
        }]
    );
    // Replacing a superseded version is not guessed into a fork.
    let fork = doc(
        "1.2.5.9",
        set,
        Lifecycle::Replace,
        Some("1.2.5.1"),
        INS_A,
        "L9",
        9,
    );
    assert_eq!(
        store.write_batch(&items([fork]), &[]).await.unwrap(),
        [ItemOutcome::Quarantined(
            "lifecycle.target.not_current".into()
        )]
    );

    // Deletion by set (MDM^T04 without TXA-13): the current version goes.
    let del = doc("1.2.5.4", set, Lifecycle::Delete, None, INS_A, "L4", 3);
    assert_eq!(
        store.write_batch(&items([del.clone()]), &[]).await.unwrap(),
        [ItemOutcome::Deleted {
            target: "1.2.5.3".into()
        }]
    );
    assert_eq!(
        store.write_batch(&items([del]), &[]).await.unwrap(),
        [ItemOutcome::Duplicate]
    );
    // Replaying the replacement after the deletion changes nothing either.
    assert_eq!(
        store.write_batch(&items([b]), &[]).await.unwrap(),
        [ItemOutcome::Duplicate]
    );

    let rows = store.documents_for_patient(INS_A).await.unwrap();
    let st: Vec<_> = rows.iter().map(|r| (r.seq, r.status)).collect();
    assert_eq!(
        st,
        [
            (1, DocStatus::Superseded),
            (2, DocStatus::Superseded),
            (3, DocStatus::Deleted)
        ]
    );
    // Deleted documents are kept (logical delete) with their CDA.
    assert!(store.get_document_cda("1.2.5.3").await.unwrap().is_some());

    let actions =
        |v: Vec<dmpflow_store::AuditEntry>| v.into_iter().map(|a| a.action).collect::<Vec<_>>();
    assert_eq!(
        actions(store.audit_for_document("1.2.5.1").await.unwrap()),
        ["stored", "superseded"]
    );
    assert_eq!(
        actions(store.audit_for_document("1.2.5.2").await.unwrap()),
        ["replaced", "superseded"]
    );
    assert_eq!(
        actions(store.audit_for_document("1.2.5.3").await.unwrap()),
        ["replaced", "deleted"]
    );
    let deleted = store
        .audit_for_document("1.2.5.3")
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (deleted.source_topic.as_deref(), deleted.source_offset),
        (Some("dmp.feed.lab"), Some(3))
    );

    // Deletion naming an explicit target, and of the document itself (T04 on its own id).
    let x = initial("1.2.5.20", "1.2.5.set2", "L20");
    let y = initial("1.2.5.30", "1.2.5.set3", "L30");
    store.write_batch(&items([x, y]), &[]).await.unwrap();
    let del_x = doc(
        "1.2.5.21",
        "1.2.5.set2",
        Lifecycle::Delete,
        Some("1.2.5.20"),
        INS_A,
        "L21",
        21,
    );
    let del_y = doc(
        "1.2.5.30",
        "1.2.5.set3",
        Lifecycle::Delete,
        None,
        INS_A,
        "L31",
        31,
    );
    assert_eq!(
        store
            .write_batch(&items([del_x, del_y]), &[])
            .await
            .unwrap(),
        [
            ItemOutcome::Deleted {
                target: "1.2.5.20".into()
            },
            ItemOutcome::Deleted {
                target: "1.2.5.30".into()
            }
        ]
    );
    assert_eq!(store.document_count().await.unwrap(), 5);
}

/// A replacement (or deletion) of an unknown document goes to quarantine, once; after the
/// target arrives and the entry is released, the re-routed item is stored.
pub async fn unknown_target_goes_to_quarantine(store: &Store) {
    let r = doc(
        "1.2.6.2",
        "1.2.6.set",
        Lifecycle::Replace,
        Some("1.2.6.1"),
        INS_A,
        "Q2",
        5,
    );
    let d = doc(
        "1.2.6.9",
        "1.2.6.other",
        Lifecycle::Delete,
        None,
        INS_A,
        "Q9",
        6,
    );
    let reason = "lifecycle.target.unknown".to_string();
    let out = store
        .write_batch(&items([r.clone(), d]), &[])
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            ItemOutcome::Quarantined(reason.clone()),
            ItemOutcome::Quarantined(reason.clone())
        ]
    );
    assert_eq!(
        store.write_batch(&items([r.clone()]), &[]).await.unwrap(),
        [ItemOutcome::Duplicate]
    );
    assert_eq!(store.document_count().await.unwrap(), 0);

    let open = store
        .quarantine_list(Some(QuarantineStatus::Open))
        .await
        .unwrap();
    assert_eq!(open.len(), 2);
    assert_eq!(open[0].reason, reason);
    assert_eq!(open[0].unique_id.as_deref(), Some("1.2.6.2"));
    assert_eq!(open[0].source_offset, Some(5));
    assert_eq!(open[0].item, Normalized::Document(Box::new(r.clone())));

    // The target arrives late; ops release the entry and re-route it.
    store
        .write_batch(&items([initial("1.2.6.1", "1.2.6.set", "Q1")]), &[])
        .await
        .unwrap();
    let id = open[0].id;
    assert!(store.quarantine_mark_released(id).await.unwrap());
    assert!(!store.quarantine_mark_released(id).await.unwrap());
    let entry = store.quarantine_get(id).await.unwrap().unwrap();
    assert_eq!(entry.status, QuarantineStatus::Released);
    assert!(entry.released_at.is_some());
    let Normalized::Document(again) = entry.item else {
        panic!("document expected")
    };
    assert_eq!(
        store
            .write_batch(&[StoreItem::Document(*again)], &[])
            .await
            .unwrap(),
        [ItemOutcome::Replaced {
            superseded: "1.2.6.1".into()
        }]
    );
    assert_eq!(
        store
            .quarantine_list(Some(QuarantineStatus::Open))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.quarantine_list(None).await.unwrap().len(), 2);
    assert!(store.quarantine_get(9999).await.unwrap().is_none());

    // A route quarantine item: stored once, a replay is a duplicate, and once the document
    // is stored a late replay of the quarantine item is a duplicate too.
    let q = Quarantined {
        reason: "identity.traits.mismatch".into(),
        detail: "birth_name differs".into(),
        item: Normalized::Document(Box::new(initial("1.2.6.50", "1.2.6.set50", "Q50"))),
    };
    let qi = StoreItem::Quarantine(q);
    assert_eq!(
        store
            .write_batch(&[qi.clone(), qi.clone()], &[])
            .await
            .unwrap(),
        [
            ItemOutcome::Quarantined("identity.traits.mismatch".into()),
            ItemOutcome::Duplicate
        ]
    );
    let counts = store.counts_by_feed_and_outcome().await.unwrap();
    assert!(
        counts.contains(&("lab".into(), "quarantined".into(), 3)),
        "{counts:?}"
    );
}

/// Offsets commit with the documents: a failing batch leaves neither its documents nor
/// its offsets.
pub async fn offsets_commit_with_documents(store: &Store) {
    let good = items([
        initial("1.2.7.1", "1.2.7.s1", "O1"),
        initial("1.2.7.2", "1.2.7.s2", "O2"),
    ]);
    store
        .write_batch(&good, &[offset(0, 10), offset(3, 4)])
        .await
        .unwrap();
    assert_eq!(
        store.committed_offsets(GROUP, TOPIC).await.unwrap(),
        [(0, 10), (3, 4)]
    );

    // The last document has no uniqueId: the database refuses it (CHECK). It comes after
    // 100 good ones, so the first multi-row INSERT (100 rows) already ran in the same
    // transaction when the second one fails.
    let mut failing = items((0..100).map(|i| {
        initial(
            &format!("1.2.7.3.{i}"),
            &format!("1.2.7.s3.{i}"),
            &format!("O3.{i}"),
        )
    }));
    failing.extend(items([initial("", "1.2.7.s4", "O4")]));
    let e = store
        .write_batch(&failing, &[offset(0, 20), offset(1, 5)])
        .await
        .unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert!(matches!(e, StoreError::Database { .. }), "{e}");
    assert_eq!(store.document_count().await.unwrap(), 2);
    assert!(store.get_document_cda("1.2.7.3.0").await.unwrap().is_none());
    assert_eq!(
        store.committed_offsets(GROUP, TOPIC).await.unwrap(),
        [(0, 10), (3, 4)]
    );
    assert!(
        store
            .committed_offsets("other-group", TOPIC)
            .await
            .unwrap()
            .is_empty()
    );

    // Offsets alone (e.g. a batch of duplicates) still move forward.
    store.write_batch(&good, &[offset(0, 12)]).await.unwrap();
    assert_eq!(
        store.committed_offsets(GROUP, TOPIC).await.unwrap(),
        [(0, 12), (3, 4)]
    );
}

fn patient_update(change: PatientChange, ins: &str, msg: &str) -> PatientUpdate {
    PatientUpdate {
        change,
        patient: identity(ins),
        feeding_opposed: Some(false),
        dmp_status: Some("ACTIF".into()),
        consultation_consent: None,
        times: Default::default(),
        event: String::new(),
        source: SourceRef {
            feed: Some(Feed::Identity),
            ..source(msg, 0, 0)
        },
    }
}

/// A40 merge, then lookups by the old and the surviving INS; A47 on an unknown INS.
pub async fn merge_then_lookups(store: &Store) {
    let old = patient_update(PatientChange::Upsert, INS_B, "P1");
    assert_eq!(
        store.apply_patient_update(&old).await.unwrap(),
        ItemOutcome::PatientUpdated
    );
    assert_eq!(
        store.apply_patient_update(&old).await.unwrap(),
        ItemOutcome::Duplicate
    );
    // A document filed under the INS that will disappear.
    let d = doc(
        "1.2.8.1",
        "1.2.8.set",
        Lifecycle::Initial,
        None,
        INS_B,
        "P-DOC",
        0,
    );
    store.write_batch(&items([d]), &[]).await.unwrap();

    let merge = patient_update(
        PatientChange::Merge {
            from_ins: INS_B.into(),
            from_oid: NIR_OID.into(),
        },
        INS_A,
        "P2",
    );
    // Through write_batch, with an offset, like the runtime does.
    let out = store
        .write_batch(&[StoreItem::Patient(merge.clone())], &[offset(2, 99)])
        .await
        .unwrap();
    assert_eq!(out, [ItemOutcome::PatientMerged]);
    assert_eq!(
        store.apply_patient_update(&merge).await.unwrap(),
        ItemOutcome::Duplicate
    );
    assert_eq!(
        store.committed_offsets(GROUP, TOPIC).await.unwrap(),
        [(2, 99)]
    );

    let a = store.get_patient(INS_A).await.unwrap().unwrap();
    assert_eq!(a.merged_into, None);
    assert_eq!(a.first_names, ["Prenom", "Second"]);
    assert_eq!(a.identity_status, "VALI");
    assert!(!a.feeding_opposed);
    let b = store.get_patient(INS_B).await.unwrap().unwrap();
    assert_eq!(b.merged_into.as_deref(), Some(INS_A));
    // The batch read route uses gives the same records, and nothing for an unknown INS.
    let many = store
        .get_patients(&[INS_A, INS_B, "100000000000000"])
        .await
        .unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[INS_A], a);
    assert_eq!(many[INS_B], b);
    // The survivor's record includes the merged INS's documents.
    let docs = store.documents_for_patient(INS_A).await.unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0].patient_ins, INS_B);
    assert_eq!(
        store
            .results_for_loinc(INS_A, "2345-7")
            .await
            .unwrap()
            .len(),
        1
    );

    // A47 from an INS the registry never knew: a stub points to the new INS, and what was
    // merged into the old INS follows.
    const INS_C: &str = "299999999999999";
    let change = patient_update(
        PatientChange::IdentifierChange {
            old_ins: INS_A.into(),
            old_oid: NIR_OID.into(),
        },
        INS_C,
        "P3",
    );
    assert_eq!(
        store.apply_patient_update(&change).await.unwrap(),
        ItemOutcome::PatientMerged
    );
    assert_eq!(
        store
            .get_patient(INS_A)
            .await
            .unwrap()
            .unwrap()
            .merged_into
            .as_deref(),
        Some(INS_C)
    );
    assert_eq!(
        store
            .get_patient(INS_B)
            .await
            .unwrap()
            .unwrap()
            .merged_into
            .as_deref(),
        Some(INS_C)
    );
    assert_eq!(store.documents_for_patient(INS_C).await.unwrap().len(), 1);
    const INS_D: &str = "288888888888888";
    let stub = patient_update(
        PatientChange::Merge {
            from_ins: INS_D.into(),
            from_oid: NIR_OID.into(),
        },
        INS_C,
        "P4",
    );
    store.apply_patient_update(&stub).await.unwrap();
    let d = store.get_patient(INS_D).await.unwrap().unwrap();
    assert_eq!(
        (d.identity_status.as_str(), d.merged_into.as_deref()),
        ("PROV", Some(INS_C))
    );
    assert!(
        store
            .get_patient("100000000000000")
            .await
            .unwrap()
            .is_none()
    );
}

/// CSV import: a bad line rejects the whole file with its line number and no patient
/// data; the fixed file imports, and importing it again updates.
pub async fn csv_import_with_bad_line(store: &Store) {
    let header = dmpflow_store::CSV_HEADER;
    let good1 =
        "279035121518989,1.2.250.1.213.1.4.8,DUPONT,Marie Claire,1979-03-05,F,75056,QUAL,false";
    let good2 = "180012A12345620,1.2.250.1.213.1.4.8,MARTIN,Jean,1980-01-01,M,,VALI,true";
    let bad = "299999999999945,1.2.250.1.213.1.4.8,DURAND,Paul,1990-02-30x,M,13055,QUAL,false";
    let file = format!("{header}\n{good1}\n\n{bad}\n{good2}\n");
    let e = store
        .import_patients_csv(file.as_bytes())
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, StoreError::Csv(v) if v.len() == 1 && v[0].line == 4),
        "{msg}"
    );
    assert!(
        msg.contains("line 4") && msg.contains("birth_date"),
        "{msg}"
    );
    for secret in ["DURAND", "Paul", "299999999999945", "1990"] {
        assert!(!msg.contains(secret), "{msg}");
    }
    assert!(
        store
            .get_patient("279035121518989")
            .await
            .unwrap()
            .is_none(),
        "nothing imported"
    );

    let fixed = format!("{header}\r\n{good1}\r\n{good2}\r\n");
    let s = store.import_patients_csv(fixed.as_bytes()).await.unwrap();
    assert_eq!((s.lines, s.inserted, s.updated), (2, 2, 0));
    let s = store.import_patients_csv(fixed.as_bytes()).await.unwrap();
    assert_eq!((s.lines, s.inserted, s.updated), (2, 0, 2));
    let p = store.get_patient("180012A12345620").await.unwrap().unwrap();
    assert_eq!(p.first_names, ["Jean"]);
    assert!(p.feeding_opposed);
    assert_eq!(p.birth_place, None);
    // Route's batch read (natively on PostgreSQL, its 0/1 flags cast there) gives the same
    // records as the one-by-one read, an opposition flag and a stated one included.
    let many = store
        .get_patients(&["180012A12345620", "279035121518989"])
        .await
        .unwrap();
    assert_eq!(many["180012A12345620"], p);
    assert!(many["180012A12345620"].feeding_opposed_stated);
    assert_eq!(
        many["279035121518989"],
        store.get_patient("279035121518989").await.unwrap().unwrap()
    );

    let dup = format!("{header}\n{good1}\n{good1}\n");
    let e = store
        .import_patients_csv(dup.as_bytes())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3: column ins: same INS as line 2"), "{e}");
    let e = store
        .import_patients_csv("ins,name\n".as_bytes())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1: header"), "{e}");
}

/// A patient's results for one LOINC code, in time order, from current versions only.
pub async fn results_over_time(store: &Store) {
    let mut d1 = initial("1.2.9.1", "1.2.9.s1", "T1");
    d1.entries = vec![glucose("6.2", "20260110080000+0100")];
    let mut d2 = initial("1.2.9.2", "1.2.9.s2", "T2");
    d2.entries = vec![
        glucose("5.0", "20251201080000+0100"),
        Entry::LabObservation {
            loinc: "718-7".into(),
            label: "Hémoglobine".into(),
            value: "13.5".into(),
            value_type: "NM".into(),
            unit: Some("g/dL".into()),
            interpretation: None,
            reference_low: None,
            reference_high: None,
            reference_text: None,
            status: "F".into(),
            time: None,
        },
        Entry::Dispensation {
            code: "3400930000001".into(),
            code_system: "1.2.250.1.213.2.3.2".into(),
            label: "x".into(),
            quantity: "2".into(),
            unit: None,
            time: "20251201".into(),
        },
    ];
    let mut d3 = initial("1.2.9.3", "1.2.9.s3", "T3");
    d3.entries = vec![glucose("9.9", "20260201080000+0100")];
    // The third report is corrected: 9.9 was wrong, 7.1 replaces it.
    let mut d3b = doc(
        "1.2.9.4",
        "1.2.9.s3",
        Lifecycle::Replace,
        None,
        INS_A,
        "T4",
        4,
    );
    d3b.entries = vec![glucose("7.1", "20260201080000+0100")];
    let other = doc(
        "1.2.9.5",
        "1.2.9.s5",
        Lifecycle::Initial,
        None,
        INS_B,
        "T5",
        5,
    );
    store
        .write_batch(&items([d1, d3, d2, other]), &[])
        .await
        .unwrap();
    store.write_batch(&items([d3b]), &[]).await.unwrap();

    let rows = store.results_for_loinc(INS_A, "2345-7").await.unwrap();
    let v: Vec<_> = rows
        .iter()
        .map(|r| (r.value.as_deref().unwrap(), r.time.as_str()))
        .collect();
    assert_eq!(
        v,
        [
            ("5.0", "20251201080000+0100"),
            ("6.2", "20260110080000+0100"),
            ("7.1", "20260201080000+0100")
        ]
    );
    assert_eq!(rows[0].unit.as_deref(), Some("mmol/L"));
    assert_eq!(rows[0].reference_high.as_deref(), Some("5.5"));
    // No observation time: the document's creation time orders it.
    let hb = store.results_for_loinc(INS_A, "718-7").await.unwrap();
    assert_eq!(hb[0].time, "20260301101500+0100");
    assert!(
        store
            .results_for_loinc(INS_A, "3400930000001")
            .await
            .unwrap()
            .is_empty()
    );
}

/// The CDA comes back byte for byte through its compression, checked by sha256.
pub async fn cda_round_trip(store: &Store) {
    let mut d = initial("1.2.10.1", "1.2.10.s", "C1");
    let xml = cda_for("1.2.10.1", 2000); // ~200 kB, accents included
    d.cda = Cda::Xml(xml.clone());
    store.write_batch(&items([d.clone()]), &[]).await.unwrap();
    assert_eq!(
        store.get_document_cda("1.2.10.1").await.unwrap().as_deref(),
        Some(xml.as_str())
    );
    let row = &store.documents_for_patient(INS_A).await.unwrap()[0];
    assert_eq!(row.cda_size, xml.len() as i64);
    // An XML body is packed by the store, once, as normalize would have.
    assert_eq!(
        store.get_document_packed("1.2.10.1").await.unwrap(),
        Some(PackedCda::pack(&xml))
    );
    assert!(
        store
            .get_document_cda("1.2.10.404")
            .await
            .unwrap()
            .is_none()
    );
}

/// A batch whose rows outgrow one COPY chunk (PostgreSQL's native path sends them 256 KiB
/// at a time from one reused buffer): every document is stored, each CDA reads back as it
/// was, and a replay of the batch is all duplicates.
pub async fn batch_larger_than_a_copy_chunk(store: &Store) {
    // Hex of a simple generator: text zstd cannot shrink much, so the packed CDAs of the
    // batch are ~1.5 MB, several chunks.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut noise = |n: usize| {
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                char::from_digit(((state >> 60) & 0xf) as u32, 16).expect("a hex digit")
            })
            .collect::<String>()
    };
    let mut docs = Vec::new();
    let mut xmls = Vec::new();
    for i in 0..60 {
        let uid = format!("1.2.13.{i}");
        let mut d = initial(&uid, &format!("1.2.13.s{i}"), &format!("BIG{i}"));
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ClinicalDocument xmlns=\"urn:hl7-org:v3\">\
             <id root=\"{uid}\"/><text>{}</text></ClinicalDocument>",
            noise(40_000)
        );
        d.cda = Cda::Packed(dmpflow_store::pack_cda(&xml));
        docs.push(d);
        xmls.push((uid, xml));
    }
    let packed: usize = docs
        .iter()
        .map(|d| d.cda.as_packed().expect("packed").bytes.len())
        .sum();
    assert!(
        packed > 1_000_000,
        "the batch spans several chunks: {packed} B"
    );
    let out = store.write_batch(&items(docs.clone()), &[]).await.unwrap();
    assert!(out.iter().all(|o| *o == ItemOutcome::Stored), "{out:?}");
    assert_eq!(store.document_count().await.unwrap(), 60);
    for (uid, xml) in &xmls {
        assert_eq!(
            store.get_document_cda(uid).await.unwrap().as_deref(),
            Some(xml.as_str()),
            "{uid} reads back"
        );
    }
    let again = store.write_batch(&items(docs), &[]).await.unwrap();
    assert!(
        again.iter().all(|o| *o == ItemOutcome::Duplicate),
        "{again:?}"
    );
    assert_eq!(store.document_count().await.unwrap(), 60);
}

/// Documents packed by normalize (zstd already made) are stored with those very bytes,
/// read back as their XML, and kept packed when the store has to quarantine one. A
/// document packed with gzip by an earlier build (still on a topic) is stored and read too.
pub async fn packed_documents(store: &Store) {
    let mut d = initial("1.2.11.1", "1.2.11.s", "K1");
    let xml = cda_for("1.2.11.1", 50);
    let packed = dmpflow_store::pack_cda(&xml);
    d.cda = Cda::Packed(packed.clone());
    let mut orphan = doc(
        "1.2.11.9",
        "1.2.11.other",
        Lifecycle::Replace,
        Some("1.2.11.404"),
        INS_A,
        "K9",
        1,
    );
    let orphan_xml = orphan.cda.as_xml().unwrap().to_owned();
    orphan.cda.pack();
    let orphan_packed = orphan.cda.as_packed().unwrap().clone();
    let mut older = initial("1.2.11.2", "1.2.11.t", "K2");
    let older_xml = older.cda.as_xml().unwrap().to_owned();
    let gz = gzip(&older_xml);
    older.cda = Cda::Packed(PackedCda {
        sha256: dmpflow_store::pack_cda(&older_xml).sha256,
        size: older_xml.len() as i64,
        bytes: gz.clone(),
    });
    let out = store
        .write_batch(&items([d, orphan, older]), &[])
        .await
        .unwrap();
    assert_eq!(out[0], ItemOutcome::Stored);
    assert_eq!(
        out[1],
        ItemOutcome::Quarantined("lifecycle.target.unknown".into())
    );
    assert_eq!(out[2], ItemOutcome::Stored);
    assert_eq!(
        store.get_document_cda("1.2.11.2").await.unwrap().as_deref(),
        Some(older_xml.as_str()),
        "gzip of an earlier build reads back"
    );
    assert_eq!(
        store.get_document_cda("1.2.11.1").await.unwrap().as_deref(),
        Some(xml.as_str())
    );
    let rows = store.documents_for_patient(INS_A).await.unwrap();
    let row = rows.iter().find(|r| r.unique_id == "1.2.11.1").unwrap();
    assert_eq!(row.cda_size, packed.size);
    assert_eq!(
        store.get_document_packed("1.2.11.1").await.unwrap(),
        Some(packed),
        "normalize's bytes, stored as they came"
    );
    assert_eq!(
        store
            .get_document_packed("1.2.11.2")
            .await
            .unwrap()
            .unwrap()
            .bytes,
        gz,
        "gzip stays gzip"
    );
    let open = store
        .quarantine_list(Some(QuarantineStatus::Open))
        .await
        .unwrap();
    let Normalized::Document(q) = &open[0].item else {
        panic!("document expected")
    };
    assert_eq!(
        q.cda,
        Cda::Packed(orphan_packed),
        "the quarantine keeps the packed bytes as they came"
    );
    assert_eq!(q.cda.xml().unwrap(), orphan_xml);
}

/// `xml` compressed with gzip, as builds before zstd packed it: bytes that packing again
/// (zstd) can never give back, so finding them stored proves nothing packed them again.
pub fn gzip(xml: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, xml.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// A quarantine case keeps its packed CDA as it came (not inflated into the JSON), reads
/// back whole, and its document, filed as a release files it, is stored with those very
/// bytes. A case with an XML body (a producer outside the pipeline) keeps its XML inline
/// and is packed once, when filed.
pub async fn quarantine_keeps_packed_bytes(store: &Store) {
    let mut packed = initial("1.2.12.1", "1.2.12.s", "P1");
    let xml = packed.cda.as_xml().unwrap().to_owned();
    let p = PackedCda {
        bytes: gzip(&xml),
        sha256: PackedCda::pack(&xml).sha256,
        size: xml.len() as i64,
    };
    packed.cda = Cda::Packed(p.clone());
    let inline = initial("1.2.12.2", "1.2.12.t", "P2");
    let case = |d: &Document| {
        StoreItem::Quarantine(Quarantined {
            reason: "ins.unknown".into(),
            detail: String::new(),
            item: Normalized::Document(Box::new(d.clone())),
        })
    };
    let out = store
        .write_batch(&[case(&packed), case(&inline)], &[])
        .await
        .unwrap();
    assert_eq!(out, vec![ItemOutcome::Quarantined("ins.unknown".into()); 2]);
    let open = store
        .quarantine_list(Some(QuarantineStatus::Open))
        .await
        .unwrap();
    let bodies: Vec<&Cda> = open
        .iter()
        .map(|row| match &row.item {
            Normalized::Document(d) => &d.cda,
            Normalized::Patient(_) => panic!("a document"),
        })
        .collect();
    assert_eq!(bodies, [&packed.cda, &inline.cda]);
    let got = store.quarantine_get(open[0].id).await.unwrap().unwrap();
    assert_eq!(got.item, Normalized::Document(Box::new(packed.clone())));

    // Filed as `release_case` files them: the case's item as a document.
    let filed: Vec<StoreItem> = open
        .into_iter()
        .map(|row| match row.item {
            Normalized::Document(d) => StoreItem::Document(*d),
            Normalized::Patient(_) => unreachable!(),
        })
        .collect();
    assert_eq!(
        store.write_batch(&filed, &[]).await.unwrap(),
        [ItemOutcome::Stored, ItemOutcome::Stored]
    );
    assert_eq!(
        store.get_document_packed("1.2.12.1").await.unwrap(),
        Some(p),
        "the very bytes the case held"
    );
    let inline_xml = inline.cda.as_xml().unwrap();
    let stored = store
        .get_document_packed("1.2.12.2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Packing::of(&stored.bytes), Some(Packing::Zstd));
    assert_eq!(stored, PackedCda::pack(inline_xml));
    assert_eq!(
        store.get_document_cda("1.2.12.1").await.unwrap().as_deref(),
        Some(xml.as_str())
    );
}

/// A quarantine row as builds before migration 0008 wrote it: the item's JSON with the
/// XML inline (no `packed`), no bytes column. The JSON is put together field by field, not
/// by today's `Document` serialiser, so that it is what those builds wrote.
pub fn quarantine_row_of_an_earlier_build() -> (Document, String) {
    let d = doc(
        "1.2.80.1",
        "1.2.80.s",
        Lifecycle::Initial,
        None,
        INS_A,
        "OLDQ1",
        3,
    );
    let json = format!(
        r#"{{"type":"document","meta":{},"cda":{},"entries":{}}}"#,
        serde_json::to_string(&d.meta).unwrap(),
        serde_json::to_string(d.cda.as_xml().unwrap()).unwrap(),
        serde_json::to_string(&d.entries).unwrap()
    );
    (d, json)
}

/// A copy into `into` of the `backend` migrations (`sqlite`, `postgres`) before `version`:
/// to migrate a database as far as an earlier build did.
pub fn migrations_before(backend: &str, version: &str, into: &std::path::Path) {
    std::fs::create_dir_all(into).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for f in std::fs::read_dir(&all).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < version {
            std::fs::copy(&f, into.join(&name)).unwrap();
        }
    }
}

/// A database at `url` migrated as far as builds before 0008 did, holding one quarantine
/// row as they wrote it ([`quarantine_row_of_an_earlier_build`]).
pub async fn database_of_an_earlier_build(url: &str, backend: &str, scratch: &std::path::Path) {
    let before = scratch.join(format!("migrations-{backend}-before-0008"));
    migrations_before(backend, "0008", &before);
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    sqlx::migrate::Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let (_, payload) = quarantine_row_of_an_earlier_build();
    sqlx::query(EARLIER_QUARANTINE_INSERT)
        .bind(payload)
        .bind(INS_A)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// The statement builds before 0008 opened a case with (`batch/write.rs`), one row.
pub const EARLIER_QUARANTINE_INSERT: &str = "INSERT INTO quarantine (reason, detail, item_key, \
    unique_id, payload, source_feed, source_sender, source_control_id, source_position, \
    source_topic, source_partition, source_offset, status, created_at, patient_ins) VALUES \
    ('ins.unknown', 'no such patient', 'doc:1.2.80.1', '1.2.80.1', $1, 'lab', 'LABO^FINESS123', \
    'OLDQ1', 0, 'dmp.routed', 0, 3, 'open', '2026-03-01T10:00:00.000000Z', $2)";

/// After the upgrade, the row written by [`quarantine_row_of_an_earlier_build`] reads as its
/// XML document, and filing it (what a release does) packs it once and stores it.
pub async fn quarantine_row_of_an_earlier_build_still_reads(store: &Store) {
    let (d, _) = quarantine_row_of_an_earlier_build();
    let open = store
        .quarantine_list(Some(QuarantineStatus::Open))
        .await
        .unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].reason, "ins.unknown");
    assert_eq!(open[0].item, Normalized::Document(Box::new(d.clone())));
    let out = store
        .write_batch(&[StoreItem::Document(d.clone())], &[])
        .await
        .unwrap();
    assert_eq!(out, [ItemOutcome::Stored]);
    let xml = d.cda.as_xml().unwrap();
    assert_eq!(
        store.get_document_cda("1.2.80.1").await.unwrap().as_deref(),
        Some(xml)
    );
    assert_eq!(
        store.get_document_packed("1.2.80.1").await.unwrap(),
        Some(PackedCda::pack(xml))
    );
}

/// Throughput: `total` documents (~9 kB CDA, 10 results each) in batches of `batch`, with
/// offsets. Prints docs/s; asserts only the count.
pub async fn throughput(store: &Store, label: &str, total: usize, batch: usize) -> f64 {
    let make = |i: usize| {
        let mut d = doc(
            &format!("1.2.250.99.{i}"),
            &format!("1.2.250.99.{i}.set"),
            Lifecycle::Initial,
            None,
            INS_A,
            &format!("BENCH{i}"),
            i as i64,
        );
        d.cda = Cda::Xml(cda_for(&d.meta.unique_id, 80));
        d.entries = (0..10)
            .map(|k| glucose(&format!("{k}.0"), "20260301080000+0100"))
            .collect();
        d
    };
    let all: Vec<StoreItem> = (0..total).map(|i| StoreItem::Document(make(i))).collect();
    let start = Instant::now();
    for (n, chunk) in all.chunks(batch).enumerate() {
        let next = ((n + 1) * batch).min(total) as i64;
        store.write_batch(chunk, &[offset(0, next)]).await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = total as f64 / secs;
    println!("{label}: {total} documents in batches of {batch}: {secs:.2} s, {rate:.0} docs/s");
    assert_eq!(store.document_count().await.unwrap(), total as i64);
    rate
}

/// The route stage's retry of `ins.unknown` cases: only open `ins.unknown` cases whose
/// patient the registry knows are listed, and a case that fails for another reason after
/// its retry records that reason and leaves the list.
pub async fn waiting_cases_of_known_patients(store: &Store) {
    let case = |uid: &str, ins: &str, msg: &str, reason: &str| {
        StoreItem::Quarantine(Quarantined {
            reason: reason.into(),
            detail: "test".into(),
            item: Normalized::Document(Box::new(doc(
                uid,
                &format!("{uid}.set"),
                Lifecycle::Initial,
                None,
                ins,
                msg,
                0,
            ))),
        })
    };
    store
        .write_batch(
            &[
                case("1.2.12.1", INS_A, "W1", "ins.unknown"),
                case("1.2.12.2", INS_B, "W2", "ins.unknown"),
                case("1.2.12.3", INS_A, "W3", "identity.traits.mismatch"),
            ],
            &[],
        )
        .await
        .unwrap();
    let id_of = |rows: &[dmpflow_store::QuarantineRow], uid: &str| {
        rows.iter()
            .find(|r| r.unique_id.as_deref() == Some(uid))
            .map(|r| r.id)
            .unwrap()
    };
    let open = store
        .quarantine_list(Some(QuarantineStatus::Open))
        .await
        .unwrap();
    let (a, b) = (id_of(&open, "1.2.12.1"), id_of(&open, "1.2.12.2"));
    assert!(
        store.quarantine_waiting_known(10).await.unwrap().is_empty(),
        "no patient known yet"
    );

    let csv = format!(
        "{}\n{INS_A},1.2.250.1.213.1.4.8,DUPONT,Marie Claire,1979-03-05,F,75056,QUAL,false\n",
        dmpflow_store::CSV_HEADER
    );
    store.import_patients_csv(csv.as_bytes()).await.unwrap();
    assert_eq!(store.quarantine_waiting_known(10).await.unwrap(), [a]);
    assert!(store.quarantine_waiting_known(0).await.unwrap().is_empty());

    // Retried and refused for another reason: recorded, no longer waiting.
    assert!(
        store
            .quarantine_set_reason(a, "identity.traits.mismatch", "birth_name differs")
            .await
            .unwrap()
    );
    assert!(store.quarantine_waiting_known(10).await.unwrap().is_empty());
    let row = store.quarantine_get(a).await.unwrap().unwrap();
    assert_eq!(row.reason, "identity.traits.mismatch");
    // A closed case is not touched.
    assert!(store.quarantine_mark_released(b).await.unwrap());
    assert!(!store.quarantine_set_reason(b, "x", "y").await.unwrap());
}

/// A registry entry holding another person, as the identity feed would have created it.
fn other_person(ins: &str, msg: &str) -> PatientUpdate {
    let mut u = patient_update(PatientChange::Upsert, ins, msg);
    u.patient.birth_name = "AUTRENOM".into();
    u.patient.first_names = vec!["Autre".into()];
    u.patient.birth_date = "1950-12-01".into();
    u.patient.sex = "M".into();
    u
}

#[track_caller]
fn assert_collision(e: StoreError, side: &str) {
    let msg = e.to_string();
    assert!(
        matches!(&e, StoreError::IdentityCollision(d) if d.contains(side)),
        "{msg}"
    );
    assert!(!e.is_transient());
    for secret in [INS_A, INS_B, "TESTNOM", "AUTRENOM", "Autre", "1950", "1979"] {
        assert!(!msg.contains(secret), "{msg}");
    }
}

/// Issue #16 item 1: an A47 (or A40) onto an INS whose registry entry holds another
/// person, or retiring such an INS, is refused by the store itself and writes nothing:
/// both entries stay as they were, and so does the rest of the batch. The same change
/// for the same person is applied, and applying it again changes nothing.
pub async fn identity_collision_leaves_registry_untouched(store: &Store) {
    const INS_NEW: &str = "277076322082910";
    store
        .apply_patient_update(&patient_update(PatientChange::Upsert, INS_A, "C1"))
        .await
        .unwrap();
    store
        .apply_patient_update(&other_person(INS_B, "C2"))
        .await
        .unwrap();
    let before_a = store.get_patient(INS_A).await.unwrap().unwrap();
    let before_b = store.get_patient(INS_B).await.unwrap().unwrap();
    let docs_before = store.document_count().await.unwrap();

    // Patient A's identifier "changes" onto B's INS: refused, with a document in the batch.
    let onto_b = patient_update(
        PatientChange::IdentifierChange {
            old_ins: INS_A.into(),
            old_oid: NIR_OID.into(),
        },
        INS_B,
        "C3",
    );
    let d = doc(
        "1.2.13.1",
        "1.2.13.set",
        Lifecycle::Initial,
        None,
        INS_A,
        "C-DOC",
        0,
    );
    let e = store
        .write_batch(
            &[StoreItem::Document(d), StoreItem::Patient(onto_b.clone())],
            &[offset(0, 7)],
        )
        .await
        .unwrap_err();
    assert_collision(e, "target");
    let merge_onto_b = PatientUpdate {
        change: PatientChange::Merge {
            from_ins: INS_A.into(),
            from_oid: NIR_OID.into(),
        },
        ..onto_b.clone()
    };
    assert_collision(
        store.apply_patient_update(&merge_onto_b).await.unwrap_err(),
        "target",
    );
    // Patient A claims B's INS was theirs: refused too (B's documents would follow A).
    let from_b = patient_update(
        PatientChange::IdentifierChange {
            old_ins: INS_B.into(),
            old_oid: NIR_OID.into(),
        },
        INS_NEW,
        "C4",
    );
    assert_collision(
        store.apply_patient_update(&from_b).await.unwrap_err(),
        "retired",
    );
    assert_eq!(store.get_patient(INS_A).await.unwrap().unwrap(), before_a);
    assert_eq!(store.get_patient(INS_B).await.unwrap().unwrap(), before_b);
    assert!(store.get_patient(INS_NEW).await.unwrap().is_none());
    assert_eq!(store.document_count().await.unwrap(), docs_before);
    assert!(
        store
            .committed_offsets(GROUP, TOPIC)
            .await
            .unwrap()
            .is_empty(),
        "the refused batch committed nothing"
    );

    // The very person's identifier change is applied; replaying it (same message, or the
    // same change sent again) is no collision.
    let own = patient_update(
        PatientChange::IdentifierChange {
            old_ins: INS_A.into(),
            old_oid: NIR_OID.into(),
        },
        INS_NEW,
        "C5",
    );
    assert_eq!(
        store.apply_patient_update(&own).await.unwrap(),
        ItemOutcome::PatientMerged
    );
    assert_eq!(
        store.apply_patient_update(&own).await.unwrap(),
        ItemOutcome::Duplicate
    );
    let again = PatientUpdate {
        source: SourceRef {
            control_id: "C6".into(),
            ..own.source.clone()
        },
        ..own.clone()
    };
    assert_eq!(
        store.apply_patient_update(&again).await.unwrap(),
        ItemOutcome::PatientMerged
    );
    let new = store.get_patient(INS_NEW).await.unwrap().unwrap();
    assert_eq!(
        (new.birth_name.as_str(), new.merged_into.as_deref()),
        ("TESTNOM", None)
    );
    assert_eq!(
        store
            .get_patient(INS_A)
            .await
            .unwrap()
            .unwrap()
            .merged_into
            .as_deref(),
        Some(INS_NEW)
    );
    assert_eq!(store.get_patient(INS_B).await.unwrap().unwrap(), before_b);
}

/// Issue #16 item 4: an A28/A31 that leaves traits unstated keeps the registry's values
/// (sex U included); a record never holds a qualified status without its traits; FICTI
/// next to VALI never makes a record qualified.
pub async fn unstated_traits_keep_their_value(store: &Store) {
    let mut full = patient_update(PatientChange::Upsert, INS_A, "T1");
    full.patient.identity_status = vec!["QUAL".into()];
    store.apply_patient_update(&full).await.unwrap();
    let before = store.get_patient(INS_A).await.unwrap().unwrap();
    assert_eq!(before.identity_status, "QUAL");

    for (i, sex) in ["U", ""].into_iter().enumerate() {
        let mut empty = patient_update(PatientChange::Upsert, INS_A, &format!("T2-{i}"));
        empty.patient.birth_name = " ".into();
        empty.patient.first_names = vec!["".into()];
        empty.patient.birth_date = String::new();
        empty.patient.sex = sex.into();
        empty.patient.birth_place = None;
        empty.patient.identity_status = vec!["VALI".into()];
        empty.feeding_opposed = Some(true);
        store.apply_patient_update(&empty).await.unwrap();
        let after = store.get_patient(INS_A).await.unwrap().unwrap();
        assert_eq!(
            after,
            PatientRecord {
                identity_status: "VALI".into(),
                feeding_opposed: true,
                ..before.clone()
            },
            "sex {sex:?}"
        );
    }
    // A stated trait replaces the registry's, and only that one.
    let mut renamed = patient_update(PatientChange::Upsert, INS_A, "T3");
    renamed.patient.birth_name = "NOUVEAU".into();
    renamed.patient.first_names.clear();
    renamed.patient.birth_date.clear();
    renamed.patient.sex = "U".into();
    store.apply_patient_update(&renamed).await.unwrap();
    let after = store.get_patient(INS_A).await.unwrap().unwrap();
    assert_eq!(after.birth_name, "NOUVEAU");
    assert_eq!(
        (
            after.first_names,
            after.birth_date,
            after.sex,
            after.birth_place
        ),
        (
            before.first_names.clone(),
            before.birth_date.clone(),
            before.sex.clone(),
            before.birth_place.clone()
        )
    );

    // A new patient stated without traits is not qualified, whatever PID-32 says.
    let mut bare = patient_update(PatientChange::Upsert, INS_B, "T4");
    bare.patient.birth_name.clear();
    bare.patient.first_names.clear();
    bare.patient.birth_date.clear();
    store.apply_patient_update(&bare).await.unwrap();
    assert_eq!(
        store
            .get_patient(INS_B)
            .await
            .unwrap()
            .unwrap()
            .identity_status,
        "PROV"
    );
    // ... and stays so until its traits come.
    let mut still = bare.clone();
    still.source.control_id = "T5".into();
    still.patient.identity_status = vec!["QUAL".into()];
    store.apply_patient_update(&still).await.unwrap();
    assert_eq!(
        store
            .get_patient(INS_B)
            .await
            .unwrap()
            .unwrap()
            .identity_status,
        "PROV"
    );
    let mut full_b = patient_update(PatientChange::Upsert, INS_B, "T6");
    full_b.patient.identity_status = vec!["QUAL".into()];
    store.apply_patient_update(&full_b).await.unwrap();
    assert_eq!(
        store
            .get_patient(INS_B)
            .await
            .unwrap()
            .unwrap()
            .identity_status,
        "QUAL"
    );

    // FICTI anywhere: the record is not qualified any more.
    let mut ficti = patient_update(PatientChange::Upsert, INS_A, "T7");
    ficti.patient.identity_status = vec!["VALI".into(), "FICTI".into()];
    store.apply_patient_update(&ficti).await.unwrap();
    assert_eq!(
        store
            .get_patient(INS_A)
            .await
            .unwrap()
            .unwrap()
            .identity_status,
        "FICTI"
    );
}

/// Issue #16 item 4: the CSV import refuses an INS with a wrong key and an impossible
/// date, naming line and column, never the value, and imports nothing.
pub async fn csv_refuses_bad_key_and_impossible_date(store: &Store) {
    let header = dmpflow_store::CSV_HEADER;
    let good = "279035121518989,1.2.250.1.213.1.4.8,DUPONT,Marie,1979-03-05,F,75056,QUAL,false";
    let bad_key = "277076322082911,1.2.250.1.213.1.4.8,MARTIN,Jean,1980-01-01,M,,VALI,false";
    let bad_date = "274075176079430,1.2.250.1.213.1.4.8,DURAND,Paul,2023-02-31,M,,VALI,false";
    let leap = "253072A07300443,1.2.250.1.213.1.4.8,LEONI,Anna,2023-02-29,F,,VALI,false";
    let file = format!("{header}\n{good}\n{bad_key}\n{bad_date}\n{leap}\n");
    let e = store
        .import_patients_csv(file.as_bytes())
        .await
        .unwrap_err();
    let msg = e.to_string();
    match &e {
        StoreError::Csv(v) => assert_eq!(
            v.iter()
                .map(|l| (l.line, l.message.as_str()))
                .collect::<Vec<_>>(),
            [
                (3, "column ins: key mismatch"),
                (4, "column birth_date: expected a calendar date YYYY-MM-DD"),
                (5, "column birth_date: expected a calendar date YYYY-MM-DD"),
            ]
        ),
        other => panic!("{other}"),
    }
    for secret in ["277076322082911", "MARTIN", "2023", "DURAND", "LEONI"] {
        assert!(!msg.contains(secret), "{msg}");
    }
    assert!(
        store
            .get_patient("279035121518989")
            .await
            .unwrap()
            .is_none()
    );
}

// ---- Issue #12 items 5 and 6: reused control ids, a lifecycle chain inside one batch ----

/// `d` as sent in a message whose content (without MSH-7) hashes to `hash`.
fn hashed(mut d: Document, hash: &str) -> Document {
    d.meta.source.content_hash = hash.into();
    d
}

/// Initial, replacement and deletion of one document, all three under MSH-10 `msg` (a
/// sender whose counter reset), each with its own content. `style` "set": the generated
/// documents' shape (no target: the set's current version); "ids": the received CDAs'
/// shape (the replacement names its parent, the deletion carries the last version's id).
fn chain(prefix: &str, msg: &str, style: &str) -> [Document; 3] {
    let set = format!("{prefix}.set");
    let (v1, v2, del) = (
        format!("{prefix}.1"),
        format!("{prefix}.2"),
        format!("{prefix}.3"),
    );
    let (replace_target, delete_uid, delete_target) = match style {
        "set" => (None, del.as_str(), None),
        _ => (Some(v1.as_str()), v2.as_str(), Some(v2.as_str())),
    };
    [
        hashed(
            doc(&v1, &set, Lifecycle::Initial, None, INS_A, msg, 1),
            &format!("{prefix}-h1"),
        ),
        hashed(
            doc(&v2, &set, Lifecycle::Replace, replace_target, INS_A, msg, 2),
            &format!("{prefix}-h2"),
        ),
        hashed(
            doc(
                delete_uid,
                &set,
                Lifecycle::Delete,
                delete_target,
                INS_A,
                msg,
                3,
            ),
            &format!("{prefix}-h3"),
        ),
    ]
}

/// What a chain left: (seq, status, lifecycle) per version and the audit actions, with
/// nothing that names the chain (so two chains compare).
async fn end_state(store: &Store, prefix: &str) -> Vec<(i64, DocStatus, String, Vec<String>)> {
    let mut out = Vec::new();
    for r in store.documents_for_patient(INS_A).await.unwrap() {
        if r.set_id != format!("{prefix}.set") {
            continue;
        }
        let actions = store
            .audit_for_document(&r.unique_id)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.action)
            .collect();
        out.push((r.seq, r.status, r.lifecycle, actions));
    }
    out
}

/// Item 5: initial, replacement and deletion with one control id (different content) are
/// all applied, and the two later ones are reported as a reused control id. Before #12 the
/// replacement and the deletion were dropped as duplicates.
pub async fn one_control_id_initial_replace_delete(store: &Store) {
    for style in ["set", "ids"] {
        let prefix = format!("1.2.12.{}", if style == "set" { 1 } else { 2 });
        let [v1, v2, del] = chain(&prefix, &format!("{prefix}-015"), style);
        let mut outcomes = Vec::new();
        let mut reused = Vec::new();
        for d in [v1, v2, del] {
            let r = store.write_batch_report(&items([d]), &[]).await.unwrap();
            outcomes.extend(r.outcomes);
            reused.push(!r.control_id_reused.is_empty());
        }
        assert_eq!(
            outcomes,
            [
                ItemOutcome::Stored,
                ItemOutcome::Replaced {
                    superseded: format!("{prefix}.1")
                },
                ItemOutcome::Deleted {
                    target: format!("{prefix}.2")
                },
            ],
            "{style}"
        );
        assert_eq!(reused, [false, true, true], "{style}");
    }
}

/// Item 6: the same chain in ONE batch ends exactly as in three batches (rows, statuses,
/// seqs, audit), with one control id and with three, in both document shapes.
pub async fn lifecycle_chain_in_one_batch_as_in_three(store: &Store) {
    let mut n = 0;
    for style in ["set", "ids"] {
        for one_msg in [true, false] {
            n += 1;
            let msgs = |p: &str| {
                if one_msg {
                    [format!("{p}-015"), format!("{p}-015"), format!("{p}-015")]
                } else {
                    [format!("{p}a"), format!("{p}b"), format!("{p}c")]
                }
            };
            let chain_with = |prefix: &str| {
                let m = msgs(prefix);
                let mut c = chain(prefix, &m[0], style);
                for (d, msg) in c.iter_mut().zip(m) {
                    d.meta.source.control_id = msg;
                }
                c
            };
            let three = format!("1.2.13.{n}.3");
            let one = format!("1.2.13.{n}.1");
            let mut sep = Vec::new();
            for d in chain_with(&three) {
                sep.extend(store.write_batch(&items([d]), &[]).await.unwrap());
            }
            let together = store
                .write_batch(&items(chain_with(&one)), &[])
                .await
                .unwrap();
            let label = format!("{style}, one control id: {one_msg}");
            assert_eq!(together.len(), 3);
            assert!(
                matches!(
                    together.as_slice(),
                    [
                        ItemOutcome::Stored,
                        ItemOutcome::Replaced { .. },
                        ItemOutcome::Deleted { .. }
                    ]
                ),
                "{label}: {together:?}"
            );
            assert_eq!(
                together
                    .iter()
                    .map(|o| format!("{o:?}").replace(&one, "P"))
                    .collect::<Vec<_>>(),
                sep.iter()
                    .map(|o| format!("{o:?}").replace(&three, "P"))
                    .collect::<Vec<_>>(),
                "{label}"
            );
            let expected = end_state(store, &three).await;
            assert_eq!(end_state(store, &one).await, expected, "{label}");
            assert_eq!(
                expected.iter().map(|e| e.1).collect::<Vec<_>>(),
                [DocStatus::Superseded, DocStatus::Deleted],
                "{label}"
            );
        }
    }
}

/// A true resend (same sender, MSH-10, position and content) is one duplicate, whether in
/// a later batch or in the same one; nothing is reported as reused.
pub async fn true_resend_is_one_duplicate(store: &Store) {
    let d = hashed(initial("1.2.14.1", "1.2.14.set", "R015"), "h-same");
    let first = store
        .write_batch_report(&items([d.clone()]), &[])
        .await
        .unwrap();
    assert_eq!(first.outcomes, [ItemOutcome::Stored]);
    let again = store
        .write_batch_report(&items([d.clone(), d.clone()]), &[])
        .await
        .unwrap();
    assert_eq!(
        again.outcomes,
        [ItemOutcome::Duplicate, ItemOutcome::Duplicate]
    );
    assert!(again.control_id_reused.is_empty());
    let e = hashed(initial("1.2.14.2", "1.2.14.set2", "R016"), "h-e");
    let in_one = store
        .write_batch_report(&items([e.clone(), e]), &[])
        .await
        .unwrap();
    assert_eq!(
        in_one.outcomes,
        [ItemOutcome::Stored, ItemOutcome::Duplicate]
    );
    assert!(in_one.control_id_reused.is_empty());
    // A patient update resent: one duplicate too.
    let mut u = patient_update(PatientChange::Upsert, INS_B, "R017");
    u.source.content_hash = "h-u".into();
    assert_eq!(
        store.apply_patient_update(&u).await.unwrap(),
        ItemOutcome::PatientUpdated
    );
    assert_eq!(
        store.apply_patient_update(&u).await.unwrap(),
        ItemOutcome::Duplicate
    );
    assert_eq!(store.document_count().await.unwrap(), 2);
}

/// The same sender, control id and position with other content is processed and reported
/// (`hl7.control_id.reused`); a payload or a row without a hash (earlier builds) keeps the
/// old rule: the same key is a duplicate.
pub async fn reused_control_id_is_processed_and_reported(store: &Store) {
    let a = hashed(initial("1.2.15.1", "1.2.15.set1", "X1"), "h-a");
    let b = hashed(initial("1.2.15.2", "1.2.15.set2", "X1"), "h-b");
    store.write_batch(&items([a]), &[]).await.unwrap();
    let r = store.write_batch_report(&items([b]), &[]).await.unwrap();
    assert_eq!(r.outcomes, [ItemOutcome::Stored]);
    assert_eq!(r.control_id_reused, [0]);
    // In one batch: the second is reused, the third a resend of the second.
    let c = hashed(initial("1.2.15.3", "1.2.15.set3", "X2"), "h-c");
    let d = hashed(initial("1.2.15.4", "1.2.15.set4", "X2"), "h-d");
    let r = store
        .write_batch_report(&items([c, d.clone(), d]), &[])
        .await
        .unwrap();
    assert_eq!(
        r.outcomes,
        [
            ItemOutcome::Stored,
            ItemOutcome::Stored,
            ItemOutcome::Duplicate
        ]
    );
    assert_eq!(r.control_id_reused, [1]);
    // A reused control id that ends in quarantine is reported too.
    let orphan = hashed(
        doc(
            "1.2.15.9",
            "1.2.15.set9",
            Lifecycle::Replace,
            Some("1.2.15.8"),
            INS_A,
            "X1",
            9,
        ),
        "h-orphan",
    );
    let r = store
        .write_batch_report(&items([orphan]), &[])
        .await
        .unwrap();
    assert_eq!(
        r.outcomes,
        [ItemOutcome::Quarantined("lifecycle.target.unknown".into())]
    );
    assert_eq!(r.control_id_reused, [0]);
    // Identity updates: another content under the same key is applied.
    let mut u1 = patient_update(PatientChange::Upsert, INS_B, "X3");
    u1.source.content_hash = "h-u1".into();
    let mut u2 = patient_update(PatientChange::Upsert, INS_B, "X3");
    u2.source.content_hash = "h-u2".into();
    u2.dmp_status = Some("FERME".into());
    let r = store
        .write_batch_report(&[StoreItem::Patient(u1), StoreItem::Patient(u2)], &[])
        .await
        .unwrap();
    assert_eq!(
        r.outcomes,
        [ItemOutcome::PatientUpdated, ItemOutcome::PatientUpdated]
    );
    assert_eq!(r.control_id_reused, [1]);

    // Without a hash on either side: the key alone decides, as before #12.
    let old_row = initial("1.2.15.20", "1.2.15.set20", "X4");
    store.write_batch(&items([old_row]), &[]).await.unwrap();
    let new_payload = hashed(initial("1.2.15.21", "1.2.15.set21", "X4"), "h-new");
    let old_payload = initial("1.2.15.22", "1.2.15.set22", "X1");
    let r = store
        .write_batch_report(&items([new_payload, old_payload]), &[])
        .await
        .unwrap();
    assert_eq!(r.outcomes, [ItemOutcome::Duplicate, ItemOutcome::Duplicate]);
    assert!(r.control_id_reused.is_empty());
    // a, b, c, d and the row without a hash (the orphan waits in quarantine).
    assert_eq!(store.document_count().await.unwrap(), 5);
}
