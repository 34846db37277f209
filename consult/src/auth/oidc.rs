//! The portal's login: the OIDC authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636,
//! OIDC Core §3.1) against the configured issuer.
//!
//! Pure at the core, IO at the edge. The pure parts build the authorization request
//! ([`OidcClient::authorization_url`]), check the callback ([`OidcClient::callback_code`]),
//! read discovery and token responses ([`ProviderMetadata::from_json`], [`parse_token_response`])
//! and check the ID token's claims ([`OidcClient::verify_id_token`]). The edge is three
//! blocking HTTP calls (ureq, bounded in size and time like [`super::load_jwks`]): discovery
//! ([`OidcClient::discover`]), the code exchange ([`OidcClient::exchange_code`]) and the
//! issuer's keys ([`OidcClient::load_id_token_verifier`]); the server calls them from
//! `tokio::task::spawn_blocking`.
//!
//! The order the portal follows:
//! 1. at startup, [`OidcClient::discover`] and [`OidcClient::load_id_token_verifier`];
//! 2. on "log in", [`OidcClient::begin`]: keep the [`LoginAttempt`] server-side (or sealed),
//!    bound to the browser, and redirect to the URL;
//! 3. on the callback, [`OidcClient::finish`] with the attempt and the raw query string, then
//!    [`OidcClient::verify_id_token`], then [`super::RoleMapping::principal`].
//!
//! Errors carry stable codes (`auth.oidc.*`, `auth.config.oidc`); their messages never hold
//! a code, a token, a secret, a state, a nonce or a claim value.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

use super::jwks::JWKS_FETCH_TIMEOUT;
use super::{AuthError, Claims, Verifier, load_jwks};

/// The largest discovery document accepted. Keycloak's is about 7 KiB; 64 KiB leaves room
/// for any issuer and is not a document anyone needs.
pub const MAX_DISCOVERY_BYTES: u64 = 64 * 1024;
/// The largest token response accepted: an ID token with PSC's `SubjectRefPro` and an access
/// token are a few KiB.
pub const MAX_TOKEN_RESPONSE_BYTES: u64 = 64 * 1024;
/// Bound on one discovery fetch or code exchange (connect, TLS and body together): the same
/// as a JWKS fetch.
pub const OIDC_FETCH_TIMEOUT: Duration = JWKS_FETCH_TIMEOUT;
/// The longest callback query string read: a code is a few hundred bytes at most.
pub const MAX_CALLBACK_QUERY: usize = 8 * 1024;
/// Random bytes in each of state, nonce and PKCE verifier: 256 bits, 43 base64url characters
/// (RFC 7636 §4.1 wants 43 to 128 characters).
const RANDOM_BYTES: usize = 32;

/// How the client authenticates at the token endpoint (RFC 6749 §2.3.1, OIDC Core §9).
/// `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// A public client: `client_id` in the form, PKCE as the only proof.
    None,
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret. The method
    /// every issuer must support (RFC 6749 §2.3.1), and the default for a secret.
    SecretBasic(String),
    /// `client_secret_post`: `client_id` and `client_secret` in the form body.
    SecretPost(String),
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::None => "None",
            ClientAuth::SecretBasic(_) => "SecretBasic(..)",
            ClientAuth::SecretPost(_) => "SecretPost(..)",
        })
    }
}

/// The portal's registration at the issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    issuer: String,
    client_id: String,
    client_auth: ClientAuth,
    redirect_uri: String,
    scopes: Vec<String>,
}

impl OidcConfig {
    /// A public client of `issuer` (https://, or http:// to a loopback host only), asking
    /// for the `openid` scope, its code sent back to `redirect_uri` (absolute, https:// or
    /// loopback http://, no fragment: RFC 6749 §3.1.2).
    pub fn new(issuer: &str, client_id: &str, redirect_uri: &str) -> Result<Self, AuthError> {
        let config_error = |reason: String| AuthError::ConfigOidc { reason };
        let issuer_url =
            checked_url(issuer).map_err(|why| config_error(format!("issuer {issuer}: {why}")))?;
        if issuer_url.query().is_some() || issuer_url.fragment().is_some() {
            return Err(config_error(format!(
                "issuer {issuer}: no query or fragment allowed"
            )));
        }
        let redirect = checked_url(redirect_uri)
            .map_err(|why| config_error(format!("redirect URI {redirect_uri}: {why}")))?;
        if redirect.fragment().is_some() {
            return Err(config_error(format!(
                "redirect URI {redirect_uri}: no fragment allowed"
            )));
        }
        if client_id.is_empty() || client_id.chars().any(char::is_control) {
            return Err(config_error(
                "client_id empty or with control characters".into(),
            ));
        }
        Ok(OidcConfig {
            // Kept as configured: the discovery document's `issuer` and the ID token's `iss`
            // must equal it exactly (no normalisation by the URL parser).
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            client_auth: ClientAuth::None,
            redirect_uri: redirect_uri.to_owned(),
            scopes: vec!["openid".to_owned()],
        })
    }

