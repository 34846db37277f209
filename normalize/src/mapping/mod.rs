//! HL7 v2 message → typed records and DMP metadata: the feed mappings behind
//! [`normalize`], the crate's single entry point.
//!
//! | feed | messages | result |
//! |---|---|---|
//! | lab | ORU^R01 structured (NM/SN/ST/CE/CWE/TX/FT OBX) | generated CR-BIO + `Entry::LabObservation` |
//! | imaging | ORU^R01 with TX/FT report lines | generated CR-IMG |
//! | pharmacy | RDS^O13 (ORC + RXD...) | generated eDISP-MED + `Entry::Dispensation` |
//! | every document feed | ORU^R01 / MDM^T02,T10,T04 with a CDA XML ED OBX (base64) | the received CDA with its header metadata |
//! | documents | the same, any JDV_J07 type (`doc_types`) | the received CDA |
//! | identity | ADT^A01, A04, A05, A08, A14, A28, A31, A40, A47 (PAM-FR PID, MRG, ZFA); movements and cancellations skipped (`hl7.event.skipped`, table in `identity`) | `PatientUpdate` |
//!
//! Everything here is deterministic: the same message always gives the same output
//! (uniqueId and setId are hashes of message data, never random or clock-based).

mod cda_reader;
mod common;
mod doc_id;
mod doc_types;
mod embedded;
pub mod feed_guess;
mod identity;
mod imaging;
mod lab;
mod limits;
mod pharmacy;
mod pid;
pub mod xds_types;

use dmpflow_schemas::reasons::{Reason, Reject};
use dmpflow_schemas::{Feed, Normalized};

use crate::hl7::{Charset, Message, ReadOptions};

/// The received-CDA reader: its header, and the XML policy it applies (no DTD, only the five
/// XML entities and legal character references, `MAX_DEPTH`, an `entry` bound, a conforming
/// re-read). Public so that the other readers of stored CDA (consult's renderer) apply the
/// same policy rather than a second one.
pub use cda_reader::{Header, Ii, MAX_DEPTH, read_header, resolve_ref};
pub use common::{derived_oid, lab_chapter};
pub use doc_types::domain_of;
pub use embedded::{Attachments, ReceivedCda, attachments, read_received_cda};
pub use identity::{AdtAction, adt_action};
pub use pharmacy::{DrugCodeKind, check_drug_code};

/// Normalisation settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Charset assumed when MSH-18 is empty: `UNICODE UTF-8`, `8859/1` or `8859/15`.
    pub default_charset: String,
    pub max_message_bytes: usize,
    pub max_segment_bytes: usize,
    /// Must allow a base64 CDA in OBX-5 (several MB).
    pub max_field_bytes: usize,
    /// Accept ORC-1 `SC` (status changed) on document messages and take the lifecycle from
    /// OBX-11 alone. The official ANS ORU examples use `SC`; the PFI volet table only lists
    /// NW/RO/CA.
    pub accept_orc_status_changed: bool,
    /// Largest CDA normalize builds or passes on, in bytes (`[limits] max_cda_bytes`).
    /// Default 16 MiB, the MLLP gateway's default maximum frame: a document larger than
    /// any message that can arrive is an amplification, not a report. Checked on an
    /// estimate before a document is built, on the result after, and on a received CDA
    /// once its base64 is decoded (`cda.too_large`).
    pub max_cda_bytes: usize,
    /// Most CDA entries in one document (`[limits] max_entries`): results, comments and
    /// dispensed items of a generated document, `entry` elements of a received one.
    /// Default 5,000: a large lab report (full panel with antibiograms) has a few hundred
    /// results; 5,000 is ten times that, and at ~1.2 KB of XML per result keeps the
    /// structured part of a document well under `max_cda_bytes` (`cda.too_large`).
    pub max_entries: usize,
}

impl Default for Config {
    fn default() -> Self {
        let r = ReadOptions::default();
        Config {
            default_charset: Charset::Utf8.as_msh18().to_string(),
            max_message_bytes: r.max_message_bytes,
            max_segment_bytes: r.max_segment_bytes,
            max_field_bytes: r.max_field_bytes,
            accept_orc_status_changed: true,
            max_cda_bytes: 16 << 20,
            max_entries: 5_000,
        }
    }
}

impl Config {
    /// The reader options, or `hl7.charset.unsupported` if the default charset is unknown.
    pub fn read_options(&self) -> Result<ReadOptions, Reject> {
        let default_charset = Charset::from_msh18(&self.default_charset).ok_or_else(|| {
            Reject::new(
                Reason::Hl7CharsetUnsupported,
                "configured default charset is not UNICODE UTF-8, 8859/1 or 8859/15",
            )
        })?;
        Ok(ReadOptions {
            default_charset,
            max_message_bytes: self.max_message_bytes,
            max_segment_bytes: self.max_segment_bytes,
            max_field_bytes: self.max_field_bytes,
        })
    }
}

