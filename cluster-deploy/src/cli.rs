//! Command-line arguments of `cluster-deploy`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::auth::AuthChoice;

#[derive(Debug, Parser)]
#[command(
    name = "cluster-deploy",
    version,
    about = "Turn a cluster file into Azure Resource Manager deployments for Nomad scale sets.",
    long_about = "Turn a cluster file (cluster.toml) into an ARM deployment of a Nomad cluster on \
                  Azure scale sets: plan it (offline, plus ARM what-if with credentials), apply \
                  it, show its outputs and status, and destroy what its template declares."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// The cluster file.
    #[arg(
        long,
        short = 'c',
        global = true,
        value_name = "FILE",
        default_value = "cluster.toml"
    )]
    pub config: PathBuf,

    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub azure: AzureArgs,

    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show every resource the cluster needs and write the ARM template; with Azure
    /// credentials, also run ARM what-if against the resource group.
    Plan {
        /// Write the ARM deployment template here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Never contact Azure, even with credentials.
        #[arg(long)]
        offline: bool,
    },
    /// Create the resource group if needed, check permissions and quota, run what-if, and
    /// deploy the template (mode Incremental).
    Apply {
        /// Apply even when what-if says something added out of band would be removed (asked
        /// interactively on a terminal; refused without one unless given).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        vault: ApplyVaultArgs,
    },
    /// The load balancer address, scale set names and server private IPs.
    Outputs,
    /// Scale set instances and their provisioning state; Nomad's servers, leader and nodes.
    Status {
        /// The Nomad API address [default: the load balancer's, when there is one].
        #[arg(long, value_name = "URL", env = "NOMAD_ADDR")]
        nomad_address: Option<String>,
        /// A CA certificate to trust for a TLS Nomad API.
        #[arg(long, value_name = "FILE", env = "NOMAD_CACERT")]
        nomad_ca_cert: Option<PathBuf>,
    },
    /// Delete what the cluster's template declares (after confirmation); list what else the
    /// resource group holds and leave it. The Key Vault is soft-deleted (recoverable) unless
    /// --purge-vault.
    Destroy {
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Purge the soft-deleted Key Vault afterwards: its secrets are gone for good and its
        /// name is free (refused while the vault has purge protection).
        #[arg(long)]
        purge_vault: bool,
    },
    /// Print the shell exports for the Nomad CLI (NOMAD_ADDR, NOMAD_CACERT, NOMAD_CLIENT_CERT,
    /// NOMAD_CLIENT_KEY, NOMAD_TLS_SERVER_NAME; NOMAD_TOKEN with --token), after writing the
    /// files they name, 0600, under $XDG_CONFIG_HOME/nomad-azure/<cluster>/.
    Env {
        /// Also export NOMAD_TOKEN: the ACL bootstrap (management) token, read from its file.
        #[arg(long)]
        token: bool,
        /// The Nomad API address [default: the load balancer's].
        #[arg(long, value_name = "URL")]
        nomad_address: Option<String>,
    },
    /// Issue new secret material into the cluster's Key Vault (new secret versions). Running
    /// agents keep what they loaded: roll the nodes afterwards (see the README).
    Rotate {
        /// New server, client and CLI certificates from the current CA.
        #[arg(long)]
        certificates: bool,
        /// A new CA, and new certificates from it (every node must be rolled).
        #[arg(long)]
        ca: bool,
        /// A new gossip key (follow Nomad's keyring steps, see the README).
        #[arg(long)]
        gossip_key: bool,
        /// --certificates and --gossip-key.
        #[arg(long)]
        all: bool,
    },
}

/// `apply`'s Key Vault and ACL bootstrap options.
#[derive(Debug, Clone, Args)]
pub struct ApplyVaultArgs {
    /// The cluster's vault name is held by a soft-deleted vault (a destroyed cluster): bring
    /// it back with its secrets (createMode recover).
    #[arg(long, conflicts_with = "purge_deleted_vault")]
    pub recover_vault: bool,
    /// The cluster's vault name is held by a soft-deleted vault: purge it (its secrets are
    /// gone for good) and create a new one.
    #[arg(long)]
    pub purge_deleted_vault: bool,
    /// The Nomad API address for the ACL bootstrap [default: the load balancer's].
    #[arg(long, value_name = "URL")]
    pub nomad_address: Option<String>,
    /// How long to wait for the servers to elect a leader before bootstrapping ACLs.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub bootstrap_timeout_secs: u64,
}

