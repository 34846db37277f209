//! `dmpflow replay`: re-process a window of one stage's input after a fix, then exit with
//! a summary. The work is `dmpflow_pipeline::replay` (the live stage's own driver over a
//! bounded window, through a group of its own that never commits).

use std::process::ExitCode;

use anyhow::Result;
use dmpflow_pipeline::config::Settings;
use dmpflow_pipeline::replay::{self, Request};
use dmpflow_pipeline::stages::StageName;
use dmpflow_schemas::Feed;

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// The stage whose input is re-processed: normalize, route or store.
    #[arg(long, value_enum, value_parser = one_stage)]
    stage: StageName,
    /// Start: an offset (every partition), or a time (RFC 3339, or relative: 15m, 2h, 1d).
    #[arg(long)]
    from: String,
    /// End (exclusive) as a time; default: the high watermarks at start.
    #[arg(long)]
    to: Option<String>,
    /// Only this feed (normalize: its topic; route/store: the `dmp.feed` header).
    #[arg(long)]
    feed: Option<Feed>,
    /// Accept the test INS OIDs when re-routing (as DMPFLOW_ACCEPT_TEST_OIDS=1): the demo
    /// and test stacks only, never production.
    #[arg(long)]
    pub accept_test_oids: bool,
}

/// `--stage`: one of the stages, not `all` (a replay re-processes one stage's input).
fn one_stage(s: &str) -> Result<StageName, String> {
    use clap::ValueEnum;
    match StageName::from_str(s, true)? {
        StageName::All => Err("replay runs one stage: normalize, route or store".into()),
        stage => Ok(stage),
    }
}

pub async fn replay(settings: &Settings, args: ReplayArgs) -> Result<ExitCode> {
    let stage = args.stage;
    let req = Request {
        stage,
        from: args.from,
        to: args.to,
        feed: args.feed,
    };
    let shutdown = dmpflow_pipeline::shutdown_token();
    let summary = replay::replay(settings, &req, &shutdown, |s| {
        eprintln!(
            "replaying {} offset(s) of {} over {} partition(s) with group {}",
            s.planned,
            stage.as_str(),
            s.partitions,
            s.group
        );
    })
    .await?;
    if summary.idle_stop {
        eprintln!("nothing more arrived for 10 s; stopping");
    }
    if summary.interrupted {
        eprintln!(
            "interrupted: the batch in flight was not committed (replaying it again is safe)"
        );
    }
    let counts: Vec<String> = summary
        .outcomes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!(
        "replayed {} message(s) of stage {} (group {}); skipped {} of other feeds; outcomes: {}",
        summary.replayed,
        stage.as_str(),
        summary.group,
        summary.filtered,
        if counts.is_empty() {
            "none".to_string()
        } else {
            counts.join(" ")
        }
    );
    Ok(ExitCode::SUCCESS)
}
