//! The cluster as `roll` and `status` see it: every scale-set instance from ARM joined to its
//! Nomad agent. run-nomad names each agent after its VM id (IMDS `compute.vmId`, ARM
//! `properties.vmId`), so a server is the gossip member `<vmId>.<region>` and a client the node
//! named `<vmId>`; that is the only link between the two worlds, and the only one used.
//!
//! Reading is at the edge ([`read_servers`], [`read_clients`]); joining is pure ([`join_servers`],
//! [`join_clients`]) so that preconditions, plans and gates are tested without a network.

use std::collections::BTreeMap;

use serde::Serialize;

pub use super::instance::Instance;
use crate::nomad::{
    AgentMember, MemberStatus, NodeListStub, NomadClient, NomadError, OperatorHealth,
    RaftConfiguration,
};

// ------------------------------------------------------------------------------ servers

/// What Nomad says about its servers, read in one go.
#[derive(Debug, Clone, Default)]
pub struct ServerFacts {
    pub members: Vec<AgentMember>,
    /// The leader's Raft address; `None` without a leader.
    pub leader: Option<String>,
    /// Read from the leader: `None` without one.
    pub raft: Option<RaftConfiguration>,
    pub autopilot: Option<OperatorHealth>,
}

/// Reads the members, the leader, the Raft configuration and autopilot's health. Without a
/// leader the last two are `None` (not an error: a gate waits for one).
pub fn read_servers(nomad: &NomadClient) -> Result<ServerFacts, NomadError> {
    let members = nomad.members()?;
    let leader = nomad.leader()?;
    if leader.is_none() {
        return Ok(ServerFacts {
            members,
            ..ServerFacts::default()
        });
    }
    let leaderless = |e: &NomadError| e.is_no_leader();
    let raft = match nomad.raft_configuration() {
        Ok(raft) => Some(raft),
        Err(e) if leaderless(&e) => None,
        Err(e) => return Err(e),
    };
    let autopilot = match nomad.autopilot_health() {
        Ok(health) => Some(health),
        Err(e) if leaderless(&e) => None,
        Err(e) => return Err(e),
    };
    Ok(ServerFacts {
        members,
        leader: leader.filter(|_| raft.is_some()),
        raft,
        autopilot,
    })
}

/// A server instance's agent, as gossip, Raft and autopilot see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerAgent {
    /// The gossip member name, `<vmId>.<region>`.
    pub member: String,
    /// Gossip status: `alive`, `leaving`, `left`, `failed`.
    pub status: String,
    /// Raft server id (serf tag `id`).
    pub raft_id: Option<String>,
    /// Nomad version (serf tag `build`).
    pub version: Option<String>,
    /// The Raft configuration could be read (there is a leader, the token may read it).
    pub raft_known: bool,
    pub in_raft: bool,
    pub voter: bool,
    pub leader: bool,
    /// Autopilot's verdict (`None` when autopilot could not be read).
    pub healthy: Option<bool>,
    /// How far its Raft index trails the leader's, in autopilot's last view.
    pub lag: Option<u64>,
}

impl ServerAgent {
    pub fn state(&self) -> MemberStatus {
        MemberStatus::parse(&self.status)
    }

    pub fn alive(&self) -> bool {
        self.state() == MemberStatus::Alive
    }

    /// Alive, a voter, found healthy by autopilot.
    pub fn healthy_voter(&self) -> bool {
        self.alive() && self.in_raft && self.voter && self.healthy == Some(true)
    }

    /// `alive voter LEADER healthy`: the status line's words.
    pub fn describe(&self) -> String {
        let mut words = vec![self.status.clone()];
        words.push(
            match (self.raft_known, self.in_raft, self.voter) {
                (false, _, _) => "raft unknown",
                (true, true, true) => "voter",
                (true, true, false) => "non-voter",
                (true, false, _) => "not in raft",
            }
            .to_string(),
        );
        if self.leader {
            words.push("LEADER".to_string());
        }
        match self.healthy {
            Some(true) => words.push("healthy".to_string()),
            Some(false) => words.push("UNHEALTHY".to_string()),
            None => {}
        }
        if let Some(lag) = self.lag.filter(|l| *l > 0) {
            words.push(format!("{lag} behind"));
        }
        if let Some(v) = &self.version {
            words.push(format!("nomad {v}"));
        }
        words.join(" ")
    }
}

