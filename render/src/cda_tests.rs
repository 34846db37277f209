//! Tests of the CDA renderer: the header and narrative of real documents (the CI-SIS
//! examples kept as fuzz seeds), embedded PDFs, and hostile documents. Every rendered
//! section is checked tag by tag: only the allow-listed HTML tags, only `class`, `colspan`
//! and `rowspan` attributes with the fixed values the renderer writes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::cda::{Limits, PdfOrigin, PdfProblem, RenderError, RenderedDocument, render_document};

const N1: &[u8] =
    include_bytes!("../../fuzz/seeds/embedded_cda/cisis-IMG_CR_IMG_2024.01_CDA-R2-Niveau-1.xml");
const EDISP: &[u8] = include_bytes!("../../fuzz/seeds/embedded_cda/cisis-eDISP-MED_2024.01.xml");
const DEMO: &[u8] = include_bytes!("../../fuzz/seeds/embedded_cda/demo-cancer-00.xml");

const TAGS: &[&str] = &[
    "div", "span", "del", "ins", "sub", "sup", "br", "caption", "ul", "ol", "li", "table", "thead",
    "tbody", "tfoot", "tr", "th", "td", "p",
];
const CLASSES: &[&str] = &[
    "paragraph",
    "link",
    "caption",
    "footnote",
    "media",
    "truncated",
    "bold",
    "italics",
    "underline",
    "emphasis",
    "lrule",
    "rrule",
    "toprule",
    "botrule",
    "arabic",
    "little-roman",
    "big-roman",
    "little-alpha",
    "big-alpha",
    "disc",
    "circle",
    "square",
];

/// Panics unless `html` is made of allow-listed tags with allow-listed attributes only,
/// balanced, text everywhere else (a `<` is always one of our tags: text is escaped).
fn check_html(html: &str) {
    let mut open: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        let after = &rest[lt + 1..];
        let gt = after.find('>').expect("tag closed");
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                open.pop().as_deref(),
                Some(name),
                "unbalanced </{name}> in {html}"
            );
            continue;
        }
        let mut parts = tag.splitn(2, ' ');
        let name = parts.next().unwrap();
        assert!(TAGS.contains(&name), "tag <{name}> in {html}");
        let mut attrs = parts.next().unwrap_or("");
        while !attrs.is_empty() {
            let eq = attrs.find("=\"").expect("attribute value quoted");
            let key = &attrs[..eq];
            let value_end = attrs[eq + 2..].find('"').unwrap() + eq + 2;
            let value = &attrs[eq + 2..value_end];
            match key {
                "class" => assert!(
                    value.split(' ').all(|c| CLASSES.contains(&c)),
                    "class {value}"
                ),
                "colspan" | "rowspan" => {
                    let n: u32 = value.parse().expect("a number");
                    assert!((1..=100).contains(&n));
                }
                other => panic!("attribute {other} in {html}"),
            }
            attrs = attrs[value_end + 1..].trim_start();
        }
        if name != "br" {
            open.push(name.to_string());
        }
    }
    assert!(open.is_empty(), "unclosed {open:?} in {html}");
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<script"));
}

/// `check_html` on every section, and the substrings the hostile fixtures must not yield.
fn check_doc(doc: &RenderedDocument) {
    for s in &doc.sections {
        check_html(&s.html);
    }
}

