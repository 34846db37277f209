//! `serve` (the FHIR server of issue #13) and `token` (a dev bearer token for it):
//! arguments in, the library called. The rules, the resources and the trace are all in
//! dmpflow-consult; with `--provide`, ITI-65 writes through the MLLP gateway's Kafka
//! producer (`dmpflow_ingest::feed::FeedProducer`), handed to the server as its
//! `FeedWriter` so that dmpflow-consult never links librdkafka.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dmpflow_consult::auth::{DEFAULT_LEEWAY, RoleMapping, Verifier, load_jwks, mint_dev_token};
use dmpflow_consult::authz::Principal;
use dmpflow_consult::server::{
    AppState, Coordinates, DEV_AUDIENCE, DEV_ISSUER, FeedWriter, WriteError, WriteFuture, serve,
};
use dmpflow_ingest::feed::{FeedProducer, FeedWriteError};
use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::shutdown_token;
use dmpflow_pipeline::stages::normalize_config;
use dmpflow_schemas::Feed;
use dmpflow_store::Store;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub listen: String,
    /// Public FHIR base URL for Bundle links (default: http://<listen>/fhir).
    #[arg(long)]
    pub base_url: Option<String>,
    /// JWKS file of the token issuer (with --auth-issuer and --auth-audience).
    #[arg(long, requires_all = ["auth_issuer", "auth_audience"], conflicts_with = "auth_dev_key")]
    pub auth_jwks: Option<PathBuf>,
    #[arg(long, requires = "auth_jwks")]
    pub auth_issuer: Option<String>,
    #[arg(long, requires = "auth_jwks")]
    pub auth_audience: Option<String>,
    /// Accept tokens signed by this dev public key (PEM; see `dmpflow token`). Development only.
    #[arg(long)]
    pub auth_dev_key: Option<PathBuf>,
    /// Take documents in: ITI-65 Provide Document Bundle (`POST /fhir`, professionals only)
    /// writes each one as an MDM^T02 to the documents feed topic on the settings' Kafka
    /// (--bootstrap, DMPFLOW_KAFKA_BOOTSTRAP), answering 200 once Kafka acknowledged it.
    /// Kafka must then be up at start (its record limits are checked). Without this flag
    /// the server needs no Kafka and POST /fhir answers 501 (provide.not_configured).
    #[arg(long)]
    pub provide: bool,
    /// With --provide: how long a submission waits for Kafka's acknowledgement before it
    /// is answered 503 (kafka.unavailable: resend later).
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub ack_timeout_ms: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum RoleArg {
    Patient,
    Representative,
    Professional,
}

#[derive(clap::Args)]
pub struct TokenArgs {
    #[arg(long, value_enum)]
    pub role: RoleArg,
    /// The patient's INS (patient), or the represented patient's (representative).
    #[arg(long, required_if_eq_any = [("role", "patient"), ("role", "representative")])]
    pub ins: Option<String>,
    /// The professional's RPPS/ADELI, or the representative's own identifier.
    #[arg(long, required_if_eq_any = [("role", "professional"), ("role", "representative")])]
    pub id: Option<String>,
    /// Profession code (TRE_G15), professionals only.
    #[arg(long, default_value = "10")]
    pub profession: String,
    #[arg(long)]
    pub organisation: Option<String>,
    /// The dev private key (PEM), as `serve --auth-dev-key` takes its public half.
    #[arg(long)]
    pub key: PathBuf,
    /// Validity in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
}

pub async fn run_serve(settings: &Settings, args: ServeArgs) -> Result<ExitCode> {
    let verifier = match (&args.auth_jwks, &args.auth_dev_key) {
        (Some(jwks), None) => {
            let text = load_jwks(&jwks.to_string_lossy()).context("reading the JWKS")?;
            Verifier::from_jwks(
                &text,
                args.auth_issuer.as_deref().unwrap_or_default(),
                args.auth_audience.as_deref().unwrap_or_default(),
                DEFAULT_LEEWAY,
            )?
        }
        (None, Some(key)) => {
            let pem = std::fs::read_to_string(key).context("reading the dev public key")?;
            tracing::warn!(
                key = %key.display(),
                "DEV KEY AUTHENTICATION: anyone holding the matching private key can act as any patient or professional"
            );
            Verifier::dev(&pem, DEV_ISSUER, DEV_AUDIENCE, DEFAULT_LEEWAY)?
        }
        _ => bail!(
            "refusing to serve without authentication: give --auth-jwks (with --auth-issuer, --auth-audience) or --auth-dev-key"
        ),
    };
    let store = Store::connect(&settings.database_url).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let base = args
        .base_url
        .unwrap_or_else(|| format!("http://{}/fhir", args.listen));
    let shutdown = shutdown_token();
    let mut state = AppState::new(store, verifier, RoleMapping::default(), &base);
    if args.provide {
        let topic = settings.topics.feed(Feed::Documents);
        // The largest MDM taken is normalize's message bound (a larger one is refused
        // before it is written), as for the stages.
        let producer = FeedProducer::connect(
            settings,
            std::slice::from_ref(&topic),
            settings.limits.max_message_bytes,
            "limits.max_message_bytes",
            Duration::from_millis(args.ack_timeout_ms),
            &shutdown,
        )
        .await
        .context("--provide: the documents feed topic on Kafka")?;
        tracing::info!(%topic, "ITI-65 provide enabled: documents are written to the feed topic");
        state = state.with_provider(Box::new(KafkaFeed(producer)), normalize_config(settings));
    }
    tracing::info!(listen = %args.listen, "FHIR server started");
    serve(listener, state, async move { shutdown.cancelled().await }).await?;
    Ok(ExitCode::SUCCESS)
}

/// The server's [`FeedWriter`] on the gateway's producer.
struct KafkaFeed(FeedProducer);

impl FeedWriter for KafkaFeed {
    fn write<'a>(&'a self, feed: Feed, key: &'a str, payload: &'a [u8]) -> WriteFuture<'a> {
        Box::pin(async move {
            match self.0.write_feed(feed, key, payload).await {
                Ok((partition, offset)) => Ok(Coordinates { partition, offset }),
                Err(e) => {
                    // librdkafka's text names brokers and error codes, no message content.
                    tracing::warn!(error = %e, "ITI-65 write to the feed topic failed");
                    Err(match e {
                        FeedWriteError::TooLarge(_) => WriteError::TooLarge,
                        FeedWriteError::Unavailable(_) => WriteError::Unavailable,
                    })
                }
            }
        })
    }
}

pub fn run_token(args: TokenArgs) -> Result<ExitCode> {
    let pem = std::fs::read_to_string(&args.key).context("reading the dev private key")?;
    let principal = match args.role {
        RoleArg::Patient => Principal::Patient {
            ins: args.ins.unwrap_or_default(),
        },
        RoleArg::Representative => Principal::Representative {
            represented_ins: args.ins.unwrap_or_default(),
            id: args.id.unwrap_or_default(),
        },
        RoleArg::Professional => Principal::Professional {
            id: args.id.unwrap_or_default(),
            profession: args.profession,
            organisation: args.organisation,
        },
    };
    let token = mint_dev_token(
        &pem,
        &principal,
        &RoleMapping::default(),
        DEV_ISSUER,
        DEV_AUDIENCE,
        std::time::Duration::from_secs(args.ttl),
    )?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}
