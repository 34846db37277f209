//! The one stage driver: read a batch from a source, let the stage handle it, make its
//! outputs durable (the sink), let the stage make its own writes durable (the store's
//! transaction), commit the input, then report the outcomes. Written once for every stage
//! and every way of running one: the live Kafka group, a replay window, the embedded chain.
//!
//! The order is the guarantee: nothing is committed, and nothing is reported, before what
//! the batch yields is durable. A batch cut short by shutdown is not committed: it comes
//! back to whoever reads the partition next, and every hop downstream is idempotent.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use dmpflow_schemas::headers as h;
use dmpflow_schemas::reasons::Reason;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use rdkafka::topic_partition_list::Offset;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Handled, Produced, Stage, at, dead_letter};
use crate::config::Settings;
use crate::metrics::{StageLabel, metrics};
use crate::outcome::{self, At, Reporting};
use crate::runtime::{self, Output, StageConsumer};

/// What the stage may need from its source while it handles a batch.
pub struct BatchCtx<'a> {
    pub shutdown: &'a CancellationToken,
    /// The live consumer, kept polling (paused) while the database is unavailable so the
    /// member stays in its group.
    pub keepalive: Option<&'a StageConsumer>,
    /// The partitions were reassigned since the last batch.
    pub rebalanced: bool,
}

#[cfg(test)]
impl<'a> BatchCtx<'a> {
    /// A batch handed to a stage directly, as the unit tests do: no live consumer, no
    /// rebalance.
    pub fn detached(shutdown: &'a CancellationToken) -> BatchCtx<'a> {
        BatchCtx {
            shutdown,
            keepalive: None,
            rebalanced: false,
        }
    }
}

/// Where a stage's input comes from.
pub enum Source {
    /// The stage's consumer group: runs until shutdown, commits to Kafka.
    Live {
        consumer: Arc<StageConsumer>,
        committed: BTreeMap<(String, i32), i64>,
        /// The offsets committed since the last assignment change (`generation`), to
        /// commit again when an asynchronous commit failed: without it a failed commit
        /// stays failed until the partition's next batch, which may never come.
        recent: BTreeMap<(String, i32), i64>,
        generation: u64,
    },
    /// A replay window: explicit offsets, read through a group of its own that never
    /// commits; ends at the window's end.
    Window(Window),
    /// Batches already in memory (the embedded chain).
    Memory(VecDeque<Vec<OwnedMessage>>),
}

/// A replay window over assigned partitions: `[start, end)` per partition.
pub struct Window {
    pub consumer: Arc<StageConsumer>,
    pub ends: BTreeMap<(String, i32), i64>,
    pub bounds: BTreeMap<(String, i32), (i64, i64)>,
    /// Only messages of this feed (the `dmp.feed` header) are replayed.
    pub feed: Option<String>,
    /// Messages of the window left out by the feed filter.
    pub filtered: usize,
    /// Messages handed to the stage.
    pub read: usize,
    /// The window ended because nothing arrived for a while (not at its end).
    pub idle_stop: bool,
    idle_since: Instant,
}

/// How long a replay waits for the rest of its window before it stops.
const WINDOW_IDLE: Duration = Duration::from_secs(10);

impl Window {
    pub fn new(
        consumer: Arc<StageConsumer>,
        bounds: BTreeMap<(String, i32), (i64, i64)>,
        feed: Option<String>,
    ) -> Window {
        Window {
            consumer,
            ends: bounds.iter().map(|(k, (_, e))| (k.clone(), *e)).collect(),
            bounds,
            feed,
            filtered: 0,
            read: 0,
            idle_stop: false,
            idle_since: Instant::now(),
        }
    }

    async fn next(
        &mut self,
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<OwnedMessage>>> {
        if self.ends.is_empty() {
            return Ok(None);
        }
        let batch = runtime::next_batch(&self.consumer, settings, shutdown).await?;
        // Transaction markers take offsets that are never delivered: the position tells
        // when a partition is past its end even if its last offset never comes.
        if let Ok(pos) = self.consumer.position() {
            for el in pos.elements() {
                let key = (el.topic().to_string(), el.partition());
                if let Offset::Offset(o) = el.offset()
                    && self.ends.get(&key).is_some_and(|&end| o >= end)
                {
                    self.ends.remove(&key);
                }
            }
        }
        if batch.is_empty() {
            if self.idle_since.elapsed() > WINDOW_IDLE {
                self.idle_stop = true;
                return Ok(None);
            }
            return Ok(Some(batch));
        }
        self.idle_since = Instant::now();
        let mut kept = Vec::with_capacity(batch.len());
        for m in batch {
            let key = (m.topic().to_string(), m.partition());
            let Some(&(_, end)) = self.bounds.get(&key) else {
                continue;
            };
            if m.offset() + 1 >= end {
                self.ends.remove(&key);
            }
            if m.offset() >= end {
                continue;
            }
            let wanted = match &self.feed {
                Some(f) => runtime::header(&m, h::FEED).as_deref() == Some(f.as_str()),
                None => true,
            };
            if wanted {
                kept.push(m);
            } else {
                self.filtered += 1;
            }
        }
        self.read += kept.len();
        Ok(Some(kept))
    }
}

impl Source {
    /// The stage's live consumer group.
    pub fn live(consumer: Arc<StageConsumer>) -> Source {
        Source::Live {
            consumer,
            committed: BTreeMap::new(),
            recent: BTreeMap::new(),
            generation: 0,
        }
    }

