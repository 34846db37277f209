//! Identity and consent (PAM-FR ADT on the identity feed): which ADT events update the
//! patient registry, which are skipped, and how the ZFA segment (DMP status and the
//! patient's rights) is read.
//!
//! | ADT event | what dmpflow does |
//! |---|---|
//! | A01 admit, A04 register an outpatient, A05 pre-admit, A08 update patient information, A14 pending admit, A28 add person, A31 update person | `PatientChange::Upsert` from PID (+ ZFA) |
//! | A40 merge (MRG-1 = the identifier that disappears) | `PatientChange::Merge` |
//! | A47 change of identifier (MRG-1 = the old one) | `PatientChange::IdentifierChange` |
//! | A02, A03, A06, A07, A11, A12, A13, A16, A21, A22, A24, A25, A26, A27, A32, A33, A37, A38, A44, A52, A53, A54, A55, Z80–Z89, Z99 | skipped: `hl7.event.skipped` (counted, committed, never dead-lettered) |
//! | any other event (A29, A30, A34 ...) | `hl7.message_type.unsupported` (dead-lettered: an operator looks) |
//!
//! Why this split (domain.md §3.5): PAM-FR carries the patient's identity and the ZFA
//! consent segment in the events that register or update a patient (A01, A04, A05, A08,
//! A28, A31; A14 has A05's structure). Movements (transfers, discharges, leaves, changes
//! of doctor or ward: A02, A03, A06, A07, A21, A22, A44, A54, Z80–Z89, Z99) and their
//! cancellations (A11, A12, A13, A25, A26, A27, A32, A33, A38, A52, A53, A55) change no
//! identity or consent the DMP needs, and A16 (pending discharge) neither. A24/A37 link and
//! unlink two records without merging them (the PAM-FR extension does not retain that
//! option); the registry, keyed by INS, has nothing to hold for a link, and a real merge
//! comes as A40. A skip is decided from MSH-9 alone, before PID is read: its detail names
//! the event, never patient data. Events outside the table stay unsupported rather than
//! skipped, so that a new kind of identity message is seen, not silently dropped.
//!
//! ZFA (PAM-FR 2.11, domain.md §3.5):
//! - ZFA-1 DMP status (ACTIF, FERME, ARCHIVE, INEXISTANT ...) → `dmp_status`, dated by ZFA-2;
//! - ZFA-9 opposition to the feeding of the DMP: `IO` → `feeding_opposed = Some(true)`,
//!   `INO` → `Some(false)`, `NA` (not collected), empty or anything else → `None` (not
//!   stated: the registry keeps what it holds); dated by ZFA-10;
//! - ZFA-11 consent to consultation: `IC` → `consultation_consent = Some(true)`, `INC` →
//!   `Some(false)`, `NA`/empty/other → `None`; dated by ZFA-12;
//! - ZFA-4 (Y/N) is the facility's access authorisation to the DMP, not a consent flag: it
//!   is not read (it used to be taken for the opposition, wrongly).
//!
//! `times` carries MSH-7 and the ZFA dates, each normalised to `YYYY-MM-DDTHH:MM:SS` in the
//! sender's local time (the zone, if any, is dropped; fractions of a second too; missing
//! precision is filled with zeros) so that the registry compares them as strings. A ZFA
//! date is given only with the value it dates (a date of "not collected" dates nothing).
//! A date that is not a well-formed HL7 DTM is `hl7.field.invalid` naming the field.

use dmpflow_schemas::dates::is_calendar_date;
use dmpflow_schemas::reasons::{Reason, Reject};
use dmpflow_schemas::{Normalized, PatientChange, PatientUpdate, UpdateTimes};

use super::common::{Ctx, invalid, missing, segment_missing};
use super::pid::{ins_and_others, patient};
use crate::hl7::{Message, Segment};

/// What the identity feed does with one ADT event (the table of the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdtAction {
    Upsert,
    Merge,
    IdentifierChange,
    /// Nothing for the DMP: `hl7.event.skipped`.
    Skip,
}

/// The action for ADT event `event` (MSH-9.2), `None` for an event dmpflow does not know
/// (`hl7.message_type.unsupported`). The MLLP gateway accepts by this same table.
pub fn adt_action(event: &str) -> Option<AdtAction> {
    Some(match event {
        "A01" | "A04" | "A05" | "A08" | "A14" | "A28" | "A31" => AdtAction::Upsert,
        "A40" => AdtAction::Merge,
        "A47" => AdtAction::IdentifierChange,
        "A02" | "A03" | "A06" | "A07" | "A11" | "A12" | "A13" | "A16" | "A21" | "A22" | "A24"
        | "A25" | "A26" | "A27" | "A32" | "A33" | "A37" | "A38" | "A44" | "A52" | "A53" | "A54"
        | "A55" | "Z80" | "Z81" | "Z82" | "Z83" | "Z84" | "Z85" | "Z86" | "Z87" | "Z88" | "Z89"
        | "Z99" => AdtAction::Skip,
        _ => return None,
    })
}

