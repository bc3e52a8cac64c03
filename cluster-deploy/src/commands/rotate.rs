//! `rotate`: new material into the cluster's vault, as new versions of its secrets (the old
//! versions stay, disabled by nothing, readable for a rollback). Nothing on the VMs changes by
//! itself: agents read their secrets at boot, so the follow-up is a roll, and for the gossip
//! key Nomad's keyring steps on the running servers first. A new CA takes three steps, each
//! followed by a roll ([`crate::secrets::ca_rotation`]); `rotate` without a flag reports the
//! phase. The output names secrets and versions, never values.

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::auth::Env;
use crate::cli::Cli;
use crate::secrets::ca_rotation::CaStep;
use crate::secrets::reconcile::Rotation;

use super::connect::connect_required;
use super::{vault, write_json, Loaded};

mod ca;

/// What to do after a rotation, for each kind.
fn next_steps(rotation: Rotation, vault_name: &str) -> Vec<String> {
    let mut steps = Vec::new();
    if rotation.gossip_key {
        steps.push(format!(
            "gossip key: the running servers keep the key in their keyring. Before rolling, \
             install the new key on them and make it primary (Nomad's keyring steps): \
             eval \"$(cluster-deploy env --token)\"; \
             KEY=\"$(az keyvault secret show --vault-name {vault_name} --name nomad-gossip-key --query value -o tsv)\"; \
             nomad operator gossip keyring install \"$KEY\"; nomad operator gossip keyring use \"$KEY\"; \
             then `nomad operator gossip keyring list` and remove the old key with \
             `nomad operator gossip keyring remove <old key>`. New servers read the new key \
             from the vault when they first start."
        ));
    }
    if rotation.certificates {
        steps.push(format!(
            "certificates: running agents keep the certificates they loaded at boot; \
                 replace the nodes ({}), which fetch the new versions. `cluster-deploy env` \
                 refreshes the CLI's certificate.",
            crate::secrets::ca_rotation::ROLL
        ));
    }
    steps
}

pub(super) fn rotate(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    rotation: Rotation,
    ca_step: Option<CaStep>,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let security = &cluster.security;
    let report_only = rotation == Rotation::default() && ca_step.is_none();
    if ca_step.is_some() && rotation != Rotation::default() {
        bail!(
            "--ca runs alone (one step of a CA rotation at a time, each followed by a roll): \
             run --certificates/--gossip-key/--all separately"
        );
    }
    let kv = security.key_vault.as_ref().with_context(|| {
        format!(
            "the cluster keeps no secrets in a Key Vault (TLS, gossip encryption and the ACL \
             bootstrap are off in {})",
            loaded.path.display()
        )
    })?;
    if (ca_step.is_some() || rotation.certificates) && !security.tls() {
        bail!(
            "--certificates/--ca: TLS is off (`nomad.tls.enabled = false` in {})",
            loaded.path.display()
        );
    }
    if rotation.gossip_key && !security.gossip() {
        bail!(
            "--gossip-key: gossip encryption is off (`nomad.gossip_encryption = false` in {})",
            loaded.path.display()
        );
    }
    vault::check_local_material(loaded)?;
    let arm = connect_required(&cli.azure, env)?;
    let session = vault::open_existing(&cli.azure, env, &arm, cluster, kv)?;
    if report_only {
        return ca::report(cli, loaded, kv, &session, out);
    }
    if let Some(step) = ca_step {
        return ca::step(cli, loaded, kv, &session, step, out);
    }
    let (plan, uploaded) = vault::sync(&session, loaded, kv, rotation)?;
    let steps = next_steps(rotation, &kv.name);
    if cli.json {
        return write_json(
            out,
            &json!({
                "key_vault": kv.name,
                "new_versions": uploaded,
                "notes": plan.notes,
                "next_steps": steps,
            }),
        );
    }
    writeln!(
        out,
        "Key Vault {}: {} new secret versions",
        kv.name,
        uploaded.len()
    )?;
    for u in &uploaded {
        writeln!(out, "  {:<28} version {} ({})", u.secret, u.version, u.why)?;
    }
    for note in &plan.notes {
        writeln!(out, "note: {note}")?;
    }
    for step in &steps {
        writeln!(out, "next: {step}")?;
    }
    Ok(())
}
