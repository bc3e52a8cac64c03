//! The client steps, pool by pool, batch by batch (`--client-batch-size`). Like the servers',
//! each turn reads the pool back from Azure and Nomad, so a re-run continues a half-done batch:
//!
//! 1. surge: capacity up to the pool's count plus the batch, so the batch's work has new
//!    nodes to move to;
//! 2. gate: every new-model node ready, eligible and not draining (its Nomad version a step
//!    Nomad supports from the old nodes'); the roll stops when one never gets there, the old
//!    nodes untouched, and deletes only surplus new instances that never became ready;
//! 3. the batch, rebuilt from the pool read again after the gate, has its nodes marked
//!    ineligible (nothing new lands there), then drained with
//!    `--drain-deadline` (service allocations migrate; what is left at the deadline Nomad
//!    stops);
//! 4. wait until no allocation is pending or running on them (at most the deadline plus a
//!    grace), then delete their instances. A node that is down or gone has nothing to move.
//!
//! Once no old instance is left, a pool above its count (new-model instances Azure's automatic
//! repairs re-created during the roll, old ones an operator upgraded in place meanwhile) has
//! its surplus taken out of service, drained and deleted the same way, so the roll ends with
//! the pool at the count the cluster file gives.

use std::collections::BTreeMap;

use serde_json::json;

use crate::model::ScaleSet;
use crate::nomad::DrainDeadline;

use super::azure;
use super::events::duration_text;
use super::gates::{self, Look};
use super::plan::{client_batches, joining_clients, surplus_clients};
use super::state::ClientInstance;
use super::version::Version;
use super::{Roll, Stop};

