//! The server steps. Each turn of the loop reads the servers back from Azure and Nomad and
//! takes the one step that state calls for, so a re-run picks up wherever a stop left them:
//!
//! 1. an old server whose agent is already gone (failed, left, never a member) is deleted
//!    first, and its Raft peer removed if Raft still lists it: it holds nothing;
//! 2. a new server still joining is gated: alive, in Raft, caught up with the leader's index,
//!    a voter autopilot finds healthy, autopilot healthy overall, all of it for `--soak`; its
//!    Nomad version must be a step Nomad supports from the old servers'. If it never gets
//!    there, the roll stops (the old servers untouched) and deletes it only if it is a surge
//!    beyond `cluster_size` that Nomad never made a voter: a voter stays;
//! 3. otherwise the servers must all be healthy voters before another one is touched;
//! 4. with no more healthy voters than `cluster_size`, one instance is surged (capacity + 1):
//!    never fewer than `cluster_size` healthy voters once an old one goes;
//! 5. the next old server goes: followers first; before the leader, leadership moves to a new
//!    server (Nomad 1.7+), or the leader's graceful leave starts an election;
//! 6. the deleted server must leave gossip and Raft; a dead peer is removed only when it did
//!    not leave and its member is failed (the guarded client call refuses anything else).

use serde_json::json;

use crate::model::ScaleSet;
use crate::nomad::{MemberStatus, TransferOutcome};

use super::azure;
use super::gates::{self, Look};
use super::plan::{joining_servers, server_order};
use super::state::{self, Instance, ServerInstance, ServerSet};
use super::version::{supported_step, Version};
use super::{Roll, Stop};

