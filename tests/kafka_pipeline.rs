//! Integration tests of the Kafka pipeline. They NEED the services of `scripts/stack up`
//! (Kafka 4 in KRaft mode and PostgreSQL) and fail, never skip, when those are not
//! reachable. Each test runs on its own topics, consumer groups and database.
//!
//! What they prove: raw HL7 produced to a feed topic travels normalize → route → store and
//! lands as exactly one row per message; stopping and restarting the pipeline (gracefully,
//! or with SIGKILL) neither re-consumes nor stores anything twice.

mod common;

use std::time::Duration;

use common::*;
use rdkafka::producer::FutureRecord;

async fn produce_lab(topic: &str, ins: &str, run: &str, range: std::ops::Range<usize>) {
    let producer = acks_all_producer();
    let mut pending = Vec::new();
    for n in range {
        let payload = lab_oru(ins, run, n);
        let fut = producer
            .send_result(
                FutureRecord::<str, String>::to(topic)
                    .payload(&payload)
                    .key(ins),
            )
            .expect("enqueue");
        pending.push(fut);
    }
    for p in pending {
        p.await.expect("delivery").expect("acknowledged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_hl7_on_a_feed_topic_lands_once_in_postgres_across_restarts() {
    let mut s = setup("skeleton", 3).await;
    // The chain through dmp.documents, whose records this counts (the fused default's
    // restarts: tests/fused_pipeline.rs, tests/shutdown.rs).
    s.env
        .push(("DMPFLOW_ROUTE_IN_NORMALIZE".into(), "false".into()));
    let feed = format!("{}.feed.lab", s.prefix);
    const N: usize = 300;
    produce_lab(&feed, &s.ins, &s.run, 0..N).await;

    let mut pipeline = spawn_stage(&s.env, "all", 19501, &format!("{}-a.log", s.prefix));
    let ok = wait_until(Duration::from_secs(90), || async {
        stored(&s.db).await >= N as i64
    })
    .await;
    assert!(
        ok,
        "only {} of {N} documents stored within 90 s",
        stored(&s.db).await
    );
    // Give the stages a moment: nothing more may arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(stored(&s.db).await, N as i64, "exactly one row per message");
    let status = terminate(&mut pipeline);
    assert!(status.success(), "graceful stop exits 0, got {status}");

    let documents_topic = format!("{}.documents", s.prefix);
    let routed_topic = format!("{}.routed", s.prefix);
    assert_eq!(
        topic_count(&documents_topic),
        N as i64,
        "normalize wrote each message once"
    );
    assert_eq!(
        topic_count(&routed_topic),
        N as i64,
        "route wrote each document once"
    );

    // Restart: the committed offsets hold, nothing is consumed again.
    let mut pipeline = spawn_stage(&s.env, "all", 19502, &format!("{}-b.log", s.prefix));
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        topic_count(&documents_topic),
        N as i64,
        "nothing re-normalized after restart"
    );
    assert_eq!(
        topic_count(&routed_topic),
        N as i64,
        "nothing re-routed after restart"
    );
    assert_eq!(
        stored(&s.db).await,
        N as i64,
        "nothing stored twice after restart"
    );

    // More input after the restart is picked up.
    produce_lab(&feed, &s.ins, &s.run, N..N + 50).await;
    let ok = wait_until(Duration::from_secs(60), || async {
        stored(&s.db).await >= (N + 50) as i64
    })
    .await;
    assert!(ok, "new messages after restart were not stored");
    assert!(terminate(&mut pipeline).success());
    assert_eq!(stored(&s.db).await, (N + 50) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_store_stage_loses_and_doubles_nothing() {
    let s = setup("kill", 3).await;
    let feed = format!("{}.feed.lab", s.prefix);
    const N: usize = 5000;
    produce_lab(&feed, &s.ins, &s.run, 0..N).await;

    // normalize and route run undisturbed; the store stage is SIGKILLed right after it
    // has committed something, at a varying moment inside its next batches.
    let mut upstream = spawn_stage(&s.env, "normalize", 19511, &format!("{}-n.log", s.prefix));
    let mut upstream2 = spawn_stage(&s.env, "route", 19512, &format!("{}-r.log", s.prefix));
    let mut store_env = s.env.clone();
    store_env.push(("DMPFLOW_BATCH_MESSAGES".into(), "25".into()));
    store_env.push(("DMPFLOW_KAFKA__SESSION_TIMEOUT_MS".into(), "6000".into()));
    let mut kills = 0;
    for round in 0..10u64 {
        let before = stored(&s.db).await;
        if before >= N as i64 {
            break;
        }
        let mut store = spawn_stage(
            &store_env,
            "store",
            19513,
            &format!("{}-s{round}.log", s.prefix),
        );
        let moved = wait_until(Duration::from_secs(60), || async {
            stored(&s.db).await > before
        })
        .await;
        assert!(moved, "the store stage made no progress in round {round}");
        tokio::time::sleep(Duration::from_millis((round * 37) % 150)).await;
        unsafe_kill(store.id() as i32, "KILL");
        let _ = store.wait();
        kills += 1;
    }
    assert!(
        kills >= 5,
        "the store was killed mid-run only {kills} times"
    );
    // A final clean run drains whatever is left.
    let mut store = spawn_stage(&s.env, "store", 19514, &format!("{}-final.log", s.prefix));
    let ok = wait_until(Duration::from_secs(90), || async {
        stored(&s.db).await >= N as i64
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n = stored(&s.db).await;
    assert!(terminate(&mut store).success());
    assert!(terminate(&mut upstream).success());
    assert!(terminate(&mut upstream2).success());
    assert!(ok, "only {n} of {N} stored after {kills} kills");
    assert_eq!(
        n, N as i64,
        "no duplicate after {kills} SIGKILLs of the store"
    );
    println!("store stage SIGKILLed {kills} times; {n} of {N} documents stored exactly once");
}

/// A document whose patient the registry does not know is quarantined by route. Its CDA
/// travels on the quarantine topic still compressed (after the case's JSON head, as on the
/// other topics), is held in the quarantine table with those very bytes, and is stored with
/// them, never packed again, once the patient is known and the case released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_document_travels_packed_and_is_released_whole() {
    use dmpflow_schemas::Normalized;
    use dmpflow_store::{QuarantineStatus, Store};
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};

    let s = setup("quarantine_packed", 1).await;
    // Same traits as the imported patient, another INS: unknown until imported below.
    let (unknown_ins, csv) = patient_csv("2800375056777");
    const N: usize = 3;
    produce_lab(
        &format!("{}.feed.lab", s.prefix),
        &unknown_ins,
        &s.run,
        0..N,
    )
    .await;

    let mut pipeline = spawn_stage(&s.env, "all", 19503, &format!("{}-q.log", s.prefix));
    let store = Store::connect(&s.db).await.expect("store");
    let ok = wait_until(Duration::from_secs(90), || async {
        store
            .quarantine_list(Some(QuarantineStatus::Open))
            .await
            .map(|l| l.len() >= N)
            .unwrap_or(false)
    })
    .await;
    assert!(ok, "{N} quarantine cases expected within 90 s");

    // On the topic: JSON head, newline, zstd frame; never the XML inlined in the JSON.
    let consumer: StreamConsumer = kafka_config()
        .set("group.id", format!("{}.check", s.prefix))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&format!("{}.quarantine", s.prefix)])
        .expect("subscribe");
    let mut on_topic = Vec::new();
    for _ in 0..N {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("a quarantine message within 30 s")
            .expect("kafka");
        let payload = m.payload().expect("payload");
        let nl = payload
            .iter()
            .position(|&b| b == b'\n')
            .expect("head, then bytes");
        assert!(
            payload[nl + 1..].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
            "the CDA travels as a zstd frame"
        );
        assert!(!payload[..nl].windows(17).any(|w| w == b"ClinicalDocument"));
        let case = dmpflow_schemas::wire::decode_quarantined(payload).expect("a case");
        let Normalized::Document(d) = case.item else {
            panic!("document expected")
        };
        let packed = d.cda.as_packed().expect("packed on the topic").clone();
        on_topic.push((d.meta.unique_id, packed));
    }

    // In the table: the case holds the bytes that came on the topic, still packed.
    let open = store
        .quarantine_list(Some(QuarantineStatus::Open))
        .await
        .unwrap();
    assert_eq!(open.len(), N);
    let mut held = Vec::new();
    for case in &open {
        assert_eq!(case.reason, "ins.unknown");
        let Normalized::Document(d) = &case.item else {
            panic!("document expected")
        };
        let packed = d.cda.as_packed().expect("held packed");
        let sent = on_topic.iter().find(|(u, _)| *u == d.meta.unique_id);
        assert_eq!(sent.map(|(_, p)| p), Some(packed), "the topic's bytes");
        let xml = d.cda.xml().expect("checked against its hash");
        assert!(xml.starts_with("<?xml") && xml.contains("<ClinicalDocument"));
        let xml = xml.into_owned();
        held.push((case.id, d.meta.unique_id.clone(), packed.clone(), xml));
    }

    // The patient becomes known; each released case is stored with those very bytes.
    let csv_path = std::env::temp_dir().join(format!("patients-{}-late.csv", s.run));
    std::fs::write(&csv_path, csv).unwrap();
    run_ok(&s.env, &["patients", "import", csv_path.to_str().unwrap()]);
    for (id, unique_id, packed, xml) in &held {
        run_ok(&s.env, &["quarantine", "release", &id.to_string()]);
        let stored_xml = store.get_document_cda(unique_id).await.unwrap();
        assert_eq!(stored_xml.as_deref(), Some(xml.as_str()));
        let stored = store.get_document_packed(unique_id).await.unwrap();
        assert_eq!(
            stored.as_ref(),
            Some(packed),
            "filed as held, not packed again"
        );
    }
    assert!(
        store
            .quarantine_list(Some(QuarantineStatus::Open))
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
    assert!(terminate(&mut pipeline).success());
}

/// A document that runs ahead of its patient's identity message (another feed) is
/// quarantined as `ins.unknown`. Once the A28 has put the patient in the registry, the route
/// stage re-routes the case by itself (`limits.quarantine_retry_seconds`, 5 s by default):
/// the document is stored and the case closed without anyone releasing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_ahead_of_its_patient_is_filed_once_the_patient_arrives() {
    use dmpflow_store::{QuarantineStatus, Store};

    let s = setup("quarantine_retry", 1).await;
    let (late_ins, _) = patient_csv("2800375056888");
    const N: usize = 2;
    produce_lab(&format!("{}.feed.lab", s.prefix), &late_ins, &s.run, 0..N).await;
    let mut pipeline = spawn_stage(&s.env, "all", 19504, &format!("{}-r.log", s.prefix));
    let store = Store::connect(&s.db).await.expect("store");
    let open = |status| {
        let store = &store;
        async move { store.quarantine_list(Some(status)).await.unwrap().len() }
    };
    assert!(
        wait_until(Duration::from_secs(90), || async {
            open(QuarantineStatus::Open).await >= N
        })
        .await,
        "the documents of an unknown patient are quarantined first"
    );
    assert_eq!(stored(&s.db).await, 0);

    // The patient's A28 arrives on the identity feed, after the documents.
    let a28 = format!(
        "MSH|^~\\&|GAM-TEST|CH-TEST|DMPFLOW|DMP|20241105150000||ADT^A28^ADT_A05|{run}-A28|P|2.5|||||FRA|UNICODE UTF-8\r\
EVN||20241105150000\r\
PID|1||{late_ins}^^^ASIP-SANTE-INS-NIR&{TEST_OID}&ISO^INS||DURAND^CLAIRE^CLAIRE MARIE^^^^L||19800315|F|||^^^^^^BDL^^75056|||||||||||||||||||||VALI\r\
PV1|1|N\r\
ZFA|ACTIF|20241105||Y\r",
        run = s.run
    );
    let producer = acks_all_producer();
    producer
        .send(
            FutureRecord::<str, String>::to(&format!("{}.feed.identity", s.prefix))
                .payload(&a28)
                .key(&late_ins),
            Duration::from_secs(30),
        )
        .await
        .expect("A28 acknowledged");

    let filed = wait_until(Duration::from_secs(60), || async {
        stored(&s.db).await == N as i64 && open(QuarantineStatus::Open).await == 0
    })
    .await;
    assert!(
        filed,
        "after the A28: {} stored, {} cases still open",
        stored(&s.db).await,
        open(QuarantineStatus::Open).await
    );
    assert_eq!(open(QuarantineStatus::Released).await, N);
    assert_eq!(
        store.documents_for_patient(&late_ins).await.unwrap().len(),
        N,
        "filed under the patient who arrived late"
    );
    store.close().await;
    assert!(terminate(&mut pipeline).success());
}