    /// Nothing to read: the moment to commit again what an asynchronous commit failed
    /// to (only offsets of this assignment generation: those partitions were held all
    /// along, so no other member can have moved them on).
    fn idle(&mut self) {
        if let Source::Live {
            consumer,
            recent,
            generation,
            ..
        } = self
        {
            let ctx = consumer.context();
            if *generation == ctx.generation.load(std::sync::atomic::Ordering::SeqCst)
                && !recent.is_empty()
                && ctx
                    .commit_failed
                    .swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                runtime::commit(consumer, recent, CommitMode::Async);
            }
        }
    }

    /// The next batch (possibly empty), or `None` when the source has ended.
    async fn next(
        &mut self,
        settings: &Settings,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<OwnedMessage>>> {
        match self {
            Source::Live { consumer, .. } => Ok(Some(
                runtime::next_batch(consumer, settings, shutdown).await?,
            )),
            Source::Window(w) => w.next(settings, shutdown).await,
            Source::Memory(batches) => Ok(batches.pop_front()),
        }
    }

    fn keepalive(&self) -> Option<&StageConsumer> {
        match self {
            Source::Live { consumer, .. } => Some(consumer),
            _ => None,
        }
    }

    fn take_rebalanced(&self) -> bool {
        match self {
            Source::Live { consumer, .. } => consumer
                .context()
                .rebalanced
                .swap(false, std::sync::atomic::Ordering::SeqCst),
            _ => false,
        }
    }

    fn commit(&mut self, offsets: BTreeMap<(String, i32), i64>) {
        if let Source::Live {
            consumer,
            committed,
            recent,
            generation,
        } = self
        {
            let now = consumer
                .context()
                .generation
                .load(std::sync::atomic::Ordering::SeqCst);
            if now != *generation {
                recent.clear();
                *generation = now;
            }
            runtime::commit(consumer, &offsets, CommitMode::Async);
            recent.extend(offsets.iter().map(|(k, v)| (k.clone(), *v)));
            committed.extend(offsets);
        }
        // A replay never commits (the live group's offsets are not its own); memory has
        // nothing to commit.
    }

    /// Leaves the live group: commits what is durable ([`finish`]), then closes the
    /// consumer (librdkafka's LeaveGroup), on a thread of its own and within half the
    /// process's shutdown bound. Both are blocking client calls to the group coordinator,
    /// and librdkafka sends nothing to it while a JoinGroup is pending: a SIGTERM during a
    /// rebalance that waits for a stalled member held them until that member's session
    /// expired (the rebalance timeout, 5 minutes, at worst), so the process overran its
    /// bound and exited 2 with its leave never sent. Past the bound the stage stops without
    /// them: what was not committed comes back to the next owner (every hop downstream is
    /// idempotent), and the coordinator drops the member at its session timeout, as after
    /// a crash.
    async fn leave(&mut self, stage: &'static str, settings: &Settings) {
        // Only a live source is taken apart: a window keeps its counts for the replay's
        // summary, and memory has nothing to leave.
        let Source::Live {
            consumer,
            committed,
            ..
        } = self
        else {
            return;
        };
        let (consumer, committed) = (consumer.clone(), std::mem::take(committed));
        // The source's own handle goes, so the leaving thread's is the last one (`close`).
        *self = Source::Memory(VecDeque::new());
        let bound = Duration::from_millis(settings.limits.shutdown_timeout_ms / 2);
        let (left, done) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("{stage}-leave"))
            .spawn(move || {
                finish(&consumer, stage, &committed);
                close(consumer);
                let _ = left.send(());
            });
        if let Err(e) = spawned {
            warn!(stage, error = %e, "no thread to leave the group on: the member is dropped at its session timeout");
            return;
        }
        if tokio::time::timeout(bound, done).await.is_err() {
            warn!(
                stage,
                ?bound,
                "leaving the group did not end within half the shutdown bound (the group \
                 coordinator is busy with a rebalance): the stage stops without it; what it \
                 did not commit comes back to the next owner"
            );
        }
    }
}

/// Closes a consumer once nobody else holds it (the health checks and the lag sampler
/// hold it weakly and only for a moment): the last owner's drop is librdkafka's blocking
/// close, and it must be this thread's, never a runtime worker's.
fn close(mut consumer: Arc<StageConsumer>) {
    loop {
        match Arc::try_unwrap(consumer) {
            Ok(alone) => return drop(alone),
            Err(shared) => {
                consumer = shared;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Commits, synchronously and before the group is left, the offsets of every batch whose
/// outputs were durable: an asynchronous commit sent just before a SIGTERM may not have
/// reached the broker yet, and the next owner would process that batch a second time.
fn finish(consumer: &StageConsumer, stage: &'static str, committed: &BTreeMap<(String, i32), i64>) {
    // Only partitions still held: after a rebalance, another member may own (and have
    // advanced) the others, and committing our older offset would move them back.
    // And only offsets ahead of what the group already committed: a partition that went to
    // another member and came back holds that member's newer offset, while our map still
    // has the one from before the rebalance.
    let held = consumer.assignment().unwrap_or_default();
    let current = consumer
        .committed(Duration::from_secs(5))
        .unwrap_or_default();
    let mine: BTreeMap<(String, i32), i64> = committed
        .iter()
        .filter(|((t, p), _)| held.find_partition(t, *p).is_some())
        .filter(
            |((t, p), ours)| match current.find_partition(t, *p).map(|e| e.offset()) {
                Some(Offset::Offset(theirs)) => **ours > theirs,
                _ => true,
            },
        )
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    if !mine.is_empty() {
        runtime::commit(consumer, &mine, CommitMode::Sync);
    }
    info!(stage, "stopped");
}

/// Where a stage's outputs go.
pub enum Sink {
    /// Kafka, acks=all: durable once every record is acknowledged.
    Kafka(FutureProducer),
    /// Kept in memory for the next stage (the embedded chain).
    Memory(Vec<Output>),
}

impl Sink {
    /// The outputs kept in memory since the last call.
    pub fn take(&mut self) -> Vec<Output> {
        match self {
            Sink::Memory(v) => std::mem::take(v),
            Sink::Kafka(_) => Vec::new(),
        }
    }
}

/// The driver's verdict on one batch's outputs.
enum Delivered {
    /// Durable; these inputs were dead-lettered instead of their refused outputs.
    Durable(Vec<(usize, String, At)>),
    /// Shutdown came before every output was acknowledged.
    Interrupted,
}

/// Makes a batch's outputs durable. An output the producer or its topic refuses as too
/// large can never be written: its input is dead-lettered once instead
/// (`kafka.record.too_large`; the dead letter carries the input, which fitted its own
/// topic), and the batch goes on. `Err`: an error the stage cannot get past (a fatal
/// producer, a dead letter itself refused).
async fn deliver(
    sink: &mut Sink,
    settings: &Settings,
    batch: &[OwnedMessage],
    produced: &mut Produced,
    stage: &'static str,
    shutdown: &CancellationToken,
) -> Result<Delivered> {
    let producer = match sink {
        Sink::Memory(kept) => {
            kept.append(&mut produced.outputs);
            return Ok(Delivered::Durable(Vec::new()));
        }
        Sink::Kafka(p) => p,
    };
    let too_large =
        match runtime::produce_outputs(producer, &produced.outputs, stage, shutdown).await? {
            runtime::Delivery::Interrupted => return Ok(Delivered::Interrupted),
            runtime::Delivery::Durable { too_large } => too_large,
        };
    if too_large.is_empty() {
        return Ok(Delivered::Durable(Vec::new()));
    }
    let mut inputs: BTreeMap<usize, String> = BTreeMap::new();
    for t in &too_large {
        let out = &produced.outputs[t.index];
        inputs.entry(produced.origins[t.index]).or_insert_with(|| {
            format!(
                "output record of {} bytes for topic {} refused: {}",
                out.payload.len(),
                out.topic,
                t.error
            )
        });
    }
    let mut instead = Vec::new();
    let dead: Vec<Output> = inputs
        .iter()
        .map(|(&i, why)| {
            let m = &batch[i];
            let feed = runtime::header(m, h::FEED)
                .or_else(|| {
                    settings
                        .topics
                        .feed_of(m.topic())
                        .map(|f| f.as_str().into())
                })
                .unwrap_or_else(|| "unknown".into());
            let mut o = dead_letter(settings, m, stage, Reason::RecordTooLarge, why);
            if !o.headers.iter().any(|(k, _)| *k == h::FEED) {
                o.headers.push((h::FEED, feed.clone()));
            }
            instead.push((i, feed, at(m)));
            o
        })
        .collect();
    match runtime::produce_outputs(producer, &dead, stage, shutdown).await? {
        runtime::Delivery::Interrupted => Ok(Delivered::Interrupted),
        runtime::Delivery::Durable { too_large } => match too_large.first() {
            None => Ok(Delivered::Durable(instead)),
            // A dead letter refused as too large cannot go anywhere: the stage stops
            // rather than commit past a message it could not keep.
            Some(t) => anyhow::bail!(
                "a dead letter of {} bytes for {} was refused as too large ({}): raise the \
                 topic's max.message.bytes to at least its input topic's",
                dead[t.index].payload.len(),
                dead[t.index].topic,
                t.error
            ),
        },
    }
}

fn set_in_flight(stage: &'static str, n: usize) {
    metrics()
        .in_flight
        .get_or_create(&StageLabel { stage })
        .set(n as i64);
}

/// Runs `stage` over `source` until the source ends or shutdown. Each durable batch's
/// report goes to `on_batch` after it is emitted (the embedded chain and replay sum
/// them; the live stages pass a no-op).
pub async fn drive<S: Stage>(
    stage: &mut S,
    source: &mut Source,
    sink: &mut Sink,
    settings: &Settings,
    shutdown: &CancellationToken,
    reporting: Reporting,
    mut on_batch: impl FnMut(&Handled),
) -> Result<()> {
    let name = stage.name();
    if reporting == Reporting::Live {
        info!(stage = name, "started");
    }
    while !shutdown.is_cancelled() {
        let Some(batch) = source.next(settings, shutdown).await? else {
            break;
        };
        if batch.is_empty() {
            source.idle();
            continue;
        }
        let started = Instant::now();
        if reporting == Reporting::Live {
            set_in_flight(name, batch.len());
        }
        let ctx = BatchCtx {
            shutdown,
            keepalive: source.keepalive(),
            rebalanced: source.take_rebalanced(),
        };
        let mut handled = match stage.handle(&batch, &ctx).await {
            Ok(h) => h,
            Err(e) if shutdown.is_cancelled() => {
                warn!(stage = name, error = %format!("{e:#}"), "batch not committed");
                break;
            }
            Err(e) => return Err(e),
        };
        match deliver(
            sink,
            settings,
            &batch,
            &mut handled.produced,
            name,
            shutdown,
        )
        .await?
        {
            Delivered::Interrupted => {
                // Shutdown before the outputs were acknowledged: do not commit; they come back.
                warn!(stage = name, "batch not committed");
                break;
            }
            Delivered::Durable(instead) => {
                handled
                    .report
                    .dead_lettered_instead(&instead, Reason::RecordTooLarge);
                // A fused stage's input is one dead letter, counted once (above).
                for (_, also) in &mut handled.also {
                    also.forget(&instead);
                }
            }
        }
        let offsets = runtime::next_offsets(&batch);
        match stage.make_durable(&offsets, &mut handled, &ctx).await {
            Ok(()) => {}
            Err(e) if shutdown.is_cancelled() => {
                warn!(stage = name, error = %format!("{e:#}"), "batch not committed");
                break;
            }
            Err(e) => return Err(e),
        }
        source.commit(offsets);
        outcome::emit(name, &handled.report, reporting);
        for (fused, report) in &handled.also {
            outcome::emit(fused, report, reporting);
        }
        on_batch(&handled);
        if reporting == Reporting::Live {
            metrics()
                .batch_seconds
                .get_or_create(&StageLabel { stage: name })
                .observe(started.elapsed().as_secs_f64());
            set_in_flight(name, 0);
        }
    }
    source.leave(name, settings).await;
    Ok(())
}

/// Messages in memory, as a stage reads them from Kafka: the embedded chain hands each
/// stage's outputs to the next stage this way.
pub fn in_memory(
    outputs: Vec<Output>,
    first_offset: &mut HashMap<String, i64>,
) -> Vec<OwnedMessage> {
    outputs
        .into_iter()
        .map(|o| {
            let offset = first_offset.entry(o.topic.clone()).or_insert(0);
            let m = OwnedMessage::new(
                Some(o.payload),
                o.key.map(String::into_bytes),
                o.topic,
                rdkafka::Timestamp::NotAvailable,
                0,
                *offset,
                Some(runtime::owned_headers(&o.headers)),
            );
            *offset += 1;
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdkafka::message::Message;

    use super::*;
    use crate::outcome::Kind;

    /// A stage that echoes each input to topic `out` and can fail its durable step.
    struct Echo {
        fail_durable: bool,
        durable_calls: usize,
        offsets_seen: Vec<BTreeMap<(String, i32), i64>>,
    }

    impl Stage for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }

        async fn handle(&mut self, batch: &[OwnedMessage], _: &BatchCtx<'_>) -> Result<Handled> {
            let mut h = Handled::default();
            for (i, m) in batch.iter().enumerate() {
                h.produced.push(
                    i,
                    Output {
                        topic: "out".into(),
                        key: None,
                        payload: m.payload().unwrap_or_default().to_vec(),
                        headers: Vec::new(),
                    },
                );
                h.report.push(i, "lab", Kind::Document, None);
            }
            Ok(h)
        }

        async fn make_durable(
            &mut self,
            offsets: &BTreeMap<(String, i32), i64>,
            _: &mut Handled,
            _: &BatchCtx<'_>,
        ) -> Result<()> {
            self.durable_calls += 1;
            self.offsets_seen.push(offsets.clone());
            anyhow::ensure!(!self.fail_durable, "database refused the batch");
            Ok(())
        }
    }

    fn batch(topic: &str, payloads: &[&str]) -> Vec<OwnedMessage> {
        let outputs = payloads
            .iter()
            .map(|p| Output {
                topic: topic.into(),
                key: None,
                payload: p.as_bytes().to_vec(),
                headers: Vec::new(),
            })
            .collect();
        in_memory(outputs, &mut HashMap::new())
    }

    fn echo(fail_durable: bool) -> Echo {
        Echo {
            fail_durable,
            durable_calls: 0,
            offsets_seen: Vec::new(),
        }
    }

    #[tokio::test]
    async fn every_batch_is_handled_delivered_made_durable_then_reported_in_order() {
        let settings = Settings::default();
        let mut stage = echo(false);
        let mut source = Source::Memory(VecDeque::from([
            batch("in", &["a", "b"]),
            Vec::new(),
            batch("in", &["c"]),
        ]));
        let mut sink = Sink::Memory(Vec::new());
        let mut reported = Vec::new();
        drive(
            &mut stage,
            &mut source,
            &mut sink,
            &settings,
            &CancellationToken::new(),
            Reporting::Quiet,
            |h| reported.push(h.report.outcomes.len()),
        )
        .await
        .unwrap();
        let out: Vec<_> = sink.take().into_iter().map(|o| o.payload).collect();
        assert_eq!(out, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert_eq!(reported, [2, 1], "one report per non-empty batch, in order");
        assert_eq!(stage.durable_calls, 2);
        // The durable step is given the next offsets of its batch (offsets restart per
        // in-memory batch here).
        assert_eq!(stage.offsets_seen[0][&("in".to_string(), 0)], 2);
    }

    #[tokio::test]
    async fn a_failed_durable_step_stops_the_driver_and_reports_nothing() {
        let settings = Settings::default();
        let mut stage = echo(true);
        let mut source = Source::Memory(VecDeque::from([batch("in", &["a"]), batch("in", &["b"])]));
        let mut sink = Sink::Memory(Vec::new());
        let mut reported = 0;
        let err = drive(
            &mut stage,
            &mut source,
            &mut sink,
            &settings,
            &CancellationToken::new(),
            Reporting::Quiet,
            |_| reported += 1,
        )
        .await
        .unwrap_err();
        assert!(format!("{err:#}").contains("database refused"), "{err:#}");
        assert_eq!(reported, 0, "nothing is reported before it is durable");
        assert_eq!(stage.durable_calls, 1, "the second batch is never read");
    }

    #[tokio::test]
    async fn no_batch_is_started_after_shutdown() {
        let settings = Settings::default();
        let mut stage = echo(false);
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let mut source = Source::Memory(VecDeque::from([batch("in", &["a"])]));
        let mut sink = Sink::Memory(Vec::new());
        let mut reported = 0;
        drive(
            &mut stage,
            &mut source,
            &mut sink,
            &settings,
            &shutdown,
            Reporting::Quiet,
            |_| reported += 1,
        )
        .await
        .unwrap();
        assert_eq!(reported, 0);
        assert_eq!(stage.durable_calls, 0);
        assert!(sink.take().is_empty());
        // A source that is not a live group is left as it was when the driver ends: the
        // replay reads its window's counts from it afterwards.
        assert!(
            matches!(&source, Source::Memory(left) if left.len() == 1),
            "the unread batch is still in the source"
        );
    }
}
