//! CR-BIO 2024.01 writer (CI-SIS "Compte rendu d'examens de biologie médicale", on IHE
//! XD-LAB): one chapter section per LOINC chapter, one sub-section per battery (OBR) with
//! its narrative table, and the structured entry act → battery organizer → observations
//! (OBX). Modelled on the ANS example `BIO-CR-BIO_2024.01_TSH_1.xml`.

use std::borrow::Cow;
use std::io;

use super::header::{self, Order, Participant, ServiceEvent, Spec};
use super::pdf::Lines;
use super::{
    Attrs, Fixed, NS_HL7, NS_XSI, Xml, empty, end, ends, human_time, human_time_into, is_decimal,
    lines, node, oid, start, template_id, text,
};
use crate::model::{Coded, LabBattery, LabObservation, LabReport, ResultValue};

const NS_LAB: &str = "urn:oid:1.3.6.1.4.1.19376.1.3.2";
pub const TITLE: &str = "Compte rendu d'examens biologiques";
pub const CODE: (&str, &str) = ("11502-2", "CR d'examens biologiques");
/// IHE XD-LAB and CI-SIS CR-BIO document templateIds.
pub const TEMPLATE_IDS: [(&str, Option<&str>); 2] = [
    ("1.3.6.1.4.1.19376.1.3.3", None),
    ("1.2.250.1.213.1.1.1.55", None),
];

/// Writes the CR-BIO document of a lab report.
///
/// Chapters follow the order in which batteries first name them. A report without any
/// battery still gets its (empty) header and PDF copy, but CR-BIO requires at least one
/// chapter: the mapping should not produce one.
pub fn write(r: &LabReport) -> String {
    let mut w = super::new_writer();
    write_doc(&mut w, r).expect("writing to a Vec cannot fail");
    super::finish(w)
}

/// Batteries grouped by chapter code, in first-seen order.
fn chapters(r: &LabReport) -> Vec<(&Coded, Vec<(usize, &LabBattery)>)> {
    let mut out: Vec<(&Coded, Vec<(usize, &LabBattery)>)> = Vec::new();
    for (i, b) in r.batteries.iter().enumerate() {
        match out.iter_mut().find(|(c, _)| c.code == b.chapter.code) {
            Some((_, v)) => v.push((i, b)),
            None => out.push((&b.chapter, vec![(i, b)])),
        }
    }
    out
}

/// HL7 v2 battery status (OBR-25) → statusCode of the battery organizer and entry act.
/// P(reliminary) and the in-progress codes stay "active"; X (cannot be obtained) is
/// "aborted"; F and C (corrected) are final, "completed".
fn status_code(hl7: &str) -> &'static str {
    match hl7 {
        "P" | "I" | "R" | "S" | "A" => "active",
        "X" => "aborted",
        _ => "completed",
    }
}

/// statusCode of one result (OBX-11). CR-BIO only allows "completed" or "aborted" here: a
/// preliminary result is a completed observation inside an "active" battery (the battery
/// and the header's lab:statusCode carry the report's state), and the narrative says
/// "provisoire".
fn result_status_code(hl7: &str) -> &'static str {
    if hl7 == "X" { "aborted" } else { "completed" }
}

/// A battery is still "active" when it or one of its results is preliminary.
fn battery_status(b: &LabBattery) -> &'static str {
    if b.observations
        .iter()
        .any(|o| status_code(&o.status) == "active")
    {
        "active"
    } else {
        status_code(&b.status)
    }
}

fn status_label(hl7: &str) -> &'static str {
    match hl7 {
        "C" => "corrigé",
        "P" | "I" | "R" | "S" | "A" => "provisoire",
        "X" => "non réalisable",
        _ => "validé",
    }
}

