//! The stable reason codes of every authorisation decision, in one place. They go into the
//! access trace (which the patient may read, CSP L1111-19) and, for the DMP-level denials,
//! into the OperationOutcome the caller receives; they never change meaning once released.
//!
//! Document-level hiding reasons are for the trace only: a caller is never told that a
//! document exists and is hidden from them. [`Reason::public`] gives the code an answer
//! may carry, so an edge cannot leak a hidden document by echoing its reason.

use std::fmt;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, )*) => {
        /// A stable authorisation reason code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason { $( $(#[$doc])* $variant, )* }

        impl Reason {
            /// Every code, in declaration order (for docs, metrics and the uniqueness test).
            pub const ALL: &'static [Reason] = &[ $( Reason::$variant, )* ];

            /// The code as it appears in traces and OperationOutcomes.
            pub fn as_str(self) -> &'static str {
                match self { $( Reason::$variant => $code, )* }
            }

            /// The reason of a code, for reading traces back.
            pub fn parse(code: &str) -> Option<Reason> {
                match code { $( $code => Some(Reason::$variant), )* _ => None }
            }
        }
    };
}

reasons! {
    // --- DMP level: permits (the trace says why the caller got in) ---
    /// The patient consults their own DMP.
    PermitOwnRecord = "consult.permit.own_record",
    /// A legal representative consults the DMP of the person they represent.
    PermitRepresented = "consult.permit.represented",
    /// A professional consults a DMP whose patient has not refused consultation.
    PermitProfessional = "consult.permit.professional",
    /// A professional consults in an emergency (bris de glace): permitted, traced, and the
    /// patient is notified.
    PermitBreakGlass = "consult.permit.break_glass",
    /// The patient refused consultation (ZFA-11 `INC`): the professional sees only the
    /// documents they authored. A permit with a reduced scope, not a denial.
    ConsentRefused = "consult.consent.refused",

    // --- DMP level: denials (the caller gets this code) ---
    /// The principal carries no usable identifier (empty INS or professional id).
    PrincipalInvalid = "consult.principal.invalid",
    /// A patient asked for another patient's DMP.
    NotOwnRecord = "consult.not_own_record",
    /// A legal representative asked for a DMP of someone they do not represent.
    NotRepresented = "consult.not_represented",
    /// Break-the-glass asked by a patient or a representative: it is a professional's mode.
    BreakGlassNotProfessional = "consult.break_glass.not_professional",
    /// Break-the-glass asked without a reason: the reason is what the trace must keep.
    BreakGlassReasonMissing = "consult.break_glass.reason_missing",
    /// The patient opposes break-the-glass access (ZFA-6).
    BreakGlassOpposed = "consult.break_glass.opposed",
    /// No DMP for this INS: no registry record, or ZFA-1 `INEXISTANT`.
    DmpNotFound = "consult.dmp.not_found",
    /// The registry record of this INS was merged into another (A40/A47): the survivor's
    /// INS is the one to consult.
    DmpMerged = "consult.dmp.merged",
    /// The DMP is closed (ZFA-1 `FERME`) or archived (`ARCHIVE`).
    DmpClosed = "consult.dmp.closed",
    /// ZFA-1 holds a value these rules do not know: no access until it is read.
    DmpStatusUnknown = "consult.dmp.status_unknown",

    // --- document level: shown ---
    /// The document is shown under the ordinary rules.
    DocVisible = "consult.doc.visible",
    /// The document is shown because the professional authored it (masked, or the patient
    /// refused consultation).
    DocAuthor = "consult.doc.author",

    // --- document level: hidden (trace only; the caller sees `consult.doc.not_found`) ---
    /// What a caller is told about a document they may not see: the same as a document
    /// that does not exist.
    DocNotFound = "consult.doc.not_found",
    /// The document belongs to another patient than the one the access was granted for.
    DocOtherPatient = "consult.doc.other_patient",
    /// MASQUE_PS: hidden from professionals other than its author, break-the-glass included.
    Masked = "consult.masked",
    /// INVISIBLE_PATIENT: hidden from the patient and from their legal representatives.
    InvisiblePatient = "consult.invisible.patient",
    /// INVISIBLE_REP_LEGAUX: hidden from the patient's legal representatives.
    InvisibleRepresentatives = "consult.invisible.representatives",
    /// The patient refused consultation and the professional did not author the document.
    NotAuthor = "consult.consent.not_author",
    /// A superseded or deleted version the caller did not ask for by status.
    StatusNotAsked = "consult.version.not_asked",
    /// An old version whose set head (current version, or the deleting version) the caller
    /// may not see, or whose set head is missing or inconsistent.
    SetHidden = "consult.version.set_hidden",
}

impl Reason {
    /// Whether this reason hides a document (as opposed to a DMP-level decision or a show).
    pub fn hides_document(self) -> bool {
        matches!(
            self,
            Reason::DocNotFound
                | Reason::DocOtherPatient
                | Reason::Masked
                | Reason::InvisiblePatient
                | Reason::InvisibleRepresentatives
                | Reason::NotAuthor
                | Reason::StatusNotAsked
                | Reason::SetHidden
        )
    }

    /// The code an answer to the caller may carry: every document-hiding reason becomes
    /// [`Reason::DocNotFound`], so a hidden document reads exactly as a missing one.
    pub fn public(self) -> Reason {
        if self.hides_document() {
            Reason::DocNotFound
        } else {
            self
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
