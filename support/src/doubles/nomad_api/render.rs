//! The simulated cluster as Nomad's JSON bodies. Field names, types and presence follow
//! `../shared/nomad-api/schemas/` (derived from HashiCorp's Go structs at v1.10.5): zero times
//! are `null`, allocations leave out every empty field (go-msgpack `omitempty`), stats values
//! are strings, durations are Go duration strings where the API uses them.

use serde_json::{json, Map, Value};

use crate::doubles::nomad_sim::{
    go_duration, Alloc, ClientStatus, Cluster, DesiredStatus, Node, ServerAgent, ServerLife,
    HTTP_PORT, RPC_PORT, SERF_PORT,
};

/// Who answers: a server agent (by index) or a client agent (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Agent {
    Server(usize),
    Client(usize),
}

fn revision(version: &str) -> String {
    crate::hash::sha256_hex(version.as_bytes())[..40].to_string()
}

pub(crate) fn member_name(cluster: &Cluster, server: &ServerAgent) -> String {
    format!("{}.{}", server.name, cluster.config.region)
}

fn member(cluster: &Cluster, server: &ServerAgent, status: &str) -> Value {
    json!({
        "Name": member_name(cluster, server),
        "Addr": server.ip,
        "Port": SERF_PORT,
        "Tags": {
            "role": "nomad",
            "region": cluster.config.region,
            "dc": cluster.config.datacenter,
            "build": server.version,
            "revision": revision(&server.version),
            "vsn": "1",
            "raft_vsn": "3",
            "id": server.id,
            "rpc_addr": server.ip,
            "port": RPC_PORT.to_string(),
            "expect": cluster.config.bootstrap_expect.to_string(),
        },
        "Status": status,
        "ProtocolMin": 1,
        "ProtocolMax": 5,
        "ProtocolCur": 2,
        "DelegateMin": 2,
        "DelegateMax": 5,
        "DelegateCur": 4,
    })
}

/// `GET /v1/agent/members` as answered by server `answering`.
pub(crate) fn members(cluster: &Cluster, answering: &ServerAgent) -> Value {
    let members: Vec<Value> = cluster
        .servers
        .iter()
        .filter_map(|s| {
            cluster
                .member_status(s)
                .map(|st| member(cluster, s, st.as_str()))
        })
        .collect();
    json!({
        "ServerName": answering.name,
        "ServerRegion": cluster.config.region,
        "ServerDC": cluster.config.datacenter,
        "Members": members,
    })
}

/// `GET /v1/operator/raft/configuration`.
pub(crate) fn raft_configuration(cluster: &Cluster) -> Value {
    let servers: Vec<Value> = cluster
        .raft
        .iter()
        .map(|(id, voter)| {
            let server = cluster.server_by_id(id);
            let in_gossip = server.and_then(|s| cluster.member_status(s)).is_some();
            json!({
                "ID": id,
                "Node": match server {
                    Some(s) if in_gossip => member_name(cluster, s),
                    _ => "(unknown)".to_string(),
                },
                "Address": server.map(|s| format!("{}:{RPC_PORT}", s.ip)).unwrap_or_default(),
                "Leader": cluster.leader.as_deref() == Some(id.as_str()),
                "Voter": voter,
                "RaftProtocol": if in_gossip { "3" } else { "unknown" },
            })
        })
        .collect();
    json!({ "Servers": servers, "Index": cluster.raft_config_index })
}

/// `GET /v1/status/peers`: every server in the Raft configuration.
pub(crate) fn peers(cluster: &Cluster) -> Value {
    json!(cluster
        .raft
        .iter()
        .filter_map(|(id, _)| cluster.server_by_id(id))
        .map(|s| format!("{}:{RPC_PORT}", s.ip))
        .collect::<Vec<_>>())
}

pub(crate) fn leader_address(cluster: &Cluster) -> Option<String> {
    let id = cluster.leader.as_deref()?;
    cluster
        .server_by_id(id)
        .map(|s| format!("{}:{RPC_PORT}", s.ip))
}

