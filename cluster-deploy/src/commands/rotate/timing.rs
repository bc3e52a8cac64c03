//! When a rotation step happened, by Azure's clock, and whether the roll after the previous
//! step has finished.
//!
//! `roll --created-before` compares the time with `properties.timeCreated` of the scale-set
//! instances, which Azure writes. The operator's clock may be off: behind, the roll leaves
//! instances on the old material; ahead, every instance the roll surges is "old" too. So a
//! step's time is `attributes.created` of the secret version it wrote (Key Vault data plane,
//! SecretBundle `attributes.created`, Unix seconds, secrets.json 7.6), Azure's clock as
//! well; the local clock only when the vault gives none, with a warning.
//!
//! The same times guard the order of a CA rotation: `switch` and `finish` refuse while any
//! instance of the cluster was created before the previous step (its roll has not finished),
//! since the next node to boot would get material those instances do not trust.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use support::cluster_secrets::SecretItem;
use support::keyvault::KeyVaultClient;
use time::OffsetDateTime;

use crate::arm::ArmClient;
use crate::secrets::ca_rotation::CaStep;

use super::super::roll::age::format_utc_seconds;
use super::super::roll::azure;
use super::super::Loaded;
use super::RollCommand;

/// The flag that lets `switch` or `finish` go ahead before the previous roll finished.
pub(crate) const SKIP_ROLL_CHECK: &str = "--skip-roll-check";

/// Where a step's time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TimeSource {
    KeyVault,
    LocalClock,
}

/// The step's time: the vault's `created` (Unix seconds) when it gave one, else `local`.
pub(crate) fn choose(created: Option<i64>, local: SystemTime) -> (SystemTime, TimeSource) {
    match created.and_then(|s| u64::try_from(s).ok()) {
        Some(seconds) => (
            UNIX_EPOCH + Duration::from_secs(seconds),
            TimeSource::KeyVault,
        ),
        None => (local, TimeSource::LocalClock),
    }
}

/// [`choose`], warning when it falls back to the local clock.
pub(crate) fn step_time(
    created: Option<i64>,
    local: SystemTime,
    what: &str,
) -> (SystemTime, TimeSource) {
    let (time, source) = choose(created, local);
    if source == TimeSource::LocalClock {
        tracing::warn!(
            "Key Vault gave no `created` time for {what}: the --created-before time is this \
             machine's clock ({}), which may differ from Azure's; check it against the \
             instances' timeCreated (`cluster-deploy status`) before rolling",
            format_utc_seconds(OffsetDateTime::from(local))
        );
    }
    (time, source)
}

/// The latest `created` among the current versions of `items` (those the vault holds).
pub(crate) fn latest_created(
    client: &KeyVaultClient,
    items: &[SecretItem],
) -> Result<Option<i64>, support::keyvault::KeyVaultError> {
    let mut latest = None;
    for item in items {
        match client.get_secret(item.vault_name(), None) {
            Ok(found) => latest = latest.max(found.properties.created),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(latest)
}

/// The secrets whose current versions a CA step writes last, and so mark when it happened:
/// the bundle for `start` and `finish`, the certificates for `switch`.
pub(crate) fn marker_items(step: CaStep) -> &'static [SecretItem] {
    match step {
        CaStep::Start | CaStep::Finish => &[SecretItem::CaCertificate],
        CaStep::Switch => &[
            SecretItem::ServerCertificate,
            SecretItem::ClientCertificate,
            SecretItem::CliCertificate,
        ],
    }
}

/// One instance that is older than the previous step (or of unknown age).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unrolled {
    pub(crate) scale_set: String,
    pub(crate) label: String,
    /// `None`: no `timeCreated` in ARM's answer.
    pub(crate) time_created: Option<String>,
}

/// The instances of every scale set (servers, then each client pool) created before
/// `previous`, or of unknown age. Instances Azure is deleting are on their way out, as a roll
/// counts them.
pub(crate) fn unrolled(
    arm: &ArmClient,
    loaded: &Loaded,
    previous: OffsetDateTime,
) -> Result<Vec<Unrolled>> {
    let cluster = &loaded.cluster;
    let mut found = Vec::new();
    for set in std::iter::once(&cluster.servers).chain(&cluster.client_pools) {
        let instances = azure::instances(arm, &cluster.resource_group, &set.name)?;
        for i in instances.iter().filter(|i| !i.deleting()) {
            if i.created.is_none_or(|c| c < previous) {
                found.push(Unrolled {
                    scale_set: set.name.clone(),
                    label: i.label(),
                    time_created: i.time_created.clone(),
                });
            }
        }
    }
    Ok(found)
}

