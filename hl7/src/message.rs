//! dmpflow's own HL7 v2 (ER7, pipe-and-hat) reader: zero-copy and allocation-light.
//!
//! Why not hl7-parser: it allocates a Vec at every level (~700 allocations per lab
//! message), garbles escapes in accented text, and silently drops everything after a
//! segment it cannot parse (crates.md §2.2). This reader:
//!
//! - reads the encoding characters from MSH-1/MSH-2 (never assumed; MSH-2 may hold a
//!   multi-byte UTF-8 character such as `˜`, so delimiters are `char`s, found with
//!   `str::find(char)`, which is memchr-backed in std);
//! - decodes MSH-18 (`UNICODE UTF-8`, `8859/1`, `8859/15`, empty = configured default);
//!   UTF-8 input is borrowed without copying;
//! - splits segments on `\r`, tolerating `\n` and `\r\n`, and stores only the segment
//!   boundaries (one Vec per message); fields, repetitions, components and subcomponents
//!   are split lazily on access (`segment.rs`: [`Segment`], [`Value`](crate::Value));
//! - enforces message, segment and field size limits and rejects a malformed segment name
//!   instead of truncating.
//!
//! Accessors are 1-based like the HL7 specification (`seg.field(5)`, `.repetition(1)`,
//! `.component(2)`, `.sub(1)`); an absent element is an empty value, never a panic.

use std::borrow::Cow;

use dmpflow_schemas::reasons::{Reason, Reject};

use crate::msh::{EncodingError, Msh, encoding_chars, usable_delimiter};
use crate::{Charset, Segment, xmltext};

/// The encoding characters of one message (MSH-1 and MSH-2) and its character set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: char,
    pub subcomponent: char,
    /// Charset of the message, needed to read `\Xhh\` escapes.
    pub charset: Charset,
}

impl Delimiters {
    /// `|^~\&`.
    pub fn standard(charset: Charset) -> Self {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: '\\',
            subcomponent: '&',
            charset,
        }
    }
}

/// Reader limits and the default charset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Charset used when MSH-18 is empty.
    pub default_charset: Charset,
    pub max_message_bytes: usize,
    pub max_segment_bytes: usize,
    pub max_field_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        // An OBX carrying a base64 CDA is routinely several MB (the ANS lab example holds
        // 600 KB + 200 KB): the field and segment limits must allow that.
        ReadOptions {
            default_charset: Charset::Utf8,
            max_message_bytes: 16 << 20,
            max_segment_bytes: 9 << 20,
            max_field_bytes: 8 << 20,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
    /// This segment's field separators in `Message::seps`: `seps[first_sep..end_sep]`.
    first_sep: usize,
    end_sep: usize,
}

/// A parsed message. Borrows the input when it is UTF-8 (or pure ASCII).
#[derive(Debug, Clone)]
pub struct Message<'a> {
    text: Cow<'a, str>,
    delims: Delimiters,
    spans: Vec<Span>,
    /// Byte offset, inside its segment, of every field separator of every segment. Found in
    /// the one pass that splits segments, so reading field n is O(1) instead of a rescan of
    /// the segment from its start for every field (the largest parse cost of normalize).
    seps: Vec<u32>,
}

fn reject(reason: Reason, detail: impl Into<String>) -> Reject {
    Reject::new(reason, detail)
}

/// Strips what transports add around a message: MLLP framing (0x0B ... 0x1C), a UTF-8
/// byte-order mark, and leading or trailing blank lines.
fn trim_frame(mut raw: &[u8]) -> &[u8] {
    if let [0x0B, rest @ ..] = raw {
        raw = rest;
    }
    if let [0xEF, 0xBB, 0xBF, rest @ ..] = raw {
        raw = rest;
    }
    while let [b'\r' | b'\n' | b' ' | b'\t', rest @ ..] = raw {
        raw = rest;
    }
    while let [rest @ .., 0x1C | b'\r' | b'\n' | 0x00] = raw {
        raw = rest;
    }
    raw
}

