//! The typed cluster model: every Azure resource the cluster needs, named and decided, before
//! any JSON exists. [`Cluster::from_file`] is pure; [`crate::template`] renders the model as an
//! ARM template and [`Cluster::summary`] as the readable plan.

use std::collections::BTreeMap;

use crate::config::{ClusterFile, Egress, TlsFiles};

/// The tag every resource carries, with the cluster name as its value. `destroy` deletes only
/// what carries it.
pub const CLUSTER_TAG: &str = "nomad-cluster";

/// The inbound NAT rule's frontend port range for SSH (v2 rule over a backend pool; Azure
/// retires NAT pools on 2027-09-30).
pub const SSH_FRONTEND_PORTS: (u16, u16) = (2200, 2299);

/// Nomad's default dynamic port range for task ports (Nomad docs, client `min_dynamic_port` /
/// `max_dynamic_port`): open between cluster members only, so tasks reach each other.
pub const DYNAMIC_PORTS: (u16, u16) = (20000, 32000);

/// The Nomad API health endpoint the load balancer probes (`/v1/agent/health`, Nomad's
/// agent HTTP API; it answers without an ACL token).
pub const HEALTH_PATH: &str = "/v1/agent/health";

/// The names of everything, derived from the cluster name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub deployment: String,
    pub nsg: String,
    pub asg: String,
    pub vnet: String,
    pub subnet: String,
    pub nat_gateway: String,
    pub nat_ip: String,
    pub load_balancer: String,
    pub lb_ip: String,
    pub frontend: String,
    /// Backend pool of the servers: the Nomad API rule.
    pub servers_pool: String,
    /// Backend pool of every node: the SSH NAT rule and the outbound rule.
    pub nodes_pool: String,
    pub servers: String,
    pub clients: String,
}

impl Names {
    pub fn new(cluster: &str) -> Self {
        Self {
            deployment: cluster.to_string(),
            nsg: format!("{cluster}-nsg"),
            asg: format!("{cluster}-nodes"),
            vnet: format!("{cluster}-vnet"),
            subnet: format!("{cluster}-subnet"),
            nat_gateway: format!("{cluster}-nat"),
            nat_ip: format!("{cluster}-nat-ip"),
            load_balancer: format!("{cluster}-lb"),
            lb_ip: format!("{cluster}-lb-ip"),
            frontend: "public".to_string(),
            servers_pool: "servers".to_string(),
            nodes_pool: "nodes".to_string(),
            servers: format!("{cluster}-servers"),
            clients: format!("{cluster}-clients"),
        }
    }
}

/// Where the instances' NICs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subnet {
    /// A subnet the operator already has (`subnet_id`).
    Existing { id: String },
    /// A virtual network and subnet created here.
    Created {
        address_space: String,
        prefix: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "Tcp",
            Protocol::Udp => "Udp",
        }
    }
}

/// Who an inbound rule admits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// These CIDR blocks, exactly as configured.
    Cidrs(Vec<String>),
    /// The cluster's own NICs (the application security group).
    Cluster,
    /// Azure's load balancer health probes (service tag `AzureLoadBalancer`).
    AzureLoadBalancer,
    /// Anything: only for the final deny rule.
    Any,
}

/// One inbound security rule of the cluster's NSG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub priority: u16,
    pub allow: bool,
    /// `None` is any protocol (the deny rule).
    pub protocol: Option<Protocol>,
    pub source: Source,
    /// A port or a range `a-b`; `*` for any.
    pub ports: String,
    pub description: String,
}

/// Nomad server or client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// One scale set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSet {
    pub name: String,
    pub role: Role,
    pub vm_size: String,
    pub capacity: u32,
    pub computer_name_prefix: String,
    /// Member of the servers' backend pool (Nomad API rule).
    pub in_servers_pool: bool,
    /// Member of the nodes' backend pool (SSH NAT rule, outbound rule).
    pub in_nodes_pool: bool,
}

/// The optional public entry point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancer {
    pub name: String,
    pub public_ip: String,
    /// `Https` when Nomad serves TLS, else `Http`.
    pub probe_protocol: &'static str,
    /// An outbound rule gives the nodes egress (`egress = "load-balancer"`).
    pub outbound_rule: bool,
}

/// The values run-nomad is given; rendered by [`crate::custom_data`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NomadSettings {
    pub run_nomad: String,
    pub datacenter: Option<String>,
    pub region: Option<String>,
    pub gossip: bool,
    pub acl: bool,
    pub node_class: Option<String>,
    pub meta: BTreeMap<String, String>,
    pub tls: Option<TlsFiles>,
}

