//! Fuzz target: the topic payload decoders of `schemas::wire` (JSON head + packed or XML
//! tail, plain JSON, the quarantine layout) and `schemas::cda_body::unpack` behind them. Input: the
//! payload as read from Kafka. Checks, besides "no panic":
//! - what decodes re-encodes to a payload that decodes to the same item
//!   (`decode(encode(x)) == x`, and likewise for quarantine cases);
//! - `split` agrees with `decode`, and `join` of its parts gives the same item back;
//! - `peek_meta` (route's fast path) reads the metadata `split` reads;
//! - a packed CDA that inflates matches the hash its head states.
#![no_main]

use dmpflow_schemas::{Normalized, Quarantined, wire};
use libfuzzer_sys::fuzz_target;

/// The tail `encode_quarantined` is given for `case`: the compressed bytes of a packed
/// document, as route passes the tail `split` returned.
fn quarantine_tail(case: &Quarantined) -> Vec<u8> {
    match &case.item {
        Normalized::Document(d) => d
            .cda
            .as_packed()
            .map(|p| p.bytes.clone())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let decoded = wire::decode(data);
    if let Ok(item) = &decoded {
        let again = wire::encode(item);
        assert_eq!(
            wire::decode(&again).as_ref(),
            Ok(item),
            "decode(encode(x)) != x"
        );
        if let Normalized::Document(d) = item
            && let Some(p) = d.cda.as_packed()
            && let Ok(xml) = p.unpack()
        {
            assert!(xml.len() as u64 <= 256 << 20, "inflated past the read cap");
        }
    }
    match wire::split(data) {
        Ok((head, tail)) => {
            let joined = wire::join(&head, tail);
            assert_eq!(
                wire::decode(&joined),
                decoded,
                "join(split(p)) decodes otherwise"
            );
        }
        Err(_) => assert!(decoded.is_err(), "decode accepts what split refuses"),
    }
    // Route's fast path reads, of every document `split` reads in the split layout, the
    // same metadata.
    if let Ok((Normalized::Document(d), _)) = wire::split(data)
        && data.contains(&b'\n')
    {
        assert_eq!(
            wire::peek_meta(data).as_ref(),
            Some(&d.meta),
            "peek_meta disagrees with split"
        );
    }
    if let Ok(case) = wire::decode_quarantined(data) {
        let again = wire::encode_quarantined(&case, &quarantine_tail(&case));
        assert_eq!(
            wire::decode_quarantined(&again).as_ref(),
            Ok(&case),
            "decode_quarantined(encode_quarantined(x)) != x"
        );
    }
});
