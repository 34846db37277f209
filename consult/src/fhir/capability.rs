//! CapabilityStatement (`GET /fhir/metadata`): what the read side serves, as MHD's
//! Document Responder (ITI-67/68) and Recipient (ITI-65) and the trace search.

use serde_json::{Value, json};

/// A search parameter as listed: name, FHIR type, what it does.
const fn p(
    name: &'static str,
    kind: &'static str,
    doc: &'static str,
) -> (&'static str, &'static str, &'static str) {
    (name, kind, doc)
}

const DOCREF_PARAMS: [(&str, &str, &str); 9] = [
    p(
        "patient.identifier",
        "token",
        "INS: urn:oid:<INS OID>|<matricule> (required)",
    ),
    p("status", "token", "current | superseded | entered-in-error"),
    p("type", "token", "LOINC type code (JDV_J07)"),
    p("category", "token", "TRE_A03 class code"),
    p(
        "date",
        "date",
        "when the document was created (prefixes eq, gt, lt, ge, le)",
    ),
    p("period", "date", "service period"),
    p(
        "author.identifier",
        "token",
        "IdNat_PS or IdNat_Struct of the author",
    ),
    p("_count", "number", "page size, default 20, at most 100"),
    p(
        "_page",
        "string",
        "opaque page token from a next/previous link",
    ),
];

const OBS_PARAMS: [(&str, &str, &str); 5] = [
    p("patient.identifier", "token", "INS (required)"),
    p("code", "token", "LOINC code"),
    p("date", "date", "observation time"),
    p("_count", "number", "page size, default 20, at most 100"),
    p("_page", "string", "opaque page token"),
];

const AUDIT_PARAMS: [(&str, &str, &str); 4] = [
    p(
        "patient.identifier",
        "token",
        "INS whose accesses are listed (required)",
    ),
    p("date", "date", "when the access was recorded"),
    p("_count", "number", "page size, default 20, at most 100"),
    p("_page", "string", "opaque page token"),
];

/// ITI-65 as `dmpflow serve --provide` takes it (server/provide.rs, fhir/provide.rs).
const TRANSACTION_DOC: &str = "ITI-65 Provide Document Bundle: POST [base] with a transaction Bundle (at most 20 MiB, 8 entries) of one DocumentReference (subject.identifier = the INS) and the Binary it points to (application/hl7-cda+xml, the CDA, whose recordTarget INS must be the subject's), optionally a SubmissionSet List (not kept); health professionals only. 200 once the document is durably queued for the DMP (Kafka acknowledged), 503 to resend later; 501 when the server does not take documents.";

fn params(list: &[(&str, &str, &str)]) -> Value {
    json!(
        list.iter()
            .map(|(n, t, d)| json!({ "name": n, "type": t, "documentation": d }))
            .collect::<Vec<_>>()
    )
}

/// Builds the statement. `base` is the server's FHIR base URL, `date` a FHIR dateTime
/// (the build's or the start's), `version` the software version.
pub fn capability_statement(base: &str, date: &str, version: &str) -> Value {
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "dmpflow",
        "kind": "instance",
        "software": { "name": "dmpflow-consult", "version": version },
        "implementation": { "description": "dmpflow DMP read side (ANS PDSm / IHE MHD)", "url": base },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "ITI-65 Provide Document Bundle (transaction), ITI-67 Find Document References, ITI-68 Retrieve Document",
            "security": {
                "cors": false,
                "service": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "OAuth" }] }],
                "description": "Bearer tokens (Pro Santé Connect for professionals)"
            },
            "resource": [
                {
                    "type": "DocumentReference",
                    "interaction": [{ "code": "read" }, { "code": "search-type" }],
                    "searchParam": params(&DOCREF_PARAMS)
                },
                { "type": "Binary", "interaction": [{ "code": "read" }] },
                {
                    "type": "Observation",
                    "interaction": [{ "code": "read" }, { "code": "search-type" }],
                    "searchParam": params(&OBS_PARAMS)
                },
                {
                    "type": "AuditEvent",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": params(&AUDIT_PARAMS)
                }
            ],
            "interaction": [{ "code": "transaction", "documentation": TRANSACTION_DOC }]
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_mhd_interactions() {
        let c = capability_statement("https://dmp.example/fhir", "2024-03-06", "0.1.0");
        let res = c["rest"][0]["resource"].as_array().unwrap();
        let types: Vec<&str> = res.iter().map(|r| r["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["DocumentReference", "Binary", "Observation", "AuditEvent"]
        );
        assert_eq!(res[0]["searchParam"][0]["name"], "patient.identifier");
        assert_eq!(c["rest"][0]["interaction"][0]["code"], "transaction");
        assert!(
            c["rest"][0]["interaction"][0]["documentation"]
                .as_str()
                .unwrap()
                .contains("ITI-65")
        );
    }
}
