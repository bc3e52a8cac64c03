//! Key Vault management (Microsoft.KeyVault 2025-05-01, `keyvault.json`): vaults, soft delete,
//! recovery and purge, as the spec and Microsoft's Key Vault documentation describe them.
//!
//! - Vaults_CreateOrUpdate (PUT, `x-ms-long-running-operation`, 200/201): `location` and
//!   `properties` with `tenantId` and `sku` {`family` "A", `name` standard|premium} are required
//!   (VaultCreateOrUpdateParameters, VaultProperties, Sku); `accessPolicies` "are required"
//!   unless `createMode` is `recover` (an empty list will do for an RBAC vault).
//!   `enableRbacAuthorization` defaults to false. `enableSoftDelete` "Once set to true, it
//!   cannot be reverted to false", and opting out is gone ("The ability to opt out of
//!   soft-delete is deprecated", soft-delete overview): false is refused. The retention
//!   (`softDeleteRetentionInDays`, 7..=90, default 90) "can only be configured during key vault
//!   creation and can't be changed afterwards". `enablePurgeProtection` "does not accept false
//!   as its value": Key Vault answers 400 `BadRequest` 'The property "enablePurgeProtection"
//!   cannot be set to false. Enabling the purge protection for a vault is an irreversible
//!   action.' (seen from `az keyvault create --enable-purge-protection false`, Azure CLI issue
//!   29115). `networkAcls` are stored and returned as the spec's example
//!   `createVaultWithNetworkAcls.json` shows them: a bare IP rule gains `/32`, subnet ids come
//!   back lower-cased. `vaultUri` is `https://<name>.vault.azure.net/`.
//! - Vault names are global. A name held by a soft-deleted vault cannot be reused: 409
//!   `ConflictError` "A vault with the same name already exists in deleted state. You need to
//!   either recover or purge existing key vault. Follow this link
//!   https://go.microsoft.com/fwlink/?linkid=2149745 for more information on soft delete." (as
//!   reported by Azure SDK users, e.g. azure-cli issue 29115, data-safe-haven issue 2523). A
//!   name taken elsewhere ([`ArmDouble::reserve_vault_name`]) is 409 `VaultAlreadyExists`
//!   (Key Vault common error codes). `createMode: recover` brings a soft-deleted vault back with
//!   its secrets; without one to recover it is 400 `SoftDeletedVaultDoesNotExist`.
//! - Vaults_Delete (200/204, **not** long-running) soft-deletes the vault, as does deleting its
//!   resource group. "When a Key Vault is soft-deleted, ... Azure RBAC roles assignments ... will
//!   be deleted. Recovering a soft-deleted Key Vault will not restore these services" (soft-delete
//!   overview): assignments at or below the vault go with it.
//! - Vaults_GetDeleted / Vaults_ListDeleted answer DeletedVault (`getDeletedVault.json`:
//!   `id` `/subscriptions/{s}/providers/Microsoft.KeyVault/locations/{l}/deletedVaults/{n}`,
//!   `properties.vaultId`, `location`, `deletionDate`, `scheduledPurgeDate`, `tags`,
//!   `purgeProtectionEnabled`).
//! - Vaults_PurgeDeleted (POST, long-running): refused while the vault had purge protection with
//!   `MethodNotAllowed` "Operation 'DeletedVaultPurge' is not allowed." (as the Azure CLI reports
//!   it); otherwise the name stays taken until the operation finishes.
//! - Vaults_CheckNameAvailability: `nameAvailable`, `reason` (`AccountNameInvalid`,
//!   `AlreadyExists`), `message`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::super::keyvault::{new_store, Directory, RoleAssignment, SharedStore, VaultInfo};
use super::super::server::Reply;
use super::lro::Pending;
use super::resources::{group_missing, materialize, Stored};
use super::{arm_error, lock, page, ArmDouble, Call, State, SUBSCRIPTION};

pub(crate) const VAULT_TYPE: &str = "Microsoft.KeyVault/vaults";

/// Soft delete's documented default retention.
const DEFAULT_RETENTION_DAYS: u64 = 90;

