//! Property tests of the framing: arbitrary bytes never panic either splitter, nothing
//! non-blank is dropped silently, and the MLLP decoder's buffer stays bounded however the
//! stream is cut into reads.

use dmpflow_ingest::split::{FramingError, split_messages};
use dmpflow_ingest::{MllpDecoder, encode_frame};
use proptest::prelude::*;
use tokio_util::bytes::BytesMut;

/// Bytes biased towards what matters to framing.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"MSH|^~\\&|A".to_vec()),
            Just(b"PID|1".to_vec()),
            Just(vec![0x0b]),
            Just(vec![0x1c]),
            Just(vec![b'\r']),
            Just(vec![b'\n']),
            Just(vec![b' ']),
            prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn split_accounts_for_every_byte(input in stream()) {
        let mut covered = vec![false; input.len()];
        for item in split_messages(&input) {
            let (o, l) = match item {
                Ok(m) => (m.offset, m.bytes.len()),
                Err(FramingError::Garbage { offset, len })
                | Err(FramingError::UnterminatedFrame { offset, len }) => (offset, len),
                Err(FramingError::EmptyFrame { offset }) => (offset, 1),
            };
            prop_assert!(o + l <= input.len());
            for c in &mut covered[o..o + l] {
                prop_assert!(!*c, "byte covered twice");
                *c = true;
            }
        }
        for (i, &c) in input.iter().enumerate() {
            let framing = matches!(c, b'\r' | b'\n' | b' ' | b'\t' | 0x0b | 0x1c);
            prop_assert!(covered[i] || framing, "byte {} dropped", i);
        }
    }

    #[test]
    fn decoder_is_bounded_and_never_panics(input in stream(), cuts in prop::collection::vec(1usize..16, 1..64)) {
        let max = 32;
        let mut d = MllpDecoder::new(max);
        let mut b = BytesMut::new();
        let mut rest = &input[..];
        let mut cuts = cuts.into_iter().cycle();
        while !rest.is_empty() {
            let n = cuts.next().unwrap().min(rest.len());
            b.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            loop {
                match d.decode(&mut b) {
                    Ok(Some(m)) => prop_assert!(m.len() <= max),
                    Ok(None) => break,
                    Err(_) => {}
                }
                // Start block + at most max content bytes + end block + trailer.
                prop_assert!(b.len() <= max + 3 + 16, "buffer grew to {}", b.len());
            }
        }
        let _ = d.decode_eof(&mut b);
    }

    #[test]
    fn decoder_round_trips_frames(msgs in prop::collection::vec("[A-Z0-9|^~&\\r]{1,40}", 1..8), cut in 1usize..50) {
        let input: Vec<u8> = msgs.iter().flat_map(|m| encode_frame(m.as_bytes())).collect();
        let mut d = MllpDecoder::new(64);
        let mut b = BytesMut::new();
        let mut got = vec![];
        for chunk in input.chunks(cut) {
            b.extend_from_slice(chunk);
            while let Some(m) = d.decode(&mut b).unwrap() {
                got.push(String::from_utf8(m).unwrap());
            }
        }
        prop_assert_eq!(got, msgs);
    }
}
