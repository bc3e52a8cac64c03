//! The files run-nomad writes, as pure functions from [`Settings`] to text: the agent
//! configuration (`default.hcl`), the systemd unit and the supervisor program.
//!
//! Templates (`run-nomad/templates/`) get a typed context; every value in them passes through
//! exactly one escaping filter for its language ([`escape`]): `hcl` in the agent configuration,
//! `unit_*` in the unit, `supervisor_*` in the program, `environment_file` in the unit's
//! environment file. A test checks that no template prints a value any other way.
//!
//! `--environment` values may be secrets (a service principal's `ARM_CLIENT_SECRET`), so they
//! never go into a world-readable file: under systemd into `run-nomad.env` (0600 root:root,
//! read by the unit's `EnvironmentFile=`, which systemd loads as root before dropping to the
//! agent's user), under supervisor into the program file, which is then 0600 root:root
//! (supervisord runs as root and reads its include files itself; supervisor has no environment
//! file of its own).

pub mod escape;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value;
use tera::Tera;

use support::cluster_secrets::SecretItem;

use crate::cli::InitSystem;
use crate::settings::{Agent, Secret, Settings, SettingsError};

/// The templates, by name.
pub const TEMPLATES: &[(&str, &str)] = &[
    ("agent.hcl", include_str!("../templates/agent.hcl.tera")),
    (
        "nomad.service",
        include_str!("../templates/nomad.service.tera"),
    ),
    (
        "supervisor.conf",
        include_str!("../templates/supervisor.conf.tera"),
    ),
    (
        "run-nomad.env",
        include_str!("../templates/run-nomad.env.tera"),
    ),
    (
        "nomad-scheduled-events.service",
        include_str!("../templates/nomad-scheduled-events.service.tera"),
    ),
    (
        "nomad-scheduled-events.conf",
        include_str!("../templates/nomad-scheduled-events.conf.tera"),
    ),
];

/// What a rendered file is, for the apply and service steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    AgentConfig,
    /// The unit's environment file (`--environment`), part of the service definition.
    EnvironmentFile,
    SystemdUnit,
    SupervisorProgram,
    /// The Scheduled Events watcher's unit or program.
    WatcherUnit,
    WatcherProgram,
    /// An item fetched with `--key-vault` (a certificate, a key, the gossip key): part of the
    /// agent's configuration.
    Secret(SecretItem),
}

impl FileKind {
    /// A name for reports (`--dry-run --json`).
    pub fn name(self) -> &'static str {
        match self {
            FileKind::AgentConfig => "agent-config",
            FileKind::EnvironmentFile => "environment-file",
            FileKind::SystemdUnit => "systemd-unit",
            FileKind::SupervisorProgram => "supervisor-program",
            FileKind::WatcherUnit => "watcher-unit",
            FileKind::WatcherProgram => "watcher-program",
            FileKind::Secret(SecretItem::CaCertificate) => "tls-ca-certificate",
            FileKind::Secret(SecretItem::GossipKey) => "gossip-key",
            FileKind::Secret(item) if item.is_private() => "tls-key",
            FileKind::Secret(_) => "tls-certificate",
        }
    }

    /// Whether a change of this file is a change of the agent's configuration (Nomad is
    /// restarted onto it).
    pub fn is_agent_config(self) -> bool {
        matches!(self, FileKind::AgentConfig | FileKind::Secret(_))
    }
}

/// A file to write: its production path, content, mode and owner.
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedFile {
    pub kind: FileKind,
    pub path: PathBuf,
    pub contents: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Without the contents, which may be a key (or a configuration holding the gossip key).
impl std::fmt::Debug for RenderedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderedFile")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .field("mode", &format_args!("{:04o}", self.mode))
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .finish()
    }
}

/// A template failed: a value the target language cannot carry, or a bug in a template.
#[derive(Debug, thiserror::Error)]
#[error("failed to render {template}: {message}")]
pub struct RenderError {
    pub template: &'static str,
    pub message: String,
}

