//! Every CDA dmpflow generates from the bundled demo feeds (CR-BIO with several batteries,
//! corrections and deletions, CR-IMG, eDISP-MED with one to three lines, accents and
//! escapes in names and comments) passes the official ANS checks: CDA_extended.xsd and the
//! CI-SIS schematrons, through `../shared/tools/cisis-validate`. Documents received finished
//! (the synthetic FRCP of the cancer feed) are not ours and are left out. Needs python3;
//! fails, never skips, when the validator is missing.

mod common;

use common::*;

#[test]
fn every_generated_cda_of_the_demo_feeds_passes_cisis_validate() {
    let validator = repo_root().join("../shared/tools/cisis-validate");
    assert!(validator.is_file(), "missing {}", validator.display());
    let out_dir = std::env::temp_dir().join(format!("dmpflow-cisis-{}", unique()));
    let out = dmpflow()
        .args(["normalize", "--out"])
        .arg(&out_dir)
        .arg(repo_root().join("demo"))
        .output()
        .expect("running dmpflow normalize");
    // The demo holds two deliberate rejects, so the exit status is 1; the documents are written.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 rejected"), "{stdout}");

    let generated = out_dir.join("generated");
    std::fs::create_dir_all(&generated).unwrap();
    let mut volets = std::collections::BTreeMap::<String, usize>::new();
    for entry in std::fs::read_dir(&out_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if meta.get("origin").and_then(|o| o.as_str()) != Some("generated") {
            continue;
        }
        *volets
            .entry(meta["type_code"].as_str().unwrap().to_string())
            .or_default() += 1;
        let xml = path.with_extension("xml");
        std::fs::rename(&xml, generated.join(xml.file_name().unwrap())).unwrap();
    }
    for (code, volet) in [
        ("11502-2", "CR-BIO"),
        ("18748-4", "CR-IMG"),
        ("60593-1", "eDISP-MED"),
    ] {
        assert!(
            volets.get(code).copied().unwrap_or(0) > 0,
            "no {volet} generated: {volets:?}"
        );
    }
    let result = std::process::Command::new(&validator)
        .arg(&generated)
        .output()
        .expect("running cisis-validate");
    let report = String::from_utf8_lossy(&result.stdout);
    let failures: Vec<&str> = report
        .lines()
        .filter(|l| !l.starts_with("PASS"))
        .take(40)
        .collect();
    assert!(
        result.status.success(),
        "cisis-validate failed on generated documents ({volets:?}):\n{}\n{}",
        failures.join("\n"),
        String::from_utf8_lossy(&result.stderr)
    );
    println!(
        "cisis-validate: {} ({volets:?})",
        report.lines().last().unwrap_or("")
    );
}
