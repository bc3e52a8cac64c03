//! `destroy`: delete exactly what the cluster's template declares, dependents first (a subnet
//! before its VNet, each security rule before its NSG), each with its type's api-version; then
//! the group, only when cluster-deploy created it and it is empty. Everything else in the
//! group, tagged or not, is listed and left.
//!
//! Why not by tag: ARM's tag-filtered list returns no tags (INDEX.md fact 1), and a tag says
//! nothing about ownership (Azure Policy can copy the cluster tag onto a user's disk). Names come
//! from the template: literal ones as written; computed ones (the role assignments'
//! `guid(...)`) from ARM's records of the cluster's deployments (the main one and
//! `<cluster>.vault`: their operations and `outputResources`, [`records`]), together with the
//! assignments cluster-deploy makes for the scale sets' identities (Reader at exactly this
//! group, Secrets User inside the cluster's vault; a `principalId` filter also returns
//! assignments above the group, which are not ours). The records also name what the cluster
//! deployed earlier and today's file no longer declares (a removed client pool): deleted too
//! when it carries the cluster's naming. A resource already gone is skipped, so a re-run after
//! a partial destroy finishes it.
//!
//! A VNet or NSG that holds a subnet or rule the template does not declare (one the operator
//! added) is kept: deleting it would delete that too. Destroy deletes our children in it, lists
//! the others and says why the parent (and so the group) stays; a re-run after the operator
//! removed them finishes.
//!
//! The Key Vault is deleted like the rest, which soft-deletes it (Key Vault has no other
//! delete): its secrets stay recoverable for its retention period, and its name stays taken.
//! Destroy then says so and how to get it back (`apply --recover-vault`), or, with
//! `--purge-vault`, purges it (refused by Azure under purge protection). A re-run with
//! `--purge-vault` purges a vault an earlier destroy left soft-deleted.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::arm::{ArmClient, Outcome};
use crate::auth::Env;
use crate::cli::Cli;
use crate::model::CLUSTER_TAG;

use super::connect::*;
use super::{records, vault, write_json, Loaded};

/// One template resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Declared {
    pub(super) kind: String,
    pub(super) api_version: String,
    /// The literal name (`vnet/subnet` for children); `None` when it is an expression.
    pub(super) name: Option<String>,
    /// The ids it depends on (lower-cased), from `[resourceId(...)]` entries.
    pub(super) depends_on: Vec<String>,
}

/// `[resourceId('Type', 'a', 'b')]` -> (type, [a, b]).
fn parse_resource_id(expr: &str) -> Option<(String, Vec<String>)> {
    let inner = expr.strip_prefix("[resourceId(")?.strip_suffix(")]")?;
    let mut args = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        if chars.next()? != '\'' {
            return None;
        }
        let mut arg = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    arg.push('\'');
                }
                '\'' => break,
                c => arg.push(c),
            }
        }
        args.push(arg);
    }
    let kind = args.first()?.clone();
    Some((kind, args[1..].to_vec()))
}

/// The id of a resource of the group.
pub(super) fn id_of(subscription: &str, group: &str, kind: &str, name: &str) -> String {
    let mut parts = kind.split('/');
    let namespace = parts.next().unwrap_or("");
    let mut id =
        format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/{namespace}");
    for (t, n) in parts.zip(name.split('/')) {
        id.push_str(&format!("/{t}/{n}"));
    }
    id
}

