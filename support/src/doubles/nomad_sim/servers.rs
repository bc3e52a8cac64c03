//! The server side: gossip membership (hashicorp/serf), the Raft configuration and its leader
//! (hashicorp/raft), and autopilot (hashicorp/raft-autopilot v0.1.6 as Nomad 1.10 uses it).
//!
//! Facts modelled, with their sources (`../shared/nomad-api/endpoints.json` notes and the files
//! it cites):
//! - A joining server is added by the leader as a non-voter (nomad/leader.go addRaftPeer ->
//!   AddNonvoter) and promoted by autopilot's StablePromoter once healthy for
//!   `ServerStabilizationTime` (stable_promoter.go); the stabilization time is waived while the
//!   leader's autopilot has run for less than 110% of it.
//! - Healthy (types.go isHealthy): serf alive, LastContact within LastContactThreshold, the
//!   leader's term, and no more than MaxTrailingLogs behind the leader's index.
//! - FailureTolerance = healthy voters - (voters / 2 + 1), never below 0 (state.go).
//! - Dead-server cleanup (reconcile.go pruneDeadServers, CleanupDeadServers): failed servers are
//!   force-left (serf failed -> left), at most (voters - 1) / 2 voters at a time and never below
//!   MinQuorum voters; the leader then drops left servers from Raft (leader.go reconcileMember).
//! - A graceful leave removes the server from Raft (server.go Leave); a leader removes itself
//!   first and the others elect a new one. Without a quorum of live voters there is no leader.
//! - Nomad's defaults: autopilot runs every 10 s, server health every 2 s (nomad/config.go).

use std::time::Duration;

use super::cluster::{AutopilotConfig, Cluster};
use super::model::*;

/// Why a server-side operation was refused, as the HTTP layer reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOpError {
    NoLeader,
    /// `id "<id>" was not found in the Raft configuration`.
    PeerNotFound(String),
}

/// One server's health as autopilot reports it (`/v1/operator/autopilot/health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHealthView {
    pub id: String,
    pub name: String,
    pub address: String,
    pub serf_status: &'static str,
    pub version: String,
    pub leader: bool,
    pub voter: bool,
    pub last_contact: Duration,
    pub last_term: u64,
    pub last_index: u64,
    pub healthy: bool,
    pub stable_since: super::clock::SimTime,
}

pub(crate) fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

impl Cluster {
    /// The member status gossip reports for a server, or `None` when it is not in the pool.
    pub(crate) fn member_status(&self, server: &ServerAgent) -> Option<MemberStatus> {
        if server.pruned {
            return None;
        }
        match server.life {
            ServerLife::Booting { .. } => None,
            ServerLife::Running => Some(MemberStatus::Alive),
            ServerLife::Leaving { .. } => Some(MemberStatus::Leaving),
            ServerLife::Left => Some(MemberStatus::Left),
            ServerLife::Vanished { at } => {
                if server.force_left {
                    Some(MemberStatus::Left)
                } else if self.now.since(at) >= self.config.failure_detection {
                    Some(MemberStatus::Failed)
                } else {
                    Some(MemberStatus::Alive)
                }
            }
        }
    }

    pub(crate) fn server_lifecycles(&mut self) {
        let now = self.now;
        let mut started = Vec::new();
        let mut left = Vec::new();
        let mut failed = Vec::new();
        for server in &mut self.servers {
            match server.life {
                ServerLife::Booting { ready_at } if ready_at <= now => {
                    server.life = ServerLife::Running;
                    started.push(server.name.clone());
                }
                ServerLife::Leaving { until } if until <= now => {
                    server.life = ServerLife::Left;
                    left.push(server.name.clone());
                }
                ServerLife::Vanished { at }
                    if !server.force_left
                        && now.since(at) >= self.config.failure_detection
                        && now.since(at) < self.config.failure_detection + self.config.tick =>
                {
                    failed.push(server.name.clone());
                }
                _ => {}
            }
        }
        for name in started {
            self.record(SimEvent::AgentStarted {
                name,
                role: Role::Server,
            });
        }
        for name in left {
            self.record(SimEvent::MemberLeft { name });
        }
        for name in failed {
            self.record(SimEvent::MemberFailed { name });
        }
    }

