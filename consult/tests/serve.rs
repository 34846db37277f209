//! The FHIR server end to end, on SQLite and on a real PostgreSQL: the demo patient
//! registry, hand-made documents, the server on 127.0.0.1:0 in this process, dev tokens of
//! each role, requests over plain HTTP/1.1. Each scenario checks one family of access rules
//! as a client sees them (denials included) and that every call left exactly one trace
//! row; one more test runs every scenario and validates every resource the server answered
//! against FHIR R4 (HAPI's validator).

mod support;

use base64::Engine;
use dmpflow_schemas::Lifecycle;
use support::*;

// ------------------------------------------------------------------ scenarios

/// Search, read and Binary by each role; masking; break-the-glass; Observations; the
/// patient's AuditEvents; one trace per call.
async fn consultation_end_to_end(f: &Fixture, keep: &mut Bodies) {
    f.put(&[
        Doc::new("1.2.250.1.9.1", INS_1, "20260301101500+0100", 1),
        Doc::new("1.2.250.1.9.2", INS_1, "20260302101500+0100", 2).masked(&["MASQUE_PS"]),
        Doc::new("1.2.250.1.9.3", INS_1, "20260303101500+0100", 3),
        Doc::new("1.2.250.1.9.4", INS_2, "20260304101500+0100", 4),
    ])
    .await;
    // Traces about INS_1's DMP, and traces that name no patient.
    let mut mine = 0;
    let mut unattributed = 0;

    // No token, a bad token: 401, OperationOutcome, traced as anonymous (no patient).
    let a = f.get(&docs_query(INS_1), None, &[]).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["resourceType"], "OperationOutcome");
    assert_eq!(a.header("www-authenticate").as_deref(), Some("Bearer"));
    keep.push(("unauthorized".into(), a.json()));
    assert_eq!(
        f.get(&docs_query(INS_1), Some("x.y.z"), &[]).await.status,
        401
    );
    unattributed += 2;

    // The patient sees all their documents, newest first (the masked one included).
    let tp = f.token(&patient(INS_1));
    let b = f.bundle(&docs_query(INS_1), &tp).await;
    assert_eq!(b["total"], 3);
    assert_eq!(ids(&b), ["1.2.250.1.9.3", "1.2.250.1.9.2", "1.2.250.1.9.1"]);
    mine += 1;
    keep.push(("patient-search".into(), b));

    // Another patient: 403, traced as a denial.
    let a = f
        .get(&docs_query(INS_1), Some(&f.token(&patient(INS_2))), &[])
        .await;
    assert_eq!(a.status, 403);
    assert_eq!(a.reason(), "consult.not_own_record");
    mine += 1;
    keep.push(("forbidden".into(), a.json()));

    // A professional who is not the author: the masked document is absent and not counted.
    let other = f.token(&professional(OTHER_PRO));
    let b = f.bundle(&docs_query(INS_1), &other).await;
    assert_eq!(b["total"], 2);
    assert_eq!(ids(&b), ["1.2.250.1.9.3", "1.2.250.1.9.1"]);
    mine += 1;
    // ... and reading it by id answers exactly like a missing document.
    let hidden = f
        .get("/fhir/DocumentReference/1.2.250.1.9.2", Some(&other), &[])
        .await;
    let missing = f
        .get("/fhir/DocumentReference/1.2.250.1.9.404", Some(&other), &[])
        .await;
    assert_eq!(hidden.status, 404);
    assert_eq!(hidden.body, missing.body);
    mine += 1; // the hidden read, denied on INS_1's DMP
    unattributed += 1; // the missing one: no DMP to file it under
    keep.push(("not-found".into(), missing.json()));
    let hidden_bin = f.get("/fhir/Binary/1.2.250.1.9.2", Some(&other), &[]).await;
    assert_eq!(hidden_bin.status, 404);
    mine += 1;

    // The author sees it.
    let author = f.token(&professional(AUTHOR));
    assert_eq!(f.bundle(&docs_query(INS_1), &author).await["total"], 3);
    mine += 1;

    // Break-the-glass: permitted, traced with the flag and the reason; masking still holds.
    let a = f
        .get(
            &docs_query(INS_1),
            Some(&other),
            &[("X-Break-Glass-Reason", "patient inconscient")],
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["total"], 2);
    mine += 1;
    let rows = f.store.traces_for_patient(INS_1).await.unwrap();
    let last = rows.last().unwrap();
    assert_eq!(last.purpose, "break_glass");
    assert_eq!(last.purpose_reason.as_deref(), Some("patient inconscient"));
    assert_eq!(last.reason, "consult.permit.break_glass");
    assert_eq!(last.outcome, "permit");

    // Read and Binary: the CDA exactly as stored, ETag its sha256.
    let a = f
        .get("/fhir/DocumentReference/1.2.250.1.9.1", Some(&tp), &[])
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["id"], "1.2.250.1.9.1");
    mine += 1;
    keep.push(("read".into(), a.json()));
    let a = f.get("/fhir/Binary/1.2.250.1.9.1", Some(&tp), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, cda("1.2.250.1.9.1").as_bytes());
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/hl7-cda+xml")
    );
    {
        use sha2::{Digest, Sha256};
        let sha: String = Sha256::digest(&a.body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(a.header("etag"), Some(format!("\"{sha}\"")));
    }
    let etag = a.header("etag");
    mine += 1;
    // The same bytes as a FHIR Binary when the client asks for FHIR JSON.
    let a = f
        .get(
            "/fhir/Binary/1.2.250.1.9.1",
            Some(&tp),
            &[("Accept", "application/fhir+json")],
        )
        .await;
    assert_eq!(a.status, 200);
    let bin = a.json();
    assert_eq!(bin["resourceType"], "Binary");
    assert_eq!(bin["contentType"], "application/hl7-cda+xml");
    let data = base64::engine::general_purpose::STANDARD
        .decode(bin["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(data, cda("1.2.250.1.9.1").as_bytes());
    assert_eq!(a.header("etag"), etag);
    mine += 1;
    keep.push(("binary".into(), bin));

    // Unknown query parameter: 400 OperationOutcome, traced without a patient.
    let a = f
        .get(
            &format!("{}&colour=blue", docs_query(INS_1)),
            Some(&tp),
            &[],
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.reason(), "search.param.unknown");
    unattributed += 1;
    keep.push(("bad-request".into(), a.json()));

    // Observations: the masked document's result is absent for the other professional.
    let obs =
        format!("/fhir/Observation?patient.identifier=urn%3Aoid%3A{OID}%7C{INS_1}&code=2345-7");
    let b = f.bundle(&obs, &other).await;
    assert_eq!(b["total"], 2);
    mine += 1;
    keep.push(("observations".into(), b));

    // AuditEvent: the patient reads their traces; a professional may not.
    let audit = format!("/fhir/AuditEvent?patient.identifier=urn%3Aoid%3A{OID}%7C{INS_1}");
    assert_eq!(f.get(&audit, Some(&other), &[]).await.status, 403);
    mine += 1;
    let b = f.bundle(&audit, &tp).await;
    // Every earlier trace about INS_1's DMP; this read's own is written after the list.
    assert_eq!(b["total"].as_i64().unwrap(), mine);
    mine += 1;
    keep.push(("audit".into(), b));

    // Metadata is public and carries no patient data: not traced.
    let a = f.get("/fhir/metadata", None, &[]).await;
    assert_eq!(a.status, 200);
    keep.push(("metadata".into(), a.json()));

    // One trace row per call, no more.
    assert_eq!(
        f.store.traces_for_patient(INS_1).await.unwrap().len() as i64,
        mine
    );
    assert_eq!(f.traces().await, mine + unattributed);
}

/// ZFA-11 consultation refused: a professional sees only what they authored; break-the-glass
/// still opens the DMP (traced, masking kept); a closed DMP opens to no one; an unknown
/// ZFA-1 value or an absent DMP is denied.
async fn consent_and_dmp_state(f: &Fixture, keep: &mut Bodies) {
    const THIRD_PRO: &str = "810000000077";
    let mut by_other = Doc::new("1.2.250.1.8.2", INS_1, "20260302101500+0100", 12);
    by_other.author = OTHER_PRO;
    f.put(&[
        Doc::new("1.2.250.1.8.1", INS_1, "20260301101500+0100", 11),
        by_other,
        Doc::new("1.2.250.1.8.3", INS_1, "20260303101500+0100", 13).masked(&["MASQUE_PS"]),
    ])
    .await;
    f.set_dmp(INS_1, Some("ACTIF"), Some(false)).await;
    let third = f.token(&professional(THIRD_PRO));
    let author = f.token(&professional(AUTHOR));
    let other = f.token(&professional(OTHER_PRO));

    // Consent refused: granted, but only the caller's own documents, counts included.
    let b = f.bundle(&docs_query(INS_1), &third).await;
    assert_eq!(b["total"], 0);
    assert!(ids(&b).is_empty());
    keep.push(("consent-refused-empty".into(), b));
    let last = f.store.traces_for_patient(INS_1).await.unwrap();
    assert_eq!(last.last().unwrap().reason, "consult.consent.refused");
    let b = f.bundle(&docs_query(INS_1), &author).await;
    assert_eq!(ids(&b), ["1.2.250.1.8.3", "1.2.250.1.8.1"]);
    assert_eq!(
        ids(&f.bundle(&docs_query(INS_1), &other).await),
        ["1.2.250.1.8.2"]
    );
    let a = f.get("/fhir/Binary/1.2.250.1.8.1", Some(&other), &[]).await;
    assert_eq!(a.status, 404, "not the author's: as missing");
    // The patient still sees everything.
    let tp = f.token(&patient(INS_1));
    assert_eq!(f.bundle(&docs_query(INS_1), &tp).await["total"], 3);

    // Break-the-glass overrides the refusal, not the masking.
    let a = f
        .get(
            &docs_query(INS_1),
            Some(&third),
            &[("X-Break-Glass-Reason", "urgence vitale")],
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(ids(&a.json()), ["1.2.250.1.8.2", "1.2.250.1.8.1"]);
    // ... needs a reason, and is a professional's.
    let bg_empty = f
        .get(
            &docs_query(INS_1),
            Some(&third),
            &[("X-Break-Glass-Reason", " ")],
        )
        .await;
    assert_eq!(bg_empty.status, 403);
    assert_eq!(bg_empty.reason(), "consult.break_glass.reason_missing");
    let bg_patient = f
        .get(
            &docs_query(INS_1),
            Some(&tp),
            &[("X-Break-Glass-Reason", "urgence")],
        )
        .await;
    assert_eq!(bg_patient.status, 403);
    assert_eq!(bg_patient.reason(), "consult.break_glass.not_professional");

    // A closed DMP (ZFA-1 FERME) opens to no one, its patient and break-the-glass included.
    f.set_dmp(INS_1, Some("FERME"), Some(false)).await;
    for (who, extra) in [
        (&tp, None),
        (&author, None),
        (&third, Some(("X-Break-Glass-Reason", "urgence vitale"))),
    ] {
        let a = f.get(&docs_query(INS_1), Some(who), extra.as_slice()).await;
        assert_eq!(a.status, 403);
        assert_eq!(a.reason(), "consult.dmp.closed");
    }
    let a = f
        .get("/fhir/DocumentReference/1.2.250.1.8.1", Some(&author), &[])
        .await;
    assert_eq!(a.status, 404, "a read on a closed DMP answers as missing");
    keep.push(("closed".into(), a.json()));

    // A ZFA-1 value we cannot read does not open the DMP; a patient without a DMP neither.
    f.set_dmp(INS_2, Some("SUSPENDU"), None).await;
    let a = f.get(&docs_query(INS_2), Some(&author), &[]).await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (403, "consult.dmp.status_unknown")
    );
    let nobody = "299999999999999";
    let a = f
        .get(&docs_query(nobody), Some(&f.token(&patient(nobody))), &[])
        .await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (403, "consult.dmp.not_found")
    );

    // Every call above was traced: 10 on INS_1, 1 each on INS_2 and on the absent DMP.
    assert_eq!(f.store.traces_for_patient(INS_1).await.unwrap().len(), 12);
    assert_eq!(f.traces().await, 14);
    let denials = f
        .store
        .traces_for_patient(INS_1)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.outcome == "deny")
        .count();
    assert_eq!(denials, 7);
}

