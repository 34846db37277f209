//! CR-IMG 2024.01 writer (CI-SIS "Compte rendu d'imagerie médicale", on DICOM PS3.20
//! Imaging Report): header with the Study Instance UID as serviceEvent id and the accession
//! number in inFulfillmentOf, then the "Acte d'imagerie" section (exam, modality, DICOM
//! object catalogue), the report text as a "Résultats" section and the mandatory
//! "Conclusion" section. Modelled on the ANS example `IMG_CR_IMG_2024.01.xml`.

use std::io;

use super::header::{self, Order, Participant, ServiceEvent, Spec};
use super::{NS_HL7, NS_XSI, Xml, empty, lines, node, oid, template_id, text};
use crate::model::{Coded, ImagingReport};

const NS_PS3_20: &str = "urn:dicom-org:ps3-20";
const DCM: &str = "1.2.840.10008.2.16.4";
const SNOMED_CT: &str = "2.16.840.1.113883.6.96";
pub const TITLE: &str = "CR d'imagerie médicale";
pub const CODE: (&str, &str) = ("18748-4", "CR d'imagerie médicale");
/// DICOM Imaging Report, General Header, Imaging Header and CI-SIS CR-IMG templateIds.
pub const TEMPLATE_IDS: [(&str, Option<&str>); 4] = [
    ("1.2.840.10008.9.1", None),
    ("1.2.840.10008.9.20", None),
    ("1.2.840.10008.9.21", None),
    ("1.2.250.1.213.1.1.1.45", Some("2024.01")),
];

/// Text shown in the mandatory Conclusion section when the report has no paragraph headed
/// "Conclusion": the writer does not guess which paragraph concludes.
pub const NO_CONCLUSION: &str =
    "Conclusion non individualisée dans le compte rendu transmis : voir la section Résultats.";

/// Writes the CR-IMG document of an imaging report.
pub fn write(r: &ImagingReport) -> String {
    let mut w = super::new_writer();
    write_doc(&mut w, r).expect("writing to a Vec cannot fail");
    super::finish(w)
}

/// DICOM modalities of JDV_ModaliteAcquisition_CISIS (1.2.250.1.213.1.1.5.618), with their
/// French display names. A modality outside the value set is written as unknown.
fn modality_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "AR" => "Autoréfraction",
        "BDUS" => "Échodensitométrie osseuse",
        "BI" => "Imagerie biomagnétique",
        "BMD" => "Ostéodensitométrie",
        "CR" => "Radiographie assistée par ordinateur",
        "CT" => "Tomodensitométrie",
        "DG" => "Diaphanographie",
        "DMS" => "Dermoscopie",
        "DX" => "Radiographie numérique",
        "ECG" => "Électrocardiographie",
        "EEG" => "Électroencéphalographie",
        "EMG" => "Électromyographie",
        "EOG" => "Électrooculographie",
        "EPS" => "Électrophysiologie cardiaque",
        "ES" => "Endoscopie",
        "GM" => "Microscopie générale",
        "HD" => "Onde hémodynamique",
        "IO" => "Radiographie intrabuccale",
        "IVOCT" => "Tomographie par cohérence optique intravasculaire",
        "IVUS" => "Ultrasonore intravasculaire",
        "KER" => "Kératométrie",
        "LEN" => "Lensométrie",
        "LS" => "Scan laser",
        "MG" => "Mammographie",
        "MR" => "Résonance magnétique",
        "NM" => "Médecine nucléaire",
        "OAM" => "Mesures axiales ophtalmiques",
        "OCT" => "Tomographie à cohérence optique",
        "OP" => "Photographique ophtalmique",
        "OPM" => "Cartographie ophtalmique",
        "OPT" => "Tomographie ophtalmique",
        "OPTBSV" => "Tomographie ophtalmique B-scan analyse de volume",
        "OPTENF" => "Tomographie ophtalmique en face",
        "OPV" => "Champ visuel ophtalmique",
        "OSS" => "Scanner optique de surface",
        "POS" => "Détecteur de position",
        "PT" => "TEP : Tomographie par émission de positons",
        "PX" => "Panaromique X-Ray",
        "RESP" => "Onde respiratoire",
        "RF" => "Radio-fluoroscopie",
        "RG" => "Imagerie radiographique",
        "RTIMAGE" => "Image RT",
        "SM" => "Microscopie à lames",
        "SRF" => "Réfraction subjective",
        "TG" => "Thermographie",
        "US" => "Échographie",
        "VA" => "Acuité visuelle",
        "XA" => "Angiographie X-Ray",
        "XC" => "Caméra de photographie externe",
        _ => return None,
    })
}

