//! The Scheduled Events watcher, in-process, when things fail, repeat or change, in the world of
//! `common::events` (the IMDS double serving Scheduled Events, after Microsoft's documentation;
//! the Nomad API double answering for a simulated cluster, every exchange checked against
//! `../shared/nomad-api`; the simulation's time, so nothing here waits for real time): IMDS
//! errors retried with backoff and Retry-After, a failing approval retried until it goes
//! through, an event acted on once across polls and a restart, a watcher restarted in the
//! middle finishing the event once, a stop that hangs bounded by the window, a withdrawn event
//! bringing Nomad back and the node eligible, a Nomad already stopped still approved.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::events::{body, poll_until, SimService, World};
use run_nomad::events::agent::ServiceControl;
use run_nomad::events::clock::Clock;
use run_nomad::events::state::{Handled, State};
use run_nomad::events::timeline::Margins;
use run_nomad::events::watch::Config;
use support::doubles::imds::Reply;
use support::doubles::imds_events::{Event, ScheduledEvents};
use support::doubles::nomad_sim::{Action, Fault};

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
