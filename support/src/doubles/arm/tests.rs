//! The double's own tests: spec conformance, the documented answers, instances.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::super::server::test_client as client;
use super::*;

const RESOURCES: &str = "2025-04-01";
pub(super) const COMPUTE: &str = "2024-11-01";
const AUTHORIZATION: &str = "2022-04-01";

pub(super) fn url(arm: &ArmDouble, path: &str, version: &str) -> String {
    format!(
        "{}/subscriptions/{SUBSCRIPTION}{path}?api-version={version}",
        arm.url()
    )
}

pub(super) fn get(arm: &ArmDouble, url: &str) -> (u16, Value) {
    let r = client().get(url).bearer_auth(arm.token()).send().unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Follows a long-running answer's `Azure-AsyncOperation` (or `Location`) to its end.
pub(super) fn wait(arm: &ArmDouble, r: reqwest::blocking::Response) -> Value {
    let headers = r.headers().clone();
    if let Some(url) = headers.get("azure-asyncoperation") {
        loop {
            let (_, body) = get(arm, url.to_str().unwrap());
            if body["status"] != "Running" && body["status"] != "InProgress" {
                return body;
            }
        }
    }
    let url = headers["location"].to_str().unwrap().to_string();
    loop {
        let r = client().get(&url).bearer_auth(arm.token()).send().unwrap();
        if r.status().as_u16() != 202 {
            return r.json().unwrap_or(Value::Null);
        }
    }
}

pub(super) fn deploy(arm: &ArmDouble, template: &Value) -> Value {
    let r = client()
        .put(url(arm, "/resourcegroups/rg/providers/Microsoft.Resources/deployments/d", RESOURCES))
        .bearer_auth(arm.token())
        .json(&json!({ "properties": { "mode": "Incremental", "template": template, "parameters": {} } }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text());
    wait(arm, r)
}

pub(super) fn scale_set(name: &str, capacity: u64, image: &str) -> Value {
    json!({ "type": "Microsoft.Compute/virtualMachineScaleSets", "apiVersion": COMPUTE, "name": name,
        "location": "westeurope", "sku": { "name": "Standard_D2s_v5", "capacity": capacity },
        "zones": ["1", "2", "3"],
        "identity": { "type": "SystemAssigned" },
        "properties": { "virtualMachineProfile": {
            "osProfile": { "computerNamePrefix": "n-", "customData": "IyEvYmluL3NoCg==" },
            "storageProfile": { "imageReference": { "id": image } },
            "scheduledEventsProfile": { "terminateNotificationProfile": { "enable": true } },
            "networkProfile": { "networkInterfaceConfigurations": [{ "name": "nic", "properties": { "ipConfigurations": [{ "name": "ipconfig", "properties": {} }] } }] } } } })
}

pub(super) fn template(resources: Vec<Value>) -> Value {
    json!({ "$schema": "x", "contentVersion": "1.0.0.0", "resources": resources })
}

#[test]
fn requests_need_the_token_and_the_api_version() {
    let arm = ArmDouble::start();
    arm.expect_refusals();
    let c = client();
    let r = c
        .get(url(&arm, "/resourcegroups/rg", RESOURCES))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .get(format!(
            "{}/subscriptions/{SUBSCRIPTION}/resourcegroups/rg",
            arm.url()
        ))
        .bearer_auth(arm.token())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().unwrap().contains("MissingApiVersionParameter"));
    let (status, body) = get(&arm, &url(&arm, "/resourcegroups/rg", RESOURCES));
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ResourceGroupNotFound");
}

#[test]
fn requests_that_are_no_spec_operation_are_refused_and_fail_the_test() {
    let arm = ArmDouble::start();
    arm.add_resource_group("rg", "westeurope", json!({}));
    let vmss_nics = "/resourcegroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/x/networkInterfaces";
    let (status, body) = get(&arm, &url(&arm, vmss_nics, "2025-07-01"));
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "NoRegisteredProviderFound");
    let (status, body) = get(&arm, &url(&arm, "/resourcegroups/rg", "2024-11-01"));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("InvalidApiVersionParameter"))
    );
    let disk = "/resourcegroups/rg/providers/Microsoft.Compute/disks/data";
    let r = client()
        .delete(url(&arm, disk, COMPUTE))
        .bearer_auth(arm.token())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let refused = arm.refused();
    assert_eq!(refused.len(), 3);
    // Dropping the double fails the test that made these requests.
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(arm)));
    let message = dropped.unwrap_err();
    let text = message.downcast_ref::<String>().unwrap();
    assert!(
        text.contains("networkInterfaces?api-version=2025-07-01: NoRegisteredProviderFound"),
        "{text}"
    );
}

