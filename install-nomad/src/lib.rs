//! Resolve, download, verify (signed SHA256SUMS) and atomically install a Nomad release.

pub mod cli;
pub mod release;
pub mod verify;

/// Runs the tool for parsed command-line arguments.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let _ = cli;
    anyhow::bail!("install-nomad is not built yet")
}
