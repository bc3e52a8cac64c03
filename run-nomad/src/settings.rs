//! Validated inputs: the command line and the instance metadata turned into one [`Settings`]
//! value that the renderers and the service step read. Every check that can reject a run
//! happens here, before anything is written, and every error names the flag, file or metadata
//! field involved.
//!
//! Paths given on the command line (and the defaults) are production paths: they are what the
//! generated files refer to. With `--root DIR` run-nomad reads and writes them under DIR, and
//! looks users up in `DIR/etc/passwd` and `DIR/etc/group` (as `systemd-sysusers --root` does).

use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use support::files::under_root;
/// The gossip key is one; `expose` is called only where default.hcl is written.
pub use support::secret::Secret;

use crate::cli::{Cli, InitSystem};
use crate::metadata::{Instance, NetworkError};

mod accounts;
mod agent;
mod flags;
mod values;
pub mod watcher;

pub use accounts::Account;
use accounts::{account_name, lookup_user, UserQuery};
use agent::{agent, read_gossip_key, warn_if_world_readable};
pub use agent::{drain_deadline, lifecycle};
pub use flags::{check_flags, warn_about_flags};
pub use values::{environment, gossip_key, key_value, meta, systemd_output, GOSSIP_KEY_BYTES};

/// Where Consul is looked for when no discovery flag is given: the original script's block.
pub const DEFAULT_CONSUL_ADDRESS: &str = "127.0.0.1:8500";

/// The systemd unit's file name (the AWS sibling's `/etc/systemd/system/nomad.service`).
pub const SYSTEMD_UNIT_NAME: &str = "nomad.service";
/// The supervisor program's file name (the original's `/etc/supervisor/conf.d/run-nomad.conf`).
pub const SUPERVISOR_PROGRAM_NAME: &str = "run-nomad.conf";

/// A rejected input: it names the flag, file or metadata field.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("invalid {flag} {value:?}: {reason}")]
    Invalid {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Missing(String),
    #[error("{what} {path}: {cause}", path = path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        // In the message, not the error chain, so the report shows it once.
        cause: std::io::Error,
    },
    #[error("no advertise address in the instance metadata: {0}")]
    Network(#[from] NetworkError),
    /// A value fetched with --key-vault that Nomad could not use (it never holds the value).
    #[error("{0}; nothing was written and Nomad was not started")]
    Secret(#[from] crate::secrets::check::Refused),
}

fn invalid(flag: &str, value: impl fmt::Display, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The Nomad install layout, as production paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
    /// Certificates and keys fetched with `--key-vault`.
    pub tls_dir: PathBuf,
    /// The gossip key fetched with `--key-vault`.
    pub secrets_dir: PathBuf,
}

impl Layout {
    /// The agent configuration run-nomad writes.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("default.hcl")
    }

    /// The optional environment file the systemd unit reads (the packaged unit's
    /// `/etc/nomad.d/nomad.env`, kept beside our config; Nomad itself ignores `.env` files).
    /// The operator's: run-nomad never writes it.
    pub fn environment_file(&self) -> PathBuf {
        self.config_dir.join("nomad.env")
    }

    /// The environment file run-nomad writes from `--environment` (0600 root:root), which the
    /// unit reads after the operator's, so a flag wins.
    pub fn run_environment_file(&self) -> PathBuf {
        self.config_dir.join("run-nomad.env")
    }

    pub fn nomad_binary(&self) -> PathBuf {
        self.bin_dir.join("nomad")
    }
}

/// How the agent finds the servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Through a Consul agent (`consul { address = ... }`), Nomad's own auto-join.
    Consul { address: String },
    /// `server_join { retry_join = [...] }` with the given addresses or go-discover strings.
    RetryJoin(Vec<String>),
    /// go-discover's Azure provider over a Uniform scale set, with the managed identity.
    ScaleSet {
        subscription_id: String,
        resource_group: String,
        scale_set: String,
    },
    /// go-discover's Azure provider over network-interface tags, with the managed identity.
    Tag {
        subscription_id: String,
        tag_name: String,
        tag_value: String,
    },
}

impl Discovery {
    /// The `retry_join` entries, if this mode uses `server_join`.
    pub fn retry_join(&self) -> Vec<String> {
        match self {
            Discovery::Consul { .. } => Vec::new(),
            Discovery::RetryJoin(addresses) => addresses.clone(),
            // hashicorp/go-discover provider/azure: the two exclusive forms.
            Discovery::ScaleSet {
                subscription_id,
                resource_group,
                scale_set,
            } => vec![crate::discover::format(&[
                ("provider", "azure"),
                ("resource_group", resource_group),
                ("vm_scale_set", scale_set),
                ("subscription_id", subscription_id),
            ])],
            Discovery::Tag {
                subscription_id,
                tag_name,
                tag_value,
            } => vec![crate::discover::format(&[
                ("provider", "azure"),
                ("tag_name", tag_name),
                ("tag_value", tag_value),
                ("subscription_id", subscription_id),
            ])],
        }
    }

