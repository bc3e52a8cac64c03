//! Boot-time configuration of a Nomad agent from Azure Instance Metadata.
//!
//! The flow, one module per step: [`cli`] parses the flags; [`metadata`] reads the instance
//! document (IMDS with retries, or a file); [`settings`] validates everything into one value;
//! [`render`] turns it into the agent configuration and the service definition (pure text);
//! [`apply`] writes the files under the root as one transaction; [`service`] starts Nomad,
//! leaving a running agent alone when nothing changed. [`rules`] and [`discover`] hold what
//! Nomad and go-discover accept; [`pending`] carries unfinished work to the next run;
//! [`report`] is the `--dry-run` plan.
//!
//! [`events`] is the other mode, `run-nomad watch-events`: the Scheduled Events watcher that the
//! boot run installs as a second service, which takes Nomad out gracefully before Azure deletes
//! or evicts the VM.
//!
//! With `--key-vault`, [`secrets`] fetches the cluster's secrets that `--tls-from-key-vault` and
//! `--gossip-key-from-key-vault` select, with the VM's managed identity, between reading the
//! metadata and resolving the settings; they are checked there and written with the
//! configuration, in the same transaction, so nothing is written or started without them.

pub mod apply;
pub mod cli;
pub mod discover;
pub mod events;
pub mod metadata;
pub mod pending;
pub mod render;
pub mod report;
pub mod rules;
pub mod secrets;
pub mod service;
pub mod settings;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use support::files::under_root;

use crate::metadata::{ImdsClient, Instance};
use crate::service::{Changes, ServiceManager};
use crate::settings::Facts;

/// Runs the tool for parsed command-line arguments.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    if let Some(cli::Command::WatchEvents(args)) = &cli.command {
        return events::run(args);
    }
    // Everything that can be checked without the metadata is checked first: a typo in a flag
    // should not wait for IMDS.
    settings::check_flags(&cli)?;
    settings::warn_about_flags(&cli);
    let root = settings::root(&cli)?;
    let exe = std::env::current_exe().context("failed to find run-nomad's own path")?;
    let exe_dir = exe.parent().unwrap_or(Path::new("/")).to_path_buf();
    let layout = settings::layout(&cli, &exe_dir)?;
    settings::check_install(&cli, &root, &layout)?;
    // `nomad version` runs while IMDS answers: the boot path waits for neither in turn.
    let version_probe = service::VersionProbe::start(&under_root(&root, &layout.nomad_binary()));

    let (instance, local_source) = if cli.skip_nomad_config {
        tracing::info!("--skip-nomad-config: not reading instance metadata");
        (None, None)
    } else {
        let (instance, source) = read_metadata(&cli)?;
        (Some(instance), source)
    };
    let fetched = fetch_secrets(&cli)?;
    let facts = Facts {
        instance: instance.as_ref(),
        local_source,
        exe: exe.clone(),
        exe_dir,
        nomad_version: version_probe.finish(),
        secrets: fetched.as_ref(),
    };
    let settings = settings::resolve(&cli, &facts)?;
    let files = render::files(&settings)?;
    let plan = apply::plan_with(&files, &settings.root, &settings.directories)?;
    let manager = ServiceManager::new(&settings);
    let marker = pending::Marker::new(&settings.root, &settings.layout);
    let mut owned: Vec<_> = plan.iter().map(|p| p.target.clone()).collect();
    owned.push(marker.path().to_path_buf());
    // A watcher an earlier run installed, now turned off with --no-watch-events.
    let stale_watcher = Some(under_root(&settings.root, &settings.watcher_file))
        .filter(|path| settings.watcher.is_none() && path.exists());

    if settings.dry_run {
        let earlier = marker.read()?;
        let changes = Changes::from_plan(&plan).union(earlier.unwrap_or_default());
        let shown = render::files_for_display(&settings)?;
        let mut remove = apply::stale_temporaries(&owned);
        remove.extend(stale_watcher.clone());
        let report = report::Plan {
            key_vault: fetched.as_ref().map(report::KeyVaultReport::new),
            directories: apply::missing_directories(&settings.directories, &settings.root),
            files: report::files(&plan, &shown),
            remove,
            pending: earlier,
            service: if settings.no_start {
                report::ServiceReport::NotTouched
            } else {
                service_report(&settings, &manager, changes, stale_watcher.is_some())
            },
        };
        if cli.json {
            print!("{}", report::json(&report));
        } else {
            print!("{}", report::text(&report));
        }
        return Ok(());
    }

    let _lock = pending::Lock::acquire(&settings.root, &settings.layout)?;
    apply::remove_stale_temporaries(&apply::stale_temporaries(&owned))?;
    let earlier = marker.read()?;
    let changing = Changes::from_plan(&plan);
    // Recorded before the first file is replaced, cleared only once the service has taken the
    // new files: a failed restart or a kill in between leaves the work for the next run.
    let to_apply = changing.union(earlier.unwrap_or_default());
    let forerunner = changing.any().then(|| marker.forerunner(to_apply));
    let created = apply::create_directories(&settings.directories, &settings.root)?;
    if let Err(error) = apply::apply(&plan, forerunner.as_ref()) {
        let restored = !matches!(error, apply::ApplyError::RollbackFailed { .. });
        if restored {
            apply::remove_directories(&created);
            if earlier.is_none() {
                marker.clear()?;
            }
        }
        return Err(error.into());
    }
    if settings.no_start {
        if let Some(path) = &stale_watcher {
            remove_file(path)?;
        }
        tracing::info!("--no-start: files written, the service is not touched");
        return Ok(());
    }
    if settings.root != Path::new("/") {
        tracing::warn!(
            "--root is {}, but the service commands act on this host",
            settings.root.display()
        );
    }
    if let Some(earlier) = earlier {
        if earlier.any() {
            tracing::info!("applying the changes an earlier run wrote but did not get started");
        }
    }
    let steps = manager
        .plan(to_apply)
        .context("failed to ask the init system whether Nomad is running")?;
    manager.run(&steps).context("failed to start Nomad")?;
    marker.clear()?;
    if let Some(path) = &stale_watcher {
        tracing::info!(
            "--no-watch-events: removing the Scheduled Events watcher an earlier run installed"
        );
        let (before, after) = service::watcher_removal(settings.service.init);
        manager
            .run(&before)
            .context("failed to stop the Scheduled Events watcher")?;
        remove_file(path)?;
        manager
            .run(&after)
            .context("failed to reload the init system after removing the watcher")?;
    }
    Ok(())
}