/// The whole cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub location: String,
    pub resource_group: String,
    pub names: Names,
    /// The cluster tag plus the configured tags.
    pub tags: BTreeMap<String, String>,
    pub subnet: Subnet,
    pub egress: Egress,
    pub rules: Vec<Rule>,
    pub load_balancer: Option<LoadBalancer>,
    pub servers: ScaleSet,
    pub clients: ScaleSet,
    pub zones: Vec<String>,
    pub image_id: String,
    pub admin_user: String,
    pub ssh_public_key: String,
    pub os_disk_gb: u32,
    pub os_disk_type: String,
    pub http_port: u16,
    pub rpc_port: u16,
    pub serf_port: u16,
    pub ssh_port: u16,
    pub nomad: NomadSettings,
}

impl Cluster {
    /// Decides every resource from a validated cluster file.
    pub fn from_file(f: &ClusterFile) -> Self {
        let names = Names::new(&f.cluster_name);
        let mut tags = f.tags.clone();
        tags.insert(CLUSTER_TAG.to_string(), f.cluster_name.clone());
        let subnet = match (&f.subnet_id, &f.address_space, &f.subnet_address) {
            (Some(id), _, _) => Subnet::Existing { id: id.clone() },
            (None, Some(space), Some(prefix)) => Subnet::Created {
                address_space: space.clone(),
                prefix: prefix.clone(),
            },
            // config::validate refuses every other combination.
            _ => unreachable!("cluster file was validated"),
        };
        let egress = f.egress.unwrap_or(Egress::NatGateway);
        let lb = f.associate_public_ip_address_load_balancer;
        let load_balancer = lb.then(|| LoadBalancer {
            name: names.load_balancer.clone(),
            public_ip: names.lb_ip.clone(),
            probe_protocol: if f.nomad.tls.is_some() {
                "Https"
            } else {
                "Http"
            },
            outbound_rule: egress == Egress::LoadBalancer,
        });
        let servers = ScaleSet {
            name: names.servers.clone(),
            role: Role::Server,
            vm_size: f.instance_size.clone(),
            capacity: f.cluster_size,
            computer_name_prefix: format!("{}-s", f.computer_name_prefix),
            in_servers_pool: lb,
            in_nodes_pool: lb,
        };
        let clients = ScaleSet {
            name: names.clients.clone(),
            role: Role::Client,
            vm_size: f
                .client_instance_size
                .clone()
                .unwrap_or_else(|| f.instance_size.clone()),
            capacity: f.num_clients,
            computer_name_prefix: format!("{}-c", f.computer_name_prefix),
            in_servers_pool: false,
            in_nodes_pool: lb,
        };
        Self {
            name: f.cluster_name.clone(),
            location: f.location.clone(),
            resource_group: f.resource_group_name.clone(),
            rules: rules(f, lb),
            names,
            tags,
            subnet,
            egress,
            load_balancer,
            servers,
            clients,
            zones: f.zones.clone(),
            image_id: f.image_id.clone(),
            admin_user: f.admin_user_name.clone(),
            ssh_public_key: f.key_data.trim().to_string(),
            os_disk_gb: f.root_volume_size,
            os_disk_type: f.os_disk_type.clone(),
            http_port: f.http_port,
            rpc_port: f.rpc_port,
            serf_port: f.serf_port,
            ssh_port: f.ssh_port,
            nomad: NomadSettings {
                run_nomad: f.nomad.run_nomad.clone(),
                datacenter: f.nomad.datacenter.clone(),
                region: f.nomad.region.clone(),
                gossip: f.nomad.gossip_key_file.is_some(),
                acl: f.nomad.acl,
                node_class: f.nomad.node_class.clone(),
                meta: f.nomad.meta.clone(),
                tls: f.nomad.tls.clone(),
            },
        }
    }

