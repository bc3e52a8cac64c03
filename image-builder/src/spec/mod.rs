//! `image.toml`: what image to bake. This module owns the file's shape (serde, unknown fields
//! refused), its validation (every problem names the field), and the resolution of the spec plus
//! command-line overrides into the [`Settings`] the rest of the tool works from.
//!
//! Parsing and validation are pure; [`load`] is the only function that reads a file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
/// CPU architecture, named as HashiCorp's release files name it (`amd64` by default).
pub use support::arch::Arch;

/// The production release site install-nomad downloads from.
pub const DEFAULT_RELEASE_URL: &str = "https://releases.hashicorp.com";

/// The tag image-builder adds to every Azure image: the input hash that built it, so an operator
/// can find an image's inputs from the portal. Reserved: a spec may not set it.
pub const INPUT_HASH_TAG: &str = "image-builder-input-hash";

/// Azure allows 50 tags per resource; one is [`INPUT_HASH_TAG`].
/// Source: https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations
const MAX_USER_TAGS: usize = 49;
const MAX_TAG_NAME_CHARS: usize = 512;
const MAX_TAG_VALUE_CHARS: usize = 256;
/// Characters Azure refuses in tag names (same source).
const TAG_NAME_FORBIDDEN: &[char] = &['<', '>', '%', '&', '\\', '?', '/'];

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
    /// The Marketplace image the build VM boots from.
    #[serde(default)]
    pub base_image: BaseImage,
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

/// The Marketplace image the build VM boots from. Defaults: Ubuntu 24.04 LTS.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BaseImage {
    pub publisher: String,
    pub offer: String,
    pub sku: String,
    pub version: String,
}

impl Default for BaseImage {
    fn default() -> Self {
        // Ubuntu 24.04 LTS on the Azure Marketplace (REFERENCE.md, Packer section).
        Self {
            publisher: "Canonical".into(),
            offer: "ubuntu-24_04-lts".into(),
            sku: "server".into(),
            version: "latest".into(),
        }
    }
}

/// How Packer authenticates to Azure.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// The operator's `az login` session (`use_azure_cli_auth`).
    #[default]
    AzureCli,
    /// The managed identity of the machine Packer runs on (no credentials in the template).
    ManagedIdentity,
    /// A service principal: `ARM_CLIENT_ID`, `ARM_CLIENT_SECRET`, `ARM_TENANT_ID` and (unless
    /// `subscription_id` is set) `ARM_SUBSCRIPTION_ID` from the environment.
    ClientSecret,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::AzureCli => "azure_cli",
            AuthMode::ManagedIdentity => "managed_identity",
            AuthMode::ClientSecret => "client_secret",
        }
    }
}

/// The environment variables client-secret auth reads (the names Azure tooling shares).
pub const CLIENT_SECRET_ENV: [&str; 4] = [
    "ARM_CLIENT_ID",
    "ARM_CLIENT_SECRET",
    "ARM_TENANT_ID",
    "ARM_SUBSCRIPTION_ID",
];

/// `[azure]`: the azure-arm builder's settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AzureSpec {
    #[serde(default)]
    pub auth: AuthMode,
    /// The subscription to build in. With client-secret auth it defaults to
    /// `ARM_SUBSCRIPTION_ID`; otherwise to the CLI's or the identity's default subscription.
    pub subscription_id: Option<String>,
    /// Region of the temporary resource group Packer creates (exclusive with
    /// `build_resource_group_name`).
    pub location: Option<String>,
    /// An existing resource group to build in (exclusive with `location`).
    pub build_resource_group_name: Option<String>,
    /// Build VM size; defaults by arch (see [`AzureSpec::vm_size_or_default`]).
    pub vm_size: Option<String>,
    pub managed_image_name: String,
    pub managed_image_resource_group_name: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Also publish a Shared Image Gallery (Azure Compute Gallery) image version.
    pub gallery: Option<GallerySpec>,
}

