//! The embedded mode and the operator's database tools: `process` runs normalize → route →
//! store in one process without Kafka (SQLite by default), `demo` runs it on the bundled
//! synthetic feeds, and `patients`, `documents` read and fix the store (`quarantine` is in
//! quarantine.rs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use dmpflow_route::RouteConfig;
use dmpflow_schemas::{Feed, Normalized};
use dmpflow_store::{ItemOutcome, Store, StoreItem};
use serde::Serialize;

use crate::admin::{collect_files, no_input_messages, read_input, split};
use dmpflow_pipeline::config::Settings;
use crate::inspect::feed_of;
use dmpflow_pipeline::chain::{self as pipeline, Coordinates, Routed};

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
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// SQLite file the demo writes (replaced if present).
    #[arg(long, default_value = "dmpflow-demo.db")]
    pub db: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Outcome counts of a run, by feed and reason.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Input files read (`process`; 0 for the bundled demo).
    pub files: usize,
    /// Inputs that could not be read (missing, unreadable, a broken directory entry).
    pub input_errors: usize,
    pub messages: usize,
    pub stored: usize,
    pub replaced: usize,
    pub deleted: usize,
    pub duplicates: usize,
    pub patient_updates: usize,
    pub quarantined: usize,
    pub rejected: usize,
    /// Messages with nothing for the DMP (an ADT movement: `hl7.event.skipped`): not
    /// errors, not in `rejected` nor in `reasons`; by feed under the outcome `skipped`.
    pub skipped: usize,
    /// reason code → count (quarantine and rejects).
    pub reasons: BTreeMap<String, usize>,
    /// feed → outcome → count.
    pub by_feed: BTreeMap<String, BTreeMap<String, usize>>,
    pub seconds: f64,
}

impl Summary {
    fn count(&mut self, feed: Feed, outcome: &str) {
        *self
            .by_feed
            .entry(feed.as_str().to_string())
            .or_default()
            .entry(outcome.to_string())
            .or_default() += 1;
    }

    fn print(&self) {
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
        for (feed, o) in &self.by_feed {
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
                g(dmpflow_pipeline::stages::SKIPPED)
            );
        }
        println!(
            "{:<12} {:>8} {:>8} {:>8} {:>8} {:>8} {:>11} {:>8} {:>8}",
            "total",
            self.stored,
            self.replaced,
            self.deleted,
            self.duplicates,
            self.patient_updates,
            self.quarantined,
            self.rejected,
            self.skipped
        );
        if !self.reasons.is_empty() {
            println!("\nby reason:");
            for (r, n) in &self.reasons {
                println!("  {r:<32} {n}");
            }
        }
        let documents = self.stored + self.replaced + self.deleted + self.duplicates;
        println!(
            "\n{} files, {} messages, {} documents, {} skipped, {} errors ({} rejected, {} unreadable inputs) in {:.2}s",
            self.files,
            self.messages,
            documents,
            self.skipped,
            self.rejected + self.input_errors,
            self.rejected,
            self.input_errors,
            self.seconds
        );
    }
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

async fn open_store(url: &str) -> Result<Store> {
    Store::connect(url)
        .await
        .with_context(|| format!("opening the store {}", redact(url)))
}

/// A database URL fit to print: no userinfo, no secret query parameter (config::redact_url).
pub fn redact(url: &str) -> String {
    dmpflow_pipeline::config::redact_url(url)
}

/// The chain normalize → route → store run on messages one at a time into a store: items
/// are written in batches of 500, so memory holds one message and one batch, whatever the
/// input's size.
pub struct Chain<'a> {
    store: &'a Store,
    route_cfg: &'a RouteConfig,
    cfg: dmpflow_normalize::Config,
    summary: Summary,
    pending: Vec<StoreItem>,
    pending_feeds: Vec<Feed>,
    // Forgets what each identity update route applies changes (see RegistryCache).
    registry: pipeline::RegistryCache,
    started: Instant,
}

