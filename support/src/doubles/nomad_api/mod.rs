//! Nomad HTTP API double on 127.0.0.1, answering for a simulated cluster
//! ([`crate::doubles::nomad_sim`]) the way HashiCorp's agent does: the twenty endpoints of
//! `../shared/nomad-api/endpoints.json` that `roll` and `status` use, with their documented
//! status codes, plain-text errors, headers, ACL answers and wrong-method behaviour (see
//! `routes.rs`).
//!
//! **Conformance is checked, not hoped for.** Every reply is validated against its schema in
//! `../shared/nomad-api/schemas/` (draft 2020-12, formats checked), its status against the ones
//! endpoints.json documents and its `X-Nomad-*` headers against the ones it lists; every request
//! body against `request_schema` and every query parameter against the endpoint's list. What
//! does not conform is recorded ([`NomadApiDouble::violations`]) and the double panics when it
//! is dropped, so any test using it fails on a non-conforming exchange.
//!
//! # API
//!
//! ```no_run
//! use std::time::Duration;
//! use support::doubles::nomad_api::NomadApiDouble;
//! use support::doubles::nomad_sim::{SimConfig, Simulation};
//!
//! let sim = Simulation::new(SimConfig {
//!     advance_per_request: Duration::from_millis(500), // each request moves time on
//!     ..SimConfig::default()
//! });
//! sim.start_running(&["s0", "s1", "s2"], &["c0"]);
//! let nomad = NomadApiDouble::serve(&sim);
//! nomad.enable_acls();
//! nomad.add_token("00000000-0000-4000-8000-000000000001", &["management"]);
//! let base = nomad.url(); // "http://127.0.0.1:PORT": what NOMAD_ADDR would be (the load balancer)
//! let s1 = nomad.agent_url("s1"); // that one agent's own HTTP API
//! ```
//!
//! The load-balancer URL is answered by the first running server (a health-probed load balancer
//! skips dead ones); when none runs, connections are dropped. [`NomadApiDouble::serve_tls`]
//! serves HTTPS with a rustls configuration from [`crate::doubles::tls`] (client certificates
//! required when that configuration asks for them).
//!
//! For tests written before the simulation, [`NomadApiDouble::start`] gives a frozen cluster set
//! by hand with [`NomadApiDouble::set_servers`], [`NomadApiDouble::set_leader`] and
//! [`NomadApiDouble::set_nodes`].

mod conformance;
mod render;
mod routes;
mod snapshot;

use std::sync::{Arc, Mutex, MutexGuard};

pub use conformance::shared_dir;

pub use super::server::RecordedRequest;
use super::server::{Reply, Server};
use crate::doubles::nomad_sim::{
    uuid, Drain, Node, NodeStatus, ServerAgent, ServerLife, SimConfig, SimTime, Simulation,
};

/// A fault in `GET /v1/operator/snapshot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotFault {
    /// The `Digest` header does not match the body.
    DigestMismatch,
    /// A byte of the archive is flipped (and the digest made to match it): only the archive's
    /// own checks find it.
    CorruptArchive,
    /// `Content-Length` announces the whole archive, half of it arrives, the connection closes.
    CutShort,
}

/// An ACL token the double knows.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub accessor_id: String,
    pub secret_id: String,
    #[allow(dead_code)]
    pub name: String,
    /// `node:read`, `operator:write`, ... (`management` tokens need none).
    pub capabilities: Vec<String>,
    pub management: bool,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct AclState {
    pub tokens: Vec<Token>,
    /// What requests without a token may do (the anonymous policy).
    pub anonymous: Vec<String>,
    /// Set once `/v1/acl/bootstrap` succeeded (the "reset index").
    pub bootstrap_index: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct DoubleState {
    /// `None`: ACLs disabled.
    pub acl: Option<AclState>,
    pub requests: Vec<RecordedRequest>,
    pub violations: Vec<String>,
    pub snapshot_fault: Option<SnapshotFault>,
    pub snapshot_state_bytes: usize,
    pub drop_next: usize,
    /// Set by a handler: send only this much of the body.
    pub cut_reply: Option<usize>,
}

/// Which listener a request came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    LoadBalancer,
    Agent(String),
}

