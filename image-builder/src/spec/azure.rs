//! The `[azure]` and `[base_image]` parts of `image.toml`: their shape, their validation, the
//! base image that follows `arch`, and what each Packer generation can build (Packer 1.6 with
//! its bundled azure-arm builder, or Packer 1.7+ with the azure plugin).
//!
//! Facts behind the rules, each checked against its source:
//! - Azure cannot capture a managed image from an Arm64 VM ("Creating an image with
//!   sourceVirtualMachine source that has CPU Architecture 'Arm64' is not supported",
//!   hashicorp/packer-plugin-azure#210): arm64 images go to a Compute Gallery only, which the
//!   plugin supports since it can publish without an intermediate managed image (#242).
//! - Debian's Packer 1.6.6 (run here): a gallery destination needs `replication_regions` ("A
//!   list of replication_regions must be specified") and a managed image beside it, and it does
//!   not know `target_region` ("Blocks of type \"target_region\" are not expected here").
//! - The plugin (docs-partials/builder/azure/arm/SharedImageGalleryDestination-not-required.mdx):
//!   `replication_regions` defaults to the build region and is deprecated in favour of
//!   `target_region` blocks (`name`, `storage_account_type`, `disk_encryption_set_id`), which
//!   must include the build region.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_name, is_dotted_numbers, Arch, Problem};

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

/// Storage types a gallery image version replica may use (the plugin's `storage_account_type`).
const GALLERY_STORAGE_TYPES: &[&str] = &["Standard_LRS", "Standard_ZRS", "Premium_LRS"];

/// `[base_image]`: the Marketplace image the build VM boots from. Every field is optional:
/// Ubuntu 24.04 LTS by default, and the SKU follows `arch` for the Ubuntu offers image-builder
/// knows.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BaseImageSpec {
    pub publisher: Option<String>,
    pub offer: Option<String>,
    pub sku: Option<String>,
    pub version: Option<String>,
}

/// The base image, resolved.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BaseImage {
    pub publisher: String,
    pub offer: String,
    pub sku: String,
    pub version: String,
}

pub const CANONICAL: &str = "Canonical";
pub const UBUNTU_2404: &str = "ubuntu-24_04-lts";
pub const UBUNTU_2204: &str = "0001-com-ubuntu-server-jammy";

/// Canonical's Ubuntu SKUs on the Azure Marketplace and the CPU each one boots; the first of an
/// offer and architecture is its default. Names checked against public templates that boot
/// them (e.g. `Canonical:ubuntu-24_04-lts:server-arm64:latest`,
/// `Canonical:0001-com-ubuntu-server-jammy:22_04-lts-arm64:latest`).
const UBUNTU_SKUS: &[(&str, &str, Arch)] = &[
    (UBUNTU_2404, "server", Arch::Amd64),
    (UBUNTU_2404, "server-gen1", Arch::Amd64),
    (UBUNTU_2404, "server-arm64", Arch::Arm64),
    (UBUNTU_2204, "22_04-lts-gen2", Arch::Amd64),
    (UBUNTU_2204, "22_04-lts", Arch::Amd64),
    (UBUNTU_2204, "22_04-lts-arm64", Arch::Arm64),
];

/// The CPU a known Canonical SKU boots.
fn known_sku_arch(publisher: &str, offer: &str, sku: &str) -> Option<Arch> {
    if !publisher.eq_ignore_ascii_case(CANONICAL) {
        return None;
    }
    UBUNTU_SKUS
        .iter()
        .find(|(o, s, _)| o.eq_ignore_ascii_case(offer) && s.eq_ignore_ascii_case(sku))
        .map(|(_, _, arch)| *arch)
}

/// The default SKU of a known Canonical offer for `arch`.
fn default_sku(publisher: &str, offer: &str, arch: Arch) -> Option<&'static str> {
    if !publisher.eq_ignore_ascii_case(CANONICAL) {
        return None;
    }
    UBUNTU_SKUS
        .iter()
        .find(|(o, _, a)| o.eq_ignore_ascii_case(offer) && *a == arch)
        .map(|(_, s, _)| *s)
}

