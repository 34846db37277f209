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
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

async fn produce_lab(topic: &str, ins: &str, run: &str, range: std::ops::Range<usize>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
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
    let s = setup("skeleton", 3).await;
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
