//! Running an accepted deployment, and DeploymentOperations_List.
//!
//! When an accepted deployment's polls end, each resource is created in template order: a
//! resource whose dependency failed is not started; a resource type the caller may not write
//! (Permissions, [`crate::doubles::arm::rbac`]) fails with `AuthorizationFailed`; a role
//! assignment for a principal that does not exist fails with `PrincipalNotFound`; failures
//! queued by [`crate::doubles::arm::ArmDouble::fail_next_deployment`] fail their resources. The
//! deployment then ends `Failed` with `DeploymentFailed` and the resources' errors as `details`.
//! Each resource's outcome is one deployment operation, which DeploymentOperations_List pages.

use serde_json::{json, Map, Value};

use super::{deployment_id, find, invalid_template, not_found, plan};
use crate::doubles::arm::expr::Context;
use crate::doubles::arm::resources::materialize;
use crate::doubles::arm::{children, keyvault, page, rbac, Call, State, CALLER_OBJECT_ID, TENANT};
use crate::doubles::server::Reply;

/// DeploymentOperations_List.
pub(crate) fn operations(state: &mut State, call: &Call) -> Reply {
    let name = call.param("deploymentName");
    match find(state, call.param("resourceGroupName"), name) {
        Some(d) => {
            let ops = d.operations.clone();
            page(state, call, ops)
        }
        None => not_found(name),
    }
}

fn operation_value(
    group: &str,
    name: &str,
    position: usize,
    target: &Value,
    failure: Option<(&str, &str)>,
) -> Value {
    let op_id = format!("{:016X}", 0x3A00_0000_0000_0000u64 + position as u64);
    let mut properties = json!({
        "provisioningOperation": "Create",
        "provisioningState": if failure.is_some() { "Failed" } else { "Succeeded" },
        "timestamp": "2026-01-01T00:00:00Z",
        "duration": "PT1S",
        "statusCode": if failure.is_some() { "BadRequest" } else { "OK" },
        "targetResource": target,
    });
    if let Some((code, message)) = failure {
        properties["statusMessage"] =
            json!({ "status": "Failed", "error": { "code": code, "message": message } });
    }
    json!({
        "id": format!("{}/operations/{op_id}", deployment_id(group, name)),
        "operationId": op_id,
        "properties": properties,
    })
}

