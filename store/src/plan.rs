//! The lifecycle plan of a batch, pure: from the batch's items and what the database
//! already holds ([`Known`], plain data), decide every item in order (new document,
//! replacement, deletion, resend, reused control id, quarantine entry, patient update) and
//! say what to write ([`Decisions`]). No SQL and no I/O here: `batch.rs` asks the database
//! for the [`Keys`] the plan names, hands the answer to [`decide`], and writes what comes
//! back, so the lifecycle rules are tested without a database (`plan/tests.rs`).
//!
//! Items are decided one by one, each seeing what the earlier ones did (a document and its
//! replacement in one batch behave as if they came in two batches).

use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{
    Cda, Document, Lifecycle, Normalized, Packing, PatientChange, PatientUpdate, Quarantined,
    SourceRef,
};

use crate::StoreError;
use crate::audit::AuditRow;
use crate::model::{DocStatus, ItemOutcome, StoreItem};

/// The plan's maps and sets: std's collections hashed with foldhash instead of SipHash.
/// They are keyed by the batch's ids (unique ids, set ids, message keys) and the plan looks
/// each up several times per item: SipHash was 2.3-2.9% of the store stage's CPU in `perf`
/// (bench/ANALYSIS.md "Session 22"). A batch holds at most a few hundred keys, so flooding
/// one with colliding ids could cost little even if it were possible; foldhash's state is
/// still seeded at random per map. Already in the tree (hashbrown's default hasher).
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// What goes in: the keys to look up and the rows found.
mod known;
#[cfg(test)]
mod tests;

use known::item_key;
pub(crate) use known::{AppliedMsg, Keys, Known, KnownDoc};

/// A message's key: sender, control id (MSH-10), position in the message. With the same
/// key, the content hash tells a resend (same hash) from a reused control id (another).
type MsgKey = (String, String, i64);

/// How an item's message compares with those already applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MsgSeen {
    New,
    /// Same key and same content (or a side without a hash: payloads and rows of earlier
    /// builds, compared on the key alone as they were): a resend.
    Resend,
    /// Same key, other content: the sender reused the control id. Processed.
    Reused,
}

fn msg_key(s: &SourceRef) -> Option<MsgKey> {
    // Without a control id there is no message identity to deduplicate on; the document
    // uniqueId still is one.
    (!s.control_id.is_empty()).then(|| (s.sender.clone(), s.control_id.clone(), s.position as i64))
}

// ---- What comes out ----

/// A document version the batch inserts, with the status it ends the batch in (a version
/// replaced later in the same batch is inserted as superseded).
#[derive(Debug)]
pub(crate) struct NewDoc<'a> {
    pub doc: &'a Document,
    pub seq: i64,
    pub status: DocStatus,
    /// The version a replacement superseded, as the plan resolved it (a replacement may
    /// name only its set): stored as `target_unique_id`, so readers need not guess.
    pub replaces: Option<String>,
}

/// A quarantine entry the batch opens.
#[derive(Debug)]
pub(crate) struct NewQuarantine<'a> {
    pub reason: String,
    pub detail: String,
    pub key: String,
    pub unique_id: Option<String>,
    /// The document's patient: what the route stage's sweeper matches against the registry.
    pub patient_ins: Option<String>,
    /// The item as JSON. A packed document's JSON is its head (`cda` empty, `packed` with
    /// the hash and size), its bytes in `cda_packed`; an XML one holds its XML.
    pub payload: String,
    /// The compressed CDA of a packed document, as it came: release files these bytes.
    pub cda_packed: Option<Vec<u8>>,
    pub source: &'a SourceRef,
}

