//! Splitting a file or a captured stream into HL7 v2 messages, without copying.
//!
//! Accepted input: one or many messages, each either MLLP-framed (0x0B … 0x1C 0x0D) or
//! bare, with segments ended by `\r`, `\n` or `\r\n` (mixed in one file too). A message
//! starts at every segment beginning with `MSH`, also inside an MLLP frame; lines made
//! only of spaces and tabs between messages are ignored. Anything else (bytes before the
//! first `MSH`, between frames, an unterminated frame) comes out as a [`FramingError`]
//! with its byte range, so a loader can count and report it rather than lose it.
//!
//! Messages are slices of the input and keep their original separators; use
//! [`canonical_segments`] for the `\r`-terminated form the HL7 standard defines.

use std::fmt;

use crate::{EB, SB};

/// One message found in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Byte offset of the `MSH` in the input.
    pub offset: usize,
    /// From `MSH` to the end of the last segment, trailing separators and blank lines
    /// excluded.
    pub bytes: &'a [u8],
    /// Whether it came inside an MLLP frame.
    pub framed: bool,
}

/// Input that is not a message. Offsets and lengths only: the bytes may hold patient data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// Bytes that are neither a message nor blank (before the first `MSH`, between MLLP
    /// frames, a stray end-block, the start of a frame before its `MSH`).
    Garbage { offset: usize, len: usize },
    /// An MLLP frame whose end block (0x1C) never comes: the input ends, or a new start
    /// block (0x0B) begins first. The partial frame is not returned as a message.
    UnterminatedFrame { offset: usize, len: usize },
    /// An MLLP frame with nothing but blanks inside.
    EmptyFrame { offset: usize },
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::Garbage { offset, len } => {
                write!(f, "{len} byte(s) of non-HL7 data at offset {offset}")
            }
            FramingError::UnterminatedFrame { offset, len } => {
                write!(
                    f,
                    "MLLP frame at offset {offset} ({len} bytes) has no end block"
                )
            }
            FramingError::EmptyFrame { offset } => write!(f, "empty MLLP frame at offset {offset}"),
        }
    }
}

impl std::error::Error for FramingError {}

/// Splits `input` into messages and framing errors, in input order.
pub fn split_messages(input: &[u8]) -> Messages<'_> {
    Messages {
        input,
        pos: 0,
        frame: None,
    }
}

/// Iterator returned by [`split_messages`].
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    input: &'a [u8],
    /// Next byte to look at outside any frame.
    pos: usize,
    /// Content of the MLLP frame being split: (next position, end), end excluding 0x1C.
    frame: Option<(usize, usize)>,
}

/// End of the line starting at `i` (index of its `\r`/`\n`, or `end`).
fn line_end(b: &[u8], i: usize, end: usize) -> usize {
    b[i..end]
        .iter()
        .position(|&c| c == b'\r' || c == b'\n')
        .map_or(end, |p| i + p)
}

