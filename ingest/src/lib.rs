//! ingest: the edges that bring HL7 v2 feeds in. For now the pure, IO-free framing:
//! [`split`] cuts a file or a captured stream into messages (MLLP-framed or not), and
//! [`mllp`] is the push-style MLLP frame decoder/encoder the listener will drive through
//! a tokio-util `Framed`; [`ack`] builds the HL7 ACKs the gateway answers with. None of
//! them ever puts message content into an error.

pub mod ack;
pub mod mllp;
pub mod split;

pub use ack::{AckCharset, AckCode, AckError, Inbound, build_ack, encode_charset, hl7_timestamp};
pub use mllp::{MllpDecoder, MllpError, encode_frame};
pub use split::{FramingError, Message, Messages, canonical_segments, split_messages};

/// MLLP start block (VT).
pub const SB: u8 = 0x0B;
/// MLLP end block (FS), followed by [`CR`].
pub const EB: u8 = 0x1C;
/// Carriage return: the HL7 segment terminator and the last byte of an MLLP frame.
pub const CR: u8 = 0x0D;