struct Shared {
    sim: Simulation,
    state: Mutex<DoubleState>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, DoubleState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running Nomad API double. Dropping it stops its listeners, and fails the test if any
/// exchange did not conform to HashiCorp's definitions.
pub struct NomadApiDouble {
    shared: Arc<Shared>,
    server: Server,
    tls: Option<Arc<rustls::ServerConfig>>,
    agents: Mutex<Vec<(String, Server)>>,
}

impl std::fmt::Debug for NomadApiDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NomadApiDouble")
            .field("url", &self.server.url())
            .finish_non_exhaustive()
    }
}

fn listen(shared: &Arc<Shared>, target: Target, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
    let shared = Arc::clone(shared);
    let handler = move |request: &RecordedRequest| handle(&shared, &target, request);
    match tls {
        None => Server::start(handler),
        Some(config) => Server::start_tls(config, |_| handler),
    }
}

impl NomadApiDouble {
    /// Plain HTTP for this simulation.
    pub fn serve(sim: &Simulation) -> Self {
        Self::serve_with(sim, None)
    }

    /// HTTPS for this simulation (see [`crate::doubles::tls::IssuedCert::server_config`]).
    pub fn serve_tls(sim: &Simulation, tls: Arc<rustls::ServerConfig>) -> Self {
        Self::serve_with(sim, Some(tls))
    }

    fn serve_with(sim: &Simulation, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        // Load (and fail early on) the shared definitions before serving anything.
        let _ = conformance::spec();
        let shared = Arc::new(Shared {
            sim: sim.clone(),
            state: Mutex::new(DoubleState {
                snapshot_state_bytes: 64 * 1024,
                ..DoubleState::default()
            }),
        });
        let server = listen(&shared, Target::LoadBalancer, tls.clone());
        Self {
            shared,
            server,
            tls,
            agents: Mutex::new(Vec::new()),
        }
    }

    /// A frozen cluster with no servers, no leader and no nodes, ACLs off, for tests that set
    /// it by hand (nothing elects, joins or moves by itself).
    pub fn start() -> Self {
        let sim = Simulation::new(SimConfig::default());
        sim.lock().frozen = true;
        Self::serve(&sim)
    }

