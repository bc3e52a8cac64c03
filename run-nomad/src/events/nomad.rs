//! The watcher's plan of calls to the local Nomad agent, to drain this VM's client: find its
//! node, mark it ineligible, drain it with a deadline, wait (blocking queries) for its
//! allocations to stop, and, when an event is withdrawn, make it eligible again. The requests
//! themselves go through the workspace's Nomad client, [`support::nomad`]; what is here is
//! the watcher's own: its flags, its timeouts, which answers it retries, and what it reads.
//!
//! Facts from HashiCorp's API documentation and `../shared/nomad-api/` (endpoints.json and the
//! schemas derived from the Go client's structs, v1.10.5):
//! - `GET /v1/agent/self`: `stats.client.node_id` on a client agent (all `stats` values are
//!   strings); needs `agent:read`. Without it, `GET /v1/nodes` (`node:read`) and the node
//!   whose `Name` is the agent's name (run-nomad names agents after `compute.vmId`).
//! - Eligibility and drain bodies: [`NomadClient::set_eligibility`], [`NomadClient::drain`] and
//!   [`NomadClient::cancel_drain`] (`DrainSpec: null, MarkEligible: true` ends a drain and
//!   makes the node eligible). Both need `node:write`; "node not found" is a 500.
//! - `GET /v1/node/:id/allocations` and `GET /v1/node/:id` are blocking queries; allocations a
//!   token may not read (`namespace:read-job`) are left out, so a finished drain is also
//!   checked on the node itself (`DrainStrategy` null once it is done).
//!
//! The client makes one attempt per call ([`Policy::once`]): the watcher retries itself, on
//! its own clock and against the event's deadline ([`is_transient`]).
//!
//! The agent's TLS: run-nomad's agent serves HTTPS with `verify_server_hostname`, so its
//! certificate names `server.<region>.nomad` or `client.<region>.nomad`; the watcher connects to
//! 127.0.0.1 and checks that name (`--nomad-tls-server-name`), with the agent's CA and, should
//! the agent ask for one, its certificate.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use support::http::Url;
use support::nomad::{NomadClient, NomadSettings, QueryOptions, SettingNames, TlsFiles};
use support::retry::Policy;
use support::secret::Secret;

pub use support::nomad::NomadError;

use super::timeline::DrainDeadline;

/// The watcher's flags, as errors about the client's settings name them.
const FLAGS: SettingNames = SettingNames {
    address: "--nomad-address",
    ca_cert: "--nomad-ca-file",
    // The watcher has no flag for a CA directory; it never sets one.
    ca_path: "the Nomad CA directory",
    client_cert: "--nomad-client-cert",
    client_key: "--nomad-client-key",
    server_name: "--nomad-tls-server-name",
};

/// Each call's wait for an answer (a blocking read gets its wait on top), and for a connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest answer read: a node's allocations, on the busiest client, fit many times over.
const BODY_LIMIT: u64 = 16 * 1024 * 1024;

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

impl NomadAccess {
    /// The client's settings: one attempt per call, no proxy (the agent is on this host), a
    /// bounded body, errors naming the watcher's flags.
    pub fn settings(&self) -> NomadSettings {
        let mut settings = NomadSettings::new(self.address.clone());
        settings.token = self.token.clone();
        settings.tls = TlsFiles {
            ca_cert: self.ca_file.clone(),
            ca_path: None,
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            server_name: self.tls_server_name.clone(),
        };
        settings.timeouts.connect = CONNECT_TIMEOUT;
        settings.timeouts.request = REQUEST_TIMEOUT;
        settings.timeouts.read_retries = Policy::once("Nomad API read");
        settings.timeouts.write_retries = Policy::once("Nomad API write");
        settings.names = FLAGS;
        settings.no_proxy = true;
        settings.body_limit = Some(BODY_LIMIT);
        settings
    }
}

/// Worth another try within the window: no answer (the agent may be stopped or starting), or a
/// 5xx other than the one that means the node is not there.
pub fn is_transient(error: &NomadError) -> bool {
    match error {
        NomadError::Transport { .. } => true,
        NomadError::GaveUp { last, .. } => is_transient(last),
        NomadError::Status { status, body, .. } => {
            *status >= 500 && !body.contains("node not found")
        }
        _ => false,
    }
}

/// The local agent's API.
#[derive(Debug, Clone)]
pub struct LocalNomad {
    client: NomadClient,
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

/// An allocation still running or about to: `pending` or `running` (an absent status counts as
/// live, to be safe); `complete`, `failed`, `lost` and `unknown` do not. (Stricter than
/// [`support::nomad::Allocation::is_live`], which keeps `unknown`: on this VM's own node an
/// allocation whose client lost touch is not one the drain waits for.)
fn is_live(client_status: &str) -> bool {
    matches!(client_status, "" | "pending" | "running")
}

/// The blocking-query options of a read after `index` (0: no wait), waiting at most `wait`,
/// in whole seconds and at least one.
fn blocking(index: u64, wait: Duration) -> QueryOptions {
    QueryOptions {
        stale: false,
        wait_index: (index > 0).then_some(index),
        wait: Some(Duration::from_secs(wait.as_secs().max(1))),
    }
}

impl LocalNomad {
    /// A client for `access`; errors name the flag of a file that cannot be used.
    pub fn new(access: &NomadAccess) -> Result<Self, String> {
        let client = NomadClient::with_settings(access.settings()).map_err(|e| e.to_string())?;
        Ok(Self { client })
    }

