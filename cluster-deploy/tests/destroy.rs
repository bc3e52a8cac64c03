//! destroy against the ARM double: exactly what the cluster's template declares (children
//! before their parents), the role assignments its deployments made (from every record, or
//! without one), what an earlier deployment made that today's file dropped, nothing the
//! operator added (a subnet or NSG rule inside ours keeps the parent), and a re-run after a
//! partial destroy.

mod common;

use serde_json::{json, Value};
use support::doubles::arm::{Fault, FaultKind, OperationFailure, CALLER_OBJECT_ID};

use common::azure::{count, setup};

/// Deploys `template` as deployment `name` in the group through the double's REST API, as
/// another tool (or another cluster's cluster-deploy) would, and polls it to its end.
fn deploy_as_someone_else(env: &common::azure::Env, name: &str, template: Value, tags: Value) {
    let url = format!(
        "{}/subscriptions/{}/resourcegroups/nomad-example/providers/Microsoft.Resources/deployments/{name}?api-version=2025-04-01",
        env.arm.url(),
        env.arm.subscription()
    );
    let client = reqwest::blocking::Client::new();
    let put = client
        .put(&url)
        .bearer_auth(env.arm.token())
        .json(&json!({
            "properties": { "mode": "Incremental", "template": template, "parameters": {} },
            "tags": tags,
        }))
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    // A long-running PUT: its Azure-AsyncOperation URL is polled until the operation ends
    // (resources.json `x-ms-long-running-operation`, REFERENCE.md).
    let status_url = put
        .headers()
        .get("azure-asyncoperation")
        .expect("Azure-AsyncOperation")
        .to_str()
        .unwrap()
        .to_string();
    for _ in 0..100 {
        let got: Value = client
            .get(&status_url)
            .bearer_auth(env.arm.token())
            .send()
            .unwrap()
            .json()
            .unwrap();
        match got["status"].as_str() {
            Some("Succeeded") => return,
            Some("Failed") | Some("Canceled") => panic!("{got}"),
            _ => {}
        }
    }
    panic!("deployment {name} never finished");
}

/// Cluster `nomad-example-vault` shares the group: its main deployment bears the name an
/// older cluster-deploy gave `nomad-example`'s vault deployment, and its resources are named
/// `nomad-example-vault-...`, which starts with `nomad-example-`. Destroying `nomad-example`
/// must not take them, nor the other cluster's role assignment, tagged record or not.
#[test]
fn another_clusters_deployment_under_our_old_vault_deployment_name_is_left_alone() {
    for tags in [
        json!({ "nomad-cluster": "nomad-example-vault" }),
        // A record made before cluster-deploy tagged its deployments: judged by its shape.
        json!({}),
    ] {
        let env = setup();
        env.apply();
        let reader = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
        let other = json!({
            "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
            "contentVersion": "1.0.0.0",
            "resources": [
                {
                    "type": "Microsoft.Network/publicIPAddresses",
                    "apiVersion": "2025-07-01",
                    "name": "nomad-example-vault-lb-ip",
                    "location": "westeurope",
                    "tags": { "nomad-cluster": "nomad-example-vault" },
                    "sku": { "name": "Standard" },
                    "properties": { "publicIPAllocationMethod": "Static" }
                },
                {
                    "type": "Microsoft.Authorization/roleAssignments",
                    "apiVersion": "2022-04-01",
                    "name": "[guid(resourceGroup().id, 'nomad-example-vault-servers')]",
                    "properties": {
                        "principalId": support::doubles::arm::CALLER_OBJECT_ID,
                        "principalType": "ServicePrincipal",
                        "roleDefinitionId": format!("[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{reader}')]")
                    }
                }
            ]
        });
        deploy_as_someone_else(&env, "nomad-example-vault", other, tags.clone());
        let ip_id = env
            .arm
            .resource_named(
                "Microsoft.Network/publicIPAddresses",
                "nomad-example-vault-lb-ip",
            )
            .expect("the other cluster's address")["id"]
            .as_str()
            .unwrap()
            .to_string();
        let assignments_before = count_role_assignments(&env);

        let run = env.run(&["destroy", "--yes"]);
        assert_eq!(run.code, 0, "{tags}: {}\n{}", run.stdout, run.stderr);
        assert!(
            env.arm
                .resource_named(
                    "Microsoft.Network/publicIPAddresses",
                    "nomad-example-vault-lb-ip"
                )
                .is_some(),
            "{tags}: the other cluster's address was deleted:\n{}",
            run.stderr
        );
        assert!(
            run.stdout.contains(&ip_id),
            "listed as left: {}",
            run.stdout
        );
        assert!(
            run.stderr
                .contains("deployment nomad-example-vault in resource group nomad-example is not cluster nomad-example's"),
            "{tags}: {}",
            run.stderr
        );
        // Ours are gone (Reader x2, Secrets Officer, Secrets User x7), the other's stays.
        assert_eq!(
            count_role_assignments(&env),
            assignments_before - 10,
            "{tags}: {}",
            run.stdout
        );
        assert!(
            run.stdout.contains("deleted 30 resources"),
            "{tags}: {}",
            run.stdout
        );
    }
}

