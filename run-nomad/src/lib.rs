//! Boot-time configuration of a Nomad agent from Azure Instance Metadata.
//!
//! The flow, one module per step: [`cli`] parses the flags; [`metadata`] reads the instance
//! document (IMDS with retries, or a file); [`settings`] validates everything into one value;
//! [`render`] turns it into the agent configuration and the service definition (pure text);
//! [`apply`] writes the files under the root as one transaction; [`service`] starts Nomad,
//! leaving a running agent alone when nothing changed.

pub mod apply;
pub mod cli;
pub mod metadata;
pub mod render;
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
    // Everything that can be checked without the metadata is checked first: a typo in a flag
    // should not wait for IMDS.
    settings::check_flags(&cli)?;
    settings::warn_about_flags(&cli);
    let root = settings::root(&cli)?;
    let exe = std::env::current_exe().context("failed to find run-nomad's own path")?;
    let exe_dir = exe.parent().unwrap_or(Path::new("/")).to_path_buf();
    let layout = settings::layout(&cli, &exe_dir)?;
    settings::check_install(&cli, &root, &layout)?;
    let nomad_version = service::installed_version(&under_root(&root, &layout.nomad_binary()));

    let (instance, local_source) = if cli.skip_nomad_config {
        tracing::info!("--skip-nomad-config: not reading instance metadata");
        (None, None)
    } else {
        let (instance, source) = read_metadata(&cli)?;
        (Some(instance), source)
    };
    let facts = Facts {
        instance: instance.as_ref(),
        local_source,
        exe_dir,
        nomad_version,
    };
    let settings = settings::resolve(&cli, &facts)?;
    let files = render::files(&settings)?;
    let plan = apply::plan(&files, &settings.root)?;
    let manager = ServiceManager::new(&settings);

    if settings.dry_run {
        let shown = render::files_for_display(&settings)?;
        print!("{}", apply::describe(&plan, &shown));
        let changes = Changes {
            agent_config: plan
                .iter()
                .any(|p| p.file.kind == render::FileKind::AgentConfig && p.content_changed()),
            service_definition: plan
                .iter()
                .any(|p| p.file.kind != render::FileKind::AgentConfig && p.content_changed()),
        };
        if settings.no_start {
            println!("would not touch the service (--no-start)");
        } else {
            print_service_plan(&settings, &manager, changes);
        }
        return Ok(());
    }

    let outcomes = apply::apply(&plan)?;
    if settings.no_start {
        tracing::info!("--no-start: files written, the service is not touched");
        return Ok(());
    }
    if settings.root != Path::new("/") {
        tracing::warn!(
            "--root is {}, but the service commands act on this host",
            settings.root.display()
        );
    }
    let changes = Changes::from_outcomes(&outcomes);
    let steps = manager
        .plan(changes)
        .context("failed to ask the init system whether Nomad is running")?;
    manager.run(&steps).context("failed to start Nomad")?;
    Ok(())
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

fn print_service_plan(
    settings: &settings::Settings,
    manager: &ServiceManager<'_>,
    changes: Changes,
) {
    let describe = |running: bool| -> Vec<String> {
        let steps = match settings.service.init {
            cli::InitSystem::Systemd => service::systemd_plan(changes, running),
            cli::InitSystem::Supervisor => service::supervisor_plan(changes, running),
        };
        steps.iter().map(|s| manager.describe(s)).collect()
    };
    let if_running = describe(true);
    let if_stopped = describe(false);
    if if_running == if_stopped {
        for line in if_stopped {
            println!("would run: {line}");
        }
    } else {
        println!("if Nomad is running:");
        if if_running.is_empty() {
            println!("    would run nothing (files unchanged)");
        }
        for line in if_running {
            println!("    would run: {line}");
        }
        println!("if Nomad is not running:");
        for line in if_stopped {
            println!("    would run: {line}");
        }
    }
}
