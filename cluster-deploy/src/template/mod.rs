//! The cluster model as an ARM deployment template (schema 2019-04-01). Pure: the same model
//! always gives the same JSON, which `tests/` validates against Microsoft's schemas and
//! compares with a golden file.
//!
//! API versions are pinned to the schemas in `../shared/azure-schemas/`. Facts the template
//! relies on (REFERENCE.md, "Azure Resource Manager"):
//! - Network 2025-07-01 subnets have no default outbound access: egress is a NAT gateway or a
//!   load balancer outbound rule, never implicit. A Standard NAT gateway is zonal (or "no
//!   zone", Azure picking one): when the scale sets span zones the gateway is StandardV2, with
//!   a StandardV2 public IP, both zone-redundant.
//! - Basic load balancers and public IPs are retired; inbound NAT pools retire 2027-09-30: a
//!   Standard load balancer with a v2 inbound NAT rule over a port range and a backend pool.
//! - A PUT replaces child collections. So nothing we declare wipes what others added:
//!   - the virtual network is declared without `subnets` (since Network 2023-09-01 a VNet PUT
//!     without the property leaves the subnets alone; an empty list would delete them) and our
//!     subnet is its own child resource, whose PUT touches that subnet only;
//!   - an NSG PUT without `securityRules` still deletes every rule, so the NSG is declared
//!     (with its rules inline) only while it does not exist: the `createNetworkSecurityGroup`
//!     parameter, which apply and plan set from a GET of the NSG, makes it conditional, and
//!     once it exists each of our rules is deployed as its own child resource (one after the
//!     other: the Network provider serializes writes to one NSG). Our rules keep their names
//!     and priorities in every template (see [`crate::model`]), so each redeploy overwrites
//!     them, and rules added outside cluster-deploy stay.
//! - The Reader assignment names `principalType: ServicePrincipal` so a fresh identity is not
//!   refused with `PrincipalNotFound` while it replicates.
//! - Each scale set reports instance health through the Application Health extension (binary
//!   health states, `typeHandlerVersion` 1.0: HTTP 200 is healthy), probing Nomad on the HTTP
//!   port over `https` when Nomad serves TLS, and has automatic repairs with a grace period
//!   that covers boot.
//! - The cluster's Key Vault and its role assignments ([`key_vault`]). No secret is in the
//!   template, its parameters or custom data: the secrets go to the vault through its data
//!   plane, and custom data only names the vault.

use serde_json::{json, Map, Value};

pub mod key_vault;
mod network;
mod scale_set;

use crate::custom_data;
use crate::model::Cluster;

pub const SCHEMA: &str =
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#";
pub const COMPUTE_API: &str = "2024-11-01";
pub const NETWORK_API: &str = "2025-07-01";
pub const AUTHORIZATION_API: &str = "2022-04-01";
pub const RESOURCES_API: &str = "2025-04-01";
/// Microsoft.KeyVault management (keyvault.json 2025-05-01).
pub const KEY_VAULT_API: &str = "2025-05-01";

/// Azure's built-in Reader role (REFERENCE.md).
pub const READER_ROLE_ID: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

/// The string parameter naming the principal that uploads the secrets (not a secret).
pub const OPERATOR_PARAMETER: &str = "operatorObjectId";

/// The bool parameter that says whether the NSG is to be created with its rules (true, the
/// default) or already exists, its rules then deployed one by one (false).
pub const CREATE_NSG_PARAMETER: &str = "createNetworkSecurityGroup";

/// How long a VM about to be deleted waits for the terminate notification (ISO 8601; the scale
/// set allows 5 to 15 minutes). Five minutes is enough to drain a Nomad client.
pub const TERMINATE_NOT_BEFORE: &str = "PT5M";

/// The Application Health extension for Linux (publisher, type, the binary-states version).
pub const HEALTH_EXTENSION: (&str, &str, &str) =
    ("Microsoft.ManagedServices", "ApplicationHealthLinux", "1.0");

/// Seconds between health probes, and failed probes before an instance is unhealthy.
pub const HEALTH_PROBE_INTERVAL_SECS: u32 = 10;
pub const HEALTH_PROBE_COUNT: u32 = 3;

fn resource_id(kind: &str, names: &[&str]) -> String {
    let mut out = format!("[resourceId('{kind}'");
    for name in names {
        out.push_str(&format!(", '{}'", name.replace('\'', "''")));
    }
    out.push_str(")]");
    out
}

/// A literal string as ARM reads it: a value starting with `[` is an expression unless the
/// bracket is doubled (ARM template syntax, "Escape characters"), so a tag value like `[prod]`
/// stays text and can never call a template function.
pub fn literal(value: &str) -> String {
    if value.starts_with('[') {
        format!("[{value}")
    } else {
        value.to_string()
    }
}

fn tags(cluster: &Cluster) -> Value {
    let tags: Map<String, Value> = cluster
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), json!(literal(v))))
        .collect();
    Value::Object(tags)
}