impl AzureSpec {
    /// General-purpose sizes with a temporary disk: Dsv5 for amd64, Dpsv5 (Ampere) for arm64.
    pub fn vm_size_or_default(&self, arch: Arch) -> String {
        self.vm_size.clone().unwrap_or_else(|| {
            match arch {
                Arch::Amd64 => "Standard_D2s_v5",
                Arch::Arm64 => "Standard_D2ps_v5",
            }
            .to_string()
        })
    }
}

/// `[azure.gallery]`: Packer's `shared_image_gallery_destination`.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GallerySpec {
    /// Subscription of the gallery, when it differs from the build's.
    pub subscription: Option<String>,
    pub resource_group: String,
    pub gallery_name: String,
    /// The image definition, which must exist already.
    pub image_name: String,
    /// `MAJOR.MINOR.PATCH`, as Azure requires for gallery image versions.
    pub image_version: String,
    #[serde(default)]
    pub replication_regions: Vec<String>,
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
    pub target: Target,
    pub release_url: String,
    pub cni_url: Option<String>,
    pub public_key: Option<PathBuf>,
    /// Paths from the spec or flags; `None` means "next to image-builder".
    pub install_nomad: Option<PathBuf>,
    pub run_nomad: Option<PathBuf>,
    pub extra_commands: Vec<String>,
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

/// Everything the Azure template needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureTarget {
    pub base_image: BaseImage,
    pub auth: AuthMode,
    pub subscription_id: Option<String>,
    pub placement: Placement,
    pub vm_size: String,
    pub managed_image_name: String,
    pub managed_image_resource_group_name: String,
    pub tags: BTreeMap<String, String>,
    pub gallery: Option<GallerySpec>,
}

/// Where the build VM lives: exactly one of the two, as azure-arm requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Packer creates (and deletes) a temporary resource group in this region.
    Location(String),
    /// Packer builds inside this existing resource group.
    BuildResourceGroup(String),
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
                Some(azure) => azure_target(azure, &self.base_image, self.arch, &mut problem),
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

