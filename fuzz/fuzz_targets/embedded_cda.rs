//! Fuzz target: the embedded-CDA reader, reached the way a sender reaches it: the input is
//! the document, base64-encoded into OBX-5.5 of a fixed MDM^T02 (demo patient), and the
//! message goes through `normalize::normalize` on the cancer feed. Checks, besides "no
//! panic": an accepted document is passed on byte for byte (less a BOM) and is well-formed
//! XML 1.0 without a DTD, rooted at v3 `ClinicalDocument`, by a conforming parser.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dmpflow_fuzz::assert_cda;
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::{Feed, Normalized};
use libfuzzer_sys::fuzz_target;

/// The first message of demo/cancer.hl7 up to OBX-5.4, then the document, then the rest.
/// Its PID matches the recordTarget of the seeds in fuzz/seeds/embedded_cda/.
const HEAD: &str = "MSH|^~\\&|DCC-DEMO|RRC-DEMO|DMPFLOW|DMP-HOST|20241101095200||MDM^T02^MDM_T02|RCP00001|P|2.6|||||FRA|UNICODE UTF-8\r\
EVN||20241101095200\r\
PID|1||246013306364358^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS~IPP364358^^^DEMO-GAM&1.2.250.1.999.1.1&ISO^PI||RICHARD^HÉLÈNE^HÉLÈNE^^^^L||19460128|F|||^^^^^^BDL^^33063|||||||||||||||||||||VALI\r\
PV1|1|O\r\
TXA|1|34794-8|TEXT|20241101095200||||||||1.2.250.1.999.3.1||||||LA\r\
OBX|1|ED|34794-8^CR de RCP^LN||^text^XML^Base64^";
const TAIL: &str = "||||||F\r\
OBX|2|CWE|MASQUE_PS^Masqué aux professionnels de Santé^MetaDMPMSS||N^^HL70136||||||F\r\
OBX|3|CWE|INVISIBLE_PATIENT^Document Non Visible par le patient^MetaDMPMSS||N^^HL70136||||||F\r";

fuzz_target!(|data: &[u8]| {
    let mut msg = String::with_capacity(HEAD.len() + data.len() * 4 / 3 + TAIL.len() + 4);
    msg.push_str(HEAD);
    STANDARD.encode_string(data, &mut msg);
    msg.push_str(TAIL);
    let Ok(items) = normalize(Feed::Cancer, msg.as_bytes(), &Config::default()) else {
        return;
    };
    assert_eq!(items.len(), 1, "one ED OBX, one document");
    let Normalized::Document(d) = &items[0] else {
        panic!("an MDM^T02 gave a patient update");
    };
    let sent = std::str::from_utf8(data).expect("an accepted document is UTF-8");
    let sent = sent.strip_prefix('\u{feff}').unwrap_or(sent);
    let cda = d.cda.as_xml().expect("normalize passes XML on");
    assert_eq!(cda, sent, "the received CDA is not passed on unchanged");
    assert_cda(cda, "embedded CDA");
});
