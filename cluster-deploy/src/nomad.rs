//! What `status` reads from the Nomad HTTP API (developer.hashicorp.com/nomad/api-docs):
//! `GET /v1/status/leader` (the leader's RPC address as a JSON string, "" without a leader),
//! `GET /v1/agent/members` (the servers' Serf members) and `GET /v1/nodes` (client nodes).
//! An ACL token goes in `X-Nomad-Token`, as the API documents.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use support::http::Url;

use crate::auth::{error_chain, Secret};

#[derive(Debug, thiserror::Error)]
pub enum NomadError {
    #[error("GET {url}: {message}")]
    Transport { url: String, message: String },
    #[error("GET {url}: {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("GET {url}: unexpected answer: {message}")]
    Body { url: String, message: String },
    #[error("the CA certificate {path} for the Nomad API: {message}")]
    Ca { path: String, message: String },
}

/// A server in `/v1/agent/members`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Member {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Addr")]
    pub addr: String,
    #[serde(rename = "Port")]
    pub port: u16,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "Tags", default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Members {
    #[serde(rename = "Members", default)]
    members: Vec<Member>,
}

/// A client node in `/v1/nodes`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Datacenter", default)]
    pub datacenter: String,
    #[serde(rename = "NodeClass", default)]
    pub node_class: String,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "SchedulingEligibility", default)]
    pub scheduling_eligibility: String,
    #[serde(rename = "Version", default)]
    pub version: String,
}

/// What `status` shows of Nomad.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ClusterHealth {
    pub address: String,
    /// The leader's RPC address; `None` when the cluster has no leader.
    pub leader: Option<String>,
    pub servers: Vec<Member>,
    pub nodes: Vec<Node>,
}

pub struct NomadClient {
    http: reqwest::blocking::Client,
    base: Url,
    token: Option<Secret>,
}

impl NomadClient {
    /// A client for the API at `base` (`http://` or `https://`), optionally trusting a CA
    /// certificate file (`NOMAD_CACERT`) and sending an ACL token (`NOMAD_TOKEN`).
    pub fn new(
        base: Url,
        ca_cert: Option<&std::path::Path>,
        token: Option<Secret>,
    ) -> Result<Self, NomadError> {
        let mut builder = reqwest::blocking::Client::builder()
            .user_agent(support::http::USER_AGENT)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15));
        if let Some(path) = ca_cert {
            let ca_err = |message: String| NomadError::Ca {
                path: path.display().to_string(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| ca_err(e.to_string()))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| NomadError::Transport {
            url: base.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self { http, base, token })
    }

    fn get<T: for<'de> Deserialize<'de>>(&self, path: &str) -> Result<T, NomadError> {
        let url = self.base.join(path).map_err(|e| NomadError::Transport {
            url: format!("{}{path}", self.base),
            message: e.to_string(),
        })?;
        let mut request = self.http.get(url.clone());
        if let Some(token) = &self.token {
            request = request.header("X-Nomad-Token", token.expose());
        }
        let response = request.send().map_err(|e| NomadError::Transport {
            url: url.to_string(),
            message: error_chain(&e),
        })?;
        let status = response.status().as_u16();
        let text = response.text().map_err(|e| NomadError::Transport {
            url: url.to_string(),
            message: error_chain(&e),
        })?;
        if status != 200 {
            return Err(NomadError::Status {
                url: url.to_string(),
                status,
                body: support::http::body_excerpt(&text),
            });
        }
        serde_json::from_str(&text).map_err(|e| NomadError::Body {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// The leader's RPC address. An agent whose cluster has no leader answers 500 with
    /// "No cluster leader": that is an answer (`None`), not a failure.
    pub fn leader(&self) -> Result<Option<String>, NomadError> {
        match self.get::<String>("v1/status/leader") {
            Ok(leader) => Ok(Some(leader).filter(|l| !l.is_empty())),
            Err(NomadError::Status {
                status: 500, body, ..
            }) if body.contains("No cluster leader") => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn members(&self) -> Result<Vec<Member>, NomadError> {
        let members: Members = self.get("v1/agent/members")?;
        Ok(members.members)
    }

    pub fn nodes(&self) -> Result<Vec<Node>, NomadError> {
        self.get("v1/nodes")
    }

    /// Leader, servers and client nodes in one go.
    pub fn health(&self) -> Result<ClusterHealth, NomadError> {
        Ok(ClusterHealth {
            address: self.base.to_string(),
            leader: self.leader()?,
            servers: self.members()?,
            nodes: self.nodes()?,
        })
    }
}
