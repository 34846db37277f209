//! HL7 v2 acknowledgements (original mode ACK) for the MLLP gateway, sans-IO.
//!
//! The ACK answers in the sender's own terms: its field separator and encoding
//! characters (MSH-1/MSH-2, e.g. the ANS examples' `^˜\&`), its character set (MSH-18,
//! re-encoded to ISO-8859-1/15 bytes when the sender used them), and MSA-2 = the received
//! MSH-10 so the sender can match the answer. AE/AR carry an ERR segment with the HL7
//! table 0357 code, dmpflow's stable reason code and a short text: never message
//! content, which may be patient data.
//!
//! The sender's header is read by [`read_header`] with `dmpflow-hl7`'s tolerant MSH reader,
//! so even a message the parser refuses, or the first line kept of a frame over the
//! gateway's `--max-frame`, is answered with its MSH-10.

use dmpflow_hl7::{Charset, Msh};

/// MSA-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    /// AA: durably accepted.
    Accept,
    /// AE: the message is fine but could not be accepted now (retry later).
    Error,
    /// AR: the message is refused as sent (retrying the same bytes will not help).
    Reject,
}

impl AckCode {
    pub fn as_str(self) -> &'static str {
        match self {
            AckCode::Accept => "AA",
            AckCode::Error => "AE",
            AckCode::Reject => "AR",
        }
    }
}

/// The character set the ACK is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCharset {
    Utf8,
    Latin1,
    Latin9,
}

/// The sender's MSH fields an ACK echoes, as they appear on the wire (already escaped,
/// so they are copied verbatim).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub field_sep: char,
    /// MSH-2 (4 encoding characters, sometimes 5 in v2.7+).
    pub encoding: String,
    pub sending_app: String,
    pub sending_facility: String,
    pub receiving_app: String,
    pub receiving_facility: String,
    /// MSH-9.2, echoed as the ACK's trigger event.
    pub trigger: String,
    /// MSH-10: becomes MSA-2.
    pub control_id: String,
    /// MSH-11.
    pub processing_id: String,
    /// MSH-12.
    pub version: String,
    /// MSH-17.
    pub country: String,
    /// MSH-18 as written by the sender (empty = the default set).
    pub charset: String,
}

impl Inbound {
    /// What an ACK can still say when nothing of the MSH could be read.
    pub fn unknown() -> Self {
        Inbound {
            field_sep: '|',
            encoding: "^~\\&".into(),
            sending_app: String::new(),
            sending_facility: String::new(),
            receiving_app: String::new(),
            receiving_facility: String::new(),
            trigger: String::new(),
            control_id: String::new(),
            processing_id: "P".into(),
            version: "2.5".into(),
            country: String::new(),
            charset: String::new(),
        }
    }

    fn component(&self) -> char {
        self.encoding.chars().next().unwrap_or('^')
    }

    /// What an ACK echoes of a header read by [`Msh::read`]: a field separator that is not
    /// a visible ASCII character reads as nothing ([`Inbound::unknown`]); an unusable MSH-2
    /// is replaced by `^~\&`, an empty MSH-11 by `P` and an empty MSH-12 by `2.5`.
    pub fn from_msh(msh: &Msh<'_>) -> Inbound {
        let mut inbound = Inbound::unknown();
        let fs = msh.field_separator();
        if !fs.is_ascii_graphic() {
            return inbound;
        }
        inbound.field_sep = char::from(fs);
        if let Some(enc) = msh.encoding() {
            inbound.encoding = enc.into_owned();
        }
        inbound.sending_app = msh.sending_application().into_owned();
        inbound.sending_facility = msh.sending_facility().into_owned();
        inbound.receiving_app = msh.receiving_application().into_owned();
        inbound.receiving_facility = msh.receiving_facility().into_owned();
        inbound.trigger = msh.trigger_event().into_owned();
        inbound.control_id = msh.control_id().into_owned();
        let pid = msh.processing_id();
        if !pid.is_empty() {
            inbound.processing_id = pid.into_owned();
        }
        let version = msh.version();
        if !version.is_empty() {
            inbound.version = version.into_owned();
        }
        inbound.country = msh.country().into_owned();
        inbound.charset = msh.character_set().into_owned();
        inbound
    }
}

/// The sender's header as an ACK needs it, read from the raw bytes so that even a message
/// the parser refuses can be answered with its MSH-10.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    pub inbound: Inbound,
    /// The set the ACK is written in: MSH-18's when it is 8859/1 or 8859/15, else UTF-8.
    pub charset: AckCharset,
}

