//! The one client of Nomad's HTTP API (developer.hashicorp.com/nomad/api-docs; the facts and
//! schemas in `../shared/nomad-api/`) that the tools share: cluster-deploy's `status`, `roll`
//! and ACL bootstrap, and run-nomad's Scheduled Events watcher.
//!
//! - [`settings`]: the address, ACL token and TLS files, with the Nomad CLI's `NOMAD_*`
//!   conventions (or a tool's own flags, named in errors through [`SettingNames`]); timeouts,
//!   retry policies, proxy use and the body limit, where the tools differ.
//! - [`types`]: the bodies, tolerant of unknown fields, `null`s and absent optional fields.
//! - agent (`members`, `self`, `health`, guarded `force-leave`), operator (Raft configuration,
//!   peers, leader, autopilot, per-server Raft indexes, leadership transfer, guarded peer
//!   removal), nodes (list, read, allocations, eligibility, drain, with blocking queries), ACL
//!   bootstrap and (feature `nomad-snapshot`, which brings gzip and tar) snapshot save, each in
//!   its own module as methods of [`NomadClient`].
//!
//! Every error names the method, the URL, the status and Nomad's plain-text body (bounded);
//! the token travels in `X-Nomad-Token` and is never part of a URL, a log line or an error.
//! Reads and writes are retried by explicit bounded policies ([`settings::Timeouts`]) on
//! transport errors and 502/503/504 only: every write this client makes is idempotent. A
//! caller that runs its own retry loop (the watcher, against its deadline) sets both policies
//! to [`crate::retry::Policy::once`].

mod acl;
mod agent;
mod nodes;
mod operator;
pub mod settings;
#[cfg(feature = "nomad-snapshot")]
mod snapshot;
pub mod types;

use std::time::Duration;

use crate::http::Url;
use crate::retry::{Attempt, Policy, RetryError};
use reqwest::blocking::{RequestBuilder, Response};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use acl::BootstrapOutcome;
pub use operator::TransferOutcome;
pub use settings::{NomadSettings, SettingNames, Timeouts, TlsFiles};
#[cfg(feature = "nomad-snapshot")]
pub use snapshot::SavedSnapshot;
pub use types::*;

use crate::azure_auth::error_chain;
use crate::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum NomadError {
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
    },
    #[error("{method} {url}: {status}: {body}")]
    Status {
        method: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{method} {url}: unexpected answer: {message}")]
    Body {
        method: String,
        url: String,
        message: String,
    },
    #[error("{0}")]
    Settings(String),
    /// A guard refused an operation before anything was sent.
    #[error("refusing to {action}: {reason}")]
    Refused { action: String, reason: String },
    #[error("snapshot {path}: {message}")]
    Snapshot { path: String, message: String },
    #[error("gave up after {attempts} attempts in {elapsed:.1?}: {last}")]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        last: Box<NomadError>,
    },
}

impl NomadError {
    /// The HTTP status of a refused request (looking through retries).
    pub fn status(&self) -> Option<u16> {
        match self {
            NomadError::Status { status, .. } => Some(*status),
            NomadError::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }

    /// The plain-text body of a refused request.
    pub fn body(&self) -> Option<&str> {
        match self {
            NomadError::Status { body, .. } => Some(body),
            NomadError::GaveUp { last, .. } => last.body(),
            _ => None,
        }
    }

    /// The Raft configuration does not hold the peer: the guard found none
    /// ([`NomadClient::remove_dead_raft_peer`]), or Nomad answered `id "..." was not found in
    /// the Raft configuration` (500 from raft/peer, 400 from transfer-leadership).
    pub fn is_not_a_peer(&self) -> bool {
        match self {
            NomadError::Refused { reason, .. } => reason.contains("not in the Raft configuration"),
            _ => self
                .body()
                .is_some_and(|b| b.contains("was not found in the Raft configuration")),
        }
    }

    /// "No cluster leader": the cluster has no leader (500 after the server's 5 s hold, or
    /// 503 from transfer-leadership).
    pub fn is_no_leader(&self) -> bool {
        matches!(self.status(), Some(500 | 503)) && self.body() == Some("No cluster leader")
    }
}

impl From<RetryError<NomadError>> for NomadError {
    fn from(e: RetryError<NomadError>) -> Self {
        match e {
            RetryError::Fatal(e) => e,
            RetryError::Exhausted {
                attempts: 1, last, ..
            } => last,
            RetryError::Exhausted {
                attempts,
                elapsed,
                last,
            } => NomadError::GaveUp {
                attempts,
                elapsed,
                last: Box::new(last),
            },
        }
    }
}

/// Statuses a retry may cure: a proxy or load balancer in the way, or a restart.
const RETRYABLE: [u16; 3] = [502, 503, 504];

/// Blocking-query and consistency options of a read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Let any server answer from its own state (no leader needed).
    pub stale: bool,
    /// Wait until the result's index passes this one ...
    pub wait_index: Option<u64>,
    /// ... for at most this long (Nomad's default 5 min, at most 10 min).
    pub wait: Option<Duration>,
}

