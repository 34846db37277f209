//! The reader of a received (embedded) CDA: reads the whole document, so well-formedness
//! is checked to the end, and collects the header elements dmpflow needs on the way.
//!
//! Bounded cost and a closed input language (issue #16 items 8 and 9):
//! - linear in size and depth: the open-element path is a stack of small `Tag`s matched
//!   as a slice (the previous reader copied the whole path into a new `Vec` at every tag,
//!   so cost grew with depth squared); nesting beyond `MAX_DEPTH` → `cda.xml.too_deep`;
//! - no DTD: a DOCTYPE (hence any DTD or entity declaration) or a reference to an entity
//!   other than the five XML ones → `cda.doctype.forbidden`, in text and in attribute
//!   values; character references must name a character XML 1.0 allows (`&#0;`, `&#1;`
//!   ... → `cda.xml.invalid`, as a conforming parser would refuse them), and so must the
//!   raw text;
//! - at most `Config::max_entries` `entry` elements → `cda.too_large`.

use dmpflow_schemas::reasons::{Reason, Reject};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

use crate::hl7::xmltext::{first_forbidden, is_xml_char};

const NS_V3: &str = "urn:hl7-org:v3";
/// Deepest element nesting accepted. CDA documents nest 20-40 levels (sections in
/// sections, entryRelationships); 256 leaves room for any real one.
pub const MAX_DEPTH: usize = 256;

/// An `II` (root + optional extension).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ii {
    pub root: String,
    pub extension: String,
}

impl Ii {
    /// The DMP uniqueId form: the root alone, or `root^extension`.
    pub fn as_unique_id(&self) -> String {
        if self.extension.is_empty() {
            self.root.clone()
        } else {
            format!("{}^{}", self.root, self.extension)
        }
    }
}

/// What dmpflow reads from a CDA header.
#[derive(Debug, Default)]
pub struct Header {
    pub id: Option<Ii>,
    pub set_id: Option<Ii>,
    pub version: Option<String>,
    pub code: Option<String>,
    /// codeSystem of ClinicalDocument/code (LOINC, or TRE_A05 for the non-LOINC types).
    pub code_system: Option<String>,
    pub title: String,
    pub effective_time: Option<String>,
    pub confidentiality: Option<String>,
    pub template_ids: Vec<String>,
    /// recordTarget, patientRole and patient elements seen: more than one of any names
    /// more than one patient (`cda.patient.ambiguous`).
    pub record_targets: usize,
    pub patient_roles: usize,
    pub patients: usize,
    pub patient_ids: Vec<Ii>,
    pub families: Vec<(String, String)>,
    pub givens: Vec<(String, String)>,
    pub gender: Option<String>,
    pub birth_time: Option<String>,
    pub birth_county: Option<String>,
    pub author_id: Option<Ii>,
    pub author_org: Option<Ii>,
    pub service_low: Option<String>,
    pub service_high: Option<String>,
    pub parent_id: Option<Ii>,
    pub non_xml_media_type: Option<String>,
    /// standardIndustryClassCode of the first serviceEvent's performer organisation, and of
    /// the author's organisation (the XDS practiceSettingCode, in that order of preference).
    pub performer_practice_setting: Option<String>,
    pub author_practice_setting: Option<String>,
}

/// The v3 element names the header paths use; everything else (and every element outside
/// the v3 namespace) is `Other`, so it never matches a header path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    ClinicalDocument,
    Id,
    SetId,
    VersionNumber,
    Code,
    EffectiveTime,
    ConfidentialityCode,
    TemplateId,
    Title,
    RecordTarget,
    PatientRole,
    Patient,
    Name,
    Family,
    Given,
    AdministrativeGenderCode,
    BirthTime,
    Birthplace,
    Place,
    Addr,
    County,
    Author,
    AssignedAuthor,
    RepresentedOrganization,
    StandardIndustryClassCode,
    Performer,
    AssignedEntity,
    DocumentationOf,
    ServiceEvent,
    Low,
    High,
    RelatedDocument,
    ParentDocument,
    Component,
    NonXmlBody,
    Text,
    Other,
}

