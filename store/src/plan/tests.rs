//! The lifecycle rules without a database: each test hands `decide` a batch and a `Known`
//! picture, and reads the decisions. They state the same behaviour as the shared
//! scenarios of `store/tests/scenarios/` (which run the SQL on SQLite and PostgreSQL),
//! down to the rows, statuses, seqs and audit actions.

use dmpflow_schemas::{
    CdaOrigin, DocumentMeta, Feed, PartyRef, PatientIdentity, PatientUpdate, UpdateTimes,
};

use super::*;

const INS: &str = "279035121518989";
const SENDER: &str = "LABO^FINESS123";
const TARGET_UNKNOWN: &str = "lifecycle.target.unknown";
const NOT_CURRENT: &str = "lifecycle.target.not_current";

// ---- Fixtures ----

/// The source of message `msg` (MSH-10), position 0. `hash` "" is a payload of the builds
/// before content hashes.
fn source(msg: &str, hash: &str) -> SourceRef {
    SourceRef {
        feed: Some(Feed::Lab),
        sender: SENDER.into(),
        control_id: msg.into(),
        position: 0,
        topic: Some("dmp.feed.lab".into()),
        partition: Some(0),
        offset: Some(7),
        content_hash: hash.into(),
    }
}

fn doc(uid: &str, set: &str, lifecycle: Lifecycle, target: Option<&str>, msg: &str) -> Document {
    Document {
        meta: DocumentMeta {
            unique_id: uid.into(),
            set_id: set.into(),
            version: 1,
            lifecycle,
            target_unique_id: target.map(str::to_owned),
            type_code: "11502-2".into(),
            class_code: "10".into(),
            format_code: "urn:ihe:lab:xd-lab:2008".into(),
            title: "CR de biologie".into(),
            patient: PatientIdentity {
                ins: INS.into(),
                ..PatientIdentity::default()
            },
            author: PartyRef::default(),
            creation_time: "20260301101500+0100".into(),
            service_start: None,
            service_stop: None,
            confidentiality: "N".into(),
            visibility: Vec::new(),
            practice_setting: None,
            ignored_attachments: 0,
            origin: CdaOrigin::Generated,
            source: source(msg, ""),
        },
        cda: Cda::Xml(cda_of(uid)),
        entries: Vec::new(),
    }
}

/// The CDA of document `uid` in these tests.
fn cda_of(uid: &str) -> String {
    format!("<ClinicalDocument><id root=\"{uid}\"/></ClinicalDocument>")
}

fn initial(uid: &str, set: &str, msg: &str) -> Document {
    doc(uid, set, Lifecycle::Initial, None, msg)
}

fn replace(uid: &str, set: &str, target: Option<&str>, msg: &str) -> Document {
    doc(uid, set, Lifecycle::Replace, target, msg)
}

fn delete(uid: &str, set: &str, target: Option<&str>, msg: &str) -> Document {
    doc(uid, set, Lifecycle::Delete, target, msg)
}

/// `d` as sent in a message whose content hashes to `hash`.
fn hashed(mut d: Document, hash: &str) -> Document {
    d.meta.source.content_hash = hash.into();
    d
}

fn items(docs: impl IntoIterator<Item = Document>) -> Vec<StoreItem> {
    docs.into_iter().map(StoreItem::Document).collect()
}

fn patient(change: PatientChange, ins: &str, msg: &str) -> PatientUpdate {
    PatientUpdate {
        change,
        patient: PatientIdentity {
            ins: ins.into(),
            ..PatientIdentity::default()
        },
        feeding_opposed: Some(false),
        dmp_status: Some("ACTIF".into()),
        consultation_consent: None,
        times: UpdateTimes::default(),
        event: String::new(),
        source: SourceRef {
            feed: Some(Feed::Identity),
            ..source(msg, "")
        },
    }
}

/// A database holding these versions (uniqueId, setId, seq, status), each stored by a
/// message of its own ("stored-<uniqueId>").
fn holding(rows: &[(&str, &str, i64, DocStatus)]) -> Known {
    let mut known = Known::default();
    for (uid, set, seq, status) in rows {
        known.docs.push(KnownDoc {
            unique_id: (*uid).into(),
            set_id: (*set).into(),
            seq: *seq,
            status: *status,
            cda_sha256: dmpflow_schemas::cda_body::sha256_hex(cda_of(uid).as_bytes()),
        });
        known.applied.push(applied(&format!("stored-{uid}"), None));
    }
    known
}

