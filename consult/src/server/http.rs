//! The plumbing every handler shares: errors as OperationOutcomes, the caller's identity and
//! purpose from the headers, the raw query as pairs, and the trace write that must succeed
//! before any answer.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dmpflow_store::TraceRow;
use serde_json::Value;

use super::AppState;
use crate::auth::bearer_token;
use crate::authz::{Principal, Purpose, Reason};
use crate::fhir::outcome::{Issue, IssueType, Severity, operation_outcome};

pub(super) const FHIR_JSON: &str = "application/fhir+json";
/// The header a professional sets, with the reason, to break the glass.
pub(super) const BREAK_GLASS_HEADER: &str = "x-break-glass-reason";

/// An error answer: status and one issue. Its body never repeats a request value.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    issue: Issue,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: IssueType, reason: &str, diag: &str) -> Self {
        ApiError {
            status,
            issue: Issue {
                severity: Severity::Error,
                code,
                reason: reason.to_owned(),
                diagnostics: Some(diag.to_owned()),
                expression: None,
            },
        }
    }

    pub(super) fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable reason code this error answers with (for the trace).
    pub(super) fn reason(&self) -> &str {
        &self.issue.reason
    }

    pub(super) fn bad_request(issue: Issue) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            issue,
        }
    }

    pub(super) fn forbidden(reason: Reason) -> Self {
        let r = reason.public();
        ApiError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            r.as_str(),
            "access denied",
        )
    }

    /// What a missing document and a hidden one both answer.
    pub(super) fn not_found() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            IssueType::NotFound,
            Reason::DocNotFound.as_str(),
            "no such resource",
        )
    }

    /// A store failure: logged by operation only (its text may quote data), answered 500.
    pub(super) fn internal(op: &str) -> Self {
        tracing::error!(op, "consultation request failed on the store");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            "consult.internal",
            "the request could not be completed",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = fhir_json(self.status, &operation_outcome(&[self.issue]));
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

pub(super) type ApiResult = Result<Response, ApiError>;

pub(super) fn fhir_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        body.to_string(),
    )
        .into_response()
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// The caller, from `Authorization: Bearer`. Every failure is a 401 with the auth code.
pub(super) fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    bearer_token(value)
        .and_then(|t| state.0.verifier.authenticate(t, &state.0.mapping))
        .map_err(|e| {
            tracing::info!(code = e.code(), "authentication refused");
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                IssueType::Login,
                e.code(),
                "a valid bearer token is required",
            )
        })
}

/// Break-the-glass when the header is present (even empty: the rules then refuse it for
/// lack of a reason, rather than silently treating it as a normal access).
pub(super) fn purpose(headers: &HeaderMap) -> Result<Purpose, ApiError> {
    match headers.get(BREAK_GLASS_HEADER) {
        None => Ok(Purpose::Normal),
        Some(v) => match v.to_str() {
            Ok(reason) => Ok(Purpose::BreakTheGlass {
                reason: reason.trim().to_owned(),
            }),
            Err(_) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                IssueType::Invalid,
                "consult.break_glass.reason_invalid",
                "the break-the-glass reason must be visible ASCII",
            )),
        },
    }
}

/// `a=b&c=d` as decoded pairs (`+` is a space, `%XX` a byte; invalid UTF-8 is replaced).
pub(super) fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The trace row of one access, before its outcome is known.
pub(super) fn trace_for(
    principal: &Principal,
    purpose: &Purpose,
    ins: &str,
    action: &str,
    query: Option<&str>,
) -> TraceRow {
    let (actor_id, actor_org) = match principal {
        Principal::Patient { ins } => (ins.clone(), None),
        Principal::Representative { id, .. } => (id.clone(), None),
        Principal::Professional {
            id, organisation, ..
        } => (id.clone(), organisation.clone()),
    };
    let (purpose, purpose_reason) = match purpose {
        Purpose::Normal => ("normal", None),
        Purpose::BreakTheGlass { reason } => ("break_glass", Some(reason.clone())),
    };
    TraceRow {
        actor_role: principal.role_name().to_owned(),
        actor_id,
        actor_org,
        patient_ins: ins.to_owned(),
        action: action.to_owned(),
        query: query.map(str::to_owned),
        purpose: purpose.to_owned(),
        purpose_reason,
        ..TraceRow::default()
    }
}

/// Writes the trace with its outcome; the request fails if it cannot be written.
pub(super) async fn write_trace(
    state: &AppState,
    mut row: TraceRow,
    permit: bool,
    reason: &str,
    ids: Vec<String>,
) -> Result<(), ApiError> {
    row.outcome = if permit { "permit" } else { "deny" }.to_owned();
    row.reason = reason.to_owned();
    row.document_ids = ids;
    tracing::info!(
        role = %row.actor_role,
        action = %row.action,
        outcome = %row.outcome,
        reason = %row.reason,
        "consultation"
    );
    state
        .0
        .store
        .append_trace(&row)
        .await
        .map(|_| ())
        .map_err(|_| ApiError::internal("append_trace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_pairs_decode() {
        let p = query_pairs(Some(
            "patient.identifier=urn%3Aoid%3A1.2%7C123&a+b=c+d&x&%ZZ=1%",
        ));
        assert_eq!(
            p[0],
            ("patient.identifier".into(), "urn:oid:1.2|123".into())
        );
        assert_eq!(p[1], ("a b".into(), "c d".into()));
        assert_eq!(p[2], ("x".into(), "".into()));
        assert_eq!(p[3], ("%ZZ".into(), "1%".into()));
        assert!(query_pairs(None).is_empty());
    }
}
