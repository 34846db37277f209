//! The chain normalize → route → store as plain functions, shared by the Kafka stages and
//! the embedded `process`/`demo` mode, so both run the very same logic. Normalize is pure;
//! route needs the patient registry (read from the store); store is the database.

use std::collections::HashMap;

use dmpflow_normalize as normalize;
use dmpflow_route::{self as route, Decision, RouteConfig};
use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{
    Document, DocumentMeta, Feed, Normalized, PatientChange, PatientRecord, PatientUpdate,
    Quarantined, Reject, SourceRef,
};
use dmpflow_store::{ItemOutcome, QuarantineStatus, Store, StoreError, StoreItem};

/// Kafka coordinates of a raw message, copied into every item it yields.
#[derive(Debug, Clone, Default)]
pub struct Coordinates {
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
}

/// Runs normalize on one raw message and stamps the source coordinates.
pub fn normalize_message(
    feed: Feed,
    raw: &[u8],
    at: &Coordinates,
    cfg: &normalize::Config,
) -> Result<Vec<Normalized>, Reject> {
    let mut items = normalize::normalize(feed, raw, cfg)?;
    for item in &mut items {
        let source = source_of_mut(item);
        source.topic = at.topic.clone();
        source.partition = at.partition;
        source.offset = at.offset;
    }
    Ok(items)
}

pub fn source_of(item: &Normalized) -> &SourceRef {
    match item {
        Normalized::Document(d) => &d.meta.source,
        Normalized::Patient(p) => &p.source,
    }
}

fn source_of_mut(item: &mut Normalized) -> &mut SourceRef {
    match item {
        Normalized::Document(d) => &mut d.meta.source,
        Normalized::Patient(p) => &mut p.source,
    }
}

/// The key that keeps one patient's items in order on every topic after normalize.
pub fn patient_key(item: &Normalized) -> &str {
    match item {
        Normalized::Document(d) => &d.meta.patient.ins,
        Normalized::Patient(p) => &p.patient.ins,
    }
}

/// What route decided for one item.
#[derive(Debug)]
pub enum Routed {
    /// A document for a known, qualified, consenting patient; `meta.patient.ins` now holds
    /// the surviving INS after merges.
    Document(Normalized),
    /// An identity update, already applied to the registry (durable).
    PatientApplied,
    /// An identity-vigilance case.
    Quarantine(Quarantined),
}

/// Routes one item. Patient updates are applied to the registry here, so that the
/// documents that follow them on the same partition see them.
pub async fn route_item(
    store: &Store,
    item: Normalized,
    cfg: &RouteConfig,
    cache: &RegistryCache,
) -> Result<Routed, StoreError> {
    match item {
        Normalized::Patient(update) => {
            // A merge or identifier change joins two registry entries: route checks that
            // neither holds another person (identity collision) before anything is written.
            let (target, retired) = match route::retired_ins(&update) {
                None => (None, None),
                Some((old_ins, _)) => (
                    cache.get_patient(store, &update.patient.ins).await?,
                    cache.get_patient(store, old_ins).await?,
                ),
            };
            let checked =
                route::check_patient_update(&update, cfg, target.as_ref(), retired.as_ref());
            let refused = match checked {
                Err(refused) => refused,
                Ok(()) => match apply_update(store, &update).await {
                    Ok(()) => {
                        cache.forget(&update);
                        return Ok(Routed::PatientApplied);
                    }
                    // The store's own guard saw what route did not (the registry changed
                    // between the lookup and the write): nothing was written.
                    Err(StoreError::IdentityCollision(detail)) => {
                        cache.forget(&update);
                        (Reason::IdentityCollision, detail.to_string())
                    }
                    Err(e) => return Err(e),
                },
            };
            Ok(refused_update(update, refused))
        }
        Normalized::Document(doc) => {
            let decision = document_decision(store, &doc.meta, cfg, cache).await?;
            Ok(routed_document(doc, decision))
        }
    }
}

/// Whether route may hold `update` back and apply it with the identity updates around it,
/// in one transaction ([`route_upserts`]): an upsert changes its own record only, and
/// route's check of it reads nothing of the registry. A merge or an identifier change joins
/// two entries and is checked against what the registry holds then: one at a time
/// ([`route_item`]).
pub fn is_upsert(update: &PatientUpdate) -> bool {
    route::retired_ins(update).is_none()
}

