//! Issue #12 item 2: finished CDA as senders of the LPS/MSSanté volet send them. Next to the
//! CDA, ED OBX carry the mail body (`^text^^Base64^...`, no XML subtype, with or without the
//! MetaDMPMSS code `CORPSMAIL_PS`) or another attachment (a PDF). Only an ED whose OBX-5
//! says CDA XML (`text^XML` / `application^XML`) is a document: the others are neither a
//! second document (refused `cda.xml.invalid` before) nor a lifecycle to compare with the
//! event (`hl7.lifecycle.inconsistent` before). Messages are written here from the volet's
//! layout (domain.md §4.2, §3.3); each test failed on the code before.

use base64::Engine;
use dmpflow_normalize::hl7::{Message, ReadOptions};
use dmpflow_normalize::mapping::attachments;
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::{Document, Feed, Lifecycle, Normalized};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A structured CR-IMG (template 1.2.250.1.213.1.1.1.45) for the ANS test patient
/// (fictitious INS 274075176079430).
fn cr_img(id: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<ClinicalDocument xmlns="urn:hl7-org:v3">
<templateId root="1.2.250.1.213.1.1.1.45"/><id root="{id}"/>
<code code="18748-4" codeSystem="2.16.840.1.113883.6.1"/>
<title>CR imagerie</title><effectiveTime value="20240301101500+0100"/>
<confidentialityCode code="N"/><setId root="1.2.250.1.213.9.9"/><versionNumber value="1"/>
<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="274075176079430"/>
<patient><administrativeGenderCode code="M"/><birthTime value="20050101"/></patient>
</patientRole></recordTarget>
<component><structuredBody/></component></ClinicalDocument>"#
    )
}

/// The mail body and attachment lines an LPS/MSSanté sender adds: the MetaDMPMSS mail body
/// of the volet, a mail body under the sender's own code (no MetaDMPMSS), a PDF; all
/// OBX-11 `F`, whatever the event.
fn mail_lines(first: usize) -> String {
    let n = |i: usize| first + i;
    [
        format!(
            "OBX|{}|CWE|MASQUE_PS^Masqué aux professionnels de Santé^MetaDMPMSS||N^^HL70136||||||F|",
            n(0)
        ),
        format!(
            "OBX|{}|CWE|INVISIBLE_PATIENT^Document Non Visible par le patient^MetaDMPMSS||Y^^HL70136||||||F|",
            n(1)
        ),
        format!(
            "OBX|{}|CWE|INVISIBLE_REP_LEGAUX^Non visible par les représentants Légaux du patient^MetaDMPMSS||Y^^HL70136||||||F|",
            n(2)
        ),
        format!(
            "OBX|{}|CWE|DESTMSSANTEPS^Destinataire PS^MetaDMPMSS||Y^^HL70136||||||F|",
            n(3)
        ),
        format!(
            "OBX|{}|ED|CORPSMAIL_PS^Corps du mail pour un PS^MetaDMPMSS||^text^^Base64^{}||||||F|",
            n(4),
            b64("Cher confrère, ci-joint le compte rendu.")
        ),
        format!(
            "OBX|{}|ED|CORPSMAIL^Corps du message^L||^text^^Base64^{}||||||F|",
            n(5),
            b64("Bonjour, voici le document.")
        ),
        format!(
            "OBX|{}|ED|PJ^Pièce jointe^L||^application^pdf^Base64^{}||||||F|",
            n(6),
            b64("%PDF-1.4 not a CDA")
        ),
    ]
    .join("\r")
}

/// An MDM of the volet: `event` T02/T10/T04 and the document's OBX-11 `status`.
fn mdm(event: &str, status: &str, cda: &str, parent: &str) -> Vec<u8> {
    [
        format!(
            "MSH|^~\\&|LPS-X|Cabinet-X|PFI-X|Organisation-X|20240301101500||MDM^{event}^MDM_T02|mss-{event}|P|2.6|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2"
        ),
        "EVN||20240301101500".to_string(),
        "PID|||274075176079430^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS^^20101207||PatA^DOMINIQUE^^^^^L||20050101|M|||||||||||||||||||||||||N|VALI".to_string(),
        "PV1|1|O".to_string(),
        format!(
            "TXA|1|18748-4|TEXT|20240301101500||||||||1.2.250.1.213.9.9.2|{parent}||||LA"
        ),
        format!(
            "OBX|1|ED|18748-4^CR d'imagerie médicale^LN||^text^XML^Base64^{}||||||{status}|",
            b64(cda)
        ),
        "PRT||UC||SB^^HL70912|801234564895^Eric^Thomas^^^^^^ASIP-SANTE-PS&1.2.250.1.71.4.2.1&ISO^D^^^RPPS|||^^^^^ASIP-SANTE-ST&1.2.250.1.71.4.2.2&ISO^FINEG^^^300017985".to_string(),
        mail_lines(2),
    ]
    .join("\r")
    .into_bytes()
}

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

