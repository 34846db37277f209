//! A test OIDC issuer on 127.0.0.1, in this process (axum on its own tokio runtime, in its
//! own thread, so that the blocking client under test can be called from plain `#[test]`s):
//! discovery, a JWKS from a freshly generated P-256 key, an authorization endpoint that
//! redirects straight back with a code (no login page), and a token endpoint that checks the
//! code (single use), the redirect URI, the client's secret and the PKCE verifier (S256)
//! before it signs an ID token carrying the request's nonce.
//!
//! Misbehaviours are switched on through [`Behaviour`], shared with the running server.

#![allow(dead_code)] // each test binary uses its own part of it

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use dmpflow_consult::auth::generate_dev_keypair;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The issuer's path below its origin: discovery must append to it, not replace it.
pub const REALM: &str = "/realms/dmp";
const KID: &str = "test-issuer-key";

/// What the issuer does wrong, switched on by a test.
#[derive(Debug, Default, Clone)]
pub struct Behaviour {
    /// The discovery document names this issuer instead of its own.
    pub discovery_issuer: Option<String>,
    /// The discovery document is padded to this many bytes.
    pub discovery_padding: Option<usize>,
    /// The authorization endpoint answers `error=access_denied` (with a description).
    pub deny: bool,
    /// The ID token carries this nonce instead of the request's.
    pub nonce: Option<String>,
    /// The ID token's audience instead of the client id.
    pub audience: Option<String>,
}

/// A code issued by the authorization endpoint, and what its exchange must match.
struct Grant {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    nonce: String,
}

struct Inner {
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
    /// Claims the ID token carries beside the registered ones (role, INS...).
    user_claims: Map<String, Value>,
    key: EncodingKey,
    jwks: String,
    behaviour: Behaviour,
    grants: HashMap<String, Grant>,
    /// Codes handed out, ID tokens signed.
    codes: u64,
    issued: u64,
}

type Shared = Arc<Mutex<Inner>>;

/// A running test issuer; stopped when dropped.
pub struct TestIssuer {
    /// The issuer identifier: `http://127.0.0.1:PORT/realms/dmp`.
    pub issuer: String,
    inner: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl TestIssuer {
    /// Starts an issuer that knows one client, `client_id` (with `client_secret`, accepted
    /// by Basic or in the form; without, a public client), and signs ID tokens holding
    /// `user_claims`.
    pub fn start(
        client_id: &str,
        client_secret: Option<&str>,
        user_claims: Map<String, Value>,
    ) -> TestIssuer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let issuer = format!("http://{}{REALM}", listener.local_addr().unwrap());
        let pair = generate_dev_keypair().unwrap();
        let key = EncodingKey::from_ec_pem(pair.private_pem.as_bytes()).unwrap();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(KID.to_owned());
        let jwks = serde_json::to_string(&JwkSet { keys: vec![jwk] }).unwrap();
        let inner = Arc::new(Mutex::new(Inner {
            issuer: issuer.clone(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.map(str::to_owned),
            user_claims,
            key,
            jwks,
            behaviour: Behaviour::default(),
            grants: HashMap::new(),
            codes: 0,
            issued: 0,
        }));
        let app = Router::new()
            .route(
                &format!("{REALM}/.well-known/openid-configuration"),
                get(discovery),
            )
            .route(&format!("{REALM}/certs"), get(certs))
            .route(&format!("{REALM}/auth"), get(authorize))
            .route(&format!("{REALM}/token"), post(token))
            .with_state(inner.clone());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        TestIssuer {
            issuer,
            inner,
            shutdown: Some(shutdown),
        }
    }

    /// Changes what the issuer does wrong from now on.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        self.inner.lock().unwrap().behaviour = behaviour;
    }

