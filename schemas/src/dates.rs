//! Calendar dates as every stage checks them: a birth date must be a day that exists
//! (2023-02-29 and 2023-02-31 do not), whether it comes from HL7 (PID-7), a CDA birthTime
//! or the registry's CSV import. One rule, here, so the three readers cannot disagree.

/// Whether `year`-`month`-`day` is a day of the proleptic Gregorian calendar (years 0 to
/// 9999, the four-digit years the formats can write).
pub fn is_calendar_date(year: i32, month: u8, day: u8) -> bool {
    if !(0..=9999).contains(&year) {
        return false;
    }
    let Ok(month) = time::Month::try_from(month) else {
        return false;
    };
    time::Date::from_calendar_date(year, month, day).is_ok()
}

/// Whether `s` is exactly `YYYY-MM-DD` (ASCII digits) and a real calendar day.
pub fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r.clone()]
            .iter()
            .all(u8::is_ascii_digit)
            .then(|| s[r].parse().ok())
            .flatten()
    };
    match (digits(0..4), digits(5..7), digits(8..10)) {
        (Some(y), Some(m), Some(d)) => is_calendar_date(y as i32, m as u8, d as u8),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_days_only() {
        assert!(is_calendar_date(2024, 2, 29));
        assert!(!is_calendar_date(2023, 2, 29));
        assert!(!is_calendar_date(2023, 2, 31));
        assert!(!is_calendar_date(2023, 4, 31));
        assert!(!is_calendar_date(1900, 2, 29));
        assert!(is_calendar_date(2000, 2, 29));
        assert!(!is_calendar_date(2023, 0, 1));
        assert!(!is_calendar_date(2023, 13, 1));
        assert!(!is_calendar_date(2023, 1, 0));
        assert!(!is_calendar_date(-1, 1, 1));
        assert!(!is_calendar_date(10_000, 1, 1));
    }

    #[test]
    fn iso_form() {
        assert!(is_iso_date("1979-03-28"));
        assert!(is_iso_date("2024-02-29"));
        for bad in [
            "2023-02-29",
            "2023-02-31",
            "1979-13-05",
            "1979-3-28",
            "19790328",
            "1979-03-28x",
            "1979/03/28",
            "+979-03-28",
            "1979-0a-28",
            "",
        ] {
            assert!(!is_iso_date(bad), "{bad}");
        }
    }
}
