//! The French CDA header shared by every generated document (CI-SIS "En-tête des documents
//! médicaux", FR Document Core): from `<realmCode>` to `<componentOf>`. The model writers
//! say what differs (templateIds, code, title, participants, orders, service events) in a
//! [`Spec`]; everything the record does not carry but CI-SIS requires is written here as a
//! nullFlavor or a documented constant, never as invented patient data.

use std::io;

use dmpflow_schemas::PatientIdentity;

use super::{Xml, date_to_ts, empty, node, oid, template_id, text};
use crate::model::{Coded, DocumentHeader, Organisation, Professional};

/// HL7 France and CI-SIS header templateIds, present in every CI-SIS document.
const COMMON_TEMPLATE_IDS: [&str; 2] = ["2.16.840.1.113883.2.8.2.1", "1.2.250.1.213.1.1.1.1"];

/// What a model (CR-BIO, CR-IMG, eDISP-MED) adds to the common header.
pub struct Spec<'a> {
    /// Model templateIds after the two common ones: (root, extension).
    pub template_ids: &'a [(&'a str, Option<&'a str>)],
    /// Document type (LOINC code and its fixed displayName).
    pub code: (&'a str, &'a str),
    pub title: &'a str,
    pub participants: Vec<Participant<'a>>,
    pub orders: Vec<Order<'a>>,
    pub service_events: Vec<ServiceEvent<'a>>,
}

/// A header `participant` (prescriber, ...).
pub struct Participant<'a> {
    pub type_code: &'a str,
    pub template_id: Option<&'a str>,
    /// (code, displayName, codeSystem)
    pub function_code: Option<(&'a str, &'a str, &'a str)>,
    pub who: &'a Professional,
}

/// An `inFulfillmentOf/order`.
pub struct Order<'a> {
    /// Root of the order number: see [`local_id_root`].
    pub root: String,
    /// The placer order (or prescription) number.
    pub id: &'a str,
    /// CR-IMG only: `ps3-20:accessionNumber`, required in every order of a CR-IMG.
    /// `None` for other models; `Some(None)` when the message gave none (nullFlavor UNK).
    pub accession_number: Option<Option<&'a str>>,
}

/// A `documentationOf/serviceEvent`.
pub struct ServiceEvent<'a> {
    /// (root, extension)
    pub id: Option<(&'a str, Option<&'a str>)>,
    pub code: &'a Coded,
    pub translations: Vec<Coded>,
    /// CR-IMG only: the acquisition modality as a DICOM (DCM) translation qualified by
    /// 121139 "Modalité d'imagerie", as CR-IMG requires on LOINC-coded service events.
    /// `Some(None)` when the modality is unknown (translation nullFlavor UNK).
    pub modality: Option<Option<(&'a str, &'a str)>>,
    /// CR-BIO only: `lab:statusCode` (completed / active).
    pub lab_status: Option<&'a str>,
    pub low: Option<&'a str>,
    pub high: Option<&'a str>,
    /// Performer (PRF) = the author and its organisation, with an optional templateId.
    pub performer: Option<Option<&'a str>>,
}

/// Root for identifiers the sender numbers locally (placer order numbers, prescription
/// numbers, accession numbers). HL7 v2 carries them without an assigning-authority OID, so
/// the writer names the namespace "`kind` numbers as issued around organisation X" with a
/// deterministic UUID, and keeps the number itself in `extension`.
pub fn local_id_root(kind: &str, org: &Organisation) -> String {
    super::uuid_for(&["dmpflow/local-id", kind, &org.id])
}