fn applied(msg: &str, hash: Option<&str>) -> AppliedMsg {
    AppliedMsg {
        sender: SENDER.into(),
        control_id: msg.into(),
        position: 0,
        content_hash: hash.map(str::to_owned),
    }
}

/// What `Known` the next batch's lookup finds once `d` is committed on top of `known`:
/// the rows the SQL writes, read back as `batch/lookup.rs` reads them (applied messages
/// are the stored documents' and the `deleted`/`patient_*` audit rows').
fn commit(known: &mut Known, d: &Decisions) {
    for (uid, status) in &d.status_changes {
        for k in known.docs.iter_mut().filter(|k| k.unique_id == *uid) {
            k.status = *status;
        }
    }
    let from = |s: &SourceRef| AppliedMsg {
        sender: s.sender.clone(),
        control_id: s.control_id.clone(),
        position: i64::from(s.position),
        content_hash: (!s.content_hash.is_empty()).then(|| s.content_hash.clone()),
    };
    for n in &d.docs {
        let m = &n.doc.meta;
        known.docs.push(KnownDoc {
            unique_id: m.unique_id.clone(),
            set_id: m.set_id.clone(),
            seq: n.seq,
            status: n.status,
            cda_sha256: cda_sha256(n.doc),
        });
        known.applied.push(from(&m.source));
    }
    for a in &d.audits {
        if matches!(a.action, "deleted" | "patient_upsert" | "patient_merge") {
            known.applied.push(from(a.source.expect("a message")));
        }
    }
    for q in &d.quarantines {
        known.open_quarantine.insert(q.key.clone());
    }
}

fn run(items: &[StoreItem], known: Known) -> Decisions<'_> {
    decide(items, known).expect("the plan decides")
}

/// The inserted versions: (uniqueId, seq, status).
fn inserted<'a>(d: &'a Decisions) -> Vec<(&'a str, i64, DocStatus)> {
    d.docs
        .iter()
        .map(|n| (n.doc.meta.unique_id.as_str(), n.seq, n.status))
        .collect()
}

/// The audit rows: (action, uniqueId or INS, detail).
fn audits<'a>(d: &'a Decisions) -> Vec<(&'static str, &'a str, &'a str)> {
    d.audits
        .iter()
        .map(|a| {
            let who = a.unique_id.as_deref().or(a.patient_ins.as_deref());
            (a.action, who.unwrap_or(""), a.detail.as_str())
        })
        .collect()
}

fn changes(pairs: &[(&str, DocStatus)]) -> super::Map<String, DocStatus> {
    pairs.iter().map(|(u, s)| ((*u).to_owned(), *s)).collect()
}

fn quarantined(reason: &str) -> ItemOutcome {
    ItemOutcome::Quarantined(reason.into())
}

/// Nothing written, and nothing reported.
fn assert_writes_nothing(d: &Decisions) {
    assert!(d.docs.is_empty(), "{:?}", d.docs);
    assert!(d.status_changes.is_empty(), "{:?}", d.status_changes);
    assert!(d.quarantines.is_empty(), "{:?}", d.quarantines);
    assert!(d.patients.is_empty());
    assert!(d.audits.is_empty(), "{:?}", d.audits);
    assert!(d.control_id_reused.is_empty());
}

// ---- What the lookup is asked ----