fn tera() -> &'static Tera {
    static TERA: OnceLock<Tera> = OnceLock::new();
    TERA.get_or_init(|| {
        let mut tera = Tera::default();
        // Our filters produce complete literals; no HTML escaping on top.
        tera.autoescape_on(Vec::new());
        tera.add_raw_templates(TEMPLATES.iter().copied())
            .expect("the built-in templates parse");
        tera.register_filter("hcl", hcl_filter);
        tera.register_filter("unit_value", string_filter(escape::unit_value));
        tera.register_filter("unit_exec", unit_exec_filter);
        tera.register_filter("supervisor_value", string_filter(escape::supervisor_value));
        tera.register_filter(
            "supervisor_logfile",
            string_filter(escape::supervisor_logfile),
        );
        tera.register_filter("environment_file", environment_file_filter);
        tera.register_filter("supervisor_command", supervisor_command_filter);
        tera.register_filter("supervisor_environment", supervisor_environment_filter);
        tera
    })
}

type FilterResult = tera::Result<Value>;

/// `hcl`: strings become quoted HCL1 literals, numbers and booleans stay bare; anything else is
/// a template bug.
fn hcl_filter(value: &Value, _: &HashMap<String, Value>) -> FilterResult {
    match value {
        Value::String(s) => Ok(Value::String(escape::hcl_string(s))),
        Value::Number(n) if n.is_u64() || n.is_i64() => Ok(Value::String(n.to_string())),
        Value::Bool(b) => Ok(Value::String(b.to_string())),
        other => Err(tera::Error::msg(format!(
            "the hcl filter takes a string, an integer or a boolean, not {other}"
        ))),
    }
}

fn as_str(value: &Value) -> tera::Result<&str> {
    value
        .as_str()
        .ok_or_else(|| tera::Error::msg(format!("expected a string, got {value}")))
}

fn as_words(value: &Value) -> tera::Result<Vec<&str>> {
    value
        .as_array()
        .ok_or_else(|| tera::Error::msg(format!("expected a list of words, got {value}")))?
        .iter()
        .map(as_str)
        .collect()
}

fn string_filter(
    escape: fn(&str) -> Result<String, escape::Unrepresentable>,
) -> impl Fn(&Value, &HashMap<String, Value>) -> FilterResult + Sync + Send {
    move |value, _| {
        escape(as_str(value)?)
            .map(Value::String)
            .map_err(|e| tera::Error::msg(e.0))
    }
}

fn unit_exec_filter(value: &Value, _: &HashMap<String, Value>) -> FilterResult {
    let words = as_words(value)?
        .into_iter()
        .enumerate()
        .map(|(i, word)| escape::unit_exec_word(word, i == 0))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tera::Error::msg(e.0))?;
    Ok(Value::String(words.join(" ")))
}

fn supervisor_command_filter(value: &Value, _: &HashMap<String, Value>) -> FilterResult {
    escape::supervisor_command(as_words(value)?)
        .map(Value::String)
        .map_err(|e| tera::Error::msg(e.0))
}

fn environment_file_filter(value: &Value, _: &HashMap<String, Value>) -> FilterResult {
    let words = as_words(value)?;
    let [key, val] = words.as_slice() else {
        return Err(tera::Error::msg("expected [key, value]"));
    };
    escape::environment_file_line(key, val)
        .map(Value::String)
        .map_err(|e| tera::Error::msg(e.0))
}

fn supervisor_environment_filter(value: &Value, _: &HashMap<String, Value>) -> FilterResult {
    let pairs = value
        .as_array()
        .ok_or_else(|| tera::Error::msg("expected a list of [key, value] pairs"))?;
    let mut entries = Vec::new();
    for pair in pairs {
        let words = as_words(pair)?;
        let [key, val] = words.as_slice() else {
            return Err(tera::Error::msg("expected [key, value]"));
        };
        entries.push(escape::supervisor_environment(key, val).map_err(|e| tera::Error::msg(e.0))?);
    }
    Ok(Value::String(entries.join(",")))
}

