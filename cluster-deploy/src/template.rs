//! The cluster model as an ARM deployment template (schema 2019-04-01). Pure: the same model
//! always gives the same JSON, which `tests/` validates against Microsoft's schemas and
//! compares with a golden file.
//!
//! API versions are pinned to the schemas in `../shared/azure-schemas/`. Facts the template
//! relies on (REFERENCE.md, "Azure Resource Manager"):
//! - Network 2025-07-01 subnets have no default outbound access: egress is a NAT gateway or a
//!   load balancer outbound rule, never implicit.
//! - Basic load balancers and public IPs are retired; inbound NAT pools retire 2027-09-30: a
//!   Standard load balancer with a v2 inbound NAT rule over a port range and a backend pool.
//! - A PUT replaces child collections, so the NSG carries all its rules and the VNet its subnet
//!   inline: a redeploy never leaves a stale rule behind.
//! - The Reader assignment names `principalType: ServicePrincipal` so a fresh identity is not
//!   refused with `PrincipalNotFound` while it replicates.

use serde_json::{json, Map, Value};

use crate::config::Egress;
use crate::custom_data::{self, Script};
use crate::model::{
    Cluster, Protocol, Role, ScaleSet, Source, Subnet, HEALTH_PATH, SSH_FRONTEND_PORTS,
};

pub const SCHEMA: &str =
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#";
pub const COMPUTE_API: &str = "2024-11-01";
pub const NETWORK_API: &str = "2025-07-01";
pub const AUTHORIZATION_API: &str = "2022-04-01";
pub const RESOURCES_API: &str = "2025-04-01";

/// Azure's built-in Reader role (REFERENCE.md).
pub const READER_ROLE_ID: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";

/// The securestring parameter that carries the gossip key into the deployment.
pub const GOSSIP_KEY_PARAMETER: &str = "gossipKey";

/// How long a VM about to be deleted waits for the terminate notification (ISO 8601; the scale
/// set allows 5 to 15 minutes). Five minutes is enough to drain a Nomad client.
pub const TERMINATE_NOT_BEFORE: &str = "PT5M";

fn resource_id(kind: &str, names: &[&str]) -> String {
    let mut out = format!("[resourceId('{kind}'");
    for name in names {
        out.push_str(&format!(", '{}'", name.replace('\'', "''")));
    }
    out.push_str(")]");
    out
}

/// A literal string as ARM reads it: a value starting with `[` is an expression unless the
/// bracket is doubled (ARM template syntax, "Escape characters"), so a tag value like `[prod]`
/// stays text and can never call a template function.
pub fn literal(value: &str) -> String {
    if value.starts_with('[') {
        format!("[{value}")
    } else {
        value.to_string()
    }
}

fn tags(cluster: &Cluster) -> Value {
    let tags: Map<String, Value> = cluster
        .tags
        .iter()
        .map(|(k, v)| (k.clone(), json!(literal(v))))
        .collect();
    Value::Object(tags)
}

