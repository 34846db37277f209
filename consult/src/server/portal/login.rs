//! Logging in and out. Every login ends the same way: a token of the configured issuer,
//! verified by the API's own verifier and role mapping, becomes the session's principal.
//! - Dev login (`serve --auth-dev-key`): a page that picks a demo identity (patient,
//!   legal representative, professional) and mints a dev token for it, clearly marked.
//! - OIDC (authorization code with PKCE) against the configured issuer, for real use.
//!
//! The login form is protected from login CSRF by a double-submit token (a cookie set with
//! the page and the same value in the form); every other form by the session's token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::page::{self, PageError, field, html_page, layout, see_other, user};
use super::session::{
    cookie, cookie_name, login_cookie_name, random_token, same_token, set_cookie,
};
use super::{AppState, portal};
use crate::auth::{LoginAttempt, OidcClient, Verifier, mint_dev_token};
use crate::authz::Principal;
use crate::server::{DEV_AUDIENCE, DEV_ISSUER};

/// How long a dev login lasts.
const DEV_SESSION: Duration = Duration::from_secs(8 * 3600);
/// How long the login form stays valid.
const LOGIN_FORM: Duration = Duration::from_secs(30 * 60);
/// Demo identities the dev login page suggests.
const DEV_SUGGESTIONS: i64 = 12;
/// The professional the dev login suggests (a test RPPS of the ANS examples' form).
const DEV_PROFESSIONAL: &str = "10003000001";

/// The dev login: tokens signed with the dev key the verifier trusts.
pub struct DevLogin {
    private_pem: String,
}

impl DevLogin {
    pub fn new(private_pem: String) -> DevLogin {
        DevLogin { private_pem }
    }
}

/// The OIDC login (authorization code with PKCE): the discovered client, the verifier of
/// its ID tokens, and the login attempts under way, each bound to the browser that began
/// it by a cookie and used once.
pub struct OidcLogin {
    client: Arc<OidcClient>,
    verifier: Verifier,
    attempts: Mutex<HashMap<String, (LoginAttempt, Instant)>>,
}

/// Most login attempts under way at once (the oldest go first).
const MAX_ATTEMPTS: usize = 1000;
/// How long a login attempt waits for the issuer's callback.
const ATTEMPT_TTL: Duration = Duration::from_secs(10 * 60);

impl OidcLogin {
    /// `client` discovered at startup; `verifier` checks its ID tokens (from
    /// `OidcClient::load_id_token_verifier`).
    pub fn new(client: OidcClient, verifier: Verifier) -> OidcLogin {
        OidcLogin {
            client: Arc::new(client),
            verifier,
            attempts: Mutex::new(HashMap::new()),
        }
    }

    fn keep(&self, key: &str, attempt: LoginAttempt) {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, at)| now.duration_since(*at) < ATTEMPT_TTL);
        if map.len() >= MAX_ATTEMPTS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(key.to_owned(), (attempt, now));
    }

    /// The attempt of `key`, once (a callback replayed finds nothing).
    fn take(&self, key: &str) -> Option<LoginAttempt> {
        let mut map = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(key)
            .filter(|(_, at)| at.elapsed() < ATTEMPT_TTL)
            .map(|(a, _)| a)
    }
}

/// The cookie binding an OIDC login attempt to the browser. `SameSite=Lax`, not Strict:
/// the issuer's redirect back is a cross-site navigation, on which a Strict cookie would
/// not be sent. It holds only a random key of the attempt kept on the server.
fn oidc_cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-dmpflow-oidc"
    } else {
        "dmpflow-oidc"
    }
}

/// GET `/portal/login/oidc`: a new attempt, and the redirect to the issuer.
pub(super) async fn oidc_start(State(state): State<AppState>) -> Response {
    let p = portal(&state);
    let Some(oidc) = &p.oidc else {
        return page::respond(&state, None, Err(PageError::not_found()));
    };
    let (attempt, url) = match oidc.client.begin() {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(code = e.code(), "OIDC login not begun");
            return page::respond(&state, None, Err(oidc_error(&e)));
        }
    };
    let key = random_token();
    oidc.keep(&key, attempt);
    let mut r = see_other(&url);
    let secure = if p.secure { "; Secure" } else { "" };
    let cookie = format!(
        "{}={key}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
        oidc_cookie_name(p.secure),
        ATTEMPT_TTL.as_secs()
    );
    r.headers_mut().append(
        header::SET_COOKIE,
        cookie.parse().expect("cookie of visible ASCII"),
    );
    r
}

/// GET `/portal/callback?code=&state=`: the attempt of this browser, the code exchanged
/// (PKCE), the ID token verified (signature, issuer, audience, nonce), then a session.
pub(super) async fn oidc_callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let result = oidc_finish(&state, &headers, uri.query().unwrap_or("")).await;
    let p = portal(&state);
    let mut r = page::respond(&state, None, result);
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(oidc_cookie_name(p.secure), "", Duration::ZERO, p.secure),
    );
    r
}

