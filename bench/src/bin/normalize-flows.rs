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
//! normalize-flows reference [--seconds 1]
//! ```
//!
//! `rate` prints one line per flow: messages per CPU-second, output (CDA) bytes per message
//! and output MB per CPU-second, and the host reference measured between its passes
//! ([`HostReference`]) with the rate divided by it, which compares runs made at different
//! hours (its spread over 10 runs: 1% against the rate's 6%). Run it several times,
//! alternating the builds compared. `reference` prints the reference alone (MB/s), for the
//! shell benchmarks (`scripts/bench`, `bench/stage-cpu`).
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
use dmpflow_bench::fixtures::{FLOWS, POOL, messages, pool};
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
    /// The host reference alone (zstd level 1 + SHA-256 of a fixed text, MB per
    /// CPU-second): how fast this host runs now, for benchmarks run at other hours.
    Reference {
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
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

/// Process CPU time (user + system), seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct we pass, which lives on our stack.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
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
    let mut reference = HostReference::new();
    let wall = std::time::Instant::now();
    let mut cpu = 0.0;
    let mut n = 0;
    while cpu < seconds {
        let t0 = cpu_seconds();
        pass(&mut n);
        cpu += cpu_seconds() - t0;
        reference.run_once();
    }
    let wall: Duration = wall.elapsed();
    let per_msg_out = out_bytes as f64 / msgs.len() as f64;
    let rate = n as f64 / cpu;
    let reference = reference.mb_per_cpu_second();
    println!(
        "{name}: {rate:.0} msg/s per CPU-second ({n} messages, {cpu:.2} s CPU, {:.2} s wall); \
         in {:.0} B/msg; out {per_msg_out:.0} B/msg, {:.1} MB/s; host reference {reference:.0} MB/s, \
         {:.1} msg per reference MB",
        wall.as_secs_f64(),
        in_bytes as f64 / msgs.len() as f64,
        rate * per_msg_out / 1e6,
        rate / reference,
    );
    Ok(())
}

/// How fast this host runs right now, measured between the passes of a rate (so both see the
/// same neighbours): zstd level 1 and SHA-256 over a fixed 32 KiB XML-like text, with the
/// pinned crates (not dmpflow's code, so a change to dmpflow never moves it).
///
/// Why: this shared 2-core host's speed drifts by up to 2x over hours (bench/ANALYSIS.md
/// "Session 16": normalize's code unchanged since session 10 measured 21.9k lab msg/s then,
/// 8.7-15.3k in session 16). A rate divided by the reference ("msg per reference MB") compares
/// runs made at different hours; the rate alone compares only alternated runs.
struct HostReference {
    text: Vec<u8>,
    packer: zstd::bulk::Compressor<'static>,
    cpu: f64,
    bytes: u64,
}

impl HostReference {
    fn new() -> HostReference {
        // A deterministic CDA-like text: tags, OIDs, codes and numbers from a fixed LCG.
        let mut text = String::with_capacity(33 * 1024);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut i = 0u64;
        while text.len() < 32 * 1024 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let (a, b) = ((x >> 33) % 100_000, (x >> 17) % 1000);
            text.push_str(&format!(
                "<observation classCode=\"OBS\" moodCode=\"EVN\">\n<templateId root=\"1.3.6.1.4.1.19376.1.3.1.6\"/>\n\
                 <id root=\"2.25.{a}{i}\"/>\n<code code=\"{a}-{}\" codeSystem=\"2.16.840.1.113883.6.1\"/>\n\
                 <value xsi:type=\"PQ\" value=\"{b}.{}\" unit=\"mmol/L\"/>\n</observation>\n",
                b % 10,
                i % 10
            ));
            i += 1;
        }
        text.truncate(32 * 1024);
        HostReference {
            text: text.into_bytes(),
            packer: zstd::bulk::Compressor::new(1).expect("a zstd context"),
            cpu: 0.0,
            bytes: 0,
        }
    }

    fn run_once(&mut self) {
        use sha2::Digest;
        let t0 = cpu_seconds();
        black_box(self.packer.compress(black_box(&self.text)).expect("zstd"));
        black_box(sha2::Sha256::digest(black_box(&self.text)));
        self.cpu += cpu_seconds() - t0;
        self.bytes += self.text.len() as u64;
    }

    fn mb_per_cpu_second(&self) -> f64 {
        self.bytes as f64 / self.cpu / 1e6
    }
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Reference { seconds } => {
            let mut reference = HostReference::new();
            let t0 = cpu_seconds();
            while cpu_seconds() - t0 < seconds {
                reference.run_once();
            }
            println!("{:.0}", reference.mb_per_cpu_second());
        }
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
                    feed_name.parse::<Feed>().map_err(anyhow::Error::msg)?,
                    &msgs,
                    seconds,
                    records_only,
                );
            }
            let mut any = false;
            for (name, f, make) in FLOWS {
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
            let Some(&(_, _, make)) = FLOWS.iter().find(|(name, ..)| *name == flow) else {
                bail!("unknown flow {flow}");
            };
            let all: Vec<String> = (0..POOL).map(make).collect();
            std::fs::write(&out, all.join("\n"))?;
        }
        Cmd::Dump {
            feed: f,
            out,
            files,
        } => {
            let f = f.parse::<Feed>().map_err(anyhow::Error::msg)?;
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
