//! The store stage: routed documents and quarantine cases are written to the database in
//! one transaction per batch, together with the batch's consumer offsets when the stage
//! runs as the live group (exactly-once into the DMP: on start and after a rebalance it
//! reads its offsets from the database and skips what is already stored there).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{Cda, Normalized, headers as h, wire};
use dmpflow_store::{OffsetCommit, Store, StoreItem};
use rdkafka::message::{Message, OwnedMessage};

use super::retry::{with_db_retry, with_db_retry_paused};
use super::{BatchCtx, Handled, Stage, at, dead_letter};
use crate::chain;
use crate::config::Settings;
use crate::outcome::{ControlIdReuse, Kind};
use crate::runtime;

pub struct StoreStage {
    settings: Arc<Settings>,
    store: Store,
    /// The live group whose offsets the database keeps; `None` for a replay or the
    /// embedded chain, which commit no offsets.
    group: Option<String>,
    /// Next offset per partition as recorded in the database: the source of truth.
    db_offsets: HashMap<(String, i32), i64>,
    /// The batch between `handle` and `make_durable`.
    pending: Decoded,
}

/// A batch decoded: the items to write, with their feeds, origins and ingest times.
#[derive(Default)]
struct Decoded {
    items: Vec<StoreItem>,
    feeds: Vec<String>,
    origins: Vec<usize>,
    ingest_times_ms: Vec<i64>,
}

impl StoreStage {
    pub fn new(settings: Arc<Settings>, store: Store, group: Option<String>) -> StoreStage {
        StoreStage {
            settings,
            store,
            group,
            db_offsets: HashMap::new(),
            pending: Decoded::default(),
        }
    }

    /// Loads, for the partitions of this batch not seen since the last rebalance, the next
    /// offsets the database holds for the live group.
    async fn load_offsets(&mut self, batch: &[OwnedMessage], ctx: &BatchCtx<'_>) -> Result<()> {
        let Some(group) = &self.group else {
            return Ok(());
        };
        if ctx.rebalanced {
            self.db_offsets.clear();
        }
        let topics = [
            self.settings.topics.routed.clone(),
            self.settings.topics.quarantine.clone(),
        ];
        for topic in &topics {
            let needs_load = batch.iter().any(|m| {
                m.topic() == topic
                    && !self
                        .db_offsets
                        .contains_key(&(topic.clone(), m.partition()))
            });
            if needs_load {
                let store = &self.store;
                let rows = with_db_retry("store", ctx.shutdown, || {
                    store.committed_offsets(group, topic)
                })
                .await?;
                for (p, next) in rows {
                    self.db_offsets.insert((topic.clone(), p), next);
                }
                for m in batch.iter().filter(|m| m.topic() == topic) {
                    self.db_offsets
                        .entry((topic.clone(), m.partition()))
                        .or_insert(0);
                }
            }
        }
        Ok(())
    }
}

/// One message of the store's input as the item to write. A case's packed CDA stays
/// packed (the quarantine keeps those bytes, and a release files them), but is inflated
/// and checked against its sha256 here, one message at a time: a corrupt one is
/// dead-lettered alone, not held to be filed corrupt later.
fn decode(settings: &Settings, m: &OwnedMessage) -> Result<StoreItem, String> {
    let payload = m.payload().unwrap_or_default();
    if m.topic() == settings.topics.quarantine {
        wire::decode_quarantined(payload)
            .map_err(|e| e.to_string())
            .and_then(|q| {
                if let Normalized::Document(d) = &q.item
                    && let Cda::Packed(p) = &d.cda
                {
                    p.unpack()
                        .map_err(|why| format!("quarantined CDA: {why}"))?;
                }
                Ok(StoreItem::Quarantine(q))
            })
    } else {
        wire::decode(payload)
            .map_err(|e| e.to_string())
            .and_then(|n| match n {
                Normalized::Document(d) => Ok(StoreItem::Document(*d)),
                Normalized::Patient(_) => Err("patient update on the routed topic".into()),
            })
    }
}