/// INVISIBLE_PATIENT hides a document from the patient and their representatives,
/// INVISIBLE_REP_LEGAUX from the representatives; MASQUE_PS from professionals but the
/// author. A representative reaches only the DMP they represent.
async fn representative_and_invisibility(f: &Fixture, keep: &mut Bodies) {
    f.put(&[
        Doc::new("1.2.250.1.7.1", INS_3, "20260301101500+0100", 21),
        Doc::new("1.2.250.1.7.2", INS_3, "20260302101500+0100", 22).masked(&["INVISIBLE_PATIENT"]),
        Doc::new("1.2.250.1.7.3", INS_3, "20260303101500+0100", 23)
            .masked(&["INVISIBLE_REP_LEGAUX"]),
        Doc::new("1.2.250.1.7.4", INS_3, "20260304101500+0100", 24).masked(&["MASQUE_PS"]),
    ])
    .await;
    let seen = |who: String| async move { ids(&f.bundle(&docs_query(INS_3), &who).await) };
    assert_eq!(
        seen(f.token(&patient(INS_3))).await,
        ["1.2.250.1.7.4", "1.2.250.1.7.3", "1.2.250.1.7.1"]
    );
    let rep = f.token(&representative(INS_3));
    let b = f.bundle(&docs_query(INS_3), &rep).await;
    assert_eq!(ids(&b), ["1.2.250.1.7.4", "1.2.250.1.7.1"]);
    assert_eq!(b["total"], 2);
    keep.push(("representative-search".into(), b));
    assert_eq!(
        seen(f.token(&professional(OTHER_PRO))).await,
        ["1.2.250.1.7.3", "1.2.250.1.7.2", "1.2.250.1.7.1"]
    );
    assert_eq!(seen(f.token(&professional(AUTHOR))).await.len(), 4);

    // Hidden by id answers as missing, to the patient as to the representative.
    let tp = f.token(&patient(INS_3));
    for (who, id) in [(&tp, "1.2.250.1.7.2"), (&rep, "1.2.250.1.7.3")] {
        let a = f.get(&format!("/fhir/Binary/{id}"), Some(who), &[]).await;
        assert_eq!(a.status, 404);
        assert_eq!(a.reason(), "consult.doc.not_found");
    }
    // The representative reads their traces like the patient (AuditEvent).
    let audit = format!("/fhir/AuditEvent?patient.identifier=urn%3Aoid%3A{OID}%7C{INS_3}");
    let b = f.bundle(&audit, &rep).await;
    assert_eq!(b["total"], 6);
    keep.push(("representative-audit".into(), b));
    // Another patient's DMP, break-the-glass: denied.
    let a = f
        .get(
            &docs_query(INS_1),
            Some(&f.token(&representative(INS_3))),
            &[],
        )
        .await;
    assert_eq!(
        (a.status, a.reason().as_str()),
        (403, "consult.not_represented")
    );
    let a = f
        .get(
            &docs_query(INS_3),
            Some(&rep),
            &[("X-Break-Glass-Reason", "urgence")],
        )
        .await;
    assert_eq!(a.status, 403);
    // Observations follow the documents: the representative sees two results.
    let obs =
        format!("/fhir/Observation?patient.identifier=urn%3Aoid%3A{OID}%7C{INS_3}&code=2345-7");
    assert_eq!(f.bundle(&obs, &rep).await["total"], 2);
    assert_eq!(f.traces().await, 10);
}