/// Position of the first `\r` or `\n` at or after `from`. Word-at-a-time (SWAR) scan:
/// segments are long runs without line breaks, so this is the hot loop of parsing.
#[inline]
fn find_eol(b: &[u8], from: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while i + 8 <= b.len() {
        let w = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let cr = w ^ (LO * b'\r' as u64);
        let lf = w ^ (LO * b'\n' as u64);
        let hit = (cr.wrapping_sub(LO) & !cr & HI) | (lf.wrapping_sub(LO) & !lf & HI);
        if hit != 0 {
            break;
        }
        i += 8;
    }
    while i < b.len() {
        if b[i] == b'\r' || b[i] == b'\n' {
            return i;
        }
        i += 1;
    }
    b.len()
}

impl<'a> Message<'a> {
    /// Parses raw bytes (charset from MSH-18).
    pub fn parse(raw: &'a [u8], opts: &ReadOptions) -> Result<Message<'a>, Reject> {
        if raw.len() > opts.max_message_bytes {
            return Err(reject(
                Reason::Hl7MessageTooLarge,
                format!(
                    "message of {} bytes exceeds the {} byte limit",
                    raw.len(),
                    opts.max_message_bytes
                ),
            ));
        }
        let raw = trim_frame(raw);
        if raw.len() < 4 || &raw[..3] != b"MSH" {
            return Err(reject(
                Reason::Hl7MshMissing,
                "input does not start with an MSH segment",
            ));
        }
        let fs = raw[3];
        if !fs.is_ascii() || !usable_delimiter(fs as char) {
            return Err(reject(
                Reason::Hl7EncodingInvalid,
                "MSH-1 field separator is not a usable ASCII character",
            ));
        }
        // MSH-18 from the raw bytes (the charset is needed to decode them), by the same
        // reader as the gateway's; bounded by the message itself, so however long the MSH
        // segment, MSH-18 is seen. `raw` starts with `MSH` and a separator: always read.
        let msh = Msh::read_within(raw, raw.len()).ok_or_else(|| {
            reject(
                Reason::Hl7MshMissing,
                "input does not start with an MSH segment",
            )
        })?;
        let charset = msh.charset(opts.default_charset).ok_or_else(|| {
            reject(
                Reason::Hl7CharsetUnsupported,
                "MSH-18 names a character set other than UNICODE UTF-8, 8859/1, 8859/15",
            )
        })?;
        let text = charset.decode(raw).ok_or_else(|| {
            reject(
                Reason::Hl7CharsetInvalid,
                format!("bytes are not valid {}", charset.as_msh18()),
            )
        })?;
        Self::from_text(text, charset, opts)
    }

    /// Parses text that is already decoded (the charset only matters for `\X..\`).
    pub fn parse_str(text: &'a str, opts: &ReadOptions) -> Result<Message<'a>, Reject> {
        let raw = trim_frame(text.as_bytes());
        // trim_frame only strips ASCII bytes or a whole BOM, so the result is still UTF-8.
        let start = raw.as_ptr() as usize - text.as_ptr() as usize;
        let text = &text[start..start + raw.len()];
        if text.len() > opts.max_message_bytes {
            return Err(reject(
                Reason::Hl7MessageTooLarge,
                format!("message exceeds the {} byte limit", opts.max_message_bytes),
            ));
        }
        if !text.starts_with("MSH") || text.len() < 4 {
            return Err(reject(
                Reason::Hl7MshMissing,
                "input does not start with an MSH segment",
            ));
        }
        Self::from_text(Cow::Borrowed(text), Charset::Utf8, opts)
    }

    fn from_text(
        text: Cow<'a, str>,
        charset: Charset,
        opts: &ReadOptions,
    ) -> Result<Message<'a>, Reject> {
        let delims = Self::read_delimiters(&text, charset)?;
        let bytes = text.as_bytes();
        let fs = delims.field;
        let mut spans = Vec::with_capacity(bytes.len() / 64 + 4);
        let mut seps: Vec<u32> = Vec::with_capacity(bytes.len() / 8 + 8);
        let mut pos = 0;
        let mut index = 0usize;
        while pos < bytes.len() {
            let end = find_eol(bytes, pos);
            if end > pos {
                let seg = &text[pos..end];
                index += 1;
                if seg.len() > opts.max_segment_bytes {
                    return Err(reject(
                        Reason::Hl7SegmentTooLarge,
                        format!(
                            "segment {index} exceeds the {} byte limit",
                            opts.max_segment_bytes
                        ),
                    ));
                }
                let sb = seg.as_bytes();
                let name_ok = sb.len() >= 3
                    && sb[..3]
                        .iter()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                    && (sb.len() == 3 || seg[3..].starts_with(fs));
                if !name_ok {
                    if sb.iter().all(|b| b.is_ascii_whitespace()) {
                        // A line of blanks between segments (seen after hand edits).
                        index -= 1;
                        pos = end + 1;
                        continue;
                    }
                    return Err(reject(
                        Reason::Hl7SegmentInvalid,
                        format!("segment {index} does not start with a valid segment name"),
                    ));
                }
                // Only a segment longer than the field limit can hold a field over it.
                if seg.len() > opts.max_field_bytes
                    && let Some(n) = seg.split(fs).position(|f| f.len() > opts.max_field_bytes)
                {
                    return Err(reject(
                        Reason::Hl7FieldTooLarge,
                        format!(
                            "{}-{} (segment {index}) exceeds the {} byte limit",
                            &seg[..3],
                            n,
                            opts.max_field_bytes
                        ),
                    ));
                }
                let first_sep = seps.len();
                // Segments are at most `max_segment_bytes`, far below 4 GiB, so offsets fit
                // in u32 (checked above; the cast cannot truncate).
                if fs.is_ascii() {
                    let d = fs as u8;
                    seps.extend(
                        sb.iter()
                            .enumerate()
                            .filter(|&(_, &b)| b == d)
                            .map(|(i, _)| i as u32),
                    );
                } else {
                    seps.extend(seg.match_indices(fs).map(|(i, _)| i as u32));
                }
                spans.push(Span {
                    start: pos,
                    end,
                    first_sep,
                    end_sep: seps.len(),
                });
            }
            pos = end + 1;
        }
        let msg = Message {
            text,
            delims,
            spans,
            seps,
        };
        msg.check_xml_text()?;
        Ok(msg)
    }

    /// Refuses text that XML 1.0 cannot carry (the one place this is decided, see
    /// `xmltext`): everything normalize emits (CDA text, ids and metadata that go to the
    /// database, where a NUL is a permanent error) is read from this message, so checking
    /// the message once covers every output. `hl7.text.invalid` names the segment and field,
    /// never the content.
    fn check_xml_text(&self) -> Result<(), Reject> {
        let bytes = self.text.as_bytes();
        let at = xmltext::first_forbidden(bytes)
            .or_else(|| xmltext::first_forbidden_hex_escape(&self.text, &self.delims));
        match at {
            None => Ok(()),
            Some(pos) => Err(reject(
                Reason::Hl7TextInvalid,
                format!(
                    "{} holds text XML 1.0 cannot carry (a C0 control other than tab, CR \
                     and LF, or U+FFFE/U+FFFF, raw or as a \\X..\\ escape)",
                    self.position_of(pos)
                ),
            )),
        }
    }

    /// `PID-5 (segment 2)` for a byte offset of the text: where a problem is, without what
    /// is there (the content may be patient data).
    fn position_of(&self, pos: usize) -> String {
        let Some((i, span)) = self
            .spans
            .iter()
            .enumerate()
            .find(|(_, s)| s.start <= pos && pos <= s.end)
        else {
            return "the message".to_string();
        };
        let seps = &self.seps[span.first_sep..span.end_sep];
        let off = (pos - span.start) as u32;
        let mut field = seps.iter().take_while(|&&o| o < off).count();
        let name = &self.text[span.start..span.start + 3];
        if matches!(name, "MSH" | "FHS" | "BHS") {
            // MSH-1 is the separator itself: split index n is MSH-(n+1).
            field += 1;
        }
        format!("{name}-{field} (segment {})", i + 1)
    }

    fn read_delimiters(text: &str, charset: Charset) -> Result<Delimiters, Reject> {
        let invalid = |what: &str| reject(Reason::Hl7EncodingInvalid, format!("MSH-2 {what}"));
        let mut chars = text[3..].chars();
        let field = chars.next().ok_or_else(|| invalid("missing"))?;
        if !usable_delimiter(field) {
            return Err(reject(
                Reason::Hl7EncodingInvalid,
                "MSH-1 field separator is not usable",
            ));
        }
        let rest = &text[3 + field.len_utf8()..];
        let end = rest.find([field, '\r', '\n']).unwrap_or(rest.len());
        let [component, repetition, escape, subcomponent] = encoding_chars(field, &rest[..end])
            .map_err(|e| match e {
                EncodingError::Count => invalid("must hold 4 encoding characters"),
                EncodingError::Unusable => invalid("holds an unusable or repeated character"),
            })?;
        Ok(Delimiters {
            field,
            component,
            repetition,
            escape,
            subcomponent,
            charset,
        })
    }

    /// The encoding characters and charset.
    pub fn delimiters(&self) -> &Delimiters {
        &self.delims
    }

    pub fn charset(&self) -> Charset {
        self.delims.charset
    }

    /// True when the message text borrows the input (no copy was made).
    pub fn is_borrowed(&self) -> bool {
        matches!(self.text, Cow::Borrowed(_))
    }

    /// The whole decoded text.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn segment_count(&self) -> usize {
        self.spans.len()
    }

