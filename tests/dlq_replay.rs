//! Integration tests of the dead-letter queue and of window replay, on the real services
//! of `scripts/stack up` (they fail, never skip, when those are unreachable). Each test runs
//! on its own topics, consumer groups and database.
//!
//! What they prove: poison messages (garbage bytes, an unknown charset, a CIP13 with a
//! wrong check digit) land in the DLQ with their headers while the good messages around
//! them are stored; `dlq list`/`show` describe them without payloads; `dlq replay` sends
//! each letter back exactly once, a letter that fails again returns once with attempt=2
//! and is never replayed again; replaying a normalize window twice leaves the store as is.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer")
}

async fn produce(topic: &str, key: &str, payloads: &[Vec<u8>]) {
    let p = producer();
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
        .map(str::to_string)
        .collect()
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split('\t')
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {line}"))
}

fn good(s: &Setup, range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    range
        .map(|n| lab_oru(&s.ins, &s.run, n).into_bytes())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_listed_and_replayed_exactly_once() {
    let s = setup("dlq", 2).await;
    let lab = format!("{}.feed.lab", s.prefix);
    let pharmacy = format!("{}.feed.pharmacy", s.prefix);
    const N: usize = 20;
    // Good messages before and after the poison ones, on the same partition (same key):
    // the partition must move on past them.
    produce(&lab, &s.ins, &good(&s, 0..N / 2)).await;
    let garbage = b"\x00\x01\x02 not hl7 at all \xff\xfe".to_vec();
    let bad_charset = lab_oru(&s.ins, &s.run, 9000)
        .replace("UNICODE UTF-8", "X-KLINGON")
        .into_bytes();
    produce(&lab, &s.ins, &[garbage, bad_charset]).await;
    produce(&lab, &s.ins, &good(&s, N / 2..N)).await;
    let rds = std::fs::read_to_string(
        repo_root().join("normalize/tests/fixtures/hl7/pharmacy_rds_o13.hl7"),
    )
    .expect("pharmacy fixture");
    assert!(rds.contains("3400935955838"));
    let bad_cip = rds.replace("3400935955838", "3400935955839").into_bytes();
    produce(&pharmacy, "pharmacy", &[bad_cip]).await;

    let mut pipeline = spawn_stage(&s.env, "all", 19601, &format!("{}-a.log", s.prefix));
    let ok = wait_until(Duration::from_secs(90), || async {
        stored(&s.db).await >= N as i64 && dlq_lines(&s.env).len() >= 3
    })
    .await;
    assert!(
        ok,
        "stored {} of {N}, {} dead letters",
        stored(&s.db).await,
        dlq_lines(&s.env).len()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored(&s.db).await, N as i64, "every good message stored");

    // dlq list: one line per letter, the right reasons and headers, never the payload.
    let lines = dlq_lines(&s.env);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let reasons: BTreeSet<&str> = lines.iter().map(|l| field(l, "reason")).collect();
    assert!(reasons.contains("hl7.msh.missing"), "{reasons:?}");
    assert!(reasons.contains("drug.cip13.checkdigit"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.starts_with("hl7.charset.")),
        "{reasons:?}"
    );
    for l in &lines {
        assert_eq!(field(l, "stage"), "normalize", "{l}");
        assert_eq!(field(l, "attempt"), "1", "{l}");
        let src = field(l, "source");
        assert!(
            src.starts_with(&format!("{lab}/")) || src.starts_with(&format!("{pharmacy}/")),
            "{l}"
        );
        assert!(
            !l.contains("DURAND") && !l.contains(&s.ins),
            "no patient data: {l}"
        );
    }
    let cip = run_ok(
        &s.env,
        &["dlq", "list", "--reason", "drug.cip13.checkdigit"],
    );
    assert_eq!(cip.lines().count(), 1, "{cip}");
    assert_eq!(field(cip.trim(), "feed"), "pharmacy");
    let recent = run_ok(&s.env, &["dlq", "list", "--since", "1h", "--limit", "2"]);
    assert_eq!(recent.lines().count(), 2, "{recent}");
    let future = run_ok(&s.env, &["dlq", "list", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(future.lines().count(), 0, "{future}");

    // dlq show: headers and size; the payload only on request.
    let charset_line = lines
        .iter()
        .find(|l| field(l, "reason").starts_with("hl7.charset."))
        .unwrap();
    let at = charset_line.split('\t').next().unwrap();
    let shown = run_ok(&s.env, &["dlq", "show", at]);
    for hd in [
        "dmp.stage = normalize",
        "dmp.reason = hl7.charset.",
        "dmp.error = ",
        &format!("dmp.source.topic = {lab}"),
        "dmp.source.partition = ",
        "dmp.source.offset = ",
        "dmp.time = ",
        "dmp.attempt = 1",
        "dmp.feed = lab",
        "dmp.ingest.time = ",
        "payload: ",
    ] {
        assert!(shown.contains(hd), "missing {hd:?} in\n{shown}");
    }
    assert!(!shown.contains("DURAND"), "payload shown without --payload");
    let with_payload = run_ok(&s.env, &["dlq", "show", at, "--payload"]);
    assert!(
        with_payload.contains("payload head: MSH|"),
        "{with_payload}"
    );

    // A dry run sends nothing.
    let dry = run_ok(&s.env, &["dlq", "replay", "--dry-run"]);
    assert!(dry.contains("3 would be replayed"), "{dry}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(dlq_lines(&s.env).len(), 3, "a dry run replays nothing");

    // Nothing was fixed: each letter goes back once and returns once, with attempt=2.
    let out = run_ok(&s.env, &["dlq", "replay"]);
    assert!(out.contains("3 replayed"), "{out}");
    let ok = wait_until(Duration::from_secs(60), || async {
        dlq_lines(&s.env).len() >= 6
    })
    .await;
    assert!(
        ok,
        "replayed letters did not return: {:#?}",
        dlq_lines(&s.env)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = dlq_lines(&s.env);
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let second: Vec<&String> = lines
        .iter()
        .filter(|l| field(l, "attempt") == "2")
        .collect();
    assert_eq!(second.len(), 3, "{lines:#?}");
    let reasons2: BTreeSet<&str> = second.iter().map(|l| field(l, "reason")).collect();
    assert_eq!(reasons, reasons2, "same reasons on the second attempt");

    // Replaying again sends nothing: the first letters are marked, the second ones are
    // attempt 2.
    let again = run_ok(&s.env, &["dlq", "replay"]);
    assert!(again.contains("0 replayed"), "{again}");
    assert!(again.contains("3 already replayed"), "{again}");
    assert!(again.contains("3 with attempt >= 2"), "{again}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(dlq_lines(&s.env).len(), 6, "nothing replayed twice");
    assert_eq!(stored(&s.db).await, N as i64);
    assert!(terminate(&mut pipeline).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_normalize_window_twice_leaves_the_store_unchanged() {
    let s = setup("replay", 2).await;
    let lab = format!("{}.feed.lab", s.prefix);
    let routed = format!("{}.routed", s.prefix);
    let documents = format!("{}.documents", s.prefix);
    const N: usize = 30;
    produce(&lab, &s.ins, &good(&s, 0..N)).await;
    let mut pipeline = spawn_stage(&s.env, "all", 19602, &format!("{}-a.log", s.prefix));
    let ok = wait_until(Duration::from_secs(90), || async {
        stored(&s.db).await >= N as i64 && topic_count(&routed) >= N as i64
    })
    .await;
    assert!(ok, "only {} of {N} stored", stored(&s.db).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored(&s.db).await, N as i64);
    assert_eq!(topic_count(&routed), N as i64);
    // N records with the split chain, none when normalize routes itself (the default for
    // `--stage all`); a replay never routes itself (it has no database), so each round
    // adds N either way.
    let documents_before = topic_count(&documents);

    for round in 1..=2i64 {
        let out = run_ok(
            &s.env,
            &[
                "replay",
                "--stage",
                "normalize",
                "--from",
                "1h",
                "--feed",
                "lab",
            ],
        );
        assert!(out.contains(&format!("replayed {N} message(s)")), "{out}");
        assert!(out.contains(&format!("document={N}")), "{out}");
        // The live route stage forwards the duplicates; the store absorbs them.
        let want = N as i64 * (round + 1);
        let ok = wait_until(Duration::from_secs(60), || async {
            topic_count(&routed) >= want
        })
        .await;
        assert!(ok, "round {round}: routed has {}", topic_count(&routed));
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            topic_count(&documents),
            documents_before + N as i64 * round,
            "round {round}"
        );
        assert_eq!(topic_count(&routed), want, "round {round}");
        assert_eq!(
            stored(&s.db).await,
            N as i64,
            "round {round}: the store is unchanged"
        );
    }

    // Replaying the store's input directly (offset 0) only meets duplicates.
    let out = run_ok(&s.env, &["replay", "--stage", "store", "--from", "0"]);
    assert!(out.contains(&format!("duplicate={}", 3 * N)), "{out}");
    // A window that ends before anything was produced replays nothing.
    let out = run_ok(
        &s.env,
        &[
            "replay",
            "--stage",
            "route",
            "--from",
            "1h",
            "--to",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert!(out.contains("replayed 0 message(s)"), "{out}");
    assert_eq!(stored(&s.db).await, N as i64);
    assert!(terminate(&mut pipeline).success());
}