/// The template for a cluster.
pub fn render(cluster: &Cluster) -> Value {
    let n = &cluster.names;
    let mut resources = Vec::new();
    let mut variables = Map::new();
    let mut parameters = Map::new();

    resources.push(json!({
        "type": "Microsoft.Network/applicationSecurityGroups",
        "apiVersion": NETWORK_API,
        "name": n.asg,
        "location": cluster.location,
        "tags": tags(cluster),
        "properties": {},
    }));
    resources.push(network_security_group(cluster));

    let nat = cluster.egress == Egress::NatGateway;
    if nat {
        resources.push(public_ip(cluster, &n.nat_ip, false));
        resources.push(json!({
            "type": "Microsoft.Network/natGateways",
            "apiVersion": NETWORK_API,
            "name": n.nat_gateway,
            "location": cluster.location,
            "tags": tags(cluster),
            "sku": { "name": "Standard" },
            "dependsOn": [resource_id("Microsoft.Network/publicIPAddresses", &[&n.nat_ip])],
            "properties": {
                "idleTimeoutInMinutes": 4,
                "publicIpAddresses": [
                    { "id": resource_id("Microsoft.Network/publicIPAddresses", &[&n.nat_ip]) }
                ],
            },
        }));
    }
    if let Subnet::Created {
        address_space,
        prefix,
    } = &cluster.subnet
    {
        let mut subnet_properties = json!({
            "addressPrefix": prefix,
            // Explicitly private: egress is the NAT gateway or the outbound rule.
            "defaultOutboundAccess": false,
        });
        let mut depends = Vec::new();
        if nat {
            let id = resource_id("Microsoft.Network/natGateways", &[&n.nat_gateway]);
            subnet_properties["natGateway"] = json!({ "id": id });
            depends.push(id);
        }
        resources.push(json!({
            "type": "Microsoft.Network/virtualNetworks",
            "apiVersion": NETWORK_API,
            "name": n.vnet,
            "location": cluster.location,
            "tags": tags(cluster),
            "dependsOn": depends,
            "properties": {
                "addressSpace": { "addressPrefixes": [address_space] },
                "subnets": [{ "name": n.subnet, "properties": subnet_properties }],
            },
        }));
    }
    if let Some(lb) = &cluster.load_balancer {
        resources.push(public_ip(cluster, &lb.public_ip, true));
        resources.push(load_balancer(cluster));
    }
    for set in cluster.scale_sets() {
        let custom_data = match custom_data::script(cluster, set.role) {
            Script::Plain(text) => custom_data::encode(&text),
            Script::AroundKey { head, tail } => {
                let (head_var, tail_var) = match set.role {
                    Role::Server => ("serverCustomDataHead", "serverCustomDataTail"),
                    Role::Client => ("clientCustomDataHead", "clientCustomDataTail"),
                };
                variables.insert(head_var.to_string(), json!(head));
                variables.insert(tail_var.to_string(), json!(tail));
                parameters.insert(
                    GOSSIP_KEY_PARAMETER.to_string(),
                    json!({
                        "type": "securestring",
                        "minLength": custom_data::GOSSIP_KEY_LEN,
                        "maxLength": custom_data::GOSSIP_KEY_LEN,
                        "metadata": {
                            "description": "Nomad's gossip encryption key (base64 of 32 bytes). Given at deployment time, never stored in the template."
                        },
                    }),
                );
                format!(
                    "[base64(concat(variables('{head_var}'), parameters('{GOSSIP_KEY_PARAMETER}'), variables('{tail_var}')))]"
                )
            }
        };
        resources.push(scale_set(cluster, set, custom_data));
    }
    for set in cluster.scale_sets() {
        resources.push(reader_assignment(cluster, set));
    }

    let mut outputs = Map::new();
    outputs.insert(
        "serverScaleSet".into(),
        json!({ "type": "string", "value": n.servers }),
    );
    outputs.insert(
        "clientScaleSet".into(),
        json!({ "type": "string", "value": n.clients }),
    );
    if let Some(lb) = &cluster.load_balancer {
        outputs.insert(
            "loadBalancerAddress".into(),
            json!({
                "type": "string",
                "value": format!(
                    "[reference({}, '{NETWORK_API}').ipAddress]",
                    resource_id("Microsoft.Network/publicIPAddresses", &[&lb.public_ip])
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                ),
            }),
        );
    }

    let mut template = Map::new();
    template.insert("$schema".into(), json!(SCHEMA));
    template.insert("contentVersion".into(), json!("1.0.0.0"));
    template.insert(
        "metadata".into(),
        json!({
            "generator": { "name": "cluster-deploy", "version": env!("CARGO_PKG_VERSION") },
            "cluster": cluster.name,
        }),
    );
    template.insert("parameters".into(), Value::Object(parameters));
    template.insert("variables".into(), Value::Object(variables));
    template.insert("resources".into(), Value::Array(resources));
    template.insert("outputs".into(), Value::Object(outputs));
    Value::Object(template)
}

