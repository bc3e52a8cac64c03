//! The records the simulated cluster keeps: server agents with their gossip and Raft state,
//! client agents and the nodes they register, jobs and allocations, and the journal.

use std::collections::BTreeMap;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::clock::SimTime;

/// Nomad's Raft port; the leader and peers are named by `<ip>:4647`.
pub const RPC_PORT: u16 = 4647;
/// Nomad's Serf (gossip) port.
pub const SERF_PORT: u16 = 4648;
/// Nomad's HTTP port (what `HTTPAddr` names).
pub const HTTP_PORT: u16 = 4646;

/// A UUID-shaped id derived from `kind` and `seed`, so a run is reproducible.
pub fn uuid(kind: &str, seed: &str) -> String {
    let digest = Sha256::digest(format!("{kind}\0{seed}").as_bytes());
    let hex = crate::hash::hex(&digest[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// What an agent's VM runs: `nomad agent -server` or `-client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Server,
    Client,
}

/// Serf member status (`hashicorp/serf` `MemberStatus`, as `/v1/agent/members` writes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Alive,
    Leaving,
    Left,
    Failed,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Leaving => "leaving",
            MemberStatus::Left => "left",
            MemberStatus::Failed => "failed",
        }
    }
}

/// Where a server agent's process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerLife {
    /// The VM is booting; the agent starts at `ready_at`.
    Booting {
        ready_at: SimTime,
    },
    Running,
    /// `nomad agent` got SIGTERM/SIGINT with `leave_on_terminate`: it leaves Raft and the gossip
    /// pool, and is gone at `until`.
    Leaving {
        until: SimTime,
    },
    /// Left gracefully.
    Left,
    /// The VM vanished without a word at `at` (deleted without notification, crashed).
    Vanished {
        at: SimTime,
    },
}

/// A Nomad server agent.
#[derive(Debug, Clone)]
pub struct ServerAgent {
    /// The node name (run-nomad names it after the VM id).
    pub name: String,
    pub ip: String,
    /// Node ID, which is also the Raft server ID (raft protocol 3).
    pub id: String,
    pub version: String,
    pub life: ServerLife,
    /// Force-left (by `force-leave` or autopilot's dead-server cleanup): failed -> left.
    pub force_left: bool,
    /// Dropped from the member list (`force-leave?prune=true`).
    pub pruned: bool,
    /// Raft state as this server reports it.
    pub applied_index: u64,
    pub last_term: u64,
    /// When it last heard from a leader.
    pub last_contact: Option<SimTime>,
    /// When it joined the Raft configuration.
    pub joined_at: Option<SimTime>,
    /// It has the leader's log from this time on (a snapshot install takes a while).
    pub caught_up_at: Option<SimTime>,
    /// Fault: it never catches up, so autopilot never finds it healthy.
    pub never_catches_up: bool,
    /// Autopilot's last verdict, and since when it holds.
    pub healthy: bool,
    pub stable_since: SimTime,
    pub created_at: SimTime,
}

/// Where a client agent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientLife {
    Booting {
        ready_at: SimTime,
    },
    Running,
    /// Terminating: it drains itself (drain_on_shutdown) and stops at the latest at `deadline`.
    ShuttingDown {
        deadline: SimTime,
    },
    Stopped,
    Vanished,
}

/// A Nomad client agent (the node record is separate: it outlives the agent).
#[derive(Debug, Clone)]
pub struct ClientAgent {
    pub name: String,
    pub ip: String,
    pub node_id: String,
    pub version: String,
    pub computer_name: String,
    pub life: ClientLife,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStatus {
    Initializing,
    Ready,
    Down,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Initializing => "initializing",
            NodeStatus::Ready => "ready",
            NodeStatus::Down => "down",
        }
    }
}

/// A node's drain (structs.DrainStrategy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    /// Nanoseconds as requested: > 0 deadline, 0 none, < 0 force now.
    pub deadline_ns: i64,
    pub ignore_system_jobs: bool,
    pub force_deadline: Option<SimTime>,
    pub started_at: SimTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainStatus {
    Draining,
    Complete,
    Canceled,
}

impl DrainStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DrainStatus::Draining => "draining",
            DrainStatus::Complete => "complete",
            DrainStatus::Canceled => "canceled",
        }
    }
}

/// structs.DrainMetadata: the node's most recent drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastDrain {
    pub started_at: SimTime,
    pub updated_at: SimTime,
    pub status: DrainStatus,
    pub accessor_id: String,
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    pub message: String,
    pub subsystem: String,
    pub at: SimTime,
    pub create_index: u64,
}

/// A client node as the servers store it.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub name: String,
    pub ip: String,
    pub datacenter: String,
    pub version: String,
    pub computer_name: String,
    pub node_class: String,
    pub status: NodeStatus,
    pub eligible: bool,
    pub drain: Option<Drain>,
    pub last_drain: Option<LastDrain>,
    pub events: Vec<NodeEvent>,
    pub status_updated_at: SimTime,
    pub last_heartbeat: SimTime,
    pub create_index: u64,
    pub modify_index: u64,
    /// Fault: a drain of this node never migrates anything; only its deadline ends it.
    pub drain_stuck: bool,
}

