//! The Scheduled Events watcher's service: the `run-nomad watch-events` command line the boot
//! run installs beside Nomad, from the same settings as the agent, so the watcher reaches the
//! agent as it is configured (HTTPS with the agent's CA and certificate, checked against the
//! `<role>.<region>.nomad` name its certificate holds; the ACL token file given for it) and
//! stops it through the same init system.

use std::path::{Path, PathBuf};

use super::{absolute_path, invalid, require_file, Agent, SettingsError};
use crate::cli::{Cli, InitSystem};
use crate::render::escape;

/// The watcher's systemd unit.
pub const WATCHER_UNIT: &str = "nomad-scheduled-events.service";
/// The watcher's supervisor program, and its file in the supervisor include directory.
pub const WATCHER_PROGRAM: &str = "nomad-scheduled-events";
pub const WATCHER_PROGRAM_FILE: &str = "nomad-scheduled-events.conf";

/// Nomad's default HTTP port, which run-nomad's configuration keeps.
pub const NOMAD_HTTP_PORT: u16 = 4646;

/// The watcher's state file in the config directory: a dot-file without `.hcl` or `.json`, so
/// Nomad does not load it (as the pending marker).
pub const STATE_FILE: &str = ".watch-events.state";

/// The watcher service, when installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watcher {
    /// The command line, the program (run-nomad's own production path) first.
    pub command: Vec<String>,
}

/// The production path of the running run-nomad: under `--root` it maps back, as the layout's
/// defaults do.
pub fn production_exe(root: &Path, exe: &Path) -> PathBuf {
    match exe.strip_prefix(root) {
        Ok(rel) if root != Path::new("/") => Path::new("/").join(rel),
        _ => exe.to_path_buf(),
    }
}

/// The file of the watcher's service definition (production path), whether or not it is
/// installed (a run with --no-watch-events removes an earlier one).
pub fn service_file(cli: &Cli) -> Result<PathBuf, SettingsError> {
    Ok(match cli.init {
        InitSystem::Systemd => {
            absolute_path("--systemd-unit-dir", &cli.systemd_unit_dir)?.join(WATCHER_UNIT)
        }
        InitSystem::Supervisor => absolute_path("--supervisor-conf-dir", &cli.supervisor_conf_dir)?
            .join(WATCHER_PROGRAM_FILE),
    })
}

/// The watcher for these settings, or `None` with `--no-watch-events` or `--skip-nomad-config`
/// (then run-nomad does not know how the agent is reached). Every value is checked against
/// what the service definition can carry, naming its flag.
pub fn watcher(
    cli: &Cli,
    root: &Path,
    agent: Option<&Agent>,
    exe: &Path,
    config_dir: &Path,
) -> Result<Option<Watcher>, SettingsError> {
    if cli.no_watch_events {
        return Ok(None);
    }
    let Some(agent) = agent else {
        tracing::warn!(
            "--skip-nomad-config: the Scheduled Events watcher is not installed (run-nomad does \
             not know how the agent is reached); run `run-nomad watch-events` yourself"
        );
        return Ok(None);
    };
    let program = exe
        .to_str()
        .ok_or_else(|| invalid("run-nomad's own path", exe.display(), "is not UTF-8"))?
        .to_string();
    let mut words: Vec<(&str, String)> = vec![
        ("run-nomad's own path", program),
        ("", "watch-events".to_string()),
    ];
    if agent.server.is_some() {
        words.push(("", "--server".to_string()));
    }
    if agent.client.is_some() {
        words.push(("", "--client".to_string()));
    }
    words.push(("", "--imds-endpoint".to_string()));
    words.push(("--imds-endpoint", cli.imds_endpoint.clone()));
    let scheme = if agent.tls.is_some() { "https" } else { "http" };
    words.push(("", "--nomad-address".to_string()));
    words.push(("", format!("{scheme}://127.0.0.1:{NOMAD_HTTP_PORT}")));
    if let Some(tls) = &agent.tls {
        let text = |p: &PathBuf| p.to_string_lossy().into_owned();
        words.push(("", "--nomad-ca-file".to_string()));
        words.push(("--tls-ca-file", text(&tls.ca_file)));
        words.push(("", "--nomad-client-cert".to_string()));
        words.push(("--tls-cert-file", text(&tls.cert_file)));
        words.push(("", "--nomad-client-key".to_string()));
        words.push(("--tls-key-file", text(&tls.key_file)));
        // verify_server_hostname: the agent's certificate names its role and region.
        let role = if agent.server.is_some() {
            "server"
        } else {
            "client"
        };
        words.push(("", "--nomad-tls-server-name".to_string()));
        words.push(("--region", format!("{role}.{}.nomad", agent.region)));
    }
    match &cli.watch_events_token_file {
        Some(file) => {
            let path = require_file("--watch-events-token-file", root, file)?;
            words.push(("", "--nomad-token-file".to_string()));
            words.push((
                "--watch-events-token-file",
                path.to_string_lossy().into_owned(),
            ));
        }
        None if agent.acl && agent.client.is_some() => {
            let self_drains = agent
                .client
                .as_ref()
                .is_some_and(|c| c.drain_on_shutdown.is_some());
            if self_drains {
                // The agent drains itself on SIGTERM with its node identity: no token needed.
                words.push(("", "--self-drain".to_string()));
            } else {
                tracing::warn!(
                    "ACLs are on, there is no --watch-events-token-file and this Nomad has no \
                     drain_on_shutdown (1.5.4+, with leave_on_terminate): the Scheduled Events \
                     watcher cannot drain this client, only stop Nomad, before Azure deletes \
                     the VM"
                )
            }
        }
        None => {}
    }
    words.push(("", "--state-file".to_string()));
    words.push((
        "--config-dir",
        config_dir.join(STATE_FILE).to_string_lossy().into_owned(),
    ));
    words.push(("", "--init".to_string()));
    match cli.init {
        InitSystem::Systemd => {
            words.push(("", "systemd".to_string()));
            if cli.systemctl != Path::new("systemctl") {
                words.push(("", "--systemctl".to_string()));
                words.push(("--systemctl", cli.systemctl.to_string_lossy().into_owned()));
            }
        }
        InitSystem::Supervisor => {
            words.push(("", "supervisor".to_string()));
            if cli.supervisorctl != Path::new("supervisorctl") {
                words.push(("", "--supervisorctl".to_string()));
                words.push((
                    "--supervisorctl",
                    cli.supervisorctl.to_string_lossy().into_owned(),
                ));
            }
        }
    }
    for (i, (flag, word)) in words.iter().enumerate() {
        let fits = match cli.init {
            InitSystem::Systemd => escape::unit_exec_word(word, i == 0).map(|_| ()),
            InitSystem::Supervisor => escape::supervisor_command([word.as_str()]).map(|_| ()),
        };
        if let Err(e) = fits {
            let flag = if flag.is_empty() {
                "watch-events"
            } else {
                flag
            };
            return Err(invalid(
                flag,
                word,
                format!(
                    "{e} (the Scheduled Events watcher's command line; --no-watch-events leaves \
                     it out)"
                ),
            ));
        }
    }
    Ok(Some(Watcher {
        command: words.into_iter().map(|(_, w)| w).collect(),
    }))
}
