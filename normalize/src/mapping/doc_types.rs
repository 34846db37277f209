//! Which CI-SIS document types a feed accepts, and the XDS classCode and formatCode of a
//! received CDA (issue #12 item 3).
//!
//! - typeCode: `ClinicalDocument/code` must be in JDV_J07 ([`xds_types`]), else
//!   `cda.type.unknown`. The `documents` feed accepts every J07 type; the domain feeds
//!   accept the types of their domain ([`accepted_on`]); a J07 type outside them is
//!   `cda.model.unsupported` on that feed (send it on `documents`).
//! - classCode: TRE_A03, from the type ([`class_code`]).
//! - formatCode: ASS_A11 from the templateIds, or XDS-SD from the media type of a level 1
//!   (nonXMLBody) document; the documented default for a structured document of a type
//!   that has no CI-SIS model in ASS_A11 ([`DEFAULT_FORMAT`]).

use dmpflow_schemas::Feed;
use dmpflow_schemas::reasons::{Reason, Reject};

use super::xds_types;

/// Types of each domain feed. Choices (issue #12): a feed keeps the documents its senders
/// produce; documents of other domains (a discharge letter, a prescription, a vaccination
/// note ...) come on `documents`, which takes all of J07. A discharge letter is therefore
/// not accepted on the imaging feed.
///
/// - lab: CR-BIO 11502-2; TROD 96173-0 (a BIO volet of the CI-SIS).
/// - imaging: CR-IMG 18748-4; the imaging request DA-IMG 55115-0; the KOS reference to a
///   study IMG-KOS; a non-DICOM illustration image 52040-3.
/// - pharmacy: eDISP 60593-1, other dispensation DISP_AUT; the pharmacist's documents:
///   medication review 56445-0, pharmaceutical intervention 61357-0, pharmaceutical
///   interview 78601-2 and consultation 93024-8, prescription renewal 75468-9.
/// - cancer: FRCP (RCP report) 34794-8; PPS 18776-5; molecular genetics CR-GM 51969-4;
///   pathology CR-ACP 60568-3.
const LAB: &[&str] = &["11502-2", "96173-0"];
const IMAGING: &[&str] = &["18748-4", "55115-0", "IMG-KOS", "52040-3"];
const PHARMACY: &[&str] = &[
    "60593-1", "DISP_AUT", "56445-0", "61357-0", "78601-2", "93024-8", "75468-9",
];
const CANCER: &[&str] = &["34794-8", "18776-5", "51969-4", "60568-3"];

/// The specialised feed a J07 `type_code` belongs to (lab, imaging, pharmacy, cancer), or
/// `Documents` for every other type: the portal groups a patient's documents by it.
pub fn domain_of(type_code: &str) -> Feed {
    [Feed::Lab, Feed::Imaging, Feed::Pharmacy, Feed::Cancer]
        .into_iter()
        .find(|f| accepted_on(*f, type_code))
        .unwrap_or(Feed::Documents)
}

/// True when a J07 `type_code` is accepted on `feed` (never on `identity`).
pub fn accepted_on(feed: Feed, type_code: &str) -> bool {
    match feed {
        Feed::Documents => xds_types::lookup(type_code).is_some(),
        Feed::Lab => LAB.contains(&type_code),
        Feed::Imaging => IMAGING.contains(&type_code),
        Feed::Pharmacy => PHARMACY.contains(&type_code),
        Feed::Cancer => CANCER.contains(&type_code),
        Feed::Identity => false,
    }
}

/// The J07 type of `code`, checked against the header's codeSystem when it states one,
/// or `cda.type.unknown`.
pub fn check_type(code: &str, code_system: Option<&str>) -> Result<(), Reject> {
    let unknown = || {
        Reject::new(
            Reason::CdaTypeUnknown,
            format!("ClinicalDocument/code {code} is not an XDS typeCode of JDV_J07"),
        )
    };
    let t = xds_types::lookup(code).ok_or_else(unknown)?;
    match code_system {
        Some(s) if !s.is_empty() && s != t.code_system => Err(unknown()),
        _ => Ok(()),
    }
}

