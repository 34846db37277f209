//! ITI-65 Provide Document Bundle, the FHIR half (pure): the transaction Bundle a
//! professional's software posts is read into a [`Submission`] (one DocumentReference, the
//! Binary CDA it points to, an optional SubmissionSet List), its patient and document
//! identifiers are checked against the CDA's own header ([`check_against_cda`]), and the
//! `transaction-response` is built ([`transaction_response`]).
//!
//! What is accepted is deliberately narrow, since the document then goes through the same
//! normalize → route → store path as an HL7 v2 MDM^T02 would (the server wraps it into
//! one), and that path takes exactly one finished CDA per message:
//! - a Bundle of `type: transaction`, with at most [`MAX_ENTRIES`] entries, each a `POST`
//!   of a DocumentReference, a Binary or a List, with a `fullUrl`; any other resource type
//!   is refused (`provide.entry.unsupported`) rather than silently dropped;
//! - exactly one DocumentReference with one `content.attachment.url` naming the `fullUrl`
//!   of the Bundle's only Binary, whose `contentType` is `application/hl7-cda+xml` and
//!   whose `data` is the base64 CDA;
//! - `DocumentReference.subject.identifier`: the INS (`urn:oid:` one of the four INS
//!   OIDs, and the matricule). It must name the CDA's recordTarget INS (identity
//!   vigilance: a mismatch is 422 and nothing is written);
//! - a List (the SubmissionSet) is read for its type only and otherwise ignored: the DMP's
//!   submission set metadata come from the CDA, as for the HL7 v2 feeds.
//!
//! Errors carry stable reason codes (`provide.*`, listed on [`ProvideError`]) and fixed
//! diagnostics: nothing of the request (no INS, no identifier) is echoed back.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value, json};

use super::PatientId;
use super::bundle::encode_component;
use super::outcome::IssueType;

/// Most entries a Bundle may hold: a DocumentReference, its Binary, a List, and room for
/// nothing else worth reading. Checked before any entry is looked at.
pub const MAX_ENTRIES: usize = 8;
/// The only Binary content type dmpflow takes: a CDA R2 document.
pub const CDA_CONTENT_TYPE: &str = "application/hl7-cda+xml";
/// The INS OIDs (NIR, NIA, test, demo), as `DocumentReference.subject.identifier.system`.
const INS_OIDS: [&str; 4] = [
    "1.2.250.1.213.1.4.8",
    "1.2.250.1.213.1.4.9",
    "1.2.250.1.213.1.4.10",
    "1.2.250.1.213.1.4.11",
];

/// A refused submission: HTTP status, FHIR issue type, reason code, fixed explanation.
///
/// Reason codes: `provide.bundle.invalid` (not JSON, not a Bundle, no entries),
/// `provide.bundle.not_transaction`, `provide.bundle.too_many_entries`,
/// `provide.entry.invalid` (no fullUrl or resource, not a POST, a fullUrl twice),
/// `provide.entry.unsupported` (a resource type other than DocumentReference, Binary,
/// List), `provide.document_reference.missing`, `provide.document_reference.multiple`,
/// `provide.attachment.invalid` (not exactly one content whose attachment.url names the
/// Binary), `provide.binary.missing`, `provide.binary.multiple`,
/// `provide.binary.content_type`, `provide.binary.base64_invalid`,
/// `provide.subject.invalid` (no INS identifier), `provide.master_identifier.invalid`;
/// 422: `provide.patient.mismatch`, `provide.document.mismatch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvideError {
    pub status: u16,
    pub code: IssueType,
    pub reason: &'static str,
    pub diagnostics: &'static str,
}

fn bad(code: IssueType, reason: &'static str, diagnostics: &'static str) -> ProvideError {
    ProvideError {
        status: 400,
        code,
        reason,
        diagnostics,
    }
}

fn invalid(reason: &'static str, diagnostics: &'static str) -> ProvideError {
    bad(IssueType::Invalid, reason, diagnostics)
}

