//! The ARM operation table, read from Microsoft's REST specifications, and the rules that match
//! a request against it the way ARM routes one.
//!
//! The table is `../shared/azure-rest-specs/operations.json` (every operation of every swagger
//! file brought there: method, path template, api-versions, long-running style, paging), plus
//! [`EXTRA_OPERATIONS`]: operations we call whose swagger is not in `shared/` yet, each with the
//! upstream file and commit it comes from. Nothing else is hand-kept: a new provider (Key Vault
//! management, issue 10) is served as soon as its swagger is in `shared/` and a handler exists.
//!
//! Matching follows `azure-rest-specs/INDEX.md`, "How to match a request":
//! 1. method and path case-insensitively, each `{param}` one segment, except the parameters ARM
//!    does not URL-encode (`{scope}`, `{resourceId}`, `{roleAssignmentId}`, `{roleId}`,
//!    `{parentResourcePath}`), which span several;
//! 2. a provider's own operation takes precedence over the generic by-id ones (templates with no
//!    literal segment, and Microsoft.Resources' `{resourceProviderNamespace}/...` operations whose
//!    api-version is the caller's): the generic ones apply only when no specific operation matches
//!    the path;
//! 3. a generic operation accepts only an api-version the target type's own spec declares.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

/// One operation of the specs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecOperation {
    pub provider: String,
    pub operation_id: String,
    pub method: String,
    pub path: String,
    pub api_versions: Vec<String>,
    pub file: String,
    #[serde(default)]
    pub long_running: bool,
    #[serde(default)]
    pub final_state_via: Option<String>,
    #[serde(default)]
    pub next_link_name: Option<String>,
    #[serde(skip)]
    segments: Vec<Segment>,
    #[serde(skip)]
    generic: bool,
}

impl SpecOperation {
    /// The swagger file the operation is defined in (relative to `azure-rest-specs/`, or the
    /// upstream path and commit for [`EXTRA_OPERATIONS`]).
    pub fn source(&self) -> &str {
        &self.file
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Lower-cased.
    Literal(String),
    Param(String),
    /// A parameter ARM does not URL-encode: one or more segments (`{parentResourcePath}`: zero or
    /// more).
    Span(String),
}

/// Parameters that span several path segments (`x-ms-skip-url-encoding` in the specs).
const SPANNING: &[&str] = &[
    "scope",
    "resourceId",
    "roleAssignmentId",
    "roleId",
    "parentResourcePath",
    "roleDefinitionId",
];

/// An operation we call whose swagger is not in `../shared/azure-rest-specs/` yet. Facts taken
/// with the read_file tool from github.com/Azure/azure-rest-api-specs; add the file to `shared/`
/// and drop the row.
pub struct ExtraOperation {
    pub provider: &'static str,
    pub operation_id: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub api_versions: &'static [&'static str],
    /// Upstream path @ commit.
    pub file: &'static str,
    pub next_link_name: Option<&'static str>,
}

/// The one table of operations taken from upstream rather than `shared/`.
pub const EXTRA_OPERATIONS: &[ExtraOperation] = &[
    ExtraOperation {
        // Resource SKUs: a VM size's family (the quota name Usage_List reports) and its vCPUs
        // (capability `vCPUs`), plus `restrictions` (SkuNotAvailable in a location or zone).
        // `$filter` "Only **location** filter is supported currently."; pageable nextLink.
        provider: "Microsoft.Compute",
        operation_id: "ResourceSkus_List",
        method: "GET",
        path: "/subscriptions/{subscriptionId}/providers/Microsoft.Compute/skus",
        api_versions: &["2021-07-01"],
        file: "specification/compute/resource-manager/Microsoft.Compute/Skus/stable/2021-07-01/skus.json @ 3e2e7cb59d6cfaa39716d4319d2d9683a2269748",
        next_link_name: Some("nextLink"),
    },
    ExtraOperation {
        // A managed image (image-builder's azure-arm output). api-version: common-types v1
        // `ApiVersionParameter`, i.e. the file's info.version; not long-running, not pageable;
        // optional `$expand`. Example: `examples/imageExamples/Image_Get.json` @
        // 91785a4af396a66765626bfd99889ff3d8eb0ab5.
        provider: "Microsoft.Compute",
        operation_id: "Images_Get",
        method: "GET",
        path: "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/images/{imageName}",
        api_versions: &["2024-11-01"],
        file: "specification/compute/resource-manager/Microsoft.Compute/ComputeRP/stable/2024-11-01/image.json @ 720adf860b6bc31f3be6964393e59b16e722da68",
        next_link_name: None,
    },
    ExtraOperation {
        // A Compute Gallery image version (image-builder's shared_image_gallery_destination).
        // api-version: common-types resource-management v3 `ApiVersionParameter` (info.version
        // 2024-03-03); not long-running, not pageable; `$expand` enum `ReplicationStatus`,
        // `UefiSettings`. Example: `examples/galleryExamples/GalleryImageVersion_Get.json` @
        // 752a096a35fcea4eb34f8e4dcb0b2d5ce3f08e36.
        provider: "Microsoft.Compute",
        operation_id: "GalleryImageVersions_Get",
        method: "GET",
        path: "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Compute/galleries/{galleryName}/images/{galleryImageName}/versions/{galleryImageVersionName}",
        api_versions: &["2024-03-03"],
        file: "specification/compute/resource-manager/Microsoft.Compute/GalleryRP/stable/2024-03-03/GalleryRP.json @ f5ec61419fff5b65e7a5f6a38782172d07b14ec4",
        next_link_name: None,
    },
];