/// The template's resources, dependents first (a reverse topological order of `dependsOn`).
pub(super) fn declared(template: &Value, subscription: &str, group: &str) -> Vec<Declared> {
    let resources: Vec<Declared> = template["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| Declared {
            kind: r["type"].as_str().unwrap_or("").to_string(),
            api_version: r["apiVersion"].as_str().unwrap_or("").to_string(),
            name: r["name"]
                .as_str()
                .filter(|n| !n.starts_with('[') || n.starts_with("[["))
                .map(|n| {
                    n.strip_prefix("[[")
                        .map_or_else(|| n.to_string(), |r| format!("[{r}"))
                }),
            depends_on: r["dependsOn"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| d.as_str().and_then(parse_resource_id))
                .map(|(kind, names)| {
                    id_of(subscription, group, &kind, &names.join("/")).to_ascii_lowercase()
                })
                .collect(),
        })
        .collect();
    let key = |d: &Declared| {
        d.name
            .as_ref()
            .map(|n| id_of(subscription, group, &d.kind, n).to_ascii_lowercase())
    };
    // Creation order: a resource after everything it depends on (stable in template order).
    let mut placed: Vec<usize> = Vec::new();
    while placed.len() < resources.len() {
        let before = placed.len();
        for (i, r) in resources.iter().enumerate() {
            if placed.contains(&i) {
                continue;
            }
            let ready = r.depends_on.iter().all(|dep| {
                placed
                    .iter()
                    .any(|&p| key(&resources[p]).as_deref() == Some(dep.as_str()))
                    || !resources
                        .iter()
                        .any(|o| key(o).as_deref() == Some(dep.as_str()))
            });
            if ready {
                placed.push(i);
            }
        }
        if placed.len() == before {
            // A cycle ARM would refuse anyway: keep the template order for the rest.
            placed.extend(
                (0..resources.len())
                    .filter(|i| !placed.contains(i))
                    .collect::<Vec<_>>(),
            );
        }
    }
    placed
        .into_iter()
        .rev()
        .map(|i| resources[i].clone())
        .collect()
}

/// A resource to delete.
struct Target {
    id: String,
    api_version: String,
}

