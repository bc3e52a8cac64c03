//! A vault's secrets: versions, soft-deleted secrets, and the short time a deletion or a
//! recovery takes to settle. The store belongs to the vault, not to the data-plane server: the
//! ARM double keeps it with the vault resource, so a soft-deleted vault keeps its secrets, a
//! recovered one (`createMode: recover`) has them back, and a purged one loses them.
//!
//! Shapes (secrets.json 7.6): SecretBundle `{value, id, contentType, attributes, tags}`;
//! SecretItem without `value`; DeletedSecretBundle adds `recoveryId`, `deletedDate`,
//! `scheduledPurgeDate`. `attributes` carry `enabled`, `created`, `updated` (Unix seconds),
//! `recoveryLevel` and `recoverableDays`, as Key Vault answers (recorded answers in Microsoft's
//! SDK test recordings show `"recoveryLevel":"Recoverable+Purgeable","recoverableDays":90`).
//! Version ids are 32 lower-case hex digits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{json, Value};

/// A store shared between the ARM double's vault and the data-plane double.
pub type SharedStore = Arc<Mutex<SecretStore>>;

/// A new, empty shared store.
pub fn new_store() -> SharedStore {
    Arc::new(Mutex::new(SecretStore::default()))
}

#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub(crate) id: String,
    pub(crate) value: String,
    pub(crate) content_type: Option<String>,
    pub(crate) tags: Value,
    pub(crate) enabled: bool,
    pub(crate) created: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct StoredSecret {
    pub(crate) name: String,
    pub(crate) versions: Vec<Version>,
}

#[derive(Debug, Clone)]
pub(crate) struct DeletedEntry {
    pub(crate) secret: StoredSecret,
    pub(crate) deleted_date: i64,
    pub(crate) scheduled_purge_date: i64,
}

/// A deletion or recovery that has been accepted but not finished: for a few requests the
/// object is in neither place (Key Vault does this work in the background; the SDKs poll).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settling {
    Deleting,
    Recovering,
}

/// A vault's secrets.
#[derive(Debug, Default)]
pub struct SecretStore {
    pub(crate) secrets: BTreeMap<String, StoredSecret>,
    pub(crate) deleted: BTreeMap<String, DeletedEntry>,
    pub(crate) settling: BTreeMap<String, (Settling, u32)>,
    counter: u64,
    clock: StoreClock,
}

/// Where the vault's times (`created`, `deletedDate`) come from: the wall clock unless a test
/// installs another ([`SecretStore::set_clock`]), as Key Vault's own clock need not agree with
/// the operator's.
#[derive(Clone, Default)]
struct StoreClock(Option<Arc<dyn Fn() -> SystemTime + Send + Sync>>);

