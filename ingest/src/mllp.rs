//! MLLP framing (0x0B message 0x1C 0x0D) for the HL7 listener, sans-IO: a push-style
//! decoder over a `BytesMut` that a tokio-util `Framed` drives, and the encoder for the
//! ACKs going back.
//!
//! Memory is bounded: the decoder fails as soon as the frame being buffered exceeds
//! `max_frame`, then discards the rest of that frame as it arrives instead of keeping
//! it. Bytes between frames other than `\r`/`\n` are garbage and are reported (and
//! dropped up to the next start block), never silently skipped. After an error the
//! listener should answer nothing for that frame and, usually, close the connection; a
//! caller that keeps decoding gets the following frames intact.

use std::fmt;
use std::io;

use tokio_util::bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::{CR, EB, SB};

/// Why the byte stream is not valid MLLP. No variant carries message content.
#[derive(Debug)]
pub enum MllpError {
    /// The frame grew past the limit; its remaining bytes are being discarded (see
    /// [`MllpDecoder::discarding`]). `head` is the frame's first line, at most
    /// [`HEAD_MAX`] bytes: its MSH, so the listener can still answer AR to the sender's
    /// control id instead of cutting the connection (a cut frame is resent forever).
    FrameTooLarge {
        max: usize,
        head: Vec<u8>,
    },
    /// Bytes outside a frame (not `\r`/`\n`), dropped up to the next start block.
    Garbage {
        len: usize,
    },
    /// A start block arrived before the end block of the current frame: that frame is lost.
    UnterminatedFrame {
        len: usize,
    },
    /// 0x1C not followed by 0x0D.
    BadTrailer,
    /// 0x0B 0x1C 0x0D: a frame with no message.
    EmptyFrame,
    /// The stream ended inside a frame (or with garbage).
    Truncated {
        len: usize,
    },
    /// A message to encode contains a block character, which would corrupt the stream.
    ContentHasBlockChar,
    Io(io::Error),
}

impl fmt::Display for MllpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MllpError::FrameTooLarge { max, .. } => {
                write!(f, "MLLP frame larger than {max} bytes")
            }
            MllpError::Garbage { len } => write!(f, "{len} byte(s) outside an MLLP frame"),
            MllpError::UnterminatedFrame { len } => {
                write!(
                    f,
                    "MLLP frame of {len} bytes interrupted by a new start block"
                )
            }
            MllpError::BadTrailer => f.write_str("MLLP end block not followed by CR"),
            MllpError::EmptyFrame => f.write_str("empty MLLP frame"),
            MllpError::Truncated { len } => {
                write!(f, "stream ended inside an MLLP frame ({len} bytes pending)")
            }
            MllpError::ContentHasBlockChar => {
                f.write_str("message contains an MLLP block character (0x0B or 0x1C)")
            }
            MllpError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for MllpError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MllpError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for MllpError {
    fn from(e: io::Error) -> Self {
        MllpError::Io(e)
    }
}

/// Push-style MLLP decoder (and encoder): feed it the bytes read so far, take frames out.
#[derive(Debug, Clone)]
pub struct MllpDecoder {
    /// Largest message accepted, excluding the three framing bytes.
    max_frame: usize,
    /// How far the current frame has been searched for its end block, so each byte is
    /// scanned once however the frame is split across reads.
    scanned: usize,
    /// Dropping the rest of an oversized frame, up to and including its end block.
    discarding: bool,
}

/// Wraps a message in an MLLP frame. The caller guarantees the message has no 0x0B or
/// 0x1C (true of HL7 text; the [`Encoder`] impl checks it).
pub fn encode_frame(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 3);
    out.push(SB);
    out.extend_from_slice(msg);
    out.extend_from_slice(&[EB, CR]);
    out
}

/// The most of an oversized frame kept for its answer: the MSH segment of any real sender
/// fits (MSH-1..MSH-21 are short codes and identifiers).
pub const HEAD_MAX: usize = 1024;

/// The first line of a frame's content, at most [`HEAD_MAX`] bytes.
fn head_of(content: &[u8]) -> Vec<u8> {
    let c = &content[..content.len().min(HEAD_MAX)];
    let end = c
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(c.len());
    c[..end].to_vec()
}

impl MllpDecoder {
    /// True while the rest of an oversized frame is being dropped: the frame has not ended
    /// yet, so a listener's whole-frame deadline still runs.
    pub fn discarding(&self) -> bool {
        self.discarding
    }

