//! `image.toml`: what image to bake. This module owns the file's shape (serde, unknown fields
//! refused), its validation (every problem names the field), and the resolution of the spec plus
//! command-line overrides into the [`Settings`] the rest of the tool works from. The `[azure]`
//! and `[base_image]` tables, and what each Packer generation can build, are in [`azure`].
//!
//! Parsing and validation are pure; [`load`] is the only function that reads a file.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod azure;
pub use azure::*;

/// CPU architecture, named as HashiCorp's release files name it (`amd64` by default).
pub use support::arch::Arch;

/// The production release site install-nomad downloads from.
pub const DEFAULT_RELEASE_URL: &str = "https://releases.hashicorp.com";

/// The whole `image.toml` file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// The Nomad release to install, exactly (`1.9.3`); `latest` is refused so one spec always
    /// bakes the same image.
    pub nomad_version: String,
    /// Also install this Consul release through the same verified release code.
    pub consul_version: Option<String>,
    /// Also install the CNI plugins of this version (`1.6.2`), which Nomad clients need for
    /// bridge networking.
    pub cni_version: Option<String>,
    /// SHA-256 of the CNI archive, for a CNI version install-nomad has no pinned hash for.
    pub cni_sha256: Option<String>,
    /// CPU architecture of the image (and of the binaries uploaded into it).
    #[serde(default)]
    pub arch: Arch,
    /// Where to bake: an Azure image (`azure`) or a directory on this machine (`local`).
    #[serde(default)]
    pub target: TargetKind,
    /// What will run Nomad on the VMs (run-nomad's `--init`): `systemd` (default) or
    /// `supervisor`, which installs Ubuntu's supervisor package into the image.
    #[serde(default)]
    pub init: InitSystem,
    /// Install a Docker engine (Ubuntu's `docker.io`) so clients can run Docker jobs; needs
    /// `cni_version` for the bridge networking such jobs use.
    #[serde(default)]
    pub docker: bool,
    /// The Marketplace image the build VM boots from.
    #[serde(default)]
    pub base_image: BaseImageSpec,
    /// Azure settings; required for the `azure` target.
    pub azure: Option<AzureSpec>,
    /// Where install-nomad downloads releases from.
    #[serde(default)]
    pub release: ReleaseSpec,
    /// The install-nomad and run-nomad binaries uploaded into the image.
    #[serde(default)]
    pub binaries: BinariesSpec,
    /// Settings of the `local` target.
    pub local: Option<LocalSpec>,
    /// Shell commands run after install-nomad, each in its own `sh -c`, with `IMAGE_ROOT` set to
    /// the root being provisioned (`/` on the Azure build VM).
    #[serde(default)]
    pub extra_commands: Vec<String>,
}

/// What supervises Nomad on the VMs, as run-nomad's `--init` names it.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitSystem {
    #[default]
    Systemd,
    Supervisor,
}

impl InitSystem {
    pub fn as_str(self) -> &'static str {
        match self {
            InitSystem::Systemd => "systemd",
            InitSystem::Supervisor => "supervisor",
        }
    }
}

/// Where the provisioning runs.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Packer's azure-arm builder: a build VM, captured as a managed image (and gallery version).
    #[default]
    Azure,
    /// Packer's null builder and shell-local: the same script into a directory on this machine.
    Local,
}

impl TargetKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Azure => "azure",
            TargetKind::Local => "local",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "azure" => Ok(TargetKind::Azure),
            "local" => Ok(TargetKind::Local),
            other => Err(format!("unknown target {other:?}: expected azure or local")),
        }
    }
}

/// `[release]`: the release mirror install-nomad downloads from.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseSpec {
    /// Base URL laid out like releases.hashicorp.com; default the real site.
    pub url: Option<String>,
    /// A public key file to trust instead of HashiCorp's embedded key (private mirrors).
    pub public_key: Option<PathBuf>,
    /// Base URL of the CNI plugin releases (install-nomad's `--cni-download-url`).
    pub cni_url: Option<String>,
}

/// `[binaries]`: the tool binaries uploaded into the image.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BinariesSpec {
    pub install_nomad: Option<PathBuf>,
    pub run_nomad: Option<PathBuf>,
}

/// `[local]`: the `local` target.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalSpec {
    /// The directory used as the filesystem root being provisioned.
    pub root: PathBuf,
}

/// One thing wrong with a spec, naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `azure.location`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a spec could not be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid image spec: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} is not a valid image spec:\n{}", list(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads and parses a spec file (no validation: see [`ImageSpec::resolve`]).
pub fn load(path: &Path) -> Result<ImageSpec, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses spec text; `origin` names the file in errors.
pub fn parse(text: &str, origin: &Path) -> Result<ImageSpec, SpecError> {
    toml::from_str(text).map_err(|e| SpecError::Parse {
        path: origin.to_path_buf(),
        message: describe_toml_error(text, &e),
    })
}

