//! `cluster.toml`: the one file that describes a cluster.
//!
//! The top-level keys keep the Terraform module's variable names (`terraform-azurerm-nomad`'s
//! `nomad-cluster` module and its example) so an operator can move a `terraform.tfvars` over
//! line by line. Parsing is strict (`deny_unknown_fields`: a misspelt key is an error, not a
//! silently ignored setting) and [`load`] validates every value, naming the field at fault.
//! The result is a [`ClusterFile`] whose values are known to be well-formed; [`crate::model`]
//! turns it into the resources to create.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use base64::Engine;
use ipnet::Ipv4Net;
use serde::Deserialize;

/// How the instances reach the internet (Azure's management endpoint for cloud auto-join, the
/// package mirrors). Network api-version 2025-07-01 creates subnets without default outbound
/// access, so egress is always an explicit choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Egress {
    /// A NAT gateway with its own Standard public IP, attached to the subnet we create.
    NatGateway,
    /// An outbound rule on the cluster's Standard load balancer.
    LoadBalancer,
    /// The existing subnet (`subnet_id`) already has egress (a NAT gateway, a firewall route).
    Existing,
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Egress::NatGateway => "nat-gateway",
            Egress::LoadBalancer => "load-balancer",
            Egress::Existing => "existing",
        })
    }
}

/// The parsed and validated cluster file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Azure region, e.g. `westeurope`.
    pub location: String,
    pub resource_group_name: String,
    /// Names every resource and is the value of the cluster tag.
    pub cluster_name: String,
    /// Resource id of the managed image (or gallery image version) image-builder produced.
    pub image_id: String,
    /// VM size of the servers (and of the clients unless `client_instance_size` is set).
    pub instance_size: String,
    pub client_instance_size: Option<String>,
    /// Number of servers: odd, so a majority survives a failure.
    #[serde(default = "default_cluster_size")]
    pub cluster_size: u32,
    #[serde(default = "default_num_clients")]
    pub num_clients: u32,
    /// The SSH public key (OpenSSH format) for `admin_user_name`. Password login is disabled.
    pub key_data: String,
    /// Who may reach the Nomad HTTP API.
    pub allowed_inbound_cidr_blocks: Vec<String>,
    /// Who may reach SSH.
    pub allowed_ssh_cidr_blocks: Vec<String>,
    /// Create a Standard public IP and load balancer for the API and SSH.
    #[serde(default)]
    pub associate_public_ip_address_load_balancer: bool,
    #[serde(default = "default_computer_name_prefix")]
    pub computer_name_prefix: String,
    #[serde(default = "default_admin_user_name")]
    pub admin_user_name: String,
    /// OS disk size in GB.
    #[serde(default = "default_root_volume_size")]
    pub root_volume_size: u32,
    /// Managed disk type of the OS disk.
    #[serde(default = "default_os_disk_type")]
    pub os_disk_type: String,
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    #[serde(default = "default_rpc_port")]
    pub rpc_port: u16,
    #[serde(default = "default_serf_port")]
    pub serf_port: u16,
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    /// An existing subnet to use instead of creating a virtual network.
    pub subnet_id: Option<String>,
    /// The virtual network to create (without `subnet_id`).
    pub address_space: Option<String>,
    /// The subnet to create inside `address_space`.
    pub subnet_address: Option<String>,
    /// Availability zones for the scale sets and the load balancer's public IP.
    #[serde(default)]
    pub zones: Vec<String>,
    /// How instances reach the internet [default: nat-gateway with a created subnet].
    pub egress: Option<Egress>,
    /// Extra tags on every resource (the cluster tag is always added).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub nomad: NomadOptions,
}

/// What run-nomad is told on each VM.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NomadOptions {
    /// Where run-nomad is on the image (install-nomad's layout).
    #[serde(default = "default_run_nomad")]
    pub run_nomad: String,
    pub datacenter: Option<String>,
    pub region: Option<String>,
    /// A file (on this machine) holding the gossip encryption key, base64 of 32 bytes.
    pub gossip_key_file: Option<PathBuf>,
    /// Enable Nomad's ACL system.
    #[serde(default)]
    pub acl: bool,
    /// The clients' node class.
    pub node_class: Option<String>,
    /// Client node metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    pub tls: Option<TlsFiles>,
}

