//! How the ARM double treats Network's child collections and conditional resources, as Azure
//! documents them (pure functions over resource JSON; deploy, what-if and `materialize` call them):
//!
//! - A child resource (`Microsoft.Network/networkSecurityGroups/securityRules`,
//!   `Microsoft.Network/virtualNetworks/subnets`) is not a resource of its own in the group: its
//!   PUT adds or replaces that one entry in the parent's collection (`SecurityRules_CreateOrUpdate`,
//!   `Subnets_CreateOrUpdate`, Network 2025-07-01), and the parent must exist
//!   (`ParentResourceNotFound`).
//! - A parent PUT replaces the collection it carries: an NSG PUT without `securityRules`
//!   leaves it with none (REFERENCE.md, "A PUT replaces child collections"). A virtual network
//!   PUT without `subnets` keeps the subnets (Network 2023-09-01 and later, "Azure Virtual
//!   Network now supports updates without subnet property"); with `subnets`, even empty, it
//!   replaces them.
//! - A template resource whose `condition` is false is not deployed, and dependencies on it
//!   are dropped (ARM template reference, "Conditional deployment").
//! - A public IP with a DNS label gets `dnsSettings.fqdn`, the label and the region's zone
//!   (`PublicIPAddressDnsSettings.fqdn`: "the concatenation of the domainNameLabel and the
//!   regionalized DNS zone"; `cloudapp.azure.com` in the public cloud).

use serde_json::{json, Value};

/// Child types and the parent property that holds them.
const CHILD_COLLECTIONS: &[(&str, &str)] = &[
    (
        "microsoft.network/networksecuritygroups/securityrules",
        "securityRules",
    ),
    ("microsoft.network/virtualnetworks/subnets", "subnets"),
];

/// For a child resource: its parent's id, the parent's collection property and its own name.
pub(super) fn parent_of(kind: &str, id: &str) -> Option<(String, &'static str, String)> {
    let (_, collection) = CHILD_COLLECTIONS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(kind))?;
    let mut parts = id.rsplitn(3, '/');
    let name = parts.next()?.to_string();
    let _child_type = parts.next()?;
    let parent = parts.next()?.to_string();
    Some((parent, collection, name))
}

