//! `roll`: moves a running cluster onto its scale sets' latest model (a new image, new custom
//! data) by replacing instances, never by changing them in place:
//!
//! - servers strictly one at a time, the leader last: surge one instance on the latest model,
//!   gate it (alive, a voter, caught up with the leader's index, autopilot healthy, for the soak
//!   time), transfer leadership to it when the leader is next, delete one old instance (the
//!   scale set's terminate notification lets its agent leave Raft), check it left (a dead
//!   peer's removal only when it did not), and gate again;
//! - clients per pool in bounded batches: surge, wait until the new nodes are ready and
//!   eligible, mark the old ones ineligible, drain them with a deadline, wait until their
//!   allocations have moved, delete them.
//!
//! There is no state file: every step starts from what Azure and Nomad report, so a re-run
//! after a stop (a gate timeout, a failure, SIGINT/SIGTERM) resumes where the cluster is.
//!
//! Modules: [`instance`] (a scale-set instance, old or current), [`state`] (instances joined
//! to agents by VM id), [`preconditions`], [`plan`] (the
//! order, pure), [`gates`] (waiting, and what each gate requires), [`servers`] and [`clients`]
//! (the steps), [`report`] (what the cluster looks like and what to do when a roll stops),
//! [`events`] (text or JSON lines), [`azure`] (the scale-set calls), [`clock`], [`version`],
//! [`age`] (`--created-before`: old by creation time too, after a secret rotation).

pub(super) mod age;
pub(super) mod azure;
mod clients;
mod clock;
mod events;
mod gates;
mod instance;
mod options;
mod plan;
mod preconditions;
pub(super) mod report;
mod servers;
pub(super) mod state;
mod version;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::json;

pub use clock::{Clock, Hooks, WallClock};

use crate::arm::ArmClient;
use crate::auth::Env;
use crate::cli::{Cli, RollArgs};
use crate::model::{Cluster, ScaleSet};
use crate::nomad::{NomadClient, NomadError};

use super::connect::connect_required;
use super::Loaded;
use events::{duration_text, Events};
use options::RollOptions;
use plan::Plan;
use state::{ClientSet, ServerSet};

/// Why a roll stopped before it was done.
#[derive(Debug)]
enum Stop {
    /// SIGINT/SIGTERM (or the test's flag), seen at a safe point.
    Interrupted,
    /// A gate did not open in time. `done` says what the roll did about it.
    Timeout {
        gate: String,
        waited: Duration,
        missing: String,
        done: Vec<String>,
    },
    /// The cluster is in a state the roll will not act in.
    Unsafe { what: String, done: Vec<String> },
    /// An Azure or Nomad call failed (after its retries).
    Failed(anyhow::Error),
}

impl Stop {
    pub(super) fn unsafe_state(what: impl Into<String>) -> Self {
        Stop::Unsafe {
            what: what.into(),
            done: Vec::new(),
        }
    }

    /// Adds what the roll did about the stop (e.g. deleted a new instance).
    pub(super) fn with_done(self, note: String) -> Self {
        match self {
            Stop::Timeout {
                gate,
                waited,
                missing,
                mut done,
            } => {
                done.push(note);
                Stop::Timeout {
                    gate,
                    waited,
                    missing,
                    done,
                }
            }
            Stop::Unsafe { what, mut done } => {
                done.push(note);
                Stop::Unsafe { what, done }
            }
            other => other,
        }
    }

    pub(super) fn reason(&self) -> String {
        match self {
            Stop::Interrupted => "interrupted (SIGINT/SIGTERM): stopped at a safe point".into(),
            Stop::Timeout {
                gate,
                waited,
                missing,
                ..
            } => format!(
                "gate \"{gate}\" did not open within {}: {missing}",
                duration_text(*waited)
            ),
            Stop::Unsafe { what, .. } => what.clone(),
            Stop::Failed(e) => format!("{e:#}"),
        }
    }

    /// The stop as an error (the cause itself for a failed call).
    pub(super) fn into_error(self) -> anyhow::Error {
        match self {
            Stop::Failed(e) => e,
            other => anyhow::anyhow!(other.reason()),
        }
    }

    pub(super) fn kind(&self) -> &'static str {
        match self {
            Stop::Interrupted => "interrupted",
            Stop::Timeout { .. } => "gate-timeout",
            Stop::Unsafe { .. } => "unsafe",
            Stop::Failed(_) => "failed",
        }
    }
}

