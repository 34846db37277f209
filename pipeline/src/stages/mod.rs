//! The three stages behind one abstraction, [`Stage`], run by one driver
//! ([`driver::drive`]) whatever the source: the live consumer group (`dmpflow run`), a
//! replay window (`dmpflow replay`) or batches in memory (`dmpflow process`/`demo`).
//!
//! - normalize: `dmp.feed.*` → `dmp.documents` (key = INS) or `dmp.dlq`; with
//!   `limits.route_in_normalize` it routes what it yields itself ([`fused`]);
//! - route: `dmp.documents` → `dmp.routed` / `dmp.quarantine`, identity updates applied to
//!   the registry; its periodic task files the quarantined documents that were waiting;
//! - store: `dmp.routed` + `dmp.quarantine` → the database, documents and consumer offsets
//!   in one transaction. On start and after a rebalance it reads its offsets from the
//!   database and skips what is already stored there: exactly-once into the DMP.

pub mod driver;
pub mod fused;
pub mod normalize;
pub mod retry;
pub mod route;
pub mod store;
pub mod sweeper;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use dmpflow_route::RouteConfig;
use dmpflow_schemas::headers as h;
use dmpflow_schemas::reasons::Reason;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::chain::Coordinates;
use crate::config::Settings;
use crate::kafka;
use crate::metrics::Health;
use crate::outcome::{At, Report, Reporting};
use crate::runtime::{self, HealthChecks, Output};
pub use driver::{BatchCtx, Sink, Source, Window, drive};
pub use fused::NormalizeRouteStage;
pub use normalize::NormalizeStage;
pub use retry::SharedStore;
pub use route::RouteStage;
pub use store::StoreStage;

/// What one stage does with a batch. The driver calls `handle`, makes the returned
/// outputs durable, then `make_durable` (the store's transaction), then commits the input
/// and reports. Both may do the stage's own IO (route reads and updates the registry, the
/// store writes); neither produces to Kafka nor commits.
pub trait Stage {
    /// The name logs and metrics use.
    fn name(&self) -> &'static str;

    /// Decides a batch: the records to produce and one outcome per message.
    fn handle(
        &mut self,
        batch: &[OwnedMessage],
        ctx: &BatchCtx<'_>,
    ) -> impl std::future::Future<Output = Result<Handled>> + Send;

    /// The stage's own durable step, once its outputs are acknowledged; `offsets` are the
    /// batch's next offsets, for a stage that commits them with its writes.
    fn make_durable(
        &mut self,
        offsets: &std::collections::BTreeMap<(String, i32), i64>,
        handled: &mut Handled,
        ctx: &BatchCtx<'_>,
    ) -> impl std::future::Future<Output = Result<()>> + Send {
        let _ = (offsets, handled, ctx);
        async { Ok(()) }
    }
}

/// What a stage made of one batch.
#[derive(Default)]
pub struct Handled {
    pub produced: Produced,
    pub report: Report,
    /// Reports of stages fused into this one (route inside normalize), each emitted under
    /// its own stage's name; their origins index this batch too.
    pub also: Vec<(&'static str, Report)>,
}

/// The records a batch produces, each with the index in the batch of the input it comes
/// from (to dead-letter that input if the record can never be written).
#[derive(Default)]
pub struct Produced {
    pub outputs: Vec<Output>,
    pub origins: Vec<usize>,
}

impl Produced {
    pub fn push(&mut self, origin: usize, output: Output) {
        self.outputs.push(output);
        self.origins.push(origin);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StageName {
    All,
    Normalize,
    Route,
    Store,
}

impl StageName {
    /// The name logs and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            StageName::All => "all",
            StageName::Normalize => "normalize",
            StageName::Route => "route",
            StageName::Store => "store",
        }
    }

