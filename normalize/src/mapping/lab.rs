//! Structured lab results (ORU^R01: ORC, OBR batteries, OBX results, NTE comments) →
//! `LabReport` → CR-BIO via `cda::lab::write`, plus one `Entry::LabObservation` per result.

use dmpflow_schemas::reasons::Reject;
use dmpflow_schemas::{Cda, Document, Entry, Normalized};

use super::common::{
    Ctx, HeaderParts, LAB_KIND, author_and_org, coded, default_chapter, document_header, dtm,
    generated_meta, interpreter, invalid, lab_chapter, professional, segment_missing,
    some_professional, visibility,
};
use super::pid::patient;
use crate::hl7::{Message, Segment};
use crate::model::{LabBattery, LabObservation, LabReport, ReferenceRange, ResultValue};

pub fn map(ctx: &Ctx<'_>, msg: &Message<'_>) -> Result<Vec<Normalized>, Reject> {
    super::limits::check_generated(msg, ctx.cfg)?;
    let report = report(ctx, msg)?;
    let meta = generated_meta(ctx, &report.header, &LAB_KIND, visibility(msg), 0);
    let cda = crate::cda::lab::write(&report);
    super::limits::check_size(cda.len(), ctx.cfg)?;
    // The results move into the entries once the CDA is written: cloned, they were ten
    // allocations per result (bench/ANALYSIS.md, session 17).
    let entries = report
        .batteries
        .into_iter()
        .flat_map(|b| b.observations)
        .map(entry)
        .collect();
    Ok(vec![Normalized::Document(Box::new(Document {
        meta,
        cda: Cda::Xml(cda),
        entries,
    }))])
}

/// The typed report of the message.
pub fn report(ctx: &Ctx<'_>, msg: &Message<'_>) -> Result<LabReport, Reject> {
    let patient = patient(msg)?;
    let orc = msg.segment("ORC");
    let first_obr = msg.segment("OBR").ok_or_else(|| segment_missing("OBR"))?;
    let mut batteries: Vec<LabBattery> = Vec::new();
    // NTE attach to the last OBX of the current battery, or to the battery itself.
    let mut last_was_obr = false;
    // Consecutive NTE lines are one comment (labs send a multi-line comment one NTE per
    // line): one comment entry per NTE cost ~1 KB of CDA each, so 4 MB of one-character
    // NTE lines became a 470 MB document (issue #16 item 7).
    let mut last_was_nte = false;
    for seg in msg.all() {
        let is_nte = seg.name() == "NTE";
        let continues_comment = last_was_nte && is_nte;
        last_was_nte = is_nte;
        match seg.name() {
            "OBR" => {
                batteries.push(battery(&seg)?);
                last_was_obr = true;
            }
            "OBX" => {
                let Some(b) = batteries.last_mut() else {
                    return Err(segment_missing("OBR before the first OBX"));
                };
                if super::common::is_meta_obx(&seg) || super::common::is_ed(&seg) {
                    continue;
                }
                let n = b.observations.len();
                let obs = observation(&seg, b.specimen_time.clone(), n + 1)?;
                // Consecutive text lines of the same test form one multi-line value.
                if let (Some(prev), ResultValue::Text(t)) = (b.observations.last_mut(), &obs.value)
                    && let ResultValue::Text(pt) = &mut prev.value
                    && prev.code == obs.code
                    && matches!(seg.field(2).raw(), "TX" | "FT")
                {
                    pt.push('\n');
                    pt.push_str(t);
                } else {
                    b.observations.push(obs);
                }
                last_was_obr = false;
            }
            "NTE" => {
                let text = seg
                    .field(3)
                    .repetitions()
                    .map(|r| r.decoded().into_owned())
                    .collect::<Vec<_>>()
                    .join("\n");
                if let Some(b) = batteries.last_mut() {
                    let comments = match b.observations.last_mut() {
                        Some(o) if !last_was_obr => &mut o.comments,
                        _ => &mut b.comments,
                    };
                    match comments.last_mut() {
                        Some(c) if continues_comment => {
                            c.push('\n');
                            c.push_str(&text);
                        }
                        _ => comments.push(text),
                    }
                }
            }
            _ => {}
        }
    }
    let statuses: Vec<&str> = batteries
        .iter()
        .flat_map(|b| b.observations.iter().map(|o| o.status.as_str()))
        .collect();
    let orc1 = orc.map(|o| o.field(1).raw().trim()).unwrap_or("");
    let lifecycle = super::common::generated_lifecycle(orc1, &statuses)?;
    let order_id = orc
        .map(|o| o.field(2).component(1).decoded().trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| first_obr.field(2).component(1).decoded().trim().to_string());
    if order_id.is_empty() {
        return Err(super::common::missing("ORC-2/OBR-2 (placer order number)"));
    }
    let prescriber = orc
        .and_then(|o| some_professional(professional(o.field(12))))
        .or_else(|| some_professional(professional(first_obr.field(16))));
    let (author, organisation) = author_and_org(
        msg,
        some_professional(interpreter(first_obr.field(32))),
        "author (PRT SB or OBR-32)",
    )?;
    let service_start = batteries
        .iter()
        .filter_map(|b| b.specimen_time.clone())
        .min();
    let effective_time = dtm(first_obr.field(22), "OBR-22")?.unwrap_or_else(|| ctx.time.clone());
    let header = document_header(
        ctx,
        HeaderParts {
            order_id: order_id.clone(),
            kind: &LAB_KIND,
            lifecycle,
            patient,
            author,
            organisation,
            sector: "SA25",
            effective_time: effective_time.clone(),
            service_start,
            service_stop: Some(effective_time),
        },
        0,
    );
    Ok(LabReport {
        header,
        order_id,
        prescriber,
        batteries,
    })
}