/// Reads the sender's MSH from the first line of `raw` ([`Msh::read`]: MLLP start block,
/// blank lines and byte-order mark skipped, at most [`dmpflow_hl7::msh::MSH_MAX_BYTES`]
/// looked at). Tolerant by design: this only serves the answer, so it never fails; what
/// cannot be read takes [`Inbound::unknown`]'s values.
pub fn read_header(raw: &[u8]) -> RawHeader {
    let Some(msh) = Msh::read(raw).filter(|m| m.field_separator().is_ascii_graphic()) else {
        return RawHeader {
            inbound: Inbound::unknown(),
            charset: AckCharset::Utf8,
        };
    };
    let charset = match msh.charset(Charset::Utf8) {
        Some(Charset::Latin1) => AckCharset::Latin1,
        Some(Charset::Latin9) => AckCharset::Latin9,
        _ => AckCharset::Utf8,
    };
    RawHeader {
        inbound: Inbound::from_msh(&msh),
        charset,
    }
}

/// Why a message is not accepted, as the ERR segment states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckError<'a> {
    /// HL7 table 0357 code (`100` segment sequence, `102` data type, `200` unsupported
    /// message type, `207` application internal error ...).
    pub hl7_code: &'a str,
    /// dmpflow's stable reason code (`hl7.msh.missing`, `kafka.unavailable` ...).
    pub reason: &'a str,
    /// Human-readable explanation, free of message content.
    pub text: &'a str,
}

/// Text of HL7 table 0357 codes used here.
fn hl7_code_text(code: &str) -> &'static str {
    match code {
        "0" => "Message accepted",
        "100" => "Segment sequence error",
        "101" => "Required field missing",
        "102" => "Data type error",
        "103" => "Table value not found",
        "200" => "Unsupported message type",
        "201" => "Unsupported event code",
        "203" => "Unsupported version id",
        "206" => "Application record locked",
        _ => "Application internal error",
    }
}

/// Escapes delimiters in free text we put in a field (HL7 escape sequences).
fn escape(text: &str, inb: &Inbound) -> String {
    let enc: Vec<char> = inb.encoding.chars().collect();
    let (comp, rep, esc, sub) = (
        enc.first().copied().unwrap_or('^'),
        enc.get(1).copied().unwrap_or('~'),
        enc.get(2).copied().unwrap_or('\\'),
        enc.get(3).copied().unwrap_or('&'),
    );
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = if c == inb.field_sep {
            Some('F')
        } else if c == comp {
            Some('S')
        } else if c == rep {
            Some('R')
        } else if c == esc {
            Some('E')
        } else if c == sub {
            Some('T')
        } else {
            None
        };
        match code {
            Some(k) => {
                out.push(esc);
                out.push(k);
                out.push(esc);
            }
            // A line break would end the segment: flatten it.
            None if c == '\r' || c == '\n' => out.push(' '),
            None => out.push(c),
        }
    }
    out
}

/// Builds the ACK text (segments ended by `\r`). `ack_id` is this ACK's own MSH-10 and
/// `timestamp` its MSH-7 (see [`hl7_timestamp`]).
pub fn build_ack(
    inb: &Inbound,
    code: AckCode,
    ack_id: &str,
    timestamp: &str,
    err: Option<&AckError<'_>>,
) -> String {
    let f = inb.field_sep;
    let c = inb.component();
    let mut s = String::with_capacity(256);
    // MSH-1..MSH-18; sender and receiver swap.
    let msh: [&str; 17] = [
        &inb.encoding,
        &inb.receiving_app,
        &inb.receiving_facility,
        &inb.sending_app,
        &inb.sending_facility,
        timestamp,
        "",
        "", // MSH-9, written below (needs the component separator)
        ack_id,
        &inb.processing_id,
        &inb.version,
        "",
        "",
        "",
        "",
        &inb.country,
        &inb.charset,
    ];
    s.push_str("MSH");
    for (i, v) in msh.iter().enumerate() {
        s.push(f);
        if i == 7 {
            s.push_str("ACK");
            if !inb.trigger.is_empty() {
                s.push(c);
                s.push_str(&inb.trigger);
            }
            s.push(c);
            s.push_str("ACK");
        } else {
            s.push_str(v);
        }
    }
    // Drop empty trailing fields (MSH-17/18 when the sender had none).
    while s.ends_with(f) {
        s.pop();
    }
    s.push('\r');
    s.push_str("MSA");
    s.push(f);
    s.push_str(code.as_str());
    s.push(f);
    s.push_str(&inb.control_id);
    if let Some(e) = err {
        // MSA-3 (text message) is deprecated since v2.4 but still what many senders log.
        s.push(f);
        s.push_str(&escape(e.text, inb));
    }
    s.push('\r');
    if let Some(e) = err {
        // ERR-1 (deprecated) empty, ERR-3 HL7 error code, ERR-4 severity, ERR-5
        // application error code, ERR-8 user message.
        let severity = "E";
        s.push_str("ERR");
        for v in [
            String::new(),
            String::new(),
            format!(
                "{}{c}{}{c}HL70357",
                escape(e.hl7_code, inb),
                escape(hl7_code_text(e.hl7_code), inb)
            ),
            severity.to_string(),
            format!("{}{c}{c}DMPFLOW", escape(e.reason, inb)),
            String::new(),
            String::new(),
            escape(e.text, inb),
        ] {
            s.push(f);
            s.push_str(&v);
        }
        s.push('\r');
    }
    s
}