    /// Route and store read and write the database; normalize only when route is fused
    /// into it.
    pub fn needs_database(self, settings: &Settings) -> bool {
        match self {
            StageName::Normalize => settings.route_in_normalize(),
            StageName::All => false,
            StageName::Route | StageName::Store => true,
        }
    }

    /// The topics the stage reads.
    pub fn inputs(self, settings: &Settings) -> Vec<String> {
        let t = &settings.topics;
        match self {
            StageName::All => Vec::new(),
            StageName::Normalize => t.feeds(),
            StageName::Route => vec![t.documents.clone()],
            StageName::Store => vec![t.routed.clone(), t.quarantine.clone()],
        }
    }

    /// What the stage's consumer sets over the stage consumers' defaults. Route, when
    /// normalize routes what it yields itself, reads a topic that carries only replays and
    /// what an earlier chain left there: it asks the broker every 250 ms instead of every
    /// 10 ms (`fetch.wait.max.ms`; the broker answers at once when data comes). An idle
    /// consumer's fetches cost the broker and the client CPU all the time, under load too
    /// (bench/ANALYSIS.md "Session 16"); a replayed document waits up to 250 ms more.
    pub fn consumer_overrides(
        self,
        settings: &Settings,
    ) -> &'static [(&'static str, &'static str)] {
        match self {
            StageName::Route if settings.route_in_normalize() => {
                &[("fetch.wait.max.ms", ROUTE_BESIDE_FUSED_FETCH_WAIT_MS)]
            }
            _ => &[],
        }
    }

    /// The topics the stage writes.
    pub fn outputs(self, settings: &Settings) -> Vec<String> {
        let t = &settings.topics;
        match self {
            StageName::All => Vec::new(),
            // Fused, it still writes documents in a replay (which runs it alone).
            StageName::Normalize if settings.route_in_normalize() => vec![
                t.documents.clone(),
                t.routed.clone(),
                t.quarantine.clone(),
                t.dlq.clone(),
            ],
            StageName::Normalize => vec![t.documents.clone(), t.dlq.clone()],
            StageName::Route => vec![t.routed.clone(), t.quarantine.clone(), t.dlq.clone()],
            StageName::Store => vec![t.dlq.clone()],
        }
    }
}

/// Every record a stage writes must fit the producer's and the topics' size limits; an
/// inconsistent set refuses to start here rather than failing on the first big document.
/// Returns the settings with the producer's limit raised where the operator left it.
pub async fn sized_settings(
    settings: &Settings,
    stages: &[StageName],
    shutdown: &CancellationToken,
) -> Result<Settings> {
    let mut outputs: Vec<String> = stages.iter().flat_map(|s| s.outputs(settings)).collect();
    outputs.sort_unstable();
    outputs.dedup();
    let outputs: Vec<&str> = outputs.iter().map(String::as_str).collect();
    let limits = kafka::limits::check_record_limits(
        settings,
        &outputs,
        kafka::limits::stage_largest_payload(settings),
        "the larger of limits.max_cda_bytes and limits.max_message_bytes",
        shutdown,
    )
    .await?;
    let mut sized = settings.clone();
    limits.apply(&mut sized);
    Ok(sized)
}