impl Default for NomadOptions {
    fn default() -> Self {
        Self {
            run_nomad: default_run_nomad(),
            datacenter: None,
            region: None,
            gossip_key_file: None,
            acl: false,
            node_class: None,
            meta: BTreeMap::new(),
            tls: None,
        }
    }
}

/// Paths ON THE VMS of Nomad's TLS files (see the README: they are not carried by custom data).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
}

fn default_cluster_size() -> u32 {
    3
}
fn default_num_clients() -> u32 {
    6
}
fn default_computer_name_prefix() -> String {
    "nomad".to_string()
}
fn default_admin_user_name() -> String {
    "nomadadmin".to_string()
}
fn default_root_volume_size() -> u32 {
    30
}
fn default_os_disk_type() -> String {
    "StandardSSD_LRS".to_string()
}
fn default_http_port() -> u16 {
    4646
}
fn default_rpc_port() -> u16 {
    4647
}
fn default_serf_port() -> u16 {
    4648
}
fn default_ssh_port() -> u16 {
    22
}
fn default_run_nomad() -> String {
    "/opt/nomad/bin/run-nomad".to_string()
}

/// The largest number of instances the SSH NAT rule's port range (2200-2299) can map.
pub const SSH_PORT_RANGE_SIZE: u32 = 100;

/// Why a cluster file was refused. Each names the file and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read cluster file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cluster file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cluster file {path}: `{field}` {problem}")]
    Invalid {
        path: PathBuf,
        field: String,
        problem: String,
    },
    #[error("cluster file {path}: `nomad.gossip_key_file` {file}: {problem}")]
    GossipKey {
        path: PathBuf,
        file: PathBuf,
        problem: String,
    },
}

/// Reads, parses and validates a cluster file.
pub fn load(path: &Path) -> Result<ClusterFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates cluster file text; `path` names it in errors and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<ClusterFile, ConfigError> {
    let mut file: ClusterFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    // A relative key file is relative to the cluster file, not to wherever the tool runs.
    if let Some(key) = &file.nomad.gossip_key_file {
        if key.is_relative() {
            let base = path.parent().unwrap_or_else(|| Path::new("."));
            file.nomad.gossip_key_file = Some(base.join(key));
        }
    }
    validate(&file).map_err(|(field, problem)| ConfigError::Invalid {
        path: path.to_path_buf(),
        field,
        problem,
    })?;
    Ok(file)
}

type Problem = (String, String);

fn bad(field: &str, problem: impl Into<String>) -> Problem {
    (field.to_string(), problem.into())
}

