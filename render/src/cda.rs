//! A stored CDA R2 rendered for reading: its header (title, date, authors, patient), each
//! section's narrative block (`<text>`, CDA `StrucDocText`) as **safe HTML**, and the PDFs
//! a CDA N1 embeds.
//!
//! The document is first read by normalize's received-CDA reader
//! ([`dmpflow_normalize::mapping::read_header`]), so the same XML policy applies here as at
//! ingestion: no DOCTYPE (hence no entity declarations), only the five XML entities and
//! legal character references, nesting bounded by `MAX_DEPTH`, a bounded number of
//! `entry` elements, and a conforming XML 1.0 re-read. Only a document that passes is
//! walked (quick-xml, streaming) to render it.
//!
//! The narrative is rendered by an **allow-list**: each known `StrucDocText` element
//! becomes one fixed HTML tag chosen here (or none, where it would not nest correctly),
//! text is escaped, and no attribute is ever copied. The only attribute-derived output is
//! a class list from `styleCode` (each token mapped to a fixed class name, unknown tokens
//! dropped), `colspan`/`rowspan` as integers 1 to 100, and `listType` choosing `ol`/`ul`.
//! `linkHtml` keeps its text, never its `href`; `renderMultiMedia` becomes a placeholder;
//! every other element (`script`, `img`, `iframe`, anything in another namespace ...)
//! contributes at most its text, escaped (`script` and `style` not even that). The HTML of
//! the whole document is bounded (`Limits::max_html_bytes`); beyond, it is cut, closed and
//! marked. So nothing from a document can run as script or make the browser load anything.

use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use dmpflow_normalize::mapping::{Header, read_header, resolve_ref};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::reader::NsReader;

use super::french_date;
use super::html::{TRUNCATED_MARKER, Writer};

const NS_V3: &str = "urn:hl7-org:v3";

/// Longest header value kept (a name, an organisation, a title), in characters: a real
/// one is far shorter, a hostile one must not fill the page.
const MAX_FIELD_CHARS: usize = 256;
/// Authors kept from the header (a document has one to a few).
const MAX_AUTHORS: usize = 8;
/// What a `renderMultiMedia` (an image the page does not load) shows instead.
const MEDIA_PLACEHOLDER: &str = "<span class=\"media\">[contenu multimédia non affiché]</span>";

/// Bounds on what rendering one document may cost and produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest document read, in bytes (normalize's `max_cda_bytes` by default: anything
    /// stored fits).
    pub max_input_bytes: usize,
    /// Most `entry` elements (normalize's `max_entries` by default).
    pub max_entries: usize,
    /// Total HTML of all sections, marker included; beyond, the rest is cut.
    pub max_html_bytes: usize,
    /// Sections rendered; later ones are dropped (and `truncated` set).
    pub max_sections: usize,
    /// Embedded PDFs kept; later ones are counted in `pdfs_omitted`.
    pub max_pdfs: usize,
    /// Largest decoded PDF; a larger one is reported `TooLarge`, never decoded.
    pub max_pdf_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let cfg = dmpflow_normalize::Config::default();
        Limits {
            max_input_bytes: cfg.max_cda_bytes,
            max_entries: cfg.max_entries,
            // The page is at most 200 KB (issue #14): 150 KB of document leaves room for
            // the header, the page's own markup and its stylesheet.
            max_html_bytes: 150 << 10,
            max_sections: 200,
            max_pdfs: 4,
            // Base64 of the largest storable CDA, decoded: any PDF a stored CDA carries.
            max_pdf_bytes: cfg.max_cda_bytes / 4 * 3,
        }
    }
}

/// Why a document cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the document is {len} bytes, over the {max} byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("the document is not UTF-8")]
    NotUtf8,
    /// Refused by the XML policy: `code` is normalize's reason code (`cda.doctype.forbidden`,
    /// `cda.xml.too_deep`, `cda.xml.invalid`, `cda.not_clinical_document`, `cda.too_large`).
    #[error("{code}: {detail}")]
    Refused { code: &'static str, detail: String },
}

