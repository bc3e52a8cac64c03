//! The example's template against its golden file (`UPDATE_GOLDEN=1` rewrites it; review the
//! diff), and the properties the issue names: custom data decodes to the run-nomad line, no
//! password anywhere, the NSG is attached to every NIC, the SSH and HTTP rules admit exactly the
//! configured CIDRs.

mod common;

use base64::Engine;
use serde_json::Value;

const GOLDEN: &str = "tests/golden/example-azuredeploy.json";

fn decode(b64: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
    )
    .unwrap()
}

fn scale_sets(template: &Value) -> Vec<&Value> {
    template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "Microsoft.Compute/virtualMachineScaleSets")
        .collect()
}

#[test]
fn the_example_matches_its_golden_file() {
    let text = cluster_deploy::template::to_pretty(&common::example_template());
    let golden = common::manifest_dir().join(GOLDEN);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            golden.display()
        )
    });
    assert!(
        text == expected,
        "the example template differs from {GOLDEN}; if the change is intended, run \
         UPDATE_GOLDEN=1 cargo test -p cluster-deploy --test template and review the diff"
    );
}

#[test]
fn custom_data_decodes_to_the_run_nomad_line() {
    let template = common::example_template();
    let sets = scale_sets(&template);
    let script = |set: &Value| {
        decode(
            set["properties"]["virtualMachineProfile"]["osProfile"]["customData"]
                .as_str()
                .unwrap(),
        )
    };
    let kv = common::cluster_from(&common::example_config())
        .security
        .key_vault
        .unwrap()
        .name;
    let server = script(sets[0]);
    assert!(server.starts_with("#!/bin/sh\n"), "{server}");
    assert_eq!(
        server.lines().last().unwrap(),
        format!("exec /opt/nomad/bin/run-nomad --server --num-servers 3 --scale-set-name nomad-example-servers --key-vault {kv} --tls-from-key-vault --gossip-key-from-key-vault --acl --datacenter dc1 --region global")
    );
    let client = script(sets[1]);
    assert_eq!(
        client.lines().last().unwrap(),
        format!("exec /opt/nomad/bin/run-nomad --client --scale-set-name nomad-example-servers --key-vault {kv} --tls-from-key-vault --acl --datacenter dc1 --region global --node-class general --meta 'pool=general'")
    );
    for text in [&server, &client] {
        assert!(!text.contains("-----BEGIN"), "{text}");
    }
}

#[test]
fn no_password_anywhere() {
    let text = common::example_template().to_string().to_lowercase();
    assert!(
        !text.contains("adminpassword"),
        "an admin password in the template"
    );
    assert!(!text.contains("\"password\""));
    for set in scale_sets(&common::example_template()) {
        assert_eq!(
            set["properties"]["virtualMachineProfile"]["osProfile"]["linuxConfiguration"]
                ["disablePasswordAuthentication"],
            true
        );
    }
}

#[test]
fn the_nsg_is_attached_to_every_nic() {
    let template = common::example_template();
    let nsg = template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Microsoft.Network/networkSecurityGroups")
        .unwrap();
    let reference = format!(
        "[resourceId('Microsoft.Network/networkSecurityGroups', '{}')]",
        nsg["name"].as_str().unwrap()
    );
    for set in scale_sets(&template) {
        let nics = set["properties"]["virtualMachineProfile"]["networkProfile"]
            ["networkInterfaceConfigurations"]
            .as_array()
            .unwrap();
        assert!(!nics.is_empty());
        for nic in nics {
            assert_eq!(
                nic["properties"]["networkSecurityGroup"]["id"],
                reference.as_str()
            );
        }
        let depends: Vec<&str> = set["dependsOn"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert!(depends.contains(&reference.as_str()));
    }
}

#[test]
fn ssh_and_http_rules_use_exactly_the_configured_cidrs() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::variant(
        dir.path(),
        &[
            "allowed_inbound_cidr_blocks = [\"198.51.100.0/24\", \"192.0.2.10/32\"]",
            "allowed_ssh_cidr_blocks = [\"203.0.113.7/32\"]",
        ],
        "",
    );
    let template = cluster_deploy::template::render(&common::cluster_from(&path));
    let nsg = template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Microsoft.Network/networkSecurityGroups")
        .unwrap();
    let rules = nsg["properties"]["securityRules"].as_array().unwrap();
    let port_rules = |port: &str| -> Vec<&Value> {
        rules
            .iter()
            .filter(|r| {
                r["properties"]["access"] == "Allow"
                    && r["properties"]["destinationPortRange"] == port
                    && r["properties"]["sourceAddressPrefix"] != "AzureLoadBalancer"
            })
            .collect()
    };
    let http = port_rules("4646");
    assert_eq!(http.len(), 1, "one rule admits the API");
    assert_eq!(
        http[0]["properties"]["sourceAddressPrefixes"],
        serde_json::json!(["198.51.100.0/24", "192.0.2.10/32"])
    );
    let ssh = port_rules("22");
    assert_eq!(ssh.len(), 1, "one rule admits SSH");
    assert_eq!(
        ssh[0]["properties"]["sourceAddressPrefixes"],
        serde_json::json!(["203.0.113.7/32"])
    );
    // No other allow rule names an address: the rest admit only the cluster's own NICs.
    for rule in rules {
        let p = &rule["properties"];
        if p["access"] == "Allow" && p.get("sourceAddressPrefixes").is_none() {
            assert!(
                p.get("sourceApplicationSecurityGroups").is_some()
                    || p["sourceAddressPrefix"] == "AzureLoadBalancer",
                "{rule}"
            );
        }
    }
    let last = rules.last().unwrap();
    assert_eq!(last["properties"]["access"], "Deny");
    assert_eq!(last["properties"]["sourceAddressPrefix"], "*");
}

