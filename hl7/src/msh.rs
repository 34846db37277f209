//! A tolerant, bounded reader of the MSH segment from the raw bytes of a message that may
//! be broken: the one place the header fields outside the full parser are read.
//!
//! Who needs the header without (or before) a full parse: the MLLP gateway's ACK (it must
//! answer, with MSA-2 = MSH-10 and the sender's separators and charset, even a message the
//! parser refuses, or a frame over `--max-frame` of which only the first line was kept),
//! the Kafka key of a message that does not parse ([`crate::keys`]), feed guessing and
//! display in `dmpflow normalize`, and the parser itself (MSH-18 is needed before the
//! bytes can be decoded).
//!
//! [`Msh::read`] is tolerant by design: it never fails on content, only on input with no
//! MSH line at all, and it never panics. It skips what transports put before a message (MLLP
//! start blocks, blank lines, a UTF-8 byte-order mark), takes the field separator from
//! MSH-1 whatever byte it is, and records where MSH-2..MSH-25 are in the first line. It is
//! bounded: it looks at no more than [`MSH_MAX_BYTES`] of the input (leading blanks
//! included) and stops at the end of the first line or of MSH-25, whichever comes first;
//! it allocates nothing (fields are byte ranges of the input). A field that the bound cuts
//! is absent, not partial, and [`Msh::truncated`] says so; a field that the *input* cuts
//! (a message that ends inside its MSH) is read as it stands.
//!
//! Accessors are 1-based like the specification: [`Msh::field`] gives raw bytes (MSH-1 is
//! the separator itself, MSH-2 the encoding characters, both literal), [`Msh::text`] the
//! text decoded in the charset MSH-18 names (empty = UTF-8; bytes that do not decode are
//! replaced, never refused), and named accessors the fields callers use. What a caller
//! then requires (a usable separator, a valid MSH-2) is the caller's decision:
//! [`Msh::encoding`] and [`Msh::delimiters`] apply the parser's own rules.

use std::borrow::Cow;

use crate::{Charset, Delimiters};

/// The most of the input the reader looks at. MSH-1..MSH-25 of any real sender are short
/// codes and identifiers (the MLLP decoder keeps 1 KiB of an oversized frame for its ACK).
pub const MSH_MAX_BYTES: usize = 4096;

/// The last field the reader locates (MSH-25 in v2.8; v2.5 stops at MSH-21).
pub const MSH_FIELDS: usize = 25;

/// Whether `c` may be an HL7 delimiter: not a letter or digit, not whitespace, not a
/// control character.
pub fn usable_delimiter(c: char) -> bool {
    !(c.is_alphanumeric() || c.is_whitespace() || c.is_control())
}

/// Why MSH-2 cannot give the delimiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EncodingError {
    /// Not 4 characters (5 from v2.7: the truncation character).
    Count,
    /// A letter, digit, blank or control, the field separator, or a character twice.
    Unusable,
}

/// The component, repetition, escape and subcomponent characters of MSH-2 (`enc`, as
/// text), checked against the field separator `field`: the parser's rule, shared by every
/// reader so they agree on which headers are usable.
pub(crate) fn encoding_chars(field: char, enc: &str) -> Result<[char; 4], EncodingError> {
    if !(4..=5).contains(&enc.chars().count()) {
        return Err(EncodingError::Count);
    }
    for (i, c) in enc.chars().enumerate() {
        if !usable_delimiter(c) || c == field || enc.chars().take(i).any(|p| p == c) {
            return Err(EncodingError::Unusable);
        }
    }
    let mut it = enc.chars();
    let mut next = || it.next().unwrap_or_default();
    Ok([next(), next(), next(), next()])
}

/// The header of one message, read from its raw bytes by [`Msh::read`]. Borrows the input.
#[derive(Debug, Clone, Copy)]
pub struct Msh<'a> {
    /// From `MSH` to the end of the last field located (first line, within the bound).
    line: &'a [u8],
    /// Offset of `MSH` in the input.
    offset: usize,
    /// `ends[n]`: end of MSH-n in `line`, for 2 <= n <= count; `ends[1]` = 3, the offset of
    /// MSH-1, so MSH-n starts at `ends[n - 1] + 1`.
    ends: [usize; MSH_FIELDS + 1],
    /// The highest field located (1 when MSH-2 is cut by the bound).
    count: usize,
    truncated: bool,
    /// The charset [`Msh::text`] decodes in: MSH-18's, UTF-8 when empty, `None` (lossy
    /// UTF-8) when MSH-18 names a set dmpflow does not decode.
    text_charset: Option<Charset>,
}

