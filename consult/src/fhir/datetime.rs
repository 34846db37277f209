//! Stored timestamps to FHIR `date` / `dateTime` / `instant`.
//!
//! The store keeps what senders gave: HL7 v2 `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]`, or
//! ISO 8601 / RFC 3339 (`2024-03-06T11:11:54+01:00`). FHIR is stricter: a `dateTime` with a
//! time SHALL carry a zone, and an `instant` needs seconds and a zone. PAM-FR and CDA
//! timestamps rarely carry a zone; they are the sender's local time, i.e. France
//! (metropolitan), so a missing zone is read as Europe/Paris with the EU summer-time rule
//! (last Sunday of March to last Sunday of October, 01:00 UTC). Overseas senders that omit
//! their zone are therefore off by their offset: the honest fix is for them to send it.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset, Weekday};

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateError(pub String);

impl std::fmt::Display for DateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DateError {}

/// How much of the timestamp was given: FHIR keeps that precision for dates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Precision {
    Year,
    Month,
    Day,
    /// HL7 also allows an hour alone; FHIR has no hour precision, so it reads as minutes.
    Minute,
    Second,
}

/// A parsed timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub precision: Precision,
    /// Local date and time as written (zeros/1s below the precision).
    pub local: PrimitiveDateTime,
    /// Fraction-of-second digits, as written.
    pub fraction: Option<String>,
    /// The zone as written; `None` when the sender gave none.
    pub offset: Option<UtcOffset>,
    /// Written as `Z` (kept as such in the output).
    pub zulu: bool,
}

fn err(s: &str, why: &str) -> DateError {
    DateError(format!("'{s}' is not a timestamp: {why}"))
}

fn num(s: &str, all: &str) -> Result<u32, DateError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err(all, "digits expected"));
    }
    s.parse().map_err(|_| err(all, "number out of range"))
}

/// Reads `+HHMM`, `+HH:MM`, `Z`, or nothing.
fn parse_zone(z: &str, all: &str) -> Result<(Option<UtcOffset>, bool), DateError> {
    if z.is_empty() {
        return Ok((None, false));
    }
    if z == "Z" {
        return Ok((Some(UtcOffset::UTC), true));
    }
    let sign = match &z[..1] {
        "+" => 1,
        "-" => -1,
        _ => return Err(err(all, "bad zone")),
    };
    let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 {
        return Err(err(all, "zone must be +HHMM or +HH:MM"));
    }
    let h = num(&digits[..2], all)? as i8;
    let m = num(&digits[2..], all)? as i8;
    let off =
        UtcOffset::from_hms(sign * h, sign * m, 0).map_err(|_| err(all, "zone out of range"))?;
    Ok((Some(off), false))
}

/// Splits the zone off the end: from the first `+`, the first `-` after the time's `T` or
/// 8th HL7 digit, or a trailing `Z`.
fn split_zone(s: &str, time_start: usize) -> (&str, &str) {
    if let Some(stripped) = s.strip_suffix('Z') {
        return (stripped, "Z");
    }
    match s[time_start.min(s.len())..].find(['+', '-']) {
        Some(i) => s.split_at(time_start + i),
        None => (s, ""),
    }
}

fn build(
    all: &str,
    (y, mo, d): (u32, u32, u32),
    (h, mi, sec): (u32, u32, u32),
    precision: Precision,
    fraction: Option<&str>,
    zone: &str,
) -> Result<Stamp, DateError> {
    let month = Month::try_from(mo as u8).map_err(|_| err(all, "month out of range"))?;
    let date =
        Date::from_calendar_date(y as i32, month, d as u8).map_err(|_| err(all, "no such day"))?;
    let t = Time::from_hms(h as u8, mi as u8, sec as u8).map_err(|_| err(all, "no such time"))?;
    if let Some(f) = fraction
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err(all, "bad fraction of second"));
    }
    let (offset, zulu) = parse_zone(zone, all)?;
    if offset.is_some() && precision < Precision::Minute {
        return Err(err(all, "a zone needs a time"));
    }
    Ok(Stamp {
        precision,
        local: PrimitiveDateTime::new(date, t),
        fraction: fraction.map(str::to_owned),
        offset,
        zulu,
    })
}

