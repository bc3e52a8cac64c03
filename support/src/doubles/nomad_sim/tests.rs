//! The simulation's properties, driven through [`InstanceEvents`] as the ARM double will drive
//! it, and through its own handle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

fn instance(scale_set: &str, n: usize) -> InstanceInfo {
    InstanceInfo {
        scale_set: scale_set.to_string(),
        instance_id: n.to_string(),
        vm_id: format!("{scale_set}-vm-{n}"),
        computer_name: format!("{scale_set}{n:06}"),
        private_ip: format!(
            "10.0.{}.{}",
            if scale_set == "servers" { 1 } else { 2 },
            10 + n
        ),
    }
}

fn sim() -> Simulation {
    let sim = Simulation::new(SimConfig::default());
    sim.map_scale_set("servers", Role::Server);
    sim.map_scale_set("clients", Role::Client);
    sim
}

fn events(sim: &Simulation) -> Vec<SimEvent> {
    sim.journal().into_iter().map(|(_, e)| e).collect()
}

fn time_of(sim: &Simulation, matches: impl Fn(&SimEvent) -> bool) -> Option<SimTime> {
    sim.journal()
        .into_iter()
        .find(|(_, e)| matches(e))
        .map(|(t, _)| t)
}

fn server<'a>(view: &'a ClusterView, name: &str) -> &'a ServerView {
    view.servers
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no server {name}"))
}

fn node<'a>(view: &'a ClusterView, name: &str) -> &'a NodeView {
    view.nodes
        .iter()
        .find(|n| n.name == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

#[test]
fn instances_boot_into_a_cluster_that_bootstraps_and_elects() {
    let sim = sim();
    for n in 0..3 {
        sim.instance_created(&instance("servers", n));
    }
    sim.advance(Duration::from_secs(30));
    assert!(
        sim.view().servers.iter().all(|s| !s.running),
        "still booting"
    );
    assert!(sim.view().leader.is_none());
    sim.advance(Duration::from_secs(15));
    let view = sim.view();
    assert_eq!(
        view.voters, 3,
        "bootstrap_expect servers bootstrap as voters"
    );
    let leader = view.leader.clone().expect("a leader");
    assert!(leader.starts_with("servers-vm-"));
    assert_eq!(view.term, 1);
    // Autopilot finds all three healthy once the leader's loop has run.
    assert!(sim.run_until(Duration::from_secs(5), |v| v.healthy_voters == 3));
    assert_eq!(sim.view().failure_tolerance, 1);
    assert!(sim.unmatched_instances().is_empty());
}

#[test]
fn an_instance_of_an_unmapped_scale_set_is_reported_not_booted() {
    let sim = sim();
    sim.instance_created(&instance("other", 0));
    sim.advance(Duration::from_secs(60));
    assert_eq!(sim.unmatched_instances(), ["other/0"]);
    assert!(sim.view().servers.is_empty());
}

#[test]
fn a_new_server_joins_as_non_voter_and_is_promoted_after_stabilization() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    sim.advance(Duration::from_secs(60));
    sim.instance_created(&instance("servers", 3));
    let name = "servers-vm-3";
    assert!(sim.run_until(Duration::from_secs(60), |v| v
        .servers
        .iter()
        .any(|s| s.name == name && s.in_raft)));
    let view = sim.view();
    let new = server(&view, name);
    assert!(!new.voter, "joins Raft as a non-voter");
    assert_eq!(view.voters, 3);
    assert!(sim.run_until(Duration::from_secs(60), |v| server(v, name).voter));
    let joined = time_of(
        &sim,
        |e| matches!(e, SimEvent::ServerJoinedRaft { name: n } if n == name),
    )
    .unwrap();
    let promoted = time_of(
        &sim,
        |e| matches!(e, SimEvent::ServerPromoted { name: n } if n == name),
    )
    .unwrap();
    let waited = promoted.since(joined);
    // Caught up (2 s), found healthy at the next health check (every 2 s), stable for 10 s,
    // promoted at the next autopilot run (every 10 s).
    assert!(
        waited >= Duration::from_secs(12) && waited <= Duration::from_secs(26),
        "promoted {waited:?} after joining"
    );
    assert!(sim.run_until(Duration::from_secs(5), |v| v.healthy_voters == 4));
    // Four voters: quorum 3, so one failure is tolerated, as with three.
    assert_eq!(sim.view().failure_tolerance, 1);
}

