//! bench-drain: the raw consume limit. Reads the feed topics with a fresh consumer group from
//! the beginning and does nothing with the messages, so its rate is what Kafka and
//! librdkafka give this machine for the same data; the pipeline is reported as a ratio of it.
//!
//! Usage: bench-drain --bootstrap HOST:PORT --expect N TOPIC...

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Stop after this many messages.
    #[arg(long)]
    expect: u64,
    /// Give up after this many seconds without a message.
    #[arg(long, default_value_t = 30)]
    idle_timeout: u64,
    #[arg(required = true)]
    topics: Vec<String>,
}

/// CPU seconds (user + system) this process used so far: the wall clock on a shared
/// machine includes time other processes held the cores.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass, zero-initialised on our stack.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let group = format!("bench-drain-{}-{nanos}", std::process::id());
    // The stage consumer's settings that matter for throughput (read_committed, the same
    // prefetch bound), so the comparison is like for like.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("queued.max.messages.kbytes", (16 << 10).to_string())
        .create()
        .context("creating the consumer")?;
    let names: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&names).context("subscribing")?;
    let (mut n, mut bytes) = (0u64, 0usize);
    let mut first: Option<Instant> = None;
    let mut last_seen = Instant::now();
    while n < args.expect {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                n += 1;
                bytes += m.payload_len();
                last_seen = Instant::now();
            }
            Some(Err(e)) => eprintln!("consumer error: {e}"),
            None => {
                if last_seen.elapsed() > Duration::from_secs(args.idle_timeout) {
                    break;
                }
            }
        }
    }
    let secs = first.map_or(0.0, |f| f.elapsed().as_secs_f64()).max(1e-9);
    let cpu = cpu_seconds().max(1e-9);
    // One machine-readable line for scripts/bench.
    println!(
        "drain: messages={n} seconds={secs:.3} rate={:.0} mb_per_s={:.1} cpu_seconds={cpu:.3} per_cpu_second={:.0}",
        n as f64 / secs,
        bytes as f64 / secs / 1e6,
        n as f64 / cpu
    );
    Ok(())
}
