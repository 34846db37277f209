//! Database calls of the stages: retried on transient errors (with the live consumer
//! paused and polled meanwhile, so the member stays in its group), and the one pool a
//! process shares between its route and store consumers.

use std::time::Duration;

use anyhow::Result;
use dmpflow_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::Settings;
use crate::metrics::{StageLabel, metrics};
use crate::runtime::{self, StageConsumer};

/// Retries a database operation on transient errors until it works or shutdown.
pub async fn with_db_retry<T, F, Fut>(
    stage: &'static str,
    shutdown: &CancellationToken,
    op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, dmpflow_store::StoreError>>,
{
    with_db_retry_paused(stage, shutdown, None, op).await
}

/// Retries a database operation on transient errors until it works or shutdown. With a
/// consumer, its partitions are paused for as long as the database is unavailable and the
/// consumer keeps being polled (see `runtime::Pause`), then resumed.
pub async fn with_db_retry_paused<T, F, Fut>(
    stage: &'static str,
    shutdown: &CancellationToken,
    consumer: Option<&StageConsumer>,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, dmpflow_store::StoreError>>,
{
    let mut backoff = Duration::from_millis(100);
    let mut pause: Option<runtime::Pause<'_>> = None;
    loop {
        // A slow database (a lock, a long checkpoint) is not an error: the call just takes
        // long. Past `SLOW_HOP` the partitions are paused and the consumer polled while we
        // keep waiting, so the member stays in its group.
        let fut = op();
        tokio::pin!(fut);
        let result = loop {
            match (pause.as_mut(), consumer) {
                (Some(p), _) => tokio::select! {
                    r = &mut fut => break r,
                    _ = p.wait(Duration::from_millis(500)) => {}
                },
                (None, Some(c)) => tokio::select! {
                    r = &mut fut => break r,
                    _ = tokio::time::sleep(SLOW_HOP) => pause = Some(runtime::Pause::start(c, stage)),
                },
                (None, None) => break fut.await,
            }
        };
        match result {
            Ok(v) => {
                if let Some(p) = pause.take() {
                    p.end();
                }
                return Ok(v);
            }
            Err(e) if e.is_transient() => {
                warn!(stage, error = %e, "database unavailable; retrying");
                metrics().retries.get_or_create(&StageLabel { stage }).inc();
                if pause.is_none()
                    && let Some(c) = consumer
                {
                    pause = Some(runtime::Pause::start(c, stage));
                }
                match pause.as_mut() {
                    Some(p) => tokio::select! {
                        _ = p.wait(backoff) => {}
                        _ = shutdown.cancelled() => anyhow::bail!("shutdown while the database was unavailable"),
                    },
                    None => tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => anyhow::bail!("shutdown while the database was unavailable"),
                    },
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                if let Some(p) = pause.take() {
                    p.end();
                }
                return Err(e.into());
            }
        }
    }
}

/// How long a database call may take before the stage pauses its partitions.
const SLOW_HOP: Duration = Duration::from_secs(2);

pub use crate::runtime::SharedStore;

pub async fn connect_store(
    settings: &Settings,
    stage: &'static str,
    shutdown: &CancellationToken,
    shared: &SharedStore,
) -> Result<Store> {
    shared
        .get_or_try_init(|| {
            with_db_retry(stage, shutdown, || Store::connect(&settings.database_url))
        })
        .await
        .cloned()
}