/// Anatomical sites of JDV_LocalisationAnatomique_CISIS (SNOMED CT), found from the words
/// of the exam label. CR-IMG requires a coded `targetSiteCode` in the technique entry and
/// forbids nullFlavor there, but HL7 v2 orders carry no coded site: the site an exam label
/// names ("Scanner du genou", "CT tête ...") is the only source. Rules are tried in order,
/// most specific first; every word prefix of a rule must start some word of the label.
const SITES: &[(&[&str], &str, &str)] = &[
    (
        &["rachis", "cervic"],
        "361684008",
        "colonne vertébrale cervicale entière",
    ),
    (
        &["rachis", "lomb"],
        "361686005",
        "colonne vertébrale lombaire entière",
    ),
    (
        &["rachis", "dors"],
        "243931006",
        "colonne thoracique entière",
    ),
    (
        &["rachis", "thora"],
        "243931006",
        "colonne thoracique entière",
    ),
    (&["rachis"], "44300000", "colonne vertébrale entière"),
    (&["sinus"], "181203001", "sinus paranasal entier"),
    (&["crâne"], "731717004", "crâne entier"),
    (&["crane"], "731717004", "crâne entier"),
    (&["cérébr"], "258335003", "encéphale entier"),
    (&["cerebr"], "258335003", "encéphale entier"),
    (&["encéph"], "258335003", "encéphale entier"),
    (&["enceph"], "258335003", "encéphale entier"),
    (&["tête"], "302548004", "tête entière"),
    (&["tete"], "302548004", "tête entière"),
    (&["coude"], "76248009", "région entière du coude"),
    (&["cou"], "302550007", "cou entier"),
    (&["sein"], "181131000", "sein entier"),
    (&["mammo"], "181131000", "sein entier"),
    (&["cœur"], "302509004", "cœur entier"),
    (&["coeur"], "302509004", "cœur entier"),
    (&["cardi"], "302509004", "cœur entier"),
    (&["poumon"], "181216001", "poumon entier"),
    (&["pulmon"], "181216001", "poumon entier"),
    (&["thora"], "302551006", "thorax entier"),
    (&["foie"], "181268008", "foie entier"),
    (&["hépat"], "181268008", "foie entier"),
    (&["rein"], "181414000", "rein entier"),
    (&["rénal"], "181414000", "rein entier"),
    (&["abdo"], "302553009", "abdomen entier"),
    (&["pelvi"], "229765004", "pelvis entier"),
    (&["bassin"], "229765004", "pelvis entier"),
    (&["épaule"], "361103004", "région entière de l'épaule"),
    (&["epaule"], "361103004", "région entière de l'épaule"),
    (&["poignet"], "361289009", "région entière du poignet"),
    (&["main"], "302539009", "main entière"),
    (&["hanche"], "302543008", "région entière de la hanche"),
    (&["genou"], "361291001", "région entière du genou"),
    (&["cheville"], "361292008", "région entière de la cheville"),
    (&["pied"], "302545001", "pied entier"),
    // English exam labels (LOINC display names) of the same sites.
    (
        &["spine", "cervical"],
        "361684008",
        "colonne vertébrale cervicale entière",
    ),
    (
        &["spine", "lumbar"],
        "361686005",
        "colonne vertébrale lombaire entière",
    ),
    (&["spine"], "44300000", "colonne vertébrale entière"),
    (&["brain"], "258335003", "encéphale entier"),
    (&["head"], "302548004", "tête entière"),
    (&["neck"], "302550007", "cou entier"),
    (&["breast"], "181131000", "sein entier"),
    (&["heart"], "302509004", "cœur entier"),
    (&["chest"], "302551006", "thorax entier"),
    (&["lung"], "181216001", "poumon entier"),
    (&["liver"], "181268008", "foie entier"),
    (&["kidney"], "181414000", "rein entier"),
    (&["pelvis"], "229765004", "pelvis entier"),
    (&["shoulder"], "361103004", "région entière de l'épaule"),
    (&["elbow"], "76248009", "région entière du coude"),
    (&["wrist"], "361289009", "région entière du poignet"),
    (&["hand"], "302539009", "main entière"),
    (&["hip"], "302543008", "région entière de la hanche"),
    (&["knee"], "361291001", "région entière du genou"),
    (&["ankle"], "361292008", "région entière de la cheville"),
    (&["foot"], "302545001", "pied entier"),
];

