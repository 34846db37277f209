//! The contracts between dmpflow's stages: what travels on each topic (serde types,
//! serialised as JSON; documents as a JSON head and their raw CDA, see `wire`; the CDA
//! body and its compression, see `cda_body`), the Kafka
//! header names, the feeds, and the stable reject and
//! quarantine reason codes. Every stage and the embedded mode speak only these types.
//!
//! The JSON Schema of the payloads and the list of reason codes live next to this crate
//! (`schemas/*.json`, `schemas/reasons.md`); a test keeps the list and the code in step.

use serde::{Deserialize, Serialize};

pub mod cda_body;
pub mod dates;
pub mod ins;
pub mod reasons;
mod tagged;
pub mod topics;
pub mod wire;

pub use cda_body::{Cda, PackedCda, Packing};
pub use reasons::Reject;

/// The confluent flows. The feed decides which mapping normalize applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Feed {
    Lab,
    Imaging,
    Pharmacy,
    Cancer,
    Identity,
    /// Finished CDA documents of any CI-SIS model (JDV_J07 typeCode), whatever their
    /// domain: discharge letters, imaging requests, care-network documents ...
    Documents,
}

impl Feed {
    pub const ALL: [Feed; 6] = [
        Feed::Lab,
        Feed::Imaging,
        Feed::Pharmacy,
        Feed::Cancer,
        Feed::Identity,
        Feed::Documents,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Feed::Lab => "lab",
            Feed::Imaging => "imaging",
            Feed::Pharmacy => "pharmacy",
            Feed::Cancer => "cancer",
            Feed::Identity => "identity",
            Feed::Documents => "documents",
        }
    }
}

impl std::str::FromStr for Feed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Feed::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                format!("unknown feed '{s}' (expected lab, imaging, pharmacy, cancer, identity or documents)")
            })
    }
}

impl std::fmt::Display for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a document came from: enough to find the source message again, never patient data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SourceRef {
    pub feed: Option<Feed>,
    /// MSH-3^MSH-4 (sending application and facility), or the CDA author organisation.
    pub sender: String,
    /// MSH-10.
    pub control_id: String,
    /// Position of the document inside the message (0-based), for messages carrying several.
    pub position: u32,
    /// Kafka coordinates of the raw message, filled by the runtime (None in embedded mode).
    pub topic: Option<String>,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// SHA-256 (hex) of the raw message with MSH-7 blanked: what tells a sender's resend
    /// (same MSH-10, same content) from a reused MSH-10 (other content). Empty in payloads
    /// of earlier builds, which are then deduplicated on the control id alone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content_hash: String,
}

/// The INS and the five strict traits, as read from the message (PID) or the CDA header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PatientIdentity {
    /// The 15-character matricule (NIR or NIA), letters kept for Corsica (2A/2B).
    pub ins: String,
    /// 1.2.250.1.213.1.4.8 (NIR), .9 (NIA), .10 (test), .11 (demo).
    pub ins_oid: String,
    /// Local patient id (IPP) and its assigning authority OID, when present.
    pub ipp: Option<String>,
    pub ipp_authority: Option<String>,
    pub birth_name: String,
    /// All first names at birth, in order.
    pub first_names: Vec<String>,
    /// YYYY-MM-DD.
    pub birth_date: String,
    /// M, F or U.
    pub sex: String,
    /// INSEE code of the birth commune (5 characters), when known.
    pub birth_place: Option<String>,
    /// PID-32 values (HL7 table 0445, e.g. VALI) or, for a received CDA, "QUAL"
    /// (the INS in patientRole/id is the qualified case).
    pub identity_status: Vec<String>,
    /// Other, different INS the sender stated for this patient (further PID-3
    /// repetitions). Non-empty means the identity is ambiguous: route quarantines it
    /// (`identity.ambiguous`), never picks one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_ins: Vec<String>,
}

