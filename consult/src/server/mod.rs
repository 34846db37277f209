//! The FHIR R4 server (issue #13): IHE MHD ITI-67/68 on the DMP, lab results as
//! Observations, the patient's own access traces as AuditEvents, and ITI-65 Provide
//! Document Bundle (`provide`: documents in, through the HL7 v2 feed path).
//!
//! This is an edge: it authenticates (`auth`), asks the pure rules (`authz`) and builds the
//! resources (`fhir`); it decides nothing on its own. Every search and read of a DMP writes
//! an `access_trace` row before it answers, and a request whose trace cannot be written
//! fails (500): nothing is shown that was not traced. Errors are always OperationOutcomes
//! with a stable reason code, and a document the caller may not see answers exactly as a
//! missing one. Logs carry roles and reason codes, never an INS or a document id.

mod documents;
mod http;
mod others;
pub mod portal;
mod provide;
mod scope;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use dmpflow_store::Store;

use crate::auth::{RoleMapping, Verifier};
pub use provide::{Coordinates, FeedWriter, MAX_BODY_BYTES, WriteError, WriteFuture};
pub use tls::{MAX_HANDSHAKES, TlsListener};

/// Issuer and audience of dev tokens (`dmpflow token`, `serve --auth-dev-key`).
pub const DEV_ISSUER: &str = "dmpflow-dev";
pub const DEV_AUDIENCE: &str = "dmpflow-consult";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// Told of every answered request: its route template (never the raw path, which holds
/// ids), HTTP status and duration. The host feeds its metrics from it; the crate itself
/// exports none.
pub type Observer = Arc<dyn Fn(&str, u16, Duration) + Send + Sync>;

struct Inner {
    observer: Option<Observer>,
    store: Store,
    verifier: Verifier,
    mapping: RoleMapping,
    /// The FHIR base as clients reach it, e.g. `http://127.0.0.1:8080/fhir`.
    base: String,
    /// ITI-65 (`POST /fhir`), when the server was given a feed writer.
    provide: Option<provide::Provider>,
    /// The portal's sessions and logins (`/portal/`), when served.
    portal: Option<Arc<portal::Portal>>,
}

impl AppState {
    /// `base` is the public FHIR base URL (no trailing slash), used in Bundle links.
    pub fn new(store: Store, verifier: Verifier, mapping: RoleMapping, base: &str) -> AppState {
        AppState(Arc::new(Inner {
            observer: None,
            store,
            verifier,
            mapping,
            base: base.trim_end_matches('/').to_owned(),
            provide: None,
            portal: None,
        }))
    }

    /// Serves the portal under `/portal/` (call before the state is shared).
    pub fn with_portal(mut self, portal: portal::Portal) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("with_portal is called before the state is shared")
            .portal = Some(Arc::new(portal));
        self
    }

    /// Reports every answered request to `observer` (call before serving).
    pub fn observed(mut self, observer: Observer) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("observed() is called before the state is shared")
            .observer = Some(observer);
        self
    }

    /// The token verifier (the host refreshes its keys from the issuer's JWKS).
    pub fn verifier(&self) -> &Verifier {
        &self.0.verifier
    }

    /// Takes documents in (ITI-65) through `writer`, checked by normalize with `normalize`
    /// (the pipeline's settings) first. Call before the state is shared (serving).
    pub fn with_provider(
        mut self,
        writer: Box<dyn FeedWriter>,
        normalize: dmpflow_normalize::Config,
    ) -> AppState {
        Arc::get_mut(&mut self.0)
            .expect("with_provider is called before the state is shared")
            .provide = Some(provide::Provider::new(writer, normalize));
        self
    }

    /// The store behind the server (tests read the traces through it).
    pub fn store(&self) -> &Store {
        &self.0.store
    }
}

/// The routes: the FHIR API under `/fhir`, the portal under `/portal` when served.
pub fn router(state: AppState) -> Router {
    let portal = match state.0.portal {
        Some(_) => portal::routes(state.clone()),
        None => Router::new(),
    };
    Router::new()
        .merge(portal)
        .route("/fhir", post(provide::provide))
        .route("/fhir/metadata", get(others::metadata))
        .route("/fhir/DocumentReference", get(documents::search))
        .route("/fhir/DocumentReference/{id}", get(documents::read))
        .route("/fhir/Binary/{id}", get(documents::binary))
        .route("/fhir/Observation", get(others::observations))
        .route("/fhir/AuditEvent", get(others::audit_events))
        .fallback(http::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Times each request and reports it with its route template (`unmatched` for the
/// fallback) to the state's observer.
async fn observe(
    State(state): State<AppState>,
    matched: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = matched.map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    if let Some(o) = &state.0.observer {
        o(&route, response.status().as_u16(), started.elapsed());
    }
    response
}

/// Serves until `shutdown` completes, then finishes the requests in flight. `listener` is a
/// `tokio::net::TcpListener` (plain HTTP) or a [`TlsListener`] (HTTPS).
pub async fn serve<L>(
    listener: L,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    if state.0.verifier.is_dev() {
        tracing::warn!(
            "DEV AUTHENTICATION: tokens signed by a local dev key are accepted; never expose this server"
        );
    }
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