/// TRE_A03 classCode of a J07 type.
///
/// The ASS_X04 correspondence (type → class) was not available (domain.md §3.2), so this
/// table is our reading of each type's nature; 18748-4 → 31 is backed by an ANS change
/// request, the rest are assumptions to check against ASS_X04 when it is at hand. A type
/// not listed is a report: 10 "Compte rendu" (most of J07 are CR).
pub fn class_code(type_code: &str) -> &'static str {
    const CLASSES: &[(&str, &[&str])] = &[
        (
            // Synthèse: summaries of an episode, discharge summaries.
            "11",
            &[
                "SYNTH", "34133-9", "60591-5", "68599-0", "11490-0", "57055-6", "57057-2",
                "57075-4", "89235-6", "78489-2",
            ],
        ),
        ("31", &["18748-4", "IMG-KOS", "52040-3"]),
        (
            // Prescriptions and requests (a DA-IMG asks for an exam).
            "42",
            &[
                "PRESC-AAT",
                "PRESC-BIO",
                "PRESC-KINE",
                "PRESC-INF",
                "PRESC-PEDI",
                "PRESC-ORTHOPHO",
                "PRESC-ORTHOPTIE",
                "57828-6",
                "57832-8",
                "57833-6",
                "55115-0",
                "75496-0",
                "75468-9",
            ],
        ),
        ("43", &["60593-1", "DISP_AUT"]),
        (
            "44",
            &[
                "18776-5", "PROT_ALD", "77604-7", "83869-8", "80771-9", "80788-3",
            ],
        ),
        ("45", &["80565-5", "11369-6", "87273-9"]),
        (
            "52",
            &[
                "CERT_DECL",
                "89601-9",
                "59284-0",
                "86531-1",
                "96874-3",
                "AUTORIS-SOINS",
            ],
        ),
        ("60", &["REMB"]),
        (
            "90",
            &[
                "DOCPAT01", "DOCPAT02", "DOCPAT03", "DOCPAT04", "DOCPAT05", "DOCPAT06", "DOCPAT07",
                "DOCPAT08", "DOCPAT09", "EXPPAT_1", "EXPPAT_2", "EXPPAT_3",
            ],
        ),
        (
            "95",
            &[
                "51851-4",
                "ATTEST-ASS-COMPL",
                "ATTEST-RESID",
                "ATTEST-HEBGT",
                "ATTEST-DROITS-AM",
                "PIECE-IDENTITE",
                "FICHE-CONTACTS",
                "56446-8",
                "EXPORT_DUI",
            ],
        ),
        ("99", &["FEUILLE-DE-STYLE", "E1762"]),
    ];
    CLASSES
        .iter()
        .find(|(_, types)| types.contains(&type_code))
        .map(|(class, _)| *class)
        .unwrap_or("10")
}