    pub fn consul_address(&self) -> Option<&str> {
        match self {
            Discovery::Consul { address } => Some(address),
            _ => None,
        }
    }
}

/// TLS files (production paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAgent {
    /// `bootstrap_expect` and autopilot's `min_quorum`.
    pub num_servers: u32,
    pub gossip_key: Option<Secret>,
    /// `rejoin_after_leave`: a server that left on a stop signal rejoins when it starts again
    /// (a reboot), instead of treating the leave as permanent.
    pub rejoin_after_leave: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAgent {
    pub node_class: Option<String>,
    pub node_pool: Option<String>,
    /// `--meta` and the placement metadata from IMDS, in that order of precedence.
    pub meta: Vec<(String, String)>,
    /// The `drain_on_shutdown` deadline, when the client drains itself on SIGTERM
    /// ([`agent::drain_on_shutdown`]).
    pub drain_on_shutdown: Option<std::time::Duration>,
}

/// The `telemetry` block, when any of it is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Telemetry {
    pub prometheus_metrics: bool,
    pub publish_allocation_metrics: bool,
    pub publish_node_metrics: bool,
}

/// How the agent behaves on stop signals and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    pub leave_on_interrupt: bool,
    pub leave_on_terminate: bool,
    /// `log_level`, upper-case; `None` keeps Nomad's default.
    pub log_level: Option<&'static str>,
    pub log_json: bool,
    pub disable_update_check: bool,
}

/// The node metadata keys run-nomad fills from IMDS for placement constraints and spreads.
pub const PLACEMENT_META: [(&str, &str); 3] = [
    ("azure.zone", "compute.zone"),
    ("azure.fault_domain", "compute.platformFaultDomain"),
    ("azure.vm_size", "compute.vmSize"),
];

/// Everything default.hcl says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub datacenter: String,
    pub region: String,
    pub name: String,
    pub advertise: IpAddr,
    pub server: Option<ServerAgent>,
    pub client: Option<ClientAgent>,
    pub discovery: Discovery,
    pub tls: Option<Tls>,
    pub acl: bool,
    pub lifecycle: Lifecycle,
    pub telemetry: Option<Telemetry>,
}

/// A Nomad version as `nomad version` prints it (`Nomad v1.8.4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NomadVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl NomadVersion {
    /// Parses the first line of `nomad version`: `Nomad v1.8.4` (suffixes like `-beta.1` or
    /// `+ent` are ignored).
    pub fn parse(output: &str) -> Option<Self> {
        let line = output.lines().next()?.trim();
        let rest = line.strip_prefix("Nomad v")?;
        let core: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = core.split('.').map(|p| p.parse::<u32>());
        Some(Self {
            major: parts.next()?.ok()?,
            minor: parts.next()?.ok()?,
            patch: parts.next().and_then(|p| p.ok()).unwrap_or(0),
        })
    }

    /// Nomad notifies systemd of readiness from 1.8 on, so `Type=notify` is safe from there.
    pub fn supports_sd_notify(&self) -> bool {
        (self.major, self.minor) >= (1, 8)
    }

    /// The client's `drain_on_shutdown` block came in 1.5.4 (CHANGELOG: "client: Added
    /// `drain_on_shutdown` configuration [GH-16827]"); an older agent refuses the unknown key.
    pub fn supports_drain_on_shutdown(&self) -> bool {
        (self.major, self.minor, self.patch) >= (1, 5, 4)
    }
}

impl fmt::Display for NomadVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The service definition's inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub init: InitSystem,
    /// Who the agent runs as (root for clients and with --use-sudo).
    pub user: Account,
    pub group: Account,
    pub environment: Vec<(String, String)>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// The installed Nomad's version, when `nomad version` could tell.
    pub nomad_version: Option<NomadVersion>,
    /// Whether default.hcl is ours (the unit then requires it to be non-empty).
    pub writes_config: bool,
}