/// What a read's `X-Nomad-*` headers say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryMeta {
    pub last_index: u64,
    pub known_leader: bool,
    pub last_contact: Duration,
}

impl QueryMeta {
    fn from_response(response: &Response) -> Self {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        Self {
            last_index: header("x-nomad-index")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            known_leader: header("x-nomad-knownleader").as_deref() == Some("true"),
            last_contact: Duration::from_millis(
                header("x-nomad-lastcontact")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
        }
    }
}

/// One request: its method, path and query, and how to retry it.
struct Call<'a> {
    method: Method,
    path: &'a str,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    write: bool,
    /// A longer wait than the client's default (blocking queries).
    timeout: Option<Duration>,
    /// The answer holds a secret (an ACL token's SecretID): a body that does not decode is
    /// reported by its decode reason (line and column) only, never by an excerpt.
    secret_answer: bool,
}

impl<'a> Call<'a> {
    fn get(path: &'a str) -> Self {
        Self {
            method: Method::GET,
            path,
            query: Vec::new(),
            body: None,
            write: false,
            timeout: None,
            secret_answer: false,
        }
    }

    fn write(method: Method, path: &'a str) -> Self {
        Self {
            method,
            write: true,
            ..Self::get(path)
        }
    }

    fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    fn json(mut self, body: &impl Serialize) -> Self {
        self.body = Some(serde_json::to_vec(body).expect("serializable request body"));
        self
    }

    /// The answer holds a secret: see [`Call::secret_answer`].
    fn secret_answer(mut self) -> Self {
        self.secret_answer = true;
        self
    }

    fn options(mut self, options: &QueryOptions) -> Self {
        if options.stale {
            self = self.query("stale", "");
        }
        if let Some(index) = options.wait_index {
            // At least 1 ms: Nomad takes `wait=0` as its 5-minute default.
            let wait = options
                .wait
                .unwrap_or(Duration::from_secs(300))
                .max(Duration::from_millis(1));
            self = self
                .query("index", index.to_string())
                .query("wait", format!("{}ms", wait.as_millis()));
            // The server may add up to wait/16 of jitter.
            self.timeout = Some(wait + wait / 16 + Duration::from_secs(10));
        }
        self
    }
}

/// A client for one Nomad API address. Clones share the connection pool.
#[derive(Clone)]
pub struct NomadClient {
    http: reqwest::blocking::Client,
    base: Url,
    settings: NomadSettings,
}

impl std::fmt::Debug for NomadClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NomadClient")
            .field("address", &self.settings.address.as_str())
            .finish_non_exhaustive()
    }
}

impl NomadClient {
    /// A client for these settings (files read and checked now).
    pub fn with_settings(settings: NomadSettings) -> Result<Self, NomadError> {
        let (http, base) = settings::build(&settings)?;
        Ok(Self {
            http,
            base,
            settings,
        })
    }

    /// A client for the API at `base` (`http://` or `https://`), optionally trusting a CA
    /// certificate file and sending an ACL token (what `status` passes).
    pub fn new(
        base: Url,
        ca_cert: Option<&std::path::Path>,
        token: Option<Secret>,
    ) -> Result<Self, NomadError> {
        let mut settings = NomadSettings::new(base);
        settings.tls.ca_cert = ca_cert.map(|p| p.to_path_buf());
        settings.token = token;
        Self::with_settings(settings)
    }

