//! dmpflow-pipeline: the moving half of dmpflow, the parts that do IO. The pure cores
//! (normalize, route, the store's lifecycle plan) decide; this crate reads Kafka, calls
//! them, makes their decisions durable (Kafka with acks=all, the database) and commits.
//!
//! - [`config`]: the settings of every command, merged once;
//! - [`kafka`]: every Kafka client, configured by one recipe, and the record size limits;
//! - [`runtime`]: the Kafka plumbing every stage shares (batches, produce, commit, pause);
//! - [`stages`]: normalize, route and store behind one driver;
//! - [`chain`]: the per-message logic of the chain as plain functions, shared by the Kafka
//!   stages, replay and the embedded mode;
//! - [`metrics`]: every metric, declared once, and the health endpoint.

pub mod chain;
pub mod config;
pub mod embedded;
pub mod kafka;
pub mod metrics;
pub mod outcome;
pub mod replay;
pub mod runtime;
pub mod stages;
pub mod timefmt;

use tokio_util::sync::CancellationToken;

/// Cancelled on the first SIGINT or SIGTERM.
pub fn shutdown_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested: finishing in-flight work");
        t.cancel();
    });
    token
}
