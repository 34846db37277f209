//! Kafka administration from the CLI: creating the design's topics, and loading HL7 files
//! into a feed topic with the durability rule (a file is done when Kafka acknowledged all
//! of its messages).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dmpflow_schemas::{Feed, headers as h};
use rdkafka::admin::{AdminOptions, NewTopic, TopicReplication};
use tokio_util::sync::CancellationToken;

use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::kafka;
use dmpflow_pipeline::runtime::{self, Output};

#[derive(clap::Subcommand)]
pub enum TopicsAction {
    /// Create the feed, documents, routed, quarantine and DLQ topics (existing ones are kept).
    Create {
        /// Partitions per topic (default from settings: 4).
        #[arg(long)]
        partitions: Option<i32>,
        /// Replication factor (3 on the 3-broker stack).
        #[arg(long)]
        replication: Option<i32>,
        /// Retention in ms (-1 = forever).
        #[arg(long)]
        retention_ms: Option<i64>,
    },
    /// List the pipeline's topics as the broker sees them.
    List,
}

pub fn all_topics(settings: &Settings) -> Vec<String> {
    let t = &settings.topics;
    let mut v = t.feeds();
    v.extend([
        t.documents.clone(),
        t.routed.clone(),
        t.quarantine.clone(),
        t.dlq.clone(),
    ]);
    v
}

/// Creates the pipeline's topics; "already exists" is fine (idempotent).
pub async fn create_topics(settings: &Settings) -> Result<Vec<(String, String)>> {
    let admin = kafka::admin(settings)?;
    let t = &settings.topics;
    let retention = t.retention_ms.to_string();
    // Records up to the configured document and message bounds (kafka::limits).
    let max_bytes = kafka::limits::topic_max_message_bytes(settings).to_string();
    let names = all_topics(settings);
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| {
            NewTopic::new(n, t.partitions, TopicReplication::Fixed(t.replication))
                .set("retention.ms", &retention)
                .set("max.message.bytes", &max_bytes)
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .context("asking the broker to create topics")?;
    let mut out = Vec::new();
    for r in results {
        match r {
            Ok(name) => out.push((name, "created".to_string())),
            Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                out.push((name, "exists".to_string()))
            }
            Err((name, e)) => anyhow::bail!("creating topic {name}: {e}"),
        }
    }
    Ok(out)
}

pub async fn topics(settings: &Settings, action: TopicsAction) -> Result<ExitCode> {
    match action {
        TopicsAction::Create {
            partitions,
            replication,
            retention_ms,
        } => {
            let mut s = settings.clone();
            if let Some(p) = partitions {
                s.topics.partitions = p;
            }
            if let Some(r) = replication {
                s.topics.replication = r;
            }
            if let Some(r) = retention_ms {
                s.topics.retention_ms = r;
            }
            for (name, state) in create_topics(&s).await? {
                println!("{name:<24} {state}");
            }
            Ok(ExitCode::SUCCESS)
        }
        TopicsAction::List => {
            // With the operator's [kafka.client]: against a TLS or SASL broker, a client
            // without it could not even ask for the metadata.
            let c = kafka::metadata_client(settings)?;
            // On failure, with the cause librdkafka reported (authentication, TLS).
            let md = kafka::fetch_metadata(&c, Duration::from_secs(10))?;
            let ours = all_topics(settings);
            for t in md
                .topics()
                .iter()
                .filter(|t| ours.iter().any(|o| o == t.name()))
            {
                println!("{:<24} partitions={}", t.name(), t.partitions().len());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(clap::Args)]
pub struct LoadArgs {
    /// Files or directories of HL7 v2 messages (one or many per file, MLLP framing and
    /// \r or \n separators accepted); `-` reads standard input.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Feed topic to load into.
    #[arg(long)]
    pub feed: Feed,
}

/// The input files found, and what could not be read while looking: a bad entry costs
/// one error line, never the rest of the run.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Sorted for a reproducible order; `-` (standard input) where it was named.
    pub files: Vec<PathBuf>,
    /// One line per input or directory entry that could not be read.
    pub errors: Vec<String>,
}

/// Files under the inputs. A directory is walked once however many symbolic links lead to
/// it (by device and inode), so a link loop ends; inside a directory only regular files
/// are taken (a FIFO or a device would block or never end).
pub fn collect_files(inputs: &[PathBuf]) -> Inputs {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt;
    let mut out = Inputs::default();
    let mut seen_dirs: HashSet<(u64, u64)> = HashSet::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            out.files.push(input.clone());
            continue;
        }
        let md = match std::fs::metadata(input) {
            Ok(md) => md,
            Err(e) => {
                out.errors.push(format!("{}: {e}", input.display()));
                continue;
            }
        };
        if !md.is_dir() {
            // A named file is read whatever its name or kind: the operator chose it.
            out.files.push(input.clone());
            continue;
        }
        if !seen_dirs.insert((md.dev(), md.ino())) {
            continue;
        }
        let mut stack = vec![input.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) => {
                    out.errors
                        .push(format!("reading directory {}: {e}", dir.display()));
                    continue;
                }
            };
            for entry in entries {
                let p = match entry {
                    Ok(e) => e.path(),
                    Err(e) => {
                        out.errors
                            .push(format!("reading directory {}: {e}", dir.display()));
                        continue;
                    }
                };
                // Follows a symbolic link to see what it names; a dangling one is an error.
                let md = match std::fs::metadata(&p) {
                    Ok(md) => md,
                    Err(e) => {
                        out.errors.push(format!("{}: {e}", p.display()));
                        continue;
                    }
                };
                if md.is_dir() {
                    if seen_dirs.insert((md.dev(), md.ino())) {
                        stack.push(p);
                    }
                } else if md.is_file() && is_message_file(&p) {
                    out.files.push(p);
                }
            }
        }
    }
    out.files.sort();
    out
}