/// Display names of HL7 ObservationInterpretation codes (JDV_HL7_ObservationInterpretation
/// -CISIS). Codes outside the value set are not written as codes (the narrative keeps them).
fn interpretation_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "<" => "Inférieur à la limite de détection",
        ">" => "Supérieur à la limite maximale de mesure",
        "A" => "Anormal",
        "AA" => "Très anormal, alerte",
        "B" => "Amélioration",
        "D" => "Diminution significative par rapport au résultat antérieur",
        "DET" => "Détecté",
        "E" => "Équivoque",
        "H" => "Anormalement haut",
        "HH" => "Très anormalement haut, alerte",
        "HU" => "Significativement haut",
        "I" => "Intermédiaire",
        "IND" => "Indéterminé",
        "L" => "Anormalement bas",
        "LL" => "Très anormalement bas, alerte",
        "LU" => "Significativement bas",
        "N" => "Normal",
        "ND" => "Non détecté",
        "NEG" => "Négatif",
        "NR" => "Non réactif",
        "NS" => "Non sensible",
        "POS" => "Positif",
        "R" => "Résistant",
        "RR" => "Réactif",
        "S" => "Sensible",
        "SDD" => "Sensible à forte dose",
        "U" => "Augmentation significative par rapport au résultat antérieur",
        "W" => "Dégradation",
        "WR" => "Faiblement réactif",
        _ => return None,
    })
}

/// The unit of a numeric value: UCUM "1" when the sender gave none (unitless results,
/// ratios, indices), because PQ requires a unit.
fn ucum(unit: &str) -> &str {
    if unit.trim().is_empty() {
        "1"
    } else {
        unit.trim()
    }
}

/// Decimal text as the XSD wants it: a French decimal comma becomes a point.
fn decimal(v: &str) -> Option<Cow<'_, str>> {
    let v = v.trim();
    let v = if v.contains(',') {
        Cow::Owned(v.replace(',', "."))
    } else {
        Cow::Borrowed(v)
    };
    is_decimal(&v).then_some(v)
}

/// Result and unit as shown in the narrative and the PDF.
fn value_text(v: &ResultValue) -> (Cow<'_, str>, &str) {
    match v {
        ResultValue::Quantity { value, unit } => (Cow::Borrowed(value), unit),
        ResultValue::Structured {
            comparator,
            value,
            unit,
        } => (Cow::Owned(format!("{comparator}{value}")), unit),
        ResultValue::Coded(c) => (Cow::Borrowed(label(c)), ""),
        ResultValue::Text(t) => (Cow::Borrowed(t), ""),
    }
}

/// The reference range as text, in up to three pieces: borrowed, so the narrative and the
/// PDF write it without a `String` per result.
fn range_pieces(o: &LabObservation) -> [&str; 3] {
    match (&o.range.low, &o.range.high, &o.range.text) {
        (Some(l), Some(h), _) => [l, " - ", h],
        (Some(l), None, _) => ["> ", l, ""],
        (None, Some(h), _) => ["< ", h, ""],
        (None, None, Some(t)) => [t, "", ""],
        _ => ["", "", ""],
    }
}

/// The reference range as text, appended to `out`.
fn range_into(out: &mut String, o: &LabObservation) {
    for piece in range_pieces(o) {
        out.push_str(piece);
    }
}

fn range_text(o: &LabObservation) -> String {
    range_pieces(o).concat()
}

fn label(c: &Coded) -> &str {
    if c.display.is_empty() {
        &c.code
    } else {
        &c.display
    }
}

/// Narrative IDs, unique in the document: battery index, observation index, comment index.
/// Built by hand: a document has several per result, and `format!` was a visible share of
/// the writer's time.
fn obs_id(b: usize, o: usize) -> NarrativeId {
    NarrativeId::new("res", &[b, o])
}
fn obs_comment_id(b: usize, o: usize, k: usize) -> NarrativeId {
    NarrativeId::new("com", &[b, o, k])
}
fn battery_comment_id(b: usize, k: usize) -> NarrativeId {
    NarrativeId::new("com", &[b, k])
}

/// `prefix-n1-n2...` (at most three numbers), kept on the stack with the `#` of the
/// reference before it: an ID and its reference were two allocations per result.
struct NarrativeId {
    /// `#prefix-n1-n2...`: ASCII only.
    buf: [u8; NarrativeId::CAPACITY],
    len: usize,
}

impl NarrativeId {
    /// `#`, a three-letter prefix, and three numbers of up to 20 digits with their `-`.
    const CAPACITY: usize = 1 + 3 + 3 * 21;

