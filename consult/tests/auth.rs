//! Bearer-token authentication (`dmpflow_consult::auth`): tokens as issuers and `dmpflow
//! token` make them, good and bad, through the verifier and the role mapping.
//!
//! Keys are generated per run (EC) or read from a test-only fixture (RSA, since PSC signs
//! RS256 and generating RSA keys would need another crate), so nothing here is a real secret.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dmpflow_consult::auth::{
    AuthError, DEFAULT_LEEWAY, Principal, RoleMapping, Verifier, bearer_token,
    generate_dev_keypair, load_jwks, load_or_create_dev_keypair, mint_dev_token, mint_dev_token_at,
};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const ISS: &str = "https://auth.esante.example/realms/esante-wallet";
const AUD: &str = "dmpflow-consult";
const INS: &str = "2840763123456789";
const RPPS: &str = "810002645812";
const HOUR: Duration = Duration::from_secs(3600);
const RSA_PEM: &str = include_str!("fixtures/rs256-test-only.pem");

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn patient() -> Principal {
    Principal::Patient { ins: INS.into() }
}

fn professional(organisation: Option<&str>) -> Principal {
    Principal::Professional {
        id: RPPS.into(),
        profession: "10".into(),
        organisation: organisation.map(str::to_owned),
    }
}

/// A dev verifier and the private key that signs for it.
fn dev() -> (Verifier, String) {
    let pair = generate_dev_keypair().unwrap();
    let verifier = Verifier::dev(&pair.public_pem, ISS, AUD, DEFAULT_LEEWAY).unwrap();
    (verifier, pair.private_pem)
}

fn mint(key: &str, who: &Principal) -> String {
    mint_dev_token(key, who, &RoleMapping::default(), ISS, AUD, HOUR).unwrap()
}

/// A token with arbitrary header and claims, signed with `key` (tests of refusals).
fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// Registered claims valid now, plus `extra`.
fn claims(extra: Value) -> Value {
    let mut c = json!({"iss": ISS, "aud": AUD, "sub": "s", "iat": now(), "exp": now() + 600});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    c
}

/// A JWKS with the RSA fixture (kid "rsa-1") and a fresh EC key (kid "ec-1"); returns the
/// EC signing key too.
fn issuer_jwks() -> (String, EncodingKey) {
    let rsa = EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap();
    let mut rsa_jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
    rsa_jwk.common.key_id = Some("rsa-1".into());
    let ec_pem = generate_dev_keypair().unwrap().private_pem;
    let ec = EncodingKey::from_ec_pem(ec_pem.as_bytes()).unwrap();
    let mut ec_jwk = Jwk::from_encoding_key(&ec, Algorithm::ES256).unwrap();
    ec_jwk.common.key_id = Some("ec-1".into());
    let set = JwkSet {
        keys: vec![rsa_jwk, ec_jwk],
    };
    (serde_json::to_string(&set).unwrap(), ec)
}

fn rsa_key() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).unwrap()
}

fn psc_claims() -> Value {
    claims(json!({
        "SubjectNameID": RPPS,
        "SubjectRefPro": {"exercices": [{
            "codeProfession": "10",
            "activities": [{"identifiantStructure": "R10100000123456"}]
        }]}
    }))
}

