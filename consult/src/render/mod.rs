//! The IO-free building blocks of the portal's document pages (issue #14): a stored CDA
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

use crate::fhir::datetime;

/// A stored timestamp (HL7 `YYYYMMDD[HHMM[SS]][+ZZZZ]` or ISO) in the French form the
/// pages show: `dd/mm/yyyy`, with ` HH:MM` when the time was given (the local time as
/// written: CDA times are the sender's, French, local time), `mm/yyyy` or `yyyy` when only
/// those were. `None` when it does not read as a timestamp.
pub fn french_date(ts: &str) -> Option<String> {
    use datetime::Precision::*;
    let s = datetime::parse(ts).ok()?;
    let d = s.local.date();
    let (day, month, year) = (d.day(), u8::from(d.month()), d.year());
    Some(match s.precision {
        Year => format!("{year:04}"),
        Month => format!("{month:02}/{year:04}"),
        Day => format!("{day:02}/{month:02}/{year:04}"),
        Minute | Second => format!(
            "{day:02}/{month:02}/{year:04} {:02}:{:02}",
            s.local.hour(),
            s.local.minute()
        ),
    })
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
    }
}
