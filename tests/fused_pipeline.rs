//! `limits.route_in_normalize` on the real services: normalize routes what it yields itself
//! (one Kafka hop fewer), and guarantee 1 still holds. The demo feeds of every flow (lab,
//! imaging, pharmacy, cancer, identity, with their quarantine and dead-letter cases) go
//! through a fused normalize SIGKILLed at random moments, a route stage (which must then
//! have nothing to do) and a store; after each phase the conservation count of the fault
//! tests must hold (see `common/harness.rs`).

mod common;

use std::time::Duration;

use common::harness::*;

const DRAIN: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_fused_into_normalize_conserves_every_message_through_sigkills() {
    let demo = demo(30, 2);
    println!("demo feeds: {} messages at scale 30", demo.messages);
    let mut h = Harness::new("fused", 4, 1, &demo).await;
    h.env
        .push(("DMPFLOW_ROUTE_IN_NORMALIZE".into(), "true".into()));
    let normalize = h.spawn("normalize");
    h.spawn("route");
    h.spawn("store");
    let mut rows = Vec::new();

    // (a) The fused stage SIGKILLed and restarted at once, four times, mid-load: a batch
    // routed (registry updates applied, outputs produced) but not committed comes back.
    let mut rng = Rng::from_time();
    let load = h.load_background(&demo.chunks[0]);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(1200))).await;
        h.kill9_and_restart(normalize);
    }
    let st = load.wait_with_output().expect("waiting for dmpflow load");
    println!("a: load finished ({})", st.status);
    let (t, d) = h.drain(DRAIN).await;
    rows.push(("a: fused normalize SIGKILLed 4x".to_string(), t, d));

    // (b) The second half through a fused normalize whose metrics we read.
    let st = h.stop(normalize);
    assert!(st.success(), "the fused stage stops cleanly, got {st}");
    let observed = h.spawn_observed("normalize");
    h.wait_ready(observed, Duration::from_secs(60)).await;
    h.load(&demo.chunks[1]);
    let (t, d) = h.drain(DRAIN).await;
    let samples = h.scrape(observed).expect("the fused stage's /metrics");
    rows.push(("b: second half".to_string(), t, d));
    print_table(&rows);

    let mut failed = Vec::new();
    for (name, t, _) in &rows {
        for v in t.violations() {
            failed.push(format!("{name}: {v}"));
        }
    }
    assert!(failed.is_empty(), "violations:\n{}", failed.join("\n"));
    let last = &rows.last().unwrap().1;
    assert!(
        last.feed_total as usize >= demo.messages,
        "not every demo message reached the feed topics"
    );
    // Every class of outcome went through the fused route: filed, identity updates
    // applied, quarantined with a reason.
    assert!(last.stored_msgs > 0 && last.patient_updates > 0 && last.quarantined > 0);
    // Nothing took the hop the fusion removes.
    let through_documents: i64 = watermarks(&format!("{}.documents", h.prefix))
        .iter()
        .map(|(_, (_, hi))| hi)
        .sum();
    assert_eq!(through_documents, 0, "documents went through dmp.documents");
    // The fused process reports route's outcomes as route's, and normalize's as normalize's.
    let of = |stage: &str, outcome: &str| {
        samples.sum(
            "dmpflow_messages_total",
            &[("stage", stage), ("outcome", outcome)],
        )
    };
    assert!(of("normalize", "document") > 0.0, "normalize's outcomes");
    assert!(
        of("route", "routed") > 0.0,
        "route's outcomes, from the fused stage"
    );
    assert!(
        of("route", "routed") + of("route", "quarantined") <= of("normalize", "document"),
        "route reports no more documents than normalize yielded"
    );
}
