//! The shared store scenarios on a real PostgreSQL, plus a throughput measurement.
//!
//! The server is found by `dmpflow_store::testing` (`DMPFLOW_DATABASE_URL` or `.stack.env`);
//! without a reachable server these tests FAIL on purpose. Each test runs in its own freshly
//! created database, so tests run in parallel.

mod scenarios;

use dmpflow_store::Store;
use sqlx::{AnyConnection, Connection, Executor};

use dmpflow_store::testing::{database_url, dispose, with_database};

/// A fresh, migrated database for one test, and its name.
async fn store(test: &str) -> (Store, String) {
    dmpflow_store::testing::fresh_postgres("dmpflow_store", test).await
}

/// Runs one statement on the server's default database.
async fn admin(sql: &str) {
    dmpflow_store::testing::admin(sql).await.unwrap();
}

/// Migration 0013 dropped the foreign key from `entries` to `documents` (its per-row check
/// was a quarter of PostgreSQL's CPU in the store stage): the store keeps the rule itself,
/// writing a document's entries only with the document. Checked after every scenario.
async fn assert_no_orphan_entries(db: &str) {
    let mut conn = AnyConnection::connect(&with_database(&database_url(), db))
        .await
        .unwrap();
    let orphans: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM entries e WHERE NOT EXISTS \
         (SELECT 1 FROM documents d WHERE d.unique_id = e.document_unique_id)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(orphans, 0, "entries without their document");
}

macro_rules! pg_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (store, db) = store(stringify!($name)).await;
            scenarios::$name(&store).await;
            assert_no_orphan_entries(&db).await;
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
    batch_larger_than_a_copy_chunk,
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

#[tokio::test]
async fn access_trace_every_call() {
    let (store, db) = store("trace_every_call").await;
    scenarios::consult::access_trace_every_call(&store).await;
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
    // Client backends only: an autovacuum worker may be busy on the fresh database, and it
    // runs as the bootstrap superuser, whom the test's role may not terminate (a CI run failed
    // on exactly that race).
    admin(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{db}' AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
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
