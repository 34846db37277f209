//! The JDV_J07 table embedded in normalize (`mapping::xds_types`) still matches the value
//! set file it was generated from (`../shared/cisis/jeuxDeValeurs`). Only this test reads
//! `../shared`: the product carries the table as Rust.

use dmpflow_normalize::mapping::xds_types::{J07, J07_OID};

#[test]
fn the_embedded_j07_table_matches_the_value_set_file() {
    let p = format!(
        "{}/../../shared/cisis/jeuxDeValeurs/JDV_J07_XdsTypeCode_CISIS.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    let xml = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"));
    let doc = roxmltree::Document::parse(&xml).expect("the value set file is XML");
    let set = doc
        .descendants()
        .find(|n| n.has_tag_name("ValueSet"))
        .expect("a ValueSet");
    assert_eq!(set.attribute("id"), Some(J07_OID));
    let file: Vec<(String, String, String)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("Concept"))
        .map(|n| {
            let a = |k: &str| n.attribute(k).unwrap_or_default().to_string();
            (a("code"), a("codeSystem"), a("displayName"))
        })
        .collect();
    let embedded: Vec<(String, String, String)> = J07
        .iter()
        .map(|t| {
            (
                t.code.to_string(),
                t.code_system.to_string(),
                t.display.to_string(),
            )
        })
        .collect();
    assert_eq!(
        embedded, file,
        "re-generate normalize/src/mapping/xds_types.rs from the value set"
    );
    assert!(J07.len() > 100);
}