/// Every operation, with the lookups matching needs.
pub struct Table {
    pub operations: Vec<SpecOperation>,
    /// `namespace/type[/child...]` (lower-cased) -> the api-versions its own operations declare.
    type_versions: BTreeMap<String, BTreeSet<String>>,
}

/// Where `shared/` is: `$NOMAD_AZURE_SHARED_DIR`, else the nearest ancestor of this crate that
/// holds `shared/azure-rest-specs` (a checkout's `../shared`, also from a git worktree).
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("NOMAD_AZURE_SHARED_DIR") {
        return PathBuf::from(dir);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared"))
        .find(|s| s.join("azure-rest-specs/operations.json").is_file())
        .unwrap_or_else(|| here.join("../../shared"))
}

/// The specs folder (`shared/azure-rest-specs`).
pub fn specs_dir() -> PathBuf {
    shared_dir().join("azure-rest-specs")
}

/// The ARM table (every management-plane operation), read once per process. Panics when the
/// specs are missing: this is test set-up.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    // Data-plane operations (IMDS, Key Vault secrets) live on other hosts.
    TABLE.get_or_init(|| Table::new(listed_operations(|o| !o.file.contains("/data-plane/"))))
}

/// The Key Vault secrets data plane (`keyvault/data-plane/.../secrets.json`), matched by the
/// same rules; paths are relative to the vault URL (`{vaultBaseUrl}`).
pub fn key_vault_secrets_table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        Table::new(listed_operations(|o| {
            o.file.contains("keyvault/data-plane/") && o.file.ends_with("/secrets.json")
        }))
    })
}

/// `operations.json` plus [`EXTRA_OPERATIONS`], the ones `keep` accepts.
fn listed_operations(keep: impl Fn(&SpecOperation) -> bool) -> Vec<SpecOperation> {
    let path = specs_dir().join("operations.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading the ARM operation table {}: {e}", path.display()));
    let listed: Vec<SpecOperation> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not an operation list: {e}", path.display()));
    let extra = EXTRA_OPERATIONS.iter().map(|e| SpecOperation {
        provider: e.provider.to_string(),
        operation_id: e.operation_id.to_string(),
        method: e.method.to_string(),
        path: e.path.to_string(),
        api_versions: e.api_versions.iter().map(|v| v.to_string()).collect(),
        file: e.file.to_string(),
        long_running: false,
        final_state_via: None,
        next_link_name: e.next_link_name.map(str::to_string),
        segments: Vec::new(),
        generic: false,
    });
    listed.into_iter().chain(extra).filter(keep).collect()
}