/// Runs the chosen stage(s) against Kafka until shutdown.
pub async fn run(
    which: StageName,
    settings: Settings,
    health: Health,
    shutdown: CancellationToken,
) -> Result<()> {
    let settings = settings.for_stage(which == StageName::All);
    if which == StageName::All || which == StageName::Normalize {
        let fused = settings.route_in_normalize();
        info!(
            route_in_normalize = fused,
            normalize_consumers = settings.normalize_consumers(),
            "normalize {}",
            if fused {
                "routes what it yields itself (limits.route_in_normalize)"
            } else {
                "writes what it yields to the documents topic for the route stage"
            }
        );
    }
    let running: Vec<StageName> = [StageName::Normalize, StageName::Route, StageName::Store]
        .into_iter()
        .filter(|s| which == StageName::All || which == *s)
        .flat_map(|s| {
            let instances = match s {
                StageName::Store => settings.store_consumers(),
                StageName::Normalize => settings.normalize_consumers(),
                _ => 1,
            };
            std::iter::repeat_n(s, instances)
        })
        .collect();
    let settings = Arc::new(sized_settings(&settings, &running, &shutdown).await?);
    let checks = HealthChecks::new(running.len());
    let needs_db = running.iter().any(|s| s.needs_database(&settings));
    let shared = SharedStore::default();
    // One producer for every stage instance of the process: each librdkafka producer has
    // its own connections and threads, and its polling thread spins for up to a millisecond
    // at the end of each 100 ms poll (rdkafka 0.39 rounds the time left down to 0 ms). With
    // one per instance (5 for `--stage all`: 51 threads) an idle process spent 7-8% of a
    // core; with one, 4% and 35 threads (bench/ANALYSIS.md "Session 15"). Durability is per
    // record (each send awaits its own acknowledgement), so sharing changes no guarantee;
    // a fatal producer error stops every stage, as it stopped the process before.
    let producer = kafka::stage_producer(&settings)?;
    let mut tasks = tokio::task::JoinSet::new();
    for stage in running {
        let (s, t, c, db, p) = (
            settings.clone(),
            shutdown.clone(),
            checks.clone(),
            shared.clone(),
            producer.clone(),
        );
        tasks.spawn(async move {
            let result = run_live(stage, s, &c, &t, &db, p).await;
            // A stage loop only ends on shutdown: one that returns while nobody asked it to
            // stop would leave its partitions unread behind a live process.
            let result = match result {
                Ok(()) if !t.is_cancelled() => Err(anyhow::anyhow!("the stage stopped by itself")),
                other => other,
            };
            (stage, result)
        });
    }
    // Readiness follows the broker, the database and the assignments, re-checked
    // periodically (not set once at start).
    let db = needs_db.then(|| shared.clone());
    let checker = tokio::spawn(checks.run(settings.clone(), db, health.clone(), shutdown.clone()));
    let mut failure: Option<StageFailed> = None;
    while let Some(done) = tasks.join_next().await {
        let (stage, error) = match done {
            Ok((_, Ok(()))) => continue,
            // Shutdown was requested from outside (a signal; we cancel only after a
            // failure): an error met while draining (a send or a database call cut short)
            // leaves its batch uncommitted, to be redelivered. Not a failure of the process.
            Ok((stage, Err(e))) if failure.is_none() && shutdown.is_cancelled() => {
                warn!(stage = stage.as_str(), error = %format!("{e:#}"), "stage stopped during shutdown with its batch uncommitted");
                continue;
            }
            Ok((stage, Err(e))) => (stage, format!("{e:#}")),
            Err(e) => (
                StageName::All,
                format!("a stage task panicked or was aborted: {e}"),
            ),
        };
        if failure.is_none() {
            // Not ready first, then one clear line, then the others stop. Errors name
            // topics, codes and operations, never message content (StoreError, KafkaError).
            health.fail();
            error!(stage = stage.as_str(), error = %error, "stage cannot continue: the process exits");
            failure = Some(StageFailed { stage, error });
            shutdown.cancel();
        } else {
            warn!(stage = stage.as_str(), error = %error, "stage stopped with an error");
        }
    }
    shutdown.cancel();
    let _ = checker.await;
    health.set_ready(false);
    match failure {
        Some(f) => Err(f.into()),
        None => Ok(()),
    }
}

/// The fetch wait of route's consumer when normalize routes itself ([`StageName::consumer_overrides`]).
const ROUTE_BESIDE_FUSED_FETCH_WAIT_MS: &str = "250";