fn check_no_markup_leak(doc: &RenderedDocument) {
    check_doc(doc);
    for s in &doc.sections {
        let lower = s.html.to_ascii_lowercase();
        for bad in [
            "<script",
            "src=",
            "href=",
            "style=",
            "javascript:",
            "expression(",
            "<img",
            "<iframe",
            "<object",
        ] {
            assert!(!lower.contains(bad), "{bad} in {}", s.html);
        }
        // No on…= attribute: an attribute is always ` name="`, and only ours are written.
        let bytes = lower.as_bytes();
        for (i, _) in lower.match_indices(" on") {
            let name: String = lower[i + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            assert!(
                bytes.get(i + 1 + name.len()) != Some(&b'='),
                "{name}= in {}",
                s.html
            );
        }
    }
}

/// A minimal CDA with one section whose narrative is `narrative` and `extra` after the
/// section's text (entries).
fn cda(narrative: &str, extra: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<id root="1.2.3"/><code code="11502-2"/><title>Compte rendu &amp; résultats</title>
<effectiveTime value="20250302083000+0100"/>
<recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="246013306364358"/>
<patient><name><family qualifier="BR">MARTIN</family><family qualifier="SP">DURAND</family><given>Jeanne</given><given>Marie</given></name>
<administrativeGenderCode code="F"/><birthTime value="19800215"/></patient></patientRole></recordTarget>
<author><time value="20250302083000+0100"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234567899"/>
<assignedPerson><name><prefix>Dr</prefix> <given>Paul</given> <family>LEROY</family></name></assignedPerson>
<representedOrganization><id root="1.2.250.1.71.4.2.2" extension="1750000000"/><name>Laboratoire &lt;Central&gt;</name></representedOrganization>
</assignedAuthor></author>
<component><structuredBody><component><section><title>Résultats</title><text>{narrative}</text>{extra}</section></component></structuredBody></component>
</ClinicalDocument>"#
    )
}

fn render(xml: &str) -> RenderedDocument {
    let doc = render_document(xml.as_bytes(), &Limits::default()).expect("renders");
    check_doc(&doc);
    doc
}

#[test]
fn render_header() {
    let doc = render(&cda("<paragraph>ok</paragraph>", ""));
    assert_eq!(doc.title, "Compte rendu & résultats");
    assert_eq!(doc.effective_time.as_deref(), Some("20250302083000+0100"));
    assert_eq!(doc.date.as_deref(), Some("02/03/2025 08:30"));
    assert_eq!(doc.patient.name, "Jeanne Marie DURAND");
    assert_eq!(doc.patient.birth_name.as_deref(), Some("MARTIN"));
    assert_eq!(doc.patient.birth_date.as_deref(), Some("15/02/1980"));
    assert_eq!(doc.patient.sex, Some("Féminin"));
    assert_eq!(doc.authors.len(), 1);
    let a = &doc.authors[0];
    assert_eq!(a.name.as_deref(), Some("Dr Paul LEROY"));
    assert_eq!(a.id.as_deref(), Some("801234567899"));
    // Plain text: the page escapes it.
    assert_eq!(a.organisation.as_deref(), Some("Laboratoire <Central>"));
    assert_eq!(a.organisation_id.as_deref(), Some("1750000000"));
    assert_eq!(doc.sections.len(), 1);
    assert_eq!(doc.sections[0].title, "Résultats");
    assert_eq!(doc.sections[0].level, 1);
    assert_eq!(doc.sections[0].html, "<div class=\"paragraph\">ok</div>");
    assert!(!doc.truncated);
}

#[test]
fn render_narrative_elements() {
    let narrative = r#"<paragraph styleCode="Bold Italics">Glycémie <content styleCode="Underline">à jeun</content><br/>H<sub>2</sub>O m<sup>2</sup></paragraph>
<list listType="ordered" styleCode="LittleRoman"><item>un</item><item><content revised="delete">deux</content><content revised="insert">2</content></item></list>
<list><caption>Liste</caption><item>a</item></list>
<table border="1" width="100%"><caption>Bilan</caption><colgroup><col width="20"/></colgroup>
<thead><tr><th>Analyse</th><th colspan="2">Valeur</th></tr></thead>
<tbody><tr styleCode="Botrule"><td rowspan="2">Na</td><td>140</td><td>mmol/L</td></tr></tbody></table>
<paragraph>Note<footnote ID="f1">selon la méthode</footnote><footnoteRef IDREF="f1"/></paragraph>"#;
    let html = render(&cda(narrative, "")).sections.remove(0).html;
    assert_eq!(
        html,
        "<div class=\"paragraph bold italics\">Glycémie <span class=\"underline\">à jeun</span><br>H<sub>2</sub>O m<sup>2</sup></div>\n\
<ol class=\"little-roman\"><li>un</li><li><del>deux</del><ins>2</ins></li></ol>\n\
<ul><span class=\"caption\">Liste</span><li>a</li></ul>\n\
<table><caption>Bilan</caption>\
<thead><tr><th>Analyse</th><th colspan=\"2\">Valeur</th></tr></thead>\
<tbody><tr class=\"botrule\"><td rowspan=\"2\">Na</td><td>140</td><td>mmol/L</td></tr></tbody></table>\n\
<div class=\"paragraph\">Note<span class=\"footnote\">selon la méthode</span></div>"
    );
}