/// The anatomical site named by the exam label, as (SNOMED CT code, display). The mapping
/// calls it too: a report whose exam names no known site is refused before writing, since
/// CR-IMG forbids an uncoded site and we never emit a document that fails the schematrons.
pub fn body_site(exam_label: &str) -> Option<(&'static str, &'static str)> {
    let lower = exam_label.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    SITES
        .iter()
        .find(|(keys, _, _)| {
            keys.iter().all(|k| {
                words
                    .iter()
                    .any(|w| w.starts_with(k) && (k.len() > 3 || w == k))
            })
        })
        .map(|(_, code, display)| (*code, *display))
}

/// The modality as (code, display) when it is in the value set.
fn modality(r: &ImagingReport) -> Option<(&str, &'static str)> {
    let m = r.modality.as_deref()?.trim();
    modality_display(m).map(|d| (m, d))
}

/// Splits the report paragraphs into findings and conclusion: the conclusion starts at the
/// first paragraph beginning with "Conclusion" (any case); a paragraph that is only that
/// heading ("CONCLUSION :") is dropped, the section title says it.
fn split_conclusion(paragraphs: &[String]) -> (&[String], Vec<String>) {
    let start = paragraphs.iter().position(|p| {
        p.trim_start()
            .get(..10)
            .is_some_and(|head| head.eq_ignore_ascii_case("conclusion"))
    });
    match start {
        None => (paragraphs, vec![]),
        Some(i) => {
            let mut conclusion: Vec<String> = Vec::new();
            for (k, p) in paragraphs[i..].iter().enumerate() {
                if k == 0 {
                    // "Conclusion", "Conclusions :", "CONCLUSION: text" → "text".
                    let after = &p.trim_start()[10..];
                    let after = after.strip_prefix(['s', 'S']).unwrap_or(after);
                    let rest = after.trim_start_matches([' ', ':']).trim();
                    if !rest.is_empty() {
                        conclusion.push(rest.to_string());
                    }
                } else {
                    conclusion.push(p.clone());
                }
            }
            (&paragraphs[..i], conclusion)
        }
    }
}

fn label(c: &Coded) -> &str {
    if c.display.is_empty() {
        &c.code
    } else {
        &c.display
    }
}

/// The service event / procedure code: the exam when it is LOINC; otherwise LOINC 18748-4
/// ("Diagnostic imaging study", the only LOINC code known for sure to fit any exam), with
/// the sender's exam code as a translation. CR-IMG requires a LOINC-coded service event.
fn loinc_exam(r: &ImagingReport) -> (Coded, Vec<Coded>) {
    if r.exam.system == oid::LOINC && !r.exam.code.is_empty() {
        (r.exam.clone(), vec![])
    } else {
        let generic = Coded {
            code: CODE.0.into(),
            display: "Examen d'imagerie médicale".into(),
            system: oid::LOINC.into(),
        };
        let local = if r.exam.code.is_empty() || r.exam.system.is_empty() {
            vec![]
        } else {
            vec![r.exam.clone()]
        };
        (generic, local)
    }
}

