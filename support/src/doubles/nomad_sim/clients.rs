//! The client side: nodes that register and heartbeat, the scheduler that keeps jobs placed,
//! and the drainer.
//!
//! Facts modelled (`../shared/nomad-api/endpoints.json` notes, HashiCorp's drain docs):
//! - A drain makes the node ineligible; service allocations are marked for migration and
//!   replaced elsewhere; batch allocations are left to finish and stopped only at the deadline;
//!   system allocations go last unless `IgnoreSystemJobs`. `Deadline` > 0 forces what is left
//!   at `ForceDeadline`; 0 never forces; < 0 forces at once.
//! - A finished drain clears `DrainStrategy`, sets `LastDrain.Status` "complete" and leaves the
//!   node ineligible. Cancelling (DrainSpec null) sets "canceled"; `MarkEligible` then makes it
//!   eligible.
//! - A node that stops heartbeating is marked down after the heartbeat TTL and grace; its
//!   allocations are lost and the scheduler replaces the service and batch ones.
//! - Writes need a leader: without one nothing registers, drains or moves.

use std::collections::BTreeMap;

use super::cluster::Cluster;
use super::model::*;

/// Why a node operation was refused (the double turns these into Nomad's 500 texts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOpError {
    NoLeader,
    NodeNotFound,
    EligibleWhileDraining,
}

/// A write's result: the node's new ModifyIndex, the evaluations created, and the index.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeWrite {
    pub node_modify_index: u64,
    pub eval_ids: Vec<String>,
    pub eval_create_index: u64,
    pub index: u64,
}

impl Cluster {
    pub(crate) fn client_lifecycles(&mut self) {
        let now = self.now;
        let mut started = Vec::new();
        let mut stopped = Vec::new();
        for client in &mut self.clients {
            match client.life {
                ClientLife::Booting { ready_at } if ready_at <= now => {
                    client.life = ClientLife::Running;
                    started.push(client.name.clone());
                }
                ClientLife::ShuttingDown { deadline } => {
                    // drain_on_shutdown: the agent exits once its node holds nothing but
                    // system allocations and no drain is running, or at the deadline.
                    let node = self.nodes.iter().find(|n| n.id == client.node_id);
                    let done = node.is_none_or(|n| {
                        n.drain.is_none()
                            && !self.allocs.iter().any(|a| {
                                a.node_id == n.id && a.is_live() && a.kind != JobKind::System
                            })
                    });
                    if done || deadline <= now {
                        client.life = ClientLife::Stopped;
                        stopped.push(client.name.clone());
                    }
                }
                _ => {}
            }
        }
        for name in started {
            self.record(SimEvent::AgentStarted {
                name,
                role: Role::Client,
            });
        }
        for name in stopped {
            self.record(SimEvent::AgentStopped { name });
        }
    }

    fn node_mut(&mut self, id: &str) -> Option<&mut Node> {
        self.nodes.iter_mut().find(|n| n.id == id)
    }

    fn node_event(&mut self, node_id: &str, subsystem: &str, message: &str) {
        let now = self.now;
        let index = self.index;
        if let Some(node) = self.node_mut(node_id) {
            node.events.push(NodeEvent {
                message: message.to_string(),
                subsystem: subsystem.to_string(),
                at: now,
                create_index: index,
            });
            let excess = node.events.len().saturating_sub(10);
            node.events.drain(..excess);
        }
    }

    /// Marks a node changed at a new index.
    fn touch_node(&mut self, node_id: &str) -> u64 {
        let index = self.write();
        self.nodes_index = index;
        if let Some(node) = self.node_mut(node_id) {
            node.modify_index = index;
        }
        index
    }

    /// A client agent's node, stored with this status ("Node registered").
    pub(crate) fn register_node(&mut self, client: &ClientAgent, status: NodeStatus) {
        let now = self.now;
        let index = self.write();
        self.nodes_index = index;
        self.nodes.push(Node {
            id: client.node_id.clone(),
            name: client.name.clone(),
            ip: client.ip.clone(),
            datacenter: self.config.datacenter.clone(),
            version: client.version.clone(),
            computer_name: client.computer_name.clone(),
            node_class: String::new(),
            status,
            eligible: true,
            drain: None,
            last_drain: None,
            events: Vec::new(),
            status_updated_at: now,
            last_heartbeat: now,
            create_index: index,
            modify_index: index,
            drain_stuck: false,
        });
        self.node_event(&client.node_id, "Cluster", "Node registered");
    }

