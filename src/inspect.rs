//! `dmpflow normalize`: runs the pure normalize step on files and writes what it yields,
//! so a sender or an operator can see exactly which document and metadata a message gives,
//! or which reject code and why.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use dmpflow_schemas::{Feed, Normalized};

use crate::admin::{collect_files, read_input, split};
use crate::pipeline::{self, Coordinates};

#[derive(clap::Args)]
pub struct NormalizeArgs {
    /// Files or directories of HL7 v2 messages; `-` reads standard input.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output directory: <uniqueId>.xml and <uniqueId>.json per document, patient-*.json per
    /// identity update.
    #[arg(long)]
    pub out: PathBuf,
    /// Feed of the messages; guessed from each message when absent (RDS → pharmacy, ADT →
    /// identity, imaging/cancer document codes, otherwise lab).
    #[arg(long)]
    pub feed: Option<Feed>,
}

/// Guesses a message's feed from MSH-9 and the document codes it carries.
pub fn guess_feed(raw: &[u8]) -> Feed {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(64 * 1024)]);
    let msh9 = text
        .lines()
        .next()
        .and_then(|l| l.split(['\r']).next())
        .and_then(|msh| msh.get(3..))
        .and_then(|rest| rest.split('|').nth(8))
        .unwrap_or("");
    if msh9.starts_with("RDS") {
        Feed::Pharmacy
    } else if msh9.starts_with("ADT") {
        Feed::Identity
    } else if text.contains("18748-4") {
        Feed::Imaging
    } else if text.contains("34794-8") {
        Feed::Cancer
    } else {
        Feed::Lab
    }
}

pub fn normalize(args: NormalizeArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let cfg = dmpflow_normalize::Config::default();
    let files = collect_files(&args.inputs)?;
    let (mut n, mut rejected, mut docs, mut patients) = (0usize, 0usize, 0usize, 0usize);
    for file in &files {
        let data = read_input(file)?;
        let (messages, errors) = split(&data);
        for e in errors {
            rejected += 1;
            println!("{}: framing error: {e}", file.display());
        }
        for (i, raw) in messages.iter().enumerate() {
            n += 1;
            let feed = args.feed.unwrap_or_else(|| guess_feed(raw));
            let position = format!("{}#{}", file.display(), i + 1);
            match pipeline::normalize_message(feed, raw, &Coordinates::default(), &cfg) {
                Ok(items) => {
                    let mut produced = Vec::new();
                    for item in items {
                        match &item {
                            Normalized::Document(d) => {
                                let id = &d.meta.unique_id;
                                std::fs::write(args.out.join(format!("{id}.xml")), &d.cda)?;
                                std::fs::write(
                                    args.out.join(format!("{id}.json")),
                                    serde_json::to_vec_pretty(&d.meta)?,
                                )?;
                                docs += 1;
                                produced.push(format!(
                                    "{} {} {}",
                                    d.meta.type_code,
                                    d.meta.lifecycle.as_str(),
                                    id
                                ));
                            }
                            Normalized::Patient(p) => {
                                patients += 1;
                                let name = format!(
                                    "patient-{}-{}.json",
                                    p.source.control_id.replace(['/', '\\'], "_"),
                                    p.source.position
                                );
                                std::fs::write(
                                    args.out.join(&name),
                                    serde_json::to_vec_pretty(p)?,
                                )?;
                                produced.push(format!("patient update → {name}"));
                            }
                        }
                    }
                    println!(
                        "{position}: {} {feed}: {}",
                        message_type(raw),
                        produced.join(", ")
                    );
                }
                Err(reject) => {
                    rejected += 1;
                    println!(
                        "{position}: {} {feed}: REJECT {} ({})",
                        message_type(raw),
                        reject.reason,
                        reject.detail
                    );
                }
            }
        }
    }
    println!(
        "{n} messages: {docs} documents, {patients} patient updates, {rejected} rejected → {}",
        args.out.display()
    );
    Ok(if rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// MSH-9 of a raw message, for display.
pub fn message_type(raw: &[u8]) -> String {
    let head = String::from_utf8_lossy(&raw[..raw.len().min(512)]);
    head.split(['\r', '\n'])
        .next()
        .and_then(|msh| msh.get(3..))
        .and_then(|rest| rest.split('|').nth(8))
        .map(|t| t.to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_is_guessed_from_the_message_type_and_document_code() {
        assert_eq!(
            guess_feed(b"MSH|^~\\&|A|B|C|D|20240101||RDS^O13|1|P|2.5"),
            Feed::Pharmacy
        );
        assert_eq!(
            guess_feed(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A31|1|P|2.5"),
            Feed::Identity
        );
        assert_eq!(
            guess_feed(b"MSH|^~\\&|A|B|C|D|20240101||MDM^T02|1|P|2.6\rOBX|1|ED|18748-4^CR^LN"),
            Feed::Imaging
        );
        assert_eq!(
            guess_feed(b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5"),
            Feed::Lab
        );
        assert_eq!(
            message_type(b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01^ORU_R01|1"),
            "ORU^R01^ORU_R01"
        );
    }
}