/// The validated whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub root: PathBuf,
    pub layout: Layout,
    /// The service definition's path (production path): the unit or the program.
    pub service_file: PathBuf,
    /// `None` with --skip-nomad-config.
    pub agent: Option<Agent>,
    /// The group that may read default.hcl: the primary group of --user (or the config
    /// directory's owner).
    pub config_group: Account,
    pub service: Service,
    /// The files of the secrets fetched with `--key-vault`, written with the agent
    /// configuration (empty without it).
    pub secret_files: Vec<crate::secrets::SecretFile>,
    /// The directories of `secret_files`, created where missing.
    pub directories: Vec<crate::secrets::Directory>,
    /// The Scheduled Events watcher's service (`None` with --no-watch-events or
    /// --skip-nomad-config).
    pub watcher: Option<watcher::Watcher>,
    /// Where the watcher's unit or program goes (production path), installed or not.
    pub watcher_file: PathBuf,
    pub no_start: bool,
    pub dry_run: bool,
    pub systemctl: PathBuf,
    pub supervisorctl: PathBuf,
}

/// Facts gathered at the edge before resolving: the metadata (absent with
/// --skip-nomad-config), the IMDS route hint and where run-nomad itself lives.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub instance: Option<&'a Instance>,
    /// The address this host uses to reach IMDS (see [`Instance::primary_ipv4`]).
    pub local_source: Option<IpAddr>,
    /// The directory of the running run-nomad executable.
    pub exe_dir: PathBuf,
    /// The running run-nomad executable (the watcher's service runs it).
    pub exe: PathBuf,
    pub nomad_version: Option<NomadVersion>,
    /// The secrets fetched with `--key-vault`.
    pub secrets: Option<&'a crate::secrets::Fetched>,
}

/// The layout from flags or from run-nomad's own location, like the original script
/// (`$SCRIPT_DIR/../config` and so on). An executable living under `--root` maps back to its
/// production path.
pub fn layout(cli: &Cli, exe_dir: &Path) -> Result<Layout, SettingsError> {
    let exe_dir = match exe_dir.strip_prefix(&cli.root) {
        Ok(rel) if cli.root != Path::new("/") => Path::new("/").join(rel),
        _ => exe_dir.to_path_buf(),
    };
    let install = normalize(&exe_dir.join(".."));
    let pick = |flag: &str, given: &Option<PathBuf>, default: &str| match given {
        Some(path) => absolute_path(flag, path),
        None => Ok(install.join(default)),
    };
    Ok(Layout {
        config_dir: pick("--config-dir", &cli.config_dir, "config")?,
        data_dir: pick("--data-dir", &cli.data_dir, "data")?,
        bin_dir: pick("--bin-dir", &cli.bin_dir, "bin")?,
        log_dir: pick("--log-dir", &cli.log_dir, "log")?,
        tls_dir: pick("--tls-dir", &cli.tls_dir, "tls")?,
        secrets_dir: pick("--secrets-dir", &cli.secrets_dir, "secrets")?,
    })
}

/// Resolves `..` and `.` lexically (the path need not exist).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

fn absolute_path(flag: &str, path: &Path) -> Result<PathBuf, SettingsError> {
    let text = path
        .to_str()
        .ok_or_else(|| invalid(flag, path.display(), "the path is not UTF-8"))?;
    if !path.is_absolute() {
        return Err(invalid(flag, text, "must be an absolute path"));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(flag, text, "contains a control character"));
    }
    Ok(normalize(path))
}

fn require_file(flag: &str, root: &Path, path: &Path) -> Result<PathBuf, SettingsError> {
    let path = absolute_path(flag, path)?;
    let on_disk = under_root(root, &path);
    let meta = std::fs::metadata(&on_disk).map_err(|cause| SettingsError::Io {
        what: "cannot use",
        path: on_disk.clone(),
        cause,
    })?;
    if !meta.is_file() {
        return Err(invalid(flag, path.display(), "not a regular file"));
    }
    Ok(path)
}

fn non_empty(value: &str, field: &str, remedy: &str) -> Result<String, SettingsError> {
    if value.is_empty() {
        Err(SettingsError::Missing(format!(
            "the instance metadata's {field} is empty: {remedy}"
        )))
    } else {
        Ok(value.to_string())
    }
}

fn given(flag: &str, value: &Option<String>) -> Result<Option<String>, SettingsError> {
    match value {
        Some(v) if v.is_empty() => Err(invalid(flag, v, "is empty")),
        other => Ok(other.clone()),
    }
}

