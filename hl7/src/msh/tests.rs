//! Tests of the tolerant MSH reader: odd separators, missing fields, truncation by the
//! input and by the bound, non-UTF-8 bytes, line-end variants, and agreement with the full
//! parser on every message it accepts.

use proptest::prelude::*;

use super::*;
use crate::{Message, ReadOptions, split_messages};

const ORU: &[u8] = b"MSH|^~\\&|SIL|LAB|DMP|HOST|20240101||ORU^R01^ORU_R01|ID-1|P|2.5|||||FRA|UNICODE UTF-8\rPID|1\r";

fn read(raw: &[u8]) -> Msh<'_> {
    Msh::read(raw).expect("an MSH line")
}

#[test]
fn reads_every_field_callers_use() {
    let h = read(ORU);
    assert_eq!(h.offset(), 0);
    assert_eq!(h.field_separator(), b'|');
    assert_eq!(h.field(1), b"|");
    assert_eq!(h.field(2), b"^~\\&");
    assert_eq!(h.encoding().as_deref(), Some("^~\\&"));
    assert_eq!(h.component_separator(), '^');
    assert_eq!(h.sending_application(), "SIL");
    assert_eq!(h.sending_facility(), "LAB");
    assert_eq!(h.receiving_application(), "DMP");
    assert_eq!(h.receiving_facility(), "HOST");
    assert_eq!(h.text(7), "20240101");
    assert_eq!(h.text(9), "ORU^R01^ORU_R01");
    assert_eq!(h.message_type(), "ORU");
    assert_eq!(h.trigger_event(), "R01");
    assert_eq!(h.message_structure(), "ORU_R01");
    assert_eq!(h.control_id(), "ID-1");
    assert_eq!(h.processing_id(), "P");
    assert_eq!(h.version(), "2.5");
    assert_eq!(h.country(), "FRA");
    assert_eq!(h.character_set(), "UNICODE UTF-8");
    assert_eq!(h.charset(Charset::Latin1), Some(Charset::Utf8));
    assert_eq!(h.field_count(), 18);
    assert!(!h.truncated());
    assert_eq!(
        h.as_bytes(),
        &ORU[..ORU.iter().position(|&b| b == b'\r').unwrap()]
    );
    assert_eq!(h.delimiters(), Some(Delimiters::standard(Charset::Utf8)));
    // Absent fields and components are empty, never a panic.
    assert_eq!(h.field(0), b"");
    assert_eq!(h.field(19), b"");
    assert_eq!(h.text(99), "");
    assert_eq!(h.component(9, 0), "");
    assert_eq!(h.component(9, 4), "");
    assert_eq!(h.component(99, 1), "");
}

#[test]
fn non_pipe_field_separator() {
    // `MSH^~|\&`: the field separator is `^`, so `|` is the repetition separator and the
    // components of MSH-9 are split on `~`.
    let raw = b"MSH^~|\\&^APP^FAC^DMP^X^2024^^ORU~R01~ORU_R01^ID-7^T^2.6^^^^^FRA^8859/1\rPID^1";
    let h = read(raw);
    assert_eq!(h.field_separator(), b'^');
    assert_eq!(h.encoding().as_deref(), Some("~|\\&"));
    assert_eq!(h.component_separator(), '~');
    assert_eq!(h.sending_application(), "APP");
    assert_eq!(h.text(9), "ORU~R01~ORU_R01");
    assert_eq!(
        (h.message_type(), h.trigger_event(), h.message_structure()),
        ("ORU".into(), "R01".into(), "ORU_R01".into())
    );
    assert_eq!(h.control_id(), "ID-7");
    assert_eq!(h.processing_id(), "T");
    assert_eq!(h.charset(Charset::Utf8), Some(Charset::Latin1));
    let d = h.delimiters().unwrap();
    assert_eq!(
        (d.field, d.component, d.repetition, d.escape, d.subcomponent),
        ('^', '~', '|', '\\', '&')
    );
    // The same, `#` and `$`, Latin-9, in an MLLP frame (the gateway's own test header).
    let mut raw =
        b"MSH#$~\\&#APP#FAC\xc9#DMP#X#2024##ORU$R01$ORU_R01#ID-1#P#2.5#####FRA#8859/15\rPID#1\r"
            .to_vec();
    raw.insert(0, 0x0B);
    let h = read(&raw);
    assert_eq!(h.offset(), 1);
    assert_eq!(h.field_separator(), b'#');
    assert_eq!(h.encoding().as_deref(), Some("$~\\&"));
    assert_eq!(h.sending_facility(), "FACÉ");
    assert_eq!(h.trigger_event(), "R01");
    assert_eq!(h.control_id(), "ID-1");
    assert_eq!(h.character_set(), "8859/15");
    assert_eq!(h.charset(Charset::Utf8), Some(Charset::Latin9));
}

