//! The five calls the watcher makes to the local Nomad agent's HTTP API, to drain this VM's
//! client: find its node, mark it ineligible, drain it with a deadline, wait (blocking queries)
//! for its allocations to stop, and, when an event is withdrawn, make it eligible again.
//!
//! Facts from HashiCorp's API documentation and `../shared/nomad-api/` (endpoints.json and the
//! schemas derived from the Go client's structs, v1.10.5):
//! - `GET /v1/agent/self`: `stats.client.node_id` on a client agent (all `stats` values are
//!   strings); needs `agent:read`. Without it, `GET /v1/nodes` (`node:read`) and the node
//!   whose `Name` is the agent's name (run-nomad names agents after `compute.vmId`).
//! - `POST /v1/node/:id/eligibility` `{"Eligibility": "ineligible"}`; `POST
//!   /v1/node/:id/drain` `{"DrainSpec": {"Deadline": <ns>, "IgnoreSystemJobs": false}, "Meta":
//!   {...}}` where `Deadline` is integer nanoseconds, `> 0` a deadline, `< 0` force now, `0` no
//!   deadline at all; `{"DrainSpec": null, "MarkEligible": true}` ends a drain and makes the
//!   node eligible ("MarkEligible only acts with DrainSpec: null"). Both need `node:write`;
//!   "node not found" is a 500.
//! - `GET /v1/node/:id/allocations` and `GET /v1/node/:id` are blocking queries (`?index=N&wait=`,
//!   answered when `X-Nomad-Index` passes N or after `wait` plus up to `wait/16`); allocations a
//!   token may not read (`namespace:read-job`) are left out, so a finished drain is also
//!   checked on the node itself (`DrainStrategy` null once it is done).
//! - Errors are plain text; the token goes in `X-Nomad-Token` and is never logged.
//!
//! The agent's TLS: run-nomad's agent serves HTTPS with `verify_server_hostname`, so its
//! certificate names `server.<region>.nomad` or `client.<region>.nomad`; the watcher connects to
//! 127.0.0.1 and checks that name (`--nomad-tls-server-name`), with the agent's CA and, should
//! the agent ask for one, its certificate.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use support::http::Url;
use support::secret::Secret;

use super::timeline::DrainDeadline;

/// Where the local agent is and how to reach it.
#[derive(Debug, Clone)]
pub struct NomadAccess {
    pub address: Url,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The name the agent's certificate is checked against (the connection still goes to the
    /// address's host).
    pub tls_server_name: Option<String>,
    pub token: Option<Secret>,
}

/// A call that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NomadError {
    /// No answer (refused, reset, timed out): the agent may be stopped or starting.
    Unreachable(String),
    /// An answer with this status and plain-text body.
    Status { status: u16, message: String },
    /// A 200 whose body is not what the API documents.
    Body(String),
}

impl NomadError {
    /// Worth another try within the window: no answer, or a 5xx other than the ones that mean
    /// the node is not there.
    pub fn is_transient(&self) -> bool {
        match self {
            NomadError::Unreachable(_) => true,
            NomadError::Status { status, message } => {
                *status >= 500 && !message.contains("node not found")
            }
            NomadError::Body(_) => false,
        }
    }
}

impl std::fmt::Display for NomadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NomadError::Unreachable(m) | NomadError::Body(m) => f.write_str(m),
            NomadError::Status { message, .. } => f.write_str(message),
        }
    }
}

/// The local agent's API.
#[derive(Debug, Clone)]
pub struct LocalNomad {
    http: reqwest::blocking::Client,
    base: Url,
    shown: String,
    token: Option<Secret>,
}

/// What a blocking read saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen<T> {
    pub value: T,
    /// `X-Nomad-Index`, for the next blocking read.
    pub index: u64,
}

/// The parts of a node the watcher reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeState {
    pub draining: bool,
}

#[derive(Deserialize)]
struct NodeStub {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
}

#[derive(Deserialize)]
struct AllocStub {
    #[serde(rename = "ClientStatus", default)]
    client_status: Option<String>,
}

/// An allocation still running or about to: `pending` or `running` (an absent status counts as
/// live, to be safe); `complete`, `failed`, `lost` and `unknown` do not.
fn is_live(client_status: Option<&str>) -> bool {
    matches!(client_status, None | Some("pending" | "running"))
}

fn read_file(path: &PathBuf, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}

