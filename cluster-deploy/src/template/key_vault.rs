//! The cluster's Key Vault in the template, and who may use it.
//!
//! - The vault (Microsoft.KeyVault 2025-05-01, `VaultProperties` in keyvault.json): RBAC
//!   authorization (`enableRbacAuthorization: true`, `accessPolicies: []`, which the spec
//!   requires on creation), soft delete with the configured retention, purge protection only
//!   when asked (the property "does not accept false": it is left out otherwise), no trusted-
//!   service bypass, and a firewall (`networkAcls`) that admits the operators' public blocks
//!   and the cluster's subnet. The subnet reaches the vault through its `Microsoft.KeyVault`
//!   service endpoint (a virtual network rule; Key Vault documentation, "Virtual network
//!   service endpoints for Azure Key Vault"): scale set identities are not "trusted Microsoft
//!   services", so that is how the VMs get through, whatever their egress. An existing subnet
//!   (`subnet_id`) must have that endpoint already: `ignoreMissingVnetServiceEndpoint: false`
//!   makes Azure refuse the rule otherwise, rather than leave the VMs locked out.
//! - The operator (`operatorObjectId`: the principal `apply` runs as) gets Key Vault Secrets
//!   Officer on the vault, to upload and rotate. Each scale set's identity gets Key Vault
//!   Secrets User on exactly the secrets its role reads, one assignment per secret ("Secret
//!   scope role assignment", Key Vault RBAC guide), so a client can never read the gossip key
//!   or a server's key. Names are `guid(vault id, ...)`: deterministic, so a redeploy finds the
//!   same assignment. A recovered vault comes back without its assignments (soft-delete
//!   overview): the next deployment makes them again.
//! - [`vault_template`] is the first of apply's two deployments: the vault (when it does not
//!   exist yet, or is being recovered) and the operator's assignment, so the secrets are in
//!   the vault before any VM boots and before anything is granted on them.

use serde_json::{json, Value};
use support::cluster_secrets::SecretItem;

use super::{
    resource_id, tags, AUTHORIZATION_API, COMPUTE_API, KEY_VAULT_API, OPERATOR_PARAMETER, SCHEMA,
};
use crate::model::{Cluster, KeyVault, ScaleSet, Subnet};

/// Key Vault Secrets Officer (built-in role): every secret data action.
pub const SECRETS_OFFICER_ROLE_ID: &str = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";
/// Key Vault Secrets User (built-in role): read a secret's value.
pub const SECRETS_USER_ROLE_ID: &str = "4633458b-17de-408a-b874-0445c86b69e6";

pub const VAULT_TYPE: &str = "Microsoft.KeyVault/vaults";

/// The vault's `resourceId(...)` expression, for `dependsOn`.
pub(super) fn vault_id(vault: &KeyVault) -> String {
    resource_id(VAULT_TYPE, &[&vault.name])
}

fn expression(id: &str) -> &str {
    id.trim_start_matches('[').trim_end_matches(']')
}

fn role_definition(role: &str) -> String {
    format!("[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{role}')]")
}

/// The subnet the scale sets are in, as the vault's rule names it.
/// Key Vault returns rules normalized (the spec's `createVaultWithNetworkAcls.json` example):
/// subnet ids lower-cased, a bare address as `/32`. The template states them that way, so a
/// what-if after apply sees no change.
fn subnet_rule(cluster: &Cluster) -> Value {
    let id = match &cluster.subnet {
        Subnet::Existing { id } => id.to_ascii_lowercase(),
        Subnet::Created { .. } => format!(
            "[toLower({})]",
            expression(&resource_id(
                "Microsoft.Network/virtualNetworks/subnets",
                &[&cluster.names.vnet, &cluster.names.subnet],
            ))
        ),
    };
    json!({ "id": id, "ignoreMissingVnetServiceEndpoint": false })
}

fn ip_rule(cidr: &str) -> Value {
    let value = if cidr.contains('/') {
        cidr.to_string()
    } else {
        format!("{cidr}/32")
    };
    json!({ "value": value })
}