    /// A client with the same token and TLS settings for another agent (e.g. one server's own
    /// HTTP address, for its `agent/self`).
    pub fn for_agent(&self, address: Url) -> Result<Self, NomadError> {
        Self::with_settings(self.settings.for_address(address))
    }

    pub fn settings(&self) -> &NomadSettings {
        &self.settings
    }

    /// The URL of an API path (`v1/...`) without a query, as requests and errors name it (the
    /// TLS server name in place of the host when one is set).
    pub fn endpoint(&self, path: &str) -> Url {
        self.base.join(path).expect("a relative API path")
    }

    fn url(&self, call: &Call<'_>, region: bool) -> Url {
        let mut url = self.endpoint(call.path);
        {
            let mut pairs = url.query_pairs_mut();
            for (name, value) in &call.query {
                pairs.append_pair(name, value);
            }
            if let (true, Some(r)) = (region, &self.settings.region) {
                pairs.append_pair("region", r);
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        // `?stale` is a flag: Nomad takes `stale=` the same.
        url
    }

    fn builder(&self, call: &Call<'_>, url: &Url) -> RequestBuilder {
        let mut request = self.http.request(call.method.clone(), url.clone());
        if let Some(token) = &self.settings.token {
            request = request.header("X-Nomad-Token", token.expose());
        }
        if let Some(auth) = &self.settings.http_auth {
            let (user, password) = match auth.expose().split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (auth.expose(), None),
            };
            request = request.basic_auth(user, password);
        }
        if let Some(body) = &call.body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.clone());
        }
        if let Some(timeout) = call.timeout {
            request = request.timeout(timeout);
        }
        request
    }

    /// Sends `call` under its retry policy; `accept` says which statuses are answers (the
    /// rest become [`NomadError::Status`] with the bounded body). `region` adds `?region=`
    /// when one is set (only for endpoints that take it).
    fn send(
        &self,
        call: &Call<'_>,
        region: bool,
        accept: &[u16],
    ) -> Result<(Url, Response), NomadError> {
        let policy: &Policy = if call.write {
            &self.settings.timeouts.write_retries
        } else {
            &self.settings.timeouts.read_retries
        };
        Ok(policy.run(|_| self.send_once(call, region, accept))?)
    }

    /// One attempt of `call`, classified for a retry loop: transport errors and 502/503/504
    /// (honouring `Retry-After`) may be retried, other refusals may not.
    fn send_once(
        &self,
        call: &Call<'_>,
        region: bool,
        accept: &[u16],
    ) -> Result<(Url, Response), Attempt<NomadError>> {
        let url = self.url(call, region);
        let method = call.method.to_string();
        let response = self.builder(call, &url).send().map_err(|e| {
            Attempt::retry(NomadError::Transport {
                method: method.clone(),
                url: url.to_string(),
                message: error_chain(&e),
            })
        })?;
        let status = response.status().as_u16();
        if accept.contains(&status) {
            return Ok((url, response));
        }
        let retry_after = crate::http::retry_after(response.headers());
        let error = NomadError::Status {
            method,
            url: url.to_string(),
            status,
            body: crate::http::error_body(response),
        };
        if RETRYABLE.contains(&status) {
            Err(Attempt::Retry {
                error,
                after: retry_after,
            })
        } else {
            Err(Attempt::Fail(error))
        }
    }

    /// Reads and decodes a JSON body (bounded by the request timeout per read, and by the
    /// settings' body limit when there is one).
    fn decode<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        url: &Url,
        response: Response,
    ) -> Result<T, NomadError> {
        use std::io::Read;
        let method = &call.method;
        let limit = self.settings.body_limit;
        let mut bytes = Vec::new();
        response
            .take(limit.map_or(u64::MAX, |l| l.saturating_add(1)))
            .read_to_end(&mut bytes)
            .map_err(|e| NomadError::Transport {
                method: method.to_string(),
                url: url.to_string(),
                message: format!("reading the body: {}", error_chain(&e)),
            })?;
        if let Some(limit) = limit.filter(|&l| bytes.len() as u64 > l) {
            return Err(NomadError::Body {
                method: method.to_string(),
                url: url.to_string(),
                message: format!("the body is larger than {limit} bytes"),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| NomadError::Body {
            method: method.to_string(),
            url: url.to_string(),
            // serde_json's message can quote a value ("invalid type: string \"...\""), so an
            // answer holding a secret is described by where it broke, not what it said.
            message: if call.secret_answer {
                format!(
                    "the JSON does not decode ({:?} error at line {} column {}; the body holds \
                     a secret and is not shown)",
                    e.classify(),
                    e.line(),
                    e.column()
                )
            } else {
                format!(
                    "{e} in {}",
                    crate::http::body_excerpt(&String::from_utf8_lossy(&bytes))
                )
            },
        })
    }

    /// A JSON read or write answered with 200.
    fn json<T: DeserializeOwned>(&self, call: Call<'_>, region: bool) -> Result<T, NomadError> {
        let (url, response) = self.send(&call, region, &[200])?;
        self.decode(&call, &url, response)
    }

    /// A JSON read with its `X-Nomad-*` metadata.
    fn json_meta<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        region: bool,
    ) -> Result<(T, QueryMeta), NomadError> {
        let (url, response) = self.send(&call, region, &[200])?;
        let meta = QueryMeta::from_response(&response);
        Ok((self.decode(&call, &url, response)?, meta))
    }

    /// Leader, servers and client nodes in one go (what `status` shows).
    pub fn health(&self) -> Result<ClusterHealth, NomadError> {
        Ok(ClusterHealth {
            address: self.settings.address.to_string(),
            leader: self.leader()?,
            servers: self.members()?,
            nodes: self.nodes()?,
        })
    }
}