/// The ids of the resources whose names the template computes (role assignments), of this
/// type: every one the cluster's deployment records name ([`records::recorded`]), and, for role
/// assignments, those of the scale sets' identities that cluster-deploy makes
/// ([`records::ours_by_identity`]), and the operator's Secrets Officer on the vault: a record is
/// gone after Deployments_Delete and says nothing of the assignments when the last deployment
/// failed before reaching them.
fn computed_ids(
    arm: &ArmClient,
    group: &str,
    kind: &str,
    recorded: &[records::Recorded],
    identities: &[String],
    vault_id: Option<&str>,
    operator: Option<&str>,
) -> Result<Vec<String>> {
    let mut ids: Vec<String> = recorded
        .iter()
        .filter(|r| r.kind.eq_ignore_ascii_case(kind))
        .map(|r| r.id.clone())
        .collect();
    if kind.eq_ignore_ascii_case(records::ROLE_ASSIGNMENT) {
        for id in records::ours_by_identity(arm, group, identities, vault_id, operator)? {
            if !ids.iter().any(|i| i.eq_ignore_ascii_case(&id)) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// A VNet or NSG of ours that holds children the template does not declare (a subnet or a
/// security rule the operator added): deleting it would delete them, so it is kept.
struct Held {
    id: String,
    /// The ids of the children that are not ours.
    extra: Vec<String>,
}

/// The names of the children of `parent` (`vnet`, `nsg`) the cluster declares or recorded.
fn our_children(
    order: &[Declared],
    parent_kind: &str,
    collection: &str,
    parent: &str,
) -> Vec<String> {
    let child_kind = format!("{parent_kind}/{collection}");
    let prefix = format!("{}/", parent.to_ascii_lowercase());
    order
        .iter()
        .filter(|d| d.kind.eq_ignore_ascii_case(&child_kind))
        .filter_map(|d| d.name.as_deref())
        .filter_map(|n| {
            n.to_ascii_lowercase()
                .strip_prefix(&prefix)
                .map(str::to_string)
        })
        .collect()
}

pub(super) fn destroy(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    yes: bool,
    purge_vault: bool,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let arm = connect_required(&cli.azure, env)?;
    let group = &cluster.resource_group;
    let key_vault = cluster.security.key_vault.as_ref();
    if purge_vault && key_vault.is_none() {
        bail!("--purge-vault: the cluster has no Key Vault (nothing is kept in one)");
    }
    let Some(rg) = arm.resource_group(group)? else {
        let vault_state = match key_vault {
            Some(kv) => Some(vault::after_destroy(&arm, cluster, kv, purge_vault)?),
            None => None,
        };
        if cli.json {
            write_json(
                out,
                &json!({ "deleted": [], "already_gone": [], "kept": [], "resource_group_deleted": false, "key_vault": vault_state }),
            )?;
        } else {
            writeln!(
                out,
                "resource group {group} does not exist: nothing to destroy"
            )?;
            if let Some(state) = &vault_state {
                print_vault_state(state, out)?;
            }
        }
        return Ok(());
    };
    let mut order = declared(&loaded.template, &arm.subscription, group);
    let declared_ids: Vec<String> = order
        .iter()
        .filter_map(|d| {
            d.name
                .as_ref()
                .map(|n| id_of(&arm.subscription, group, &d.kind, n))
        })
        .collect();
    // What the cluster's deployments made, and what of it today's template no longer declares
    // (a client pool removed from the file): ours by the record, deleted with the rest, each
    // just before the first declared resource of its type (so before what it depends on).
    let server_scale_set = id_of(
        &arm.subscription,
        group,
        "Microsoft.Compute/virtualMachineScaleSets",
        &cluster.names.servers,
    );
    let our_vault = key_vault.map(|kv| vault::vault_id(&arm, cluster, kv));
    let owner = records::Ownership {
        cluster: &cluster.name,
        server_scale_set: &server_scale_set,
        vault: our_vault.as_deref(),
    };
    let recorded = records::recorded(&arm, group, &cluster.names.deployment, &owner)?;
    let stale = records::stale(
        &recorded,
        &declared_ids,
        &arm.subscription,
        group,
        &cluster.name,
    );
    for r in &stale {
        let api_version = order
            .iter()
            .find(|d| d.kind.eq_ignore_ascii_case(&r.kind))
            .map(|d| d.api_version.clone())
            .or_else(|| records::api_version_of(&r.kind).map(str::to_string));
        let (Some(api_version), Some(name)) = (api_version, records::name_of(&r.id)) else {
            tracing::warn!(
                "{} ({}) is in the cluster's deployment record, but cluster-deploy knows no api-version for its type: left",
                r.id,
                r.kind
            );
            continue;
        };
        // The record says the cluster made it; the resource (or, for a child, its parent)
        // must still say so too, with the cluster's tag, before it is deleted unasked.
        let (top_id, top_kind) = records::top_level(&r.id);
        let Some(top_version) = records::api_version_of(&top_kind) else {
            continue;
        };
        match arm.get_resource(&top_id, top_version)? {
            None => continue,
            Some(live) if live["tags"][CLUSTER_TAG].as_str() == Some(cluster.name.as_str()) => {}
            Some(live) => {
                tracing::warn!(
                    "{} is in the cluster's deployment record but not tagged {CLUSTER_TAG}={} \
                     (tag: {}): left",
                    r.id,
                    cluster.name,
                    live["tags"][CLUSTER_TAG].as_str().unwrap_or("none")
                );
                continue;
            }
        }
        let at = order
            .iter()
            .position(|d| d.kind.eq_ignore_ascii_case(&r.kind))
            .unwrap_or(0);
        tracing::info!(
            "{} is no longer in the cluster file, but the cluster deployed it: deleting it too",
            r.id
        );
        order.insert(
            at,
            Declared {
                kind: r.kind.clone(),
                api_version,
                name: Some(name),
                depends_on: Vec::new(),
            },
        );
    }
    // The scale sets' identities, for the role assignments no record names.
    let mut identities = Vec::new();
    for d in order.iter().filter(|d| {
        d.kind
            .eq_ignore_ascii_case("Microsoft.Compute/virtualMachineScaleSets")
    }) {
        if let Some(name) = &d.name {
            let id = id_of(&arm.subscription, group, &d.kind, name);
            if let Some(vmss) = arm.get_resource(&id, &d.api_version)? {
                identities.extend(vmss["identity"]["principalId"].as_str().map(str::to_string));
            }
        }
    }
    let vault_id = our_vault.clone();
    // The principal apply gave Secrets Officer on the vault, named as apply names it; without
    // it, only the deployment records find that assignment.
    let operator = match &vault_id {
        Some(_) => match vault::operator(&cli.azure, env) {
            Ok((id, _)) => Some(id),
            Err(e) => {
                tracing::warn!(
                    "could not tell which principal runs destroy ({e:#}): its Key Vault Secrets \
                     Officer assignment on the vault is found only through the deployment records"
                );
                None
            }
        },
        None => None,
    };
    let mut targets = Vec::new();
    let mut gone = Vec::new();
    let mut held: Vec<Held> = Vec::new();
    let mut computed_done: Vec<String> = Vec::new();
    for d in &order {
        let ids = match &d.name {
            Some(name) => vec![id_of(&arm.subscription, group, &d.kind, name)],
            None if computed_done.contains(&d.kind) => continue,
            None => {
                computed_done.push(d.kind.clone());
                computed_ids(
                    &arm,
                    group,
                    &d.kind,
                    &recorded,
                    &identities,
                    vault_id.as_deref(),
                    operator.as_deref(),
                )?
            }
        };
        for id in ids {
            if targets
                .iter()
                .any(|t: &Target| t.id.eq_ignore_ascii_case(&id))
            {
                continue;
            }
            let Some(value) = arm
                .get_resource(&id, &d.api_version)
                .with_context(|| format!("reading {id}"))?
            else {
                gone.push(id);
                continue;
            };
            // Deleting a VNet or NSG deletes every subnet or rule in it: one that holds what
            // the operator added stays, with what it holds.
            if let (Some(collection), Some(name)) =
                (records::child_collection(&d.kind), d.name.as_deref())
            {
                let ours = our_children(&order, &d.kind, collection, name);
                let extra: Vec<String> = records::children_of(&d.kind, &value)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| !ours.iter().any(|o| o.eq_ignore_ascii_case(c)))
                    .map(|c| format!("{id}/{collection}/{c}"))
                    .collect();
                if !extra.is_empty() {
                    held.push(Held { id, extra });
                    continue;
                }
            }
            targets.push(Target {
                id,
                api_version: d.api_version.clone(),
            });
        }
    }
    let others: Vec<Value> = arm
        .resources_in_group(group)?
        .into_iter()
        .filter(|r| {
            let id = r["id"].as_str().unwrap_or("");
            !targets.iter().any(|t| t.id.eq_ignore_ascii_case(id))
        })
        .collect();
    let mut kept: Vec<String> = others
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("").to_string())
        .collect();
    kept.extend(held.iter().flat_map(|h| h.extra.iter().cloned()));
    let created_group = rg["tags"][CLUSTER_TAG] == cluster.name.as_str();
    if !cli.json {
        writeln!(
            out,
            "Cluster {} in resource group {group}: deleting what its template declares:",
            cluster.name
        )?;
        for t in &targets {
            writeln!(out, "  {}", t.id)?;
        }
        if targets.is_empty() {
            writeln!(out, "  (nothing left: {} already gone)", gone.len())?;
        }
        if !kept.is_empty() {
            writeln!(out, "Left in place (not in the cluster's template):")?;
            for id in &kept {
                writeln!(out, "  {id}")?;
            }
        }
        for h in &held {
            writeln!(
                out,
                "Kept {}: it holds what the cluster's template does not declare, which deleting \
                 it would delete too ({}); remove those by hand and run destroy again to delete it",
                h.id,
                h.extra
                    .iter()
                    .map(|e| e.rsplit('/').next().unwrap_or(e))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?;
        }
        if created_group {
            writeln!(
                out,
                "  resource group {group} (created by cluster-deploy: deleted if empty afterwards)"
            )?;
        }
    }
    if !targets.is_empty() && !yes {
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
    for t in &targets {
        tracing::info!("deleting {}", t.id);
        let outcome = arm
            .delete_resource(&t.id, &t.api_version, &mut log_progress(&t.id))
            .with_context(|| {
                format!(
                    "deleting {} failed after {} deletions; run destroy again to finish",
                    t.id,
                    deleted.len()
                )
            })?;
        match outcome {
            Outcome::Succeeded(_) => deleted.push(t.id.clone()),
            Outcome::Failed { error, .. } => bail!(
                "deleting {} failed after {} deletions: {error}\nrun destroy again to finish",
                t.id,
                deleted.len()
            ),
        }
    }
    let vault_state = match key_vault {
        Some(kv) => Some(vault::after_destroy(&arm, cluster, kv, purge_vault)?),
        None => None,
    };
    let mut group_deleted = false;
    if created_group {
        if kept.is_empty() && arm.resources_in_group(group)?.is_empty() {
            tracing::info!("deleting resource group {group}");
            match arm.delete_resource_group(group, &mut log_progress(group))? {
                Outcome::Succeeded(_) => group_deleted = true,
                Outcome::Failed { error, .. } => {
                    bail!("deleting resource group {group} failed: {error}")
                }
            }
        } else {
            tracing::warn!(
                "resource group {group} still holds {} other resources: kept",
                kept.len()
            );
        }
    }
    if cli.json {
        return write_json(
            out,
            &json!({
                "deleted": deleted,
                "already_gone": gone,
                "kept": kept,
                "kept_parents": held.iter().map(|h| json!({ "id": h.id, "holds": h.extra })).collect::<Vec<_>>(),
                "resource_group_deleted": group_deleted,
                "key_vault": vault_state,
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
    if !kept.is_empty() {
        writeln!(
            out,
            "left {} resources that are not the cluster's",
            kept.len()
        )?;
    }
    if let Some(state) = &vault_state {
        print_vault_state(state, out)?;
    }
    Ok(())
}

/// What destroy left of the Key Vault, and the operator's choices.
fn print_vault_state(state: &Value, out: &mut dyn Write) -> Result<()> {
    let name = state["name"].as_str().unwrap_or("?");
    match state["state"].as_str() {
        Some("soft-deleted") => {
            writeln!(
                out,
                "Key Vault {name} is soft-deleted: its secrets (CA, certificates, gossip key, ACL \
                 token) are recoverable until {}{}.",
                state["scheduled_purge_date"].as_str().unwrap_or("?"),
                if state["purge_protection"] == true {
                    " (purge protection: it cannot be purged before)"
                } else {
                    ""
                }
            )?;
            writeln!(
                out,
                "  re-create the cluster with them: cluster-deploy apply --recover-vault"
            )?;
            if state["purge_protection"] != true {
                writeln!(
                    out,
                    "  delete them for good:           cluster-deploy destroy --purge-vault"
                )?;
            }
        }
        Some("purged") => writeln!(out, "Key Vault {name} purged: its secrets are gone")?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependents_come_first_and_names_resolve() {
        let template = serde_json::json!({ "resources": [
            { "type": "Microsoft.Network/natGateways", "apiVersion": "2025-07-01", "name": "nat" },
            { "type": "Microsoft.Network/virtualNetworks", "apiVersion": "2025-07-01", "name": "vnet",
              "dependsOn": ["[resourceId('Microsoft.Network/natGateways', 'nat')]"] },
            { "type": "Microsoft.Authorization/roleAssignments", "apiVersion": "2022-04-01", "name": "[guid(resourceGroup().id, 'x')]",
              "dependsOn": ["[resourceId('Microsoft.Compute/virtualMachineScaleSets', 'it''s')]"] },
            { "type": "Microsoft.Compute/virtualMachineScaleSets", "apiVersion": "2024-11-01", "name": "it's",
              "dependsOn": ["[resourceId('Microsoft.Network/virtualNetworks', 'vnet')]"] },
        ]});
        let order = declared(&template, "s", "g");
        let kinds: Vec<&str> = order.iter().map(|d| d.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "Microsoft.Authorization/roleAssignments",
                "Microsoft.Compute/virtualMachineScaleSets",
                "Microsoft.Network/virtualNetworks",
                "Microsoft.Network/natGateways",
            ]
        );
        assert_eq!(order[0].name, None);
        assert_eq!(order[1].api_version, "2024-11-01");
        assert_eq!(
            parse_resource_id(
                "[resourceId('Microsoft.Network/loadBalancers/backendAddressPools', 'lb', 'a''b')]"
            ),
            Some((
                "Microsoft.Network/loadBalancers/backendAddressPools".into(),
                vec!["lb".into(), "a'b".into()]
            ))
        );
    }
}
