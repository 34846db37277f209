//! Per-core throughput of the normalize stage's CPU work, per flow: our HL7 v2 reader alone
//! (`hl7::Message::parse`), the whole mapping to a CDA R2 document (`normalize::normalize`),
//! and hl7-parser 0.3's parse of the same bytes as the peer reference. Single-threaded, so
//! the rates are messages/s per core. The goal reported against: ≥ 50k lab ORU → CR-BIO
//! per second per core. Run: `cargo bench -p dmpflow-bench --bench normalize`.
//!
//! Each iteration handles a pool of distinct copies (MSH-10 and values differ) rather than
//! one message over and over, so branch predictors and caches see a realistic stream.
//!
//! Time is the bench thread's CPU time (CLOCK_THREAD_CPUTIME_ID), not wall time: on a
//! machine shared with other builds the wall clock counts the time other processes hold the
//! core, while "per core" means per CPU-second we actually got. Set
//! `DMPFLOW_BENCH_WALL=1` to measure wall time instead (the two agree on an idle machine).
//!
//! The allocator is mimalloc, as in the `dmpflow` binary (both parsers measured with it).

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dmpflow_bench::fixtures::{POOL, cancer, imaging, lab, pharmacy};
use dmpflow_normalize::hl7::{Message, ReadOptions};
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::{Cda, Feed, Normalized, PackedCda, wire};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Thread CPU time in nanoseconds; the values are formatted like wall time.
struct ThreadCpu {
    /// Also the fallback when the environment asks for wall time.
    wall: WallTime,
    use_wall: bool,
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass, which lives on our stack.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = (u64, std::time::Instant);
    type Value = u64;
    fn start(&self) -> Self::Intermediate {
        (thread_cpu_ns(), std::time::Instant::now())
    }
    fn end(&self, (cpu, wall): Self::Intermediate) -> u64 {
        if self.use_wall {
            wall.elapsed().as_nanos() as u64
        } else {
            thread_cpu_ns() - cpu
        }
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

fn flows() -> Vec<(&'static str, Feed, Vec<String>)> {
    vec![
        ("lab_oru", Feed::Lab, (0..POOL).map(lab).collect()),
        (
            "imaging_oru",
            Feed::Imaging,
            (0..POOL).map(imaging).collect(),
        ),
        (
            "pharmacy_rds",
            Feed::Pharmacy,
            (0..POOL).map(pharmacy).collect(),
        ),
        ("cancer_mdm", Feed::Cancer, (0..POOL).map(cancer).collect()),
    ]
}

fn bench(c: &mut Criterion<ThreadCpu>) {
    let opts = ReadOptions::default();
    let cfg = Config::default();
    for (name, feed, msgs) in flows() {
        // A fixture the mapping rejects would measure the reject path: refuse to run.
        for m in &msgs {
            if let Err(e) = normalize(feed, m.as_bytes(), &cfg) {
                panic!("{name} fixture is rejected by normalize: {e:?}");
            }
        }
        let bytes: usize = msgs.iter().map(String::len).sum();
        eprintln!("{name}: {} bytes per message on average", bytes / POOL);
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(POOL as u64));
        g.bench_function("ours_parse", |b| {
            b.iter(|| {
                for m in &msgs {
                    black_box(Message::parse(black_box(m.as_bytes()), &opts).unwrap());
                }
            })
        });
        g.bench_function("ours_normalize", |b| {
            b.iter(|| {
                for m in &msgs {
                    black_box(normalize(feed, black_box(m.as_bytes()), &cfg).unwrap());
                }
            })
        });
        // What route and store do with each document before anything else: read the JSON head
        // of its `dmp.documents` payload (CDA packed after it, as normalize writes it), and
        // what route writes back (the head serialised again, the CDA bytes copied).
        let payloads: Vec<Vec<u8>> = msgs
            .iter()
            .flat_map(|m| normalize(feed, m.as_bytes(), &cfg).unwrap())
            .map(|mut item| {
                if let Normalized::Document(d) = &mut item
                    && let Cda::Xml(xml) = &d.cda
                {
                    d.cda = Cda::Packed(PackedCda::pack(xml));
                }
                wire::encode(&item)
            })
            .collect();
        g.bench_function("wire_split", |b| {
            b.iter(|| {
                for p in &payloads {
                    black_box(wire::split(black_box(p)).unwrap());
                }
            })
        });
        // Route's read of the same payloads: the head's metadata only, entries skipped.
        g.bench_function("wire_peek", |b| {
            b.iter(|| {
                for p in &payloads {
                    black_box(wire::peek_meta(black_box(p)));
                }
            })
        });
        g.bench_function("wire_split_join", |b| {
            b.iter(|| {
                for p in &payloads {
                    let (head, cda) = wire::split(black_box(p)).unwrap();
                    black_box(wire::join(&head, cda));
                }
            })
        });
        g.bench_function("hl7_parser_parse", |b| {
            b.iter(|| {
                for m in &msgs {
                    black_box(hl7_parser::Message::parse(black_box(m.as_str())).unwrap());
                }
            })
        });
        g.finish();
    }
    // The same lab messages for the Python and Java peers (bench/peers/), so every parser
    // is timed on identical bytes.
    if let Ok(path) = std::env::var("DMPFLOW_BENCH_WRITE_LAB") {
        let lab: Vec<String> = (0..POOL).map(lab).collect();
        std::fs::write(&path, lab.join("\n")).expect("writing the lab sample");
    }
}

fn config() -> Criterion<ThreadCpu> {
    // Short windows keep the whole bench near a minute; the spread is reported, not hidden.
    Criterion::default()
        .with_measurement(ThreadCpu {
            wall: WallTime,
            use_wall: std::env::var_os("DMPFLOW_BENCH_WALL").is_some(),
        })
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench
}
criterion_main!(benches);
