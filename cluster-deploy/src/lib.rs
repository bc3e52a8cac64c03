//! Turn a cluster file into Azure Resource Manager deployments for Nomad scale sets.

pub mod cli;

/// Runs the tool for parsed command-line arguments.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let _ = cli;
    anyhow::bail!("cluster-deploy is not built yet")
}
