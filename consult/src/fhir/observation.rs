//! Observation (category laboratory) from one stored lab result (`Entry::LabObservation`,
//! store's `ResultRow`): the discrete values of a CR-BIO, for trends across documents.
//! `derivedFrom` points at the DocumentReference of the report it came from, the document
//! of record.

use serde_json::{Value, json};

use super::{PatientId, concept, datetime, systems};

/// What an Observation is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabResultInput {
    pub id: String,
    pub loinc: String,
    pub label: String,
    /// The value as text (NM keeps its decimal text, SN may start with a comparator).
    pub value: Option<String>,
    /// HL7 value type: NM, SN, ST, CE, CWE, TX, FT.
    pub value_type: Option<String>,
    /// UCUM unit (CI-SIS requires UCUM in OBX-6 and PQ@unit).
    pub unit: Option<String>,
    /// HL7 table 0078 abnormal flag (L, H, LL, HH, N, A ...).
    pub interpretation: Option<String>,
    pub reference_low: Option<String>,
    pub reference_high: Option<String>,
    pub reference_text: Option<String>,
    /// OBX-11: F, C, P, D ...
    pub status: Option<String>,
    /// Observation time, HL7 or ISO.
    pub time: String,
    pub patient: PatientId,
    /// Logical id of the source DocumentReference.
    pub document_id: String,
}

/// OBX-11 to Observation.status. Results are stored from final reports, so anything
/// unstated reads as `final`.
fn status(s: Option<&str>) -> &'static str {
    match s.unwrap_or("F") {
        "C" => "corrected",
        "P" | "R" | "S" | "I" => "preliminary",
        "D" | "W" => "entered-in-error",
        "X" => "cancelled",
        _ => "final",
    }
}

/// A decimal as a JSON number (French senders may write a comma). `None` when not a
/// plain decimal, so the value is then kept as text instead of being guessed at.
fn decimal(s: &str) -> Option<Value> {
    let s = s.trim().replace(',', ".");
    let plain = !s.is_empty()
        && s.trim_start_matches(['-', '+'])
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.')
        && s.matches('.').count() <= 1
        && s.bytes().any(|b| b.is_ascii_digit());
    if !plain {
        return None;
    }
    serde_json::from_str::<serde_json::Number>(s.trim_start_matches('+'))
        .ok()
        .map(Value::Number)
}

/// A Quantity of `value` in `unit` (UCUM when the unit is a single token).
fn quantity(value: Value, unit: Option<&str>) -> Value {
    let mut q = json!({ "value": value });
    if let Some(u) = unit.map(str::trim).filter(|u| !u.is_empty()) {
        q["unit"] = json!(u);
        if !u.contains(char::is_whitespace) {
            q["system"] = json!(systems::UCUM);
            q["code"] = json!(u);
        }
    }
    q
}

/// Splits an SN-like value (`<0.5`, `>=10`, `<^0.5`) into a FHIR comparator and the number.
fn comparator(s: &str) -> (Option<&'static str>, &str) {
    let s = s.trim();
    for (p, c) in [("<=", "<="), (">=", ">="), ("<", "<"), (">", ">")] {
        if let Some(rest) = s.strip_prefix(p) {
            return (Some(c), rest.trim_start_matches('^').trim());
        }
    }
    (None, s)
}

/// HL7 0078 flags that are also v3 ObservationInterpretation codes.
const INTERPRETATIONS: [&str; 14] = [
    "N", "L", "H", "LL", "HH", "A", "AA", "LU", "HU", "S", "R", "I", "POS", "NEG",
];

