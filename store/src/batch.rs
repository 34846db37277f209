//! `Store::write_batch`: documents, quarantine entries, patient updates and consumer
//! offsets in one transaction (exactly-once into the DMP).
//!
//! A batch runs in three steps so that the database sees a handful of statements however
//! many items there are:
//! 1. look up, in a few `IN (...)` queries, everything the batch could collide with (known
//!    uniqueIds and setIds, message keys already applied, items already in quarantine);
//! 2. decide every item in memory, in order, updating that picture as it goes, so that a
//!    batch holding a document and its replacement behaves as if they came one by one;
//! 3. write the result with multi-row INSERTs (entries: one JSON parameter per chunk) and
//!    grouped UPDATEs, then the offsets, then commit. Statement text only depends on the chunk size, so sqlx's per-connection
//!    statement cache reuses the prepared statements from batch to batch.

use std::collections::{HashMap, HashSet};

use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{
    Document, Entry, Lifecycle, Normalized, PackedCda, PatientChange, PatientUpdate, SourceRef,
};
use sqlx::{AssertSqlSafe, Row};

use crate::audit::{AuditRow, insert_audits};
use crate::model::{BatchReport, DocStatus, ItemOutcome, OffsetCommit, StoreItem};
use crate::tx::Tx;
use crate::util::{in_list, now_rfc3339, pack_cda, stored_hash, unpack_cda, values_sql};
use crate::{Backend, Store, StoreError, patients};

/// Rows per multi-row statement. Bounded by SQLite's 32766 variables and PostgreSQL's
/// 65535 parameters, and kept fixed so the statement text repeats.
const DOC_CHUNK: usize = 100;
const ENTRY_CHUNK: usize = 2000;
const QUARANTINE_CHUNK: usize = 100;
const LOOKUP_CHUNK: usize = 500;

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

/// Quarantine deduplication key of an item.
pub(crate) fn item_key(item: &Normalized) -> String {
    match item {
        Normalized::Document(d) => format!("doc:{}", d.meta.unique_id),
        // With its content hash (when it has one): two updates under a reused control id
        // are two cases, not one.
        Normalized::Patient(p) if !p.source.content_hash.is_empty() => format!(
            "msg:{}/{}/{}/{}",
            p.source.sender, p.source.control_id, p.source.position, p.source.content_hash
        ),
        Normalized::Patient(p) => format!(
            "msg:{}/{}/{}",
            p.source.sender, p.source.control_id, p.source.position
        ),
    }
}

#[derive(Debug, Clone)]
struct Known {
    set_id: String,
    status: DocStatus,
    /// Index into `Plan::docs` when the row is inserted by this batch.
    new_idx: Option<usize>,
}

struct NewDoc<'a> {
    doc: &'a Document,
    seq: i64,
    status: DocStatus,
}

struct NewQuarantine<'a> {
    reason: String,
    detail: String,
    key: String,
    unique_id: Option<String>,
    /// The document's patient: what the route stage's sweeper matches against the registry.
    patient_ins: Option<String>,
    payload: String,
    source: &'a SourceRef,
}

/// The in-memory picture of what the batch touches, and what it will write.
#[derive(Default)]
struct Plan<'a> {
    known: HashMap<String, Known>,
    current_by_set: HashMap<String, String>,
    max_seq: HashMap<String, i64>,
    /// Messages applied (in the database, then by this batch): key → content hashes, ""
    /// standing for "applied without a hash".
    seen: HashMap<MsgKey, HashSet<String>>,
    /// Whether the item being planned reused a control id (read after each item).
    reused: bool,
    open_quarantine: HashSet<String>,

    docs: Vec<NewDoc<'a>>,
    status_changes: HashMap<String, DocStatus>,
    audits: Vec<AuditRow<'a>>,
    quarantines: Vec<NewQuarantine<'a>>,
    patients: Vec<&'a PatientUpdate>,
}

impl<'a> Plan<'a> {
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