fn tag(local: &str) -> Tag {
    use Tag::*;
    match local {
        "ClinicalDocument" => ClinicalDocument,
        "id" => Id,
        "setId" => SetId,
        "versionNumber" => VersionNumber,
        "code" => Code,
        "effectiveTime" => EffectiveTime,
        "confidentialityCode" => ConfidentialityCode,
        "templateId" => TemplateId,
        "title" => Title,
        "recordTarget" => RecordTarget,
        "patientRole" => PatientRole,
        "patient" => Patient,
        "name" => Name,
        "family" => Family,
        "given" => Given,
        "administrativeGenderCode" => AdministrativeGenderCode,
        "birthTime" => BirthTime,
        "birthplace" => Birthplace,
        "place" => Place,
        "addr" => Addr,
        "county" => County,
        "author" => Author,
        "assignedAuthor" => AssignedAuthor,
        "representedOrganization" => RepresentedOrganization,
        "standardIndustryClassCode" => StandardIndustryClassCode,
        "performer" => Performer,
        "assignedEntity" => AssignedEntity,
        "documentationOf" => DocumentationOf,
        "serviceEvent" => ServiceEvent,
        "low" => Low,
        "high" => High,
        "relatedDocument" => RelatedDocument,
        "parentDocument" => ParentDocument,
        "component" => Component,
        "nonXMLBody" => NonXmlBody,
        "text" => Text,
        _ => Other,
    }
}

/// Where captured text goes.
#[derive(Clone, Copy, PartialEq)]
enum Capture {
    Title,
    Family,
    Given,
    County,
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.try_get_attribute(name).ok().flatten().and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.trim().to_string())
    })
}

fn ii(e: &BytesStart<'_>) -> Ii {
    Ii {
        root: attr(e, "root").unwrap_or_default(),
        extension: attr(e, "extension").unwrap_or_default(),
    }
}

pub fn xml_invalid(what: &str) -> Reject {
    Reject::new(Reason::CdaXmlInvalid, what.to_string())
}

fn doctype_forbidden(what: &str) -> Reject {
    Reject::new(
        Reason::CdaDoctypeForbidden,
        format!(
            "embedded document holds {what}: only the five XML entities and character references are allowed"
        ),
    )
}

/// The character a reference (`amp`, `#233`, `#xE9`: the text between `&` and `;`)
/// stands for, or why it is refused.
pub fn resolve_ref(content: &str) -> Result<char, Reject> {
    let Some(num) = content.strip_prefix('#') else {
        return match content {
            "amp" => Ok('&'),
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "quot" => Ok('"'),
            "apos" => Ok('\''),
            _ => Err(doctype_forbidden("a reference to an undeclared entity")),
        };
    };
    let (digits, radix) = match num.strip_prefix('x') {
        Some(h) => (h, 16),
        None => (num, 10),
    };
    let bad = || xml_invalid("a character reference names a character XML 1.0 does not allow");
    // from_str_radix accepts a leading '+': XML does not.
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return Err(bad());
    }
    u32::from_str_radix(digits, radix)
        .ok()
        .and_then(char::from_u32)
        .filter(|c| is_xml_char(*c))
        .ok_or_else(bad)
}

/// The whole document through a conforming XML 1.0 + Namespaces parser (roxmltree, DTDs
/// refused), once the streaming read above has bounded its depth, size and entries: what
/// quick-xml lets through (an unbound prefix, a malformed declaration or comment, a
/// duplicate attribute, ...) is refused here rather than passed on to the DMP.
fn check_conforming(xml: &str) -> Result<(), Reject> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        ..roxmltree::ParsingOptions::default()
    };
    match roxmltree::Document::parse_with_options(xml, opts) {
        Ok(_) => Ok(()),
        Err(roxmltree::Error::DtdDetected) => Err(doctype_forbidden("a DOCTYPE")),
        // The parser's message names a position, never content.
        Err(e) => Err(xml_invalid(&format!(
            "embedded document is not well-formed XML ({})",
            e.pos()
        ))),
    }
}

