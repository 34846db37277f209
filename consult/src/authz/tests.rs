//! One test per rule of the authorisation module: each DMP-level denial and permit, each
//! document flag per principal kind, the author exception, break-the-glass, old versions,
//! and the search count. The combinations are swept in `tests_table.rs`.

use super::*;
use dmpflow_schemas::PatientRecord;

pub(super) const INS: &str = "279035121518989";
pub(super) const OTHER_INS: &str = "180012B01234512";
pub(super) const RPPS: &str = "10001234567";
pub(super) const OTHER_RPPS: &str = "10009876543";

pub(super) fn patient() -> Principal {
    Principal::Patient { ins: INS.into() }
}
pub(super) fn representative() -> Principal {
    Principal::Representative {
        represented_ins: INS.into(),
        id: "parent-1".into(),
    }
}
pub(super) fn professional(id: &str) -> Principal {
    Principal::Professional {
        id: id.into(),
        profession: "10".into(),
        organisation: Some("10B0123456".into()),
    }
}
pub(super) fn btg() -> Purpose {
    Purpose::BreakTheGlass {
        reason: "patient inconscient aux urgences".into(),
    }
}
pub(super) fn open(consent: Option<bool>) -> DmpState {
    DmpState {
        status: DmpStatus::Open,
        consultation_consent: consent,
        break_glass_opposed: false,
    }
}
pub(super) fn grant(p: &Principal, purpose: &Purpose, state: &DmpState) -> Grant {
    match can_access_dmp(p, purpose, INS, state) {
        Access::Granted(g) => g,
        Access::Denied(r) => panic!("expected a grant, got {r}"),
    }
}
pub(super) fn doc(id: &str, author: &str, codes: &[&str], status: DocStatus) -> DocView {
    DocView {
        id: id.into(),
        set_id: format!("set-{id}"),
        patient_ins: INS.into(),
        authors: vec![author.into()],
        visibility: Visibility::from_codes(codes.iter().copied()),
        status,
    }
}
fn current(id: &str, author: &str, codes: &[&str]) -> DocView {
    doc(id, author, codes, DocStatus::Current)
}
fn denied(p: &Principal, purpose: &Purpose, ins: &str, state: &DmpState) -> Reason {
    match can_access_dmp(p, purpose, ins, state) {
        Access::Denied(r) => r,
        Access::Granted(g) => panic!("expected a denial, got {}", g.reason()),
    }
}
fn hidden_reason(g: &Grant, d: &DocView) -> Reason {
    match decide_doc(g, d) {
        DocDecision::Hide(r) => r,
        DocDecision::Show(r) => panic!("expected hidden, shown as {r}"),
    }
}

// --- reason codes ---

#[test]
fn reason_codes_are_unique_namespaced_and_parse_back() {
    let mut seen = std::collections::HashSet::new();
    for r in Reason::ALL {
        assert!(r.as_str().starts_with("consult."), "{r}");
        assert!(seen.insert(r.as_str()), "duplicate {r}");
        assert_eq!(Reason::parse(r.as_str()), Some(*r));
    }
}

#[test]
fn document_hiding_reasons_read_as_not_found_to_the_caller() {
    for r in Reason::ALL {
        if r.hides_document() {
            assert_eq!(r.public(), Reason::DocNotFound, "{r}");
        } else {
            assert_eq!(r.public(), *r);
        }
    }
    assert_eq!(Reason::DmpClosed.public(), Reason::DmpClosed);
}

// --- DMP state mapping ---

#[test]
fn zfa1_mapping() {
    assert_eq!(DmpStatus::from_zfa1(Some("ACTIF")), DmpStatus::Open);
    assert_eq!(DmpStatus::from_zfa1(Some(" actif ")), DmpStatus::Open);
    assert_eq!(DmpStatus::from_zfa1(None), DmpStatus::Open);
    assert_eq!(DmpStatus::from_zfa1(Some("")), DmpStatus::Open);
    assert_eq!(DmpStatus::from_zfa1(Some("FERME")), DmpStatus::Closed);
    assert_eq!(DmpStatus::from_zfa1(Some("ARCHIVE")), DmpStatus::Closed);
    assert_eq!(DmpStatus::from_zfa1(Some("INEXISTANT")), DmpStatus::Absent);
    assert_eq!(
        DmpStatus::from_zfa1(Some("SUSPENDU")),
        DmpStatus::Unrecognised
    );
}