#[test]
fn separators_the_parser_would_refuse_are_still_read() {
    // A letter as field separator: read (tolerant), but not parser delimiters.
    let h = read(b"MSHA^~\\&AAPPAFAC");
    assert_eq!(h.field_separator(), b'A');
    assert_eq!(h.field(3), b"");
    assert_eq!(h.field(4), b"PP");
    assert_eq!(h.encoding().as_deref(), Some("^~\\&"));
    assert_eq!(h.delimiters(), None);
    // A non-ASCII byte: whatever it is.
    let h = read(b"MSH\xc9^~\\&\xc9APP");
    assert_eq!(h.field_separator(), 0xC9);
    assert_eq!(h.field(3), b"APP");
    assert_eq!(h.delimiters(), None);
    // MSH-2 the parser refuses: too short, repeated, holding the separator or a letter.
    for raw in [
        &b"MSH|^~|A"[..],
        b"MSH|^^\\&|A",
        b"MSH|^~\\||A",
        b"MSH|^~\\&x|A",
        b"MSH|^~\\&#!|A",
        b"MSH||A",
    ] {
        let h = read(raw);
        assert_eq!(h.encoding(), None, "{raw:?}");
        assert_eq!(h.component_separator(), '^', "{raw:?}");
        assert_eq!(h.delimiters(), None, "{raw:?}");
    }
    // Five characters (v2.7 truncation character) are usable.
    assert_eq!(read(b"MSH|^~\\&#|A").encoding().as_deref(), Some("^~\\&#"));
}

#[test]
fn multibyte_encoding_characters() {
    // The ANS examples' `^˜\&` (U+02DC, two bytes in UTF-8).
    let h = read("MSH|^˜\\&|SIL-Y|labo||||||015|P|2.5|||||FRA|UNICODE UTF-8\r".as_bytes());
    assert_eq!(h.encoding().as_deref(), Some("^˜\\&"));
    assert_eq!(h.delimiters().unwrap().repetition, '˜');
    assert_eq!(h.control_id(), "015");
    // A Latin byte in MSH-2 is read in the charset MSH-18 names.
    let raw = b"MSH|^\xa4\\&|A|||||||1|P|2.5|||||FRA|8859/15";
    assert_eq!(read(raw).encoding().as_deref(), Some("^€\\&"));
    let raw = b"MSH|^\xa4\\&|A|||||||1|P|2.5|||||FRA|8859/1";
    assert_eq!(read(raw).encoding().as_deref(), Some("^¤\\&"));
}

#[test]
fn no_msh_line() {
    for raw in [
        &b""[..],
        b"MS",
        b"MSH",
        b"MSH\r|^~\\&|A",
        b"MSH\n",
        b"PID|1||x",
        b"\rPID|1\rMSH|^~\\&|A",
        b"msh|^~\\&|A",
        b" \t\r\n\x0b",
        b"\x1cMSH|^~\\&|A",
    ] {
        assert!(Msh::read(raw).is_none(), "{raw:?}");
    }
}