fn render(template: &'static str, context: &impl Serialize) -> Result<String, RenderError> {
    let fail = |e: tera::Error| {
        // tera's own message is "Failed to render ..."; the cause is the useful part.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message = cause.to_string();
            source = cause.source();
        }
        RenderError { template, message }
    };
    let context = tera::Context::from_serialize(context).map_err(fail)?;
    tera().render(template, &context).map_err(fail)
}

fn path_text(path: &Path) -> String {
    // Settings only holds UTF-8 paths (checked there); lossy is never lossy here.
    path.to_string_lossy().into_owned()
}

#[derive(Serialize)]
struct AgentContext {
    datacenter: String,
    region: String,
    name: String,
    bind_addr: &'static str,
    data_dir: String,
    advertise: String,
    server: Option<ServerContext>,
    client: Option<ClientContext>,
    retry_join: Vec<String>,
    consul_address: Option<String>,
    tls: Option<TlsContext>,
    acl: bool,
    leave_on_interrupt: bool,
    leave_on_terminate: bool,
    log_level: Option<&'static str>,
    log_json: bool,
    disable_update_check: bool,
    telemetry: Option<TelemetryContext>,
}

#[derive(Serialize)]
struct ServerContext {
    bootstrap_expect: u32,
    min_quorum: u32,
    encrypt: Option<String>,
    rejoin_after_leave: bool,
}

#[derive(Serialize)]
struct ClientContext {
    node_class: Option<String>,
    node_pool: Option<String>,
    meta: Vec<MetaEntry>,
    /// The `drain_on_shutdown` deadline as Go writes durations (`4m15s`).
    drain_on_shutdown: Option<String>,
}

#[derive(Serialize)]
struct TelemetryContext {
    prometheus_metrics: bool,
    publish_allocation_metrics: bool,
    publish_node_metrics: bool,
}

#[derive(Serialize)]
struct MetaEntry {
    key: String,
    value: String,
}

#[derive(Serialize)]
struct TlsContext {
    ca_file: String,
    cert_file: String,
    key_file: String,
}

