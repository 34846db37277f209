//! CDA R2 writers for the CI-SIS models dmpflow generates: CR-BIO (`lab`), CR-IMG
//! (`imaging`) and eDISP-MED (`pharmacy`), on a shared French header (`header`).
//!
//! Every writer is a pure function from a typed record (`crate::model`) to the XML text.
//! This module holds the small XML writer they share; it escapes all text and attribute
//! values, so nothing in the writers concatenates markup by hand.

pub mod header;
pub mod imaging;
pub mod lab;
pub mod pharmacy;

mod pdf;

use std::io;
use std::sync::LazyLock;

use sha2::{Digest, Sha256};

/// The XML writer every CDA function writes into: one element per line, not indented.
///
/// Written here rather than taken from quick-xml's `Writer` (which the crate still uses to
/// *read* XML): the CDA writers only ever emit elements, attributes and text, and quick-xml
/// builds an owned `BytesStart` with an attribute buffer per element, which made allocation
/// the largest cost of normalize (bench/ANALYSIS.md). This one appends to a single pre-sized
/// `String`: a line break before every tag unless text precedes it, `<>&'"` escaped.
///
/// No indentation: two spaces per level were 37% of a CR-BIO's bytes, and every byte is
/// then compressed and hashed by normalize (the stored format), kept on every topic and
/// read back on every consultation. The line breaks stay, so the text is still one element
/// per line for a person, and the whitespace between elements is what it was (mixed content
/// in the narrative renders the same: a break is whitespace as the indentation was).
pub struct Xml {
    out: String,
    /// False right after text, so `<a>text</a>` stays on one line.
    line_break: bool,
}

impl Xml {
    fn new(capacity: usize) -> Xml {
        Xml {
            out: String::with_capacity(capacity),
            line_break: false,
        }
    }

    /// The line break before a tag (none right after text).
    fn break_line(&mut self) {
        if self.line_break {
            self.out.push('\n');
        }
    }

    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.break_line();
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push(' ');
            self.out.push_str(k);
            self.out.push_str("=\"");
            escape_into(&mut self.out, v);
            self.out.push('"');
        }
    }

    fn start(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.open(name, attrs);
        self.out.push('>');
        self.line_break = true;
    }

    fn end(&mut self, name: &str) {
        self.break_line();
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
        self.line_break = true;
    }

    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.open(name, attrs);
        self.out.push_str("/>");
        self.line_break = true;
    }

    fn text(&mut self, s: &str) {
        escape_into(&mut self.out, s);
        self.line_break = false;
    }

    /// A [`Fixed`] run of markup, copied in one piece.
    fn fixed(&mut self, run: &Fixed) {
        self.break_line();
        self.out.push_str(&run.0);
        self.line_break = true;
    }

    /// `bytes` as base64 text, encoded straight into the document (the alphabet has no XML
    /// special character, so there is nothing to escape): the PDF copy is the largest text
    /// of most documents.
    fn base64_text(&mut self, bytes: &[u8]) {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut self.out);
        self.line_break = false;
    }
}

/// A run of markup that is the same in every document (an entry's element with its
/// templateIds, a table's head, the closing of a constant block), written once per process
/// by the writer's own functions and copied in one piece from then on.
///
/// Why: much of a CR-BIO is such runs, and element by element each costs a call per tag,
/// name, attribute and escaped value (the writer was half of lab normalize, its tags and
/// escaping a third of that). Built by the same functions as the rest, a run is the bytes
/// they would write in its place (`a_fixed_run_is_what_its_writer_writes_in_place` checks
/// it; every flow's documents came out byte for byte the same when the writers took runs
/// up), with no markup written by hand. A run starts and ends with a tag: `Xml::fixed` puts
/// the line break before it, as before any tag.
pub(crate) struct Fixed(LazyLock<String>);

impl Fixed {
    /// A run written by `write` on its first use.
    pub(crate) const fn new(write: fn() -> String) -> Fixed {
        Fixed(LazyLock::new(write))
    }

