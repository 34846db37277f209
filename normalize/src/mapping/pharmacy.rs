//! Pharmacy dispensation (RDS^O13: ORC + one or more RXD) → `Dispensation` → eDISP-MED via
//! `cda::pharmacy::write`, plus one `Entry::Dispensation` per RXD. Drug codes are CIP13 or
//! UCD13 with a verified check digit.

use dmpflow_schemas::reasons::{Reason, Reject};
use dmpflow_schemas::{Cda, Document, Entry, Lifecycle, Normalized};

use super::common::{
    Ctx, HeaderParts, PHARMACY_KIND, author_and_org, document_header, dtm, generated_meta, missing,
    professional, segment_missing, some_professional, visibility,
};
use super::pid::patient;
use crate::hl7::{Message, Segment};
use crate::model::{Dispensation, DispensedItem};

pub const CIP_OID: &str = "1.2.250.1.213.2.3.2";
pub const UCD_OID: &str = "1.2.250.1.213.2.61";

/// Which French drug code a 13-digit code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrugCodeKind {
    /// CIP13 (presentation code, `34009...`), code system 1.2.250.1.213.2.3.2.
    Cip13,
    /// UCD13 (dispensing unit, `34008...`), code system 1.2.250.1.213.2.61.
    Ucd13,
}

impl DrugCodeKind {
    pub fn oid(self) -> &'static str {
        match self {
            DrugCodeKind::Cip13 => CIP_OID,
            DrugCodeKind::Ucd13 => UCD_OID,
        }
    }
}

/// Checks a CIP13/UCD13 code. Both are EAN-13 numbers in the French `3400` prefix: the
/// 13th digit is the EAN check digit (weights 1, 3, 1, 3 ... over the first 12 digits,
/// check = (10 − sum mod 10) mod 10; e.g. 3400930000120 → 0).
///
/// `drug.code.invalid` when it is not 13 digits starting with 3400; `drug.cip13.checkdigit`
/// when the check digit is wrong.
pub fn check_drug_code(code: &str) -> Result<DrugCodeKind, Reject> {
    let b = code.as_bytes();
    if b.len() != 13 || !b.iter().all(u8::is_ascii_digit) || !code.starts_with("3400") {
        return Err(Reject::new(
            Reason::DrugCodeInvalid,
            "drug code is not a 13-digit CIP13/UCD13 (3400...)",
        ));
    }
    let sum: u32 = b[..12]
        .iter()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    let check = (10 - sum % 10) % 10;
    if u32::from(b[12] - b'0') != check {
        return Err(Reject::new(
            Reason::DrugCip13Checkdigit,
            "drug code check digit is wrong",
        ));
    }
    Ok(if code.starts_with("34008") {
        DrugCodeKind::Ucd13
    } else {
        DrugCodeKind::Cip13
    })
}

pub fn map(ctx: &Ctx<'_>, msg: &Message<'_>) -> Result<Vec<Normalized>, Reject> {
    super::limits::check_generated(msg, ctx.cfg)?;
    let d = report(ctx, msg)?;
    let entries = d
        .items
        .iter()
        .map(|i| Entry::Dispensation {
            code: i.code.clone(),
            code_system: i.code_system.clone(),
            label: i.label.clone(),
            quantity: i.quantity.clone(),
            unit: i.unit.clone(),
            time: i.dispensed_at.clone(),
        })
        .collect();
    let meta = generated_meta(ctx, &d.header, &PHARMACY_KIND, visibility(msg), 0);
    let cda = crate::cda::pharmacy::write(&d);
    super::limits::check_size(cda.len(), ctx.cfg)?;
    Ok(vec![Normalized::Document(Box::new(Document {
        meta,
        cda: Cda::Xml(cda),
        entries,
    }))])
}

fn item(rxd: &Segment<'_>, n: usize) -> Result<DispensedItem, Reject> {
    let give = rxd.field(2);
    let code: String = give
        .component(1)
        .decoded()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let kind = check_drug_code(&code)
        .map_err(|e| Reject::new(e.reason, format!("RXD-2 of RXD {n}: {}", e.detail)))?;
    let dispensed_at =
        dtm(rxd.field(3), "RXD-3")?.ok_or_else(|| missing(&format!("RXD-3 of RXD {n}")))?;
    let quantity = rxd.field(4).decoded().trim().to_string();
    if quantity.is_empty() {
        return Err(missing(&format!("RXD-4 of RXD {n}")));
    }
    Ok(DispensedItem {
        code,
        code_system: kind.oid().to_string(),
        label: give.component(2).decoded().trim().to_string(),
        quantity,
        unit: Some(rxd.field(5).component(1).decoded().trim().to_string())
            .filter(|s| !s.is_empty()),
        dispensed_at,
        prescription_id: Some(rxd.field(7).component(1).decoded().trim().to_string())
            .filter(|s| !s.is_empty()),
    })
}

