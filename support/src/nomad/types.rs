//! The Nomad API's bodies as the tools read them, shaped after
//! `../shared/nomad-api/schemas/` (HashiCorp's Go structs at v1.10.5). Every type accepts
//! unknown fields, `null` for Go slices, maps and pointers, and absent optional fields; only
//! what the schemas mark required (what every v1.9/v1.10 server writes) and what we cannot do
//! without is required here.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::secret::Secret;
use serde::{Deserialize, Deserializer, Serialize};

/// `null` (a nil Go slice, map or pointer) as the type's default.
fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Serf member status (`/v1/agent/members`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    Alive,
    Leaving,
    Left,
    Failed,
    None,
    Unknown,
}

impl MemberStatus {
    pub fn parse(text: &str) -> Self {
        match text {
            "alive" => Self::Alive,
            "leaving" => Self::Leaving,
            "left" => Self::Left,
            "failed" => Self::Failed,
            "none" => Self::None,
            _ => Self::Unknown,
        }
    }
}

/// `GET /v1/agent/members`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ServerMembers {
    #[serde(default)]
    pub server_name: String,
    #[serde(default)]
    pub server_region: String,
    #[serde(rename = "ServerDC", default)]
    pub server_dc: String,
    #[serde(default, deserialize_with = "nullable")]
    pub members: Vec<AgentMember>,
}

/// A gossip member: a server, named `<node name>.<region>`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct AgentMember {
    pub name: String,
    #[serde(default)]
    pub addr: String,
    #[serde(default)]
    pub port: u16,
    /// `alive`, `leaving`, `left`, `failed`, `none` ([`AgentMember::state`]).
    pub status: String,
    #[serde(default, deserialize_with = "nullable")]
    pub tags: BTreeMap<String, String>,
}

impl AgentMember {
    pub fn state(&self) -> MemberStatus {
        MemberStatus::parse(&self.status)
    }

    /// The Raft server id (serf tag `id`).
    pub fn raft_id(&self) -> Option<&str> {
        self.tags.get("id").map(String::as_str)
    }

    /// The server's Nomad version (serf tag `build`).
    pub fn build(&self) -> Option<&str> {
        self.tags.get("build").map(String::as_str)
    }

    /// The node name without the `.<region>` suffix.
    pub fn node_name(&self) -> &str {
        match self.tags.get("region") {
            Some(region) => self
                .name
                .strip_suffix(&format!(".{region}"))
                .unwrap_or(&self.name),
            None => &self.name,
        }
    }
}

