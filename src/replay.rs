//! `dmpflow replay`: re-process a window of one stage's input after a fix, then exit with
//! a summary.
//!
//! The window is read through a consumer group of its own (`<prefix>.<stage>.replay-<ts>`)
//! that `assign`s explicit start offsets (from `--from` as an offset, or the first offset
//! at or after `--from` as a time, via `offsets_for_times`) and stops at `--to` or at the
//! high watermarks captured at start, so a replay ends even while the live flow goes on.
//! It never commits offsets and never touches the live group's offsets, in Kafka or in
//! the database.
//!
//! Each batch runs through the very same per-batch functions as the live stage
//! (`stages::normalize_batch`, `route_batch`, `store_decode`). Replaying is safe because
//! every hop is idempotent: normalize's uniqueIds are deterministic, and the store keeps one
//! row per uniqueId and per (sender, control id, position); so replaying a window twice
//! adds duplicates to the topics downstream that the store absorbs, and the DMP is unchanged.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dmpflow_schemas::{Feed, headers as h};
use dmpflow_store::Store;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::runtime::{self, StageConsumer, StageContext, client_config};
use dmpflow_pipeline::stages;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReplayStage {
    Normalize,
    Route,
    Store,
}

impl ReplayStage {
    fn as_str(self) -> &'static str {
        match self {
            ReplayStage::Normalize => "normalize",
            ReplayStage::Route => "route",
            ReplayStage::Store => "store",
        }
    }
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The stage whose input is re-processed.
    #[arg(long, value_enum)]
    stage: ReplayStage,
    /// Start: an offset (every partition), or a time (RFC 3339, or relative: 15m, 2h, 1d).
    #[arg(long)]
    from: String,
    /// End (exclusive) as a time; default: the high watermarks at start.
    #[arg(long)]
    to: Option<String>,
    /// Only this feed (normalize: its topic; route/store: the `dmp.feed` header).
    #[arg(long)]
    feed: Option<Feed>,
    /// Accept the test INS OIDs when re-routing (as DMPFLOW_ACCEPT_TEST_OIDS=1): the demo
    /// and test stacks only, never production.
    #[arg(long)]
    pub accept_test_oids: bool,
}

/// Start offset per partition from `--from`, end offset from `--to` or the high watermark.
fn window(
    consumer: &StageConsumer,
    topics: &[String],
    from: &str,
    to: Option<i64>,
) -> Result<BTreeMap<(String, i32), (i64, i64)>> {
    let timeout = Duration::from_secs(10);
    let from_offset = from.parse::<i64>().ok();
    let from_time = match from_offset {
        Some(_) => None,
        None => Some(crate::dlq::parse_time(from)?),
    };
    let mut out = BTreeMap::new();
    for topic in topics {
        let md = consumer
            .fetch_metadata(Some(topic), timeout)
            .with_context(|| format!("reading the metadata of {topic}"))?;
        let mut watermarks = BTreeMap::new();
        for t in md.topics() {
            if let Some(e) = t.error() {
                anyhow::bail!("topic {topic}: {e:?}");
            }
            for p in t.partitions() {
                watermarks.insert(p.id(), consumer.fetch_watermarks(topic, p.id(), timeout)?);
            }
        }
        // offsets_for_times answers, per partition, the first offset at or after a time.
        let at = |ms: i64| -> Result<BTreeMap<i32, Option<i64>>> {
            let mut tpl = TopicPartitionList::new();
            for p in watermarks.keys() {
                tpl.add_partition_offset(topic, *p, Offset::Offset(ms))?;
            }
            let res = consumer.offsets_for_times(tpl, timeout)?;
            Ok(res
                .elements()
                .iter()
                .map(|e| {
                    let o = match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None, // no message at or after that time
                    };
                    (e.partition(), o)
                })
                .collect())
        };
        let starts = from_time.map(at).transpose()?;
        let ends = to.map(at).transpose()?;
        for (p, (lo, hi)) in &watermarks {
            let start = match (&starts, from_offset) {
                (Some(s), _) => s.get(p).copied().flatten().unwrap_or(*hi),
                (None, Some(o)) => o,
                (None, None) => *hi,
            }
            .max(*lo);
            let end = match &ends {
                Some(e) => e.get(p).copied().flatten().unwrap_or(*hi).min(*hi),
                None => *hi,
            };
            out.insert((topic.clone(), *p), (start, end));
        }
    }
    Ok(out)
}