impl Stage for StoreStage {
    fn name(&self) -> &'static str {
        "store"
    }

    async fn handle(&mut self, batch: &[OwnedMessage], ctx: &BatchCtx<'_>) -> Result<Handled> {
        const STAGE: &str = "store";
        self.load_offsets(batch, ctx).await?;
        let mut out = Handled::default();
        let mut decoded = Decoded {
            items: Vec::with_capacity(batch.len()),
            feeds: Vec::with_capacity(batch.len()),
            origins: Vec::with_capacity(batch.len()),
            ingest_times_ms: Vec::with_capacity(batch.len()),
        };
        // A batch holds runs of one partition's messages: its stored offset is looked up
        // once per run, not once per message (the map's key is an owned topic name).
        let mut partition: Option<(&str, i32, i64)> = None;
        for (origin, m) in batch.iter().enumerate() {
            let stored_next = match partition {
                Some((t, p, next)) if t == m.topic() && p == m.partition() => next,
                _ => {
                    let next = self
                        .db_offsets
                        .get(&(m.topic().to_string(), m.partition()))
                        .copied()
                        .unwrap_or(0);
                    partition = Some((m.topic(), m.partition(), next));
                    next
                }
            };
            if self.group.is_some() && m.offset() < stored_next {
                // Already in the database (a crash between the DB commit and the Kafka
                // commit): skip, do not store twice.
                out.report.already_stored += 1;
                continue;
            }
            let feed = runtime::header(m, h::FEED).unwrap_or_else(|| "unknown".into());
            match decode(&self.settings, m) {
                Ok(item) => {
                    decoded.items.push(item);
                    decoded.feeds.push(feed);
                    decoded.origins.push(origin);
                    if let Some(t) = runtime::ingest_time_ms(m) {
                        decoded.ingest_times_ms.push(t);
                    }
                }
                // Dead letters are produced first: the DB commit records the offsets past them.
                Err(e) => {
                    out.produced.push(
                        origin,
                        dead_letter(&self.settings, m, STAGE, Reason::PayloadInvalid, &e),
                    );
                    out.report.push(
                        origin,
                        feed,
                        Kind::DeadLettered(Reason::PayloadInvalid.as_str().into()),
                        Some(at(m)),
                    );
                }
            }
        }
        self.pending = decoded;
        Ok(out)
    }

    async fn make_durable(
        &mut self,
        offsets: &BTreeMap<(String, i32), i64>,
        handled: &mut Handled,
        ctx: &BatchCtx<'_>,
    ) -> Result<()> {
        let decoded = std::mem::take(&mut self.pending);
        let commits: Vec<OffsetCommit> = match &self.group {
            Some(group) => offsets
                .iter()
                .map(|((topic, partition), next)| OffsetCommit {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    next_offset: *next,
                })
                .collect(),
            None => Vec::new(),
        };
        let started = Instant::now();
        let store = &self.store;
        // A permanent database error (a value the database refuses, a schema that does not
        // match): retrying the same batch cannot help, and skipping it would lose
        // documents. The process stops, loudly.
        let report = with_db_retry_paused("store", ctx.shutdown, ctx.keepalive, || {
            store.write_batch_report(&decoded.items, &commits)
        })
        .await
        .map_err(|e| e.context("writing a batch to the database"))?;
        let r = &mut handled.report;
        r.store_commit = Some((started.elapsed().as_secs_f64(), decoded.items.len()));
        for ((o, feed), origin) in report
            .outcomes
            .iter()
            .zip(&decoded.feeds)
            .zip(&decoded.origins)
        {
            r.push(*origin, feed.clone(), Kind::of_store(o), None);
        }
        r.outcomes.sort_by_key(|o| o.origin);
        for &i in &report.control_id_reused {
            let (Some(item), Some(feed)) = (decoded.items.get(i), decoded.feeds.get(i)) else {
                continue;
            };
            let source = match item {
                StoreItem::Document(d) => &d.meta.source,
                StoreItem::Patient(u) => &u.source,
                StoreItem::Quarantine(q) => chain::source_of(&q.item),
            };
            r.control_id_reused.push(ControlIdReuse {
                feed: feed.clone(),
                sender: source.sender.clone(),
                control_id: source.control_id.clone(),
                position: source.position,
            });
        }
        r.ingest_times_ms = decoded.ingest_times_ms;
        if self.group.is_some() {
            for (key, next) in offsets {
                self.db_offsets.insert(key.clone(), *next);
            }
        }
        Ok(())
    }
}