    pub fn scale_sets(&self) -> [&ScaleSet; 2] {
        [&self.servers, &self.clients]
    }

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
                            Source::Cidrs(c) => c.join(", "),
                            Source::Cluster => "the cluster's nodes".to_string(),
                            Source::AzureLoadBalancer => "Azure load balancer probes".to_string(),
                            Source::Any => "anywhere".to_string(),
                        }
                    )
                })
                .chain(std::iter::once(
                    "attached to every scale set NIC".to_string(),
                ))
                .collect(),
        );
        if self.egress == Egress::NatGateway {
            add(
                "public IP address",
                &n.nat_ip,
                vec!["Standard, static: the NAT gateway's outbound address".into()],
            );
            add(
                "NAT gateway",
                &n.nat_gateway,
                vec![
                    "egress for the subnet (no default outbound access since Network 2025-07-01)"
                        .into(),
                ],
            );
        }
        match &self.subnet {
            Subnet::Created {
                address_space,
                prefix,
            } => add(
                "virtual network",
                &n.vnet,
                vec![
                    format!("address space {address_space}"),
                    format!(
                        "subnet {} {prefix}, default outbound access off{}",
                        n.subnet,
                        if self.egress == Egress::NatGateway {
                            ", NAT gateway attached"
                        } else {
                            ""
                        }
                    ),
                ],
            ),
            Subnet::Existing { id } => add(
                "existing subnet (not managed)",
                id.rsplit('/').next().unwrap_or(id),
                vec![format!("{id}"), format!("egress: {}", self.egress)],
            ),
        }
        if let Some(lb) = &self.load_balancer {
            add(
                "public IP address",
                &lb.public_ip,
                vec![format!(
                    "Standard, static{}",
                    if self.zones.is_empty() {
                        String::new()
                    } else {
                        format!(", zones {}", self.zones.join(","))
                    }
                )],
            );
            let mut details = vec![
                "Standard SKU".to_string(),
                format!(
                    "rule nomad-http: TCP {} -> servers:{} ({} probe {}:{})",
                    self.http_port, self.http_port, lb.probe_protocol, HEALTH_PATH, self.http_port
                ),
                format!(
                    "inbound NAT rule ssh: TCP {}-{} -> every node:{} (one port per instance)",
                    SSH_FRONTEND_PORTS.0, SSH_FRONTEND_PORTS.1, self.ssh_port
                ),
            ];
            if lb.outbound_rule {
                details.push("outbound rule egress: every node".to_string());
            }
            add("load balancer", &lb.name, details);
        }
        for set in self.scale_sets() {
            let role = match set.role {
                Role::Server => "server",
                Role::Client => "client",
            };
            add(
                "virtual machine scale set",
                &set.name,
                vec![
                    format!(
                        "{} x {} ({role}s), Uniform, Manual upgrade policy",
                        set.capacity, set.vm_size
                    ),
                    format!(
                        "image {}, OS disk {} GB {}",
                        self.image_id, self.os_disk_gb, self.os_disk_type
                    ),
                    format!(
                        "SSH key only for {} (password login disabled), system-assigned identity",
                        self.admin_user
                    ),
                    "terminate notification 5 minutes (time to drain)".to_string(),
                    format!(
                        "custom data: {}",
                        crate::custom_data::run_nomad_line(self, set.role)
                    ),
                ],
            );
            add(
                "role assignment",
                &format!("Reader for {}", set.name),
                vec!["on the resource group, so the identity can do cloud auto-join".into()],
            );
        }
        out
    }
}

/// One resource in the plan.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResourceSummary {
    pub kind: String,
    pub name: String,
    pub details: Vec<String>,
}

