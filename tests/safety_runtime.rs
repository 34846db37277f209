//! Issue #16, the runtime's part, against the real services of `scripts/stack up` (Kafka
//! and PostgreSQL; the tests fail, never skip, when they are down):
//!
//! - item 6: a stage output the topic refuses as too large dead-letters its input once
//!   (`kafka.record.too_large`) and the stage goes on;
//! - a stage never ends quietly: a permanent database error makes `dmpflow run` report
//!   not ready, log one clear line (no patient data) and exit non-zero;
//! - item 5 end to end: HL7 text with a NUL (`\X00\`) or a raw C0 control character goes to
//!   the DLQ as `hl7.text.invalid`, and the documents after it are still stored.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::FutureRecord;

async fn produce(topic: &str, key: &str, payloads: &[Vec<u8>]) {
    let p = acks_all_producer();
    for payload in payloads {
        p.send(
            FutureRecord::<str, [u8]>::to(topic)
                .payload(payload)
                .key(key),
            Duration::from_secs(30),
        )
        .await
        .expect("acknowledged");
    }
}

/// `dlq list` lines, one per dead letter.
fn dlq_lines(env: &[(String, String)]) -> Vec<String> {
    run_ok(env, &["dlq", "list"])
        .lines()
        .filter(|l| l.contains("reason="))
        .map(str::to_string)
        .collect()
}

fn reasons(env: &[(String, String)]) -> Vec<String> {
    dlq_lines(env)
        .iter()
        .filter_map(|l| {
            l.split('\t')
                .find_map(|f| f.strip_prefix("reason="))
                .map(str::to_string)
        })
        .collect()
}

/// `/health/ready`'s status code, or None when nothing answers.
async fn ready_status(port: u16) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(b"GET /health/ready HTTP/1.0\r\nHost: x\r\n\r\n")
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

async fn wait_ready(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        assert!(
            child.try_wait().unwrap().is_none(),
            "dmpflow run exited before it was ready"
        );
        if ready_status(port).await == Some(200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("dmpflow run not ready within 60 s");
}

fn log_text(name: &str) -> String {
    std::fs::read_to_string(std::env::temp_dir().join(name)).unwrap_or_default()
}

/// A lab ORU whose NTE comment is `text` (bytes, so a raw control character can be put in).
fn lab_with_comment(s: &Setup, n: usize, text: &[u8]) -> Vec<u8> {
    let mut m = lab_oru(&s.ins, &s.run, n).into_bytes();
    m.extend_from_slice(b"NTE|1||");
    m.extend_from_slice(text);
    m.push(b'\r');
    m
}

fn good(s: &Setup, n: usize) -> Vec<u8> {
    lab_oru(&s.ins, &s.run, n).into_bytes()
}

/// Text that zstd cannot shrink much (an xorshift over letters and digits).
fn noise(len: usize) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x % ALPHABET.len() as u64) as usize]
        })
        .collect()
}

async fn set_topic_max_bytes(topic: &str, max: usize) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client");
    let value = max.to_string();
    let alter = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", &value);
    let results = admin
        .alter_configs([&alter], &AdminOptions::new())
        .await
        .expect("alter configs");
    for r in results {
        r.expect("topic config altered");
    }
}

