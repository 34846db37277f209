//! route: the identity-vigilance decision for each normalised document, as a pure library
//! (no IO, no clock). Given the document's metadata and the patient-registry records the
//! runtime looked up, it says either "route to this INS" or "quarantine, with this stable
//! reason". Every doubt is a quarantine case; nothing is ever guessed.
//!
//! Order of checks in [`route_document`]: one INS only (`identity.ambiguous`) → INS key
//! and OID → document identity status (a FICTI/DOUTE/PROV anywhere rules it out, see
//! [`status`]) → registry record of the document's INS → merge chain → registry status
//! (of the final record when the document's was merged) → the five strict traits →
//! opposition to feeding (on the final record) → route to the final record's INS.
//!
//! Identity updates go through [`check_patient_update`] (module [`update`]): one INS only
//! → identifiers → identity collision of a merge or identifier change with the registry
//! entries it joins.

use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{DocumentMeta, PatientRecord};

pub mod ins;
pub mod status;
pub mod traits;
pub mod update;

pub use ins::{INS_OIDS, OID_NIA, OID_NIR, OID_NIR_DEMO, OID_NIR_TEST, check_ins, compute_key};
pub use traits::{Trait, first_name_list, mismatched_traits, normalize_name};
pub use update::{check_patient_update, is_traitless, other_identity, retired_ins};

/// Route-stage settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RouteConfig {
    /// Accept the ANS test (.10) and demo (.11) INS OIDs. Off in production.
    pub accept_test_oids: bool,
}

/// What to do with one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store it in the DMP of this patient (the final record after merges).
    Route { ins: String, ins_oid: String },
    /// Hold it for identity vigilance. `detail` names fields and positions, never patient data.
    Quarantine { reason: Reason, detail: String },
}

impl Decision {
    fn quarantine(reason: Reason, detail: impl Into<String>) -> Self {
        Decision::Quarantine {
            reason,
            detail: detail.into(),
        }
    }
}

/// Most merges followed from the document's registry record to the current one. Real
/// chains are one or two hops (an A40 merge, perhaps an A47 change after it); a longer
/// one means the registry is wrong, and stopping bounds the runtime's lookups.
pub const MAX_MERGE_HOPS: usize = 8;

/// The longest chain [`route_document`] accepts: the document's record plus its hops.
pub const MAX_CHAIN_LEN: usize = MAX_MERGE_HOPS + 1;

/// The INS the runtime must look up next to extend the chain, or `None` when `rec` is
/// the current record of its patient.
///
/// The runtime builds the chain as: `chain = [lookup(doc INS)]`; then while
/// `next_lookup(last)` is `Some(ins)`, and `ins` is not already in the chain (a cycle),
/// and `chain.len() < MAX_CHAIN_LEN`, push `lookup(ins)` if it exists, else stop. It
/// stops on its own and hands over whatever it has: [`route_document`] tells a cycle, a
/// too-long chain and a missing target apart from the last record.
pub fn next_lookup(rec: &PatientRecord) -> Option<&str> {
    rec.merged_into.as_deref().filter(|s| !s.is_empty())
}

