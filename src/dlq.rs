//! `dmpflow dlq`: inspect the dead-letter queue and replay its letters after a fix.
//!
//! Reading never joins a consumer group: a throwaway consumer `assign`s every partition
//! from its low to its high watermark (captured at start) and commits nothing, so listing
//! the DLQ changes nobody's offsets. Listings print coordinates, stage, reason and attempt
//! only; payloads hold patient data and are shown only by `show --payload`.
//!
//! Replay, and why it never sends the same dead letter twice:
//! - each replayed letter is re-produced to its source topic (`dmp.source.topic`) with
//!   `dmp.attempt` incremented, AND a marker keyed `partition:offset` (the letter's DLQ
//!   coordinates) is written to the compacted topic `<dlq>.replayed`, both in ONE Kafka
//!   transaction: either the message and its marker are both visible or neither is, so a
//!   crash mid-replay neither loses nor doubles a replay. A fixed `transactional.id` also
//!   fences a second replay running at the same time;
//! - a run first reads the markers and skips the letters already replayed;
//! - a replayed message that fails again returns to the DLQ once, as a NEW letter carrying
//!   `dmp.attempt=2` (the stages copy the attempt header). Letters with attempt ≥ 2 are
//!   never replayed automatically: a message that failed twice needs a person, not a loop.

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dmpflow_schemas::headers as h;
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::kafka;
use dmpflow_pipeline::runtime;
use dmpflow_pipeline::timefmt::{format_time, parse_time};

/// Header of a replayed message naming the dead letter it came from (`topic/partition@offset`).
pub const REPLAY_OF: &str = "dmp.replay.of";

#[derive(clap::Subcommand)]
pub enum DlqAction {
    /// One line per dead letter: coordinates, time, stage, reason, source, attempt (no payload).
    List {
        /// Only this reason code (e.g. hl7.msh.missing).
        #[arg(long)]
        reason: Option<String>,
        /// Only letters dead-lettered at or after TIME (RFC 3339, or relative: 15m, 2h, 1d).
        #[arg(long)]
        since: Option<String>,
        /// At most N lines.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One dead letter's headers and payload size.
    Show {
        /// PARTITION:OFFSET in the DLQ topic.
        at: String,
        /// Also print the first bytes of the payload (patient data: use with care).
        #[arg(long)]
        payload: bool,
    },
    /// Re-produce dead letters to their source topic (attempt + 1), each at most once.
    Replay {
        /// Only dead letters of this reason code (e.g. hl7.message.too_large; docs/reasons.md
        /// lists them): replay what a fix addressed, not everything.
        #[arg(long)]
        reason: Option<String>,
        /// RFC 3339, or relative: 15m, 2h, 1d.
        #[arg(long)]
        since: Option<String>,
        /// Print what would be replayed, send nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The DLQ reader: it assigns partitions and commits nothing (`kafka::Role::Reader`).
fn reader(settings: &Settings) -> Result<BaseConsumer> {
    kafka::reader(settings, "dlq-reader")
}

/// Every message of `topic` from the low to the high watermarks captured now, in
/// partition/offset order. A missing topic reads as empty.
pub fn read_all(settings: &Settings, topic: &str) -> Result<Vec<OwnedMessage>> {
    let c = reader(settings)?;
    let timeout = Duration::from_secs(10);
    let md = c
        .fetch_metadata(Some(topic), timeout)
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        if t.error().is_some() {
            return Ok(Vec::new());
        }
        for p in t.partitions() {
            let (lo, hi) = c.fetch_watermarks(topic, p.id(), timeout)?;
            if lo < hi {
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(lo))?;
                ends.insert(p.id(), hi);
            }
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    c.assign(&tpl)?;
    let mut last_progress = Instant::now();
    while !ends.is_empty() {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let p = m.partition();
                if let Some(&end) = ends.get(&p) {
                    if m.offset() < end {
                        out.push(m.detach());
                    }
                    if m.offset() + 1 >= end {
                        ends.remove(&p);
                    }
                }
            }
            Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            None => {
                // Transaction markers occupy offsets without being delivered: a partition
                // whose position reached its end is done even if its last offset never came.
                if let Ok(pos) = c.position() {
                    for el in pos.elements() {
                        if let Offset::Offset(o) = el.offset()
                            && ends.get(&el.partition()).is_some_and(|&end| o >= end)
                        {
                            ends.remove(&el.partition());
                        }
                    }
                }
                if last_progress.elapsed() > Duration::from_secs(5) {
                    break;
                }
            }
        }
    }
    out.sort_by_key(|m| (m.partition(), m.offset()));
    Ok(out)
}

/// The DLQ headers of one letter, as read.
struct Letter {
    partition: i32,
    offset: i64,
    time_ms: i64,
    stage: String,
    reason: String,
    source_topic: Option<String>,
    source_partition: String,
    source_offset: String,
    attempt: u32,
    feed: Option<String>,
}

impl Letter {
    fn of(m: &OwnedMessage) -> Letter {
        let get = |k: &str| runtime::header(m, k);
        Letter {
            partition: m.partition(),
            offset: m.offset(),
            time_ms: get(h::TIME)
                .and_then(|v| v.parse().ok())
                .or_else(|| m.timestamp().to_millis())
                .unwrap_or(0),
            stage: get(h::STAGE).unwrap_or_else(|| "?".into()),
            reason: get(h::REASON).unwrap_or_else(|| "?".into()),
            source_topic: get(h::SOURCE_TOPIC),
            source_partition: get(h::SOURCE_PARTITION).unwrap_or_else(|| "?".into()),
            source_offset: get(h::SOURCE_OFFSET).unwrap_or_else(|| "?".into()),
            attempt: get(h::ATTEMPT).and_then(|v| v.parse().ok()).unwrap_or(1),
            feed: get(h::FEED),
        }
    }

