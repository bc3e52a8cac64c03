//! Status, agent, Raft, autopilot, snapshot and ACL bootstrap handlers.

use serde_json::{json, Value};

use super::super::render::{self, Agent};
use super::super::SnapshotFault;
use super::*;
use crate::doubles::nomad_sim::{
    parse_go_duration, AutopilotConfig, Cluster, ServerLife, ServerOpError, RPC_PORT,
};

pub(super) fn status_leader(ctx: &mut Ctx<'_>) -> Answer {
    if stale(ctx.request) {
        let leader = render::leader_address(ctx.cluster).unwrap_or_default();
        return Answer::json(200, &json!(leader));
    }
    if !hold_for_leader(ctx.cluster) {
        return Answer::text(500, NO_LEADER);
    }
    Answer::json(200, &json!(render::leader_address(ctx.cluster)))
}

pub(super) fn status_peers(ctx: &mut Ctx<'_>) -> Answer {
    if !read_needs_leader(ctx) {
        return Answer::text(500, NO_LEADER);
    }
    Answer::json(200, &render::peers(ctx.cluster))
}

/// The server a client agent asks, or the answering server itself.
pub(super) fn server_for(cluster: &Cluster, agent: Agent) -> Option<usize> {
    match agent {
        Agent::Server(i) => Some(i),
        Agent::Client(_) => cluster
            .servers
            .iter()
            .position(|s| s.life == ServerLife::Running),
    }
}

pub(super) fn agent_members(ctx: &mut Ctx<'_>) -> Answer {
    let _caller = authorized!(ctx);
    let Some(i) = server_for(ctx.cluster, ctx.agent) else {
        return Answer::text(500, "no known servers");
    };
    Answer::json(200, &render::members(ctx.cluster, &ctx.cluster.servers[i]))
}

pub(super) fn agent_self(ctx: &mut Ctx<'_>) -> Answer {
    let _caller = authorized!(ctx);
    let acl = ctx.state.acl.is_some();
    Answer::json(200, &render::agent_self(ctx.cluster, ctx.agent, acl))
}

pub(super) fn agent_health(ctx: &mut Ctx<'_>) -> Answer {
    let types: Vec<&str> = ctx
        .request
        .query
        .iter()
        .filter(|(k, _)| k == "type")
        .map(|(_, v)| v.as_str())
        .collect();
    let (want_client, want_server) = if types.is_empty() {
        (true, true)
    } else {
        (types.contains(&"client"), types.contains(&"server"))
    };
    let mut body = serde_json::Map::new();
    if types.contains(&"client") {
        body.insert(
            "client".into(),
            json!({ "ok": false, "message": "client not enabled" }),
        );
    }
    if types.contains(&"server") {
        body.insert(
            "server".into(),
            json!({ "ok": false, "message": "server not enabled" }),
        );
    }
    match ctx.agent {
        Agent::Client(_) if want_client => {
            let known = ctx
                .cluster
                .servers
                .iter()
                .any(|s| s.life == ServerLife::Running);
            body.insert(
                "client".into(),
                if known {
                    json!({ "ok": true, "message": "ok" })
                } else {
                    json!({ "ok": false, "message": "no known servers" })
                },
            );
        }
        Agent::Server(_) if want_server => {
            let entry = if hold_for_leader(ctx.cluster) {
                json!({ "ok": true, "message": "ok" })
            } else {
                json!({ "ok": false, "message": NO_LEADER })
            };
            body.insert("server".into(), entry);
        }
        _ => {}
    }
    let all_ok = body.values().all(|v| v["ok"] == json!(true));
    let body = Value::Object(body);
    if all_ok {
        Answer::json(200, &body)
    } else {
        // The agent writes this JSON with its error path: text/plain.
        Answer::text(500, &body.to_string())
    }
}

pub(super) fn force_leave(ctx: &mut Ctx<'_>) -> Answer {
    let Some(node) = ctx
        .request
        .query_param("node")
        .filter(|n| !n.is_empty())
        .map(str::to_string)
    else {
        return Answer::text(400, "missing node to force leave");
    };
    let prune = match ctx.request.query_param("prune") {
        None => false,
        Some(v) => match parse_bool(v) {
            Some(b) => b,
            None => return Answer::text(400, "invalid prune value"),
        },
    };
    let _caller = authorized!(ctx);
    if matches!(ctx.agent, Agent::Client(_)) {
        return Answer::text(501, INVALID_METHOD);
    }
    let suffix = format!(".{}", ctx.cluster.config.region);
    let name = node.strip_suffix(&suffix).unwrap_or(&node).to_string();
    // serf broadcasts the intent whatever the name; only a failed member changes.
    ctx.cluster.force_left(&name, prune);
    Answer::empty(200)
}

pub(super) fn raft_configuration(ctx: &mut Ctx<'_>) -> Answer {
    let _caller = authorized!(ctx);
    if !read_needs_leader(ctx) {
        return Answer::text(500, NO_LEADER);
    }
    Answer::json(200, &render::raft_configuration(ctx.cluster))
}

