//! The embedded mode and the operator's database tools: `process` runs normalize → route →
//! store in one process without Kafka (SQLite by default), `demo` runs it on the bundled
//! synthetic feeds, and `patients`, `documents` read and fix the store (`quarantine` is in
//! quarantine.rs).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::embedded::{Chain, Summary};
use dmpflow_schemas::Feed;
use dmpflow_store::Store;

use crate::admin::{collect_files, no_input_messages, read_input, split};
use crate::inspect::feed_of;

#[derive(clap::Args)]
pub struct ProcessArgs {
    /// Files or directories of HL7 v2 messages; `-` reads standard input.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Feed of every message; guessed per message when absent.
    #[arg(long)]
    pub feed: Option<Feed>,
    /// Patient registry CSV to import before processing (see `patients import`).
    #[arg(long)]
    pub patients: Option<PathBuf>,
    /// Accept the test/demo INS OIDs (1.2.250.1.213.1.4.10 / .11).
    #[arg(long)]
    pub accept_test_oids: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Then serve the portal and the FHIR API on the demo's data at this address (e.g.
    /// 127.0.0.1:8080), with the dev login: open http://ADDR/portal/ and pick a demo
    /// patient or a professional. The dev key pair is dev.pem / dev.pub.pem in the
    /// current directory (created if absent). Development only: never expose it.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// SQLite file the demo writes (replaced if present).
    #[arg(long, default_value = "dmpflow-demo.db")]
    pub db: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Then serve the portal and the FHIR API on the demo's data at this address (e.g.
    /// 127.0.0.1:8080), with the dev login: open http://ADDR/portal/ and pick a demo
    /// patient or a professional. The dev key pair is dev.pem / dev.pub.pem in the
    /// current directory (created if absent). Development only: never expose it.
    #[arg(long, value_name = "ADDR")]
    pub serve: Option<String>,
}

/// Prints a run's summary as a table.
fn print_summary(s: &Summary) {
    println!();
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>8} {:>8}",
        "feed",
        "stored",
        "replaced",
        "deleted",
        "dup",
        "patient",
        "quarantine",
        "reject",
        "skipped"
    );
    for (feed, o) in &s.by_feed {
        let g = |k: &str| o.get(k).copied().unwrap_or(0);
        println!(
            "{feed:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>8} {:>8}",
            g("stored"),
            g("replaced"),
            g("deleted"),
            g("duplicate"),
            g("patient"),
            g("quarantined"),
            g("rejected"),
            g("skipped")
        );
    }
    println!(
        "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>8} {:>8}",
        "total",
        s.stored,
        s.replaced,
        s.deleted,
        s.duplicates,
        s.patient_updates,
        s.quarantined,
        s.rejected,
        s.skipped
    );
    if !s.reasons.is_empty() {
        println!("\nby reason:");
        for (r, n) in &s.reasons {
            println!("  {r:<32} {n}");
        }
    }
    let documents = s.stored + s.replaced + s.deleted + s.duplicates;
    println!(
        "\n{} files, {} messages, {} documents, {} skipped, {} errors ({} rejected, {} unreadable inputs) in {:.2}s",
        s.files,
        s.messages,
        documents,
        s.skipped,
        s.rejected + s.input_errors,
        s.rejected,
        s.input_errors,
        s.seconds
    );
}

async fn import_csv(store: &Store, path: &std::path::Path) -> Result<String> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let summary = store
        .import_patients_csv(text.as_slice())
        .await
        .with_context(|| format!("importing {}", path.display()))?;
    Ok(describe_import(&summary))
}

fn describe_import(s: &dmpflow_store::ImportSummary) -> String {
    format!(
        "{} lines: {} inserted, {} updated",
        s.lines, s.inserted, s.updated
    )
}

/// Runs the chain on messages already in memory (the bundled demo feeds).
async fn run_chain(
    store: Store,
    settings: Settings,
    inputs: Vec<(Feed, Vec<u8>)>,
    show_progress: bool,
) -> Result<Summary> {
    let bar = (show_progress && inputs.len() > 200).then(|| {
        let b = indicatif::ProgressBar::new(inputs.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} messages {per_sec}")
                .expect("static template"),
        );
        b
    });
    let mut chain = Chain::new(store, settings);
    for (feed, raw) in inputs {
        if let Some(b) = &bar {
            b.inc(1);
        }
        chain.message(feed, &raw).await?;
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    chain.finish().await
}

async fn open_store(url: &str) -> Result<Store> {
    Store::connect(url)
        .await
        .with_context(|| format!("opening the store {}", redact(url)))
}

/// A database URL fit to print: no userinfo, no secret query parameter (config::redact_url).
pub fn redact(url: &str) -> String {
    dmpflow_pipeline::config::redact_url(url)
}