/// The vault resource. `with_created_subnet`: the rule for a subnet this template creates (not
/// in the first deployment, which runs before the subnet exists). `recover`: `createMode`.
fn vault(cluster: &Cluster, vault: &KeyVault, with_created_subnet: bool, recover: bool) -> Value {
    let created_subnet = matches!(cluster.subnet, Subnet::Created { .. });
    let mut network_rules = Vec::new();
    if !created_subnet || with_created_subnet {
        network_rules.push(subnet_rule(cluster));
    }
    let ip_rules: Vec<Value> = vault.allowed_cidrs.iter().map(|c| ip_rule(c)).collect();
    let mut properties = json!({
        "tenantId": "[subscription().tenantId]",
        "sku": { "family": "A", "name": "standard" },
        "enableRbacAuthorization": true,
        "accessPolicies": [],
        "enableSoftDelete": true,
        "softDeleteRetentionInDays": vault.retention_days,
        "enabledForDeployment": false,
        "enabledForDiskEncryption": false,
        "enabledForTemplateDeployment": false,
        "publicNetworkAccess": "Enabled",
        "networkAcls": {
            "bypass": "None",
            "defaultAction": if vault.open { "Allow" } else { "Deny" },
            "ipRules": ip_rules,
            "virtualNetworkRules": network_rules,
        },
    });
    if vault.purge_protection {
        properties["enablePurgeProtection"] = json!(true);
    }
    if recover {
        properties["createMode"] = json!("recover");
    }
    let mut resource = json!({
        "type": VAULT_TYPE,
        "apiVersion": KEY_VAULT_API,
        "name": vault.name,
        "location": cluster.location,
        "tags": tags(cluster),
        "properties": properties,
    });
    if created_subnet && with_created_subnet {
        resource["dependsOn"] = json!([resource_id(
            "Microsoft.Network/virtualNetworks/subnets",
            &[&cluster.names.vnet, &cluster.names.subnet],
        )]);
    }
    resource
}

/// Key Vault Secrets Officer for the operator, on the vault.
fn operator_assignment(cluster: &Cluster, vault: &KeyVault, declared: bool) -> Value {
    let id = vault_id(vault);
    let mut resource = json!({
        "type": "Microsoft.Authorization/roleAssignments",
        "apiVersion": AUTHORIZATION_API,
        "name": format!(
            "[guid({}, parameters('{OPERATOR_PARAMETER}'), '{SECRETS_OFFICER_ROLE_ID}')]",
            expression(&id)
        ),
        "scope": format!("{VAULT_TYPE}/{}", vault.name),
        "properties": {
            "roleDefinitionId": role_definition(SECRETS_OFFICER_ROLE_ID),
            "principalId": format!("[parameters('{OPERATOR_PARAMETER}')]"),
            "description": format!(
                "Writes and rotates the secrets of Nomad cluster {}, made by cluster-deploy",
                cluster.name
            ),
        },
    });
    if declared {
        resource["dependsOn"] = json!([id]);
    }
    resource
}

/// Key Vault Secrets User for a scale set's identity on each secret its role reads.
pub(super) fn secret_assignments(cluster: &Cluster, set: &ScaleSet) -> Vec<Value> {
    let Some(vault) = &cluster.security.key_vault else {
        return Vec::new();
    };
    let vmss = resource_id("Microsoft.Compute/virtualMachineScaleSets", &[&set.name]);
    cluster
        .security
        .items_for(set.role)
        .into_iter()
        .map(|item| secret_assignment(cluster, vault, set, &vmss, item))
        .collect()
}

fn secret_assignment(
    cluster: &Cluster,
    vault: &KeyVault,
    set: &ScaleSet,
    vmss: &str,
    item: SecretItem,
) -> Value {
    let id = vault_id(vault);
    let secret = item.vault_name();
    json!({
        "type": "Microsoft.Authorization/roleAssignments",
        "apiVersion": AUTHORIZATION_API,
        "name": format!(
            "[guid({}, '{secret}', '{}', '{SECRETS_USER_ROLE_ID}')]",
            expression(&id),
            set.name
        ),
        "scope": format!("{VAULT_TYPE}/{}/secrets/{secret}", vault.name),
        "dependsOn": [id, vmss],
        "properties": {
            "roleDefinitionId": role_definition(SECRETS_USER_ROLE_ID),
            "principalId": format!("[reference({}, '{COMPUTE_API}', 'full').identity.principalId]", expression(vmss)),
            "principalType": "ServicePrincipal",
            "description": format!(
                "{} ({}) reads {secret} at boot, made by cluster-deploy for Nomad cluster {}",
                set.name,
                set.role_name(),
                cluster.name
            ),
        },
    })
}