/// A server scale-set instance and its agent (`None`: no member is named after its VM id:
/// booting, or not a run-nomad agent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerInstance {
    #[serde(flatten)]
    pub instance: Instance,
    pub agent: Option<ServerAgent>,
}

impl ServerInstance {
    pub fn healthy_voter(&self) -> bool {
        self.agent.as_ref().is_some_and(ServerAgent::healthy_voter)
    }

    pub fn alive(&self) -> bool {
        self.agent.as_ref().is_some_and(ServerAgent::alive)
    }

    pub fn leader(&self) -> bool {
        self.agent.as_ref().is_some_and(|a| a.leader)
    }

    /// Its agent is gone: gossip says failed or left, or it never was a member. (A booting
    /// instance is not a member yet either: callers look at the model first.)
    pub fn dead(&self) -> bool {
        match &self.agent {
            None => true,
            Some(a) => matches!(a.state(), MemberStatus::Failed | MemberStatus::Left),
        }
    }
}

/// The servers: every instance of the server scale set with its agent, the members that match
/// no instance, and the cluster-wide verdicts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerSet {
    pub scale_set: String,
    /// `cluster_size` from the cluster file.
    pub wanted: u32,
    pub instances: Vec<ServerInstance>,
    /// Gossip members named after no instance of the scale set (with their status).
    pub strays: Vec<(String, String)>,
    /// The leader's Raft address.
    pub leader: Option<String>,
    pub autopilot_healthy: Option<bool>,
    pub failure_tolerance: Option<i64>,
    /// Voters in the Raft configuration.
    pub voters: usize,
    /// Raft peers no instance's agent accounts for (id, node name).
    pub unknown_peers: Vec<(String, String)>,
    /// Instances Azure is deleting (`provisioningState` Deleting): on their way out, so not in
    /// `instances`; their agents show among the strays until Azure is done.
    pub deleting: Vec<Instance>,
}

impl ServerSet {
    /// To be replaced: not on the latest model, or created before `--created-before`.
    pub fn old(&self) -> impl Iterator<Item = &ServerInstance> {
        self.instances.iter().filter(|i| !i.instance.current())
    }

    /// The rest: on the latest model and (with `--created-before`) created after the time.
    pub fn new_model(&self) -> impl Iterator<Item = &ServerInstance> {
        self.instances.iter().filter(|i| i.instance.current())
    }

    pub fn healthy_voters(&self) -> usize {
        self.instances.iter().filter(|i| i.healthy_voter()).count()
    }

    pub fn leader_instance(&self) -> Option<&ServerInstance> {
        self.instances.iter().find(|i| i.leader())
    }

    pub fn find(&self, instance_id: &str) -> Option<&ServerInstance> {
        self.instances
            .iter()
            .find(|i| i.instance.instance_id == instance_id)
    }
}

fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl ServerSet {
    /// The instance Azure is deleting whose VM a member or Raft node name (`<vm id>` or
    /// `<vm id>.<region>`) is named after.
    pub fn deleting_instance_of(&self, name: &str) -> Option<&Instance> {
        let node = name.split('.').next().unwrap_or(name);
        self.deleting.iter().find(|i| same_name(node, &i.vm_id))
    }
}