impl From<anyhow::Error> for Stop {
    fn from(e: anyhow::Error) -> Self {
        Stop::Failed(e)
    }
}

impl From<NomadError> for Stop {
    fn from(e: NomadError) -> Self {
        Stop::Failed(anyhow::Error::new(e).context("the Nomad API"))
    }
}

/// One roll in progress: the clients, the cluster, the settings, and what it changed so far.
struct Roll<'a> {
    arm: ArmClient,
    nomad: NomadClient,
    cluster: &'a Cluster,
    config_path: PathBuf,
    options: RollOptions,
    events: Events<'a>,
    hooks: Hooks,
    /// Every change this run made, in order (the report lists them).
    changes: Vec<String>,
    /// New instances whose Nomad version was already checked (`<scale set>/<instance id>`).
    versions_checked: Vec<String>,
    /// New servers this run saw pass their gate, soak included (`<scale set>/<instance id>`).
    gated: Vec<String>,
    /// Per scale set, the instances Azure was deleting at the last read.
    deleting: RefCell<BTreeMap<String, Vec<state::Instance>>>,
    /// The instances seen first, to tell the ones this run surged ([`age::SurgeGuard`]).
    surge_guard: age::SurgeGuard,
}

/// `cluster-deploy roll`.
pub(super) fn roll(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    args: &RollArgs,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
    hooks: Hooks,
) -> Result<()> {
    let options = RollOptions::from_args(args, hooks.clock.wall())?;
    let cluster = &loaded.cluster;
    let arm = connect_required(&cli.azure, env)?;
    let settings = super::status::nomad_settings(&arm, cluster, env, &args.nomad, |name| {
        hooks.nomad_var(name)
    })?
    .context(
        "no Nomad address: the cluster has no public load balancer; pass --nomad-address or set NOMAD_ADDR (e.g. over a VPN)",
    )?;
    let nomad = NomadClient::with_settings(settings)?;
    let events = Events::new(out, cli.json, hooks.clock.clone());
    let mut roll = Roll {
        arm,
        nomad,
        cluster,
        config_path: loaded.path.clone(),
        options,
        events,
        hooks,
        changes: Vec::new(),
        versions_checked: Vec::new(),
        gated: Vec::new(),
        deleting: RefCell::default(),
        surge_guard: age::SurgeGuard::default(),
    };
    roll.run(input)
}