fn remove_file(path: &Path) -> anyhow::Result<()> {
    std::fs::remove_file(path).with_context(|| format!("failed to remove {}", path.display()))
}

/// With `--key-vault`: this role's selected secrets, fetched with the VM's managed identity
/// from the IMDS at `--imds-endpoint` (also with `--metadata-file`: the token still comes
/// from IMDS).
fn fetch_secrets(cli: &cli::Cli) -> anyhow::Result<Option<secrets::Fetched>> {
    let Some(source) = secrets::source(cli)? else {
        return Ok(None);
    };
    let fetched = secrets::fetch::fetch(&source, &cli.imds_endpoint, secrets::role(cli))?;
    Ok(Some(fetched))
}

fn read_metadata(cli: &cli::Cli) -> anyhow::Result<(Instance, Option<std::net::IpAddr>)> {
    if let Some(path) = &cli.metadata_file {
        let instance = metadata::read_file(path)?;
        return Ok((instance, None));
    }
    let client = ImdsClient::new(&cli.imds_endpoint, Duration::from_secs(cli.imds_timeout))?;
    let instance = client
        .fetch()
        .with_context(|| format!("failed to read the instance metadata from {}", client.url()))?;
    Ok((instance, client.local_source()))
}

fn service_report(
    settings: &settings::Settings,
    manager: &ServiceManager<'_>,
    changes: Changes,
    remove_watcher: bool,
) -> report::ServiceReport {
    let describe = |running: bool| -> Vec<String> {
        let state = service::Running {
            agent: running,
            watcher: running,
        };
        let init = settings.service.init;
        let mut steps = service::full_plan(init, changes, state, settings.watcher.is_some());
        if remove_watcher {
            let (before, after) = service::watcher_removal(init);
            steps.extend(before);
            steps.extend(after);
        }
        steps.iter().map(|s| manager.describe(s)).collect()
    };
    report::ServiceReport::Commands {
        if_running: describe(true),
        if_stopped: describe(false),
    }
}
