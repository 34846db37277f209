//! The Kafka stage runtime, written once for every stage: consume a bounded batch, hand it
//! to the stage, wait until every output is durable (acknowledged by the broker with
//! acks=all, or committed in the database), and only then commit the input offsets.
//!
//! Why batches: a batch bounds what a stage holds in memory (messages and bytes), lets the
//! store write many documents in one transaction, and lets the producer keep many sends in
//! flight. While a batch waits on a slow next hop, the stage does not read further, so the
//! backlog stays in Kafka (lag) rather than in memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::metrics::metrics;

/// Consumer context: remembers that a rebalance happened so stages can drop per-partition
/// state, and logs assignments (topic coordinates only).
#[derive(Default)]
pub struct StageContext {
    pub rebalanced: AtomicBool,
    /// True while the consumer holds an assignment from its group (possibly empty: a
    /// member with more instances than partitions is a standby, still ready).
    pub assigned: AtomicBool,
}

impl ClientContext for StageContext {}

impl ConsumerContext for StageContext {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(partitions = tpl.count(), "partitions assigned");
                self.assigned.store(true, Ordering::SeqCst);
            }
            Rebalance::Revoke(tpl) => {
                info!(partitions = tpl.count(), "partitions revoked");
                self.assigned.store(false, Ordering::SeqCst);
            }
            Rebalance::Error(e) => {
                warn!(error = %e, "rebalance error");
                self.assigned.store(false, Ordering::SeqCst);
            }
        }
        self.rebalanced.store(true, Ordering::SeqCst);
    }
}

pub type StageConsumer = StreamConsumer<StageContext>;

pub fn client_config(settings: &Settings) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &settings.kafka.bootstrap);
    for (k, v) in &settings.kafka.client {
        cfg.set(k, v);
    }
    cfg
}

/// A Kafka client creation error fit to print. rdkafka's `ClientConfig` error carries the
/// refused setting's value, and librdkafka's own description may quote it too: for a
/// secret key (`sasl.password`, `ssl.key.password`, ...) only the key is kept.
pub fn client_error(e: KafkaError) -> anyhow::Error {
    match e {
        KafkaError::ClientConfig(_, desc, key, _) => {
            if crate::config::is_secret_key(&key) {
                anyhow::anyhow!(
                    "Kafka client setting {key} is refused by librdkafka (its value is not shown)"
                )
            } else {
                anyhow::anyhow!("Kafka client setting {key}: {desc}")
            }
        }
        other => other.into(),
    }
}

/// A consumer of `topics` in the group `<prefix>.<name>`, offsets committed by us only.
pub fn consumer(settings: &Settings, name: &str, topics: &[String]) -> Result<Arc<StageConsumer>> {
    let group = format!("{}.{}", settings.kafka.group_prefix, name);
    let mut cfg = client_config(settings);
    cfg.set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set(
            "queued.max.messages.kbytes",
            settings.limits.consumer_queue_kbytes.to_string(),
        )
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        // Fetch in bulk: the broker answers once 256 KiB are there or after 10 ms. With
        // librdkafka's defaults (1 byte, up to 500 ms) a trickle of messages made every
        // consumer send a fetch per few messages; at 2k msg/s the broker then spent a fifth
        // of the machine answering them, and p99 end-to-end went from ~0.5 s to 1-2 s
        // (bench/ANALYSIS.md). A stage waits `batch_linger_ms` for its batch anyway.
        .set("fetch.wait.max.ms", "10")
        .set("fetch.min.bytes", "262144");
    // The operator's pass-through settings win over our defaults.
    for (k, v) in &settings.kafka.client {
        cfg.set(k, v);
    }
    let consumer: StageConsumer = cfg
        .create_with_context(StageContext::default())
        .map_err(client_error)
        .with_context(|| format!("creating the Kafka consumer of group {group}"))?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&names)
        .with_context(|| format!("subscribing to {names:?}"))?;
    Ok(Arc::new(consumer))
}

/// The idempotent producer every stage writes with (acks=all: "acknowledged" means
/// replicated to the in-sync replicas).
pub fn producer(settings: &Settings) -> Result<FutureProducer> {
    producer_with(settings, "lz4", 5, 30_000)
}

/// The producer of the pipeline stages. No Kafka compression: what they write is mostly
/// documents whose CDA normalize already compressed (zstd, see `schemas::wire`), and LZ4
/// over that costs CPU for nothing. `[kafka.client] "compression.type"` still overrides it.
pub fn stage_producer(settings: &Settings) -> Result<FutureProducer> {
    producer_with(settings, "none", 5, 30_000)
}