    pub fn new(max_frame: usize) -> Self {
        MllpDecoder {
            max_frame,
            scanned: 0,
            discarding: false,
        }
    }

    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Takes the next complete frame's message out of `buf`, `Ok(None)` if more bytes are
    /// needed. On error the offending bytes are already removed from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<u8>>, MllpError> {
        if self.discarding {
            // Drop everything up to the end block of the oversized frame.
            match buf.iter().position(|&c| c == EB) {
                Some(e) => {
                    buf.advance(e + 1);
                    self.discarding = false;
                }
                None => {
                    buf.clear();
                    return Ok(None);
                }
            }
        }

        // Between frames: line ends are tolerated (some senders add them), nothing else.
        let lead = buf
            .iter()
            .position(|&c| c != b'\r' && c != b'\n')
            .unwrap_or(buf.len());
        if lead > 0 {
            buf.advance(lead);
        }
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first != SB {
            let len = buf.iter().position(|&c| c == SB).unwrap_or(buf.len());
            buf.advance(len);
            self.scanned = 0;
            return Err(MllpError::Garbage { len });
        }

        let from = self.scanned.max(1);
        let found = buf[from..]
            .iter()
            .position(|&c| c == EB || c == SB)
            .map(|p| from + p);
        match found {
            None => {
                let content = buf.len() - 1;
                if content > self.max_frame {
                    let head = head_of(&buf[1..]);
                    buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Err(MllpError::FrameTooLarge {
                        max: self.max_frame,
                        head,
                    });
                }
                self.scanned = buf.len();
                Ok(None)
            }
            Some(e) if buf[e] == SB => {
                buf.advance(e);
                self.scanned = 0;
                Err(MllpError::UnterminatedFrame { len: e })
            }
            Some(e) => {
                // End block: the trailer byte may not have arrived yet.
                self.scanned = e;
                let Some(&trailer) = buf.get(e + 1) else {
                    return Ok(None);
                };
                self.scanned = 0;
                if trailer != CR {
                    buf.advance(e + 1);
                    return Err(MllpError::BadTrailer);
                }
                let content = e - 1;
                if content > self.max_frame {
                    let head = head_of(&buf[1..e]);
                    buf.advance(e + 2);
                    return Err(MllpError::FrameTooLarge {
                        max: self.max_frame,
                        head,
                    });
                }
                let frame = buf.split_to(e + 2);
                if content == 0 {
                    return Err(MllpError::EmptyFrame);
                }
                Ok(Some(frame[1..e].to_vec()))
            }
        }
    }

    /// At the end of the stream: a partial frame or garbage is an error, line ends are not.
    pub fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<u8>>, MllpError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        self.discarding = false;
        self.scanned = 0;
        if buf.is_empty() {
            return Ok(None);
        }
        let len = buf.len();
        buf.clear();
        Err(MllpError::Truncated { len })
    }
}

impl Decoder for MllpDecoder {
    type Item = Vec<u8>;
    type Error = MllpError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<u8>>, MllpError> {
        MllpDecoder::decode(self, buf)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<u8>>, MllpError> {
        MllpDecoder::decode_eof(self, buf)
    }
}

impl Encoder<&[u8]> for MllpDecoder {
    type Error = MllpError;

    fn encode(&mut self, msg: &[u8], dst: &mut BytesMut) -> Result<(), MllpError> {
        if msg.iter().any(|&c| c == SB || c == EB) {
            return Err(MllpError::ContentHasBlockChar);
        }
        dst.reserve(msg.len() + 3);
        dst.put_u8(SB);
        dst.put_slice(msg);
        dst.put_slice(&[EB, CR]);
        Ok(())
    }
}

impl Encoder<Vec<u8>> for MllpDecoder {
    type Error = MllpError;

