//! A real Prometheus server (Debian's `prometheus`, installed by `.ci/ops-check`) scrapes a
//! running pipeline, and a PromQL query returns the counts this test produced. NEEDS the
//! services of `scripts/stack up` and the `prometheus` binary; fails, never skips, without
//! them.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use dmpflow_store::Store;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

struct Reaper(Child);
impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn prometheus_binary() -> String {
    for p in ["/usr/bin/prometheus", "/usr/local/bin/prometheus"] {
        if std::path::Path::new(p).is_file() {
            return p.to_string();
        }
    }
    panic!("no prometheus binary: run .ci/ops-check (it installs Debian's prometheus package)");
}

/// A PromQL instant query through the HTTP API, as the scalar value of its first sample.
async fn query(port: u16, promql: &str) -> Option<f64> {
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query={}",
        promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' =>
                    (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    );
    let body = http_get(&url).await?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

/// A minimal HTTP/1.0 GET on loopback (no HTTP client crate needed for one test).
async fn http_get(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut s = tokio::net::TcpStream::connect(host).await.ok()?;
    s.write_all(format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    Some(text.split_once("\r\n\r\n")?.1.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_pipeline_and_promql_returns_the_produced_counts() {
    require_kafka();
    let prometheus = prometheus_binary();
    let db = fresh_database("scrape").await;
    let run = unique();
    let prefix = format!("p{run}");
    let env = isolated_env(&prefix, &db);
    run_ok(&env, &["topics", "create", "--partitions", "2"]);
    let (ins, csv) = patient_csv("1850269123456");
    let csv_path = std::env::temp_dir().join(format!("patients-{run}.csv"));
    std::fs::write(&csv_path, csv).unwrap();
    run_ok(&env, &["patients", "import", csv_path.to_str().unwrap()]);

    const GOOD: usize = 120;
    const POISON: usize = 7;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .unwrap();
    let feed = format!("{prefix}.feed.lab");
    let mut pending = Vec::new();
    for n in 0..GOOD {
        let payload = lab_oru(&ins, &run, n);
        pending.push(
            producer
                .send_result(
                    FutureRecord::<str, String>::to(&feed)
                        .payload(&payload)
                        .key(&ins),
                )
                .unwrap(),
        );
    }
    for n in 0..POISON {
        let payload = format!("not an HL7 message {n}");
        pending.push(
            producer
                .send_result(
                    FutureRecord::<str, String>::to(&feed)
                        .payload(&payload)
                        .key("x"),
                )
                .unwrap(),
        );
    }
    for p in pending {
        p.await.unwrap().unwrap();
    }

    let metrics_port = 19600;
    let _pipeline = Reaper(spawn_stage(
        &env,
        "all",
        metrics_port,
        &format!("{prefix}.log"),
    ));
    let stored = wait_until(Duration::from_secs(90), || async {
        Store::connect(&db)
            .await
            .unwrap()
            .document_count()
            .await
            .unwrap()
            >= GOOD as i64
    })
    .await;
    assert!(stored, "the pipeline did not store the {GOOD} documents");

    // Prometheus with a fast scrape interval on our metrics port.
    let dir = std::env::temp_dir().join(format!("prom-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: dmpflow\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let prom_port = 19690;
    let _prom = Reaper(
        Command::new(&prometheus)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("starting prometheus"),
    );
    let q_stored = r#"sum(dmpflow_messages_total{job="dmpflow",stage="store",outcome="stored"})"#;
    let q_dlq =
        r#"sum(dmpflow_rejects_total{job="dmpflow",stage="normalize",reason="hl7.msh.missing"})"#;
    let q_up = r#"up{job="dmpflow"}"#;
    let seen = wait_until(Duration::from_secs(60), || async {
        query(prom_port, q_stored).await == Some(GOOD as f64)
            && query(prom_port, q_dlq).await == Some(POISON as f64)
    })
    .await;
    assert!(
        seen,
        "PromQL returned stored={:?} dead-lettered={:?} up={:?}, expected {GOOD} and {POISON}",
        query(prom_port, q_stored).await,
        query(prom_port, q_dlq).await,
        query(prom_port, q_up).await
    );
    assert_eq!(query(prom_port, q_up).await, Some(1.0));
}