/// `GET /v1/operator/autopilot/health` (the leader's cached autopilot state).
pub(crate) fn autopilot_health(cluster: &Cluster) -> (bool, Value) {
    let (healthy, tolerance, servers) = cluster.autopilot_health();
    let leader = cluster.leader.clone().unwrap_or_default();
    let voters: Vec<&str> = servers
        .iter()
        .filter(|s| s.voter)
        .map(|s| s.id.as_str())
        .collect();
    let servers: Vec<Value> = servers
        .iter()
        .map(|s| {
            json!({
                "ID": s.id,
                "Name": s.name,
                "Address": s.address,
                "SerfStatus": s.serf_status,
                "Version": s.version,
                "Leader": s.leader,
                "LastContact": go_duration(s.last_contact),
                "LastTerm": s.last_term,
                "LastIndex": s.last_index,
                "Healthy": s.healthy,
                "Voter": s.voter,
                "StableSince": s.stable_since.rfc3339_seconds(),
            })
        })
        .collect();
    (
        healthy,
        json!({
            "Healthy": healthy,
            "FailureTolerance": tolerance,
            "Servers": servers,
            "Leader": leader,
            "Voters": voters,
        }),
    )
}

/// `GET /v1/operator/autopilot/configuration` (durations as strings).
pub(crate) fn autopilot_configuration(cluster: &Cluster) -> Option<Value> {
    let c = cluster.autopilot_config.as_ref()?;
    Some(json!({
        "CleanupDeadServers": c.cleanup_dead_servers,
        "LastContactThreshold": go_duration(c.last_contact_threshold),
        "MaxTrailingLogs": c.max_trailing_logs,
        "MinQuorum": c.min_quorum,
        "ServerStabilizationTime": go_duration(c.server_stabilization_time),
        "EnableRedundancyZones": c.enable_redundancy_zones,
        "DisableUpgradeMigration": c.disable_upgrade_migration,
        "EnableCustomUpgrades": c.enable_custom_upgrades,
        "CreateIndex": c.create_index,
        "ModifyIndex": c.modify_index,
    }))
}

fn version_info(version: &str) -> Value {
    json!({
        "Version": version,
        "VersionPrerelease": "",
        "VersionMetadata": "",
        "Revision": revision(version),
        "BuildDate": "2025-09-09T14:31:02Z",
    })
}

