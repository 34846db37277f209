//! `dmpflow normalize`: runs the pure normalize step on files and writes what it yields,
//! so a sender or an operator can see exactly which document and metadata a message gives,
//! or which reject code and why.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use dmpflow_schemas::{Feed, Normalized};

use crate::admin::{collect_files, no_input_messages, read_input};
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

/// Why a message's feed was not guessed: the operator passes `--feed`. Says which evidence
/// was seen (codes and segment names only, never patient data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedUnknown {
    message_type: String,
    why: String,
}

impl std::fmt::Display for FeedUnknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot tell the feed of this {} message ({}): pass --feed {}",
            self.message_type,
            self.why,
            Feed::ALL.map(Feed::as_str).join("|")
        )
    }
}

impl std::error::Error for FeedUnknown {}

/// LOINC codes of imaging reports and their sections: a report (18748-4), findings
/// (18782-3), impression (19005-8), comparison (18834-2), procedure description (55111-9),
/// reason for study (18785-6), key images (55113-5), prior procedures (55114-3).
const IMAGING_CODES: &[&str] = &[
    "18748-4", "18782-3", "19005-8", "18834-2", "55111-9", "18785-6", "55113-5", "55114-3",
];
/// OBR-24 (diagnostic service section, HL7 table 0074, and DICOM modalities) of imaging.
const IMAGING_SECTIONS: &[&str] = &[
    "RAD", "RX", "CT", "MR", "NMR", "NMS", "US", "CUS", "OUS", "VUS", "CR", "DX", "MG", "NM", "PT",
    "RF", "XA", "IO", "PX", "BMD",
];
/// OBR-24 of laboratory sections (HL7 table 0074).
const LAB_SECTIONS: &[&str] = &[
    "LAB", "CH", "HM", "MB", "MCB", "MYC", "PAR", "SR", "IMM", "BLB", "SP", "CP", "TX", "VR",
    "URN", "BG", "CG", "HLA",
];
/// The CR-BIO document code, and the RCP (cancer-care) form code.
const LAB_DOCUMENT: &str = "11502-2";
const CANCER_DOCUMENT: &str = "34794-8";
/// Root of the UIDs DICOM defines (SOP classes, transfer syntaxes): an OBX value under it
/// references DICOM objects.
const DICOM_ROOT: &str = "1.2.840.10008.";