    fn key(&self) -> String {
        format!("{}:{}", self.partition, self.offset)
    }

    fn line(&self) -> String {
        format!(
            "{}:{}\t{}\tstage={}\treason={}\tsource={}/{}@{}\tattempt={}\tfeed={}",
            self.partition,
            self.offset,
            format_time(self.time_ms),
            self.stage,
            self.reason,
            self.source_topic.as_deref().unwrap_or("?"),
            self.source_partition,
            self.source_offset,
            self.attempt,
            self.feed.as_deref().unwrap_or("-"),
        )
    }
}

fn selected(
    settings: &Settings,
    reason: Option<&str>,
    since: Option<&str>,
) -> Result<Vec<(Letter, OwnedMessage)>> {
    let since = since.map(parse_time).transpose()?;
    let all = read_all(settings, &settings.topics.dlq)?;
    Ok(all
        .into_iter()
        .map(|m| (Letter::of(&m), m))
        .filter(|(l, _)| reason.is_none_or(|r| l.reason == r))
        .filter(|(l, _)| since.is_none_or(|s| l.time_ms >= s))
        .collect())
}

/// The marker topic of replayed letters: `<dlq>.replayed`.
pub fn replayed_topic(settings: &Settings) -> String {
    format!("{}.replayed", settings.topics.dlq)
}

async fn ensure_marker_topic(settings: &Settings) -> Result<()> {
    let admin = kafka::admin(settings)?;
    let name = replayed_topic(settings);
    // Compacted and kept forever: one record per replayed letter is the whole memory of
    // what was replayed; retention must not forget it while the DLQ still holds the letter.
    let topic = NewTopic::new(
        &name,
        1,
        TopicReplication::Fixed(settings.topics.replication),
    )
    .set("cleanup.policy", "compact")
    .set("retention.ms", "-1");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.create_topics([&topic], &opts).await? {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((n, e)) => anyhow::bail!("creating topic {n}: {e}"),
        }
    }
    Ok(())
}

pub async fn dlq(settings: &Settings, action: DlqAction) -> Result<ExitCode> {
    match action {
        DlqAction::List {
            reason,
            since,
            limit,
        } => {
            let letters = selected(settings, reason.as_deref(), since.as_deref())?;
            let n = letters.len();
            for (l, _) in letters.iter().take(limit.unwrap_or(usize::MAX)) {
                println!("{}", l.line());
            }
            eprintln!("{n} dead letter(s) in {}", settings.topics.dlq);
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Show { at, payload } => {
            let (p, o) = at
                .split_once(':')
                .and_then(|(p, o)| Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?)))
                .context("expected PARTITION:OFFSET, e.g. 0:42")?;
            let m = read_one(settings, &settings.topics.dlq, p, o)?;
            println!("dlq {}:{}", m.partition(), m.offset());
            if let Some(hs) = m.headers() {
                for hd in hs.iter() {
                    let v = hd.value.map(String::from_utf8_lossy).unwrap_or_default();
                    println!("  {} = {}", hd.key, v);
                }
            }
            let body = m.payload().unwrap_or_default();
            println!("payload: {} bytes", body.len());
            if payload {
                let head = &body[..body.len().min(256)];
                println!("payload head: {}", head.escape_ascii());
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqAction::Replay {
            reason,
            since,
            dry_run,
        } => replay(settings, reason.as_deref(), since.as_deref(), dry_run).await,
    }
}

fn read_one(settings: &Settings, topic: &str, partition: i32, offset: i64) -> Result<OwnedMessage> {
    let c = reader(settings)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    c.assign(&tpl)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) if m.offset() == offset => return Ok(m.detach()),
            Some(Ok(_)) => anyhow::bail!("no message at {topic} {partition}:{offset}"),
            Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            None => {}
        }
    }
    anyhow::bail!("no message at {topic} {partition}:{offset}")
}

