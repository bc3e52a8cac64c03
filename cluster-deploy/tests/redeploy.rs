//! Re-running apply against the ARM double, which follows Network's PUT semantics (an NSG PUT
//! replaces every rule, a VNet PUT with `subnets` replaces the list, child PUTs touch one
//! entry): a rule and a subnet someone added outside cluster-deploy are still there after
//! the second apply, and our own rules are brought back to what the cluster file says.

mod common;

use common::deploy::Deploy;
use serde_json::{json, Value};

const NSG: &str = "nomad-example-nsg";
const VNET: &str = "nomad-example-vnet";

fn nsg(env: &Deploy) -> Value {
    env.arm
        .resource_named("Microsoft.Network/networkSecurityGroups", NSG)
        .expect("the NSG exists")
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn apply_again_keeps_rules_and_subnets_added_out_of_band() {
    let env = Deploy::example(&[], "");
    env.ok(&["apply"]);
    let ours = names(&nsg(&env)["properties"]["securityRules"]);
    assert_eq!(ours.len(), 9, "{ours:?}");

    // Someone adds a rule to our NSG and a subnet to our VNet (a portal edit is a PUT of the
    // whole resource, as here), and loosens one of our rules.
    let mut edited = nsg(&env);
    let rules = edited["properties"]["securityRules"]
        .as_array_mut()
        .unwrap();
    rules.push(json!({
        "name": "allow-bastion",
        "properties": {
            "protocol": "Tcp", "access": "Allow", "direction": "Inbound", "priority": 300,
            "sourceAddressPrefix": "10.0.200.0/26", "sourcePortRange": "*",
            "destinationAddressPrefix": "*", "destinationPortRange": "22",
        },
    }));
    let ssh = rules.iter_mut().find(|r| r["name"] == "ssh").unwrap();
    ssh["properties"]["sourceAddressPrefixes"] = json!(["0.0.0.0/0"]);
    env.arm.add_resource("nomad-example", edited);
    let mut vnet = env
        .arm
        .resource_named("Microsoft.Network/virtualNetworks", VNET)
        .unwrap();
    vnet["properties"]["subnets"].as_array_mut().unwrap().push(
        json!({ "name": "AzureBastionSubnet", "properties": { "addressPrefix": "10.0.200.0/26" } }),
    );
    env.arm.add_resource("nomad-example", vnet);

    env.ok(&["apply"]);

    let after = nsg(&env);
    let rules = &after["properties"]["securityRules"];
    let rule_names = names(rules);
    assert!(
        rule_names.contains(&"allow-bastion".to_string()),
        "the out-of-band rule was removed: {rule_names:?}"
    );
    for name in &ours {
        assert!(rule_names.contains(name), "{name} is gone: {rule_names:?}");
    }
    let ssh = rules
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ssh")
        .unwrap();
    assert_eq!(
        ssh["properties"]["sourceAddressPrefixes"],
        json!(["203.0.113.0/24"]),
        "our rule is back to the cluster file's CIDRs"
    );
    let vnet = env
        .arm
        .resource_named("Microsoft.Network/virtualNetworks", VNET)
        .unwrap();
    let subnet_names = names(&vnet["properties"]["subnets"]);
    assert!(
        subnet_names.contains(&"AzureBastionSubnet".to_string()),
        "the out-of-band subnet was removed: {subnet_names:?}"
    );
    assert!(subnet_names.contains(&"nomad-example-subnet".to_string()));

    // The second deployment did not declare the NSG itself, only its rules.
    let second = env.arm.deployments().pop().unwrap();
    assert_eq!(
        second.request["properties"]["parameters"]["createNetworkSecurityGroup"]["value"],
        false
    );
    let first = env
        .arm
        .deployments()
        .into_iter()
        .find(|d| d.name == "nomad-example")
        .unwrap();
    assert_eq!(
        first.request["properties"]["parameters"]["createNetworkSecurityGroup"]["value"],
        true
    );
}

#[test]
fn closing_access_on_a_redeploy_overwrites_the_rule_that_admitted_it() {
    let env = Deploy::example(&[], "");
    env.ok(&["apply"]);
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "allowed_ssh_cidr_blocks     = [\"203.0.113.0/24\"]",
        "allowed_ssh_cidr_blocks     = []",
    );
    std::fs::write(&env.config, text).unwrap();
    env.ok(&["apply"]);
    let after = nsg(&env);
    let ssh = after["properties"]["securityRules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "ssh")
        .unwrap()
        .clone();
    assert_eq!(ssh["properties"]["access"], "Deny", "{ssh}");
    assert_eq!(ssh["properties"]["sourceAddressPrefix"], "*");
}

#[test]
fn what_if_after_apply_sees_no_change_to_the_kept_subnets() {
    let env = Deploy::example(&[], "");
    env.ok(&["apply"]);
    let run = env.ok(&["plan", "--json"]);
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    let changes = plan["what_if"]["changes"].as_array().unwrap();
    let vnet = changes
        .iter()
        .find(|c| c["resource"].as_str().unwrap().ends_with(VNET))
        .unwrap();
    assert_eq!(vnet["change"], "NoChange", "{vnet}");
    assert!(
        changes.iter().any(|c| c["resource"]
            .as_str()
            .unwrap()
            .ends_with("networkSecurityGroups/nomad-example-nsg/securityRules/ssh")
            && c["change"] == "NoChange"),
        "{changes:?}"
    );
}