/// A rendered document. Every `String` but `Section::html` is plain text (escape it with
/// [`super::escape`] when writing a page); `Section::html` is safe HTML, ready to insert.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderedDocument {
    pub title: String,
    /// ClinicalDocument/effectiveTime as written (HL7 TS).
    pub effective_time: Option<String>,
    /// The same in French form (`dd/mm/yyyy HH:MM`).
    pub date: Option<String>,
    pub authors: Vec<Author>,
    pub patient: Patient,
    /// In document order; a nested section follows its parent with `level` one more.
    pub sections: Vec<Section>,
    /// The media type of a CDA N1's `nonXMLBody`, if any (PDFs are in `pdfs`).
    pub body_media_type: Option<String>,
    pub pdfs: Vec<Pdf>,
    /// PDFs beyond `Limits::max_pdfs`, not read.
    pub pdfs_omitted: usize,
    /// Some narrative or sections were cut (the last rendered section ends with a marker).
    pub truncated: bool,
}

/// One `ClinicalDocument/author`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Author {
    /// The person's name (prefix, given, family, suffix as written), or the software's.
    pub name: Option<String>,
    /// assignedAuthor/id: its extension (RPPS, ADELI ...), or its root alone.
    pub id: Option<String>,
    pub organisation: Option<String>,
    pub organisation_id: Option<String>,
}

/// The document's patient (shown only to a viewer authorised on this DMP).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Patient {
    /// Given names then the used family name (else the birth name).
    pub name: String,
    /// The birth name (`qualifier="BR"`), when it differs from the one in `name`.
    pub birth_name: Option<String>,
    /// `dd/mm/yyyy`.
    pub birth_date: Option<String>,
    /// `Féminin`, `Masculin` or `Inconnu`.
    pub sex: Option<&'static str>,
}

/// One section: its title and its narrative as safe HTML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// 1 for a section of the body, 2 for a section inside it ...
    pub level: usize,
    pub title: String,
    pub html: String,
}

/// One embedded PDF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdf {
    pub origin: PdfOrigin,
    /// The decoded bytes (they start with `%PDF-`), or why they are not shown.
    pub content: Result<Vec<u8>, PdfProblem>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdfOrigin {
    /// A CDA N1: `component/nonXMLBody/text`.
    NonXmlBody,
    /// An `observationMedia` entry's `value`.
    ObservationMedia,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PdfProblem {
    /// Over `Limits::max_pdf_bytes` (never decoded).
    TooLarge,
    /// No inline content (empty, or a `reference` to a file elsewhere).
    Missing,
    NotBase64,
    /// Decoded bytes that are not a PDF (served as one, the browser could sniff HTML).
    NotPdf,
}

/// Renders `cda_xml` (UTF-8, an optional BOM) within `limits`.
pub fn render_document(cda_xml: &[u8], limits: &Limits) -> Result<RenderedDocument, RenderError> {
    if cda_xml.len() > limits.max_input_bytes {
        return Err(RenderError::TooLarge {
            len: cda_xml.len(),
            max: limits.max_input_bytes,
        });
    }
    let xml = std::str::from_utf8(cda_xml).map_err(|_| RenderError::NotUtf8)?;
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    // The ingestion policy first: nothing below reads a document it has not accepted.
    let header = read_header(xml, limits.max_entries).map_err(|r| RenderError::Refused {
        code: r.reason.as_str(),
        detail: r.detail,
    })?;
    let mut doc = from_header(&header);
    Walk::new(limits, &mut doc).run(xml)?;
    Ok(doc)
}

/// Title, date and patient from normalize's header.
fn from_header(h: &Header) -> RenderedDocument {
    let givens: Vec<&str> = h
        .givens
        .iter()
        .map(|(_, g)| g.as_str())
        .filter(|g| !g.is_empty())
        .collect();
    let family = |q: &str| {
        h.families
            .iter()
            .find(|(fq, f)| fq == q && !f.is_empty())
            .map(|(_, f)| f.as_str())
    };
    let birth = family("BR");
    let used = family("SP")
        .or(birth)
        .or_else(|| h.families.first().map(|(_, f)| f.as_str()));
    let name = givens.into_iter().chain(used).collect::<Vec<_>>().join(" ");
    RenderedDocument {
        title: bounded(&h.title),
        effective_time: h.effective_time.as_deref().map(bounded),
        date: h.effective_time.as_deref().and_then(french_date),
        patient: Patient {
            name: bounded(&name),
            birth_name: birth.filter(|b| Some(*b) != used).map(bounded),
            birth_date: h.birth_time.as_deref().and_then(french_date),
            sex: match h.gender.as_deref() {
                Some("F") => Some("Féminin"),
                Some("M") => Some("Masculin"),
                Some("U" | "UN") => Some("Inconnu"),
                _ => None,
            },
        },
        ..RenderedDocument::default()
    }
}

/// `s` with whitespace runs collapsed to one space, trimmed, at most `MAX_FIELD_CHARS`.
fn bounded(s: &str) -> String {
    let mut out = String::new();
    for (n, word) in s.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MAX_FIELD_CHARS {
            let cut = out
                .char_indices()
                .nth(MAX_FIELD_CHARS - 1)
                .map_or(out.len(), |(i, _)| i);
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    out
}

fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    e.try_get_attribute(name).ok().flatten().and_then(|a| {
        a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .ok()
            .map(|v| v.trim().to_string())
    })
}

/// The v3 element names the walk acts on outside narrative; everything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    ClinicalDocument,
    Author,
    AssignedAuthor,
    AssignedPerson,
    AssignedAuthoringDevice,
    SoftwareName,
    RepresentedOrganization,
    Id,
    Name,
    Component,
    NonXmlBody,
    Section,
    Title,
    Text,
    ObservationMedia,
    Value,
    Other,
}