fn code(r: Result<impl std::fmt::Debug, AuthError>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn dev_token_per_role_gives_its_principal() {
    let (verifier, key) = dev();
    let mapping = RoleMapping::default();
    let representative = Principal::Representative {
        represented_ins: INS.into(),
        id: "parent-42".into(),
    };
    for who in [
        patient(),
        representative,
        professional(Some("R10100000123456")),
        professional(None),
    ] {
        let token = mint(&key, &who);
        assert_eq!(verifier.authenticate(&token, &mapping).unwrap(), who);
    }
    assert!(verifier.is_dev());
}

#[test]
fn psc_shaped_rs256_token_from_jwks_is_a_professional() {
    let (jwks, _) = issuer_jwks();
    let verifier = Verifier::from_jwks(&jwks, ISS, AUD, DEFAULT_LEEWAY).unwrap();
    assert!(!verifier.is_dev());
    let token = sign(Algorithm::RS256, Some("rsa-1"), &psc_claims(), &rsa_key());
    let who = verifier
        .authenticate(&token, &RoleMapping::pro_sante_connect())
        .unwrap();
    assert_eq!(who, professional(Some("R10100000123456")));
    // Without the PSC preset the token has no role claim.
    assert_eq!(
        code(verifier.authenticate(&token, &RoleMapping::default())),
        "auth.role.unmapped"
    );
}

#[test]
fn kid_selects_the_key_and_an_unknown_kid_is_refused() {
    let (jwks, ec) = issuer_jwks();
    let verifier = Verifier::from_jwks(&jwks, ISS, AUD, DEFAULT_LEEWAY).unwrap();
    let body = claims(json!({"role": "patient", "ins": INS}));
    assert!(
        verifier
            .verify(&sign(Algorithm::ES256, Some("ec-1"), &body, &ec))
            .is_ok()
    );
    let unknown = sign(Algorithm::ES256, Some("ec-9"), &body, &ec);
    assert_eq!(code(verifier.verify(&unknown)), "auth.token.key_unknown");
    // Several keys and no kid: no guessing.
    let no_kid = sign(Algorithm::ES256, None, &body, &ec);
    assert_eq!(code(verifier.verify(&no_kid)), "auth.token.key_unknown");
    // The RSA key's kid with an EC algorithm: refused before any crypto.
    let crossed = sign(Algorithm::ES256, Some("rsa-1"), &body, &ec);
    assert_eq!(code(verifier.verify(&crossed)), "auth.token.algorithm");
}

#[test]
fn expiry_is_enforced_beyond_the_leeway_only() {
    let (verifier, key) = dev();
    let mapping = RoleMapping::default();
    let minted = |at: u64, ttl: u64| {
        mint_dev_token_at(
            &key,
            &patient(),
            &mapping,
            ISS,
            AUD,
            at,
            Duration::from_secs(ttl),
        )
        .unwrap()
    };
    // Expired 10 s ago: within the 30 s leeway.
    assert!(verifier.verify(&minted(now() - 610, 600)).is_ok());
    // Expired 2 minutes ago.
    assert_eq!(
        code(verifier.verify(&minted(now() - 720, 600))),
        "auth.token.expired"
    );
    // Not valid before 2 minutes from now.
    assert_eq!(
        code(verifier.verify(&minted(now() + 120, 600))),
        "auth.token.not_yet_valid"
    );
    // No exp at all.
    let private = EncodingKey::from_ec_pem(key.as_bytes()).unwrap();
    let mut body = claims(json!({"role": "patient", "ins": INS}));
    body.as_object_mut().unwrap().remove("exp");
    let token = sign(Algorithm::ES256, None, &body, &private);
    assert_eq!(code(verifier.verify(&token)), "auth.token.claim");
}

#[test]
fn leeway_is_capped_at_sixty_seconds() {
    let pair = generate_dev_keypair().unwrap();
    let too_much = Verifier::dev(&pair.public_pem, ISS, AUD, Duration::from_secs(61));
    assert_eq!(code(too_much), "auth.config.leeway");
    assert!(Verifier::dev(&pair.public_pem, ISS, AUD, Duration::from_secs(60)).is_ok());
    assert_eq!(
        code(Verifier::dev(&pair.public_pem, "", AUD, DEFAULT_LEEWAY)),
        "auth.config.issuer_audience"
    );
}

#[test]
fn wrong_issuer_or_audience_is_refused() {
    let (verifier, key) = dev();
    let mapping = RoleMapping::default();
    let other_iss = mint_dev_token(&key, &patient(), &mapping, "https://evil", AUD, HOUR);
    assert_eq!(
        code(verifier.verify(&other_iss.unwrap())),
        "auth.token.issuer"
    );
    let other_aud = mint_dev_token(&key, &patient(), &mapping, ISS, "other-api", HOUR);
    assert_eq!(
        code(verifier.verify(&other_aud.unwrap())),
        "auth.token.audience"
    );
    let private = EncodingKey::from_ec_pem(key.as_bytes()).unwrap();
    let mut body = claims(json!({}));
    body.as_object_mut().unwrap().remove("aud");
    let no_aud = sign(Algorithm::ES256, None, &body, &private);
    assert_eq!(code(verifier.verify(&no_aud)), "auth.token.audience");
    // An audience list containing ours is fine.
    body["aud"] = json!(["other-api", AUD]);
    assert!(
        verifier
            .verify(&sign(Algorithm::ES256, None, &body, &private))
            .is_ok()
    );
}

#[test]
fn a_token_signed_by_another_key_is_refused() {
    let (verifier, _) = dev();
    let (_, other_key) = dev();
    // Same kid ("dmpflow-dev"), other key.
    let token = mint(&other_key, &patient());
    assert_eq!(code(verifier.verify(&token)), "auth.token.signature");
    // A payload altered after signing.
    let (verifier, key) = dev();
    let token = mint(&key, &patient());
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims(json!({"role": "professional"})).to_string());
    parts[1] = &forged;
    assert_eq!(
        code(verifier.verify(&parts.join("."))),
        "auth.token.signature"
    );
}

