//! Integration tests of the process lifecycle on the real services of `scripts/stack up`
//! (they fail, never skip, when those are unreachable): a SIGTERM in the middle of a
//! steady flow processes nothing twice, and `/health/ready` reflects the broker, the
//! database and the group assignments while `/health/live` always answers.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use rdkafka::producer::FutureRecord;

/// `run --stage all` as it starts by default: normalize routes what it yields itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_steady_flow_processes_nothing_twice() {
    sigterm_during_a_steady_flow(true).await
}

/// The chain through `dmp.documents` (`limits.route_in_normalize = false`, and every split
/// deployment's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_steady_flow_processes_nothing_twice_unfused() {
    sigterm_during_a_steady_flow(false).await
}

async fn sigterm_during_a_steady_flow(fused: bool) {
    let Setup {
        env,
        prefix,
        db,
        ins,
        run,
    } = setup(if fused { "sigterm" } else { "sigtermu" }, 3).await;
    let feed = format!("{prefix}.feed.lab");
    let mut env = env;
    // Small batches: many commits in flight when the signal lands.
    env.push(("DMPFLOW_BATCH_MESSAGES".into(), "20".into()));
    env.push(("DMPFLOW_ROUTE_IN_NORMALIZE".into(), fused.to_string()));
    const N: usize = 2000;

    let mut pipeline = spawn_stage(&env, "all", free_port(), &format!("{prefix}-a.log"));
    // A steady flow: 20 messages every 50 ms, acknowledged one chunk at a time.
    let produced = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let flow = {
        let (produced, done, feed, ins, run) = (
            produced.clone(),
            done.clone(),
            feed.clone(),
            ins.clone(),
            run.clone(),
        );
        tokio::spawn(async move {
            let producer = acks_all_producer();
            for chunk in (0..N).collect::<Vec<_>>().chunks(20) {
                let mut pending = Vec::new();
                for &n in chunk {
                    let payload = lab_oru(&ins, &run, n);
                    pending.push(
                        producer
                            .send_result(
                                FutureRecord::<str, String>::to(&feed)
                                    .payload(&payload)
                                    .key(&ins),
                            )
                            .expect("enqueue"),
                    );
                }
                for p in pending {
                    p.await.expect("delivery").expect("acknowledged");
                }
                produced.fetch_add(chunk.len(), Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            done.store(true, Ordering::SeqCst);
        })
    };

    // SIGTERM once the flow is well under way and documents are being stored.
    let ok = wait_until(Duration::from_secs(60), || async {
        stored(&db).await >= 200 && produced.load(Ordering::SeqCst) >= 600
    })
    .await;
    assert!(ok, "the pipeline did not get going");
    assert!(
        !done.load(Ordering::SeqCst),
        "the flow ended before the signal"
    );
    let status = terminate(&mut pipeline);
    assert!(status.success(), "graceful stop exits 0, got {status}");
    let at_stop = stored(&db).await;
    println!(
        "SIGTERM with {} produced, {at_stop} stored",
        produced.load(Ordering::SeqCst)
    );

    let mut pipeline = spawn_stage(&env, "all", free_port(), &format!("{prefix}-b.log"));
    flow.await.expect("producer task");
    let ok = wait_until(Duration::from_secs(120), || async {
        stored(&db).await >= N as i64
    })
    .await;
    assert!(
        ok,
        "only {} of {N} stored after the restart",
        stored(&db).await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(terminate(&mut pipeline).success());
    // Fused, nothing goes through dmp.documents; route's output is then normalize's.
    assert_eq!(
        topic_count(&format!("{prefix}.documents")),
        if fused { 0 } else { N as i64 },
        "normalize wrote each message once across the SIGTERM"
    );
    assert_eq!(
        topic_count(&format!("{prefix}.routed")),
        N as i64,
        "route wrote each document once across the SIGTERM"
    );
    assert_eq!(stored(&db).await, N as i64, "one row per message");
}

/// Status code of a plain HTTP/1.1 GET, or None when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_whitespace().nth(1)?.parse().ok()
}

async fn wait_status(port: u16, path: &str, want: u16, within: Duration) -> bool {
    wait_until(within, || async { http_status(port, path) == Some(want) }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_broker_the_database_and_the_assignments() {
    let Setup { env, prefix, .. } = setup("health", 3).await;

    // Everything reachable: ready once the stages hold their assignments; live always.
    let mut up = spawn_stage(&env, "all", 19621, &format!("{prefix}-up.log"));
    assert!(
        wait_status(19621, "/health/live", 200, Duration::from_secs(20)).await,
        "live"
    );
    assert!(
        wait_status(19621, "/health/ready", 200, Duration::from_secs(45)).await,
        "ready while broker and database are up"
    );
    // It stays ready across several check rounds.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(http_status(19621, "/health/ready"), Some(200));
    }
    assert!(terminate(&mut up).success());

    // The database unreachable: live, never ready.
    let mut no_db = env.clone();
    no_db.push((
        "DMPFLOW_DATABASE_URL".into(),
        "postgres://dmpflow@127.0.0.1:1/nowhere".into(),
    ));
    let mut store = spawn_stage(&no_db, "store", 19622, &format!("{prefix}-nodb.log"));
    assert!(wait_status(19622, "/health/live", 200, Duration::from_secs(20)).await);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            http_status(19622, "/health/ready"),
            Some(503),
            "ready without a database"
        );
        assert_eq!(http_status(19622, "/health/live"), Some(200));
    }
    // An unhealthy process may spend its shutdown bound retrying; its exit is not the point.
    let _ = store.kill();
    let _ = store.wait();

    // The broker unreachable: live, never ready.
    let mut no_kafka = env.clone();
    no_kafka.push(("DMPFLOW_KAFKA_BOOTSTRAP".into(), "127.0.0.1:1".into()));
    let mut normalize = spawn_stage(&no_kafka, "normalize", 19623, &format!("{prefix}-nok.log"));
    assert!(wait_status(19623, "/health/live", 200, Duration::from_secs(20)).await);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            http_status(19623, "/health/ready"),
            Some(503),
            "ready without a broker"
        );
    }
    let _ = normalize.kill();
    let _ = normalize.wait();
}