/// Lifecycle action carried by the message (ORC-1 / OBX-11 / MDM event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    /// NW / F / T02
    Initial,
    /// RO / C / T10
    Replace,
    /// CA / D / T04
    Delete,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Initial => "initial",
            Lifecycle::Replace => "replace",
            Lifecycle::Delete => "delete",
        }
    }
}

/// Whether dmpflow wrote the CDA or received it finished (base64 in OBX-5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CdaOrigin {
    Generated,
    Received,
}

/// An author, legal authenticator or organisation reference (national ids, no names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PartyRef {
    /// Person id (RPPS-based IdNat_PS, root 1.2.250.1.71.4.2.1), when known.
    pub person_id: Option<String>,
    /// Organisation id (FINESS/SIRET-based IdNat_Struct, root 1.2.250.1.71.4.2.2), when known.
    pub organisation_id: Option<String>,
}

/// DMP (XDS DocumentEntry) metadata of one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentMeta {
    /// ClinicalDocument/id@root: a full OID, deterministic for generated documents.
    pub unique_id: String,
    /// setId shared by every version.
    pub set_id: String,
    pub version: u32,
    pub lifecycle: Lifecycle,
    /// For a replacement or a deletion: the uniqueId of the document it targets, when the
    /// message names it (TXA-13, relatedDocument); otherwise the set is used.
    pub target_unique_id: Option<String>,
    /// LOINC code of the document (11502-2, 18748-4, 60593-1, 34794-8, ...).
    pub type_code: String,
    /// TRE_A03 class code (10, 31, 43, ...).
    pub class_code: String,
    /// ASS_A11 formatCode, from the templateId.
    pub format_code: String,
    pub title: String,
    pub patient: PatientIdentity,
    pub author: PartyRef,
    /// ISO-8601 timestamps (CDA effectiveTime and serviceEvent low/high), as given.
    pub creation_time: String,
    pub service_start: Option<String>,
    pub service_stop: Option<String>,
    /// CDA confidentialityCode (N, R, V).
    pub confidentiality: String,
    /// TRE_A07 visibility codes set to Y in MetaDMPMSS (MASQUE_PS, INVISIBLE_PATIENT, ...).
    pub visibility: Vec<String>,
    /// XDS practiceSettingCode (JDV_J62, codes of TRE_A01 "cadre d'exercice": AMBULATOIRE,
    /// ETABLISSEMENT, HAD ...). A received CDA gives it in
    /// `documentationOf/serviceEvent/performer/assignedEntity/representedOrganization/
    /// standardIndustryClassCode`, else in the author's organisation; `None` when it says
    /// nothing (stored as NULL: dmpflow does not invent one). Generated documents say
    /// AMBULATOIRE, as their header does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub practice_setting: Option<String>,
    /// Other attachments the message carried beside its document(s) (a mail body, a PDF ...):
    /// never read nor stored, only counted here, on the message's first document.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ignored_attachments: u32,
    pub origin: CdaOrigin,
    pub source: SourceRef,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Structured data kept as rows next to the XML, so results can be queried over time.
/// Read by `tagged` (no buffering), written by serde as `{"kind":"lab_observation", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    LabObservation {
        loinc: String,
        label: String,
        /// Value as text (NM keeps its decimal text; CE keeps the code).
        value: String,
        /// HL7 value type (NM, SN, ST, CE, CWE, TX, FT).
        value_type: String,
        unit: Option<String>,
        interpretation: Option<String>,
        reference_low: Option<String>,
        reference_high: Option<String>,
        reference_text: Option<String>,
        /// F, C, P ...
        status: String,
        time: Option<String>,
    },
    Dispensation {
        /// CIP13 or UCD13 code.
        code: String,
        /// 1.2.250.1.213.2.3.2 (CIP) or 1.2.250.1.213.2.61 (UCD).
        code_system: String,
        label: String,
        quantity: String,
        unit: Option<String>,
        time: String,
    },
}

/// A normalised document: payload of `dmp.documents` and `dmp.routed`. Its JSON (written
/// by hand in `cda_body`, as the body's form decides it) is the one it always had.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub meta: DocumentMeta,
    /// The CDA R2 body: XML as normalize writes it, packed from the normalize stage on.
    pub cda: Cda,
    pub entries: Vec<Entry>,
}