    /// bootstrap_expect: once that many servers are alive and no Raft configuration exists,
    /// they bootstrap one with all of them as voters.
    pub(crate) fn bootstrap_raft(&mut self) {
        if !self.raft.is_empty() || self.frozen {
            return;
        }
        let alive: Vec<String> = self
            .servers
            .iter()
            .filter(|s| s.life == ServerLife::Running)
            .map(|s| s.id.clone())
            .collect();
        if alive.len() < self.config.bootstrap_expect.max(1) {
            return;
        }
        let now = self.now;
        self.raft = alive.iter().map(|id| (id.clone(), true)).collect();
        for server in &mut self.servers {
            if alive.contains(&server.id) {
                server.joined_at = Some(now);
                server.caught_up_at = Some(now);
            }
        }
        self.leaderless_since = Some(now);
    }

    /// The leader's reconcile loop: alive servers join as non-voters, left ones are removed.
    pub(crate) fn reconcile_members(&mut self) {
        if self.leader.is_none() || self.frozen {
            return;
        }
        let now = self.now;
        let mut joins = Vec::new();
        let mut removals = Vec::new();
        for server in &self.servers {
            let status = self.member_status(server);
            let in_raft = self.raft.iter().any(|(id, _)| *id == server.id);
            match status {
                Some(MemberStatus::Alive) if !in_raft && server.life == ServerLife::Running => {
                    joins.push(server.id.clone())
                }
                Some(MemberStatus::Left) | Some(MemberStatus::Leaving) if in_raft => {
                    removals.push((server.id.clone(), server.name.clone()))
                }
                _ => {}
            }
        }
        for id in joins {
            self.raft.push((id.clone(), false));
            let index = self.write();
            self.raft_config_index = index;
            let catch_up = self.config.catch_up_time;
            let server = self
                .servers
                .iter_mut()
                .find(|s| s.id == id)
                .expect("a joining server");
            server.joined_at = Some(now);
            server.caught_up_at = if server.never_catches_up {
                None
            } else {
                Some(now.plus(catch_up))
            };
            server.healthy = false;
            server.stable_since = now;
            let name = server.name.clone();
            self.record(SimEvent::ServerJoinedRaft { name });
        }
        for (id, name) in removals {
            self.remove_from_raft(&id, &name, "it left the gossip pool");
        }
    }

    pub(crate) fn remove_from_raft(&mut self, id: &str, name: &str, why: &str) {
        self.raft.retain(|(peer, _)| peer != id);
        let index = self.write();
        self.raft_config_index = index;
        self.record(SimEvent::PeerRemoved {
            name: name.to_string(),
            why: why.to_string(),
        });
    }

    /// A new leader once `election_timeout` has passed without one, if a quorum of the
    /// configuration's voters is running: the most up-to-date of them (then the first by name).
    pub(crate) fn elect(&mut self) {
        if self.frozen || self.raft.is_empty() {
            return;
        }
        if let Some(id) = self.leader.clone() {
            let alive = self
                .server_by_id(&id)
                .is_some_and(|s| s.life == ServerLife::Running);
            if !alive {
                self.lose_leader("the leader stopped");
            } else {
                return;
            }
        }
        let since = self.leaderless_since.unwrap_or(self.now);
        if self.now.since(since) < self.config.election_timeout {
            return;
        }
        let voters = self.voter_count();
        let mut candidates: Vec<&ServerAgent> = self
            .raft
            .iter()
            .filter(|(_, voter)| *voter)
            .filter_map(|(id, _)| self.server_by_id(id))
            .filter(|s| s.life == ServerLife::Running)
            .collect();
        if candidates.len() < quorum(voters) {
            return;
        }
        candidates.sort_by(|a, b| {
            b.applied_index
                .cmp(&a.applied_index)
                .then_with(|| a.name.cmp(&b.name))
        });
        let winner = candidates[0].id.clone();
        let name = candidates[0].name.clone();
        self.term += 1;
        self.leader = Some(winner.clone());
        self.leaderless_since = None;
        self.autopilot_started = Some(self.now);
        // A new leader's log is what it had applied; then it commits a no-op of its term.
        self.index = self.index.max(candidates_index(&self.servers, &winner));
        self.write();
        if self.autopilot_config.is_none() {
            let index = self.index;
            self.autopilot_config = Some(AutopilotConfig::initial(&self.config.autopilot, index));
        }
        let term = self.term;
        self.record(SimEvent::LeaderElected { name, term });
    }