impl Roll<'_> {
    pub(super) fn roll_servers(&mut self) -> Result<(), Stop> {
        let spec = self.cluster.servers.clone();
        loop {
            self.checkpoint()?;
            let set = self.read_servers()?;
            if self.wait_for_deletes(&spec.name, self.options.server_gate_timeout)? {
                continue;
            }
            let order = server_order(&set);
            if let Some(dead) = order.first().filter(|s| s.dead()) {
                let dead = (*dead).clone();
                self.remove_dead_server(&spec, &dead)?;
                continue;
            }
            let joining = joining_servers(&set);
            if joining.len() > 1 {
                let labels: Vec<String> = joining.iter().map(|s| s.instance.label()).collect();
                return Err(Stop::unsafe_state(format!(
                    "new servers {} are all joining at once: roll changes one server at a time; delete the extra instances or wait for them",
                    labels.join(", ")
                )));
            }
            // A new server this run has not seen pass its gate (a previous run's surge, or
            // one whose gate an old server's death cut short) is gated, soak included.
            let ungated = joining.first().copied().or_else(|| {
                set.new_model()
                    .find(|s| !self.gated.contains(&instance_key(&s.instance)))
            });
            if let Some(next) = ungated {
                let next = next.instance.clone();
                self.gate_new_server(&spec, &set, next)?;
                continue;
            }
            if order.is_empty() {
                break;
            }
            let healthy = self.wait(
                "servers healthy",
                self.options.server_gate_timeout,
                |roll| {
                    let set = roll.read_servers()?;
                    if set.old().any(ServerInstance::dead) {
                        return Ok(Look::SetAside(
                            None,
                            "an old server died: it goes first".to_string(),
                        ));
                    }
                    Ok(match gates::servers_healthy(&set) {
                        Ok(()) => Look::Open(Some(set)),
                        Err(missing) => Look::Closed(missing),
                    })
                },
            )?;
            // A server died while waiting: the next turn deals with it first.
            let Some(set) = healthy else { continue };
            let wanted = spec.capacity as usize;
            if set.healthy_voters() <= wanted {
                self.surge_server(&spec, &set)?;
                continue;
            }
            let order = server_order(&set);
            let Some(victim) = order.first() else { break };
            let victim = (*victim).clone();
            if victim.leader()
                && self.options.transfer_leadership
                && self.move_leadership(&set, &victim)?
            {
                continue;
            }
            self.delete_server(&spec, &victim)?;
        }
        self.wait(
            "servers healthy",
            self.options.server_gate_timeout,
            |roll| {
                let set = roll.read_servers()?;
                Ok(match gates::servers_healthy(&set) {
                    Ok(()) => Look::Open(()),
                    Err(missing) => Look::Closed(missing),
                })
            },
        )?;
        self.events.emit(
            "note",
            format!(
                "servers: every instance of {} runs the latest model",
                spec.name
            ),
            json!({ "scale_set": spec.name }),
        );
        Ok(())
    }

    /// Step 4: one more server from the latest model.
    fn surge_server(&mut self, spec: &ScaleSet, set: &ServerSet) -> Result<(), Stop> {
        let count = set.instances.len() as u64;
        if count > u64::from(spec.capacity) {
            return Err(Stop::unsafe_state(format!(
                "scale set {} already has {count} instances for cluster_size {} but only {} healthy voters: roll will not add another server",
                spec.name,
                spec.capacity,
                set.healthy_voters()
            )));
        }
        self.events.emit(
            "surge",
            format!(
                "servers: surging {} from {count} to {} instances (a new server on the latest model)",
                spec.name,
                count + 1
            ),
            json!({ "scale_set": spec.name, "from": count, "to": count + 1 }),
        );
        azure::set_capacity(&self.arm, self.group(), &spec.name, count + 1)?;
        self.changed(format!(
            "scaled {} from {count} to {} instances",
            spec.name,
            count + 1
        ));
        Ok(())
    }

    /// Step 2: waits for a new server to be a healthy voter for the soak time; deletes it when
    /// it never gets there or runs a Nomad version the old servers cannot step to.
    fn gate_new_server(
        &mut self,
        spec: &ScaleSet,
        set: &ServerSet,
        instance: Instance,
    ) -> Result<(), Stop> {
        let old_versions: Vec<(String, Version)> = set
            .old()
            .filter_map(|s| {
                let v = s.agent.as_ref()?.version.as_deref()?;
                Some((s.instance.instance_id.clone(), Version::parse(v).ok()?))
            })
            .collect();
        let gate = format!("new server {}", instance.label());
        let soak = self.options.soak;
        let mut healthy_since = None;
        let result = self.wait(&gate, self.options.server_gate_timeout, |roll| {
            let set = roll.read_servers()?;
            if set.old().any(ServerInstance::dead) {
                // An old server died meanwhile: it is dealt with first, then this gate again.
                return Ok(Look::SetAside(
                    false,
                    "an old server died: it goes first, then this gate again".to_string(),
                ));
            }
            if let Some(version) = set
                .find(&instance.instance_id)
                .and_then(|s| s.agent.as_ref())
                .and_then(|a| a.version.clone())
            {
                roll.check_new_version("server", &instance, &version, &old_versions)?;
            }
            match gates::new_server(&set, &instance.instance_id) {
                Err(missing) => {
                    healthy_since = None;
                    Ok(Look::Closed(missing))
                }
                Ok(()) => {
                    let now = roll.hooks.now();
                    let since = *healthy_since.get_or_insert(now);
                    let held = now.saturating_sub(since);
                    if held >= soak {
                        Ok(Look::Open(true))
                    } else {
                        Ok(Look::Closed(format!(
                            "soaking: a healthy voter for {}s of {}s",
                            held.as_secs(),
                            soak.as_secs()
                        )))
                    }
                }
            }
        });
        match result {
            Ok(passed) => {
                if passed {
                    self.gated.push(instance_key(&instance));
                }
                Ok(())
            }
            Err(stop @ (Stop::Timeout { .. } | Stop::Unsafe { .. })) => {
                Err(self.discard_new_server(spec, &instance, stop))
            }
            Err(other) => Err(other),
        }
    }

    /// The new agent's version against every old one's (and `--nomad-version`), once per
    /// instance.
    pub(super) fn check_new_version(
        &mut self,
        role: &str,
        instance: &Instance,
        version: &str,
        old: &[(String, Version)],
    ) -> Result<(), Stop> {
        let key = instance_key(instance);
        if self.versions_checked.contains(&key) {
            return Ok(());
        }
        let new = Version::parse(version)
            .map_err(|e| Stop::unsafe_state(format!("the new {role} {}: {e}", instance.label())))?;
        if let Some(target) = &self.options.target_version {
            if new.precedence(target).is_ne() {
                return Err(Stop::unsafe_state(format!(
                    "the new {role} {} runs Nomad {new}, not the --nomad-version {target} given",
                    instance.label()
                )));
            }
        }
        let mut steps = Vec::new();
        for (id, from) in old {
            match supported_step(from, &new) {
                Ok(step) => steps.push(format!("{from} -> {new} ({step})")),
                Err(e) => {
                    return Err(Stop::unsafe_state(format!(
                        "the new {role} {} runs Nomad {new}; old instance {id} runs {from}: {e}",
                        instance.label()
                    )))
                }
            }
        }
        steps.sort();
        steps.dedup();
        self.versions_checked.push(key);
        self.events.emit(
            "version",
            format!(
                "the new {role} {} runs Nomad {new}: {}",
                instance.label(),
                if steps.is_empty() {
                    "no old version to compare".to_string()
                } else {
                    steps.join(", ")
                }
            ),
            json!({ "role": role, "instance": instance.instance_id, "version": new.to_string() }),
        );
        Ok(())
    }

    /// A new server that failed its gate goes again, so the cluster is as it was before the
    /// surge; the old servers stay untouched. It goes only when the state read back says it is
    /// a surge beyond `cluster_size` that never became a voter ([`gates::discardable_server`]):
    /// a server that did (a previous run's, say) stays, and the stop says why.
    fn discard_new_server(&mut self, spec: &ScaleSet, instance: &Instance, stop: Stop) -> Stop {
        let verdict = match self.read_servers() {
            Ok(set) => gates::discardable_server(&set, &instance.instance_id),
            Err(e) => Err(format!(
                "the servers could not be read back ({}), so whether it ever became a voter is unknown",
                e.reason()
            )),
        };
        if let Err(why) = verdict {
            self.events.emit(
                "keep",
                format!(
                    "servers: keeping the new instance {} although it did not pass its gate: {why}; nothing is deleted",
                    instance.label()
                ),
                json!({ "scale_set": spec.name, "instance": instance.instance_id, "reason": why }),
            );
            return stop.with_done(format!(
                "kept the new instance {}: {why}; nothing was deleted",
                instance.label()
            ));
        }
        self.events.emit(
            "delete",
            format!(
                "servers: deleting the new instance {} (it did not pass its gate and never became a voter); the old servers stay as they are",
                instance.label()
            ),
            json!({ "scale_set": spec.name, "instance": instance.instance_id, "reason": "gate failed" }),
        );
        if let Err(e) = azure::delete_instances(
            &self.arm,
            self.group(),
            &spec.name,
            std::slice::from_ref(&instance.instance_id),
        ) {
            return stop.with_done(format!(
                "deleting the new instance {} failed too: {e:#}; delete it by hand (az vmss delete-instances -g {} -n {} --instance-ids {})",
                instance.label(),
                self.group(),
                spec.name,
                instance.instance_id
            ));
        }
        self.changed(format!(
            "deleted the new instance {} of {} that never passed its gate",
            instance.label(),
            spec.name
        ));
        stop.with_done(format!(
            "deleted the new instance {} (a surge that never became a voter: capacity back to what it was)",
            instance.label()
        ))
    }

    /// Step 1: an old server whose agent is gone: delete its VM, remove its peer if Raft
    /// still lists it.
    fn remove_dead_server(&mut self, spec: &ScaleSet, dead: &ServerInstance) -> Result<(), Stop> {
        let status = dead
            .agent
            .as_ref()
            .map(|a| a.status.clone())
            .unwrap_or_else(|| "not a member".to_string());
        self.events.emit(
            "delete",
            format!(
                "servers: old instance {} is {status}: deleting it first (it serves nothing)",
                dead.instance.label()
            ),
            json!({ "scale_set": spec.name, "instance": dead.instance.instance_id, "reason": "dead", "member": status }),
        );
        azure::delete_instances(
            &self.arm,
            self.group(),
            &spec.name,
            std::slice::from_ref(&dead.instance.instance_id),
        )?;
        self.changed(format!(
            "deleted the dead old server {} of {}",
            dead.instance.label(),
            spec.name
        ));
        if let Some(agent) = &dead.agent {
            self.wait_left(agent.member.clone(), agent.raft_id.clone())?;
        }
        Ok(())
    }

    /// Step 5, the leader's turn: moves leadership to a new server first. Returns true when it
    /// moved (the caller reads the state again), false when the API cannot (pre-1.7 servers).
    fn move_leadership(&mut self, set: &ServerSet, leader: &ServerInstance) -> Result<bool, Stop> {
        let Some(target) = set
            .new_model()
            .filter(|s| s.healthy_voter())
            .max_by_key(|s| s.instance.order_key())
        else {
            return Err(Stop::unsafe_state(
                "the leader is next but no new server is a healthy voter to hand leadership to",
            ));
        };
        let Some(target_id) = target.agent.as_ref().and_then(|a| a.raft_id.clone()) else {
            return Err(Stop::unsafe_state(format!(
                "the new server {} has no Raft id in gossip",
                target.instance.label()
            )));
        };
        let label = target.instance.label();
        match self.nomad.transfer_leadership(&target_id)? {
            TransferOutcome::NotSupported => {
                self.events.emit(
                    "leadership",
                    "servers: this Nomad cannot transfer leadership (before 1.7): the leader's graceful leave will start an election",
                    json!({ "transferred": false }),
                );
                Ok(false)
            }
            TransferOutcome::AlreadyLeader => Ok(true),
            TransferOutcome::Transferred { .. } => {
                self.events.emit(
                    "leadership",
                    format!(
                        "servers: leadership transferred from {} to the new server {label}",
                        leader.instance.label()
                    ),
                    json!({ "from": leader.instance.instance_id, "to": target.instance.instance_id, "transferred": true }),
                );
                self.changed(format!("transferred leadership to {label}"));
                let target_instance = target.instance.instance_id.clone();
                self.wait(
                    &format!("leader {label}"),
                    self.options.server_gate_timeout,
                    |roll| {
                        let set = roll.read_servers()?;
                        Ok(match set.leader_instance() {
                            Some(l) if l.instance.instance_id == target_instance => Look::Open(()),
                            Some(l) if l.instance.current() => Look::Open(()),
                            Some(l) => Look::Closed(format!("{} still leads", l.instance.label())),
                            None => Look::Closed("no leader (election)".to_string()),
                        })
                    },
                )?;
                Ok(true)
            }
        }
    }

    /// Step 5 and 6: deletes an old live server and checks it left.
    fn delete_server(&mut self, spec: &ScaleSet, victim: &ServerInstance) -> Result<(), Stop> {
        let agent = victim
            .agent
            .clone()
            .ok_or_else(|| Stop::unsafe_state("an old server without an agent to delete"))?;
        self.events.emit(
            "delete",
            format!(
                "servers: deleting old instance {}, member {}{}; the terminate notification makes its agent leave Raft",
                victim.instance.label(),
                agent.member,
                if agent.leader { ", the leader" } else { "" }
            ),
            json!({ "scale_set": spec.name, "instance": victim.instance.instance_id, "member": agent.member, "leader": agent.leader, "reason": "old model" }),
        );
        azure::delete_instances(
            &self.arm,
            self.group(),
            &spec.name,
            std::slice::from_ref(&victim.instance.instance_id),
        )?;
        self.changed(format!(
            "deleted the old server {} of {}",
            victim.instance.label(),
            spec.name
        ));
        self.wait_left(agent.member, agent.raft_id)
    }

    /// Step 6: the member left gossip and Raft. A failed member still in Raft (its VM is gone
    /// and it did not leave) has its peer removed through the guarded call.
    fn wait_left(&mut self, member: String, raft_id: Option<String>) -> Result<(), Stop> {
        let gate = format!("server {member} left");
        let mut removed = false;
        self.wait(&gate, self.options.leave_timeout, |roll| {
            let facts = state::read_servers(&roll.nomad)?;
            let status = facts
                .members
                .iter()
                .find(|m| m.name == member)
                .map(|m| m.state());
            let Some(raft) = &facts.raft else {
                return Ok(Look::Closed("no leader to ask Raft (election)".to_string()));
            };
            let peer = raft.servers.iter().find(|p| {
                raft_id.as_deref() == Some(p.id.as_str()) || p.node == member
            });
            match (status, peer) {
                (Some(MemberStatus::Alive | MemberStatus::Leaving), _) => Ok(Look::Closed(
                    format!("still {} in gossip", status_word(status)),
                )),
                (Some(MemberStatus::Failed), None) => {
                    // Its VM is gone: gossip may forget it (force-leave is for failed members).
                    roll.nomad.force_leave_failed(&member, true)?;
                    roll.changed(format!("force-left the failed member {member} (pruned)"));
                    roll.events.emit(
                        "left",
                        format!(
                            "servers: {member} was failed and is out of Raft: force-left and pruned from gossip"
                        ),
                        json!({ "member": member, "status": "failed", "peer_removed": removed, "force_left": true }),
                    );
                    Ok(Look::Open(()))
                }
                (_, None) => {
                    roll.events.emit(
                        "left",
                        format!(
                            "servers: {member} left (gossip: {}, not in Raft)",
                            status_word(status)
                        ),
                        json!({ "member": member, "status": status_word(status), "peer_removed": removed }),
                    );
                    Ok(Look::Open(()))
                }
                (Some(MemberStatus::Left), Some(_)) => Ok(Look::Closed(
                    "left gossip; the leader is removing it from Raft".to_string(),
                )),
                (_, Some(peer)) if !removed => {
                    let id = peer.id.clone();
                    match roll.nomad.remove_dead_raft_peer(&id) {
                        Ok(()) => {}
                        Err(e) if e.is_not_a_peer() => {}
                        Err(e) => return Err(e.into()),
                    }
                    removed = true;
                    roll.events.emit(
                        "peer-removed",
                        format!(
                            "servers: {member} is {} but Raft still listed it: removed its peer {id}",
                            status_word(status)
                        ),
                        json!({ "member": member, "raft_id": id }),
                    );
                    roll.changed(format!("removed the dead Raft peer {id} ({member})"));
                    Ok(Look::Closed("its peer removal is taking effect".to_string()))
                }
                (_, Some(_)) => Ok(Look::Closed("still a Raft peer".to_string())),
            }
        })
    }
}

/// `<scale set>/<instance id>`: an instance, across scale sets.
pub(super) fn instance_key(instance: &Instance) -> String {
    format!("{}/{}", instance.scale_set, instance.instance_id)
}

fn status_word(status: Option<MemberStatus>) -> &'static str {
    match status {
        None => "gone",
        Some(MemberStatus::Alive) => "alive",
        Some(MemberStatus::Leaving) => "leaving",
        Some(MemberStatus::Left) => "left",
        Some(MemberStatus::Failed) => "failed",
        Some(_) => "unknown",
    }
}