    /// Panics past three parts: the writers' IDs are fixed in code, never from input.
    fn new(prefix: &str, parts: &[usize]) -> NarrativeId {
        assert!(
            prefix.len() <= 3 && parts.len() <= 3,
            "narrative id too long"
        );
        let mut id = NarrativeId {
            buf: [0; NarrativeId::CAPACITY],
            len: 0,
        };
        id.push(b"#");
        id.push(prefix.as_bytes());
        for &n in parts {
            id.push(b"-");
            id.push(super::decimal_digits(n, &mut [0; 20]));
        }
        id
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// `#prefix-n1-n2`, the reference to the ID.
    fn reference(&self) -> &str {
        // Only ASCII is pushed.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("#")
    }

    /// `prefix-n1-n2`, the ID itself.
    fn id(&self) -> &str {
        &self.reference()[1..]
    }
}

fn write_doc(w: &mut Xml, r: &LabReport) -> io::Result<()> {
    let h = &r.header;
    let chapters = chapters(r);
    let any_active = r.batteries.iter().any(|b| battery_status(b) == "active");
    // Service period: from the first sampling to the report, unless the mapping gave one.
    let first_specimen = r
        .batteries
        .iter()
        .filter_map(|b| b.specimen_time.as_deref())
        .min();
    let low = h.service_start.as_deref().or(first_specimen);
    let high = h
        .service_stop
        .as_deref()
        .or(Some(h.effective_time.as_str()));

    let mut service_events = Vec::new();
    for (i, (chapter, _)) in chapters.iter().enumerate() {
        service_events.push(if i == 0 {
            ServiceEvent {
                id: None,
                code: chapter,
                translations: vec![],
                modality: None,
                lab_status: Some(if any_active { "active" } else { "completed" }),
                low,
                high,
                performer: Some(Some("1.3.6.1.4.1.19376.1.3.3.1.7")),
            }
        } else {
            ServiceEvent {
                id: None,
                code: chapter,
                translations: vec![],
                modality: None,
                lab_status: None,
                low: None,
                high: None,
                performer: None,
            }
        });
    }
    let spec = Spec {
        template_ids: &TEMPLATE_IDS,
        code: CODE,
        title: TITLE,
        participants: r
            .prescriber
            .iter()
            .map(|p| Participant {
                type_code: "REF",
                template_id: Some("1.3.6.1.4.1.19376.1.3.3.1.6"),
                function_code: None,
                who: p,
            })
            .collect(),
        orders: if r.order_id.is_empty() {
            vec![]
        } else {
            vec![Order {
                root: header::local_id_root("placer-order", &h.organisation),
                id: &r.order_id,
                accession_number: None,
            }]
        },
        service_events,
    };

    node(
        w,
        "ClinicalDocument",
        &[
            ("xmlns", NS_HL7),
            ("xmlns:lab", NS_LAB),
            ("xmlns:xsi", NS_XSI),
        ],
        |w| {
            header::write(w, h, &spec)?;
            node(w, "component", &[], |w| {
                node(w, "structuredBody", &[], |w| {
                    for (chapter, batteries) in &chapters {
                        chapter_section(w, chapter, batteries)?;
                    }
                    pdf_section(w, r)
                })
            })
        },
    )
}

// The runs of markup every CR-BIO repeats, written once (`Fixed`): a chapter's and a
// battery's sections, the battery's entry and organizer, a result's observation, a comment,
// a reference range, the narrative table's head, each with its templateIds and its end.

/// A chapter: `<component><section>` and its templateIds.
static CHAPTER_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        start(w, "component", &[])?;
        start(w, "section", &[])?;
        template_id(w, "1.3.6.1.4.1.19376.1.3.3.2.1", None)?;
        template_id(w, "1.2.250.1.213.1.1.2.70", None)
    })
});
/// `</section></component>`: the end of a chapter or of a battery's section.
static SECTION_END: Fixed = Fixed::new(|| Fixed::build(|w| ends(w, &["section", "component"])));
/// A battery's sub-section: `<component><section>` and its templateIds.
static BATTERY_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        start(w, "component", &[])?;
        start(w, "section", &[])?;
        template_id(w, "1.3.6.1.4.1.19376.1.3.3.2.2", None)?;
        template_id(w, "1.2.250.1.213.1.1.2.71", None)
    })
});
/// The battery's narrative table, up to its body's first row.
static TABLE_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        super::narrative_table_head(
            w,
            &[
                "Examen",
                "Résultat",
                "Unité",
                "Valeurs de référence",
                "Interprétation",
                "Statut",
            ],
        )
    })
});
static TABLE_END: Fixed = Fixed::new(|| Fixed::build(|w| ends(w, &["tbody", "table"])));
/// The battery's entry: `<entry><act>` and the entry's templateIds.
static ENTRY_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        start(w, "entry", &[("typeCode", "DRIV")])?;
        template_id(w, "1.3.6.1.4.1.19376.1.3.1", None)?;
        template_id(w, "1.2.250.1.213.1.1.3.21", None)?;
        start(w, "act", &[("classCode", "ACT"), ("moodCode", "EVN")])
    })
});
/// `</act></entry>` and the end of the battery's section.
static ENTRY_END: Fixed =
    Fixed::new(|| Fixed::build(|w| ends(w, &["act", "entry", "section", "component"])));
