//! Identity and consent (PAM-FR ADT): A28/A31 create or update the patient, A40 merges
//! (MRG-1 = the identifier that disappears), A47 changes the identifier (MRG-1 = the old
//! one). ZFA carries the DMP status and the patient's consent flags.
//!
//! ZFA reading (the field list was not available to us, domain.md §3.5; this follows the
//! PAM-FR national extension as we understand it and must be confirmed against it):
//! - ZFA-1: DMP status (ACTIF, FERME, ARCHIVE, INEXISTANT ...) → `dmp_status`;
//! - ZFA-4: "autorisation d'accès valide au DMP" (Y/N). `N` is read as the patient
//!   opposing the feeding of their DMP (`feeding_opposed = Some(true)`), `Y` as
//!   `Some(false)`; anything else leaves `feeding_opposed` at None (not stated).

use dmpflow_schemas::reasons::Reject;
use dmpflow_schemas::{Normalized, PatientChange, PatientUpdate};

use super::common::{Ctx, missing, segment_missing};
use super::pid::{ins_of, patient};
use crate::hl7::Message;

pub fn map(ctx: &Ctx<'_>, msg: &Message<'_>) -> Result<Vec<Normalized>, Reject> {
    let patient = patient(msg)?;
    let old = || -> Result<(String, String), Reject> {
        let mrg = msg.segment("MRG").ok_or_else(|| segment_missing("MRG"))?;
        ins_of(mrg.field(1)).ok_or_else(|| missing("MRG-1 INS repetition (CX.5 = INS)"))
    };
    let change = match ctx.event.as_str() {
        "A40" => {
            let (from_ins, from_oid) = old()?;
            PatientChange::Merge { from_ins, from_oid }
        }
        "A47" => {
            let (old_ins, old_oid) = old()?;
            PatientChange::IdentifierChange { old_ins, old_oid }
        }
        _ => PatientChange::Upsert,
    };
    let zfa = msg.segment("ZFA");
    let dmp_status = zfa
        .map(|z| z.field(1).component(1).decoded().trim().to_string())
        .filter(|s| !s.is_empty());
    let feeding_opposed = zfa.and_then(|z| match z.field(4).raw().trim() {
        "N" => Some(true),
        "Y" => Some(false),
        _ => None,
    });
    Ok(vec![Normalized::Patient(Box::new(PatientUpdate {
        change,
        patient,
        feeding_opposed,
        dmp_status,
        source: ctx.source(0),
    }))])
}
