//! A stage's pause (`runtime::Pause`, its next hop down) must not outlive a rebalance: when
//! the partitions it paused are revoked during the pause (a session timeout while the broker
//! restarts) and the pause ends before they are assigned again, they must come back
//! readable. librdkafka keeps a pause on the partition object across the revocation, and a
//! pause that resumed only the assignment of its end resumed nothing there: the store stood
//! still, its partitions paused, with documents waiting (seen once in CI's log-hygiene run,
//! a broker restart then a database restart). Needs the stack (`scripts/stack up`).

mod common;

use std::time::Duration;

use common::{bootstrap, kafka_config, require_kafka};
use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::kafka::stage_consumer;
use dmpflow_pipeline::runtime::Pause;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Waits for the next message, `None` after `secs`.
async fn next(consumer: &dmpflow_pipeline::kafka::StageConsumer, secs: u64) -> Option<String> {
    match tokio::time::timeout(Duration::from_secs(secs), consumer.recv()).await {
        Ok(Ok(m)) => Some(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned()),
        Ok(Err(e)) => panic!("consumer error: {e}"),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_revoked_during_a_pause_are_readable_once_assigned_again() {
    require_kafka();
    let run = format!("{:x}", std::process::id() as u64 * 1_000_003 + 17);
    let topic = format!("pause-rebalance-{run}");
    let admin: AdminClient<DefaultClientContext> = kafka_config().create().unwrap();
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let producer: FutureProducer = kafka_config().create().unwrap();
    let send = |partition: i32, text: &'static str| {
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            producer
                .send(
                    FutureRecord::<(), str>::to(&topic)
                        .partition(partition)
                        .payload(text),
                    Duration::from_secs(10),
                )
                .await
                .expect("produce");
        }
    };

    let mut settings = Settings::default();
    settings.kafka.bootstrap = bootstrap();
    settings.kafka.group_prefix = format!("pause-rebalance-{run}");
    let consumer = stage_consumer(&settings, "store", std::slice::from_ref(&topic), &[]).unwrap();
    send(0, "before").await;
    assert_eq!(next(&consumer, 60).await.as_deref(), Some("before"));
    assert_eq!(consumer.assignment().unwrap().count(), 2);

    // The next hop goes down: every partition paused.
    let pause = Pause::start(&consumer, "store");
    // A rebalance revokes them during the pause (as a session timeout does) ...
    consumer.unsubscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while consumer.assignment().unwrap().count() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "still assigned");
        let _ = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await;
    }
    // ... the next hop is back before they are assigned again ...
    pause.end();
    // ... and they are assigned again: both must be read.
    consumer
        .subscribe(&[topic.as_str()])
        .expect("subscribing again");
    send(0, "after-0").await;
    send(1, "after-1").await;
    // Nothing was committed, so "before" may be read again: only the two new ones count.
    let mut got = Vec::new();
    while !(got.iter().any(|m| m == "after-0") && got.iter().any(|m| m == "after-1")) {
        match next(&consumer, 60).await {
            Some(m) => got.push(m),
            None => panic!(
                "partitions still paused after the pause ended: read {got:?}, not both after-0 and after-1"
            ),
        }
    }
    let _ = admin
        .delete_topics(&[topic.as_str()], &AdminOptions::new())
        .await;
}
