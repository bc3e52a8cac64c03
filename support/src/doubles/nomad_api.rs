//! Nomad HTTP API double on 127.0.0.1: the read endpoints cluster-deploy's `status` uses,
//! shaped after Nomad's API documentation (developer.hashicorp.com/nomad/api-docs: "Status",
//! "Agent", "Nodes"), never after our client.
//!
//! # API
//!
//! ```no_run
//! use support::doubles::nomad_api::{Member, NomadApiDouble, NodeStub};
//!
//! let nomad = NomadApiDouble::start();
//! nomad.set_servers(vec![Member::server("nomad-s000000.global", "10.0.0.4")]);
//! nomad.set_leader(Some("10.0.0.4:4647"));
//! nomad.set_nodes(vec![NodeStub::ready("nomad-c000000", "dc1")]);
//! nomad.require_token("s3cret"); // ACLs on: X-Nomad-Token needed, else 403
//! let base = nomad.url(); // "http://127.0.0.1:PORT": the --nomad-address
//! ```
//!
//! # Endpoints (GET only)
//!
//! - `/v1/status/leader`: the leader's RPC address as a JSON string; with no leader, 500 and the
//!   text `No cluster leader`, as the agent answers.
//! - `/v1/status/peers`: the Raft peers' RPC addresses (the alive servers).
//! - `/v1/agent/members`: `{ServerName, ServerRegion, ServerDC, Members: [{Name, Addr, Port,
//!   Tags, Status, ProtocolMin, ProtocolMax, ProtocolCur, DelegateMin, DelegateMax, DelegateCur}]}`.
//! - `/v1/nodes`: the node stubs (`ID, Name, Address, Datacenter, NodeClass, NodePool, Version,
//!   Drain, SchedulingEligibility, Status, StatusDescription, CreateIndex, ModifyIndex`).
//! - `/v1/agent/health`: `{"client": {"ok", "message"}, "server": {"ok", "message"}}`.
//!
//! With [`NomadApiDouble::require_token`], every endpoint but `/v1/agent/health` needs
//! `X-Nomad-Token` (or `Authorization: Bearer`) with that token: otherwise 403 and the text
//! `Permission denied`. Other paths: 404; other methods: 405.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

pub use super::server::RecordedRequest;
use super::server::{Reply, Server};

/// A Serf member (a server) of `/v1/agent/members`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `<node name>.<region>`, as Nomad names server members.
    pub name: String,
    pub addr: String,
    /// The Serf port.
    pub port: u16,
    /// `alive`, `failed`, `left`.
    pub status: String,
    pub region: String,
    pub datacenter: String,
    pub build: String,
}

impl Member {
    /// An alive server in region `global`, datacenter `dc1`, Serf port 4648.
    pub fn server(name: &str, addr: &str) -> Self {
        Self {
            name: name.to_string(),
            addr: addr.to_string(),
            port: 4648,
            status: "alive".to_string(),
            region: "global".to_string(),
            datacenter: "dc1".to_string(),
            build: "1.10.5".to_string(),
        }
    }
}

/// A client node of `/v1/nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStub {
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub node_class: String,
    /// `ready`, `down`, `initializing`, `disconnected`.
    pub status: String,
    /// `eligible` or `ineligible`.
    pub eligibility: String,
    pub drain: bool,
    pub version: String,
}