/// Guesses a message's feed: MSH-9 for pharmacy (RDS/RDE) and identity (ADT); otherwise
/// the evidence the segments carry, read field by field (never a substring of the whole
/// message, which an embedded document or a free text may contain):
/// * imaging: a ZDS segment, an imaging LOINC code (see `IMAGING_CODES`), a DICOM-coded
///   observation (`DCM`, e.g. `113014` DICOM Study), an OBX value under the DICOM UID root,
///   an imaging OBR-24;
/// * laboratory: a CR-BIO code (11502-2), a numeric or structured result (NM, SN, CQ, NR),
///   units or a reference range, an SPM specimen, a laboratory OBR-24;
/// * cancer care: the RCP form code (34794-8).
///
/// Exactly one kind of evidence gives its feed. None, or several (an ORU whose OBR-4 is a
/// CT exam code and whose OBX hold numeric results), is an error that says to pass
/// `--feed`: a wrong guess writes the wrong document model (a CR-BIO of a radiology report).
pub fn guess_feed(raw: &[u8]) -> Result<Feed, FeedUnknown> {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(256 * 1024)]);
    let mut segments = text.split(['\r', '\n']).filter(|s| !s.is_empty());
    let msh = segments.next().unwrap_or("");
    let mut chars = msh.chars().skip(3);
    let field_sep = chars.next().unwrap_or('|');
    let comp_sep = chars.next().unwrap_or('^');
    let msh9 = msh.split(field_sep).nth(8).unwrap_or("");
    let message_type = msh9.split(comp_sep).next().unwrap_or("").trim();
    if matches!(message_type, "RDS" | "RDE") {
        return Ok(Feed::Pharmacy);
    }
    if message_type == "ADT" {
        return Ok(Feed::Identity);
    }
    // Only ORU and MDM carry documents; any other type (ACK, the MSSanté ZAM business
    // acknowledgements, ...) is refused alike by every document feed, which names it
    // (hl7.message_type.unsupported).
    if !matches!(message_type, "ORU" | "MDM") {
        return Ok(Feed::Lab);
    }
    let mut ev = Evidence::default();
    let mut content = false;
    let code_of = |field: &str| -> (String, String) {
        let mut c = field.split(comp_sep);
        let code = c.next().unwrap_or("").trim().to_string();
        let system = c.nth(1).unwrap_or("").trim().to_string();
        (code, system)
    };
    for seg in segments {
        let f: Vec<&str> = seg.split(field_sep).collect();
        let field = |i: usize| f.get(i).copied().unwrap_or("").trim();
        content |= matches!(f[0], "OBR" | "OBX");
        match f[0] {
            "ZDS" => ev.imaging.push("ZDS segment".into()),
            "SPM" => ev.lab.push("SPM segment".into()),
            "OBR" => {
                let (code, system) = code_of(field(4));
                ev.code(&code, &system);
                let section = field(24).split(comp_sep).next().unwrap_or("");
                if IMAGING_SECTIONS.contains(&section) {
                    ev.imaging.push(format!("OBR-24 {section}"));
                } else if LAB_SECTIONS.contains(&section) {
                    ev.lab.push(format!("OBR-24 {section}"));
                }
            }
            "OBX" => {
                let (code, system) = code_of(field(3));
                // Mail and DMP flags (MetaDMPMSS) say nothing of the feed.
                if system == "MetaDMPMSS" {
                    continue;
                }
                ev.code(&code, &system);
                if field(5)
                    .split(comp_sep)
                    .any(|c| c.trim().starts_with(DICOM_ROOT))
                {
                    ev.imaging.push("DICOM UID".into());
                }
                let kind = field(2);
                if matches!(kind, "NM" | "SN" | "CQ" | "NR") {
                    ev.lab.push(format!("{kind} result"));
                } else if !system.eq_ignore_ascii_case("DCM")
                    && (!field(6).is_empty() || !field(7).is_empty())
                {
                    ev.lab.push("units or reference range".into());
                }
            }
            _ => {}
        }
    }
    let kinds: Vec<(Feed, &Vec<String>)> = [
        (Feed::Imaging, &ev.imaging),
        (Feed::Lab, &ev.lab),
        (Feed::Cancer, &ev.cancer),
    ]
    .into_iter()
    .filter(|(_, e)| !e.is_empty())
    .collect();
    let shown = if message_type.is_empty() { "?" } else { msh9 };
    match kinds.as_slice() {
        [(feed, _)] => Ok(*feed),
        // No OBR and no OBX: no feed can make a document of it, and the lab mapping names
        // what is wrong (a missing segment, a charset) as well as any other.
        [] if !content => Ok(Feed::Lab),
        [] => Err(FeedUnknown {
            message_type: shown.to_string(),
            why: "no imaging, laboratory or cancer-care code, segment or result".into(),
        }),
        several => Err(FeedUnknown {
            message_type: shown.to_string(),
            why: several
                .iter()
                .map(|(feed, e)| {
                    let mut e = (*e).clone();
                    e.sort();
                    e.dedup();
                    format!("{feed}: {}", e.join(", "))
                })
                .collect::<Vec<_>>()
                .join("; "),
        }),
    }
}

/// What a message shows of each feed, as short labels for the error message.
#[derive(Default)]
struct Evidence {
    imaging: Vec<String>,
    lab: Vec<String>,
    cancer: Vec<String>,
}

