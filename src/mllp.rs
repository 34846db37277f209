//! `dmpflow mllp`: the MLLP gateway. Receives HL7 v2 messages over TCP and answers each
//! with an HL7 ACK whose meaning is exact (design guarantee 5):
//!
//! - **AA** only after Kafka acknowledged the write (acks=all, idempotent producer), so a
//!   sender that got AA may forget the message;
//! - **AR** when the message itself is refused (unparseable MSH, unknown charset, no
//!   MSH-10, message type not routed, a frame over `--max-frame`: `hl7.message.too_large`,
//!   answered from the frame's MSH while the rest of it is dropped unread, a record Kafka
//!   refuses for its size: `kafka.record.too_large`): resending the same bytes will not
//!   help. Only a frame without a readable MSH, garbage or broken framing closes the
//!   connection without an answer;
//! - **AE** when Kafka did not acknowledge within `--ack-timeout-ms`: resend later.
//!
//! The ACK echoes MSH-10 in MSA-2 and is written with the sender's separators and MSH-18
//! charset. The Kafka key keeps one patient's messages in order (PID-3 INS, else
//! MSH-3^MSH-4). A resend of a message already acknowledged (same sender, MSH-10 and
//! bytes) is answered AA from a bounded recent-ids cache without a second write; past the
//! cache (or after a restart) the duplicate reaches the feed topic and normalize's
//! deterministic uniqueIds plus the idempotent store absorb it.
//!
//! At startup `--max-frame` is checked against the producer's `message.max.bytes` and each
//! feed topic's `max.message.bytes` (`kafka::limits::check_record_limits`): a frame the
//! gateway accepts always fits a record, or the gateway does not start.
//!
//! Memory is bounded: at most `--max-connections` connections (`--max-connections-per-peer`
//! of them from one address), each holding at most one frame of `--max-frame` bytes and
//! handling one message at a time (the listener stops reading a connection while its
//! message waits on Kafka). Time is bounded too: a frame must be complete within
//! `--frame-timeout-ms` of its first byte, however slowly its bytes come. Logs name the
//! peer, MSH-10 and topic coordinates only, never message content.
//!
//! TLS is optional (`--tls-cert` and `--tls-key`, PEM): every accepted connection then
//! completes a TLS handshake (rustls, ring provider) within the read timeout before MLLP
//! starts; a failed or slow handshake closes only that connection. Plain and TLS
//! connections share one generic serve loop, so limits, timeouts and shutdown are the same.
//!
//! Metrics (declared in `metrics.rs`) are served with /health on `--metrics-addr`: each
//! connection is counted once at accept, each ACK once it is written (by code, feed and
//! reason code, with its frame-to-ACK latency), each broken frame once when it closes its
//! connection; the open-connections gauge follows a drop guard, so no close path skips it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dmpflow_ingest::{
    AckCharset, AckCode, AckError, Inbound, MllpDecoder, MllpError, build_ack, encode_charset,
    encode_frame, hl7_timestamp,
};
use dmpflow_normalize::hl7::{Charset, Message, ReadOptions};
use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{Feed, headers as h};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::bytes::BytesMut;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::kafka;
use dmpflow_pipeline::metrics::metrics;
use dmpflow_pipeline::runtime;

#[derive(clap::Args, Clone)]
pub struct MllpArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2575")]
    pub listen: String,
    /// Feed every message goes to; its message types are checked (others get AR).
    #[arg(long, required_unless_present = "route")]
    pub feed: Option<Feed>,
    /// Route by MSH-9 instead of one feed: `TYPE[^EVENT]=FEED`, repeatable, first match
    /// wins (e.g. `--route ADT=identity --route RDS^O13=pharmacy --route ORU=lab`).
    #[arg(long, conflicts_with = "feed")]
    pub route: Vec<String>,
    /// Largest message accepted, in bytes (a larger frame closes the connection).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_frame: usize,
    /// A frame already started must keep arriving: longest silence inside a frame (ms);
    /// with TLS, also the longest a handshake may take.
    #[arg(long, default_value_t = 30_000)]
    pub read_timeout_ms: u64,
    /// Longest a frame may take from its first byte to its end block (ms), however its
    /// bytes trickle in: a sender dribbling one byte per read timeout cannot hold a
    /// connection (and its memory) forever. Past it the connection is closed.
    #[arg(long, default_value_t = 60_000)]
    pub frame_timeout_ms: u64,
    /// A connection with no traffic between messages for this long is closed (ms).
    #[arg(long, default_value_t = 600_000)]
    pub idle_timeout_ms: u64,
    /// Connections served at once; further ones are closed at accept.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Connections one peer address may hold at once; further ones from it are closed at
    /// accept, so one host cannot take every --max-connections slot.
    #[arg(long, default_value_t = 32)]
    pub max_connections_per_peer: usize,
    /// How long a message may wait for Kafka's acknowledgement before the sender gets AE (ms).
    #[arg(long, default_value_t = 10_000)]
    pub ack_timeout_ms: u64,
    /// Recently acknowledged (sender, MSH-10, content) kept to answer a resend without a
    /// second write; 0 disables.
    #[arg(long, default_value_t = 100_000)]
    pub dedupe_cache: usize,
    /// Serve MLLP over TLS with this certificate chain (PEM, leaf first); needs --tls-key.
    /// Every connection must then complete a TLS handshake within --read-timeout-ms.
    #[arg(long, env = "DMPFLOW_MLLP_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1); needs --tls-cert.
    #[arg(long, env = "DMPFLOW_MLLP_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Serve /metrics and /health/{live,ready} on this address. Its own default, not the
    /// settings' metrics_addr (127.0.0.1:9464 of `dmpflow run`), so a gateway and the
    /// stages can run on one host without a port clash.
    #[arg(
        long,
        env = "DMPFLOW_MLLP_METRICS_ADDR",
        default_value = DEFAULT_METRICS_ADDR,
        value_name = "ADDR"
    )]
    pub metrics_addr: String,
}

