//! Replay: re-process a window of one stage's input after a fix, through the very same
//! stage and driver as the live group, then report what it did.
//!
//! The window is read through a consumer group of its own (`<prefix>.<stage>.replay-<ts>`)
//! that `assign`s explicit start offsets (from `--from` as an offset, or the first offset
//! at or after `--from` as a time, via `offsets_for_times`) and stops at `--to` or at the
//! high watermarks captured at start, so a replay ends even while the live flow goes on.
//! It never commits offsets and never touches the live group's offsets, in Kafka or in
//! the database. Replaying is safe because every hop is idempotent: normalize's uniqueIds
//! are deterministic, and the store keeps one row per uniqueId and per (sender, control id,
//! position); so replaying a window twice adds duplicates to the topics downstream that the
//! store absorbs, and the DMP is unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dmpflow_schemas::Feed;
use dmpflow_store::Store;
use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::kafka;
use crate::outcome::Reporting;
use crate::runtime::{self, StageConsumer};
use crate::stages::{self, AnyStage, Handled, Sink, Source, StageName, Window, drive};
use crate::timefmt::parse_time;

/// What to replay.
pub struct Request {
    /// Normalize, route or store (not `all`).
    pub stage: StageName,
    /// Start: an offset (every partition), or a time (RFC 3339, or relative: 15m, 2h, 1d).
    pub from: String,
    /// End (exclusive) as a time; default: the high watermarks at start.
    pub to: Option<String>,
    /// Only this feed (normalize: its topic; route/store: the `dmp.feed` header).
    pub feed: Option<Feed>,
}

/// What a replay did.
#[derive(Debug, Default)]
pub struct Summary {
    pub group: String,
    /// Offsets in the window when it started, and over how many partitions.
    pub planned: i64,
    pub partitions: usize,
    /// Messages handed to the stage, and those of other feeds left out.
    pub replayed: usize,
    pub filtered: usize,
    /// The window ended because nothing arrived for a while.
    pub idle_stop: bool,
    /// A signal stopped it; the batch in flight, if any, was not counted.
    pub interrupted: bool,
    /// outcome label → count.
    pub outcomes: BTreeMap<String, usize>,
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
        None => Some(parse_time(from)?),
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

/// Opens the window: its own group, the partitions assigned at their start offsets.
fn open(settings: &Settings, req: &Request) -> Result<(Window, String, i64)> {
    let topics: Vec<String> = match (req.stage, req.feed) {
        (StageName::Normalize, Some(f)) => vec![settings.topics.feed(f)],
        (StageName::All, _) => anyhow::bail!("replay runs one stage: normalize, route or store"),
        (stage, _) => stage.inputs(settings),
    };
    let group = format!(
        "{}.{}.replay-{}",
        settings.kafka.group_prefix,
        req.stage.as_str(),
        runtime::now_ms()
    );
    let consumer: Arc<StageConsumer> = Arc::new(kafka::group_consumer(settings, &group, &[])?);
    let to = req.to.as_deref().map(parse_time).transpose()?;
    let mut bounds = window(&consumer, &topics, &req.from, to)?;
    bounds.retain(|_, (start, end)| start < end);
    let mut tpl = TopicPartitionList::new();
    for ((t, p), (start, _)) in &bounds {
        tpl.add_partition_offset(t, *p, Offset::Offset(*start))?;
    }
    consumer.assign(&tpl)?;
    let planned: i64 = bounds.values().map(|(s, e)| e - s).sum();
    // Route and store filter by the feed header; normalize read only the feed's topic.
    let feed = match req.stage {
        StageName::Route | StageName::Store => req.feed.map(|f| f.as_str().to_string()),
        _ => None,
    };
    Ok((Window::new(consumer, bounds, feed), group, planned))
}

/// Replays the window through the stage's driver. `on_start` is told the group and the
/// window's size before the first batch.
pub async fn replay(
    settings: &Settings,
    req: &Request,
    shutdown: &CancellationToken,
    on_start: impl FnOnce(&Summary),
) -> Result<Summary> {
    let (window, group, planned) = open(settings, req)?;
    let mut summary = Summary {
        group,
        planned,
        partitions: window.bounds.len(),
        ..Default::default()
    };
    on_start(&summary);
    // The producer needs the same record size limit as the live stage it stands in for.
    let settings = Arc::new(stages::sized_settings(settings, &[req.stage], shutdown).await?);
    let mut sink = Sink::Kafka(kafka::stage_producer(&settings)?);
    let mut source = Source::Window(window);
    let store = match req.stage {
        StageName::Normalize => None,
        _ => Some(
            Store::connect(&settings.database_url)
                .await
                .context("connecting to the store")?,
        ),
    };
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let count = |h: &Handled| {
        for o in &h.report.outcomes {
            *outcomes.entry(o.kind.label().to_string()).or_default() += 1;
        }
    };
    // No offsets: the live group's exactly-once offsets are not the replay's.
    let mut stage = AnyStage::new(req.stage, settings.clone(), store, None)?;
    drive(
        &mut stage,
        &mut source,
        &mut sink,
        &settings,
        shutdown,
        Reporting::Live,
        count,
    )
    .await?;
    summary.interrupted = shutdown.is_cancelled();
    summary.outcomes = outcomes;
    if let Source::Window(w) = &source {
        summary.replayed = w.read;
        summary.filtered = w.filtered;
        summary.idle_stop = w.idle_stop;
    }
    Ok(summary)
}
