//! `outputs`: the load balancer address and DNS name, the Nomad API URL, SSH, the servers'
//! private addresses, every client pool, and with TLS the CA file `env` wrote (or how to get
//! it); with `--json`, also under the Terraform module's
//! output names (`num_servers`, `scale_set_name_servers`, `load_balancer_ip_address_servers`,
//! the example's `load_balancer_ip_address_clients`, and the security group id the module's
//! README says it exports), so scripts written against the module keep working.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::arm::ArmClient;
use crate::auth::Env;
use crate::model::Cluster;
use crate::secrets::local::{cluster_dir, LocalFiles};
use crate::template::NETWORK_API;

use super::write_json;

/// One client pool, as `outputs` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct PoolOutput {
    pub(super) name: String,
    pub(super) scale_set: String,
    pub(super) instance_size: String,
    pub(super) count: u32,
    pub(super) node_class: Option<String>,
    pub(super) node_pool: Option<String>,
    pub(super) spot: bool,
}

/// What the old helper script printed, and a little more.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Outputs {
    pub(super) load_balancer_address: Option<String>,
    /// `<domain_name_label>.<region>.cloudapp.azure.com`, as Azure reports it.
    pub(super) load_balancer_fqdn: Option<String>,
    pub(super) nomad_api: Option<String>,
    pub(super) ssh: Option<String>,
    pub(super) server_scale_set: String,
    /// The first client pool's scale set (the only one in the single-pool form).
    pub(super) client_scale_set: String,
    pub(super) client_scale_sets: Vec<String>,
    pub(super) client_pools: Vec<PoolOutput>,
    pub(super) server_private_ips: Vec<String>,
    pub(super) nat_gateway_address: Option<String>,
    pub(super) network_security_group_id: String,
    /// The Key Vault that keeps the cluster's secrets.
    pub(super) key_vault: Option<String>,
    /// The name the servers' certificate carries (`NOMAD_TLS_SERVER_NAME`), with TLS.
    pub(super) nomad_tls_server_name: Option<String>,
    /// With TLS: the cluster's CA certificate as `env` wrote it on this machine
    /// (`NOMAD_CACERT`), when it is there ([`Outputs::with_local_ca`]).
    pub(super) nomad_ca_cert: Option<String>,
    /// With TLS and no CA file here yet: how to get one.
    pub(super) nomad_ca_cert_hint: Option<String>,
    // The Terraform module's output names (modules/nomad-cluster/outputs.tf, the root
    // example's outputs.tf and README).
    pub(super) num_servers: u32,
    pub(super) scale_set_name_servers: String,
    pub(super) load_balancer_ip_address_servers: Option<String>,
    pub(super) load_balancer_ip_address_clients: Option<String>,
    pub(super) security_group_id: String,
}

fn resource_path(arm: &ArmClient, cluster: &Cluster, kind: &str, name: &str) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/{}/providers/{kind}/{name}",
        arm.subscription, cluster.resource_group
    )
}

/// A public IP address resource as ARM returns it, if it exists.
pub(super) fn public_ip(arm: &ArmClient, cluster: &Cluster, name: &str) -> Result<Option<Value>> {
    let id = resource_path(arm, cluster, "Microsoft.Network/publicIPAddresses", name);
    Ok(arm.get_resource(&id, NETWORK_API)?)
}

pub(super) fn public_ip_address(
    arm: &ArmClient,
    cluster: &Cluster,
    name: &str,
) -> Result<Option<String>> {
    Ok(public_ip(arm, cluster, name)?
        .and_then(|ip| ip["properties"]["ipAddress"].as_str().map(str::to_string)))
}