    /// Registration, readiness, heartbeats and down detection.
    pub(crate) fn nodes_step(&mut self) {
        if self.leader.is_none() {
            return;
        }
        let now = self.now;
        let clients: Vec<ClientAgent> = self.clients.clone();
        for client in clients {
            let alive = matches!(
                client.life,
                ClientLife::Running | ClientLife::ShuttingDown { .. }
            );
            let known = self.nodes.iter().any(|n| n.id == client.node_id);
            if alive && !known {
                self.register_node(&client, NodeStatus::Initializing);
                self.record(SimEvent::NodeRegistered {
                    name: client.name.clone(),
                });
                continue;
            }
            let Some(node) = self.nodes.iter().find(|n| n.id == client.node_id) else {
                continue;
            };
            let (status, registered_at, last_heartbeat) =
                (node.status, node.status_updated_at, node.last_heartbeat);
            if alive {
                if let Some(node) = self.node_mut(&client.node_id) {
                    node.last_heartbeat = now;
                }
                if let ClientLife::ShuttingDown { deadline } = client.life {
                    let draining = self
                        .node(&client.node_id)
                        .is_some_and(|n| n.drain.is_some());
                    let busy = self.allocs.iter().any(|a| {
                        a.node_id == client.node_id && a.is_live() && a.kind != JobKind::System
                    });
                    if busy && !draining {
                        let left = deadline.since(now).as_nanos().max(1) as i64;
                        let _ = self.set_drain(
                            &client.node_id,
                            Some((left, false)),
                            false,
                            BTreeMap::from([(
                                "message".to_string(),
                                "drain on shutdown".to_string(),
                            )]),
                            "",
                        );
                    }
                }
                let ready_due = status == NodeStatus::Initializing
                    && now.since(registered_at) >= self.config.client_ready_delay;
                if ready_due || status == NodeStatus::Down {
                    self.set_node_status(&client.node_id, NodeStatus::Ready);
                    self.record(SimEvent::NodeReady {
                        name: client.name.clone(),
                    });
                }
            } else if status != NodeStatus::Down
                && now.since(last_heartbeat) >= self.config.heartbeat_grace
            {
                self.set_node_status(&client.node_id, NodeStatus::Down);
                self.node_event(&client.node_id, "Cluster", "Node heartbeat missed");
                self.record(SimEvent::NodeDown {
                    name: client.name.clone(),
                });
                self.lose_allocs(&client.node_id);
            }
        }
    }

    fn set_node_status(&mut self, node_id: &str, status: NodeStatus) {
        let now = self.now;
        self.touch_node(node_id);
        if let Some(node) = self.node_mut(node_id) {
            node.status = status;
            node.status_updated_at = now;
        }
    }

    fn lose_allocs(&mut self, node_id: &str) {
        let ids: Vec<String> = self
            .allocs
            .iter()
            .filter(|a| a.node_id == node_id && a.is_live())
            .map(|a| a.id.clone())
            .collect();
        for id in ids {
            self.finish_alloc(
                &id,
                ClientStatus::Lost,
                "alloc is lost since its node is down",
            );
        }
    }

    /// Stops an allocation: desired stop, client status `status`.
    fn finish_alloc(&mut self, alloc_id: &str, status: ClientStatus, why: &str) {
        let index = self.write();
        self.allocs_index = index;
        let now = self.now;
        let Some(alloc) = self.allocs.iter_mut().find(|a| a.id == alloc_id) else {
            return;
        };
        alloc.desired = DesiredStatus::Stop;
        alloc.desired_description = why.to_string();
        alloc.client = status;
        alloc.client_description = match status {
            ClientStatus::Lost => "alloc is lost since its node is down".to_string(),
            _ => "All tasks have completed".to_string(),
        };
        alloc.modify_index = index;
        alloc.modify_time = now;
        let (alloc, node) = (alloc.name(), alloc.node_name.clone());
        let event = if status == ClientStatus::Lost {
            SimEvent::AllocLost { alloc, node }
        } else {
            SimEvent::AllocStopped {
                alloc,
                node,
                why: why.to_string(),
            }
        };
        self.record(event);
    }

