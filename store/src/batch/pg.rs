//! `Store::write_batch` on PostgreSQL through sqlx's native driver, for batches without
//! identity updates (the store stage's: documents and quarantine cases): the same three
//! steps and the same plan as the shared path, in fewer, cheaper statements.
//!
//! - Lookups bind each key list as ONE array parameter (`= ANY($1)`): no chunking, three
//!   statements whatever the batch size.
//! - New rows (documents, entries, quarantine entries, audit rows) go by binary `COPY`
//!   ([`CopyRows`]): no parameters converted through the `Any` layer, no JSON for the
//!   entries, nothing for the server to parse but lengths and bytes. `COPY` checks every
//!   constraint and fires every trigger as `INSERT` does; the plan already decided that no
//!   row collides, so a conflict here is an error that rolls the batch back, as before.
//! - Status changes and the offsets are one statement each (arrays again).
//!
//! Everything runs in one transaction with the consumer offsets, as on the shared path;
//! which path wrote a batch leaves no trace in the rows (the PostgreSQL suites of
//! `store/tests` run on this one, the SQLite suite and identity updates on the other).

use std::sync::LazyLock;

use dmpflow_schemas::{Document, PackedCda};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{AssertSqlSafe, Row};

use super::lookup::{KNOWN_DOC_COLUMNS, applied_msg, applied_sql, known_doc, open_quarantine_sql};
use super::write::{OFFSETS_CONFLICT, entry_rows, last_offsets, visibility_json};
use crate::StoreError;
use crate::model::{BatchReport, DocStatus, OffsetCommit, StoreItem};
use crate::plan::{self, Keys, Known};
use crate::rows::{
    self, AUDIT_COLUMNS, COPY_CHUNK, CopyRows, DOCUMENT_COLUMNS, ENTRY_COLUMNS, QUARANTINE_COLUMNS,
    Val,
};
use crate::tx::PG_BEGIN;
use crate::util::now_rfc3339;

const OP: &str = "write_batch";

fn err(e: sqlx::Error) -> StoreError {
    StoreError::from_sqlx(OP, e)
}

/// Writes `items` (no [`StoreItem::Patient`]: the caller sends those batches the shared
/// way) and `offsets` in one transaction; `packed` gives each document's packed CDA.
pub(super) async fn write_batch<'p>(
    pool: &PgPool,
    items: &[StoreItem],
    offsets: &[OffsetCommit],
    packed: impl Fn(&Document) -> &'p PackedCda + Sync,
) -> Result<BatchReport, StoreError> {
    // As `Store::begin`: every statement finds its rows by key (see there why).
    let mut tx = pool.begin_with(PG_BEGIN).await.map_err(err)?;
    let known = lookup(&mut tx, &Keys::of(items)).await?;
    let decisions = plan::decide(items, known)?;
    if !decisions.patients.is_empty() {
        // Unreachable: the caller keeps identity updates on the shared path. Refused rather
        // than dropped, and nothing is written.
        return Err(StoreError::Data {
            op: OP,
            detail: "an identity update reached the PostgreSQL batch path".into(),
        });
    }
    let now = now_rfc3339();

    if !decisions.docs.is_empty() {
        let visibility = visibility_json(&decisions.docs);
        // Each row is made as it is encoded, never collected: a batch's entries rows
        // collected first were megabytes of fresh pages per transaction (a fifth of the
        // store stage's CPU went to the kernel zeroing them, bench/ANALYSIS.md "Session 12").
        let docs = decisions
            .docs
            .iter()
            .zip(&visibility)
            .map(|(d, v)| rows::document(d, packed(d.doc), v, &now));
        copy(&mut tx, "documents", DOCUMENT_COLUMNS, Box::new(docs)).await?;
        let entries = entry_rows(&decisions.docs);
        copy(&mut tx, "entries", ENTRY_COLUMNS, Box::new(entries)).await?;
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
        if !ids.is_empty() {
            sqlx::query("UPDATE documents SET status = $1 WHERE unique_id = ANY($2)")
                .bind(status.as_str())
                .bind(&ids)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
    }
    let quarantine = decisions
        .quarantines
        .iter()
        .map(|q| rows::quarantine(q, &now));
    copy(
        &mut tx,
        "quarantine",
        QUARANTINE_COLUMNS,
        Box::new(quarantine),
    )
    .await?;
    let audit = decisions.audits.iter().map(|a| rows::audit(a, &now));
    copy(&mut tx, "audit", AUDIT_COLUMNS, Box::new(audit)).await?;
    commit_offsets(&mut tx, offsets).await?;
    tx.commit().await.map_err(err)?;
    Ok(BatchReport {
        outcomes: decisions.outcomes,
        control_id_reused: decisions.control_id_reused,
    })
}

/// The rows of one `COPY`, made one at a time as they are encoded. Boxed as a `dyn`
/// iterator because the future holds it across its awaits, and rustc cannot prove a
/// closure-built iterator held there `Send` ("implementation of `FnOnce` is not general
/// enough", a known limitation of rustc); the boxed one is checked where it is made.
type RowIter<'r, const N: usize> = Box<dyn Iterator<Item = [Val<'r>; N]> + Send + 'r>;

