//! `dmpflow quarantine release` by filter (issue #12 item 7: 177 demo cases once had to be
//! released one id at a time): the selection by reason and feed, `--dry-run`, the refusal
//! to release more than a few cases without a terminal or `--yes`, and the summary. On an
//! embedded SQLite store filled by `dmpflow process` with the demo feeds, whose test OIDs
//! are refused by default (`ins.oid.rejected`).

mod common;

use std::process::{Output, Stdio};

use common::*;

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// dmpflow on `store`, stdin not a terminal, the test OIDs not accepted by the environment.
fn cli(store: &str, args: &[&str]) -> Output {
    dmpflow()
        .env_remove("DMPFLOW_ACCEPT_TEST_OIDS")
        .arg("--store")
        .arg(store)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running dmpflow")
}

/// `N cases` at the end of `quarantine list`.
fn open_cases(store: &str, filter: &[&str]) -> usize {
    let out = cli(store, &[&["quarantine", "list"], filter].concat());
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find_map(|l| l.strip_suffix(" cases")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count: {}", text(&out)))
}

#[test]
fn release_by_filter_counts_confirms_and_summarises() {
    let dir = std::env::temp_dir().join(format!("dmpflow-qrelease-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = format!("sqlite://{}", dir.join("q.db").display());
    let demo = repo_root().join("demo");
    // Without --accept-test-oids every demo document is quarantined ins.oid.rejected.
    for feed in ["lab", "imaging"] {
        let out = dmpflow()
            .env_remove("DMPFLOW_ACCEPT_TEST_OIDS")
            .args([
                "process",
                "--json",
                "--feed",
                feed,
                "--store",
                &store,
                "--patients",
            ])
            .arg(demo.join("patients.csv"))
            .arg(demo.join(format!("{feed}.hl7")))
            .output()
            .unwrap();
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    }
    let oid = ["--reason", "ins.oid.rejected"];
    let lab = open_cases(&store, &[&oid[..], &["--feed", "lab"]].concat());
    let imaging = open_cases(&store, &[&oid[..], &["--feed", "imaging"]].concat());
    let all = open_cases(&store, &[]);
    let imaging_other = open_cases(&store, &["--feed", "imaging"]) - imaging;
    assert!(lab > 10 && imaging > 10, "lab {lab}, imaging {imaging}");
    assert!(all >= lab + imaging, "{all}");

    // --dry-run: the count, nothing released.
    let out = cli(
        &store,
        &[
            "quarantine",
            "release",
            "--reason",
            "ins.oid.rejected",
            "--feed",
            "imaging",
            "--dry-run",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{imaging} cases would be released")),
        "{}",
        text(&out)
    );
    assert_eq!(open_cases(&store, &[]), all);

    // More than 10 cases, no terminal, no --yes: refused, nothing released.
    let out = cli(
        &store,
        &[
            "quarantine",
            "release",
            "--reason",
            "ins.oid.rejected",
            "--feed",
            "imaging",
            "--accept-test-oids",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--yes"), "{}", text(&out));
    assert_eq!(open_cases(&store, &[]), all);

    // Confirmed, but the OIDs still refused: every case still fails, stays open, and the
    // summary says why (exit 1).
    let out = cli(
        &store,
        &[
            "quarantine",
            "release",
            "--reason",
            "ins.oid.rejected",
            "--feed",
            "imaging",
            "--yes",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "still failing {imaging} (ins.oid.rejected {imaging})"
        )),
        "{}",
        text(&out)
    );
    assert_eq!(open_cases(&store, &[]), all);

    // With the test OIDs accepted: only the imaging cases are released, the lab ones stay.
    let out = cli(
        &store,
        &[
            "quarantine",
            "release",
            "--reason",
            "ins.oid.rejected",
            "--feed",
            "imaging",
            "--since",
            "1h",
            "--accept-test-oids",
            "--yes",
        ],
    );
    let report = text(&out);
    assert!(report.contains("released "), "{report}");
    // Each case was re-routed: filed, or open under the reason it fails for now.
    let left = open_cases(&store, &[&oid[..], &["--feed", "imaging"]].concat());
    assert_eq!(left, 0, "{report}");
    assert_eq!(
        open_cases(&store, &[&oid[..], &["--feed", "lab"]].concat()),
        lab,
        "the lab cases are untouched"
    );
    // What did not get filed is in the summary, by reason (the demo's deliberate cases:
    // a patient the registry does not know, a trait mismatch, ...); exit 0 only if none.
    let still = open_cases(&store, &["--feed", "imaging"]) - imaging_other;
    assert_eq!(
        out.status.code(),
        Some(if still == 0 { 0 } else { 1 }),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "still failing {still}{}",
            if still == 0 { ";" } else { " (" }
        )),
        "{report}"
    );
    let documents = cli(&store, &["documents", "list", "--ins", "263083155577816"]);
    assert!(text(&documents).contains("18748-4"), "{}", text(&documents));

    // A filter in the future matches nothing; no filter and no id is an error.
    let out = cli(
        &store,
        &[
            "quarantine",
            "release",
            "--reason",
            "ins.oid.rejected",
            "--since",
            "2999-01-01T00:00:00Z",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no open case matches"),
        "{}",
        text(&out)
    );
    let out = cli(&store, &["quarantine", "release"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    std::fs::remove_dir_all(&dir).ok();
}