/// Decides where a document goes. `chain[0]` is the registry record of
/// `meta.patient.ins` (empty = unknown patient) and `chain[i + 1]` the record
/// `chain[i].merged_into` names (see [`next_lookup`]).
pub fn route_document(meta: &DocumentMeta, chain: &[PatientRecord], cfg: &RouteConfig) -> Decision {
    let p = &meta.patient;

    // 0. One patient: a sender stating several different INS leaves the choice to a person.
    if !p.other_ins.is_empty() {
        return Decision::quarantine(
            Reason::IdentityAmbiguous,
            format!(
                "document states {} different INS for the patient",
                p.other_ins.len() + 1
            ),
        );
    }

    // 1. The identifier itself.
    if let Err((reason, detail)) = check_ins(&p.ins, &p.ins_oid, cfg) {
        return Decision::quarantine(reason, format!("document INS: {detail}"));
    }

    // 2. Identity status: the sender must state a qualified identity (PID-32 VALI, or
    //    "QUAL" for a received CDA) and nothing that rules it out, and so must the registry.
    if let Err(detail) = status::document_status(&p.identity_status) {
        return Decision::quarantine(Reason::IdentityNotQualified, detail);
    }
    let Some(first) = chain.first() else {
        return Decision::quarantine(
            Reason::InsUnknown,
            "no registry record for the document INS",
        );
    };
    // The INS is the matricule *and* its OID: a NIA record does not answer for a NIR.
    // A record for another matricule means the lookup is wrong; never route on it.
    if first.ins != p.ins {
        return Decision::quarantine(
            Reason::InsUnknown,
            "registry record returned for another INS (lookup inconsistent)",
        );
    }
    if first.ins_oid != p.ins_oid {
        return Decision::quarantine(
            Reason::InsUnknown,
            "registry holds this matricule under another OID",
        );
    }
    // A merged (A40) or changed (A47) identifier is retired: the surviving record is the
    // identity that counts, for the status and the traits alike. The old record may be a
    // bare stub the registry created when the merge named an INS it never knew.
    let last = match check_chain(chain) {
        Ok(last) => last,
        Err((reason, detail)) => return Decision::quarantine(reason, detail),
    };
    let reference = if first.merged_into.is_some() {
        last
    } else {
        first
    };
    // Traits are those of the record the document names, unless that record is a stub
    // with no traits (then the survivor's, the only ones the registry knows).
    let traits_of = if first.birth_name.is_empty() {
        reference
    } else {
        first
    };
    if !std::ptr::eq(last, first) {
        // The merge target is where the data lands: it must be as acceptable as the
        // document's own identifier.
        if let Err((reason, detail)) = check_ins(&last.ins, &last.ins_oid, cfg) {
            return Decision::quarantine(reason, format!("merge target INS: {detail}"));
        }
    }
    if !status::registry_qualified(&reference.identity_status) {
        let whose = if std::ptr::eq(reference, first) {
            "registry"
        } else {
            "merge target"
        };
        return Decision::quarantine(
            Reason::IdentityNotQualified,
            format!(
                "{whose} identity status {} is neither QUAL nor VALI",
                status_label(&reference.identity_status)
            ),
        );
    }

    // 3. The five strict traits.
    let bad = mismatched_traits(p, traits_of);
    if !bad.is_empty() {
        let names: Vec<&str> = bad.iter().map(|t| t.as_str()).collect();
        return Decision::quarantine(
            Reason::IdentityTraitsMismatch,
            format!("differs from registry: {}", names.join(", ")),
        );
    }

    // 5. Opposition, as recorded on the current record (merges carry consent forward).
    if last.feeding_opposed {
        return Decision::quarantine(Reason::PatientOpposed, "patient opposed feeding the DMP");
    }

    Decision::Route {
        ins: last.ins.clone(),
        ins_oid: last.ins_oid.clone(),
    }
}

/// The registry status as a short code for details; anything unexpected is not echoed.
fn status_label(s: &str) -> &str {
    match s.trim() {
        "" => "(empty)",
        t if t.len() <= 8 && t.bytes().all(|c| c.is_ascii_alphabetic()) => t,
        _ => "(unrecognised)",
    }
}

/// Validates the merge links and returns the current (last) record.
fn check_chain(chain: &[PatientRecord]) -> Result<&PatientRecord, (Reason, String)> {
    let invalid = |d: String| (Reason::IdentityMergeInvalid, d);
    for (i, rec) in chain.iter().enumerate() {
        // A record seen twice is a cycle, whatever the runtime did about it.
        if chain[..i].iter().any(|r| r.ins == rec.ins) {
            return Err(invalid(format!(
                "merge cycle: record at hop {i} repeats an earlier one"
            )));
        }
        if let Some(next) = chain.get(i + 1)
            && next_lookup(rec) != Some(next.ins.as_str())
        {
            return Err(invalid(format!(
                "chain broken at hop {i}: next record is not the merge target"
            )));
        }
    }
    let last = chain.last().expect("caller checked non-empty");
    match next_lookup(last) {
        None if chain.len() > MAX_CHAIN_LEN => Err(invalid(format!(
            "merge chain longer than {MAX_MERGE_HOPS} hops"
        ))),
        None => Ok(last),
        Some(t) if t == last.ins || chain.iter().any(|r| r.ins == t) => Err(invalid(format!(
            "merge cycle after {} hop(s)",
            chain.len() - 1
        ))),
        Some(_) if chain.len() >= MAX_CHAIN_LEN => Err(invalid(format!(
            "merge chain longer than {MAX_MERGE_HOPS} hops"
        ))),
        Some(_) => Err((
            Reason::IdentityMergeUnresolved,
            format!(
                "merge target after {} hop(s) not in the registry",
                chain.len() - 1
            ),
        )),
    }
}

#[cfg(test)]
mod tests;
