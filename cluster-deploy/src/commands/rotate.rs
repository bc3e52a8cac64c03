//! `rotate`: new material into the cluster's vault, as new versions of its secrets (the old
//! versions stay, disabled by nothing, readable for a rollback). Nothing on the VMs changes by
//! itself: agents read their secrets at boot, so the follow-up is a roll, and for the gossip
//! key Nomad's keyring steps on the running servers first. A new CA takes three steps, each
//! followed by a roll ([`crate::secrets::ca_rotation`]); `rotate` without a flag reports the
//! phase. The output names secrets and versions, never values.
//!
//! Since the scale sets' model does not change, the roll selects the nodes by age: every step
//! prints `cluster-deploy roll --config FILE --created-before <time of the step>` (the
//! `roll_command` field with `--json`), which replaces every instance Azure created before it.
//! The time is Key Vault's `created` of the version the step wrote, Azure's clock like the
//! instances' `timeCreated`, not this machine's ([`timing`]); and `--ca switch` / `--ca finish`
//! refuse while instances from before the previous step still run, unless `--skip-roll-check`.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::auth::Env;
use crate::cli::Cli;
use crate::secrets::ca_rotation::CaStep;
use crate::secrets::reconcile::Rotation;

use super::connect::connect_required;
use super::roll::Clock;
use super::{vault, write_json, Loaded};

mod ca;
mod timing;

use timing::SKIP_ROLL_CHECK;

/// `--ca` and its `--skip-roll-check`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CaRequest {
    pub(super) step: Option<CaStep>,
    pub(super) skip_roll_check: bool,
}

/// The roll that follows a step: its `--created-before` time and the command line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(super) struct RollCommand {
    pub(super) created_before: String,
    pub(super) command: String,
}

impl RollCommand {
    /// For a step whose last write finished at `done`: that time in UTC, rounded down to the
    /// second. An instance Azure created within that second, just before the write finished,
    /// counts as new: it reads the vault only once it has booted, well after the write.
    pub(super) fn after(config: &Path, done: SystemTime, servers_only: bool) -> Self {
        let created_before = super::roll::age::format_utc_seconds(time::OffsetDateTime::from(done));
        let command = format!(
            "cluster-deploy roll --config {}{} --created-before {created_before}",
            shell_word(&config.display().to_string()),
            if servers_only { " --servers-only" } else { "" }
        );
        Self {
            created_before,
            command,
        }
    }
}

/// `word` as one POSIX shell word (quoted only when it must be).
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// What to do after a rotation, for each kind.
fn next_steps(rotation: Rotation, vault_name: &str, roll: &RollCommand) -> Vec<String> {
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
             from the vault when they first start; replace the servers: `{}`",
            roll.command
        ));
    }
    if rotation.certificates {
        steps.push(format!(
            "certificates: running agents keep the certificates they loaded at boot; \
             replace the nodes, which fetch the new versions: `{}` (every instance created \
             before this rotation). `cluster-deploy env` refreshes the CLI's certificate.",
            roll.command
        ));
    }
    steps
}

pub(super) fn rotate(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    rotation: Rotation,
    ca: CaRequest,
    clock: &dyn Clock,
    out: &mut dyn Write,
) -> Result<()> {
    let CaRequest {
        step: ca_step,
        skip_roll_check,
    } = ca;
    if skip_roll_check && !matches!(ca_step, Some(CaStep::Switch | CaStep::Finish)) {
        bail!("{SKIP_ROLL_CHECK} goes only with --ca switch or --ca finish");
    }
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
        let ctx = ca::StepContext {
            cli,
            loaded,
            kv,
            session: &session,
            arm: &arm,
            clock,
        };
        return ca::step(&ctx, step, skip_roll_check, out);
    }
    let (plan, uploaded) = vault::sync(&session, loaded, kv, rotation)?;
    // The time of the last version written, by Key Vault's clock (Azure's, as the instances'
    // timeCreated): the operator's clock may be off.
    let written = uploaded.iter().filter_map(|u| u.created).max();
    let (done, time_source) = timing::step_time(written, clock.wall(), "the new versions");
    // Only servers hold the gossip key.
    let roll = RollCommand::after(&loaded.path, done, !rotation.certificates);
    let steps = next_steps(rotation, &kv.name, &roll);
    if cli.json {
        return write_json(
            out,
            &json!({
                "key_vault": kv.name,
                "new_versions": uploaded,
                "notes": plan.notes,
                "next_steps": steps,
                "created_before": roll.created_before,
                "created_before_source": time_source,
                "roll_command": roll.command,
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
    writeln!(out, "roll: {}", roll.command)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roll_command_names_the_file_and_the_time_of_the_step() {
        let done = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_042_096_900);
        let roll = RollCommand::after(Path::new("/etc/nomad/cluster.toml"), done, false);
        assert_eq!(roll.created_before, "2026-11-30T12:34:56Z");
        assert_eq!(
            roll.command,
            "cluster-deploy roll --config /etc/nomad/cluster.toml --created-before 2026-11-30T12:34:56Z"
        );
        let roll = RollCommand::after(Path::new("my cluster's.toml"), done, true);
        assert_eq!(
            roll.command,
            "cluster-deploy roll --config 'my cluster'\\''s.toml' --servers-only --created-before 2026-11-30T12:34:56Z"
        );
    }
}