    /// Log replication: background writes on the leader, followers that are caught up follow it.
    pub(crate) fn replicate(&mut self) {
        self.background_writes();
        let Some(leader) = self.leader.clone() else {
            return;
        };
        let now = self.now;
        let (index, term) = (self.index, self.term);
        let members: Vec<String> = self.raft.iter().map(|(id, _)| id.clone()).collect();
        let resumed: Vec<String> = self
            .stalls
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &resumed {
            self.stalls.remove(name);
        }
        let stalls = &self.stalls;
        for server in &mut self.servers {
            if stalls.contains_key(&server.name) {
                continue;
            }
            if server.life != ServerLife::Running || !members.contains(&server.id) {
                continue;
            }
            if server.id == leader || server.caught_up_at.is_some_and(|t| t <= now) {
                server.applied_index = index;
                server.last_term = term;
                server.last_contact = Some(now);
            }
        }
        for name in resumed {
            self.record(SimEvent::ReplicationResumed { name });
        }
    }

    /// The autopilot loop on the leader: health every `server_health_interval`, promotions and
    /// dead-server cleanup every `autopilot_interval`.
    pub(crate) fn autopilot(&mut self) {
        if self.leader.is_none() || self.frozen {
            return;
        }
        if self.health_due() {
            self.update_health();
        }
        if self.autopilot_due() {
            self.promote();
            self.prune_dead_servers();
        }
    }

    fn update_health(&mut self) {
        let now = self.now;
        let verdicts: Vec<(String, bool)> = self
            .raft
            .iter()
            .filter_map(|(id, _)| self.server_by_id(id))
            .map(|s| (s.id.clone(), self.health_of(s).healthy))
            .collect();
        for (id, healthy) in verdicts {
            if let Some(server) = self.servers.iter_mut().find(|s| s.id == id) {
                if server.healthy != healthy {
                    server.healthy = healthy;
                    server.stable_since = now;
                }
            }
        }
    }

    fn autopilot_settings(&self) -> AutopilotConfig {
        self.autopilot_config
            .clone()
            .unwrap_or_else(|| AutopilotConfig::initial(&self.config.autopilot, 0))
    }

    fn promote(&mut self) {
        let settings = self.autopilot_settings();
        let started = self.autopilot_started.unwrap_or(self.now);
        let waived = self.now.since(started) <= settings.server_stabilization_time.mul_f64(1.1);
        let stable_for = if waived {
            Duration::ZERO
        } else {
            settings.server_stabilization_time
        };
        let now = self.now;
        let promotions: Vec<String> = self
            .raft
            .iter()
            .filter(|(_, voter)| !voter)
            .filter_map(|(id, _)| self.server_by_id(id))
            .filter(|s| s.healthy && now.since(s.stable_since) >= stable_for)
            .map(|s| s.id.clone())
            .collect();
        for id in promotions {
            if let Some(entry) = self.raft.iter_mut().find(|(peer, _)| *peer == id) {
                entry.1 = true;
            }
            let index = self.write();
            self.raft_config_index = index;
            let name = self
                .server_by_id(&id)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            self.record(SimEvent::ServerPromoted { name });
        }
    }

