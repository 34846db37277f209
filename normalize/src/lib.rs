//! normalize: turns what senders send (HL7 v2 messages, finished CDA documents) into
//! CI-SIS CDA R2 documents with their DMP metadata, and identity messages into patient
//! updates. Pure: bytes in, values out; no Kafka, no database, no clock.

pub mod cda;
pub mod hl7;
pub mod mapping;
pub mod model;

pub use mapping::{Config, normalize};
