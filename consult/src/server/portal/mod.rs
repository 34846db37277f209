//! The portal (issue #14): server-rendered pages under `/portal/` where a patient (or their
//! legal representative) sees their DMP — documents by category, each as a readable page,
//! lab results as tables and charts, who accessed it — and masks documents from
//! professionals, and where a professional finds a patient by INS and reads what the rules
//! let them, breaking the glass with a reason the patient will see.
//!
//! Same edge as the FHIR API: the session holds a principal established from the same
//! tokens (dev login or OIDC), the same rules (`authz`) decide, and every page that shows
//! a DMP writes its `access_trace` row first (`documents::open_dmp`, `readable_by`).
//! Pages are HTML built with maud (escaping by construction) plus the renderer's safe
//! document HTML; no JavaScript, every asset served by the binary, and a strict
//! Content-Security-Policy on every answer.

mod dmp;
mod login;
mod page;
mod pro;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

pub use login::{DevLogin, OidcLogin};
pub use session::{MAX_SESSIONS, SESSION_HOURS};

use super::AppState;

/// What the portal needs besides the API's state: its sessions and how users log in.
pub struct Portal {
    sessions: session::Sessions,
    dev: Option<DevLogin>,
    oidc: Option<OidcLogin>,
    /// Cookies are `Secure` (and `__Host-` named) when the server speaks TLS.
    secure: bool,
}

impl Portal {
    /// `secure`: the server is reached over HTTPS. A portal without any login method
    /// still serves its login page, which says so.
    pub fn new(dev: Option<DevLogin>, oidc: Option<OidcLogin>, secure: bool) -> Portal {
        Portal {
            sessions: session::Sessions::default(),
            dev,
            oidc,
            secure,
        }
    }
}

/// The stylesheet, the only asset: served by the binary (no CDN), cached by browsers.
const CSS: &str = include_str!("portal.css");

/// The Content-Security-Policy of every portal answer: nothing runs (no script source at
/// all), styles only from the portal's own stylesheet, images only inline (`data:` for
/// nothing today; the SVG charts are inline markup), no frame, no plugin, forms post only
/// here. A document's narrative that slipped past the renderer would still be inert.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// The routes under `/portal`.
pub(super) fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/portal", get(login::home))
        .route("/portal/", get(login::home))
        .route("/portal/portal.css", get(stylesheet))
        .route("/portal/login", get(login::page))
        .route("/portal/login/dev", post(login::dev))
        .route("/portal/login/oidc", get(login::oidc_start))
        .route("/portal/callback", get(login::oidc_callback))
        .route("/portal/logout", post(login::logout))
        .route("/portal/dmp", get(dmp::documents))
        .route("/portal/dmp/results", get(dmp::results))
        .route("/portal/dmp/history", get(dmp::history))
        .route("/portal/doc/{id}", get(dmp::document))
        .route("/portal/doc/{id}/pdf/{n}", get(dmp::pdf))
        .route("/portal/doc/{id}/mask", post(dmp::mask))
        .route("/portal/doc/{id}/unmask", post(dmp::unmask))
        .route("/portal/pro", get(pro::find))
        .route("/portal/pro/break-glass", post(pro::break_glass))
        .layer(middleware::from_fn_with_state(state, security_headers))
}

async fn stylesheet() -> Response {
    let mut r = Response::new(CSS.into());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// Headers every portal answer carries: the CSP, no sniffing, no referrer (URLs hold
/// document ids), no caching of pages that show health data, no framing.
async fn security_headers(
    axum::extract::State(_state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let is_css = request.uri().path() == "/portal/portal.css";
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !is_css {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The portal of the state (always present once `AppState::with_portal` ran; a state
/// without one answers the portal's routes 404, see `router`).
fn portal(state: &AppState) -> &Arc<Portal> {
    state
        .0
        .portal
        .as_ref()
        .expect("portal routes are only mounted with a portal")
}