#[test]
fn render_nested_sections_in_order() {
    let extra = "<component><section><title>Sous-partie</title><text>B</text>\
<component><section><title>Détail</title><text>C</text></section></component></section></component>";
    let doc = render(&cda("A", extra));
    let got: Vec<(usize, &str, &str)> = doc
        .sections
        .iter()
        .map(|s| (s.level, s.title.as_str(), s.html.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "Résultats", "A"),
            (2, "Sous-partie", "B"),
            (3, "Détail", "C")
        ]
    );
}

#[test]
fn render_cisis_n1_pdf() {
    let doc = render_document(N1, &Limits::default()).expect("renders");
    check_doc(&doc);
    assert_eq!(doc.body_media_type.as_deref(), Some("application/pdf"));
    assert_eq!(doc.pdfs.len(), 1);
    assert_eq!(doc.pdfs[0].origin, PdfOrigin::NonXmlBody);
    let pdf = doc.pdfs[0].content.as_ref().expect("a PDF");
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(pdf.len() > 10_000);
    assert!(!doc.title.is_empty());
    assert!(doc.date.is_some());
    assert!(!doc.patient.name.is_empty());
    assert!(doc.sections.is_empty());

    // Over the PDF bound: reported, not decoded.
    let small = Limits {
        max_pdf_bytes: 1_000,
        ..Limits::default()
    };
    let doc = render_document(N1, &small).expect("renders");
    assert_eq!(doc.pdfs[0].content, Err(PdfProblem::TooLarge));
}

#[test]
fn render_cisis_edisp_and_demo() {
    let doc = render_document(EDISP, &Limits::default()).expect("renders");
    check_doc(&doc);
    assert!(doc.authors.len() >= 2);
    assert_eq!(
        doc.authors[0].name.as_deref(),
        Some("Dossier Pharmaceutique")
    );
    assert_eq!(doc.authors[1].name.as_deref(), Some("M Pierre DELIVE PG"));
    assert_eq!(
        doc.authors[1].organisation.as_deref(),
        Some("Pharmacie du village")
    );
    assert!(!doc.sections.is_empty());
    assert!(doc.sections.iter().any(|s| s.html.contains("<table")));
    assert!(doc.pdfs.is_empty());

    let doc = render_document(DEMO, &Limits::default()).expect("renders");
    check_doc(&doc);
    assert_eq!(doc.patient.name, "HÉLÈNE RICHARD");
    assert_eq!(doc.patient.birth_name, None);
    assert_eq!(doc.patient.birth_date.as_deref(), Some("28/01/1946"));
    assert_eq!(doc.sections[0].html, "Proposition thérapeutique de la RCP.");
    assert_eq!(doc.authors[0].name, None);
    assert_eq!(doc.authors[0].id.as_deref(), Some("801234567899"));
}

/// An observationMedia entry carrying `b64`.
fn media(b64: &str) -> String {
    format!(
        "<entry><observationMedia classCode=\"OBS\" moodCode=\"EVN\"><value mediaType=\"application/pdf\" representation=\"B64\">{b64}</value></observationMedia></entry>"
    )
}

#[test]
fn render_observation_media_pdfs() {
    let pdf = b"%PDF-1.4\n% test\n";
    let mut b64 = STANDARD.encode(pdf);
    b64.insert(4, '\n');
    b64.insert(9, ' ');
    let entries = [
        media(&b64),
        media(&STANDARD.encode(b"<html><script>alert(1)</script></html>")),
        media("!!not base64!!"),
        "<entry><observationMedia><value mediaType=\"application/pdf\" representation=\"B64\"><reference value=\"x.pdf\"/></value></observationMedia></entry>".into(),
        media(&b64),
        media(&b64),
    ]
    .concat();
    let doc = render(&cda(
        "<renderMultiMedia referencedObject=\"m1\"><caption>CR</caption></renderMultiMedia>",
        &entries,
    ));
    let got: Vec<_> = doc
        .pdfs
        .iter()
        .map(|p| p.content.as_ref().map(Vec::as_slice))
        .collect();
    assert_eq!(
        got,
        [
            Ok(&pdf[..]),
            Err(&PdfProblem::NotPdf),
            Err(&PdfProblem::NotBase64),
            Err(&PdfProblem::Missing)
        ]
    );
    assert!(
        doc.pdfs
            .iter()
            .all(|p| p.origin == PdfOrigin::ObservationMedia)
    );
    assert_eq!(doc.pdfs_omitted, 2);
    assert_eq!(
        doc.sections[0].html,
        "<span class=\"media\">[contenu multimédia non affiché]</span><span class=\"caption\">CR</span>"
    );
}

