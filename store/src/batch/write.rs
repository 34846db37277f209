//! Step 3 of `Store::write_batch`: what the plan decided, written with multi-row INSERTs
//! (entries: one JSON parameter per chunk, unpacked by the database), grouped status
//! UPDATEs, and the consumer offsets, all inside the batch transaction.

use std::collections::HashMap;

use dmpflow_schemas::{Entry, PackedCda};
use sqlx::AssertSqlSafe;

use super::LOOKUP_CHUNK;
use crate::model::{DocStatus, OffsetCommit};
use crate::plan::{NewDoc, NewQuarantine};
use crate::tx::Tx;
use crate::util::{in_list, stored_hash, values_sql};
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

const DOC_COLUMNS: &str = "INSERT INTO documents (unique_id, set_id, version, seq, lifecycle, status, \
    target_unique_id, type_code, class_code, format_code, title, patient_ins, patient_ins_oid, \
    author_person_id, author_organisation_id, creation_time, service_start, service_stop, \
    confidentiality, visibility, origin, cda_packed, cda_sha256, cda_size, source_feed, source_sender, \
    source_control_id, source_position, source_topic, source_partition, source_offset, stored_at, \
    source_content_hash, practice_setting)";

pub(super) async fn insert_documents(
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
                .bind(d.replaces.as_deref().or(m.target_unique_id.as_deref()))
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

pub(super) async fn insert_entries(
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

pub(super) async fn insert_quarantines(
    tx: &mut Tx,
    rows: &[NewQuarantine<'_>],
    now: &str,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(QUARANTINE_CHUNK) {
        let sql = values_sql(
            "INSERT INTO quarantine (reason, detail, item_key, unique_id, payload, source_feed, \
             source_sender, source_control_id, source_position, source_topic, source_partition, \
             source_offset, status, created_at, patient_ins, cda_packed)",
            16,
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
                .bind(r.patient_ins.as_deref())
                .bind(r.cda_packed.as_deref());
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
    changes: &HashMap<String, DocStatus>,
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

pub(super) async fn commit_offsets(
    tx: &mut Tx,
    offsets: &[OffsetCommit],
) -> Result<(), StoreError> {
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
