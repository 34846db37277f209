//! Character sets named by MSH-18 and their decoding to UTF-8.
//!
//! Only three sets occur on French feeds (`UNICODE UTF-8`, `8859/1`, `8859/15`), and the two
//! Latin ones are single-byte with a trivial mapping, so they are decoded by hand here: a
//! 256-entry mapping with eight exceptions does not justify a dependency such as
//! `encoding_rs` (large, and its WHATWG "latin1" label is really windows-1252, which would
//! be wrong for 8859-1 bytes 0x80–0x9F).

use std::borrow::Cow;

/// A character set dmpflow decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// `UNICODE UTF-8`.
    Utf8,
    /// `8859/1` (Latin-1).
    Latin1,
    /// `8859/15` (Latin-9: Latin-1 plus €, Œ, Š, Ž ...).
    Latin9,
}

impl Charset {
    /// Parses an MSH-18 value. `None` for anything dmpflow does not decode; the empty
    /// value is handled by the caller (it means "the configured default").
    pub fn from_msh18(value: &str) -> Option<Charset> {
        match value.trim() {
            "UNICODE UTF-8" => Some(Charset::Utf8),
            "8859/1" => Some(Charset::Latin1),
            "8859/15" => Some(Charset::Latin9),
            _ => None,
        }
    }

    /// The MSH-18 spelling of this set.
    pub fn as_msh18(self) -> &'static str {
        match self {
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Latin1 => "8859/1",
            Charset::Latin9 => "8859/15",
        }
    }

    /// Maps one byte of a single-byte set to its character (the caller handles UTF-8).
    #[inline]
    pub fn byte_to_char(self, b: u8) -> char {
        if self == Charset::Latin9 {
            // The eight code points where 8859-15 differs from 8859-1.
            match b {
                0xA4 => return '€',
                0xA6 => return 'Š',
                0xA8 => return 'š',
                0xB4 => return 'Ž',
                0xB8 => return 'ž',
                0xBC => return 'Œ',
                0xBD => return 'œ',
                0xBE => return 'Ÿ',
                _ => {}
            }
        }
        // 8859-1 is the first 256 code points of Unicode.
        char::from(b)
    }

    /// Decodes a whole byte string. UTF-8 input is borrowed when valid; `None` when the
    /// bytes are not valid in this set (only possible for UTF-8: every byte is a valid
    /// Latin character).
    pub fn decode(self, bytes: &[u8]) -> Option<Cow<'_, str>> {
        match self {
            Charset::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            Charset::Latin1 | Charset::Latin9 => {
                if bytes.is_ascii() {
                    // Pure ASCII is identical in every set: borrow without copying.
                    return std::str::from_utf8(bytes).ok().map(Cow::Borrowed);
                }
                let mut s = String::with_capacity(bytes.len() + bytes.len() / 8);
                s.extend(bytes.iter().map(|&b| self.byte_to_char(b)));
                Some(Cow::Owned(s))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin9_differs_from_latin1_at_eight_points() {
        let diff: Vec<u8> = (0u8..=255)
            .filter(|&b| Charset::Latin1.byte_to_char(b) != Charset::Latin9.byte_to_char(b))
            .collect();
        assert_eq!(diff, vec![0xA4, 0xA6, 0xA8, 0xB4, 0xB8, 0xBC, 0xBD, 0xBE]);
        assert_eq!(Charset::Latin9.decode(&[0x45, 0xA4, 0xE9]).unwrap(), "E€é");
        assert_eq!(Charset::Latin1.decode(&[0xA4, 0xE9]).unwrap(), "¤é");
    }

    #[test]
    fn msh18_names() {
        assert_eq!(Charset::from_msh18("UNICODE UTF-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_msh18("8859/15 "), Some(Charset::Latin9));
        assert_eq!(Charset::from_msh18("ASCII"), None);
        assert!(Charset::Utf8.decode(&[0xff]).is_none());
    }
}