    fn load_doc(&mut self, unique_id: String, set_id: String, seq: i64, status: DocStatus) {
        let max = self.max_seq.entry(set_id.clone()).or_insert(seq);
        *max = (*max).max(seq);
        if status == DocStatus::Current {
            self.current_by_set
                .insert(set_id.clone(), unique_id.clone());
        }
        self.known.insert(
            unique_id,
            Known {
                set_id,
                status,
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

    fn insert_doc(&mut self, doc: &'a Document, seq: i64, action: &'static str, detail: String) {
        let m = &doc.meta;
        self.known.insert(
            m.unique_id.clone(),
            Known {
                set_id: m.set_id.clone(),
                status: DocStatus::Current,
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
        // A quarantine keeps the CDA itself (its JSON has no room for the compressed bytes).
        let mut item = item;
        if let Normalized::Document(d) = &mut item
            && let Some(p) = d.packed.take()
        {
            d.cda = unpack_cda(&p.bytes, &p.sha256).map_err(|why| StoreError::Data {
                op: "write_batch",
                detail: format!("packed CDA of a document to quarantine: {why}"),
            })?;
        }
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
        match m.lifecycle {
            Lifecycle::Initial => {
                if self.known.contains_key(&m.unique_id) {
                    return Ok(ItemOutcome::Duplicate);
                }
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
                self.insert_doc(doc, 1, "stored", String::new());
                Ok(ItemOutcome::Stored)
            }
            Lifecycle::Replace => {
                if self.known.contains_key(&m.unique_id) {
                    return Ok(ItemOutcome::Duplicate);
                }
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
                self.insert_doc(doc, seq, "replaced", format!("replaces {target}"));
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

    fn quarantined(
        &mut self,
        q: &'a dmpflow_schemas::Quarantined,
    ) -> Result<ItemOutcome, StoreError> {
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

impl Store {
    /// Writes a batch and the consumer offsets covering it in ONE transaction, and returns
    /// one outcome per item, in order.
    ///
    /// - Idempotent by document uniqueId and by (sender, control id, position, content
    ///   hash): a duplicate is [`ItemOutcome::Duplicate`] and changes nothing. The same
    ///   sender, control id and position with another content hash is a reused control id:
    ///   processed like any message (see [`Store::write_batch_report`]).
    /// - Replacement: stored as current with seq = previous + 1; the target
    ///   (`target_unique_id`, else the set's current version) becomes superseded.
    /// - Deletion: the target (`target_unique_id`, else the document itself, else the
    ///   set's current version) is marked deleted (logical delete).
    /// - A replacement/deletion whose target is unknown goes to quarantine as
    ///   `lifecycle.target.unknown`; it is never guessed.
    ///
    /// On error nothing of the batch is written, offsets included;
    /// [`StoreError::is_transient`] tells whether to retry it.
    pub async fn write_batch(
        &self,
        items: &[StoreItem],
        offsets: &[OffsetCommit],
    ) -> Result<Vec<ItemOutcome>, StoreError> {
        Ok(self.write_batch_report(items, offsets).await?.outcomes)
    }

    /// [`Store::write_batch`], also telling which items reused a control id (for the
    /// `hl7.control_id.reused` metric and warning, once the batch is committed).
    pub async fn write_batch_report(
        &self,
        items: &[StoreItem],
        offsets: &[OffsetCommit],
    ) -> Result<BatchReport, StoreError> {
        const OP: &str = "write_batch";
        if items.is_empty() && offsets.is_empty() {
            return Ok(BatchReport::default());
        }
        let err = |e| StoreError::from_sqlx(OP, e);
        // Documents from Kafka arrive packed by normalize. The others (embedded mode, quarantine
        // releases) are compressed here: CPU work, so before the transaction opens (row locks
        // are not held meanwhile), off the async workers, on every core. Duplicates found by
        // the plan are compressed for nothing, which only happens on replays.
        let to_pack: Vec<&Document> = items
            .iter()
            .filter_map(|i| match i {
                StoreItem::Document(d) if d.packed.is_none() => Some(d),
                _ => None,
            })
            .collect();
        let packed_here = pack_all(to_pack.iter().map(|d| d.cda.clone()).collect()).await?;
        // Keyed by address (as usize: a raw pointer would make the future !Send): a plan
        // entry borrows its document from `items`.
        let address = |d: &Document| d as *const Document as usize;
        let mut packed: HashMap<usize, &PackedCda> = to_pack
            .iter()
            .zip(&packed_here)
            .map(|(d, p)| (address(d), p))
            .collect();
        for item in items {
            if let StoreItem::Document(d) = item
                && let Some(p) = &d.packed
            {
                packed.insert(address(d), p);
            }
        }
        let mut tx = self.begin(OP).await?;
        let mut plan = Plan::default();
        lookup(&mut tx, items, &mut plan).await?;

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

        let now = now_rfc3339();
        if !plan.docs.is_empty() {
            let packed: Vec<&PackedCda> =
                plan.docs.iter().map(|d| packed[&address(d.doc)]).collect();
            insert_documents(&mut tx, &plan.docs, &packed, &now).await?;
            insert_entries(&mut tx, self.backend, &plan.docs).await?;
        }
        for status in [
            DocStatus::Superseded,
            DocStatus::Deleted,
            DocStatus::Current,
        ] {
            let ids: Vec<&str> = plan
                .status_changes
                .iter()
                .filter(|(_, s)| **s == status)
                .map(|(u, _)| u.as_str())
                .collect();
            for chunk in ids.chunks(LOOKUP_CHUNK) {
                let sql = format!(
                    "UPDATE documents SET status = $1 WHERE unique_id IN ({})",
                    in_list(2, chunk.len())
                );
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(status.as_str());
                for u in chunk {
                    q = q.bind(*u);
                }
                q.execute(&mut *tx).await.map_err(err)?;
            }
        }
        insert_quarantines(&mut tx, &plan.quarantines, &now).await?;
        for u in &plan.patients {
            patients::apply_in_tx(&mut tx, u, &now).await?;
            plan.audits.push(patients::audit_row(u));
        }
        insert_audits(&mut tx, &plan.audits, &now).await?;
        commit_offsets(&mut tx, offsets).await?;
        tx.commit().await.map_err(err)?;
        Ok(BatchReport {
            outcomes,
            control_id_reused,
        })
    }

    /// The offsets committed for `group` on `topic`: `(partition, next offset to read)`,
    /// sorted by partition.
    pub async fn committed_offsets(
        &self,
        group: &str,
        topic: &str,
    ) -> Result<Vec<(i32, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT \"partition\", next_offset FROM consumer_offsets \
             WHERE group_id = $1 AND topic = $2 ORDER BY \"partition\"",
        )
        .bind(group)
        .bind(topic)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| StoreError::from_sqlx("committed_offsets", e))?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i32, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| StoreError::from_sqlx("committed_offsets", e))
    }
}

/// Step 1: load what the batch may collide with.
async fn lookup<'a>(
    tx: &mut Tx,
    items: &'a [StoreItem],
    plan: &mut Plan<'a>,
) -> Result<(), StoreError> {
    let err = |e| StoreError::from_sqlx("write_batch lookup", e);
    let mut ids: HashSet<&str> = HashSet::new();
    let mut sets: HashSet<&str> = HashSet::new();
    let mut controls: HashSet<&str> = HashSet::new();
    let mut qkeys: HashSet<String> = HashSet::new();
    for item in items {
        match item {
            StoreItem::Document(d) => {
                let m = &d.meta;
                ids.insert(&m.unique_id);
                if let Some(t) = &m.target_unique_id {
                    ids.insert(t);
                }
                sets.insert(&m.set_id);
                controls.insert(&m.source.control_id);
                // Any lifecycle may end in a store-made quarantine entry.
                qkeys.insert(format!("doc:{}", m.unique_id));
            }
            StoreItem::Quarantine(q) => {
                qkeys.insert(item_key(&q.item));
                match &q.item {
                    Normalized::Document(d) => {
                        ids.insert(&d.meta.unique_id);
                        controls.insert(&d.meta.source.control_id);
                    }
                    Normalized::Patient(p) => {
                        controls.insert(&p.source.control_id);
                    }
                }
            }
            StoreItem::Patient(u) => {
                controls.insert(&u.source.control_id);
            }
        }
    }
    controls.remove("");

    let ids: Vec<&str> = ids.into_iter().collect();
    let sets: Vec<&str> = sets.into_iter().collect();
    for (column, values) in [("unique_id", &ids), ("set_id", &sets)] {
        for chunk in values.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT unique_id, set_id, seq, status FROM documents WHERE {column} IN ({})",
                in_list(1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for v in chunk {
                q = q.bind(*v);
            }
            for r in q.fetch_all(&mut **tx).await.map_err(err)? {
                let unique_id: String = r.try_get(0).map_err(err)?;
                if plan.known.contains_key(&unique_id) {
                    continue;
                }
                let status: String = r.try_get(3).map_err(err)?;
                let status = DocStatus::parse(&status).ok_or_else(|| StoreError::Data {
                    op: "write_batch lookup",
                    detail: format!("document {unique_id} has an unknown status"),
                })?;
                plan.load_doc(
                    unique_id,
                    r.try_get(1).map_err(err)?,
                    r.try_get(2).map_err(err)?,
                    status,
                );
            }
        }
    }

    let controls: Vec<&str> = controls.into_iter().collect();
    for chunk in controls.chunks(LOOKUP_CHUNK) {
        let list = in_list(1, chunk.len());
        // Messages already applied: stored documents, deletions and patient updates.
        // Quarantine entries are not in this list on purpose: a released item must be
        // accepted when it is re-routed under the same message key.
        let sql = format!(
            "SELECT source_sender, source_control_id, source_position, source_content_hash \
             FROM documents WHERE source_control_id IN ({list}) \
             UNION ALL \
             SELECT source_sender, source_control_id, source_position, source_content_hash \
             FROM audit \
             WHERE action IN ('deleted', 'patient_upsert', 'patient_merge') AND source_control_id IN ({list})"
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for v in chunk {
            q = q.bind(*v);
        }
        for r in q.fetch_all(&mut **tx).await.map_err(err)? {
            let hash: Option<String> = r.try_get(3).map_err(err)?;
            plan.seen
                .entry((
                    r.try_get(0).map_err(err)?,
                    r.try_get(1).map_err(err)?,
                    r.try_get(2).map_err(err)?,
                ))
                .or_default()
                .insert(hash.unwrap_or_default());
        }
    }

    let qkeys: Vec<String> = qkeys.into_iter().collect();
    for chunk in qkeys.chunks(LOOKUP_CHUNK) {
        let sql = format!(
            "SELECT item_key FROM quarantine WHERE status = 'open' AND item_key IN ({})",
            in_list(1, chunk.len())
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for v in chunk {
            q = q.bind(v.as_str());
        }
        for r in q.fetch_all(&mut **tx).await.map_err(err)? {
            plan.open_quarantine.insert(r.try_get(0).map_err(err)?);
        }
    }
    Ok(())
}

/// Compresses the CDAs on tokio's blocking pool, one task per core, in order. Pool threads
/// are reused; a thread spawned per batch gave the allocator a new heap to grow each time.
async fn pack_all(cdas: Vec<String>) -> Result<Vec<PackedCda>, StoreError> {
    if cdas.is_empty() {
        return Ok(Vec::new());
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = cdas.len().div_ceil(cores);
    let mut cdas = cdas.into_iter();
    let mut tasks = Vec::with_capacity(cores);
    loop {
        let part: Vec<String> = cdas.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        tasks.push(tokio::task::spawn_blocking(move || {
            part.iter().map(|c| pack_cda(c)).collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.extend(task.await.map_err(|_| StoreError::Data {
            op: "write_batch",
            detail: "CDA compression task failed".into(),
        })?);
    }
    Ok(out)
}

const ENTRIES_FROM_JSON_PG: &str = "INSERT INTO entries (document_unique_id, position, kind, code, \
    code_system, label, value, value_type, unit, interpretation, reference_low, reference_high, \
    reference_text, status, time, quantity) \
    SELECT document_unique_id, position, kind, code, code_system, label, value, value_type, unit, \
    interpretation, reference_low, reference_high, reference_text, status, time, quantity \
    FROM json_to_recordset(CAST($1 AS json)) AS x(document_unique_id text, position bigint, \
    kind text, code text, code_system text, label text, value text, value_type text, unit text, \
    interpretation text, reference_low text, reference_high text, reference_text text, \
    status text, time text, quantity text)";

const ENTRIES_FROM_JSON_SQLITE: &str = "INSERT INTO entries (document_unique_id, position, kind, \
    code, code_system, label, value, value_type, unit, interpretation, reference_low, \
    reference_high, reference_text, status, time, quantity) \
    SELECT json_extract(value, '$.document_unique_id'), json_extract(value, '$.position'), \
    json_extract(value, '$.kind'), json_extract(value, '$.code'), \
    json_extract(value, '$.code_system'), json_extract(value, '$.label'), \
    json_extract(value, '$.value'), json_extract(value, '$.value_type'), \
    json_extract(value, '$.unit'), json_extract(value, '$.interpretation'), \
    json_extract(value, '$.reference_low'), json_extract(value, '$.reference_high'), \
    json_extract(value, '$.reference_text'), json_extract(value, '$.status'), \
    json_extract(value, '$.time'), json_extract(value, '$.quantity') \
    FROM json_each($1)";

const DOC_COLUMNS: &str = "INSERT INTO documents (unique_id, set_id, version, seq, lifecycle, status, \
    target_unique_id, type_code, class_code, format_code, title, patient_ins, patient_ins_oid, \
    author_person_id, author_organisation_id, creation_time, service_start, service_stop, \
    confidentiality, visibility, origin, cda_packed, cda_sha256, cda_size, source_feed, source_sender, \
    source_control_id, source_position, source_topic, source_partition, source_offset, stored_at, \
    source_content_hash, practice_setting)";

async fn insert_documents(
    tx: &mut Tx,
    docs: &[NewDoc<'_>],
    packed: &[&PackedCda],
    now: &str,
) -> Result<(), StoreError> {
    let visibility: Vec<String> = docs
        .iter()
        .map(|d| serde_json::to_string(&d.doc.meta.visibility).expect("strings serialise"))
        .collect();
    let mut start = 0;
    for chunk in docs.chunks(DOC_CHUNK) {
        let sql = values_sql(DOC_COLUMNS, 34, chunk.len(), "");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (i, d) in chunk.iter().enumerate() {
            let m = &d.doc.meta;
            let p = &packed[start + i];
            let s = &m.source;
            q = q
                .bind(m.unique_id.as_str())
                .bind(m.set_id.as_str())
                .bind(i64::from(m.version))
                .bind(d.seq)
                .bind(m.lifecycle.as_str())
                .bind(d.status.as_str())
                .bind(m.target_unique_id.as_deref())
                .bind(m.type_code.as_str())
                .bind(m.class_code.as_str())
                .bind(m.format_code.as_str())
                .bind(m.title.as_str())
                .bind(m.patient.ins.as_str())
                .bind(m.patient.ins_oid.as_str())
                .bind(m.author.person_id.as_deref())
                .bind(m.author.organisation_id.as_deref())
                .bind(m.creation_time.as_str())
                .bind(m.service_start.as_deref())
                .bind(m.service_stop.as_deref())
                .bind(m.confidentiality.as_str())
                .bind(visibility[start + i].as_str())
                .bind(match m.origin {
                    dmpflow_schemas::CdaOrigin::Generated => "generated",
                    dmpflow_schemas::CdaOrigin::Received => "received",
                })
                .bind(p.bytes.as_slice())
                .bind(p.sha256.as_str())
                .bind(p.size)
                .bind(s.feed.map(|f| f.as_str()))
                .bind(s.sender.as_str())
                .bind((!s.control_id.is_empty()).then_some(s.control_id.as_str()))
                .bind(i64::from(s.position))
                .bind(s.topic.as_deref())
                .bind(s.partition.map(i64::from))
                .bind(s.offset)
                .bind(now)
                .bind(stored_hash(s))
                .bind(m.practice_setting.as_deref());
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_sqlx("write_batch documents", e))?;
        start += chunk.len();
    }
    Ok(())
}

/// One `entries` row, flattened from an `Entry`. Serialised as JSON with the column names
/// as keys (see `insert_entries`).
#[derive(serde::Serialize)]
struct EntryRow<'a> {
    #[serde(rename = "document_unique_id")]
    unique_id: &'a str,
    position: i64,
    kind: &'static str,
    code: &'a str,
    code_system: Option<&'a str>,
    label: &'a str,
    value: Option<&'a str>,
    value_type: Option<&'a str>,
    unit: Option<&'a str>,
    interpretation: Option<&'a str>,
    reference_low: Option<&'a str>,
    reference_high: Option<&'a str>,
    reference_text: Option<&'a str>,
    status: Option<&'a str>,
    time: Option<&'a str>,
    quantity: Option<&'a str>,
}

fn entry_row<'a>(unique_id: &'a str, position: usize, e: &'a Entry) -> EntryRow<'a> {
    match e {
        Entry::LabObservation {
            loinc,
            label,
            value,
            value_type,
            unit,
            interpretation,
            reference_low,
            reference_high,
            reference_text,
            status,
            time,
        } => EntryRow {
            unique_id,
            position: position as i64,
            kind: "lab_observation",
            code: loinc,
            code_system: None,
            label,
            value: Some(value),
            value_type: Some(value_type),
            unit: unit.as_deref(),
            interpretation: interpretation.as_deref(),
            reference_low: reference_low.as_deref(),
            reference_high: reference_high.as_deref(),
            reference_text: reference_text.as_deref(),
            status: Some(status),
            time: time.as_deref(),
            quantity: None,
        },
        Entry::Dispensation {
            code,
            code_system,
            label,
            quantity,
            unit,
            time,
        } => EntryRow {
            unique_id,
            position: position as i64,
            kind: "dispensation",
            code,
            code_system: Some(code_system),
            label,
            value: None,
            value_type: None,
            unit: unit.as_deref(),
            interpretation: None,
            reference_low: None,
            reference_high: None,
            reference_text: None,
            status: None,
            time: Some(time),
            quantity: Some(quantity),
        },
    }
}

async fn insert_entries(
    tx: &mut Tx,
    backend: Backend,
    docs: &[NewDoc<'_>],
) -> Result<(), StoreError> {
    let rows: Vec<EntryRow<'_>> = docs
        .iter()
        .flat_map(|d| {
            let uid = d.doc.meta.unique_id.as_str();
            d.doc
                .entries
                .iter()
                .enumerate()
                .map(move |(i, e)| entry_row(uid, i, e))
        })
        .collect();
    // Entries are the bulk of a batch (tens per lab report). Binding 16 parameters per
    // row made them most of the write time, so each chunk travels as ONE JSON parameter
    // that the database unpacks; the statement text is fixed and stays prepared.
    let sql = match backend {
        Backend::Postgres => ENTRIES_FROM_JSON_PG,
        Backend::Sqlite => ENTRIES_FROM_JSON_SQLITE,
    };
    for chunk in rows.chunks(ENTRY_CHUNK) {
        let json = serde_json::to_string(chunk).map_err(|e| StoreError::Data {
            op: "write_batch entries",
            detail: format!("entries do not serialise: {e}"),
        })?;
        sqlx::query(sql)
            .bind(json)
            .execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_sqlx("write_batch entries", e))?;
    }
    Ok(())
}

async fn insert_quarantines(
    tx: &mut Tx,
    rows: &[NewQuarantine<'_>],
    now: &str,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(QUARANTINE_CHUNK) {
        let sql = values_sql(
            "INSERT INTO quarantine (reason, detail, item_key, unique_id, payload, source_feed, \
             source_sender, source_control_id, source_position, source_topic, source_partition, \
             source_offset, status, created_at, patient_ins)",
            15,
            chunk.len(),
            "",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            let s = r.source;
            q = q
                .bind(r.reason.as_str())
                .bind(r.detail.as_str())
                .bind(r.key.as_str())
                .bind(r.unique_id.as_deref())
                .bind(r.payload.as_str())
                .bind(s.feed.map(|f| f.as_str()))
                .bind(s.sender.as_str())
                .bind((!s.control_id.is_empty()).then_some(s.control_id.as_str()))
                .bind(i64::from(s.position))
                .bind(s.topic.as_deref())
                .bind(s.partition.map(i64::from))
                .bind(s.offset)
                .bind("open")
                .bind(now)
                .bind(r.patient_ins.as_deref());
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_sqlx("write_batch quarantine", e))?;
    }
    Ok(())
}

async fn commit_offsets(tx: &mut Tx, offsets: &[OffsetCommit]) -> Result<(), StoreError> {
    // One row per partition (the last commit wins): PostgreSQL refuses an upsert that
    // touches the same row twice in one statement.
    let mut last: HashMap<(&str, &str, i32), i64> = HashMap::new();
    for o in offsets {
        last.insert((&o.group, &o.topic, o.partition), o.next_offset);
    }
    let rows: Vec<_> = last.into_iter().collect();
    for chunk in rows.chunks(LOOKUP_CHUNK) {
        // Plain overwrite, not "max": a deliberate rewind must be possible, and a stale
        // writer moving it back only causes re-reads that come out as duplicates.
        let sql = values_sql(
            "INSERT INTO consumer_offsets (group_id, topic, \"partition\", next_offset)",
            4,
            chunk.len(),
            "ON CONFLICT (group_id, topic, \"partition\") DO UPDATE SET next_offset = excluded.next_offset",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for ((g, t, p), n) in chunk {
            q = q.bind(*g).bind(*t).bind(i64::from(*p)).bind(*n);
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_sqlx("write_batch offsets", e))?;
    }
    Ok(())
}