/// `GET /v1/agent/self` of `agent`.
pub(crate) fn agent_self(cluster: &Cluster, agent: Agent, acl_enabled: bool) -> Value {
    let region = &cluster.config.region;
    let dc = &cluster.config.datacenter;
    match agent {
        Agent::Server(i) => {
            let s = &cluster.servers[i];
            let leader = cluster.leader.as_deref() == Some(s.id.as_str());
            let voters: Vec<&(String, bool)> = cluster.raft.iter().filter(|(_, v)| *v).collect();
            let is_voter = voters.iter().any(|(id, _)| *id == s.id);
            let num_peers = if is_voter { voters.len() - 1 } else { 0 };
            let latest: Vec<String> = cluster
                .raft
                .iter()
                .map(|(id, voter)| {
                    let address = cluster
                        .server_by_id(id)
                        .map(|p| format!("{}:{RPC_PORT}", p.ip))
                        .unwrap_or_default();
                    let suffrage = if *voter { "Voter" } else { "Nonvoter" };
                    format!("{{Suffrage:{suffrage} ID:{id} Address:{address}}}")
                })
                .collect();
            let last_contact = if leader {
                "0".to_string()
            } else {
                match s.last_contact {
                    None => "never".to_string(),
                    Some(t) => go_duration(cluster.now.since(t)),
                }
            };
            let state = match (leader, s.life) {
                (true, _) => "Leader",
                (false, ServerLife::Running) if cluster.leader.is_some() => "Follower",
                (false, ServerLife::Running) => "Candidate",
                _ => "Shutdown",
            };
            json!({
                "config": {
                    "Version": version_info(&s.version),
                    "Region": region,
                    "Datacenter": dc,
                    "NodeName": s.name,
                    "Server": { "Enabled": true, "BootstrapExpect": cluster.config.bootstrap_expect },
                    "Client": { "Enabled": false },
                    "ACL": { "Enabled": acl_enabled },
                },
                "member": member(cluster, s, "alive"),
                "stats": {
                    "raft": {
                        "state": state,
                        "term": s.last_term.to_string(),
                        "last_log_index": s.applied_index.to_string(),
                        "last_log_term": s.last_term.to_string(),
                        "commit_index": s.applied_index.to_string(),
                        "applied_index": s.applied_index.to_string(),
                        "fsm_pending": "0",
                        "last_snapshot_index": (s.applied_index / 8192 * 8192).to_string(),
                        "last_snapshot_term": s.last_term.to_string(),
                        "last_contact": last_contact,
                        "num_peers": num_peers.to_string(),
                        "latest_configuration": format!("[{}]", latest.join(" ")),
                        "latest_configuration_index": cluster.raft_config_index.to_string(),
                        "protocol_version": "3",
                        "protocol_version_min": "0",
                        "protocol_version_max": "3",
                        "snapshot_version_min": "0",
                        "snapshot_version_max": "1",
                    },
                    "nomad": {
                        "server": "true",
                        "leader": leader.to_string(),
                        "leader_addr": leader_address(cluster).unwrap_or_default(),
                        "bootstrap": "false",
                        "known_regions": "1",
                    },
                    "serf": {
                        "members": cluster.servers.iter().filter(|m| cluster.member_status(m).is_some()).count().to_string(),
                        "failed": "0",
                    },
                    "runtime": { "arch": "amd64", "os": "linux", "goroutines": "212", "version": "go1.24.6" },
                },
            })
        }
        Agent::Client(i) => {
            let c = &cluster.clients[i];
            json!({
                "config": {
                    "Version": version_info(&c.version),
                    "Region": region,
                    "Datacenter": dc,
                    "NodeName": c.name,
                    "Server": { "Enabled": false },
                    "Client": { "Enabled": true },
                    "ACL": { "Enabled": acl_enabled },
                },
                "member": {
                    "Name": "", "Addr": "", "Port": 0, "Tags": null, "Status": "none",
                    "ProtocolMin": 0, "ProtocolMax": 0, "ProtocolCur": 0,
                    "DelegateMin": 0, "DelegateMax": 0, "DelegateCur": 0,
                },
                "stats": {
                    "client": {
                        "node_id": c.node_id,
                        "known_servers": cluster.servers.iter().filter(|s| s.life == ServerLife::Running).map(|s| format!("{}:{RPC_PORT}", s.ip)).collect::<Vec<_>>().join(","),
                        "num_allocations": cluster.allocs.iter().filter(|a| a.node_id == c.node_id && a.is_live()).count().to_string(),
                        "last_heartbeat": "1.2s",
                        "heartbeat_ttl": "15s",
                    },
                    "runtime": { "arch": "amd64", "os": "linux", "goroutines": "87", "version": "go1.24.6" },
                },
            })
        }
    }
}

fn time_or_null(t: Option<crate::doubles::nomad_sim::SimTime>) -> Value {
    t.map(|t| Value::String(t.rfc3339())).unwrap_or(Value::Null)
}

fn last_drain(node: &Node) -> Value {
    match &node.last_drain {
        None => Value::Null,
        Some(d) => json!({
            "StartedAt": d.started_at.rfc3339(),
            "UpdatedAt": d.updated_at.rfc3339(),
            "Status": d.status.as_str(),
            "AccessorID": d.accessor_id,
            "Meta": if d.meta.is_empty() { Value::Null } else { json!(d.meta) },
        }),
    }
}

fn drivers(cluster: &Cluster, node: &Node) -> Value {
    json!({
        "exec": {
            "Attributes": { "driver.exec": "true" },
            "Detected": true,
            "Healthy": true,
            "HealthDescription": "Healthy",
            "UpdateTime": node.status_updated_at.rfc3339(),
        },
        "docker": {
            "Attributes": { "driver.docker": "true", "driver.docker.version": "28.3.3" },
            "Detected": true,
            "Healthy": true,
            "HealthDescription": "Healthy",
            "UpdateTime": cluster.now.rfc3339(),
        },
    })
}

