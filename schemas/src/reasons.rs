//! Stable reject (dead-letter) and quarantine reason codes. These strings appear in DLQ
//! headers, metrics labels, the CLI and the store; they never change meaning once
//! released. `schemas/reasons.md` documents each one and a test keeps both in step.

use std::fmt;

macro_rules! reasons {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, )*) => {
        /// A stable reason code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason { $( $(#[$doc])* $variant, )* }

        impl Reason {
            pub const ALL: &'static [Reason] = &[ $( Reason::$variant, )* ];
            pub fn as_str(self) -> &'static str {
                match self { $( Reason::$variant => $code, )* }
            }
            pub fn parse(code: &str) -> Option<Reason> {
                match code { $( $code => Some(Reason::$variant), )* _ => None }
            }
        }
    };
}

reasons! {
    // --- HL7 v2 reading (normalize) ---
    /// Input is empty or does not start with an MSH segment.
    Hl7MshMissing = "hl7.msh.missing",
    /// MSH-1/MSH-2 encoding characters are missing, repeated or unusable.
    Hl7EncodingInvalid = "hl7.encoding.invalid",
    /// MSH-18 names a character set we do not decode.
    Hl7CharsetUnsupported = "hl7.charset.unsupported",
    /// The bytes are not valid in the declared character set.
    Hl7CharsetInvalid = "hl7.charset.invalid",
    /// Message larger than the configured limit.
    Hl7MessageTooLarge = "hl7.message.too_large",
    /// A segment larger than the configured limit.
    Hl7SegmentTooLarge = "hl7.segment.too_large",
    /// A field larger than the configured limit.
    Hl7FieldTooLarge = "hl7.field.too_large",
    /// A segment whose name is not three upper-case letters or digits.
    Hl7SegmentInvalid = "hl7.segment.invalid",
    /// A segment the message type requires is absent (PID, OBR, ORC, RXD, TXA ...).
    Hl7SegmentMissing = "hl7.segment.missing",
    /// A required field is empty (MSH-9, MSH-10, PID-3 ...).
    Hl7FieldMissing = "hl7.field.missing",
    /// A field value is malformed (bad timestamp, bad number ...).
    Hl7FieldInvalid = "hl7.field.invalid",
    /// MSH-9 names a message type or event dmpflow does not map for this feed.
    Hl7MessageTypeUnsupported = "hl7.message_type.unsupported",
    /// Event, ORC-1 and OBX-11 disagree (e.g. ORC-1 NW with OBX-11 D).
    Hl7LifecycleInconsistent = "hl7.lifecycle.inconsistent",
    /// The patient has no INS in PID-3.
    Hl7InsMissing = "hl7.ins.missing",
    /// A field holds text XML 1.0 cannot carry (NUL or another C0 control, raw or escaped).
    Hl7TextInvalid = "hl7.text.invalid",
    /// An ADT event with nothing for the DMP (A02 transfer, A03 discharge, A11/A13
    /// cancellations ...): skipped and counted, never dead-lettered (see `Reason::is_skip`).
    Hl7EventSkipped = "hl7.event.skipped",
    /// Not a refusal: the sender reused a control id (same MSH-3/4 and MSH-10) for a
    /// message with other content. It is processed; the code labels the warning and metric.
    Hl7ControlIdReused = "hl7.control_id.reused",
    // --- Embedded CDA (normalize) ---
    /// OBX-5 of an ED document is not valid base64.
    CdaBase64Invalid = "cda.base64.invalid",
    /// The embedded document is not well-formed XML.
    CdaXmlInvalid = "cda.xml.invalid",
    /// The XML is not a CDA R2 ClinicalDocument in the urn:hl7-org:v3 namespace.
    CdaNotClinicalDocument = "cda.not_clinical_document",
    /// A header element the DMP needs is missing (id, code, effectiveTime, patientRole/id ...).
    CdaHeaderMissing = "cda.header.missing",
    /// The INS in patientRole/id differs from PID-3.
    CdaPatientMismatch = "cda.patient.mismatch",
    /// The document model (templateId/code) is not one dmpflow accepts on this feed.
    CdaModelUnsupported = "cda.model.unsupported",
    /// The imaging exam (OBR-4) names no anatomical site that CR-IMG can code.
    ImagingSiteUnknown = "imaging.site.unknown",
    /// The document id is not a valid XDS uniqueId (OID, OID^extension or UUID, 64 chars max).
    CdaIdInvalid = "cda.id.invalid",
    /// The embedded CDA has a DOCTYPE, a DTD or entity declaration, or an undeclared entity.
    CdaDoctypeForbidden = "cda.doctype.forbidden",
    /// Several recordTargets, or several different INS in patientRole/id.
    CdaPatientAmbiguous = "cda.patient.ambiguous",
    /// The document (received, or as it would be generated) exceeds the configured maximum
    /// size or number of entries; checked before it is built.
    CdaTooLarge = "cda.too_large",
    /// The embedded CDA nests elements deeper than the configured limit.
    CdaXmlTooDeep = "cda.xml.too_deep",
    /// ClinicalDocument/code is not an XDS type code of the CI-SIS value set JDV_J07.
    CdaTypeUnknown = "cda.type.unknown",
    // --- Drug codes (normalize) ---
    /// CIP13/UCD13 code whose check digit is wrong.
    DrugCip13Checkdigit = "drug.cip13.checkdigit",
    /// Drug code neither a 13-digit CIP nor a UCD.
    DrugCodeInvalid = "drug.code.invalid",
    // --- Payload decoding in the runtime ---
    /// A topic payload that does not decode as the stage's input type.
    PayloadInvalid = "payload.invalid",
    /// A stage's output record exceeds what the producer or the topic accepts; the input
    /// is dead-lettered instead of retried forever.
    RecordTooLarge = "kafka.record.too_large",
    // --- Routing / identity vigilance (route: quarantine) ---
    /// INS not 15 characters, or its key does not match.
    InsKeyInvalid = "ins.key.invalid",
    /// INS OID not accepted (.10/.11 without test mode, unknown OID).
    InsOidRejected = "ins.oid.rejected",
    /// No patient with this INS in the registry.
    InsUnknown = "ins.unknown",
    /// The identity is not qualified (PID-32 not VALI, registry status not QUAL/VALI).
    IdentityNotQualified = "identity.not_qualified",
    /// One of the five strict traits differs from the registry.
    IdentityTraitsMismatch = "identity.traits.mismatch",
    /// The patient opposed feeding the DMP.
    PatientOpposed = "patient.opposed",
    /// A replacement or deletion whose target document is unknown.
    LifecycleTargetUnknown = "lifecycle.target.unknown",
    /// A replacement whose target document is already superseded or deleted.
    LifecycleTargetNotCurrent = "lifecycle.target.not_current",
    /// A replacement or deletion whose target document belongs to another setId.
    LifecycleSetMismatch = "lifecycle.set.mismatch",
    /// An initial document whose setId already has stored versions.
    LifecycleSetExists = "lifecycle.set.exists",
    /// A document whose uniqueId is already stored with another CDA: the same id for two
    /// documents (a sender's id generator reset) or a changed document sent again as new.
    /// Only the same document again is a duplicate.
    LifecycleUniqueIdConflict = "lifecycle.unique_id.conflict",
    /// The registry record was merged into an INS the registry does not hold (yet).
    IdentityMergeUnresolved = "identity.merge.unresolved",
    /// The registry's merge chain is broken: a cycle, too many hops, or a self-merge.
    IdentityMergeInvalid = "identity.merge.invalid",
    /// An identifier change (A47) or merge (A40) onto an INS another registry entry holds
    /// with other strict traits; the registry is left untouched.
    IdentityCollision = "identity.collision",
    /// PID-3 carries several different INS for one patient.
    IdentityAmbiguous = "identity.ambiguous",
}

impl Reason {
    /// A skip is not an error: the input holds nothing for the DMP. The runtime counts it
    /// and moves on; it is neither dead-lettered nor quarantined.
    pub fn is_skip(self) -> bool {
        matches!(self, Reason::Hl7EventSkipped)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an input was refused: a stable code plus a human detail that names positions and
/// fields, never patient data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub reason: Reason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Reject {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for Reject {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "duplicate code {}", r.as_str());
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
        }
    }

    #[test]
    fn every_code_is_documented_in_reasons_md() {
        let doc = include_str!("../reasons.md");
        for r in Reason::ALL {
            assert!(
                doc.contains(&format!("`{}`", r.as_str())),
                "{} is missing from schemas/reasons.md",
                r.as_str()
            );
        }
    }
}