/// The battery organizer inside the entry's act, with its templateIds.
static ORGANIZER_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        start(w, "entryRelationship", &[("typeCode", "COMP")])?;
        start(
            w,
            "organizer",
            &[("classCode", "BATTERY"), ("moodCode", "EVN")],
        )?;
        template_id(w, "1.3.6.1.4.1.19376.1.3.1.4", None)?;
        template_id(w, "1.2.250.1.213.1.1.3.78", None)
    })
});
static ORGANIZER_END: Fixed =
    Fixed::new(|| Fixed::build(|w| ends(w, &["organizer", "entryRelationship"])));
/// A result: `<component><observation>` and its templateIds.
static OBSERVATION_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        start(w, "component", &[])?;
        start(
            w,
            "observation",
            &[("classCode", "OBS"), ("moodCode", "EVN")],
        )?;
        template_id(w, "1.3.6.1.4.1.19376.1.3.1.6", None)?;
        template_id(w, "1.2.250.1.213.1.1.3.80", None)
    })
});
static OBSERVATION_END: Fixed =
    Fixed::new(|| Fixed::build(|w| ends(w, &["observation", "component"])));
/// An IHE Comment entry up to its narrative reference.
static COMMENT_HEAD: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        start(
            w,
            "entryRelationship",
            &[("typeCode", "SUBJ"), ("inversionInd", "true")],
        )?;
        start(w, "act", &[("classCode", "ACT"), ("moodCode", "EVN")])?;
        template_id(w, "2.16.840.1.113883.10.20.1.40", None)?;
        template_id(w, "1.3.6.1.4.1.19376.1.5.3.1.4.2", None)?;
        template_id(w, "1.2.250.1.213.1.1.3.32", None)?;
        empty(
            w,
            "code",
            &[
                ("code", "48767-8"),
                ("displayName", "Commentaire"),
                ("codeSystem", oid::LOINC),
                ("codeSystemName", "LOINC"),
            ],
        )?;
        start(w, "text", &[])
    })
});
static COMMENT_END: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        end(w, "text")?;
        empty(w, "statusCode", &[("code", "completed")])?;
        end(w, "act")?;
        end(w, "entryRelationship")
    })
});
/// A reference range up to its value: the numeric one opens an IVL_PQ.
static RANGE_HEAD: Fixed = Fixed::new(|| Fixed::build(range_head));
static RANGE_HEAD_NUMERIC: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        range_head(w)?;
        start(w, "value", &[("xsi:type", "IVL_PQ")])
    })
});
static RANGE_END: Fixed = Fixed::new(|| Fixed::build(range_end));
static RANGE_END_NUMERIC: Fixed = Fixed::new(|| {
    Fixed::build(|w| {
        end(w, "value")?;
        range_end(w)
    })
});
/// A result's statusCode: CR-BIO allows these two.
static STATUS_COMPLETED: Fixed =
    Fixed::new(|| Fixed::build(|w| empty(w, "statusCode", &[("code", "completed")])));
static STATUS_ABORTED: Fixed =
    Fixed::new(|| Fixed::build(|w| empty(w, "statusCode", &[("code", "aborted")])));

fn range_head(w: &mut Xml) -> io::Result<()> {
    start(w, "referenceRange", &[("typeCode", "REFV")])?;
    start(
        w,
        "observationRange",
        &[("classCode", "OBS"), ("moodCode", "EVN.CRT")],
    )
}

fn range_end(w: &mut Xml) -> io::Result<()> {
    empty(
        w,
        "interpretationCode",
        &[
            ("code", "N"),
            ("displayName", "Normal"),
            ("codeSystem", oid::OBSERVATION_INTERPRETATION),
        ],
    )?;
    end(w, "observationRange")?;
    end(w, "referenceRange")
}