/// `GET /v1/nodes` item (structs.NodeListStub).
pub(crate) fn node_stub(cluster: &Cluster, node: &Node) -> Value {
    json!({
        "Address": node.ip,
        "ID": node.id,
        "Attributes": null,
        "Datacenter": node.datacenter,
        "Name": node.name,
        "NodePool": "default",
        "NodeClass": node.node_class,
        "Version": node.version,
        "Drain": node.drain.is_some(),
        "SchedulingEligibility": if node.eligible { "eligible" } else { "ineligible" },
        "Status": node.status.as_str(),
        "StatusDescription": "",
        "Drivers": drivers(cluster, node),
        "HostVolumes": null,
        "LastDrain": last_drain(node),
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    })
}

/// `GET /v1/node/:id` (structs.Node, sanitized: SecretID "").
pub(crate) fn node(cluster: &Cluster, node: &Node) -> Value {
    let drain_strategy = match &node.drain {
        None => Value::Null,
        Some(d) => json!({
            "Deadline": d.deadline_ns,
            "IgnoreSystemJobs": d.ignore_system_jobs,
            "ForceDeadline": time_or_null(d.force_deadline),
            "StartedAt": d.started_at.rfc3339(),
        }),
    };
    let events: Vec<Value> = node
        .events
        .iter()
        .map(|e| {
            json!({
                "Message": e.message,
                "Subsystem": e.subsystem,
                "Details": null,
                "Timestamp": e.at.rfc3339(),
                "CreateIndex": e.create_index,
            })
        })
        .collect();
    json!({
        "ID": node.id,
        "SecretID": "",
        "Datacenter": node.datacenter,
        "Name": node.name,
        "HTTPAddr": format!("{}:{HTTP_PORT}", node.ip),
        "TLSEnabled": false,
        "Attributes": {
            "nomad.version": node.version,
            "nomad.revision": revision(&node.version),
            "unique.hostname": node.computer_name,
            "os.name": "ubuntu",
            "kernel.name": "linux",
            "cpu.arch": "amd64",
        },
        "Meta": { "connect.log_level": "info" },
        "Links": null,
        "NodeClass": node.node_class,
        "NodePool": "default",
        "ComputedClass": format!("v1:{}", &crate::hash::sha256_hex(node.node_class.as_bytes())[..19]),
        "Drain": node.drain.is_some(),
        "DrainStrategy": drain_strategy,
        "SchedulingEligibility": if node.eligible { "eligible" } else { "ineligible" },
        "Status": node.status.as_str(),
        "StatusDescription": "",
        "StatusUpdatedAt": node.status_updated_at.unix_seconds(),
        "Events": events,
        "Drivers": drivers(cluster, node),
        "HostVolumes": null,
        "HostNetworks": null,
        "CSIControllerPlugins": null,
        "CSINodePlugins": null,
        "LastDrain": last_drain(node),
        "NodeResources": { "Cpu": { "CpuShares": 8000 }, "Memory": { "MemoryMB": 16000 } },
        "ReservedResources": { "Cpu": { "CpuShares": 0 }, "Memory": { "MemoryMB": 0 } },
        "Resources": null,
        "Reserved": null,
        "CgroupParent": "nomad.slice",
        "GCVolumesOnNodeGC": false,
        "NodeMaxAllocs": 0,
        "LastMissedHeartbeatIndex": 0,
        "LastAllocUpdateIndex": node.modify_index,
        "CreateIndex": node.create_index,
        "ModifyIndex": node.modify_index,
    })
}

fn desired(alloc: &Alloc) -> &'static str {
    match alloc.desired {
        DesiredStatus::Run => "run",
        DesiredStatus::Stop => "stop",
    }
}

