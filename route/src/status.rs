//! Identity statuses: which PID-32 values (HL7 table 0445, RNIV attributes) and which
//! registry statuses let a document be filed under an INS.
//!
//! A fictitious, doubtful or provisional identity is never qualified, whatever else the
//! sender states next to it: "VALI~FICTI" is a fictitious identity that was once
//! validated, not a valid one. So the disqualifying values win over every qualifying one,
//! wherever they stand in the list (the embedded-CDA reader puts "QUAL" first and the
//! PID-32 values after it).

/// Values that rule out a qualified identity: fictitious (FICTI, table 0445 FICT),
/// doubtful (DOUTE, table 0445 DOUT) and provisional (PROV). Canonical spellings, upper
/// case; comparison ignores case and surrounding spaces.
pub const DISQUALIFYING: [&str; 5] = ["FICTI", "FICT", "DOUTE", "DOUT", "PROV"];

/// The sender states a qualified identity with PID-32 VALI, or "QUAL" for a received CDA.
const QUALIFYING_DOC: [&str; 2] = ["VALI", "QUAL"];
/// The registry's qualified statuses.
const QUALIFYING_REG: [&str; 2] = ["QUAL", "VALI"];

fn same(value: &str, code: &str) -> bool {
    value.trim().eq_ignore_ascii_case(code)
}

/// The first disqualifying status among `values`, as its canonical code (safe for
/// details: it is one of [`DISQUALIFYING`], never the sender's text).
pub fn disqualifying(values: &[String]) -> Option<&'static str> {
    values
        .iter()
        .find_map(|v| DISQUALIFYING.iter().find(|d| same(v, d)).copied())
}

/// Whether the statuses a document carries make its identity qualified: at least one
/// qualifying value and no disqualifying one. `Err` says why, without patient data.
pub fn document_status(values: &[String]) -> Result<(), String> {
    if let Some(d) = disqualifying(values) {
        return Err(format!(
            "document identity status {d} rules out a qualified identity"
        ));
    }
    if !values
        .iter()
        .any(|v| QUALIFYING_DOC.iter().any(|q| same(v, q)))
    {
        return Err("document identity status is neither VALI nor QUAL".into());
    }
    Ok(())
}

/// Whether a registry record's status is qualified.
pub fn registry_qualified(status: &str) -> bool {
    QUALIFYING_REG.iter().any(|q| same(status, q))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn disqualifying_values_win_wherever_they_stand() {
        for bad in ["FICTI", "FICT", "DOUTE", "DOUT", "PROV", " ficti "] {
            for list in [
                v(&["VALI", bad]),
                v(&[bad, "VALI"]),
                v(&["QUAL", "VALI", bad]),
            ] {
                let e = document_status(&list).unwrap_err();
                assert!(e.contains("rules out"), "{list:?}: {e}");
            }
        }
        assert_eq!(disqualifying(&v(&["QUAL", "ficti"])), Some("FICTI"));
        assert_eq!(disqualifying(&v(&["QUAL", "VALI"])), None);
    }

    #[test]
    fn qualifying_values() {
        assert_eq!(document_status(&v(&["VALI"])), Ok(()));
        assert_eq!(document_status(&v(&["QUAL"])), Ok(()));
        assert_eq!(document_status(&v(&["QUAL", "VALI"])), Ok(()));
        assert!(document_status(&v(&[])).is_err());
        assert!(document_status(&v(&["RECUP"])).is_err());
        assert!(registry_qualified("QUAL") && registry_qualified(" vali "));
        assert!(!registry_qualified("FICTI") && !registry_qualified("PROV"));
    }

    #[test]
    fn details_never_echo_the_senders_text() {
        let e = document_status(&v(&["VALI", "fIcT"])).unwrap_err();
        assert!(e.contains("FICT") && !e.contains("fIcT"), "{e}");
    }
}