impl Table {
    fn new(mut operations: Vec<SpecOperation>) -> Self {
        for op in &mut operations {
            let template = op.path.split('?').next().unwrap_or("");
            op.segments = template
                .split('/')
                .filter(|s| !s.is_empty())
                .map(
                    |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                        Some(name) if SPANNING.contains(&name) => Segment::Span(name.to_string()),
                        Some(name) => Segment::Param(name.to_string()),
                        None => Segment::Literal(s.to_ascii_lowercase()),
                    },
                )
                .collect();
            let all_params = op
                .segments
                .iter()
                .all(|s| !matches!(s, Segment::Literal(_)));
            op.generic = all_params || op.api_versions.is_empty();
        }
        let mut type_versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for op in operations.iter().filter(|o| !o.generic) {
            for key in type_keys(&op.segments) {
                type_versions
                    .entry(key)
                    .or_default()
                    .extend(op.api_versions.iter().cloned());
            }
        }
        Self {
            operations,
            type_versions,
        }
    }

    /// The operation with this id.
    pub fn operation(&self, id: &str) -> Option<&SpecOperation> {
        self.operations.iter().find(|o| o.operation_id == id)
    }

    /// The api-versions the specs declare for a resource type (`Microsoft.Network/natGateways`).
    pub fn versions_of_type(&self, resource_type: &str) -> Vec<String> {
        self.type_versions
            .get(&resource_type.to_ascii_lowercase())
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The `namespace/type/child` keys a template's literal segments after its last `providers` name.
fn type_keys(segments: &[Segment]) -> Vec<String> {
    let Some(at) = segments
        .iter()
        .rposition(|s| *s == Segment::Literal("providers".into()))
    else {
        return Vec::new();
    };
    let rest = &segments[at + 1..];
    let Some(Segment::Literal(namespace)) = rest.first() else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    let mut key = namespace.clone();
    let mut i = 1;
    while let Some(Segment::Literal(kind)) = rest.get(i) {
        key = format!("{key}/{kind}");
        keys.push(key.clone());
        if !matches!(rest.get(i + 1), Some(Segment::Param(_))) {
            break;
        }
        i += 2;
    }
    keys
}

/// The resource type a path addresses: `namespace/type[/child]`, from the segments after its last
/// `providers` (instance paths: type, name, type, name...).
pub fn type_of_path(segments: &[&str]) -> Option<String> {
    let at = segments
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))?;
    let rest = &segments[at + 1..];
    let namespace = rest.first()?;
    let mut key = namespace.to_ascii_lowercase();
    let mut i = 1;
    while let Some(kind) = rest.get(i) {
        key = format!("{key}/{}", kind.to_ascii_lowercase());
        i += 2;
    }
    (i > 1).then_some(key)
}

/// A request matched to its operation.
#[derive(Debug, Clone)]
pub struct Matched {
    pub operation: &'static SpecOperation,
    /// Path parameters by the spec's name, as sent (spans joined with `/`).
    pub params: BTreeMap<String, String>,
    pub api_version: String,
    /// For a generic by-id operation: the target type (`microsoft.compute/disks`).
    pub target_type: Option<String>,
}

impl Matched {
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }
}

/// Why ARM refuses a request before any provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

fn matches(template: &[Segment], path: &[&str], params: &mut BTreeMap<String, String>) -> bool {
    match template.split_first() {
        None => path.is_empty(),
        Some((Segment::Literal(l), rest)) => {
            path.first().is_some_and(|p| p.eq_ignore_ascii_case(l))
                && matches(rest, &path[1..], params)
        }
        Some((Segment::Param(name), rest)) => {
            if path.is_empty() {
                return false;
            }
            params.insert(name.clone(), path[0].to_string());
            matches(rest, &path[1..], params) || {
                params.remove(name);
                false
            }
        }
        Some((Segment::Span(name), rest)) => {
            let min = usize::from(name != "parentResourcePath");
            for take in (min..=path.len()).rev() {
                params.insert(name.clone(), path[..take].join("/"));
                if matches(rest, &path[take..], params) {
                    return true;
                }
            }
            params.remove(name);
            false
        }
    }
}

fn literal_count(op: &SpecOperation) -> usize {
    op.segments
        .iter()
        .filter(|s| matches!(s, Segment::Literal(_)))
        .count()
}

fn span_count(op: &SpecOperation) -> usize {
    op.segments
        .iter()
        .filter(|s| matches!(s, Segment::Span(_)))
        .count()
}

/// Matches a request (`path` without the query) to its ARM operation, or says what ARM answers.
pub fn resolve(method: &str, path: &str, api_version: &str) -> Result<Matched, Refusal> {
    table().resolve(method, path, api_version)
}

impl Table {
    /// Matches a request (`path` without the query) to its operation in this table, or says
    /// what the service answers.
    pub fn resolve(
        &'static self,
        method: &str,
        path: &str,
        api_version: &str,
    ) -> Result<Matched, Refusal> {
        resolve_in(self, method, path, api_version)
    }
}

