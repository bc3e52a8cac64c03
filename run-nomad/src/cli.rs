//! Command-line arguments of `run-nomad`: the original script's flags with their spellings, the
//! AWS sibling's `--environment`/`--systemd-stdout`/`--systemd-stderr`, and the new ones. Only
//! parsing lives here; [`crate::settings`] validates the values and fills in defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// Nomad's log levels (`command/agent/log_levels.go`), written upper-case as Nomad expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

impl LogLevel {
    /// The spelling in `log_level`.
    pub fn as_nomad(self) -> &'static str {
        match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Off => "OFF",
        }
    }
}

/// The init system that supervises Nomad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitSystem {
    /// A systemd unit modelled on HashiCorp's packaged `nomad.service`.
    Systemd,
    /// A supervisord program, as the original script wrote.
    Supervisor,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "run-nomad",
    version,
    about = "Boot-time configuration of a Nomad agent from Azure Instance Metadata.",
    long_about = "Reads the VM's Azure Instance Metadata, writes the Nomad agent configuration \
                  (default.hcl) and a systemd unit or supervisor program, and starts Nomad, with \
                  the Scheduled Events watcher (`run-nomad watch-events`) beside it. Run it from \
                  the scale set's custom data at first boot; running it again is safe.",
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true,
    group(ArgGroup::new("role").args(["server", "client"]).multiple(true).required(true)),
    group(ArgGroup::new("discovery")
        .args(["retry_join", "scale_set_name", "cluster_tag_key", "consul_address"])
        .multiple(false)),
    group(ArgGroup::new("gossip").args(["gossip_key", "gossip_key_file"]).multiple(false)),
)]
pub struct Cli {
    /// A mode other than configuring Nomad.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Run the agent in server mode. At least one of --server and --client is needed.
    #[arg(long)]
    pub server: bool,

    /// Run the agent in client mode. At least one of --server and --client is needed.
    #[arg(long)]
    pub client: bool,

    /// How many servers the cluster has: `bootstrap_expect` and autopilot's `min_quorum`.
    /// Required with --server; at least 1, and an odd number is recommended.
    #[arg(long, value_name = "N")]
    pub num_servers: Option<u32>,

    /// Nomad's config directory [default: <directory of run-nomad>/../config].
    #[arg(long, value_name = "DIR")]
    pub config_dir: Option<PathBuf>,

    /// Nomad's data directory [default: <directory of run-nomad>/../data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The directory holding the `nomad` binary [default: <directory of run-nomad>/../bin].
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Nomad's log directory, used by the supervisor program [default: <directory of
    /// run-nomad>/../log].
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,

    /// The user Nomad runs as, and whose group may read default.hcl [default: the owner of
    /// --config-dir]. With --use-sudo (the default for clients) the agent runs as root.
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,

    /// Run the agent as root. The default for --client (clients need root for isolation);
    /// servers run as --user.
    #[arg(long)]
    pub use_sudo: bool,

    /// Do not write default.hcl: only the service definition is written and started.
    #[arg(long)]
    pub skip_nomad_config: bool,

    /// An environment variable for the Nomad process, KEY=VALUE (repeatable). The value is
    /// taken literally: quotes are part of it.
    #[arg(long, value_name = "KEY=VALUE")]
    pub environment: Vec<String>,

    /// StandardOutput= of the systemd unit (journal, null, file:/path, append:/path...)
    /// [default: systemd's, journal].
    #[arg(long, value_name = "OUTPUT")]
    pub systemd_stdout: Option<String>,

    /// StandardError= of the systemd unit [default: systemd's, inherit].
    #[arg(long, value_name = "OUTPUT")]
    pub systemd_stderr: Option<String>,

    /// Which init system runs Nomad.
    #[arg(long, value_enum, default_value_t = InitSystem::Systemd)]
    pub init: InitSystem,

