//! Command-line arguments of `cluster-deploy`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "cluster-deploy",
    version,
    about = "Turn a cluster file into Azure Resource Manager deployments for Nomad scale sets."
)]
pub struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}