/// The typed records behind the generated documents, for callers (and tests) that want the
/// record rather than the CDA: same reading and the same rejects as [`normalize`].
pub mod records {
    use super::*;
    use crate::model::{Dispensation, ImagingReport, LabReport};

    fn read<T>(
        feed: Feed,
        raw: &[u8],
        cfg: &Config,
        f: impl FnOnce(&common::Ctx<'_>, &Message<'_>) -> Result<T, Reject>,
    ) -> Result<T, Reject> {
        let opts = cfg.read_options()?;
        let msg = Message::parse(raw, &opts)?;
        let ctx = common::Ctx::new(feed, &msg, cfg)?;
        f(&ctx, &msg)
    }

    /// ORU^R01 structured results → `LabReport`.
    pub fn lab(raw: &[u8], cfg: &Config) -> Result<LabReport, Reject> {
        read(Feed::Lab, raw, cfg, lab::report)
    }

    /// ORU^R01 text report → `ImagingReport`.
    pub fn imaging(raw: &[u8], cfg: &Config) -> Result<ImagingReport, Reject> {
        read(Feed::Imaging, raw, cfg, imaging::report)
    }

    /// RDS^O13 → `Dispensation`.
    pub fn dispensation(raw: &[u8], cfg: &Config) -> Result<Dispensation, Reject> {
        read(Feed::Pharmacy, raw, cfg, pharmacy::report)
    }
}

/// Normalises one raw message of `feed` into documents or patient updates.
///
/// `SourceRef.topic/partition/offset` are left `None`: the runtime fills them.
pub fn normalize(feed: Feed, raw: &[u8], cfg: &Config) -> Result<Vec<Normalized>, Reject> {
    let opts = cfg.read_options()?;
    let msg = Message::parse(raw, &opts)?;
    let ctx = common::Ctx::new(feed, &msg, cfg)?;
    let kind = (ctx.msg_type.as_str(), ctx.event.as_str());
    let unsupported = || {
        Reject::new(
            Reason::Hl7MessageTypeUnsupported,
            format!(
                "MSH-9 {}^{} is not mapped for the {feed} feed",
                ctx.msg_type, ctx.event
            ),
        )
    };
    match feed {
        // The identity module's table decides: update, merge, identifier change, or a skip.
        Feed::Identity => match (ctx.msg_type.as_str(), identity::adt_action(&ctx.event)) {
            ("ADT", Some(action)) => identity::map(&ctx, &msg, action),
            _ => Err(unsupported()),
        },
        _ => match document_mapping(feed, kind.0, kind.1, embedded::has_document(&msg)) {
            Some(DocMapping::Embedded) => embedded::map(&ctx, &msg),
            Some(DocMapping::Lab) => lab::map(&ctx, &msg),
            Some(DocMapping::Imaging) => imaging::map(&ctx, &msg),
            Some(DocMapping::Pharmacy) => pharmacy::map(&ctx, &msg),
            None => Err(unsupported()),
        },
    }
}

/// The mapping a message of a document feed goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocMapping {
    /// Finished CDA (ORU^R01 with a CDA XML ED OBX, MDM^T02/T10/T04): every document feed.
    Embedded,
    Lab,
    Imaging,
    Pharmacy,
}

/// The one table of document feeds behind [`normalize`] and [`accepts`].
fn document_mapping(
    feed: Feed,
    msg_type: &str,
    event: &str,
    has_document: bool,
) -> Option<DocMapping> {
    match (msg_type, event) {
        ("MDM", "T02" | "T10" | "T04") => Some(DocMapping::Embedded),
        ("ORU", "R01") if has_document => Some(DocMapping::Embedded),
        ("ORU", "R01") if feed == Feed::Lab => Some(DocMapping::Lab),
        ("ORU", "R01") if feed == Feed::Imaging => Some(DocMapping::Imaging),
        ("RDS", "O13") if feed == Feed::Pharmacy => Some(DocMapping::Pharmacy),
        _ => None,
    }
}

/// Whether [`normalize`] maps a message of type `msg_type^event` on `feed` (or, for an
/// identity event with nothing for the DMP, skips it): what the MLLP gateway accepts,
/// by the same tables, so that the two never disagree. `msg` tells whether an ORU carries
/// a finished document (the only ORU the `documents` and `cancer` feeds take).
/// Content (the CDA, its type) is not judged here: normalize refuses it later.
pub fn accepts(feed: Feed, msg_type: &str, event: &str, msg: &Message<'_>) -> bool {
    match feed {
        Feed::Identity => msg_type == "ADT" && identity::adt_action(event).is_some(),
        _ => document_mapping(feed, msg_type, event, embedded::has_document(msg)).is_some(),
    }
}
