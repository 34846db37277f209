//! dmpflow-render: the IO-free building blocks of the portal's document pages (issue #14): a stored CDA
//! rendered to a header and **safe HTML** sections (`cda`), one analyte's results over time
//! as a self-contained SVG chart (`chart`), and the one escaping function both use.
//!
//! Plain `String` building rather than a template engine (maud, askama): the markup here
//! is a closed set of fixed tags chosen by code, and every piece of text from a document
//! goes through [`escape`]; a template engine would add a dependency and a second place
//! where escaping happens without making either property easier to check. The tests and
//! the `render_cda` fuzz target check the output instead.

pub mod cda;
pub mod chart;
mod html;

#[cfg(test)]
mod cda_tests;

pub use cda::{
    Author, Limits, Patient, Pdf, PdfOrigin, PdfProblem, RenderError, RenderedDocument, Section,
    render_document,
};
pub use chart::{ResultPoint, results_chart};
pub use html::escape;

/// A stored timestamp (HL7 `YYYYMMDD[HHMM[SS]][+ZZZZ]` or ISO `YYYY-MM-DD[THH:MM[:SS]]…`)
/// in the French form the pages show: `dd/mm/yyyy`, with ` HH:MM` when the time was given
/// (the local time as written: CDA times are the sender's, French, local time, so no zone
/// arithmetic is done here), `mm/yyyy` or `yyyy` when only those were. `None` when it does
/// not read as a timestamp (a calendar date is checked: 31/02 is refused).
pub fn french_date(ts: &str) -> Option<String> {
    let ts = ts.trim();
    // The digits of the date and time, before any zone or fraction: ISO separators are
    // dropped, an HL7 zone (`+0100`) or ISO one (`+01:00`, `Z`) ends the reading.
    let mut digits = String::with_capacity(14);
    for (i, c) in ts.char_indices() {
        match c {
            '0'..='9' => digits.push(c),
            '-' if i == 4 || i == 7 => {}
            'T' | ':' if i >= 10 => {}
            '+' | '-' | 'Z' | '.' if digits.len() >= 8 => break,
            _ => return None,
        }
        if digits.len() > 14 {
            return None;
        }
    }
    let num = |r: std::ops::Range<usize>| digits.get(r)?.parse::<u32>().ok();
    let year = num(0..4)?;
    match digits.len() {
        4 => Some(format!("{year:04}")),
        6 => {
            let month = num(4..6)?;
            (1..=12)
                .contains(&month)
                .then(|| format!("{month:02}/{year:04}"))
        }
        8 | 12 | 14 => {
            let (month, day) = (num(4..6)?, num(6..8)?);
            let m = time::Month::try_from(u8::try_from(month).ok()?).ok()?;
            time::Date::from_calendar_date(year as i32, m, u8::try_from(day).ok()?).ok()?;
            if digits.len() == 8 {
                return Some(format!("{day:02}/{month:02}/{year:04}"));
            }
            let (hour, minute) = (num(8..10)?, num(10..12)?);
            (hour < 24 && minute < 60)
                .then(|| format!("{day:02}/{month:02}/{year:04} {hour:02}:{minute:02}"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::french_date;

    #[test]
    fn french_dates_keep_the_precision_given() {
        assert_eq!(french_date("19460128").as_deref(), Some("28/01/1946"));
        assert_eq!(
            french_date("20241101095200+0100").as_deref(),
            Some("01/11/2024 09:52")
        );
        assert_eq!(french_date("202411").as_deref(), Some("11/2024"));
        assert_eq!(french_date("2024").as_deref(), Some("2024"));
        assert_eq!(french_date("not a date"), None);
        assert_eq!(french_date("20241341"), None);
        assert_eq!(french_date("20240230"), None);
        assert_eq!(
            french_date("2024-03-06T11:11:54+01:00").as_deref(),
            Some("06/03/2024 11:11")
        );
        assert_eq!(french_date("2024-03-06").as_deref(), Some("06/03/2024"));
        assert_eq!(french_date("20241101+0100").as_deref(), Some("01/11/2024"));
        assert_eq!(french_date("2024110109+0100"), None);
    }
}
