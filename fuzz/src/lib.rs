//! Oracles shared by the fuzz targets: independent, deliberately simple re-statements of
//! what dmpflow promises (well-formed XML, INS key, calendar dates), so a target checks the
//! product against a second implementation rather than against itself.

use roxmltree::ParsingOptions;

/// Reads `xml` with a conforming XML 1.0 parser: characters XML cannot carry, undeclared
/// entities, duplicate attributes, malformed tags and mismatched tags are errors. A DTD is
/// refused too: dmpflow never writes one and refuses embedded CDAs that carry one
/// (`cda.doctype.forbidden`).
pub fn parse_xml(xml: &str) -> Result<roxmltree::Document<'_>, roxmltree::Error> {
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: u32::MAX,
        ..ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(xml, opts)
}

/// Whether `xml` is well-formed (see [`parse_xml`]), with the parser's message if not.
pub fn check_well_formed(xml: &str) -> Result<(), String> {
    parse_xml(xml).map(|_| ()).map_err(|e| e.to_string())
}

/// Panics (a libFuzzer finding) unless `xml` is a well-formed document whose root is the
/// CDA R2 `ClinicalDocument` in the `urn:hl7-org:v3` namespace.
pub fn assert_cda(xml: &str, what: &str) {
    let doc = match parse_xml(xml) {
        Ok(d) => d,
        Err(e) => panic!("{what}: CDA is not well-formed XML: {e}"),
    };
    let root = doc.root_element();
    assert_eq!(
        (root.tag_name().namespace(), root.tag_name().name()),
        (Some("urn:hl7-org:v3"), "ClinicalDocument"),
        "{what}: root element is not v3 ClinicalDocument"
    );
}

/// True when `inner` is a slice of `outer` (same allocation, in bounds).
pub fn is_within(outer: &str, inner: &str) -> bool {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    i >= o && i + inner.len() <= o + outer.len()
}

/// The INS matricule rule, restated: 15 characters, 13-character body of digits (with 2A
/// or 2B as the department, counted 19 and 18), key = 97 - (body mod 97).
pub fn ins_key_valid(ins: &str) -> bool {
    let b = ins.as_bytes();
    if !ins.is_ascii() || b.len() != 15 || !b[13..].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let body: String = match &ins[5..7] {
        "2A" => format!("{}19{}", &ins[..5], &ins[7..13]),
        "2B" => format!("{}18{}", &ins[..5], &ins[7..13]),
        _ => ins[..13].to_string(),
    };
    let Ok(n) = body.parse::<u64>() else {
        return false;
    };
    if !body.bytes().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let key: u64 = ins[13..].parse().expect("two digits");
    key == 97 - n % 97
}

/// True for a real calendar date (Gregorian, leap years included).
pub fn is_calendar_date(year: u32, month: u32, day: u32) -> bool {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

/// `YYYY-MM-DD` that is a calendar date.
pub fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| {
        b[r.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| s[r].parse::<u32>().ok())
            .flatten()
    };
    match (digits(0..4), digits(5..7), digits(8..10)) {
        (Some(y), Some(m), Some(d)) => is_calendar_date(y, m, d),
        _ => false,
    }
}

/// A small deterministic generator (xorshift) for choices a target derives from its input,
/// such as where to cut a byte stream into reads.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oracles_agree_with_known_values() {
        // Test INS of the demo (key 97 - body mod 97).
        assert!(ins_key_valid("246013306364358"));
        assert!(!ins_key_valid("246013306364359"));
        assert!(is_iso_date("2024-02-29"));
        assert!(!is_iso_date("2023-02-29"));
        assert!(!is_iso_date("2023-02-31"));
        assert!(check_well_formed("<a/>").is_ok());
        assert!(check_well_formed("<a>\u{1}</a>").is_err());
        assert!(check_well_formed("<!DOCTYPE a><a/>").is_err());
        assert!(check_well_formed("<a>&x;</a>").is_err());
    }
}

/// The HTML tags the CDA renderer may write (render/src/cda.rs), restated.
const SAFE_TAGS: &[&str] = &[
    "div", "span", "del", "ins", "sub", "sup", "br", "caption", "ul", "ol", "li", "table", "thead",
    "tbody", "tfoot", "tr", "th", "td", "p",
];

/// Panics unless `html` is rendered narrative as promised: every `<` opens or closes an
/// allow-listed tag (text is escaped, so a `<` of the document never reaches the output),
/// tags are balanced, and the only attributes are `class` (lowercase letters, `-`,
/// spaces) and `colspan`/`rowspan` (1 to 100). Hence no `<script`, no `on…=` handler, no
/// `style`, `src` or `href`.
pub fn assert_safe_html(html: &str) {
    assert!(
        !html.to_ascii_lowercase().contains("<script"),
        "<script in rendered HTML"
    );
    let mut open: Vec<&str> = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        let after = &rest[lt + 1..];
        let gt = after.find('>').expect("a tag is closed");
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(name), "unbalanced </{name}>");
            continue;
        }
        let (name, mut attrs) = tag.split_once(' ').unwrap_or((tag, ""));
        assert!(
            SAFE_TAGS.contains(&name),
            "tag <{name}> is not allow-listed"
        );
        while !attrs.is_empty() {
            let (key, value) = attrs.split_once("=\"").expect("attribute value quoted");
            let (value, after) = value.split_once('"').expect("attribute value closed");
            match key {
                "class" => assert!(
                    value
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'-' || b == b' '),
                    "class value {value:?}"
                ),
                "colspan" | "rowspan" => assert!(
                    value.parse::<u32>().is_ok_and(|n| (1..=100).contains(&n)),
                    "{key} value {value:?}"
                ),
                other => panic!("attribute {other:?} on <{name}>"),
            }
            attrs = after.strip_prefix(' ').unwrap_or(after);
        }
        if name != "br" {
            open.push(name);
        }
    }
    assert!(open.is_empty(), "unclosed tags {open:?}");
}