    /// The drainer: migrations, deadlines, completion.
    pub(crate) fn drainer_step(&mut self) {
        if self.leader.is_none() {
            return;
        }
        let now = self.now;
        let draining: Vec<(String, String, Drain, bool)> = self
            .nodes
            .iter()
            .filter_map(|n| {
                n.drain
                    .clone()
                    .map(|d| (n.id.clone(), n.name.clone(), d, n.drain_stuck))
            })
            .collect();
        for (node_id, node_name, drain, stuck) in draining {
            let stuck = stuck || self.all_drains_stuck;
            let forced = drain.deadline_ns < 0 || drain.force_deadline.is_some_and(|t| t <= now);
            let live: Vec<Alloc> = self
                .allocs
                .iter()
                .filter(|a| a.node_id == node_id && a.is_live())
                .cloned()
                .collect();
            if forced {
                if drain.deadline_ns > 0 {
                    self.record(SimEvent::DrainDeadlineReached {
                        node: node_name.clone(),
                    });
                }
                for alloc in &live {
                    if alloc.kind == JobKind::System && drain.ignore_system_jobs {
                        continue;
                    }
                    self.finish_alloc(
                        &alloc.id,
                        ClientStatus::Complete,
                        "alloc is being migrated: node drain deadline reached",
                    );
                }
            } else {
                for alloc in live.iter().filter(|a| a.kind == JobKind::Service) {
                    match alloc.migrate_at {
                        None if !stuck => {
                            let at = now.plus(self.config.migrate_time);
                            let index = self.write();
                            self.allocs_index = index;
                            if let Some(a) = self.allocs.iter_mut().find(|a| a.id == alloc.id) {
                                a.migrate = true;
                                a.migrate_at = Some(at);
                                a.modify_index = index;
                                a.modify_time = now;
                            }
                        }
                        Some(at) if at <= now && !stuck => self.finish_alloc(
                            &alloc.id,
                            ClientStatus::Complete,
                            "alloc is being migrated",
                        ),
                        _ => {}
                    }
                }
                let others_left = self
                    .allocs
                    .iter()
                    .any(|a| a.node_id == node_id && a.is_live() && a.kind != JobKind::System);
                if !others_left && !drain.ignore_system_jobs {
                    let system: Vec<String> = live
                        .iter()
                        .filter(|a| a.kind == JobKind::System)
                        .map(|a| a.id.clone())
                        .collect();
                    for id in system {
                        self.finish_alloc(
                            &id,
                            ClientStatus::Complete,
                            "alloc is being migrated: system allocation drained last",
                        );
                    }
                }
            }
            let remaining = self.allocs.iter().any(|a| {
                a.node_id == node_id
                    && a.is_live()
                    && !(a.kind == JobKind::System && drain.ignore_system_jobs)
            });
            if !remaining {
                self.touch_node(&node_id);
                if let Some(node) = self.node_mut(&node_id) {
                    node.drain = None;
                    if let Some(last) = node.last_drain.as_mut() {
                        last.status = DrainStatus::Complete;
                        last.updated_at = now;
                    }
                }
                self.node_event(&node_id, "Drain", "Node drain complete");
                self.record(SimEvent::DrainComplete { node: node_name });
            }
        }
    }

