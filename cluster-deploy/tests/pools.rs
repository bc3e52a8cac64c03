//! Several client pools end to end against the ARM double: each pool its own scale set with
//! its own boot script (node class, node pool, Spot), its own Reader assignment; `outputs`
//! names every pool and gives the Terraform module's output names and the DNS name; `status`
//! lists every pool.

mod common;

use common::deploy::Deploy;
use serde_json::Value;

const POOLS: &str = r#"
[[client_pool]]
name          = "web"
instance_size = "Standard_D4s_v5"
count         = 3
node_class    = "web"

[[client_pool]]
name            = "batch"
instance_size   = "Standard_F8s_v2"
count           = 4
node_pool       = "batch"
spot            = true
eviction_policy = "Delete"
max_price       = 0.12
custom_data     = "apt-get install -y jq\n"
"#;

fn pools_cluster() -> Deploy {
    Deploy::example(
        &[
            "num_clients = DROP",
            "client_instance_size = DROP",
            "domain_name_label = \"nomad-example-api\"",
        ],
        POOLS,
    )
}

#[test]
fn each_pool_is_its_own_scale_set_with_its_own_boot_script() {
    let env = pools_cluster();
    env.ok(&["apply"]);
    let web = env.arm.custom_data("nomad-example-web").unwrap();
    let kv = env.stack.vault.clone().unwrap();
    assert!(
        web.ends_with(&format!("exec /opt/nomad/bin/run-nomad --client --scale-set-name nomad-example-servers --key-vault {kv} --tls-from-key-vault --acl --datacenter dc1 --region global --node-class web --meta 'pool=general'\n")),
        "{web}"
    );
    let batch = env.arm.custom_data("nomad-example-batch").unwrap();
    assert!(
        batch.contains("--node-class general --node-pool batch --meta 'pool=general'\n"),
        "{batch}"
    );
    assert!(batch.contains("# Boot commands from `client_pool[1].custom_data`"));
    let set = env
        .arm
        .resource_named(
            "Microsoft.Compute/virtualMachineScaleSets",
            "nomad-example-batch",
        )
        .unwrap();
    assert_eq!(set["sku"]["name"], "Standard_F8s_v2");
    assert_eq!(set["sku"]["capacity"], 4);
    assert_eq!(
        set["properties"]["virtualMachineProfile"]["priority"],
        "Spot"
    );
    assert!(env
        .arm
        .resource_named(
            "Microsoft.Compute/virtualMachineScaleSets",
            "nomad-example-clients"
        )
        .is_none());
    let assignments: Vec<Value> = env
        .arm
        .resources()
        .into_iter()
        .filter(|r| r["type"] == "Microsoft.Authorization/roleAssignments")
        .collect();
    let on_group = assignments
        .iter()
        .filter(|a| {
            a["properties"]["scope"]
                == format!(
                    "/subscriptions/{}/resourceGroups/nomad-example",
                    env.arm.subscription()
                )
        })
        .count();
    assert_eq!(on_group, 3, "servers, web and batch each read the group");
    // And each pool's identity reads the client secrets, each on its own.
    for pool in ["web", "batch"] {
        let principal = env
            .arm
            .resource_named(
                "Microsoft.Compute/virtualMachineScaleSets",
                &format!("nomad-example-{pool}"),
            )
            .unwrap()["identity"]["principalId"]
            .clone();
        let mut secrets: Vec<String> = assignments
            .iter()
            .filter(|a| a["properties"]["principalId"] == principal)
            .filter_map(|a| {
                a["properties"]["scope"]
                    .as_str()
                    .and_then(|s| s.split("/secrets/").nth(1))
                    .map(str::to_string)
            })
            .collect();
        secrets.sort();
        assert_eq!(
            secrets,
            ["nomad-ca-cert", "nomad-client-cert", "nomad-client-key"],
            "{pool}"
        );
    }
}

#[test]
fn outputs_name_every_pool_and_keep_the_module_names() {
    let env = pools_cluster();
    env.ok(&["apply"]);
    let run = env.ok(&["outputs", "--json"]);
    let o: Value = serde_json::from_str(&run.stdout).unwrap();
    let ip = env
        .arm
        .resource_named("Microsoft.Network/publicIPAddresses", "nomad-example-lb-ip")
        .unwrap()["properties"]["ipAddress"]
        .clone();
    assert_eq!(o["num_servers"], 3);
    assert_eq!(o["scale_set_name_servers"], "nomad-example-servers");
    assert_eq!(o["load_balancer_ip_address_servers"], ip);
    assert_eq!(o["load_balancer_ip_address_clients"], ip);
    assert!(o["security_group_id"]
        .as_str()
        .unwrap()
        .ends_with("/providers/Microsoft.Network/networkSecurityGroups/nomad-example-nsg"));
    assert_eq!(
        o["client_scale_sets"],
        serde_json::json!(["nomad-example-web", "nomad-example-batch"])
    );
    assert_eq!(o["client_pools"][1]["node_pool"], "batch");
    assert_eq!(o["client_pools"][1]["spot"], true);
    assert_eq!(
        o["load_balancer_fqdn"],
        "nomad-example-api.westeurope.cloudapp.azure.com"
    );
    assert_eq!(
        o["nomad_api"],
        "https://nomad-example-api.westeurope.cloudapp.azure.com:4646"
    );
    let text = env.ok(&["outputs"]).stdout;
    assert!(
        text.contains("client_scale_sets      nomad-example-web nomad-example-batch"),
        "{text}"
    );
    assert!(text.contains("pool batch"), "{text}");
}

#[test]
fn status_lists_every_pool() {
    let env = pools_cluster();
    env.ok(&["apply"]);
    let run = env.ok(&["status", "--nomad-address", "http://127.0.0.1:9"]);
    for line in [
        "scale set nomad-example-servers (3 of 3 instances): servers, Standard_D2s_v5",
        "scale set nomad-example-web (3 of 3 instances): client pool web, Standard_D4s_v5, node class web",
        "scale set nomad-example-batch (4 of 4 instances): client pool batch, Standard_F8s_v2, node class general, node pool batch, Spot",
    ] {
        assert!(run.stdout.contains(line), "{line}\n{}", run.stdout);
    }
    let run = env.ok(&["status", "--json", "--nomad-address", "http://127.0.0.1:9"]);
    let status: Value = serde_json::from_str(&run.stdout).unwrap();
    let pools: Vec<&str> = status["scale_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["pool"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(pools, ["-", "web", "batch"]);
}
