//! `cluster.toml`: the one file that describes a cluster.
//!
//! The top-level keys keep the Terraform module's variable names (`terraform-azurerm-nomad`'s
//! `nomad-cluster` module and its example) so an operator can move a `terraform.tfvars` over
//! line by line: every variable of the module is accepted under its own name, mapped where it
//! still means something and otherwise kept as a [`Warning`] that says why it is obsolete
//! ([`resolve`]). Parsing is strict (`deny_unknown_fields`: a misspelt key is an error, not a
//! silently ignored setting) and [`load`] validates every value, naming the field at fault.
//! The result is a [`ClusterFile`] whose values are known to be well-formed; [`crate::model`]
//! turns it into the resources to create.
//!
//! - [`raw`]: the TOML as written; [`resolve`]: the module's variables and aliases mapped,
//!   custom data read, warnings collected; [`pools`]: client pools and their Azure limits.
//! - [`checks`], [`network`], [`ssh_key`]: the field checks.
//! - [`security`]: TLS, gossip encryption and ACLs (on unless opted out), the Key Vault that
//!   keeps their material, and the refusal of an internet-facing API without them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod checks;
mod network;
mod pools;
mod raw;
mod resolve;
pub mod security;
pub mod ssh_key;

pub use network::parse_cidr;
pub use pools::{scale_set_limit, single_placement_group, ImageKind, DEFAULT_POOL};
pub use security::{read_gossip_key, KeyVaultOptions, TlsOptions};

/// How the instances reach the internet (Azure's management endpoint for cloud auto-join, the
/// package mirrors). Network api-version 2025-07-01 creates subnets without default outbound
/// access, so egress is always an explicit choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Egress {
    /// A NAT gateway with its own public IP, attached to the subnet we create.
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

/// The NAT gateway's SKU. A Standard NAT gateway lives in one zone (or "no zone", where Azure
/// picks one), so a zone outage cuts the egress of scale sets spread over several zones; a
/// StandardV2 gateway, with a StandardV2 public IP, is zone-redundant (Azure NAT Gateway
/// documentation, "NAT gateway and availability zones"; `NatGatewaySku` in Network
/// 2025-07-01). One gateway per zone is no way out: a subnet has one NAT gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatGatewaySku {
    Standard,
    StandardV2,
}

impl NatGatewaySku {
    pub fn as_str(self) -> &'static str {
        match self {
            NatGatewaySku::Standard => "Standard",
            NatGatewaySku::StandardV2 => "StandardV2",
        }
    }
}

/// The parsed, resolved and validated cluster file.
#[derive(Debug, Clone)]
pub struct ClusterFile {
    /// Azure region, e.g. `westeurope`.
    pub location: String,
    pub resource_group_name: String,
    /// Names every resource and is the value of the cluster tag.
    pub cluster_name: String,
    /// Resource id of the managed image (or gallery image version) image-builder produced
    /// (also accepted as `ami_id`, the module README's name).
    pub image_id: String,
    /// VM size of the servers (and of the clients unless `client_instance_size` is set).
    pub instance_size: String,
    /// The single-pool form's client size, as written.
    pub client_instance_size: Option<String>,
    /// Number of servers: odd, so a majority survives a failure.
    pub cluster_size: u32,
    /// Every client of every pool.
    pub num_clients: u32,
    /// The client pools: `[[client_pool]]` tables, or one pool named `clients` made from
    /// `num_clients`/`client_instance_size`.
    pub client_pools: Vec<ClientPool>,
    /// The SSH public key (OpenSSH format) for `admin_user_name`. Password login is disabled.
    pub key_data: String,
    /// Who may reach the Nomad HTTP API.
    pub allowed_inbound_cidr_blocks: Vec<String>,
    /// Who may reach SSH.
    pub allowed_ssh_cidr_blocks: Vec<String>,
    /// Create a Standard public IP and load balancer for the API and SSH.
    pub associate_public_ip_address_load_balancer: bool,
    /// DNS label of the load balancer's public IP (`<label>.<region>.cloudapp.azure.com`).
    pub domain_name_label: Option<String>,
    pub computer_name_prefix: String,
    pub admin_user_name: String,
    /// OS disk size in GB.
    pub root_volume_size: u32,
    /// Managed disk type of the OS disk.
    pub os_disk_type: String,
    /// The scale sets' SKU tier (`instance_tier`): always `Standard` (Basic sizes are retired).
    pub instance_tier: String,
    /// Encrypt the OS disk, temp disk and caches on the VM host (`securityProfile.encryptionAtHost`).
    pub encryption_at_host: bool,
    pub http_port: u16,
    pub rpc_port: u16,
    pub serf_port: u16,
    pub ssh_port: u16,
    /// An existing subnet to use instead of creating a virtual network (also from `subnet_ids`).
    pub subnet_id: Option<String>,
    /// The virtual network to create (without `subnet_id`).
    pub address_space: Option<String>,
    /// The subnet to create inside `address_space`.
    pub subnet_address: Option<String>,
    /// Availability zones for the scale sets and the load balancer's public IP.
    pub zones: Vec<String>,
    /// How instances reach the internet [default: nat-gateway with a created subnet].
    pub egress: Option<Egress>,
    /// The NAT gateway's SKU [default: StandardV2 when the scale sets span zones].
    pub nat_gateway_sku: NatGatewaySku,
    /// Extra tags on every resource (the cluster tag is always added).
    pub tags: BTreeMap<String, String>,
    pub nomad: NomadOptions,
    /// The Key Vault that keeps the cluster's secrets.
    pub key_vault: KeyVaultOptions,
    pub health: HealthOptions,
    /// Extra boot commands for every VM, run before run-nomad (`custom_data`,
    /// `custom_data_file`, or the README's `user_data`).
    pub custom_data: Option<BootCommands>,
    /// What the file says that cluster-deploy accepts but does not use, and why.
    pub warnings: Vec<Warning>,
}

