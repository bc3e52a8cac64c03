//! The rig `roll` is tested on: the example cluster applied to the ARM double, whose instance
//! events drive a simulated Nomad cluster (servers boot, bootstrap and elect; clients register
//! and run jobs), served by the Nomad API double; then a new image applied, so every instance
//! is on an old model. `roll` runs in-process with a clock that moves the simulation's virtual
//! time, so gate timeouts, soaks and drain deadlines pass without any wall-clock wait and every
//! run is the same.
//!
//! [`Properties`] watches every simulated step (and the journal of instance deletions) for the
//! issue's safety properties.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use cluster_deploy::auth::Env;
use cluster_deploy::cli::Cli;
use cluster_deploy::commands::{run_with_hooks, Clock, Hooks};
use serde_json::Value;
use support::doubles::arm::SUBSCRIPTION;
use support::doubles::nomad_api::NomadApiDouble;
use support::doubles::nomad_sim::{
    AutopilotSettings, ClusterView, JobSpec, Role, ServerPhase, SimConfig, SimEvent, Simulation,
};

use super::common::deploy::{Deploy, CLIENT_ID, CLIENT_SECRET};

pub const SERVERS: &str = "nomad-example-servers";
pub const CLIENTS: &str = "nomad-example-clients";
pub const OLD_IMAGE: &str = "images/nomad-1.10.5\"";
pub const NEW_IMAGE: &str = "images/nomad-1.10.5-r2\"";

/// Virtual time for a roll: every wait of the roll advances the simulation.
pub struct SimClock(pub Simulation);

impl Clock for SimClock {
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.now().millis())
    }

    fn sleep(&self, d: Duration, interrupted: &AtomicBool) {
        if !interrupted.load(Ordering::SeqCst) {
            self.0.advance(d);
        }
    }

    /// The calendar time the simulation stands for, the ARM double's clock too.
    fn wall(&self) -> std::time::SystemTime {
        self.0.now().system_time()
    }
}

/// How the rig's cluster starts.
pub struct RigOptions {
    /// The Nomad version the first agents run, and the one the new image's agents run.
    pub old_version: &'static str,
    pub new_version: &'static str,
    pub jobs: Vec<JobSpec>,
    /// Virtual time every Nomad API request takes.
    pub advance_per_request: Duration,
    /// The cluster file's `cluster_size` (3, as in the example).
    pub cluster_size: usize,
    /// Autopilot's `CleanupDeadServers` (on by default, as in Nomad): off, only the roll
    /// removes a dead server's peer.
    pub cleanup_dead_servers: bool,
    /// Apply a new image after the cluster is up, so every instance is on an old model (off:
    /// every instance stays on the latest model, as after a secret rotation).
    pub new_image: bool,
    /// TLS with the CA cluster-deploy makes and keeps in the vault (which `rotate --ca`
    /// rotates) rather than the test's own CA files.
    pub generated_ca: bool,
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            old_version: "1.9.7",
            new_version: "1.10.5",
            jobs: vec![
                JobSpec::service("web", 6),
                JobSpec::system("logs"),
                JobSpec::batch("report", 2, Some(Duration::from_secs(90))),
            ],
            advance_per_request: Duration::from_millis(50),
            cleanup_dead_servers: true,
            cluster_size: 3,
            new_image: true,
            generated_ca: false,
        }
    }
}

pub struct Rig {
    pub deploy: Deploy,
    pub sim: Simulation,
    pub nomad: NomadApiDouble,
    pub properties: Properties,
    /// The servers and clients the first apply made (VM ids = agent names).
    pub old_servers: Vec<String>,
    pub old_clients: Vec<String>,
    /// The leader before the roll.
    pub old_leader: String,
    runs: Mutex<u32>,
}

/// What one in-process roll did.
pub struct Outcome {
    pub result: anyhow::Result<()>,
    pub stdout: String,
    /// The `--json` events, one per line.
    pub events: Vec<Value>,
}

