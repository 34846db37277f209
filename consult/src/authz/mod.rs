//! Who may see what in a DMP: the authorisation rules of the read side, as a pure module
//! (values in, decisions out; no IO, no clock), like `dmpflow_route` for identity
//! vigilance. The HTTP edge authenticates the caller, looks up the registry record and the
//! documents, and asks these functions; it never decides on its own.
//!
//! Two levels, each decision carrying a stable [`Reason`] for the trace:
//!
//! 1. [`can_access_dmp`]: may this principal open this patient's DMP at all, and with
//!    which scope? Order of checks: purpose well formed (break-the-glass only for a
//!    professional, with a reason) → principal identifier present → relationship (a patient
//!    only their own INS, a representative only the INS they represent; checked before the
//!    DMP state so an unrelated caller learns nothing about someone else's DMP) → DMP state
//!    (exists, not merged, open) → for a professional: break-the-glass (permitted unless the
//!    patient opposes it, flagged) → consultation refused (scope: only the documents they
//!    authored) → permitted.
//! 2. [`decide_doc`] / [`visible`] / [`visible_version`] and the search helper [`filter`]:
//!    which documents of that DMP the [`Grant`] shows. Order: same patient → version status
//!    → scope (authored only) → MASQUE_PS → INVISIBLE_PATIENT → INVISIBLE_REP_LEGAUX.
//!
//! Where each rule comes from is written next to it; `docs/domain.md` §3.3–3.5 (this
//! repository) and the consultation notes of the DMP specifications are the sources.

mod doc;
mod reason;
mod search;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_table;

pub use doc::{
    DocDecision, DocStatus, DocView, Statuses, Visibility, decide_doc, same_professional, visible,
    visible_version,
};
pub use reason::Reason;
pub use search::{Visible, filter};

use dmpflow_schemas::PatientRecord;

/// Who is asking, as the authentication layer established it (`auth::RoleMapping` builds it
/// from a verified token). `Debug` is written by hand in `auth::principal`: identifiers
/// (INS, RPPS) must not reach logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub enum Principal {
    /// The patient themselves (Mon espace santé login), by their INS.
    Patient { ins: String },
    /// A legal representative (parent of a minor, guardian), acting for `represented_ins`.
    /// `id` is the representative's own identifier, as the issuer gives it (for the trace).
    Representative { represented_ins: String, id: String },
    /// A health professional (Pro Santé Connect): `id` is their RPPS or ADELI number, bare
    /// or as an IdNat_PS (see [`same_professional`]).
    Professional {
        id: String,
        profession: String,
        organisation: Option<String>,
    },
}

/// Why the principal is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Normal,
    /// Bris de glace: an emergency access a professional declares with a reason. Permitted
    /// without consent, always traced, and the patient is notified (domain.md §3.5, "the
    /// patient is notified ... on break-glass access").
    BreakTheGlass {
        reason: String,
    },
}

/// ZFA-1 as these rules read it. The mapping (see [`DmpStatus::from_zfa1`]) is dmpflow's
/// decision, documented there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmpStatus {
    Open,
    Closed,
    /// No DMP for this INS.
    Absent,
    /// The registry record was merged into another INS (A40/A47).
    Merged,
    /// A ZFA-1 value not in the mapping.
    Unrecognised,
}

impl DmpStatus {
    /// ZFA-1 → status. Values from PAM-FR 2.11 as `docs/domain.md` §3.5 lists them
    /// (`ACTIF`, `FERME`, `ARCHIVE`, `INEXISTANT`, "…"), compared trimmed and
    /// case-insensitively since the store keeps them as sent:
    /// - `ACTIF` → open;
    /// - `FERME` → closed;
    /// - `ARCHIVE` → closed: an archived DMP is a closed one kept for its retention
    ///   period, not one to consult;
    /// - `INEXISTANT` → absent;
    /// - not stated (`None`, or empty) → open: most feeds never send ZFA (lab and imaging
    ///   ORU, the CSV import) and Mon espace santé exists for everyone who did not object
    ///   (opt-out, shared domain notes §3.5), so silence is not a closure. Only a sender's
    ///   explicit word closes a DMP;
    /// - anything else → unrecognised, and denied: a value we cannot read must not open a
    ///   record.
    pub fn from_zfa1(value: Option<&str>) -> DmpStatus {
        let v = value.map(str::trim).unwrap_or("");
        if v.is_empty() || v.eq_ignore_ascii_case("ACTIF") {
            DmpStatus::Open
        } else if v.eq_ignore_ascii_case("FERME") || v.eq_ignore_ascii_case("ARCHIVE") {
            DmpStatus::Closed
        } else if v.eq_ignore_ascii_case("INEXISTANT") {
            DmpStatus::Absent
        } else {
            DmpStatus::Unrecognised
        }
    }
}

/// What the rules need of the patient's registry record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmpState {
    pub status: DmpStatus,
    /// ZFA-11: `Some(true)` IC, `Some(false)` INC (refused), `None` not collected.
    pub consultation_consent: Option<bool>,
    /// ZFA-6: the patient opposes break-the-glass access. The registry does not keep ZFA-6
    /// yet, so [`DmpState::from_record`] leaves it false; the rule is here for when it does.
    pub break_glass_opposed: bool,
}