#[test]
fn keys_name_every_row_the_plan_decides_on() {
    let mut waiting = patient(PatientChange::Upsert, INS, "P1");
    waiting.source.content_hash = "h-p".into();
    let batch = vec![
        StoreItem::Document(replace("B", "S", Some("A"), "M1")),
        StoreItem::Quarantine(Quarantined {
            reason: "identity.traits.mismatch".into(),
            detail: String::new(),
            item: Normalized::Patient(Box::new(waiting)),
        }),
        StoreItem::Quarantine(Quarantined {
            reason: "identity.traits.mismatch".into(),
            detail: String::new(),
            item: Normalized::Document(Box::new(initial("Q", "QS", "M2"))),
        }),
        // No control id: nothing to deduplicate the message on.
        StoreItem::Patient(patient(PatientChange::Upsert, INS, "")),
    ];
    let k = Keys::of(&batch);
    fn sorted<'a>(s: &super::Set<&'a str>) -> Vec<&'a str> {
        let mut v: Vec<&str> = s.iter().copied().collect();
        v.sort();
        v
    }
    assert_eq!(sorted(&k.unique_ids), ["A", "B", "Q"]);
    // A quarantined document's set is not looked up: it is never stored from there.
    assert_eq!(sorted(&k.set_ids), ["S"]);
    assert_eq!(sorted(&k.control_ids), ["M1", "M2", "P1"]);
    let mut qkeys: Vec<&str> = k.quarantine_keys.iter().map(String::as_str).collect();
    qkeys.sort();
    assert_eq!(qkeys, ["doc:B", "doc:Q", "msg:LABO^FINESS123/P1/0/h-p"]);
}

// ---- Documents ----

#[test]
fn new_document_is_stored_as_the_first_current_version() {
    let batch = items([initial("A", "S", "M1")]);
    let d = run(&batch, Known::default());
    assert_eq!(d.outcomes, [ItemOutcome::Stored]);
    assert_eq!(inserted(&d), [("A", 1, DocStatus::Current)]);
    assert!(d.status_changes.is_empty());
    assert_eq!(audits(&d), [("stored", "A", "")]);
    assert_eq!(d.audits[0].source, Some(&batch_source(&batch, 0)));
    assert!(d.control_id_reused.is_empty());

    // An initial document naming a set that already has versions is not a new set.
    let batch = items([initial("B", "S", "M2")]);
    let d = run(&batch, holding(&[("A", "S", 1, DocStatus::Current)]));
    assert_eq!(
        d.outcomes,
        [quarantined(Reason::LifecycleSetExists.as_str())]
    );
    assert!(d.docs.is_empty());
}

fn batch_source(batch: &[StoreItem], i: usize) -> SourceRef {
    match &batch[i] {
        StoreItem::Document(d) => d.meta.source.clone(),
        other => panic!("not a document: {other:?}"),
    }
}

#[test]
fn exact_resend_of_a_message_is_a_duplicate() {
    // Applied before, same content: nothing written, not a reused control id.
    let d1 = hashed(initial("A", "S", "M1"), "h1");
    let mut known = Known::default();
    known.applied.push(applied("M1", Some("h1")));
    let batch = items([d1.clone()]);
    let d = run(&batch, known);
    assert_eq!(d.outcomes, [ItemOutcome::Duplicate]);
    assert_writes_nothing(&d);

    // Three times in one batch: stored once.
    let batch = items([d1.clone(), d1.clone(), d1]);
    let d = run(&batch, Known::default());
    assert_eq!(
        d.outcomes,
        [
            ItemOutcome::Stored,
            ItemOutcome::Duplicate,
            ItemOutcome::Duplicate
        ]
    );
    assert_eq!(inserted(&d), [("A", 1, DocStatus::Current)]);
    assert!(d.control_id_reused.is_empty());

    // Without a hash (earlier builds), the same message key with another uniqueId is the
    // sender's retry, not a new document.
    let mut known = Known::default();
    known.applied.push(applied("M2", None));
    let batch = items([initial("C", "S3", "M2")]);
    let d = run(&batch, known);
    assert_eq!(d.outcomes, [ItemOutcome::Duplicate]);
    assert_writes_nothing(&d);
}

#[test]
fn same_unique_id_with_other_content_is_a_duplicate() {
    // The uniqueId is the document's identity, whatever message carries it again.
    let known = holding(&[("A", "S", 1, DocStatus::Current)]);
    let batch = items([
        hashed(initial("A", "S", "M9"), "other-content"),
        hashed(replace("A", "S", None, "M10"), "other-again"),
    ]);
    let d = run(&batch, known);
    assert_eq!(d.outcomes, [ItemOutcome::Duplicate, ItemOutcome::Duplicate]);
    assert_writes_nothing(&d);
}