/// Default `--metrics-addr` of the gateway: next to `dmpflow run`'s 9464.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9465";

/// Counts one open connection from accept to close: the gauge goes down on every path
/// out of a connection task (clean close, error, timeout, shutdown, a panic or the task
/// dropped at exit) because it is the guard's drop that does it.
struct OpenConnection;

impl OpenConnection {
    fn new() -> OpenConnection {
        metrics().mllp_open_connections.inc();
        OpenConnection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics().mllp_open_connections.dec();
    }
}

/// Connections open per peer address, so one host cannot take every slot of
/// `--max-connections` (a reconnect storm or a hostile peer would lock out every sender).
struct PeerSlots {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection of a peer, counted until dropped (every close path, like
/// [`OpenConnection`]).
struct PeerPermit {
    slots: Arc<PeerSlots>,
    ip: IpAddr,
}

impl PeerSlots {
    fn new(cap: usize) -> Arc<PeerSlots> {
        Arc::new(PeerSlots {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A permit for one more connection of `ip`, or None when it already holds `cap`.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address (a dual-stack listener
    /// must not give one host two budgets).
    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PeerPermit> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock().expect("poisoned");
        let n = open.entry(ip).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(PeerPermit {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for PeerPermit {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().expect("poisoned");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Forget the address: the map holds only peers connected now.
                open.remove(&self.ip);
            }
        }
    }
}

/// Where a message goes, decided from MSH-9.
#[derive(Debug, Clone)]
enum Routing {
    Feed(Feed),
    /// (type, optional event, feed), first match wins.
    Table(Vec<(String, Option<String>, Feed)>),
}

impl Routing {
    fn from_args(args: &MllpArgs) -> Result<Routing> {
        if let Some(f) = args.feed {
            return Ok(Routing::Feed(f));
        }
        let mut table = Vec::new();
        for r in &args.route {
            let (ty, feed) = r
                .split_once('=')
                .with_context(|| format!("--route {r}: expected TYPE[^EVENT]=FEED"))?;
            let feed: Feed = feed.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            let (typ, event) = match ty.split_once('^') {
                Some((t, e)) => (t.to_string(), Some(e.to_string())),
                None => (ty.to_string(), None),
            };
            table.push((typ, event, feed));
        }
        Ok(Routing::Table(table))
    }

    /// The feed topics this gateway may write to, each once.
    fn topics(&self, settings: &Settings) -> Vec<String> {
        let mut feeds: Vec<Feed> = match self {
            Routing::Feed(f) => vec![*f],
            Routing::Table(t) => t.iter().map(|(_, _, f)| *f).collect(),
        };
        feeds.sort_by_key(|f| f.as_str());
        feeds.dedup();
        feeds.into_iter().map(|f| settings.topics.feed(f)).collect()
    }

    /// With a fixed feed, what normalize maps on it (`dmpflow_normalize::mapping::accepts`,
    /// the same table, not a copy); with `--route`, the first matching row.
    fn feed_for(&self, typ: &str, event: &str, msg: &Message<'_>) -> Option<Feed> {
        match self {
            Routing::Feed(f) => {
                dmpflow_normalize::mapping::accepts(*f, typ, event, msg).then_some(*f)
            }
            Routing::Table(t) => t
                .iter()
                .find(|(ty, ev, _)| ty == typ && ev.as_deref().is_none_or(|e| e == event))
                .map(|(_, _, f)| *f),
        }
    }
}

/// The sender's MSH as the ACK needs it, read from the raw bytes so that even a message
/// the parser refuses can be answered with its MSH-10.
pub struct RawHeader {
    pub inbound: Inbound,
    pub charset: AckCharset,
}

/// Reads MSH-1..18 from the first line. Tolerant by design: this only serves the answer.
pub fn read_header(raw: &[u8]) -> RawHeader {
    let mut b = raw;
    while let [0x0B | b'\r' | b'\n' | b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    if let [0xEF, 0xBB, 0xBF, rest @ ..] = b {
        b = rest;
    }
    let line = &b[..b
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .unwrap_or(b.len())];
    let mut inbound = Inbound::unknown();
    if line.len() < 4 || &line[..3] != b"MSH" || !line[3].is_ascii_graphic() {
        return RawHeader {
            inbound,
            charset: AckCharset::Utf8,
        };
    }
    let fs = line[3];
    let msh18 = line.split(|&c| c == fs).nth(17).unwrap_or(&[]);
    let msh18 = String::from_utf8_lossy(msh18).trim().to_string();
    let cs = if msh18.is_empty() {
        Some(Charset::Utf8)
    } else {
        Charset::from_msh18(&msh18)
    };
    let text = match cs.and_then(|c| c.decode(line)) {
        Some(t) => t.into_owned(),
        None => String::from_utf8_lossy(line).into_owned(),
    };
    let fields: Vec<&str> = text.split(fs as char).collect();
    let get = |n: usize| fields.get(n - 1).copied().unwrap_or("").to_string();
    inbound.field_sep = fs as char;
    let enc = get(2);
    let chars: Vec<char> = enc.chars().collect();
    let usable = (4..=5).contains(&chars.len())
        && chars.iter().enumerate().all(|(i, c)| {
            !(c.is_alphanumeric() || c.is_whitespace() || c.is_control())
                && *c != fs as char
                && !chars[..i].contains(c)
        });
    if usable {
        inbound.encoding = enc;
    }
    let comp = inbound.encoding.chars().next().unwrap_or('^');
    inbound.sending_app = get(3);
    inbound.sending_facility = get(4);
    inbound.receiving_app = get(5);
    inbound.receiving_facility = get(6);
    inbound.trigger = get(9).split(comp).nth(1).unwrap_or("").to_string();
    inbound.control_id = get(10);
    let pid = get(11);
    if !pid.is_empty() {
        inbound.processing_id = pid;
    }
    let version = get(12);
    if !version.is_empty() {
        inbound.version = version;
    }
    inbound.country = get(17);
    inbound.charset = msh18;
    let charset = match cs {
        Some(Charset::Latin1) => AckCharset::Latin1,
        Some(Charset::Latin9) => AckCharset::Latin9,
        _ => AckCharset::Utf8,
    };
    RawHeader { inbound, charset }
}

/// The Kafka key that keeps one patient's messages in order: the INS of PID-3 (the
/// repetition typed `INS`) when present, else the sender MSH-3^MSH-4 (one sender's
/// messages stay in order).
pub fn message_key(msg: &Message<'_>) -> String {
    if let Some(pid) = msg.segment("PID") {
        for rep in pid.field(3).repetitions() {
            let id = rep.component(1);
            if rep.component(5).raw() == "INS" && !id.is_empty() {
                return id.raw().to_string();
            }
        }
    }
    let msh = msg
        .segment("MSH")
        .expect("a parsed message starts with MSH");
    format!("{}^{}", msh.field(3).raw(), msh.field(4).raw())
}

/// The key of raw bytes (parsing them); the sender key from the raw MSH when the message
/// does not parse, so a loader keys like the gateway.
pub fn key_of_raw(raw: &[u8], max_bytes: usize) -> String {
    let opts = ReadOptions {
        max_message_bytes: max_bytes,
        ..ReadOptions::default()
    };
    match Message::parse(raw, &opts) {
        Ok(m) => message_key(&m),
        Err(_) => {
            let hd = read_header(raw).inbound;
            format!("{}^{}", hd.sending_app, hd.sending_facility)
        }
    }
}

/// What identifies a message for resend detection: the full SHA-256 of its raw bytes
/// (which hold MSH-3, MSH-4 and MSH-10). A match answers AA without a write, so a
/// collision would acknowledge a message never written: a 64-bit unkeyed hash made one
/// reachable by a sender who chooses the bytes; 256 bits make it infeasible.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Fingerprint([u8; 32]);

impl Fingerprint {
    fn of(raw: &[u8]) -> Fingerprint {
        use sha2::Digest;
        Fingerprint(sha2::Sha256::digest(raw).into())
    }
}

/// A bounded set of recently acknowledged message fingerprints (FIFO eviction).
struct Recent {
    set: HashSet<Fingerprint>,
    order: VecDeque<Fingerprint>,
    cap: usize,
}

impl Recent {
    fn new(cap: usize) -> Recent {
        Recent {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap,
        }
    }
    fn contains(&self, k: Fingerprint) -> bool {
        self.set.contains(&k)
    }
    fn insert(&mut self, k: Fingerprint) {
        if self.cap == 0 || !self.set.insert(k) {
            return;
        }
        self.order.push_back(k);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// ERR-5 of an AE: not a `schemas` Reason (the message is fine, the broker is not), but as
/// stable, since senders and the metrics' reason label both read it.
const KAFKA_UNAVAILABLE: &str = "kafka.unavailable";

/// What answering one message needs, shared by every connection.
struct Gateway {
    routing: Routing,
    settings: Settings,
    producer: FutureProducer,
    read_opts: ReadOptions,
    ack_timeout: Duration,
    recent: Mutex<Recent>,
    ack_seq: AtomicU64,
    ack_prefix: String,
}

/// How a message was answered (for the log and counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Resend,
    Rejected,
    Failed,
}

impl Outcome {
    /// MSA-1 of the ACK.
    fn code(self) -> &'static str {
        match self {
            Outcome::Accepted | Outcome::Resend => "AA",
            Outcome::Rejected => "AR",
            Outcome::Failed => "AE",
        }
    }
}

/// One message answered: the ACK bytes and what the metrics need to count it.
struct Answered {
    ack: Vec<u8>,
    outcome: Outcome,
    /// The feed the message went (or would go) to, when known without more parsing.
    feed: Option<Feed>,
    /// The stable reason code written in ERR-5 (AR and AE only).
    reason: Option<&'static str>,
}

impl Answered {
    fn label(&self) -> dmpflow_pipeline::metrics::AckLabel {
        dmpflow_pipeline::metrics::AckLabel {
            code: self.outcome.code(),
            feed: self.feed.map(Feed::as_str).unwrap_or(""),
            reason: self.reason.unwrap_or(""),
        }
    }
}

impl Gateway {
    fn answer(&self, hd: &RawHeader, code: AckCode, err: Option<&AckError<'_>>) -> Vec<u8> {
        let n = self.ack_seq.fetch_add(1, Ordering::Relaxed);
        let ack_id = format!("{}{n:06}", self.ack_prefix);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let text = build_ack(&hd.inbound, code, &ack_id, &hl7_timestamp(now), err);
        encode_charset(&text, hd.charset)
    }

    /// AR for a frame over `--max-frame`, from its first line (its MSH) alone.
    fn refuse_oversized(&self, head: &[u8], max: usize, peer: SocketAddr) -> Answered {
        let hd = read_header(head);
        let reason = Reason::Hl7MessageTooLarge.as_str();
        warn!(%peer, msh10 = %hd.inbound.control_id, reason, max_frame = max, "message refused (AR)");
        let text = format!("message larger than the gateway's --max-frame ({max} bytes)");
        let e = AckError {
            hl7_code: "207",
            reason,
            text: &text,
        };
        Answered {
            ack: self.answer(&hd, AckCode::Reject, Some(&e)),
            outcome: Outcome::Rejected,
            feed: match self.routing {
                Routing::Feed(f) => Some(f),
                Routing::Table(_) => None,
            },
            reason: Some(reason),
        }
    }

    async fn handle(&self, raw: Vec<u8>, peer: SocketAddr) -> Answered {
        let hd = read_header(&raw);
        let id = hd.inbound.control_id.clone();
        // A single-feed gateway knows the feed of every message, even one it refuses; a
        // routing table only once MSH-9 is read and matched.
        let fixed_feed = match self.routing {
            Routing::Feed(f) => Some(f),
            Routing::Table(_) => None,
        };
        let reject = |hl7_code: &str, reason: &'static str, text: &str| {
            warn!(%peer, msh10 = %id, reason, "message refused (AR)");
            let e = AckError {
                hl7_code,
                reason,
                text,
            };
            Answered {
                ack: self.answer(&hd, AckCode::Reject, Some(&e)),
                outcome: Outcome::Rejected,
                feed: fixed_feed,
                reason: Some(reason),
            }
        };
        let msg = match Message::parse(&raw, &self.read_opts) {
            Ok(m) => m,
            Err(rej) => {
                let code = match rej.reason {
                    Reason::Hl7MshMissing | Reason::Hl7SegmentInvalid => "100",
                    _ => "102",
                };
                // Reject details name positions and limits, never content.
                return reject(code, rej.reason.as_str(), &rej.detail);
            }
        };
        let msh = msg.segment("MSH").expect("parsed messages start with MSH");
        if msh.field(10).is_empty() {
            return reject(
                "101",
                Reason::Hl7FieldMissing.as_str(),
                "MSH-10 (message control id) is empty",
            );
        }
        let (typ, event) = (
            msh.field(9).component(1).raw().to_string(),
            msh.field(9).component(2).raw().to_string(),
        );
        let Some(feed) = self.routing.feed_for(&typ, &event, &msg) else {
            return reject(
                "200",
                Reason::Hl7MessageTypeUnsupported.as_str(),
                &format!("message type {typ}^{event} is not accepted by this gateway"),
            );
        };
        let fingerprint = Fingerprint::of(&raw);
        if self.recent.lock().expect("poisoned").contains(fingerprint) {
            debug!(%peer, msh10 = %id, "resend of an acknowledged message: AA, not written again");
            return Answered {
                ack: self.answer(&hd, AckCode::Accept, None),
                outcome: Outcome::Resend,
                feed: Some(feed),
                reason: None,
            };
        }
        let key = message_key(&msg);
        drop(msg);
        let topic = self.settings.topics.feed(feed);
        match self.write(&topic, &key, &raw).await {
            Ok((partition, offset)) => {
                self.recent.lock().expect("poisoned").insert(fingerprint);
                debug!(%peer, msh10 = %id, %topic, partition, offset, "written: AA");
                Answered {
                    ack: self.answer(&hd, AckCode::Accept, None),
                    outcome: Outcome::Accepted,
                    feed: Some(feed),
                    reason: None,
                }
            }
            Err(WriteError::TooLarge(why)) => {
                // AE would make the sender resend the same bytes forever: AR says that
                // these bytes can never be taken (the startup check makes this rare: a
                // topic limit lowered while the gateway runs).
                warn!(%peer, msh10 = %id, %topic, bytes = raw.len(), error = %why,
                    "record too large for Kafka: AR");
                let text = format!(
                    "message of {} bytes is larger than Kafka accepts on this feed",
                    raw.len()
                );
                let e = AckError {
                    hl7_code: "207",
                    reason: Reason::RecordTooLarge.as_str(),
                    text: &text,
                };
                Answered {
                    ack: self.answer(&hd, AckCode::Reject, Some(&e)),
                    outcome: Outcome::Rejected,
                    feed: Some(feed),
                    reason: Some(Reason::RecordTooLarge.as_str()),
                }
            }
            Err(WriteError::Unavailable(why)) => {
                warn!(%peer, msh10 = %id, %topic, error = %why, "Kafka write not acknowledged: AE");
                let text = format!(
                    "not accepted: Kafka did not acknowledge the write within {} ms; please resend",
                    self.ack_timeout.as_millis()
                );
                let e = AckError {
                    hl7_code: "207",
                    reason: KAFKA_UNAVAILABLE,
                    text: &text,
                };
                Answered {
                    ack: self.answer(&hd, AckCode::Error, Some(&e)),
                    outcome: Outcome::Failed,
                    feed: Some(feed),
                    reason: Some(KAFKA_UNAVAILABLE),
                }
            }
        }
    }

    /// Produces one message and waits for the broker's acknowledgement, at most the ACK
    /// timeout. The producer's own message.timeout.ms equals that timeout, so a message we
    /// answered AE for is normally abandoned by librdkafka too (a write that still lands
    /// is a duplicate the pipeline absorbs).
    async fn write(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
    ) -> Result<(i32, i64), WriteError> {
        let now = runtime::now_ms().to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: h::FEED,
                value: Some(
                    self.settings
                        .topics
                        .feed_of(topic)
                        .map(Feed::as_str)
                        .unwrap_or(""),
                ),
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
            Ok(Err((e, _))) if record_too_large(&e) => Err(WriteError::TooLarge(e.to_string())),
            Ok(Err((e, _))) => Err(WriteError::Unavailable(e.to_string())),
            Err(_) => Err(WriteError::Unavailable("timed out".into())),
        }
    }
}

/// Why a write was not acknowledged.
#[derive(Debug)]
enum WriteError {
    /// The producer or the topic refuses a record this large: resending cannot help.
    TooLarge(String),
    /// The broker did not acknowledge in time (down, no leader, ...): resend later.
    Unavailable(String),
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

/// The TLS acceptor of `--tls-cert`/`--tls-key`, or None for plain TCP. Errors name the
/// file and the kind of problem only: a PEM parser's message can quote a line of the file,
/// and that line may be key material.
fn tls_acceptor(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<TlsAcceptor>> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => anyhow::bail!(
            "--tls-cert (DMPFLOW_MLLP_TLS_CERT) needs --tls-key (DMPFLOW_MLLP_TLS_KEY): give both or neither"
        ),
        (None, Some(_)) => anyhow::bail!(
            "--tls-key (DMPFLOW_MLLP_TLS_KEY) needs --tls-cert (DMPFLOW_MLLP_TLS_CERT): give both or neither"
        ),
    };
    let pem_error = |path: &Path, what: &str, e: rustls_pki_types::pem::Error| match e {
        rustls_pki_types::pem::Error::Io(io) => {
            anyhow::anyhow!("cannot read {what} {}: {io}", path.display())
        }
        rustls_pki_types::pem::Error::NoItemsFound => {
            anyhow::anyhow!("{what} {}: no PEM {what} found", path.display())
        }
        _ => anyhow::anyhow!("{what} {}: not valid PEM", path.display()),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(cert, "certificate", e))?;
    if chain.is_empty() {
        anyhow::bail!("certificate {}: no PEM certificate found", cert.display());
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, "private key", e))?;
    // ring keeps the build light (aws-lc-rs needs cmake and a C toolchain); the provider
    // is explicit so no process-wide default has to be installed.
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(|e| {
        anyhow::anyhow!(
            "TLS certificate {} and key {} are not usable together: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

struct ConnLimits {
    max_frame: usize,
    read_timeout: Duration,
    idle_timeout: Duration,
    frame_timeout: Duration,
}

/// How long the next read may wait: the idle timeout between frames; inside a frame the
/// read timeout, cut short by the frame's deadline. `None` when the deadline has passed.
fn read_wait(lim: &ConnLimits, frame_started: Option<Instant>, now: Instant) -> Option<Duration> {
    match frame_started {
        None => Some(lim.idle_timeout),
        Some(t) => {
            let left = (t + lim.frame_timeout).checked_duration_since(now)?;
            (!left.is_zero()).then(|| left.min(lim.read_timeout))
        }
    }
}

/// Serves one connection, plain TCP or TLS alike, then closes it (for TLS this sends
/// close_notify, so the sender can tell a clean close from a cut connection).
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    peer: SocketAddr,
    gw: Arc<Gateway>,
    lim: Arc<ConnLimits>,
    shutdown: CancellationToken,
) {
    serve_messages(&mut stream, peer, &gw, &lim, &shutdown).await;
    // Bounded: a peer that stopped reading must not hold the slot (or the shutdown).
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}

/// One message at a time, each answered before the next is read. On shutdown, frames
/// already read are still answered, then the connection closes.
async fn serve_messages<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    gw: &Gateway,
    lim: &ConnLimits,
    shutdown: &CancellationToken,
) {
    let mut dec = MllpDecoder::new(lim.max_frame);
    let mut buf = BytesMut::with_capacity(16 << 10);
    let mut eof = false;
    // When the bytes of the frame being read started to be waited for: the whole-frame
    // deadline counts from there (not from each read, which a byte a time would reset).
    let mut frame_started: Option<Instant> = None;
    loop {
        let frame = if eof {
            dec.decode_eof(&mut buf)
        } else {
            dec.decode(&mut buf)
        };
        match frame {
            Ok(Some(msg)) => {
                // The next frame's clock starts when the gateway waits for it again, so
                // the time spent answering this one does not count against the sender.
                frame_started = None;
                // The latency clock starts when the frame is complete, so a slow sender
                // does not count against the gateway.
                let received = Instant::now();
                let answered = gw.handle(msg, peer).await;
                let sent = async {
                    stream.write_all(&encode_frame(&answered.ack)).await?;
                    // A TLS stream buffers records until flushed; a no-op for TCP.
                    stream.flush().await
                };
                if let Err(e) = sent.await {
                    warn!(%peer, error = %e, "cannot send the ACK; closing");
                    return;
                }
                metrics().mllp_ack(answered.label(), received.elapsed().as_secs_f64());
                continue;
            }
            Ok(None) if eof => {
                debug!(%peer, "connection closed by the peer");
                return;
            }
            Ok(None) => {}
            Err(MllpError::FrameTooLarge { max, head }) if head.starts_with(b"MSH") => {
                // Too large to ever be accepted: AR with the sender's control id, so its
                // interface engine moves on instead of resending the frame forever. The
                // decoder drops the rest of the frame; the frame deadline still runs.
                metrics().mllp_frame_refused("too_large");
                let answered = gw.refuse_oversized(&head, max, peer);
                let sent = async {
                    stream.write_all(&encode_frame(&answered.ack)).await?;
                    stream.flush().await
                };
                if let Err(e) = sent.await {
                    warn!(%peer, error = %e, "cannot send the ACK; closing");
                    return;
                }
                metrics().mllp_ack(answered.label(), 0.0);
                continue;
            }
            Err(e) => {
                // Oversized frame, garbage, broken framing: say why in the log (no
                // content) and close; the sender sees the connection drop without an ACK.
                let what = match e {
                    MllpError::FrameTooLarge { .. } => "frame too large",
                    MllpError::Io(_) => "I/O",
                    _ => "framing",
                };
                // An I/O error is the connection failing, not a frame refused.
                let cause = match e {
                    MllpError::FrameTooLarge { .. } => Some("too_large"),
                    MllpError::Garbage { .. } => Some("garbage"),
                    MllpError::Io(_) => None,
                    _ => Some("framing"),
                };
                if let Some(cause) = cause {
                    metrics().mllp_frame_refused(cause);
                }
                warn!(%peer, error = %e, kind = what, "MLLP error; closing the connection");
                return;
            }
        }
        if shutdown.is_cancelled() {
            // Every complete frame already read has been answered.
            return;
        }
        // Only line ends left between frames are dropped by the decoder, so bytes still
        // in the buffer are the start of a frame.
        if buf.is_empty() && !dec.discarding() {
            frame_started = None;
        } else if frame_started.is_none() {
            frame_started = Some(Instant::now());
        }
        let Some(wait) = read_wait(lim, frame_started, Instant::now()) else {
            metrics().mllp_frame_refused("timeout");
            warn!(%peer, timeout = "frame", limit_ms = lim.frame_timeout.as_millis() as u64,
                "frame not complete within the frame timeout; closing the connection");
            return;
        };
        // Read in chunks; the decoder bounds how much of a frame is kept.
        if buf.capacity() - buf.len() < 8 << 10 {
            buf.reserve(64 << 10);
        }
        let read = tokio::select! {
            r = tokio::time::timeout(wait, stream.read_buf(&mut buf)) => r,
            _ = shutdown.cancelled() => continue,
        };
        match read {
            Ok(Ok(0)) => eof = true,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "read error; closing");
                return;
            }
            Err(_) if buf.is_empty() => {
                info!(%peer, timeout = "idle", "timeout; closing the connection");
                return;
            }
            Err(_) => {
                // Silence inside a frame, or its deadline reached during this read: the
                // frame is abandoned either way.
                metrics().mllp_frame_refused("timeout");
                match read_wait(lim, frame_started, Instant::now()) {
                    Some(_) => warn!(%peer, timeout = "read",
                        "silence inside a frame past the read timeout; closing the connection"),
                    None => warn!(%peer, timeout = "frame",
                        limit_ms = lim.frame_timeout.as_millis() as u64,
                        "frame not complete within the frame timeout; closing the connection"),
                }
                return;
            }
        }
    }
}

pub async fn mllp(settings: &Settings, args: MllpArgs) -> Result<ExitCode> {
    let routing = Routing::from_args(&args)?;
    if let Routing::Table(t) = &routing
        && t.is_empty()
    {
        anyhow::bail!("give --feed FEED or at least one --route TYPE[^EVENT]=FEED");
    }
    // Checked before anything connects to Kafka: a TLS mistake is a startup error.
    let tls = tls_acceptor(args.tls_cert.as_deref(), args.tls_key.as_deref())?;
    // Served from the start so /health/live answers while the gateway gets ready; ready
    // once the producer exists and the listener is bound, not ready again from shutdown.
    let shutdown = dmpflow_pipeline::shutdown_token();
    let health = dmpflow_pipeline::metrics::Health::default();
    let server = {
        let (addr, h, t) = (args.metrics_addr.clone(), health.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = dmpflow_pipeline::metrics::serve(&addr, h, t).await {
                warn!(error = %format!("{e:#}"), "metrics endpoint not served");
            }
        })
    };
    let ack_timeout = Duration::from_millis(args.ack_timeout_ms);
    // Every frame up to --max-frame must fit the producer's and each feed topic's record
    // limit, or it would be answered AE (resend) forever: refuse to start on an
    // inconsistent set, raise the producer's own limit when the operator left it unset.
    let topics = routing.topics(settings);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let limits = kafka::limits::check_record_limits(
        settings,
        &topic_refs,
        args.max_frame,
        "--max-frame",
        &shutdown,
    )
    .await?;
    let mut settings = settings.clone();
    limits.apply(&mut settings);
    let settings = &settings;
    let gw = Arc::new(Gateway {
        routing,
        settings: settings.clone(),
        producer: kafka::gateway_producer(settings, ack_timeout)?,
        read_opts: ReadOptions {
            max_message_bytes: args.max_frame,
            ..ReadOptions::default()
        },
        ack_timeout,
        recent: Mutex::new(Recent::new(args.dedupe_cache)),
        ack_seq: AtomicU64::new(0),
        ack_prefix: format!("{:x}", runtime::now_ms()),
    });
    let lim = Arc::new(ConnLimits {
        max_frame: args.max_frame,
        read_timeout: Duration::from_millis(args.read_timeout_ms),
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        frame_timeout: Duration::from_millis(args.frame_timeout_ms),
    });
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    info!(
        addr = %local,
        tls = if tls.is_some() { "on" } else { "off" },
        max_frame = args.max_frame,
        max_connections = args.max_connections,
        max_connections_per_peer = args.max_connections_per_peer,
        frame_timeout_ms = args.frame_timeout_ms,
        metrics = %args.metrics_addr,
        "MLLP gateway listening"
    );
    println!("listening on {local}");
    health.set_ready(true);
    let slots = Arc::new(Semaphore::new(args.max_connections));
    let peers = PeerSlots::new(args.max_connections_per_peer);
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, do not spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // The peer's own cap first: a peer over it must not take a global slot either.
        let Some(peer_permit) = peers.try_acquire(peer.ip()) else {
            metrics().mllp_connection("refused_peer_limit");
            warn!(%peer, limit = args.max_connections_per_peer, "connection limit of this peer reached; closing");
            drop(stream);
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics().mllp_connection("refused_limit");
            warn!(%peer, limit = args.max_connections, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        metrics().mllp_connection("accepted");
        // Created here, moved into the task: counted open before the task first runs.
        let open = OpenConnection::new();
        let (gw, lim, sd, tls) = (gw.clone(), lim.clone(), shutdown.clone(), tls.clone());
        tracker.spawn(async move {
            let _open = open;
            debug!(%peer, "connection accepted");
            // ACKs are small and each waits for the next message: do not delay them.
            let _ = stream.set_nodelay(true);
            match tls {
                None => serve(stream, peer, gw, lim, sd).await,
                Some(acceptor) => {
                    // The handshake is bounded like a frame in progress, and counts
                    // against the connection limit (the permit is held) like any client.
                    let shake = tokio::select! {
                        r = tokio::time::timeout(lim.read_timeout, acceptor.accept(stream)) => r,
                        _ = sd.cancelled() => return,
                    };
                    match shake {
                        Ok(Ok(tls_stream)) => serve(tls_stream, peer, gw, lim, sd).await,
                        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            // Closed before finishing the handshake without a TLS alert:
                            // typically a TCP port probe (load balancer, monitoring), which
                            // is not a failed client and must not flood the log or metric.
                            debug!(%peer, "closed by the peer during the TLS handshake");
                        }
                        Ok(Err(e)) => {
                            // rustls errors name the protocol fault, never application data.
                            metrics().tls_handshake_failure("error");
                            warn!(%peer, error = %e, "TLS handshake failed; closing the connection");
                        }
                        Err(_) => {
                            metrics().tls_handshake_failure("timeout");
                            warn!(%peer, "TLS handshake timed out; closing the connection");
                        }
                    }
                }
            }
            drop(permit);
            drop(peer_permit);
        });
    }
    health.set_ready(false);
    drop(listener);
    tracker.close();
    let bound = Duration::from_millis(settings.limits.shutdown_timeout_ms) + ack_timeout;
    info!(
        connections = tracker.len(),
        "shutdown: answering the messages already read"
    );
    if tokio::time::timeout(bound, tracker.wait()).await.is_err() {
        warn!("connections still open after the shutdown bound; exiting");
    }
    let _ = gw.producer.flush(Duration::from_secs(5));
    let _ = server.await;
    info!("MLLP gateway stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_of_a_latin9_message_with_custom_separators() {
        let mut raw = b"MSH#$~\\&#APP#FAC\xc9#DMP#X#2024##ORU$R01$ORU_R01#ID-1#P#2.5#####FRA#8859/15\rPID#1\r".to_vec();
        raw.insert(0, 0x0B);
        let hd = read_header(&raw);
        assert_eq!(hd.charset, AckCharset::Latin9);
        assert_eq!(hd.inbound.field_sep, '#');
        assert_eq!(hd.inbound.encoding, "$~\\&");
        assert_eq!(hd.inbound.sending_facility, "FACÉ");
        assert_eq!(hd.inbound.trigger, "R01");
        assert_eq!(hd.inbound.control_id, "ID-1");
        assert_eq!(hd.inbound.charset, "8859/15");
    }

    #[test]
    fn header_of_garbage_is_usable() {
        let hd = read_header(b"hello");
        assert_eq!(hd.inbound.control_id, "");
        assert_eq!(hd.inbound.encoding, "^~\\&");
    }

    #[test]
    fn key_is_the_ins_else_the_sender() {
        let with_ins = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|1|P|2.5\rPID|1||123^^^X^PI~277076322082910^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS\r";
        assert_eq!(key_of_raw(with_ins, 1 << 20), "277076322082910");
        let without = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|1|P|2.5\rPID|1||123^^^X^PI\r";
        assert_eq!(key_of_raw(without, 1 << 20), "SIL^LAB");
    }

    #[test]
    fn routing_by_feed_and_by_table() {
        let opts = ReadOptions::default();
        let raw = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|1|P|2.5\r".to_vec();
        let m = Message::parse(&raw, &opts).unwrap();
        let f = Routing::Feed(Feed::Lab);
        assert_eq!(f.feed_for("ORU", "R01", &m), Some(Feed::Lab));
        assert_eq!(f.feed_for("ADT", "A28", &m), None);
        // The documents feed takes an ORU only when it carries a CDA (normalize's table).
        let docs = Routing::Feed(Feed::Documents);
        assert_eq!(docs.feed_for("ORU", "R01", &m), None);
        assert_eq!(docs.feed_for("MDM", "T02", &m), Some(Feed::Documents));
        let cda = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|1|P|2.5\rOBX|1|ED|11490-0^LDL^LN||^text^XML^Base64^PGEvPg==||||||F\r".to_vec();
        let with_cda = Message::parse(&cda, &opts).unwrap();
        assert_eq!(
            docs.feed_for("ORU", "R01", &with_cda),
            Some(Feed::Documents)
        );
        // Identity: every ADT event normalize maps or skips (A03 is counted, not refused).
        let id = Routing::Feed(Feed::Identity);
        assert_eq!(id.feed_for("ADT", "A01", &m), Some(Feed::Identity));
        assert_eq!(id.feed_for("ADT", "A03", &m), Some(Feed::Identity));
        assert_eq!(id.feed_for("ORU", "R01", &m), None);
        let args = MllpArgs {
            listen: String::new(),
            feed: None,
            route: vec!["ADT=identity".into(), "RDS^O13=pharmacy".into()],
            max_frame: 1,
            read_timeout_ms: 1,
            frame_timeout_ms: 1,
            idle_timeout_ms: 1,
            max_connections: 1,
            max_connections_per_peer: 1,
            ack_timeout_ms: 1,
            dedupe_cache: 1,
            tls_cert: None,
            tls_key: None,
            metrics_addr: DEFAULT_METRICS_ADDR.into(),
        };
        let t = Routing::from_args(&args).unwrap();
        assert_eq!(t.feed_for("ADT", "A31", &m), Some(Feed::Identity));
        assert_eq!(t.feed_for("RDS", "O13", &m), Some(Feed::Pharmacy));
        assert_eq!(t.feed_for("RDS", "O11", &m), None);
    }

    #[test]
    fn tls_needs_both_cert_and_key() {
        assert!(
            tls_acceptor(None, None).unwrap().is_none(),
            "neither: plain TCP"
        );
        let only_cert = tls_acceptor(Some(Path::new("/x/cert.pem")), None)
            .err()
            .expect("cert without key is refused")
            .to_string();
        assert!(only_cert.contains("--tls-cert") && only_cert.contains("needs --tls-key"));
        let only_key = tls_acceptor(None, Some(Path::new("/x/key.pem")))
            .err()
            .expect("key without cert is refused")
            .to_string();
        assert!(only_key.contains("--tls-key") && only_key.contains("needs --tls-cert"));
    }

    #[test]
    fn tls_file_errors_name_the_file_and_not_its_content() {
        let dir = std::env::temp_dir().join(format!("dmpflow-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = tls_acceptor(Some(&missing), Some(&missing)).err().unwrap();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        // A line that looks like a broken PEM header must not be echoed back.
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "-----BEGIN SECRET-SAUCE\nc2VjcmV0\n").unwrap();
        let e = tls_acceptor(Some(&bad), Some(&bad))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bad.pem"), "{e}");
        assert!(!e.contains("SAUCE") && !e.contains("c2VjcmV0"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_frame_has_a_deadline_however_its_bytes_trickle_in() {
        let lim = ConnLimits {
            max_frame: 1,
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(60),
        };
        let t0 = Instant::now();
        assert_eq!(read_wait(&lim, None, t0), Some(Duration::from_secs(600)));
        assert_eq!(read_wait(&lim, Some(t0), t0), Some(Duration::from_secs(30)));
        // 45 s into the frame (a byte every 29 s kept each read alive): 15 s left, not 30.
        let at45 = t0 + Duration::from_secs(45);
        assert_eq!(
            read_wait(&lim, Some(t0), at45),
            Some(Duration::from_secs(15))
        );
        // At or past the deadline: no more waiting, whatever arrived last.
        assert_eq!(
            read_wait(&lim, Some(t0), t0 + Duration::from_secs(60)),
            None
        );
        assert_eq!(
            read_wait(&lim, Some(t0), t0 + Duration::from_secs(61)),
            None
        );
    }

    #[test]
    fn peer_slots_cap_each_address_and_free_on_drop() {
        let slots = PeerSlots::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let p1 = slots.try_acquire(a).unwrap();
        let _p2 = slots.try_acquire(mapped).expect("second of a");
        assert!(slots.try_acquire(a).is_none(), "a is at its cap");
        assert!(slots.try_acquire(mapped).is_none(), "v4-mapped counts as a");
        let _q = slots.try_acquire(b).expect("another peer is not affected");
        drop(p1);
        assert!(slots.try_acquire(a).is_some(), "a slot freed on close");
        drop(_q);
        assert!(
            !slots.open.lock().unwrap().contains_key(&b),
            "idle peers forgotten"
        );
    }

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    #[test]
    fn recent_cache_is_bounded() {
        let mut r = Recent::new(2);
        r.insert(fp(1));
        r.insert(fp(2));
        r.insert(fp(3));
        assert!(!r.contains(fp(1)) && r.contains(fp(2)) && r.contains(fp(3)));
    }

    #[test]
    fn resend_detection_keys_on_the_whole_digest() {
        // Two fingerprints equal in their first 64 bits (what a 64-bit hash would have
        // kept) but different after: the second is not taken for a resend of the first.
        let mut a = [7u8; 32];
        let mut b = [7u8; 32];
        a[31] = 1;
        b[31] = 2;
        let mut r = Recent::new(10);
        r.insert(Fingerprint(a));
        assert!(r.contains(Fingerprint(a)));
        assert!(
            !r.contains(Fingerprint(b)),
            "equal 64-bit prefix is not a match"
        );

        // Same sender and MSH-10, different content: different fingerprints; the exact
        // same bytes again: the same one (a true resend).
        let m1 = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|ID-1|P|2.5\rPID|1||A\r";
        let m2 = b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|ID-1|P|2.5\rPID|1||B\r";
        let mut r = Recent::new(10);
        r.insert(Fingerprint::of(m1));
        assert!(r.contains(Fingerprint::of(m1)));
        assert!(!r.contains(Fingerprint::of(m2)));
        assert_eq!(
            Fingerprint::of(m1).0.len(),
            32,
            "the full SHA-256, not a truncation"
        );
    }
}