#[test]
fn a_server_that_never_catches_up_is_never_promoted_and_autopilot_says_unhealthy() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    sim.inject(Fault::NewServersNeverVoters { count: 1 });
    sim.instance_created(&instance("servers", 3));
    sim.instance_created(&instance("servers", 4));
    sim.advance(Duration::from_secs(180));
    let view = sim.view();
    let stuck = server(&view, "servers-vm-3");
    assert!(stuck.in_raft && !stuck.voter && !stuck.healthy);
    assert!(
        server(&view, "servers-vm-4").voter,
        "the fault hit only the next one"
    );
    assert!(!view.autopilot_healthy);
    assert_eq!(view.voters, 4);
    assert_eq!(view.failure_tolerance, 1);
}

#[test]
fn the_leader_dying_makes_the_others_elect_and_autopilot_clean_up() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    sim.advance(Duration::from_secs(20));
    assert_eq!(sim.view().failure_tolerance, 1);
    let old = sim.kill_leader().expect("a leader");
    assert_eq!(old, "s0");
    assert!(sim.view().leader.is_none());
    sim.advance(Duration::from_millis(1_500));
    assert!(
        sim.view().leader.is_none(),
        "not before the election timeout"
    );
    assert!(sim.run_until(Duration::from_secs(2), |v| v.leader.is_some()));
    let view = sim.view();
    assert_ne!(view.leader.as_deref(), Some("s0"));
    assert_eq!(view.term, 2);
    // The dead leader is still a voter: 2 of 3 healthy, no failure tolerated.
    assert!(sim.run_until(Duration::from_secs(5), |v| v.healthy_voters == 2));
    assert_eq!(sim.view().failure_tolerance, 0);
    assert!(!sim.view().autopilot_healthy);
    // Gossip marks it failed, then autopilot's cleanup force-leaves it and it leaves Raft.
    assert!(sim.run_until(Duration::from_secs(30), |v| !server(v, "s0").in_raft));
    let view = sim.view();
    assert_eq!(server(&view, "s0").member, Some(MemberStatus::Left));
    assert_eq!(view.voters, 2);
    assert!(events(&sim).contains(&SimEvent::MemberFailed {
        name: "s0".to_string()
    }));
}

#[test]
fn without_a_quorum_of_voters_there_is_no_leader() {
    let sim = sim();
    sim.configure(|c| c.autopilot.cleanup_dead_servers = false);
    sim.start_running(&["s0", "s1", "s2"], &[]);
    sim.act(Action::Kill("s1".to_string()));
    sim.kill_leader();
    sim.advance(Duration::from_secs(120));
    let view = sim.view();
    assert!(view.leader.is_none());
    assert_eq!(view.live_voters, 1);
    assert_eq!(view.voters, 3);
}

#[test]
fn dead_server_cleanup_never_removes_a_majority_or_goes_below_min_quorum() {
    let sim = sim();
    sim.configure(|c| c.autopilot.min_quorum = 5);
    sim.start_running(&["s0", "s1", "s2", "s3", "s4"], &[]);
    sim.act(Action::Kill("s4".to_string()));
    sim.advance(Duration::from_secs(120));
    let view = sim.view();
    assert!(
        server(&view, "s4").in_raft,
        "MinQuorum 5 keeps the fifth voter"
    );
    assert_eq!(server(&view, "s4").member, Some(MemberStatus::Failed));
}

