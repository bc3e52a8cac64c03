//! Checks before any write, so a deployment does not fail half-way: the caller's permissions on
//! the resource group cover every resource type of the template (role assignments included:
//! Contributor lacks `Microsoft.Authorization/roleAssignments/write`), and the Compute quota of
//! the location covers the scale sets' vCPUs. Also what-if's removals: a PUT replaces child
//! collections, so subnets or NSG rules added out of band would be deleted.
//!
//! Sources: Permissions_ListForResourceGroup (Authorization 2022-04-01), Usage_List (Compute
//! 2024-11-01), ResourceSkus_List (Compute Skus 2021-07-01: `family`, capability `vCPUs`,
//! `restrictions`), "Azure built-in roles" (which roles hold which actions), what-if's
//! `WhatIfPropertyChange` (resources.json).

use anyhow::Result;
use serde_json::Value;

use crate::arm::ArmClient;

const VMSS: &str = "Microsoft.Compute/virtualMachineScaleSets";
const ROLE_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";

/// The actions a deployment of `template` needs: `deployments/write` and `<type>/write` for each
/// resource type.
pub(super) fn required_actions(template: &Value) -> Vec<String> {
    let mut actions = vec!["Microsoft.Resources/deployments/write".to_string()];
    for r in template["resources"].as_array().into_iter().flatten() {
        if let Some(kind) = r["type"].as_str() {
            let action = format!("{kind}/write");
            if !actions.iter().any(|a| a.eq_ignore_ascii_case(&action)) {
                actions.push(action);
            }
        }
    }
    actions
}

