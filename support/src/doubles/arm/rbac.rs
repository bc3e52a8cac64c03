//! Role assignments and the caller's permissions (Authorization 2022-04-01:
//! `authorization-RoleAssignmentsCalls.json`, `authorization-RoleDefinitionsCalls.json`).
//!
//! - RoleAssignments_ListForScope: `$filter=atScope()` gives the assignments at or above the
//!   scope; `$filter=principalId eq '{id}'` "to return all role assignments at, above or below
//!   the scope for the specified principal" (the spec's parameter description); no filter gives
//!   all at, above and below.
//! - Permissions_ListForResourceGroup answers the caller's `Permission` objects (`actions`,
//!   `notActions`, `dataActions`, `notDataActions`); deployments check the same permissions, so a
//!   caller without `Microsoft.Authorization/roleAssignments/write` (Contributor) fails on the
//!   role assignment with `AuthorizationFailed`, after the resources before it were made.
//!   Built-in role contents: learn.microsoft.com, "Azure built-in roles".

use serde_json::{json, Value};

use super::super::server::Reply;
use super::resources::{group_missing, Stored};
use super::{arm_error, page, Call, State, SUBSCRIPTION};

/// Owner: every action.
pub fn owner() -> Vec<Value> {
    vec![json!({ "actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": [] })]
}

/// Contributor: every action but Microsoft.Authorization writes and deletes.
pub fn contributor() -> Vec<Value> {
    vec![json!({
        "actions": ["*"],
        "notActions": [
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
        ],
        "dataActions": [],
        "notDataActions": [],
    })]
}

/// Reader: reads only.
pub fn reader() -> Vec<Value> {
    vec![
        json!({ "actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": [] }),
    ]
}

/// Role Based Access Control Administrator (grants roles; no other writes).
pub fn role_based_access_control_administrator() -> Vec<Value> {
    vec![json!({
        "actions": [
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
            "Microsoft.Support/*",
        ],
        "notActions": [],
        "dataActions": [],
        "notDataActions": [],
    })]
}

/// Azure's action pattern match: case-insensitive, `*` for any run of characters.
pub(crate) fn pattern_matches(pattern: &str, action: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let a = action.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == a;
    }
    let mut rest = a.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Whether the permissions allow an action (any entry whose `actions` match and whose
/// `notActions` do not).
pub fn allows(permissions: &[Value], action: &str) -> bool {
    permissions.iter().any(|p| {
        let list = |k: &str| -> Vec<String> {
            p[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        };
        list("actions").iter().any(|a| pattern_matches(a, action))
            && !list("notActions")
                .iter()
                .any(|n| pattern_matches(n, action))
    })
}

fn role_definition_id(role: &str) -> String {
    format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{role}"
    )
}

/// Stores a role assignment at `scope`; returns its id.
pub(crate) fn add(
    state: &mut State,
    scope: &str,
    name: &str,
    principal_id: &str,
    role: &str,
) -> String {
    let scope = format!("/{}", scope.trim_matches('/'));
    let id = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}");
    let group = group_of_scope(&scope).unwrap_or_default();
    let value = json!({
        "id": id,
        "name": name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "scope": scope,
            "roleDefinitionId": role_definition_id(role),
            "principalId": principal_id,
            "principalType": "ServicePrincipal",
        },
    });
    state
        .resources
        .insert(id.to_ascii_lowercase(), Stored::plain(value, group));
    id
}

fn group_of_scope(scope: &str) -> Option<String> {
    let segments: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    segments
        .iter()
        .position(|s| s.eq_ignore_ascii_case("resourcegroups"))
        .and_then(|i| segments.get(i + 1))
        .map(|s| s.to_string())
}

/// The scope of a stored assignment, from its id.
fn scope_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .and_then(|id| id.split("/providers/Microsoft.Authorization/").next())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// RoleAssignments_ListForScope / _ListForResourceGroup.
pub(super) fn list(state: &mut State, call: &Call) -> Reply {
    let scope = if call.op().operation_id == "RoleAssignments_ListForResourceGroup" {
        format!(
            "subscriptions/{}/resourcegroups/{}",
            call.param("subscriptionId"),
            call.param("resourceGroupName")
        )
    } else if call.op().operation_id == "RoleAssignments_ListForResource" {
        // `/subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{parent}/{type}/{name}/providers/
        // Microsoft.Authorization/roleAssignments`: the resource is the scope (a vault's
        // assignments are listed this way, being the more specific operation).
        let path = call.request.path.trim_end_matches('/');
        path[..path.len() - "/providers/Microsoft.Authorization/roleAssignments".len()].to_string()
    } else {
        call.param("scope").to_string()
    };
    let scope = format!("/{}", scope.trim_matches('/').to_ascii_lowercase());
    if let Some(group) = group_of_scope(&scope) {
        if !state.groups.contains_key(&group.to_ascii_lowercase()) {
            return group_missing(&group);
        }
    }
    let filter = call
        .request
        .query_param("$filter")
        .map(str::trim)
        .map(str::to_string);
    let principal = filter.as_deref().and_then(|f| {
        Some(
            f.strip_prefix("principalId eq ")?
                .trim()
                .trim_matches('\'')
                .to_string(),
        )
    });
    let at_scope = filter.as_deref() == Some("atScope()");
    if filter.is_some() && principal.is_none() && !at_scope {
        return arm_error(
            400,
            "UnsupportedQuery",
            &format!(
                "The filter '{}' is not supported.",
                filter.unwrap_or_default()
            ),
        );
    }
    let items: Vec<Value> = state
        .resources
        .values()
        .filter(|s| s.value["type"] == "Microsoft.Authorization/roleAssignments")
        .filter(|s| {
            let at = scope_of(&s.value);
            let above_or_at = scope == at || scope.starts_with(&format!("{at}/"));
            let below = at.starts_with(&format!("{scope}/"));
            if at_scope {
                above_or_at
            } else {
                above_or_at || below
            }
        })
        .filter(|s| {
            principal
                .as_deref()
                .is_none_or(|p| s.value["properties"]["principalId"] == p)
        })
        .map(|s| s.value.clone())
        .collect();
    page(state, call, items)
}