/// Writes `<ClinicalDocument>`'s header children, up to and including `componentOf`.
/// The caller writes the body (`component`) afterwards inside the same element.
pub fn write(w: &mut Xml, h: &DocumentHeader, spec: &Spec<'_>) -> io::Result<()> {
    empty(w, "realmCode", &[("code", "FR")])?;
    empty(
        w,
        "typeId",
        &[
            ("root", "2.16.840.1.113883.1.3"),
            ("extension", "POCD_HD000040"),
        ],
    )?;
    for root in COMMON_TEMPLATE_IDS {
        template_id(w, root, None)?;
    }
    for (root, ext) in spec.template_ids {
        template_id(w, root, *ext)?;
    }
    empty(w, "id", &[("root", &h.unique_id)])?;
    empty(
        w,
        "code",
        &[
            ("code", spec.code.0),
            ("displayName", spec.code.1),
            ("codeSystem", oid::LOINC),
            ("codeSystemName", "LOINC"),
        ],
    )?;
    text(w, "title", &[], spec.title)?;
    empty(w, "effectiveTime", &[("value", &h.effective_time)])?;
    let conf = if h.confidentiality.is_empty() {
        "N"
    } else {
        h.confidentiality.as_str()
    };
    empty(
        w,
        "confidentialityCode",
        &[
            ("code", conf),
            ("displayName", confidentiality_display(conf)),
            ("codeSystem", oid::CONFIDENTIALITY),
        ],
    )?;
    empty(w, "languageCode", &[("code", "fr-FR")])?;
    empty(w, "setId", &[("root", &h.set_id)])?;
    // CI-SIS requires a positive versionNumber: a record with 0 is a first version.
    let version = h.version.max(1).to_string();
    empty(w, "versionNumber", &[("value", &version)])?;
    record_target(w, &h.patient)?;
    author(w, h)?;
    custodian(w, &h.organisation)?;
    legal_authenticator(w, h)?;
    for p in &spec.participants {
        participant(w, h, p)?;
    }
    for o in &spec.orders {
        in_fulfillment_of(w, h, o)?;
    }
    for se in &spec.service_events {
        service_event(w, h, se)?;
    }
    if let Some(replaced) = &h.replaces {
        node(w, "relatedDocument", &[("typeCode", "RPLC")], |w| {
            node(w, "parentDocument", &[], |w| {
                empty(w, "id", &[("root", replaced)])?;
                empty(w, "setId", &[("root", &h.set_id)])
            })
        })?;
    }
    component_of(w, h)
}

fn confidentiality_display(code: &str) -> &'static str {
    match code {
        "R" => "Restreint",
        "V" => "Très restreint",
        _ => "Normal",
    }
}

fn record_target(w: &mut Xml, p: &PatientIdentity) -> io::Result<()> {
    node(w, "recordTarget", &[], |w| {
        node(w, "patientRole", &[], |w| {
            empty(w, "id", &[("root", &p.ins_oid), ("extension", &p.ins)])?;
            if let (Some(ipp), Some(auth)) = (&p.ipp, &p.ipp_authority) {
                empty(w, "id", &[("root", auth), ("extension", ipp)])?;
            }
            // The identity feed carries no address/telecom into documents: CR-BIO asks
            // for nullFlavor UNK when none is known.
            empty(w, "addr", &[("nullFlavor", "UNK")])?;
            empty(w, "telecom", &[("nullFlavor", "UNK")])?;
            node(w, "patient", &[("classCode", "PSN")], |w| {
                node(w, "name", &[], |w| {
                    text(w, "family", &[("qualifier", "BR")], &p.birth_name)?;
                    if !p.first_names.is_empty() {
                        // INS rule: `given` = all birth first names (space separated),
                        // `given qualifier=BR` = the first one.
                        text(w, "given", &[], &p.first_names.join(" "))?;
                        text(w, "given", &[("qualifier", "BR")], &p.first_names[0])?;
                    }
                    Ok(())
                })?;
                let (code, display) = match p.sex.as_str() {
                    "M" => ("M", "Masculin"),
                    "F" => ("F", "Féminin"),
                    _ => ("UN", "Inconnu"),
                };
                empty(
                    w,
                    "administrativeGenderCode",
                    &[
                        ("code", code),
                        ("displayName", display),
                        ("codeSystem", oid::ADMINISTRATIVE_GENDER),
                    ],
                )?;
                let birth = date_to_ts(&p.birth_date);
                if birth.is_empty() {
                    empty(w, "birthTime", &[("nullFlavor", "UNK")])?;
                } else {
                    empty(w, "birthTime", &[("value", &birth)])?;
                }
                if let Some(place) = p.birth_place.as_deref().filter(|s| !s.is_empty()) {
                    node(w, "birthplace", &[], |w| {
                        node(w, "place", &[], |w| {
                            node(w, "addr", &[], |w| text(w, "county", &[], place))
                        })
                    })?;
                }
                Ok(())
            })
        })
    })
}