fn chapter_section(
    w: &mut Xml,
    chapter: &Coded,
    batteries: &[(usize, &LabBattery)],
) -> io::Result<()> {
    w.fixed(&CHAPTER_HEAD);
    super::coded(w, "code", chapter)?;
    text(w, "title", &[], label(chapter))?;
    for (bi, b) in batteries {
        battery_section(w, chapter, *bi, b)?;
    }
    w.fixed(&SECTION_END);
    Ok(())
}

/// The sub-section and entry act are coded with the battery when it is LOINC, and with the
/// chapter otherwise (CR-BIO wants LOINC act codes).
fn battery_section(w: &mut Xml, chapter: &Coded, bi: usize, b: &LabBattery) -> io::Result<()> {
    let act_code = if b.code.system == oid::LOINC {
        &b.code
    } else {
        chapter
    };
    w.fixed(&BATTERY_HEAD);
    super::coded(w, "code", act_code)?;
    text(w, "title", &[], label(&b.code))?;
    battery_narrative(w, bi, b)?;
    w.fixed(&ENTRY_HEAD);
    super::coded(w, "code", act_code)?;
    empty(w, "statusCode", &[("code", battery_status(b))])?;
    battery_organizer(w, bi, b)?;
    for k in 0..b.comments.len() {
        comment(w, &battery_comment_id(bi, k))?;
    }
    w.fixed(&ENTRY_END);
    Ok(())
}

fn battery_narrative(w: &mut Xml, bi: usize, b: &LabBattery) -> io::Result<()> {
    w.fixed(&TABLE_HEAD);
    // A table body needs a row: an OBR sent before its results (or without any) says so
    // instead.
    if b.observations.is_empty() {
        let note = if battery_status(b) == "active" {
            "Résultats en attente"
        } else {
            "Aucun résultat transmis"
        };
        node(w, "tr", &[], |w| text(w, "td", &[("colspan", "6")], note))?;
    }
    for (oi, o) in b.observations.iter().enumerate() {
        let (value, unit) = value_text(&o.value);
        node(w, "tr", &[], |w| {
            node(w, "td", &[], |w| {
                text(w, "content", &[("ID", obs_id(bi, oi).id())], label(&o.code))
            })?;
            node(w, "td", &[], |w| lines(w, &value))?;
            text(w, "td", &[], unit)?;
            start(w, "td", &[])?;
            for piece in range_pieces(o) {
                w.text(piece);
            }
            end(w, "td")?;
            text(w, "td", &[], o.interpretation.as_deref().unwrap_or(""))?;
            text(w, "td", &[], status_label(&o.status))
        })?;
        for (k, c) in o.comments.iter().enumerate() {
            node(w, "tr", &[], |w| {
                node(w, "td", &[("colspan", "6")], |w| {
                    node(
                        w,
                        "content",
                        &[("ID", obs_comment_id(bi, oi, k).id())],
                        |w| lines(w, c),
                    )
                })
            })?;
        }
    }
    w.fixed(&TABLE_END);
    if let Some(t) = &b.specimen_time {
        text(
            w,
            "paragraph",
            &[],
            &format!("Prélèvement : {}", human_time(t)),
        )?;
    }
    for (k, c) in b.comments.iter().enumerate() {
        node(
            w,
            "paragraph",
            &[("ID", battery_comment_id(bi, k).id())],
            |w| lines(w, c),
        )?;
    }
    end(w, "text")
}

/// An IHE "Comment" entry pointing at its narrative (NTE lines).
fn comment(w: &mut Xml, id: &NarrativeId) -> io::Result<()> {
    w.fixed(&COMMENT_HEAD);
    empty(w, "reference", &[("value", id.reference())])?;
    w.fixed(&COMMENT_END);
    Ok(())
}

