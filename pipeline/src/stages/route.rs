//! The route stage: each document finds its patient in the registry (the pure checks of
//! `dmpflow_route`, through `chain::route_item`) and goes to `dmp.routed`, or to
//! `dmp.quarantine` with an identity-vigilance reason; identity updates are applied to the
//! registry (idempotently) as they come. Its periodic task is the quarantine sweeper.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use dmpflow_route::{Decision, RouteConfig};
use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::wire::{self, WireError};
use dmpflow_schemas::{Cda, DocumentMeta, Normalized, PatientUpdate, headers as h};
use dmpflow_store::Store;
use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;

use super::retry::with_db_retry_paused;
use super::{BatchCtx, Handled, Stage, at, carried_headers, dead_letter, route_config};
use crate::chain::{self, Routed};
use crate::config::Settings;
use crate::outcome::Kind;
use crate::runtime::{self, Output};

/// The stage's name in logs, metrics and the headers of what it quarantines.
const STAGE: &str = "route";

/// One input message as route first reads it.
pub(super) enum Input<'a> {
    /// A document's metadata, peeked from a payload in the split layout (or handed over by
    /// the fused stage, which encoded that payload from it), and the payload itself when the
    /// caller hands it over (the fused stage: normalize's bytes, not yet anywhere else), so a
    /// document routed as it came leaves without a copy; `None`: the message's own.
    Peeked(Box<DocumentMeta>, Option<Vec<u8>>),
    /// Anything else, read whole (or why it cannot be).
    Read(Result<(Normalized, &'a [u8]), WireError>),
}

impl<'a> Input<'a> {
    /// How route reads `m` on its own: the head peeked when the payload allows, else whole.
    pub(super) fn of(m: &'a OwnedMessage) -> Input<'a> {
        let payload = m.payload().unwrap_or_default();
        match wire::peek_meta(payload) {
            Some(meta) => Input::Peeked(Box::new(meta), None),
            None => Input::Read(wire::split(payload)),
        }
    }
}

pub struct RouteStage {
    settings: Arc<Settings>,
    store: Store,
    cfg: RouteConfig,
}

impl RouteStage {
    pub fn new(settings: Arc<Settings>, store: Store) -> RouteStage {
        let cfg = route_config(&settings);
        RouteStage {
            settings,
            store,
            cfg,
        }
    }

    /// The stage's periodic task: see [`super::sweeper`].
    pub fn sweeper(
        &self,
        every: Duration,
        shutdown: CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        super::sweeper::retry_waiting_quarantine(self.store.clone(), self.cfg, every, shutdown)
    }
}

impl Stage for RouteStage {
    fn name(&self) -> &'static str {
        STAGE
    }

    async fn handle(&mut self, batch: &[OwnedMessage], ctx: &BatchCtx<'_>) -> Result<Handled> {
        // Route reads the heads only; the CDA bytes go to the output untouched. A document in
        // the split layout is peeked (its metadata, not its entries): when it is routed to the
        // INS it names, which is nearly always, its payload leaves as it came. Anything else
        // (an identity update, plain JSON, a document a merge moves to another INS, a
        // quarantine case, a payload the peek refuses) is read whole, as before.
        let inputs = batch.iter().map(Input::of).collect();
        self.handle_inputs(batch, inputs, ctx).await
    }
}

impl RouteStage {
    /// Routes `batch`, each message as `inputs` (same order) already read it.
    pub(super) async fn handle_inputs(
        &mut self,
        batch: &[OwnedMessage],
        inputs: Vec<Input<'_>>,
        ctx: &BatchCtx<'_>,
    ) -> Result<Handled> {
        let (settings, store, cfg) = (&self.settings, &self.store, &self.cfg);
        let mut out = Handled::default();
        // The registry records of the whole batch in one query, not one per document.
        let registry = chain::RegistryCache::default();
        let mut patients: Vec<&str> = inputs
            .iter()
            .filter_map(|i| match i {
                Input::Peeked(meta, _) => Some(meta.patient.ins.as_str()),
                Input::Read(Ok((Normalized::Document(d), _))) => Some(d.meta.patient.ins.as_str()),
                Input::Read(_) => None,
            })
            .collect();
        patients.sort_unstable();
        patients.dedup();
        if !patients.is_empty() {
            with_db_retry_paused(STAGE, ctx.shutdown, ctx.keepalive, || {
                registry.prefetch(store, &patients)
            })
            .await?;
        }
        // Identity upserts held back to be applied as one transaction per run of them (one
        // each cost as much as fifteen documents): the run is applied before the next input
        // that is not one, so a document is always decided on the registry as the updates
        // before it in the batch left it.
        let routing = Routing {
            settings,
            store,
            cfg,
            cache: &registry,
        };
        let mut upserts = Upserts::default();
        for (origin, (m, input)) in batch.iter().zip(inputs).enumerate() {
            let upsert = matches!(&input, Input::Read(Ok((Normalized::Patient(u), _))) if chain::is_upsert(u));
            if !upsert {
                upserts.apply(routing, batch, &mut out, ctx).await?;
            }
            let feed = runtime::header(m, h::FEED).unwrap_or_else(|| "unknown".into());
            let mut payload = m.payload().unwrap_or_default();
            // A payload handed over with the input: it outlives the split that may borrow it.
            let mut handed: Option<Vec<u8>> = None;
            let (split, decided) = match input {
                Input::Peeked(meta, owned) => {
                    let decision = with_db_retry_paused(STAGE, ctx.shutdown, ctx.keepalive, || {
                        chain::document_decision(store, &meta, cfg, &registry)
                    })
                    .await?;
                    if let Decision::Route { ins, ins_oid } = &decision
                        && *ins == meta.patient.ins
                        && *ins_oid == meta.patient.ins_oid
                    {
                        out.produced.push(
                            origin,
                            Output {
                                topic: settings.topics.routed.clone(),
                                key: Some(meta.patient.ins.clone()),
                                payload: owned.unwrap_or_else(|| payload.to_vec()),
                                headers: carried_headers(m, &feed),
                            },
                        );
                        out.report.push(origin, feed, Kind::Routed, Some(at(m)));
                        continue;
                    }
                    handed = owned;
                    if let Some(bytes) = &handed {
                        payload = bytes;
                    }
                    (wire::split(payload), Some(decision))
                }
                Input::Read(split) => (split, None),
            };
            let (item, cda) = match split {
                Ok(split) => split,
                Err(e) => {
                    let mut letter =
                        dead_letter(settings, m, STAGE, Reason::PayloadInvalid, &e.to_string());
                    if handed.is_some() {
                        // The message in memory was handed over without its payload.
                        letter.payload = payload.to_vec();
                    }
                    out.produced.push(origin, letter);
                    out.report.push(
                        origin,
                        feed,
                        Kind::DeadLettered(Reason::PayloadInvalid.as_str().into()),
                        Some(at(m)),
                    );
                    continue;
                }
            };
            let routed = match item {
                // Decided on the borrowed head (or already, when peeked), so a retry needs
                // no copy of the document.
                Normalized::Document(doc) => {
                    let decision = match decided {
                        Some(decision) => decision,
                        None => {
                            with_db_retry_paused(STAGE, ctx.shutdown, ctx.keepalive, || {
                                chain::document_decision(store, &doc.meta, cfg, &registry)
                            })
                            .await?
                        }
                    };
                    chain::routed_document(doc, decision)
                }
                Normalized::Patient(update) if upsert => {
                    // An update carries no CDA: what follows its head (nothing, as normalize
                    // writes it) is kept as it came for a quarantine case.
                    upserts.held.push((origin, feed, cda.to_vec()));
                    upserts.updates.push(*update);
                    continue;
                }
                update @ Normalized::Patient(_) => {
                    with_db_retry_paused(STAGE, ctx.shutdown, ctx.keepalive, || {
                        chain::route_item(store, update.clone(), cfg, &registry)
                    })
                    .await?
                }
            };
            emit(settings, &mut out, origin, m, feed, routed, cda);
        }
        upserts.apply(routing, batch, &mut out, ctx).await?;
        Ok(out)
    }
}

/// Puts what route decided for the message at `origin` into the batch's outputs and report.
fn emit(
    settings: &Settings,
    out: &mut Handled,
    origin: usize,
    m: &OwnedMessage,
    feed: String,
    routed: Routed,
    cda: &[u8],
) {
    match routed {
        Routed::Document(doc) => {
            out.produced.push(
                origin,
                Output {
                    topic: settings.topics.routed.clone(),
                    key: Some(chain::patient_key(&doc).to_string()),
                    payload: wire::join(&doc, cda),
                    headers: carried_headers(m, &feed),
                },
            );
            out.report.push(origin, feed, Kind::Routed, Some(at(m)));
        }
        Routed::PatientApplied => out.report.push(origin, feed, Kind::Patient, Some(at(m))),
        Routed::Quarantine(mut q) => {
            // A packed CDA stays packed (its bytes after the case's head); raw XML from
            // a producer outside the pipeline goes inline, as `split` checked it is UTF-8.
            if let Normalized::Document(d) = &mut q.item
                && let Cda::Xml(xml) = &mut d.cda
                && xml.is_empty()
            {
                *xml = String::from_utf8_lossy(cda).into_owned();
            }
            let mut headers = carried_headers(m, &feed);
            headers.push((h::REASON, q.reason.clone()));
            headers.push((h::STAGE, STAGE.into()));
            let case_feed = chain::source_of(&q.item)
                .feed
                .map(|f| f.as_str().to_string())
                .unwrap_or_else(|| "unknown".into());
            out.report.push(
                origin,
                case_feed,
                Kind::Quarantined(q.reason.clone()),
                Some(at(m)),
            );
            out.produced.push(
                origin,
                Output {
                    topic: settings.topics.quarantine.clone(),
                    key: Some(chain::patient_key(&q.item).to_string()),
                    payload: wire::encode_quarantined(&q, cda),
                    headers,
                },
            );
        }
    }
}

/// What route reads the registry and applies updates with, for one batch.
#[derive(Clone, Copy)]
struct Routing<'s> {
    settings: &'s Settings,
    store: &'s Store,
    cfg: &'s RouteConfig,
    cache: &'s chain::RegistryCache,
}