#[test]
fn missing_fields_are_empty() {
    let h = read(b"MSH|^~\\&|A");
    assert_eq!(h.field_count(), 3);
    assert_eq!(h.sending_application(), "A");
    assert_eq!(h.sending_facility(), "");
    assert_eq!(h.control_id(), "");
    assert_eq!(h.message_type(), "");
    assert_eq!(h.trigger_event(), "");
    assert_eq!(h.charset(Charset::Latin1), Some(Charset::Latin1));
    let h = read(b"MSH|");
    assert_eq!(h.field_count(), 2);
    assert_eq!(h.field(2), b"");
    assert_eq!(h.encoding(), None);
    let h = read(b"MSH|^~\\&|||||||ADT|||");
    assert_eq!(h.message_type(), "ADT");
    assert_eq!(h.trigger_event(), "");
    assert_eq!(h.version(), "");
    assert_eq!(h.field_count(), 12);
}

#[test]
fn input_cut_inside_the_header_is_read_as_it_stands() {
    let h = read(b"MSH|^~\\&|APP|FA");
    assert!(!h.truncated());
    assert_eq!(h.sending_application(), "APP");
    assert_eq!(h.sending_facility(), "FA");
    // The MLLP decoder's head of an oversized frame: its first line only.
    let head = &ORU[..ORU.iter().position(|&b| b == b'\r').unwrap()];
    assert_eq!(read(head).control_id(), "ID-1");
}

#[test]
fn the_bound_is_never_passed() {
    // MSH-3 longer than the bound: MSH-2 is read, MSH-3 and what follows are absent.
    let mut raw = b"MSH|^~\\&|".to_vec();
    raw.extend(std::iter::repeat_n(b'x', 2 * MSH_MAX_BYTES));
    raw.extend_from_slice(b"|FAC|||2024||ORU^R01|ID-1|P|2.5\r");
    let h = read(&raw);
    assert!(h.truncated());
    assert_eq!(h.field_count(), 2);
    assert_eq!(h.encoding().as_deref(), Some("^~\\&"));
    assert_eq!(h.sending_application(), "");
    assert_eq!(h.control_id(), "");
    assert!(h.as_bytes().len() <= MSH_MAX_BYTES);
    // The full parser's bound (the message's length) sees it all.
    let all = Msh::read_within(&raw, raw.len()).unwrap();
    assert!(!all.truncated());
    assert_eq!(all.sending_application().len(), 2 * MSH_MAX_BYTES);
    assert_eq!(all.control_id(), "ID-1");

    // The bound falls inside MSH-10: MSH-3..MSH-9 are whole, MSH-10 is not there at all.
    let head = b"MSH|^~\\&|APP|FAC|||2024||ORU^R01|";
    let mut raw = head.to_vec();
    raw.extend(std::iter::repeat_n(b'9', MSH_MAX_BYTES));
    raw.extend_from_slice(b"|P|2.5\r");
    let h = read(&raw);
    assert!(h.truncated());
    assert_eq!(h.field_count(), 9);
    assert_eq!(h.trigger_event(), "R01");
    assert_eq!(h.control_id(), "");
    assert_eq!(h.as_bytes(), &head[..head.len() - 1]);

    // The bound falls just after a separator: the next field is cut, so absent.
    let mut raw = b"MSH|^~\\&|".to_vec();
    raw.resize(MSH_MAX_BYTES - 1, b'a');
    raw.extend_from_slice(b"|ID-1\r");
    let h = read(&raw);
    assert!(h.truncated());
    assert_eq!(h.field_count(), 3);
    assert_eq!(h.field(4), b"");

    // MSH-2 itself cut: the separator is still known.
    let mut raw = b"MSH|".to_vec();
    raw.resize(MSH_MAX_BYTES + 10, b'^');
    let h = read(&raw);
    assert_eq!((h.field_count(), h.field(2)), (1, &b""[..]));
    assert_eq!(h.as_bytes(), b"MSH|");
    assert_eq!(h.encoding(), None);

    // A line that ends exactly at the bound is whole.
    let mut raw = b"MSH|^~\\&|".to_vec();
    raw.resize(MSH_MAX_BYTES, b'b');
    let h = read(&raw);
    assert!(!h.truncated());
    assert_eq!(h.sending_application().len(), MSH_MAX_BYTES - 9);

    // Leading blanks count: past the bound there is no header to read.
    let mut raw = vec![b'\n'; MSH_MAX_BYTES];
    raw.extend_from_slice(ORU);
    assert!(Msh::read(&raw).is_none());
    assert_eq!(
        Msh::read_within(&raw, raw.len()).unwrap().control_id(),
        "ID-1"
    );
}