    /// The load balancer's URL, `http://127.0.0.1:PORT` (or `https://`).
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// The URL of one agent's own HTTP API (started on first use). Requests get no answer
    /// while that agent is not running.
    pub fn agent_url(&self, name: &str) -> String {
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, server)) = agents.iter().find(|(n, _)| n == name) {
            return server.url().to_string();
        }
        let server = listen(
            &self.shared,
            Target::Agent(name.to_string()),
            self.tls.clone(),
        );
        let url = server.url().to_string();
        agents.push((name.to_string(), server));
        url
    }

    pub fn simulation(&self) -> Simulation {
        self.shared.sim.clone()
    }

    /// Turns ACLs on (no tokens yet: every request needing a capability gets 403 until one is
    /// added or bootstrapped).
    pub fn enable_acls(&self) {
        let mut state = self.shared.state();
        if state.acl.is_none() {
            state.acl = Some(AclState::default());
        }
    }

    /// Adds a token with this SecretID and these capabilities (`management` for a management
    /// token, else e.g. `node:read`, `node:write`, `agent:read`, `agent:write`,
    /// `operator:read`, `operator:write`, `namespace:read-job`). Turns ACLs on. Returns the
    /// AccessorID.
    pub fn add_token(&self, secret: &str, capabilities: &[&str]) -> String {
        self.enable_acls();
        let mut state = self.shared.state();
        let acl = state.acl.as_mut().expect("ACLs on");
        let accessor_id = uuid("accessor", secret);
        acl.tokens.push(Token {
            accessor_id: accessor_id.clone(),
            secret_id: secret.to_string(),
            name: format!("token {}", acl.tokens.len() + 1),
            management: capabilities.contains(&"management"),
            capabilities: capabilities
                .iter()
                .filter(|c| **c != "management")
                .map(|c| c.to_string())
                .collect(),
        });
        accessor_id
    }

    /// What requests without a token may do once ACLs are on.
    pub fn set_anonymous_policy(&self, capabilities: &[&str]) {
        self.enable_acls();
        let mut state = self.shared.state();
        state.acl.as_mut().expect("ACLs on").anonymous =
            capabilities.iter().map(|c| c.to_string()).collect();
    }

    /// ACLs on, with one management token (for `status`-style tests).
    pub fn require_token(&self, token: &str) {
        self.add_token(token, &["management"]);
    }

    pub fn set_snapshot_fault(&self, fault: Option<SnapshotFault>) {
        self.shared.state().snapshot_fault = fault;
    }

    /// Size of the snapshot's `state.bin` (64 KiB unless set).
    pub fn set_snapshot_state_bytes(&self, bytes: usize) {
        self.shared.state().snapshot_state_bytes = bytes;
    }

    /// The next `n` requests get no answer (the connection is dropped).
    pub fn drop_next_requests(&self, n: usize) {
        self.shared.state().drop_next = n;
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.state().requests.clone()
    }

    /// Exchanges that did not conform to endpoints.json or the schemas.
    pub fn violations(&self) -> Vec<String> {
        self.shared.state().violations.clone()
    }

    /// The violations so far, forgotten (for a test that provokes one on purpose).
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.shared.state().violations)
    }

    /// Replaces the servers of a frozen cluster by these members (`alive`, `failed`, `left`),
    /// every alive one a voter.
    pub fn set_servers(&self, servers: Vec<Member>) {
        let mut cluster = self.shared.sim.lock();
        cluster.frozen = true;
        let detection = cluster.config.failure_detection;
        cluster.now = cluster.now.max(SimTime(0).plus(detection));
        if let Some(first) = servers.first() {
            cluster.config.region = first.region.clone();
            cluster.config.datacenter = first.datacenter.clone();
        }
        cluster.servers.clear();
        cluster.raft.clear();
        cluster.index = cluster.index.max(1000);
        cluster.term = cluster.term.max(1);
        let (index, term) = (cluster.index, cluster.term);
        for m in servers {
            let name = m
                .name
                .strip_suffix(&format!(".{}", m.region))
                .unwrap_or(&m.name)
                .to_string();
            let life = match m.status.as_str() {
                "alive" => ServerLife::Running,
                "left" => ServerLife::Left,
                _ => ServerLife::Vanished { at: SimTime(0) },
            };
            let id = uuid("node", &name);
            if life == ServerLife::Running {
                cluster.raft.push((id.clone(), true));
            }
            cluster.servers.push(ServerAgent {
                name,
                ip: m.addr,
                id,
                version: m.build,
                life,
                force_left: false,
                pruned: false,
                applied_index: index,
                last_term: term,
                last_contact: None,
                joined_at: Some(SimTime(0)),
                caught_up_at: Some(SimTime(0)),
                never_catches_up: false,
                healthy: life == ServerLife::Running,
                stable_since: SimTime(0),
                created_at: SimTime(0),
            });
        }
        cluster.raft_config_index = index;
        let leader_alive = cluster
            .leader
            .as_deref()
            .is_some_and(|id| cluster.raft.iter().any(|(p, _)| p == id));
        if !leader_alive {
            cluster.leader = None;
        }
    }

    /// Makes the server with this Raft address (`10.0.0.4:4647`) the leader of a frozen
    /// cluster, or leaves it without one.
    pub fn set_leader(&self, leader: Option<&str>) {
        let mut cluster = self.shared.sim.lock();
        cluster.frozen = true;
        let host = leader.map(|l| l.rsplit_once(':').map(|(h, _)| h).unwrap_or(l));
        let id = host.and_then(|h| {
            cluster
                .servers
                .iter()
                .find(|s| s.ip == h)
                .map(|s| s.id.clone())
        });
        assert!(
            leader.is_none() || id.is_some(),
            "set_leader({leader:?}): no server has that address; call set_servers first"
        );
        let now = cluster.now;
        for server in &mut cluster.servers {
            if server.life == ServerLife::Running {
                server.last_contact = Some(now);
            }
        }
        cluster.leader = id;
        cluster.leaderless_since = cluster.leader.is_none().then_some(now);
    }

    /// Replaces the nodes of a frozen cluster.
    pub fn set_nodes(&self, nodes: Vec<NodeStub>) {
        let mut cluster = self.shared.sim.lock();
        cluster.frozen = true;
        let now = cluster.now;
        cluster.nodes = nodes
            .into_iter()
            .enumerate()
            .map(|(i, n)| Node {
                id: n.id,
                computer_name: n.name.clone(),
                name: n.name,
                ip: n.address,
                datacenter: n.datacenter,
                version: n.version,
                node_class: n.node_class,
                status: match n.status.as_str() {
                    "ready" => NodeStatus::Ready,
                    "initializing" => NodeStatus::Initializing,
                    _ => NodeStatus::Down,
                },
                eligible: n.eligibility == "eligible",
                drain: n.drain.then_some(Drain {
                    deadline_ns: 0,
                    ignore_system_jobs: false,
                    force_deadline: None,
                    started_at: now,
                }),
                last_drain: None,
                events: Vec::new(),
                status_updated_at: now,
                last_heartbeat: now,
                create_index: 10 + i as u64,
                modify_index: 20 + i as u64,
                drain_stuck: false,
            })
            .collect();
        cluster.nodes_index = cluster
            .nodes
            .iter()
            .map(|n| n.modify_index)
            .max()
            .unwrap_or(0);
    }
}