fn azure_target(
    azure: &AzureSpec,
    base_image: &BaseImage,
    arch: Arch,
    problem: &mut impl FnMut(&str, String),
) -> Option<Target> {
    let mut ok = true;
    let mut bad = |field: &str, message: String| {
        ok = false;
        problem(field, message);
    };

    for (field, value) in [
        ("base_image.publisher", &base_image.publisher),
        ("base_image.offer", &base_image.offer),
        ("base_image.sku", &base_image.sku),
        ("base_image.version", &base_image.version),
        ("azure.managed_image_name", &azure.managed_image_name),
        (
            "azure.managed_image_resource_group_name",
            &azure.managed_image_resource_group_name,
        ),
    ] {
        if let Err(m) = check_name(value) {
            bad(field, m);
        }
    }
    for (field, value) in [
        ("azure.subscription_id", &azure.subscription_id),
        ("azure.vm_size", &azure.vm_size),
    ] {
        if let Some(value) = value {
            if let Err(m) = check_name(value) {
                bad(field, m);
            }
        }
    }

    let placement = match (&azure.location, &azure.build_resource_group_name) {
        (Some(_), Some(_)) => {
            bad(
                "azure.location",
                "and azure.build_resource_group_name are both set: set exactly one (location \
                 makes Packer create a temporary resource group there; \
                 build_resource_group_name builds in an existing one)"
                    .into(),
            );
            None
        }
        (None, None) => {
            bad(
                "azure.location",
                "or azure.build_resource_group_name must be set (exactly one)".into(),
            );
            None
        }
        (Some(location), None) => match check_name(location) {
            Ok(()) => Some(Placement::Location(location.clone())),
            Err(m) => {
                bad("azure.location", m);
                None
            }
        },
        (None, Some(group)) => match check_name(group) {
            Ok(()) => Some(Placement::BuildResourceGroup(group.clone())),
            Err(m) => {
                bad("azure.build_resource_group_name", m);
                None
            }
        },
    };

    if azure.tags.len() > MAX_USER_TAGS {
        bad(
            "azure.tags",
            format!(
                "has {} tags; Azure allows 50 per resource and image-builder adds {INPUT_HASH_TAG}, \
                 so at most {MAX_USER_TAGS}",
                azure.tags.len()
            ),
        );
    }
    for (name, value) in &azure.tags {
        let field = format!("azure.tags.{name:?}");
        if name.is_empty() {
            bad(&field, "tag names cannot be empty".into());
        }
        if name.chars().count() > MAX_TAG_NAME_CHARS {
            bad(
                &field,
                format!("tag names are at most {MAX_TAG_NAME_CHARS} characters"),
            );
        }
        if let Some(c) = name.chars().find(|c| TAG_NAME_FORBIDDEN.contains(c)) {
            bad(
                &field,
                format!("Azure does not allow {c:?} in tag names (nor any of < > % & \\ ? /)"),
            );
        }
        if name.eq_ignore_ascii_case(INPUT_HASH_TAG) {
            bad(
                &field,
                "is reserved: image-builder sets it to the input hash".into(),
            );
        }
        if value.chars().count() > MAX_TAG_VALUE_CHARS {
            bad(
                &field,
                format!("tag values are at most {MAX_TAG_VALUE_CHARS} characters"),
            );
        }
        if name.chars().chain(value.chars()).any(char::is_control) {
            bad(&field, "contains a control character".into());
        }
    }

    if let Some(gallery) = &azure.gallery {
        for (field, value) in [
            ("azure.gallery.resource_group", &gallery.resource_group),
            ("azure.gallery.gallery_name", &gallery.gallery_name),
            ("azure.gallery.image_name", &gallery.image_name),
        ] {
            if let Err(m) = check_name(value) {
                bad(field, m);
            }
        }
        if let Some(sub) = &gallery.subscription {
            if let Err(m) = check_name(sub) {
                bad("azure.gallery.subscription", m);
            }
        }
        if let Err(m) = check_gallery_version(&gallery.image_version) {
            bad("azure.gallery.image_version", m);
        }
        for (i, region) in gallery.replication_regions.iter().enumerate() {
            if let Err(m) = check_name(region) {
                bad(&format!("azure.gallery.replication_regions[{i}]"), m);
            }
        }
    }

    match placement {
        Some(placement) if ok => Some(Target::Azure(Box::new(AzureTarget {
            base_image: base_image.clone(),
            auth: azure.auth,
            subscription_id: azure.subscription_id.clone(),
            placement,
            vm_size: azure.vm_size_or_default(arch),
            managed_image_name: azure.managed_image_name.clone(),
            managed_image_resource_group_name: azure.managed_image_resource_group_name.clone(),
            tags: azure.tags.clone(),
            gallery: azure.gallery.clone(),
        }))),
        _ => None,
    }
}