impl DmpState {
    /// The state of the DMP of a registry record (`None`: no record for this INS).
    pub fn from_record(record: Option<&PatientRecord>) -> DmpState {
        let Some(r) = record else {
            return DmpState {
                status: DmpStatus::Absent,
                consultation_consent: None,
                break_glass_opposed: false,
            };
        };
        let status = if r.merged_into.is_some() {
            DmpStatus::Merged
        } else {
            DmpStatus::from_zfa1(r.dmp_status.as_deref())
        };
        DmpState {
            status,
            consultation_consent: r.consultation_consent,
            break_glass_opposed: false,
        }
    }
}

/// Which documents of the DMP a grant reaches (before per-document masking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every document, subject to the masking flags.
    All,
    /// Only the documents the professional authored (the patient refused consultation).
    AuthoredOnly,
}

/// Permission to consult one patient's DMP. Built only by [`can_access_dmp`] (the fields
/// are private), and it keeps the principal, purpose and patient it was granted for, so the
/// document rules cannot be run with another caller's or another patient's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    principal: Principal,
    purpose: Purpose,
    patient_ins: String,
    scope: Scope,
    reason: Reason,
}

impl Grant {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }
    pub fn purpose(&self) -> &Purpose {
        &self.purpose
    }
    pub fn patient_ins(&self) -> &str {
        &self.patient_ins
    }
    pub fn scope(&self) -> Scope {
        self.scope
    }
    /// Why access was granted: for the trace.
    pub fn reason(&self) -> Reason {
        self.reason
    }
    /// The declared emergency reason when this is a break-the-glass access: the trace must
    /// flag it and the patient must be notified.
    pub fn break_glass(&self) -> Option<&str> {
        match &self.purpose {
            Purpose::BreakTheGlass { reason } => Some(reason),
            Purpose::Normal => None,
        }
    }
}

/// The DMP-level answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Granted(Grant),
    Denied(Reason),
}

impl Access {
    /// The reason code of this decision, for the trace.
    pub fn reason(&self) -> Reason {
        match self {
            Access::Granted(g) => g.reason,
            Access::Denied(r) => *r,
        }
    }
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            Access::Granted(g) => Some(g),
            Access::Denied(_) => None,
        }
    }
}

/// May `principal` consult the DMP of `patient_ins`, whose registry state is `state`?
/// Order of checks: see the module documentation.
pub fn can_access_dmp(
    principal: &Principal,
    purpose: &Purpose,
    patient_ins: &str,
    state: &DmpState,
) -> Access {
    let breaking_glass = match purpose {
        Purpose::Normal => false,
        Purpose::BreakTheGlass { reason } => {
            // Emergency access is a professional's (domain notes §3.5–3.7: PS access,
            // notified to the patient); a patient or representative has nothing to break.
            if !matches!(principal, Principal::Professional { .. }) {
                return Access::Denied(Reason::BreakGlassNotProfessional);
            }
            // The professional "must justify it" (CNIL on the DMP's bris de glace): a
            // trace without the reason is worthless.
            if reason.trim().is_empty() {
                return Access::Denied(Reason::BreakGlassReasonMissing);
            }
            true
        }
    };
    let patient_ins = patient_ins.trim();
    let (own_id, relationship) = match principal {
        Principal::Patient { ins } => (ins.trim(), Some((ins, Reason::NotOwnRecord))),
        Principal::Representative {
            represented_ins, ..
        } => (
            represented_ins.trim(),
            Some((represented_ins, Reason::NotRepresented)),
        ),
        Principal::Professional { id, .. } => (id.trim(), None),
    };
    if own_id.is_empty() || patient_ins.is_empty() {
        return Access::Denied(Reason::PrincipalInvalid);
    }
    if let Some((ins, denial)) = relationship
        && ins.trim() != patient_ins
    {
        return Access::Denied(denial);
    }
    // The DMP itself: the same answer for everyone (a closed DMP is closed to its
    // patient too, domain.md §3.5 ZFA-1).
    match state.status {
        DmpStatus::Open => {}
        DmpStatus::Closed => return Access::Denied(Reason::DmpClosed),
        DmpStatus::Absent => return Access::Denied(Reason::DmpNotFound),
        DmpStatus::Merged => return Access::Denied(Reason::DmpMerged),
        DmpStatus::Unrecognised => return Access::Denied(Reason::DmpStatusUnknown),
    }
    let (scope, reason) = match principal {
        Principal::Patient { .. } => (Scope::All, Reason::PermitOwnRecord),
        Principal::Representative { .. } => (Scope::All, Reason::PermitRepresented),
        Principal::Professional { .. } if breaking_glass => {
            // ZFA-6: the patient may oppose break-the-glass (shared domain notes §3.5).
            if state.break_glass_opposed {
                return Access::Denied(Reason::BreakGlassOpposed);
            }
            (Scope::All, Reason::PermitBreakGlass)
        }
        // ZFA-11 `INC`: consultation refused. Consent is presumed otherwise (care team,
        // CSP L1110-4 / R1111-46, domain.md §3.5), so only an explicit refusal restricts.
        // The author still sees their own documents (shared domain notes §3.7).
        Principal::Professional { .. } if state.consultation_consent == Some(false) => {
            (Scope::AuthoredOnly, Reason::ConsentRefused)
        }
        Principal::Professional { .. } => (Scope::All, Reason::PermitProfessional),
    };
    Access::Granted(Grant {
        principal: principal.clone(),
        purpose: purpose.clone(),
        patient_ins: patient_ins.to_string(),
        scope,
        reason,
    })
}
