//! `apply`: check quota (and permissions, in an existing group) before the first write; create
//! the resource group if needed (checking permissions there, and deleting it again when they
//! fall short); warn about what what-if says would be removed; make (or recover) the cluster's
//! Key Vault and keep its secrets there; deploy, retry PrincipalNotFound, name each failed
//! resource with ARM's whole error; then bootstrap Nomad's ACLs once the servers have a leader.
//!
//! Two deployments when the cluster has a vault: `<cluster>.vault` (the vault and the
//! operator's Secrets Officer role) and, once the secrets are uploaded through the data plane,
//! `<cluster>` (everything, each scale set's identity granted its role's secrets). So no VM
//! boots before its secrets exist, and no role is granted on a secret that does not.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use support::http::Url;

use crate::arm::{ArmClient, CloudError, Outcome, Progress};
use crate::auth::Env;
use crate::cli::{ApplyVaultArgs, Cli};
use crate::model::CLUSTER_TAG;
use crate::secrets::reconcile::Rotation;
use crate::template;

use super::bootstrap::{bootstrap, Reach};
use super::connect::*;
use super::outputs::*;
use super::preflight;
use super::vault;
use super::{write_json, Loaded};

/// Deletes the resource group apply has just created, only while it is still as apply made it
/// (another apply, or a policy's deployment, may have put something in it since); says what
/// became of it.
fn take_back_new_group(arm: &ArmClient, group: &str) -> String {
    fn delete_if_empty(arm: &ArmClient, group: &str) -> Result<Outcome> {
        if !arm.resources_in_group(group)?.is_empty() {
            bail!("it is no longer empty, so it was left");
        }
        Ok(arm.delete_resource_group(group, &mut log_progress("delete"))?)
    }
    match delete_if_empty(arm, group) {
        Ok(Outcome::Succeeded(_)) => {
            format!("the resource group {group} it had just created was deleted again")
        }
        Ok(Outcome::Failed { error, .. }) => format!(
            "the resource group {group} it had just created (empty) could not be deleted: {error}"
        ),
        Err(e) => {
            format!("the resource group {group} it had just created was not deleted again: {e}")
        }
    }
}

