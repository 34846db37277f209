//! The portal's OIDC login (`dmpflow_consult::auth::OidcClient`) against a real issuer on
//! 127.0.0.1 (`support/oidc_issuer.rs`): discovery, the authorization redirect, the code
//! exchange with PKCE and client authentication, the ID token verified with the issuer's
//! JWKS and mapped to a principal; and each way it must fail.

#[path = "support/oidc_issuer.rs"]
mod issuer;

use dmpflow_consult::auth::{
    AuthError, ClientAuth, DEFAULT_LEEWAY, LoginAttempt, MAX_DISCOVERY_BYTES, OidcClient,
    OidcConfig, Principal, RoleMapping,
};
use issuer::{Behaviour, TestIssuer};
use serde_json::{Map, Value, json};

const CLIENT: &str = "dmpflow-portal";
const SECRET: &str = "portal-secret:é";
/// Never fetched: the test reads the issuer's redirect instead of following it.
const REDIRECT: &str = "http://127.0.0.1:9/portal/callback";
const INS: &str = "2840763123456789";

fn patient_claims() -> Map<String, Value> {
    let Value::Object(map) = json!({"role": "patient", "ins": INS}) else {
        unreachable!()
    };
    map
}

fn issuer() -> TestIssuer {
    TestIssuer::start(CLIENT, Some(SECRET), patient_claims())
}

fn config(issuer: &TestIssuer, auth: ClientAuth) -> OidcConfig {
    OidcConfig::new(&issuer.issuer, CLIENT, REDIRECT)
        .unwrap()
        .with_scopes(&["profile"])
        .unwrap()
        .with_client_auth(auth)
        .unwrap()
}

fn client(issuer: &TestIssuer) -> OidcClient {
    OidcClient::discover(config(issuer, ClientAuth::SecretBasic(SECRET.into()))).unwrap()
}

/// What the browser does: GET the authorization URL, and instead of following the redirect
/// back to the portal, hand over its query string (what the portal's callback receives).
fn browser(authorization_url: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.get(authorization_url).call().unwrap();
    assert_eq!(response.status().as_u16(), 302, "the issuer redirects back");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let (target, query) = location.split_once('?').unwrap();
    assert_eq!(target, REDIRECT);
    query.to_owned()
}

fn principal_of(
    client: &OidcClient,
    attempt: &LoginAttempt,
    id_token: &str,
) -> Result<Principal, AuthError> {
    let verifier = client.load_id_token_verifier(DEFAULT_LEEWAY)?;
    let claims = client.verify_id_token(&verifier, id_token, attempt)?;
    RoleMapping::default().principal(&claims)
}

#[test]
fn full_login_with_client_secret_basic() {
    let issuer = issuer();
    let client = client(&issuer);
    assert_eq!(
        client.provider().token_endpoint,
        format!("{}/token", issuer.issuer)
    );
    let (attempt, url) = client.begin().unwrap();
    assert!(url.starts_with(&format!("{}/auth?response_type=code&", issuer.issuer)));
    assert!(
        !url.contains(&attempt.code_verifier),
        "only the challenge goes out"
    );
    let query = browser(&url);
    let tokens = client.finish(&attempt, &query).unwrap();
    assert!(tokens.access_token.is_some());
    assert_eq!(tokens.expires_in, Some(std::time::Duration::from_secs(300)));
    assert!(tokens.expires_at.unwrap() > jsonwebtoken::get_current_timestamp());
    let principal = principal_of(&client, &attempt, &tokens.id_token).unwrap();
    assert_eq!(principal, Principal::Patient { ins: INS.into() });
}

#[test]
fn full_login_with_client_secret_post() {
    let issuer = issuer();
    let client =
        OidcClient::discover(config(&issuer, ClientAuth::SecretPost(SECRET.into()))).unwrap();
    let (attempt, url) = client.begin().unwrap();
    let tokens = client.finish(&attempt, &browser(&url)).unwrap();
    let principal = principal_of(&client, &attempt, &tokens.id_token).unwrap();
    assert_eq!(principal, Principal::Patient { ins: INS.into() });
}

#[test]
fn public_client_and_wrong_secret() {
    let public = TestIssuer::start(CLIENT, None, patient_claims());
    let client = OidcClient::discover(config(&public, ClientAuth::None)).unwrap();
    let (attempt, url) = client.begin().unwrap();
    let tokens = client.finish(&attempt, &browser(&url)).unwrap();
    assert!(principal_of(&client, &attempt, &tokens.id_token).is_ok());

    let confidential = issuer();
    let wrong = config(
        &confidential,
        ClientAuth::SecretBasic("not-the-secret".into()),
    );
    let client = OidcClient::discover(wrong).unwrap();
    let (attempt, url) = client.begin().unwrap();
    let err = client.finish(&attempt, &browser(&url)).unwrap_err();
    assert_eq!(
        err,
        AuthError::OidcTokenRefused {
            error: "invalid_client".into()
        }
    );
    assert!(!err.to_string().contains("not-the-secret"));
}

#[test]
fn callback_of_another_login_is_refused_by_state() {
    let issuer = issuer();
    let client = client(&issuer);
    let (first, url) = client.begin().unwrap();
    let (second, _) = client.begin().unwrap();
    let query = browser(&url);
    let err = client.finish(&second, &query).unwrap_err();
    assert_eq!(err.code(), "auth.oidc.state");
    assert_eq!(issuer.issued(), 0, "no code exchanged on a state mismatch");
    // The right attempt still completes: the refused callback did not spend its code.
    let tokens = client.finish(&first, &query).unwrap();
    assert!(principal_of(&client, &first, &tokens.id_token).is_ok());
}

