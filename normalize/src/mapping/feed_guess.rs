//! Which feed a message belongs to, when the sender did not say (`dmpflow normalize` and
//! `dmpflow process` without `--feed`): MSH-9 for pharmacy and identity, otherwise the
//! evidence its segments carry. A message with no evidence, or evidence of two feeds, is
//! not guessed: a wrong guess writes the wrong document model.

use dmpflow_hl7::Msh;
use dmpflow_schemas::Feed;

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
    // The header through the one tolerant MSH reader (MSH-1 and MSH-2 as the sender set
    // them, MSH-18's charset); the other segments as text, split on those separators.
    let msh = Msh::read(raw);
    let field_sep = msh
        .as_ref()
        .map_or('|', |m| char::from(m.field_separator()));
    let comp_sep = msh.as_ref().map_or('^', Msh::component_separator);
    let msh9 = msh.as_ref().map(|m| m.text(9)).unwrap_or_default();
    let message_type = msh.as_ref().map(|m| m.message_type()).unwrap_or_default();
    let message_type = message_type.trim();
    let text = String::from_utf8_lossy(&raw[..raw.len().min(256 * 1024)]);
    // The MSH line is the first; the evidence is in the segments after it.
    let segments = text.split(['\r', '\n']).filter(|s| !s.is_empty()).skip(1);
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
    let shown = if message_type.is_empty() { "?" } else { &*msh9 };
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

/// MSH-9 of a raw message, for display.
pub fn message_type(raw: &[u8]) -> String {
    Msh::read(raw)
        .map(|msh| msh.text(9).into_owned())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "?".into())
}
