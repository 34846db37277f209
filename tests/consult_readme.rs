//! The README's FHIR walkthrough, run as written: the demo database, then the three commands
//! between the `<!-- consult -->` markers (mint a dev token, which creates the dev key pair;
//! start `serve` on the demo database; query it with curl). Only the ports are changed, to
//! free ones, so that this test never collides with a server already on 8080 or 9466. Then
//! the same server is checked as an operator would: health, metrics by route template,
//! and the access trace of the curl call.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const README_PORT: &str = "127.0.0.1:8080";

/// A README line for bash in `dir`: `cargo run --release --` is the binary under test and
/// the server's address a free port.
fn as_run(line: &str, addr: &str) -> String {
    let bin = env!("CARGO_BIN_EXE_dmpflow");
    assert!(
        line.starts_with("cargo run --release -- ") || line.starts_with("curl "),
        "a walkthrough line this test does not know how to run: {line:?}"
    );
    line.replace("cargo run --release --", bin)
        .replace(README_PORT, addr)
}

fn bash(dir: &Path, script: &str, env: &[(&str, String)]) -> Command {
    let mut c = Command::new("bash");
    c.arg("-c").arg(script).current_dir(dir);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

#[test]
fn readme_walkthrough_serves_the_demo_documents() {
    let lines = readme_block("consult");
    assert_eq!(
        lines.len(),
        3,
        "three commands, as the issue asks: {lines:?}"
    );
    let dir = std::env::temp_dir().join(format!("dmpflow-consult-readme-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    // The main job first: `demo` writes dmpflow-demo.db in the working directory.
    let out = dmpflow().current_dir(&dir).arg("demo").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let env = [("DMPFLOW_SERVE_METRICS_ADDR", metrics.clone())];

    // 1. The token (and the dev key pair, created now).
    let out = bash(&dir, &as_run(&lines[0], &addr), &env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.join("dev.pem").exists() && dir.join("dev.pub.pem").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("dev.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is the owner's only");
    }
    let token = std::fs::read_to_string(dir.join("token")).unwrap();
    assert_eq!(token.trim().split('.').count(), 3, "a JWT on stdout, alone");

    // 2. The server, in the background (`&` is this test's spawn).
    let serve_line = lines[1]
        .strip_suffix('&')
        .expect("the serve line runs in the background")
        .trim();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let _server = Server(
        bash(&dir, &format!("exec {}", as_run(serve_line, &addr)), &env)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(&metrics, "/health/ready", None).map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "serve not ready: {}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // 3. curl, as written: the patient's documents newest first, three to a page; eight of
    // the nine stored (the demo sends one with INVISIBLE_PATIENT, hidden from the patient).
    let out = bash(&dir, &as_run(&lines[2], &addr), &env)
        .output()
        .unwrap();
    assert!(out.status.success());
    let bundle: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 8);
    assert_eq!(bundle["entry"].as_array().unwrap().len(), 3);
    assert!(
        bundle["link"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["relation"] == "next")
    );

    // The operator's view: the request counted by its route template, and the call traced.
    let (_, m) = http_get(&metrics, "/metrics", None).unwrap();
    assert!(
        m.contains(
            r#"dmpflow_consult_requests_total{route="/fhir/DocumentReference",status="200"} 1"#
        ),
        "{m}"
    );
    let (status, _) = http_get(&addr, "/fhir/metadata", None).unwrap();
    assert_eq!(status, 200);
    // One trace row, for the curl search (metadata and health are not traced).
    let url = format!("sqlite://{}", dir.join("dmpflow-demo.db").display());
    let rows = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = dmpflow_store::Store::connect(&url).await.unwrap();
        store.traces_for_patient("241111305541318").await.unwrap()
    });
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].actor_role.as_str(), rows[0].outcome.as_str()),
        ("patient", "permit")
    );
    assert_eq!(rows[0].document_ids.len(), 3);
    let log = std::fs::read_to_string(dir.join("serve.log")).unwrap();
    assert!(log.contains("DEV KEY AUTHENTICATION"), "{log}");
    // No patient data in the server's log: not the INS the curl asked for.
    assert!(!log.contains("241111305541318"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