/// What `status` shows of Nomad.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClusterHealth {
    pub address: String,
    /// The leader's RPC address; `None` when the cluster has no leader.
    pub leader: Option<String>,
    pub servers: Vec<AgentMember>,
    pub nodes: Vec<NodeListStub>,
}

#[cfg(all(test, feature = "doubles"))]
mod tests {
    use super::*;
    use crate::doubles::server::{Reply, Server};
    use std::sync::{Arc, Mutex};

    fn client(server: &Server, limit: Option<u64>) -> NomadClient {
        let mut settings = NomadSettings::new(server.url().parse().unwrap());
        settings.timeouts.read_retries = Policy::once("Nomad API read");
        settings.body_limit = limit;
        NomadClient::with_settings(settings).unwrap()
    }

    fn allocation(n: usize) -> serde_json::Value {
        serde_json::json!({ "ID": format!("{n:08}-0000-4000-8000-000000000000"), "ClientStatus": "running" })
    }

    #[test]
    fn a_body_past_the_limit_is_an_error_naming_it() {
        let list: Vec<_> = (0..40).map(allocation).collect();
        let server = Server::start(move |_| Reply::json(200, &serde_json::json!(list)));
        let node = "6a0b1c2d-0000-4000-8000-000000000001";
        assert_eq!(
            client(&server, None).node_allocations(node).unwrap().len(),
            40
        );
        let err = client(&server, Some(1024))
            .node_allocations(node)
            .unwrap_err();
        assert!(matches!(err, NomadError::Body { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("larger than 1024 bytes"), "{text}");
        assert!(
            text.contains(&format!("GET {}/v1/node/{node}/allocations", server.url())),
            "{text}"
        );
    }

    #[test]
    fn a_blocking_wait_is_never_zero() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let server = Server::start(move |request| {
            let query = |name| request.query_param(name).map(str::to_string);
            record.lock().unwrap().push((query("index"), query("wait")));
            Reply::json(200, &serde_json::json!([])).header("X-Nomad-Index", "9")
        });
        let options = |wait| QueryOptions {
            stale: false,
            wait_index: Some(7),
            wait: Some(wait),
        };
        let nomad = client(&server, None);
        let node = "6a0b1c2d-0000-4000-8000-000000000001";
        let (_, meta) = nomad
            .node_allocations_with(node, &options(Duration::ZERO))
            .unwrap();
        assert_eq!(meta.last_index, 9);
        nomad
            .node_allocations_with(node, &options(Duration::from_secs(30)))
            .unwrap();
        let wanted = |wait: &str| (Some("7".to_string()), Some(wait.to_string()));
        assert_eq!(*seen.lock().unwrap(), [wanted("1ms"), wanted("30000ms")]);
    }
}