/// `<id root=IdNat_PS extension=..>` or a nullFlavor when the message named nobody.
fn person_id(w: &mut Xml, p: &Professional) -> io::Result<()> {
    if p.id.is_empty() {
        empty(w, "id", &[("nullFlavor", "UNK")])
    } else {
        empty(w, "id", &[("root", oid::IDNAT_PS), ("extension", &p.id)])
    }
}

/// TRE_G15 profession/specialty code, nullFlavor UNK when unknown.
fn person_code(w: &mut Xml, p: &Professional) -> io::Result<()> {
    if p.specialty.is_empty() {
        empty(w, "code", &[("nullFlavor", "UNK")])
    } else {
        let mut attrs = super::Attrs::new();
        attrs.push("code", p.specialty.as_str());
        if let Some(d) = specialty_display(&p.specialty) {
            attrs.push("displayName", d);
        }
        attrs.push("codeSystem", oid::TRE_G15);
        empty(w, "code", attrs.as_slice())
    }
}

/// Display names of the TRE_G15 codes the feeds send most (the value set check only looks
/// at code and codeSystem; the display name helps human readers).
fn specialty_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "G15_10/SM03" => "Médecin - Biologie médicale (SM)",
        "G15_10/SM26" => "Médecin - Qualifié en Médecine Générale (SM)",
        "G15_10/SM44" => "Médecin - Radio-diagnostic (SM)",
        "G15_10/SM45" => "Médecin - Radio-thérapie (SM)",
        "G15_10/SM36" => "Médecin - Oncologie option médicale (SM)",
        "G15_10" => "Médecin",
        "G15_21" => "Pharmacien",
        "G15_21/A" => "Pharmacien titulaire d'officine",
        "G15_60" => "Infirmier",
        _ => return None,
    })
}

fn person_name(w: &mut Xml, tag: &str, p: &Professional) -> io::Result<()> {
    node(w, tag, &[], |w| {
        node(w, "name", &[], |w| {
            if !p.given.is_empty() {
                text(w, "given", &[], &p.given)?;
            }
            if p.family.is_empty() {
                empty(w, "family", &[("nullFlavor", "UNK")])
            } else {
                text(w, "family", &[], &p.family)
            }
        })
    })
}

/// Address and telecom of a professional or organisation: not in the record, required by
/// CR-BIO in several places, so written as nullFlavor UNK.
fn unknown_addr_telecom(w: &mut Xml) -> io::Result<()> {
    empty(w, "addr", &[("nullFlavor", "UNK")])?;
    empty(w, "telecom", &[("nullFlavor", "UNK")])
}

fn org_id(w: &mut Xml, org: &Organisation) -> io::Result<()> {
    if org.id.is_empty() {
        empty(w, "id", &[("nullFlavor", "UNK")])
    } else {
        empty(
            w,
            "id",
            &[("root", oid::IDNAT_STRUCT), ("extension", &org.id)],
        )
    }
}

fn org_name(w: &mut Xml, org: &Organisation) -> io::Result<()> {
    if org.name.is_empty() {
        empty(w, "name", &[("nullFlavor", "UNK")])
    } else {
        text(w, "name", &[], &org.name)
    }
}

/// `representedOrganization` (or `scopingOrganization`) with id, name, telecom, addr and
/// the cadre d'exercice (TRE_A01).
fn organisation(w: &mut Xml, tag: &str, org: &Organisation, setting: &str) -> io::Result<()> {
    node(w, tag, &[], |w| {
        org_id(w, org)?;
        org_name(w, org)?;
        empty(w, "telecom", &[("nullFlavor", "UNK")])?;
        empty(w, "addr", &[("nullFlavor", "UNK")])?;
        practice_setting(w, setting)
    })
}

fn practice_setting(w: &mut Xml, setting: &str) -> io::Result<()> {
    if setting.is_empty() {
        return empty(w, "standardIndustryClassCode", &[("nullFlavor", "UNK")]);
    }
    let mut attrs = super::Attrs::new();
    attrs.push("code", setting);
    if let Some(d) = practice_setting_display(setting) {
        attrs.push("displayName", d);
    }
    attrs.push("codeSystem", oid::TRE_A01);
    empty(w, "standardIndustryClassCode", attrs.as_slice())
}

