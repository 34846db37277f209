//! End to end: the synthetic HL7 fixtures through `normalize` (mapping + the cda writers),
//! and every generated CDA through `../shared/tools/cisis-validate` (XSD + CI-SIS
//! schematrons). Checks that what the mappings read is enough for a valid document. A
//! missing validator fails the test: a skipped check would let an invalid document through.

use std::path::Path;
use std::process::Command;

use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::{Feed, Normalized};

#[test]
fn generated_documents_from_fixtures_pass_cisis_validate() {
    let tool = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/cisis-validate");
    assert!(
        tool.exists(),
        "CI-SIS validator not found at {}",
        tool.display()
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mapping_cisis");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    for (feed, name) in [
        (Feed::Lab, "lab_oru_r01_two_batteries.hl7"),
        (Feed::Imaging, "imaging_oru_r01.hl7"),
        (Feed::Pharmacy, "pharmacy_rds_o13.hl7"),
    ] {
        let p = format!("{}/tests/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
        let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"));
        for item in normalize(feed, &raw, &Config::default()).unwrap() {
            let Normalized::Document(d) = item else {
                panic!("{name}: expected a document")
            };
            let cda = d.cda.as_xml().expect("normalize writes XML");
            std::fs::write(dir.join(format!("{name}.xml")), cda).unwrap();
            n += 1;
        }
    }
    let out = Command::new(&tool)
        .arg("--json")
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "validator output is not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let docs = report["documents"].as_array().expect("documents array");
    assert_eq!(docs.len(), n);
    let failures: Vec<String> = docs
        .iter()
        .filter(|r| r["errors"].as_array().is_some_and(|e| !e.is_empty()))
        .map(|r| format!("{}: {}", r["file"], r["errors"]))
        .collect();
    assert!(
        failures.is_empty(),
        "CI-SIS errors:\n{}",
        failures.join("\n")
    );
    assert!(out.status.success());
}