fn public_ip(cluster: &Cluster, name: &str, zonal: bool) -> Value {
    let mut ip = json!({
        "type": "Microsoft.Network/publicIPAddresses",
        "apiVersion": NETWORK_API,
        "name": name,
        "location": cluster.location,
        "tags": tags(cluster),
        "sku": { "name": "Standard", "tier": "Regional" },
        "properties": {
            "publicIPAllocationMethod": "Static",
            "publicIPAddressVersion": "IPv4",
        },
    });
    // The load balancer's address is zone-redundant when the scale sets span zones; the NAT
    // gateway is regional (no zone), so its address must be too.
    if zonal && !cluster.zones.is_empty() {
        ip["zones"] = json!(cluster.zones);
    }
    ip
}

fn network_security_group(cluster: &Cluster) -> Value {
    let asg = json!([{ "id": resource_id("Microsoft.Network/applicationSecurityGroups", &[&cluster.names.asg]) }]);
    let rules: Vec<Value> = cluster
        .rules
        .iter()
        .map(|rule| {
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
                p.insert("destinationApplicationSecurityGroups".into(), asg.clone());
            } else {
                p.insert("destinationAddressPrefix".into(), json!("*"));
            }
            p.insert("destinationPortRange".into(), json!(rule.ports));
            json!({ "name": rule.name, "properties": p })
        })
        .collect();
    json!({
        "type": "Microsoft.Network/networkSecurityGroups",
        "apiVersion": NETWORK_API,
        "name": cluster.names.nsg,
        "location": cluster.location,
        "tags": tags(cluster),
        "dependsOn": [resource_id("Microsoft.Network/applicationSecurityGroups", &[&cluster.names.asg])],
        "properties": { "securityRules": rules },
    })
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
                "frontendPortRangeStart": SSH_FRONTEND_PORTS.0,
                "frontendPortRangeEnd": SSH_FRONTEND_PORTS.1,
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

fn subnet_id(cluster: &Cluster) -> String {
    match &cluster.subnet {
        Subnet::Existing { id } => id.clone(),
        Subnet::Created { .. } => resource_id(
            "Microsoft.Network/virtualNetworks/subnets",
            &[&cluster.names.vnet, &cluster.names.subnet],
        ),
    }
}