pub fn observation(o: &LabResultInput) -> Value {
    let mut code = concept(systems::LOINC, &o.loinc, Some(&o.label));
    if !o.label.is_empty() {
        code["text"] = json!(o.label);
    }
    let mut r = json!({
        "resourceType": "Observation",
        "id": o.id,
        "status": status(o.status.as_deref()),
        "category": [concept(systems::OBSERVATION_CATEGORY, "laboratory", Some("Laboratory"))],
        "code": code,
        "subject": o.patient.reference(),
        "derivedFrom": [{ "reference": format!("DocumentReference/{}", o.document_id) }],
    });
    if let Ok(t) = datetime::fhir_date_time(&o.time) {
        r["effectiveDateTime"] = json!(t);
    }

    let value = o.value.as_deref().map(str::trim).filter(|v| !v.is_empty());
    let numeric = matches!(o.value_type.as_deref(), Some("NM" | "SN") | None);
    match value {
        None => {
            r["dataAbsentReason"] = concept(systems::DATA_ABSENT, "unknown", Some("Unknown"));
        }
        Some(v) if numeric => {
            let (cmp, num) = comparator(v);
            match decimal(num) {
                Some(n) => {
                    let mut q = quantity(n, o.unit.as_deref());
                    if let Some(c) = cmp {
                        q["comparator"] = json!(c);
                    }
                    r["valueQuantity"] = q;
                }
                None => r["valueString"] = json!(v),
            }
        }
        Some(v) if matches!(o.value_type.as_deref(), Some("CE" | "CWE")) => {
            // The stored value is the code alone, its system unknown here: text, not coding.
            r["valueCodeableConcept"] = json!({ "text": v });
        }
        Some(v) => r["valueString"] = json!(v),
    }

    if let Some(flag) = o
        .interpretation
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        r["interpretation"] = json!([if INTERPRETATIONS.contains(&flag) {
            concept(systems::INTERPRETATION, flag, None)
        } else {
            json!({ "text": flag })
        }]);
    }

    let mut range = json!({});
    for (key, v) in [("low", &o.reference_low), ("high", &o.reference_high)] {
        if let Some(n) = v.as_deref().and_then(decimal) {
            range[key] = quantity(n, o.unit.as_deref());
        }
    }
    if let Some(t) = o.reference_text.as_deref().filter(|t| !t.trim().is_empty()) {
        range["text"] = json!(t.trim());
    }
    if range.as_object().is_some_and(|m| !m.is_empty()) {
        r["referenceRange"] = json!([range]);
    }
    r
}

#[cfg(test)]
pub(crate) fn example() -> LabResultInput {
    LabResultInput {
        id: "res-1.2.250.1.999.1.1.20240306.2-1".into(),
        loinc: "2345-7".into(),
        label: "Glucose [Masse/Volume] Sérum/Plasma".into(),
        value: Some("1,05".into()),
        value_type: Some("NM".into()),
        unit: Some("g/L".into()),
        interpretation: Some("H".into()),
        reference_low: Some("0.70".into()),
        reference_high: Some("1.00".into()),
        reference_text: None,
        status: Some("F".into()),
        time: "20240306080000".into(),
        patient: PatientId {
            oid: "1.2.250.1.213.1.4.10".into(),
            ins: "279035121518989".into(),
        },
        document_id: "1.2.250.1.999.1.1.20240306.2".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_result_with_ucum_and_range() {
        let r = observation(&example());
        assert_eq!(r["status"], "final");
        assert_eq!(r["code"]["coding"][0]["system"], "http://loinc.org");
        assert_eq!(r["valueQuantity"]["value"], json!(1.05));
        assert_eq!(r["valueQuantity"]["system"], "http://unitsofmeasure.org");
        assert_eq!(r["valueQuantity"]["code"], "g/L");
        assert_eq!(r["referenceRange"][0]["high"]["value"], json!(1.0));
        assert_eq!(r["interpretation"][0]["coding"][0]["code"], "H");
        assert_eq!(r["effectiveDateTime"], "2024-03-06T08:00:00+01:00");
        assert_eq!(
            r["derivedFrom"][0]["reference"],
            "DocumentReference/1.2.250.1.999.1.1.20240306.2"
        );
    }

    #[test]
    fn comparators_text_values_and_absent_values() {
        let mut o = example();
        o.value = Some("<^0.5".into());
        o.value_type = Some("SN".into());
        let r = observation(&o);
        assert_eq!(r["valueQuantity"]["comparator"], "<");
        assert_eq!(r["valueQuantity"]["value"], json!(0.5));

        o.value = Some("trace".into());
        o.value_type = Some("ST".into());
        o.interpretation = Some("?".into());
        o.reference_low = None;
        o.reference_high = None;
        o.reference_text = Some("négatif".into());
        o.status = Some("C".into());
        let r = observation(&o);
        assert_eq!(r["valueString"], "trace");
        assert_eq!(r["interpretation"][0]["text"], "?");
        assert_eq!(r["referenceRange"][0]["text"], "négatif");
        assert_eq!(r["status"], "corrected");

        o.value = None;
        o.reference_text = None;
        let r = observation(&o);
        assert!(r.get("valueString").is_none());
        assert_eq!(r["dataAbsentReason"]["coding"][0]["code"], "unknown");
        assert!(r.get("referenceRange").is_none());
        assert!(decimal("1.2.3").is_none());
        assert!(decimal("-").is_none());
    }
}