    /// This agent's node id (`stats.client.node_id` of `/v1/agent/self`), or, when the token
    /// may not read the agent (403), the id of the node named `agent_name`.
    pub fn node_id(&self, agent_name: &str) -> Result<String, NomadError> {
        let not_found = |path: &str, message: String| NomadError::Body {
            method: "GET".to_string(),
            url: self.client.endpoint(path).to_string(),
            message,
        };
        match self.client.agent_self() {
            Ok(agent) => agent.client_node_id().map(str::to_string).ok_or_else(|| {
                not_found(
                    "v1/agent/self",
                    "no stats.client.node_id (is this agent a client?)".to_string(),
                )
            }),
            Err(e) if e.status() == Some(403) => {
                tracing::info!(
                    "the token may not read /v1/agent/self (agent:read); looking for node \
                     {agent_name:?} in /v1/nodes"
                );
                self.client
                    .nodes()?
                    .into_iter()
                    .find(|n| n.name == agent_name)
                    .map(|n| n.id)
                    .ok_or_else(|| not_found("v1/nodes", format!("no node named {agent_name:?}")))
            }
            Err(e) => Err(e),
        }
    }

    /// Marks the node ineligible for new work.
    pub fn mark_ineligible(&self, node_id: &str) -> Result<(), NomadError> {
        self.client.set_eligibility(node_id, false).map(|_| ())
    }

    /// Drains the node with this deadline; system jobs are drained too (last, as Nomad's
    /// drainer does), since the VM goes away. `message` lands in the drain's `Meta`.
    pub fn drain(
        &self,
        node_id: &str,
        deadline: DrainDeadline,
        message: &str,
    ) -> Result<(), NomadError> {
        let meta = BTreeMap::from([
            ("message".to_string(), message.to_string()),
            (
                "drained_by".to_string(),
                "run-nomad watch-events".to_string(),
            ),
        ]);
        self.client
            .drain(node_id, deadline, false, meta)
            .map(|_| ())
    }

    /// Ends any drain and makes the node eligible again.
    pub fn mark_eligible(&self, node_id: &str) -> Result<(), NomadError> {
        self.client.cancel_drain(node_id, true).map(|_| ())
    }

    /// How many of the node's allocations are pending or running, after `index` changes or
    /// `wait` passes (no wait when `index` is 0).
    pub fn live_allocations(
        &self,
        node_id: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Seen<usize>, NomadError> {
        let (allocations, meta) = self
            .client
            .node_allocations_with(node_id, &blocking(index, wait))?;
        let live = allocations
            .iter()
            .filter(|a| is_live(&a.client_status))
            .count();
        Ok(Seen {
            value: live,
            index: meta.last_index,
        })
    }

    /// Whether the node is still draining, after `index` changes or `wait` passes.
    pub fn node(
        &self,
        node_id: &str,
        index: u64,
        wait: Duration,
    ) -> Result<Seen<NodeState>, NomadError> {
        let (node, meta) = self.client.node_with(node_id, &blocking(index, wait))?;
        let Some(node) = node else {
            return Err(NomadError::Body {
                method: "GET".to_string(),
                url: self
                    .client
                    .endpoint(&format!("v1/node/{node_id}"))
                    .to_string(),
                message: "404: the node is gone".to_string(),
            });
        };
        Ok(Seen {
            value: NodeState {
                draining: node.drain_strategy.is_some(),
            },
            index: meta.last_index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use support::nomad::{AgentSelf, Allocation, NodeListStub};

    #[test]
    fn only_pending_and_running_allocations_are_live() {
        assert!(is_live("pending"));
        assert!(is_live("running"));
        assert!(is_live(""));
        for done in ["complete", "failed", "lost", "unknown"] {
            assert!(!is_live(done), "{done}");
        }
    }

    #[test]
    fn the_documented_samples_give_what_the_watcher_reads() {
        let dir = support::doubles::nomad_api::shared_dir().join("examples");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
        let allocs: Vec<Allocation> = serde_json::from_str(&read("node-allocations.json")).unwrap();
        assert!(!allocs.is_empty());
        let nodes: Vec<NodeListStub> = serde_json::from_str(&read("nodes.json")).unwrap();
        assert!(nodes.iter().all(|n| !n.id.is_empty() && !n.name.is_empty()));
        let agent: AgentSelf = serde_json::from_str(&read("agent-self.json")).unwrap();
        assert_eq!(
            agent.client_node_id(),
            Some("fb2170a8-257d-3c64-b14d-bc06cc94e34c")
        );
    }

    fn status(status: u16, body: &str) -> NomadError {
        NomadError::Status {
            method: "GET".into(),
            url: "http://127.0.0.1:4646/v1/agent/self".into(),
            status,
            body: body.into(),
        }
    }

    #[test]
    fn errors_say_whether_to_try_again() {
        assert!(is_transient(&NomadError::Transport {
            method: "GET".into(),
            url: "http://127.0.0.1:4646/v1/agent/self".into(),
            message: "connection refused".into(),
        }));
        assert!(is_transient(&status(500, "No cluster leader")));
        assert!(!is_transient(&status(500, "node not found")));
        assert!(!is_transient(&status(403, "Permission denied")));
    }

    #[test]
    fn blocking_reads_wait_whole_seconds_and_only_after_an_index() {
        let first = blocking(0, Duration::from_millis(30_500));
        assert_eq!(first.wait_index, None);
        let next = blocking(42, Duration::from_millis(300));
        assert_eq!(next.wait_index, Some(42));
        assert_eq!(next.wait, Some(Duration::from_secs(1)));
        assert_eq!(
            blocking(42, Duration::from_millis(30_500)).wait,
            Some(Duration::from_secs(30))
        );
    }
}
