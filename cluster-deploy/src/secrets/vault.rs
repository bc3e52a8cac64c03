//! The cluster's vault through its data plane (support::keyvault, api-version 7.6): tokens for
//! the Key Vault audience from the same credential as ARM, reading the kept items, uploading a
//! [`Plan`]'s changes as new secret versions, and the operator's object id from the token.
//! Values travel only as [`Secret`]; the log names items and reasons, never values.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use support::azure_auth::TokenProvider;
use support::cluster_secrets::SecretItem;
use support::keyvault::{KeyVaultClient, KeyVaultError, TokenSource};
use support::secret::Secret;

use super::reconcile::Plan;

/// Tokens for `https://vault.azure.net` from cluster-deploy's credential (client secret, Azure
/// CLI or managed identity), built with `audience: support::keyvault::RESOURCE`.
pub struct VaultTokens(pub TokenProvider);

impl TokenSource for VaultTokens {
    fn token(&self) -> Result<Secret, Box<dyn std::error::Error + Send + Sync>> {
        self.0.token().map_err(|e| Box::new(e) as _)
    }

    fn invalidate(&self) {
        self.0.invalidate();
    }
}

impl VaultTokens {
    pub fn shared(self) -> Arc<dyn TokenSource> {
        Arc::new(self)
    }
}

/// The `oid` claim of a Microsoft Entra access token (a JWT): the object id of the principal
/// it stands for. Read, not verified: it is our own token, used to name ourselves in a role
/// assignment; the service verifies it when we use it.
pub fn object_id(token: &Secret) -> Option<String> {
    let payload = token.expose().split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let oid = claims["oid"].as_str()?;
    let well_formed = oid.len() == 36 && oid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    well_formed.then(|| oid.to_ascii_lowercase())
}

/// The latest version of each of `items` the vault holds (absent ones are left out).
pub fn read_items(
    client: &KeyVaultClient,
    items: &[SecretItem],
) -> Result<BTreeMap<SecretItem, Secret>, KeyVaultError> {
    let mut out = BTreeMap::new();
    for &item in items {
        match client.get_secret(item.vault_name(), None) {
            Ok(found) => {
                out.insert(item, found.value);
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// What [`read_or_recover_items`] found: the latest version of each item the vault holds,
/// and the items it brought back from soft delete to get there.
#[derive(Debug, Default)]
pub struct ReadItems {
    pub values: BTreeMap<SecretItem, Secret>,
    pub recovered: Vec<SecretItem>,
}

/// The latest version of each of `items`, like [`read_items`], but an item that is merely
/// soft-deleted is not absent: GetDeletedSecret finds it, RecoverDeletedSecret brings it back
/// (the client waits until GetSecret reads it again), and its value is what the caller
/// reconciles against. Left out of the answer are only the items that are neither live nor
/// deleted, which are the ones to generate. Otherwise a deleted CA, gossip key or ACL token
/// would be silently replaced by new material that the running cluster does not share.
pub fn read_or_recover_items(
    client: &KeyVaultClient,
    items: &[SecretItem],
) -> Result<ReadItems, KeyVaultError> {
    let mut out = ReadItems::default();
    for &item in items {
        let name = item.vault_name();
        let found = match client.get_secret(name, None) {
            Ok(found) => found,
            Err(e) if e.is_not_found() => match client.get_deleted_secret(name) {
                Ok(deleted) => {
                    tracing::warn!(
                        "{name} is soft-deleted in the vault (deletedDate {}): recovering it, so \
                         its value is kept rather than replaced",
                        deleted
                            .deleted_date
                            .map_or_else(|| "unknown".to_string(), |d| d.to_string())
                    );
                    client.recover_deleted_secret(name)?;
                    out.recovered.push(item);
                    client.get_secret(name, None)?
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            },
            Err(e) => return Err(e),
        };
        out.values.insert(item, found.value);
    }
    Ok(out)
}

/// One new secret version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Uploaded {
    pub secret: String,
    pub version: String,
    pub why: String,
    /// The version's `attributes.created` (Unix seconds, Key Vault's clock), when answered.
    #[serde(skip)]
    pub created: Option<i64>,
}

/// Uploads what `plan` changes, in [`Plan::uploads`]'s order (a CA before what it signs). A secret someone soft-deleted is recovered first, then overwritten: its name
/// cannot be set again otherwise (409 `ObjectIsDeletedButRecoverable`).
pub fn upload(client: &KeyVaultClient, plan: &Plan) -> Result<Vec<Uploaded>, KeyVaultError> {
    let mut done = Vec::new();
    for (item, value, why) in plan.uploads() {
        let name = item.vault_name();
        let stored = match client.set_secret(name, value, Some(item.content_type())) {
            Err(e) if e.is_deleted_but_recoverable() => {
                tracing::warn!(
                    "{name} was soft-deleted in the vault: recovering it, then storing a new version"
                );
                client.recover_deleted_secret(name)?;
                client.set_secret(name, value, Some(item.content_type()))?
            }
            other => other?,
        };
        tracing::info!(
            "stored a new version of {name} ({why}): version {}",
            stored.version
        );
        done.push(Uploaded {
            secret: name.to_string(),
            version: stored.version,
            why: why.to_string(),
            created: stored.created,
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &serde_json::Value) -> Secret {
        Secret::new(format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(b"{\"alg\":\"RS256\"}"),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        ))
    }

    #[test]
    fn the_object_id_comes_from_the_token() {
        let oid = "6F1B2E3C-1111-4222-8333-444455556666";
        assert_eq!(
            object_id(&jwt(&serde_json::json!({ "oid": oid, "aud": "x" }))).as_deref(),
            Some("6f1b2e3c-1111-4222-8333-444455556666")
        );
        assert_eq!(object_id(&jwt(&serde_json::json!({ "sub": "x" }))), None);
        assert_eq!(
            object_id(&jwt(&serde_json::json!({ "oid": "'; drop" }))),
            None,
            "only an id goes into a template parameter"
        );
        assert_eq!(object_id(&Secret::new("opaque-token".into())), None);
    }
}