#[test]
fn alg_none_and_hs256_with_the_public_key_are_refused() {
    let pair = generate_dev_keypair().unwrap();
    let verifier = Verifier::dev(&pair.public_pem, ISS, AUD, DEFAULT_LEEWAY).unwrap();
    let body = URL_SAFE_NO_PAD.encode(claims(json!({"role": "patient", "ins": INS})).to_string());
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None"}),
        json!({"alg": "none", "kid": "dmpflow-dev"}),
    ] {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        for token in [format!("{head}.{body}."), format!("{head}.{body}.AAAA")] {
            assert_eq!(code(verifier.verify(&token)), "auth.token.algorithm");
        }
    }
    // The classic confusion: HMAC keyed with the verifier's own public key bytes.
    let hmac = EncodingKey::from_secret(pair.public_pem.as_bytes()).unwrap();
    let body = claims(json!({"role": "patient", "ins": INS}));
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let token = sign(alg, Some("dmpflow-dev"), &body, &hmac);
        assert_eq!(code(verifier.verify(&token)), "auth.token.algorithm");
    }
    // Same against an issuer's JWKS, even one that also publishes an `oct` key.
    let (jwks, _) = issuer_jwks();
    let mut set: Value = serde_json::from_str(&jwks).unwrap();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .push(json!({"kty": "oct", "kid": "hs", "k": URL_SAFE_NO_PAD.encode(b"secret")}));
    let verifier = Verifier::from_jwks(&set.to_string(), ISS, AUD, DEFAULT_LEEWAY).unwrap();
    let secret = EncodingKey::from_secret(b"secret").unwrap();
    let token = sign(Algorithm::HS256, Some("hs"), &body, &secret);
    assert_eq!(code(verifier.verify(&token)), "auth.token.algorithm");
}

#[test]
fn role_claims_that_do_not_map_are_refused() {
    let (verifier, key) = dev();
    let private = EncodingKey::from_ec_pem(key.as_bytes()).unwrap();
    let mapping = RoleMapping::default();
    let principal = |extra: Value| {
        let token = sign(Algorithm::ES256, None, &claims(extra), &private);
        verifier.authenticate(&token, &mapping)
    };
    assert_eq!(code(principal(json!({"ins": INS}))), "auth.role.unmapped");
    assert_eq!(
        code(principal(json!({"role": "admin", "ins": INS}))),
        "auth.role.unmapped"
    );
    assert_eq!(code(principal(json!({"role": 3}))), "auth.role.unmapped");
    // Two roles in one token: the caller does not get to choose.
    let both = json!({"role": ["patient", "professional"], "ins": INS});
    assert_eq!(code(principal(both)), "auth.role.unmapped");
    let one = json!({"role": ["openid", "patient"], "ins": INS});
    assert_eq!(principal(one).unwrap(), patient());
    // Mapped role, identifier missing or not a string.
    let missing = principal(json!({"role": "patient"})).unwrap_err();
    assert_eq!(
        missing,
        AuthError::ClaimMissing {
            claim: "ins".into()
        }
    );
    assert_eq!(
        code(principal(json!({"role": "patient", "ins": 12}))),
        "auth.claim.missing"
    );
    let no_profession = json!({"role": "professional", "SubjectNameID": RPPS});
    assert_eq!(code(principal(no_profession)), "auth.claim.missing");
}