/// Whether `principal` is an identity the directory knows: a managed identity of a resource,
/// or the caller itself.
pub(crate) fn principal_exists(state: &State, principal: &str) -> bool {
    principal.eq_ignore_ascii_case(super::CALLER_OBJECT_ID)
        || state
            .resources
            .values()
            .any(|s| s.value["identity"]["principalId"] == principal)
}

/// RoleAssignments_Create (PUT, 201): at any scope, a vault's or one of its secrets'
/// (`.../vaults/<v>/secrets/<s>`, the Key Vault RBAC guide's "Secret scope role assignment")
/// included. The caller needs `Microsoft.Authorization/roleAssignments/write`; the principal
/// must exist (`PrincipalNotFound`, the same answer deployments give); the scope's resource
/// group, and a vault named in the scope, must exist; the same principal, role and scope under
/// another name is 409 `RoleAssignmentExists` "The role assignment already exists.".
pub(super) fn create(state: &mut State, call: &Call) -> Reply {
    let body = match call.body() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let scope = format!("/{}", call.param("scope").trim_matches('/'));
    let name = call.param("roleAssignmentName").to_string();
    let properties = &body["properties"];
    let (Some(role), Some(principal)) = (
        properties["roleDefinitionId"].as_str(),
        properties["principalId"].as_str(),
    ) else {
        return arm_error(
            400,
            "InvalidRoleAssignmentRequest",
            "The role assignment request needs properties.roleDefinitionId and properties.principalId.",
        );
    };
    let action = "Microsoft.Authorization/roleAssignments/write";
    if !allows(&state.permissions, action) {
        return arm_error(
            403,
            "AuthorizationFailed",
            &format!("The client '{c}' with object id '{c}' does not have authorization to perform action '{action}' over scope '{scope}/providers/Microsoft.Authorization/roleAssignments/{name}' or the scope is invalid. If access was recently granted, please refresh your credentials.", c = super::CALLER_OBJECT_ID),
        );
    }
    if let Some(group) = group_of_scope(&scope) {
        if !state.groups.contains_key(&group.to_ascii_lowercase()) {
            return group_missing(&group);
        }
    }
    let lower = scope.to_ascii_lowercase();
    if let Some(at) = lower.find("/providers/microsoft.keyvault/vaults/") {
        let vault_end = lower[at + "/providers/microsoft.keyvault/vaults/".len()..]
            .find('/')
            .map_or(lower.len(), |i| {
                at + "/providers/microsoft.keyvault/vaults/".len() + i
            });
        if !state.resources.contains_key(&lower[..vault_end]) {
            return arm_error(
                404,
                "ResourceNotFound",
                &format!(
                    "The Resource '{}' was not found.",
                    &scope[at + "/providers/".len()..vault_end]
                ),
            );
        }
    }
    if !principal_exists(state, principal) {
        return arm_error(400, "PrincipalNotFound", &format!("Principal {principal} does not exist in the directory {}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype", super::TENANT));
    }
    let id = format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}");
    let duplicate = state.resources.values().any(|s| {
        s.value["type"] == "Microsoft.Authorization/roleAssignments"
            && !s.value["id"]
                .as_str()
                .is_some_and(|i| i.eq_ignore_ascii_case(&id))
            && scope_of(&s.value) == lower
            && s.value["properties"]["principalId"] == principal
            && s.value["properties"]["roleDefinitionId"]
                .as_str()
                .and_then(|r| r.rsplit('/').next())
                .is_some_and(|r| Some(r) == role.rsplit('/').next())
    });
    if duplicate {
        return arm_error(
            409,
            "RoleAssignmentExists",
            "The role assignment already exists.",
        );
    }
    let guid = role.rsplit('/').next().unwrap_or(role).to_string();
    add(state, &scope, &name, principal, &guid);
    let value = state.resources[&id.to_ascii_lowercase()].value.clone();
    Reply::json(201, &value)
}

/// Permissions_ListForResourceGroup: the caller's permissions.
pub(super) fn permissions(state: &mut State, call: &Call) -> Reply {
    let group = call.param("resourceGroupName");
    if !state.groups.contains_key(&group.to_ascii_lowercase()) {
        return group_missing(group);
    }
    let items = state.permissions.clone();
    page(state, call, items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contributor_cannot_write_role_assignments() {
        let action = "Microsoft.Authorization/roleAssignments/write";
        assert!(allows(&owner(), action));
        assert!(!allows(&contributor(), action));
        assert!(allows(
            &contributor(),
            "Microsoft.Compute/virtualMachineScaleSets/write"
        ));
        assert!(!allows(
            &reader(),
            "Microsoft.Compute/virtualMachineScaleSets/write"
        ));
        assert!(allows(
            &reader(),
            "Microsoft.Compute/virtualMachineScaleSets/read"
        ));
        assert!(allows(&role_based_access_control_administrator(), action));
    }
}
