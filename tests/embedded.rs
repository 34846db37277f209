//! Integration tests of the embedded chain (`dmpflow process` and `dmpflow demo`), on SQLite
//! and on the real PostgreSQL of `scripts/stack up` (the PostgreSQL cases fail, never skip,
//! when it is not reachable).
//!
//! The document lifecycle is checked on the official ANS messages of
//! `../shared/hl7v2-examples/ORU`: initial (built from the example's own CDA files, since the
//! example message carries a placeholder), replacement and deletion, each document twice
//! over (the N1 PDF rendition and the N3 structured one), then replayed to prove nothing is
//! stored twice.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine;
use common::*;
use serde_json::Value;

fn ans(path: &str) -> PathBuf {
    let p = repo_root().join("../shared/hl7v2-examples/ORU").join(path);
    assert!(p.is_file(), "missing ANS example {}", p.display());
    p
}

/// The ORU^R01 of an ANS example file (some files start with an ACK), with segments
/// separated by `\r`. The ANS examples all reuse MSH-10 `015`; a real sender numbers its
/// messages, and the store treats a repeated (sender, MSH-10) as a resend, so each example
/// gets its own control id here, derived from its file name.
fn oru_of(path: &Path) -> String {
    let ctrl = path
        .file_stem()
        .unwrap()
        .to_string_lossy()
        .replace(' ', "_");
    with_control_id(&raw_oru_of(path), &ctrl)
}