    /// What `write` writes into a fresh writer: for the function given to [`Fixed::new`].
    pub(crate) fn build(write: impl FnOnce(&mut Xml) -> io::Result<()>) -> String {
        let mut w = Xml::new(512);
        write(&mut w).expect("writing to a String cannot fail");
        assert!(
            w.out.starts_with('<') && w.out.ends_with('>'),
            "a fixed run starts and ends with a tag"
        );
        w.out
    }
}

/// `<name>`: the start tag alone, for a [`Fixed`] run that leaves an element open.
pub(crate) fn start(w: &mut Xml, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
    w.start(name, attrs);
    Ok(())
}

/// `<text><table border="1"><thead>` with one `th` per header, up to `<tbody>`: the head of
/// a narrative table, for a [`Fixed`] run (CR-BIO's results, eDISP-MED's lines).
pub(crate) fn narrative_table_head(w: &mut Xml, headers: &[&str]) -> io::Result<()> {
    start(w, "text", &[])?;
    start(w, "table", &[("border", "1")])?;
    start(w, "thead", &[])?;
    start(w, "tr", &[])?;
    for th in headers {
        text(w, "th", &[], th)?;
    }
    end(w, "tr")?;
    end(w, "thead")?;
    start(w, "tbody", &[])
}

/// `</name>`: the end tag alone, for a [`Fixed`] run that closes elements.
pub(crate) fn end(w: &mut Xml, name: &str) -> io::Result<()> {
    w.end(name);
    Ok(())
}

/// The end tags of `names`, innermost first: the closing [`Fixed`] run of a constant block.
pub(crate) fn ends(w: &mut Xml, names: &[&str]) -> io::Result<()> {
    for name in names {
        w.end(name);
    }
    Ok(())
}

/// Appends `s` with the five XML special characters escaped.
///
/// Most values have none, so the text is first tested without a branch per byte: 16 bytes
/// at a time as one vector compare, and a value of 4 to 15 bytes (most attribute values)
/// as two overlapping words tested in a register (SWAR); one that passes is copied
/// in one piece. Only from the first block holding a special does it go byte by byte.
fn escape_into(out: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let len = bytes.len();
    let mut clean = 0;
    if len >= 16 {
        while clean + 16 <= len {
            if block_has_special(bytes[clean..clean + 16].try_into().expect("16 bytes")) {
                break;
            }
            clean += 16;
        }
        // The last, partial block tested as the 16 bytes that end the text.
        if clean + 16 > len
            && (clean == len || !block_has_special(bytes[len - 16..].try_into().expect("16 bytes")))
        {
            out.push_str(s);
            return;
        }
    } else if len >= 8 {
        let head = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        let tail = u64::from_le_bytes(bytes[len - 8..].try_into().expect("8 bytes"));
        if !word_has_special(head) && !word_has_special(tail) {
            out.push_str(s);
            return;
        }
    } else if len >= 4 {
        // Two overlapping 4-byte words, widened (the upper half of zeros is not special).
        let head = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
        let tail = u32::from_le_bytes(bytes[len - 4..].try_into().expect("4 bytes"));
        if !word_has_special(u64::from(head) | (u64::from(tail) << 32)) {
            out.push_str(s);
            return;
        }
    }
    // The loop below slices only at the ASCII specials it finds, which are always char
    // boundaries (no byte of a multi-byte UTF-8 sequence is ASCII).
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate().skip(clean) {
        if !is_special(b) {
            continue;
        }
        let entity = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'\'' => "&apos;",
            _ => "&quot;",
        };
        out.push_str(&s[from..i]);
        out.push_str(entity);
        from = i + 1;
    }
    out.push_str(&s[from..]);
}

/// Whether `block` holds one of the five specials: a 0/1 byte per position, read back as
/// one 128-bit word, which the compiler turns into a few vector compares and no branch.
#[inline(always)]
fn block_has_special(block: &[u8; 16]) -> bool {
    let hits = block.map(|b| u8::from(is_special(b)));
    u128::from_ne_bytes(hits) != 0
}