/// Evaluates and creates the template's resources; records one operation per resource.
pub(crate) fn run(state: &mut State, group: &str, name: &str) {
    let index = state
        .deployments
        .iter()
        .rposition(|d| d.group.eq_ignore_ascii_case(group) && d.name == name)
        .expect("the deployment exists");
    let request = state.deployments[index].request.clone();
    let failures = state.failures.pop_front().unwrap_or_default();
    let template = &request["properties"]["template"];
    let parameters = &request["properties"]["parameters"];
    let group_location = state.groups[&group.to_ascii_lowercase()]["location"].clone();
    let mut operations = Vec::new();
    let mut failed = Vec::new();
    let mut not_deployed: Vec<String> = Vec::new();
    let mut created = Vec::new();
    let mut error: Option<Value> = None;
    let planned = {
        let ctx = Context {
            state,
            group,
            group_location: &group_location,
            template,
            parameters,
        };
        match plan(&ctx) {
            Ok(p) => p,
            Err(message) => {
                let d = &mut state.deployments[index];
                d.state = "Failed".into();
                d.error = Some(invalid_template(&message));
                return;
            }
        }
    };
    for (position, raw) in template["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (id, kind, res_name) = planned[position].clone();
        let evaluated = {
            let ctx = Context {
                state,
                group,
                group_location: &group_location,
                template,
                parameters,
            };
            // A resource whose condition is false is not deployed (children.rs).
            match raw
                .get("condition")
                .map(|c| ctx.eval_value(c))
                .transpose()
                .and_then(|c| children::deployed(c.as_ref()))
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(message) => {
                    error = Some(invalid_template(&message));
                    break;
                }
            }
            // ARM never starts a resource whose dependency failed; it is left out.
            let blocked = raw["dependsOn"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|dep| {
                    ctx.eval_value(dep)
                        .ok()
                        .and_then(|d| d.as_str().map(str::to_ascii_lowercase))
                        .is_some_and(|d| not_deployed.contains(&d))
                });
            if blocked {
                not_deployed.push(id.to_ascii_lowercase());
                continue;
            }
            match ctx.eval_value(raw) {
                Ok(v) => v,
                Err(message) => {
                    error = Some(invalid_template(&message));
                    break;
                }
            }
        };
        let queued = failures.iter().find(|f| {
            f.resource_type.eq_ignore_ascii_case(&kind)
                && f.resource_name.as_deref().is_none_or(|n| n == res_name)
        });
        let action = format!("{kind}/write");
        let principal = evaluated["properties"]["principalId"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let principal_missing = kind
            .eq_ignore_ascii_case("Microsoft.Authorization/roleAssignments")
            && !rbac::principal_exists(state, &principal);
        let orphan = children::parent_of(&kind, &id)
            .filter(|(parent, _, _)| !state.resources.contains_key(&parent.to_ascii_lowercase()));
        let outcome: Result<(), (String, String)> = match queued {
            Some(f) => Err((f.code.clone(), f.message.clone())),
            None if orphan.is_some() => Err((
                "ParentResourceNotFound".into(),
                format!(
                    "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                    orphan.as_ref().map_or("", |o| o.0.as_str())
                ),
            )),
            None if !rbac::allows(&state.permissions, &action) => Err((
                "AuthorizationFailed".into(),
                format!("The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '{id}' or the scope is invalid. If access was recently granted, please refresh your credentials.", CALLER_OBJECT_ID, CALLER_OBJECT_ID),
            )),
            None if principal_missing => Err((
                "PrincipalNotFound".into(),
                format!("Principal {principal} does not exist in the directory {TENANT}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype"),
            )),
            None => Ok(()),
        };
        // A vault follows Key Vault's own rules (soft-deleted names, purge protection...).
        let is_vault = kind.eq_ignore_ascii_case(keyvault::VAULT_TYPE);
        let outcome = match outcome {
            Ok(()) if is_vault => keyvault::deploy(state, group, &evaluated),
            other => other,
        };
        let target = json!({ "id": id, "resourceType": kind, "resourceName": res_name });
        match outcome {
            Ok(()) => {
                if is_vault {
                    // Stored by keyvault::deploy.
                } else if kind.eq_ignore_ascii_case("Microsoft.Authorization/roleAssignments") {
                    let mut value = evaluated;
                    let scope = id
                        .split("/providers/Microsoft.Authorization/roleAssignments/")
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    if let Some(object) = value.as_object_mut() {
                        object.remove("scope");
                    }
                    value["properties"]["scope"] = json!(scope);
                    materialize(state, group, &id, value);
                } else {
                    materialize(state, group, &id, evaluated);
                }
                created.push(id.clone());
                operations.push(operation_value(group, name, position, &target, None));
            }
            Err((code, message)) => {
                not_deployed.push(id.to_ascii_lowercase());
                failed.push(json!({ "code": code, "message": message, "target": id }));
                operations.push(operation_value(
                    group,
                    name,
                    position,
                    &target,
                    Some((&code, &message)),
                ));
            }
        }
    }
    let mut outputs = Map::new();
    if error.is_none() && failed.is_empty() {
        let ctx = Context {
            state,
            group,
            group_location: &group_location,
            template,
            parameters,
        };
        for (key, output) in template["outputs"].as_object().into_iter().flatten() {
            match ctx.eval_value(&output["value"]) {
                Ok(v) => {
                    outputs.insert(key.clone(), json!({ "type": output["type"], "value": v }));
                }
                Err(message) => error = Some(invalid_template(&message)),
            }
        }
    }
    if error.is_none() && !failed.is_empty() {
        error = Some(json!({
            "code": "DeploymentFailed",
            "message": "At least one resource deployment operation failed. Please list deployment operations for details. Please see https://aka.ms/arm-deployment-operations for usage details.",
            "details": failed,
        }));
    }
    let d = &mut state.deployments[index];
    d.operations = operations;
    d.outputs = Value::Object(outputs);
    d.output_resources = created;
    d.state = if error.is_some() {
        "Failed"
    } else {
        "Succeeded"
    }
    .to_string();
    d.error = error;
}