/// Azure's action pattern match: case-insensitive, `*` for any run of characters.
fn pattern_matches(pattern: &str, action: &str) -> bool {
    let (p, a) = (pattern.to_ascii_lowercase(), action.to_ascii_lowercase());
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == a;
    }
    let Some(mut rest) = a.strip_prefix(parts[0]) else {
        return false;
    };
    for (i, part) in parts.iter().enumerate().skip(1) {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// The actions of `required` that no `Permission` entry grants (an entry grants an action its
/// `actions` match and its `notActions` do not).
pub(super) fn missing_actions(permissions: &[Value], required: &[String]) -> Vec<String> {
    required
        .iter()
        .filter(|action| {
            !permissions.iter().any(|p| {
                strings(&p["actions"])
                    .iter()
                    .any(|a| pattern_matches(a, action))
                    && !strings(&p["notActions"])
                        .iter()
                        .any(|n| pattern_matches(n, action))
            })
        })
        .cloned()
        .collect()
}

/// What to tell the operator about missing actions.
pub(super) fn permission_problems(group: &str, missing: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if missing.iter().any(|m| m.eq_ignore_ascii_case(ROLE_WRITE)) {
        out.push(format!(
            "the caller may not perform {ROLE_WRITE} on resource group {group}: the scale sets' \
             Reader assignments (Nomad cloud auto-join) need it, and Contributor does not include \
             it. Grant the caller 'Role Based Access Control Administrator' (or 'User Access \
             Administrator', or 'Owner') on the group, or have someone who holds it run apply once"
        ));
    }
    let others: Vec<&String> = missing
        .iter()
        .filter(|m| !m.eq_ignore_ascii_case(ROLE_WRITE))
        .collect();
    if !others.is_empty() {
        out.push(format!(
            "the caller may not perform {} on resource group {group}: grant it 'Contributor' on the group",
            others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

/// One scale set of the template, as quota sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ScaleSetNeed {
    pub(super) name: String,
    pub(super) size: String,
    pub(super) capacity: u64,
    pub(super) spot: bool,
}

pub(super) fn scale_sets(template: &Value) -> Vec<ScaleSetNeed> {
    template["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case(VMSS))
        })
        .map(|r| ScaleSetNeed {
            name: r["name"].as_str().unwrap_or("").to_string(),
            size: r["sku"]["name"].as_str().unwrap_or("").to_string(),
            capacity: r["sku"]["capacity"].as_u64().unwrap_or(0),
            spot: r["properties"]["virtualMachineProfile"]["priority"]
                .as_str()
                .is_some_and(|p| p.eq_ignore_ascii_case("Spot")),
        })
        .collect()
}

fn capability(sku: &Value, name: &str) -> Option<u64> {
    sku["capabilities"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)?["value"]
        .as_str()?
        .parse()
        .ok()
}

/// Quota and size problems: `existing` gives the instances a scale set already has (same
/// size), which the usage already counts.
pub(super) fn quota_problems(
    location: &str,
    sets: &[ScaleSetNeed],
    skus: &[Value],
    usages: &[Value],
    existing: &dyn Fn(&ScaleSetNeed) -> u64,
) -> Vec<String> {
    let mut problems = Vec::new();
    // quota name -> (vCPUs needed, what needs them)
    let mut needs: Vec<(String, u64, Vec<String>)> = Vec::new();
    for set in sets {
        let sku = skus.iter().find(|s| {
            s["resourceType"] == "virtualMachines"
                && s["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&set.size))
        });
        let Some(sku) = sku else {
            problems.push(format!(
                "VM size {} (scale set {}) is not offered in {location} to this subscription (Resource SKUs)",
                set.size, set.name
            ));
            continue;
        };
        let restricted: Vec<String> = sku["restrictions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["type"] == "Location")
            .map(|r| r["reasonCode"].as_str().unwrap_or("restricted").to_string())
            .collect();
        if !restricted.is_empty() {
            problems.push(format!(
                "VM size {} (scale set {}) is restricted in {location}: {}",
                set.size,
                set.name,
                restricted.join(", ")
            ));
            continue;
        }
        let (Some(family), Some(vcpus)) = (sku["family"].as_str(), capability(sku, "vCPUs")) else {
            continue;
        };
        let more = set.capacity.saturating_sub(existing(set)) * vcpus;
        let what = format!("{} {} x {}", set.name, set.capacity, set.size);
        let quotas: Vec<String> = if set.spot {
            vec!["lowPriorityCores".into()]
        } else {
            vec![family.to_string(), "cores".into()]
        };
        for q in quotas {
            match needs.iter_mut().find(|(n, _, _)| *n == q) {
                Some(n) => {
                    n.1 += more;
                    n.2.push(what.clone());
                }
                None => needs.push((q, more, vec![what.clone()])),
            }
        }
    }
    for (quota, need, what) in needs {
        let Some(usage) = usages.iter().find(|u| u["name"]["value"] == quota.as_str()) else {
            continue;
        };
        let current = usage["currentValue"].as_u64().unwrap_or(0);
        let limit = usage["limit"].as_u64().unwrap_or(u64::MAX);
        let free = limit.saturating_sub(current);
        if need > free {
            problems.push(format!(
                "quota {quota} in {location}: the plan needs {need} more vCPUs ({}), the limit is {limit} and {current} are used: short by {}; request a quota increase or choose other sizes",
                what.join(", "),
                need - free
            ));
        }
    }
    problems
}

/// The permission check alone: what the caller may do on `group` (which must exist) against
/// what the template needs.
pub(super) fn permissions(arm: &ArmClient, group: &str, template: &Value) -> Result<Vec<String>> {
    let permissions = arm.permissions(group)?;
    let missing = missing_actions(&permissions, &required_actions(template));
    Ok(permission_problems(group, &missing))
}

/// Runs both checks against ARM; returns every problem found. `group_exists`: the permission
/// check needs the group.
pub(super) fn check(
    arm: &ArmClient,
    group: &str,
    location: &str,
    template: &Value,
    group_exists: bool,
) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    if group_exists {
        problems.extend(permissions(arm, group, template)?);
    }
    let sets = scale_sets(template);
    if !sets.is_empty() {
        let skus = arm.skus(location)?;
        let usages = arm.usages(location)?;
        let mut existing = Vec::new();
        for set in &sets {
            let id = format!(
                "/subscriptions/{}/resourceGroups/{group}/providers/{VMSS}/{}",
                arm.subscription, set.name
            );
            let have = if group_exists {
                arm.get_resource(&id, crate::template::COMPUTE_API)?
                    .filter(|v| {
                        v["sku"]["name"]
                            .as_str()
                            .is_some_and(|s| s.eq_ignore_ascii_case(&set.size))
                    })
                    .and_then(|v| v["sku"]["capacity"].as_u64())
                    .unwrap_or(0)
            } else {
                0
            };
            existing.push((set.name.clone(), have));
        }
        let lookup = |s: &ScaleSetNeed| {
            existing
                .iter()
                .find(|(n, _)| *n == s.name)
                .map_or(0, |(_, c)| *c)
        };
        problems.extend(quota_problems(location, &sets, &skus, &usages, &lookup));
    }
    Ok(problems)
}

/// What a what-if result would remove: deleted resources, and items deleted from a resource's
/// properties (child collections a PUT replaces), each as `resource: what`.
pub(super) fn removals(what_if: &Value) -> Vec<String> {
    fn walk(change: &Value, resource: &str, out: &mut Vec<String>) {
        match change["propertyChangeType"].as_str() {
            Some("Delete") => {
                let before = &change["before"];
                let name = before["name"]
                    .as_str()
                    .map(|n| format!("{n} "))
                    .unwrap_or_default();
                out.push(format!(
                    "{resource}: {name}({})",
                    change["path"].as_str().unwrap_or("")
                ));
            }
            _ => {
                for child in change["children"].as_array().into_iter().flatten() {
                    let mut child = child.clone();
                    let path = format!(
                        "{}[{}]",
                        change["path"].as_str().unwrap_or(""),
                        child["path"].as_str().unwrap_or("")
                    );
                    child["path"] = Value::String(path);
                    walk(&child, resource, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for change in what_if["properties"]["changes"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let id = change["resourceId"].as_str().unwrap_or("");
        let resource = id.split_once("/providers/").map_or(id, |(_, r)| r);
        if change["changeType"] == "Delete" {
            out.push(format!("{resource}: the whole resource"));
        }
        for delta in change["delta"].as_array().into_iter().flatten() {
            walk(delta, resource, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contributor_lacks_role_assignment_writes() {
        let contributor = vec![
            json!({ "actions": ["*"], "notActions": ["Microsoft.Authorization/*/Write", "Microsoft.Authorization/*/Delete"] }),
        ];
        let template = json!({ "resources": [
            { "type": "Microsoft.Compute/virtualMachineScaleSets" },
            { "type": "Microsoft.Authorization/roleAssignments" },
        ]});
        let missing = missing_actions(&contributor, &required_actions(&template));
        assert_eq!(missing, [ROLE_WRITE]);
        assert!(permission_problems("rg", &missing)[0]
            .contains("Role Based Access Control Administrator"));
        let owner = vec![json!({ "actions": ["*"], "notActions": [] })];
        assert!(missing_actions(&owner, &required_actions(&template)).is_empty());
    }

    #[test]
    fn quota_counts_what_exists_and_names_the_shortfall() {
        let skus = vec![
            json!({ "resourceType": "virtualMachines", "name": "Standard_D4s_v5", "family": "standardDSv5Family", "capabilities": [{ "name": "vCPUs", "value": "4" }], "restrictions": [] }),
        ];
        let usages = vec![
            json!({ "name": { "value": "standardDSv5Family" }, "currentValue": 8, "limit": 20 }),
            json!({ "name": { "value": "cores" }, "currentValue": 8, "limit": 100 }),
        ];
        let sets = vec![ScaleSetNeed {
            name: "c".into(),
            size: "Standard_D4s_v5".into(),
            capacity: 6,
            spot: false,
        }];
        let p = quota_problems("westeurope", &sets, &skus, &usages, &|_| 0);
        assert_eq!(p.len(), 1);
        assert!(
            p[0].contains("needs 24 more") && p[0].contains("short by 12"),
            "{p:?}"
        );
        // Two instances already exist (and are in the usage): 16 more fit in 12 free? No: short by 4.
        let p = quota_problems("westeurope", &sets, &skus, &usages, &|_| 2);
        assert!(p[0].contains("short by 4"), "{p:?}");
        assert!(quota_problems("westeurope", &sets, &skus, &usages, &|_| 3).is_empty());
    }

    #[test]
    fn removals_name_deleted_children() {
        let what_if = json!({ "properties": { "changes": [{
            "resourceId": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v",
            "changeType": "Modify",
            "delta": [{ "path": "properties.subnets", "propertyChangeType": "Array", "children": [
                { "path": "1", "propertyChangeType": "Delete", "before": { "name": "bastion" } }
            ]}]
        }]}});
        assert_eq!(
            removals(&what_if),
            ["Microsoft.Network/virtualNetworks/v: bastion (properties.subnets[1])"]
        );
    }
}