pub(super) fn raft_peer_remove(ctx: &mut Ctx<'_>) -> Answer {
    if ctx.request.query_param("address").is_some() {
        return Answer::text(
            400,
            "Removing a peer by address is not supported in the current raft protocol version",
        );
    }
    let Some(id) = ctx
        .request
        .query_param("id")
        .filter(|i| !i.is_empty())
        .map(str::to_string)
    else {
        return Answer::text(400, "Must specify the peer's ID to remove");
    };
    let _caller = authorized!(ctx);
    if !hold_for_leader(ctx.cluster) {
        return Answer::text(500, NO_LEADER);
    }
    match ctx.cluster.remove_peer(&id) {
        Ok(()) => Answer::empty(200),
        Err(ServerOpError::NoLeader) => Answer::text(500, NO_LEADER),
        Err(ServerOpError::PeerNotFound(id)) => Answer::text(
            500,
            &format!("id \"{id}\" was not found in the Raft configuration"),
        ),
    }
}

pub(super) fn transfer_leadership(ctx: &mut Ctx<'_>) -> Answer {
    let id = ctx.request.query_param("id").filter(|v| !v.is_empty());
    let address = ctx.request.query_param("address").filter(|v| !v.is_empty());
    let target = match (id, address) {
        (None, None) => return Answer::text(400, "must specify id or address"),
        (Some(_), Some(_)) => return Answer::text(400, "either id or address"),
        (Some(id), None) if !is_uuid(id) => return Answer::text(400, "id must be a uuid"),
        (Some(id), None) => Ok(id.to_string()),
        (None, Some(a)) if a.parse::<std::net::SocketAddr>().is_err() => {
            return Answer::text(400, "address must be in IP:port format")
        }
        (None, Some(a)) => Err(a.to_string()),
    };
    let _caller = authorized!(ctx);
    if ctx.cluster.leader.is_none() {
        return Answer::text(503, NO_LEADER);
    }
    let (kind, value, id) = match target {
        Ok(id) => ("id", id.clone(), Some(id)),
        Err(address) => {
            let id = ctx
                .cluster
                .raft
                .iter()
                .filter_map(|(id, _)| ctx.cluster.server_by_id(id))
                .find(|s| format!("{}:{RPC_PORT}", s.ip) == address)
                .map(|s| s.id.clone());
            ("address", address, id)
        }
    };
    let not_found = || {
        Answer::text(
            400,
            &format!("{kind} \"{value}\" was not found in the Raft configuration"),
        )
    };
    let Some(id) = id else {
        return not_found();
    };
    let from = ctx.cluster.leader.clone().unwrap_or_default();
    let address_of = |cluster: &Cluster, id: &str| {
        cluster
            .server_by_id(id)
            .map(|s| format!("{}:{RPC_PORT}", s.ip))
            .unwrap_or_default()
    };
    let from_address = address_of(ctx.cluster, &from);
    match ctx.cluster.transfer_leadership(&id) {
        Ok(noop) => Answer::json(
            200,
            &json!({
                "From": { "Address": from_address, "ID": from },
                "To": { "Address": address_of(ctx.cluster, &id), "ID": id },
                "Noop": noop,
                "Err": null,
            }),
        ),
        Err(ServerOpError::NoLeader) => Answer::text(503, NO_LEADER),
        Err(ServerOpError::PeerNotFound(_)) => not_found(),
    }
}

pub(super) fn autopilot_get(ctx: &mut Ctx<'_>) -> Answer {
    let _caller = authorized!(ctx);
    if !read_needs_leader(ctx) {
        return Answer::text(500, NO_LEADER);
    }
    match render::autopilot_configuration(ctx.cluster) {
        Some(body) => Answer::json(200, &body),
        None => Answer::text(500, "autopilot config not initialized yet"),
    }
}