#[test]
fn a_terminated_follower_leaves_raft_gracefully() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    let s2 = InstanceInfo {
        vm_id: "s2".to_string(),
        ..instance("servers", 2)
    };
    sim.instance_deleted(&s2, true);
    sim.advance(Duration::from_secs(1));
    let view = sim.view();
    assert_eq!(server(&view, "s2").member, Some(MemberStatus::Leaving));
    assert!(
        !server(&view, "s2").in_raft,
        "the leader removes a leaving server"
    );
    sim.advance(Duration::from_secs(5));
    let view = sim.view();
    assert_eq!(server(&view, "s2").member, Some(MemberStatus::Left));
    assert_eq!(view.voters, 2);
    assert_eq!(
        view.leader.as_deref(),
        Some("s0"),
        "no election for a follower"
    );
    assert!(!events(&sim)
        .iter()
        .any(|e| matches!(e, SimEvent::MemberFailed { .. })));
}

#[test]
fn a_terminated_leader_steps_down_and_the_others_elect() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    sim.act(Action::Terminate("s0".to_string()));
    let view = sim.view();
    assert!(view.leader.is_none());
    assert!(
        !server(&view, "s0").in_raft,
        "a leader removes itself first"
    );
    assert!(sim.run_until(Duration::from_secs(5), |v| v.leader.is_some()));
    let view = sim.view();
    assert_eq!(view.leader.as_deref(), Some("s1"));
    assert_eq!(view.voters, 2);
}

#[test]
fn a_server_deleted_without_notification_fails_instead_of_leaving() {
    let sim = sim();
    sim.configure(|c| c.autopilot.cleanup_dead_servers = false);
    sim.start_running(&["s0", "s1", "s2"], &[]);
    let s1 = InstanceInfo {
        vm_id: "s1".to_string(),
        ..instance("servers", 1)
    };
    sim.instance_deleted(&s1, false);
    sim.advance(Duration::from_secs(5));
    assert_eq!(
        server(&sim.view(), "s1").member,
        Some(MemberStatus::Alive),
        "gossip has not noticed yet"
    );
    sim.advance(Duration::from_secs(60));
    let view = sim.view();
    assert_eq!(server(&view, "s1").member, Some(MemberStatus::Failed));
    assert!(
        server(&view, "s1").in_raft,
        "without cleanup it stays a voter"
    );
    // force-leave moves a failed member to left; the leader then drops it from Raft.
    assert!(sim.lock().force_left("s1", false));
    sim.advance(Duration::from_secs(1));
    assert!(!server(&sim.view(), "s1").in_raft);
}

#[test]
fn without_the_watcher_a_notified_delete_is_a_vanished_server() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    sim.inject(Fault::NoTerminateWatcher);
    let s1 = InstanceInfo {
        vm_id: "s1".to_string(),
        ..instance("servers", 1)
    };
    sim.instance_deleted(&s1, true);
    // Nothing on the VM acts on the event: it runs on and never approves it...
    sim.advance(Duration::from_secs(60));
    assert_eq!(server(&sim.view(), "s1").phase, ServerPhase::Running);
    assert!(!sim.terminate_approved(&s1));
    // ...until Azure deletes it at NotBefore.
    sim.instance_removed(&s1);
    sim.advance(Duration::from_secs(60));
    let view = sim.view();
    assert_eq!(server(&view, "s1").phase, ServerPhase::Vanished);
    assert!(events(&sim).contains(&SimEvent::MemberFailed { name: "s1".into() }));
    assert!(!events(&sim).contains(&SimEvent::AgentStopped { name: "s1".into() }));
}

