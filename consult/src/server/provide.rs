//! ITI-65 Provide Document Bundle (`POST /fhir`): a professional's software feeds the DMP
//! without MLLP. The submission becomes exactly what an MLLP sender would have sent, an
//! MDM^T02 carrying the CDA (`crate::mdm`), written to the `documents` feed topic, and
//! goes through the same normalize → route → store path as every HL7 v2 flow. The answer
//! means what the gateway's AA means: 200 only once Kafka acknowledged the write
//! (acks=all); 503 when it did not within the ACK timeout (resend later).
//!
//! Why a feed message rather than a write to the store: the pipeline is where identity
//! vigilance (route: INS known, qualified, traits, opposition), the document lifecycle
//! and the dedupe live; a second way in would have to copy them and could disagree.
//!
//! Before anything is written, every refusal the submitter can fix is answered at once,
//! not dead-lettered after a 200: the body is bounded ([`MAX_BODY_BYTES`], refused from
//! Content-Length before reading), the Bundle read (`fhir::provide`), the CDA's header read
//! by normalize's own reader, its recordTarget INS compared with the DocumentReference's
//! subject (422 `provide.patient.mismatch`: identity vigilance, nothing written), and the
//! MDM built from it run through `dmpflow_normalize::normalize` itself, so a 200 is never
//! given for a message normalize would refuse (422 with normalize's reason code, e.g.
//! `cda.xml.invalid`, `cda.model.unsupported`). Parsing runs on the blocking pool: a
//! 20 MiB body must not stall the async workers.
//!
//! Only professionals provide (403 `provide.role.not_professional`). Each accepted
//! submission writes an access-trace row (action `create`, the CDA's uniqueId) *before*
//! the Kafka write, like reads trace before they answer: nothing enters a DMP untraced. A
//! write Kafka then refuses leaves that row as the record of an attempt; the resend writes
//! another. Submitting the same CDA twice writes two messages (fresh MSH-10 each), and the
//! store files the second as a duplicate of the first (same CDA uniqueId): one document.
//!
//! Kafka stays outside this crate: the server writes through [`FeedWriter`], which
//! `dmpflow serve --provide` implements on the gateway's producer
//! (`dmpflow_ingest::feed::FeedProducer`). Without it, `POST /fhir` answers 501
//! `provide.not_configured`. Logs carry roles, reason codes and Kafka coordinates only.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use dmpflow_normalize::mapping::read_received_cda;
use dmpflow_schemas::{Feed, Normalized};
use time::OffsetDateTime;

use super::AppState;
use super::http::{ApiError, ApiResult, fhir_json, trace_for, write_trace};
use super::scope::{Caller, caller};
use crate::authz::{Principal, Purpose, Reason};
use crate::fhir::PatientId;
use crate::fhir::outcome::IssueType;
use crate::fhir::provide::{
    EntryKind, ProvideError, check_against_cda, parse_bundle, transaction_response,
};
use crate::mdm::{Envelope, mdm_t02};

/// The largest request body read: a CDA of normalize's default `max_cda_bytes` in base64
/// (4/3) inside its Bundle JSON fits.
pub const MAX_BODY_BYTES: usize = 20 << 20;

/// Where a write landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coordinates {
    pub partition: i32,
    pub offset: i64,
}

/// Why a write was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteError {
    /// Kafka refuses a record this large: resending cannot help (413).
    TooLarge,
    /// Not acknowledged within the ACK timeout: resend later (503).
    Unavailable,
}

pub type WriteFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Coordinates, WriteError>> + Send + 'a>>;

/// The acknowledged write of one raw HL7 v2 message to a feed topic (acks=all), keyed as
/// the MLLP gateway keys it. Boxed future: the server holds it as `dyn`.
pub trait FeedWriter: Send + Sync {
    fn write<'a>(&'a self, feed: Feed, key: &'a str, payload: &'a [u8]) -> WriteFuture<'a>;
}

/// What providing needs besides the read side's state.
pub(super) struct Provider {
    pub writer: Box<dyn FeedWriter>,
    /// The normalize settings of the pipeline (`normalize_config`), so the pre-check
    /// refuses what the stage would.
    pub normalize: dmpflow_normalize::Config,
    /// MSH-10: `F` + the start time in hex + a counter, unique across restarts.
    prefix: String,
    seq: AtomicU64,
}

impl Provider {
    pub(super) fn new(writer: Box<dyn FeedWriter>, normalize: dmpflow_normalize::Config) -> Self {
        let start = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        Provider {
            writer,
            normalize,
            prefix: format!("F{start:x}"),
            seq: AtomicU64::new(0),
        }
    }

    fn control_id(&self) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{}{n:06}", self.prefix)
    }
}

impl From<ProvideError> for ApiError {
    fn from(e: ProvideError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
        ApiError::new(status, e.code, e.reason, e.diagnostics)
    }
}