    /// The scheduler: pending allocations start, batch ones finish, missing ones are placed on
    /// ready, eligible, non-draining nodes (the least loaded first, then by name).
    pub(crate) fn schedule_step(&mut self) {
        if self.leader.is_none() {
            return;
        }
        let now = self.now;
        let start_time = self.config.alloc_start_time;
        let mut changes = Vec::new();
        for alloc in &self.allocs {
            match alloc.client {
                ClientStatus::Pending if now.since(alloc.create_time) >= start_time => {
                    changes.push((alloc.id.clone(), ClientStatus::Running))
                }
                ClientStatus::Running => {
                    if let (Some(started), Some(runs)) = (alloc.started_at, alloc.runs_for) {
                        if now.since(started) >= runs {
                            changes.push((alloc.id.clone(), ClientStatus::Complete));
                        }
                    }
                }
                _ => {}
            }
        }
        for (id, status) in changes {
            if status == ClientStatus::Complete {
                self.finish_alloc(&id, status, "batch allocation finished");
                continue;
            }
            let index = self.write();
            self.allocs_index = index;
            if let Some(alloc) = self.allocs.iter_mut().find(|a| a.id == id) {
                alloc.client = status;
                alloc.client_description = "Tasks are running".to_string();
                alloc.started_at = Some(now);
                alloc.modify_index = index;
                alloc.modify_time = now;
            }
        }
        for job in self.jobs.clone() {
            match job.kind {
                JobKind::System => self.place_system(&job),
                _ => self.place_counted(&job),
            }
        }
    }