fn validate(f: &ClusterFile) -> Result<(), Problem> {
    check_location(&f.location)?;
    check_resource_group(&f.resource_group_name)?;
    check_cluster_name(&f.cluster_name)?;
    check_image_id(&f.image_id)?;
    check_vm_size("instance_size", &f.instance_size)?;
    if let Some(size) = &f.client_instance_size {
        check_vm_size("client_instance_size", size)?;
    }
    if f.cluster_size == 0 || f.cluster_size % 2 == 0 {
        return Err(bad(
            "cluster_size",
            format!(
                "is {}: the number of servers must be odd and at least 1 (3 or 5 for production), \
                 so that a majority (quorum) survives a server failure",
                f.cluster_size
            ),
        ));
    }
    if f.cluster_size > 7 {
        return Err(bad(
            "cluster_size",
            format!(
                "is {}: Nomad recommends 3 or 5 servers, and more than 7 slows every write",
                f.cluster_size
            ),
        ));
    }
    if f.num_clients > 1000 {
        return Err(bad(
            "num_clients",
            "is above 1000, the limit of a Uniform scale set",
        ));
    }
    check_ssh_key(&f.key_data)?;
    for (i, cidr) in f.allowed_inbound_cidr_blocks.iter().enumerate() {
        check_cidr(&format!("allowed_inbound_cidr_blocks[{i}]"), cidr)?;
    }
    for (i, cidr) in f.allowed_ssh_cidr_blocks.iter().enumerate() {
        check_cidr(&format!("allowed_ssh_cidr_blocks[{i}]"), cidr)?;
    }
    check_computer_name_prefix(&f.computer_name_prefix)?;
    check_admin_user(&f.admin_user_name)?;
    if !(30..=4095).contains(&f.root_volume_size) {
        return Err(bad(
            "root_volume_size",
            format!(
                "is {} GB: use 30 to 4095 (Azure's OS disk limit; the Linux images need 30)",
                f.root_volume_size
            ),
        ));
    }
    const DISK_TYPES: &[&str] = &[
        "Standard_LRS",
        "StandardSSD_LRS",
        "StandardSSD_ZRS",
        "Premium_LRS",
        "Premium_ZRS",
    ];
    if !DISK_TYPES.contains(&f.os_disk_type.as_str()) {
        return Err(bad(
            "os_disk_type",
            format!(
                "is {:?}: use one of {}",
                f.os_disk_type,
                DISK_TYPES.join(", ")
            ),
        ));
    }
    check_ports(f)?;
    check_network(f)?;
    for (i, zone) in f.zones.iter().enumerate() {
        if !matches!(zone.as_str(), "1" | "2" | "3") {
            return Err(bad(
                &format!("zones[{i}]"),
                format!("is {zone:?}: Azure availability zones are \"1\", \"2\" and \"3\""),
            ));
        }
    }
    let mut zones = f.zones.clone();
    zones.sort();
    zones.dedup();
    if zones.len() != f.zones.len() {
        return Err(bad("zones", "lists a zone twice"));
    }
    for (key, value) in &f.tags {
        check_tag(key, value)?;
    }
    if f.tags.contains_key(crate::model::CLUSTER_TAG) {
        return Err(bad(
            &format!("tags.{}", crate::model::CLUSTER_TAG),
            "is set by cluster-deploy itself (it is how destroy finds the cluster's resources)",
        ));
    }
    check_nomad(&f.nomad)?;
    Ok(())
}

fn check_location(location: &str) -> Result<(), Problem> {
    let ok = !location.is_empty()
        && location
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(bad(
            "location",
            format!(
                "is {location:?}: use the region's programmatic name, lower case without spaces \
                 (e.g. \"westeurope\", as `az account list-locations` shows it)"
            ),
        ))
    }
}

/// Azure's rule for resource group names: 1-90 of letters, digits, `-_.()`, not ending in `.`.
fn check_resource_group(name: &str) -> Result<(), Problem> {
    let ok = (1..=90).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
        && !name.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "resource_group_name",
            format!(
                "is {name:?}: use 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'"
            ),
        ))
    }
}

/// Every resource name is derived from the cluster name, so it must fit the strictest of them
/// (scale set and load balancer names; the computer name prefix is separate).
fn check_cluster_name(name: &str) -> Result<(), Problem> {
    let bytes = name.as_bytes();
    let ok = (1..=40).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "cluster_name",
            format!(
                "is {name:?}: use 1-40 lower-case letters, digits and '-', starting with a letter \
                 and not ending with '-' (it names every resource and tags them)"
            ),
        ))
    }
}

fn check_image_id(id: &str) -> Result<(), Problem> {
    let lower = id.to_ascii_lowercase();
    let segments: Vec<&str> = lower.split('/').collect();
    let shaped = lower.starts_with("/subscriptions/")
        && segments.len() >= 9
        && segments.iter().skip(1).all(|s| !s.is_empty())
        && segments[3] == "resourcegroups"
        && segments[5] == "providers"
        && segments[6] == "microsoft.compute"
        && (segments[7] == "images" || segments[7] == "galleries");
    if shaped {
        Ok(())
    } else {
        Err(bad(
            "image_id",
            format!(
                "is {id:?}: use the resource id of a managed image \
                 (/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Compute/images/<name>) \
                 or of a gallery image version, as image-builder records it"
            ),
        ))
    }
}

fn check_vm_size(field: &str, size: &str) -> Result<(), Problem> {
    let ok = size.starts_with("Standard_")
        && size.len() > "Standard_".len()
        && size.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("is {size:?}: use an Azure VM size such as \"Standard_D2s_v5\""),
        ))
    }
}

/// The key types Azure accepts for Linux VMs, each with the type name inside its base64 blob.
const SSH_KEY_TYPES: &[&str] = &[
    "ssh-rsa",
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
];

