//! eDISP-MED 2024.01 writer (CI-SIS "Dispensation médicamenteuse", on IHE Pharmacy DIS):
//! one "Médicaments délivrés" section with a narrative table and one dispensation entry
//! (`supply`) per dispensed product, coded with its CIP13 or UCD13 code. Modelled on the ANS
//! example `eDISP-MED_2024.01.xml`.

use std::io;

use super::header::{self, Order, Participant, ServiceEvent, Spec};
use super::{
    Fixed, NS_HL7, NS_XSI, Xml, empty, end, ends, human_time, is_decimal, node, oid, start,
    template_id, text,
};
use crate::model::{Coded, Dispensation, DispensedItem};

const NS_PHARM: &str = "urn:ihe:pharm:medication";
pub const TITLE: &str = "Dispensation médicamenteuse";
pub const CODE: (&str, &str) = ("60593-1", "Dispensation médicamenteuse");
/// IHE PCC, IHE Pharmacy DIS and CI-SIS eDISP-MED document templateIds.
pub const TEMPLATE_IDS: [(&str, Option<&str>); 3] = [
    ("1.3.6.1.4.1.19376.1.5.3.1.1.1", None),
    ("1.3.6.1.4.1.19376.1.9.1.1.3", None),
    ("1.2.250.1.213.1.1.1.54", Some("2024.01")),
];
pub const CIP: &str = "1.2.250.1.213.2.3.2";
pub const UCD: &str = "1.2.250.1.213.2.61";

/// Writes the eDISP-MED document of a dispensation.
///
/// The dispensing pharmacist is the document author (and the performer of the service
/// event), whatever `header.author` holds: eDISP-MED documents are authored by the
/// dispenser.
pub fn write(d: &Dispensation) -> String {
    let mut w = super::new_writer();
    write_doc(&mut w, d).expect("writing to a Vec cannot fail");
    super::finish(w)
}

fn code_system_name(system: &str) -> Option<&'static str> {
    match system {
        CIP => Some("CIP"),
        UCD => Some("UCD"),
        _ => None,
    }
}

/// The prescription an item answers: its own RXD-7, else the document's.
fn prescription_of<'a>(d: &'a Dispensation, item: &'a DispensedItem) -> Option<&'a str> {
    item.prescription_id
        .as_deref()
        .or(d.prescription_id.as_deref())
        .filter(|s| !s.is_empty())
}

/// Every prescription the dispensation fulfils, once each, in order: one
/// `inFulfillmentOf` per prescription. (Item-level links, "FR-Reference-item-prescription",
/// would force a dispenser-instructions entry that the messages do not carry, so the
/// per-item prescription number is shown in the narrative only.)
fn prescriptions(d: &Dispensation) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for p in d.items.iter().filter_map(|i| prescription_of(d, i)) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    if let Some(p) = d.prescription_id.as_deref().filter(|p| !p.is_empty())
        && !out.contains(&p)
    {
        out.push(p);
    }
    out
}

fn write_doc(w: &mut Xml, d: &Dispensation) -> io::Result<()> {
    let mut h = d.header.clone();
    h.author = d.pharmacist.clone();
    let first = d.items.iter().map(|i| i.dispensed_at.as_str()).min();
    let last = d.items.iter().map(|i| i.dispensed_at.as_str()).max();
    let service_code = Coded {
        code: CODE.0.into(),
        display: CODE.1.into(),
        system: oid::LOINC.into(),
    };
    let prescription_root = header::local_id_root("prescription", &h.organisation);
    let spec = Spec {
        template_ids: &TEMPLATE_IDS,
        code: CODE,
        title: TITLE,
        participants: d
            .prescriber
            .iter()
            .map(|p| Participant {
                type_code: "REF",
                template_id: None,
                function_code: None,
                who: p,
            })
            .collect(),
        orders: prescriptions(d)
            .into_iter()
            .map(|p| Order {
                root: prescription_root.clone(),
                id: p,
                accession_number: None,
            })
            .collect(),
        service_events: vec![ServiceEvent {
            id: None,
            code: &service_code,
            translations: vec![],
            modality: None,
            lab_status: None,
            low: h.service_start.as_deref().or(first),
            high: h.service_stop.as_deref().or(last),
            performer: Some(None),
        }],
    };
    node(
        w,
        "ClinicalDocument",
        &[
            ("xmlns", NS_HL7),
            ("xmlns:pharm", NS_PHARM),
            ("xmlns:xsi", NS_XSI),
        ],
        |w| {
            header::write(w, &h, &spec)?;
            node(w, "component", &[], |w| {
                node(w, "structuredBody", &[], |w| {
                    node(w, "component", &[], |w| section(w, d, &h.unique_id))
                })
            })
        },
    )
}