/// True for the text of an XML declaration (`xml version="1.0" encoding="UTF-8"`, without
/// `<?` and `?>`), as XML 1.0 §2.8 writes it: version first, then an optional encoding,
/// then an optional standalone, each `name = 'value'` or `"value"`. quick-xml reads the
/// declaration leniently (`encoding>"UTF-8"` passed: found by fuzz/ normalize).
fn is_xml_decl(text: &str) -> bool {
    const S: [char; 4] = [' ', '\t', '\r', '\n'];
    let Some(mut rest) = text.strip_prefix("xml") else {
        return false;
    };
    // One pseudo-attribute, `S name S? = S? quote value quote`: its value, and `rest`
    // moved past it; `None` (and `rest` unchanged) when it is not there.
    fn pair<'a>(rest: &mut &'a str, name: &str) -> Option<&'a str> {
        let after_space = rest.trim_start_matches(S);
        if after_space.len() == rest.len() {
            return None;
        }
        let after_eq = after_space
            .strip_prefix(name)?
            .trim_start_matches(S)
            .strip_prefix('=')?
            .trim_start_matches(S);
        let quote = after_eq
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')?;
        let body = &after_eq[1..];
        let end = body.find(quote)?;
        *rest = &body[end + 1..];
        Some(&body[..end])
    }
    let version_ok = pair(&mut rest, "version").is_some_and(|v| {
        v.strip_prefix("1.")
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    });
    if !version_ok {
        return false;
    }
    if let Some(enc) = pair(&mut rest, "encoding") {
        let mut b = enc.bytes();
        if !(b.next().is_some_and(|c| c.is_ascii_alphabetic())
            && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')))
        {
            return false;
        }
    }
    if let Some(sd) = pair(&mut rest, "standalone")
        && sd != "yes"
        && sd != "no"
    {
        return false;
    }
    rest.trim_start_matches(S).is_empty()
}

/// True for an XML 1.0 Name. Non-ASCII characters are let through (the NameChar ranges
/// of the spec are wide and a document in them is still re-read by conforming parsers).
fn is_xml_name(name: &str) -> bool {
    let name = name.as_bytes();
    let start = |c: u8| c.is_ascii_alphabetic() || c == b'_' || c == b':' || c >= 0x80;
    match name.split_first() {
        Some((&first, rest)) => {
            start(first)
                && rest
                    .iter()
                    .all(|&c| start(c) || c.is_ascii_digit() || c == b'-' || c == b'.')
        }
        None => false,
    }
}

