//! The Scheduled Events watcher against the IMDS double serving Scheduled Events
//! (`support::doubles::imds_events`, after Microsoft's documentation) and the Nomad API double
//! answering for a simulated cluster (`support::doubles::nomad_sim`; every exchange is checked
//! against `../shared/nomad-api`, and the double fails the test on one that does not conform).
//!
//! Time is the simulation's: the watcher's clock reads it and its waits advance it, and the
//! IMDS double judges NotBefore by it, so nothing here waits for real time. The service
//! manager is a stand-in that terminates the agent in the simulation (the agent then leaves as
//! Nomad does) and records when.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use run_nomad::events::agent::ServiceControl;
use run_nomad::events::clock::Clock;
use run_nomad::events::imds::{approval_body, EventsClient, Timeouts};
use run_nomad::events::nomad::{LocalNomad, NomadAccess};
use run_nomad::events::state::{Handled, State, StateFile};
use run_nomad::events::timeline::Margins;
use run_nomad::events::watch::{Config, Identity, Watcher};
use serde_json::Value;
use support::doubles::imds::{fixture, ImdsDouble, Reply};
use support::doubles::imds_events::{Event, EventStatus, ScheduledEvents};
use support::doubles::nomad_api::{NomadApiDouble, RecordedRequest};
use support::doubles::nomad_sim::{Action, Fault, JobSpec, SimConfig, Simulation};

/// The simulation's time as the watcher's clock; every wait is recorded.
struct SimClock {
    sim: Simulation,
    waits: Mutex<Vec<Duration>>,
}

