//! Command-line arguments of `image-builder`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "image-builder",
    version,
    about = "Render and drive Packer to bake Nomad machine images, reproducibly."
)]
pub struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}
