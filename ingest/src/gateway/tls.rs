//! MLLP over TLS: the rustls acceptor of a PEM certificate chain and key, and the bounded
//! handshake every connection completes before its first frame. Errors name files and the
//! kind of problem, never the files' content (a PEM line may be key material).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dmpflow_pipeline::metrics::metrics;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{TlsAcceptor, rustls};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// The TLS acceptor of `--tls-cert`/`--tls-key` (of `mllp` and of `serve`), or None for
/// plain TCP. Errors name the
/// file and the kind of problem only: a PEM parser's message can quote a line of the file,
/// and that line may be key material.
pub fn tls_acceptor(cert: Option<&Path>, key: Option<&Path>) -> Result<Option<TlsAcceptor>> {
    let (cert, key) = match (cert, key) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (c, k),
        // The flag names only: `mllp` and `serve` both read their PEM files through here.
        (Some(_), None) => {
            anyhow::bail!("--tls-cert needs --tls-key: give both or neither")
        }
        (None, Some(_)) => {
            anyhow::bail!("--tls-key needs --tls-cert: give both or neither")
        }
    };
    let pem_error = |path: &Path, what: &str, e: rustls_pki_types::pem::Error| match e {
        rustls_pki_types::pem::Error::Io(io) => {
            anyhow::anyhow!("cannot read {what} {}: {io}", path.display())
        }
        rustls_pki_types::pem::Error::NoItemsFound => {
            anyhow::anyhow!("{what} {}: no PEM {what} found", path.display())
        }
        _ => anyhow::anyhow!("{what} {}: not valid PEM", path.display()),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(cert, "certificate", e))?;
    if chain.is_empty() {
        anyhow::bail!("certificate {}: no PEM certificate found", cert.display());
    }
    let private =
        PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, "private key", e))?;
    // ring keeps the build light (aws-lc-rs needs cmake and a C toolchain); the provider
    // is explicit so no process-wide default has to be installed.
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, private)
    .map_err(|e| {
        anyhow::anyhow!(
            "TLS certificate {} and key {} are not usable together: {e}",
            cert.display(),
            key.display()
        )
    })?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// The TLS side of one accepted connection, or None when the handshake failed, took longer
/// than `timeout` or shutdown came first (the connection is then simply closed). The
/// handshake is bounded like a frame in progress, and counts against the connection limit
/// (the caller holds the permit) like any client.
pub(super) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Option<TlsStream<TcpStream>> {
    let shake = tokio::select! {
        r = tokio::time::timeout(timeout, acceptor.accept(stream)) => r,
        _ = shutdown.cancelled() => return None,
    };
    match shake {
        Ok(Ok(tls_stream)) => Some(tls_stream),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            // Closed before finishing the handshake without a TLS alert: typically a TCP
            // port probe (load balancer, monitoring), which is not a failed client and
            // must not flood the log or metric.
            debug!(%peer, "closed by the peer during the TLS handshake");
            None
        }
        Ok(Err(e)) => {
            // rustls errors name the protocol fault, never application data.
            metrics().tls_handshake_failure("error");
            warn!(%peer, error = %e, "TLS handshake failed; closing the connection");
            None
        }
        Err(_) => {
            metrics().tls_handshake_failure("timeout");
            warn!(%peer, "TLS handshake timed out; closing the connection");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_needs_both_cert_and_key() {
        assert!(
            tls_acceptor(None, None).unwrap().is_none(),
            "neither: plain TCP"
        );
        let only_cert = tls_acceptor(Some(Path::new("/x/cert.pem")), None)
            .err()
            .expect("cert without key is refused")
            .to_string();
        assert!(only_cert.contains("--tls-cert") && only_cert.contains("needs --tls-key"));
        let only_key = tls_acceptor(None, Some(Path::new("/x/key.pem")))
            .err()
            .expect("key without cert is refused")
            .to_string();
        assert!(only_key.contains("--tls-key") && only_key.contains("needs --tls-cert"));
    }

    #[test]
    fn tls_file_errors_name_the_file_and_not_its_content() {
        let dir = std::env::temp_dir().join(format!("dmpflow-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let e = tls_acceptor(Some(&missing), Some(&missing)).err().unwrap();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        // A line that looks like a broken PEM header must not be echoed back.
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "-----BEGIN SECRET-SAUCE\nc2VjcmV0\n").unwrap();
        let e = tls_acceptor(Some(&bad), Some(&bad))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("bad.pem"), "{e}");
        assert!(!e.contains("SAUCE") && !e.contains("c2VjcmV0"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
