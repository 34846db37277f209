//! `serve` (the FHIR server of issue #13) and `token` (a dev bearer token for it):
//! arguments in, the library called. The rules, the resources and the trace are all in
//! dmpflow-consult; with `--provide`, ITI-65 writes through the MLLP gateway's Kafka
//! producer (`dmpflow_ingest::feed::FeedProducer`), handed to the server as its
//! `FeedWriter` so that dmpflow-consult never links librdkafka.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dmpflow_consult::auth::{ClientAuth, OidcClient, OidcConfig};
use dmpflow_consult::auth::{
    DEFAULT_LEEWAY, RoleMapping, Verifier, dev_public_key_path, load_jwks,
    load_or_create_dev_keypair, mint_dev_token,
};
use dmpflow_consult::authz::Principal;
use dmpflow_consult::server::portal::{DevLogin, OidcLogin, Portal};
use dmpflow_consult::server::{
    AppState, Coordinates, DEV_AUDIENCE, DEV_ISSUER, FeedWriter, Observer, TlsListener, WriteError,
    WriteFuture, serve,
};
use dmpflow_ingest::feed::{FeedProducer, FeedWriteError};
use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::stages::normalize_config;
use dmpflow_pipeline::{metrics, shutdown_token};
use dmpflow_schemas::Feed;
use dmpflow_store::Store;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
#[command(after_help = "\
Authentication (one of):
  --auth-jwks URL|FILE --auth-issuer ISS --auth-audience AUD
        an OIDC issuer's keys (Pro Santé Connect, the patients' login ...); a URL is
        fetched at startup and every --auth-jwks-refresh-secs (https://, or http:// to
        this host only)
  --auth-dev-key dev.pub.pem
        development only: tokens from `dmpflow token --key dev.pem` (logged loudly)

Example (the demo's database, a dev key, one patient's documents):
  dmpflow demo
  dmpflow token --role patient --ins 241111305541318 --key dev.pem > token
  dmpflow --store sqlite://dmpflow-demo.db serve --listen 127.0.0.1:8080 --auth-dev-key dev.pub.pem
  curl -H \"Authorization: Bearer $(cat token)\" \\
    'http://127.0.0.1:8080/fhir/DocumentReference?patient.identifier=urn:oid:1.2.250.1.213.1.4.10|241111305541318'

Taking documents in (ITI-65, professionals): --provide writes each submitted CDA to the
documents feed topic (Kafka from the settings) and answers once Kafka acknowledged it.")]
pub struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub listen: String,
    /// Public FHIR base URL for Bundle links (default: http://<listen>/fhir).
    #[arg(long)]
    pub base_url: Option<String>,
    /// The token issuer's JWKS: a file, or a URL fetched at startup and refreshed (with
    /// --auth-issuer and --auth-audience).
    #[arg(long, value_name = "URL|FILE", requires_all = ["auth_issuer", "auth_audience"], conflicts_with = "auth_dev_key")]
    pub auth_jwks: Option<String>,
    /// The `iss` every token must carry.
    #[arg(long, requires = "auth_jwks")]
    pub auth_issuer: Option<String>,
    /// The `aud` every token must carry (this server's client id at the issuer).
    #[arg(long, requires = "auth_jwks")]
    pub auth_audience: Option<String>,
    /// How often a JWKS URL is fetched again, so that rotated keys are picked up; a failed
    /// fetch keeps the keys in use.
    #[arg(long, default_value_t = 300, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(10..))]
    pub auth_jwks_refresh_secs: u64,
    /// Which claims carry the role and the identifiers: a JSON file of the role mapping
    /// (see docs/consultation.md); default: the `role` claim, PSC-shaped professional claims.
    #[arg(long, value_name = "FILE")]
    pub auth_claims: Option<PathBuf>,
    /// Every token is a professional's (Pro Santé Connect, whose tokens carry no role).
    #[arg(long, conflicts_with = "auth_claims")]
    pub auth_psc: bool,
    /// The portal's login for real use: the OIDC issuer (authorization code with PKCE;
    /// discovered at startup from ISSUER/.well-known/openid-configuration), with
    /// --portal-oidc-client-id; the ID token's audience is the client id.
    #[arg(long, value_name = "ISSUER", requires = "portal_oidc_client_id")]
    pub portal_oidc_issuer: Option<String>,
    /// This portal's client id at the issuer.
    #[arg(long, value_name = "ID", requires = "portal_oidc_issuer")]
    pub portal_oidc_client_id: Option<String>,
    /// A file holding the client secret (confidential client, sent with HTTP Basic); without
    /// it the portal is a public client (PKCE alone).
    #[arg(long, value_name = "FILE", requires = "portal_oidc_issuer")]
    pub portal_oidc_client_secret_file: Option<PathBuf>,
    /// The redirect URI registered at the issuer (default: <scheme>://<listen>/portal/callback).
    #[arg(long, value_name = "URL", requires = "portal_oidc_issuer")]
    pub portal_oidc_redirect: Option<String>,
    /// Accept tokens signed by this dev public key (PEM; see `dmpflow token`). Development only.
    #[arg(long, value_name = "PEM")]
    pub auth_dev_key: Option<PathBuf>,
    /// PostgreSQL connections of this server: each read waits for its trace commit, and
    /// commits waiting together share one WAL flush, so more connections carry more reads.
    #[arg(long, default_value_t = 32, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=512))]
    pub db_connections: u32,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs --tls-key. Each
    /// client must complete its handshake within 10 s.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1); needs --tls-cert.
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Serve /metrics and /health/{live,ready} on this address (its own default, beside
    /// `run`'s 9464 and `mllp`'s 9465).
    #[arg(
        long,
        env = "DMPFLOW_SERVE_METRICS_ADDR",
        default_value = "127.0.0.1:9466",
        value_name = "ADDR"
    )]
    pub metrics_addr: String,
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
    /// The dev private key (PEM). Created when missing, with its public half beside it
    /// (`dev.pem` → `dev.pub.pem`), which `serve --auth-dev-key` takes.
    #[arg(long, value_name = "PEM")]
    pub key: PathBuf,
    /// Validity in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl: u64,
}

