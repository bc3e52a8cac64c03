//! The cluster's Key Vault in the commands: apply's first deployment (the vault and the
//! operator's role; a soft-deleted vault of the same name recovered when its tags say it is
//! this cluster's, otherwise recovered or purged as the operator says), the data-plane client, keeping and uploading the secrets, and what destroy leaves.
//!
//! Management calls (Microsoft.KeyVault 2025-05-01, keyvault.json): Vaults_Get (the vault and
//! its `vaultUri`), Vaults_GetDeleted (`/subscriptions/{s}/providers/Microsoft.KeyVault/
//! locations/{location}/deletedVaults/{name}`) and Vaults_PurgeDeleted (`.../purge`, POST,
//! long-running). Vaults_Delete goes through destroy's generic delete.

use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};
use support::azure_auth::TokenProvider;
use support::keyvault::{KeyVaultClient, KeyVaultError, Options};
use support::secret::Secret;

use crate::arm::{ArmClient, Outcome};
use crate::auth::Env;
use crate::cli::{ApplyVaultArgs, AzureArgs};
use crate::model::{Cluster, GossipSource, KeyVault, TlsSource, CLUSTER_TAG};
use crate::secrets::pki::{CertificateAuthority, ExtraSan, Lifetimes, PkiSpec};
use crate::secrets::reconcile::{self, Inputs, Plan, Rotation};
use crate::secrets::vault::{self as data, Uploaded, VaultTokens};
use crate::template::key_vault::{vault_template, VaultStep};
use crate::template::{self, KEY_VAULT_API};

use super::connect::{key_vault_tokens, log_progress};
use super::Loaded;

/// The vault's resource id.
pub(super) fn vault_id(arm: &ArmClient, cluster: &Cluster, vault: &KeyVault) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}",
        arm.subscription, cluster.resource_group, vault.name
    )
}

fn deleted_path(arm: &ArmClient, location: &str, name: &str) -> String {
    format!(
        "/subscriptions/{}/providers/Microsoft.KeyVault/locations/{location}/deletedVaults/{name}",
        arm.subscription
    )
}

/// Vaults_GetDeleted: the soft-deleted vault of this name in `location`, if any.
pub(super) fn deleted_vault(arm: &ArmClient, location: &str, name: &str) -> Result<Option<Value>> {
    let url = arm.url(&deleted_path(arm, location, name), KEY_VAULT_API, &[]);
    arm.get_optional(&url)
        .with_context(|| format!("looking for a soft-deleted Key Vault {name} in {location}"))
}

/// Vaults_PurgeDeleted, followed to its end.
pub(super) fn purge_deleted_vault(arm: &ArmClient, location: &str, name: &str) -> Result<()> {
    let url = arm.url(
        &format!("{}/purge", deleted_path(arm, location, name)),
        KEY_VAULT_API,
        &[],
    );
    tracing::info!("purging the soft-deleted Key Vault {name}");
    let answer = match arm.send(Method::POST, &url, None) {
        Ok(answer) => answer,
        Err(e) if e.status() == Some(405) || e.code() == Some("MethodNotAllowed") => bail!(
            "Key Vault {name} has purge protection: Azure keeps it (and its name) until its \
             retention ends ({e}); recover it with `cluster-deploy apply --recover-vault`, or \
             give the cluster another vault with `key_vault.name`"
        ),
        Err(e) => return Err(e).with_context(|| format!("purging Key Vault {name}")),
    };
    match arm.wait(
        &format!("purging Key Vault {name}"),
        answer,
        None,
        &mut log_progress("purge"),
    )? {
        Outcome::Succeeded(_) => Ok(()),
        Outcome::Failed { error, .. } => bail!("purging Key Vault {name} failed: {error}"),
    }
}