/// Encodes the ACK text in the sender's character set. A character the set cannot hold
/// becomes `?` (only possible in text we did not take from the sender).
pub fn encode_charset(text: &str, charset: AckCharset) -> Vec<u8> {
    match charset {
        AckCharset::Utf8 => text.as_bytes().to_vec(),
        AckCharset::Latin1 | AckCharset::Latin9 => text
            .chars()
            .map(|ch| latin_byte(ch, charset == AckCharset::Latin9).unwrap_or(b'?'))
            .collect(),
    }
}

/// The byte of `ch` in ISO-8859-1 or (latin9) ISO-8859-15.
fn latin_byte(ch: char, latin9: bool) -> Option<u8> {
    if latin9 {
        // The eight code points where 8859-15 differs from 8859-1.
        let special = match ch {
            '€' => Some(0xA4),
            'Š' => Some(0xA6),
            'š' => Some(0xA8),
            'Ž' => Some(0xB4),
            'ž' => Some(0xB8),
            'Œ' => Some(0xBC),
            'œ' => Some(0xBD),
            'Ÿ' => Some(0xBE),
            _ => None,
        };
        if special.is_some() {
            return special;
        }
        if matches!(
            ch as u32,
            0xA4 | 0xA6 | 0xA8 | 0xB4 | 0xB8 | 0xBC | 0xBD | 0xBE
        ) {
            // These Latin-1 characters (¤ ¦ ¨ ´ ¸ ¼ ½ ¾) do not exist in 8859-15.
            return None;
        }
    }
    u8::try_from(ch as u32).ok()
}

