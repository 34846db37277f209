//! `dmpflow mllp`: the MLLP gateway (placeholder until implemented).

use std::process::ExitCode;

use anyhow::Result;

use crate::config::Settings;

#[derive(clap::Args)]
pub struct MllpArgs {}

pub async fn mllp(_settings: &Settings, _args: MllpArgs) -> Result<ExitCode> {
    anyhow::bail!("dmpflow mllp is not implemented yet")
}