/// `code` of an observation or battery: LOINC codes as attributes; a local code as a
/// translation of an uncoded `code`, as CR-BIO asks for non-LOINC results.
fn result_code(w: &mut Xml, c: &Coded, narrative_id: Option<&NarrativeId>) -> io::Result<()> {
    let reference = |w: &mut Xml| -> io::Result<()> {
        if let Some(id) = narrative_id {
            node(w, "originalText", &[], |w| {
                empty(w, "reference", &[("value", id.reference())])
            })?;
        }
        Ok(())
    };
    if c.system == oid::LOINC {
        let attrs = [
            ("code", c.code.as_str()),
            ("displayName", label(c)),
            ("codeSystem", oid::LOINC),
            ("codeSystemName", "LOINC"),
        ];
        match narrative_id {
            Some(_) => node(w, "code", &attrs, reference),
            None => empty(w, "code", &attrs),
        }
    } else {
        node(w, "code", &[], |w| {
            reference(w)?;
            let mut attrs = Attrs::new();
            attrs.push("code", &c.code);
            attrs.push("displayName", label(c));
            if !c.system.is_empty() {
                attrs.push("codeSystem", &c.system);
            }
            empty(w, "translation", attrs.as_slice())
        })
    }
}

fn battery_organizer(w: &mut Xml, bi: usize, b: &LabBattery) -> io::Result<()> {
    w.fixed(&ORGANIZER_HEAD);
    result_code(w, &b.code, None)?;
    empty(w, "statusCode", &[("code", battery_status(b))])?;
    if let Some(t) = &b.specimen_time {
        empty(w, "effectiveTime", &[("value", t)])?;
    }
    for (oi, o) in b.observations.iter().enumerate() {
        observation(w, bi, oi, b, o)?;
    }
    w.fixed(&ORGANIZER_END);
    Ok(())
}

fn observation(
    w: &mut Xml,
    bi: usize,
    oi: usize,
    b: &LabBattery,
    o: &LabObservation,
) -> io::Result<()> {
    w.fixed(&OBSERVATION_HEAD);
    result_code(w, &o.code, Some(&obs_id(bi, oi)))?;
    w.fixed(match result_status_code(&o.status) {
        "aborted" => &STATUS_ABORTED,
        _ => &STATUS_COMPLETED,
    });
    match o.time.as_deref().or(b.specimen_time.as_deref()) {
        Some(t) => empty(w, "effectiveTime", &[("value", t)])?,
        None => empty(w, "effectiveTime", &[("nullFlavor", "UNK")])?,
    }
    let unit = value(w, &o.value)?;
    if let Some(code) = o.interpretation.as_deref()
        && let Some(display) = interpretation_display(code)
    {
        empty(
            w,
            "interpretationCode",
            &[
                ("code", code),
                ("displayName", display),
                ("codeSystem", oid::OBSERVATION_INTERPRETATION),
            ],
        )?;
    }
    for k in 0..o.comments.len() {
        comment(w, &obs_comment_id(bi, oi, k))?;
    }
    reference_range(w, o, unit)?;
    w.fixed(&OBSERVATION_END);
    Ok(())
}

/// Writes `value` by result type; returns the UCUM unit when the value is a quantity, for
/// the reference range.
fn value<'a>(w: &mut Xml, v: &'a ResultValue) -> io::Result<Option<&'a str>> {
    match v {
        ResultValue::Quantity { value, unit } => match decimal(value) {
            Some(d) => {
                let u = ucum(unit);
                empty(
                    w,
                    "value",
                    &[("xsi:type", "PQ"), ("value", &d), ("unit", u)],
                )?;
                Ok(Some(u))
            }
            // Not a number after all (e.g. "1/40"): keep it as text rather than drop it.
            None => {
                string_value(w, &format!("{value} {unit}"))?;
                Ok(None)
            }
        },
        ResultValue::Structured {
            comparator,
            value,
            unit,
        } => {
            let u = ucum(unit);
            let bound = match comparator.as_str() {
                "" | "=" => None,
                "<" => Some(("high", "false")),
                "<=" => Some(("high", "true")),
                ">" => Some(("low", "false")),
                ">=" => Some(("low", "true")),
                _ => {
                    string_value(w, &format!("{comparator}{value} {unit}"))?;
                    return Ok(None);
                }
            };
            let Some(d) = decimal(value) else {
                string_value(w, &format!("{comparator}{value} {unit}"))?;
                return Ok(None);
            };
            match bound {
                None => empty(
                    w,
                    "value",
                    &[("xsi:type", "PQ"), ("value", &d), ("unit", u)],
                )?,
                // "<0.5": an interval with only the bound the sender gave.
                Some((side, inclusive)) => node(w, "value", &[("xsi:type", "IVL_PQ")], |w| {
                    empty(
                        w,
                        side,
                        &[("value", &d), ("unit", u), ("inclusive", inclusive)],
                    )
                })?,
            }
            Ok(Some(u))
        }
        ResultValue::Coded(c) => {
            if c.system.is_empty() || c.code.is_empty() {
                string_value(w, label(c))?;
            } else {
                let mut attrs = Attrs::new();
                attrs.push("xsi:type", "CD");
                attrs.push("code", &c.code);
                if !c.display.is_empty() {
                    attrs.push("displayName", &c.display);
                }
                attrs.push("codeSystem", &c.system);
                empty(w, "value", attrs.as_slice())?;
            }
            Ok(None)
        }
        ResultValue::Text(t) => {
            string_value(w, t)?;
            Ok(None)
        }
    }
}

