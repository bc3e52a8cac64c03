//! Nomad's HTTP handlers, endpoint by endpoint, over the simulated cluster. Each behaviour
//! follows `../shared/nomad-api/endpoints.json` (status codes, texts, headers, ACL) and the
//! handler files it cites (`command/agent/*_endpoint.go` at v1.10.5).
//!
//! Order of checks, as in the agent: method, request parameters and body, ACL token, then the
//! RPC, which waits up to `rpc_hold_timeout` (virtual) for a leader when it needs one.
//!
//! Handlers: [`operator`] (status, agent, Raft, autopilot, snapshot, ACL bootstrap) and
//! [`nodes`] (nodes, allocations, drain, eligibility).

use serde_json::Value;

use super::render::Agent;
use super::{DoubleState, Target};
use crate::doubles::nomad_sim::{parse_go_duration, ClientLife, Cluster, ServerLife};
use crate::doubles::server::RecordedRequest;

/// An answer before it becomes a [`crate::doubles::server::Reply`].
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(status: u16, body: &Value) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".to_string(), "application/json".to_string())],
            body: body.to_string().into_bytes(),
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![(
                "Content-Type".to_string(),
                "text/plain; charset=utf-8".to_string(),
            )],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

pub(super) const NO_LEADER: &str = "No cluster leader";
pub(super) const PERMISSION_DENIED: &str = "Permission denied";
pub(super) const TOKEN_NOT_FOUND: &str = "ACL token not found";
pub(super) const INVALID_METHOD: &str = "Invalid method";

/// The endpoint id (endpoints.json) a request is for, or `None` for a path Nomad does not
/// serve among them.
pub(crate) fn route(request: &RecordedRequest) -> Option<&'static str> {
    let path = request.path.trim_end_matches('/');
    Some(match path {
        "/v1/status/leader" => "status-leader",
        "/v1/status/peers" => "status-peers",
        "/v1/agent/members" => "agent-members",
        "/v1/agent/self" => "agent-self",
        "/v1/agent/health" => "agent-health",
        "/v1/agent/force-leave" => "agent-force-leave",
        "/v1/operator/raft/configuration" => "raft-configuration",
        "/v1/operator/raft/peer" => "raft-peer-remove",
        "/v1/operator/raft/transfer-leadership" => "raft-transfer-leadership",
        "/v1/operator/autopilot/configuration" if request.method == "PUT" => {
            "autopilot-configuration-put"
        }
        "/v1/operator/autopilot/configuration" => "autopilot-configuration-get",
        "/v1/operator/autopilot/health" => "autopilot-health",
        "/v1/operator/snapshot" => "snapshot-save",
        "/v1/nodes" => "nodes",
        "/v1/allocations" => "allocations",
        "/v1/acl/bootstrap" => "acl-bootstrap",
        _ => {
            let rest = path.strip_prefix("/v1/node/")?;
            match rest.split_once('/') {
                None if !rest.is_empty() => "node",
                Some((_, "allocations")) => "node-allocations",
                Some((_, "drain")) => "node-drain",
                Some((_, "eligibility")) => "node-eligibility",
                _ => return None,
            }
        }
    })
}

/// Everything a handler works on.
pub(crate) struct Ctx<'a> {
    pub cluster: &'a mut Cluster,
    pub state: &'a mut DoubleState,
    pub request: &'a RecordedRequest,
    pub agent: Agent,
    pub id: &'static str,
}

/// The token a request was authorized with.
pub(super) struct Caller {
    pub(super) accessor_id: String,
    capabilities: Vec<String>,
    management: bool,
}

impl Caller {
    pub(super) fn can(&self, capability: &str) -> bool {
        self.management || grants(&self.capabilities, capability)
    }
}

/// `node:write` grants `node:read`, and so on for agent and operator.
fn grants(capabilities: &[String], wanted: &str) -> bool {
    capabilities.iter().any(|c| {
        c == wanted
            || wanted
                .strip_suffix(":read")
                .is_some_and(|area| *c == format!("{area}:write"))
    })
}

/// Who answers a request that came in on `target`.
pub(crate) fn answering(cluster: &Cluster, target: &Target) -> Option<Agent> {
    match target {
        Target::LoadBalancer => cluster
            .servers
            .iter()
            .position(|s| s.life == ServerLife::Running)
            .map(Agent::Server),
        Target::Agent(name) => {
            if let Some(i) = cluster
                .servers
                .iter()
                .position(|s| s.name == *name && s.life == ServerLife::Running)
            {
                return Some(Agent::Server(i));
            }
            cluster
                .clients
                .iter()
                .position(|c| {
                    c.name == *name
                        && matches!(
                            c.life,
                            ClientLife::Running | ClientLife::ShuttingDown { .. }
                        )
                })
                .map(Agent::Client)
        }
    }
}