/// HL7 DTM of a Unix time in UTC: `YYYYMMDDHHMMSS+0000`.
pub fn hl7_timestamp(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}+0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ans() -> Inbound {
        // The ANS ORU example's header: `^˜\&` (U+02DC), UTF-8.
        Inbound {
            field_sep: '|',
            encoding: "^˜\\&".into(),
            sending_app: "SIL-Y".into(),
            sending_facility: "labo".into(),
            receiving_app: "PFI-X".into(),
            receiving_facility: "Organisation-X".into(),
            trigger: "R01".into(),
            control_id: "015".into(),
            processing_id: "P".into(),
            version: "2.5".into(),
            country: "FRA".into(),
            charset: "UNICODE UTF-8".into(),
        }
    }

    #[test]
    fn aa_matches_the_ans_example_shape() {
        let ack = build_ack(&ans(), AckCode::Accept, "016", "202106060931", None);
        assert_eq!(
            ack,
            "MSH|^˜\\&|PFI-X|Organisation-X|SIL-Y|labo|202106060931||ACK^R01^ACK|016|P|2.5|||||FRA|UNICODE UTF-8\rMSA|AA|015\r"
        );
    }

    #[test]
    fn ar_has_an_err_segment_with_escaped_text() {
        let e = AckError {
            hl7_code: "200",
            reason: "hl7.message_type.unsupported",
            text: "message type XYZ^Q99 | not routed",
        };
        let ack = build_ack(&ans(), AckCode::Reject, "1", "20240101000000", Some(&e));
        let segs: Vec<&str> = ack.split('\r').collect();
        assert_eq!(
            segs[1],
            "MSA|AR|015|message type XYZ\\S\\Q99 \\F\\ not routed"
        );
        assert_eq!(
            segs[2],
            "ERR|||200^Unsupported message type^HL70357|E|hl7.message_type.unsupported^^DMPFLOW|||message type XYZ\\S\\Q99 \\F\\ not routed"
        );
    }

    #[test]
    fn custom_separators_are_used_everywhere() {
        let mut inb = ans();
        inb.field_sep = '#';
        inb.encoding = "$~\\&".into();
        inb.country.clear();
        inb.charset.clear();
        let e = AckError {
            hl7_code: "207",
            reason: "kafka.unavailable",
            text: "a#b$c",
        };
        let ack = build_ack(&inb, AckCode::Error, "9", "T", Some(&e));
        assert!(
            ack.starts_with("MSH#$~\\&#PFI-X#Organisation-X#SIL-Y#labo#T##ACK$R01$ACK#9#P#2.5\r")
        );
        assert!(ack.contains("MSA#AE#015#a\\F\\b\\S\\c\r"));
        assert!(ack.contains("#kafka.unavailable$$DMPFLOW#"));
    }

    #[test]
    fn latin9_encoding_of_euro_oe_and_accents() {
        assert_eq!(
            encode_charset("é€Œ", AckCharset::Latin9),
            vec![0xE9, 0xA4, 0xBC]
        );
        assert_eq!(encode_charset("é€", AckCharset::Latin1), vec![0xE9, b'?']);
        assert_eq!(encode_charset("¤", AckCharset::Latin9), vec![b'?']);
        assert_eq!(encode_charset("é", AckCharset::Utf8), "é".as_bytes());
    }

    /// The gateway's header tests (they were in src/mllp.rs; the gateway reads through this).
    #[test]
    fn header_of_a_latin9_message_with_custom_separators() {
        let mut raw = b"MSH#$~\\&#APP#FAC\xc9#DMP#X#2024##ORU$R01$ORU_R01#ID-1#P#2.5#####FRA#8859/15\rPID#1\r".to_vec();
        raw.insert(0, 0x0B);
        let hd = read_header(&raw);
        assert_eq!(hd.charset, AckCharset::Latin9);
        assert_eq!(hd.inbound.field_sep, '#');
        assert_eq!(hd.inbound.encoding, "$~\\&");
        assert_eq!(hd.inbound.sending_facility, "FACÉ");
        assert_eq!(hd.inbound.trigger, "R01");
        assert_eq!(hd.inbound.control_id, "ID-1");
        assert_eq!(hd.inbound.charset, "8859/15");
    }

    #[test]
    fn header_of_garbage_is_usable() {
        let hd = read_header(b"hello");
        assert_eq!(hd.inbound.control_id, "");
        assert_eq!(hd.inbound.encoding, "^~\\&");
        for raw in [&b""[..], b"MSH", b"MSH \r", b"MSH\xc9^~\\&\xc9A", b"PID|1"] {
            assert_eq!(read_header(raw), read_header(b"hello"), "{raw:?}");
        }
        assert_eq!(read_header(b"hello").inbound, Inbound::unknown());
    }

    #[test]
    fn header_fields_round_trip_into_the_ack() {
        let raw = "MSH|^˜\\&|SIL-Y|labo|PFI-X|Organisation-X|202106060930||ORU^R01^ORU_R01|015|P|2.5|||||FRA|UNICODE UTF-8\rPID|1\r";
        let hd = read_header(raw.as_bytes());
        assert_eq!(hd.inbound, ans());
        assert_eq!(hd.charset, AckCharset::Utf8);
        let ack = build_ack(&hd.inbound, AckCode::Accept, "016", "202106060931", None);
        assert!(ack.starts_with("MSH|^˜\\&|PFI-X|Organisation-X|SIL-Y|labo|"));
    }

    #[test]
    fn header_defaults_and_what_is_kept_as_sent() {
        // Unusable MSH-2, empty MSH-11/12: the defaults; a non-'|' separator is kept.
        let hd = read_header(b"MSH!^^\\&!A!B!!!!!ADT^A28!42!!\r");
        assert_eq!(hd.inbound.field_sep, '!');
        assert_eq!(hd.inbound.encoding, "^~\\&");
        assert_eq!(hd.inbound.trigger, "A28");
        assert_eq!(hd.inbound.control_id, "42");
        assert_eq!(
            (
                hd.inbound.processing_id.as_str(),
                hd.inbound.version.as_str()
            ),
            ("P", "2.5")
        );
        // An unknown MSH-18 is echoed as sent (trimmed); the ACK is then UTF-8.
        let hd = read_header(b"MSH|^~\\&|A|B||||||1|P|2.5|||||FRA| KOI8-R \r");
        assert_eq!(hd.inbound.charset, "KOI8-R");
        assert_eq!(hd.charset, AckCharset::Utf8);
        // The first line of a frame over --max-frame, cut inside MSH-12.
        let hd = read_header(b"MSH|^~\\&|A|B||||||ID-9|P|2.");
        assert_eq!(
            (hd.inbound.control_id.as_str(), hd.inbound.version.as_str()),
            ("ID-9", "2.")
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(hl7_timestamp(0), "19700101000000+0000");
        // 2024-02-29T12:34:56Z
        assert_eq!(hl7_timestamp(1_709_210_096), "20240229123456+0000");
    }
}