fn resolve_in(
    table: &'static Table,
    method: &str,
    path: &str,
    api_version: &str,
) -> Result<Matched, Refusal> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut specific = Vec::new();
    let mut generic = Vec::new();
    for op in &table.operations {
        let mut params = BTreeMap::new();
        if matches(&op.segments, &segments, &mut params) {
            if op.generic {
                generic.push((op, params));
            } else {
                specific.push((op, params));
            }
        }
    }
    let best = |candidates: Vec<(&'static SpecOperation, BTreeMap<String, String>)>| {
        candidates
            .into_iter()
            .filter(|(op, _)| op.method.eq_ignore_ascii_case(method))
            .max_by_key(|(op, _)| (literal_count(op), usize::MAX - span_count(op)))
    };
    let target_type = type_of_path(&segments);
    if !specific.is_empty() {
        let Some((op, params)) = best(specific) else {
            return Err(Refusal {
                status: 405,
                code: "HttpMethodNotSupported",
                message: format!("The requested resource does not support http method '{method}'."),
            });
        };
        if !op.api_versions.iter().any(|v| v == api_version) {
            return Err(version_refusal(op, api_version, target_type.as_deref()));
        }
        return Ok(Matched {
            operation: op,
            params,
            api_version: api_version.to_string(),
            target_type: None,
        });
    }
    let Some(target) = target_type else {
        return Err(Refusal {
            status: 404,
            code: "NotFound",
            message: format!("No HTTP resource was found that matches the request URI '{path}'."),
        });
    };
    // Prefer the by-id operation of the target's own provider (RoleAssignments_GetById for a
    // role assignment id), else Microsoft.Resources' generic one.
    let namespace = target.split('/').next().unwrap_or("").to_string();
    let candidates: Vec<_> = generic
        .into_iter()
        .filter(|(op, _)| op.method.eq_ignore_ascii_case(method))
        .filter(|(op, _)| {
            !op.api_versions.is_empty() && op.provider.eq_ignore_ascii_case(&namespace)
                || op.api_versions.is_empty()
        })
        .collect();
    let own = candidates
        .iter()
        .filter(|(op, _)| op.provider.eq_ignore_ascii_case(&namespace))
        .max_by_key(|(op, _)| literal_count(op))
        .cloned();
    let chosen = own.or_else(|| {
        candidates
            .into_iter()
            .max_by_key(|(op, _)| (literal_count(op), usize::MAX - span_count(op)))
    });
    let declared = table.versions_of_type(&target);
    let Some((op, params)) = chosen else {
        return Err(unknown_type(&target, api_version));
    };
    if declared.is_empty() {
        return Err(unknown_type(&target, api_version));
    }
    if !declared.iter().any(|v| v == api_version) {
        return Err(Refusal {
            status: 400,
            code: "NoRegisteredProviderFound",
            message: format!(
                "No registered resource provider found for location 'westeurope' and API version '{api_version}' for type '{}'. The supported api-versions are '{}'.",
                target.split_once('/').map_or(target.as_str(), |(_, t)| t),
                declared.join(", ")
            ),
        });
    }
    Ok(Matched {
        operation: op,
        params,
        api_version: api_version.to_string(),
        target_type: Some(target),
    })
}

fn unknown_type(target: &str, api_version: &str) -> Refusal {
    let (namespace, kind) = target.split_once('/').unwrap_or((target, ""));
    Refusal {
        status: 400,
        code: "NoRegisteredProviderFound",
        message: format!(
            "No registered resource provider found for location 'westeurope' and API version '{api_version}' for type '{kind}' in namespace '{namespace}' (no operation of this type is in the REST specs the double serves)."
        ),
    }
}