/// `config.Version`: an object since 0.6 (a string in the 0.5-era docs sample).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum VersionField {
    Info(VersionInfo),
    Text(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct VersionInfo {
    pub version: String,
    #[serde(default, deserialize_with = "nullable")]
    pub version_prerelease: String,
    #[serde(default, deserialize_with = "nullable")]
    pub version_metadata: String,
    #[serde(default, deserialize_with = "nullable")]
    pub revision: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Enabled {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AgentConfig {
    pub version: VersionField,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub node_name: String,
    #[serde(default, deserialize_with = "nullable")]
    pub server: Enabled,
    #[serde(default, deserialize_with = "nullable")]
    pub client: Enabled,
    #[serde(rename = "ACL", default, deserialize_with = "nullable")]
    pub acl: Enabled,
}

/// `GET /v1/agent/self`: the agent answering, not the cluster.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AgentSelf {
    pub config: AgentConfig,
    pub member: AgentMember,
    #[serde(default, deserialize_with = "nullable")]
    pub stats: BTreeMap<String, BTreeMap<String, String>>,
}

/// An agent's Raft statistics (hashicorp/raft `Stats()`: all strings on the wire).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStats {
    /// `Leader`, `Follower`, `Candidate`, `Shutdown`.
    pub state: String,
    pub term: u64,
    pub last_log_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    /// Voters other than this server (0 when it is not a voter).
    pub num_peers: Option<u64>,
    /// `0` on the leader, `never`, or a Go duration.
    pub last_contact: String,
}

impl AgentSelf {
    /// The agent's Nomad version (`config.Version.Version`).
    pub fn version(&self) -> &str {
        match &self.config.version {
            VersionField::Info(info) => &info.version,
            VersionField::Text(text) => text,
        }
    }

    /// The node id of a client agent (`stats.client.node_id`); `None` on a server-only agent.
    pub fn client_node_id(&self) -> Option<&str> {
        self.stats
            .get("client")?
            .get("node_id")
            .map(String::as_str)
            .filter(|id| !id.is_empty())
    }

    /// Raft statistics, on servers only; `None` when absent or a number is not one.
    pub fn raft_stats(&self) -> Option<RaftStats> {
        let raft = self.stats.get("raft")?;
        let number = |key: &str| raft.get(key)?.parse::<u64>().ok();
        Some(RaftStats {
            state: raft.get("state")?.clone(),
            term: number("term")?,
            last_log_index: number("last_log_index")?,
            commit_index: number("commit_index")?,
            applied_index: number("applied_index")?,
            num_peers: number("num_peers"),
            last_contact: raft.get("last_contact").cloned().unwrap_or_default(),
        })
    }
}

/// `GET /v1/agent/health`: each part the agent runs, ok or why not.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
pub struct AgentHealth {
    #[serde(default)]
    pub client: Option<HealthPart>,
    #[serde(default)]
    pub server: Option<HealthPart>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
pub struct HealthPart {
    pub ok: bool,
    #[serde(default)]
    pub message: String,
}

impl AgentHealth {
    pub fn ok(&self) -> bool {
        self.client.as_ref().is_none_or(|p| p.ok) && self.server.as_ref().is_none_or(|p| p.ok)
    }
}

/// `GET /v1/operator/raft/configuration`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RaftConfiguration {
    #[serde(default, deserialize_with = "nullable")]
    pub servers: Vec<RaftServer>,
    #[serde(default)]
    pub index: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RaftServer {
    #[serde(rename = "ID")]
    pub id: String,
    /// `<name>.<region>`, or `(unknown)` for a peer gossip no longer knows.
    #[serde(default)]
    pub node: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub leader: bool,
    #[serde(default)]
    pub voter: bool,
    #[serde(default)]
    pub raft_protocol: String,
}

/// `GET /v1/operator/autopilot/health` (200 when healthy, 429 with the same body when not).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct OperatorHealth {
    pub healthy: bool,
    /// Healthy voters beyond quorum.
    pub failure_tolerance: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub servers: Vec<ServerHealth>,
    /// The leader's Raft id.
    #[serde(default)]
    pub leader: String,
    #[serde(default, deserialize_with = "nullable")]
    pub voters: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ServerHealth {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub serf_status: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub leader: bool,
    /// A Go duration string (`"27.29ms"`).
    #[serde(default)]
    pub last_contact: String,
    #[serde(default)]
    pub last_term: u64,
    #[serde(default)]
    pub last_index: u64,
    #[serde(default)]
    pub healthy: bool,
    #[serde(default)]
    pub voter: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub stable_since: String,
}

impl ServerHealth {
    /// `LastContact` as a duration (`None` when it does not parse).
    pub fn last_contact(&self) -> Option<Duration> {
        crate::go_duration::parse(&self.last_contact)
    }
}

/// One server's Raft position, from the leader's autopilot view.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ServerIndex {
    pub id: String,
    pub name: String,
    pub address: String,
    pub leader: bool,
    pub voter: bool,
    pub healthy: bool,
    pub last_index: u64,
    pub last_term: u64,
}

/// Every server's index and the leader's, from one `autopilot/health` answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RaftIndexes {
    pub leader_index: Option<u64>,
    pub servers: Vec<ServerIndex>,
}

impl RaftIndexes {
    /// How far `id` trails the leader (`None` without a leader or for an unknown server).
    pub fn lag(&self, id: &str) -> Option<u64> {
        let leader = self.leader_index?;
        let server = self.servers.iter().find(|s| s.id == id)?;
        Some(leader.saturating_sub(server.last_index))
    }
}