/// What an identity-feed message changes in the patient registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PatientChange {
    /// ADT A28/A31: create or update the patient and their DMP consent.
    Upsert,
    /// ADT A40: `from` (the INS that disappears) is merged into the patient.
    Merge { from_ins: String, from_oid: String },
    /// ADT A47: the patient's identifier changed from `old_ins`.
    IdentifierChange { old_ins: String, old_oid: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientUpdate {
    pub change: PatientChange,
    pub patient: PatientIdentity,
    /// ZFA-9 opposition to feeding the DMP: `Some(true)` IO, `Some(false)` INO, `None`
    /// NA (not collected) or no ZFA.
    pub feeding_opposed: Option<bool>,
    /// ZFA-1 DMP status (ACTIF, FERME, ...), when present.
    pub dmp_status: Option<String>,
    /// ZFA-11 consent to consultation of the DMP: `Some(true)` IC, `Some(false)` INC,
    /// `None` NA (not collected) or no ZFA. Kept for the read side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consultation_consent: Option<bool>,
    /// When the sender collected what it states, so that an older message never
    /// overwrites a newer state held by the registry.
    #[serde(default, skip_serializing_if = "UpdateTimes::is_empty")]
    pub times: UpdateTimes,
    /// The ADT event (A01, A04, A08, A28, A31, A40, A47 ...), for the registry history.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub event: String,
    pub source: SourceRef,
}

/// The dates of an identity update, each `YYYY-MM-DDTHH:MM:SS` in the sender's local time
/// (PAM-FR timestamps rarely carry a zone), so that they compare as strings; missing
/// precision is filled with zeros. `None` when the message does not date that value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct UpdateTimes {
    /// MSH-7: when the message was created; the fallback for every other date.
    pub message: Option<String>,
    /// ZFA-2: when the DMP status was collected.
    pub dmp_status: Option<String>,
    /// ZFA-10: when the feeding opposition (ZFA-9) was collected.
    pub feeding_opposed: Option<String>,
    /// ZFA-12: when the consultation consent (ZFA-11) was collected.
    pub consultation_consent: Option<String>,
}

impl UpdateTimes {
    pub fn is_empty(&self) -> bool {
        *self == UpdateTimes::default()
    }
}

/// One item produced by normalize from one input message. Read by `tagged` (no
/// buffering), written by serde as `{"type":"document", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Normalized {
    Document(Box<Document>),
    Patient(Box<PatientUpdate>),
}

impl tagged::Tagged for Normalized {
    const EXPECTING: &'static str = "a dmpflow item";
    const TAG: &'static str = "type";
    const VARIANTS: &'static [&'static str] = &["document", "patient"];
    fn variant<'de, D: serde::Deserializer<'de>>(v: usize, fields: D) -> Result<Self, D::Error> {
        Ok(match v {
            0 => Normalized::Document(Deserialize::deserialize(fields)?),
            _ => Normalized::Patient(Deserialize::deserialize(fields)?),
        })
    }
}

impl<'de> Deserialize<'de> for Normalized {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged::deserialize(d)
    }
}

