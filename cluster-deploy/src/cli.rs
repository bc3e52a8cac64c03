//! Command-line arguments of `cluster-deploy`.

use std::path::PathBuf;
use std::time::Duration;

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
    /// Every scale set instance with its model and its Nomad agent (member status, voter and
    /// leader, node eligibility and drain, allocations), and the cluster's failure tolerance.
    Status {
        #[command(flatten)]
        nomad: NomadArgs,
    },
    /// Replace every instance not on its scale set's latest model: servers one at a time
    /// (surge first, the leader last), then clients in batches (surge, drain, delete). Stops
    /// safely on anything unexpected; a re-run resumes from what Azure and Nomad report.
    Roll(RollArgs),
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
    /// agents keep what they loaded: roll the nodes afterwards (see the README). Without a
    /// flag, report where a CA rotation stands and what comes next.
    Rotate {
        /// New server, client and CLI certificates from the current CA.
        #[arg(long)]
        certificates: bool,
        /// One step of replacing the CA, each followed by a roll: `start` (also `--ca` alone)
        /// trusts a new CA alongside the current one, `switch` has the new CA issue every
        /// certificate, `finish` stops trusting the old CA. Runs alone.
        #[arg(
            long,
            value_name = "STEP",
            num_args = 0..=1,
            default_missing_value = "start",
            value_enum
        )]
        ca: Option<CaStepArg>,
        /// A new gossip key (follow Nomad's keyring steps, see the README).
        #[arg(long)]
        gossip_key: bool,
        /// --certificates and --gossip-key.
        #[arg(long)]
        all: bool,
        /// With `--ca switch` or `--ca finish`: go ahead although instances created before the
        /// previous step are still running (its roll has not finished). Nodes booted from now
        /// on may not be trusted by them: a split cluster. Warns, naming them.
        #[arg(long)]
        skip_roll_check: bool,
    },
}

/// A step of `rotate --ca`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CaStepArg {
    /// Phase 1: a new CA, trusted alongside the current one; certificates stay the old CA's.
    Start,
    /// Phase 2: the new CA signs, and issues new server, client and CLI certificates.
    Switch,
    /// The old CA is no longer trusted.
    Finish,
}

impl From<CaStepArg> for crate::secrets::ca_rotation::CaStep {
    fn from(arg: CaStepArg) -> Self {
        match arg {
            CaStepArg::Start => Self::Start,
            CaStepArg::Switch => Self::Switch,
            CaStepArg::Finish => Self::Finish,
        }
    }
}

/// `apply`'s Key Vault and ACL bootstrap options.
#[derive(Debug, Clone, Args)]
pub struct ApplyVaultArgs {
    /// The cluster's vault name is held by a soft-deleted vault (a destroyed cluster): bring
    /// it back with its secrets (createMode recover). The default when the deleted vault is
    /// tagged as this cluster's (nomad-cluster); needed for one that is not.
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

/// How to reach the Nomad API. The token, client certificate and TLS server name follow the
/// Nomad CLI's variables (`NOMAD_TOKEN`, `NOMAD_CLIENT_CERT`/`NOMAD_CLIENT_KEY`,
/// `NOMAD_TLS_SERVER_NAME`, `NOMAD_REGION`, ...).
#[derive(Debug, Clone, Args)]
pub struct NomadArgs {
    /// The Nomad API address [default: NOMAD_ADDR, else the load balancer's].
    #[arg(long, value_name = "URL", env = "NOMAD_ADDR")]
    pub nomad_address: Option<String>,
    /// A CA certificate to trust for a TLS Nomad API.
    #[arg(long, value_name = "FILE", env = "NOMAD_CACERT")]
    pub nomad_ca_cert: Option<PathBuf>,
}

/// `roll`: what to replace, how fast, and how long to wait for each gate.
#[derive(Debug, Clone, Args)]
pub struct RollArgs {
    #[command(flatten)]
    pub nomad: NomadArgs,

    /// Replace the servers only.
    #[arg(long, conflicts_with = "clients_only")]
    pub servers_only: bool,
    /// Replace the clients only (the servers must already be on their latest model, or be
    /// left for later knowingly).
    #[arg(long)]
    pub clients_only: bool,
    /// Read the cluster, check the preconditions and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also replace every instance Azure created before this RFC 3339 time (its
    /// `timeCreated`), even on the latest model: after `rotate`, which prints the command with
    /// the time of its step. Instances the roll creates are newer, so a re-run with the same
    /// time resumes. Not in the future.
    #[arg(long, value_name = "TIME")]
    pub created_before: Option<String>,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(long)]
    pub yes: bool,

    /// The Nomad version the new image runs, checked against every running agent before
    /// anything changes. Without it, the first new agent's version is checked before any
    /// old instance goes.
    #[arg(long, value_name = "VERSION")]
    pub nomad_version: Option<String>,
    /// Roll even when the cluster tolerates no server failure (a single server, or one
    /// already down): losing one more server during the roll loses quorum.
    #[arg(long)]
    pub accept_no_failure_tolerance: bool,
    /// Let the old leader's graceful leave start an election instead of transferring
    /// leadership to a new server first (servers before Nomad 1.7 cannot transfer; roll falls
    /// back to this by itself).
    #[arg(long)]
    pub no_leadership_transfer: bool,

    /// Old client instances replaced at a time (per pool), with as many new ones surged first.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub client_batch_size: u32,
    /// Drain deadline: allocations still on an old client after this long are stopped by Nomad.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = positive_duration)]
    pub drain_deadline: Duration,
    /// How long a new server must stay an alive, caught-up, healthy voter before an old one goes.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub soak: Duration,
    /// Longest wait for a new server to boot and become a healthy voter, and for the servers
    /// to be healthy again after one left.
    #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = positive_duration)]
    pub server_gate_timeout: Duration,
    /// Longest wait for new clients to be ready and eligible.
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = positive_duration)]
    pub client_gate_timeout: Duration,
    /// Longest wait for a deleted server to leave the gossip pool and Raft.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = positive_duration)]
    pub leave_timeout: Duration,
    /// How often gates read Nomad again.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = positive_duration)]
    pub check_interval: Duration,
    /// Where to save the Raft snapshot taken before any change [default:
    /// <cluster>-<unix time>.snap in the current directory]. Never overwritten.
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
}

/// A Go-style duration (`90s`, `1m30s`, `1h`), as Nomad's CLI takes them.
fn duration(text: &str) -> Result<Duration, String> {
    support::go_duration::parse(text.trim())
        .ok_or_else(|| format!("{text:?} is not a duration (e.g. 30s, 5m, 1h30m)"))
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err(format!("{text:?}: must be more than zero")),
        d => Ok(d),
    }
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
        for (args, step) in [
            (&["--ca"][..], Some(CaStepArg::Start)),
            (&["--ca", "--json"][..], Some(CaStepArg::Start)),
            (&["--ca", "switch"][..], Some(CaStepArg::Switch)),
            (&["--ca=finish"][..], Some(CaStepArg::Finish)),
            (&[][..], None),
        ] {
            let cli = Cli::try_parse_from(["cluster-deploy", "rotate"].iter().chain(args.iter()))
                .unwrap();
            assert!(
                matches!(cli.command, Command::Rotate { ca, .. } if ca == step),
                "{args:?}"
            );
        }
        let e = Cli::try_parse_from(["cluster-deploy", "rotate", "--ca", "later"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("later") && e.contains("--ca"), "{e}");
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
