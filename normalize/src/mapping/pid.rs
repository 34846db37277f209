//! PAM-FR PID → `PatientIdentity`: INS from the PID-3 repetition typed `INS`, IPP from the
//! one typed `PI`, the five strict traits (PID-5 legal name, PID-7, PID-8, PID-11 `BDL`)
//! and the PID-32 identity statuses (domain.md §1.5).

use dmpflow_schemas::PatientIdentity;
use dmpflow_schemas::dates::is_calendar_date;
use dmpflow_schemas::ins::INS_OIDS;
use dmpflow_schemas::reasons::{Reason, Reject};

use super::common::{invalid, segment_missing};
use crate::hl7::{Message, Segment, Value};

/// Every INS of a CX field, in order: the repetitions typed `INS` (CX.5) with a
/// matricule, as (matricule, OID CX.4.2), repeats of the same pair removed.
pub fn all_ins(field: Value<'_>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for r in field
        .repetitions()
        .filter(|r| r.component(5).raw().trim() == "INS")
    {
        let pair = (
            r.component(1).decoded().trim().to_string(),
            r.component(4).sub(2).decoded().trim().to_string(),
        );
        if !pair.0.is_empty() && !out.contains(&pair) {
            out.push(pair);
        }
    }
    out
}

/// The INS of a CX field (its first INS repetition), and the matricules of the further,
/// different INS it states (another matricule, or the same one under another INS OID).
/// Repetitions whose OID is not an INS OID are not INS and leave the first alone; an
/// identical repeat is harmless.
pub fn ins_and_others(field: Value<'_>) -> Option<((String, String), Vec<String>)> {
    let mut all = all_ins(field).into_iter();
    let first = all.next()?;
    let others = all
        .filter(|(_, oid)| INS_OIDS.contains(&oid.as_str()))
        .map(|(ins, _)| ins)
        .collect();
    Some((first, others))
}

/// An HL7 DTM birth date or a CDA TS birthTime → YYYY-MM-DD; empty stays empty.
///
/// The value must be a real calendar day (2023-02-29 is refused) written at day
/// precision or finer, `YYYYMMDD[HH[MM[SS[.S[S[S[S]]]]]]][+/-ZZZZ]`; anything else, trailing
/// text included, is `hl7.field.invalid` naming `what`, never the value.
pub fn birth_date(raw: &str, what: &str) -> Result<String, Reject> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    let (y, m, d) = dtm_day(s).ok_or_else(|| invalid(what))?;
    Ok(format!("{y:04}-{m:02}-{d:02}"))
}

/// The calendar day of a DTM of day precision or finer, if the whole value is well formed.
fn dtm_day(s: &str) -> Option<(i32, u8, u8)> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |n, c| n * 10 + u32::from(c - b'0')))
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    if !is_calendar_date(y as i32, m as u8, d as u8) {
        return None;
    }
    // The time zone, if any, closes the value.
    let (body, zone) = match b[8..].iter().position(|&c| c == b'+' || c == b'-') {
        Some(i) => (&b[..8 + i], Some(&b[8 + i + 1..])),
        None => (b, None),
    };
    if let Some(z) = zone {
        let ok = z.len() == 4
            && z.iter().all(u8::is_ascii_digit)
            && (z[0] - b'0') * 10 + (z[1] - b'0') <= 14
            && (z[2] - b'0') * 10 + (z[3] - b'0') <= 59;
        if !ok {
            return None;
        }
    }
    // Hours, minutes, seconds: each two digits, each only after the one before.
    let (clock, fraction) = match body[8..].iter().position(|&c| c == b'.') {
        Some(i) => (&body[8..8 + i], Some(&body[8 + i + 1..])),
        None => (&body[8..], None),
    };
    if clock.len() > 6 || clock.len() % 2 != 0 || !clock.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let limits = [23, 59, 59];
    for (pair, max) in clock.chunks(2).zip(limits) {
        if (pair[0] - b'0') * 10 + (pair[1] - b'0') > max {
            return None;
        }
    }
    if let Some(f) = fraction {
        // Fractions of a second only after the seconds, one to four digits.
        if clock.len() != 6 || f.is_empty() || f.len() > 4 || !f.iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    Some((y as i32, m as u8, d as u8))
}

