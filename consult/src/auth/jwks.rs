//! The issuer's verification keys: a JWKS (RFC 7517) read from a file, each key kept with
//! the algorithms it may verify.
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

/// Reads the JWKS that `--auth-jwks` names. A URL is refused for now: fetching it needs an
/// HTTP client with TLS and a refresh policy (keys rotate), which is a step of its own.
pub fn load_jwks(source: &str) -> Result<String, AuthError> {
    let lower = source.trim_start().to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Err(AuthError::ConfigJwksUrl);
    }
    std::fs::read_to_string(source).map_err(|e| AuthError::ConfigJwks {
        // The path is configuration, not user data: naming it helps the operator.
        reason: format!("cannot read {source}: {}", e.kind()),
    })
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
