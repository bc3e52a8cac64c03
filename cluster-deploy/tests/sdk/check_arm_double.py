"""Drives the ARM double with Microsoft's own Python SDKs through every operation cluster-deploy
uses, and reads every answer through the SDKs' generated models (which follow Microsoft's REST
specs). cluster-deploy/tests/sdk.rs checks that every operation the tools send in their
conformance run is among those this script made.

api-versions: each SDK sends its own default where that default is one operations.json lists
for the path (azure-mgmt-resource's ResourceManagementClient: 2025-04-01; azure-mgmt-
authorization: 2022-04-01 for role assignments and permissions; azure-mgmt-compute's
ResourceSkus_List: 2021-07-01). The pins below are only where the SDK's default is not in the
specs stored under ../shared/azure-rest-specs (the SDKs pinned in requirements.txt default to
newer versions than those specs): azure-mgmt-resource-deployments 2.0.0 defaults to 2026-06-01,
azure-mgmt-compute 39.0.0 to 2026-04-01 (scale sets, usages), azure-mgmt-network 33.1.0 to
2026-03-01 (and 2018-10-01 for the scale-set NIC listing, whose spec enum is 2017-03-30),
azure-mgmt-keyvault 14.1.0 to 2026-05-15.

Usage: check_arm_double.py <arm url> <subscription> <token> <template.json> <group> <scale set>

The SDKs refuse bearer tokens over plain http (azure-core's BearerTokenCredentialPolicy): the
clients get a small authentication policy of their own instead, which sets the static token
the double accepts. Everything else (retries, long-running polling, paging) is the SDKs' own.
"""

import json
import sys

from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.deployments import DeploymentsMgmtClient
from azure.mgmt.resource.resources import ResourceManagementClient

# Pinned: the SDK's default is not a version of the stored specs (see above).
DEPLOYMENTS = "2025-04-01"
COMPUTE = "2024-11-01"
NETWORK = "2025-07-01"
VMSS_NETWORK = "2017-03-30"
KEYVAULT = "2025-05-01"


class StaticBearer(SansIOHTTPPolicy):
    def __init__(self, token):
        super().__init__()
        self.token = token

    def on_request(self, request):
        request.http_request.headers["Authorization"] = "Bearer " + self.token


class NoCredential:
    """The clients want a credential object; the policy above is what authenticates."""

    def get_token(self, *scopes, **kwargs):
        raise AssertionError("the static bearer policy authenticates")


def check(condition, what):
    if not condition:
        raise AssertionError(what)
    print("ok", what, flush=True)


