//! Turn a cluster file into Azure Resource Manager deployments for Nomad scale sets.
//!
//! - [`config`]: `cluster.toml`, parsed strictly and validated field by field.
//! - [`model`]: the typed cluster (every resource, named and decided), pure.
//! - [`custom_data`]: the boot script that runs run-nomad on each VM, pure.
//! - [`template`]: the model as an ARM deployment template, pure.
//! - [`auth`]: client secret, Azure CLI and managed identity tokens.
//! - [`arm`]: the ARM REST client (retries, long-running operations).
//! - [`nomad`]: the Nomad HTTP API client behind `status`, `roll` and the ACL bootstrap
//!   (`support::nomad`, re-exported with snapshot saving).
//! - [`secrets`]: the cluster's TLS PKI, gossip key and ACL token, what its Key Vault keeps,
//!   the vault's data plane, the operator's local copies.
//! - [`commands`]: plan, apply, outputs, status, roll, env, rotate, destroy.

pub mod arm;
pub mod auth;
pub mod cli;
pub mod commands;
pub mod config;
pub mod custom_data;
pub mod model;
pub mod nomad;
pub mod secrets;
pub mod template;

/// Runs the tool for parsed command-line arguments, answering on stdout.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let mut env = auth::Env::from_process();
    // Where `env` writes the Nomad CLI's files (and `status` finds its CA).
    for name in ["XDG_CONFIG_HOME", "HOME"] {
        if let Ok(value) = std::env::var(name) {
            env.0.insert(name.to_string(), value);
        }
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    commands::run(cli, &env, &mut out, &mut input)
}
