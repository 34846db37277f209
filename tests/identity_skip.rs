//! ADT events that hold nothing for the DMP are skipped, not errors (issue #12 item 1).
//! On real Kafka, the normalize stage counts an A03 on the identity feed topic in
//! `dmpflow_skipped_total`, commits it and never dead-letters it, and normalises the A28
//! behind it on the same partition (NEEDS the services of `scripts/stack up`; fails, never
//! skips, when they are down). Without Kafka, `process` and `normalize` report the skip
//! apart from the errors and exit 0.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::producer::FutureRecord;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The value of one sample of a stage's /metrics (`name{labels}` exactly as written), 0
/// while the series does not exist.
async fn sample(port: u16, series: &str) -> f64 {
    let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return 0.0;
    };
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0.0)
}

fn adt(event: &str, structure: &str, run: &str, ins: &str) -> String {
    format!(
        "MSH|^~\\&|GAM-TEST|CH-TEST|DMPFLOW|DMP|20241105150000||ADT^{event}^{structure}|{run}-{event}|P|2.5|||||FRA|UNICODE UTF-8\r\
EVN||20241105150000\r\
PID|1||{ins}^^^ASIP-SANTE-INS-NIR&{TEST_OID}&ISO^INS||DURAND^CLAIRE^CLAIRE MARIE^^^^L||19800315|F|||^^^^^^BDL^^75056|||||||||||||||||||||VALI\r\
PV1|1|I\r\
ZFA|ACTIF|20241105|||||||INO|20241105|IC|20241105\r"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adt_movement_is_skipped_counted_and_committed_not_dead_lettered() {
    let s = setup("skip", 1).await;
    let feed = format!("{}.feed.identity", s.prefix);
    let producer = acks_all_producer();
    // The discharge first, then an A28 of the same patient on the same partition: once the
    // A28 is normalised, the A03 before it has been handled.
    for (event, structure) in [("A03", "ADT_A03"), ("A28", "ADT_A05")] {
        let payload = adt(event, structure, &s.run, &s.ins);
        producer
            .send(
                FutureRecord::<str, String>::to(&feed)
                    .payload(&payload)
                    .key(&s.ins),
                Duration::from_secs(10),
            )
            .await
            .expect("acknowledged");
    }

    let series = "dmpflow_skipped_total{feed=\"identity\",reason=\"hl7.event.skipped\"}";
    let port = free_port();
    let mut stage = spawn_stage(&s.env, "normalize", port, &format!("{}-n.log", s.prefix));
    let documents = format!("{}.documents", s.prefix);
    let dlq = format!("{}.dlq", s.prefix);
    let ok = wait_until(Duration::from_secs(60), || async {
        topic_count(&documents) >= 1 && sample(port, series).await >= 1.0
    })
    .await;
    assert!(
        ok,
        "the A28 was not normalised or the skip not counted within 60 s (documents {}, skipped {})",
        topic_count(&documents),
        sample(port, series).await
    );
    assert_eq!(sample(port, series).await, 1.0, "the A03 counted once");
    let dead =
        "dmpflow_messages_total{stage=\"normalize\",feed=\"identity\",outcome=\"dead_lettered\"}";
    assert_eq!(sample(port, dead).await, 0.0);
    let rejected = "dmpflow_rejects_total{stage=\"normalize\",reason=\"hl7.event.skipped\"}";
    assert_eq!(sample(port, rejected).await, 0.0, "a skip is not a reject");
    assert_eq!(topic_count(&dlq), 0, "nothing dead-lettered");
    assert_eq!(topic_count(&documents), 1, "only the A28 yields an item");
    assert!(terminate(&mut stage).success());

    // Committed: a restarted stage consumes nothing again (the skip is not counted anew).
    let port = free_port();
    let mut stage = spawn_stage(&s.env, "normalize", port, &format!("{}-n2.log", s.prefix));
    let listening = wait_until(Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(listening, "the restarted stage serves no metrics");
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        sample(port, series).await,
        0.0,
        "the A03 came back after restart"
    );
    assert_eq!(topic_count(&documents), 1, "nothing normalised twice");
    assert_eq!(topic_count(&dlq), 0);
    assert!(terminate(&mut stage).success());
}

/// `process` (SQLite) and `normalize`: the A03 is skipped, not rejected; the A01 updates
/// the registry; both exit 0.
#[test]
fn process_and_normalize_report_a_skip_apart_from_errors() {
    let dir = std::env::temp_dir().join(format!("identity-skip-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("adt.hl7");
    let ins = "280037505612357";
    std::fs::write(
        &input,
        format!(
            "{}{}",
            adt("A03", "ADT_A03", "cli", ins),
            adt("A01", "ADT_A01", "cli", ins)
        ),
    )
    .unwrap();
    let db = format!("sqlite://{}", dir.join("p.db").display());
    let out = dmpflow()
        .args([
            "process",
            "--feed",
            "identity",
            "--accept-test-oids",
            "--json",
            "--store",
        ])
        .arg(&db)
        .arg(&input)
        .output()
        .expect("running dmpflow process");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s: serde_json::Value = serde_json::from_str(&text).expect("--json summary");
    assert_eq!(s["messages"], 2, "{s}");
    assert_eq!(s["skipped"], 1, "{s}");
    assert_eq!(s["rejected"], 0, "{s}");
    assert_eq!(s["patient_updates"], 1, "{s}");
    assert_eq!(s["by_feed"]["identity"]["skipped"], 1, "{s}");
    assert!(s["reasons"].get("hl7.event.skipped").is_none(), "{s}");

    let out = dmpflow()
        .args(["normalize", "--feed", "identity", "--out"])
        .arg(dir.join("out"))
        .arg(&input)
        .output()
        .expect("running dmpflow normalize");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("SKIP hl7.event.skipped (ADT^A03 carries nothing for the DMP)"),
        "{text}"
    );
    assert!(
        text.contains("1 patient updates, 1 skipped, 0 rejected"),
        "{text}"
    );
}