fn section(w: &mut Xml, d: &Dispensation, doc_id: &str) -> io::Result<()> {
    node(
        w,
        "section",
        &[("classCode", "DOCSECT"), ("moodCode", "EVN")],
        |w| {
            template_id(w, "1.3.6.1.4.1.19376.1.9.1.2.3", None)?;
            template_id(w, "2.16.840.1.113883.10.20.1.8", None)?;
            template_id(w, "1.2.250.1.213.1.1.2.236", None)?;
            empty(
                w,
                "id",
                &[("root", &super::uuid_for(&[doc_id, "dispensation-section"]))],
            )?;
            empty(
                w,
                "code",
                &[
                    ("code", "60590-7"),
                    ("displayName", "Médicaments délivrés"),
                    ("codeSystem", oid::LOINC),
                    ("codeSystemName", "LOINC"),
                ],
            )?;
            text(w, "title", &[], "Médicaments délivrés")?;
            narrative(w, d)?;
            for (i, item) in d.items.iter().enumerate() {
                supply(w, doc_id, i, item)?;
            }
            Ok(())
        },
    )
}

fn quantity_text(item: &DispensedItem) -> String {
    match &item.unit {
        Some(u) if !u.is_empty() => format!("{} {u}", item.quantity),
        _ => item.quantity.clone(),
    }
}

fn narrative(w: &mut Xml, d: &Dispensation) -> io::Result<()> {
    w.fixed(&TABLE_HEAD);
    for (i, item) in d.items.iter().enumerate() {
        node(w, "tr", &[("ID", &format!("med-{i}"))], |w| {
            node(w, "td", &[], |w| {
                text(
                    w,
                    "content",
                    &[("ID", &format!("med-{i}-name"))],
                    &item.label,
                )
            })?;
            let system = code_system_name(&item.code_system).unwrap_or("Code");
            text(w, "td", &[], &format!("{system} {}", item.code))?;
            text(w, "td", &[], &quantity_text(item))?;
            text(w, "td", &[], &human_time(&item.dispensed_at))?;
            text(w, "td", &[], prescription_of(d, item).unwrap_or(""))
        })?;
    }
    w.fixed(&TABLE_END);
    Ok(())
}

/// The quantity as a PQ. eDISP-MED units are free text in RXD-5 (boîte, flacon ...): the
/// UCUM units a dispensation uses are kept, an annotation `{...}` is kept, and anything
/// else becomes a UCUM annotation (spaces as '_') so the XSD `cs` type holds and no reader
/// mistakes it for a unit; no unit means "1" (a count).
fn quantity(w: &mut Xml, item: &DispensedItem) -> io::Result<()> {
    let value = item.quantity.trim().replace(',', ".");
    if !is_decimal(&value) {
        return empty(w, "quantity", &[("nullFlavor", "UNK")]);
    }
    match item
        .unit
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        None => empty(w, "quantity", &[("value", &value)]),
        Some(u) => empty(
            w,
            "quantity",
            &[("value", &value), ("unit", &ucum_or_annotation(u))],
        ),
    }
}

fn ucum_or_annotation(u: &str) -> String {
    const UCUM: [&str; 12] = [
        "1", "mL", "L", "dL", "g", "mg", "ug", "kg", "[iU]", "[IU]", "[drp]", "%",
    ];
    let annotation = u.starts_with('{') && u.ends_with('}') && !u.contains(char::is_whitespace);
    if UCUM.contains(&u) || annotation {
        u.to_string()
    } else {
        format!("{{{}}}", u.split_whitespace().collect::<Vec<_>>().join("_"))
    }
}

// The runs of markup every dispensation repeats, written once (`Fixed`): the narrative
// table's head and end, and a dispensed line's entry around its values.

static TABLE_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        super::narrative_table_head(
            w,
            &[
                "Médicament",
                "Code",
                "Quantité délivrée",
                "Date de délivrance",
                "Prescription",
            ],
        )
    })
});
static TABLE_END: Fixed = Fixed::new(|| Fixed::build(|w| ends(w, &["tbody", "table", "text"])));
/// `<entry><supply>` and its templateIds, up to the supply's id.
static SUPPLY_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        start(w, "entry", &[])?;
        start(w, "supply", &[("classCode", "SPLY"), ("moodCode", "EVN")])?;
        template_id(w, "2.16.840.1.113883.10.20.1.34", None)?;
        template_id(w, "1.3.6.1.4.1.19376.1.5.3.1.4.7.3", None)?;
        template_id(w, "1.3.6.1.4.1.19376.1.9.1.3.4", None)?;
        template_id(w, "1.2.250.1.213.1.1.3.204", None)
    })
});
/// The product, its material and their templateIds, up to the code's narrative reference.
static PRODUCT_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        start(w, "product", &[])?;
        start(w, "manufacturedProduct", &[("classCode", "MANU")])?;
        template_id(w, "2.16.840.1.113883.10.20.1.53", None)?;
        template_id(w, "1.3.6.1.4.1.19376.1.5.3.1.4.7.2", None)?;
        template_id(w, "1.2.250.1.213.1.1.3.43", None)?;
        start(
            w,
            "manufacturedMaterial",
            &[("classCode", "MMAT"), ("determinerCode", "KIND")],
        )?;
        template_id(w, "1.3.6.1.4.1.19376.1.9.1.3.1", None)?;
        start(w, "code", &[])?;
        start(w, "originalText", &[])
    })
});
static SUPPLY_END: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        ends(
            w,
            &[
                "manufacturedMaterial",
                "manufacturedProduct",
                "product",
                "supply",
                "entry",
            ],
        )
    })
});

