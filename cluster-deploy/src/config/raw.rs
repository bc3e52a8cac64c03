//! The cluster file exactly as TOML gives it: every key the file may hold, strictly
//! (`deny_unknown_fields`), with the Terraform module's variable names and their aliases still
//! apart. [`super::resolve`] turns it into the validated [`super::ClusterFile`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Egress, KeyVaultOptions, NomadOptions};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClusterFile {
    pub location: String,
    pub resource_group_name: String,
    pub cluster_name: String,
    pub image_id: Option<String>,
    pub instance_size: String,
    pub client_instance_size: Option<String>,
    #[serde(default = "default_cluster_size")]
    pub cluster_size: u32,
    pub num_clients: Option<u32>,
    pub key_data: String,
    pub allowed_inbound_cidr_blocks: Vec<String>,
    pub allowed_ssh_cidr_blocks: Vec<String>,
    #[serde(default)]
    pub associate_public_ip_address_load_balancer: bool,
    pub domain_name_label: Option<String>,
    #[serde(default = "default_computer_name_prefix")]
    pub computer_name_prefix: String,
    #[serde(default = "default_admin_user_name")]
    pub admin_user_name: String,
    pub root_volume_size: Option<u32>,
    pub os_disk_type: Option<String>,
    #[serde(default)]
    pub encryption_at_host: bool,
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    #[serde(default = "default_rpc_port")]
    pub rpc_port: u16,
    #[serde(default = "default_serf_port")]
    pub serf_port: u16,
    #[serde(default = "default_ssh_port")]
    pub ssh_port: u16,
    pub subnet_id: Option<String>,
    pub address_space: Option<String>,
    pub subnet_address: Option<String>,
    #[serde(default)]
    pub zones: Vec<String>,
    pub egress: Option<Egress>,
    pub nat_gateway_sku: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub nomad: NomadOptions,
    #[serde(default)]
    pub key_vault: KeyVaultOptions,
    #[serde(default)]
    pub health: RawHealth,
    /// `[[client_pool]]` tables.
    #[serde(default)]
    pub client_pool: Vec<RawClientPool>,
    pub custom_data: Option<String>,
    pub custom_data_file: Option<PathBuf>,

    // The module's variables that only map onto the ones above, or no longer mean anything.
    /// The module README's name for `image_id`.
    pub ami_id: Option<String>,
    /// The module README's name for `custom_data`.
    pub user_data: Option<String>,
    pub subnet_ids: Option<Vec<String>>,
    pub instance_tier: Option<String>,
    pub root_volume_type: Option<String>,
    pub instance_root_volume_size: Option<u32>,
    pub storage_account_name: Option<String>,
    pub wait_for_capacity_timeout: Option<String>,
    pub tenancy: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub automatic_repairs: Option<bool>,
    pub repair_grace_period_minutes: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClientPool {
    pub name: String,
    pub instance_size: Option<String>,
    pub count: u32,
    pub node_class: Option<String>,
    pub node_pool: Option<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub spot: bool,
    pub eviction_policy: Option<String>,
    pub max_price: Option<f64>,
    pub computer_name_prefix: Option<String>,
    pub single_placement_group: Option<bool>,
    pub custom_data: Option<String>,
    pub custom_data_file: Option<PathBuf>,
}

fn default_cluster_size() -> u32 {
    3
}
fn default_computer_name_prefix() -> String {
    "nomad".to_string()
}
fn default_admin_user_name() -> String {
    "nomadadmin".to_string()
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
