//! Boot-time configuration of a Nomad agent from Azure Instance Metadata.

pub mod cli;

/// Runs the tool for parsed command-line arguments.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let _ = cli;
    anyhow::bail!("run-nomad is not built yet")
}