fn tag(local: &str) -> Tag {
    use Tag::*;
    match local {
        "ClinicalDocument" => ClinicalDocument,
        "author" => Author,
        "assignedAuthor" => AssignedAuthor,
        "assignedPerson" => AssignedPerson,
        "assignedAuthoringDevice" => AssignedAuthoringDevice,
        "softwareName" => SoftwareName,
        "representedOrganization" => RepresentedOrganization,
        "id" => Id,
        "name" => Name,
        "component" => Component,
        "nonXMLBody" => NonXmlBody,
        "section" => Section,
        "title" => Title,
        "text" => Text,
        "observationMedia" => ObservationMedia,
        "value" => Value,
        _ => Other,
    }
}

/// Where captured header text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    AuthorName,
    OrgName,
    SectionTitle,
}

/// What a narrative element became, for its children's sake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Markup of its own or none; text flows.
    Flow,
    List,
    Table,
    /// thead, tbody, tfoot.
    RowGroup,
    Row,
    /// Neither markup nor text (script, style, col, footnoteRef, and all inside).
    Dropped,
}

/// styleCode tokens (CDA R2 StrucDocText) and the class each maps to.
const STYLES: [(&str, &str); 16] = [
    ("Bold", "bold"),
    ("Italics", "italics"),
    ("Underline", "underline"),
    ("Emphasis", "emphasis"),
    ("Lrule", "lrule"),
    ("Rrule", "rrule"),
    ("Toprule", "toprule"),
    ("Botrule", "botrule"),
    ("Arabic", "arabic"),
    ("LittleRoman", "little-roman"),
    ("BigRoman", "big-roman"),
    ("LittleAlpha", "little-alpha"),
    ("BigAlpha", "big-alpha"),
    ("Disc", "disc"),
    ("Circle", "circle"),
    ("Square", "square"),
];

/// ` class="..."` from a fixed base class and the element's styleCode tokens, or `""`.
fn class_attr(e: &BytesStart<'_>, base: Option<&str>) -> String {
    let mut seen = [false; STYLES.len()];
    if let Some(codes) = attr(e, "styleCode") {
        for token in codes.split_ascii_whitespace() {
            if let Some(i) = STYLES.iter().position(|(code, _)| *code == token) {
                seen[i] = true;
            }
        }
    }
    let classes: Vec<&str> = base
        .into_iter()
        .chain(
            STYLES
                .iter()
                .zip(seen)
                .filter(|(_, on)| *on)
                .map(|((_, class), _)| *class),
        )
        .collect();
    if classes.is_empty() {
        String::new()
    } else {
        format!(" class=\"{}\"", classes.join(" "))
    }
}

