//! Resource groups and resources by id: what Microsoft.Resources (resources.json 2025-04-01)
//! and each provider's GET/DELETE answer.
//!
//! - Groups answer as the spec's `examples/CreateResourceGroup.json` (id, name, location,
//!   `properties.provisioningState`), plus `type` and `tags`; PUT is 201 new / 200 existing.
//! - Resources_ListByResourceGroup: `GenericResourceExpanded` items (id, name, type, location,
//!   tags); with `$filter=tagName eq 'k' and tagValue eq 'v'` the matching items come *without*
//!   `tags`: "When you filter by a tag name and value, the tags for each resource are not
//!   returned in the results." (INDEX.md fact 1). Role assignments are extension resources and
//!   never listed.
//! - DELETE of a resource another resource references fails with 400
//!   `InUseResourceCannotBeDeleted`; DELETE of one that is gone is 204 (Network's DELETEs
//!   declare 200/202/204).
//! - Network's child resources live in their parent's collection ([`children`]) and are read
//!   and deleted by their own id: `Subnets_Get` (virtualNetwork.json 2025-07-01, example
//!   `SubnetGet.json`) and `SecurityRules_Get` (networkSecurityGroup.json, example
//!   `NetworkSecurityGroupRuleGet.json`) answer 200 with the entry as the parent holds it:
//!   `id`, `name` and `properties` with `provisioningState` "Succeeded", as both examples show
//!   it (read in azure-rest-api-specs' 2024-05-01 copies; the 2025-07-01 ones are not stored
//!   under ../shared), plus the models' `type`; `Subnets_Delete` and
//!   `SecurityRules_Delete` (200/202/204, `final-state-via: location`; examples
//!   `SubnetDelete.json`, `NetworkSecurityGroupRuleDelete.json`) answer 202 + `Location`, and
//!   the entry leaves the collection when the operation ends. A child another resource still
//!   names (a subnet in a scale set's NIC configuration) is in use, as above.

use serde_json::{json, Value};

use super::super::server::Reply;
use super::children;
use super::lro::Pending;
use super::{arm_error, compute, page, Call, State, SUBSCRIPTION, TENANT};

#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// The resource as GET returns it (customData removed).
    pub(crate) value: Value,
    /// Empty for role assignments above the group.
    pub(crate) group: String,
    pub(crate) custom_data: Option<String>,
    /// Scale sets only.
    pub(crate) scale_set: Option<compute::ScaleSetState>,
}

impl Stored {
    /// A resource with no custom data and no instances (a role assignment, an image).
    pub(crate) fn plain(value: Value, group: String) -> Self {
        Self {
            value,
            group,
            custom_data: None,
            scale_set: None,
        }
    }
}

pub(crate) fn group_value(name: &str, location: &str, tags: &Value) -> Value {
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}"),
        "name": name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": location,
        "tags": if tags.is_object() { tags.clone() } else { json!({}) },
        "properties": { "provisioningState": "Succeeded" },
    })
}

pub(crate) fn group_missing(name: &str) -> Reply {
    arm_error(
        404,
        "ResourceGroupNotFound",
        &format!("Resource group '{name}' could not be found."),
    )
}

/// ResourceGroups_Get / _CheckExistence / _CreateOrUpdate / _Delete.
pub(super) fn group(state: &mut State, call: &Call) -> Reply {
    let name = call.param("resourceGroupName").to_string();
    let key = name.to_ascii_lowercase();
    match call.op().operation_id.as_str() {
        "ResourceGroups_Get" => match state.groups.get(&key) {
            Some(g) => Reply::json(200, g),
            None => group_missing(&name),
        },
        "ResourceGroups_CheckExistence" => {
            if state.groups.contains_key(&key) {
                Reply::new(204)
            } else {
                Reply::new(404)
            }
        }
        "ResourceGroups_CreateOrUpdate" => {
            let body = match call.body() {
                Ok(b) => b,
                Err(reply) => return reply,
            };
            let Some(location) = body["location"].as_str() else {
                return arm_error(
                    400,
                    "LocationRequired",
                    "The location property is required for this definition.",
                );
            };
            let existed = state.groups.get(&key).cloned();
            if let Some(g) = &existed {
                let had = g["location"].as_str().unwrap_or("");
                if !had.eq_ignore_ascii_case(location) {
                    return arm_error(
                        409,
                        "InvalidResourceGroupLocation",
                        &format!("Invalid resource group location '{location}'. The Resource group already exists in location '{had}'."),
                    );
                }
            }
            let value = group_value(&name, location, &body["tags"]);
            state.groups.insert(key, value.clone());
            Reply::json(if existed.is_some() { 200 } else { 201 }, &value)
        }
        _ => {
            if !state.groups.contains_key(&key) {
                return group_missing(&name);
            }
            call.long_running(
                state,
                202,
                &Value::Null,
                Pending::DeleteGroup { group: name },
            )
        }
    }
}

