//! The world the Scheduled Events watcher is tested in, in-process (tests/watch_events_*.rs):
//! the IMDS double serving Scheduled Events (`support::doubles::imds_events`, after Microsoft's
//! documentation) and the Nomad API double answering for a simulated cluster
//! (`support::doubles::nomad_sim`; every exchange is checked against `../shared/nomad-api`, and
//! the double fails the test on one that does not conform).
//!
//! Time is the simulation's: the watcher's clock reads it and its waits advance it, and the
//! IMDS double judges NotBefore by it, so nothing here waits for real time. The service
//! manager is a stand-in that terminates the agent in the simulation (the agent then leaves as
//! Nomad does) and records when.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use run_nomad::events::agent::ServiceControl;
use run_nomad::events::clock::Clock;
use run_nomad::events::imds::{EventsClient, Timeouts};
use run_nomad::events::nomad::{LocalNomad, NomadAccess};
use run_nomad::events::state::StateFile;
use run_nomad::events::watch::{Config, Identity, Watcher};
use serde_json::Value;
use support::doubles::imds::{fixture, ImdsDouble};
use support::doubles::imds_events::ScheduledEvents;
use support::doubles::nomad_api::{NomadApiDouble, RecordedRequest};
use support::doubles::nomad_sim::{Action, JobSpec, SimConfig, Simulation};

/// The simulation's time as the watcher's clock; every wait is recorded.
pub struct SimClock {
    sim: Simulation,
    pub waits: Mutex<Vec<Duration>>,
}

pub fn wall(sim: &Simulation) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(sim.now().unix_nanos() as u64)
}

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        wall(&self.sim)
    }

    fn sleep(&self, duration: Duration) {
        self.waits.lock().unwrap().push(duration);
        self.sim.advance(duration);
    }
}

/// What the stand-in service manager was asked, and when (simulated wall time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub verb: &'static str,
    pub at: SystemTime,
}

/// systemctl for one simulated agent: `stop` terminates it (a server leaves Raft, a client
/// stops) and waits, in simulated time, until it has; `start` is recorded.
pub struct SimService {
    pub sim: Simulation,
    agent: String,
    /// When false, `stop` is only recorded (a stop that never happens, or an agent that keeps
    /// running for the test's sake).
    pub terminates: bool,
    calls: Mutex<Vec<Call>>,
}