/// The vault and the operator's assignment, for the main template.
pub(super) fn resources(cluster: &Cluster) -> Vec<Value> {
    let Some(kv) = &cluster.security.key_vault else {
        return Vec::new();
    };
    vec![
        vault(cluster, kv, true, false),
        operator_assignment(cluster, kv, true),
    ]
}

/// The operator parameter's declaration.
pub(super) fn operator_parameter() -> Value {
    json!({
        "type": "string",
        "metadata": {
            "description": "Object id of the principal that uploads the cluster's secrets (Key Vault Secrets Officer on the vault). cluster-deploy sets it from its own token."
        },
    })
}

/// What the first deployment of `apply` does about the vault itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultStep {
    /// It exists: only the operator's assignment is deployed.
    Exists,
    /// Create it.
    Create,
    /// Bring a soft-deleted vault of this name back (`createMode: recover`), with its secrets.
    Recover,
}

/// The first deployment: the vault when it must be created or recovered (without the rule for
/// a subnet the main template has yet to create), and the operator's Secrets Officer
/// assignment. `None` when the cluster keeps nothing in a vault.
pub fn vault_template(cluster: &Cluster, step: VaultStep) -> Option<Value> {
    let kv = cluster.security.key_vault.as_ref()?;
    let mut resources = Vec::new();
    if step != VaultStep::Exists {
        resources.push(vault(cluster, kv, false, step == VaultStep::Recover));
    }
    resources.push(operator_assignment(cluster, kv, step != VaultStep::Exists));
    Some(json!({
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": {
            "generator": { "name": "cluster-deploy", "version": env!("CARGO_PKG_VERSION") },
            "cluster": cluster.name,
        },
        "parameters": { OPERATOR_PARAMETER: operator_parameter() },
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::resources_of;
    use super::super::*;
    use super::*;
    use crate::model::tests::{example, example_with};

    fn vault_of(template: &Value) -> &Value {
        resources_of(template, VAULT_TYPE)[0]
    }

    #[test]
    fn the_vault_uses_rbac_soft_delete_and_a_firewall() {
        let cluster = example();
        let template = render(&cluster);
        let v = vault_of(&template);
        let p = &v["properties"];
        assert_eq!(p["enableRbacAuthorization"], true);
        assert_eq!(p["accessPolicies"], json!([]));
        assert_eq!(p["enableSoftDelete"], true);
        assert_eq!(p["softDeleteRetentionInDays"], 90);
        assert!(p.get("enablePurgeProtection").is_none(), "never false");
        assert_eq!(p["tenantId"], "[subscription().tenantId]");
        let acls = &p["networkAcls"];
        assert_eq!(acls["defaultAction"], "Deny");
        assert_eq!(acls["bypass"], "None");
        assert_eq!(acls["ipRules"], json!([{ "value": "203.0.113.0/24" }]));
        assert_eq!(
            acls["virtualNetworkRules"][0]["id"],
            "[toLower(resourceId('Microsoft.Network/virtualNetworks/subnets', 'nomad-test-vnet', 'nomad-test-subnet'))]"
        );
        // The subnet has the service endpoint the rule needs.
        let subnet = resources_of(&template, "Microsoft.Network/virtualNetworks/subnets")[0];
        assert_eq!(
            subnet["properties"]["serviceEndpoints"],
            json!([{ "service": "Microsoft.KeyVault" }])
        );
        let with = render(&example_with(
            "[key_vault]\npurge_protection = true\nsoft_delete_retention_days = 30\n",
        ));
        let p = &vault_of(&with)["properties"];
        assert_eq!(p["enablePurgeProtection"], true);
        assert_eq!(p["softDeleteRetentionInDays"], 30);
    }

    #[test]
    fn each_identity_reads_only_its_roles_secrets() {
        let cluster = example();
        let template = render(&cluster);
        let kv = &cluster.security.key_vault.as_ref().unwrap().name;
        let scopes = |set: &str| -> Vec<String> {
            resources_of(&template, "Microsoft.Authorization/roleAssignments")
                .into_iter()
                .filter(|r| {
                    r["properties"]["principalId"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("'{set}'"))
                        && r.get("scope").is_some()
                })
                .map(|r| {
                    assert!(r["properties"]["roleDefinitionId"]
                        .as_str()
                        .unwrap()
                        .contains(SECRETS_USER_ROLE_ID));
                    r["scope"].as_str().unwrap().to_string()
                })
                .collect()
        };
        let prefix = format!("Microsoft.KeyVault/vaults/{kv}/secrets/");
        assert_eq!(
            scopes("nomad-test-servers"),
            [
                "nomad-gossip-key",
                "nomad-ca-cert",
                "nomad-server-cert",
                "nomad-server-key"
            ]
            .map(|s| format!("{prefix}{s}"))
        );
        assert_eq!(
            scopes("nomad-test-clients"),
            ["nomad-ca-cert", "nomad-client-cert", "nomad-client-key"]
                .map(|s| format!("{prefix}{s}"))
        );
        // The operator writes, on the vault.
        let officer: Vec<&Value> =
            resources_of(&template, "Microsoft.Authorization/roleAssignments")
                .into_iter()
                .filter(|r| r["scope"] == format!("Microsoft.KeyVault/vaults/{kv}"))
                .collect();
        assert_eq!(officer.len(), 1);
        assert_eq!(
            officer[0]["properties"]["principalId"],
            "[parameters('operatorObjectId')]"
        );
        assert_eq!(template["parameters"][OPERATOR_PARAMETER]["type"], "string");
    }

    #[test]
    fn without_a_vault_there_is_nothing_of_it() {
        let template = render(&example_with(
            "[nomad]\nacl = false\ngossip_encryption = false\n[nomad.tls]\nenabled = false\n",
        ));
        assert!(resources_of(&template, VAULT_TYPE).is_empty());
        assert!(template["parameters"].get(OPERATOR_PARAMETER).is_none());
        let subnet = resources_of(&template, "Microsoft.Network/virtualNetworks/subnets")[0];
        assert!(subnet["properties"].get("serviceEndpoints").is_none());
        assert_eq!(
            resources_of(&template, "Microsoft.Authorization/roleAssignments").len(),
            2,
            "the Reader assignments only"
        );
    }

    #[test]
    fn the_first_deployment_makes_or_recovers_the_vault_before_its_subnet_exists() {
        let cluster = example();
        let create = vault_template(&cluster, VaultStep::Create).unwrap();
        let resources = create["resources"].as_array().unwrap();
        assert_eq!(resources.len(), 2);
        assert_eq!(
            resources[0]["properties"]["networkAcls"]["virtualNetworkRules"],
            json!([])
        );
        assert!(resources[0].get("dependsOn").is_none());
        let recover = vault_template(&cluster, VaultStep::Recover).unwrap();
        assert_eq!(
            recover["resources"][0]["properties"]["createMode"],
            "recover"
        );
        let exists = vault_template(&cluster, VaultStep::Exists).unwrap();
        let only = exists["resources"].as_array().unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0]["type"], "Microsoft.Authorization/roleAssignments");
        assert!(only[0].get("dependsOn").is_none());
        // An existing subnet is in the rule from the start.
        let existing = example_with(
            "subnet_id = \"/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/nomad\"\n\
             egress = \"existing\"\naddress_space = DROP\nsubnet_address = DROP\n",
        );
        let create = vault_template(&existing, VaultStep::Create).unwrap();
        assert_eq!(
            create["resources"][0]["properties"]["networkAcls"]["virtualNetworkRules"][0]["id"],
            "/subscriptions/s/resourcegroups/net/providers/microsoft.network/virtualnetworks/v/subnets/nomad"
        );
        let single = render(&example_with(
            "[key_vault]\nallowed_cidr_blocks = [\"198.51.100.7\"]\n",
        ));
        assert_eq!(
            vault_of(&single)["properties"]["networkAcls"]["ipRules"],
            json!([{ "value": "198.51.100.7/32" }])
        );
    }
}
