//! Tests of the routing decision: one per quarantine reason, the order of the checks,
//! merges (one hop, two hops, cycles, too deep, missing target) and identity updates.

use super::*;
use dmpflow_schemas::{
    CdaOrigin, Lifecycle, PartyRef, PatientChange, PatientIdentity, PatientUpdate, SourceRef,
};

const INS_A: &str = "279035121518989";
const INS_B: &str = "277076322082910";
const INS_C: &str = "274075176079430";
const INS_D: &str = "253072B07300470";

const PROD: RouteConfig = RouteConfig {
    accept_test_oids: false,
};

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn record(ins: &str) -> PatientRecord {
    PatientRecord {
        ins: ins.into(),
        ins_oid: OID_NIR.into(),
        birth_name: "PAT-TROIS".into(),
        first_names: names(&["DOMINIQUE", "ANNE"]),
        birth_date: "1979-03-28".into(),
        sex: "F".into(),
        birth_place: Some("63220".into()),
        identity_status: "QUAL".into(),
        feeding_opposed: false,
        merged_into: None,
        ..Default::default()
    }
}

fn merged(ins: &str, into: &str) -> PatientRecord {
    PatientRecord {
        merged_into: Some(into.into()),
        ..record(ins)
    }
}

fn meta(ins: &str) -> DocumentMeta {
    DocumentMeta {
        unique_id: "1.2.250.1.999.1.1".into(),
        set_id: "1.2.250.1.999.1.2".into(),
        version: 1,
        lifecycle: Lifecycle::Initial,
        target_unique_id: None,
        type_code: "11502-2".into(),
        class_code: "10".into(),
        format_code: "urn:ihe:lab:xd-lab:2008".into(),
        title: "CR de biologie".into(),
        patient: PatientIdentity {
            ins: ins.into(),
            ins_oid: OID_NIR.into(),
            ipp: None,
            ipp_authority: None,
            birth_name: "Pat-Trois".into(),
            first_names: names(&["Dominique"]),
            birth_date: "1979-03-28".into(),
            sex: "F".into(),
            birth_place: None,
            identity_status: names(&["VALI"]),
            other_ins: Vec::new(),
        },
        author: PartyRef::default(),
        creation_time: "20240306111154+0100".into(),
        service_start: None,
        service_stop: None,
        confidentiality: "N".into(),
        visibility: vec![],
        practice_setting: None,
        ignored_attachments: 0,
        origin: CdaOrigin::Generated,
        source: SourceRef::default(),
    }
}

fn routed(ins: &str) -> Decision {
    Decision::Route {
        ins: ins.into(),
        ins_oid: OID_NIR.into(),
    }
}

#[track_caller]
fn assert_quarantine(d: Decision, want: Reason) -> String {
    match d {
        Decision::Quarantine { reason, detail } => {
            assert_eq!(reason, want, "detail: {detail}");
            // Details go to headers and logs: no INS, no names.
            for secret in [INS_A, INS_B, INS_C, INS_D, "TROIS", "DOMINIQUE", "1979"] {
                assert!(
                    !detail.contains(secret),
                    "detail leaks patient data: {detail}"
                );
            }
            detail
        }
        other => panic!("expected quarantine {want}, got {other:?}"),
    }
}

#[test]
fn qualified_matching_patient_is_routed() {
    assert_eq!(
        route_document(&meta(INS_A), &[record(INS_A)], &PROD),
        routed(INS_A)
    );
}

#[test]
fn received_cda_qual_status_is_accepted() {
    let mut m = meta(INS_A);
    m.patient.identity_status = names(&["QUAL"]);
    assert_eq!(route_document(&m, &[record(INS_A)], &PROD), routed(INS_A));
    // VALI among several PID-32 repetitions.
    m.patient.identity_status = names(&["VALI", "IDVER"]);
    assert_eq!(route_document(&m, &[record(INS_A)], &PROD), routed(INS_A));
}

#[test]
fn registry_vali_is_accepted() {
    let mut r = record(INS_A);
    r.identity_status = "VALI".into();
    assert_eq!(route_document(&meta(INS_A), &[r], &PROD), routed(INS_A));
}

