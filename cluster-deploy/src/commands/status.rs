//! `status`: every scale set (the servers and each client pool, with its size, node class,
//! node pool and Spot priority) instance by instance: provisioning state, latest model or not,
//! and its Nomad agent, joined by the VM id run-nomad names it after (a server's member status,
//! voter and leader, autopilot's verdict; a client's node status, eligibility, drain and live
//! allocations); then the cluster's leader, voters and failure tolerance.
//!
//! Nomad is reached as `roll` reaches it ([`nomad_settings`]): `--nomad-address`, else
//! `NOMAD_ADDR`, else the load balancer; the token, TLS files, client certificate and TLS server
//! name from the Nomad CLI's variables. An unreachable or refusing API is a note, not a failure:
//! the scale sets are still shown.

use std::io::Write;

use anyhow::Result;
use serde_json::{json, Value};

use crate::arm::ArmClient;
use crate::auth::Env;
use crate::cli::{Cli, NomadArgs};
use crate::model::{Cluster, Role, ScaleSet};
use crate::nomad::settings::parse_address;
use crate::nomad::{NomadClient, NomadSettings};

use super::connect::*;
use super::outputs::*;
use super::roll::report::{client_line, server_line, server_summary};
use super::roll::state::{self, ClientFacts, Instance, ServerFacts};
use super::{write_json, Loaded};

/// How to reach the cluster's Nomad API: `--nomad-address` (clap folds `NOMAD_ADDR` into it),
/// else `NOMAD_ADDR` from `var`, else the load balancer's public address (`https` with TLS);
/// everything else from the `NOMAD_*` variables. `None` when there is no address at all.
pub(super) fn nomad_settings(
    arm: &ArmClient,
    cluster: &Cluster,
    env: &Env,
    args: &NomadArgs,
    var: impl Fn(&str) -> Option<String>,
) -> Result<Option<NomadSettings>> {
    let mut settings = NomadSettings::from_vars(&var)?;
    let given = args
        .nomad_address
        .clone()
        .filter(|a| !a.trim().is_empty())
        .or_else(|| var("NOMAD_ADDR").filter(|a| !a.trim().is_empty()));
    let address = match given {
        Some(a) => Some((a, "--nomad-address")),
        None => match &cluster.load_balancer {
            Some(lb) => public_ip_address(arm, cluster, &lb.public_ip)?.map(|ip| {
                (
                    format!("{}://{ip}:{}", cluster.security.scheme(), cluster.http_port),
                    "the load balancer's address",
                )
            }),
            None => None,
        },
    };
    let Some((address, what)) = address else {
        return Ok(None);
    };
    settings.address = parse_address(&address, what)?;
    if let Some(ca) = &args.nomad_ca_cert {
        settings.tls.ca_cert = Some(ca.clone());
    }
    if cluster.security.tls() {
        // The CA `cluster-deploy env` wrote, unless one is given.
        if settings.tls.ca_cert.is_none() {
            settings.tls.ca_cert = crate::secrets::local::cluster_dir(env, &cluster.name)
                .ok()
                .map(|dir| crate::secrets::local::LocalFiles::at(&dir).ca_cert)
                .filter(|p| p.is_file());
        }
        // The load balancer's address is not on the servers' certificate; their name is.
        if settings.address.scheme() == "https" && settings.tls.server_name.is_none() {
            settings.tls.server_name = Some(cluster.security.server_name());
        }
    }
    Ok(Some(settings))
}

/// What Nomad said, with a note for each part it would not tell.
struct NomadView {
    address: String,
    servers: Option<ServerFacts>,
    clients: Option<ClientFacts>,
}

fn read_nomad(settings: NomadSettings, notes: &mut Vec<String>) -> Option<NomadView> {
    let address = settings.address.to_string();
    let client = match NomadClient::with_settings(settings) {
        Ok(c) => c,
        Err(e) => {
            notes.push(format!("the Nomad API at {address}: {e}"));
            return None;
        }
    };
    let members = match client.members() {
        Ok(m) => m,
        Err(e) if e.status().is_none() => {
            notes.push(format!("the Nomad API at {address} is not reachable: {e}"));
            return None;
        }
        Err(e) => {
            notes.push(format!("the Nomad API at {address} refused: {e}"));
            return None;
        }
    };
    // What a token may not read (operator:read for Raft and autopilot, node:read for nodes)
    // is a note; the rest is still shown.
    let leader = part(notes, &address, "the leader", client.leader()).flatten();
    let (raft, autopilot) = if leader.is_some() {
        (
            part(
                notes,
                &address,
                "the Raft configuration",
                client.raft_configuration(),
            ),
            part(
                notes,
                &address,
                "autopilot's health",
                client.autopilot_health(),
            ),
        )
    } else {
        (None, None)
    };
    let clients = part(
        notes,
        &address,
        "the nodes and allocations",
        state::read_clients(&client),
    );
    Some(NomadView {
        address,
        servers: Some(ServerFacts {
            members,
            leader,
            raft,
            autopilot,
        }),
        clients,
    })
}

/// One read's answer, or a note saying what could not be read.
fn part<T>(
    notes: &mut Vec<String>,
    address: &str,
    what: &str,
    result: Result<T, crate::nomad::NomadError>,
) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(e) => {
            notes.push(format!("reading {what} at {address}: {e}"));
            None
        }
    }
}

fn set_json(set: &ScaleSet, instances: Vec<Value>) -> Value {
    json!({
        "name": set.name,
        "role": set.role_name(),
        "pool": set.pool,
        "vm_size": set.vm_size,
        "node_class": set.node_class,
        "node_pool": set.node_pool,
        "spot": set.spot.is_some(),
        "wanted": set.capacity,
        "instances": instances,
    })
}