/// How often each stage samples its consumer lag into the metrics.
const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// One live stage instance: its consumer group, the process's producer, the driver.
async fn run_live(
    stage: StageName,
    settings: Arc<Settings>,
    health: &HealthChecks,
    shutdown: &CancellationToken,
    shared: &SharedStore,
    producer: FutureProducer,
) -> Result<()> {
    let name = stage.as_str();
    // The database first: a stage that needs it does not join its group without it.
    let store = match stage.needs_database(&settings) {
        false => None,
        true => Some(retry::connect_store(&settings, name, shutdown, shared).await?),
    };
    let consumer = kafka::stage_consumer(
        &settings,
        name,
        &stage.inputs(&settings),
        stage.consumer_overrides(&settings),
    )?;
    health.watch(&consumer);
    runtime::spawn_lag_sampler(&consumer, name, LAG_SAMPLE_EVERY, shutdown.clone());
    let mut sink = Sink::Kafka(producer);
    let mut source = Source::live(consumer);
    let group = format!("{}.{}", settings.kafka.group_prefix, name);
    let mut running = AnyStage::new(stage, settings.clone(), store, Some(group))?;
    if let AnyStage::Route(route) = &running
        && settings.limits.quarantine_retry_seconds > 0
    {
        tokio::spawn(route.sweeper(
            Duration::from_secs(settings.limits.quarantine_retry_seconds),
            shutdown.clone(),
        ));
    }
    drive(
        &mut running,
        &mut source,
        &mut sink,
        &settings,
        shutdown,
        Reporting::Live,
        |_| {},
    )
    .await
}

/// One of the three stages, chosen at run time (the command line names it).
pub enum AnyStage {
    Normalize(NormalizeStage),
    NormalizeRoute(NormalizeRouteStage),
    Route(RouteStage),
    Store(StoreStage),
}

impl AnyStage {
    /// Route and store need the database; `group` is the live group whose offsets the
    /// store commits with its writes (`None`: a replay or the embedded chain). Normalize
    /// given the database routes what it yields when `limits.route_in_normalize` says so.
    pub fn new(
        which: StageName,
        settings: Arc<Settings>,
        store: Option<dmpflow_store::Store>,
        group: Option<String>,
    ) -> Result<AnyStage> {
        Ok(match (which, store) {
            (StageName::Normalize, Some(store)) if settings.route_in_normalize() => {
                AnyStage::NormalizeRoute(NormalizeRouteStage::new(
                    NormalizeStage::new(settings.clone()),
                    RouteStage::new(settings, store),
                ))
            }
            (StageName::Normalize, _) => AnyStage::Normalize(NormalizeStage::new(settings)),
            (StageName::Route, Some(store)) => AnyStage::Route(RouteStage::new(settings, store)),
            (StageName::Store, Some(store)) => {
                AnyStage::Store(StoreStage::new(settings, store, group))
            }
            (StageName::All, _) => anyhow::bail!("one stage at a time: normalize, route or store"),
            (stage, None) => anyhow::bail!("the {} stage needs the database", stage.as_str()),
        })
    }
}

impl Stage for AnyStage {
    fn name(&self) -> &'static str {
        match self {
            AnyStage::Normalize(s) => s.name(),
            AnyStage::NormalizeRoute(s) => s.name(),
            AnyStage::Route(s) => s.name(),
            AnyStage::Store(s) => s.name(),
        }
    }

    async fn handle(&mut self, batch: &[OwnedMessage], ctx: &BatchCtx<'_>) -> Result<Handled> {
        match self {
            AnyStage::Normalize(s) => s.handle(batch, ctx).await,
            AnyStage::NormalizeRoute(s) => s.handle(batch, ctx).await,
            AnyStage::Route(s) => s.handle(batch, ctx).await,
            AnyStage::Store(s) => s.handle(batch, ctx).await,
        }
    }

    async fn make_durable(
        &mut self,
        offsets: &std::collections::BTreeMap<(String, i32), i64>,
        handled: &mut Handled,
        ctx: &BatchCtx<'_>,
    ) -> Result<()> {
        match self {
            AnyStage::Normalize(s) => s.make_durable(offsets, handled, ctx).await,
            AnyStage::NormalizeRoute(s) => s.make_durable(offsets, handled, ctx).await,
            AnyStage::Route(s) => s.make_durable(offsets, handled, ctx).await,
            AnyStage::Store(s) => s.make_durable(offsets, handled, ctx).await,
        }
    }
}