#[test]
fn invalid_key_is_quarantined() {
    let d = assert_quarantine(
        route_document(&meta("279035121518988"), &[], &PROD),
        Reason::InsKeyInvalid,
    );
    assert_eq!(d, "document INS: key mismatch");
    assert_quarantine(
        route_document(&meta("27903512151898"), &[], &PROD),
        Reason::InsKeyInvalid,
    );
}

#[test]
fn test_oid_is_quarantined_unless_configured() {
    let mut m = meta(INS_A);
    m.patient.ins_oid = OID_NIR_TEST.into();
    let mut r = record(INS_A);
    r.ins_oid = OID_NIR_TEST.into();
    assert_quarantine(
        route_document(&m, std::slice::from_ref(&r), &PROD),
        Reason::InsOidRejected,
    );
    let test = RouteConfig {
        accept_test_oids: true,
    };
    assert_eq!(
        route_document(&m, &[r], &test),
        Decision::Route {
            ins: INS_A.into(),
            ins_oid: OID_NIR_TEST.into()
        }
    );
}

#[test]
fn unknown_ins_is_quarantined() {
    assert_quarantine(route_document(&meta(INS_A), &[], &PROD), Reason::InsUnknown);
    // A record for another matricule, or the same matricule under another OID.
    assert_quarantine(
        route_document(&meta(INS_A), &[record(INS_B)], &PROD),
        Reason::InsUnknown,
    );
    let mut r = record(INS_A);
    r.ins_oid = OID_NIA.into();
    assert_quarantine(
        route_document(&meta(INS_A), &[r], &PROD),
        Reason::InsUnknown,
    );
}

#[test]
fn unqualified_document_is_quarantined() {
    for status in [
        vec![],
        names(&["PROV"]),
        names(&["PROV", "FICT"]),
        names(&["VIDE"]),
    ] {
        let mut m = meta(INS_A);
        m.patient.identity_status = status;
        assert_quarantine(
            route_document(&m, &[record(INS_A)], &PROD),
            Reason::IdentityNotQualified,
        );
    }
}

#[test]
fn unqualified_registry_record_is_quarantined() {
    for status in ["PROV", "RECUP", ""] {
        let mut r = record(INS_A);
        r.identity_status = status.into();
        assert_quarantine(
            route_document(&meta(INS_A), &[r], &PROD),
            Reason::IdentityNotQualified,
        );
    }
}

#[test]
fn document_status_is_checked_before_the_registry_lookup() {
    let mut m = meta(INS_A);
    m.patient.identity_status = names(&["PROV"]);
    assert_quarantine(route_document(&m, &[], &PROD), Reason::IdentityNotQualified);
}

#[test]
fn trait_mismatch_is_quarantined_and_names_the_traits() {
    let mut m = meta(INS_A);
    m.patient.birth_date = "1979-03-29".into();
    m.patient.first_names = names(&["Anne"]);
    let d = assert_quarantine(
        route_document(&m, &[record(INS_A)], &PROD),
        Reason::IdentityTraitsMismatch,
    );
    assert_eq!(d, "differs from registry: first_names, birth_date");
}

#[test]
fn normalised_traits_match() {
    let mut m = meta(INS_A);
    m.patient.birth_name = "  pat trois ".into();
    m.patient.first_names = names(&["dominique anne"]);
    m.patient.birth_place = Some("63220".into());
    assert_eq!(route_document(&m, &[record(INS_A)], &PROD), routed(INS_A));
}

#[test]
fn traits_are_checked_against_the_documents_record_not_the_merge_target() {
    let mut target = record(INS_B);
    target.birth_name = "AUTRE".into();
    assert_eq!(
        route_document(&meta(INS_A), &[merged(INS_A, INS_B), target], &PROD),
        routed(INS_B)
    );
}

#[test]
fn opposition_is_quarantined() {
    let mut r = record(INS_A);
    r.feeding_opposed = true;
    assert_quarantine(
        route_document(&meta(INS_A), &[r], &PROD),
        Reason::PatientOpposed,
    );
}