/// How long a client may take to complete its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run_serve(settings: &Settings, args: ServeArgs) -> Result<ExitCode> {
    // Checked before anything else starts: a TLS mistake is a startup error.
    let tls =
        dmpflow_ingest::gateway::tls_acceptor(args.tls_cert.as_deref(), args.tls_key.as_deref())?;
    let mapping = match (&args.auth_claims, args.auth_psc) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the role mapping {}", path.display()))?;
            serde_json::from_str::<RoleMapping>(&text)
                .with_context(|| format!("{} is not a role mapping", path.display()))?
        }
        (None, true) => RoleMapping::pro_sante_connect(),
        (None, false) => RoleMapping::default(),
    };
    let verifier = match (&args.auth_jwks, &args.auth_dev_key) {
        (Some(jwks), None) => {
            let source = jwks.clone();
            let text = tokio::task::spawn_blocking(move || load_jwks(&source))
                .await?
                .context("reading the JWKS")?;
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
    let shutdown = shutdown_token();
    // Served from the start: /health/live answers while the store connects; ready once the
    // listener is bound, not ready again from shutdown.
    let health = metrics::Health::default();
    let endpoint = {
        let (addr, h, t) = (args.metrics_addr.clone(), health.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(&addr, h, t).await {
                tracing::warn!(error = %format!("{e:#}"), "metrics endpoint not served");
            }
        })
    };
    let store = Store::connect_with_pool(&settings.database_url, args.db_connections).await?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = args
        .base_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}/fhir", args.listen));
    let observer: Observer = Arc::new(|route: &str, status: u16, took: Duration| {
        metrics::metrics().consult_request(route, status, took.as_secs_f64());
    });
    let secure = tls.is_some();
    let dev_login = args.auth_dev_key.as_deref().and_then(dev_login_key);
    let oidc_login = match &args.portal_oidc_issuer {
        Some(issuer) => Some(portal_oidc(&args, issuer, scheme).await?),
        None => None,
    };
    let mut state = AppState::new(store, verifier, mapping, &base)
        .observed(observer)
        .with_portal(Portal::new(dev_login, oidc_login, secure));
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
    if let Some(url) = args.auth_jwks.filter(|s| s.contains("://")) {
        tokio::spawn(refresh_jwks(
            state.clone(),
            url,
            Duration::from_secs(args.auth_jwks_refresh_secs),
            shutdown.clone(),
        ));
    }
    tracing::info!(listen = %args.listen, metrics = %args.metrics_addr, tls = tls.is_some(), provide = args.provide, "FHIR server started");
    health.set_ready(true);
    let stop = shutdown.clone();
    let stopped = async move { stop.cancelled().await };
    let served = match tls {
        Some(acceptor) => {
            let listener = TlsListener::new(listener, acceptor, TLS_HANDSHAKE_TIMEOUT)?;
            serve(listener, state, stopped).await
        }
        None => serve(listener, state, stopped).await,
    };
    health.set_ready(false);
    shutdown.cancel();
    let _ = endpoint.await;
    served?;
    Ok(ExitCode::SUCCESS)
}