/// A stage met an error it cannot get past; the process exits non-zero. Already logged
/// (once, at error level) when returned.
#[derive(Debug)]
pub struct StageFailed {
    pub stage: StageName,
    pub error: String,
}

impl std::fmt::Display for StageFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stage {} cannot continue: {}",
            self.stage.as_str(),
            self.error
        )
    }
}

impl std::error::Error for StageFailed {}

pub fn normalize_config(settings: &Settings) -> dmpflow_normalize::Config {
    dmpflow_normalize::Config {
        max_message_bytes: settings.limits.max_message_bytes,
        max_cda_bytes: settings.limits.max_cda_bytes,
        max_entries: settings.limits.max_entries,
        ..Default::default()
    }
}

pub fn route_config(settings: &Settings) -> RouteConfig {
    RouteConfig {
        accept_test_oids: settings.accept_test_oids,
    }
}

/// Where a message was read.
pub(crate) fn at(m: &OwnedMessage) -> At {
    At {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
    }
}

pub(crate) fn coordinates(m: &OwnedMessage) -> Coordinates {
    Coordinates {
        topic: Some(m.topic().to_string()),
        partition: Some(m.partition()),
        offset: Some(m.offset()),
    }
}

/// The headers every hop carries on: the feed and the time the message came in.
pub(crate) fn carried_headers(m: &OwnedMessage, feed: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![(h::FEED, feed.to_string())];
    if let Some(t) = runtime::ingest_time_ms(m) {
        v.push((h::INGEST_TIME, t.to_string()));
    }
    v
}

/// The dead letter of an input: its payload and key untouched, the reason in headers.
pub(crate) fn dead_letter(
    settings: &Settings,
    m: &OwnedMessage,
    stage: &'static str,
    reason: Reason,
    error: &str,
) -> Output {
    Output {
        topic: settings.topics.dlq.clone(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers: runtime::dlq_headers(m, stage, reason.as_str(), error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only route beside a fused normalize waits longer for its fetches; every other stage
    /// keeps the stage consumers' 10 ms (the latency of the live path).
    #[test]
    fn only_route_beside_a_fused_normalize_fetches_lazily() {
        let split = Settings::default().for_stage(false);
        let fused = Settings::default().for_stage(true);
        assert!(!split.route_in_normalize() && fused.route_in_normalize());
        for stage in [StageName::Normalize, StageName::Store, StageName::All] {
            assert!(stage.consumer_overrides(&split).is_empty());
            assert!(stage.consumer_overrides(&fused).is_empty());
        }
        assert!(StageName::Route.consumer_overrides(&split).is_empty());
        assert_eq!(
            StageName::Route.consumer_overrides(&fused),
            &[("fetch.wait.max.ms", "250")]
        );
        // Through the one recipe: over the role's 10 ms, under the operator's own value.
        let group = kafka::Role::StageConsumer { group: "g" };
        let cfg =
            kafka::config(&fused, group, StageName::Route.consumer_overrides(&fused)).unwrap();
        assert_eq!(cfg.get("fetch.wait.max.ms"), Some("250"));
        let mut operator = fused.clone();
        operator
            .kafka
            .client
            .insert("fetch.wait.max.ms".into(), "40".into());
        let cfg = kafka::config(
            &operator,
            group,
            StageName::Route.consumer_overrides(&operator),
        )
        .unwrap();
        assert_eq!(cfg.get("fetch.wait.max.ms"), Some("40"));
    }
}