// Issue #12 item 3: only a stated IO holds documents; INO and "not collected" (NA, or no
// ZFA ever) route, and the consultation consent has no routing effect.
#[test]
fn only_a_stated_io_holds_documents() {
    for (label, opposition, consent, held) in [
        ("IO", Some(true), Some(true), true),
        ("INO", Some(false), Some(false), false),
        ("not collected", None, None, false),
        ("INO, consent refused", Some(false), Some(false), false),
    ] {
        let mut r = record(INS_A);
        r.feeding_opposed = opposition.unwrap_or(false);
        r.feeding_opposed_stated = opposition.is_some();
        r.consultation_consent = consent;
        assert_eq!(r.feeding_opposition(), opposition, "{label}");
        let d = route_document(&meta(INS_A), &[r], &PROD);
        if held {
            assert_quarantine(d, Reason::PatientOpposed);
        } else {
            assert_eq!(d, routed(INS_A), "{label}");
        }
    }
}

#[test]
fn opposition_of_the_final_record_counts() {
    let mut target = record(INS_B);
    target.feeding_opposed = true;
    assert_quarantine(
        route_document(&meta(INS_A), &[merged(INS_A, INS_B), target], &PROD),
        Reason::PatientOpposed,
    );
    // The old record's flag is history once merged.
    let mut old = merged(INS_A, INS_B);
    old.feeding_opposed = true;
    assert_eq!(
        route_document(&meta(INS_A), &[old, record(INS_B)], &PROD),
        routed(INS_B)
    );
}

#[test]
fn traits_are_checked_before_opposition() {
    let mut r = record(INS_A);
    r.feeding_opposed = true;
    r.sex = "M".into();
    assert_quarantine(
        route_document(&meta(INS_A), &[r], &PROD),
        Reason::IdentityTraitsMismatch,
    );
}

#[test]
fn one_hop_merge_routes_to_the_target() {
    let chain = [merged(INS_A, INS_B), record(INS_B)];
    assert_eq!(next_lookup(&chain[0]), Some(INS_B));
    assert_eq!(next_lookup(&chain[1]), None);
    assert_eq!(route_document(&meta(INS_A), &chain, &PROD), routed(INS_B));
}

#[test]
fn two_hop_merge_routes_to_the_last_record() {
    let chain = [merged(INS_A, INS_B), merged(INS_B, INS_C), record(INS_C)];
    assert_eq!(route_document(&meta(INS_A), &chain, &PROD), routed(INS_C));
}

#[test]
fn merge_cycle_is_quarantined() {
    // A -> B -> A, as the runtime hands it over when it stops at the repeat.
    let chain = [merged(INS_A, INS_B), merged(INS_B, INS_A)];
    let d = assert_quarantine(
        route_document(&meta(INS_A), &chain, &PROD),
        Reason::IdentityMergeInvalid,
    );
    assert!(d.contains("cycle"), "{d}");
    // The same cycle with the repeated record included.
    let chain = [
        merged(INS_A, INS_B),
        merged(INS_B, INS_A),
        merged(INS_A, INS_B),
    ];
    assert_quarantine(
        route_document(&meta(INS_A), &chain, &PROD),
        Reason::IdentityMergeInvalid,
    );
    // A record merged into itself.
    assert_quarantine(
        route_document(&meta(INS_A), &[merged(INS_A, INS_A)], &PROD),
        Reason::IdentityMergeInvalid,
    );
}

/// A syntactically valid INS for hop `i`, so deep chains have distinct records.
fn ins_n(i: usize) -> String {
    let body = format!("1790375{i:06}");
    format!("{body}{:02}", compute_key(&body).unwrap())
}

