//! The typed cluster model: every Azure resource the cluster needs, named and decided, before
//! any JSON exists. [`Cluster::from_file`] is pure; [`crate::template`] renders the model as an
//! ARM template and [`Cluster::summary`] as the readable plan. [`Cluster::scale_sets`] is the
//! one iterator over every scale set (servers, then each client pool).

use std::collections::BTreeMap;

mod rules;
mod security;
mod summary;

pub use security::{GossipSource, KeyVault, Security, TlsSource};
pub use summary::ResourceSummary;

use crate::config::{
    BootCommands, ClusterFile, Egress, HealthOptions, ImageKind, NatGatewaySku, Spot,
};

/// The tag every resource carries, with the cluster name as its value. `destroy` deletes only
/// what carries it.
pub const CLUSTER_TAG: &str = "nomad-cluster";

/// The inbound NAT rule's first frontend port for SSH and its smallest range (v2 rule over a
/// backend pool; Azure retires NAT pools on 2027-09-30). See [`ssh_frontend_ports`].
pub const SSH_FRONTEND_PORTS: (u16, u16) = (2200, 2299);

/// The SSH NAT rule's frontend port range for a cluster of `instances`: one port per instance,
/// in hundreds, with a tenth to spare for the surge instance of a rolling upgrade and for
/// repairs (a backend instance without a port of its own has no SSH mapping). 2200-2299 up to
/// 90 instances, as the Terraform module had.
pub fn ssh_frontend_ports(instances: u32) -> (u16, u16) {
    let wanted = instances.saturating_add(instances.div_ceil(10).max(1));
    let size = wanted.div_ceil(100).max(1).saturating_mul(100);
    let first = u32::from(SSH_FRONTEND_PORTS.0);
    let last = first.saturating_add(size - 1).min(65534);
    (SSH_FRONTEND_PORTS.0, last as u16)
}

/// Nomad's default dynamic port range for task ports (Nomad docs, client `min_dynamic_port` /
/// `max_dynamic_port`): open between cluster members only, so tasks reach each other.
pub const DYNAMIC_PORTS: (u16, u16) = (20000, 32000);

/// The Nomad API health endpoint the load balancer probes and the clients' Application Health
/// extension asks (`/v1/agent/health`, Nomad's agent HTTP API; it answers without an ACL
/// token). On a server it fails while the cluster has no leader.
pub const HEALTH_PATH: &str = "/v1/agent/health";

/// What the servers' Application Health extension asks: `/v1/regions` is answered by the
/// local server from its gossip member list, with no leader and no ACL token
/// (`nomad/regions_endpoint.go`: "No leader forwarding is required"), so it fails only when
/// the agent itself is down. `/v1/agent/health` would fail on every server while the cluster
/// has no leader, and automatic repairs would then replace the last servers that still hold
/// the Raft data. See the README, "A dead VM is replaced".
pub const SERVER_HEALTH_PATH: &str = "/v1/regions";

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
    cluster: String,
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
            cluster: cluster.to_string(),
        }
    }

    /// A client pool's scale set: `<cluster>-<pool>` (the single form's pool is `clients`).
    pub fn pool(&self, pool: &str) -> String {
        format!("{}-{pool}", self.cluster)
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

/// One scale set: the servers, or one client pool.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSet {
    pub name: String,
    pub role: Role,
    /// The client pool's name (`None` for the servers).
    pub pool: Option<String>,
    pub vm_size: String,
    pub capacity: u32,
    pub computer_name_prefix: String,
    /// Member of the servers' backend pool (Nomad API rule).
    pub in_servers_pool: bool,
    /// Member of the nodes' backend pool (SSH NAT rule, outbound rule).
    pub in_nodes_pool: bool,
    /// Clients: run-nomad's `--node-class`, `--node-pool` and `--meta`.
    pub node_class: Option<String>,
    pub node_pool: Option<String>,
    pub meta: BTreeMap<String, String>,
    /// Azure Spot priority (evictable, cheaper; its own `lowPriorityCores` quota).
    pub spot: Option<Spot>,
    /// `singlePlacementGroup`: false above 100 instances (or when the pool asks for it).
    pub single_placement_group: bool,
    /// The most instances this scale set may hold (Azure's limit for its image and placement).
    pub max_capacity: u32,
    /// Operator boot commands, in order (the cluster's, then the pool's), run before run-nomad.
    pub boot_commands: Vec<BootCommands>,
}

impl ScaleSet {
    /// "server" or "client", for messages.
    pub fn role_name(&self) -> &'static str {
        match self.role {
            Role::Server => "server",
            Role::Client => "client",
        }
    }

    /// How the plan and `status` name it: `servers`, or `client pool web`.
    pub fn label(&self) -> String {
        match &self.pool {
            Some(pool) => format!("client pool {pool}"),
            None => "servers".to_string(),
        }
    }
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
    /// The public IP's DNS label (`<label>.<region>.cloudapp.azure.com`).
    pub domain_name_label: Option<String>,
    /// The SSH NAT rule's frontend port range (one port per instance).
    pub ssh_ports: (u16, u16),
}