fn string_value(w: &mut Xml, s: &str) -> io::Result<()> {
    text(w, "value", &[("xsi:type", "ST")], s.trim())
}

/// `referenceRange`: an IVL_PQ when the bounds are numbers and the result a quantity,
/// otherwise the range as text.
fn reference_range(w: &mut Xml, o: &LabObservation, unit: Option<&str>) -> io::Result<()> {
    let low = o.range.low.as_deref().and_then(decimal);
    let high = o.range.high.as_deref().and_then(decimal);
    let numeric = unit.is_some()
        && (low.is_some() || high.is_some())
        && o.range.low.is_some() == low.is_some()
        && o.range.high.is_some() == high.is_some();
    // The range as text is only written when it is not numeric.
    let shown = if numeric {
        String::new()
    } else {
        range_text(o)
    };
    if !numeric && shown.is_empty() {
        return Ok(());
    }
    if numeric {
        let u = unit.unwrap_or("1");
        w.fixed(&RANGE_HEAD_NUMERIC);
        if let Some(l) = &low {
            empty(w, "low", &[("value", l), ("unit", u)])?;
        }
        if let Some(h) = &high {
            empty(w, "high", &[("value", h), ("unit", u)])?;
        }
        w.fixed(&RANGE_END_NUMERIC);
    } else {
        w.fixed(&RANGE_HEAD);
        text(w, "text", &[], &shown)?;
        w.fixed(&RANGE_END);
    }
    Ok(())
}

/// The PDF copy of the report (section FR-Document-PDF-copie, mandatory in CR-BIO 2024.01).
fn pdf_section(w: &mut Xml, r: &LabReport) -> io::Result<()> {
    let pdf = super::pdf::render(TITLE, &pdf_lines(r));
    super::pdf_copy_section(w, &r.header.unique_id, &pdf)
}

