//! The embedded chain (`dmpflow process`, `dmpflow demo`): the same three stages and the
//! same driver as the Kafka pipeline, over batches in memory instead of topics, into one
//! database. Messages are taken in chunks: each chunk goes through normalize, its outputs
//! through route, theirs through the store, as the Kafka stages would see them. Memory
//! holds one chunk and what it yields, whatever the input's size.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use dmpflow_schemas::Feed;
use dmpflow_store::Store;
use rdkafka::message::OwnedMessage;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::outcome::{Kind, Reporting};
use crate::runtime::Output;
use crate::stages::driver::in_memory;
use crate::stages::{Handled, NormalizeStage, RouteStage, Sink, Source, Stage, StoreStage, drive};

/// A chunk (the batch each stage sees) ends at this many messages or bytes of input,
/// whichever comes first: memory holds about three times a chunk's bytes (the input, its
/// documents, their routed copies), not the input's size.
const CHUNK: usize = 500;
const CHUNK_BYTES: usize = 4 << 20;

/// Outcome counts of a run, by feed and reason.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Input files read (`process`; 0 for the bundled demo).
    pub files: usize,
    /// Inputs that could not be read (missing, unreadable, a broken directory entry).
    pub input_errors: usize,
    pub messages: usize,
    pub stored: usize,
    pub replaced: usize,
    pub deleted: usize,
    pub duplicates: usize,
    pub patient_updates: usize,
    pub quarantined: usize,
    pub rejected: usize,
    /// Messages with nothing for the DMP (an ADT movement: `hl7.event.skipped`): not
    /// errors, not in `rejected` nor in `reasons`; by feed under the outcome `skipped`.
    pub skipped: usize,
    /// reason code → count (quarantine and rejects).
    pub reasons: BTreeMap<String, usize>,
    /// feed → outcome → count.
    pub by_feed: BTreeMap<String, BTreeMap<String, usize>>,
    pub seconds: f64,
}

impl Summary {
    pub fn count(&mut self, feed: &str, outcome: &str) {
        *self
            .by_feed
            .entry(feed.to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }

    fn reason(&mut self, reason: &str) {
        *self.reasons.entry(reason.to_string()).or_default() += 1;
    }

    /// Counts one durable batch of a stage.
    fn add(&mut self, stage: &str, handled: &Handled) {
        for o in &handled.report.outcomes {
            let feed = o.feed.as_str();
            match (&o.kind, stage) {
                (Kind::Skipped(_), _) => {
                    self.skipped += 1;
                    self.count(feed, "skipped");
                }
                (Kind::DeadLettered(r), _) => {
                    self.rejected += 1;
                    self.reason(r);
                    self.count(feed, "rejected");
                }
                (Kind::Patient, "route") => {
                    self.patient_updates += 1;
                    self.count(feed, "patient");
                }
                // Counted once the store has them.
                (Kind::Document | Kind::Patient | Kind::Routed, _) => {}
                (Kind::Quarantined(_), "route") => {}
                (kind, _) => {
                    match kind {
                        Kind::Stored => self.stored += 1,
                        Kind::Replaced => self.replaced += 1,
                        Kind::Deleted => self.deleted += 1,
                        Kind::Duplicate => self.duplicates += 1,
                        Kind::Quarantined(r) => {
                            self.quarantined += 1;
                            self.reason(r);
                        }
                        _ => self.patient_updates += 1,
                    }
                    self.count(feed, kind.label());
                }
            }
        }
    }
}

/// The chain over one database: feed it messages, then `finish`.
pub struct Chain {
    settings: Arc<Settings>,
    normalize: NormalizeStage,
    route: RouteStage,
    store: StoreStage,
    chunk: Vec<OwnedMessage>,
    chunk_bytes: usize,
    offsets: HashMap<String, i64>,
    summary: Summary,
    started: Instant,
    // Never cancelled: an embedded run ends with its input.
    running: CancellationToken,
}

impl Chain {
    /// `settings` give the limits, the topic names the stages expect and
    /// `accept_test_oids`; nothing here talks to Kafka.
    pub fn new(store: Store, settings: Settings) -> Chain {
        let settings = Arc::new(settings);
        Chain {
            normalize: NormalizeStage::new(settings.clone()),
            route: RouteStage::new(settings.clone(), store.clone()),
            store: StoreStage::new(settings.clone(), store, None),
            settings,
            chunk: Vec::new(),
            chunk_bytes: 0,
            offsets: HashMap::new(),
            summary: Summary::default(),
            started: Instant::now(),
            running: CancellationToken::new(),
        }
    }

    /// Messages taken so far.
    pub fn messages(&self) -> usize {
        self.summary.messages
    }

    /// Takes one message (it goes through the chain with its chunk).
    pub async fn message(&mut self, feed: Feed, raw: &[u8]) -> Result<()> {
        self.summary.messages += 1;
        let topic = self.settings.topics.feed(feed);
        let input = Output {
            topic,
            key: None,
            payload: raw.to_vec(),
            headers: Vec::new(),
        };
        self.chunk_bytes += raw.len();
        self.chunk.extend(in_memory(vec![input], &mut self.offsets));
        if self.chunk.len() >= CHUNK || self.chunk_bytes >= CHUNK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Runs the pending chunk through the three stages.
    async fn flush(&mut self) -> Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.chunk);
        self.chunk_bytes = 0;
        let documents = self.settings.topics.documents.clone();
        let dlq = self.settings.topics.dlq.clone();
        let Chain {
            settings,
            normalize,
            route,
            store,
            offsets,
            summary,
            running,
            ..
        } = self;
        let out = run(normalize, batch, settings, running, summary).await?;
        // Dead letters stay counted, not kept: nothing reads them in this mode.
        let next: Vec<Output> = out.into_iter().filter(|o| o.topic == documents).collect();
        let out = run(route, in_memory(next, offsets), settings, running, summary).await?;
        let next: Vec<Output> = out.into_iter().filter(|o| o.topic != dlq).collect();
        run(store, in_memory(next, offsets), settings, running, summary).await?;
        Ok(())
    }

    /// Writes what is pending and returns the run's counts.
    pub async fn finish(mut self) -> Result<Summary> {
        self.flush().await?;
        self.summary.seconds = self.started.elapsed().as_secs_f64();
        Ok(self.summary)
    }
}

/// One stage over one batch in memory: its outputs, the summary counted.
async fn run<S: Stage>(
    stage: &mut S,
    batch: Vec<OwnedMessage>,
    settings: &Settings,
    running: &CancellationToken,
    summary: &mut Summary,
) -> Result<Vec<Output>> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let name = stage.name();
    let mut source = Source::Memory(VecDeque::from([batch]));
    let mut sink = Sink::Memory(Vec::new());
    drive(
        stage,
        &mut source,
        &mut sink,
        settings,
        running,
        Reporting::Quiet,
        |h| summary.add(name, h),
    )
    .await?;
    Ok(sink.take())
}
