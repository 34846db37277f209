//! The Kafka stage runtime, written once for every stage: consume a bounded batch, hand it
//! to the stage, wait until every output is durable (acknowledged by the broker with
//! acks=all, or committed in the database), and only then commit the input offsets.
//!
//! Why batches: a batch bounds what a stage holds in memory (messages and bytes), lets the
//! store write many documents in one transaction, and lets the producer keep many sends in
//! flight. While a batch waits on a slow next hop, the stage does not read further, so the
//! backlog stays in Kafka (lag) rather than in memory.
//!
//! The clients themselves, and the record size limits, are configured in [`crate::kafka`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::metrics::metrics;

pub use crate::kafka::{StageConsumer, StageContext};

/// One message to produce.
#[derive(Debug, Clone)]
pub struct Output {
    pub topic: String,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

/// An output the producer or the broker refused as larger than its limit: permanent,
/// retrying cannot help, so the caller dead-letters its input instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge {
    /// Index of the output in the slice given to [`produce_outputs`].
    pub index: usize,
    /// The refusal, as the Kafka client words it (coordinates only, no payload).
    pub error: String,
}

/// How a [`produce_outputs`] call ended.
#[derive(Debug)]
pub enum Delivery {
    /// Every output is acknowledged, except those refused as too large.
    Durable { too_large: Vec<TooLarge> },
    /// Shutdown was requested before every output was acknowledged: do not commit.
    Interrupted,
}

/// A send error retrying cannot fix and that is not about one record: the process must
/// stop (a fenced or fatally failed idempotent producer, a missing authorization).
fn permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
    )
}

/// A record over the producer's `message.max.bytes` (refused at enqueue) or over the topic's
/// `max.message.bytes` (refused by the broker).
fn too_large(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge
    )
}

/// Sends every output and waits for every acknowledgement, as [`produce_outputs`] does,
/// for callers that have nowhere to dead-letter to (the `load` tool, `replay`): a record
/// too large or a shutdown first is an error.
pub async fn produce_all(
    producer: &FutureProducer,
    outputs: &[Output],
    stage: &'static str,
    shutdown: &CancellationToken,
) -> Result<()> {
    match produce_outputs(producer, outputs, stage, shutdown).await? {
        Delivery::Durable { too_large } => match too_large.first() {
            None => Ok(()),
            Some(t) => anyhow::bail!(
                "a record of {} bytes for {} was refused as too large: {}",
                outputs[t.index].payload.len(),
                outputs[t.index].topic,
                t.error
            ),
        },
        Delivery::Interrupted => anyhow::bail!("shutdown before every output was acknowledged"),
    }
}

