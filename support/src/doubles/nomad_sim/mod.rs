//! A simulated Nomad cluster in virtual time, behind the Nomad API double
//! ([`super::nomad_api`]) and driven by the ARM double through [`InstanceEvents`].
//!
//! Servers boot into agents, join Raft as non-voters and are promoted by autopilot after the
//! stabilization time; a leader replicates a log that followers follow; the leader going makes
//! the others elect a new one when a quorum of voters is left; autopilot reports health and
//! failure tolerance as raft-autopilot computes them and cleans up dead servers. Clients
//! register nodes that hold allocations; drains migrate them with deadline semantics;
//! terminated agents leave gracefully (servers leave Raft, clients drain themselves), vanished
//! ones become failed members and down nodes. See `servers.rs` and `clients.rs` for the facts
//! and their sources.
//!
//! Time is virtual: nothing sleeps. It moves when a test calls [`Simulation::advance`] (or
//! [`Simulation::run_until`]), and by [`SimConfig::advance_per_request`] on every request the API
//! double answers, so a client polling the double sees the cluster move. Blocking queries and
//! the 5 s wait for a leader also pass in virtual time.
//!
//! ```no_run
//! use std::time::Duration;
//! use support::doubles::nomad_sim::{JobSpec, Role, SimConfig, Simulation};
//!
//! let sim = Simulation::new(SimConfig::default());
//! sim.map_scale_set("nomad-servers", Role::Server);
//! sim.map_scale_set("nomad-clients", Role::Client);
//! // A cluster that has been up for a while: 3 voters with a leader, 2 ready clients.
//! sim.start_running(&["s0", "s1", "s2"], &["c0", "c1"]);
//! sim.add_job(JobSpec::service("web", 4));
//! sim.advance(Duration::from_secs(5));
//! assert!(sim.view().leader.is_some());
//! ```

mod clients;
mod clock;
mod cluster;
mod model;
mod servers;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use clients::{NodeOpError, NodeWrite};
pub use clock::{civil, go_duration, parse_go_duration, SimTime, EPOCH_UNIX_SECONDS};
pub use cluster::{AutopilotConfig, Cluster};
pub use model::{
    uuid, Alloc, ClientAgent, ClientLife, ClientStatus, DesiredStatus, Drain, DrainStatus, JobKind,
    JobSpec, LastDrain, MemberStatus, Node, NodeEvent, NodeStatus, Role, ServerAgent, ServerLife,
    SimEvent, HTTP_PORT, RPC_PORT, SERF_PORT,
};
pub use servers::{ServerHealthView, ServerOpError};

use super::instance_events::{InstanceEvents, InstanceInfo};

/// Autopilot's settings at bootstrap (Nomad's defaults: REFERENCE.md, nomad/config.go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutopilotSettings {
    pub cleanup_dead_servers: bool,
    pub last_contact_threshold: Duration,
    pub max_trailing_logs: u64,
    pub min_quorum: u64,
    pub server_stabilization_time: Duration,
}

impl Default for AutopilotSettings {
    fn default() -> Self {
        Self {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time: Duration::from_secs(10),
        }
    }
}

