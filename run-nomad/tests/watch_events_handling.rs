//! The Scheduled Events watcher, in-process, acting on each kind of event in the world of
//! `common::events` (the IMDS double serving Scheduled Events, after Microsoft's documentation;
//! the Nomad API double answering for a simulated cluster, every exchange checked against
//! `../shared/nomad-api`; the simulation's time): a Terminate for a client drains it, stops
//! Nomad, then approves with the documented body before NotBefore; one for a server stops it so
//! it leaves Raft; a Spot eviction uses its thirty seconds and forces what does not move, and a
//! Preempt seen with no time left forces the drain; a client without a token drains itself on
//! SIGTERM (and is stopped when that outlasts its share of the window), one with an ACL token
//! drains through the API; events for other VMs, Freeze and Reboot are left alone.

mod common;

use std::time::Duration;

use common::events::{body, poll_until, SimService, World};
use run_nomad::events::clock::Clock;
use run_nomad::events::imds::approval_body;
use run_nomad::events::watch::Config;
use support::doubles::imds_events::{Event, EventStatus};
use support::doubles::nomad_sim::Fault;

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
