//! CR-IMG 2024.01 writer (placeholder until the CR-BIO and eDISP-MED writers validate).

use crate::model::ImagingReport;

/// Writes the CR-IMG document of an imaging report.
pub fn write(_r: &ImagingReport) -> String {
    unimplemented!("CR-IMG writer not written yet")
}