/// How the simulated cluster behaves. Every duration is virtual time.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub region: String,
    pub datacenter: String,
    /// The Nomad version agents run (see [`Simulation::set_boot_version`] for new ones).
    pub version: String,
    /// Servers needed before Raft bootstraps (`bootstrap_expect`).
    pub bootstrap_expect: usize,
    /// One simulation step.
    pub tick: Duration,
    /// From instance creation to a running agent (VM boot, cloud-init, run-nomad).
    pub boot_delay: Duration,
    /// From node registration to `ready` (fingerprinting).
    pub client_ready_delay: Duration,
    /// From losing the leader to electing a new one (Raft heartbeat and election timeouts).
    pub election_timeout: Duration,
    /// From a vanished agent to its gossip status `failed`.
    pub failure_detection: Duration,
    /// How long a terminated server takes to leave.
    pub leave_time: Duration,
    /// How long a new server takes to install the leader's snapshot and catch up.
    pub catch_up_time: Duration,
    /// Background Raft writes per second on the leader.
    pub writes_per_second: u64,
    /// From a client's last heartbeat to its node `down` (heartbeat TTL plus grace).
    pub heartbeat_grace: Duration,
    /// From placement to `running`.
    pub alloc_start_time: Duration,
    /// From a drain marking a service allocation to its replacement taking over.
    pub migrate_time: Duration,
    /// drain_on_shutdown deadline of a terminated client.
    pub client_shutdown_deadline: Duration,
    /// raft-autopilot's update interval (Nomad: 2 s) and reconcile interval (Nomad: 10 s).
    pub server_health_interval: Duration,
    pub autopilot_interval: Duration,
    /// How long a request needing the leader waits for one (Nomad's RPCHoldTimeout, 5 s).
    pub rpc_hold_timeout: Duration,
    pub autopilot: AutopilotSettings,
    /// Virtual time that passes with every request the API double answers (0: only the test
    /// moves time).
    pub advance_per_request: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            region: "global".to_string(),
            datacenter: "dc1".to_string(),
            version: "1.10.5".to_string(),
            bootstrap_expect: 3,
            tick: Duration::from_millis(250),
            boot_delay: Duration::from_secs(40),
            client_ready_delay: Duration::from_secs(5),
            election_timeout: Duration::from_secs(2),
            failure_detection: Duration::from_secs(10),
            leave_time: Duration::from_secs(2),
            catch_up_time: Duration::from_secs(2),
            writes_per_second: 2,
            heartbeat_grace: Duration::from_secs(20),
            alloc_start_time: Duration::from_secs(2),
            migrate_time: Duration::from_secs(10),
            client_shutdown_deadline: Duration::from_secs(240),
            server_health_interval: Duration::from_secs(2),
            autopilot_interval: Duration::from_secs(10),
            rpc_hold_timeout: Duration::from_secs(5),
            autopilot: AutopilotSettings::default(),
            advance_per_request: Duration::ZERO,
        }
    }
}

/// When a scheduled [`Action`] fires.
pub enum Trigger {
    /// At this virtual time (or the next step after it).
    At(SimTime),
    /// At the first step after an event matching this predicate was journaled.
    Event(Box<dyn Fn(&SimEvent) -> bool + Send>),
}

/// Something done to the cluster now or later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The current leader's VM vanishes.
    KillLeader,
    /// This agent's VM vanishes (no graceful leave).
    Kill(String),
    /// This agent gets a terminate notification and shuts down gracefully.
    Terminate(String),
    /// An operator cancels this node's drain (`nomad node drain -disable`; it stays
    /// ineligible).
    CancelDrain(String),
    /// An operator puts this node back in service (`nomad node eligibility -enable`): the
    /// scheduler places work there again.
    MarkEligible(String),
    /// Log replication to this server (`None`: the server created last) stops `after` from now
    /// for `lasting` (a network partition from the leader, a stalled disk): it stops hearing
    /// the leader and falls behind, so autopilot finds it unhealthy until it catches up.
    StallReplication {
        server: Option<String>,
        after: Duration,
        lasting: Duration,
    },
}

/// Faults armed ahead of time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The next `count` servers to be created join Raft but never catch up with the leader,
    /// so autopilot never finds them healthy and never promotes them to voters.
    NewServersNeverVoters { count: usize },
    /// The next `count` clients to be created never start their agent (a broken image or
    /// boot script): their node never registers.
    NewClientsNeverStart { count: usize },
    /// Drains of this node never migrate anything: only their deadline ends them.
    DrainNeverFinishes { node: String },
    /// The same for every node.
    DrainsNeverFinish,
    /// No agent runs the terminate-notification watcher: an instance deleted with the
    /// notification runs on until Azure removes it (NotBefore), then vanishes (no graceful
    /// leave, no self-drain).
    NoTerminateWatcher,
}

/// One server at one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    pub name: String,
    pub id: String,
    /// Gossip status, `None` when not in the member list.
    pub member: Option<MemberStatus>,
    pub in_raft: bool,
    pub voter: bool,
    pub leader: bool,
    /// Autopilot's verdict as last computed.
    pub healthy: bool,
    /// The agent process runs (it may still be unknown to Raft).
    pub running: bool,
    /// Where the agent is in its life (booting, running, leaving, left, vanished).
    pub phase: ServerPhase,
    pub version: String,
}

