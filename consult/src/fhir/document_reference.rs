//! DocumentReference (IHE MHD / ANS PDSm) from a stored document's metadata: what ITI-67
//! returns for each match and ITI-68's `Binary/{id}` points at.
//!
//! XDS DocumentEntry → DocumentReference, one to one as PDSm maps it: uniqueId →
//! masterIdentifier, setId → identifier, availabilityStatus → status, typeCode → type,
//! classCode → category, confidentialityCode + DMP masking codes → securityLabel,
//! serviceStart/Stop → context.period, practiceSetting → context.practiceSetting,
//! RPLC → relatesTo.replaces.

use base64::Engine;
use serde_json::{Value, json};

use super::{PatientId, concept, datetime, identifier_reference, systems, uri_identifier};

/// The stored status of a version (store's `documents.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Current,
    Superseded,
    /// Logically deleted (HL7 delete, ITI-57): MHD's `entered-in-error`.
    Deleted,
}

impl Status {
    pub fn fhir_code(self) -> &'static str {
        match self {
            Status::Current => "current",
            Status::Superseded => "superseded",
            Status::Deleted => "entered-in-error",
        }
    }

    /// The store's words (`current`, `superseded`, `deleted`).
    pub fn from_store(s: &str) -> Option<Status> {
        match s {
            "current" => Some(Status::Current),
            "superseded" => Some(Status::Superseded),
            "deleted" => Some(Status::Deleted),
            _ => None,
        }
    }
}

/// What a DocumentReference is built from: a store document row (`DocumentRow`) plus what
/// the server decides (ids, base URL parts) and what it computed (hashes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentInput {
    /// The resource's logical id (see `is_valid_id`); also names the `Binary/{id}`.
    pub id: String,
    pub unique_id: String,
    pub set_id: String,
    pub status: Status,
    /// LOINC (JDV_J07), e.g. 11502-2.
    pub type_code: String,
    pub type_display: Option<String>,
    /// TRE_A03 class code, e.g. 10.
    pub class_code: String,
    pub format_code: String,
    pub practice_setting: Option<String>,
    pub title: String,
    pub patient: PatientId,
    /// IdNat_PS of the author, when known.
    pub author_person: Option<String>,
    /// IdNat_Struct of the author's organisation, when known.
    pub author_organisation: Option<String>,
    /// CDA effectiveTime (HL7 or ISO).
    pub creation_time: String,
    pub service_start: Option<String>,
    pub service_stop: Option<String>,
    /// When the store recorded this version (used for `date` when the creation time has
    /// no time of day: `date` is an `instant`).
    pub stored_at: Option<String>,
    /// CDA confidentialityCode: N, R or V.
    pub confidentiality: String,
    /// MetaDMPMSS flags set to Y (MASQUE_PS, INVISIBLE_PATIENT ...).
    pub visibility: Vec<String>,
    /// Usually `application/hl7-cda+xml`.
    pub content_type: String,
    /// Size of the document in bytes.
    pub size: i64,
    /// SHA-1 of the document, when known: FHIR's `Attachment.hash` is SHA-1 only, so the
    /// store's SHA-256 has no place here and is left out rather than mislabelled.
    pub sha1: Option<[u8; 20]>,
    /// Logical id of the DocumentReference this version replaces (RPLC).
    pub replaces: Option<String>,
}

/// TRE_A07 code of a stored visibility flag: the HL7 v2 feed spells one differently, and
/// flags that are not visibility statuses (CONNEXION_SECRETE ...) have no TRE_A07 code.
fn visibility_code(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "MASQUE_PS" => "MASQUE_PS",
        "INVISIBLE_PATIENT" => "INVISIBLE_PATIENT",
        "INVISIBLE_REP_LEGAUX" | "INVISIBLE_REPRESENTANTS_LEGAUX" => {
            "INVISIBLE_REPRESENTANTS_LEGAUX"
        }
        "MASQUE_PSOCIAL" => "MASQUE_PSOCIAL",
        "MASQUE_PT" => "MASQUE_PT",
        _ => return None,
    })
}