/// What may come before a message: MLLP start block, blank lines, a UTF-8 byte-order mark.
fn skip_lead(mut b: &[u8]) -> &[u8] {
    loop {
        match b {
            [0x0B | b'\r' | b'\n' | b' ' | b'\t', rest @ ..] => b = rest,
            [0xEF, 0xBB, 0xBF, rest @ ..] => b = rest,
            _ => return b,
        }
    }
}

/// `text` cut at `sep`, part `i` (0-based), borrowed when `text` is.
fn part(text: Cow<'_, str>, sep: char, i: usize) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.split(sep).nth(i).unwrap_or("")),
        Cow::Owned(s) => Cow::Owned(s.split(sep).nth(i).unwrap_or("").to_string()),
    }
}

fn trimmed(text: Cow<'_, str>) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
    }
}

impl<'a> Msh<'a> {
    /// Reads the header at the start of `raw` (after any MLLP start block, blank lines or
    /// byte-order mark), looking at no more than [`MSH_MAX_BYTES`] of it. `None` when no
    /// line starting with `MSH` and a separator byte is there.
    pub fn read(raw: &'a [u8]) -> Option<Msh<'a>> {
        Self::read_within(raw, MSH_MAX_BYTES)
    }

    /// [`Msh::read`] with another bound: at most `max` bytes of `raw` are looked at. For
    /// the full parser, which is about to read the whole message anyway and must see MSH-18
    /// however long the MSH line is (it passes the message's length).
    pub fn read_within(raw: &'a [u8], max: usize) -> Option<Msh<'a>> {
        let window = &raw[..raw.len().min(max)];
        let start = skip_lead(window);
        let offset = window.len() - start.len();
        let eol = start.iter().position(|&c| c == b'\r' || c == b'\n');
        let line = &start[..eol.unwrap_or(start.len())];
        if line.len() < 4 || &line[..3] != b"MSH" {
            return None;
        }
        // The bound cut the line: the input goes on past the window without a line end.
        let truncated = eol.is_none() && window.len() < raw.len();
        let fs = line[3];
        let mut ends = [0usize; MSH_FIELDS + 1];
        ends[1] = 3;
        let mut count = 1;
        let mut pos = 4;
        while count < MSH_FIELDS {
            let end = line[pos..]
                .iter()
                .position(|&c| c == fs)
                .map_or(line.len(), |p| pos + p);
            count += 1;
            ends[count] = end;
            if end == line.len() {
                break;
            }
            pos = end + 1;
        }
        if truncated && ends[count] == line.len() {
            // The last field runs into the bound: how it goes on is unknown.
            count -= 1;
        }
        let mut msh = Msh {
            // MSH and the separator at least, even when MSH-2 was cut.
            line: &line[..ends[count].max(4)],
            offset,
            ends,
            count,
            truncated,
            text_charset: None,
        };
        msh.text_charset = msh.charset(Charset::Utf8);
        Some(msh)
    }

    /// Offset of `MSH` in the input (past any framing, blank lines or byte-order mark).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The bytes read: from `MSH` to the end of the last field located.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.line
    }

    /// True when the first line is longer than the bound: fields past it are absent.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The highest field present (MSH-1 always is).
    pub fn field_count(&self) -> usize {
        self.count
    }

    /// MSH-1, the field separator: the fourth byte, whatever it is.
    pub fn field_separator(&self) -> u8 {
        self.line[3]
    }

    /// MSH-`n` as raw bytes (1-based; MSH-1 is the separator, MSH-2 the encoding
    /// characters). Empty when absent.
    pub fn field(&self, n: usize) -> &'a [u8] {
        match n {
            1 => &self.line[3..4],
            n if n >= 2 && n <= self.count => &self.line[self.ends[n - 1] + 1..self.ends[n]],
            _ => &[],
        }
    }

    /// The character set MSH-18 names: `default` when it is empty (blanks aside), `None`
    /// when it names a set dmpflow does not decode (or is not even UTF-8).
    pub fn charset(&self, default: Charset) -> Option<Charset> {
        match self.field(18).trim_ascii() {
            b"" => Some(default),
            v => std::str::from_utf8(v).ok().and_then(Charset::from_msh18),
        }
    }