/// A server agent's life as a property check sees it ([`ServerLife`] without its times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerPhase {
    /// The VM exists; the agent has not started yet.
    Booting,
    Running,
    /// Terminated: leaving Raft and the gossip pool.
    Leaving,
    Left,
    /// The VM vanished without leaving.
    Vanished,
}

impl ServerPhase {
    fn of(life: ServerLife) -> Self {
        match life {
            ServerLife::Booting { .. } => ServerPhase::Booting,
            ServerLife::Running => ServerPhase::Running,
            ServerLife::Leaving { .. } => ServerPhase::Leaving,
            ServerLife::Left => ServerPhase::Left,
            ServerLife::Vanished { .. } => ServerPhase::Vanished,
        }
    }
}

/// One client node at one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    pub id: String,
    pub status: NodeStatus,
    pub eligible: bool,
    pub draining: bool,
    pub drain_deadline: Option<SimTime>,
    /// Allocations that are pending or running there.
    pub live_allocs: usize,
    /// The agent process runs.
    pub agent_running: bool,
}

/// The cluster at one step: what property checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    pub at: SimTime,
    pub leader: Option<String>,
    pub term: u64,
    pub index: u64,
    pub servers: Vec<ServerView>,
    pub nodes: Vec<NodeView>,
    /// Voters in the Raft configuration.
    pub voters: usize,
    /// Voters autopilot last found healthy.
    pub healthy_voters: usize,
    /// Voters whose agent is running (whatever autopilot last said).
    pub live_voters: usize,
    /// voters / 2 + 1.
    pub quorum: usize,
    /// As autopilot computes it (healthy voters beyond quorum).
    pub failure_tolerance: usize,
    pub autopilot_healthy: bool,
    /// How many [`Action`]s have been applied so far (a test relaxes its properties from the
    /// first fault on, not before).
    pub actions_applied: usize,
}

/// A handle on one simulated cluster; clones share it.
#[derive(Clone)]
pub struct Simulation {
    inner: Arc<Mutex<Cluster>>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation").finish_non_exhaustive()
    }
}

