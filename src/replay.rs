//! `dmpflow replay`: re-process a window of a stage's input (placeholder until implemented).

use std::process::ExitCode;

use anyhow::Result;

use crate::config::Settings;

#[derive(clap::Args)]
pub struct ReplayArgs {}

pub async fn replay(_settings: &Settings, _args: ReplayArgs) -> Result<ExitCode> {
    anyhow::bail!("dmpflow replay is not implemented yet")
}