/// Joins ARM's instances with what Nomad says, by VM id.
pub fn join_servers(
    scale_set: &str,
    wanted: u32,
    instances: Vec<Instance>,
    facts: &ServerFacts,
) -> ServerSet {
    let raft_servers = facts
        .raft
        .as_ref()
        .map(|r| r.servers.as_slice())
        .unwrap_or(&[]);
    let health = facts.autopilot.as_ref();
    let leader_index =
        health.and_then(|h| h.servers.iter().find(|s| s.leader).map(|s| s.last_index));
    let mut matched_members = Vec::new();
    let mut matched_peers = Vec::new();
    let joined: Vec<ServerInstance> = instances
        .into_iter()
        .map(|instance| {
            // The most recent record wins when gossip still remembers a left one.
            let member = facts
                .members
                .iter()
                .filter(|m| same_name(m.node_name(), &instance.vm_id))
                .max_by_key(|m| m.state() == MemberStatus::Alive);
            let agent = member.map(|m| {
                matched_members.push(m.name.clone());
                let raft_id = m.raft_id().map(str::to_string);
                let peer = raft_servers.iter().find(|p| {
                    raft_id.as_deref() == Some(p.id.as_str()) || same_name(&p.node, &m.name)
                });
                if let Some(p) = peer {
                    matched_peers.push(p.id.clone());
                }
                let server_health = health.and_then(|h| {
                    h.servers.iter().find(|s| {
                        raft_id.as_deref() == Some(s.id.as_str())
                            || peer.is_some_and(|p| p.id == s.id)
                    })
                });
                ServerAgent {
                    member: m.name.clone(),
                    status: m.status.clone(),
                    version: m.build().map(str::to_string),
                    raft_known: facts.raft.is_some(),
                    in_raft: peer.is_some(),
                    voter: peer.is_some_and(|p| p.voter),
                    leader: peer.is_some_and(|p| p.leader),
                    healthy: server_health.map(|s| s.healthy),
                    lag: match (leader_index, server_health) {
                        (Some(leader), Some(s)) => Some(leader.saturating_sub(s.last_index)),
                        _ => None,
                    },
                    raft_id: raft_id.or_else(|| peer.map(|p| p.id.clone())),
                }
            });
            ServerInstance { instance, agent }
        })
        .collect();
    let strays = facts
        .members
        .iter()
        .filter(|m| !matched_members.contains(&m.name))
        .map(|m| (m.name.clone(), m.status.clone()))
        .collect();
    let unknown_peers = raft_servers
        .iter()
        .filter(|p| !matched_peers.contains(&p.id))
        .map(|p| (p.id.clone(), p.node.clone()))
        .collect();
    ServerSet {
        scale_set: scale_set.to_string(),
        wanted,
        instances: joined,
        strays,
        leader: facts.leader.clone(),
        autopilot_healthy: health.map(|h| h.healthy),
        failure_tolerance: health.map(|h| h.failure_tolerance),
        voters: raft_servers.iter().filter(|p| p.voter).count(),
        unknown_peers,
        deleting: Vec::new(),
    }
}

// ------------------------------------------------------------------------------ clients

/// What Nomad says about its client nodes: every node, and how many live allocations each
/// holds (one `/v1/allocations?namespace=*` read rather than one per node).
#[derive(Debug, Clone, Default)]
pub struct ClientFacts {
    pub nodes: Vec<NodeListStub>,
    pub live_allocations: BTreeMap<String, usize>,
}

pub fn read_clients(nomad: &NomadClient) -> Result<ClientFacts, NomadError> {
    let nodes = nomad.nodes()?;
    let mut live_allocations: BTreeMap<String, usize> = BTreeMap::new();
    for alloc in nomad.allocations("*")? {
        if alloc.is_live() {
            *live_allocations.entry(alloc.node_id.clone()).or_default() += 1;
        }
    }
    Ok(ClientFacts {
        nodes,
        live_allocations,
    })
}

/// A client instance's node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientNode {
    pub id: String,
    /// `initializing`, `ready`, `down`, `disconnected`.
    pub status: String,
    pub eligible: bool,
    pub draining: bool,
    /// The last drain finished (`LastDrain.Status` "complete" and no drain running).
    pub drained: bool,
    /// The last drain was canceled (`LastDrain.Status` "canceled", no drain running).
    pub drain_canceled: bool,
    pub version: String,
    /// Pending or running allocations there.
    pub allocations: usize,
}

impl ClientNode {
    pub fn ready(&self) -> bool {
        self.status == "ready"
    }

    /// Ready, eligible and not draining: it takes work.
    pub fn in_service(&self) -> bool {
        self.ready() && self.eligible && !self.draining
    }

    pub fn describe(&self) -> String {
        let mut words = vec![
            self.status.clone(),
            if self.eligible {
                "eligible"
            } else {
                "INELIGIBLE"
            }
            .to_string(),
        ];
        if self.draining {
            words.push("DRAINING".to_string());
        } else if self.drained {
            words.push("drained".to_string());
        }
        words.push(format!(
            "{} alloc{}",
            self.allocations,
            if self.allocations == 1 { "" } else { "s" }
        ));
        if !self.version.is_empty() {
            words.push(format!("nomad {}", self.version));
        }
        words.join(" ")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientInstance {
    #[serde(flatten)]
    pub instance: Instance,
    pub node: Option<ClientNode>,
}

/// One client pool: its scale set's instances with their nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientSet {
    pub scale_set: String,
    pub pool: Option<String>,
    /// The pool's count from the cluster file.
    pub wanted: u32,
    pub instances: Vec<ClientInstance>,
}

impl ClientSet {
    /// To be replaced (see [`ServerSet::old`]).
    pub fn old(&self) -> impl Iterator<Item = &ClientInstance> {
        self.instances.iter().filter(|i| !i.instance.current())
    }

