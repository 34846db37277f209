//! dmpflow: the command line. One binary runs any stage of the pipeline, the embedded
//! one-process chain, and the operator's tools (topics, patients, quarantine, documents).

mod admin;
mod consult;
mod dlq;
mod embedded;
mod inspect;
mod mllp;
mod quarantine;
mod replay;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use dmpflow_pipeline::config::{self, Settings};
use dmpflow_pipeline::{metrics, runtime, shutdown_token, stages};

/// See Cargo.toml for why not the system allocator (librdkafka's C allocations still use
/// glibc's).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// dmpflow feeds each patient's DMP (Dossier Médical Partagé) from the confluent flows:
/// laboratory results, imaging reports, pharmacy dispensations, cancer-care forms and the
/// identity/consent feed. HL7 v2 in, CI-SIS CDA R2 documents routed by INS and stored.
///
/// Quick start, no services needed:   dmpflow demo
/// Against Kafka + PostgreSQL:          scripts/stack up && dmpflow topics create && dmpflow run
///
/// Settings: flags > DMPFLOW_* environment > --env-file > --config FILE (TOML) >
/// ./.stack.env (current directory only, not with --config) > defaults.
#[derive(Parser)]
#[command(name = "dmpflow", version, about, long_about, verbatim_doc_comment)]
struct Cli {
    /// TOML configuration file (see README: [kafka], [topics], [limits], database_url).
    #[arg(long, global = true, env = "DMPFLOW_CONFIG")]
    config: Option<PathBuf>,
    /// KEY=VALUE file of DMPFLOW_* settings (as written by scripts/stack up). Without it,
    /// only ./.stack.env in the current directory is read; never a parent directory's.
    #[arg(long, global = true, env = "DMPFLOW_ENV_FILE", value_name = "PATH")]
    env_file: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(long, global = true)]
    bootstrap: Option<String>,
    /// Database URL: postgres://user@host:port/db or sqlite://path.
    #[arg(long = "store", global = true, alias = "database-url")]
    store: Option<String>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run pipeline stages against Kafka and the database until SIGINT/SIGTERM.
    Run {
        /// Which stage(s) this process runs; each is a consumer group and scales by partitions.
        /// `all` routes inside normalize (one Kafka hop fewer; route then serves
        /// dmp.documents only) with 2 normalize consumers on PostgreSQL, unless
        /// `limits.route_in_normalize` / DMPFLOW_ROUTE_IN_NORMALIZE says otherwise; `normalize`
        /// alone keeps the chain through dmp.documents unless it is set to true.
        #[arg(long, value_enum, default_value = "all")]
        stage: stages::StageName,
        /// Serve /metrics and /health/{live,ready} on this address.
        #[arg(long)]
        metrics_addr: Option<String>,
        /// Accept the test INS OIDs (1.2.250.1.213.1.4.10 / .11), as
        /// DMPFLOW_ACCEPT_TEST_OIDS=1 does: the demo and test stacks only. Production
        /// refuses them (ins.oid.rejected), the default.
        #[arg(long)]
        accept_test_oids: bool,
    },
    /// Manage Kafka topics.
    Topics {
        #[command(subcommand)]
        action: admin::TopicsAction,
    },
    /// Produce HL7 v2 messages from files to a feed topic; reports a file done only when
    /// every message of it is acknowledged by Kafka (acks=all).
    Load(admin::LoadArgs),
    /// Read HL7 v2 messages and write the CDA documents and metadata they yield (inspection;
    /// no Kafka, no database).
    Normalize(inspect::NormalizeArgs),
    /// The whole chain normalize → route → store in this process, no Kafka (SQLite by default).
    Process(embedded::ProcessArgs),
    /// Run `process` on the bundled synthetic feeds of every flow, into a fresh SQLite file.
    Demo(embedded::DemoArgs),
    /// The patient registry.
    Patients {
        #[command(subcommand)]
        action: embedded::PatientsAction,
    },
    /// Identity-vigilance quarantine: list, inspect, release after the registry was fixed.
    Quarantine {
        #[command(subcommand)]
        action: quarantine::QuarantineAction,
    },
    /// Documents stored in a patient's DMP.
    Documents {
        #[command(subcommand)]
        action: embedded::DocumentsAction,
    },
    /// The dead-letter queue: list, show, replay after a fix.
    Dlq {
        #[command(subcommand)]
        action: dlq::DlqAction,
    },
    /// Re-process a window of a stage's input through a separate consumer group.
    Replay(replay::ReplayArgs),
    /// MLLP gateway: receive HL7 v2 over TCP (or TLS with --tls-cert/--tls-key), acknowledge
    /// once durably written to Kafka.
    Mllp(mllp::MllpArgs),
    /// The FHIR R4 server of the DMP (ITI-67/68, Observation, AuditEvent); every access is
    /// traced. Needs --auth-jwks (with issuer and audience) or --auth-dev-key. With
    /// --provide (and Kafka), also ITI-65 Provide Document Bundle (POST /fhir); without it,
    /// POST /fhir answers 501.
    Serve(consult::ServeArgs),
    /// Print a dev bearer token for `serve --auth-dev-key` (development only).
    Token(consult::TokenArgs),
}

