//! The INS matricule check (15 characters, 2A/2B Corsica rule, mod-97 key) and the OID
//! policy (NIR/NIA accepted, test/demo only when configured). Pure functions; details
//! name positions and lengths, never the INS itself, so they can go to logs and headers.

use dmpflow_schemas::reasons::Reason;

use crate::RouteConfig;

// The OIDs themselves live in schemas (normalize and the registry import read them too).
pub use dmpflow_schemas::ins::{INS_OIDS, OID_NIA, OID_NIR, OID_NIR_DEMO, OID_NIR_TEST};

/// Checks the INS matricule (format and key) and then its OID.
///
/// Format and key come first: a malformed matricule is a data error whatever its OID says.
pub fn check_ins(ins: &str, oid: &str, cfg: &RouteConfig) -> Result<(), (Reason, String)> {
    check_matricule(ins).map_err(|d| (Reason::InsKeyInvalid, d))?;
    check_oid(oid, cfg).map_err(|d| (Reason::InsOidRejected, d))
}

/// The key the 13-character body should carry, or `None` when the body is malformed.
/// Exposed so tests and tools can build valid matricules; 2A/2B count as 19/18 here only.
pub fn compute_key(body: &str) -> Option<u8> {
    let b = body.as_bytes();
    if b.len() != 13 {
        return None;
    }
    // Positions 6-7 (indices 5-6) may hold the Corsica department instead of digits.
    let corsica = match (b[5], b[6]) {
        (b'2', b'A') => Some(19),
        (b'2', b'B') => Some(18),
        _ => None,
    };
    let mut n: u64 = 0;
    for (i, &c) in b.iter().enumerate() {
        if let Some(dept) = corsica
            && (i == 5 || i == 6)
        {
            if i == 5 {
                n = n * 100 + dept;
            }
            continue;
        }
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(c - b'0');
    }
    // 97 - (n mod 97) is in 1..=97; the written key is two digits, so 97 is "97".
    Some((97 - n % 97) as u8)
}

fn check_matricule(ins: &str) -> Result<(), String> {
    if !ins.is_ascii() {
        // Count characters, not bytes, so the detail matches what a person sees.
        return Err(format!(
            "non-ASCII character (length {})",
            ins.chars().count()
        ));
    }
    let b = ins.as_bytes();
    if b.len() != 15 {
        return Err(format!("length {}, expected 15", b.len()));
    }
    for (i, &c) in b.iter().enumerate() {
        let ok = match i {
            5 => c.is_ascii_digit() || (c == b'2' && matches!(b[6], b'A' | b'B')),
            6 => c.is_ascii_digit() || (b[5] == b'2' && matches!(c, b'A' | b'B')),
            _ => c.is_ascii_digit(),
        };
        if !ok {
            let what = if matches!(i, 5 | 6) {
                "not a digit nor 2A/2B"
            } else {
                "not a digit"
            };
            return Err(format!("position {} {what}", i + 1));
        }
    }
    let expected = compute_key(&ins[..13]).ok_or_else(|| "malformed body".to_string())?;
    let written = (b[13] - b'0') * 10 + (b[14] - b'0');
    if written != expected {
        return Err("key mismatch".into());
    }
    Ok(())
}

