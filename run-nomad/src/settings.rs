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

use base64::Engine;
use support::files::under_root;
/// The gossip key is one; `expose` is called only where default.hcl is written.
pub use support::secret::Secret;

use crate::cli::{Cli, InitSystem};
use crate::metadata::{Instance, NetworkError};
use crate::rules;

/// Where Consul is looked for when no discovery flag is given: the original script's block.
pub const DEFAULT_CONSUL_ADDRESS: &str = "127.0.0.1:8500";

/// The systemd unit's file name (the AWS sibling's `/etc/systemd/system/nomad.service`).
pub const SYSTEMD_UNIT_NAME: &str = "nomad.service";
/// The supervisor program's file name (the original's `/etc/supervisor/conf.d/run-nomad.conf`).
pub const SUPERVISOR_PROGRAM_NAME: &str = "run-nomad.conf";

/// The gossip key length Nomad documents for `server.encrypt` ("This key must be 32 bytes").
pub const GOSSIP_KEY_BYTES: usize = 32;

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
}

fn invalid(flag: &str, value: impl fmt::Display, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A user or group: its name and numeric id, from `<root>/etc/passwd` / `<root>/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub id: u32,
}

/// The Nomad install layout, as production paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub config_dir: PathBuf,
    pub data_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub log_dir: PathBuf,
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
    pub nomad_version: Option<NomadVersion>,
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

/// Splits `KEY=VALUE` at the first `=`.
pub fn key_value<'a>(flag: &str, item: &'a str) -> Result<(&'a str, &'a str), SettingsError> {
    let (key, value) = item
        .split_once('=')
        .ok_or_else(|| invalid(flag, item, "expected KEY=VALUE"))?;
    if key.is_empty() {
        return Err(invalid(flag, item, "the key is empty"));
    }
    Ok((key, value))
}

/// `--environment`: a POSIX-style variable name and any value.
pub fn environment(items: &[String]) -> Result<Vec<(String, String)>, SettingsError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in items {
        let (key, value) = key_value("--environment", item)?;
        let mut chars = key.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(invalid(
                "--environment",
                item,
                "the name must be letters, digits and _ and not start with a digit",
            ));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(invalid(
                "--environment",
                item,
                "the variable is given twice",
            ));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// `--meta`: node metadata. Keys and values are escaped on their way into HCL, so only what
/// Nomad refuses at start ([`rules::meta_key`]) or could never use is refused.
pub fn meta(items: &[String]) -> Result<Vec<(String, String)>, SettingsError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in items {
        let (key, value) = key_value("--meta", item)?;
        rules::meta_key(key).map_err(|reason| invalid("--meta", item, reason))?;
        if key.chars().any(char::is_control) {
            return Err(invalid(
                "--meta",
                item,
                "the key contains a control character",
            ));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(invalid("--meta", item, "the key is given twice"));
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Checks a gossip key: standard base64 (Nomad decodes it with Go's `base64.StdEncoding`) of
/// exactly [`GOSSIP_KEY_BYTES`] bytes. The error never contains the key.
pub fn gossip_key(flag: &str, value: &str) -> Result<Secret, SettingsError> {
    let key = value.trim();
    let reject = |reason: &str| invalid(flag, "<redacted>", reason);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| {
            reject(
                "not standard base64 (generate one with `nomad operator gossip keyring generate`)",
            )
        })?;
    if bytes.len() != GOSSIP_KEY_BYTES {
        return Err(reject(&format!(
            "decodes to {} bytes; Nomad's server.encrypt takes {GOSSIP_KEY_BYTES}",
            bytes.len()
        )));
    }
    Ok(Secret::new(key.to_string()))
}

/// Checks a systemd StandardOutput=/StandardError= value against the forms systemd.exec(5)
/// documents.
pub fn systemd_output(flag: &str, value: &str) -> Result<String, SettingsError> {
    const SIMPLE: &[&str] = &[
        "inherit",
        "null",
        "tty",
        "journal",
        "kmsg",
        "journal+console",
        "kmsg+console",
        "socket",
    ];
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(invalid(
            flag,
            value,
            "contains control characters or surrounding spaces",
        ));
    }
    if SIMPLE.contains(&value) {
        return Ok(value.to_string());
    }
    for prefix in ["file:", "append:", "truncate:"] {
        if let Some(path) = value.strip_prefix(prefix) {
            if !path.starts_with('/') {
                return Err(invalid(flag, value, "the path must be absolute"));
            }
            return Ok(value.to_string());
        }
    }
    if let Some(name) = value.strip_prefix("fd:") {
        if !name.is_empty() && !name.contains(char::is_whitespace) {
            return Ok(value.to_string());
        }
    }
    Err(invalid(
        flag,
        value,
        format!(
            "expected one of {}, file:PATH, append:PATH, truncate:PATH or fd:NAME",
            SIMPLE.join(", ")
        ),
    ))
}

/// A user or group name safe to write into a unit or a supervisor program.
fn account_name(flag: &str, name: &str) -> Result<(), SettingsError> {
    let mut chars = name.chars();
    let valid = name.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(())
    } else {
        Err(invalid(flag, name, "not a valid user or group name"))
    }
}

/// The entries of a passwd- or group-style file: (name, id, primary gid for passwd).
fn read_account_file(path: &Path) -> Result<Vec<(String, u32, u32)>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|cause| SettingsError::Io {
        what: "failed to read",
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let id = fields.get(2)?.parse().ok()?;
            let gid = fields.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
            Some((fields.first()?.to_string(), id, gid))
        })
        .collect())
}

/// Looks a user up in `<root>/etc/passwd`: the user and its primary group from
/// `<root>/etc/group` (the numeric gid stands in when the group has no entry).
fn lookup_user(root: &Path, by: UserQuery<'_>) -> Result<(Account, Account), SettingsError> {
    let passwd = under_root(root, Path::new("/etc/passwd"));
    let users = read_account_file(&passwd)?;
    let found = users.iter().find(|(name, uid, _)| match by {
        UserQuery::Name(n) => name == n,
        UserQuery::Uid(u) => *uid == u,
    });
    let Some((name, uid, gid)) = found else {
        return Err(SettingsError::Missing(match by {
            UserQuery::Name(n) => format!("--user {n:?}: no such user in {}", passwd.display()),
            UserQuery::Uid(u) => format!(
                "the config directory is owned by uid {u}, which has no entry in {}: pass --user",
                passwd.display()
            ),
        }));
    };
    let group_file = under_root(root, Path::new("/etc/group"));
    let groups = read_account_file(&group_file)?;
    let group_name = groups
        .iter()
        .find(|(_, id, _)| id == gid)
        .map(|(n, _, _)| n.clone())
        .unwrap_or_else(|| gid.to_string());
    Ok((
        Account {
            name: name.clone(),
            id: *uid,
        },
        Account {
            name: group_name,
            id: *gid,
        },
    ))
}

#[derive(Clone, Copy)]
enum UserQuery<'a> {
    Name(&'a str),
    Uid(u32),
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

/// Everything config-only that --skip-nomad-config makes meaningless.
fn config_only_flags(cli: &Cli) -> Vec<&'static str> {
    let mut flags = Vec::new();
    let mut check = |set: bool, flag: &'static str| {
        if set {
            flags.push(flag);
        }
    };
    check(!cli.retry_join.is_empty(), "--retry-join");
    check(cli.scale_set_name.is_some(), "--scale-set-name");
    check(cli.cluster_tag_key.is_some(), "--cluster-tag-key");
    check(cli.consul_address.is_some(), "--consul-address");
    check(
        cli.gossip_key.is_some() || cli.gossip_key_file.is_some(),
        "--gossip-key",
    );
    check(cli.tls_ca_file.is_some(), "--tls-*-file");
    check(cli.acl, "--acl");
    check(cli.node_class.is_some(), "--node-class");
    check(!cli.meta.is_empty(), "--meta");
    check(cli.datacenter.is_some(), "--datacenter");
    check(cli.region.is_some(), "--region");
    check(cli.advertise_addr.is_some(), "--advertise-addr");
    check(cli.metadata_file.is_some(), "--metadata-file");
    check(cli.node_pool.is_some(), "--node-pool");
    check(cli.no_placement_meta, "--no-placement-meta");
    check(cli.leave_on_interrupt.is_some(), "--leave-on-interrupt");
    check(cli.leave_on_terminate.is_some(), "--leave-on-terminate");
    check(cli.log_level.is_some(), "--log-level");
    check(cli.log_json, "--log-json");
    check(cli.disable_update_check, "--disable-update-check");
    check(
        cli.prometheus_metrics || cli.publish_allocation_metrics || cli.publish_node_metrics,
        "--prometheus-metrics/--publish-*-metrics",
    );
    flags
}

/// Logs the warnings about flags that are accepted but probably not meant (once per run).
pub fn warn_about_flags(cli: &Cli) {
    for item in &cli.environment {
        if let Some((key, value)) = item.split_once('=') {
            if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
                tracing::warn!(
                    "--environment {key}: the value is taken literally, so its double quotes \
                     are part of it (the AWS run-nomad's KEY=\"val\" quoting is not needed)"
                );
            }
        }
    }
    match (cli.server, cli.num_servers) {
        (true, Some(n)) if n > 0 && n % 2 == 0 => tracing::warn!(
            "--num-servers {n} is even: a cluster of {n} servers tolerates no more failures \
             than one of {}; an odd number is recommended",
            n - 1
        ),
        (false, Some(_)) => {
            tracing::warn!("--num-servers only applies to servers; ignored without --server")
        }
        _ => {}
    }
}

/// The checks that need neither metadata nor the filesystem.
pub fn check_flags(cli: &Cli) -> Result<(), SettingsError> {
    if cli.server {
        match cli.num_servers {
            None => {
                return Err(SettingsError::Missing(
                    "--num-servers is required with --server".to_string(),
                ))
            }
            Some(0) => return Err(invalid("--num-servers", 0, "must be at least 1")),
            Some(_) => {}
        }
    }
    if !cli.client {
        if cli.node_class.is_some() {
            return Err(SettingsError::Missing(
                "--node-class applies to the client block: add --client".to_string(),
            ));
        }
        if !cli.meta.is_empty() {
            return Err(SettingsError::Missing(
                "--meta applies to the client block: add --client".to_string(),
            ));
        }
        if cli.node_pool.is_some() {
            return Err(SettingsError::Missing(
                "--node-pool applies to the client block: add --client".to_string(),
            ));
        }
    }
    if !cli.server && (cli.gossip_key.is_some() || cli.gossip_key_file.is_some()) {
        return Err(SettingsError::Missing(
            "the gossip key is server.encrypt (servers gossip, clients do not): add --server"
                .to_string(),
        ));
    }
    if cli.init != InitSystem::Systemd {
        for (flag, set) in [
            ("--systemd-stdout", cli.systemd_stdout.is_some()),
            ("--systemd-stderr", cli.systemd_stderr.is_some()),
        ] {
            if set {
                return Err(SettingsError::Missing(format!(
                    "{flag} only applies to --init systemd"
                )));
            }
        }
    }
    if cli.skip_nomad_config {
        let flags = config_only_flags(cli);
        if !flags.is_empty() {
            return Err(SettingsError::Missing(format!(
                "{} only shape default.hcl, which --skip-nomad-config does not write",
                flags.join(", ")
            )));
        }
    }
    for entry in &cli.retry_join {
        crate::discover::check_retry_join(entry)
            .map_err(|reason| invalid("--retry-join", entry, reason))?;
    }
    // The values Nomad checks at start (rules), so that Nomad never crash-loops on them.
    let rule = |flag: &str, value: &Option<String>, check: fn(&str) -> Result<(), String>| {
        value.as_deref().map_or(Ok(()), |v| {
            check(v).map_err(|reason| invalid(flag, v, reason))
        })
    };
    rule("--datacenter", &cli.datacenter, rules::datacenter)?;
    rule("--region", &cli.region, rules::region)?;
    rule("--node-class", &cli.node_class, rules::node_class)?;
    rule("--node-pool", &cli.node_pool, rules::node_pool)?;
    rule("--cluster-tag-value", &cli.cluster_tag_value, |v| {
        if v.is_empty() {
            Err("is empty; go-discover's azure provider ignores a tag without a value".into())
        } else {
            Ok(())
        }
    })?;
    if let Some(address) = cli.advertise_addr {
        rules::advertise_address(address)
            .map_err(|reason| invalid("--advertise-addr", address, reason))?;
    }
    if let Some(address) = &cli.consul_address {
        if address.is_empty() || address.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("--consul-address", address, "expected HOST:PORT"));
        }
    }
    // The values that need neither metadata nor files, so that a typo fails before IMDS.
    environment(&cli.environment)?;
    meta(&cli.meta)?;
    if let Some(key) = &cli.gossip_key {
        gossip_key("--gossip-key", key)?;
    }
    for (flag, value) in [
        ("--systemd-stdout", &cli.systemd_stdout),
        ("--systemd-stderr", &cli.systemd_stderr),
    ] {
        if let Some(v) = value {
            systemd_output(flag, v)?;
        }
    }
    if let Some(user) = &cli.user {
        account_name("--user", user)?;
    }
    Ok(())
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

fn discovery(cli: &Cli, instance: &Instance) -> Result<Discovery, SettingsError> {
    let compute = &instance.compute;
    let subscription = || {
        non_empty(
            &compute.subscription_id,
            "compute.subscriptionId",
            "give a go-discover string with --retry-join instead",
        )
    };
    if !cli.retry_join.is_empty() {
        return Ok(Discovery::RetryJoin(cli.retry_join.clone()));
    }
    if let Some(scale_set) = given("--scale-set-name", &cli.scale_set_name)? {
        let resource_group =
            match given("--scale-set-resource-group", &cli.scale_set_resource_group)? {
                Some(rg) => rg,
                None => non_empty(
                    &compute.resource_group_name,
                    "compute.resourceGroupName",
                    "pass --scale-set-resource-group",
                )?,
            };
        return Ok(Discovery::ScaleSet {
            subscription_id: subscription()?,
            resource_group,
            scale_set,
        });
    }
    if let Some(tag_name) = given("--cluster-tag-key", &cli.cluster_tag_key)? {
        let tag_value = match &cli.cluster_tag_value {
            Some(v) => v.clone(),
            None => {
                let value = compute.tag(&tag_name).ok_or_else(|| {
                    SettingsError::Missing(format!(
                        "this VM has no tag {tag_name:?} in compute.tagsList: pass --cluster-tag-value"
                    ))
                })?;
                if value.is_empty() {
                    // go-discover's azure provider needs a non-empty tag_value.
                    return Err(SettingsError::Missing(format!(
                        "this VM's tag {tag_name:?} (compute.tagsList) has an empty value, which \
                         go-discover cannot join by: pass --cluster-tag-value"
                    )));
                }
                value.to_string()
            }
        };
        return Ok(Discovery::Tag {
            subscription_id: subscription()?,
            tag_name,
            tag_value,
        });
    }
    Ok(Discovery::Consul {
        address: cli
            .consul_address
            .clone()
            .unwrap_or_else(|| DEFAULT_CONSUL_ADDRESS.to_string()),
    })
}

fn read_gossip_key(cli: &Cli, root: &Path) -> Result<Option<Secret>, SettingsError> {
    if let Some(key) = &cli.gossip_key {
        return gossip_key("--gossip-key", key).map(Some);
    }
    let Some(file) = &cli.gossip_key_file else {
        return Ok(None);
    };
    let path = absolute_path("--gossip-key-file", file)?;
    let on_disk = under_root(root, &path);
    let text = std::fs::read_to_string(&on_disk).map_err(|cause| SettingsError::Io {
        what: "failed to read the gossip key file",
        path: on_disk.clone(),
        cause,
    })?;
    let key = gossip_key(&format!("--gossip-key-file {}", path.display()), &text)?;
    Ok(Some(key))
}

/// Warns about a secret file every local user can read.
fn warn_if_world_readable(what: &str, root: &Path, path: &Path) {
    let on_disk = under_root(root, path);
    if let Ok(meta) = std::fs::metadata(&on_disk) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(
                "the {what} {} is readable by every user; make it 0600 or 0640",
                on_disk.display()
            );
        }
    }
}

fn agent(cli: &Cli, facts: &Facts<'_>, root: &Path) -> Result<Agent, SettingsError> {
    let instance = facts
        .instance
        .ok_or_else(|| SettingsError::Missing("no instance metadata was read".to_string()))?;
    let compute = &instance.compute;
    let location = || {
        non_empty(
            &compute.location,
            "compute.location",
            "pass --datacenter and --region",
        )
    };
    // A value from the metadata must pass Nomad's rule too; the error names the field.
    let checked = |value: String, field: &str, check: fn(&str) -> Result<(), String>| {
        check(&value)
            .map(|()| value.clone())
            .map_err(|reason| invalid(field, &value, format!("{reason} (pass the flag instead)")))
    };
    let datacenter = match given("--datacenter", &cli.datacenter)? {
        Some(dc) => dc,
        None => checked(
            location()?,
            "compute.location (the default --datacenter)",
            rules::datacenter,
        )?,
    };
    let region = match given("--region", &cli.region)? {
        Some(r) => r,
        None => checked(
            location()?,
            "compute.location (the default --region)",
            rules::region,
        )?,
    };
    let name = non_empty(
        &compute.vm_id,
        "compute.vmId",
        "the node name comes from it (is this an Azure VM?)",
    )?;
    let advertise = match cli.advertise_addr {
        Some(address) => address,
        None => {
            let primary = instance.primary_ipv4(facts.local_source)?;
            let address = IpAddr::V4(primary.address);
            rules::advertise_address(address).map_err(|reason| {
                invalid(
                    "privateIpAddress (of the primary network interface, from the instance metadata)",
                    address,
                    format!("{reason} (pass --advertise-addr)"),
                )
            })?;
            tracing::info!(
                "advertising {} (network interface {})",
                primary.address,
                primary.mac_address
            );
            address
        }
    };
    let tls = match (&cli.tls_ca_file, &cli.tls_cert_file, &cli.tls_key_file) {
        (Some(ca), Some(cert), Some(key)) => {
            let tls = Tls {
                ca_file: require_file("--tls-ca-file", root, ca)?,
                cert_file: require_file("--tls-cert-file", root, cert)?,
                key_file: require_file("--tls-key-file", root, key)?,
            };
            Some(tls)
        }
        _ => None,
    };
    let lifecycle = lifecycle(cli);
    let server = if cli.server {
        Some(ServerAgent {
            num_servers: cli.num_servers.unwrap_or(1),
            gossip_key: read_gossip_key(cli, root)?,
            rejoin_after_leave: lifecycle.leave_on_interrupt || lifecycle.leave_on_terminate,
        })
    } else {
        None
    };
    let client = if cli.client {
        let mut meta = meta(&cli.meta)?;
        if !cli.no_placement_meta {
            meta.extend(placement_meta(instance, &meta));
        }
        Some(ClientAgent {
            node_class: given("--node-class", &cli.node_class)?,
            node_pool: cli.node_pool.clone(),
            meta,
        })
    } else {
        None
    };
    let telemetry = Telemetry {
        prometheus_metrics: cli.prometheus_metrics,
        publish_allocation_metrics: cli.publish_allocation_metrics,
        publish_node_metrics: cli.publish_node_metrics,
    };
    Ok(Agent {
        datacenter,
        region,
        name,
        advertise,
        server,
        client,
        discovery: discovery(cli, instance)?,
        tls,
        acl: cli.acl,
        lifecycle,
        telemetry: (telemetry != Telemetry::default()).then_some(telemetry),
    })
}

/// Leaving on stop signals, per role, for immutable scale sets. A server that stops is either
/// deleted for good (scale-in, a roll, eviction), and must leave the Raft peer set so quorum
/// is counted right, or rebooted, and `rejoin_after_leave` brings it back. A client's leave only
/// matters with `drain_on_shutdown` (Nomad's docs), so clients keep Nomad's default. The flags
/// override either.
pub fn lifecycle(cli: &Cli) -> Lifecycle {
    let role_default = cli.server;
    let leave_on_interrupt = cli.leave_on_interrupt.unwrap_or(role_default);
    Lifecycle {
        leave_on_interrupt,
        leave_on_terminate: cli.leave_on_terminate.unwrap_or(leave_on_interrupt),
        log_level: cli.log_level.map(|l| l.as_nomad()),
        log_json: cli.log_json,
        disable_update_check: cli.disable_update_check,
    }
}

/// The VM's zone, fault domain and size as node metadata ([`PLACEMENT_META`]), for the keys
/// `--meta` does not set; empty values (a VM in no zone) are left out.
fn placement_meta(instance: &Instance, given: &[(String, String)]) -> Vec<(String, String)> {
    let compute = &instance.compute;
    let values = [
        &compute.zone,
        &compute.platform_fault_domain,
        &compute.vm_size,
    ];
    PLACEMENT_META
        .iter()
        .zip(values)
        .filter(|(_, value)| !value.is_empty())
        .filter(|((key, _), _)| {
            let overridden = given.iter().any(|(k, _)| k == key);
            if overridden {
                tracing::info!("--meta {key} overrides the value from the instance metadata");
            }
            !overridden
        })
        .map(|((key, _), value)| (key.to_string(), value.clone()))
        .collect()
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
        Some(agent(cli, facts, &root)?)
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
    let settings = Settings {
        root,
        layout,
        service_file,
        agent,
        config_group: owner_group,
        service,
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
    fn gossip_keys_are_base64_of_32_bytes_and_never_echoed() {
        let good = "6RhfKFZ5uYEaU6RgWzx69ssLcpiIkvnEZs5KBOQxvxA=";
        assert_eq!(gossip_key("--gossip-key", good).unwrap().expose(), good);
        assert_eq!(
            gossip_key("--gossip-key", &format!("{good}\n"))
                .unwrap()
                .expose(),
            good
        );
        // 16 bytes: what Nomad 0.x keygen printed; the documentation asks for 32.
        let short = "YgZOXLMhC7TtZqeghMT8+w==";
        let err = gossip_key("--gossip-key", short).unwrap_err().to_string();
        assert!(err.contains("16 bytes"), "{err}");
        assert!(!err.contains(short), "{err}");
        let err = gossip_key("--gossip-key", "not*base64")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not standard base64"), "{err}");
        assert!(!err.contains("not*base64"), "{err}");
        // URL-safe alphabet: Go's StdEncoding, which Nomad uses, rejects it.
        assert!(gossip_key(
            "--gossip-key",
            "6RhfKFZ5uYEaU6RgWzx69ssLcpiIkvnEZs5KBOQxvx-_"
        )
        .is_err());
        assert_eq!(
            format!("{:?}", Secret::new(good.into())),
            "Secret(<redacted>)"
        );
    }

    #[test]
    fn environment_and_meta_parse_at_the_first_equals() {
        let env = environment(&["A=b=c".into(), "_X=".into()]).unwrap();
        assert_eq!(env, [("A".into(), "b=c".into()), ("_X".into(), "".into())]);
        for bad in ["noequals", "=v", "1A=v", "A-B=v"] {
            let err = environment(&[bad.into()]).unwrap_err().to_string();
            assert!(err.contains("--environment"), "{err}");
        }
        assert!(environment(&["A=1".into(), "A=2".into()]).is_err());
        let m = meta(&["rack=r\"1".into(), "a.b/c d=${x}".into()]).unwrap();
        assert_eq!(m[1], ("a.b/c d".into(), "${x}".into()));
        assert!(meta(&["k=1".into(), "k=2".into()]).is_err());
        assert!(meta(&["a\nb=1".into()]).is_err());
    }

    #[test]
    fn systemd_outputs_are_checked() {
        for ok in ["journal", "null", "append:/var/log/nomad.log", "fd:x"] {
            assert_eq!(systemd_output("--systemd-stdout", ok).unwrap(), ok);
        }
        for bad in ["journald", "file:relative", "journal\n", "fd:"] {
            let err = systemd_output("--systemd-stdout", bad).unwrap_err();
            assert!(err.to_string().contains("--systemd-stdout"), "{err}");
        }
    }

    #[test]
    fn flag_combinations_are_checked_before_anything_else() {
        let e = |args: &[&str]| check_flags(&cli(args)).unwrap_err().to_string();
        assert!(e(&["--server"]).contains("--num-servers is required"));
        assert!(e(&["--server", "--num-servers", "0"]).contains("at least 1"));
        assert!(e(&["--server", "--num-servers", "1", "--meta", "a=b"]).contains("add --client"));
        assert!(e(&["--client", "--gossip-key", "x"]).contains("add --server"));
        assert!(e(&[
            "--client",
            "--init",
            "supervisor",
            "--systemd-stdout",
            "null"
        ])
        .contains("--init systemd"));
        assert!(
            e(&["--client", "--skip-nomad-config", "--acl", "--meta", "a=b"])
                .contains("--acl, --meta only shape default.hcl")
        );
        assert!(e(&["--client", "--retry-join", " "]).contains("--retry-join"));
        check_flags(&cli(&["--server", "--num-servers", "2"])).unwrap();
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

    fn instance(json: &str) -> Instance {
        crate::metadata::parse(json, "test").unwrap()
    }

    #[test]
    fn discovery_takes_resource_group_subscription_and_tag_from_metadata() {
        let vm = instance(
            r#"{"compute": {"resourceGroupName": "rg1", "subscriptionId": "sub1",
                "tagsList": [{"name": "cluster", "value": "prod"}]}}"#,
        );
        assert_eq!(
            discovery(&cli(&["--client", "--scale-set-name", "srv"]), &vm).unwrap(),
            Discovery::ScaleSet {
                subscription_id: "sub1".into(),
                resource_group: "rg1".into(),
                scale_set: "srv".into()
            }
        );
        assert_eq!(
            discovery(
                &cli(&[
                    "--client",
                    "--scale-set-name",
                    "srv",
                    "--scale-set-resource-group",
                    "other"
                ]),
                &vm
            )
            .unwrap(),
            Discovery::ScaleSet {
                subscription_id: "sub1".into(),
                resource_group: "other".into(),
                scale_set: "srv".into()
            }
        );
        assert_eq!(
            discovery(&cli(&["--client", "--cluster-tag-key", "cluster"]), &vm).unwrap(),
            Discovery::Tag {
                subscription_id: "sub1".into(),
                tag_name: "cluster".into(),
                tag_value: "prod".into()
            }
        );
        let err = discovery(&cli(&["--client", "--cluster-tag-key", "nope"]), &vm).unwrap_err();
        assert!(err.to_string().contains("--cluster-tag-value"), "{err}");
        let bare = instance(r#"{"compute": {}}"#);
        let err = discovery(&cli(&["--client", "--scale-set-name", "srv"]), &bare).unwrap_err();
        assert!(
            err.to_string().contains("compute.resourceGroupName"),
            "{err}"
        );
        assert_eq!(
            discovery(&cli(&["--client"]), &bare).unwrap(),
            Discovery::Consul {
                address: DEFAULT_CONSUL_ADDRESS.into()
            }
        );
    }
}