fn parse_hl7(s: &str) -> Result<Stamp, DateError> {
    let (body, zone) = split_zone(s, 8.min(s.len()));
    let (digits, fraction) = match body.split_once('.') {
        Some((d, f)) => (d, Some(f)),
        None => (body, None),
    };
    let precision = match digits.len() {
        4 => Precision::Year,
        6 => Precision::Month,
        8 => Precision::Day,
        10 | 12 => Precision::Minute,
        14 => Precision::Second,
        _ => return Err(err(s, "HL7 timestamps have 4, 6, 8, 10, 12 or 14 digits")),
    };
    if fraction.is_some() && precision != Precision::Second {
        return Err(err(s, "a fraction needs seconds"));
    }
    let part = |a: usize, b: usize, dflt: u32| {
        if digits.len() >= b {
            num(&digits[a..b], s)
        } else {
            Ok(dflt)
        }
    };
    build(
        s,
        (part(0, 4, 0)?, part(4, 6, 1)?, part(6, 8, 1)?),
        (part(8, 10, 0)?, part(10, 12, 0)?, part(12, 14, 0)?),
        precision,
        fraction,
        zone,
    )
}

fn parse_iso(s: &str) -> Result<Stamp, DateError> {
    let (date_part, time_part) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let fields: Vec<&str> = date_part.split('-').collect();
    if fields.first().map(|y| y.len()) != Some(4) || fields.iter().skip(1).any(|f| f.len() != 2) {
        return Err(err(s, "expected YYYY[-MM[-DD]]"));
    }
    let y = num(fields[0], s)?;
    let mo = fields.get(1).map(|f| num(f, s)).transpose()?;
    let d = fields.get(2).map(|f| num(f, s)).transpose()?;
    if fields.len() > 3 {
        return Err(err(s, "expected YYYY[-MM[-DD]]"));
    }
    let Some(t) = time_part else {
        let precision = match (mo, d) {
            (None, _) => Precision::Year,
            (Some(_), None) => Precision::Month,
            _ => Precision::Day,
        };
        return build(
            s,
            (y, mo.unwrap_or(1), d.unwrap_or(1)),
            (0, 0, 0),
            precision,
            None,
            "",
        );
    };
    let (Some(mo), Some(d)) = (mo, d) else {
        return Err(err(s, "a time needs a full date"));
    };
    let (clock, zone) = split_zone(t, 0);
    let (hms, fraction) = match clock.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (clock, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
        return Err(err(s, "expected hh:mm[:ss]"));
    }
    let precision = if parts.len() == 3 {
        Precision::Second
    } else {
        Precision::Minute
    };
    if fraction.is_some() && precision != Precision::Second {
        return Err(err(s, "a fraction needs seconds"));
    }
    let sec = parts.get(2).map(|p| num(p, s)).transpose()?.unwrap_or(0);
    build(
        s,
        (y, mo, d),
        (num(parts[0], s)?, num(parts[1], s)?, sec),
        precision,
        fraction,
        zone,
    )
}

/// Reads a stored timestamp, HL7 v2 or ISO 8601.
pub fn parse(s: &str) -> Result<Stamp, DateError> {
    let s = s.trim();
    if s.len() > 4 && s.as_bytes()[4].is_ascii_digit() {
        parse_hl7(s)
    } else {
        parse_iso(s)
    }
}

/// Reads a FHIR search value (`2025-01-01`, `2025-01-01T10:00:00+01:00` ...): ISO only, so
/// that a client sending an HL7 form learns it is not FHIR.
pub fn parse_fhir(s: &str) -> Result<Stamp, DateError> {
    parse_iso(s)
}

/// Last Sunday of a month (EU summer time switches on the last Sundays of March/October).
fn last_sunday(year: i32, month: Month) -> Date {
    let mut d = Date::from_calendar_date(year, month, time::util::days_in_month(month, year))
        .expect("last day of a month exists");
    while d.weekday() != Weekday::Sunday {
        d = d.previous_day().expect("in range");
    }
    d
}