#[test]
fn too_deep_chain_is_quarantined() {
    let first = ins_n(0);
    let mut chain: Vec<PatientRecord> = (0..MAX_CHAIN_LEN)
        .map(|i| merged(&ins_n(i), &ins_n(i + 1)))
        .collect();
    let d = assert_quarantine(
        route_document(&meta(&first), &chain, &PROD),
        Reason::IdentityMergeInvalid,
    );
    assert!(d.contains("longer than"), "{d}");
    // Exactly MAX_MERGE_HOPS hops, ending on a current record, is fine.
    chain.truncate(MAX_CHAIN_LEN - 1);
    chain.push(record(&ins_n(MAX_CHAIN_LEN - 1)));
    assert_eq!(
        route_document(&meta(&first), &chain, &PROD),
        routed(&ins_n(MAX_CHAIN_LEN - 1))
    );
    // One more, even well-formed, is not.
    chain.pop();
    chain.push(merged(&ins_n(MAX_CHAIN_LEN - 1), &ins_n(MAX_CHAIN_LEN)));
    chain.push(record(&ins_n(MAX_CHAIN_LEN)));
    assert_quarantine(
        route_document(&meta(&first), &chain, &PROD),
        Reason::IdentityMergeInvalid,
    );
}

#[test]
fn missing_merge_target_is_quarantined() {
    assert_quarantine(
        route_document(&meta(INS_A), &[merged(INS_A, INS_B)], &PROD),
        Reason::IdentityMergeUnresolved,
    );
}

#[test]
fn broken_chain_is_quarantined() {
    // chain[1] is not the record chain[0] points to.
    let chain = [merged(INS_A, INS_B), record(INS_C)];
    assert_quarantine(
        route_document(&meta(INS_A), &chain, &PROD),
        Reason::IdentityMergeInvalid,
    );
    // A current record followed by another one.
    let chain = [record(INS_A), record(INS_B)];
    assert_quarantine(
        route_document(&meta(INS_A), &chain, &PROD),
        Reason::IdentityMergeInvalid,
    );
}

#[test]
fn merge_target_must_be_qualified_and_acceptable() {
    let mut target = record(INS_B);
    target.identity_status = "PROV".into();
    assert_quarantine(
        route_document(&meta(INS_A), &[merged(INS_A, INS_B), target], &PROD),
        Reason::IdentityNotQualified,
    );
    let mut target = record(INS_B);
    target.ins_oid = OID_NIR_DEMO.into();
    assert_quarantine(
        route_document(&meta(INS_A), &[merged(INS_A, INS_B), target], &PROD),
        Reason::InsOidRejected,
    );
}

#[test]
fn empty_merged_into_means_current() {
    let mut r = record(INS_A);
    r.merged_into = Some(String::new());
    assert_eq!(next_lookup(&r), None);
    assert_eq!(route_document(&meta(INS_A), &[r], &PROD), routed(INS_A));
}

fn update(change: PatientChange, ins: &str) -> PatientUpdate {
    PatientUpdate {
        change,
        patient: meta(ins).patient,
        feeding_opposed: None,
        dmp_status: None,
        consultation_consent: None,
        times: Default::default(),
        event: String::new(),
        source: SourceRef::default(),
    }
}