#[test]
fn every_resource_carries_the_cluster_tag() {
    let template = common::example_template();
    for r in template["resources"].as_array().unwrap() {
        if r["type"] == "Microsoft.Authorization/roleAssignments" {
            // Role assignments cannot carry tags; destroy finds them through the identities.
            continue;
        }
        if r["type"].as_str().unwrap().matches('/').count() > 1 {
            // Child resources (our subnet, the NSG's rules) live inside a tagged parent and
            // have no tags of their own.
            continue;
        }
        assert_eq!(r["tags"]["nomad-cluster"], "nomad-example", "{}", r["name"]);
    }
}

#[test]
fn an_own_gossip_key_and_ca_never_reach_the_template_or_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gossip.key"), common::GOSSIP_KEY).unwrap();
    let path = common::variant(dir.path(), &[], "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "# gossip_key_file = \"secrets/gossip.key\"",
        "gossip_key_file = \"gossip.key\"",
    );
    std::fs::write(&path, common::secure::with_own_ca(dir.path(), &text)).unwrap();
    let ca_key = std::fs::read_to_string(dir.path().join("ca-key.pem")).unwrap();
    let ca_key_line = ca_key.lines().nth(1).unwrap().to_string();
    let out_file = dir.path().join("out/azuredeploy.json");
    let output = assert_cmd::Command::cargo_bin("cluster-deploy")
        .unwrap()
        .env_clear()
        .args(["plan", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(&out_file)
        .args(["--az-program", "/nonexistent/az", "-v"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let written = std::fs::read_to_string(&out_file).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    for (what, text) in [
        ("template", &*written),
        ("stdout", &*stdout),
        ("stderr", &*stderr),
    ] {
        assert!(
            !text.contains(common::GOSSIP_KEY),
            "the gossip key is in the {what}"
        );
        assert!(!text.contains("-----BEGIN"), "a PEM block in the {what}");
        assert!(!text.contains(&ca_key_line), "the CA key is in the {what}");
    }
    assert!(!written.contains("\"securestring\""), "no secret parameter");
    assert!(stdout.contains("uploaded to Key Vault"), "{stdout}");
    // The own key is named as an opt-in of its own, not silently used.
    assert!(
        stdout.contains("warning: `nomad.gossip_key_file` gives your own gossip key"),
        "{stdout}"
    );
}

#[test]
fn custom_data_over_azure_limit_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut meta = String::from("\n");
    for i in 0..700 {
        meta.push_str(&format!("key{i} = \"{}\"\n", "v".repeat(100)));
    }
    let path = common::variant(dir.path(), &[], "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("pool = \"general\"", &format!("pool = \"general\"{meta}"));
    std::fs::write(&path, text).unwrap();
    let out_file = dir.path().join("azuredeploy.json");
    let output = assert_cmd::Command::cargo_bin("cluster-deploy")
        .unwrap()
        .env_clear()
        .args(["plan", "--offline", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("custom data limit of 65536"), "{stderr}");
    assert!(!out_file.exists());
}