impl ClusterFile {
    /// Every instance of every scale set.
    pub fn instances(&self) -> u32 {
        self.cluster_size
            .saturating_add(self.client_pools.iter().map(|p| p.count).sum::<u32>())
    }
}

/// One client pool: its own scale set, size, count, node class and node pool, as one more
/// instance of the Terraform module used to be.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientPool {
    /// Names the scale set `<cluster>-<name>`.
    pub name: String,
    /// Where it was written, for errors: `client_pool[2]`, or `None` for the single-pool form.
    pub index: Option<usize>,
    pub instance_size: String,
    pub count: u32,
    pub node_class: Option<String>,
    pub node_pool: Option<String>,
    /// `[nomad.meta]` with the pool's own `meta` over it.
    pub meta: BTreeMap<String, String>,
    pub spot: Option<Spot>,
    pub computer_name_prefix: String,
    /// `singlePlacementGroup`: `Some(false)` forces multiple placement groups.
    pub single_placement_group: Option<bool>,
    /// The pool's own boot commands, run after the cluster-wide ones.
    pub custom_data: Option<BootCommands>,
}

impl ClientPool {
    /// The cluster file field a key of this pool came from (`client_pool[1].count`, or
    /// `num_clients` for the single form).
    pub fn field(&self, key: &str) -> String {
        match self.index {
            Some(i) => format!("client_pool[{i}].{key}"),
            None => match key {
                "count" => "num_clients".to_string(),
                "instance_size" => "client_instance_size".to_string(),
                "node_class" => "nomad.node_class".to_string(),
                other => other.to_string(),
            },
        }
    }
}

/// Azure Spot priority for a pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spot {
    pub eviction_policy: EvictionPolicy,
    /// US dollars per hour, or -1: evicted for capacity only, never for price.
    pub max_price: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionPolicy {
    Delete,
    Deallocate,
}

impl EvictionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            EvictionPolicy::Delete => "Delete",
            EvictionPolicy::Deallocate => "Deallocate",
        }
    }
}

/// Instance health and automatic repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthOptions {
    pub automatic_repairs: bool,
    /// How long after a VM changes state (boots, is reimaged) before it may be repaired.
    pub repair_grace_period_minutes: u32,
}

/// Default grace period: boot, custom data, a TLS wait of up to 10 minutes, run-nomad's IMDS
/// wait of up to 5, Nomad's start and join, with room to spare.
pub const DEFAULT_REPAIR_GRACE_MINUTES: u32 = 30;

/// Operator commands for the boot script, as read from the cluster file or the file it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootCommands {
    /// The cluster file field (`custom_data`, `client_pool[1].custom_data_file`, ...).
    pub field: String,
    /// Where they came from, for people (`custom_data_file /srv/boot.sh`).
    pub origin: String,
    pub script: String,
}

/// A setting accepted but not used, or translated: shown by `plan` and logged by every
/// command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub field: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.field, self.message)
    }
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
    /// Serf gossip encryption on the servers (on unless set to false).
    #[serde(default = "yes")]
    pub gossip_encryption: bool,
    /// The operator's own gossip key (a file on this machine, base64 of 32 bytes), uploaded
    /// to the cluster's Key Vault instead of a generated key.
    pub gossip_key_file: Option<PathBuf>,
    /// Nomad's ACL system (on unless set to false).
    #[serde(default = "yes")]
    pub acl: bool,
    /// `apply` bootstraps ACLs with a pre-generated token kept in the vault (unless false).
    #[serde(default = "yes")]
    pub acl_bootstrap: bool,
    /// The clients' node class (a pool's own `node_class` wins).
    pub node_class: Option<String>,
    /// Client node metadata (a pool's own `meta` keys win).
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: TlsOptions,
}

fn yes() -> bool {
    true
}

impl Default for NomadOptions {
    fn default() -> Self {
        Self {
            run_nomad: default_run_nomad(),
            datacenter: None,
            region: None,
            gossip_encryption: true,
            gossip_key_file: None,
            acl: true,
            acl_bootstrap: true,
            node_class: None,
            meta: BTreeMap::new(),
            tls: TlsOptions::default(),
        }
    }
}

