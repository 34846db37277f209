//! What the lifecycle plan must be told about the database: the keys a batch may collide
//! with ([`Keys`], which the lookup asks for) and the answer ([`Known`], plain rows). Kept
//! next to the plan because the plan is only right if `Known` holds every row these keys
//! name.

use super::Set;

use dmpflow_schemas::Normalized;

use crate::model::{DocStatus, StoreItem};

/// Quarantine deduplication key of an item.
pub(crate) fn item_key(item: &Normalized) -> String {
    match item {
        Normalized::Document(d) => format!("doc:{}", d.meta.unique_id),
        // With its content hash (when it has one): two updates under a reused control id
        // are two cases, not one.
        Normalized::Patient(p) if !p.source.content_hash.is_empty() => format!(
            "msg:{}/{}/{}/{}",
            p.source.sender, p.source.control_id, p.source.position, p.source.content_hash
        ),
        Normalized::Patient(p) => format!(
            "msg:{}/{}/{}",
            p.source.sender, p.source.control_id, p.source.position
        ),
    }
}

/// What a batch may collide with, for the lookup to ask the database about.
#[derive(Debug, Default)]
pub(crate) struct Keys<'a> {
    /// The documents' uniqueIds and the targets they name.
    pub unique_ids: Set<&'a str>,
    pub set_ids: Set<&'a str>,
    /// Control ids (MSH-10) of the items' messages, none empty.
    pub control_ids: Set<&'a str>,
    /// The quarantine keys ([`item_key`]) the batch may create.
    pub quarantine_keys: Set<String>,
}

impl<'a> Keys<'a> {
    pub fn of(items: &'a [StoreItem]) -> Keys<'a> {
        let mut k = Keys::default();
        for item in items {
            match item {
                StoreItem::Document(d) => {
                    let m = &d.meta;
                    k.unique_ids.insert(&m.unique_id);
                    if let Some(t) = &m.target_unique_id {
                        k.unique_ids.insert(t);
                    }
                    k.set_ids.insert(&m.set_id);
                    k.control_ids.insert(&m.source.control_id);
                    // Any lifecycle may end in a store-made quarantine entry.
                    k.quarantine_keys.insert(format!("doc:{}", m.unique_id));
                }
                StoreItem::Quarantine(q) => {
                    k.quarantine_keys.insert(item_key(&q.item));
                    match &q.item {
                        Normalized::Document(d) => {
                            k.unique_ids.insert(&d.meta.unique_id);
                            k.control_ids.insert(&d.meta.source.control_id);
                        }
                        Normalized::Patient(p) => {
                            k.control_ids.insert(&p.source.control_id);
                        }
                    }
                }
                StoreItem::Patient(u) => {
                    k.control_ids.insert(&u.source.control_id);
                }
            }
        }
        k.control_ids.remove("");
        k
    }
}

/// A stored document version, as the lookup found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KnownDoc {
    pub unique_id: String,
    pub set_id: String,
    pub seq: i64,
    pub status: DocStatus,
    /// SHA-256 of the stored CDA: only the same CDA again is a duplicate.
    pub cda_sha256: String,
}

/// A message the store applied before (a stored document, a deletion, a patient update),
/// by its key. `content_hash` is `None` for rows of builds before content hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppliedMsg {
    pub sender: String,
    pub control_id: String,
    pub position: i64,
    pub content_hash: Option<String>,
}

/// What the database holds that the batch may collide with: the answer to [`Keys`].
#[derive(Debug, Default, Clone)]
pub(crate) struct Known {
    /// Versions having one of the uniqueIds or setIds asked for, in any order; a version
    /// listed twice (found by its id and by its set) counts once.
    pub docs: Vec<KnownDoc>,
    pub applied: Vec<AppliedMsg>,
    /// Keys of the quarantine entries still open.
    pub open_quarantine: Set<String>,
}