/// The coding system of a formatCode, by its namespace.
fn format_system(code: &str) -> &'static str {
    if code.starts_with("urn:asip:") || code.starts_with("urn:ans:") {
        systems::FORMAT_ASIP
    } else {
        systems::FORMAT_IHE
    }
}

/// Builds the DocumentReference.
pub fn document_reference(d: &DocumentInput) -> Value {
    let mut r = json!({
        "resourceType": "DocumentReference",
        "id": d.id,
        "status": d.status.fhir_code(),
        "docStatus": "final",
        "type": concept(systems::LOINC, &d.type_code, d.type_display.as_deref()),
        "category": [concept(systems::CLASS_CODE, &d.class_code, None)],
        "subject": d.patient.reference(),
    });
    if let Some(id) = uri_identifier(&d.unique_id) {
        r["masterIdentifier"] = id;
    }
    if let Some(mut id) = uri_identifier(&d.set_id) {
        // The setId, shared by every version: secondary beside the uniqueId.
        id["use"] = json!("secondary");
        r["identifier"] = json!([id]);
    }
    let date = datetime::parse(&d.creation_time)
        .ok()
        .and_then(|s| s.to_fhir_instant())
        .or_else(|| {
            d.stored_at
                .as_deref()
                .and_then(|s| datetime::fhir_instant(s).ok())
        });
    if let Some(date) = date {
        r["date"] = json!(date);
    }

    let mut authors = Vec::new();
    if let Some(p) = d.author_person.as_deref().filter(|p| !p.is_empty()) {
        authors.push(identifier_reference("Practitioner", systems::IDNAT_PS, p));
    }
    if let Some(o) = d.author_organisation.as_deref().filter(|o| !o.is_empty()) {
        authors.push(identifier_reference(
            "Organization",
            systems::IDNAT_STRUCT,
            o,
        ));
    }
    if !authors.is_empty() {
        r["author"] = json!(authors);
    }
    if !d.title.is_empty() {
        r["description"] = json!(d.title);
    }

    let mut labels = Vec::new();
    if ["N", "R", "V", "L", "M", "U"].contains(&d.confidentiality.as_str()) {
        labels.push(concept(systems::CONFIDENTIALITY, &d.confidentiality, None));
    }
    for code in d.visibility.iter().filter_map(|f| visibility_code(f)) {
        labels.push(concept(systems::VISIBILITY, code, None));
    }
    if !labels.is_empty() {
        r["securityLabel"] = json!(labels);
    }

    let mut attachment = json!({
        "contentType": d.content_type,
        "language": "fr-FR",
        "url": format!("Binary/{}", d.id),
    });
    if let Ok(size) = u32::try_from(d.size) {
        attachment["size"] = json!(size);
    }
    if let Some(sha1) = d.sha1 {
        attachment["hash"] = json!(base64::engine::general_purpose::STANDARD.encode(sha1));
    }
    if !d.title.is_empty() {
        attachment["title"] = json!(d.title);
    }
    if let Ok(created) = datetime::fhir_date_time(&d.creation_time) {
        attachment["creation"] = json!(created);
    }
    let mut content = json!({ "attachment": attachment });
    if !d.format_code.is_empty() {
        content["format"] =
            json!({ "system": format_system(&d.format_code), "code": d.format_code });
    }
    r["content"] = json!([content]);

    let mut context = json!({});
    let start = d
        .service_start
        .as_deref()
        .and_then(|s| datetime::fhir_date_time(s).ok());
    let end = d
        .service_stop
        .as_deref()
        .and_then(|s| datetime::fhir_date_time(s).ok());
    if start.is_some() || end.is_some() {
        let mut period = json!({});
        if let Some(s) = start {
            period["start"] = json!(s);
        }
        if let Some(e) = end {
            period["end"] = json!(e);
        }
        context["period"] = period;
    }
    if let Some(ps) = d.practice_setting.as_deref().filter(|p| !p.is_empty()) {
        context["practiceSetting"] = concept(systems::PRACTICE_SETTING, ps, None);
    }
    if context.as_object().is_some_and(|c| !c.is_empty()) {
        r["context"] = context;
    }
    if let Some(target) = &d.replaces {
        r["relatesTo"] = json!([{
            "code": "replaces",
            "target": { "reference": format!("DocumentReference/{target}") }
        }]);
    }
    r
}

