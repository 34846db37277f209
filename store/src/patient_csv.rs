//! The registry's CSV import format, pure: the header, one line split (RFC 4180 quoting)
//! and validated into a record, and what an imported line makes of the record the
//! registry holds. `patients.rs` reads the file and writes the rows.
//!
//! The CSV is parsed by hand: the format is nine fixed columns of plain values, and a
//! forty-line reader (with RFC 4180 quoting) is easier to audit for "no patient data in
//! errors" than a general CSV crate's error messages, which quote the offending field.

use dmpflow_route::{self as route, RouteConfig};
use dmpflow_schemas::PatientRecord;
use dmpflow_schemas::dates::is_iso_date;
use dmpflow_schemas::reasons::Reason;

/// The header `import_patients_csv` expects, exactly.
pub const CSV_HEADER: &str =
    "ins,ins_oid,birth_name,first_names,birth_date,sex,birth_place,identity_status,feeding_opposed";

const STATUSES: [&str; 4] = ["QUAL", "VALI", "RECUP", "PROV"];

/// The record an import line `r` leaves, over `old` (the record held, else a blank one):
/// the import writes the traits, the status and the opposition, and keeps the rest (merge
/// pointer, ZFA values, dates).
pub(crate) fn imported(old: &PatientRecord, r: &PatientRecord) -> PatientRecord {
    PatientRecord {
        ins_oid: r.ins_oid.clone(),
        birth_name: r.birth_name.clone(),
        first_names: r.first_names.clone(),
        birth_date: r.birth_date.clone(),
        sex: r.sex.clone(),
        birth_place: r.birth_place.clone(),
        identity_status: r.identity_status.clone(),
        feeding_opposed: r.feeding_opposed,
        feeding_opposed_stated: true,
        ..old.clone()
    }
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') if at_start => {
                quoted = true;
                at_start = false;
            }
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => {
                quoted = false;
                if !matches!(chars.peek(), None | Some(',')) {
                    return Err(format!(
                        "field {} has text after its closing quote",
                        fields.len() + 1
                    ));
                }
            }
            (false, ',') => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
            }
            (_, c) => {
                field.push(c);
                at_start = false;
            }
        }
    }
    if quoted {
        return Err(format!("field {} has an unclosed quote", fields.len() + 1));
    }
    fields.push(field);
    Ok(fields)
}

