//! The secrets operations of secrets.json 7.6 on a vault's store (see the module above for the
//! answers each gives): SetSecret, GetSecret, GetSecretVersions, GetSecrets, DeleteSecret,
//! GetDeletedSecret, GetDeletedSecrets, RecoverDeletedSecret, PurgeDeletedSecret; 501 for the
//! spec's other operations.

use serde_json::{json, Value};

use super::store::{self, Recovery, Settling};
use super::{kv_error, lock_store, Call, RecordedRequest, Reply, VaultInfo};

fn not_found(name: &str, version: &str) -> Reply {
    let id = if version.is_empty() {
        name.to_string()
    } else {
        format!("{name}/{version}")
    };
    kv_error(
        404,
        "SecretNotFound",
        &format!("A secret with (name/id) {id} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
        None,
    )
}

fn deleted_not_found(name: &str) -> Reply {
    kv_error(
        404,
        "SecretNotFound",
        &format!("Deleted Secret not found: {name}"),
        None,
    )
}

fn bad_parameter(message: &str) -> Reply {
    kv_error(400, "BadParameter", message, None)
}

/// `maxresults` (1..=25, default 25) and the `$skiptoken` offset of a list request.
fn paging(request: &RecordedRequest) -> Result<(usize, usize), Reply> {
    let max = match request.query_param("maxresults") {
        None => 25,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=25).contains(&n) => n,
            _ => {
                return Err(bad_parameter(&format!(
                    "Invalid maxresults '{v}': it must be between 1 and 25."
                )))
            }
        },
    };
    let skip = request
        .query_param("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((max, skip))
}

fn page(base: &str, request: &RecordedRequest, items: Vec<Value>) -> Reply {
    let (max, skip) = match paging(request) {
        Ok(p) => p,
        Err(reply) => return reply,
    };
    let end = (skip + max).min(items.len());
    let next = (end < items.len()).then(|| {
        format!(
            "{base}{}?api-version=7.6&$skiptoken={end}&maxresults={max}",
            request.path
        )
    });
    Reply::json(
        200,
        &json!({ "value": items.get(skip..end).unwrap_or(&[]), "nextLink": next }),
    )
}

pub(super) fn operate(base: &str, vault: &VaultInfo, call: &Call, settling_requests: u32) -> Reply {
    let recovery = Recovery::of(vault.purge_protection, vault.retention_days);
    let mut store = lock_store(&vault.store);
    let name = call.secret().to_string();
    let key = name.to_ascii_lowercase();
    if !name.is_empty()
        && (name.len() > 127 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return bad_parameter(&format!(
            "The request URI contains an invalid name: {name}. Secret names match ^[0-9a-zA-Z-]+$ (1 to 127 characters)."
        ));
    }
    match call.operation_id.as_str() {
        "SetSecret" => {
            let body: Value = match serde_json::from_str(&call.request.body) {
                Ok(b) => b,
                Err(_) => return bad_parameter("The request body is not valid JSON."),
            };
            let Some(value) = body["value"].as_str() else {
                return bad_parameter("Property 'value' is required and must be a string.");
            };
            if value.len() > crate::keyvault::MAX_SECRET_BYTES {
                return bad_parameter(&format!(
                    "The secret value is {} bytes; the maximum is 25 KB.",
                    value.len()
                ));
            }
            if store.deleted.contains_key(&key) || store.settling(&name, Settling::Deleting) {
                return kv_error(
                    409,
                    "Conflict",
                    &format!("Secret {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the secret can only be recovered or purged."),
                    Some("ObjectIsDeletedButRecoverable"),
                );
            }
            store.add_version(
                &name,
                value,
                body["contentType"].as_str().map(str::to_string),
                body["tags"].clone(),
            );
            let secret = &store.secrets[&key];
            let version = secret.versions.last().expect("just added");
            Reply::json(200, &store::bundle(base, secret, version, &recovery, true))
        }
        "GetSecret" => {
            let version = call
                .params
                .get("secret-version")
                .cloned()
                .unwrap_or_default();
            if store.settling(&name, Settling::Recovering) {
                return not_found(&name, &version);
            }
            let Some(secret) = store.secrets.get(&key) else {
                return not_found(&name, &version);
            };
            let found = if version.is_empty() {
                secret.versions.last()
            } else {
                secret.versions.iter().find(|v| v.id == version)
            };
            match found {
                Some(v) if !v.enabled => kv_error(
                    403,
                    "Forbidden",
                    "Operation get is not allowed on a disabled secret.",
                    Some("SecretDisabled"),
                ),
                Some(v) => Reply::json(200, &store::bundle(base, secret, v, &recovery, true)),
                None => not_found(&name, &version),
            }
        }
        "GetSecretVersions" => {
            let Some(secret) = store.secrets.get(&key) else {
                return not_found(&name, "");
            };
            let items = secret
                .versions
                .iter()
                .map(|v| store::bundle(base, secret, v, &recovery, false))
                .collect();
            page(base, call.request, items)
        }
        "GetSecrets" => {
            let items = store
                .secrets
                .values()
                .filter_map(|s| {
                    let latest = s.versions.last()?;
                    let mut item = store::bundle(base, s, latest, &recovery, false);
                    item["id"] = json!(format!("{base}/secrets/{}", s.name));
                    Some(item)
                })
                .collect();
            page(base, call.request, items)
        }
        "DeleteSecret" => {
            let Some(entry) = store.delete(&name, vault.retention_days) else {
                return not_found(&name, "");
            };
            store.start_settling(&name, Settling::Deleting, settling_requests);
            Reply::json(200, &store::deleted_bundle(base, &entry, &recovery))
        }
        "GetDeletedSecret" => {
            if store.settling(&name, Settling::Deleting) {
                return deleted_not_found(&name);
            }
            match store.deleted.get(&key) {
                Some(entry) => Reply::json(200, &store::deleted_bundle(base, entry, &recovery)),
                None => deleted_not_found(&name),
            }
        }
        "GetDeletedSecrets" => {
            let items = store
                .deleted
                .values()
                .map(|e| store::deleted_bundle(base, e, &recovery))
                .collect();
            page(base, call.request, items)
        }
        "RecoverDeletedSecret" => {
            if store.settling(&name, Settling::Deleting) {
                return not_found(&name, "");
            }
            let Some(secret) = store.recover(&name) else {
                return not_found(&name, "");
            };
            store.start_settling(&name, Settling::Recovering, settling_requests);
            let latest = secret.versions.last().expect("a secret has a version");
            Reply::json(200, &store::bundle(base, &secret, latest, &recovery, false))
        }
        "PurgeDeletedSecret" => {
            if store.settling(&name, Settling::Deleting) || !store.deleted.contains_key(&key) {
                return deleted_not_found(&name);
            }
            if vault.purge_protection {
                return kv_error(
                    403,
                    "Forbidden",
                    "Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed.",
                    None,
                );
            }
            store.deleted.remove(&key);
            Reply::new(204)
        }
        other => kv_error(
            501,
            "NotImplemented",
            &format!(
                "{other} is an operation of secrets.json that the Key Vault double does not model."
            ),
            None,
        ),
    }
}
