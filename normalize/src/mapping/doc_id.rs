//! Document ids (issue #16 item 10): a uniqueId, setId or replaced-document id must be a
//! valid XDS uniqueId before it is stored, routed, or used to name a file.
//!
//! The rule (ITI TF-3 DocumentEntry.uniqueId, tightened where XDS is loose):
//! - `OID` or `OID^extension`, or a UUID alone (`8-4-4-4-12` hex digits: a CDA `II` root
//!   may be a UUID);
//! - OID: at least two arcs of decimal digits separated by single dots, no arc with a
//!   leading zero (`0` itself is an arc), first arc 0, 1 or 2;
//! - extension: 1 or more printable ASCII characters (0x21-0x7E) except the HL7
//!   delimiters `^ | ~ & \`, the path separator `/`, the XML-special `< > " '` and the
//!   file-name-special `: * ?`; and never `..`;
//! - at most 64 characters in all (`root^extension`).
//!
//! So a valid id never holds `/`, `\` or `..`, and `dmpflow normalize` may name a file
//! after it.

use dmpflow_schemas::reasons::{Reason, Reject};

/// XDS: the whole uniqueId (`root^extension`) is at most 64 characters.
pub const MAX_LEN: usize = 64;

fn is_oid(s: &str) -> bool {
    let mut arcs = 0;
    for (i, arc) in s.split('.').enumerate() {
        let b = arc.as_bytes();
        if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
            return false;
        }
        if i == 0 && !matches!(arc, "0" | "1" | "2") {
            return false;
        }
        arcs += 1;
    }
    arcs >= 2
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_extension(s: &str) -> bool {
    !s.is_empty()
        && !s.contains("..")
        && s.bytes()
            .all(|c| (0x21..=0x7E).contains(&c) && !b"^|~&\\/<>\"':*?".contains(&c))
}

/// Whether `id` is a valid document uniqueId (module rule).
pub fn is_valid(id: &str) -> bool {
    if id.len() > MAX_LEN {
        return false;
    }
    match id.split_once('^') {
        None => is_oid(id) || is_uuid(id),
        Some((root, ext)) => is_oid(root) && is_extension(ext),
    }
}

/// `cda.id.invalid` unless `id` is valid. `what` names the id's place (never its value:
/// an id may have been built from patient data by a careless sender).
pub fn check(id: &str, what: &str) -> Result<(), Reject> {
    if is_valid(id) {
        Ok(())
    } else {
        Err(Reject::new(
            Reason::CdaIdInvalid,
            format!(
                "{what} is not a valid document id (OID, OID^extension or UUID, at most \
                 {MAX_LEN} characters, no path or delimiter characters)"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::derived_oid;

    #[test]
    fn valid_ids() {
        for id in [
            "1.2.250.1.213.1.1.9",
            "1.2.250.1.999.1^LAB-0001.v2",
            "2.25.329800735698586629295641978511506172918",
            "0.1",
            "1.2.3^a_b-c.d#1",
            "6F9619FF-8B86-D011-B42D-00C04FC964FF",
            "6f9619ff-8b86-d011-b42d-00c04fc964ff",
        ] {
            assert!(is_valid(id), "{id}");
        }
        // What dmpflow derives is always valid (u128 → at most 39 digits after 2.25.).
        assert!(is_valid(&derived_oid(&["doc", "x"])));
        assert!(is_valid(&format!("2.25.{}", u128::MAX)));
    }

    #[test]
    fn invalid_ids() {
        let long = format!("1.2.3^{}", "x".repeat(59));
        for id in [
            "",
            "../../x",
            "/tmp/x",
            "1.2.3^../x",
            "1.2.3^a/b",
            "1.2.3^a\\b",
            "1.2.3^..",
            "1.2.3^a b",
            "1.2.3^",
            "1.2.3^a^b",
            "1.02.3",
            "1..2",
            ".1.2",
            "1.2.",
            "3.1.2",
            "1",
            "1.2.x",
            "abc",
            "6F9619FF-8B86-D011-B42D-00C04FC964FF^x",
            "6F9619FF8B86D011B42D00C04FC964FF",
            "1.2.3^é",
            "1.2.3^a\u{0}",
            long.as_str(),
        ] {
            assert!(!is_valid(id), "{id:?}");
        }
        assert!(is_valid(&long[..64]));
        let e = check("../../x", "ClinicalDocument/id").unwrap_err();
        assert_eq!(e.reason, Reason::CdaIdInvalid);
        assert!(!e.detail.contains("../"), "the value is not echoed");
    }
}
