//! One connection, from accept to close: the per-peer connection cap, the open-connections
//! gauge, the optional TLS handshake, then the serve loop that reads one MLLP frame at a
//! time within the idle, read and whole-frame timeouts and answers it before reading the
//! next (so a connection never holds more than one frame, nor more than one message
//! waiting on Kafka).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmpflow_pipeline::metrics::metrics;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::bytes::BytesMut;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Gateway, Limits, tls};
use crate::{MllpDecoder, MllpError, encode_frame};

/// Counts one open connection from accept to close: the gauge goes down on every path
/// out of a connection task (clean close, error, timeout, shutdown, a panic or the task
/// dropped at exit) because it is the guard's drop that does it.
pub(super) struct OpenConnection;

impl OpenConnection {
    pub(super) fn new() -> OpenConnection {
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
/// `max_connections` (a reconnect storm or a hostile peer would lock out every sender).
pub(super) struct PeerSlots {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection of a peer, counted until dropped (every close path, like
/// [`OpenConnection`]).
pub(super) struct PeerPermit {
    slots: Arc<PeerSlots>,
    ip: IpAddr,
}

impl PeerSlots {
    pub(super) fn new(cap: usize) -> Arc<PeerSlots> {
        Arc::new(PeerSlots {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A permit for one more connection of `ip`, or None when it already holds `cap`.
    /// IPv4-mapped IPv6 addresses count as their IPv4 address (a dual-stack listener
    /// must not give one host two budgets).
    pub(super) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PeerPermit> {
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

/// Serves one accepted connection: over TLS once its handshake completes when the gateway
/// has an acceptor, else plain TCP.
pub(super) async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    gw: Arc<Gateway>,
    shutdown: CancellationToken,
) {
    debug!(%peer, "connection accepted");
    // ACKs are small and each waits for the next message: do not delay them.
    let _ = stream.set_nodelay(true);
    match &gw.tls {
        None => serve(stream, peer, &gw, &shutdown).await,
        Some(acceptor) => {
            let timeout = gw.limits.read_timeout;
            if let Some(s) = tls::handshake(acceptor, stream, peer, timeout, &shutdown).await {
                serve(s, peer, &gw, &shutdown).await;
            }
        }
    }
}

/// How long the next read may wait: the idle timeout between frames; inside a frame the
/// read timeout, cut short by the frame's deadline. `None` when the deadline has passed.
fn read_wait(lim: &Limits, frame_started: Option<Instant>, now: Instant) -> Option<Duration> {
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
    gw: &Gateway,
    shutdown: &CancellationToken,
) {
    serve_messages(&mut stream, peer, gw, shutdown).await;
    // Bounded: a peer that stopped reading must not hold the slot (or the shutdown).
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}

/// One message at a time, each answered before the next is read. On shutdown, frames
/// already read are still answered, then the connection closes.
async fn serve_messages<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
    gw: &Gateway,
    shutdown: &CancellationToken,
) {
    let lim = &gw.limits;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_has_a_deadline_however_its_bytes_trickle_in() {
        let lim = Limits {
            max_frame: 1,
            read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(60),
            max_connections: 1,
            max_connections_per_peer: 1,
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
}