#[test]
fn a_stalled_server_falls_behind_turns_unhealthy_and_recovers() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    assert_eq!(sim.view().actions_applied, 0);
    sim.act(Action::StallReplication {
        server: Some("s2".into()),
        after: Duration::from_secs(10),
        lasting: Duration::from_secs(30),
    });
    sim.advance(Duration::from_secs(5));
    assert!(server(&sim.view(), "s2").healthy, "not stalled yet");
    sim.advance(Duration::from_secs(10));
    let view = sim.view();
    assert!(!server(&view, "s2").healthy, "stalled");
    assert!(server(&view, "s2").voter && server(&view, "s2").running);
    assert_eq!(view.healthy_voters, 2);
    assert_eq!(view.actions_applied, 1, "the delayed stall is one action");
    sim.advance(Duration::from_secs(30));
    assert!(server(&sim.view(), "s2").healthy, "caught up again");
    let stalled = time_of(
        &sim,
        |e| matches!(e, SimEvent::ReplicationStalled { name } if name == "s2"),
    );
    let resumed = time_of(
        &sim,
        |e| matches!(e, SimEvent::ReplicationResumed { name } if name == "s2"),
    );
    assert_eq!(
        resumed.unwrap().since(stalled.unwrap()),
        Duration::from_secs(30)
    );
}

#[test]
fn force_leave_does_nothing_to_a_live_member() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    assert!(!sim.lock().force_left("s1", true));
    sim.advance(Duration::from_secs(5));
    let view = sim.view();
    assert_eq!(server(&view, "s1").member, Some(MemberStatus::Alive));
    assert!(server(&view, "s1").voter);
}

#[test]
fn removing_a_live_peer_gets_it_added_back() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    let id = server(&sim.view(), "s2").id.clone();
    sim.lock().remove_peer(&id).unwrap();
    assert!(!server(&sim.view(), "s2").in_raft);
    sim.advance(Duration::from_secs(1));
    let view = sim.view();
    assert!(
        server(&view, "s2").in_raft,
        "the leader's reconcile re-adds it"
    );
    assert!(!server(&view, "s2").voter, "as a non-voter first");
    assert_eq!(
        sim.lock().remove_peer("no-such-id"),
        Err(ServerOpError::PeerNotFound("no-such-id".to_string()))
    );
}

#[test]
fn leadership_transfer_moves_the_leader_to_a_voter() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    let s2 = server(&sim.view(), "s2").id.clone();
    assert_eq!(sim.lock().transfer_leadership(&s2), Ok(false));
    let view = sim.view();
    assert_eq!(view.leader.as_deref(), Some("s2"));
    assert_eq!(view.term, 2);
    assert_eq!(sim.lock().transfer_leadership(&s2), Ok(true), "a no-op");
}

#[test]
fn allocations_are_placed_and_move_off_a_draining_node() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &["c0", "c1", "c2"]);
    sim.add_job(JobSpec::service("web", 6));
    sim.add_job(JobSpec::system("logs"));
    sim.advance(Duration::from_secs(5));
    let view = sim.view();
    for n in ["c0", "c1", "c2"] {
        assert_eq!(node(&view, n).live_allocs, 3, "2 web + 1 logs on {n}");
    }
    let c0 = node(&view, "c0").id.clone();
    let hour = 3_600_000_000_000i64;
    sim.lock()
        .set_drain(&c0, Some((hour, false)), false, Default::default(), "")
        .unwrap();
    let node0 = sim.node_named("c0").unwrap();
    assert!(!node0.eligible, "a drain makes the node ineligible");
    assert_eq!(
        node0.drain.as_ref().unwrap().force_deadline,
        Some(sim.now().plus(Duration::from_secs(3600)))
    );
    assert!(sim.run_until(Duration::from_secs(60), |v| !node(v, "c0").draining));
    let view = sim.view();
    assert_eq!(node(&view, "c0").live_allocs, 0);
    let node0 = sim.node_named("c0").unwrap();
    assert!(!node0.eligible, "stays ineligible after the drain");
    assert_eq!(
        node0.last_drain.as_ref().unwrap().status,
        DrainStatus::Complete
    );
    // The service allocations moved; the system one was stopped last and not replaced there.
    assert!(sim.run_until(Duration::from_secs(10), |v| {
        node(v, "c1").live_allocs + node(v, "c2").live_allocs == 8
    }));
    let stopped_system = time_of(&sim, |e| {
        matches!(e, SimEvent::AllocStopped { alloc, node, .. } if alloc.starts_with("logs") && node == "c0")
    })
    .unwrap();
    let stopped_web = sim
        .journal()
        .into_iter()
        .filter(|(_, e)| matches!(e, SimEvent::AllocStopped { alloc, node, .. } if alloc.starts_with("web") && node == "c0"))
        .map(|(t, _)| t)
        .max()
        .unwrap();
    assert!(stopped_system >= stopped_web, "system allocations go last");
    let moved: Vec<Alloc> = sim
        .allocations()
        .into_iter()
        .filter(|a| a.job_id == "web" && a.is_live())
        .collect();
    assert_eq!(moved.len(), 6);
    assert!(moved.iter().all(|a| a.node_name != "c0"));
    assert!(moved.iter().any(|a| a.previous_allocation.is_some()));
}