pub(crate) fn dispatch(ctx: &mut Ctx<'_>) -> Answer {
    let spec = super::conformance::spec().endpoint(ctx.id);
    let method_ok = spec.accepted_methods.contains(&ctx.request.method)
        // The autopilot configuration path serves GET and PUT between its two endpoints.
        || (ctx.id == "autopilot-configuration-get" && ctx.request.method == "PUT");
    if !method_ok {
        return wrong_method(ctx.id);
    }
    match ctx.id {
        "status-leader" => operator::status_leader(ctx),
        "status-peers" => operator::status_peers(ctx),
        "agent-members" => operator::agent_members(ctx),
        "agent-self" => operator::agent_self(ctx),
        "agent-health" => operator::agent_health(ctx),
        "agent-force-leave" => operator::force_leave(ctx),
        "raft-configuration" => operator::raft_configuration(ctx),
        "raft-peer-remove" => operator::raft_peer_remove(ctx),
        "raft-transfer-leadership" => operator::transfer_leadership(ctx),
        "autopilot-configuration-get" => operator::autopilot_get(ctx),
        "autopilot-configuration-put" => operator::autopilot_put(ctx),
        "autopilot-health" => operator::autopilot_health(ctx),
        "snapshot-save" => operator::snapshot(ctx),
        "nodes" => nodes::nodes(ctx),
        "node" => nodes::node(ctx),
        "node-allocations" => nodes::node_allocations(ctx),
        "node-drain" => nodes::node_drain(ctx),
        "node-eligibility" => nodes::node_eligibility(ctx),
        "allocations" => nodes::allocations(ctx),
        "acl-bootstrap" => operator::acl_bootstrap(ctx),
        other => unreachable!("no handler for {other}"),
    }
}

/// The wrong-method answer each endpoint documents: 405 "Invalid method" (no body at all for
/// raft/configuration), 404 "Invalid method" for raft/peer and the autopilot endpoints.
fn wrong_method(id: &str) -> Answer {
    let spec = super::conformance::spec().endpoint(id);
    match spec.status_codes.get(&405) {
        Some(s) if s.body == "empty" => Answer::empty(405),
        Some(_) => Answer::text(405, INVALID_METHOD),
        None => Answer::text(404, INVALID_METHOD),
    }
}

/// The ACL check: with ACLs on, a missing token is the anonymous token (no capabilities
/// unless the test grants some), an unknown one is "ACL token not found".
pub(super) fn authorize(ctx: &Ctx<'_>) -> Result<Caller, Answer> {
    let Some(acl) = &ctx.state.acl else {
        return Ok(Caller {
            accessor_id: String::new(),
            capabilities: Vec::new(),
            management: true,
        });
    };
    let secret = ctx
        .request
        .header("x-nomad-token")
        .or_else(|| {
            ctx.request
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
        })
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let caller = match secret {
        None => Caller {
            accessor_id: "anonymous".to_string(),
            capabilities: acl.anonymous.clone(),
            management: false,
        },
        Some(secret) => match acl.tokens.iter().find(|t| t.secret_id == secret) {
            None => return Err(Answer::text(403, TOKEN_NOT_FOUND)),
            Some(t) => Caller {
                accessor_id: t.accessor_id.clone(),
                capabilities: t.capabilities.clone(),
                management: t.management,
            },
        },
    };
    let spec = super::conformance::spec().endpoint(ctx.id);
    for wanted in &spec.acl {
        // node allocations in namespaces the token cannot read are dropped, not refused.
        if ctx.id == "node-allocations" && wanted.starts_with("namespace:") {
            continue;
        }
        let ok = if wanted == "management" {
            caller.management
        } else {
            caller.can(wanted)
        };
        if !ok {
            return Err(Answer::text(403, PERMISSION_DENIED));
        }
    }
    Ok(caller)
}

macro_rules! authorized {
    ($ctx:expr) => {
        match $crate::doubles::nomad_api::routes::authorize($ctx) {
            Ok(caller) => caller,
            Err(answer) => return answer,
        }
    };
}

/// Waits (virtual time) up to the RPC hold timeout for a leader; true when there is one.
pub(super) fn hold_for_leader(cluster: &mut Cluster) -> bool {
    let until = cluster.now.plus(cluster.config.rpc_hold_timeout);
    while cluster.leader.is_none() && cluster.now < until {
        cluster.tick();
    }
    cluster.leader.is_some()
}

pub(super) fn stale(request: &RecordedRequest) -> bool {
    request
        .query_param("stale")
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

/// A read forwarded to the leader unless `?stale`: false when there is none after the hold.
pub(super) fn read_needs_leader(ctx: &mut Ctx<'_>) -> bool {
    stale(ctx.request) || hold_for_leader(ctx.cluster)
}

pub(super) fn is_leader(cluster: &Cluster, agent: Agent) -> bool {
    match agent {
        Agent::Server(i) => cluster.leader.as_deref() == Some(cluster.servers[i].id.as_str()),
        Agent::Client(_) => false,
    }
}

/// X-Nomad-Index, X-Nomad-KnownLeader and X-Nomad-LastContact (setMeta).
pub(super) fn with_meta(ctx: &Ctx<'_>, answer: Answer, index: u64) -> Answer {
    let last_contact = if is_leader(ctx.cluster, ctx.agent) {
        "0"
    } else {
        "5"
    };
    answer
        .header("X-Nomad-Index", index.to_string())
        .header(
            "X-Nomad-KnownLeader",
            ctx.cluster.leader.is_some().to_string(),
        )
        .header("X-Nomad-LastContact", last_contact)
}

/// Blocking query: with `?index=N`, waits (virtual time) until `current` passes N or `wait`
/// (default 5m, at most 10m) has passed.
pub(super) fn block(ctx: &mut Ctx<'_>, current: impl Fn(&Cluster) -> u64) {
    let Some(index) = ctx
        .request
        .query_param("index")
        .and_then(|i| i.parse::<u64>().ok())
    else {
        return;
    };
    let wait = ctx
        .request
        .query_param("wait")
        .and_then(parse_go_duration)
        .unwrap_or(std::time::Duration::from_secs(300))
        .min(std::time::Duration::from_secs(600));
    let until = ctx.cluster.now.plus(wait);
    while current(ctx.cluster) <= index && ctx.cluster.now < until {
        ctx.cluster.tick();
    }
}

/// Go's strconv.ParseBool.
pub(super) fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub(super) fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        _ => "value",
    }
}

mod nodes;
mod operator;
