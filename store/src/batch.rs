//! `Store::write_batch`: documents, quarantine entries, patient updates and consumer
//! offsets in one transaction (exactly-once into the DMP).
//!
//! A batch runs in three steps so that the database sees a handful of statements however
//! many items there are:
//! 1. look up, in a few `IN (...)` queries, everything the batch could collide with (known
//!    uniqueIds and setIds, message keys already applied, items already in quarantine):
//!    `batch/lookup.rs`;
//! 2. decide every item in memory, in order, so that a batch holding a document and its
//!    replacement behaves as if they came one by one: [`crate::plan`], pure, no SQL;
//! 3. write the result with multi-row INSERTs (entries: one JSON parameter per chunk) and
//!    grouped UPDATEs, then the offsets, then commit: `batch/write.rs`. Statement text
//!    only depends on the chunk size, so sqlx's per-connection statement cache reuses the
//!    prepared statements from batch to batch.
//!
//! On PostgreSQL, a batch without identity updates (what the store stage writes) takes
//! `batch/pg.rs` instead: the same lookups and plan, key lists bound as arrays, new rows
//! sent by binary COPY, through sqlx's native driver.

use std::collections::HashMap;

use dmpflow_schemas::{Cda, Document, PackedCda};
use sqlx::Row;

use crate::audit::insert_audits;
use crate::model::{BatchReport, ItemOutcome, OffsetCommit, StoreItem};
use crate::plan::{self, Keys};
use crate::util::now_rfc3339;
use crate::{Store, StoreError, patients};

mod lookup;
mod pg;
mod write;

use lookup::lookup;
use write::{
    commit_offsets, insert_documents, insert_entries, insert_quarantines, update_statuses,
};

/// Keys per `IN (...)` list, and rows per offsets upsert. Bounded by SQLite's 32766
/// variables and PostgreSQL's 65535 parameters, and kept fixed so the statement text
/// repeats.
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
        // Documents arrive packed by normalize, and a released quarantine case with the bytes
        // it was held with: those are stored as they are. An XML body (a case held by an
        // earlier build or from a producer outside the pipeline, released now; a caller of
        // the library) is compressed here: CPU work, so before the transaction opens (row
        // locks are not held meanwhile), off the async workers, on every core. Duplicates
        // found by the plan are compressed for nothing, which only happens on replays.
        let to_pack: Vec<(&Document, &str)> = items
            .iter()
            .filter_map(|i| match i {
                StoreItem::Document(d) => d.cda.as_xml().map(|xml| (d, xml)),
                _ => None,
            })
            .collect();
        let packed_here =
            pack_all(to_pack.iter().map(|(_, xml)| (*xml).to_owned()).collect()).await?;
        // Keyed by address (as usize: a raw pointer would make the future !Send): a plan
        // entry borrows its document from `items`.
        let address = |d: &Document| d as *const Document as usize;
        let mut packed: HashMap<usize, &PackedCda> = to_pack
            .iter()
            .zip(&packed_here)
            .map(|((d, _), p)| (address(d), p))
            .collect();
        for item in items {
            if let StoreItem::Document(d) = item
                && let Cda::Packed(p) = &d.cda
            {
                packed.insert(address(d), p);
            }
        }
        // PostgreSQL's own path (arrays, binary COPY) for what the store stage writes;
        // identity updates, which `patients` applies with the registry's locks and guards,
        // and SQLite take the shared one below.
        if let Some(pg) = &self.pg
            && !items.iter().any(|i| matches!(i, StoreItem::Patient(_)))
        {
            return pg::write_batch(pg, items, offsets, |d| packed[&address(d)]).await;
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
        update_statuses(&mut tx, &decisions.status_changes).await?;
        insert_quarantines(&mut tx, &decisions.quarantines, &now).await?;
        patients::apply_all_in_tx(&mut tx, &decisions.patients, &now).await?;
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
            part.iter().map(|c| PackedCda::pack(c)).collect::<Vec<_>>()
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
