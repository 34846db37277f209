//! OperationOutcome: what the server answers instead of a resource when it refuses or
//! fails. `diagnostics` is for the developer of the client and never carries patient data
//! (no INS, no name): callers pass a fixed explanation, not the request echoed back.
//! `details.coding` carries dmpflow's stable reason code, which clients may switch on.

use serde_json::{Value, json};

use super::systems;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// The codes of FHIR's IssueType value set that the server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Required,
    Value,
    NotSupported,
    NotFound,
    Security,
    Login,
    Forbidden,
    Suppressed,
    TooCostly,
    Throttled,
    Processing,
    Exception,
    Transient,
    Informational,
}

impl IssueType {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::NotSupported => "not-supported",
            IssueType::NotFound => "not-found",
            IssueType::Security => "security",
            IssueType::Login => "login",
            IssueType::Forbidden => "forbidden",
            IssueType::Suppressed => "suppressed",
            IssueType::TooCostly => "too-costly",
            IssueType::Throttled => "throttled",
            IssueType::Processing => "processing",
            IssueType::Exception => "exception",
            IssueType::Transient => "transient",
            IssueType::Informational => "informational",
        }
    }
}

/// One issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    /// dmpflow's stable reason code, e.g. `search.param.unknown`.
    pub reason: String,
    /// Developer-facing explanation, without patient data.
    pub diagnostics: Option<String>,
    /// FHIRPath-ish location of the fault (e.g. the search parameter's name).
    pub expression: Option<String>,
}

/// Builds the OperationOutcome of one or more issues (FHIR requires at least one).
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({
                "severity": i.severity.as_str(),
                "code": i.code.as_str(),
                "details": { "coding": [{ "system": systems::DMPFLOW_REASON, "code": i.reason }] },
            });
            if let Some(d) = &i.diagnostics {
                v["diagnostics"] = json!(d);
            }
            if let Some(e) = &i.expression {
                v["expression"] = json!([e]);
            }
            v
        })
        .collect();
    assert!(
        !issues.is_empty(),
        "an OperationOutcome needs at least one issue"
    );
    json!({ "resourceType": "OperationOutcome", "issue": issues })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_reason_code() {
        let o = operation_outcome(&[Issue {
            severity: Severity::Error,
            code: IssueType::NotSupported,
            reason: "search.param.unknown".into(),
            diagnostics: Some("unknown search parameter 'foo'".into()),
            expression: Some("foo".into()),
        }]);
        assert_eq!(o["issue"][0]["code"], "not-supported");
        assert_eq!(
            o["issue"][0]["details"]["coding"][0]["code"],
            "search.param.unknown"
        );
        assert_eq!(o["issue"][0]["expression"][0], "foo");
    }
}
