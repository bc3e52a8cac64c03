//! VirtualMachineScaleSets_DeleteInstances as Azure runs it: not at once, but through a
//! `Deleting` phase.
//!
//! Sources:
//! - [SPEC] Compute 2024-11-01 `virtualMachineScaleSet.json`, VirtualMachineScaleSets_DeleteInstances:
//!   `x-ms-long-running-operation: true`, responses 200 and 202: the operation runs after the
//!   answer, and its status URLs say `InProgress` until the instances are gone.
//! - [TN] "Terminate notification for Azure Virtual Machine Scale Set instances",
//!   learn.microsoft.com/azure/virtual-machine-scale-sets/virtual-machine-scale-sets-terminate-notification:
//!   with `scheduledEventsProfile.terminateNotificationProfile` enabled, a delete first raises a
//!   Scheduled Events `Terminate` for the VM, and the VM is deleted only when the event is
//!   approved ("instances don't have to wait for the specified timeout to expire before being
//!   deleted ... can choose to be deleted at any time before the terminate timeout expires") or
//!   its `NotBefore` passes; `notBeforeTimeout` is ISO 8601, 5 to 15 minutes.
//! - [TNP] The `TerminateNotificationProfile` model of the Compute spec and SDKs: "Configurable
//!   length of time a Virtual Machine being deleted will have to potentially approve the
//!   Terminate Scheduled Event before the event is auto approved (timed out) ... the default
//!   value is 5 minutes (PT5M)".
//! - [VM] VirtualMachineScaleSetVMs_List/Get report the instance meanwhile with
//!   `provisioningState: "Deleting"` (the `provisioningState` of `VirtualMachineScaleSetVMProperties`).
//!
//! What the double does: DeleteInstances marks the instances [`Deleting`] (still listed, the
//! capacity unchanged) and answers 202; on every later request [`settle`] finishes the deletes
//! that may finish: with a notification, once the VM approved its event
//! ([`InstanceEvents::terminate_approved`]; a double without a simulated VM behind it takes the
//! approval as given) or the `NotBefore` passed by the double's clock; without one, after
//! [`super::ArmDouble::set_delete_requests`] requests (default 2). Then the instances go, the
//! capacity drops, [`InstanceEvents::instance_removed`] is told, and the operation succeeds.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::{InstanceEvents, State};

/// An instance Azure is deleting.
#[derive(Debug, Clone)]
pub(crate) struct Deleting {
    /// With a terminate notification: when the `Terminate` event's NotBefore passes [TN].
    pub(crate) not_before: Option<SystemTime>,
    /// Without one: requests the double answers before the delete ends.
    pub(crate) requests_left: u32,
}

/// `notBeforeTimeout` of an enabled terminate notification profile (default PT5M [TNP]), or
/// `None` when the scale set has no notification.
pub(crate) fn notification_timeout(scale_set: &Value) -> Option<Duration> {
    let profile = &scale_set["properties"]["virtualMachineProfile"]["scheduledEventsProfile"]
        ["terminateNotificationProfile"];
    if profile["enable"] != true {
        return None;
    }
    Some(
        profile["notBeforeTimeout"]
            .as_str()
            .and_then(iso8601_minutes_seconds)
            .unwrap_or(Duration::from_secs(300)),
    )
}

/// `PT<h>H<m>M<s>S` (each part optional), the form [TN] shows (`PT5M`).
fn iso8601_minutes_seconds(text: &str) -> Option<Duration> {
    let rest = text.strip_prefix("PT")?;
    let mut total = 0u64;
    let mut number = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' => number.push(c),
            'H' | 'M' | 'S' => {
                let n: u64 = number.parse().ok()?;
                number.clear();
                total += n * match c {
                    'H' => 3600,
                    'M' => 60,
                    _ => 1,
                };
            }
            _ => return None,
        }
    }
    number.is_empty().then(|| Duration::from_secs(total))
}

/// The state a delete starts in: NotBefore from now with a notification, else a few requests.
pub(crate) fn begin(state: &State, scale_set: &Value) -> Deleting {
    Deleting {
        not_before: notification_timeout(scale_set).map(|t| (state.clock)() + t),
        requests_left: state.delete_requests,
    }
}

/// One request passed: finishes the deletes that may finish now.
pub(crate) fn settle(state: &mut State) {
    let any = state.resources.values().any(|s| {
        s.scale_set
            .as_ref()
            .is_some_and(|set| set.instances.iter().any(|i| i.deleting.is_some()))
    });
    if !any {
        return;
    }
    let events = state.events.clone();
    if let Some(events) = &events {
        events.request_served();
    }
    let now = (state.clock)();
    for stored in state.resources.values_mut() {
        let Some(mut set) = stored.scale_set.take() else {
            continue;
        };
        let mut gone = Vec::new();
        for i in set.instances.iter_mut() {
            if i.deleting.is_none() {
                continue;
            }
            let info = super::compute::info(stored, i);
            let d = i.deleting.as_mut().expect("checked above");
            d.requests_left = d.requests_left.saturating_sub(1);
            let done = match d.not_before {
                Some(not_before) => {
                    now >= not_before
                        || events
                            .as_ref()
                            .is_none_or(|e: &Arc<dyn InstanceEvents>| e.terminate_approved(&info))
                }
                None => d.requests_left == 0,
            };
            if done {
                gone.push((i.instance_id, info));
            }
        }
        set.instances
            .retain(|i| !gone.iter().any(|(id, _)| *id == i.instance_id));
        if !gone.is_empty() {
            stored.value["sku"]["capacity"] = json!(set.instances.len());
        }
        stored.scale_set = Some(set);
        if let Some(events) = &events {
            for (_, info) in &gone {
                events.instance_removed(info);
            }
        }
    }
}

/// True when none of `ids` is left in the scale set `key` (the operation may succeed).
pub(crate) fn done(state: &State, key: &str, ids: &[u32]) -> bool {
    state
        .resources
        .get(key)
        .and_then(|s| s.scale_set.as_ref())
        .is_none_or(|set| !set.instances.iter().any(|i| ids.contains(&i.instance_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_before_timeouts_read_iso_8601_and_default_to_five_minutes() {
        let profile = |p: Value| json!({"properties": {"virtualMachineProfile": {"scheduledEventsProfile": {"terminateNotificationProfile": p}}}});
        assert_eq!(
            notification_timeout(&profile(
                json!({"enable": true, "notBeforeTimeout": "PT15M"})
            )),
            Some(Duration::from_secs(900))
        );
        assert_eq!(
            notification_timeout(&profile(json!({"enable": true}))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            notification_timeout(&profile(
                json!({"enable": false, "notBeforeTimeout": "PT5M"})
            )),
            None
        );
        assert_eq!(
            iso8601_minutes_seconds("PT1H2M3S"),
            Some(Duration::from_secs(3723))
        );
        assert_eq!(iso8601_minutes_seconds("PT5"), None);
    }
}
