//! The roll's settings, checked once from the command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::cli::RollArgs;

use super::events::duration_text;
use super::version::Version;

/// Which scale sets a roll replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scope {
    All,
    ServersOnly,
    ClientsOnly,
}

impl Scope {
    pub(super) fn servers(self) -> bool {
        self != Scope::ClientsOnly
    }

    pub(super) fn clients(self) -> bool {
        self != Scope::ServersOnly
    }
}

/// A Raft index lag a new server may have and still count as caught up: a few heartbeats'
/// worth of writes between autopilot's per-server fetches (every 2 s), far below the
/// `max_trailing_logs` (250) autopilot itself allows a healthy server.
pub(super) const CAUGHT_UP_LAG: u64 = 64;

/// How long the roll waits, beyond a drain's deadline, for Nomad to stop what the deadline
/// forced off the node.
pub(super) const DRAIN_GRACE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub(super) struct RollOptions {
    pub(super) scope: Scope,
    pub(super) dry_run: bool,
    pub(super) yes: bool,
    pub(super) target_version: Option<Version>,
    pub(super) accept_no_failure_tolerance: bool,
    pub(super) transfer_leadership: bool,
    pub(super) client_batch_size: u32,
    pub(super) drain_deadline: Duration,
    pub(super) soak: Duration,
    pub(super) server_gate_timeout: Duration,
    pub(super) client_gate_timeout: Duration,
    pub(super) leave_timeout: Duration,
    pub(super) check_interval: Duration,
    pub(super) snapshot: Option<PathBuf>,
    /// `--created-before`: instances Azure created before it are replaced too.
    pub(super) created_before: Option<time::OffsetDateTime>,
    /// The flag's value as given (for the re-run command a stop report prints).
    pub(super) created_before_text: Option<String>,
}

impl RollOptions {
    /// `now` is the clock's wall time (a `--created-before` in the future is refused).
    pub(super) fn from_args(args: &RollArgs, now: std::time::SystemTime) -> Result<Self> {
        let created_before = match &args.created_before {
            Some(text) => Some(super::age::parse_cutoff(text, now.into())?),
            None => None,
        };
        let target_version = match &args.nomad_version {
            Some(text) => {
                Some(Version::parse(text).map_err(|e| anyhow::anyhow!("--nomad-version: {e}"))?)
            }
            None => None,
        };
        if let Some(path) = &args.snapshot {
            if path.as_os_str().is_empty() || path.file_name().is_none() {
                bail!("--snapshot {}: not a file path", path.display());
            }
        }
        if args.check_interval > args.server_gate_timeout
            || args.check_interval > args.client_gate_timeout
        {
            bail!(
                "--check-interval {:?} is longer than a gate timeout: no gate could be checked twice",
                args.check_interval
            );
        }
        // The soak runs inside the new server's gate: a soak as long as the gate's timeout
        // could never end before the timeout deletes (or keeps) the server and stops.
        if !args.soak.is_zero() && args.soak >= args.server_gate_timeout {
            bail!(
                "--soak {} is not shorter than --server-gate-timeout {}: the soak counts inside the new server's gate, so no server could pass it; shorten --soak or lengthen --server-gate-timeout",
                duration_text(args.soak),
                duration_text(args.server_gate_timeout)
            );
        }
        Ok(Self {
            scope: match (args.servers_only, args.clients_only) {
                (true, _) => Scope::ServersOnly,
                (_, true) => Scope::ClientsOnly,
                _ => Scope::All,
            },
            dry_run: args.dry_run,
            yes: args.yes,
            target_version,
            accept_no_failure_tolerance: args.accept_no_failure_tolerance,
            transfer_leadership: !args.no_leadership_transfer,
            client_batch_size: args.client_batch_size,
            drain_deadline: args.drain_deadline,
            soak: args.soak,
            server_gate_timeout: args.server_gate_timeout,
            client_gate_timeout: args.client_gate_timeout,
            leave_timeout: args.leave_timeout,
            check_interval: args.check_interval,
            snapshot: args.snapshot.clone(),
            created_before,
            created_before_text: args.created_before.as_ref().map(|t| t.trim().to_string()),
        })
    }

    /// How long to wait for a drain: its deadline, then the grace for what it forced off.
    pub(super) fn drain_timeout(&self) -> Duration {
        self.drain_deadline + DRAIN_GRACE
    }
}
