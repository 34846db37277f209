//! The `audit` table's writer: one row per thing the store did (stored, replaced,
//! superseded, deleted, quarantined, patient updates and imports), written in the
//! transaction of the change. Shared by the batch and the registry import, which is why
//! it is neither's.

use dmpflow_schemas::SourceRef;
use sqlx::AssertSqlSafe;

use crate::StoreError;
use crate::rows::AUDIT_COLUMNS;
use crate::tx::Tx;
use crate::util::values_sql;

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
    let prefix = format!("INSERT INTO audit ({AUDIT_COLUMNS})");
    for chunk in rows.chunks(AUDIT_CHUNK) {
        let sql = values_sql(&prefix, 13, chunk.len(), "");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            q = crate::rows::bind(q, &crate::rows::audit(r, now));
        }
        q.execute(&mut **tx)
            .await
            .map_err(|e| StoreError::from_sqlx("write_batch audit", e))?;
    }
    Ok(())
}