fn instance_json(i: &Instance, nomad: Value) -> Value {
    json!({
        "instance_id": i.instance_id,
        "name": i.name,
        "computer_name": i.computer_name,
        "vm_id": i.vm_id,
        "provisioning_state": i.provisioning_state,
        "latest_model_applied": i.latest_model,
        "time_created": i.time_created,
        "nomad": nomad,
    })
}

fn header(set: &ScaleSet, count: usize) -> String {
    let mut about = vec![match &set.pool {
        Some(pool) => format!("client pool {pool}"),
        None => "servers".to_string(),
    }];
    about.push(set.vm_size.clone());
    if let Some(class) = &set.node_class {
        about.push(format!("node class {class}"));
    }
    if let Some(pool) = &set.node_pool {
        about.push(format!("node pool {pool}"));
    }
    if set.spot.is_some() {
        about.push("Spot".to_string());
    }
    format!(
        "scale set {} ({count} of {} instances): {}",
        set.name,
        set.capacity,
        about.join(", ")
    )
}

pub(super) fn status(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    args: &NomadArgs,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let arm = connect_required(&cli.azure, env)?;
    let mut notes = Vec::new();
    let nomad = match nomad_settings(&arm, cluster, env, args, |n| std::env::var(n).ok())? {
        Some(settings) => read_nomad(settings, &mut notes),
        None => {
            notes.push("no Nomad address: the cluster has no public load balancer; pass --nomad-address (e.g. over a VPN)".to_string());
            None
        }
    };
    let server_facts = nomad.as_ref().and_then(|n| n.servers.clone());
    let client_facts = nomad.as_ref().and_then(|n| n.clients.clone());
    let mut text = Vec::new();
    let mut sets = Vec::new();
    let mut server_set = None;
    for set in cluster.scale_sets() {
        let instances = super::roll::azure::instances(&arm, &cluster.resource_group, &set.name)?;
        text.push(header(set, instances.len()));
        let rows: Vec<Value> = match set.role {
            Role::Server => {
                let joined = state::join_servers(
                    &set.name,
                    set.capacity,
                    instances,
                    &server_facts.clone().unwrap_or_default(),
                );
                let rows = joined
                    .instances
                    .iter()
                    .map(|s| {
                        text.push(if server_facts.is_some() {
                            server_line(s)
                        } else {
                            bare_line(&s.instance)
                        });
                        instance_json(&s.instance, json!(s.agent))
                    })
                    .collect();
                server_set = Some(joined);
                rows
            }
            Role::Client => {
                let joined = state::join_clients(
                    &set.name,
                    set.pool.as_deref(),
                    set.capacity,
                    instances,
                    &client_facts.clone().unwrap_or_default(),
                );
                joined
                    .instances
                    .iter()
                    .map(|c| {
                        text.push(if client_facts.is_some() {
                            client_line(c)
                        } else {
                            bare_line(&c.instance)
                        });
                        instance_json(&c.instance, json!(c.node))
                    })
                    .collect()
            }
        };
        sets.push(set_json(set, rows));
    }
    let nomad_json = nomad.as_ref().map(|n| {
        let servers = server_facts.as_ref();
        json!({
            "address": n.address,
            "leader": servers.and_then(|s| s.leader.clone()),
            "servers": servers.map(|s| s.members.clone()).unwrap_or_default(),
            "nodes": client_facts.as_ref().map(|c| c.nodes.clone()).unwrap_or_default(),
            "voters": server_set.as_ref().map(|s| s.voters),
            "autopilot_healthy": servers.and_then(|s| s.autopilot.as_ref()).map(|a| a.healthy),
            "failure_tolerance": servers.and_then(|s| s.autopilot.as_ref()).map(|a| a.failure_tolerance),
        })
    });
    if cli.json {
        return write_json(
            out,
            &json!({ "scale_sets": sets, "nomad": nomad_json, "notes": notes }),
        );
    }
    for line in text {
        writeln!(out, "{line}")?;
    }
    if let (Some(n), Some(facts)) = (&nomad, &server_facts) {
        writeln!(out, "nomad at {}", n.address)?;
        writeln!(
            out,
            "  leader: {}",
            facts.leader.as_deref().unwrap_or("NONE (no quorum?)")
        )?;
        if let Some(set) = &server_set {
            writeln!(out, "  servers: {}", server_summary(set))?;
        }
        for m in &facts.members {
            writeln!(
                out,
                "  server {:<24} {}:{} {}",
                m.name, m.addr, m.port, m.status
            )?;
        }
        for node in client_facts.iter().flat_map(|c| c.nodes.iter()) {
            let allocations = client_facts
                .as_ref()
                .and_then(|c| c.live_allocations.get(&node.id))
                .copied()
                .unwrap_or(0);
            writeln!(
                out,
                "  client {:<24} {} {}{} {} {allocations} allocs",
                node.name,
                node.status,
                node.scheduling_eligibility,
                if node.drain { " draining" } else { "" },
                if node.node_class.is_empty() {
                    "-"
                } else {
                    &node.node_class
                }
            )?;
        }
    }
    for note in notes {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}

/// An instance line without Nomad's side (the API could not be read).
fn bare_line(i: &Instance) -> String {
    format!(
        "  {:<4} {:<16} {:<10} {}",
        i.instance_id,
        i.computer_name,
        i.provisioning_state,
        if i.latest_model {
            "latest model"
        } else {
            "OLD MODEL (roll it: cluster-deploy roll)"
        }
    )
}