async fn replay(
    settings: &Settings,
    reason: Option<&str>,
    since: Option<&str>,
    dry_run: bool,
) -> Result<ExitCode> {
    ensure_marker_topic(settings).await?;
    let done: HashSet<String> = read_all(settings, &replayed_topic(settings))?
        .iter()
        .filter_map(|m| m.key().map(|k| String::from_utf8_lossy(k).into_owned()))
        .collect();
    let mut todo = Vec::new();
    let (mut already, mut retried, mut unknown) = (0usize, 0usize, 0usize);
    for (l, m) in selected(settings, reason, since)? {
        if done.contains(&l.key()) {
            already += 1;
        } else if l.attempt >= 2 {
            retried += 1;
            println!("not replayed (attempt {}): {}", l.attempt, l.line());
        } else if l.source_topic.is_none() {
            unknown += 1;
            println!("not replayed (no source topic): {}", l.line());
        } else {
            todo.push((l, m));
        }
    }
    if dry_run {
        for (l, _) in &todo {
            println!("would replay: {}", l.line());
        }
    } else if !todo.is_empty() {
        send(settings, &todo).await?;
        for (l, _) in &todo {
            println!("replayed: {}", l.line());
        }
    }
    println!(
        "{} {}; {already} already replayed; {retried} with attempt >= 2 left for a person; {unknown} without source",
        todo.len(),
        if dry_run {
            "would be replayed"
        } else {
            "replayed"
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// Produces the replayed messages and their markers, a chunk per Kafka transaction.
async fn send(settings: &Settings, todo: &[(Letter, OwnedMessage)]) -> Result<()> {
    // A dead letter may be as large as its input topic allows (a `kafka.record.too_large`
    // one carries a whole message): the producer's limit is sized to the largest replayed,
    // and a source topic that cannot take it is named before anything is sent.
    let mut sources: Vec<&str> = todo
        .iter()
        .filter_map(|(l, _)| l.source_topic.as_deref())
        .collect();
    sources.sort_unstable();
    sources.dedup();
    let largest = todo
        .iter()
        .map(|(_, m)| m.payload().map_or(0, <[u8]>::len))
        .max()
        .unwrap_or(0);
    let limits = kafka::limits::check_record_limits(
        settings,
        &sources,
        largest,
        "the largest dead letter to replay",
        &tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    let mut sized = settings.clone();
    limits.apply(&mut sized);
    let settings = &sized;
    // One fixed transactional id (`<group_prefix>.dlq-replay`): a second replay running at
    // the same time fences this one instead of interleaving with it.
    let producer: FutureProducer = kafka::transactional_producer(settings, "dlq-replay")?;
    let timeout = Duration::from_secs(30);
    producer
        .init_transactions(timeout)
        .context("initialising the replay transaction")?;
    let markers = replayed_topic(settings);
    for chunk in todo.chunks(200) {
        producer.begin_transaction()?;
        let mut deliveries = Vec::new();
        for (l, m) in chunk {
            let source = l.source_topic.as_deref().expect("filtered above");
            let mut headers = OwnedHeaders::new()
                .insert(Header {
                    key: h::ATTEMPT,
                    value: Some((l.attempt + 1).to_string().as_bytes()),
                })
                .insert(Header {
                    key: REPLAY_OF,
                    value: Some(
                        format!("{}/{}@{}", settings.topics.dlq, l.partition, l.offset).as_bytes(),
                    ),
                });
            for k in [h::INGEST_TIME, h::FEED] {
                // The feed of a raw message is its topic; carrying it would only repeat it.
                if k == h::FEED && settings.topics.feed_of(source).is_some() {
                    continue;
                }
                if let Some(v) = runtime::header(m, k) {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
            }
            let payload = m.payload().unwrap_or_default();
            let mut record = FutureRecord::<[u8], [u8]>::to(source)
                .payload(payload)
                .headers(headers);
            if let Some(k) = m.key() {
                record = record.key(k);
            }
            deliveries.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| anyhow::anyhow!("enqueueing a replay to {source}: {e}"))?,
            );
            let key = l.key();
            let marker = format!(
                "{{\"replayed_at\":{},\"to\":\"{}\"}}",
                runtime::now_ms(),
                source
            );
            deliveries.push(
                producer
                    .send_result(
                        FutureRecord::<str, str>::to(&markers)
                            .key(key.as_str())
                            .payload(marker.as_str()),
                    )
                    .map_err(|(e, _)| anyhow::anyhow!("enqueueing a marker: {e}"))?,
            );
        }
        if let Err(e) = producer.commit_transaction(timeout) {
            let _ = producer.abort_transaction(timeout);
            anyhow::bail!("replay transaction not committed (nothing of it is visible): {e}");
        }
        for d in deliveries {
            d.await
                .map_err(|_| anyhow::anyhow!("delivery cancelled"))?
                .map_err(|(e, _)| anyhow::anyhow!("delivery failed: {e}"))?;
        }
    }
    Ok(())
}
