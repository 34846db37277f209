//! Typed clinical records: what the HL7 v2 mappings read out of a message, and what the CDA
//! writers turn into CI-SIS documents. This is the seam between `hl7`/`mapping` (reading)
//! and `cda` (writing): neither side knows the other's format.
//!
//! Strings here are already decoded (escapes resolved, UTF-8). Times are HL7 DTM strings
//! (`YYYYMMDDHHMMSS[+ZZZZ]`, any precision), which is also the CDA TS format.

use dmpflow_schemas::{Lifecycle, PatientIdentity};

/// A coded value (CE/CWE): code, display name, coding system OID.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coded {
    pub code: String,
    pub display: String,
    /// OID of the code system (LOINC 2.16.840.1.113883.6.1, ...). Mappings translate HL7
    /// table names (LN, ...) into OIDs.
    pub system: String,
}

/// A health professional (author, prescriber, pharmacist, legal authenticator).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Professional {
    /// National id (IdNat_PS, root 1.2.250.1.71.4.2.1), e.g. "801234567866".
    pub id: String,
    pub family: String,
    pub given: String,
    /// TRE_G15 profession/specialty code, e.g. "G15_10/SM03"; empty when unknown.
    pub specialty: String,
}

/// An organisation (laboratory, imaging centre, pharmacy).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Organisation {
    /// IdNat_Struct (root 1.2.250.1.71.4.2.2), e.g. "1120459876".
    pub id: String,
    pub name: String,
}

/// Common header of every generated document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentHeader {
    /// Full OID, deterministic from sender + control id + position.
    pub unique_id: String,
    pub set_id: String,
    pub version: u32,
    pub lifecycle: Lifecycle,
    /// For a replacement: the uniqueId of the replaced document (relatedDocument).
    pub replaces: Option<String>,
    /// Document creation time (MSH-7 or OBR-22), HL7 DTM.
    pub effective_time: String,
    pub patient: PatientIdentity,
    pub author: Professional,
    pub organisation: Organisation,
    /// Legal authenticator; the author when the message names nobody else.
    pub legal_authenticator: Professional,
    /// TRE_R02 secteur d'activité, e.g. "SA25" (lab), "SA29" (imaging), "SA33" (pharmacy).
    pub facility_sector: String,
    /// TRE_A01 cadre d'exercice, e.g. "AMBULATOIRE".
    pub practice_setting: String,
    /// Service period (serviceEvent effectiveTime low/high).
    pub service_start: Option<String>,
    pub service_stop: Option<String>,
    /// CDA confidentialityCode: N normally.
    pub confidentiality: String,
}

/// Reference range of a numeric result.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferenceRange {
    pub low: Option<String>,
    pub high: Option<String>,
    /// Raw OBX-7 text when it is not a plain low-high range.
    pub text: Option<String>,
}

/// A result value, by OBX-2 type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultValue {
    /// NM: decimal text as sent (e.g. "1.950"), UCUM unit (may be "1" when unitless).
    Quantity { value: String, unit: String },
    /// SN: comparator ("<", ">", "<=", ">=" or "") and number(s).
    Structured {
        comparator: String,
        value: String,
        unit: String,
    },
    /// CE/CWE.
    Coded(Coded),
    /// ST/TX/FT: free text (several OBX lines already joined with '\n').
    Text(String),
}

/// One lab observation (OBX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabObservation {
    /// OBX-3 as LOINC (system 2.16.840.1.113883.6.1) or a local code.
    pub code: Coded,
    pub value: ResultValue,
    pub range: ReferenceRange,
    /// OBX-8 mapped to ObservationInterpretation (N, L, H, LL, HH, A, ...).
    pub interpretation: Option<String>,
    /// OBX-11: F, C, P.
    pub status: String,
    /// OBX-14 or OBR-7.
    pub time: Option<String>,
    /// NTE lines following the OBX.
    pub comments: Vec<String>,
}

/// One OBR battery with its observations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabBattery {
    /// OBR-4 (LOINC of the battery/exam).
    pub code: Coded,
    /// LOINC chapter the battery belongs to (18719-5 Biochimie, 18723-7 Hématologie, ...).
    pub chapter: Coded,
    /// OBR-7 observation (sampling) time.
    pub specimen_time: Option<String>,
    /// OBR-25: F, C, P.
    pub status: String,
    pub observations: Vec<LabObservation>,
    /// NTE lines following the OBR.
    pub comments: Vec<String>,
}

/// CR-BIO (lab report) content.
#[derive(Debug, Clone, PartialEq)]
pub struct LabReport {
    pub header: DocumentHeader,
    /// Order (placer) number, ORC-2/OBR-2.
    pub order_id: String,
    pub prescriber: Option<Professional>,
    pub batteries: Vec<LabBattery>,
}

/// CR-IMG (imaging report) content.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagingReport {
    pub header: DocumentHeader,
    pub order_id: String,
    /// OBR-18 / ZDS-1 / OBX with DICOM Study Instance UID, when present.
    pub study_instance_uid: Option<String>,
    pub accession_number: Option<String>,
    /// Exam code (OBR-4): LOINC of the procedure when given.
    pub exam: Coded,
    /// DICOM modality (CT, MR, US, DX ...), when given.
    pub modality: Option<String>,
    /// Report text, one entry per paragraph (OBX TX/FT lines).
    pub paragraphs: Vec<String>,
    pub prescriber: Option<Professional>,
}

/// One dispensed product (RXD).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispensedItem {
    /// CIP13 or UCD13, check digit verified by the mapping.
    pub code: String,
    /// 1.2.250.1.213.2.3.2 (CIP) or 1.2.250.1.213.2.61 (UCD).
    pub code_system: String,
    pub label: String,
    /// RXD-4 amount and RXD-5 unit.
    pub quantity: String,
    pub unit: Option<String>,
    /// RXD-3.
    pub dispensed_at: String,
    /// RXD-7 prescription number.
    pub prescription_id: Option<String>,
}

/// eDISP-MED (dispensation) content.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispensation {
    pub header: DocumentHeader,
    /// ORC-2 / RXD-7.
    pub prescription_id: Option<String>,
    pub prescriber: Option<Professional>,
    /// The dispensing pharmacist (RXD-10); also the author.
    pub pharmacist: Professional,
    pub items: Vec<DispensedItem>,
}
