//! dmpflow-hl7: everything dmpflow knows about HL7 v2 (ER7) bytes, in one pure crate (no
//! IO, no Kafka, no clock), so the gateway, the loaders and normalize read messages alike.
//!
//! - [`Message`] (`message`): the zero-copy message reader normalize maps from, its
//!   [`Segment`]s and [`Value`]s (`segment`: fields down to subcomponents), with its
//!   [`Charset`]s (`charset`), escape sequences (`escape`) and the XML 1.0 text check
//!   (`xmltext`);
//! - [`msh`]: [`Msh`], the tolerant, bounded reader of the header of a possibly broken
//!   message (the gateway's ACK, keys of unparseable messages, feed guessing, MSH-18 for
//!   the parser);
//! - [`keys`]: the Kafka key of a message (PID-3 INS, else MSH-3^MSH-4), parsed or not;
//! - [`split`]: cutting a file or a captured stream into messages (MLLP-framed or not).
//!
//! normalize re-exports this crate as `dmpflow_normalize::hl7` and ingest re-exports
//! [`split`] and the MLLP bytes, so older paths keep working.

mod charset;
mod escape;
pub mod keys;
mod message;
pub mod msh;
mod segment;
pub mod split;
pub mod xmltext;

pub use charset::Charset;
pub use escape::{decode, encode};
pub use message::{Delimiters, Message, ReadOptions};
pub use msh::Msh;
pub use segment::{Segment, Value};
pub use split::{FramingError, Messages, canonical_segments, split_messages};

/// MLLP start block (VT).
pub const SB: u8 = 0x0B;
/// MLLP end block (FS), followed by [`CR`].
pub const EB: u8 = 0x1C;
/// Carriage return: the HL7 segment terminator and the last byte of an MLLP frame.
pub const CR: u8 = 0x0D;
