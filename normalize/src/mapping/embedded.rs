//! A finished CDA carried in an HL7 v2 message (PFI "transmission de documents CDA" volet,
//! domain.md §4.2, and the LPS/MSSanté messages built on it): ORU^R01 with one or two CDA
//! XML ED OBX (CDA N1 + N3), or MDM^T02/T10/T04 with TXA. Other ED OBX (mail bodies,
//! attachments) are not documents. The base64 in OBX-5.5 is decoded, checked to be a
//! well-formed CDA R2 `ClinicalDocument` for the patient of PID-3, and its header becomes
//! the DMP metadata (type, class and format: `doc_types`). The CDA itself is passed on
//! unchanged.

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use dmpflow_schemas::reasons::{Reason, Reject};
use dmpflow_schemas::{
    Cda, CdaOrigin, Document, DocumentMeta, Lifecycle, Normalized, PartyRef, PatientIdentity,
};

use super::cda_reader::{Header, Ii, read_header};
use super::common::{Ctx, is_meta_obx, segment_missing, visibility};
use super::doc_types;
use super::pid::{birth_date, patient, pid_segment, sex};
use super::{Config, doc_id, limits};
use crate::hl7::{Message, Segment};

const IDNAT_PS: &str = "1.2.250.1.71.4.2.1";
const INS_OIDS: &[&str] = &[
    "1.2.250.1.213.1.4.8",
    "1.2.250.1.213.1.4.9",
    "1.2.250.1.213.1.4.10",
    "1.2.250.1.213.1.4.11",
];

/// An OBX carrying a document: OBX-2 `ED` whose OBX-5 type^subtype (ED.2^ED.3) say CDA
/// XML, `text^XML` or `application^XML` in any case, and not a MetaDMPMSS line.
///
/// Other ED OBX are not documents (issue #12 item 2): the MSSanté mail body
/// (`^text^^Base64^...`, no subtype, with or without the MetaDMPMSS `CORPSMAIL_PS` code),
/// a PDF or other attachment next to the CDA. They are never decoded, never a second
/// document, and their OBX-11 is not compared with the event; [`attachments`] counts them.
fn is_document_obx(obx: &Segment<'_>) -> bool {
    let ed = obx.field(5);
    obx.field(2).raw().trim().eq_ignore_ascii_case("ED")
        && matches!(
            ed.component(2).raw().trim().to_ascii_lowercase().as_str(),
            "text" | "application"
        )
        && ed.component(3).raw().trim().eq_ignore_ascii_case("XML")
        && !is_meta_obx(obx)
}

/// True when the message carries at least one finished document.
pub fn has_document(msg: &Message<'_>) -> bool {
    msg.segments("OBX").any(|o| is_document_obx(&o))
}

/// The ED OBX of a message that are not documents (mail bodies, attachments): how many,
/// and how much base64 they carry. Sizes only: their content is never read or logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attachments {
    pub count: usize,
    pub base64_bytes: usize,
}

pub fn attachments(msg: &Message<'_>) -> Attachments {
    msg.segments("OBX")
        .filter(|o| o.field(2).raw().trim().eq_ignore_ascii_case("ED") && !is_document_obx(o))
        .fold(Attachments::default(), |a, o| Attachments {
            count: a.count + 1,
            base64_bytes: a.base64_bytes + o.field(5).component(5).raw().len(),
        })
}

/// What a feeder that holds only the CDA (the FHIR ITI-65 Provide, which wraps it into an
/// MDM^T02 for this module) needs from its header: the one patient it names, read and
/// checked exactly as [`map`] reads it (traits, INS OID, a single recordTarget), and the
/// values the message's TXA and OBX-3 repeat. The full checks still run in [`map`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedCda {
    pub patient: PatientIdentity,
    /// ClinicalDocument/id as a DMP uniqueId (`root` or `root^extension`).
    pub unique_id: Option<String>,
    /// ClinicalDocument/code and its codeSystem.
    pub type_code: Option<String>,
    pub type_code_system: Option<String>,
    /// ClinicalDocument/effectiveTime.
    pub effective_time: Option<String>,
}