fn check_oid(oid: &str, cfg: &RouteConfig) -> Result<(), String> {
    match oid {
        OID_NIR | OID_NIA => Ok(()),
        OID_NIR_TEST | OID_NIR_DEMO if cfg.accept_test_oids => Ok(()),
        OID_NIR_TEST => Err(format!(
            "{OID_NIR_TEST} (INS test) refused: test OIDs not enabled"
        )),
        OID_NIR_DEMO => Err(format!(
            "{OID_NIR_DEMO} (INS demo) refused: test OIDs not enabled"
        )),
        "" => Err("OID missing".into()),
        other => {
            // An OID is not patient data, but a mis-mapped field could put anything here:
            // only echo values that look like an OID, and never long ones.
            let looks_like_oid =
                other.len() <= 64 && other.bytes().all(|c| c.is_ascii_digit() || c == b'.');
            if looks_like_oid {
                Err(format!("OID {other} is not an INS OID"))
            } else {
                Err(format!("OID value is not an OID (length {})", other.len()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PROD: RouteConfig = RouteConfig {
        accept_test_oids: false,
    };
    const TEST: RouteConfig = RouteConfig {
        accept_test_oids: true,
    };

    fn key_err(ins: &str) -> String {
        match check_ins(ins, OID_NIR, &PROD) {
            Err((Reason::InsKeyInvalid, d)) => d,
            other => panic!("expected ins.key.invalid, got {other:?}"),
        }
    }

    #[test]
    fn valid_examples_pass() {
        for ins in [
            "279035121518989", // ANS test INS (CR-BIO example)
            "277076322082910", // ANS examples
            "274075176079430",
            "253072B07300470", // Corsica 2B
            "253072A07300443", // Corsica 2A
        ] {
            assert_eq!(check_ins(ins, OID_NIR, &PROD), Ok(()), "{ins}");
            assert_eq!(check_ins(ins, OID_NIA, &PROD), Ok(()), "{ins}");
        }
    }

    #[test]
    fn corsica_key_uses_19_and_18() {
        assert_eq!(compute_key("253072B073004"), Some(70));
        assert_eq!(compute_key("253072A073004"), Some(43));
        // The same body with 2A and 2B must not share a key: the letter matters.
        assert_ne!(compute_key("253072B073004"), compute_key("253072A073004"));
        // Swapping the Corsica keys is caught.
        assert_eq!(key_err("253072B07300443"), "key mismatch");
        assert_eq!(key_err("253072A07300470"), "key mismatch");
    }

    #[test]
    fn wrong_key_is_rejected_without_echoing_the_ins() {
        let d = key_err("279035121518988");
        assert_eq!(d, "key mismatch");
        assert!(!d.contains("2790351215189"));
    }

    #[test]
    fn wrong_length_is_rejected() {
        assert_eq!(key_err("27903512151898"), "length 14, expected 15");
        assert_eq!(key_err("2790351215189890"), "length 16, expected 15");
        assert_eq!(key_err(""), "length 0, expected 15");
    }

    #[test]
    fn letters_are_rejected() {
        assert_eq!(key_err("27903512151898X"), "position 15 not a digit");
        assert_eq!(key_err("A79035121518989"), "position 1 not a digit");
        // Letters other than 2A/2B at positions 6-7, or A/B without the leading 2.
        assert_eq!(
            key_err("253072C07300443"),
            "position 7 not a digit nor 2A/2B"
        );
        assert_eq!(
            key_err("253073A07300443"),
            "position 7 not a digit nor 2A/2B"
        );
        assert_eq!(
            key_err("25307A207300443"),
            "position 6 not a digit nor 2A/2B"
        );
        // Lower-case Corsica letters are not the stored form.
        assert_eq!(
            key_err("253072a07300443"),
            "position 7 not a digit nor 2A/2B"
        );
        assert_eq!(key_err("2790351215189 9"), "position 14 not a digit");
    }

    #[test]
    fn non_ascii_is_rejected() {
        assert_eq!(
            key_err("27903512151898é"),
            "non-ASCII character (length 15)"
        );
    }

    #[test]
    fn oid_policy() {
        let ins = "279035121518989";
        assert_eq!(check_ins(ins, OID_NIR, &PROD), Ok(()));
        assert_eq!(check_ins(ins, OID_NIA, &PROD), Ok(()));
        for oid in [OID_NIR_TEST, OID_NIR_DEMO] {
            let (r, d) = check_ins(ins, oid, &PROD).unwrap_err();
            assert_eq!(r, Reason::InsOidRejected);
            assert!(d.contains("test OIDs not enabled"), "{d}");
            assert_eq!(check_ins(ins, oid, &TEST), Ok(()));
        }
        // INS-C (legacy) and the CI-SIS templateId wrongly used as an INS OID.
        for oid in [
            "1.2.250.1.213.1.4.2",
            "1.2.250.1.213.1.1.1",
            "",
            "1.2.250.1.213.1.4.8 ",
        ] {
            let (r, _) = check_ins(ins, oid, &TEST).unwrap_err();
            assert_eq!(r, Reason::InsOidRejected, "{oid:?}");
        }
        let (_, d) = check_ins(ins, "DUPONT JEAN", &PROD).unwrap_err();
        assert!(!d.contains("DUPONT"), "{d}");
    }

    #[test]
    fn key_is_checked_before_oid() {
        let (r, _) = check_ins("279035121518988", "1.2.3", &PROD).unwrap_err();
        assert_eq!(r, Reason::InsKeyInvalid);
    }

    #[test]
    fn default_config_refuses_test_oids() {
        assert!(!RouteConfig::default().accept_test_oids);
    }

    proptest! {
        #[test]
        fn check_ins_never_panics(ins in "\\PC{0,20}", oid in "\\PC{0,30}", t in any::<bool>()) {
            let _ = check_ins(&ins, &oid, &RouteConfig { accept_test_oids: t });
        }

        #[test]
        fn check_ins_never_panics_on_near_misses(ins in "[0-9AB2]{13,17}") {
            let _ = check_ins(&ins, OID_NIR, &PROD);
        }

        #[test]
        fn body_with_its_key_passes(
            head in "[0-9]{5}",
            dept in prop_oneof!["[0-9]{2}", Just("2A".to_string()), Just("2B".to_string())],
            tail in "[0-9]{6}",
        ) {
            let body = format!("{head}{dept}{tail}");
            let key = compute_key(&body).unwrap();
            let ins = format!("{body}{key:02}");
            prop_assert_eq!(check_ins(&ins, OID_NIR, &PROD), Ok(()));
            // Any other key fails.
            let wrong = format!("{body}{:02}", (key % 97) + 1);
            prop_assert!(check_ins(&wrong, OID_NIR, &PROD).is_err());
        }
    }
}