impl Drop for NomadApiDouble {
    fn drop(&mut self) {
        let violations = self.violations();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!(
                "the Nomad API double saw {} exchange(s) that do not conform to ../shared/nomad-api:\n{}",
                violations.len(),
                violations.join("\n")
            );
        }
    }
}

/// One request: record it, let virtual time pass, route it, answer, check both.
fn handle(shared: &Shared, target: &Target, request: &RecordedRequest) -> Reply {
    let mut state = shared.state();
    let mut cluster = shared.sim.lock();
    state.requests.push(request.clone());
    let advance = cluster.config.advance_per_request;
    if !advance.is_zero() {
        let until = cluster.now.plus(advance);
        cluster.run_until(until);
    }
    if state.drop_next > 0 {
        state.drop_next -= 1;
        return Reply::no_answer();
    }
    let Some(agent) = routes::answering(&cluster, target) else {
        return Reply::no_answer();
    };
    let spec = conformance::spec();
    let Some(id) = routes::route(request) else {
        state.violations.push(format!(
            "{} {}: not an endpoint of endpoints.json",
            request.method, request.path
        ));
        return Reply::text(404, "404 page not found\n");
    };
    let request_problems = spec.check_request(id, request);
    state.violations.extend(request_problems);
    let answer = {
        let mut ctx = routes::Ctx {
            cluster: &mut cluster,
            state: &mut state,
            request,
            agent,
            id,
        };
        routes::dispatch(&mut ctx)
    };
    let reply_problems = spec.check_reply(id, answer.status, &answer.headers, &answer.body);
    state.violations.extend(reply_problems);
    let mut reply = Reply::new(answer.status);
    for (name, value) in answer.headers {
        reply = reply.header(&name, value);
    }
    reply = reply.body(answer.body);
    if let Some(bytes) = state.cut_reply.take() {
        reply = reply.cut_after(bytes);
    }
    reply
}

/// A server for [`NomadApiDouble::set_servers`].
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

/// A client node for [`NomadApiDouble::set_nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStub {
    pub id: String,
    pub name: String,
    pub address: String,
    pub datacenter: String,
    pub node_class: String,
    /// `ready`, `down`, `initializing`.
    pub status: String,
    /// `eligible` or `ineligible`.
    pub eligibility: String,
    pub drain: bool,
    pub version: String,
}

impl NodeStub {
    pub fn ready(name: &str, datacenter: &str) -> Self {
        Self {
            id: uuid("node", name),
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

#[cfg(test)]
mod tests;