/// Whether one of the eight bytes of `w` is a special: per special, the classic "has a zero
/// byte" test of `w` XOR that byte repeated (exact as a yes/no answer).
#[inline(always)]
fn word_has_special(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    SPECIALS
        .iter()
        .fold(0, |hit, &c| hit | zero_byte(w ^ (ONES * u64::from(c))))
        != 0
}

/// The bytes [`escape_into`] replaces with an entity.
const SPECIALS: [u8; 5] = *b"<>&'\"";

/// Whether `b` is one of [`SPECIALS`]: compares OR-ed without a branch (vectorisable).
#[inline(always)]
fn is_special(b: u8) -> bool {
    SPECIALS.iter().fold(false, |hit, &c| hit | (b == c))
}

/// `n` in decimal: its digits written at the end of `buf` (a `usize` has at most 20), and
/// the slice they fill. By hand where a `format!` or `to_string` per number was an allocation
/// (narrative IDs, the PDF copy's object numbers and offsets).
pub(crate) fn decimal_digits(n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// CDA and CI-SIS constants shared by the three models.
pub(crate) mod oid {
    pub const LOINC: &str = "2.16.840.1.113883.6.1";
    /// IdNat_PS (health professionals).
    pub const IDNAT_PS: &str = "1.2.250.1.71.4.2.1";
    /// IdNat_Struct (organisations).
    pub const IDNAT_STRUCT: &str = "1.2.250.1.71.4.2.2";
    /// TRE_R02 secteur d'activité (healthCareFacility/code).
    pub const TRE_R02: &str = "1.2.250.1.71.4.2.4";
    /// TRE_G15 profession/specialty.
    pub const TRE_G15: &str = "1.2.250.1.213.1.1.4.5";
    /// TRE_A01 cadre d'exercice (standardIndustryClassCode).
    pub const TRE_A01: &str = "1.2.250.1.213.1.1.4.9";
    pub const ADMINISTRATIVE_GENDER: &str = "2.16.840.1.113883.5.1";
    pub const CONFIDENTIALITY: &str = "2.16.840.1.113883.5.25";
    pub const ACT_CODE: &str = "2.16.840.1.113883.5.4";
    pub const OBSERVATION_INTERPRETATION: &str = "2.16.840.1.113883.5.83";
}

pub(crate) const NS_HL7: &str = "urn:hl7-org:v3";
pub(crate) const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// A fresh writer with the XML declaration already written. 64 KB: a lab report with its
/// PDF copy is typically 20-40 KB, so most documents never reallocate.
pub(crate) fn new_writer() -> Xml {
    let mut w = Xml::new(64 * 1024);
    w.out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    w.line_break = true;
    w
}

/// The finished document.
pub(crate) fn finish(w: Xml) -> String {
    w.out
}

// The helpers below return `io::Result` so the writers can keep using `?` and closures;
// writing into a `String` cannot fail.

/// `<name a="v" .../>`
pub(crate) fn empty(w: &mut Xml, name: &str, attrs: &[(&str, &str)]) -> io::Result<()> {
    w.empty(name, attrs);
    Ok(())
}

/// `<name a="v" ...>children</name>`
pub(crate) fn node<F>(
    w: &mut Xml,
    name: &str,
    attrs: &[(&str, &str)],
    children: F,
) -> io::Result<()>
where
    F: FnOnce(&mut Xml) -> io::Result<()>,
{
    w.start(name, attrs);
    children(w)?;
    w.end(name);
    Ok(())
}

/// `<name a="v" ...>text</name>` (text escaped).
pub(crate) fn text(w: &mut Xml, name: &str, attrs: &[(&str, &str)], value: &str) -> io::Result<()> {
    w.start(name, attrs);
    w.text(value);
    w.end(name);
    Ok(())
}

/// Multi-line text in narrative: lines separated by `<br/>`.
pub(crate) fn lines(w: &mut Xml, s: &str) -> io::Result<()> {
    for (i, line) in s.split('\n').enumerate() {
        if i > 0 {
            w.empty("br", &[]);
        }
        if !line.is_empty() {
            w.text(line);
        }
    }
    Ok(())
}

/// `<templateId root=".."/>`, with an optional extension (model versions like "2024.01").
pub(crate) fn template_id(w: &mut Xml, root: &str, extension: Option<&str>) -> io::Result<()> {
    match extension {
        Some(ext) => empty(w, "templateId", &[("root", root), ("extension", ext)]),
        None => empty(w, "templateId", &[("root", root)]),
    }
}

/// A `code`-like element (code, translation, value xsi:type="CD" ...) written from a
/// `Coded`: empty display or system attributes are left out rather than written empty,
/// because the XSD rejects empty OIDs.
pub(crate) fn coded(w: &mut Xml, name: &str, c: &crate::model::Coded) -> io::Result<()> {
    let mut attrs = Attrs::new();
    attrs.push("code", &c.code);
    if !c.display.is_empty() {
        attrs.push("displayName", &c.display);
    }
    if !c.system.is_empty() {
        attrs.push("codeSystem", &c.system);
    }
    if c.system == oid::LOINC {
        attrs.push("codeSystemName", "LOINC");
    }
    empty(w, name, attrs.as_slice())
}

/// The attributes of an element whose list depends on the values, kept on the stack: a `Vec`
/// per coded element was an allocation and a free each. Not `smallvec`/`arrayvec` (neither is
/// a dependency of ours): the writers need only push and read back a list of at most four.
pub(crate) struct Attrs<'a> {
    list: [(&'a str, &'a str); Attrs::MAX],
    len: usize,
}

