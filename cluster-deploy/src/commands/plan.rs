//! `plan`: the summary of every resource, the template file, and ARM what-if when credentials exist.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::arm::Outcome;
use crate::auth::{self, AuthChoice, Env};
use crate::cli::Cli;
use crate::model::ResourceSummary;
use crate::template;

use super::connect::{connect, log_progress};
use super::{write_json, Loaded};

pub(super) fn plan(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    out_path: Option<&Path>,
    offline: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = &loaded.cluster;
    // The own CA and gossip key files are checked even offline, so a bad file shows up before
    // apply.
    if cluster.security.key_vault.is_some() {
        super::vault::check_local_material(loaded)?;
    }
    if let Some(path) = out_path {
        let text = template::to_pretty(&loaded.template);
        let dir = support::files::parent_dir(path);
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create directory {}", dir.display()))?;
        support::files::write_atomic(path, text.as_bytes(), support::files::FileSpec::mode(0o644))?;
    }
    let summary = cluster.summary();
    let mut notes = Vec::new();
    if let Some(kv) = &cluster.security.key_vault {
        notes.push(format!(
            "secrets ({}) are made by apply and uploaded to Key Vault {} through its data plane; \
             none is in the template, its parameters or custom data",
            cluster
                .security
                .items()
                .iter()
                .map(|i| i.vault_name())
                .collect::<Vec<_>>()
                .join(", "),
            kv.name
        ));
    }
    for (name, cidrs) in [
        (
            "allowed_inbound_cidr_blocks",
            &loaded.file.allowed_inbound_cidr_blocks,
        ),
        (
            "allowed_ssh_cidr_blocks",
            &loaded.file.allowed_ssh_cidr_blocks,
        ),
    ] {
        if cidrs.iter().any(|c| c.ends_with("/0")) {
            notes.push(format!("{name} admits the whole internet (a /0 block)"));
        }
    }
    let mut what_if: Option<Value> = None;
    let arm = if offline {
        notes.push("offline (--offline): what-if was not run".to_string());
        None
    } else {
        let arm = match connect(&cli.azure, env) {
            // `auto` found the Azure CLI, but it is not logged in: that is "no credentials"
            // for a plan, not a failure.
            Err(e)
                if cli.azure.auth == AuthChoice::Auto
                    && matches!(
                        e.downcast_ref::<auth::AuthError>(),
                        Some(auth::AuthError::Cli(_))
                    ) =>
            {
                notes.push(format!(
                    "the Azure CLI gave no token ({}): what-if was not run",
                    e.root_cause()
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                ));
                return finish_plan(cli, loaded, out_path, &summary, None, notes, out);
            }
            other => other?,
        };
        if arm.is_none() {
            notes.push(
                "no Azure credentials found (ARM_CLIENT_ID/ARM_CLIENT_SECRET/ARM_TENANT_ID, an \
                 Azure CLI login, or --auth managed-identity): what-if was not run, and the list \
                 above is what the template declares"
                    .to_string(),
            );
        }
        arm
    };
    let mut problems = Vec::new();
    if let Some(arm) = &arm {
        let exists = arm.resource_group(&cluster.resource_group)?.is_some();
        problems = super::preflight::check(
            arm,
            &cluster.resource_group,
            &cluster.location,
            &loaded.template,
            exists,
        )?;
        if !exists {
            notes.push(format!(
                "resource group {} does not exist yet: apply creates it and every resource above \
                 (the caller's permissions on it are checked then, before deploying)",
                cluster.resource_group
            ));
        } else {
            let operator = match &cluster.security.key_vault {
                Some(_) => Some(super::vault::operator(&cli.azure, env)?.0),
                None => None,
            };
            let parameters = template::parameters(cluster, operator.as_deref());
            let parameters = super::existing::deployment_parameters(arm, cluster, parameters)?;
            let outcome = arm.what_if(
                &cluster.resource_group,
                &cluster.names.deployment,
                &loaded.template,
                &parameters,
                &mut log_progress("what-if"),
            )?;
            match outcome {
                Outcome::Succeeded(result) => what_if = Some(result),
                Outcome::Failed { error, .. } => {
                    bail!(
                        "what-if of deployment {} failed: {error}",
                        cluster.names.deployment
                    )
                }
            }
        }
    }
    finish_plan(cli, loaded, out_path, &summary, what_if, notes, out)?;
    if !problems.is_empty() {
        bail!(
            "apply would fail; fix these first:\n  - {}",
            problems.join("\n  - ")
        );
    }
    Ok(())
}