/// Item 6: the limit of the topics a document is written to is lowered while the pipeline
/// runs (the startup check passed); a message whose document no longer fits is dead-lettered as
/// `kafka.record.too_large` with its original input, and later messages are stored.
/// Before: the normalize loop ended and returned quietly (or retried forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_over_the_topic_limit_dead_letters_its_input_and_the_stage_goes_on() {
    let s = setup("toolarge", 1).await;
    let feed = format!("{}.feed.lab", s.prefix);
    let port = 19711;
    let log = format!("{}-toolarge.log", s.prefix);
    let mut run = spawn_stage(&s.env, "all", port, &log);
    wait_ready(port, &mut run).await;

    produce(&feed, &s.ins, &[good(&s, 0), good(&s, 1)]).await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            stored(&s.db).await >= 2
        })
        .await,
        "the first documents were not stored"
    );

    // Both topics a document can be written to: dmp.documents (the split chain) and
    // dmp.routed (normalize routing what it yields itself, the default for `--stage all`).
    set_topic_max_bytes(&format!("{}.documents", s.prefix), 200_000).await;
    set_topic_max_bytes(&format!("{}.routed", s.prefix), 200_000).await;
    // The broker applies a topic config change within a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let big = lab_with_comment(&s, 2, &noise(600_000));
    produce(&feed, &s.ins, std::slice::from_ref(&big)).await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            !dlq_lines(&s.env).is_empty()
        })
        .await,
        "the too-large document was not dead-lettered; log:\n{}",
        log_text(&log)
    );
    assert_eq!(reasons(&s.env), vec!["kafka.record.too_large".to_string()]);

    produce(&feed, &s.ins, &[good(&s, 3), good(&s, 4), good(&s, 5)]).await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            stored(&s.db).await >= 5
        })
        .await,
        "documents after the too-large one were not stored; log:\n{}",
        log_text(&log)
    );
    assert!(
        run.try_wait().unwrap().is_none(),
        "the process is still running"
    );
    assert_eq!(ready_status(port).await, Some(200), "still ready");
    // The dead letter carries the original input, whole, once.
    let dlq = format!("{}.dlq", s.prefix);
    assert_eq!(topic_count(&dlq), 1, "dead-lettered once, never retried");
    let status = terminate(&mut run);
    assert!(status.success(), "graceful stop exits 0, got {status}");
}

/// A stage never ends quietly: the store meets a permanent PostgreSQL error (a CHECK that
/// no document can pass, SQLSTATE 23514). `dmpflow run` turns `/health/ready` to 503, logs
/// one error line without patient data, and exits non-zero. Before: the store loop logged
/// a warning and returned Ok, the process stayed up and ready with its store stage gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_database_error_makes_run_exit_non_zero_after_not_ready() {
    use sqlx::Connection;
    let s = setup("permanent", 1).await;
    let feed = format!("{}.feed.lab", s.prefix);
    let port = 19712;
    let log = format!("{}-permanent.log", s.prefix);
    let mut env = s.env.clone();
    env.push(("DMPFLOW_STORE_CONSUMERS".into(), "1".into()));
    let mut run = spawn_stage(&env, "all", port, &log);
    wait_ready(port, &mut run).await;

    let mut conn = sqlx::PgConnection::connect(&s.db).await.expect("database");
    sqlx::query("ALTER TABLE documents ADD CONSTRAINT refuse_everything CHECK (false) NOT VALID")
        .execute(&mut conn)
        .await
        .expect("adding the constraint");
    produce(&feed, &s.ins, &[good(&s, 0)]).await;

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut saw_not_ready = false;
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if ready_status(port).await == Some(503) {
            saw_not_ready = true;
        }
        assert!(
            Instant::now() < deadline,
            "dmpflow run did not exit within 90 s of a permanent error; log:\n{}",
            log_text(&log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let text = log_text(&log);
    assert!(!status.success(), "exit status {status}; log:\n{text}");
    assert!(
        saw_not_ready,
        "/health/ready never said not ready; log:\n{text}"
    );
    let fatal: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("stage cannot continue"))
        .collect();
    assert_eq!(fatal.len(), 1, "one clear line; log:\n{text}");
    assert!(fatal[0].contains("ERROR"), "{}", fatal[0]);
    assert!(
        fatal[0].contains("23514"),
        "names the SQLSTATE: {}",
        fatal[0]
    );
    assert!(
        !text.contains(&s.ins) && !text.contains("DURAND"),
        "no patient data in the log:\n{text}"
    );
    assert_eq!(stored(&s.db).await, 0);
}