/// A name-like Azure value: not empty, no whitespace at the ends, no control characters.
/// Azure and Packer check the finer rules; these are the mistakes worth catching before a build.
fn check_name(value: &str) -> Result<(), String> {
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

/// Azure gallery image versions are `MAJOR.MINOR.PATCH` with 32-bit integers.
/// Source: https://learn.microsoft.com/azure/virtual-machines/shared-image-galleries#image-versions
fn check_gallery_version(version: &str) -> Result<(), String> {
    let fits = version.split('.').all(|n| n.parse::<i32>().is_ok());
    if is_dotted_numbers(version, 3) && fits {
        Ok(())
    } else {
        Err(format!(
            "{version:?} is not a gallery image version: Azure requires MAJOR.MINOR.PATCH \
             with 32-bit integers, e.g. \"1.9.3\""
        ))
    }
}

fn is_dotted_numbers(value: &str, parts: usize) -> bool {
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
mod tests {
    use super::*;

    const MINIMAL_AZURE: &str = r#"
nomad_version = "1.9.3"

[azure]
location = "westeurope"
managed_image_name = "nomad-1.9.3"
managed_image_resource_group_name = "images"
"#;

    fn resolve(text: &str) -> Result<Settings, SpecError> {
        let path = Path::new("/specs/image.toml");
        parse(text, path)?.resolve(path, &Overrides::default())
    }

    fn problems(text: &str) -> Vec<String> {
        match resolve(text) {
            Err(SpecError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            other => panic!("expected an invalid spec, got {other:?}"),
        }
    }

    #[test]
    fn minimal_azure_spec_takes_the_documented_defaults() {
        let settings = resolve(MINIMAL_AZURE).unwrap();
        assert_eq!(settings.arch, Arch::Amd64);
        assert_eq!(settings.release_url, DEFAULT_RELEASE_URL);
        let Target::Azure(azure) = settings.target else {
            panic!("expected the azure target")
        };
        assert_eq!(azure.base_image, BaseImage::default());
        assert_eq!(azure.base_image.offer, "ubuntu-24_04-lts");
        assert_eq!(azure.auth, AuthMode::AzureCli);
        assert_eq!(azure.vm_size, "Standard_D2s_v5");
        assert_eq!(azure.placement, Placement::Location("westeurope".into()));
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name_and_line() {
        let err = resolve(&format!("{MINIMAL_AZURE}vm_sise = \"x\"\n")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/specs/image.toml"), "{text}");
        assert!(text.contains("unknown field `vm_sise`"), "{text}");
        assert!(text.contains("line 8, column 1 (in [azure])"), "{text}");
    }

    #[test]
    fn unknown_field_right_under_its_table_header_names_the_table() {
        let text = "nomad_version = \"1.9.3\"\n[local]\nroot = \"r\"\nrot = 1\n";
        let err = resolve(text).unwrap_err().to_string();
        assert!(err.contains("line 4, column 1 (in [local])"), "{err}");
        let err = resolve("nomad_version = \"1.9.3\"\n[local]\nrot = 1\n").unwrap_err();
        assert!(err.to_string().contains("(in [local])"), "{err}");
    }

    #[test]
    fn missing_nomad_version_is_named() {
        let err = resolve("[local]\nroot = \"r\"\n").unwrap_err();
        assert!(
            err.to_string().contains("missing field `nomad_version`"),
            "{err}"
        );
    }

    #[test]
    fn location_and_build_resource_group_are_exclusive() {
        let both = MINIMAL_AZURE.replace(
            "location = \"westeurope\"",
            "location = \"westeurope\"\nbuild_resource_group_name = \"rg\"",
        );
        let found = problems(&both);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0]
            .starts_with("azure.location: and azure.build_resource_group_name are both set"));
        let neither = MINIMAL_AZURE.replace("location = \"westeurope\"", "");
        assert!(problems(&neither)[0].contains("must be set (exactly one)"));
    }

    #[test]
    fn latest_and_malformed_versions_are_refused() {
        let latest = MINIMAL_AZURE.replace("1.9.3\"\n\n", "latest\"\n\n");
        assert!(problems(&latest)[0].starts_with("nomad_version: \"latest\" is not allowed"));
        for bad in ["1.9", "v1.9.3", "1.9.3-", "1..3", "1.9.3 "] {
            assert!(check_release_version(bad).is_err(), "{bad}");
        }
        for good in ["1.9.3", "1.10.0-rc.1", "1.9.3+ent", "0.12.26"] {
            assert!(check_release_version(good).is_ok(), "{good}");
        }
        assert!(check_cni_version("v1.6.2")
            .unwrap_err()
            .contains("leave out the leading"));
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let text = r#"
nomad_version = "latest"
cni_sha256 = "abc"

[release]
url = "http://mirror.example.com"

[azure]
location = "westeurope"
managed_image_name = ""
managed_image_resource_group_name = "images"
tags = { "a/b" = "x", "image-builder-input-hash" = "y" }

[azure.gallery]
resource_group = "g"
gallery_name = "gal"
image_name = "nomad"
image_version = "1.9"
"#;
        let found = problems(text);
        let fields: Vec<&str> = found.iter().map(|p| p.split(':').next().unwrap()).collect();
        for expected in [
            "nomad_version",
            "cni_sha256",
            "release.url",
            "azure.managed_image_name",
            "azure.tags.\"a/b\"",
            "azure.tags.\"image-builder-input-hash\"",
            "azure.gallery.image_version",
        ] {
            assert!(fields.contains(&expected), "{expected} not in {found:#?}");
        }
    }

    #[test]
    fn local_target_needs_a_root_and_resolves_it_against_the_spec() {
        let text = "nomad_version = \"1.9.3\"\ntarget = \"local\"\n";
        assert!(problems(text)[0].starts_with("local.root:"));
        let with_root = format!("{text}\n[local]\nroot = \"build/root\"\n");
        let settings = resolve(&with_root).unwrap();
        assert_eq!(
            settings.target,
            Target::Local {
                root: PathBuf::from("/specs/build/root")
            }
        );
    }

    #[test]
    fn overrides_win_over_the_spec() {
        let path = Path::new("/specs/image.toml");
        let spec = parse(MINIMAL_AZURE, path).unwrap();
        let overrides = Overrides {
            target: Some(TargetKind::Local),
            root: Some(PathBuf::from("/tmp/root")),
            install_nomad: Some(PathBuf::from("/bin/in")),
            run_nomad: None,
        };
        let settings = spec.resolve(path, &overrides).unwrap();
        assert_eq!(
            settings.target,
            Target::Local {
                root: PathBuf::from("/tmp/root")
            }
        );
        assert_eq!(settings.install_nomad, Some(PathBuf::from("/bin/in")));
        assert_eq!(settings.run_nomad, None);
    }

    #[test]
    fn a_relative_root_becomes_absolute() {
        let path = Path::new("specs/image.toml");
        let spec = parse("nomad_version = \"1.9.3\"\n[local]\nroot = \"r\"\n", path).unwrap();
        let overrides = Overrides {
            target: Some(TargetKind::Local),
            ..Overrides::default()
        };
        let Target::Local { root } = spec.resolve(path, &overrides).unwrap().target else {
            panic!()
        };
        assert_eq!(root, std::env::current_dir().unwrap().join("specs/r"));
    }

    #[test]
    fn a_root_without_the_local_target_is_a_mistake() {
        let path = Path::new("/specs/image.toml");
        let spec = parse(MINIMAL_AZURE, path).unwrap();
        let overrides = Overrides {
            root: Some(PathBuf::from("/tmp/root")),
            ..Overrides::default()
        };
        let err = spec.resolve(path, &overrides).unwrap_err().to_string();
        assert!(
            err.contains("--root: only applies to the local target"),
            "{err}"
        );
    }

    #[test]
    fn loopback_http_and_file_mirrors_are_accepted() {
        assert!(check_mirror_url("http://127.0.0.1:8080").is_ok());
        assert!(check_mirror_url("file:///srv/mirror").is_ok());
        assert!(check_mirror_url("https://releases.hashicorp.com").is_ok());
        assert!(check_mirror_url("ftp://x").is_err());
    }

    #[test]
    fn arm64_picks_an_arm_vm_size() {
        let text = MINIMAL_AZURE.replace("\n\n[azure]", "\narch = \"arm64\"\n\n[azure]");
        let Target::Azure(azure) = resolve(&text).unwrap().target else {
            panic!()
        };
        assert_eq!(azure.vm_size, "Standard_D2ps_v5");
    }
}