#[derive(Debug, Clone)]
struct Deleted {
    /// The vault as it was.
    value: Value,
    group: String,
    location: String,
    deleted_at: u64,
    store: SharedStore,
}

/// Key Vault state the other resources do not have.
#[derive(Debug, Default)]
pub(crate) struct KeyVaults {
    /// The secrets of each live vault, by lower-cased name.
    live: BTreeMap<String, SharedStore>,
    deleted: BTreeMap<String, Deleted>,
    reserved: BTreeSet<String>,
    purging: BTreeSet<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn iso(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A management-plane refusal: status, code, message.
type Refusal = (u16, String, String);

fn refusal(status: u16, code: &str, message: impl Into<String>) -> Refusal {
    (status, code.to_string(), message.into())
}

fn bad_request(message: impl Into<String>) -> Refusal {
    refusal(400, "BadRequest", message)
}

fn deleted_id(location: &str, name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{name}")
}

/// Vault names (`VaultNameNotValid`, Key Vault common error codes).
fn name_problem(name: &str) -> Option<String> {
    crate::keyvault::validate_vault_name(name)
        .err()
        .map(|_| "The vault name should be string of 3 to 24 characters and can contain only numbers (0-9), letters (a-z, A-Z), and hyphens (-)".to_string())
}

/// `networkAcls` as Key Vault returns them.
fn normalize_acls(acls: &Value) -> Value {
    if !acls.is_object() {
        return acls.clone();
    }
    let ip_rules: Vec<Value> = acls["ipRules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let v = r["value"].as_str().unwrap_or_default();
            let v = if v.contains('/') {
                v.to_string()
            } else {
                format!("{v}/32")
            };
            json!({ "value": v })
        })
        .collect();
    let subnet_rules: Vec<Value> = acls["virtualNetworkRules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let mut rule = r.clone();
            rule["id"] = json!(r["id"].as_str().unwrap_or_default().to_ascii_lowercase());
            rule
        })
        .collect();
    json!({
        "bypass": acls["bypass"].as_str().unwrap_or("AzureServices"),
        "defaultAction": acls["defaultAction"].as_str().unwrap_or("Allow"),
        "ipRules": ip_rules,
        "virtualNetworkRules": subnet_rules,
    })
}