/// Sends `rows` to `table` by binary `COPY` (nothing when there are none), encoded into
/// one reused buffer and sent a chunk at a time.
async fn copy<const N: usize>(
    conn: &mut PgConnection,
    table: &str,
    columns: &str,
    rows: RowIter<'_, N>,
) -> Result<(), StoreError> {
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {table} ({columns}) FROM STDIN (FORMAT binary)"
        ))
        .await
        .map_err(err)?;
    let mut buf = CopyRows::new();
    for row in rows {
        buf.row(&row);
        if buf.pending().len() >= COPY_CHUNK {
            copy.send(buf.pending()).await.map_err(err)?;
            buf.sent();
        }
    }
    copy.send(buf.finish()).await.map_err(err)?;
    copy.finish().await.map_err(err)?;
    Ok(())
}

/// What the batch may collide with, as `lookup.rs` reads it on the shared path (the same
/// columns, row readers and "applied" rule), in ONE statement: each round trip of a store
/// transaction waits for both the server and this process to be scheduled, milliseconds
/// each on a busy machine (session 11 timed a transaction's steps: `bench/ANALYSIS.md`).
/// Each row says what it is in its first column ('d' a document by unique_id or set_id, 'a'
/// an applied message, 'q' an open quarantine key, in the document's first column); the
/// kinds sit side by side, the others' columns NULL. An empty key list matches nothing.
async fn lookup(conn: &mut PgConnection, keys: &Keys<'_>) -> Result<Known, StoreError> {
    let mut known = Known::default();
    let ids: Vec<&str> = keys.unique_ids.iter().copied().collect();
    let sets: Vec<&str> = keys.set_ids.iter().copied().collect();
    let controls: Vec<&str> = keys.control_ids.iter().copied().collect();
    let qkeys: Vec<&str> = keys.quarantine_keys.iter().map(String::as_str).collect();
    if ids.is_empty() && sets.is_empty() && controls.is_empty() && qkeys.is_empty() {
        return Ok(known);
    }
    for r in sqlx::query(AssertSqlSafe(LOOKUP_SQL.as_str()))
        .bind(&ids)
        .bind(&sets)
        .bind(&controls)
        .bind(&qkeys)
        .fetch_all(&mut *conn)
        .await
        .map_err(err)?
    {
        let kind: String = r.try_get(0).map_err(err)?;
        match kind.as_str() {
            "d" => known.docs.push(known_doc(&r, DOC_AT)?),
            "a" => known.applied.push(applied_msg(&r, APPLIED_AT)?),
            "q" => {
                known
                    .open_quarantine
                    .insert(r.try_get(DOC_AT).map_err(err)?);
            }
            other => {
                return Err(StoreError::Data {
                    op: OP,
                    detail: format!("lookup row of unknown kind {other:?}"),
                });
            }
        }
    }
    Ok(known)
}

/// Where [`LOOKUP_SQL`] puts a document's columns and an applied message's.
const DOC_AT: usize = 1;
const APPLIED_AT: usize = 6;

/// The one lookup statement: `$1` unique ids, `$2` set ids, `$3` control ids, `$4` open
/// quarantine keys (text arrays). Built once, from the shared path's pieces.
static LOOKUP_SQL: LazyLock<String> = LazyLock::new(|| {
    const NO_DOC: &str = "NULL::text, NULL::text, NULL::bigint, NULL::text, NULL::text";
    const NO_APPLIED: &str = "NULL::text, NULL::text, NULL::bigint, NULL::text";
    format!(
        "SELECT 'd', d.*, {NO_APPLIED} FROM (\
           SELECT {KNOWN_DOC_COLUMNS} FROM documents WHERE unique_id = ANY($1) \
           UNION ALL SELECT {KNOWN_DOC_COLUMNS} FROM documents WHERE set_id = ANY($2)) d \
         UNION ALL SELECT 'a', {NO_DOC}, a.* FROM ({applied}) a \
         UNION ALL SELECT 'q', q.item_key, NULL, NULL, NULL, NULL, {NO_APPLIED} FROM ({open}) q",
        applied = applied_sql("= ANY($3)"),
        open = open_quarantine_sql("= ANY($4)"),
    )
});

/// The consumer offsets, one upsert for all partitions.
async fn commit_offsets(
    conn: &mut PgConnection,
    offsets: &[OffsetCommit],
) -> Result<(), StoreError> {
    let last = last_offsets(offsets);
    if last.is_empty() {
        return Ok(());
    }
    let (mut groups, mut topics, mut partitions, mut next) = (vec![], vec![], vec![], vec![]);
    for ((g, t, p), n) in last {
        groups.push(g);
        topics.push(t);
        partitions.push(i64::from(p));
        next.push(n);
    }
    let sql = format!(
        "INSERT INTO consumer_offsets (group_id, topic, \"partition\", next_offset) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[]) {OFFSETS_CONFLICT}"
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(&groups)
        .bind(&topics)
        .bind(&partitions)
        .bind(&next)
        .execute(&mut *conn)
        .await
        .map_err(|e| StoreError::from_sqlx("write_batch offsets", e))?;
    Ok(())
}
