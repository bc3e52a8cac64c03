//! ARM checks a deployment before accepting it ("preflight"): the template (parameters,
//! `dependsOn`, mode), then Azure Policy denials, VM size availability (Resource SKU
//! restrictions) and Compute quota. A failure is 400 `InvalidTemplateDeployment` "...See inner
//! errors for details." with the causes in nested `details[]` (`RequestDisallowedByPolicy`,
//! `SkuNotAvailable`, `QuotaExceeded`), each with its `target`. Deployments_Validate answers
//! the same 400 or 200 (fact 5: "a 400 is a normal validation answer"); the 200 body is built
//! after the 2024-11-01 `PostDeploymentValidateOnResourceGroup.json` example.

use serde_json::{json, Value};

use super::{check_template, deployment_id, plan};
use crate::doubles::arm::expr::Context;
use crate::doubles::arm::{compute, resource_id, Call, State, SUBSCRIPTION};
use crate::doubles::server::Reply;

/// The deployment a Deployments_CreateOrUpdate or Deployments_Validate call names, once it
/// passes the checks ARM runs for both (the template, then preflight: module docs): its group,
/// name and body, or the answer refusing it.
pub(super) fn checked_request(
    state: &State,
    call: &Call,
) -> Result<(String, String, Value), Reply> {
    let group = call.param("resourceGroupName").to_string();
    let name = call.param("deploymentName").to_string();
    let body = call.body()?;
    check_template(state, &group, &body)?;
    let details = preflight(state, &group, &body);
    if !details.is_empty() {
        return Err(Reply::json(
            400,
            &json!({ "error": preflight_error(&name, details) }),
        ));
    }
    Ok((group, name, body))
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

/// Deployments_Validate: 200 with the validated deployment, or 400 with the preflight error.
pub(crate) fn validate(state: &mut State, call: &Call) -> Reply {
    let (group, name, body) = match checked_request(state, call) {
        Ok(checked) => checked,
        Err(reply) => return reply,
    };
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