#[test]
fn a_stuck_drain_ends_at_its_deadline_and_not_before() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &["c0", "c1"]);
    sim.add_job(JobSpec::service("web", 4));
    sim.advance(Duration::from_secs(5));
    sim.inject(Fault::DrainNeverFinishes {
        node: "c0".to_string(),
    });
    let c0 = sim.node_named("c0").unwrap().id;
    let start = sim.now();
    sim.lock()
        .set_drain(
            &c0,
            Some((60_000_000_000, false)),
            false,
            Default::default(),
            "",
        )
        .unwrap();
    sim.advance(Duration::from_secs(59));
    assert!(node(&sim.view(), "c0").draining);
    assert_eq!(node(&sim.view(), "c0").live_allocs, 2);
    assert!(sim.run_until(Duration::from_secs(2), |v| !node(v, "c0").draining));
    let done = time_of(
        &sim,
        |e| matches!(e, SimEvent::DrainComplete { node } if node == "c0"),
    )
    .unwrap();
    assert_eq!(done.since(start), Duration::from_secs(60));
    assert!(events(&sim).contains(&SimEvent::DrainDeadlineReached {
        node: "c0".to_string()
    }));
    assert_eq!(node(&sim.view(), "c0").live_allocs, 0);
}

#[test]
fn a_drain_without_deadline_waits_for_batch_work_however_long_it_takes() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &["c0", "c1"]);
    // Placed on the least-loaded node, then by name: report on c0, forever on c1.
    sim.add_job(JobSpec::batch("report", 1, Some(Duration::from_secs(120))));
    sim.add_job(JobSpec::batch("forever", 1, None));
    sim.advance(Duration::from_secs(5));
    let on = |job: &str| {
        sim.allocations()
            .into_iter()
            .find(|a| a.job_id == job)
            .unwrap()
            .node_name
    };
    assert_eq!(
        (on("report").as_str(), on("forever").as_str()),
        ("c0", "c1")
    );
    for n in ["c0", "c1"] {
        let id = sim.node_named(n).unwrap().id;
        sim.lock()
            .set_drain(&id, Some((0, false)), false, Default::default(), "")
            .unwrap();
    }
    let start = sim.now();
    sim.advance(Duration::from_secs(100));
    assert!(
        node(&sim.view(), "c0").draining,
        "batch work is not migrated"
    );
    assert!(sim.run_until(Duration::from_secs(30), |v| !node(v, "c0").draining));
    let done = time_of(
        &sim,
        |e| matches!(e, SimEvent::DrainComplete { node } if node == "c0"),
    )
    .unwrap();
    assert!(
        done.since(start) >= Duration::from_secs(110),
        "{:?}",
        done.since(start)
    );
    sim.advance(Duration::from_secs(3600));
    let view = sim.view();
    assert!(
        node(&view, "c1").draining,
        "Deadline 0 never forces: the endless batch job keeps c1 draining"
    );
    assert_eq!(node(&view, "c1").live_allocs, 1);
}