fn supply(w: &mut Xml, doc_id: &str, i: usize, item: &DispensedItem) -> io::Result<()> {
    w.fixed(&SUPPLY_HEAD);
    let n = i.to_string();
    empty(
        w,
        "id",
        &[("root", &super::uuid_for(&[doc_id, "supply", &n]))],
    )?;
    node(w, "text", &[], |w| {
        empty(w, "reference", &[("value", &format!("#med-{i}"))])
    })?;
    empty(w, "statusCode", &[("code", "completed")])?;
    empty(w, "effectiveTime", &[("value", &item.dispensed_at)])?;
    quantity(w, item)?;
    // CI-SIS wants the CIS as the primary code; RXD carries the CIP or UCD, which goes in a
    // translation (as in the ANS example).
    w.fixed(&PRODUCT_HEAD);
    empty(w, "reference", &[("value", &format!("#med-{i}-name"))])?;
    end(w, "originalText")?;
    let mut attrs = super::Attrs::new();
    attrs.push("code", &item.code);
    if !item.label.is_empty() {
        attrs.push("displayName", &item.label);
    }
    if !item.code_system.is_empty() {
        attrs.push("codeSystem", &item.code_system);
    }
    if let Some(name) = code_system_name(&item.code_system) {
        attrs.push("codeSystemName", name);
    }
    empty(w, "translation", attrs.as_slice())?;
    end(w, "code")?;
    if item.label.is_empty() {
        empty(w, "name", &[("nullFlavor", "UNK")])?;
    } else {
        text(w, "name", &[], &item.label)?;
    }
    w.fixed(&SUPPLY_END);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cda::test_support::{check_references, header, parse_all, professional};

    fn item(code: &str, system: &str, label: &str) -> DispensedItem {
        DispensedItem {
            code: code.into(),
            code_system: system.into(),
            label: label.into(),
            quantity: "2".into(),
            unit: Some("boîte de 16".into()),
            dispensed_at: "20240105101500+0100".into(),
            prescription_id: None,
        }
    }

    #[test]
    fn well_formed_with_templates_and_codes() {
        let d = Dispensation {
            header: header("SA33"),
            prescription_id: Some("ORD<1>&2".into()),
            prescriber: Some(professional("810002422979", "PRESCRIT", "Éric")),
            pharmacist: professional("807505123456", "DELIVE", "Pierre"),
            items: vec![
                item("3400933516390", CIP, "PARACÉTAMOL 500 mg & co <cp>"),
                item("3400892088310", UCD, "ŒSTRADIOL gel"),
            ],
        };
        let xml = write(&d);
        let names = parse_all(&xml);
        check_references(&xml);
        assert_eq!(names.iter().filter(|n| *n == "supply").count(), 2);
        for t in [
            "1.3.6.1.4.1.19376.1.9.1.1.3",
            "1.2.250.1.213.1.1.1.54",
            "1.2.250.1.213.1.1.2.236",
            "1.3.6.1.4.1.19376.1.9.1.3.4",
        ] {
            assert!(
                xml.contains(&format!("root=\"{t}\"")),
                "templateId {t} missing"
            );
        }
        assert!(xml.contains("codeSystem=\"1.2.250.1.213.2.3.2\" codeSystemName=\"CIP\""));
        assert!(xml.contains("codeSystem=\"1.2.250.1.213.2.61\" codeSystemName=\"UCD\""));
        assert!(xml.contains("PARACÉTAMOL 500 mg &amp; co &lt;cp&gt;"));
        assert!(xml.contains("unit=\"{boîte_de_16}\""));
        assert_eq!(ucum_or_annotation("mL"), "mL");
        assert_eq!(ucum_or_annotation("boîte"), "{boîte}");
        assert_eq!(ucum_or_annotation("{tablet}"), "{tablet}");
        // The pharmacist is the author, not the header's author.
        assert!(xml.contains("extension=\"807505123456\""));
    }
}