impl LocalNomad {
    /// A client for `access`; errors name the flag of a file that cannot be used.
    pub fn new(access: &NomadAccess) -> Result<Self, String> {
        let mut builder = reqwest::blocking::Client::builder()
            .user_agent(support::http::USER_AGENT)
            .connect_timeout(Duration::from_secs(3))
            // The agent is on this host: a proxy in the environment is never right.
            .no_proxy();
        let mut base = access.address.clone();
        let https = base.scheme() == "https";
        if let Some(ca) = &access.ca_file {
            let pem = read_file(ca, "--nomad-ca-file")?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("--nomad-ca-file {}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!(
                    "--nomad-ca-file {}: no PEM certificate in it",
                    ca.display()
                ));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&access.client_cert, &access.client_key) {
            let mut pem = read_file(cert, "--nomad-client-cert")?;
            pem.push(b'\n');
            pem.extend(read_file(key, "--nomad-client-key")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                format!(
                    "--nomad-client-cert {} with --nomad-client-key {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
            builder = builder.identity(identity);
        }
        if let (Some(name), true) = (&access.tls_server_name, https) {
            let port = base.port_or_known_default().unwrap_or(4646);
            let host = base
                .host_str()
                .unwrap_or("127.0.0.1")
                .trim_matches(['[', ']']);
            let addrs: Vec<std::net::SocketAddr> =
                std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
                    .map_err(|e| format!("--nomad-address {}: {e}", access.address))?
                    .collect();
            base.set_host(Some(name))
                .map_err(|e| format!("--nomad-tls-server-name {name:?}: {e}"))?;
            builder = builder.resolve_to_addrs(name, &addrs);
        }
        let http = builder
            .build()
            .map_err(|e| format!("building the Nomad API client: {e}"))?;
        Ok(Self {
            http,
            base,
            shown: access.address.to_string().trim_end_matches('/').to_string(),
            token: access.token.clone(),
        })
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.set_path(path);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    /// One request; returns the body and `X-Nomad-Index`.
    fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<(Vec<u8>, u64), NomadError> {
        let what = format!("{method} {}{path}", self.shown);
        let mut request = self
            .http
            .request(method, self.url(path, query))
            .timeout(timeout);
        if let Some(token) = &self.token {
            request = request.header("X-Nomad-Token", token.expose());
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().map_err(|e| {
            let mut message = format!("{what}: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            NomadError::Unreachable(message)
        })?;
        let status = response.status().as_u16();
        let index = response
            .headers()
            .get("x-nomad-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if status != 200 {
            let body = support::http::error_body(response);
            return Err(NomadError::Status {
                status,
                message: format!("{what}: {status}: {body}"),
            });
        }
        let mut bytes = Vec::new();
        response
            .take(16 * 1024 * 1024)
            .read_to_end(&mut bytes)
            .map_err(|e| NomadError::Unreachable(format!("{what}: reading the body: {e}")))?;
        Ok((bytes, index))
    }

    fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, NomadError> {
        serde_json::from_slice(bytes).map_err(|e| NomadError::Body(format!("{what}: {e}")))
    }

    /// This agent's node id (`stats.client.node_id` of `/v1/agent/self`), or, when the token
    /// may not read the agent (403), the id of the node named `agent_name`.
    pub fn node_id(&self, agent_name: &str) -> Result<String, NomadError> {
        let quick = Duration::from_secs(10);
        match self.call(reqwest::Method::GET, "/v1/agent/self", &[], None, quick) {
            Ok((bytes, _)) => {
                let body: Value = Self::json(&bytes, "GET /v1/agent/self")?;
                body["stats"]["client"]["node_id"]
                    .as_str()
                    .filter(|id| !id.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        NomadError::Body(
                            "GET /v1/agent/self: no stats.client.node_id (is this agent a \
                             client?)"
                                .to_string(),
                        )
                    })
            }
            Err(NomadError::Status { status: 403, .. }) => {
                tracing::info!(
                    "the token may not read /v1/agent/self (agent:read); looking for node \
                     {agent_name:?} in /v1/nodes"
                );
                let (bytes, _) = self.call(reqwest::Method::GET, "/v1/nodes", &[], None, quick)?;
                let nodes: Vec<NodeStub> = Self::json(&bytes, "GET /v1/nodes")?;
                nodes
                    .into_iter()
                    .find(|n| n.name == agent_name)
                    .map(|n| n.id)
                    .ok_or_else(|| {
                        NomadError::Body(format!("GET /v1/nodes: no node named {agent_name:?}"))
                    })
            }
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/node/:id/eligibility` `{"Eligibility": "ineligible"}`.
    pub fn mark_ineligible(&self, node_id: &str) -> Result<(), NomadError> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/node/{node_id}/eligibility"),
            &[],
            Some(json!({ "Eligibility": "ineligible" })),
            Duration::from_secs(10),
        )
        .map(|_| ())
    }

    /// `POST /v1/node/:id/drain` with this deadline; system jobs are drained too (last, as
    /// Nomad's drainer does), since the VM goes away.
    pub fn drain(
        &self,
        node_id: &str,
        deadline: DrainDeadline,
        message: &str,
    ) -> Result<(), NomadError> {
        let body = json!({
            "DrainSpec": { "Deadline": deadline.nanos(), "IgnoreSystemJobs": false },
            "Meta": { "message": message, "drained_by": "run-nomad watch-events" },
        });
        self.call(
            reqwest::Method::POST,
            &format!("/v1/node/{node_id}/drain"),
            &[],
            Some(body),
            Duration::from_secs(10),
        )
        .map(|_| ())
    }

    /// Ends any drain and makes the node eligible again (`DrainSpec: null, MarkEligible: true`).
    pub fn mark_eligible(&self, node_id: &str) -> Result<(), NomadError> {
        self.call(
            reqwest::Method::POST,
            &format!("/v1/node/{node_id}/drain"),
            &[],
            Some(json!({ "DrainSpec": null, "MarkEligible": true })),
            Duration::from_secs(10),
        )
        .map(|_| ())
    }

    /// The blocking-query parameters and the request timeout that covers Nomad's jitter.
    fn blocking(index: u64, wait: Duration) -> (Vec<(&'static str, String)>, Duration) {
        let wait_secs = wait.as_secs().max(1);
        let query = if index > 0 {
            vec![
                ("index", index.to_string()),
                ("wait", format!("{wait_secs}s")),
            ]
        } else {
            Vec::new()
        };
        let timeout = Duration::from_secs(wait_secs + wait_secs / 16 + 10);
        (query, timeout)
    }

    /// How many of the node's allocations are pending or running, after `index` changes or
    /// `wait` passes (no wait when `index` is 0).
    pub fn live_allocations(
        &self,
        node_id: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Seen<usize>, NomadError> {
        let (query, timeout) = Self::blocking(index, wait);
        let path = format!("/v1/node/{node_id}/allocations");
        let (bytes, index) = self.call(reqwest::Method::GET, &path, &query, None, timeout)?;
        let allocs: Vec<AllocStub> = Self::json(&bytes, &format!("GET {path}"))?;
        let live = allocs
            .iter()
            .filter(|a| is_live(a.client_status.as_deref()))
            .count();
        Ok(Seen { value: live, index })
    }

    /// Whether the node is still draining, after `index` changes or `wait` passes.
    pub fn node(
        &self,
        node_id: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Seen<NodeState>, NomadError> {
        let (query, timeout) = Self::blocking(index, wait);
        let path = format!("/v1/node/{node_id}");
        let (bytes, index) = self.call(reqwest::Method::GET, &path, &query, None, timeout)?;
        let node: Value = Self::json(&bytes, &format!("GET {path}"))?;
        let draining = !node.get("DrainStrategy").is_none_or(Value::is_null);
        Ok(Seen {
            value: NodeState { draining },
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pending_and_running_allocations_are_live() {
        assert!(is_live(Some("pending")));
        assert!(is_live(Some("running")));
        assert!(is_live(None));
        for done in ["complete", "failed", "lost", "unknown"] {
            assert!(!is_live(Some(done)), "{done}");
        }
    }

    #[test]
    fn the_documented_samples_parse() {
        let dir = support::doubles::nomad_api::shared_dir().join("examples");
        let allocs: Vec<AllocStub> = serde_json::from_str(
            &std::fs::read_to_string(dir.join("node-allocations.json")).unwrap(),
        )
        .unwrap();
        assert!(!allocs.is_empty());
        let nodes: Vec<NodeStub> =
            serde_json::from_str(&std::fs::read_to_string(dir.join("nodes.json")).unwrap())
                .unwrap();
        assert!(nodes.iter().all(|n| !n.id.is_empty() && !n.name.is_empty()));
        let agent: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("agent-self.json")).unwrap())
                .unwrap();
        assert!(agent["stats"].is_object());
    }

    #[test]
    fn errors_say_whether_to_try_again() {
        assert!(NomadError::Unreachable("refused".into()).is_transient());
        assert!(NomadError::Status {
            status: 500,
            message: "No cluster leader".into()
        }
        .is_transient());
        assert!(!NomadError::Status {
            status: 500,
            message: "node not found".into()
        }
        .is_transient());
        assert!(!NomadError::Status {
            status: 403,
            message: "Permission denied".into()
        }
        .is_transient());
    }
}
