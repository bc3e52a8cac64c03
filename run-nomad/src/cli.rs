//! Command-line arguments of `run-nomad`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "run-nomad",
    version,
    about = "Boot-time configuration of a Nomad agent from Azure Instance Metadata."
)]
pub struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}
