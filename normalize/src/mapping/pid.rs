//! PAM-FR PID → `PatientIdentity`: INS from the PID-3 repetition typed `INS`, IPP from the
//! one typed `PI`, the five strict traits (PID-5 legal name, PID-7, PID-8, PID-11 `BDL`)
//! and the PID-32 identity statuses (domain.md §1.5).

use dmpflow_schemas::PatientIdentity;
use dmpflow_schemas::reasons::{Reason, Reject};

use super::common::{invalid, segment_missing};
use crate::hl7::{Message, Segment, Value};

/// An INS read from a CX repetition: matricule and OID (CX.4.2).
pub fn ins_of(field: Value<'_>) -> Option<(String, String)> {
    field
        .repetitions()
        .find(|r| r.component(5).raw().trim() == "INS")
        .map(|r| {
            (
                r.component(1).decoded().trim().to_string(),
                r.component(4).sub(2).decoded().trim().to_string(),
            )
        })
        .filter(|(ins, _)| !ins.is_empty())
}

/// YYYYMMDD[...] → YYYY-MM-DD; empty stays empty.
pub fn birth_date(raw: &str, what: &str) -> Result<String, Reject> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    let b = s.as_bytes();
    if b.len() < 8 || !b[..8].iter().all(u8::is_ascii_digit) {
        return Err(invalid(what));
    }
    let (m, d) = (&s[4..6], &s[6..8]);
    if !("01"..="12").contains(&m) || !("01"..="31").contains(&d) {
        return Err(invalid(what));
    }
    Ok(format!("{}-{m}-{d}", &s[..4]))
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
    let (ins, ins_oid) = ins_of(pid.field(3)).ok_or_else(|| {
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
        other_ins: Vec::new(),
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
}