fn write_doc(w: &mut Xml, r: &ImagingReport) -> io::Result<()> {
    let h = &r.header;
    let (exam_code, exam_translations) = loinc_exam(r);
    let title = if label(&r.exam).is_empty() {
        TITLE.to_string()
    } else {
        format!("{TITLE} - {}", label(&r.exam))
    };
    let low = h
        .service_start
        .as_deref()
        .or(Some(h.effective_time.as_str()));
    let spec = Spec {
        template_ids: &TEMPLATE_IDS,
        code: CODE,
        title: &title,
        participants: r
            .prescriber
            .iter()
            .map(|p| Participant {
                type_code: "REF",
                template_id: None,
                function_code: None,
                who: p,
            })
            .collect(),
        orders: if r.order_id.is_empty() && r.accession_number.is_none() {
            vec![]
        } else {
            vec![Order {
                root: header::local_id_root("placer-order", &h.organisation),
                id: &r.order_id,
                accession_number: Some(r.accession_number.as_deref().filter(|a| !a.is_empty())),
            }]
        },
        service_events: vec![ServiceEvent {
            id: r
                .study_instance_uid
                .as_deref()
                .filter(|u| !u.is_empty())
                .map(|u| (u, None)),
            code: &exam_code,
            translations: exam_translations,
            modality: Some(modality(r)),
            lab_status: None,
            low,
            high: h.service_stop.as_deref(),
            performer: Some(None),
        }],
    };
    let (findings, conclusion) = split_conclusion(&r.paragraphs);
    node(
        w,
        "ClinicalDocument",
        &[
            ("xmlns", NS_HL7),
            ("xmlns:ps3-20", NS_PS3_20),
            ("xmlns:xsi", NS_XSI),
        ],
        |w| {
            header::write(w, h, &spec)?;
            node(w, "component", &[], |w| {
                node(w, "structuredBody", &[], |w| {
                    node(w, "component", &[], |w| procedure_section(w, r, &exam_code))?;
                    if !findings.is_empty() {
                        node(w, "component", &[], |w| {
                            text_section(
                                w,
                                &h.unique_id,
                                ("2.16.840.1.113883.10.20.6.1.2", "1.2.250.1.213.1.1.2.208"),
                                ("59776-5", "Résultats de l'acte", "Résultats"),
                                findings,
                            )
                        })?;
                    }
                    let conclusion = if conclusion.is_empty() {
                        vec![NO_CONCLUSION.to_string()]
                    } else {
                        conclusion
                    };
                    node(w, "component", &[], |w| {
                        text_section(
                            w,
                            &h.unique_id,
                            ("1.2.840.10008.9.5", "1.2.250.1.213.1.1.2.209"),
                            ("19005-8", "Conclusions", "Conclusion"),
                            &conclusion,
                        )
                    })
                })
            })
        },
    )
}

