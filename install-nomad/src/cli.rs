//! Command-line arguments of `install-nomad`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "install-nomad",
    version,
    about = "Resolve, download, verify (signed SHA256SUMS) and atomically install a Nomad release."
)]
pub struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}