/// Deployments_Delete (resources.json 2025-04-01: "an asynchronous operation that returns a
/// status of 202 until the template deployment is successfully deleted. The Location response
/// header contains the URI that is used to obtain the status of the process. ... When the
/// process finishes, the URI in the Location header returns a status of 204 on success", INDEX.md
/// fact 3): 202 + `Location`, then the record (and its operations) is gone; the resources it
/// made stay. One that does not exist: 204 (the operation's other documented status).
pub(super) fn delete_deployment(state: &mut State, call: &Call) -> Reply {
    let group = call.param("resourceGroupName").to_string();
    let name = call.param("deploymentName").to_string();
    if !state.groups.contains_key(&group.to_ascii_lowercase()) {
        return group_missing(&group);
    }
    let exists = state
        .deployments
        .iter()
        .any(|d| d.group.eq_ignore_ascii_case(&group) && d.name == name);
    if !exists {
        return Reply::new(204);
    }
    call.long_running(
        state,
        202,
        &Value::Null,
        Pending::DeleteDeployment { group, name },
    )
}

/// `tagName eq 'k' and tagValue eq 'v'` (the documented tag filter), or `tagName eq 'k'`.
fn tag_filter(filter: &str) -> Option<(String, Option<String>)> {
    let quoted = |s: &str| -> Option<String> {
        let s = s.trim();
        let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
        Some(inner.replace("''", "'"))
    };
    let (name_part, value_part) = match filter.split_once(" and ") {
        Some((a, b)) => (a, Some(b)),
        None => (filter, None),
    };
    let name = quoted(name_part.trim().strip_prefix("tagName eq ")?)?;
    let value = match value_part {
        Some(v) => Some(quoted(v.trim().strip_prefix("tagValue eq ")?)?),
        None => None,
    };
    Some((name, value))
}

/// Resources_ListByResourceGroup.
pub(super) fn list(state: &mut State, call: &Call) -> Reply {
    let group = call.param("resourceGroupName");
    if !state.groups.contains_key(&group.to_ascii_lowercase()) {
        return group_missing(group);
    }
    let filter = match call.request.query_param("$filter") {
        None => None,
        Some(f) => match tag_filter(f) {
            Some(parsed) => Some(parsed),
            None => {
                return arm_error(
                    400,
                    "InvalidFilterInQueryString",
                    &format!("Invalid $filter '{f}' specified in the query string."),
                )
            }
        },
    };
    let items: Vec<Value> = state
        .resources
        .values()
        .filter(|s| s.group.eq_ignore_ascii_case(group))
        .filter(|s| s.value["type"] != "Microsoft.Authorization/roleAssignments")
        .filter(|s| match &filter {
            None => true,
            Some((name, value)) => match s.value["tags"][name.as_str()].as_str() {
                None => false,
                Some(v) => value.as_deref().is_none_or(|want| want == v),
            },
        })
        .map(|s| {
            let mut item = json!({
                "id": s.value["id"], "name": s.value["name"], "type": s.value["type"],
                "location": s.value["location"],
            });
            if filter.is_none() {
                item["tags"] = s.value["tags"].clone();
            }
            item
        })
        .collect();
    page(state, call, items)
}