/// ` colspan="n"` / ` rowspan="n"` for a plain integer 1 to 100, else nothing.
fn span_attr(e: &BytesStart<'_>, name: &str) -> String {
    match attr(e, name) {
        Some(v)
            if !v.is_empty()
                && v.len() <= 3
                && v.bytes().all(|b| b.is_ascii_digit())
                && (1..=100).contains(&v.parse::<u16>().unwrap_or(0)) =>
        {
            format!(" {name}=\"{}\"", v.parse::<u16>().unwrap_or(1))
        }
        _ => String::new(),
    }
}

/// Text captured under an element (header fields, base64), bounded.
struct Capture {
    /// Path length of the element captured.
    depth: usize,
    what: Target,
    buf: String,
    /// The buffer hit its bound: the rest is ignored.
    full: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Field(Field),
    Pdf(PdfOrigin),
}

/// The open section `<text>` being rendered.
struct Narrative {
    /// Path length of its `text` element.
    depth: usize,
    section: usize,
    writer: Writer,
    kinds: Vec<Kind>,
}

struct Walk<'a> {
    limits: &'a Limits,
    doc: &'a mut RenderedDocument,
    path: Vec<Tag>,
    /// `sections` indices of the open sections.
    open_sections: Vec<usize>,
    capture: Option<Capture>,
    narrative: Option<Narrative>,
    /// HTML bytes left for the sections still to come.
    html_left: usize,
    /// A narrative was cut: no further one is rendered.
    html_exhausted: bool,
    /// `doc.authors` index of the header author open, if kept.
    author: Option<usize>,
}

impl<'a> Walk<'a> {
    fn new(limits: &'a Limits, doc: &'a mut RenderedDocument) -> Self {
        Walk {
            limits,
            doc,
            path: Vec::with_capacity(32),
            open_sections: Vec::new(),
            capture: None,
            narrative: None,
            html_left: limits.max_html_bytes.saturating_sub(TRUNCATED_MARKER.len()),
            html_exhausted: false,
            author: None,
        }
    }