impl Roll<'_> {
    pub(super) fn roll_pool(&mut self, spec: &ScaleSet) -> Result<(), Stop> {
        let label = spec.label();
        loop {
            self.checkpoint()?;
            let set = self.read_pool(spec)?;
            if self.wait_for_deletes(&spec.name, self.options.client_gate_timeout)? {
                continue;
            }
            let batches = client_batches(&set, self.options.client_batch_size);
            let Some(batch) = batches.first() else {
                let set = if joining_clients(&set).is_empty() {
                    set
                } else {
                    self.gate_new_clients(spec, &[])?;
                    self.read_pool(spec)?
                };
                let surplus: Vec<ClientInstance> =
                    surplus_clients(&set).into_iter().cloned().collect();
                if surplus.is_empty() {
                    break;
                }
                self.events.emit(
                    "trim",
                    format!(
                        "{label}: {} has {} instances, all on the latest model, for a count of {}: \
                         taking {} out of service",
                        spec.name,
                        set.instances.len(),
                        set.wanted,
                        surplus
                            .iter()
                            .map(|c| c.instance.label())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    json!({ "scale_set": spec.name, "instances": set.instances.len(), "count": set.wanted }),
                );
                self.retire(spec, &surplus, Leaving::Surplus)?;
                continue;
            };
            let batch: Vec<ClientInstance> = batch.iter().map(|c| (*c).clone()).collect();
            let old_versions: Vec<(String, Version)> = set
                .old()
                .filter_map(|c| {
                    let v = c.node.as_ref()?.version.as_str();
                    Some((c.instance.instance_id.clone(), Version::parse(v).ok()?))
                })
                .collect();
            let count = set.instances.len() as u64;
            let target = u64::from(spec.capacity) + batch.len() as u64;
            if count < target {
                self.events.emit(
                    "surge",
                    format!(
                        "{label}: surging {} from {count} to {target} instances for a batch of {}",
                        spec.name,
                        batch.len()
                    ),
                    json!({ "scale_set": spec.name, "from": count, "to": target }),
                );
                azure::set_capacity(&self.arm, self.group(), &spec.name, target)?;
                self.changed(format!(
                    "scaled {} from {count} to {target} instances",
                    spec.name
                ));
            }
            self.gate_new_clients(spec, &old_versions)?;
            // The gate may have taken minutes: the batch is taken out of service as the pool
            // is now, not as it was before the surge (a node put back in service meanwhile
            // holds work again; one that was down may be back).
            let fresh = self.read_pool(spec)?;
            let batch: Vec<ClientInstance> = match client_batches(&fresh, batch.len() as u32)
                .into_iter()
                .next()
            {
                Some(now) => now.into_iter().cloned().collect(),
                // The batch's old instances went meanwhile (deleted, or re-created on the
                // latest model by automatic repairs): the next turn reads the pool again, and
                // trims what is now above its count.
                None => continue,
            };
            self.retire(spec, &batch, Leaving::Old)?;
        }
        self.events.emit(
            "note",
            format!(
                "{label}: every instance of {} runs the latest model",
                spec.name
            ),
            json!({ "scale_set": spec.name }),
        );
        Ok(())
    }

    /// Takes `batch` out of service (ineligible, drained with the deadline), waits until
    /// nothing runs there any more, and deletes its instances.
    fn retire(
        &mut self,
        spec: &ScaleSet,
        batch: &[ClientInstance],
        leaving: Leaving,
    ) -> Result<(), Stop> {
        let label = spec.label();
        self.take_out_of_service(spec, batch, leaving)?;
        let ids: Vec<String> = batch
            .iter()
            .map(|c| c.instance.instance_id.clone())
            .collect();
        let names: Vec<String> = batch.iter().map(|c| c.instance.label()).collect();
        let spec_for_gate = spec.clone();
        self.wait(
            &format!("{label}: {} drained", names.join(", ")),
            self.options.drain_timeout(),
            |roll| {
                let set = roll.read_pool(&spec_for_gate)?;
                if let Some(c) = set.instances.iter().find(|c| {
                    ids.contains(&c.instance.instance_id)
                        && c.node.as_ref().is_some_and(|n| n.drain_canceled)
                }) {
                    return Err(Stop::unsafe_state(format!(
                        "the drain of {} was canceled (not by this roll): it stays in service \
                         until a re-run drains it again",
                        c.instance.label()
                    )));
                }
                Ok(match gates::drained(&set, &ids) {
                    Ok(()) => Look::Open(()),
                    Err(missing) => Look::Closed(missing),
                })
            },
        )?;
        self.checkpoint()?;
        self.events.emit(
            "delete",
            format!(
                "{label}: deleting {} instance{} {} (drained)",
                leaving.adjective(),
                if ids.len() == 1 { "" } else { "s" },
                names.join(", ")
            ),
            json!({ "scale_set": spec.name, "instances": ids, "reason": leaving.reason() }),
        );
        azure::delete_instances(&self.arm, self.group(), &spec.name, &ids)?;
        self.changed(format!(
            "deleted the drained {} client{} {} of {}",
            leaving.adjective(),
            if ids.len() == 1 { "" } else { "s" },
            names.join(", "),
            spec.name
        ));
        Ok(())
    }

    /// Waits until every new-model node of the pool takes work; deletes the new instances that
    /// never get there, or run a Nomad version the old nodes cannot step to.
    fn gate_new_clients(
        &mut self,
        spec: &ScaleSet,
        old_versions: &[(String, Version)],
    ) -> Result<(), Stop> {
        let label = spec.label();
        let spec_for_gate = spec.clone();
        let result = self.wait(
            &format!("{label}: new clients ready"),
            self.options.client_gate_timeout,
            |roll| {
                let set = roll.read_pool(&spec_for_gate)?;
                for client in set.new_model() {
                    let Some(node) = &client.node else { continue };
                    if node.version.is_empty() {
                        continue;
                    }
                    roll.check_new_version(
                        "client",
                        &client.instance,
                        &node.version,
                        old_versions,
                    )?;
                }
                Ok(match gates::new_clients(&set) {
                    Ok(()) => Look::Open(()),
                    Err(missing) => Look::Closed(missing),
                })
            },
        );
        match result {
            Ok(()) => Ok(()),
            Err(stop @ (Stop::Timeout { .. } | Stop::Unsafe { .. })) => {
                Err(self.discard_new_clients(spec, stop))
            }
            Err(other) => Err(other),
        }
    }

    /// New clients that did not pass their gate go again (those that did stay: they take
    /// work); the old ones stay untouched.
    fn discard_new_clients(&mut self, spec: &ScaleSet, stop: Stop) -> Stop {
        let set = match self.read_pool(spec) {
            Ok(set) => set,
            Err(e) => {
                return stop.with_done(format!(
                    "could not read the pool to delete its failed new instances: {}",
                    e.reason()
                ))
            }
        };
        // Only a surplus node that never became ready goes; one that was ready may hold (or
        // have held) work that would be lost: it stays, and the report says so.
        let failed = gates::discardable_clients(&set);
        if failed.is_empty() {
            return stop.with_done(
                "deleted no new client: none is a surplus instance that never became ready"
                    .to_string(),
            );
        }
        let ids: Vec<String> = failed
            .iter()
            .map(|c| c.instance.instance_id.clone())
            .collect();
        let names: Vec<String> = failed.iter().map(|c| c.instance.label()).collect();
        self.events.emit(
            "delete",
            format!(
                "{}: deleting the new instance{} {} (gate failed); the old clients stay as they are",
                spec.label(),
                if ids.len() == 1 { "" } else { "s" },
                names.join(", ")
            ),
            json!({ "scale_set": spec.name, "instances": ids, "reason": "gate failed" }),
        );
        match azure::delete_instances(&self.arm, self.group(), &spec.name, &ids) {
            Ok(()) => {
                self.changed(format!(
                    "deleted the new client{} {} of {} that never passed the gate",
                    if ids.len() == 1 { "" } else { "s" },
                    names.join(", "),
                    spec.name
                ));
                stop.with_done(format!("deleted the new instance(s) {}", names.join(", ")))
            }
            Err(e) => stop.with_done(format!(
                "deleting the new instance(s) {} failed too: {e:#}; delete them by hand (az vmss delete-instances -g {} -n {} --instance-ids {})",
                names.join(", "),
                self.group(),
                spec.name,
                ids.join(" ")
            )),
        }
    }

    /// Marks the batch's nodes ineligible, then drains them with the deadline. Nodes a previous
    /// run already drains (or drained) are left as they are; down or missing nodes have nothing
    /// to drain.
    fn take_out_of_service(
        &mut self,
        spec: &ScaleSet,
        batch: &[ClientInstance],
        leaving: Leaving,
    ) -> Result<(), Stop> {
        let label = spec.label();
        for client in batch {
            self.checkpoint()?;
            let Some(node) = &client.node else { continue };
            if node.status == "down" || !node.eligible {
                continue;
            }
            self.nomad.set_eligibility(&node.id, false)?;
            self.events.emit(
                "eligibility",
                format!(
                    "{label}: node {} of instance {} marked ineligible: nothing new is placed there",
                    node.id,
                    client.instance.label()
                ),
                json!({ "node": node.id, "instance": client.instance.instance_id, "eligible": false }),
            );
            self.changed(format!("marked node {} ineligible", node.id));
        }
        let deadline = self.options.drain_deadline;
        for client in batch {
            self.checkpoint()?;
            let Some(node) = &client.node else { continue };
            if node.status == "down" || node.draining || node.drained && node.allocations == 0 {
                continue;
            }
            let meta = BTreeMap::from([(
                "message".to_string(),
                leaving.drain_message(&client.instance.instance_id, &spec.name),
            )]);
            self.nomad
                .drain(&node.id, DrainDeadline::After(deadline), false, meta)?;
            self.events.emit(
                "drain",
                format!(
                    "{label}: draining node {} of instance {} ({} allocation{}) with a {} deadline",
                    node.id,
                    client.instance.label(),
                    node.allocations,
                    if node.allocations == 1 { "" } else { "s" },
                    duration_text(deadline)
                ),
                json!({ "node": node.id, "instance": client.instance.instance_id, "deadline_s": deadline.as_secs(), "allocations": node.allocations }),
            );
            self.changed(format!(
                "started draining node {} ({})",
                node.id,
                client.instance.label()
            ));
        }
        Ok(())
    }
}

/// Why clients leave their pool.
#[derive(Debug, Clone, Copy)]
enum Leaving {
    /// On an old model: replaced by the batch's surge.
    Old,
    /// On the latest model, but the pool is above its count.
    Surplus,
}

impl Leaving {
    fn adjective(self) -> &'static str {
        match self {
            Leaving::Old => "old",
            Leaving::Surplus => "surplus",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Leaving::Old => "old model, drained",
            Leaving::Surplus => "above the pool's count, drained",
        }
    }

    /// The drain's metadata `message`: who drains the node and why.
    fn drain_message(self, instance_id: &str, scale_set: &str) -> String {
        match self {
            Leaving::Old => {
                format!("cluster-deploy roll: replacing instance {instance_id} of {scale_set}")
            }
            Leaving::Surplus => format!(
                "cluster-deploy roll: removing instance {instance_id} of {scale_set}, above the pool's count"
            ),
        }
    }
}
