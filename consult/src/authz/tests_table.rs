//! Old versions, the search helper, and a table over every principal kind × purpose ×
//! consent × visibility flags × authorship × version status, asserting the invariants the
//! DMP promises whatever the combination.

use super::tests::{
    INS, OTHER_RPPS, RPPS, btg, doc, grant, open, patient, professional, representative,
};
use super::*;

fn version(id: &str, set: &str, codes: &[&str], status: DocStatus) -> DocView {
    DocView {
        set_id: set.into(),
        ..doc(id, OTHER_RPPS, codes, status)
    }
}

// --- old versions ---

#[test]
fn superseded_version_hidden_unless_asked_by_status() {
    let g = grant(&patient(), &Purpose::Normal, &open(None));
    let old = version("1.1", "s1", &[], DocStatus::Superseded);
    let head = version("1.2", "s1", &[], DocStatus::Current);
    assert!(!visible(&g, &old));
    assert_eq!(
        visible_version(&g, &old, Statuses::CURRENT, Some(&head)),
        DocDecision::Hide(Reason::StatusNotAsked)
    );
    let asked = Statuses::of(&[DocStatus::Current, DocStatus::Superseded]);
    assert!(visible_version(&g, &old, asked, Some(&head)).is_shown());
}

#[test]
fn superseded_version_hidden_when_the_current_version_is_hidden() {
    // The patient masked the new version: reading the previous one must not undo it.
    let g = grant(&professional(RPPS), &Purpose::Normal, &open(None));
    let old = version("1.1", "s1", &[], DocStatus::Superseded);
    let head = version("1.2", "s1", &["MASQUE_PS"], DocStatus::Current);
    assert_eq!(
        visible_version(&g, &old, Statuses::ALL, Some(&head)),
        DocDecision::Hide(Reason::SetHidden)
    );
}

#[test]
fn old_version_keeps_its_own_flags() {
    let g = grant(&patient(), &Purpose::Normal, &open(None));
    let old = version("1.1", "s1", &["INVISIBLE_PATIENT"], DocStatus::Superseded);
    let head = version("1.2", "s1", &[], DocStatus::Current);
    assert_eq!(
        visible_version(&g, &old, Statuses::ALL, Some(&head)),
        DocDecision::Hide(Reason::InvisiblePatient)
    );
}

#[test]
fn old_version_without_a_consistent_head_is_hidden() {
    let g = grant(&patient(), &Purpose::Normal, &open(None));
    let old = version("1.1", "s1", &[], DocStatus::Superseded);
    let other_set = version("2.1", "s2", &[], DocStatus::Current);
    let superseded_head = version("1.0", "s1", &[], DocStatus::Superseded);
    for head in [None, Some(&other_set), Some(&superseded_head)] {
        assert_eq!(
            visible_version(&g, &old, Statuses::ALL, head),
            DocDecision::Hide(Reason::SetHidden)
        );
    }
}

#[test]
fn deleted_version_shown_only_when_asked_and_visible() {
    let g = grant(&representative(), &Purpose::Normal, &open(None));
    let deleted = version("1.2", "s1", &[], DocStatus::Deleted);
    assert!(!visible(&g, &deleted));
    assert_eq!(
        visible_version(&g, &deleted, Statuses::CURRENT, Some(&deleted)),
        DocDecision::Hide(Reason::StatusNotAsked)
    );
    let asked = Statuses::of(&[DocStatus::Deleted]);
    assert!(visible_version(&g, &deleted, asked, Some(&deleted)).is_shown());
    let hidden = version("1.3", "s3", &["INVISIBLE_REP_LEGAUX"], DocStatus::Deleted);
    assert!(!visible_version(&g, &hidden, asked, Some(&hidden)).is_shown());
}

#[test]
fn superseded_version_of_a_deleted_set_follows_the_deleted_head() {
    let g = grant(&patient(), &Purpose::Normal, &open(None));
    let old = version("1.1", "s1", &[], DocStatus::Superseded);
    let deleted = version("1.2", "s1", &[], DocStatus::Deleted);
    let asked = Statuses::of(&[DocStatus::Superseded]);
    assert!(visible_version(&g, &old, asked, Some(&deleted)).is_shown());
    let hidden_head = version("1.2", "s1", &["INVISIBLE_PATIENT"], DocStatus::Deleted);
    assert!(!visible_version(&g, &old, asked, Some(&hidden_head)).is_shown());
}

// --- search ---

#[test]
fn hidden_documents_do_not_count() {
    let g = grant(&professional(RPPS), &Purpose::Normal, &open(None));
    let docs = vec![
        doc("a", OTHER_RPPS, &[], DocStatus::Current),
        doc("b", OTHER_RPPS, &["MASQUE_PS"], DocStatus::Current),
        doc("c", RPPS, &["MASQUE_PS"], DocStatus::Current),
        doc("d", OTHER_RPPS, &[], DocStatus::Superseded),
    ];
    let v = filter(&g, &docs, Statuses::CURRENT, &[]);
    assert_eq!(v.ids().collect::<Vec<_>>(), ["a", "c"]);
    assert_eq!(v.total(), 2);
    assert_eq!(v.page(1, 10).len(), 1);
    assert!(v.page(5, 10).is_empty());
}

#[test]
fn search_refused_consent_counts_only_authored_documents() {
    let g = grant(&professional(RPPS), &Purpose::Normal, &open(Some(false)));
    let docs: Vec<_> = (0..5)
        .map(|i| {
            doc(
                &format!("d{i}"),
                if i == 3 { RPPS } else { OTHER_RPPS },
                &[],
                DocStatus::Current,
            )
        })
        .collect();
    let v = filter(&g, &docs, Statuses::CURRENT, &[]);
    assert_eq!(v.ids().collect::<Vec<_>>(), ["d3"]);
    assert_eq!(v.total(), 1);
}

