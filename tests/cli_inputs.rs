//! The file tools (`dmpflow normalize`, `process`, `load`) under hostile and careless
//! input, run as the built binary: output names derived from document ids stay inside
//! `--out` and never follow a planted symbolic link; a bad id, a dangling link or a link
//! loop costs one error line, not the run; no input at all is exit 2; `process` reads one
//! file at a time (peak RSS stays flat however large the input). SQLite only: no service
//! is needed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use common::*;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dmpflow-cli-{tag}-{}", unique()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The first message of the bundled cancer feed (an MDM carrying a finished CDA whose
/// `<id root="1.2.250.1.999.3.1"/>` names the document), with its CDA id and MSH-10 changed.
fn cancer_mdm_with_id(doc_id: &str, control_id: &str) -> String {
    let data = std::fs::read_to_string(repo_root().join("demo/cancer.hl7")).unwrap();
    let segs: Vec<&str> = data.split(['\r', '\n']).filter(|s| !s.is_empty()).collect();
    let end = segs[1..]
        .iter()
        .position(|s| s.starts_with("MSH"))
        .map_or(segs.len(), |i| i + 1);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = String::new();
    for seg in &segs[..end] {
        let mut f: Vec<String> = seg.split('|').map(str::to_string).collect();
        if f[0] == "MSH" {
            f[9] = control_id.to_string();
        } else if f[0] == "OBX" && seg.contains("Base64") {
            let mut c: Vec<String> = f[5].split('^').map(str::to_string).collect();
            let xml = String::from_utf8(b64.decode(&c[4]).unwrap()).unwrap();
            let old = r#"<id root="1.2.250.1.999.3.1"/>"#;
            assert!(xml.contains(old), "the demo CDA names its id");
            let new = format!(r#"<id root="{doc_id}"/>"#);
            c[4] = b64.encode(xml.replace(old, &new));
            f[5] = c.join("^");
        }
        out.push_str(&f.join("|"));
        out.push('\r');
    }
    out
}

/// Every regular file under `dir` (not following links), relative.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn normalize_keeps_hostile_ids_inside_out_and_a_bad_id_costs_one_line() {
    let root = temp_dir("ids");
    // --out two levels down, so `../../x` would land in `root`.
    let out_dir = root.join("a/out");
    std::fs::create_dir_all(&out_dir).unwrap();
    // A planted link where the good document's file goes, pointing outside --out.
    let victim = root.join("victim.txt");
    std::fs::write(&victim, "untouched").unwrap();
    std::os::unix::fs::symlink(&victim, out_dir.join("1.2.250.1.999.3.1.xml")).unwrap();

    let absolute = root.join("abs");
    let long = format!("1.2.{}", "3".repeat(400));
    let input = root.join("in.hl7");
    let messages = [
        cancer_mdm_with_id("../../x", "A"),
        cancer_mdm_with_id(absolute.to_str().unwrap(), "B"),
        cancer_mdm_with_id(&long, "C"),
        cancer_mdm_with_id("1.2.250.1.999.3.1", "D"),
    ];
    std::fs::write(&input, messages.concat()).unwrap();

    let out = dmpflow()
        .args(["normalize", "--feed", "cancer", "--out"])
        .arg(&out_dir)
        .arg(&input)
        .output()
        .unwrap();
    let report = text(&out);
    // The run went through every message (a bad id is a reject line or a renamed file,
    // depending on whether normalize refuses it; never the end of the run).
    assert!(report.contains("1 files, 4 messages"), "{report}");
    assert!(report.contains("#4: MDM^T02"), "{report}");

    // Nothing written outside --out: only the input and the victim sit in root.
    let outside: Vec<PathBuf> = files_under(&root)
        .into_iter()
        .filter(|p| !p.starts_with("a/out"))
        .collect();
    assert_eq!(
        outside,
        vec![PathBuf::from("in.hl7"), PathBuf::from("victim.txt")],
        "{report}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
    // The good document replaced the link with a real file inside --out.
    let good = out_dir.join("1.2.250.1.999.3.1.xml");
    let md = std::fs::symlink_metadata(&good).unwrap();
    assert!(md.file_type().is_file(), "{report}");
    assert!(
        std::fs::read_to_string(&good)
            .unwrap()
            .contains("ClinicalDocument")
    );
    // Every name in --out is one plain file name, none longer than a file system takes.
    for f in files_under(&out_dir) {
        let name = f.to_str().unwrap();
        assert!(!name.contains('/') && name.len() < 200, "{name}");
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn no_input_messages_is_exit_2_for_every_tool() {
    let root = temp_dir("empty");
    let empty_dir = root.join("in");
    std::fs::create_dir_all(&empty_dir).unwrap();
    std::fs::write(empty_dir.join("blank.hl7"), "\r\n\r\n").unwrap();
    let db = format!("sqlite://{}", root.join("p.db").display());
    let runs: [Vec<String>; 3] = [
        vec![
            "normalize".into(),
            "--out".into(),
            root.join("out").display().to_string(),
        ],
        vec!["process".into(), "--store".into(), db],
        vec!["load".into(), "--feed".into(), "lab".into()],
    ];
    for args in runs {
        let out = dmpflow()
            // `load` must not need a broker to find out there is nothing to send.
            .env("DMPFLOW_KAFKA_BOOTSTRAP", "127.0.0.1:9")
            .args(&args)
            .arg(&empty_dir)
            .output()
            .unwrap();
        let report = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {report}");
        assert!(report.contains("no input messages found"), "{report}");
    }
    // A path that does not exist is one error line, and nothing else to do: exit 2.
    let out = dmpflow()
        .args(["normalize", "--out"])
        .arg(root.join("out"))
        .arg(root.join("missing"))
        .output()
        .unwrap();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(2), "{report}");
    assert!(report.contains("missing"), "{report}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn link_loops_end_and_a_bad_entry_costs_one_line_in_a_directory_run() {
    let root = temp_dir("tree");
    let tree = root.join("in");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    let (ins, csv) = patient_csv("1800375123011");
    std::fs::write(tree.join("a.hl7"), lab_oru(&ins, "tree", 1)).unwrap();
    std::fs::write(tree.join("sub/b.hl7"), lab_oru(&ins, "tree", 2)).unwrap();
    // A link back up the tree (a loop), and a dangling link (an unreadable entry).
    std::os::unix::fs::symlink("..", tree.join("sub/loop")).unwrap();
    std::os::unix::fs::symlink(root.join("nowhere"), tree.join("dangling.hl7")).unwrap();
    let patients = root.join("patients.csv");
    std::fs::write(&patients, csv).unwrap();

    let db = format!("sqlite://{}", root.join("p.db").display());
    let mut child = dmpflow()
        .args(["process", "--accept-test-oids", "--json", "--store", &db])
        .arg("--patients")
        .arg(&patients)
        .arg(&tree)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A loop followed forever would never end: bound the wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process did not end on a tree with a link loop");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let report = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one bad entry: exit 1; {report}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect(&report);
    assert_eq!(summary["files"], 2, "each file once: {report}");
    assert_eq!(summary["messages"], 2, "{report}");
    assert_eq!(summary["stored"], 2, "{report}");
    assert_eq!(summary["input_errors"], 1, "{report}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.contains("dangling.hl7"))
            .count(),
        1,
        "{report}"
    );

    // The text summary names files, messages, documents and errors.
    let out = dmpflow()
        .args(["process", "--accept-test-oids", "--store", &db])
        .arg(&tree)
        .output()
        .unwrap();
    let report = text(&out);
    assert!(
        report.contains("2 files, 2 messages, 2 documents, 0 skipped, 1 errors"),
        "{report}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Peak RSS (VmHWM, kB) of a running process, read until it exits; the last value read
/// is the peak up to a few milliseconds before the end.
fn peak_rss_kb(child: &mut std::process::Child) -> u64 {
    let path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Ok(s) = std::fs::read_to_string(&path)
            && let Some(kb) = s
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        {
            peak = kb;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    peak
}

#[test]
fn process_holds_one_file_at_a_time() {
    let root = temp_dir("stream");
    let tree = root.join("in");
    std::fs::create_dir_all(&tree).unwrap();
    // 60 files of 2 MB (120 MB in all) of messages normalize refuses at once (a message
    // type no feed takes): the cost is reading, not building documents.
    let filler = "X".repeat(64 << 10);
    for f in 0..60 {
        let mut body = String::new();
        for n in 0..32 {
            body.push_str(&format!(
                "MSH|^~\\&|SIL|LAB|DMP|X|20240101||ZZZ^Z01|m{f}-{n}|P|2.5\rNTE|1||{filler}\r"
            ));
        }
        std::fs::write(tree.join(format!("f{f:03}.hl7")), body).unwrap();
    }
    let db = format!("sqlite://{}", root.join("p.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_dmpflow"))
        .current_dir(&root)
        .args(["process", "--json", "--feed", "lab", "--store", &db])
        .arg(&tree)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peak = peak_rss_kb(&mut child);
    let out = child.wait_with_output().unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["messages"], 60 * 32);
    eprintln!("process: peak RSS {peak} kB over 120 MB of input in 60 files");
    // Holding the whole input (as before) is 120 MB and more; one file is 2 MB.
    assert!(peak > 0 && peak < 64 * 1024, "peak RSS {peak} kB");
    assert_eq!(summary["files"], 60);
    std::fs::remove_dir_all(&root).unwrap();
}