/// ORC-1 of a dispensation: NW (or RE/SC/empty: a report of what was dispensed) is an
/// initial document, RO/XO a replacement, CA a deletion.
fn lifecycle(orc1: &str) -> Result<Lifecycle, Reject> {
    match orc1 {
        "NW" | "RE" | "SC" | "" => Ok(Lifecycle::Initial),
        "RO" | "XO" => Ok(Lifecycle::Replace),
        "CA" => Ok(Lifecycle::Delete),
        _ => Err(Reject::new(
            Reason::Hl7LifecycleInconsistent,
            "ORC-1 of a dispensation is not NW, RE, SC, RO, XO or CA",
        )),
    }
}

/// The typed dispensation of the message.
pub fn report(ctx: &Ctx<'_>, msg: &Message<'_>) -> Result<Dispensation, Reject> {
    let patient = patient(msg)?;
    let orc = msg.segment("ORC").ok_or_else(|| segment_missing("ORC"))?;
    let rxds: Vec<Segment<'_>> = msg.segments("RXD").collect();
    if rxds.is_empty() {
        return Err(segment_missing("RXD"));
    }
    let items = rxds
        .iter()
        .enumerate()
        .map(|(i, r)| item(r, i + 1))
        .collect::<Result<Vec<_>, _>>()?;
    let lifecycle = lifecycle(orc.field(1).raw().trim())?;
    let prescription_id = Some(orc.field(2).component(1).decoded().trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| items.iter().find_map(|i| i.prescription_id.clone()));
    let order_id = prescription_id
        .clone()
        .ok_or_else(|| missing("ORC-2/RXD-7 (prescription number)"))?;
    let pharmacist = rxds
        .iter()
        .find_map(|r| some_professional(professional(r.field(10))));
    let (author, mut organisation) = author_and_org(
        msg,
        pharmacist.clone(),
        "dispensing pharmacist (RXD-10 or PRT SB)",
    )?;
    // ORC-21 (ordering facility) names the pharmacy when there is no PRT SB organisation.
    let orc21 = orc.field(21);
    if organisation.id.is_empty() || super::common::sent_by(msg).is_none() {
        let id = orc21.component(10).decoded().trim().to_string();
        if !id.is_empty() {
            organisation.id = id;
            organisation.name = orc21.component(1).decoded().trim().to_string();
        }
    }
    let first_time = items.iter().map(|i| i.dispensed_at.clone()).min();
    let last_time = items.iter().map(|i| i.dispensed_at.clone()).max();
    let header = document_header(
        ctx,
        HeaderParts {
            order_id,
            kind: &PHARMACY_KIND,
            lifecycle,
            patient,
            author: author.clone(),
            organisation,
            sector: "SA33",
            effective_time: last_time.clone().unwrap_or_else(|| ctx.time.clone()),
            service_start: first_time,
            service_stop: last_time,
        },
        0,
    );
    Ok(Dispensation {
        header,
        prescription_id,
        prescriber: some_professional(professional(orc.field(12))),
        pharmacist: pharmacist.unwrap_or(author),
        items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_cip13_codes_pass() {
        // CIP13 codes as printed on French drug boxes: the EAN rule holds for all of them.
        for c in [
            "3400930000120",
            "3400935955838",
            "3400934998331",
            "3400936404397",
        ] {
            assert_eq!(check_drug_code(c).unwrap(), DrugCodeKind::Cip13, "{c}");
        }
        assert_eq!(
            check_drug_code("3400890000000").unwrap(),
            DrugCodeKind::Ucd13
        );
    }

    #[test]
    fn wrong_codes_are_rejected() {
        assert_eq!(
            check_drug_code("3400930000121").unwrap_err().reason,
            Reason::DrugCip13Checkdigit
        );
        for c in [
            "340093000012",
            "34009300001200",
            "1234567890128",
            "34009300A0120",
        ] {
            assert_eq!(
                check_drug_code(c).unwrap_err().reason,
                Reason::DrugCodeInvalid,
                "{c}"
            );
        }
    }
}