fn battery(obr: &Segment<'_>) -> Result<LabBattery, Reject> {
    let code = coded(obr.field(4));
    let chapter = lab_chapter(&code.code).unwrap_or_else(default_chapter);
    let status = obr.field(25).raw().trim();
    Ok(LabBattery {
        code,
        chapter,
        specimen_time: dtm(obr.field(7), "OBR-7")?,
        status: if status.is_empty() { "F" } else { status }.to_string(),
        observations: Vec::new(),
        comments: Vec::new(),
    })
}

/// Whether `s` is a decimal number as HL7 NM allows (`[+-]digits[.digits]`).
fn is_number(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    !s.is_empty() && digits(int) && frac.is_none_or(|f| !f.is_empty() && digits(f)) && s != "."
}

fn observation(
    obx: &Segment<'_>,
    specimen_time: Option<String>,
    n: usize,
) -> Result<LabObservation, Reject> {
    let vt = obx.field(2).raw().trim();
    let v = obx.field(5);
    let unit = {
        let u = obx.field(6).component(1).decoded().trim().to_string();
        if u.is_empty() { "1".to_string() } else { u }
    };
    let value = match vt {
        "NM" => {
            let s = v.decoded().trim().to_string();
            if !is_number(&s) {
                return Err(invalid(&format!("OBX-5 (NM) of result {n}")));
            }
            ResultValue::Quantity { value: s, unit }
        }
        "SN" => {
            // SN: comparator ^ num1 ^ separator/suffix ^ num2.
            let cmp = v.component(1).decoded().trim().to_string();
            let n1 = v.component(2).decoded().trim().to_string();
            let sep = v.component(3).decoded().trim().to_string();
            let n2 = v.component(4).decoded().trim().to_string();
            if !is_number(&n1) || !(n2.is_empty() || is_number(&n2)) {
                return Err(invalid(&format!("OBX-5 (SN) of result {n}")));
            }
            let value = if n2.is_empty() {
                n1
            } else {
                format!("{n1}{sep}{n2}")
            };
            ResultValue::Structured {
                comparator: cmp,
                value,
                unit,
            }
        }
        "CE" | "CWE" => ResultValue::Coded(coded(v)),
        _ => ResultValue::Text(
            v.repetitions()
                .map(|r| r.decoded().into_owned())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
    };
    let status = obx.field(11).raw().trim();
    Ok(LabObservation {
        code: coded(obx.field(3)),
        value,
        range: range(&obx.field(7).decoded()),
        interpretation: interpretation(obx.field(8).repetition(1).raw()),
        status: if status.is_empty() { "F" } else { status }.to_string(),
        time: dtm(obx.field(14), "OBX-14")?.or(specimen_time),
        comments: Vec::new(),
    })
}

/// OBX-7: `low-high`, `<x`, `<=x`, `>x`, `>=x`; anything else is kept as text.
pub fn range(raw: &str) -> ReferenceRange {
    let s = raw.trim();
    if s.is_empty() {
        return ReferenceRange::default();
    }
    for (prefix, is_high) in [("<=", true), (">=", false), ("<", true), (">", false)] {
        if let Some(x) = s.strip_prefix(prefix) {
            let x = x.trim();
            if is_number(x) {
                let (low, high) = if is_high {
                    (None, Some(x.to_string()))
                } else {
                    (Some(x.to_string()), None)
                };
                // The comparator matters (strict or not): keep the text too.
                return ReferenceRange {
                    low,
                    high,
                    text: Some(s.to_string()),
                };
            }
        }
    }
    // Split on a '-' that is not a sign: the first one after at least one character.
    if let Some((i, _)) = s.char_indices().skip(1).find(|(_, c)| *c == '-') {
        let (lo, hi) = (s[..i].trim(), s[i + 1..].trim());
        if is_number(lo) && is_number(hi) {
            return ReferenceRange {
                low: Some(lo.to_string()),
                high: Some(hi.to_string()),
                text: None,
            };
        }
    }
    ReferenceRange {
        low: None,
        high: None,
        text: Some(s.to_string()),
    }
}

/// OBX-8 (HL7 table 0078) → ObservationInterpretation. Codes outside the common set are
/// dropped rather than passed on unchecked.
pub fn interpretation(raw: &str) -> Option<String> {
    let c = raw.trim().to_ascii_uppercase();
    matches!(
        c.as_str(),
        "N" | "L" | "H" | "LL" | "HH" | "A" | "AA" | "<" | ">" | "S" | "R" | "I"
    )
    .then_some(c)
}

fn entry(o: LabObservation) -> Entry {
    let (value, value_type, unit) = match o.value {
        ResultValue::Quantity { value, unit } => (value, "NM", Some(unit)),
        ResultValue::Structured {
            mut comparator,
            value,
            unit,
        } => {
            comparator.push_str(&value);
            (comparator, "SN", Some(unit))
        }
        ResultValue::Coded(c) => (c.code, "CE", None),
        ResultValue::Text(t) => (t, "TX", None),
    };
    Entry::LabObservation {
        loinc: o.code.code,
        label: o.code.display,
        value,
        value_type: value_type.to_string(),
        unit,
        interpretation: o.interpretation,
        reference_low: o.range.low,
        reference_high: o.range.high,
        reference_text: o.range.text,
        status: o.status,
        time: o.time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = range("3.5-5.1");
        assert_eq!(
            (r.low.as_deref(), r.high.as_deref(), r.text),
            (Some("3.5"), Some("5.1"), None)
        );
        let r = range("<5");
        assert_eq!(
            (r.low, r.high.as_deref(), r.text.as_deref()),
            (None, Some("5"), Some("<5"))
        );
        let r = range(">60");
        assert_eq!(r.low.as_deref(), Some("60"));
        let r = range("-2-2");
        assert_eq!(
            (r.low.as_deref(), r.high.as_deref()),
            (Some("-2"), Some("2"))
        );
        assert_eq!(range("négatif").text.as_deref(), Some("négatif"));
        assert_eq!(range("é-1").text.as_deref(), Some("é-1"));
        assert_eq!(range(""), ReferenceRange::default());
    }

    #[test]
    fn interpretations() {
        assert_eq!(interpretation("HH").as_deref(), Some("HH"));
        assert_eq!(interpretation("l").as_deref(), Some("L"));
        assert_eq!(interpretation("ZZ"), None);
        assert_eq!(interpretation(""), None);
    }

    #[test]
    fn numbers() {
        assert!(is_number("1.950") && is_number("-3") && is_number("+2"));
        assert!(!is_number("1,5") && !is_number("") && !is_number("1.") && !is_number("."));
    }
}