#[test]
fn a_deployment_evaluates_its_template_and_creates_resources() {
    let arm = ArmDouble::start();
    arm.add_resource_group("rg", "westeurope", json!({}));
    let mut vmss = scale_set(
        "vmss",
        2,
        "/subscriptions/s/resourceGroups/i/providers/Microsoft.Compute/images/a",
    );
    vmss["properties"]["virtualMachineProfile"]["osProfile"]["customData"] =
        json!("[base64(concat(variables('head'), parameters('key')))]");
    let t = json!({
        "$schema": "x", "contentVersion": "1.0.0.0",
        "parameters": { "key": { "type": "securestring", "defaultValue": "s3cret" } },
        "variables": { "head": "#!/bin/sh\necho " },
        "resources": [vmss,
            { "type": "Microsoft.Authorization/roleAssignments", "apiVersion": AUTHORIZATION,
              "name": "[guid(resourceGroup().id, 'vmss')]",
              "dependsOn": ["[resourceId('Microsoft.Compute/virtualMachineScaleSets', 'vmss')]"],
              "properties": { "principalId": "[reference(resourceId('Microsoft.Compute/virtualMachineScaleSets', 'vmss'), '2024-11-01', 'full').identity.principalId]" } }
        ]
    });
    let status = deploy(&arm, &t);
    assert_eq!(status["status"], "Succeeded", "{status}");
    assert_eq!(arm.custom_data("vmss").unwrap(), "#!/bin/sh\necho s3cret");
    let vmss = arm
        .resource_named("Microsoft.Compute/virtualMachineScaleSets", "vmss")
        .unwrap();
    assert!(vmss["properties"]["virtualMachineProfile"]["osProfile"]
        .get("customData")
        .is_none());
    let principal = vmss["identity"]["principalId"].as_str().unwrap();
    let assignments: Vec<Value> = arm
        .resources()
        .into_iter()
        .filter(|r| r["type"] == "Microsoft.Authorization/roleAssignments")
        .collect();
    assert_eq!(assignments.len(), 1);
    assert_eq!(assignments[0]["properties"]["principalId"], principal);
    let used: Vec<String> = arm.operations_used().into_iter().map(|(o, _)| o).collect();
    assert_eq!(used, ["Deployments_CreateOrUpdate"]);
}