/// "FR-DICOM-Acte-imagerie": the exam as a procedure entry (code, modality as methodCode,
/// anatomical site unknown to HL7 v2 → nullFlavor), with the DICOM object catalogue.
fn procedure_section(w: &mut Xml, r: &ImagingReport, exam_code: &Coded) -> io::Result<()> {
    let doc_id = r.header.unique_id.as_str();
    let modality = modality(r);
    let site = body_site(label(&r.exam));
    node(w, "section", &[], |w| {
        template_id(w, "1.2.840.10008.9.3", None)?;
        template_id(w, "1.2.250.1.213.1.1.2.206", None)?;
        empty(
            w,
            "id",
            &[("root", &super::uuid_for(&[doc_id, "procedure-section"]))],
        )?;
        empty(
            w,
            "code",
            &[
                ("code", "55111-9"),
                ("displayName", "Description de l'acte d'imagerie"),
                ("codeSystem", oid::LOINC),
                ("codeSystemName", "LOINC"),
            ],
        )?;
        text(w, "title", &[], "Technique d'imagerie")?;
        node(w, "text", &[], |w| {
            node(w, "table", &[("border", "1")], |w| {
                node(w, "thead", &[], |w| {
                    node(w, "tr", &[], |w| {
                        text(w, "th", &[], "Acte d'imagerie")?;
                        text(w, "th", &[], "Modalité d'imagerie")?;
                        text(w, "th", &[], "Localisation anatomique")
                    })
                })?;
                node(w, "tbody", &[], |w| {
                    node(w, "tr", &[], |w| {
                        node(w, "td", &[], |w| {
                            text(w, "content", &[("ID", "acte-1")], label(&r.exam))
                        })?;
                        let shown = match (modality, r.modality.as_deref()) {
                            (Some((c, d)), _) => format!("{d} ({c})"),
                            (None, Some(raw)) if !raw.trim().is_empty() => raw.trim().to_string(),
                            _ => "Non précisée".to_string(),
                        };
                        node(w, "td", &[], |w| {
                            text(w, "content", &[("ID", "acte-1-modalite")], &shown)
                        })?;
                        let site_shown = match site {
                            Some((_, d)) => format!("{d} (d'après le libellé de l'examen)"),
                            None => "Non précisée".to_string(),
                        };
                        node(w, "td", &[], |w| {
                            text(w, "content", &[("ID", "acte-1-localisation")], &site_shown)
                        })
                    })
                })
            })
        })?;
        node(w, "entry", &[], |w| {
            node(
                w,
                "procedure",
                &[("classCode", "PROC"), ("moodCode", "EVN")],
                |w| {
                    template_id(w, "1.2.840.10008.9.14", None)?;
                    template_id(w, "1.2.250.1.213.1.1.3.153", None)?;
                    empty(
                        w,
                        "id",
                        &[("root", &super::uuid_for(&[doc_id, "procedure"]))],
                    )?;
                    let mut attrs = super::Attrs::new();
                    attrs.push("code", &exam_code.code);
                    if !exam_code.display.is_empty() {
                        attrs.push("displayName", &exam_code.display);
                    }
                    attrs.push("codeSystem", &exam_code.system);
                    node(w, "code", attrs.as_slice(), |w| {
                        node(w, "originalText", &[], |w| {
                            empty(w, "reference", &[("value", "#acte-1")])
                        })
                    })?;
                    let when = r
                        .header
                        .service_start
                        .as_deref()
                        .unwrap_or(&r.header.effective_time);
                    empty(w, "effectiveTime", &[("value", when)])?;
                    match modality {
                        Some((code, display)) => node(
                            w,
                            "methodCode",
                            &[
                                ("code", code),
                                ("displayName", display),
                                ("codeSystem", DCM),
                                ("codeSystemName", "DCM"),
                            ],
                            |w| {
                                node(w, "originalText", &[], |w| {
                                    empty(w, "reference", &[("value", "#acte-1-modalite")])
                                })
                            },
                        )?,
                        None => empty(w, "methodCode", &[("nullFlavor", "UNK")])?,
                    }
                    match site {
                        Some((code, display)) => node(
                            w,
                            "targetSiteCode",
                            &[
                                ("code", code),
                                ("displayName", display),
                                ("codeSystem", SNOMED_CT),
                                ("codeSystemName", "SNOMED CT"),
                            ],
                            |w| {
                                node(w, "originalText", &[], |w| {
                                    empty(w, "reference", &[("value", "#acte-1-localisation")])
                                })
                            },
                        ),
                        // The label names no known site. CR-IMG rejects this (it wants a coded
                        // site, no nullFlavor), but inventing a site would be worse: the
                        // document fails validation and is quarantined downstream.
                        None => empty(w, "targetSiteCode", &[("nullFlavor", "UNK")]),
                    }
                },
            )
        })?;
        node(w, "component", &[], |w| catalogue_section(w, r))
    })
}

/// "FR-DICOM-Catalogue-objets": mandatory in the procedure section. Only the study is known
/// (no series or instance UIDs in the message), so it is listed in the narrative and the
/// structured study act (which needs series and instances) is left out.
fn catalogue_section(w: &mut Xml, r: &ImagingReport) -> io::Result<()> {
    node(
        w,
        "section",
        &[("classCode", "DOCSECT"), ("moodCode", "EVN")],
        |w| {
            template_id(w, "2.16.840.1.113883.10.20.6.1.1", None)?;
            template_id(w, "1.2.250.1.213.1.1.2.217", None)?;
            empty(
                w,
                "id",
                &[(
                    "root",
                    &super::uuid_for(&[&r.header.unique_id, "dicom-catalogue"]),
                )],
            )?;
            empty(
                w,
                "code",
                &[
                    ("code", "121181"),
                    ("displayName", "Catalogue d'objets DICOM"),
                    ("codeSystem", DCM),
                    ("codeSystemName", "DCM"),
                ],
            )?;
            text(w, "title", &[], "Catalogue d'objets DICOM")?;
            node(w, "text", &[], |w| {
                let mut shown = match r.study_instance_uid.as_deref().filter(|u| !u.is_empty()) {
                    Some(uid) => format!("Study Instance UID : {uid}"),
                    None => "Identifiant de l'examen DICOM non transmis".to_string(),
                };
                if let Some(acc) = r.accession_number.as_deref().filter(|a| !a.is_empty()) {
                    shown.push_str(&format!(" - numéro d'accès : {acc}"));
                }
                text(w, "paragraph", &[], &shown)
            })
        },
    )
}

