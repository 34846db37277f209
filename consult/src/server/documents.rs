//! ITI-67 (`DocumentReference?`), read by id, and ITI-68 (`Binary/{id}`), plus the DMP
//! opening every patient-scoped request shares: registry record → `can_access_dmp` → the
//! patient's documents as the rules see them.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::IntoResponse;
use base64::Engine;
use dmpflow_schemas::PatientRecord;
use dmpflow_store::{DocStatus as StoreStatus, DocumentDetail, TraceRow};
use time::OffsetDateTime;

use super::AppState;
use super::http::{ApiError, ApiResult, fhir_json, trace_for, write_trace};
use super::scope::{Caller, Search, begin_search, caller};
use crate::authz::{
    Access, DmpState, DocStatus, DocView, Grant, Principal, Purpose, Reason, Statuses, Visibility,
    can_access_dmp, filter, same_professional, visible_version,
};
use crate::fhir::PatientId;
use crate::fhir::bundle::{Paging, searchset};
use crate::fhir::datetime;
use crate::fhir::document_reference::{DocumentInput, Status, document_reference};
use crate::fhir::search::{DateParam, Token, parse_document_query};

/// A DMP the caller was granted, with every stored version of its documents.
pub(super) struct Dmp {
    pub grant: Grant,
    pub docs: Vec<DocumentDetail>,
    pub views: Vec<DocView>,
    /// The patient's registry record (the portal shows its strict traits).
    pub record: Option<PatientRecord>,
}

/// Opens the DMP of `ins` for the caller, or writes the denial trace and answers `deny`.
pub(super) async fn open_dmp(
    state: &AppState,
    principal: &Principal,
    purpose: &Purpose,
    ins: &str,
    trace: &TraceRow,
    deny: fn(Reason) -> ApiError,
) -> Result<Dmp, ApiError> {
    let store = state.store();
    let record = store
        .get_patient(ins)
        .await
        .map_err(|_| ApiError::internal("get_patient"))?;
    let grant = grant(state, principal, purpose, ins, record.as_ref(), trace, deny).await?;
    let docs = store
        .document_metas_for_patient(ins)
        .await
        .map_err(|_| ApiError::internal("document_metas_for_patient"))?;
    let mut dmp = Dmp::new(grant, docs);
    dmp.record = record;
    Ok(dmp)
}

/// The rules' answer for the DMP of `ins` (registry `record`); a denial is traced, then
/// answered `deny`.
async fn grant(
    state: &AppState,
    principal: &Principal,
    purpose: &Purpose,
    ins: &str,
    record: Option<&PatientRecord>,
    trace: &TraceRow,
    deny: fn(Reason) -> ApiError,
) -> Result<Grant, ApiError> {
    match can_access_dmp(principal, purpose, ins, &DmpState::from_record(record)) {
        Access::Granted(g) => Ok(g),
        Access::Denied(reason) => {
            write_trace(state, trace.clone(), false, reason.as_str(), Vec::new()).await?;
            Err(deny(reason))
        }
    }
}

impl Dmp {
    fn new(grant: Grant, docs: Vec<DocumentDetail>) -> Dmp {
        let views = docs.iter().map(|d| view(d, grant.patient_ins())).collect();
        Dmp {
            grant,
            docs,
            views,
            record: None,
        }
    }
}

/// The rules' view of a stored version. `dmp_ins` is the DMP that holds it (after a merge,
/// the survivor's INS, not the one the document was filed under).
fn view(d: &DocumentDetail, dmp_ins: &str) -> DocView {
    DocView {
        id: d.row.unique_id.clone(),
        set_id: d.row.set_id.clone(),
        patient_ins: dmp_ins.to_owned(),
        authors: d.author_person_id.iter().cloned().collect(),
        visibility: Visibility::from_codes(d.effective_visibility().iter().map(String::as_str)),
        status: match d.row.status {
            StoreStatus::Current => DocStatus::Current,
            StoreStatus::Superseded => DocStatus::Superseded,
            StoreStatus::Deleted => DocStatus::Deleted,
        },
    }
}

