//! Command-line arguments of `image-builder`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::spec::{Overrides, TargetKind};

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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render the Packer template, provisioning script and uploaded files into a directory.
    Render(RenderArgs),
    /// Render into a temporary directory and run `packer validate` on it.
    Validate(ValidateArgs),
    /// Render, validate and run `packer build`, then record the image; skipped when the same
    /// inputs were built before (unless --force).
    Build(BuildArgs),
}

/// Which spec, and the command-line values that override it.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// The image spec (image.toml).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Bake for this target instead of the spec's `target` (azure or local).
    #[arg(long, value_name = "TARGET")]
    pub target: Option<TargetKind>,
    /// Root directory of the local target (instead of [local] root).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The install-nomad binary to upload (default: [binaries] install_nomad, else the one
    /// next to image-builder).
    #[arg(long = "install-nomad", value_name = "PATH")]
    pub install_nomad: Option<PathBuf>,
    /// The run-nomad binary to upload (default: [binaries] run_nomad, else the one next to
    /// image-builder).
    #[arg(long = "run-nomad", value_name = "PATH")]
    pub run_nomad: Option<PathBuf>,
}

impl SpecArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            target: self.target,
            root: self.root.clone(),
            install_nomad: self.install_nomad.clone(),
            run_nomad: self.run_nomad.clone(),
        }
    }
}

/// Which Packer to run.
#[derive(Debug, Args)]
pub struct PackerArgs {
    /// The Packer binary: a path, or a name looked up on PATH.
    #[arg(long, value_name = "PATH", default_value = "packer")]
    pub packer_bin: PathBuf,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Directory to render into (created; replaced only if image-builder rendered it before).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    #[command(flatten)]
    pub packer: PackerArgs,
    /// Render for this Packer version instead of asking --packer-bin (1.7+ adds the
    /// `required_plugins` block Packer 1.6 rejects).
    #[arg(long, value_name = "VERSION")]
    pub packer_version: Option<String>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub packer: PackerArgs,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub packer: PackerArgs,
    /// Build even if these inputs were built before, replacing an existing image of the same
    /// name (passes -force to Packer).
    #[arg(long)]
    pub force: bool,
    /// Where build records live (default: `.image-builder` beside the spec).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Stop the build (SIGTERM to Packer, so it cleans up) when it runs longer than this.
    #[arg(long, value_name = "DURATION", default_value = "2h", value_parser = duration)]
    pub timeout: Duration,
    /// How long Packer gets to clean up after being asked to stop, before it is killed.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = duration)]
    pub cleanup_grace: Duration,
}

fn duration(text: &str) -> Result<Duration, String> {
    crate::packer::parse_duration(text)
}
