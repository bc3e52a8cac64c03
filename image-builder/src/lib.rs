//! Render and drive Packer to bake Nomad machine images, reproducibly.
//!
//! - [`spec`]: `image.toml`, validated, resolved with the command line into settings.
//! - [`template`]: the Packer template and provisioning script rendered from `packer/`.
//! - [`binaries`]: the install-nomad and run-nomad binaries, checked for the target CPU.
//! - [`bundle`]: the rendered build directory, assembled in memory, written all at once.
//! - [`packer`]: the Packer binary: version, init, validate, build (signals, timeout).
//! - [`machine_readable`]: Packer's `-machine-readable` stream, parsed.
//! - [`record`]: inputs and their hashes, Packer's manifest read back, the build record.
//! - [`azure`]: image-builder's own Azure calls: the effective subscription, ARM reads of images.
//! - [`recheck`]: a recorded image checked before a build is skipped on its strength.
//! - [`bake`]: the commands, end to end.

pub mod azure;
pub mod bake;
pub mod binaries;
pub mod bundle;
pub mod cli;
pub mod machine_readable;
pub mod packer;
pub mod recheck;
pub mod record;
pub mod spec;
pub mod template;

/// Runs the tool for parsed command-line arguments.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match &cli.command {
        cli::Command::Render(args) => bake::render(args),
        cli::Command::Validate(args) => bake::validate(args),
        cli::Command::Build(args) => bake::build(args),
    }
}
