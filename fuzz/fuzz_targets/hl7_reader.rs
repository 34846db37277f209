//! Fuzz target: the HL7 v2 reader (`normalize::hl7::Message::parse`, default limits).
//! Input: raw message bytes. Checks, besides "no panic": every segment is a slice of the
//! message text, in order and without line breaks, with a valid name; every accessor at
//! every level answers; escape encoding round-trips through decoding.
#![no_main]

use dmpflow_fuzz::is_within;
use dmpflow_normalize::hl7::{Message, ReadOptions, decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = ReadOptions::default();
    let Ok(msg) = Message::parse(data, &opts) else {
        return;
    };
    let text = msg.text();
    let d = *msg.delimiters();
    // A value is a slice of its segment, or empty (an absent element).
    let inside = |outer: &str, v: &str| v.is_empty() || is_within(outer, v);
    assert!(
        text.len() <= data.len() * 3,
        "decoded text grew past 3x the input"
    );
    let mut prev_end = 0usize;
    for (i, seg) in msg.all().enumerate() {
        assert_eq!(seg.index(), i);
        let raw = seg.raw();
        assert!(
            is_within(text, raw),
            "segment {i} is not a slice of the message"
        );
        let start = raw.as_ptr() as usize - text.as_ptr() as usize;
        assert!(start >= prev_end, "segment {i} overlaps the previous one");
        prev_end = start + raw.len();
        assert!(
            !raw.contains(['\r', '\n']),
            "segment {i} holds a line break"
        );
        let name = seg.name();
        assert!(
            name.len() == 3
                && name
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
            "segment {i} has an invalid name"
        );
        for field in seg.fields() {
            assert!(inside(raw, field.raw()), "value outside its segment");
            let _ = field.decoded();
            for rep in field.repetitions() {
                assert!(inside(raw, rep.raw()), "value outside its segment");
                for comp in rep.components() {
                    assert!(inside(raw, comp.raw()), "value outside its segment");
                    for sub in comp.subs() {
                        assert!(inside(raw, sub.raw()), "value outside its segment");
                        let decoded = sub.decoded();
                        // What a writer escapes, a reader gets back unchanged.
                        let again = encode(&decoded, &d);
                        assert_eq!(decode(&again, &d), decoded, "escape round trip");
                    }
                }
            }
        }
        // Indexed access past the end is empty, never a panic.
        let n = seg.field_count();
        assert!(seg.field(n + 1).is_empty());
        let _ = seg.field(n).repetition(3).component(7).sub(2).decoded();
    }
    assert!(msg.segment_at(msg.segment_count()).is_none());
    assert_eq!(msg.segment_at(0).map(|s| s.name()), Some("MSH"));
});