/// ASS_A11 (domain.md §3.1): document-level templateId → formatCode, with the J07 types
/// of that CI-SIS model (a document of such a type must carry its model's templateId).
const ASS_A11: &[(&str, &str, &[&str])] = &[
    (
        "1.2.250.1.213.1.1.1.55",
        "urn:ihe:lab:xd-lab:2008",
        &["11502-2"],
    ),
    (
        "1.3.6.1.4.1.19376.1.3.3",
        "urn:ihe:lab:xd-lab:2008",
        &["11502-2"],
    ),
    (
        "1.2.250.1.213.1.1.1.45",
        "urn:ihe:rad:CDA:ImagingReportStructuredHeadings:2013",
        &["18748-4"],
    ),
    (
        "1.2.250.1.213.1.1.1.47",
        "urn:ans:ci-sis:img-da:2022",
        &["55115-0"],
    ),
    (
        "1.2.250.1.213.1.1.1.8",
        "urn:asip:ci-sis:frcp:2011",
        &["34794-8"],
    ),
    (
        "1.2.250.1.213.1.1.1.26",
        "urn:asip:ci-sis:pps-cancer:2017",
        &["18776-5"],
    ),
    (
        "1.2.250.1.213.1.1.1.32",
        "urn:asip:ci-sis:crgm:2018",
        &["51969-4"],
    ),
    (
        "1.2.250.1.213.1.1.1.27",
        "urn:asip:ci-sis:d2lm-fin:2017",
        &[],
    ),
    (
        "1.2.250.1.213.1.1.1.28",
        "urn:asip:ci-sis:d2lm-fidd:2017",
        &[],
    ),
    (
        "1.2.250.1.213.1.1.1.57",
        "urn:ihe:palm:apsr:2016",
        &["60568-3"],
    ),
    (
        "1.2.250.1.213.1.1.1.54",
        "urn:ihe:pharm:dis:2010",
        &["60593-1"],
    ),
    (
        "1.2.250.1.213.1.1.1.39",
        "urn:ihe:pharm:pre:2010",
        &["57833-6"],
    ),
    (
        "1.2.250.1.213.1.1.1.36",
        "urn:asip:ci-sis:hr:2019",
        &["REMB"],
    ),
    (
        "1.2.250.1.213.1.1.1.37",
        "urn:asip:ci-sis:vac:2019",
        &["11369-6"],
    ),
    (
        "1.2.250.1.213.1.1.1.46",
        "urn:asip:ci-sis:vac-note:2021",
        &["87273-9"],
    ),
    (
        "1.2.250.1.213.1.1.1.51",
        "urn:ihe:pcc:ips:2020",
        &["60591-5"],
    ),
    (
        "1.2.250.1.213.1.1.1.59",
        "urn:ans:ci-sis:trod:2024",
        &["96173-0"],
    ),
];

/// formatCode of a structured (level 3) document whose type has no CI-SIS model in
/// ASS_A11 as we hold it (a discharge letter LDL-SES, templateId 1.2.250.1.213.1.1.1.29,
/// whose ASS_A11 row was not available; a care-network document ...): IHE's generic "the mime type
/// is sufficient" code (ITI TF-3 §4.2.3.2.9), the one formatCode that claims no content
/// model. Replace it by the model's own code once its ASS_A11 row is added above.
pub const DEFAULT_FORMAT: &str = "urn:ihe:iti:xds:2017:mimeTypeSufficient";

/// ASS_A11 formatCode of the first known document templateId.
pub fn format_from_templates(ids: &[String]) -> Option<&'static str> {
    ASS_A11
        .iter()
        .find(|(root, _, _)| ids.iter().any(|i| i == root))
        .map(|(_, f, _)| *f)
}

/// CDA level 1 (nonXMLBody) → XDS-SD formatCode by media type.
fn format_from_media_type(media: &str) -> Option<&'static str> {
    match media {
        "application/pdf" => Some("urn:ihe:iti:xds-sd:pdf:2008"),
        "text/plain" => Some("urn:ihe:iti:xds-sd:text:2008"),
        "image/jpeg" => Some("urn:ihe:iti-fr:xds-sd:jpeg:2010"),
        "text/rtf" | "application/rtf" => Some("urn:ihe:iti-fr:xds-sd:rtf:2010"),
        "image/tiff" => Some("urn:ihe:iti-fr:xds-sd:tiff:2010"),
        _ => None,
    }
}