/// Checks a start tag before anything is read from it: quick-xml takes everything up to
/// `>` as the tag and parses its attributes only when asked, so `<id root="1"/;J<x/>`
/// passed as one tag (found by fuzz/ embedded_cda). Every attribute must parse, every name
/// be an XML Name, and every reference in the attribute values (an `&` can only occur
/// there) name a legal character.
fn check_attribute_refs(e: &BytesStart<'_>) -> Result<(), Reject> {
    if !is_xml_name(e.name().as_ref()) {
        return Err(xml_invalid("an element name is not an XML name"));
    }
    for a in e.attributes() {
        let a = a.map_err(|_| xml_invalid("a start tag holds malformed attributes"))?;
        if !is_xml_name(a.key.as_ref()) {
            return Err(xml_invalid("an attribute name is not an XML name"));
        }
    }
    let mut rest = e.attributes_raw();
    while let Some(amp) = rest.find('&') {
        let after = &rest[amp + 1..];
        let end = after
            .find(';')
            .ok_or_else(|| xml_invalid("an attribute value holds a bare '&'"))?;
        resolve_ref(&after[..end])?;
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Reads the whole document and returns its header; `max_entries` bounds the `entry`
/// elements (any depth).
pub fn read_header(xml: &str, max_entries: usize) -> Result<Header, Reject> {
    if first_forbidden(xml.as_bytes()).is_some() {
        return Err(xml_invalid(
            "embedded document holds a character XML 1.0 does not allow (a C0 control or U+FFFE/U+FFFF)",
        ));
    }
    let mut r = NsReader::from_str(xml);
    let mut h = Header::default();
    let mut path: Vec<Tag> = Vec::with_capacity(32);
    let mut root_seen = false;
    let mut entries = 0usize;
    let mut capture: Option<(Capture, usize, String, String)> = None;
    let mut in_first_name = false;
    let mut name_done = false;
    let mut author_done = false;
    let mut service_done = false;
    // Events read before this one: the XML declaration may only be the first.
    let mut events = 0usize;
    loop {
        let (ns, ev) = r
            .read_resolved_event()
            .map_err(|_| xml_invalid("embedded document is not well-formed XML"))?;
        let events_before = events;
        events += 1;
        let is_v3 = matches!(ns, ResolveResult::Bound(Namespace(n)) if n == NS_V3);
        match ev {
            Event::DocType(_) => return Err(doctype_forbidden("a DOCTYPE")),
            // Only at the very start, and as XML 1.0 writes it.
            Event::Decl(ref d) if events_before > 0 || !is_xml_decl(d) => {
                return Err(xml_invalid("the XML declaration is malformed or misplaced"));
            }
            // A processing instruction needs a name for target, never `xml` in any case.
            Event::PI(ref pi)
                if !is_xml_name(pi.target()) || pi.target().eq_ignore_ascii_case("xml") =>
            {
                return Err(xml_invalid("a processing instruction is malformed"));
            }
            // `--` may not occur inside a comment, nor may it end with `-`.
            Event::Comment(ref c) if c.contains("--") || c.ends_with('-') => {
                return Err(xml_invalid("a comment holds '--'"));
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(ev, Event::Empty(_));
                check_attribute_refs(e)?;
                let local = e.local_name().into_inner();
                if path.is_empty() {
                    if root_seen {
                        return Err(xml_invalid("more than one root element"));
                    }
                    root_seen = true;
                    if local != "ClinicalDocument" || !is_v3 {
                        return Err(Reject::new(
                            Reason::CdaNotClinicalDocument,
                            "root element is not urn:hl7-org:v3 ClinicalDocument",
                        ));
                    }
                }
                if path.len() >= MAX_DEPTH {
                    return Err(Reject::new(
                        Reason::CdaXmlTooDeep,
                        format!("embedded document nests elements deeper than {MAX_DEPTH}"),
                    ));
                }
                if is_v3 && local == "entry" {
                    entries += 1;
                    if entries > max_entries {
                        return Err(Reject::new(
                            Reason::CdaTooLarge,
                            format!("embedded document has more than {max_entries} entries"),
                        ));
                    }
                }
                path.push(if is_v3 { tag(local) } else { Tag::Other });
                use Tag::*;
                match &path[..] {
                    [ClinicalDocument, Id] => h.id = Some(ii(e)),
                    [ClinicalDocument, SetId] => h.set_id = Some(ii(e)),
                    [ClinicalDocument, VersionNumber] => h.version = attr(e, "value"),
                    [ClinicalDocument, Code] => {
                        h.code = attr(e, "code");
                        h.code_system = attr(e, "codeSystem");
                    }
                    [ClinicalDocument, EffectiveTime] => h.effective_time = attr(e, "value"),
                    [ClinicalDocument, ConfidentialityCode] => h.confidentiality = attr(e, "code"),
                    [ClinicalDocument, TemplateId] => h.template_ids.extend(attr(e, "root")),
                    [ClinicalDocument, Title] if !empty => {
                        capture = Some((Capture::Title, path.len(), String::new(), String::new()))
                    }
                    [ClinicalDocument, RecordTarget] => h.record_targets += 1,
                    [ClinicalDocument, RecordTarget, PatientRole] => h.patient_roles += 1,
                    [ClinicalDocument, RecordTarget, PatientRole, Id] => h.patient_ids.push(ii(e)),
                    [ClinicalDocument, RecordTarget, PatientRole, Patient] => h.patients += 1,
                    [ClinicalDocument, RecordTarget, PatientRole, Patient, Name] => {
                        in_first_name = !name_done && !empty;
                        name_done = true;
                    }
                    [
                        ClinicalDocument,
                        RecordTarget,
                        PatientRole,
                        Patient,
                        Name,
                        part @ (Family | Given),
                    ] if in_first_name && !empty => {
                        let kind = if *part == Family {
                            Capture::Family
                        } else {
                            Capture::Given
                        };
                        let q = attr(e, "qualifier").unwrap_or_default();
                        capture = Some((kind, path.len(), q, String::new()));
                    }
                    // First one wins: a second one is a second patient, refused by the
                    // counts above; never "the last one read".
                    [
                        ClinicalDocument,
                        RecordTarget,
                        PatientRole,
                        Patient,
                        AdministrativeGenderCode,
                    ] if h.gender.is_none() => h.gender = attr(e, "code"),
                    [
                        ClinicalDocument,
                        RecordTarget,
                        PatientRole,
                        Patient,
                        BirthTime,
                    ] if h.birth_time.is_none() => h.birth_time = attr(e, "value"),
                    [
                        ClinicalDocument,
                        RecordTarget,
                        PatientRole,
                        Patient,
                        Birthplace,
                        Place,
                        Addr,
                        County,
                    ] if !empty => {
                        capture = Some((Capture::County, path.len(), String::new(), String::new()))
                    }
                    [ClinicalDocument, Author, AssignedAuthor, Id]
                        if !author_done && h.author_id.is_none() =>
                    {
                        h.author_id = Some(ii(e))
                    }
                    [
                        ClinicalDocument,
                        Author,
                        AssignedAuthor,
                        RepresentedOrganization,
                        Id,
                    ] if !author_done && h.author_org.is_none() => h.author_org = Some(ii(e)),
                    [
                        ClinicalDocument,
                        Author,
                        AssignedAuthor,
                        RepresentedOrganization,
                        StandardIndustryClassCode,
                    ] if !author_done && h.author_practice_setting.is_none() => {
                        h.author_practice_setting = attr(e, "code").filter(|c| !c.is_empty())
                    }
                    [
                        ClinicalDocument,
                        DocumentationOf,
                        ServiceEvent,
                        Performer,
                        AssignedEntity,
                        RepresentedOrganization,
                        StandardIndustryClassCode,
                    ] if !service_done && h.performer_practice_setting.is_none() => {
                        h.performer_practice_setting = attr(e, "code").filter(|c| !c.is_empty())
                    }
                    [
                        ClinicalDocument,
                        DocumentationOf,
                        ServiceEvent,
                        EffectiveTime,
                        bound @ (Low | High),
                    ] if !service_done => {
                        let v = attr(e, "value");
                        if *bound == Low {
                            h.service_low = v;
                        } else {
                            h.service_high = v;
                        }
                    }
                    [ClinicalDocument, RelatedDocument, ParentDocument, Id] => {
                        h.parent_id = Some(ii(e))
                    }
                    [ClinicalDocument, Component, NonXmlBody, Text] => {
                        h.non_xml_media_type = attr(e, "mediaType")
                    }
                    _ => {}
                }
                if empty {
                    path.pop();
                }
            }
            Event::End(_) => {
                if let Some((kind, depth, q, text)) = capture.take() {
                    if depth == path.len() {
                        let text = text.trim().to_string();
                        match kind {
                            Capture::Title => h.title = text,
                            Capture::Family => h.families.push((q, text)),
                            Capture::Given => h.givens.push((q, text)),
                            Capture::County => h.birth_county = Some(text),
                        }
                    } else {
                        capture = Some((kind, depth, q, text));
                    }
                }
                use Tag::*;
                match &path[..] {
                    [ClinicalDocument, RecordTarget, PatientRole, Patient, Name] => {
                        in_first_name = false
                    }
                    [ClinicalDocument, Author] => author_done = true,
                    [ClinicalDocument, DocumentationOf, ServiceEvent] => service_done = true,
                    _ => {}
                }
                path.pop();
            }
            Event::Text(ref t) => {
                let s = t.xml10_content();
                if path.is_empty() && !s.trim().is_empty() {
                    return Err(xml_invalid("text outside the root element"));
                }
                if let Some((_, _, _, buf)) = capture.as_mut() {
                    buf.push_str(&s);
                }
            }
            Event::CData(ref t) => {
                if path.is_empty() {
                    return Err(xml_invalid("CDATA outside the root element"));
                }
                if let Some((_, _, _, buf)) = capture.as_mut() {
                    buf.push_str(t);
                }
            }
            Event::GeneralRef(ref g) => {
                if path.is_empty() {
                    return Err(xml_invalid("reference outside the root element"));
                }
                let c = resolve_ref(&g.xml10_content())?;
                if let Some((_, _, _, buf)) = capture.as_mut() {
                    buf.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root_seen {
        return Err(xml_invalid("embedded document holds no XML element"));
    }
    if !path.is_empty() {
        return Err(xml_invalid("embedded document ends inside an element"));
    }
    check_conforming(xml)?;
    Ok(h)
}