/// Start of the next line after the line ending at `e` (one `\r`, `\n` or `\r\n`).
fn next_line(b: &[u8], e: usize, end: usize) -> usize {
    if e >= end {
        end
    } else if b[e] == b'\r' && e + 1 < end && b[e + 1] == b'\n' {
        e + 2
    } else {
        e + 1
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(|&c| c == b' ' || c == b'\t')
}

/// What a chunk of lines turned out to be.
enum Chunk {
    Message { start: usize, end: usize },
    Garbage { start: usize, end: usize },
}

/// Reads one chunk starting at the non-blank line `start`, within `[start, end)`. A
/// chunk runs until the next line starting with `MSH`; outside frames also until an
/// MLLP control byte anywhere (they are never HL7 content). Returns the chunk and the
/// position to continue from.
fn read_chunk(b: &[u8], start: usize, end: usize, in_frame: bool) -> (Chunk, usize) {
    let is_msg = b[start..end].starts_with(b"MSH");
    let mut i = start;
    let mut content_end = start;
    loop {
        let le = line_end(b, i, end);
        // Control bytes end the chunk outside frames, except the one it starts with (a
        // garbage chunk may well begin with a stray 0x1C).
        let ctl = if in_frame {
            None
        } else {
            b[i..le]
                .iter()
                .enumerate()
                .position(|(k, &c)| (c == SB || (c == EB && is_msg)) && i + k != start)
        };
        if let Some(k) = ctl {
            let stop = i + k;
            if !is_blank(&b[i..stop]) {
                content_end = stop;
            }
            return (chunk(is_msg, start, content_end), stop);
        }
        if !is_blank(&b[i..le]) {
            content_end = le;
        }
        let next = next_line(b, le, end);
        if next >= end || b[next..end].starts_with(b"MSH") {
            return (chunk(is_msg, start, content_end), next);
        }
        i = next;
    }
}

fn chunk(is_msg: bool, start: usize, end: usize) -> Chunk {
    if is_msg {
        Chunk::Message { start, end }
    } else {
        Chunk::Garbage { start, end }
    }
}

impl<'a> Messages<'a> {
    fn emit(&self, c: Chunk, framed: bool) -> Result<Message<'a>, FramingError> {
        match c {
            Chunk::Message { start, end } => Ok(Message {
                offset: start,
                bytes: &self.input[start..end],
                framed,
            }),
            Chunk::Garbage { start, end } => Err(FramingError::Garbage {
                offset: start,
                len: end - start,
            }),
        }
    }

    /// Next item from inside the current frame, if any is left.
    fn next_in_frame(&mut self) -> Option<Result<Message<'a>, FramingError>> {
        let b = self.input;
        while let Some((mut p, end)) = self.frame {
            if p >= end {
                self.frame = None;
                break;
            }
            let le = line_end(b, p, end);
            if is_blank(&b[p..le]) {
                p = next_line(b, le, end);
                self.frame = Some((p, end));
                continue;
            }
            let (c, next) = read_chunk(b, p, end, true);
            self.frame = Some((next, end));
            return Some(self.emit(c, true));
        }
        None
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<Message<'a>, FramingError>;

    fn next(&mut self) -> Option<Self::Item> {
        let b = self.input;
        let end = b.len();
        loop {
            if let Some(item) = self.next_in_frame() {
                return Some(item);
            }
            if self.pos >= end {
                return None;
            }
            let p = self.pos;
            let le = line_end(b, p, end);
            if is_blank(&b[p..le]) {
                self.pos = next_line(b, le, end);
                continue;
            }
            if b[p] == SB {
                // The frame runs to the first 0x1C; a 0x0B before it means this frame
                // lost its end.
                let rel = b[p + 1..].iter().position(|&c| c == EB || c == SB);
                match rel.map(|r| p + 1 + r) {
                    Some(e) if b[e] == EB => {
                        // 0x1C is followed by 0x0D in MLLP; files sometimes drop it or
                        // add a newline, which the blank-line rule then absorbs.
                        self.pos = if b.get(e + 1) == Some(&b'\r') {
                            e + 2
                        } else {
                            e + 1
                        };
                        if b[p + 1..e]
                            .iter()
                            .all(|&c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
                        {
                            return Some(Err(FramingError::EmptyFrame { offset: p }));
                        }
                        self.frame = Some((p + 1, e));
                        continue;
                    }
                    Some(e) => {
                        self.pos = e;
                        return Some(Err(FramingError::UnterminatedFrame {
                            offset: p,
                            len: e - p,
                        }));
                    }
                    None => {
                        self.pos = end;
                        return Some(Err(FramingError::UnterminatedFrame {
                            offset: p,
                            len: end - p,
                        }));
                    }
                }
            }
            let (c, next) = read_chunk(b, p, end, false);
            self.pos = next;
            return Some(self.emit(c, false));
        }
    }
}

/// The message with every segment ended by `\r` (the HL7 terminator) whatever the file
/// used, and empty or blank segments dropped. Borrowed when already in that form.
pub fn canonical_segments(msg: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let canonical = !msg.contains(&b'\n')
        && !msg.windows(2).any(|w| w == b"\r\r")
        && msg.last() == Some(&b'\r')
        && msg.first() != Some(&b'\r');
    if canonical {
        return std::borrow::Cow::Borrowed(msg);
    }
    let mut out = Vec::with_capacity(msg.len() + 1);
    for seg in msg.split(|&c| c == b'\r' || c == b'\n') {
        if !is_blank(seg) {
            out.extend_from_slice(seg);
            out.push(b'\r');
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: &str = "MSH|^~\\&|LAB|X|DMP|Y|20240306||ORU^R01|1|P|2.5";
    const M2: &str = "MSH|^~\\&|LAB|X|DMP|Y|20240306||ORU^R01|2|P|2.5";

    /// Messages as strings, errors as-is.
    fn split(input: &[u8]) -> Vec<Result<String, FramingError>> {
        split_messages(input)
            .map(|r| r.map(|m| String::from_utf8(m.bytes.to_vec()).unwrap()))
            .collect()
    }

    fn ok(s: &str) -> Result<String, FramingError> {
        Ok(s.to_string())
    }

    #[test]
    fn empty_and_blank_input() {
        assert!(split(b"").is_empty());
        assert!(split(b"\r\n\n  \r\t\r\n").is_empty());
    }

    #[test]
    fn one_message_each_separator() {
        for sep in ["\r", "\n", "\r\n"] {
            let input = format!("{M1}{sep}PID|1{sep}OBX|1{sep}");
            let want = format!("{M1}{sep}PID|1{sep}OBX|1");
            assert_eq!(split(input.as_bytes()), [ok(&want)], "{sep:?}");
        }
    }

    #[test]
    fn mixed_separators_and_blank_lines_between_messages() {
        let input = format!("\r\n{M1}\rPID|1\r\n\r\n  \n{M2}\nPID|2\r\n\n");
        let got = split(input.as_bytes());
        assert_eq!(
            got,
            [ok(&format!("{M1}\rPID|1")), ok(&format!("{M2}\nPID|2"))]
        );
        let offsets: Vec<usize> = split_messages(input.as_bytes())
            .map(|m| m.unwrap().offset)
            .collect();
        assert_eq!(offsets, [2, input.find(M2).unwrap()]);
    }

    #[test]
    fn msh_starts_a_message_only_at_a_segment_start() {
        let input = format!("{M1}\rNTE|1||see MSH|x\rPID|1\r{M2}\r");
        assert_eq!(
            split(input.as_bytes()),
            [ok(&format!("{M1}\rNTE|1||see MSH|x\rPID|1")), ok(M2)]
        );
    }

    #[test]
    fn mllp_framed_file() {
        let input = format!("\x0b{M1}\rPID|1\r\x1c\r\x0b{M2}\rPID|2\r\x1c\r");
        let items: Vec<_> = split_messages(input.as_bytes()).collect();
        assert_eq!(items.len(), 2);
        let m = items[0].unwrap();
        assert_eq!((m.offset, m.framed), (1, true));
        assert_eq!(m.bytes, format!("{M1}\rPID|1").as_bytes());
        assert_eq!(items[1].unwrap().bytes, format!("{M2}\rPID|2").as_bytes());
    }

    #[test]
    fn frames_separated_by_newlines_or_missing_cr() {
        let input = format!("\x0b{M1}\r\x1c\r\n\n\x0b{M2}\r\x1c\x0b{M1}\r\x1c");
        assert_eq!(split(input.as_bytes()), [ok(M1), ok(M2), ok(M1)]);
    }

    #[test]
    fn framed_and_bare_messages_mixed() {
        let input = format!("{M1}\nPID|1\n\x0b{M2}\r\x1c\r{M1}\r\n");
        let items: Vec<_> = split_messages(input.as_bytes())
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(items.len(), 3);
        assert_eq!(
            (items[0].framed, items[1].framed, items[2].framed),
            (false, true, false)
        );
        assert_eq!(items[0].bytes, format!("{M1}\nPID|1").as_bytes());
    }

    #[test]
    fn several_messages_in_one_frame_are_split() {
        let input = format!("\x0b{M1}\rPID|1\r{M2}\r\x1c\r");
        assert_eq!(
            split(input.as_bytes()),
            [ok(&format!("{M1}\rPID|1")), ok(M2)]
        );
    }

    #[test]
    fn garbage_before_the_first_message() {
        let input = format!("hello\r\nworld\r\n{M1}\r");
        assert_eq!(
            split(input.as_bytes()),
            [Err(FramingError::Garbage { offset: 0, len: 12 }), ok(M1)]
        );
    }

    #[test]
    fn garbage_between_frames() {
        let input = format!("\x0b{M1}\r\x1c\rjunk\x0b{M2}\r\x1c\r");
        let off = input.find("junk").unwrap();
        assert_eq!(
            split(input.as_bytes()),
            [
                ok(M1),
                Err(FramingError::Garbage {
                    offset: off,
                    len: 4
                }),
                ok(M2)
            ]
        );
    }

    #[test]
    fn garbage_inside_a_frame_before_msh() {
        let input = format!("\x0bxx\r{M1}\r\x1c\r");
        assert_eq!(
            split(input.as_bytes()),
            [Err(FramingError::Garbage { offset: 1, len: 2 }), ok(M1)]
        );
    }

    #[test]
    fn stray_end_block_after_a_bare_message() {
        let input = format!("{M1}\rPID|1\r\x1c\r{M2}\r");
        let off = input.find('\x1c').unwrap();
        assert_eq!(
            split(input.as_bytes()),
            [
                ok(&format!("{M1}\rPID|1")),
                Err(FramingError::Garbage {
                    offset: off,
                    len: 1
                }),
                ok(M2)
            ]
        );
    }

    #[test]
    fn unterminated_frames() {
        // The first frame loses its end block; the next one is still read.
        let input = format!("\x0b{M1}\rPID|1\r\x0b{M2}\r\x1c\r");
        let second = input.rfind('\x0b').unwrap();
        assert_eq!(
            split(input.as_bytes()),
            [
                Err(FramingError::UnterminatedFrame {
                    offset: 0,
                    len: second
                }),
                ok(M2)
            ]
        );
        // Truncated at the end of the file.
        let input = format!("{M1}\r\x0b{M2}\rPID");
        let off = input.find('\x0b').unwrap();
        assert_eq!(
            split(input.as_bytes()),
            [
                ok(M1),
                Err(FramingError::UnterminatedFrame {
                    offset: off,
                    len: input.len() - off
                })
            ]
        );
    }

    #[test]
    fn empty_frame() {
        let input = format!("\x0b\r\n\x1c\r{M1}");
        assert_eq!(
            split(input.as_bytes()),
            [Err(FramingError::EmptyFrame { offset: 0 }), ok(M1)]
        );
    }

    #[test]
    fn errors_do_not_show_content() {
        let input = b"DUPONT JEAN 279035121518989\rMSH|x";
        let err = split_messages(input).next().unwrap().unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("DUPONT") && !text.contains("2790"), "{text}");
    }

    #[test]
    fn every_byte_is_accounted_for() {
        // Each non-blank byte belongs to exactly one item: nothing dropped silently.
        let input = format!("junk\n{M1}\r\n\x0b{M2}\r\x1c\rmore\r\n\x0b{M1}");
        let mut covered = vec![false; input.len()];
        for item in split_messages(input.as_bytes()) {
            let (o, l) = match item {
                Ok(m) => (m.offset, m.bytes.len()),
                Err(FramingError::Garbage { offset, len })
                | Err(FramingError::UnterminatedFrame { offset, len }) => (offset, len),
                Err(FramingError::EmptyFrame { offset }) => (offset, 1),
            };
            for c in &mut covered[o..o + l] {
                assert!(!*c, "byte covered twice");
                *c = true;
            }
        }
        for (i, c) in input.bytes().enumerate() {
            let framing = matches!(c, b'\r' | b'\n' | b' ' | 0x0b | 0x1c);
            assert!(covered[i] || framing, "byte {i} ({c:#x}) dropped");
        }
    }

    #[test]
    fn canonical_form() {
        assert_eq!(
            &*canonical_segments(b"MSH|a\r\nPID|1\n\nOBX|1"),
            b"MSH|a\rPID|1\rOBX|1\r"
        );
        let c = canonical_segments(b"MSH|a\rPID|1\r");
        assert!(matches!(c, std::borrow::Cow::Borrowed(_)));
        assert_eq!(&*canonical_segments(b"MSH|a\r\rPID|1"), b"MSH|a\rPID|1\r");
    }
}
