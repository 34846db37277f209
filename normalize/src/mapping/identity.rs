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
use super::pid::{ins_and_others, patient};
use crate::hl7::Message;

pub fn map(ctx: &Ctx<'_>, msg: &Message<'_>) -> Result<Vec<Normalized>, Reject> {
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
        consultation_consent: None,
        times: Default::default(),
        event: ctx.event.clone(),
        source: ctx.source(0),
    }))])
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
}