/// Checks a CreateOrUpdate body against the spec's rules and the vault that exists; returns
/// the vault value to store.
fn validated(
    name: &str,
    group: &str,
    body: &Value,
    existing: Option<&Value>,
) -> Result<Value, Refusal> {
    if let Some(problem) = name_problem(name) {
        return Err(refusal(400, "VaultNameNotValid", problem));
    }
    let Some(location) = body["location"].as_str() else {
        return Err(refusal(
            400,
            "LocationRequired",
            "The location property is required for this definition.",
        ));
    };
    let props = &body["properties"];
    if !props.is_object() {
        return Err(bad_request("The parameter 'properties' is required."));
    }
    let recover = props["createMode"].as_str() == Some("recover");
    match props["createMode"].as_str() {
        None | Some("default") | Some("recover") => {}
        Some(other) => {
            return Err(bad_request(format!(
                "The value '{other}' of createMode is not valid: 'default' or 'recover'."
            )))
        }
    }
    if props["tenantId"].as_str().is_none_or(str::is_empty) {
        return Err(bad_request("The parameter 'tenantId' is required."));
    }
    let sku = &props["sku"];
    if sku["family"].as_str() != Some("A")
        || !matches!(sku["name"].as_str(), Some("standard") | Some("premium"))
    {
        return Err(bad_request(
            "The parameter 'sku' is required: {\"family\": \"A\", \"name\": \"standard\" or \"premium\"}.",
        ));
    }
    if !recover && existing.is_none() && !props["accessPolicies"].is_array() {
        return Err(bad_request(
            "The parameter 'accessPolicies' is required unless createMode is 'recover' (an empty list is accepted).",
        ));
    }
    if props["enablePurgeProtection"] == json!(false) {
        return Err(bad_request("The property \"enablePurgeProtection\" cannot be set to false. Enabling the purge protection for a vault is an irreversible action."));
    }
    if props["enableSoftDelete"] == json!(false) {
        return Err(bad_request("The property \"enableSoftDelete\" cannot be set to false: soft delete is enabled on every key vault and can't be disabled."));
    }
    let retention = match &props["softDeleteRetentionInDays"] {
        Value::Null => existing
            .and_then(|e| e["properties"]["softDeleteRetentionInDays"].as_u64())
            .unwrap_or(DEFAULT_RETENTION_DAYS),
        v => match v.as_u64() {
            Some(d) if (7..=90).contains(&d) => d,
            _ => {
                return Err(bad_request(format!(
                    "softDeleteRetentionInDays {v} is not valid: it accepts >=7 and <=90."
                )))
            }
        },
    };
    if let Some(previous) = existing
        .and_then(|e| e["properties"]["softDeleteRetentionInDays"].as_u64())
        .filter(|p| *p != retention)
    {
        return Err(bad_request(format!("softDeleteRetentionInDays cannot be changed after the vault is created (it is {previous}).")));
    }
    if let Some(e) = existing {
        if !e["location"]
            .as_str()
            .is_some_and(|l| l.eq_ignore_ascii_case(location))
        {
            return Err(refusal(
                400,
                "LocationNotAvailableForResourceType",
                "A vault's location cannot change.",
            ));
        }
    }
    let purge_protection = props["enablePurgeProtection"] == json!(true)
        || existing.is_some_and(|e| e["properties"]["enablePurgeProtection"] == json!(true));
    let mut properties = json!({
        "tenantId": props["tenantId"],
        "sku": sku,
        "accessPolicies": props["accessPolicies"].as_array().cloned().unwrap_or_default(),
        "enabledForDeployment": props["enabledForDeployment"].as_bool().unwrap_or(false),
        "enabledForDiskEncryption": props["enabledForDiskEncryption"].as_bool().unwrap_or(false),
        "enabledForTemplateDeployment": props["enabledForTemplateDeployment"].as_bool().unwrap_or(false),
        "enableSoftDelete": true,
        "softDeleteRetentionInDays": retention,
        "enableRbacAuthorization": props["enableRbacAuthorization"].as_bool().unwrap_or(false),
        "vaultUri": format!("https://{name}.{}/", crate::keyvault::DNS_SUFFIX),
        "provisioningState": "Succeeded",
        "publicNetworkAccess": props["publicNetworkAccess"].as_str().unwrap_or("Enabled"),
    });
    if purge_protection {
        properties["enablePurgeProtection"] = json!(true);
    }
    if props["networkAcls"].is_object() {
        properties["networkAcls"] = normalize_acls(&props["networkAcls"]);
    }
    Ok(json!({
        "id": super::resource_id(group, VAULT_TYPE, &[name]),
        "name": name,
        "type": VAULT_TYPE,
        "location": location,
        "tags": if body["tags"].is_object() { body["tags"].clone() } else { json!({}) },
        "properties": properties,
    }))
}

