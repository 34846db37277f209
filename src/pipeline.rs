//! The chain normalize → route → store as plain functions, shared by the Kafka stages and
//! the embedded `process`/`demo` mode, so both run the very same logic. Normalize is pure;
//! route needs the patient registry (read from the store); store is the database.

use dmpflow_normalize as normalize;
use dmpflow_route::{self as route, Decision, RouteConfig};
use dmpflow_schemas::{
    Feed, Normalized, PatientRecord, PatientUpdate, Quarantined, Reject, SourceRef,
};
use dmpflow_store::{Store, StoreError};

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
) -> Result<Routed, StoreError> {
    match item {
        Normalized::Patient(update) => match route::check_patient_update(&update, cfg) {
            Err((reason, detail)) => Ok(Routed::Quarantine(Quarantined {
                reason: reason.as_str().to_string(),
                detail,
                item: Normalized::Patient(update),
            })),
            Ok(()) => {
                apply_update(store, &update).await?;
                Ok(Routed::PatientApplied)
            }
        },
        Normalized::Document(mut doc) => {
            let chain = registry_chain(store, &doc.meta.patient.ins).await?;
            match route::route_document(&doc.meta, &chain, cfg) {
                Decision::Route { ins, ins_oid } => {
                    doc.meta.patient.ins = ins;
                    doc.meta.patient.ins_oid = ins_oid;
                    Ok(Routed::Document(Normalized::Document(doc)))
                }
                Decision::Quarantine { reason, detail } => Ok(Routed::Quarantine(Quarantined {
                    reason: reason.as_str().to_string(),
                    detail,
                    item: Normalized::Document(doc),
                })),
            }
        }
    }
}

async fn apply_update(store: &Store, update: &PatientUpdate) -> Result<(), StoreError> {
    store.apply_patient_update(update).await.map(|_| ())
}

/// The registry record of `ins` followed by the records its merges point to (the chain
/// contract of `route::next_lookup`: route itself tells a cycle, a too-deep chain or a
/// missing target from the last record).
pub async fn registry_chain(store: &Store, ins: &str) -> Result<Vec<PatientRecord>, StoreError> {
    let mut chain: Vec<PatientRecord> = Vec::new();
    let Some(first) = store.get_patient(ins).await? else {
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
        match store.get_patient(&next).await? {
            Some(rec) => chain.push(rec),
            None => break,
        }
    }
    Ok(chain)
}
