//! Dev tokens, for tests and the demo: an ECDSA P-256 key pair generated locally, and tokens
//! signed with it that only a server started with `--auth-dev-key` accepts.
//!
//! ES256 rather than RS256: a P-256 key is generated instantly by `ring` (through rcgen,
//! already in the workspace), where RSA key generation is slow and needs another crate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

use super::verifier::DEV_KID;
use super::{AuthError, Principal, RoleMapping};

/// A dev key pair, both halves PEM: PKCS#8 private key, SPKI public key.
/// `Debug` leaves the private key out.
#[derive(Clone)]
pub struct DevKeyPair {
    /// `-----BEGIN PRIVATE KEY-----`: for `dmpflow token --key`.
    pub private_pem: String,
    /// `-----BEGIN PUBLIC KEY-----`: for `serve --auth-dev-key`.
    pub public_pem: String,
}

impl std::fmt::Debug for DevKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevKeyPair")
            .field("public_pem", &self.public_pem)
            .finish_non_exhaustive()
    }
}

/// A fresh ECDSA P-256 key pair.
pub fn generate_dev_keypair() -> Result<DevKeyPair, AuthError> {
    let key = rcgen::KeyPair::generate().map_err(|e| AuthError::ConfigKey {
        reason: format!("cannot generate a dev key: {e}"),
    })?;
    Ok(DevKeyPair {
        private_pem: key.serialize_pem(),
        public_pem: key.public_key_pem(),
    })
}

/// The public key's path beside a private key: `dev.pem` gives `dev.pub.pem`.
pub fn dev_public_key_path(private_path: &Path) -> PathBuf {
    let stem = private_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dev".to_owned());
    private_path.with_file_name(format!("{stem}.pub.pem"))
}

/// The dev key pair at `private_path`, created there (and its public half at
/// [`dev_public_key_path`]) when the file does not exist. The private key is written
/// owner-only and never overwritten.
pub fn load_or_create_dev_keypair(private_path: &Path) -> Result<DevKeyPair, AuthError> {
    let io = |what: &str, e: std::io::Error| AuthError::ConfigKey {
        reason: format!("cannot {what} {}: {}", private_path.display(), e.kind()),
    };
    match std::fs::read_to_string(private_path) {
        Ok(private_pem) => {
            let key = rcgen::KeyPair::from_pem(&private_pem).map_err(|e| AuthError::ConfigKey {
                reason: format!("dev key is not a PKCS#8 PEM private key: {e}"),
            })?;
            Ok(DevKeyPair {
                public_pem: key.public_key_pem(),
                private_pem,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let pair = generate_dev_keypair()?;
            write_new(private_path, &pair.private_pem, true).map_err(|e| io("write", e))?;
            std::fs::write(dev_public_key_path(private_path), &pair.public_pem)
                .map_err(|e| io("write the public key beside", e))?;
            Ok(pair)
        }
        Err(e) => Err(io("read", e)),
    }
}

/// Creates `path` (failing if it exists, so two concurrent runs cannot swap keys under each
/// other), owner-only when `secret`.
fn write_new(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    options.open(path)?.write_all(text.as_bytes())
}

/// A dev token for `principal`, its claims placed where `mapping` reads them, valid `ttl`
/// from now.
pub fn mint_dev_token(
    private_pem: &str,
    principal: &Principal,
    mapping: &RoleMapping,
    issuer: &str,
    audience: &str,
    ttl: Duration,
) -> Result<String, AuthError> {
    let now = jsonwebtoken::get_current_timestamp();
    mint_dev_token_at(private_pem, principal, mapping, issuer, audience, now, ttl)
}

/// [`mint_dev_token`] issued at `issued_at` (seconds since the epoch): tests use it for
/// tokens already expired or not yet valid.
pub fn mint_dev_token_at(
    private_pem: &str,
    principal: &Principal,
    mapping: &RoleMapping,
    issuer: &str,
    audience: &str,
    issued_at: u64,
    ttl: Duration,
) -> Result<String, AuthError> {
    let key =
        EncodingKey::from_ec_pem(private_pem.as_bytes()).map_err(|e| AuthError::ConfigKey {
            reason: format!("dev key is not a PKCS#8 EC private key PEM: {e}"),
        })?;
    let mut claims = mapping.claims_for(principal)?;
    claims.insert("iss".into(), issuer.into());
    claims.insert("aud".into(), audience.into());
    claims.insert("iat".into(), issued_at.into());
    claims.insert("nbf".into(), issued_at.into());
    claims.insert("exp".into(), issued_at.saturating_add(ttl.as_secs()).into());
    // OIDC wants a `sub`; when the mapping does not put an identifier there, a constant keeps
    // identifiers out of a claim that logs and proxies tend to show.
    claims
        .entry("sub")
        .or_insert_with(|| Value::String(format!("dmpflow-dev-{}", principal.role_name())));
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(DEV_KID.to_owned());
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| AuthError::Mint {
        reason: format!("signing failed: {}", e.kind_name()),
    })
}

/// A name for the library's error kind, without its payload.
trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for jsonwebtoken::errors::Error {
    fn kind_name(&self) -> String {
        let debug = format!("{:?}", self.kind());
        debug
            .split(['(', ' '])
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}
