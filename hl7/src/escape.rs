//! HL7 v2 escape sequences: decoding a raw value to display text, and encoding text back.
//!
//! Works on `char` boundaries (`char_indices`), never on byte offsets derived from char
//! counts: that is the bug that garbles accented text in hl7-parser 0.3 (crates.md §2.2).

use std::borrow::Cow;

use super::Delimiters;

/// Resolves the escapes of `raw`. Borrows when there is nothing to resolve.
///
/// - `\F\ \S\ \T\ \R\ \E\` → the delimiter itself;
/// - `\Xhh..\` → the bytes, read in the message charset (kept verbatim if they do not
///   decode, e.g. a partial UTF-8 sequence, or hold a character XML 1.0 cannot carry);
/// - `\.br\` → `\n`;
/// - `\H\`, `\N\` (highlight on/off) → removed;
/// - anything else, and an escape without its closing delimiter, is kept verbatim with its
///   delimiters so no information is lost.
pub fn decode<'a>(raw: &'a str, d: &Delimiters) -> Cow<'a, str> {
    let esc = d.escape;
    let Some(first) = raw.find(esc) else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut rest = &raw[first..];
    let el = esc.len_utf8();
    while let Some(pos) = rest.find(esc) {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + el..];
        let Some(end) = after.find(esc) else {
            // Unterminated: keep the remainder as it is.
            out.push_str(&rest[pos..]);
            return Cow::Owned(out);
        };
        let body = &after[..end];
        match body {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(esc),
            ".br" => out.push('\n'),
            "H" | "N" => {}
            _ if body.len() > 1 && body.starts_with('X') && decode_hex(&body[1..], d, &mut out) => {
            }
            _ => {
                out.push(esc);
                out.push_str(body);
                out.push(esc);
            }
        }
        rest = &after[end + el..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Appends the characters of a `\X..\` body; false (nothing appended) when it is not an
/// even run of hex digits or the bytes are not valid in the message charset.
fn decode_hex(hex: &str, d: &Delimiters, out: &mut String) -> bool {
    let h = hex.as_bytes();
    if !h.len().is_multiple_of(2) || !h.iter().all(u8::is_ascii_hexdigit) {
        return false;
    }
    let bytes: Vec<u8> = h
        .chunks(2)
        .map(|p| (hexval(p[0]) << 4) | hexval(p[1]))
        .collect();
    match d.charset.decode(&bytes) {
        // Never produce what XML 1.0 cannot carry (the parser already refuses such a
        // message; this keeps `decode` safe on its own).
        Some(s) if s.chars().all(super::xmltext::is_xml_char) => {
            out.push_str(&s);
            true
        }
        _ => false,
    }
}

fn hexval(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// Escapes `text` so it can be placed in a field: every delimiter becomes its escape,
/// `\n` becomes `\.br\` and `\r` becomes `\X0D\` (a raw CR would end the segment).
pub fn encode(text: &str, d: &Delimiters) -> String {
    let esc = d.escape;
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        let code = if c == d.field {
            Some("F")
        } else if c == d.component {
            Some("S")
        } else if c == d.subcomponent {
            Some("T")
        } else if c == d.repetition {
            Some("R")
        } else if c == esc {
            Some("E")
        } else if c == '\n' {
            Some(".br")
        } else if c == '\r' {
            Some("X0D")
        } else {
            None
        };
        match code {
            Some(code) => {
                out.push(esc);
                out.push_str(code);
                out.push(esc);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Charset;

    fn d() -> Delimiters {
        Delimiters::standard(Charset::Utf8)
    }

    #[test]
    fn decodes_accented_text_with_escapes() {
        let raw = r"Prélèvement hémolysé\.br\Résultat du potassium \T\ contrôle";
        assert_eq!(
            decode(raw, &d()),
            "Prélèvement hémolysé\nRésultat du potassium & contrôle"
        );
    }

    #[test]
    fn decodes_every_kind() {
        assert_eq!(decode(r"a\F\b\S\c\R\d\E\e", &d()), r"a|b^c~d\e");
        assert_eq!(decode(r"\H\gras\N\", &d()), "gras");
        assert_eq!(decode(r"\X41C3A9\", &d()), "Aé");
        assert_eq!(decode(r"\XC3\", &d()), r"\XC3\");
        assert_eq!(decode(r"\X00\", &d()), r"\X00\", "a NUL is never produced");
        assert_eq!(decode(r"\Zfoo\ x", &d()), r"\Zfoo\ x");
        assert_eq!(decode(r"abc\F", &d()), r"abc\F");
        let l9 = Delimiters::standard(Charset::Latin9);
        assert_eq!(decode(r"\XA4\", &l9), "€");
    }

    #[test]
    fn borrows_when_nothing_to_do() {
        assert!(matches!(decode("plain é", &d()), Cow::Borrowed(_)));
    }

    #[test]
    fn encode_round_trips() {
        let s = "a|b^c~d\\e&f\ng\rh é";
        assert_eq!(decode(&encode(s, &d()), &d()), s);
    }
}