/// The checks of the install that need no metadata: the config directory exists, the Nomad
/// binary is executable (a warning only with --dry-run), the gossip key file holds a valid key,
/// the TLS files exist, and the paths and environment fit the service definition. Cheap, so
/// run before reading IMDS.
pub fn check_install(cli: &Cli, root: &Path, layout: &Layout) -> Result<(), SettingsError> {
    if cli.server {
        read_gossip_key(cli, root)?;
        if let Some(file) = &cli.gossip_key_file {
            warn_if_world_readable("gossip key file", root, file);
        }
    }
    for (flag, file) in [
        ("--tls-ca-file", &cli.tls_ca_file),
        ("--tls-cert-file", &cli.tls_cert_file),
        ("--tls-key-file", &cli.tls_key_file),
    ] {
        if let Some(path) = file {
            require_file(flag, root, path)?;
        }
    }
    if let Some(key) = &cli.tls_key_file {
        warn_if_world_readable("TLS key", root, key);
    }
    if let Some(token) = &cli.watch_events_token_file {
        require_file("--watch-events-token-file", root, token)?;
        warn_if_world_readable("watcher token file", root, token);
    }
    crate::render::check_representable(cli.init, layout, &environment(&cli.environment)?)?;
    check_layout(cli, root, layout)
}

fn check_layout(cli: &Cli, root: &Path, layout: &Layout) -> Result<(), SettingsError> {
    let config_dir = under_root(root, &layout.config_dir);
    let meta = std::fs::metadata(&config_dir).map_err(|cause| SettingsError::Io {
        what: "the config directory (see --config-dir) is not usable:",
        path: config_dir.clone(),
        cause,
    })?;
    if !meta.is_dir() {
        return Err(invalid(
            "--config-dir",
            layout.config_dir.display(),
            "not a directory",
        ));
    }
    let binary = under_root(root, &layout.nomad_binary());
    match std::fs::metadata(&binary) {
        Ok(meta) if meta.is_file() && meta.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) if cli.dry_run => {
            tracing::warn!("{} is not an executable file", binary.display());
            Ok(())
        }
        Err(e) if cli.dry_run => {
            tracing::warn!("{}: {e}", binary.display());
            Ok(())
        }
        Ok(_) => Err(invalid(
            "--bin-dir",
            layout.bin_dir.display(),
            format!("{} is not an executable file", binary.display()),
        )),
        Err(cause) => Err(SettingsError::Io {
            what: "the Nomad binary (see --bin-dir) is missing:",
            path: binary,
            cause,
        }),
    }
}

/// The root as an absolute, normalized path.
pub fn root(cli: &Cli) -> Result<PathBuf, SettingsError> {
    absolute_path("--root", &cli.root)
}

