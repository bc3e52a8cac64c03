//! The simulated cluster's whole state and its step function. One [`Cluster::tick`] moves
//! virtual time forward by `SimConfig::tick` and runs, in order: scheduled actions, agent
//! lifecycles, the leader's member reconciliation, bootstrap, elections, log replication,
//! autopilot, and on the client side registration, heartbeats, allocations, the drainer and the
//! scheduler; then the observers see the new [`ClusterView`].
//!
//! Nothing here sleeps or reads the wall clock: the same calls give the same cluster.

use std::collections::BTreeMap;
use std::time::Duration;

use super::clock::SimTime;
use super::model::*;
use super::{Action, ClusterView, SimConfig, Trigger};

/// A scheduled or event-triggered action.
pub(crate) struct Pending {
    pub trigger: Trigger,
    pub action: Action,
}

pub(crate) type Observer = Box<dyn FnMut(&ClusterView) + Send>;

/// Everything the simulation knows.
pub struct Cluster {
    pub(crate) config: SimConfig,
    pub(crate) now: SimTime,
    /// Server agents by name, in creation order.
    pub(crate) servers: Vec<ServerAgent>,
    pub(crate) clients: Vec<ClientAgent>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) jobs: Vec<JobSpec>,
    pub(crate) allocs: Vec<Alloc>,
    /// The Raft configuration: (server id, voter), in join order. Empty before bootstrap.
    pub(crate) raft: Vec<(String, bool)>,
    pub(crate) raft_config_index: u64,
    /// The leader's server id.
    pub(crate) leader: Option<String>,
    pub(crate) leaderless_since: Option<SimTime>,
    pub(crate) term: u64,
    /// The leader's last log index.
    pub(crate) index: u64,
    write_credit: f64,
    pub(crate) nodes_index: u64,
    pub(crate) allocs_index: u64,
    /// When the current leader's autopilot started (stabilization is waived for 110% of the
    /// stabilization time after that, as raft-autopilot does).
    pub(crate) autopilot_started: Option<SimTime>,
    pub(crate) autopilot_config: Option<AutopilotConfig>,
    last_health_update: Option<SimTime>,
    last_autopilot_run: Option<SimTime>,
    /// Compatibility mode for hand-set clusters: no elections, no autopilot changes.
    pub(crate) frozen: bool,
    /// Faults armed for servers not yet created.
    pub(crate) next_servers_never_voters: usize,
    pub(crate) next_clients_never_start: usize,
    pub(crate) all_drains_stuck: bool,
    pub(crate) no_terminate_watcher: bool,
    /// Servers (by name) replication to which is stalled until then.
    pub(crate) stalls: BTreeMap<String, SimTime>,
    /// Actions applied so far.
    pub(crate) actions_applied: usize,
    pub(crate) pending: Vec<Pending>,
    pub(crate) journal: Vec<(SimTime, SimEvent)>,
    pub(crate) observers: Vec<Observer>,
    /// Scale set name -> role, for instances the ARM double reports.
    pub(crate) scale_sets: BTreeMap<String, Role>,
    /// The Nomad version new agents boot with.
    pub(crate) boot_version: String,
    pub(crate) unmatched_instances: Vec<String>,
    pub(crate) counter: u64,
}

/// The autopilot configuration as the leader stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutopilotConfig {
    pub cleanup_dead_servers: bool,
    pub last_contact_threshold: Duration,
    pub max_trailing_logs: u64,
    pub min_quorum: u64,
    pub server_stabilization_time: Duration,
    pub enable_redundancy_zones: bool,
    pub disable_upgrade_migration: bool,
    pub enable_custom_upgrades: bool,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AutopilotConfig {
    /// The configuration a new cluster starts with, stored at Raft index `index`.
    pub(crate) fn initial(settings: &super::AutopilotSettings, index: u64) -> Self {
        Self {
            cleanup_dead_servers: settings.cleanup_dead_servers,
            last_contact_threshold: settings.last_contact_threshold,
            max_trailing_logs: settings.max_trailing_logs,
            min_quorum: settings.min_quorum,
            server_stabilization_time: settings.server_stabilization_time,
            enable_redundancy_zones: false,
            disable_upgrade_migration: false,
            enable_custom_upgrades: false,
            create_index: index,
            modify_index: index,
        }
    }
}