#[test]
fn state_from_registry_record() {
    assert_eq!(DmpState::from_record(None).status, DmpStatus::Absent);
    let mut r = PatientRecord {
        ins: INS.into(),
        dmp_status: Some("FERME".into()),
        consultation_consent: Some(false),
        ..Default::default()
    };
    let s = DmpState::from_record(Some(&r));
    assert_eq!(s.status, DmpStatus::Closed);
    assert_eq!(s.consultation_consent, Some(false));
    assert!(!s.break_glass_opposed);
    r.merged_into = Some(OTHER_INS.into());
    assert_eq!(DmpState::from_record(Some(&r)).status, DmpStatus::Merged);
}

// --- DMP level ---

#[test]
fn closed_dmp_is_denied_to_everyone_even_in_an_emergency() {
    let closed = DmpState {
        status: DmpStatus::Closed,
        ..open(Some(true))
    };
    for p in [patient(), representative(), professional(RPPS)] {
        assert_eq!(
            denied(&p, &Purpose::Normal, INS, &closed),
            Reason::DmpClosed
        );
    }
    assert_eq!(
        denied(&professional(RPPS), &btg(), INS, &closed),
        Reason::DmpClosed
    );
}

#[test]
fn absent_merged_and_unknown_dmp_are_denied() {
    let p = professional(RPPS);
    for (status, reason) in [
        (DmpStatus::Absent, Reason::DmpNotFound),
        (DmpStatus::Merged, Reason::DmpMerged),
        (DmpStatus::Unrecognised, Reason::DmpStatusUnknown),
    ] {
        let s = DmpState {
            status,
            ..open(None)
        };
        assert_eq!(denied(&p, &Purpose::Normal, INS, &s), reason);
    }
}

#[test]
fn patient_consults_only_their_own_record() {
    let g = grant(&patient(), &Purpose::Normal, &open(None));
    assert_eq!(g.reason(), Reason::PermitOwnRecord);
    assert_eq!(g.scope(), Scope::All);
    assert_eq!(
        denied(&patient(), &Purpose::Normal, OTHER_INS, &open(None)),
        Reason::NotOwnRecord
    );
}

#[test]
fn unrelated_caller_learns_nothing_about_the_dmp_state() {
    // The relationship is checked before the DMP state: a closed or absent DMP of someone
    // else answers exactly as an open one.
    for status in [DmpStatus::Closed, DmpStatus::Absent, DmpStatus::Open] {
        let s = DmpState {
            status,
            ..open(None)
        };
        assert_eq!(
            denied(&patient(), &Purpose::Normal, OTHER_INS, &s),
            Reason::NotOwnRecord
        );
    }
}

#[test]
fn representative_consults_only_the_represented_record() {
    let g = grant(&representative(), &Purpose::Normal, &open(None));
    assert_eq!(g.reason(), Reason::PermitRepresented);
    assert_eq!(
        denied(&representative(), &Purpose::Normal, OTHER_INS, &open(None)),
        Reason::NotRepresented
    );
}

#[test]
fn refused_consent_does_not_bind_the_patient_or_representative() {
    let s = open(Some(false));
    assert_eq!(grant(&patient(), &Purpose::Normal, &s).scope(), Scope::All);
    assert_eq!(
        grant(&representative(), &Purpose::Normal, &s).scope(),
        Scope::All
    );
}

#[test]
fn empty_identifiers_are_denied() {
    for p in [
        Principal::Patient { ins: " ".into() },
        Principal::Representative {
            represented_ins: String::new(),
            id: "parent-1".into(),
        },
        professional(""),
    ] {
        assert_eq!(
            denied(&p, &Purpose::Normal, INS, &open(None)),
            Reason::PrincipalInvalid
        );
    }
    assert_eq!(
        denied(&professional(RPPS), &Purpose::Normal, "", &open(None)),
        Reason::PrincipalInvalid
    );
}