/// The kind of one entry, in the Bundle's order (the response repeats it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    DocumentReference,
    Binary,
    SubmissionSet,
}

/// What a valid Bundle asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// `DocumentReference.subject.identifier`: the INS the submitter names.
    pub patient: PatientId,
    /// The Binary's bytes, decoded.
    pub cda: Vec<u8>,
    /// `DocumentReference.masterIdentifier` as a DMP uniqueId (`root` or `root^ext`).
    pub master_identifier: Option<String>,
    pub entries: Vec<EntryKind>,
}

fn str_at<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// Reads a transaction Bundle (the request body, already size-bounded by the caller).
pub fn parse_bundle(body: &[u8]) -> Result<Submission, ProvideError> {
    let bundle: Value = serde_json::from_slice(body)
        .map_err(|_| invalid("provide.bundle.invalid", "the body is not a JSON resource"))?;
    if str_at(&bundle, "resourceType") != Some("Bundle") {
        return Err(invalid(
            "provide.bundle.invalid",
            "the body is not a Bundle",
        ));
    }
    if str_at(&bundle, "type") != Some("transaction") {
        return Err(invalid(
            "provide.bundle.not_transaction",
            "ITI-65 takes a Bundle of type 'transaction'",
        ));
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| invalid("provide.bundle.invalid", "the Bundle has no entry"))?;
    if entries.len() > MAX_ENTRIES {
        return Err(bad(
            IssueType::TooCostly,
            "provide.bundle.too_many_entries",
            "at most 8 entries: one DocumentReference, its Binary and a SubmissionSet List",
        ));
    }
    let mut kinds = Vec::with_capacity(entries.len());
    let mut full_urls: Vec<&str> = Vec::with_capacity(entries.len());
    let mut doc_refs = Vec::new();
    let mut binaries = Vec::new();
    for e in entries {
        let full_url = str_at(e, "fullUrl")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| invalid("provide.entry.invalid", "every entry needs a fullUrl"))?;
        if full_urls.contains(&full_url) {
            return Err(invalid(
                "provide.entry.invalid",
                "two entries share a fullUrl",
            ));
        }
        full_urls.push(full_url);
        let resource = e
            .get("resource")
            .filter(|r| r.is_object())
            .ok_or_else(|| invalid("provide.entry.invalid", "every entry needs a resource"))?;
        let method = e.get("request").and_then(|r| str_at(r, "method"));
        if method != Some("POST") {
            return Err(invalid(
                "provide.entry.invalid",
                "every entry of an ITI-65 transaction is a POST (entry.request.method)",
            ));
        }
        match str_at(resource, "resourceType") {
            Some("DocumentReference") => {
                kinds.push(EntryKind::DocumentReference);
                doc_refs.push(resource);
            }
            Some("Binary") => {
                kinds.push(EntryKind::Binary);
                binaries.push((full_url, resource));
            }
            Some("List") => kinds.push(EntryKind::SubmissionSet),
            _ => {
                return Err(bad(
                    IssueType::NotSupported,
                    "provide.entry.unsupported",
                    "an ITI-65 Bundle holds a DocumentReference, its Binary and optionally a List; nothing else",
                ));
            }
        }
    }
    let doc_ref = match doc_refs.as_slice() {
        [] => {
            return Err(bad(
                IssueType::Required,
                "provide.document_reference.missing",
                "the Bundle has no DocumentReference",
            ));
        }
        [one] => *one,
        _ => {
            return Err(bad(
                IssueType::NotSupported,
                "provide.document_reference.multiple",
                "one document per Bundle",
            ));
        }
    };
    let url = attachment_url(doc_ref)?;
    let (_, binary) = match binaries.as_slice() {
        [] => {
            return Err(bad(
                IssueType::Required,
                "provide.binary.missing",
                "the Bundle has no Binary for the DocumentReference's attachment",
            ));
        }
        [one] => *one,
        _ => {
            return Err(bad(
                IssueType::NotSupported,
                "provide.binary.multiple",
                "one Binary per Bundle: the CDA of its DocumentReference",
            ));
        }
    };
    if binaries[0].0 != url {
        return Err(bad(
            IssueType::Required,
            "provide.binary.missing",
            "DocumentReference.content.attachment.url does not name the Bundle's Binary (its fullUrl)",
        ));
    }
    let content_type = str_at(binary, "contentType").unwrap_or_default();
    if !is_cda_type(content_type) {
        return Err(invalid(
            "provide.binary.content_type",
            "Binary.contentType must be application/hl7-cda+xml",
        ));
    }
    let cda = decode_base64(str_at(binary, "data").unwrap_or_default()).ok_or_else(|| {
        invalid(
            "provide.binary.base64_invalid",
            "Binary.data is missing or not base64",
        )
    })?;
    Ok(Submission {
        patient: subject(doc_ref)?,
        cda,
        master_identifier: master_identifier(doc_ref)?,
        entries: kinds,
    })
}

