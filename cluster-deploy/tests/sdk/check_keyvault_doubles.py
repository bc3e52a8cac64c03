"""Drives the Key Vault doubles with Microsoft's own Python SDKs: azure-mgmt-keyvault against the
ARM double's Key Vault management (vaults, soft delete, recovery, purge, name availability),
azure-mgmt-authorization for a role assignment on the vault, and azure-keyvault-secrets against
the data-plane double, with the SDK's own challenge flow (a first request without a token, the
401's WWW-Authenticate parsed by the SDK, the token asked for the scope and tenant the challenge
names), pollers (delete and recover wait on GetDeletedSecret/GetSecret) and paging.

Usage: check_keyvault_doubles.py <arm url> <subscription> <arm token> <vault data-plane url>
       <vault name> <principal id> <key vault token> <tenant> <tls dir>

The management SDKs refuse bearer tokens over plain http: they get a static-token policy, as in
check_arm_double.py. azure-keyvault-secrets refuses non-https URLs outright, so this script
puts a TLS front (Python's ssl, certificates made by cluster-deploy's own PKI and trusted by the
SDK through `connection_verify`) before the loopback double. The SDK checks that a challenge's
resource matches the vault's DNS name (`*.vault.azure.net`); the loopback address cannot, so that
single check is off (`verify_challenge_resource=False`).
"""

import http.client
import json
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.keyvault.secrets import SecretClient
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.keyvault import KeyVaultManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

# The static-token policy, the placeholder credential and `check` of the ARM double's check.
from check_arm_double import NoCredential, StaticBearer, check

KEYVAULT = "2025-05-01"
RESOURCES = "2025-04-01"
AUTHORIZATION = "2022-04-01"
SECRETS_OFFICER = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7"


class VaultCredential:
    """Hands out the Key Vault token, recording what the SDK asked for."""

    def __init__(self, token):
        self.token = token
        self.asked = []

    def get_token(self, *scopes, claims=None, tenant_id=None, enable_cae=False, **kwargs):
        self.asked.append((scopes, tenant_id))
        return AccessToken(self.token, int(time.time()) + 3600)