fn practice_setting_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "AMBULATOIRE" => "Ambulatoire",
        "ETABLISSEMENT" => "Etablissement de santé",
        "HAD" => "Hospitalisation à domicile",
        "SAMU_SMUR" => "SAMU-SMUR",
        "ESSMS" => "Etablissement et services sociaux et médico-sociaux",
        _ => return None,
    })
}

/// `assignedAuthor`/`assignedEntity` content for a professional of the organisation.
fn assigned_person(w: &mut Xml, h: &DocumentHeader, p: &Professional) -> io::Result<()> {
    person_id(w, p)?;
    person_code(w, p)?;
    unknown_addr_telecom(w)?;
    person_name(w, "assignedPerson", p)?;
    organisation(
        w,
        "representedOrganization",
        &h.organisation,
        &h.practice_setting,
    )
}

fn author(w: &mut Xml, h: &DocumentHeader) -> io::Result<()> {
    node(w, "author", &[], |w| {
        empty(w, "time", &[("value", &h.effective_time)])?;
        node(w, "assignedAuthor", &[], |w| {
            assigned_person(w, h, &h.author)
        })
    })
}

fn custodian(w: &mut Xml, org: &Organisation) -> io::Result<()> {
    node(w, "custodian", &[], |w| {
        node(w, "assignedCustodian", &[], |w| {
            node(w, "representedCustodianOrganization", &[], |w| {
                org_id(w, org)?;
                org_name(w, org)?;
                empty(w, "telecom", &[("nullFlavor", "UNK")])?;
                empty(w, "addr", &[("nullFlavor", "UNK")])
            })
        })
    })
}

fn legal_authenticator(w: &mut Xml, h: &DocumentHeader) -> io::Result<()> {
    node(w, "legalAuthenticator", &[], |w| {
        empty(w, "time", &[("value", &h.effective_time)])?;
        empty(w, "signatureCode", &[("code", "S")])?;
        node(w, "assignedEntity", &[], |w| {
            assigned_person(w, h, &h.legal_authenticator)
        })
    })
}

fn participant(w: &mut Xml, _h: &DocumentHeader, p: &Participant<'_>) -> io::Result<()> {
    node(w, "participant", &[("typeCode", p.type_code)], |w| {
        if let Some(t) = p.template_id {
            template_id(w, t, None)?;
        }
        if let Some((code, display, system)) = p.function_code {
            empty(
                w,
                "functionCode",
                &[
                    ("code", code),
                    ("displayName", display),
                    ("codeSystem", system),
                ],
            )?;
        }
        // The message gives no date for the prescription itself.
        empty(w, "time", &[("nullFlavor", "UNK")])?;
        node(w, "associatedEntity", &[("classCode", "PROV")], |w| {
            person_id(w, p.who)?;
            person_code(w, p.who)?;
            unknown_addr_telecom(w)?;
            node(w, "associatedPerson", &[], |w| {
                node(w, "name", &[], |w| {
                    if !p.who.given.is_empty() {
                        text(w, "given", &[], &p.who.given)?;
                    }
                    if p.who.family.is_empty() {
                        empty(w, "family", &[("nullFlavor", "UNK")])
                    } else {
                        text(w, "family", &[], &p.who.family)
                    }
                })
            })
        })
    })
}

fn in_fulfillment_of(w: &mut Xml, h: &DocumentHeader, o: &Order<'_>) -> io::Result<()> {
    node(w, "inFulfillmentOf", &[], |w| {
        node(w, "order", &[], |w| {
            if o.id.is_empty() {
                empty(w, "id", &[("nullFlavor", "UNK")])?;
            } else {
                empty(w, "id", &[("root", &o.root), ("extension", o.id)])?;
            }
            // DICOM PS3.20: the accession number travels in its own namespaced element
            // (the prefix is declared on ClinicalDocument by the CR-IMG writer).
            match o.accession_number {
                None => {}
                Some(None) => empty(w, "ps3-20:accessionNumber", &[("nullFlavor", "UNK")])?,
                Some(Some(acc)) => {
                    let root = local_id_root("accession", &h.organisation);
                    empty(
                        w,
                        "ps3-20:accessionNumber",
                        &[("root", &root), ("extension", acc)],
                    )?;
                }
            }
            Ok(())
        })
    })
}

