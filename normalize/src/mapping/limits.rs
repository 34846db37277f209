//! Bounds on what one message may cost (issue #16 item 7): `Config::max_cda_bytes` and
//! `Config::max_entries`, checked on an estimate made from the parsed message *before* a
//! generated document is built, and on the built document after (the estimate is not an
//! exact bound). A received CDA is checked on its base64 length before decoding and on
//! its decoded size (`embedded`).

use dmpflow_schemas::reasons::{Reason, Reject};

use super::Config;
use super::common::is_meta_obx;
use crate::hl7::Message;

/// Header, sections and the PDF copy's fixed part of a generated document.
const BASE_BYTES: usize = 16 << 10;
/// XML one entry costs besides its text: a CR-BIO result is ~1.2 KB (narrative row,
/// observation entry with its templateIds, PDF line); a comment ~1 KB.
const PER_ENTRY_BYTES: usize = 1_500;
/// Each byte of result or comment text is written about three times: narrative, entry
/// value, and the PDF copy in base64 (4/3); escaping adds a little.
const TEXT_FACTOR: usize = 3;

/// Entries and size a generated document of `msg` would have, checked against `cfg`.
///
/// Entries: results (non-metadata OBX), comments (a run of consecutive NTE is one) and
/// dispensed items (RXD). Text: the bytes of those segments.
pub fn check_generated(msg: &Message<'_>, cfg: &Config) -> Result<(), Reject> {
    let mut entries = 0usize;
    let mut text = 0usize;
    let mut last_was_nte = false;
    for seg in msg.all() {
        let name = seg.name();
        let counts = match name {
            "OBX" => !is_meta_obx(&seg),
            "NTE" => !last_was_nte,
            "RXD" => true,
            _ => false,
        };
        if counts {
            entries += 1;
        }
        if matches!(name, "OBX" | "NTE" | "RXD") {
            text += seg.raw().len();
        }
        last_was_nte = name == "NTE";
    }
    if entries > cfg.max_entries {
        return Err(too_many_entries(entries, cfg));
    }
    let estimate = BASE_BYTES
        .saturating_add(entries.saturating_mul(PER_ENTRY_BYTES))
        .saturating_add(text.saturating_mul(TEXT_FACTOR));
    if estimate > cfg.max_cda_bytes {
        return Err(Reject::new(
            Reason::CdaTooLarge,
            format!(
                "the document would be about {estimate} bytes, over the {} byte limit",
                cfg.max_cda_bytes
            ),
        ));
    }
    Ok(())
}

/// The built (or decoded) document against `max_cda_bytes`.
pub fn check_size(len: usize, cfg: &Config) -> Result<(), Reject> {
    if len > cfg.max_cda_bytes {
        return Err(Reject::new(
            Reason::CdaTooLarge,
            format!(
                "the document is {len} bytes, over the {} byte limit",
                cfg.max_cda_bytes
            ),
        ));
    }
    Ok(())
}

pub fn too_many_entries(entries: usize, cfg: &Config) -> Reject {
    Reject::new(
        Reason::CdaTooLarge,
        format!(
            "the document has {entries} entries, over the limit of {}",
            cfg.max_entries
        ),
    )
}
