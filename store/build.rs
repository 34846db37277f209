//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the migrations at
//! compile time, and cargo does not otherwise see a new file under `migrations/` (an
//! incremental build would then run with the old schema). The build script sqlx documents.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