pub fn map(ctx: &Ctx<'_>, msg: &Message<'_>, action: AdtAction) -> Result<Vec<Normalized>, Reject> {
    if action == AdtAction::Skip {
        return Err(Reject::new(
            Reason::Hl7EventSkipped,
            format!("ADT^{} carries nothing for the DMP", ctx.event),
        ));
    }
    let mut patient = patient(msg)?;
    // The retired INS. Several different ones in MRG-1 leave it unclear which record the
    // message retires: they join PID-3's extra INS, so route holds it as ambiguous.
    let mut old = || -> Result<(String, String), Reject> {
        let mrg = msg.segment("MRG").ok_or_else(|| segment_missing("MRG"))?;
        let (first, others) = ins_and_others(mrg.field(1))
            .ok_or_else(|| missing("MRG-1 INS repetition (CX.5 = INS)"))?;
        patient.other_ins.extend(others);
        Ok(first)
    };
    let change = match action {
        AdtAction::Merge => {
            let (from_ins, from_oid) = old()?;
            PatientChange::Merge { from_ins, from_oid }
        }
        AdtAction::IdentifierChange => {
            let (old_ins, old_oid) = old()?;
            PatientChange::IdentifierChange { old_ins, old_oid }
        }
        AdtAction::Upsert | AdtAction::Skip => PatientChange::Upsert,
    };
    let zfa = read_zfa(msg.segment("ZFA"))?;
    let times = UpdateTimes {
        message: local_time(&ctx.time, "MSH-7")?,
        ..zfa.times
    };
    Ok(vec![Normalized::Patient(Box::new(PatientUpdate {
        change,
        patient,
        feeding_opposed: zfa.feeding_opposed,
        dmp_status: zfa.dmp_status,
        consultation_consent: zfa.consultation_consent,
        times,
        event: ctx.event.clone(),
        source: ctx.source(0),
    }))])
}

/// What a ZFA states (nothing without one).
#[derive(Default)]
struct Zfa {
    dmp_status: Option<String>,
    feeding_opposed: Option<bool>,
    consultation_consent: Option<bool>,
    /// The ZFA dates; `message` stays None (MSH-7 is the caller's).
    times: UpdateTimes,
}

fn read_zfa(zfa: Option<Segment<'_>>) -> Result<Zfa, Reject> {
    let Some(z) = zfa else {
        return Ok(Zfa::default());
    };
    let text = |n: usize| z.field(n).component(1).decoded().trim().to_string();
    let date = |n: usize, name: &str| local_time(z.field(n).component(1).raw(), name);
    // Each date is checked even when its value is absent (a malformed field is malformed)
    // but given only with the value it dates.
    let dated = |stated: bool, d: Option<String>| d.filter(|_| stated);
    let dmp_status = Some(text(1)).filter(|s| !s.is_empty());
    let feeding_opposed = match text(9).to_ascii_uppercase().as_str() {
        "IO" => Some(true),
        "INO" => Some(false),
        _ => None,
    };
    let consultation_consent = match text(11).to_ascii_uppercase().as_str() {
        "IC" => Some(true),
        "INC" => Some(false),
        _ => None,
    };
    Ok(Zfa {
        times: UpdateTimes {
            message: None,
            dmp_status: dated(dmp_status.is_some(), date(2, "ZFA-2")?),
            feeding_opposed: dated(feeding_opposed.is_some(), date(10, "ZFA-10")?),
            consultation_consent: dated(consultation_consent.is_some(), date(12, "ZFA-12")?),
        },
        dmp_status,
        feeding_opposed,
        consultation_consent,
    })
}

/// An HL7 DTM `YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]` → `YYYY-MM-DDTHH:MM:SS` in
/// the sender's local time, zeros for the missing precision (so that `2024` sorts before
/// `20240101`); empty → None; anything else → `hl7.field.invalid` naming `what`, never
/// the value.
fn local_time(raw: &str, what: &str) -> Result<Option<String>, Reject> {
    let s = raw.trim();
    if s.is_empty() {
        return Ok(None);
    }
    parse_dtm(s).map(Some).ok_or_else(|| invalid(what))
}