/// Reads the header of a received CDA: bounded by `cfg` (size, entries), well-formedness
/// checked to the end, one patient with one INS.
pub fn read_received_cda(xml: &str, cfg: &Config) -> Result<ReceivedCda, Reject> {
    limits::check_size(xml.len(), cfg)?;
    let header = read_header(xml, cfg.max_entries)?;
    let asserted = PatientIdentity {
        ins: header.the_ins()?.extension.clone(),
        ..PatientIdentity::default()
    };
    let patient = header.patient(&asserted, &[])?;
    Ok(ReceivedCda {
        patient,
        unique_id: header
            .id
            .as_ref()
            .filter(|i| !i.root.is_empty())
            .map(Ii::as_unique_id),
        type_code: header.code.clone(),
        type_code_system: header.code_system.clone(),
        effective_time: header.effective_time.clone(),
    })
}

pub fn map(ctx: &Ctx<'_>, msg: &Message<'_>) -> Result<Vec<Normalized>, Reject> {
    let pid_patient = patient(msg)?;
    let pid = pid_segment(msg)?;
    let statuses = super::pid::statuses(&pid);
    let orc1 = msg
        .segment("ORC")
        .map(|o| o.field(1).raw().trim().to_string())
        .unwrap_or_default();
    let is_mdm = ctx.msg_type == "MDM";
    let txa = msg.segment("TXA");
    if is_mdm && txa.is_none() {
        return Err(segment_missing("TXA"));
    }
    let replaced = txa
        .map(|t| t.field(13).component(1).decoded().trim().to_string())
        .filter(|s| !s.is_empty());
    let flags = visibility(msg);
    let mut out = Vec::new();
    for (position, obx) in msg
        .segments("OBX")
        .filter(|o| is_document_obx(o))
        .enumerate()
    {
        let position = position as u32;
        let status = obx.field(11).raw().trim();
        let lifecycle = lifecycle(ctx, &orc1, status)?;
        let xml = decode_base64(obx.field(5).component(5).raw(), position, ctx.cfg)?;
        let header = read_header(&xml, ctx.cfg.max_entries)?;
        let cda_patient = header.patient(&pid_patient, &statuses)?;
        let meta = header.into_meta(
            ctx,
            cda_patient,
            lifecycle,
            replaced.clone(),
            flags.clone(),
            position,
        )?;
        out.push(Normalized::Document(Box::new(Document {
            meta,
            cda: Cda::Xml(xml),
            entries: Vec::new(),
        })));
    }
    if out.is_empty() {
        return Err(segment_missing("OBX with an ED document"));
    }
    // The other ED OBX (mail body, attachments) are neither read nor refused: counted once,
    // on the first document, so the runtime can say how many it left aside.
    if let Some(Normalized::Document(first)) = out.first_mut() {
        first.meta.ignored_attachments = u32::try_from(attachments(msg).count).unwrap_or(u32::MAX);
    }
    Ok(out)
}

