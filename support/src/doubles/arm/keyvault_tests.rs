//! Key Vault management in the ARM double, and its link to the data-plane double: soft delete,
//! recovery, purge, purge protection, the spec's rules, vaults and role assignments from
//! templates and RoleAssignments_Create.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::super::keyvault::KeyVaultDouble;
use super::super::server::test_client as client;
use super::super::tokens::Claims;
use super::*;
use crate::keyvault::{KeyVaultClient, Options, TokenSource};
use crate::secret::Secret;

const KV: &str = "2025-05-01";
const RESOURCES: &str = "2025-04-01";
const AUTHORIZATION: &str = "2022-04-01";
const SECRETS_OFFICER: &str = "b86a8fe4-44ce-4948-aee5-eccb2c155cd7";
const SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";

fn url(arm: &ArmDouble, path: &str, version: &str) -> String {
    format!(
        "{}/subscriptions/{SUBSCRIPTION}{path}?api-version={version}",
        arm.url()
    )
}

fn vault_path(name: &str) -> String {
    format!("/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/{name}")
}

fn send(
    arm: &ArmDouble,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> reqwest::blocking::Response {
    let mut request = client()
        .request(method.parse().unwrap(), url)
        .bearer_auth(arm.token());
    if let Some(b) = body {
        request = request.json(&b);
    }
    request.send().unwrap()
}

fn json_of(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

/// Follows a long-running answer to its end; returns the final status body.
fn finish(arm: &ArmDouble, r: &reqwest::blocking::Response) -> Value {
    let headers = r.headers();
    if let Some(status_url) = headers.get("azure-asyncoperation") {
        loop {
            let (_, body) = json_of(send(arm, "GET", status_url.to_str().unwrap(), None));
            if body["status"] != "InProgress" && body["status"] != "Running" {
                return body;
            }
        }
    }
    let location = headers["location"].to_str().unwrap().to_string();
    loop {
        let r = send(arm, "GET", &location, None);
        if r.status().as_u16() != 202 {
            return json!({ "status": r.status().as_u16() });
        }
    }
}

fn vault_body(extra: Value) -> Value {
    let mut body = json!({
        "location": "westeurope",
        "tags": { "nomad-cluster": "c1" },
        "properties": {
            "tenantId": TENANT,
            "sku": { "family": "A", "name": "standard" },
            "accessPolicies": [],
            "enableRbacAuthorization": true,
            "softDeleteRetentionInDays": 7,
            "networkAcls": {
                "defaultAction": "Deny",
                "bypass": "None",
                "ipRules": [{ "value": "198.51.100.7" }],
                "virtualNetworkRules": [{ "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/Servers" }],
            },
        },
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        body["properties"][k] = v.clone();
    }
    body
}

fn started() -> ArmDouble {
    let arm = ArmDouble::start();
    arm.add_resource_group("rg", "westeurope", json!({}));
    arm
}

fn create(arm: &ArmDouble, name: &str, body: Value) -> (u16, Value) {
    let r = send(arm, "PUT", &url(arm, &vault_path(name), KV), Some(body));
    let status = r.status().as_u16();
    if status >= 300 {
        return json_of(r);
    }
    let done = finish(arm, &r);
    assert_eq!(done["status"], "Succeeded", "{done}");
    (
        status,
        json_of(send(arm, "GET", &url(arm, &vault_path(name), KV), None)).1,
    )
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn tokens(principal: &str) -> Arc<dyn TokenSource> {
    let principal = principal.to_string();
    Arc::new(move || {
        Ok(Secret::new(
            Claims::new(crate::keyvault::RESOURCE, &principal, TENANT).issue(),
        ))
    })
}

fn quick() -> Options {
    Options {
        deadline: Duration::from_millis(300),
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..Options::default()
    }
}

#[test]
fn a_vault_is_created_as_a_long_running_operation_and_returned_as_key_vault_does() {
    let arm = started();
    let r = send(
        &arm,
        "PUT",
        &url(&arm, &vault_path("nomad-c1-kv"), KV),
        Some(vault_body(json!({}))),
    );
    assert_eq!(r.status().as_u16(), 201);
    assert!(r.headers().contains_key("azure-asyncoperation"));
    assert_eq!(finish(&arm, &r)["status"], "Succeeded");
    let (status, vault) = json_of(send(
        &arm,
        "GET",
        &url(&arm, &vault_path("nomad-c1-kv"), KV),
        None,
    ));
    assert_eq!(status, 200);
    let p = &vault["properties"];
    assert_eq!(vault["type"], "Microsoft.KeyVault/vaults");
    assert_eq!(p["vaultUri"], "https://nomad-c1-kv.vault.azure.net/");
    assert_eq!(p["enableRbacAuthorization"], true);
    assert_eq!(p["enableSoftDelete"], true);
    assert_eq!(p["softDeleteRetentionInDays"], 7);
    assert!(p.get("enablePurgeProtection").is_none());
    // createVaultWithNetworkAcls.json: a bare address gains /32, subnet ids come back lower-case.
    assert_eq!(p["networkAcls"]["ipRules"][0]["value"], "198.51.100.7/32");
    assert_eq!(
        p["networkAcls"]["virtualNetworkRules"][0]["id"],
        "/subscriptions/s/resourcegroups/rg/providers/microsoft.network/virtualnetworks/vnet/subnets/servers"
    );
    assert_eq!(p["networkAcls"]["defaultAction"], "Deny");
    // A PUT of the same vault is an update (200).
    assert_eq!(create(&arm, "nomad-c1-kv", vault_body(json!({}))).0, 200);
    let used = arm.operations_used();
    assert!(used.contains(&("Vaults_CreateOrUpdate".into(), KV.into())));
    assert!(used.contains(&("Vaults_Get".into(), KV.into())));
}

#[test]
fn soft_delete_recover_and_purge_of_a_vault_with_its_secrets() {
    let arm = started();
    create(
        &arm,
        "nomad-c1-kv",
        vault_body(json!({ "networkAcls": null })),
    );
    let kv = KeyVaultDouble::start_linked("nomad-c1-kv", arm.key_vault_directory());
    arm.add_role_assignment(
        &format!("/subscriptions/{SUBSCRIPTION}{}", vault_path("nomad-c1-kv")),
        "ra-operator",
        CALLER_OBJECT_ID,
        SECRETS_OFFICER,
    );
    let operator = KeyVaultClient::new(kv.url(), tokens(CALLER_OBJECT_ID), quick()).unwrap();
    operator
        .set_secret("nomad-ca-cert", &Secret::new("pem".into()), None)
        .unwrap();

    let r = send(
        &arm,
        "DELETE",
        &url(&arm, &vault_path("nomad-c1-kv"), KV),
        None,
    );
    assert_eq!(
        r.status().as_u16(),
        200,
        "Vaults_Delete is not long-running"
    );
    assert!(!r.headers().contains_key("azure-asyncoperation"));
    assert_eq!(
        send(
            &arm,
            "GET",
            &url(&arm, &vault_path("nomad-c1-kv"), KV),
            None
        )
        .status()
        .as_u16(),
        404
    );
    assert_eq!(
        send(
            &arm,
            "DELETE",
            &url(&arm, &vault_path("nomad-c1-kv"), KV),
            None
        )
        .status()
        .as_u16(),
        204
    );
    let deleted_path =
        "/providers/Microsoft.KeyVault/locations/westeurope/deletedVaults/nomad-c1-kv";
    let (status, deleted) = json_of(send(&arm, "GET", &url(&arm, deleted_path, KV), None));
    assert_eq!(status, 200);
    assert_eq!(deleted["type"], "Microsoft.KeyVault/deletedVaults");
    assert_eq!(
        deleted["properties"]["vaultId"],
        format!("/subscriptions/{SUBSCRIPTION}{}", vault_path("nomad-c1-kv"))
    );
    assert_eq!(deleted["properties"]["purgeProtectionEnabled"], false);
    assert_eq!(deleted["properties"]["tags"]["nomad-cluster"], "c1");
    let (_, listed) = json_of(send(
        &arm,
        "GET",
        &url(&arm, "/providers/Microsoft.KeyVault/deletedVaults", KV),
        None,
    ));
    assert_eq!(listed["value"].as_array().unwrap().len(), 1);
    // The data plane is gone with the vault, and so are the role assignments on it.
    assert!(operator.get_secret("nomad-ca-cert", None).is_err());
    assert!(arm
        .resources()
        .iter()
        .all(|r| r["type"] != "Microsoft.Authorization/roleAssignments"));

    // The soft-deleted name is not available.
    let (status, conflict) = create(&arm, "nomad-c1-kv", vault_body(json!({})));
    assert_eq!((status, error_code(&conflict)), (409, "ConflictError"));
    assert!(conflict["error"]["message"]
        .as_str()
        .unwrap()
        .contains("already exists in deleted state"));
    let (_, availability) = json_of(send(
        &arm,
        "POST",
        &url(
            &arm,
            "/providers/Microsoft.KeyVault/checkNameAvailability",
            KV,
        ),
        Some(json!({ "name": "nomad-c1-kv", "type": "Microsoft.KeyVault/vaults" })),
    ));
    assert_eq!(
        availability,
        json!({ "nameAvailable": false, "reason": "AlreadyExists", "message": "The vault name 'nomad-c1-kv' is already in use." })
    );

    // Recovery brings the vault and its secrets back, not its role assignments.
    let (status, recovered) = create(
        &arm,
        "nomad-c1-kv",
        vault_body(json!({ "createMode": "recover", "networkAcls": null })),
    );
    assert_eq!(status, 201, "{recovered}");
    assert_eq!(recovered["properties"]["softDeleteRetentionInDays"], 7);
    let e = operator.get_secret("nomad-ca-cert", None).unwrap_err();
    assert!(e.is_forbidden_by_rbac(), "{e}");
    arm.add_role_assignment(
        &format!("/subscriptions/{SUBSCRIPTION}{}", vault_path("nomad-c1-kv")),
        "ra-operator-again",
        CALLER_OBJECT_ID,
        SECRETS_OFFICER,
    );
    assert_eq!(
        operator
            .get_secret("nomad-ca-cert", None)
            .unwrap()
            .value
            .expose(),
        "pem"
    );

    // Purge: the name stays taken until the long-running operation ends.
    send(
        &arm,
        "DELETE",
        &url(&arm, &vault_path("nomad-c1-kv"), KV),
        None,
    );
    arm.set_polls(2);
    let purge = send(
        &arm,
        "POST",
        &url(&arm, &format!("{deleted_path}/purge"), KV),
        None,
    );
    assert_eq!(purge.status().as_u16(), 202);
    assert_eq!(create(&arm, "nomad-c1-kv", vault_body(json!({}))).0, 409);
    assert_eq!(finish(&arm, &purge)["status"], "Succeeded");
    assert_eq!(
        send(&arm, "GET", &url(&arm, deleted_path, KV), None)
            .status()
            .as_u16(),
        404
    );
    let (status, fresh) = create(
        &arm,
        "nomad-c1-kv",
        vault_body(json!({ "networkAcls": null })),
    );
    assert_eq!(status, 201, "{fresh}");
    arm.add_role_assignment(
        &format!("/subscriptions/{SUBSCRIPTION}{}", vault_path("nomad-c1-kv")),
        "ra-operator-3",
        CALLER_OBJECT_ID,
        SECRETS_OFFICER,
    );
    assert!(operator
        .get_secret("nomad-ca-cert", None)
        .unwrap_err()
        .is_not_found());
    let used = arm.operations_used();
    for op in [
        "Vaults_Delete",
        "Vaults_GetDeleted",
        "Vaults_ListDeleted",
        "Vaults_PurgeDeleted",
        "Vaults_CheckNameAvailability",
    ] {
        assert!(
            used.contains(&(op.to_string(), KV.to_string())),
            "{op}: {used:?}"
        );
    }
}

#[test]
fn purge_protection_is_irreversible_and_refuses_the_purge() {
    let arm = started();
    let (_, vault) = create(
        &arm,
        "nomad-pp-kv",
        vault_body(json!({ "enablePurgeProtection": true })),
    );
    assert_eq!(vault["properties"]["enablePurgeProtection"], true);
    let (status, refused) = create(
        &arm,
        "nomad-pp-kv",
        vault_body(json!({ "enablePurgeProtection": false })),
    );
    assert_eq!((status, error_code(&refused)), (400, "BadRequest"));
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("irreversible"));
    // Leaving it out keeps it on.
    let (_, still) = create(&arm, "nomad-pp-kv", vault_body(json!({})));
    assert_eq!(still["properties"]["enablePurgeProtection"], true);
    send(
        &arm,
        "DELETE",
        &url(&arm, &vault_path("nomad-pp-kv"), KV),
        None,
    );
    let deleted = arm.deleted_vault("nomad-pp-kv").unwrap();
    assert_eq!(deleted["properties"]["purgeProtectionEnabled"], true);
    let (status, body) = json_of(send(
        &arm,
        "POST",
        &url(
            &arm,
            "/providers/Microsoft.KeyVault/locations/westeurope/deletedVaults/nomad-pp-kv/purge",
            KV,
        ),
        None,
    ));
    assert_eq!((status, error_code(&body)), (405, "MethodNotAllowed"));
    assert_eq!(
        body["error"]["message"],
        "Operation 'DeletedVaultPurge' is not allowed."
    );
    assert_eq!(
        create(
            &arm,
            "nomad-pp-kv",
            vault_body(json!({ "createMode": "recover" }))
        )
        .0,
        201
    );
}

#[test]
fn the_specs_rules_for_a_new_vault() {
    let arm = started();
    let cases = [
        (json!({ "accessPolicies": null }), 400, "BadRequest"),
        (json!({ "enableSoftDelete": false }), 400, "BadRequest"),
        (json!({ "softDeleteRetentionInDays": 5 }), 400, "BadRequest"),
        (
            json!({ "sku": { "family": "A", "name": "gold" } }),
            400,
            "BadRequest",
        ),
        (json!({ "tenantId": null }), 400, "BadRequest"),
        (
            json!({ "createMode": "recover" }),
            400,
            "SoftDeletedVaultDoesNotExist",
        ),
    ];
    for (extra, status, code) in cases {
        let (got, body) = create(&arm, "nomad-new-kv", vault_body(extra.clone()));
        assert_eq!((got, error_code(&body)), (status, code), "{extra}: {body}");
    }
    let (got, body) = create(&arm, "x", vault_body(json!({})));
    assert_eq!((got, error_code(&body)), (400, "VaultNameNotValid"));
    arm.reserve_vault_name("nomad-taken-kv");
    let (got, body) = create(&arm, "nomad-taken-kv", vault_body(json!({})));
    assert_eq!((got, error_code(&body)), (409, "VaultAlreadyExists"));
    // The retention is set once.
    create(&arm, "nomad-ret-kv", vault_body(json!({})));
    let (got, body) = create(
        &arm,
        "nomad-ret-kv",
        vault_body(json!({ "softDeleteRetentionInDays": 30 })),
    );
    assert_eq!((got, error_code(&body)), (400, "BadRequest"));
    // Another api-version is no operation of the specs.
    arm.expect_refusals();
    let r = send(
        &arm,
        "GET",
        &url(&arm, &vault_path("nomad-ret-kv"), "2023-07-01"),
        None,
    );
    assert_eq!(
        json_of(r),
        (
            400,
            json!({ "error": { "code": "NoRegisteredProviderFound", "message": "No registered resource provider found for location 'westeurope' and API version '2023-07-01' for type 'vaults'. The supported api-versions are '2025-05-01'." } })
        )
    );
}

fn deploy(arm: &ArmDouble, name: &str, resources: Vec<Value>) -> Value {
    let body = json!({ "properties": { "mode": "Incremental", "parameters": {}, "template": {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": resources,
    } } });
    let r = send(
        arm,
        "PUT",
        &url(
            arm,
            &format!("/resourcegroups/rg/providers/Microsoft.Resources/deployments/{name}"),
            RESOURCES,
        ),
        Some(body),
    );
    assert_eq!(r.status().as_u16(), 201);
    finish(arm, &r);
    json_of(send(
        arm,
        "GET",
        &url(
            arm,
            &format!("/resourcegroups/rg/providers/Microsoft.Resources/deployments/{name}"),
            RESOURCES,
        ),
        None,
    ))
    .1
}

fn vault_resource(name: &str) -> Value {
    let mut r = vault_body(json!({ "networkAcls": null }));
    r["type"] = json!("Microsoft.KeyVault/vaults");
    r["apiVersion"] = json!(KV);
    r["name"] = json!(name);
    r
}

fn assignment(name: &str, scope: &str, principal: &str, role: &str) -> Value {
    json!({
        "type": "Microsoft.Authorization/roleAssignments",
        "apiVersion": AUTHORIZATION,
        "name": name,
        "scope": scope,
        "dependsOn": ["[resourceId('Microsoft.KeyVault/vaults', 'nomad-t-kv')]"],
        "properties": {
            "roleDefinitionId": format!("[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{role}')]"),
            "principalId": principal,
            "principalType": "ServicePrincipal",
        },
    })
}

#[test]
fn a_template_makes_the_vault_and_role_assignments_on_it_and_its_secrets() {
    let arm = started();
    let vmss = arm.add_resource(
        "rg",
        json!({ "type": "Microsoft.Compute/virtualMachineScaleSets", "name": "servers", "location": "westeurope",
                "identity": { "type": "SystemAssigned" }, "properties": {} }),
    );
    let servers = arm
        .resource_named("Microsoft.Compute/virtualMachineScaleSets", "servers")
        .unwrap()["identity"]["principalId"]
        .as_str()
        .unwrap()
        .to_string();
    let _ = vmss;
    let done = deploy(
        &arm,
        "secrets",
        vec![
            vault_resource("nomad-t-kv"),
            assignment(
                "00000000-0000-0000-0000-0000000000f1",
                "[resourceId('Microsoft.KeyVault/vaults', 'nomad-t-kv')]",
                CALLER_OBJECT_ID,
                SECRETS_OFFICER,
            ),
            assignment(
                "00000000-0000-0000-0000-0000000000f2",
                "Microsoft.KeyVault/vaults/nomad-t-kv/secrets/nomad-server-key",
                &servers,
                SECRETS_USER,
            ),
        ],
    );
    assert_eq!(
        done["properties"]["provisioningState"], "Succeeded",
        "{done}"
    );
    let vault_id = format!("/subscriptions/{SUBSCRIPTION}{}", vault_path("nomad-t-kv"));
    let (_, listed) = json_of(send(
        &arm,
        "GET",
        &url(
            &arm,
            &format!(
                "{}/providers/Microsoft.Authorization/roleAssignments",
                vault_path("nomad-t-kv")
            ),
            AUTHORIZATION,
        ),
        None,
    ));
    let scopes: Vec<&str> = listed["value"]
        .as_array()
        .unwrap_or_else(|| panic!("{listed}"))
        .iter()
        .map(|a| a["properties"]["scope"].as_str().unwrap())
        .collect();
    assert!(scopes.contains(&vault_id.as_str()), "{scopes:?}");
    assert!(
        scopes.contains(&format!("{vault_id}/secrets/nomad-server-key").as_str()),
        "{scopes:?}"
    );

    let kv = KeyVaultDouble::start_linked("nomad-t-kv", arm.key_vault_directory());
    let operator = KeyVaultClient::new(kv.url(), tokens(CALLER_OBJECT_ID), quick()).unwrap();
    for name in ["nomad-server-key", "nomad-client-key"] {
        operator
            .set_secret(name, &Secret::new(name.into()), None)
            .unwrap();
    }
    let vm = KeyVaultClient::new(kv.url(), tokens(&servers), quick()).unwrap();
    assert_eq!(
        vm.get_secret("nomad-server-key", None)
            .unwrap()
            .value
            .expose(),
        "nomad-server-key"
    );
    assert!(vm
        .get_secret("nomad-client-key", None)
        .unwrap_err()
        .is_forbidden_by_rbac());

    // RoleAssignments_Create on a secret's scope grants that secret only.
    let ra = |name: &str, scope: &str, principal: &str| {
        send(
            &arm,
            "PUT",
            &url(
                &arm,
                &format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}"),
                AUTHORIZATION,
            ),
            Some(
                json!({ "properties": { "roleDefinitionId": format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Authorization/roleDefinitions/{SECRETS_USER}"), "principalId": principal, "principalType": "ServicePrincipal" } }),
            ),
        )
    };
    let secret_scope = format!("{}/secrets/nomad-client-key", vault_path("nomad-t-kv"));
    assert_eq!(
        ra(
            "00000000-0000-0000-0000-0000000000f3",
            &secret_scope,
            &servers
        )
        .status()
        .as_u16(),
        201
    );
    assert_eq!(
        vm.get_secret("nomad-client-key", None)
            .unwrap()
            .value
            .expose(),
        "nomad-client-key"
    );
    let (status, body) = json_of(ra(
        "00000000-0000-0000-0000-0000000000f4",
        &secret_scope,
        &servers,
    ));
    assert_eq!((status, error_code(&body)), (409, "RoleAssignmentExists"));
    let (status, body) = json_of(ra(
        "00000000-0000-0000-0000-0000000000f5",
        &secret_scope,
        "11111111-0000-0000-0000-000000000000",
    ));
    assert_eq!((status, error_code(&body)), (400, "PrincipalNotFound"));
    let (status, body) = json_of(ra(
        "00000000-0000-0000-0000-0000000000f6",
        &format!("{}/secrets/x", vault_path("nomad-none-kv")),
        &servers,
    ));
    assert_eq!((status, error_code(&body)), (404, "ResourceNotFound"));
    arm.set_caller_permissions(rbac::contributor());
    let (status, body) = json_of(ra(
        "00000000-0000-0000-0000-0000000000f7",
        &secret_scope,
        CALLER_OBJECT_ID,
    ));
    assert_eq!((status, error_code(&body)), (403, "AuthorizationFailed"));

    // A re-deployment of a vault whose name is soft-deleted fails on the vault.
    arm.set_caller_permissions(rbac::owner());
    send(
        &arm,
        "DELETE",
        &url(&arm, &vault_path("nomad-t-kv"), KV),
        None,
    );
    let failed = deploy(&arm, "again", vec![vault_resource("nomad-t-kv")]);
    assert_eq!(failed["properties"]["provisioningState"], "Failed");
    assert_eq!(
        failed["properties"]["error"]["details"][0]["code"], "ConflictError",
        "{failed}"
    );
}

#[test]
fn deleting_the_resource_group_soft_deletes_its_vault() {
    let arm = started();
    create(&arm, "nomad-rg-kv", vault_body(json!({})));
    let r = send(
        &arm,
        "DELETE",
        &url(&arm, "/resourcegroups/rg", RESOURCES),
        None,
    );
    finish(&arm, &r);
    assert!(arm.deleted_vault("nomad-rg-kv").is_some());
}
