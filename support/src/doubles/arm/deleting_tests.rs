//! DeleteInstances through its `Deleting` phase ([`super::deleting`]): the instance stays listed
//! as `Deleting` and the operation `InProgress` until the VM approves its Terminate event or
//! NotBefore passes (with a notification), or a few requests passed (without one).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::super::server::test_client as client;
use super::tests::{deploy, get, scale_set, template, url, COMPUTE};
use super::*;

const VMSS: &str = "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss";

/// A VM whose watcher approves when the test says so; the log of what the double told it.
#[derive(Default)]
struct Vm {
    approved: AtomicBool,
    log: Mutex<Vec<String>>,
}

impl InstanceEvents for Vm {
    fn instance_created(&self, _: &InstanceInfo) {}
    fn instance_deleted(&self, i: &InstanceInfo, notified: bool) {
        let line = format!("deleted {} {notified}", i.instance_id);
        self.log.lock().unwrap().push(line);
    }
    fn terminate_approved(&self, _: &InstanceInfo) -> bool {
        self.approved.load(Ordering::SeqCst)
    }
    fn instance_removed(&self, i: &InstanceInfo) {
        let line = format!("removed {}", i.instance_id);
        self.log.lock().unwrap().push(line);
    }
}

struct Rig {
    arm: ArmDouble,
    vm: Arc<Vm>,
    now: Arc<Mutex<SystemTime>>,
}

fn rig(vmss: Value) -> Rig {
    let arm = ArmDouble::start();
    let vm = Arc::new(Vm::default());
    arm.set_instance_events(vm.clone());
    let now = Arc::new(Mutex::new(
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    ));
    let clock = now.clone();
    arm.set_clock(Arc::new(move || *clock.lock().unwrap()));
    arm.add_resource_group("rg", "westeurope", json!({}));
    deploy(&arm, &template(vec![vmss]));
    Rig { arm, vm, now }
}

impl Rig {
    /// `(instance id, provisioningState)` of each listed instance, and the capacity.
    fn instances(&self) -> (Vec<(String, String)>, u64) {
        let (status, body) = get(
            &self.arm,
            &url(&self.arm, &format!("{VMSS}/virtualMachines"), COMPUTE),
        );
        assert_eq!(status, 200, "{body}");
        let listed = body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["instanceId"].as_str().unwrap().to_string(),
                    v["properties"]["provisioningState"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();
        let vmss = self
            .arm
            .resource_named("Microsoft.Compute/virtualMachineScaleSets", "vmss")
            .unwrap();
        (listed, vmss["sku"]["capacity"].as_u64().unwrap())
    }

    /// POSTs DeleteInstances; returns the operation's `Azure-AsyncOperation` URL.
    fn delete(&self, ids: &[&str]) -> String {
        let r = client()
            .post(url(&self.arm, &format!("{VMSS}/delete"), COMPUTE))
            .bearer_auth(self.arm.token())
            .json(&json!({ "instanceIds": ids }))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        r.headers()["azure-asyncoperation"]
            .to_str()
            .unwrap()
            .to_string()
    }

    fn status(&self, operation: &str) -> String {
        get(&self.arm, operation).1["status"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn state(id: &str, state: &str) -> (String, String) {
    (id.to_string(), state.to_string())
}

#[test]
fn a_notified_delete_waits_for_the_vm_to_approve_its_terminate_event() {
    let rig = rig(scale_set("vmss", 2, "/image-1"));
    let operation = rig.delete(&["1"]);
    for _ in 0..5 {
        assert_eq!(
            rig.instances(),
            (vec![state("0", "Succeeded"), state("1", "Deleting")], 2)
        );
        assert_eq!(rig.status(&operation), "InProgress");
    }
    // Asking again for an instance already deleting starts nothing new.
    rig.delete(&["1"]);
    assert_eq!(*rig.vm.log.lock().unwrap(), ["deleted 1 true"]);
    rig.vm.approved.store(true, Ordering::SeqCst);
    assert_eq!(rig.status(&operation), "Succeeded");
    assert_eq!(rig.instances(), (vec![state("0", "Succeeded")], 1));
    assert_eq!(*rig.vm.log.lock().unwrap(), ["deleted 1 true", "removed 1"]);
}

#[test]
fn an_unapproved_terminate_event_ends_at_its_not_before() {
    let mut vmss = scale_set("vmss", 2, "/image-1");
    vmss["properties"]["virtualMachineProfile"]["scheduledEventsProfile"]
        ["terminateNotificationProfile"]["notBeforeTimeout"] = json!("PT7M");
    let rig = rig(vmss);
    let operation = rig.delete(&["0"]);
    *rig.now.lock().unwrap() += Duration::from_secs(7 * 60 - 1);
    assert_eq!(rig.status(&operation), "InProgress");
    assert_eq!(rig.instances().0[0], state("0", "Deleting"));
    *rig.now.lock().unwrap() += Duration::from_secs(1);
    assert_eq!(rig.status(&operation), "Succeeded");
    assert_eq!(rig.instances(), (vec![state("1", "Succeeded")], 1));
}

#[test]
fn without_a_notification_the_delete_ends_after_a_few_requests() {
    let mut vmss = scale_set("vmss", 2, "/image-1");
    vmss["properties"]["virtualMachineProfile"]
        .as_object_mut()
        .unwrap()
        .remove("scheduledEventsProfile");
    let rig = rig(vmss);
    rig.arm.set_delete_requests(3);
    let operation = rig.delete(&["0", "1"]);
    // The VM never approves anything: no notification, nothing to wait for.
    assert_eq!(
        rig.instances(),
        (vec![state("0", "Deleting"), state("1", "Deleting")], 2)
    );
    assert_eq!(rig.status(&operation), "InProgress");
    assert_eq!(rig.status(&operation), "Succeeded");
    assert_eq!(rig.instances(), (vec![], 0));
    assert_eq!(
        *rig.vm.log.lock().unwrap(),
        [
            "deleted 0 false",
            "deleted 1 false",
            "removed 0",
            "removed 1"
        ]
    );
}