#[test]
fn professional_with_consent_given_or_not_collected_is_permitted() {
    for consent in [Some(true), None] {
        let g = grant(&professional(RPPS), &Purpose::Normal, &open(consent));
        assert_eq!(g.reason(), Reason::PermitProfessional);
        assert_eq!(g.scope(), Scope::All);
        assert_eq!(g.break_glass(), None);
    }
}

#[test]
fn refused_consent_limits_a_professional_to_their_own_documents() {
    let g = grant(&professional(RPPS), &Purpose::Normal, &open(Some(false)));
    assert_eq!(g.reason(), Reason::ConsentRefused);
    assert_eq!(g.scope(), Scope::AuthoredOnly);
    let mine = current("1.2.3.1", RPPS, &[]);
    let theirs = current("1.2.3.2", OTHER_RPPS, &[]);
    assert_eq!(decide_doc(&g, &mine), DocDecision::Show(Reason::DocAuthor));
    assert_eq!(hidden_reason(&g, &theirs), Reason::NotAuthor);
}

#[test]
fn break_the_glass_overrides_refused_consent_and_is_flagged() {
    let g = grant(&professional(RPPS), &btg(), &open(Some(false)));
    assert_eq!(g.reason(), Reason::PermitBreakGlass);
    assert_eq!(g.scope(), Scope::All);
    assert_eq!(g.break_glass(), Some("patient inconscient aux urgences"));
    assert!(visible(&g, &current("1.2.3.2", OTHER_RPPS, &[])));
}

#[test]
fn break_the_glass_is_flagged_even_when_consent_was_given() {
    let g = grant(&professional(RPPS), &btg(), &open(Some(true)));
    assert_eq!(g.reason(), Reason::PermitBreakGlass);
    assert!(g.break_glass().is_some());
}

#[test]
fn break_the_glass_needs_a_reason() {
    for reason in ["", "   "] {
        let purpose = Purpose::BreakTheGlass {
            reason: reason.into(),
        };
        assert_eq!(
            denied(&professional(RPPS), &purpose, INS, &open(None)),
            Reason::BreakGlassReasonMissing
        );
    }
}

#[test]
fn break_the_glass_is_for_professionals_only() {
    for p in [patient(), representative()] {
        assert_eq!(
            denied(&p, &btg(), INS, &open(None)),
            Reason::BreakGlassNotProfessional
        );
    }
}

#[test]
fn break_the_glass_opposed_by_the_patient_is_denied() {
    let s = DmpState {
        break_glass_opposed: true,
        ..open(Some(false))
    };
    assert_eq!(
        denied(&professional(RPPS), &btg(), INS, &s),
        Reason::BreakGlassOpposed
    );
    // A normal access is still decided by consent alone.
    assert_eq!(
        grant(&professional(RPPS), &Purpose::Normal, &s).scope(),
        Scope::AuthoredOnly
    );
}

// --- document level ---

#[test]
fn masque_ps_hides_from_a_non_author_professional() {
    let g = grant(&professional(RPPS), &Purpose::Normal, &open(Some(true)));
    let d = current("1.2.3.2", OTHER_RPPS, &["MASQUE_PS"]);
    assert_eq!(hidden_reason(&g, &d), Reason::Masked);
}

#[test]
fn masque_ps_stays_hidden_under_break_the_glass() {
    let g = grant(&professional(RPPS), &btg(), &open(Some(true)));
    let d = current("1.2.3.2", OTHER_RPPS, &["MASQUE_PS"]);
    assert_eq!(hidden_reason(&g, &d), Reason::Masked);
}

#[test]
fn the_author_sees_their_masked_document() {
    for purpose in [Purpose::Normal, btg()] {
        let g = grant(&professional(RPPS), &purpose, &open(Some(true)));
        let d = current("1.2.3.1", RPPS, &["MASQUE_PS"]);
        assert_eq!(decide_doc(&g, &d), DocDecision::Show(Reason::DocAuthor));
    }
}

#[test]
fn author_matches_bare_rpps_and_idnat_ps() {
    assert!(same_professional("810001234567", RPPS));
    assert!(same_professional(RPPS, "810001234567"));
    assert!(same_professional("0751234567", "751234567"));
    assert!(!same_professional("810001234567", OTHER_RPPS));
    assert!(!same_professional("", ""));
    let g = grant(&professional("810001234567"), &Purpose::Normal, &open(None));
    assert!(visible(&g, &current("1.2.3.1", RPPS, &["MASQUE_PS"])));
}