    /// A confidential client: how it authenticates at the token endpoint.
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Result<Self, AuthError> {
        if let ClientAuth::SecretBasic(s) | ClientAuth::SecretPost(s) = &auth
            && s.is_empty()
        {
            return Err(AuthError::ConfigOidc {
                reason: "client secret empty".into(),
            });
        }
        self.client_auth = auth;
        Ok(self)
    }

    /// Scopes asked for beside `openid`, which is always first. Each must be a scope token
    /// (RFC 6749 §3.3: printable ASCII without space, `"` or `\`).
    pub fn with_scopes<S: AsRef<str>>(mut self, scopes: &[S]) -> Result<Self, AuthError> {
        let mut all = vec!["openid".to_owned()];
        for scope in scopes {
            let scope = scope.as_ref();
            let valid = !scope.is_empty()
                && scope
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                return Err(AuthError::ConfigOidc {
                    reason: format!("scope {scope:?} is not a scope token"),
                });
            }
            if !all.iter().any(|s| s == scope) {
                all.push(scope.to_owned());
            }
        }
        self.scopes = all;
        Ok(self)
    }

    /// The issuer, as configured.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client id, which is also the ID token's audience.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The redirect URI sent in the authorization request and the code exchange.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The scopes asked for, `openid` first.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// `{issuer}/.well-known/openid-configuration`, a terminating `/` of the issuer removed
    /// first (OIDC Discovery §4.1).
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }
}

/// The `url` as a URL if it is https://, or http:// to a loopback host (the rule of
/// `--auth-jwks`): codes and tokens must not travel in clear beyond this machine.
fn checked_url(url: &str) -> Result<Url, &'static str> {
    let parsed = Url::parse(url).map_err(|_| "not an absolute URL")?;
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(parsed),
        "http" if is_loopback(&parsed) => Ok(parsed),
        "http" => Err("must be https:// (plain http:// only to a loopback address)"),
        _ => Err("must be https://"),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// What discovery yields: the issuer's endpoints, each checked like the issuer (https://, or
/// loopback http://).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMetadata {
    /// Equal to the configured issuer, byte for byte.
    pub issuer: String,
    /// Where the browser is sent to log in.
    pub authorization_endpoint: String,
    /// Where the code is exchanged, server to server.
    pub token_endpoint: String,
    /// The issuer's keys, for [`OidcClient::load_id_token_verifier`].
    pub jwks_uri: String,
}

impl ProviderMetadata {
    /// Reads a discovery document and checks it is `expected_issuer`'s (OIDC Discovery §4.3).
    /// A document advertising `code_challenge_methods_supported` without `S256` is refused:
    /// the login would then run without PKCE.
    pub fn from_json(expected_issuer: &str, json: &str) -> Result<Self, AuthError> {
        let fail = |reason: &str| AuthError::OidcDiscovery {
            reason: reason.to_owned(),
        };
        let doc: serde_json::Map<String, Value> =
            serde_json::from_str(json).map_err(|_| fail("the document is not a JSON object"))?;
        match doc.get("issuer") {
            Some(Value::String(issuer)) if issuer == expected_issuer => {}
            Some(Value::String(_)) => return Err(AuthError::OidcDiscoveryIssuer),
            _ => return Err(fail("the document has no issuer")),
        }
        let endpoint = |name: &str| -> Result<String, AuthError> {
            let Some(Value::String(url)) = doc.get(name) else {
                return Err(AuthError::OidcDiscovery {
                    reason: format!("the document has no {name}"),
                });
            };
            checked_url(url).map_err(|why| AuthError::OidcDiscovery {
                reason: format!("{name} {why}"),
            })?;
            Ok(url.clone())
        };
        if let Some(methods) = doc.get("code_challenge_methods_supported") {
            let s256 = methods
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m == "S256"));
            if !s256 {
                return Err(fail("the issuer does not support PKCE S256"));
            }
        }
        Ok(ProviderMetadata {
            issuer: expected_issuer.to_owned(),
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint: endpoint("token_endpoint")?,
            jwks_uri: endpoint("jwks_uri")?,
        })
    }
}

/// One login in progress: what the callback must match. Keep it server-side (or sealed and
/// authenticated) and bound to the browser that started the login; use it once. `Debug`
/// shows none of the secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginAttempt {
    /// Sent as `state`, must come back in the callback (CSRF protection).
    pub state: String,
    /// Sent as `nonce`, must come back in the ID token (replay protection).
    pub nonce: String,
    /// PKCE: its S256 challenge goes out, the verifier itself only to the token endpoint.
    pub code_verifier: String,
}