/// Item 5 end to end: `\X00\` (an escaped NUL) and a raw 0x01 in a lab message's text go to
/// the DLQ as `hl7.text.invalid`; the store never sees them, and the documents around them
/// are stored. Before: the NUL reached PostgreSQL, a permanent error, and the store stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_dead_lettered_and_the_documents_after_them_are_stored() {
    let s = setup("ctrl", 1).await;
    let feed = format!("{}.feed.lab", s.prefix);
    let port = 19713;
    let log = format!("{}-ctrl.log", s.prefix);
    let mut run = spawn_stage(&s.env, "all", port, &log);
    wait_ready(port, &mut run).await;

    produce(
        &feed,
        &s.ins,
        &[
            good(&s, 0),
            lab_with_comment(&s, 1, b"avant \\X00\\ apres"),
            lab_with_comment(&s, 2, b"avant \x01 apres"),
            good(&s, 3),
            good(&s, 4),
        ],
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(60), || async {
            stored(&s.db).await >= 3 && dlq_lines(&s.env).len() >= 2
        })
        .await,
        "stored {}, dead letters {:?}; log:\n{}",
        stored(&s.db).await,
        dlq_lines(&s.env),
        log_text(&log)
    );
    assert_eq!(
        reasons(&s.env),
        vec![
            "hl7.text.invalid".to_string(),
            "hl7.text.invalid".to_string()
        ]
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stored(&s.db).await,
        3,
        "the three clean documents, once each"
    );
    assert!(run.try_wait().unwrap().is_none(), "the pipeline still runs");
    let status = terminate(&mut run);
    assert!(status.success(), "graceful stop exits 0, got {status}");
}

/// Item 11: secrets never reach stderr. A database URL with a password in its userinfo or
/// its query, a scheme-less one, a TOML error on a password line, and librdkafka secrets
/// passed through the environment during a `run`'s startup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_stderr() {
    const SECRET: &str = "s3cretXYZ";
    let stderr_of = |env: &[(&str, String)], args: &[&str]| {
        let out = dmpflow()
            .env_remove("DMPFLOW_DATABASE_URL")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args)
            .output()
            .expect("running dmpflow");
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    for url in [
        format!("postgres://dmpflow:{SECRET}@127.0.0.1:1/db"),
        format!("postgres://127.0.0.1:1/db?user=dmpflow&password={SECRET}"),
        format!("dmpflow:{SECRET}@127.0.0.1:1/db"),
    ] {
        let err = stderr_of(&[("DMPFLOW_DATABASE_URL", url)], &["quarantine", "list"]);
        assert!(err.contains("opening the store"), "{err}");
        assert!(!err.contains(SECRET), "{err}");
    }

    let toml = std::env::temp_dir().join(format!("dmpflow-secret-{}.toml", unique()));
    std::fs::write(
        &toml,
        format!("[kafka.client]\n\"sasl.password\" = \"{SECRET}\n"),
    )
    .unwrap();
    let err = stderr_of(
        &[],
        &["--config", toml.to_str().unwrap(), "quarantine", "list"],
    );
    assert!(
        err.contains("line 2") && err.contains("[kafka.client]"),
        "{err}"
    );
    assert!(!err.contains(SECRET), "{err}");

    // A run's startup lines with a secret librdkafka setting (ignored on PLAINTEXT).
    let s = setup("secrets", 1).await;
    let port = 19714;
    let log = format!("{}-secrets.log", s.prefix);
    let mut env = s.env.clone();
    env.push(("DMPFLOW_KAFKA__SASL_PASSWORD".into(), SECRET.into()));
    let mut run = spawn_stage(&env, "all", port, &log);
    wait_ready(port, &mut run).await;
    assert!(terminate(&mut run).success());
    let text = log_text(&log);
    assert!(text.contains("record size limits checked"), "{text}");
    assert!(!text.contains(SECRET), "{text}");

    // A secret-looking setting librdkafka refuses (a misspelt key; since the build has
    // OpenSSL, `ssl.key.password` itself is accepted): rdkafka's error carries the value;
    // dmpflow names the key only.
    let mut env = s.env.clone();
    env.push((
        "DMPFLOW_KAFKA__SSL_KEYSTORE_PASSWORD_FILE".into(),
        SECRET.into(),
    ));
    let out = dmpflow()
        .envs(env.iter().cloned())
        .args(["run", "--metrics-addr", "127.0.0.1:19715"])
        .output()
        .expect("running dmpflow");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("ssl.keystore.password.file"), "{err}");
    assert!(!err.contains(SECRET), "{err}");
}