fn check_ssh_key(key: &str) -> Result<(), Problem> {
    let problem = |why: &str| {
        bad(
            "key_data",
            format!(
                "{why}: give the OpenSSH public key line (the content of ~/.ssh/id_ed25519.pub, \
                 \"ssh-ed25519 AAAA... comment\"); password login is disabled, so this key is the \
                 only way in"
            ),
        )
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(problem("is empty"));
    }
    if key.contains("PRIVATE KEY") {
        return Err(problem("holds a PRIVATE key"));
    }
    let mut words = key.split_whitespace();
    let kind = words.next().unwrap_or_default();
    let blob = words.next().unwrap_or_default();
    if !SSH_KEY_TYPES.contains(&kind) {
        return Err(problem(&format!(
            "starts with {kind:?}, not one of {}",
            SSH_KEY_TYPES.join(", ")
        )));
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(blob) else {
        return Err(problem("has a key body that is not base64"));
    };
    // The blob starts with the key type as an SSH string: 4-byte length, then the name.
    let inner = bytes
        .get(4..)
        .and_then(|rest| {
            let len = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
            rest.get(..len)
        })
        .unwrap_or_default();
    if inner != kind.as_bytes() {
        return Err(problem(&format!("has a key body that is not a {kind} key")));
    }
    Ok(())
}

/// An IPv4 CIDR block in canonical form (no host bits set), or a single address.
pub fn parse_cidr(value: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = if value.contains('/') {
        value
            .parse()
            .map_err(|_| format!("{value:?} is not an IPv4 CIDR block such as 203.0.113.0/24"))?
    } else {
        let ip: Ipv4Addr = value
            .parse()
            .map_err(|_| format!("{value:?} is not an IPv4 CIDR block such as 203.0.113.0/24"))?;
        Ipv4Net::new(ip, 32).expect("32 is a valid prefix length")
    };
    if net.trunc() != net {
        return Err(format!(
            "{value:?} has host bits set: did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

fn check_cidr(field: &str, value: &str) -> Result<(), Problem> {
    parse_cidr(value).map(|_| ()).map_err(|e| bad(field, e))
}

/// Linux computer names: letters, digits and '-'; Azure appends a 6-character instance suffix,
/// and the server/client prefixes add 2 more, to a 15-character host name limit we keep to so
/// that names stay readable in `nomad node status`.
fn check_computer_name_prefix(prefix: &str) -> Result<(), Problem> {
    let ok = (1..=7).contains(&prefix.len())
        && prefix.as_bytes()[0].is_ascii_alphabetic()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "computer_name_prefix",
            format!(
                "is {prefix:?}: use 1-7 letters, digits and '-', starting with a letter (the \
                 scale sets add \"-s\"/\"-c\" and Azure a 6-character instance suffix)"
            ),
        ))
    }
}

/// Names Azure refuses as the admin user of a Linux VM.
const RESERVED_USERS: &[&str] = &[
    "administrator",
    "admin",
    "user",
    "user1",
    "test",
    "user2",
    "test1",
    "user3",
    "admin1",
    "1",
    "123",
    "a",
    "actuser",
    "adm",
    "admin2",
    "aspnet",
    "backup",
    "console",
    "david",
    "guest",
    "john",
    "owner",
    "root",
    "server",
    "sql",
    "support",
    "support_388945a0",
    "sys",
    "test2",
    "test3",
    "user4",
    "user5",
    "nomad",
];

fn check_admin_user(user: &str) -> Result<(), Problem> {
    let shaped = (1..=32).contains(&user.len())
        && (user.as_bytes()[0].is_ascii_lowercase() || user.starts_with('_'))
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !shaped {
        return Err(bad(
            "admin_user_name",
            format!("is {user:?}: use 1-32 lower-case letters, digits, '_' or '-', starting with a letter"),
        ));
    }
    if RESERVED_USERS.contains(&user) {
        return Err(bad(
            "admin_user_name",
            format!("is {user:?}, a name Azure reserves (or Nomad's own service user)"),
        ));
    }
    Ok(())
}

fn check_ports(f: &ClusterFile) -> Result<(), Problem> {
    let ports = [
        ("http_port", f.http_port),
        ("rpc_port", f.rpc_port),
        ("serf_port", f.serf_port),
        ("ssh_port", f.ssh_port),
    ];
    for (field, port) in ports {
        if port == 0 {
            return Err(bad(field, "is 0: use a port from 1 to 65535"));
        }
    }
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if pa == pb {
                return Err(bad(b, format!("is {pb}, the same port as `{a}`")));
            }
        }
    }
    Ok(())
}

