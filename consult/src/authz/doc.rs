//! The document-level rules: which documents of a DMP a [`Grant`] shows. A document is
//! described by a [`DocView`], only what the rules need (patient, set, authors, TRE_A07
//! flags, version status), so the rules stay independent of the store and of FHIR.
//!
//! Order in [`decide_doc`]: same patient as the grant → current version (older ones go
//! through [`visible_version`]) → scope (authored only) → MASQUE_PS → INVISIBLE_PATIENT →
//! INVISIBLE_REP_LEGAUX.

use dmpflow_schemas::DocumentMeta;

use super::{Grant, Principal, Reason, Scope};

/// Status of a stored document version. Mirrors `dmpflow_store::DocStatus` (the store's
/// crate is not a dependency of this one: it brings the database); the edge converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocStatus {
    Current,
    /// Replaced by a newer version of its set (RPLC).
    Superseded,
    /// Logically deleted (the row is kept, domain.md §3.4).
    Deleted,
}

/// The version statuses a search asked for (FHIR `DocumentReference?status=`). Default:
/// current only, as IHE MHD ITI-67 consumers expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statuses {
    pub current: bool,
    pub superseded: bool,
    pub deleted: bool,
}

impl Default for Statuses {
    fn default() -> Self {
        Statuses::CURRENT
    }
}

impl Statuses {
    pub const CURRENT: Statuses = Statuses {
        current: true,
        superseded: false,
        deleted: false,
    };
    pub const ALL: Statuses = Statuses {
        current: true,
        superseded: true,
        deleted: true,
    };

    pub fn of(statuses: &[DocStatus]) -> Statuses {
        Statuses {
            current: statuses.contains(&DocStatus::Current),
            superseded: statuses.contains(&DocStatus::Superseded),
            deleted: statuses.contains(&DocStatus::Deleted),
        }
    }

    pub fn contains(self, s: DocStatus) -> bool {
        match s {
            DocStatus::Current => self.current,
            DocStatus::Superseded => self.superseded,
            DocStatus::Deleted => self.deleted,
        }
    }
}

/// The TRE_A07 visibility flags of a document (domain.md §3.3: the codes set to `Y` in
/// MetaDMPMSS, stored in `documents.visibility`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Visibility {
    /// MASQUE_PS: hidden from health professionals.
    pub masked_ps: bool,
    /// INVISIBLE_PATIENT: hidden from the patient (and so from their representatives).
    pub invisible_patient: bool,
    /// INVISIBLE_REP_LEGAUX: hidden from the legal representatives.
    pub invisible_representatives: bool,
    /// CONNEXION_SECRETE: carried, but no consultation rule reads it — the sources at hand
    /// (domain.md §3.3, the CDA-in-HL7 v2 volet's MSSanté matrix) give it no visibility
    /// meaning. Kept so the edge can still report it.
    pub secret_connection: bool,
}

impl Visibility {
    /// The flags from the stored codes. TRE_A07 itself spells the representatives' code
    /// `INVISIBLE_REPRESENTANTS_LEGAUX` (shared domain notes §3.3) where the HL7 v2 feed says
    /// `INVISIBLE_REP_LEGAUX`: both hide. Other codes are not visibility and are ignored.
    pub fn from_codes<'a>(codes: impl IntoIterator<Item = &'a str>) -> Visibility {
        let mut v = Visibility::default();
        for code in codes {
            match code.trim() {
                "MASQUE_PS" => v.masked_ps = true,
                "INVISIBLE_PATIENT" => v.invisible_patient = true,
                "INVISIBLE_REP_LEGAUX" | "INVISIBLE_REPRESENTANTS_LEGAUX" => {
                    v.invisible_representatives = true
                }
                "CONNEXION_SECRETE" => v.secret_connection = true,
                _ => {}
            }
        }
        v
    }
}

/// What the rules need of one document version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocView {
    /// uniqueId of this version.
    pub id: String,
    /// setId shared by every version.
    pub set_id: String,
    /// INS of the patient whose DMP holds it.
    pub patient_ins: String,
    /// Author person ids (IdNat_PS, RPPS or ADELI), as stored.
    pub authors: Vec<String>,
    pub visibility: Visibility,
    pub status: DocStatus,
}

impl DocView {
    /// The view of a stored document's metadata.
    pub fn from_meta(meta: &DocumentMeta, status: DocStatus) -> DocView {
        DocView {
            id: meta.unique_id.clone(),
            set_id: meta.set_id.clone(),
            patient_ins: meta.patient.ins.clone(),
            authors: meta.author.person_id.iter().cloned().collect(),
            visibility: Visibility::from_codes(meta.visibility.iter().map(String::as_str)),
            status,
        }
    }

    fn authored_by(&self, professional_id: &str) -> bool {
        self.authors
            .iter()
            .any(|a| same_professional(a, professional_id))
    }
}

/// The answer for one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocDecision {
    /// Shown: [`Reason::DocVisible`], or [`Reason::DocAuthor`] when only authorship shows it.
    Show(Reason),
    /// Hidden, with the reason for the trace (the caller only ever gets
    /// [`Reason::public`] of it: not found).
    Hide(Reason),
}

impl DocDecision {
    pub fn is_shown(self) -> bool {
        matches!(self, DocDecision::Show(_))
    }
    pub fn reason(self) -> Reason {
        match self {
            DocDecision::Show(r) | DocDecision::Hide(r) => r,
        }
    }
}