    /// Segment at 0-based position `i` in message order.
    pub fn segment_at(&self, i: usize) -> Option<Segment<'_>> {
        self.spans.get(i).map(|s| {
            Segment::new(
                &self.text[s.start..s.end],
                &self.seps[s.first_sep..s.end_sep],
                &self.delims,
                i,
            )
        })
    }

    /// All segments, in order.
    pub fn all(&self) -> impl Iterator<Item = Segment<'_>> + '_ {
        (0..self.spans.len()).filter_map(move |i| self.segment_at(i))
    }

    /// Every segment named `name`, in order.
    pub fn segments<'m>(&'m self, name: &'m str) -> impl Iterator<Item = Segment<'m>> + 'm {
        self.all().filter(move |s| s.name() == name)
    }

    /// The first segment named `name`.
    pub fn segment(&self, name: &str) -> Option<Segment<'_>> {
        self.all().find(|s| s.name() == name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn parse(s: &str) -> Result<Message<'_>, Reject> {
        Message::parse(s.as_bytes(), &ReadOptions::default())
    }

    pub(crate) const ORU: &str = "MSH|^~\\&|LAB|FAC|DMP|X|20240101||ORU^R01^ORU_R01|42|P|2.5|||||FRA|UNICODE UTF-8\rPID|||123^^^&1.2&ISO^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||DUPONT^Jean^Jean Paul^^^^L\rOBX|1|NM|2345-7^Glucose^LN||5.6|mmol/L|3.5-5.1|H|||F\r";

    #[test]
    fn tolerates_lf_and_crlf_and_framing() {
        let lf = ORU.replace('\r', "\n");
        assert_eq!(parse(&lf).unwrap().segment_count(), 3);
        let crlf = ORU.replace('\r', "\r\n");
        assert_eq!(parse(&crlf).unwrap().segment_count(), 3);
        let framed = format!("\x0b{ORU}\x1c\r");
        assert_eq!(parse(&framed).unwrap().segment_count(), 3);
    }

    #[test]
    fn rejects_with_stable_codes() {
        let code = |s: &[u8]| {
            Message::parse(s, &ReadOptions::default())
                .unwrap_err()
                .reason
        };
        assert_eq!(code(b""), Reason::Hl7MshMissing);
        assert_eq!(code(b"PID|1"), Reason::Hl7MshMissing);
        assert_eq!(code(b"MSH|^~|A"), Reason::Hl7EncodingInvalid);
        assert_eq!(code(b"MSH|^^\\&|A"), Reason::Hl7EncodingInvalid);
        assert_eq!(code(b"MSHA^~\\&|A"), Reason::Hl7EncodingInvalid);
        assert_eq!(
            code(b"MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5|||||FRA|ASCII\r"),
            Reason::Hl7CharsetUnsupported
        );
        assert_eq!(code(b"MSH|^~\\&|A\r\xff\xfe"), Reason::Hl7CharsetInvalid);
        assert_eq!(code(b"MSH|^~\\&|A\rZ1|x\rPID|1"), Reason::Hl7SegmentInvalid);
        assert_eq!(code(b"MSH|^~\\&|A\rpid|x"), Reason::Hl7SegmentInvalid);
        // A bare header segment later in the message is read, and safe to access.
        let m = parse("MSH|^~\\&|A\rMSH\rBHS\r").unwrap();
        for seg in m.all() {
            assert_eq!(seg.field(1).raw(), if seg.index() == 0 { "|" } else { "" });
            assert_eq!(
                seg.field(2).raw(),
                if seg.index() == 0 { "^~\\&" } else { "" }
            );
        }
        assert_eq!(code(b"MSH|^~\\&|A\rPIDX|x"), Reason::Hl7SegmentInvalid);
        let small = ReadOptions {
            max_message_bytes: 100,
            max_segment_bytes: 50,
            max_field_bytes: 10,
            ..ReadOptions::default()
        };
        let code2 = |s: &[u8]| Message::parse(s, &small).unwrap_err().reason;
        assert_eq!(code2(&[b'M'; 101]), Reason::Hl7MessageTooLarge);
        assert_eq!(
            code2(format!("MSH|^~\\&|A\rOBX|{}", "x".repeat(60)).as_bytes()),
            Reason::Hl7SegmentTooLarge
        );
        assert_eq!(
            code2(format!("MSH|^~\\&|A\rOBX|1|{}|2", "x".repeat(20)).as_bytes()),
            Reason::Hl7FieldTooLarge
        );
        assert!(Message::parse(b"MSH|^~\\&|A\rOBX|1|0123456789|2", &small).is_ok());
    }

    #[test]
    fn latin_charsets_are_decoded() {
        let mut raw =
            b"MSH|^~\\&|A|B|C|D|2024||ADT^A28|1|P|2.5|||||FRA|8859/15\rPID|||x||".to_vec();
        raw.extend_from_slice(&[b'L', 0xC9, b'A', 0xBD, b' ', 0xA4]);
        let m = Message::parse(&raw, &ReadOptions::default()).unwrap();
        assert!(!m.is_borrowed());
        assert_eq!(m.charset(), Charset::Latin9);
        assert_eq!(m.segment("PID").unwrap().field(5).raw(), "LÉAœ €");
        let opts = ReadOptions {
            default_charset: Charset::Latin1,
            ..ReadOptions::default()
        };
        let m = Message::parse(b"MSH|^~\\&|A\rNTE|1||caf\xe9", &opts).unwrap();
        assert_eq!(m.segment("NTE").unwrap().field(3).raw(), "café");
    }

    /// Issue #16 item 5: NUL and other C0 controls, raw or escaped, are refused at parse
    /// time with the segment and field named; TAB and the CR/LF escapes stay allowed.
    #[test]
    fn text_xml_cannot_carry_is_refused_with_its_position() {
        let head = "MSH|^~\\&|A|B|C|D|2024||ORU^R01|1|P|2.5\rPID|1||x\r";
        for bad in [
            "NTE|1||zq\u{0}c",
            "NTE|1||zq\u{b}c",
            "NTE|1||zq\u{1f}c",
            "NTE|1||zq\\X00\\c",
            "NTE|1||zq\\X0B\\c",
            "NTE|1||zq\\X41001F\\c",
            "NTE|1||\u{FFFF}",
            "NTE|1||x\\XEFBFBE\\",
        ] {
            let e = parse(&format!("{head}{bad}\r")).unwrap_err();
            assert_eq!(e.reason, Reason::Hl7TextInvalid, "{bad:?}");
            assert!(e.detail.starts_with("NTE-3 (segment 3)"), "{}", e.detail);
            assert!(!e.detail.contains("zq"), "no content in the detail");
        }
        let e = parse("MSH|^~\\&|A\u{1}|B\rPID|1").unwrap_err();
        assert!(e.detail.starts_with("MSH-3 (segment 1)"), "{}", e.detail);
        // Latin-1 bytes below 0x20 are the same controls.
        let raw = b"MSH|^~\\&|A|B|C|D|2024||ADT^A28|1|P|2.5|||||FRA|8859/1\rPID|||x||A\x07B";
        assert_eq!(
            Message::parse(raw, &ReadOptions::default())
                .unwrap_err()
                .reason,
            Reason::Hl7TextInvalid
        );
        let text = format!("{head}NTE|1||a\tb\\X0D0A09\\c\\.br\\d\\X41\\\r");
        let ok = parse(&text).unwrap();
        assert_eq!(
            ok.segment("NTE").unwrap().field(3).decoded(),
            "a\tb\r\n\tc\ndA"
        );
    }
}
