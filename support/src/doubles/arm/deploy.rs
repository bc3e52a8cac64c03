//! Deployments (Microsoft.Resources 2025-04-01, resources.json): CreateOrUpdate, Get, Validate,
//! WhatIf, DeploymentOperations_List.
//!
//! - ARM checks a deployment before accepting it ("preflight"): the template (parameters,
//!   `dependsOn`, mode), then Azure Policy denials, VM size availability (Resource SKU
//!   restrictions) and Compute quota. A failure is 400 `InvalidTemplateDeployment` "...See inner
//!   errors for details." with the causes in nested `details[]` (`RequestDisallowedByPolicy`,
//!   `SkuNotAvailable`, `QuotaExceeded`), each with its `target`. Deployments_Validate answers
//!   the same 400 or 200 (fact 5: "a 400 is a normal validation answer"); the 200 body is built
//!   after the 2024-11-01 `PostDeploymentValidateOnResourceGroup.json` example.
//! - An accepted PUT is 201 with `Azure-AsyncOperation` (`.../deployments/{name}/operationStatuses/{id}`).
//!   When its polls end, each resource is created in template order: a resource whose
//!   dependency failed is not started; a resource type the caller may not write
//!   (Permissions, [`super::rbac`]) fails with `AuthorizationFailed`; a role assignment for a
//!   principal that does not exist fails with `PrincipalNotFound`; failures queued by
//!   [`super::ArmDouble::fail_next_deployment`] fail their resources. The deployment then ends
//!   `Failed` with `DeploymentFailed` and the resources' errors as `details`.
//! - What-if (202 + `Location`, fact 4) compares each template resource with what exists:
//!   `Create`, `Modify` (delta per top-level property; child collections such as
//!   `properties.subnets` and `properties.securityRules` as `Array` changes whose children say
//!   which items are created, modified or deleted), `NoChange`; resources the template does not
//!   name are `Ignore` (Incremental).

use serde_json::{json, Map, Value};

use super::super::server::Reply;
use super::children;
use super::compute;
use super::expr::Context;
use super::lro::Pending;
use super::resources::{group_missing, materialize};
use super::{arm_error, page, rbac, resource_id, Call, Deployment, State, SUBSCRIPTION, TENANT};

pub(crate) fn find<'a>(state: &'a State, group: &str, name: &str) -> Option<&'a Deployment> {
    state
        .deployments
        .iter()
        .rev()
        .find(|d| d.group.eq_ignore_ascii_case(group) && d.name == name)
}

fn deployment_id(group: &str, name: &str) -> String {
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
    json!({
        "id": deployment_id(&d.group, &d.name),
        "name": d.name,
        "type": "Microsoft.Resources/deployments",
        "properties": properties,
    })
}

fn not_found(name: &str) -> Reply {
    arm_error(
        404,
        "DeploymentNotFound",
        &format!("Deployment '{name}' could not be found."),
    )
}

fn invalid_template(message: &str) -> Value {
    json!({ "code": "InvalidTemplate", "message": message })
}

