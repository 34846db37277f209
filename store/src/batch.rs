//! `Store::write_batch`: documents, quarantine entries, patient updates and consumer
//! offsets in one transaction (exactly-once into the DMP).
//!
//! A batch runs in three steps so that the database sees a handful of statements however
//! many items there are:
//! 1. look up, in a few `IN (...)` queries, everything the batch could collide with (known
//!    uniqueIds and setIds, message keys already applied, items already in quarantine);
//! 2. decide every item in memory, in order ([`crate::plan`], pure: no SQL there);
//! 3. write the result with multi-row INSERTs (entries: one JSON parameter per chunk) and
//!    grouped UPDATEs, then the offsets, then commit. Statement text only depends on the
//!    chunk size, so sqlx's per-connection statement cache reuses the prepared statements
//!    from batch to batch.

use std::collections::HashMap;

use dmpflow_schemas::{Document, Entry, PackedCda};
use sqlx::{AssertSqlSafe, Row};

use crate::audit::insert_audits;
use crate::model::{BatchReport, DocStatus, ItemOutcome, OffsetCommit, StoreItem};
use crate::plan::{self, AppliedMsg, Keys, Known, KnownDoc, NewDoc, NewQuarantine};
use crate::tx::Tx;
use crate::util::{in_list, now_rfc3339, pack_cda, stored_hash, values_sql};
use crate::{Backend, Store, StoreError, patients};

/// Rows per multi-row statement. Bounded by SQLite's 32766 variables and PostgreSQL's
/// 65535 parameters, and kept fixed so the statement text repeats.
const DOC_CHUNK: usize = 100;
const ENTRY_CHUNK: usize = 2000;
const QUARANTINE_CHUNK: usize = 100;
const LOOKUP_CHUNK: usize = 500;

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
        let known = lookup(&mut tx, &Keys::of(items)).await?;
        let decisions = plan::decide(items, known)?;

        let now = now_rfc3339();
        if !decisions.docs.is_empty() {
            let packed: Vec<&PackedCda> = decisions
                .docs
                .iter()
                .map(|d| packed[&address(d.doc)])
                .collect();
            insert_documents(&mut tx, &decisions.docs, &packed, &now).await?;
            insert_entries(&mut tx, self.backend, &decisions.docs).await?;
        }
        for status in [
            DocStatus::Superseded,
            DocStatus::Deleted,
            DocStatus::Current,
        ] {
            let ids: Vec<&str> = decisions
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
        insert_quarantines(&mut tx, &decisions.quarantines, &now).await?;
        for u in &decisions.patients {
            patients::apply_in_tx(&mut tx, u, &now).await?;
        }
        insert_audits(&mut tx, &decisions.audits, &now).await?;
        commit_offsets(&mut tx, offsets).await?;
        tx.commit().await.map_err(err)?;
        Ok(BatchReport {
            outcomes: decisions.outcomes,
            control_id_reused: decisions.control_id_reused,
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
async fn lookup(tx: &mut Tx, keys: &Keys<'_>) -> Result<Known, StoreError> {
    let err = |e| StoreError::from_sqlx("write_batch lookup", e);
    let mut known = Known::default();
    let ids: Vec<&str> = keys.unique_ids.iter().copied().collect();
    let sets: Vec<&str> = keys.set_ids.iter().copied().collect();
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
                let status: String = r.try_get(3).map_err(err)?;
                let status = DocStatus::parse(&status).ok_or_else(|| StoreError::Data {
                    op: "write_batch lookup",
                    detail: format!("document {unique_id} has an unknown status"),
                })?;
                known.docs.push(KnownDoc {
                    unique_id,
                    set_id: r.try_get(1).map_err(err)?,
                    seq: r.try_get(2).map_err(err)?,
                    status,
                });
            }
        }
    }

    let controls: Vec<&str> = keys.control_ids.iter().copied().collect();
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
            known.applied.push(AppliedMsg {
                sender: r.try_get(0).map_err(err)?,
                control_id: r.try_get(1).map_err(err)?,
                position: r.try_get(2).map_err(err)?,
                content_hash: r.try_get(3).map_err(err)?,
            });
        }
    }

    let qkeys: Vec<&String> = keys.quarantine_keys.iter().collect();
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
            known.open_quarantine.insert(r.try_get(0).map_err(err)?);
        }
    }
    Ok(known)
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