/// What apply's first deployment must do about the vault: nothing when it exists; create it;
/// or, when a soft-deleted vault holds its name, recover or purge it as the operator said.
pub(super) fn prepare(
    arm: &ArmClient,
    cluster: &Cluster,
    vault: &KeyVault,
    choice: &ApplyVaultArgs,
) -> Result<VaultStep> {
    let id = vault_id(arm, cluster, vault);
    if arm
        .get_resource(&id, KEY_VAULT_API)
        .with_context(|| format!("reading Key Vault {}", vault.name))?
        .is_some()
    {
        if choice.recover_vault || choice.purge_deleted_vault {
            tracing::warn!(
                "Key Vault {} exists: --recover-vault and --purge-deleted-vault do nothing",
                vault.name
            );
        }
        return Ok(VaultStep::Exists);
    }
    let Some(deleted) = deleted_vault(arm, &cluster.location, &vault.name)? else {
        if choice.recover_vault {
            bail!(
                "--recover-vault: there is no soft-deleted Key Vault {} in {} to recover",
                vault.name,
                cluster.location
            );
        }
        return Ok(VaultStep::Create);
    };
    let props = &deleted["properties"];
    let until = props["scheduledPurgeDate"].as_str().unwrap_or("?");
    if choice.recover_vault {
        tracing::info!(
            "recovering the soft-deleted Key Vault {} with its secrets (its role assignments \
             are made again by this deployment)",
            vault.name
        );
        return Ok(VaultStep::Recover);
    }
    if choice.purge_deleted_vault {
        purge_deleted_vault(arm, &cluster.location, &vault.name)?;
        return Ok(VaultStep::Create);
    }
    // Vaults_GetDeleted's `properties.tags` are "Tags of the original vault" (keyvault.json,
    // DeletedVaultProperties): a vault this cluster made carries its `nomad-cluster` tag. That
    // is this cluster re-created, and recovering is the non-destructive way on (the same
    // secrets; nothing is lost): the default.
    let owner = props["tags"][CLUSTER_TAG].as_str();
    if owner == Some(cluster.name.as_str()) {
        tracing::warn!(
            "Key Vault {} was soft-deleted (deleted {}) and is tagged {CLUSTER_TAG}={}: this \
             cluster's own vault, so it is recovered with its secrets (the same CA, gossip key \
             and ACL token; its role assignments are made again by this deployment). To start \
             afresh instead, run apply with --purge-deleted-vault",
            vault.name,
            props["deletionDate"].as_str().unwrap_or("?"),
            cluster.name
        );
        return Ok(VaultStep::Recover);
    }
    let whose = match owner {
        Some(other) => format!("it is tagged {CLUSTER_TAG}={other}, not {}", cluster.name),
        None => format!(
            "it has no {CLUSTER_TAG} tag naming cluster {}",
            cluster.name
        ),
    };
    bail!(
        "the cluster's Key Vault name {name} is held by a soft-deleted vault (deleted {deleted}, \
         kept until {until}{protected}) that may not be this cluster's ({whose}); nothing was \
         deployed. Choose:\n  \
         cluster-deploy apply --recover-vault        bring it back with its secrets (the same \
         CA, gossip key and ACL token: right for re-creating this cluster)\n  \
         cluster-deploy apply --purge-deleted-vault  delete it for good and start with new \
         secrets{refused}\n  or set `key_vault.name` in the cluster file to use another vault",
        name = vault.name,
        deleted = props["deletionDate"].as_str().unwrap_or("?"),
        protected = if props["purgeProtectionEnabled"] == true {
            ", purge protection on"
        } else {
            ""
        },
        refused = if props["purgeProtectionEnabled"] == true {
            " (refused: it has purge protection)"
        } else {
            ""
        },
    )
}

/// The vault's deployment: `<deployment>.vault`. A cluster name has no `.`, so no cluster's
/// main deployment can bear this name (`<cluster>-vault` could: a cluster may be called that).
pub(super) fn vault_deployment_name(deployment: &str) -> String {
    format!("{deployment}.vault")
}

/// The name the vault's deployment had before it was `<deployment>.vault`; destroy still reads
/// it, trusting it only when it is this cluster's.
pub(super) fn legacy_vault_deployment_name(deployment: &str) -> String {
    format!("{deployment}-vault")
}