/// The idempotent acks=all producer with its compression, linger and delivery timeout
/// chosen by the caller (the MLLP gateway lingers less and times out with its ACK bound).
/// `[kafka.client]` settings win over these.
pub fn producer_with(
    settings: &Settings,
    compression: &str,
    linger_ms: u64,
    message_timeout_ms: u128,
) -> Result<FutureProducer> {
    let mut cfg = client_config(settings);
    cfg.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", linger_ms.to_string())
        .set("compression.type", compression)
        .set("message.timeout.ms", message_timeout_ms.to_string())
        .set(
            "queue.buffering.max.kbytes",
            settings.limits.producer_queue_kbytes.to_string(),
        );
    for (k, v) in &settings.kafka.client {
        cfg.set(k, v);
    }
    cfg.create()
        .map_err(client_error)
        .context("creating the Kafka producer")
}

/// librdkafka's `message.max.bytes` when `[kafka.client]` does not set it.
pub const LIBRDKAFKA_DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// librdkafka refuses a `message.max.bytes` above this.
const LIBRDKAFKA_CEILING_MESSAGE_MAX_BYTES: usize = 1_000_000_000;
/// Room a record needs on top of its largest payload: key, headers (a dead letter's error
/// text), the wire head of a document (its metadata) and the record batch framing.
pub const RECORD_OVERHEAD_BYTES: usize = 1 << 20;

/// The largest payload a pipeline stage writes: a document whose CDA is up to
/// `limits.max_cda_bytes` (packed; zstd may not shrink incompressible content), or a dead
/// letter carrying a raw message of up to `limits.max_message_bytes`.
pub fn stage_largest_payload(settings: &Settings) -> usize {
    settings
        .limits
        .max_cda_bytes
        .max(settings.limits.max_message_bytes)
}

/// The `max.message.bytes` `dmpflow topics create` gives every topic: the largest stage
/// payload plus [`RECORD_OVERHEAD_BYTES`]. The MLLP gateway's default `--max-frame` (16 MiB)
/// fits it too.
pub fn topic_max_message_bytes(settings: &Settings) -> usize {
    stage_largest_payload(settings).saturating_add(RECORD_OVERHEAD_BYTES)
}

/// What [`check_record_limits`] found and decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLimits {
    /// Largest record this process may write: its largest payload + [`RECORD_OVERHEAD_BYTES`].
    pub needed: usize,
    /// The producer's `message.max.bytes` to use (at least `needed`).
    pub producer_max_bytes: usize,
    /// True when `[kafka.client]` did not set `message.max.bytes` and it was raised from
    /// librdkafka's default; [`RecordLimits::apply`] then sets it.
    pub raised: bool,
    /// Each topic's `max.message.bytes` as the broker reports it.
    pub topics: Vec<(String, usize)>,
}

impl RecordLimits {
    /// Sets the producer limit decided here into the settings every client is built from
    /// (a no-op when the operator's own value already fits).
    pub fn apply(&self, settings: &mut Settings) {
        if self.raised {
            settings.kafka.client.insert(
                "message.max.bytes".into(),
                self.producer_max_bytes.to_string(),
            );
        }
    }
}

/// Checks, before a process writes anything, that a record of `largest_payload` bytes (plus
/// [`RECORD_OVERHEAD_BYTES`]) fits both the producer's `message.max.bytes` and every one of
/// `topics`' `max.message.bytes` (read from the broker). `source` names the setting the
/// payload bound comes from, for the error message (e.g. `--max-frame`).
///
/// - a topic that accepts less: refuse to start (error naming the topic, both numbers and
///   the settings to change). Raising a topic's limit is the operator's decision;
/// - the producer: if `[kafka.client] "message.max.bytes"` is set and too small, refuse to
///   start; if it is not set, the returned limits raise it (call [`RecordLimits::apply`]).
///
/// Broker unavailable: retried until `shutdown`. A topic that does not exist: error (run
/// `dmpflow topics create`).
pub async fn check_record_limits(
    settings: &Settings,
    topics: &[&str],
    largest_payload: usize,
    source: &str,
    shutdown: &CancellationToken,
) -> Result<RecordLimits> {
    let found = describe_topic_limits(settings, topics, shutdown).await?;
    let operator = settings
        .kafka
        .client
        .get("message.max.bytes")
        .map(|v| {
            v.trim().parse::<usize>().map_err(|_| {
                anyhow::anyhow!("[kafka.client] \"message.max.bytes\" is not a number of bytes")
            })
        })
        .transpose()?;
    let limits = decide_record_limits(operator, found, largest_payload, source)?;
    info!(
        needed = limits.needed,
        producer_max_bytes = limits.producer_max_bytes,
        raised = limits.raised,
        "record size limits checked"
    );
    Ok(limits)
}

