//! What ARM's records say the cluster made, for destroy: the resources of every recorded
//! deployment of the cluster (apply's main deployment `<deployment>` and the vault's
//! `<deployment>.vault`, earlier `<deployment>-vault`), each trusted only when it is the
//! cluster's ([`Ownership`]), taken from their operations (`DeploymentOperations_List`:
//! `properties.targetResource`) and their `properties.outputResources` (Deployments_Get,
//! resources.json 2025-04-01). A record replaced by a later deployment of the same name, or
//! deleted (Deployments_Delete), says nothing any more: destroy then falls back on the scale
//! sets' identities ([`ours_by_identity`]).
//!
//! A resource in a record is ours even when today's cluster file no longer declares it (a client
//! pool removed after apply): [`stale`] picks those in the group that carry the cluster's
//! deterministic naming (`<cluster>-...`), and destroy deletes one only while it (or its
//! parent) still carries the cluster's tag.

use anyhow::{Context, Result};
use serde_json::Value;

use super::vault::{legacy_vault_deployment_name, vault_deployment_name};
use crate::arm::ArmClient;
use crate::model::CLUSTER_TAG;
use crate::template::key_vault::{SECRETS_OFFICER_ROLE_ID, SECRETS_USER_ROLE_ID};
use crate::template::{AUTHORIZATION_API, COMPUTE_API, KEY_VAULT_API, NETWORK_API, READER_ROLE_ID};

pub(super) const ROLE_ASSIGNMENT: &str = "Microsoft.Authorization/roleAssignments";

/// A resource a deployment record names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recorded {
    pub(super) id: String,
    pub(super) kind: String,
}

/// The type of a resource id: the namespace and the type segments after its last `/providers/`
/// (an extension resource such as a role assignment on a secret is of its own type).
pub(super) fn kind_of(id: &str) -> Option<String> {
    let (_, tail) = id.rsplit_once("/providers/")?;
    let segments: Vec<&str> = tail.split('/').collect();
    let (namespace, rest) = segments.split_first()?;
    if rest.is_empty() || rest.len() % 2 != 0 {
        return None;
    }
    let types: Vec<&str> = rest.iter().step_by(2).copied().collect();
    Some(format!("{namespace}/{}", types.join("/")))
}

/// The name of a resource id as a template writes it (`vnet/subnet` for a child).
pub(super) fn name_of(id: &str) -> Option<String> {
    let (_, tail) = id.rsplit_once("/providers/")?;
    let segments: Vec<&str> = tail.split('/').collect();
    let names: Vec<&str> = segments.iter().skip(2).step_by(2).copied().collect();
    (!names.is_empty()).then(|| names.join("/"))
}

/// Which of the cluster's deployments a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecordKind {
    /// `<deployment>`: everything.
    Main,
    /// `<deployment>.vault` (or the legacy `<deployment>-vault`): the vault and the operator's
    /// role on it.
    Vault,
}

/// How destroy tells the cluster's records from somebody else's deployment of the same name
/// (another cluster called `<cluster>-vault`, an operator's `az deployment group create` of a
/// `nomad.json`).
pub(super) struct Ownership<'a> {
    pub(super) cluster: &'a str,
    /// The id of the cluster's server scale set.
    pub(super) server_scale_set: &'a str,
    /// The id of the cluster's vault, when it has one.
    pub(super) vault: Option<&'a str>,
}

impl Ownership<'_> {
    /// A record is ours when cluster-deploy's tag on it names this cluster. One without the tag
    /// (made before deployments were tagged) is ours only by its shape: the main deployment
    /// made the cluster's server scale set; the vault deployment made nothing but the cluster's
    /// vault and what is inside it. A record tagged for another cluster never is.
    fn owns(&self, kind: RecordKind, record: &Value, resources: &[Recorded]) -> bool {
        match record["tags"][CLUSTER_TAG].as_str() {
            Some(tag) => tag == self.cluster,
            None => match kind {
                RecordKind::Main => resources
                    .iter()
                    .any(|r| r.id.eq_ignore_ascii_case(self.server_scale_set)),
                RecordKind::Vault => self.vault.is_some_and(|vault| {
                    let inside = format!("{}/", vault.to_ascii_lowercase());
                    !resources.is_empty()
                        && resources.iter().all(|r| {
                            let id = r.id.to_ascii_lowercase();
                            id == vault.to_ascii_lowercase() || id.starts_with(&inside)
                        })
                }),
            },
        }
    }
}