#[test]
fn a_forced_drain_stops_everything_at_once() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &["c0", "c1"]);
    sim.add_job(JobSpec::service("web", 4));
    sim.advance(Duration::from_secs(5));
    let c0 = sim.node_named("c0").unwrap().id;
    sim.lock()
        .set_drain(
            &c0,
            Some((-1_000_000_000, false)),
            false,
            Default::default(),
            "",
        )
        .unwrap();
    sim.advance(Duration::from_millis(250));
    assert_eq!(node(&sim.view(), "c0").live_allocs, 0);
    assert!(!node(&sim.view(), "c0").draining);
}

#[test]
fn cancelling_a_drain_and_eligibility_rules() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &["c0", "c1"]);
    let c0 = sim.node_named("c0").unwrap().id;
    sim.lock()
        .set_drain(&c0, Some((0, false)), false, Default::default(), "")
        .unwrap();
    assert_eq!(
        sim.lock().set_eligibility(&c0, true),
        Err(NodeOpError::EligibleWhileDraining)
    );
    let write = sim
        .lock()
        .set_drain(&c0, None, true, Default::default(), "")
        .unwrap();
    assert_eq!(
        write.eval_ids.len(),
        1,
        "MarkEligible creates an evaluation"
    );
    let n = sim.node_named("c0").unwrap();
    assert!(n.eligible && n.drain.is_none());
    assert_eq!(n.last_drain.unwrap().status, DrainStatus::Canceled);
    assert_eq!(
        sim.lock().set_eligibility(&c0, true),
        Ok(NodeWrite::default()),
        "no change: all zeros"
    );
    let write = sim.lock().set_eligibility(&c0, false).unwrap();
    assert!(write.index > 0 && write.eval_ids.is_empty());
    assert_eq!(
        sim.lock().set_eligibility("nope", false),
        Err(NodeOpError::NodeNotFound)
    );
    // An ineligible node gets no new work.
    sim.add_job(JobSpec::service("web", 4));
    sim.advance(Duration::from_secs(5));
    assert_eq!(node(&sim.view(), "c0").live_allocs, 0);
    assert_eq!(node(&sim.view(), "c1").live_allocs, 4);
}

#[test]
fn a_vanished_client_goes_down_and_its_allocations_are_replaced() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &["c0", "c1"]);
    sim.add_job(JobSpec::service("web", 4));
    sim.advance(Duration::from_secs(5));
    sim.act(Action::Kill("c0".to_string()));
    sim.advance(Duration::from_secs(10));
    assert_eq!(
        node(&sim.view(), "c0").status,
        NodeStatus::Ready,
        "within the grace"
    );
    assert!(
        sim.run_until(Duration::from_secs(15), |v| node(v, "c0").status
            == NodeStatus::Down)
    );
    assert!(sim.run_until(Duration::from_secs(5), |v| node(v, "c1").live_allocs == 4));
    let lost = sim
        .allocations()
        .into_iter()
        .filter(|a| a.client == ClientStatus::Lost)
        .count();
    assert_eq!(lost, 2);
}

#[test]
fn a_terminated_client_drains_itself_then_stops() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    for n in 0..2 {
        sim.instance_created(&instance("clients", n));
    }
    sim.add_job(JobSpec::service("web", 4));
    assert!(
        sim.run_until(Duration::from_secs(120), |v| v.nodes.len() == 2
            && v.nodes
                .iter()
                .all(|n| n.status == NodeStatus::Ready && n.live_allocs == 2))
    );
    sim.instance_deleted(&instance("clients", 0), true);
    let deleted = sim
        .journal()
        .into_iter()
        .rev()
        .find_map(|(_, e)| match e {
            SimEvent::InstanceDeleted {
                running_allocs,
                notified,
                ..
            } => Some((running_allocs, notified)),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        deleted,
        (2, true),
        "the journal says what it held when deleted"
    );
    let name = "clients-vm-0";
    sim.advance(Duration::from_secs(1));
    assert!(node(&sim.view(), name).draining, "drain_on_shutdown");
    assert!(sim.run_until(Duration::from_secs(60), |v| !node(v, name).agent_running));
    assert_eq!(node(&sim.view(), name).live_allocs, 0);
    assert_eq!(node(&sim.view(), "clients-vm-1").live_allocs, 4);
    assert!(
        sim.run_until(Duration::from_secs(30), |v| node(v, name).status
            == NodeStatus::Down)
    );
}