    pub fn new_model(&self) -> impl Iterator<Item = &ClientInstance> {
        self.instances.iter().filter(|i| i.instance.current())
    }

    pub fn label(&self) -> String {
        match &self.pool {
            Some(p) => format!("client pool {p}"),
            None => "clients".to_string(),
        }
    }
}

pub fn join_clients(
    scale_set: &str,
    pool: Option<&str>,
    wanted: u32,
    instances: Vec<Instance>,
    facts: &ClientFacts,
) -> ClientSet {
    let instances = instances
        .into_iter()
        .map(|instance| {
            // A VM id names one node; should Nomad still hold an older record, the newest wins.
            let node = facts
                .nodes
                .iter()
                .filter(|n| same_name(&n.name, &instance.vm_id))
                .max_by_key(|n| n.create_index)
                .map(|n| ClientNode {
                    id: n.id.clone(),
                    status: n.status.clone(),
                    eligible: n.scheduling_eligibility == "eligible",
                    draining: n.drain,
                    drained: !n.drain
                        && n.last_drain
                            .as_ref()
                            .is_some_and(|d| d.status == "complete"),
                    drain_canceled: !n.drain
                        && n.last_drain
                            .as_ref()
                            .is_some_and(|d| d.status == "canceled"),
                    version: n.version.clone(),
                    allocations: facts.live_allocations.get(&n.id).copied().unwrap_or(0),
                });
            ClientInstance { instance, node }
        })
        .collect();
    ClientSet {
        scale_set: scale_set.to_string(),
        pool: pool.map(str::to_string),
        wanted,
        instances,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::nomad::{RaftServer, ServerHealth};
    use std::collections::BTreeMap;

    pub(crate) fn instance(set: &str, id: u32, latest: bool) -> Instance {
        Instance {
            scale_set: set.to_string(),
            instance_id: id.to_string(),
            name: format!("{set}_{id}"),
            vm_id: format!("vm-{set}-{id}"),
            computer_name: format!("{set}{id:06}"),
            provisioning_state: "Succeeded".to_string(),
            latest_model: latest,
            time_created: None,
            created: None,
            created_before_cutoff: false,
        }
    }

    pub(crate) fn member(vm: &str, status: &str, version: &str) -> AgentMember {
        AgentMember {
            name: format!("{vm}.global"),
            addr: "10.0.0.1".to_string(),
            port: 4648,
            status: status.to_string(),
            tags: BTreeMap::from([
                ("region".to_string(), "global".to_string()),
                ("id".to_string(), format!("id-{vm}")),
                ("build".to_string(), version.to_string()),
            ]),
        }
    }

    /// Facts for servers `(vm, status, voter, healthy)`; the first voter leads.
    pub(crate) fn facts(servers: &[(&str, &str, bool, bool)]) -> ServerFacts {
        let leader = servers.iter().find(|s| s.2).map(|s| s.0);
        let raft = RaftConfiguration {
            servers: servers
                .iter()
                .filter(|s| s.1 != "left")
                .map(|(vm, _, voter, _)| RaftServer {
                    id: format!("id-{vm}"),
                    node: format!("{vm}.global"),
                    address: "10.0.0.1:4647".to_string(),
                    leader: Some(*vm) == leader,
                    voter: *voter,
                    raft_protocol: "3".to_string(),
                })
                .collect(),
            index: 10,
        };
        let voters = servers.iter().filter(|s| s.2).count() as i64;
        let healthy_voters = servers.iter().filter(|s| s.2 && s.3).count() as i64;
        let autopilot = OperatorHealth {
            healthy: servers.iter().filter(|s| s.1 != "left").all(|s| s.3),
            failure_tolerance: (healthy_voters - (voters / 2 + 1)).max(0),
            servers: raft
                .servers
                .iter()
                .map(|p| {
                    let healthy = servers
                        .iter()
                        .find(|s| format!("id-{}", s.0) == p.id)
                        .is_some_and(|s| s.3);
                    ServerHealth {
                        id: p.id.clone(),
                        name: p.node.clone(),
                        address: p.address.clone(),
                        serf_status: "alive".to_string(),
                        version: "1.10.5".to_string(),
                        leader: p.leader,
                        last_contact: "5ms".to_string(),
                        last_term: 2,
                        last_index: if healthy { 100 } else { 10 },
                        healthy,
                        voter: p.voter,
                        stable_since: String::new(),
                    }
                })
                .collect(),
            leader: raft
                .servers
                .iter()
                .find(|p| p.leader)
                .map(|p| p.id.clone())
                .unwrap_or_default(),
            voters: Vec::new(),
        };
        ServerFacts {
            members: servers
                .iter()
                .map(|(vm, status, _, _)| member(vm, status, "1.9.7"))
                .collect(),
            leader: leader.map(|_| "10.0.0.1:4647".to_string()),
            raft: Some(raft),
            autopilot: Some(autopilot),
        }
    }

    /// Three old healthy voters (the first leads) and a new server in the state `new`
    /// (gossip status, voter, healthy).
    pub(crate) fn surged(new: (&str, bool, bool)) -> ServerSet {
        let mut instances: Vec<_> = (0..3).map(|i| instance("s", i, false)).collect();
        instances.push(instance("s", 3, true));
        join_servers(
            "s",
            3,
            instances,
            &facts(&[
                ("vm-s-0", "alive", true, true),
                ("vm-s-1", "alive", true, true),
                ("vm-s-2", "alive", true, true),
                ("vm-s-3", new.0, new.1, new.2),
            ]),
        )
    }

    #[test]
    fn servers_join_by_vm_id() {
        let instances = vec![
            instance("s", 0, false),
            instance("s", 1, false),
            instance("s", 2, true),
        ];
        let mut facts = facts(&[
            ("vm-s-0", "alive", true, true),
            ("vm-s-1", "alive", true, true),
            ("vm-s-2", "alive", false, false),
            ("old-dead", "failed", true, false),
        ]);
        // The VM id is compared without regard to case (ARM and IMDS agree, but be lenient).
        facts.members[1].name = "VM-S-1.global".to_string();
        let set = join_servers("s", 3, instances, &facts);
        assert_eq!(set.instances.len(), 3);
        assert!(set.instances[0].leader());
        assert!(set.instances[1].healthy_voter());
        let new = set.instances[2].agent.as_ref().unwrap();
        assert!(new.in_raft && !new.voter && new.healthy == Some(false));
        assert_eq!(new.lag, Some(90));
        assert_eq!(
            set.strays,
            [("old-dead.global".to_string(), "failed".to_string())]
        );
        assert_eq!(set.unknown_peers.len(), 1);
        assert_eq!(set.voters, 3);
        assert_eq!(set.healthy_voters(), 2);
        assert_eq!(set.failure_tolerance, Some(0));
    }

    #[test]
    fn an_instance_without_a_member_has_no_agent() {
        let set = join_servers(
            "s",
            3,
            vec![instance("s", 7, true)],
            &facts(&[("vm-s-0", "alive", true, true)]),
        );
        assert!(set.instances[0].agent.is_none());
        assert!(set.instances[0].dead());
    }

    #[test]
    fn clients_join_by_vm_id_with_their_live_allocations() {
        let node = |name: &str, id: &str, index: u64| NodeListStub {
            id: id.to_string(),
            name: name.to_string(),
            address: String::new(),
            datacenter: "dc1".to_string(),
            node_pool: "default".to_string(),
            node_class: String::new(),
            version: "1.9.7".to_string(),
            drain: false,
            scheduling_eligibility: "eligible".to_string(),
            status: "ready".to_string(),
            status_description: String::new(),
            last_drain: None,
            create_index: index,
            modify_index: index,
        };
        let facts = ClientFacts {
            nodes: vec![
                node("vm-c-0", "n-old", 1),
                node("vm-c-0", "n0", 5),
                node("vm-c-1", "n1", 6),
            ],
            live_allocations: BTreeMap::from([("n0".to_string(), 3)]),
        };
        let set = join_clients(
            "c",
            None,
            2,
            vec![
                instance("c", 0, false),
                instance("c", 1, false),
                instance("c", 2, true),
            ],
            &facts,
        );
        let n0 = set.instances[0].node.as_ref().unwrap();
        assert_eq!((n0.id.as_str(), n0.allocations), ("n0", 3));
        assert!(n0.in_service());
        assert_eq!(set.instances[1].node.as_ref().unwrap().allocations, 0);
        assert!(set.instances[2].node.is_none());
    }
}