/// Resolves and validates everything. Reads `<root>/etc/passwd`, `<root>/etc/group`, the
/// config directory's owner, the gossip key file and the TLS files; writes nothing. The caller
/// runs [`check_install`] first (before reading IMDS), as [`crate::run`] does.
pub fn resolve(cli: &Cli, facts: &Facts<'_>) -> Result<Settings, SettingsError> {
    check_flags(cli)?;
    let root = root(cli)?;
    let layout = layout(cli, &facts.exe_dir)?;
    let config_dir = under_root(&root, &layout.config_dir);
    let config_owner = std::fs::metadata(&config_dir)
        .map_err(|cause| SettingsError::Io {
            what: "the config directory (see --config-dir) is not usable:",
            path: config_dir.clone(),
            cause,
        })?
        .uid();
    let (owner, owner_group) = match &cli.user {
        Some(name) => {
            account_name("--user", name)?;
            lookup_user(&root, UserQuery::Name(name))?
        }
        None => lookup_user(&root, UserQuery::Uid(config_owner))?,
    };
    account_name("--user", &owner.name)?;
    account_name("the group of --user", &owner_group.name)?;
    // The original script: --use-sudo, and clients by default, run the agent as root.
    let as_root = cli.use_sudo || cli.client;
    let (user, group) = if as_root {
        let root_account = Account {
            name: "root".to_string(),
            id: 0,
        };
        (root_account.clone(), root_account)
    } else {
        (owner.clone(), owner_group.clone())
    };
    let agent = if cli.skip_nomad_config {
        None
    } else {
        Some(agent(cli, facts, &root, &layout)?)
    };
    let (secret_files, directories) = match (facts.secrets, &agent) {
        (Some(fetched), Some(agent)) => {
            let (files, warnings) = crate::secrets::files(
                fetched,
                &layout,
                &agent.region,
                owner_group.id,
                std::time::SystemTime::now(),
            )?;
            for warning in warnings {
                tracing::warn!("{warning}");
            }
            let dirs = crate::secrets::directories(&files, owner_group.id);
            (files, dirs)
        }
        _ => (Vec::new(), Vec::new()),
    };
    let stdout = cli
        .systemd_stdout
        .as_deref()
        .map(|v| systemd_output("--systemd-stdout", v))
        .transpose()?;
    let stderr = cli
        .systemd_stderr
        .as_deref()
        .map(|v| systemd_output("--systemd-stderr", v))
        .transpose()?;
    let service = Service {
        init: cli.init,
        user,
        group,
        environment: environment(&cli.environment)?,
        stdout,
        stderr,
        nomad_version: facts.nomad_version,
        writes_config: !cli.skip_nomad_config,
    };
    let service_file = match cli.init {
        InitSystem::Systemd => {
            absolute_path("--systemd-unit-dir", &cli.systemd_unit_dir)?.join(SYSTEMD_UNIT_NAME)
        }
        InitSystem::Supervisor => absolute_path("--supervisor-conf-dir", &cli.supervisor_conf_dir)?
            .join(SUPERVISOR_PROGRAM_NAME),
    };
    let exe = watcher::production_exe(&root, &facts.exe);
    let watcher_service = watcher::watcher(cli, &root, agent.as_ref(), &exe, &layout.config_dir)?;
    let settings = Settings {
        watcher_file: watcher::service_file(cli)?,
        watcher: watcher_service,
        root,
        layout,
        service_file,
        agent,
        config_group: owner_group,
        service,
        secret_files,
        directories,
        no_start: cli.no_start,
        dry_run: cli.dry_run,
        systemctl: cli.systemctl.clone(),
        supervisorctl: cli.supervisorctl.clone(),
    };
    // The service files must be representable; checking now names the flag and writes nothing.
    crate::render::check_representable(
        settings.service.init,
        &settings.layout,
        &settings.service.environment,
    )?;
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["run-nomad"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    #[test]
    fn layout_defaults_follow_the_executable_like_the_original() {
        let layout = layout(&cli(&["--client"]), Path::new("/opt/nomad/bin")).unwrap();
        assert_eq!(
            layout,
            Layout {
                config_dir: "/opt/nomad/config".into(),
                data_dir: "/opt/nomad/data".into(),
                bin_dir: "/opt/nomad/bin".into(),
                log_dir: "/opt/nomad/log".into(),
                tls_dir: "/opt/nomad/tls".into(),
                secrets_dir: "/opt/nomad/secrets".into(),
            }
        );
        assert_eq!(
            layout.config_file(),
            Path::new("/opt/nomad/config/default.hcl")
        );
        // Run from inside an image being built: the paths are the image's.
        let layout = layout_with_root("/mnt/img", "/mnt/img/opt/nomad/bin");
        assert_eq!(layout.config_dir, Path::new("/opt/nomad/config"));
        let err =
            self::layout(&cli(&["--client", "--data-dir", "data"]), Path::new("/x")).unwrap_err();
        assert!(err.to_string().contains("--data-dir"), "{err}");
    }

    fn layout_with_root(root: &str, exe_dir: &str) -> Layout {
        layout(&cli(&["--client", "--root", root]), Path::new(exe_dir)).unwrap()
    }

    #[test]
    fn discovery_strings_follow_go_discover_azure() {
        let scale_set = Discovery::ScaleSet {
            subscription_id: "sub".into(),
            resource_group: "rg".into(),
            scale_set: "servers".into(),
        };
        assert_eq!(
            scale_set.retry_join(),
            ["provider=azure resource_group=rg vm_scale_set=servers subscription_id=sub"]
        );
        let tag = Discovery::Tag {
            subscription_id: "sub".into(),
            tag_name: "cluster".into(),
            tag_value: "prod".into(),
        };
        assert_eq!(
            tag.retry_join(),
            ["provider=azure tag_name=cluster tag_value=prod subscription_id=sub"]
        );
        assert!(Discovery::Consul {
            address: "x:1".into()
        }
        .retry_join()
        .is_empty());
    }

    #[test]
    fn nomad_versions_parse_and_gate_notify() {
        let v = NomadVersion::parse("Nomad v1.8.4\nBuildDate 2024-09-17T20:18:34Z\n").unwrap();
        assert_eq!(v.to_string(), "1.8.4");
        assert!(v.supports_sd_notify());
        let old = NomadVersion::parse("Nomad v1.7.7+ent").unwrap();
        assert!(!old.supports_sd_notify());
        assert_eq!(
            NomadVersion::parse("Nomad v1.10.0-beta.1").unwrap().minor,
            10
        );
        assert!(NomadVersion::parse("nomad: command not found").is_none());
    }
}
