//! Step 1 of `Store::write_batch`: the few `IN (...)` queries that load what a batch may
//! collide with ([`Keys`], named by the plan) as the plain rows the plan decides on
//! ([`Known`]).

use sqlx::{AssertSqlSafe, Row};

use super::LOOKUP_CHUNK;
use crate::StoreError;
use crate::model::DocStatus;
use crate::plan::{AppliedMsg, Keys, Known, KnownDoc};
use crate::tx::Tx;
use crate::util::in_list;

/// Loads every row `keys` names: one query per column and chunk of keys.
pub(super) async fn lookup(tx: &mut Tx, keys: &Keys<'_>) -> Result<Known, StoreError> {
    let err = |e| StoreError::from_sqlx("write_batch lookup", e);
    let mut known = Known::default();
    let ids: Vec<&str> = keys.unique_ids.iter().copied().collect();
    let sets: Vec<&str> = keys.set_ids.iter().copied().collect();
    for (column, values) in [("unique_id", &ids), ("set_id", &sets)] {
        for chunk in values.chunks(LOOKUP_CHUNK) {
            let sql = format!(
                "SELECT {KNOWN_DOC_COLUMNS} FROM documents WHERE {column} IN ({})",
                in_list(1, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for v in chunk {
                q = q.bind(*v);
            }
            for r in q.fetch_all(&mut **tx).await.map_err(err)? {
                known.docs.push(known_doc(&r, 0)?);
            }
        }
    }

    let controls: Vec<&str> = keys.control_ids.iter().copied().collect();
    for chunk in controls.chunks(LOOKUP_CHUNK) {
        let sql = applied_sql(&format!("IN ({})", in_list(1, chunk.len())));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for v in chunk {
            q = q.bind(*v);
        }
        for r in q.fetch_all(&mut **tx).await.map_err(err)? {
            known.applied.push(applied_msg(&r, 0)?);
        }
    }

    let qkeys: Vec<&String> = keys.quarantine_keys.iter().collect();
    for chunk in qkeys.chunks(LOOKUP_CHUNK) {
        let sql = open_quarantine_sql(&format!("IN ({})", in_list(1, chunk.len())));
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

/// The columns `documents` is read by in a lookup (by unique_id or set_id): what
/// [`known_doc`] reads.
pub(super) const KNOWN_DOC_COLUMNS: &str = "unique_id, set_id, seq, status, cda_sha256";

/// The message keys of what was applied before (stored documents, deletions, identity
/// updates) whose control id is one of `$n` (`{ids}`: the list's SQL): what [`applied_msg`]
/// reads. Quarantine entries are not in it on purpose: a released item must be accepted
/// when it is re-routed under the same message key.
pub(super) fn applied_sql(ids: &str) -> String {
    format!(
        "SELECT source_sender, source_control_id, source_position, source_content_hash \
         FROM documents WHERE source_control_id {ids} \
         UNION ALL \
         SELECT source_sender, source_control_id, source_position, source_content_hash \
         FROM audit \
         WHERE action IN ('deleted', 'patient_upsert', 'patient_merge') AND source_control_id {ids}"
    )
}

/// The keys of the open quarantine cases whose key is one of `$n` (`{keys}`: the list's
/// SQL): a case still open for the same item is not opened twice.
pub(super) fn open_quarantine_sql(keys: &str) -> String {
    format!("SELECT item_key FROM quarantine WHERE status = 'open' AND item_key {keys}")
}

/// One row of [`KNOWN_DOC_COLUMNS`], from either driver, its first column at `at` (a
/// statement that reads several kinds of rows at once puts them side by side).
pub(super) fn known_doc<R>(r: &R, at: usize) -> Result<KnownDoc, StoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let err = |e| StoreError::from_sqlx("write_batch lookup", e);
    let unique_id: String = r.try_get(at).map_err(err)?;
    let status: String = r.try_get(at + 3).map_err(err)?;
    let status = DocStatus::parse(&status).ok_or_else(|| StoreError::Data {
        op: "write_batch lookup",
        detail: format!("document {unique_id} has an unknown status"),
    })?;
    Ok(KnownDoc {
        unique_id,
        set_id: r.try_get(at + 1).map_err(err)?,
        seq: r.try_get(at + 2).map_err(err)?,
        status,
        cda_sha256: r.try_get(at + 4).map_err(err)?,
    })
}

/// One row of [`applied_sql`], from either driver, its first column at `at`.
pub(super) fn applied_msg<R>(r: &R, at: usize) -> Result<AppliedMsg, StoreError>
where
    R: Row,
    usize: sqlx::ColumnIndex<R>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let err = |e| StoreError::from_sqlx("write_batch lookup", e);
    Ok(AppliedMsg {
        sender: r.try_get(at).map_err(err)?,
        control_id: r.try_get(at + 1).map_err(err)?,
        position: r.try_get(at + 2).map_err(err)?,
        content_hash: r.try_get(at + 3).map_err(err)?,
    })
}