fn version_refusal(op: &SpecOperation, api_version: &str, target: Option<&str>) -> Refusal {
    let supported = op.api_versions.join(", ");
    if op.provider == "Microsoft.Resources" || op.provider == "Microsoft.Authorization" {
        Refusal {
            status: 400,
            code: "InvalidApiVersionParameter",
            message: format!(
                "The api-version '{api_version}' is invalid. The supported versions are '{supported}'."
            ),
        }
    } else {
        Refusal {
            status: 400,
            code: "NoRegisteredProviderFound",
            message: format!(
                "No registered resource provider found for location 'westeurope' and API version '{api_version}' for type '{}'. The supported api-versions are '{supported}'.",
                target
                    .and_then(|t| t.split_once('/').map(|(_, k)| k.to_string()))
                    .unwrap_or_else(|| op.operation_id.clone())
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RG: &str = "/subscriptions/s/resourceGroups/rg";

    #[test]
    fn the_scale_set_nic_listing_has_its_own_api_version() {
        let path = format!(
            "{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/vmss/networkInterfaces"
        );
        let refused = resolve("GET", &path, "2025-07-01").unwrap_err();
        assert_eq!(refused.code, "NoRegisteredProviderFound");
        let matched = resolve("GET", &path, "2017-03-30").unwrap();
        assert_eq!(
            matched.operation.operation_id,
            "NetworkInterfaces_ListVirtualMachineScaleSetNetworkInterfaces"
        );
        assert_eq!(matched.param("virtualMachineScaleSetName"), "vmss");
    }

    #[test]
    fn specific_operations_win_over_generic_ones() {
        let nsg = format!("{RG}/providers/Microsoft.Network/networkSecurityGroups/nsg");
        let m = resolve("DELETE", &nsg, "2025-07-01").unwrap();
        assert_eq!(m.operation.operation_id, "NetworkSecurityGroups_Delete");
        assert!(resolve("DELETE", &nsg, "2024-11-01").is_err());
        let rg = resolve("GET", RG, "2025-04-01").unwrap();
        assert_eq!(rg.operation.operation_id, "ResourceGroups_Get");
        assert_eq!(
            resolve("GET", RG, "2024-11-01").unwrap_err().code,
            "InvalidApiVersionParameter"
        );
        let d = resolve(
            "PUT",
            &format!("{RG}/providers/Microsoft.Resources/deployments/d"),
            "2025-04-01",
        )
        .unwrap();
        assert_eq!(d.operation.operation_id, "Deployments_CreateOrUpdate");
        let ra = resolve(
            "DELETE",
            &format!("{RG}/providers/Microsoft.Authorization/roleAssignments/x"),
            "2022-04-01",
        )
        .unwrap();
        assert_eq!(ra.operation.operation_id, "RoleAssignments_Delete");
        assert_eq!(ra.param("scope"), "subscriptions/s/resourceGroups/rg");
    }

    #[test]
    fn generic_operations_take_the_target_types_versions() {
        let disk = format!("{RG}/providers/Microsoft.Compute/disks/data");
        let refused = resolve("DELETE", &disk, "2024-11-01").unwrap_err();
        assert_eq!(refused.code, "NoRegisteredProviderFound");
        // The NIC path has its own operations, so the generic HEAD does not apply (rule 2).
        let nic = format!("{RG}/providers/Microsoft.Network/networkInterfaces/nic");
        assert_eq!(resolve("HEAD", &nic, "2025-07-01").unwrap_err().status, 405);
        // A role assignment by id: Authorization's own by-id operation, its versions only.
        let ra = "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/x";
        let m = resolve("GET", ra, "2022-04-01").unwrap();
        assert_eq!(m.operation.operation_id, "RoleAssignments_Get");
        assert!(resolve("GET", ra, "2025-07-01").is_err());
    }

    #[test]
    fn extra_operations_and_wrong_methods() {
        let skus = resolve(
            "GET",
            "/subscriptions/s/providers/Microsoft.Compute/skus",
            "2021-07-01",
        )
        .unwrap();
        assert_eq!(skus.operation.operation_id, "ResourceSkus_List");
        let usage = resolve(
            "GET",
            "/subscriptions/s/providers/Microsoft.Compute/locations/westeurope/usages",
            "2024-11-01",
        )
        .unwrap();
        assert_eq!(usage.operation.operation_id, "Usage_List");
        // The two image reads, each at its own file's api-version only.
        let image = format!("{RG}/providers/Microsoft.Compute/images/nomad");
        let m = resolve("GET", &image, "2024-11-01").unwrap();
        assert_eq!(m.operation.operation_id, "Images_Get");
        assert_eq!(m.param("imageName"), "nomad");
        assert_eq!(
            resolve("GET", &image, "2024-03-03").unwrap_err().code,
            "NoRegisteredProviderFound"
        );
        let version =
            format!("{RG}/providers/Microsoft.Compute/galleries/g/images/nomad/versions/1.0.0");
        let m = resolve("GET", &version, "2024-03-03").unwrap();
        assert_eq!(m.operation.operation_id, "GalleryImageVersions_Get");
        assert_eq!(m.param("galleryImageVersionName"), "1.0.0");
        assert!(resolve("GET", &version, "2024-11-01").is_err());
        assert_eq!(
            resolve("PATCH", &format!("{RG}/resources"), "2025-04-01")
                .unwrap_err()
                .status,
            405
        );
    }
}