impl<'a> Chain<'a> {
    pub fn new(store: &'a Store, route_cfg: &'a RouteConfig) -> Chain<'a> {
        Chain {
            store,
            route_cfg,
            cfg: dmpflow_normalize::Config::default(),
            summary: Summary::default(),
            pending: Vec::new(),
            pending_feeds: Vec::new(),
            registry: pipeline::RegistryCache::default(),
            started: Instant::now(),
        }
    }

    /// Runs one message through the chain (its store writes may wait for the batch).
    pub async fn message(&mut self, feed: Feed, raw: &[u8]) -> Result<()> {
        self.summary.messages += 1;
        let items = match pipeline::normalize_message(feed, raw, &Coordinates::default(), &self.cfg)
        {
            Ok(items) => items,
            // Nothing for the DMP (an ADT movement): counted apart, not an error.
            Err(reject) if reject.reason.is_skip() => {
                self.summary.skipped += 1;
                self.summary.count(feed, dmpflow_pipeline::stages::SKIPPED);
                return Ok(());
            }
            Err(reject) => {
                self.summary.rejected += 1;
                *self
                    .summary
                    .reasons
                    .entry(reject.reason.as_str().into())
                    .or_default() += 1;
                self.summary.count(feed, "rejected");
                return Ok(());
            }
        };
        for item in items {
            // Route reads the registry, which an earlier item of this run may have
            // changed: flush pending writes first when an identity update comes.
            let is_patient = matches!(item, Normalized::Patient(_));
            if is_patient && !self.pending.is_empty() {
                self.flush().await?;
            }
            match pipeline::route_item(self.store, item, self.route_cfg, &self.registry).await? {
                Routed::Document(Normalized::Document(doc)) => {
                    self.pending.push(StoreItem::Document(*doc));
                    self.pending_feeds.push(feed);
                }
                Routed::Document(Normalized::Patient(_)) => {
                    unreachable!("route yields documents only")
                }
                Routed::PatientApplied => {
                    self.summary.patient_updates += 1;
                    self.summary.count(feed, "patient");
                }
                Routed::Quarantine(q) => {
                    self.pending.push(StoreItem::Quarantine(q));
                    self.pending_feeds.push(feed);
                }
            }
            if self.pending.len() >= 500 {
                self.flush().await?;
            }
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        flush(
            self.store,
            &mut self.pending,
            &mut self.pending_feeds,
            &mut self.summary,
        )
        .await
    }

    /// Writes what is pending and returns the run's counts.
    pub async fn finish(mut self) -> Result<Summary> {
        self.flush().await?;
        self.summary.seconds = self.started.elapsed().as_secs_f64();
        Ok(self.summary)
    }
}

/// Runs the chain on messages already in memory (the bundled demo feeds).
pub async fn run_chain(
    store: &Store,
    inputs: Vec<(Feed, Vec<u8>)>,
    route_cfg: &RouteConfig,
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
    let mut chain = Chain::new(store, route_cfg);
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

async fn flush(
    store: &Store,
    pending: &mut Vec<StoreItem>,
    feeds: &mut Vec<Feed>,
    summary: &mut Summary,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let outcomes = store.write_batch(pending, &[]).await?;
    for (o, feed) in outcomes.iter().zip(feeds.iter()) {
        let (label, reason) = dmpflow_pipeline::stages::outcome_label(o);
        match o {
            ItemOutcome::Stored => summary.stored += 1,
            ItemOutcome::Replaced { .. } => summary.replaced += 1,
            ItemOutcome::Deleted { .. } => summary.deleted += 1,
            ItemOutcome::Duplicate => summary.duplicates += 1,
            ItemOutcome::Quarantined(_) => summary.quarantined += 1,
            ItemOutcome::PatientUpdated | ItemOutcome::PatientMerged => {
                summary.patient_updates += 1
            }
        }
        if let Some(r) = reason {
            *summary.reasons.entry(r.to_string()).or_default() += 1;
        }
        summary.count(*feed, label);
    }
    pending.clear();
    feeds.clear();
    Ok(())
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
    let route_cfg = RouteConfig {
        accept_test_oids: args.accept_test_oids || settings.accept_test_oids,
    };
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
    let mut chain = Chain::new(&store, &route_cfg);
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
            b.set_message(format!("{} messages", chain.summary.messages));
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
        summary.print();
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
    let route_cfg = RouteConfig {
        accept_test_oids: true,
    };
    let mut summary = run_chain(&store, inputs, &route_cfg, !args.json).await?;
    summary.files = DEMO_FEEDS.len();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        summary.print();
        println!(
            "\nexplore: dmpflow --store {url} documents list --ins <INS>   |   dmpflow --store {url} quarantine list"
        );
    }
    Ok(ExitCode::SUCCESS)
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