/// Lifecycle of one carried document (domain.md §3.4).
///
/// - MDM: T02 initial, T10 replace, T04 delete; OBX-11 (when given) must be F, C, D
///   respectively, and ORC-1 (when present) NW, RO, CA.
/// - ORU: ORC-1 NW + OBX-11 F initial, RO + C replace, CA + D delete. ORC-1 `SC` (status
///   changed, used by the ANS examples) or no ORC: OBX-11 alone decides, if the config
///   accepts SC.
fn lifecycle(ctx: &Ctx<'_>, orc1: &str, status: &str) -> Result<Lifecycle, Reject> {
    let inconsistent = |what: &str| Reject::new(Reason::Hl7LifecycleInconsistent, what.to_string());
    let from_status = |s: &str| match s {
        "F" => Some(Lifecycle::Initial),
        "C" => Some(Lifecycle::Replace),
        "D" => Some(Lifecycle::Delete),
        _ => None,
    };
    let from_orc = |o: &str| match o {
        "NW" => Some(Lifecycle::Initial),
        "RO" => Some(Lifecycle::Replace),
        "CA" => Some(Lifecycle::Delete),
        _ => None,
    };
    let orc_known = orc1.is_empty() || (orc1 == "SC" && ctx.cfg.accept_orc_status_changed);
    if ctx.msg_type == "MDM" {
        let by_event = match ctx.event.as_str() {
            "T02" => Lifecycle::Initial,
            "T10" => Lifecycle::Replace,
            _ => Lifecycle::Delete,
        };
        if !status.is_empty() && from_status(status) != Some(by_event) {
            return Err(inconsistent("MSH-9 event and OBX-11 disagree"));
        }
        if !orc_known && from_orc(orc1) != Some(by_event) {
            return Err(inconsistent("MSH-9 event and ORC-1 disagree"));
        }
        return Ok(by_event);
    }
    let by_status =
        from_status(status).ok_or_else(|| inconsistent("OBX-11 of a document is not F, C or D"))?;
    if orc_known {
        return Ok(by_status);
    }
    match from_orc(orc1) {
        Some(l) if l == by_status => Ok(l),
        Some(_) => Err(inconsistent("ORC-1 and OBX-11 disagree")),
        None => Err(inconsistent(
            "ORC-1 of a document message is not NW, RO or CA",
        )),
    }
}

/// OBX-5.5 → the CDA text. Whitespace (line-wrapped base64) is tolerated, padding is
/// optional; the result must be UTF-8 because the pipeline carries the CDA as text.
///
/// The decoded size is bounded by `max_cda_bytes` twice: from the base64 length before
/// decoding (3 bytes per 4 characters, so an oversized document costs no decoding), and
/// exactly after.
fn decode_base64(b64: &str, position: u32, cfg: &Config) -> Result<String, Reject> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let compact: std::borrow::Cow<'_, str> = if b64.bytes().any(|b| b.is_ascii_whitespace()) {
        b64.chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>()
            .into()
    } else {
        b64.into()
    };
    if compact.is_empty() {
        return Err(Reject::new(
            Reason::CdaBase64Invalid,
            format!("OBX-5.5 of document {position} is empty"),
        ));
    }
    limits::check_size((compact.len() / 4 * 3).saturating_sub(2), cfg)?;
    let bytes = ENGINE.decode(compact.as_bytes()).map_err(|_| {
        Reject::new(
            Reason::CdaBase64Invalid,
            format!("OBX-5.5 of document {position} is not valid base64"),
        )
    })?;
    let mut s = String::from_utf8(bytes).map_err(|_| {
        Reject::new(
            Reason::CdaXmlInvalid,
            format!("document {position} is not UTF-8 text"),
        )
    })?;
    if s.starts_with('\u{feff}') {
        s.drain(..3);
    }
    limits::check_size(s.len(), cfg)?;
    Ok(s)
}

fn header_missing(what: &str) -> Reject {
    Reject::new(
        Reason::CdaHeaderMissing,
        format!("CDA header has no {what}"),
    )
}

fn national_id(i: &Ii) -> String {
    if i.extension.is_empty() {
        i.root.clone()
    } else {
        i.extension.clone()
    }
}

impl Header {
    /// The one INS of the one patient the header names (its first `patientRole/id` under
    /// an INS OID), or why there is none.
    fn the_ins(&self) -> Result<&Ii, Reject> {
        if self.record_targets > 1 || self.patient_roles > 1 || self.patients > 1 {
            return Err(Reject::new(
                Reason::CdaPatientAmbiguous,
                "the CDA header has more than one recordTarget/patientRole/patient",
            ));
        }
        let mut all_ins = self
            .patient_ids
            .iter()
            .filter(|i| INS_OIDS.contains(&i.root.as_str()) && !i.extension.is_empty());
        let ins = all_ins
            .next()
            .ok_or_else(|| header_missing("recordTarget/patientRole/id with an INS"))?;
        if all_ins.any(|other| other.extension != ins.extension) {
            return Err(Reject::new(
                Reason::CdaPatientAmbiguous,
                "patientRole/id holds several different INS",
            ));
        }
        Ok(ins)
    }