#[test]
fn replayed_or_wrong_code_is_refused_by_the_issuer() {
    let issuer = issuer();
    let client = client(&issuer);
    let (attempt, url) = client.begin().unwrap();
    let query = browser(&url);
    client.finish(&attempt, &query).unwrap();
    let replay = client.finish(&attempt, &query).unwrap_err();
    assert_eq!(
        replay,
        AuthError::OidcTokenRefused {
            error: "invalid_grant".into()
        }
    );
    assert_eq!(replay.code(), "auth.oidc.token_refused");

    let (attempt, url) = client.begin().unwrap();
    let query = browser(&url);
    let forged = query.replace("code=code-", "code=forged-");
    assert_ne!(forged, query);
    let err = client.finish(&attempt, &forged).unwrap_err();
    assert_eq!(
        err,
        AuthError::OidcTokenRefused {
            error: "invalid_grant".into()
        }
    );
    assert!(!err.to_string().contains("forged"));
}

#[test]
fn wrong_pkce_verifier_is_refused_by_the_issuer() {
    let issuer = issuer();
    let client = client(&issuer);
    let (attempt, url) = client.begin().unwrap();
    let query = browser(&url);
    let mut other = attempt.clone();
    other.code_verifier = LoginAttempt::new().unwrap().code_verifier;
    let err = client.finish(&other, &query).unwrap_err();
    assert_eq!(
        err,
        AuthError::OidcTokenRefused {
            error: "invalid_grant".into()
        }
    );
    assert_eq!(issuer.issued(), 0);
}

#[test]
fn nonce_mismatch_is_refused() {
    let issuer = issuer();
    let client = client(&issuer);
    issuer.set_behaviour(Behaviour {
        nonce: Some("a-nonce-of-another-login".into()),
        ..Behaviour::default()
    });
    let (attempt, url) = client.begin().unwrap();
    let tokens = client.finish(&attempt, &browser(&url)).unwrap();
    let err = principal_of(&client, &attempt, &tokens.id_token).unwrap_err();
    assert_eq!(err.code(), "auth.oidc.nonce");

    // A good token shown with another attempt (a replay into another login) fails alike.
    issuer.set_behaviour(Behaviour::default());
    let (attempt, url) = client.begin().unwrap();
    let tokens = client.finish(&attempt, &browser(&url)).unwrap();
    let mut other = attempt.clone();
    other.nonce = LoginAttempt::new().unwrap().nonce;
    assert_eq!(
        principal_of(&client, &other, &tokens.id_token).unwrap_err(),
        AuthError::OidcNonce
    );
}

#[test]
fn id_token_for_another_client_is_refused() {
    let issuer = issuer();
    let client = client(&issuer);
    issuer.set_behaviour(Behaviour {
        audience: Some("another-client".into()),
        ..Behaviour::default()
    });
    let (attempt, url) = client.begin().unwrap();
    let tokens = client.finish(&attempt, &browser(&url)).unwrap();
    assert_eq!(
        principal_of(&client, &attempt, &tokens.id_token).unwrap_err(),
        AuthError::TokenAudience
    );
}

#[test]
fn issuer_error_answer_is_reported_by_code_only() {
    let issuer = issuer();
    let client = client(&issuer);
    issuer.set_behaviour(Behaviour {
        deny: true,
        ..Behaviour::default()
    });
    let (attempt, url) = client.begin().unwrap();
    let err = client.finish(&attempt, &browser(&url)).unwrap_err();
    assert_eq!(
        err,
        AuthError::OidcDenied {
            error: "access_denied".into()
        }
    );
    assert!(!err.to_string().contains(INS));
}

#[test]
fn discovery_naming_another_issuer_is_refused() {
    let issuer = issuer();
    issuer.set_behaviour(Behaviour {
        discovery_issuer: Some("https://auth.evil.example/realms/dmp".into()),
        ..Behaviour::default()
    });
    let err = OidcClient::discover(config(&issuer, ClientAuth::None)).unwrap_err();
    assert_eq!(err.code(), "auth.oidc.discovery_issuer");
    // A trailing slash is another issuer too: the comparison is exact.
    issuer.set_behaviour(Behaviour {
        discovery_issuer: Some(format!("{}/", issuer.issuer)),
        ..Behaviour::default()
    });
    let err = OidcClient::discover(config(&issuer, ClientAuth::None)).unwrap_err();
    assert_eq!(err, AuthError::OidcDiscoveryIssuer);
}

#[test]
fn oversized_discovery_document_is_refused() {
    let issuer = issuer();
    issuer.set_behaviour(Behaviour {
        discovery_padding: Some(MAX_DISCOVERY_BYTES as usize),
        ..Behaviour::default()
    });
    let err = OidcClient::discover(config(&issuer, ClientAuth::None)).unwrap_err();
    assert_eq!(err.code(), "auth.oidc.discovery");
    // Just under the bound is fine.
    issuer.set_behaviour(Behaviour {
        discovery_padding: Some(MAX_DISCOVERY_BYTES as usize - 1024),
        ..Behaviour::default()
    });
    assert!(OidcClient::discover(config(&issuer, ClientAuth::None)).is_ok());
}

#[test]
fn unreachable_issuer_fails_discovery() {
    // Bound then released: nothing listens there any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = OidcConfig::new(&format!("http://127.0.0.1:{port}"), CLIENT, REDIRECT).unwrap();
    let err = OidcClient::discover(config).unwrap_err();
    assert_eq!(err.code(), "auth.oidc.discovery");
}
