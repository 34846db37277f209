//! AuditEvent: the trace of one access to a DMP (ITI-67 search, ITI-68 read), which the
//! patient may read (CSP L1111-19). Who (the requesting professional or patient, with
//! their organisation), when, what (the documents returned, or the query refused), why
//! (treatment, or emergency / break-the-glass with the reason given) and the outcome.

use base64::Engine;
use serde_json::{Value, json};

use super::{PatientId, concept, identifier_reference, systems};

const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// The REST interaction traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// ITI-67 (and Observation / AuditEvent searches): action E.
    Search,
    /// ITI-68 or a read by id: action R.
    Read,
    /// ITI-65, a document provided into the DMP: action C.
    Create,
}

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requestor {
    /// A health professional: IdNat_PS, TRE_G15 profession code, IdNat_Struct.
    Professional {
        person_id: String,
        profession: Option<String>,
        organisation_id: Option<String>,
    },
    /// The patient through their portal.
    Patient(PatientId),
}

/// Why: the purpose of use the request declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Treatment,
    /// Emergency access (regulation centre 15).
    Emergency {
        reason: String,
    },
    /// Break-the-glass: traced and notified to the patient.
    BreakTheGlass {
        reason: String,
    },
}

/// The result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Refused (authorisation): outcome 4, with dmpflow's reason code.
    Denied {
        reason: String,
    },
}

/// One access to trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTrace {
    pub id: String,
    /// When it happened, already a FHIR instant (`datetime::instant_of`).
    pub recorded: String,
    pub interaction: Interaction,
    pub requestor: Requestor,
    pub purpose: Purpose,
    pub outcome: Outcome,
    /// The patient whose DMP was accessed.
    pub patient: PatientId,
    /// Logical ids of the DocumentReferences returned or read.
    pub documents: Vec<String>,
    /// The query string of a search, as received (it carries the INS: the trace is the
    /// patient's own, so it may).
    pub query: Option<String>,
    /// The server's name, as the observer.
    pub observer: String,
}

pub fn audit_event(t: &AccessTrace) -> Value {
    let (action, subtype) = match t.interaction {
        Interaction::Search => ("E", "search-type"),
        Interaction::Read => ("R", "read"),
        Interaction::Create => ("C", "create"),
    };
    let (outcome, outcome_desc) = match &t.outcome {
        Outcome::Success => ("0", None),
        Outcome::Denied { reason } => ("4", Some(reason.as_str())),
    };
    let purpose = match &t.purpose {
        Purpose::Treatment => concept(ACT_REASON, "TREAT", Some("treatment")),
        Purpose::Emergency { reason } => {
            let mut c = concept(ACT_REASON, "ETREAT", Some("Emergency Treatment"));
            c["text"] = json!(reason);
            c
        }
        Purpose::BreakTheGlass { reason } => {
            let mut c = concept(ACT_REASON, "BTG", Some("break the glass"));
            c["text"] = json!(reason);
            c
        }
    };
    let mut agents = Vec::new();
    match &t.requestor {
        Requestor::Professional {
            person_id,
            profession,
            organisation_id,
        } => {
            let mut a = json!({
                "who": identifier_reference("Practitioner", systems::IDNAT_PS, person_id),
                "requestor": true,
            });
            if let Some(p) = profession {
                a["role"] = json!([concept(systems::PROFESSION, p, None)]);
            }
            agents.push(a);
            if let Some(o) = organisation_id {
                agents.push(json!({
                    "who": identifier_reference("Organization", systems::IDNAT_STRUCT, o),
                    "requestor": false,
                }));
            }
        }
        Requestor::Patient(p) => agents.push(json!({ "who": p.reference(), "requestor": true })),
    }

    let entity_type = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
    let object_role = "http://terminology.hl7.org/CodeSystem/object-role";
    let mut entities = vec![json!({
        "what": t.patient.reference(),
        "type": { "system": entity_type, "code": "1", "display": "Person" },
        "role": { "system": object_role, "code": "1", "display": "Patient" },
    })];
    for d in &t.documents {
        entities.push(json!({
            "what": { "reference": format!("DocumentReference/{d}") },
            "type": { "system": entity_type, "code": "2", "display": "System Object" },
            "role": { "system": object_role, "code": "3", "display": "Report" },
        }));
    }
    if let Some(q) = &t.query {
        entities.push(json!({
            "type": { "system": entity_type, "code": "2", "display": "System Object" },
            "role": { "system": object_role, "code": "24", "display": "Query" },
            "query": base64::engine::general_purpose::STANDARD.encode(q),
        }));
    }

    let mut r = json!({
        "resourceType": "AuditEvent",
        "id": t.id,
        "type": { "system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation" },
        "subtype": [{ "system": "http://hl7.org/fhir/restful-interaction", "code": subtype }],
        "action": action,
        "recorded": t.recorded,
        "outcome": outcome,
        "purposeOfEvent": [purpose],
        "agent": agents,
        "source": {
            "observer": { "display": t.observer },
            "type": [{ "system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server" }]
        },
        "entity": entities,
    });
    if let Some(d) = outcome_desc {
        r["outcomeDesc"] = json!(d);
    }
    r
}

#[cfg(test)]
pub(crate) fn example() -> AccessTrace {
    AccessTrace {
        id: "ae-20240306-0001".into(),
        recorded: "2024-03-06T10:15:02Z".into(),
        interaction: Interaction::Search,
        requestor: Requestor::Professional {
            person_id: "810002909371".into(),
            profession: Some("10".into()),
            organisation_id: Some("1750000000".into()),
        },
        purpose: Purpose::BreakTheGlass {
            reason: "patient inconscient aux urgences".into(),
        },
        outcome: Outcome::Success,
        patient: PatientId {
            oid: "1.2.250.1.213.1.4.10".into(),
            ins: "279035121518989".into(),
        },
        documents: vec!["1.2.250.1.999.1.1.20240306.2".into()],
        query: Some(
            "patient.identifier=urn:oid:1.2.250.1.213.1.4.10|279035121518989&status=current".into(),
        ),
        observer: "dmpflow-consult".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_who_what_why_and_outcome() {
        let r = audit_event(&example());
        assert_eq!(r["action"], "E");
        assert_eq!(r["outcome"], "0");
        assert_eq!(r["purposeOfEvent"][0]["coding"][0]["code"], "BTG");
        assert_eq!(
            r["purposeOfEvent"][0]["text"],
            "patient inconscient aux urgences"
        );
        assert_eq!(r["agent"][0]["requestor"], true);
        assert_eq!(
            r["agent"][1]["who"]["identifier"]["system"],
            systems::IDNAT_STRUCT
        );
        assert_eq!(
            r["entity"][1]["what"]["reference"],
            "DocumentReference/1.2.250.1.999.1.1.20240306.2"
        );
        assert_eq!(r["entity"][2]["role"]["code"], "24");
    }

    #[test]
    fn denial_is_a_minor_failure() {
        let mut t = example();
        t.outcome = Outcome::Denied {
            reason: "authz.patient.opposed".into(),
        };
        t.interaction = Interaction::Read;
        t.purpose = Purpose::Treatment;
        let r = audit_event(&t);
        assert_eq!(r["outcome"], "4");
        assert_eq!(r["outcomeDesc"], "authz.patient.opposed");
        assert_eq!(r["action"], "R");
        assert_eq!(r["subtype"][0]["code"], "read");
        t.interaction = Interaction::Create;
        let r = audit_event(&t);
        assert_eq!(r["action"], "C");
        assert_eq!(r["subtype"][0]["code"], "create");
    }
}
