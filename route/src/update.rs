//! The checks an identity-feed message (A28/A31 upsert, A40 merge, A47 identifier change)
//! passes before it touches the patient registry: the identifiers it carries, whether it
//! names one patient only, and whether a merge or identifier change would take over a
//! registry entry that belongs to another person (an identity collision).
//!
//! Collision rule. A merge or identifier change joins two registry entries: the one of
//! the INS that stays (`u.patient.ins`, the *target*) and the one of the INS that
//! disappears (the *retired* one), whose documents follow the target from then on. Either
//! entry, when it holds an identity (not a bare stub an earlier merge made), must be the
//! very person the message describes: its strict traits must match the message's (the
//! same rule as a document's, [`mismatched_traits`]). Otherwise the message would either
//! overwrite another patient's identity (target side) or pour another patient's documents
//! into this one's record (retired side), so it is quarantined and the registry is left
//! untouched. Replaying an applied message is not a collision: both entries then hold
//! the message's own traits.

use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{PatientChange, PatientIdentity, PatientRecord, PatientUpdate};

use crate::{RouteConfig, Trait, check_ins, mismatched_traits};

/// The INS (matricule, OID) an A40 merge or A47 identifier change retires; `None` for an
/// upsert. The runtime looks its registry record up for [`check_patient_update`].
pub fn retired_ins(u: &PatientUpdate) -> Option<(&str, &str)> {
    match &u.change {
        PatientChange::Upsert => None,
        PatientChange::Merge { from_ins, from_oid } => Some((from_ins, from_oid)),
        PatientChange::IdentifierChange { old_ins, old_oid } => Some((old_ins, old_oid)),
    }
}

/// A registry entry without an identity: the stub a merge creates for an INS the registry
/// never knew (no birth name, first names nor birth date). Nothing to take over.
pub fn is_traitless(rec: &PatientRecord) -> bool {
    rec.birth_name.trim().is_empty()
        && rec.first_names.iter().all(|n| n.trim().is_empty())
        && rec.birth_date.trim().is_empty()
}

/// The strict traits by which `rec` holds another identity than `p`; empty when `rec` is
/// `p`'s own entry or a stub. A trait `p` does not state counts as differing (a merge
/// must prove it joins one person).
pub fn other_identity(p: &PatientIdentity, rec: &PatientRecord) -> Vec<Trait> {
    if is_traitless(rec) {
        return Vec::new();
    }
    mismatched_traits(p, rec)
}

fn trait_names(t: &[Trait]) -> String {
    t.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
}

/// Checks an identity update before it touches the registry, in this order: one INS
/// only (`identity.ambiguous`), the patient's INS and, for a merge or an identifier
/// change, the retired one (key, OID, not the patient itself), then the collision rule
/// against `target` (the registry record of `u.patient.ins`) and `retired` (that of
/// [`retired_ins`]), both looked up by the runtime (`None`: no record). Detail prefixes
/// say which identifier failed; details name traits, never their values nor an INS.
pub fn check_patient_update(
    u: &PatientUpdate,
    cfg: &RouteConfig,
    target: Option<&PatientRecord>,
    retired: Option<&PatientRecord>,
) -> Result<(), (Reason, String)> {
    fn prefixed(what: &'static str) -> impl Fn((Reason, String)) -> (Reason, String) {
        move |(r, d)| (r, format!("{what}: {d}"))
    }
    if !u.patient.other_ins.is_empty() {
        return Err((
            Reason::IdentityAmbiguous,
            format!(
                "message states {} different INS for the patient",
                u.patient.other_ins.len() + 1
            ),
        ));
    }
    check_ins(&u.patient.ins, &u.patient.ins_oid, cfg).map_err(prefixed("patient INS"))?;
    let Some((old_ins, old_oid)) = retired_ins(u) else {
        return Ok(());
    };
    let (what, verb) = match u.change {
        PatientChange::Merge { .. } => ("merge source INS", "merge"),
        _ => ("previous INS", "identifier change"),
    };
    check_ins(old_ins, old_oid, cfg).map_err(prefixed(what))?;
    if old_ins == u.patient.ins && old_oid == u.patient.ins_oid {
        // Merging a patient into itself would make a one-record cycle in the registry.
        let d = match u.change {
            PatientChange::Merge { .. } => "merge source is the patient itself",
            _ => "previous identifier equals the new one",
        };
        return Err((Reason::IdentityMergeInvalid, d.into()));
    }
    if let Some(rec) = target {
        let bad = other_identity(&u.patient, rec);
        if !bad.is_empty() {
            return Err((
                Reason::IdentityCollision,
                format!(
                    "{verb} onto an INS the registry holds for another identity (differs: {})",
                    trait_names(&bad)
                ),
            ));
        }
    }
    if let Some(rec) = retired {
        let bad = other_identity(&u.patient, rec);
        if !bad.is_empty() {
            return Err((
                Reason::IdentityCollision,
                format!(
                    "{verb} retires an INS the registry holds for another identity (differs: {})",
                    trait_names(&bad)
                ),
            ));
        }
    }
    Ok(())
}