#[test]
fn fields_past_msh_25_are_not_located() {
    let mut raw = b"MSH|^~\\&".to_vec();
    for n in 3..=30 {
        raw.extend_from_slice(format!("|f{n}").as_bytes());
    }
    let mut long = raw.clone();
    long.extend(std::iter::repeat_n(b'z', 3 * MSH_MAX_BYTES));
    for raw in [&raw, &long] {
        let h = read(raw);
        assert_eq!(h.field_count(), MSH_FIELDS);
        assert_eq!(h.text(25), "f25");
        assert_eq!(h.field(26), b"");
        assert!(h.as_bytes().ends_with(b"|f25"));
    }
}

/// A header with MSH-4 and MSH-18 as given, every other field after MSH-3 empty.
fn with_msh4_msh18(msh4: &[u8], msh18: &[u8]) -> Vec<u8> {
    let mut raw = b"MSH|^~\\&|APP|".to_vec();
    raw.extend_from_slice(msh4);
    raw.extend_from_slice(&[b'|'; 14]);
    raw.extend_from_slice(msh18);
    raw
}

#[test]
fn non_utf8_bytes() {
    // No MSH-18: UTF-8, with what does not decode replaced.
    let h = read(b"MSH|^~\\&|APP|FAC\xc9|DMP");
    assert_eq!(h.field(4), b"FAC\xc9");
    assert_eq!(h.sending_facility(), "FAC\u{FFFD}");
    assert_eq!(h.receiving_application(), "DMP");
    // MSH-18 names Latin-1: decoded.
    let raw = with_msh4_msh18(b"FAC\xc9", b"8859/1");
    let h = read(&raw);
    assert_eq!(h.character_set(), "8859/1");
    assert_eq!(h.sending_facility(), "FACÉ");
    // MSH-18 names a set dmpflow does not decode, or is not UTF-8 itself: lossy UTF-8.
    let raw = with_msh4_msh18(b"FAC\xc9", b"ASCII");
    let h = read(&raw);
    assert_eq!(h.charset(Charset::Utf8), None);
    assert_eq!(h.character_set(), "ASCII");
    assert_eq!(h.sending_facility(), "FAC\u{FFFD}");
    let raw = with_msh4_msh18(b"FAC\xc9", b"8859/1\xa0");
    let h = read(&raw);
    assert_eq!(h.charset(Charset::Utf8), None);
    assert_eq!(h.character_set(), "8859/1\u{FFFD}");
    assert_eq!(h.sending_facility(), "FAC\u{FFFD}");
    // Blanks around the name are not part of it; blanks alone are the default.
    let raw = with_msh4_msh18(b"FAC\xc9", b"  8859/15 ");
    let h = read(&raw);
    assert_eq!(h.charset(Charset::Utf8), Some(Charset::Latin9));
    assert_eq!(h.character_set(), "8859/15");
    assert_eq!(h.sending_facility(), "FAC\u{c9}");
    // A Unicode blank is trimmed too, and the name read as UTF-8 in any set.
    let raw = with_msh4_msh18(b"FAC\xc9", "\u{a0}8859/15".as_bytes());
    let h = read(&raw);
    assert_eq!(h.charset(Charset::Utf8), Some(Charset::Latin9));
    assert_eq!(h.character_set(), "8859/15");
    assert_eq!(h.text(18), "Â\u{a0}8859/15");
    let raw = with_msh4_msh18(b"FAC", b" \t");
    assert_eq!(read(&raw).charset(Charset::Latin9), Some(Charset::Latin9));
    // Invalid UTF-8 where UTF-8 is declared.
    let raw = with_msh4_msh18(b"\xff\xfe", b"UNICODE UTF-8");
    let h = read(&raw);
    assert_eq!(h.sending_facility(), "\u{FFFD}\u{FFFD}");
    assert_eq!(h.sending_application(), "APP");
}