/// Replaced and deleted versions: hidden by default, listed with `status` to whoever may
/// see the set's current version, never to whom the head is hidden.
async fn replaced_and_deleted_versions(f: &Fixture, keep: &mut Bodies) {
    f.put(&[
        Doc::new("1.2.250.1.6.1", INS_2, "20260301101500+0100", 31),
        Doc::new("1.2.250.1.6.2", INS_2, "20260302101500+0100", 32)
            .version_of("1.2.250.1.6.1", Lifecycle::Replace),
        Doc::new("1.2.250.1.6.3", INS_2, "20260303101500+0100", 33),
        Doc::new("1.2.250.1.6.4", INS_2, "20260304101500+0100", 34)
            .version_of("1.2.250.1.6.3", Lifecycle::Delete),
        // A set whose new head is masked: its old version must not leak to professionals.
        Doc::new("1.2.250.1.6.5", INS_2, "20260305101500+0100", 35),
        Doc::new("1.2.250.1.6.6", INS_2, "20260306101500+0100", 36)
            .version_of("1.2.250.1.6.5", Lifecycle::Replace)
            .masked(&["MASQUE_PS"]),
    ])
    .await;
    let tp = f.token(&patient(INS_2));
    let q = docs_query(INS_2);
    let b = f.bundle(&q, &tp).await;
    assert_eq!(ids(&b), ["1.2.250.1.6.6", "1.2.250.1.6.2"]);
    let replacement = &b["entry"][1]["resource"];
    assert_eq!(replacement["relatesTo"][0]["code"], "replaces");
    keep.push(("versions-current".into(), b));
    let b = f.bundle(&format!("{q}&status=superseded"), &tp).await;
    assert_eq!(ids(&b), ["1.2.250.1.6.5", "1.2.250.1.6.1"]);
    assert_eq!(b["entry"][0]["resource"]["status"], "superseded");
    let b = f.bundle(&format!("{q}&status=entered-in-error"), &tp).await;
    assert_eq!(ids(&b), ["1.2.250.1.6.3"]);
    assert_eq!(b["entry"][0]["resource"]["status"], "entered-in-error");
    keep.push(("versions-deleted".into(), b));
    let all = f
        .bundle(
            &format!("{q}&status=current,superseded,entered-in-error"),
            &tp,
        )
        .await;
    assert_eq!(all["total"], 5);

    // The professional: the masked head hides its whole set, old version included.
    let other = f.token(&professional(OTHER_PRO));
    let b = f
        .bundle(
            &format!("{q}&status=current,superseded,entered-in-error"),
            &other,
        )
        .await;
    assert_eq!(ids(&b), ["1.2.250.1.6.3", "1.2.250.1.6.2", "1.2.250.1.6.1"]);
    assert_eq!(b["total"], 3);
    let a = f
        .get("/fhir/DocumentReference/1.2.250.1.6.5", Some(&other), &[])
        .await;
    assert_eq!(a.status, 404);
    // A superseded version the caller may see reads by id, with its status.
    let a = f
        .get("/fhir/DocumentReference/1.2.250.1.6.1", Some(&other), &[])
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["status"], "superseded");
    assert_eq!(f.traces().await, 7);
}

