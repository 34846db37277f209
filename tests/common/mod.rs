//! Shared helpers of the integration tests that need the real services started by
//! `scripts/stack up` (Kafka in KRaft mode and PostgreSQL). When a service cannot be
//! reached the test FAILS with a message saying to run `scripts/stack up`: it never skips.

#![allow(dead_code)]

pub mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Settings of the running stack: the environment first, then `.stack.env`.
pub fn stack_env() -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(repo_root().join(".stack.env")) {
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.trim().to_string(), v.trim().trim_matches('"').to_string());
            }
        }
    }
    for key in ["DMPFLOW_KAFKA_BOOTSTRAP", "DMPFLOW_DATABASE_URL"] {
        if let Ok(v) = std::env::var(key) {
            vars.insert(key.to_string(), v);
        }
    }
    vars
}

pub fn bootstrap() -> String {
    stack_env().get("DMPFLOW_KAFKA_BOOTSTRAP").cloned().expect(
        "no DMPFLOW_KAFKA_BOOTSTRAP in the environment or .stack.env: run `scripts/stack up` first",
    )
}

pub fn database_url() -> String {
    stack_env().get("DMPFLOW_DATABASE_URL").cloned().expect(
        "no DMPFLOW_DATABASE_URL in the environment or .stack.env: run `scripts/stack up` first",
    )
}

/// The tests' own Kafka clients: the stack's bootstrap and the `DMPFLOW_KAFKA__<key>`
/// settings of the environment (the same pass-through dmpflow reads, so that on the secure
/// stack of `scripts/stack up --secure` the tests authenticate as dmpflow does).
pub fn kafka_config() -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap());
    for (k, v) in std::env::vars() {
        if let Some(key) = k.strip_prefix("DMPFLOW_KAFKA__") {
            cfg.set(key.to_ascii_lowercase().replace('_', "."), v);
        }
    }
    cfg
}

/// Fails unless the broker answers a metadata request.
pub fn require_kafka() -> String {
    let bs = bootstrap();
    let c: BaseConsumer = kafka_config().create().expect("creating a Kafka client");
    c.fetch_metadata(None, Duration::from_secs(10))
        .unwrap_or_else(|e| {
            panic!("Kafka at {bs} does not answer ({e}): run `scripts/stack up` first")
        });
    bs
}

/// A fresh database on the stack's PostgreSQL, so each test starts empty.
pub async fn fresh_database(tag: &str) -> String {
    use sqlx::Connection;
    let admin_url = database_url();
    let mut conn = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL does not answer ({e}): run `scripts/stack up` first")
        });
    let name = format!("dmpflow_t_{tag}_{}", unique());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("creating a test database");
    // The query (sslmode, sslrootcert on the secure stack) stays; its path has slashes too.
    let (path, query) = admin_url.split_once('?').unwrap_or((&admin_url, ""));
    let (base, _) = path
        .rsplit_once('/')
        .expect("database URL with a database name");
    if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    }
}

/// A short value unique to this test run.
pub fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", std::process::id(), nanos % 0xffff_ffff)
}

/// Environment for a dmpflow process isolated on its own topics, groups and database.
pub fn isolated_env(prefix: &str, db: &str) -> Vec<(String, String)> {
    vec![
        ("DMPFLOW_KAFKA_BOOTSTRAP".into(), bootstrap()),
        ("DMPFLOW_DATABASE_URL".into(), db.into()),
        ("DMPFLOW_GROUP_PREFIX".into(), format!("{prefix}.g")),
        ("DMPFLOW_FEED_PREFIX".into(), format!("{prefix}.feed.")),
        (
            "DMPFLOW_TOPIC_DOCUMENTS".into(),
            format!("{prefix}.documents"),
        ),
        ("DMPFLOW_TOPIC_ROUTED".into(), format!("{prefix}.routed")),
        (
            "DMPFLOW_TOPIC_QUARANTINE".into(),
            format!("{prefix}.quarantine"),
        ),
        ("DMPFLOW_TOPIC_DLQ".into(), format!("{prefix}.dlq")),
        ("DMPFLOW_ACCEPT_TEST_OIDS".into(), "true".into()),
        ("DMPFLOW_LOG".into(), "info,rdkafka=warn,sqlx=warn".into()),
    ]
}