pub(super) fn outputs(arm: &ArmClient, cluster: &Cluster) -> Result<Outputs> {
    let lb_ip = match &cluster.load_balancer {
        Some(lb) => public_ip(arm, cluster, &lb.public_ip)?,
        None => None,
    };
    let lb_address = lb_ip
        .as_ref()
        .and_then(|ip| ip["properties"]["ipAddress"].as_str().map(str::to_string));
    let lb_fqdn = lb_ip.as_ref().and_then(|ip| {
        ip["properties"]["dnsSettings"]["fqdn"]
            .as_str()
            .map(str::to_string)
    });
    let nat_address = match &cluster.nat_gateway {
        Some(_) => public_ip_address(arm, cluster, &cluster.names.nat_ip)?,
        None => None,
    };
    let scheme = cluster.security.scheme();
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
    let api_host = lb_fqdn.clone().or_else(|| lb_address.clone());
    let nsg_id = resource_path(
        arm,
        cluster,
        "Microsoft.Network/networkSecurityGroups",
        &cluster.names.nsg,
    );
    let client_scale_sets: Vec<String> = cluster
        .client_pools
        .iter()
        .map(|s| s.name.clone())
        .collect();
    Ok(Outputs {
        nomad_api: api_host
            .as_ref()
            .map(|a| format!("{scheme}://{a}:{}", cluster.http_port)),
        ssh: match (&cluster.load_balancer, &api_host) {
            (Some(lb), Some(host)) => Some(format!(
                "ssh -p <{}-{}> {}@{host}  (one port per instance, in order)",
                lb.ssh_ports.0, lb.ssh_ports.1, cluster.admin_user
            )),
            _ => None,
        },
        load_balancer_address: lb_address.clone(),
        load_balancer_fqdn: lb_fqdn,
        server_scale_set: cluster.servers.name.clone(),
        client_scale_set: client_scale_sets.first().cloned().unwrap_or_default(),
        client_scale_sets,
        client_pools: cluster
            .client_pools
            .iter()
            .map(|s| PoolOutput {
                name: s.pool.clone().unwrap_or_default(),
                scale_set: s.name.clone(),
                instance_size: s.vm_size.clone(),
                count: s.capacity,
                node_class: s.node_class.clone(),
                node_pool: s.node_pool.clone(),
                spot: s.spot.is_some(),
            })
            .collect(),
        server_private_ips: ips,
        nat_gateway_address: nat_address,
        network_security_group_id: nsg_id.clone(),
        key_vault: cluster.security.key_vault.as_ref().map(|k| k.name.clone()),
        nomad_tls_server_name: cluster
            .security
            .tls()
            .then(|| cluster.security.server_name()),
        nomad_ca_cert: None,
        nomad_ca_cert_hint: None,
        num_servers: cluster.servers.capacity,
        scale_set_name_servers: cluster.servers.name.clone(),
        // One load balancer fronts the servers (API) and every node (SSH).
        load_balancer_ip_address_servers: lb_address.clone(),
        load_balancer_ip_address_clients: lb_address,
        security_group_id: nsg_id,
    })
}

impl Outputs {
    /// With TLS, the API is https with the cluster's own CA: names the CA file `env` writes
    /// ([`crate::secrets::local`]) when it is on this machine, or says how to get it. Never
    /// reads the vault: `outputs` stays a read of Azure.
    pub(super) fn with_local_ca(mut self, env: &Env, cluster: &Cluster) -> Self {
        if !cluster.security.tls() {
            return self;
        }
        match cluster_dir(env, &cluster.name) {
            Ok(dir) => {
                let ca = LocalFiles::at(&dir).ca_cert;
                if ca.is_file() {
                    self.nomad_ca_cert = Some(ca.display().to_string());
                } else {
                    self.nomad_ca_cert_hint = Some(format!(
                        "the API is https with the cluster's own CA: run `cluster-deploy env` to \
                         write it to {} (NOMAD_CACERT)",
                        ca.display()
                    ));
                }
            }
            Err(e) => {
                self.nomad_ca_cert_hint = Some(format!(
                    "the API is https with the cluster's own CA, which `cluster-deploy env` \
                     writes under the configuration directory: {e}"
                ));
            }
        }
        self
    }
}

pub(super) fn print_outputs(json_out: bool, o: &Outputs, out: &mut dyn Write) -> Result<()> {
    if json_out {
        return write_json(out, &serde_json::to_value(o)?);
    }
    let none = "-".to_string();
    let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| none.clone());
    writeln!(
        out,
        "load_balancer_address  {}",
        or_none(&o.load_balancer_address)
    )?;
    writeln!(
        out,
        "load_balancer_fqdn     {}",
        or_none(&o.load_balancer_fqdn)
    )?;
    writeln!(out, "nomad_api              {}", or_none(&o.nomad_api))?;
    writeln!(out, "ssh                    {}", or_none(&o.ssh))?;
    writeln!(out, "server_scale_set       {}", o.server_scale_set)?;
    writeln!(
        out,
        "client_scale_sets      {}",
        o.client_scale_sets.join(" ")
    )?;
    for pool in &o.client_pools {
        writeln!(
            out,
            "  pool {:<16} {} x {}{}{}{}",
            pool.name,
            pool.count,
            pool.instance_size,
            pool.node_class
                .as_ref()
                .map(|c| format!(", node class {c}"))
                .unwrap_or_default(),
            pool.node_pool
                .as_ref()
                .map(|p| format!(", node pool {p}"))
                .unwrap_or_default(),
            if pool.spot { ", Spot" } else { "" }
        )?;
    }
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
        or_none(&o.nat_gateway_address)
    )?;
    writeln!(out, "security_group_id      {}", o.security_group_id)?;
    writeln!(out, "key_vault              {}", or_none(&o.key_vault))?;
    writeln!(
        out,
        "nomad_tls_server_name  {}",
        or_none(&o.nomad_tls_server_name)
    )?;
    match (&o.nomad_ca_cert, &o.nomad_ca_cert_hint) {
        (Some(path), _) => writeln!(out, "nomad_ca_cert          {path}")?,
        (None, Some(hint)) => writeln!(out, "nomad_ca_cert          - ({hint})")?,
        (None, None) => writeln!(out, "nomad_ca_cert          -")?,
    }
    Ok(())
}