/// Whether two professional identifiers name the same person. A document's author is an
/// IdNat_PS (CDA `1.2.250.1.71.4.2.1` extension: `8` + the 11-digit RPPS, `0` + the ADELI
/// number) or the bare number an HL7 v2 PRT/XCN sent (the ANS examples send the 11-digit
/// RPPS); a token may carry either. Both sides are reduced to the bare number; empty ids
/// never match.
pub fn same_professional(a: &str, b: &str) -> bool {
    let (a, b) = (bare_ps_id(a), bare_ps_id(b));
    !a.is_empty() && a == b
}

fn bare_ps_id(id: &str) -> &str {
    let id = id.trim();
    let digits = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    match id.as_bytes().first() {
        // 8 + RPPS (11 digits).
        Some(b'8') if id.len() == 12 && digits(id) => &id[1..],
        // 0 + ADELI (9 characters, digits and the Corsican 2A/2B letters).
        Some(b'0') if id.len() == 10 && id.bytes().all(|c| c.is_ascii_alphanumeric()) => &id[1..],
        _ => id,
    }
}

/// The flag and scope rules of one version, whatever its status.
fn decide_flags(grant: &Grant, doc: &DocView) -> DocDecision {
    match grant.principal() {
        Principal::Professional { id, .. } => {
            let author = doc.authored_by(id);
            // The patient refused consultation: only the professional's own documents
            // (shared domain notes §3.7: "the author always sees their own documents").
            if grant.scope() == Scope::AuthoredOnly && !author {
                return DocDecision::Hide(Reason::NotAuthor);
            }
            // MASQUE_PS hides from professionals except the author, and break-the-glass
            // does not lift it: the patient masked it precisely from professionals, the
            // DMP shows a masked document to the patient, the médecin traitant and its
            // author only (La Lettre du Rhumatologue no 375, 2011, on the DMP), and the
            // CNIL's review of the DMP pilot faulted a break-the-glass that reached masked
            // documents. The médecin traitant DMP is not known here, so not modelled.
            if doc.visibility.masked_ps && !author {
                return DocDecision::Hide(Reason::Masked);
            }
            // INVISIBLE_* are about the patient's side; they do not hide from professionals.
            if author && (doc.visibility.masked_ps || grant.scope() == Scope::AuthoredOnly) {
                DocDecision::Show(Reason::DocAuthor)
            } else {
                DocDecision::Show(Reason::DocVisible)
            }
        }
        // INVISIBLE_PATIENT: hidden from the patient (domain.md §3.3); MASQUE_PS is the
        // patient's own masking from professionals and does not hide from them.
        Principal::Patient { .. } if doc.visibility.invisible_patient => {
            DocDecision::Hide(Reason::InvisiblePatient)
        }
        Principal::Patient { .. } => DocDecision::Show(Reason::DocVisible),
        // A representative sees what the patient would, and less: a document hidden from
        // the patient is hidden from whoever acts for them (the MSSanté matrix of the
        // CDA-in-HL7 v2 volet sends an INVISIBLE_PATIENT document to neither), plus
        // INVISIBLE_REP_LEGAUX (domain.md §3.3).
        Principal::Representative { .. } if doc.visibility.invisible_patient => {
            DocDecision::Hide(Reason::InvisiblePatient)
        }
        Principal::Representative { .. } if doc.visibility.invisible_representatives => {
            DocDecision::Hide(Reason::InvisibleRepresentatives)
        }
        Principal::Representative { .. } => DocDecision::Show(Reason::DocVisible),
    }
}

/// The decision for one *current* document. A superseded or deleted version is hidden
/// here ([`Reason::StatusNotAsked`]): whether it may be shown depends on its set, see
/// [`visible_version`].
pub fn decide_doc(grant: &Grant, doc: &DocView) -> DocDecision {
    if doc.patient_ins.trim() != grant.patient_ins() {
        return DocDecision::Hide(Reason::DocOtherPatient);
    }
    if doc.status != DocStatus::Current {
        return DocDecision::Hide(Reason::StatusNotAsked);
    }
    decide_flags(grant, doc)
}

/// Whether the grant shows this current document.
pub fn visible(grant: &Grant, doc: &DocView) -> bool {
    decide_doc(grant, doc).is_shown()
}

/// The decision for any version, given what the caller asked for and the head of its set:
/// the current version, or the deleting version when the set was deleted (a deletion marks
/// the current version deleted, domain.md §3.4).
///
/// An older version is shown only if its status was asked for, the caller may see the head
/// (masking the current version must not be undone by reading the previous one), and the
/// version's own flags allow it. A missing or inconsistent head hides it.
pub fn visible_version(
    grant: &Grant,
    doc: &DocView,
    asked: Statuses,
    head: Option<&DocView>,
) -> DocDecision {
    if doc.patient_ins.trim() != grant.patient_ins() {
        return DocDecision::Hide(Reason::DocOtherPatient);
    }
    if !asked.contains(doc.status) {
        return DocDecision::Hide(Reason::StatusNotAsked);
    }
    if doc.status == DocStatus::Current {
        return decide_flags(grant, doc);
    }
    let Some(head) = head else {
        return DocDecision::Hide(Reason::SetHidden);
    };
    let head_ok = head.set_id == doc.set_id
        && head.patient_ins.trim() == grant.patient_ins()
        && head.status != DocStatus::Superseded
        && decide_flags(grant, head).is_shown();
    if !head_ok {
        return DocDecision::Hide(Reason::SetHidden);
    }
    decide_flags(grant, doc)
}