fn check_network(f: &ClusterFile) -> Result<(), Problem> {
    match (&f.subnet_id, &f.address_space, &f.subnet_address) {
        (Some(id), None, None) => {
            check_subnet_id(id)?;
            match f.egress {
                None => {
                    return Err(bad(
                        "egress",
                        "must be set with `subnet_id`: \"existing\" when that subnet already has \
                         outbound access (NAT gateway, firewall), or \"load-balancer\" for an \
                         outbound rule on the cluster's load balancer (subnets made with Network \
                         api-version 2025-07-01 or later have no default outbound access)",
                    ))
                }
                Some(Egress::NatGateway) => {
                    return Err(bad(
                        "egress",
                        "is \"nat-gateway\", which needs a subnet cluster-deploy creates: with \
                         `subnet_id`, attach a NAT gateway to that subnet yourself and say \
                         \"existing\", or use \"load-balancer\"",
                    ))
                }
                Some(_) => {}
            }
        }
        (Some(_), _, _) => {
            return Err(bad(
                "subnet_id",
                "cannot be combined with `address_space`/`subnet_address`: use an existing \
                 subnet or let cluster-deploy create one, not both",
            ))
        }
        (None, Some(space), Some(subnet)) => {
            let space_net = parse_cidr(space).map_err(|e| bad("address_space", e))?;
            let subnet_net = parse_cidr(subnet).map_err(|e| bad("subnet_address", e))?;
            if !space_net.contains(&subnet_net) {
                return Err(bad(
                    "subnet_address",
                    format!("{subnet} is not inside address_space {space}"),
                ));
            }
            // Azure keeps 5 addresses of every subnet; /29 is its smallest.
            if subnet_net.prefix_len() > 29 {
                return Err(bad(
                    "subnet_address",
                    format!("{subnet} is smaller than /29, the smallest subnet Azure allows"),
                ));
            }
            let usable = (1u64 << (32 - subnet_net.prefix_len())) - 5;
            let wanted = u64::from(f.cluster_size) + u64::from(f.num_clients);
            if wanted > usable {
                return Err(bad(
                    "subnet_address",
                    format!(
                        "{subnet} has {usable} usable addresses, fewer than the {wanted} instances"
                    ),
                ));
            }
            if f.egress == Some(Egress::Existing) {
                return Err(bad(
                    "egress",
                    "is \"existing\", but the subnet is created here and has no egress of its \
                     own: use \"nat-gateway\" or \"load-balancer\"",
                ));
            }
        }
        (None, None, None) => {
            return Err(bad(
                "subnet_id",
                "is missing: give `subnet_id` (an existing subnet) or `address_space` and \
                 `subnet_address` (a virtual network to create)",
            ))
        }
        (None, None, Some(_)) => return Err(bad("address_space", "is missing")),
        (None, Some(_), None) => return Err(bad("subnet_address", "is missing")),
    }
    let egress = f.egress.unwrap_or(Egress::NatGateway);
    if egress == Egress::LoadBalancer && !f.associate_public_ip_address_load_balancer {
        return Err(bad(
            "egress",
            "is \"load-balancer\", which needs `associate_public_ip_address_load_balancer = true`",
        ));
    }
    if f.associate_public_ip_address_load_balancer {
        let instances = f.cluster_size + f.num_clients;
        if instances > SSH_PORT_RANGE_SIZE {
            return Err(bad(
                "num_clients",
                format!(
                    "gives {instances} instances, more than the {SSH_PORT_RANGE_SIZE} ports of the \
                     load balancer's SSH port range 2200-2299"
                ),
            ));
        }
    }
    Ok(())
}