#[test]
fn replacement_of_a_stored_version_supersedes_it() {
    // By set: the set's current version is the target.
    let known = holding(&[("A", "S", 1, DocStatus::Current)]);
    let batch = items([replace("B", "S", None, "M2")]);
    let d = run(&batch, known);
    assert_eq!(
        d.outcomes,
        [ItemOutcome::Replaced {
            superseded: "A".into()
        }]
    );
    assert_eq!(inserted(&d), [("B", 2, DocStatus::Current)]);
    assert_eq!(d.status_changes, changes(&[("A", DocStatus::Superseded)]));
    assert_eq!(
        audits(&d),
        [
            ("superseded", "A", "superseded by B"),
            ("replaced", "B", "replaces A")
        ]
    );
    // The superseded row is audited under the replacing message.
    assert_eq!(d.audits[0].source, d.audits[1].source);

    // Naming its target; seq follows the set's highest, whatever the target's. The same
    // row found twice by the lookup (by id and by set) counts once.
    let mut known = holding(&[
        ("A", "S", 1, DocStatus::Superseded),
        ("B", "S", 2, DocStatus::Current),
    ]);
    known.docs.push(known.docs[1].clone());
    let batch = items([replace("C", "S", Some("B"), "M3")]);
    let d = run(&batch, known);
    assert_eq!(
        d.outcomes,
        [ItemOutcome::Replaced {
            superseded: "B".into()
        }]
    );
    assert_eq!(inserted(&d), [("C", 3, DocStatus::Current)]);
    assert_eq!(d.status_changes, changes(&[("B", DocStatus::Superseded)]));
}

#[test]
fn replacement_in_the_batch_of_its_original() {
    let batch = items([initial("A", "S", "M1"), replace("B", "S", None, "M2")]);
    let d = run(&batch, Known::default());
    assert_eq!(
        d.outcomes,
        [
            ItemOutcome::Stored,
            ItemOutcome::Replaced {
                superseded: "A".into()
            }
        ]
    );
    // The original is inserted superseded: no UPDATE of a row this batch writes.
    assert_eq!(
        inserted(&d),
        [
            ("A", 1, DocStatus::Superseded),
            ("B", 2, DocStatus::Current)
        ]
    );
    assert!(d.status_changes.is_empty());
    assert_eq!(
        audits(&d),
        [
            ("stored", "A", ""),
            ("superseded", "A", "superseded by B"),
            ("replaced", "B", "replaces A")
        ]
    );
}

/// Initial, replacement and deletion of one document, each with its own content. `one_msg`:
/// all three under one control id (a sender whose counter reset). `by_ids`: the received
/// CDAs' shape (the replacement names its parent, the deletion carries the last version's
/// id), else the generated documents' (no target: the set's current version).
fn chain(one_msg: bool, by_ids: bool) -> [Document; 3] {
    let msg = |m: &str| {
        let m = if one_msg { "M" } else { m };
        m.to_owned()
    };
    let (replace_target, delete_uid, delete_target) = if by_ids {
        (Some("V1"), "V2", Some("V2"))
    } else {
        (None, "DEL", None)
    };
    [
        hashed(initial("V1", "S", &msg("Ma")), "h1"),
        hashed(replace("V2", "S", replace_target, &msg("Mb")), "h2"),
        hashed(delete(delete_uid, "S", delete_target, &msg("Mc")), "h3"),
    ]
}

#[test]
fn lifecycle_chain_in_one_batch_ends_as_in_three() {
    for one_msg in [true, false] {
        for by_ids in [true, false] {
            let label = format!("one control id: {one_msg}, by ids: {by_ids}");
            let together = items(chain(one_msg, by_ids));
            let one = run(&together, Known::default());

            let singles: Vec<Vec<StoreItem>> = chain(one_msg, by_ids)
                .into_iter()
                .map(|d| items([d]))
                .collect();
            let mut known = Known::default();
            let mut three = Vec::new();
            for batch in &singles {
                let d = run(batch, known.clone());
                commit(&mut known, &d);
                three.push(d);
            }
            let outcomes: Vec<ItemOutcome> =
                three.iter().flat_map(|d| d.outcomes.clone()).collect();
            let reused: Vec<bool> = three
                .iter()
                .map(|d| !d.control_id_reused.is_empty())
                .collect();
            let audit_rows: Vec<_> = three.iter().flat_map(audits).collect();

            assert_eq!(
                one.outcomes,
                [
                    ItemOutcome::Stored,
                    ItemOutcome::Replaced {
                        superseded: "V1".into()
                    },
                    ItemOutcome::Deleted {
                        target: "V2".into()
                    }
                ],
                "{label}"
            );
            assert_eq!(outcomes, one.outcomes, "{label}");
            assert_eq!(audits(&one), audit_rows, "{label}");
            // The later two reuse the control id when there is one for all three.
            assert_eq!(reused, [false, one_msg, one_msg], "{label}");
            let expected_reused: &[usize] = if one_msg { &[1, 2] } else { &[] };
            assert_eq!(one.control_id_reused, expected_reused, "{label}");

            let mut end: Vec<_> = known
                .docs
                .iter()
                .map(|k| (k.unique_id.as_str(), k.seq, k.status))
                .collect();
            end.sort_by_key(|e| e.0);
            assert_eq!(
                end,
                [
                    ("V1", 1, DocStatus::Superseded),
                    ("V2", 2, DocStatus::Deleted)
                ],
                "{label}"
            );
            assert_eq!(
                inserted(&one),
                [
                    ("V1", 1, DocStatus::Superseded),
                    ("V2", 2, DocStatus::Deleted)
                ],
                "{label}"
            );
        }
    }
}