/// The deployment that makes (or recovers) the vault and gives the operator Secrets Officer.
pub(super) fn deploy_vault(
    arm: &ArmClient,
    cluster: &Cluster,
    vault: &KeyVault,
    step: VaultStep,
    operator: &str,
) -> Result<()> {
    let template = vault_template(cluster, step).expect("the cluster has a vault");
    let parameters = template::parameters(cluster, Some(operator));
    let name = vault_deployment_name(&cluster.names.deployment);
    tracing::info!(
        "deploying {name}: Key Vault {} ({}) and Key Vault Secrets Officer for {operator}",
        vault.name,
        match step {
            VaultStep::Exists => "exists",
            VaultStep::Create => "new",
            VaultStep::Recover => "recovered",
        }
    );
    let outcome = arm
        .deploy(
            &cluster.resource_group,
            &name,
            &template,
            &parameters,
            &json!({ CLUSTER_TAG: cluster.name }),
            &mut log_progress(&name),
        )
        .with_context(|| format!("deployment {name} was refused"))?;
    match outcome {
        Outcome::Succeeded(_) => Ok(()),
        Outcome::Failed { error, .. } => {
            let failures = super::apply::failed_operations(arm, &cluster.resource_group, &name)?;
            let conflict = failures.iter().any(|f| f.code == "ConflictError");
            let mut text = format!("deployment {name} failed: {error}");
            for f in &failures {
                text.push_str(&format!("\n  {}: {}: {}", f.resource, f.code, f.message));
            }
            if conflict {
                text.push_str(&format!(
                    "\nthe vault name {} belongs to a soft-deleted vault (in another location?): \
                     recover or purge it (`az keyvault list-deleted`), or set `key_vault.name`",
                    vault.name
                ));
            }
            if failures.iter().any(|f| f.code == "VaultAlreadyExists") {
                text.push_str(&format!(
                    "\nKey Vault names are global and {} is taken elsewhere: set `key_vault.name` \
                     in the cluster file",
                    vault.name
                ));
            }
            bail!(text)
        }
    }
}

/// How long a command waits for a role assignment to propagate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Patience {
    /// apply: it has just made the operator's role (`--key-vault-timeout-secs`).
    NewRole,
    /// env, rotate: the role is old if it exists at all; a missing one should fail soon.
    ExistingRole,
}

/// The longest wait for an existing role (env, rotate) before a 403 is the answer.
const EXISTING_ROLE_WAIT: Duration = Duration::from_secs(120);

/// Key Vault options from the command line (a deadline for each call, retry delays).
fn options(args: &AzureArgs, patience: Patience) -> Options {
    let deadline = Duration::from_secs(args.key_vault_timeout_secs);
    Options {
        deadline: match patience {
            Patience::NewRole => deadline,
            Patience::ExistingRole => deadline.min(EXISTING_ROLE_WAIT),
        },
        initial_delay: Duration::from_millis(args.retry_delay_ms),
        ..Options::default()
    }
}

/// A data-plane client for the cluster's vault.
pub(super) struct Session {
    pub(super) client: KeyVaultClient,
}

/// Key Vault tokens from cluster-deploy's credential, and the object id of the principal they
/// stand for (`--operator-object-id`, or the token's `oid`).
pub(super) fn operator(args: &AzureArgs, env: &Env) -> Result<(String, TokenProvider)> {
    let tokens = key_vault_tokens(args, env)?;
    let token = tokens
        .token()
        .context("getting a token for Azure Key Vault (https://vault.azure.net)")?;
    let operator = match &args.operator_object_id {
        Some(id) => {
            let id = id.trim().to_ascii_lowercase();
            if uuid::Uuid::try_parse(&id).is_err() {
                bail!("--operator-object-id {id:?} is not an object id (a GUID)");
            }
            id
        }
        None => data::object_id(&token)
            .context("the Key Vault token names no object id (`oid`): pass --operator-object-id")?,
    };
    Ok((operator, tokens))
}

