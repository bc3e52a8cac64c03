//! The network side of the template: the application and network security groups (the NSG
//! created once, then its rules one by one), the NAT gateway and its address, the virtual
//! network and our subnet as a child resource, the load balancer and its address.

use serde_json::{json, Map, Value};

use super::{resource_id, tags, CREATE_NSG_PARAMETER, NETWORK_API};
use crate::config::NatGatewaySku;
use crate::model::{Cluster, Protocol, Rule, Source, Subnet, HEALTH_PATH};

/// Every network resource, in deployment order.
pub(super) fn resources(cluster: &Cluster) -> Vec<Value> {
    let n = &cluster.names;
    let mut resources = Vec::new();
    resources.push(json!({
        "type": "Microsoft.Network/applicationSecurityGroups",
        "apiVersion": NETWORK_API,
        "name": n.asg,
        "location": cluster.location,
        "tags": tags(cluster),
        "properties": {},
    }));
    resources.extend(network_security_group(cluster));

    if let Some(nat) = &cluster.nat_gateway {
        let zones = nat.zone.iter().cloned().collect::<Vec<_>>();
        resources.push(public_ip(
            cluster,
            &n.nat_ip,
            nat.sku.as_str(),
            &zones,
            None,
        ));
        let mut gateway = json!({
            "type": "Microsoft.Network/natGateways",
            "apiVersion": NETWORK_API,
            "name": n.nat_gateway,
            "location": cluster.location,
            "tags": tags(cluster),
            "sku": { "name": nat.sku.as_str() },
            "dependsOn": [resource_id("Microsoft.Network/publicIPAddresses", &[&n.nat_ip])],
            "properties": {
                "idleTimeoutInMinutes": 4,
                "publicIpAddresses": [
                    { "id": resource_id("Microsoft.Network/publicIPAddresses", &[&n.nat_ip]) }
                ],
            },
        });
        if !zones.is_empty() {
            gateway["zones"] = json!(zones);
        }
        resources.push(gateway);
    }
    if let Subnet::Created {
        address_space,
        prefix,
    } = &cluster.subnet
    {
        // No `subnets` here: a VNet PUT without the property keeps every subnet (Network
        // 2023-09-01 and later); ours is the child resource below.
        resources.push(json!({
            "type": "Microsoft.Network/virtualNetworks",
            "apiVersion": NETWORK_API,
            "name": n.vnet,
            "location": cluster.location,
            "tags": tags(cluster),
            "properties": {
                "addressSpace": { "addressPrefixes": [address_space] },
            },
        }));
        let mut subnet_properties = json!({
            "addressPrefix": prefix,
            // Explicitly private: egress is the NAT gateway or the outbound rule.
            "defaultOutboundAccess": false,
        });
        if cluster.security.key_vault.is_some() {
            // The VMs reach the cluster's Key Vault through this endpoint: the vault's
            // firewall admits the subnet by a virtual network rule (see `key_vault`).
            subnet_properties["serviceEndpoints"] = json!([{ "service": "Microsoft.KeyVault" }]);
        }
        let mut depends = vec![resource_id("Microsoft.Network/virtualNetworks", &[&n.vnet])];
        if cluster.nat_gateway.is_some() {
            let id = resource_id("Microsoft.Network/natGateways", &[&n.nat_gateway]);
            subnet_properties["natGateway"] = json!({ "id": id });
            depends.push(id);
        }
        resources.push(json!({
            "type": "Microsoft.Network/virtualNetworks/subnets",
            "apiVersion": NETWORK_API,
            "name": format!("{}/{}", n.vnet, n.subnet),
            "dependsOn": depends,
            "properties": subnet_properties,
        }));
    }
    if let Some(lb) = &cluster.load_balancer {
        resources.push(public_ip(
            cluster,
            &lb.public_ip,
            "Standard",
            &cluster.zones,
            lb.domain_name_label.as_deref(),
        ));
        resources.push(load_balancer(cluster));
    }
    resources
}

