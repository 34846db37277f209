//! normalize-flows: per-core rate of `normalize::normalize` per flow, measured in process CPU
//! time (getrusage user+sys), for A/B comparisons of two builds on a shared machine where
//! wall time is noisy. Same messages as the criterion bench (`dmpflow_bench::fixtures`, a
//! pool of 64 distinct copies) or any file of messages; one thread; mimalloc like the
//! `dmpflow` binary.
//!
//! ```text
//! normalize-flows rate [--flow lab|imaging|pharmacy|cancer|all] [--seconds 3]
//!                      [--feed lab --file msgs.hl7]
//! normalize-flows dump --feed lab --out DIR FILE...
//! normalize-flows fixtures --flow lab --out FILE
//! ```
//!
//! `rate` prints one line per flow: messages per CPU-second, output (CDA) bytes per message
//! and output MB per CPU-second. Run it several times, alternating the builds compared.
//!
//! `dump` writes, for every message of the files (split at line breaks before `MSH`; a
//! fuzz seed's leading feed byte is dropped), `NNNNN-J.xml` (the CDA of its J-th
//! document) and `NNNNN.txt` (everything else normalize returned, `Debug`-formatted, the CDA
//! left out), so two builds' outputs can be compared byte for byte with `diff -r`.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use dmpflow_bench::fixtures::{POOL, cancer, imaging, lab, pharmacy};
use dmpflow_normalize::mapping::records;
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::{Cda, Feed, Normalized};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Messages per CPU-second of normalize, per flow.
    Rate {
        /// lab, imaging, pharmacy, cancer or all (the fixtures of the criterion bench).
        #[arg(long, default_value = "all")]
        flow: String,
        /// CPU-seconds measured per flow, after a warm-up of a tenth of that.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Time the messages of this file instead of the fixtures (with --feed).
        #[arg(long)]
        file: Option<PathBuf>,
        #[arg(long, default_value = "lab")]
        feed: String,
        /// Time only the reading and mapping to the typed record (`mapping::records::lab`,
        /// lab flow only): the CDA writer's share is the difference with a normal run.
        #[arg(long)]
        records_only: bool,
    },
    /// Writes the fixtures of a flow (the POOL copies, one per line) to --out.
    Fixtures {
        #[arg(long)]
        flow: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes what normalize returns for each message of FILE... into --out.
    Dump {
        #[arg(long)]
        feed: String,
        #[arg(long)]
        out: PathBuf,
        files: Vec<PathBuf>,
    },
}

/// A flow of the fixtures: its name, feed and message generator.
type Flow = (&'static str, Feed, fn(usize) -> String);

fn feed(name: &str) -> Result<Feed> {
    Ok(match name {
        "lab" => Feed::Lab,
        "imaging" => Feed::Imaging,
        "pharmacy" => Feed::Pharmacy,
        "cancer" => Feed::Cancer,
        "documents" => Feed::Documents,
        "identity" => Feed::Identity,
        _ => bail!("unknown feed {name}"),
    })
}

/// Process CPU time (user + system), seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass, which lives on our stack.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Messages of a file: split at line breaks that precede `MSH|`; a leading non-`M` byte
/// (the feed byte of fuzz seeds) is dropped.
fn messages(data: &[u8]) -> Vec<Vec<u8>> {
    let data = match data.first() {
        Some(&b) if b != b'M' && data.get(1..4) == Some(b"MSH") => &data[1..],
        _ => data,
    };
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' && data[i + 1..].starts_with(b"MSH|") {
            out.push(data[start..i].to_vec());
            start = i + 1;
        }
        i += 1;
    }
    if start < data.len() {
        let mut m = &data[start..];
        while m.last() == Some(&b'\n') {
            m = &m[..m.len() - 1];
        }
        out.push(m.to_vec());
    }
    out
}

fn cda_bytes(out: &[Normalized]) -> usize {
    out.iter()
        .map(|n| match n {
            Normalized::Document(d) => match &d.cda {
                Cda::Xml(x) => x.len(),
                Cda::Packed(p) => p.bytes.len(),
            },
            Normalized::Patient(_) => 0,
        })
        .sum()
}

