//! The MLLP gateway: receives HL7 v2 messages over TCP and answers each with an HL7 ACK
//! whose meaning is exact (design guarantee 5):
//!
//! - **AA** only after Kafka acknowledged the write (acks=all, idempotent producer), so a
//!   sender that got AA may forget the message;
//! - **AR** when the message itself is refused (unparseable MSH, unknown charset, no
//!   MSH-10, message type not routed, a frame over `max_frame`: `hl7.message.too_large`,
//!   answered from the frame's MSH while the rest of it is dropped unread, a record Kafka
//!   refuses for its size: `kafka.record.too_large`): resending the same bytes will not
//!   help. Only a frame without a readable MSH, garbage or broken framing closes the
//!   connection without an answer;
//! - **AE** when Kafka did not acknowledge within the ACK timeout: resend later.
//!
//! The ACK echoes MSH-10 in MSA-2 and is written with the sender's separators and MSH-18
//! charset ([`crate::read_header`], the hl7 crate's tolerant MSH reader). The Kafka key
//! keeps one patient's messages in order ([`dmpflow_hl7::keys::message_key`]: PID-3 INS,
//! else MSH-3^MSH-4). A resend of a message already acknowledged (same sender, MSH-10 and
//! bytes) is answered AA from a bounded recent-ids cache without a second write
//! (`dedupe`); past the cache (or after a restart) the duplicate reaches the feed topic
//! and normalize's deterministic uniqueIds plus the idempotent store absorb it.
//!
//! Which feed takes a message is [`Routing`]'s: a fixed feed or a `--route` table, and in
//! both cases the feed must be one normalize maps that message on
//! (`dmpflow_normalize::mapping::accepts`, asked, not copied), so the gateway never says
//! AA for a message normalize would dead-letter as `hl7.message_type.unsupported`.
//!
//! [`Gateway::new`] checks the frame limit against the producer's `message.max.bytes` and
//! each feed topic's `max.message.bytes` (`kafka::limits::check_record_limits`): a frame the
//! gateway accepts always fits a record, or the gateway does not start.
//!
//! Memory is bounded: at most `max_connections` connections (`max_connections_per_peer`
//! of them from one address), each holding at most one frame of `max_frame` bytes and
//! handling one message at a time (the listener stops reading a connection while its
//! message waits on Kafka). Time is bounded too: a frame must be complete within
//! `frame_timeout` of its first byte, however slowly its bytes come (`conn`). Logs name
//! the peer, MSH-10 and topic coordinates only, never message content.
//!
//! TLS is optional ([`tls_acceptor`], PEM files): every accepted connection then
//! completes a TLS handshake (rustls, ring provider) within the read timeout before MLLP
//! starts; a failed or slow handshake closes only that connection. Plain and TLS
//! connections share one generic serve loop, so limits, timeouts and shutdown are the same.
//!
//! Metrics (declared in `dmpflow_pipeline::metrics`): each connection is counted once at
//! accept, each ACK once it is written (by code, feed and reason code, with its
//! frame-to-ACK latency), each broken frame once when it closes its connection; the
//! open-connections gauge follows a drop guard, so no close path skips it.
//!
//! [`run`] serves a listener the caller bound until a [`CancellationToken`] fires, like
//! mini-redis's `server::run`: `dmpflow mllp` calls it with the signal token, tests call it
//! in-process on `127.0.0.1:0`.

mod answer;
mod conn;
mod dedupe;
mod routing;
mod tls;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use dmpflow_hl7::ReadOptions;
use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::metrics::{Health, metrics};
use dmpflow_pipeline::runtime;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use routing::Routing;

use crate::feed::FeedProducer;
pub use tls::tls_acceptor;

/// What one connection may cost: memory (one frame), time, and how many connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest message accepted, in bytes; a larger frame is answered AR from its MSH.
    pub max_frame: usize,
    /// Longest silence inside a frame; with TLS, also the longest a handshake may take.
    pub read_timeout: Duration,
    /// Longest a frame may take from its first byte to its end block, however its bytes
    /// trickle in (a byte per read timeout must not hold a connection forever).
    pub frame_timeout: Duration,
    /// A connection with no traffic between messages for this long is closed.
    pub idle_timeout: Duration,
    /// Connections served at once; further ones are closed at accept.
    pub max_connections: usize,
    /// Connections one peer address may hold at once, so one host cannot take every slot.
    pub max_connections_per_peer: usize,
}