/// An output's headers as Kafka headers.
pub fn owned_headers(headers: &[(&'static str, String)]) -> OwnedHeaders {
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for (k, v) in headers {
        owned = owned.insert(Header {
            key: k,
            value: Some(v.as_bytes()),
        });
    }
    owned
}

/// Sends every output and waits for every acknowledgement. A failed send is retried with
/// backoff (the idempotent producer makes a retry safe) until all are durable, except:
/// a record refused as too large is reported in [`Delivery::Durable`] (never retried), a
/// shutdown first gives [`Delivery::Interrupted`], and an error that is not about one
/// record and that retrying cannot fix (fatal producer, authorization) is an `Err`.
pub async fn produce_outputs(
    producer: &FutureProducer,
    outputs: &[Output],
    stage: &'static str,
    shutdown: &CancellationToken,
) -> Result<Delivery> {
    let mut pending: Vec<usize> = (0..outputs.len()).collect();
    let mut refused: Vec<TooLarge> = Vec::new();
    let mut backoff = Duration::from_millis(100);
    loop {
        // Enqueue everything first (many sends in flight), then await the acknowledgements.
        let mut deliveries = Vec::with_capacity(pending.len());
        for &i in &pending {
            let out = &outputs[i];
            let mut record = FutureRecord::to(&out.topic)
                .payload(&out.payload)
                .headers(owned_headers(&out.headers));
            if let Some(key) = &out.key {
                record = record.key(key);
            }
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push((i, delivery));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        // Queue full: wait for room, never drop.
                        record = r;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err((e, _)) if e.rdkafka_error_code().is_some_and(too_large) => {
                        refused.push(TooLarge {
                            index: i,
                            error: e.to_string(),
                        });
                        break;
                    }
                    Err((e, _)) => {
                        anyhow::bail!("cannot enqueue a message for {}: {e}", out.topic);
                    }
                }
            }
        }
        let mut failed = Vec::new();
        for (i, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => match e.rdkafka_error_code() {
                    Some(code) if too_large(code) => refused.push(TooLarge {
                        index: i,
                        error: e.to_string(),
                    }),
                    Some(code) if permanent(code) => {
                        anyhow::bail!("producing to {}: {e}", outputs[i].topic)
                    }
                    _ => {
                        warn!(stage, error = %e, topic = %outputs[i].topic, "produce failed; will retry");
                        failed.push(i);
                    }
                },
                Err(_) => failed.push(i),
            }
        }
        if let Some((code, why)) = producer.client().fatal_error() {
            anyhow::bail!("the Kafka producer failed fatally ({code:?}): {why}");
        }
        if failed.is_empty() {
            refused.sort_by_key(|t| t.index);
            return Ok(Delivery::Durable { too_large: refused });
        }
        metrics()
            .retries
            .get_or_create(&crate::metrics::StageLabel { stage })
            .inc();
        pending = failed;
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => {
                warn!(stage, pending = pending.len(), "shutdown while outputs were not acknowledged");
                return Ok(Delivery::Interrupted);
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Reads one batch: waits for a first message, then fills up to the limits for at most
/// `linger`. Returns an empty batch when shutdown is requested or nothing arrives.
pub async fn next_batch(
    consumer: &StageConsumer,
    settings: &Settings,
    shutdown: &CancellationToken,
) -> Result<Vec<OwnedMessage>> {
    let limits = &settings.limits;
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let first = tokio::select! {
        m = consumer.recv() => m,
        _ = shutdown.cancelled() => return Ok(batch),
        _ = tokio::time::sleep(Duration::from_millis(500)) => return Ok(batch),
    };
    match first {
        Ok(m) => {
            bytes += m.payload_len();
            batch.push(m.detach());
        }
        Err(e) => {
            fatal_consumer(consumer, &e)?;
            warn!(error = %e, "consumer error");
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(batch);
        }
    }
    let deadline = Instant::now() + Duration::from_millis(limits.batch_linger_ms);
    while batch.len() < limits.batch_messages && bytes < limits.batch_bytes {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(m)) => {
                bytes += m.payload_len();
                batch.push(m.detach());
            }
            Ok(Err(e)) => {
                fatal_consumer(consumer, &e)?;
                warn!(error = %e, "consumer error");
                break;
            }
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// A consumer error is logged and the stage goes on (the client reconnects by itself),
/// unless the client failed fatally: then no later poll can succeed and the stage must stop.
fn fatal_consumer(consumer: &StageConsumer, e: &rdkafka::error::KafkaError) -> Result<()> {
    if let Some((code, why)) = consumer.client().fatal_error() {
        anyhow::bail!("the Kafka consumer failed fatally ({code:?}): {why}");
    }
    // The cluster's ACLs refuse this principal its group or an input topic: a setting to
    // fix, which no retry will; spinning on it would look like a healthy idle stage.
    if let Some(
        code @ (RDKafkaErrorCode::GroupAuthorizationFailed
        | RDKafkaErrorCode::TopicAuthorizationFailed
        | RDKafkaErrorCode::ClusterAuthorizationFailed),
    ) = e.rdkafka_error_code()
    {
        anyhow::bail!(
            "the Kafka cluster refused this principal ({code:?}: {e}): its ACLs must allow \
             Read on the stage's input topics and on its consumer group"
        );
    }
    Ok(())
}

/// The next offset to commit per (topic, partition): highest handled offset + 1.
pub fn next_offsets(batch: &[OwnedMessage]) -> BTreeMap<(String, i32), i64> {
    let mut next: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let e = next
            .entry((m.topic().to_string(), m.partition()))
            .or_insert(0);
        *e = (*e).max(m.offset() + 1);
    }
    next
}

/// Commits the offsets after the batch's outputs are durable.
pub fn commit(consumer: &StageConsumer, offsets: &BTreeMap<(String, i32), i64>, mode: CommitMode) {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
            warn!(error = %e, "building the commit list");
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        // A partition revoked in a rebalance cannot be committed; its messages come back
        // to the new owner, whose writes are idempotent.
        warn!(error = %e, "offset commit failed; the messages will be redelivered");
    }
}

/// A header's value as text.
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    let headers = m.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Produce time of the raw message (ms since epoch): the ingest-time header carried from
/// the feed topic, or this message's own timestamp.
pub fn ingest_time_ms(m: &OwnedMessage) -> Option<i64> {
    header(m, dmpflow_schemas::headers::INGEST_TIME)
        .and_then(|v| v.parse().ok())
        .or_else(|| m.timestamp().to_millis())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Headers of a dead-lettered message: the stage, the reason, where it came from.
pub fn dlq_headers(
    m: &OwnedMessage,
    stage: &'static str,
    reason: &str,
    error: &str,
) -> Vec<(&'static str, String)> {
    use dmpflow_schemas::headers as h;
    let mut v = vec![
        (h::STAGE, stage.to_string()),
        (h::REASON, reason.to_string()),
        (h::ERROR, error.to_string()),
        (h::SOURCE_TOPIC, m.topic().to_string()),
        (h::SOURCE_PARTITION, m.partition().to_string()),
        (h::SOURCE_OFFSET, m.offset().to_string()),
        (h::TIME, now_ms().to_string()),
        (
            h::ATTEMPT,
            header(m, h::ATTEMPT).unwrap_or_else(|| "1".into()),
        ),
    ];
    if let Some(t) = ingest_time_ms(m) {
        v.push((h::INGEST_TIME, t.to_string()));
    }
    if let Some(f) = header(m, h::FEED) {
        v.push((h::FEED, f));
    }
    v
}

/// The database, connected once per process and shared by its route and store consumers
/// and its health check: one pool, not one per consumer, so a process holds at most one
/// pool's connections (each keeps buffers as large as the largest batch it wrote).
pub type SharedStore = Arc<tokio::sync::OnceCell<dmpflow_store::Store>>;

/// Readiness, re-checked every [`HealthChecks::INTERVAL`]: the broker answers a metadata
/// request, the database answers `SELECT 1` (for the stages that use it), and every stage
/// consumer of this process holds an assignment from its group. Any failure turns
/// `/health/ready` to 503 within one interval, so an orchestrator stops routing to (or
/// restarts) an instance that cannot make progress; `/health/live` stays 200 throughout.
#[derive(Clone)]
pub struct HealthChecks {
    /// Held weakly: the stage that owns a consumer closes it when it stops (see
    /// `driver::close`), and the checks must not keep it open nor close it themselves.
    consumers: Arc<std::sync::Mutex<Vec<std::sync::Weak<StageConsumer>>>>,
    expected: usize,
}

impl HealthChecks {
    pub const INTERVAL: Duration = Duration::from_secs(2);
    const TIMEOUT: Duration = Duration::from_secs(2);

    /// For a process running `expected` stage consumers.
    pub fn new(expected: usize) -> HealthChecks {
        HealthChecks {
            consumers: Arc::default(),
            expected,
        }
    }

    /// A stage registers its consumer once created.
    pub fn watch(&self, consumer: &Arc<StageConsumer>) {
        self.consumers
            .lock()
            .expect("health registry poisoned")
            .push(Arc::downgrade(consumer));
    }

    fn assigned(&self) -> bool {
        let consumers = self.consumers.lock().expect("health registry poisoned");
        consumers.len() == self.expected
            && consumers.iter().all(|c| {
                c.upgrade()
                    .is_some_and(|c| c.context().assigned.load(Ordering::SeqCst))
            })
    }

    /// Runs the checks until shutdown, setting `health` after each round.
    pub async fn run(
        self,
        settings: Arc<Settings>,
        db: Option<SharedStore>,
        health: crate::metrics::Health,
        shutdown: CancellationToken,
    ) {
        // A client of its own: a stage consumer's metadata call would wait behind its polls.
        // (A settings error surfaced when the stage consumers were created.)
        let probe: Option<Arc<crate::kafka::MetadataClient>> =
            crate::kafka::metadata_client(&settings).ok().map(Arc::new);
        let mut was = None;
        loop {
            let broker = match &probe {
                Some(p) => {
                    let p = p.clone();
                    tokio::task::spawn_blocking(move || {
                        p.fetch_metadata(None, Self::TIMEOUT).is_ok()
                    })
                    .await
                    .unwrap_or(false)
                }
                None => false,
            };
            // The process's own pool, connected by its stages (one pool per process: the
            // check neither opens another nor re-runs migrations); not connected yet is not
            // ready.
            let database = match db.as_ref().map(|d| d.get()) {
                None => true,
                Some(Some(s)) => matches!(
                    tokio::time::timeout(Self::TIMEOUT, s.ping()).await,
                    Ok(Ok(()))
                ),
                Some(None) => false,
            };
            let assigned = self.assigned();
            let ready = broker && database && assigned && !shutdown.is_cancelled();
            if was != Some(ready) {
                info!(ready, broker, database, assigned, "readiness changed");
                was = Some(ready);
            }
            health.set_ready(ready);
            tokio::select! {
                _ = tokio::time::sleep(Self::INTERVAL) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        health.set_ready(false);
    }
}

/// Samples the consumer lag of every assigned partition (high watermark − position) into
/// `dmpflow_consumer_lag_messages` every `every`, until shutdown. The watermark lookup is a
/// broker round trip, so it runs on the blocking pool, never in the batch loop. The
/// consumer is held weakly, as the health checks hold it (its stage closes it).
pub fn spawn_lag_sampler(
    consumer: &Arc<StageConsumer>,
    stage: &'static str,
    every: Duration,
    shutdown: CancellationToken,
) {
    let consumer = Arc::downgrade(consumer);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
            let Some(c) = consumer.upgrade() else {
                return;
            };
            let samples = tokio::task::spawn_blocking(move || sample_lag(&c))
                .await
                .unwrap_or_default();
            for (topic, partition, lag) in samples {
                metrics()
                    .consumer_lag
                    .get_or_create(&crate::metrics::PartitionLabel {
                        stage,
                        topic,
                        partition,
                    })
                    .set(lag);
            }
        }
    });
}

fn sample_lag(consumer: &StageConsumer) -> Vec<(String, i32, i64)> {
    let Ok(positions) = consumer.position() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for elem in positions.elements() {
        let Ok((low, high)) =
            consumer.fetch_watermarks(elem.topic(), elem.partition(), Duration::from_secs(2))
        else {
            continue;
        };
        // Before the first fetch the position is unknown: the whole retained log is behind.
        let position = match elem.offset() {
            Offset::Offset(o) => o,
            _ => low,
        };
        out.push((
            elem.topic().to_string(),
            elem.partition(),
            (high - position).max(0),
        ));
    }
    out
}

/// Adds a partition to `tpl` unless it is there already.
fn add_once(tpl: &mut TopicPartitionList, topic: &str, partition: i32) {
    if tpl.find_partition(topic, partition).is_none() {
        tpl.add_partition(topic, partition);
    }
}

/// Keeps a stage in its consumer group while its next hop is down. Every assigned
/// partition is paused, so nothing more is fetched or buffered (the backlog stays in Kafka
/// as lag), and the consumer keeps being polled, so the member is not expelled after
/// `max.poll.interval.ms` and its batch is not handed to another instance for nothing.
/// A message can still arrive from a partition assigned during the pause: it is rewound
/// (seek to its own offset) and that partition paused too, so it is read again later.
///
/// The pause outlives a rebalance: librdkafka keeps a partition's pause on its partition
/// object when the partition is revoked, and a partition assigned again comes back paused.
/// So `end` resumes every partition this pause paused as well as the assignment of the
/// moment: resuming the assignment alone, after a session timeout had revoked it during the
/// pause, resumed nothing, and the store stood still with its partitions paused once they
/// were assigned again (seen in CI: a broker restart, then a database restart).
pub struct Pause<'a> {
    consumer: &'a StageConsumer,
    stage: &'static str,
    /// Every partition paused by this pause.
    paused: TopicPartitionList,
}