impl Simulation {
    pub fn new(config: SimConfig) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Cluster::new(config))),
        }
    }

    /// The cluster, locked. Observers run with this lock held: they must not call back.
    pub fn lock(&self) -> MutexGuard<'_, Cluster> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> SimConfig {
        self.lock().config.clone()
    }

    /// Changes the configuration (e.g. `advance_per_request`) of a running simulation.
    pub fn configure(&self, change: impl FnOnce(&mut SimConfig)) {
        change(&mut self.lock().config);
    }

    pub fn now(&self) -> SimTime {
        self.lock().now
    }

    /// Moves virtual time forward by `d` (whole steps).
    pub fn advance(&self, d: Duration) {
        let mut cluster = self.lock();
        let until = cluster.now.plus(d);
        cluster.run_until(until);
    }

    /// Steps until `done` holds for the cluster or `limit` of virtual time has passed; true
    /// when it held.
    pub fn run_until(&self, limit: Duration, mut done: impl FnMut(&ClusterView) -> bool) -> bool {
        let mut cluster = self.lock();
        let until = cluster.now.plus(limit);
        loop {
            if done(&cluster.view()) {
                return true;
            }
            if cluster.now >= until {
                return false;
            }
            cluster.tick();
        }
    }

    /// Instances of this scale set boot into agents of this role.
    pub fn map_scale_set(&self, scale_set: &str, role: Role) {
        self.lock().scale_sets.insert(scale_set.to_string(), role);
    }

    /// The Nomad version agents created from now on run (the new image's).
    pub fn set_boot_version(&self, version: &str) {
        self.lock().boot_version = version.to_string();
    }

    /// Adds a server agent that starts after `boot_delay` (as a VM of the server scale set
    /// would). Returns its node id (= Raft id).
    pub fn boot_server(&self, name: &str, ip: &str) -> String {
        self.lock().add_server(name, ip, false)
    }

    /// Adds a client agent that starts after `boot_delay`. Returns its node id.
    pub fn boot_client(&self, name: &str, ip: &str, computer_name: &str) -> String {
        self.lock().add_client(name, ip, computer_name, false)
    }

    /// A cluster that has been up a long time: these servers running, all voters, the first
    /// by name leading, autopilot stable; these clients ready and eligible. IPs are
    /// `10.0.1.<n>` for servers and `10.0.2.<n>` for clients.
    pub fn start_running(&self, servers: &[&str], clients: &[&str]) {
        let mut cluster = self.lock();
        for (i, name) in servers.iter().enumerate() {
            let ip = format!("10.0.1.{}", 10 + i);
            cluster.add_server(name, &ip, true);
        }
        for (i, name) in clients.iter().enumerate() {
            let ip = format!("10.0.2.{}", 10 + i);
            cluster.add_client(name, &ip, name, true);
        }
        cluster.establish();
    }

    /// A job the scheduler keeps placed.
    pub fn add_job(&self, job: JobSpec) {
        self.lock().jobs.push(job);
    }

    pub fn inject(&self, fault: Fault) {
        let mut cluster = self.lock();
        match fault {
            Fault::NewServersNeverVoters { count } => cluster.next_servers_never_voters += count,
            Fault::NewClientsNeverStart { count } => cluster.next_clients_never_start += count,
            Fault::DrainNeverFinishes { node } => {
                if let Some(n) = cluster.nodes.iter_mut().find(|n| n.name == node) {
                    n.drain_stuck = true;
                }
            }
            Fault::DrainsNeverFinish => cluster.all_drains_stuck = true,
            Fault::NoTerminateWatcher => cluster.no_terminate_watcher = true,
        }
    }

    /// Does `action` now.
    pub fn act(&self, action: Action) {
        self.lock().apply(action);
    }

    /// The leader vanishes now; returns its name.
    pub fn kill_leader(&self) -> Option<String> {
        let mut cluster = self.lock();
        let name = cluster.leader_name();
        cluster.apply(Action::KillLeader);
        name
    }

    /// Does `action` when `trigger` fires.
    pub fn when(&self, trigger: Trigger, action: Action) {
        self.lock()
            .pending
            .push(cluster::Pending { trigger, action });
    }

    /// Calls `observer` with the cluster after every step (under the lock: it must not call
    /// back into the simulation).
    pub fn observe(&self, observer: impl FnMut(&ClusterView) + Send + 'static) {
        self.lock().observers.push(Box::new(observer));
    }

    pub fn view(&self) -> ClusterView {
        self.lock().view()
    }

    /// Everything that happened, in order, with its virtual time.
    pub fn journal(&self) -> Vec<(SimTime, SimEvent)> {
        self.lock().journal.clone()
    }

    /// Names of instances created in scale sets with no role mapped.
    pub fn unmatched_instances(&self) -> Vec<String> {
        self.lock().unmatched_instances.clone()
    }

    /// The current allocations (all of them, terminal ones included).
    pub fn allocations(&self) -> Vec<Alloc> {
        self.lock().allocs.clone()
    }

    /// The node named `name`.
    pub fn node_named(&self, name: &str) -> Option<Node> {
        self.lock().nodes.iter().find(|n| n.name == name).cloned()
    }
}

impl InstanceEvents for Simulation {
    fn instance_created(&self, instance: &InstanceInfo) {
        let mut cluster = self.lock();
        let Some(role) = cluster.scale_sets.get(&instance.scale_set).copied() else {
            cluster
                .unmatched_instances
                .push(format!("{}/{}", instance.scale_set, instance.instance_id));
            return;
        };
        cluster.record(SimEvent::InstanceCreated {
            name: instance.vm_id.clone(),
            role,
        });
        match role {
            Role::Server => {
                cluster.add_server(&instance.vm_id, &instance.private_ip, false);
            }
            Role::Client => {
                cluster.add_client(
                    &instance.vm_id,
                    &instance.private_ip,
                    &instance.computer_name,
                    false,
                );
            }
        }
    }

