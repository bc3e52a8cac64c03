//! `run-nomad watch-events`: the Scheduled Events watcher run-nomad installs beside Nomad.
//!
//! Azure tells a VM ahead of time that it is about to be deleted (a scale-in, an instance
//! delete, a `roll`: `Terminate`, with the scale set's `notBeforeTimeout` of notice) or evicted
//! (a Spot VM: `Preempt`, about 30 seconds) through IMDS Scheduled Events. The watcher takes
//! Nomad out gracefully in that window (a client is drained, a server stopped so it leaves
//! Raft) and then approves the event so Azure need not wait out the rest.
//!
//! One module per concern: [`document`] (the document and what an event means for this VM,
//! pure), [`timeline`] (what to do by when before `NotBefore`, pure), [`imds`] (the endpoint),
//! [`nomad`] (the calls to the local agent, through `support::nomad`), [`agent`] (stopping and
//! starting Nomad through its service manager), [`state`] (what was done, across restarts),
//! [`clock`], and [`watch`] (the loop). Sources: Microsoft's "Scheduled Events for Linux VMs"
//! ([SE]) and "Terminate notification for Azure Virtual Machine Scale Set instances" ([TN]),
//! cited where used.

pub mod agent;
pub mod clock;
pub mod document;
pub mod imds;
pub mod nomad;
pub mod state;
pub mod timeline;
pub mod watch;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use support::secret::Secret;

use crate::cli::{InitSystem, WatchArgs};
use crate::metadata::ImdsClient;

/// Reads an ACL token file: trimmed, not empty; a file others may read is warned about.
pub fn read_token(path: &Path) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --nomad-token-file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("--nomad-token-file {} is empty", path.display());
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(
                "--nomad-token-file {} can be read by every user: make it 0600",
                path.display()
            );
        }
    }
    Ok(Secret::new(token.to_string()))
}

/// The watcher's settings from its flags.
pub fn config(args: &WatchArgs) -> watch::Config {
    watch::Config {
        server: args.server,
        client: args.client,
        poll_interval: args.poll_interval.max(Duration::from_millis(100)),
        max_backoff: args.max_backoff.max(args.poll_interval),
        margins: timeline::Margins {
            approval: args.approval_margin,
            stop_timeout: args.stop_timeout,
            kill_allowance: args.kill_allowance,
        },
        self_drain: args.self_drain,
        ..watch::Config::default()
    }
}

/// The local agent's API settings from the flags (the token read from its file).
pub fn nomad_access(args: &WatchArgs) -> anyhow::Result<nomad::NomadAccess> {
    // The address alone: the client adds /v1/... itself.
    let address = support::nomad::settings::parse_address(&args.nomad_address, "--nomad-address")?;
    let token = args
        .nomad_token_file
        .as_deref()
        .map(read_token)
        .transpose()?;
    Ok(nomad::NomadAccess {
        address,
        ca_file: args.nomad_ca_file.clone(),
        client_cert: args.nomad_client_cert.clone(),
        client_key: args.nomad_client_key.clone(),
        tls_server_name: args.nomad_tls_server_name.clone(),
        token,
    })
}

/// Runs the watcher until SIGTERM or SIGINT.
pub fn run(args: &WatchArgs) -> anyhow::Result<()> {
    let config = config(args);
    let events = imds::EventsClient::new(
        &args.imds_endpoint,
        imds::Timeouts {
            first: args.first_request_timeout,
            normal: args.request_timeout,
        },
    )
    .map_err(anyhow::Error::msg)?;
    // The client is built (its files read) before anything else, so a bad flag fails at once.
    let nomad = if args.client {
        Some(nomad::LocalNomad::new(&nomad_access(args)?).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    let program = match args.init {
        InitSystem::Systemd => args.systemctl.clone(),
        InitSystem::Supervisor => args.supervisorctl.clone(),
    };
    let service = agent::InitService {
        init: args.init,
        program,
    };
    // `Resources` names VMs by `compute.name` ([TN]); Nomad knows this agent by `compute.vmId`.
    let metadata = ImdsClient::new(&args.imds_endpoint, Duration::from_secs(args.imds_timeout))?;
    let instance = metadata
        .fetch()
        .with_context(|| format!("failed to read this VM's name from {}", metadata.url()))?;
    let identity = watch::Identity {
        vm_name: instance.compute.name.clone(),
        agent_name: instance.compute.vm_id.clone(),
    };
    if identity.vm_name.is_empty() {
        bail!(
            "the instance metadata's compute.name is empty: cannot tell which events are this VM's"
        );
    }
    // Until here a stop signal simply ends the process; from here on it ends the loop between
    // steps, so a stop never cuts an approval or a state write in half.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("failed to install the signal handlers")?;
    }
    let clock = clock::SystemClock::new(Arc::clone(&stop));
    let mut watcher = watch::Watcher::new(
        config,
        identity,
        events,
        nomad,
        &service,
        &clock,
        state::StateFile::new(&args.state_file),
    );
    watcher.run(&|| !stop.load(Ordering::SeqCst));
    tracing::info!("asked to stop: the watcher exits");
    Ok(())
}