    fn run(mut self, xml: &str) -> Result<(), RenderError> {
        let mut r = NsReader::from_str(xml);
        loop {
            // read_header accepted the document: an error here would be a quick-xml and
            // roxmltree disagreement, refused all the same.
            let (ns, ev) = r.read_resolved_event().map_err(|_| RenderError::Refused {
                code: "cda.xml.invalid",
                detail: "the document is not well-formed XML".into(),
            })?;
            let v3 = matches!(ns, ResolveResult::Bound(Namespace(n)) if n == NS_V3);
            match ev {
                Event::Start(ref e) => self.start(v3, e, false),
                Event::Empty(ref e) => {
                    self.start(v3, e, true);
                    self.end();
                }
                Event::End(_) => self.end(),
                Event::Text(ref t) => self.text(&t.xml10_content()),
                Event::CData(ref t) => self.text(t),
                Event::GeneralRef(ref g) => {
                    let c = resolve_ref(&g.xml10_content()).map_err(|r| RenderError::Refused {
                        code: r.reason.as_str(),
                        detail: r.detail,
                    })?;
                    self.text(c.encode_utf8(&mut [0; 4]));
                }
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(())
    }

    // A guard instead of the inner `if`s (clippy::collapsible_match) would let an element
    // whose condition fails fall through to the later, more general arms.
    #[allow(clippy::collapsible_match)]
    fn start(&mut self, v3: bool, e: &BytesStart<'_>, empty: bool) {
        let local = e.local_name().into_inner();
        if let Some(n) = self.narrative.as_mut() {
            self.path.push(Tag::Other);
            narrative_start(n, v3, local, e);
            return;
        }
        // Capture buffers for header fields: a child element separates words.
        if let Some(c) = self.capture.as_mut()
            && matches!(c.what, Target::Field(_))
        {
            c.buf.push(' ');
        }
        self.path.push(if v3 { tag(local) } else { Tag::Other });
        use Tag::*;
        let n = self.path.len();
        match &self.path[..] {
            [ClinicalDocument, Author] => {
                if self.doc.authors.len() < MAX_AUTHORS {
                    self.doc.authors.push(self::Author::default());
                    self.author = Some(self.doc.authors.len() - 1);
                }
            }
            [ClinicalDocument, Author, AssignedAuthor, Id] => {
                if let Some(a) = self.author_slot()
                    && a.id.is_none()
                {
                    a.id = ii_display(e);
                }
            }
            [
                ClinicalDocument,
                Author,
                AssignedAuthor,
                RepresentedOrganization,
                Id,
            ] => {
                if let Some(a) = self.author_slot()
                    && a.organisation_id.is_none()
                {
                    a.organisation_id = ii_display(e);
                }
            }
            [
                ClinicalDocument,
                Author,
                AssignedAuthor,
                AssignedPerson,
                Name,
            ]
            | [
                ClinicalDocument,
                Author,
                AssignedAuthor,
                AssignedAuthoringDevice,
                SoftwareName,
            ] => self.begin_capture(Target::Field(Field::AuthorName)),
            [
                ClinicalDocument,
                Author,
                AssignedAuthor,
                RepresentedOrganization,
                Name,
            ] => self.begin_capture(Target::Field(Field::OrgName)),
            [ClinicalDocument, Component, NonXmlBody, Text] => {
                self.doc.body_media_type = attr(e, "mediaType").map(|m| bounded(&m));
                if is_pdf_b64(e) {
                    self.begin_pdf(PdfOrigin::NonXmlBody, empty);
                }
            }
            [.., Component, Section] => self.begin_section(),
            [.., Section, Title] => {
                if self.current_section().is_some() {
                    self.begin_capture(Target::Field(Field::SectionTitle));
                }
            }
            [.., Section, Text] => {
                if let Some(section) = self.current_section()
                    && !self.html_exhausted
                {
                    self.narrative = Some(Narrative {
                        depth: n,
                        section,
                        writer: Writer::new(self.html_left),
                        kinds: Vec::new(),
                    });
                }
            }
            [.., ObservationMedia, Value] if is_pdf_b64(e) => {
                self.begin_pdf(PdfOrigin::ObservationMedia, empty);
            }
            _ => {}
        }
    }

    /// The header author being read, unless past `MAX_AUTHORS`.
    fn author_slot(&mut self) -> Option<&mut Author> {
        self.author.map(|i| &mut self.doc.authors[i])
    }

    /// The open section's index, `None` when it was dropped (over `max_sections`).
    fn current_section(&self) -> Option<usize> {
        self.open_sections
            .last()
            .copied()
            .filter(|i| *i != usize::MAX)
    }

    fn begin_section(&mut self) {
        if self.doc.sections.len() >= self.limits.max_sections {
            self.doc.truncated = true;
            self.open_sections.push(usize::MAX);
            return;
        }
        let level = self.open_sections.len() + 1;
        self.doc.sections.push(Section {
            level,
            title: String::new(),
            html: String::new(),
        });
        self.open_sections.push(self.doc.sections.len() - 1);
    }

    fn begin_capture(&mut self, what: Target) {
        if self.capture.is_none() {
            self.capture = Some(Capture {
                depth: self.path.len(),
                what,
                buf: String::new(),
                full: false,
            });
        }
    }

    fn begin_pdf(&mut self, origin: PdfOrigin, empty: bool) {
        if self.doc.pdfs.len() >= self.limits.max_pdfs {
            self.doc.pdfs_omitted += 1;
            return;
        }
        if empty {
            self.doc.pdfs.push(Pdf {
                origin,
                content: Err(PdfProblem::Missing),
            });
            return;
        }
        self.begin_capture(Target::Pdf(origin));
    }

    fn end(&mut self) {
        let n = self.path.len();
        if let Some(nar) = self.narrative.as_mut() {
            if n > nar.depth {
                nar.writer.close();
                nar.kinds.pop();
                self.path.pop();
                return;
            }
            let nar = self.narrative.take().expect("checked above");
            self.html_left = self.html_left.saturating_sub(nar.writer.out.len());
            if nar.writer.truncated {
                self.doc.truncated = true;
                self.html_exhausted = true;
            }
            self.doc.sections[nar.section].html = nar.writer.out;
        }
        if self.capture.as_ref().is_some_and(|c| c.depth == n) {
            let c = self.capture.take().expect("checked above");
            self.finish_capture(c);
        }
        match &self.path[..] {
            [.., Tag::Component, Tag::Section] => {
                self.open_sections.pop();
            }
            [Tag::ClinicalDocument, Tag::Author] => self.author = None,
            _ => {}
        }
        self.path.pop();
    }

    fn finish_capture(&mut self, c: Capture) {
        match c.what {
            Target::Field(field) => {
                let value = Some(bounded(&c.buf)).filter(|v| !v.is_empty());
                match field {
                    Field::AuthorName => {
                        if let Some(a) = self.author_slot()
                            && a.name.is_none()
                        {
                            a.name = value;
                        }
                    }
                    Field::OrgName => {
                        if let Some(a) = self.author_slot()
                            && a.organisation.is_none()
                        {
                            a.organisation = value;
                        }
                    }
                    Field::SectionTitle => {
                        if let Some(i) = self.current_section() {
                            self.doc.sections[i].title = value.unwrap_or_default();
                        }
                    }
                }
            }
            Target::Pdf(origin) => {
                let content = if c.full {
                    Err(PdfProblem::TooLarge)
                } else {
                    decode_pdf(&c.buf, self.limits.max_pdf_bytes)
                };
                self.doc.pdfs.push(Pdf { origin, content });
            }
        }
    }

    fn text(&mut self, text: &str) {
        if let Some(n) = self.narrative.as_mut() {
            match n.kinds.last() {
                Some(Kind::Dropped) => {}
                // Only cells hold text in a table, and only items matter in a list:
                // the whitespace between their elements is dropped.
                Some(Kind::Table | Kind::RowGroup | Kind::Row | Kind::List)
                    if text.trim().is_empty() => {}
                _ => n.writer.text(text),
            }
            return;
        }
        let Some(c) = self.capture.as_mut() else {
            return;
        };
        if c.full {
            return;
        }
        match c.what {
            Target::Field(_) => {
                // Far more than a field keeps (bounded() cuts it after).
                if c.buf.len() + text.len() > MAX_FIELD_CHARS * 8 {
                    c.full = true;
                } else {
                    c.buf.push_str(text);
                }
            }
            Target::Pdf(_) => {
                // Base64 of at most max_pdf_bytes: a longer text is never decoded.
                let max_b64 = self.limits.max_pdf_bytes.div_ceil(3).saturating_mul(4);
                for ch in text.chars().filter(|ch| !ch.is_ascii_whitespace()) {
                    if c.buf.len() >= max_b64 {
                        c.full = true;
                        c.buf = String::new();
                        break;
                    }
                    c.buf.push(ch);
                }
            }
        }
    }
}

/// An `II` as shown: its extension, else its root.
fn ii_display(e: &BytesStart<'_>) -> Option<String> {
    attr(e, "extension")
        .filter(|x| !x.is_empty())
        .or_else(|| attr(e, "root").filter(|r| !r.is_empty()))
        .map(|s| bounded(&s))
}

/// `mediaType="application/pdf"` with `representation="B64"`.
fn is_pdf_b64(e: &BytesStart<'_>) -> bool {
    attr(e, "mediaType").is_some_and(|m| m.eq_ignore_ascii_case("application/pdf"))
        && attr(e, "representation").is_some_and(|r| r.eq_ignore_ascii_case("B64"))
}

/// Base64 (whitespace already removed; padding optional) to PDF bytes.
fn decode_pdf(b64: &str, max: usize) -> Result<Vec<u8>, PdfProblem> {
    if b64.is_empty() {
        return Err(PdfProblem::Missing);
    }
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bytes = ENGINE.decode(b64).map_err(|_| PdfProblem::NotBase64)?;
    if bytes.len() > max {
        return Err(PdfProblem::TooLarge);
    }
    if !bytes.starts_with(b"%PDF-") {
        return Err(PdfProblem::NotPdf);
    }
    Ok(bytes)
}

/// Element names whose text is not even shown: code, not content.
fn is_code_element(local: &str) -> bool {
    local.eq_ignore_ascii_case("script") || local.eq_ignore_ascii_case("style")
}

/// One narrative element opened: its fixed markup (or none) and its kind.
/// An empty element is opened here and closed by the caller's `end()`, as any other.
fn narrative_start(n: &mut Narrative, v3: bool, local: &str, e: &BytesStart<'_>) {
    let parent = n.kinds.last().copied();
    let w = &mut n.writer;
    let kind = if parent == Some(Kind::Dropped) || is_code_element(local) {
        w.open("", "");
        Kind::Dropped
    } else if !v3 {
        // The XHTML namespace and any other: text only.
        w.open("", "");
        Kind::Flow
    } else {
        match local {
            "paragraph" => {
                // A div rather than p: a paragraph may hold a list or a table, which
                // would close a p early in the browser's parse.
                w.open(
                    &format!("<div{}>", class_attr(e, Some("paragraph"))),
                    "</div>",
                );
                Kind::Flow
            }
            "content" => {
                let (open, close) = match attr(e, "revised").as_deref() {
                    Some("delete") => ("<del", "</del>"),
                    Some("insert") => ("<ins", "</ins>"),
                    _ => ("<span", "</span>"),
                };
                w.open(&format!("{open}{}>", class_attr(e, None)), close);
                Kind::Flow
            }
            "linkHtml" => {
                w.open(&format!("<span{}>", class_attr(e, Some("link"))), "</span>");
                Kind::Flow
            }
            "sub" => {
                w.open("<sub>", "</sub>");
                Kind::Flow
            }
            "sup" => {
                w.open("<sup>", "</sup>");
                Kind::Flow
            }
            "br" => {
                w.raw("<br>");
                w.open("", "");
                Kind::Flow
            }
            "caption" if parent == Some(Kind::Table) => {
                w.open(&format!("<caption{}>", class_attr(e, None)), "</caption>");
                Kind::Flow
            }
            "caption" => {
                w.open(
                    &format!("<span{}>", class_attr(e, Some("caption"))),
                    "</span>",
                );
                Kind::Flow
            }
            "list" => {
                let tag = if attr(e, "listType").as_deref() == Some("ordered") {
                    ("<ol", "</ol>")
                } else {
                    ("<ul", "</ul>")
                };
                w.open(&format!("{}{}>", tag.0, class_attr(e, None)), tag.1);
                Kind::List
            }
            "item" if parent == Some(Kind::List) => {
                w.open(&format!("<li{}>", class_attr(e, None)), "</li>");
                Kind::Flow
            }
            "table" => {
                w.open(&format!("<table{}>", class_attr(e, None)), "</table>");
                Kind::Table
            }
            "thead" | "tbody" | "tfoot" if parent == Some(Kind::Table) => {
                let (open, close) = match local {
                    "thead" => ("<thead", "</thead>"),
                    "tbody" => ("<tbody", "</tbody>"),
                    _ => ("<tfoot", "</tfoot>"),
                };
                w.open(&format!("{open}{}>", class_attr(e, None)), close);
                Kind::RowGroup
            }
            "tr" if matches!(parent, Some(Kind::Table | Kind::RowGroup)) => {
                w.open(&format!("<tr{}>", class_attr(e, None)), "</tr>");
                Kind::Row
            }
            "th" | "td" if parent == Some(Kind::Row) => {
                let (open, close) = if local == "th" {
                    ("<th", "</th>")
                } else {
                    ("<td", "</td>")
                };
                w.open(
                    &format!(
                        "{open}{}{}{}>",
                        class_attr(e, None),
                        span_attr(e, "colspan"),
                        span_attr(e, "rowspan")
                    ),
                    close,
                );
                Kind::Flow
            }
            "footnote" => {
                w.open(
                    &format!("<span{}>", class_attr(e, Some("footnote"))),
                    "</span>",
                );
                Kind::Flow
            }
            // Column formatting and footnote references: nothing to show.
            "col" | "colgroup" | "footnoteRef" => {
                w.open("", "");
                Kind::Dropped
            }
            "renderMultiMedia" => {
                // Never an <img>: the page loads nothing a document names.
                w.raw(MEDIA_PLACEHOLDER);
                w.open("", "");
                Kind::Flow
            }
            // Misplaced structure (an item outside a list, a cell outside a row) and
            // unknown v3 elements: their text, no markup.
            _ => {
                w.open("", "");
                Kind::Flow
            }
        }
    };
    n.kinds.push(kind);
}