    fn instance_deleted(&self, instance: &InstanceInfo, notified: bool) {
        let mut cluster = self.lock();
        let name = instance.vm_id.clone();
        let node = cluster.nodes.iter().find(|n| n.name == name).cloned();
        let now = cluster.now;
        let running_allocs = node
            .as_ref()
            .map(|n| {
                cluster
                    .allocs
                    .iter()
                    .filter(|a| a.node_id == n.id && a.is_live())
                    .count()
            })
            .unwrap_or(0);
        let drain = node.as_ref().and_then(|n| n.drain.clone());
        cluster.record(SimEvent::InstanceDeleted {
            name: name.clone(),
            notified,
            running_allocs,
            draining: drain.is_some(),
            drain_deadline_passed: drain
                .and_then(|d| d.force_deadline)
                .is_some_and(|t| t <= now),
        });
        if !notified {
            // No notification: Azure stops the VM as the delete begins.
            cluster.vanish(&name);
        } else if !cluster.no_terminate_watcher {
            cluster.terminate(&name);
        }
        // A notified VM with no watcher runs on, unaware, until Azure removes it at NotBefore.
    }

    /// The VM's watcher approves the `Terminate` event once its agent has stopped: a server
    /// that left (or never got to run), a client whose shutdown drain ended. Without the
    /// watcher nothing approves it.
    fn terminate_approved(&self, instance: &InstanceInfo) -> bool {
        let cluster = self.lock();
        if cluster.no_terminate_watcher {
            return false;
        }
        let name = instance.vm_id.as_str();
        if let Some(server) = cluster.servers.iter().find(|s| s.name == name) {
            return matches!(server.life, ServerLife::Left | ServerLife::Vanished { .. });
        }
        if let Some(client) = cluster.clients.iter().find(|c| c.name == name) {
            return matches!(client.life, ClientLife::Stopped | ClientLife::Vanished);
        }
        // No agent of ours on it: nothing to wait for.
        true
    }

    fn instance_removed(&self, instance: &InstanceInfo) {
        self.lock().vanish(&instance.vm_id);
    }

    /// An ARM request takes virtual time too (`advance_per_request`), while a delete waits.
    fn request_served(&self) {
        let mut cluster = self.lock();
        let advance = cluster.config.advance_per_request;
        if !advance.is_zero() {
            let until = cluster.now.plus(advance);
            cluster.run_until(until);
        }
    }
}

impl Cluster {
    pub(crate) fn add_server(&mut self, name: &str, ip: &str, running: bool) -> String {
        let id = uuid("node", name);
        let never = self.next_servers_never_voters > 0 && !running;
        if never {
            self.next_servers_never_voters -= 1;
        }
        let life = if running {
            ServerLife::Running
        } else {
            ServerLife::Booting {
                ready_at: self.now.plus(self.config.boot_delay),
            }
        };
        self.servers.push(ServerAgent {
            name: name.to_string(),
            ip: ip.to_string(),
            id: id.clone(),
            version: self.boot_version.clone(),
            life,
            force_left: false,
            pruned: false,
            applied_index: 0,
            last_term: 0,
            last_contact: None,
            joined_at: None,
            caught_up_at: None,
            never_catches_up: never,
            healthy: false,
            stable_since: self.now,
            created_at: self.now,
        });
        id
    }

    pub(crate) fn add_client(
        &mut self,
        name: &str,
        ip: &str,
        computer_name: &str,
        running: bool,
    ) -> String {
        let id = uuid("node", name);
        let never = self.next_clients_never_start > 0 && !running;
        if never {
            self.next_clients_never_start -= 1;
        }
        let life = if running {
            ClientLife::Running
        } else if never {
            ClientLife::Booting {
                ready_at: SimTime(u64::MAX),
            }
        } else {
            ClientLife::Booting {
                ready_at: self.now.plus(self.config.boot_delay),
            }
        };
        self.clients.push(ClientAgent {
            name: name.to_string(),
            ip: ip.to_string(),
            node_id: id.clone(),
            version: self.boot_version.clone(),
            computer_name: computer_name.to_string(),
            life,
        });
        id
    }

