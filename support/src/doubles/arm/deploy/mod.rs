//! Deployments (Microsoft.Resources 2025-04-01, resources.json): CreateOrUpdate, Get, Validate,
//! WhatIf, DeploymentOperations_List.
//!
//! The deployment record, the template checks ARM makes before it accepts a deployment or a
//! what-if (mode, parameters, `dependsOn`) and the plan of the template's resources are here,
//! with Deployments_CreateOrUpdate and Deployments_Get; by concern:
//!
//! - `preflight`: the policy, SKU and quota checks, and Deployments_Validate.
//! - `operations`: running an accepted deployment, and DeploymentOperations_List.
//! - `what_if`: Deployments_WhatIf.
//!
//! An accepted PUT is 201 with `Azure-AsyncOperation` (`.../deployments/{name}/operationStatuses/{id}`).

use serde_json::{json, Value};

use crate::doubles::arm::expr::Context;
use crate::doubles::arm::lro::Pending;
use crate::doubles::arm::resources::group_missing;
use crate::doubles::arm::{arm_error, resource_id, Call, State, SUBSCRIPTION};
use crate::doubles::server::Reply;

mod operations;
mod preflight;
mod what_if;

pub(super) use operations::{operations, run};
use preflight::checked_request;
pub(super) use preflight::validate;
pub(super) use what_if::what_if;

#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub(crate) group: String,
    pub(crate) name: String,
    /// The request body as sent (template and parameters).
    pub(crate) request: Value,
    pub(crate) state: String,
    pub(crate) error: Option<Value>,
    pub(crate) operations: Vec<Value>,
    pub(crate) outputs: Value,
    pub(crate) output_resources: Vec<String>,
    pub(crate) timestamp: u64,
}

pub(crate) fn find<'a>(state: &'a State, group: &str, name: &str) -> Option<&'a Deployment> {
    state
        .deployments
        .iter()
        .rev()
        .find(|d| d.group.eq_ignore_ascii_case(group) && d.name == name)
}

pub(super) fn deployment_id(group: &str, name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.Resources/deployments/{name}")
}

fn deployment_value(d: &Deployment) -> Value {
    let mut properties = json!({
        "provisioningState": d.state,
        "mode": d.request["properties"]["mode"],
        "timestamp": format!("2026-01-01T00:00:{:02}Z", d.timestamp % 60),
        "correlationId": format!("00000000-0000-0000-0000-{:012}", d.timestamp),
        "outputs": d.outputs,
        "outputResources": d.output_resources.iter().map(|id| json!({ "id": id })).collect::<Vec<_>>(),
    });
    if let Some(e) = &d.error {
        properties["error"] = e.clone();
    }
    let mut value = json!({
        "id": deployment_id(&d.group, &d.name),
        "name": d.name,
        "type": "Microsoft.Resources/deployments",
        "properties": properties,
    });
    // `Deployment.tags` / `DeploymentExtended.tags` (resources.json 2025-04-01): the tags the
    // PUT gave, answered back as they were sent.
    if d.request["tags"].is_object() {
        value["tags"] = d.request["tags"].clone();
    }
    value
}

pub(super) fn not_found(name: &str) -> Reply {
    arm_error(
        404,
        "DeploymentNotFound",
        &format!("Deployment '{name}' could not be found."),
    )
}

pub(super) fn invalid_template(message: &str) -> Value {
    json!({ "code": "InvalidTemplate", "message": message })
}

/// The template checks ARM makes before accepting a deployment or a what-if.
pub(super) fn check_template(state: &State, group: &str, body: &Value) -> Result<(), Reply> {
    if !state.groups.contains_key(&group.to_ascii_lowercase()) {
        return Err(group_missing(group));
    }
    let bad = |message: String| Reply::json(400, &json!({ "error": invalid_template(&message) }));
    let mode = body["properties"]["mode"].as_str().unwrap_or("");
    if mode != "Incremental" && mode != "Complete" {
        return Err(arm_error(
            400,
            "InvalidDeploymentMode",
            &format!("The deployment mode '{mode}' is not valid."),
        ));
    }
    let template = &body["properties"]["template"];
    if !template["resources"].is_array() {
        return Err(bad(
            "Deployment template validation failed: 'The template resources property is missing.'"
                .into(),
        ));
    }
    let given = &body["properties"]["parameters"];
    for (name, declared) in template["parameters"].as_object().into_iter().flatten() {
        if given[name]["value"].is_null() && declared.get("defaultValue").is_none() {
            return Err(bad(format!("Deployment template validation failed: 'The value for the template parameter '{name}' at line '1' and column '1' is not provided. Please see https://aka.ms/arm-create-parameter-file for usage details.'.")));
        }
        if let (Some(v), Some(min)) = (
            given[name]["value"].as_str(),
            declared["minLength"].as_u64(),
        ) {
            if (v.len() as u64) < min {
                return Err(bad(format!("Deployment template validation failed: 'The provided value for the template parameter '{name}' is not valid. Length of the value should be greater than or equal to '{min}'.'")));
            }
        }
    }
    let location = state.groups[&group.to_ascii_lowercase()]["location"].clone();
    let ctx = Context {
        state,
        group,
        group_location: &location,
        template,
        parameters: given,
    };
    plan(&ctx).map(|_| ()).map_err(bad)
}

