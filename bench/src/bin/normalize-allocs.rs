//! normalize-allocs: how many heap allocations `normalize::normalize` makes per message, per
//! flow, on the fixtures of the criterion bench (`dmpflow_bench::fixtures`) or on a file of
//! messages; for lab also the share of the typed record (`records::lab`) and of the CR-BIO
//! writer (`cda::lab::write`). A count, not a time: it does not move with the host's speed,
//! so a change that allocates less shows here exactly, before its time is measured (paired)
//! with `normalize-flows rate`.
//!
//! ```text
//! normalize-allocs [--flow lab|imaging|pharmacy|cancer|all] [--feed lab --file msgs.hl7]
//! ```
//!
//! Its allocator counts every `alloc` and `realloc` (relaxed atomic counters) and hands the
//! work to mimalloc, the allocator of the `dmpflow` binary; it is a separate binary so that
//! `normalize-flows`' timings never pay for the counting.

use std::alloc::{GlobalAlloc, Layout};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use anyhow::{Context, Result, bail};
use clap::Parser;
use dmpflow_bench::fixtures::{FLOWS, messages, pool};
use dmpflow_normalize::mapping::records;
use dmpflow_normalize::{Config, normalize};
use dmpflow_schemas::Feed;

/// mimalloc, with every allocation counted.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to mimalloc unchanged; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Parser)]
#[command(about = "Heap allocations per message of normalize, per flow (see the file's doc)")]
struct Cli {
    /// lab, imaging, pharmacy, cancer or all (the fixtures of the criterion bench).
    #[arg(long, default_value = "all")]
    flow: String,
    /// Count the messages of this file instead of the fixtures (with --feed).
    #[arg(long, requires = "feed")]
    file: Option<PathBuf>,
    /// The feed of --file's messages: lab, imaging, pharmacy or cancer.
    #[arg(long)]
    feed: Option<String>,
}

/// Allocations made by `f`.
fn count(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.load(Relaxed);
    f();
    ALLOCATIONS.load(Relaxed) - before
}

fn report(name: &str, feed: Feed, msgs: &[Vec<u8>]) -> Result<()> {
    let cfg = Config::default();
    let (mut total, mut record, mut writer, mut counted) = (0, 0, 0, 0u64);
    for m in msgs {
        // Messages normalize refuses (the file's bad inputs) are left out of the count.
        if normalize(feed, m, &cfg).is_err() {
            continue;
        }
        counted += 1;
        total += count(|| drop(normalize(feed, m, &cfg)));
        if feed == Feed::Lab {
            let mut report = None;
            record += count(|| report = records::lab(m, &cfg).ok());
            let report = report.context("records::lab refused what normalize took")?;
            writer += count(|| drop(dmpflow_normalize::cda::lab::write(&report)));
        }
    }
    if counted == 0 {
        bail!("{name}: normalize took none of the {} messages", msgs.len());
    }
    let per = |n: u64| n as f64 / counted as f64;
    print!(
        "{name}: {:.0} allocations per message ({counted} messages)",
        per(total)
    );
    if feed == Feed::Lab {
        print!(
            "; the record {:.0}, the CR-BIO writer {:.0}",
            per(record),
            per(writer)
        );
    }
    println!();
    Ok(())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(file) = &cli.file {
        let name = cli.feed.as_deref().unwrap_or_default();
        let feed: Feed = name.parse().map_err(anyhow::Error::msg)?;
        let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        return report(name, feed, &messages(&data));
    }
    let mut any = false;
    for (name, feed, make) in FLOWS {
        if cli.flow == "all" || cli.flow == name {
            any = true;
            report(name, feed, &pool(make))?;
        }
    }
    if !any {
        bail!(
            "unknown flow {} (lab, imaging, pharmacy, cancer or all)",
            cli.flow
        );
    }
    Ok(())
}