pub(super) fn apply(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    yes: bool,
    vault_args: &ApplyVaultArgs,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let key_vault = cluster.security.key_vault.as_ref();
    if key_vault.is_some() {
        // The operator's own CA and gossip key files, before anything is deployed.
        vault::check_local_material(loaded)?;
    }
    let arm = connect_required(&cli.azure, env)?;
    // Who uploads the secrets: a parameter of the template (Secrets Officer on the vault).
    let operator = match key_vault {
        Some(_) => Some(vault::operator(&cli.azure, env)?),
        None => None,
    };
    let parameters = template::parameters(cluster, operator.as_ref().map(|(id, _)| id.as_str()));
    let (_, principal_retry) = timing(&cli.azure);
    let group = &cluster.resource_group;
    let group_existed = match arm.resource_group(group)? {
        Some(existing) => {
            let location = existing["location"].as_str().unwrap_or_default();
            if !location.eq_ignore_ascii_case(&cluster.location) {
                tracing::warn!(
                    "resource group {group} is in {location}; the cluster's resources go to {}",
                    cluster.location
                );
            }
            true
        }
        None => false,
    };
    // Quota (and, in an existing group, permissions) before the first write.
    let problems = preflight::check(
        &arm,
        group,
        &cluster.location,
        &loaded.template,
        group_existed,
    )?;
    if !problems.is_empty() {
        bail!(
            "nothing was deployed; fix these first:\n  - {}",
            problems.join("\n  - ")
        );
    }
    if !group_existed {
        tracing::info!("creating resource group {group} in {}", cluster.location);
        arm.create_resource_group(
            group,
            &cluster.location,
            &json!({ CLUSTER_TAG: cluster.name }),
        )?;
        // Permissions can only be read on a group that exists: read them now, and take the
        // group away again (it is new and empty) when they fall short.
        let problems = preflight::permissions(&arm, group, &loaded.template)?;
        if !problems.is_empty() {
            let removed = take_back_new_group(&arm, group);
            bail!(
                "nothing was deployed ({removed}); fix these first:\n  - {}",
                problems.join("\n  - ")
            );
        }
    }
    let parameters = super::existing::deployment_parameters(&arm, cluster, parameters)?;
    let name = &cluster.names.deployment;
    // A PUT replaces child collections: say what would go, and ask.
    let removals = match arm.what_if(
        group,
        name,
        &loaded.template,
        &parameters,
        &mut log_progress("what-if"),
    )? {
        Outcome::Succeeded(result) => preflight::removals(&result),
        Outcome::Failed { error, .. } => bail!("what-if of deployment {name} failed: {error}"),
    };
    if !removals.is_empty() {
        tracing::warn!(
            "applying removes what the template does not declare (added out of band?):\n  - {}",
            removals.join("\n  - ")
        );
        if !yes {
            if !std::io::stdin().is_terminal() {
                bail!(
                    "not applied: it would remove {} (see the warning above); pass --yes to apply anyway, or add them to the cluster",
                    removals.join(", ")
                );
            }
            eprint!("Type yes to apply and remove them: ");
            let _ = std::io::stderr().flush();
            let mut answer = String::new();
            input
                .read_line(&mut answer)
                .context("reading the confirmation")?;
            if answer.trim() != "yes" {
                bail!("not confirmed: nothing was deployed");
            }
        }
    }
    // The vault and its secrets first, so they exist before any VM boots.
    let secrets = match (key_vault, operator) {
        (Some(kv), Some(operator)) => {
            let step = vault::prepare(&arm, cluster, kv, vault_args)?;
            vault::deploy_vault(&arm, cluster, kv, step, &operator.0)?;
            let session = vault::open(
                &cli.azure,
                &arm,
                cluster,
                kv,
                operator,
                vault::Patience::NewRole,
            )?;
            let (plan, uploaded) = vault::sync(&session, loaded, kv, Rotation::default())?;
            tracing::info!(
                "Key Vault {}: {} new secret versions, {} kept",
                kv.name,
                uploaded.len(),
                plan.values.len() - uploaded.len()
            );
            Some(plan)
        }
        _ => None,
    };
    // A new identity may not have replicated when its role assignment is made: ARM answers
    // PrincipalNotFound, and the documented remedy is to try again (REFERENCE.md).
    const PRINCIPAL_ATTEMPTS: u32 = 4;
    let mut attempt = 1;
    loop {
        tracing::info!("deploying {name} to resource group {group} (mode Incremental)");
        let mut seen = std::collections::BTreeSet::new();
        let mut progress = |p: &Progress| {
            tracing::info!("deployment {name}: {} ({}s)", p.status, p.elapsed.as_secs());
            // Name each resource as ARM finishes it.
            if let Ok(ops) = arm.deployment_operations(group, name) {
                for op in ops {
                    let props = &op["properties"];
                    let state = props["provisioningState"].as_str().unwrap_or("");
                    let target = props["targetResource"]["id"].as_str().unwrap_or("");
                    if matches!(state, "Succeeded" | "Failed")
                        && !target.is_empty()
                        && seen.insert(format!("{target}:{state}"))
                    {
                        tracing::info!(
                            "  {} {}",
                            state.to_lowercase(),
                            resource_label(&props["targetResource"])
                        );
                    }
                }
            }
        };
        let outcome = arm
            .deploy(
                group,
                name,
                &loaded.template,
                &parameters,
                &json!({ CLUSTER_TAG: cluster.name }),
                &mut progress,
            )
            .with_context(|| format!("deployment {name} to resource group {group} was refused"))?;
        match outcome {
            Outcome::Succeeded(_) => break,
            Outcome::Failed { status, error } => {
                let failures = failed_operations(&arm, group, name)?;
                let only_principal =
                    !failures.is_empty() && failures.iter().all(|f| f.code == "PrincipalNotFound");
                if only_principal && attempt < PRINCIPAL_ATTEMPTS {
                    tracing::warn!(
                        "the scale set identities are not visible to role assignments yet \
                         (PrincipalNotFound); deploying again in {}s (attempt {}/{PRINCIPAL_ATTEMPTS})",
                        principal_retry.as_secs(),
                        attempt + 1
                    );
                    std::thread::sleep(principal_retry);
                    attempt += 1;
                    continue;
                }
                let mut text = format!("deployment {name} {}: {error}", status.to_lowercase());
                if failures.is_empty() {
                    text.push_str("\n  (the deployment operations name no failed resource)");
                }
                for f in &failures {
                    text.push_str(&format!("\n  {}: {}: {}", f.resource, f.code, f.message));
                }
                if cli.json {
                    write_json(
                        out,
                        &json!({
                            "deployment": name,
                            "status": status,
                            "error": { "code": error.code, "message": error.message, "details": error.details.iter().map(|d| d.to_string()).collect::<Vec<_>>() },
                            "failed_resources": failures.iter().map(|f| json!({
                                "resource": f.resource, "code": f.code, "message": f.message
                            })).collect::<Vec<_>>(),
                        }),
                    )?;
                }
                bail!(text);
            }
        }
    }
    tracing::info!("deployment {name} succeeded");
    let outputs = outputs(&arm, cluster)?;
    if let (Some(plan), true) = (&secrets, cluster.security.acl_bootstrap) {
        let address = vault_args
            .nomad_address
            .clone()
            .or_else(|| outputs.nomad_api.clone());
        match address {
            Some(address) => {
                let address = Url::parse(&address)
                    .with_context(|| format!("--nomad-address {address:?} is not a URL"))?;
                let (timing, _) = timing(&cli.azure);
                bootstrap(
                    cluster,
                    plan,
                    &Reach {
                        address,
                        timeout: Duration::from_secs(vault_args.bootstrap_timeout_secs),
                        poll: timing.poll_interval,
                    },
                )?;
            }
            None => tracing::warn!(
                "ACLs are not bootstrapped yet: the cluster has no public load balancer, so run \
                 `cluster-deploy apply --nomad-address https://<a server>:{}` from a machine \
                 that reaches the servers",
                cluster.http_port
            ),
        }
    }
    print_outputs(cli.json, &outputs.with_local_ca(env, cluster), out)
}

