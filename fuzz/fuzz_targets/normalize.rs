//! Fuzz target: the whole normalisation of one message, `normalize::normalize(feed, bytes,
//! &Config::default())`. Input: one byte choosing the feed (index into `Feed::ALL`: lab,
//! imaging, pharmacy, cancer, identity, documents...; modulo its length), then the message. Checks, besides "no panic": every CDA produced or
//! passed on is well-formed XML 1.0 with a v3 `ClinicalDocument` root (re-read by a
//! conforming parser); the result is deterministic; every item survives the wire layout.
#![no_main]

use dmpflow_fuzz::assert_cda;
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::{Feed, Normalized, wire};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, msg)) = data.split_first() else {
        return;
    };
    let feed = Feed::ALL[selector as usize % Feed::ALL.len()];
    let cfg = Config::default();
    let first = normalize(feed, msg, &cfg);
    // Deterministic: uniqueIds and setIds are hashes of message data, never clock or random.
    assert_eq!(
        first,
        normalize(feed, msg, &cfg),
        "normalize is not deterministic"
    );
    let Ok(items) = first else {
        return;
    };
    assert!(!items.is_empty(), "Ok with no item");
    for (i, item) in items.iter().enumerate() {
        if let Normalized::Document(d) = item {
            let cda = d.cda.as_xml().expect("normalize writes XML");
            assert_cda(cda, &format!("{feed} item {i}"));
        }
        assert_eq!(
            wire::decode(&wire::encode(item)).as_ref(),
            Ok(item),
            "wire round trip of item {i}"
        );
    }
});