fn input(d: &DocumentDetail, patient: &PatientId) -> DocumentInput {
    DocumentInput {
        id: d.row.unique_id.clone(),
        unique_id: d.row.unique_id.clone(),
        set_id: d.row.set_id.clone(),
        status: match d.row.status {
            StoreStatus::Current => Status::Current,
            StoreStatus::Superseded => Status::Superseded,
            StoreStatus::Deleted => Status::Deleted,
        },
        type_code: d.row.type_code.clone(),
        type_display: None,
        class_code: d.row.class_code.clone(),
        format_code: d.row.format_code.clone(),
        practice_setting: d.row.practice_setting.clone(),
        title: d.row.title.clone(),
        patient: patient.clone(),
        author_person: d.author_person_id.clone(),
        author_organisation: d.author_organisation_id.clone(),
        creation_time: d.row.creation_time.clone(),
        service_start: d.row.service_start.clone(),
        service_stop: d.row.service_stop.clone(),
        stored_at: Some(d.row.stored_at.clone()),
        confidentiality: d.row.confidentiality.clone(),
        visibility: d.effective_visibility(),
        content_type: CDA_CONTENT_TYPE.into(),
        size: d.row.cda_size,
        sha1: None,
        replaces: d.replaces.clone(),
    }
}

/// A stored timestamp as an instant (its span's start); unreadable ones sort oldest.
pub(super) fn instant(s: &str) -> Option<OffsetDateTime> {
    datetime::parse(s).ok().map(|st| st.range().0)
}

fn date_ok(params: &[DateParam], t: Option<&str>) -> bool {
    params.is_empty()
        || t.and_then(instant)
            .is_some_and(|t| params.iter().all(|p| p.matches(t)))
}

fn token_ok(tokens: &[Token], code: &str) -> bool {
    tokens.is_empty() || tokens.iter().any(|t| t.code == code)
}

/// `_page` is the offset of the page's first match (opaque to clients: they follow links).
pub(super) fn page_offset(page: Option<&str>) -> Result<usize, ApiError> {
    page.map_or(Ok(0), |p| {
        p.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                crate::fhir::outcome::IssueType::Invalid,
                "search.param.invalid",
                "'_page' is not a page of this search",
            )
        })
    })
}

/// The Bundle paging of a search over `total` matches.
pub(super) fn paging(
    state: &AppState,
    resource: &str,
    pairs: &[(String, String)],
    count: u32,
    offset: usize,
    total: usize,
) -> Paging {
    let count_us = count as usize;
    Paging {
        base: state.0.base.clone(),
        resource_type: resource.into(),
        params: pairs
            .iter()
            .filter(|(k, _)| k != "_count" && k != "_page")
            .cloned()
            .collect(),
        count,
        page: (offset > 0).then(|| offset.to_string()),
        next: (offset + count_us < total).then(|| (offset + count_us).to_string()),
        previous: (offset > 0).then(|| offset.saturating_sub(count_us).to_string()),
    }
}