/// The ARM template expression for a resource id, without its brackets (for use inside
/// another expression).
fn id_expression(kind: &str, names: &[&str]) -> String {
    resource_id(kind, names)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// The template for a cluster.
pub fn render(cluster: &Cluster) -> Value {
    let n = &cluster.names;
    let mut resources = Vec::new();
    let variables = Map::new();
    let mut parameters = Map::new();

    parameters.insert(
        CREATE_NSG_PARAMETER.to_string(),
        json!({
            "type": "bool",
            "defaultValue": true,
            "metadata": {
                "description": "true: create the network security group with its rules; false: it exists, so only its rules are deployed, one by one, and rules added outside cluster-deploy stay. cluster-deploy sets it from a GET of the group."
            },
        }),
    );
    resources.extend(network::resources(cluster));
    if cluster.security.key_vault.is_some() {
        parameters.insert(
            OPERATOR_PARAMETER.to_string(),
            key_vault::operator_parameter(),
        );
    }
    resources.extend(key_vault::resources(cluster));

    for set in cluster.scale_sets() {
        let custom_data = custom_data::encode(&custom_data::script(cluster, set));
        resources.push(scale_set::scale_set(cluster, set, custom_data));
    }
    for set in cluster.scale_sets() {
        resources.push(scale_set::reader_assignment(cluster, set));
    }
    for set in cluster.scale_sets() {
        resources.extend(key_vault::secret_assignments(cluster, set));
    }

    let mut outputs = Map::new();
    outputs.insert(
        "serverScaleSet".into(),
        json!({ "type": "string", "value": n.servers }),
    );
    if let Some(first) = cluster.client_pools.first() {
        outputs.insert(
            "clientScaleSet".into(),
            json!({ "type": "string", "value": first.name }),
        );
    }
    outputs.insert(
        "clientScaleSets".into(),
        json!({
            "type": "array",
            "value": cluster.client_pools.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        }),
    );
    outputs.insert(
        "networkSecurityGroupId".into(),
        json!({
            "type": "string",
            "value": resource_id("Microsoft.Network/networkSecurityGroups", &[&n.nsg]),
        }),
    );
    if let Some(kv) = &cluster.security.key_vault {
        outputs.insert(
            "keyVaultName".into(),
            json!({ "type": "string", "value": kv.name }),
        );
    }
    if let Some(lb) = &cluster.load_balancer {
        outputs.insert(
            "loadBalancerAddress".into(),
            json!({
                "type": "string",
                "value": format!(
                    "[reference({}, '{NETWORK_API}').ipAddress]",
                    id_expression("Microsoft.Network/publicIPAddresses", &[&lb.public_ip])
                ),
            }),
        );
    }

    let mut template = Map::new();
    template.insert("$schema".into(), json!(SCHEMA));
    template.insert("contentVersion".into(), json!("1.0.0.0"));
    template.insert(
        "metadata".into(),
        json!({
            "generator": { "name": "cluster-deploy", "version": env!("CARGO_PKG_VERSION") },
            "cluster": cluster.name,
        }),
    );
    template.insert("parameters".into(), Value::Object(parameters));
    template.insert("variables".into(), Value::Object(variables));
    template.insert("resources".into(), Value::Array(resources));
    template.insert("outputs".into(), Value::Object(outputs));
    Value::Object(template)
}

/// The deployment parameters: the operator's object id when the cluster has a vault (an id,
/// not a secret). `createNetworkSecurityGroup` keeps its default (true) unless
/// [`with_existing_nsg`] says otherwise.
pub fn parameters(cluster: &Cluster, operator_object_id: Option<&str>) -> Value {
    let mut p = Map::new();
    if let (Some(_), Some(id)) = (&cluster.security.key_vault, operator_object_id) {
        p.insert(OPERATOR_PARAMETER.into(), json!({ "value": id }));
    }
    Value::Object(p)
}

/// The parameters with `createNetworkSecurityGroup` set from whether the NSG exists (a GET by
/// the caller): an existing NSG is not declared again, so rules others added to it stay.
pub fn with_existing_nsg(mut parameters: Value, nsg_exists: bool) -> Value {
    parameters[CREATE_NSG_PARAMETER] = json!({ "value": !nsg_exists });
    parameters
}

/// The template as the pretty JSON written by `plan --out`, newline-terminated.
pub fn to_pretty(template: &Value) -> String {
    let mut text = serde_json::to_string_pretty(template).expect("JSON values serialize");
    text.push('\n');
    text
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::tests::example;

    pub(super) fn resources_of<'a>(template: &'a Value, kind: &str) -> Vec<&'a Value> {
        template["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == kind)
            .collect()
    }

    #[test]
    fn tag_values_that_look_like_expressions_stay_text() {
        let mut cluster = example();
        cluster
            .tags
            .insert("team".into(), "[subscription().id]".into());
        let template = render(&cluster);
        for r in template["resources"].as_array().unwrap() {
            if r.get("tags").is_some() {
                assert_eq!(r["tags"]["team"], "[[subscription().id]");
            }
        }
        assert_eq!(literal("plain"), "plain");
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(render(&example()), render(&example()));
    }

    #[test]
    fn no_secret_parameter_and_custom_data_is_literal() {
        let template = render(&example());
        let names: Vec<&String> = template["parameters"].as_object().unwrap().keys().collect();
        assert_eq!(names, [CREATE_NSG_PARAMETER, OPERATOR_PARAMETER]);
        assert!(template["parameters"]
            .as_object()
            .unwrap()
            .values()
            .all(|p| p["type"] != "securestring" && p["type"] != "secureObject"));
        assert_eq!(template["variables"], json!({}));
        for set in resources_of(&template, "Microsoft.Compute/virtualMachineScaleSets") {
            let data = set["properties"]["virtualMachineProfile"]["osProfile"]["customData"]
                .as_str()
                .unwrap();
            assert!(!data.starts_with('['), "no expression assembles it");
        }
    }
}
