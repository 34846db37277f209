//! Which text XML 1.0 can carry, checked once on the whole message at parse time.
//!
//! XML 1.0 `Char` excludes the C0 controls other than TAB, LF and CR, and U+FFFE/U+FFFF
//! (surrogates cannot occur in a Rust `str`). Such a character in a CDA makes it ill-formed,
//! and a NUL in a PostgreSQL text column is a permanent error, so a message holding one is
//! refused (`hl7.text.invalid`) rather than altered: a silently changed result is worse
//! than a dead letter the sender can fix.
//!
//! - Raw bytes: LF and CR cannot be inside a field (the reader splits segments on both),
//!   TAB is legal XML and kept. Everything else below 0x20 is refused, in every charset
//!   (8859 bytes below 0x20 are the same controls).
//! - Escapes: `\Xhh..\` decodes to bytes, so a NUL can arrive as `\X00\`. Rather than
//!   follow the pairing of escape delimiters at every level a value might be decoded at,
//!   every `\X<hex>\` run in the text is checked: a superset of what any decoding produces,
//!   so no path escapes the check (at worst a literal `X00` just after an escape is refused).
//!   `\X0D\`, `\X0A\` and `\X09\` stay allowed (XML carries them).
//!
//! Public because normalize's embedded-CDA reader holds received CDA text to the same rule.

use super::{Charset, Delimiters};

/// A byte that is never legal in XML 1.0 text (C0 except TAB, LF, CR).
#[inline]
fn forbidden_c0(b: u8) -> bool {
    b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')
}

/// `EF BF BE` / `EF BF BF` (U+FFFE, U+FFFF in UTF-8) at `i`.
#[inline]
fn nonchar_at(b: &[u8], i: usize) -> bool {
    b[i] == 0xEF && b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF))
}

/// Offset of the first character XML 1.0 cannot carry in UTF-8 text, if any.
///
/// Scanned 32 bytes at a time with a branch-free test the compiler vectorises (the lab
/// path is hot); a chunk that may hold one is then looked at byte by byte.
pub fn first_forbidden(b: &[u8]) -> Option<usize> {
    const CHUNK: usize = 32;
    let suspect = |c: u8| (c < 0x20) & (c != b'\t') & (c != b'\n') & (c != b'\r') | (c == 0xEF);
    let exact =
        |from: usize, to: usize| (from..to).find(|&i| forbidden_c0(b[i]) || nonchar_at(b, i));
    let mut i = 0;
    while i + CHUNK <= b.len() {
        if b[i..i + CHUNK]
            .iter()
            .fold(false, |acc, &c| acc | suspect(c))
            && let Some(p) = exact(i, i + CHUNK)
        {
            return Some(p);
        }
        i += CHUNK;
    }
    exact(i, b.len())
}

/// Offset of the first `\X<hex>\` escape whose bytes XML 1.0 cannot carry, if any.
pub(super) fn first_forbidden_hex_escape(text: &str, d: &Delimiters) -> Option<usize> {
    let esc = d.escape;
    // A search for the escape character (a memchr) and a look at the byte after it: a
    // two-character pattern goes through the general substring searcher, which cost more
    // than the rest of this check on every message.
    for (i, _) in text.match_indices(esc) {
        let Some(after) = text[i + esc.len_utf8()..].strip_prefix('X') else {
            continue;
        };
        let hex = after.bytes().take_while(u8::is_ascii_hexdigit).count();
        if hex == 0 || !after[hex..].starts_with(esc) {
            continue;
        }
        if hex_bytes_forbidden(&after.as_bytes()[..hex], d.charset) {
            return Some(i);
        }
    }
    None
}

/// Whether the bytes of a hex escape body (an odd trailing digit ignored, as the decoder
/// would not decode it anyway) hold a character XML 1.0 cannot carry.
fn hex_bytes_forbidden(hex: &[u8], charset: Charset) -> bool {
    let val = |c: u8| match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    };
    let mut bytes = hex.chunks_exact(2).map(|p| (val(p[0]) << 4) | val(p[1]));
    if charset != Charset::Utf8 {
        // Single-byte sets: only the C0 controls (no byte maps to U+FFFE/U+FFFF).
        return bytes.any(forbidden_c0);
    }
    let v: Vec<u8> = bytes.collect();
    (0..v.len()).any(|i| forbidden_c0(v[i]) || nonchar_at(&v, i))
}

/// Whether a decoded character may go into XML 1.0 text (used by the escape decoder as a
/// second line: it never produces what the parse-time check refuses).
pub fn is_xml_char(c: char) -> bool {
    (c >= ' ' || matches!(c, '\t' | '\n' | '\r')) && c != '\u{FFFE}' && c != '\u{FFFF}'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes() {
        assert_eq!(first_forbidden(b"abc\tdef\r\n"), None);
        for bad in [0x00u8, 0x01, 0x08, 0x0B, 0x0C, 0x0E, 0x1F] {
            for at in [0usize, 5, 31, 32, 40, 70] {
                let mut v = vec![b'a'; 80];
                v[at] = bad;
                assert_eq!(first_forbidden(&v), Some(at), "byte {bad:#x} at {at}");
            }
        }
        let mut v = "é".repeat(40).into_bytes();
        v.extend_from_slice("\u{FFFF}".as_bytes());
        assert_eq!(first_forbidden(&v), Some(80));
        assert_eq!(first_forbidden("\u{FFFE}".as_bytes()), Some(0));
        // U+FFFD and other EF-led characters are fine.
        assert_eq!(
            first_forbidden("\u{FFFD}\u{F000}".repeat(20).as_bytes()),
            None
        );
    }

    #[test]
    fn hex_escapes() {
        let d = Delimiters::standard(Charset::Utf8);
        assert_eq!(first_forbidden_hex_escape(r"a\X00\b", &d), Some(1));
        assert_eq!(first_forbidden_hex_escape(r"a\X410B\b", &d), Some(1));
        assert_eq!(first_forbidden_hex_escape(r"\XEFBFBF\", &d), Some(0));
        assert_eq!(
            first_forbidden_hex_escape(r"\X0D0A09\ \X41\ \X00", &d),
            None
        );
        assert_eq!(first_forbidden_hex_escape(r"\H\X1F\", &d), Some(2));
        let l1 = Delimiters::standard(Charset::Latin1);
        assert_eq!(first_forbidden_hex_escape(r"\XEFBFBF\", &l1), None);
        assert_eq!(first_forbidden_hex_escape(r"\X07\", &l1), Some(0));
    }
}
