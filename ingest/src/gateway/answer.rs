//! Answering one message: parse, route, detect a resend, write to Kafka, build the ACK.
//! Each refusal says which of AR (these bytes will never be taken) or AE (resend later)
//! the sender gets, with the stable reason code its interface engine and the metrics read.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use dmpflow_hl7::Message;
use dmpflow_hl7::keys::message_key;
use dmpflow_schemas::Feed;
use dmpflow_schemas::reasons::Reason;
use tracing::{debug, warn};

use super::Gateway;
use super::dedupe::Fingerprint;
use crate::feed::FeedWriteError as WriteError;
use crate::{AckCode, AckError, RawHeader, build_ack, encode_charset, hl7_timestamp, read_header};

/// ERR-5 of an AE: not a `schemas` Reason (the message is fine, the broker is not), but as
/// stable, since senders and the metrics' reason label both read it.
const KAFKA_UNAVAILABLE: &str = "kafka.unavailable";

/// How a message was answered (for the log and counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
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
pub(super) struct Answered {
    pub(super) ack: Vec<u8>,
    outcome: Outcome,
    /// The feed the message went (or would go) to, when known without more parsing.
    feed: Option<Feed>,
    /// The stable reason code written in ERR-5 (AR and AE only).
    reason: Option<&'static str>,
}

impl Answered {
    pub(super) fn label(&self) -> dmpflow_pipeline::metrics::AckLabel {
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

    /// AR for a frame over `max_frame`, from its first line (its MSH) alone.
    pub(super) fn refuse_oversized(&self, head: &[u8], max: usize, peer: SocketAddr) -> Answered {
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
            feed: self.routing.fixed_feed(),
            reason: Some(reason),
        }
    }

    pub(super) async fn handle(&self, raw: Vec<u8>, peer: SocketAddr) -> Answered {
        let hd = read_header(&raw);
        let id = hd.inbound.control_id.clone();
        // A single-feed gateway knows the feed of every message, even one it refuses; a
        // routing table only once MSH-9 is read and matched.
        let fixed_feed = self.routing.fixed_feed();
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
        match self.feed.write(&topic, &key, &raw).await {
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
}
