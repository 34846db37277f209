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
    waiting_cases_of_known_patients,
    identity_collision_leaves_registry_untouched,
    unstated_traits_keep_their_value,
    csv_refuses_bad_key_and_impossible_date,
    one_control_id_initial_replace_delete,
    lifecycle_chain_in_one_batch_as_in_three,
    true_resend_is_one_duplicate,
    reused_control_id_is_processed_and_reported,
);

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