fn refused(status: StatusCode, code: IssueType, reason: &str, diag: &str) -> ApiError {
    tracing::info!(reason, status = status.as_u16(), "provide refused");
    ApiError::new(status, code, reason, diag)
}

fn too_large() -> ApiError {
    refused(
        StatusCode::PAYLOAD_TOO_LARGE,
        IssueType::TooCostly,
        "provide.body.too_large",
        "the Bundle is larger than the server reads (20 MiB)",
    )
}

/// A submission ready to write.
struct Prepared {
    patient: PatientId,
    unique_id: String,
    key: String,
    mdm: Vec<u8>,
    entries: Vec<EntryKind>,
}

/// Bundle → checked CDA → MDM^T02 that normalize accepts. Pure (the clock and ids come in).
fn prepare(
    body: &[u8],
    cfg: &dmpflow_normalize::Config,
    env: &Envelope<'_>,
) -> Result<Prepared, ApiError> {
    let sub = parse_bundle(body)?;
    let unprocessable = |reason: &str, diag: &str| {
        refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueType::Processing,
            reason,
            diag,
        )
    };
    let Ok(xml) = std::str::from_utf8(&sub.cda) else {
        return Err(unprocessable(
            dmpflow_schemas::reasons::Reason::CdaXmlInvalid.as_str(),
            "the Binary is not UTF-8 text",
        ));
    };
    // Reject details name elements and limits, never patient data (docs/reasons.md).
    let header =
        read_received_cda(xml, cfg).map_err(|r| unprocessable(r.reason.as_str(), &r.detail))?;
    let cda_patient = PatientId {
        oid: header.patient.ins_oid.clone(),
        ins: header.patient.ins.clone(),
    };
    check_against_cda(&sub, &cda_patient, header.unique_id.as_deref())?;
    let mdm = mdm_t02(env, &header, &sub.cda);
    let items = dmpflow_normalize::normalize(Feed::Documents, mdm.as_bytes(), cfg)
        .map_err(|r| unprocessable(r.reason.as_str(), &r.detail))?;
    let unique_id = match items.as_slice() {
        [Normalized::Document(d)] => d.meta.unique_id.clone(),
        _ => {
            return Err(unprocessable(
                "provide.cda.invalid",
                "the CDA does not make exactly one document",
            ));
        }
    };
    let key = dmpflow_hl7::keys::key_of_raw(mdm.as_bytes(), cfg.max_message_bytes);
    Ok(Prepared {
        patient: cda_patient,
        unique_id,
        key,
        mdm: mdm.into_bytes(),
        entries: sub.entries,
    })
}

/// Who may provide, what was sent, and the MDM it becomes: every refusal the submitter
/// can fix, before anything is written.
async fn check(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: Body,
) -> Result<Prepared, ApiError> {
    let Principal::Professional {
        id, organisation, ..
    } = principal
    else {
        return Err(refused(
            StatusCode::FORBIDDEN,
            IssueType::Forbidden,
            "provide.role.not_professional",
            "only a health professional may provide documents",
        ));
    };
    let Some(provider) = state.0.provide.as_ref() else {
        return Err(refused(
            StatusCode::NOT_IMPLEMENTED,
            IssueType::NotSupported,
            "provide.not_configured",
            "this server does not take documents (ITI-65): it was started without --provide (Kafka)",
        ));
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(
        content_type.as_deref(),
        Some("application/fhir+json" | "application/json")
    ) {
        return Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IssueType::NotSupported,
            "provide.content_type",
            "the Bundle must be sent as application/fhir+json",
        ));
    }
    // Refused from its announced length before a byte is read; a chunked body is cut at
    // the bound as it is read.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;

    let control_id = provider.control_id();
    let timestamp = OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day][hour][minute][second]+0000"
        ))
        .map_err(|_| ApiError::internal("timestamp"))?;
    let cfg = provider.normalize.clone();
    let (pro, org) = (id.clone(), organisation.clone());
    let prepared = tokio::task::spawn_blocking(move || {
        let env = Envelope {
            control_id: &control_id,
            timestamp: &timestamp,
            organisation: org.as_deref(),
            professional: &pro,
        };
        prepare(&body, &cfg, &env)
    })
    .await
    .map_err(|_| ApiError::internal("provide_prepare"))??;
    Ok(prepared)
}