    fn prune_dead_servers(&mut self) {
        let settings = self.autopilot_settings();
        if !settings.cleanup_dead_servers {
            return;
        }
        let mut voters = self.voter_count();
        let mut max_removal = voters.saturating_sub(1) / 2;
        // Stale servers (in Raft, unknown to gossip) go first, then failed non-voters, then
        // failed voters within the limits.
        let mut stale = Vec::new();
        let mut failed_nonvoters = Vec::new();
        let mut failed_voters = Vec::new();
        for (id, voter) in &self.raft {
            match self.server_by_id(id) {
                None => stale.push((id.clone(), *voter, String::from("(unknown)"))),
                Some(s) => match self.member_status(s) {
                    None => stale.push((id.clone(), *voter, s.name.clone())),
                    Some(MemberStatus::Failed) if *voter => {
                        failed_voters.push((id.clone(), s.name.clone()))
                    }
                    Some(MemberStatus::Failed) => {
                        failed_nonvoters.push((id.clone(), s.name.clone()))
                    }
                    _ => {}
                },
            }
        }
        for (id, voter, name) in stale {
            if voter {
                if max_removal < 1 || (voters - 1) < settings.min_quorum as usize {
                    continue;
                }
                max_removal -= 1;
                voters -= 1;
            }
            self.remove_from_raft(&id, &name, "autopilot: stale server");
        }
        for (_, name) in failed_nonvoters {
            self.force_left(&name, false);
        }
        for (_, name) in failed_voters {
            if max_removal < 1 || (voters - 1) < settings.min_quorum as usize {
                continue;
            }
            max_removal -= 1;
            voters -= 1;
            self.force_left(&name, false);
        }
    }

    /// serf's force-leave: a failed member becomes left (and `prune` drops it from the list);
    /// an alive member refutes it. Returns whether anything changed.
    pub(crate) fn force_left(&mut self, name: &str, prune: bool) -> bool {
        let now = self.now;
        let detection = self.config.failure_detection;
        let Some(server) = self.servers.iter_mut().find(|s| s.name == name) else {
            return false;
        };
        let failed = match server.life {
            ServerLife::Vanished { at } => now.since(at) >= detection,
            ServerLife::Left => true,
            _ => false,
        };
        if !failed {
            return false;
        }
        server.force_left = true;
        if prune {
            server.pruned = true;
        }
        let name = server.name.clone();
        self.record(SimEvent::MemberLeft { name });
        true
    }

    /// Autopilot's view of one server in the Raft configuration.
    pub(crate) fn health_of(&self, server: &ServerAgent) -> ServerHealthView {
        let settings = self.autopilot_settings();
        let leader = self.leader.as_deref() == Some(server.id.as_str());
        let voter = self
            .raft
            .iter()
            .any(|(id, voter)| *id == server.id && *voter);
        let status = self.member_status(server);
        let last_contact = if leader {
            Duration::ZERO
        } else {
            match (server.life, server.last_contact) {
                // A live follower hears the leader every heartbeat: a few milliseconds ago.
                (ServerLife::Running, Some(t)) if t == self.now => follower_contact(&server.id),
                (_, Some(t)) => self.now.since(t),
                (_, None) => server
                    .joined_at
                    .map(|j| self.now.since(j))
                    .unwrap_or(Duration::ZERO)
                    .max(settings.last_contact_threshold + Duration::from_millis(1)),
            }
        };
        let healthy = self.leader.is_some()
            && status == Some(MemberStatus::Alive)
            && last_contact <= settings.last_contact_threshold
            && server.last_term == self.term
            && !(self.index > settings.max_trailing_logs
                && server.applied_index < self.index - settings.max_trailing_logs);
        ServerHealthView {
            id: server.id.clone(),
            name: server.name.clone(),
            address: format!("{}:{RPC_PORT}", server.ip),
            serf_status: status.map(MemberStatus::as_str).unwrap_or("left"),
            version: server.version.clone(),
            leader,
            voter,
            last_contact,
            last_term: server.last_term,
            last_index: server.applied_index,
            healthy,
            stable_since: server.stable_since,
        }
    }