/// `application/hl7-cda+xml`, in any case, parameters (`; charset=...`) ignored.
fn is_cda_type(t: &str) -> bool {
    t.split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(CDA_CONTENT_TYPE))
}

/// The one `content[].attachment.url`; its contentType, when given, must be a CDA's.
fn attachment_url(doc_ref: &Value) -> Result<&str, ProvideError> {
    let wrong = || {
        invalid(
            "provide.attachment.invalid",
            "DocumentReference.content must be one attachment whose url is the Binary's fullUrl",
        )
    };
    let content = doc_ref
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(wrong)?;
    let [one] = content.as_slice() else {
        return Err(wrong());
    };
    let attachment = one.get("attachment").ok_or_else(wrong)?;
    if let Some(t) = str_at(attachment, "contentType")
        && !is_cda_type(t)
    {
        return Err(invalid(
            "provide.binary.content_type",
            "attachment.contentType must be application/hl7-cda+xml",
        ));
    }
    str_at(attachment, "url")
        .filter(|u| !u.is_empty())
        .ok_or_else(wrong)
}

/// FHIR base64Binary: the standard alphabet, whitespace allowed between characters,
/// padding optional. Empty is not a document.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        return None;
    }
    ENGINE.decode(&compact).ok()
}

/// `subject.identifier` = `urn:oid:<INS OID>` | matricule.
fn subject(doc_ref: &Value) -> Result<PatientId, ProvideError> {
    let wrong = || {
        bad(
            IssueType::Required,
            "provide.subject.invalid",
            "DocumentReference.subject.identifier must be the patient's INS (system urn:oid:1.2.250.1.213.1.4.8, .9, .10 or .11)",
        )
    };
    let id = doc_ref
        .get("subject")
        .and_then(|s| s.get("identifier"))
        .ok_or_else(wrong)?;
    let oid = str_at(id, "system")
        .and_then(|s| s.strip_prefix("urn:oid:"))
        .filter(|o| INS_OIDS.contains(o))
        .ok_or_else(wrong)?;
    let ins = str_at(id, "value")
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 32)
        .ok_or_else(wrong)?;
    Ok(PatientId {
        oid: oid.to_owned(),
        ins: ins.to_owned(),
    })
}

/// `masterIdentifier` back to a uniqueId: the inverse of what the read side writes
/// (`urn:ietf:rfc:3986` + `urn:oid:<oid>` or `urn:uuid:<uuid>`, or `urn:oid:<root>` +
/// extension). Absent: nothing to compare.
fn master_identifier(doc_ref: &Value) -> Result<Option<String>, ProvideError> {
    let Some(mi) = doc_ref.get("masterIdentifier") else {
        return Ok(None);
    };
    let wrong = || {
        invalid(
            "provide.master_identifier.invalid",
            "masterIdentifier must be the CDA's id: urn:ietf:rfc:3986 with urn:oid:/urn:uuid:, or system urn:oid:<root> with the extension",
        )
    };
    let system = str_at(mi, "system").ok_or_else(wrong)?;
    let value = str_at(mi, "value")
        .filter(|v| !v.is_empty())
        .ok_or_else(wrong)?;
    if system == super::systems::URI {
        return value
            .strip_prefix("urn:oid:")
            .or_else(|| value.strip_prefix("urn:uuid:"))
            .filter(|v| !v.is_empty())
            .map(|v| Some(v.to_owned()))
            .ok_or_else(wrong);
    }
    system
        .strip_prefix("urn:oid:")
        .filter(|r| super::is_oid(r))
        .map(|root| Some(format!("{root}^{value}")))
        .ok_or_else(wrong)
}

