//! Feed guessing (`mapping::feed_guess`) on hand-made headers, the bundled demo feeds and
//! the official ANS examples (`../shared/hl7v2-examples`, present in development and CI).

use dmpflow_normalize::mapping::feed_guess::{FeedUnknown, feed_of, guess_feed, message_type};
use dmpflow_schemas::Feed;

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
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for feed in [
        Feed::Lab,
        Feed::Imaging,
        Feed::Pharmacy,
        Feed::Cancer,
        Feed::Identity,
    ] {
        let data = std::fs::read(root.join(format!("demo/{feed}.hl7"))).unwrap();
        let mut n = 0;
        for m in dmpflow_normalize::hl7::split_messages(&data) {
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
