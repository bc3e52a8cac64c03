//! The plan's readable list: one entry per resource, in the order the template lists them.

use super::{health_path, Cluster, NatGatewaySku, Protocol, Source, Subnet, HEALTH_PATH};

/// One resource in the plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResourceSummary {
    pub kind: String,
    pub name: String,
    pub details: Vec<String>,
}

impl Cluster {
    /// One entry per resource, in the order the template lists them, for `plan`.
    pub fn summary(&self) -> Vec<ResourceSummary> {
        let n = &self.names;
        let mut out = Vec::new();
        let mut add = |kind: &str, name: &str, details: Vec<String>| {
            out.push(ResourceSummary {
                kind: kind.to_string(),
                name: name.to_string(),
                details,
            })
        };
        add(
            "application security group",
            &n.asg,
            vec!["groups every node's NIC: the source of the within-cluster rules".into()],
        );
        add(
            "network security group",
            &n.nsg,
            self.rules
                .iter()
                .map(|r| {
                    format!(
                        "{} {:>4} {} {} port {} from {}",
                        if r.allow { "allow" } else { "deny " },
                        r.priority,
                        r.name,
                        r.protocol.map_or("any", Protocol::as_str),
                        r.ports,
                        match &r.source {
                            Source::Cidrs(c) if c.is_empty() => "nobody".to_string(),
                            Source::Cidrs(c) => c.join(", "),
                            Source::Cluster => "the cluster's nodes".to_string(),
                            Source::AzureLoadBalancer => "Azure load balancer probes".to_string(),
                            Source::Any => "anywhere".to_string(),
                        }
                    )
                })
                .chain([
                    "attached to every scale set NIC".to_string(),
                    "created with its rules; once it exists, each rule is deployed on its own, \
                     so rules added outside cluster-deploy stay"
                        .to_string(),
                ])
                .collect(),
        );
        if let Some(nat) = &self.nat_gateway {
            let placement = match (&nat.sku, &nat.zone) {
                (NatGatewaySku::StandardV2, _) => "zone-redundant".to_string(),
                (NatGatewaySku::Standard, Some(zone)) => format!("zone {zone}"),
                (NatGatewaySku::Standard, None) => "no zone (Azure picks one)".to_string(),
            };
            add(
                "public IP address",
                &n.nat_ip,
                vec![format!(
                    "{}, static, {placement}: the NAT gateway's outbound address",
                    nat.sku.as_str()
                )],
            );
            add(
                "NAT gateway",
                &n.nat_gateway,
                vec![
                    format!("{} SKU, {placement}", nat.sku.as_str()),
                    "egress for the subnet (no default outbound access since Network 2025-07-01)"
                        .into(),
                ],
            );
        }
        match &self.subnet {
            Subnet::Created {
                address_space,
                prefix,
            } => {
                add(
                    "virtual network",
                    &n.vnet,
                    vec![
                        format!("address space {address_space}"),
                        "declared without its subnets: other subnets in it stay".to_string(),
                    ],
                );
                add(
                    "subnet",
                    &n.subnet,
                    vec![format!(
                        "{prefix}, default outbound access off{}",
                        if self.nat_gateway.is_some() {
                            ", NAT gateway attached"
                        } else {
                            ""
                        }
                    )],
                );
            }
            Subnet::Existing { id } => add(
                "existing subnet (not managed)",
                id.rsplit('/').next().unwrap_or(id),
                vec![id.to_string(), format!("egress: {}", self.egress)],
            ),
        }
        if let Some(lb) = &self.load_balancer {
            let mut ip = vec![format!(
                "Standard, static{}",
                if self.zones.is_empty() {
                    String::new()
                } else {
                    format!(", zones {}", self.zones.join(","))
                }
            )];
            if let Some(label) = &lb.domain_name_label {
                ip.push(format!(
                    "DNS name {label}.{}.cloudapp.azure.com",
                    self.location
                ));
            }
            add("public IP address", &lb.public_ip, ip);
            let mut details = vec![
                "Standard SKU".to_string(),
                format!(
                    "rule nomad-http: TCP {} -> servers:{} ({} probe {}:{})",
                    self.http_port, self.http_port, lb.probe_protocol, HEALTH_PATH, self.http_port
                ),
                format!(
                    "inbound NAT rule ssh: TCP {}-{} -> every node:{} (one port per instance)",
                    lb.ssh_ports.0, lb.ssh_ports.1, self.ssh_port
                ),
            ];
            if lb.outbound_rule {
                details.push("outbound rule egress: every node".to_string());
            }
            add("load balancer", &lb.name, details);
        }
        if let Some(kv) = &self.security.key_vault {
            let items: Vec<&str> = self
                .security
                .items()
                .iter()
                .map(|i| i.vault_name())
                .collect();
            add(
                "Key Vault",
                &kv.name,
                vec![
                    format!(
                        "RBAC authorization, soft delete ({} days), purge protection {}",
                        kv.retention_days,
                        if kv.purge_protection { "on" } else { "off" }
                    ),
                    if kv.open {
                        "firewall off (0.0.0.0/0): RBAC alone guards it".to_string()
                    } else {
                        format!(
                            "firewall: only {} and the cluster's subnet (service endpoint \
                             Microsoft.KeyVault); no trusted-service bypass",
                            if kv.allowed_cidrs.is_empty() {
                                "nobody else".to_string()
                            } else {
                                kv.allowed_cidrs.join(", ")
                            }
                        )
                    },
                    format!("keeps {}", items.join(", ")),
                    "secrets uploaded by apply through the data plane; none in the template"
                        .to_string(),
                ],
            );
            add(
                "role assignment",
                "Key Vault Secrets Officer for the operator",
                vec!["on the vault, for whoever runs apply (uploads, rotation, env)".into()],
            );
        }
        for set in self.scale_sets() {
            let mut details = vec![
                format!(
                    "{}: {} x {}{}, Uniform, Manual upgrade policy",
                    set.label(),
                    set.capacity,
                    set.vm_size,
                    match &set.spot {
                        Some(spot) => format!(
                            ", Spot (evicted: {}, max price {})",
                            spot.eviction_policy.as_str(),
                            if spot.max_price < 0.0 {
                                "the regular price".to_string()
                            } else {
                                format!("${}/h", spot.max_price)
                            }
                        ),
                        None => String::new(),
                    }
                ),
                format!(
                    "{} placement group{} (at most {} instances)",
                    if set.single_placement_group {
                        "single"
                    } else {
                        "multiple"
                    },
                    if set.single_placement_group { "" } else { "s" },
                    set.max_capacity
                ),
                format!(
                    "image {}, OS disk {} GB {}{}",
                    self.image_id,
                    self.os_disk_gb,
                    self.os_disk_type,
                    if self.encryption_at_host {
                        ", encryption at host"
                    } else {
                        ""
                    }
                ),
                format!(
                    "SSH key only for {} (password login disabled), system-assigned identity",
                    self.admin_user
                ),
                format!(
                    "health: Application Health extension, {}://localhost:{}{}{}",
                    self.health.protocol,
                    self.http_port,
                    health_path(set.role),
                    if self.health.automatic_repairs {
                        format!(
                            "; automatic repairs (replace) after a grace period of {}",
                            self.health.grace_period
                        )
                    } else {
                        "; automatic repairs off".to_string()
                    }
                ),
                if set.spot.is_some() {
                    "no terminate notification (Azure refuses it on Spot): 30 s Preempt notice \
                     before an eviction"
                        .to_string()
                } else {
                    "terminate notification 5 minutes (time to drain)".to_string()
                },
            ];
            for commands in &set.boot_commands {
                details.push(format!("boot commands from {}", commands.origin));
            }
            details.push(format!(
                "custom data: {}",
                crate::custom_data::run_nomad_line(self, set)
            ));
            add("virtual machine scale set", &set.name, details);
            add(
                "role assignment",
                &format!("Reader for {}", set.name),
                vec!["on the resource group, so the identity can do cloud auto-join".into()],
            );
            let reads: Vec<&str> = self
                .security
                .items_for(set.role)
                .iter()
                .map(|i| i.vault_name())
                .collect();
            if !reads.is_empty() {
                add(
                    "role assignments",
                    &format!("Key Vault Secrets User for {}", set.name),
                    vec![format!("one per secret, on {} only", reads.join(", "))],
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::example;

    #[test]
    fn every_resource_is_summarised() {
        let cluster = example();
        let kinds: Vec<_> = cluster.summary().into_iter().map(|r| r.kind).collect();
        for kind in [
            "network security group",
            "NAT gateway",
            "virtual network",
            "subnet",
            "load balancer",
            "virtual machine scale set",
            "role assignment",
        ] {
            assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
        }
    }
}