fn flags(d: &Document) -> Vec<&str> {
    d.meta.visibility.iter().map(String::as_str).collect()
}

#[test]
fn an_lps_mdm_t02_with_mail_body_and_attachment_is_one_initial_document() {
    let d = docs(
        Feed::Imaging,
        &mdm("T02", "F", &cr_img("1.2.250.1.213.9.9.2"), ""),
    );
    assert_eq!(d.len(), 1, "the mail body and the PDF are not documents");
    assert_eq!(d[0].meta.lifecycle, Lifecycle::Initial);
    assert_eq!(d[0].meta.unique_id, "1.2.250.1.213.9.9.2");
    assert_eq!(d[0].meta.type_code, "18748-4");
    assert_eq!(flags(&d[0]), ["INVISIBLE_PATIENT", "INVISIBLE_REP_LEGAUX"]);
}

#[test]
fn an_lps_mdm_t10_is_one_replacement_whatever_the_mail_lines_obx11() {
    let d = docs(
        Feed::Imaging,
        &mdm(
            "T10",
            "C",
            &cr_img("1.2.250.1.213.9.9.3"),
            "1.2.250.1.213.9.9.2",
        ),
    );
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].meta.lifecycle, Lifecycle::Replace);
    assert_eq!(
        d[0].meta.target_unique_id.as_deref(),
        Some("1.2.250.1.213.9.9.2"),
        "TXA-13"
    );
    assert_eq!(flags(&d[0]), ["INVISIBLE_PATIENT", "INVISIBLE_REP_LEGAUX"]);
}

#[test]
fn an_lps_mdm_t04_is_one_deletion_whatever_the_mail_lines_obx11() {
    let d = docs(
        Feed::Imaging,
        &mdm("T04", "D", &cr_img("1.2.250.1.213.9.9.3"), ""),
    );
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].meta.lifecycle, Lifecycle::Delete);
    assert_eq!(
        d[0].meta.target_unique_id.as_deref(),
        Some("1.2.250.1.213.9.9.3")
    );
    assert_eq!(flags(&d[0]), ["INVISIBLE_PATIENT", "INVISIBLE_REP_LEGAUX"]);
}

/// A CDA level 1 (PDF) CR-BIO for the ANS ORU examples' patient (fictitious INS
/// 277076322082910).
fn cr_bio(id: &str, body: &str, template: &str) -> String {
    format!(
        r#"<ClinicalDocument xmlns="urn:hl7-org:v3">
<templateId root="{template}"/><id root="{id}"/>
<code code="11502-2" codeSystem="2.16.840.1.113883.6.1"/>
<title>CR de biologie</title><effectiveTime value="20240301101500"/>
<recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="277076322082910"/>
<patient><administrativeGenderCode code="F"/><birthTime value="19770819"/></patient>
</patientRole></recordTarget>
<component>{body}</component></ClinicalDocument>"#
    )
}

#[test]
fn an_oru_with_cda_n1_n3_and_a_mail_body_gives_two_documents() {
    let n1 = cr_bio(
        "1.2.250.1.213.9.8.1",
        r#"<nonXMLBody><text mediaType="application/pdf" representation="B64">JVBERi0=</text></nonXMLBody>"#,
        "1.3.6.1.4.1.19376.1.2.20",
    );
    let n3 = cr_bio(
        "1.2.250.1.213.9.8.2",
        "<structuredBody/>",
        "1.2.250.1.213.1.1.1.55",
    );
    let raw = [
        "MSH|^~\\&|SIL-Y|labo|PFI-X|Organisation-X|20240301101500||ORU^R01^ORU_R01|mss-oru|P|2.5|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2".to_string(),
        "PID|||277076322082910^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||NESSI^RUTH^^^^^L||19770819|F|||||||||||||||||||||||||N|VALI".to_string(),
        "ORC|NW|98765431^Nephro|1001-E1^labo".to_string(),
        "OBR|1|98765431^Nephro|1001-E1^labo|11502-2^CR d'examens biologiques^LN|||20240301101500".to_string(),
        format!(
            "OBX|1|ED|11502-2^CR d'examens biologiques^LN||^TEXT^XML^Base64^{}||||||F|",
            b64(&n1)
        ),
        // Lower-case `application^xml`: the subtype is read in any case.
        format!(
            "OBX|2|ED|11502-2^CR d'examens biologiques^LN||^application^xml^Base64^{}||||||F|",
            b64(&n3)
        ),
        mail_lines(3),
    ]
    .join("\r")
    .into_bytes();
    let d = docs(Feed::Lab, &raw);
    assert_eq!(d.len(), 2, "N1 and N3, not the mail body nor the PDF");
    assert_eq!(d[0].meta.unique_id, "1.2.250.1.213.9.8.1");
    assert_eq!(d[0].meta.format_code, "urn:ihe:iti:xds-sd:pdf:2008");
    assert_eq!(d[1].meta.unique_id, "1.2.250.1.213.9.8.2");
    assert_eq!(d[1].meta.format_code, "urn:ihe:lab:xd-lab:2008");
    for (i, doc) in d.iter().enumerate() {
        assert_eq!(doc.meta.lifecycle, Lifecycle::Initial);
        assert_eq!(doc.meta.source.position, i as u32);
        assert_eq!(flags(doc), ["INVISIBLE_PATIENT", "INVISIBLE_REP_LEGAUX"]);
    }
    // The other ED lines are counted, by size only.
    let msg = Message::parse(&raw, &ReadOptions::default()).unwrap();
    let a = attachments(&msg);
    assert_eq!(a.count, 3, "two mail bodies and the PDF");
    assert!(a.base64_bytes > 0);
}