    /// How many ID tokens the token endpoint has signed.
    pub fn issued(&self) -> u64 {
        self.inner.lock().unwrap().issued
    }
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn query_pairs(query: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

async fn discovery(State(inner): State<Shared>) -> Response {
    let inner = inner.lock().unwrap();
    let base = &inner.issuer;
    let mut doc = json!({
        "issuer": inner.behaviour.discovery_issuer.clone().unwrap_or_else(|| base.clone()),
        "authorization_endpoint": format!("{base}/auth"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/certs"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    });
    if let Some(size) = inner.behaviour.discovery_padding {
        doc["padding"] = Value::String("x".repeat(size));
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
        .into_response()
}

async fn certs(State(inner): State<Shared>) -> Response {
    let jwks = inner.lock().unwrap().jwks.clone();
    ([(header::CONTENT_TYPE, "application/json")], jwks).into_response()
}

fn bad_request(what: &str) -> Response {
    (StatusCode::BAD_REQUEST, what.to_owned()).into_response()
}

/// Checks the authorization request as an issuer would, then "logs the user in" at once and
/// redirects back with a fresh code (or an error, when told to deny).
async fn authorize(State(inner): State<Shared>, uri: Uri) -> Response {
    let q = query_pairs(uri.query().unwrap_or(""));
    let mut inner = inner.lock().unwrap();
    let param = |name: &str| q.get(name).cloned().unwrap_or_default();
    if param("response_type") != "code"
        || param("client_id") != inner.client_id
        || param("code_challenge_method") != "S256"
        || param("code_challenge").len() != 43
        || param("state").is_empty()
        || param("nonce").is_empty()
        || !param("scope").split(' ').any(|s| s == "openid")
    {
        return bad_request("invalid authorization request");
    }
    let redirect_uri = param("redirect_uri");
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let location = if inner.behaviour.deny {
        format!(
            "{redirect_uri}{sep}error=access_denied&error_description={}&state={}",
            encode("user 2840763123456789 said no"),
            encode(&param("state"))
        )
    } else {
        inner.codes += 1;
        let code = format!("code-{}", inner.codes);
        inner.grants.insert(
            code.clone(),
            Grant {
                client_id: param("client_id"),
                redirect_uri: redirect_uri.clone(),
                code_challenge: param("code_challenge"),
                nonce: param("nonce"),
            },
        );
        format!(
            "{redirect_uri}{sep}code={}&state={}&iss={}",
            encode(&code),
            encode(&param("state")),
            encode(&inner.issuer)
        )
    };
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

fn token_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": error, "error_description": "refused by the test issuer"}).to_string(),
    )
        .into_response()
}

/// The code exchange (RFC 6749 §4.1.3, RFC 7636 §4.6): client authentication, a known and
/// unused code, the same redirect URI, and SHA-256 of the verifier equal to the challenge.
async fn token(State(inner): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form = query_pairs(std::str::from_utf8(&body).unwrap_or(""));
    let mut inner = inner.lock().unwrap();
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let (client_id, secret) = match &basic {
        Some(pair) => {
            let (id, secret) = pair.split_once(':').unwrap_or((pair.as_str(), ""));
            let decode = |s: &str| {
                query_pairs(&format!("v={s}"))
                    .remove("v")
                    .unwrap_or_default()
            };
            (decode(id), Some(decode(secret)))
        }
        None => (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned(),
        ),
    };
    if client_id != inner.client_id || secret != inner.client_secret {
        return token_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return token_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    // A code is used once, whatever the outcome (RFC 6749 §4.1.2).
    let code = form.get("code").cloned().unwrap_or_default();
    let Some(grant) = inner.grants.remove(&code) else {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
    };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    if grant.client_id != client_id
        || form.get("redirect_uri") != Some(&grant.redirect_uri)
        || challenge != grant.code_challenge
    {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = inner.user_claims.clone();
    claims.insert("iss".into(), inner.issuer.clone().into());
    claims.insert(
        "aud".into(),
        inner
            .behaviour
            .audience
            .clone()
            .unwrap_or_else(|| inner.client_id.clone())
            .into(),
    );
    claims.entry("sub").or_insert_with(|| "user-1".into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + 300).into());
    claims.insert(
        "nonce".into(),
        inner.behaviour.nonce.clone().unwrap_or(grant.nonce).into(),
    );
    let mut jose = Header::new(Algorithm::ES256);
    jose.kid = Some(KID.to_owned());
    let id_token = jsonwebtoken::encode(&jose, &claims, &inner.key).unwrap();
    inner.issued += 1;
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json!({
            "access_token": format!("at-{}", inner.issued),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        })
        .to_string(),
    )
        .into_response()
}