/// The refusal (or, with [`SKIP_ROLL_CHECK`], the warning) for `step` while `left` were
/// created before the previous step at `previous`.
pub(crate) fn refusal(
    step: CaStep,
    previous: OffsetDateTime,
    roll: &RollCommand,
    left: &[Unrolled],
) -> String {
    let before = match step {
        CaStep::Switch => CaStep::Start,
        CaStep::Start | CaStep::Finish => CaStep::Switch,
    };
    let why = match step {
        CaStep::Switch => "they trust only the old CA and would reject the certificates of the new CA that nodes booted after the switch get",
        CaStep::Start | CaStep::Finish => "they hold certificates of the old CA, which nodes booted after the finish no longer trust",
    };
    let listed: Vec<String> = left
        .iter()
        .map(|u| match &u.time_created {
            Some(t) => format!("scale set {}: instance {} created {t}", u.scale_set, u.label),
            None => format!(
                "scale set {}: instance {} (no properties.timeCreated in ARM's answer: its age is unknown)",
                u.scale_set, u.label
            ),
        })
        .collect();
    format!(
        "`{}`: the roll after `{}` has not finished: {} instance{} {} not replaced since that \
         step ({}, when Key Vault stored its versions): {}; {why}. Run `{}` first, then this \
         step again (or, at your own risk, add {SKIP_ROLL_CHECK})",
        step.command(),
        before.command(),
        left.len(),
        if left.len() == 1 { "" } else { "s" },
        if left.len() == 1 { "was" } else { "were" },
        format_utc_seconds(previous),
        listed.join("; "),
        roll.command
    )
}

/// Refuses `step` while the roll after the previous step (at `previous`, Unix seconds from the
/// vault) has not finished; with `skip`, warns instead. Changes nothing either way.
pub(crate) fn check_rolled(
    arm: &ArmClient,
    loaded: &Loaded,
    step: CaStep,
    previous: Option<i64>,
    skip: bool,
) -> Result<()> {
    let Some(previous) = previous else {
        let what = "the previous step's secret versions carry no `created` time";
        if skip {
            tracing::warn!("{SKIP_ROLL_CHECK}: not checking the roll ({what})");
            return Ok(());
        }
        bail!(
            "`{}`: cannot tell whether the roll after the previous step finished: {what}; \
             if every instance was replaced after it, run again with {SKIP_ROLL_CHECK}",
            step.command()
        );
    };
    let previous = OffsetDateTime::from_unix_timestamp(previous)
        .with_context(|| format!("Key Vault `created` {previous}"))?;
    let left = match unrolled(arm, loaded, previous) {
        Ok(left) => left,
        Err(e) if skip => {
            tracing::warn!(
                "{SKIP_ROLL_CHECK}: not checking the roll (listing the instances failed: {e:#})"
            );
            return Ok(());
        }
        Err(e) => {
            return Err(e.context(format!(
                "`{}`: checking that every instance was replaced after the previous step \
                 ({SKIP_ROLL_CHECK} goes ahead without)",
                step.command()
            )))
        }
    };
    if left.is_empty() {
        tracing::info!(
            "every instance was created after the previous step ({}): going ahead",
            format_utc_seconds(previous)
        );
        return Ok(());
    }
    let roll = RollCommand::after(&loaded.path, previous.into(), false);
    let text = refusal(step, previous, &roll, &left);
    if skip {
        tracing::warn!("{SKIP_ROLL_CHECK}: going ahead although {text}");
        return Ok(());
    }
    bail!("{text}; nothing was changed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vaults_time_wins_and_the_local_clock_is_only_a_fallback() {
        let local = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        assert_eq!(
            choose(Some(1_796_042_096), local),
            (
                UNIX_EPOCH + Duration::from_secs(1_796_042_096),
                TimeSource::KeyVault
            )
        );
        assert_eq!(choose(None, local), (local, TimeSource::LocalClock));
        assert_eq!(choose(Some(-5), local), (local, TimeSource::LocalClock));
    }

    #[test]
    fn the_refusal_names_the_instances_the_time_and_the_roll() {
        let at = OffsetDateTime::from_unix_timestamp(1_796_042_096).unwrap();
        let roll = RollCommand::after(std::path::Path::new("c.toml"), at.into(), false);
        let left = vec![
            Unrolled {
                scale_set: "servers".into(),
                label: "0 (s0, vm a)".into(),
                time_created: Some("2026-11-30T12:00:00+00:00".into()),
            },
            Unrolled {
                scale_set: "clients".into(),
                label: "3 (c3, vm b)".into(),
                time_created: None,
            },
        ];
        let text = refusal(CaStep::Switch, at, &roll, &left);
        for part in [
            "`cluster-deploy rotate --ca switch`: the roll after `cluster-deploy rotate --ca start` has not finished: 2 instances were",
            "(2026-11-30T12:34:56Z,",
            "scale set servers: instance 0 (s0, vm a) created 2026-11-30T12:00:00+00:00",
            "scale set clients: instance 3 (c3, vm b) (no properties.timeCreated",
            "Run `cluster-deploy roll --config c.toml --created-before 2026-11-30T12:34:56Z` first",
            "--skip-roll-check",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }
        let text = refusal(CaStep::Finish, at, &roll, &left[..1]);
        assert!(
            text.contains("after `cluster-deploy rotate --ca switch`")
                && text.contains("1 instance was"),
            "{text}"
        );
    }
}
