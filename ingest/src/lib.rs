//! ingest: the edges that bring HL7 v2 feeds in. The pure, IO-free part: [`split`] cuts
//! a file or a captured stream into messages (MLLP-framed or not), [`mllp`] is the
//! push-style MLLP frame decoder/encoder, and [`ack`] reads the sender's header and builds
//! the HL7 ACKs; none of them ever puts message content into an error. On top of them,
//! `gateway` is the MLLP gateway itself (listener, TLS, limits, resend detection,
//! routing; the default `gateway` feature): `dmpflow mllp` is only its command line, and
//! tests run it in-process with `gateway::run`. Its acknowledged Kafka write is [`feed`]'s
//! `FeedProducer`, which `dmpflow serve` shares for ITI-65.

pub mod ack;
#[cfg(feature = "gateway")]
pub mod feed;
#[cfg(feature = "gateway")]
pub mod gateway;
pub mod mllp;

pub use ack::{
    AckCharset, AckCode, AckError, Inbound, RawHeader, build_ack, encode_charset, hl7_timestamp,
    read_header,
};
/// The splitter and the MLLP bytes live in `dmpflow-hl7`; re-exported so
/// `dmpflow_ingest::split_messages`, `dmpflow_ingest::SB` ... keep working.
pub use dmpflow_hl7::split;
pub use dmpflow_hl7::split::{FramingError, Message, Messages, canonical_segments, split_messages};
pub use dmpflow_hl7::{CR, EB, SB};
pub use mllp::{MllpDecoder, MllpError, encode_frame};
