//! Issue #12 item 3: a finished CDA of any CI-SIS model. Its ClinicalDocument/code must be
//! in JDV_J07 (`cda.type.unknown` otherwise); the `documents` feed takes every J07 type,
//! the domain feeds the types of their domain (`cda.model.unsupported` for the others);
//! classCode and formatCode come from the type and the templateIds. Messages: the ANS MDM
//! example with its CDA swapped (as in hostile_input.rs). Each test failed on the code
//! before (every non-historical type was `cda.model.unsupported`, and there was no
//! `documents` feed).

use base64::Engine;
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{Document, Feed, Lifecycle, Normalized};

const MDM_INIT_B64: &str = "MDM/Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1_Base64.er7";

fn example(rel: &str) -> String {
    let p = format!(
        "{}/../../shared/hl7v2-examples/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

/// The ANS MDM example with its document replaced by `xml` (and OBX-3/TXA-2 left as sent:
/// the CDA's own code decides).
fn mdm_with_document(xml: &str) -> Vec<u8> {
    let src = example(MDM_INIT_B64);
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

/// A structured CDA of `code` with the document templateIds `templates`, for the example's
/// patient (fictitious INS 274075176079430).
fn cda(code: &str, system: &str, templates: &[&str]) -> String {
    let t: String = templates
        .iter()
        .map(|r| format!(r#"<templateId root="{r}"/>"#))
        .collect();
    format!(
        r#"<ClinicalDocument xmlns="urn:hl7-org:v3">
<templateId root="1.2.250.1.213.1.1.1.1"/>{t}<id root="1.2.250.1.213.9.7.1"/>
<code code="{code}" codeSystem="{system}"/>
<title>t</title><effectiveTime value="20240301"/>
<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="274075176079430"/><patient><administrativeGenderCode code="M"/><birthTime value="20050101"/></patient></patientRole></recordTarget>
<component><structuredBody/></component></ClinicalDocument>"#
    )
}

const LOINC: &str = "2.16.840.1.113883.6.1";
/// IMG-DA-IMG document template (CI-SIS_IMG-DA-IMG schematron) and its DICOM part 20 one.
const DA_IMG: &[&str] = &["1.2.250.1.213.1.1.1.47", "1.2.840.10008.9.20"];
/// LDL-SES (lettre de liaison à la sortie, CI-SIS_LDL-SES schematron).
const LDL_SES: &[&str] = &["1.2.250.1.213.1.1.1.29"];

fn one(feed: Feed, xml: &str) -> Result<Document, Reason> {
    let mut v =
        normalize(feed, &mdm_with_document(xml), &Config::default()).map_err(|e| e.reason)?;
    assert_eq!(v.len(), 1);
    match v.remove(0) {
        Normalized::Document(d) => Ok(*d),
        other => panic!("expected a document, got {other:?}"),
    }
}

#[test]
fn an_imaging_request_da_img_on_the_documents_feed() {
    let d = one(Feed::Documents, &cda("55115-0", LOINC, DA_IMG)).unwrap();
    assert_eq!(d.meta.type_code, "55115-0");
    assert_eq!(
        d.meta.class_code, "42",
        "a request is a prescription (TRE_A03)"
    );
    assert_eq!(d.meta.format_code, "urn:ans:ci-sis:img-da:2022");
    assert_eq!(d.meta.lifecycle, Lifecycle::Initial);
    assert_eq!(d.meta.source.feed, Some(Feed::Documents));
    // The imaging feed takes it too (its senders write the requests).
    assert_eq!(
        one(Feed::Imaging, &cda("55115-0", LOINC, DA_IMG))
            .unwrap()
            .meta
            .format_code,
        "urn:ans:ci-sis:img-da:2022"
    );
}

#[test]
fn a_discharge_letter_on_the_documents_feed() {
    let d = one(Feed::Documents, &cda("11490-0", LOINC, LDL_SES)).unwrap();
    assert_eq!(d.meta.type_code, "11490-0");
    assert_eq!(d.meta.class_code, "11");
    // LDL-SES has no ASS_A11 row in our table: the documented default.
    assert_eq!(
        d.meta.format_code,
        "urn:ihe:iti:xds:2017:mimeTypeSufficient"
    );
    // The episode summary 34133-9 (also J07) likewise.
    let s = one(Feed::Documents, &cda("34133-9", LOINC, &[])).unwrap();
    assert_eq!(s.meta.class_code, "11");
    // Not an imaging document: the imaging and lab feeds refuse it as another model.
    for feed in [Feed::Imaging, Feed::Lab, Feed::Cancer, Feed::Pharmacy] {
        assert_eq!(
            one(feed, &cda("11490-0", LOINC, LDL_SES)).unwrap_err(),
            Reason::CdaModelUnsupported,
            "{feed}"
        );
    }
}

#[test]
fn a_code_outside_j07_is_an_unknown_type_on_every_feed() {
    for feed in [Feed::Documents, Feed::Imaging, Feed::Lab] {
        assert_eq!(
            one(feed, &cda("99999-9", LOINC, &[])).unwrap_err(),
            Reason::CdaTypeUnknown,
            "{feed}"
        );
    }
    // A J07 code given in another code system is not that type.
    assert_eq!(
        one(Feed::Documents, &cda("11490-0", "1.2.3.4", LDL_SES)).unwrap_err(),
        Reason::CdaTypeUnknown
    );
}

#[test]
fn the_historical_models_keep_their_feed_class_and_format() {
    let cases = [
        (
            Feed::Lab,
            "11502-2",
            "1.2.250.1.213.1.1.1.55",
            "10",
            "urn:ihe:lab:xd-lab:2008",
        ),
        (
            Feed::Imaging,
            "18748-4",
            "1.2.250.1.213.1.1.1.45",
            "31",
            "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013",
        ),
        (
            Feed::Pharmacy,
            "60593-1",
            "1.2.250.1.213.1.1.1.54",
            "43",
            "urn:ihe:pharm:dis:2010",
        ),
        (
            Feed::Cancer,
            "34794-8",
            "1.2.250.1.213.1.1.1.8",
            "10",
            "urn:asip:ci-sis:frcp:2011",
        ),
    ];
    for (feed, code, template, class, format) in cases {
        for f in [feed, Feed::Documents] {
            let d = one(f, &cda(code, LOINC, &[template])).unwrap();
            assert_eq!(d.meta.class_code, class, "{code} on {f}");
            assert_eq!(d.meta.format_code, format, "{code} on {f}");
        }
    }
    // A CR-IMG without its model's templateId is still not a CR-IMG.
    assert_eq!(
        one(Feed::Documents, &cda("18748-4", LOINC, &["1.2.3.4.5"])).unwrap_err(),
        Reason::CdaModelUnsupported
    );
}

#[test]
fn the_ans_mdm_example_is_accepted_on_the_documents_feed() {
    let raw = example(MDM_INIT_B64);
    let v = normalize(Feed::Documents, raw.as_bytes(), &Config::default()).unwrap();
    assert_eq!(v.len(), 1);
    let Normalized::Document(d) = &v[0] else {
        panic!("a document")
    };
    assert_eq!(d.meta.class_code, "31");
    assert_eq!(d.meta.format_code, "urn:ihe:iti:xds-sd:pdf:2008");
}

#[test]
fn an_oru_without_a_document_is_not_for_the_documents_feed() {
    let raw = "MSH|^~\\&|A|B|C|D|20240301||ORU^R01^ORU_R01|1|P|2.5\rPID|||274075176079430^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS||X^Y||20050101|M\rOBR|1|||11502-2^CR^LN\rOBX|1|NM|718-7^Hb^LN||13.5|g/dL|||||F";
    assert_eq!(
        normalize(Feed::Documents, raw.as_bytes(), &Config::default())
            .unwrap_err()
            .reason,
        Reason::Hl7MessageTypeUnsupported
    );
}