    /// The patient as the CDA states it, checked against PID-3. A received CDA's INS is the
    /// qualified case (status QUAL), plus whatever PID-32 says.
    ///
    /// One patient only (issue #16 item 2): several recordTargets (or patientRoles, or
    /// patients), or two different INS in patientRole/id, name several people, and filing
    /// the document under any one of them could be the wrong patient →
    /// `cda.patient.ambiguous`. The same INS stated twice is one patient.
    fn patient(&self, pid: &PatientIdentity, pid32: &[String]) -> Result<PatientIdentity, Reject> {
        let ins = self.the_ins()?;
        if ins.extension != pid.ins {
            return Err(Reject::new(
                Reason::CdaPatientMismatch,
                "patientRole/id INS differs from PID-3",
            ));
        }
        let ipp = self
            .patient_ids
            .iter()
            .find(|i| !INS_OIDS.contains(&i.root.as_str()) && !i.extension.is_empty());
        let birth_name = self
            .families
            .iter()
            .find(|(q, _)| q == "BR")
            .or_else(|| self.families.first())
            .map(|(_, f)| f.clone())
            .unwrap_or_default();
        // CI-SIS: `given qualifier="BR"` is the first birth first name, unqualified `given`
        // elements hold the birth first names. Some documents put only the *other* names in
        // the unqualified ones, so the BR name is put first when it is missing.
        let mut first_names: Vec<String> = self
            .givens
            .iter()
            .filter(|(q, _)| q.is_empty())
            .flat_map(|(_, g)| g.split_whitespace().map(str::to_string))
            .collect();
        if let Some((_, br)) = self.givens.iter().find(|(q, _)| q == "BR")
            && first_names.first() != Some(br)
            && !br.is_empty()
        {
            first_names.retain(|g| g != br);
            first_names.insert(0, br.clone());
        }
        let mut identity_status = vec!["QUAL".to_string()];
        identity_status.extend(pid32.iter().filter(|s| *s != "QUAL").cloned());
        Ok(PatientIdentity {
            ins: ins.extension.clone(),
            ins_oid: ins.root.clone(),
            ipp: ipp.map(|i| i.extension.clone()).or_else(|| pid.ipp.clone()),
            ipp_authority: ipp
                .map(|i| i.root.clone())
                .or_else(|| pid.ipp_authority.clone()),
            birth_name,
            first_names,
            birth_date: birth_date(
                self.birth_time.as_deref().unwrap_or(""),
                "CDA patient birthTime",
            )
            .map_err(|_| Reject::new(Reason::CdaHeaderMissing, "CDA birthTime is malformed"))?,
            sex: sex(self.gender.as_deref().unwrap_or("")),
            birth_place: self.birth_county.clone().filter(|s| !s.is_empty()),
            identity_status,
            // Further INS of PID-3 travel on: route holds the document as identity.ambiguous.
            other_ins: pid.other_ins.clone(),
        })
    }

