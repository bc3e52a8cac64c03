//! `status`: each scale set's instances from ARM (the servers and every client pool, with its
//! size, node class, node pool and Spot priority), and Nomad's leader, servers and clients.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use support::http::Url;

use crate::auth::{Env, Secret};
use crate::cli::Cli;

use super::connect::*;
use super::outputs::*;
use super::{write_json, Loaded};

pub(super) fn status(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    nomad_address: Option<&str>,
    ca: Option<&Path>,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let arm = connect_required(&cli.azure, env)?;
    let mut sets = Vec::new();
    for set in cluster.scale_sets() {
        let instances = arm
            .scale_set_instances(&cluster.resource_group, &set.name)
            .with_context(|| format!("listing the instances of scale set {}", set.name))?;
        let rows: Vec<Value> = instances
            .iter()
            .map(|vm| {
                json!({
                    "instance_id": vm["instanceId"],
                    "name": vm["name"],
                    "computer_name": vm["properties"]["osProfile"]["computerName"],
                    "provisioning_state": vm["properties"]["provisioningState"],
                    "latest_model_applied": vm["properties"]["latestModelApplied"],
                })
            })
            .collect();
        sets.push(json!({
            "name": set.name,
            "role": set.role_name(),
            "pool": set.pool,
            "vm_size": set.vm_size,
            "node_class": set.node_class,
            "node_pool": set.node_pool,
            "spot": set.spot.is_some(),
            "wanted": set.capacity,
            "instances": rows,
        }));
    }
    let address = match nomad_address {
        Some(a) => Some(a.to_string()),
        None => match &cluster.load_balancer {
            Some(lb) => public_ip_address(&arm, cluster, &lb.public_ip)?
                .map(|ip| format!("{}://{ip}:{}", cluster.security.scheme(), cluster.http_port)),
            None => None,
        },
    };
    // The CA `cluster-deploy env` wrote, unless one is given.
    let env_ca = crate::secrets::local::cluster_dir(env, &cluster.name)
        .ok()
        .map(|dir| crate::secrets::local::LocalFiles::at(&dir).ca_cert)
        .filter(|p| cluster.security.tls() && p.is_file());
    let ca = ca.map(Path::to_path_buf).or(env_ca);
    let token = std::env::var("NOMAD_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(Secret::new);
    let (nomad, nomad_note) = match &address {
        None => (
            None,
            Some("no Nomad address: the cluster has no public load balancer; pass --nomad-address (e.g. over a VPN)".to_string()),
        ),
        Some(a) => {
            let url = Url::parse(a).with_context(|| format!("--nomad-address {a:?} is not a URL"))?;
            let mut settings = crate::nomad::NomadSettings::new(url);
            settings.tls.ca_cert = ca.clone();
            settings.token = token;
            if cluster.security.tls() && a.starts_with("https://") {
                // The load balancer's address is not on the servers' certificate; its name is.
                settings.tls.server_name = Some(cluster.security.server_name());
            }
            let client = crate::nomad::NomadClient::with_settings(settings)?;
            match client.health() {
                Ok(h) => (Some(h), None),
                Err(e) => (None, Some(format!("the Nomad API at {a} is not reachable: {e}"))),
            }
        }
    };
    if cli.json {
        return write_json(
            out,
            &json!({ "scale_sets": sets, "nomad": nomad, "notes": nomad_note.into_iter().collect::<Vec<_>>() }),
        );
    }
    for set in &sets {
        let instances = set["instances"].as_array().cloned().unwrap_or_default();
        let mut about = vec![match set["pool"].as_str() {
            Some(pool) => format!("client pool {pool}"),
            None => "servers".to_string(),
        }];
        about.push(set["vm_size"].as_str().unwrap_or("?").to_string());
        if let Some(class) = set["node_class"].as_str() {
            about.push(format!("node class {class}"));
        }
        if let Some(pool) = set["node_pool"].as_str() {
            about.push(format!("node pool {pool}"));
        }
        if set["spot"] == true {
            about.push("Spot".to_string());
        }
        writeln!(
            out,
            "scale set {} ({} of {} instances): {}",
            set["name"].as_str().unwrap_or(""),
            instances.len(),
            set["wanted"],
            about.join(", ")
        )?;
        for vm in instances {
            writeln!(
                out,
                "  {:<4} {:<24} {:<12} {}",
                vm["instance_id"].as_str().unwrap_or("?"),
                vm["computer_name"]
                    .as_str()
                    .or(vm["name"].as_str())
                    .unwrap_or("?"),
                vm["provisioning_state"].as_str().unwrap_or("?"),
                match vm["latest_model_applied"].as_bool() {
                    Some(true) => "latest model",
                    Some(false) => "OLD MODEL (roll it: see the README)",
                    None => "",
                }
            )?;
        }
    }
    if let Some(h) = &nomad {
        writeln!(out, "nomad at {}", h.address)?;
        writeln!(
            out,
            "  leader: {}",
            h.leader.as_deref().unwrap_or("NONE (no quorum?)")
        )?;
        for m in &h.servers {
            writeln!(
                out,
                "  server {:<24} {}:{} {}",
                m.name, m.addr, m.port, m.status
            )?;
        }
        for n in &h.nodes {
            writeln!(
                out,
                "  client {:<24} {} {} {}",
                n.name,
                n.status,
                n.scheduling_eligibility,
                if n.node_class.is_empty() {
                    "-"
                } else {
                    &n.node_class
                }
            )?;
        }
    }
    if let Some(note) = nomad_note {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}
