//! Test support for crates that test against a real PostgreSQL (cargo feature `testing`,
//! never in the shipped binary): where the server is, a fresh migrated database per test,
//! and its disposal. One place for this, so every suite finds the server the same way.
//!
//! The server comes from `DMPFLOW_DATABASE_URL`, else from `DMPFLOW_DATABASE_URL=` in the
//! repo's `.stack.env` (written by `scripts/stack up`). Without a reachable server the
//! tests FAIL on purpose: a skipped database test would let the PostgreSQL path rot.

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::{AnyConnection, Connection, Executor};

use crate::{Backend, Store};

/// The PostgreSQL server URL of the test stack. Panics (fails the test) when none is set.
pub fn database_url() -> String {
    if let Ok(url) = std::env::var("DMPFLOW_DATABASE_URL")
        && !url.trim().is_empty()
    {
        return url.trim().to_owned();
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.stack.env");
    let from_file = std::fs::read_to_string(path).ok().and_then(|text| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("DMPFLOW_DATABASE_URL=")
                .map(|v| v.trim().trim_matches('"').to_owned())
        })
    });
    match from_file {
        Some(url) if !url.is_empty() => url,
        _ => panic!(
            "no PostgreSQL for the tests: set DMPFLOW_DATABASE_URL or run `scripts/stack up` \
             (it writes DMPFLOW_DATABASE_URL to .stack.env)"
        ),
    }
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    format!("{base}/{db}{query}")
}

/// Runs one statement on the server's default database.
pub async fn admin(sql: &str) -> Result<(), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&database_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at DMPFLOW_DATABASE_URL is not reachable ({e}); run `scripts/stack up`"
            )
        });
    let result = conn.execute(sqlx::AssertSqlSafe(sql.to_owned())).await;
    conn.close().await?;
    result.map(|_| ())
}

/// A fresh, migrated database for one test (`prefix` names the suite, `test` the test),
/// and its name for [`dispose`].
pub async fn fresh_postgres(prefix: &str, test: &str) -> (Store, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let db = format!(
        "{prefix}_{test}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
    .to_ascii_lowercase();
    admin(&format!("CREATE DATABASE {db}")).await.unwrap();
    let store = Store::connect(&with_database(&database_url(), &db))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    (store, db)
}

/// Drops a test database once its test passed (a failed one is kept for inspection).
///
/// Cleanup only, so it never fails the test: an autovacuum worker can be connected to the
/// fresh database, and PostgreSQL 15 refuses `WITH (FORCE)` to a non-superuser while one is
/// (error 42501); such a database is retried for a while and otherwise left behind.
pub async fn dispose(store: Store, db: String) {
    store.close().await;
    for attempt in 0..20 {
        match admin(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await {
            Ok(()) => return,
            Err(e) if attempt == 19 => eprintln!("test database {db} left behind: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// Runs one statement on `store`'s own database (tests prove what the schema refuses, e.g.
/// an UPDATE of an append-only table).
pub async fn execute(store: &Store, sql: &str) -> Result<u64, sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&store.pool)
        .await
        .map(|r| r.rows_affected())
}