    fn placeable_nodes(&self) -> Vec<(String, String)> {
        let mut nodes: Vec<(usize, String, String)> = self
            .nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Ready && n.eligible && n.drain.is_none())
            .map(|n| {
                let load = self
                    .allocs
                    .iter()
                    .filter(|a| a.node_id == n.id && a.is_live())
                    .count();
                (load, n.name.clone(), n.id.clone())
            })
            .collect();
        nodes.sort();
        nodes.into_iter().map(|(_, name, id)| (id, name)).collect()
    }

    fn place_counted(&mut self, job: &JobSpec) {
        for slot in 0..job.count {
            let mine = |a: &&Alloc| a.job_id == job.id && a.slot == slot;
            let satisfied = self.allocs.iter().filter(mine).any(|a| {
                a.is_live()
                    || (job.kind == JobKind::Batch
                        && a.client == ClientStatus::Complete
                        && a.desired_description == "batch allocation finished")
            });
            if satisfied {
                continue;
            }
            let Some((node_id, node_name)) = self.placeable_nodes().into_iter().next() else {
                return;
            };
            let previous = self
                .allocs
                .iter()
                .rev()
                .filter(mine)
                .find(|a| a.next_allocation.is_none())
                .map(|a| a.id.clone());
            self.place(job, slot, &node_id, &node_name, previous);
        }
    }

    fn place_system(&mut self, job: &JobSpec) {
        for (node_id, node_name) in self.placeable_nodes() {
            let has = self
                .allocs
                .iter()
                .any(|a| a.job_id == job.id && a.node_id == node_id && a.is_live());
            if !has {
                self.place(job, 0, &node_id, &node_name, None);
            }
        }
    }

    fn place(
        &mut self,
        job: &JobSpec,
        slot: u32,
        node_id: &str,
        node_name: &str,
        previous: Option<String>,
    ) {
        let id = self.next_id("alloc");
        let eval_id = self.next_id("eval");
        let index = self.write();
        self.allocs_index = index;
        let now = self.now;
        if let Some(prev) = &previous {
            if let Some(p) = self.allocs.iter_mut().find(|a| a.id == *prev) {
                p.next_allocation = Some(id.clone());
            }
        }
        let alloc = Alloc {
            id: id.clone(),
            eval_id,
            job_id: job.id.clone(),
            kind: job.kind,
            namespace: job.namespace.clone(),
            group: job.group.clone(),
            slot,
            node_id: node_id.to_string(),
            node_name: node_name.to_string(),
            desired: DesiredStatus::Run,
            desired_description: String::new(),
            client: ClientStatus::Pending,
            client_description: String::new(),
            migrate: false,
            migrate_at: None,
            previous_allocation: previous,
            next_allocation: None,
            started_at: None,
            runs_for: job.runs_for,
            create_index: index,
            modify_index: index,
            create_time: now,
            modify_time: now,
        };
        let name = alloc.name();
        self.allocs.push(alloc);
        self.record(SimEvent::AllocPlaced {
            alloc: name,
            node: node_name.to_string(),
        });
    }

    /// `POST /v1/node/:id/drain`: `Some((deadline_ns, ignore_system_jobs))` starts or updates a
    /// drain, `None` cancels it (and with `mark_eligible` makes the node eligible).
    pub(crate) fn set_drain(
        &mut self,
        node_id: &str,
        spec: Option<(i64, bool)>,
        mark_eligible: bool,
        meta: BTreeMap<String, String>,
        accessor_id: &str,
    ) -> Result<NodeWrite, NodeOpError> {
        if self.leader.is_none() {
            return Err(NodeOpError::NoLeader);
        }
        let Some(node) = self.node(node_id).cloned() else {
            return Err(NodeOpError::NodeNotFound);
        };
        let now = self.now;
        let index = self.touch_node(node_id);
        let mut write = NodeWrite {
            node_modify_index: index,
            index,
            ..NodeWrite::default()
        };
        match spec {
            Some((deadline_ns, ignore_system_jobs)) => {
                let started_at = node.drain.as_ref().map(|d| d.started_at).unwrap_or(now);
                let force_deadline = (deadline_ns > 0)
                    .then(|| now.plus(std::time::Duration::from_nanos(deadline_ns as u64)));
                let node_mut = self.node_mut(node_id).expect("the node");
                node_mut.drain = Some(Drain {
                    deadline_ns,
                    ignore_system_jobs,
                    force_deadline,
                    started_at,
                });
                node_mut.eligible = false;
                node_mut.last_drain = Some(LastDrain {
                    started_at,
                    updated_at: now,
                    status: DrainStatus::Draining,
                    accessor_id: accessor_id.to_string(),
                    meta,
                });
                self.node_event(node_id, "Drain", "Node drain strategy set");
                self.record(SimEvent::DrainStarted {
                    node: node.name,
                    deadline_ns,
                });
            }
            None => {
                let was_draining = node.drain.is_some();
                let node_mut = self.node_mut(node_id).expect("the node");
                node_mut.drain = None;
                if was_draining {
                    if let Some(last) = node_mut.last_drain.as_mut() {
                        last.status = DrainStatus::Canceled;
                        last.updated_at = now;
                    }
                }
                if mark_eligible {
                    node_mut.eligible = true;
                    write.eval_ids = vec![self.next_id("eval")];
                    write.eval_create_index = index;
                }
                self.node_event(node_id, "Drain", "Node drain disabled");
                // Migrations not yet carried out are called off.
                for alloc in self.allocs.iter_mut().filter(|a| a.node_id == node_id) {
                    if alloc.is_live() {
                        alloc.migrate = false;
                        alloc.migrate_at = None;
                    }
                }
                if was_draining {
                    self.record(SimEvent::DrainCanceled { node: node.name });
                }
            }
        }
        Ok(write)
    }

    /// `POST /v1/node/:id/eligibility`. A request that changes nothing writes nothing and
    /// answers all zeros.
    pub(crate) fn set_eligibility(
        &mut self,
        node_id: &str,
        eligible: bool,
    ) -> Result<NodeWrite, NodeOpError> {
        if self.leader.is_none() {
            return Err(NodeOpError::NoLeader);
        }
        let Some(node) = self.node(node_id).cloned() else {
            return Err(NodeOpError::NodeNotFound);
        };
        if eligible && node.drain.is_some() {
            return Err(NodeOpError::EligibleWhileDraining);
        }
        if node.eligible == eligible {
            return Ok(NodeWrite::default());
        }
        let index = self.touch_node(node_id);
        self.node_mut(node_id).expect("the node").eligible = eligible;
        self.node_event(
            node_id,
            "Cluster",
            if eligible {
                "Node marked as eligible for scheduling"
            } else {
                "Node marked as ineligible for scheduling"
            },
        );
        let mut write = NodeWrite {
            node_modify_index: index,
            index,
            ..NodeWrite::default()
        };
        if eligible {
            write.eval_ids = vec![self.next_id("eval")];
            write.eval_create_index = index;
        }
        Ok(write)
    }
}
