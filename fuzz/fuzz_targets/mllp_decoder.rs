//! Fuzz target: MLLP framing, as the listener meets it (the tokio-util `Decoder` over a
//! `BytesMut` filled by reads of any size) and as files are split (`ingest::split_messages`).
//! Input: two control bytes (frame limit, seed of the read sizes), then the byte stream.
//! Checks, besides "no panic" and "no endless loop":
//! - every call that returns a frame or an error consumes bytes; the buffer stays bounded by
//!   the frame limit plus one read;
//! - frames are non-empty, within the limit, without block characters;
//! - with a limit no frame reaches, the frames do not depend on how the stream was cut into
//!   reads, and re-framing them gives them back;
//! - the file splitter returns slices of the input, in order, each starting with `MSH`.
#![no_main]

use dmpflow_fuzz::Rng;
use dmpflow_ingest::{EB, FramingError, MllpDecoder, SB, encode_frame, split_messages};
use libfuzzer_sys::fuzz_target;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::Decoder;

/// Feeds `stream` in reads whose sizes `rng` picks (1..=max_read bytes), decoding after each
/// read as `Framed` does, then `decode_eof`. Returns the frames.
fn run(stream: &[u8], max_frame: usize, rng: &mut Rng, max_read: usize) -> Vec<Vec<u8>> {
    let mut dec = MllpDecoder::new(max_frame);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut pos = 0;
    let mut take = |dec: &mut MllpDecoder, buf: &mut BytesMut, eof: bool, read: usize| {
        // Each call consumes at least one byte unless it returns Ok(None): the loop ends.
        for _ in 0..=stream.len() + 1 {
            let before = buf.len();
            let r = if eof {
                Decoder::decode_eof(dec, buf)
            } else {
                Decoder::decode(dec, buf)
            };
            match r {
                Ok(None) => {
                    assert!(
                        buf.len() <= max_frame + 2 + read,
                        "buffer holds {} bytes, limit {max_frame}",
                        buf.len()
                    );
                    return;
                }
                Ok(Some(f)) => {
                    assert!(buf.len() < before, "frame returned without consuming");
                    assert!(!f.is_empty() && f.len() <= max_frame, "frame size");
                    assert!(!f.contains(&SB) && !f.contains(&EB), "block char in frame");
                    frames.push(f);
                }
                Err(_) => assert!(buf.len() < before, "error without consuming"),
            }
        }
        panic!("decoder loops without consuming");
    };
    while pos < stream.len() {
        let n = (1 + rng.below(max_read)).min(stream.len() - pos);
        buf.extend_from_slice(&stream[pos..pos + n]);
        pos += n;
        take(&mut dec, &mut buf, false, n);
    }
    take(&mut dec, &mut buf, true, 0);
    assert!(buf.is_empty(), "bytes left after decode_eof");
    frames
}

fuzz_target!(|data: &[u8]| {
    let [limit, seed, stream @ ..] = data else {
        return;
    };
    // A small limit exercises the oversize paths; the stream never reaches a large one.
    let small = 1 + *limit as usize % 64;
    let _ = run(stream, small, &mut Rng::new(u64::from(*seed)), 16);

    let large = stream.len() + 1;
    let whole = run(stream, large, &mut Rng::new(1), usize::MAX - 1);
    let cut = run(
        stream,
        large,
        &mut Rng::new(u64::from(*seed) + 7),
        1 + *limit as usize % 9,
    );
    assert_eq!(whole, cut, "frames depend on how the stream was read");
    let reframed: Vec<u8> = whole.iter().flat_map(|f| encode_frame(f)).collect();
    assert_eq!(
        run(&reframed, large, &mut Rng::new(3), 5),
        whole,
        "re-framing"
    );

    let mut last = 0;
    for item in split_messages(stream) {
        match item {
            Ok(m) => {
                assert!(m.offset >= last, "messages out of order");
                assert!(m.offset + m.bytes.len() <= stream.len());
                assert_eq!(&stream[m.offset..m.offset + m.bytes.len()], m.bytes);
                assert!(m.bytes.starts_with(b"MSH"), "message not starting with MSH");
                last = m.offset + m.bytes.len();
            }
            Err(
                FramingError::Garbage { offset, len }
                | FramingError::UnterminatedFrame { offset, len },
            ) => assert!(offset + len <= stream.len(), "framing error past the input"),
            Err(FramingError::EmptyFrame { offset }) => assert!(offset < stream.len()),
        }
    }
});