/// ITI-67.
pub(super) async fn search(
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
    } = begin_search(&state, &headers, &uri, parse_document_query).await?;
    let dmp = open_dmp(
        &state,
        &caller.principal,
        &caller.purpose,
        &q.patient.ins,
        &trace,
        ApiError::forbidden,
    )
    .await?;

    let asked = if q.status.is_empty() {
        Statuses::CURRENT
    } else {
        Statuses {
            current: q.status.contains(&"current"),
            superseded: q.status.contains(&"superseded"),
            deleted: q.status.contains(&"deleted"),
        }
    };
    // The query's own criteria first; the rules then see only candidates, with every
    // version of the DMP as the heads they may need.
    let candidates: Vec<DocView> = dmp
        .docs
        .iter()
        .zip(&dmp.views)
        .filter(|(d, _)| {
            token_ok(&q.types, &d.row.type_code)
                && token_ok(&q.categories, &d.row.class_code)
                && date_ok(&q.date, Some(&d.row.creation_time))
                && date_ok(&q.period, d.row.service_start.as_deref())
                && (q.authors.is_empty()
                    || q.authors.iter().any(|a| {
                        d.author_person_id
                            .as_deref()
                            .is_some_and(|p| same_professional(p, &a.code))
                    }))
        })
        .map(|(_, v)| v.clone())
        .collect();
    let visible = filter(&dmp.grant, &candidates, asked, &dmp.views);
    let by_id: HashMap<&str, &DocumentDetail> = dmp
        .docs
        .iter()
        .map(|d| (d.row.unique_id.as_str(), d))
        .collect();
    let mut shown: Vec<&DocumentDetail> = visible
        .ids()
        .filter_map(|id| by_id.get(id).copied())
        .collect();
    shown.sort_by(|a, b| {
        let key = |d: &DocumentDetail| instant(&d.row.creation_time);
        key(b)
            .cmp(&key(a))
            .then_with(|| b.row.unique_id.cmp(&a.row.unique_id))
    });
    let total = shown.len();
    let count = q.paging.count as usize;
    let page: Vec<&DocumentDetail> = shown.into_iter().skip(offset).take(count).collect();
    let ids: Vec<String> = page.iter().map(|d| d.row.unique_id.clone()).collect();
    write_trace(&state, trace, true, dmp.grant.reason().as_str(), ids).await?;
    let resources = page
        .iter()
        .map(|d| document_reference(&input(d, &q.patient)))
        .collect();
    let links = paging(
        &state,
        "DocumentReference",
        &pairs,
        q.paging.count,
        offset,
        total,
    );
    Ok(fhir_json(
        StatusCode::OK,
        &searchset(total as u64, &links, resources),
    ))
}

/// A document the caller may see, by uniqueId, with its DMP's patient; traced either way.
/// Missing, hidden, and on a DMP the caller may not open all answer 404 alike.
async fn readable(state: &AppState, headers: &HeaderMap, id: &str) -> Result<Readable, ApiError> {
    let Caller { principal, purpose } = caller(state, headers, "read", None, &[id]).await?;
    readable_by(state, &principal, &purpose, id).await
}

/// A document the rules let the caller see, with what answering needs: its DMP's patient,
/// the trace row to complete and the reason of the decision.
pub(super) type Readable = (DocumentDetail, PatientId, TraceRow, Reason);

