//! The HL7 v2 reader against the outside world: a differential test with hl7-parser 0.3
//! (the dev-dependency oracle) on plain ASCII, property tests (no panic, escapes round-trip,
//! errors always carry a stable code), and every official ANS example read correctly.

use dmpflow_normalize::hl7::{Charset, Delimiters, Message, ReadOptions, decode, encode};
use dmpflow_schemas::reasons::Reason;
use proptest::prelude::*;

fn opts() -> ReadOptions {
    ReadOptions::default()
}

/// Same segments, same field/repetition/component/subcomponent values as hl7-parser.
fn assert_same_as_oracle(text: &str) {
    let ours = Message::parse(text.as_bytes(), &opts()).expect("our reader accepts it");
    let theirs = hl7_parser::Message::parse(text).expect("oracle accepts it");
    let their_segs: Vec<_> = theirs.segments().collect();
    assert_eq!(ours.segment_count(), their_segs.len(), "segment count");
    for (o, t) in ours.all().zip(their_segs) {
        assert_eq!(o.name(), t.name);
        assert_eq!(o.field_count(), t.fields.len(), "field count of {}", t.name);
        for (n, tf) in t.fields.iter().enumerate() {
            let of = o.field(n + 1);
            assert_eq!(of.raw(), tf.raw_value(), "{}-{}", t.name, n + 1);
            if t.name == "MSH" && n < 2 {
                continue;
            }
            assert_eq!(of.repetitions().count(), tf.repeats.len());
            for (r, tr) in tf.repeats.iter().enumerate() {
                let or = of.repetition(r + 1);
                assert_eq!(or.raw(), tr.raw_value());
                assert_eq!(or.components().count(), tr.components.len());
                for (c, tc) in tr.components.iter().enumerate() {
                    let oc = or.component(c + 1);
                    assert_eq!(oc.raw(), tc.raw_value());
                    assert_eq!(oc.subs().count(), tc.subcomponents.len());
                    for (s, ts) in tc.subcomponents.iter().enumerate() {
                        assert_eq!(oc.sub(s + 1).raw(), ts.raw_value());
                    }
                }
            }
            // The field-level shortcut takes the first repetition, as hl7-parser does.
            if let Some(tc) = tf.component(1) {
                assert_eq!(of.component(1).raw(), tc.raw_value());
            }
        }
    }
}

const LAB: &str = "MSH|^~\\&|SIL|LAB01|DMP|X|20240315143025+0100||ORU^R01^ORU_R01|MSG0001|P|2.5|||||FRA|UNICODE UTF-8\rPID|1||248059912345678^^^&1.2.250.1.213.1.4.8&ISO^INS~IPP0012345^^^LAB&1.2.3&ISO^PI||MARTIN^Claire^Claire Anne^^^^L||19480512|F\rPV1|1|O\rORC|NW|CMD123^SIL||||||||||801234567866^MEDECIN^Paul\rOBR|1|CMD123^SIL|RES123^SIL|24331-1^Bilan lipidique^LN|||20240315080000\rOBX|1|NM|2345-7^Glucose^LN||5.6|mmol/L|3.5-5.1|H|||F|||20240315090000\rOBX|2|SN|2160-0^Creatinine^LN||<^40|umol/L|45-90|L|||F\rOBX|3|CE|11156-7^Aspect^LN||CLAIR^Clair^L||||||F\rNTE|1||Commentaire simple\r";

#[test]
fn differential_on_a_realistic_lab_message() {
    assert_same_as_oracle(LAB);
}

#[test]
fn differential_on_edge_shapes() {
    // Not compared: a bare `MSH|^~\&` with no MSH-3, where hl7-parser invents an empty
    // third field; we report the two fields that are there.
    for m in [
        "MSH|^~\\&|A\r",
        "MSH|^~\\&|A|B\rPID|\rZZZ|||\rOBX|1|~~|^^&&|\r",
        "MSH|^~\\&|A||||||ORU^R01|1|P|2.5\rNTE|1||a~b^c&d~&&^\r",
    ] {
        assert_same_as_oracle(m);
    }
}