/// The decision of [`check_record_limits`], without IO.
pub fn decide_record_limits(
    operator: Option<usize>,
    topics: Vec<(String, usize)>,
    largest_payload: usize,
    source: &str,
) -> Result<RecordLimits> {
    let needed = largest_payload.saturating_add(RECORD_OVERHEAD_BYTES);
    for (topic, max) in &topics {
        if *max < needed {
            anyhow::bail!(
                "topic {topic} accepts records of at most {max} bytes (its max.message.bytes), \
                 but this process may write records of up to {needed} bytes ({source} = \
                 {largest_payload} + {RECORD_OVERHEAD_BYTES} for headers and framing): raise \
                 the topic's max.message.bytes to at least {needed} (kafka-configs.sh --alter \
                 --entity-type topics --entity-name {topic} --add-config \
                 max.message.bytes={needed}) or lower {source}"
            );
        }
    }
    if needed > LIBRDKAFKA_CEILING_MESSAGE_MAX_BYTES {
        anyhow::bail!(
            "{source} = {largest_payload} needs records of {needed} bytes, over the Kafka \
             client's ceiling of {LIBRDKAFKA_CEILING_MESSAGE_MAX_BYTES}: lower {source}"
        );
    }
    let (producer_max_bytes, raised) = match operator {
        Some(set) if set < needed => anyhow::bail!(
            "[kafka.client] \"message.max.bytes\" = {set} is below the {needed} bytes a record \
             of this process may need ({source} = {largest_payload} + \
             {RECORD_OVERHEAD_BYTES}): remove it (dmpflow then sets it) or raise it, or lower \
             {source}"
        ),
        Some(set) => (set, false),
        None => (
            needed.max(LIBRDKAFKA_DEFAULT_MESSAGE_MAX_BYTES),
            needed > LIBRDKAFKA_DEFAULT_MESSAGE_MAX_BYTES,
        ),
    };
    Ok(RecordLimits {
        needed,
        producer_max_bytes,
        raised,
        topics,
    })
}