/// The portal's OIDC login: the issuer discovered and its keys fetched now, so that a wrong
/// issuer, client or network is a startup error, not a failed login later.
async fn portal_oidc(args: &ServeArgs, issuer: &str, scheme: &str) -> Result<OidcLogin> {
    let redirect = args
        .portal_oidc_redirect
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{}/portal/callback", args.listen));
    let mut config = OidcConfig::new(
        issuer,
        args.portal_oidc_client_id.as_deref().unwrap_or_default(),
        &redirect,
    )?;
    if let Some(path) = &args.portal_oidc_client_secret_file {
        let secret = std::fs::read_to_string(path)
            .with_context(|| format!("reading the client secret {}", path.display()))?;
        config = config.with_client_auth(ClientAuth::SecretBasic(secret.trim().to_owned()))?;
    }
    let (client, verifier) = tokio::task::spawn_blocking(move || {
        let client = OidcClient::discover(config)?;
        let verifier = client.load_id_token_verifier(DEFAULT_LEEWAY)?;
        Ok::<_, dmpflow_consult::auth::AuthError>((client, verifier))
    })
    .await?
    .context("the portal's OIDC issuer")?;
    tracing::info!(redirect = %redirect, "portal OIDC login enabled");
    Ok(OidcLogin::new(client, verifier))
}

/// The portal's dev login (issue #14): the private key beside the dev public key given to
/// `--auth-dev-key` (`dev.pem` beside `dev.pub.pem`, as `dmpflow token --key` writes them),
/// so the login page can mint tokens the verifier accepts. Without it the portal's login
/// page says so; the API is unaffected.
fn dev_login_key(public: &std::path::Path) -> Option<DevLogin> {
    let name = public.file_name()?.to_str()?;
    let private = public.with_file_name(format!("{}.pem", name.strip_suffix(".pub.pem")?));
    match std::fs::read_to_string(&private) {
        Ok(pem) => {
            tracing::warn!(
                key = %private.display(),
                "DEV LOGIN: the portal's login page lets anyone pick any identity"
            );
            Some(DevLogin::new(pem))
        }
        Err(e) => {
            tracing::warn!(key = %private.display(), error = %e.kind(), "portal dev login off: no private key beside the dev public key");
            None
        }
    }
}

/// Fetches the issuer's JWKS again every `every`, so that rotated keys are picked up. A
/// failed fetch is logged and the keys in use stay (the issuer may be briefly away).
async fn refresh_jwks(state: AppState, url: String, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        let source = url.clone();
        let fetched = tokio::task::spawn_blocking(move || load_jwks(&source)).await;
        let outcome = match fetched {
            Ok(Ok(text)) => state.verifier().replace_keys(&text),
            Ok(Err(e)) => Err(e),
            Err(_) => continue,
        };
        match outcome {
            Ok(keys) => tracing::debug!(keys, "JWKS refreshed"),
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "JWKS refresh failed; keeping the keys in use")
            }
        }
    }
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

/// `demo --serve ADDR`: `serve` on the demo's store with the dev login, the dev key pair
/// `dev.pem` / `dev.pub.pem` of the current directory (created if absent, as `token --key`
/// does), the defaults for everything else.
pub async fn serve_demo(store_url: &str, addr: &str) -> Result<ExitCode> {
    let key = PathBuf::from("dev.pem");
    load_or_create_dev_keypair(&key)?;
    let public = dev_public_key_path(&key);
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }
    let parsed = <Serve as clap::Parser>::try_parse_from([
        "serve".as_ref(),
        "--listen".as_ref(),
        addr.as_ref(),
        "--auth-dev-key".as_ref(),
        public.as_os_str(),
    ])?;
    let settings = Settings {
        database_url: store_url.to_owned(),
        ..Settings::default()
    };
    println!(
        "\nportal: http://{addr}/portal/  (dev login: pick a demo patient or a professional; Ctrl-C stops)\nFHIR:   http://{addr}/fhir/metadata"
    );
    run_serve(&settings, parsed.args).await
}

pub fn run_token(args: TokenArgs) -> Result<ExitCode> {
    let existed = args.key.exists();
    let pair = load_or_create_dev_keypair(&args.key)?;
    if !existed {
        // stderr: stdout is the token alone, for `> token` or `$(...)`.
        eprintln!(
            "created the dev key pair {} (private, owner-only) and {}: start the server with --auth-dev-key {}",
            args.key.display(),
            dev_public_key_path(&args.key).display(),
            dev_public_key_path(&args.key).display()
        );
    }
    let pem = pair.private_pem;
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