#[test]
fn line_ends_and_what_transports_add() {
    let header = "MSH|^~\\&|SIL|LAB|||||ORU^R01|ID-1|P|2.5";
    for (lead, end) in [
        ("", "\r"),
        ("", "\n"),
        ("", "\r\n"),
        ("", ""),
        ("\x0b", "\r"),
        ("\u{FEFF}", "\r\n"),
        ("\r\n\r\n", "\n"),
        (" \t\n", "\r"),
        ("\x0b\r\n\u{FEFF}", "\r"),
        ("\u{FEFF}\r\n", "\n"),
    ] {
        let raw = if end.is_empty() {
            format!("{lead}{header}")
        } else {
            format!("{lead}{header}{end}PID|1{end}")
        };
        let h = read(raw.as_bytes());
        assert_eq!(h.offset(), lead.len(), "{lead:?}{end:?}");
        assert_eq!(h.as_bytes(), header.as_bytes(), "{lead:?}{end:?}");
        assert_eq!(h.control_id(), "ID-1");
        assert_eq!(h.version(), "2.5");
    }
}

/// What `dmpflow normalize` shows and guesses the feed from: MSH-9 and the separators.
#[test]
fn message_type_for_display_and_feed_guessing() {
    for (raw, shown, code) in [
        (
            &b"MSH|^~\\&|A|B|||||ADT^A28^ADT_A05|1"[..],
            "ADT^A28^ADT_A05",
            "ADT",
        ),
        (b"MSH^~|\\&^A^B^^^^^RDS~O13^1", "RDS~O13", "RDS"),
        (b"\x0bMSH|^~\\&|A|B|||||ORU^R01|1\r", "ORU^R01", "ORU"),
        (b"MSH|^~\\&|A", "", ""),
    ] {
        let h = read(raw);
        assert_eq!(h.text(9), shown, "{raw:?}");
        assert_eq!(h.message_type(), code, "{raw:?}");
    }
}

/// Every demo message: what the reader says is what the full parser says.
#[test]
fn agrees_with_the_parser_on_the_demo_messages() {
    let files: [&[u8]; 5] = [
        include_bytes!("../../../demo/lab.hl7"),
        include_bytes!("../../../demo/imaging.hl7"),
        include_bytes!("../../../demo/cancer.hl7"),
        include_bytes!("../../../demo/pharmacy.hl7"),
        include_bytes!("../../../demo/identity.hl7"),
    ];
    let (mut agreed, mut refused) = (0, 0);
    for file in files {
        for item in split_messages(file) {
            let bytes = item.expect("demo files frame cleanly").bytes;
            if Message::parse(bytes, &ReadOptions::default()).is_ok() {
                assert_agrees(bytes);
                agreed += 1;
            } else {
                // The demo's refused message (MSH-18 KOI8-R): its header is still read.
                let h = read(bytes);
                assert_eq!(h.charset(Charset::Utf8), None);
                assert!(!h.control_id().is_empty());
                refused += 1;
            }
        }
    }
    assert!(
        agreed >= 200 && refused >= 1,
        "{agreed} agreed, {refused} refused"
    );
}