/// A Standard (or StandardV2) static public IP. `zones`: the load balancer's address is
/// zone-redundant when the scale sets span zones; a Standard NAT gateway's address must be in
/// the gateway's zone (or none); a StandardV2 address is zone-redundant by itself.
fn public_ip(
    cluster: &Cluster,
    name: &str,
    sku: &str,
    zones: &[String],
    domain_name_label: Option<&str>,
) -> Value {
    let mut ip = json!({
        "type": "Microsoft.Network/publicIPAddresses",
        "apiVersion": NETWORK_API,
        "name": name,
        "location": cluster.location,
        "tags": tags(cluster),
        "sku": { "name": sku, "tier": "Regional" },
        "properties": {
            "publicIPAllocationMethod": "Static",
            "publicIPAddressVersion": "IPv4",
        },
    });
    if !zones.is_empty() && sku != NatGatewaySku::StandardV2.as_str() {
        ip["zones"] = json!(zones);
    }
    if let Some(label) = domain_name_label {
        ip["properties"]["dnsSettings"] = json!({ "domainNameLabel": label });
    }
    ip
}
/// One security rule's properties.
fn rule_properties(cluster: &Cluster, rule: &Rule) -> Value {
    let asg = json!([{ "id": resource_id("Microsoft.Network/applicationSecurityGroups", &[&cluster.names.asg]) }]);
    let mut p = Map::new();
    p.insert("description".into(), json!(rule.description));
    p.insert(
        "protocol".into(),
        json!(rule.protocol.map_or("*", Protocol::as_str)),
    );
    p.insert(
        "access".into(),
        json!(if rule.allow { "Allow" } else { "Deny" }),
    );
    p.insert("direction".into(), json!("Inbound"));
    p.insert("priority".into(), json!(rule.priority));
    p.insert("sourcePortRange".into(), json!("*"));
    match &rule.source {
        Source::Cidrs(cidrs) => {
            p.insert("sourceAddressPrefixes".into(), json!(cidrs));
        }
        Source::Cluster => {
            p.insert("sourceApplicationSecurityGroups".into(), asg.clone());
        }
        Source::AzureLoadBalancer => {
            p.insert("sourceAddressPrefix".into(), json!("AzureLoadBalancer"));
        }
        Source::Any => {
            p.insert("sourceAddressPrefix".into(), json!("*"));
        }
    }
    if rule.allow {
        p.insert("destinationApplicationSecurityGroups".into(), asg);
    } else {
        p.insert("destinationAddressPrefix".into(), json!("*"));
    }
    p.insert("destinationPortRange".into(), json!(rule.ports));
    Value::Object(p)
}
/// The NSG, created with its rules while it does not exist, and each rule as its own child
/// resource once it does (see the module documentation).
fn network_security_group(cluster: &Cluster) -> Vec<Value> {
    let nsg = &cluster.names.nsg;
    let asg = resource_id(
        "Microsoft.Network/applicationSecurityGroups",
        &[&cluster.names.asg],
    );
    let nsg_id = resource_id("Microsoft.Network/networkSecurityGroups", &[nsg]);
    let inline: Vec<Value> = cluster
        .rules
        .iter()
        .map(|rule| json!({ "name": rule.name, "properties": rule_properties(cluster, rule) }))
        .collect();
    let mut out = vec![json!({
        "type": "Microsoft.Network/networkSecurityGroups",
        "apiVersion": NETWORK_API,
        "name": nsg,
        "condition": format!("[parameters('{CREATE_NSG_PARAMETER}')]"),
        "location": cluster.location,
        "tags": tags(cluster),
        "dependsOn": [asg],
        "properties": { "securityRules": inline },
    })];
    let mut previous: Option<String> = None;
    for rule in &cluster.rules {
        let mut depends = vec![asg.clone(), nsg_id.clone()];
        depends.extend(previous.take());
        out.push(json!({
            "type": "Microsoft.Network/networkSecurityGroups/securityRules",
            "apiVersion": NETWORK_API,
            "name": format!("{nsg}/{}", rule.name),
            "condition": format!("[not(parameters('{CREATE_NSG_PARAMETER}'))]"),
            "dependsOn": depends,
            "properties": rule_properties(cluster, rule),
        }));
        previous = Some(resource_id(
            "Microsoft.Network/networkSecurityGroups/securityRules",
            &[nsg, &rule.name],
        ));
    }
    out
}
fn load_balancer(cluster: &Cluster) -> Value {
    let n = &cluster.names;
    let lb = cluster
        .load_balancer
        .as_ref()
        .expect("only called with a load balancer");
    let child = |kind: &str, name: &str| json!({ "id": resource_id(&format!("Microsoft.Network/loadBalancers/{kind}"), &[&lb.name, name]) });
    let frontend = child("frontendIPConfigurations", &n.frontend);
    let mut properties = json!({
        "frontendIPConfigurations": [{
            "name": n.frontend,
            "properties": {
                "publicIPAddress": {
                    "id": resource_id("Microsoft.Network/publicIPAddresses", &[&lb.public_ip])
                },
            },
        }],
        "backendAddressPools": [
            { "name": n.servers_pool },
            { "name": n.nodes_pool },
        ],
        "probes": [{
            "name": "nomad-health",
            "properties": {
                "protocol": lb.probe_protocol,
                "port": cluster.http_port,
                "requestPath": HEALTH_PATH,
                "intervalInSeconds": 5,
                "probeThreshold": 2,
            },
        }],
        "loadBalancingRules": [{
            "name": "nomad-http",
            "properties": {
                "protocol": "Tcp",
                "frontendIPConfiguration": frontend,
                "frontendPort": cluster.http_port,
                "backendPort": cluster.http_port,
                "backendAddressPool": child("backendAddressPools", &n.servers_pool),
                "probe": child("probes", "nomad-health"),
                // Egress is the NAT gateway or the outbound rule, never the rule's SNAT.
                "disableOutboundSnat": true,
                "enableTcpReset": true,
                "idleTimeoutInMinutes": 15,
            },
        }],
        "inboundNatRules": [{
            "name": "ssh",
            "properties": {
                "protocol": "Tcp",
                "frontendIPConfiguration": frontend,
                "frontendPortRangeStart": lb.ssh_ports.0,
                "frontendPortRangeEnd": lb.ssh_ports.1,
                "backendPort": cluster.ssh_port,
                "backendAddressPool": child("backendAddressPools", &n.nodes_pool),
                "enableTcpReset": true,
            },
        }],
        "outboundRules": [],
    });
    if lb.outbound_rule {
        properties["outboundRules"] = json!([{
            "name": "egress",
            "properties": {
                "protocol": "All",
                "frontendIPConfigurations": [frontend],
                "backendAddressPool": child("backendAddressPools", &n.nodes_pool),
                "enableTcpReset": true,
                "idleTimeoutInMinutes": 4,
            },
        }]);
    }
    json!({
        "type": "Microsoft.Network/loadBalancers",
        "apiVersion": NETWORK_API,
        "name": lb.name,
        "location": cluster.location,
        "tags": tags(cluster),
        "sku": { "name": "Standard", "tier": "Regional" },
        "dependsOn": [resource_id("Microsoft.Network/publicIPAddresses", &[&lb.public_ip])],
        "properties": properties,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::resources_of;
    use super::super::*;
    use crate::model::tests::{example, example_with};
    use crate::model::Cluster;
    use serde_json::json;

    #[test]
    fn egress_by_load_balancer_adds_an_outbound_rule_and_no_nat_gateway() {
        let template = render(&example_with(
            "associate_public_ip_address_load_balancer = true\negress = \"load-balancer\"",
        ));
        assert!(resources_of(&template, "Microsoft.Network/natGateways").is_empty());
        let lb = resources_of(&template, "Microsoft.Network/loadBalancers")[0];
        assert_eq!(lb["properties"]["outboundRules"][0]["name"], "egress");
        let subnet = resources_of(&template, "Microsoft.Network/virtualNetworks/subnets")[0];
        assert!(subnet["properties"].get("natGateway").is_none());
    }

    #[test]
    fn an_existing_subnet_is_used_as_is() {
        let id = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/nodes";
        let text = format!(
            "subnet_id = \"{id}\"\negress = \"existing\"\n{}",
            crate::config::tests::minimal()
                .lines()
                .filter(|l| !l.starts_with("address_space") && !l.starts_with("subnet_address"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let file = crate::config::parse(std::path::Path::new("c.toml"), &text).unwrap();
        let template = render(&Cluster::from_file(&file));
        assert!(resources_of(&template, "Microsoft.Network/virtualNetworks").is_empty());
        assert!(resources_of(&template, "Microsoft.Network/natGateways").is_empty());
        let set = resources_of(&template, "Microsoft.Compute/virtualMachineScaleSets")[0];
        assert_eq!(
            set["properties"]["virtualMachineProfile"]["networkProfile"]
                ["networkInterfaceConfigurations"][0]["properties"]["ipConfigurations"][0]
                ["properties"]["subnet"]["id"],
            id
        );
    }

    #[test]
    fn the_vnet_leaves_other_subnets_and_ours_is_a_child_resource() {
        let template = render(&example());
        let vnet = resources_of(&template, "Microsoft.Network/virtualNetworks")[0];
        assert!(
            vnet["properties"].get("subnets").is_none(),
            "a VNet PUT with `subnets` replaces the whole list"
        );
        let subnets = resources_of(&template, "Microsoft.Network/virtualNetworks/subnets");
        assert_eq!(subnets.len(), 1);
        assert_eq!(subnets[0]["name"], "nomad-test-vnet/nomad-test-subnet");
        assert_eq!(subnets[0]["properties"]["defaultOutboundAccess"], false);
        assert_eq!(
            subnets[0]["properties"]["natGateway"]["id"],
            "[resourceId('Microsoft.Network/natGateways', 'nomad-test-nat')]"
        );
    }

    #[test]
    fn the_nsg_is_created_once_then_only_its_rules_are_deployed() {
        let template = render(&example());
        let nsg = resources_of(&template, "Microsoft.Network/networkSecurityGroups")[0];
        assert_eq!(
            nsg["condition"],
            "[parameters('createNetworkSecurityGroup')]"
        );
        let inline = nsg["properties"]["securityRules"].as_array().unwrap();
        let children = resources_of(
            &template,
            "Microsoft.Network/networkSecurityGroups/securityRules",
        );
        assert_eq!(children.len(), inline.len());
        for (child, rule) in children.iter().zip(inline) {
            assert_eq!(
                child["condition"],
                "[not(parameters('createNetworkSecurityGroup'))]"
            );
            assert_eq!(
                child["name"].as_str().unwrap(),
                format!("nomad-test-nsg/{}", rule["name"].as_str().unwrap())
            );
            assert_eq!(child["properties"], rule["properties"]);
        }
        // One after the other: each rule waits for the one before it.
        let second = children[1]["dependsOn"].as_array().unwrap();
        assert!(second.contains(&json!(
            "[resourceId('Microsoft.Network/networkSecurityGroups/securityRules', 'nomad-test-nsg', 'nomad-http')]"
        )));
        let p = with_existing_nsg(parameters(&example(), None), true);
        assert_eq!(p[CREATE_NSG_PARAMETER]["value"], false);
    }

    #[test]
    fn zonal_scale_sets_get_zone_redundant_egress() {
        let template = render(&example_with(
            "associate_public_ip_address_load_balancer = true\nzones = [\"1\", \"2\", \"3\"]",
        ));
        let nat = resources_of(&template, "Microsoft.Network/natGateways")[0];
        assert_eq!(nat["sku"]["name"], "StandardV2");
        assert!(nat.get("zones").is_none());
        let ips = resources_of(&template, "Microsoft.Network/publicIPAddresses");
        let nat_ip = ips
            .iter()
            .find(|ip| ip["name"] == "nomad-test-nat-ip")
            .unwrap();
        assert_eq!(nat_ip["sku"]["name"], "StandardV2");
        let lb_ip = ips
            .iter()
            .find(|ip| ip["name"] == "nomad-test-lb-ip")
            .unwrap();
        assert_eq!(lb_ip["zones"], json!(["1", "2", "3"]));
        // One zone: a Standard gateway in that zone, its address too.
        let template = render(&example_with("zones = [\"2\"]"));
        let nat = resources_of(&template, "Microsoft.Network/natGateways")[0];
        assert_eq!(nat["sku"]["name"], "Standard");
        assert_eq!(nat["zones"], json!(["2"]));
    }

    #[test]
    fn the_public_ip_gets_its_dns_label() {
        let template = render(&example_with(
            "associate_public_ip_address_load_balancer = true\ndomain_name_label = \"nomad-test-api\"",
        ));
        let ip = resources_of(&template, "Microsoft.Network/publicIPAddresses")
            .into_iter()
            .find(|ip| ip["name"] == "nomad-test-lb-ip")
            .unwrap();
        assert_eq!(
            ip["properties"]["dnsSettings"]["domainNameLabel"],
            "nomad-test-api"
        );
    }
}
