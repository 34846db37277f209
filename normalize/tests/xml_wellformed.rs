//! Property test (issue #16 item 5): random text — printable, accented, other scripts,
//! C0 controls, XML specials, HL7 escapes (`\X00\`, `\X0B\`, `\.br\` ...) and delimiters —
//! put into patient names, OBR, OBX and NTE text, RXD labels of lab, imaging and pharmacy
//! messages. Whatever normalize generates is re-read by roxmltree, a conforming XML 1.0
//! parser; otherwise the message is refused with a reason. Never a panic, never an
//! ill-formed CDA, and never a NUL in what goes to the database.

use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::{Feed, Normalized};
use proptest::prelude::*;

fn fixture(name: &str) -> String {
    let p = format!("{}/tests/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

/// One piece of hostile text.
fn piece() -> impl Strategy<Value = String> {
    // Weighted so that most messages still produce a document (hostile pieces are rarer).
    prop_oneof![
        6 => "[ -~]{0,8}",
        3 => "[a-zA-Zéèàçœ€ÉŒ ]{1,8}",
        2 => prop::sample::select(vec![
            "\\X00\\", "\\X0B\\", "\\X1F\\", "\\X0D\\", "\\X0A\\", "\\X09\\", "\\X41\\",
            "\\XC3A9\\", "\\XEFBFBF\\", "\\XEFBFBE\\", "\\XC3\\", "\\X\\", "\\.br\\", "\\E\\",
            "\\T\\", "\\F\\", "\\S\\", "\\R\\", "\\H\\", "\\N\\", "\\Zx\\", "\\", "<", ">",
            "&", "'", "\"", "]]>", "<!--", "&amp;", "&#0;", "&x;", "|", "^", "~", "&", "\t",
            "\r", "\n", "\u{0}", "\u{1}", "\u{b}", "\u{c}", "\u{1f}", "\u{7f}", "\u{85}",
            "\u{a0}", "\u{2028}", "\u{fffd}", "\u{fffe}", "\u{ffff}", "\u{10ffff}", "漢字",
            "🩺", "ß",
        ])
        .prop_map(str::to_string),
        1 => any::<char>().prop_map(|c| c.to_string()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(piece(), 0..6).prop_map(|v| v.concat())
}

/// Every document is well-formed XML 1.0 and its metadata holds no NUL.
fn check(feed: Feed, msg: &str) -> Result<(), TestCaseError> {
    match normalize(feed, msg.as_bytes(), &Config::default()) {
        Err(e) => {
            prop_assert!(!e.detail.contains('\u{0}'), "NUL in a reject detail");
        }
        Ok(out) => {
            for n in out {
                if let Normalized::Document(d) = n {
                    let cda = d.cda.as_xml().expect("normalize writes XML");
                    if let Err(e) = roxmltree::Document::parse(cda) {
                        return Err(TestCaseError::fail(format!(
                            "ill-formed CDA ({e}) for message {msg:?}"
                        )));
                    }
                    let meta = serde_json::to_string(&d.meta).unwrap();
                    prop_assert!(!meta.contains("\\u0000"), "NUL in metadata");
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn lab_cda_is_well_formed(name in text(), obr in text(), obx in text(), nte in text(), tx in text()) {
        let msg = fixture("lab_oru_r01_two_batteries.hl7")
            .replacen("LÉGER", &name, 1)
            .replacen("Bilan métabolique", &obr, 1)
            .replacen("Résultat corrigé : erreur de saisie \\T\\ recontrôle", &nte, 1)
            .replacen("Frottis : ligne un", &tx, 1)
            .replacen("Groupe A", &obx, 1);
        check(Feed::Lab, &msg)?;
    }

    #[test]
    fn imaging_cda_is_well_formed(name in text(), finding in text(), line in text(), concl in text()) {
        let msg = fixture("imaging_oru_r01.hl7")
            .replacen("MARTIN", &name, 1)
            .replacen("Parenchyme pulmonaire normal", &finding, 1)
            .replacen("Toux persistante depuis 3 semaines.", &line, 1)
            .replacen("Examen normal.", &concl, 1);
        check(Feed::Imaging, &msg)?;
    }

    #[test]
    fn pharmacy_cda_is_well_formed(name in text(), label in text(), unit in text(), given in text()) {
        let msg = fixture("pharmacy_rds_o13.hl7")
            .replacen("SANTONI", &name, 1)
            .replacen("Marie-Ange Lucie", &given, 1)
            .replacen("PARACETAMOL 1 g comprimé", &label, 1)
            .replacen("boîte", &unit, 1);
        check(Feed::Pharmacy, &msg)?;
    }
}

/// The cases that broke the old code, pinned (the generator finds them, but slowly).
#[test]
fn known_bad_text_is_refused_not_emitted() {
    for bad in ["\\X00\\", "\\X0B\\", "\u{0}", "\u{b}", "\\XEFBFBF\\"] {
        let msg = fixture("lab_oru_r01_two_batteries.hl7").replacen("Frottis : ligne un", bad, 1);
        let e = normalize(Feed::Lab, msg.as_bytes(), &Config::default()).unwrap_err();
        assert_eq!(
            e.reason,
            dmpflow_schemas::reasons::Reason::Hl7TextInvalid,
            "{bad:?}"
        );
        assert!(e.detail.starts_with("OBX-5 (segment"), "{}", e.detail);
    }
}