/// Adds or replaces a child in its parent's collection, as the provider returns it.
pub(super) fn upsert_child(
    parent: &mut Value,
    collection: &str,
    id: &str,
    name: &str,
    child: &Value,
) {
    let mut entry = json!({
        "id": id,
        "name": name,
        "type": child["type"],
        "properties": child["properties"].clone(),
    });
    if !entry["properties"].is_object() {
        entry["properties"] = json!({});
    }
    entry["properties"]["provisioningState"] = json!("Succeeded");
    if !parent["properties"][collection].is_array() {
        parent["properties"][collection] = json!([]);
    }
    let list = parent["properties"][collection]
        .as_array_mut()
        .expect("just made an array");
    match list.iter_mut().find(|c| {
        c["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    }) {
        Some(existing) => *existing = entry,
        None => list.push(entry),
    }
}

/// For the id of a child (`.../virtualNetworks/{v}/subnets/{s}`,
/// `.../networkSecurityGroups/{n}/securityRules/{r}`): its parent's id, the parent's collection
/// property and its own name. `None` for any other id.
pub(super) fn parent_of_id(id: &str) -> Option<(String, &'static str, String)> {
    let id = id.trim_end_matches('/');
    let (_, provider_path) = id.rsplit_once("/providers/")?;
    let segments: Vec<&str> = provider_path.split('/').collect();
    let [namespace, parent_type, _, child_type, _] = segments.as_slice() else {
        return None;
    };
    parent_of(&format!("{namespace}/{parent_type}/{child_type}"), id)
}

/// A child as it stands in its parent's collection (names compare as ARM compares them,
/// case-insensitively).
pub(super) fn find_child(parent: &Value, collection: &str, name: &str) -> Option<Value> {
    parent["properties"][collection]
        .as_array()?
        .iter()
        .find(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })
        .cloned()
}

/// Takes a child out of its parent's collection; whether it was there.
pub(super) fn remove_child(parent: &mut Value, collection: &str, name: &str) -> bool {
    let Some(list) = parent["properties"][collection].as_array_mut() else {
        return false;
    };
    let before = list.len();
    list.retain(|c| {
        !c["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    });
    list.len() != before
}

/// A parent PUT that leaves out a collection the provider keeps when omitted.
pub(super) fn keep_omitted_children(kind: &str, previous: Option<&Value>, value: &mut Value) {
    if kind.eq_ignore_ascii_case("Microsoft.Network/virtualNetworks")
        && value["properties"].get("subnets").is_none()
    {
        if let Some(subnets) = previous.and_then(|p| p["properties"].get("subnets")) {
            value["properties"]["subnets"] = subnets.clone();
        }
    }
}

/// Values the provider fills in on a PUT: each child of a collection given inline gets its id,
/// type and provisioning state, as a GET of the parent (and of the child) shows them (Network's
/// `SecurityRule`/`Subnet` models: `id`, `name`, `type`, `properties.provisioningState`).
pub(super) fn provider_defaults(kind: &str, value: &mut Value) {
    let parent_id = value["id"].as_str().unwrap_or_default().to_string();
    for (child_kind, collection) in CHILD_COLLECTIONS {
        let Some((parent_kind, _)) = child_kind.rsplit_once('/') else {
            continue;
        };
        if !parent_kind.eq_ignore_ascii_case(kind) || parent_id.is_empty() {
            continue;
        }
        let full_type = format!("{kind}/{collection}");
        for entry in value["properties"][*collection]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            let Some(name) = entry["name"].as_str().map(str::to_string) else {
                continue;
            };
            entry["id"] = json!(format!("{parent_id}/{collection}/{name}"));
            entry["type"] = json!(full_type);
            if !entry["properties"].is_object() {
                entry["properties"] = json!({});
            }
            entry["properties"]["provisioningState"] = json!("Succeeded");
        }
    }
    if kind.eq_ignore_ascii_case("Microsoft.Network/publicIPAddresses") {
        let label = value["properties"]["dnsSettings"]["domainNameLabel"]
            .as_str()
            .map(str::to_string);
        if let (Some(label), Some(location)) = (label, value["location"].as_str()) {
            value["properties"]["dnsSettings"]["fqdn"] =
                json!(format!("{label}.{location}.cloudapp.azure.com"));
        }
    }
}

/// Whether an evaluated `condition` lets the resource be deployed (absent: yes).
pub(super) fn deployed(condition: Option<&Value>) -> Result<bool, String> {
    match condition {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(format!(
            "The template resource condition '{other}' is not a boolean."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_find_their_parent_and_replace_only_themselves() {
        let id = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/networkSecurityGroups/nsg/securityRules/ssh";
        let (parent, collection, name) =
            parent_of("Microsoft.Network/networkSecurityGroups/securityRules", id).unwrap();
        assert!(parent.ends_with("/networkSecurityGroups/nsg"));
        assert_eq!((collection, name.as_str()), ("securityRules", "ssh"));
        assert!(parent_of("Microsoft.Network/networkSecurityGroups", id).is_none());
        let mut nsg = json!({ "properties": { "securityRules": [
            { "name": "theirs", "properties": { "priority": 300 } },
            { "name": "ssh", "properties": { "priority": 110, "access": "Allow" } },
        ] } });
        let child = json!({ "type": "Microsoft.Network/networkSecurityGroups/securityRules", "properties": { "priority": 110, "access": "Deny" } });
        upsert_child(&mut nsg, collection, id, &name, &child);
        let rules = nsg["properties"]["securityRules"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            find_child(&nsg, "securityRules", "theirs").unwrap()["properties"]["priority"],
            300
        );
        assert_eq!(
            find_child(&nsg, "securityRules", "ssh").unwrap()["properties"]["access"],
            "Deny"
        );
    }

    #[test]
    fn a_child_id_names_its_parent_and_leaves_only_itself() {
        let id = "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/vnet/subnets/Nodes";
        let (parent, collection, name) = parent_of_id(id).unwrap();
        assert!(parent.ends_with("/virtualNetworks/vnet"));
        assert_eq!((collection, name.as_str()), ("subnets", "Nodes"));
        assert!(parent_of_id(&parent).is_none());
        assert!(parent_of_id("/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/loadBalancers/lb/inboundNatRules/x").is_none());
        let mut vnet =
            json!({ "properties": { "subnets": [{ "name": "nodes" }, { "name": "bastion" }] } });
        assert!(find_child(&vnet, collection, &name).is_some());
        assert!(remove_child(&mut vnet, collection, &name));
        assert!(!remove_child(&mut vnet, collection, &name));
        assert_eq!(
            vnet["properties"]["subnets"],
            json!([{ "name": "bastion" }])
        );
    }

    #[test]
    fn a_vnet_put_without_subnets_keeps_them() {
        let previous = json!({ "properties": { "subnets": [{ "name": "a" }] } });
        let mut without = json!({ "properties": { "addressSpace": {} } });
        keep_omitted_children(
            "Microsoft.Network/virtualNetworks",
            Some(&previous),
            &mut without,
        );
        assert_eq!(without["properties"]["subnets"][0]["name"], "a");
        let mut empty = json!({ "properties": { "subnets": [] } });
        keep_omitted_children(
            "Microsoft.Network/virtualNetworks",
            Some(&previous),
            &mut empty,
        );
        assert_eq!(empty["properties"]["subnets"], json!([]));
        let mut nsg = json!({ "properties": {} });
        keep_omitted_children(
            "Microsoft.Network/networkSecurityGroups",
            Some(&json!({ "properties": { "securityRules": [{ "name": "x" }] } })),
            &mut nsg,
        );
        assert!(nsg["properties"].get("securityRules").is_none());
    }

    #[test]
    fn conditions_and_dns_names() {
        assert!(deployed(None).unwrap());
        assert!(!deployed(Some(&json!(false))).unwrap());
        assert!(deployed(Some(&json!(3))).is_err());
        let mut ip = json!({ "location": "westeurope", "properties": { "dnsSettings": { "domainNameLabel": "api" } } });
        provider_defaults("Microsoft.Network/publicIPAddresses", &mut ip);
        assert_eq!(
            ip["properties"]["dnsSettings"]["fqdn"],
            "api.westeurope.cloudapp.azure.com"
        );
    }
}