fn rate(name: &str, feed: Feed, msgs: &[Vec<u8>], seconds: f64, records: bool) -> Result<()> {
    let cfg = Config::default();
    if records {
        let pass = |n: &mut u64| {
            for m in msgs {
                black_box(records::lab(black_box(m), &cfg).unwrap());
            }
            *n += msgs.len() as u64;
        };
        let until = cpu_seconds() + seconds / 10.0;
        let mut n = 0;
        while cpu_seconds() < until {
            pass(&mut n);
        }
        let t0 = cpu_seconds();
        let mut n = 0;
        while cpu_seconds() - t0 < seconds {
            pass(&mut n);
        }
        let cpu = cpu_seconds() - t0;
        println!(
            "{name} (read + map to the record only): {:.0} msg/s per CPU-second",
            n as f64 / cpu
        );
        return Ok(());
    }
    let mut out_bytes = 0usize;
    for m in msgs {
        let out = normalize(feed, m, &cfg)
            .map_err(|e| anyhow::anyhow!("{name}: a message is rejected: {e:?}"))?;
        out_bytes += cda_bytes(&out);
    }
    let in_bytes: usize = msgs.iter().map(Vec::len).sum();
    let pass = |n: &mut u64| {
        for m in msgs {
            black_box(normalize(feed, black_box(m), &cfg).unwrap());
        }
        *n += msgs.len() as u64;
    };
    // Warm-up.
    let until = cpu_seconds() + seconds / 10.0;
    let mut n = 0;
    while cpu_seconds() < until {
        pass(&mut n);
    }
    let wall = std::time::Instant::now();
    let t0 = cpu_seconds();
    let mut n = 0;
    while cpu_seconds() - t0 < seconds {
        pass(&mut n);
    }
    let cpu = cpu_seconds() - t0;
    let wall: Duration = wall.elapsed();
    let per_msg_out = out_bytes as f64 / msgs.len() as f64;
    let rate = n as f64 / cpu;
    println!(
        "{name}: {rate:.0} msg/s per CPU-second ({n} messages, {cpu:.2} s CPU, {:.2} s wall); \
         in {:.0} B/msg; out {per_msg_out:.0} B/msg, {:.1} MB/s",
        wall.as_secs_f64(),
        in_bytes as f64 / msgs.len() as f64,
        rate * per_msg_out / 1e6
    );
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Rate {
            flow,
            seconds,
            file,
            feed: feed_name,
            records_only,
        } => {
            if let Some(path) = file {
                let data = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
                let msgs = messages(&data);
                return rate(
                    &path.display().to_string(),
                    feed(&feed_name)?,
                    &msgs,
                    seconds,
                    records_only,
                );
            }
            let pool = |f: fn(usize) -> String| -> Vec<Vec<u8>> {
                (0..POOL).map(|i| f(i).into_bytes()).collect()
            };
            let flows: [Flow; 4] = [
                ("lab", Feed::Lab, lab),
                ("imaging", Feed::Imaging, imaging),
                ("pharmacy", Feed::Pharmacy, pharmacy),
                ("cancer", Feed::Cancer, cancer),
            ];
            let mut any = false;
            for (name, f, make) in flows {
                if flow == "all" || flow == name {
                    rate(name, f, &pool(make), seconds, records_only && name == "lab")?;
                    any = true;
                }
            }
            if !any {
                bail!("unknown flow {flow}");
            }
        }
        Cmd::Fixtures { flow, out } => {
            let make: fn(usize) -> String = match flow.as_str() {
                "lab" => lab,
                "imaging" => imaging,
                "pharmacy" => pharmacy,
                "cancer" => cancer,
                _ => bail!("unknown flow {flow}"),
            };
            let all: Vec<String> = (0..POOL).map(make).collect();
            std::fs::write(&out, all.join("\n"))?;
        }
        Cmd::Dump {
            feed: f,
            out,
            files,
        } => {
            let f = feed(&f)?;
            let cfg = Config::default();
            std::fs::create_dir_all(&out)?;
            let mut k = 0usize;
            for path in files {
                let data = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
                for m in messages(&data) {
                    let mut rest = String::new();
                    match normalize(f, &m, &cfg) {
                        Ok(items) => {
                            for (j, mut item) in items.into_iter().enumerate() {
                                if let Normalized::Document(d) = &mut item
                                    && let Cda::Xml(x) = &mut d.cda
                                {
                                    std::fs::write(
                                        out.join(format!("{k:05}-{j}.xml")),
                                        std::mem::take(x),
                                    )?;
                                }
                                rest.push_str(&format!("{item:?}\n"));
                            }
                        }
                        Err(e) => rest.push_str(&format!("reject: {e:?}\n")),
                    }
                    std::fs::write(out.join(format!("{k:05}.txt")), rest)?;
                    k += 1;
                }
            }
            eprintln!("{k} messages dumped into {}", out.display());
        }
    }
    Ok(())
}
