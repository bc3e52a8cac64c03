//! `destroy`: delete what the cluster owns, in dependency order, after confirmation.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::arm::{ArmClient, Outcome};
use crate::auth::Env;
use crate::cli::Cli;
use crate::model::CLUSTER_TAG;
use crate::template::{self, COMPUTE_API};

use super::connect::*;
use super::{write_json, Loaded};

/// Deletion order: what uses a resource goes before it (scale sets hold NICs that reference the
/// load balancer, NSG, ASG and subnet; the subnet references the NAT gateway, which holds its
/// public IP).
pub(super) const DELETE_ORDER: &[&str] = &[
    "microsoft.compute/virtualmachinescalesets",
    "microsoft.network/loadbalancers",
    "microsoft.network/virtualnetworks",
    "microsoft.network/natgateways",
    "microsoft.network/publicipaddresses",
    "microsoft.network/networksecuritygroups",
    "microsoft.network/applicationsecuritygroups",
];

pub(super) fn destroy(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    yes: bool,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let arm = connect_required(&cli.azure, env)?;
    let group = &cluster.resource_group;
    let Some(rg) = arm.resource_group(group)? else {
        if cli.json {
            write_json(
                out,
                &json!({ "deleted": [], "resource_group_deleted": false, "kept": [] }),
            )?;
        } else {
            writeln!(
                out,
                "resource group {group} does not exist: nothing to destroy"
            )?;
        }
        return Ok(());
    };
    let mut tagged = arm.resources_tagged(group, CLUSTER_TAG, &cluster.name)?;
    // The filter is ARM's; check the tag ourselves as well, since deleting is not undoable.
    tagged.retain(|r| r["tags"][CLUSTER_TAG] == cluster.name.as_str());
    let rank = |r: &Value| {
        let kind = r["type"].as_str().unwrap_or("").to_ascii_lowercase();
        DELETE_ORDER
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(DELETE_ORDER.len())
    };
    tagged.sort_by_key(|r| rank(r));
    let (deletable, unknown): (Vec<Value>, Vec<Value>) = tagged.into_iter().partition(|r| {
        r["type"]
            .as_str()
            .and_then(ArmClient::api_version_of)
            .is_some()
    });
    // The Reader assignments carry no tags (role assignments cannot); they are found through
    // the identities of the tagged scale sets.
    let mut assignments = Vec::new();
    for r in &deletable {
        if r["type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("Microsoft.Compute/virtualMachineScaleSets"))
        {
            let id = r["id"].as_str().unwrap_or_default();
            if let Some(vmss) = arm.get_resource(id, COMPUTE_API)? {
                if let Some(principal) = vmss["identity"]["principalId"].as_str() {
                    assignments.extend(arm.role_assignments_of(group, principal)?);
                }
            }
        }
    }
    let rg_tagged = rg["tags"][CLUSTER_TAG] == cluster.name.as_str();
    let ids: Vec<String> = assignments
        .iter()
        .chain(deletable.iter())
        .filter_map(|r| r["id"].as_str().map(str::to_string))
        .collect();
    if !cli.json {
        writeln!(
            out,
            "Resources in {group} tagged {CLUSTER_TAG}={}:",
            cluster.name
        )?;
        for id in &ids {
            writeln!(out, "  {id}")?;
        }
        for r in &unknown {
            writeln!(
                out,
                "  {} (type {} is not one cluster-deploy makes: left in place)",
                r["id"].as_str().unwrap_or(""),
                r["type"].as_str().unwrap_or("")
            )?;
        }
        if rg_tagged {
            writeln!(
                out,
                "  resource group {group} (created by cluster-deploy: deleted if empty afterwards)"
            )?;
        }
    }
    if ids.is_empty() && !rg_tagged {
        if cli.json {
            write_json(
                out,
                &json!({ "deleted": [], "kept": unknown.iter().map(|r| &r["id"]).collect::<Vec<_>>() }),
            )?;
        } else {
            writeln!(
                out,
                "nothing carries the tag {CLUSTER_TAG}={}",
                cluster.name
            )?;
        }
        return Ok(());
    }
    if !yes {
        eprint!(
            "Type the cluster name ({}) to delete these resources: ",
            cluster.name
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        input
            .read_line(&mut answer)
            .context("reading the confirmation")?;
        if answer.trim() != cluster.name {
            bail!("not confirmed: nothing was deleted (pass --yes to skip the question)");
        }
    }
    let mut deleted = Vec::new();
    for r in assignments.iter().chain(deletable.iter()) {
        let id = r["id"].as_str().unwrap_or_default();
        let kind = r["type"]
            .as_str()
            .unwrap_or("Microsoft.Authorization/roleAssignments");
        let api = ArmClient::api_version_of(kind).unwrap_or(template::AUTHORIZATION_API);
        tracing::info!("deleting {id}");
        match arm.delete_resource(id, api, &mut log_progress(id))? {
            Outcome::Succeeded(_) => deleted.push(id.to_string()),
            Outcome::Failed { code, message, .. } => {
                bail!("deleting {id} failed: {code}: {message}")
            }
        }
    }
    let mut group_deleted = false;
    if rg_tagged {
        let left = arm.list(&arm.url(
            &format!(
                "/subscriptions/{}/resourcegroups/{group}/resources",
                arm.subscription
            ),
            template::RESOURCES_API,
            &[],
        ))?;
        if left.is_empty() {
            tracing::info!("deleting resource group {group}");
            match arm.delete_resource_group(group, &mut log_progress(group))? {
                Outcome::Succeeded(_) => group_deleted = true,
                Outcome::Failed { code, message, .. } => {
                    bail!("deleting resource group {group} failed: {code}: {message}")
                }
            }
        } else {
            tracing::warn!(
                "resource group {group} still holds {} other resources: kept",
                left.len()
            );
        }
    }
    if cli.json {
        return write_json(
            out,
            &json!({
                "deleted": deleted,
                "resource_group_deleted": group_deleted,
                "kept": unknown.iter().map(|r| &r["id"]).collect::<Vec<_>>(),
            }),
        );
    }
    writeln!(
        out,
        "deleted {} resources{}",
        deleted.len(),
        if group_deleted {
            " and the resource group"
        } else {
            ""
        }
    )?;
    Ok(())
}