/// The NSG's inbound rules: the API from the allowed CIDRs, SSH from the SSH CIDRs, Nomad's
/// RPC, Serf and dynamic ports within the cluster, the load balancer's probe, and a final deny
/// so that nothing else (not even the rest of the virtual network, which Azure's default
/// `AllowVnetInBound` would admit) gets in.
fn rules(f: &ClusterFile, lb: bool) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut priority = 100;
    let mut push = |name: &str, protocol, source, ports: String, description: &str| {
        rules.push(Rule {
            name: name.to_string(),
            priority,
            allow: true,
            protocol: Some(protocol),
            source,
            ports,
            description: description.to_string(),
        });
        priority += 10;
    };
    if !f.allowed_inbound_cidr_blocks.is_empty() {
        push(
            "nomad-http",
            Protocol::Tcp,
            Source::Cidrs(f.allowed_inbound_cidr_blocks.clone()),
            f.http_port.to_string(),
            "Nomad HTTP API from allowed_inbound_cidr_blocks",
        );
    }
    if !f.allowed_ssh_cidr_blocks.is_empty() {
        push(
            "ssh",
            Protocol::Tcp,
            Source::Cidrs(f.allowed_ssh_cidr_blocks.clone()),
            f.ssh_port.to_string(),
            "SSH from allowed_ssh_cidr_blocks",
        );
    }
    push(
        "nomad-rpc",
        Protocol::Tcp,
        Source::Cluster,
        f.rpc_port.to_string(),
        "Nomad RPC between cluster nodes",
    );
    push(
        "nomad-serf-tcp",
        Protocol::Tcp,
        Source::Cluster,
        f.serf_port.to_string(),
        "Nomad Serf gossip (TCP) between cluster nodes",
    );
    push(
        "nomad-serf-udp",
        Protocol::Udp,
        Source::Cluster,
        f.serf_port.to_string(),
        "Nomad Serf gossip (UDP) between cluster nodes",
    );
    let dynamic = format!("{}-{}", DYNAMIC_PORTS.0, DYNAMIC_PORTS.1);
    push(
        "nomad-dynamic-tcp",
        Protocol::Tcp,
        Source::Cluster,
        dynamic.clone(),
        "Nomad task dynamic ports (TCP) between cluster nodes",
    );
    push(
        "nomad-dynamic-udp",
        Protocol::Udp,
        Source::Cluster,
        dynamic,
        "Nomad task dynamic ports (UDP) between cluster nodes",
    );
    if lb {
        push(
            "lb-probe",
            Protocol::Tcp,
            Source::AzureLoadBalancer,
            f.http_port.to_string(),
            "the load balancer's health probe of the Nomad API",
        );
    }
    rules.push(Rule {
        name: "deny-other-inbound".to_string(),
        priority: 4096,
        allow: false,
        protocol: None,
        source: Source::Any,
        ports: "*".to_string(),
        description: "nothing else: overrides Azure's default AllowVnetInBound".to_string(),
    });
    rules
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::Path;

    /// The minimal test cluster of `config::tests`, with a load balancer.
    pub fn example() -> Cluster {
        example_with("associate_public_ip_address_load_balancer = true")
    }

    pub fn example_with(extra: &str) -> Cluster {
        // Keys in `extra` replace the minimal file's.
        let keys: Vec<&str> = extra
            .lines()
            .filter_map(|l| l.split_once(" =").map(|(k, _)| k.trim()))
            .collect();
        let base: Vec<String> = crate::config::tests::minimal()
            .lines()
            .filter(|l| !keys.iter().any(|k| l.starts_with(&format!("{k} ="))))
            .map(str::to_string)
            .collect();
        let text = format!("{extra}\n{}", base.join("\n"));
        let file = crate::config::parse(Path::new("cluster.toml"), &text).unwrap();
        Cluster::from_file(&file)
    }

    #[test]
    fn rules_admit_exactly_the_configured_cidrs_and_the_cluster() {
        let cluster = example();
        let by_name = |n: &str| cluster.rules.iter().find(|r| r.name == n).unwrap();
        assert_eq!(
            by_name("nomad-http").source,
            Source::Cidrs(vec!["203.0.113.0/24".into()])
        );
        assert_eq!(by_name("nomad-http").ports, "4646");
        assert_eq!(
            by_name("ssh").source,
            Source::Cidrs(vec!["198.51.100.7/32".into()])
        );
        assert_eq!(by_name("ssh").ports, "22");
        for name in ["nomad-rpc", "nomad-serf-tcp", "nomad-serf-udp"] {
            assert_eq!(by_name(name).source, Source::Cluster, "{name}");
        }
        let last = cluster.rules.last().unwrap();
        assert!(!last.allow && last.source == Source::Any && last.priority == 4096);
        let mut priorities: Vec<_> = cluster.rules.iter().map(|r| r.priority).collect();
        priorities.dedup();
        assert_eq!(
            priorities.len(),
            cluster.rules.len(),
            "priorities are unique"
        );
    }

    #[test]
    fn empty_cidr_lists_open_nothing() {
        let cluster =
            example_with("allowed_ssh_cidr_blocks = []\nallowed_inbound_cidr_blocks = []");
        assert!(cluster
            .rules
            .iter()
            .all(|r| !matches!(r.source, Source::Cidrs(_))));
    }

    #[test]
    fn without_a_load_balancer_there_are_no_pools_and_no_probe_rule() {
        let cluster = example_with("");
        assert!(cluster.load_balancer.is_none());
        assert!(!cluster.servers.in_servers_pool && !cluster.clients.in_nodes_pool);
        assert!(cluster.rules.iter().all(|r| r.name != "lb-probe"));
        assert_eq!(cluster.egress, Egress::NatGateway);
    }

    #[test]
    fn every_resource_is_summarised() {
        let cluster = example();
        let kinds: Vec<_> = cluster.summary().into_iter().map(|r| r.kind).collect();
        for kind in [
            "network security group",
            "NAT gateway",
            "virtual network",
            "load balancer",
            "virtual machine scale set",
            "role assignment",
        ] {
            assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
        }
    }
}