/// Routes a run of upserts ([`is_upsert`]) in order, as [`route_item`] would one by one,
/// with the accepted ones applied in ONE store transaction (a transaction each cost as much
/// CPU as fifteen documents: bench/ANALYSIS.md "Session 20"). One outcome per update, in
/// order. The caller applies them before anything reads what they change: a document of
/// the same batch is decided only after the run before it is applied.
pub async fn route_upserts(
    store: &Store,
    updates: &[PatientUpdate],
    cfg: &RouteConfig,
    cache: &RegistryCache,
) -> Result<Vec<Routed>, StoreError> {
    let mut routed = Vec::with_capacity(updates.len());
    let mut accepted = Vec::new();
    for update in updates {
        debug_assert!(is_upsert(update), "a merge is routed alone");
        match route::check_patient_update(update, cfg, None, None) {
            Ok(()) => {
                accepted.push(StoreItem::Patient(update.clone()));
                routed.push(Routed::PatientApplied);
            }
            Err(refused) => routed.push(refused_update(Box::new(update.clone()), refused)),
        }
    }
    match store.write_batch(&accepted, &[]).await {
        Ok(_) => {}
        // The store's collision guard runs for merges only; were it ever to refuse one of
        // these, each goes alone through route_item, which tells which one and quarantines it.
        Err(StoreError::IdentityCollision(_)) => {
            routed.clear();
            for update in updates {
                routed.push(
                    route_item(
                        store,
                        Normalized::Patient(Box::new(update.clone())),
                        cfg,
                        cache,
                    )
                    .await?,
                );
            }
        }
        Err(e) => return Err(e),
    }
    for update in updates {
        cache.forget(update);
    }
    Ok(routed)
}

/// The quarantine case of an identity update route refuses.
fn refused_update(update: Box<PatientUpdate>, (reason, detail): (Reason, String)) -> Routed {
    Routed::Quarantine(Quarantined {
        reason: reason.as_str().to_string(),
        detail,
        item: Normalized::Patient(update),
    })
}

/// Route's decision for one document, from its registry chain (read through `cache`). Takes
/// the metadata by reference, so a caller that retries it on a database error keeps the
/// document without copying it (route's stage: a lab report's head is a few hundred
/// strings).
pub async fn document_decision(
    store: &Store,
    meta: &DocumentMeta,
    cfg: &RouteConfig,
    cache: &RegistryCache,
) -> Result<Decision, StoreError> {
    let chain = registry_chain(store, &meta.patient.ins, cache).await?;
    Ok(route::route_document(meta, &chain, cfg))
}

/// The document as `decision` says: its patient's current INS when routed, a quarantine
/// case otherwise.
pub fn routed_document(mut doc: Box<Document>, decision: Decision) -> Routed {
    match decision {
        Decision::Route { ins, ins_oid } => {
            doc.meta.patient.ins = ins;
            doc.meta.patient.ins_oid = ins_oid;
            Routed::Document(Normalized::Document(doc))
        }
        Decision::Quarantine { reason, detail } => Routed::Quarantine(Quarantined {
            reason: reason.as_str().to_string(),
            detail,
            item: Normalized::Document(doc),
        }),
    }
}

async fn apply_update(store: &Store, update: &PatientUpdate) -> Result<(), StoreError> {
    store.apply_patient_update(update).await.map(|_| ())
}

/// The registry record of `ins` followed by the records its merges point to (the chain
/// contract of `route::next_lookup`: route itself tells a cycle, a too-deep chain or a
/// missing target from the last record).
pub async fn registry_chain(
    store: &Store,
    ins: &str,
    cache: &RegistryCache,
) -> Result<Vec<PatientRecord>, StoreError> {
    let mut chain: Vec<PatientRecord> = Vec::new();
    let Some(first) = cache.get_patient(store, ins).await? else {
        return Ok(chain);
    };
    chain.push(first);
    while chain.len() < route::MAX_CHAIN_LEN {
        let last = chain.last().expect("chain is not empty");
        let Some(next) = route::next_lookup(last).map(str::to_string) else {
            break;
        };
        if chain.iter().any(|r| r.ins == next) {
            break;
        }
        match cache.get_patient(store, &next).await? {
            Some(rec) => chain.push(rec),
            None => break,
        }
    }
    Ok(chain)
}

