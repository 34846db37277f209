//! ingest: the edges that bring HL7 v2 feeds in. For now the pure, IO-free framing:
//! [`split`] cuts a file or a captured stream into messages (MLLP-framed or not), and
//! [`mllp`] is the push-style MLLP frame decoder/encoder the listener will drive through
//! a tokio-util `Framed`; [`ack`] reads the sender's header and builds the HL7 ACKs the
//! gateway answers with. None of them ever puts message content into an error.

pub mod ack;
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
