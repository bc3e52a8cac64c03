//! `rotate --ca <step>` and `rotate` alone: the CA rotation's phase read from the vault, one
//! step planned ([`crate::secrets::ca_rotation::plan_step`]) and stored in an order that a run
//! cut short leaves recoverable by running the same step again: the new CA's key before the
//! bundle that names its certificate (start); `nomad-ca-key` before the certificates it signs,
//! the pending key removed last (switch).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::SystemTime;

use anyhow::{Context, Result};
use serde_json::json;
use support::cluster_secrets::SecretItem;
use support::keyvault::KeyVaultClient;
use support::secret::Secret;

use crate::arm::ArmClient;
use crate::cli::Cli;
use crate::model::KeyVault;
use crate::secrets::ca_rotation::{
    plan_step, read_state, CaState, CaStep, PendingChange, Phase, PENDING_KEY,
};
use crate::secrets::reconcile::Rotation;
use crate::secrets::vault::{self as data, Uploaded};

use super::super::roll::Clock;
use super::super::vault::{self, explain, Session};
use super::super::{write_json, Loaded};
use super::{timing, RollCommand};

/// The stored items and the pending key.
fn read(
    session: &Session,
    loaded: &Loaded,
    kv: &KeyVault,
) -> Result<(BTreeMap<SecretItem, Secret>, Option<Secret>)> {
    let items = loaded.cluster.security.items();
    let stored = data::read_items(&session.client, &items)
        .map_err(|e| explain(e, kv, "reading the cluster's secrets"))?;
    let pending = match session.client.get_secret(PENDING_KEY, None) {
        Ok(found) => Some(found.value),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(explain(e, kv, &format!("reading {PENDING_KEY}"))),
    };
    Ok((stored, pending))
}

/// Stores the new CA's key. A pending key an earlier rotation removed is soft-deleted, which
/// holds its name (409 `ObjectIsDeletedButRecoverable`): recovered, then overwritten.
fn store_pending(
    client: &KeyVaultClient,
    key: &Secret,
) -> Result<(String, Option<i64>), support::keyvault::KeyVaultError> {
    const PEM: Option<&str> = Some("application/x-pem-file");
    let stored = match client.set_secret(PENDING_KEY, key, PEM) {
        Err(e) if e.is_deleted_but_recoverable() => {
            tracing::info!("{PENDING_KEY} was deleted by an earlier rotation: recovering its name");
            client.recover_deleted_secret(PENDING_KEY)?;
            client.set_secret(PENDING_KEY, key, PEM)?
        }
        other => other?,
    };
    Ok((stored.version, stored.created))
}

fn trusted_lines(state: &CaState, out: &mut dyn Write) -> Result<()> {
    for (i, ca) in state.trusted.iter().enumerate() {
        let role = match (ca.signs, ca.pending) {
            (true, _) => "signs the certificates",
            (_, true) => "new, trusted, signs after `rotate --ca switch`",
            _ => "trusted, signs nothing",
        };
        writeln!(
            out,
            "  trusted CA {}: {} (sha256 {}, until {}): {role}",
            i + 1,
            ca.subject,
            ca.sha256,
            ca.not_after
        )?;
    }
    Ok(())
}

/// `rotate` without flags: the phase and what comes next, changing nothing.
pub(super) fn report(
    cli: &Cli,
    loaded: &Loaded,
    kv: &KeyVault,
    session: &Session,
    out: &mut dyn Write,
) -> Result<()> {
    let usage = "rotate --certificates | --gossip-key | --all | --ca [start|switch|finish]";
    if !loaded.cluster.security.tls()
        || vault::inputs(loaded, Rotation::default(), SystemTime::now())?
            .own_ca
            .is_some()
    {
        let why = if loaded.cluster.security.tls() {
            "the CA is the operator's own (`nomad.tls.ca_cert_file`): cluster-deploy does not rotate it"
        } else {
            "TLS is off: the cluster has no CA"
        };
        if cli.json {
            return write_json(
                out,
                &json!({ "key_vault": kv.name, "ca_rotation": null, "note": why }),
            );
        }
        writeln!(out, "Key Vault {}: {why}", kv.name)?;
        writeln!(out, "usage: cluster-deploy {usage}")?;
        return Ok(());
    }
    let (stored, pending) = read(session, loaded, kv)?;
    let state = read_state(&stored, pending.as_ref(), SystemTime::now())
        .with_context(|| format!("the CA in Key Vault {}", kv.name))?;
    if cli.json {
        return write_json(
            out,
            &json!({
                "key_vault": kv.name,
                "ca_rotation": {
                    "phase": state.phase.id(),
                    "description": state.phase.describe(),
                    "trusted": state.trusted,
                    "interrupted_step_left": state.stale_pending.then_some(PENDING_KEY),
                    "next": state.phase.next(),
                },
            }),
        );
    }
    writeln!(out, "Key Vault {}: {}", kv.name, state.phase.describe())?;
    trusted_lines(&state, out)?;
    if state.stale_pending {
        writeln!(
            out,
            "note: {PENDING_KEY} is left from an interrupted step; the next step removes it"
        )?;
    }
    writeln!(out, "next: {}", state.phase.next())?;
    writeln!(out, "usage: cluster-deploy {usage}")?;
    Ok(())
}

/// What `rotate --ca <step>` works with.
pub(super) struct StepContext<'a> {
    pub(super) cli: &'a Cli,
    pub(super) loaded: &'a Loaded,
    pub(super) kv: &'a KeyVault,
    pub(super) session: &'a Session,
    pub(super) arm: &'a ArmClient,
    pub(super) clock: &'a dyn Clock,
}