#[test]
fn render_hostile_markup_is_text_at_most() {
    let narrative = r#"<paragraph onclick="alert(1)" style="background:url(javascript:alert(1))" styleCode="Bold expression(alert(1)) xss">Texte</paragraph>
<script>alert('v3 script')</script><style>body{background:url(http://evil/x)}</style>
<xhtml:script xmlns:xhtml="http://www.w3.org/1999/xhtml">alert('xhtml')</xhtml:script>
<xhtml:img xmlns:xhtml="http://www.w3.org/1999/xhtml" src="http://evil.example/x.png" onerror="alert(1)"/>
<img src="http://evil.example/y.png"/><iframe src="https://evil.example/">cadre</iframe><object data="x.swf">objet</object>
<xhtml:a xmlns:xhtml="http://www.w3.org/1999/xhtml" href="javascript:alert(1)">cliquer</xhtml:a>
<linkHtml href="javascript:alert(1)" onmouseover="alert(2)">lien</linkHtml>
<content styleCode="Bold" style="width:expression(alert(1))" ID="c1" onfocus="x">gras</content>
<renderMultiMedia referencedObject="img1"/>
<table onload="x"><tr><td colspan="2&quot; onmouseover=&quot;alert(1)" rowspan="100000">cellule</td><td colspan="-1">b</td></tr></table>
<td>hors tableau</td><item>hors liste</item>
<svg xmlns="http://www.w3.org/2000/svg"><script>alert('svg')</script><a href="x">svg-texte</a></svg>
<math xmlns="http://www.w3.org/1998/Math/MathML"><mi>x</mi></math>"#;
    let doc = render(&cda(narrative, ""));
    check_no_markup_leak(&doc);
    let html = &doc.sections[0].html;
    assert!(
        html.contains("<div class=\"paragraph bold\">Texte</div>"),
        "{html}"
    );
    assert!(!html.contains("alert"), "{html}");
    assert!(!html.contains("evil"), "{html}");
    for text in [
        "cadre",
        "objet",
        "cliquer",
        "lien",
        "gras",
        "cellule",
        "hors tableau",
        "hors liste",
        "svg-texte",
    ] {
        assert!(html.contains(text), "{text} lost: {html}");
    }
    assert!(html.contains("<span class=\"link\">lien</span>"));
    assert!(html.contains("<td>cellule</td><td>b</td>"), "{html}");
    assert!(!html.contains("<td>hors"));
    assert!(!html.contains("<li>"));
}

#[test]
fn render_hostile_text_is_escaped() {
    let narrative = r#"<paragraph><![CDATA[<script>alert(1)</script><img src=x onerror=alert(1)>]]>&lt;iframe src="x"&gt; &#60;script&#62; &amp;lt;b&amp;gt;</paragraph>"#;
    let doc = render(&cda(narrative, ""));
    let html = &doc.sections[0].html;
    assert_eq!(
        html,
        "<div class=\"paragraph\">&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;&lt;iframe src=&quot;x&quot;&gt; &lt;script&gt; &amp;lt;b&amp;gt;</div>"
    );
    // Section titles and header fields are plain text; the page escapes them.
    let doc = render(&cda("x", "").replace(
        "<title>Résultats</title>",
        "<title><b>T</b>itre <![CDATA[<script>]]></title>",
    ));
    assert_eq!(doc.sections[0].title, "Titre <script>");
}

#[test]
fn render_refuses_what_ingestion_refuses() {
    let code = |xml: &str| match render_document(xml.as_bytes(), &Limits::default()) {
        Err(RenderError::Refused { code, .. }) => code,
        other => panic!("not refused: {other:?}"),
    };
    // DOCTYPE, entity declarations (billion laughs, external entity).
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><ClinicalDocument xmlns="urn:hl7-org:v3">&lol2;</ClinicalDocument>"#;
    assert_eq!(code(laughs), "cda.doctype.forbidden");
    let xxe = r#"<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><ClinicalDocument xmlns="urn:hl7-org:v3">&x;</ClinicalDocument>"#;
    assert_eq!(code(xxe), "cda.doctype.forbidden");
    assert_eq!(code(&cda("&nbsp;", "")), "cda.doctype.forbidden");
    assert_eq!(code(&cda("&#0;", "")), "cda.xml.invalid");
    // Depth bombs, moderate and huge.
    for n in [300, 100_000] {
        let bomb = format!("{}x{}", "<content>".repeat(n), "</content>".repeat(n));
        assert_eq!(code(&cda(&bomb, "")), "cda.xml.too_deep");
    }
    assert_eq!(code(&cda("<paragraph>", "")), "cda.xml.invalid");
    assert_eq!(
        code("<html xmlns=\"http://www.w3.org/1999/xhtml\"><script>alert(1)</script></html>"),
        "cda.not_clinical_document"
    );
    assert_eq!(
        render_document(b"\xff\xfe<ClinicalDocument/>", &Limits::default()),
        Err(RenderError::NotUtf8)
    );
    let small = Limits {
        max_input_bytes: 100,
        ..Limits::default()
    };
    assert!(matches!(
        render_document(cda("x", "").as_bytes(), &small),
        Err(RenderError::TooLarge { .. })
    ));
}

#[test]
fn render_huge_text_is_cut_balanced() {
    let limits = Limits::default();
    let huge = format!(
        "<table><tbody><tr><td><list><item><paragraph styleCode=\"Bold\">{}</paragraph></item></list></td></tr></tbody></table>",
        "&lt;&amp;&gt;é ".repeat(200_000)
    );
    let extra = "<component><section><title>Après</title><text>après</text></section></component>";
    let doc = render_document(cda(&huge, extra).as_bytes(), &limits).expect("renders");
    check_no_markup_leak(&doc);
    assert!(doc.truncated);
    let total: usize = doc.sections.iter().map(|s| s.html.len()).sum();
    assert!(total <= limits.max_html_bytes, "{total}");
    assert!(total > limits.max_html_bytes - 1_000, "{total}");
    let html = &doc.sections[0].html;
    assert!(html.ends_with("</div></li></ul></td></tr></tbody></table><p class=\"truncated\">[… document tronqué : trop long pour être affiché ici]</p>"));
    // The later section is listed, its narrative not rendered.
    assert_eq!(doc.sections[1].title, "Après");
    assert_eq!(doc.sections[1].html, "");
}

#[test]
fn render_many_sections_are_bounded() {
    let limits = Limits::default();
    let extra = "<component><section><title>s</title><text><paragraph>p</paragraph></text></section></component>"
        .repeat(1_000);
    let doc = render_document(cda("x", &extra).as_bytes(), &limits).expect("renders");
    check_doc(&doc);
    assert_eq!(doc.sections.len(), limits.max_sections);
    assert!(doc.truncated);
}

#[test]
fn render_keeps_header_fields_short() {
    let long = "A".repeat(10_000);
    let doc = render(&cda("x", "").replace("Compte rendu &amp; résultats", &long));
    assert_eq!(doc.title.chars().count(), 256);
    assert!(doc.title.ends_with('…'));
}

#[test]
fn render_fuzz_narrative_seed() {
    // The render_cda fuzz target's narrative seed: every mapped element, hostile markup.
    let seed = include_bytes!("../../fuzz/seeds/render_cda/narrative.xml");
    let doc = render_document(seed, &Limits::default()).expect("renders");
    check_no_markup_leak(&doc);
    assert_eq!(doc.sections.len(), 2);
    assert!(
        doc.sections[0]
            .html
            .contains("<table><caption>Bilan</caption>")
    );
    assert_eq!(doc.pdfs.len(), 1);
    assert!(doc.pdfs[0].content.is_ok());
    assert_eq!(doc.authors[0].name.as_deref(), Some("Paul LEROY"));
}
