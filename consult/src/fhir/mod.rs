//! The FHIR R4 (4.0.1) resources of the read side, as the ANS PDSm profile of IHE MHD
//! shapes them: pure builders (values in, `serde_json::Value` out, no IO), the ITI-67 /
//! Observation search-parameter parser, and the timestamp conversions they share.
//!
//! Builders never fail: a stored value that cannot be expressed validly in FHIR (a
//! malformed date, a size past `unsignedInt`) is left out rather than written wrong, since
//! every resource returned must validate (`consult/tests/fhir_valid.rs` checks them with
//! HAPI FHIR's validator, `scripts/fhir-validate`).

use serde_json::{Value, json};

pub mod audit_event;
pub mod bundle;
pub mod capability;
pub mod datetime;
pub mod document_reference;
pub mod observation;
pub mod outcome;
pub mod provide;
pub mod search;

/// The code systems and identifier systems written into resources, in one place.
pub mod systems {
    pub const LOINC: &str = "http://loinc.org";
    pub const UCUM: &str = "http://unitsofmeasure.org";
    /// RFC 3986 URIs (masterIdentifier `urn:oid:...`).
    pub const URI: &str = "urn:ietf:rfc:3986";
    /// TRE_A03 ClasseDocument (XDS classCode).
    pub const CLASS_CODE: &str = "urn:oid:1.2.250.1.213.1.1.4.1";
    /// IHE formatCodes (`urn:ihe:...`).
    pub const FORMAT_IHE: &str = "urn:oid:1.3.6.1.4.1.19376.1.2.3";
    /// TRE_A06 FormatCodeComplementaire (`urn:asip:ci-sis:...`, `urn:ans:ci-sis:...`).
    pub const FORMAT_ASIP: &str = "urn:oid:1.2.250.1.213.1.1.4.2.282";
    /// TRE_A01 CadreExercice (XDS practiceSettingCode).
    pub const PRACTICE_SETTING: &str = "urn:oid:1.2.250.1.213.1.1.4.9";
    /// TRE_A07 StatutVisibiliteDocument (DMP masking codes).
    pub const VISIBILITY: &str = "urn:oid:1.2.250.1.213.1.1.4.13";
    /// TRE_G15 profession / specialty of health professionals.
    pub const PROFESSION: &str = "urn:oid:1.2.250.1.213.1.1.4.5";
    pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
    /// IdNat_PS (RPPS-based national id of a professional).
    pub const IDNAT_PS: &str = "urn:oid:1.2.250.1.71.4.2.1";
    /// IdNat_Struct (FINESS/SIRET-based national id of an organisation).
    pub const IDNAT_STRUCT: &str = "urn:oid:1.2.250.1.71.4.2.2";
    pub const INTERPRETATION: &str =
        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
    pub const OBSERVATION_CATEGORY: &str =
        "http://terminology.hl7.org/CodeSystem/observation-category";
    pub const DATA_ABSENT: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";
    /// dmpflow's stable reason codes (`OperationOutcome.issue.details`, AuditEvent outcome).
    pub const DMPFLOW_REASON: &str = "urn:dmpflow:consult:reason";
}

/// A patient as the DMP names it: INS matricule and its OID (.8 NIR, .9 NIA, .10 test,
/// .11 demo). No traits: the read side never returns identity traits (DMPi RG_0320).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientId {
    pub oid: String,
    pub ins: String,
}

impl PatientId {
    /// `{type: Patient, identifier}`: a logical reference, since the server exposes no
    /// Patient resource (the identity lives with the INS teleservice, not here).
    pub fn reference(&self) -> Value {
        json!({
            "type": "Patient",
            "identifier": { "system": format!("urn:oid:{}", self.oid), "value": self.ins }
        })
    }
}

/// A reference to a professional or an organisation by national identifier.
pub(crate) fn identifier_reference(kind: &str, system: &str, value: &str) -> Value {
    json!({ "type": kind, "identifier": { "system": system, "value": value } })
}

/// A single-coding CodeableConcept.
pub(crate) fn concept(system: &str, code: &str, display: Option<&str>) -> Value {
    let mut coding = json!({ "system": system, "code": code });
    if let Some(d) = display.filter(|d| !d.is_empty()) {
        coding["display"] = json!(d);
    }
    json!({ "coding": [coding] })
}

/// Whether `s` is a valid FHIR logical id (`[A-Za-z0-9\-\.]{1,64}`). An OID of 64
/// characters or fewer is one, so a document's uniqueId can serve as its id.
pub fn is_valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Whether `s` is a dotted OID (`1.2.250...`).
pub(crate) fn is_oid(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()))
        && s.contains('.')
}

/// An identifier value as a URI: an OID as `urn:oid:`, a UUID as `urn:uuid:`.
pub(crate) fn uri_identifier(s: &str) -> Option<Value> {
    if is_oid(s) {
        return Some(json!({ "system": systems::URI, "value": format!("urn:oid:{s}") }));
    }
    let hex = s.replace('-', "");
    if s.len() == 36 && hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(
            json!({ "system": systems::URI, "value": format!("urn:uuid:{}", s.to_ascii_lowercase()) }),
        );
    }
    // root^extension (CDA II): the root names the namespace of the extension.
    let (root, ext) = s.split_once('^')?;
    (is_oid(root) && !ext.is_empty())
        .then(|| json!({ "system": format!("urn:oid:{root}"), "value": ext }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_uris() {
        assert!(is_valid_id("1.2.250.1.213.1.1.9.42"));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id(&"1".repeat(65)));
        assert_eq!(uri_identifier("1.2.3").unwrap()["value"], "urn:oid:1.2.3");
        assert_eq!(
            uri_identifier("A1B2C3D4-0000-1111-2222-333344445555").unwrap()["value"],
            "urn:uuid:a1b2c3d4-0000-1111-2222-333344445555"
        );
        assert_eq!(
            uri_identifier("1.2.3^X9").unwrap()["system"],
            "urn:oid:1.2.3"
        );
        assert!(uri_identifier("not an id").is_none());
        assert!(!is_oid("12"));
    }
}
