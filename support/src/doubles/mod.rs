//! Loopback test doubles, each shaped after the published API it stands in for (see
//! `../shared/REFERENCE.md`), never after our own client code. Tests start them on 127.0.0.1 with
//! an ephemeral port and point the tool at them through its endpoint flag.
//!
//! - [`bins`]: paths to the workspace's own binaries, built on demand, for tests that run one
//!   tool from another crate's tests.
//! - [`mirror`]: a HashiCorp-style release mirror (and CNI release layout) signed with a key the
//!   test generates.
//! - [`imds`]: Azure Instance Metadata Service with scripted response sequences.
//! - [`imds_events`]: its Scheduled Events endpoint (events, incarnations, approvals).
//! - [`arm`]: Azure Resource Manager with long-running operations and fault injection, Key
//!   Vault management (vaults, soft delete, purge), and the two image reads (managed image,
//!   gallery image version) image-builder makes before it trusts a build record.
//! - [`keyvault`]: the Key Vault data plane (secrets), with RBAC, propagation and soft delete.
//! - [`tokens`]: the JWT-shaped bearer tokens the identity doubles issue (principal and audience).
//! - [`nomad_api`]: the parts of Nomad's HTTP API the tools read.
//! - [`nomad_sim`]: the simulated Nomad cluster behind [`nomad_api`], driven in virtual time
//!   and by the ARM double through [`instance_events`].
//! - [`tls`]: test CAs and certificates, and the rustls configuration of an HTTPS double.
//! - [`server`]: the loopback HTTP/1.1 server every double runs on (requests recorded as
//!   [`server::RecordedRequest`]; answers, cut-short bodies and dropped connections as
//!   [`server::Reply`]).

pub mod arm;
pub mod bins;
pub mod imds;
pub mod imds_events;
pub mod instance_events;
pub mod keyvault;
pub mod mirror;
pub mod nomad_api;
pub mod nomad_sim;
pub mod server;
pub mod tls;
pub mod tokens;
