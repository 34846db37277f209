//! Verifying a bearer token: header first (algorithm policy, `kid` selection), then the
//! signature and the registered claims (`iss`, `aud`, `exp`, `nbf`) by `jsonwebtoken`.
//!
//! The header is read here before the library sees the token so that `none`, HS* and other
//! refused algorithms fail with our own code, whatever the library's enum happens to parse.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::jwks::{ACCEPTED, VerifyKey, parse_jwks};
use super::mapping::{ClaimPath, RoleMapping};
use super::{AuthError, Principal};

/// Clock skew tolerated on `exp`/`nbf` unless configured otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The most skew accepted: more would keep expired tokens alive noticeably.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);
/// The `kid` of dev tokens, so that a dev token shown to an issuer's JWKS fails as an unknown
/// key rather than as a bad signature.
pub(crate) const DEV_KID: &str = "dmpflow-dev";

/// The verified payload of a token. `Debug` shows claim names only.
#[derive(Clone, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// Wraps a payload (used by tests and by the mapping; verification is [`Verifier::verify`]).
    pub fn from_map(map: Map<String, Value>) -> Self {
        Claims(map)
    }

    /// The claim at `path` (a name or a JSON pointer), if present.
    pub fn get(&self, path: &ClaimPath) -> Option<&Value> {
        path.lookup(&self.0)
    }

    /// The whole payload.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl std::fmt::Debug for Claims {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Verifies tokens of one issuer for one audience.
pub struct Verifier {
    /// Swapped whole by [`Verifier::replace_keys`] when the issuer rotates its keys; each
    /// verification reads one consistent set.
    keys: RwLock<Arc<Vec<VerifyKey>>>,
    issuer: String,
    audience: String,
    leeway: u64,
    dev: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.current_keys().len())
            .field("leeway", &self.leeway)
            .field("dev", &self.dev)
            .finish()
    }
}

impl Verifier {
    /// A verifier for an issuer's tokens, keys from its JWKS (see [`super::load_jwks`]).
    pub fn from_jwks(
        jwks_json: &str,
        issuer: &str,
        audience: &str,
        leeway: Duration,
    ) -> Result<Self, AuthError> {
        let keys = parse_jwks(jwks_json)?;
        Self::new(keys, issuer, audience, leeway, false)
    }

    /// A verifier for dev tokens ([`super::mint_dev_token`]): one ECDSA P-256 public key, PEM
    /// (SPKI). Only `serve --auth-dev-key` builds one; [`Verifier::is_dev`] lets it log so.
    pub fn dev(
        public_pem: &str,
        issuer: &str,
        audience: &str,
        leeway: Duration,
    ) -> Result<Self, AuthError> {
        let key =
            DecodingKey::from_ec_pem(public_pem.as_bytes()).map_err(|e| AuthError::ConfigKey {
                reason: format!("dev public key is not an EC public key PEM: {e}"),
            })?;
        let keys = vec![VerifyKey {
            kid: Some(DEV_KID.to_owned()),
            key,
            algorithms: vec![Algorithm::ES256],
        }];
        Self::new(keys, issuer, audience, leeway, true)
    }

    fn new(
        keys: Vec<VerifyKey>,
        issuer: &str,
        audience: &str,
        leeway: Duration,
        dev: bool,
    ) -> Result<Self, AuthError> {
        if leeway > MAX_LEEWAY {
            return Err(AuthError::ConfigLeeway);
        }
        if issuer.trim().is_empty() || audience.trim().is_empty() {
            return Err(AuthError::ConfigIssuerAudience);
        }
        Ok(Verifier {
            keys: RwLock::new(Arc::new(keys)),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: leeway.as_secs(),
            dev,
        })
    }

    /// True when this verifier accepts dev-key tokens: the server logs it loudly.
    pub fn is_dev(&self) -> bool {
        self.dev
    }