/// `POST /fhir`. Every call is traced like a read: an unauthenticated one as anonymous, a
/// refused one with its caller and reason (no patient: nothing refused names one we can
/// trust), an accepted one before its Kafka write.
pub(super) async fn provide(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let Caller { principal, .. } = caller(&state, &headers, "create", None, &[]).await?;
    let prepared = match check(&state, &principal, &headers, body).await {
        Ok(p) => p,
        Err(e) => {
            let row = trace_for(&principal, &Purpose::Normal, "", "create", None);
            write_trace(&state, row, false, e.reason(), Vec::new()).await?;
            return Err(e);
        }
    };
    let Some(provider) = state.0.provide.as_ref() else {
        return Err(ApiError::internal("provide_not_configured"));
    };
    let trace = trace_for(
        &principal,
        &Purpose::Normal,
        &prepared.patient.ins,
        "create",
        None,
    );
    write_trace(
        &state,
        trace,
        true,
        Reason::PermitProfessional.as_str(),
        vec![prepared.unique_id.clone()],
    )
    .await?;
    match provider
        .writer
        .write(Feed::Documents, &prepared.key, &prepared.mdm)
        .await
    {
        Ok(at) => {
            tracing::info!(
                role = principal.role_name(),
                partition = at.partition,
                offset = at.offset,
                "document provided (ITI-65): written to the documents feed"
            );
            Ok(fhir_json(
                StatusCode::OK,
                &transaction_response(&state.0.base, &prepared.unique_id, &prepared.entries),
            ))
        }
        Err(WriteError::TooLarge) => Err(refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooCostly,
            dmpflow_schemas::reasons::Reason::RecordTooLarge.as_str(),
            "the document is larger than Kafka accepts on the documents feed",
        )),
        Err(WriteError::Unavailable) => Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            IssueType::Transient,
            "kafka.unavailable",
            "not accepted: Kafka did not acknowledge the write in time; please resend",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use serde_json::json;

    fn bundle(ins: &str, cda: &str) -> Vec<u8> {
        json!({ "resourceType": "Bundle", "type": "transaction", "entry": [
            { "fullUrl": "urn:uuid:d", "request": { "method": "POST", "url": "DocumentReference" },
              "resource": { "resourceType": "DocumentReference", "status": "current",
                "subject": { "identifier": { "system": "urn:oid:1.2.250.1.213.1.4.10", "value": ins } },
                "content": [{ "attachment": { "contentType": "application/hl7-cda+xml", "url": "urn:uuid:b" } }] } },
            { "fullUrl": "urn:uuid:b", "request": { "method": "POST", "url": "Binary" },
              "resource": { "resourceType": "Binary", "contentType": "application/hl7-cda+xml",
                "data": base64::engine::general_purpose::STANDARD.encode(cda) } }
        ]})
        .to_string()
        .into_bytes()
    }

    const ENV: Envelope<'static> = Envelope {
        control_id: "F1",
        timestamp: "20260301101500+0000",
        organisation: Some("1123456789"),
        professional: "810000000001",
    };

    fn status(r: Result<Prepared, ApiError>) -> (u16, String) {
        use axum::response::IntoResponse;
        let resp = r.err().expect("refused").into_response();
        let status = resp.status().as_u16();
        let body = futures_body(resp.into_body());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let code = v["issue"][0]["details"]["coding"][0]["code"]
            .as_str()
            .unwrap();
        (status, code.to_owned())
    }

    fn futures_body(b: Body) -> Vec<u8> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(axum::body::to_bytes(b, usize::MAX))
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_demo_cda_is_prepared_keyed_by_its_ins() {
        let cda = crate::mdm::tests::demo_cda();
        let p = prepare(&bundle("246013306364358", &cda), &Default::default(), &ENV).unwrap();
        assert_eq!(p.key, "246013306364358");
        assert_eq!(p.patient.ins, "246013306364358");
        assert!(!p.unique_id.is_empty());
        assert!(p.mdm.starts_with(b"MSH|^~\\&|DMPFLOW-FHIR|1123456789|"));
    }

    #[test]
    fn identity_and_content_are_checked_before_writing() {
        let cda = crate::mdm::tests::demo_cda();
        let cfg = Default::default();
        assert_eq!(
            status(prepare(&bundle("138127505614358", &cda), &cfg, &ENV)),
            (422, "provide.patient.mismatch".into())
        );
        assert_eq!(
            status(prepare(
                &bundle("246013306364358", "plain text"),
                &cfg,
                &ENV
            )),
            (422, "cda.xml.invalid".into())
        );
        assert_eq!(
            status(prepare(
                &bundle("246013306364358", "<html xmlns=\"urn:hl7-org:v3\"/>"),
                &cfg,
                &ENV
            )),
            (422, "cda.not_clinical_document".into())
        );
        // A CDA over the configured size: normalize's own limit, before any parsing.
        let small = dmpflow_normalize::Config {
            max_cda_bytes: 100,
            ..Default::default()
        };
        assert_eq!(
            status(prepare(&bundle("246013306364358", &cda), &small, &ENV)),
            (422, "cda.too_large".into())
        );
        assert_eq!(
            status(prepare(b"{", &cfg, &ENV)),
            (400, "provide.bundle.invalid".into())
        );
    }
}
