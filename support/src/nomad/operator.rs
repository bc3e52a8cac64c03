//! Status and operator endpoints: leader, peers, Raft configuration, autopilot health and
//! configuration, per-server Raft indexes, leadership transfer, and Raft peer removal for dead
//! servers only.

use reqwest::Method;

use super::{Call, NomadClient, NomadError};
use crate::nomad::types::{
    AutopilotConfiguration, LeadershipTransferResponse, MemberStatus, OperatorHealth,
    RaftConfiguration, RaftIndexes, ServerIndex,
};

/// What a leadership transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferOutcome {
    /// Leadership moved from one server (Raft id, address) to the target.
    Transferred { from: String, to: String },
    /// The target already led.
    AlreadyLeader,
    /// The servers predate Nomad 1.7.0, which added the endpoint (they answer 404).
    NotSupported,
}

impl NomadClient {
    /// `GET /v1/status/leader`: the leader's Raft address (`IP:4647`, not its HTTP address),
    /// or `None` when the cluster has none (Nomad holds the request up to 5 s, then answers 500
    /// "No cluster leader").
    pub fn leader(&self) -> Result<Option<String>, NomadError> {
        match self.json::<String>(Call::get("v1/status/leader"), true) {
            Ok(leader) => Ok(Some(leader).filter(|l| !l.is_empty())),
            Err(e) if e.is_no_leader() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/status/leader?stale`: the leader the answering server knows, without asking
    /// the leader (`""`, here `None`, when it knows none).
    pub fn leader_stale(&self) -> Result<Option<String>, NomadError> {
        let leader: String = self.json(Call::get("v1/status/leader").query("stale", ""), true)?;
        Ok(Some(leader).filter(|l| !l.is_empty()))
    }

    /// `GET /v1/status/peers`: Raft addresses of every server in the configuration, voters and
    /// non-voters alike.
    pub fn peers(&self) -> Result<Vec<String>, NomadError> {
        self.json(Call::get("v1/status/peers"), true)
    }

    /// `GET /v1/operator/raft/configuration` (management token): who is a voter, who leads.
    pub fn raft_configuration(&self) -> Result<RaftConfiguration, NomadError> {
        self.json(Call::get("v1/operator/raft/configuration"), true)
    }

    /// `GET /v1/operator/autopilot/health` (operator:read), always answered by the leader.
    /// Unhealthy is 429 with the same JSON: an answer here, not an error.
    pub fn autopilot_health(&self) -> Result<OperatorHealth, NomadError> {
        let call = Call::get("v1/operator/autopilot/health");
        let (url, response) = self.send(&call, true, &[200, 429])?;
        self.decode(&call, &url, response)
    }

    /// Every server's Raft index and term with the leader's, from one autopilot health answer
    /// (each server's `LastIndex` as the leader's autopilot last fetched it, every 2 s). This
    /// is what the API offers cluster-wide; a single server's own view is its `agent/self`
    /// `stats.raft` ([`crate::nomad::types::AgentSelf::raft_stats`] via
    /// [`NomadClient::for_agent`]).
    pub fn raft_indexes(&self) -> Result<RaftIndexes, NomadError> {
        let health = self.autopilot_health()?;
        Ok(indexes_of(&health))
    }

    /// `GET /v1/operator/autopilot/configuration` (operator:read).
    pub fn autopilot_configuration(&self) -> Result<AutopilotConfiguration, NomadError> {
        self.json(Call::get("v1/operator/autopilot/configuration"), true)
    }

    /// `PUT /v1/operator/autopilot/configuration` (operator:write). The body REPLACES the whole
    /// configuration: pass one read with [`NomadClient::autopilot_configuration`] and changed.
    /// With `cas`, only if its ModifyIndex still matches; the answer says whether it was set.
    pub fn set_autopilot_configuration(
        &self,
        configuration: &AutopilotConfiguration,
        cas: Option<u64>,
    ) -> Result<bool, NomadError> {
        let mut call =
            Call::write(Method::PUT, "v1/operator/autopilot/configuration").json(configuration);
        if let Some(index) = cas {
            call = call.query("cas", index.to_string());
        }
        self.json(call, false)
    }

    /// `PUT /v1/operator/raft/transfer-leadership?id=` (management; Nomad 1.7.0+).
    pub fn transfer_leadership(&self, raft_id: &str) -> Result<TransferOutcome, NomadError> {
        let call =
            Call::write(Method::PUT, "v1/operator/raft/transfer-leadership").query("id", raft_id);
        match self.json::<LeadershipTransferResponse>(call, false) {
            Ok(r) if r.noop => Ok(TransferOutcome::AlreadyLeader),
            Ok(r) => Ok(TransferOutcome::Transferred {
                from: r.from.id,
                to: r.to.id,
            }),
            Err(e) if e.status() == Some(404) => Ok(TransferOutcome::NotSupported),
            Err(e) => Err(e),
        }
    }

    /// `DELETE /v1/operator/raft/peer?id=` (management; `?id=` is the only form 1.10.1+
    /// accepts) for a server that is gone. A peer that disappears between the check and the
    /// removal (Nomad: `id "..." was not found in the Raft configuration`) counts as removed. Refused, without sending anything, for the leader
    /// and for a peer whose gossip member is alive or leaving (the leader would add a live one
    /// back; a leaving one is on its way out by itself). A peer gossip marks failed or left, or
    /// no longer knows, may go.
    pub fn remove_dead_raft_peer(&self, raft_id: &str) -> Result<(), NomadError> {
        let action = format!("remove Raft peer {raft_id}");
        let configuration = self.raft_configuration()?;
        let Some(peer) = configuration.servers.iter().find(|s| s.id == raft_id) else {
            return Err(NomadError::Refused {
                action,
                reason: "it is not in the Raft configuration".to_string(),
            });
        };
        if peer.leader {
            return Err(NomadError::Refused {
                action,
                reason: "it is the leader".to_string(),
            });
        }
        let members = self.members()?;
        let member = members
            .iter()
            .find(|m| m.raft_id() == Some(raft_id) || m.name == peer.node);
        if let Some(m) = member {
            if matches!(m.state(), MemberStatus::Alive | MemberStatus::Leaving) {
                return Err(NomadError::Refused {
                    action,
                    reason: format!(
                        "its agent {} is {} in gossip: only failed or departed servers are removed",
                        m.name, m.status
                    ),
                });
            }
        }
        let call = Call::write(Method::DELETE, "v1/operator/raft/peer").query("id", raft_id);
        match self.send(&call, false, &[200]) {
            Ok(_) => Ok(()),
            // Gone between the check and the removal (autopilot's dead-server cleanup, or the
            // leader reconciling a member that left): what was asked for holds.
            Err(e) if e.is_not_a_peer() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The per-server indexes of an autopilot health answer.
pub(crate) fn indexes_of(health: &OperatorHealth) -> RaftIndexes {
    let servers: Vec<ServerIndex> = health
        .servers
        .iter()
        .map(|s| ServerIndex {
            id: s.id.clone(),
            name: s.name.clone(),
            address: s.address.clone(),
            leader: s.leader,
            voter: s.voter,
            healthy: s.healthy,
            last_index: s.last_index,
            last_term: s.last_term,
        })
        .collect();
    RaftIndexes {
        leader_index: servers.iter().find(|s| s.leader).map(|s| s.last_index),
        servers,
    }
}