/// The reader and the parser agree on a message the parser accepts.
fn assert_agrees(bytes: &[u8]) {
    let m = Message::parse(bytes, &ReadOptions::default()).expect("parses");
    let seg = m.segment_at(0).expect("MSH");
    let h = Msh::read_within(bytes, bytes.len()).expect("an MSH line");
    assert_eq!(h.delimiters().as_ref(), Some(m.delimiters()));
    assert_eq!(h.charset(Charset::Utf8), Some(m.charset()));
    for n in 1..=MSH_FIELDS {
        assert_eq!(h.text(n), seg.field(n).raw(), "MSH-{n}");
    }
    // MSH-9 does not repeat: the reader splits it on the component separator as it is (as
    // the gateway's ACK always did), the parser takes its first repetition first.
    if !seg.field(9).raw().contains(m.delimiters().repetition) {
        assert_eq!(h.message_type(), seg.field(9).component(1).raw());
        assert_eq!(h.trigger_event(), seg.field(9).component(2).raw());
        assert_eq!(h.message_structure(), seg.field(9).component(3).raw());
    }
}

/// Bytes biased towards what a header reader trips on.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"MSH".to_vec()),
            Just(b"|".to_vec()),
            Just(b"^~\\&".to_vec()),
            Just(b"8859/1".to_vec()),
            Just(vec![b'\r']),
            Just(vec![b'\n']),
            Just(vec![0x0B]),
            Just(vec![0xEF, 0xBB, 0xBF]),
            prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    /// Never panics, never looks past the bound, every field lies inside what was read.
    #[test]
    fn any_bytes_are_safe(raw in header_bytes(), max in 0usize..64) {
        for bound in [max, MSH_MAX_BYTES] {
            if let Some(h) = Msh::read_within(&raw, bound) {
                let seen = &raw[..raw.len().min(bound)];
                let read = h.as_bytes();
                prop_assert!(h.offset() + read.len() <= seen.len());
                prop_assert_eq!(&seen[h.offset()..h.offset() + read.len()], read);
                for n in 0..=MSH_FIELDS + 2 {
                    let f = h.field(n);
                    if !f.is_empty() {
                        let at = f.as_ptr() as usize - read.as_ptr() as usize;
                        prop_assert!(at + f.len() <= read.len());
                    }
                    let _ = h.text(n);
                    let _ = h.component(n, 2);
                }
                let _ = (h.encoding(), h.delimiters(), h.character_set());
            }
        }
    }

    /// Inside the bound, MSH-n is the first line split on the separator (part n-1).
    #[test]
    fn fields_are_the_line_split_on_the_separator(
        fs in prop::sample::select(vec![b'|', b'^', b'#', b'A', b' ', 0xC9]),
        fields in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6), 0..30),
    ) {
        let mut line = b"MSH".to_vec();
        for f in &fields {
            line.push(fs);
            line.extend(f.iter().filter(|&&b| b != fs && b != b'\r' && b != b'\n'));
        }
        line.push(fs);
        let h = Msh::read(&line).unwrap();
        let parts: Vec<&[u8]> = line.split(|&b| b == fs).collect();
        for n in 2..=MSH_FIELDS {
            prop_assert_eq!(h.field(n), parts.get(n - 1).copied().unwrap_or(&[]), "MSH-{}", n);
        }
    }

    /// On generated messages the parser accepts, the reader agrees with it.
    #[test]
    fn agrees_with_the_parser(
        fields in prop::collection::vec("[A-Za-z0-9 ^~&.-]{0,8}", 0..24),
        charset in prop::sample::select(vec!["", "UNICODE UTF-8", "8859/1", "8859/15"]),
    ) {
        let mut msg = String::from("MSH|^~\\&");
        for (i, f) in fields.iter().enumerate() {
            msg.push('|');
            // MSH-18 (index 15 here) is the charset.
            msg.push_str(if i == 15 { charset } else { f });
        }
        msg.push_str("\rPID|1\r");
        assert_agrees(msg.as_bytes());
    }
}