/// A narrative-only section (Résultats, Conclusion): one `<paragraph>` per paragraph.
fn text_section(
    w: &mut Xml,
    doc_id: &str,
    templates: (&str, &str),
    code: (&str, &str, &str),
    paragraphs: &[String],
) -> io::Result<()> {
    node(w, "section", &[], |w| {
        template_id(w, templates.0, None)?;
        template_id(w, templates.1, None)?;
        empty(w, "id", &[("root", &super::uuid_for(&[doc_id, code.0]))])?;
        empty(
            w,
            "code",
            &[
                ("code", code.0),
                ("displayName", code.1),
                ("codeSystem", oid::LOINC),
                ("codeSystemName", "LOINC"),
            ],
        )?;
        text(w, "title", &[], code.2)?;
        node(w, "text", &[], |w| {
            for p in paragraphs {
                node(w, "paragraph", &[], |w| lines(w, p))?;
            }
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cda::test_support::{check_references, header, parse_all, professional};

    fn report() -> ImagingReport {
        ImagingReport {
            header: header("SA08"),
            order_id: "DEM-1".into(),
            study_instance_uid: Some("1.2.250.1.999.3.20240104.1".into()),
            accession_number: Some("ACC<42>".into()),
            exam: Coded {
                code: "24727-0".into(),
                display: "CT tête avec contraste IV".into(),
                system: oid::LOINC.into(),
            },
            modality: Some("CT".into()),
            paragraphs: vec![
                "Indication : céphalées & vertiges".into(),
                "Pas d'anomalie <visible>.".into(),
                "CONCLUSION : examen normal".into(),
                "Œdème absent".into(),
            ],
            prescriber: Some(professional("810002422979", "PRESCRIT", "Éric")),
        }
    }

    #[test]
    fn well_formed_with_study_uid_accession_and_sections() {
        let xml = write(&report());
        parse_all(&xml);
        check_references(&xml);
        for t in [
            "1.2.840.10008.9.1",
            "1.2.250.1.213.1.1.1.45",
            "1.2.250.1.213.1.1.2.206",
            "1.2.250.1.213.1.1.2.208",
            "1.2.250.1.213.1.1.2.209",
            "1.2.250.1.213.1.1.2.217",
        ] {
            assert!(
                xml.contains(&format!("root=\"{t}\"")),
                "templateId {t} missing"
            );
        }
        assert!(xml.contains("<id root=\"1.2.250.1.999.3.20240104.1\"/>"));
        assert!(xml.contains("extension=\"ACC&lt;42&gt;\""));
        assert!(xml.contains("céphalées &amp; vertiges"));
        assert!(xml.contains("<paragraph>examen normal</paragraph>"));
        assert!(xml.contains("<paragraph>Œdème absent</paragraph>"));
    }

    #[test]
    fn body_sites_from_exam_labels() {
        assert_eq!(
            body_site("CT tête avec contraste IV").unwrap().0,
            "302548004"
        );
        assert_eq!(body_site("IRM du rachis lombaire").unwrap().0, "361686005");
        assert_eq!(
            body_site("Radiographie du coude droit").unwrap().0,
            "76248009"
        );
        assert_eq!(body_site("Échographie abdominale").unwrap().0, "302553009");
        assert_eq!(body_site("Scanner cou-thorax").unwrap().0, "302550007");
        // "cou" must be a word of its own, not the start of "couleur".
        assert_eq!(body_site("Doppler couleur"), None);
        assert_eq!(body_site("Examen 42"), None);
    }

    #[test]
    fn unknown_site_is_a_null_flavor_not_a_guess() {
        let mut r = report();
        r.exam.display = "Examen spécial".into();
        let xml = write(&r);
        assert!(xml.contains("<targetSiteCode nullFlavor=\"UNK\"/>"));
    }

    #[test]
    fn conclusion_split() {
        let p = |s: &str| s.to_string();
        let all = vec![p("Résultat"), p("Conclusion"), p("Normal")];
        let (findings, conclusion) = split_conclusion(&all);
        assert_eq!(findings, &all[..1]);
        assert_eq!(conclusion, vec![p("Normal")]);
        let (findings, conclusion) = split_conclusion(&all[..1]);
        assert_eq!(findings.len(), 1);
        assert!(conclusion.is_empty());
        let (_, conclusion) = split_conclusion(&[p("Conclusions : RAS")]);
        assert_eq!(conclusion, vec![p("RAS")]);
    }
}
