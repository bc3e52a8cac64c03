//! The scale-set operations a roll makes, on top of [`ArmClient`] (Compute 2024-11-01,
//! `virtualMachineScaleSet.json`): VirtualMachineScaleSetVMs_List (the instances, with
//! `latestModelApplied` and `vmId`), VirtualMachineScaleSets_Get and _Update (a PATCH of
//! `sku.capacity`: the surge), and VirtualMachineScaleSets_DeleteInstances (POST `.../delete`
//! with `instanceIds`: the scale set's terminate notification gives the VM's agent its window
//! to leave). Each write is absolute or names its instances, so a retried or repeated request
//! does no more than the first.

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};

use crate::arm::{ArmClient, Outcome};
use crate::template::COMPUTE_API;

use super::super::connect::log_progress;
use super::state::Instance;

/// Every instance of a scale set, in instance id order.
pub(crate) fn instances(arm: &ArmClient, group: &str, scale_set: &str) -> Result<Vec<Instance>> {
    let values = arm
        .scale_set_instances(group, scale_set)
        .with_context(|| format!("listing the instances of scale set {scale_set}"))?;
    let mut instances = values
        .iter()
        .map(|v| Instance::from_arm(scale_set, v))
        .collect::<Result<Vec<_>>>()?;
    instances.sort_by_key(|i| i.order_key());
    Ok(instances)
}

/// The scale set's `sku` (name, tier, capacity) as ARM has it.
pub(super) fn sku(arm: &ArmClient, group: &str, scale_set: &str) -> Result<Value> {
    let url = arm.url(&arm.scale_set_path(group, scale_set), COMPUTE_API, &[]);
    let value = arm
        .get_optional(&url)
        .with_context(|| format!("reading scale set {scale_set}"))?
        .with_context(|| {
            format!(
                "scale set {scale_set} does not exist in resource group {group}: run apply first"
            )
        })?;
    let sku = value["sku"].clone();
    if sku["capacity"].as_u64().is_none() {
        bail!("scale set {scale_set}: ARM's answer has no sku.capacity");
    }
    Ok(sku)
}

/// Sets the scale set's capacity (VirtualMachineScaleSets_Update with the scale set's own SKU
/// name and tier): new instances take the latest model.
pub(super) fn set_capacity(
    arm: &ArmClient,
    group: &str,
    scale_set: &str,
    capacity: u64,
) -> Result<()> {
    let mut sku = sku(arm, group, scale_set)?;
    sku["capacity"] = json!(capacity);
    let url = arm.url(&arm.scale_set_path(group, scale_set), COMPUTE_API, &[]);
    let what = format!("scaling {scale_set} to {capacity} instances");
    let answer = arm
        .send(Method::PATCH, &url, Some(&json!({ "sku": sku })))
        .with_context(|| what.clone())?;
    let mut progress = log_progress(&what);
    let outcome = arm.wait(&what, answer, None, &mut progress)?;
    finish(&what, outcome)
}

/// Deletes these instances (by ARM instance id) and waits until Azure has.
pub(super) fn delete_instances(
    arm: &ArmClient,
    group: &str,
    scale_set: &str,
    instance_ids: &[String],
) -> Result<()> {
    let url = arm.url(
        &format!("{}/delete", arm.scale_set_path(group, scale_set)),
        COMPUTE_API,
        &[],
    );
    let what = format!(
        "deleting instance{} {} of {scale_set}",
        if instance_ids.len() == 1 { "" } else { "s" },
        instance_ids.join(", ")
    );
    let answer = arm
        .send(
            Method::POST,
            &url,
            Some(&json!({ "instanceIds": instance_ids })),
        )
        .with_context(|| what.clone())?;
    let mut progress = log_progress(&what);
    let outcome = arm.wait(&what, answer, None, &mut progress)?;
    finish(&what, outcome)
}

fn finish(what: &str, outcome: Outcome) -> Result<()> {
    match outcome {
        Outcome::Succeeded(_) => Ok(()),
        Outcome::Failed { status, error } => bail!("{what}: {status}: {error}"),
    }
}
