//! `dmpflow dlq`: inspect and replay the dead-letter queue (placeholder until implemented).

use std::process::ExitCode;

use anyhow::Result;

use crate::config::Settings;

#[derive(clap::Subcommand)]
pub enum DlqAction {
    /// Dead-lettered messages.
    List,
}

pub async fn dlq(_settings: &Settings, _action: DlqAction) -> Result<ExitCode> {
    anyhow::bail!("dmpflow dlq is not implemented yet")
}