/// `default.hcl` for an agent whose data directory is `data_dir`. The data directory is also on
/// the agent's command line (as the original's was); having it in the file too makes the
/// config directory complete, so `nomad config validate` and a bare `nomad agent -config` work.
pub fn agent_config(agent: &Agent, data_dir: &Path) -> Result<String, RenderError> {
    let context = AgentContext {
        datacenter: agent.datacenter.clone(),
        region: agent.region.clone(),
        name: agent.name.clone(),
        bind_addr: "0.0.0.0",
        data_dir: path_text(data_dir),
        advertise: agent.advertise.to_string(),
        server: agent.server.as_ref().map(|s| ServerContext {
            bootstrap_expect: s.num_servers,
            min_quorum: s.num_servers,
            encrypt: s.gossip_key.as_ref().map(|k| k.expose().to_string()),
            rejoin_after_leave: s.rejoin_after_leave,
        }),
        client: agent.client.as_ref().map(|c| ClientContext {
            node_class: c.node_class.clone(),
            node_pool: c.node_pool.clone(),
            meta: c
                .meta
                .iter()
                .map(|(key, value)| MetaEntry {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            drain_on_shutdown: c.drain_on_shutdown.map(support::go_duration::format),
        }),
        retry_join: agent.discovery.retry_join(),
        consul_address: agent.discovery.consul_address().map(str::to_string),
        tls: agent.tls.as_ref().map(|t| TlsContext {
            ca_file: path_text(&t.ca_file),
            cert_file: path_text(&t.cert_file),
            key_file: path_text(&t.key_file),
        }),
        acl: agent.acl,
        leave_on_interrupt: agent.lifecycle.leave_on_interrupt,
        leave_on_terminate: agent.lifecycle.leave_on_terminate,
        log_level: agent.lifecycle.log_level,
        log_json: agent.lifecycle.log_json,
        disable_update_check: agent.lifecycle.disable_update_check,
        telemetry: agent.telemetry.map(|t| TelemetryContext {
            prometheus_metrics: t.prometheus_metrics,
            publish_allocation_metrics: t.publish_allocation_metrics,
            publish_node_metrics: t.publish_node_metrics,
        }),
    };
    render("agent.hcl", &context)
}

/// The agent's command line, shared by the unit and the program: the original's
/// `nomad agent -config <config dir> -data-dir <data dir>`.
pub fn agent_command(settings: &Settings) -> Vec<String> {
    vec![
        path_text(&settings.layout.nomad_binary()),
        "agent".to_string(),
        "-config".to_string(),
        path_text(&settings.layout.config_dir),
        "-data-dir".to_string(),
        path_text(&settings.layout.data_dir),
    ]
}

#[derive(Serialize)]
struct UnitContext {
    config_file: Option<String>,
    service_type: &'static str,
    user: String,
    group: String,
    environment_file: String,
    run_environment_file: String,
    exec_start: Vec<String>,
    stdout: Option<String>,
    stderr: Option<String>,
}

/// `Type=notify` when the installed Nomad notifies systemd (1.8 and later), else `Type=exec`,
/// which still fails the start when the binary cannot be executed.
pub fn service_type(settings: &Settings) -> &'static str {
    match settings.service.nomad_version {
        Some(v) if v.supports_sd_notify() => "notify",
        _ => "exec",
    }
}

/// The systemd unit.
pub fn systemd_unit(settings: &Settings) -> Result<String, RenderError> {
    let service = &settings.service;
    let context = UnitContext {
        config_file: service
            .writes_config
            .then(|| path_text(&settings.layout.config_file())),
        service_type: service_type(settings),
        user: service.user.name.clone(),
        group: service.group.name.clone(),
        environment_file: path_text(&settings.layout.environment_file()),
        run_environment_file: path_text(&settings.layout.run_environment_file()),
        exec_start: agent_command(settings),
        stdout: service.stdout.clone(),
        stderr: service.stderr.clone(),
    };
    render("nomad.service", &context)
}

#[derive(Serialize)]
struct ProgramContext {
    command: Vec<String>,
    stdout_logfile: String,
    stderr_logfile: String,
    user: String,
    environment: Vec<[String; 2]>,
}

#[derive(Serialize)]
struct EnvironmentContext {
    environment: Vec<[String; 2]>,
}

/// The unit's environment file: one `KEY="value"` line per `--environment`.
pub fn environment_file(settings: &Settings) -> Result<String, RenderError> {
    let context = EnvironmentContext {
        environment: environment_pairs(settings),
    };
    render("run-nomad.env", &context)
}

fn environment_pairs(settings: &Settings) -> Vec<[String; 2]> {
    settings
        .service
        .environment
        .iter()
        .map(|(k, v)| [k.clone(), v.clone()])
        .collect()
}

/// The supervisor program, with the original's log file names.
pub fn supervisor_program(settings: &Settings) -> Result<String, RenderError> {
    let context = ProgramContext {
        command: agent_command(settings),
        stdout_logfile: path_text(&settings.layout.log_dir.join("nomad-stdout.log")),
        stderr_logfile: path_text(&settings.layout.log_dir.join("nomad-error.log")),
        user: settings.service.user.name.clone(),
        environment: environment_pairs(settings),
    };
    render("supervisor.conf", &context)
}

#[derive(Serialize)]
struct WatcherUnitContext {
    exec_start: Vec<String>,
}

#[derive(Serialize)]
struct WatcherProgramContext {
    command: Vec<String>,
    logfile: String,
}

/// The log file of the watcher's supervisor program.
pub fn watcher_log(settings: &Settings) -> PathBuf {
    settings
        .layout
        .log_dir
        .join(format!("{}.log", crate::settings::watcher::WATCHER_PROGRAM))
}

/// The watcher's service definition (unit or program), when it is installed.
pub fn watcher_file(settings: &Settings) -> Result<Option<RenderedFile>, RenderError> {
    let Some(watcher) = &settings.watcher else {
        return Ok(None);
    };
    let (kind, contents) = match settings.service.init {
        InitSystem::Systemd => (
            FileKind::WatcherUnit,
            render(
                "nomad-scheduled-events.service",
                &WatcherUnitContext {
                    exec_start: watcher.command.clone(),
                },
            )?,
        ),
        InitSystem::Supervisor => (
            FileKind::WatcherProgram,
            render(
                "nomad-scheduled-events.conf",
                &WatcherProgramContext {
                    command: watcher.command.clone(),
                    logfile: path_text(&watcher_log(settings)),
                },
            )?,
        ),
    };
    Ok(Some(RenderedFile {
        kind,
        path: settings.watcher_file.clone(),
        contents,
        // No secret in it: the token stays in its own file.
        mode: 0o644,
        uid: 0,
        gid: 0,
    }))
}

/// Every file for these settings, in the order they are written (the secrets fetched with
/// `--key-vault` first, so the configuration never names a file that is not there yet, then
/// the agent configuration, the service definitions last, the watcher's after the agent's).
pub fn files(settings: &Settings) -> Result<Vec<RenderedFile>, RenderError> {
    let mut files: Vec<RenderedFile> = settings
        .secret_files
        .iter()
        .map(|secret| RenderedFile {
            kind: FileKind::Secret(secret.item),
            path: secret.path.clone(),
            contents: secret.value.expose().to_string(),
            mode: secret.mode,
            uid: 0,
            gid: secret.gid,
        })
        .collect();
    if let Some(agent) = &settings.agent {
        files.push(RenderedFile {
            kind: FileKind::AgentConfig,
            path: settings.layout.config_file(),
            contents: agent_config(agent, &settings.layout.data_dir)?,
            // It may hold the gossip key: root writes it, only the agent's group reads it.
            mode: 0o640,
            uid: 0,
            gid: settings.config_group.id,
        });
    }
    match settings.service.init {
        InitSystem::Systemd => {
            files.push(RenderedFile {
                kind: FileKind::EnvironmentFile,
                path: settings.layout.run_environment_file(),
                contents: environment_file(settings)?,
                // It may hold secrets; systemd reads it as root.
                mode: 0o600,
                uid: 0,
                gid: 0,
            });
            files.push(RenderedFile {
                kind: FileKind::SystemdUnit,
                path: settings.service_file.clone(),
                contents: systemd_unit(settings)?,
                mode: 0o644,
                uid: 0,
                gid: 0,
            });
        }
        InitSystem::Supervisor => files.push(RenderedFile {
            kind: FileKind::SupervisorProgram,
            path: settings.service_file.clone(),
            contents: supervisor_program(settings)?,
            // It holds the --environment values; supervisord reads it as root.
            mode: 0o600,
            uid: 0,
            gid: 0,
        }),
    }
    files.extend(watcher_file(settings)?);
    Ok(files)
}

/// What `--dry-run` shows in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// The same files with the gossip key, the `--environment` values and everything fetched with
/// `--key-vault` (certificates too: a plan shows where they go, not PEM) replaced, for
/// `--dry-run` output.
pub fn files_for_display(settings: &Settings) -> Result<Vec<RenderedFile>, RenderError> {
    let mut shown = settings.clone();
    for secret in shown.secret_files.iter_mut() {
        secret.value = Secret::new(REDACTED.to_string());
    }
    if let Some(server) = shown.agent.as_mut().and_then(|a| a.server.as_mut()) {
        if server.gossip_key.is_some() {
            server.gossip_key = Some(Secret::new(REDACTED.to_string()));
        }
    }
    for (_, value) in shown.service.environment.iter_mut() {
        *value = REDACTED.to_string();
    }
    files(&shown)
}

/// Checks that every value can be written into the service definition, naming the flag when
/// one cannot (supervisor in particular cannot carry every string).
pub fn check_representable(
    init: InitSystem,
    layout: &crate::settings::Layout,
    environment: &[(String, String)],
) -> Result<(), SettingsError> {
    let reject = |flag: &str, value: &str, e: escape::Unrepresentable| SettingsError::Invalid {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: format!("{e} (--init {})", init_name(init)),
    };
    match init {
        InitSystem::Systemd => {
            // The unit holds the config directory in two paths, the binary as the program and
            // the data directory as an argument; the log directory is not in it.
            for path in [
                layout.config_file(),
                layout.environment_file(),
                layout.run_environment_file(),
            ] {
                let text = path_text(&path);
                escape::unit_value(&text)
                    .map_err(|e| reject("--config-dir", &path_text(&layout.config_dir), e))?;
            }
            let program = path_text(&layout.nomad_binary());
            escape::unit_exec_word(&program, true)
                .map_err(|e| reject("--bin-dir", &path_text(&layout.bin_dir), e))?;
            for (key, value) in environment {
                escape::environment_file_line(key, value)
                    .map_err(|e| reject("--environment", &format!("{key}=<redacted>"), e))?;
            }
        }
        InitSystem::Supervisor => {
            for (flag, dir) in [
                ("--config-dir", &layout.config_dir),
                ("--data-dir", &layout.data_dir),
                ("--bin-dir", &layout.bin_dir),
            ] {
                let text = path_text(dir);
                escape::supervisor_value(&text).map_err(|e| reject(flag, &text, e))?;
            }
            let log = path_text(&layout.log_dir.join("nomad-stdout.log"));
            escape::supervisor_logfile(&log)
                .map_err(|e| reject("--log-dir", &path_text(&layout.log_dir), e))?;
            for (key, value) in environment {
                escape::supervisor_environment(key, value)
                    .map_err(|e| reject("--environment", &format!("{key}=<redacted>"), e))?;
            }
        }
    }
    Ok(())
}

fn init_name(init: InitSystem) -> &'static str {
    match init {
        InitSystem::Systemd => "systemd",
        InitSystem::Supervisor => "supervisor",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `{{ ... }}` in every template ends in one of its language's escaping filters.
    #[test]
    fn every_template_value_goes_through_an_escaping_filter() {
        let allowed: &[(&str, &[&str])] = &[
            ("agent.hcl", &["hcl"]),
            ("nomad.service", &["unit_value", "unit_exec"]),
            (
                "supervisor.conf",
                &[
                    "supervisor_value",
                    "supervisor_logfile",
                    "supervisor_command",
                    "supervisor_environment",
                ],
            ),
            ("run-nomad.env", &["environment_file"]),
            ("nomad-scheduled-events.service", &["unit_exec"]),
            (
                "nomad-scheduled-events.conf",
                &["supervisor_command", "supervisor_logfile"],
            ),
        ];
        for (name, text) in TEMPLATES {
            let filters = allowed.iter().find(|(n, _)| n == name).unwrap().1;
            let mut rest = *text;
            let mut count = 0;
            while let Some(start) = rest.find("{{") {
                let end = rest[start..].find("}}").expect("closed expression") + start;
                let expression = rest[start + 2..end].trim();
                let last = expression.rsplit('|').next().unwrap().trim();
                assert!(
                    expression.contains('|') && filters.contains(&last),
                    "{name}: `{{{{ {expression} }}}}` must end with one of {filters:?}"
                );
                assert!(!expression.contains("safe"), "{name}: {expression}");
                count += 1;
                rest = &rest[end + 2..];
            }
            assert!(count > 0, "{name} prints no values?");
        }
    }

    #[test]
    fn a_rendered_file_never_prints_its_contents() {
        let file = RenderedFile {
            kind: FileKind::Secret(SecretItem::ServerKey),
            path: "/opt/nomad/tls/server-key.pem".into(),
            contents: "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n".into(),
            mode: 0o640,
            uid: 0,
            gid: 4647,
        };
        let shown = format!("{file:?}");
        assert!(
            !shown.contains("c2VjcmV0") && !shown.contains("BEGIN"),
            "{shown}"
        );
        assert!(
            shown.contains("0640") && shown.contains("server-key.pem"),
            "{shown}"
        );
    }

    #[test]
    fn the_hcl_filter_refuses_structures() {
        assert!(hcl_filter(&serde_json::json!([1]), &HashMap::new()).is_err());
        assert_eq!(
            hcl_filter(&serde_json::json!(3), &HashMap::new()).unwrap(),
            Value::String("3".into())
        );
    }
}