/// [`readable`] for a caller already authenticated (the portal's session).
pub(super) async fn readable_by(
    state: &AppState,
    principal: &Principal,
    purpose: &Purpose,
    id: &str,
) -> Result<Readable, ApiError> {
    let (principal, purpose) = (principal.clone(), purpose.clone());
    let store = state.store();
    let Some(doc) = store
        .document_meta(id)
        .await
        .map_err(|_| ApiError::internal("document_meta"))?
    else {
        // No patient to file it under; traced all the same (someone asked for this id).
        let trace = trace_for(&principal, &purpose, "", "read", None);
        let reason = Reason::DocNotFound.as_str();
        write_trace(state, trace, false, reason, vec![id.to_owned()]).await?;
        return Err(ApiError::not_found());
    };
    // After a merge the document's DMP is the survivor's.
    let mut ins = doc.row.patient_ins.clone();
    let mut oid = doc.patient_ins_oid.clone();
    let mut record = store
        .get_patient(&ins)
        .await
        .map_err(|_| ApiError::internal("get_patient"))?;
    if let Some(survivor) = record.as_ref().and_then(|r| r.merged_into.clone()) {
        record = store
            .get_patient(&survivor)
            .await
            .map_err(|_| ApiError::internal("get_patient"))?;
        if let Some(s) = &record {
            oid = s.ins_oid.clone();
        }
        ins = survivor;
    }
    let trace = trace_for(&principal, &purpose, &ins, "read", None);
    let deny = |_| ApiError::not_found();
    let grant = grant(
        state,
        &principal,
        &purpose,
        &ins,
        record.as_ref(),
        &trace,
        deny,
    )
    .await?;
    // The rules need this version and its set's head: the set's versions, not the DMP.
    let versions = store
        .document_metas_for_set(&doc.row.set_id)
        .await
        .map_err(|_| ApiError::internal("document_metas_for_set"))?;
    let dmp = Dmp::new(grant, versions);
    let Some(me) = dmp.views.iter().find(|v| v.id == doc.row.unique_id) else {
        return Err(ApiError::not_found());
    };
    let mut heads = dmp
        .views
        .iter()
        .filter(|v| v.set_id == me.set_id && v.status != DocStatus::Superseded);
    let head = match (heads.next(), heads.next()) {
        (Some(h), None) => Some(h),
        _ => None,
    };
    let decision = visible_version(&dmp.grant, me, Statuses::ALL, head);
    if !decision.is_shown() {
        write_trace(
            state,
            trace,
            false,
            decision.reason().as_str(),
            vec![id.to_owned()],
        )
        .await?;
        return Err(ApiError::not_found());
    }
    Ok((doc, PatientId { oid, ins }, trace, decision.reason()))
}

/// `DocumentReference/{id}`.
pub(super) async fn read(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let (doc, patient, trace, reason) = readable(&state, &headers, &id).await?;
    write_trace(&state, trace, true, reason.as_str(), vec![id]).await?;
    Ok(fhir_json(
        StatusCode::OK,
        &document_reference(&input(&doc, &patient)),
    ))
}

/// ITI-68: the CDA exactly as stored, its sha256 as the ETag; or, when the client asks for
/// FHIR JSON (`Accept: application/fhir+json`, as a FHIR client reading `Binary/{id}`
/// does), a Binary resource carrying the same bytes in base64, with the same ETag.
pub(super) async fn binary(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let (_, _, trace, reason) = readable(&state, &headers, &id).await?;
    let (cda, sha) = state
        .store()
        .get_document_cda_checked(&id)
        .await
        .map_err(|_| ApiError::internal("get_document_cda"))?
        .ok_or_else(ApiError::not_found)?;
    write_trace(&state, trace, true, reason.as_str(), vec![id.clone()]).await?;
    // The stored SHA-256, checked against the bytes as they were inflated.
    let etag =
        HeaderValue::from_str(&format!("\"{sha}\"")).map_err(|_| ApiError::internal("etag"))?;
    if wants_fhir_json(&headers) {
        let body = serde_json::json!({
            "resourceType": "Binary",
            "id": id,
            "contentType": CDA_CONTENT_TYPE,
            "data": base64::engine::general_purpose::STANDARD.encode(cda.as_bytes()),
        });
        let mut r = fhir_json(StatusCode::OK, &body);
        r.headers_mut().insert(header::ETAG, etag);
        return Ok(r);
    }
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(CDA_CONTENT_TYPE),
            ),
            (header::ETAG, etag),
        ],
        cda,
    )
        .into_response())
}

const CDA_CONTENT_TYPE: &str = "application/hl7-cda+xml";

/// True when `Accept` names FHIR JSON (`application/fhir+json` or `application/json`)
/// and not the CDA's own type: the raw CDA stays the default, as ITI-68 expects.
fn wants_fhir_json(headers: &HeaderMap) -> bool {
    let accept = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|m| {
            m.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect::<Vec<_>>();
    let json = accept
        .iter()
        .any(|m| m == "application/fhir+json" || m == "application/json");
    json && !accept.iter().any(|m| m == CDA_CONTENT_TYPE)
}