/// Everything the batch writes, and what it answers.
#[derive(Debug, Default)]
pub(crate) struct Decisions<'a> {
    /// One per item, in order.
    pub outcomes: Vec<ItemOutcome>,
    /// Indexes of the items whose message key was applied before with other content.
    pub control_id_reused: Vec<usize>,
    pub docs: Vec<NewDoc<'a>>,
    /// New statuses of versions stored before this batch (a version this batch inserts
    /// carries its final status in `docs` instead).
    pub status_changes: Map<String, DocStatus>,
    pub quarantines: Vec<NewQuarantine<'a>>,
    /// Identity updates to apply, in order. What they change depends on the registry row
    /// as the transaction reads it, so `patients::apply_all_in_tx` decides that part.
    pub patients: Vec<&'a PatientUpdate>,
    /// Audit rows in the order written: documents and quarantines as decided, then one per
    /// patient update.
    pub audits: Vec<AuditRow<'a>>,
}

/// Decides every item of a batch, in order, against `known`.
pub(crate) fn decide<'a>(
    items: &'a [StoreItem],
    known: Known,
) -> Result<Decisions<'a>, StoreError> {
    let mut plan = Plan::from_known(known);
    let mut outcomes = Vec::with_capacity(items.len());
    let mut control_id_reused = Vec::new();
    for (i, item) in items.iter().enumerate() {
        plan.reused = false;
        outcomes.push(match item {
            StoreItem::Document(d) => plan.document(d)?,
            StoreItem::Quarantine(q) => plan.quarantined(q)?,
            StoreItem::Patient(u) => plan.patient(u),
        });
        if plan.reused {
            control_id_reused.push(i);
        }
    }
    let mut audits = plan.audits;
    audits.extend(plan.patients.iter().map(|u| patient_audit(u)));
    Ok(Decisions {
        outcomes,
        control_id_reused,
        docs: plan.docs,
        status_changes: plan.status_changes,
        quarantines: plan.quarantines,
        patients: plan.patients,
        audits,
    })
}

/// The audit row of an identity update.
fn patient_audit(u: &PatientUpdate) -> AuditRow<'_> {
    let (action, detail) = match &u.change {
        PatientChange::Upsert => ("patient_upsert", String::new()),
        PatientChange::Merge { from_ins, .. } => {
            ("patient_merge", format!("A40 merged from {from_ins}"))
        }
        PatientChange::IdentifierChange { old_ins, .. } => (
            "patient_merge",
            format!("A47 identifier changed from {old_ins}"),
        ),
    };
    AuditRow {
        action,
        unique_id: None,
        patient_ins: Some(u.patient.ins.clone()),
        source: Some(&u.source),
        detail,
    }
}

// ---- The plan while it runs ----

/// A document version as the plan sees it while deciding.
#[derive(Debug, Clone)]
struct DocState {
    set_id: String,
    status: DocStatus,
    /// SHA-256 of its CDA, to tell the same document again from another under its id.
    cda_sha256: String,
    /// Index into `Plan::docs` when the row is inserted by this batch.
    new_idx: Option<usize>,
}

/// The in-memory picture of what the batch touches, and what it will write.
#[derive(Default)]
struct Plan<'a> {
    known: Map<String, DocState>,
    current_by_set: Map<String, String>,
    max_seq: Map<String, i64>,
    /// Messages applied (in the database, then by this batch): key → content hashes, ""
    /// standing for "applied without a hash".
    seen: Map<MsgKey, Set<String>>,
    /// Whether the item being planned reused a control id (read after each item).
    reused: bool,
    open_quarantine: Set<String>,

    docs: Vec<NewDoc<'a>>,
    status_changes: Map<String, DocStatus>,
    audits: Vec<AuditRow<'a>>,
    quarantines: Vec<NewQuarantine<'a>>,
    patients: Vec<&'a PatientUpdate>,
}