#[test]
fn replacement_of_an_unknown_or_retired_target_goes_to_quarantine() {
    // Named target never seen.
    let r = replace("B", "S", Some("A"), "M2");
    let batch = items([r.clone()]);
    let d = run(&batch, Known::default());
    assert_eq!(d.outcomes, [quarantined(TARGET_UNKNOWN)]);
    assert!(d.docs.is_empty() && d.status_changes.is_empty());
    let [q] = d.quarantines.as_slice() else {
        panic!("one entry: {:?}", d.quarantines)
    };
    assert_eq!(
        (q.reason.as_str(), q.detail.as_str(), q.key.as_str()),
        (
            TARGET_UNKNOWN,
            "replacement B: target document not found",
            "doc:B"
        )
    );
    assert_eq!(
        (q.unique_id.as_deref(), q.patient_ins.as_deref()),
        (Some("B"), Some(INS))
    );
    assert_eq!(q.source, &r.meta.source);
    let payload: Normalized = serde_json::from_str(&q.payload).unwrap();
    assert_eq!(payload, Normalized::Document(Box::new(r.clone())));
    assert_eq!(audits(&d), [("quarantined", "B", TARGET_UNKNOWN)]);

    // Replayed while its entry is open: once is enough.
    let mut known = Known::default();
    known.open_quarantine.insert("doc:B".into());
    let d = run(&batch, known);
    assert_eq!(d.outcomes, [ItemOutcome::Duplicate]);
    assert_writes_nothing(&d);

    // By set, the set unknown.
    let batch = items([replace("B", "S", None, "M2")]);
    assert_eq!(
        run(&batch, Known::default()).outcomes,
        [quarantined(TARGET_UNKNOWN)]
    );

    // Named target deleted, or superseded (a fork is never guessed).
    let held = [
        ("A1", "S", 1, DocStatus::Superseded),
        ("A2", "S", 2, DocStatus::Deleted),
    ];
    for (target, status) in [("A1", "superseded"), ("A2", "deleted")] {
        let batch = items([replace("B", "S", Some(target), "M2")]);
        let d = run(&batch, holding(&held));
        assert_eq!(d.outcomes, [quarantined(NOT_CURRENT)]);
        assert_eq!(
            d.quarantines[0].detail,
            format!("replacement B targets {target}, which is {status}")
        );
        assert!(d.docs.is_empty() && d.status_changes.is_empty());
    }
    // By set, nothing current left in it.
    let batch = items([replace("B", "S", None, "M2")]);
    let d = run(&batch, holding(&held));
    assert_eq!(d.outcomes, [quarantined(NOT_CURRENT)]);
    assert_eq!(
        d.quarantines[0].detail,
        "replacement B: its set has no current version"
    );

    // Named target of another set.
    let batch = items([replace("B", "S", Some("X"), "M2")]);
    let d = run(&batch, holding(&[("X", "OTHER", 1, DocStatus::Current)]));
    assert_eq!(
        d.outcomes,
        [quarantined(Reason::LifecycleSetMismatch.as_str())]
    );
}