fn ascii_value() -> impl Strategy<Value = String> {
    // Values without escapes, with every delimiter the grammar can hold inside a field.
    proptest::string::string_regex("[A-Za-z0-9 .\\-/^~&]{0,12}").expect("regex")
}

fn ascii_segment() -> impl Strategy<Value = String> {
    (
        "[A-Z][A-Z0-9]{2}",
        // At least one field: hl7-parser stops (silently) at a bare segment name.
        proptest::collection::vec(ascii_value(), 1..8),
    )
        .prop_filter("not a header", |(n, _)| {
            !matches!(n.as_str(), "MSH" | "BHS" | "FHS")
        })
        .prop_map(|(name, fields)| {
            let mut s = name;
            for f in fields {
                s.push('|');
                s.push_str(&f);
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn differential_on_generated_ascii(segs in proptest::collection::vec(ascii_segment(), 0..6),
                                       head in proptest::collection::vec(ascii_value(), 1..10)) {
        let mut m = String::from("MSH|^~\\&");
        for f in head { m.push('|'); m.push_str(&f); }
        m.push('\r');
        for s in segs { m.push_str(&s); m.push('\r'); }
        assert_same_as_oracle(&m);
    }

    #[test]
    fn no_input_panics_and_errors_are_stable(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_any(&bytes);
        let mut framed = b"MSH|^~\\&|".to_vec();
        framed.extend_from_slice(&bytes);
        check_any(&framed);
    }

    #[test]
    fn segments_named_like_headers_never_panic(names in proptest::collection::vec("(MSH|BHS|FHS|PID)[|^]?", 0..5)) {
        let m = format!("MSH|^~\\&|A\r{}", names.join("\r"));
        check_any(m.as_bytes());
    }

    #[test]
    fn text_with_delimiters_and_escapes_never_panics(s in "[A-Z|^~&\\\\\r\nXé.br0-9]{0,80}") {
        let m = format!("MSH|^~\\&|A\rNTE|1||{s}");
        check_any(m.as_bytes());
    }

    #[test]
    fn escapes_round_trip(s in any::<String>()) {
        let d = Delimiters::standard(Charset::Utf8);
        let enc = encode(&s, &d);
        prop_assert_eq!(decode(&enc, &d), s.as_str());
        // And through a whole message, with a multi-byte repetition separator.
        let d2 = Delimiters { repetition: '˜', ..d };
        let msg = format!("MSH|^˜\\&|A\rNTE|1||{}\r", encode(&s, &d2));
        let m = Message::parse(msg.as_bytes(), &opts()).unwrap();
        let nte = m.segment("NTE").unwrap();
        prop_assert_eq!(nte.field(3).decoded(), s.as_str());
    }
}

/// Reading anything either succeeds (and every accessor is safe) or fails with a code.
fn check_any(bytes: &[u8]) {
    let small = ReadOptions {
        max_message_bytes: 250,
        max_segment_bytes: 120,
        max_field_bytes: 40,
        ..ReadOptions::default()
    };
    for o in [opts(), small] {
        match Message::parse(bytes, &o) {
            Ok(m) => {
                for s in m.all() {
                    for n in 0..12 {
                        let f = s.field(n);
                        let _ = f.decoded();
                        for r in f.repetitions() {
                            for c in r.components() {
                                for sc in c.subs() {
                                    let _ = sc.decoded();
                                }
                            }
                        }
                        let _ = f.repetition(2).component(3).sub(2).decoded();
                    }
                }
            }
            Err(e) => {
                assert_eq!(Reason::parse(e.reason.as_str()), Some(e.reason));
                assert!(e.reason.as_str().starts_with("hl7."), "{}", e.reason);
            }
        }
    }
}

// ---- the official ANS examples ----

fn example(rel: &str) -> Vec<u8> {
    let p = format!(
        "{}/../../shared/hl7v2-examples/{rel}",
        env!("CARGO_MANIFEST_DIR")
    );
    // A missing example must fail the test, never skip it.
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

const ALL_EXAMPLES: &[&str] = &[
    "ORU/Transmission initiale ORU/message_ORU_CR_Bio_INIT_N1_N3.hl7",
    "ORU/Remplacement ORU/message_ORU_CR_Bio_RPLC_N1_N3.er7",
    "ORU/Remplacement ORU/message_ORU_CR_Bio_RPLC_N1_Base64_N3_Base64.er7",
    "ORU/Suppression ORU/message_ORU_CR_Bio_DEL_N1_N3.er7",
    "ORU/Suppression ORU/message_ORU_CR_Bio_DEL_N1_Base64_N3_Base64.er7",
    "MDM/Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1.er7",
    "MDM/Transmission initiale MDM/message_MDM_CR_Radio_INIT_N1_Base64.er7",
    "MDM/Remplacement MDM/message_MDM_CR_Radio_RPLC_N1.er7",
    "MDM/Suppression MDM/message_MDM_CR_Radio_DEL_N1.er7",
];

#[test]
fn every_ans_example_is_read() {
    for rel in ALL_EXAMPLES {
        let raw = example(rel);
        let m = Message::parse(&raw, &opts()).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(m.is_borrowed(), "{rel}: UTF-8 input must be borrowed");
        let names: Vec<&str> = m.all().map(|s| s.name()).collect();
        assert_eq!(names[0], "MSH", "{rel}");
        assert!(names.contains(&"PID") && names.contains(&"OBX"), "{rel}");
        let msh = m.segment("MSH").unwrap();
        assert_eq!(msh.field(18).raw(), "UNICODE UTF-8", "{rel}");
        assert_eq!(msh.field(10).raw(), "015");
        let pid = m.segment("PID").unwrap();
        let ins = pid
            .field(3)
            .repetitions()
            .find(|r| r.component(5).raw() == "INS")
            .expect("INS repetition");
        assert_eq!(ins.component(1).raw().len(), 15);
        assert_eq!(ins.component(4).sub(2).raw(), "1.2.250.1.213.1.4.8");
        // PID-11 second repetition is the birth place (BDL), INSEE code in XAD.9.
        let bdl = pid.field(11).repetition(2);
        assert_eq!(bdl.component(7).raw(), "BDL", "{rel}");
        assert_eq!(bdl.component(9).raw(), "63220", "{rel}");
        assert_eq!(pid.field(32).raw(), "VALI");
        // The document OBX carries its content in OBX-5.5; accents survive.
        let obx: Vec<_> = m.segments("OBX").collect();
        assert_eq!(obx[0].field(2).raw(), "ED");
        assert!(obx[0].field(5).component(5).raw().len() > 40);
        assert!(
            obx.iter()
                .any(|o| o.field(3).component(2).decoded() == "Masqué aux professionnels de Santé")
        );
    }
}

#[test]
fn oru_examples_use_a_non_ascii_repetition_separator() {
    let raw = example("ORU/Transmission initiale ORU/message_ORU_CR_Bio_INIT_N1_N3.hl7");
    let m = Message::parse(&raw, &opts()).unwrap();
    assert_eq!(m.delimiters().repetition, '˜');
    assert_eq!(m.segment("MSH").unwrap().field(2).raw(), "^˜\\&");
    assert_eq!(
        m.segment("MSH").unwrap().field(9).component(3).raw(),
        "ORU_R01"
    );
    assert_eq!(m.segments("OBX").count(), 13);
    assert_eq!(m.segments("PRT").count(), 4);
    let base64 = example("ORU/Remplacement ORU/message_ORU_CR_Bio_RPLC_N1_Base64_N3_Base64.er7");
    let m = Message::parse(&base64, &opts()).unwrap();
    let docs: Vec<_> = m
        .segments("OBX")
        .filter(|o| o.field(2).raw() == "ED" && o.field(3).component(3).raw() == "LN")
        .collect();
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].field(5).component(5).raw().len(), 608932);
    assert_eq!(docs[1].field(11).raw(), "C");
}