/// Each topic's `max.message.bytes` as the broker reports it (its own setting or the
/// broker's default).
async fn describe_topic_limits(
    settings: &Settings,
    topics: &[&str],
    shutdown: &CancellationToken,
) -> Result<Vec<(String, usize)>> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = client_config(settings)
        .create()
        .map_err(client_error)
        .context("creating the Kafka admin client")?;
    let specs: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let mut backoff = Duration::from_millis(200);
    let mut missing_since: Option<Instant> = None;
    loop {
        let attempt: Result<Vec<(String, usize)>, (bool, String)> =
            match admin.describe_configs(&specs, &opts).await {
                Err(e) => Err((true, format!("describing the topics' configuration: {e}"))),
                Ok(results) => {
                    let mut out = Vec::with_capacity(results.len());
                    let mut failure = None;
                    for (topic, r) in topics.iter().zip(results) {
                        match r {
                            Ok(res) => {
                                let max = res
                                    .get("max.message.bytes")
                                    .and_then(|e| e.value.as_deref())
                                    .and_then(|v| v.parse::<usize>().ok());
                                if let Some(m) = max {
                                    out.push((topic.to_string(), m));
                                    continue;
                                }
                                // The broker describes a topic it does not know with no entries
                                // rather than an error: the same case as the arm below.
                                let since = *missing_since.get_or_insert_with(Instant::now);
                                failure = Some((
                                    since.elapsed() < Duration::from_secs(10),
                                    format!(
                                        "topic {topic} does not exist (run `dmpflow topics create`)"
                                    ),
                                ));
                                break;
                            }
                            Err(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                                // Right after `topics create` the topic may not be known to
                                // every broker yet: wait a little before calling it missing.
                                let since = *missing_since.get_or_insert_with(Instant::now);
                                failure = Some((
                                    since.elapsed() < Duration::from_secs(10),
                                    format!(
                                        "topic {topic} does not exist (run `dmpflow topics create`)"
                                    ),
                                ));
                                break;
                            }
                            Err(e) => {
                                failure = Some((
                                    false,
                                    format!("describing topic {topic}'s configuration: {e}"),
                                ));
                                break;
                            }
                        }
                    }
                    match failure {
                        Some(f) => Err(f),
                        None => Ok(out),
                    }
                }
            };
        match attempt {
            Ok(found) => return Ok(found),
            Err((false, why)) => anyhow::bail!("{why}"),
            Err((true, why)) => {
                warn!(error = %why, "checking the topics' record size limits; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => anyhow::bail!("shutdown while checking the topics' record size limits"),
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

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
            fatal_consumer(consumer)?;
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
                fatal_consumer(consumer)?;
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
fn fatal_consumer(consumer: &StageConsumer) -> Result<()> {
    match consumer.client().fatal_error() {
        Some((code, why)) => anyhow::bail!("the Kafka consumer failed fatally ({code:?}): {why}"),
        None => Ok(()),
    }
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
    consumers: Arc<std::sync::Mutex<Vec<Arc<StageConsumer>>>>,
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
    pub fn watch(&self, consumer: Arc<StageConsumer>) {
        self.consumers
            .lock()
            .expect("health registry poisoned")
            .push(consumer);
    }

    fn assigned(&self) -> bool {
        let consumers = self.consumers.lock().expect("health registry poisoned");
        consumers.len() == self.expected
            && consumers
                .iter()
                .all(|c| c.context().assigned.load(Ordering::SeqCst))
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
        let probe: Option<Arc<BaseConsumer>> = client_config(&settings).create().ok().map(Arc::new);
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
/// broker round trip, so it runs on the blocking pool, never in the batch loop.
pub fn spawn_lag_sampler(
    consumer: std::sync::Arc<StageConsumer>,
    stage: &'static str,
    every: Duration,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.cancelled() => return,
            }
            let c = consumer.clone();
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

/// Keeps a stage in its consumer group while its next hop is down. Every assigned
/// partition is paused, so nothing more is fetched or buffered (the backlog stays in Kafka
/// as lag), and the consumer keeps being polled, so the member is not expelled after
/// `max.poll.interval.ms` and its batch is not handed to another instance for nothing.
/// A message can still arrive from a partition assigned during the pause: it is rewound
/// (seek to its own offset) and that partition paused too, so it is read again later.
pub struct Pause<'a> {
    consumer: &'a StageConsumer,
    stage: &'static str,
}

impl<'a> Pause<'a> {
    pub fn start(consumer: &'a StageConsumer, stage: &'static str) -> Pause<'a> {
        match consumer.assignment() {
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
            }
            Err(e) => warn!(stage, error = %e, "reading the assignment to pause it"),
        }
        Pause { consumer, stage }
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

    fn rewind(&self, topic: &str, partition: i32, offset: i64) {
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
    }

    /// The next hop is back: resume every assigned partition.
    pub fn end(self) {
        if let Ok(tpl) = self.consumer.assignment() {
            if let Err(e) = self.consumer.resume(&tpl) {
                warn!(stage = self.stage, error = %e, "resuming partitions");
            }
            info!(
                stage = self.stage,
                partitions = tpl.count(),
                "next hop back: partitions resumed"
            );
        }
        metrics()
            .paused_partitions
            .get_or_create(&crate::metrics::StageLabel { stage: self.stage })
            .set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn topics(max: usize) -> Vec<(String, usize)> {
        vec![("dmp.documents".into(), max), ("dmp.dlq".into(), max)]
    }

    #[test]
    fn producer_limit_is_raised_when_the_operator_did_not_set_it() {
        let l =
            decide_record_limits(None, topics(17 * MIB), 16 * MIB, "limits.max_cda_bytes").unwrap();
        assert_eq!(l.needed, 17 * MIB);
        assert_eq!(l.producer_max_bytes, 17 * MIB);
        assert!(l.raised);
        let mut s = Settings::default();
        l.apply(&mut s);
        assert_eq!(s.kafka.client["message.max.bytes"], (17 * MIB).to_string());
    }

    #[test]
    fn a_topic_that_accepts_less_refuses_the_start_and_names_the_numbers() {
        // The broker's default max.message.bytes (1048588) against the 16 MiB default.
        let e = decide_record_limits(None, topics(1_048_588), 16 * MIB, "--max-frame")
            .unwrap_err()
            .to_string();
        assert!(e.contains("topic dmp.documents"), "{e}");
        assert!(e.contains("1048588"), "{e}");
        assert!(e.contains(&(17 * MIB).to_string()), "{e}");
        assert!(e.contains("--max-frame"), "{e}");
    }

    #[test]
    fn an_operator_producer_limit_below_the_need_refuses_the_start() {
        let e = decide_record_limits(Some(1_000_000), topics(64 * MIB), 16 * MIB, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("message.max.bytes"), "{e}");
        assert!(e.contains("1000000"), "{e}");
        let ok = decide_record_limits(Some(32 * MIB), topics(64 * MIB), 16 * MIB, "x").unwrap();
        assert_eq!(ok.producer_max_bytes, 32 * MIB);
        assert!(!ok.raised);
    }

    #[test]
    fn topics_are_created_to_fit_the_stage_records() {
        let s = Settings::default();
        assert_eq!(
            topic_max_message_bytes(&s),
            16 * MIB + RECORD_OVERHEAD_BYTES
        );
        let l = decide_record_limits(
            None,
            topics(topic_max_message_bytes(&s)),
            stage_largest_payload(&s),
            "limits",
        );
        assert!(l.is_ok());
    }
}