/// How to reach and authenticate to Azure.
#[derive(Debug, Clone, Args)]
pub struct AzureArgs {
    /// Which credentials to use.
    #[arg(long, global = true, value_enum, default_value_t = AuthChoice::Auto)]
    pub auth: AuthChoice,

    /// The subscription [default: the Azure CLI's, or the VM's with a managed identity].
    #[arg(long, global = true, value_name = "ID", env = "ARM_SUBSCRIPTION_ID")]
    pub subscription: Option<String>,

    /// Azure Resource Manager's endpoint (sovereign clouds; tests). https unless loopback.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "https://management.azure.com"
    )]
    pub arm_endpoint: String,

    /// The Microsoft identity platform endpoint for the client secret login.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "https://login.microsoftonline.com"
    )]
    pub login_endpoint: String,

    /// The Instance Metadata Service, for a managed identity.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        default_value = "http://169.254.169.254"
    )]
    pub imds_endpoint: String,

    /// The token audience [default: the ARM endpoint].
    #[arg(long, global = true, value_name = "URI")]
    pub token_audience: Option<String>,

    /// The cluster's Key Vault data plane [default: the vault's vaultUri, as ARM reports it].
    /// https unless loopback.
    #[arg(long, global = true, value_name = "URL")]
    pub key_vault_url: Option<String>,

    /// The object id of the principal that uploads the secrets and gets Key Vault Secrets
    /// Officer on the vault [default: the `oid` of this credential's Key Vault token].
    #[arg(long, global = true, value_name = "ID")]
    pub operator_object_id: Option<String>,

    /// Give up on a Key Vault call after this long (a new role assignment takes minutes to
    /// propagate; calls are retried meanwhile).
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        default_value_t = 600,
        hide = true
    )]
    pub key_vault_timeout_secs: u64,

    /// The Azure CLI program.
    #[arg(
        long,
        global = true,
        value_name = "PATH",
        env = "CLUSTER_DEPLOY_AZ",
        default_value = "az"
    )]
    pub az_program: PathBuf,

    /// Wait between polls of a long-running operation without Retry-After, in ms.
    #[arg(
        long,
        global = true,
        value_name = "MS",
        default_value_t = 10_000,
        hide = true
    )]
    pub poll_interval_ms: u64,

    /// First retry delay of a failed request, in ms (doubles up to 60 s).
    #[arg(
        long,
        global = true,
        value_name = "MS",
        default_value_t = 2_000,
        hide = true
    )]
    pub retry_delay_ms: u64,

    /// Wait before redeploying after PrincipalNotFound, in ms.
    #[arg(
        long,
        global = true,
        value_name = "MS",
        default_value_t = 30_000,
        hide = true
    )]
    pub principal_retry_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_secrets_commands_parse() {
        let cli = Cli::try_parse_from(["cluster-deploy", "rotate", "--all"]).unwrap();
        assert!(matches!(cli.command, Command::Rotate { all: true, .. }));
        let cli = Cli::try_parse_from(["cluster-deploy", "env", "--token", "--json"]).unwrap();
        assert!(cli.json && matches!(cli.command, Command::Env { token: true, .. }));
        assert!(Cli::try_parse_from([
            "cluster-deploy",
            "apply",
            "--recover-vault",
            "--purge-deleted-vault"
        ])
        .is_err());
        let cli = Cli::try_parse_from(["cluster-deploy", "destroy", "--purge-vault"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Destroy {
                purge_vault: true,
                ..
            }
        ));
    }

    #[test]
    fn the_readme_command_parses() {
        let cli = Cli::try_parse_from([
            "cluster-deploy",
            "plan",
            "--config",
            "examples/cluster.toml",
            "--out",
            "target/example/azuredeploy.json",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Plan {
                out: Some(_),
                offline: false
            }
        ));
        assert_eq!(cli.azure.arm_endpoint, "https://management.azure.com");
        assert_eq!(
            cli.azure.login_endpoint,
            "https://login.microsoftonline.com"
        );
    }
}
