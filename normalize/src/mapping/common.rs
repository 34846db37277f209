//! What every mapping shares: the message context (sender, control id, type), the
//! deterministic OIDs, coded values, people and organisations, visibility flags and the
//! metadata of generated documents.

use dmpflow_schemas::reasons::{Reason, Reject};
use dmpflow_schemas::{CdaOrigin, DocumentMeta, Feed, Lifecycle, PartyRef, SourceRef};
use sha2::{Digest, Sha256};

use super::Config;
use crate::hl7::{Message, Segment, Value};
use crate::model::{Coded, DocumentHeader, Organisation, Professional};

pub const LOINC: &str = "2.16.840.1.113883.6.1";

/// Message-level facts every mapping needs.
pub struct Ctx<'c> {
    pub feed: Feed,
    /// MSH-3.1^MSH-4.1.
    pub sender: String,
    /// MSH-10.
    pub control_id: String,
    pub msg_type: String,
    pub event: String,
    /// MSH-7.
    pub time: String,
    /// SHA-256 (hex) of the message without MSH-7 (see [`content_hash`]).
    pub content_hash: String,
    pub cfg: &'c Config,
}

impl<'c> Ctx<'c> {
    pub fn new(feed: Feed, msg: &Message<'_>, cfg: &'c Config) -> Result<Self, Reject> {
        let msh = msg
            .segment("MSH")
            .ok_or_else(|| Reject::new(Reason::Hl7MshMissing, "no MSH segment"))?;
        let msg_type = msh.field(9).component(1).decoded().into_owned();
        let event = msh.field(9).component(2).decoded().into_owned();
        if msg_type.is_empty() || event.is_empty() {
            return Err(missing("MSH-9 (message type and event)"));
        }
        let control_id = msh.field(10).decoded().into_owned();
        if control_id.is_empty() {
            return Err(missing("MSH-10 (control id)"));
        }
        Ok(Ctx {
            feed,
            sender: format!(
                "{}^{}",
                msh.field(3).component(1).decoded(),
                msh.field(4).component(1).decoded()
            ),
            control_id,
            msg_type,
            event,
            time: msh.field(7).component(1).raw().to_string(),
            content_hash: content_hash(msg),
            cfg,
        })
    }

    pub fn source(&self, position: u32) -> SourceRef {
        SourceRef {
            feed: Some(self.feed),
            sender: self.sender.clone(),
            control_id: self.control_id.clone(),
            position,
            topic: None,
            partition: None,
            offset: None,
            content_hash: self.content_hash.clone(),
        }
    }

    /// uniqueId of the document at `position` of this message. The content hash is part of
    /// it: a sender that reuses an MSH-10 for other content (a replacement, a deletion)
    /// gets another document, while a resend (same content, new MSH-7) gets the same id.
    pub fn unique_id(&self, position: u32) -> String {
        derived_oid(&[
            "doc",
            &self.sender,
            &self.control_id,
            &position.to_string(),
            &self.content_hash,
        ])
    }

    /// setId shared by every version of the report of one order.
    pub fn set_id(&self, order_id: &str, type_code: &str) -> String {
        derived_oid(&["set", &self.sender, order_id, type_code])
    }
}