fn task_states(cluster: &Cluster, alloc: &Alloc) -> Value {
    let state = match alloc.client {
        ClientStatus::Pending => "pending",
        ClientStatus::Running => "running",
        _ => "dead",
    };
    let finished = alloc.client.is_terminal().then_some(alloc.modify_time);
    let _ = cluster;
    json!({
        "main": {
            "State": state,
            "Failed": alloc.client == ClientStatus::Lost,
            "Restarts": 0,
            "LastRestart": null,
            "StartedAt": time_or_null(alloc.started_at),
            "FinishedAt": time_or_null(finished),
            "Events": [],
        }
    })
}

/// A full structs.Allocation with every empty field left out, as v1.9/v1.10 servers write it.
pub(crate) fn allocation(cluster: &Cluster, alloc: &Alloc) -> Value {
    let mut out = Map::new();
    let mut put = |key: &str, value: Value| {
        let empty = match &value {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_u64() == Some(0) || n.as_i64() == Some(0),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
        };
        if !empty {
            out.insert(key.to_string(), value);
        }
    };
    put("ID", json!(alloc.id));
    put("Namespace", json!(alloc.namespace));
    put("EvalID", json!(alloc.eval_id));
    put("Name", json!(alloc.name()));
    put("NodeID", json!(alloc.node_id));
    put("NodeName", json!(alloc.node_name));
    put("JobID", json!(alloc.job_id));
    put(
        "Job",
        json!({
            "ID": alloc.job_id,
            "Name": alloc.job_id,
            "Namespace": alloc.namespace,
            "Type": alloc.kind.as_str(),
            "Version": 0,
        }),
    );
    put("TaskGroup", json!(alloc.group));
    put("DesiredStatus", json!(desired(alloc)));
    put("DesiredDescription", json!(alloc.desired_description));
    if alloc.migrate {
        put(
            "DesiredTransition",
            json!({ "Migrate": true, "Reschedule": null, "ForceReschedule": null, "NoShutdownDelay": null }),
        );
    }
    put("ClientStatus", json!(alloc.client.as_str()));
    put("ClientDescription", json!(alloc.client_description));
    put("TaskStates", task_states(cluster, alloc));
    put(
        "PreviousAllocation",
        json!(alloc.previous_allocation.clone().unwrap_or_default()),
    );
    put(
        "NextAllocation",
        json!(alloc.next_allocation.clone().unwrap_or_default()),
    );
    put("CreateIndex", json!(alloc.create_index));
    put("ModifyIndex", json!(alloc.modify_index));
    put("AllocModifyIndex", json!(alloc.create_index));
    put("CreateTime", json!(alloc.create_time.unix_nanos()));
    put("ModifyTime", json!(alloc.modify_time.unix_nanos()));
    Value::Object(out)
}

/// A structs.AllocListStub (`GET /v1/allocations`): every field written.
pub(crate) fn allocation_stub(cluster: &Cluster, alloc: &Alloc) -> Value {
    json!({
        "ID": alloc.id,
        "EvalID": alloc.eval_id,
        "Name": alloc.name(),
        "Namespace": alloc.namespace,
        "NodeID": alloc.node_id,
        "NodeName": alloc.node_name,
        "JobID": alloc.job_id,
        "JobType": alloc.kind.as_str(),
        "JobVersion": 0,
        "TaskGroup": alloc.group,
        "AllocatedResources": null,
        "DesiredStatus": desired(alloc),
        "DesiredDescription": alloc.desired_description,
        "ClientStatus": alloc.client.as_str(),
        "ClientDescription": alloc.client_description,
        "DesiredTransition": {
            "Migrate": if alloc.migrate { json!(true) } else { Value::Null },
            "Reschedule": null,
            "ForceReschedule": null,
            "NoShutdownDelay": null,
        },
        "TaskStates": task_states(cluster, alloc),
        "DeploymentStatus": null,
        "FollowupEvalID": "",
        "NextAllocation": alloc.next_allocation.clone().unwrap_or_default(),
        "RescheduleTracker": null,
        "PreemptedAllocations": null,
        "PreemptedByAllocation": "",
        "CreateIndex": alloc.create_index,
        "ModifyIndex": alloc.modify_index,
        "CreateTime": alloc.create_time.unix_nanos(),
        "ModifyTime": alloc.modify_time.unix_nanos(),
    })
}