    fn into_meta(
        self,
        ctx: &Ctx<'_>,
        patient: PatientIdentity,
        lifecycle: Lifecycle,
        replaced: Option<String>,
        visibility: Vec<String>,
        position: u32,
    ) -> Result<DocumentMeta, Reject> {
        let id = self
            .id
            .as_ref()
            .filter(|i| !i.root.is_empty())
            .ok_or_else(|| header_missing("id"))?;
        let unique_id = id.as_unique_id();
        doc_id::check(&unique_id, "ClinicalDocument/id")?;
        let type_code = self.code.clone().ok_or_else(|| header_missing("code"))?;
        let creation_time = self
            .effective_time
            .clone()
            .ok_or_else(|| header_missing("effectiveTime"))?;
        // A code outside J07 is no CI-SIS document at all; a J07 type outside this feed's
        // domain is a document for another feed (`documents` takes them all).
        doc_types::check_type(&type_code, self.code_system.as_deref())?;
        if !doc_types::accepted_on(ctx.feed, &type_code) {
            return Err(Reject::new(
                Reason::CdaModelUnsupported,
                format!(
                    "document type {type_code} is not accepted on the {} feed",
                    ctx.feed
                ),
            ));
        }
        let class_code = doc_types::class_code(&type_code);
        let format_code = doc_types::format_code(
            &type_code,
            &self.template_ids,
            self.non_xml_media_type.as_deref(),
        )?;
        let set_id = self
            .set_id
            .as_ref()
            .filter(|i| !i.root.is_empty())
            .map(Ii::as_unique_id)
            // A first version may omit setId: it then equals the document id.
            .unwrap_or_else(|| unique_id.clone());
        doc_id::check(&set_id, "ClinicalDocument/setId")?;
        let version = match self.version.as_deref() {
            None | Some("") => 1,
            Some(v) => v.parse().map_err(|_| {
                Reject::new(Reason::CdaHeaderMissing, "versionNumber is not a number")
            })?,
        };
        let target_unique_id = match lifecycle {
            Lifecycle::Initial => None,
            Lifecycle::Replace => {
                replaced.or_else(|| self.parent_id.as_ref().map(Ii::as_unique_id))
            }
            // A deletion carries the (last version of the) document to delete.
            Lifecycle::Delete => Some(unique_id.clone()),
        };
        if let Some(target) = &target_unique_id {
            doc_id::check(
                target,
                "the replaced document id (TXA-13 or parentDocument/id)",
            )?;
        }
        Ok(DocumentMeta {
            unique_id,
            set_id,
            version,
            lifecycle,
            target_unique_id,
            type_code,
            class_code: class_code.to_string(),
            format_code: format_code.to_string(),
            title: self.title.clone(),
            patient,
            author: PartyRef {
                person_id: self.author_id.as_ref().map(|i| {
                    if i.root == IDNAT_PS {
                        i.extension.clone()
                    } else {
                        national_id(i)
                    }
                }),
                organisation_id: self.author_org.as_ref().map(national_id),
            },
            creation_time,
            service_start: self.service_low.clone(),
            service_stop: self.service_high.clone(),
            confidentiality: self.confidentiality.clone().unwrap_or_else(|| "N".into()),
            visibility,
            practice_setting: self
                .performer_practice_setting
                .clone()
                .or_else(|| self.author_practice_setting.clone()),
            ignored_attachments: 0,
            origin: CdaOrigin::Received,
            source: ctx.source(position),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:lab="urn:oid:1.3.6.1.4.1.19376.1.3.2">
  <templateId root="1.2.250.1.213.1.1.1.55"/>
  <id root="1.2.3" extension="X1"/>
  <code code="11502-2" codeSystem="2.16.840.1.113883.6.1"/>
  <title>CR &amp; bio&#233;</title>
  <effectiveTime value="20240101120000+0100"/>
  <confidentialityCode code="N"/>
  <setId root="1.2.3.9"/>
  <versionNumber value="3"/>
  <recordTarget><patientRole>
    <id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>
    <patient><name><family qualifier="BR">DUPONT</family><given qualifier="BR">Jean</given><given>Jean Paul</given></name>
    <administrativeGenderCode code="M"/><birthTime value="19790328"/>
    <birthplace><place><addr><county>63220</county></addr></place></birthplace></patient>
  </patientRole></recordTarget>
  <author><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234567866"/>
    <representedOrganization><id root="1.2.250.1.71.4.2.2" extension="1120459876"/></representedOrganization>
  </assignedAuthor></author>
  <documentationOf><serviceEvent><effectiveTime><low value="2024"/><high value="2025"/></effectiveTime></serviceEvent></documentationOf>
  <lab:statusCode code="completed"/>
  <component><structuredBody/></component>
</ClinicalDocument>"#;

    #[test]
    fn reads_a_header() {
        let h = read_header(MINI, 5_000).unwrap();
        assert_eq!(h.id.as_ref().unwrap().as_unique_id(), "1.2.3^X1");
        assert_eq!(h.title, "CR & bioé");
        assert_eq!(h.version.as_deref(), Some("3"));
        assert_eq!(h.families, vec![("BR".to_string(), "DUPONT".to_string())]);
        assert_eq!(h.givens.len(), 2);
        assert_eq!(h.birth_county.as_deref(), Some("63220"));
        assert_eq!(h.author_id.as_ref().unwrap().extension, "801234567866");
        assert_eq!(h.service_low.as_deref(), Some("2024"));
        assert_eq!(
            doc_types::format_from_templates(&h.template_ids),
            Some("urn:ihe:lab:xd-lab:2008")
        );
    }

    #[test]
    fn rejects_bad_xml() {
        let code = |s: &str| read_header(s, 5_000).unwrap_err().reason;
        assert_eq!(code("Document medcial"), Reason::CdaXmlInvalid);
        assert_eq!(
            code("<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><b></ClinicalDocument>"),
            Reason::CdaXmlInvalid
        );
        assert_eq!(
            code("<ClinicalDocument xmlns=\"urn:hl7-org:v3\">"),
            Reason::CdaXmlInvalid
        );
        assert_eq!(code("<ClinicalDocument/>"), Reason::CdaNotClinicalDocument);
        assert_eq!(
            code("<html xmlns=\"urn:hl7-org:v3\"/>"),
            Reason::CdaNotClinicalDocument
        );
        assert_eq!(
            code("<ClinicalDocument xmlns=\"urn:hl7-org:v3\"/><x/>"),
            Reason::CdaXmlInvalid
        );
    }

    #[test]
    fn reads_the_patient_of_a_received_cda() {
        let r = read_received_cda(MINI, &Config::default()).unwrap();
        assert_eq!(r.patient.ins, "279035121518989");
        assert_eq!(r.patient.ins_oid, "1.2.250.1.213.1.4.10");
        assert_eq!(r.patient.birth_name, "DUPONT");
        assert_eq!(r.patient.first_names, ["Jean", "Paul"]);
        assert_eq!(r.patient.birth_date, "1979-03-28");
        assert_eq!(r.patient.sex, "M");
        assert_eq!(r.unique_id.as_deref(), Some("1.2.3^X1"));
        assert_eq!(r.type_code.as_deref(), Some("11502-2"));
        let two = MINI.replace(
            "<recordTarget>",
            "<recordTarget><patientRole><id root=\"1.2.250.1.213.1.4.10\" extension=\"1\"/></patientRole></recordTarget><recordTarget>",
        );
        assert_eq!(
            read_received_cda(&two, &Config::default())
                .unwrap_err()
                .reason,
            Reason::CdaPatientAmbiguous
        );
        assert_eq!(
            read_received_cda("<x/>", &Config::default())
                .unwrap_err()
                .reason,
            Reason::CdaNotClinicalDocument
        );
    }

    #[test]
    fn base64() {
        assert_eq!(
            decode_base64("PGE+PC9hPg", 0, &Config::default()).unwrap(),
            "<a></a>"
        );
        assert_eq!(
            decode_base64("PGE+\nPC9hPg==", 0, &Config::default()).unwrap(),
            "<a></a>"
        );
        assert_eq!(
            decode_base64("not base64!", 0, &Config::default())
                .unwrap_err()
                .reason,
            Reason::CdaBase64Invalid
        );
    }
}