#[test]
fn deletion_retires_its_target_logically() {
    // By set: the current version goes; the row stays, marked deleted.
    let known = holding(&[
        ("A1", "S", 1, DocStatus::Superseded),
        ("A2", "S", 2, DocStatus::Current),
    ]);
    let batch = items([delete("D", "S", None, "M3")]);
    let d = run(&batch, known.clone());
    assert_eq!(
        d.outcomes,
        [ItemOutcome::Deleted {
            target: "A2".into()
        }]
    );
    assert!(d.docs.is_empty());
    assert_eq!(d.status_changes, changes(&[("A2", DocStatus::Deleted)]));
    assert_eq!(
        audits(&d),
        [("deleted", "A2", "deletion message document D")]
    );

    // Replayed once applied: its message was seen; a later deletion message of a set with
    // nothing current left is a duplicate too, and so is deleting a deleted version.
    let mut after = known;
    commit(&mut after, &d);
    for again in [
        delete("D", "S", None, "M3"),
        delete("D2", "S", None, "M4"),
        delete("D3", "S", Some("A2"), "M5"),
    ] {
        let batch = items([again]);
        let d = run(&batch, after.clone());
        assert_eq!(d.outcomes, [ItemOutcome::Duplicate]);
        assert_writes_nothing(&d);
    }
    // ... while replaying the replacement after the deletion changes nothing either.
    let batch = items([replace("A2", "S", None, "M6")]);
    assert_eq!(run(&batch, after).outcomes, [ItemOutcome::Duplicate]);

    // Naming its target, and the document itself (T04 on its own id).
    let known = holding(&[
        ("X", "SX", 1, DocStatus::Current),
        ("Y", "SY", 1, DocStatus::Current),
    ]);
    let batch = items([
        delete("DX", "SX", Some("X"), "M7"),
        delete("Y", "SY", None, "M8"),
    ]);
    let d = run(&batch, known);
    assert_eq!(
        d.outcomes,
        [
            ItemOutcome::Deleted { target: "X".into() },
            ItemOutcome::Deleted { target: "Y".into() }
        ]
    );
    assert_eq!(
        d.status_changes,
        changes(&[("X", DocStatus::Deleted), ("Y", DocStatus::Deleted)])
    );

    // A version stored by the same batch is inserted deleted.
    let batch = items([initial("N", "SN", "M9"), delete("DN", "SN", None, "M10")]);
    let d = run(&batch, Known::default());
    assert_eq!(inserted(&d), [("N", 1, DocStatus::Deleted)]);
    assert!(d.status_changes.is_empty());

    // Unknown target, or nothing in its set: quarantine, never a guess.
    let batch = items([
        delete("D1", "S1", Some("GONE"), "M11"),
        delete("D2", "S2", None, "M12"),
    ]);
    let d = run(&batch, Known::default());
    assert_eq!(
        d.outcomes,
        [quarantined(TARGET_UNKNOWN), quarantined(TARGET_UNKNOWN)]
    );
    assert_eq!(
        d.quarantines
            .iter()
            .map(|q| q.detail.as_str())
            .collect::<Vec<_>>(),
        [
            "deletion D1: target document not found",
            "deletion D2: no document in its set"
        ]
    );
}

// ---- Quarantine entries from route ----

