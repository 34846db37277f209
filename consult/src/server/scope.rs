//! The opening every traced call shares: who is calling (bearer token) and why (purpose
//! header), then for a search its parsed query and page. Every failure on the way is traced
//! before it is answered, so that each call of a patient-data endpoint leaves exactly one
//! trace row, whatever its outcome:
//! - no valid token → role `anonymous`, no actor and no patient (nothing in an
//!   unauthenticated call can be attributed; the raw query is kept as evidence);
//! - an invalid purpose header, query or page → the caller, no patient (a query we could
//!   not read names no patient we can trust).
//!
//! After that, the handler opens the DMP ([`super::documents::open_dmp`]), which traces a
//! denial, and traces the answer itself.

use axum::http::{HeaderMap, Uri};
use dmpflow_store::TraceRow;

use super::AppState;
use super::documents::page_offset;
use super::http::{ApiError, authenticate, purpose, query_pairs, trace_for, write_trace};
use crate::authz::{Principal, Purpose};
use crate::fhir::PatientId;
use crate::fhir::search::{AuditQuery, DocumentQuery, ObservationQuery, SearchError};

/// What a search query names: its patient and its page.
pub(super) trait PatientQuery {
    fn patient(&self) -> &PatientId;
    fn page(&self) -> Option<&str>;
}

macro_rules! patient_query {
    ($($t:ty),*) => {$(
        impl PatientQuery for $t {
            fn patient(&self) -> &PatientId {
                &self.patient
            }
            fn page(&self) -> Option<&str> {
                self.paging.page.as_deref()
            }
        }
    )*};
}
patient_query!(DocumentQuery, ObservationQuery, AuditQuery);

/// An authenticated caller and their declared purpose.
pub(super) struct Caller {
    pub principal: Principal,
    pub purpose: Purpose,
}

/// The trace row of a call nobody could be attributed (no valid token).
fn anonymous(action: &str, query: Option<&str>) -> TraceRow {
    TraceRow {
        actor_role: "anonymous".into(),
        action: action.into(),
        query: query.map(str::to_owned),
        purpose: "normal".into(),
        ..TraceRow::default()
    }
}

/// Authenticates the call and reads its purpose; a failure is traced, then answered.
/// `ids` are the documents the call names (a read), kept on a failure's trace.
pub(super) async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    action: &str,
    query: Option<&str>,
    ids: &[&str],
) -> Result<Caller, ApiError> {
    let principal = match authenticate(state, headers) {
        Ok(p) => p,
        Err(e) => {
            let row = anonymous(action, query);
            write_trace(state, row, false, e.reason(), row_ids(ids)).await?;
            return Err(e);
        }
    };
    match purpose(headers) {
        Ok(purpose) => Ok(Caller { principal, purpose }),
        Err(e) => {
            let row = trace_for(&principal, &Purpose::Normal, "", action, query);
            write_trace(state, row, false, e.reason(), row_ids(ids)).await?;
            Err(e)
        }
    }
}

fn row_ids(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|s| (*s).to_owned()).collect()
}

/// A query parser of `fhir::search`, over the decoded pairs.
pub(super) type Parser<Q> = fn(&[(String, String)]) -> Result<Q, SearchError>;

/// A search ready to open its DMP: caller, decoded pairs (for the paging links), the
/// parsed query, the offset of its page, and its trace row (outcome still unknown).
pub(super) struct Search<Q> {
    pub caller: Caller,
    pub pairs: Vec<(String, String)>,
    pub q: Q,
    pub offset: usize,
    pub trace: TraceRow,
}

/// Authenticates, parses the query with `parse` and reads its page; every failure is
/// traced and answered (401, 400).
pub(super) async fn begin_search<Q: PatientQuery>(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
    parse: Parser<Q>,
) -> Result<Search<Q>, ApiError> {
    let query = uri.query();
    let caller = caller(state, headers, "search", query, &[]).await?;
    let pairs = query_pairs(query);
    let parsed = parse(&pairs)
        .map_err(|e| ApiError::bad_request(e.issue()))
        .and_then(|q| Ok((page_offset(q.page())?, q)));
    match parsed {
        Ok((offset, q)) => {
            let trace = trace_for(
                &caller.principal,
                &caller.purpose,
                &q.patient().ins,
                "search",
                query,
            );
            Ok(Search {
                caller,
                pairs,
                q,
                offset,
                trace,
            })
        }
        Err(e) => {
            let row = trace_for(&caller.principal, &caller.purpose, "", "search", query);
            write_trace(state, row, false, e.reason(), Vec::new()).await?;
            Err(e)
        }
    }
}