/// HL7 table 0001 → M, F or U.
pub fn sex(raw: &str) -> String {
    match raw.trim() {
        "M" => "M",
        "F" => "F",
        _ => "U",
    }
    .to_string()
}

pub fn pid_segment<'m>(msg: &'m Message<'_>) -> Result<Segment<'m>, Reject> {
    msg.segment("PID").ok_or_else(|| segment_missing("PID"))
}

/// The patient of the message. `hl7.ins.missing` when PID-3 has no INS repetition.
pub fn patient(msg: &Message<'_>) -> Result<PatientIdentity, Reject> {
    let pid = pid_segment(msg)?;
    let ((ins, ins_oid), other_ins) = ins_and_others(pid.field(3)).ok_or_else(|| {
        Reject::new(
            Reason::Hl7InsMissing,
            "PID-3 has no repetition with CX.5 = INS",
        )
    })?;
    let ipp = pid
        .field(3)
        .repetitions()
        .find(|r| r.component(5).raw().trim() == "PI");
    let (ipp, ipp_authority) = match ipp {
        Some(r) => {
            let auth = r.component(4);
            let oid = auth.sub(2).decoded();
            let authority = if oid.is_empty() {
                auth.sub(1).decoded().into_owned()
            } else {
                oid.into_owned()
            };
            (
                Some(r.component(1).decoded().trim().to_string()).filter(|s| !s.is_empty()),
                Some(authority).filter(|s| !s.is_empty()),
            )
        }
        None => (None, None),
    };
    // PID-5: the legal (birth) name is the repetition typed L; else the first one.
    let names = pid.field(5);
    let legal = names
        .repetitions()
        .find(|r| r.component(7).raw() == "L")
        .unwrap_or_else(|| names.repetition(1));
    let birth_name = legal.component(1).sub(1).decoded().trim().to_string();
    let list = legal.component(3).decoded();
    let mut first_names: Vec<String> = list.split_whitespace().map(str::to_string).collect();
    let first = legal.component(2).decoded().trim().to_string();
    if first_names.is_empty() && !first.is_empty() {
        first_names.push(first);
    }
    let birth_place = pid
        .field(11)
        .repetitions()
        .find(|r| r.component(7).raw() == "BDL")
        .map(|r| r.component(9).decoded().trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(PatientIdentity {
        ins,
        ins_oid,
        ipp,
        ipp_authority,
        birth_name,
        first_names,
        birth_date: birth_date(pid.field(7).component(1).raw(), "PID-7 (birth date)")?,
        sex: sex(pid.field(8).raw()),
        birth_place,
        identity_status: statuses(&pid),
        other_ins,
    })
}

/// PID-32 values, in order.
pub fn statuses(pid: &Segment<'_>) -> Vec<String> {
    pid.field(32)
        .repetitions()
        .map(|r| r.component(1).decoded().trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::ReadOptions;

    #[test]
    fn reads_the_ans_pam_example() {
        let s = &format!(
            "MSH|^~\\&|GAM|CHU-X|DPI|CHU-X|20240306111154||ADT^A01^ADT_A01|3975|D|2.5^FRA^2.11|||||FRA|UNICODE UTF-8\rPID|1||000003^^^CHU-X&000897406&N^PI~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS^^20101207||PAT-TROIS^DOMINIQUE^DOMINIQUE^^^^L||19790328|F|||28 Av de Breteuil^^PARIS^^75007^FRA^H~^^^^^^BDL^^63220{}VALI\r",
            "|".repeat(21)
        );
        let m = Message::parse(s.as_bytes(), &ReadOptions::default()).unwrap();
        let p = patient(&m).unwrap();
        assert_eq!(p.ins, "279035121518989");
        assert_eq!(p.ins_oid, "1.2.250.1.213.1.4.10");
        assert_eq!(p.ipp.as_deref(), Some("000003"));
        assert_eq!(p.ipp_authority.as_deref(), Some("000897406"));
        assert_eq!(p.birth_name, "PAT-TROIS");
        assert_eq!(p.first_names, vec!["DOMINIQUE"]);
        assert_eq!(p.birth_date, "1979-03-28");
        assert_eq!(p.sex, "F");
        assert_eq!(p.birth_place.as_deref(), Some("63220"));
        assert_eq!(p.identity_status, vec!["VALI"]);
    }

    #[test]
    fn dates() {
        assert_eq!(birth_date("19790328", "x").unwrap(), "1979-03-28");
        assert_eq!(birth_date("197903281200", "x").unwrap(), "1979-03-28");
        assert!(birth_date("1979", "x").is_err());
        assert!(birth_date("19791328", "x").is_err());
    }

    // Issue #16 item 4: a birth date must be a real day, in a well-formed DTM.
    #[test]
    fn dates_are_calendar_days_in_a_well_formed_dtm() {
        for ok in [
            "20240229",
            "2024022913",
            "202402291305",
            "20240229130559",
            "20240229130559.1",
            "20240229130559.1234",
            "20240229+0100",
            "202402291305-0530",
            "20240229130559.12+1400",
            " 20240229 ",
        ] {
            assert_eq!(birth_date(ok, "x").unwrap(), "2024-02-29", "{ok}");
        }
        for bad in [
            "20230229",
            "20230231",
            "20230431",
            "19000229",
            "20110616garbage",
            "20110616 1200",
            "201106161",
            "2011061612345",
            "20110616.5",
            "2011061612.5",
            "20110616123456.",
            "20110616123456.12345",
            "20110616240000",
            "20110616236000",
            "20110616235960",
            "20110616+01",
            "20110616+1500",
            "20110616+0160",
            "20110616+0100+0100",
            "20110616-",
            "2011061é",
            "20110616é",
            "2011-06-16",
        ] {
            let e = birth_date(bad, "PID-7 (birth date)").unwrap_err();
            assert_eq!(e.reason, Reason::Hl7FieldInvalid, "{bad}");
            assert!(
                !e.detail.contains("2011") && !e.detail.contains("2023"),
                "{e:?}"
            );
        }
    }

    fn adt(pid3: &str, pid32: &str) -> String {
        format!(
            "MSH|^~\\&|GAM|CHU-X|DPI|CHU-X|20240306111154||ADT^A31^ADT_A05|3975|P|2.5\rPID|1||{pid3}||PAT-TROIS^DOMINIQUE^DOMINIQUE^^^^L||19790328|F{}{pid32}\r",
            "|".repeat(24)
        )
    }

    const NIR: &str = "279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS";

    fn read(pid3: &str) -> PatientIdentity {
        let s = adt(pid3, "VALI");
        let m = Message::parse(s.as_bytes(), &ReadOptions::default()).unwrap();
        patient(&m).unwrap()
    }

    // Issue #16 item 3: several different INS in PID-3 are all reported, never resolved.
    #[test]
    fn different_ins_repetitions_are_reported() {
        let p = read(&format!("000003^^^CHU-X&000897406&N^PI~{NIR}"));
        assert_eq!(p.ins, "279035121518989");
        assert!(p.other_ins.is_empty());
        assert_eq!(p.identity_status, ["VALI"]);
        // The same INS twice is harmless.
        assert!(read(&format!("{NIR}~{NIR}")).other_ins.is_empty());
        // Another matricule.
        let p = read(&format!(
            "{NIR}~277076322082910^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
        ));
        assert_eq!(p.ins, "279035121518989");
        assert_eq!(p.other_ins, ["277076322082910"]);
        // The same matricule under another INS OID (NIR and test NIR).
        let p = read(&format!(
            "{NIR}~279035121518989^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS"
        ));
        assert_eq!(p.other_ins, ["279035121518989"]);
        // A repetition typed INS under an OID that is no INS OID is not an INS.
        let p = read(&format!(
            "{NIR}~277076322082910^^^X&1.2.250.1.213.1.4.2&ISO^INS"
        ));
        assert!(p.other_ins.is_empty());
    }

    #[test]
    fn every_pid32_value_is_kept() {
        let s = adt(NIR, "VALI~FICTI");
        let m = Message::parse(s.as_bytes(), &ReadOptions::default()).unwrap();
        assert_eq!(patient(&m).unwrap().identity_status, ["VALI", "FICTI"]);
    }
}
