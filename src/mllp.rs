//! `dmpflow mllp`: the command line of the MLLP gateway. The gateway itself (listener,
//! TLS, per-peer limits, resend detection, routing, ACKs, Kafka writes) is
//! `dmpflow_ingest::gateway`, where its ACK guarantees are documented; this file turns the
//! flags into its `Config`, serves /metrics and /health on `--metrics-addr`, binds
//! `--listen` and runs the gateway until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use dmpflow_ingest::gateway::{self, Config, Gateway, Limits, Routing};
use dmpflow_pipeline::config::Settings;
use dmpflow_schemas::Feed;
use tokio::net::TcpListener;
use tracing::{info, warn};

#[derive(clap::Args, Clone)]
pub struct MllpArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:2575")]
    pub listen: String,
    /// Feed every message goes to; its message types are checked (others get AR).
    #[arg(long, required_unless_present = "route")]
    pub feed: Option<Feed>,
    /// Route by MSH-9 instead of one feed: `TYPE[^EVENT]=FEED`, repeatable, first match
    /// wins (e.g. `--route ADT=identity --route RDS^O13=pharmacy --route ORU=lab`). The
    /// matched feed must accept the message as normalize would (else AR), as with --feed.
    #[arg(long, conflicts_with = "feed")]
    pub route: Vec<String>,
    /// Largest message accepted, in bytes (a larger frame closes the connection).
    #[arg(long, default_value_t = 16 << 20)]
    pub max_frame: usize,
    /// A frame already started must keep arriving: longest silence inside a frame (ms);
    /// with TLS, also the longest a handshake may take.
    #[arg(long, default_value_t = 30_000)]
    pub read_timeout_ms: u64,
    /// Longest a frame may take from its first byte to its end block (ms), however its
    /// bytes trickle in: a sender dribbling one byte per read timeout cannot hold a
    /// connection (and its memory) forever. Past it the connection is closed.
    #[arg(long, default_value_t = 60_000)]
    pub frame_timeout_ms: u64,
    /// A connection with no traffic between messages for this long is closed (ms).
    #[arg(long, default_value_t = 600_000)]
    pub idle_timeout_ms: u64,
    /// Connections served at once; further ones are closed at accept.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Connections one peer address may hold at once; further ones from it are closed at
    /// accept, so one host cannot take every --max-connections slot.
    #[arg(long, default_value_t = 32)]
    pub max_connections_per_peer: usize,
    /// How long a message may wait for Kafka's acknowledgement before the sender gets AE (ms).
    #[arg(long, default_value_t = 10_000)]
    pub ack_timeout_ms: u64,
    /// Recently acknowledged (sender, MSH-10, content) kept to answer a resend without a
    /// second write; 0 disables.
    #[arg(long, default_value_t = 100_000)]
    pub dedupe_cache: usize,
    /// Serve MLLP over TLS with this certificate chain (PEM, leaf first); needs --tls-key.
    /// Every connection must then complete a TLS handshake within --read-timeout-ms.
    #[arg(long, env = "DMPFLOW_MLLP_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1); needs --tls-cert.
    #[arg(long, env = "DMPFLOW_MLLP_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Serve /metrics and /health/{live,ready} on this address. Its own default, not the
    /// settings' metrics_addr (127.0.0.1:9464 of `dmpflow run`), so a gateway and the
    /// stages can run on one host without a port clash.
    #[arg(
        long,
        env = "DMPFLOW_MLLP_METRICS_ADDR",
        default_value = DEFAULT_METRICS_ADDR,
        value_name = "ADDR"
    )]
    pub metrics_addr: String,
}

/// Default `--metrics-addr` of the gateway: next to `dmpflow run`'s 9464.
pub const DEFAULT_METRICS_ADDR: &str = "127.0.0.1:9465";

impl MllpArgs {
    /// The connection limits of the flags.
    fn limits(&self) -> Limits {
        Limits {
            max_frame: self.max_frame,
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            frame_timeout: Duration::from_millis(self.frame_timeout_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
        }
    }
}

pub async fn mllp(settings: &Settings, args: MllpArgs) -> Result<ExitCode> {
    let routing = Routing::from_flags(args.feed, &args.route)?;
    if let Routing::Table(t) = &routing
        && t.is_empty()
    {
        anyhow::bail!("give --feed FEED or at least one --route TYPE[^EVENT]=FEED");
    }
    // Checked before anything connects to Kafka: a TLS mistake is a startup error.
    let tls = gateway::tls_acceptor(args.tls_cert.as_deref(), args.tls_key.as_deref())?;
    // Served from the start so /health/live answers while the gateway gets ready; ready
    // once the producer exists and the listener is bound (gateway::run sets it), not ready
    // again from shutdown.
    let shutdown = dmpflow_pipeline::shutdown_token();
    let health = dmpflow_pipeline::metrics::Health::default();
    let server = {
        let (addr, h, t) = (args.metrics_addr.clone(), health.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = dmpflow_pipeline::metrics::serve(&addr, h, t).await {
                warn!(error = %format!("{e:#}"), "metrics endpoint not served");
            }
        })
    };
    let tls_on = tls.is_some();
    let config = Config {
        routing,
        limits: args.limits(),
        ack_timeout: Duration::from_millis(args.ack_timeout_ms),
        dedupe_cache: args.dedupe_cache,
        tls,
        health,
    };
    // Refuses to start when a --max-frame frame would not fit a Kafka record.
    let gw = Arc::new(Gateway::new(settings, config, &shutdown).await?);
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let local = listener.local_addr()?;
    info!(
        addr = %local,
        tls = if tls_on { "on" } else { "off" },
        max_frame = args.max_frame,
        max_connections = args.max_connections,
        max_connections_per_peer = args.max_connections_per_peer,
        frame_timeout_ms = args.frame_timeout_ms,
        metrics = %args.metrics_addr,
        "MLLP gateway listening"
    );
    println!("listening on {local}");
    gateway::run(listener, gw, shutdown).await?;
    let _ = server.await;
    info!("MLLP gateway stopped");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MllpArgs,
    }

    #[test]
    fn flags_make_the_gateway_config() {
        let cli = Cli::try_parse_from([
            "mllp",
            "--route",
            "ADT=identity",
            "--route",
            "RDS^O13=pharmacy",
        ])
        .unwrap();
        let a = cli.args;
        let t = Routing::from_flags(a.feed, &a.route).unwrap();
        let Routing::Table(rows) = t else {
            panic!("a routing table")
        };
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1], ("RDS".into(), Some("O13".into()), Feed::Pharmacy));
        // The defaults, as the help states them.
        let l = a.limits();
        assert_eq!(l.max_frame, 16 << 20);
        assert_eq!(l.read_timeout, Duration::from_secs(30));
        assert_eq!(l.frame_timeout, Duration::from_secs(60));
        assert_eq!(l.idle_timeout, Duration::from_secs(600));
        assert_eq!((l.max_connections, l.max_connections_per_peer), (256, 32));
        assert_eq!((a.ack_timeout_ms, a.dedupe_cache), (10_000, 100_000));
        assert_eq!(a.listen, "127.0.0.1:2575");
        // One feed or a table, not both; and one of them is required.
        assert!(Cli::try_parse_from(["mllp", "--feed", "lab", "--route", "ORU=lab"]).is_err());
        assert!(Cli::try_parse_from(["mllp"]).is_err());
    }
}