fn default_run_nomad() -> String {
    "/opt/nomad/bin/run-nomad".to_string()
}

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

/// Reads, parses and validates a cluster file; logs its warnings.
pub fn load(path: &Path) -> Result<ClusterFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let file = parse(path, &text)?;
    for warning in &file.warnings {
        tracing::warn!("cluster file {}: {warning}", path.display());
    }
    Ok(file)
}

/// Parses and validates cluster file text; `path` names it in errors and anchors relative
/// paths (the gossip key file, custom data files).
pub fn parse(path: &Path, text: &str) -> Result<ClusterFile, ConfigError> {
    let raw: raw::RawClusterFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let invalid = |(field, problem): Problem| ConfigError::Invalid {
        path: path.to_path_buf(),
        field,
        problem,
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let mut file = resolve::resolve(base, raw).map_err(invalid)?;
    // Relative key and CA files are relative to the cluster file, not to wherever the tool runs.
    security::anchor_paths(base, &mut file);
    validate(&file).map_err(invalid)?;
    let opt_outs = security::warnings(&file);
    file.warnings.extend(opt_outs);
    Ok(file)
}

type Problem = (String, String);

fn bad(field: &str, problem: impl Into<String>) -> Problem {
    (field.to_string(), problem.into())
}

fn validate(f: &ClusterFile) -> Result<(), Problem> {
    checks::check_location(&f.location)?;
    checks::check_resource_group(&f.resource_group_name)?;
    checks::check_cluster_name(&f.cluster_name)?;
    checks::check_image_id(&f.image_id)?;
    checks::check_vm_size("instance_size", &f.instance_size)?;
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
    ssh_key::check_ssh_key(&f.key_data)?;
    for (i, cidr) in f.allowed_inbound_cidr_blocks.iter().enumerate() {
        network::check_cidr(&format!("allowed_inbound_cidr_blocks[{i}]"), cidr)?;
    }
    for (i, cidr) in f.allowed_ssh_cidr_blocks.iter().enumerate() {
        network::check_cidr(&format!("allowed_ssh_cidr_blocks[{i}]"), cidr)?;
    }
    checks::check_computer_name_prefix(&f.computer_name_prefix)?;
    checks::check_admin_user(&f.admin_user_name)?;
    if !(30..=4095).contains(&f.root_volume_size) {
        return Err(bad(
            "root_volume_size",
            format!(
                "is {} GB: use 30 to 4095 (Azure's OS disk limit; the Linux images need 30)",
                f.root_volume_size
            ),
        ));
    }
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
    checks::check_ports(f)?;
    pools::check_pools(f)?;
    network::check_network(f)?;
    for (key, value) in &f.tags {
        checks::check_tag(key, value)?;
    }
    if f.tags.contains_key(crate::model::CLUSTER_TAG) {
        return Err(bad(
            &format!("tags.{}", crate::model::CLUSTER_TAG),
            "is set by cluster-deploy itself (it is how destroy finds the cluster's resources)",
        ));
    }
    checks::check_nomad(&f.nomad)?;
    security::check(f)?;
    check_health(f)?;
    Ok(())
}

/// The managed disk types an OS disk can use.
pub const DISK_TYPES: &[&str] = &[
    "Standard_LRS",
    "StandardSSD_LRS",
    "StandardSSD_ZRS",
    "Premium_LRS",
    "Premium_ZRS",
];

/// Azure's bounds on the repairs grace period (`AutomaticRepairsPolicy.gracePeriod`, Compute
/// 2024-11-01: PT10M to PT90M), and, when the VMs fetch secrets from the Key Vault at boot, room
/// for run-nomad's wait on the vault (role assignments take minutes to propagate) and on
/// Instance Metadata: a VM still booting must not be repaired.
fn check_health(f: &ClusterFile) -> Result<(), Problem> {
    let minutes = f.health.repair_grace_period_minutes;
    let field = "health.repair_grace_period_minutes";
    if !(10..=90).contains(&minutes) {
        return Err(bad(
            field,
            format!("is {minutes}: Azure allows a grace period of 10 to 90 minutes"),
        ));
    }
    let vault_wait = crate::custom_data::KEY_VAULT_WAIT_SECS;
    let floor = 5 + (vault_wait + RUN_NOMAD_IMDS_WAIT_SECS).div_ceil(60);
    let fetches = f.nomad.tls.enabled || f.nomad.gossip_encryption;
    if fetches && minutes < floor {
        return Err(bad(
            field,
            format!(
                "is {minutes}: a booting VM may wait {} minutes for the Key Vault (its role \
                 assignments propagate) and run-nomad {} for Instance Metadata; give at least \
                 {floor}, or a VM still booting is repaired",
                vault_wait / 60,
                RUN_NOMAD_IMDS_WAIT_SECS / 60
            ),
        ));
    }
    Ok(())
}

/// run-nomad's default `--imds-timeout` (seconds).
pub const RUN_NOMAD_IMDS_WAIT_SECS: u32 = 300;

#[cfg(test)]
pub(crate) mod tests;