/// Each template resource's id, type and name, and the `dependsOn` check.
pub(super) fn plan(ctx: &Context) -> Result<Vec<(String, String, String)>, String> {
    let mut planned = Vec::new();
    for raw in ctx.template["resources"].as_array().into_iter().flatten() {
        let kind = raw["type"]
            .as_str()
            .ok_or("a resource has no type")?
            .to_string();
        let name = ctx.eval_value(&raw["name"])?;
        let name = name
            .as_str()
            .ok_or("a resource name is not a string")?
            .to_string();
        let names: Vec<&str> = name.split('/').collect();
        // An extension resource (a role assignment on a vault or a secret) names its target in
        // `scope`: a resource id, or `Namespace/type/name[/type/name]` in this group ("Set scope
        // on extension resources in ARM templates").
        let id = match &raw["scope"] {
            Value::Null => resource_id(ctx.group, &kind, &names),
            scope => {
                let scope = ctx.eval_value(scope)?;
                let scope = scope.as_str().ok_or("a resource scope is not a string")?;
                let scope_id = if scope.starts_with('/') {
                    scope.trim_end_matches('/').to_string()
                } else {
                    let parts: Vec<&str> = scope.split('/').collect();
                    let kinds: Vec<&str> = std::iter::once(parts[0])
                        .chain(parts.iter().skip(1).step_by(2).copied())
                        .collect();
                    let scope_names: Vec<&str> = parts.iter().skip(2).step_by(2).copied().collect();
                    resource_id(ctx.group, &kinds.join("/"), &scope_names)
                };
                format!("{scope_id}/providers/{kind}/{name}")
            }
        };
        planned.push((id, kind, name));
    }
    for raw in ctx.template["resources"].as_array().into_iter().flatten() {
        for dep in raw["dependsOn"].as_array().into_iter().flatten() {
            let dep = ctx.eval_value(dep)?;
            let dep = dep.as_str().unwrap_or_default();
            if !planned
                .iter()
                .any(|(id, _, _)| id.eq_ignore_ascii_case(dep))
            {
                return Err(format!("Deployment template validation failed: 'The resource '{dep}' is not defined in the template.'"));
            }
        }
    }
    Ok(planned)
}

/// Deployments_CreateOrUpdate.
pub(super) fn put(state: &mut State, call: &Call) -> Reply {
    let (group, name, body) = match checked_request(state, call) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
    if find(state, &group, &name).is_some_and(|d| d.state == "Running" || d.state == "Accepted") {
        return arm_error(409, "DeploymentActive", &format!("The deployment '{name}' cannot be saved, because this would overwrite an existing deployment which is still active."));
    }
    state.counter += 1;
    let deployment = Deployment {
        group: group.clone(),
        name: name.clone(),
        request: body,
        state: "Running".to_string(),
        error: None,
        operations: Vec::new(),
        outputs: json!({}),
        output_resources: Vec::new(),
        timestamp: state.counter,
    };
    let mut value = deployment_value(&deployment);
    value["properties"]["provisioningState"] = json!("Accepted");
    state.deployments.push(deployment);
    call.long_running(state, 201, &value, Pending::Deployment { group, name })
}

/// Deployments_Get.
pub(super) fn get(state: &mut State, call: &Call) -> Reply {
    let name = call.param("deploymentName");
    match find(state, call.param("resourceGroupName"), name) {
        Some(d) => Reply::json(200, &deployment_value(d)),
        None => not_found(name),
    }
}
