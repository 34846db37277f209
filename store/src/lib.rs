//! dmpflow-store: the patient DMP on PostgreSQL or SQLite, through one code path.
//!
//! Everything goes through sqlx's `AnyPool` with runtime queries (no `query!`, so builds
//! need no database), but one hot path: on PostgreSQL the store stage's batches are
//! written through the native driver (`batch/pg.rs`: arrays and binary COPY, which `Any`
//! cannot send), from the same plan and the same row layouts (`rows.rs`). The SQL is
//! written once in the dialect both backends share (`$n` placeholders, `ON CONFLICT`,
//! partial indexes). Two things differ per backend: the
//! migrations, in column types only (`migrations/postgres`, `migrations/sqlite`), and the
//! one statement that unpacks a batch's structured entries from JSON
//! (`json_to_recordset` vs `json_each`), which `batch/write.rs` picks by backend.
//!
//! Where things are: `batch` runs [`Store::write_batch`] (`batch/lookup.rs` reads what a
//! batch may collide with, `plan` decides every item with no database, `batch/write.rs`
//! writes the result); `patients` is the registry's SQL, with its pure rules in
//! `patient_state` (identity messages) and `patient_csv` (the CSV import); `queries` and
//! `history` are the reads, `consult` the read side's own (document metadata, the
//! append-only access trace); `tx` (the write transaction) and `audit` (the audit rows) are
//! shared by every writer.
//!
//! The core guarantee lives in [`Store::write_batch`]: all items of a batch and the
//! consumer offsets that cover them commit in one transaction, and every item is
//! idempotent, so the runtime can resume from [`Store::committed_offsets`] after any crash
//! without losing or doubling anything.

mod audit;
mod batch;
mod consult;
mod error;
mod history;
mod model;
mod patient_csv;
mod patient_state;
mod patients;
mod plan;
mod queries;
mod rows;
#[cfg(feature = "testing")]
pub mod testing;
mod tx;
mod util;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, ConnectOptions};

pub use consult::MaskingChange;
/// The CDA codec, from where it lives now (`dmpflow_schemas::cda_body`), under the names
/// callers of the store have used.
pub use dmpflow_schemas::cda_body::{pack as pack_cda, unpack as unpack_cda};
pub use error::{CsvLineError, StoreError};
pub use history::PatientHistoryRow;
pub use model::{
    AuditEntry, BatchReport, DocStatus, DocumentDetail, DocumentRow, ImportSummary, ItemOutcome,
    OffsetCommit, QuarantineRow, QuarantineStatus, ResultRow, StoreItem, TraceRow,
};
pub use patient_csv::CSV_HEADER;

/// Validates one data line of the patients CSV as `Store::import_patients_csv` does, with
/// no database. Entry point for fuzz/ (the `patients_csv` target); not a stable API.
#[doc(hidden)]
pub fn parse_csv_record(line: &str) -> Result<dmpflow_schemas::PatientRecord, String> {
    patient_csv::parse_line(line)
}

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Which database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// PostgreSQL connections a process opens by default.
pub const DEFAULT_PG_CONNECTIONS: u32 = 8;

/// Handle on the DMP store. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// On PostgreSQL, the same database through sqlx's native driver, for the batch write
    /// (`batch/pg.rs`: arrays and binary COPY, which the `Any` driver cannot send). Lazy:
    /// it connects on the first batch, so commands that never write one never open it.
    pg: Option<sqlx::PgPool>,
}

/// Whether every migration of `migrator` is applied, with the checksum it has now. Any
/// doubt (no migrations table yet, no right to read it) answers no: the migrator then runs
/// and reports what is wrong.
async fn schema_is_current(pool: &AnyPool, migrator: &sqlx::migrate::Migrator) -> bool {
    let applied: Vec<(i64, Vec<u8>)> =
        match sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(rows) => rows,
            Err(_) => return false,
        };
    migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| {
            applied
                .iter()
                .any(|(v, sum)| *v == m.version && sum.as_slice() == m.checksum.as_ref())
        })
}