    /// Base URL of the Azure Instance Metadata Service.
    #[arg(
        long,
        value_name = "URL",
        env = "RUN_NOMAD_IMDS_ENDPOINT",
        default_value = crate::metadata::DEFAULT_ENDPOINT
    )]
    pub imds_endpoint: String,

    /// Read the instance metadata document (the JSON IMDS returns) from FILE instead of IMDS
    /// (--imds-endpoint is then not used).
    #[arg(long, value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,

    /// Overall deadline for reading IMDS, retries included, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub imds_timeout: u64,

    /// Discovery: join these server addresses or go-discover strings (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub retry_join: Vec<String>,

    /// Discovery: Azure cloud auto-join of the servers' Uniform scale set NAME, in the VM's own
    /// resource group and subscription (from IMDS), authenticated by the VM's managed identity.
    #[arg(long, value_name = "NAME")]
    pub scale_set_name: Option<String>,

    /// The resource group of --scale-set-name when it is not the VM's own.
    #[arg(long, value_name = "RG", requires = "scale_set_name")]
    pub scale_set_resource_group: Option<String>,

    /// Discovery: Azure cloud auto-join by network-interface tag name.
    #[arg(long, value_name = "KEY")]
    pub cluster_tag_key: Option<String>,

    /// The tag value for --cluster-tag-key [default: the value of that tag on this VM].
    #[arg(long, value_name = "VALUE", requires = "cluster_tag_key")]
    pub cluster_tag_value: Option<String>,

    /// Discovery: through the Consul agent at HOST:PORT. With no discovery flag at all the
    /// agent uses a local Consul agent at 127.0.0.1:8500, as the original script did.
    #[arg(long, value_name = "HOST:PORT")]
    pub consul_address: Option<String>,

    /// The gossip encryption key (base64 of 32 bytes) for servers. Prefer --gossip-key-file:
    /// a command line is visible to every local user.
    #[arg(long, value_name = "KEY")]
    pub gossip_key: Option<String>,

    /// Read the gossip encryption key from FILE.
    #[arg(long, value_name = "FILE")]
    pub gossip_key_file: Option<PathBuf>,

    /// CA certificate for Nomad's TLS (needs --tls-cert-file and --tls-key-file).
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert_file", "tls_key_file"])]
    pub tls_ca_file: Option<PathBuf>,

    /// This agent's TLS certificate.
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca_file", "tls_key_file"])]
    pub tls_cert_file: Option<PathBuf>,

    /// This agent's TLS private key.
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca_file", "tls_cert_file"])]
    pub tls_key_file: Option<PathBuf>,

    /// Enable Nomad's ACL system.
    #[arg(long)]
    pub acl: bool,

    /// Fetch the cluster's secrets from the Azure Key Vault NAME with this VM's managed
    /// identity: what --tls-from-key-vault and --gossip-key-from-key-vault select (one of them
    /// is needed), written under --tls-dir and --secrets-dir. Nothing is written or started
    /// when they cannot be fetched within --secrets-timeout.
    #[arg(long, value_name = "NAME", conflicts_with = "skip_nomad_config")]
    pub key_vault: Option<String>,

    /// TLS for HTTP and RPC with verify_server_hostname, from --key-vault: the CA
    /// (nomad-ca-cert) and this role's certificate and key (nomad-server-cert and
    /// nomad-server-key, or nomad-client-cert and nomad-client-key).
    #[arg(
        long,
        requires = "key_vault",
        conflicts_with_all = ["tls_ca_file", "tls_cert_file", "tls_key_file"]
    )]
    pub tls_from_key_vault: bool,

    /// Gossip encryption (server.encrypt) with the key from --key-vault (nomad-gossip-key).
    /// Servers only.
    #[arg(
        long,
        requires = "key_vault",
        conflicts_with_all = ["gossip_key", "gossip_key_file"]
    )]
    pub gossip_key_from_key_vault: bool,

    /// The URL of --key-vault [default: https://<NAME>.vault.azure.net/]: for a vault in
    /// another Azure cloud, or a test (plain http only for a loopback address). Used only with
    /// --key-vault.
    #[arg(long, value_name = "URL", env = "RUN_NOMAD_KEY_VAULT_URL")]
    pub key_vault_url: Option<String>,

    /// Overall deadline for fetching the secrets, retries included: a new VM's role
    /// assignments can take minutes to reach Key Vault.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    pub secrets_timeout: Duration,

    /// Where --key-vault's certificates and keys are written [default: <directory of
    /// run-nomad>/../tls].
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,

    /// Where --key-vault's gossip key is written [default: <directory of
    /// run-nomad>/../secrets; created 0750 when missing].
    #[arg(long, value_name = "DIR")]
    pub secrets_dir: Option<PathBuf>,

    /// The notice Azure gives before it deletes a VM of this scale set (its terminate
    /// notification's notBeforeTimeout; cluster-deploy sets 5 minutes). A client's
    /// `drain_on_shutdown` deadline is fitted into it.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = duration)]
    pub terminate_notice: Duration,

    /// The client's node class.
    #[arg(long, value_name = "CLASS")]
    pub node_class: Option<String>,

    /// Client node metadata, KEY=VALUE (repeatable). Keys follow Nomad's rule: dot-separated
    /// non-empty parts (`rack`, `azure.zone`; not `.rack`, `a..b`, `zone.`).
    #[arg(long, value_name = "KEY=VALUE")]
    pub meta: Vec<String>,

    /// Do not add the VM's zone, fault domain and size (from IMDS) as client node metadata
    /// `azure.zone`, `azure.fault_domain`, `azure.vm_size`.
    #[arg(long)]
    pub no_placement_meta: bool,

    /// The client's node pool (Nomad 1.6+): letters, digits, `-`, `_`; not `all`.
    #[arg(long, value_name = "POOL")]
    pub node_pool: Option<String>,

    /// leave_on_interrupt: leave the cluster on SIGINT, the signal the unit and the program stop
    /// Nomad with [default: true for servers (a scale-set server that stops is deleted or
    /// rebooted; it rejoins after a reboot), false for clients].
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub leave_on_interrupt: Option<bool>,

    /// leave_on_terminate: leave the cluster on SIGTERM [default: as --leave-on-interrupt's].
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    pub leave_on_terminate: Option<bool>,

    /// The agent's log_level [default: Nomad's, INFO].
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub log_level: Option<LogLevel>,

    /// Nomad logs in JSON (log_json = true).
    #[arg(long)]
    pub log_json: bool,

    /// Do not let Nomad check for updates and security bulletins (disable_update_check = true).
    #[arg(long)]
    pub disable_update_check: bool,

    /// Prometheus metrics at /v1/metrics?format=prometheus (telemetry.prometheus_metrics, with
    /// disable_hostname so metric names do not carry the VM's name).
    #[arg(long)]
    pub prometheus_metrics: bool,

    /// Publish allocation runtime metrics (telemetry.publish_allocation_metrics).
    #[arg(long)]
    pub publish_allocation_metrics: bool,

    /// Publish node runtime metrics (telemetry.publish_node_metrics).
    #[arg(long)]
    pub publish_node_metrics: bool,

    /// The datacenter [default: the VM's location].
    #[arg(long, value_name = "DC")]
    pub datacenter: Option<String>,

    /// The region [default: the VM's location].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// The address to advertise [default: the first private IPv4 address of the VM's primary
    /// network interface, from IMDS].
    #[arg(long, value_name = "IP")]
    pub advertise_addr: Option<std::net::IpAddr>,

    /// Write every file under DIR instead of / (an image build or a test). Service commands
    /// still act on this host: add --no-start when DIR is not the running system.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Write the files but do not touch the service.
    #[arg(long)]
    pub no_start: bool,

    /// Print each file that would be written and each command that would run; touch nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// With --dry-run: print the plan as one JSON document on stdout (see the README).
    #[arg(long, requires = "dry_run")]
    pub json: bool,

    /// Where the systemd unit (nomad.service) is written.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub systemd_unit_dir: PathBuf,

    /// Where the supervisor program (run-nomad.conf) is written: a directory supervisord's
    /// [include] reads (Debian and Ubuntu: /etc/supervisor/conf.d).
    #[arg(long, value_name = "DIR", default_value = "/etc/supervisor/conf.d")]
    pub supervisor_conf_dir: PathBuf,

    /// The systemctl program.
    #[arg(
        long,
        value_name = "PATH",
        env = "RUN_NOMAD_SYSTEMCTL",
        default_value = "systemctl"
    )]
    pub systemctl: PathBuf,

    /// The supervisorctl program.
    #[arg(
        long,
        value_name = "PATH",
        env = "RUN_NOMAD_SUPERVISORCTL",
        default_value = "supervisorctl"
    )]
    pub supervisorctl: PathBuf,

    /// Do not install the Scheduled Events watcher (`run-nomad watch-events`, which drains or
    /// stops Nomad before Azure deletes or evicts this VM); remove one an earlier run installed.
    #[arg(long)]
    pub no_watch_events: bool,

    /// An ACL token file for the watcher (with --acl): the token must hold `node:write` (and
    /// `agent:read`, and `read-job` in every namespace) to drain this client; without one it
    /// can only stop Nomad.
    #[arg(long, value_name = "FILE", conflicts_with = "no_watch_events")]
    pub watch_events_token_file: Option<PathBuf>,

    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// The modes besides the boot-time configuration.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Watch Azure Scheduled Events and take Nomad out gracefully before Azure deletes
    /// (Terminate) or evicts (Preempt) this VM: a client is drained within the notice, a server
    /// stopped so it leaves Raft, then the event is approved. run-nomad installs it as a
    /// service; it runs until stopped.
    WatchEvents(WatchArgs),
}