/// Creates, updates or recovers a vault; returns the status (201 new, 200 otherwise).
fn apply(
    state: &mut State,
    group: &str,
    name: &str,
    body: &Value,
) -> Result<(u16, Value), Refusal> {
    if !state.groups.contains_key(&group.to_ascii_lowercase()) {
        return Err(refusal(
            404,
            "ResourceGroupNotFound",
            format!("Resource group '{group}' could not be found."),
        ));
    }
    let key = name.to_ascii_lowercase();
    let id = super::resource_id(group, VAULT_TYPE, &[name]);
    let recover = body["properties"]["createMode"].as_str() == Some("recover");
    let existing = state
        .resources
        .get(&id.to_ascii_lowercase())
        .map(|s| s.value.clone());
    let live_elsewhere = existing.is_none() && state.key_vaults.live.contains_key(&key);
    if state.key_vaults.reserved.contains(&key) || live_elsewhere {
        return Err(refusal(409, "VaultAlreadyExists", format!("The vault name '{name}' is already in use. Vault names are globally unique so it is possible that the name is already taken. If you are sure that the vault name was not taken then it is possible that a vault with the same name was recently deleted but not purged after being placed in a recoverable state. If the vault is in a recoverable state then the vault will need to be purged before reusing the name. For more information on soft delete and purging a vault follow this link https://go.microsoft.com/fwlink/?linkid=2147740.")));
    }
    let deleted = state.key_vaults.deleted.get(&key).cloned();
    let purging = state.key_vaults.purging.contains(&key);
    // A soft-deleted name takes a recovery; one being purged takes nothing.
    let held = purging || (deleted.is_some() && !recover);
    if existing.is_none() && held {
        return Err(refusal(409, "ConflictError", "A vault with the same name already exists in deleted state. You need to either recover or purge existing key vault. Follow this link https://go.microsoft.com/fwlink/?linkid=2149745 for more information on soft delete."));
    }
    if existing.is_none() && recover && deleted.is_none() {
        return Err(refusal(400, "SoftDeletedVaultDoesNotExist", format!("A soft deleted vault with the name '{name}' does not exist. Ensure that the name for the vault that is being attempted to recover is in a recoverable state. For more information on soft delete please follow this link https://go.microsoft.com/fwlink/?linkid=2149745")));
    }
    let (value, store, status) = match (&existing, &deleted) {
        (Some(e), _) => {
            let value = validated(name, group, body, Some(e))?;
            let store = state
                .key_vaults
                .live
                .get(&key)
                .cloned()
                .unwrap_or_else(new_store);
            (value, store, 200)
        }
        (None, Some(d)) => {
            if !d.group.eq_ignore_ascii_case(group) {
                return Err(bad_request(format!(
                    "The soft-deleted vault '{name}' belongs to resource group '{}'; recover it there.",
                    d.group
                )));
            }
            // The vault comes back as it was; the request may add what it states.
            let mut merged = d.value.clone();
            if body["tags"].is_object() {
                merged["tags"] = body["tags"].clone();
            }
            for (k, v) in body["properties"].as_object().into_iter().flatten() {
                if k != "createMode" {
                    merged["properties"][k] = v.clone();
                }
            }
            let value = validated(
                name,
                group,
                &json!({ "location": d.location, "tags": merged["tags"], "properties": merged["properties"] }),
                Some(&d.value),
            )?;
            state.key_vaults.deleted.remove(&key);
            (value, d.store.clone(), 201)
        }
        (None, None) => (validated(name, group, body, None)?, new_store(), 201),
    };
    materialize(state, group, &id, value);
    state.key_vaults.live.insert(key, store);
    let stored = state.resources[&id.to_ascii_lowercase()].value.clone();
    Ok((status, stored))
}

/// Vaults_CreateOrUpdate.
pub(super) fn create_or_update(state: &mut State, call: &Call) -> Reply {
    let body = match call.body() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let group = call.param("resourceGroupName").to_string();
    let name = call.param("vaultName").to_string();
    match apply(state, &group, &name, &body) {
        Ok((status, value)) => call.long_running(state, status, &value, Pending::Done),
        Err((status, code, message)) => arm_error(status, &code, &message),
    }
}

/// A `Microsoft.KeyVault/vaults` resource of a deployment: the same rules; a refusal fails the
/// resource's deployment operation.
pub(super) fn deploy(
    state: &mut State,
    group: &str,
    resource: &Value,
) -> Result<(), (String, String)> {
    let name = resource["name"].as_str().unwrap_or_default().to_string();
    apply(state, group, &name, resource)
        .map(|_| ())
        .map_err(|(_, code, message)| (code, message))
}