impl<'a> Attrs<'a> {
    const MAX: usize = 6;

    pub(crate) fn new() -> Attrs<'a> {
        Attrs {
            list: [("", ""); Attrs::MAX],
            len: 0,
        }
    }

    /// Panics past [`Attrs::MAX`]: the writers' lists are fixed in code, never from input.
    pub(crate) fn push(&mut self, name: &'a str, value: &'a str) {
        self.list[self.len] = (name, value);
        self.len += 1;
    }

    pub(crate) fn as_slice(&self) -> &[(&'a str, &'a str)] {
        &self.list[..self.len]
    }
}

/// A deterministic UUID (RFC 9562 version 8, "custom") from a list of strings. Used where
/// CI-SIS wants an `id` (sections, entries) but the record has none: the same record must
/// always give the same document, so random UUIDs are out.
pub(crate) fn uuid_for(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        // Separator so that ("ab","c") and ("a","bc") differ.
        h.update([0u8]);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC variant
    // Written digit by digit: a `format!` per byte cost 16 allocations per id, and a
    // document has dozens of ids.
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(x >> 4)] as char);
        out.push(HEX[usize::from(x & 0x0f)] as char);
    }
    out
}

/// A birth date `YYYY-MM-DD` (schemas::PatientIdentity) as a CDA TS `YYYYMMDD`.
pub(crate) fn date_to_ts(date: &str) -> String {
    date.chars().filter(|c| c.is_ascii_digit()).collect()
}

/// Whether `s` is a decimal the XSD accepts for PQ/@value (`-?digits[.digits]`).
pub(crate) fn is_decimal(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match frac {
        None => digits(int),
        Some(f) => (int.is_empty() || digits(int)) && digits(f),
    }
}

/// A French display form of an HL7 DTM (`20240104073500+0100` → `04/01/2024 07:35`), for
/// narrative text and the PDF copy. Falls back to the raw value when it is not a date.
pub(crate) fn human_time(ts: &str) -> String {
    let mut out = String::with_capacity(16);
    human_time_into(&mut out, ts);
    out
}

/// [`human_time`] appended to `out`.
pub(crate) fn human_time_into(out: &mut String, ts: &str) {
    let n = ts.bytes().take_while(u8::is_ascii_digit).count();
    // ASCII digits: every index below n is a char boundary.
    let d = &ts[..n];
    if n >= 8 {
        out.push_str(&d[6..8]);
        out.push('/');
        out.push_str(&d[4..6]);
        out.push('/');
        out.push_str(&d[0..4]);
        if n >= 12 {
            out.push(' ');
            out.push_str(&d[8..10]);
            out.push(':');
            out.push_str(&d[10..12]);
        }
    } else {
        out.push_str(ts);
    }
}

