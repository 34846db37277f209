//! The portal's login for real use (issue #14): OIDC authorization code with PKCE against
//! an issuer on 127.0.0.1 (`support/oidc_issuer.rs`, which checks the code, the redirect
//! URI, the client secret and the PKCE verifier). The browser's part is played by hand:
//! `/portal/login/oidc` → the issuer's authorization endpoint → `/portal/callback` → a
//! session whose pages show the patient's DMP. A callback without this browser's attempt,
//! or replayed, opens nothing.

mod support;

#[path = "support/oidc_issuer.rs"]
mod issuer;

use std::time::Duration;

use dmpflow_consult::auth::{
    ClientAuth, DEFAULT_LEEWAY, OidcClient, OidcConfig, RoleMapping, Verifier, generate_dev_keypair,
};
use dmpflow_consult::server::portal::{OidcLogin, Portal};
use dmpflow_consult::server::{AppState, DEV_AUDIENCE, DEV_ISSUER, serve};
use dmpflow_store::{Store, StoreItem};
use serde_json::{Value, json};
use support::{Answer, Doc, INS_1, send};

const CLIENT: &str = "dmpflow-portal";
const SECRET: &str = "portal-secret";

fn cookie_of(a: &Answer, name: &str) -> Option<String> {
    a.all_headers("set-cookie")
        .into_iter()
        .find(|c| c.starts_with(&format!("{name}=")))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_logs_in_through_the_issuer() {
    let Value::Object(claims) = json!({"role": "patient", "ins": INS_1}) else {
        unreachable!()
    };
    let issuer = issuer::TestIssuer::start(CLIENT, Some(SECRET), claims);
    let store = Store::connect("sqlite::memory:").await.unwrap();
    let csv = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/patients.csv")).unwrap();
    store.import_patients_csv(&csv[..]).await.unwrap();
    store
        .write_batch(
            &[StoreItem::Document(
                Doc::new("1.2.250.55.1", INS_1, "20260101100000", 1).build(),
            )],
            &[],
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let iss = issuer.issuer.clone();
    let redirect = format!("http://{addr}/portal/callback");
    let (client, id_verifier) = tokio::task::spawn_blocking(move || {
        let config = OidcConfig::new(&iss, CLIENT, &redirect)
            .unwrap()
            .with_client_auth(ClientAuth::SecretBasic(SECRET.into()))
            .unwrap();
        let client = OidcClient::discover(config).unwrap();
        let v = client.load_id_token_verifier(DEFAULT_LEEWAY).unwrap();
        (client, v)
    })
    .await
    .unwrap();
    let api = Verifier::dev(
        &generate_dev_keypair().unwrap().public_pem,
        DEV_ISSUER,
        DEV_AUDIENCE,
        Duration::from_secs(30),
    )
    .unwrap();
    let state = AppState::new(
        store,
        api,
        RoleMapping::default(),
        &format!("http://{addr}/fhir"),
    )
    .with_portal(Portal::new(
        None,
        Some(OidcLogin::new(client, id_verifier)),
        false,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, state, async {
        let _ = stopped.await;
    }));

    // The login page offers the issuer, and no dev login.
    let page = send(addr, "GET", "/portal/login", &[], b"").await;
    assert!(page.text().contains("/portal/login/oidc"));
    assert!(!page.text().contains("/portal/login/dev"));

    // Begin: a redirect to the issuer, the attempt bound to this browser (SameSite=Lax: the
    // way back is a cross-site navigation).
    let begin = send(addr, "GET", "/portal/login/oidc", &[], b"").await;
    assert_eq!(begin.status, 303);
    let to_issuer = begin.header("location").unwrap();
    assert!(to_issuer.starts_with(&issuer.issuer), "{to_issuer}");
    assert!(to_issuer.contains("code_challenge_method=S256"));
    let attempt = cookie_of(&begin, "dmpflow-oidc").expect("attempt cookie");
    assert!(
        attempt.contains("HttpOnly") && attempt.contains("SameSite=Lax"),
        "{attempt}"
    );
    let attempt = attempt.split(';').next().unwrap().to_owned();

    // The issuer authenticates the user and sends the browser back with a code.
    let authorize = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        let r = agent.get(&to_issuer).call().unwrap();
        r.headers()["location"].to_str().unwrap().to_owned()
    })
    .await
    .unwrap();
    let back = authorize
        .strip_prefix(&format!("http://{addr}"))
        .unwrap_or_else(|| panic!("issuer redirected to {authorize}"))
        .to_owned();
    assert!(back.starts_with("/portal/callback?"), "{back}");

    // A callback from another browser (no attempt cookie) opens nothing.
    let stray = send(addr, "GET", &back, &[], b"").await;
    assert_eq!(stray.status, 400);
    assert!(cookie_of(&stray, "dmpflow-session").is_none_or(|c| c.contains("Max-Age=0")));

    // This browser's callback: the code exchanged, the ID token checked, a session.
    let done = send(addr, "GET", &back, &[("Cookie", attempt.clone())], b"").await;
    assert_eq!(done.status, 303, "{}", done.text());
    let session = cookie_of(&done, "dmpflow-session").expect("session");
    let session = session.split(';').next().unwrap().to_owned();
    let home = send(addr, "GET", "/portal/dmp", &[("Cookie", session)], b"").await;
    assert_eq!(home.status, 200);
    assert!(home.text().contains("CR de biologie"));
    assert_eq!(issuer.issued(), 1);

    // The same callback again: the attempt was used, nothing more is issued.
    let replay = send(addr, "GET", &back, &[("Cookie", attempt)], b"").await;
    assert_eq!(replay.status, 400);
    assert_eq!(issuer.issued(), 1);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