#[test]
fn quarantine_entry_opens_once() {
    let waiting = initial("Q", "QS", "M1");
    let q = StoreItem::Quarantine(Quarantined {
        reason: "identity.traits.mismatch".into(),
        detail: "birth_name differs".into(),
        item: Normalized::Document(Box::new(waiting.clone())),
    });
    let batch = vec![q.clone(), q.clone()];
    let d = run(&batch, Known::default());
    assert_eq!(
        d.outcomes,
        [
            quarantined("identity.traits.mismatch"),
            ItemOutcome::Duplicate
        ]
    );
    let [entry] = d.quarantines.as_slice() else {
        panic!("one entry: {:?}", d.quarantines)
    };
    assert_eq!(
        (entry.detail.as_str(), entry.key.as_str()),
        ("birth_name differs", "doc:Q")
    );
    assert_eq!(
        audits(&d),
        [("quarantined", "Q", "identity.traits.mismatch")]
    );
    assert!(d.docs.is_empty());

    // Already open in the database, or the document already stored (a replay after it was
    // released and stored): nothing to do.
    let mut open = Known::default();
    open.open_quarantine.insert("doc:Q".into());
    let stored = holding(&[("Q", "QS", 1, DocStatus::Current)]);
    for known in [open, stored] {
        let batch = vec![q.clone()];
        let d = run(&batch, known);
        assert_eq!(d.outcomes, [ItemOutcome::Duplicate]);
        assert_writes_nothing(&d);
    }

    // A packed document waits packed: its bytes apart, as they came (never inflated nor
    // packed again), its JSON the head. An XML one waits with its XML inline.
    let mut packed = waiting.clone();
    packed.cda.pack();
    let bytes = packed.cda.as_packed().unwrap().bytes.clone();
    let batch = vec![StoreItem::Quarantine(Quarantined {
        reason: "identity.traits.mismatch".into(),
        detail: String::new(),
        item: Normalized::Document(Box::new(packed.clone())),
    })];
    let d = run(&batch, Known::default());
    assert_eq!(d.quarantines[0].cda_packed.as_ref(), Some(&bytes));
    let Normalized::Document(head) = serde_json::from_str(&d.quarantines[0].payload).unwrap()
    else {
        panic!("a document")
    };
    let mut whole = *head;
    let Cda::Packed(p) = &mut whole.cda else {
        panic!("the head of a packed document")
    };
    assert!(p.bytes.is_empty(), "no bytes inside the JSON");
    p.bytes = bytes;
    assert_eq!(whole, packed);
    let batch = vec![StoreItem::Quarantine(Quarantined {
        reason: "identity.traits.mismatch".into(),
        detail: String::new(),
        item: Normalized::Document(Box::new(waiting.clone())),
    })];
    let d = run(&batch, Known::default());
    assert_eq!(d.quarantines[0].cda_packed, None);
    let payload: Normalized = serde_json::from_str(&d.quarantines[0].payload).unwrap();
    assert_eq!(payload, Normalized::Document(Box::new(waiting)));
    // A packed body whose bytes are not a packed CDA fails the batch, as inflating it did.
    let mut corrupt = packed;
    let Cda::Packed(p) = &mut corrupt.cda else {
        unreachable!()
    };
    p.bytes = b"<ClinicalDocument/>".to_vec();
    let batch = vec![StoreItem::Quarantine(Quarantined {
        reason: "identity.traits.mismatch".into(),
        detail: String::new(),
        item: Normalized::Document(Box::new(corrupt)),
    })];
    assert!(decide(&batch, Known::default()).is_err());

    // Two identity updates under one reused control id are two cases.
    let waiting_update = |hash: &str| {
        let mut u = patient(PatientChange::Upsert, INS, "P1");
        u.source.content_hash = hash.into();
        StoreItem::Quarantine(Quarantined {
            reason: "patient.opposed".into(),
            detail: String::new(),
            item: Normalized::Patient(Box::new(u)),
        })
    };
    let batch = vec![waiting_update("h1"), waiting_update("h2")];
    let d = run(&batch, Known::default());
    assert_eq!(
        d.quarantines
            .iter()
            .map(|q| (
                q.key.as_str(),
                q.unique_id.is_none(),
                q.patient_ins.is_none()
            ))
            .collect::<Vec<_>>(),
        [
            ("msg:LABO^FINESS123/P1/0/h1", true, true),
            ("msg:LABO^FINESS123/P1/0/h2", true, true)
        ]
    );
}

// ---- Message keys ----

#[test]
fn reused_control_id_is_processed_and_reported() {
    // Applied before with other content.
    let mut known = Known::default();
    known.applied.push(applied("X1", Some("h-a")));
    let batch = items([hashed(initial("B", "SB", "X1"), "h-b")]);
    let d = run(&batch, known.clone());
    assert_eq!(d.outcomes, [ItemOutcome::Stored]);
    assert_eq!(d.control_id_reused, [0]);

    // In one batch: the second reuses the first's key, the third resends the second.
    let dd = hashed(initial("D", "SD", "X2"), "h-d");
    let batch = items([hashed(initial("C", "SC", "X2"), "h-c"), dd.clone(), dd]);
    let d = run(&batch, Known::default());
    assert_eq!(
        d.outcomes,
        [
            ItemOutcome::Stored,
            ItemOutcome::Stored,
            ItemOutcome::Duplicate
        ]
    );
    assert_eq!(d.control_id_reused, [1]);

    // One that ends in quarantine is reported too.
    let batch = items([hashed(replace("O", "SO", Some("NONE"), "X1"), "h-o")]);
    let d = run(&batch, known);
    assert_eq!(d.outcomes, [quarantined(TARGET_UNKNOWN)]);
    assert_eq!(d.control_id_reused, [0]);

    // Without a hash on either side, the key alone decides (the rule before hashes).
    let mut known = Known::default();
    known.applied.push(applied("X4", None));
    known.applied.push(applied("X1", Some("h-a")));
    let batch = items([
        hashed(initial("N1", "SN1", "X4"), "h-new"),
        initial("N2", "SN2", "X1"),
    ]);
    let d = run(&batch, known);
    assert_eq!(d.outcomes, [ItemOutcome::Duplicate, ItemOutcome::Duplicate]);
    assert_writes_nothing(&d);
}