pub(super) fn resource_label(target: &Value) -> String {
    let kind = target["resourceType"].as_str().unwrap_or("");
    let name = target["resourceName"].as_str().unwrap_or("");
    if kind.is_empty() && name.is_empty() {
        target["id"].as_str().unwrap_or("").to_string()
    } else {
        format!("{kind} {name}")
    }
}

/// A resource the deployment failed to create, with the provider's error.
pub(super) struct FailedResource {
    pub(super) resource: String,
    pub(super) code: String,
    pub(super) message: String,
}

pub(super) fn failed_operations(
    arm: &ArmClient,
    group: &str,
    name: &str,
) -> Result<Vec<FailedResource>> {
    let ops = arm
        .deployment_operations(group, name)
        .with_context(|| format!("listing the operations of deployment {name}"))?;
    let mut out = Vec::new();
    for op in ops {
        let props = &op["properties"];
        if props["provisioningState"] != "Failed" {
            continue;
        }
        // statusMessage is usually {"status", "error": {code, message, details}}, sometimes
        // the error object alone, sometimes text.
        let status = &props["statusMessage"];
        let error = match status.as_str() {
            Some(text) => CloudError {
                code: String::new(),
                message: text.to_string(),
                ..CloudError::default()
            },
            None => CloudError::from_value(status),
        };
        let code = error.code.clone();
        // The message with the whole nested chain after it.
        let rendered = error.to_string();
        let message = rendered
            .strip_prefix(&format!("{code}: "))
            .unwrap_or(&rendered)
            .to_string();
        out.push(FailedResource {
            resource: resource_label(&props["targetResource"]),
            code,
            message,
        });
    }
    Ok(out)
}
