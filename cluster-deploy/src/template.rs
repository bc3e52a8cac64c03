//! The cluster model as an ARM deployment template (schema 2019-04-01). Pure: the same model
//! always gives the same JSON, which `tests/` validates against Microsoft's schemas and
//! compares with a golden file.
//!
//! API versions are pinned to the schemas in `../shared/azure-schemas/`. Facts the template
//! relies on (REFERENCE.md, "Azure Resource Manager"):
//! - Network 2025-07-01 subnets have no default outbound access: egress is a NAT gateway or a
//!   load balancer outbound rule, never implicit. A Standard NAT gateway is zonal (or "no
//!   zone", Azure picking one): when the scale sets span zones the gateway is StandardV2, with
//!   a StandardV2 public IP, both zone-redundant.
//! - Basic load balancers and public IPs are retired; inbound NAT pools retire 2027-09-30: a
//!   Standard load balancer with a v2 inbound NAT rule over a port range and a backend pool.
//! - A PUT replaces child collections. So nothing we declare wipes what others added:
//!   - the virtual network is declared without `subnets` (since Network 2023-09-01 a VNet PUT
//!     without the property leaves the subnets alone; an empty list would delete them) and our
//!     subnet is its own child resource, whose PUT touches that subnet only;
//!   - an NSG PUT without `securityRules` still deletes every rule, so the NSG is declared
//!     (with its rules inline) only while it does not exist: the `createNetworkSecurityGroup`
//!     parameter, which apply and plan set from a GET of the NSG, makes it conditional, and
//!     once it exists each of our rules is deployed as its own child resource (one after the
//!     other: the Network provider serializes writes to one NSG). Our rules keep their names
//!     and priorities in every template (see [`crate::model`]), so each redeploy overwrites
//!     them, and rules added outside cluster-deploy stay.
//! - The Reader assignment names `principalType: ServicePrincipal` so a fresh identity is not
//!   refused with `PrincipalNotFound` while it replicates.
//! - Each scale set reports instance health through the Application Health extension (binary
//!   health states, `typeHandlerVersion` 1.0: HTTP 200 is healthy), probing Nomad on the HTTP
//!   port over `https` when Nomad serves TLS, and has automatic repairs with a grace period
//!   that covers boot.

use serde_json::{json, Map, Value};