impl NodeStub {
    pub fn ready(name: &str, datacenter: &str) -> Self {
        let mut id = format!("{:x}", name.len() * 7919);
        while id.len() < 8 {
            id.push('0');
        }
        Self {
            id: format!(
                "{id}-0000-4000-8000-{:012x}",
                name.bytes().map(u64::from).sum::<u64>()
            ),
            name: name.to_string(),
            address: "10.0.0.10".to_string(),
            datacenter: datacenter.to_string(),
            node_class: String::new(),
            status: "ready".to_string(),
            eligibility: "eligible".to_string(),
            drain: false,
            version: "1.10.5".to_string(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    servers: Vec<Member>,
    leader: Option<String>,
    nodes: Vec<NodeStub>,
    token: Option<String>,
    requests: Vec<RecordedRequest>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running Nomad API double. Dropping it stops the server.
pub struct NomadApiDouble {
    state: Arc<Mutex<State>>,
    server: Server,
}

impl NomadApiDouble {
    /// An agent with no servers, no leader and no nodes, and ACLs off.
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let server = {
            let state = Arc::clone(&state);
            Server::start(move |request| {
                let mut state = lock(&state);
                state.requests.push(request.clone());
                answer(&state, request)
            })
        };
        Self { state, server }
    }

    pub fn url(&self) -> &str {
        self.server.url()
    }

    pub fn set_servers(&self, servers: Vec<Member>) {
        lock(&self.state).servers = servers;
    }

    /// The leader's RPC address (`10.0.0.4:4647`), or `None` for a cluster without one.
    pub fn set_leader(&self, leader: Option<&str>) {
        lock(&self.state).leader = leader.map(str::to_string);
    }

    pub fn set_nodes(&self, nodes: Vec<NodeStub>) {
        lock(&self.state).nodes = nodes;
    }

    /// Turns ACLs on: requests need this token.
    pub fn require_token(&self, token: &str) {
        lock(&self.state).token = Some(token.to_string());
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }
}

/// The agent's JSON answers carry `application/json`, without a charset.
fn json_reply(status: u16, body: Value) -> Reply {
    Reply::new(status)
        .header("Content-Type", "application/json")
        .body(body.to_string())
}

fn answer(state: &State, request: &RecordedRequest) -> Reply {
    if request.method != "GET" {
        return Reply::text(405, "Invalid method");
    }
    let path = request.path.trim_end_matches('/');
    if path == "/v1/agent/health" {
        return json_reply(
            200,
            json!({
                "client": { "ok": true, "message": "ok" },
                "server": { "ok": true, "message": "ok" },
            }),
        );
    }
    if let Some(token) = &state.token {
        let given = request.header("x-nomad-token").or_else(|| {
            request
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
        });
        if given != Some(token.as_str()) {
            return Reply::text(403, "Permission denied");
        }
    }
    match path {
        "/v1/status/leader" => match &state.leader {
            Some(leader) => json_reply(200, json!(leader)),
            None => Reply::text(500, "No cluster leader"),
        },
        "/v1/status/peers" => json_reply(
            200,
            json!(state
                .servers
                .iter()
                .filter(|m| m.status == "alive")
                .map(|m| format!("{}:4647", m.addr))
                .collect::<Vec<_>>()),
        ),
        "/v1/agent/members" => {
            let first = state.servers.first();
            json_reply(
                200,
                json!({
                    "ServerName": first.map(|m| m.name.clone()).unwrap_or_default(),
                    "ServerRegion": first.map(|m| m.region.clone()).unwrap_or_default(),
                    "ServerDC": first.map(|m| m.datacenter.clone()).unwrap_or_default(),
                    "Members": state.servers.iter().map(|m| json!({
                        "Name": m.name,
                        "Addr": m.addr,
                        "Port": m.port,
                        "Tags": {
                            "role": "nomad",
                            "region": m.region,
                            "dc": m.datacenter,
                            "build": m.build,
                            "port": "4647",
                            "rpc_addr": m.addr,
                            "vsn": "1",
                            "raft_vsn": "3",
                        },
                        "Status": m.status,
                        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
                        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
                    })).collect::<Vec<_>>(),
                }),
            )
        }
        "/v1/nodes" => json_reply(
            200,
            json!(state
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| json!({
                    "Address": n.address,
                    "ID": n.id,
                    "Datacenter": n.datacenter,
                    "Name": n.name,
                    "NodeClass": n.node_class,
                    "NodePool": "default",
                    "Version": n.version,
                    "Drain": n.drain,
                    "SchedulingEligibility": n.eligibility,
                    "Status": n.status,
                    "StatusDescription": "",
                    "CreateIndex": 10 + i,
                    "ModifyIndex": 20 + i,
                }))
                .collect::<Vec<_>>()),
        ),
        _ => Reply::text(404, "Not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str, token: Option<&str>) -> (u16, String) {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .unwrap();
        let mut request = client.get(url);
        if let Some(t) = token {
            request = request.header("X-Nomad-Token", t);
        }
        let response = request.send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    }

    #[test]
    fn serves_leader_members_and_nodes() {
        let nomad = NomadApiDouble::start();
        assert_eq!(
            get(&format!("{}/v1/status/leader", nomad.url()), None),
            (500, "No cluster leader".to_string())
        );
        nomad.set_servers(vec![Member::server("s1.global", "10.0.0.4")]);
        nomad.set_leader(Some("10.0.0.4:4647"));
        nomad.set_nodes(vec![NodeStub::ready("c1", "dc1")]);
        let (status, body) = get(&format!("{}/v1/status/leader", nomad.url()), None);
        assert_eq!((status, body.as_str()), (200, "\"10.0.0.4:4647\""));
        let (_, body) = get(&format!("{}/v1/agent/members", nomad.url()), None);
        let members: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(members["Members"][0]["Name"], "s1.global");
        let (_, body) = get(&format!("{}/v1/nodes", nomad.url()), None);
        let nodes: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(nodes[0]["Status"], "ready");
    }

    #[test]
    fn acls_need_the_token() {
        let nomad = NomadApiDouble::start();
        nomad.require_token("t0k");
        let url = format!("{}/v1/nodes", nomad.url());
        assert_eq!(get(&url, None).0, 403);
        assert_eq!(get(&url, Some("t0k")).0, 200);
        assert_eq!(
            get(&format!("{}/v1/agent/health", nomad.url()), None).0,
            200
        );
    }
}