/// `GET`/`PUT /v1/operator/autopilot/configuration`. Durations are strings both ways; a PUT
/// replaces the whole configuration, so read, change, write back.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AutopilotConfiguration {
    #[serde(default)]
    pub cleanup_dead_servers: bool,
    #[serde(default)]
    pub last_contact_threshold: String,
    #[serde(default)]
    pub max_trailing_logs: u64,
    #[serde(default)]
    pub min_quorum: u64,
    #[serde(default)]
    pub server_stabilization_time: String,
    #[serde(default)]
    pub enable_redundancy_zones: bool,
    #[serde(default)]
    pub disable_upgrade_migration: bool,
    #[serde(default)]
    pub enable_custom_upgrades: bool,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl AutopilotConfiguration {
    pub fn server_stabilization_time(&self) -> Option<Duration> {
        crate::go_duration::parse(&self.server_stabilization_time)
    }
}

/// structs.DrainMetadata: a node's most recent drain.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DrainMetadata {
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    /// `draining`, `complete`, `canceled`.
    #[serde(default)]
    pub status: String,
    #[serde(rename = "AccessorID", default)]
    pub accessor_id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, String>,
}

/// structs.DrainStrategy.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DrainStrategy {
    /// Nanoseconds as requested: > 0 deadline, 0 none, < 0 forced.
    #[serde(default)]
    pub deadline: i64,
    #[serde(default)]
    pub ignore_system_jobs: bool,
    /// RFC 3339; `null` unless `deadline` > 0.
    #[serde(default)]
    pub force_deadline: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
}

/// `GET /v1/nodes` item.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct NodeListStub {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    /// The node's IP, without a port.
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub node_pool: String,
    #[serde(default)]
    pub node_class: String,
    /// The client's Nomad version.
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub drain: bool,
    #[serde(default)]
    pub scheduling_eligibility: String,
    /// `initializing`, `ready`, `down`, `disconnected`.
    pub status: String,
    #[serde(default)]
    pub status_description: String,
    #[serde(default)]
    pub last_drain: Option<DrainMetadata>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct NodeEvent {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub subsystem: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub create_index: u64,
}

/// `GET /v1/node/:id` (the fields a drain tool reads).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub datacenter: String,
    #[serde(default)]
    pub node_class: String,
    #[serde(default)]
    pub node_pool: String,
    #[serde(rename = "HTTPAddr", default)]
    pub http_addr: String,
    #[serde(default, deserialize_with = "nullable")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "nullable")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub drain: bool,
    #[serde(default)]
    pub drain_strategy: Option<DrainStrategy>,
    #[serde(default)]
    pub scheduling_eligibility: String,
    pub status: String,
    #[serde(default)]
    pub status_description: String,
    /// Unix seconds.
    #[serde(default)]
    pub status_updated_at: i64,
    #[serde(default, deserialize_with = "nullable")]
    pub events: Vec<NodeEvent>,
    #[serde(default)]
    pub last_drain: Option<DrainMetadata>,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl Node {
    pub fn eligible(&self) -> bool {
        self.scheduling_eligibility == "eligible"
    }

    /// The drain finished: no strategy left and the last drain complete.
    pub fn drain_complete(&self) -> bool {
        self.drain_strategy.is_none()
            && self
                .last_drain
                .as_ref()
                .is_some_and(|d| d.status == "complete")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct DesiredTransition {
    #[serde(default)]
    pub migrate: Option<bool>,
    #[serde(default)]
    pub reschedule: Option<bool>,
    #[serde(default)]
    pub force_reschedule: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct AllocationJob {
    #[serde(rename = "ID", default)]
    pub id: String,
    /// `service`, `batch`, `system`, `sysbatch`.
    #[serde(rename = "Type", default)]
    pub kind: String,
}

/// `GET /v1/node/:id/allocations` item: a full allocation with every empty field left out.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct Allocation {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    #[serde(default)]
    pub node_name: String,
    #[serde(rename = "JobID", default)]
    pub job_id: String,
    #[serde(default)]
    pub job: Option<AllocationJob>,
    #[serde(default)]
    pub task_group: String,
    /// `run`, `stop`, `evict`.
    #[serde(default)]
    pub desired_status: String,
    #[serde(default, deserialize_with = "nullable")]
    pub desired_transition: DesiredTransition,
    /// `pending`, `running`, `complete`, `failed`, `lost`, `unknown`.
    #[serde(default)]
    pub client_status: String,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
    /// Unix nanoseconds.
    #[serde(default)]
    pub create_time: i64,
    #[serde(default)]
    pub modify_time: i64,
}

/// Client statuses after which an allocation holds nothing on its node.
const TERMINAL_CLIENT_STATUSES: [&str; 3] = ["complete", "failed", "lost"];

impl Allocation {
    /// Still pending or running on its node (what a drain waits for).
    pub fn is_live(&self) -> bool {
        !TERMINAL_CLIENT_STATUSES.contains(&self.client_status.as_str())
    }

    pub fn job_type(&self) -> Option<&str> {
        self.job.as_ref().map(|j| j.kind.as_str())
    }
}

/// `GET /v1/allocations` item.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AllocationListStub {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    #[serde(default)]
    pub node_name: String,
    #[serde(rename = "JobID", default)]
    pub job_id: String,
    #[serde(default)]
    pub job_type: String,
    #[serde(default)]
    pub task_group: String,
    #[serde(default)]
    pub desired_status: String,
    #[serde(default)]
    pub client_status: String,
    #[serde(default, deserialize_with = "nullable")]
    pub desired_transition: DesiredTransition,
    #[serde(default)]
    pub create_index: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl AllocationListStub {
    pub fn is_live(&self) -> bool {
        !TERMINAL_CLIENT_STATUSES.contains(&self.client_status.as_str())
    }
}

/// The answer of a drain or eligibility write.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct NodeUpdateResponse {
    #[serde(default)]
    pub node_modify_index: u64,
    #[serde(rename = "EvalIDs", default, deserialize_with = "nullable")]
    pub eval_ids: Vec<String>,
    #[serde(default)]
    pub eval_create_index: u64,
    #[serde(default)]
    pub index: u64,
}

/// `DrainSpec.Deadline`, which the API takes as integer nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainDeadline {
    /// Whatever is left is stopped after this long (> 0).
    After(Duration),
    /// Never forced (`0`; not the CLI's 1 h default, which the CLI adds itself).
    None,
    /// Stop everything now (`-1s`, what `nomad node drain -force` sends).
    ForceNow,
}

