//! The README's Kafka quick start, run as written (issue #12 item 7: followed step by step
//! it once stored 0 documents, every demo document quarantined `ins.oid.rejected`). The
//! commands are read from README.md between the `<!-- quickstart -->` markers, so the
//! README and this test cannot drift apart; only what isolates a test from the others is
//! added, through the environment (its own topics, groups, database and metrics port),
//! never through the command lines. The documents stored are compared, patient by patient,
//! with what `dmpflow process` stores for the same input in one process.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::harness::group_lag;
use common::*;

/// `cargo run --release -- ARGS` → ARGS (the test runs the binary cargo built for it).
fn dmpflow_args(line: &str) -> Vec<String> {
    let rest = line
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| {
            panic!("a quick-start line this test does not know how to run: {line:?}")
        });
    assert!(
        !rest.contains(['\'', '"', '$', '&', '|', ';', '<', '>', '`', '*']),
        "the quick start must stay plain commands, no shell syntax: {line:?}"
    );
    rest.split_whitespace().map(str::to_string).collect()
}

/// The INS of every demo patient.
fn demo_ins() -> Vec<String> {
    let csv = std::fs::read_to_string(repo_root().join("demo/patients.csv")).unwrap();
    csv.lines()
        .skip(1)
        .filter_map(|l| l.split(',').next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs dmpflow from the repository root, where the README's relative paths hold.
fn run_in_repo(env: &[(String, String)], args: &[String]) -> std::process::Output {
    dmpflow()
        .current_dir(repo_root())
        .env_remove("DMPFLOW_ACCEPT_TEST_OIDS")
        .envs(env.iter().cloned())
        .args(args)
        .output()
        .expect("running dmpflow")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `N documents` at the end of `documents list`.
fn listed(out: &std::process::Output) -> usize {
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_suffix(" documents")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no document count in {stdout}"))
}

/// Documents per demo patient in a store, by `documents list`.
fn documents_per_patient(env: &[(String, String)], store: &str) -> Vec<(String, usize)> {
    demo_ins()
        .into_iter()
        .map(|ins| {
            let args: Vec<String> = ["--store", store, "documents", "list", "--ins", &ins]
                .map(String::from)
                .to_vec();
            let out = run_in_repo(env, &args);
            assert!(out.status.success(), "{}", text(&out));
            let n = listed(&out);
            (ins, n)
        })
        .collect()
}

/// What `dmpflow process` stores for the quick start's inputs, in one process, without
/// `--feed` (each message's feed guessed).
fn embedded_reference(env: &[(String, String)], loads: &[Vec<String>]) -> Vec<(String, usize)> {
    let dir = std::env::temp_dir().join(format!("dmpflow-quickstart-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("ref.db").display());
    let mut args: Vec<String> = [
        "process",
        "--accept-test-oids",
        "--json",
        "--store",
        &db,
        "--patients",
        "demo/patients.csv",
    ]
    .map(String::from)
    .to_vec();
    args.extend(loads.iter().map(|l| l[1].clone()));
    let out = run_in_repo(env, &args);
    // The demo holds deliberate rejects: exit 1 is expected, a failure to run is not.
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    let per_patient = documents_per_patient(env, &db);
    std::fs::remove_dir_all(&dir).ok();
    per_patient
}

/// Status code of GET `path` on 127.0.0.1:`port`, if anything answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = String::new();
    s.read_to_string(&mut head).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

fn spawn_run(env: &[(String, String)], args: &[String], log: &Path) -> Child {
    dmpflow()
        .current_dir(repo_root())
        .env_remove("DMPFLOW_ACCEPT_TEST_OIDS")
        .envs(env.iter().cloned())
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("starting dmpflow run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quick_start_stores_the_demo_documents() {
    require_kafka();
    let lines = readme_block("quickstart");
    let db = fresh_database("quickstart").await;
    let prefix = format!("qs{}", unique());
    let port = free_port();
    // Isolation only: this test's topics, groups, database and metrics port. The test
    // OIDs are NOT accepted by the environment: the README's command lines must do it.
    let env: Vec<(String, String)> = isolated_env(&prefix, &db)
        .into_iter()
        .filter(|(k, _)| k != "DMPFLOW_ACCEPT_TEST_OIDS")
        .chain([("DMPFLOW_METRICS_ADDR".into(), format!("127.0.0.1:{port}"))])
        .collect();
    let log = std::env::temp_dir().join(format!("{prefix}-run.log"));

    let mut loads: Vec<Vec<String>> = Vec::new();
    let mut listings: Vec<Vec<String>> = Vec::new();
    let mut run: Option<Child> = None;
    for line in &lines {
        if line == "scripts/stack up" {
            // The stack runs already (require_kafka above); `up` is idempotent.
            continue;
        }
        let args = dmpflow_args(line);
        match args[0].as_str() {
            "run" => {
                assert!(run.is_none(), "one `run` in the quick start");
                let mut child = spawn_run(&env, &args, &log);
                let deadline = Instant::now() + Duration::from_secs(60);
                while http_status(port, "/health/ready") != Some(200) {
                    if let Some(st) = child.try_wait().unwrap() {
                        panic!(
                            "`{line}` exited ({st}): {}",
                            std::fs::read_to_string(&log).unwrap_or_default()
                        );
                    }
                    assert!(Instant::now() < deadline, "`{line}` not ready within 60 s");
                    std::thread::sleep(Duration::from_millis(200));
                }
                run = Some(child);
            }
            "load" => {
                let out = run_in_repo(&env, &args);
                assert!(out.status.success(), "`{line}`: {}", text(&out));
                // A person types the next line some seconds later: wait until normalize
                // has read what was loaded, so the identity feed is applied before the
                // documents of its patients, as in the one-process reference below.
                let topic = format!("{prefix}.feed.{}", args[3]);
                let group = format!("{prefix}.g.normalize");
                assert!(
                    wait_until(Duration::from_secs(60), || {
                        let (g, t) = (group.clone(), topic.clone());
                        async move { group_lag(&g, &[t]) == 0 }
                    })
                    .await,
                    "normalize did not read {topic}"
                );
                loads.push(args);
            }
            "documents" | "quarantine" => listings.push(args),
            _ => {
                let out = run_in_repo(&env, &args);
                assert!(out.status.success(), "`{line}`: {}", text(&out));
            }
        }
    }
    let mut run = run.expect("the quick start starts `run`");
    assert_eq!(loads.len(), 5, "the quick start loads the five demo feeds");
    assert_eq!(listings.len(), 2, "documents list and quarantine list");

    // What the same input gives in one process (no Kafka): the expected end state.
    let expected = embedded_reference(&env, &loads);
    let expected_total: usize = expected.iter().map(|(_, n)| n).sum();
    assert!(
        expected_total >= 150,
        "the demo stores ~170 documents in one process, got {expected_total}"
    );

    // Wait for the pipeline to store them.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        got = documents_per_patient(&env, &db);
        if got == expected {
            break;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    let got_total: usize = got.iter().map(|(_, n)| n).sum();
    eprintln!("quick start: {got_total} documents stored (one process: {expected_total})");

    // The README's own listing lines, as written.
    let out = run_in_repo(&env, &listings[0]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(listed(&out) > 0, "{}", text(&out));
    let out = run_in_repo(&env, &listings[1]);
    assert!(out.status.success(), "{}", text(&out));
    let quarantine = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{quarantine}");

    let st = terminate(&mut run);
    assert!(
        st.success(),
        "run exits cleanly: {st}\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(
        got,
        expected,
        "documents per patient, Kafka quick start vs one process (log {})",
        log.display()
    );
    assert!(
        !quarantine.contains("ins.oid.rejected"),
        "no demo document refused for its test OID: {quarantine}"
    );
}