impl Outcome {
    pub fn kinds(&self) -> Vec<&str> {
        self.events
            .iter()
            .filter_map(|e| e["event"].as_str())
            .collect()
    }

    pub fn of(&self, kind: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == kind).collect()
    }

    pub fn stopped(&self) -> &Value {
        self.of("stopped")
            .last()
            .copied()
            .unwrap_or_else(|| panic!("no stopped event:\n{}", self.stdout))
    }

    pub fn ok(&self) -> &Self {
        if let Err(e) = &self.result {
            panic!("roll failed: {e:#}\n{}", self.stdout);
        }
        self
    }

    pub fn error(&self) -> String {
        match &self.result {
            Ok(()) => panic!("the roll succeeded:\n{}", self.stdout),
            Err(e) => format!("{e:#}"),
        }
    }
}

impl Rig {
    /// The example cluster (`options.cluster_size` servers, 6 clients) running
    /// `options.jobs`, with a new image applied.
    pub fn new(options: RigOptions) -> Self {
        let size = options.cluster_size;
        let size_line = format!("cluster_size = {size}");
        let tls = if options.generated_ca {
            "\n[nomad.tls]\nenabled = true\n"
        } else {
            ""
        };
        let deploy = Deploy::example(&[size_line.as_str()], tls);
        let sim = Simulation::new(SimConfig {
            version: options.old_version.to_string(),
            // A request takes a little virtual time, as a real one takes real time.
            advance_per_request: options.advance_per_request,
            // run-nomad's --num-servers: the cluster_size.
            bootstrap_expect: size,
            // What run-nomad configures: autopilot never prunes below cluster_size voters.
            autopilot: AutopilotSettings {
                min_quorum: size as u64,
                cleanup_dead_servers: options.cleanup_dead_servers,
                ..AutopilotSettings::default()
            },
            ..SimConfig::default()
        });
        sim.map_scale_set(SERVERS, Role::Server);
        sim.map_scale_set(CLIENTS, Role::Client);
        deploy.arm.set_instance_events(Arc::new(sim.clone()));
        // Azure's clock is the simulation's: instances report the virtual time they were made.
        let clock = sim.clone();
        deploy
            .arm
            .set_clock(Arc::new(move || clock.now().system_time()));
        if options.generated_ca {
            // No TLS Nomad double can hold a certificate of a CA apply has yet to make, so the
            // ACL bootstrap after the deployment fails (as in tests/ca_rotation.rs); the scale
            // sets are deployed, and the simulated cluster needs no token.
            let run = deploy.run(&["apply"]);
            assert!(
                run.code == 0 || run.stderr.contains("the deployment succeeded, but"),
                "{}",
                run.stderr
            );
        } else {
            deploy.ok(&["apply"]);
        }
        if let Some(kv) = &deploy.stack.kv {
            // Key Vault's clock is Azure's too: the versions a rotation writes carry the
            // virtual time as `created`, which is what rotate prints for the roll.
            let clock = sim.clone();
            kv.set_clock(Arc::new(move || clock.now().system_time()));
        }
        assert!(
            sim.run_until(Duration::from_secs(300), |v| {
                v.leader.is_some()
                    && v.healthy_voters == size
                    && v.nodes.len() == 6
                    && v.nodes.iter().all(|n| n.status.as_str() == "ready")
            }),
            "the cluster never came up: {:?}",
            sim.view()
        );
        for job in options.jobs {
            sim.add_job(job);
        }
        sim.advance(Duration::from_secs(30));
        let view = sim.view();
        let old_servers = view.servers.iter().map(|s| s.name.clone()).collect();
        let old_clients = view.nodes.iter().map(|n| n.name.clone()).collect();
        let old_leader = view.leader.clone().expect("a leader");
        if options.new_image {
            // The new image: the scale sets' models change, every instance is now on an old one.
            let text = std::fs::read_to_string(&deploy.config).unwrap();
            assert!(text.contains(OLD_IMAGE), "{text}");
            std::fs::write(&deploy.config, text.replace(OLD_IMAGE, NEW_IMAGE)).unwrap();
            deploy.ok(&["apply"]);
            sim.set_boot_version(options.new_version);
        }
        assert!(
            deploy.arm.instances(SERVERS).len() == size && deploy.arm.instances(CLIENTS).len() == 6
        );
        let nomad = NomadApiDouble::serve(&sim);
        let properties = Properties::install(&sim, size);
        Self {
            deploy,
            sim,
            nomad,
            properties,
            old_servers,
            old_clients,
            old_leader,
            runs: Mutex::new(0),
        }
    }

