//! The commands against the ARM, token, IMDS and Nomad API doubles on 127.0.0.1: plan's
//! what-if, apply (resource group, Incremental deployment, long-running operation, faults it
//! survives, a failed deployment's per-resource errors, PrincipalNotFound), outputs, status,
//! the three ways to authenticate, and secrets kept out of every output (destroy:
//! tests/destroy.rs; the shared environment: tests/common/azure.rs).

mod common;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::doubles::arm::{Fault, FaultKind, LoginDouble, OperationFailure};
use support::doubles::nomad_api::{Member, NodeStub, NomadApiDouble};

use common::azure::{count, setup, CLIENT_ID};

#[test]
fn plan_without_credentials_never_touches_the_network() {
    let env = setup();
    let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    cmd.env_clear()
        .args(["plan", "--config"])
        .arg(&env.config)
        .args([
            "--arm-endpoint",
            env.arm.url(),
            "--login-endpoint",
            env.login.url(),
        ])
        .args(["--az-program", "/nonexistent/az", "--out"])
        .arg(env.dir.path().join("t.json"));
    let run = env.run_with(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("what-if was not run"), "{}", run.stdout);
    assert!(env.arm.requests().is_empty());
    assert!(env.login.requests().is_empty());
}

#[test]
fn plan_with_a_logged_out_azure_cli_stays_offline() {
    let env = setup();
    let az = write_script(
        env.dir.path(),
        "az",
        "#!/bin/sh\necho 'ERROR: Please run az login to setup account.' >&2\nexit 1\n",
    );
    let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    cmd.env_clear()
        .args(["plan", "--config"])
        .arg(&env.config)
        .arg("--az-program")
        .arg(&az)
        .args(["--arm-endpoint", env.arm.url()]);
    let run = env.run_with(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("the Azure CLI gave no token (ERROR: Please run az login to setup account.): what-if was not run"), "{}", run.stdout);
    assert!(env.arm.requests().is_empty());
}

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
fn outputs_and_status_read_back_the_cluster() {
    let env = setup();
    env.apply();
    // Lists come in pages of two: nextLink is followed.
    env.arm.set_page_size(2);
    let run = env.run(&["outputs", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let outputs: Value = serde_json::from_str(&run.stdout).unwrap();
    let lb = env
        .arm
        .resource_named("Microsoft.Network/publicIPAddresses", "nomad-example-lb-ip")
        .unwrap();
    assert_eq!(
        outputs["load_balancer_address"],
        lb["properties"]["ipAddress"]
    );
    assert_eq!(outputs["server_private_ips"].as_array().unwrap().len(), 3);
    assert_eq!(
        outputs["nomad_api"],
        format!(
            "https://{}:4646",
            lb["properties"]["ipAddress"].as_str().unwrap()
        ),
        "TLS is on"
    );
    assert_eq!(outputs["nomad_tls_server_name"], "server.global.nomad");
    assert_eq!(outputs["key_vault"], env.stack.vault.clone().unwrap());

    let nomad = NomadApiDouble::start();
    nomad.require_token("nomad-acl-token");
    nomad.set_servers(vec![
        Member::server("nomad-s000000.global", "10.0.0.4"),
        Member::server("nomad-s000001.global", "10.0.0.5"),
    ]);
    nomad.set_leader(Some("10.0.0.4:4647"));
    nomad.set_nodes(vec![NodeStub::ready("nomad-c000000", "dc1")]);
    let mut cmd = env.command(&["status", "--nomad-address", nomad.url()]);
    cmd.env("NOMAD_TOKEN", "nomad-acl-token");
    let run = env.run_with(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("scale set nomad-example-servers (3 of 3 instances)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("scale set nomad-example-clients (6 of 6 instances)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("leader: 10.0.0.4:4647"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("server nomad-s000001.global"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("client nomad-c000000"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("nomad-acl-token") && !run.stderr.contains("nomad-acl-token"));
    assert!(nomad
        .requests()
        .iter()
        .all(|r| r.header("x-nomad-token") == Some("nomad-acl-token")));

    // Without a reachable API, status still reports the scale sets.
    drop(nomad);
    let run = env.run(&["status", "--nomad-address", "http://127.0.0.1:9"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("is not reachable"), "{}", run.stdout);
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn the_azure_cli_login_is_used_when_asked() {
    let env = setup();
    let az = write_script(
        env.dir.path(),
        "az",
        &format!(
            // `az account get-access-token` and `az account show`, answering the JSON the CLI
            // documents for each (the subscription comes from `account show`'s `id`).
            "#!/bin/sh\nif [ \"$1 $2\" = 'account show' ]; then printf '{{\"id\": \"{sub}\", \"isDefault\": true, \"name\": \"Dev\", \"state\": \"Enabled\", \"tenantId\": \"t\"}}'; exit 0; fi\n[ \"$1 $2\" = 'account get-access-token' ] || exit 2\necho \"$@\" >> \"$(dirname \"$0\")/az-args\"\ntoken='{token}'\ncase \"$*\" in *vault.azure.net*) token='{vault_token}';; esac\nprintf '{{\"accessToken\": \"%s\", \"expires_on\": 4102444800, \"subscription\": \"{sub}\", \"tenant\": \"t\", \"tokenType\": \"Bearer\"}}' \"$token\"\n",
            token = env.arm.token(),
            // What the CLI gives for `--resource https://vault.azure.net`: a token naming the
            // signed-in principal (`oid`), whom apply makes Secrets Officer.
            vault_token = support::doubles::tokens::Claims::new(
                support::keyvault::RESOURCE,
                support::doubles::arm::CALLER_OBJECT_ID,
                support::doubles::arm::TENANT
            )
            .issue(),
            sub = env.arm.subscription()
        ),
    );
    let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    cmd.env_clear()
        .args(["apply", "--auth", "azure-cli", "--config"])
        .arg(&env.config)
        .arg("--az-program")
        .arg(&az)
        .args(["--arm-endpoint", env.arm.url(), "--poll-interval-ms", "5"])
        .args(["--retry-delay-ms", "5"])
        .args(env.stack.args(&["apply"]))
        .env("XDG_CONFIG_HOME", env.stack.config_home.path());
    let run = env.run_with(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let args = std::fs::read_to_string(env.dir.path().join("az-args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            format!(
                "account get-access-token --resource {}/ --output json",
                env.arm.url()
            ),
            "account get-access-token --resource https://vault.azure.net --output json".to_string()
        ]
    );
    assert_eq!(
        env.arm.deployments().len(),
        2,
        "the vault's, then the main one"
    );
    // A failing CLI is an error naming the command.
    let bad = write_script(
        env.dir.path(),
        "az-bad",
        "#!/bin/sh\necho 'Please run az login to setup account.' >&2\nexit 1\n",
    );
    let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    cmd.env_clear()
        .args(["outputs", "--auth", "azure-cli", "--config"])
        .arg(&env.config)
        .arg("--az-program")
        .arg(&bad)
        .args(["--arm-endpoint", env.arm.url()]);
    let run = env.run_with(cmd);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("az-bad account get-access-token"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Please run az login"), "{}", run.stderr);
}

#[test]
fn a_managed_identity_token_comes_from_imds() {
    use support::doubles::imds::{self, ImdsDouble};
    let env = setup();
    let imds = ImdsDouble::start(imds::fixture("instance.json"));
    let token = imds::fixture("identity-token.json")["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    env.arm.set_token(&token);
    let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    cmd.env_clear()
        .args(["outputs", "--auth", "managed-identity", "--config"])
        .arg(&env.config)
        .args([
            "--subscription",
            env.arm.subscription(),
            "--arm-endpoint",
            env.arm.url(),
            "--imds-endpoint",
            imds.url(),
        ]);
    let output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Nothing is deployed, so outputs fails on the missing scale set, after authenticating.
    assert!(
        stderr.contains("ResourceNotFound") || stderr.contains("ResourceGroupNotFound"),
        "{stderr}"
    );
    assert!(!stderr.contains(&token));
    let token_requests: Vec<_> = imds
        .requests()
        .into_iter()
        .filter(|r| r.path == "/metadata/identity/oauth2/token")
        .collect();
    // The fixture's token expired on 2026-01-02, so each request fetches a fresh one.
    assert!(!token_requests.is_empty());
    for r in &token_requests {
        assert_eq!(
            r.query_param("resource"),
            Some(format!("{}/", env.arm.url()).as_str())
        );
        assert_eq!(r.query_param("api-version"), Some("2018-02-01"));
        assert_eq!(r.header("metadata"), Some("true"));
    }
    assert!(env
        .arm
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some(format!("Bearer {token}").as_str())));
}

#[test]
fn a_wrong_client_secret_is_reported_without_the_secret() {
    let env = setup();
    let login = LoginDouble::start(CLIENT_ID, "another-secret", env.arm.token());
    let cmd = env.command_at(&["apply"], env.arm.url(), login.url());
    let run = env.run_with(cmd);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("invalid_client"), "{}", run.stderr);
    assert!(run.stderr.contains("/oauth2/v2.0/token"), "{}", run.stderr);
    let form = &login.requests()[0].body;
    assert!(form.contains("scope=http%3A%2F%2F127.0.0.1"), "{form}");
    assert!(form.contains("grant_type=client_credentials"));
}

#[test]
fn plain_http_endpoints_are_refused_unless_loopback() {
    let env = setup();
    let cmd = env.command_at(
        &["outputs"],
        "http://management.example.com",
        env.login.url(),
    );
    let run = env.run_with(cmd);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("--arm-endpoint http://management.example.com"),
        "{}",
        run.stderr
    );
    assert!(env.arm.requests().is_empty() && env.login.requests().is_empty());
}

// ------------------------------------------------------------------ issue 8: real operations

#[test]
fn every_command_uses_only_operations_of_the_specs() {
    let env = setup();
    common::azure::conformance_run(&env);
    let used = env.arm.operations_used();
    let listing: Vec<String> = used.iter().map(|(o, v)| format!("{o} {v}")).collect();
    eprintln!("operations used:\n  {}", listing.join("\n  "));
    for expected in [
        "ResourceGroups_CreateOrUpdate 2025-04-01",
        "Deployments_WhatIf 2025-04-01",
        "Deployments_CreateOrUpdate 2025-04-01",
        "NetworkInterfaces_ListVirtualMachineScaleSetNetworkInterfaces 2017-03-30",
        "VirtualMachineScaleSetVMs_List 2024-11-01",
        "Permissions_ListForResourceGroup 2022-04-01",
        "Usage_List 2024-11-01",
        "ResourceSkus_List 2021-07-01",
        "VirtualMachineScaleSets_Delete 2024-11-01",
        "NetworkSecurityGroups_Delete 2025-07-01",
        "RoleAssignments_Delete 2022-04-01",
        "ResourceGroups_Delete 2025-04-01",
    ] {
        assert!(
            listing.iter().any(|l| l == expected),
            "{expected} not used:\n{listing:#?}"
        );
    }
    // Dropping the double checks that nothing else was sent; say so here too.
    assert!(env.arm.refused().is_empty(), "{:#?}", env.arm.refused());
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
fn a_caller_who_cannot_grant_roles_is_told_before_anything_is_deployed() {
    let env = setup();
    env.arm
        .add_resource_group("nomad-example", "westeurope", json!({}));
    env.arm
        .set_caller_permissions(support::doubles::arm::rbac::contributor());
    let run = env.run(&["plan"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("Microsoft.Authorization/roleAssignments/write"),
        "{}",
        run.stderr
    );
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("Microsoft.Authorization/roleAssignments/write")
            && run
                .stderr
                .contains("Role Based Access Control Administrator"),
        "{}",
        run.stderr
    );
    assert_eq!(count(&env.arm, "PUT", "/deployments/"), 0);
    assert!(env
        .arm
        .resource_named(
            "Microsoft.Compute/virtualMachineScaleSets",
            "nomad-example-servers"
        )
        .is_none());
}

#[test]
fn short_quota_is_reported_with_the_shortfall_before_deploying() {
    let env = setup();
    env.arm
        .add_resource_group("nomad-example", "westeurope", json!({}));
    // Servers: 3 x Standard_D2s_v5, clients: 6 x Standard_D4s_v5 = 30 vCPUs of DSv5.
    env.arm.set_usage("westeurope", "standardDSv5Family", 8, 20);
    let run = env.run(&["plan"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("standardDSv5Family")
            && run.stderr.contains("needs 30")
            && run.stderr.contains("short by 18"),
        "{}",
        run.stderr
    );
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("short by 18"), "{}", run.stderr);
    assert_eq!(count(&env.arm, "PUT", "/deployments/"), 0);
}

/// Quota is read before the first write: a short quota leaves no trace, not even the group.
#[test]
fn short_quota_in_a_new_group_writes_nothing_at_all() {
    let env = setup();
    env.arm.set_usage("westeurope", "standardDSv5Family", 8, 20);
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("short by 18"), "{}", run.stderr);
    let writes: Vec<String> = env
        .arm
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.method != "POST")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
    assert!(env.arm.resource_group("nomad-example").is_none());
}

/// Permissions can be read only on a group that exists: apply creates the group, reads them,
/// and takes the new, empty group away again when the caller cannot grant roles.
#[test]
fn a_new_group_is_not_left_behind_when_the_caller_cannot_grant_roles() {
    let env = setup();
    env.arm
        .set_caller_permissions(support::doubles::arm::rbac::contributor());
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("Microsoft.Authorization/roleAssignments/write"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the resource group nomad-example it had just created was deleted again"),
        "{}",
        run.stderr
    );
    assert_eq!(count(&env.arm, "PUT", "/deployments/"), 0);
    assert!(env.arm.resource_group("nomad-example").is_none());
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