/// The "FR-Document-PDF-copie" section (1.2.250.1.213.1.1.2.243): a PDF rendering of the
/// document (`pdf`, written in base64), referenced from the narrative. `doc_id` seeds the
/// deterministic ids.
pub(crate) fn pdf_copy_section(w: &mut Xml, doc_id: &str, pdf: &[u8]) -> io::Result<()> {
    w.fixed(&PDF_SECTION_HEAD);
    empty(w, "id", &[("root", &uuid_for(&[doc_id, "pdf-section"]))])?;
    w.fixed(&PDF_ORGANIZER_HEAD);
    empty(w, "id", &[("root", &uuid_for(&[doc_id, "pdf-organizer"]))])?;
    w.fixed(&PDF_TYPE_HEAD);
    empty(w, "id", &[("root", &uuid_for(&[doc_id, "pdf-type"]))])?;
    w.fixed(&PDF_MEDIA_HEAD);
    w.base64_text(pdf);
    w.fixed(&PDF_SECTION_END);
    Ok(())
}

// The PDF copy section's markup between its three ids (`Fixed`: the same in every report).

/// Up to the section's id.
static PDF_SECTION_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        start(w, "component", &[])?;
        start(w, "section", &[])?;
        template_id(w, "1.2.250.1.213.1.1.2.243", None)
    })
});
/// The section's code, title and narrative, up to the organizer's id.
static PDF_ORGANIZER_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        empty(
            w,
            "code",
            &[
                ("code", "55108-5"),
                ("displayName", "Copie du document"),
                ("codeSystem", oid::LOINC),
                ("codeSystemName", "LOINC"),
            ],
        )?;
        text(w, "title", &[], "Copie du document")?;
        node(w, "text", &[], |w| {
            node(w, "table", &[("border", "0")], |w| {
                node(w, "tbody", &[], |w| {
                    node(w, "tr", &[], |w| {
                        node(w, "td", &[], |w| {
                            text(
                                w,
                                "content",
                                &[("ID", "pdf-copy-type")],
                                "Copie du document",
                            )?;
                            empty(w, "renderMultiMedia", &[("referencedObject", "pdf-copy")])
                        })
                    })
                })
            })
        })?;
        start(w, "entry", &[])?;
        start(
            w,
            "organizer",
            &[("classCode", "CLUSTER"), ("moodCode", "EVN")],
        )?;
        template_id(w, "1.2.250.1.213.1.1.3.18", None)
    })
});
/// The organizer's code and status, up to the document type observation's id.
static PDF_TYPE_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        empty(
            w,
            "code",
            &[
                ("code", "55107-7"),
                ("displayName", "Document attaché"),
                ("codeSystem", oid::LOINC),
                ("codeSystemName", "LOINC"),
            ],
        )?;
        empty(w, "statusCode", &[("code", "completed")])?;
        start(w, "component", &[])?;
        start(
            w,
            "observation",
            &[("classCode", "OBS"), ("moodCode", "EVN")],
        )?;
        template_id(w, "1.3.6.1.4.1.19376.1.5.3.1.4.13", None)?;
        template_id(w, "1.2.250.1.213.1.1.3.48", None)?;
        template_id(w, "1.2.250.1.213.1.1.3.48.18", None)
    })
});
/// The rest of the type observation, up to the PDF's base64 text.
static PDF_MEDIA_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        empty(
            w,
            "code",
            &[
                ("code", "69764-9"),
                ("displayName", "Type de document"),
                ("codeSystem", oid::LOINC),
                ("codeSystemName", "LOINC"),
            ],
        )?;
        node(w, "text", &[], |w| {
            empty(w, "reference", &[("value", "#pdf-copy-type")])
        })?;
        empty(w, "statusCode", &[("code", "completed")])?;
        empty(w, "effectiveTime", &[("nullFlavor", "NA")])?;
        empty(
            w,
            "value",
            &[
                ("xsi:type", "CD"),
                ("code", "55108-5"),
                ("displayName", "Copie du document"),
                ("codeSystem", oid::LOINC),
                ("codeSystemName", "LOINC"),
            ],
        )?;
        end(w, "observation")?;
        end(w, "component")?;
        start(w, "component", &[])?;
        start(
            w,
            "observationMedia",
            &[
                ("classCode", "OBS"),
                ("moodCode", "EVN"),
                ("ID", "pdf-copy"),
            ],
        )?;
        start(
            w,
            "value",
            &[("mediaType", "application/pdf"), ("representation", "B64")],
        )
    })
});
static PDF_SECTION_END: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        ends(
            w,
            &[
                "value",
                "observationMedia",
                "component",
                "organizer",
                "entry",
                "section",
                "component",
            ],
        )
    })
});