/// Registry records already read while routing one batch, so a batch of documents costs
/// one registry query (`prefetch`) instead of one per document. Lives for one batch only,
/// and forgets what every identity update route applies may have changed, so a document
/// never sees a record older than an update that came before it on its partition.
#[derive(Default)]
pub struct RegistryCache {
    // A std Mutex, never held across an await: the stage future must be Send.
    known: std::sync::Mutex<HashMap<String, Option<PatientRecord>>>,
}

impl RegistryCache {
    /// Reads the records of `ins` in one query; INS without a record are remembered as
    /// unknown.
    pub async fn prefetch(&self, store: &Store, ins: &[&str]) -> Result<(), StoreError> {
        let found = store.get_patients(ins).await?;
        let mut known = self.known.lock().expect("cache lock");
        for i in ins {
            known.insert((*i).to_string(), found.get(*i).cloned());
        }
        Ok(())
    }

    async fn get_patient(
        &self,
        store: &Store,
        ins: &str,
    ) -> Result<Option<PatientRecord>, StoreError> {
        if let Some(hit) = self.known.lock().expect("cache lock").get(ins) {
            return Ok(hit.clone());
        }
        let rec = store.get_patient(ins).await?;
        self.known
            .lock()
            .expect("cache lock")
            .insert(ins.to_string(), rec.clone());
        Ok(rec)
    }

    /// Drops what `update` may have changed: an upsert changes only its own record; a merge
    /// or an identifier change also re-points the records merged into the old INS, which
    /// the cache cannot list, so everything goes.
    fn forget(&self, update: &PatientUpdate) {
        let mut known = self.known.lock().expect("cache lock");
        match update.change {
            PatientChange::Upsert => {
                known.remove(&update.patient.ins);
            }
            _ => known.clear(),
        }
    }
}

/// What re-routing one quarantine case gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Release {
    /// Re-routed and filed by the store (`stored`, `replaced`, `deleted`); the case is closed.
    Filed(&'static str),
    /// A patient update, applied now; the case is closed.
    PatientApplied,
    /// Route refuses it still, maybe for another reason now (recorded on the case); open.
    StillFails { reason: String, detail: String },
    /// Route passed it but the store did not file it (e.g. `duplicate`); left open.
    NotFiled(&'static str),
    /// No open case with that id (unknown, or released meanwhile).
    NotOpen,
}

/// Re-routes quarantine case `id` with today's registry and, if it passes, stores it; the
/// case is closed only when the store really filed the document. Shared by
/// `dmpflow quarantine release` and the route stage's sweeper of `ins.unknown` cases.
///
/// The document is filed with the CDA the case holds: packed bytes (normalize's) go to the
/// documents table as they are, never inflated nor packed again; only an XML body (a case
/// held by an earlier build, or from a producer outside the pipeline) is packed, once, by
/// the store.
pub async fn release_case(
    store: &Store,
    cfg: &RouteConfig,
    id: i64,
) -> Result<Release, StoreError> {
    let Some(case) = store.quarantine_get(id).await? else {
        return Ok(Release::NotOpen);
    };
    if case.status != QuarantineStatus::Open {
        return Ok(Release::NotOpen);
    }
    let registry = RegistryCache::default();
    match route_item(store, case.item, cfg, &registry).await? {
        Routed::Document(Normalized::Document(doc)) => {
            let outcome = store.write_batch(&[StoreItem::Document(*doc)], &[]).await?;
            match outcome.first() {
                Some(
                    o @ (ItemOutcome::Stored
                    | ItemOutcome::Replaced { .. }
                    | ItemOutcome::Deleted { .. }),
                ) => {
                    store.quarantine_mark_released(id).await?;
                    Ok(Release::Filed(o.as_str()))
                }
                other => Ok(Release::NotFiled(
                    other.map(|o| o.as_str()).unwrap_or("nothing"),
                )),
            }
        }
        Routed::PatientApplied => {
            store.quarantine_mark_released(id).await?;
            Ok(Release::PatientApplied)
        }
        Routed::Quarantine(again) => {
            if again.reason != case.reason || again.detail != case.detail {
                store
                    .quarantine_set_reason(id, &again.reason, &again.detail)
                    .await?;
            }
            Ok(Release::StillFails {
                reason: again.reason,
                detail: again.detail,
            })
        }
        Routed::Document(Normalized::Patient(_)) => unreachable!("route yields documents only"),
    }
}

#[cfg(test)]
mod tests;
