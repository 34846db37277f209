//! The official ANS HL7 v2 examples (../shared/hl7v2-examples) through `normalize`: the
//! `_Base64` variants give documents with the right lifecycle, target and visibility; the
//! variants whose base64 is a placeholder sentence are refused as not XML. Variations of
//! the examples cover the embedded-CDA reject codes.

use base64::Engine;
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{CdaOrigin, Document, Feed, Lifecycle, Normalized};

fn example(rel: &str) -> Vec<u8> {
    let p = format!(
        "{}/../../shared/hl7v2-examples/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    // A missing example must fail the test, never skip it.
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

const MDM_INIT_B64: &str = "MDM/Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1_Base64.er7";
const ORU_RPLC_B64: &str = "ORU/Remplacement ORU/message_ORU_CR_Bio_RPLC_N1_Base64_N3_Base64.er7";
const ORU_DEL_B64: &str = "ORU/Suppression ORU/message_ORU_CR_Bio_DEL_N1_Base64_N3_Base64.er7";

fn docs(feed: Feed, raw: &[u8]) -> Vec<Document> {
    normalize(feed, raw, &Config::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|n| match n {
            Normalized::Document(d) => *d,
            other => panic!("expected a document, got {other:?}"),
        })
        .collect()
}

fn reason(feed: Feed, raw: &[u8]) -> Reason {
    normalize(feed, raw, &Config::default())
        .expect_err("must be refused")
        .reason
}

#[test]
fn mdm_initial_imaging_report() {
    let d = docs(Feed::Imaging, &example(MDM_INIT_B64));
    assert_eq!(d.len(), 1);
    let m = &d[0].meta;
    assert_eq!(m.lifecycle, Lifecycle::Initial);
    assert_eq!(m.target_unique_id, None);
    assert_eq!(m.unique_id, "1.2.250.1.71.4.2.2.120456789^A71024000081");
    // No setId in this first version: the set is the document itself.
    assert_eq!(m.set_id, m.unique_id);
    assert_eq!(m.version, 1);
    assert_eq!(m.type_code, "18748-4");
    assert_eq!(m.class_code, "31");
    assert_eq!(m.format_code, "urn:ihe:iti:xds-sd:pdf:2008");
    assert_eq!(m.title, "Pelvis Masculin");
    assert_eq!(m.creation_time, "20050411103328");
    assert_eq!(m.confidentiality, "N");
    assert_eq!(
        m.visibility,
        vec![
            "INVISIBLE_PATIENT",
            "INVISIBLE_REP_LEGAUX",
            "CONNEXION_SECRETE"
        ]
    );
    assert_eq!(m.service_start.as_deref(), Some("20230227102827+0200"));
    assert_eq!(m.author.person_id.as_deref(), Some("801234564895"));
    assert_eq!(m.author.organisation_id.as_deref(), Some("120456789"));
    assert_eq!(m.origin, CdaOrigin::Received);
    let p = &m.patient;
    assert_eq!(p.ins, "274075176079430");
    assert_eq!(p.ins_oid, "1.2.250.1.213.1.4.8");
    assert_eq!(p.birth_name, "PatA");
    assert_eq!(p.first_names, vec!["DOMINIQUE"]);
    assert_eq!(p.birth_date, "2005-01-01");
    assert_eq!(p.sex, "M");
    assert_eq!(p.birth_place.as_deref(), Some("63220"));
    assert_eq!(p.identity_status, vec!["QUAL", "VALI"]);
    assert_eq!(m.source.sender, "RIS-Y^Organisation-Y");
    assert_eq!(m.source.control_id, "015");
    assert_eq!(m.source.position, 0);
    assert_eq!(m.source.feed, Some(Feed::Imaging));
    assert_eq!(m.source.topic, None);
    assert!(d[0].cda.as_xml().unwrap().contains("<ClinicalDocument"));
    assert!(d[0].entries.is_empty());
}

#[test]
fn oru_replacement_of_two_renditions() {
    let d = docs(Feed::Lab, &example(ORU_RPLC_B64));
    assert_eq!(d.len(), 2);
    for (i, doc) in d.iter().enumerate() {
        let m = &doc.meta;
        assert_eq!(m.source.position, i as u32);
        assert_eq!(m.lifecycle, Lifecycle::Replace);
        assert_eq!(m.version, 2);
        assert_eq!(m.type_code, "11502-2");
        assert_eq!(m.class_code, "10");
        assert!(m.visibility.is_empty(), "every flag is N");
        assert_eq!(m.patient.ins, "277076322082910");
        assert_eq!(m.patient.first_names, vec!["RUTH", "ISABELLE"]);
        assert_eq!(m.patient.birth_name, "NESSI");
        assert_eq!(m.author.person_id.as_deref(), Some("801234534765"));
        assert_eq!(m.source.sender, "SIL-Y^labo");
    }
    // N1 (PDF) then N3 (structured).
    assert_eq!(d[0].meta.unique_id, "1.2.250.1.213.1.1.12");
    assert_eq!(d[0].meta.set_id, "1.2.250.1.213.1.1.10");
    assert_eq!(d[0].meta.format_code, "urn:ihe:iti:xds-sd:pdf:2008");
    assert_eq!(
        d[0].meta.target_unique_id.as_deref(),
        Some("1.2.250.1.213.1.1.10"),
        "relatedDocument/parentDocument/id"
    );
    assert_eq!(d[1].meta.unique_id, "1.2.250.1.213.1.1.11");
    assert_eq!(d[1].meta.set_id, "1.2.250.1.213.1.1.9");
    assert_eq!(d[1].meta.format_code, "urn:ihe:lab:xd-lab:2008");
    // The N3 rendition names no parent: the store resolves the set.
    assert_eq!(d[1].meta.target_unique_id, None);
}

#[test]
fn oru_deletion_targets_the_carried_documents() {
    let d = docs(Feed::Lab, &example(ORU_DEL_B64));
    assert_eq!(d.len(), 2);
    for doc in &d {
        assert_eq!(doc.meta.lifecycle, Lifecycle::Delete);
        assert_eq!(
            doc.meta.target_unique_id.as_deref(),
            Some(doc.meta.unique_id.as_str())
        );
    }
}

#[test]
fn placeholder_base64_examples_are_not_xml() {
    for (feed, rel) in [
        (
            Feed::Lab,
            "ORU/Transmission initiale ORU/message_ORU_CR_Bio_INIT_N1_N3.hl7",
        ),
        (
            Feed::Lab,
            "ORU/Remplacement ORU/message_ORU_CR_Bio_RPLC_N1_N3.er7",
        ),
        (
            Feed::Lab,
            "ORU/Suppression ORU/message_ORU_CR_Bio_DEL_N1_N3.er7",
        ),
        (
            Feed::Imaging,
            "MDM/Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1.er7",
        ),
        (
            Feed::Imaging,
            "MDM/Remplacement MDM/message_MDM_CR_Radio_RPLC_N1.er7",
        ),
        (
            Feed::Imaging,
            "MDM/Suppression MDM/message_MDM_CR_Radio_DEL_N1.er7",
        ),
    ] {
        assert_eq!(reason(feed, &example(rel)), Reason::CdaXmlInvalid, "{rel}");
    }
}

fn text(rel: &str) -> String {
    String::from_utf8(example(rel)).unwrap()
}

/// Replaces the base64 of the first document OBX of the MDM example with `xml`.
fn mdm_with_document(xml: &str) -> Vec<u8> {
    let src = text(MDM_INIT_B64);
    let b64 = base64::engine::general_purpose::STANDARD.encode(xml);
    let mut out = String::new();
    for line in src.split('\n') {
        if line.starts_with("OBX|1|ED|") {
            let cut = line.find("Base64^").unwrap() + "Base64^".len();
            let end = line[cut..].find('|').unwrap() + cut;
            out.push_str(&line[..cut]);
            out.push_str(&b64);
            out.push_str(&line[end..]);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.into_bytes()
}

const MIN_CDA: &str = r#"<ClinicalDocument xmlns="urn:hl7-org:v3">
<templateId root="1.2.250.1.213.1.1.1.45"/><id root="1.2.3.4"/><code code="18748-4"/>
<title>t</title><effectiveTime value="20240101"/>
<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="274075176079430"/></patientRole></recordTarget>
<component><structuredBody/></component></ClinicalDocument>"#;

#[test]
fn a_minimal_structured_cda_is_accepted() {
    let d = docs(Feed::Imaging, &mdm_with_document(MIN_CDA));
    assert_eq!(
        d[0].meta.format_code,
        "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013"
    );
    assert_eq!(d[0].meta.unique_id, "1.2.3.4");
}

#[test]
fn embedded_cda_reject_codes() {
    let src = text(MDM_INIT_B64);
    // Another INS in PID-3 than in the CDA.
    let other = src.replacen("PID|||274075176079430", "PID|||253072B07300470", 1);
    assert_eq!(
        reason(Feed::Imaging, other.as_bytes()),
        Reason::CdaPatientMismatch
    );
    // Not base64.
    assert_eq!(
        reason(Feed::Imaging, &mdm_with_document("x").replace_b64("@@@@")),
        Reason::CdaBase64Invalid
    );
    // XML, but not a CDA.
    assert_eq!(
        reason(
            Feed::Imaging,
            &mdm_with_document("<html xmlns=\"urn:hl7-org:v3\"/>")
        ),
        Reason::CdaNotClinicalDocument
    );
    assert_eq!(
        reason(Feed::Imaging, &mdm_with_document("<ClinicalDocument/>")),
        Reason::CdaNotClinicalDocument
    );
    // Not well-formed.
    assert_eq!(
        reason(
            Feed::Imaging,
            &mdm_with_document(&MIN_CDA.replace("</title>", ""))
        ),
        Reason::CdaXmlInvalid
    );
    // No code in the header.
    assert_eq!(
        reason(
            Feed::Imaging,
            &mdm_with_document(&MIN_CDA.replace("<code code=\"18748-4\"/>", ""))
        ),
        Reason::CdaHeaderMissing
    );
    // No INS in patientRole.
    assert_eq!(
        reason(
            Feed::Imaging,
            &mdm_with_document(&MIN_CDA.replace("1.2.250.1.213.1.4.8", "1.2.3"))
        ),
        Reason::CdaHeaderMissing
    );
    // An imaging report on the lab feed.
    assert_eq!(
        reason(Feed::Lab, &mdm_with_document(MIN_CDA)),
        Reason::CdaModelUnsupported
    );
    // A structured document whose templateId is not in ASS_A11.
    assert_eq!(
        reason(
            Feed::Imaging,
            &mdm_with_document(&MIN_CDA.replace("1.2.250.1.213.1.1.1.45", "1.2.3.4.5"))
        ),
        Reason::CdaModelUnsupported
    );
}

trait ReplaceB64 {
    fn replace_b64(&self, with: &str) -> Vec<u8>;
}

impl ReplaceB64 for Vec<u8> {
    /// Replaces the OBX-1 base64 payload ("eA==" is "x") with `with`.
    fn replace_b64(&self, with: &str) -> Vec<u8> {
        String::from_utf8(self.clone())
            .unwrap()
            .replacen("Base64^eA==|", &format!("Base64^{with}|"), 1)
            .into_bytes()
    }
}

#[test]
fn lifecycle_must_be_consistent() {
    let mdm = text(MDM_INIT_B64);
    // T10 (replace) with OBX-11 F.
    let t10 = mdm.replacen("MDM^T02^MDM_T02", "MDM^T10^MDM_T02", 1);
    assert_eq!(
        reason(Feed::Imaging, t10.as_bytes()),
        Reason::Hl7LifecycleInconsistent
    );
    // T04 (delete) with OBX-11 D is a deletion of the carried document.
    let t04 = mdm
        .replacen("MDM^T02^MDM_T02", "MDM^T04^MDM_T02", 1)
        .replacen("||||||F|\nPRT", "||||||D|\nPRT", 1);
    let d = docs(Feed::Imaging, t04.as_bytes());
    assert_eq!(d[0].meta.lifecycle, Lifecycle::Delete);

    let oru = text(ORU_RPLC_B64);
    // ORC-1 NW (new) with OBX-11 C (corrected).
    let nw = oru.replacen("ORC|SC|", "ORC|NW|", 1);
    assert_eq!(
        reason(Feed::Lab, nw.as_bytes()),
        Reason::Hl7LifecycleInconsistent
    );
    // ORC-1 RO with OBX-11 C is the table's replacement.
    let ro = oru.replacen("ORC|SC|", "ORC|RO|", 1);
    assert_eq!(
        docs(Feed::Lab, ro.as_bytes())[0].meta.lifecycle,
        Lifecycle::Replace
    );
    // SC refused when the config does not accept it.
    let strict = Config {
        accept_orc_status_changed: false,
        ..Config::default()
    };
    assert_eq!(
        normalize(Feed::Lab, oru.as_bytes(), &strict)
            .unwrap_err()
            .reason,
        Reason::Hl7LifecycleInconsistent
    );
}

#[test]
fn mdm_replacement_names_its_target_in_txa13() {
    // The RPLC example carries a placeholder: give it the initial example's real CDA to
    // see TXA-13 become the target.
    let init = text(MDM_INIT_B64);
    let rplc = text("MDM/Remplacement MDM/message_MDM_CR_Radio_RPLC_N1.er7");
    let grab = |s: &str| {
        let l = s.lines().find(|l| l.starts_with("OBX|1|ED|")).unwrap();
        let c = l.find("Base64^").unwrap() + 7;
        let e = l[c..].find('|').unwrap() + c;
        l[c..e].to_string()
    };
    let msg = rplc.replacen(&grab(&rplc), &grab(&init), 1);
    // The example's TXA-13 root has a letter in an arc ("...2.2.120456789A71024000081"):
    // not an OID, so not a valid XDS uniqueId (issue #16 item 10) — refused, not passed on.
    // What the example means is the initial document's uniqueId, `root^extension`, whose
    // `^` must be escaped (\S\) inside the TXA-13 component.
    assert_eq!(
        normalize(Feed::Imaging, msg.as_bytes(), &Config::default())
            .unwrap_err()
            .reason,
        Reason::CdaIdInvalid
    );
    let msg = msg.replace("120456789A71024000081", "120456789\\S\\A71024000081");
    let d = docs(Feed::Imaging, msg.as_bytes());
    assert_eq!(d[0].meta.lifecycle, Lifecycle::Replace);
    assert_eq!(
        d[0].meta.target_unique_id.as_deref(),
        Some("1.2.250.1.71.4.2.2.120456789^A71024000081")
    );
    assert_eq!(d[0].meta.visibility, vec!["CONNEXION_SECRETE"]);
    // The PID of the replacement spells the name differently; the CDA is authoritative.
    assert_eq!(d[0].meta.patient.birth_name, "PatA");
}

#[test]
fn a_cancer_feed_frcp_in_mdm() {
    let frcp = std::fs::read_to_string(format!(
        "{}/../../shared/cisis/examples/CANCER-FRCP_2022.01_Appareil.xml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("the FRCP example must exist");
    // Put the example's patient INS in PID-3 so the identity check passes.
    let start = frcp.find("<patientRole>").unwrap();
    let seg = &frcp[start..];
    let ext_at = seg.find("extension=\"").unwrap() + 11;
    let ins = &seg[ext_at..ext_at + seg[ext_at..].find('"').unwrap()];
    let msg = String::from_utf8(mdm_with_document(&frcp))
        .unwrap()
        .replacen("PID|||274075176079430", &format!("PID|||{ins}"), 1)
        .replacen("18748-4^CR d'imagerie", "34794-8^CR RCP", 1);
    let d = docs(Feed::Cancer, msg.as_bytes());
    assert_eq!(d[0].meta.type_code, "34794-8");
    assert_eq!(d[0].meta.class_code, "10");
    assert_eq!(d[0].meta.format_code, "urn:asip:ci-sis:frcp:2011");
    assert_eq!(d[0].meta.source.feed, Some(Feed::Cancer));
}
