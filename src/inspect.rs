//! `dmpflow normalize`: runs the pure normalize step on files and writes what it yields,
//! so a sender or an operator can see exactly which document and metadata a message gives,
//! or which reject code and why.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use dmpflow_schemas::{Feed, Normalized};

use crate::admin::{collect_files, no_input_messages, read_input};
pub use dmpflow_normalize::mapping::feed_guess::{feed_of, message_type};
use dmpflow_pipeline::chain::{self as pipeline, Coordinates};

#[derive(clap::Args)]
pub struct NormalizeArgs {
    /// Files or directories of HL7 v2 messages; `-` reads standard input.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output directory: <uniqueId>.xml and <uniqueId>.json per document, patient-*.json per
    /// identity update. An id that is not a plain file name is written under a sanitized
    /// name with a digest of the id (`name~0123456789abcdef.xml`), always inside this
    /// directory, never through a symbolic link.
    #[arg(long)]
    pub out: PathBuf,
    /// Feed of the messages; guessed from each message when absent (RDS → pharmacy, ADT →
    /// identity; imaging, laboratory or cancer-care codes and segments otherwise): a message
    /// with no evidence, or evidence of two feeds, is an error line asking for --feed.
    #[arg(long)]
    pub feed: Option<Feed>,
}

pub fn normalize(args: NormalizeArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let cfg = dmpflow_normalize::Config::default();
    let inputs = collect_files(&args.inputs);
    let mut c = Counts::default();
    for e in &inputs.errors {
        c.errors += 1;
        println!("{e}");
    }
    for file in &inputs.files {
        c.files += 1;
        // One file at a time: memory holds the largest file, not all of them.
        let data = match read_input(file) {
            Ok(d) => d,
            Err(e) => {
                c.errors += 1;
                println!("{}: ERROR {e:#}", file.display());
                continue;
            }
        };
        let mut i = 0;
        for item in dmpflow_ingest::split_messages(&data) {
            let raw = match item {
                Ok(m) => m.bytes,
                Err(e) => {
                    c.rejected += 1;
                    println!("{}: framing error: {e}", file.display());
                    continue;
                }
            };
            i += 1;
            c.messages += 1;
            let position = format!("{}#{i}", file.display());
            normalize_one(&args, &cfg, raw, &position, &mut c);
        }
    }
    println!(
        "{} files, {} messages: {} documents, {} patient updates, {} skipped, {} rejected, {} errors → {}",
        c.files,
        c.messages,
        c.docs,
        c.patients,
        c.skipped,
        c.rejected,
        c.errors,
        args.out.display()
    );
    if c.messages == 0 {
        return Ok(no_input_messages());
    }
    Ok(if c.rejected == 0 && c.errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What a `normalize` run did, for its summary line.
#[derive(Default)]
struct Counts {
    files: usize,
    messages: usize,
    docs: usize,
    patients: usize,
    /// Messages with nothing for the DMP (`Reason::is_skip`): not errors.
    skipped: usize,
    /// Messages normalize refused, and framing errors.
    rejected: usize,
    /// Inputs that could not be read and outputs that could not be written.
    errors: usize,
}

/// Normalizes one message and writes what it yields; any failure is one printed line.
fn normalize_one(
    args: &NormalizeArgs,
    cfg: &dmpflow_normalize::Config,
    raw: &[u8],
    position: &str,
    c: &mut Counts,
) {
    let feed = match feed_of(args.feed, raw) {
        Ok(feed) => feed,
        Err(e) => {
            c.errors += 1;
            println!("{position}: ERROR {e}");
            return;
        }
    };
    let items = match pipeline::normalize_message(feed, raw, &Coordinates::default(), cfg) {
        Ok(items) => items,
        Err(reject) if reject.reason.is_skip() => {
            c.skipped += 1;
            println!(
                "{position}: {} {feed}: SKIP {} ({})",
                message_type(raw),
                reject.reason,
                reject.detail
            );
            return;
        }
        Err(reject) => {
            c.rejected += 1;
            println!(
                "{position}: {} {feed}: REJECT {} ({})",
                message_type(raw),
                reject.reason,
                reject.detail
            );
            return;
        }
    };
    let mut produced = Vec::new();
    for item in items {
        let written = match &item {
            Normalized::Document(d) => {
                let id = &d.meta.unique_id;
                let stem = safe_file_stem(id);
                let meta = serde_json::to_vec_pretty(&d.meta).map_err(std::io::Error::other);
                // Straight from normalize the body is its XML (`xml()` would inflate a packed one).
                let cda = d.cda.xml().map_err(std::io::Error::other);
                cda.and_then(|cda| write_inside(&args.out, &format!("{stem}.xml"), cda.as_bytes()))
                    .and_then(|()| write_inside(&args.out, &format!("{stem}.json"), &meta?))
                    .map(|()| {
                        c.docs += 1;
                        let shown = if stem == *id {
                            String::new()
                        } else {
                            format!(" → {stem}.xml")
                        };
                        format!(
                            "{} {} {}{shown}",
                            d.meta.type_code,
                            d.meta.lifecycle.as_str(),
                            id.escape_debug()
                        )
                    })
            }
            Normalized::Patient(p) => {
                let name = format!(
                    "{}.json",
                    safe_file_stem(&format!(
                        "patient-{}-{}",
                        p.source.control_id, p.source.position
                    ))
                );
                serde_json::to_vec_pretty(p)
                    .map_err(std::io::Error::other)
                    .and_then(|json| write_inside(&args.out, &name, &json))
                    .map(|()| {
                        c.patients += 1;
                        format!("patient update → {name}")
                    })
            }
        };
        match written {
            Ok(line) => produced.push(line),
            Err(e) => {
                c.errors += 1;
                produced.push(format!("ERROR writing an output: {e}"));
            }
        }
    }
    println!(
        "{position}: {} {feed}: {}",
        message_type(raw),
        produced.join(", ")
    );
}

/// Longest file stem [`safe_file_stem`] keeps of an id (a file name is at most 255 bytes;
/// the digest, extension and temporary prefix take the rest).
const MAX_STEM: usize = 120;

/// A file stem for an id that is always one plain file name: an id made of letters,
/// digits, `.`, `-`, `_` and `^` (every valid document id) is kept as is; any other id
/// (a path such as `../../x` or `/tmp/x`, a control character, a leading dot, more than
/// [`MAX_STEM`] bytes) becomes its sanitized head, `~` and 16 hex digits of the SHA-256 of
/// the whole id. `~` never appears in a kept id, so two ids never share a name.
pub fn safe_file_stem(id: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '^');
    if !id.is_empty() && id.len() <= MAX_STEM && !id.starts_with('.') && id.chars().all(plain) {
        return id.to_string();
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    let hex = dmpflow_schemas::cda_body::lower_hex(&digest[..8]);
    let head: String = id
        .chars()
        .map(|c| if plain(c) { c } else { '_' })
        .skip_while(|&c| c == '.')
        .take(MAX_STEM - 17)
        .collect();
    format!("{head}~{hex}")
}

/// Writes `name` (one plain file name) inside `dir` without ever following a symbolic
/// link: the bytes go to a new temporary file (created exclusively, which refuses an
/// existing link) then renamed over `name` (which replaces a link, not its target).
fn write_inside(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.len() <= 255 - 24;
    if !plain {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a plain file name",
        ));
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover of an interrupted run (or a planted link): remove the entry itself.
    let _ = std::fs::remove_file(&tmp);
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, dir.join(name)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stems_are_plain_names_and_distinct() {
        // Valid document ids keep their name.
        for id in ["1.2.250.1.999.3.1", "1.2.250.1.999^DOC-7_a", "2.25.12345"] {
            assert_eq!(safe_file_stem(id), id);
        }
        let long = format!("1.2.{}", "3".repeat(400));
        let hostile = [
            "../../x",
            "/tmp/x",
            "..",
            ".hidden",
            "",
            "a/b",
            "a\\b",
            "a\0b",
            "x\ny",
            long.as_str(),
        ];
        let mut seen = std::collections::HashSet::new();
        for id in hostile {
            let stem = safe_file_stem(id);
            assert!(
                !stem.is_empty()
                    && !stem.starts_with('.')
                    && stem.len() <= MAX_STEM
                    && stem
                        .chars()
                        .all(|c| c.is_ascii_graphic() && c != '/' && c != '\\'),
                "{id:?} -> {stem:?}"
            );
            assert!(stem.contains('~'), "{id:?} -> {stem:?}");
            assert!(seen.insert(stem), "{id:?} shares a name");
        }
        // Two ids sanitized alike still get different names.
        assert_ne!(safe_file_stem("a/b"), safe_file_stem("a:b"));
    }

    #[test]
    fn outputs_never_follow_a_planted_link() {
        let dir = std::env::temp_dir().join(format!("dmpflow-inspect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let out = dir.join("out");
        std::fs::create_dir_all(&out).unwrap();
        let _ = std::fs::remove_file(out.join("doc.xml"));
        std::os::unix::fs::symlink(&victim, out.join("doc.xml")).unwrap();
        write_inside(&out, "doc.xml", b"<x/>").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let md = std::fs::symlink_metadata(out.join("doc.xml")).unwrap();
        assert!(md.file_type().is_file());
        assert_eq!(std::fs::read(out.join("doc.xml")).unwrap(), b"<x/>");
        for bad in ["../x", "/tmp/x", ".x", ""] {
            assert!(write_inside(&out, bad, b"").is_err(), "{bad}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