impl BaseImageSpec {
    /// Fills in the defaults for `arch` and refuses a SKU known to boot the other CPU.
    pub fn resolve(&self, arch: Arch, problem: &mut impl FnMut(&str, String)) -> Option<BaseImage> {
        let publisher = self.publisher.clone().unwrap_or_else(|| CANONICAL.into());
        let offer = self.offer.clone().unwrap_or_else(|| UBUNTU_2404.into());
        let version = self.version.clone().unwrap_or_else(|| "latest".into());
        let mut ok = true;
        for (field, value) in [
            ("base_image.publisher", &publisher),
            ("base_image.offer", &offer),
            ("base_image.version", &version),
        ] {
            if let Err(m) = check_name(value) {
                problem(field, m);
                ok = false;
            }
        }
        let sku = match &self.sku {
            Some(sku) => {
                if let Err(m) = check_name(sku) {
                    problem("base_image.sku", m);
                    ok = false;
                }
                match known_sku_arch(&publisher, &offer, sku) {
                    Some(boots) if boots != arch => {
                        let hint = default_sku(&publisher, &offer, arch)
                            .map(|s| format!(" (for {arch}: {s:?}, or leave sku out)"))
                            .unwrap_or_default();
                        problem(
                            "base_image.sku",
                            format!("{sku:?} boots {boots}, but arch is {arch}{hint}"),
                        );
                        ok = false;
                    }
                    _ => {}
                }
                sku.clone()
            }
            None => match default_sku(&publisher, &offer, arch) {
                Some(sku) => sku.to_string(),
                None => {
                    problem(
                        "base_image.sku",
                        format!(
                            "image-builder knows no {arch} SKU of {publisher}:{offer}; set \
                             base_image.sku"
                        ),
                    );
                    ok = false;
                    String::new()
                }
            },
        };
        ok.then_some(BaseImage {
            publisher,
            offer,
            sku,
            version,
        })
    }
}

/// How Packer authenticates to Azure.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, Serialize)]
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
    /// The subscription to build in. Otherwise `ARM_SUBSCRIPTION_ID` (client-secret auth), the
    /// Azure CLI's current subscription, or the managed identity's VM's subscription.
    pub subscription_id: Option<String>,
    /// Region of the temporary resource group Packer creates (exclusive with
    /// `build_resource_group_name`).
    pub location: Option<String>,
    /// An existing resource group to build in (exclusive with `location`).
    pub build_resource_group_name: Option<String>,
    /// Build VM size; defaults by arch (see [`AzureSpec::vm_size_or_default`]).
    pub vm_size: Option<String>,
    /// The managed image to create (with its resource group); optional when `[azure.gallery]`
    /// is set, and not allowed for arm64.
    pub managed_image_name: Option<String>,
    pub managed_image_resource_group_name: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Publish an Azure Compute Gallery (Shared Image Gallery) image version.
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
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GallerySpec {
    /// Subscription of the gallery, when it differs from the build's.
    pub subscription: Option<String>,
    pub resource_group: String,
    pub gallery_name: String,
    /// The image definition, which must exist already (with architecture Arm64 for arm64).
    pub image_name: String,
    /// `MAJOR.MINOR.PATCH`, as Azure requires for gallery image versions.
    pub image_version: String,
    /// Regions to replicate the version to (the plugin's deprecated list form). Default: the
    /// build region.
    #[serde(default)]
    pub replication_regions: Vec<String>,
    /// The plugin's `target_region` blocks (`[[azure.gallery.target_region]]`), Packer 1.7+.
    #[serde(default)]
    pub target_region: Vec<TargetRegion>,
}

/// One `target_region` block of the azure plugin.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetRegion {
    pub name: String,
    /// `Standard_LRS` (the plugin's default), `Standard_ZRS` or `Premium_LRS`.
    pub storage_account_type: Option<String>,
    /// A disk encryption set in that region, for encrypted replicas.
    pub disk_encryption_set_id: Option<String>,
}

/// Where the build VM lives: exactly one of the two, as azure-arm requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Packer creates (and deletes) a temporary resource group in this region.
    Location(String),
    /// Packer builds inside this existing resource group.
    BuildResourceGroup(String),
}