/// Identity vigilance before anything is written: the INS the submitter names must be the
/// CDA's recordTarget INS (same OID, same matricule), and a masterIdentifier, when given,
/// the CDA's id (a UUID compared without regard to case).
pub fn check_against_cda(
    sub: &Submission,
    cda_patient: &PatientId,
    cda_unique_id: Option<&str>,
) -> Result<(), ProvideError> {
    if sub.patient != *cda_patient {
        return Err(ProvideError {
            status: 422,
            code: IssueType::Processing,
            reason: "provide.patient.mismatch",
            diagnostics: "DocumentReference.subject does not name the CDA's recordTarget INS: nothing was written",
        });
    }
    if let Some(mi) = &sub.master_identifier
        && !cda_unique_id.is_some_and(|id| id.eq_ignore_ascii_case(mi))
    {
        return Err(ProvideError {
            status: 422,
            code: IssueType::Processing,
            reason: "provide.document.mismatch",
            diagnostics: "DocumentReference.masterIdentifier is not the CDA's id: nothing was written",
        });
    }
    Ok(())
}

/// The `transaction-response`: one entry per request entry, in order. The DocumentReference
/// and the Binary are `201 Created` at the location the read side will serve them from
/// (the CDA's uniqueId) once the pipeline stored them; the List is answered `200 OK` with
/// an informational issue, since no SubmissionSet is kept.
pub fn transaction_response(base: &str, unique_id: &str, entries: &[EntryKind]) -> Value {
    let id = encode_component(unique_id);
    let entry: Vec<Value> = entries
        .iter()
        .map(|k| match k {
            EntryKind::DocumentReference => json!({ "response": {
                "status": "201 Created",
                "location": format!("{base}/DocumentReference/{id}"),
            }}),
            EntryKind::Binary => json!({ "response": {
                "status": "201 Created",
                "location": format!("{base}/Binary/{id}"),
            }}),
            EntryKind::SubmissionSet => json!({ "response": {
                "status": "200 OK",
                "outcome": super::outcome::operation_outcome(&[super::outcome::Issue {
                    severity: super::outcome::Severity::Information,
                    code: IssueType::Informational,
                    reason: "provide.submission_set.ignored".into(),
                    diagnostics: Some("the SubmissionSet List is not kept: the DMP metadata come from the CDA".into()),
                    expression: None,
                }]),
            }}),
        })
        .collect();
    json!({ "resourceType": "Bundle", "type": "transaction-response", "entry": entry })
}

#[cfg(test)]
mod tests {
    use super::*;

    const B64_CDA: &str = "PENsaW5pY2FsRG9jdW1lbnQvPg=="; // <ClinicalDocument/>

    fn bundle(extra: Vec<Value>) -> Value {
        let mut entries = vec![
            json!({
                "fullUrl": "urn:uuid:0c287d32-01e3-4d87-9953-9fcc9404eb21",
                "resource": {
                    "resourceType": "DocumentReference",
                    "masterIdentifier": { "system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.3.4" },
                    "status": "current",
                    "subject": { "identifier": { "system": "urn:oid:1.2.250.1.213.1.4.10", "value": "248000000000000" } },
                    "content": [{ "attachment": {
                        "contentType": "application/hl7-cda+xml",
                        "url": "urn:uuid:7e0f4a3e-6f2f-4bd0-a6b6-6cfa3a5e0d01"
                    }}]
                },
                "request": { "method": "POST", "url": "DocumentReference" }
            }),
            json!({
                "fullUrl": "urn:uuid:7e0f4a3e-6f2f-4bd0-a6b6-6cfa3a5e0d01",
                "resource": { "resourceType": "Binary", "contentType": "application/hl7-cda+xml", "data": B64_CDA },
                "request": { "method": "POST", "url": "Binary" }
            }),
        ];
        entries.extend(extra);
        json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
    }