#[test]
fn triggers_fire_on_time_and_on_events_and_observers_see_every_step() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &[]);
    let steps = Arc::new(Mutex::new(Vec::new()));
    {
        let steps = steps.clone();
        sim.observe(move |v| steps.lock().unwrap().push((v.at, v.leader.clone())));
    }
    sim.when(
        Trigger::Event(Box::new(|e| matches!(e, SimEvent::ServerPromoted { .. }))),
        Action::KillLeader,
    );
    sim.when(
        Trigger::At(sim.now().plus(Duration::from_secs(1))),
        Action::Terminate("s2".to_string()),
    );
    sim.instance_created(&instance("servers", 3));
    sim.advance(Duration::from_secs(120));
    let journal = events(&sim);
    let promoted = journal
        .iter()
        .position(|e| matches!(e, SimEvent::ServerPromoted { .. }))
        .unwrap();
    let lost = journal
        .iter()
        .position(|e| matches!(e, SimEvent::LeaderLost { name, .. } if name == "s0"))
        .unwrap();
    assert!(lost > promoted, "the leader died after the promotion");
    assert!(journal.contains(&SimEvent::MemberLeft {
        name: "s2".to_string()
    }));
    let steps = steps.lock().unwrap();
    assert_eq!(steps.len(), 480, "one view per 250 ms step");
    assert!(steps.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn the_same_calls_give_the_same_cluster() {
    let run = || {
        let sim = sim();
        sim.start_running(&["s0", "s1", "s2"], &["c0", "c1", "c2"]);
        sim.add_job(JobSpec::service("web", 5));
        sim.add_job(JobSpec::system("logs"));
        sim.instance_created(&instance("servers", 3));
        sim.advance(Duration::from_secs(30));
        sim.kill_leader();
        sim.advance(Duration::from_secs(5));
        let c1 = sim.node_named("c1").unwrap().id;
        sim.lock()
            .set_drain(
                &c1,
                Some((30_000_000_000, false)),
                false,
                Default::default(),
                "",
            )
            .unwrap();
        sim.advance(Duration::from_secs(90));
        (sim.journal(), sim.view())
    };
    assert_eq!(run(), run());
}

#[test]
fn a_client_that_never_starts_registers_no_node_and_a_canceled_drain_stays_ineligible() {
    let sim = sim();
    sim.start_running(&["s0", "s1", "s2"], &["c0"]);
    sim.add_job(JobSpec::service("web", 2));
    sim.inject(Fault::NewClientsNeverStart { count: 1 });
    sim.instance_created(&instance("clients", 1));
    sim.instance_created(&instance("clients", 2));
    sim.advance(Duration::from_secs(120));
    let view = sim.view();
    assert!(
        view.nodes.iter().all(|n| n.name != "clients-vm-1"),
        "never registers"
    );
    assert!(
        view.nodes.iter().any(|n| n.name == "clients-vm-2"),
        "the next one does"
    );

    let c0 = sim.node_named("c0").unwrap().id;
    sim.lock()
        .set_drain(&c0, Some((0, false)), false, Default::default(), "")
        .unwrap();
    sim.act(Action::CancelDrain("c0".to_string()));
    let view = sim.view();
    let c0 = node(&view, "c0");
    assert!(!c0.draining && !c0.eligible);
    assert!(events(&sim)
        .iter()
        .any(|e| matches!(e, SimEvent::DrainCanceled { node } if node == "c0")));
}
