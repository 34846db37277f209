//! The capability statement, lab results as Observations, and the patient's access traces
//! as AuditEvents (CSP L1111-19: the patient may know who consulted their DMP).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use dmpflow_store::TraceRow;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::AppState;
use super::documents::{instant, open_dmp, paging};
use super::http::{ApiError, ApiResult, fhir_json, write_trace};
use super::scope::{Search, begin_search};
use crate::authz::{Principal, Statuses, filter};
use crate::fhir::PatientId;
use crate::fhir::audit_event::{
    AccessTrace, Interaction, Outcome, Purpose as AuditPurpose, Requestor, audit_event,
};
use crate::fhir::bundle::searchset;
use crate::fhir::capability::capability_statement;
use crate::fhir::datetime::{fhir_instant, instant_of};
use crate::fhir::observation::{LabResultInput, observation};
use crate::fhir::outcome::IssueType;
use crate::fhir::search::{parse_audit_query, parse_observation_query};

/// `metadata`: public, as FHIR clients fetch it before authenticating.
pub(super) async fn metadata(State(state): State<AppState>) -> ApiResult {
    let body = capability_statement(
        &state.0.base,
        &instant_of(OffsetDateTime::now_utc()),
        env!("CARGO_PKG_VERSION"),
    );
    Ok(fhir_json(StatusCode::OK, &body))
}

/// `Observation?patient.identifier=&code=`: the results of the documents the caller may see.
pub(super) async fn observations(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult {
    let Search {
        caller,
        pairs,
        q,
        offset,
        trace,
    } = begin_search(&state, &headers, &uri, parse_observation_query).await?;
    if q.codes.is_empty() {
        // Results are stored per LOINC code; a search over every code is not offered.
        let e = ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            "search.param.missing",
            "'code' (a LOINC code) is required",
        );
        write_trace(&state, trace, false, e.reason(), Vec::new()).await?;
        return Err(e);
    }
    let ins = q.patient.ins.clone();
    let dmp = open_dmp(
        &state,
        &caller.principal,
        &caller.purpose,
        &ins,
        &trace,
        ApiError::forbidden,
    )
    .await?;
    let visible = filter(&dmp.grant, &dmp.views, Statuses::CURRENT, &dmp.views);
    let visible: Vec<&str> = visible.ids().collect();
    let mut results = Vec::new();
    for code in &q.codes {
        let rows = state
            .store()
            .results_for_loinc(&ins, &code.code)
            .await
            .map_err(|_| ApiError::internal("results_for_loinc"))?;
        results.extend(rows.into_iter().filter(|r| {
            visible.contains(&r.document_unique_id.as_str())
                && (q.date.is_empty()
                    || instant(&r.time).is_some_and(|t| q.date.iter().all(|d| d.matches(t))))
        }));
    }
    results.sort_by_key(|r| std::cmp::Reverse(instant(&r.time)));
    let total = results.len();
    let page: Vec<_> = results
        .into_iter()
        .skip(offset)
        .take(q.paging.count as usize)
        .collect();
    let mut ids: Vec<String> = page.iter().map(|r| r.document_unique_id.clone()).collect();
    ids.dedup();
    write_trace(&state, trace, true, dmp.grant.reason().as_str(), ids).await?;
    let resources = page
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            // Stable for a given result: its document, code, time and value.
            let digest = Sha256::digest(
                format!(
                    "{}|{}|{}|{}|{}",
                    r.document_unique_id,
                    r.loinc,
                    r.time,
                    r.value.as_deref().unwrap_or(""),
                    if r.value.is_none() { i } else { 0 }
                )
                .as_bytes(),
            );
            let hex = dmpflow_schemas::cda_body::lower_hex(&digest[..16]);
            observation(&LabResultInput {
                id: format!("obs-{hex}"),
                loinc: r.loinc,
                label: r.label,
                value: r.value,
                value_type: r.value_type,
                unit: r.unit,
                interpretation: r.interpretation,
                reference_low: r.reference_low,
                reference_high: r.reference_high,
                reference_text: r.reference_text,
                status: r.status,
                time: r.time,
                patient: q.patient.clone(),
                document_id: r.document_unique_id,
            })
        })
        .collect();
    let links = paging(&state, "Observation", &pairs, q.paging.count, offset, total);
    Ok(fhir_json(
        StatusCode::OK,
        &searchset(total as u64, &links, resources),
    ))
}

/// `AuditEvent?patient.identifier=`: only the patient or their representative; the read
/// is traced like any other.
pub(super) async fn audit_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
) -> ApiResult {
    let Search {
        caller,
        pairs,
        q,
        offset,
        trace,
    } = begin_search(&state, &headers, &uri, parse_audit_query).await?;
    let ins = q.patient.ins.clone();
    if matches!(caller.principal, Principal::Professional { .. }) {
        const CODE: &str = "consult.audit.patient_only";
        write_trace(&state, trace, false, CODE, Vec::new()).await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            CODE,
            "access traces are the patient's",
        ));
    }
    let dmp = open_dmp(
        &state,
        &caller.principal,
        &caller.purpose,
        &ins,
        &trace,
        ApiError::forbidden,
    )
    .await?;
    let mut rows: Vec<TraceRow> = state
        .store()
        .traces_for_patient(&ins)
        .await
        .map_err(|_| ApiError::internal("traces_for_patient"))?
        .into_iter()
        .filter(|r| {
            q.date.is_empty()
                || instant(&r.recorded_at).is_some_and(|t| q.date.iter().all(|d| d.matches(t)))
        })
        .collect();
    rows.reverse(); // newest first
    let total = rows.len();
    let page: Vec<TraceRow> = rows
        .into_iter()
        .skip(offset)
        .take(q.paging.count as usize)
        .collect();
    write_trace(&state, trace, true, dmp.grant.reason().as_str(), Vec::new()).await?;
    let resources = page
        .iter()
        .map(|r| audit_event(&access(r, &q.patient)))
        .collect();
    let links = paging(&state, "AuditEvent", &pairs, q.paging.count, offset, total);
    Ok(fhir_json(
        StatusCode::OK,
        &searchset(total as u64, &links, resources),
    ))
}

/// A trace row as the FHIR builder takes it. A representative shows as acting for the
/// patient (the builder's requestor has no representative kind).
fn access(r: &TraceRow, patient: &PatientId) -> AccessTrace {
    AccessTrace {
        id: format!("trace-{}", r.id),
        recorded: fhir_instant(&r.recorded_at).unwrap_or_else(|_| r.recorded_at.clone()),
        interaction: match r.action.as_str() {
            "read" => Interaction::Read,
            "create" => Interaction::Create,
            _ => Interaction::Search,
        },
        requestor: if r.actor_role == "professional" {
            Requestor::Professional {
                person_id: r.actor_id.clone(),
                profession: None,
                organisation_id: r.actor_org.clone(),
            }
        } else {
            Requestor::Patient(patient.clone())
        },
        purpose: match &r.purpose_reason {
            Some(reason) if r.purpose == "break_glass" => AuditPurpose::BreakTheGlass {
                reason: reason.clone(),
            },
            _ => AuditPurpose::Treatment,
        },
        outcome: if r.outcome == "permit" {
            Outcome::Success
        } else {
            Outcome::Denied {
                reason: r.reason.clone(),
            }
        },
        patient: patient.clone(),
        documents: r.document_ids.clone(),
        query: r.query.clone(),
        observer: "dmpflow".into(),
    }
}