/// toml's message plus the line and column it points at.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            // Name the table too: "unknown field `x`" alone does not say which one.
            let table = before
                .split('\n')
                .rev()
                .skip(1)
                .map(str::trim)
                .find(|l| l.starts_with('['))
                .map(|header| format!(" (in {header})"))
                .unwrap_or_default();
            format!("line {line}, column {column}{table}: {message}")
        }
        None => message.to_string(),
    }
}

/// Command-line values that take precedence over the spec.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub target: Option<TargetKind>,
    pub root: Option<PathBuf>,
    pub install_nomad: Option<PathBuf>,
    pub run_nomad: Option<PathBuf>,
}

/// The spec resolved against its directory and the command line, and validated: what the
/// renderer and the build work from.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub spec_path: PathBuf,
    pub nomad_version: String,
    pub consul_version: Option<String>,
    pub cni_version: Option<String>,
    pub cni_sha256: Option<String>,
    pub arch: Arch,
    pub init: InitSystem,
    pub docker: bool,
    pub target: Target,
    pub release_url: String,
    pub cni_url: Option<String>,
    pub public_key: Option<PathBuf>,
    /// Paths from the spec or flags; `None` means "next to image-builder".
    pub install_nomad: Option<PathBuf>,
    pub run_nomad: Option<PathBuf>,
    pub extra_commands: Vec<String>,
}

impl Settings {
    /// The Ubuntu packages the image needs (installed with apt-get on the build VM): supervisord
    /// for `init = "supervisor"`, the Docker engine for `docker = true`.
    pub fn packages(&self) -> Vec<&'static str> {
        let mut packages = Vec::new();
        if self.docker {
            packages.push("docker.io");
        }
        if self.init == InitSystem::Supervisor {
            packages.push("supervisor");
        }
        packages
    }
}

/// The resolved target with what it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Azure(Box<AzureTarget>),
    Local { root: PathBuf },
}

impl Target {
    pub fn kind(&self) -> TargetKind {
        match self {
            Target::Azure(_) => TargetKind::Azure,
            Target::Local { .. } => TargetKind::Local,
        }
    }
}

impl ImageSpec {
    /// Applies the command line, resolves relative paths against the spec's directory, and
    /// checks every rule; all problems are reported at once, each naming its field.
    pub fn resolve(&self, spec_path: &Path, overrides: &Overrides) -> Result<Settings, SpecError> {
        let base = support::files::parent_dir(spec_path);
        let mut problems = Vec::new();
        let mut problem = |field: &str, message: String| {
            problems.push(Problem {
                field: field.to_string(),
                message,
            })
        };

        if let Err(m) = check_release_version(&self.nomad_version) {
            problem("nomad_version", m);
        }
        if let Some(v) = &self.consul_version {
            if let Err(m) = check_release_version(v) {
                problem("consul_version", m);
            }
        }
        if let Some(v) = &self.cni_version {
            if let Err(m) = check_cni_version(v) {
                problem("cni_version", m);
            }
        }
        if let Some(sum) = &self.cni_sha256 {
            if self.cni_version.is_none() {
                problem("cni_sha256", "is set but cni_version is not".into());
            }
            if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
                problem(
                    "cni_sha256",
                    format!("{sum:?} is not a SHA-256 (64 hexadecimal characters)"),
                );
            }
        }

        let release_url = self
            .release
            .url
            .clone()
            .unwrap_or_else(|| DEFAULT_RELEASE_URL.to_string());
        if let Err(m) = check_mirror_url(&release_url) {
            problem("release.url", m);
        }
        if let Some(cni_url) = &self.release.cni_url {
            if let Err(m) = check_mirror_url(cni_url) {
                problem("release.cni_url", m);
            }
            if self.cni_version.is_none() {
                problem("release.cni_url", "is set but cni_version is not".into());
            }
        }

        if self.docker && self.cni_version.is_none() {
            problem(
                "docker",
                "Docker jobs use Nomad's bridge networking, which needs the CNI plugins: set \
                 cni_version (e.g. \"1.6.2\")"
                    .into(),
            );
        }

        for (i, command) in self.extra_commands.iter().enumerate() {
            let field = format!("extra_commands[{i}]");
            if command.trim().is_empty() {
                problem(&field, "is empty".into());
            }
            if command.contains('\0') {
                problem(&field, "contains a NUL character".into());
            }
        }