/// Paging: `_count`, `total`, next/previous links that a client follows as given.
async fn paging(f: &Fixture, keep: &mut Bodies) {
    let created = [
        "20260301101500+0100",
        "20260302101500+0100",
        "20260303101500+0100",
        "20260304101500+0100",
        "20260305101500+0100",
    ];
    let uids: Vec<String> = (1..=5).map(|i| format!("1.2.250.1.5.{i}")).collect();
    let docs: Vec<Doc> = uids
        .iter()
        .zip(created)
        .enumerate()
        .map(|(i, (u, c))| Doc::new(u, INS_1, c, 40 + i as u32))
        .collect();
    f.put(&docs).await;
    let tp = f.token(&patient(INS_1));
    let mut path = format!("{}&_count=2", docs_query(INS_1));
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let b = f.bundle(&path, &tp).await;
        assert_eq!(b["total"], 5);
        pages += 1;
        seen.extend(ids(&b));
        if pages == 2 {
            keep.push(("page-2".into(), b.clone()));
        }
        let next = b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        match next {
            Some(url) => {
                let base = format!("http://{}", f.addr);
                path = url
                    .strip_prefix(&base)
                    .expect("links use the base")
                    .to_owned();
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut newest_first: Vec<String> = uids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    // A page token that is not one: 400, traced.
    let a = f
        .get(&format!("{}&_page=abc", docs_query(INS_1)), Some(&tp), &[])
        .await;
    assert_eq!(a.status, 400);
    keep.push(("bad-page".into(), a.json()));
    assert_eq!(f.traces().await, 4);
}

/// Two instances on one store, as behind a load balancer: a page token from one is served
/// by the other, and both trace into the same table.
async fn two_instances_share_one_store(f: &Fixture, _keep: &mut Bodies) {
    let docs: Vec<Doc> = ["1.2.250.1.4.1", "1.2.250.1.4.2", "1.2.250.1.4.3"]
        .iter()
        .zip([
            "20260301101500+0100",
            "20260302101500+0100",
            "20260303101500+0100",
        ])
        .enumerate()
        .map(|(i, (u, c))| Doc::new(u, INS_2, c, 60 + i as u32))
        .collect();
    f.put(&docs).await;
    let (b, _stop_b) = f.another_instance().await;
    let tp = f.token(&patient(INS_2));
    let first = f
        .bundle(&format!("{}&_count=2", docs_query(INS_2)), &tp)
        .await;
    assert_eq!(ids(&first), ["1.2.250.1.4.3", "1.2.250.1.4.2"]);
    let next = first["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = next.strip_prefix(&format!("http://{}", f.addr)).unwrap();
    let a = f.get_at(b, path, Some(&tp), &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(ids(&a.json()), ["1.2.250.1.4.1"]);
    // A token minted for one instance is good on the other (same issuer keys), and the
    // DMP's traces are one list whichever instance wrote them.
    let audit = format!("/fhir/AuditEvent?patient.identifier=urn%3Aoid%3A{OID}%7C{INS_2}");
    let a = f.get_at(b, &audit, Some(&tp), &[]).await;
    assert_eq!(a.json()["total"], 2);
    assert_eq!(f.traces().await, 3);
}

// ------------------------------------------------------------------ the tests

type Scenario = for<'a> fn(
    &'a Fixture,
    &'a mut Bodies,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        const ALL: &[(&str, Scenario)] = &[$((stringify!($name), |f, k| Box::pin($name(f, k)))),*];
        mod on_sqlite {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let f = super::Fixture::start(super::Backend::Sqlite).await;
                super::$name(&f, &mut Vec::new()).await;
                f.finish().await;
            }
        )*}
        mod on_postgres {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let f = super::Fixture::start(super::Backend::Postgres(stringify!($name))).await;
                super::$name(&f, &mut Vec::new()).await;
                f.finish().await;
            }
        )*}
    };
}

scenarios!(
    consultation_end_to_end,
    consent_and_dmp_state,
    representative_and_invisibility,
    replaced_and_deleted_versions,
    paging,
    two_instances_share_one_store,
);

/// Every resource the scenarios received (searchsets, reads, Binary, AuditEvents,
/// OperationOutcomes, the CapabilityStatement) validates against FHIR R4, in one validator
/// run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_validates_against_fhir_r4() {
    let mut keep: Bodies = Vec::new();
    for (name, scenario) in ALL {
        let f = Fixture::start(Backend::Sqlite).await;
        let mut mine = Vec::new();
        scenario(&f, &mut mine).await;
        keep.extend(mine.into_iter().map(|(n, v)| (format!("{name}-{n}"), v)));
        f.finish().await;
    }
    // Every kind the server answers is in there: a change that stops collecting shows here.
    let kinds: std::collections::BTreeSet<&str> = keep
        .iter()
        .filter_map(|(_, v)| v["resourceType"].as_str())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "Binary",
            "Bundle",
            "CapabilityStatement",
            "DocumentReference",
            "OperationOutcome"
        ]
    );
    validate(&keep);
}