#[cfg(test)]
pub(crate) mod test_support {
    //! Synthetic records for the writers' unit tests (no real person, test INS OID).
    use crate::model::{DocumentHeader, Organisation, Professional};
    use dmpflow_schemas::{Lifecycle, PatientIdentity};
    use quick_xml::Reader;
    use quick_xml::events::Event;

    pub fn professional(id: &str, family: &str, given: &str) -> Professional {
        Professional {
            id: id.into(),
            family: family.into(),
            given: given.into(),
            specialty: "G15_10/SM03".into(),
        }
    }

    pub fn header(sector: &str) -> DocumentHeader {
        DocumentHeader {
            unique_id: "1.2.250.1.999.1.1.20240104.1".into(),
            set_id: "1.2.250.1.999.1.2.20240104.1".into(),
            version: 1,
            lifecycle: Lifecycle::Initial,
            replaces: None,
            effective_time: "20240104160500+0100".into(),
            patient: PatientIdentity {
                // 2 85 07 75 056 123, key 97 - (2850775056123 mod 97).
                ins: "285077505612370".into(),
                ins_oid: "1.2.250.1.213.1.4.10".into(),
                ipp: None,
                ipp_authority: None,
                birth_name: "TEST-ŒUVRE".into(),
                first_names: vec!["Zoé".into(), "Anne".into()],
                birth_date: "1985-07-14".into(),
                sex: "F".into(),
                birth_place: Some("75056".into()),
                identity_status: vec!["VALI".into()],
                other_ins: Vec::new(),
            },
            author: professional("801234567891", "BIOLO", "Marc"),
            organisation: Organisation {
                id: "1120459876".into(),
                name: "Laboratoire d'essai & fils".into(),
            },
            legal_authenticator: professional("801234567891", "BIOLO", "Marc"),
            facility_sector: sector.into(),
            practice_setting: "AMBULATOIRE".into(),
            service_start: None,
            service_stop: None,
            confidentiality: "N".into(),
        }
    }

