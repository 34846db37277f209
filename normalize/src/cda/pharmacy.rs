//! eDISP-MED 2024.01 writer (placeholder until the CR-BIO writer validates).

use crate::model::Dispensation;

/// Writes the eDISP-MED document of a dispensation.
pub fn write(_d: &Dispensation) -> String {
    unimplemented!("eDISP-MED writer not written yet")
}