fn pdf_lines(r: &LabReport) -> Lines {
    let h = &r.header;
    let p = &h.patient;
    let mut out = Lines::with_capacity(4096, 16 + 3 * r.batteries.len() + 32);
    out.push_str("Patient : ");
    out.push_str(&p.birth_name);
    out.push_str(" ");
    for (i, name) in p.first_names.iter().enumerate() {
        if i > 0 {
            out.push_str(" ");
        }
        out.push_str(name);
    }
    out.line(&[" - né(e) le ", &p.birth_date, " - INS ", &p.ins]);
    out.line(&["Laboratoire : ", &h.organisation.name]);
    out.line(&[
        "Biologiste : ",
        &h.legal_authenticator.given,
        " ",
        &h.legal_authenticator.family,
    ]);
    out.push_str("Date du compte rendu : ");
    human_time_into(out.current(), &h.effective_time);
    out.end_line();
    if let Some(pr) = &r.prescriber {
        out.line(&["Prescripteur : ", &pr.given, " ", &pr.family]);
    }
    if !r.order_id.is_empty() {
        out.line(&["Demande : ", &r.order_id]);
    }
    for (chapter, batteries) in chapters(r) {
        out.end_line();
        out.line(&[&label(chapter).to_uppercase()]);
        for (_, b) in batteries {
            out.end_line();
            out.push_str(label(&b.code));
            if let Some(t) = b.specimen_time.as_deref() {
                out.push_str(" (prélèvement ");
                human_time_into(out.current(), t);
                out.push_str(")");
            }
            out.end_line();
            for o in &b.observations {
                let (v, unit) = value_text(&o.value);
                out.push_str("  ");
                out.push_str(label(&o.code));
                out.push_str(" : ");
                // Multi-line text values on one line.
                for (i, part) in v.split('\n').enumerate() {
                    if i > 0 {
                        out.push_str(" / ");
                    }
                    out.push_str(part);
                }
                out.push_str(" ");
                out.push_str(unit);
                let before = out.current_len();
                out.push_str("  [");
                range_into(out.current(), o);
                if out.current_len() == before + 3 {
                    out.truncate_current(before);
                } else {
                    out.push_str("]");
                }
                if let Some(i) = &o.interpretation {
                    out.push_str("  ");
                    out.push_str(i);
                }
                if o.status != "F" && !o.status.is_empty() {
                    out.push_str("  (");
                    out.push_str(status_label(&o.status));
                    out.push_str(")");
                }
                out.end_line();
                for c in &o.comments {
                    out.line(&["    ", c]);
                }
            }
            for c in &b.comments {
                out.line(&["  ", c]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cda::test_support::{check_references, header, parse_all, professional};
    use crate::model::{LabObservation, ReferenceRange};

    fn loinc(code: &str, display: &str) -> Coded {
        Coded {
            code: code.into(),
            display: display.into(),
            system: oid::LOINC.into(),
        }
    }

    fn report() -> LabReport {
        LabReport {
            header: header("SA25"),
            order_id: "CMD<&>1".into(),
            prescriber: Some(professional("810002422979", "CHARLES", "Pascal")),
            batteries: vec![LabBattery {
                code: loinc("24348-5", "Bilan thyroïdien"),
                chapter: loinc("18719-5", "Biochimie"),
                specimen_time: Some("20240104073500+0100".into()),
                status: "F".into(),
                observations: vec![LabObservation {
                    code: loinc("3016-3", "TSH"),
                    value: ResultValue::Quantity {
                        value: "1,950".into(),
                        unit: "m[IU]/L".into(),
                    },
                    range: ReferenceRange {
                        low: Some("0.27".into()),
                        high: Some("4.2".into()),
                        text: None,
                    },
                    interpretation: Some("N".into()),
                    status: "C".into(),
                    time: None,
                    comments: vec!["Contrôle <5> & Œdème".into()],
                }],
                comments: vec![],
            }],
        }
    }

    #[test]
    fn well_formed_with_templates_and_escaping() {
        let xml = write(&report());
        let elements = parse_all(&xml);
        check_references(&xml);
        for t in [
            "2.16.840.1.113883.2.8.2.1",
            "1.2.250.1.213.1.1.1.1",
            "1.3.6.1.4.1.19376.1.3.3",
            "1.2.250.1.213.1.1.1.55",
            "1.3.6.1.4.1.19376.1.3.3.2.1",
            "1.3.6.1.4.1.19376.1.3.1.6",
            "1.2.250.1.213.1.1.2.243",
        ] {
            assert!(
                xml.contains(&format!("root=\"{t}\"")),
                "templateId {t} missing"
            );
        }
        assert!(elements.iter().any(|e| e == "lab:statusCode"));
        assert!(xml.contains("Contrôle &lt;5&gt; &amp; Œdème"));
        assert!(xml.contains("extension=\"CMD&lt;&amp;&gt;1\""));
        // The decimal comma became a point.
        assert!(xml.contains("value=\"1.950\" unit=\"m[IU]/L\""));
    }

    #[test]
    fn narrative_ids_and_their_references() {
        let id = obs_id(0, 12);
        assert_eq!((id.id(), id.reference()), ("res-0-12", "#res-0-12"));
        let big = obs_comment_id(usize::MAX, usize::MAX, usize::MAX);
        let n = usize::MAX.to_string();
        assert_eq!(big.id(), format!("com-{n}-{n}-{n}"));
        assert_eq!(battery_comment_id(3, 0).reference(), "#com-3-0");
    }

    #[test]
    fn structured_values() {
        let mut r = report();
        r.batteries[0].observations[0].value = ResultValue::Structured {
            comparator: "<".into(),
            value: "0.5".into(),
            unit: "".into(),
        };
        let xml = write(&r);
        parse_all(&xml);
        assert!(xml.contains("<high value=\"0.5\" unit=\"1\" inclusive=\"false\"/>"));
    }
}