impl<'a> Pause<'a> {
    pub fn start(consumer: &'a StageConsumer, stage: &'static str) -> Pause<'a> {
        let paused = match consumer.assignment() {
            Ok(tpl) => {
                if let Err(e) = consumer.pause(&tpl) {
                    warn!(stage, error = %e, "pausing partitions");
                }
                info!(
                    stage,
                    partitions = tpl.count(),
                    "next hop unavailable: partitions paused"
                );
                metrics()
                    .paused_partitions
                    .get_or_create(&crate::metrics::StageLabel { stage })
                    .set(tpl.count() as i64);
                tpl
            }
            Err(e) => {
                warn!(stage, error = %e, "reading the assignment to pause it");
                TopicPartitionList::new()
            }
        };
        Pause {
            consumer,
            stage,
            paused,
        }
    }

    /// Waits `dur` while polling the paused consumer in short slices.
    pub async fn wait(&mut self, dur: Duration) {
        let deadline = Instant::now() + dur;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            let slice = left.min(Duration::from_millis(500));
            match tokio::time::timeout(slice, self.consumer.recv()).await {
                Ok(Ok(m)) => self.rewind(m.topic(), m.partition(), m.offset()),
                Ok(Err(e)) => {
                    warn!(stage = self.stage, error = %e, "consumer error while paused");
                    tokio::time::sleep(slice).await;
                }
                Err(_) => {}
            }
        }
    }

    fn rewind(&mut self, topic: &str, partition: i32, offset: i64) {
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .is_err()
        {
            return;
        }
        if let Err(e) = self
            .consumer
            .seek_partitions(tpl.clone(), Duration::from_secs(5))
        {
            warn!(stage = self.stage, error = %e, topic, partition, "rewinding a message read while paused");
        }
        let _ = self.consumer.pause(&tpl);
        add_once(&mut self.paused, topic, partition);
    }

    /// The next hop is back: resume every partition this pause paused (assigned now or
    /// not: see the type's doc) and every partition assigned now.
    pub fn end(self) {
        let mut tpl = self.paused;
        match self.consumer.assignment() {
            Ok(assigned) => {
                for p in assigned.elements() {
                    add_once(&mut tpl, p.topic(), p.partition());
                }
            }
            Err(e) => warn!(stage = self.stage, error = %e, "reading the assignment to resume it"),
        }
        // Partition by partition: librdkafka reports one it no longer knows in that
        // partition's entry, and resumes the others.
        if let Err(e) = self.consumer.resume(&tpl) {
            warn!(stage = self.stage, error = %e, "resuming partitions");
        }
        info!(
            stage = self.stage,
            partitions = tpl.count(),
            "next hop back: partitions resumed"
        );
        metrics()
            .paused_partitions
            .get_or_create(&crate::metrics::StageLabel { stage: self.stage })
            .set(0);
    }
}