def tls_front(backend, tls_dir):
    """An https listener on 127.0.0.1 that forwards every request to the plain-http double."""
    target = urlparse(backend)

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            headers["X-Forwarded-Proto"] = "https"
            conn.request(self.command, self.path, body=body, headers=headers)
            answer = conn.getresponse()
            data = answer.read()
            self.send_response(answer.status)
            for k, v in answer.getheaders():
                if k.lower() not in ("connection", "content-length", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(f"{tls_dir}/server.pem", f"{tls_dir}/server-key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"https://127.0.0.1:{server.server_address[1]}"


def expect_error(call, status, code, what):
    try:
        call()
    except HttpResponseError as e:
        got = e.error.code if e.error else None
        check(e.status_code == status and got == code, f"{what} ({status} {code})")
        return
    raise AssertionError(f"{what}: no error")


def main():
    arm_url, subscription, arm_token, vault_backend, vault, principal, kv_token, tenant, tls_dir = sys.argv[1:10]
    mgmt = dict(base_url=arm_url, authentication_policy=StaticBearer(arm_token), polling_interval=0, retry_total=0)
    resources = ResourceManagementClient(NoCredential(), subscription, api_version=RESOURCES, **mgmt)
    keyvault = KeyVaultManagementClient(NoCredential(), subscription, api_version=KEYVAULT, **mgmt)
    auth = AuthorizationManagementClient(NoCredential(), subscription, api_version=AUTHORIZATION, **mgmt)

    resources.resource_groups.create_or_update("kv-sdk", {"location": "westeurope"})
    params = {
        "location": "westeurope",
        "tags": {"nomad-cluster": "sdk"},
        # REST names: this SDK's models take the wire format in a plain dict.
        "properties": {
            "tenantId": tenant,
            "sku": {"family": "A", "name": "standard"},
            "accessPolicies": [],
            "enableRbacAuthorization": True,
            "softDeleteRetentionInDays": 7,
            "networkAcls": {"defaultAction": "Deny", "bypass": "None", "ipRules": [{"value": "127.0.0.1"}]},
        },
    }
    created = keyvault.vaults.begin_create_or_update("kv-sdk", vault, params).result()
    check(created.properties.enable_rbac_authorization and created.properties.vault_uri == f"https://{vault}.vault.azure.net/",
          "Vaults_CreateOrUpdate (long-running, polled)")
    got = keyvault.vaults.get("kv-sdk", vault)
    check(got.properties.network_acls.ip_rules[0].value == "127.0.0.1/32"
          and got.properties.soft_delete_retention_in_days == 7, "Vaults_Get (network rules as Key Vault returns them)")
    listed = list(keyvault.vaults.list_by_resource_group("kv-sdk"))
    check([v.name for v in listed] == [vault], "Vaults_ListByResourceGroup (paged)")
    available = keyvault.vaults.check_name_availability({"name": vault, "type": "Microsoft.KeyVault/vaults"})
    check(available.name_available is False and available.reason == "AlreadyExists", "Vaults_CheckNameAvailability")

    def grant(name):
        return auth.role_assignments.create(
            got.id, name,
            {"role_definition_id": f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_OFFICER}",
             "principal_id": principal, "principal_type": "ServicePrincipal"})

    assignment = grant(str(uuid.uuid4()))
    check(assignment.scope.lower() == got.id.lower(), "RoleAssignments_Create at the vault's scope")

    front = tls_front(vault_backend, tls_dir)
    credential = VaultCredential(kv_token)
    secrets = SecretClient(front, credential, api_version="7.6", verify_challenge_resource=False,
                           connection_verify=f"{tls_dir}/ca.pem", retry_total=2, retry_backoff_factor=0)
    first = secrets.set_secret("nomad-gossip-key", "one", content_type="text/plain")
    check(credential.asked == [(("https://vault.azure.net/.default",), tenant)],
          "the SDK's challenge flow asked for the scope and tenant the 401 named")
    second = secrets.set_secret("nomad-gossip-key", "two")
    check(first.properties.version != second.properties.version and len(first.properties.version) == 32, "SetSecret (versions)")
    check(secrets.get_secret("nomad-gossip-key").value == "two", "GetSecret (latest)")
    old = secrets.get_secret("nomad-gossip-key", first.properties.version)
    check(old.value == "one" and old.properties.content_type == "text/plain", "GetSecret (a version)")
    for i in range(3):
        secrets.set_secret(f"nomad-extra-{i}", "x")
    versions = list(secrets.list_properties_of_secret_versions("nomad-gossip-key", max_page_size=1))
    check(len(versions) == 2, "GetSecretVersions (paged by nextLink)")
    names = sorted(p.name for p in secrets.list_properties_of_secrets(max_page_size=2))
    check(names == ["nomad-extra-0", "nomad-extra-1", "nomad-extra-2", "nomad-gossip-key"], "GetSecrets (paged)")
    # The SDK's poller returns the result at once and wait() polls until the deletion is done
    # (a private keyword makes it poll without its 2 s pause).
    poller = secrets.begin_delete_secret("nomad-extra-0", _polling_interval=0)
    deleted = poller.result()
    poller.wait()
    check(poller.done() and deleted.recovery_id.endswith("/deletedsecrets/nomad-extra-0") and deleted.scheduled_purge_date,
          "DeleteSecret, polled until GetDeletedSecret answers")
    check(secrets.get_deleted_secret("nomad-extra-0").name == "nomad-extra-0", "GetDeletedSecret")
    check([d.name for d in secrets.list_deleted_secrets()] == ["nomad-extra-0"], "GetDeletedSecrets")
    expect_error(lambda: secrets.set_secret("nomad-extra-0", "again"), 409, "Conflict", "SetSecret on a soft-deleted name")
    poller = secrets.begin_recover_deleted_secret("nomad-extra-0", _polling_interval=0)
    recovered = poller.result()
    poller.wait()
    check(poller.done() and recovered.name == "nomad-extra-0", "RecoverDeletedSecret, polled until GetSecret answers")
    secrets.begin_delete_secret("nomad-extra-1", _polling_interval=0).wait()
    secrets.purge_deleted_secret("nomad-extra-1")
    try:
        secrets.get_deleted_secret("nomad-extra-1")
        raise AssertionError("purged secret still listed")
    except ResourceNotFoundError:
        check(True, "PurgeDeletedSecret")

    # The vault's soft delete, recovery and purge.
    keyvault.vaults.delete("kv-sdk", vault)
    gone = keyvault.vaults.get_deleted(vault, "westeurope")
    check(gone.properties.vault_id.lower() == got.id.lower() and gone.properties.purge_protection_enabled is False,
          "Vaults_Delete (soft) and Vaults_GetDeleted")
    check([d.name for d in keyvault.vaults.list_deleted()] == [vault], "Vaults_ListDeleted")
    expect_error(lambda: keyvault.vaults.begin_create_or_update("kv-sdk", vault, params).result(), 409, "ConflictError",
                 "Vaults_CreateOrUpdate on a soft-deleted name")
    recover = json.loads(json.dumps(params))
    recover["properties"]["createMode"] = "recover"
    keyvault.vaults.begin_create_or_update("kv-sdk", vault, recover).result()
    expect_error(lambda: secrets.get_secret("nomad-gossip-key"), 403, "Forbidden",
                 "recovered vault: its role assignments are gone")
    grant(str(uuid.uuid4()))
    check(secrets.get_secret("nomad-gossip-key").value == "two", "recovered vault keeps its secrets")
    keyvault.vaults.delete("kv-sdk", vault)
    keyvault.vaults.begin_purge_deleted(vault, "westeurope").result()
    try:
        keyvault.vaults.get_deleted(vault, "westeurope")
        raise AssertionError("purged vault still listed")
    except ResourceNotFoundError:
        check(True, "Vaults_PurgeDeleted (long-running)")


if __name__ == "__main__":
    main()