/// A Go-style duration (`500ms`, `30s`, `1m30s`), as Nomad writes them.
fn duration(text: &str) -> Result<Duration, String> {
    support::go_duration::parse(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 500ms, 30s or 1m30s"))
}

/// `run-nomad watch-events`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("agent_role").args(["server", "client"]).multiple(true).required(true)))]
pub struct WatchArgs {
    /// This VM runs a Nomad server: stop it (it leaves Raft) before approving.
    #[arg(long)]
    pub server: bool,

    /// This VM runs a Nomad client: drain it within the notice before stopping it.
    #[arg(long)]
    pub client: bool,

    /// Base URL of the Azure Instance Metadata Service.
    #[arg(
        long,
        value_name = "URL",
        env = "RUN_NOMAD_IMDS_ENDPOINT",
        default_value = crate::metadata::DEFAULT_ENDPOINT
    )]
    pub imds_endpoint: String,

    /// How long to keep trying to read this VM's name from IMDS at start, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub imds_timeout: u64,

    /// The local Nomad agent's HTTP API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4646")]
    pub nomad_address: String,

    /// The CA certificate the agent's HTTPS certificate is checked against.
    #[arg(long, value_name = "FILE")]
    pub nomad_ca_file: Option<PathBuf>,

    /// A certificate to present to the agent (with --nomad-client-key).
    #[arg(long, value_name = "FILE", requires = "nomad_client_key")]
    pub nomad_client_cert: Option<PathBuf>,

    /// The key of --nomad-client-cert.
    #[arg(long, value_name = "FILE", requires = "nomad_client_cert")]
    pub nomad_client_key: Option<PathBuf>,

    /// The name the agent's certificate must hold (`client.<region>.nomad`), checked instead
    /// of the address's host.
    #[arg(long, value_name = "NAME")]
    pub nomad_tls_server_name: Option<String>,

    /// A file holding the ACL token for the agent's API (never logged).
    #[arg(long, value_name = "FILE")]
    pub nomad_token_file: Option<PathBuf>,

    /// The client agent has a `drain_on_shutdown` block and leaves on SIGTERM: instead of
    /// draining it through the API (which needs a token with node:write on an ACL cluster),
    /// send it SIGTERM and let it drain itself, then wait for it to exit.
    #[arg(long, requires = "client", conflicts_with = "nomad_token_file")]
    pub self_drain: bool,

    /// Which init system runs Nomad (how to stop and start it).
    #[arg(long, value_enum, default_value_t = InitSystem::Systemd)]
    pub init: InitSystem,

    /// The systemctl program.
    #[arg(
        long,
        value_name = "PATH",
        env = "RUN_NOMAD_SYSTEMCTL",
        default_value = "systemctl"
    )]
    pub systemctl: PathBuf,

    /// The supervisorctl program.
    #[arg(
        long,
        value_name = "PATH",
        env = "RUN_NOMAD_SUPERVISORCTL",
        default_value = "supervisorctl"
    )]
    pub supervisorctl: PathBuf,

    /// Where the watcher remembers the events it acted on.
    #[arg(long, value_name = "FILE", default_value = crate::events::state::DEFAULT_PATH)]
    pub state_file: PathBuf,

    /// How often to read Scheduled Events (Microsoft recommends once a second).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub poll_interval: Duration,

    /// The longest wait between tries while IMDS fails.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub max_backoff: Duration,

    /// Approve at the latest this long before NotBefore.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub approval_margin: Duration,

    /// The longest the service manager gets to stop Nomad (a quarter of a short notice at most
    /// on a client).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    pub stop_timeout: Duration,

    /// Time between a drain's deadline and the stop, for the allocations Nomad force-stops then.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub kill_allowance: Duration,

    /// Timeout of the first Scheduled Events request (it enables the service, which Microsoft
    /// says may take up to two minutes).
    #[arg(long, value_name = "DURATION", default_value = "150s", value_parser = duration)]
    pub first_request_timeout: Duration,

    /// Timeout of every later IMDS request.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub request_timeout: Duration,
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
    fn the_cluster_deploy_command_lines_parse() {
        let server = Cli::try_parse_from([
            "run-nomad",
            "--server",
            "--num-servers",
            "3",
            "--scale-set-name",
            "prod-servers",
            "--gossip-key-file",
            "/opt/nomad/config/gossip.key",
            "--tls-ca-file",
            "/opt/nomad/tls/ca.pem",
            "--tls-cert-file",
            "/opt/nomad/tls/server.pem",
            "--tls-key-file",
            "/opt/nomad/tls/server-key.pem",
            "--acl",
            "--node-class",
            "web",
            "--datacenter",
            "dc1",
            "--region",
            "global",
        ])
        .unwrap();
        assert!(server.server && !server.client);
        assert_eq!(server.num_servers, Some(3));
        assert_eq!(server.scale_set_name.as_deref(), Some("prod-servers"));
        assert_eq!(server.imds_endpoint, "http://169.254.169.254");
        assert_eq!(server.imds_timeout, 300);
        assert_eq!(server.init, InitSystem::Systemd);
        assert_eq!(server.root, PathBuf::from("/"));

        let client =
            Cli::try_parse_from(["run-nomad", "--client", "--scale-set-name", "prod-servers"])
                .unwrap();
        assert!(client.client && !client.server);

        // Secure by default (cluster-deploy's custom_data module): the vault, what to take
        // from it per role, and ACLs on their own.
        let server = Cli::try_parse_from([
            "run-nomad",
            "--server",
            "--num-servers",
            "3",
            "--scale-set-name",
            "prod-servers",
            "--key-vault",
            "prod-nomad-kv",
            "--tls-from-key-vault",
            "--gossip-key-from-key-vault",
            "--acl",
        ])
        .unwrap();
        assert_eq!(server.key_vault.as_deref(), Some("prod-nomad-kv"));
        assert!(server.tls_from_key_vault && server.gossip_key_from_key_vault && server.acl);
        let client = Cli::try_parse_from([
            "run-nomad",
            "--client",
            "--scale-set-name",
            "prod-servers",
            "--key-vault",
            "prod-nomad-kv",
            "--tls-from-key-vault",
            "--acl",
        ])
        .unwrap();
        assert!(client.tls_from_key_vault && !client.gossip_key_from_key_vault);
    }

    #[test]
    fn watch_events_is_a_mode_of_its_own() {
        let cli = Cli::try_parse_from([
            "run-nomad",
            "watch-events",
            "-v",
            "--client",
            "--nomad-address",
            "https://127.0.0.1:4646",
            "--poll-interval",
            "250ms",
        ])
        .unwrap();
        assert_eq!(cli.verbose, 1);
        let Some(Command::WatchEvents(args)) = cli.command else {
            panic!("{cli:?}");
        };
        assert!(args.client && !args.server);
        assert_eq!(args.poll_interval, Duration::from_millis(250));
        assert_eq!(args.stop_timeout, Duration::from_secs(30));
        assert_eq!(args.imds_endpoint, "http://169.254.169.254");
        // The role is required there too, and the boot flags do not mix with it.
        assert!(Cli::try_parse_from(["run-nomad", "watch-events"]).is_err());
        assert!(
            Cli::try_parse_from(["run-nomad", "--client", "watch-events", "--client"]).is_err()
        );
        let err = Cli::try_parse_from([
            "run-nomad",
            "watch-events",
            "--server",
            "--poll-interval",
            "soon",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
        // Without the subcommand, the boot flags are as before.
        let boot = Cli::try_parse_from(["run-nomad", "--client"]).unwrap();
        assert!(boot.command.is_none() && !boot.no_watch_events);
    }

    #[test]
    fn self_drain_is_for_a_client_without_a_token() {
        let cli =
            Cli::try_parse_from(["run-nomad", "watch-events", "--client", "--self-drain"]).unwrap();
        let Some(Command::WatchEvents(args)) = cli.command else {
            panic!("{cli:?}");
        };
        assert!(args.self_drain);
        let err = Cli::try_parse_from(["run-nomad", "watch-events", "--server", "--self-drain"])
            .unwrap_err();
        assert!(err.to_string().contains("--client"), "{err}");
        let err = Cli::try_parse_from([
            "run-nomad",
            "watch-events",
            "--client",
            "--self-drain",
            "--nomad-token-file",
            "/t",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("cannot be used with"), "{err}");
    }

    #[test]
    fn a_role_is_required() {
        let err = Cli::try_parse_from(["run-nomad", "--num-servers", "3"]).unwrap_err();
        assert!(err.to_string().contains("--server"), "{err}");
    }

    #[test]
    fn discovery_modes_exclude_each_other() {
        let err = Cli::try_parse_from([
            "run-nomad",
            "--client",
            "--retry-join",
            "10.0.0.4",
            "--scale-set-name",
            "s",
        ])
        .unwrap_err();
        assert!(err.to_string().contains("cannot be used with"), "{err}");
    }

    #[test]
    fn tls_files_come_together() {
        let err =
            Cli::try_parse_from(["run-nomad", "--client", "--tls-ca-file", "/ca.pem"]).unwrap_err();
        assert!(err.to_string().contains("--tls-cert-file"), "{err}");
    }

    #[test]
    fn repeatable_flags_collect_in_order() {
        let cli = Cli::try_parse_from([
            "run-nomad",
            "--client",
            "--meta",
            "a=1",
            "--meta",
            "b=2",
            "--environment",
            "X=1",
            "--retry-join",
            "10.0.0.4",
            "--retry-join",
            "10.0.0.5",
        ])
        .unwrap();
        assert_eq!(cli.meta, ["a=1", "b=2"]);
        assert_eq!(cli.environment, ["X=1"]);
        assert_eq!(cli.retry_join, ["10.0.0.4", "10.0.0.5"]);
    }
}
