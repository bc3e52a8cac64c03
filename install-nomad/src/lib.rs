//! Resolve, download, verify (signed SHA256SUMS) and atomically install a Nomad release, the
//! run-nomad binary, and optionally Consul and the CNI plugins.
//!
//! Modules, one domain each: [`boundary`] (rPGP's panics and error text kept from the user), [`release`] (names, URLs, `latest`), [`verify`] (signature and
//! checksum rules), [`download`] (HTTP/file fetching with retries and resume), [`limits`] (per-file deadline and
//! stall detection), [`archive`]
//! (safe extraction), [`cni`] (CNI names and pinned hashes), [`layout`] (where files go under a
//! root), [`users`] (the service account in the target's user database), [`receipt`] (what was
//! installed), [`transaction`] (all-or-nothing file placement), [`install`] (the whole run).

pub mod archive;
pub mod boundary;
pub mod cli;
pub mod cni;
pub mod download;
pub mod install;
pub mod layout;
pub mod limits;
pub mod receipt;
pub mod release;
pub mod stage;
pub mod transaction;
pub mod users;
pub mod verify;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;

use crate::install::{CniRequest, Request};
use crate::layout::{check_absolute, Layout};
use crate::release::{Arch, Source, VersionRequest};
use crate::verify::TrustedKeys;

/// Runs the tool for parsed command-line arguments.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let request = request(&cli)?;
    let outcome = install::install(&request)?;
    for line in &outcome.actions {
        tracing::info!("{line}");
    }
    if cli.json {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, &outcome)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout))
            .context("writing the result to stdout")?;
    }
    Ok(())
}

/// Turns the command line into an install request, checking every flag before anything runs.
pub fn request(cli: &cli::Cli) -> anyhow::Result<Request> {
    let nomad: VersionRequest = cli.version.parse().context("--version")?;
    let consul = cli
        .consul_version
        .as_deref()
        .map(|v| v.parse::<VersionRequest>().context("--consul-version"))
        .transpose()?;
    let arch = match &cli.arch {
        Some(a) => a.parse::<Arch>().context("--arch")?,
        None => crate::release::host_arch()?,
    };
    let source = Source::parse("--download-url", &cli.download_url)?;
    let cni_source = Source::parse("--cni-download-url", &cli.cni_download_url)?;
    let keys = match &cli.public_key {
        Some(path) => TrustedKeys::from_file(path).context("--public-key")?,
        None => TrustedKeys::hashicorp()?,
    };
    for (flag, path) in [
        ("--path", &cli.path),
        ("--system-bin-dir", &cli.system_bin_dir),
        ("--cni-path", &cli.cni_path),
        ("--consul-path", &cli.consul_path),
    ] {
        check_absolute(flag, path).map_err(anyhow::Error::msg)?;
    }
    let layout = Layout {
        root: cli.root.clone(),
        nomad_path: cli.path.clone(),
        system_bin_dir: cli.system_bin_dir.clone(),
        consul_path: cli.consul_path.clone(),
        cni_path: cli.cni_path.clone(),
    };
    let local = |s: &Source| s.base().scheme() == "file" || support::http::is_loopback(s.base());
    let local_mirrors = local(&source) && (cli.cni_version.is_none() || local(&cni_source));
    let run_nomad = match &cli.run_nomad {
        Some(path) => path.clone(),
        None => default_run_nomad()?,
    };
    Ok(Request {
        nomad,
        consul,
        cni: cli.cni_version.as_ref().map(|version| CniRequest {
            version: version.clone(),
            sha256: cli.cni_sha256.clone(),
        }),
        arch,
        source,
        cni_source,
        keys,
        layout,
        user: cli.user.clone(),
        create_user: !cli.skip_user,
        run_nomad,
        download: download::Options {
            attempts: cli.download_attempts,
            progress_bar: !cli.quiet && std::io::stderr().is_terminal(),
            no_proxy: local_mirrors,
            limits: crate::limits::Limits {
                timeout: cli.download_timeout,
                stall_window: cli.stall_timeout,
                min_speed: cli.stall_min_speed,
            },
        },
        commit_hook: None,
    })
}

/// `run-nomad` next to this executable, which is how the release bundles them.
fn default_run_nomad() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this executable's path")?;
    let candidate = exe.with_file_name("run-nomad");
    if candidate.is_file() {
        Ok(candidate)
    } else {
        anyhow::bail!(
            "no run-nomad binary given and none next to this executable ({} does not exist): pass --run-nomad FILE",
            candidate.display()
        )
    }
}
