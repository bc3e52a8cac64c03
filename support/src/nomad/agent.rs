//! Agent endpoints: members, self, health, and force-leave for failed members only.

use reqwest::Method;

use super::{Call, NomadClient, NomadError};
use crate::nomad::types::{AgentHealth, AgentMember, AgentSelf, MemberStatus, ServerMembers};

impl NomadClient {
    /// `GET /v1/agent/members`: the servers in the answering agent's gossip pool (eventually
    /// consistent; not forwarded to the leader).
    pub fn agent_members(&self) -> Result<ServerMembers, NomadError> {
        self.json(Call::get("v1/agent/members"), false)
    }

    /// The members alone.
    pub fn members(&self) -> Result<Vec<AgentMember>, NomadError> {
        Ok(self.agent_members()?.members)
    }

    /// `GET /v1/agent/self`: the agent at this client's address (use [`NomadClient::for_agent`]
    /// to ask one server about its own Raft state).
    pub fn agent_self(&self) -> Result<AgentSelf, NomadError> {
        self.json(Call::get("v1/agent/self"), false)
    }

    /// `GET /v1/agent/health`. A part that is not ok makes Nomad answer 500 with the same JSON
    /// (labelled text/plain): that is an answer here, not an error.
    pub fn agent_health(&self) -> Result<AgentHealth, NomadError> {
        let call = Call::get("v1/agent/health");
        let (url, response) = self.send(&call, false, &[200, 500])?;
        let status = response.status().as_u16();
        if status == 200 {
            return self.decode(&call, &url, response);
        }
        let body = crate::http::error_body(response);
        serde_json::from_str(&body).map_err(|_| NomadError::Status {
            method: "GET".to_string(),
            url: url.to_string(),
            status,
            body,
        })
    }

    /// `POST /v1/agent/force-leave` for a member gossip reports **failed** (the API's meaning:
    /// failed -> left, then the leader drops a left server from Raft). Refused, without sending
    /// anything, for a member that is alive, leaving, left or unknown: force-leave never
    /// retires a live server, and an unknown name would be accepted silently by Nomad.
    /// `member` is the gossip name (`<node>.<region>`); `prune` also drops it from the list.
    pub fn force_leave_failed(&self, member: &str, prune: bool) -> Result<(), NomadError> {
        let action = format!("force-leave {member}");
        let members = self.members()?;
        let Some(found) = members.iter().find(|m| m.name == member) else {
            let known: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
            return Err(NomadError::Refused {
                action,
                reason: format!("no such member (members: {})", known.join(", ")),
            });
        };
        if found.state() != MemberStatus::Failed {
            return Err(NomadError::Refused {
                action,
                reason: format!(
                    "it is {}, not failed: force-leave is for failed members only (stop a live server gracefully instead)",
                    found.status
                ),
            });
        }
        let mut call = Call::write(Method::POST, "v1/agent/force-leave").query("node", member);
        if prune {
            call = call.query("prune", "true");
        }
        self.send(&call, false, &[200])?;
        Ok(())
    }
}