fn count_role_assignments(env: &common::azure::Env) -> usize {
    env.arm
        .resources()
        .iter()
        .filter(|r| r["type"] == "Microsoft.Authorization/roleAssignments")
        .count()
}

#[test]
fn destroy_asks_first_and_leaves_another_clusters_resources() {
    let env = setup();
    env.apply();
    env.arm.set_page_size(3);
    let other = env.arm.add_resource(
        "nomad-example",
        json!({ "type": "Microsoft.Network/publicIPAddresses", "name": "keep-me", "location": "westeurope", "tags": { "nomad-cluster": "another" }, "properties": {} }),
    );
    // A wrong confirmation deletes nothing.
    let mut cmd = env.command(&["destroy"]);
    cmd.write_stdin("nomad-prod\n");
    let run = env.run_with(cmd);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("not confirmed"), "{}", run.stderr);
    assert_eq!(count(&env.arm, "DELETE", "/"), 0);

    let mut cmd = env.command(&["destroy"]);
    cmd.write_stdin("nomad-example\n");
    let run = env.run_with(cmd);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let left: Vec<String> = env
        .arm
        .resources()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(left, [other], "only the other cluster's address is left");
    // The group held something else, so it stays.
    assert!(env.arm.resource_group("nomad-example").is_some());
    // Ten tagged resources (the Key Vault among them), our subnet and the nine rules of our
    // NSG (each deleted by its own id before its parent), the two Reader assignments of the
    // scale sets' identities, the operator's Secrets Officer assignment on the vault and the
    // seven per-secret Secrets User assignments (servers 4, clients 3).
    assert!(
        run.stdout.contains("deleted 30 resources"),
        "{}",
        run.stdout
    );
    // The vault is soft-deleted, and the operator is told how to get it back or purge it.
    let kv = env.stack.vault.clone().unwrap();
    assert!(env.arm.deleted_vault(&kv).is_some());
    for line in [
        format!("Key Vault {kv} is soft-deleted"),
        "cluster-deploy apply --recover-vault".to_string(),
        "cluster-deploy destroy --purge-vault".to_string(),
    ] {
        assert!(run.stdout.contains(&line), "{line}: {}", run.stdout);
    }
}

