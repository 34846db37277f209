//! What every portal page shares: the layout (French, skip link, landmarks, the dev-mode
//! banner), the logged-in user taken from the session cookie, CSRF checks of forms, and
//! errors as pages. Markup is maud: every interpolated value is escaped by construction;
//! only the renderer's already-safe narrative goes in through `PreEscaped`.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::session::{Session, cookie, cookie_name, same_token};
use super::{AppState, portal};
use crate::authz::Principal;
use crate::server::http::{ApiError, query_pairs};

/// Largest form body read (a break-the-glass reason is the longest field).
pub(super) const MAX_FORM_BYTES: usize = 8 << 10;

/// The body of a page handler: the session's user (else the login page), `$body` (a
/// future of `Result<Response, PageError>` using `$u: &User`) run, its error rendered in
/// the layout. A macro, not a function taking an async closure: axum needs the handler's
/// future to be `Send`, which a generic async closure cannot promise on stable Rust.
macro_rules! as_user {
    ($state:ident, $headers:ident, |$u:ident| $body:expr) => {{
        match $crate::server::portal::page::user(&$state, &$headers) {
            Ok(user) => {
                let $u = &user;
                let result = $body.await;
                $crate::server::portal::page::respond(&$state, Some($u), result)
            }
            Err(e) => $crate::server::portal::page::respond(&$state, None, Err(e)),
        }
    }};
}
pub(super) use as_user;

/// A logged-in user: their session id and session.
pub(super) struct User {
    pub id: String,
    pub session: Session,
}

impl User {
    pub fn principal(&self) -> &Principal {
        &self.session.principal
    }
}

/// The user of this request, or a redirect to the login page.
pub(super) fn user(state: &AppState, headers: &HeaderMap) -> Result<User, PageError> {
    let p = portal(state);
    let id = cookie(headers, cookie_name(p.secure)).ok_or(PageError::Login)?;
    let session = p.sessions.get(id).ok_or(PageError::Login)?;
    Ok(User {
        id: id.to_owned(),
        session,
    })
}

/// A posted form's fields, after its size and its CSRF token were checked against the
/// session's.
pub(super) fn form(user: &User, body: &Bytes) -> Result<Vec<(String, String)>, PageError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(PageError::status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Formulaire trop long",
            "Le formulaire envoyé dépasse la taille admise.",
        ));
    }
    let fields = query_pairs(std::str::from_utf8(body).ok());
    let token = field(&fields, "csrf").unwrap_or("");
    if !same_token(token, &user.session.csrf) {
        return Err(PageError::status(
            StatusCode::FORBIDDEN,
            "Formulaire expiré",
            "Ce formulaire ne vient pas de cette session. Rechargez la page et recommencez.",
        ));
    }
    Ok(fields)
}

/// The first value of `name` in decoded form or query pairs.
pub(super) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A redirect after a POST (303: the browser follows with a GET).
pub(super) fn see_other(to: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            HeaderValue::from_str(to).unwrap_or(HeaderValue::from_static("/portal/")),
        )],
    )
        .into_response()
}