#[test]
fn patient_update_checks_every_identifier() {
    assert_eq!(
        check_patient_update(&update(PatientChange::Upsert, INS_A), &PROD, None, None),
        Ok(())
    );
    let (r, d) = check_patient_update(
        &update(PatientChange::Upsert, "279035121518980"),
        &PROD,
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(
        (r, d.as_str()),
        (Reason::InsKeyInvalid, "patient INS: key mismatch")
    );

    let merge = |from: &str, oid: &str| PatientChange::Merge {
        from_ins: from.into(),
        from_oid: oid.into(),
    };
    assert_eq!(
        check_patient_update(&update(merge(INS_B, OID_NIR), INS_A), &PROD, None, None),
        Ok(())
    );
    let (r, d) = check_patient_update(
        &update(merge("27707632208291", OID_NIR), INS_A),
        &PROD,
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(r, Reason::InsKeyInvalid);
    assert!(d.starts_with("merge source INS: length 14"), "{d}");
    let (r, _) = check_patient_update(
        &update(merge(INS_B, OID_NIR_TEST), INS_A),
        &PROD,
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(r, Reason::InsOidRejected);
    let (r, _) =
        check_patient_update(&update(merge(INS_A, OID_NIR), INS_A), &PROD, None, None).unwrap_err();
    assert_eq!(r, Reason::IdentityMergeInvalid);

    let change = |old: &str, oid: &str| PatientChange::IdentifierChange {
        old_ins: old.into(),
        old_oid: oid.into(),
    };
    // A NIA replaced by the NIR: same check rules for both.
    assert_eq!(
        check_patient_update(&update(change(INS_D, OID_NIA), INS_A), &PROD, None, None),
        Ok(())
    );
    let (r, d) = check_patient_update(
        &update(change("253072C07300470", OID_NIA), INS_A),
        &PROD,
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(r, Reason::InsKeyInvalid);
    assert!(d.starts_with("previous INS: "), "{d}");
    let (r, _) = check_patient_update(&update(change(INS_A, OID_NIR), INS_A), &PROD, None, None)
        .unwrap_err();
    assert_eq!(r, Reason::IdentityMergeInvalid);
    let (r, _) = check_patient_update(&update(change(INS_B, "1.2.3"), INS_A), &PROD, None, None)
        .unwrap_err();
    assert_eq!(r, Reason::InsOidRejected);
}

#[test]
fn a_document_for_a_merged_stub_follows_the_survivor_and_its_traits() {
    // A40 named an INS the registry never knew: the store keeps a stub (no traits, PROV)
    // pointing to the survivor. The document is checked against the survivor.
    let mut stub = merged(INS_A, INS_B);
    stub.birth_name.clear();
    stub.first_names.clear();
    stub.birth_date.clear();
    stub.sex = "U".into();
    stub.identity_status = "PROV".into();
    assert_eq!(
        route_document(&meta(INS_A), &[stub.clone(), record(INS_B)], &PROD),
        routed(INS_B)
    );
    let mut other = record(INS_B);
    other.birth_name = "AUTRE".into();
    assert_quarantine(
        route_document(&meta(INS_A), &[stub, other], &PROD),
        Reason::IdentityTraitsMismatch,
    );
}

#[track_caller]
fn assert_refused(r: Result<(), (Reason, String)>, want: Reason) -> String {
    match r {
        Err((reason, detail)) => assert_quarantine(Decision::Quarantine { reason, detail }, want),
        Ok(()) => panic!("expected {want}, got Ok"),
    }
}

// Issue #16 item 3: several different INS in PID-3 are never resolved by taking the first.
#[test]
fn several_ins_are_ambiguous_for_documents_and_updates() {
    let mut m = meta(INS_A);
    m.patient.other_ins = vec![INS_B.into()];
    let d = assert_quarantine(
        route_document(&m, &[record(INS_A)], &PROD),
        Reason::IdentityAmbiguous,
    );
    assert_eq!(d, "document states 2 different INS for the patient");
    // Checked first: even a malformed primary INS reports the ambiguity.
    m.patient.ins = "1".into();
    assert_quarantine(route_document(&m, &[], &PROD), Reason::IdentityAmbiguous);

    let mut u = update(PatientChange::Upsert, INS_A);
    u.patient.other_ins = vec![INS_B.into(), INS_C.into()];
    let d = assert_refused(
        check_patient_update(&u, &PROD, None, None),
        Reason::IdentityAmbiguous,
    );
    assert_eq!(d, "message states 3 different INS for the patient");
}

// Issue #16 item 3: FICTI, DOUTE or PROV next to VALI (or the QUAL the embedded-CDA reader
// puts first) is not a qualified identity; the registry's QUAL does not make it one.
#[test]
fn ficti_doute_prov_anywhere_rule_out_qualification() {
    for bad in ["FICTI", "DOUTE", "PROV", "FICT", "DOUT"] {
        for statuses in [
            names(&["VALI", bad]),
            names(&[bad, "VALI"]),
            names(&["QUAL", "VALI", bad]),
            names(&["QUAL", bad]),
        ] {
            let mut m = meta(INS_A);
            m.patient.identity_status = statuses.clone();
            let d = assert_quarantine(
                route_document(&m, &[record(INS_A)], &PROD),
                Reason::IdentityNotQualified,
            );
            assert!(d.contains(bad), "{statuses:?}: {d}");
        }
    }
    // A registry that learnt the identity is fictitious refuses documents stating VALI.
    let mut r = record(INS_A);
    r.identity_status = "FICTI".into();
    assert_quarantine(
        route_document(&meta(INS_A), &[r], &PROD),
        Reason::IdentityNotQualified,
    );
}

fn change(old: &str, new: &str) -> PatientUpdate {
    update(
        PatientChange::IdentifierChange {
            old_ins: old.into(),
            old_oid: OID_NIR.into(),
        },
        new,
    )
}

fn merge_into(from: &str, into: &str) -> PatientUpdate {
    update(
        PatientChange::Merge {
            from_ins: from.into(),
            from_oid: OID_NIR.into(),
        },
        into,
    )
}

/// Another person's registry entry: other birth name and sex.
fn someone_else(ins: &str) -> PatientRecord {
    PatientRecord {
        birth_name: "AUTRE".into(),
        sex: "M".into(),
        ..record(ins)
    }
}

fn stub(ins: &str, into: Option<&str>) -> PatientRecord {
    PatientRecord {
        ins: ins.into(),
        ins_oid: OID_NIR.into(),
        sex: "U".into(),
        identity_status: "PROV".into(),
        merged_into: into.map(str::to_string),
        ..Default::default()
    }
}

// Issue #16 item 1: an A47 or A40 onto an INS another registry entry holds is a collision.
#[test]
fn identifier_change_or_merge_onto_another_patient_is_a_collision() {
    let other = someone_else(INS_A);
    for u in [change(INS_D, INS_A), merge_into(INS_D, INS_A)] {
        let d = assert_refused(
            check_patient_update(&u, &PROD, Some(&other), None),
            Reason::IdentityCollision,
        );
        assert!(d.contains("onto an INS"), "{d}");
        assert!(d.ends_with("(differs: birth_name, sex)"), "{d}");
        for secret in ["AUTRE", "PAT", "1979", "63220"] {
            assert!(!d.contains(secret), "{d}");
        }
    }
}

#[test]
fn identifier_change_retiring_another_patients_ins_is_a_collision() {
    // The A47 claims INS_D was this patient's, but the registry holds someone else there:
    // following it would pour that person's documents into this patient's record.
    let d = assert_refused(
        check_patient_update(
            &change(INS_D, INS_A),
            &PROD,
            None,
            Some(&someone_else(INS_D)),
        ),
        Reason::IdentityCollision,
    );
    assert!(d.contains("retires an INS"), "{d}");
    assert_refused(
        check_patient_update(
            &merge_into(INS_D, INS_A),
            &PROD,
            Some(&record(INS_A)),
            Some(&someone_else(INS_D)),
        ),
        Reason::IdentityCollision,
    );
}

#[test]
fn same_person_stubs_and_replays_are_not_collisions() {
    let u = change(INS_D, INS_A);
    // Nothing known yet on either side.
    assert_eq!(check_patient_update(&u, &PROD, None, None), Ok(()));
    // The registry already knows the new INS for this very person (A28 came first).
    assert_eq!(
        check_patient_update(&u, &PROD, Some(&record(INS_A)), Some(&record(INS_D))),
        Ok(())
    );
    // The same A47 again, after it was applied: the old entry points to the new one.
    assert_eq!(
        check_patient_update(&u, &PROD, Some(&record(INS_A)), Some(&merged(INS_D, INS_A))),
        Ok(())
    );
    // Stubs a merge made hold no identity to take over.
    assert_eq!(
        check_patient_update(
            &u,
            &PROD,
            Some(&stub(INS_A, None)),
            Some(&stub(INS_D, Some(INS_B)))
        ),
        Ok(())
    );
    // An upsert updates its own entry: no collision rule there.
    assert_eq!(
        check_patient_update(
            &update(PatientChange::Upsert, INS_A),
            &PROD,
            Some(&someone_else(INS_A)),
            None
        ),
        Ok(())
    );
}

#[test]
fn a_merge_without_traits_cannot_prove_it_joins_one_person() {
    let mut u = change(INS_D, INS_A);
    u.patient.birth_name.clear();
    u.patient.first_names.clear();
    u.patient.birth_date.clear();
    let d = assert_refused(
        check_patient_update(&u, &PROD, Some(&record(INS_A)), None),
        Reason::IdentityCollision,
    );
    assert!(d.contains("birth_name, first_names, birth_date"), "{d}");
}