pub async fn process(
    settings: &Settings,
    store_flag: Option<String>,
    args: ProcessArgs,
) -> Result<ExitCode> {
    // The embedded default is a local SQLite file, whatever .stack.env says for the stages.
    let url = store_flag.unwrap_or_else(|| "sqlite://dmpflow.db".into());
    let store = open_store(&url).await?;
    if let Some(csv) = &args.patients {
        let s = import_csv(&store, csv).await?;
        eprintln!("patients imported: {s}");
    }
    let mut chain_settings = settings.clone();
    chain_settings.accept_test_oids |= args.accept_test_oids;
    let inputs = collect_files(&args.inputs);
    let mut input_errors = inputs.errors.len();
    for e in &inputs.errors {
        eprintln!("{e}");
    }
    let bar = (!args.json && inputs.files.len() > 1).then(|| {
        let b = indicatif::ProgressBar::new(inputs.files.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
                .expect("static template"),
        );
        b
    });
    // File by file, message by message: memory holds one file and one batch of writes,
    // not the whole input.
    let mut chain = Chain::new(store, chain_settings);
    let mut framing_errors = 0;
    for file in &inputs.files {
        if let Some(b) = &bar {
            b.inc(1);
        }
        let data = match read_input(file) {
            Ok(d) => d,
            Err(e) => {
                input_errors += 1;
                eprintln!("{}: {e:#}", file.display());
                continue;
            }
        };
        for item in dmpflow_ingest::split_messages(&data) {
            match item {
                Ok(m) => {
                    // A message whose feed cannot be told costs one error line, not the run.
                    match feed_of(args.feed, m.bytes) {
                        Ok(feed) => chain.message(feed, m.bytes).await?,
                        Err(e) => {
                            framing_errors += 1;
                            eprintln!("{}: {e}", file.display());
                        }
                    }
                }
                Err(e) => {
                    framing_errors += 1;
                    eprintln!("{}: framing error: {e}", file.display());
                }
            }
        }
        if let Some(b) = &bar {
            b.set_message(format!("{} messages", chain.messages()));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let mut summary = chain.finish().await?;
    summary.rejected += framing_errors;
    summary.files = inputs.files.len();
    summary.input_errors = input_errors;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    if summary.messages == 0 {
        return Ok(no_input_messages());
    }
    Ok(if summary.rejected == 0 && summary.input_errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The bundled synthetic feeds (test INS, OID .10), generated by `scripts/gen-demo`.
pub const DEMO_PATIENTS: &str = include_str!("../demo/patients.csv");
pub const DEMO_FEEDS: &[(Feed, &str)] = &[
    (Feed::Identity, include_str!("../demo/identity.hl7")),
    (Feed::Lab, include_str!("../demo/lab.hl7")),
    (Feed::Imaging, include_str!("../demo/imaging.hl7")),
    (Feed::Pharmacy, include_str!("../demo/pharmacy.hl7")),
    (Feed::Cancer, include_str!("../demo/cancer.hl7")),
];

pub async fn demo(args: DemoArgs) -> Result<ExitCode> {
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", args.db.display()));
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    let url = format!("sqlite://{}", args.db.display());
    let store = open_store(&url).await?;
    let imported = describe_import(&store.import_patients_csv(DEMO_PATIENTS.as_bytes()).await?);
    let mut inputs = Vec::new();
    for (feed, text) in DEMO_FEEDS {
        let (messages, errors) = split(text.as_bytes());
        anyhow::ensure!(
            errors.is_empty(),
            "bundled {feed} feed has framing errors: {errors:?}"
        );
        inputs.extend(messages.into_iter().map(|m| (*feed, m)));
    }
    if !args.json {
        println!(
            "dmpflow demo: {} synthetic messages of every flow → {}",
            inputs.len(),
            url
        );
        println!("registry: {imported}");
    }
    // The bundled feeds use the test INS OIDs; the settings are the defaults, not the
    // environment's: the demo is the same run everywhere.
    let settings = Settings {
        accept_test_oids: true,
        ..Settings::default()
    };
    let mut summary = run_chain(store, settings, inputs, !args.json).await?;
    summary.files = DEMO_FEEDS.len();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
        println!(
            "\nexplore: dmpflow --store {url} documents list --ins <INS>   |   dmpflow --store {url} quarantine list"
        );
    }
    match args.serve {
        Some(addr) => crate::consult::serve_demo(&url, &addr).await,
        None => Ok(ExitCode::SUCCESS),
    }
}

#[derive(clap::Subcommand)]
pub enum PatientsAction {
    /// Import patients from CSV: ins,ins_oid,birth_name,first_names,birth_date,sex,birth_place,identity_status,feeding_opposed
    Import { file: PathBuf },
}

pub async fn patients(settings: &Settings, action: PatientsAction) -> Result<ExitCode> {
    let store = open_store(&settings.database_url).await?;
    match action {
        PatientsAction::Import { file } => {
            println!("{}", import_csv(&store, &file).await?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(clap::Subcommand)]
pub enum DocumentsAction {
    /// A patient's documents with their status and visibility.
    List {
        #[arg(long)]
        ins: String,
    },
    /// Print one document's CDA (integrity-checked).
    Show { unique_id: String },
}

pub async fn documents(settings: &Settings, action: DocumentsAction) -> Result<ExitCode> {
    let store = open_store(&settings.database_url).await?;
    match action {
        DocumentsAction::List { ins } => {
            let rows = store.documents_for_patient(&ins).await?;
            println!(
                "{:<46} {:<9} {:<11} {:<8} {:<3} {:<20} visibility",
                "uniqueId", "type", "status", "lifecycle", "v", "created"
            );
            for d in &rows {
                println!(
                    "{:<46} {:<9} {:<11} {:<8} {:<3} {:<20} {}",
                    d.unique_id,
                    d.type_code,
                    d.status.as_str(),
                    d.lifecycle,
                    d.version,
                    d.creation_time,
                    d.visibility.join(",")
                );
            }
            println!("{} documents", rows.len());
        }
        DocumentsAction::Show { unique_id } => match store.get_document_cda(&unique_id).await? {
            Some(cda) => println!("{cda}"),
            None => anyhow::bail!("no document {unique_id}"),
        },
    }
    Ok(ExitCode::SUCCESS)
}