impl std::fmt::Debug for StoreClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "test clock"
        } else {
            "wall clock"
        })
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SecretStore {
    /// The vault's time now, in Unix seconds.
    pub(crate) fn now(&self) -> i64 {
        unix_seconds(self.clock.0.as_ref().map_or_else(SystemTime::now, |c| c()))
    }

    /// From now on the vault's times come from `clock` (e.g. a simulation's, or one set apart
    /// from the process's).
    pub fn set_clock(&mut self, clock: Arc<dyn Fn() -> SystemTime + Send + Sync>) {
        self.clock = StoreClock(Some(clock));
    }

    /// `attributes.created` (Unix seconds) of the latest version of a live secret.
    pub fn latest_created(&self, name: &str) -> Option<i64> {
        self.secrets
            .get(&name.to_ascii_lowercase())?
            .versions
            .last()
            .map(|v| v.created)
    }

    /// The names of the live secrets.
    pub fn names(&self) -> Vec<String> {
        self.secrets.values().map(|s| s.name.clone()).collect()
    }

    /// The names of the soft-deleted secrets.
    pub fn deleted_names(&self) -> Vec<String> {
        self.deleted
            .values()
            .map(|d| d.secret.name.clone())
            .collect()
    }

    /// The latest value of a live secret.
    pub fn latest_value(&self, name: &str) -> Option<String> {
        self.secrets
            .get(&name.to_ascii_lowercase())
            .and_then(|s| s.versions.last())
            .map(|v| v.value.clone())
    }

    /// How many versions a live secret has.
    pub fn version_count(&self, name: &str) -> usize {
        self.secrets
            .get(&name.to_ascii_lowercase())
            .map_or(0, |s| s.versions.len())
    }

    /// Stores a new version of `name` without a request (test set-up); returns its id.
    pub fn put(&mut self, name: &str, value: &str) -> String {
        self.add_version(name, value, None, json!({}))
    }

    /// Adds a version (creating the secret); returns the version id.
    pub(crate) fn add_version(
        &mut self,
        name: &str,
        value: &str,
        content_type: Option<String>,
        tags: Value,
    ) -> String {
        self.counter += 1;
        let created = self.now();
        let digest = crate::hash::sha256_hex(format!("{name}/{}", self.counter).as_bytes());
        let id = digest[..32].to_string();
        let entry = self
            .secrets
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| StoredSecret {
                name: name.to_string(),
                versions: Vec::new(),
            });
        entry.versions.push(Version {
            id: id.clone(),
            value: value.to_string(),
            content_type,
            tags: if tags.is_object() { tags } else { json!({}) },
            enabled: true,
            created,
        });
        id
    }

    /// Whether `name` is in the middle of `kind`; counts one request against it.
    pub(crate) fn settling(&mut self, name: &str, kind: Settling) -> bool {
        let key = name.to_ascii_lowercase();
        match self.settling.get_mut(&key) {
            Some((k, left)) if *k == kind && *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn start_settling(&mut self, name: &str, kind: Settling, requests: u32) {
        if requests > 0 {
            self.settling
                .insert(name.to_ascii_lowercase(), (kind, requests));
        } else {
            self.settling.remove(&name.to_ascii_lowercase());
        }
    }

    /// Moves a live secret to the deleted ones.
    pub(crate) fn delete(&mut self, name: &str, retention_days: u32) -> Option<DeletedEntry> {
        let secret = self.secrets.remove(&name.to_ascii_lowercase())?;
        let deleted_date = self.now();
        let entry = DeletedEntry {
            secret,
            deleted_date,
            scheduled_purge_date: deleted_date + i64::from(retention_days) * 86_400,
        };
        self.deleted
            .insert(name.to_ascii_lowercase(), entry.clone());
        Some(entry)
    }

    /// Moves a deleted secret back.
    pub(crate) fn recover(&mut self, name: &str) -> Option<StoredSecret> {
        let entry = self.deleted.remove(&name.to_ascii_lowercase())?;
        self.secrets
            .insert(name.to_ascii_lowercase(), entry.secret.clone());
        Some(entry.secret)
    }
}

/// `attributes` of a version, with the vault's recovery level.
pub(crate) fn attributes(version: &Version, recovery: &Recovery) -> Value {
    json!({
        "enabled": version.enabled,
        "created": version.created,
        "updated": version.created,
        "recoveryLevel": recovery.level,
        "recoverableDays": recovery.days,
    })
}

/// The vault's deletion recovery level (secrets.json `DeletionRecoveryLevel`): with purge
/// protection "Recoverable" (no purge), without it "Recoverable+Purgeable"; "Customized..." when
/// the retention is under 90 days ("purge when 7 <= SoftDeleteRetentionInDays < 90").
#[derive(Debug, Clone)]
pub(crate) struct Recovery {
    pub(crate) level: &'static str,
    pub(crate) days: u32,
}

impl Recovery {
    pub(crate) fn of(purge_protection: bool, days: u32) -> Self {
        let level = match (purge_protection, days >= 90) {
            (true, true) => "Recoverable",
            (false, true) => "Recoverable+Purgeable",
            (true, false) => "CustomizedRecoverable",
            (false, false) => "CustomizedRecoverable+Purgeable",
        };
        Self { level, days }
    }
}

/// A SecretBundle (with the value when `with_value`).
pub(crate) fn bundle(
    base: &str,
    secret: &StoredSecret,
    version: &Version,
    recovery: &Recovery,
    with_value: bool,
) -> Value {
    let mut body = json!({
        "id": format!("{base}/secrets/{}/{}", secret.name, version.id),
        "attributes": attributes(version, recovery),
        "tags": version.tags,
    });
    if with_value {
        body["value"] = json!(version.value);
    }
    if let Some(ct) = &version.content_type {
        body["contentType"] = json!(ct);
    }
    body
}

/// A DeletedSecretBundle (no value: Key Vault does not return it on delete).
pub(crate) fn deleted_bundle(base: &str, entry: &DeletedEntry, recovery: &Recovery) -> Value {
    let latest = entry
        .secret
        .versions
        .last()
        .expect("a secret has a version");
    let mut body = bundle(base, &entry.secret, latest, recovery, false);
    body["recoveryId"] = json!(format!("{base}/deletedsecrets/{}", entry.secret.name));
    body["deletedDate"] = json!(entry.deleted_date);
    body["scheduledPurgeDate"] = json!(entry.scheduled_purge_date);
    body
}