/// The formatCode of a received document: the media type of a level 1 document; else the
/// ASS_A11 row of its templateIds; else, for a type with no CI-SIS model in ASS_A11,
/// [`DEFAULT_FORMAT`]. A type that has a model but a document without that model's
/// templateId (a "CR-IMG" that is not one) is `cda.model.unsupported`.
pub fn format_code(
    type_code: &str,
    template_ids: &[String],
    media_type: Option<&str>,
) -> Result<&'static str, Reject> {
    let unsupported = |what: &str| Reject::new(Reason::CdaModelUnsupported, what.to_string());
    if let Some(media) = media_type {
        return format_from_media_type(media)
            .ok_or_else(|| unsupported("no XDS-SD formatCode for the nonXMLBody media type"));
    }
    if let Some(f) = format_from_templates(template_ids) {
        return Ok(f);
    }
    if ASS_A11
        .iter()
        .any(|(_, _, types)| types.contains(&type_code))
    {
        return Err(unsupported(
            "no ASS_A11 formatCode for the templateIds, and the document type has a CI-SIS model",
        ));
    }
    Ok(DEFAULT_FORMAT)
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_type_has_one_domain() {
        use super::{Feed, domain_of};
        assert_eq!(domain_of("11502-2"), Feed::Lab);
        assert_eq!(domain_of("18748-4"), Feed::Imaging);
        assert_eq!(domain_of("60593-1"), Feed::Pharmacy);
        assert_eq!(domain_of("34794-8"), Feed::Cancer);
        assert_eq!(domain_of("11490-0"), Feed::Documents);
    }

    use super::*;

    #[test]
    fn every_listed_type_is_in_j07() {
        for t in LAB.iter().chain(IMAGING).chain(PHARMACY).chain(CANCER) {
            assert!(xds_types::lookup(t).is_some(), "{t}");
        }
        for (_, _, types) in ASS_A11 {
            for t in *types {
                assert!(xds_types::lookup(t).is_some(), "{t}");
            }
        }
    }

    #[test]
    fn the_four_historical_models_keep_their_class() {
        assert_eq!(class_code("11502-2"), "10");
        assert_eq!(class_code("18748-4"), "31");
        assert_eq!(class_code("60593-1"), "43");
        assert_eq!(class_code("34794-8"), "10");
        assert_eq!(class_code("11490-0"), "11");
        assert_eq!(class_code("55115-0"), "42");
    }

    #[test]
    fn feeds_accept_their_domain_and_documents_all_of_j07() {
        assert!(accepted_on(Feed::Lab, "11502-2"));
        assert!(!accepted_on(Feed::Lab, "18748-4"));
        assert!(accepted_on(Feed::Imaging, "55115-0"));
        assert!(!accepted_on(Feed::Imaging, "11490-0"));
        assert!(accepted_on(Feed::Cancer, "34794-8"));
        assert!(accepted_on(Feed::Pharmacy, "60593-1"));
        assert!(!accepted_on(Feed::Identity, "11502-2"));
        for t in xds_types::J07 {
            assert!(accepted_on(Feed::Documents, t.code), "{}", t.code);
        }
        assert!(!accepted_on(Feed::Documents, "99999-9"));
    }

    #[test]
    fn type_check() {
        assert!(check_type("11490-0", Some("2.16.840.1.113883.6.1")).is_ok());
        assert!(check_type("11490-0", None).is_ok());
        let e = |c: &str, s: Option<&str>| check_type(c, s).unwrap_err().reason;
        assert_eq!(e("99999-9", None), Reason::CdaTypeUnknown);
        // A J07 code in another system is not that type.
        assert_eq!(
            e("11490-0", Some("1.2.250.1.213.1.1.4.12")),
            Reason::CdaTypeUnknown
        );
    }

    #[test]
    fn format_codes() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            format_code("55115-0", &ids(&["1.2.250.1.213.1.1.1.47"]), None),
            Ok("urn:ans:ci-sis:img-da:2022")
        );
        assert_eq!(
            format_code("11490-0", &ids(&["1.2.250.1.213.1.1.1.29"]), None),
            Ok(DEFAULT_FORMAT)
        );
        assert_eq!(
            format_code("11490-0", &[], Some("application/pdf")),
            Ok("urn:ihe:iti:xds-sd:pdf:2008")
        );
        assert_eq!(
            format_code("18748-4", &ids(&["1.2.3"]), None)
                .unwrap_err()
                .reason,
            Reason::CdaModelUnsupported
        );
    }
}
