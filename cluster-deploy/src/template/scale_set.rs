//! The scale sets of the template (the servers and each client pool), with their health
//! extension and repairs policy, and each one's Reader assignment for cloud auto-join.

use serde_json::{json, Value};

use super::{
    resource_id, tags, AUTHORIZATION_API, COMPUTE_API, HEALTH_EXTENSION, HEALTH_PROBE_COUNT,
    HEALTH_PROBE_INTERVAL_SECS, READER_ROLE_ID, TERMINATE_NOT_BEFORE,
};
use crate::model::{health_path, Cluster, ScaleSet, Subnet};

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
pub(super) fn scale_set(cluster: &Cluster, set: &ScaleSet, custom_data: String) -> Value {
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
    // The main template re-declares the vault with the rule that admits the subnet (the first
    // deployment made it without, before the subnet existed). run-nomad reads the vault once,
    // from custom data, at first boot: no VM may exist before that rule does.
    if let Some(vault) = &cluster.security.key_vault {
        depends.push(super::key_vault::vault_id(vault));
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
        // Managed boot diagnostics: the serial log shows custom data failures.
        "diagnosticsProfile": { "bootDiagnostics": { "enabled": true } },
    });
    match &set.spot {
        // A deletion (scale-in, `roll`) sends a Terminate scheduled event this long ahead;
        // run-nomad's watcher drains a client or stops a server in it, then approves.
        None => {
            profile["scheduledEventsProfile"] = json!({
                "terminateNotificationProfile": {
                    "enable": true,
                    "notBeforeTimeout": TERMINATE_NOT_BEFORE,
                },
            });
        }
        // "Terminate notifications cannot be enabled on Spot instances" (Microsoft, "Terminate
        // notification for Azure Virtual Machine Scale Set instances"): a Spot VM gets a
        // Preempt event 30 seconds before an eviction instead, which the watcher also handles.
        Some(spot) => {
            profile["priority"] = json!("Spot");
            profile["evictionPolicy"] = json!(spot.eviction_policy.as_str());
            profile["billingProfile"] = json!({ "maxPrice": spot.max_price });
        }
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
pub(super) fn reader_assignment(cluster: &Cluster, set: &ScaleSet) -> Value {
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

#[cfg(test)]
mod tests {
    use super::super::tests::resources_of;
    use super::super::*;
    use crate::model::tests::{example, example_with};
    use serde_json::{json, Value};

    fn scale_set_named<'a>(template: &'a Value, name: &str) -> &'a Value {
        resources_of(template, "Microsoft.Compute/virtualMachineScaleSets")
            .into_iter()
            .find(|s| s["name"] == name)
            .unwrap()
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
    fn scale_sets_wait_for_the_vault_that_admits_their_subnet() {
        let template = render(&example());
        let name = resources_of(&template, "Microsoft.KeyVault/vaults")[0]["name"]
            .as_str()
            .unwrap();
        let vault = format!("[resourceId('Microsoft.KeyVault/vaults', '{name}')]");
        for name in ["nomad-test-servers", "nomad-test-clients"] {
            let depends = scale_set_named(&template, name)["dependsOn"]
                .as_array()
                .unwrap();
            assert!(depends.iter().any(|d| *d == vault), "{name}: {depends:?}");
        }
        // Without a vault there is nothing to wait for.
        let template = render(&example_with(
            "[nomad]\nacl = false\ngossip_encryption = false\n[nomad.tls]\nenabled = false\n",
        ));
        let depends = scale_set_named(&template, "nomad-test-servers")["dependsOn"]
            .as_array()
            .unwrap();
        assert!(
            !depends
                .iter()
                .any(|d| d.as_str().unwrap().contains("KeyVault")),
            "{depends:?}"
        );
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
            assert_eq!(ext["settings"]["protocol"], "https", "TLS is on by default");
            assert_eq!(ext["settings"]["port"], 4646);
            assert_eq!(ext["settings"]["requestPath"], path, "{name}");
        }
        // Without TLS the probe speaks http; repairs can be switched off.
        let template = render(&example_with(
            "[nomad.tls]\nenabled = false\n\
             [health]\nautomatic_repairs = false\nrepair_grace_period_minutes = 45\n",
        ));
        let set = scale_set_named(&template, "nomad-test-clients");
        assert_eq!(
            set["properties"]["virtualMachineProfile"]["extensionProfile"]["extensions"][0]
                ["properties"]["settings"]["protocol"],
            "http"
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
        // Azure refuses terminate notifications on Spot instances; they get Preempt events.
        assert!(profile.get("scheduledEventsProfile").is_none(), "{profile}");
        assert_eq!(profile["evictionPolicy"], "Deallocate");
        assert_eq!(profile["billingProfile"]["maxPrice"], 0.05);
        assert_eq!(profile["securityProfile"]["encryptionAtHost"], true);
        let web = scale_set_named(&template, "nomad-test-web");
        assert_eq!(
            web["properties"]["virtualMachineProfile"]["scheduledEventsProfile"],
            json!({ "terminateNotificationProfile": { "enable": true, "notBeforeTimeout": "PT5M" } })
        );
        assert!(web["properties"].get("singlePlacementGroup").is_none());
        assert!(web["properties"]["virtualMachineProfile"]
            .get("priority")
            .is_none());
        assert_eq!(
            template["outputs"]["clientScaleSets"]["value"],
            json!(["nomad-test-batch", "nomad-test-web"])
        );
        // Both pools have a Reader assignment of their own (on the group: no `scope`).
        assert_eq!(
            resources_of(&template, "Microsoft.Authorization/roleAssignments")
                .into_iter()
                .filter(|r| r.get("scope").is_none())
                .count(),
            3
        );
    }
}