fn scale_set(cluster: &Cluster, set: &ScaleSet, custom_data: String) -> Value {
    let n = &cluster.names;
    let mut depends = vec![
        resource_id("Microsoft.Network/networkSecurityGroups", &[&n.nsg]),
        resource_id("Microsoft.Network/applicationSecurityGroups", &[&n.asg]),
    ];
    if matches!(cluster.subnet, Subnet::Created { .. }) {
        depends.push(resource_id("Microsoft.Network/virtualNetworks", &[&n.vnet]));
    }
    let mut pools = Vec::new();
    if let Some(lb) = &cluster.load_balancer {
        depends.push(resource_id("Microsoft.Network/loadBalancers", &[&lb.name]));
        for (member, pool) in [
            (set.in_servers_pool, &n.servers_pool),
            (set.in_nodes_pool, &n.nodes_pool),
        ] {
            if member {
                pools.push(json!({
                    "id": resource_id("Microsoft.Network/loadBalancers/backendAddressPools", &[&lb.name, pool])
                }));
            }
        }
    }
    let mut ip_properties = json!({
        "primary": true,
        "privateIPAddressVersion": "IPv4",
        "subnet": { "id": subnet_id(cluster) },
        "applicationSecurityGroups": [
            { "id": resource_id("Microsoft.Network/applicationSecurityGroups", &[&n.asg]) }
        ],
    });
    if !pools.is_empty() {
        ip_properties["loadBalancerBackendAddressPools"] = json!(pools);
    }
    let mut properties = json!({
        "orchestrationMode": "Uniform",
        // Changes to the model reach running instances only when the operator rolls them
        // (see the README: servers one at a time, per Nomad's upgrade guide).
        "upgradePolicy": { "mode": "Manual" },
        // Overprovisioned extras would boot, join as servers and be deleted again.
        "overprovision": false,
        "virtualMachineProfile": {
            "osProfile": {
                "computerNamePrefix": set.computer_name_prefix,
                "adminUsername": cluster.admin_user,
                "customData": custom_data,
                "linuxConfiguration": {
                    "disablePasswordAuthentication": true,
                    "provisionVMAgent": true,
                    "ssh": {
                        "publicKeys": [{
                            "path": format!("/home/{}/.ssh/authorized_keys", cluster.admin_user),
                            "keyData": cluster.ssh_public_key,
                        }],
                    },
                },
            },
            "storageProfile": {
                "imageReference": { "id": cluster.image_id },
                "osDisk": {
                    "createOption": "FromImage",
                    "caching": "ReadWrite",
                    "diskSizeGB": cluster.os_disk_gb,
                    "managedDisk": { "storageAccountType": cluster.os_disk_type },
                },
            },
            "networkProfile": {
                "networkInterfaceConfigurations": [{
                    "name": "nic",
                    "properties": {
                        "primary": true,
                        "networkSecurityGroup": {
                            "id": resource_id("Microsoft.Network/networkSecurityGroups", &[&n.nsg])
                        },
                        "ipConfigurations": [{ "name": "ipconfig", "properties": ip_properties }],
                    },
                }],
            },
            "scheduledEventsProfile": {
                "terminateNotificationProfile": {
                    "enable": true,
                    "notBeforeTimeout": TERMINATE_NOT_BEFORE,
                },
            },
            // Managed boot diagnostics: the serial log shows custom data failures.
            "diagnosticsProfile": { "bootDiagnostics": { "enabled": true } },
        },
    });
    if cluster.zones.len() > 1 {
        properties["zoneBalance"] = json!(true);
    }
    let mut resource = json!({
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "apiVersion": COMPUTE_API,
        "name": set.name,
        "location": cluster.location,
        "tags": tags(cluster),
        "sku": { "name": set.vm_size, "tier": "Standard", "capacity": set.capacity },
        "identity": { "type": "SystemAssigned" },
        "dependsOn": depends,
        "properties": properties,
    });
    if !cluster.zones.is_empty() {
        resource["zones"] = json!(cluster.zones);
    }
    resource
}

fn reader_assignment(cluster: &Cluster, set: &ScaleSet) -> Value {
    let vmss = resource_id("Microsoft.Compute/virtualMachineScaleSets", &[&set.name]);
    let vmss_expr = vmss.trim_start_matches('[').trim_end_matches(']');
    json!({
        "type": "Microsoft.Authorization/roleAssignments",
        "apiVersion": AUTHORIZATION_API,
        // Deterministic, so a redeploy finds the same assignment instead of adding another.
        "name": format!("[guid(resourceGroup().id, '{}', '{READER_ROLE_ID}')]", set.name),
        "dependsOn": [vmss],
        "properties": {
            "roleDefinitionId": format!(
                "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{READER_ROLE_ID}')]"
            ),
            "principalId": format!("[reference({vmss_expr}, '{COMPUTE_API}', 'full').identity.principalId]"),
            "principalType": "ServicePrincipal",
            "description": format!(
                "Nomad cloud auto-join for cluster {} ({}), made by cluster-deploy",
                cluster.name, set.name
            ),
        },
    })
}

/// The deployment parameters: the gossip key when the cluster has one. This value goes only to
/// ARM (in the request body), never to a file or a log.
pub fn parameters(gossip_key: Option<&crate::auth::Secret>) -> Value {
    let mut p = Map::new();
    if let Some(key) = gossip_key {
        p.insert(
            GOSSIP_KEY_PARAMETER.into(),
            json!({ "value": key.expose() }),
        );
    }
    Value::Object(p)
}

