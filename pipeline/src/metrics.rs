//! Every metric dmpflow exports, declared once with one meaning each (as vector's
//! internal events), and the HTTP endpoint that serves them with the health checks.
//!
//! Labels carry stages, feeds, outcomes, reason codes and topic coordinates: never patient
//! data (no INS, names or results).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageFeedOutcome {
    pub stage: &'static str,
    pub feed: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageReason {
    pub stage: &'static str,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedReason {
    pub feed: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabel {
    pub stage: &'static str,
    pub topic: String,
    pub partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabel {
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedLabel {
    pub feed: String,
}

/// An MLLP ACK: its MSA-1 code, the feed the message went (or would go) to, and the
/// stable reason code its ERR segment names. All static strings, so counting allocates
/// nothing and no label can carry message content.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AckLabel {
    pub code: &'static str,
    pub feed: &'static str,
    pub reason: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~65 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

/// End-to-end latency, feed to store: finer than a doubling where the targets are (p99 ≤
/// 250 ms at half the sustained rate, issue #15), so a quantile between 256 and 512 ms
/// is not read as "within a factor 2" and 250 ms is a bucket bound.
const END_TO_END_BUCKETS: [f64; 24] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0,
    5.0, 7.5, 10.0, 20.0, 30.0, 60.0, 120.0,
];

fn end_to_end_histogram() -> Histogram {
    Histogram::new(END_TO_END_BUCKETS.iter().copied())
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

/// The metrics of one process.
pub struct Metrics {
    pub registry: Registry,
    /// Messages handled by a stage, by feed and outcome (document, patient, quarantined,
    /// dead_lettered, stored, replaced, deleted, duplicate).
    pub messages: Family<StageFeedOutcome, Counter>,
    /// Rejects (DLQ) and quarantines by stable reason code.
    pub rejects: Family<StageReason, Counter>,
    /// Messages skipped by normalize because they hold nothing for the DMP (an ADT
    /// movement: `hl7.event.skipped`), by feed and reason code: committed, never
    /// dead-lettered, and not counted in `rejects` (a skip is not an error).
    pub skipped: Family<FeedReason, Counter>,
    /// Messages currently held by a stage (its in-flight batch).
    pub in_flight: Family<StageLabel, Gauge>,
    /// Partitions a stage has paused because its next hop is slow or down.
    pub paused_partitions: Family<StageLabel, Gauge>,
    /// Consumer lag per partition (high watermark − position), sampled.
    pub consumer_lag: Family<PartitionLabel, Gauge>,
    /// Time to handle one batch in a stage, seconds.
    pub batch_seconds: HistogramFamily<StageLabel>,
    /// End-to-end latency: produce time of the raw message → stored, seconds.
    pub end_to_end_seconds: HistogramFamily<StageLabel>,
    /// Messages per store batch.
    pub store_batch_size: Histogram,
    /// Time of one store transaction (documents + offsets), seconds.
    pub store_commit_seconds: Histogram,
    /// Transient failures retried (broker or database unavailable), by stage.
    pub retries: Family<StageLabel, Counter>,
    /// 1 while the process can reach its broker and database and holds assignments.
    pub ready: Gauge,
    /// MLLP connections closed because their TLS handshake did not complete, by cause
    /// (`error`: protocol fault such as a plain-TCP client or a rejected certificate;
    /// `timeout`: no handshake within the read timeout). A peer that just closes (a TCP
    /// port probe) is not counted.
    pub mllp_tls_handshake_failures: Family<CauseLabel, Counter>,
    /// MLLP connections at accept, by result (`accepted`; `refused_limit`: closed at once
    /// because --max-connections were already open; `refused_peer_limit`: that peer address
    /// already held --max-connections-per-peer).
    pub mllp_connections: Family<ResultLabel, Counter>,
    /// MLLP connections open now (TLS handshake included), back down on every close.
    pub mllp_open_connections: Gauge,
    /// MLLP ACKs written to the sender, by MSA-1 code (AA, AE, AR), feed (empty when not
    /// known: refused before routing on a --route gateway) and ERR reason code (a
    /// `schemas` Reason for AR, `kafka.unavailable` for AE, empty for AA). An ACK that
    /// could not be written (the sender went away) is not counted.
    pub mllp_acks: Family<AckLabel, Counter>,
    /// MLLP connections closed because their byte stream broke the framing, by cause
    /// (`too_large`: frame over --max-frame; `garbage`: bytes outside a frame; `framing`:
    /// a bad trailer, an empty or unterminated frame, or a stream cut inside a frame;
    /// `timeout`: a frame not complete within --frame-timeout-ms, or silent inside past
    /// --read-timeout-ms).
    pub mllp_frames_refused: Family<CauseLabel, Counter>,
    /// Time from a complete MLLP frame read to its ACK written and flushed, by code, seconds.
    pub mllp_ack_seconds: HistogramFamily<CodeLabel>,
    /// Open `ins.unknown` quarantine cases the route stage re-routed by itself once their
    /// patient was known, by result (`filed`: stored and closed; `still_fails`: route refuses
    /// it for another reason now, recorded on the case; `not_filed`: the store did not file
    /// it, e.g. a duplicate). Cases released by hand are not counted.
    pub quarantine_auto_releases: Family<ResultLabel, Counter>,
    /// Items the store processed although a message with the same sender, MSH-10 and
    /// position was applied before, because their content differs (a sender's counter
    /// reset, several interfaces behind one MSH-3/4): `hl7.control_id.reused`, by feed.
    /// A true resend (same content) is a `duplicate` outcome, not counted here.
    pub control_id_reused: Family<FeedLabel, Counter>,
    /// ED OBX beside a message's document(s) that are not a CDA (a mail body, a PDF ...):
    /// neither read nor refused, counted here by feed once the batch is durable.
    pub attachments_ignored: Family<FeedLabel, Counter>,
    /// FHIR server (`dmpflow serve`) requests answered, by route template (e.g.
    /// `/fhir/Binary/{id}`, never the path itself: it holds ids) and HTTP status. Counted
    /// once the answer is built, hence after its access trace was written.
    pub consult_requests: Family<RouteStatus, Counter>,
    /// Time to answer one FHIR server request, by route template, seconds.
    pub consult_request_seconds: HistogramFamily<RouteLabel>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("dmpflow");
        let m = Metrics {
            messages: Family::default(),
            rejects: Family::default(),
            skipped: Family::default(),
            in_flight: Family::default(),
            paused_partitions: Family::default(),
            consumer_lag: Family::default(),
            batch_seconds: Family::new_with_constructor(latency_histogram),
            end_to_end_seconds: Family::new_with_constructor(end_to_end_histogram),
            store_batch_size: batch_histogram(),
            store_commit_seconds: latency_histogram(),
            retries: Family::default(),
            ready: Gauge::default(),
            mllp_tls_handshake_failures: Family::default(),
            mllp_connections: Family::default(),
            mllp_open_connections: Gauge::default(),
            mllp_acks: Family::default(),
            mllp_frames_refused: Family::default(),
            mllp_ack_seconds: Family::new_with_constructor(latency_histogram),
            quarantine_auto_releases: Family::default(),
            control_id_reused: Family::default(),
            attachments_ignored: Family::default(),
            consult_requests: Family::default(),
            consult_request_seconds: Family::new_with_constructor(latency_histogram),
            registry: Registry::default(),
        };
        // prometheus-client appends `_total` to counters itself.
        registry.register(
            "messages",
            "Messages handled by a stage, by feed and outcome",
            m.messages.clone(),
        );
        registry.register(
            "rejects",
            "Dead-lettered or quarantined messages by stable reason code",
            m.rejects.clone(),
        );
        registry.register(
            "skipped",
            "Messages skipped because they hold nothing for the DMP, by feed and reason code",
            m.skipped.clone(),
        );
        registry.register(
            "in_flight_messages",
            "Messages held by a stage",
            m.in_flight.clone(),
        );
        registry.register(
            "paused_partitions",
            "Partitions paused by backpressure",
            m.paused_partitions.clone(),
        );
        registry.register(
            "consumer_lag_messages",
            "Consumer lag per partition",
            m.consumer_lag.clone(),
        );
        registry.register(
            "batch_seconds",
            "Time to handle one batch",
            m.batch_seconds.clone(),
        );
        registry.register(
            "end_to_end_seconds",
            "Raw message produce time to this stage's durable step: stored (store), its outputs acknowledged (normalize, which routes them itself under run --stage all)",
            m.end_to_end_seconds.clone(),
        );
        registry.register(
            "store_batch_size",
            "Messages per store transaction",
            m.store_batch_size.clone(),
        );
        registry.register(
            "store_commit_seconds",
            "Duration of one store transaction",
            m.store_commit_seconds.clone(),
        );
        registry.register(
            "retries",
            "Transient failures retried with backoff",
            m.retries.clone(),
        );
        registry.register("ready", "1 when ready", m.ready.clone());
        registry.register(
            "mllp_tls_handshake_failures",
            "MLLP connections closed because their TLS handshake failed or timed out",
            m.mllp_tls_handshake_failures.clone(),
        );
        registry.register(
            "mllp_connections",
            "MLLP connections at accept, by result",
            m.mllp_connections.clone(),
        );
        registry.register(
            "mllp_open_connections",
            "MLLP connections open now",
            m.mllp_open_connections.clone(),
        );
        registry.register(
            "mllp_acks",
            "MLLP ACKs written, by code, feed and reason code",
            m.mllp_acks.clone(),
        );
        registry.register(
            "mllp_frames_refused",
            "MLLP connections closed on a broken or oversized frame, by cause",
            m.mllp_frames_refused.clone(),
        );
        registry.register(
            "mllp_ack_seconds",
            "MLLP frame read to ACK written, by code",
            m.mllp_ack_seconds.clone(),
        );
        registry.register(
            "quarantine_auto_releases",
            "ins.unknown quarantine cases re-routed once their patient was known, by result",
            m.quarantine_auto_releases.clone(),
        );
        registry.register(
            "control_id_reused",
            "Messages processed whose sender, control id and position were seen with other content",
            m.control_id_reused.clone(),
        );
        registry.register(
            "attachments_ignored",
            "Attachments beside a message's documents (mail body, PDF ...) left unread, by feed",
            m.attachments_ignored.clone(),
        );
        registry.register(
            "consult_requests",
            "FHIR server requests answered, by route template and HTTP status",
            m.consult_requests.clone(),
        );
        registry.register(
            "consult_request_seconds",
            "FHIR server request to answer, by route template",
            m.consult_request_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn message(&self, stage: &'static str, feed: &str, outcome: &'static str) {
        self.messages
            .get_or_create(&StageFeedOutcome {
                stage,
                feed: feed.to_string(),
                outcome,
            })
            .inc();
    }

    pub fn reject(&self, stage: &'static str, reason: &str) {
        self.rejects
            .get_or_create(&StageReason {
                stage,
                reason: reason.to_string(),
            })
            .inc();
    }

    /// `n` attachments left aside in one message of `feed` (see the field).
    pub fn attachments_ignored(&self, feed: &str, n: u64) {
        self.attachments_ignored
            .get_or_create(&FeedLabel {
                feed: feed.to_string(),
            })
            .inc_by(n);
    }

    /// One message skipped (see the field); `reason` is a `Reason` whose `is_skip()`.
    pub fn skip(&self, feed: &str, reason: &str) {
        self.skipped
            .get_or_create(&FeedReason {
                feed: feed.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// `cause` is `error` or `timeout` (see the field).
    pub fn tls_handshake_failure(&self, cause: &'static str) {
        self.mllp_tls_handshake_failures
            .get_or_create(&CauseLabel { cause })
            .inc();
    }

    /// `result` is `filed`, `still_fails` or `not_filed` (see the field).
    pub fn quarantine_auto_release(&self, result: &'static str) {
        self.quarantine_auto_releases
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// `result` is `accepted`, `refused_limit` or `refused_peer_limit` (see the field).
    pub fn mllp_connection(&self, result: &'static str) {
        self.mllp_connections
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    /// One ACK written: counted and its latency observed under the same code.
    pub fn mllp_ack(&self, label: AckLabel, seconds: f64) {
        self.mllp_ack_seconds
            .get_or_create(&CodeLabel { code: label.code })
            .observe(seconds);
        self.mllp_acks.get_or_create(&label).inc();
    }

    /// `cause` is `too_large`, `garbage`, `framing` or `timeout` (see the field).
    pub fn mllp_frame_refused(&self, cause: &'static str) {
        self.mllp_frames_refused
            .get_or_create(&CauseLabel { cause })
            .inc();
    }

    /// One FHIR server request answered: `route` is the matched route template.
    pub fn consult_request(&self, route: &str, status: u16, seconds: f64) {
        self.consult_request_seconds
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(seconds);
        self.consult_requests
            .get_or_create(&RouteStatus {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("encoding metrics into a String cannot fail");
        out
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// Readiness shared between the stages and the health endpoint.
#[derive(Clone, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
    /// Set once a stage met an error it cannot get past: not ready for good, whatever the
    /// periodic checks find afterwards (the process is on its way out).
    failed: Arc<AtomicBool>,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        let ready = ready && !self.failed.load(Ordering::SeqCst);
        self.ready.store(ready, Ordering::SeqCst);
        metrics().ready.set(ready as i64);
    }
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && !self.failed.load(Ordering::SeqCst)
    }
    /// Not ready from now on: a stage cannot continue and the process is exiting.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::SeqCst);
        self.set_ready(false);
    }
}

/// Serves `/metrics`, `/health/live` and `/health/ready` until the token is cancelled.
pub async fn serve(
    addr: &str,
    health: Health,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    use axum::{Router, http::StatusCode, routing::get};
    let app = Router::new()
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics().encode(),
                )
            }),
        )
        .route("/health/live", get(|| async { "live\n" }))
        .route(
            "/health/ready",
            get(move || {
                let h = health.clone();
                async move {
                    if h.is_ready() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics endpoint on {addr}: {e}"))?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_process_stays_not_ready() {
        let h = Health::default();
        h.set_ready(true);
        assert!(h.is_ready());
        h.fail();
        assert!(!h.is_ready());
        // The periodic checks may still find the broker and the database fine.
        h.set_ready(true);
        assert!(!h.is_ready());
    }

    #[test]
    fn counters_appear_in_the_exposition_with_their_labels() {
        let m = metrics();
        m.message("normalize", "lab", "document");
        m.reject("normalize", "hl7.msh.missing");
        let text = m.encode();
        assert!(
            text.contains(
                "dmpflow_messages_total{stage=\"normalize\",feed=\"lab\",outcome=\"document\"}"
            ),
            "{text}"
        );
        assert!(text.contains("reason=\"hl7.msh.missing\""), "{text}");
        // Another feed than stages::tests' (the metrics are process-wide).
        m.skip("pharmacy", "hl7.event.skipped");
        assert!(
            m.encode().contains(
                "dmpflow_skipped_total{feed=\"pharmacy\",reason=\"hl7.event.skipped\"} 1"
            ),
            "{text}"
        );
        m.tls_handshake_failure("timeout");
        assert!(
            m.encode()
                .contains("dmpflow_mllp_tls_handshake_failures_total{cause=\"timeout\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn mllp_families_appear_with_their_labels() {
        let m = metrics();
        m.mllp_connection("refused_limit");
        m.mllp_ack(
            AckLabel {
                code: "AR",
                feed: "lab",
                reason: "hl7.message_type.unsupported",
            },
            0.002,
        );
        m.mllp_frame_refused("too_large");
        m.mllp_open_connections.inc();
        m.mllp_open_connections.dec();
        let text = m.encode();
        for want in [
            "dmpflow_mllp_connections_total{result=\"refused_limit\"} 1",
            "dmpflow_mllp_acks_total{code=\"AR\",feed=\"lab\",reason=\"hl7.message_type.unsupported\"} 1",
            "dmpflow_mllp_frames_refused_total{cause=\"too_large\"} 1",
            "dmpflow_mllp_open_connections 0",
            "dmpflow_mllp_ack_seconds_count{code=\"AR\"} 1",
            "dmpflow_mllp_ack_seconds_bucket{le=\"0.004\",code=\"AR\"} 1",
        ] {
            assert!(text.contains(want), "{want} not in:\n{text}");
        }
    }
}
