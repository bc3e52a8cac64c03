//! When the double's scale-set instances were created: `properties.timeCreated` of a
//! VirtualMachineScaleSetVM (Compute, `virtualMachineScaleSet.json`, minimum api-version
//! 2021-11-01), stamped by the double's clock, which a test may replace with a simulation's
//! virtual time; and an answer without it, for the tests of a client that must not guess.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{lock, ArmDouble, State};

/// A source of Azure's current time.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// `properties.timeCreated` as Compute writes it (the spec's example
/// `VirtualMachineScaleSetVM_List_MaximumSet_Gen.json`: `2021-06-27T01:02:38.3138469+00:00`,
/// seven fractional digits and a numeric UTC offset).
pub(crate) fn time_created(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "{}.{:07}+00:00",
        crate::doubles::nomad_sim::civil(since.as_secs() as i64),
        since.subsec_nanos() / 100
    )
}

/// Drops an instance's creation time from the answers; false when there is no such instance.
pub(crate) fn forget_time_created(state: &mut State, scale_set: &str, instance_id: &str) -> bool {
    state
        .resources
        .values_mut()
        .filter(|s| s.value["name"] == scale_set)
        .filter_map(|s| s.scale_set.as_mut())
        .flat_map(|set| set.instances.iter_mut())
        .filter(|i| i.instance_id.to_string() == instance_id)
        .map(|i| i.created = None)
        .count()
        > 0
}

impl ArmDouble {
    /// Azure's time from now on (e.g. a simulation's virtual time, so that instances report
    /// the `timeCreated` at which the simulation created them).
    pub fn set_clock(&self, clock: Clock) {
        lock(&self.state).clock = clock;
    }

    /// Leaves `properties.timeCreated` out of this instance's record from now on (an answer
    /// without it, as for a VM whose creation time Compute does not report). Panics when the
    /// instance does not exist.
    pub fn forget_time_created(&self, scale_set: &str, instance_id: &str) {
        assert!(
            forget_time_created(&mut lock(&self.state), scale_set, instance_id),
            "no instance {instance_id} in scale set {scale_set}"
        );
    }
}
