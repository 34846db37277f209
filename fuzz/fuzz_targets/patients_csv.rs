//! Fuzz target: one data line of the patients CSV import (`store::parse_csv_record`, the
//! validation `Store::import_patients_csv` applies to each line; the import itself needs a
//! database and is not fuzzed). Input: the line (UTF-8; other bytes are skipped, as the
//! import reads text). Checks, besides "no panic": an accepted line has a 15-character INS
//! whose key is right (2A/2B rule), a known INS OID, a real calendar birth date, M/F/U, a
//! known status, and values that came from the line.
#![no_main]

use dmpflow_fuzz::{ins_key_valid, is_iso_date};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rec) = dmpflow_store::parse_csv_record(line) else {
        return;
    };
    assert!(ins_key_valid(&rec.ins), "accepted an INS with a wrong key");
    assert!(
        rec.ins_oid.starts_with("1.2.250.1.213.1.4.") && rec.ins_oid.len() <= 21,
        "accepted an unknown INS OID"
    );
    assert!(
        is_iso_date(&rec.birth_date),
        "accepted a date that is not a calendar date"
    );
    assert!(matches!(rec.sex.as_str(), "M" | "F" | "U"));
    assert!(matches!(
        rec.identity_status.as_str(),
        "PROV" | "RECUP" | "VALI" | "QUAL"
    ));
    assert!(!rec.birth_name.is_empty() && !rec.first_names.is_empty());
    assert!(line.contains(&rec.ins), "INS not from the line");
    assert!(rec.merged_into.is_none());
});