const DCM: &str = "1.2.840.10008.2.16.4";

/// The modality translation of a CR-IMG service event, qualified as "Modalité d'imagerie".
fn modality_translation(w: &mut Xml, modality: Option<(&str, &str)>) -> io::Result<()> {
    let qualifier = |w: &mut Xml| -> io::Result<()> {
        node(w, "qualifier", &[], |w| {
            empty(
                w,
                "name",
                &[
                    ("code", "121139"),
                    ("displayName", "Modalité d'imagerie"),
                    ("codeSystem", DCM),
                    ("codeSystemName", "DCM"),
                ],
            )
        })
    };
    match modality {
        Some((code, display)) => node(
            w,
            "translation",
            &[
                ("code", code),
                ("displayName", display),
                ("codeSystem", DCM),
                ("codeSystemName", "DCM"),
            ],
            qualifier,
        ),
        None => node(w, "translation", &[("nullFlavor", "UNK")], qualifier),
    }
}

fn service_event(w: &mut Xml, h: &DocumentHeader, se: &ServiceEvent<'_>) -> io::Result<()> {
    node(w, "documentationOf", &[], |w| {
        node(w, "serviceEvent", &[], |w| {
            if let Some((root, ext)) = se.id {
                match ext {
                    Some(ext) => empty(w, "id", &[("root", root), ("extension", ext)])?,
                    None => empty(w, "id", &[("root", root)])?,
                }
            }
            if se.translations.is_empty() && se.modality.is_none() {
                super::coded(w, "code", se.code)?;
            } else {
                let mut attrs = super::Attrs::new();
                attrs.push("code", se.code.code.as_str());
                if !se.code.display.is_empty() {
                    attrs.push("displayName", se.code.display.as_str());
                }
                attrs.push("codeSystem", se.code.system.as_str());
                node(w, "code", attrs.as_slice(), |w| {
                    for t in &se.translations {
                        super::coded(w, "translation", t)?;
                    }
                    if let Some(m) = se.modality {
                        modality_translation(w, m)?;
                    }
                    Ok(())
                })?;
            }
            if let Some(status) = se.lab_status {
                empty(w, "lab:statusCode", &[("code", status)])?;
            }
            if se.low.is_some() || se.high.is_some() {
                node(w, "effectiveTime", &[], |w| {
                    if let Some(low) = se.low {
                        empty(w, "low", &[("value", low)])?;
                    }
                    if let Some(high) = se.high {
                        empty(w, "high", &[("value", high)])?;
                    }
                    Ok(())
                })?;
            }
            if let Some(tid) = se.performer {
                node(w, "performer", &[("typeCode", "PRF")], |w| {
                    if let Some(t) = tid {
                        template_id(w, t, None)?;
                    }
                    node(w, "time", &[], |w| {
                        empty(w, "high", &[("value", &h.effective_time)])
                    })?;
                    node(w, "assignedEntity", &[], |w| {
                        assigned_person(w, h, &h.author)
                    })
                })?;
            }
            Ok(())
        })
    })
}

/// Encounter code (ActEncounterCode) from the cadre d'exercice: ambulatory unless the
/// setting says otherwise.
fn encounter_code(setting: &str) -> (&'static str, &'static str) {
    match setting {
        "ETABLISSEMENT" => ("IMP", "Hospitalisation"),
        "HAD" => ("HH", "Soins à domicile"),
        "SAMU_SMUR" => ("EMER", "Urgences"),
        _ => ("AMB", "Ambulatoire"),
    }
}

fn facility_display(code: &str) -> Option<&'static str> {
    Some(match code {
        "SA01" => "Etablissement public de santé",
        "SA03" => "Etablissement privé PSPH",
        "SA04" => "Etablissement privé non PSPH",
        "SA05" => "Centre de santé",
        "SA07" => "Cabinet individuel",
        "SA08" => "Cabinet de groupe",
        "SA25" => "Laboratoire de biologie médicale",
        "SA29" => "Laboratoire d'analyses et de biologie médicale",
        "SA33" => "Pharmacie d'officine",
        "SA36" => "Centre anti-cancer",
        _ => return None,
    })
}