impl Cluster {
    pub(crate) fn new(config: SimConfig) -> Self {
        let boot_version = config.version.clone();
        Self {
            config,
            now: SimTime(0),
            servers: Vec::new(),
            clients: Vec::new(),
            nodes: Vec::new(),
            jobs: Vec::new(),
            allocs: Vec::new(),
            raft: Vec::new(),
            raft_config_index: 0,
            leader: None,
            leaderless_since: Some(SimTime(0)),
            term: 0,
            index: 0,
            write_credit: 0.0,
            nodes_index: 0,
            allocs_index: 0,
            autopilot_started: None,
            autopilot_config: None,
            last_health_update: None,
            last_autopilot_run: None,
            frozen: false,
            next_servers_never_voters: 0,
            next_clients_never_start: 0,
            all_drains_stuck: false,
            no_terminate_watcher: false,
            stalls: BTreeMap::new(),
            actions_applied: 0,
            pending: Vec::new(),
            journal: Vec::new(),
            observers: Vec::new(),
            scale_sets: BTreeMap::new(),
            boot_version,
            unmatched_instances: Vec::new(),
            counter: 0,
        }
    }

    pub(crate) fn record(&mut self, event: SimEvent) {
        tracing::debug!(target: "nomad_sim", at = self.now.millis(), ?event);
        self.journal.push((self.now, event));
    }

    /// A fresh id for an object of `kind` (deterministic: a counter, not randomness).
    pub(crate) fn next_id(&mut self, kind: &str) -> String {
        self.counter += 1;
        uuid(kind, &self.counter.to_string())
    }

    /// Appends one entry to the leader's log and returns its index. Callers check that there
    /// is a leader first: without one nothing can be written.
    pub(crate) fn write(&mut self) -> u64 {
        debug_assert!(self.leader.is_some(), "a write without a leader");
        self.index += 1;
        self.index
    }

    /// Runs the simulation until `until` (whole ticks).
    pub(crate) fn run_until(&mut self, until: SimTime) {
        while self.now < until {
            self.tick();
        }
    }

    /// One step of `config.tick`.
    pub(crate) fn tick(&mut self) {
        self.now = self.now.plus(self.config.tick);
        if self.frozen {
            return;
        }
        self.fire_pending();
        self.server_lifecycles();
        self.client_lifecycles();
        self.bootstrap_raft();
        self.reconcile_members();
        self.elect();
        self.replicate();
        self.autopilot();
        self.nodes_step();
        self.drainer_step();
        self.schedule_step();
        if !self.observers.is_empty() {
            let view = self.view();
            let mut observers = std::mem::take(&mut self.observers);
            for observer in &mut observers {
                observer(&view);
            }
            self.observers = observers;
        }
    }

    fn fire_pending(&mut self) {
        let mut due = Vec::new();
        let mut keep = Vec::new();
        for pending in std::mem::take(&mut self.pending) {
            let fire = match &pending.trigger {
                Trigger::At(at) => *at <= self.now,
                Trigger::Event(matches) => self.journal.iter().any(|(_, e)| matches(e)),
            };
            if fire {
                due.push(pending.action);
            } else {
                keep.push(pending);
            }
        }
        self.pending = keep;
        for action in due {
            self.apply(action);
        }
    }

    pub(crate) fn apply(&mut self, action: Action) {
        self.actions_applied += 1;
        match action {
            Action::KillLeader => {
                if let Some(name) = self.leader_name() {
                    self.vanish(&name);
                }
            }
            Action::Kill(name) => self.vanish(&name),
            Action::Terminate(name) => self.terminate(&name),
            Action::CancelDrain(name) => {
                if let Some(id) = self
                    .nodes
                    .iter()
                    .find(|n| n.name == name)
                    .map(|n| n.id.clone())
                {
                    let _ = self.set_drain(&id, None, false, Default::default(), "");
                }
            }
            Action::MarkEligible(name) => {
                if let Some(id) = self
                    .nodes
                    .iter()
                    .find(|n| n.name == name)
                    .map(|n| n.id.clone())
                {
                    let _ = self.set_eligibility(&id, true);
                }
            }
            Action::StallReplication {
                server,
                after,
                lasting,
            } => self.stall(server, after, lasting),
        }
    }

    /// [`Action::StallReplication`]: names the server now, stalls it `after` from now.
    fn stall(&mut self, server: Option<String>, after: Duration, lasting: Duration) {
        let Some(name) = server.or_else(|| {
            self.servers
                .iter()
                .max_by_key(|s| s.created_at)
                .map(|s| s.name.clone())
        }) else {
            return;
        };
        if !after.is_zero() {
            // Later: the same stall, due then (it counts as one action, not two).
            self.actions_applied -= 1;
            self.pending.push(Pending {
                trigger: Trigger::At(self.now.plus(after)),
                action: Action::StallReplication {
                    server: Some(name),
                    after: Duration::ZERO,
                    lasting,
                },
            });
            return;
        }
        if self.servers.iter().any(|s| s.name == name) {
            self.stalls.insert(name.clone(), self.now.plus(lasting));
            self.record(SimEvent::ReplicationStalled { name });
        }
    }

