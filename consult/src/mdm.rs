//! The HL7 v2 message an ITI-65 submission is fed as: an MDM^T02 of the PFI "transmission
//! de documents CDA" volet (domain.md §4.2) carrying the submitted CDA, so that it takes
//! the same path as a document an MLLP sender transmits (normalize's embedded-CDA mapping,
//! route's identity vigilance, the store's lifecycle and dedupe), with nothing of its own.
//!
//! MSH-12 is 2.6, the version the volet gives MDM (the ANS examples and demo/cancer.hl7 use
//! it too); MSH-3 names dmpflow's FHIR edge and MSH-4 the professional's organisation, so
//! the store's (sender, MSH-10) resend key is the edge's. PID is written from the CDA's own
//! recordTarget (INS with its OID as `^^^&OID&ISO^INS`, birth name and first names,
//! birth date, sex, birth place): the message then names exactly the patient the document
//! does, and PID-3 keys the record like the gateway (the INS). A PRT "SB" names the
//! professional who sent it (SC.DMP/CONF.12). Every value is escaped with the hl7 crate's
//! encoder; the CDA travels as canonical base64 (no line breaks) in OBX-5.5.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dmpflow_hl7::{Charset, Delimiters, encode};
use dmpflow_normalize::mapping::ReceivedCda;

/// IdNat_PS, the assigning authority of the sending professional's identifier.
const IDNAT_PS: &str = "1.2.250.1.71.4.2.1";
/// LOINC, the code system of most CI-SIS document types (OBX-3.3 `LN`).
const LOINC: &str = "2.16.840.1.113883.6.1";
/// MSH-3: the sending application.
pub const SENDING_APPLICATION: &str = "DMPFLOW-FHIR";

/// What the message says besides the CDA.
#[derive(Debug, Clone)]
pub struct Envelope<'a> {
    /// MSH-10: unique per submission (a resubmission is a new message; the CDA's uniqueId
    /// makes it a duplicate in the store).
    pub control_id: &'a str,
    /// MSH-7 / EVN-2, an HL7 DTM.
    pub timestamp: &'a str,
    /// The professional's organisation (MSH-4), when the token names one.
    pub organisation: Option<&'a str>,
    /// The professional (PRT-5), as the token names them.
    pub professional: &'a str,
}

/// The MDM^T02 carrying `cda` (its header read into `header`), segments ended by CR.
pub fn mdm_t02(env: &Envelope<'_>, header: &ReceivedCda, cda: &[u8]) -> String {
    let d = Delimiters::standard(Charset::Utf8);
    let e = |s: &str| encode(s, &d);
    let p = &header.patient;
    let first = p.first_names.first().map(String::as_str).unwrap_or("");
    let birth = p.birth_date.replace('-', "");
    let birth_place = p
        .birth_place
        .as_deref()
        .map(|b| format!("^^^^^^BDL^^{}", e(b)))
        .unwrap_or_default();
    let type_code = header.type_code.as_deref().unwrap_or("");
    let type_system = match header.type_code_system.as_deref() {
        None | Some(LOINC) => "LN".to_owned(),
        Some(other) => e(other),
    };
    // TXA-12 (unique document number): `ext^^root^ISO`, or the root alone (an OID).
    let txa12 = match header.unique_id.as_deref().and_then(|u| u.split_once('^')) {
        Some((root, ext)) => format!("{}^^{}^ISO", e(ext), e(root)),
        None => e(header.unique_id.as_deref().unwrap_or("")),
    };
    let ts = e(env.timestamp);
    let mut m = String::with_capacity(cda.len() * 4 / 3 + 1024);
    m.push_str(&format!(
        "MSH|^~\\&|{SENDING_APPLICATION}|{org}|DMPFLOW|DMP|{ts}||MDM^T02^MDM_T02|{ctrl}|P|2.6|||||FRA|UNICODE UTF-8|||2.1^CISIS_CDA_HL7_V2\r",
        org = e(env.organisation.unwrap_or("")),
        ctrl = e(env.control_id),
    ));
    m.push_str(&format!("EVN||{ts}\r"));
    m.push_str(&format!(
        "PID|1||{ins}^^^&{oid}&ISO^INS||{family}^{first}^{firsts}^^^^L||{birth}|{sex}|||{birth_place}\r",
        ins = e(&p.ins),
        oid = e(&p.ins_oid),
        family = e(&p.birth_name),
        first = e(first),
        firsts = e(&p.first_names.join(" ")),
        sex = e(&p.sex),
    ));
    m.push_str("PV1|1|N\r");
    m.push_str(&format!(
        "TXA|1|{ty}|TEXT|{eff}||||||||{txa12}||||||LA\r",
        ty = e(type_code),
        eff = e(header.effective_time.as_deref().unwrap_or("")),
    ));
    m.push_str(&format!(
        "PRT|1|UC|SB^Send by^participation||{pro}^^^^^^^^&{IDNAT_PS}&ISO\r",
        pro = e(env.professional),
    ));
    m.push_str(&format!(
        "OBX|1|ED|{ty}^^{type_system}||^text^XML^Base64^",
        ty = e(type_code),
    ));
    STANDARD.encode_string(cda, &mut m);
    m.push_str("||||||F\r");
    m
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dmpflow_normalize::{Config, normalize};
    use dmpflow_schemas::{Feed, Normalized};

    /// The first document of demo/cancer.hl7 (a CI-SIS CR de RCP), as a submitter sends it.
    pub(crate) fn demo_cda() -> String {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/cancer.hl7"))
                .unwrap();
        let obx = text
            .split(['\r', '\n'])
            .find(|s| s.starts_with("OBX|1|ED|"))
            .unwrap();
        let b64 = obx.split('|').nth(5).unwrap().split('^').nth(4).unwrap();
        String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap()
    }

    #[test]
    fn the_message_normalizes_to_the_same_cda_and_patient() {
        let cda = demo_cda();
        let cfg = Config::default();
        let header = dmpflow_normalize::mapping::read_received_cda(&cda, &cfg).unwrap();
        let env = Envelope {
            control_id: "F18c0a1b2c3d000001",
            timestamp: "20260301101500+0000",
            organisation: Some("1123456789|^&"),
            professional: "810000000001",
        };
        let mdm = mdm_t02(&env, &header, cda.as_bytes());
        assert!(mdm.starts_with("MSH|^~\\&|DMPFLOW-FHIR|1123456789\\F\\\\S\\\\T\\|"));
        let items = normalize(Feed::Documents, mdm.as_bytes(), &cfg).unwrap();
        let [Normalized::Document(d)] = items.as_slice() else {
            panic!("one document expected");
        };
        assert_eq!(d.cda, dmpflow_schemas::Cda::Xml(cda.clone()));
        assert_eq!(d.meta.patient.ins, header.patient.ins);
        assert_eq!(d.meta.patient.birth_name, header.patient.birth_name);
        assert_eq!(Some(&d.meta.unique_id), header.unique_id.as_ref());
        assert_eq!(d.meta.source.control_id, "F18c0a1b2c3d000001");
        // Keyed like the gateway keys it: by the INS of PID-3.
        assert_eq!(
            dmpflow_hl7::keys::key_of_raw(mdm.as_bytes(), 1 << 24),
            header.patient.ins
        );
    }
}