fn component_of(w: &mut Xml, h: &DocumentHeader) -> io::Result<()> {
    let start = h.service_start.as_deref().unwrap_or(&h.effective_time);
    node(w, "componentOf", &[], |w| {
        node(w, "encompassingEncounter", &[], |w| {
            let (code, display) = encounter_code(&h.practice_setting);
            empty(
                w,
                "code",
                &[
                    ("code", code),
                    ("displayName", display),
                    ("codeSystem", oid::ACT_CODE),
                ],
            )?;
            node(w, "effectiveTime", &[], |w| {
                empty(w, "low", &[("value", start)])?;
                if let Some(stop) = &h.service_stop {
                    empty(w, "high", &[("value", stop)])?;
                }
                Ok(())
            })?;
            node(w, "responsibleParty", &[], |w| {
                node(w, "assignedEntity", &[], |w| {
                    assigned_person(w, h, &h.legal_authenticator)
                })
            })?;
            node(w, "location", &[], |w| {
                node(w, "healthCareFacility", &[], |w| {
                    let sector = h.facility_sector.as_str();
                    if sector.is_empty() {
                        empty(w, "code", &[("nullFlavor", "UNK")])?;
                    } else {
                        let mut attrs = super::Attrs::new();
                        attrs.push("code", sector);
                        if let Some(d) = facility_display(sector) {
                            attrs.push("displayName", d);
                        }
                        attrs.push("codeSystem", oid::TRE_R02);
                        empty(w, "code", attrs.as_slice())?;
                    }
                    node(w, "location", &[], |w| org_name(w, &h.organisation))
                })
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cda::test_support::{header, parse_all};

    fn render(h: &DocumentHeader) -> String {
        let code = Coded {
            code: "11502-2".into(),
            display: "CR d'examens biologiques".into(),
            system: oid::LOINC.into(),
        };
        let spec = Spec {
            template_ids: &[("1.2.250.1.213.1.1.1.55", None)],
            code: ("11502-2", "CR d'examens biologiques"),
            title: "Titre <&>",
            participants: vec![],
            orders: vec![],
            service_events: vec![ServiceEvent {
                id: None,
                code: &code,
                translations: vec![],
                modality: None,
                lab_status: None,
                low: None,
                high: None,
                performer: None,
            }],
        };
        let mut w = super::super::new_writer();
        node(
            &mut w,
            "ClinicalDocument",
            &[("xmlns", super::super::NS_HL7)],
            |w| write(w, h, &spec),
        )
        .unwrap();
        super::super::finish(w)
    }

    #[test]
    fn patient_identity_and_fixed_elements() {
        let xml = render(&header("SA25"));
        parse_all(&xml);
        assert!(xml.contains("<id root=\"1.2.250.1.213.1.4.10\" extension=\"285077505612370\"/>"));
        assert!(xml.contains("<family qualifier=\"BR\">TEST-ŒUVRE</family>"));
        assert!(xml.contains("<given>Zoé Anne</given>"));
        assert!(xml.contains("<given qualifier=\"BR\">Zoé</given>"));
        assert!(xml.contains("<birthTime value=\"19850714\"/>"));
        assert!(xml.contains("<county>75056</county>"));
        assert!(xml.contains("<realmCode code=\"FR\"/>"));
        assert!(xml.contains("<languageCode code=\"fr-FR\"/>"));
        assert!(xml.contains("<title>Titre &lt;&amp;&gt;</title>"));
        assert!(xml.contains("code=\"SA25\""));
        assert!(!xml.contains("relatedDocument"));
    }

    #[test]
    fn replacement_and_unknowns() {
        let mut h = header("");
        h.replaces = Some("1.2.3.4.5".into());
        h.version = 0;
        h.patient.sex = "U".into();
        h.patient.birth_date = String::new();
        h.patient.birth_place = None;
        h.author.specialty = String::new();
        let xml = render(&h);
        parse_all(&xml);
        assert!(xml.contains("<relatedDocument typeCode=\"RPLC\">"));
        assert!(xml.contains("<id root=\"1.2.3.4.5\"/>"));
        assert!(xml.contains("<versionNumber value=\"1\"/>"));
        assert!(xml.contains("code=\"UN\""));
        assert!(xml.contains("<birthTime nullFlavor=\"UNK\"/>"));
        assert!(!xml.contains("birthplace"));
        assert!(xml.contains("<code nullFlavor=\"UNK\"/>"));
    }
}