#[test]
fn custom_mapping_reads_configured_claims() {
    let (verifier, key) = dev();
    let mapping: RoleMapping = serde_json::from_value(json!({
        "role_claim": "/realm_access/roles/0",
        "roles": {"ps": "professional"},
        "professional_id": "preferred_username",
        "profession": "/pro/code",
        "organisation": "org"
    }))
    .unwrap();
    let who = professional(Some("FINESS-1"));
    let token = mint_dev_token(&key, &who, &mapping, ISS, AUD, HOUR).unwrap();
    let claims = verifier.verify(&token).unwrap();
    assert_eq!(claims.as_map()["realm_access"], json!({"roles": ["ps"]}));
    assert_eq!(claims.as_map()["preferred_username"], json!(RPPS));
    assert_eq!(mapping.principal(&claims).unwrap(), who);
    // A mapping with no value for a role cannot mint it.
    let refused = mint_dev_token(&key, &patient(), &mapping, ISS, AUD, HOUR);
    assert_eq!(code(refused), "auth.mint");
    let unknown_field = serde_json::from_value::<RoleMapping>(json!({"rolez": "x"}));
    assert!(unknown_field.is_err());
}

#[test]
fn errors_and_debug_output_never_show_token_or_claim_values() {
    let (verifier, key) = dev();
    let private = EncodingKey::from_ec_pem(key.as_bytes()).unwrap();
    let mapping = RoleMapping::default();
    let good = mint(&key, &professional(Some("R10100000123456")));
    let mut errors = Vec::new();
    let mut push = |r: Result<Principal, AuthError>| errors.push(r.unwrap_err());
    push(verifier.authenticate(&format!("{good}x"), &mapping));
    push(verifier.authenticate(&good.replace('.', "#"), &mapping));
    let body = |extra: Value| sign(Algorithm::ES256, None, &claims(extra), &private);
    push(verifier.authenticate(&body(json!({"role": INS, "ins": INS})), &mapping));
    push(verifier.authenticate(&body(json!({"role": "patient", "ins": [INS]})), &mapping));
    let mut wrong = claims(json!({"ins": INS}));
    wrong["iss"] = json!(INS);
    push(verifier.authenticate(&sign(Algorithm::ES256, None, &wrong, &private), &mapping));
    wrong["iss"] = json!(ISS);
    wrong["aud"] = json!(RPPS);
    push(verifier.authenticate(&sign(Algorithm::ES256, None, &wrong, &private), &mapping));
    let head = URL_SAFE_NO_PAD.encode(json!({"alg": INS}).to_string());
    push(verifier.authenticate(&format!("{head}.e30.x"), &mapping));
    assert_eq!(errors.len(), 7);
    for error in &errors {
        let shown = format!("{error} {error:?}");
        for secret in [INS, RPPS, "R10100000123456", good.as_str()] {
            assert!(!shown.contains(secret), "{} shows a value", error.code());
        }
        assert!(error.code().starts_with("auth."));
        assert!(!error.is_config());
    }
    // Verified claims and principals print without identifiers.
    let claims = verifier.verify(&good).unwrap();
    let principal = mapping.principal(&claims).unwrap();
    let shown = format!("{claims:?} {principal:?}");
    assert!(
        !shown.contains(RPPS) && !shown.contains("R10100000123456"),
        "{shown}"
    );
    assert!(!format!("{:?}", patient()).contains(INS));
}

#[test]
fn bearer_header_parsing() {
    assert_eq!(
        bearer_token(Some("Bearer abc.def.ghi")).unwrap(),
        "abc.def.ghi"
    );
    assert_eq!(bearer_token(Some("bearer  abc ")).unwrap(), "abc");
    for bad in [
        None,
        Some(""),
        Some("Bearer"),
        Some("Bearer  "),
        Some("Basic abc"),
    ] {
        assert_eq!(code(bearer_token(bad)), "auth.token.missing");
    }
    let (verifier, _) = dev();
    assert_eq!(code(verifier.verify("  ")), "auth.token.missing");
    assert_eq!(code(verifier.verify("a.b")), "auth.token.malformed");
}