fn with_control_id(msg: &str, ctrl: &str) -> String {
    msg.split('\r')
        .map(|seg| {
            if seg.starts_with("MSH") {
                let mut f: Vec<&str> = seg.split('|').collect();
                f[9] = ctrl;
                f.join("|")
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r")
}

fn raw_oru_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let segs: Vec<&str> = text.split(['\r', '\n']).filter(|s| !s.is_empty()).collect();
    let start = segs
        .iter()
        .position(|s| s.starts_with("MSH") && s.contains("ORU^R01"))
        .expect("an ORU^R01 in the example");
    let end = segs[start + 1..]
        .iter()
        .position(|s| s.starts_with("MSH"))
        .map(|i| start + 1 + i)
        .unwrap_or(segs.len());
    segs[start..end].join("\r") + "\r"
}

/// The ANS initial ORU with its placeholder OBX-5 replaced by the example's real CDA files.
fn initial_oru() -> String {
    let msg = oru_of(&ans(
        "Transmission initiale ORU/message_ORU_CR_Bio_INIT_N1_N3.hl7",
    ));
    let b64 = |f: &str| {
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(ans(&format!("Transmission initiale ORU/{f}"))).unwrap())
    };
    let renditions = [b64("CR_Bio_CDA_Niv1_v1.XML"), b64("CR_Bio_CDA_Niv3_v1.XML")];
    let mut n = 0;
    msg.split('\r')
        .map(|seg| {
            let fields: Vec<&str> = seg.split('|').collect();
            if fields.first() == Some(&"OBX")
                && fields.get(2) == Some(&"ED")
                && !seg.contains("MetaDMPMSS")
            {
                let mut f: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
                f[5] = format!("^TEXT^XML^Base64^{}", renditions[n]);
                n += 1;
                f.join("|")
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r")
}

const NESSI: &str = "ins,ins_oid,birth_name,first_names,birth_date,sex,birth_place,identity_status,feeding_opposed\n277076322082910,1.2.250.1.213.1.4.8,NESSI,RUTH ISABELLE,1977-07-14,F,63220,QUAL,false\n";

fn process(store: &str, dir: &Path, file: &str, body: &str) -> Value {
    let path = dir.join(file);
    std::fs::write(&path, body).unwrap();
    let out = dmpflow()
        .args(["process", "--store", store, "--json"])
        .arg(&path)
        .output()
        .expect("running dmpflow process");
    assert!(
        out.status.success(),
        "process {file} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("--json summary")
}

fn documents(store: &str) -> String {
    let out = dmpflow()
        .args([
            "--store",
            store,
            "documents",
            "list",
            "--ins",
            "277076322082910",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status_of(listing: &str, unique_id: &str) -> String {
    listing
        .lines()
        .find(|l| l.starts_with(unique_id))
        .unwrap_or_else(|| panic!("{unique_id} not listed in:\n{listing}"))
        .split_whitespace()
        .nth(2)
        .unwrap()
        .to_string()
}

fn lifecycle_on(store: &str) {
    let dir = tempdir();
    let csv = dir.join("patients.csv");
    std::fs::write(&csv, NESSI).unwrap();
    let out = dmpflow()
        .args(["--store", store, "patients", "import"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let init = process(store, &dir, "init.hl7", &initial_oru());
    assert_eq!(init["stored"], 2, "both renditions stored: {init}");

    let rplc = oru_of(&ans(
        "Remplacement ORU/message_ORU_CR_Bio_RPLC_N1_Base64_N3_Base64.er7",
    ));
    let s = process(store, &dir, "rplc.hl7", &rplc);
    assert_eq!(s["replaced"], 2, "both renditions replaced: {s}");
    let listing = documents(store);
    assert_eq!(
        status_of(&listing, "1.2.250.1.213.1.1.9 "),
        "superseded",
        "{listing}"
    );
    assert_eq!(
        status_of(&listing, "1.2.250.1.213.1.1.11 "),
        "current",
        "{listing}"
    );

    // The same message three times: nothing changes.
    for _ in 0..3 {
        let again = process(store, &dir, "rplc.hl7", &rplc);
        assert_eq!(again["duplicates"], 2, "{again}");
        assert_eq!(again["replaced"], 0, "{again}");
    }

    let del = oru_of(&ans(
        "Suppression ORU/message_ORU_CR_Bio_DEL_N1_Base64_N3_Base64.er7",
    ));
    let s = process(store, &dir, "del.hl7", &del);
    assert_eq!(s["deleted"], 2, "both renditions deleted: {s}");
    let listing = documents(store);
    assert_eq!(
        status_of(&listing, "1.2.250.1.213.1.1.11 "),
        "deleted",
        "{listing}"
    );
    assert_eq!(
        status_of(&listing, "1.2.250.1.213.1.1.9 "),
        "superseded",
        "{listing}"
    );
    assert!(listing.contains("4 documents"), "{listing}");

    // Replaying the whole window (initial, replacement, deletion) leaves the same rows.
    let mut all = String::new();
    for body in [initial_oru(), rplc.clone(), del.clone()] {
        all.push_str(&body);
        all.push('\n');
    }
    let replay = process(store, &dir, "window.hl7", &all);
    assert_eq!(replay["stored"], 0, "{replay}");
    assert_eq!(replay["replaced"], 0, "{replay}");
    assert_eq!(replay["deleted"], 0, "{replay}");
    assert_eq!(
        documents(store),
        listing,
        "replaying the window changed the store"
    );
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("dmpflow-embedded-{}", unique()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn ans_lifecycle_initial_replacement_deletion_on_sqlite() {
    let db = tempdir().join("dmp.db");
    lifecycle_on(&format!("sqlite://{}", db.display()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ans_lifecycle_initial_replacement_deletion_on_postgres() {
    let db = fresh_database("lifecycle").await;
    tokio::task::spawn_blocking(move || lifecycle_on(&db))
        .await
        .unwrap();
}

#[test]
fn demo_stores_every_flow_and_shows_each_quarantine_and_reject_reason() {
    let db = tempdir().join("demo.db");
    let out = dmpflow()
        .args(["demo", "--json", "--db"])
        .arg(&db)
        .output()
        .expect("running dmpflow demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: Value = serde_json::from_slice(&out.stdout).expect("--json summary");
    for feed in ["lab", "imaging", "pharmacy", "cancer"] {
        let stored = s["by_feed"][feed]["stored"].as_u64().unwrap_or(0);
        assert!(stored > 0, "no {feed} document stored: {s}");
    }
    assert!(s["patient_updates"].as_u64().unwrap() >= 4, "{s}");
    assert_eq!(s["replaced"], 1, "{s}");
    assert_eq!(s["deleted"], 1, "{s}");
    for reason in [
        "ins.unknown",
        "identity.traits.mismatch",
        "patient.opposed",
        "ins.key.invalid",
        "hl7.charset.unsupported",
        "drug.cip13.checkdigit",
    ] {
        assert_eq!(s["reasons"][reason], 1, "reason {reason}: {s}");
    }
    let total = [
        "stored",
        "replaced",
        "deleted",
        "duplicates",
        "quarantined",
        "rejected",
    ]
    .iter()
    .map(|k| s[k].as_u64().unwrap())
    .sum::<u64>()
        + s["patient_updates"].as_u64().unwrap();
    // One item per message here (no message of the demo carries two documents).
    assert_eq!(
        total,
        s["messages"].as_u64().unwrap(),
        "every message has one outcome: {s}"
    );
}
