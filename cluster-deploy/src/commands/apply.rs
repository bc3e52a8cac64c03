//! `apply`: create the resource group if needed, deploy, retry PrincipalNotFound, name each failed resource.

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::arm::{ArmClient, Outcome, Progress};
use crate::auth::Env;
use crate::cli::Cli;
use crate::model::CLUSTER_TAG;

use super::connect::*;
use super::outputs::*;
use super::{write_json, Loaded};

pub(super) fn apply(cli: &Cli, env: &Env, loaded: &Loaded, out: &mut dyn Write) -> Result<()> {
    let cluster = &loaded.cluster;
    let parameters = loaded.parameters()?;
    let arm = connect_required(&cli.azure, env)?;
    let (_, principal_retry) = timing(&cli.azure);
    let group = &cluster.resource_group;
    match arm.resource_group(group)? {
        Some(existing) => {
            let location = existing["location"].as_str().unwrap_or_default();
            if !location.eq_ignore_ascii_case(&cluster.location) {
                tracing::warn!(
                    "resource group {group} is in {location}; the cluster's resources go to {}",
                    cluster.location
                );
            }
        }
        None => {
            tracing::info!("creating resource group {group} in {}", cluster.location);
            arm.create_resource_group(
                group,
                &cluster.location,
                &json!({ CLUSTER_TAG: cluster.name }),
            )?;
        }
    }
    let parameters = super::existing::deployment_parameters(&arm, cluster, parameters)?;
    let name = &cluster.names.deployment;
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
        let outcome = arm.deploy(group, name, &loaded.template, &parameters, &mut progress)?;
        match outcome {
            Outcome::Succeeded(_) => break,
            Outcome::Failed {
                status,
                code,
                message,
            } => {
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
                let mut text = format!(
                    "deployment {name} {}: {code}: {message}",
                    status.to_lowercase()
                );
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
                            "error": { "code": code, "message": message },
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
    print_outputs(cli.json, &outputs, out)
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
        let error = if status["error"].is_object() {
            &status["error"]
        } else {
            status
        };
        let mut message = error["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                status
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| status.to_string())
            });
        for detail in error["details"].as_array().into_iter().flatten() {
            message.push_str(&format!(
                " [{}: {}]",
                detail["code"].as_str().unwrap_or(""),
                detail["message"].as_str().unwrap_or("")
            ));
        }
        out.push(FailedResource {
            resource: resource_label(&props["targetResource"]),
            code: error["code"].as_str().unwrap_or("").to_string(),
            message,
        });
    }
    Ok(out)
}