/// What the caller decides about a gateway (`dmpflow mllp` from its flags, tests directly).
pub struct Config {
    pub routing: Routing,
    pub limits: Limits,
    /// How long a message may wait for Kafka's acknowledgement before the sender gets AE.
    pub ack_timeout: Duration,
    /// Recently acknowledged messages kept to answer a resend without a second write;
    /// 0 disables.
    pub dedupe_cache: usize,
    /// Serve MLLP over TLS with this acceptor ([`tls_acceptor`]); None: plain TCP.
    pub tls: Option<TlsAcceptor>,
    /// Ready while [`run`] accepts connections, not ready from shutdown on (the caller
    /// serves it on /health/ready).
    pub health: Health,
}

/// The gateway's configuration and shared state: what answering one message needs,
/// shared by every connection.
pub struct Gateway {
    routing: Routing,
    settings: Settings,
    /// The acknowledged write to the feed topics (record limits checked at start).
    feed: FeedProducer,
    read_opts: ReadOptions,
    ack_timeout: Duration,
    recent: Mutex<dedupe::Recent>,
    ack_seq: AtomicU64,
    /// Makes the ACKs' MSH-10 unique across restarts (the start time, in hex).
    ack_prefix: String,
    limits: Limits,
    tls: Option<TlsAcceptor>,
    health: Health,
}

impl Gateway {
    /// The gateway of `config` on `settings`' Kafka: checks that every frame up to
    /// `max_frame` fits the producer's and each feed topic's record limit (retrying while
    /// the broker is unavailable, until `shutdown`), then creates the producer.
    pub async fn new(
        settings: &Settings,
        config: Config,
        shutdown: &CancellationToken,
    ) -> Result<Gateway> {
        // A frame larger than a record can be would be answered AE (resend) forever:
        // refuse to start on an inconsistent set, raise the producer's own limit when the
        // operator left it unset.
        let topics = config.routing.topics(settings);
        let feed = FeedProducer::connect(
            settings,
            &topics,
            config.limits.max_frame,
            "--max-frame",
            config.ack_timeout,
            shutdown,
        )
        .await?;
        Ok(Gateway {
            feed,
            routing: config.routing,
            settings: settings.clone(),
            read_opts: ReadOptions {
                max_message_bytes: config.limits.max_frame,
                ..ReadOptions::default()
            },
            ack_timeout: config.ack_timeout,
            recent: Mutex::new(dedupe::Recent::new(config.dedupe_cache)),
            ack_seq: AtomicU64::new(0),
            ack_prefix: format!("{:x}", runtime::now_ms()),
            limits: config.limits,
            tls: config.tls,
            health: config.health,
        })
    }

    /// The topics this gateway may write to, each once.
    pub fn topics(&self) -> Vec<String> {
        self.routing.topics(&self.settings)
    }
}

/// Serves `listener` until `shutdown` is cancelled, then stops accepting, answers the
/// messages already read (bounded by the settings' shutdown timeout plus the ACK timeout)
/// and flushes the producer. Connections over the limits are closed at accept.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
) -> Result<()> {
    let gw = gateway;
    gw.health.set_ready(true);
    let slots = Arc::new(Semaphore::new(gw.limits.max_connections));
    let peers = conn::PeerSlots::new(gw.limits.max_connections_per_peer);
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
            warn!(%peer, limit = gw.limits.max_connections_per_peer, "connection limit of this peer reached; closing");
            drop(stream);
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            metrics().mllp_connection("refused_limit");
            warn!(%peer, limit = gw.limits.max_connections, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        metrics().mllp_connection("accepted");
        // Created here, moved into the task: counted open before the task first runs.
        let open = conn::OpenConnection::new();
        let (gw, sd) = (gw.clone(), shutdown.clone());
        tracker.spawn(async move {
            let _open = open;
            conn::connection(stream, peer, gw, sd).await;
            drop(permit);
            drop(peer_permit);
        });
    }
    gw.health.set_ready(false);
    drop(listener);
    tracker.close();
    let bound = Duration::from_millis(gw.settings.limits.shutdown_timeout_ms) + gw.ack_timeout;
    info!(
        connections = tracker.len(),
        "shutdown: answering the messages already read"
    );
    if tokio::time::timeout(bound, tracker.wait()).await.is_err() {
        warn!("connections still open after the shutdown bound; exiting");
    }
    gw.feed.flush(Duration::from_secs(5));
    Ok(())
}
