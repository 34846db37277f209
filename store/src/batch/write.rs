//! Step 3 of `Store::write_batch` on the shared path (SQLite, and batches with identity
//! updates on PostgreSQL): what the plan decided, written with multi-row INSERTs of the
//! rows `rows.rs` lays out (entries: one JSON parameter per chunk, unpacked by the
//! database), grouped status UPDATEs, and the consumer offsets, all inside the batch
//! transaction. The helpers both paths share (entry rows, visibility JSON, last offsets)
//! live here too; `pg.rs` is the PostgreSQL path.

use std::collections::HashMap;

use dmpflow_schemas::PackedCda;
use sqlx::AssertSqlSafe;

use super::LOOKUP_CHUNK;
use crate::model::{DocStatus, OffsetCommit};
use crate::plan::{NewDoc, NewQuarantine};
use crate::rows::{self, DOCUMENT_COLUMNS, QUARANTINE_COLUMNS, Val};
use crate::tx::Tx;
use crate::util::{in_list, values_sql};
use crate::{Backend, StoreError};

/// Rows per multi-row statement. Bounded by SQLite's 32766 variables and PostgreSQL's
/// 65535 parameters, and kept fixed so the statement text repeats.
const DOC_CHUNK: usize = 100;
const ENTRY_CHUNK: usize = 2000;
const QUARANTINE_CHUNK: usize = 100;

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

pub(super) async fn insert_documents(
    tx: &mut Tx,
    docs: &[NewDoc<'_>],
    packed: &[&PackedCda],
    now: &str,
) -> Result<(), StoreError> {
    let visibility = visibility_json(docs);
    let prefix = format!("INSERT INTO documents ({DOCUMENT_COLUMNS})");
    let mut start = 0;
    for chunk in docs.chunks(DOC_CHUNK) {
        let sql = values_sql(&prefix, 34, chunk.len(), "");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (i, d) in chunk.iter().enumerate() {
            let row = rows::document(d, packed[start + i], &visibility[start + i], now);
            q = rows::bind(q, &row);
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_sqlx("write_batch documents", e))?;
        start += chunk.len();
    }
    Ok(())
}

/// Each document's TRE_A07 visibility codes as the JSON array the `visibility` column holds.
pub(super) fn visibility_json(docs: &[NewDoc<'_>]) -> Vec<String> {
    docs.iter()
        .map(|d| serde_json::to_string(&d.doc.meta.visibility).expect("strings serialise"))
        .collect()
}

/// Every entry row of the batch's documents, in order.
pub(super) fn entry_rows<'a>(docs: &'a [NewDoc<'_>]) -> impl Iterator<Item = [Val<'a>; 16]> {
    docs.iter().flat_map(|d| {
        let uid = d.doc.meta.unique_id.as_str();
        d.doc
            .entries
            .iter()
            .enumerate()
            .map(move |(i, e)| rows::entry(uid, i, e))
    })
}

/// One `entries` row as a JSON object keyed by column name (see `insert_entries`): the
/// names ([`rows::entry_column_names`], worked out once per batch) and the values.
struct EntryJson<'a>(&'a [&'static str; 16], [Val<'a>; 16]);

impl serde::Serialize for EntryJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.1.len()))?;
        for (name, v) in self.0.iter().zip(&self.1) {
            match v {
                Val::Text(t) => map.serialize_entry(name, t)?,
                Val::Int(i) => map.serialize_entry(name, i)?,
                // No entry column is binary.
                Val::Bytes(_) => map.serialize_entry(name, &None::<&str>)?,
            }
        }
        map.end()
    }
}

pub(super) async fn insert_entries(
    tx: &mut Tx,
    backend: Backend,
    docs: &[NewDoc<'_>],
) -> Result<(), StoreError> {
    let names = rows::entry_column_names();
    let rows: Vec<EntryJson<'_>> = entry_rows(docs).map(|r| EntryJson(&names, r)).collect();
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

pub(super) async fn insert_quarantines(
    tx: &mut Tx,
    new: &[NewQuarantine<'_>],
    now: &str,
) -> Result<(), StoreError> {
    let prefix = format!("INSERT INTO quarantine ({QUARANTINE_COLUMNS})");
    for chunk in new.chunks(QUARANTINE_CHUNK) {
        let sql = values_sql(&prefix, 16, chunk.len(), "");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            q = rows::bind(q, &rows::quarantine(r, now));
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_sqlx("write_batch quarantine", e))?;
    }
    Ok(())
}

/// Moves versions stored before this batch to their new status: one UPDATE per status
/// and chunk of ids.
pub(super) async fn update_statuses(
    tx: &mut Tx,
    changes: &crate::plan::Map<String, DocStatus>,
) -> Result<(), StoreError> {
    for status in [
        DocStatus::Superseded,
        DocStatus::Deleted,
        DocStatus::Current,
    ] {
        let ids: Vec<&str> = changes
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
            q.execute(&mut **tx)
                .await
                .map_err(|e| StoreError::from_sqlx("write_batch", e))?;
        }
    }
    Ok(())
}

/// One offset per (group, topic, partition), the last commit winning: PostgreSQL refuses an
/// upsert that touches the same row twice in one statement.
pub(super) fn last_offsets(offsets: &[OffsetCommit]) -> Vec<((&str, &str, i32), i64)> {
    let mut last: HashMap<(&str, &str, i32), i64> = HashMap::new();
    for o in offsets {
        last.insert((&o.group, &o.topic, o.partition), o.next_offset);
    }
    last.into_iter().collect()
}

/// What an offsets upsert does on conflict. Plain overwrite, not "max": a deliberate rewind
/// must be possible, and a stale writer moving it back only causes re-reads that come out
/// as duplicates.
pub(super) const OFFSETS_CONFLICT: &str =
    "ON CONFLICT (group_id, topic, \"partition\") DO UPDATE SET next_offset = excluded.next_offset";

pub(super) async fn commit_offsets(
    tx: &mut Tx,
    offsets: &[OffsetCommit],
) -> Result<(), StoreError> {
    let rows = last_offsets(offsets);
    for chunk in rows.chunks(LOOKUP_CHUNK) {
        let sql = values_sql(
            "INSERT INTO consumer_offsets (group_id, topic, \"partition\", next_offset)",
            4,
            chunk.len(),
            OFFSETS_CONFLICT,
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