/// Identity upserts of the batch held back (position, feed, bytes after the head, update)
/// until the run they belong to ends.
#[derive(Default)]
struct Upserts {
    /// (position, feed, bytes after the head) of each held update, in order.
    held: Vec<(usize, String, Vec<u8>)>,
    /// The updates themselves, beside `held`: passed to the store as they are, not copied.
    updates: Vec<PatientUpdate>,
}

impl Upserts {
    /// Applies the held run in one transaction (retried as any database step) and emits
    /// each update's outcome. Called before the input that ends the run is emitted, so
    /// outputs and outcomes stay in input order.
    async fn apply(
        &mut self,
        routing: Routing<'_>,
        batch: &[OwnedMessage],
        out: &mut Handled,
        ctx: &BatchCtx<'_>,
    ) -> Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let updates = &self.updates;
        let routed = with_db_retry_paused(STAGE, ctx.shutdown, ctx.keepalive, || {
            chain::route_upserts(routing.store, updates, routing.cfg, routing.cache)
        })
        .await?;
        self.updates.clear();
        for ((origin, feed, cda), routed) in self.held.drain(..).zip(routed) {
            emit(
                routing.settings,
                out,
                origin,
                &batch[origin],
                feed,
                routed,
                &cda,
            );
        }
        Ok(())
    }
}