    /// MSH-`n` as text, in the charset MSH-18 names (empty = UTF-8); bytes that do not
    /// decode are replaced (U+FFFD), never refused. Escapes are not resolved.
    pub fn text(&self, n: usize) -> Cow<'a, str> {
        let raw = self.field(n);
        self.text_charset
            .and_then(|c| c.decode(raw))
            .unwrap_or_else(|| String::from_utf8_lossy(raw))
    }

    /// MSH-2 as text when it holds usable encoding characters by the parser's rule (4, or 5
    /// from v2.7; no letter, digit, blank, control, repeat or field separator); `None`
    /// otherwise.
    pub fn encoding(&self) -> Option<Cow<'a, str>> {
        let enc = self.text(2);
        encoding_chars(char::from(self.field_separator()), &enc)
            .is_ok()
            .then_some(enc)
    }

    /// The component separator: the first of the encoding characters when MSH-2 is usable,
    /// else `^`.
    pub fn component_separator(&self) -> char {
        self.encoding()
            .and_then(|e| e.chars().next())
            .unwrap_or('^')
    }

    /// The delimiters as the parser would read them: `None` unless the field separator is a
    /// usable ASCII character and MSH-2 is usable. The charset is [`Msh::text`]'s (UTF-8
    /// when MSH-18 is unknown).
    pub fn delimiters(&self) -> Option<Delimiters> {
        let fs = self.field_separator();
        if !fs.is_ascii() || !usable_delimiter(char::from(fs)) {
            return None;
        }
        let [component, repetition, escape, subcomponent] =
            encoding_chars(char::from(fs), &self.text(2)).ok()?;
        Some(Delimiters {
            field: char::from(fs),
            component,
            repetition,
            escape,
            subcomponent,
            charset: self.text_charset.unwrap_or(Charset::Utf8),
        })
    }

    /// Component `i` (1-based) of MSH-`n`, split on [`Msh::component_separator`]. MSH
    /// fields do not repeat: a repetition separator in one is kept as it is (the parser's
    /// `component` would take the first repetition first).
    pub fn component(&self, n: usize, i: usize) -> Cow<'a, str> {
        match i {
            0 => Cow::Borrowed(""),
            i => part(self.text(n), self.component_separator(), i - 1),
        }
    }

    /// MSH-3, sending application.
    pub fn sending_application(&self) -> Cow<'a, str> {
        self.text(3)
    }

    /// MSH-4, sending facility.
    pub fn sending_facility(&self) -> Cow<'a, str> {
        self.text(4)
    }

    /// MSH-5, receiving application.
    pub fn receiving_application(&self) -> Cow<'a, str> {
        self.text(5)
    }

    /// MSH-6, receiving facility.
    pub fn receiving_facility(&self) -> Cow<'a, str> {
        self.text(6)
    }

    /// MSH-9.1, message code (`ORU`, `ADT` ...).
    pub fn message_type(&self) -> Cow<'a, str> {
        self.component(9, 1)
    }

    /// MSH-9.2, trigger event (`R01`, `A28` ...).
    pub fn trigger_event(&self) -> Cow<'a, str> {
        self.component(9, 2)
    }

    /// MSH-9.3, message structure (`ORU_R01` ...).
    pub fn message_structure(&self) -> Cow<'a, str> {
        self.component(9, 3)
    }

    /// MSH-10, message control id.
    pub fn control_id(&self) -> Cow<'a, str> {
        self.text(10)
    }

    /// MSH-11, processing id.
    pub fn processing_id(&self) -> Cow<'a, str> {
        self.text(11)
    }

    /// MSH-12, version id.
    pub fn version(&self) -> Cow<'a, str> {
        self.text(12)
    }

    /// MSH-17, country code.
    pub fn country(&self) -> Cow<'a, str> {
        self.text(17)
    }

    /// MSH-18 as written, blanks trimmed: the sender's name for its character set. Names
    /// (HL7 table 0211) are ASCII, so it is read as UTF-8 whatever set it names (bytes that
    /// do not decode are replaced).
    pub fn character_set(&self) -> Cow<'a, str> {
        trimmed(String::from_utf8_lossy(self.field(18)))
    }
}

#[cfg(test)]
mod tests;