fn init_tracing(format: LogFormat, filter: tracing_subscriber::EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match config::log_filter() {
        Ok(filter) => init_tracing(cli.log_format, filter),
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::from(2);
        }
    }
    match real_main(cli).await {
        Ok(code) => code,
        // Logged once already, at error level, by the stage runtime.
        Err(e) if e.downcast_ref::<stages::StageFailed>().is_some() => {
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn real_main(cli: Cli) -> Result<std::process::ExitCode> {
    let mut settings = Settings::load(cli.config.as_deref(), cli.env_file.as_deref())?;
    if let Some(b) = cli.bootstrap {
        settings.kafka.bootstrap = b;
    }
    let store_flag = cli.store.clone();
    if let Some(s) = &store_flag {
        settings.database_url = s.clone();
    }
    use std::process::ExitCode;
    match cli.command {
        Command::Run {
            stage,
            metrics_addr,
            accept_test_oids,
        } => {
            if let Some(a) = metrics_addr {
                settings.metrics_addr = a;
            }
            settings.accept_test_oids |= accept_test_oids;
            let shutdown = shutdown_token();
            let health = metrics::Health::default();
            // The endpoint outlives the stages: after a stage failure it keeps answering
            // "not ready" for a moment before the process exits (see below).
            let server_stop = CancellationToken::new();
            let server = {
                let (addr, h, t) = (
                    settings.metrics_addr.clone(),
                    health.clone(),
                    server_stop.clone(),
                );
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    let served = metrics::serve(&addr, h, t).await;
                    if let Err(e) = &served {
                        // Without its health endpoint an instance cannot be probed: stop
                        // rather than run unobservable.
                        tracing::error!(error = %format!("{e:#}"), "metrics endpoint not served: the process exits");
                        stop.cancel();
                    }
                    served
                })
            };
            let timeout = std::time::Duration::from_millis(settings.limits.shutdown_timeout_ms);
            let run = stages::run(stage, settings, health, shutdown.clone());
            tokio::pin!(run);
            let result = tokio::select! {
                r = &mut run => r,
                _ = async { shutdown.cancelled().await; tokio::time::sleep(timeout).await } => {
                    // The bound is a promise to the supervisor: returning would drop the
                    // runtime, which waits for every worker, and a stage stuck in a blocking
                    // client call (a synchronous offset commit to a group coordinator that
                    // does not answer) would hold the process past it. What was not committed
                    // comes back to the next owner; every hop downstream is idempotent.
                    tracing::error!(bound = ?timeout, "stages did not stop within the shutdown bound: the process exits");
                    std::process::exit(2);
                }
            };
            shutdown.cancel();
            if result.is_err() {
                // A probe polling /health/ready sees the failure before the process is gone.
                tokio::time::sleep(runtime::HealthChecks::INTERVAL).await;
            }
            server_stop.cancel();
            let served = server.await;
            result?;
            match served {
                Ok(Err(e)) => Err(e),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Topics { action } => admin::topics(&settings, action).await,
        Command::Load(args) => admin::load(&settings, args).await,
        Command::Normalize(args) => inspect::normalize(args),
        Command::Process(args) => embedded::process(&settings, store_flag, args).await,
        Command::Demo(args) => embedded::demo(args).await,
        Command::Patients { action } => embedded::patients(&settings, action).await,
        Command::Quarantine { action } => quarantine::quarantine(&settings, action).await,
        Command::Documents { action } => embedded::documents(&settings, action).await,
        Command::Dlq { action } => dlq::dlq(&settings, action).await,
        Command::Replay(args) => {
            settings.accept_test_oids |= args.accept_test_oids;
            replay::replay(&settings, args).await
        }
        Command::Mllp(args) => mllp::mllp(&settings, args).await,
        Command::Serve(args) => consult::run_serve(&settings, args).await,
        Command::Token(args) => consult::run_token(args),
    }
}