/// Exit code of a run that found no message at all: a wrong path or an empty directory
/// must not look like a successful run to a script (1 is "some messages failed").
pub const NO_INPUT_EXIT: u8 = 2;

/// Says so on stderr and returns [`NO_INPUT_EXIT`].
pub fn no_input_messages() -> ExitCode {
    eprintln!("error: no input messages found");
    ExitCode::from(NO_INPUT_EXIT)
}

/// In a directory, the files that hold HL7 v2 messages (a named file is always read).
fn is_message_file(p: &Path) -> bool {
    match p.extension().and_then(|e| e.to_str()) {
        None => true,
        Some(ext) => matches!(
            ext.to_ascii_lowercase().as_str(),
            "hl7" | "er7" | "txt" | "msg" | "mllp" | "dat"
        ),
    }
}

pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        use std::io::Read;
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}

/// Splits a file into HL7 messages; framing errors are reported, not dropped.
pub fn split(input: &[u8]) -> (Vec<Vec<u8>>, Vec<String>) {
    let mut messages = Vec::new();
    let mut errors = Vec::new();
    for item in dmpflow_ingest::split_messages(input) {
        match item {
            Ok(m) => messages.push(m.bytes.to_vec()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    (messages, errors)
}

pub async fn load(settings: &Settings, args: LoadArgs) -> Result<ExitCode> {
    let Inputs {
        files,
        errors: mut failures,
    } = collect_files(&args.inputs);
    let producer = kafka::producer(settings)?;
    let topic = settings.topics.feed(args.feed);
    let bar = indicatif::ProgressBar::new(files.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} files, {msg} [{elapsed_precise}]",
        )
        .expect("static template"),
    );
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let (mut sent, mut files_done, mut found) = (0usize, 0usize, 0usize);
    for file in &files {
        let data = match read_input(file) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{}: {e:#}", file.display()));
                bar.inc(1);
                continue;
            }
        };
        let (messages, errors) = split(&data);
        let framing_errors = errors.len();
        for e in errors {
            failures.push(format!("{}: {e}", file.display()));
        }
        let now = runtime::now_ms().to_string();
        // Keyed like the MLLP gateway (INS, else MSH-3^MSH-4), so a patient's messages
        // keep their order whichever way they arrive.
        let outputs: Vec<Output> = messages
            .into_iter()
            .map(|payload| Output {
                topic: topic.clone(),
                key: Some(dmpflow_hl7::keys::key_of_raw(
                    &payload,
                    settings.limits.max_message_bytes,
                )),
                payload,
                headers: vec![
                    (h::FEED, args.feed.as_str().to_string()),
                    (h::INGEST_TIME, now.clone()),
                ],
            })
            .collect();
        let n = outputs.len();
        found += n;
        // A file is done only when Kafka acknowledged every one of its messages.
        let produce = runtime::produce_all(&producer, &outputs, "load", &shutdown);
        match tokio::time::timeout(Duration::from_secs(120), produce).await {
            Ok(Ok(())) => {
                sent += n;
                if framing_errors == 0 {
                    files_done += 1;
                }
            }
            Ok(Err(e)) => failures.push(format!("{}: {e:#}", file.display())),
            Err(_) => failures.push(format!(
                "{}: Kafka did not acknowledge its {n} messages within 120 s",
                file.display()
            )),
        }
        bar.inc(1);
        bar.set_message(format!("{sent} messages acknowledged"));
    }
    bar.finish_and_clear();
    println!(
        "loaded {sent} messages from {files_done}/{} files into {topic} in {:.1}s; {} failures",
        files.len(),
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    for f in &failures {
        println!("  failed: {f}");
    }
    if found == 0 {
        return Ok(no_input_messages());
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue #12: `topics create` creates the documents feed's topic with the others.
    #[test]
    fn topics_create_includes_the_documents_feed() {
        let t = all_topics(&Settings::default());
        assert!(t.iter().any(|n| n == "dmp.feed.documents"), "{t:?}");
        assert!(t.iter().any(|n| n == "dmp.feed.lab"));
    }

    #[test]
    fn collecting_ends_on_link_loops_and_reports_bad_entries() {
        let root = std::env::temp_dir().join(format!("dmpflow-collect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("d/sub")).unwrap();
        std::fs::write(root.join("d/a.hl7"), "MSH|").unwrap();
        std::fs::write(root.join("d/sub/b.hl7"), "MSH|").unwrap();
        std::fs::write(root.join("d/notes.pdf"), "").unwrap();
        std::os::unix::fs::symlink("..", root.join("d/sub/up")).unwrap();
        std::os::unix::fs::symlink(root.join("d"), root.join("d/sub/again")).unwrap();
        std::os::unix::fs::symlink(root.join("none"), root.join("d/gone.hl7")).unwrap();
        let got = collect_files(&[root.join("d"), root.join("missing")]);
        assert_eq!(
            got.files,
            vec![root.join("d/a.hl7"), root.join("d/sub/b.hl7")],
            "each file once, loops not followed twice"
        );
        assert_eq!(got.errors.len(), 2, "{:?}", got.errors);
        assert!(got.errors.iter().any(|e| e.contains("gone.hl7")));
        assert!(got.errors.iter().any(|e| e.contains("missing")));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