/// The ANS examples keep their mail body line (MetaDMPMSS `CORPSMAIL_PS`) out of the
/// documents too; the counting sees it.
#[test]
fn the_ans_mdm_example_counts_its_mail_body_as_an_attachment() {
    let p = format!(
        "{}/../../shared/hl7v2-examples/MDM/Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1_Base64.er7",
        env!("CARGO_MANIFEST_DIR")
    );
    let raw = std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"));
    let msg = Message::parse(&raw, &ReadOptions::default()).unwrap();
    assert_eq!(attachments(&msg).count, 1);
    assert_eq!(docs(Feed::Imaging, &raw).len(), 1);
}

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

/// A structured lab ORU with the report's PDF attached: the PDF is no result (before, its
/// base64 became a text result of the CR-BIO).
#[test]
fn a_pdf_next_to_structured_lab_results_is_not_a_result() {
    let raw = fixture("lab_oru_r01_two_batteries.hl7").replacen(
        "\rPRT|",
        &format!(
            "\rOBX|6|ED|PDF^Compte rendu PDF^L||^application^pdf^Base64^{}||||||F\rPRT|",
            b64("%PDF-1.4")
        ),
        1,
    );
    let r = dmpflow_normalize::mapping::records::lab(raw.as_bytes(), &Config::default()).unwrap();
    // Five OBX, the two comment lines forming one result.
    assert_eq!(r.batteries[1].observations.len(), 4);
    assert_eq!(docs(Feed::Lab, raw.as_bytes()).len(), 1);
}

/// An imaging ORU cancelling its report (ORC CA, lines D) with a mail body `F`: a deletion
/// (before, the mail body's F made it `hl7.lifecycle.inconsistent`).
#[test]
fn a_mail_body_does_not_change_a_generated_reports_lifecycle() {
    let raw = fixture("imaging_oru_r01.hl7")
        .replacen("ORC|NW|", "ORC|CA|", 1)
        .replace("||||||F\r", "||||||D\r")
        .replacen(
            "\rPRT|",
            &format!(
                "\rOBX|5|ED|CORPSMAIL^Corps du message^L||^text^^Base64^{}||||||F\rPRT|",
                b64("Annulation")
            ),
            1,
        );
    let d = docs(Feed::Imaging, raw.as_bytes());
    assert_eq!(d[0].meta.lifecycle, Lifecycle::Delete);
}

/// The mail body, the second mail body and the PDF of the volet are left aside and counted
/// on the message's (first) document; the runtime turns that into a metric.
#[test]
fn the_attachments_left_aside_are_counted_on_the_first_document() {
    let d = docs(
        Feed::Imaging,
        &mdm("T02", "F", &cr_img("1.2.250.1.213.9.9.2"), ""),
    );
    assert_eq!(d[0].meta.ignored_attachments, 3);
}

/// XDS practiceSettingCode: the serviceEvent performer's organisation first, else the
/// author's; nothing stated → None (not invented).
#[test]
fn the_practice_setting_comes_from_the_header() {
    let org = |code: &str| {
        format!(
            r#"<representedOrganization><id root="1.2.250.1.71.4.2.2" extension="1300017985"/><standardIndustryClassCode code="{code}" codeSystem="1.2.250.1.213.1.1.4.9"/></representedOrganization>"#
        )
    };
    let author = format!(
        r#"<author><time value="20240301101500+0100"/><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234564895"/>{}</assignedAuthor></author>"#,
        org("ETABLISSEMENT")
    );
    let performer = format!(
        r#"<documentationOf><serviceEvent><effectiveTime><low value="20240301"/></effectiveTime><performer typeCode="PRF"><assignedEntity><id root="1.2.250.1.71.4.2.1" extension="801234564895"/>{}</assignedEntity></performer></serviceEvent></documentationOf>"#,
        org("HAD")
    );
    let with = |extra: &str| {
        cr_img("1.2.250.1.213.9.9.2").replace("<component>", &format!("{extra}<component>"))
    };
    let one = |xml: &str| {
        docs(Feed::Imaging, &mdm("T02", "F", xml, ""))
            .remove(0)
            .meta
            .practice_setting
    };
    assert_eq!(
        one(&with(&format!("{author}{performer}"))).as_deref(),
        Some("HAD")
    );
    assert_eq!(one(&with(&author)).as_deref(), Some("ETABLISSEMENT"));
    assert_eq!(one(&with("")), None);
}