impl Placement {
    /// The build region when the spec names it (a build resource group's is only known to Azure).
    pub fn region(&self) -> Option<&str> {
        match self {
            Placement::Location(l) => Some(l),
            Placement::BuildResourceGroup(_) => None,
        }
    }
}

/// A managed image destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedImage {
    pub name: String,
    pub resource_group: String,
}

/// Everything the Azure template needs, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureTarget {
    pub base_image: BaseImage,
    pub auth: AuthMode,
    pub subscription_id: Option<String>,
    pub placement: Placement,
    pub vm_size: String,
    /// At least one of the two destinations is set.
    pub managed_image: Option<ManagedImage>,
    pub gallery: Option<GallerySpec>,
    pub tags: BTreeMap<String, String>,
}

/// Validates `[azure]` (and `[base_image]`) for `arch`; every problem names its field.
pub(super) fn resolve(
    azure: &AzureSpec,
    base_image: &BaseImageSpec,
    arch: Arch,
    problem: &mut impl FnMut(&str, String),
) -> Option<AzureTarget> {
    let mut ok = true;
    let mut bad = |field: &str, message: String| {
        ok = false;
        problem(field, message);
    };

    let base_image = base_image.resolve(arch, &mut bad);
    for (field, value) in [
        ("azure.subscription_id", &azure.subscription_id),
        ("azure.vm_size", &azure.vm_size),
        ("azure.managed_image_name", &azure.managed_image_name),
        (
            "azure.managed_image_resource_group_name",
            &azure.managed_image_resource_group_name,
        ),
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

    let managed_image = match (
        &azure.managed_image_name,
        &azure.managed_image_resource_group_name,
    ) {
        (Some(name), Some(group)) => Some(ManagedImage {
            name: name.clone(),
            resource_group: group.clone(),
        }),
        (None, None) => None,
        (Some(_), None) => {
            bad(
                "azure.managed_image_resource_group_name",
                "must be set with azure.managed_image_name (the managed image's resource group)"
                    .into(),
            );
            None
        }
        (None, Some(_)) => {
            bad(
                "azure.managed_image_name",
                "must be set with azure.managed_image_resource_group_name".into(),
            );
            None
        }
    };
    match (arch, &managed_image, &azure.gallery) {
        (Arch::Arm64, Some(_), _) => bad(
            "azure.managed_image_name",
            "arch is arm64, and Azure cannot capture a managed image from an Arm64 VM: leave \
             out managed_image_name and managed_image_resource_group_name and publish to \
             [azure.gallery] only (an image definition with architecture Arm64)"
                .into(),
        ),
        (Arch::Arm64, None, None) => bad(
            "azure.gallery",
            "arch is arm64: Azure images of Arm64 VMs live in a Compute Gallery, so \
             [azure.gallery] is required (an image definition with architecture Arm64)"
                .into(),
        ),
        (Arch::Amd64, None, None)
            if azure.managed_image_name.is_none()
                && azure.managed_image_resource_group_name.is_none() =>
        {
            bad(
                "azure.managed_image_name",
                "no destination: set managed_image_name and managed_image_resource_group_name, \
                 [azure.gallery], or both"
                    .into(),
            )
        }
        _ => {}
    }

    check_tags(&azure.tags, &mut bad);
    if let Some(gallery) = &azure.gallery {
        check_gallery(gallery, placement.as_ref(), &mut bad);
    }

    match (placement, base_image) {
        (Some(placement), Some(base_image)) if ok => Some(AzureTarget {
            base_image,
            auth: azure.auth,
            subscription_id: azure.subscription_id.clone(),
            placement,
            vm_size: azure.vm_size_or_default(arch),
            managed_image,
            gallery: azure.gallery.clone(),
            tags: azure.tags.clone(),
        }),
        _ => None,
    }
}

fn check_tags(tags: &BTreeMap<String, String>, bad: &mut impl FnMut(&str, String)) {
    if tags.len() > MAX_USER_TAGS {
        bad(
            "azure.tags",
            format!(
                "has {} tags; Azure allows 50 per resource and image-builder adds {INPUT_HASH_TAG}, \
                 so at most {MAX_USER_TAGS}",
                tags.len()
            ),
        );
    }
    for (name, value) in tags {
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
}

/// Azure region names compare without case and spaces ("West Europe" is "westeurope").
pub fn same_region(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect::<String>()
    };
    norm(a) == norm(b)
}

fn check_gallery(
    gallery: &GallerySpec,
    placement: Option<&Placement>,
    bad: &mut impl FnMut(&str, String),
) {
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
    if !gallery.replication_regions.is_empty() && !gallery.target_region.is_empty() {
        bad(
            "azure.gallery.target_region",
            "and azure.gallery.replication_regions are both set: target_region supersedes the \
             deprecated replication_regions list; use one"
                .into(),
        );
    }
    for (i, region) in gallery.target_region.iter().enumerate() {
        let field = format!("azure.gallery.target_region[{i}]");
        if let Err(m) = check_name(&region.name) {
            bad(&format!("{field}.name"), m);
        }
        if let Some(kind) = &region.storage_account_type {
            if !GALLERY_STORAGE_TYPES.contains(&kind.as_str()) {
                bad(
                    &format!("{field}.storage_account_type"),
                    format!(
                        "{kind:?} is not one of {}",
                        GALLERY_STORAGE_TYPES.join(", ")
                    ),
                );
            }
        }
        if let Some(id) = &region.disk_encryption_set_id {
            if let Err(m) = check_name(id) {
                bad(&format!("{field}.disk_encryption_set_id"), m);
            }
        }
    }
    if let (Some(build_region), false) = (
        placement.and_then(Placement::region),
        gallery.target_region.is_empty(),
    ) {
        if !gallery
            .target_region
            .iter()
            .any(|r| same_region(&r.name, build_region))
        {
            bad(
                "azure.gallery.target_region",
                format!(
                    "must include the build region {build_region:?}: the azure plugin stores the \
                     image version there first"
                ),
            );
        }
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

/// How the template names the regions of a gallery image version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "regions", rename_all = "snake_case")]
pub enum GalleryRegions {
    /// `replication_regions = [...]` (Packer 1.6, or a spec that uses the list form).
    ReplicationRegions(Vec<String>),
    /// `target_region { ... }` blocks (the plugin, Packer 1.7+).
    TargetRegions(Vec<TargetRegion>),
    /// Nothing: the plugin replicates to the build region (a build resource group's, which only
    /// Azure knows).
    PluginDefault,
}

/// What one Packer generation can build, checked before Packer runs so the reason is clear:
/// `plugin` is Packer 1.7+ with the azure plugin, otherwise Packer 1.6's bundled builder.
/// Returns the gallery regions to render, or the problems.
pub fn for_packer(
    azure: &AzureTarget,
    arch: Arch,
    plugin: bool,
    packer_version: &str,
) -> Result<Option<GalleryRegions>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(Problem {
            field: field.to_string(),
            message,
        })
    };
    let old = || {
        format!(
            "Packer {packer_version} bundles the azure-arm builder of Packer 1.6, which \
             cannot do this; use Packer 1.7 or later (image-builder runs `packer init` to install \
             the azure plugin)"
        )
    };
    if !plugin && arch == Arch::Arm64 {
        problem(
            "arch",
            format!(
                "arm64 images must be published to a Compute Gallery without a managed image \
                 (Azure cannot capture a managed image from an Arm64 VM); {}",
                old()
            ),
        );
    }
    let regions = match &azure.gallery {
        None => None,
        Some(gallery) => {
            if !plugin && azure.managed_image.is_none() && arch == Arch::Amd64 {
                problem(
                    "azure.managed_image_name",
                    format!(
                        "a gallery-only destination (no managed image) needs the azure plugin; {}",
                        old()
                    ),
                );
            }
            if !gallery.target_region.is_empty() {
                if !plugin {
                    problem(
                        "azure.gallery.target_region",
                        format!(
                            "is an azure plugin setting; {} (or use replication_regions)",
                            old()
                        ),
                    );
                }
                Some(GalleryRegions::TargetRegions(gallery.target_region.clone()))
            } else if !gallery.replication_regions.is_empty() {
                Some(GalleryRegions::ReplicationRegions(
                    gallery.replication_regions.clone(),
                ))
            } else {
                match (azure.placement.region(), plugin) {
                    // Explicit, so the plugin neither warns nor changes its default later.
                    (Some(region), true) => {
                        Some(GalleryRegions::TargetRegions(vec![TargetRegion {
                            name: region.to_string(),
                            storage_account_type: None,
                            disk_encryption_set_id: None,
                        }]))
                    }
                    // Packer 1.6 requires the list: the build region, as the plugin defaults.
                    (Some(region), false) => {
                        Some(GalleryRegions::ReplicationRegions(vec![region.to_string()]))
                    }
                    (None, true) => Some(GalleryRegions::PluginDefault),
                    (None, false) => {
                        problem(
                            "azure.gallery.replication_regions",
                            format!(
                                "Packer {packer_version} requires replication_regions for a gallery \
                                 destination, and the region of resource group {:?} is known only \
                                 to Azure: `image-builder build` looks it up; to render or \
                                 validate offline, list the regions (the build region first)",
                                match &azure.placement {
                                    Placement::BuildResourceGroup(g) => g.as_str(),
                                    Placement::Location(l) => l.as_str(),
                                }
                            ),
                        );
                        None
                    }
                }
            }
        }
    };
    if problems.is_empty() {
        Ok(regions)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_base(spec: BaseImageSpec, arch: Arch) -> Result<BaseImage, Vec<String>> {
        let mut problems = Vec::new();
        let image = spec.resolve(arch, &mut |f: &str, m: String| {
            problems.push(format!("{f}: {m}"))
        });
        image.ok_or(problems)
    }

    #[test]
    fn the_default_base_image_follows_arch() {
        let amd = resolve_base(BaseImageSpec::default(), Arch::Amd64).unwrap();
        assert_eq!(
            (
                amd.publisher.as_str(),
                amd.offer.as_str(),
                amd.sku.as_str(),
                amd.version.as_str()
            ),
            ("Canonical", "ubuntu-24_04-lts", "server", "latest")
        );
        let arm = resolve_base(BaseImageSpec::default(), Arch::Arm64).unwrap();
        assert_eq!(
            (arm.offer.as_str(), arm.sku.as_str()),
            ("ubuntu-24_04-lts", "server-arm64")
        );
        let jammy = BaseImageSpec {
            offer: Some(UBUNTU_2204.into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_base(jammy.clone(), Arch::Amd64).unwrap().sku,
            "22_04-lts-gen2"
        );
        assert_eq!(
            resolve_base(jammy, Arch::Arm64).unwrap().sku,
            "22_04-lts-arm64"
        );
    }

    #[test]
    fn a_sku_of_the_other_cpu_is_refused_with_the_right_one() {
        let x64 = BaseImageSpec {
            sku: Some("server".into()),
            ..Default::default()
        };
        let problems = resolve_base(x64, Arch::Arm64).unwrap_err();
        assert_eq!(
            problems,
            ["base_image.sku: \"server\" boots amd64, but arch is arm64 (for arm64: \"server-arm64\", or leave sku out)"]
        );
        let arm = BaseImageSpec {
            offer: Some(UBUNTU_2204.into()),
            sku: Some("22_04-lts-arm64".into()),
            ..Default::default()
        };
        assert!(resolve_base(arm, Arch::Amd64).unwrap_err()[0].contains("boots arm64"));
        // An offer image-builder does not know needs its SKU named; a named one is trusted.
        let other = BaseImageSpec {
            publisher: Some("Debian".into()),
            offer: Some("debian-12".into()),
            ..Default::default()
        };
        assert!(resolve_base(other.clone(), Arch::Arm64).unwrap_err()[0]
            .contains("knows no arm64 SKU of Debian:debian-12"));
        let named = BaseImageSpec {
            sku: Some("12-arm64".into()),
            ..other
        };
        assert_eq!(resolve_base(named, Arch::Arm64).unwrap().sku, "12-arm64");
    }

    #[test]
    fn regions_compare_like_azure_does() {
        assert!(same_region("West Europe", "westeurope"));
        assert!(!same_region("westeurope", "northeurope"));
    }
}