/// How egress leaves the subnet when it is a NAT gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatGateway {
    pub sku: NatGatewaySku,
    /// The zone a Standard gateway (and its address) is pinned to when the scale sets are all
    /// in that one zone; a StandardV2 gateway spans zones on its own.
    pub zone: Option<String>,
}

/// Instance health: what the Application Health extension asks, and the repairs policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// `http`, or `https` when Nomad serves TLS (the extension's `protocol`).
    pub protocol: &'static str,
    pub automatic_repairs: bool,
    /// ISO 8601, e.g. `PT30M`.
    pub grace_period: String,
}

/// The values run-nomad is given; rendered by [`crate::custom_data`] (TLS, gossip and the
/// vault come from [`Cluster::security`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NomadSettings {
    pub run_nomad: String,
    pub datacenter: Option<String>,
    pub region: Option<String>,
    pub acl: bool,
}

/// The whole cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub location: String,
    pub resource_group: String,
    pub names: Names,
    /// The cluster tag plus the configured tags.
    pub tags: BTreeMap<String, String>,
    pub subnet: Subnet,
    pub egress: Egress,
    /// Set when `egress` is a NAT gateway.
    pub nat_gateway: Option<NatGateway>,
    pub rules: Vec<Rule>,
    pub load_balancer: Option<LoadBalancer>,
    pub servers: ScaleSet,
    /// One scale set per client pool, in the order of the cluster file.
    pub client_pools: Vec<ScaleSet>,
    pub zones: Vec<String>,
    pub image_id: String,
    pub admin_user: String,
    pub ssh_public_key: String,
    pub os_disk_gb: u32,
    pub os_disk_type: String,
    /// The scale sets' SKU tier.
    pub sku_tier: String,
    pub encryption_at_host: bool,
    pub health: Health,
    pub http_port: u16,
    pub rpc_port: u16,
    pub serf_port: u16,
    pub ssh_port: u16,
    pub nomad: NomadSettings,
    pub security: Security,
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
        let nat_gateway = (egress == Egress::NatGateway).then(|| NatGateway {
            sku: f.nat_gateway_sku,
            zone: match (f.nat_gateway_sku, f.zones.as_slice()) {
                (NatGatewaySku::Standard, [zone]) => Some(zone.clone()),
                _ => None,
            },
        });
        let lb = f.associate_public_ip_address_load_balancer;
        let security = Security::from_file(f);
        let tls = security.tls();
        let load_balancer = lb.then(|| LoadBalancer {
            name: names.load_balancer.clone(),
            public_ip: names.lb_ip.clone(),
            probe_protocol: if tls { "Https" } else { "Http" },
            outbound_rule: egress == Egress::LoadBalancer,
            domain_name_label: f.domain_name_label.clone(),
            ssh_ports: ssh_frontend_ports(f.instances()),
        });
        let image = ImageKind::of(&f.image_id);
        let cluster_commands: Vec<BootCommands> = f.custom_data.iter().cloned().collect();
        let servers = ScaleSet {
            name: names.servers.clone(),
            role: Role::Server,
            pool: None,
            vm_size: f.instance_size.clone(),
            capacity: f.cluster_size,
            computer_name_prefix: format!("{}-s", f.computer_name_prefix),
            in_servers_pool: lb,
            in_nodes_pool: lb,
            node_class: None,
            node_pool: None,
            meta: BTreeMap::new(),
            spot: None,
            single_placement_group: true,
            max_capacity: crate::config::scale_set_limit(image, true),
            boot_commands: cluster_commands.clone(),
        };
        let client_pools = f
            .client_pools
            .iter()
            .map(|pool| {
                let single = crate::config::single_placement_group(pool);
                ScaleSet {
                    name: names.pool(&pool.name),
                    role: Role::Client,
                    pool: Some(pool.name.clone()),
                    vm_size: pool.instance_size.clone(),
                    capacity: pool.count,
                    computer_name_prefix: pool.computer_name_prefix.clone(),
                    in_servers_pool: false,
                    in_nodes_pool: lb,
                    node_class: pool.node_class.clone(),
                    node_pool: pool.node_pool.clone(),
                    meta: pool.meta.clone(),
                    spot: pool.spot,
                    single_placement_group: single,
                    max_capacity: crate::config::scale_set_limit(image, single),
                    boot_commands: cluster_commands
                        .iter()
                        .chain(pool.custom_data.iter())
                        .cloned()
                        .collect(),
                }
            })
            .collect();
        Self {
            name: f.cluster_name.clone(),
            location: f.location.clone(),
            resource_group: f.resource_group_name.clone(),
            rules: rules::rules(f, lb),
            names,
            tags,
            subnet,
            egress,
            nat_gateway,
            load_balancer,
            servers,
            client_pools,
            zones: f.zones.clone(),
            image_id: f.image_id.clone(),
            admin_user: f.admin_user_name.clone(),
            ssh_public_key: f.key_data.trim().to_string(),
            os_disk_gb: f.root_volume_size,
            os_disk_type: f.os_disk_type.clone(),
            sku_tier: f.instance_tier.clone(),
            encryption_at_host: f.encryption_at_host,
            health: health(&f.health, tls),
            http_port: f.http_port,
            rpc_port: f.rpc_port,
            serf_port: f.serf_port,
            ssh_port: f.ssh_port,
            nomad: NomadSettings {
                run_nomad: f.nomad.run_nomad.clone(),
                datacenter: f.nomad.datacenter.clone(),
                region: f.nomad.region.clone(),
                acl: f.nomad.acl,
            },
            security,
        }
    }

    /// The DNS name of the load balancer's address, when it has a label (Azure's
    /// `<label>.<region>.cloudapp.azure.com`): a name on the servers' certificate, so a client
    /// may connect by it.
    pub fn load_balancer_fqdn(&self) -> Option<String> {
        let label = self.load_balancer.as_ref()?.domain_name_label.as_ref()?;
        Some(format!("{label}.{}.cloudapp.azure.com", self.location))
    }

    /// Every scale set: the servers first, then each client pool. The one iterator for
    /// whatever concerns all of them (template, plan, status, destroy, quota).
    pub fn scale_sets(&self) -> Vec<&ScaleSet> {
        std::iter::once(&self.servers)
            .chain(self.client_pools.iter())
            .collect()
    }

    /// The scale set of a client pool, by pool name.
    pub fn pool(&self, name: &str) -> Option<&ScaleSet> {
        self.client_pools
            .iter()
            .find(|s| s.pool.as_deref() == Some(name))
    }
}