    /// Checks that narrative IDs are unique and that every `reference value="#X"` (and
    /// `renderMultiMedia referencedObject`) points at an existing ID.
    pub fn check_references(xml: &str) {
        let mut reader = Reader::from_str(xml);
        let mut ids = Vec::new();
        let mut refs = Vec::new();
        loop {
            match reader.read_event().expect("well-formed") {
                Event::Start(e) | Event::Empty(e) => {
                    for a in e.attributes() {
                        let a = a.unwrap();
                        let v = a
                            .normalized_value(quick_xml::XmlVersion::default())
                            .unwrap()
                            .to_string();
                        match a.key.as_ref() {
                            "ID" => ids.push(v),
                            "referencedObject" => refs.push(v),
                            "value" if e.name().as_ref() == "reference" => {
                                refs.push(v.trim_start_matches('#').to_string())
                            }
                            _ => {}
                        }
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "duplicate narrative IDs: {ids:?}");
        for r in refs {
            assert!(ids.contains(&r), "reference #{r} points at no ID");
        }
    }

    /// Parses the whole document with quick-xml's reader (panics if not well-formed) and
    /// returns the element names in document order.
    pub fn parse_all(xml: &str) -> Vec<String> {
        let mut reader = Reader::from_str(xml);
        reader.config_mut().check_end_names = true;
        let mut names = Vec::new();
        loop {
            match reader.read_event() {
                Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                    names.push(e.name().as_ref().to_string())
                }
                Ok(Event::Eof) => break,
                Ok(_) => {}
                Err(e) => panic!("not well-formed at {}: {e}", reader.buffer_position()),
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run with every kind of content: an element left open, an attribute to escape, a
    /// child element, text, and the end of an element.
    static RUN: Fixed = Fixed::new(|| Fixed::build(write_run));

    fn write_run(w: &mut Xml) -> io::Result<()> {
        start(w, "a", &[("k", "v<&\"")])?;
        template_id(w, "1.2.3", Some("x"))?;
        text(w, "b", &[], "t > u")?;
        end(w, "a")
    }

    #[test]
    fn a_fixed_run_is_what_its_writer_writes_in_place() {
        // Whatever came before (a tag, text) and comes after (a tag, text).
        for (text_before, text_after) in
            [(false, false), (true, false), (false, true), (true, true)]
        {
            let mut direct = Xml::new(64);
            let mut copied = Xml::new(64);
            for w in [&mut direct, &mut copied] {
                w.start("p", &[]);
                if text_before {
                    w.text("before");
                }
            }
            write_run(&mut direct).unwrap();
            copied.fixed(&RUN);
            for w in [&mut direct, &mut copied] {
                if text_after {
                    w.text("after");
                }
                w.end("p");
            }
            assert_eq!(
                copied.out, direct.out,
                "text before {text_before}, after {text_after}"
            );
        }
    }

    #[test]
    #[should_panic(expected = "starts and ends with a tag")]
    fn a_fixed_run_cannot_end_in_text() {
        Fixed::build(|w| {
            start(w, "a", &[])?;
            w.text("open text");
            Ok(())
        });
    }

    #[test]
    fn uuid_is_stable_and_well_formed() {
        let a = uuid_for(&["1.2.3", "pdf"]);
        assert_eq!(a, uuid_for(&["1.2.3", "pdf"]));
        assert_ne!(a, uuid_for(&["1.2.3p", "df"]));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }

    #[test]
    fn escaping_matches_the_naive_rule_at_every_position() {
        let naive = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('\'', "&apos;")
                .replace('"', "&quot;")
        };
        let base = "Hémoglobine glyquée (HbA1c) — résultat normal, contrôle à 3 mois";
        for specials in ["<", ">", "&", "'", "\"", "<&>"] {
            for at in 0..=base.chars().count() {
                let mut s: String = base.chars().take(at).collect();
                s.push_str(specials);
                s.extend(base.chars().skip(at));
                let mut out = String::new();
                escape_into(&mut out, &s);
                assert_eq!(out, naive(&s), "special {specials:?} at char {at}");
            }
        }
        let mut out = String::new();
        escape_into(&mut out, base);
        assert_eq!(out, base);
        // Every length around the 16-byte chunks and the padded tail, special anywhere.
        for len in 0..40 {
            for at in 0..=len {
                let mut s: String = "abcdefghijklmnopqrstuvwxyz0123456789é-+"
                    .chars()
                    .take(len)
                    .collect();
                let at = s.char_indices().nth(at).map_or(s.len(), |(i, _)| i);
                s.insert(at, '"');
                let mut out = String::new();
                escape_into(&mut out, &s);
                assert_eq!(out, naive(&s), "quote at {at} of {len}");
                let clean: String = s.chars().filter(|&c| c != '"').collect();
                let mut out = String::new();
                escape_into(&mut out, &clean);
                assert_eq!(out, clean);
            }
        }
    }

    #[test]
    fn decimals() {
        assert!(is_decimal("1.950"));
        assert!(is_decimal("-3"));
        assert!(is_decimal(".5"));
        assert!(!is_decimal("1,5"));
        assert!(!is_decimal("1:40"));
        assert!(!is_decimal(""));
        assert!(!is_decimal("1."));
    }

    #[test]
    fn human_times() {
        assert_eq!(human_time("20240104073500+0100"), "04/01/2024 07:35");
        assert_eq!(human_time("20240104"), "04/01/2024");
        assert_eq!(human_time("2024"), "2024");
    }
}