/// The template checks ARM makes before accepting a deployment or a what-if.
fn check_template(state: &State, group: &str, body: &Value) -> Result<(), Reply> {
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
fn plan(ctx: &Context) -> Result<Vec<(String, String, String)>, String> {
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

/// Policy, SKU and quota checks; the causes as `details` entries.
fn preflight(state: &State, group: &str, body: &Value) -> Vec<Value> {
    let template = &body["properties"]["template"];
    let location = state.groups[&group.to_ascii_lowercase()]["location"].clone();
    let ctx = Context {
        state,
        group,
        group_location: &location,
        template,
        parameters: &body["properties"]["parameters"],
    };
    let mut details = Vec::new();
    // vCPUs wanted per quota name, beyond what the scale sets already hold.
    let mut wanted: Vec<(String, u64, String)> = Vec::new();
    for raw in template["resources"].as_array().into_iter().flatten() {
        let kind = raw["type"].as_str().unwrap_or("");
        let name = ctx
            .eval_value(&raw["name"])
            .ok()
            .and_then(|n| n.as_str().map(str::to_string))
            .unwrap_or_default();
        let id = resource_id(group, kind, &name.split('/').collect::<Vec<_>>());
        for policy in &state.policies {
            if policy
                .denied_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(kind))
            {
                details.push(json!({
                    "code": "RequestDisallowedByPolicy",
                    "target": name,
                    "message": format!("Resource '{name}' was disallowed by policy. Policy identifiers: '[{{\"policyAssignment\":{{\"name\":\"{p}\",\"id\":\"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/policyAssignments/{p}\"}},\"policyDefinition\":{{\"name\":\"Not allowed resource types\",\"id\":\"/providers/Microsoft.Authorization/policyDefinitions/6c112d4e-5bc7-47ae-a041-ea2d9dccd749\"}}}}]'.", p = policy.name),
                    "additionalInfo": [{ "type": "PolicyViolation", "info": { "policyAssignmentName": policy.name } }],
                }));
            }
        }
        if !kind.eq_ignore_ascii_case("Microsoft.Compute/virtualMachineScaleSets") {
            continue;
        }
        let Ok(resource) = ctx.eval_value(&json!({ "sku": raw["sku"], "location": raw["location"], "properties": { "singlePlacementGroup": raw["properties"]["singlePlacementGroup"], "virtualMachineProfile": { "priority": raw["properties"]["virtualMachineProfile"]["priority"], "storageProfile": raw["properties"]["virtualMachineProfile"]["storageProfile"] } } })) else {
            continue;
        };
        let size = resource["sku"]["name"].as_str().unwrap_or("");
        let capacity = resource["sku"]["capacity"].as_u64().unwrap_or(0);
        let region = resource["location"]
            .as_str()
            .unwrap_or("")
            .to_ascii_lowercase();
        let sku = compute::sku_of(state, size);
        let restricted = sku.is_some_and(|s| {
            s["restrictions"].as_array().into_iter().flatten().any(|r| {
                r["type"] == "Location"
                    && r["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|v| v.as_str().is_some_and(|v| v.eq_ignore_ascii_case(&region)))
            })
        });
        let offered = sku.is_some_and(|s| {
            s["locations"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|l| l.as_str().is_some_and(|l| l.eq_ignore_ascii_case(&region)))
        });
        if restricted || !offered {
            details.push(json!({
                "code": "SkuNotAvailable",
                "target": name,
                "message": format!("The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' is currently not available in location '{region}'. Please try another size or deploy to a different location or different zones. See https://aka.ms/azureskunotavailable for details."),
            }));
            continue;
        }
        let single = resource["properties"]["singlePlacementGroup"]
            .as_bool()
            .unwrap_or(true);
        let from_managed_image = resource["properties"]["virtualMachineProfile"]["storageProfile"]
            ["imageReference"]["id"]
            .as_str()
            .is_some_and(|i| {
                i.to_ascii_lowercase()
                    .contains("/providers/microsoft.compute/images/")
            });
        let limit = if single {
            100
        } else if from_managed_image {
            600
        } else {
            1000
        };
        if capacity > limit {
            details.push(json!({
                "code": "InvalidParameter",
                "target": "sku.capacity",
                "message": format!("The scale set '{name}' asks for {capacity} instances; with singlePlacementGroup {single}{} a scale set holds at most {limit}.", if from_managed_image { " and a managed image" } else { "" }),
            }));
            continue;
        }
        let Some((family, vcpus)) = compute::family_of(state, size) else {
            continue;
        };
        let existing = state
            .resources
            .get(&id.to_ascii_lowercase())
            .and_then(|s| {
                s.scale_set.as_ref().map(|set| {
                    (
                        set.instances.len() as u64,
                        s.value["sku"]["name"]
                            .as_str()
                            .unwrap_or("")
                            .eq_ignore_ascii_case(size),
                    )
                })
            })
            .map_or(0, |(count, same)| if same { count } else { 0 });
        let need = capacity.saturating_sub(existing) * vcpus;
        let spot = resource["properties"]["virtualMachineProfile"]["priority"]
            .as_str()
            .is_some_and(|p| p.eq_ignore_ascii_case("Spot"));
        let names: Vec<String> = if spot {
            vec!["lowPriorityCores".into()]
        } else {
            vec![family.clone(), "cores".into()]
        };
        for quota in names {
            match wanted.iter_mut().find(|(q, _, _)| *q == quota) {
                Some(w) => w.1 += need,
                None => wanted.push((quota, need, region.clone())),
            }
        }
    }
    for (quota, need, region) in wanted {
        let report = compute::usage_report(state, &region);
        let Some((_, current, limit)) = report.iter().find(|(n, _, _)| *n == quota) else {
            continue;
        };
        if need > 0 && current + need > *limit {
            let label = match quota.as_str() {
                "cores" => "Total Regional Cores".to_string(),
                "lowPriorityCores" => "Low Priority Cores".to_string(),
                family => format!("{family} Cores"),
            };
            details.push(json!({
                "code": "QuotaExceeded",
                "target": quota,
                "message": format!("Operation could not be completed as it results in exceeding approved {label} quota. Additional details - Deployment Model: Resource Manager, Location: {region}, Current Limit: {limit}, Current Usage: {current}, Additional Required: {need}, (Minimum) New Limit Required: {}. Submit a request for Quota increase at https://aka.ms/ProdportalCRP/#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView/Parameters/ by specifying parameters listed in the 'Details' section for deployment to succeed. Please read more about quota limits at https://docs.microsoft.com/en-us/azure/azure-supportability/per-vm-quota-requests", current + need),
            }));
        }
    }
    details
}

fn preflight_error(name: &str, details: Vec<Value>) -> Value {
    json!({
        "code": "InvalidTemplateDeployment",
        "message": format!("The template deployment '{name}' is not valid according to the validation procedure. The tracking id is '00000000-0000-0000-0000-00000000f11e'. See inner errors for details."),
        "details": details,
    })
}

/// Deployments_CreateOrUpdate.
pub(super) fn put(state: &mut State, call: &Call) -> Reply {
    let group = call.param("resourceGroupName").to_string();
    let name = call.param("deploymentName").to_string();
    let body = match call.body() {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(reply) = check_template(state, &group, &body) {
        return reply;
    }
    let details = preflight(state, &group, &body);
    if !details.is_empty() {
        return Reply::json(400, &json!({ "error": preflight_error(&name, details) }));
    }
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

/// Deployments_Validate: 200 with the validated deployment, or 400 with the preflight error.
pub(super) fn validate(state: &mut State, call: &Call) -> Reply {
    let group = call.param("resourceGroupName").to_string();
    let name = call.param("deploymentName").to_string();
    let body = match call.body() {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(reply) = check_template(state, &group, &body) {
        return reply;
    }
    let details = preflight(state, &group, &body);
    if !details.is_empty() {
        return Reply::json(400, &json!({ "error": preflight_error(&name, details) }));
    }
    let location = state.groups[&group.to_ascii_lowercase()]["location"].clone();
    let ctx = Context {
        state,
        group: &group,
        group_location: &location,
        template: &body["properties"]["template"],
        parameters: &body["properties"]["parameters"],
    };
    let validated: Vec<Value> = plan(&ctx)
        .unwrap_or_default()
        .into_iter()
        .map(|(id, _, _)| json!({ "id": id }))
        .collect();
    Reply::json(
        200,
        &json!({
            "id": deployment_id(&group, &name),
            "name": name,
            "type": "Microsoft.Resources/deployments",
            "properties": {
                "mode": body["properties"]["mode"],
                "provisioningState": "Succeeded",
                "timestamp": "2026-01-01T00:00:00Z",
                "correlationId": "00000000-0000-0000-0000-000000000000",
                "parameters": {},
                "validatedResources": validated,
                "diagnostics": [],
            },
        }),
    )
}

/// DeploymentOperations_List.
pub(super) fn operations(state: &mut State, call: &Call) -> Reply {
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
                format!("The client '{}' with object id '{}' does not have authorization to perform action '{action}' over scope '{id}' or the scope is invalid. If access was recently granted, please refresh your credentials.", super::CALLER_OBJECT_ID, super::CALLER_OBJECT_ID),
            )),
            None if principal_missing => Err((
                "PrincipalNotFound".into(),
                format!("Principal {principal} does not exist in the directory {TENANT}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype"),
            )),
            None => Ok(()),
        };
        // A vault follows Key Vault's own rules (soft-deleted names, purge protection...).
        let is_vault = kind.eq_ignore_ascii_case(super::keyvault::VAULT_TYPE);
        let outcome = match outcome {
            Ok(()) if is_vault => super::keyvault::deploy(state, group, &evaluated),
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

/// Server-set values that what-if does not count as changes.
fn strip_read_only(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("provisioningState");
        o.remove("ipAddress");
        o.remove("scope");
        if let Some(os) = o
            .get_mut("virtualMachineProfile")
            .and_then(|p| p.get_mut("osProfile"))
            .and_then(Value::as_object_mut)
        {
            os.remove("customData");
        }
    }
}

fn named_items(v: &Value) -> Option<Vec<(String, Value)>> {
    let items = v.as_array()?;
    items
        .iter()
        .map(|i| Some((i["name"].as_str()?.to_string(), i.clone())))
        .collect()
}

/// The what-if delta of `properties`: one change per differing top-level property; arrays of
/// named items (child collections) as `Array` changes with per-item children.
fn properties_delta(before: &Value, after: &Value) -> Vec<Value> {
    let mut delta = Vec::new();
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (bv, av) = (
            b.get(key).cloned().unwrap_or(Value::Null),
            a.get(key).cloned().unwrap_or(Value::Null),
        );
        if bv == av || av.is_null() {
            continue;
        }
        let path = format!("properties.{key}");
        match (named_items(&bv), named_items(&av)) {
            (Some(old), Some(new)) => {
                let mut children = Vec::new();
                for (i, (n, item)) in old.iter().enumerate() {
                    match new.iter().find(|(m, _)| m == n) {
                        None => children.push(json!({ "path": i.to_string(), "propertyChangeType": "Delete", "before": item })),
                        Some((_, now)) if now != item => children.push(json!({ "path": i.to_string(), "propertyChangeType": "Modify", "before": item, "after": now })),
                        Some(_) => {}
                    }
                }
                for (i, (n, item)) in new.iter().enumerate() {
                    if !old.iter().any(|(m, _)| m == n) {
                        children.push(json!({ "path": i.to_string(), "propertyChangeType": "Create", "after": item }));
                    }
                }
                delta.push(json!({ "path": path, "propertyChangeType": "Array", "before": bv, "after": av, "children": children }));
            }
            _ => delta.push(json!({ "path": path, "propertyChangeType": if bv.is_null() { "Create" } else { "Modify" }, "before": bv, "after": av })),
        }
    }
    delta
}

/// Deployments_WhatIf.
pub(super) fn what_if(state: &mut State, call: &Call) -> Reply {
    let group = call.param("resourceGroupName").to_string();
    let body = match call.body() {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(reply) = check_template(state, &group, &body) {
        return reply;
    }
    let template = &body["properties"]["template"];
    let parameters = &body["properties"]["parameters"];
    let group_location = state.groups[&group.to_ascii_lowercase()]["location"].clone();
    let ctx = Context {
        state,
        group: &group,
        group_location: &group_location,
        template,
        parameters,
    };
    let result = (|| -> Result<Value, String> {
        let planned = plan(&ctx)?;
        let mut changes = Vec::new();
        for (raw, (id, _, _)) in template["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(&planned)
        {
            let condition = raw
                .get("condition")
                .map(|c| ctx.eval_value(c))
                .transpose()?;
            if !children::deployed(condition.as_ref())? {
                continue;
            }
            // reference() to a resource that does not exist yet is unknown until deployment.
            let mut after = ctx.eval_value(raw).unwrap_or_else(|_| raw.clone());
            let kind = raw["type"].as_str().unwrap_or_default();
            // A child (subnet, security rule) lives in its parent's collection.
            let existing = match children::parent_of(kind, id) {
                Some((parent, collection, name)) => state
                    .resources
                    .get(&parent.to_ascii_lowercase())
                    .and_then(|p| children::find_child(&p.value, collection, &name)),
                None => state
                    .resources
                    .get(&id.to_ascii_lowercase())
                    .map(|s| s.value.clone()),
            };
            match existing {
                None => changes
                    .push(json!({ "resourceId": id, "changeType": "Create", "after": after })),
                Some(existing_value) => {
                    // What the provider keeps when the PUT leaves a collection out.
                    children::keep_omitted_children(kind, Some(&existing_value), &mut after);
                    let mut delta = Vec::new();
                    for key in ["location", "tags", "sku", "zones", "identity"] {
                        let mut before = existing_value[key].clone();
                        let mut wanted = after[key].clone();
                        if key == "identity" {
                            before = json!(before["type"]);
                            wanted = json!(wanted["type"]);
                        }
                        if !wanted.is_null() && before != wanted {
                            delta.push(json!({ "path": key, "propertyChangeType": "Modify", "before": before, "after": wanted }));
                        }
                    }
                    let mut before = existing_value["properties"].clone();
                    let mut wanted = after["properties"].clone();
                    strip_read_only(&mut before);
                    strip_read_only(&mut wanted);
                    delta.extend(properties_delta(&before, &wanted));
                    let kind = if delta.is_empty() {
                        "NoChange"
                    } else {
                        "Modify"
                    };
                    changes.push(json!({ "resourceId": id, "changeType": kind, "before": existing_value, "after": after, "delta": delta }));
                }
            }
        }
        for stored in state
            .resources
            .values()
            .filter(|s| s.group.eq_ignore_ascii_case(&group))
        {
            let id = stored.value["id"].as_str().unwrap_or_default();
            if !planned.iter().any(|(p, _, _)| p.eq_ignore_ascii_case(id)) {
                changes.push(
                    json!({ "resourceId": id, "changeType": "Ignore", "before": stored.value }),
                );
            }
        }
        Ok(json!({ "status": "Succeeded", "properties": { "changes": changes } }))
    })();
    let result = result.unwrap_or_else(
        |message| json!({ "status": "Failed", "error": invalid_template(&message) }),
    );
    call.long_running(state, 202, &Value::Null, Pending::WhatIf { result })
}
