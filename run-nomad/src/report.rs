//! The `--dry-run` plan: what run-nomad would write, remove and run, built once and printed as
//! text or, with `--json`, as one JSON document on stdout. Secrets are redacted before they get
//! here ([`crate::render::files_for_display`]).

use std::path::PathBuf;

use serde::Serialize;

use crate::apply::{FileState, Planned};
use crate::render::RenderedFile;
use crate::service::Changes;

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// With `--key-vault`: the vault and what was fetched from it (the items the
    /// `--*-from-key-vault` flags select for this role); `null` without.
    pub key_vault: Option<KeyVaultReport>,
    /// Directories that would be created first (host paths): the secrets directory of
    /// `--key-vault` when missing.
    pub directories: Vec<PathBuf>,
    /// Each file, in the order it would be written.
    pub files: Vec<FileReport>,
    /// Temporary files an interrupted run left, which would be removed.
    pub remove: Vec<PathBuf>,
    /// Changes an earlier run wrote but did not get applied (its restart failed or it was
    /// killed), which this run would apply.
    pub pending: Option<Changes>,
    pub service: ServiceReport,
}

/// The vault the secrets came from, and which.
#[derive(Debug, Clone, Serialize)]
pub struct KeyVaultReport {
    pub name: String,
    pub url: String,
    /// The Key Vault secret names fetched, in the order they are written.
    pub secrets: Vec<&'static str>,
}

impl KeyVaultReport {
    pub fn new(fetched: &crate::secrets::Fetched) -> Self {
        Self {
            name: fetched.vault.name.clone(),
            url: fetched.vault.url.to_string(),
            secrets: fetched.items.iter().map(|i| i.item.vault_name()).collect(),
        }
    }
}

/// One file of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// `agent-config`, `environment-file`, `systemd-unit`, `supervisor-program`,
    /// `watcher-unit`, `watcher-program`, or with `--key-vault` `tls-ca-certificate`,
    /// `tls-certificate`, `tls-key`, `gossip-key`.
    pub kind: &'static str,
    /// The path the generated files refer to.
    pub path: PathBuf,
    /// Where it is written (the path under `--root`).
    pub target: PathBuf,
    /// Octal, as `chmod` takes it: `"0640"`.
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    pub state: FileState,
    /// The content, with secrets replaced by `<redacted>`.
    pub contents: String,
}

/// What would happen to the service.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum ServiceReport {
    /// `--no-start`.
    NotTouched,
    /// The commands, which depend on whether Nomad is running when the real run asks.
    Commands {
        if_running: Vec<String>,
        if_stopped: Vec<String>,
    },
}

/// The file part of the plan; `shown` is the redacted rendering of the same files.
pub fn files(plan: &[Planned], shown: &[RenderedFile]) -> Vec<FileReport> {
    plan.iter()
        .zip(shown)
        .map(|(planned, display)| FileReport {
            kind: planned.file.kind.name(),
            path: planned.file.path.clone(),
            target: planned.target.clone(),
            mode: format!("{:04o}", planned.file.mode),
            uid: planned.file.uid,
            gid: planned.file.gid,
            state: planned.state(),
            contents: display.contents.clone(),
        })
        .collect()
}

/// The plan as text for a person.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    if let Some(vault) = &plan.key_vault {
        out.push_str(&format!(
            "fetched {} from Key Vault {} ({})\n",
            vault.secrets.join(", "),
            vault.name,
            vault.url
        ));
    }
    for path in &plan.directories {
        out.push_str(&format!("would create directory {}\n", path.display()));
    }
    for path in &plan.remove {
        out.push_str(&format!(
            "would remove {} (left by an interrupted run)\n",
            path.display()
        ));
    }
    for file in &plan.files {
        out.push_str(&format!(
            "would write {} (mode {}, owner {}:{}, {}):\n",
            file.target.display(),
            file.mode,
            file.uid,
            file.gid,
            file.state.text()
        ));
        for line in file.contents.lines() {
            out.push_str("    ");
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some(pending) = plan.pending {
        out.push_str(&format!(
            "an earlier run did not finish applying its changes ({}): they are applied too\n",
            describe_changes(pending)
        ));
    }
    match &plan.service {
        ServiceReport::NotTouched => out.push_str("would not touch the service (--no-start)\n"),
        ServiceReport::Commands {
            if_running,
            if_stopped,
        } if if_running == if_stopped => {
            for line in if_stopped {
                out.push_str(&format!("would run: {line}\n"));
            }
        }
        ServiceReport::Commands {
            if_running,
            if_stopped,
        } => {
            out.push_str("if Nomad is running:\n");
            if if_running.is_empty() {
                out.push_str("    would run nothing (files unchanged)\n");
            }
            for line in if_running {
                out.push_str(&format!("    would run: {line}\n"));
            }
            out.push_str("if Nomad is not running:\n");
            for line in if_stopped {
                out.push_str(&format!("    would run: {line}\n"));
            }
        }
    }
    out
}

fn describe_changes(changes: Changes) -> &'static str {
    match (changes.agent_config, changes.service_definition) {
        (true, true) => "agent configuration and service definition",
        (true, false) => "agent configuration",
        (false, true) => "service definition",
        (false, false) => "nothing",
    }
}

/// The plan as the JSON document `--dry-run --json` prints.
pub fn json(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(plan).expect("the plan serializes");
    text.push('\n');
    text
}
