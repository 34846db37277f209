//! bench-paced: a producer at a fixed rate, for the end-to-end latency measurement. Each
//! message carries `dmp.ingest.time` = its produce time in ms, so the store's
//! `dmpflow_end_to_end_seconds` histogram measures produce → stored. `dmpflow load` cannot
//! do this: it stamps a whole file with one time and sends it as fast as it can.
//!
//! Usage: bench-paced --bootstrap HOST:PORT --feed-prefix P --rate 2000 FEED=FILE...
//! Messages of all files are interleaved in proportion to their counts, each sent once.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Feed topics are `<feed-prefix><feed>`, like DMPFLOW_FEED_PREFIX.
    #[arg(long, default_value = "dmp.feed.")]
    feed_prefix: String,
    /// Messages per second.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// The producer's linger: how long a record may wait for others to share its request.
    /// The feeds' senders are not what the benchmark measures: at 1 ms and 2.4k msg/s the
    /// broker spent 0.3-0.4 core taking this producer's requests (bench/ANALYSIS.md "Session
    /// 15"); the wait is in the measured latency (the ingest time is taken before it).
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// FEED=FILE pairs (lab=/tmp/x/lab.hl7).
    #[arg(required = true)]
    inputs: Vec<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Per feed: its messages in file order.
    let mut queues: Vec<(String, String, VecDeque<Vec<u8>>)> = Vec::new();
    for input in &args.inputs {
        let (feed, path) = input
            .split_once('=')
            .context("inputs are FEED=FILE pairs")?;
        let data = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        let msgs: VecDeque<Vec<u8>> = dmpflow_ingest::split_messages(&data)
            .filter_map(|m| m.ok().map(|m| m.bytes.to_vec()))
            .collect();
        queues.push((
            feed.to_string(),
            format!("{}{feed}", args.feed_prefix),
            msgs,
        ));
    }
    let total: usize = queues.iter().map(|q| q.2.len()).sum();
    if total == 0 {
        bail!("no messages in the inputs");
    }
    // Interleave in proportion (largest remaining share first), deterministic.
    let mut order = Vec::with_capacity(total);
    let sizes: Vec<f64> = queues.iter().map(|q| q.2.len() as f64).collect();
    let mut taken = vec![0f64; queues.len()];
    for _ in 0..total {
        let i = (0..queues.len())
            .filter(|&i| taken[i] < sizes[i])
            .max_by(|&a, &b| {
                let da = (sizes[a] - taken[a]) / sizes[a];
                let db = (sizes[b] - taken[b]) / sizes[b];
                da.total_cmp(&db)
            })
            .expect("a queue with messages left");
        taken[i] += 1.0;
        order.push(i);
    }

    // Same durability as dmpflow load (acks=all, idempotent); a short linger so pacing is
    // not turned into bursts.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", args.linger_ms.to_string())
        .set("compression.type", "lz4")
        .create()
        .context("creating the producer")?;

    // Connected before the pace starts: the first records would otherwise wait for the
    // broker connection, the metadata and the idempotent producer id (200-600 ms with a
    // broker holding a few thousand partitions), a start-up of this tool that a feed's
    // long-lived producer does not pay, counted as the pipeline's latency of the first
    // few hundred records: alone it lifted p99 of a 20 s run from ~75 to ~450 ms before
    // the store's topic (bench/ANALYSIS.md "Session 19").
    for (_, topic, _) in &queues {
        producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .with_context(|| format!("metadata of {topic}"))?;
    }
    std::thread::sleep(Duration::from_secs(1));

    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let started = Instant::now();
    let mut late_max = Duration::ZERO;
    for (k, &qi) in order.iter().enumerate() {
        let due = started + interval * k as u32;
        let now = Instant::now();
        // Sleep only when the next record is due a millisecond or more from now: a sleep
        // per record is 2.4k wakeups a second on the cores the pipeline is measured on. A
        // record sent under 1 ms early carries its own send time as its ingest time, so the
        // latency measured stays true.
        if due > now + Duration::from_millis(1) {
            std::thread::sleep(due - now);
        } else if due <= now {
            late_max = late_max.max(now - due);
        }
        let (feed, topic, msgs) = &mut queues[qi];
        let payload = msgs.pop_front().expect("counted");
        let ts = now_ms().to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: dmpflow_schemas::headers::FEED,
                value: Some(feed.as_bytes()),
            })
            .insert(Header {
                key: dmpflow_schemas::headers::INGEST_TIME,
                value: Some(ts.as_bytes()),
            });
        let mut record: BaseRecord<'_, (), [u8]> = BaseRecord::to(topic)
            .payload(payload.as_slice())
            .headers(headers);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("flushing the producer")?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "paced: {total} messages in {secs:.2}s = {:.0} msg/s (target {:.0}, linger {} ms); worst lateness {:.1} ms",
        total as f64 / secs,
        args.rate,
        args.linger_ms,
        late_max.as_secs_f64() * 1e3
    );
    Ok(())
}