/// A job's type, which decides how a drain treats its allocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Migrated by a drain (stopped, replaced elsewhere).
    Service,
    /// Left to finish on a draining node; stopped only at the drain deadline.
    Batch,
    /// One allocation per eligible node; stopped last, unless the drain ignores system jobs.
    System,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Service => "service",
            JobKind::Batch => "batch",
            JobKind::System => "system",
        }
    }
}

/// A job the simulated scheduler keeps placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub id: String,
    pub kind: JobKind,
    pub group: String,
    /// Allocations wanted (ignored for system jobs: one per eligible node).
    pub count: u32,
    /// A batch allocation finishes after running this long (`None`: it runs until stopped).
    pub runs_for: Option<Duration>,
    pub namespace: String,
}

impl JobSpec {
    /// A service job with `count` allocations in group `group`, namespace `default`.
    pub fn service(id: &str, count: u32) -> Self {
        Self {
            id: id.to_string(),
            kind: JobKind::Service,
            group: "app".to_string(),
            count,
            runs_for: None,
            namespace: "default".to_string(),
        }
    }

    /// A batch job whose allocations run for `runs_for` (`None`: forever).
    pub fn batch(id: &str, count: u32, runs_for: Option<Duration>) -> Self {
        Self {
            kind: JobKind::Batch,
            runs_for,
            group: "work".to_string(),
            ..Self::service(id, count)
        }
    }

    /// A system job (one allocation per eligible node).
    pub fn system(id: &str) -> Self {
        Self {
            kind: JobKind::System,
            group: "agent".to_string(),
            ..Self::service(id, 0)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DesiredStatus {
    Run,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientStatus {
    Pending,
    Running,
    Complete,
    Lost,
}

impl ClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Pending => "pending",
            ClientStatus::Running => "running",
            ClientStatus::Complete => "complete",
            ClientStatus::Lost => "lost",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, ClientStatus::Complete | ClientStatus::Lost)
    }
}

/// An allocation.
#[derive(Debug, Clone)]
pub struct Alloc {
    pub id: String,
    pub eval_id: String,
    pub job_id: String,
    pub kind: JobKind,
    pub namespace: String,
    pub group: String,
    /// The `[i]` of the name `<job>.<group>[i]`.
    pub slot: u32,
    pub node_id: String,
    pub node_name: String,
    pub desired: DesiredStatus,
    pub desired_description: String,
    pub client: ClientStatus,
    pub client_description: String,
    /// DesiredTransition.Migrate, set by the drainer.
    pub migrate: bool,
    /// The drainer stops it at this time (its replacement is placed then).
    pub migrate_at: Option<SimTime>,
    pub previous_allocation: Option<String>,
    pub next_allocation: Option<String>,
    pub started_at: Option<SimTime>,
    pub runs_for: Option<Duration>,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: SimTime,
    pub modify_time: SimTime,
}

impl Alloc {
    pub fn name(&self) -> String {
        format!("{}.{}[{}]", self.job_id, self.group, self.slot)
    }

    /// Still holds (or is about to hold) resources on its node.
    pub fn is_live(&self) -> bool {
        !self.client.is_terminal()
    }
}

/// What happened, in order: what roll's property checks read besides the per-step views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimEvent {
    InstanceCreated {
        name: String,
        role: Role,
    },
    /// The ARM double deleted the instance. `running_allocs` and `drain_deadline_passed`
    /// describe a client node at that moment.
    InstanceDeleted {
        name: String,
        notified: bool,
        running_allocs: usize,
        draining: bool,
        drain_deadline_passed: bool,
    },
    AgentStarted {
        name: String,
        role: Role,
    },
    /// A terminated agent finished its graceful shutdown and stopped.
    AgentStopped {
        name: String,
    },
    ServerJoinedRaft {
        name: String,
    },
    ServerPromoted {
        name: String,
    },
    /// Replication to this server stalled ([`super::Action::StallReplication`]).
    ReplicationStalled {
        name: String,
    },
    /// The stall is over: it hears the leader again and catches up.
    ReplicationResumed {
        name: String,
    },
    PeerRemoved {
        name: String,
        why: String,
    },
    LeaderElected {
        name: String,
        term: u64,
    },
    LeaderLost {
        name: String,
        why: String,
    },
    MemberFailed {
        name: String,
    },
    MemberLeft {
        name: String,
    },
    NodeRegistered {
        name: String,
    },
    NodeReady {
        name: String,
    },
    NodeDown {
        name: String,
    },
    DrainStarted {
        node: String,
        deadline_ns: i64,
    },
    DrainDeadlineReached {
        node: String,
    },
    DrainComplete {
        node: String,
    },
    DrainCanceled {
        node: String,
    },
    AllocPlaced {
        alloc: String,
        node: String,
    },
    AllocStopped {
        alloc: String,
        node: String,
        why: String,
    },
    AllocLost {
        alloc: String,
        node: String,
    },
}