/// Prints the plan: the summary, what-if's changes when there are any, notes.
pub(super) fn finish_plan(
    cli: &Cli,
    loaded: &Loaded,
    out_path: Option<&Path>,
    summary: &[ResourceSummary],
    what_if: Option<Value>,
    notes: Vec<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let changes: Vec<Value> = what_if
        .as_ref()
        .and_then(|w| w["properties"]["changes"].as_array().cloned())
        .unwrap_or_default();
    let removals = what_if
        .as_ref()
        .map(super::preflight::removals)
        .unwrap_or_default();
    if cli.json {
        return write_json(
            out,
            &json!({
                "cluster": cluster.name,
                "resource_group": cluster.resource_group,
                "location": cluster.location,
                "resources": summary,
                "template": out_path.map(|p| p.display().to_string()),
                "what_if": what_if.as_ref().map(|_| json!({ "changes": changes.iter().map(change_summary).collect::<Vec<_>>(), "removals": removals })),
                "notes": notes,
                "warnings": loaded.file.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        );
    }
    writeln!(
        out,
        "Nomad cluster {} in resource group {} ({}): {} resources",
        cluster.name,
        cluster.resource_group,
        cluster.location,
        summary.len()
    )?;
    print_summary(summary, out)?;
    if what_if.is_some() {
        writeln!(
            out,
            "\nWhat-if (ARM's view of the changes, mode Incremental):"
        )?;
        if changes.is_empty() {
            writeln!(out, "  no changes")?;
        }
        for change in &changes {
            let c = change_summary(change);
            writeln!(
                out,
                "  {} {:<10} {}",
                c["symbol"].as_str().unwrap_or("?"),
                c["change"].as_str().unwrap_or(""),
                c["resource"].as_str().unwrap_or("")
            )?;
            for path in c["properties"].as_array().into_iter().flatten() {
                writeln!(out, "        {}", path.as_str().unwrap_or(""))?;
            }
        }
        let count = |kind: &str| changes.iter().filter(|c| c["changeType"] == kind).count();
        writeln!(
            out,
            "  {} to create, {} to modify, {} to delete, {} unchanged",
            count("Create"),
            count("Modify"),
            count("Delete"),
            count("NoChange")
        )?;
    }
    if !removals.is_empty() {
        writeln!(
            out,
            "\nwarning: apply would remove what the template does not declare (added out of band?):"
        )?;
        for r in &removals {
            writeln!(out, "  - {r}")?;
        }
    }
    if let Some(path) = out_path {
        writeln!(out, "\nTemplate written to {}", path.display())?;
    }
    for warning in &loaded.file.warnings {
        writeln!(out, "warning: {warning}")?;
    }
    for note in &notes {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}

pub(super) fn print_summary(summary: &[ResourceSummary], out: &mut dyn Write) -> Result<()> {
    for r in summary {
        writeln!(out, "\n  {} {}", r.kind, r.name)?;
        for d in &r.details {
            writeln!(out, "      {d}")?;
        }
    }
    Ok(())
}

/// One what-if change, reduced to what a reader needs: the change, the resource (type and
/// name from its id) and the changed property paths.
pub(super) fn change_summary(change: &Value) -> Value {
    let kind = change["changeType"].as_str().unwrap_or("Unsupported");
    let symbol = match kind {
        "Create" => "+",
        "Delete" => "-",
        "Modify" => "~",
        "Deploy" => "!",
        "NoChange" => "=",
        "Ignore" => "*",
        _ => "?",
    };
    let id = change["resourceId"].as_str().unwrap_or("");
    let resource = id
        .split_once("/providers/")
        .map_or(id, |(_, rest)| rest)
        .to_string();
    let paths: Vec<String> = change["delta"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            format!(
                "{} {}",
                match d["propertyChangeType"].as_str().unwrap_or("") {
                    "Create" => "+",
                    "Delete" => "-",
                    "Modify" => "~",
                    "Array" => "~",
                    _ => "?",
                },
                d["path"].as_str().unwrap_or("")
            )
        })
        .collect();
    json!({ "change": kind, "symbol": symbol, "resource": resource, "resourceId": id, "properties": paths })
}
