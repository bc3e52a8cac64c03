//! Render and drive Packer to bake Nomad machine images, reproducibly.

pub mod cli;

/// Runs the tool for parsed command-line arguments.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let _ = cli;
    anyhow::bail!("image-builder is not built yet")
}