// ---- Identity updates ----

#[test]
fn patient_updates_are_applied_once_and_audited_after_the_documents() {
    let from_b = PatientChange::Merge {
        from_ins: "180012A12345678".into(),
        from_oid: "1.2.250.1.213.1.4.8".into(),
    };
    let from_itself = PatientChange::IdentifierChange {
        old_ins: INS.into(),
        old_oid: "1.2.250.1.213.1.4.8".into(),
    };
    let upsert = patient(PatientChange::Upsert, INS, "P1");
    let batch = vec![
        StoreItem::Patient(upsert.clone()),
        StoreItem::Document(initial("A", "S", "M1")),
        StoreItem::Patient(patient(from_b, INS, "P2")),
        StoreItem::Patient(patient(from_itself, INS, "P3")),
        StoreItem::Patient(upsert.clone()),
    ];
    let d = run(&batch, Known::default());
    assert_eq!(
        d.outcomes,
        [
            ItemOutcome::PatientUpdated,
            ItemOutcome::Stored,
            ItemOutcome::PatientMerged,
            // An identifier "changed" to itself merges nothing.
            ItemOutcome::PatientUpdated,
            ItemOutcome::Duplicate
        ]
    );
    assert_eq!(
        d.patients
            .iter()
            .map(|u| u.source.control_id.as_str())
            .collect::<Vec<_>>(),
        ["P1", "P2", "P3"]
    );
    // Their audit rows come after the documents', as the batch writes them.
    let a47 = format!("A47 identifier changed from {INS}");
    assert_eq!(
        audits(&d),
        [
            ("stored", "A", ""),
            ("patient_upsert", INS, ""),
            ("patient_merge", INS, "A40 merged from 180012A12345678"),
            ("patient_merge", INS, a47.as_str()),
        ]
    );

    // Applied in an earlier batch: a duplicate.
    let mut known = Known::default();
    commit(&mut known, &d);
    let batch = vec![StoreItem::Patient(upsert)];
    let d = run(&batch, known);
    assert_eq!(d.outcomes, [ItemOutcome::Duplicate]);
    assert_writes_nothing(&d);
}

#[test]
fn a_known_unique_id_with_another_cda_is_quarantined_not_a_duplicate() {
    let known = holding(&[("1.2.9.1", "S9", 1, DocStatus::Current)]);
    // The same document again, under a new message: a duplicate.
    let same = initial("1.2.9.1", "S9", "again");
    let items = [StoreItem::Document(same)];
    let d = decide(&items, known.clone()).unwrap();
    assert_eq!(d.outcomes, [ItemOutcome::Duplicate]);
    // Another CDA under that id, as new or as a replacement: held, never dropped.
    let mut other = initial("1.2.9.1", "S9", "other");
    other.cda = Cda::Xml(
        "<ClinicalDocument><id root=\"1.2.9.1\"/><title>autre</title></ClinicalDocument>".into(),
    );
    let mut other_rplc = replace("1.2.9.1", "S9", None, "other-rplc");
    other_rplc.cda = other.cda.clone();
    for item in [other, other_rplc] {
        let items = [StoreItem::Document(item)];
        let d = decide(&items, known.clone()).unwrap();
        assert_eq!(
            d.outcomes,
            [ItemOutcome::Quarantined(
                "lifecycle.unique_id.conflict".into()
            )]
        );
        assert!(d.docs.is_empty() && d.status_changes.is_empty());
        assert_eq!(d.quarantines.len(), 1);
    }
}