fn parse_dtm(s: &str) -> Option<String> {
    let b = s.as_bytes();
    // The zone, if any, closes the value; it is checked, then dropped.
    let (body, zone) = match b.iter().position(|&c| c == b'+' || c == b'-') {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    if let Some(z) = zone {
        let ok = z.len() == 4
            && z.iter().all(u8::is_ascii_digit)
            && two(&z[0..2]) <= 14
            && two(&z[2..4]) <= 59;
        if !ok {
            return None;
        }
    }
    let (clock, fraction) = match body.iter().position(|&c| c == b'.') {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if !matches!(clock.len(), 4 | 6 | 8 | 10 | 12 | 14) || !clock.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if let Some(f) = fraction {
        // Fractions of a second only after the seconds, one to four digits.
        if clock.len() != 14 || f.is_empty() || f.len() > 4 || !f.iter().all(u8::is_ascii_digit) {
            return None;
        }
    }
    let year = u32::from(two(&clock[0..2])) * 100 + u32::from(two(&clock[2..4]));
    let mut parts = [0u8; 5]; // month, day, hour, minute, second
    for (i, pair) in clock[4..].chunks(2).enumerate() {
        parts[i] = two(pair);
    }
    let [month, day, hour, minute, second] = parts;
    let precision = (clock.len() - 4) / 2;
    let ok = match precision {
        0 => true,
        1 => (1..=12).contains(&month),
        _ => is_calendar_date(year as i32, month, day),
    } && hour <= 23
        && minute <= 59
        && second <= 59;
    ok.then(|| format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}"))
}

/// Two ASCII digits (already checked) as a number.
fn two(p: &[u8]) -> u8 {
    (p[0] - b'0') * 10 + (p[1] - b'0')
}

#[cfg(test)]
mod tests {
    use dmpflow_schemas::{Feed, Normalized, PatientChange, PatientUpdate};

    use crate::mapping::Config;

    fn a47(mrg1: &str) -> PatientUpdate {
        let raw = format!(
            "MSH|^~\\&|GAM|CHU|PFI|X|20240501090000||ADT^A47^ADT_A30|ADT-0047|P|2.5\rPID|1||201019999900109^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS||CELESTIN^Noel^Noel^^^^L||20010115|M\rMRG|{mrg1}\r"
        );
        match crate::normalize(Feed::Identity, raw.as_bytes(), &Config::default())
            .unwrap()
            .pop()
        {
            Some(Normalized::Patient(u)) => *u,
            other => panic!("expected a patient update, got {other:?}"),
        }
    }

    const OLD: &str = "201019999900208^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.10&ISO^INS";

    // Issue #16 item 3: an A47 whose MRG-1 names several different INS does not say which
    // record it retires; the extras are reported so route holds the message.
    #[test]
    fn several_retired_ins_are_reported() {
        let u = a47(OLD);
        assert!(u.patient.other_ins.is_empty());
        assert!(
            matches!(u.change, PatientChange::IdentifierChange { ref old_ins, .. } if old_ins == "201019999900208")
        );
        assert!(a47(&format!("{OLD}~{OLD}")).patient.other_ins.is_empty());
        let u = a47(&format!(
            "{OLD}~277076322082910^^^ASIP-SANTE-INS-NIR&1.2.250.1.213.1.4.8&ISO^INS"
        ));
        assert_eq!(u.patient.other_ins, ["277076322082910"]);
    }

    // Issue #12 item 1: the dates of an identity update compare as strings.
    #[test]
    fn local_times() {
        use super::parse_dtm;
        for (raw, want) in [
            ("20240306111154", "2024-03-06T11:11:54"),
            ("20240306111154+0100", "2024-03-06T11:11:54"),
            ("20240306111154.1234-0500", "2024-03-06T11:11:54"),
            ("202403061111", "2024-03-06T11:11:00"),
            ("2024030611", "2024-03-06T11:00:00"),
            ("20240306", "2024-03-06T00:00:00"),
            ("202403", "2024-03-00T00:00:00"),
            ("2024", "2024-00-00T00:00:00"),
            ("20240229", "2024-02-29T00:00:00"),
        ] {
            assert_eq!(parse_dtm(raw).as_deref(), Some(want), "{raw}");
        }
        for bad in [
            "20230229",
            "20241301",
            "202400",
            "2024031",
            "20240306241154",
            "20240306116054",
            "20240306111160",
            "2024030611115",
            "20240306111154.",
            "202403061111.5",
            "20240306111154+01",
            "20240306111154+1500",
            "2024-03-06",
            "24",
            "x2024",
            "20240306 1111",
        ] {
            assert_eq!(parse_dtm(bad), None, "{bad}");
        }
    }

    // Issue #12 item 1: a skipped event is decided from MSH-9 alone (a PID-less A03 is
    // skipped, not refused for its PID) and its detail holds no patient data.
    #[test]
    fn skip_needs_no_pid() {
        let raw = "MSH|^~\\&|GAM|CHU|PFI|X|20240501090000||ADT^A03^ADT_A03|ADT-0003|P|2.5\r";
        let e = crate::normalize(Feed::Identity, raw.as_bytes(), &Config::default()).unwrap_err();
        assert_eq!(e.reason, dmpflow_schemas::reasons::Reason::Hl7EventSkipped);
        assert_eq!(e.detail, "ADT^A03 carries nothing for the DMP");
        assert!(e.reason.is_skip());
    }
}