    /// Autopilot's cluster health as the leader last computed it (every
    /// `server_health_interval`): each server's cached verdict, the overall verdict and the
    /// failure tolerance.
    pub(crate) fn autopilot_health(&self) -> (bool, usize, Vec<ServerHealthView>) {
        let mut servers: Vec<ServerHealthView> = self
            .raft
            .iter()
            .filter_map(|(id, _)| self.server_by_id(id))
            .map(|s| {
                let mut view = self.health_of(s);
                view.healthy = s.healthy;
                view
            })
            .collect();
        // Leader first, then voters, then by name (raft-autopilot SortServers).
        servers.sort_by(|a, b| {
            b.leader
                .cmp(&a.leader)
                .then(b.voter.cmp(&a.voter))
                .then(a.name.cmp(&b.name))
        });
        let healthy = !servers.is_empty() && servers.iter().all(|s| s.healthy);
        let voters = servers.iter().filter(|s| s.voter).count();
        let healthy_voters = servers.iter().filter(|s| s.voter && s.healthy).count();
        let tolerance = healthy_voters.saturating_sub(quorum(voters));
        (healthy, tolerance, servers)
    }

    /// `DELETE /v1/operator/raft/peer?id=`: removes a peer; the leader's reconcile adds it back
    /// if it is still alive in gossip.
    pub(crate) fn remove_peer(&mut self, id: &str) -> Result<(), ServerOpError> {
        if self.leader.is_none() {
            return Err(ServerOpError::NoLeader);
        }
        if !self.raft.iter().any(|(peer, _)| peer == id) {
            return Err(ServerOpError::PeerNotFound(id.to_string()));
        }
        let name = self
            .server_by_id(id)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| "(unknown)".to_string());
        if self.leader.as_deref() == Some(id) {
            self.remove_from_raft(id, &name, "operator raft remove-peer");
            self.lose_leader("the leader was removed from Raft");
            return Ok(());
        }
        self.remove_from_raft(id, &name, "operator raft remove-peer");
        Ok(())
    }

    /// `PUT /v1/operator/raft/transfer-leadership?id=`: Ok(true) for a no-op.
    pub(crate) fn transfer_leadership(&mut self, id: &str) -> Result<bool, ServerOpError> {
        let Some(leader) = self.leader.clone() else {
            return Err(ServerOpError::NoLeader);
        };
        if leader == id {
            return Ok(true);
        }
        let target_ok = self.raft.iter().any(|(peer, voter)| peer == id && *voter)
            && self
                .server_by_id(id)
                .is_some_and(|s| s.life == ServerLife::Running);
        if !target_ok {
            return Err(ServerOpError::PeerNotFound(id.to_string()));
        }
        let from = self.leader_name().unwrap_or_default();
        self.record(SimEvent::LeaderLost {
            name: from,
            why: "leadership transferred".to_string(),
        });
        self.term += 1;
        self.leader = Some(id.to_string());
        self.autopilot_started = Some(self.now);
        self.write();
        let name = self
            .server_by_id(id)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        let term = self.term;
        self.record(SimEvent::LeaderElected { name, term });
        Ok(false)
    }
}

/// The last contact a live follower reports: a small, stable few milliseconds (a heartbeat
/// round trip), well inside the default 200 ms threshold.
fn follower_contact(id: &str) -> Duration {
    let spread = id.bytes().map(u64::from).sum::<u64>() % 40;
    Duration::from_micros(5_000 + spread * 250)
}

fn candidates_index(servers: &[ServerAgent], id: &str) -> u64 {
    servers
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.applied_index)
        .unwrap_or(0)
}