fn check_subnet_id(id: &str) -> Result<(), Problem> {
    let lower = id.to_ascii_lowercase();
    let s: Vec<&str> = lower.split('/').collect();
    let ok = s.len() == 11
        && s[0].is_empty()
        && s[1] == "subscriptions"
        && s[3] == "resourcegroups"
        && s[5] == "providers"
        && s[6] == "microsoft.network"
        && s[7] == "virtualnetworks"
        && s[9] == "subnets"
        && s.iter().skip(1).all(|p| !p.is_empty());
    if ok {
        Ok(())
    } else {
        Err(bad(
            "subnet_id",
            format!(
                "is {id:?}: use a subnet resource id, /subscriptions/<id>/resourceGroups/<rg>/\
                 providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>"
            ),
        ))
    }
}

/// Azure tag rules: names up to 512 characters without `<>%&\?/`, values up to 256.
fn check_tag(key: &str, value: &str) -> Result<(), Problem> {
    let field = format!("tags.{key}");
    // A key starting with '[' would be read as a template expression.
    if key.is_empty()
        || key.len() > 512
        || key.starts_with('[')
        || key.contains(['<', '>', '%', '&', '\\', '?', '/'])
    {
        return Err(bad(
            &field,
            "is not a valid Azure tag name (1-512 characters, none of < > % & \\ ? /, not starting with [)",
        ));
    }
    if value.len() > 256 {
        return Err(bad(&field, "is longer than 256 characters"));
    }
    Ok(())
}

fn check_nomad(n: &NomadOptions) -> Result<(), Problem> {
    if !n.run_nomad.starts_with('/') {
        return Err(bad(
            "nomad.run_nomad",
            format!("is {:?}: give the absolute path on the image", n.run_nomad),
        ));
    }
    for (field, value) in [
        ("nomad.datacenter", &n.datacenter),
        ("nomad.region", &n.region),
        ("nomad.node_class", &n.node_class),
    ] {
        if let Some(v) = value {
            check_nomad_name(field, v)?;
        }
    }
    for key in n.meta.keys() {
        let ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !ok {
            return Err(bad(
                &format!("nomad.meta.{key}"),
                "is not a usable meta key (letters, digits, '_', '-', '.')",
            ));
        }
    }
    if let Some(tls) = &n.tls {
        for (field, path) in [
            ("nomad.tls.ca_file", &tls.ca_file),
            ("nomad.tls.cert_file", &tls.cert_file),
            ("nomad.tls.key_file", &tls.key_file),
        ] {
            if !path.starts_with('/') || path.contains(['\n', '\0']) {
                return Err(bad(
                    field,
                    format!("is {path:?}: give the absolute path of the file on the VMs"),
                ));
            }
        }
    }
    Ok(())
}

/// Datacenter, region and node class: Nomad accepts free text, but these reach HCL and a shell
/// line, so keep them to the characters any sane name uses.
fn check_nomad_name(field: &str, value: &str) -> Result<(), Problem> {
    let ok = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("is {value:?}: use 1-128 letters, digits, '_', '-' or '.'"),
        ))
    }
}

