//! `dmpflow serve` over HTTPS (`--tls-cert`/`--tls-key`, the same rustls setup as the MLLP
//! gateway): a TLS client is answered, a plain-HTTP client is not, and a client that never
//! completes its handshake does not hold up the others. The certificate is generated here
//! with rcgen; nothing is a real secret.

mod common;

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

async fn get<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    path: &str,
) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_tls_answers_tls_clients_only() {
    let dir = std::env::temp_dir().join(format!("dmpflow-serve-tls-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let (_, _, tls) = test_certificate(&dir);
    let out = dmpflow()
        .current_dir(&dir)
        .args([
            "token",
            "--role",
            "patient",
            "--ins",
            "138127505614358",
            "--key",
            "dev.pem",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // One flag without the other is a clear startup error, before anything listens.
    let out = dmpflow()
        .current_dir(&dir)
        .args([
            "--store",
            "sqlite://t.db",
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--auth-dev-key", "dev.pub.pem", "--tls-cert", "cert.pem"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert needs --tls-key"), "{err}");

    let port = free_port();
    let metrics = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let _server = Server(
        dmpflow()
            .current_dir(&dir)
            .env("DMPFLOW_SERVE_METRICS_ADDR", &metrics)
            .args(["--store", "sqlite://t.db", "serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--auth-dev-key", "dev.pub.pem"])
            .args(["--tls-cert", "cert.pem", "--tls-key", "key.pem"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = TcpStream::connect(&metrics).await
            && get(s, "/health/ready").await.starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serve not ready: {}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A client that connects and says nothing: it must not hold the others up.
    let _silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();

    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let stream = tokio::time::timeout(Duration::from_secs(5), tls.connect(name, tcp))
        .await
        .expect("the handshake is not stuck behind the silent client")
        .unwrap();
    let answer = get(stream, "/fhir/metadata").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("CapabilityStatement"));
    assert!(
        answer.contains(&format!("https://127.0.0.1:{port}/fhir")),
        "the base URL says https"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(15), get(tcp, "/fhir/metadata"))
        .await
        .expect("a plain client is closed, not left hanging");
    assert!(!answer.contains("HTTP/1.1 200"), "{answer}");
    let _ = std::fs::remove_dir_all(&dir);
}
