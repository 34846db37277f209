//! Authentication errors: one variant per reason a request is refused, each with a stable
//! code that logs, metrics and API clients can match on.
//!
//! Messages name at most a claim *name* or an algorithm, never a claim value nor any part of
//! the token: a token's `sub`, INS or RPPS may identify a patient or a professional, and
//! error messages end up in logs and HTTP responses.

use thiserror::Error;

/// Why a bearer token, or the configuration that verifies it, was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// No bearer token where one is required (the HTTP edge reports it; kept here so that
    /// every authentication failure shares one code space).
    #[error("no bearer token")]
    TokenMissing,
    /// Not three base64url parts, or a header or payload that is not JSON.
    #[error("malformed token")]
    TokenMalformed,
    /// `alg` is `none`, HS* or anything outside the asymmetric algorithms accepted.
    #[error("token algorithm not accepted: {alg}")]
    TokenAlgorithm {
        /// The header's `alg`, truncated: an algorithm name, not user data.
        alg: String,
    },
    /// The header's `kid` names no configured key (or no `kid` and several keys).
    #[error("no configured key matches the token's key id")]
    TokenKeyUnknown,
    /// The signature does not verify with the selected key.
    #[error("token signature does not verify")]
    TokenSignature,
    /// `exp` is past, beyond the leeway.
    #[error("token expired")]
    TokenExpired,
    /// `nbf` is in the future, beyond the leeway.
    #[error("token not yet valid")]
    TokenNotYetValid,
    /// `iss` is not the configured issuer.
    #[error("token issuer is not the configured issuer")]
    TokenIssuer,
    /// `aud` does not contain the configured audience.
    #[error("token audience does not include this service")]
    TokenAudience,
    /// A registered claim (`exp`, `iss`, `aud`) is absent or not of its JSON type.
    #[error("token claim missing or invalid: {claim}")]
    TokenClaim {
        /// The registered claim's name.
        claim: String,
    },
    /// The role claim is absent, or its value maps to no role.
    #[error("token role is not mapped to a dmpflow role")]
    RoleUnmapped,
    /// A claim the mapped role needs is absent, empty or not a string.
    #[error("claim missing or invalid for the mapped role: {claim}")]
    ClaimMissing {
        /// The configured claim name or JSON pointer.
        claim: String,
    },
    /// The JWKS could not be read or parsed, or holds no usable key.
    #[error("JWKS unusable: {reason}")]
    ConfigJwks {
        /// What is wrong, without key material.
        reason: String,
    },
    /// `--auth-jwks` is a plain `http://` URL to another host than this one: the keys that
    /// decide who may read a DMP must not travel where anyone on the path can swap them.
    #[error("JWKS URL must be https:// (plain http:// only to a loopback address)")]
    ConfigJwksUrl,
    /// A PEM key could not be read or is not of the expected kind.
    #[error("key unusable: {reason}")]
    ConfigKey {
        /// What is wrong, without key material.
        reason: String,
    },
    /// Leeway above [`crate::auth::MAX_LEEWAY`].
    #[error("leeway above the 60 s maximum")]
    ConfigLeeway,
    /// Issuer or audience empty: checking against "" would accept tokens without them.
    #[error("issuer and audience must be configured")]
    ConfigIssuerAudience,
    /// The portal's OIDC client configuration is unusable: issuer, redirect URI or scope
    /// malformed, or a plain `http://` URL to another host than this one.
    #[error("OIDC client configuration unusable: {reason}")]
    ConfigOidc {
        /// What is wrong, naming the setting, never the client secret.
        reason: String,
    },
    /// The issuer's discovery document could not be fetched, is too large, is not JSON, or
    /// lacks an endpoint (or names one that is not https://).
    #[error("OIDC discovery failed: {reason}")]
    OidcDiscovery {
        /// What is wrong: the URL (configuration) and the transport's error, no document text.
        reason: String,
    },
    /// The discovery document's `issuer` is not exactly the configured issuer (OIDC
    /// Discovery §4.3): its endpoints and keys are not trusted.
    #[error("OIDC discovery document names another issuer")]
    OidcDiscoveryIssuer,
    /// The operating system's random source failed (state, nonce, PKCE verifier).
    #[error("no randomness for the OIDC login")]
    OidcRandom,
    /// The callback's `state` is absent, repeated or not the login attempt's: a forged or
    /// replayed callback, or another browser's.
    #[error("OIDC callback state does not match the login attempt")]
    OidcState,
    /// The callback is malformed: no `code`, a parameter repeated, too long, or an `iss`
    /// parameter (RFC 9207) naming another issuer.
    #[error("OIDC callback malformed: {reason}")]
    OidcCallback {
        /// Fixed text, never a parameter's value.
        reason: &'static str,
    },
    /// The issuer answered the authorization request with `error=` (the user refused, the
    /// session expired...).
    #[error("OIDC login refused by the issuer: {error}")]
    OidcDenied {
        /// The `error` code if registered (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6), else
        /// `unregistered`: never `error_description`, which is free text.
        error: String,
    },
    /// The token endpoint could not be reached, or answered something else than a token
    /// response (status, size, JSON, no `id_token`).
    #[error("OIDC token endpoint failed: {reason}")]
    OidcTokenEndpoint {
        /// What is wrong, without the response's text, the code or any token.
        reason: String,
    },
    /// The token endpoint refused the code exchange (RFC 6749 §5.2), e.g. `invalid_grant`
    /// for a used, expired or foreign code or a wrong PKCE verifier.
    #[error("OIDC token endpoint refused the code: {error}")]
    OidcTokenRefused {
        /// The `error` code if registered, else `unregistered`.
        error: String,
    },
    /// The ID token's `nonce` is absent or not the login attempt's: a token issued for
    /// another login, replayed.
    #[error("ID token nonce does not match the login attempt")]
    OidcNonce,
    /// A dev token cannot express the principal with this mapping.
    #[error("dev token cannot be minted: {reason}")]
    Mint {
        /// What is wrong, without claim values.
        reason: String,
    },
}