/// The template as the pretty JSON written by `plan --out`, newline-terminated.
pub fn to_pretty(template: &Value) -> String {
    let mut text = serde_json::to_string_pretty(template).expect("JSON values serialize");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{example, example_with};

    fn resources_of<'a>(template: &'a Value, kind: &str) -> Vec<&'a Value> {
        template["resources"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["type"] == kind)
            .collect()
    }

    #[test]
    fn tag_values_that_look_like_expressions_stay_text() {
        let mut cluster = example();
        cluster
            .tags
            .insert("team".into(), "[subscription().id]".into());
        let template = render(&cluster);
        for r in template["resources"].as_array().unwrap() {
            if r.get("tags").is_some() {
                assert_eq!(r["tags"]["team"], "[[subscription().id]");
            }
        }
        assert_eq!(literal("plain"), "plain");
    }

    #[test]
    fn rendering_is_deterministic() {
        assert_eq!(render(&example()), render(&example()));
    }

    #[test]
    fn scale_sets_are_uniform_manual_key_only_with_identity_and_notification() {
        let template = render(&example());
        let sets = resources_of(&template, "Microsoft.Compute/virtualMachineScaleSets");
        assert_eq!(sets.len(), 2);
        for set in sets {
            let p = &set["properties"];
            assert_eq!(p["orchestrationMode"], "Uniform");
            assert_eq!(p["upgradePolicy"]["mode"], "Manual");
            assert_eq!(set["identity"]["type"], "SystemAssigned");
            let os = &p["virtualMachineProfile"]["osProfile"];
            assert_eq!(
                os["linuxConfiguration"]["disablePasswordAuthentication"],
                true
            );
            assert!(os.get("adminPassword").is_none());
            assert_eq!(
                p["virtualMachineProfile"]["scheduledEventsProfile"]
                    ["terminateNotificationProfile"]["enable"],
                true
            );
            let nic =
                &p["virtualMachineProfile"]["networkProfile"]["networkInterfaceConfigurations"][0];
            assert_eq!(
                nic["properties"]["networkSecurityGroup"]["id"],
                "[resourceId('Microsoft.Network/networkSecurityGroups', 'nomad-test-nsg')]"
            );
        }
    }

    #[test]
    fn without_gossip_there_is_no_parameter_and_custom_data_is_literal() {
        let template = render(&example());
        assert_eq!(template["parameters"], json!({}));
        let set = resources_of(&template, "Microsoft.Compute/virtualMachineScaleSets")[0];
        let data = set["properties"]["virtualMachineProfile"]["osProfile"]["customData"]
            .as_str()
            .unwrap();
        assert!(!data.starts_with('['));
    }

    #[test]
    fn with_gossip_custom_data_is_joined_at_deployment_time() {
        let mut cluster = example();
        cluster.nomad.gossip = true;
        let template = render(&cluster);
        assert_eq!(
            template["parameters"][GOSSIP_KEY_PARAMETER]["type"],
            "securestring"
        );
        let sets = resources_of(&template, "Microsoft.Compute/virtualMachineScaleSets");
        let server = sets[0]["properties"]["virtualMachineProfile"]["osProfile"]["customData"]
            .as_str()
            .unwrap();
        assert_eq!(
            server,
            "[base64(concat(variables('serverCustomDataHead'), parameters('gossipKey'), variables('serverCustomDataTail')))]"
        );
        assert!(template["variables"]["serverCustomDataHead"].is_string());
    }

    #[test]
    fn egress_by_load_balancer_adds_an_outbound_rule_and_no_nat_gateway() {
        let template = render(&example_with(
            "associate_public_ip_address_load_balancer = true\negress = \"load-balancer\"",
        ));
        assert!(resources_of(&template, "Microsoft.Network/natGateways").is_empty());
        let lb = resources_of(&template, "Microsoft.Network/loadBalancers")[0];
        assert_eq!(lb["properties"]["outboundRules"][0]["name"], "egress");
        let vnet = resources_of(&template, "Microsoft.Network/virtualNetworks")[0];
        assert!(vnet["properties"]["subnets"][0]["properties"]
            .get("natGateway")
            .is_none());
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
}