impl tagged::Tagged for Entry {
    const EXPECTING: &'static str = "an entry";
    const TAG: &'static str = "kind";
    const VARIANTS: &'static [&'static str] = &["lab_observation", "dispensation"];
    fn variant<'de, D: serde::Deserializer<'de>>(v: usize, fields: D) -> Result<Self, D::Error> {
        // The variants' fields as serde's derive would read them (an `Option` may be
        // absent), mirrored field for field: a test round-trips both variants.
        #[derive(Deserialize)]
        struct LabObservation {
            loinc: String,
            label: String,
            value: String,
            value_type: String,
            unit: Option<String>,
            interpretation: Option<String>,
            reference_low: Option<String>,
            reference_high: Option<String>,
            reference_text: Option<String>,
            status: String,
            time: Option<String>,
        }
        #[derive(Deserialize)]
        struct Dispensation {
            code: String,
            code_system: String,
            label: String,
            quantity: String,
            unit: Option<String>,
            time: String,
        }
        Ok(match v {
            0 => {
                let e = LabObservation::deserialize(fields)?;
                Entry::LabObservation {
                    loinc: e.loinc,
                    label: e.label,
                    value: e.value,
                    value_type: e.value_type,
                    unit: e.unit,
                    interpretation: e.interpretation,
                    reference_low: e.reference_low,
                    reference_high: e.reference_high,
                    reference_text: e.reference_text,
                    status: e.status,
                    time: e.time,
                }
            }
            _ => {
                let e = Dispensation::deserialize(fields)?;
                Entry::Dispensation {
                    code: e.code,
                    code_system: e.code_system,
                    label: e.label,
                    quantity: e.quantity,
                    unit: e.unit,
                    time: e.time,
                }
            }
        })
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged::deserialize(d)
    }
}

/// Payload of `dmp.quarantine` (laid out by `wire::encode_quarantined`): the document and
/// why it was not routed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    pub reason: String,
    pub detail: String,
    pub item: Normalized,
}

/// Kafka header names used on every topic.
pub mod headers {
    pub const FEED: &str = "dmp.feed";
    pub const STAGE: &str = "dmp.stage";
    pub const REASON: &str = "dmp.reason";
    pub const ERROR: &str = "dmp.error";
    pub const SOURCE_TOPIC: &str = "dmp.source.topic";
    pub const SOURCE_PARTITION: &str = "dmp.source.partition";
    pub const SOURCE_OFFSET: &str = "dmp.source.offset";
    pub const TIME: &str = "dmp.time";
    pub const ATTEMPT: &str = "dmp.attempt";
    /// Produce time of the raw message, in ms since the epoch, carried through every stage
    /// for end-to-end latency.
    pub const INGEST_TIME: &str = "dmp.ingest.time";
}

/// A patient of the registry (the identity feed and `patients import` write it; route reads it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PatientRecord {
    pub ins: String,
    pub ins_oid: String,
    pub birth_name: String,
    /// Birth first names, in order.
    pub first_names: Vec<String>,
    /// YYYY-MM-DD.
    pub birth_date: String,
    /// M, F or U.
    pub sex: String,
    /// INSEE code of the birth commune.
    pub birth_place: Option<String>,
    /// RNIV status: PROV, RECUP, VALI or QUAL.
    pub identity_status: String,
    /// The patient opposes the feeding of their DMP (ZFA-9 `IO`): what route reads.
    pub feeding_opposed: bool,
    /// Set after an A40 merge (or A47 change): the INS this record now points to.
    pub merged_into: Option<String>,
    // What follows came with issue #12; `serde(default)` keeps older payloads decoding.
    /// Whether the opposition was ever stated (ZFA-9 IO/INO, or the CSV import); false:
    /// not collected, and `feeding_opposed` is then false.
    #[serde(default)]
    pub feeding_opposed_stated: bool,
    /// The sender's date of the opposition value held (ZFA-10, else MSH-7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feeding_opposed_at: Option<String>,
    /// ZFA-1 DMP status (ACTIF, FERME, ...), when stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmp_status: Option<String>,
    /// The sender's date of the DMP status held (ZFA-2, else MSH-7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmp_status_at: Option<String>,
    /// ZFA-11 consent to consultation: `Some(true)` IC, `Some(false)` INC, `None` not
    /// collected. For the read side; route does not use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consultation_consent: Option<bool>,
    /// The sender's date of the consent held (ZFA-12, else MSH-7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consultation_consent_at: Option<String>,
    /// MSH-7 of the last identity message that set the traits and identity status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traits_at: Option<String>,
}

impl PatientRecord {
    /// The opposition as stated: `Some(true)` IO, `Some(false)` INO, `None` not collected.
    pub fn feeding_opposition(&self) -> Option<bool> {
        self.feeding_opposed_stated.then_some(self.feeding_opposed)
    }
}
