//! The `audit` table's writer: one row per thing the store did (stored, replaced,
//! superseded, deleted, quarantined, patient updates and imports), written in the
//! transaction of the change. Shared by the batch and the registry import, which is why
//! it is neither's.

use dmpflow_schemas::SourceRef;
use sqlx::AssertSqlSafe;

use crate::StoreError;
use crate::tx::Tx;
use crate::util::{stored_hash, values_sql};

/// Rows per multi-row statement. Bounded by SQLite's 32766 variables and PostgreSQL's
/// 65535 parameters, and kept fixed so the statement text repeats.
const AUDIT_CHUNK: usize = 400;

/// One audit row to write. `source` is the message that caused it (`None` for a CSV
/// import, which has no message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditRow<'a> {
    pub action: &'static str,
    pub unique_id: Option<String>,
    pub patient_ins: Option<String>,
    pub source: Option<&'a SourceRef>,
    pub detail: String,
}

pub(crate) async fn insert_audits(
    tx: &mut Tx,
    rows: &[AuditRow<'_>],
    now: &str,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(AUDIT_CHUNK) {
        let sql = values_sql(
            "INSERT INTO audit (at, action, unique_id, patient_ins, source_feed, source_sender, \
             source_control_id, source_position, source_topic, source_partition, source_offset, detail, \
             source_content_hash)",
            13,
            chunk.len(),
            "",
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            let s = r.source;
            q = q
                .bind(now)
                .bind(r.action)
                .bind(r.unique_id.as_deref())
                .bind(r.patient_ins.as_deref())
                .bind(s.and_then(|s| s.feed).map(|f| f.as_str()))
                .bind(s.map(|s| s.sender.as_str()))
                .bind(s.and_then(|s| (!s.control_id.is_empty()).then_some(s.control_id.as_str())))
                .bind(s.map(|s| i64::from(s.position)))
                .bind(s.and_then(|s| s.topic.as_deref()))
                .bind(s.and_then(|s| s.partition).map(i64::from))
                .bind(s.and_then(|s| s.offset))
                .bind(r.detail.as_str())
                .bind(s.and_then(stored_hash));
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_sqlx("write_batch audit", e))?;
    }
    Ok(())
}