    /// The agent named `name` disappears without leaving (its VM is gone).
    pub(crate) fn vanish(&mut self, name: &str) {
        let now = self.now;
        if let Some(server) = self.servers.iter_mut().find(|s| s.name == name) {
            if matches!(
                server.life,
                ServerLife::Running | ServerLife::Booting { .. } | ServerLife::Leaving { .. }
            ) {
                server.life = ServerLife::Vanished { at: now };
                let id = server.id.clone();
                if self.leader.as_deref() == Some(id.as_str()) {
                    self.lose_leader("the leader vanished");
                }
            }
        }
        if let Some(client) = self.clients.iter_mut().find(|c| c.name == name) {
            if client.life != ClientLife::Stopped {
                client.life = ClientLife::Vanished;
            }
        }
    }

    /// The agent named `name` got its terminate notification: servers leave Raft and the
    /// gossip pool, clients drain themselves within `client_shutdown_deadline`.
    pub(crate) fn terminate(&mut self, name: &str) {
        let now = self.now;
        let leave_time = self.config.leave_time;
        let mut leader_left = false;
        if let Some(server) = self.servers.iter_mut().find(|s| s.name == name) {
            match server.life {
                ServerLife::Running => {
                    server.life = ServerLife::Leaving {
                        until: now.plus(leave_time),
                    };
                    leader_left = self.leader.as_deref() == Some(server.id.as_str());
                }
                ServerLife::Booting { .. } => server.life = ServerLife::Left,
                _ => {}
            }
        }
        if leader_left {
            // nomad/server.go Leave(): a leader first removes itself from the Raft
            // configuration, then leaves; the others elect a new leader.
            let id = self.leader.clone().unwrap_or_default();
            if self.raft.len() > 1 {
                self.raft.retain(|(peer, _)| *peer != id);
                self.index += 1;
                self.raft_config_index = self.index;
                self.record(SimEvent::PeerRemoved {
                    name: name.to_string(),
                    why: "the leader left gracefully".to_string(),
                });
            }
            self.lose_leader("the leader left gracefully");
        }
        let deadline = now.plus(self.config.client_shutdown_deadline);
        if let Some(client) = self.clients.iter_mut().find(|c| c.name == name) {
            match client.life {
                ClientLife::Running => client.life = ClientLife::ShuttingDown { deadline },
                ClientLife::Booting { .. } => client.life = ClientLife::Stopped,
                _ => {}
            }
        }
    }

    pub(crate) fn lose_leader(&mut self, why: &str) {
        if let Some(name) = self.leader_name() {
            self.record(SimEvent::LeaderLost {
                name,
                why: why.to_string(),
            });
        }
        self.leader = None;
        self.leaderless_since = Some(self.now);
        self.autopilot_started = None;
    }

    pub(crate) fn leader_name(&self) -> Option<String> {
        let id = self.leader.as_deref()?;
        self.servers
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.name.clone())
    }

    pub(crate) fn server_by_id(&self, id: &str) -> Option<&ServerAgent> {
        self.servers.iter().find(|s| s.id == id)
    }

    pub(crate) fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Voters in the Raft configuration.
    pub(crate) fn voter_count(&self) -> usize {
        self.raft.iter().filter(|(_, voter)| *voter).count()
    }

    pub(crate) fn interval_due(last: Option<SimTime>, now: SimTime, every: Duration) -> bool {
        last.is_none_or(|t| now.since(t) >= every)
    }

    pub(crate) fn health_due(&mut self) -> bool {
        let due = Self::interval_due(
            self.last_health_update,
            self.now,
            self.config.server_health_interval,
        );
        if due {
            self.last_health_update = Some(self.now);
        }
        due
    }

    pub(crate) fn autopilot_due(&mut self) -> bool {
        let due = Self::interval_due(
            self.last_autopilot_run,
            self.now,
            self.config.autopilot_interval,
        );
        if due {
            self.last_autopilot_run = Some(self.now);
        }
        due
    }

    /// Background writes on the leader (periodic evaluations, heartbeats' status updates and
    /// the like): `writes_per_second`, accumulated across ticks.
    pub(crate) fn background_writes(&mut self) {
        if self.leader.is_none() {
            return;
        }
        self.write_credit += self.config.writes_per_second as f64 * self.config.tick.as_secs_f64();
        while self.write_credit >= 1.0 {
            self.write_credit -= 1.0;
            self.index += 1;
        }
    }
}