impl std::fmt::Debug for LoginAttempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginAttempt").finish_non_exhaustive()
    }
}

impl LoginAttempt {
    /// A fresh attempt: state, nonce and verifier of 256 random bits each, base64url.
    pub fn new() -> Result<Self, AuthError> {
        Ok(LoginAttempt {
            state: random_token()?,
            nonce: random_token()?,
            code_verifier: random_token()?,
        })
    }

    /// The PKCE S256 challenge: BASE64URL(SHA256(verifier)) (RFC 7636 §4.2).
    pub fn code_challenge(&self) -> String {
        pkce_challenge(&self.code_verifier)
    }
}

/// BASE64URL-ENCODE(SHA256(ASCII(verifier))), unpadded (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn random_token() -> Result<String, AuthError> {
    let mut bytes = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut bytes).map_err(|_| AuthError::OidcRandom)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Byte-wise comparison whose time does not depend on where the values differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// What the token endpoint returned. `Debug` shows no token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSet {
    /// The ID token, not yet verified: see [`OidcClient::verify_id_token`].
    pub id_token: String,
    /// The access token, if the issuer returned one.
    pub access_token: Option<String>,
    /// The access token's lifetime (`expires_in`), if given.
    pub expires_in: Option<Duration>,
    /// `expires_in` from the time the response was read, in seconds since the epoch.
    pub expires_at: Option<u64>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &self.access_token.as_ref().map(|_| ".."))
            .field("expires_in", &self.expires_in)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Reads a token endpoint's answer: `status` and at most [`MAX_TOKEN_RESPONSE_BYTES`] of
/// body. `now` (seconds since the epoch) dates `expires_at`.
pub fn parse_token_response(status: u16, body: &str, now: u64) -> Result<TokenSet, AuthError> {
    let fail = |reason: String| AuthError::OidcTokenEndpoint { reason };
    let json: Option<serde_json::Map<String, Value>> = serde_json::from_str(body).ok();
    if status != 200 {
        // RFC 6749 §5.2: 400 (or 401 for client authentication) with a JSON `error`.
        if let Some(Value::String(error)) = json.as_ref().and_then(|j| j.get("error"))
            && (400..500).contains(&status)
        {
            return Err(AuthError::OidcTokenRefused {
                error: registered(error, TOKEN_ERRORS),
            });
        }
        return Err(fail(format!("HTTP status {status}")));
    }
    let json = json.ok_or_else(|| fail("the response is not a JSON object".into()))?;
    let Some(Value::String(id_token)) = json.get("id_token") else {
        return Err(fail("the response has no id_token".into()));
    };
    let access_token = match json.get("access_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.clone()),
        Some(_) => return Err(fail("access_token is not a string".into())),
    };
    let expires_in = match json.get("expires_in") {
        None | Some(Value::Null) => None,
        // Some issuers send the number as a string.
        Some(v) => Some(
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .ok_or_else(|| fail("expires_in is not a number of seconds".into()))?,
        ),
    };
    Ok(TokenSet {
        id_token: id_token.clone(),
        access_token,
        expires_in: expires_in.map(Duration::from_secs),
        expires_at: expires_in.map(|s| now.saturating_add(s)),
    })
}

/// Authorization error codes (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6): the only `error`
/// values repeated in messages.
const AUTHORIZATION_ERRORS: &[&str] = &[
    "invalid_request",
    "unauthorized_client",
    "access_denied",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "interaction_required",
    "login_required",
    "account_selection_required",
    "consent_required",
    "invalid_request_uri",
    "invalid_request_object",
    "request_not_supported",
    "request_uri_not_supported",
    "registration_not_supported",
];

/// Token endpoint error codes (RFC 6749 §5.2).
const TOKEN_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

/// `value` if it is one of `known`, else `unregistered`: an issuer's (or an attacker's) free
/// text never reaches a log.
fn registered(value: &str, known: &[&str]) -> String {
    if known.contains(&value) {
        value.to_owned()
    } else {
        "unregistered".to_owned()
    }
}

/// The client: its registration and the issuer's discovered endpoints.
#[derive(Debug, Clone)]
pub struct OidcClient {
    config: OidcConfig,
    provider: ProviderMetadata,
}

