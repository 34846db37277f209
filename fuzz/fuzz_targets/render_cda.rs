//! Fuzz target: the portal's CDA renderer (`dmpflow_render::render_document`). Input: the
//! document. Checks, besides "no panic": every section's HTML passes the independent
//! allow-list oracle (`assert_safe_html`: only the renderer's fixed tags, only `class`,
//! `colspan`, `rowspan`, no `<script`, no `on…=` attribute, balanced), the HTML stays
//! within its budget, header fields are bounded, and a second rendering is identical.
#![no_main]

use dmpflow_render::{Limits, render_document};
use dmpflow_fuzz::assert_safe_html;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A small HTML budget so that truncation is reached by small inputs too.
    let limits = Limits {
        max_html_bytes: 8 << 10,
        max_sections: 16,
        max_pdfs: 2,
        max_pdf_bytes: 64 << 10,
        ..Limits::default()
    };
    let Ok(doc) = render_document(data, &limits) else {
        return;
    };
    let mut total = 0;
    for s in &doc.sections {
        assert_safe_html(&s.html);
        total += s.html.len();
        assert!(s.title.chars().count() <= 256, "section title not bounded");
    }
    assert!(
        total <= limits.max_html_bytes,
        "HTML over its budget: {total}"
    );
    assert!(doc.sections.len() <= limits.max_sections);
    assert!(doc.pdfs.len() <= limits.max_pdfs);
    for p in &doc.pdfs {
        if let Ok(bytes) = &p.content {
            assert!(bytes.starts_with(b"%PDF-") && bytes.len() <= limits.max_pdf_bytes);
        }
    }
    assert!(doc.title.chars().count() <= 256, "title not bounded");
    assert_eq!(
        render_document(data, &limits).as_ref(),
        Ok(&doc),
        "rendering is not deterministic"
    );
});