#[test]
fn destroy_removes_a_group_it_created_once_empty() {
    let env = setup();
    env.apply();
    let run = env.run(&["destroy", "--yes", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["resource_group_deleted"], true);
    assert!(env.arm.resource_group("nomad-example").is_none());
    assert!(env.arm.resources().is_empty());
}

#[test]
fn destroy_removes_what_the_template_declares_and_lists_the_rest() {
    let env = setup();
    env.apply();
    // A disk the operator added, which inherited the cluster tag through Azure Policy, and a
    // Reader assignment of a scale set identity at the subscription, made by someone else.
    let disk = env.arm.add_resource(
        "nomad-example",
        json!({ "type": "Microsoft.Compute/disks", "name": "scratch", "location": "westeurope", "tags": { "nomad-cluster": "nomad-example" }, "properties": {} }),
    );
    let principal = env
        .arm
        .resource_named(
            "Microsoft.Compute/virtualMachineScaleSets",
            "nomad-example-servers",
        )
        .unwrap()["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let above = env.arm.add_role_assignment(
        &format!("/subscriptions/{}", env.arm.subscription()),
        "7d1f0000-0000-4000-8000-000000000001",
        &principal,
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    );
    let run = env.run(&["destroy", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let mut left: Vec<String> = env
        .arm
        .resources()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    left.sort();
    let mut expected = vec![disk.clone(), above];
    expected.sort();
    assert_eq!(left, expected, "exactly the template's resources are gone");
    // The same thirty as in the test above.
    assert!(
        run.stdout.contains("deleted 30 resources"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&disk),
        "the disk is listed as left: {}",
        run.stdout
    );
    // The group still holds the disk, so it stays.
    assert!(env.arm.resource_group("nomad-example").is_some());
}

#[test]
fn a_destroy_interrupted_part_way_is_finished_by_a_rerun() {
    let env = setup();
    env.apply();
    // The load balancer's deletion keeps failing: destroy stops there.
    for _ in 0..10 {
        env.arm.inject(Fault::on(
            "DELETE",
            "/loadBalancers/",
            FaultKind::ServerError(500),
        ));
    }
    let run = env.run(&["destroy", "--yes"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("loadBalancers/nomad-example-lb"),
        "{}",
        run.stderr
    );
    assert!(env
        .arm
        .resource_named(
            "Microsoft.Compute/virtualMachineScaleSets",
            "nomad-example-servers"
        )
        .is_none());
    let run = env.run(&["destroy", "--yes", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["resource_group_deleted"], true, "{out}");
    assert!(env.arm.resources().is_empty());
}

const VNET: &str = "nomad-example-vnet";
const NSG: &str = "nomad-example-nsg";

/// The position of the first DELETE whose path ends with `suffix` (case-insensitive).
fn delete_at(env: &common::azure::Env, suffix: &str) -> Option<usize> {
    let suffix = suffix.to_ascii_lowercase();
    env.arm.requests().iter().position(|r| {
        r.method == "DELETE"
            && r.path
                .trim_end_matches('/')
                .to_ascii_lowercase()
                .ends_with(&suffix)
    })
}

/// The ids of the role assignments of a principal, as the double holds them.
fn assignments_of(env: &common::azure::Env, principal: &str) -> Vec<String> {
    env.arm
        .resources()
        .iter()
        .filter(|r| r["type"] == "Microsoft.Authorization/roleAssignments")
        .filter(|r| r["properties"]["principalId"] == principal)
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn principal_of(env: &common::azure::Env, scale_set: &str) -> String {
    env.arm
        .resource_named("Microsoft.Compute/virtualMachineScaleSets", scale_set)
        .unwrap_or_else(|| panic!("scale set {scale_set}"))["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn deleted(env: &common::azure::Env, id: &str) -> bool {
    env.arm
        .requests()
        .iter()
        .any(|r| r.method == "DELETE" && r.path.eq_ignore_ascii_case(id))
}

/// The names in a VNet's `subnets` or an NSG's `securityRules`, as the double holds them.
fn children(env: &common::azure::Env, kind: &str, name: &str, collection: &str) -> Vec<String> {
    let parent = env
        .arm
        .resource_named(kind, name)
        .unwrap_or_else(|| panic!("{kind} {name} is gone"));
    parent["properties"][collection]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn our_subnet_and_rules_are_deleted_before_their_parents() {
    let env = setup();
    env.apply();
    let rules = children(
        &env,
        "Microsoft.Network/networkSecurityGroups",
        NSG,
        "securityRules",
    );
    assert!(!rules.is_empty());
    let run = env.run(&["destroy", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let vnet = delete_at(&env, &format!("/virtualNetworks/{VNET}")).expect("the VNet deleted");
    let subnet = delete_at(
        &env,
        &format!("/virtualNetworks/{VNET}/subnets/nomad-example-subnet"),
    )
    .expect("our subnet deleted by its own id (Subnets_Delete)");
    assert!(subnet < vnet, "the subnet before its VNet");
    let nsg = delete_at(&env, &format!("/networkSecurityGroups/{NSG}")).expect("the NSG deleted");
    for rule in &rules {
        let at = delete_at(
            &env,
            &format!("/networkSecurityGroups/{NSG}/securityRules/{rule}"),
        )
        .unwrap_or_else(|| panic!("rule {rule} deleted by its own id (SecurityRules_Delete)"));
        assert!(at < nsg, "rule {rule} before its NSG");
    }
    let used: Vec<String> = env
        .arm
        .operations_used()
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    for op in [
        "Subnets_Get",
        "Subnets_Delete",
        "SecurityRules_Get",
        "SecurityRules_Delete",
    ] {
        assert!(used.iter().any(|u| u == op), "{op}: {used:?}");
    }
    assert!(env.arm.resource_group("nomad-example").is_none());
}

#[test]
fn a_vnet_or_nsg_holding_what_the_operator_added_is_kept_with_it() {
    let env = setup();
    env.apply();
    let bastion = env.arm.add_resource(
        "nomad-example",
        json!({ "type": "Microsoft.Network/virtualNetworks/subnets", "name": format!("{VNET}/bastion"), "properties": { "addressPrefix": "10.0.99.0/24" } }),
    );
    let rdp = env.arm.add_resource(
        "nomad-example",
        json!({ "type": "Microsoft.Network/networkSecurityGroups/securityRules", "name": format!("{NSG}/operator-rdp"),
                "properties": { "priority": 4000, "access": "Allow", "direction": "Inbound", "protocol": "Tcp",
                                "sourceAddressPrefix": "198.51.100.7/32", "sourcePortRange": "*",
                                "destinationAddressPrefix": "*", "destinationPortRange": "3389" } }),
    );
    let run = env.run(&["destroy", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // What the operator added, and the parents holding it, are still there.
    assert_eq!(
        children(&env, "Microsoft.Network/virtualNetworks", VNET, "subnets"),
        ["bastion"]
    );
    assert_eq!(
        children(
            &env,
            "Microsoft.Network/networkSecurityGroups",
            NSG,
            "securityRules"
        ),
        ["operator-rdp"]
    );
    let mut left: Vec<String> = env
        .arm
        .resources()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    left.sort();
    assert_eq!(left, [NSG, VNET], "everything else of ours is gone");
    assert!(env.arm.resource_group("nomad-example").is_some());
    // Listed, with the reason.
    for needle in [&bastion, &rdp] {
        assert!(
            run.stdout.contains(needle.as_str()),
            "{needle}: {}",
            run.stdout
        );
    }
    for parent in [VNET, NSG] {
        assert!(
            run.stdout.lines().any(|l| l.starts_with("Kept ")
                && l.contains(&format!("/{parent}:"))
                && l.contains("does not declare")),
            "{parent}: {}",
            run.stdout
        );
    }
    // The operator removes them; a re-run finishes.
    env.arm.remove_resource(&bastion);
    env.arm.remove_resource(&rdp);
    let run = env.run(&["destroy", "--yes", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["resource_group_deleted"], true, "{out}");
    assert_eq!(out["kept_parents"], json!([]), "{out}");
    assert!(env.arm.resources().is_empty());
}

/// Deployments_Delete through the double's HTTP API (202 + Location, polled to its end).
fn delete_deployment(env: &common::azure::Env, name: &str) {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let url = format!(
        "{}/subscriptions/{}/resourcegroups/nomad-example/providers/Microsoft.Resources/deployments/{name}?api-version=2025-04-01",
        env.arm.url(),
        env.arm.subscription()
    );
    let r = client
        .delete(&url)
        .bearer_auth(env.arm.token())
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{name}");
    let location = r.headers()["location"].to_str().unwrap().to_string();
    loop {
        let r = client
            .get(&location)
            .bearer_auth(env.arm.token())
            .send()
            .unwrap();
        if r.status().as_u16() != 202 {
            assert_eq!(r.status().as_u16(), 204);
            break;
        }
    }
}

#[test]
fn without_deployment_records_the_scale_sets_assignments_are_still_found() {
    let env = setup();
    env.apply();
    let mut ours = Vec::new();
    for set in ["nomad-example-servers", "nomad-example-clients"] {
        ours.extend(assignments_of(&env, &principal_of(&env, set)));
    }
    // Reader at the group and Secrets User on each secret its role reads (servers 4, clients 3).
    assert_eq!(ours.len(), 9, "{ours:?}");
    delete_deployment(&env, "nomad-example");
    delete_deployment(&env, "nomad-example.vault");
    assert!(env.arm.deployments().is_empty());
    let run = env.run(&["destroy", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for id in &ours {
        assert!(deleted(&env, id), "{id} was not deleted:\n{}", run.stdout);
    }
    assert!(env.arm.resource_group("nomad-example").is_none());
}

#[test]
fn without_deployment_records_the_operators_secrets_officer_on_the_vault_is_still_found() {
    let env = setup();
    env.apply();
    let operator = assignments_of(&env, CALLER_OBJECT_ID);
    // Apply gave the principal it runs as (its Key Vault token's `oid`) Secrets Officer on the
    // vault, and nothing else.
    assert_eq!(operator.len(), 1, "{operator:?}");
    let officer = operator[0].clone();
    assert!(
        officer
            .to_ascii_lowercase()
            .contains("/providers/microsoft.keyvault/vaults/"),
        "{officer}"
    );
    // The operator's own assignments elsewhere are not ours: Contributor at the group, and
    // Secrets Officer on one secret of the vault (granted by hand).
    let group_scope = format!(
        "/subscriptions/{}/resourceGroups/nomad-example",
        env.arm.subscription()
    );
    let contributor = env.arm.add_role_assignment(
        &group_scope,
        "7d1f0000-0000-4000-8000-0000000000c1",
        CALLER_OBJECT_ID,
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
    );
    let vault = officer
        .split("/providers/Microsoft.Authorization/")
        .next()
        .unwrap()
        .to_string();
    let on_a_secret = env.arm.add_role_assignment(
        &format!("{vault}/secrets/nomad-gossip-key"),
        "7d1f0000-0000-4000-8000-0000000000c2",
        CALLER_OBJECT_ID,
        "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    );
    delete_deployment(&env, "nomad-example");
    delete_deployment(&env, "nomad-example.vault");
    let run = env.run(&["destroy", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(deleted(&env, &officer), "{officer}:\n{}", run.stdout);
    assert!(!deleted(&env, &contributor), "{}", run.stdout);
    assert!(!deleted(&env, &on_a_secret), "{}", run.stdout);
}

#[test]
fn assignments_are_found_when_the_last_deployment_failed_before_them() {
    let env = setup();
    env.apply();
    let mut ours = Vec::new();
    for set in ["nomad-example-servers", "nomad-example-clients"] {
        ours.extend(assignments_of(&env, &principal_of(&env, set)));
    }
    assert_eq!(ours.len(), 9, "{ours:?}");
    // A re-apply whose scale sets fail: the role assignments after them are never started, and
    // this record replaces the one that named them.
    env.arm.fail_next_deployment(vec![]);
    env.arm.fail_next_deployment(vec![OperationFailure::new(
        "Microsoft.Compute/virtualMachineScaleSets",
        None,
        "OperationNotAllowed",
        "Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota.",
    )]);
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    let last = env
        .arm
        .deployments()
        .into_iter()
        .rev()
        .find(|d| d.name == "nomad-example")
        .unwrap();
    assert_eq!(last.state, "Failed");
    let run = env.run(&["destroy", "--yes"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for id in &ours {
        assert!(deleted(&env, id), "{id} was not deleted:\n{}", run.stdout);
    }
    assert!(env.arm.resource_group("nomad-example").is_none());
}

const TWO_POOLS: &str = r#"
[[client_pool]]
name          = "web"
instance_size = "Standard_D4s_v5"
count         = 3

[[client_pool]]
name          = "batch"
instance_size = "Standard_D4s_v5"
count         = 2
"#;

const BATCH: &str = r#"
[[client_pool]]
name          = "batch"
instance_size = "Standard_D4s_v5"
count         = 2
"#;

#[test]
fn a_pool_removed_from_the_file_after_apply_is_deleted_with_its_assignments() {
    let env = common::azure::setup_with(
        &["num_clients = DROP", "client_instance_size = DROP"],
        TWO_POOLS,
    );
    env.apply();
    let batch = env
        .arm
        .resource_named(
            "Microsoft.Compute/virtualMachineScaleSets",
            "nomad-example-batch",
        )
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let batch_assignments = assignments_of(&env, &principal_of(&env, "nomad-example-batch"));
    // Reader at the group and Secrets User on the client secrets.
    assert!(batch_assignments.len() >= 2, "{batch_assignments:?}");
    // The operator drops the pool from the file, and destroys.
    let text = std::fs::read_to_string(&env.config).unwrap();
    assert!(text.contains(BATCH));
    std::fs::write(&env.config, text.replace(BATCH, "")).unwrap();
    let run = env.run(&["destroy", "--yes", "--json"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        out["deleted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == batch.as_str()),
        "{out}"
    );
    assert_eq!(out["kept"], json!([]), "{out}");
    for id in &batch_assignments {
        assert!(deleted(&env, id), "{id}: {out}");
    }
    assert_eq!(out["resource_group_deleted"], true, "{out}");
    assert!(env.arm.resources().is_empty());
}