/// The Europe/Paris offset of a local time (+01:00, or +02:00 in summer). In the repeated
/// hour of October the earlier (summer) reading is taken.
pub fn paris_offset(local: PrimitiveDateTime) -> UtcOffset {
    let y = local.year();
    let start = PrimitiveDateTime::new(
        last_sunday(y, Month::March),
        Time::from_hms(2, 0, 0).unwrap(),
    );
    let end = PrimitiveDateTime::new(
        last_sunday(y, Month::October),
        Time::from_hms(3, 0, 0).unwrap(),
    );
    let hours = if local >= start && local < end { 2 } else { 1 };
    UtcOffset::from_hms(hours, 0, 0).expect("valid offset")
}

fn fmt_offset(off: UtcOffset, zulu: bool) -> String {
    if zulu {
        return "Z".into();
    }
    let (h, m, _) = off.as_hms();
    let sign = if off.is_negative() { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
}

impl Stamp {
    /// The zone to write: as given, else Europe/Paris.
    fn zone(&self) -> UtcOffset {
        self.offset.unwrap_or_else(|| paris_offset(self.local))
    }

    /// FHIR `date`: the date part, at the precision given.
    pub fn to_fhir_date(&self) -> String {
        let d = self.local.date();
        match self.precision {
            Precision::Year => format!("{:04}", d.year()),
            Precision::Month => format!("{:04}-{:02}", d.year(), d.month() as u8),
            _ => format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day()),
        }
    }

    /// FHIR `dateTime`: a date at its precision, or a full time with seconds and a zone.
    pub fn to_fhir_date_time(&self) -> String {
        if self.precision < Precision::Minute {
            return self.to_fhir_date();
        }
        let t = self.local.time();
        let frac = self
            .fraction
            .as_ref()
            .map(|f| format!(".{f}"))
            .unwrap_or_default();
        format!(
            "{}T{:02}:{:02}:{:02}{frac}{}",
            self.to_fhir_date(),
            t.hour(),
            t.minute(),
            t.second(),
            fmt_offset(self.zone(), self.zulu && self.offset.is_some())
        )
    }

    /// FHIR `instant`: needs a time; `None` for a date alone.
    pub fn to_fhir_instant(&self) -> Option<String> {
        (self.precision >= Precision::Minute).then(|| self.to_fhir_date_time())
    }

    /// The span the value stands for, `[start, end)`: a day is all of that day (Paris time
    /// when no zone), a second is that second. What FHIR date searches compare against.
    pub fn range(&self) -> (OffsetDateTime, OffsetDateTime) {
        let at = |local: PrimitiveDateTime| {
            local.assume_offset(self.offset.unwrap_or_else(|| paris_offset(local)))
        };
        let d = self.local.date();
        let first_of = |y: i32, m: Month| {
            PrimitiveDateTime::new(
                Date::from_calendar_date(y, m, 1).expect("in range"),
                Time::MIDNIGHT,
            )
        };
        let end = match self.precision {
            Precision::Year => first_of(d.year() + 1, Month::January),
            Precision::Month if d.month() == Month::December => {
                first_of(d.year() + 1, Month::January)
            }
            Precision::Month => first_of(d.year(), d.month().next()),
            Precision::Day => self.local + time::Duration::DAY,
            Precision::Minute => self.local + time::Duration::MINUTE,
            Precision::Second => self.local + time::Duration::SECOND,
        };
        (at(self.local), at(end))
    }
}

/// A stored timestamp as FHIR `dateTime`.
pub fn fhir_date_time(s: &str) -> Result<String, DateError> {
    parse(s).map(|st| st.to_fhir_date_time())
}

/// A stored timestamp as FHIR `instant` (error for a date without a time).
pub fn fhir_instant(s: &str) -> Result<String, DateError> {
    parse(s)?
        .to_fhir_instant()
        .ok_or_else(|| err(s, "an instant needs a time"))
}

