//! The three Kafka stages, each a loop over the shared runtime: read a batch, run the
//! stage's logic from `pipeline`, make the outcome durable, commit.
//!
//! - normalize: `dmp.feed.*` → `dmp.documents` (key = INS) or `dmp.dlq`;
//! - route: `dmp.documents` → `dmp.routed` / `dmp.quarantine`, identity updates applied to
//!   the registry;
//! - store: `dmp.routed` + `dmp.quarantine` → the database, documents and consumer offsets
//!   in one transaction. On start and after a rebalance it reads its offsets from the
//!   database and skips what is already stored there: exactly-once into the DMP.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use dmpflow_route::RouteConfig;
use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{Normalized, headers as h, wire};
use dmpflow_store::{BatchReport, ItemOutcome, OffsetCommit, Store, StoreItem};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::Settings;
use crate::metrics::{Health, StageLabel, metrics};
use crate::chain::{self as pipeline, Coordinates, Routed};
use crate::runtime::{self, HealthChecks, Output, StageConsumer};

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
}

/// Runs the chosen stage(s) until shutdown.
pub async fn run(
    which: StageName,
    settings: Settings,
    health: Health,
    shutdown: CancellationToken,
) -> Result<()> {
    let settings = std::sync::Arc::new(settings);
    let stages = [
        (StageName::Normalize, false),
        (StageName::Route, true),
        (StageName::Store, true),
    ];
    let running: Vec<(StageName, bool)> = stages
        .into_iter()
        .filter(|(s, _)| which == StageName::All || which == *s)
        .flat_map(|(s, db)| {
            let instances = match s {
                StageName::Store => settings.store_consumers(),
                StageName::Normalize => settings.limits.normalize_consumers.max(1),
                _ => 1,
            };
            std::iter::repeat_n((s, db), instances)
        })
        .collect();
    // Every record a stage writes must fit the producer's and the topics' size limits; an
    // inconsistent set refuses to start here rather than failing on the first big document.
    let mut outputs: Vec<&str> = Vec::new();
    for (stage, _) in &running {
        let t = &settings.topics;
        match stage {
            StageName::Normalize => outputs.extend([t.documents.as_str(), t.dlq.as_str()]),
            StageName::Route => {
                outputs.extend([t.routed.as_str(), t.quarantine.as_str(), t.dlq.as_str()])
            }
            _ => outputs.push(t.dlq.as_str()),
        }
    }
    outputs.sort_unstable();
    outputs.dedup();
    let limits = runtime::check_record_limits(
        &settings,
        &outputs,
        runtime::stage_largest_payload(&settings),
        "the larger of limits.max_cda_bytes and limits.max_message_bytes",
        &shutdown,
    )
    .await?;
    let settings = {
        let mut s = (*settings).clone();
        limits.apply(&mut s);
        std::sync::Arc::new(s)
    };
    let checks = HealthChecks::new(running.len());
    let needs_db = running.iter().any(|(_, db)| *db);
    let mut tasks = tokio::task::JoinSet::new();
    let shared = SharedStore::default();
    for (stage, _) in running {
        let (s, t, c, db) = (
            settings.clone(),
            shutdown.clone(),
            checks.clone(),
            shared.clone(),
        );
        tasks.spawn(async move {
            let result = match stage {
                StageName::Normalize => run_normalize(&s, &c, &t).await,
                StageName::Route => run_route(&s, &c, &t, &db).await,
                _ => run_store(&s, &c, &t, &db).await,
            };
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
    let checker =
        tokio::spawn(checks.run(settings.clone(), needs_db, health.clone(), shutdown.clone()));
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

/// How often each stage samples its consumer lag into the metrics.
const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(5);

fn set_in_flight(stage: &'static str, n: usize) {
    metrics()
        .in_flight
        .get_or_create(&StageLabel { stage })
        .set(n as i64);
}

/// A batch is done (durable and committed): record its time; nothing is in flight.
fn observe_batch(stage: &'static str, started: Instant, _n: usize) {
    metrics()
        .batch_seconds
        .get_or_create(&StageLabel { stage })
        .observe(started.elapsed().as_secs_f64());
    set_in_flight(stage, 0);
}

fn coordinates(m: &OwnedMessage) -> Coordinates {
    Coordinates {
        topic: Some(m.topic().to_string()),
        partition: Some(m.partition()),
        offset: Some(m.offset()),
    }
}

fn carried_headers(m: &OwnedMessage, feed: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![(h::FEED, feed.to_string())];
    if let Some(t) = runtime::ingest_time_ms(m) {
        v.push((h::INGEST_TIME, t.to_string()));
    }
    v
}

fn feed_label(item: &Normalized) -> String {
    pipeline::source_of(item)
        .feed
        .map(|f| f.as_str().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// What a batch yielded per message (feed, outcome, reason), counted in the metrics only
/// once the batch's outputs are durable.
pub type Tally = Vec<(String, &'static str, Option<String>)>;

/// Counts a durable batch's outcomes in the metrics. A skip's reason goes to
/// `dmpflow_skipped_total`, not to the rejects: it is not an error.
pub fn record_tally(stage: &'static str, tally: Tally) {
    for (feed, outcome, reason) in tally {
        if outcome == ATTACHMENTS_IGNORED {
            // Not a message outcome: the count rides in the reason slot.
            let n = reason.and_then(|n| n.parse().ok()).unwrap_or(0);
            metrics().attachments_ignored(&feed, n);
            continue;
        }
        metrics().message(stage, &feed, outcome);
        match reason {
            Some(r) if outcome == SKIPPED => metrics().skip(&feed, &r),
            Some(r) => metrics().reject(stage, &r),
            None => {}
        }
    }
}

/// A tally entry that is not a message outcome: attachments (mail body, PDF ...) a message
/// carried beside its documents, left aside by normalize; the count is in the reason slot.
pub const ATTACHMENTS_IGNORED: &str = "attachments_ignored";

/// The outcome of a message normalize skips (`Reason::is_skip`): nothing to produce, the
/// offset is committed with the batch's, and no dead letter is written.
pub const SKIPPED: &str = "skipped";

pub fn normalize_config(settings: &Settings) -> dmpflow_normalize::Config {
    dmpflow_normalize::Config {
        max_message_bytes: settings.limits.max_message_bytes,
        max_cda_bytes: settings.limits.max_cda_bytes,
        max_entries: settings.limits.max_entries,
        ..Default::default()
    }
}

/// What one batch of a stage produces: the outputs, for each the index in the batch of
/// the input it comes from (to dead-letter that input if the output can never be written),
/// and the tally.
#[derive(Default)]
pub struct Produced {
    pub outputs: Vec<Output>,
    pub origins: Vec<usize>,
    pub tally: Tally,
}

impl Produced {
    fn push(&mut self, origin: usize, output: Output) {
        self.outputs.push(output);
        self.origins.push(origin);
    }
}

/// The normalize stage's logic for one batch, shared by the live stage and `dmpflow
/// replay`: the documents and dead letters to produce, and the tally. No IO.
pub fn normalize_batch(
    settings: &Settings,
    cfg: &dmpflow_normalize::Config,
    batch: &[OwnedMessage],
) -> Result<Produced> {
    const STAGE: &str = "normalize";
    let mut out = Produced::default();
    for (origin, m) in batch.iter().enumerate() {
        let Some(feed) = settings.topics.feed_of(m.topic()) else {
            continue;
        };
        let raw = m.payload().unwrap_or_default();
        match pipeline::normalize_message(feed, raw, &coordinates(m), cfg) {
            Ok(items) => {
                for mut item in items {
                    // The CDA is compressed once, here: every later hop carries the zstd
                    // bytes, and the store keeps them as they are.
                    if let Normalized::Document(d) = &mut item {
                        d.packed = Some(dmpflow_store::pack_cda(&d.cda));
                        d.cda = String::new();
                    }
                    let payload = wire::encode(&item);
                    out.push(
                        origin,
                        Output {
                            topic: settings.topics.documents.clone(),
                            key: Some(pipeline::patient_key(&item).to_string()),
                            payload,
                            headers: carried_headers(m, feed.as_str()),
                        },
                    );
                    if let Normalized::Document(d) = &item
                        && d.meta.ignored_attachments > 0
                    {
                        out.tally.push((
                            feed.as_str().into(),
                            ATTACHMENTS_IGNORED,
                            Some(d.meta.ignored_attachments.to_string()),
                        ));
                    }
                    let outcome = match item {
                        Normalized::Document(_) => "document",
                        Normalized::Patient(_) => "patient",
                    };
                    out.tally.push((feed.as_str().into(), outcome, None));
                }
            }
            Err(reject) if reject.reason.is_skip() => {
                // Nothing for the DMP (an ADT movement): no output, so the batch's commit
                // moves past it; counted once the batch is durable, like the others.
                debug!(
                    stage = STAGE,
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    reason = reject.reason.as_str(),
                    "skipped"
                );
                out.tally.push((
                    feed.as_str().into(),
                    SKIPPED,
                    Some(reject.reason.as_str().into()),
                ));
            }
            Err(reject) => {
                let mut headers =
                    runtime::dlq_headers(m, STAGE, reject.reason.as_str(), &reject.detail);
                if !headers.iter().any(|(k, _)| *k == h::FEED) {
                    headers.push((h::FEED, feed.as_str().into()));
                }
                out.push(
                    origin,
                    Output {
                        topic: settings.topics.dlq.clone(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        payload: raw.to_vec(),
                        headers,
                    },
                );
                warn!(
                    stage = STAGE,
                    topic = m.topic(),
                    partition = m.partition(),
                    offset = m.offset(),
                    reason = reject.reason.as_str(),
                    "dead-lettered"
                );
                out.tally.push((
                    feed.as_str().into(),
                    "dead_lettered",
                    Some(reject.reason.as_str().into()),
                ));
            }
        }
    }
    Ok(out)
}

/// Makes a batch's outputs durable. An output the producer or its topic refuses as too
/// large can never be written: its input is dead-lettered once instead (`kafka.record.too_large`;
/// the dead letter carries the input, which fitted its own topic), and the batch goes on.
/// `Ok(false)`: shutdown before everything was acknowledged (do not commit). `Err`: an
/// error the stage cannot get past (fatal producer, a dead letter itself refused).
pub async fn produce_batch(
    settings: &Settings,
    producer: &FutureProducer,
    batch: &[OwnedMessage],
    produced: &Produced,
    stage: &'static str,
    shutdown: &CancellationToken,
) -> Result<bool> {
    let too_large =
        match runtime::produce_outputs(producer, &produced.outputs, stage, shutdown).await? {
            runtime::Delivery::Interrupted => return Ok(false),
            runtime::Delivery::Durable { too_large } => too_large,
        };
    if too_large.is_empty() {
        return Ok(true);
    }
    let mut inputs: BTreeMap<usize, String> = BTreeMap::new();
    for t in &too_large {
        let out = &produced.outputs[t.index];
        inputs.entry(produced.origins[t.index]).or_insert_with(|| {
            format!(
                "output record of {} bytes for topic {} refused: {}",
                out.payload.len(),
                out.topic,
                t.error
            )
        });
    }
    let dead: Vec<Output> = inputs
        .iter()
        .map(|(&i, why)| {
            let m = &batch[i];
            let feed = runtime::header(m, h::FEED)
                .or_else(|| {
                    settings
                        .topics
                        .feed_of(m.topic())
                        .map(|f| f.as_str().into())
                })
                .unwrap_or_else(|| "unknown".into());
            metrics().message(stage, &feed, "dead_lettered");
            metrics().reject(stage, Reason::RecordTooLarge.as_str());
            let mut o = dead_letter(settings, m, stage, Reason::RecordTooLarge, why);
            if !o.headers.iter().any(|(k, _)| *k == h::FEED) {
                o.headers.push((h::FEED, feed));
            }
            o
        })
        .collect();
    produce_dead_letters(producer, &dead, stage, shutdown).await
}

/// Produces dead letters. One refused as too large cannot go anywhere: the stage stops
/// rather than commit past a message it could not keep.
async fn produce_dead_letters(
    producer: &FutureProducer,
    dead: &[Output],
    stage: &'static str,
    shutdown: &CancellationToken,
) -> Result<bool> {
    match runtime::produce_outputs(producer, dead, stage, shutdown).await? {
        runtime::Delivery::Interrupted => Ok(false),
        runtime::Delivery::Durable { too_large } => match too_large.first() {
            None => Ok(true),
            Some(t) => anyhow::bail!(
                "a dead letter of {} bytes for {} was refused as too large ({}): raise the \
                 topic's max.message.bytes to at least its input topic's",
                dead[t.index].payload.len(),
                dead[t.index].topic,
                t.error
            ),
        },
    }
}

async fn run_normalize(
    settings: &Settings,
    health: &HealthChecks,
    shutdown: &CancellationToken,
) -> Result<()> {
    const STAGE: &str = "normalize";
    let consumer = runtime::consumer(settings, STAGE, &settings.topics.feeds())?;
    health.watch(consumer.clone());
    runtime::spawn_lag_sampler(consumer.clone(), STAGE, LAG_SAMPLE_EVERY, shutdown.clone());
    let producer = runtime::stage_producer(settings)?;
    let cfg = normalize_config(settings);
    let mut committed = BTreeMap::new();
    info!(stage = STAGE, "started");
    while !shutdown.is_cancelled() {
        let batch = runtime::next_batch(&consumer, settings, shutdown).await?;
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        set_in_flight(STAGE, batch.len());
        // CPU work for tens of milliseconds, run on this worker: the other stages' tasks are
        // stolen by the other worker meanwhile. (`block_in_place` was tried: it hands the
        // worker to another thread at every call; measured peak RSS over a backlog and a
        // 2k msg/s overload: 463 MB with it, 358 MB without, same throughput.)
        let produced = normalize_batch(settings, &cfg, &batch)?;
        if !produce_batch(settings, &producer, &batch, &produced, STAGE, shutdown).await? {
            // Shutdown before the outputs were acknowledged: do not commit; they come back.
            warn!(stage = STAGE, "batch not committed");
            break;
        }
        let offsets = runtime::next_offsets(&batch);
        runtime::commit(&consumer, &offsets, CommitMode::Async);
        committed.extend(offsets);
        record_tally(STAGE, produced.tally);
        observe_batch(STAGE, started, batch.len());
    }
    finish(&consumer, STAGE, &committed);
    Ok(())
}

/// Leaves the group after committing, synchronously, the offsets of every batch whose
/// outputs were durable: an asynchronous commit sent just before a SIGTERM may not have
/// reached the broker yet, and the next owner would process that batch a second time.
fn finish(consumer: &StageConsumer, stage: &'static str, committed: &BTreeMap<(String, i32), i64>) {
    // Only partitions still held: after a rebalance, another member may own (and have
    // advanced) the others, and committing our older offset would move them back.
    // And only offsets ahead of what the group already committed: a partition that went to
    // another member and came back holds that member's newer offset, while our map still
    // has the one from before the rebalance.
    let held = consumer.assignment().unwrap_or_default();
    let current = consumer
        .committed(std::time::Duration::from_secs(5))
        .unwrap_or_default();
    let mine: BTreeMap<(String, i32), i64> = committed
        .iter()
        .filter(|((t, p), _)| held.find_partition(t, *p).is_some())
        .filter(
            |((t, p), ours)| match current.find_partition(t, *p).map(|e| e.offset()) {
                Some(rdkafka::Offset::Offset(theirs)) => **ours > theirs,
                _ => true,
            },
        )
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if !mine.is_empty() {
        runtime::commit(consumer, &mine, CommitMode::Sync);
    }
    info!(stage, "stopped");
}

/// Retries a database operation on transient errors until it works or shutdown.
async fn with_db_retry<T, F, Fut>(
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
async fn with_db_retry_paused<T, F, Fut>(
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

/// The database, connected once per process and shared by its route and store consumers:
/// one pool, not one per consumer, so a process holds at most one pool's connections (each
/// keeps buffers as large as the largest batch it wrote).
pub type SharedStore = std::sync::Arc<tokio::sync::OnceCell<Store>>;

async fn connect_store(
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

/// The route stage's logic for one batch, shared by the live stage and `dmpflow replay`:
/// identity updates are applied to the registry (idempotently) as they come; the routed
/// documents, quarantine cases and dead letters to produce are returned with the tally.
pub async fn route_batch(
    settings: &Settings,
    store: &Store,
    cfg: &RouteConfig,
    batch: &[OwnedMessage],
    shutdown: &CancellationToken,
    keepalive: Option<&StageConsumer>,
) -> Result<Produced> {
    const STAGE: &str = "route";
    let mut out = Produced::default();
    // Route reads the heads only; the CDA bytes go to the output untouched.
    let items: Vec<_> = batch
        .iter()
        .map(|m| wire::split(m.payload().unwrap_or_default()))
        .collect();
    // The registry records of the whole batch in one query, not one per document.
    let registry = pipeline::RegistryCache::default();
    let mut patients: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Ok((Normalized::Document(d), _)) => Some(d.meta.patient.ins.as_str()),
            _ => None,
        })
        .collect();
    patients.sort_unstable();
    patients.dedup();
    if !patients.is_empty() {
        with_db_retry_paused(STAGE, shutdown, keepalive, || {
            registry.prefetch(store, &patients)
        })
        .await?;
    }
    for (origin, (m, split)) in batch.iter().zip(items).enumerate() {
        let feed = runtime::header(m, h::FEED).unwrap_or_else(|| "unknown".into());
        let (item, cda) = match split {
            Ok(split) => split,
            Err(e) => {
                out.push(
                    origin,
                    dead_letter(settings, m, STAGE, Reason::PayloadInvalid, &e.to_string()),
                );
                out.tally.push((
                    feed,
                    "dead_lettered",
                    Some(Reason::PayloadInvalid.as_str().into()),
                ));
                continue;
            }
        };
        let routed = with_db_retry_paused(STAGE, shutdown, keepalive, || {
            pipeline::route_item(store, item.clone(), cfg, &registry)
        })
        .await?;
        match routed {
            Routed::Document(doc) => {
                out.push(
                    origin,
                    Output {
                        topic: settings.topics.routed.clone(),
                        key: Some(pipeline::patient_key(&doc).to_string()),
                        payload: wire::join(&doc, cda),
                        headers: carried_headers(m, &feed),
                    },
                );
                out.tally.push((feed, "routed", None));
            }
            Routed::PatientApplied => out.tally.push((feed, "patient", None)),
            Routed::Quarantine(mut q) => {
                // A packed CDA stays packed (its bytes after the case's head); raw XML from a
                // producer outside the pipeline goes inline, as `split` checked it is UTF-8.
                if let Normalized::Document(d) = &mut q.item
                    && d.cda.is_empty()
                    && d.packed.is_none()
                {
                    d.cda = String::from_utf8_lossy(cda).into_owned();
                }
                let mut headers = carried_headers(m, &feed);
                headers.push((h::REASON, q.reason.clone()));
                headers.push((h::STAGE, STAGE.into()));
                out.tally
                    .push((feed_label(&q.item), "quarantined", Some(q.reason.clone())));
                out.push(
                    origin,
                    Output {
                        topic: settings.topics.quarantine.clone(),
                        key: Some(pipeline::patient_key(&q.item).to_string()),
                        payload: wire::encode_quarantined(&q, cda),
                        headers,
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Cases re-routed per sweep at most: a flood of waiting cases is worked off over several
/// sweeps instead of in one long burst next to the live traffic.
const QUARANTINE_RETRY_BATCH: i64 = 200;

/// The route stage's sweeper: every `every`, the open `ins.unknown` cases whose patient the
/// registry knows by now, and the open `patient.opposed` cases whose patient no longer
/// opposes (a later ZFA-9 `INO`), are re-routed and, if they pass, stored
/// (`pipeline::release_case`, the code of `dmpflow quarantine release`). A document that ran
/// ahead of its patient's identity message on another feed, or that waited while its patient
/// opposed, is thus filed without anyone releasing it. Several route instances may sweep at
/// once: the store files a document once, and a case closes once.
async fn retry_waiting_quarantine(
    store: Store,
    cfg: RouteConfig,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let listed = async {
            let mut ids = store
                .quarantine_waiting_known(QUARANTINE_RETRY_BATCH)
                .await?;
            ids.extend(
                store
                    .quarantine_opposition_lifted(QUARANTINE_RETRY_BATCH)
                    .await?,
            );
            Ok::<_, dmpflow_store::StoreError>(ids)
        };
        let waiting = match listed.await {
            Ok(ids) => ids,
            Err(e) => {
                // The live stage retries and reports the database itself; try again later.
                warn!(stage = "route", error = %e, "quarantine retry: listing the waiting cases failed");
                continue;
            }
        };
        let mut filed = 0;
        for id in waiting {
            if shutdown.is_cancelled() {
                return;
            }
            let result = match pipeline::release_case(&store, &cfg, id).await {
                Ok(pipeline::Release::Filed(_) | pipeline::Release::PatientApplied) => "filed",
                Ok(pipeline::Release::StillFails { .. }) => "still_fails",
                Ok(pipeline::Release::NotFiled(_)) => "not_filed",
                Ok(pipeline::Release::NotOpen) => continue,
                Err(e) => {
                    warn!(stage = "route", case = id, error = %e, "quarantine retry failed");
                    break;
                }
            };
            metrics().quarantine_auto_release(result);
            if result == "filed" {
                filed += 1;
            }
        }
        if filed > 0 {
            info!(
                stage = "route",
                filed,
                "quarantine retry: waiting documents filed now that their patient is known or no longer opposes"
            );
        }
    }
}

pub fn route_config(settings: &Settings) -> RouteConfig {
    RouteConfig {
        accept_test_oids: settings.accept_test_oids,
    }
}

async fn run_route(
    settings: &Settings,
    health: &HealthChecks,
    shutdown: &CancellationToken,
    shared: &SharedStore,
) -> Result<()> {
    const STAGE: &str = "route";
    let store = connect_store(settings, STAGE, shutdown, shared).await?;
    let consumer = runtime::consumer(
        settings,
        STAGE,
        std::slice::from_ref(&settings.topics.documents),
    )?;
    health.watch(consumer.clone());
    runtime::spawn_lag_sampler(consumer.clone(), STAGE, LAG_SAMPLE_EVERY, shutdown.clone());
    let producer = runtime::stage_producer(settings)?;
    let cfg = route_config(settings);
    if settings.limits.quarantine_retry_seconds > 0 {
        tokio::spawn(retry_waiting_quarantine(
            store.clone(),
            cfg,
            Duration::from_secs(settings.limits.quarantine_retry_seconds),
            shutdown.clone(),
        ));
    }
    let mut committed = BTreeMap::new();
    info!(stage = STAGE, "started");
    while !shutdown.is_cancelled() {
        let batch = runtime::next_batch(&consumer, settings, shutdown).await?;
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        set_in_flight(STAGE, batch.len());
        let produced =
            match route_batch(settings, &store, &cfg, &batch, shutdown, Some(&consumer)).await {
                Ok(p) => p,
                // Shutdown while the database was unavailable: nothing to commit.
                Err(_) if shutdown.is_cancelled() => break,
                Err(e) => return Err(e),
            };
        if !produce_batch(settings, &producer, &batch, &produced, STAGE, shutdown).await? {
            warn!(stage = STAGE, "batch not committed");
            break;
        }
        let offsets = runtime::next_offsets(&batch);
        runtime::commit(&consumer, &offsets, CommitMode::Async);
        committed.extend(offsets);
        record_tally(STAGE, produced.tally);
        observe_batch(STAGE, started, batch.len());
    }
    finish(&consumer, STAGE, &committed);
    Ok(())
}

fn dead_letter(
    settings: &Settings,
    m: &OwnedMessage,
    stage: &'static str,
    reason: Reason,
    error: &str,
) -> Output {
    warn!(
        stage,
        topic = m.topic(),
        partition = m.partition(),
        offset = m.offset(),
        reason = reason.as_str(),
        "dead-lettered"
    );
    Output {
        topic: settings.topics.dlq.clone(),
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        payload: m.payload().unwrap_or_default().to_vec(),
        headers: runtime::dlq_headers(m, stage, reason.as_str(), error),
    }
}

/// A store batch decoded: the items to write (with their feeds), the undecodable
/// messages as dead letters, and the ingest times for the end-to-end latency.
#[derive(Default)]
pub struct StoreBatch {
    pub items: Vec<StoreItem>,
    pub item_feeds: Vec<String>,
    pub dlq: Vec<Output>,
    pub e2e: Vec<i64>,
    pub skipped: usize,
}

/// The store stage's decoding of one batch, shared by the live stage and `dmpflow replay`.
/// `already_stored` says which messages the database already holds (the live group's
/// offsets); they are skipped.
pub fn store_decode(
    settings: &Settings,
    batch: &[OwnedMessage],
    already_stored: impl Fn(&OwnedMessage) -> bool,
) -> StoreBatch {
    const STAGE: &str = "store";
    let mut out = StoreBatch::default();
    for m in batch {
        if already_stored(m) {
            // Already in the database (a crash between the DB commit and the Kafka
            // commit): skip, do not store twice.
            out.skipped += 1;
            continue;
        }
        let feed = runtime::header(m, h::FEED).unwrap_or_else(|| "unknown".into());
        let payload = m.payload().unwrap_or_default();
        let decoded = if m.topic() == settings.topics.quarantine {
            // The case's CDA is inflated (and checked against its sha256) here, one message
            // at a time: a corrupt one is dead-lettered alone instead of failing the batch.
            wire::decode_quarantined(payload)
                .map_err(|e| e.to_string())
                .and_then(|mut q| {
                    if let Normalized::Document(d) = &mut q.item
                        && let Some(p) = d.packed.take()
                    {
                        d.cda = dmpflow_store::unpack_cda(&p.bytes, &p.sha256)
                            .map_err(|why| format!("quarantined CDA: {why}"))?;
                    }
                    Ok(StoreItem::Quarantine(q))
                })
        } else {
            wire::decode(payload)
                .map_err(|e| e.to_string())
                .and_then(|n| match n {
                    Normalized::Document(d) => Ok(StoreItem::Document(*d)),
                    Normalized::Patient(_) => Err("patient update on the routed topic".into()),
                })
        };
        match decoded {
            Ok(item) => {
                out.items.push(item);
                out.item_feeds.push(feed);
                if let Some(t) = runtime::ingest_time_ms(m) {
                    out.e2e.push(t);
                }
            }
            Err(e) => {
                out.dlq.push(dead_letter(
                    settings,
                    m,
                    STAGE,
                    Reason::PayloadInvalid,
                    &e.to_string(),
                ));
                metrics().message(STAGE, &feed, "dead_lettered");
                metrics().reject(STAGE, Reason::PayloadInvalid.as_str());
            }
        }
    }
    out
}

/// Counts a committed store batch's outcomes in the metrics.
pub fn record_store_outcomes(outcomes: &[ItemOutcome], feeds: &[String]) {
    let m = metrics();
    for (outcome, feed) in outcomes.iter().zip(feeds) {
        let (label, reason) = outcome_label(outcome);
        m.message("store", feed, label);
        if let Some(r) = reason {
            m.reject("store", r);
        }
    }
}

/// Counts and logs, once their batch is committed, the items the store processed under a
/// reused control id (`hl7.control_id.reused`): sender and MSH-10 only, no patient data.
pub fn record_control_id_reuse(items: &[StoreItem], reused: &[usize], feeds: &[String]) {
    for &i in reused {
        let (Some(item), Some(feed)) = (items.get(i), feeds.get(i)) else {
            continue;
        };
        let source = match item {
            StoreItem::Document(d) => &d.meta.source,
            StoreItem::Patient(u) => &u.source,
            StoreItem::Quarantine(q) => pipeline::source_of(&q.item),
        };
        metrics()
            .control_id_reused
            .get_or_create(&crate::metrics::FeedLabel { feed: feed.clone() })
            .inc();
        warn!(
            stage = "store",
            reason = Reason::Hl7ControlIdReused.as_str(),
            feed = %feed,
            sender = %source.sender,
            control_id = %source.control_id,
            position = source.position,
            "control id seen before with other content: processed as a new message"
        );
    }
}

/// Writes decoded items, retrying transient database errors (a replay passes no offsets).
/// `keepalive` is the live stage's consumer, paused while the database is unavailable.
pub async fn store_write(
    store: &Store,
    items: &[StoreItem],
    commits: &[OffsetCommit],
    shutdown: &CancellationToken,
    keepalive: Option<&StageConsumer>,
) -> Result<Vec<ItemOutcome>> {
    let report = store_write_report(store, items, commits, shutdown, keepalive).await?;
    Ok(report.outcomes)
}

/// [`store_write`], also telling which items reused a control id.
pub async fn store_write_report(
    store: &Store,
    items: &[StoreItem],
    commits: &[OffsetCommit],
    shutdown: &CancellationToken,
    keepalive: Option<&StageConsumer>,
) -> Result<BatchReport> {
    with_db_retry_paused("store", shutdown, keepalive, || {
        store.write_batch_report(items, commits)
    })
    .await
}

async fn run_store(
    settings: &Settings,
    health: &HealthChecks,
    shutdown: &CancellationToken,
    shared: &SharedStore,
) -> Result<()> {
    const STAGE: &str = "store";
    let store = connect_store(settings, STAGE, shutdown, shared).await?;
    let group = format!("{}.{}", settings.kafka.group_prefix, STAGE);
    let topics = vec![
        settings.topics.routed.clone(),
        settings.topics.quarantine.clone(),
    ];
    let consumer = runtime::consumer(settings, STAGE, &topics)?;
    health.watch(consumer.clone());
    runtime::spawn_lag_sampler(consumer.clone(), STAGE, LAG_SAMPLE_EVERY, shutdown.clone());
    let producer: FutureProducer = runtime::stage_producer(settings)?;
    // Next offset per partition as recorded in the database: the source of truth.
    let mut db_offsets: HashMap<(String, i32), i64> = HashMap::new();
    let mut committed = BTreeMap::new();
    info!(stage = STAGE, "started");
    'batches: while !shutdown.is_cancelled() {
        let batch = runtime::next_batch(&consumer, settings, shutdown).await?;
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        set_in_flight(STAGE, batch.len());
        if consumer.context().rebalanced.swap(false, Ordering::SeqCst) {
            db_offsets.clear();
        }
        for topic in &topics {
            let needs_load = batch.iter().any(|m| {
                m.topic() == topic && !db_offsets.contains_key(&(topic.clone(), m.partition()))
            });
            if needs_load {
                let rows =
                    match with_db_retry(STAGE, shutdown, || store.committed_offsets(&group, topic))
                        .await
                    {
                        Ok(rows) => rows,
                        Err(_) if shutdown.is_cancelled() => break 'batches,
                        Err(e) => return Err(e),
                    };
                for (p, next) in rows {
                    db_offsets.insert((topic.clone(), p), next);
                }
                for m in batch.iter().filter(|m| m.topic() == topic) {
                    db_offsets
                        .entry((topic.clone(), m.partition()))
                        .or_insert(0);
                }
            }
        }
        let offsets = runtime::next_offsets(&batch);
        let decoded = store_decode(settings, &batch, |m| {
            let stored_next = db_offsets
                .get(&(m.topic().to_string(), m.partition()))
                .copied()
                .unwrap_or(0);
            m.offset() < stored_next
        });
        // Dead letters first: the DB commit below records the offsets past them.
        if !produce_dead_letters(&producer, &decoded.dlq, STAGE, shutdown).await? {
            warn!(stage = STAGE, "batch not committed");
            break;
        }
        let commits: Vec<OffsetCommit> = offsets
            .iter()
            .map(|((topic, partition), next)| OffsetCommit {
                group: group.clone(),
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next,
            })
            .collect();
        let tx_started = Instant::now();
        let report =
            match store_write_report(&store, &decoded.items, &commits, shutdown, Some(&consumer))
                .await
            {
                Ok(r) => r,
                Err(e) if shutdown.is_cancelled() => {
                    warn!(stage = STAGE, error = %format!("{e:#}"), "batch not committed");
                    break;
                }
                // A permanent database error (a value the database refuses, a schema that
                // does not match): retrying the same batch cannot help, and skipping it
                // would lose documents. The process stops, loudly.
                Err(e) => return Err(e.context("writing a batch to the database")),
            };
        let m = metrics();
        m.store_commit_seconds
            .observe(tx_started.elapsed().as_secs_f64());
        m.store_batch_size.observe(decoded.items.len() as f64);
        for (key, next) in &offsets {
            db_offsets.insert(key.clone(), *next);
        }
        runtime::commit(&consumer, &offsets, CommitMode::Async);
        committed.extend(offsets);
        record_store_outcomes(&report.outcomes, &decoded.item_feeds);
        record_control_id_reuse(
            &decoded.items,
            &report.control_id_reused,
            &decoded.item_feeds,
        );
        let now = runtime::now_ms();
        for t in decoded.e2e {
            m.end_to_end_seconds
                .get_or_create(&StageLabel { stage: STAGE })
                .observe(((now - t).max(0) as f64) / 1000.0);
        }
        if decoded.skipped > 0 {
            info!(
                stage = STAGE,
                skipped = decoded.skipped,
                "messages already stored were skipped"
            );
        }
        observe_batch(STAGE, started, batch.len());
    }
    finish(&consumer, STAGE, &committed);
    Ok(())
}

/// Metric outcome label (and reason) of one store outcome.
pub fn outcome_label(o: &ItemOutcome) -> (&'static str, Option<&str>) {
    match o {
        ItemOutcome::Quarantined(r) => ("quarantined", Some(r.as_str())),
        other => (other.as_str(), None),
    }
}

#[cfg(test)]
mod tests {
    use dmpflow_schemas::Feed;
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    use super::*;

    fn on_identity(settings: &Settings, event: &str, offset: i64) -> OwnedMessage {
        let raw = format!(
            "MSH|^~\\&|GAM|CHU|PFI|X|20240501090000||ADT^{event}^ADT_A01|C{offset}|P|2.5\r\
             PID|1||201019999900109^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||CELESTIN^Noel^Noel^^^^L||20010115|M\r\
             ZFA|ACTIF|20240501|||||||IO|20240501|NA\r"
        );
        OwnedMessage::new(
            Some(raw.into_bytes()),
            None,
            settings.topics.feed(Feed::Identity),
            Timestamp::NotAvailable,
            0,
            offset,
            None,
        )
    }

    // Issue #12 item 2: attachments left aside beside a document are counted by feed,
    // and are not message outcomes.
    #[test]
    fn attachments_left_aside_are_counted_not_taken_for_messages() {
        record_tally(
            "normalize",
            vec![
                (
                    "attach-test".to_string(),
                    ATTACHMENTS_IGNORED,
                    Some("3".into()),
                ),
                ("attach-test".to_string(), "document", None),
            ],
        );
        let text = metrics().encode();
        assert!(
            text.contains("dmpflow_attachments_ignored_total{feed=\"attach-test\"} 3"),
            "{text}"
        );
        assert!(!text.contains("outcome=\"attachments_ignored\""), "{text}");
    }

    // Issue #12 item 1: an ADT movement on the identity feed is skipped (no dead letter,
    // no output, counted as skipped), and the batch goes on with the next message.
    #[test]
    fn a_skipped_event_is_tallied_and_never_dead_lettered() {
        let settings = Settings::default();
        let cfg = normalize_config(&settings);
        let batch = [
            on_identity(&settings, "A03", 7),
            on_identity(&settings, "A01", 8),
        ];
        let produced = normalize_batch(&settings, &cfg, &batch).unwrap();
        assert_eq!(produced.outputs.len(), 1, "only the A01 yields something");
        assert_eq!(produced.outputs[0].topic, settings.topics.documents);
        assert_eq!(produced.origins, [1]);
        assert!(
            produced
                .outputs
                .iter()
                .all(|o| o.topic != settings.topics.dlq)
        );
        assert_eq!(
            produced.tally,
            [
                (
                    "identity".to_string(),
                    SKIPPED,
                    Some("hl7.event.skipped".to_string())
                ),
                ("identity".to_string(), "patient", None),
            ]
        );
        record_tally("normalize", produced.tally);
        let text = metrics().encode();
        assert!(
            text.contains(
                "dmpflow_skipped_total{feed=\"identity\",reason=\"hl7.event.skipped\"} 1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("stage=\"normalize\",reason=\"hl7.event.skipped\""),
            "a skip is not a reject: {text}"
        );
    }

    // Issue #12 item 5: an item the store processed under a reused control id is counted
    // by feed (the log line names sender and control id only); the others are not.
    #[test]
    fn a_reused_control_id_is_counted_by_feed() {
        let update = |control_id: &str| {
            StoreItem::Patient(dmpflow_schemas::PatientUpdate {
                change: dmpflow_schemas::PatientChange::Upsert,
                patient: Default::default(),
                feeding_opposed: None,
                dmp_status: None,
                consultation_consent: None,
                times: Default::default(),
                event: "A31".into(),
                source: dmpflow_schemas::SourceRef {
                    sender: "GAM^CHU".into(),
                    control_id: control_id.into(),
                    content_hash: "ab".repeat(32),
                    ..Default::default()
                },
            })
        };
        let items = [update("C1"), update("C1")];
        let feeds = ["reuse-test-a".to_string(), "reuse-test-b".to_string()];
        record_control_id_reuse(&items, &[1], &feeds);
        let text = metrics().encode();
        assert!(
            text.contains("dmpflow_control_id_reused_total{feed=\"reuse-test-b\"} 1"),
            "{text}"
        );
        assert!(!text.contains("feed=\"reuse-test-a\""), "{text}");
    }
}