/// A page: the layout around `body`, for `user` (None on the login page).
pub(super) fn layout(state: &AppState, title: &str, user: Option<&User>, body: Markup) -> Markup {
    let dev = state.verifier().is_dev();
    html! {
        (DOCTYPE)
        html lang="fr" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Mon DMP" }
                link rel="stylesheet" href="/portal/portal.css";
            }
            body {
                a.skip href="#contenu" { "Aller au contenu" }
                @if dev {
                    p.devbanner role="note" {
                        "Démonstration : connexion de développement, identités fictives. "
                        "Ce serveur ne doit pas être exposé."
                    }
                }
                header.top {
                    a.brand href="/portal/" { "Mon DMP" span.sub { " · dmpflow" } }
                    @if let Some(u) = user {
                        nav aria-label="Menu principal" {
                            ul {
                                @match u.principal() {
                                    Principal::Professional { .. } => {
                                        li { a href="/portal/pro" { "Rechercher un patient" } }
                                    }
                                    _ => {
                                        li { a href="/portal/dmp" { "Mes documents" } }
                                        li { a href="/portal/dmp/results" { "Mes résultats" } }
                                        li { a href="/portal/dmp/history" { "Qui a consulté mon dossier" } }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { (who(u.principal())) }
                            form method="post" action="/portal/logout" {
                                input type="hidden" name="csrf" value=(u.session.csrf);
                                button type="submit" { "Se déconnecter" }
                            }
                        }
                    }
                }
                main #contenu tabindex="-1" { (body) }
                footer {
                    p { "Chaque consultation de ce dossier est enregistrée et visible par le patient." }
                }
            }
        }
    }
}

/// How the header names the user (never their INS).
fn who(p: &Principal) -> &'static str {
    match p {
        Principal::Patient { .. } => "Patient",
        Principal::Representative { .. } => "Représentant légal",
        Principal::Professional { .. } => "Professionnel de santé",
    }
}

/// A page as an HTML answer.
pub(super) fn html_page(status: StatusCode, page: Markup) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        page.into_string(),
    )
        .into_response()
}

/// Why a page cannot be shown.
#[derive(Debug)]
pub(super) enum PageError {
    /// Not logged in (or the session ended): to the login page.
    Login,
    Status {
        status: StatusCode,
        title: &'static str,
        message: String,
        /// A stable reason code when the rules decided (shown for support, never data).
        reason: Option<String>,
    },
}

impl PageError {
    pub fn status(status: StatusCode, title: &'static str, message: &str) -> PageError {
        PageError::Status {
            status,
            title,
            message: message.to_owned(),
            reason: None,
        }
    }

    pub fn not_found() -> PageError {
        PageError::status(
            StatusCode::NOT_FOUND,
            "Document introuvable",
            "Ce document n'existe pas ou ne vous est pas accessible.",
        )
    }
}

/// The API's errors, as the portal says them.
impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        let status = e.status();
        let (title, message) = match status {
            StatusCode::UNAUTHORIZED => return PageError::Login,
            StatusCode::FORBIDDEN => (
                "Accès refusé",
                "Les règles du DMP ne vous permettent pas d'ouvrir ce dossier.",
            ),
            StatusCode::NOT_FOUND => (
                "Introuvable",
                "Ce document ou ce dossier n'existe pas ou ne vous est pas accessible.",
            ),
            StatusCode::BAD_REQUEST => ("Demande invalide", "La demande n'a pas pu être lue."),
            _ => (
                "Erreur",
                "La demande n'a pas pu aboutir. Réessayez plus tard.",
            ),
        };
        PageError::Status {
            status,
            title,
            message: message.to_owned(),
            reason: Some(e.reason().to_owned()),
        }
    }
}

/// An error with the state at hand: rendered in the layout.
pub(super) struct ErrorPage<'a>(pub &'a AppState, pub Option<&'a User>, pub PageError);

impl IntoResponse for ErrorPage<'_> {
    fn into_response(self) -> Response {
        let ErrorPage(state, user, e) = self;
        match e {
            PageError::Login => see_other("/portal/login"),
            PageError::Status {
                status,
                title,
                message,
                reason,
            } => {
                let body = html! {
                    h1 { (title) }
                    p { (message) }
                    @if let Some(r) = reason { p.code { "Code : " code { (r) } } }
                    p { a href="/portal/" { "Retour à l'accueil" } }
                };
                html_page(status, layout(state, title, user, body))
            }
        }
    }
}

/// Runs a page handler's body and renders its error, if any, in the layout.
pub(super) fn respond(
    state: &AppState,
    user: Option<&User>,
    result: Result<Response, PageError>,
) -> Response {
    result.unwrap_or_else(|e| ErrorPage(state, user, e).into_response())
}
