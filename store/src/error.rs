//! `StoreError`: what can go wrong in the store, split into transient failures (the runtime
//! retries the same batch) and permanent ones (the batch itself is at fault).
//!
//! Database messages can quote the values that failed (a PostgreSQL type error echoes its
//! input, a constraint detail names the key), and those values may be patient data. So a
//! database error keeps only its SQLSTATE/SQLite code, its constraint name and the store
//! operation, never the server's message text.

use std::borrow::Cow;

/// An error of the store. `Display` never contains patient data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the connection broke (I/O, pool timeout, TLS,
    /// protocol). Transient.
    #[error("{op}: database unavailable: {source}")]
    Unavailable {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// The database refused a statement. `code` is the SQLSTATE (PostgreSQL) or the
    /// extended result code (SQLite).
    #[error("{op}: database error {code}{}", constraint.as_deref().map(|c| format!(" on {c}")).unwrap_or_default())]
    Database {
        op: &'static str,
        code: String,
        constraint: Option<String>,
        transient: bool,
    },
    /// A value read back does not have the expected shape (column type, JSON), or any other
    /// driver-side failure that retrying cannot fix.
    #[error("{op}: {detail}")]
    Data { op: &'static str, detail: String },
    /// The database refused this user or this role a connection or a right (wrong password,
    /// pg_hba.conf, missing privilege): a setting to fix, never transient. `what` says which
    /// for an operator; it carries neither the URL nor a password.
    #[error("{op}: {what}{}", if code.is_empty() { String::new() } else { format!(" (SQLSTATE {code})") })]
    Refused {
        op: &'static str,
        code: String,
        what: &'static str,
    },
    /// The connection URL is not one the store understands.
    #[error("unsupported database URL (expected postgres://, sqlite://path or sqlite::memory:)")]
    UnsupportedUrl,
    /// Running the migrations failed.
    #[error("migrations failed: {0}")]
    Migrate(String),
    /// A stored CDA does not decompress or does not match its recorded sha256.
    #[error("document {unique_id}: stored CDA is corrupt: {why}")]
    CorruptCda {
        unique_id: String,
        why: &'static str,
    },
    /// The patient CSV has invalid lines; nothing was imported. Line numbers are 1-based and
    /// count the header; messages name columns, never values.
    #[error("patient CSV rejected: {}", summarize(.0))]
    Csv(Vec<CsvLineError>),
    /// An A40 merge or A47 identifier change would take over a registry entry that holds
    /// another person's identity (`dmpflow_route::update`); nothing of the batch was
    /// written. The detail says which entry and which traits differ, never a value or an
    /// INS. Permanent: the caller quarantines the update (`identity.collision`).
    #[error("identity collision: {0}")]
    IdentityCollision(String),
    /// Reading the CSV input failed.
    #[error("reading patient CSV: {0}")]
    Io(#[from] std::io::Error),
}

/// One invalid line of a patient CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvLineError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for CsvLineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

fn summarize(errors: &[CsvLineError]) -> String {
    // Enough to fix the file in one go without flooding a terminal.
    const SHOWN: usize = 20;
    let mut s = errors
        .iter()
        .take(SHOWN)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    if errors.len() > SHOWN {
        s.push_str(&format!("; and {} more", errors.len() - SHOWN));
    }
    s
}

impl StoreError {
    /// True when retrying the same operation later may succeed: connection lost, database
    /// starting or shutting down, serialization failure, deadlock, lock timeout, SQLite busy,
    /// and unique violations during `write_batch` (see `classify`).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Database { transient, .. } => *transient,
            _ => false,
        }
    }

    /// Maps a sqlx error raised while doing `op`.
    pub(crate) fn from_sqlx(op: &'static str, e: sqlx::Error) -> StoreError {
        match e {
            sqlx::Error::Database(db) => {
                let code = db.code().map(Cow::into_owned).unwrap_or_default();
                let transient =
                    classify(&code) || matches!(db.kind(), sqlx::error::ErrorKind::UniqueViolation);
                StoreError::Database {
                    op,
                    constraint: db.constraint().map(str::to_owned),
                    code,
                    transient,
                }
            }
            e @ (sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed) => StoreError::Unavailable { op, source: e },
            // Decode errors name the column and the expected type, not the value.
            other => StoreError::Data {
                op,
                detail: other.to_string(),
            },
        }
    }
}

/// Whether a database error code is worth a retry.
///
/// PostgreSQL SQLSTATEs are five characters; SQLite extended result codes are decimal
/// numbers of at most four digits, whose low byte is the primary code.
///
/// Unique violations are treated as transient by the caller (`from_sqlx`): every insert
/// of `write_batch` is preceded by an idempotency lookup in the same transaction, so a
/// unique violation can only come from a concurrent writer of the same message (a
/// consumer that lost its partitions and has not noticed yet). Retrying the batch then
/// finds the row and reports a duplicate instead.
fn classify(code: &str) -> bool {
    if code.len() == 5 {
        return code.starts_with("08") // connection exception
            || code == "40001" // serialization_failure
            || code == "40P01" // deadlock_detected
            || code == "55P03" // lock_not_available
            || code.starts_with("53") // insufficient resources (too many connections, disk full)
            || code == "57P01" // admin_shutdown
            || code == "57P02" // crash_shutdown
            || code == "57P03" // cannot_connect_now (starting up)
            || code == "57014"; // query_canceled (statement timeout)
    }
    match code.parse::<u32>() {
        // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended variants.
        Ok(n) => matches!(n & 0xff, 5 | 6),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_postgres_and_sqlite_codes() {
        assert!(classify("40001"));
        assert!(classify("08006"));
        assert!(classify("57P01"));
        assert!(!classify("23514")); // check_violation
        assert!(!classify("22021")); // bad encoding
        assert!(classify("5")); // SQLITE_BUSY
        assert!(classify("517")); // SQLITE_BUSY_SNAPSHOT
        assert!(classify("262")); // SQLITE_LOCKED_SHAREDCACHE
        assert!(!classify("275")); // SQLITE_CONSTRAINT_CHECK
        assert!(!classify(""));
    }

    #[test]
    fn csv_error_lists_lines_without_values() {
        let e = StoreError::Csv(vec![CsvLineError {
            line: 3,
            message: "column sex: expected M, F or U".into(),
        }]);
        assert_eq!(
            e.to_string(),
            "patient CSV rejected: line 3: column sex: expected M, F or U"
        );
        assert!(!e.is_transient());
    }
}