    fn encode(&mut self, msg: Vec<u8>, dst: &mut BytesMut) -> Result<(), MllpError> {
        Encoder::<&[u8]>::encode(self, &msg, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MSH|^~\\&|LAB|X|DMP|Y|20240306||ORU^R01|1|P|2.5\rPID|1\r";

    fn buf(b: &[u8]) -> BytesMut {
        BytesMut::from(b)
    }

    #[test]
    fn encode_then_decode() {
        let framed = encode_frame(MSG);
        assert_eq!(framed[0], SB);
        assert_eq!(&framed[framed.len() - 2..], &[EB, CR]);
        let mut d = MllpDecoder::new(1024);
        let mut b = buf(&framed);
        assert_eq!(d.decode(&mut b).unwrap().as_deref(), Some(MSG));
        assert!(b.is_empty());
        assert!(d.decode(&mut b).unwrap().is_none());
        let mut out = BytesMut::new();
        Encoder::<&[u8]>::encode(&mut d, MSG, &mut out).unwrap();
        assert_eq!(&out[..], &framed[..]);
    }

    #[test]
    fn encoder_refuses_block_chars() {
        let mut d = MllpDecoder::new(1024);
        let mut out = BytesMut::new();
        assert!(matches!(
            Encoder::<&[u8]>::encode(&mut d, b"MSH|\x1c", &mut out),
            Err(MllpError::ContentHasBlockChar)
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut input = encode_frame(b"MSH|1");
        input.extend(encode_frame(b"MSH|2"));
        input.extend(b"\r\n");
        input.extend(encode_frame(b"MSH|3"));
        let mut d = MllpDecoder::new(1024);
        let mut b = buf(&input);
        let mut got = vec![];
        while let Some(m) = d.decode(&mut b).unwrap() {
            got.push(m);
        }
        assert_eq!(
            got,
            [b"MSH|1".to_vec(), b"MSH|2".to_vec(), b"MSH|3".to_vec()]
        );
        assert!(d.decode_eof(&mut b).unwrap().is_none());
    }

    #[test]
    fn frames_split_across_reads_at_every_position() {
        let mut input = encode_frame(MSG);
        input.extend(encode_frame(b"MSH|2"));
        for cut1 in 0..input.len() {
            for cut2 in cut1..input.len() {
                let mut d = MllpDecoder::new(1024);
                let mut b = BytesMut::new();
                let mut got = vec![];
                for part in [&input[..cut1], &input[cut1..cut2], &input[cut2..]] {
                    b.extend_from_slice(part);
                    while let Some(m) = d.decode(&mut b).unwrap() {
                        got.push(m);
                    }
                }
                assert_eq!(got, [MSG.to_vec(), b"MSH|2".to_vec()], "cuts {cut1} {cut2}");
                assert!(b.is_empty());
            }
        }
    }

    #[test]
    fn byte_by_byte_scans_linearly() {
        // The decoder resumes its search where it stopped instead of rescanning.
        let msg = vec![b'x'; 10_000];
        let input = encode_frame(&msg);
        let mut d = MllpDecoder::new(20_000);
        let mut b = BytesMut::new();
        for (i, &c) in input.iter().enumerate() {
            b.put_u8(c);
            let r = d.decode(&mut b).unwrap();
            if i + 1 < input.len() {
                assert!(r.is_none());
                assert!(d.scanned <= b.len());
            } else {
                assert_eq!(r.unwrap().len(), 10_000);
            }
        }
    }

    #[test]
    fn oversized_frame_fails_early_and_is_discarded() {
        let mut d = MllpDecoder::new(16);
        let mut b = BytesMut::new();
        b.put_u8(SB);
        b.put_slice(&[b'a'; 10]);
        assert!(d.decode(&mut b).unwrap().is_none());
        // The 17th content byte arrives: error now, before any end block.
        b.put_slice(&[b'a'; 7]);
        match d.decode(&mut b) {
            Err(MllpError::FrameTooLarge { max: 16, head }) => assert_eq!(head, [b'a'; 17]),
            other => panic!("{other:?}"),
        }
        assert!(b.is_empty(), "the oversized frame is not kept");
        assert!(d.discarding());
        // The rest of that frame keeps arriving and is dropped, not buffered.
        for _ in 0..100 {
            b.put_slice(&[b'a'; 1000]);
            assert!(d.decode(&mut b).unwrap().is_none());
            assert!(b.is_empty());
        }
        // Its end, then a good frame: decoding resumes.
        b.put_slice(&[EB, CR]);
        b.put_slice(&encode_frame(b"MSH|ok"));
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), b"MSH|ok");
        assert!(!d.discarding());
    }

    #[test]
    fn an_oversized_frame_keeps_its_first_line_bounded() {
        let mut d = MllpDecoder::new(64);
        let mut b = BytesMut::new();
        b.put_u8(SB);
        b.put_slice(b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|big-1|P|2.5\rOBX|");
        b.put_slice(&[b'x'; 100]);
        match d.decode(&mut b) {
            Err(MllpError::FrameTooLarge { head, .. }) => {
                assert_eq!(head, b"MSH|^~\\&|SIL|LAB|DMP|X|2024||ORU^R01|big-1|P|2.5")
            }
            other => panic!("{other:?}"),
        }
        // A first line longer than HEAD_MAX is cut there.
        let mut d = MllpDecoder::new(4 * HEAD_MAX);
        let mut b = BytesMut::new();
        b.put_u8(SB);
        b.put_slice(&vec![b'M'; 5 * HEAD_MAX]);
        match d.decode(&mut b) {
            Err(MllpError::FrameTooLarge { head, .. }) => assert_eq!(head.len(), HEAD_MAX),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_frame_arriving_whole() {
        let mut d = MllpDecoder::new(4);
        let mut b = buf(&encode_frame(b"MSH|toolong"));
        b.put_slice(&encode_frame(b"MSH|"));
        assert!(matches!(
            d.decode(&mut b),
            Err(MllpError::FrameTooLarge { max: 4, ref head }) if head == b"MSH|toolong"
        ));
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), b"MSH|");
        // Exactly at the limit is accepted.
        let mut b = buf(&encode_frame(b"MSH|"));
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), b"MSH|");
    }

    #[test]
    fn garbage_between_frames_is_an_error() {
        let mut d = MllpDecoder::new(1024);
        let mut b = buf(&encode_frame(b"MSH|1"));
        b.put_slice(b"hello");
        b.put_slice(&encode_frame(b"MSH|2"));
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), b"MSH|1");
        assert!(matches!(
            d.decode(&mut b),
            Err(MllpError::Garbage { len: 5 })
        ));
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), b"MSH|2");
        // Garbage with no start block behind it is dropped entirely, so it cannot pile up.
        let mut b = buf(b"GET / HTTP/1.1\r\n");
        assert!(matches!(
            d.decode(&mut b),
            Err(MllpError::Garbage { len: 16 })
        ));
        assert!(b.is_empty());
    }

    #[test]
    fn bare_hl7_without_framing_is_garbage() {
        let mut d = MllpDecoder::new(1024);
        let mut b = buf(MSG);
        assert!(matches!(d.decode(&mut b), Err(MllpError::Garbage { .. })));
        assert!(b.is_empty());
    }

    #[test]
    fn start_block_inside_a_frame() {
        let mut d = MllpDecoder::new(1024);
        let mut b = buf(b"\x0bMSH|lost\r");
        b.put_slice(&encode_frame(b"MSH|2"));
        assert!(matches!(
            d.decode(&mut b),
            Err(MllpError::UnterminatedFrame { len: 10 })
        ));
        assert_eq!(d.decode(&mut b).unwrap().unwrap(), b"MSH|2");
    }

    #[test]
    fn bad_trailer_and_empty_frame() {
        let mut d = MllpDecoder::new(1024);
        let mut b = buf(b"\x0bMSH|1\x1cX");
        assert!(matches!(d.decode(&mut b), Err(MllpError::BadTrailer)));
        assert_eq!(&b[..], b"X");
        let mut b = buf(b"\x0b\x1c\r");
        assert!(matches!(d.decode(&mut b), Err(MllpError::EmptyFrame)));
        assert!(b.is_empty());
    }

    #[test]
    fn eof_inside_a_frame() {
        let mut d = MllpDecoder::new(1024);
        let mut b = buf(b"\x0bMSH|1\r");
        assert!(d.decode(&mut b).unwrap().is_none());
        assert!(matches!(
            d.decode_eof(&mut b),
            Err(MllpError::Truncated { len: 7 })
        ));
        // The trailer missing at EOF is truncation too.
        let mut b = buf(b"\x0bMSH|1\x1c");
        assert!(matches!(
            d.decode_eof(&mut b),
            Err(MllpError::Truncated { .. })
        ));
        let mut b = buf(b"\r\n");
        assert!(d.decode_eof(&mut b).unwrap().is_none());
    }

    #[test]
    fn errors_do_not_show_content() {
        let mut d = MllpDecoder::new(1024);
        let mut b = buf(b"DUPONT 279035121518989");
        let e = d.decode(&mut b).unwrap_err().to_string();
        assert!(!e.contains("DUPONT") && !e.contains("2790"), "{e}");
    }
}
