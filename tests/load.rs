//! `dmpflow load` on a real Kafka: messages are keyed like the MLLP gateway (PID-3 INS,
//! else MSH-3^MSH-4), a file counts as done only when all its messages are acknowledged,
//! and a run with failures prints them and exits non-zero. FAILS when Kafka is unreachable.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

fn keys_on(topic: &str, expected: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", format!("t.load.reader.{}", unique()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let mut keys = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while keys.len() < expected && std::time::Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(500)) {
            let m = m.unwrap();
            keys.push(String::from_utf8_lossy(m.key().unwrap_or(b"")).into_owned());
        }
    }
    keys
}

#[test]
fn load_keys_like_the_gateway_and_reports_failures() {
    require_kafka();
    let prefix = format!("t.load.{}", unique());
    let env = isolated_env(&prefix, "sqlite://unused.db");
    run_ok(&env, &["topics", "create"]);
    let dir = std::env::temp_dir().join(&prefix);
    std::fs::create_dir_all(&dir).unwrap();
    let (ins, _) = patient_csv("180037512399");
    let good: String = (0..3)
        .map(|n| lab_oru(&ins, "ld", n))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("a.hl7"), &good).unwrap();
    // No INS: keyed by the sender.
    std::fs::write(
        dir.join("b.hl7"),
        "MSH|^~\\&|SIL-B|LAB-B|DMP|X|2024||ORU^R01|nb-1|P|2.5\rPID|1||42^^^X^PI\r",
    )
    .unwrap();

    let out = run_ok(&env, &["load", dir.to_str().unwrap(), "--feed", "lab"]);
    assert!(out.contains("loaded 4 messages from 2/2 files"), "{out}");
    let mut keys = keys_on(&format!("{prefix}.feed.lab"), 4);
    keys.sort();
    assert_eq!(
        keys,
        vec![ins.clone(), ins.clone(), ins.clone(), "SIL-B^LAB-B".into()]
    );

    // A file with garbage between messages: its good message is loaded, the file is a
    // failure, the exit code is 1 and the summary names it.
    std::fs::write(
        dir.join("c.hl7"),
        format!("garbage line\n{}", lab_oru(&ins, "ld", 9)),
    )
    .unwrap();
    let out = dmpflow()
        .envs(env.iter().cloned())
        .args(["load", dir.join("c.hl7").to_str().unwrap(), "--feed", "lab"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("loaded 1 messages from 0/1 files"),
        "{stdout}"
    );
    assert!(
        stdout.contains("failed:") && stdout.contains("c.hl7"),
        "{stdout}"
    );
}