/// The union of what the cluster's deployment records name, in the order first seen. Records
/// that are not the cluster's ([`Ownership::owns`]) are skipped, with a warning.
pub(super) fn recorded(
    arm: &ArmClient,
    group: &str,
    deployment: &str,
    owner: &Ownership,
) -> Result<Vec<Recorded>> {
    let mut out: Vec<Recorded> = Vec::new();
    let names = [
        (deployment.to_string(), RecordKind::Main),
        (vault_deployment_name(deployment), RecordKind::Vault),
        (legacy_vault_deployment_name(deployment), RecordKind::Vault),
    ];
    for (name, kind) in names {
        let Some(record) = arm
            .deployment(group, &name)
            .with_context(|| format!("reading deployment {name} of resource group {group}"))?
        else {
            continue;
        };
        let operations = arm
            .deployment_operations(group, &name)
            .with_context(|| format!("listing the operations of deployment {name}"))?;
        let mut these: Vec<Recorded> = Vec::new();
        let mut add = |id: &str, kind: Option<&str>| {
            let Some(kind) = kind.map(str::to_string).or_else(|| kind_of(id)) else {
                return;
            };
            if !id.is_empty() && !these.iter().any(|r| r.id.eq_ignore_ascii_case(id)) {
                these.push(Recorded {
                    id: id.to_string(),
                    kind,
                });
            }
        };
        for op in &operations {
            let target = &op["properties"]["targetResource"];
            if let Some(id) = target["id"].as_str() {
                add(id, target["resourceType"].as_str());
            }
        }
        for resource in record["properties"]["outputResources"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(id) = resource["id"].as_str() {
                add(id, None);
            }
        }
        if !owner.owns(kind, &record, &these) {
            tracing::warn!(
                "deployment {name} in resource group {group} is not cluster {}'s ({}): what it \
                 made is not destroyed",
                owner.cluster,
                match record["tags"][CLUSTER_TAG].as_str() {
                    Some(tag) => format!("its tag {CLUSTER_TAG} says {tag}"),
                    None => "untagged, and not shaped like one of cluster-deploy's".to_string(),
                }
            );
            continue;
        }
        for r in these {
            if !out.iter().any(|o| o.id.eq_ignore_ascii_case(&r.id)) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// Recorded resources of the group that today's template does not declare and that carry the
/// cluster's naming (`<cluster>-...`, the first name of the id): ours by the record.
pub(super) fn stale(
    records: &[Recorded],
    declared_ids: &[String],
    subscription: &str,
    group: &str,
    cluster: &str,
) -> Vec<Recorded> {
    let in_group = format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/")
        .to_ascii_lowercase();
    let prefix = format!("{cluster}-").to_ascii_lowercase();
    records
        .iter()
        .filter(|r| !r.kind.eq_ignore_ascii_case(ROLE_ASSIGNMENT))
        .filter(|r| {
            let id = r.id.to_ascii_lowercase();
            id.starts_with(&in_group)
                && id.matches("/providers/").count() == 1
                && !declared_ids.iter().any(|d| d.eq_ignore_ascii_case(&id))
                && name_of(&id).is_some_and(|n| n.starts_with(&prefix))
        })
        .cloned()
        .collect()
}

/// The top-level resource an id belongs to (itself, or the parent of a child such as a
/// subnet), with its type.
pub(super) fn top_level(id: &str) -> (String, String) {
    let Some((head, tail)) = id.rsplit_once("/providers/") else {
        return (id.to_string(), String::new());
    };
    let segments: Vec<&str> = tail.split('/').collect();
    if segments.len() < 3 {
        return (id.to_string(), String::new());
    }
    (
        format!(
            "{head}/providers/{}/{}/{}",
            segments[0], segments[1], segments[2]
        ),
        format!("{}/{}", segments[0], segments[1]),
    )
}

/// The api-version cluster-deploy uses for a type's namespace (the versions its templates use).
pub(super) fn api_version_of(kind: &str) -> Option<&'static str> {
    let namespace = kind.split('/').next().unwrap_or("");
    [
        ("Microsoft.Compute", COMPUTE_API),
        ("Microsoft.Network", NETWORK_API),
        ("Microsoft.KeyVault", KEY_VAULT_API),
        ("Microsoft.Authorization", AUTHORIZATION_API),
    ]
    .iter()
    .find(|(ns, _)| ns.eq_ignore_ascii_case(namespace))
    .map(|(_, v)| *v)
}

/// The role assignments cluster-deploy makes, found without a record: for the scale sets'
/// identities, Reader at exactly the group (cloud auto-join) and Key Vault Secrets User inside
/// the cluster's vault (each secret a role reads); for the operator (`operator`: the principal
/// apply names, `--operator-object-id` or its token's `oid`), Key Vault Secrets Officer at
/// exactly the vault. The identities are the scale sets' own (system-assigned), and the vault
/// is the cluster's, so these are ours; any other assignment of them (another role, another
/// scope, one above the group that the `principalId` filter also returns) is not, and none of
/// the operator's other assignments is.
pub(super) fn ours_by_identity(
    arm: &ArmClient,
    group: &str,
    identities: &[String],
    vault_id: Option<&str>,
    operator: Option<&str>,
) -> Result<Vec<String>> {
    let at_group = format!(
        "/subscriptions/{}/resourcegroups/{group}/providers/",
        arm.subscription
    )
    .to_ascii_lowercase();
    let in_vault = vault_id.map(|v| format!("{}/", v.to_ascii_lowercase()));
    let mut ids: Vec<String> = Vec::new();
    for principal in identities {
        let assignments = arm
            .role_assignments_of(group, principal)
            .with_context(|| format!("listing the role assignments of principal {principal}"))?;
        for a in assignments {
            let id = a["id"].as_str().unwrap_or("");
            let lower = id.to_ascii_lowercase();
            let role = a["properties"]["roleDefinitionId"]
                .as_str()
                .unwrap_or("")
                .to_ascii_lowercase();
            let reader_at_group = lower.starts_with(&at_group)
                && id.matches("/providers/").count() == 1
                && role.ends_with(READER_ROLE_ID);
            let user_in_vault = in_vault.as_deref().is_some_and(|v| lower.starts_with(v))
                && role.ends_with(SECRETS_USER_ROLE_ID);
            if (reader_at_group || user_in_vault) && !ids.iter().any(|i| i.eq_ignore_ascii_case(id))
            {
                ids.push(id.to_string());
            }
        }
    }
    if let (Some(principal), Some(vault)) = (operator, vault_id) {
        let at_vault = format!(
            "{}/providers/microsoft.authorization/roleassignments/",
            vault.to_ascii_lowercase()
        );
        let assignments = arm
            .role_assignments_of(group, principal)
            .with_context(|| format!("listing the role assignments of the operator {principal}"))?;
        for a in assignments {
            let id = a["id"].as_str().unwrap_or("");
            let lower = id.to_ascii_lowercase();
            let officer_at_vault = lower
                .strip_prefix(&at_vault)
                .is_some_and(|name| !name.contains('/'))
                && a["properties"]["roleDefinitionId"]
                    .as_str()
                    .unwrap_or("")
                    .to_ascii_lowercase()
                    .ends_with(SECRETS_OFFICER_ROLE_ID);
            if officer_at_vault && !ids.iter().any(|i| i.eq_ignore_ascii_case(id)) {
                ids.push(id.to_string());
            }
        }
    }
    Ok(ids)
}

/// The children a VNet or NSG holds (`properties.subnets`, `properties.securityRules`) by name.
pub(super) fn children_of(kind: &str, parent: &Value) -> Option<Vec<String>> {
    let collection = child_collection(kind)?;
    Some(
        parent["properties"][collection]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect(),
    )
}

/// The child collection of a parent type that takes its children with it when deleted.
pub(super) fn child_collection(kind: &str) -> Option<&'static str> {
    if kind.eq_ignore_ascii_case("Microsoft.Network/virtualNetworks") {
        Some("subnets")
    } else if kind.eq_ignore_ascii_case("Microsoft.Network/networkSecurityGroups") {
        Some("securityRules")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_is_ours_by_its_tag_or_for_an_untagged_one_by_its_shape() {
        let g = "/subscriptions/s/resourceGroups/g/providers";
        let servers = format!("{g}/Microsoft.Compute/virtualMachineScaleSets/c-servers");
        let vault = format!("{g}/Microsoft.KeyVault/vaults/c-kv-123456");
        let owner = Ownership {
            cluster: "c",
            server_scale_set: &servers,
            vault: Some(&vault),
        };
        let rec = |ids: &[&str]| -> Vec<Recorded> {
            ids.iter()
                .map(|id| Recorded {
                    id: id.to_string(),
                    kind: kind_of(id).unwrap(),
                })
                .collect()
        };
        let other_ip = format!("{g}/Microsoft.Network/publicIPAddresses/c-vault-lb-ip");
        let officer =
            format!("{vault}/providers/Microsoft.Authorization/roleAssignments/0000-officer");
        let tagged = |who: &str| json!({ "tags": { CLUSTER_TAG: who } });
        let untagged = json!({});
        // Tagged: the tag decides, whatever the record holds.
        assert!(owner.owns(RecordKind::Main, &tagged("c"), &rec(&[&other_ip])));
        assert!(!owner.owns(RecordKind::Main, &tagged("c-vault"), &rec(&[&servers])));
        assert!(!owner.owns(RecordKind::Vault, &tagged("c-vault"), &rec(&[&vault])));
        // Untagged main: it made our server scale set.
        assert!(owner.owns(RecordKind::Main, &untagged, &rec(&[&servers, &other_ip])));
        assert!(!owner.owns(RecordKind::Main, &untagged, &rec(&[&other_ip])));
        // Untagged vault deployment: only our vault and what is inside it.
        assert!(owner.owns(RecordKind::Vault, &untagged, &rec(&[&vault, &officer])));
        assert!(!owner.owns(RecordKind::Vault, &untagged, &rec(&[&vault, &other_ip])));
        assert!(!owner.owns(RecordKind::Vault, &untagged, &rec(&[])));
        let no_vault = Ownership {
            vault: None,
            ..owner
        };
        assert!(!no_vault.owns(RecordKind::Vault, &untagged, &rec(&[&vault])));
    }

    #[test]
    fn a_child_belongs_to_its_top_level_resource() {
        let subnet = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/c-vnet/subnets/c-subnet";
        assert_eq!(
            top_level(subnet),
            (
                "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/c-vnet".to_string(),
                "Microsoft.Network/virtualNetworks".to_string()
            )
        );
    }

    #[test]
    fn ids_give_their_type_and_name() {
        let secret = "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/kv/secrets/gossip/providers/Microsoft.Authorization/roleAssignments/abc";
        assert_eq!(kind_of(secret).unwrap(), ROLE_ASSIGNMENT);
        let subnet = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/c-vnet/subnets/c-subnet";
        assert_eq!(
            kind_of(subnet).unwrap(),
            "Microsoft.Network/virtualNetworks/subnets"
        );
        assert_eq!(name_of(subnet).unwrap(), "c-vnet/c-subnet");
        assert_eq!(kind_of("/subscriptions/s/resourceGroups/g"), None);
    }

    #[test]
    fn stale_resources_are_recorded_in_the_group_named_after_the_cluster_and_not_declared() {
        let id = |kind: &str, name: &str| {
            format!("/subscriptions/s/resourceGroups/g/providers/{kind}/{name}")
        };
        let vmss = "Microsoft.Compute/virtualMachineScaleSets";
        let records: Vec<Recorded> = [
            (id(vmss, "c-servers"), vmss),
            (id(vmss, "c-batch"), vmss),
            (id(vmss, "someone-else"), vmss),
            (
                "/subscriptions/s/resourceGroups/other/providers/Microsoft.Compute/virtualMachineScaleSets/c-x".to_string(),
                vmss,
            ),
            (
                format!(
                    "{}/providers/{ROLE_ASSIGNMENT}/guid",
                    "/subscriptions/s/resourceGroups/g"
                ),
                ROLE_ASSIGNMENT,
            ),
        ]
        .into_iter()
        .map(|(id, kind)| Recorded {
            id,
            kind: kind.to_string(),
        })
        .collect();
        let declared = vec![id(vmss, "C-SERVERS")];
        let found = stale(&records, &declared, "s", "g", "c");
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].id.ends_with("/c-batch"));
        assert_eq!(api_version_of(vmss), Some(COMPUTE_API));
        assert_eq!(api_version_of("Microsoft.Storage/storageAccounts"), None);
    }
}
