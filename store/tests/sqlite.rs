//! The shared store scenarios on SQLite (in memory, one database per test).

mod scenarios;

use dmpflow_store::Store;

async fn store() -> Store {
    Store::connect("sqlite::memory:")
        .await
        .expect("in-memory SQLite")
}

macro_rules! sqlite_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            scenarios::$name(&store().await).await;
        }
    )*};
}

sqlite_tests!(
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

/// Migration 0008 gives quarantine cases a column for their packed CDA: a case an earlier
/// build held (its XML inline in the JSON) still reads, and is filed, after it.
#[tokio::test]
async fn upgrade_to_0008_keeps_quarantine_rows_of_earlier_builds() {
    let dir = std::env::temp_dir().join(format!("dmpflow-store-0008-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("old.db").display());
    scenarios::database_of_an_earlier_build(&format!("{url}?mode=rwc"), "sqlite", &dir).await;
    let store = Store::connect(&url).await.expect("0008 applies");
    scenarios::quarantine_row_of_an_earlier_build_still_reads(&store).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn document_details() {
    scenarios::consult::document_details(&store().await).await;
}

#[tokio::test]
async fn access_trace_append_only() {
    scenarios::consult::access_trace_append_only(&store().await).await;
}

#[tokio::test]
async fn access_trace_every_call() {
    scenarios::consult::access_trace_every_call(&store().await).await;
}

/// The database itself refuses to change or remove a trace row (triggers of 0009), so a
/// trace cannot be rewritten even by SQL that bypasses the store.
#[tokio::test]
async fn access_trace_rows_cannot_be_changed() {
    use sqlx::{AnyConnection, Connection, Executor};
    let dir = std::env::temp_dir().join(format!("dmpflow-store-trace-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("trace.db").display());
    let store = Store::connect(&url).await.unwrap();
    scenarios::consult::access_trace_append_only(&store).await;
    let mut conn = AnyConnection::connect(&url).await.unwrap();
    assert!(
        conn.execute("UPDATE access_trace SET outcome = 'deny'")
            .await
            .is_err()
    );
    assert!(conn.execute("DELETE FROM access_trace").await.is_err());
    conn.close().await.unwrap();
    assert_eq!(store.trace_count().await.unwrap(), 3);
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn throughput_sqlite_file() {
    let dir = std::env::temp_dir().join(format!("dmpflow-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let store = Store::connect(&url).await.unwrap();
    scenarios::throughput(&store, "sqlite file", 2_000, 500).await;
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Migration 0006 rebuilds `documents` and `entries` on SQLite (a table constraint cannot
/// be dropped there): a database of an earlier build keeps its rows, their entries and
/// the foreign key between them, and a row without a content hash still deduplicates its
/// message key (issue #12 item 5: the rule of the build that wrote it).
#[tokio::test]
async fn upgrade_to_0006_keeps_the_rows_of_earlier_builds() {
    use dmpflow_schemas::Lifecycle;
    use dmpflow_store::{ItemOutcome, StoreItem};

    let dir = std::env::temp_dir().join(format!("dmpflow-store-0006-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let before = dir.join("migrations");
    std::fs::create_dir_all(&before).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for f in std::fs::read_dir(&all).unwrap() {
        let f = f.unwrap().path();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0006" {
            std::fs::copy(&f, before.join(&name)).unwrap();
        }
    }
    let url = format!("sqlite://{}", dir.join("old.db").display());

    // The database as a build before 0006 left it: one document with one entry.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO documents (unique_id, set_id, version, seq, lifecycle, status, type_code, \
         class_code, format_code, title, patient_ins, patient_ins_oid, creation_time, \
         confidentiality, visibility, origin, cda_packed, cda_sha256, cda_size, source_sender, \
         source_control_id, source_position, stored_at) VALUES ('1.2.60.1', '1.2.60.set', 1, 1, \
         'initial', 'current', '11502-2', '10', 'urn:ihe:lab:xd-lab:2008', 'CR', $1, \
         '1.2.250.1.213.1.4.8', '20260301101500+0100', 'N', '[]', 'generated', x'00', 'h', 1, \
         'LABO^FINESS123', 'OLD1', 0, '2026-03-01T10:00:00Z')",
    )
    .bind(scenarios::INS_A)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO entries (document_unique_id, position, kind, code, label, value, time) \
         VALUES ('1.2.60.1', 0, 'lab_observation', '2345-7', 'Glucose', '5.1', \
         '20260301080000+0100')",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let store = Store::connect(&url).await.expect("0006 applies");
    let rows = store.documents_for_patient(scenarios::INS_A).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].unique_id, "1.2.60.1");
    let results = store
        .results_for_loinc(scenarios::INS_A, "2345-7")
        .await
        .unwrap();
    assert_eq!(results.len(), 1, "the entry survived the rebuild");

    // Same key, now with a hash: the old row has none, so the key alone decides.
    let mut again = scenarios::doc(
        "1.2.60.2",
        "1.2.60.set2",
        Lifecycle::Initial,
        None,
        scenarios::INS_A,
        "OLD1",
        1,
    );
    again.meta.source.content_hash = "h-after-upgrade".into();
    let out = store
        .write_batch(&[StoreItem::Document(again)], &[])
        .await
        .unwrap();
    assert_eq!(out, [ItemOutcome::Duplicate]);
    // A new document with its entries is written on the rebuilt tables, and an entry
    // without its document is still refused (the foreign key follows the new table).
    let fresh = scenarios::doc(
        "1.2.60.3",
        "1.2.60.set3",
        Lifecycle::Initial,
        None,
        scenarios::INS_A,
        "NEW1",
        2,
    );
    let out = store
        .write_batch(&[StoreItem::Document(fresh)], &[])
        .await
        .unwrap();
    assert_eq!(out, [ItemOutcome::Stored]);
    store.close().await;
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let orphan = sqlx::query(
        "INSERT INTO entries (document_unique_id, position, kind, code, label) \
         VALUES ('no.such.document', 0, 'lab_observation', '2345-7', 'Glucose')",
    )
    .execute(&pool)
    .await;
    assert!(orphan.is_err(), "foreign key enforced after the rebuild");
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