/// Opens the vault's data plane: its URL from `--key-vault-url`, else the vault's `vaultUri`
/// as ARM reports it (the vault must exist).
pub(super) fn open(
    args: &AzureArgs,
    arm: &ArmClient,
    cluster: &Cluster,
    vault: &KeyVault,
    (_, tokens): (String, TokenProvider),
    patience: Patience,
) -> Result<Session> {
    let url = match &args.key_vault_url {
        Some(url) => url.clone(),
        None => {
            let id = vault_id(arm, cluster, vault);
            let found = arm.get_resource(&id, KEY_VAULT_API)?.with_context(|| {
                format!(
                    "Key Vault {} does not exist: run `cluster-deploy apply` first",
                    vault.name
                )
            })?;
            match found["properties"]["vaultUri"].as_str() {
                Some(uri) => uri.to_string(),
                None => support::keyvault::vault_url(&vault.name)?.to_string(),
            }
        }
    };
    let client = KeyVaultClient::new(&url, VaultTokens(tokens).shared(), options(args, patience))
        .with_context(|| format!("Key Vault {}", vault.name))?;
    Ok(Session { client })
}

/// The data plane of a vault that apply made before (env, rotate): its `vaultUri`, a role
/// that should exist already.
pub(super) fn open_existing(
    args: &AzureArgs,
    env: &Env,
    arm: &ArmClient,
    cluster: &Cluster,
    vault: &KeyVault,
) -> Result<Session> {
    open(
        args,
        arm,
        cluster,
        vault,
        operator(args, env)?,
        Patience::ExistingRole,
    )
}

/// Adds the remedy to a data-plane failure the operator can fix.
pub(super) fn explain(e: KeyVaultError, vault: &KeyVault, doing: &str) -> anyhow::Error {
    let text = e.to_string();
    let hint = if text.contains("ForbiddenByFirewall") {
        format!(
            "; the vault's firewall does not admit this machine: add its public address to \
             `key_vault.allowed_cidr_blocks` (now {}) and run apply",
            if vault.allowed_cidrs.is_empty() {
                "empty".to_string()
            } else {
                vault.allowed_cidrs.join(", ")
            }
        )
    } else if e.is_forbidden_by_rbac() {
        "; this principal has no Key Vault Secrets Officer role on the vault yet (apply grants \
         it to whoever runs it; a new assignment can take minutes to propagate)"
            .to_string()
    } else {
        String::new()
    };
    anyhow::Error::new(e).context(format!("{doing} in Key Vault {}{hint}", vault.name))
}

/// The reconcile inputs: what the cluster keeps, its own CA and gossip key read from their
/// files, the certificates' names.
pub(super) fn inputs(loaded: &Loaded, rotation: Rotation, now: SystemTime) -> Result<Inputs> {
    let cluster = &loaded.cluster;
    let s = &cluster.security;
    let own_ca = match &s.tls {
        TlsSource::OwnCa {
            cert_file,
            key_file,
        } => {
            let read = |p: &std::path::Path| {
                std::fs::read_to_string(p).with_context(|| {
                    format!(
                        "cluster file {}: reading {}",
                        loaded.path.display(),
                        p.display()
                    )
                })
            };
            let cert = read(cert_file)?;
            let key = Secret::new(read(key_file)?);
            Some(
                CertificateAuthority::from_pem(&cert, &key, now).with_context(|| {
                    format!(
                        "cluster file {}: `nomad.tls.ca_cert_file` {} and `ca_key_file` {}",
                        loaded.path.display(),
                        cert_file.display(),
                        key_file.display()
                    )
                })?,
            )
        }
        _ => None,
    };
    let own_gossip_key = match &s.gossip {
        GossipSource::OwnKey(file) => Some(crate::config::read_gossip_key(&loaded.path, file)?),
        _ => None,
    };
    let server_sans = cluster
        .load_balancer_fqdn()
        .map(|fqdn| ExtraSan::parse(&fqdn))
        .transpose()?
        .into_iter()
        .collect();
    Ok(Inputs {
        gossip: s.gossip(),
        bootstrap_token: s.acl_bootstrap,
        tls: s.tls(),
        pki: PkiSpec {
            cluster: cluster.name.clone(),
            region: s.region.clone(),
            server_sans,
            lifetimes: Lifetimes::default(),
        },
        own_ca,
        own_gossip_key,
        rotation,
        now,
    })
}