/// `limits.shutdown_timeout_ms` is an upper bound even when the process is stuck in a
/// blocking client call: here the "broker" accepts connections and never answers, so the
/// start (the check of the topics' record limits, retried every ~10 s) waits on it, and its
/// Kafka client's teardown blocks until a request times out. Before the process exited at
/// the bound, the runtime's shutdown waited for that: 6–7 s with a 1 s bound (measured); in
/// CI a store stage's leaving calls (a synchronous commit to a silent group coordinator)
/// outlived the harness's 30 s the same way.
#[test]
fn the_shutdown_bound_holds_when_the_broker_never_answers() {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bootstrap = format!("127.0.0.1:{}", hole.local_addr().unwrap().port());
    std::thread::spawn(move || {
        // Accepted and held open, never read nor answered.
        let mut held = Vec::new();
        for c in hole.incoming().flatten() {
            held.push(c);
        }
    });
    let dir = std::env::temp_dir().join(format!("dmpflow-bound-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bound.toml");
    std::fs::write(&config, "[limits]\nshutdown_timeout_ms = 1000\n").unwrap();
    let port = free_port();
    let env = vec![
        ("DMPFLOW_KAFKA_BOOTSTRAP".to_string(), bootstrap),
        ("DMPFLOW_CONFIG".to_string(), config.display().to_string()),
        (
            "DMPFLOW_DATABASE_URL".to_string(),
            format!("sqlite://{}", dir.join("unused.db").display()),
        ),
    ];
    let log = dir.join("run.log");
    let mut child = dmpflow_clean(&env)
        .args([
            "run",
            "--stage",
            "normalize",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("starting dmpflow run");
    // Running (its endpoint answers), its consumer waiting on the silent broker.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while http_status(port, "/health/live") != Some(200) {
        assert!(std::time::Instant::now() < deadline, "never live");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let signalled = std::time::Instant::now();
    let status = terminate(&mut child);
    let took = signalled.elapsed();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    assert!(
        text.contains("did not stop within the shutdown bound"),
        "{text}"
    );
    // The bound (1 s) plus the time to notice the signal and exit; the blocking call alone
    // lasts 5 s.
    assert!(
        took < Duration::from_secs(4),
        "exited {took:?} after SIGTERM"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A SIGTERM while the groups are rebalancing and wait for a member that stopped answering
/// (here SIGSTOPped, its session 60 s long) still ends in a clean exit within the bound.
/// librdkafka holds every request to a group coordinator behind the pending JoinGroup, so
/// each consumer's LeaveGroup waits out its 5 s request timeout. The process's five stage
/// consumers (normalize 2, route, store 2) used to be closed one after another on a runtime
/// worker, by whoever dropped them last: 25 s, past the 15 s bound, and the process exited
/// 2 (seen in CI: the 3-process rebalance test). Each stage now leaves on a thread of its
/// own, bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_while_the_group_waits_for_a_stalled_member_exits_cleanly() {
    let Setup { env, prefix, .. } = setup("leave", 3).await;
    // Fixed ports: three free_port() calls in a row may hand out the same one.
    let (pp, ps, pc) = (19634, 19635, 19636);
    let log_of = |who: &str| std::env::temp_dir().join(format!("{prefix}-{who}.log"));
    let mut member = spawn_stage(&env, "all", pp, &format!("{prefix}-member.log"));
    assert!(
        wait_status(pp, "/health/ready", 200, Duration::from_secs(45)).await,
        "the first member holds its assignments"
    );
    let mut slow_env = env.clone();
    slow_env.push(("DMPFLOW_KAFKA__SESSION_TIMEOUT_MS".into(), "60000".into()));
    let mut stalled = spawn_stage(&slow_env, "all", ps, &format!("{prefix}-stalled.log"));
    assert!(
        wait_status(ps, "/health/ready", 200, Duration::from_secs(45)).await,
        "the second member holds its assignments"
    );
    assert!(wait_status(pp, "/health/ready", 200, Duration::from_secs(30)).await);
    unsafe_kill(stalled.id() as i32, "STOP");
    // A third member joins: the coordinators wait for the stalled one to rejoin.
    let mut third = spawn_stage(&env, "all", pc, &format!("{prefix}-third.log"));
    assert!(
        wait_status(pp, "/health/ready", 503, Duration::from_secs(30)).await,
        "the first member's partitions are revoked for the rebalance"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    let signalled = std::time::Instant::now();
    let status = terminate(&mut member);
    let took = signalled.elapsed();
    for p in [&mut stalled, &mut third] {
        unsafe_kill(p.id() as i32, "KILL");
        let _ = p.wait();
    }
    let log = std::fs::read_to_string(log_of("member")).unwrap();
    // The scenario happened: a leave was held behind a join.
    assert!(
        log.contains("held back by preceeding blocking JoinGroupRequest"),
        "no LeaveGroup held back:\n{log}"
    );
    assert!(status.success(), "exit {status} after {took:?}:\n{log}");
    // One 5 s request timeout, the consumers' leaves side by side; the stalled member's
    // session alone lasts 60 s.
    assert!(
        took < Duration::from_secs(12),
        "exited {took:?} after SIGTERM:\n{log}"
    );
}