#[cfg(test)]
pub(crate) fn example() -> DocumentInput {
    DocumentInput {
        id: "1.2.250.1.999.1.1.20240306.2".into(),
        unique_id: "1.2.250.1.999.1.1.20240306.2".into(),
        set_id: "1.2.250.1.999.1.2.20240306".into(),
        status: Status::Current,
        type_code: "11502-2".into(),
        type_display: Some("CR d'examens biologiques".into()),
        class_code: "10".into(),
        format_code: "urn:ihe:lab:xd-lab:2008".into(),
        practice_setting: Some("ETABLISSEMENT".into()),
        title: "CR de biologie".into(),
        patient: PatientId {
            oid: "1.2.250.1.213.1.4.10".into(),
            ins: "279035121518989".into(),
        },
        author_person: Some("801234534765".into()),
        author_organisation: Some("1750000000".into()),
        creation_time: "20240306111154+0100".into(),
        service_start: Some("20240306080000+0100".into()),
        service_stop: Some("20240306110000".into()),
        stored_at: Some("2024-03-06T10:12:00Z".into()),
        confidentiality: "N".into(),
        visibility: vec![
            "MASQUE_PS".into(),
            "INVISIBLE_REP_LEGAUX".into(),
            "CONNEXION_SECRETE".into(),
        ],
        content_type: "application/hl7-cda+xml".into(),
        size: 18_342,
        sha1: Some([0xab; 20]),
        replaces: Some("1.2.250.1.999.1.1.20240306.1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_xds_metadata() {
        let r = document_reference(&example());
        assert_eq!(r["status"], "current");
        assert_eq!(
            r["masterIdentifier"]["value"],
            "urn:oid:1.2.250.1.999.1.1.20240306.2"
        );
        assert_eq!(
            r["identifier"][0]["value"],
            "urn:oid:1.2.250.1.999.1.2.20240306"
        );
        assert_eq!(r["type"]["coding"][0]["system"], "http://loinc.org");
        assert_eq!(r["category"][0]["coding"][0]["code"], "10");
        assert_eq!(
            r["subject"]["identifier"]["system"],
            "urn:oid:1.2.250.1.213.1.4.10"
        );
        assert_eq!(r["date"], "2024-03-06T11:11:54+01:00");
        assert_eq!(
            r["content"][0]["attachment"]["url"],
            "Binary/1.2.250.1.999.1.1.20240306.2"
        );
        assert_eq!(
            r["content"][0]["attachment"]["hash"],
            "q6urq6urq6urq6urq6urq6urq6s="
        );
        assert_eq!(r["content"][0]["format"]["system"], systems::FORMAT_IHE);
        assert_eq!(r["context"]["period"]["end"], "2024-03-06T11:00:00+01:00");
        assert_eq!(
            r["relatesTo"][0]["target"]["reference"],
            "DocumentReference/1.2.250.1.999.1.1.20240306.1"
        );
        let labels: Vec<&str> = r["securityLabel"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(labels, ["N", "MASQUE_PS", "INVISIBLE_REPRESENTANTS_LEGAUX"]);
    }

    #[test]
    fn deleted_is_entered_in_error_and_bad_values_are_left_out() {
        let mut d = example();
        d.status = Status::Deleted;
        d.creation_time = "20240306".into();
        d.stored_at = None;
        d.sha1 = None;
        d.size = -1;
        d.format_code = "urn:asip:ci-sis:frcp:2011".into();
        d.service_start = Some("garbage".into());
        d.service_stop = None;
        d.practice_setting = None;
        d.replaces = None;
        let r = document_reference(&d);
        assert_eq!(r["status"], "entered-in-error");
        assert!(r.get("date").is_none());
        assert_eq!(r["content"][0]["attachment"]["creation"], "2024-03-06");
        assert!(r["content"][0]["attachment"].get("hash").is_none());
        assert!(r["content"][0]["attachment"].get("size").is_none());
        assert_eq!(r["content"][0]["format"]["system"], systems::FORMAT_ASIP);
        assert!(r.get("context").is_none());
        assert!(r.get("relatesTo").is_none());
        assert_eq!(Status::from_store("deleted"), Some(Status::Deleted));
    }
}