async fn oidc_finish(
    state: &AppState,
    headers: &HeaderMap,
    query: &str,
) -> Result<Response, PageError> {
    let p = portal(state);
    let oidc = p.oidc.as_ref().ok_or_else(PageError::not_found)?;
    let attempt = cookie(headers, oidc_cookie_name(p.secure))
        .and_then(|key| oidc.take(key))
        .ok_or_else(|| {
            PageError::status(
                StatusCode::BAD_REQUEST,
                "Connexion expirée",
                "Cette connexion n'a pas été commencée ici ou a expiré. Recommencez.",
            )
        })?;
    let client = oidc.client.clone();
    let (query, a) = (query.to_owned(), attempt.clone());
    let tokens = tokio::task::spawn_blocking(move || client.finish(&a, &query))
        .await
        .map_err(|_| {
            PageError::status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Erreur",
                "La connexion n'a pas abouti.",
            )
        })?
        .map_err(|e| {
            tracing::info!(code = e.code(), "OIDC login refused");
            oidc_error(&e)
        })?;
    let claims = oidc
        .client
        .verify_id_token(&oidc.verifier, &tokens.id_token, &attempt)
        .map_err(|e| {
            tracing::info!(code = e.code(), "OIDC ID token refused");
            oidc_error(&e)
        })?;
    let principal = state.0.mapping.principal(&claims).map_err(|e| {
        tracing::info!(code = e.code(), "OIDC identity not mapped");
        oidc_error(&e)
    })?;
    // The session lasts as the issuer's access token would (capped by the session store).
    let ttl = tokens.expires_in.unwrap_or(Duration::from_secs(3600));
    Ok(session_answer(state, principal, ttl))
}

fn oidc_error(e: &crate::auth::AuthError) -> PageError {
    PageError::Status {
        status: StatusCode::UNAUTHORIZED,
        title: "Connexion refusée",
        message: "Le fournisseur d'identité n'a pas confirmé votre identité.".into(),
        reason: Some(e.code().to_owned()),
    }
}

/// `/portal/`: a logged-in user's home, else the login page.
pub(super) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match user(&state, &headers) {
        Ok(u) => match u.principal() {
            Principal::Professional { .. } => see_other("/portal/pro"),
            _ => see_other("/portal/dmp"),
        },
        Err(_) => see_other("/portal/login"),
    }
}