/// SHA-256 (hex) of the message's segments, MSH-7 left out: a resend of one message differs
/// from the first sending by its MSH-7 (the time it was sent) at most. Segments are hashed
/// one by one with a CR after each, so the segment terminator the transport used (CR, LF,
/// CRLF) does not count either.
pub fn content_hash(msg: &Message<'_>) -> String {
    let mut h = Sha256::new();
    for seg in msg.all() {
        let raw = seg.raw();
        // MSH-7 as a sub-slice of the segment, to hash what is around it.
        let msh7 = (seg.name() == "MSH")
            .then(|| seg.field(7).raw())
            .and_then(|f| {
                let start = (f.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
                (start + f.len() <= raw.len()).then_some(start..start + f.len())
            });
        match msh7 {
            Some(r) => {
                h.update(&raw.as_bytes()[..r.start]);
                h.update(&raw.as_bytes()[r.end..]);
            }
            None => h.update(raw.as_bytes()),
        }
        h.update(b"\r");
    }
    dmpflow_schemas::cda_body::lower_hex(&h.finalize())
}

pub fn missing(what: &str) -> Reject {
    Reject::new(Reason::Hl7FieldMissing, format!("{what} is empty"))
}

pub fn invalid(what: &str) -> Reject {
    Reject::new(Reason::Hl7FieldInvalid, format!("{what} is malformed"))
}

pub fn segment_missing(what: &str) -> Reject {
    Reject::new(Reason::Hl7SegmentMissing, format!("no {what} segment"))
}

/// A full OID under the ITU-T UUID arc `2.25`: the decimal value of the first 128 bits of
/// SHA-256 over the parts. `2.25.<uuid as integer>` needs no registered root, and hashing
/// (rather than a random UUID) makes the id reproducible from the message.
pub fn derived_oid(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        // A separator so ("ab","c") and ("a","bc") differ.
        h.update([0x1f]);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// HL7 coding-system name (CE.3/CWE.3) → OID. Unknown names are kept as sent (senders
/// sometimes put the OID there directly).
pub fn system_oid(name: &str) -> String {
    match name {
        "LN" | "LOINC" => LOINC.to_string(),
        "SCT" | "SNM" => "2.16.840.1.113883.6.96".to_string(),
        "UCUM" => "2.16.840.1.113883.6.8".to_string(),
        "DCM" => "1.2.840.10008.2.16.4".to_string(),
        "CIP" => "1.2.250.1.213.2.3.2".to_string(),
        "UCD" => "1.2.250.1.213.2.61".to_string(),
        other => other.to_string(),
    }
}

/// A CE/CWE value (code, text, system name → OID).
pub fn coded(v: Value<'_>) -> Coded {
    Coded {
        code: v.component(1).decoded().trim().to_string(),
        display: v.component(2).decoded().trim().to_string(),
        system: system_oid(v.component(3).decoded().trim()),
    }
}

/// LOINC chapters of CR-BIO (the section each battery is filed under).
///
/// The chapter is looked up from the battery code (OBR-4), then from its first result
/// (OBX-3), in a small table of common LOINC codes; anything else is filed under
/// 18719-5 Biochimie, the largest chapter. A lab that needs a precise filing should send
/// the chapter code itself as OBR-4, which is matched first.
pub fn lab_chapter(loinc: &str) -> Option<Coded> {
    const CHAPTERS: &[(&str, &str)] = &[
        ("18717-9", "Banque du sang"),
        ("18718-7", "Protéines, marqueurs tumoraux, vitamines"),
        ("18719-5", "Biochimie"),
        ("18720-3", "Hémostase"),
        ("18721-1", "Suivi thérapeutique"),
        ("18723-7", "Hématologie"),
        ("18725-2", "Microbiologie"),
        ("18727-8", "Sérologie"),
        ("18728-6", "Toxicologie"),
        ("18729-4", "Urines"),
        ("18767-4", "Gaz du sang"),
        ("18769-0", "Antibiogramme"),
    ];
    const TABLE: &[(&str, &str)] = &[
        // Hématologie: blood count, haemoglobin, leucocytes, platelets, ESR.
        ("58410-2", "18723-7"),
        ("57021-8", "18723-7"),
        ("24360-0", "18723-7"),
        ("718-7", "18723-7"),
        ("6690-2", "18723-7"),
        ("789-8", "18723-7"),
        ("4544-3", "18723-7"),
        ("777-3", "18723-7"),
        ("26515-7", "18723-7"),
        ("30341-2", "18723-7"),
        // Hémostase: prothrombin time, INR, aPTT, fibrinogen.
        ("5902-2", "18720-3"),
        ("6301-6", "18720-3"),
        ("34714-6", "18720-3"),
        ("3173-2", "18720-3"),
        ("14979-9", "18720-3"),
        ("3255-7", "18720-3"),
        // Microbiologie: urine and blood cultures.
        ("630-4", "18725-2"),
        ("600-7", "18725-2"),
        ("24356-8", "18725-2"),
        // Sérologie: HBs antigen, HIV, HCV.
        ("5196-1", "18727-8"),
        ("7917-8", "18727-8"),
        ("56888-1", "18727-8"),
        ("16128-1", "18727-8"),
        // Gaz du sang.
        ("24336-0", "18767-4"),
        ("2019-8", "18767-4"),
        ("2703-7", "18767-4"),
        // Marqueurs, vitamines: PSA, ferritin, vitamin D.
        ("2857-1", "18718-7"),
        ("2276-4", "18718-7"),
        ("1989-3", "18718-7"),
    ];
    let chapter = CHAPTERS
        .iter()
        .find(|(c, _)| *c == loinc)
        .map(|(c, _)| *c)
        .or_else(|| TABLE.iter().find(|(c, _)| *c == loinc).map(|(_, ch)| *ch))?;
    let display = CHAPTERS.iter().find(|(c, _)| *c == chapter)?.1;
    Some(Coded {
        code: chapter.to_string(),
        display: display.to_string(),
        system: LOINC.to_string(),
    })
}

pub fn default_chapter() -> Coded {
    lab_chapter("18719-5").expect("Biochimie is in the table")
}

/// An XCN (id, family, given) as a professional. National ids (IdNat_PS) are kept as
/// sent in XCN.1.
pub fn professional(v: Value<'_>) -> Professional {
    Professional {
        id: v.component(1).decoded().trim().to_string(),
        family: v.component(2).decoded().trim().to_string(),
        given: v.component(3).decoded().trim().to_string(),
        specialty: String::new(),
    }
}

/// An NDL (OBR-32 principal result interpreter): its first component is a CNN whose
/// subcomponents are id & family & given.
pub fn interpreter(v: Value<'_>) -> Professional {
    let cnn = v.component(1);
    Professional {
        id: cnn.sub(1).decoded().trim().to_string(),
        family: cnn.sub(2).decoded().trim().to_string(),
        given: cnn.sub(3).decoded().trim().to_string(),
        specialty: String::new(),
    }
}

pub fn some_professional(p: Professional) -> Option<Professional> {
    (!(p.id.is_empty() && p.family.is_empty())).then_some(p)
}

/// The PRT "SB" (send by) participant of the CDA-transmission volet: the sending
/// professional (PRT-5) and their organisation (PRT-8, XON.1 name, XON.10 id).
pub fn sent_by(msg: &Message<'_>) -> Option<(Professional, Organisation)> {
    let prt = msg
        .segments("PRT")
        .find(|p| p.field(4).component(1).raw() == "SB")?;
    let person = professional(prt.field(5));
    let org = prt.field(8);
    let organisation = Organisation {
        id: org.component(10).decoded().trim().to_string(),
        name: org.component(1).decoded().trim().to_string(),
    };
    Some((person, organisation))
}

/// The organisation named by MSH-4 (HD: namespace, universal id), used when nothing better
/// is in the message.
pub fn msh_organisation(msg: &Message<'_>) -> Organisation {
    let msh4 = msg.segment("MSH").map(|m| m.field(4));
    Organisation {
        id: msh4
            .map(|f| {
                let uid = f.component(2).decoded();
                if uid.is_empty() {
                    f.component(1).decoded().into_owned()
                } else {
                    uid.into_owned()
                }
            })
            .unwrap_or_default(),
        name: msh4
            .map(|f| f.component(1).decoded().into_owned())
            .unwrap_or_default(),
    }
}

/// The TRE_A07 visibility codes this pipeline carries, as sent in MetaDMPMSS OBX lines.
const VISIBILITY_CODES: &[&str] = &[
    "MASQUE_PS",
    "INVISIBLE_PATIENT",
    "INVISIBLE_REP_LEGAUX",
    "CONNEXION_SECRETE",
];

/// Visibility flags set to `Y` in the message's MetaDMPMSS OBX lines (routing,
/// acknowledgement and mail-body codes are not visibility and are ignored).
pub fn visibility(msg: &Message<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for obx in msg.segments("OBX") {
        if !is_meta_obx(&obx) {
            continue;
        }
        let id = obx.field(3);
        let code = id.component(1).raw();
        if VISIBILITY_CODES.contains(&code)
            && obx.field(5).component(1).raw() == "Y"
            && !out.iter().any(|c| c == code)
        {
            out.push(code.to_string());
        }
    }
    out
}

/// True for the MetaDMPMSS OBX lines (metadata, not results or documents), whatever the
/// case senders write the coding system in.
pub fn is_meta_obx(obx: &Segment<'_>) -> bool {
    obx.field(3)
        .component(3)
        .raw()
        .trim()
        .eq_ignore_ascii_case("MetaDMPMSS")
}

/// True for an OBX of value type ED (encapsulated data). In a message normalize builds a
/// document from (lab, imaging), an ED is an attachment (a PDF of the report, a mail body):
/// never a result, a report line or a status to reconcile (issue #12 item 2).
pub fn is_ed(obx: &Segment<'_>) -> bool {
    obx.field(2).raw().trim().eq_ignore_ascii_case("ED")
}

/// An HL7 DTM/DT that must start with digits (YYYY[MM[DD[HH...]]]); returns the raw value.
pub fn dtm(v: Value<'_>, what: &str) -> Result<Option<String>, Reject> {
    let s = v.component(1).raw().trim();
    if s.is_empty() {
        return Ok(None);
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits < 4 {
        return Err(invalid(what));
    }
    Ok(Some(s.to_string()))
}

/// Lifecycle → DMP version of a generated document: 1 for an initial (or deleted)
/// document, 2 for a replacement. The store tracks the real sequence per set.
pub fn version_for(l: Lifecycle) -> u32 {
    match l {
        Lifecycle::Replace => 2,
        _ => 1,
    }
}

/// ORC-1 of a generated report (lab, imaging, pharmacy) and the result statuses (OBX-11),
/// checked against each other (domain.md §3.4):
///
/// - NW: results F or P (nothing corrected or deleted) → initial;
/// - RO / XO: no deleted result → replace;
/// - CA: every result (if any) D → delete;
/// - SC, RE or empty (status messages): derived from the results — all D → delete, any
///   C → replace, else initial.
pub fn generated_lifecycle(orc1: &str, statuses: &[&str]) -> Result<Lifecycle, Reject> {
    let any = |s: &str| statuses.contains(&s);
    let inconsistent = || {
        Reject::new(
            Reason::Hl7LifecycleInconsistent,
            "ORC-1 and OBX-11 disagree".to_string(),
        )
    };
    match orc1 {
        "NW" => {
            if any("C") || any("D") {
                Err(inconsistent())
            } else {
                Ok(Lifecycle::Initial)
            }
        }
        "RO" | "XO" => {
            if any("D") {
                Err(inconsistent())
            } else {
                Ok(Lifecycle::Replace)
            }
        }
        "CA" => {
            if statuses.iter().all(|s| *s == "D") {
                Ok(Lifecycle::Delete)
            } else {
                Err(inconsistent())
            }
        }
        "SC" | "RE" | "" => {
            if any("D") {
                if statuses.iter().all(|s| *s == "D") {
                    Ok(Lifecycle::Delete)
                } else {
                    Err(inconsistent())
                }
            } else if any("C") {
                Ok(Lifecycle::Replace)
            } else {
                Ok(Lifecycle::Initial)
            }
        }
        _ => Err(Reject::new(
            Reason::Hl7LifecycleInconsistent,
            "ORC-1 order control is not NW, RO, XO, CA, SC or RE",
        )),
    }
}

/// What a generated document's metadata needs beyond its header.
pub struct DocKind {
    pub type_code: &'static str,
    pub class_code: &'static str,
    pub format_code: &'static str,
    pub title: &'static str,
}

pub const LAB_KIND: DocKind = DocKind {
    type_code: "11502-2",
    class_code: "10",
    format_code: "urn:ihe:lab:xd-lab:2008",
    title: "Compte rendu d'examens biologiques",
};
pub const IMAGING_KIND: DocKind = DocKind {
    type_code: "18748-4",
    class_code: "31",
    format_code: "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013",
    title: "Compte rendu d'imagerie médicale",
};
pub const PHARMACY_KIND: DocKind = DocKind {
    type_code: "60593-1",
    class_code: "43",
    format_code: "urn:ihe:pharm:dis:2010",
    title: "Dispensation médicamenteuse",
};

/// The DMP metadata of a document dmpflow generates, from its header.
pub fn generated_meta(
    ctx: &Ctx<'_>,
    h: &DocumentHeader,
    kind: &DocKind,
    visibility: Vec<String>,
    position: u32,
) -> DocumentMeta {
    DocumentMeta {
        unique_id: h.unique_id.clone(),
        set_id: h.set_id.clone(),
        version: h.version,
        lifecycle: h.lifecycle,
        target_unique_id: h.replaces.clone(),
        type_code: kind.type_code.to_string(),
        class_code: kind.class_code.to_string(),
        format_code: kind.format_code.to_string(),
        title: kind.title.to_string(),
        patient: h.patient.clone(),
        author: PartyRef {
            person_id: (!h.author.id.is_empty()).then(|| h.author.id.clone()),
            organisation_id: (!h.organisation.id.is_empty()).then(|| h.organisation.id.clone()),
        },
        creation_time: h.effective_time.clone(),
        service_start: h.service_start.clone(),
        service_stop: h.service_stop.clone(),
        confidentiality: h.confidentiality.clone(),
        visibility,
        practice_setting: Some(h.practice_setting.clone()),
        ignored_attachments: 0,
        origin: CdaOrigin::Generated,
        source: ctx.source(position),
    }
}

/// The author and organisation of a generated document: the PRT "SB" participant when
/// the message has one, else `fallback` (OBR-32, RXD-10 ...) and the MSH-4 organisation.
pub fn author_and_org(
    msg: &Message<'_>,
    fallback: Option<Professional>,
    what: &str,
) -> Result<(Professional, Organisation), Reject> {
    let sb = sent_by(msg);
    let author = sb
        .as_ref()
        .and_then(|(p, _)| some_professional(p.clone()))
        .or(fallback)
        .ok_or_else(|| missing(what))?;
    let org = sb
        .map(|(_, o)| o)
        .filter(|o| !o.id.is_empty())
        .unwrap_or_else(|| msh_organisation(msg));
    Ok((author, org))
}

/// Everything a generated document's header needs besides the message context.
pub struct HeaderParts {
    pub order_id: String,
    pub kind: &'static DocKind,
    pub lifecycle: Lifecycle,
    pub patient: dmpflow_schemas::PatientIdentity,
    pub author: Professional,
    pub organisation: Organisation,
    /// TRE_R02 secteur d'activité.
    pub sector: &'static str,
    pub effective_time: String,
    pub service_start: Option<String>,
    pub service_stop: Option<String>,
}

/// The header of the generated document at `position`.
pub fn document_header(ctx: &Ctx<'_>, p: HeaderParts, position: u32) -> DocumentHeader {
    DocumentHeader {
        unique_id: ctx.unique_id(position),
        set_id: ctx.set_id(&p.order_id, p.kind.type_code),
        version: version_for(p.lifecycle),
        lifecycle: p.lifecycle,
        // The uniqueId of the previous version came from another message: the store finds
        // it from the setId.
        replaces: None,
        effective_time: p.effective_time,
        patient: p.patient,
        legal_authenticator: p.author.clone(),
        author: p.author,
        organisation: p.organisation,
        facility_sector: p.sector.to_string(),
        // TRE_A01: senders of these feeds are mostly private labs, imaging centres and
        // pharmacies; nothing in the message says otherwise reliably.
        practice_setting: "AMBULATOIRE".to_string(),
        service_start: p.service_start,
        service_stop: p.service_stop,
        confidentiality: "N".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_oids_are_stable_full_oids() {
        let a = derived_oid(&["doc", "LAB^X", "42", "0"]);
        assert_eq!(a, derived_oid(&["doc", "LAB^X", "42", "0"]));
        assert_ne!(a, derived_oid(&["doc", "LAB^X", "42", "1"]));
        assert_ne!(
            derived_oid(&["ab", "c"]),
            derived_oid(&["a", "bc"]),
            "parts are separated"
        );
        assert!(a.starts_with("2.25."));
        let arc = &a[5..];
        assert!(arc.bytes().all(|b| b.is_ascii_digit()) && !arc.starts_with('0'));
        assert!(arc.parse::<u128>().is_ok());
    }

    #[test]
    fn chapters() {
        assert_eq!(lab_chapter("718-7").unwrap().code, "18723-7");
        assert_eq!(lab_chapter("18725-2").unwrap().display, "Microbiologie");
        assert!(lab_chapter("2345-7").is_none());
        assert_eq!(default_chapter().code, "18719-5");
    }

    #[test]
    fn lifecycle_table() {
        use Lifecycle::*;
        assert_eq!(generated_lifecycle("NW", &["F", "P"]).unwrap(), Initial);
        assert_eq!(generated_lifecycle("RO", &["F", "C"]).unwrap(), Replace);
        assert_eq!(generated_lifecycle("CA", &["D"]).unwrap(), Delete);
        assert_eq!(generated_lifecycle("CA", &[]).unwrap(), Delete);
        assert_eq!(generated_lifecycle("SC", &["C", "F"]).unwrap(), Replace);
        assert_eq!(generated_lifecycle("", &["D"]).unwrap(), Delete);
        for (orc, st) in [
            ("NW", &["D"][..]),
            ("NW", &["C"][..]),
            ("RO", &["D"][..]),
            ("CA", &["F"][..]),
            ("SC", &["D", "F"][..]),
            ("ZZ", &[][..]),
        ] {
            assert_eq!(
                generated_lifecycle(orc, st).unwrap_err().reason,
                Reason::Hl7LifecycleInconsistent
            );
        }
    }

    /// Issue #12 item 5: a resend (new MSH-7, other line ends) hashes the same, so it keeps
    /// its uniqueId and is a duplicate; any other change (here one result) hashes apart.
    #[test]
    fn content_hash_ignores_msh7_but_not_the_rest() {
        // The first message of the demo lab feed (LF-terminated segments).
        let lab = include_str!("../../../demo/lab.hl7")
            .split("\n\n")
            .next()
            .expect("a message");
        const LAB_MSH7: &str = "DMP-HOST|20241101101600|";
        let source =
            |raw: &str| match &crate::normalize(Feed::Lab, raw.as_bytes(), &Config::default())
                .expect("the lab message maps")[0]
            {
                dmpflow_schemas::Normalized::Document(d) => {
                    (d.meta.source.clone(), d.meta.unique_id.clone())
                }
                other => panic!("not a document: {other:?}"),
            };
        let (first, first_id) = source(lab);
        assert_eq!(first.content_hash.len(), 64);
        assert!(first.content_hash.bytes().all(|b| b.is_ascii_hexdigit()));

        let resent = lab.replace(LAB_MSH7, "DMP-HOST|20241101131645|");
        let no_msh7 = lab.replace(LAB_MSH7, "DMP-HOST||");
        let with_cr = lab.replace('\n', "\r");
        for same in [&resent, &no_msh7, &with_cr] {
            let (s, id) = source(same);
            assert_eq!(s.content_hash, first.content_hash);
            assert_eq!(id, first_id, "a resend keeps its uniqueId");
        }
        let other_result = lab.replace("||143.43|", "||150.00|");
        let other_name = lab.replace("MICHEL^PIERRE^PIERRE", "MICHEL^PIERRE^PIERRA");
        let other_msh = lab.replace("|DMPFLOW|", "|DMPFLOW2|");
        assert!(![&other_result, &other_name, &other_msh].contains(&&lab.to_string()));
        for other in [other_result, other_name, other_msh] {
            let (s, id) = source(&other);
            assert_ne!(s.content_hash, first.content_hash);
            assert_ne!(id, first_id, "same MSH-10, other content: another document");
            assert_eq!(s.control_id, first.control_id);
        }
    }
}
