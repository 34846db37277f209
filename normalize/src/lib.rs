//! normalize: turns what senders send (HL7 v2 messages, finished CDA documents) into
//! CI-SIS CDA R2 documents with their DMP metadata, and identity messages into patient
//! updates. Pure: bytes in, values out; no Kafka, no database, no clock.

pub mod cda;
/// The HL7 v2 reader, now its own crate (`dmpflow-hl7`); kept under this name so
/// `dmpflow_normalize::hl7::...` paths (mappings, tests, fuzz targets) stay valid.
pub use dmpflow_hl7 as hl7;
pub mod mapping;
pub mod model;

pub use mapping::{Config, normalize};