/// The login page, with a fresh login-form token (cookie + hidden field).
pub(super) async fn page(State(state): State<AppState>) -> Response {
    let p = portal(&state);
    let token = random_token();
    let suggestions = match &p.dev {
        Some(_) => state
            .store()
            .patients_with_documents(DEV_SUGGESTIONS)
            .await
            .unwrap_or_else(|_| {
                // The store error's text may quote data: only that it failed is logged.
                tracing::warn!("dev login: no identities to suggest (store error)");
                Vec::new()
            }),
        None => Vec::new(),
    };
    let body = html! {
        h1 { "Connexion" }
        @if p.dev.is_none() && p.oidc.is_none() {
            p { "Aucune méthode de connexion n'est configurée sur ce serveur "
                "(voir " code { "dmpflow serve --help" } ")." }
        }
        @if p.oidc.is_some() {
            section.card aria-labelledby="oidc-title" {
                h2 #oidc-title { "Connexion" }
                p { "Vous allez être dirigé vers le service d'identification, puis revenir ici." }
                p { a.button href="/portal/login/oidc" { "Se connecter avec mon compte" } }
            }
        }
        @if p.dev.is_some() {
            section.card aria-labelledby="dev-title" {
                h2 #dev-title { "Connexion de démonstration" }
                p.warn { "Identités fictives, sans mot de passe : réservé aux démonstrations "
                    "et aux tests. Un vrai déploiement utilise le fournisseur d'identité." }
                form method="post" action="/portal/login/dev" {
                    input type="hidden" name="login" value=(token);
                    fieldset {
                        legend { "Je me connecte en tant que" }
                        div.choice {
                            input #r-patient type="radio" name="role" value="patient" checked;
                            label for="r-patient" { "Patient" }
                        }
                        div.choice {
                            input #r-rep type="radio" name="role" value="representative";
                            label for="r-rep" { "Représentant légal d'un patient" }
                        }
                        div.choice {
                            input #r-pro type="radio" name="role" value="professional";
                            label for="r-pro" { "Professionnel de santé" }
                        }
                    }
                    div.field {
                        label for="ins" { "INS du patient (patient, représentant)" }
                        input #ins name="ins" inputmode="numeric" autocomplete="off"
                            list="demo-ins" maxlength="15" pattern="[0-9]{13}([0-9]{2})?";
                        datalist #demo-ins {
                            @for r in &suggestions {
                                option value=(r.ins) { (r.birth_name) " " (r.first_names.first().map(String::as_str).unwrap_or("")) }
                            }
                        }
                    }
                    div.field {
                        label for="rpps" { "RPPS (professionnel)" }
                        input #rpps name="rpps" value=(DEV_PROFESSIONAL) autocomplete="off" maxlength="20";
                    }
                    button type="submit" { "Se connecter" }
                }
                @if !suggestions.is_empty() {
                    details {
                        summary { "Patients de démonstration" }
                        ul.plain {
                            @for r in &suggestions {
                                li { code { (r.ins) } " — " (r.birth_name) " " (r.first_names.first().map(String::as_str).unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        }
    };
    let mut r = html_page(StatusCode::OK, layout(&state, "Connexion", None, body));
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(login_cookie_name(p.secure), &token, LOGIN_FORM, p.secure),
    );
    r
}

/// POST of the dev login form: the identity chosen, as a dev token, as a session.
pub(super) async fn dev(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = dev_login(&state, &headers, &body);
    page::respond(&state, None, result)
}

fn dev_login(state: &AppState, headers: &HeaderMap, body: &Bytes) -> Result<Response, PageError> {
    let p = portal(state);
    let Some(dev) = &p.dev else {
        return Err(PageError::not_found());
    };
    if body.len() > page::MAX_FORM_BYTES {
        return Err(bad_login("Formulaire trop long."));
    }
    let fields = crate::server::http::query_pairs(std::str::from_utf8(body).ok());
    let sent = field(&fields, "login").unwrap_or("");
    let expected = cookie(headers, login_cookie_name(p.secure)).unwrap_or("");
    if expected.is_empty() || !same_token(sent, expected) {
        return Err(PageError::status(
            StatusCode::FORBIDDEN,
            "Formulaire expiré",
            "Ce formulaire de connexion a expiré. Rechargez la page de connexion.",
        ));
    }
    let ins = field(&fields, "ins").unwrap_or("").trim().to_owned();
    let principal = match field(&fields, "role") {
        Some("patient") => Principal::Patient { ins },
        Some("representative") => Principal::Representative {
            represented_ins: ins,
            id: "representant-demo".into(),
        },
        Some("professional") => Principal::Professional {
            id: field(&fields, "rpps").unwrap_or("").trim().to_owned(),
            profession: "10".into(),
            organisation: Some("demo-organisation".into()),
        },
        _ => return Err(bad_login("Choisissez un rôle.")),
    };
    let blank = match &principal {
        Principal::Patient { ins } => ins.is_empty(),
        Principal::Representative {
            represented_ins, ..
        } => represented_ins.is_empty(),
        Principal::Professional { id, .. } => id.is_empty(),
    };
    if blank {
        return Err(bad_login("Indiquez l'INS du patient ou le RPPS."));
    }
    let token = mint_dev_token(
        &dev.private_pem,
        &principal,
        &state.0.mapping,
        DEV_ISSUER,
        DEV_AUDIENCE,
        DEV_SESSION,
    )
    .map_err(|e| {
        tracing::error!(code = e.code(), "dev login: token not minted");
        bad_login("Le jeton de démonstration n'a pas pu être créé.")
    })?;
    open_session(state, &token, DEV_SESSION)
}

/// A verified token → a session, and the answer that sets its cookie and goes home.
pub(super) fn open_session(
    state: &AppState,
    token: &str,
    ttl: Duration,
) -> Result<Response, PageError> {
    let principal = state
        .0
        .verifier
        .authenticate(token, &state.0.mapping)
        .map_err(|e| {
            tracing::info!(code = e.code(), "portal login refused");
            PageError::Status {
                status: StatusCode::UNAUTHORIZED,
                title: "Connexion refusée",
                message: "Votre identité n'a pas pu être vérifiée.".into(),
                reason: Some(e.code().to_owned()),
            }
        })?;
    Ok(session_answer(state, principal, ttl))
}

/// A new session for `principal`: the answer sets its cookie and goes home.
fn session_answer(state: &AppState, principal: Principal, ttl: Duration) -> Response {
    let p = portal(state);
    let id = p.sessions.open(principal, ttl);
    let mut r = see_other("/portal/");
    let h = r.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(cookie_name(p.secure), &id, ttl, p.secure),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(login_cookie_name(p.secure), "", Duration::ZERO, p.secure),
    );
    r
}

fn bad_login(message: &str) -> PageError {
    PageError::status(StatusCode::BAD_REQUEST, "Connexion impossible", message)
}

/// POST `/portal/logout` (CSRF-checked): the session ends, its cookie is deleted.
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = portal(&state);
    let u = match user(&state, &headers) {
        Ok(u) => u,
        Err(_) => return see_other("/portal/login"),
    };
    if let Err(e) = page::form(&u, &body) {
        return page::ErrorPage(&state, Some(&u), e).into_response();
    }
    p.sessions.close(&u.id);
    let mut r = see_other("/portal/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(cookie_name(p.secure), "", Duration::ZERO, p.secure),
    );
    r
}
