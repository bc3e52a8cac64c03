//! `outputs`: the load balancer address, the Nomad API URL, SSH, the servers' private addresses.

use std::io::Write;

use anyhow::{Context, Result};

use crate::arm::ArmClient;
use crate::config::{self};
use crate::model::{Cluster, SSH_FRONTEND_PORTS};
use crate::template::NETWORK_API;

use super::write_json;

/// What the old helper script printed, and a little more.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Outputs {
    pub(super) load_balancer_address: Option<String>,
    pub(super) nomad_api: Option<String>,
    pub(super) ssh: Option<String>,
    pub(super) server_scale_set: String,
    pub(super) client_scale_set: String,
    pub(super) server_private_ips: Vec<String>,
    pub(super) nat_gateway_address: Option<String>,
}

pub(super) fn public_ip_address(
    arm: &ArmClient,
    cluster: &Cluster,
    name: &str,
) -> Result<Option<String>> {
    let id = format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/publicIPAddresses/{name}",
        arm.subscription, cluster.resource_group
    );
    Ok(arm
        .get_resource(&id, NETWORK_API)?
        .and_then(|ip| ip["properties"]["ipAddress"].as_str().map(str::to_string)))
}

pub(super) fn outputs(arm: &ArmClient, cluster: &Cluster) -> Result<Outputs> {
    let lb_address = match &cluster.load_balancer {
        Some(lb) => public_ip_address(arm, cluster, &lb.public_ip)?,
        None => None,
    };
    let nat_address = match cluster.egress {
        config::Egress::NatGateway => public_ip_address(arm, cluster, &cluster.names.nat_ip)?,
        _ => None,
    };
    let scheme = if cluster.nomad.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let nics = arm
        .scale_set_nics(&cluster.resource_group, &cluster.servers.name)
        .with_context(|| format!("listing the NICs of scale set {}", cluster.servers.name))?;
    let mut ips: Vec<String> = nics
        .iter()
        .flat_map(|nic| {
            nic["properties"]["ipConfigurations"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|ip| {
            ip["properties"]["privateIPAddress"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    ips.sort_by_key(|ip| ip.parse::<std::net::Ipv4Addr>().ok());
    Ok(Outputs {
        nomad_api: lb_address
            .as_ref()
            .map(|a| format!("{scheme}://{a}:{}", cluster.http_port)),
        ssh: lb_address.as_ref().map(|a| {
            format!(
                "ssh -p <{}-{}> {}@{a}  (one port per instance, in order)",
                SSH_FRONTEND_PORTS.0, SSH_FRONTEND_PORTS.1, cluster.admin_user
            )
        }),
        load_balancer_address: lb_address,
        server_scale_set: cluster.servers.name.clone(),
        client_scale_set: cluster.clients.name.clone(),
        server_private_ips: ips,
        nat_gateway_address: nat_address,
    })
}

pub(super) fn print_outputs(json_out: bool, o: &Outputs, out: &mut dyn Write) -> Result<()> {
    if json_out {
        return write_json(out, &serde_json::to_value(o)?);
    }
    let none = "-".to_string();
    writeln!(
        out,
        "load_balancer_address  {}",
        o.load_balancer_address.as_ref().unwrap_or(&none)
    )?;
    writeln!(
        out,
        "nomad_api              {}",
        o.nomad_api.as_ref().unwrap_or(&none)
    )?;
    writeln!(
        out,
        "ssh                    {}",
        o.ssh.as_ref().unwrap_or(&none)
    )?;
    writeln!(out, "server_scale_set       {}", o.server_scale_set)?;
    writeln!(out, "client_scale_set       {}", o.client_scale_set)?;
    writeln!(
        out,
        "server_private_ips     {}",
        if o.server_private_ips.is_empty() {
            none.clone()
        } else {
            o.server_private_ips.join(" ")
        }
    )?;
    writeln!(
        out,
        "nat_gateway_address    {}",
        o.nat_gateway_address.as_ref().unwrap_or(&none)
    )?;
    Ok(())
}
