//! Authentication of the read side: OAuth 2 / OIDC bearer tokens (JWT) verified against the
//! issuer's keys, then mapped to a [`Principal`] (professional, patient, legal
//! representative) through a configurable [`RoleMapping`].
//!
//! Everything here is pure (strings and bytes in, decisions out) except [`load_jwks`] and
//! [`load_or_create_dev_keypair`], which read or write files: the server edge calls them once
//! at startup; and the portal login's HTTP edge ([`OidcClient::discover`],
//! [`OidcClient::finish`], [`OidcClient::load_id_token_verifier`]), blocking calls the server
//! makes from `spawn_blocking`. Errors carry stable codes ([`AuthError::code`]) and messages
//! that never repeat a token or a claim value, since those may be patient identifiers (INS).

mod dev;
mod error;
mod jwks;
mod mapping;
mod oidc;
pub mod principal;
mod verifier;

pub use dev::{
    DevKeyPair, dev_public_key_path, generate_dev_keypair, load_or_create_dev_keypair,
    mint_dev_token, mint_dev_token_at,
};
pub use error::AuthError;
pub use jwks::load_jwks;
pub use mapping::{ClaimPath, Role, RoleMapping};
pub use oidc::{
    ClientAuth, LoginAttempt, MAX_CALLBACK_QUERY, MAX_DISCOVERY_BYTES, MAX_TOKEN_RESPONSE_BYTES,
    OIDC_FETCH_TIMEOUT, OidcClient, OidcConfig, ProviderMetadata, TokenSet, parse_token_response,
    pkce_challenge,
};
pub use principal::Principal;
pub use verifier::{Claims, DEFAULT_LEEWAY, MAX_LEEWAY, Verifier, bearer_token};
