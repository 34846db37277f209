//! `docs/consultation.md` lists every reason code the read side answers or traces: each code
//! written in the crate's sources (and every authorisation `Reason`) must be in its table,
//! so that a client or an auditor can look any code up.

use dmpflow_consult::authz::Reason;

const DOC: &str = include_str!("../../docs/consultation.md");

/// The sources whose string literals carry reason codes.
const SOURCES: &[&str] = &[
    include_str!("../src/auth/error.rs"),
    include_str!("../src/authz/reason.rs"),
    include_str!("../src/fhir/search.rs"),
    include_str!("../src/server/http.rs"),
    include_str!("../src/server/documents.rs"),
    include_str!("../src/server/others.rs"),
    include_str!("../src/server/scope.rs"),
    include_str!("../src/server/provide.rs"),
    include_str!("../src/fhir/provide.rs"),
    include_str!("../src/mdm.rs"),
    include_str!("../src/server/portal/dmp.rs"),
    include_str!("../src/server/portal/login.rs"),
    include_str!("../src/server/portal/pro.rs"),
    include_str!("../src/server/portal/page.rs"),
];

/// String literals of the form `"auth.…"`, `"consult.…"`, `"search.…"`.
fn codes(source: &str) -> Vec<&str> {
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            ["auth.", "consult.", "search.", "provide."]
                .iter()
                .any(|p| s.starts_with(p))
                && !s.ends_with('.') // a prefix the code tests, e.g. "auth.config."
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
        })
        .collect()
}

#[test]
fn every_reason_code_is_in_the_table() {
    let mut missing: Vec<String> = Vec::new();
    let table = |code: &str| DOC.contains(&format!("| `{code}` |"));
    for r in Reason::ALL {
        if !table(r.as_str()) {
            missing.push(r.as_str().to_owned());
        }
    }
    let mut found = 0;
    for src in SOURCES {
        for code in codes(src) {
            found += 1;
            if !table(code) {
                missing.push(code.to_owned());
            }
        }
    }
    assert!(found > 40, "the scan found only {found} codes");
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "reason codes missing from docs/consultation.md: {missing:?}"
    );
}