/// Validates one data line. Errors name the column and what was expected, never the value.
pub(crate) fn parse_line(line: &str) -> Result<PatientRecord, String> {
    let f = split_csv(line)?;
    if f.len() != 9 {
        return Err(format!("expected 9 columns, found {}", f.len()));
    }
    let f: Vec<&str> = f.iter().map(|s| s.trim()).collect();
    let ins = f[0];
    // Route's own check (format, Corsica rule, mod-97 key): the registry never holds an
    // INS that route would refuse. Its details name positions, never the value. Every INS
    // OID is accepted here; whether test OIDs may be routed is route's setting.
    let any_oid = RouteConfig {
        accept_test_oids: true,
    };
    match route::check_ins(ins, f[1], &any_oid) {
        Ok(()) => {}
        Err((Reason::InsKeyInvalid, detail)) => return Err(format!("column ins: {detail}")),
        Err(_) => {
            return Err("column ins_oid: expected 1.2.250.1.213.1.4.8, .9, .10 or .11".into());
        }
    }
    if f[2].is_empty() {
        return Err("column birth_name: empty".into());
    }
    let first_names: Vec<String> = f[3].split_whitespace().map(str::to_owned).collect();
    if first_names.is_empty() {
        return Err("column first_names: empty".into());
    }
    if !is_iso_date(f[4]) {
        return Err("column birth_date: expected a calendar date YYYY-MM-DD".into());
    }
    if !matches!(f[5], "M" | "F" | "U") {
        return Err("column sex: expected M, F or U".into());
    }
    let birth_place = match f[6] {
        "" => None,
        p if p.len() == 5 && p.chars().all(|c| c.is_ascii_alphanumeric()) => Some(p.to_owned()),
        _ => return Err("column birth_place: expected a 5-character INSEE code or nothing".into()),
    };
    if !STATUSES.contains(&f[7]) {
        return Err("column identity_status: expected PROV, RECUP, VALI or QUAL".into());
    }
    let feeding_opposed = match f[8] {
        "true" => true,
        "false" => false,
        _ => return Err("column feeding_opposed: expected true or false".into()),
    };
    Ok(PatientRecord {
        ins: ins.to_owned(),
        ins_oid: f[1].to_owned(),
        birth_name: f[2].to_owned(),
        first_names,
        birth_date: f[4].to_owned(),
        sex: f[5].to_owned(),
        birth_place,
        identity_status: f[7].to_owned(),
        feeding_opposed,
        merged_into: None,
        // The CSV column is mandatory: the file states the opposition, without a date.
        feeding_opposed_stated: true,
        ..PatientRecord::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_quoted_fields() {
        assert_eq!(
            split_csv("a,\"b,c\",\"d\"\"e\",").unwrap(),
            ["a", "b,c", "d\"e", ""]
        );
        assert_eq!(split_csv("a,b\r").unwrap(), ["a", "b"]);
        assert!(split_csv("a,\"b").is_err());
        assert!(split_csv("a,\"b\"x").is_err());
    }

    #[test]
    fn validates_lines_without_echoing_values() {
        let ok =
            "279035121518989,1.2.250.1.213.1.4.8,DUPONT,Marie Claire,1979-03-05,F,75056,QUAL,false";
        let r = parse_line(ok).unwrap();
        assert_eq!(r.first_names, ["Marie", "Claire"]);
        assert_eq!(r.birth_place.as_deref(), Some("75056"));
        let bad = ok.replace(",F,", ",X,");
        let e = parse_line(&bad).unwrap_err();
        assert_eq!(e, "column sex: expected M, F or U");
        assert!(!e.contains("DUPONT"));
        assert!(parse_line(&ok.replace("1979-03-05", "1979-13-05")).is_err());
        assert!(parse_line(&ok.replace(",false", ",no")).is_err());
        assert!(
            parse_line(&ok.replace(",75056,", ",,"))
                .unwrap()
                .birth_place
                .is_none()
        );
        assert!(parse_line("1,2").unwrap_err().contains("9 columns"));
    }

    #[test]
    fn an_import_writes_traits_status_and_opposition_and_keeps_the_rest() {
        let line =
            "279035121518989,1.2.250.1.213.1.4.8,DUPONT,Marie Claire,1979-03-05,F,75056,QUAL,true";
        let r = parse_line(line).unwrap();
        let held = PatientRecord {
            ins: r.ins.clone(),
            ins_oid: "1.2.250.1.213.1.4.9".into(),
            birth_name: "MARTIN".into(),
            first_names: vec!["Marie".into()],
            birth_date: "1979-03-06".into(),
            sex: "U".into(),
            birth_place: None,
            identity_status: "PROV".into(),
            feeding_opposed: false,
            merged_into: Some("180012A12345678".into()),
            feeding_opposed_stated: false,
            feeding_opposed_at: Some("2026-01-01T00:00:00".into()),
            dmp_status: Some("ACTIF".into()),
            dmp_status_at: Some("2026-01-02T00:00:00".into()),
            consultation_consent: Some(true),
            consultation_consent_at: Some("2026-01-03T00:00:00".into()),
            traits_at: Some("2026-01-04T00:00:00".into()),
        };
        let next = imported(&held, &r);
        assert_eq!(
            next,
            PatientRecord {
                ins_oid: r.ins_oid.clone(),
                birth_name: r.birth_name.clone(),
                first_names: r.first_names.clone(),
                birth_date: r.birth_date.clone(),
                sex: r.sex.clone(),
                birth_place: r.birth_place.clone(),
                identity_status: r.identity_status.clone(),
                feeding_opposed: true,
                feeding_opposed_stated: true,
                ..held.clone()
            }
        );
        // A first import over nothing: the line's record, stated opposition.
        let blank = PatientRecord {
            ins: r.ins.clone(),
            ..PatientRecord::default()
        };
        assert_eq!(imported(&blank, &r), r);
    }

    // Issue #16 item 4: the CSV import checks the INS key like route and real calendar days.
    #[test]
    fn csv_checks_the_ins_key_and_calendar_dates() {
        let ok =
            "279035121518989,1.2.250.1.213.1.4.8,DUPONT,Marie Claire,1979-03-05,F,75056,QUAL,false";
        assert!(parse_line(ok).is_ok());
        let e = parse_line(&ok.replace("279035121518989", "279035121518988")).unwrap_err();
        assert_eq!(e, "column ins: key mismatch");
        let e = parse_line(&ok.replace("279035121518989", "27903512151898")).unwrap_err();
        assert_eq!(e, "column ins: length 14, expected 15");
        // Corsica: 2A and 2B keys differ.
        assert!(parse_line(&ok.replace("279035121518989", "253072A07300443")).is_ok());
        assert!(parse_line(&ok.replace("279035121518989", "253072B07300443")).is_err());
        let e = parse_line(&ok.replace("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.2")).unwrap_err();
        assert!(e.starts_with("column ins_oid:"), "{e}");
        assert!(parse_line(&ok.replace("1.2.250.1.213.1.4.8", "1.2.250.1.213.1.4.10")).is_ok());
        for bad in ["2023-02-31", "2023-02-29", "1979-04-31", "1979-03-05x"] {
            let e = parse_line(&ok.replace("1979-03-05", bad)).unwrap_err();
            assert_eq!(e, "column birth_date: expected a calendar date YYYY-MM-DD");
        }
        assert!(parse_line(&ok.replace("1979-03-05", "2024-02-29")).is_ok());
    }
}
