//! The acknowledged write of one raw HL7 v2 message to its feed topic, as every live edge
//! does it: the MLLP gateway (before it answers AA) and `dmpflow serve`'s ITI-65 Provide
//! (before it answers 200). One place for what such a record looks like (key, the
//! `dmp.feed` and `dmp.ingest.time` headers), how long the caller waits for the broker,
//! and how a refusal is classified (too large: never; unavailable: later), so that
//! normalize cannot tell the two edges' records apart.
//!
//! [`FeedProducer::connect`] first checks that the largest payload the caller may write
//! fits the producer's and every topic's record limit (`kafka::limits`), raising the
//! producer's own limit when the operator left it unset; the producer is the gateway's
//! (`kafka::gateway_producer`: acks=all, idempotent, linger 1 ms, delivery bounded by the
//! ACK timeout).

use std::time::Duration;

use anyhow::Result;
use dmpflow_pipeline::config::{Settings, TopicSettings};
use dmpflow_pipeline::{kafka, runtime};
use dmpflow_schemas::{Feed, headers as h};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;

/// Why a write was not acknowledged.
#[derive(Debug)]
pub enum FeedWriteError {
    /// The producer or the topic refuses a record this large: resending cannot help.
    TooLarge(String),
    /// The broker did not acknowledge in time (down, no leader, ...): resend later.
    Unavailable(String),
}

impl std::fmt::Display for FeedWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FeedWriteError::TooLarge(why) => write!(f, "record too large: {why}"),
            FeedWriteError::Unavailable(why) => write!(f, "not acknowledged: {why}"),
        }
    }
}

/// A producer to the feed topics whose every write is acknowledged (acks=all) or refused
/// within the ACK timeout.
pub struct FeedProducer {
    producer: FutureProducer,
    topics: TopicSettings,
    ack_timeout: Duration,
}

impl FeedProducer {
    /// Checks that a payload of `largest_payload` bytes (the bound named by `source` in
    /// the error, e.g. `--max-frame`) fits `topics` and the producer (retrying while the
    /// broker is unavailable, until `shutdown`), then creates the producer.
    pub async fn connect(
        settings: &Settings,
        topics: &[String],
        largest_payload: usize,
        source: &str,
        ack_timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<FeedProducer> {
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        let limits = kafka::limits::check_record_limits(
            settings,
            &topic_refs,
            largest_payload,
            source,
            shutdown,
        )
        .await?;
        let mut settings = settings.clone();
        limits.apply(&mut settings);
        Ok(FeedProducer {
            producer: kafka::gateway_producer(&settings, ack_timeout)?,
            topics: settings.topics.clone(),
            ack_timeout,
        })
    }

    /// How long a write may wait for the broker.
    pub fn ack_timeout(&self) -> Duration {
        self.ack_timeout
    }

    /// Writes to the topic of `feed`; see [`FeedProducer::write`].
    pub async fn write_feed(
        &self,
        feed: Feed,
        key: &str,
        payload: &[u8],
    ) -> Result<(i32, i64), FeedWriteError> {
        self.write(&self.topics.feed(feed), key, payload).await
    }

    /// Produces one message and waits for the broker's acknowledgement, at most the ACK
    /// timeout: (partition, offset) once acknowledged. The producer's own
    /// message.timeout.ms equals that timeout, so a message the caller answered "not
    /// accepted" for is normally abandoned by librdkafka too (a write that still lands is
    /// a duplicate the pipeline absorbs).
    pub async fn write(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Result<(i32, i64), FeedWriteError> {
        let now = runtime::now_ms().to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: h::FEED,
                value: Some(self.topics.feed_of(topic).map(Feed::as_str).unwrap_or("")),
            })
            .insert(Header {
                key: h::INGEST_TIME,
                value: Some(&now),
            });
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        let send = self.producer.send(record, self.ack_timeout);
        match tokio::time::timeout(self.ack_timeout + Duration::from_millis(500), send).await {
            Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
            Ok(Err((e, _))) if record_too_large(&e) => Err(FeedWriteError::TooLarge(e.to_string())),
            Ok(Err((e, _))) => Err(FeedWriteError::Unavailable(e.to_string())),
            Err(_) => Err(FeedWriteError::Unavailable("timed out".into())),
        }
    }

    /// Waits (at most `timeout`) for the writes still in flight.
    pub fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }
}

/// A record refused for its size, by the producer (its `message.max.bytes`) or by the
/// broker (the topic's `max.message.bytes`): a permanent answer for these bytes.
fn record_too_large(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(C::MessageSizeTooLarge | C::MessageBatchTooLarge)
    )
}