/// A clock reading (e.g. `OffsetDateTime::now_utc()`) as FHIR `instant`, to the second.
pub fn instant_of(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hl7_forms_become_fhir_date_times() {
        assert_eq!(
            fhir_date_time("20240306111154+0100").unwrap(),
            "2024-03-06T11:11:54+01:00"
        );
        assert_eq!(
            fhir_date_time("20240306111154-0500").unwrap(),
            "2024-03-06T11:11:54-05:00"
        );
        assert_eq!(fhir_date_time("20240306").unwrap(), "2024-03-06");
        assert_eq!(fhir_date_time("202403").unwrap(), "2024-03");
        assert_eq!(fhir_date_time("2024").unwrap(), "2024");
        assert_eq!(
            fhir_date_time("202403061111").unwrap(),
            "2024-03-06T11:11:00+01:00"
        );
        assert_eq!(
            fhir_date_time("20240306111154.25+0000").unwrap(),
            "2024-03-06T11:11:54.25+00:00"
        );
    }

    #[test]
    fn zoneless_times_read_as_paris_with_summer_time() {
        assert_eq!(
            fhir_date_time("20240306111154").unwrap(),
            "2024-03-06T11:11:54+01:00"
        );
        assert_eq!(
            fhir_date_time("20240715083000").unwrap(),
            "2024-07-15T08:30:00+02:00"
        );
        // 2024 switches: 31 March and 27 October.
        assert_eq!(
            fhir_date_time("20240331015959").unwrap(),
            "2024-03-31T01:59:59+01:00"
        );
        assert_eq!(
            fhir_date_time("20240331030000").unwrap(),
            "2024-03-31T03:00:00+02:00"
        );
        assert_eq!(
            fhir_date_time("20241027025959").unwrap(),
            "2024-10-27T02:59:59+02:00"
        );
        assert_eq!(
            fhir_date_time("20241027030000").unwrap(),
            "2024-10-27T03:00:00+01:00"
        );
    }

    #[test]
    fn iso_forms_keep_their_zone() {
        assert_eq!(
            fhir_date_time("2024-03-06T11:11:54Z").unwrap(),
            "2024-03-06T11:11:54Z"
        );
        assert_eq!(
            fhir_date_time("2024-03-06T11:11:54+01:00").unwrap(),
            "2024-03-06T11:11:54+01:00"
        );
        assert_eq!(
            fhir_date_time("2024-03-06T11:11:54.123+01:00").unwrap(),
            "2024-03-06T11:11:54.123+01:00"
        );
        assert_eq!(fhir_date_time("2024-03-06").unwrap(), "2024-03-06");
        assert_eq!(
            fhir_date_time("2024-03-06 11:11:54").unwrap(),
            "2024-03-06T11:11:54+01:00"
        );
    }

    #[test]
    fn instants_need_a_time() {
        assert_eq!(
            fhir_instant("20240306111154+0100").unwrap(),
            "2024-03-06T11:11:54+01:00"
        );
        assert!(fhir_instant("20240306").is_err());
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(instant_of(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "2024-13-01",
            "20240230",
            "2024-02-30",
            "2024031",
            "abc",
            "2024-03-06T25:00",
            "20240306111154+01",
            "2024-03-06T11:11:5",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse_fhir("20240306").is_err());
    }

    #[test]
    fn ranges_cover_the_precision() {
        let (a, b) = parse("2024-03-06").unwrap().range();
        assert_eq!(instant_of(a), "2024-03-05T23:00:00Z");
        assert_eq!(instant_of(b), "2024-03-06T23:00:00Z");
        let (a, b) = parse("2024-12").unwrap().range();
        assert_eq!(instant_of(a), "2024-11-30T23:00:00Z");
        assert_eq!(instant_of(b), "2024-12-31T23:00:00Z");
        let (a, b) = parse("2024-03-06T10:00:00Z").unwrap().range();
        assert_eq!((b - a).whole_seconds(), 1);
    }
}
