//! The shared store scenarios on a real PostgreSQL, plus a throughput measurement.
//!
//! The server comes from `DMPFLOW_DATABASE_URL`, else from `DMPFLOW_DATABASE_URL=` in the
//! repo's `.stack.env` (written by `scripts/stack up`). Without a reachable server these
//! tests FAIL on purpose: a skipped database test would let the PostgreSQL path rot.
//! Each test runs in its own freshly created database, so tests run in parallel.

mod scenarios;

use std::sync::atomic::{AtomicUsize, Ordering};

use dmpflow_store::{Backend, Store};
use sqlx::{AnyConnection, Connection, Executor};

fn database_url() -> String {
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
            "no PostgreSQL for the store tests: set DMPFLOW_DATABASE_URL or run `scripts/stack up` \
             (it writes DMPFLOW_DATABASE_URL to .stack.env)"
        ),
    }
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
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

/// A fresh, migrated database for one test, and its name.
async fn store(test: &str) -> (Store, String) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let db = format!(
        "dmpflow_store_{test}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    admin(&format!("CREATE DATABASE {db}")).await;
    let store = Store::connect(&with_database(&database_url(), &db))
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    (store, db)
}

/// Runs one statement on the server's default database.
async fn admin(sql: &str) {
    try_admin(sql).await.unwrap();
}

async fn try_admin(sql: &str) -> Result<(), sqlx::Error> {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&database_url())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at DMPFLOW_DATABASE_URL is not reachable ({e}); run `scripts/stack up`"
            )
        });
    let result = conn.execute(sqlx::AssertSqlSafe(sql.to_owned())).await;
    conn.close().await.unwrap();
    result.map(|_| ())
}

/// Drops a test database once its test passed (a failed one is kept for inspection).
///
/// Cleanup only, so it never fails the test: an autovacuum worker can be connected to the
/// fresh database, and PostgreSQL 15 refuses `WITH (FORCE)` to a non-superuser while one is
/// (error 42501); such a database is retried for a while and otherwise left behind.
async fn dispose(store: Store, db: String) {
    store.close().await;
    for attempt in 0..20 {
        match try_admin(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await {
            Ok(()) => return,
            Err(e) if attempt == 19 => eprintln!("test database {db} left behind: {e}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

macro_rules! pg_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (store, db) = store(stringify!($name)).await;
            scenarios::$name(&store).await;
            dispose(store, db).await;
        }
    )*};
}

pg_tests!(
    same_message_three_times,
    batch_replayed_twice,
    lifecycle_initial_replace_delete,
    unknown_target_goes_to_quarantine,
    offsets_commit_with_documents,
    merge_then_lookups,
    csv_import_with_bad_line,
    results_over_time,
    cda_round_trip,
    packed_documents,
    waiting_cases_of_known_patients,
    identity_collision_leaves_registry_untouched,
    unstated_traits_keep_their_value,
    csv_refuses_bad_key_and_impossible_date,
    one_control_id_initial_replace_delete,
    lifecycle_chain_in_one_batch_as_in_three,
    true_resend_is_one_duplicate,
    reused_control_id_is_processed_and_reported,
    quarantine_keeps_packed_bytes,
);

/// Migration 0008 on PostgreSQL: a quarantine case an earlier build held (its XML inline in
/// the JSON) still reads, and is filed, after it.
#[tokio::test]
async fn upgrade_to_0008_keeps_quarantine_rows_of_earlier_builds() {
    let db = format!("dmpflow_store_upgrade_0008_{}", std::process::id());
    admin(&format!("DROP DATABASE IF EXISTS {db}")).await;
    admin(&format!("CREATE DATABASE {db}")).await;
    let url = with_database(&database_url(), &db);
    let dir = std::env::temp_dir().join(format!("dmpflow-store-pg-0008-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    scenarios::database_of_an_earlier_build(&url, "postgres", &dir).await;
    let store = Store::connect(&url).await.expect("0008 applies");
    scenarios::quarantine_row_of_an_earlier_build_still_reads(&store).await;
    dispose(store, db).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn document_details() {
    let (store, db) = store("document_details").await;
    scenarios::consult::document_details(&store).await;
    dispose(store, db).await;
}

/// Appended traces read back; the trigger of 0009 refuses UPDATE and DELETE.
#[tokio::test]
async fn access_trace_append_only() {
    let (store, db) = store("access_trace").await;
    scenarios::consult::access_trace_append_only(&store).await;
    let mut conn = AnyConnection::connect(&with_database(&database_url(), &db))
        .await
        .unwrap();
    assert!(
        conn.execute("UPDATE access_trace SET outcome = 'deny'")
            .await
            .is_err()
    );
    assert!(conn.execute("DELETE FROM access_trace").await.is_err());
    conn.close().await.unwrap();
    assert_eq!(store.trace_count().await.unwrap(), 3);
    dispose(store, db).await;
}

/// The server drops every connection (as on a restart): the next batch still commits on
/// fresh connections, and a replay of the earlier batch stays a duplicate.
#[tokio::test]
async fn survives_dropped_connections() {
    let (store, db) = store("dropped").await;
    scenarios::same_message_three_times(&store).await;
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
    ))
    .await;
    let d = scenarios::doc(
        "1.2.11.1",
        "1.2.11.set",
        dmpflow_schemas::Lifecycle::Initial,
        None,
        scenarios::INS_A,
        "DROP1",
        1,
    );
    let out = store
        .write_batch(&[dmpflow_store::StoreItem::Document(d)], &[])
        .await
        .unwrap();
    assert_eq!(out, [dmpflow_store::ItemOutcome::Stored]);
    assert_eq!(store.document_count().await.unwrap(), 3);
    dispose(store, db).await;
}

#[test]
fn replaces_the_database_name() {
    assert_eq!(
        with_database("postgres://u@h:5/postgres", "x"),
        "postgres://u@h:5/x"
    );
    assert_eq!(
        with_database("postgres://u@h:5/db?sslmode=disable", "x"),
        "postgres://u@h:5/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h:5", "x"), "postgres://u@h:5/x");
}

/// Prints docs/s for the PostgreSQL path (run with `--nocapture`); no time is asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput_postgres() {
    let (store, db) = store("throughput").await;
    scenarios::throughput(&store, "postgres", 10_000, 500).await;
    dispose(store, db).await;
}
