//! Hostile and careless input (issue #16): a received CDA naming two patients, a DOCTYPE
//! or undeclared entities, illegal characters, absurd nesting, invalid document ids; and
//! size bounds on generated and received documents. Each test failed on the code before.

use std::time::{Duration, Instant};

use base64::Engine;
use dmpflow_normalize::mapping::records;
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::reasons::Reason;
use dmpflow_schemas::{Feed, Normalized};

const MDM_INIT_B64: &str = "MDM/Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1_Base64.er7";

fn example(rel: &str) -> String {
    let p = format!(
        "{}/../../shared/hl7v2-examples/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

/// The ANS MDM example with its first document replaced by `xml`.
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

/// A minimal structured CR-IMG for the example's patient (INS 274075176079430).
const CDA: &str = r#"<ClinicalDocument xmlns="urn:hl7-org:v3">
<templateId root="1.2.250.1.213.1.1.1.45"/><id root="1.2.3.4"/><code code="18748-4"/>
<title>t</title><effectiveTime value="20240101"/>
<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="274075176079430"/><patient><administrativeGenderCode code="M"/><birthTime value="19740717"/></patient></patientRole></recordTarget>
<component><structuredBody>BODY</structuredBody></component></ClinicalDocument>"#;

const RT: &str = r#"<recordTarget><patientRole><id root="1.2.250.1.213.1.4.8" extension="274075176079430"/><patient><administrativeGenderCode code="M"/><birthTime value="19740717"/></patient></patientRole></recordTarget>"#;

fn cda(body: &str) -> String {
    CDA.replace("BODY", body)
}

fn outcome_with(xml: &str, cfg: &Config) -> Result<usize, Reason> {
    normalize(Feed::Imaging, &mdm_with_document(xml), cfg)
        .map(|v| v.len())
        .map_err(|e| e.reason)
}

fn outcome(xml: &str) -> Result<usize, Reason> {
    outcome_with(xml, &Config::default())
}

#[test]
fn the_base_document_is_accepted() {
    assert_eq!(outcome(&cda("")), Ok(1));
}

/// Item 2: two recordTargets, or two different INS in one patientRole → ambiguous.
#[test]
fn a_cda_naming_two_patients_is_refused() {
    let two_targets = CDA.replace(RT, &format!("{RT}{}", RT.replace("19740717", "19990101")));
    assert_eq!(outcome(&two_targets), Err(Reason::CdaPatientAmbiguous));
    let two_ins = CDA.replace(
        r#"extension="274075176079430"/>"#,
        r#"extension="274075176079430"/><id root="1.2.250.1.213.1.4.10" extension="253072B07300470"/>"#,
    );
    assert_eq!(outcome(&two_ins), Err(Reason::CdaPatientAmbiguous));
    let two_patients = CDA.replace(
        "</patient></patientRole>",
        "</patient><patient><birthTime value=\"20000101\"/></patient></patientRole>",
    );
    assert_eq!(outcome(&two_patients), Err(Reason::CdaPatientAmbiguous));
    // The same INS stated twice (here on the two INS OIDs) is one patient.
    let same_ins = CDA.replace(
        r#"extension="274075176079430"/>"#,
        r#"extension="274075176079430"/><id root="1.2.250.1.213.1.4.10" extension="274075176079430"/>"#,
    );
    assert_eq!(outcome(&same_ins), Ok(1));
}

/// Item 3, embedded path: a further, different INS in PID-3 travels with the document so
/// that route holds it as identity.ambiguous (it was dropped here before).
#[test]
fn a_second_ins_in_pid3_travels_with_a_received_cda() {
    let msg = String::from_utf8(mdm_with_document(&cda(""))).unwrap().replacen(
        "274075176079430^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS^^20101207",
        "274075176079430^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS^^20101207~277076322082910^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS",
        1,
    );
    let out = normalize(Feed::Imaging, msg.as_bytes(), &Config::default()).unwrap();
    let Normalized::Document(d) = &out[0] else {
        panic!("a document")
    };
    assert_eq!(d.meta.patient.other_ins, ["277076322082910"]);
}

/// Item 9: DOCTYPE, entity declarations and undeclared entities are refused; character
/// references must name legal characters.
#[test]
fn doctype_and_entities_are_refused() {
    let with_dtd = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE ClinicalDocument [<!ENTITY x \"y\">]>\n{}",
        cda("")
    );
    assert_eq!(outcome(&with_dtd), Err(Reason::CdaDoctypeForbidden));
    let plain_doctype = format!(
        "<!DOCTYPE ClinicalDocument SYSTEM \"http://x/cda.dtd\">{}",
        cda("")
    );
    assert_eq!(outcome(&plain_doctype), Err(Reason::CdaDoctypeForbidden));
    let undeclared_in_text = CDA.replace("<title>t</title>", "<title>&x;</title>");
    assert_eq!(
        outcome(&undeclared_in_text),
        Err(Reason::CdaDoctypeForbidden)
    );
    let undeclared_in_body = cda("<!-- c --><x>&nbsp;</x>");
    assert_eq!(
        outcome(&undeclared_in_body),
        Err(Reason::CdaDoctypeForbidden)
    );
    let undeclared_in_attr = cda("<x a=\"&lol;\"/>");
    assert_eq!(
        outcome(&undeclared_in_attr),
        Err(Reason::CdaDoctypeForbidden)
    );
    for bad in [
        "&#0;",
        "&#1;",
        "&#x1F;",
        "&#xFFFE;",
        "&#xD800;",
        "&#99999999999;",
        "&#+65;",
    ] {
        assert_eq!(
            outcome(&cda(&format!("<x>{bad}</x>"))),
            Err(Reason::CdaXmlInvalid),
            "{bad}"
        );
        assert_eq!(
            outcome(&cda(&format!("<x a=\"{bad}\"/>"))),
            Err(Reason::CdaXmlInvalid),
            "{bad} in an attribute"
        );
    }
    for raw in ["\u{0}", "\u{1}", "\u{b}", "\u{FFFF}"] {
        assert_eq!(
            outcome(&cda(&format!("<x>{raw}</x>"))),
            Err(Reason::CdaXmlInvalid),
            "{raw:?}"
        );
    }
    // The five XML entities, character references and tab/CR/LF stay fine.
    let ok = cda("<x a=\"&amp;&lt;&#233;&#x9;\">&amp;&lt;&gt;&quot;&apos;&#233;&#xE9;\t\r\n</x>");
    assert_eq!(outcome(&ok), Ok(1));
}

/// Item 8: nesting past 256 is refused, and fast; deep but legal nesting passes, and the
/// reader stays linear (the old one copied the path at every tag).
#[test]
fn deep_documents_are_bounded() {
    let deep = cda(&format!(
        "{}{}",
        "<a>".repeat(100_000),
        "</a>".repeat(100_000)
    ));
    let t = Instant::now();
    assert_eq!(outcome(&deep), Err(Reason::CdaXmlTooDeep));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // 250 levels (the document's own 3 included), repeated 1,500 times: 750k tags.
    let chain = format!("{}{}", "<a>".repeat(250), "</a>".repeat(250));
    let legal = cda(&chain.repeat(1_500));
    let t = Instant::now();
    assert_eq!(outcome(&legal), Ok(1));
    let took = t.elapsed();
    // Quadratic in depth this took over a minute in a debug build.
    assert!(took < Duration::from_secs(20), "{took:?}");
    let one_too_deep = cda(&format!("{}{}", "<a>".repeat(254), "</a>".repeat(254)));
    assert_eq!(outcome(&one_too_deep), Err(Reason::CdaXmlTooDeep));
    let deepest = cda(&format!("{}{}", "<a>".repeat(253), "</a>".repeat(253)));
    assert_eq!(outcome(&deepest), Ok(1));
}

/// Item 10: ClinicalDocument/id, setId and the replaced id must be valid document ids.
#[test]
fn invalid_document_ids_are_refused() {
    for id in [
        r#"root="../../x""#,
        r#"root="/tmp/x""#,
        r#"root="1.2.3" extension="../../x""#,
        r#"root="1.2.3" extension="a\b""#,
        r#"root="1.2.3" extension="a b""#,
        r#"root="1.2.03""#,
    ] {
        let xml = CDA.replace(r#"<id root="1.2.3.4"/>"#, &format!("<id {id}/>"));
        assert_eq!(outcome(&xml), Err(Reason::CdaIdInvalid), "{id}");
    }
    let long = CDA.replace(
        r#"<id root="1.2.3.4"/>"#,
        &format!(r#"<id root="1.2.3.4" extension="{}"/>"#, "x".repeat(400)),
    );
    assert_eq!(outcome(&long), Err(Reason::CdaIdInvalid));
    let set_id = CDA.replace(
        r#"<id root="1.2.3.4"/>"#,
        r#"<id root="1.2.3.4"/><setId root="1.2.3" extension="../x"/>"#,
    );
    assert_eq!(outcome(&set_id), Err(Reason::CdaIdInvalid));
    let uuid = CDA.replace(
        r#"<id root="1.2.3.4"/>"#,
        r#"<id root="6F9619FF-8B86-D011-B42D-00C04FC964FF"/>"#,
    );
    assert_eq!(outcome(&uuid), Ok(1));
}

/// Item 7, received side: the decoded size and the entry count are bounded.
#[test]
fn received_documents_are_bounded() {
    let small = Config {
        max_cda_bytes: 1_000,
        ..Config::default()
    };
    assert_eq!(outcome_with(&cda(""), &small), Ok(1));
    assert_eq!(
        outcome_with(&cda(&"<x/>".repeat(200)), &small),
        Err(Reason::CdaTooLarge)
    );
    let few = Config {
        max_entries: 2,
        ..Config::default()
    };
    assert_eq!(outcome_with(&cda(&"<entry/>".repeat(2)), &few), Ok(1));
    assert_eq!(
        outcome_with(&cda(&"<entry/>".repeat(3)), &few),
        Err(Reason::CdaTooLarge)
    );
}

fn lab_head() -> String {
    let fx = fixture("lab_oru_r01_two_batteries.hl7");
    let mut out = String::new();
    for seg in fx.split('\r').filter(|s| !s.is_empty()) {
        if seg.starts_with("OBX") || seg.starts_with("NTE") {
            continue;
        }
        out.push_str(seg);
        out.push('\r');
    }
    out
}

fn lab_with(extra: &str) -> String {
    // Results after the first OBR (the fixture's second OBR carries on afterwards).
    let head = lab_head();
    let cut = head.find("OBR|2|").unwrap();
    format!("{}{extra}{}", &head[..cut], &head[cut..])
}

/// Item 7, generated side: consecutive NTE lines are one comment (no per-line entry), and
/// the size and entry bounds are checked before the document is built.
#[test]
fn generated_documents_are_bounded() {
    let obx = "OBX|1|NM|2345-7^Glucose^LN||5.6|mmol/L|3.5-5.1|H|||F\r";
    let three = lab_with(&format!("{obx}NTE|1||un\rNTE|2||deux\rNTE|3||trois\r"));
    let r = records::lab(three.as_bytes(), &Config::default()).unwrap();
    assert_eq!(
        r.batteries[0].observations[0].comments,
        vec!["un\ndeux\ntrois"]
    );
    // 4 MB of one-character NTE lines: was a 470 MB CDA; now about the input's size.
    let mut nte = String::from(obx);
    while nte.len() < 4 << 20 {
        nte.push_str("NTE|1||x\r");
    }
    let msg = lab_with(&nte);
    let out = normalize(Feed::Lab, msg.as_bytes(), &Config::default()).unwrap();
    let Normalized::Document(d) = &out[0] else {
        panic!("a document")
    };
    let cda = d.cda.as_xml().expect("normalize writes XML");
    assert!(cda.len() < 2 * msg.len(), "{} bytes", cda.len());
    // More results than max_entries: refused before anything is built.
    let many = lab_with(&obx.repeat(5_001));
    assert_eq!(
        normalize(Feed::Lab, many.as_bytes(), &Config::default())
            .unwrap_err()
            .reason,
        Reason::CdaTooLarge
    );
    assert!(
        normalize(
            Feed::Lab,
            lab_with(&obx.repeat(5_000)).as_bytes(),
            &Config::default()
        )
        .is_ok()
    );
    let tiny = Config {
        max_cda_bytes: 20_000,
        ..Config::default()
    };
    assert_eq!(
        normalize(Feed::Lab, lab_with(&obx.repeat(10)).as_bytes(), &tiny)
            .unwrap_err()
            .reason,
        Reason::CdaTooLarge
    );
}

/// Found by fuzz/ embedded_cda: quick-xml takes everything up to `>` as one tag and reads
/// attributes lazily, so a start tag with garbage after its attributes was passed on.
#[test]
fn a_malformed_start_tag_is_refused() {
    let garbled = CDA.replace(
        r#"<id root="1.2.3.4"/>"#,
        r#"<id root="1.2.3.4"/;J<templateId root="1.2"/>"#,
    );
    assert_eq!(outcome(&garbled), Err(Reason::CdaXmlInvalid));
    let bad_name = CDA.replace("<title>t</title>", "<ti;tle>t</ti;tle>");
    assert_eq!(outcome(&bad_name), Err(Reason::CdaXmlInvalid));
    let bad_attr = CDA.replace(r#"<id root="1.2.3.4"/>"#, r#"<id root="1.2.3.4" 9x="1"/>"#);
    assert_eq!(outcome(&bad_attr), Err(Reason::CdaXmlInvalid));
}

/// Found by fuzz/ normalize: quick-xml read `<?xml version="1.0" encoding>"UTF-8"?>` as a
/// declaration, and the ill-formed CDA was passed on. The declaration, processing
/// instructions and comments are now held to XML 1.0.
#[test]
fn a_malformed_declaration_pi_or_comment_is_refused() {
    let with_decl = |decl: &str| format!("{decl}{}", cda(""));
    assert_eq!(
        outcome(&with_decl(r#"<?xml version="1.0" encoding="UTF-8"?>"#)),
        Ok(1)
    );
    assert_eq!(
        outcome(&with_decl("<?xml version='1.0' standalone='yes'?>\n")),
        Ok(1)
    );
    assert_eq!(
        outcome(&with_decl("\u{feff}<?xml version=\"1.0\"?>")),
        Ok(1)
    );
    for bad in [
        r#"<?xml version="1.0" encoding>"UTF-8"?>"#,
        r#"<?xml encoding="UTF-8" version="1.0"?>"#,
        r#"<?xml version="2.0"?>"#,
        r#"<?xml version="1.0" standalone="maybe"?>"#,
        r#" <?xml version="1.0"?>"#,
        r#"<!-- c --><?xml version="1.0"?>"#,
        r#"<?xml version="1.0"?><?xml version="1.0"?>"#,
        r#"<?XmL x?>"#,
        "<!-- a -- b -->",
        "<!-- a --->",
    ] {
        assert_eq!(
            outcome(&with_decl(bad)),
            Err(Reason::CdaXmlInvalid),
            "{bad}"
        );
    }
    assert_eq!(
        outcome(&with_decl("<?pi ok?><!-- fine - comment -->")),
        Ok(1)
    );
}

/// Found by fuzz/ embedded_cda: an attribute with an unbound namespace prefix passed
/// quick-xml. Every received CDA now also goes through a conforming XML 1.0 + Namespaces
/// parser before it is passed on.
#[test]
fn a_cda_that_is_not_namespace_well_formed_is_refused() {
    for bad in [
        CDA.replace("<title>t</title>", r#"<title codeS:x="1">t</title>"#),
        CDA.replace("<title>t</title>", "<u:title>t</u:title>"),
        CDA.replace("<title>t</title>", r#"<title a="1" a="2">t</title>"#),
        CDA.replace(
            "<title>t</title>",
            r#"<title xmlns:p="urn:x" xmlns:q="urn:x" p:a="1" q:a="2">t</title>"#,
        ),
    ] {
        assert_eq!(outcome(&bad), Err(Reason::CdaXmlInvalid), "{bad}");
    }
    let bound = CDA.replace(
        "<title>t</title>",
        r#"<title xmlns:p="urn:x" p:a="1">t</title>"#,
    );
    assert_eq!(outcome(&bound), Ok(1));
}