impl Roll<'_> {
    fn run(&mut self, input: &mut dyn BufRead) -> Result<()> {
        let address = self.nomad.settings().address.to_string();
        self.events.emit(
            "start",
            format!(
                "rolling cluster {} (resource group {}) through the Nomad API at {address}",
                self.cluster.name, self.cluster.resource_group
            ),
            json!({ "cluster": self.cluster.name, "resource_group": self.cluster.resource_group, "nomad_address": address }),
        );
        let (servers, pools) = self.read_all().map_err(Stop::into_error)?;
        self.emit_state(&servers, &pools);
        let checks = preconditions::checks(&servers, &pools, &self.options);
        for c in &checks {
            self.events.emit(
                "check",
                format!(
                    "{} {}: {}",
                    if c.ok { "ok  " } else { "FAIL" },
                    c.name,
                    c.detail
                ),
                json!({ "check": c.name, "ok": c.ok, "detail": c.detail }),
            );
        }
        let scope = self.options.scope;
        let plan = Plan::new(
            scope.servers().then_some(&servers),
            if scope.clients() { &pools } else { &[] },
            self.options.client_batch_size,
        );
        self.events.emit(
            "plan",
            plan.describe(
                self.cluster.servers.capacity,
                &duration_text(self.options.drain_deadline),
            ),
            json!({ "plan": plan }),
        );
        if plan.is_empty() {
            self.events.emit(
                "done",
                if self.options.created_before.is_some() {
                    "nothing to roll: every instance runs its scale set's latest model and was created after --created-before"
                } else {
                    "nothing to roll: every instance runs its scale set's latest model"
                },
                json!({ "changed": false }),
            );
            return Ok(());
        }
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect();
        if !failed.is_empty() {
            bail!(
                "not rolling: precondition{} failed: {} (nothing was changed)",
                if failed.len() == 1 { "" } else { "s" },
                failed.join(", ")
            );
        }
        if self.options.dry_run {
            self.events.emit(
                "done",
                "dry run: nothing was changed",
                json!({ "changed": false, "dry_run": true }),
            );
            return Ok(());
        }
        self.confirm(input)?;
        self.snapshot()?;
        match self.steps() {
            Ok(()) => {
                let (servers, pools) = self.read_all().map_err(Stop::into_error)?;
                self.emit_state(&servers, &pools);
                self.events.emit(
                    "done",
                    format!(
                        "roll complete: {} change{}",
                        self.changes.len(),
                        if self.changes.len() == 1 { "" } else { "s" }
                    ),
                    json!({ "changed": true, "changes": self.changes }),
                );
                Ok(())
            }
            Err(stop) => Err(report::stopped(self, stop)),
        }
    }

    fn steps(&mut self) -> Result<(), Stop> {
        if self.options.scope.servers() {
            self.roll_servers()?;
        }
        if self.options.scope.clients() {
            for pool in self.cluster.client_pools.clone() {
                self.roll_pool(&pool)?;
            }
        }
        Ok(())
    }

    fn confirm(&mut self, input: &mut dyn BufRead) -> Result<()> {
        if self.options.yes {
            return Ok(());
        }
        if !std::io::stdin().is_terminal() {
            bail!("not rolling without confirmation: pass --yes (no terminal to ask on)");
        }
        eprint!(
            "Roll cluster {} as planned above? Type yes to start: ",
            self.cluster.name
        );
        let mut answer = String::new();
        input
            .read_line(&mut answer)
            .context("reading the confirmation")?;
        if answer.trim() != "yes" {
            bail!("not rolling: not confirmed (nothing was changed)");
        }
        Ok(())
    }

    /// Saves a Raft snapshot from the leader to a local file before anything changes.
    fn snapshot(&mut self) -> Result<()> {
        let path = match &self.options.snapshot {
            Some(p) => p.clone(),
            None => default_snapshot_path(&self.cluster.name, std::time::SystemTime::now()),
        };
        let saved = self.nomad.save_snapshot(&path, false).with_context(|| {
            format!(
                "saving a snapshot to {} before rolling (nothing was changed)",
                path.display()
            )
        })?;
        self.events.emit(
            "snapshot",
            format!(
                "snapshot saved from the leader to {} (Raft index {}, term {}, {} bytes, sha256 {}); restore with `nomad operator snapshot restore`",
                saved.path.display(),
                saved.index,
                saved.term,
                saved.bytes,
                saved.sha256
            ),
            json!({ "path": saved.path, "index": saved.index, "term": saved.term, "bytes": saved.bytes, "sha256": saved.sha256 }),
        );
        Ok(())
    }

    /// Records a change this run made.
    pub(super) fn changed(&mut self, what: String) {
        self.changes.push(what);
    }

    /// A safe point: stops here when interrupted.
    pub(super) fn checkpoint(&self) -> Result<(), Stop> {
        if self.hooks.is_interrupted() {
            Err(Stop::Interrupted)
        } else {
            Ok(())
        }
    }

    pub(super) fn group(&self) -> &str {
        &self.cluster.resource_group
    }

    /// The instances of a scale set the roll works with: those Azure is deleting are on their
    /// way out and count as gone (a delete with a terminate notification takes minutes).
    fn instances(&self, scale_set: &str) -> Result<Vec<state::Instance>, Stop> {
        let mut instances = azure::instances(&self.arm, self.group(), scale_set)?;
        let deleting = instances.iter().filter(|i| i.deleting()).cloned().collect();
        self.deleting
            .borrow_mut()
            .insert(scale_set.to_string(), deleting);
        instances.retain(|i| !i.deleting());
        age::select(&mut instances, self.options.created_before)?;
        self.surge_guard
            .check(scale_set, &instances, self.options.created_before)?;
        Ok(instances)
    }

    /// Waits, when the last read saw Azure still deleting instances of `scale_set`, until it
    /// is done; true when it waited (the caller reads the state again). Such a delete is a
    /// change in progress (a previous run's, stopped while it waited, or someone else's): with
    /// the terminate notification it lasts until the VM approves its Terminate event or the
    /// event's NotBefore passes (`notBeforeTimeout`, 5 to 15 minutes: "Terminate notification
    /// for Azure Virtual Machine Scale Set instances", learn.microsoft.com). Nothing else may
    /// change meanwhile: not a second server at once, and not a surge, since the scale set's
    /// `sku.capacity` still counts the instances being deleted, so a capacity computed from
    /// the instances left would add none.
    pub(super) fn wait_for_deletes(
        &mut self,
        scale_set: &str,
        timeout: Duration,
    ) -> Result<bool, Stop> {
        let pending = self
            .deleting
            .borrow()
            .get(scale_set)
            .cloned()
            .unwrap_or_default();
        if pending.is_empty() {
            return Ok(false);
        }
        let gate = format!("instances of {scale_set} Azure is deleting");
        self.wait(&gate, timeout, |roll| {
            let all = azure::instances(&roll.arm, roll.group(), scale_set)?;
            let deleting: Vec<String> = all
                .iter()
                .filter(|i| i.deleting())
                .map(|i| i.label())
                .collect();
            Ok(if deleting.is_empty() {
                gates::Look::Open(())
            } else {
                gates::Look::Closed(format!(
                    "Azure is still deleting instance{} {}",
                    if deleting.len() == 1 { "" } else { "s" },
                    deleting.join(", ")
                ))
            })
        })?;
        Ok(true)
    }

    /// The server scale set with its agents.
    pub(super) fn read_servers(&self) -> Result<ServerSet, Stop> {
        let spec = &self.cluster.servers;
        let instances = self.instances(&spec.name)?;
        let facts = state::read_servers(&self.nomad)?;
        let mut set = state::join_servers(&spec.name, spec.capacity, instances, &facts);
        set.deleting = self
            .deleting
            .borrow()
            .get(&spec.name)
            .cloned()
            .unwrap_or_default();
        Ok(set)
    }

    /// A client pool's scale set with its nodes.
    pub(super) fn read_pool(&self, spec: &ScaleSet) -> Result<ClientSet, Stop> {
        let instances = self.instances(&spec.name)?;
        let facts = state::read_clients(&self.nomad)?;
        Ok(state::join_clients(
            &spec.name,
            spec.pool.as_deref(),
            spec.capacity,
            instances,
            &facts,
        ))
    }

    pub(super) fn read_all(&self) -> Result<(ServerSet, Vec<ClientSet>), Stop> {
        let servers = self.read_servers()?;
        let pools = self
            .cluster
            .client_pools
            .iter()
            .map(|p| self.read_pool(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((servers, pools))
    }

    fn emit_state(&mut self, servers: &ServerSet, pools: &[ClientSet]) {
        let text = report::state_text(servers, pools);
        self.events.emit(
            "state",
            text,
            json!({ "servers": servers, "client_pools": pools }),
        );
    }
}

/// `<cluster>-<unix seconds>.snap` in the current directory.
fn default_snapshot_path(cluster: &str, now: std::time::SystemTime) -> PathBuf {
    let seconds = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Path::new(".").join(format!("{cluster}-{seconds}.snap"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_snapshots_are_named_after_the_cluster_and_time() {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        assert_eq!(
            default_snapshot_path("nomad-example", at),
            Path::new("./nomad-example-1767225600.snap")
        );
    }

    #[test]
    fn the_snapshot_flag_help_names_the_default_file() {
        use clap::CommandFactory;
        let cli = crate::cli::Cli::command();
        let roll = cli.find_subcommand("roll").expect("a roll command");
        let flag = roll
            .get_arguments()
            .find(|a| a.get_id() == "snapshot")
            .expect("--snapshot");
        let help = flag.get_help().expect("help").to_string();
        let filled = help
            .replace("<cluster>", "nomad-example")
            .replace("<unix time>", "1767225600");
        let named = filled
            .split_whitespace()
            .find(|w| w.ends_with(".snap"))
            .unwrap_or_else(|| panic!("no file name in {help:?}"));
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_767_225_600);
        let written = default_snapshot_path("nomad-example", at);
        assert_eq!(
            named,
            written.file_name().unwrap().to_str().unwrap(),
            "{help}"
        );
    }

    #[test]
    fn stops_say_why() {
        let stop = Stop::Timeout {
            gate: "new server 3".into(),
            waited: Duration::from_secs(1200),
            missing: "not a voter".into(),
            done: vec![],
        }
        .with_done("deleted instance 3".into());
        assert_eq!(
            stop.reason(),
            "gate \"new server 3\" did not open within 20m: not a voter"
        );
        assert!(matches!(&stop, Stop::Timeout { done, .. } if done.len() == 1));
        assert_eq!(stop.kind(), "gate-timeout");
    }
}
