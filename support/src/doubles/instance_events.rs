//! The seam between the ARM double's scale-set instances and a simulated Nomad cluster (issue
//! 11): the ARM double says when an instance is created or deleted, a simulation decides what the
//! VM's Nomad agent does (boot after a delay, join, leave on the terminate notification).

/// One scale-set instance as ARM reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// Scale set name.
    pub scale_set: String,
    /// ARM's instance id within the scale set ("0", "1", ...).
    pub instance_id: String,
    /// The VM id (`properties.vmId`, IMDS `compute.vmId`): run-nomad names the agent after it.
    pub vm_id: String,
    /// `osProfile.computerName`.
    pub computer_name: String,
    /// Private IPv4 address of the instance's primary NIC.
    pub private_ip: String,
}

/// Told by the ARM double about instance lifecycle changes. Implementations must not block.
pub trait InstanceEvents: Send + Sync {
    /// A new instance was created (scale-out or a new deployment) and starts booting.
    fn instance_created(&self, instance: &InstanceInfo);
    /// An instance is being deleted. `notified` is true when the scale set has a terminate
    /// notification profile enabled, so the VM gets a Scheduled Events `Terminate` first and may
    /// leave gracefully; false means the VM simply disappears.
    fn instance_deleted(&self, instance: &InstanceInfo, notified: bool);
    /// A notified delete is pending: has the VM approved its `Terminate` event (`POST` of
    /// `StartRequests`, which its watcher sends once the agent stopped)? Asked on every request
    /// the ARM double answers while the delete waits. The default, for a double with no VM
    /// behind it: approved at once.
    fn terminate_approved(&self, _instance: &InstanceInfo) -> bool {
        true
    }
    /// The delete finished: the VM is gone, whatever its agent was doing.
    fn instance_removed(&self, _instance: &InstanceInfo) {}
    /// The ARM double answered a request while a delete was pending (a simulation may let a
    /// request's time pass, so the VM's agent gets on with leaving).
    fn request_served(&self) {}
}
