//! `rotate`: new material into the cluster's vault, as new versions of its secrets (the old
//! versions stay, disabled by nothing, readable for a rollback). Nothing on the VMs changes by
//! itself: agents read their secrets at boot, so the follow-up is a roll, and for the gossip
//! key Nomad's keyring steps on the running servers first. The output names secrets and
//! versions, never values.

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::auth::Env;
use crate::cli::Cli;
use crate::secrets::reconcile::Rotation;

use super::connect::connect_required;
use super::{vault, write_json, Loaded};

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
    if rotation.ca {
        steps.push(
            "CA: agents with certificates from the old CA and from the new one do not trust \
             each other: replace every server and client (`cluster-deploy roll`), servers \
             first, and expect RPC between old and new nodes to fail until the roll is done. \
             Then `cluster-deploy env` for the CLI's new files."
                .to_string(),
        );
    } else if rotation.certificates {
        steps.push(
            "certificates: running agents keep the certificates they loaded at boot; \
             `cluster-deploy roll` replaces the nodes, which fetch the new versions. \
             `cluster-deploy env` refreshes the CLI's certificate."
                .to_string(),
        );
    }
    steps
}

pub(super) fn rotate(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    rotation: Rotation,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let security = &cluster.security;
    if rotation == Rotation::default() {
        bail!("say what to rotate: --certificates, --ca, --gossip-key, or --all");
    }
    let kv = security.key_vault.as_ref().with_context(|| {
        format!(
            "the cluster keeps no secrets in a Key Vault (TLS, gossip encryption and the ACL \
             bootstrap are off in {})",
            loaded.path.display()
        )
    })?;
    if (rotation.ca || rotation.certificates) && !security.tls() {
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