fn not_found(path: &str, group: &str) -> Reply {
    let short = path.split_once("/providers/").map_or(path, |(_, r)| r);
    arm_error(
        404,
        "ResourceNotFound",
        &format!("The Resource '{short}' under resource group '{group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
    )
}

/// A child (subnet, security rule) as its parent's collection holds it.
fn child(state: &State, path: &str) -> Option<Value> {
    let (parent, collection, name) = children::parent_of_id(path)?;
    let stored = state.resources.get(&parent.to_ascii_lowercase())?;
    children::find_child(&stored.value, collection, &name)
}

/// Any provider's GET (and HEAD) of a resource by its path.
pub(super) fn get(state: &mut State, call: &Call) -> Reply {
    let key = call.request.path.trim_end_matches('/').to_ascii_lowercase();
    let group = call.param("resourceGroupName").to_string();
    let found = state
        .resources
        .get(&key)
        .map(|s| s.value.clone())
        .or_else(|| child(state, &call.request.path));
    match found {
        Some(_) if call.request.method == "HEAD" => Reply::new(204),
        Some(value) => Reply::json(200, &value),
        None if !group.is_empty() && !state.groups.contains_key(&group.to_ascii_lowercase()) => {
            group_missing(&group)
        }
        None if call.op().operation_id.starts_with("RoleAssignments_") => arm_error(
            404,
            "RoleAssignmentNotFound",
            "The role assignment '' is not found.",
        ),
        None => not_found(&call.request.path, &group),
    }
}

/// Any provider's DELETE of a resource by its path.
pub(super) fn delete(state: &mut State, call: &Call) -> Reply {
    let key = call.request.path.trim_end_matches('/').to_ascii_lowercase();
    let (id, parent) = match (state.resources.get(&key), child(state, &call.request.path)) {
        (Some(stored), _) => (
            stored.value["id"].as_str().unwrap_or_default().to_string(),
            None,
        ),
        (None, Some(entry)) => (
            entry["id"]
                .as_str()
                .map_or_else(|| call.request.path.to_string(), str::to_string),
            children::parent_of_id(&call.request.path).map(|(p, _, _)| p),
        ),
        (None, None) => return Reply::new(204),
    };
    if let Some(user) = user_of(state, &id, parent.as_deref()) {
        return arm_error(
            400,
            "InUseResourceCannotBeDeleted",
            &format!("Resource {id} is in use by {user} and cannot be deleted."),
        );
    }
    if !call.op().long_running {
        // Role assignments (RoleAssignments_Delete: 200 with the deleted assignment, or 204).
        let value = state.resources[&key].value.clone();
        remove(state, &key);
        return Reply::json(200, &value);
    }
    call.long_running(state, 202, &Value::Null, Pending::Delete { id })
}

/// Another resource whose JSON names `id` (a NIC configuration naming an NSG...); a child's
/// own parent, which holds it, is no user of it.
fn user_of(state: &State, id: &str, parent: Option<&str>) -> Option<String> {
    let needle = format!("\"{}", id.to_ascii_lowercase());
    state
        .resources
        .values()
        .filter(|s| {
            s.value["id"].as_str().is_some_and(|other| {
                !other.eq_ignore_ascii_case(id)
                    && !parent.is_some_and(|p| other.eq_ignore_ascii_case(p))
            })
        })
        .find(|s| {
            let mut v = s.value.clone();
            v["id"] = Value::Null;
            let text = v.to_string().to_ascii_lowercase();
            // The id itself or a child of it (a subnet of the VNet, a pool of the LB).
            text.contains(&format!("{needle}\"")) || text.contains(&format!("{needle}/"))
        })
        .and_then(|s| s.value["id"].as_str().map(str::to_string))
}

/// Removes a resource (a scale set takes its instances with it), or a child from its parent's
/// collection.
pub(crate) fn remove(state: &mut State, key: &str) {
    if let Some(stored) = state.resources.remove(&key.to_ascii_lowercase()) {
        compute::removed(state, &stored);
        // A deleted vault is soft-deleted, never gone at once.
        super::keyvault::removed(state, &stored);
    } else if let Some((parent, collection, name)) = children::parent_of_id(key) {
        if let Some(stored) = state.resources.get_mut(&parent.to_ascii_lowercase()) {
            children::remove_child(&mut stored.value, collection, &name);
        }
    }
}

/// Creates or replaces a resource as ARM would store it.
pub(crate) fn materialize(state: &mut State, group: &str, id: &str, resource: Value) {
    let kind = resource["type"].as_str().unwrap_or_default().to_string();
    // A child resource (subnet, security rule) is an entry in its parent's collection.
    if let Some((parent, collection, name)) = children::parent_of(&kind, id) {
        if let Some(stored) = state.resources.get_mut(&parent.to_ascii_lowercase()) {
            children::upsert_child(&mut stored.value, collection, id, &name, &resource);
        }
        return;
    }
    let mut value = resource;
    let object = value.as_object_mut().expect("a resource is an object");
    for key in ["dependsOn", "apiVersion", "condition", "comments"] {
        object.remove(key);
    }
    object.insert("id".into(), json!(id));
    let key = id.to_ascii_lowercase();
    let previous = state.resources.get(&key).cloned();
    if value["identity"]["type"]
        .as_str()
        .is_some_and(|t| t.contains("SystemAssigned"))
    {
        let principal = previous
            .as_ref()
            .and_then(|p| {
                p.value["identity"]["principalId"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                state.counter += 1;
                format!("11111111-2222-3333-4444-{:012x}", state.counter)
            });
        value["identity"]["principalId"] = json!(principal);
        value["identity"]["tenantId"] = json!(TENANT);
    }
    if !value["properties"].is_object() {
        value["properties"] = json!({});
    }
    value["properties"]["provisioningState"] = json!("Succeeded");
    if state.inherited_tags && previous.is_none() {
        if let Some(group_tags) = state
            .groups
            .get(&group.to_ascii_lowercase())
            .map(|g| g["tags"].clone())
        {
            if !value["tags"].is_object() {
                value["tags"] = json!({});
            }
            for (k, v) in group_tags.as_object().into_iter().flatten() {
                if value["tags"].get(k).is_none() {
                    value["tags"][k] = v.clone();
                }
            }
        }
    }
    children::keep_omitted_children(&kind, previous.as_ref().map(|p| &p.value), &mut value);
    children::provider_defaults(&kind, &mut value);
    if kind == "Microsoft.Network/publicIPAddresses" {
        let address = previous
            .as_ref()
            .and_then(|p| {
                p.value["properties"]["ipAddress"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                state.counter += 1;
                format!(
                    "20.0.{}.{}",
                    (state.counter / 250) % 250,
                    state.counter % 250 + 1
                )
            });
        value["properties"]["ipAddress"] = json!(address);
    }
    let mut stored = Stored {
        value,
        group: group.to_string(),
        custom_data: previous.as_ref().and_then(|p| p.custom_data.clone()),
        scale_set: previous.as_ref().and_then(|p| p.scale_set.clone()),
    };
    if kind.eq_ignore_ascii_case("Microsoft.Compute/virtualMachineScaleSets") {
        compute::apply_model(state, &mut stored, previous.as_ref());
    }
    state.resources.insert(key, stored);
}