    /// Checks the token's algorithm, key, signature, `iss`, `aud`, `exp` and `nbf`.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::TokenMissing);
        }
        let header = read_header(token)?;
        let alg = accepted_algorithm(&header)?;
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.as_str()),
            Some(_) => return Err(AuthError::TokenMalformed),
        };
        let keys = self.current_keys();
        let key = select(&keys, kid)?;
        if !key.algorithms.contains(&alg) {
            // E.g. RS256 presented for an EC key: refuse before any crypto.
            return Err(AuthError::TokenAlgorithm {
                alg: format!("{alg:?}"),
            });
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| map_error(e.kind()))?;
        Ok(Claims(data.claims))
    }

    /// [`Verifier::verify`], then the claims mapped to a [`Principal`].
    pub fn authenticate(&self, token: &str, mapping: &RoleMapping) -> Result<Principal, AuthError> {
        mapping.principal(&self.verify(token)?)
    }

    /// Replaces the issuer's keys by those of a fresh JWKS (key rotation), answering how
    /// many are usable. On an error the keys in use stay: a failed refresh must not lock
    /// every user out. Refused for a dev verifier, whose one key is fixed.
    pub fn replace_keys(&self, jwks_json: &str) -> Result<usize, AuthError> {
        if self.dev {
            return Err(AuthError::ConfigJwks {
                reason: "a dev verifier has no JWKS to refresh".into(),
            });
        }
        let keys = parse_jwks(jwks_json)?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    fn current_keys(&self) -> Arc<Vec<VerifyKey>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The key a token's `kid` names; without `kid`, the only key if there is one.
fn select<'k>(keys: &'k [VerifyKey], kid: Option<&str>) -> Result<&'k VerifyKey, AuthError> {
    match kid {
        Some(kid) => keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .ok_or(AuthError::TokenKeyUnknown)
}

/// The token from an `Authorization` header value: `Bearer <token>`, scheme case-insensitive.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let value = authorization.ok_or(AuthError::TokenMissing)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::TokenMissing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::TokenMissing);
    }
    Ok(token)
}

/// The JOSE header as JSON, unverified (it only chooses the key and algorithm).
fn read_header(token: &str) -> Result<Map<String, Value>, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::TokenMalformed);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::TokenMalformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::TokenMalformed)
}

/// The header's `alg` if it is one of [`ACCEPTED`]: `none` and HS* never are.
fn accepted_algorithm(header: &Map<String, Value>) -> Result<Algorithm, AuthError> {
    let Some(Value::String(name)) = header.get("alg") else {
        return Err(AuthError::TokenMalformed);
    };
    ACCEPTED
        .iter()
        .copied()
        .find(|alg| format!("{alg:?}") == *name)
        .ok_or_else(|| AuthError::TokenAlgorithm {
            // Attacker-chosen text, which could be anything (even an INS): only a registered
            // JOSE algorithm name is repeated in the message.
            alg: if JOSE_NAMES.contains(&name.as_str()) {
                name.clone()
            } else {
                "unregistered".to_owned()
            },
        })
}

/// Algorithm names registered for JWS (RFC 7518 and later), the only `alg` values echoed.
const JOSE_NAMES: &[&str] = &[
    "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "ES256K", "EdDSA", "Ed25519", "Ed448",
];

/// The library's reasons, as ours. Its messages are not reused: ours are fixed text.
fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) => {
            AuthError::TokenSignature
        }
        ErrorKind::ExpiredSignature => AuthError::TokenExpired,
        ErrorKind::ImmatureSignature => AuthError::TokenNotYetValid,
        ErrorKind::InvalidIssuer => AuthError::TokenIssuer,
        ErrorKind::InvalidAudience => AuthError::TokenAudience,
        ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
            match claim.as_str() {
                "iss" => AuthError::TokenIssuer,
                "aud" => AuthError::TokenAudience,
                other => AuthError::TokenClaim {
                    claim: other.chars().take(8).collect(),
                },
            }
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            AuthError::TokenAlgorithm { alg: String::new() }
        }
        _ => AuthError::TokenMalformed,
    }
}
