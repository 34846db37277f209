//! Issue #12 on the real stack (Kafka + PostgreSQL, `scripts/stack up`; fails, never skips,
//! without them): a patient's opposition to the feeding of their DMP (PAM-FR ZFA-9 `IO`)
//! holds their documents as `patient.opposed`; a later identity message saying `INO` lets
//! the route stage's sweeper file them, once each, with no operator releasing anything.

mod common;

use std::time::Duration;

use common::*;
use dmpflow_store::{QuarantineStatus, Store};
use rdkafka::producer::FutureRecord;

/// An A31 for the test patient with ZFA in the PAM-FR 2.11 layout: ZFA-1/2 DMP status,
/// ZFA-9/10 feeding opposition (`IO`/`INO`/`NA`), ZFA-11/12 consultation consent.
fn a31(ins: &str, control_id: &str, when: &str, opposition: &str) -> String {
    format!(
        "MSH|^~\\&|GAM-TEST|CH-TEST|DMPFLOW|DMP|{when}||ADT^A31^ADT_A05|{control_id}|P|2.5|||||FRA|UNICODE UTF-8\r\
EVN||{when}\r\
PID|1||{ins}^^^ASIP-SANTE-INS-NIR&{TEST_OID}&ISO^INS||DURAND^CLAIRE^CLAIRE MARIE^^^^L||19800315|F|||^^^^^^BDL^^75056|||||||||||||||||||||VALI\r\
PV1|1|N\r\
ZFA|ACTIF|{when}|||||||{opposition}|{when}|IC|{when}\r"
    )
}

async fn send(topic: &str, key: &str, payload: &str) {
    acks_all_producer()
        .send(
            FutureRecord::<str, str>::to(topic)
                .payload(payload)
                .key(key),
            Duration::from_secs(30),
        )
        .await
        .expect("acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opposed_patients_document_is_filed_once_after_a_later_ino() {
    let s = setup("opposition_lifted", 1).await;
    let identity = format!("{}.feed.identity", s.prefix);
    let lab = format!("{}.feed.lab", s.prefix);
    let mut pipeline = spawn_stage(&s.env, "all", 19631, &format!("{}-o.log", s.prefix));
    let store = Store::connect(&s.db).await.expect("store");

    // The patient opposes (IO).
    send(
        &identity,
        &s.ins,
        &a31(&s.ins, &format!("{}-IO", s.run), "20240306111154", "IO"),
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(90), || async {
            store
                .get_patient(&s.ins)
                .await
                .unwrap()
                .is_some_and(|p| p.feeding_opposed)
        })
        .await,
        "the IO reaches the registry"
    );

    // Their lab document waits as patient.opposed.
    send(&lab, &s.ins, &lab_oru(&s.ins, &s.run, 0)).await;
    let opposed_cases = || async {
        store
            .quarantine_list(Some(QuarantineStatus::Open))
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.reason == "patient.opposed")
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(60), || async {
            opposed_cases().await == 1
        })
        .await,
        "the document of an opposed patient is held"
    );
    assert_eq!(stored(&s.db).await, 0);

    // A later A31 with INO: the sweeper (limits.quarantine_retry_seconds, 5 s by default)
    // re-routes the case; nobody releases it.
    send(
        &identity,
        &s.ins,
        &a31(&s.ins, &format!("{}-INO", s.run), "20240307090000", "INO"),
    )
    .await;
    let filed = wait_until(Duration::from_secs(60), || async {
        stored(&s.db).await == 1 && opposed_cases().await == 0
    })
    .await;
    assert!(
        filed,
        "after the INO: {} stored, {} cases still open",
        stored(&s.db).await,
        opposed_cases().await
    );
    // Filed once: a few more sweeps later, still one row, and the case is released.
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(stored(&s.db).await, 1);
    assert_eq!(
        store
            .quarantine_list(Some(QuarantineStatus::Released))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.documents_for_patient(&s.ins).await.unwrap().len(), 1);

    // The registry's history says which message changed the opposition, and when.
    let history = store.patient_history(&s.ins).await.unwrap();
    let opposition: Vec<_> = history
        .iter()
        .filter(|h| h.field == "feeding_opposed")
        .map(|h| {
            (
                h.old_value.as_deref(),
                h.new_value.as_deref(),
                h.source_control_id.clone(),
                h.value_time.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        opposition,
        [
            // `patients import` (setup) stated "false", without a message or a date.
            (None, Some("INO"), None, None),
            (
                Some("INO"),
                Some("IO"),
                Some(format!("{}-IO", s.run)),
                Some("2024-03-06T11:11:54")
            ),
            (
                Some("IO"),
                Some("INO"),
                Some(format!("{}-INO", s.run)),
                Some("2024-03-07T09:00:00")
            ),
        ],
        "the CSV import's false, then IO, then INO"
    );
    store.close().await;
    assert!(terminate(&mut pipeline).success());
}