/// The step before `step` when `step` is about to move the rotation on from `before` (a
/// re-run or an interrupted run of the same step has none).
fn moving_on(step: CaStep, before: Phase) -> Option<CaStep> {
    match (step, before) {
        (CaStep::Switch, Phase::TrustBoth) => Some(CaStep::Start),
        (CaStep::Finish, Phase::NewSigns) => Some(CaStep::Switch),
        _ => None,
    }
}

/// `rotate --ca <step>`; unless `skip_roll_check`, `switch` and `finish` first make sure the
/// roll after the previous step finished ([`timing::check_rolled`]).
pub(super) fn step(
    ctx: &StepContext<'_>,
    step: CaStep,
    skip_roll_check: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let StepContext {
        cli,
        loaded,
        kv,
        session,
        arm,
        clock,
    } = *ctx;
    let now = SystemTime::now();
    let (stored, pending) = read(session, loaded, kv)?;
    let inputs = vault::inputs(loaded, Rotation::default(), now)?;
    let planned = plan_step(step, &stored, pending.as_ref(), &inputs)
        .with_context(|| format!("the secrets in Key Vault {}", kv.name))?;
    if let Some(previous) = moving_on(step, planned.before) {
        let at = timing::latest_created(&session.client, timing::marker_items(previous))
            .map_err(|e| explain(e, kv, "reading when the previous step stored its secrets"))?;
        timing::check_rolled(arm, loaded, step, at, skip_roll_check)?;
    } else if skip_roll_check {
        tracing::warn!(
            "{}: `{}` does not move the rotation on here: there is no roll to check",
            timing::SKIP_ROLL_CHECK,
            step.command()
        );
    }
    for note in &planned.plan.notes {
        tracing::warn!("{note}");
    }
    let client = &session.client;
    let mut pending_after = pending.clone();
    let mut pending_done: Option<String> = None;
    let mut written: Option<i64> = None;
    if let PendingChange::Set(key) = &planned.pending {
        let (version, created) = store_pending(client, key)
            .map_err(|e| explain(e, kv, &format!("storing {PENDING_KEY}")))?;
        written = created;
        tracing::info!("stored {PENDING_KEY} (the new CA's key), version {version}");
        pending_done = Some(format!("stored (version {version})"));
        pending_after = Some(key.clone());
    }
    let uploaded: Vec<Uploaded> = data::upload(client, &planned.plan)
        .map_err(|e| explain(e, kv, "storing the cluster's secrets"))?;
    if planned.pending == PendingChange::Delete {
        match client.delete_secret(PENDING_KEY) {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(explain(e, kv, &format!("deleting {PENDING_KEY}"))),
        }
        tracing::info!("deleted {PENDING_KEY}: nomad-ca-key holds the signing key");
        pending_done = Some("deleted".into());
        pending_after = None;
    }
    let state = read_state(&planned.plan.values, pending_after.as_ref(), now)
        .with_context(|| format!("the CA in Key Vault {} after the step", kv.name))?;
    let already = !planned.changes_anything();
    // The time of the step by Azure's clock: the last version it wrote, or, when it wrote
    // none (run again, or only the pending key deleted), the current version that marks it.
    // Every node created before it may hold the old material.
    written = uploaded
        .iter()
        .map(|u| u.created)
        .fold(written, Option::max);
    if written.is_none() {
        written = timing::latest_created(client, timing::marker_items(step))
            .map_err(|e| explain(e, kv, "reading when the step stored its secrets"))?;
    }
    let (done, time_source) =
        timing::step_time(written, clock.wall(), &format!("`{}`", step.command()));
    let roll = RollCommand::after(&loaded.path, done, false);
    let roll_words = format!("`{}`", roll.command);
    let mut next = vec![state.phase.next_with(&roll_words)];
    if step == CaStep::Finish && planned.before != state.phase {
        next = vec![format!(
            "replace every node once more ({roll_words}) so that none trusts the old CA any \
             longer, and `cluster-deploy env` for the CLI's CA file; this may wait until a \
             routine roll (then with the time printed here), but not past the old CA's expiry, \
             and must not wait if its key may have leaked. {}",
            state.phase.next()
        )];
    }
    if cli.json {
        return write_json(
            out,
            &json!({
                "key_vault": kv.name,
                "step": match step {
                    CaStep::Start => "start",
                    CaStep::Switch => "switch",
                    CaStep::Finish => "finish",
                },
                "phase_before": planned.before.id(),
                "phase": state.phase.id(),
                "description": state.phase.describe(),
                "already_done": already,
                "new_versions": uploaded,
                "pending_key": pending_done,
                "trusted": state.trusted,
                "notes": planned.plan.notes,
                "next_steps": next,
                "created_before": roll.created_before,
                "created_before_source": time_source,
                "roll_command": roll.command,
            }),
        );
    }
    if already {
        writeln!(
            out,
            "Key Vault {}: nothing to do, `{}` already ran: {}",
            kv.name,
            step.command(),
            state.phase.describe()
        )?;
    } else {
        writeln!(
            out,
            "Key Vault {}: {} (was {})",
            kv.name,
            state.phase.describe(),
            planned.before.id()
        )?;
    }
    for u in &uploaded {
        writeln!(out, "  {:<28} version {} ({})", u.secret, u.version, u.why)?;
    }
    if let Some(done) = &pending_done {
        writeln!(out, "  {PENDING_KEY:<28} {done}")?;
    }
    trusted_lines(&state, out)?;
    for note in &planned.plan.notes {
        writeln!(out, "note: {note}")?;
    }
    for step in &next {
        writeln!(out, "next: {step}")?;
    }
    writeln!(out, "roll: {}", roll.command)?;
    Ok(())
}