impl Evidence {
    /// An observation or order code (OBR-4, OBX-3) and its coding system.
    fn code(&mut self, code: &str, system: &str) {
        if IMAGING_CODES.contains(&code) {
            self.imaging.push(format!("code {code}"));
        } else if system.eq_ignore_ascii_case("DCM") {
            self.imaging.push(format!("DICOM code {code}"));
        } else if code == LAB_DOCUMENT {
            self.lab.push(format!("code {code}"));
        } else if code == CANCER_DOCUMENT {
            self.cancer.push(format!("code {code}"));
        }
    }
}

/// The feed a flag names, else the guessed one.
pub fn feed_of(flag: Option<Feed>, raw: &[u8]) -> Result<Feed, FeedUnknown> {
    flag.map_or_else(|| guess_feed(raw), Ok)
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
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
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

    const MSH: &str = "MSH|^~\\&|A|B|C|D|20240101||";

    fn guess(rest: &str) -> Result<Feed, FeedUnknown> {
        guess_feed(format!("{MSH}{rest}").as_bytes())
    }

    #[test]
    fn feed_is_guessed_from_the_message_type_and_document_code() {
        assert_eq!(guess("RDS^O13|1|P|2.5"), Ok(Feed::Pharmacy));
        assert_eq!(guess("ADT^A31|1|P|2.5"), Ok(Feed::Identity));
        assert_eq!(
            guess("MDM^T02|1|P|2.6\rOBX|1|ED|18748-4^CR^LN"),
            Ok(Feed::Imaging)
        );
        assert_eq!(
            guess("MDM^T02|1|P|2.6\rOBX|1|ED|34794-8^RCP^LN||^text^XML^Base64^PD94"),
            Ok(Feed::Cancer)
        );
        assert_eq!(
            guess(
                "ORU^R01|1|P|2.5\rOBR|1|C1||24362-6^Iono^LN\rOBX|1|NM|2823-3^K^LN||4.1|mmol/L|3.5-5.1|N|||F"
            ),
            Ok(Feed::Lab)
        );
        assert_eq!(
            message_type(b"MSH|^~\\&|A|B|C|D|20240101||ORU^R01^ORU_R01|1"),
            "ORU^R01^ORU_R01"
        );
    }

    /// Issue #12 item 4: an imaging ORU whose OBR-4 is an exam code (24627-2, CT thorax)
    /// and whose report lines carry imaging section codes was guessed "lab" and written
    /// as a CR-BIO.
    #[test]
    fn an_imaging_oru_is_recognised_by_its_codes_segments_and_uids() {
        let oru = "ORU^R01^ORU_R01|1|P|2.5\rPID|1\rOBR|1|R1||24627-2^CT Thorax^LN";
        for evidence in [
            "OBX|1|TX|18782-3^Findings^LN||Pas d'anomalie.||||||F",
            "OBX|1|TX|19005-8^Impression^LN||Examen normal.||||||F",
            "OBX|1|TX|18748-4^CR imagerie^LN||Examen normal.||||||F",
            "OBX|1|ST|113014^DICOM Study^DCM||1.2.250.1.999.2.1.7||||||F",
            "OBX|1|RP|STUDY^Study^L||1.2.840.10008.5.1.4.1.1.2^DICOM||||||F",
            "ZDS|1.2.250.1.999.2.1.7^RIS^Application^DICOM",
        ] {
            assert_eq!(
                guess(&format!("{oru}\r{evidence}")),
                Ok(Feed::Imaging),
                "{evidence}"
            );
        }
        // OBR-24 as a modality.
        assert_eq!(
            guess(
                "ORU^R01|1|P|2.5\rOBR|1|R1||24627-2^CT^LN||||||||||||||||||||CT|F\rOBX|1|TX|X^Y^L||text||||||F"
            ),
            Ok(Feed::Imaging)
        );
        // A lab ORU with the CR-BIO code and the ANS-style MetaDMPMSS lines stays lab.
        assert_eq!(
            guess(
                "ORU^R01|1|P|2.5\rOBR|1|C||11502-2^CR bio^LN\rOBX|1|ED|11502-2^CR^LN||^TEXT^XML^Base64^PD94\rOBX|2|CE|MASQUE_PS^M^MetaDMPMSS||N^^HL70136||||||F"
            ),
            Ok(Feed::Lab)
        );
    }

    #[test]
    fn an_ambiguous_message_is_an_error_asking_for_the_feed_not_a_guess() {
        // Nothing tells lab from imaging: text lines under local codes.
        let none = guess("ORU^R01|1|P|2.5\rOBR|1|R1||24627-2^CT Thorax^LN\rOBX|1|TX|TXT^Texte^L||Examen normal.||||||F")
            .unwrap_err();
        let text = none.to_string();
        assert!(text.contains("pass --feed"), "{text}");
        assert!(text.contains("ORU^R01"), "{text}");
        // Evidence of two feeds: a ZDS and numeric results.
        let both = guess("ORU^R01|1|P|2.5\rOBR|1|R1||24627-2^CT^LN\rZDS|1.2.3^R^Application^DICOM\rOBX|1|NM|2823-3^K^LN||4.1|mmol/L|3.5-5.1|N|||F")
            .unwrap_err()
            .to_string();
        assert!(both.contains("pass --feed"), "{both}");
        assert!(
            both.contains("ZDS segment") && both.contains("NM result"),
            "{both}"
        );
        // A code inside a report's text is not evidence: fields are read, not the bytes.
        let quoted = guess(
            "ORU^R01|1|P|2.5\rOBR|1|R1||X^Y^L\rOBX|1|TX|TXT^T^L||voir 18748-4 et 1.2.840.10008||||||F",
        );
        assert!(quoted.is_err(), "{quoted:?}");
        // Nothing to make a document of: lab's mapping says what is missing or refused.
        assert_eq!(guess("ORU^R01|1|P|2.5\rPID|1||x"), Ok(Feed::Lab));
        assert_eq!(
            guess("ZAM^Z01^ZAM_Z01|1|P|2.5\rOBX|1|CE|X^Y^L||N||||||F"),
            Ok(Feed::Lab)
        );
        // A flag is never second-guessed.
        assert_eq!(feed_of(Some(Feed::Lab), b"MSH|^~\\&|A"), Ok(Feed::Lab));
    }

    /// Every message of the bundled demo and of the ANS examples is guessed as the feed it
    /// belongs to (the demo files are named after their feed).
    #[test]
    fn the_demo_and_ans_examples_are_guessed_right() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for feed in [
            Feed::Lab,
            Feed::Imaging,
            Feed::Pharmacy,
            Feed::Cancer,
            Feed::Identity,
        ] {
            let data = std::fs::read(root.join(format!("demo/{feed}.hl7"))).unwrap();
            let mut n = 0;
            for m in dmpflow_ingest::split_messages(&data) {
                let m = m.unwrap();
                assert_eq!(guess_feed(m.bytes), Ok(feed), "demo {feed} message {n}");
                n += 1;
            }
            assert!(n > 0, "demo/{feed}.hl7");
        }
        let ans = root.join("../shared/hl7v2-examples");
        for (dir, feed) in [("ORU", Feed::Lab), ("MDM", Feed::Imaging)] {
            let mut n = 0;
            for case in std::fs::read_dir(ans.join(dir)).unwrap() {
                let case = case.unwrap().path();
                if !case.is_dir() {
                    continue;
                }
                for f in std::fs::read_dir(&case).unwrap() {
                    let f = f.unwrap().path();
                    let name = f.file_name().unwrap().to_string_lossy().into_owned();
                    if !name.starts_with("message_") || !name.ends_with(".er7") {
                        continue;
                    }
                    let data = std::fs::read(&f).unwrap();
                    assert_eq!(guess_feed(&data), Ok(feed), "{name}");
                    n += 1;
                }
            }
            assert!(n > 0, "no ANS {dir} example");
        }
    }
}