        let kind = overrides.target.unwrap_or(self.target);
        if kind == TargetKind::Azure && overrides.root.is_some() {
            problem(
                "--root",
                "only applies to the local target (add --target local)".into(),
            );
        }
        let target = match kind {
            TargetKind::Azure => match &self.azure {
                None => {
                    problem(
                        "azure",
                        "the azure target needs an [azure] table (or use --target local)".into(),
                    );
                    None
                }
                Some(azure) => azure::resolve(azure, &self.base_image, self.arch, &mut problem)
                    .map(|t| Target::Azure(Box::new(t))),
            },
            TargetKind::Local => {
                let root = overrides
                    .root
                    .clone()
                    .or_else(|| self.local.as_ref().map(|l| base.join(&l.root)));
                match root {
                    Some(root) if root.as_os_str().is_empty() => {
                        problem("local.root", "is empty".into());
                        None
                    }
                    // Packer runs in its working directory, so the root must not be relative.
                    Some(root) => match std::path::absolute(&root) {
                        Ok(root) => Some(Target::Local { root }),
                        Err(e) => {
                            problem(
                                "local.root",
                                format!("cannot make {} absolute: {e}", root.display()),
                            );
                            None
                        }
                    },
                    None => {
                        problem(
                            "local.root",
                            "the local target needs a root directory ([local] root or --root)"
                                .into(),
                        );
                        None
                    }
                }
            }
        };

        match target {
            Some(target) if problems.is_empty() => Ok(Settings {
                spec_path: spec_path.to_path_buf(),
                nomad_version: self.nomad_version.clone(),
                consul_version: self.consul_version.clone(),
                cni_version: self.cni_version.clone(),
                cni_sha256: self.cni_sha256.as_ref().map(|s| s.to_ascii_lowercase()),
                arch: self.arch,
                init: self.init,
                docker: self.docker,
                target,
                release_url,
                cni_url: self.release.cni_url.clone(),
                public_key: self.release.public_key.as_ref().map(|p| base.join(p)),
                install_nomad: overrides
                    .install_nomad
                    .clone()
                    .or_else(|| self.binaries.install_nomad.as_ref().map(|p| base.join(p))),
                run_nomad: overrides
                    .run_nomad
                    .clone()
                    .or_else(|| self.binaries.run_nomad.as_ref().map(|p| base.join(p))),
                extra_commands: self.extra_commands.clone(),
            }),
            _ => Err(SpecError::Invalid {
                path: spec_path.to_path_buf(),
                problems,
            }),
        }
    }
}

/// A name-like Azure value: not empty, no whitespace at the ends, no control characters.
/// Azure and Packer check the finer rules; these are the mistakes worth catching before a build.
pub(crate) fn check_name(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("is empty".into());
    }
    if value.trim() != value {
        return Err(format!("{value:?} has leading or trailing whitespace"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{value:?} contains a control character"));
    }
    Ok(())
}

/// A HashiCorp release version: `MAJOR.MINOR.PATCH`, optionally `-prerelease` and `+metadata`
/// (`1.9.3`, `1.10.0-rc.1`, `1.9.3+ent`). `latest` is refused: a spec names the exact release
/// so the same spec always bakes the same image.
pub fn check_release_version(version: &str) -> Result<(), String> {
    if version.eq_ignore_ascii_case("latest") {
        return Err(
            "\"latest\" is not allowed: name the exact release (e.g. \"1.9.3\") so the \
                    same spec always bakes the same image"
                .into(),
        );
    }
    let (core, rest) = match version.find(['-', '+']) {
        Some(i) => (&version[..i], &version[i..]),
        None => (version, ""),
    };
    let numbers_ok = core.split('.').count() == 3
        && core
            .split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    let rest_ok = rest
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
    if numbers_ok && rest_ok && !rest.ends_with(['-', '+', '.']) {
        Ok(())
    } else {
        Err(format!(
            "{version:?} is not a release version like \"1.9.3\" or \"1.10.0-rc.1\""
        ))
    }
}

/// A CNI plugins version: `MAJOR.MINOR.PATCH` without the `v` the release tags carry.
fn check_cni_version(version: &str) -> Result<(), String> {
    let hint = if version.starts_with('v') {
        " (leave out the leading \"v\")"
    } else {
        ""
    };
    if is_dotted_numbers(version, 3) {
        Ok(())
    } else {
        Err(format!(
            "{version:?} is not a CNI plugins version like \"1.6.2\"{hint}"
        ))
    }
}

pub(crate) fn is_dotted_numbers(value: &str, parts: usize) -> bool {
    value.split('.').count() == parts
        && value
            .split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A release mirror base URL: https, plain http only to a loopback host (as install-nomad
/// enforces), or a `file://` directory laid out like the release site.
fn check_mirror_url(value: &str) -> Result<(), String> {
    let url = url::Url::parse(value).map_err(|e| format!("{value:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" | "file" => Ok(()),
        "http" if support::http::is_loopback(&url) => Ok(()),
        "http" => Err(format!(
            "{value:?}: plain http is only allowed for a loopback mirror; use https"
        )),
        other => Err(format!(
            "{value:?}: unsupported scheme {other:?} (use https, http to loopback, or file)"
        )),
    }
}

#[cfg(test)]
mod tests;