    fn env(&self) -> Env {
        Env(BTreeMap::from([
            (
                "ARM_TENANT_ID".to_string(),
                "contoso.onmicrosoft.com".to_string(),
            ),
            ("ARM_CLIENT_ID".to_string(), CLIENT_ID.to_string()),
            ("ARM_CLIENT_SECRET".to_string(), CLIENT_SECRET.to_string()),
        ]))
    }

    /// The command line of a roll against the doubles, with `extra` flags (which replace the
    /// defaults of `--check-interval` and `--soak` when given).
    pub fn args(&self, extra: &[&str]) -> Vec<String> {
        let run = {
            let mut runs = self.runs.lock().unwrap();
            *runs += 1;
            *runs
        };
        let snapshot = self
            .deploy
            .dir
            .path()
            .join(format!("before-roll-{run}.snap"));
        let mut args: Vec<String> = vec!["cluster-deploy".into(), "roll".into()];
        args.extend(self.doubles_args());
        args.extend(
            [
                "--nomad-address",
                self.nomad.url(),
                "--snapshot",
                snapshot.to_str().unwrap(),
            ]
            .map(str::to_string),
        );
        for (flag, default) in [("--check-interval", "10s"), ("--soak", "30s")] {
            if !extra.contains(&flag) {
                args.extend([flag.to_string(), default.to_string()]);
            }
        }
        if !extra.contains(&"--dry-run") {
            args.push("--yes".to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Runs `roll` in-process on virtual time; `interrupt` is the SIGINT flag.
    pub fn roll_with(&self, extra: &[&str], interrupt: Arc<AtomicBool>) -> Outcome {
        let mut args = self.args(extra);
        args.push("--json".to_string());
        let (result, stdout) = self.run_in_process(args, interrupt);
        let events = stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line: {e}: {l}"))
            })
            .collect();
        Outcome {
            result,
            stdout,
            events,
        }
    }

    /// Runs another command (`rotate ...`) in-process on the same virtual clock, with the
    /// doubles' endpoints; returns its result and output.
    pub fn command(&self, command: &[&str]) -> (anyhow::Result<()>, String) {
        let mut args: Vec<String> = ["cluster-deploy"]
            .iter()
            .chain(command)
            .map(|s| s.to_string())
            .collect();
        args.extend(self.doubles_args());
        args.extend(self.deploy.stack.args(command));
        let (result, stdout) = self.run_in_process(args, Arc::new(AtomicBool::new(false)));
        self.deploy.stack.assert_no_secret("stdout", &stdout);
        (result, stdout)
    }

    /// `--config` and the doubles' endpoints, as every in-process command gets them (no Azure
    /// CLI, an IMDS nobody answers, fast polls and retries).
    fn doubles_args(&self) -> Vec<String> {
        [
            "--config",
            self.deploy.config.to_str().unwrap(),
            "--arm-endpoint",
            self.deploy.arm.url(),
            "--login-endpoint",
            self.deploy.login.url(),
            "--imds-endpoint",
            "http://127.0.0.1:9",
            "--az-program",
            "/nonexistent/az",
            "--subscription",
            self.deploy.arm.subscription(),
            "--poll-interval-ms",
            "1",
            "--retry-delay-ms",
            "1",
        ]
        .map(str::to_string)
        .to_vec()
    }

    /// Runs the command line `args` in-process on the simulation's clock (`interrupted` is its
    /// SIGINT flag); returns its result and stdout.
    fn run_in_process(
        &self,
        args: Vec<String>,
        interrupted: Arc<AtomicBool>,
    ) -> (anyhow::Result<()>, String) {
        let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"));
        let hooks = Hooks {
            clock: Arc::new(SimClock(self.sim.clone())),
            interrupted,
            nomad_env: Some(BTreeMap::new()),
        };
        let mut out = Vec::new();
        let result = run_with_hooks(cli, &self.env(), &mut out, &mut std::io::empty(), hooks);
        (result, String::from_utf8(out).unwrap())
    }

    pub fn roll(&self, extra: &[&str]) -> Outcome {
        self.roll_with(extra, Arc::new(AtomicBool::new(false)))
    }

    /// `status --json` through the binary (ARM and the Nomad double).
    pub fn status(&self) -> Value {
        let run = self
            .deploy
            .ok(&["status", "--json", "--nomad-address", self.nomad.url()]);
        serde_json::from_str(&run.stdout).unwrap()
    }

    /// A request to a scale set through the ARM double (Compute's 2024-11-01), as another
    /// client of Azure sends it (a previous run, or an operator's `az vmss ...`), not waiting
    /// for its long-running operation. Returns the status code.
    pub fn scale_set_request(
        &self,
        scale_set: &str,
        method: reqwest::Method,
        suffix: &str,
        body: Value,
    ) -> u16 {
        let url = format!(
            "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/nomad-example/providers/Microsoft.Compute/virtualMachineScaleSets/{scale_set}{suffix}?api-version=2024-11-01",
            self.deploy.arm.url()
        );
        reqwest::blocking::Client::new()
            .request(method, url)
            .bearer_auth(self.deploy.arm.token())
            .json(&body)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    /// VM ids of the instances that remain of the first apply.
    pub fn old_instances_left(&self) -> Vec<String> {
        [SERVERS, CLIENTS]
            .iter()
            .flat_map(|set| self.deploy.arm.instances(set))
            .map(|i| i.vm_id)
            .filter(|vm| self.old_servers.contains(vm) || self.old_clients.contains(vm))
            .collect()
    }

    /// Names of the agents whose instances the ARM double deleted, in order.
    pub fn deleted(&self) -> Vec<String> {
        self.sim
            .journal()
            .into_iter()
            .filter_map(|(_, e)| match e {
                SimEvent::InstanceDeleted { name, .. } => Some(name),
                _ => None,
            })
            .collect()
    }

    /// The journal's safety checks plus every per-step violation; panics listing them.
    pub fn assert_properties(&self, faults: bool) {
        let mut problems = self.properties.violations();
        problems.extend(journal_violations(
            &self.sim,
            &self.old_servers,
            &self.old_leader,
            !faults,
        ));
        assert!(
            problems.is_empty(),
            "safety properties violated:\n{}",
            problems.join("\n")
        );
    }

    pub fn snapshot(&self, run: u32) -> PathBuf {
        self.deploy
            .dir
            .path()
            .join(format!("before-roll-{run}.snap"))
    }
}

/// Checked at every simulated step (an observer): healthy voters never below the cluster size
/// (once a fault has fired: never below quorum), and never two servers changing at once.
pub struct Properties {
    violations: Arc<Mutex<Vec<String>>>,
    /// A fault test: the relaxed property holds from the fault's first action on.
    faults: Arc<AtomicBool>,
    pub fewest_healthy_voters: Arc<Mutex<usize>>,
    pub most_changing: Arc<Mutex<usize>>,
}

impl Properties {
    pub fn install(sim: &Simulation, cluster_size: usize) -> Self {
        let properties = Self {
            violations: Arc::default(),
            faults: Arc::new(AtomicBool::new(false)),
            fewest_healthy_voters: Arc::new(Mutex::new(usize::MAX)),
            most_changing: Arc::new(Mutex::new(0)),
        };
        let violations = properties.violations.clone();
        let faults = properties.faults.clone();
        let fewest = properties.fewest_healthy_voters.clone();
        let most = properties.most_changing.clone();
        sim.observe(move |view: &ClusterView| {
            let mut found = Vec::new();
            let at = view.at.millis() as f64 / 1000.0;
            let fault_fired = faults.load(Ordering::SeqCst) && view.actions_applied > 0;
            if !fault_fired && view.healthy_voters < cluster_size {
                found.push(format!(
                    "at {at}s: {} healthy voters, fewer than the cluster size {cluster_size}",
                    view.healthy_voters
                ));
            }
            if view.voters > 0 && view.live_voters < view.quorum {
                found.push(format!(
                    "at {at}s: {} live voters of {}, below quorum {}",
                    view.live_voters, view.voters, view.quorum
                ));
            }
            let changing: Vec<&str> = view
                .servers
                .iter()
                .filter(|s| match s.phase {
                    ServerPhase::Booting | ServerPhase::Leaving => true,
                    ServerPhase::Running => !(s.voter && s.healthy),
                    ServerPhase::Left | ServerPhase::Vanished => false,
                })
                .map(|s| s.name.as_str())
                .collect();
            if changing.len() > 1 {
                found.push(format!(
                    "at {at}s: {} servers changing at once: {}",
                    changing.len(),
                    changing.join(", ")
                ));
            }
            {
                let mut f = fewest.lock().unwrap();
                *f = (*f).min(view.healthy_voters);
                let mut m = most.lock().unwrap();
                *m = (*m).max(changing.len());
            }
            if !found.is_empty() {
                let mut v = violations.lock().unwrap();
                // One report per kind is enough to read; keep the first few.
                if v.len() < 20 {
                    v.extend(found);
                }
            }
        });
        properties
    }

    /// A fault test: from the first simulated [`support::doubles::nomad_sim::Action`] that fires
    /// (the fault's trigger), not before, healthy voters may drop below the cluster size (never
    /// below quorum).
    pub fn fault_armed(&self) {
        self.faults.store(true, Ordering::SeqCst);
    }

    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }
}

/// The journal's checks: no client deleted while it still ran allocations before its drain
/// deadline; each server deleted while it led was the last initial server standing; with
/// `leader_last`, the initial leader is the last initial server deleted.
pub fn journal_violations(
    sim: &Simulation,
    initial_servers: &[String],
    initial_leader: &str,
    leader_last: bool,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut leader: Option<String> = None;
    let mut standing: Vec<String> = initial_servers.to_vec();
    let mut deleted_initial = Vec::new();
    for (at, event) in sim.journal() {
        let at = at.millis() as f64 / 1000.0;
        match event {
            SimEvent::LeaderElected { name, .. } => leader = Some(name),
            SimEvent::LeaderLost { .. } => leader = None,
            SimEvent::InstanceDeleted {
                name,
                running_allocs,
                drain_deadline_passed,
                ..
            } => {
                if running_allocs > 0 && !drain_deadline_passed {
                    problems.push(format!(
                        "at {at}s: client {name} deleted with {running_allocs} allocation(s) still running, before its drain deadline"
                    ));
                }
                if standing.contains(&name) {
                    standing.retain(|s| *s != name);
                    deleted_initial.push(name.clone());
                    if leader.as_deref() == Some(name.as_str()) && !standing.is_empty() {
                        problems.push(format!(
                            "at {at}s: the leader {name} was deleted while old servers {standing:?} remained"
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if leader_last
        && deleted_initial.len() == initial_servers.len()
        && deleted_initial.last().map(String::as_str) != Some(initial_leader)
    {
        problems.push(format!(
            "the initial leader {initial_leader} was not the last old server replaced: {deleted_initial:?}"
        ));
    }
    problems
}