    /// Makes the running servers an established cluster now: a Raft configuration of voters,
    /// a leader (the first by name), caught-up logs, stable autopilot health, and ready nodes
    /// for the running clients.
    pub(crate) fn establish(&mut self) {
        let mut running: Vec<(String, String)> = self
            .servers
            .iter()
            .filter(|s| s.life == ServerLife::Running)
            .map(|s| (s.name.clone(), s.id.clone()))
            .collect();
        running.sort();
        if running.is_empty() {
            return;
        }
        let now = self.now;
        self.raft = running.iter().map(|(_, id)| (id.clone(), true)).collect();
        self.term = self.term.max(1);
        self.index = self.index.max(1000);
        self.raft_config_index = self.index;
        self.leader = Some(running[0].1.clone());
        self.leaderless_since = None;
        // Long enough ago that the stabilization waiver is over.
        self.autopilot_started = Some(SimTime(0));
        if self.autopilot_config.is_none() {
            self.autopilot_config = Some(AutopilotConfig::initial(&self.config.autopilot, 10));
        }
        let (index, term) = (self.index, self.term);
        for server in &mut self.servers {
            if server.life == ServerLife::Running {
                server.applied_index = index;
                server.last_term = term;
                server.last_contact = Some(now);
                server.joined_at = Some(now);
                server.caught_up_at = Some(now);
                server.healthy = true;
                server.stable_since = now;
            }
        }
        let name = running[0].0.clone();
        self.record(SimEvent::LeaderElected { name, term });
        let clients: Vec<ClientAgent> = self
            .clients
            .iter()
            .filter(|c| c.life == ClientLife::Running)
            .cloned()
            .collect();
        for client in clients {
            if self.nodes.iter().any(|n| n.id == client.node_id) {
                continue;
            }
            self.register_node(&client, NodeStatus::Ready);
        }
    }

    /// The cluster now, for observers and tests.
    pub fn view(&self) -> ClusterView {
        let (autopilot_healthy, tolerance, _) = self.autopilot_health();
        let servers: Vec<ServerView> = self
            .servers
            .iter()
            .map(|s| {
                let raft = self.raft.iter().find(|(id, _)| *id == s.id);
                ServerView {
                    name: s.name.clone(),
                    id: s.id.clone(),
                    member: self.member_status(s),
                    in_raft: raft.is_some(),
                    voter: raft.is_some_and(|(_, v)| *v),
                    leader: self.leader.as_deref() == Some(s.id.as_str()),
                    healthy: s.healthy && raft.is_some(),
                    running: s.life == ServerLife::Running,
                    phase: ServerPhase::of(s.life),
                    version: s.version.clone(),
                }
            })
            .collect();
        let voters = self.voter_count();
        let healthy_voters = servers.iter().filter(|s| s.voter && s.healthy).count();
        let live_voters = servers.iter().filter(|s| s.voter && s.running).count();
        let nodes = self
            .nodes
            .iter()
            .map(|n| NodeView {
                name: n.name.clone(),
                id: n.id.clone(),
                status: n.status,
                eligible: n.eligible,
                draining: n.drain.is_some(),
                drain_deadline: n.drain.as_ref().and_then(|d| d.force_deadline),
                live_allocs: self
                    .allocs
                    .iter()
                    .filter(|a| a.node_id == n.id && a.is_live())
                    .count(),
                agent_running: self.clients.iter().any(|c| {
                    c.node_id == n.id
                        && matches!(
                            c.life,
                            ClientLife::Running | ClientLife::ShuttingDown { .. }
                        )
                }),
            })
            .collect();
        ClusterView {
            at: self.now,
            leader: self.leader_name(),
            term: self.term,
            index: self.index,
            servers,
            nodes,
            voters,
            healthy_voters,
            live_voters,
            quorum: servers::quorum(voters),
            failure_tolerance: if self.leader.is_some() { tolerance } else { 0 },
            autopilot_healthy: self.leader.is_some() && autopilot_healthy,
            actions_applied: self.actions_applied,
        }
    }
}

#[cfg(test)]
mod tests;