/// Reads the own material (so a bad file fails before anything is deployed).
pub(super) fn check_local_material(loaded: &Loaded) -> Result<()> {
    inputs(loaded, Rotation::default(), SystemTime::now()).map(|_| ())
}

/// Reads the vault, decides what it must hold, uploads the changes. Returns the plan (every
/// kept value) and the new versions.
pub(super) fn sync(
    session: &Session,
    loaded: &Loaded,
    vault: &KeyVault,
    rotation: Rotation,
) -> Result<(Plan, Vec<Uploaded>)> {
    let cluster = &loaded.cluster;
    let items = cluster.security.items();
    let read = data::read_or_recover_items(&session.client, &items)
        .map_err(|e| explain(e, vault, "reading the cluster's secrets"))?;
    if !read.recovered.is_empty() {
        tracing::warn!(
            "Key Vault {}: recovered soft-deleted {} and kept {}",
            vault.name,
            read.recovered
                .iter()
                .map(|i| i.vault_name())
                .collect::<Vec<_>>()
                .join(", "),
            if read.recovered.len() == 1 {
                "its value"
            } else {
                "their values"
            }
        );
    }
    let stored = read.values;
    let plan = reconcile::reconcile(&stored, &inputs(loaded, rotation, SystemTime::now())?)
        .with_context(|| format!("the secrets in Key Vault {}", vault.name))?;
    for note in &plan.notes {
        tracing::warn!("{note}");
    }
    let uploaded = data::upload(&session.client, &plan)
        .map_err(|e| explain(e, vault, "storing the cluster's secrets"))?;
    if uploaded.is_empty() {
        tracing::info!(
            "Key Vault {}: every secret is kept as it is ({} items)",
            vault.name,
            plan.values.len()
        );
    }
    Ok((plan, uploaded))
}

/// What became of the vault after destroy: soft-deleted (and until when), purged, or none.
pub(super) fn after_destroy(
    arm: &ArmClient,
    cluster: &Cluster,
    vault: &KeyVault,
    purge: bool,
) -> Result<Value> {
    let Some(deleted) = deleted_vault(arm, &cluster.location, &vault.name)? else {
        return Ok(json!({ "name": vault.name, "state": "absent" }));
    };
    let props = &deleted["properties"];
    if purge {
        // Purging is for good: only the cluster's own vault, by its tag and its group
        // (DeletedVaultProperties.tags and .vaultId, keyvault.json).
        let tag = props["tags"][CLUSTER_TAG].as_str();
        let vault_id = props["vaultId"].as_str().unwrap_or("");
        let in_group = format!(
            "/resourcegroups/{}/",
            cluster.resource_group.to_ascii_lowercase()
        );
        if tag != Some(cluster.name.as_str()) || !vault_id.to_ascii_lowercase().contains(&in_group)
        {
            bail!(
                "--purge-vault: the soft-deleted Key Vault {} is not this cluster's (tag \
                 {CLUSTER_TAG}: {}, vault id {vault_id}): not purged; purge it yourself if it \
                 must go (`az keyvault purge --name {}`)",
                vault.name,
                tag.unwrap_or("none"),
                vault.name
            );
        }
        purge_deleted_vault(arm, &cluster.location, &vault.name)?;
        return Ok(json!({ "name": vault.name, "state": "purged" }));
    }
    Ok(json!({
        "name": vault.name,
        "state": "soft-deleted",
        "deletion_date": props["deletionDate"],
        "scheduled_purge_date": props["scheduledPurgeDate"],
        "purge_protection": props["purgeProtectionEnabled"] == true,
    }))
}