use crate::config::NatGatewaySku;
use crate::custom_data::{self, Script};
use crate::model::{
    health_path, Cluster, Protocol, Role, Rule, ScaleSet, Source, Subnet, HEALTH_PATH,
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

/// The bool parameter that says whether the NSG is to be created with its rules (true, the
/// default) or already exists, its rules then deployed one by one (false).
pub const CREATE_NSG_PARAMETER: &str = "createNetworkSecurityGroup";

/// How long a VM about to be deleted waits for the terminate notification (ISO 8601; the scale
/// set allows 5 to 15 minutes). Five minutes is enough to drain a Nomad client.
pub const TERMINATE_NOT_BEFORE: &str = "PT5M";

/// The Application Health extension for Linux (publisher, type, the binary-states version).
pub const HEALTH_EXTENSION: (&str, &str, &str) =
    ("Microsoft.ManagedServices", "ApplicationHealthLinux", "1.0");

/// Seconds between health probes, and failed probes before an instance is unhealthy.
pub const HEALTH_PROBE_INTERVAL_SECS: u32 = 10;
pub const HEALTH_PROBE_COUNT: u32 = 3;

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

/// The ARM template expression for a resource id, without its brackets (for use inside
/// another expression).
fn id_expression(kind: &str, names: &[&str]) -> String {
    resource_id(kind, names)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string()
}

/// The template for a cluster.
pub fn render(cluster: &Cluster) -> Value {
    let n = &cluster.names;
    let mut resources = Vec::new();
    let mut variables = Map::new();
    let mut parameters = Map::new();

    parameters.insert(
        CREATE_NSG_PARAMETER.to_string(),
        json!({
            "type": "bool",
            "defaultValue": true,
            "metadata": {
                "description": "true: create the network security group with its rules; false: it exists, so only its rules are deployed, one by one, and rules added outside cluster-deploy stay. cluster-deploy sets it from a GET of the group."
            },
        }),
    );
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
    for set in cluster.scale_sets() {
        let custom_data = match custom_data::script(cluster, set) {
            Script::Plain(text) => custom_data::encode(&text),
            Script::AroundKey { head, tail } => {
                let (head_var, tail_var) = match set.role {
                    Role::Server => ("serverCustomDataHead", "serverCustomDataTail"),
                    Role::Client => unreachable!("only servers get the gossip key"),
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
    if let Some(first) = cluster.client_pools.first() {
        outputs.insert(
            "clientScaleSet".into(),
            json!({ "type": "string", "value": first.name }),
        );
    }
    outputs.insert(
        "clientScaleSets".into(),
        json!({
            "type": "array",
            "value": cluster.client_pools.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        }),
    );
    outputs.insert(
        "networkSecurityGroupId".into(),
        json!({
            "type": "string",
            "value": resource_id("Microsoft.Network/networkSecurityGroups", &[&n.nsg]),
        }),
    );
    if let Some(lb) = &cluster.load_balancer {
        outputs.insert(
            "loadBalancerAddress".into(),
            json!({
                "type": "string",
                "value": format!(
                    "[reference({}, '{NETWORK_API}').ipAddress]",
                    id_expression("Microsoft.Network/publicIPAddresses", &[&lb.public_ip])
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

fn subnet_id(cluster: &Cluster) -> String {
    match &cluster.subnet {
        Subnet::Existing { id } => id.clone(),
        Subnet::Created { .. } => resource_id(
            "Microsoft.Network/virtualNetworks/subnets",
            &[&cluster.names.vnet, &cluster.names.subnet],
        ),
    }
}

/// The Application Health extension: Nomad's HTTP port on the VM itself, over https when
/// Nomad serves TLS. Binary health states: a 200 is healthy, anything else (or nothing) is
/// unhealthy after [`HEALTH_PROBE_COUNT`] probes.
fn health_extension(cluster: &Cluster, set: &ScaleSet) -> Value {
    let (publisher, kind, version) = HEALTH_EXTENSION;
    json!({
        "name": "nomad-health",
        "properties": {
            "publisher": publisher,
            "type": kind,
            "typeHandlerVersion": version,
            "autoUpgradeMinorVersion": true,
            "settings": {
                "protocol": cluster.health.protocol,
                "port": cluster.http_port,
                "requestPath": health_path(set.role),
                "intervalInSeconds": HEALTH_PROBE_INTERVAL_SECS,
                "numberOfProbes": HEALTH_PROBE_COUNT,
            },
        },
    })
}

fn scale_set(cluster: &Cluster, set: &ScaleSet, custom_data: String) -> Value {
    let n = &cluster.names;
    let mut depends = vec![
        resource_id("Microsoft.Network/networkSecurityGroups", &[&n.nsg]),
        resource_id("Microsoft.Network/applicationSecurityGroups", &[&n.asg]),
    ];
    if matches!(cluster.subnet, Subnet::Created { .. }) {
        depends.push(resource_id(
            "Microsoft.Network/virtualNetworks/subnets",
            &[&n.vnet, &n.subnet],
        ));
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
    let mut profile = json!({
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
        // Stated either way: a later apply that turns it off must say so.
        "securityProfile": { "encryptionAtHost": cluster.encryption_at_host },
        "extensionProfile": { "extensions": [health_extension(cluster, set)] },
        "scheduledEventsProfile": {
            "terminateNotificationProfile": {
                "enable": true,
                "notBeforeTimeout": TERMINATE_NOT_BEFORE,
            },
        },
        // Managed boot diagnostics: the serial log shows custom data failures.
        "diagnosticsProfile": { "bootDiagnostics": { "enabled": true } },
    });
    if let Some(spot) = &set.spot {
        profile["priority"] = json!("Spot");
        profile["evictionPolicy"] = json!(spot.eviction_policy.as_str());
        profile["billingProfile"] = json!({ "maxPrice": spot.max_price });
    }
    let mut properties = json!({
        "orchestrationMode": "Uniform",
        // Changes to the model reach running instances only when the operator rolls them
        // (see the README: servers one at a time, per Nomad's upgrade guide).
        "upgradePolicy": { "mode": "Manual" },
        // Overprovisioned extras would boot, join as servers and be deleted again.
        "overprovision": false,
        // A dead or hung VM stops answering the health extension; the scale set replaces it
        // once the grace period after its last state change (boot, reimage) has passed.
        "automaticRepairsPolicy": {
            "enabled": cluster.health.automatic_repairs,
            "gracePeriod": cluster.health.grace_period,
            "repairAction": "Replace",
        },
        "virtualMachineProfile": profile,
    });
    if !set.single_placement_group {
        // Above 100 instances; Azure allows true -> false on an existing scale set, never back.
        properties["singlePlacementGroup"] = json!(false);
    }
    if cluster.zones.len() > 1 {
        properties["zoneBalance"] = json!(true);
    }
    let mut resource = json!({
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "apiVersion": COMPUTE_API,
        "name": set.name,
        "location": cluster.location,
        "tags": tags(cluster),
        "sku": { "name": set.vm_size, "tier": cluster.sku_tier, "capacity": set.capacity },
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
/// ARM (in the request body), never to a file or a log. `createNetworkSecurityGroup` keeps its
/// default (true) unless [`with_existing_nsg`] says otherwise.
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

/// The parameters with `createNetworkSecurityGroup` set from whether the NSG exists (a GET by
/// the caller): an existing NSG is not declared again, so rules others added to it stay.
pub fn with_existing_nsg(mut parameters: Value, nsg_exists: bool) -> Value {
    parameters[CREATE_NSG_PARAMETER] = json!({ "value": !nsg_exists });
    parameters
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
    fn without_gossip_there_is_no_key_parameter_and_custom_data_is_literal() {
        let template = render(&example());
        let names: Vec<&String> = template["parameters"].as_object().unwrap().keys().collect();
        assert_eq!(names, [CREATE_NSG_PARAMETER]);
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
        let p = with_existing_nsg(parameters(None), true);
        assert_eq!(p[CREATE_NSG_PARAMETER]["value"], false);
    }

    fn scale_set_named<'a>(template: &'a Value, name: &str) -> &'a Value {
        resources_of(template, "Microsoft.Compute/virtualMachineScaleSets")
            .into_iter()
            .find(|s| s["name"] == name)
            .unwrap()
    }

    #[test]
    fn every_scale_set_reports_health_and_is_repaired() {
        let template = render(&example());
        for (name, path) in [
            ("nomad-test-servers", "/v1/regions"),
            ("nomad-test-clients", "/v1/agent/health"),
        ] {
            let set = scale_set_named(&template, name);
            let repairs = &set["properties"]["automaticRepairsPolicy"];
            assert_eq!(repairs["enabled"], true);
            assert_eq!(repairs["gracePeriod"], "PT30M");
            assert_eq!(repairs["repairAction"], "Replace");
            let ext = &set["properties"]["virtualMachineProfile"]["extensionProfile"]["extensions"]
                [0]["properties"];
            assert_eq!(ext["publisher"], "Microsoft.ManagedServices");
            assert_eq!(ext["type"], "ApplicationHealthLinux");
            assert_eq!(ext["typeHandlerVersion"], "1.0");
            assert_eq!(ext["settings"]["protocol"], "http");
            assert_eq!(ext["settings"]["port"], 4646);
            assert_eq!(ext["settings"]["requestPath"], path, "{name}");
        }
        // With TLS the probe speaks https; repairs can be switched off.
        let template = render(&example_with(
            "[nomad.tls]\nca_file = \"/t/ca.pem\"\ncert_file = \"/t/c.pem\"\nkey_file = \"/t/k.pem\"\n\
             [health]\nautomatic_repairs = false\nrepair_grace_period_minutes = 45\n",
        ));
        let set = scale_set_named(&template, "nomad-test-clients");
        assert_eq!(
            set["properties"]["virtualMachineProfile"]["extensionProfile"]["extensions"][0]
                ["properties"]["settings"]["protocol"],
            "https"
        );
        let repairs = &set["properties"]["automaticRepairsPolicy"];
        assert_eq!(repairs["enabled"], false);
        assert_eq!(repairs["gracePeriod"], "PT45M");
    }

    #[test]
    fn large_spot_and_encrypted_pools_say_so() {
        let template = render(&example_with(
            "encryption_at_host = true\nsubnet_address = \"10.0.0.0/20\"\n\
             [[client_pool]]\nname = \"batch\"\ncount = 250\nspot = true\neviction_policy = \"Deallocate\"\nmax_price = 0.05\n\
             [[client_pool]]\nname = \"web\"\ncount = 3\n",
        ));
        let batch = scale_set_named(&template, "nomad-test-batch");
        assert_eq!(batch["properties"]["singlePlacementGroup"], false);
        assert_eq!(batch["sku"]["capacity"], 250);
        let profile = &batch["properties"]["virtualMachineProfile"];
        assert_eq!(profile["priority"], "Spot");
        assert_eq!(profile["evictionPolicy"], "Deallocate");
        assert_eq!(profile["billingProfile"]["maxPrice"], 0.05);
        assert_eq!(profile["securityProfile"]["encryptionAtHost"], true);
        let web = scale_set_named(&template, "nomad-test-web");
        assert!(web["properties"].get("singlePlacementGroup").is_none());
        assert!(web["properties"]["virtualMachineProfile"]
            .get("priority")
            .is_none());
        assert_eq!(
            template["outputs"]["clientScaleSets"]["value"],
            json!(["nomad-test-batch", "nomad-test-web"])
        );
        // Both pools have a Reader assignment of their own.
        assert_eq!(
            resources_of(&template, "Microsoft.Authorization/roleAssignments").len(),
            3
        );
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
