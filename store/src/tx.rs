//! The write transaction every multi-statement write of the store runs in (`Tx`), and how
//! it is opened on each backend (`Store::begin`). Its own module so that the batch, the
//! registry and the quarantine writes share it without importing one another.

use sqlx::{Any, Transaction};

use crate::{Backend, Store, StoreError};

pub(crate) type Tx = Transaction<'static, Any>;

/// How every PostgreSQL write transaction opens, in one round trip (a simple query may hold
/// several statements). Every statement of a write transaction finds its rows by key, and
/// every key has an index. But while a table grows faster than autovacuum analyses it (a
/// new deployment, a replay into a fresh database), PostgreSQL's default estimate for an IN
/// list of a few hundred keys is "most of the table" and it scans the whole table for each
/// batch: quadratic. Measured on a 20k-message run from an empty database: 155 sequential
/// scans reading 1.5 M rows of `documents` (bench/ANALYSIS.md). Index scans are never worse
/// here.
pub(crate) const PG_BEGIN: &str = "BEGIN; SET LOCAL enable_seqscan = off";

impl Store {
    pub(crate) async fn begin(&self, op: &'static str) -> Result<Tx, StoreError> {
        match self.backend {
            // Take the write lock up front: a deferred SQLite transaction that reads and then
            // writes fails with SQLITE_BUSY_SNAPSHOT instead of waiting for the lock.
            Backend::Sqlite => self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(|e| StoreError::from_sqlx(op, e)),
            Backend::Postgres => self
                .pool
                .begin_with(PG_BEGIN)
                .await
                .map_err(|e| StoreError::from_sqlx(op, e)),
        }
    }
}