def main():
    base, subscription, token, template_file, group, scale_set = sys.argv[1:7]
    template = json.load(open(template_file))
    common = dict(base_url=base, authentication_policy=StaticBearer(token), polling_interval=0,
                  retry_total=0)
    cred = NoCredential()
    resources = ResourceManagementClient(cred, subscription, **common)
    deployments = DeploymentsMgmtClient(cred, subscription, api_version=DEPLOYMENTS, **common)
    compute = ComputeManagementClient(cred, subscription, **common)
    network = NetworkManagementClient(cred, subscription, **common)
    auth = AuthorizationManagementClient(cred, subscription, **common)
    keyvault = KeyVaultManagementClient(cred, subscription, api_version=KEYVAULT, **common)

    rg = resources.resource_groups.create_or_update(group, {"location": "westeurope", "tags": {"nomad-cluster": "sdk"}})
    check(rg.name == group and rg.properties.provisioning_state == "Succeeded", "ResourceGroups_CreateOrUpdate")
    check(resources.resource_groups.get(group).location == "westeurope", "ResourceGroups_Get")

    perms = list(auth.permissions.list_for_resource_group(group))
    check(perms and "*" in perms[0].actions, "Permissions_ListForResourceGroup")
    usages = list(compute.usage.list("westeurope", api_version=COMPUTE))
    check(any(u.name.value == "cores" and u.limit > 0 for u in usages), "Usage_List (paged)")
    skus = list(compute.resource_skus.list(filter="location eq 'westeurope'"))
    d2 = [s for s in skus if s.name == "Standard_D2s_v5"]
    check(d2 and d2[0].family and any(c.name == "vCPUs" for c in d2[0].capabilities), "ResourceSkus_List (paged)")

    body = {"properties": {"mode": "Incremental", "template": template, "parameters": {}}}
    what_if = deployments.deployments.begin_what_if(group, "sdk", body).result()
    check(what_if.status == "Succeeded" and all(c.change_type == "Create" for c in what_if.changes),
          "Deployments_WhatIf (202 + Location, polled to the result)")
    deployed = deployments.deployments.begin_create_or_update(group, "sdk", body).result()
    check(deployed.properties.provisioning_state == "Succeeded", "Deployments_CreateOrUpdate (201 + Azure-AsyncOperation)")
    check(deployments.deployments.get(group, "sdk").name == "sdk", "Deployments_Get")
    ops = list(deployments.deployment_operations.list(group, "sdk"))
    # The template's conditions: the NSG is declared while it does not exist (parameter default
    # true), its rules one by one once it does. Any other form is not expected here.
    def deployed(resource):
        condition = resource.get("condition")
        if condition is None:
            return True
        if condition == "[parameters('createNetworkSecurityGroup')]":
            return True
        if condition == "[not(parameters('createNetworkSecurityGroup'))]":
            return False
        raise AssertionError("unexpected template condition %r" % condition)
    expected = sum(1 for r in template["resources"] if deployed(r))
    check(len(ops) == expected and all(o.properties.provisioning_state == "Succeeded" for o in ops),
          "DeploymentOperations_List (paged)")

    listed = list(resources.resources.list_by_resource_group(group))
    check(len(listed) >= 2 and all(r.tags is not None for r in listed), "Resources_ListByResourceGroup (paged)")
    tagged = list(resources.resources.list_by_resource_group(group, filter="tagName eq 'nomad-cluster' and tagValue eq 'nomad-example'"))
    check(tagged and all(r.tags is None for r in tagged), "Resources_ListByResourceGroup with a tag filter: no tags")

    vmss = compute.virtual_machine_scale_sets.get(group, scale_set, api_version=COMPUTE)
    check(vmss.sku.capacity > 0 and vmss.identity.principal_id, "VirtualMachineScaleSets_Get")
    vms = list(compute.virtual_machine_scale_set_vms.list(group, scale_set, expand="instanceView", api_version=COMPUTE))
    check(len(vms) == vmss.sku.capacity and all(v.vm_id and v.latest_model_applied and v.os_profile.computer_name
                                                  and v.instance_view.statuses for v in vms),
          "VirtualMachineScaleSetVMs_List $expand=instanceView")
    nics = list(network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(
        group, scale_set, api_version=VMSS_NETWORK))
    check(len(nics) == len(vms) and all(n.ip_configurations[0].private_ip_address for n in nics),
          "NetworkInterfaces_ListVirtualMachineScaleSetNetworkInterfaces at 2017-03-30")
    ips = [r for r in listed if r.type == "Microsoft.Network/publicIPAddresses"]
    for ip in ips:
        check(network.public_ip_addresses.get(group, ip.name, api_version=NETWORK).ip_address, "PublicIPAddresses_Get")

    scaled = compute.virtual_machine_scale_sets.begin_update(
        group, scale_set, {"sku": {"capacity": vmss.sku.capacity + 1}}, api_version=COMPUTE).result()
    check(scaled.sku.capacity == vmss.sku.capacity + 1, "VirtualMachineScaleSets_Update (capacity)")
    compute.virtual_machine_scale_sets.begin_update_instances(
        group, scale_set, {"instanceIds": [vms[0].instance_id]}, api_version=COMPUTE).result()
    check(True, "VirtualMachineScaleSets_UpdateInstances (manualupgrade)")
    compute.virtual_machine_scale_sets.begin_delete_instances(
        group, scale_set, {"instanceIds": [vms[0].instance_id]}, api_version=COMPUTE).result()
    left = list(compute.virtual_machine_scale_set_vms.list(group, scale_set, api_version=COMPUTE))
    check(len(left) == vmss.sku.capacity and vms[0].instance_id not in [v.instance_id for v in left],
          "VirtualMachineScaleSets_DeleteInstances")

    # Every network resource of the template, read the way destroy reads it before deleting.
    gets = {
        "Microsoft.Network/networkSecurityGroups": (network.network_security_groups.get, "NetworkSecurityGroups_Get"),
        "Microsoft.Network/applicationSecurityGroups": (network.application_security_groups.get, "ApplicationSecurityGroups_Get"),
        "Microsoft.Network/natGateways": (network.nat_gateways.get, "NatGateways_Get"),
        "Microsoft.Network/virtualNetworks": (network.virtual_networks.get, "VirtualNetworks_Get"),
        "Microsoft.Network/loadBalancers": (network.load_balancers.get, "LoadBalancers_Get"),
    }
    for kind, (get, operation) in gets.items():
        found = [r for r in listed if r.type == kind]
        for r in found:
            check(get(group, r.name, api_version=NETWORK).name == r.name, operation)
        if not found:
            raise AssertionError("the template has no %s" % kind)
    # The template's own subnet and security rules, each read and deleted by its own id
    # (Subnets_Get/_Delete, SecurityRules_Get/_Delete), as destroy deletes them.
    children = [(r, c) for r in template["resources"] for c in [r["type"]] if c.endswith("/subnets") or c.endswith("/securityRules")]
    check(children, "the template declares child resources")
    for r, kind in children:
        parent, name = r["name"].split("/")
        if kind.endswith("/subnets"):
            subnet = network.subnets.get(group, parent, name, api_version=NETWORK)
            check(subnet.name == name and subnet.address_prefix and subnet.provisioning_state == "Succeeded", "Subnets_Get")
        else:
            rule = network.security_rules.get(group, parent, name, api_version=NETWORK)
            check(rule.name == name and rule.priority and rule.provisioning_state == "Succeeded", "SecurityRules_Get")

    principal = vmss.identity.principal_id
    scope = "/subscriptions/%s/resourceGroups/%s" % (subscription, group)
    # Role assignments on the vault and on a secret (the operator's Secrets Officer, each scale
    # set's Secrets User), read and deleted at their own scope.
    for r in [r for r in listed if r.type == "Microsoft.KeyVault/vaults"]:
        vault_scope = r.id
        on_vault = [a for a in auth.role_assignments.list_for_scope(vault_scope) if a.scope.lower() == vault_scope.lower()]
        check(on_vault, "RoleAssignments_ListForScope at the vault")
        a = on_vault[0]
        check(auth.role_assignments.get(vault_scope, a.name).scope.lower() == vault_scope.lower(), "RoleAssignments_Get at a vault")
        auth.role_assignments.delete(vault_scope, a.name)
        check(True, "RoleAssignments_Delete at a vault")
        on_secret = [a for a in auth.role_assignments.list_for_scope(vault_scope) if "/secrets/" in a.scope.lower()]
        check(on_secret, "RoleAssignments_ListForScope below the vault: the secrets' assignments")
        a = on_secret[0]
        check(auth.role_assignments.get(a.scope, a.name).principal_id, "RoleAssignments_Get at a secret")
        auth.role_assignments.delete(a.scope, a.name)
        check(True, "RoleAssignments_Delete at a secret")
    assignments = list(auth.role_assignments.list_for_scope(scope, filter="principalId eq '%s'" % principal))
    check(assignments and assignments[0].principal_id == principal, "RoleAssignments_ListForScope principalId filter")
    name = assignments[0].name
    check(auth.role_assignments.get(scope, name).name == name, "RoleAssignments_Get")
    auth.role_assignments.delete(scope, name)
    check(True, "RoleAssignments_Delete")

    # Deletions, dependents first, each with its provider's own operation and api-version.
    for a in list(auth.role_assignments.list_for_scope(scope)):
        auth.role_assignments.delete(scope, a.name)
    for r in listed:
        if r.type == "Microsoft.Compute/virtualMachineScaleSets":
            compute.virtual_machine_scale_sets.begin_delete(group, r.name, api_version=COMPUTE).result()
    check(True, "VirtualMachineScaleSets_Delete (202, polled)")
    # The vault before the network: its firewall rule names the subnet.
    for r in [r for r in listed if r.type == "Microsoft.KeyVault/vaults"]:
        vault = keyvault.vaults.get(group, r.name)
        check(vault.properties.enable_rbac_authorization and vault.properties.network_acls.default_action == "Deny",
              "Vaults_Get (the template's vault: RBAC, a firewall)")
        keyvault.vaults.delete(group, r.name)
        check(keyvault.vaults.get_deleted(r.name, vault.location).name == r.name, "Vaults_Delete (soft delete)")
    for r, kind in children:
        parent, name = r["name"].split("/")
        if kind.endswith("/subnets"):
            network.subnets.begin_delete(group, parent, name, api_version=NETWORK).result()
            gone = [s.name for s in network.virtual_networks.get(group, parent, api_version=NETWORK).subnets or []]
            check(name not in gone, "Subnets_Delete (202 + Location, polled)")
        else:
            network.security_rules.begin_delete(group, parent, name, api_version=NETWORK).result()
            gone = [s.name for s in network.network_security_groups.get(group, parent, api_version=NETWORK).security_rules or []]
            check(name not in gone, "SecurityRules_Delete (202 + Location, polled)")
    deletes = [
        ("Microsoft.Network/loadBalancers", network.load_balancers.begin_delete),
        ("Microsoft.Network/virtualNetworks", network.virtual_networks.begin_delete),
        ("Microsoft.Network/natGateways", network.nat_gateways.begin_delete),
        ("Microsoft.Network/publicIPAddresses", network.public_ip_addresses.begin_delete),
        ("Microsoft.Network/networkSecurityGroups", network.network_security_groups.begin_delete),
        ("Microsoft.Network/applicationSecurityGroups", network.application_security_groups.begin_delete),
    ]
    for kind, delete in deletes:
        for r in [r for r in listed if r.type == kind]:
            try:
                delete(group, r.name, api_version=NETWORK).result()
            except Exception as e:  # a public IP still held by the NAT gateway: deleted later
                if "InUseResourceCannotBeDeleted" not in str(e):
                    raise
        check(True, kind.split("/")[1] + "_Delete (202 + Location, polled)")
    left = [r.id for r in resources.resources.list_by_resource_group(group)]
    check(not left, "everything deleted (left: %s)" % left)
    deployments.deployments.begin_delete(group, "sdk").result()
    try:
        deployments.deployments.get(group, "sdk")
        raise AssertionError("the deployment record is still there after Deployments_Delete")
    except ResourceNotFoundError:
        check(True, "Deployments_Delete (202 + Location, polled to 204; the record is gone)")
    resources.resource_groups.begin_delete(group).result()
    check(True, "ResourceGroups_Delete")


if __name__ == "__main__":
    main()