impl SimService {
    pub fn new(sim: &Simulation, agent: &str) -> Self {
        Self {
            sim: sim.clone(),
            agent: agent.to_string(),
            terminates: true,
            calls: Mutex::new(Vec::new()),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn stopped_at(&self) -> Option<SystemTime> {
        self.calls().iter().find(|c| c.verb == "stop").map(|c| c.at)
    }
}

impl ServiceControl for SimService {
    fn stop(&self, timeout: Duration) -> Result<(), String> {
        self.calls.lock().unwrap().push(Call {
            verb: "stop",
            at: wall(&self.sim),
        });
        if !self.terminates {
            return Ok(());
        }
        self.sim.act(Action::Terminate(self.agent.clone()));
        let agent = self.agent.clone();
        let gone = self.sim.run_until(timeout, |view| {
            let server = view.servers.iter().find(|s| s.name == agent);
            let node = view.nodes.iter().find(|n| n.name == agent);
            server.is_none_or(|s| !s.running && !s.in_raft) && node.is_none_or(|n| !n.agent_running)
        });
        if gone {
            Ok(())
        } else {
            Err(format!("{agent} did not stop within {timeout:?}"))
        }
    }

    fn start(&self, _timeout: Duration) -> Result<(), String> {
        self.calls.lock().unwrap().push(Call {
            verb: "start",
            at: wall(&self.sim),
        });
        Ok(())
    }

    fn describe(&self) -> String {
        format!("the simulated service of {}", self.agent)
    }

    /// SIGTERM: the agent leaves, which for a client is its drain_on_shutdown.
    fn signal_leave(&self) -> Result<(), String> {
        self.calls.lock().unwrap().push(Call {
            verb: "leave",
            at: wall(&self.sim),
        });
        if self.terminates {
            self.sim.act(Action::Terminate(self.agent.clone()));
        }
        Ok(())
    }

    fn main_pid(&self) -> Result<Option<u32>, String> {
        let view = self.sim.view();
        let server = view.servers.iter().find(|s| s.name == self.agent);
        let node = view.nodes.iter().find(|n| n.name == self.agent);
        let running = server.is_some_and(|s| s.running) || node.is_some_and(|n| n.agent_running);
        Ok(running.then_some(4646))
    }
}

/// A cluster of three servers and three clients with a service job on every client, an IMDS
/// double on the same clock, and a state directory.
pub struct World {
    pub sim: Simulation,
    pub nomad: NomadApiDouble,
    imds: ImdsDouble,
    pub events: ScheduledEvents,
    pub clock: SimClock,
    dir: tempfile::TempDir,
}

impl World {
    pub fn new() -> Self {
        let sim = Simulation::new(SimConfig::default());
        sim.start_running(&["s0", "s1", "s2"], &["c0", "c1", "c2"]);
        sim.add_job(JobSpec::service("web", 6));
        sim.advance(Duration::from_secs(10));
        let nomad = NomadApiDouble::serve(&sim);
        let imds = ImdsDouble::start(fixture("instance.json"));
        let events = imds.scheduled_events();
        let clock_sim = sim.clone();
        events.set_clock(move || wall(&clock_sim));
        let clock = SimClock {
            sim: sim.clone(),
            waits: Mutex::new(Vec::new()),
        };
        Self {
            sim,
            nomad,
            imds,
            events,
            clock,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn now(&self) -> SystemTime {
        wall(&self.sim)
    }

    pub fn state_file(&self) -> StateFile {
        StateFile::new(self.dir.path().join("state.json"))
    }

    pub fn config(&self, server: bool, client: bool) -> Config {
        Config {
            server,
            client,
            ..Config::default()
        }
    }

    /// The API of agent `agent`'s own HTTP listener, with this ACL token.
    pub fn local_nomad(&self, agent: &str, token: Option<&str>) -> LocalNomad {
        LocalNomad::new(&NomadAccess {
            address: self.nomad.agent_url(agent).parse().unwrap(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            tls_server_name: None,
            token: token.map(|t| support::secret::Secret::new(t.to_string())),
        })
        .unwrap()
    }

    /// A watcher for the VM `vm` whose agent is `agent`, stopped and started by `service`,
    /// draining through `nomad`.
    pub fn watcher_with<'a>(
        &'a self,
        config: Config,
        vm: &str,
        agent: &str,
        service: &'a dyn ServiceControl,
        nomad: Option<LocalNomad>,
    ) -> Watcher<'a> {
        Watcher::new(
            config,
            Identity {
                vm_name: vm.to_string(),
                agent_name: agent.to_string(),
            },
            EventsClient::new(self.imds.url(), Timeouts::default()).unwrap(),
            nomad,
            service,
            &self.clock,
            self.state_file(),
        )
    }

    /// [`World::watcher_with`] the agent's own API when `config` is a client's.
    pub fn watcher<'a>(
        &'a self,
        config: Config,
        vm: &str,
        agent: &str,
        service: &'a SimService,
    ) -> Watcher<'a> {
        let nomad = config.client.then(|| self.local_nomad(agent, None));
        self.watcher_with(config, vm, agent, service, nomad)
    }

    /// Live allocations on a node.
    pub fn live_allocs(&self, node: &str) -> usize {
        let view = self.sim.view();
        view.nodes
            .iter()
            .find(|n| n.name == node)
            .map_or(0, |n| n.live_allocs)
    }

    pub fn events_requests(&self, method: &str) -> Vec<RecordedRequest> {
        self.imds
            .requests()
            .into_iter()
            .filter(|r| r.path == "/metadata/scheduledevents" && r.method == method)
            .collect()
    }

    pub fn nomad_requests(&self, method: &str, path_part: &str) -> Vec<RecordedRequest> {
        self.nomad
            .requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .collect()
    }
}

/// Polls up to `polls` times until `done`.
pub fn poll_until(
    watcher: &mut Watcher<'_>,
    clock: &SimClock,
    polls: usize,
    done: impl Fn() -> bool,
) {
    for _ in 0..polls {
        let wait = watcher.poll_once();
        if done() {
            return;
        }
        clock.sleep(wait);
    }
    assert!(done(), "not done after {polls} polls");
}

pub fn body(request: &RecordedRequest) -> Value {
    serde_json::from_str(&request.body).unwrap()
}
