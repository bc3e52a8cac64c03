//! plan's what-if and apply against the ARM, token, Key Vault and Nomad API doubles on
//! 127.0.0.1: what-if (create, ignore, no change after apply, modify after a count change);
//! apply (resource group, Incremental deployment, long-running operation, the template and the
//! boot scripts sent, faults it survives, a failed deployment's per-resource errors,
//! PrincipalNotFound, ARM's nested errors) and its warning before a what-if removal of what the
//! operator added. (The checks before deploying: tests/azure_preflight.rs; destroy:
//! tests/destroy.rs; the shared environment, which keeps secrets out of every output:
//! tests/common/azure.rs.)

mod common;

use serde_json::{json, Value};
use support::doubles::arm::{Fault, FaultKind, OperationFailure};

use common::azure::{count, setup};

#[test]
fn plan_with_credentials_runs_what_if() {
    let env = setup();
    // No resource group yet: nothing to compare with.
    let run = env.run(&["plan"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("resource group nomad-example does not exist yet"),
        "{}",
        run.stdout
    );
    assert_eq!(count(&env.arm, "POST", "/whatIf"), 0);

    env.arm
        .add_resource_group("nomad-example", "westeurope", json!({}));
    env.arm.add_resource(
        "nomad-example",
        json!({ "type": "Microsoft.Network/publicIPAddresses", "name": "someone-elses-ip", "location": "westeurope", "tags": {}, "properties": {} }),
    );
    let run = env.run(&["plan"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains(
            "+ Create     Microsoft.Compute/virtualMachineScaleSets/nomad-example-servers"
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("* Ignore     Microsoft.Network/publicIPAddresses/someone-elses-ip"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("21 to create, 0 to modify, 0 to delete"),
        "{}",
        run.stdout
    );
    let what_if: Vec<_> = env
        .arm
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/whatIf"))
        .collect();
    assert_eq!(what_if.len(), 1);
    let body: Value = serde_json::from_str(&what_if[0].body).unwrap();
    assert_eq!(body["properties"]["mode"], "Incremental");

    // After an apply, what-if sees no change; a changed client count is a modify.
    env.apply();
    let run = env.run(&["plan", "--json"]);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    let changes = plan["what_if"]["changes"].as_array().unwrap();
    assert!(
        changes
            .iter()
            .filter(|c| c["change"] != "Ignore")
            .all(|c| c["change"] == "NoChange"),
        "{changes:?}"
    );
    let text = std::fs::read_to_string(&env.config)
        .unwrap()
        .replace("num_clients          = 6", "num_clients          = 8");
    std::fs::write(&env.config, text).unwrap();
    let run = env.run(&["plan", "--json"]);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    let modified: Vec<&Value> = plan["what_if"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"] == "Modify")
        .collect();
    assert_eq!(modified.len(), 1, "{modified:?}");
    assert!(modified[0]["resource"]
        .as_str()
        .unwrap()
        .ends_with("nomad-example-clients"));
    assert!(modified[0]["properties"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "~ sku"));
}

#[test]
fn apply_creates_the_group_and_deploys_incrementally() {
    let env = setup();
    let run = env.apply();
    let group = env
        .arm
        .resource_group("nomad-example")
        .expect("the resource group was created");
    assert_eq!(group["location"], "westeurope");
    assert_eq!(group["tags"]["nomad-cluster"], "nomad-example");
    let deployments = env.arm.deployments();
    let names: Vec<&str> = deployments.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["nomad-example.vault", "nomad-example"],
        "the vault first"
    );
    let d = &deployments[1];
    assert_eq!(d.name, "nomad-example");
    assert_eq!(d.state, "Succeeded");
    assert_eq!(d.request["properties"]["mode"], "Incremental");
    // The template sent is the one plan writes; its only parameters are not secrets.
    let file = cluster_deploy::config::load(&env.config).unwrap();
    let expected =
        cluster_deploy::template::render(&cluster_deploy::model::Cluster::from_file(&file));
    assert_eq!(d.request["properties"]["template"], expected);
    assert_eq!(
        d.request["properties"]["parameters"]["operatorObjectId"]["value"],
        support::doubles::arm::CALLER_OBJECT_ID
    );
    for d in &deployments {
        env.stack
            .assert_no_secret("the deployment request", &d.request.to_string());
    }
    // Every call carried the token and an api-version.
    for r in env.arm.requests() {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {}", env.arm.token()).as_str()),
            "{}",
            r.path
        );
        assert!(r.query_param("api-version").is_some(), "{}", r.path);
    }
    // The servers' boot script, as ARM has it: it names the vault, nothing more.
    let kv = env.stack.vault.clone().unwrap();
    let server = env.arm.custom_data("nomad-example-servers").unwrap();
    assert!(server.ends_with(&format!("exec /opt/nomad/bin/run-nomad --server --num-servers 3 --scale-set-name nomad-example-servers --key-vault {kv} --tls-from-key-vault --gossip-key-from-key-vault --acl --datacenter dc1 --region global\n")), "{server}");
    let client = env.arm.custom_data("nomad-example-clients").unwrap();
    env.stack.assert_no_secret("server custom data", &server);
    env.stack.assert_no_secret("client custom data", &client);
    // The Reader assignments name the scale sets' identities.
    let vmss = env
        .arm
        .resource_named(
            "Microsoft.Compute/virtualMachineScaleSets",
            "nomad-example-servers",
        )
        .unwrap();
    let assignments: Vec<Value> = env
        .arm
        .resources()
        .into_iter()
        .filter(|r| {
            r["type"] == "Microsoft.Authorization/roleAssignments"
                && !r["properties"]["scope"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Microsoft.KeyVault")
        })
        .collect();
    assert_eq!(assignments.len(), 2);
    assert!(assignments
        .iter()
        .any(|a| a["properties"]["principalId"] == vmss["identity"]["principalId"]));
    assert!(assignments
        .iter()
        .all(|a| a["properties"]["principalType"] == "ServicePrincipal"
            && a["properties"]["roleDefinitionId"]
                .as_str()
                .unwrap()
                .ends_with("/acdd72a7-3385-48ef-bd42-f606fba81ae7")));
    // Progress was reported, and the outputs printed.
    assert!(
        run.stderr.contains("deployment nomad-example: Running"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("succeeded Microsoft.Compute/virtualMachineScaleSets nomad-example-servers"),
        "{}",
        run.stderr
    );
    assert!(
        run.stdout
            .contains("server_scale_set       nomad-example-servers"),
        "{}",
        run.stdout
    );
    // A second apply keeps the group and redeploys the same thing; even trace logging (-vv)
    // shows no secret (run_with checks every output).
    let mut cmd = env.command(&["apply"]);
    cmd.arg("-v");
    let run = env.run_with(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("TRACE") || run.stderr.contains("DEBUG"),
        "{}",
        run.stderr
    );
    let group_puts = env
        .arm
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PUT"
                && r.path
                    .to_lowercase()
                    .ends_with("/resourcegroups/nomad-example")
        })
        .count();
    assert_eq!(group_puts, 1, "the group is created once");
}

#[test]
fn apply_survives_throttling_server_errors_conflicts_and_dropped_connections() {
    let env = setup();
    env.arm.set_polls(3);
    env.arm.inject(Fault::any(FaultKind::Throttle {
        retry_after_secs: 1,
    }));
    env.arm.inject(Fault::on(
        "PUT",
        "/resourcegroups/",
        FaultKind::ServerError(500),
    ));
    env.arm
        .inject(Fault::on("PUT", "/deployments/", FaultKind::DropConnection));
    env.arm.inject(Fault::on(
        "PUT",
        "/deployments/",
        FaultKind::AnotherOperationInProgress,
    ));
    env.arm.inject(Fault::on(
        "GET",
        "/operationStatuses/",
        FaultKind::ServerError(503),
    ));
    env.arm.inject(Fault::on(
        "GET",
        "/operationStatuses/",
        FaultKind::DropConnection,
    ));
    let started = std::time::Instant::now();
    let run = env.apply();
    // The 429's Retry-After was honoured.
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(env.arm.deployments().last().unwrap().state, "Succeeded");
    for what in ["429", "500", "AnotherOperationInProgress", "503"] {
        assert!(
            run.stderr.contains(what),
            "no retry logged for {what}:\n{}",
            run.stderr
        );
    }
    // Four deployment PUTs reached the double: the dropped one, the 409 and the accepted one
    // of the vault's deployment (the first), then the main one.
    assert_eq!(count(&env.arm, "PUT", "/deployments/"), 4);
}

#[test]
fn a_failed_deployment_shows_each_failed_resource() {
    let env = setup();
    // The vault's deployment comes first and succeeds; the main one fails.
    env.arm.fail_next_deployment(vec![]);
    env.arm.fail_next_deployment(vec![
        OperationFailure::new(
            "Microsoft.Compute/virtualMachineScaleSets",
            Some("nomad-example-clients"),
            "OperationNotAllowed",
            "Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota.",
        ),
        OperationFailure::new(
            "Microsoft.Compute/virtualMachineScaleSets",
            Some("nomad-example-servers"),
            "SkuNotAvailable",
            "The requested VM size Standard_D2s_v5 is currently not available in location 'westeurope'.",
        ),
    ]);
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("deployment nomad-example failed: DeploymentFailed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Microsoft.Compute/virtualMachineScaleSets nomad-example-clients: OperationNotAllowed: Operation could not be completed as it results in exceeding approved standardDSv5Family Cores quota."), "{}", run.stderr);
    assert!(run.stderr.contains("Microsoft.Compute/virtualMachineScaleSets nomad-example-servers: SkuNotAvailable: The requested VM size"), "{}", run.stderr);
    // Machine-readable too.
    env.arm.fail_next_deployment(vec![]);
    env.arm.fail_next_deployment(vec![OperationFailure::new(
        "Microsoft.Network/loadBalancers",
        None,
        "InvalidResourceReference",
        "gone",
    )]);
    let run = env.run(&["apply", "--json"]);
    assert_ne!(run.code, 0);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        out["failed_resources"][0]["code"],
        "InvalidResourceReference"
    );
}

#[test]
fn principal_not_found_is_retried() {
    let env = setup();
    let principal = OperationFailure::new(
        "Microsoft.Authorization/roleAssignments",
        None,
        "PrincipalNotFound",
        "Principal 1111 does not exist in the directory.",
    );
    // The vault's deployment first (its operator exists), then the main one, retried.
    env.arm.fail_next_deployment(vec![]);
    env.arm.fail_next_deployment(vec![principal.clone()]);
    env.arm.fail_next_deployment(vec![principal]);
    let run = env.apply();
    assert!(run.stderr.contains("PrincipalNotFound"), "{}", run.stderr);
    let states: Vec<String> = env
        .arm
        .deployments()
        .into_iter()
        .filter(|d| d.name == "nomad-example")
        .map(|d| d.state)
        .collect();
    assert_eq!(states, ["Failed", "Failed", "Succeeded"]);
}

#[test]
fn arm_errors_show_code_target_and_every_nested_detail() {
    let env = setup();
    env.arm
        .deny_by_policy("allowed-resource-types", "Microsoft.Network/natGateways");
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("InvalidTemplateDeployment"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("RequestDisallowedByPolicy"),
        "the cause is shown, not just 'see inner errors': {}",
        run.stderr
    );
    assert!(run.stderr.contains("nomad-example-nat"), "{}", run.stderr);
    assert!(
        run.stderr.contains("allowed-resource-types"),
        "{}",
        run.stderr
    );
}

#[test]
fn apply_warns_before_removing_what_the_operator_added() {
    let env = setup();
    env.apply();
    // Subnets and NSG rules added out of band survive a re-apply (the template declares ours as
    // child resources: tests/redeploy.rs); a load balancer PUT still replaces its rule
    // collections, so an operator's own NAT rule on our load balancer would go.
    env.arm.add_resource(
        "nomad-example",
        json!({ "type": "Microsoft.Network/virtualNetworks/subnets", "name": "nomad-example-vnet/bastion", "properties": { "addressPrefix": "10.0.99.0/24" } }),
    );
    env.arm.add_resource(
        "nomad-example",
        json!({ "type": "Microsoft.Network/loadBalancers/inboundNatRules", "name": "nomad-example-lb/admin-tunnel", "properties": { "protocol": "Tcp", "frontendPort": 6000, "backendPort": 6000 } }),
    );
    let before = env.arm.deployments().len();
    // No terminal and no --yes: refused, nothing deployed.
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    for needle in ["admin-tunnel", "--yes"] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    assert!(
        !run.stderr.contains("bastion"),
        "a kept subnet is not a removal: {}",
        run.stderr
    );
    assert_eq!(env.arm.deployments().len(), before);
    // plan shows the same warning.
    let run = env.run(&["plan"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("admin-tunnel"), "{}", run.stdout);
    let run = env.run(&["apply", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("admin-tunnel"),
        "the warning is still shown: {}",
        run.stderr
    );
    // The vault's deployment (the operator's role), then the main one.
    assert_eq!(env.arm.deployments().len(), before + 2);
}