pub async fn replay(settings: &Settings, args: ReplayArgs) -> Result<ExitCode> {
    let stage = args.stage;
    let topics: Vec<String> = match stage {
        ReplayStage::Normalize => match args.feed {
            Some(f) => vec![settings.topics.feed(f)],
            None => settings.topics.feeds(),
        },
        ReplayStage::Route => vec![settings.topics.documents.clone()],
        ReplayStage::Store => vec![
            settings.topics.routed.clone(),
            settings.topics.quarantine.clone(),
        ],
    };
    let group = format!(
        "{}.{}.replay-{}",
        settings.kafka.group_prefix,
        stage.as_str(),
        runtime::now_ms()
    );
    let mut cfg = client_config(settings);
    cfg.set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set(
            "queued.max.messages.kbytes",
            settings.limits.consumer_queue_kbytes.to_string(),
        );
    let consumer: Arc<StageConsumer> = Arc::new(
        cfg.create_with_context(StageContext::default())
            .map_err(runtime::client_error)
            .context("creating the replay consumer")?,
    );
    let to = args.to.as_deref().map(crate::dlq::parse_time).transpose()?;
    let mut window = window(&consumer, &topics, &args.from, to)?;
    window.retain(|_, (start, end)| start < end);
    let mut tpl = TopicPartitionList::new();
    for ((t, p), (start, _)) in &window {
        tpl.add_partition_offset(t, *p, Offset::Offset(*start))?;
    }
    consumer.assign(&tpl)?;
    let planned: i64 = window.values().map(|(s, e)| e - s).sum();
    eprintln!(
        "replaying {planned} offset(s) of {} over {} partition(s) with group {group}",
        stage.as_str(),
        window.len()
    );

    let shutdown = dmpflow_pipeline::shutdown_token();
    // The producer needs the same record size limit as the live stage it stands in for.
    let t = &settings.topics;
    let outputs: Vec<&str> = match stage {
        ReplayStage::Normalize => vec![&t.documents, &t.dlq],
        ReplayStage::Route => vec![&t.routed, &t.quarantine, &t.dlq],
        ReplayStage::Store => vec![&t.dlq],
    };
    let limits = runtime::check_record_limits(
        settings,
        &outputs,
        runtime::stage_largest_payload(settings),
        "the larger of limits.max_cda_bytes and limits.max_message_bytes",
        &shutdown,
    )
    .await?;
    let mut sized = settings.clone();
    limits.apply(&mut sized);
    let settings = &sized;
    let producer = runtime::stage_producer(settings)?;
    let store = match stage {
        ReplayStage::Normalize => None,
        _ => Some(
            Store::connect(&settings.database_url)
                .await
                .context("connecting to the store")?,
        ),
    };
    let ncfg = stages::normalize_config(settings);
    let rcfg = stages::route_config(settings);
    let feed_filter = args.feed.map(|f| f.as_str().to_string());
    let mut replayed = 0usize;
    let mut skipped = 0usize;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut idle_since = Instant::now();
    let mut ends: BTreeMap<(String, i32), i64> =
        window.iter().map(|(k, (_, e))| (k.clone(), *e)).collect();
    while !ends.is_empty() && !shutdown.is_cancelled() {
        let batch = runtime::next_batch(&consumer, settings, &shutdown).await?;
        // Transaction markers take offsets that are never delivered: the position tells
        // when a partition is past its end even if its last offset never comes.
        if let Ok(pos) = consumer.position() {
            for el in pos.elements() {
                let key = (el.topic().to_string(), el.partition());
                if let Offset::Offset(o) = el.offset()
                    && ends.get(&key).is_some_and(|&end| o >= end)
                {
                    ends.remove(&key);
                }
            }
        }
        if batch.is_empty() {
            if idle_since.elapsed() > Duration::from_secs(10) {
                eprintln!("nothing more arrived for 10 s; stopping");
                break;
            }
            continue;
        }
        idle_since = Instant::now();
        let mut window_batch = Vec::with_capacity(batch.len());
        for m in batch {
            let key = (m.topic().to_string(), m.partition());
            let Some(&(_, end)) = window.get(&key) else {
                continue;
            };
            if m.offset() + 1 >= end {
                ends.remove(&key);
            }
            if m.offset() >= end {
                continue;
            }
            let feed_ok = match (&feed_filter, stage) {
                (Some(f), ReplayStage::Route | ReplayStage::Store) => {
                    runtime::header(&m, h::FEED).as_deref() == Some(f.as_str())
                }
                _ => true,
            };
            if feed_ok {
                window_batch.push(m);
            } else {
                skipped += 1;
            }
        }
        if window_batch.is_empty() {
            continue;
        }
        replayed += window_batch.len();
        let tally = match stage {
            ReplayStage::Normalize => {
                let produced = stages::normalize_batch(settings, &ncfg, &window_batch)?;
                let durable = stages::produce_batch(
                    settings,
                    &producer,
                    &window_batch,
                    &produced,
                    "normalize",
                    &shutdown,
                )
                .await?;
                anyhow::ensure!(durable, "interrupted before the outputs were acknowledged");
                produced.tally
            }
            ReplayStage::Route => {
                let store = store.as_ref().expect("connected above");
                let produced =
                    stages::route_batch(settings, store, &rcfg, &window_batch, &shutdown, None)
                        .await?;
                let durable = stages::produce_batch(
                    settings,
                    &producer,
                    &window_batch,
                    &produced,
                    "route",
                    &shutdown,
                )
                .await?;
                anyhow::ensure!(durable, "interrupted before the outputs were acknowledged");
                produced.tally
            }
            ReplayStage::Store => {
                let store = store.as_ref().expect("connected above");
                let decoded = stages::store_decode(settings, &window_batch, |_| false);
                runtime::produce_all(&producer, &decoded.dlq, "store", &shutdown).await?;
                // No offsets: the live group's exactly-once offsets are not the replay's.
                let results =
                    stages::store_write(store, &decoded.items, &[], &shutdown, None).await?;
                let mut tally = Vec::new();
                for (o, feed) in results.iter().zip(&decoded.item_feeds) {
                    let (label, reason) = stages::outcome_label(o);
                    tally.push((feed.clone(), label, reason.map(str::to_string)));
                }
                for _ in &decoded.dlq {
                    tally.push(("?".into(), "dead_lettered", None));
                }
                tally
            }
        };
        for (_, outcome, _) in tally {
            *outcomes.entry(outcome.to_string()).or_default() += 1;
        }
    }
    let summary: Vec<String> = outcomes.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "replayed {replayed} message(s) of stage {} (group {group}); skipped {skipped} of other feeds; outcomes: {}",
        stage.as_str(),
        if summary.is_empty() {
            "none".to_string()
        } else {
            summary.join(" ")
        }
    );
    Ok(ExitCode::SUCCESS)
}