#[test]
fn search_finds_heads_in_the_results_or_beside_them() {
    let g = grant(&professional(RPPS), &Purpose::Normal, &open(None));
    let asked = Statuses::of(&[DocStatus::Superseded]);
    let old = version("1.1", "s1", &[], DocStatus::Superseded);
    let head = version("1.2", "s1", &[], DocStatus::Current);
    // The head is not in the result set (the search asked for superseded only).
    assert_eq!(
        filter(&g, std::slice::from_ref(&old), asked, &[]).total(),
        0
    );
    let heads = [head.clone()];
    assert_eq!(
        filter(&g, std::slice::from_ref(&old), asked, &heads).total(),
        1
    );
    // Masked head: the old version is hidden too.
    let masked = [version("1.2", "s1", &["MASQUE_PS"], DocStatus::Current)];
    assert_eq!(
        filter(&g, std::slice::from_ref(&old), asked, &masked).total(),
        0
    );
    // Two heads for one set: inconsistent, nothing old is shown.
    let two = [head, version("1.3", "s1", &[], DocStatus::Deleted)];
    assert_eq!(
        filter(&g, std::slice::from_ref(&old), asked, &two).total(),
        0
    );
    // In the result set itself.
    let both = [old, version("1.2", "s1", &[], DocStatus::Current)];
    assert_eq!(filter(&g, &both, Statuses::ALL, &[]).total(), 2);
}

// --- the table ---

const FLAG_SETS: &[&[&str]] = &[
    &[],
    &["MASQUE_PS"],
    &["INVISIBLE_PATIENT"],
    &["INVISIBLE_REP_LEGAUX"],
    &["CONNEXION_SECRETE"],
    &["MASQUE_PS", "INVISIBLE_PATIENT"],
    &["MASQUE_PS", "INVISIBLE_REP_LEGAUX"],
    &["INVISIBLE_PATIENT", "INVISIBLE_REP_LEGAUX"],
    &[
        "MASQUE_PS",
        "INVISIBLE_PATIENT",
        "INVISIBLE_REP_LEGAUX",
        "CONNEXION_SECRETE",
    ],
];
const STATUSES: [DocStatus; 3] = [
    DocStatus::Current,
    DocStatus::Superseded,
    DocStatus::Deleted,
];

#[test]
fn invariants_over_every_combination() {
    let principals = [patient(), representative(), professional(RPPS)];
    let purposes = [Purpose::Normal, btg()];
    let mut checked = 0;
    for p in &principals {
        for purpose in &purposes {
            for consent in [None, Some(true), Some(false)] {
                let Access::Granted(g) = can_access_dmp(p, purpose, INS, &open(consent)) else {
                    // Only break-the-glass by a non-professional is refused on an open DMP.
                    assert!(matches!(purpose, Purpose::BreakTheGlass { .. }));
                    assert!(!matches!(p, Principal::Professional { .. }));
                    continue;
                };
                for flags in FLAG_SETS {
                    for author in [RPPS, OTHER_RPPS] {
                        for status in STATUSES {
                            for asked in [Statuses::CURRENT, Statuses::ALL] {
                                let d = doc("x", author, flags, status);
                                let head = doc("x", author, flags, DocStatus::Current);
                                let head = if status == DocStatus::Superseded {
                                    Some(&head)
                                } else {
                                    Some(&d)
                                };
                                let shown = visible_version(&g, &d, asked, head).is_shown();
                                let only_current = visible(&g, &d);
                                let has = |c: &str| flags.contains(&c);
                                let is_author = author == RPPS;
                                let why = format!(
                                    "{p:?} {purpose:?} {consent:?} {flags:?} author={is_author} {status:?}"
                                );
                                checked += 1;
                                // Never a version whose status was not asked for.
                                if !asked.contains(status) {
                                    assert!(!shown, "{why}");
                                }
                                // `visible` shows current versions only.
                                if status != DocStatus::Current {
                                    assert!(!only_current, "{why}");
                                }
                                match p {
                                    Principal::Patient { .. } => {
                                        assert!(!(shown && has("INVISIBLE_PATIENT")), "{why}");
                                    }
                                    Principal::Representative { .. } => {
                                        assert!(!(shown && has("INVISIBLE_PATIENT")), "{why}");
                                        assert!(!(shown && has("INVISIBLE_REP_LEGAUX")), "{why}");
                                    }
                                    Principal::Professional { .. } => {
                                        // A non-author never sees MASQUE_PS, emergency or not.
                                        if !is_author {
                                            assert!(!(shown && has("MASQUE_PS")), "{why}");
                                        }
                                        // Refused consent without break-the-glass: own documents only.
                                        if consent == Some(false)
                                            && matches!(purpose, Purpose::Normal)
                                        {
                                            assert!(is_author || !shown, "{why}");
                                        }
                                        // The author sees every asked version of their document.
                                        if is_author && asked.contains(status) {
                                            assert!(shown, "{why}");
                                        }
                                    }
                                }
                                // Flags that do not concern this principal never hide.
                                let concerns = match p {
                                    Principal::Patient { .. } => has("INVISIBLE_PATIENT"),
                                    Principal::Representative { .. } => {
                                        has("INVISIBLE_PATIENT") || has("INVISIBLE_REP_LEGAUX")
                                    }
                                    Principal::Professional { .. } => {
                                        (has("MASQUE_PS") && !is_author)
                                            || (consent == Some(false)
                                                && matches!(purpose, Purpose::Normal)
                                                && !is_author)
                                    }
                                };
                                if asked.contains(status) && !concerns {
                                    assert!(shown, "{why}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}
