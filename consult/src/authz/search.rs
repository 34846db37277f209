//! The search helper: the documents of a result set the grant shows, and nothing about the
//! others. The count a search answers (FHIR `Bundle.total`) is the length of the filtered
//! list and cannot be taken from anywhere else, so a hidden document can never show up as
//! a number.

use std::collections::HashMap;

use super::Grant;
use super::doc::{DocStatus, DocView, Statuses, visible_version};

/// The visible documents of a search, in their original order. There is deliberately no
/// way to get the number of documents before filtering from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visible<'a> {
    docs: Vec<&'a DocView>,
}

impl<'a> Visible<'a> {
    /// The number of visible documents: what `Bundle.total` must say.
    pub fn total(&self) -> usize {
        self.docs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
    pub fn docs(&self) -> &[&'a DocView] {
        &self.docs
    }
    pub fn ids(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.docs.iter().map(|d| d.id.as_str())
    }
    /// One page of the visible documents: paging after filtering, so a page is never short
    /// because of hidden documents (a short page would tell they exist).
    pub fn page(&self, offset: usize, count: usize) -> &[&'a DocView] {
        let start = offset.min(self.docs.len());
        let end = start.saturating_add(count).min(self.docs.len());
        &self.docs[start..end]
    }
}

/// The documents of `docs` the grant shows, for a search that asked for `asked` statuses.
///
/// The head of each set (its current version, or its deleted one) is looked up among
/// `docs` and `heads` together; the caller passes in `heads` those it fetched besides the
/// result set (none needed for a current-only search). A set with no head, or with more
/// than one, shows none of its older versions.
pub fn filter<'a>(
    grant: &Grant,
    docs: &'a [DocView],
    asked: Statuses,
    heads: &'a [DocView],
) -> Visible<'a> {
    // set_id → Some(head), or None when two different heads claim the set.
    let mut by_set: HashMap<&str, Option<&DocView>> = HashMap::new();
    for d in docs.iter().chain(heads) {
        if d.status == DocStatus::Superseded {
            continue;
        }
        by_set
            .entry(d.set_id.as_str())
            .and_modify(|h| {
                if h.is_some_and(|h| h.id != d.id) {
                    *h = None;
                }
            })
            .or_insert(Some(d));
    }
    let docs = docs
        .iter()
        .filter(|d| {
            let head = by_set.get(d.set_id.as_str()).copied().flatten();
            visible_version(grant, d, asked, head).is_shown()
        })
        .collect();
    Visible { docs }
}