impl<'a> Plan<'a> {
    fn from_known(known: Known) -> Plan<'a> {
        let mut plan = Plan {
            open_quarantine: known.open_quarantine,
            ..Plan::default()
        };
        for d in known.docs {
            // The first row found for a uniqueId wins (the same row comes back from the
            // lookup by id and from the lookup by set).
            if !plan.known.contains_key(&d.unique_id) {
                plan.load_doc(d.unique_id, d.set_id, d.seq, d.status, d.cda_sha256);
            }
        }
        for m in known.applied {
            plan.seen
                .entry((m.sender, m.control_id, m.position))
                .or_default()
                .insert(m.content_hash.unwrap_or_default());
        }
        plan
    }

    fn msg_seen(&self, s: &SourceRef) -> MsgSeen {
        let Some(hashes) = msg_key(s).and_then(|k| self.seen.get(&k)) else {
            return MsgSeen::New;
        };
        if s.content_hash.is_empty() || hashes.contains("") || hashes.contains(&s.content_hash) {
            MsgSeen::Resend
        } else {
            MsgSeen::Reused
        }
    }

    /// True when the item's message was applied before (a resend); notes a reused control id.
    fn is_resend(&mut self, s: &SourceRef) -> bool {
        match self.msg_seen(s) {
            MsgSeen::New => false,
            MsgSeen::Resend => true,
            MsgSeen::Reused => {
                self.reused = true;
                false
            }
        }
    }

    fn mark_seen(&mut self, s: &SourceRef) {
        if let Some(k) = msg_key(s) {
            self.seen
                .entry(k)
                .or_default()
                .insert(s.content_hash.clone());
        }
    }

    fn load_doc(
        &mut self,
        unique_id: String,
        set_id: String,
        seq: i64,
        status: DocStatus,
        cda_sha256: String,
    ) {
        let max = self.max_seq.entry(set_id.clone()).or_insert(seq);
        *max = (*max).max(seq);
        if status == DocStatus::Current {
            self.current_by_set
                .insert(set_id.clone(), unique_id.clone());
        }
        self.known.insert(
            unique_id,
            DocState {
                set_id,
                status,
                cda_sha256,
                new_idx: None,
            },
        );
    }

    fn set_status(&mut self, unique_id: &str, status: DocStatus) {
        let k = self.known.get_mut(unique_id).expect("target is known");
        k.status = status;
        if self.current_by_set.get(&k.set_id).map(String::as_str) == Some(unique_id) {
            self.current_by_set.remove(&k.set_id);
        }
        match k.new_idx {
            Some(i) => self.docs[i].status = status,
            None => {
                self.status_changes.insert(unique_id.to_owned(), status);
            }
        }
    }

    fn insert_doc(
        &mut self,
        doc: &'a Document,
        seq: i64,
        replaces: Option<String>,
        action: &'static str,
        detail: String,
    ) {
        let m = &doc.meta;
        self.known.insert(
            m.unique_id.clone(),
            DocState {
                set_id: m.set_id.clone(),
                status: DocStatus::Current,
                cda_sha256: cda_sha256(doc),
                new_idx: Some(self.docs.len()),
            },
        );
        self.current_by_set
            .insert(m.set_id.clone(), m.unique_id.clone());
        self.max_seq.insert(m.set_id.clone(), seq);
        self.mark_seen(&m.source);
        self.docs.push(NewDoc {
            doc,
            seq,
            status: DocStatus::Current,
            replaces,
        });
        self.audits.push(AuditRow {
            action,
            unique_id: Some(m.unique_id.clone()),
            patient_ins: None,
            source: Some(&m.source),
            detail,
        });
    }

    fn quarantine(
        &mut self,
        item: Normalized,
        reason: String,
        detail: String,
        source: &'a SourceRef,
    ) -> Result<ItemOutcome, StoreError> {
        let key = item_key(&item);
        if self.open_quarantine.contains(&key) {
            return Ok(ItemOutcome::Duplicate);
        }
        let (unique_id, patient_ins) = match &item {
            Normalized::Document(d) => (
                Some(d.meta.unique_id.clone()),
                Some(d.meta.patient.ins.clone()),
            ),
            Normalized::Patient(_) => (None, None),
        };
        // A quarantine keeps a packed CDA packed, never inflated nor packed again: its bytes
        // go to a column of their own (JSON has no room for them), and release files them
        // as they are. An XML body (a producer outside the pipeline) stays inline in the
        // JSON, as every case of builds before that column.
        let mut item = item;
        let cda_packed = match &mut item {
            Normalized::Document(d) => match &mut d.cda {
                Cda::Packed(p) if Packing::of(&p.bytes).is_none() => {
                    return Err(StoreError::Data {
                        op: "write_batch",
                        detail: "packed CDA of a document to quarantine is neither zstd nor gzip"
                            .into(),
                    });
                }
                Cda::Packed(p) => Some(std::mem::take(&mut p.bytes)),
                Cda::Xml(_) => None,
            },
            Normalized::Patient(_) => None,
        };
        let payload = serde_json::to_string(&item).map_err(|e| StoreError::Data {
            op: "write_batch",
            detail: format!("quarantine payload does not serialise: {e}"),
        })?;
        self.audits.push(AuditRow {
            action: "quarantined",
            unique_id: unique_id.clone(),
            patient_ins: None,
            source: Some(source),
            detail: reason.clone(),
        });
        self.open_quarantine.insert(key.clone());
        self.quarantines.push(NewQuarantine {
            reason: reason.clone(),
            detail,
            key,
            unique_id,
            patient_ins,
            payload,
            cda_packed,
            source,
        });
        Ok(ItemOutcome::Quarantined(reason))
    }

    fn lifecycle_quarantine(
        &mut self,
        doc: &'a Document,
        reason: Reason,
        detail: String,
    ) -> Result<ItemOutcome, StoreError> {
        self.quarantine(
            Normalized::Document(Box::new(doc.clone())),
            reason.as_str().to_owned(),
            detail,
            &doc.meta.source,
        )
    }

    fn document(&mut self, doc: &'a Document) -> Result<ItemOutcome, StoreError> {
        let m = &doc.meta;
        if self.is_resend(&m.source) {
            return Ok(ItemOutcome::Duplicate);
        }
        // A uniqueId already stored: the same document again is a duplicate; another CDA
        // under that id is held for a person to look at, never dropped nor stored over the
        // first (a deletion names its target by this id and carries no new content).
        if m.lifecycle != Lifecycle::Delete
            && let Some(known) = self.known.get(&m.unique_id)
        {
            if known.cda_sha256 == cda_sha256(doc) {
                return Ok(ItemOutcome::Duplicate);
            }
            return self.lifecycle_quarantine(
                doc,
                Reason::LifecycleUniqueIdConflict,
                format!(
                    "document {} is already stored with another CDA",
                    m.unique_id
                ),
            );
        }
        match m.lifecycle {
            Lifecycle::Initial => {
                if self.max_seq.contains_key(&m.set_id) {
                    return self.lifecycle_quarantine(
                        doc,
                        Reason::LifecycleSetExists,
                        format!(
                            "initial document {} names a setId that already has versions",
                            m.unique_id
                        ),
                    );
                }
                self.insert_doc(doc, 1, None, "stored", String::new());
                Ok(ItemOutcome::Stored)
            }
            Lifecycle::Replace => {
                let target = match &m.target_unique_id {
                    Some(t) => self.known.contains_key(t).then(|| t.clone()),
                    None => self.current_by_set.get(&m.set_id).cloned(),
                };
                let Some(target) = target else {
                    if m.target_unique_id.is_none() && self.max_seq.contains_key(&m.set_id) {
                        return self.lifecycle_quarantine(
                            doc,
                            Reason::LifecycleTargetNotCurrent,
                            format!(
                                "replacement {}: its set has no current version",
                                m.unique_id
                            ),
                        );
                    }
                    return self.lifecycle_quarantine(
                        doc,
                        Reason::LifecycleTargetUnknown,
                        format!("replacement {}: target document not found", m.unique_id),
                    );
                };
                let t = &self.known[&target];
                if t.set_id != m.set_id {
                    return self.lifecycle_quarantine(
                        doc,
                        Reason::LifecycleSetMismatch,
                        format!(
                            "replacement {} targets {target} of another set",
                            m.unique_id
                        ),
                    );
                }
                if t.status != DocStatus::Current {
                    return self.lifecycle_quarantine(
                        doc,
                        Reason::LifecycleTargetNotCurrent,
                        format!(
                            "replacement {} targets {target}, which is {}",
                            m.unique_id,
                            t.status.as_str()
                        ),
                    );
                }
                let seq = self.max_seq[&m.set_id] + 1;
                self.set_status(&target, DocStatus::Superseded);
                self.audits.push(AuditRow {
                    action: "superseded",
                    unique_id: Some(target.clone()),
                    patient_ins: None,
                    source: Some(&m.source),
                    detail: format!("superseded by {}", m.unique_id),
                });
                let detail = format!("replaces {target}");
                self.insert_doc(doc, seq, Some(target.clone()), "replaced", detail);
                Ok(ItemOutcome::Replaced { superseded: target })
            }
            Lifecycle::Delete => {
                let target = if let Some(t) = &m.target_unique_id {
                    if !self.known.contains_key(t) {
                        return self.lifecycle_quarantine(
                            doc,
                            Reason::LifecycleTargetUnknown,
                            format!("deletion {}: target document not found", m.unique_id),
                        );
                    }
                    t.clone()
                } else if self.known.contains_key(&m.unique_id) {
                    // MDM^T04 naming the document itself.
                    m.unique_id.clone()
                } else if let Some(c) = self.current_by_set.get(&m.set_id) {
                    c.clone()
                } else if self.max_seq.contains_key(&m.set_id) {
                    // The set exists and nothing in it is current: already deleted.
                    return Ok(ItemOutcome::Duplicate);
                } else {
                    return self.lifecycle_quarantine(
                        doc,
                        Reason::LifecycleTargetUnknown,
                        format!("deletion {}: no document in its set", m.unique_id),
                    );
                };
                let t = &self.known[&target];
                if t.set_id != m.set_id {
                    return self.lifecycle_quarantine(
                        doc,
                        Reason::LifecycleSetMismatch,
                        format!("deletion {} targets {target} of another set", m.unique_id),
                    );
                }
                if t.status == DocStatus::Deleted {
                    return Ok(ItemOutcome::Duplicate);
                }
                self.set_status(&target, DocStatus::Deleted);
                self.mark_seen(&m.source);
                self.audits.push(AuditRow {
                    action: "deleted",
                    unique_id: Some(target.clone()),
                    patient_ins: None,
                    source: Some(&m.source),
                    detail: format!("deletion message document {}", m.unique_id),
                });
                Ok(ItemOutcome::Deleted { target })
            }
        }
    }

    fn quarantined(&mut self, q: &'a Quarantined) -> Result<ItemOutcome, StoreError> {
        let (source, unique_id) = match &q.item {
            Normalized::Document(d) => (&d.meta.source, Some(&d.meta.unique_id)),
            Normalized::Patient(p) => (&p.source, None),
        };
        // Already stored (a replay after the item was released and stored): nothing to do.
        if unique_id.is_some_and(|u| self.known.contains_key(u)) || self.is_resend(source) {
            return Ok(ItemOutcome::Duplicate);
        }
        self.quarantine(q.item.clone(), q.reason.clone(), q.detail.clone(), source)
    }

    fn patient(&mut self, u: &'a PatientUpdate) -> ItemOutcome {
        if self.is_resend(&u.source) {
            return ItemOutcome::Duplicate;
        }
        self.mark_seen(&u.source);
        self.patients.push(u);
        let merged = match &u.change {
            PatientChange::Upsert => false,
            PatientChange::Merge { from_ins, .. } => *from_ins != u.patient.ins,
            PatientChange::IdentifierChange { old_ins, .. } => *old_ins != u.patient.ins,
        };
        if merged {
            ItemOutcome::PatientMerged
        } else {
            ItemOutcome::PatientUpdated
        }
    }
}

/// SHA-256 (hex) of a document's CDA: the packed body carries it; an XML body (a released
/// case of an earlier build, a library caller) is hashed here.
fn cda_sha256(doc: &Document) -> String {
    match &doc.cda {
        Cda::Packed(p) => p.sha256.clone(),
        Cda::Xml(xml) => dmpflow_schemas::cda_body::sha256_hex(xml.as_bytes()),
    }
}
