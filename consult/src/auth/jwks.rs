//! The issuer's verification keys: a JWKS (RFC 7517) read from a file or fetched from the
//! issuer's URL, each key kept with the algorithms it may verify.
//!
//! Only asymmetric keys are kept. A symmetric (`oct`) key in an issuer's JWKS is skipped: a
//! shared secret published with the public keys would let anyone mint tokens, and accepting
//! HS* at all is what makes the "HS256 signed with the public key" confusion attack possible.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthError;

/// The algorithms an issuer token may use: asymmetric only. PSC signs with RS256.
pub(crate) const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// One verification key and what it may verify.
pub(crate) struct VerifyKey {
    /// The JWK `kid`; `None` only when the set holds a single key without one.
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// Never empty, always a subset of [`ACCEPTED`] within the key's family.
    pub algorithms: Vec<Algorithm>,
}

/// The largest JWKS accepted: an issuer publishes a handful of keys (a few KiB); more is
/// not a key set.
pub const MAX_JWKS_BYTES: u64 = 256 * 1024;
/// Bound on one fetch of a JWKS URL (connect, TLS, redirects and body together).
pub const JWKS_FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads the JWKS that `--auth-jwks` names: a file, or an `https://` URL (plain `http://`
/// only to a loopback address, for a local issuer and the tests). Blocking: call it at
/// startup or from a blocking task. Bounded in size ([`MAX_JWKS_BYTES`]) and time
/// ([`JWKS_FETCH_TIMEOUT`]); a redirect may not leave https.
pub fn load_jwks(source: &str) -> Result<String, AuthError> {
    let trimmed = source.trim();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return fetch(trimmed, true);
    }
    if let Some(rest) = lower.strip_prefix("http://") {
        if !is_loopback(rest) {
            return Err(AuthError::ConfigJwksUrl);
        }
        return fetch(trimmed, false);
    }
    let meta = std::fs::metadata(source).map_err(|e| AuthError::ConfigJwks {
        // The path is configuration, not user data: naming it helps the operator.
        reason: format!("cannot read {source}: {}", e.kind()),
    })?;
    if meta.len() > MAX_JWKS_BYTES {
        return Err(AuthError::ConfigJwks {
            reason: format!("{source} is larger than {MAX_JWKS_BYTES} bytes"),
        });
    }
    std::fs::read_to_string(source).map_err(|e| AuthError::ConfigJwks {
        reason: format!("cannot read {source}: {}", e.kind()),
    })
}

/// True when the authority of `http://<rest>` is a loopback host.
fn is_loopback(rest: &str) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// GETs a JWKS with ureq: a small blocking client on rustls (the TLS stack the MLLP gateway
/// already uses), which suits a fetch at startup and every few minutes better than an async
/// client stack would.
fn fetch(url: &str, https_only: bool) -> Result<String, AuthError> {
    let failed = |why: String| AuthError::ConfigJwks {
        // The URL is configuration; the error text is the client's, never key material.
        reason: format!("cannot fetch {url}: {why}"),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(JWKS_FETCH_TIMEOUT))
        .https_only(https_only)
        .max_redirects(3)
        .http_status_as_error(true)
        .build()
        .into();
    let mut response = agent
        .get(url)
        .header("Accept", "application/jwk-set+json, application/json")
        .call()
        .map_err(|e| failed(e.to_string()))?;
    response
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_string()
        .map_err(|e| failed(e.to_string()))
}

/// Parses a JWKS and keeps its usable signature keys. Fails when none is usable, so that a
/// wrong file is found at startup rather than as 401s on every request.
pub(crate) fn parse_jwks(json: &str) -> Result<Vec<VerifyKey>, AuthError> {
    let set: JwkSet = serde_json::from_str(json).map_err(|e| AuthError::ConfigJwks {
        reason: format!("not a JWKS: {e}"),
    })?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        if let Some(key) = usable(jwk)? {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(AuthError::ConfigJwks {
            reason: "no RSA, EC (P-256/P-384) or Ed25519 signature key".into(),
        });
    }
    let without_kid = keys.iter().filter(|k| k.kid.is_none()).count();
    if keys.len() > 1 && without_kid > 0 {
        // With several keys, a key without `kid` could only be chosen by trying each one,
        // which the `kid` selection is there to avoid.
        return Err(AuthError::ConfigJwks {
            reason: "several keys, and one has no kid".into(),
        });
    }
    Ok(keys)
}

/// The key as a [`VerifyKey`], `None` when it is not for signatures or of a refused type,
/// an error when it claims to be usable but is broken.
fn usable(jwk: &Jwk) -> Result<Option<VerifyKey>, AuthError> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return Ok(None);
    }
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => ACCEPTED[..6].to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Ok(None),
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            vec![Algorithm::EdDSA]
        }
        // `oct` (HMAC secrets), other curves and unknown key types.
        _ => return Ok(None),
    };
    let algorithms = match jwk.common.key_algorithm {
        // A key that names its algorithm verifies that one only (RFC 7517 §4.4).
        Some(named) => match Algorithm::try_from(named) {
            Ok(alg) if family.contains(&alg) => vec![alg],
            _ => return Ok(None),
        },
        None => family,
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::ConfigJwks {
        reason: format!("key cannot be loaded: {e}"),
    })?;
    Ok(Some(VerifyKey {
        kid: jwk.common.key_id.clone(),
        key,
        algorithms,
    }))
}