/// A refusal at connect or migrate time, said in words for the operator when its SQLSTATE
/// is a setting to fix (role, password, pg_hba.conf, privileges); anything else as
/// [`StoreError::from_sqlx`] maps it. The server's own message is not relayed: the store
/// never does (it may quote values), and the code and these words name the cause.
fn refused(op: &'static str, e: sqlx::Error) -> StoreError {
    let code = match &e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        // A certificate the client cannot verify (unknown CA, wrong host name, expired) is
        // a setting to fix, not an outage: the stage must stop and say so instead of
        // retrying for ever. Other TLS failures (a handshake cut short) stay transient.
        // sqlx reports rustls' verdict as an I/O error ("invalid peer certificate: ..."),
        // or as a TLS error when the root file itself is unusable.
        sqlx::Error::Tls(_) | sqlx::Error::Io(_)
            if e.to_string().to_lowercase().contains("certificate") =>
        {
            return StoreError::Refused {
                op,
                code: String::new(),
                what: "the database server's TLS certificate is not trusted or does not match the host (sslrootcert, sslmode=verify-full)",
            };
        }
        _ => None,
    };
    let what = match code.as_deref() {
        Some("28P01") => {
            "password authentication failed: wrong password for the user of the database URL"
        }
        Some("28000") => {
            "the server refuses this user, database or connection type (pg_hba.conf; does it require TLS, sslmode?)"
        }
        Some("3D000") => "the database named in the URL does not exist",
        Some("42501") if op == "migrate" => {
            "the schema is not up to date and this role may not migrate it (no DDL rights): run the migrations with the owner role first"
        }
        Some("42501") => "permission denied to the role of the database URL",
        _ => return StoreError::from_sqlx(op, e),
    };
    StoreError::Refused {
        op,
        code: code.unwrap_or_default(),
        what,
    }
}

impl Store {
    /// Connects to `postgres://…`, `sqlite://path` (the file is created if missing) or
    /// `sqlite::memory:`, and runs the migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with_pool(url, DEFAULT_PG_CONNECTIONS).await
    }

    /// [`Store::connect`] with at most `pg_connections` PostgreSQL connections (SQLite
    /// keeps its own). The stages' few writers need few; the FHIR server's many short
    /// reads, each with its trace commit, gain from more (PostgreSQL groups the commits
    /// that wait together into one WAL flush).
    pub async fn connect_with_pool(url: &str, pg_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else if url.starts_with("sqlite:") {
            (Backend::Sqlite, sqlite_url(url))
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let memory = backend == Backend::Sqlite && url.contains(":memory:");
        // Statement logging would print bound SQL at INFO; the store's statements carry
        // patient data, so keep sqlx quiet and let callers log ids themselves.
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|_| StoreError::UnsupportedUrl)?
            .disable_statement_logging();
        let mut pool = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        pool = match backend {
            Backend::Postgres => pool.max_connections(pg_connections.max(1)),
            // An in-memory database lives and dies with its single connection: never
            // open a second one, never let the pool recycle it.
            Backend::Sqlite if memory => pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None),
            // SQLite has one writer at a time anyway; a few connections let reads proceed.
            Backend::Sqlite => pool.max_connections(4),
        };
        let pool = pool
            .connect_with(options)
            .await
            .map_err(|e| refused("connect", e))?;
        let migrator = match backend {
            Backend::Postgres => &PG_MIGRATOR,
            Backend::Sqlite => &SQLITE_MIGRATOR,
        };
        // Only the owner may migrate: the least-privilege roles (0012_roles.sql: no DDL)
        // start on a schema it brought up to date, so the migrator, which would try to
        // create its table, runs only when a migration is missing or changed.
        if !schema_is_current(&pool, migrator).await {
            migrator.run(&pool).await.map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => refused("migrate", e),
                other => StoreError::Migrate(other.to_string()),
            })?;
        }
        let pg = match backend {
            Backend::Postgres => Some(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(pg_connections.max(1))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_lazy_with(
                        sqlx::postgres::PgConnectOptions::from_str(&url)
                            .map_err(|_| StoreError::UnsupportedUrl)?
                            .disable_statement_logging(),
                    ),
            ),
            Backend::Sqlite => None,
        };
        Ok(Store { pool, backend, pg })
    }

    /// The database behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// One round trip to the database (`SELECT 1`), for the readiness check.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sqlx("ping", e))
    }

    /// Closes the pool (waits for connections in use to come back).
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(pg) = &self.pg {
            pg.close().await;
        }
    }
}

/// Adds `mode=rwc` so that SQLite creates the file when it does not exist yet.
fn sqlite_url(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_files() {
        assert_eq!(sqlite_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite://a.db?x=1"),
            "sqlite://a.db?x=1&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite::memory:"), "sqlite::memory:");
        assert_eq!(sqlite_url("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
    }

    #[tokio::test]
    async fn connects_to_memory_and_file_and_refuses_other_urls() {
        let s = Store::connect("sqlite::memory:").await.unwrap();
        assert_eq!(s.backend(), Backend::Sqlite);
        assert_eq!(s.document_count().await.unwrap(), 0);

        let dir = std::env::temp_dir().join(format!("dmpflow-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fresh.db");
        let _ = std::fs::remove_file(&path);
        let url = format!("sqlite://{}", path.display());
        let s = Store::connect(&url).await.unwrap();
        s.close().await;
        assert!(path.exists());
        // Re-opening runs the (already applied) migrations again without harm.
        let s = Store::connect(&url).await.unwrap();
        assert_eq!(s.document_count().await.unwrap(), 0);
        s.close().await;
        let _ = std::fs::remove_dir_all(&dir);

        assert!(matches!(
            Store::connect("mysql://x").await,
            Err(StoreError::UnsupportedUrl)
        ));
    }
}