/// The path a scale set's Application Health extension asks (see [`SERVER_HEALTH_PATH`]).
pub fn health_path(role: Role) -> &'static str {
    match role {
        Role::Server => SERVER_HEALTH_PATH,
        Role::Client => HEALTH_PATH,
    }
}

fn health(options: &HealthOptions, tls: bool) -> Health {
    Health {
        protocol: if tls { "https" } else { "http" },
        automatic_repairs: options.automatic_repairs,
        grace_period: format!("PT{}M", options.repair_grace_period_minutes),
    }
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
        let file = crate::config::parse(
            Path::new("cluster.toml"),
            &crate::config::tests::minimal_with(extra),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        Cluster::from_file(&file)
    }

    #[test]
    fn without_a_load_balancer_there_are_no_pools_and_the_probe_is_denied() {
        let cluster = example_with("");
        assert!(cluster.load_balancer.is_none());
        assert!(!cluster.servers.in_servers_pool && !cluster.client_pools[0].in_nodes_pool);
        let probe = cluster.rules.iter().find(|r| r.name == "lb-probe").unwrap();
        assert!(!probe.allow);
        assert_eq!(cluster.egress, Egress::NatGateway);
    }

    #[test]
    fn scale_sets_are_the_servers_then_every_pool() {
        let cluster = example_with(
            "[[client_pool]]\nname = \"web\"\ncount = 4\nnode_class = \"web\"\n\
             [[client_pool]]\nname = \"batch\"\ncount = 150\ninstance_size = \"Standard_F8s_v2\"\n\
             spot = true\nnode_pool = \"batch\"\n",
        );
        let names: Vec<&str> = cluster
            .scale_sets()
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(
            names,
            ["nomad-test-servers", "nomad-test-web", "nomad-test-batch"]
        );
        let batch = cluster.pool("batch").unwrap();
        assert_eq!(batch.vm_size, "Standard_F8s_v2");
        assert_eq!(batch.computer_name_prefix, "nomad-batch");
        assert!(!batch.single_placement_group, "above 100 instances");
        assert_eq!(batch.max_capacity, 600, "from a managed image");
        assert!(batch.spot.is_some());
        let web = cluster.pool("web").unwrap();
        assert!(web.single_placement_group && web.spot.is_none());
        assert_eq!(web.vm_size, "Standard_D2s_v5", "instance_size by default");
    }

    #[test]
    fn the_ssh_port_range_grows_with_the_cluster() {
        assert_eq!(ssh_frontend_ports(9), (2200, 2299));
        assert_eq!(ssh_frontend_ports(90), (2200, 2299));
        assert_eq!(ssh_frontend_ports(91), (2200, 2399));
        assert_eq!(ssh_frontend_ports(1003), (2200, 3399));
    }

    #[test]
    fn a_standard_nat_gateway_follows_a_single_zone_and_v2_spans_them() {
        let one = example_with("zones = [\"2\"]");
        let nat = one.nat_gateway.unwrap();
        assert_eq!(nat.sku, NatGatewaySku::Standard);
        assert_eq!(nat.zone.as_deref(), Some("2"));
        let three = example_with("zones = [\"1\", \"2\", \"3\"]");
        let nat = three.nat_gateway.unwrap();
        assert_eq!(nat.sku, NatGatewaySku::StandardV2);
        assert_eq!(nat.zone, None);
        let none = example_with("");
        assert_eq!(
            none.nat_gateway.unwrap(),
            NatGateway {
                sku: NatGatewaySku::Standard,
                zone: None
            }
        );
    }
}