#[test]
fn masque_ps_does_not_hide_from_the_patient_or_representative() {
    let d = current("1.2.3.1", OTHER_RPPS, &["MASQUE_PS"]);
    for p in [patient(), representative()] {
        assert!(visible(&grant(&p, &Purpose::Normal, &open(None)), &d));
    }
}

#[test]
fn invisible_patient_hides_from_patient_and_representative() {
    let d = current("1.2.3.1", OTHER_RPPS, &["INVISIBLE_PATIENT"]);
    for p in [patient(), representative()] {
        let g = grant(&p, &Purpose::Normal, &open(None));
        assert_eq!(hidden_reason(&g, &d), Reason::InvisiblePatient);
    }
    let g = grant(&professional(RPPS), &Purpose::Normal, &open(None));
    assert!(visible(&g, &d));
}

#[test]
fn invisible_rep_legaux_hides_from_representatives_only() {
    for code in ["INVISIBLE_REP_LEGAUX", "INVISIBLE_REPRESENTANTS_LEGAUX"] {
        let d = current("1.2.3.1", OTHER_RPPS, &[code]);
        let rep = grant(&representative(), &Purpose::Normal, &open(None));
        assert_eq!(hidden_reason(&rep, &d), Reason::InvisibleRepresentatives);
        assert!(visible(
            &grant(&patient(), &Purpose::Normal, &open(None)),
            &d
        ));
        let ps = grant(&professional(RPPS), &Purpose::Normal, &open(None));
        assert!(visible(&ps, &d));
    }
}

#[test]
fn secret_connection_and_other_codes_do_not_hide() {
    let d = current("1.2.3.1", OTHER_RPPS, &["CONNEXION_SECRETE", "DESTDMP"]);
    assert!(d.visibility.secret_connection);
    for p in [patient(), representative(), professional(RPPS)] {
        assert!(visible(&grant(&p, &Purpose::Normal, &open(None)), &d));
    }
}

#[test]
fn a_document_of_another_patient_is_never_visible() {
    let g = grant(&professional(RPPS), &btg(), &open(None));
    let mut d = current("1.2.3.1", RPPS, &[]);
    d.patient_ins = OTHER_INS.into();
    assert_eq!(hidden_reason(&g, &d), Reason::DocOtherPatient);
    assert_eq!(
        visible_version(&g, &d, Statuses::ALL, None),
        DocDecision::Hide(Reason::DocOtherPatient)
    );
}

#[test]
fn doc_view_from_stored_metadata() {
    use dmpflow_schemas::{CdaOrigin, DocumentMeta, Lifecycle, PartyRef, PatientIdentity};
    let meta = DocumentMeta {
        unique_id: "1.2.250.1.1.1".into(),
        set_id: "1.2.250.1.1".into(),
        version: 1,
        lifecycle: Lifecycle::Initial,
        target_unique_id: None,
        type_code: "11502-2".into(),
        class_code: "10".into(),
        format_code: "urn:x".into(),
        title: "CR".into(),
        patient: PatientIdentity {
            ins: INS.into(),
            ..Default::default()
        },
        author: PartyRef {
            person_id: Some("810001234567".into()),
            organisation_id: None,
        },
        creation_time: "2024-01-01T00:00:00".into(),
        service_start: None,
        service_stop: None,
        confidentiality: "N".into(),
        visibility: vec!["MASQUE_PS".into(), "INVISIBLE_PATIENT".into()],
        practice_setting: None,
        ignored_attachments: 0,
        origin: CdaOrigin::Generated,
        source: Default::default(),
    };
    let v = DocView::from_meta(&meta, DocStatus::Superseded);
    assert_eq!(v.id, "1.2.250.1.1.1");
    assert_eq!(v.set_id, "1.2.250.1.1");
    assert_eq!(v.patient_ins, INS);
    assert_eq!(v.authors, vec!["810001234567".to_string()]);
    assert!(v.visibility.masked_ps && v.visibility.invisible_patient);
    assert!(!v.visibility.invisible_representatives);
    assert_eq!(v.status, DocStatus::Superseded);
}