impl OidcClient {
    /// A client from a registration and endpoints already known (tests, or metadata
    /// configured by hand). The metadata must be the configured issuer's.
    pub fn new(config: OidcConfig, provider: ProviderMetadata) -> Result<Self, AuthError> {
        if provider.issuer != config.issuer {
            return Err(AuthError::OidcDiscoveryIssuer);
        }
        for (name, url) in [
            ("authorization_endpoint", &provider.authorization_endpoint),
            ("token_endpoint", &provider.token_endpoint),
            ("jwks_uri", &provider.jwks_uri),
        ] {
            checked_url(url).map_err(|why| AuthError::OidcDiscovery {
                reason: format!("{name} {why}"),
            })?;
        }
        Ok(OidcClient { config, provider })
    }

    /// Blocking: fetches `{issuer}/.well-known/openid-configuration` (at most
    /// [`MAX_DISCOVERY_BYTES`], within [`OIDC_FETCH_TIMEOUT`]) and builds the client.
    pub fn discover(config: OidcConfig) -> Result<Self, AuthError> {
        let url = config.discovery_url();
        let fail = |why: String| AuthError::OidcDiscovery {
            reason: format!("cannot fetch {url}: {why}"),
        };
        let https = url.starts_with("https://");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(OIDC_FETCH_TIMEOUT))
            .https_only(https)
            .max_redirects(if https { 3 } else { 0 })
            .http_status_as_error(true)
            .build()
            .into();
        let mut response = agent
            .get(url.as_str())
            .header("Accept", "application/json")
            .call()
            .map_err(|e| fail(e.to_string()))?;
        let json = response
            .body_mut()
            .with_config()
            .limit(MAX_DISCOVERY_BYTES)
            .read_to_string()
            .map_err(|e| fail(e.to_string()))?;
        let provider = ProviderMetadata::from_json(&config.issuer, &json)?;
        Ok(OidcClient { config, provider })
    }

    /// The registration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The discovered endpoints.
    pub fn provider(&self) -> &ProviderMetadata {
        &self.provider
    }

    /// Starts a login: a fresh [`LoginAttempt`] and the URL to redirect the browser to.
    pub fn begin(&self) -> Result<(LoginAttempt, String), AuthError> {
        let attempt = LoginAttempt::new()?;
        let url = self.authorization_url(&attempt);
        Ok((attempt, url))
    }

    /// The authorization request for `attempt` (OIDC Core §3.1.2.1, RFC 7636 §4.3): the
    /// endpoint's own query kept (RFC 6749 §3.1), parameters appended
    /// application/x-www-form-urlencoded.
    pub fn authorization_url(&self, attempt: &LoginAttempt) -> String {
        let mut url = Url::parse(&self.provider.authorization_endpoint)
            .expect("checked by OidcClient::new and ProviderMetadata::from_json");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &attempt.state)
            .append_pair("nonce", &attempt.nonce)
            .append_pair("code_challenge", &attempt.code_challenge())
            .append_pair("code_challenge_method", "S256");
        url.into()
    }

    /// Checks the callback's raw query string against `attempt` and returns its `code`.
    /// Pure. `state` first (a forged callback is refused before anything else is read), then
    /// an `error=` answer, then `iss` if present (RFC 9207), then `code`.
    pub fn callback_code(&self, attempt: &LoginAttempt, query: &str) -> Result<String, AuthError> {
        let malformed = |reason| AuthError::OidcCallback { reason };
        if query.len() > MAX_CALLBACK_QUERY {
            return Err(malformed("query string too long"));
        }
        let (mut state, mut code, mut error, mut iss) = (None, None, None, None);
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "state" => &mut state,
                "code" => &mut code,
                "error" => &mut error,
                "iss" => &mut iss,
                _ => continue,
            };
            if slot.is_some() {
                // RFC 6749 §3.1: parameters must not be included more than once.
                if name == "state" {
                    return Err(AuthError::OidcState);
                }
                return Err(malformed("a parameter is repeated"));
            }
            *slot = Some(value.into_owned());
        }
        match state {
            Some(state) if constant_time_eq(&state, &attempt.state) => {}
            _ => return Err(AuthError::OidcState),
        }
        if let Some(error) = error {
            return Err(AuthError::OidcDenied {
                error: registered(&error, AUTHORIZATION_ERRORS),
            });
        }
        if let Some(iss) = iss
            && iss != self.config.issuer
        {
            return Err(malformed("iss names another issuer"));
        }
        match code {
            Some(code) if !code.is_empty() => Ok(code),
            _ => Err(malformed("no code")),
        }
    }

    /// Blocking: the callback checked ([`OidcClient::callback_code`]), then its code
    /// exchanged ([`OidcClient::exchange_code`]). The ID token still has to be verified.
    pub fn finish(&self, attempt: &LoginAttempt, query: &str) -> Result<TokenSet, AuthError> {
        let code = self.callback_code(attempt, query)?;
        self.exchange_code(attempt, &code)
    }

    /// The token request's form (RFC 6749 §4.1.3, RFC 7636 §4.5) and its `Authorization`
    /// header value, if the client authenticates with HTTP Basic. Pure.
    pub fn token_request(
        &self,
        attempt: &LoginAttempt,
        code: &str,
    ) -> (Vec<(&'static str, String)>, Option<String>) {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", self.config.redirect_uri.clone()),
            ("code_verifier", attempt.code_verifier.clone()),
        ];
        let mut authorization = None;
        match &self.config.client_auth {
            ClientAuth::None => form.push(("client_id", self.config.client_id.clone())),
            ClientAuth::SecretPost(secret) => {
                form.push(("client_id", self.config.client_id.clone()));
                form.push(("client_secret", secret.clone()));
            }
            ClientAuth::SecretBasic(secret) => {
                // RFC 6749 §2.3.1: id and secret form-encoded before Basic.
                let encode = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let pair = format!("{}:{}", encode(&self.config.client_id), encode(secret));
                authorization = Some(format!("Basic {}", STANDARD.encode(pair)));
            }
        }
        (form, authorization)
    }

    /// Blocking: exchanges `code` at the token endpoint (POST, no redirect followed, at most
    /// [`MAX_TOKEN_RESPONSE_BYTES`] within [`OIDC_FETCH_TIMEOUT`]).
    pub fn exchange_code(&self, attempt: &LoginAttempt, code: &str) -> Result<TokenSet, AuthError> {
        let url = &self.provider.token_endpoint;
        let fail = |why: String| AuthError::OidcTokenEndpoint {
            // The endpoint is configuration; ureq's error names the transport failure, it
            // never holds the request body (code, verifier, secret).
            reason: format!("{url}: {why}"),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(OIDC_FETCH_TIMEOUT))
            .https_only(url.starts_with("https://"))
            // A redirect would resend the code and secret elsewhere.
            .max_redirects(0)
            // Error statuses are read: their JSON `error` says why.
            .http_status_as_error(false)
            .build()
            .into();
        let (form, authorization) = self.token_request(attempt, code);
        let mut request = agent
            .post(url.as_str())
            .header("Accept", "application/json");
        if let Some(value) = authorization {
            request = request.header("Authorization", value);
        }
        let mut response = request
            .send_form(form.iter().map(|(k, v)| (*k, v.as_str())))
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_TOKEN_RESPONSE_BYTES)
            .read_to_string()
            .map_err(|e| fail(e.to_string()))?;
        parse_token_response(status, &body, jsonwebtoken::get_current_timestamp())
    }

    /// A verifier of this issuer's ID tokens (audience: the client id) from its JWKS. Pure.
    pub fn id_token_verifier(
        &self,
        jwks_json: &str,
        leeway: Duration,
    ) -> Result<Verifier, AuthError> {
        Verifier::from_jwks(
            jwks_json,
            &self.provider.issuer,
            &self.config.client_id,
            leeway,
        )
    }

    /// Blocking: the discovered `jwks_uri` fetched ([`super::load_jwks`]: its size and time
    /// bounds, https:// or loopback http://), then [`OidcClient::id_token_verifier`]. On key
    /// rotation, [`Verifier::replace_keys`] with a fresh `load_jwks(&provider().jwks_uri)`.
    pub fn load_id_token_verifier(&self, leeway: Duration) -> Result<Verifier, AuthError> {
        let jwks = load_jwks(&self.provider.jwks_uri)?;
        self.id_token_verifier(&jwks, leeway)
    }

    /// Verifies the ID token of `attempt` (OIDC Core §3.1.3.7): signature, `exp` and `nbf`
    /// by `verifier` (build it with [`OidcClient::id_token_verifier`]); then, here, `iss`
    /// exactly the issuer and `aud` holding the client id (again, so that a verifier built
    /// for another audience cannot pass an ID token), `azp` the client id when present or
    /// when `aud` has several values, `sub` and `iat` present, `nonce` the attempt's.
    pub fn verify_id_token(
        &self,
        verifier: &Verifier,
        id_token: &str,
        attempt: &LoginAttempt,
    ) -> Result<Claims, AuthError> {
        let claims = verifier.verify(id_token)?;
        let map = claims.as_map();
        if map.get("iss").and_then(Value::as_str) != Some(self.provider.issuer.as_str()) {
            return Err(AuthError::TokenIssuer);
        }
        let client_id = self.config.client_id.as_str();
        let audiences: Vec<&str> = match map.get("aud") {
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !audiences.contains(&client_id) {
            return Err(AuthError::TokenAudience);
        }
        match map.get("azp") {
            Some(Value::String(azp)) if azp == client_id => {}
            None if audiences.len() == 1 => {}
            _ => return Err(AuthError::TokenAudience),
        }
        if map
            .get("sub")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(AuthError::TokenClaim {
                claim: "sub".into(),
            });
        }
        if !map.get("iat").is_some_and(Value::is_number) {
            return Err(AuthError::TokenClaim {
                claim: "iat".into(),
            });
        }
        match map.get("nonce").and_then(Value::as_str) {
            Some(nonce) if constant_time_eq(nonce, &attempt.nonce) => Ok(claims),
            _ => Err(AuthError::OidcNonce),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://auth.esante.example/realms/esante";

    fn provider() -> ProviderMetadata {
        ProviderMetadata {
            issuer: ISS.into(),
            authorization_endpoint: format!("{ISS}/protocol/openid-connect/auth"),
            token_endpoint: format!("{ISS}/protocol/openid-connect/token"),
            jwks_uri: format!("{ISS}/protocol/openid-connect/certs"),
        }
    }

    fn client() -> OidcClient {
        let config = OidcConfig::new(
            ISS,
            "dmpflow-portal",
            "https://dmp.example/portal/callback?x=1&y",
        )
        .unwrap()
        .with_scopes(&["profile", "scope_all"])
        .unwrap();
        OidcClient::new(config, provider()).unwrap()
    }

    fn attempt() -> LoginAttempt {
        LoginAttempt {
            state: "st-1".into(),
            nonce: "no-1".into(),
            code_verifier: "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into(),
        }
    }

    /// RFC 7636 appendix B's example. Its challenge is
    /// `E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM` (as printed in the RFC, and SHA-256 of
    /// the verifier recomputed independently), not the `...CHoeXcUCvIFDD3H9Fty8Sow` quoted
    /// in this task's brief.
    #[test]
    fn pkce_challenge_of_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn attempts_are_random_base64url_256_bits() {
        let a = LoginAttempt::new().unwrap();
        let b = LoginAttempt::new().unwrap();
        for s in [&a.state, &a.nonce, &a.code_verifier] {
            assert_eq!(s.len(), 43);
            assert_eq!(URL_SAFE_NO_PAD.decode(s).unwrap().len(), 32);
        }
        assert_ne!(a.state, b.state);
        assert_ne!(a.nonce, a.state);
        assert_ne!(a.code_verifier, b.code_verifier);
        assert_eq!(format!("{a:?}"), "LoginAttempt { .. }");
    }

    #[test]
    fn authorization_url_is_encoded_exactly() {
        let url = client().authorization_url(&attempt());
        assert_eq!(
            url,
            "https://auth.esante.example/realms/esante/protocol/openid-connect/auth\
             ?response_type=code&client_id=dmpflow-portal\
             &redirect_uri=https%3A%2F%2Fdmp.example%2Fportal%2Fcallback%3Fx%3D1%26y\
             &scope=openid+profile+scope_all&state=st-1&nonce=no-1\
             &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\
             &code_challenge_method=S256"
        );
    }

    #[test]
    fn authorization_url_keeps_the_endpoint_query() {
        let mut p = provider();
        p.authorization_endpoint = format!("{ISS}/auth?acr_values=eidas1");
        let c = OidcClient::new(client().config, p).unwrap();
        let url = Url::parse(&c.authorization_url(&attempt())).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("acr_values".into(), "eidas1".into()));
        assert_eq!(pairs[1], ("response_type".into(), "code".into()));
        assert_eq!(pairs[3].1, "https://dmp.example/portal/callback?x=1&y");
    }

    #[test]
    fn configuration_is_checked() {
        let code = |r: Result<OidcConfig, AuthError>| r.unwrap_err().code();
        assert_eq!(
            code(OidcConfig::new("http://idp.example", "c", "https://a/cb")),
            "auth.config.oidc"
        );
        assert_eq!(
            code(OidcConfig::new("ftp://idp.example", "c", "https://a/cb")),
            "auth.config.oidc"
        );
        assert_eq!(
            code(OidcConfig::new(
                "https://idp.example?x",
                "c",
                "https://a/cb"
            )),
            "auth.config.oidc"
        );
        assert_eq!(
            code(OidcConfig::new(ISS, "", "https://a/cb")),
            "auth.config.oidc"
        );
        assert_eq!(
            code(OidcConfig::new(ISS, "c", "/portal/callback")),
            "auth.config.oidc"
        );
        assert_eq!(
            code(OidcConfig::new(ISS, "c", "https://a/cb#f")),
            "auth.config.oidc"
        );
        assert_eq!(
            code(OidcConfig::new(ISS, "c", "http://a.example/cb")),
            "auth.config.oidc"
        );
        assert!(OidcConfig::new("http://127.0.0.1:8080/realm", "c", "http://localhost/cb").is_ok());
        assert!(OidcConfig::new("http://[::1]:8080", "c", "http://127.0.0.2/cb").is_ok());
        let c = OidcConfig::new(ISS, "c", "https://a/cb").unwrap();
        assert_eq!(code(c.clone().with_scopes(&["a b"])), "auth.config.oidc");
        assert_eq!(code(c.clone().with_scopes(&["a\"b"])), "auth.config.oidc");
        assert_eq!(
            code(
                c.clone()
                    .with_client_auth(ClientAuth::SecretPost(String::new()))
            ),
            "auth.config.oidc"
        );
        assert_eq!(
            c.clone().with_scopes(&["openid", "x"]).unwrap().scopes(),
            ["openid", "x"]
        );
        let secret = c
            .with_client_auth(ClientAuth::SecretBasic("s3cret".into()))
            .unwrap();
        assert!(!format!("{secret:?}").contains("s3cret"));
        let slash = OidcConfig::new("https://idp.example/realm/", "c", "https://a/cb").unwrap();
        assert_eq!(
            slash.discovery_url(),
            "https://idp.example/realm/.well-known/openid-configuration"
        );
    }

    #[test]
    fn discovery_document_is_checked() {
        let doc = |issuer: &str, extra: &str| {
            format!(
                r#"{{"issuer":"{issuer}","authorization_endpoint":"{ISS}/auth",
                "token_endpoint":"{ISS}/token","jwks_uri":"{ISS}/certs"{extra}}}"#
            )
        };
        let p = ProviderMetadata::from_json(ISS, &doc(ISS, "")).unwrap();
        assert_eq!(p.token_endpoint, format!("{ISS}/token"));
        let code = |json: &str| ProviderMetadata::from_json(ISS, json).unwrap_err().code();
        assert_eq!(
            code(&doc(&format!("{ISS}/"), "")),
            "auth.oidc.discovery_issuer"
        );
        assert_eq!(
            code(&doc("https://evil.example", "")),
            "auth.oidc.discovery_issuer"
        );
        assert_eq!(code("[]"), "auth.oidc.discovery");
        assert_eq!(
            code(r#"{"authorization_endpoint":"x"}"#),
            "auth.oidc.discovery"
        );
        let plain = doc(ISS, "").replace(&format!("{ISS}/token"), "http://idp.example/token");
        assert_eq!(code(&plain), "auth.oidc.discovery");
        assert_eq!(
            code(&doc(
                ISS,
                r#","code_challenge_methods_supported":["plain"]"#
            )),
            "auth.oidc.discovery"
        );
        assert!(
            ProviderMetadata::from_json(
                ISS,
                &doc(
                    ISS,
                    r#","code_challenge_methods_supported":["plain","S256"]"#
                )
            )
            .is_ok()
        );
        let mut other = provider();
        other.issuer = "https://other.example".into();
        assert_eq!(
            OidcClient::new(client().config, other).unwrap_err().code(),
            "auth.oidc.discovery_issuer"
        );
    }

    #[test]
    fn callback_checks_state_first() {
        let c = client();
        let a = attempt();
        assert_eq!(c.callback_code(&a, "code=abc&state=st-1").unwrap(), "abc");
        assert_eq!(
            c.callback_code(
                &a,
                &format!(
                    "state=st-1&code=a%2Bb&iss={}",
                    url::form_urlencoded::byte_serialize(ISS.as_bytes()).collect::<String>()
                )
            )
            .unwrap(),
            "a+b"
        );
        let code = |q: &str| c.callback_code(&a, q).unwrap_err().code();
        assert_eq!(code("code=abc&state=st-2"), "auth.oidc.state");
        assert_eq!(code("code=abc&state=st-"), "auth.oidc.state");
        assert_eq!(code("code=abc"), "auth.oidc.state");
        assert_eq!(code("code=abc&state=st-1&state=st-1"), "auth.oidc.state");
        assert_eq!(code("error=access_denied&state=evil"), "auth.oidc.state");
        assert_eq!(code("state=st-1"), "auth.oidc.callback");
        assert_eq!(code("state=st-1&code="), "auth.oidc.callback");
        assert_eq!(code("state=st-1&code=a&code=b"), "auth.oidc.callback");
        assert_eq!(
            code("state=st-1&code=a&iss=https%3A%2F%2Fevil.example"),
            "auth.oidc.callback"
        );
        let long = format!("state=st-1&code={}", "a".repeat(MAX_CALLBACK_QUERY));
        assert_eq!(code(&long), "auth.oidc.callback");
    }

    #[test]
    fn error_answers_keep_only_registered_codes() {
        let c = client();
        let a = attempt();
        let denied = c
            .callback_code(
                &a,
                "error=access_denied&error_description=INS+2840763123456789&state=st-1",
            )
            .unwrap_err();
        assert_eq!(
            denied,
            AuthError::OidcDenied {
                error: "access_denied".into()
            }
        );
        assert_eq!(denied.code(), "auth.oidc.denied");
        assert!(!denied.to_string().contains("2840763123456789"));
        let odd = c
            .callback_code(&a, "error=2840763123456789&state=st-1")
            .unwrap_err();
        assert_eq!(
            odd,
            AuthError::OidcDenied {
                error: "unregistered".into()
            }
        );
        assert!(!odd.to_string().contains("2840763123456789"));
    }

    #[test]
    fn token_request_carries_pkce_and_client_auth() {
        let base = client();
        let (form, auth) = base.token_request(&attempt(), "the-code");
        assert_eq!(auth, None);
        let get = |form: &[(&str, String)], k: &str| {
            form.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        assert_eq!(get(&form, "grant_type").unwrap(), "authorization_code");
        assert_eq!(get(&form, "code").unwrap(), "the-code");
        assert_eq!(
            get(&form, "code_verifier").unwrap(),
            attempt().code_verifier
        );
        assert_eq!(
            get(&form, "redirect_uri").unwrap(),
            "https://dmp.example/portal/callback?x=1&y"
        );
        assert_eq!(get(&form, "client_id").unwrap(), "dmpflow-portal");
        let config = base
            .config
            .clone()
            .with_client_auth(ClientAuth::SecretBasic("s:é".into()))
            .unwrap();
        let basic = OidcClient::new(config, provider()).unwrap();
        let (form, auth) = basic.token_request(&attempt(), "c");
        assert_eq!(get(&form, "client_id"), None);
        assert_eq!(get(&form, "client_secret"), None);
        let encoded = auth.unwrap().strip_prefix("Basic ").unwrap().to_owned();
        let decoded = String::from_utf8(STANDARD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, "dmpflow-portal:s%3A%C3%A9");
        let config = base
            .config
            .clone()
            .with_client_auth(ClientAuth::SecretPost("sec".into()))
            .unwrap();
        let post = OidcClient::new(config, provider()).unwrap();
        let (form, auth) = post.token_request(&attempt(), "c");
        assert_eq!(auth, None);
        assert_eq!(get(&form, "client_secret").unwrap(), "sec");
    }

    #[test]
    fn token_responses_are_read() {
        let ok = parse_token_response(
            200,
            r#"{"id_token":"h.p.s","access_token":"at","token_type":"Bearer","expires_in":300}"#,
            1000,
        )
        .unwrap();
        assert_eq!(ok.id_token, "h.p.s");
        assert_eq!(ok.access_token.as_deref(), Some("at"));
        assert_eq!(ok.expires_in, Some(Duration::from_secs(300)));
        assert_eq!(ok.expires_at, Some(1300));
        assert!(!format!("{ok:?}").contains("at\""));
        assert!(!format!("{ok:?}").contains("h.p.s"));
        let only = parse_token_response(200, r#"{"id_token":"x","expires_in":"60"}"#, 0).unwrap();
        assert_eq!((only.access_token, only.expires_at), (None, Some(60)));
        let code = |status, body: &str| parse_token_response(status, body, 0).unwrap_err();
        assert_eq!(
            code(
                400,
                r#"{"error":"invalid_grant","error_description":"code x"}"#
            ),
            AuthError::OidcTokenRefused {
                error: "invalid_grant".into()
            }
        );
        assert_eq!(
            code(401, r#"{"error":"invalid_client"}"#).code(),
            "auth.oidc.token_refused"
        );
        assert_eq!(
            code(400, r#"{"error":"secret-ish"}"#),
            AuthError::OidcTokenRefused {
                error: "unregistered".into()
            }
        );
        assert_eq!(
            code(500, r#"{"error":"server_error"}"#).code(),
            "auth.oidc.token_endpoint"
        );
        assert_eq!(code(302, "").code(), "auth.oidc.token_endpoint");
        assert_eq!(code(200, "not json").code(), "auth.oidc.token_endpoint");
        assert_eq!(
            code(200, r#"{"access_token":"at"}"#).code(),
            "auth.oidc.token_endpoint"
        );
        assert_eq!(
            code(200, r#"{"id_token":"x","expires_in":"soon"}"#).code(),
            "auth.oidc.token_endpoint"
        );
        assert!(
            !code(200, r#"{"access_token":"secret-at"}"#)
                .to_string()
                .contains("secret-at")
        );
    }
}