impl AuthError {
    /// The stable code of this error, e.g. `auth.token.expired`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::TokenMissing => "auth.token.missing",
            AuthError::TokenMalformed => "auth.token.malformed",
            AuthError::TokenAlgorithm { .. } => "auth.token.algorithm",
            AuthError::TokenKeyUnknown => "auth.token.key_unknown",
            AuthError::TokenSignature => "auth.token.signature",
            AuthError::TokenExpired => "auth.token.expired",
            AuthError::TokenNotYetValid => "auth.token.not_yet_valid",
            AuthError::TokenIssuer => "auth.token.issuer",
            AuthError::TokenAudience => "auth.token.audience",
            AuthError::TokenClaim { .. } => "auth.token.claim",
            AuthError::RoleUnmapped => "auth.role.unmapped",
            AuthError::ClaimMissing { .. } => "auth.claim.missing",
            AuthError::ConfigJwks { .. } => "auth.config.jwks",
            AuthError::ConfigJwksUrl => "auth.config.jwks_url",
            AuthError::ConfigKey { .. } => "auth.config.key",
            AuthError::ConfigLeeway => "auth.config.leeway",
            AuthError::ConfigIssuerAudience => "auth.config.issuer_audience",
            AuthError::Mint { .. } => "auth.mint",
            AuthError::ConfigOidc { .. } => "auth.config.oidc",
            AuthError::OidcDiscovery { .. } => "auth.oidc.discovery",
            AuthError::OidcDiscoveryIssuer => "auth.oidc.discovery_issuer",
            AuthError::OidcRandom => "auth.oidc.random",
            AuthError::OidcState => "auth.oidc.state",
            AuthError::OidcCallback { .. } => "auth.oidc.callback",
            AuthError::OidcDenied { .. } => "auth.oidc.denied",
            AuthError::OidcTokenEndpoint { .. } => "auth.oidc.token_endpoint",
            AuthError::OidcTokenRefused { .. } => "auth.oidc.token_refused",
            AuthError::OidcNonce => "auth.oidc.nonce",
        }
    }

    /// True for configuration errors (fail at startup), false for a refused request (401).
    pub fn is_config(&self) -> bool {
        self.code().starts_with("auth.config.") || matches!(self, AuthError::Mint { .. })
    }
}