#[test]
fn jwks_configuration_errors() {
    // Plain http only to this host: the keys must not be swappable on the way.
    for url in [
        "HTTP://idp.example/jwks",
        "http://10.0.0.1/jwks",
        "http://localhost.evil.example/jwks",
        "http://user@idp.example/jwks",
    ] {
        assert_eq!(code(load_jwks(url)), "auth.config.jwks_url", "{url}");
    }
    // Nothing answers there: a fetch error, not a hang.
    assert_eq!(
        code(load_jwks("https://127.0.0.1:1/jwks")),
        "auth.config.jwks"
    );
    assert_eq!(
        code(load_jwks("/nonexistent/jwks.json")),
        "auth.config.jwks"
    );
    let only_secret = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
    for jwks in ["{}", "not json", only_secret.as_str()] {
        let err = Verifier::from_jwks(jwks, ISS, AUD, DEFAULT_LEEWAY).unwrap_err();
        assert_eq!(err.code(), "auth.config.jwks");
        assert!(err.is_config());
    }
    // A key marked for encryption is not a signature key.
    let (jwks, _) = issuer_jwks();
    let mut set: Value = serde_json::from_str(&jwks).unwrap();
    for key in set["keys"].as_array_mut().unwrap() {
        key["use"] = json!("enc");
    }
    let err = Verifier::from_jwks(&set.to_string(), ISS, AUD, DEFAULT_LEEWAY).unwrap_err();
    assert_eq!(err.code(), "auth.config.jwks");
    // A JWKS file is read.
    let path = std::env::temp_dir().join(format!("dmpflow-jwks-{}.json", std::process::id()));
    std::fs::write(&path, &jwks).unwrap();
    let read = load_jwks(path.to_str().unwrap()).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(Verifier::from_jwks(&read, ISS, AUD, DEFAULT_LEEWAY).is_ok());
}

/// Serves each of `answers` (status line and body) to one HTTP request on 127.0.0.1, in
/// order, from a thread: the issuer's JWKS endpoint as the server sees it.
fn jwks_endpoint(answers: Vec<(&'static str, String)>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (status, body) in answers {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}/realms/x/protocol/openid-connect/certs")
}

#[test]
fn jwks_fetched_over_http_and_rotated() {
    let (first, ec1) = issuer_jwks();
    let (second, ec2) = issuer_jwks();
    let too_big = format!("{{\"keys\": [], \"pad\": \"{}\"}}", "x".repeat(300 * 1024));
    let url = jwks_endpoint(vec![
        ("200 OK", first),
        ("200 OK", second),
        ("404 Not Found", "{}".into()),
        ("200 OK", too_big),
    ]);
    let verifier =
        Verifier::from_jwks(&load_jwks(&url).unwrap(), ISS, AUD, DEFAULT_LEEWAY).unwrap();
    let c = claims(json!({"role": "patient", "ins": INS}));
    let old = sign(Algorithm::ES256, Some("ec-1"), &c, &ec1);
    let new = sign(Algorithm::ES256, Some("ec-1"), &c, &ec2);
    assert!(verifier.verify(&old).is_ok());
    assert_eq!(code(verifier.verify(&new)), "auth.token.signature");
    // The issuer rotated its EC key: the refreshed set verifies the new token, not the old.
    assert_eq!(verifier.replace_keys(&load_jwks(&url).unwrap()).unwrap(), 2);
    assert!(verifier.verify(&new).is_ok());
    assert_eq!(code(verifier.verify(&old)), "auth.token.signature");
    // A failed refresh (an HTTP error, an oversized answer) keeps the keys in use.
    assert_eq!(code(load_jwks(&url)), "auth.config.jwks");
    assert_eq!(code(load_jwks(&url)), "auth.config.jwks");
    assert_eq!(code(verifier.replace_keys("{}")), "auth.config.jwks");
    assert!(verifier.verify(&new).is_ok());
    // A dev verifier has no JWKS to refresh.
    let (dev_verifier, _) = dev();
    assert!(dev_verifier.replace_keys("{}").is_err());
}

#[test]
fn dev_key_is_created_once_then_reused() {
    let dir = std::env::temp_dir().join(format!("dmpflow-devkey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let private = dir.join("dev.pem");
    let created = load_or_create_dev_keypair(&private).unwrap();
    let public = std::fs::read_to_string(dir.join("dev.pub.pem")).unwrap();
    assert_eq!(public, created.public_pem);
    let again = load_or_create_dev_keypair(&private).unwrap();
    assert_eq!(again.private_pem, created.private_pem);
    assert_eq!(again.public_pem, created.public_pem);
    assert!(!format!("{again:?}").contains(&again.private_pem));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "dev private key readable by others");
    }
    let verifier = Verifier::dev(&public, ISS, AUD, DEFAULT_LEEWAY).unwrap();
    let token = mint(&again.private_pem, &patient());
    assert_eq!(
        verifier
            .authenticate(&token, &RoleMapping::default())
            .unwrap(),
        patient()
    );
    std::fs::remove_dir_all(&dir).unwrap();
    // A public key is not a dev verifier's key source of the wrong kind.
    assert_eq!(
        code(Verifier::dev("garbage", ISS, AUD, DEFAULT_LEEWAY)),
        "auth.config.key"
    );
}
