//! The store's public values: what `write_batch` takes and answers, and the rows the
//! queries return. Kept apart from the SQL so the runtime can read the API in one place.

use dmpflow_schemas::{Document, Normalized, PatientUpdate, Quarantined};

/// One item of a batch. Each carries its `SourceRef` inside (`meta.source`, `source`, or
/// the source of the quarantined item).
// Not boxed: the runtime moves whole Documents into a batch anyway, and `Document(Document)`
// is the shape the stages agreed on.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum StoreItem {
    Document(Document),
    Quarantine(Quarantined),
    /// Identity-feed update, so patient changes get the same exactly-once commit as documents.
    Patient(PatientUpdate),
}

/// Consumer position to commit with a batch: the next offset to read on `topic/partition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// What happened to one item of a batch (same order as the items).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Initial document stored as the current version of a new set.
    Stored,
    /// Replacement stored as the current version; the previous version is superseded.
    Replaced { superseded: String },
    /// Deletion applied: the target document is now logically deleted.
    Deleted { target: String },
    /// Put in quarantine with this reason code (from route, or `lifecycle.*` from the store).
    Quarantined(String),
    /// Patient registry updated (A28/A31 upsert).
    PatientUpdated,
    /// Patient merged (A40) or identifier changed (A47): `from` now points to the survivor.
    PatientMerged,
    /// Seen before (same document uniqueId, or same sender/control id/position and the
    /// same content hash, or the same item already waiting in quarantine): nothing changed.
    Duplicate,
}

impl ItemOutcome {
    /// Short label for metrics and counts.
    pub fn as_str(&self) -> &'static str {
        match self {
            ItemOutcome::Stored => "stored",
            ItemOutcome::Replaced { .. } => "replaced",
            ItemOutcome::Deleted { .. } => "deleted",
            ItemOutcome::Quarantined(_) => "quarantined",
            ItemOutcome::PatientUpdated => "patient_upsert",
            ItemOutcome::PatientMerged => "patient_merge",
            ItemOutcome::Duplicate => "duplicate",
        }
    }
}

/// What `Store::write_batch_report` answers: one outcome per item, and the items whose
/// message key was reused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchReport {
    pub outcomes: Vec<ItemOutcome>,
    /// Indexes (into the batch) of the items whose sender, control id and position were
    /// seen before with other content (`hl7.control_id.reused`): not a resend, so they
    /// were processed; their outcome says how. For a metric and a warning.
    pub control_id_reused: Vec<usize>,
}

/// Status of a stored document version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocStatus {
    Current,
    Superseded,
    Deleted,
}

impl DocStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DocStatus::Current => "current",
            DocStatus::Superseded => "superseded",
            DocStatus::Deleted => "deleted",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<DocStatus> {
        match s {
            "current" => Some(DocStatus::Current),
            "superseded" => Some(DocStatus::Superseded),
            "deleted" => Some(DocStatus::Deleted),
            _ => None,
        }
    }
}

/// A document as listed for a patient (metadata only, no CDA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRow {
    pub unique_id: String,
    pub set_id: String,
    pub version: i64,
    pub seq: i64,
    /// initial | replace | delete (the message that created this version).
    pub lifecycle: String,
    pub status: DocStatus,
    pub type_code: String,
    pub class_code: String,
    pub format_code: String,
    /// XDS practiceSettingCode (TRE_A01 code); `None` when the document did not state it.
    pub practice_setting: Option<String>,
    pub title: String,
    /// INS the document was filed under (differs from the asked INS after a merge).
    pub patient_ins: String,
    pub creation_time: String,
    pub service_start: Option<String>,
    pub service_stop: Option<String>,
    pub confidentiality: String,
    pub visibility: Vec<String>,
    /// generated | received
    pub origin: String,
    pub source_feed: Option<String>,
    pub cda_size: i64,
    pub stored_at: String,
}

/// One lab result of a current document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    pub document_unique_id: String,
    pub loinc: String,
    pub label: String,
    pub value: Option<String>,
    pub value_type: Option<String>,
    pub unit: Option<String>,
    pub interpretation: Option<String>,
    pub reference_low: Option<String>,
    pub reference_high: Option<String>,
    pub reference_text: Option<String>,
    pub status: Option<String>,
    /// Observation time, else the document's creation time (the sort key).
    pub time: String,
}

/// open | released
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineStatus {
    Open,
    Released,
}

impl QuarantineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QuarantineStatus::Open => "open",
            QuarantineStatus::Released => "released",
        }
    }
}

/// A quarantine entry with the item to re-route after a fix.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantineRow {
    pub id: i64,
    pub reason: String,
    pub detail: String,
    pub unique_id: Option<String>,
    pub item: Normalized,
    pub source_feed: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i64>,
    pub source_offset: Option<i64>,
    pub status: QuarantineStatus,
    pub created_at: String,
    pub released_at: Option<String>,
}

/// Result of a patient CSV import (all lines valid, all applied in one transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImportSummary {
    /// Data lines read (header excluded, blank lines skipped).
    pub lines: usize,
    pub inserted: usize,
    pub updated: usize,
}

/// One audit row: what the store did, to which document, from which source message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    /// stored, replaced, superseded, deleted, quarantined, released, patient_upsert,
    /// patient_merge, patient_import.
    pub action: String,
    pub unique_id: Option<String>,
    pub source_topic: Option<String>,
    pub source_partition: Option<i64>,
    pub source_offset: Option<i64>,
    pub detail: String,
}

/// A document version with what the read side needs beyond [`DocumentRow`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentDetail {
    pub row: DocumentRow,
    /// The author's person id (IdNat_PS, RPPS or ADELI) as stored.
    pub author_person_id: Option<String>,
    pub author_organisation_id: Option<String>,
    pub patient_ins_oid: String,
    /// For a replacement: the uniqueId of the version it replaced, when known.
    pub replaces: Option<String>,
    /// The patient's latest masking decision on the set (`Some(true)` masked from
    /// professionals, `Some(false)` unmasked), which overrides the sender's MASQUE_PS.
    pub patient_masked: Option<bool>,
}

impl DocumentDetail {
    /// The TRE_A07 codes in force: the sender's, with MASQUE_PS set or lifted by the
    /// patient's latest decision on the set.
    pub fn effective_visibility(&self) -> Vec<String> {
        let mut codes: Vec<String> = self
            .row
            .visibility
            .iter()
            .filter(|c| c.trim() != "MASQUE_PS")
            .cloned()
            .collect();
        let sender_masked = self.row.visibility.iter().any(|c| c.trim() == "MASQUE_PS");
        if self.patient_masked.unwrap_or(sender_masked) {
            codes.push("MASQUE_PS".to_owned());
        }
        codes
    }
}

/// One row of `access_trace`: who searched or read which DMP, and the decision.
/// Values are the column texts (role: patient | representative | professional | anonymous;
/// action: search | read | create | mask | unmask; purpose: normal | break_glass; outcome: permit | deny).
/// An `anonymous` row (no valid token) has no actor and no patient; a call whose patient is
/// unknown (bad query, missing document) has `patient_ins` empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TraceRow {
    pub id: i64,
    pub recorded_at: String,
    pub actor_role: String,
    pub actor_id: String,
    pub actor_org: Option<String>,
    pub patient_ins: String,
    pub action: String,
    pub query: Option<String>,
    /// uniqueIds of the documents answered (empty for a denial).
    pub document_ids: Vec<String>,
    pub purpose: String,
    pub purpose_reason: Option<String>,
    pub outcome: String,
    /// The authorisation reason code (consult's `Reason::as_str`).
    pub reason: String,
}