#[test]
fn preflight_failures_carry_their_causes_in_nested_details() {
    let arm = ArmDouble::start();
    arm.add_resource_group("rg", "westeurope", json!({}));
    arm.set_usage("westeurope", "standardDSv5Family", 8, 10);
    arm.deny_by_policy("no-public-ips", "Microsoft.Network/publicIPAddresses");
    let t = template(vec![
        scale_set("vmss", 2, "/i"),
        json!({ "type": "Microsoft.Network/publicIPAddresses", "apiVersion": "2025-07-01", "name": "ip", "location": "westeurope", "properties": {} }),
    ]);
    let r = client()
        .put(url(
            &arm,
            "/resourcegroups/rg/providers/Microsoft.Resources/deployments/d",
            RESOURCES,
        ))
        .bearer_auth(arm.token())
        .json(&json!({ "properties": { "mode": "Incremental", "template": t, "parameters": {} } }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"]["code"], "InvalidTemplateDeployment");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .ends_with("See inner errors for details."));
    let details = body["error"]["details"].as_array().unwrap();
    let codes: Vec<&str> = details
        .iter()
        .map(|d| d["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["RequestDisallowedByPolicy", "QuotaExceeded"]);
    assert_eq!(details[1]["target"], "standardDSv5Family");
    assert!(details[1]["message"]
        .as_str()
        .unwrap()
        .contains("Current Limit: 10, Current Usage: 8, Additional Required: 4"));
    assert!(
        arm.resources().is_empty(),
        "nothing is created after a preflight failure"
    );
}

#[test]
fn a_tag_filter_returns_resources_without_their_tags_and_lists_page() {
    let arm = ArmDouble::start();
    arm.add_resource_group("rg", "westeurope", json!({}));
    for i in 0..3 {
        arm.add_resource("rg", json!({ "type": "Microsoft.Network/publicIPAddresses", "name": format!("ip{i}"), "location": "westeurope", "tags": { "k": "v" } }));
    }
    arm.set_page_size(2);
    let list = format!(
        "{}&%24filter=tagName+eq+%27k%27+and+tagValue+eq+%27v%27",
        url(&arm, "/resourceGroups/rg/resources", RESOURCES)
    );
    let (_, first) = get(&arm, &list);
    assert_eq!(first["value"].as_array().unwrap().len(), 2);
    assert!(first["value"][0].get("tags").is_none(), "{first}");
    let (_, second) = get(&arm, first["nextLink"].as_str().unwrap());
    assert_eq!(second["value"].as_array().unwrap().len(), 1);
    assert!(second.get("nextLink").is_none());
    let (_, plain) = get(&arm, &url(&arm, "/resourceGroups/rg/resources", RESOURCES));
    assert_eq!(plain["value"][0]["tags"]["k"], "v");
}

#[test]
fn role_assignments_by_principal_include_scopes_above() {
    let arm = ArmDouble::start();
    arm.add_resource_group("rg", "westeurope", json!({}));
    let reader = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    arm.add_role_assignment(
        &format!("/subscriptions/{SUBSCRIPTION}"),
        "above",
        "p1",
        reader,
    );
    arm.add_role_assignment(
        &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg"),
        "at",
        "p1",
        reader,
    );
    arm.add_role_assignment(
        &format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/other"),
        "elsewhere",
        "p1",
        reader,
    );
    let list = format!(
        "{}&%24filter=principalId+eq+%27p1%27",
        url(
            &arm,
            "/resourceGroups/rg/providers/Microsoft.Authorization/roleAssignments",
            AUTHORIZATION
        )
    );
    let (status, body) = get(&arm, &list);
    assert_eq!(status, 200, "{body}");
    let mut names: Vec<&str> = body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["above", "at"]);
    assert_eq!(
        arm.operations_used()[0].0,
        "RoleAssignments_ListForResourceGroup"
    );
}

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl InstanceEvents for Events {
    fn instance_created(&self, i: &InstanceInfo) {
        self.0
            .lock()
            .unwrap()
            .push(format!("+{} {}", i.instance_id, i.computer_name));
    }
    fn instance_deleted(&self, i: &InstanceInfo, notified: bool) {
        self.0
            .lock()
            .unwrap()
            .push(format!("-{} {notified}", i.instance_id));
    }
}

#[test]
fn scale_sets_carry_instances_through_scaling_deletes_and_model_changes() {
    let arm = ArmDouble::start();
    let events = Arc::new(Events::default());
    arm.set_instance_events(events.clone());
    arm.add_resource_group("rg", "westeurope", json!({}));
    deploy(&arm, &template(vec![scale_set("vmss", 2, "/image-1")]));
    assert_eq!(*events.0.lock().unwrap(), ["+0 n-000000", "+1 n-000001"]);
    let vms = |query: &str| -> Vec<Value> {
        let (status, body) = get(&arm, &format!("{}{query}", url(&arm, "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss/virtualMachines", COMPUTE)));
        assert_eq!(status, 200, "{body}");
        body["value"].as_array().unwrap().clone()
    };
    let listed = vms("&%24expand=instanceView");
    assert_eq!(
        listed[0]["properties"]["osProfile"]["computerName"],
        "n-000000"
    );
    assert_eq!(
        listed[0]["properties"]["instanceView"]["statuses"][1]["code"],
        "PowerState/running"
    );
    assert!(listed[0]["properties"]["vmId"].as_str().unwrap().len() == 36);
    // Scale out by PATCH: a new instance with the current model.
    let r = client()
        .patch(url(
            &arm,
            "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss",
            COMPUTE,
        ))
        .bearer_auth(arm.token())
        .json(&json!({ "sku": { "capacity": 3 } }))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().contains_key("azure-asyncoperation"));
    assert_eq!(wait(&arm, r)["status"], "Succeeded");
    // A new model: a different image. Old instances are not on it.
    deploy(&arm, &template(vec![scale_set("vmss", 4, "/image-2")]));
    let old = vms("&%24filter=properties%2FlatestModelApplied+eq+false");
    let ids: Vec<&str> = old
        .iter()
        .map(|v| v["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["0", "1", "2"]);
    // manualupgrade brings instance 0 to the model; delete removes 1 and lowers the capacity.
    let post = |verb: &str, ids: &[&str]| {
        let r = client()
            .post(url(&arm, &format!("/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss/{verb}"), COMPUTE))
            .bearer_auth(arm.token())
            .json(&json!({ "instanceIds": ids }))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        assert!(
            r.headers().contains_key("location")
                && r.headers().contains_key("azure-asyncoperation")
        );
        wait(&arm, r)
    };
    post("manualupgrade", &["0"]);
    post("delete", &["1"]);
    let latest = vms("&%24filter=properties%2FlatestModelApplied+eq+true");
    let ids: Vec<&str> = latest
        .iter()
        .map(|v| v["instanceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["0", "3"]);
    let vmss = arm
        .resource_named("Microsoft.Compute/virtualMachineScaleSets", "vmss")
        .unwrap();
    assert_eq!(vmss["sku"]["capacity"], 3);
    assert_eq!(events.0.lock().unwrap().last().unwrap(), "-1 true");
    let (status, _) = get(&arm, &format!("{}&%24filter=name+eq+%27x%27", url(&arm, "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss/virtualMachines", COMPUTE)));
    assert_eq!(status, 400, "only the filters the spec allows");
}

#[test]
fn instances_report_the_time_the_doubles_clock_created_them() {
    let arm = ArmDouble::start();
    let now = Arc::new(Mutex::new(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_042_096_250),
    ));
    let clock = now.clone();
    arm.set_clock(Arc::new(move || *clock.lock().unwrap()));
    arm.add_resource_group("rg", "westeurope", json!({}));
    deploy(&arm, &template(vec![scale_set("vmss", 1, "/image-1")]));
    *now.lock().unwrap() += std::time::Duration::from_secs(90);
    deploy(&arm, &template(vec![scale_set("vmss", 2, "/image-1")]));
    let vms = |query: &str| -> Vec<Value> {
        let (status, body) = get(&arm, &format!("{}{query}", url(&arm, "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss/virtualMachines", COMPUTE)));
        assert_eq!(status, 200, "{body}");
        body["value"].as_array().unwrap().clone()
    };
    let created: Vec<String> = vms("")
        .iter()
        .map(|v| v["properties"]["timeCreated"].as_str().unwrap().to_string())
        .collect();
    // The spec example's form: seven fractional digits and a numeric offset.
    assert_eq!(
        created,
        [
            "2026-11-30T12:34:56.2500000+00:00",
            "2026-11-30T12:36:26.2500000+00:00"
        ]
    );
    let expanded = vms("&%24expand=instanceView");
    assert_eq!(
        expanded[1]["properties"]["instanceView"]["statuses"][0]["time"],
        created[1].as_str()
    );
    arm.forget_time_created("vmss", "1");
    let listed = vms("");
    assert!(listed[0]["properties"]["timeCreated"].is_string());
    assert!(listed[1]["properties"].get("timeCreated").is_none());
}

#[test]
fn faults_answer_the_next_matching_request() {
    let arm = ArmDouble::start();
    arm.inject(Fault::any(FaultKind::Throttle {
        retry_after_secs: 7,
    }));
    arm.inject(Fault::on(
        "GET",
        "/resourcegroups/",
        FaultKind::DropConnection,
    ));
    let c = client();
    let r = c
        .get(url(&arm, "/resourcegroups/rg", RESOURCES))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert!(c
        .get(url(&arm, "/resourcegroups/rg", RESOURCES))
        .send()
        .is_err());
    let (status, _) = get(&arm, &url(&arm, "/resourcegroups/rg", RESOURCES));
    assert_eq!(status, 404);
}

#[test]
fn the_login_double_checks_the_client_credentials() {
    let login = LoginDouble::start("app", "secret", "tok".into());
    let c = client();
    let post = |secret: &str| {
        c.post(format!("{}/tenant/oauth2/v2.0/token", login.url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "app"),
                ("client_secret", secret),
                ("scope", "https://management.azure.com/.default"),
            ])
            .send()
            .unwrap()
    };
    let ok: Value = post("secret").json().unwrap();
    assert_eq!(ok["access_token"], "tok");
    let bad = post("wrong");
    assert_eq!(bad.status().as_u16(), 401);
    assert_eq!(bad.json::<Value>().unwrap()["error"], "invalid_client");
}

#[test]
fn expressions_parse_and_unknown_functions_are_refused() {
    let state = State::new();
    let template = json!({});
    let location = json!("westeurope");
    let ctx = expr::Context {
        state: &state,
        group: "rg",
        group_location: &location,
        template: &template,
        parameters: &json!({}),
    };
    assert_eq!(
        ctx.eval_value(&json!("[resourceId('Microsoft.Network/loadBalancers/backendAddressPools', 'lb', 'it''s')]")).unwrap(),
        json!(format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb/backendAddressPools/it's"))
    );
    assert!(ctx
        .eval_value(&json!("[uniqueString('x')]"))
        .unwrap_err()
        .contains("uniqueString"));
    assert_eq!(
        ctx.eval_value(&json!("[[literal]")).unwrap(),
        json!("[literal]")
    );
}

const NETWORK: &str = "2025-07-01";

/// Subnets_Get / SecurityRules_Get answer 200 with the child as its parent holds it, and
/// Subnets_Delete / SecurityRules_Delete answer 202 + Location (final-state-via: location,
/// virtualNetwork.json and networkSecurityGroup.json 2025-07-01), after which the child is gone
/// from the parent and a GET is 404; a DELETE of a child that is gone is 204.
#[test]
fn child_resources_are_read_and_deleted_by_their_own_id() {
    let arm = ArmDouble::start();
    arm.add_resource_group("rg", "westeurope", json!({}));
    let t = template(vec![
        json!({ "type": "Microsoft.Network/virtualNetworks", "apiVersion": NETWORK, "name": "vnet", "location": "westeurope",
                "properties": { "addressSpace": { "addressPrefixes": ["10.0.0.0/16"] } } }),
        json!({ "type": "Microsoft.Network/virtualNetworks/subnets", "apiVersion": NETWORK, "name": "vnet/nodes",
                "dependsOn": ["[resourceId('Microsoft.Network/virtualNetworks', 'vnet')]"],
                "properties": { "addressPrefix": "10.0.1.0/24" } }),
        json!({ "type": "Microsoft.Network/networkSecurityGroups", "apiVersion": NETWORK, "name": "nsg", "location": "westeurope",
                "properties": { "securityRules": [{ "name": "ssh", "properties": { "priority": 100, "access": "Allow", "direction": "Inbound", "protocol": "Tcp" } }] } }),
    ]);
    assert_eq!(deploy(&arm, &t)["status"], "Succeeded");
    // An operator's subnet next to ours.
    let bastion = arm.add_resource(
        "rg",
        json!({ "type": "Microsoft.Network/virtualNetworks/subnets", "name": "vnet/bastion", "properties": { "addressPrefix": "10.0.9.0/24" } }),
    );
    let subnet =
        "/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/nodes";
    let rule = "/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/nsg/securityRules/ssh";
    let (status, body) = get(&arm, &url(&arm, subnet, NETWORK));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "nodes");
    assert!(body["id"].as_str().unwrap().ends_with("/subnets/nodes"));
    assert_eq!(body["properties"]["addressPrefix"], "10.0.1.0/24");
    assert_eq!(body["properties"]["provisioningState"], "Succeeded");
    let (status, body) = get(&arm, &url(&arm, rule, NETWORK));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["properties"]["priority"], 100);
    let (status, body) = get(
        &arm,
        &format!("{}{bastion}?api-version={NETWORK}", arm.url()),
    );
    assert_eq!((status, body["name"].as_str()), (200, Some("bastion")));

    for (path, collection, parent) in [(subnet, "subnets", "vnet"), (rule, "securityRules", "nsg")]
    {
        let r = client()
            .delete(url(&arm, path, NETWORK))
            .bearer_auth(arm.token())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        assert!(r.headers().contains_key("location"), "{:?}", r.headers());
        // Not gone before the operation ends.
        assert_eq!(get(&arm, &url(&arm, path, NETWORK)).0, 200);
        wait(&arm, r);
        let (status, body) = get(&arm, &url(&arm, path, NETWORK));
        assert_eq!(status, 404, "{body}");
        let kind = if parent == "vnet" {
            "Microsoft.Network/virtualNetworks"
        } else {
            "Microsoft.Network/networkSecurityGroups"
        };
        let held = arm.resource_named(kind, parent).unwrap();
        assert!(held["properties"][collection]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !path.ends_with(&format!("/{}", c["name"].as_str().unwrap()))));
        let r = client()
            .delete(url(&arm, path, NETWORK))
            .bearer_auth(arm.token())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 204);
    }
    // The operator's subnet is still there; removed out of band, it is gone too.
    assert_eq!(
        get(
            &arm,
            &format!("{}{bastion}?api-version={NETWORK}", arm.url())
        )
        .0,
        200
    );
    arm.remove_resource(&bastion);
    assert_eq!(
        get(
            &arm,
            &format!("{}{bastion}?api-version={NETWORK}", arm.url())
        )
        .0,
        404
    );
    let used: Vec<String> = arm.operations_used().into_iter().map(|(o, _)| o).collect();
    for op in [
        "Subnets_Get",
        "Subnets_Delete",
        "SecurityRules_Get",
        "SecurityRules_Delete",
    ] {
        assert!(used.iter().any(|u| u == op), "{op}: {used:?}");
    }
}

/// Deployments_Delete (resources.json, INDEX.md fact 3): 202 + Location, polled to 204, then the
/// record is gone (Deployments_Get 404) and the resources it made stay.
#[test]
fn a_deleted_deployment_record_is_gone_and_its_resources_stay() {
    let arm = ArmDouble::start();
    arm.set_polls(2);
    arm.add_resource_group("rg", "westeurope", json!({}));
    let t = template(vec![
        json!({ "type": "Microsoft.Network/applicationSecurityGroups", "apiVersion": NETWORK, "name": "asg", "location": "westeurope", "properties": {} }),
    ]);
    assert_eq!(deploy(&arm, &t)["status"], "Succeeded");
    let path = "/resourcegroups/rg/providers/Microsoft.Resources/deployments/d";
    assert_eq!(get(&arm, &url(&arm, path, RESOURCES)).0, 200);
    let r = client()
        .delete(url(&arm, path, RESOURCES))
        .bearer_auth(arm.token())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert!(r.headers().contains_key("location"));
    assert!(!r.headers().contains_key("azure-asyncoperation"));
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let mut statuses = Vec::new();
    loop {
        let s = client()
            .get(&location)
            .bearer_auth(arm.token())
            .send()
            .unwrap()
            .status()
            .as_u16();
        statuses.push(s);
        if s != 202 {
            break;
        }
    }
    assert_eq!(statuses, [202, 202, 204]);
    let (status, body) = get(&arm, &url(&arm, path, RESOURCES));
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("DeploymentNotFound"))
    );
    assert!(arm
        .resource_named("Microsoft.Network/applicationSecurityGroups", "asg")
        .is_some());
    let r = client()
        .delete(url(&arm, path, RESOURCES))
        .bearer_auth(arm.token())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
}