/// Moves a removed vault (Vaults_Delete, or its resource group's deletion) to soft-deleted, with
/// the role assignments at or below it gone.
pub(crate) fn removed(state: &mut State, stored: &Stored) {
    if !stored.value["type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case(VAULT_TYPE))
    {
        return;
    }
    let name = stored.value["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let key = name.to_ascii_lowercase();
    let store = state.key_vaults.live.remove(&key).unwrap_or_else(new_store);
    let id = stored.value["id"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    state.resources.retain(|k, s| {
        !(s.value["type"] == "Microsoft.Authorization/roleAssignments"
            && (k.starts_with(&format!("{id}/providers/"))
                || k.starts_with(&format!("{id}/secrets/"))))
    });
    state.key_vaults.deleted.insert(
        key,
        Deleted {
            value: stored.value.clone(),
            group: stored.group.clone(),
            location: stored.value["location"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            deleted_at: now(),
            store,
        },
    );
}

/// Vaults_Delete: 200 (soft-deleted) or 204 (no such vault).
pub(super) fn delete(state: &mut State, call: &Call) -> Reply {
    let group = call.param("resourceGroupName");
    if !state.groups.contains_key(&group.to_ascii_lowercase()) {
        return group_missing(group);
    }
    let key = call.request.path.trim_end_matches('/').to_ascii_lowercase();
    if !state.resources.contains_key(&key) {
        return Reply::new(204);
    }
    super::resources::remove(state, &key);
    Reply::json(200, &Value::Null)
}

fn deleted_value(name: &str, d: &Deleted) -> Value {
    let retention = d.value["properties"]["softDeleteRetentionInDays"]
        .as_u64()
        .unwrap_or(DEFAULT_RETENTION_DAYS);
    json!({
        "id": deleted_id(&d.location, name),
        "name": name,
        "type": "Microsoft.KeyVault/deletedVaults",
        "properties": {
            "vaultId": d.value["id"],
            "location": d.location,
            "deletionDate": iso(d.deleted_at),
            "scheduledPurgeDate": iso(d.deleted_at + retention * 86_400),
            "tags": d.value["tags"],
            "purgeProtectionEnabled": d.value["properties"]["enablePurgeProtection"] == json!(true),
        },
    })
}

fn same_location(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.replace(' ', "").to_ascii_lowercase();
    norm(a) == norm(b)
}

fn deleted_not_found(name: &str) -> Reply {
    arm_error(
        404,
        "ResourceNotFound",
        &format!("The Resource 'Microsoft.KeyVault/deletedVaults/{name}' under subscription '{SUBSCRIPTION}' was not found."),
    )
}

/// Vaults_GetDeleted.
pub(super) fn get_deleted(state: &mut State, call: &Call) -> Reply {
    let name = call.param("vaultName");
    match state.key_vaults.deleted.get(&name.to_ascii_lowercase()) {
        Some(d) if same_location(&d.location, call.param("location")) => {
            Reply::json(200, &deleted_value(name, d))
        }
        _ => deleted_not_found(name),
    }
}

/// Vaults_ListDeleted.
pub(super) fn list_deleted(state: &mut State, call: &Call) -> Reply {
    let items: Vec<Value> = state
        .key_vaults
        .deleted
        .values()
        .map(|d| deleted_value(d.value["name"].as_str().unwrap_or_default(), d))
        .collect();
    page(state, call, items)
}

/// Vaults_PurgeDeleted.
pub(super) fn purge(state: &mut State, call: &Call) -> Reply {
    let name = call.param("vaultName").to_string();
    let key = name.to_ascii_lowercase();
    let Some(d) = state.key_vaults.deleted.get(&key) else {
        return deleted_not_found(&name);
    };
    if !same_location(&d.location, call.param("location")) {
        return deleted_not_found(&name);
    }
    if d.value["properties"]["enablePurgeProtection"] == json!(true) {
        return arm_error(
            405,
            "MethodNotAllowed",
            "Operation 'DeletedVaultPurge' is not allowed.",
        );
    }
    state.key_vaults.purging.insert(key.clone());
    call.long_running(state, 202, &Value::Null, Pending::PurgeVault { name: key })
}

/// The end of a purge: the vault, its secrets and its name are gone.
pub(crate) fn purged(state: &mut State, name: &str) {
    let key = name.to_ascii_lowercase();
    state.key_vaults.deleted.remove(&key);
    state.key_vaults.purging.remove(&key);
}

/// Vaults_CheckNameAvailability.
pub(super) fn check_name(state: &mut State, call: &Call) -> Reply {
    let body = match call.body() {
        Ok(b) => b,
        Err(r) => return r,
    };
    let name = body["name"].as_str().unwrap_or_default();
    if body["type"] != VAULT_TYPE {
        return arm_error(
            400,
            "BadRequest",
            "The parameter 'type' must be 'Microsoft.KeyVault/vaults'.",
        );
    }
    if let Some(problem) = name_problem(name) {
        return Reply::json(
            200,
            &json!({ "nameAvailable": false, "reason": "AccountNameInvalid", "message": problem }),
        );
    }
    let key = name.to_ascii_lowercase();
    let kv = &state.key_vaults;
    if kv.live.contains_key(&key)
        || kv.deleted.contains_key(&key)
        || kv.purging.contains(&key)
        || kv.reserved.contains(&key)
    {
        return Reply::json(
            200,
            &json!({ "nameAvailable": false, "reason": "AlreadyExists", "message": format!("The vault name '{name}' is already in use.") }),
        );
    }
    Reply::json(200, &json!({ "nameAvailable": true }))
}

/// Vaults_ListByResourceGroup / Vaults_ListBySubscription.
pub(super) fn list(state: &mut State, call: &Call) -> Reply {
    let group = call.param("resourceGroupName").to_string();
    if !group.is_empty() && !state.groups.contains_key(&group.to_ascii_lowercase()) {
        return group_missing(&group);
    }
    let items: Vec<Value> = state
        .resources
        .values()
        .filter(|s| s.value["type"] == VAULT_TYPE)
        .filter(|s| group.is_empty() || s.group.eq_ignore_ascii_case(&group))
        .map(|s| s.value.clone())
        .collect();
    page(state, call, items)
}

// ------------------------------------------------------------------ the data plane's view

struct ArmDirectory {
    state: Arc<Mutex<State>>,
}

impl Directory for ArmDirectory {
    fn vault(&self, name: &str) -> Option<VaultInfo> {
        let state = lock(&self.state);
        let key = name.to_ascii_lowercase();
        let store = state.key_vaults.live.get(&key)?.clone();
        let stored = state.resources.values().find(|s| {
            s.value["type"] == VAULT_TYPE
                && s.value["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
        })?;
        let props = &stored.value["properties"];
        Some(VaultInfo {
            name: stored.value["name"].as_str().unwrap_or(name).to_string(),
            resource_id: stored.value["id"].as_str().unwrap_or_default().to_string(),
            location: stored.value["location"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            rbac_authorization: props["enableRbacAuthorization"] == json!(true),
            purge_protection: props["enablePurgeProtection"] == json!(true),
            retention_days: props["softDeleteRetentionInDays"]
                .as_u64()
                .unwrap_or(DEFAULT_RETENTION_DAYS) as u32,
            network_acls: props["networkAcls"].clone(),
            public_network_access: props["publicNetworkAccess"]
                .as_str()
                .unwrap_or("Enabled")
                .to_string(),
            store,
        })
    }

    fn role_assignments(&self) -> Vec<RoleAssignment> {
        let state = lock(&self.state);
        state
            .resources
            .values()
            .filter(|s| s.value["type"] == "Microsoft.Authorization/roleAssignments")
            .map(|s| {
                let id = s.value["id"].as_str().unwrap_or_default().to_string();
                RoleAssignment {
                    scope: id
                        .split("/providers/Microsoft.Authorization/roleAssignments/")
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    id,
                    principal_id: s.value["properties"]["principalId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    role_definition_id: s.value["properties"]["roleDefinitionId"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                }
            })
            .collect()
    }
}

impl ArmDouble {
    /// The view a [`super::super::keyvault::KeyVaultDouble::start_linked`] data plane has of
    /// this double's vaults and role assignments.
    pub fn key_vault_directory(&self) -> Arc<dyn Directory> {
        Arc::new(ArmDirectory {
            state: self.state.clone(),
        })
    }

    /// A vault name taken in another subscription (409 `VaultAlreadyExists`).
    pub fn reserve_vault_name(&self, name: &str) {
        lock(&self.state)
            .key_vaults
            .reserved
            .insert(name.to_ascii_lowercase());
    }

    /// The soft-deleted vault of this name, as Vaults_GetDeleted shows it.
    pub fn deleted_vault(&self, name: &str) -> Option<Value> {
        let state = lock(&self.state);
        state
            .key_vaults
            .deleted
            .get(&name.to_ascii_lowercase())
            .map(|d| deleted_value(name, d))
    }
}
