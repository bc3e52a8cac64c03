//! Command-line arguments of `image-builder`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use support::http::Url;

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
    /// inputs were built before and the image is still there (unless --force).
    Build(Box<BuildArgs>),
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

/// Where image-builder itself reaches Azure (to find the subscription a build goes to and to
/// check that a recorded image still exists). Production defaults; tests use loopback doubles.
#[derive(Debug, Args)]
pub struct AzureArgs {
    /// Azure Resource Manager.
    #[arg(long, value_name = "URL", default_value = crate::azure::DEFAULT_ARM_ENDPOINT)]
    pub arm_endpoint: Url,
    /// The Microsoft identity platform (client-secret login).
    #[arg(long, value_name = "URL", default_value = crate::azure::DEFAULT_LOGIN_ENDPOINT)]
    pub login_endpoint: Url,
    /// Azure Instance Metadata Service (managed identity tokens and the VM's subscription).
    #[arg(long, value_name = "URL", default_value = crate::azure::DEFAULT_IMDS_ENDPOINT)]
    pub imds_endpoint: Url,
    /// The Azure CLI, a path or a name on PATH (auth = "azure_cli").
    #[arg(long, value_name = "PATH", default_value = "az")]
    pub az_program: PathBuf,
    /// The first wait before retrying a throttled or failed Azure request (it doubles each
    /// time; a `Retry-After` from Azure wins).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub retry_delay_ms: u64,
}

impl AzureArgs {
    pub fn endpoints(&self) -> crate::azure::Endpoints {
        crate::azure::Endpoints {
            arm: self.arm_endpoint.clone(),
            login: self.login_endpoint.clone(),
            imds: self.imds_endpoint.clone(),
            az_program: self.az_program.clone(),
            retry: crate::azure::retry_policy(std::time::Duration::from_millis(
                self.retry_delay_ms,
            )),
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
    /// Print what was rendered as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub spec: SpecArgs,
    #[command(flatten)]
    pub packer: PackerArgs,
    /// Print the verdict as JSON on stdout (also when the spec or template is refused).
    #[arg(long)]
    pub json: bool,
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
    #[command(flatten)]
    pub azure: AzureArgs,
    /// Print the build record as JSON on stdout instead of the image id.
    #[arg(long)]
    pub json: bool,
}

fn duration(text: &str) -> Result<Duration, String> {
    crate::packer::parse_duration(text)
}