fn wall(sim: &Simulation) -> SystemTime {
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
struct Call {
    verb: &'static str,
    at: SystemTime,
}

/// systemctl for one simulated agent: `stop` terminates it (a server leaves Raft, a client
/// stops) and waits, in simulated time, until it has; `start` is recorded.
struct SimService {
    sim: Simulation,
    agent: String,
    /// When false, `stop` is only recorded (a stop that never happens, or an agent that keeps
    /// running for the test's sake).
    terminates: bool,
    calls: Mutex<Vec<Call>>,
}

impl SimService {
    fn new(sim: &Simulation, agent: &str) -> Self {
        Self {
            sim: sim.clone(),
            agent: agent.to_string(),
            terminates: true,
            calls: Mutex::new(Vec::new()),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn stopped_at(&self) -> Option<SystemTime> {
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
struct World {
    sim: Simulation,
    nomad: NomadApiDouble,
    imds: ImdsDouble,
    events: ScheduledEvents,
    clock: SimClock,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> Self {
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

    fn now(&self) -> SystemTime {
        wall(&self.sim)
    }

    fn state_file(&self) -> StateFile {
        StateFile::new(self.dir.path().join("state.json"))
    }

    fn config(&self, server: bool, client: bool) -> Config {
        Config {
            server,
            client,
            ..Config::default()
        }
    }

    /// The API of agent `agent`'s own HTTP listener, with this ACL token.
    fn local_nomad(&self, agent: &str, token: Option<&str>) -> LocalNomad {
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
    fn watcher_with<'a>(
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
    fn watcher<'a>(
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
    fn live_allocs(&self, node: &str) -> usize {
        let view = self.sim.view();
        view.nodes
            .iter()
            .find(|n| n.name == node)
            .map_or(0, |n| n.live_allocs)
    }

    fn events_requests(&self, method: &str) -> Vec<RecordedRequest> {
        self.imds
            .requests()
            .into_iter()
            .filter(|r| r.path == "/metadata/scheduledevents" && r.method == method)
            .collect()
    }

    fn nomad_requests(&self, method: &str, path_part: &str) -> Vec<RecordedRequest> {
        self.nomad
            .requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .collect()
    }
}

/// Polls up to `polls` times until `done`.
fn poll_until(watcher: &mut Watcher<'_>, clock: &SimClock, polls: usize, done: impl Fn() -> bool) {
    for _ in 0..polls {
        let wait = watcher.poll_once();
        if done() {
            return;
        }
        clock.sleep(wait);
    }
    assert!(done(), "not done after {polls} polls");
}

fn body(request: &RecordedRequest) -> Value {
    serde_json::from_str(&request.body).unwrap()
}

#[test]
fn a_terminate_for_this_client_drains_it_stops_nomad_then_approves() {
    let world = World::new();
    assert!(world.live_allocs("c0") > 0, "the job runs on c0");
    let service = SimService::new(&world.sim, "c0");
    let mut watcher = world.watcher(world.config(false, true), "nomad-clients_0", "c0", &service);
    let not_before = world.now() + Duration::from_secs(300);
    world.events.schedule(Event::terminate(
        "6a0b1c2d-0000-4000-8000-000000000001",
        "nomad-clients_0",
        not_before,
    ));
    poll_until(&mut watcher, &world.clock, 5, || {
        !world.events.approvals().is_empty()
    });

    // Marked ineligible, then drained with a deadline that ends before NotBefore, less the
    // reserves for the stop (30 s), killed allocations (10 s) and the approval (5 s).
    let eligibility = world.nomad_requests("POST", "/eligibility");
    assert_eq!(
        body(&eligibility[0]),
        serde_json::json!({ "Eligibility": "ineligible" })
    );
    let drains = world.nomad_requests("POST", "/drain");
    assert_eq!(drains.len(), 1, "one drain");
    let spec = &body(&drains[0])["DrainSpec"];
    let deadline = Duration::from_nanos(spec["Deadline"].as_u64().unwrap());
    assert!(
        deadline <= Duration::from_secs(255) && deadline >= Duration::from_secs(250),
        "{deadline:?}"
    );
    assert_eq!(spec["IgnoreSystemJobs"], false);
    assert!(body(&drains[0])["Meta"]["message"]
        .as_str()
        .unwrap()
        .contains("6a0b1c2d-0000-4000-8000-000000000001"));
    // The allocations moved before Nomad was stopped, and the stop came before the approval.
    let approval = &world.events.approvals()[0];
    let stopped = service.stopped_at().expect("Nomad was stopped");
    assert!(stopped <= approval.at);
    assert!(approval.at < not_before, "approved before NotBefore");
    assert_eq!(world.live_allocs("c0"), 0);
    let node = world.sim.node_named("c0").unwrap();
    assert!(!node.eligible);
    // The documented approval body, exactly.
    let posts = world.events_requests("POST");
    assert_eq!(posts.len(), 1);
    assert_eq!(
        posts[0].body,
        r#"{"StartRequests":[{"EventId":"6a0b1c2d-0000-4000-8000-000000000001"}]}"#
    );
    assert_eq!(posts[0].header("metadata"), Some("true"));
    assert_eq!(posts[0].query_param("api-version"), Some("2020-07-01"));
    assert_eq!(
        world.events.events()[0].status,
        EventStatus::Started,
        "the approval let Azure go ahead"
    );
    let state = world.state_file().load();
    let handled = state.get("6a0b1c2d-0000-4000-8000-000000000001").unwrap();
    assert!(handled.finished && handled.stopped_nomad);
    assert_eq!(
        handled.drained_node.as_deref(),
        Some(world.sim.node_named("c0").unwrap().id.as_str())
    );
}

#[test]
fn a_terminate_for_this_server_stops_it_so_it_leaves_raft_then_approves() {
    let world = World::new();
    let service = SimService::new(&world.sim, "s1");
    let mut watcher = world.watcher(world.config(true, false), "nomad-servers_1", "s1", &service);
    let not_before = world.now() + Duration::from_secs(300);
    world
        .events
        .schedule(Event::terminate("e-server", "nomad-servers_1", not_before));
    poll_until(&mut watcher, &world.clock, 5, || {
        !world.events.approvals().is_empty()
    });
    let view = world.sim.view();
    let s1 = view.servers.iter().find(|s| s.name == "s1").unwrap();
    assert!(!s1.in_raft && !s1.running, "{s1:?}");
    assert_eq!(
        view.voters, 2,
        "the peer set shrank: quorum is counted right"
    );
    assert!(view.leader.is_some());
    assert!(service.stopped_at().unwrap() <= world.events.approvals()[0].at);
    assert!(world.events.approvals()[0].at < not_before);
    assert!(
        world.nomad.requests().is_empty(),
        "a server needs no Nomad API call to leave"
    );
}

#[test]
fn a_spot_eviction_uses_its_thirty_seconds_and_forces_what_does_not_move() {
    let world = World::new();
    world.sim.inject(Fault::DrainNeverFinishes {
        node: "c1".to_string(),
    });
    let service = SimService::new(&world.sim, "c1");
    let mut watcher = world.watcher(world.config(false, true), "spot_7", "c1", &service);
    let not_before = world.now() + Duration::from_secs(30);
    world
        .events
        .schedule(Event::preempt("p-1", "spot_7", not_before));
    poll_until(&mut watcher, &world.clock, 5, || {
        !world.events.approvals().is_empty()
    });
    let drain = body(&world.nomad_requests("POST", "/drain")[0]);
    let deadline = drain["DrainSpec"]["Deadline"].as_i64().unwrap();
    // 25 s to approve by: a quarter to stop, a quarter for killed allocations, the rest drains.
    assert!(
        (11_000_000_000..=12_500_000_000).contains(&deadline),
        "{deadline}"
    );
    let approval = &world.events.approvals()[0];
    assert!(approval.at < not_before, "approved before NotBefore");
    assert!(approval.at <= not_before - Duration::from_secs(5));
    // The drain never moved anything, so its deadline stopped the allocations.
    assert_eq!(world.live_allocs("c1"), 0);
}

#[test]
fn a_preempt_with_no_time_left_forces_the_drain_and_still_approves() {
    let world = World::new();
    let service = SimService::new(&world.sim, "c2");
    let mut watcher = world.watcher(world.config(false, true), "spot_2", "c2", &service);
    // Seen late: one second before NotBefore.
    let not_before = world.now() + Duration::from_secs(1);
    world
        .events
        .schedule(Event::preempt("p-late", "spot_2", not_before));
    poll_until(&mut watcher, &world.clock, 3, || {
        !service.calls().is_empty()
    });
    let drain = body(&world.nomad_requests("POST", "/drain")[0]);
    assert_eq!(
        drain["DrainSpec"]["Deadline"], -1_000_000_000i64,
        "force now"
    );
    // NotBefore passed while Nomad stopped: Azure has started the event, so an approval is
    // either made in time or not needed; the watcher never waits beyond NotBefore for it.
    let state = world.state_file().load();
    assert!(state.get("p-late").unwrap().finished);
}

#[test]
fn events_for_other_vms_and_freeze_or_reboot_are_left_alone() {
    let world = World::new();
    let service = SimService::new(&world.sim, "c0");
    let mut watcher = world.watcher(world.config(false, true), "nomad-clients_0", "c0", &service);
    let later = world.now() + Duration::from_secs(600);
    world
        .events
        .schedule(Event::terminate("other", "nomad-clients_1", later));
    world.events.schedule(Event::freeze(
        "freeze",
        &["nomad-clients_0", "nomad-clients_1"],
        later,
    ));
    world
        .events
        .schedule(Event::reboot("reboot", "nomad-clients_0", later));
    for _ in 0..5 {
        let wait = watcher.poll_once();
        world.clock.sleep(wait);
    }
    assert!(world.events.approvals().is_empty());
    assert!(service.calls().is_empty());
    assert!(world.nomad.requests().is_empty());
    assert!(world.sim.node_named("c0").unwrap().eligible);
    assert!(world.state_file().load().handled.is_empty());
}

#[test]
fn imds_errors_are_retried_with_backoff_and_retry_after() {
    let world = World::new();
    let service = SimService::new(&world.sim, "s2");
    let mut watcher = world.watcher(world.config(true, false), "nomad-servers_2", "s2", &service);
    world.events.schedule(Event::terminate(
        "e-retry",
        "nomad-servers_2",
        world.now() + Duration::from_secs(300),
    ));
    world.events.script([
        Reply::Status(500),
        Reply::Throttled {
            retry_after_secs: 4,
        },
        Reply::Status(410),
        Reply::Status(404),
    ]);
    poll_until(&mut watcher, &world.clock, 8, || {
        !world.events.approvals().is_empty()
    });
    let gets = world.events_requests("GET");
    assert_eq!(gets.len(), 5, "four failures, then the document");
    let waits = world.clock.waits.lock().unwrap().clone();
    // After the 500: jittered backoff from the 1 s poll interval; after the 429: its
    // Retry-After; then growing backoff again.
    assert!(
        waits[0] >= Duration::from_millis(500) && waits[0] <= Duration::from_secs(1),
        "{waits:?}"
    );
    assert_eq!(waits[1], Duration::from_secs(4), "{waits:?}");
    assert!(
        waits[2] >= Duration::from_secs(2) && waits[2] <= Duration::from_secs(4),
        "{waits:?}"
    );
    assert!(waits.iter().all(|w| *w <= Duration::from_secs(30)));
}

#[test]
fn an_approval_that_fails_is_retried_until_it_goes_through() {
    let world = World::new();
    /// Stops the agent, and meanwhile IMDS starts failing: the approval meets the faults.
    struct FaultsWhileStopping<'a> {
        inner: SimService,
        events: &'a ScheduledEvents,
    }
    impl ServiceControl for FaultsWhileStopping<'_> {
        fn stop(&self, timeout: Duration) -> Result<(), String> {
            self.events.script([
                Reply::Status(503),
                Reply::Throttled {
                    retry_after_secs: 2,
                },
            ]);
            self.inner.stop(timeout)
        }
        fn start(&self, timeout: Duration) -> Result<(), String> {
            self.inner.start(timeout)
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
        fn signal_leave(&self) -> Result<(), String> {
            self.inner.signal_leave()
        }
        fn main_pid(&self) -> Result<Option<u32>, String> {
            self.inner.main_pid()
        }
    }
    let service = FaultsWhileStopping {
        inner: SimService::new(&world.sim, "s0"),
        events: &world.events,
    };
    let mut watcher = world.watcher_with(
        world.config(true, false),
        "nomad-servers_0",
        "s0",
        &service,
        None,
    );
    let not_before = world.now() + Duration::from_secs(300);
    world
        .events
        .schedule(Event::terminate("e-post", "nomad-servers_0", not_before));
    watcher.poll_once();
    let posts = world.events_requests("POST");
    assert_eq!(posts.len(), 3, "503, 429, then accepted");
    assert!(posts.iter().all(|p| p.body == posts[0].body));
    assert_eq!(world.events.approvals().len(), 1);
    let waits = world.clock.waits.lock().unwrap().clone();
    assert!(
        waits.contains(&Duration::from_secs(2)),
        "Retry-After honoured: {waits:?}"
    );
    assert!(world.events.approvals()[0].at < not_before);
}

#[test]
fn a_client_without_a_token_drains_itself_on_sigterm_then_is_stopped_and_approved() {
    // An ACL cluster whose watcher has no token: the API drain is not possible, so the agent's
    // own drain_on_shutdown does it, started by SIGTERM (leave_on_terminate).
    let world = World::new();
    assert!(world.live_allocs("c1") > 0, "the job runs on c1");
    let service = SimService::new(&world.sim, "c1");
    let config = Config {
        self_drain: true,
        ..world.config(false, true)
    };
    let mut watcher = world.watcher_with(config, "nomad-clients_1", "c1", &service, None);
    let not_before = world.now() + Duration::from_secs(300);
    world
        .events
        .schedule(Event::terminate("e-self", "nomad-clients_1", not_before));
    poll_until(&mut watcher, &world.clock, 5, || {
        !world.events.approvals().is_empty()
    });
    // No API call at all: the agent drained its own node.
    assert!(world.nomad_requests("POST", "/drain").is_empty());
    assert!(world.nomad_requests("POST", "/eligibility").is_empty());
    let calls = service.calls();
    let verbs: Vec<&str> = calls.iter().map(|c| c.verb).collect();
    assert_eq!(
        verbs,
        ["leave", "stop"],
        "SIGTERM first, the stop keeps it down"
    );
    // The stop came once the agent had exited with its allocations moved, well before the
    // approval and NotBefore.
    assert_eq!(world.live_allocs("c1"), 0);
    let approval = &world.events.approvals()[0];
    assert!(calls[1].at <= approval.at && approval.at < not_before);
    assert!(
        calls[1].at < not_before - Duration::from_secs(45),
        "the watcher saw the agent exit and did not wait out the window"
    );
    let handled = world.state_file().load();
    let handled = handled.get("e-self").unwrap();
    assert!(handled.self_drained && handled.stopped_nomad && handled.finished);
    assert!(handled.drained_node.is_none());
}

#[test]
fn a_self_drain_that_outlasts_its_time_is_stopped_and_the_event_approved() {
    let world = World::new();
    world.sim.inject(Fault::DrainNeverFinishes {
        node: "c2".to_string(),
    });
    world
        .sim
        .configure(|c| c.client_shutdown_deadline = Duration::from_secs(3600));
    let service = SimService::new(&world.sim, "c2");
    let config = Config {
        self_drain: true,
        ..world.config(false, true)
    };
    let mut watcher = world.watcher_with(config, "nomad-clients_2", "c2", &service, None);
    let not_before = world.now() + Duration::from_secs(120);
    world
        .events
        .schedule(Event::terminate("e-slow", "nomad-clients_2", not_before));
    poll_until(&mut watcher, &world.clock, 3, || {
        !world.events.approvals().is_empty()
    });
    let calls = service.calls();
    assert_eq!(calls[0].verb, "leave");
    let stop = calls.iter().find(|c| c.verb == "stop").expect("stopped");
    // The wait for the agent ended with the drain's share of the window.
    assert!(stop.at <= not_before - Duration::from_secs(5), "{stop:?}");
    assert!(world.events.approvals()[0].at <= not_before - Duration::from_secs(5));
}

#[test]
fn a_repeated_event_is_not_acted_on_twice_even_after_a_restart() {
    let world = World::new();
    let service = SimService::new(&world.sim, "c0");
    let id = "6a0b1c2d-0000-4000-8000-00000000000a";
    world.events.schedule(Event::terminate(
        id,
        "nomad-clients_0",
        world.now() + Duration::from_secs(300),
    ));
    {
        let mut watcher =
            world.watcher(world.config(false, true), "nomad-clients_0", "c0", &service);
        poll_until(&mut watcher, &world.clock, 5, || {
            !world.events.approvals().is_empty()
        });
        // The event stays listed (Started) while Azure deletes the VM; more polls, and a new
        // incarnation with another VM's event, change nothing.
        world.events.schedule(Event::terminate(
            "other",
            "nomad-clients_1",
            world.now() + Duration::from_secs(300),
        ));
        for _ in 0..4 {
            let wait = watcher.poll_once();
            world.clock.sleep(wait);
        }
    }
    // A restarted watcher reads the state file.
    let mut restarted = world.watcher(world.config(false, true), "nomad-clients_0", "c0", &service);
    for _ in 0..3 {
        let wait = restarted.poll_once();
        world.clock.sleep(wait);
    }
    assert_eq!(world.events_requests("POST").len(), 1, "one approval");
    assert_eq!(world.nomad_requests("POST", "/drain").len(), 1, "one drain");
    assert_eq!(
        service.calls().iter().filter(|c| c.verb == "stop").count(),
        1,
        "one stop"
    );
}

#[test]
fn a_watcher_restarted_in_the_middle_finishes_the_event_once() {
    let world = World::new();
    let service = SimService::new(&world.sim, "s1");
    // The state an interrupted run left: Nomad stopped, no approval yet.
    world.state_file().save(&State {
        handled: vec![Handled {
            event_id: "e-mid".into(),
            event_type: "Terminate".into(),
            first_seen: world.now().duration_since(UNIX_EPOCH).unwrap().as_secs(),
            drained_node: None,
            stopped_nomad: true,
            self_drained: false,
            finished: false,
        }],
    });
    world.events.schedule(Event::terminate(
        "e-mid",
        "nomad-servers_1",
        world.now() + Duration::from_secs(200),
    ));
    let mut watcher = world.watcher(world.config(true, false), "nomad-servers_1", "s1", &service);
    for _ in 0..4 {
        let wait = watcher.poll_once();
        world.clock.sleep(wait);
    }
    assert_eq!(world.events.approvals().len(), 1);
    assert!(world.state_file().load().get("e-mid").unwrap().finished);
}

#[test]
fn the_window_bounds_a_stop_that_hangs_and_the_approval_still_goes_out() {
    let world = World::new();
    // A client whose drain never finishes and whose stop would outlast everything: the
    // stand-in agent is never terminated, so every step runs to its bound.
    world.sim.inject(Fault::DrainNeverFinishes {
        node: "c0".to_string(),
    });
    struct Hanging<'a>(&'a SimService);
    impl ServiceControl for Hanging<'_> {
        fn stop(&self, timeout: Duration) -> Result<(), String> {
            self.0.stop(Duration::ZERO)?;
            self.0.sim.advance(timeout);
            Err(format!("did not finish within {timeout:?}"))
        }
        fn start(&self, timeout: Duration) -> Result<(), String> {
            self.0.start(timeout)
        }
        fn describe(&self) -> String {
            "a stop that hangs".into()
        }
        fn signal_leave(&self) -> Result<(), String> {
            self.0.signal_leave()
        }
        fn main_pid(&self) -> Result<Option<u32>, String> {
            self.0.main_pid()
        }
    }
    let mut inner = SimService::new(&world.sim, "c0");
    inner.terminates = false;
    let service = Hanging(&inner);
    let config = Config {
        client: true,
        margins: Margins::default(),
        ..Config::default()
    };
    let nomad = Some(world.local_nomad("c0", None));
    let mut watcher = world.watcher_with(config, "nomad-clients_0", "c0", &service, nomad);
    let not_before = world.now() + Duration::from_secs(120);
    world
        .events
        .schedule(Event::terminate("e-hang", "nomad-clients_0", not_before));
    poll_until(&mut watcher, &world.clock, 3, || {
        !world.events.approvals().is_empty()
    });
    let approval = &world.events.approvals()[0];
    assert!(
        approval.at <= not_before - Duration::from_secs(5),
        "{approval:?}"
    );
}

#[test]
fn a_withdrawn_event_brings_nomad_back_and_the_node_eligible_again() {
    let world = World::new();
    // Azure waits for other approvals, then cancels; the agent itself keeps running here so
    // that its API can take the eligibility back.
    world.events.set_start_on_approval(false);
    let mut service = SimService::new(&world.sim, "c0");
    service.terminates = false;
    let mut watcher = world.watcher(world.config(false, true), "nomad-clients_0", "c0", &service);
    world.events.schedule(Event::terminate(
        "e-cancel",
        "nomad-clients_0",
        world.now() + Duration::from_secs(300),
    ));
    poll_until(&mut watcher, &world.clock, 5, || {
        !world.events.approvals().is_empty()
    });
    assert!(!world.sim.node_named("c0").unwrap().eligible);
    world.events.cancel("e-cancel");
    // Missing from two documents is not enough; from three it is.
    for _ in 0..2 {
        let wait = watcher.poll_once();
        world.clock.sleep(wait);
    }
    assert!(!service.calls().iter().any(|c| c.verb == "start"));
    watcher.poll_once();
    assert!(service.calls().iter().any(|c| c.verb == "start"));
    let undo = world.nomad_requests("POST", "/drain");
    assert_eq!(
        body(undo.last().unwrap()),
        serde_json::json!({ "DrainSpec": null, "MarkEligible": true })
    );
    assert!(world.sim.node_named("c0").unwrap().eligible);
    assert!(world.state_file().load().handled.is_empty());
}

#[test]
fn a_client_whose_nomad_is_already_stopped_is_still_approved() {
    let world = World::new();
    world.sim.act(Action::Kill("c2".to_string()));
    let service = SimService::new(&world.sim, "c2");
    let mut watcher = world.watcher(world.config(false, true), "nomad-clients_2", "c2", &service);
    let not_before = world.now() + Duration::from_secs(300);
    world
        .events
        .schedule(Event::terminate("e-dead", "nomad-clients_2", not_before));
    poll_until(&mut watcher, &world.clock, 5, || {
        !world.events.approvals().is_empty()
    });
    assert!(world.events.approvals()[0].at < not_before);
    assert!(world.nomad_requests("POST", "/drain").is_empty());
    assert!(world.state_file().load().get("e-dead").unwrap().finished);
}

#[test]
fn with_acls_the_token_drains_and_a_token_without_agent_read_finds_the_node_by_name() {
    let world = World::new();
    let token = "00000000-0000-4000-8000-0000000000aa";
    world
        .nomad
        .add_token(token, &["node:read", "node:write", "namespace:read-job"]);
    let service = SimService::new(&world.sim, "c0");
    let nomad = Some(world.local_nomad("c0", Some(token)));
    let mut watcher = world.watcher_with(
        world.config(false, true),
        "nomad-clients_0",
        "c0",
        &service,
        nomad,
    );
    world.events.schedule(Event::terminate(
        "e-acl",
        "nomad-clients_0",
        world.now() + Duration::from_secs(300),
    ));
    poll_until(&mut watcher, &world.clock, 5, || {
        !world.events.approvals().is_empty()
    });
    assert_eq!(world.nomad_requests("GET", "/v1/agent/self").len(), 1);
    assert_eq!(world.nomad_requests("GET", "/v1/nodes").len(), 1);
    let drains = world.nomad_requests("POST", "/drain");
    assert_eq!(drains[0].header("x-nomad-token"), Some(token));
    assert_eq!(world.live_allocs("c0"), 0);
}

#[test]
fn the_approval_body_names_each_event() {
    assert_eq!(
        approval_body(&["a", "b"]),
        r#"{"StartRequests":[{"EventId":"a"},{"EventId":"b"}]}"#
    );
}

/// The wall-clock conversion the tests rely on.
#[test]
fn the_simulated_clock_moves_with_waits() {
    let world = World::new();
    let before = world.clock.now();
    world.clock.sleep(Duration::from_secs(3));
    assert_eq!(
        world.clock.now().duration_since(before).unwrap(),
        Duration::from_secs(3)
    );
}