    fn reason(v: &Value) -> &'static str {
        parse_bundle(v.to_string().as_bytes()).unwrap_err().reason
    }

    #[test]
    fn reads_a_valid_bundle() {
        let list = json!({
            "fullUrl": "urn:uuid:aa",
            "resource": { "resourceType": "List", "status": "current", "mode": "working" },
            "request": { "method": "POST", "url": "List" }
        });
        let s = parse_bundle(bundle(vec![list]).to_string().as_bytes()).unwrap();
        assert_eq!(s.cda, b"<ClinicalDocument/>");
        assert_eq!(s.patient.oid, "1.2.250.1.213.1.4.10");
        assert_eq!(s.patient.ins, "248000000000000");
        assert_eq!(s.master_identifier.as_deref(), Some("1.2.3.4"));
        assert_eq!(
            s.entries,
            [
                EntryKind::DocumentReference,
                EntryKind::Binary,
                EntryKind::SubmissionSet
            ]
        );
        let r = transaction_response("https://x/fhir", "1.2.3^A", &s.entries);
        assert_eq!(r["type"], "transaction-response");
        assert_eq!(r["entry"][0]["response"]["status"], "201 Created");
        assert_eq!(
            r["entry"][0]["response"]["location"],
            "https://x/fhir/DocumentReference/1.2.3%5EA"
        );
        assert_eq!(
            r["entry"][1]["response"]["location"],
            "https://x/fhir/Binary/1.2.3%5EA"
        );
        assert_eq!(r["entry"][2]["response"]["status"], "200 OK");
    }

    #[test]
    fn refuses_what_is_not_a_transaction_bundle() {
        assert_eq!(
            parse_bundle(b"not json").unwrap_err().reason,
            "provide.bundle.invalid"
        );
        assert_eq!(
            reason(&json!({"resourceType": "Patient"})),
            "provide.bundle.invalid"
        );
        let mut b = bundle(vec![]);
        b["type"] = json!("batch");
        assert_eq!(reason(&b), "provide.bundle.not_transaction");
        b["type"] = json!("transaction");
        b["entry"] = json!([]);
        assert_eq!(reason(&b), "provide.bundle.invalid");
    }

    #[test]
    fn refuses_unknown_types_and_bad_entries() {
        let patient = json!({
            "fullUrl": "urn:uuid:p",
            "resource": { "resourceType": "Patient" },
            "request": { "method": "POST", "url": "Patient" }
        });
        let e = parse_bundle(bundle(vec![patient]).to_string().as_bytes()).unwrap_err();
        assert_eq!((e.reason, e.status), ("provide.entry.unsupported", 400));
        let mut b = bundle(vec![]);
        b["entry"][1]["request"]["method"] = json!("PUT");
        assert_eq!(reason(&b), "provide.entry.invalid");
        let mut b = bundle(vec![]);
        b["entry"][1]["fullUrl"] = b["entry"][0]["fullUrl"].clone();
        assert_eq!(reason(&b), "provide.entry.invalid");
        let many: Vec<Value> = (0..MAX_ENTRIES)
            .map(|i| json!({"fullUrl": format!("urn:uuid:{i}"), "resource": {"resourceType": "List"}, "request": {"method": "POST"}}))
            .collect();
        assert_eq!(reason(&bundle(many)), "provide.bundle.too_many_entries");
    }

    #[test]
    fn needs_one_document_and_its_binary() {
        let mut b = bundle(vec![]);
        b["entry"].as_array_mut().unwrap().remove(1);
        assert_eq!(reason(&b), "provide.binary.missing");
        let mut b = bundle(vec![]);
        b["entry"].as_array_mut().unwrap().remove(0);
        assert_eq!(reason(&b), "provide.document_reference.missing");
        let mut b = bundle(vec![]);
        b["entry"][0]["resource"]["content"][0]["attachment"]["url"] = json!("urn:uuid:other");
        assert_eq!(reason(&b), "provide.binary.missing");
        let mut b = bundle(vec![]);
        let mut second = b["entry"][0].clone();
        second["fullUrl"] = json!("urn:uuid:second");
        b["entry"].as_array_mut().unwrap().push(second);
        assert_eq!(reason(&b), "provide.document_reference.multiple");
        let mut b = bundle(vec![]);
        b["entry"][0]["resource"]["content"] = json!([]);
        assert_eq!(reason(&b), "provide.attachment.invalid");
    }

    #[test]
    fn the_binary_is_base64_cda() {
        let mut b = bundle(vec![]);
        b["entry"][1]["resource"]["data"] = json!("not base64 !");
        assert_eq!(reason(&b), "provide.binary.base64_invalid");
        b["entry"][1]["resource"]["data"] = json!("");
        assert_eq!(reason(&b), "provide.binary.base64_invalid");
        let mut b = bundle(vec![]);
        b["entry"][1]["resource"]["contentType"] = json!("application/pdf");
        assert_eq!(reason(&b), "provide.binary.content_type");
        // Line-wrapped base64 and a charset parameter are fine.
        let mut b = bundle(vec![]);
        b["entry"][1]["resource"]["data"] = json!("PENsaW5pY2Fs\nRG9jdW1lbnQvPg");
        b["entry"][1]["resource"]["contentType"] = json!("Application/HL7-CDA+XML; charset=UTF-8");
        assert_eq!(
            parse_bundle(b.to_string().as_bytes()).unwrap().cda,
            b"<ClinicalDocument/>"
        );
    }

    #[test]
    fn the_subject_is_an_ins() {
        let mut b = bundle(vec![]);
        b["entry"][0]["resource"]["subject"] =
            json!({"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "1"}});
        assert_eq!(reason(&b), "provide.subject.invalid");
        b["entry"][0]["resource"]["subject"] = json!({"reference": "Patient/1"});
        assert_eq!(reason(&b), "provide.subject.invalid");
        let mut b = bundle(vec![]);
        b["entry"][0]["resource"]["masterIdentifier"] = json!({"system": "x", "value": "1"});
        assert_eq!(reason(&b), "provide.master_identifier.invalid");
        b["entry"][0]["resource"]["masterIdentifier"] =
            json!({"system": "urn:oid:1.2.3", "value": "X9"});
        assert_eq!(
            parse_bundle(b.to_string().as_bytes())
                .unwrap()
                .master_identifier
                .as_deref(),
            Some("1.2.3^X9")
        );
    }

    #[test]
    fn mismatches_are_422() {
        let s = parse_bundle(bundle(vec![]).to_string().as_bytes()).unwrap();
        let same = PatientId {
            oid: "1.2.250.1.213.1.4.10".into(),
            ins: "248000000000000".into(),
        };
        assert!(check_against_cda(&s, &same, Some("1.2.3.4")).is_ok());
        let other = PatientId {
            ins: "248000000000001".into(),
            ..same.clone()
        };
        let e = check_against_cda(&s, &other, Some("1.2.3.4")).unwrap_err();
        assert_eq!((e.status, e.reason), (422, "provide.patient.mismatch"));
        let other_oid = PatientId {
            oid: "1.2.250.1.213.1.4.8".into(),
            ..same.clone()
        };
        assert!(check_against_cda(&s, &other_oid, Some("1.2.3.4")).is_err());
        let e = check_against_cda(&s, &same, Some("1.2.3.5")).unwrap_err();
        assert_eq!((e.status, e.reason), (422, "provide.document.mismatch"));
    }
}