impl DrainDeadline {
    /// The wire value; `None` for a duration that is zero or beyond `i64` nanoseconds.
    pub fn nanos(self) -> Option<i64> {
        match self {
            DrainDeadline::After(d) if d.is_zero() => None,
            DrainDeadline::After(d) => i64::try_from(d.as_nanos()).ok(),
            DrainDeadline::None => Some(0),
            DrainDeadline::ForceNow => Some(-1_000_000_000),
        }
    }
}

/// `POST /v1/node/:id/drain` body (api.NodeUpdateDrainRequest).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DrainRequest {
    /// `None` disables draining.
    pub drain_spec: Option<DrainSpec>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mark_eligible: bool,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct DrainSpec {
    /// Nanoseconds (see [`DrainDeadline`]).
    pub deadline: i64,
    #[serde(default)]
    pub ignore_system_jobs: bool,
}

/// `POST /v1/node/:id/eligibility` body.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct EligibilityRequest {
    /// `eligible` or `ineligible`.
    pub eligibility: String,
}

/// `POST /v1/acl/bootstrap` body.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct BootstrapRequest {
    /// A UUID; `""` (or absent) lets Nomad generate one.
    #[serde(default)]
    pub bootstrap_secret: String,
}

/// `PUT /v1/operator/raft/transfer-leadership` answer (structs.LeadershipTransferResponse).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct LeadershipTransferResponse {
    pub from: RaftIdAddress,
    pub to: RaftIdAddress,
    #[serde(default)]
    pub noop: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RaftIdAddress {
    #[serde(default)]
    pub address: String,
    #[serde(rename = "ID", default)]
    pub id: String,
}

fn secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
    Ok(Secret::new(String::deserialize(deserializer)?))
}

/// An ACL token (`POST /v1/acl/bootstrap`). Its SecretID is a [`Secret`]: never printed.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AclToken {
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "SecretID", deserialize_with = "secret")]
    pub secret_id: Secret,
    #[serde(default)]
    pub name: String,
    /// `management` or `client`.
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(default, deserialize_with = "nullable")]
    pub policies: Vec<String>,
    #[serde(default)]
    pub global: bool,
    #[serde(default)]
    pub create_index: u64,
}