/// A TCP port free on 127.0.0.1 now (the OS picks it; a test binds it just after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn dmpflow() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dmpflow"));
    c.current_dir(std::env::temp_dir());
    c
}

/// `dmpflow` with no DMPFLOW_* setting of the caller's (another stack's would mix in),
/// only `env`.
pub fn dmpflow_clean(env: &[(String, String)]) -> Command {
    let mut cmd = dmpflow();
    for (k, _) in std::env::vars() {
        if k.starts_with("DMPFLOW_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().cloned());
    cmd
}

/// A GET over plain HTTP on loopback, with a bearer token if given: (status, whole
/// response), or `None` while nothing answers.
pub fn http_get(addr: &str, path: &str, bearer: Option<&str>) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some((out.get(9..12)?.parse().ok()?, out))
}

/// Runs a dmpflow command to completion, returning stdout; panics with its output on failure.
pub fn run_ok(env: &[(String, String)], args: &[&str]) -> String {
    let out = dmpflow()
        .envs(env.iter().cloned())
        .args(args)
        .output()
        .expect("running dmpflow");
    assert!(
        out.status.success(),
        "dmpflow {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `dmpflow run --stage <stage>` in the background.
pub fn spawn_stage(env: &[(String, String)], stage: &str, metrics_port: u16, log: &str) -> Child {
    let log = std::fs::File::create(std::env::temp_dir().join(log)).expect("log file");
    dmpflow()
        .envs(env.iter().cloned())
        .args([
            "run",
            "--stage",
            stage,
            "--metrics-addr",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting dmpflow run")
}

/// Sends SIGTERM and waits for a clean exit.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id() as i32;
    unsafe_kill(pid, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("waiting for dmpflow") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dmpflow did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn unsafe_kill(pid: i32, signal: &str) {
    Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
}

/// Sum over partitions of a topic's high watermarks (messages ever written).
pub fn topic_count(topic: &str) -> i64 {
    let c: BaseConsumer = kafka_config().create().unwrap();
    // Right after a broker restart or a topic creation the leader may not be known yet
    // (NotLeaderForPartition): retry for a while before failing.
    let mut tries = 0;
    loop {
        match watermark_total(&c, topic) {
            Ok(total) => return total,
            Err(e) if tries < 60 => {
                tries += 1;
                eprintln!("counting {topic}: {e}; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("counting {topic}: {e}"),
        }
    }
}

fn watermark_total(c: &BaseConsumer, topic: &str) -> rdkafka::error::KafkaResult<i64> {
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut total = 0;
    for t in md.topics() {
        for p in t.partitions() {
            let (lo, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            total += hi - lo;
        }
    }
    Ok(total)
}

/// The producer a feed sender would use: idempotent, acknowledged by all in-sync replicas.
pub fn acks_all_producer() -> rdkafka::producer::FutureProducer {
    kafka_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer")
}

/// Polls `f` until it returns true or the timeout passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

pub const TEST_OID: &str = "1.2.250.1.213.1.4.10";

/// A synthetic qualified patient, with a valid INS key.
pub fn patient_csv(ins_body: &str) -> (String, String) {
    let n: u64 = ins_body.parse().unwrap();
    let ins = format!("{ins_body}{:02}", 97 - n % 97);
    let csv = format!(
        "ins,ins_oid,birth_name,first_names,birth_date,sex,birth_place,identity_status,feeding_opposed\n{ins},{TEST_OID},DURAND,CLAIRE MARIE,1980-03-15,F,75056,QUAL,false\n"
    );
    (ins, csv)
}

/// A structured lab ORU^R01 for that patient; `n` makes MSH-10 and the order unique.
pub fn lab_oru(ins: &str, run: &str, n: usize) -> String {
    format!(
        "MSH|^~\\&|SIL-TEST|LABO-TEST|DMPFLOW|DMP|20241105143000||ORU^R01^ORU_R01|{run}-{n}|P|2.5|||||FRA|UNICODE UTF-8\r\
PID|1||{ins}^^^ASIP-SANTE-INS-NIR&{TEST_OID}&ISO^INS||DURAND^CLAIRE^CLAIRE MARIE^^^^L||19800315|F|||^^^^^^BDL^^75056|||||||||||||||||||||VALI\r\
PV1|1|O\r\
ORC|NW|{run}-CMD{n}^SIL-TEST|||||||20241105143000\r\
OBR|1|{run}-CMD{n}^SIL-TEST||24362-6^Ionogramme sanguin^LN|||20241105080000|||||||||10003456789^DUPONT^CLAIRE||||||20241105143000|||F|||||||801234567866&BIOLO&ANNE\r\
OBX|1|NM|2823-3^Potassium^LN||4.{d}|mmol/L|3.5-5.1|N|||F|||20241105080000\r",
        d = n % 10
    )
}

/// One test's isolated pipeline: its topics (created), its consumer groups, its fresh
/// database with one qualified patient imported.
pub struct Setup {
    pub env: Vec<(String, String)>,
    pub prefix: String,
    pub db: String,
    pub ins: String,
    pub run: String,
}

pub async fn setup(tag: &str, partitions: u32) -> Setup {
    require_kafka();
    let db = fresh_database(tag).await;
    let run = unique();
    let prefix = format!("t{run}");
    let env = isolated_env(&prefix, &db);
    run_ok(
        &env,
        &["topics", "create", "--partitions", &partitions.to_string()],
    );
    let (ins, csv) = patient_csv("2800375056123");
    let csv_path = std::env::temp_dir().join(format!("patients-{run}.csv"));
    std::fs::write(&csv_path, csv).unwrap();
    run_ok(&env, &["patients", "import", csv_path.to_str().unwrap()]);
    Setup {
        env,
        prefix,
        db,
        ins,
        run,
    }
}

/// Documents stored in a test database.
pub async fn stored(db: &str) -> i64 {
    let store = dmpflow_store::Store::connect(db).await.expect("store");
    let n = store.document_count().await.expect("count");
    store.close().await;
    n
}

/// The shell lines of a README block between `<!-- marker -->` and `<!-- /marker -->`,
/// fences and trailing ` # comments` removed: the README and its test cannot drift apart.
pub fn readme_block(marker: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let open = format!("<!-- {marker} -->");
    let close = format!("<!-- /{marker} -->");
    let start = readme
        .find(&open)
        .unwrap_or_else(|| panic!("README.md has a {open} marker"));
    let end = readme
        .find(&close)
        .unwrap_or_else(|| panic!("README.md has a {close} marker"));
    readme[start..end]
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("```"))
        .map(|l| l.split(" #").next().unwrap().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A self-signed certificate for `localhost` written as `cert.pem` and `key.pem` in `dir`,
/// and a TLS connector that trusts exactly that certificate (nothing here is a real secret).
pub fn test_certificate(dir: &Path) -> (PathBuf, PathBuf, tokio_rustls::TlsConnector) {
    use tokio_rustls::rustls;
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (cert_pem, key_pem) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_pem, cert.pem()).unwrap();
    std::fs::write(&key_pem, signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    (
        cert_pem,
        key_pem,
        tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
    )
}

/// One MLLP frame (VT message FS CR).
pub fn mllp_frame(msg: &str) -> Vec<u8> {
    let mut f = vec![0x0B];
    f.extend_from_slice(msg.as_bytes());
    f.extend_from_slice(&[0x1C, 0x0D]);
    f
}

/// Sends one message over MLLP, returns MSA-1 (AA, AE, AR), retrying AE (broker away).
pub fn mllp_send(port: u16, msg: &str) -> String {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the gateway listens");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(&mllp_frame(msg)).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(2).any(|w| w == [0x1C, 0x0D]) {
            let n = s.read(&mut chunk).expect("an ACK");
            assert!(n > 0, "the gateway closed the connection without an ACK");
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text
            .split('\r')
            .find(|s| s.starts_with("MSA"))
            .and_then(|s| s.split('|').nth(1))
            .unwrap_or("")
            .to_string();
        if code != "AE" {
            return code;
        }
        assert!(Instant::now() < deadline, "still AE after 120 s");
        std::thread::sleep(Duration::from_millis(500));
    }
}