pub(super) fn autopilot_put(ctx: &mut Ctx<'_>) -> Answer {
    let cas = match ctx.request.query_param("cas") {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(e) => return Answer::text(400, &format!("Error parsing cas value: {e}")),
        },
    };
    let body: Value = match serde_json::from_str(&ctx.request.body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Answer::text(400, "Error parsing autopilot config: not an object"),
        Err(e) => return Answer::text(400, &format!("Error parsing autopilot config: {e}")),
    };
    let duration = |key: &str| -> Result<std::time::Duration, Answer> {
        match &body[key] {
            Value::Null => Ok(std::time::Duration::ZERO),
            Value::String(s) if s.is_empty() => Ok(std::time::Duration::ZERO),
            Value::String(s) => parse_go_duration(s).ok_or_else(|| {
                Answer::text(
                    400,
                    &format!("Error parsing autopilot config: time: invalid duration {s:?}"),
                )
            }),
            other => Err(Answer::text(
                400,
                &format!(
                    "Error parsing autopilot config: json: cannot unmarshal {} into Go value of type string",
                    json_kind(other)
                ),
            )),
        }
    };
    let last_contact = match duration("LastContactThreshold") {
        Ok(d) => d,
        Err(a) => return a,
    };
    let stabilization = match duration("ServerStabilizationTime") {
        Ok(d) => d,
        Err(a) => return a,
    };
    let flag = |key: &str| body[key].as_bool().unwrap_or(false);
    let number = |key: &str| body[key].as_u64().unwrap_or(0);
    let _caller = authorized!(ctx);
    if !hold_for_leader(ctx.cluster) {
        return Answer::text(500, NO_LEADER);
    }
    let current = ctx.cluster.autopilot_config.clone();
    if let Some(cas) = cas {
        if current.as_ref().map(|c| c.modify_index) != Some(cas) {
            return Answer::json(200, &json!(false));
        }
    }
    let index = ctx.cluster.write();
    ctx.cluster.autopilot_config = Some(AutopilotConfig {
        cleanup_dead_servers: flag("CleanupDeadServers"),
        last_contact_threshold: last_contact,
        max_trailing_logs: number("MaxTrailingLogs"),
        min_quorum: number("MinQuorum"),
        server_stabilization_time: stabilization,
        enable_redundancy_zones: flag("EnableRedundancyZones"),
        disable_upgrade_migration: flag("DisableUpgradeMigration"),
        enable_custom_upgrades: flag("EnableCustomUpgrades"),
        create_index: current.map(|c| c.create_index).unwrap_or(index),
        modify_index: index,
    });
    Answer::json(200, &json!(true))
}

pub(super) fn autopilot_health(ctx: &mut Ctx<'_>) -> Answer {
    let _caller = authorized!(ctx);
    if !hold_for_leader(ctx.cluster) {
        return Answer::text(500, NO_LEADER);
    }
    let (healthy, body) = render::autopilot_health(ctx.cluster);
    Answer::json(if healthy { 200 } else { 429 }, &body)
}

pub(super) fn snapshot(ctx: &mut Ctx<'_>) -> Answer {
    let _caller = authorized!(ctx);
    if !read_needs_leader(ctx) {
        return Answer::text(500, NO_LEADER);
    }
    let archive = super::super::snapshot::archive(ctx.cluster, ctx.state.snapshot_state_bytes);
    let digest = super::super::snapshot::digest(&archive);
    let mut answer = Answer {
        status: 200,
        headers: vec![
            ("Content-Type".to_string(), "application/x-gzip".to_string()),
            ("Digest".to_string(), digest),
        ],
        body: archive,
    };
    match ctx.state.snapshot_fault {
        None => {}
        Some(SnapshotFault::DigestMismatch) => {
            answer.headers[1].1 = super::super::snapshot::digest(b"something else");
        }
        Some(SnapshotFault::CorruptArchive) => {
            // A flipped byte in the middle: the gzip CRC (and the digest) no longer match.
            let middle = answer.body.len() / 2;
            answer.body[middle] ^= 0xff;
            let digest = super::super::snapshot::digest(&answer.body);
            answer.headers[1].1 = digest;
        }
        Some(SnapshotFault::CutShort) => {
            ctx.state.cut_reply = Some(answer.body.len() / 2);
        }
    }
    answer
}

pub(super) fn acl_bootstrap(ctx: &mut Ctx<'_>) -> Answer {
    let secret = if ctx.request.body.trim().is_empty() {
        String::new()
    } else {
        match serde_json::from_str::<Value>(&ctx.request.body) {
            Ok(v) => v["BootstrapSecret"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            Err(e) => {
                return Answer::text(400, &format!("failed to decode request body: {e}"));
            }
        }
    };
    if ctx.state.acl.is_none() {
        return Answer::text(400, "ACL support disabled");
    }
    if !secret.is_empty() && !is_uuid(&secret) {
        return Answer::text(400, "invalid acl token");
    }
    if !hold_for_leader(ctx.cluster) {
        return Answer::text(500, NO_LEADER);
    }
    let acl = ctx.state.acl.as_mut().expect("ACLs on");
    if let Some(reset) = acl.bootstrap_index {
        return Answer::text(
            400,
            &format!("ACL bootstrap already done (reset index: {reset})"),
        );
    }
    let index = ctx.cluster.write();
    let secret = if secret.is_empty() {
        ctx.cluster.next_id("acl-secret")
    } else {
        secret
    };
    let accessor = ctx.cluster.next_id("acl-accessor");
    acl.bootstrap_index = Some(index);
    acl.tokens.push(super::super::Token {
        accessor_id: accessor.clone(),
        secret_id: secret.clone(),
        name: "Bootstrap Token".to_string(),
        capabilities: Vec::new(),
        management: true,
    });
    let body = json!({
        "AccessorID": accessor,
        "SecretID": secret,
        "Name": "Bootstrap Token",
        "Type": "management",
        "Policies": null,
        "Roles": null,
        "Global": true,
        "Hash": crate::doubles::nomad_sim::uuid("hash", &index.to_string()),
        "CreateTime": ctx.cluster.now.rfc3339(),
        "ExpirationTime": null,
        "ExpirationTTL": "",
        "CreateIndex": index,
        "ModifyIndex": index,
    });
    Answer::json(200, &body).header("X-Nomad-Index", index.to_string())
}