/// Reads and checks the gossip key file: standard base64 of exactly 32 bytes, as Nomad's
/// `server.encrypt` requires. The key itself never appears in the error.
pub fn read_gossip_key(
    config_path: &Path,
    file: &Path,
) -> Result<crate::auth::Secret, ConfigError> {
    let err = |problem: String| ConfigError::GossipKey {
        path: config_path.to_path_buf(),
        file: file.to_path_buf(),
        problem,
    };
    let text = std::fs::read_to_string(file).map_err(|e| err(e.to_string()))?;
    let key = text.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| {
            err("is not standard base64 (generate one with `nomad operator gossip keyring generate`)"
                .to_string())
        })?;
    if decoded.len() != 32 {
        return Err(err(format!(
            "decodes to {} bytes; Nomad's gossip key is 32 bytes",
            decoded.len()
        )));
    }
    // Checked so the key can sit inside a quoted here-document in custom data (see
    // custom_data): standard base64 has only these characters.
    debug_assert!(key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')));
    Ok(crate::auth::Secret::new(key.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPyLGZoOJxCX/QefXQ6DsqUVGx4Yu6CRbDt8Ejl10bwH operator@example";

    pub fn minimal() -> String {
        format!(
            r#"
location = "westeurope"
resource_group_name = "nomad-rg"
cluster_name = "nomad-test"
image_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/images/providers/Microsoft.Compute/images/nomad"
instance_size = "Standard_D2s_v5"
key_data = "{KEY}"
allowed_inbound_cidr_blocks = ["203.0.113.0/24"]
allowed_ssh_cidr_blocks = ["198.51.100.7/32"]
address_space = "10.0.0.0/16"
subnet_address = "10.0.1.0/24"
"#
        )
    }

    fn load_text(text: &str) -> Result<ClusterFile, ConfigError> {
        parse(Path::new("/etc/cluster.toml"), text)
    }

    fn problem(text: &str) -> String {
        load_text(text).unwrap_err().to_string()
    }

    fn with(line: &str) -> String {
        format!("{line}\n{}", minimal())
    }

    fn without(key: &str) -> String {
        minimal()
            .lines()
            .filter(|l| !l.starts_with(&format!("{key} =")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn replace(key: &str, line: &str) -> String {
        format!("{line}\n{}", without(key))
    }

    #[test]
    fn the_minimal_file_loads_with_the_terraform_defaults() {
        let f = load_text(&minimal()).unwrap();
        assert_eq!(f.cluster_size, 3);
        assert_eq!(f.num_clients, 6);
        assert_eq!(
            (f.http_port, f.rpc_port, f.serf_port, f.ssh_port),
            (4646, 4647, 4648, 22)
        );
        assert!(!f.associate_public_ip_address_load_balancer);
        assert_eq!(f.nomad.run_nomad, "/opt/nomad/bin/run-nomad");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = problem(&with("instance_type = \"t2.micro\""));
        assert!(text.contains("instance_type"), "{text}");
        assert!(text.contains("/etc/cluster.toml"), "{text}");
        let text = problem(&format!("{}\n[nomad]\nacls = true\n", minimal()));
        assert!(text.contains("acls"), "{text}");
    }

    #[test]
    fn server_counts_must_be_odd_and_non_zero() {
        for n in [0, 2, 4] {
            let text = problem(&with(&format!("cluster_size = {n}")));
            assert!(text.contains("`cluster_size`"), "{text}");
            assert!(text.contains("odd"), "{text}");
        }
        assert!(load_text(&with("cluster_size = 5")).is_ok());
        assert!(load_text(&with("cluster_size = 1")).is_ok());
    }

    #[test]
    fn bad_cidrs_name_the_field_and_index() {
        let text = problem(&replace(
            "allowed_ssh_cidr_blocks",
            "allowed_ssh_cidr_blocks = [\"10.0.0.0/8\", \"300.1.2.3/32\"]",
        ));
        assert!(text.contains("`allowed_ssh_cidr_blocks[1]`"), "{text}");
        let text = problem(&replace(
            "allowed_inbound_cidr_blocks",
            "allowed_inbound_cidr_blocks = [\"10.0.0.1/8\"]",
        ));
        assert!(text.contains("`allowed_inbound_cidr_blocks[0]`"), "{text}");
        assert!(text.contains("host bits"), "{text}");
        let text = problem(&replace(
            "subnet_address",
            "subnet_address = \"10.1.0.0/24\"",
        ));
        assert!(text.contains("`subnet_address`"), "{text}");
        assert!(text.contains("not inside"), "{text}");
    }

    #[test]
    fn the_key_must_be_present_and_a_public_key() {
        let text = problem(&without("key_data"));
        assert!(text.contains("key_data"), "{text}");
        let text = problem(&replace("key_data", "key_data = \"\""));
        assert!(text.contains("`key_data` is empty"), "{text}");
        let text = problem(&replace(
            "key_data",
            "key_data = \"-----BEGIN OPENSSH PRIVATE KEY-----\"",
        ));
        assert!(text.contains("PRIVATE"), "{text}");
        let text = problem(&replace(
            "key_data",
            "key_data = \"ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIHX0tMHyMQi6JXZ7bS7WlOnrqbzYL1U5Xg6aQfqHk2Zx\"",
        ));
        assert!(text.contains("not a ssh-rsa key"), "{text}");
    }

    #[test]
    fn the_network_is_an_existing_subnet_or_a_new_one() {
        let text = problem(&without("address_space"));
        assert!(text.contains("`address_space` is missing"), "{text}");
        let subnet = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/nodes";
        let existing = format!(
            "subnet_id = \"{subnet}\"\n{}",
            without("address_space")
                .lines()
                .filter(|l| !l.starts_with("subnet_address"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let text = problem(&existing);
        assert!(text.contains("`egress` must be set"), "{text}");
        assert!(load_text(&format!("egress = \"existing\"\n{existing}")).is_ok());
        let text = problem(&format!("egress = \"nat-gateway\"\n{existing}"));
        assert!(text.contains("`egress`"), "{text}");
        let text = problem(&format!("egress = \"load-balancer\"\n{existing}"));
        assert!(
            text.contains("associate_public_ip_address_load_balancer"),
            "{text}"
        );
        let text = problem(&format!("subnet_id = \"{subnet}\"\n{}", minimal()));
        assert!(text.contains("`subnet_id` cannot be combined"), "{text}");
        let text = problem(&format!(
            "subnet_id = \"/subscriptions/x\"\negress = \"existing\"\n{}",
            without("address_space")
                .lines()
                .filter(|l| !l.starts_with("subnet_address"))
                .collect::<Vec<_>>()
                .join("\n")
        ));
        assert!(text.contains("`subnet_id`"), "{text}");
    }

    #[test]
    fn other_fields_are_checked_by_name() {
        for (line, field) in [
            ("location = \"West Europe\"", "location"),
            ("cluster_name = \"Nomad_Prod\"", "cluster_name"),
            ("image_id = \"ami-abcd1234\"", "image_id"),
            ("instance_size = \"t2.micro\"", "instance_size"),
            ("admin_user_name = \"root\"", "admin_user_name"),
            (
                "computer_name_prefix = \"much-too-long\"",
                "computer_name_prefix",
            ),
            ("root_volume_size = 10", "root_volume_size"),
            ("ssh_port = 4646", "ssh_port"),
            ("zones = [\"4\"]", "zones[0]"),
        ] {
            let key = line.split(' ').next().unwrap();
            let text = problem(&replace(key, line));
            assert!(text.contains(&format!("`{field}`")), "{line}: {text}");
        }
        let text = problem(&format!(
            "{}\n[nomad]\ndatacenter = \"dc 1; reboot\"\n",
            minimal()
        ));
        assert!(text.contains("`nomad.datacenter`"), "{text}");
        let text = problem(&format!(
            "{}\n[nomad.tls]\nca_file = \"ca.pem\"\ncert_file = \"/c\"\nkey_file = \"/k\"\n",
            minimal()
        ));
        assert!(text.contains("`nomad.tls.ca_file`"), "{text}");
    }

    #[test]
    fn gossip_keys_are_checked_and_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let good = "kGBHU6u7XuB0vq9Y3zT0l2tZ7yV3p3hKx5m9bJ8rG2c=";
        let path = dir.path().join("gossip.key");
        std::fs::write(&path, format!("{good}\n")).unwrap();
        let key = read_gossip_key(Path::new("c.toml"), &path).unwrap();
        assert_eq!(key.expose(), good);
        assert!(!format!("{key:?}").contains(good));
        let short = "c2hvcnQ=";
        std::fs::write(&path, short).unwrap();
        let text = read_gossip_key(Path::new("c.toml"), &path)
            .unwrap_err()
            .to_string();
        assert!(text.contains("5 bytes"), "{text}");
        assert!(!text.contains(short), "{text}");
        assert!(text.contains("nomad.gossip_key_file"), "{text}");
    }

    #[test]
    fn relative_key_files_are_relative_to_the_cluster_file() {
        let f = parse(
            Path::new("/srv/clusters/prod.toml"),
            &format!(
                "{}\n[nomad]\ngossip_key_file = \"secrets/gossip.key\"\n",
                minimal()
            ),
        )
        .unwrap();
        assert_eq!(
            f.nomad.gossip_key_file.unwrap(),
            PathBuf::from("/srv/clusters/secrets/gossip.key")
        );
    }

    #[test]
    fn the_cluster_tag_is_reserved() {
        let text = problem(&format!("{}\n[tags]\nnomad-cluster = \"x\"\n", minimal()));
        assert!(text.contains("`tags.nomad-cluster`"), "{text}");
    }
}
