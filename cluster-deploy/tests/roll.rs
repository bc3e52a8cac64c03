//! `cluster-deploy roll` against a simulated cluster shared by the ARM double (whose instance
//! events boot and stop the agents) and the Nomad API double (which checks every exchange
//! against ../shared/nomad-api), on virtual time. Every test checks the safety properties at
//! every simulated step and in the journal of deletions (`rolling::Properties`,
//! `rolling::journal_violations`): healthy voters never below the cluster size without a
//! fault, never below quorum with one; never two servers changing at once; no client deleted
//! while it still runs allocations before its drain deadline; the leader replaced last.

mod common;
mod rolling;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;
use support::doubles::arm::{Fault, FaultKind};
use support::doubles::nomad_sim::{Action, Fault as SimFault, ServerPhase, SimEvent, Trigger};

use rolling::{Rig, RigOptions, CLIENTS, SERVERS};

/// ARM requests of this method whose path contains `part`.
fn arm_requests(rig: &Rig, method: &str, part: &str) -> usize {
    rig.deploy
        .arm
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.to_lowercase().contains(&part.to_lowercase()))
        .count()
}

/// Nomad API requests that change something.
fn nomad_writes(rig: &Rig) -> Vec<String> {
    rig.nomad
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

fn old_servers_untouched(rig: &Rig) {
    let view = rig.sim.view();
    for name in &rig.old_servers {
        let s = view.servers.iter().find(|s| &s.name == name).unwrap();
        assert!(
            s.running && s.voter && s.healthy,
            "old server {name} is no longer a healthy voter: {s:?}"
        );
    }
    assert_eq!(rig.deploy.arm.instances(SERVERS).len(), 3);
}

#[test]
fn a_roll_replaces_every_instance_safely() {
    let rig = Rig::new(RigOptions::default());
    let outcome = rig.roll(&[]);
    outcome.ok();
    assert!(
        rig.old_instances_left().is_empty(),
        "{:?}",
        rig.old_instances_left()
    );
    assert_eq!(rig.deploy.arm.instances(SERVERS).len(), 3);
    assert_eq!(rig.deploy.arm.instances(CLIENTS).len(), 6);
    let view = rig.sim.view();
    assert_eq!((view.voters, view.healthy_voters), (3, 3));
    assert!(view
        .servers
        .iter()
        .filter(|s| s.running)
        .all(|s| s.version == "1.10.5"));
    assert!(view
        .nodes
        .iter()
        .filter(|n| n.agent_running)
        .all(|n| n.eligible && !n.draining));
    rig.assert_properties(false);
    assert_eq!(*rig.properties.fewest_healthy_voters.lock().unwrap(), 3);
    assert_eq!(
        *rig.properties.most_changing.lock().unwrap(),
        1,
        "one server at a time, and the roll did change servers"
    );
    // One surge per server and per client, one deletion each: nothing done twice.
    assert_eq!(arm_requests(&rig, "PATCH", SERVERS), 3);
    assert_eq!(arm_requests(&rig, "PATCH", CLIENTS), 6);
    assert_eq!(arm_requests(&rig, "POST", &format!("{SERVERS}/delete")), 3);
    assert_eq!(arm_requests(&rig, "POST", &format!("{CLIENTS}/delete")), 6);
    // Every job kept its allocations.
    let running = rig
        .sim
        .allocations()
        .iter()
        .filter(|a| a.is_live() && a.job_id == "web")
        .count();
    assert_eq!(running, 6);

    let kinds = outcome.kinds();
    for kind in [
        "state",
        "check",
        "plan",
        "snapshot",
        "surge",
        "waiting",
        "gate",
        "version",
        "leadership",
        "delete",
        "left",
        "eligibility",
        "drain",
        "done",
    ] {
        assert!(
            kinds.contains(&kind),
            "no {kind} event:\n{}",
            outcome.stdout
        );
    }
    assert_eq!(kinds[..2], ["start", "state"]);
    assert_eq!(kinds.last(), Some(&"done"));
    assert!(outcome
        .events
        .iter()
        .all(|e| e["elapsed_s"].is_number() && e["message"].is_string()));
    // The snapshot came first, from the leader, and is on disk.
    let snapshot = outcome.of("snapshot")[0];
    assert!(rig.snapshot(1).exists());
    assert_eq!(snapshot["path"], rig.snapshot(1).to_str().unwrap());
    let first_change = kinds.iter().position(|k| *k == "surge").unwrap();
    assert!(kinds.iter().position(|k| *k == "snapshot").unwrap() < first_change);
    // The leader was handed over to a new server before it went.
    let handover = outcome.of("leadership")[0];
    assert_eq!(handover["transferred"], true);
    // Clients: ineligible before their drain, drained before their deletion.
    let order: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| ["eligibility", "drain", "delete"].contains(k))
        .skip(3) // the three server deletions
        .take(3)
        .collect();
    assert_eq!(order, ["eligibility", "drain", "delete"]);

    // status now: every instance on the latest model, with its agent.
    let status = rig.status();
    for set in status["scale_sets"].as_array().unwrap() {
        for i in set["instances"].as_array().unwrap() {
            assert_eq!(i["latest_model_applied"], true, "{i}");
            assert!(i["nomad"].is_object(), "{i}");
        }
    }
    assert_eq!(status["nomad"]["failure_tolerance"], 1);
    assert_eq!(status["nomad"]["voters"], 3);
    // A second roll has nothing to do.
    let again = rig.roll(&[]);
    again.ok();
    assert_eq!(again.of("done")[0]["changed"], false);
}

#[test]
fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let rig = Rig::new(RigOptions::default());
    let arm_before = rig.deploy.arm.requests().len();
    let outcome = rig.roll(&["--dry-run"]);
    outcome.ok();
    let plan = outcome.of("plan")[0];
    let steps = plan["plan"]["servers"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[2]["leader"], true, "the leader last: {plan}");
    assert_eq!(
        plan["plan"]["pools"][0]["batches"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let text = plan["message"].as_str().unwrap();
    assert!(text.contains("transfer leadership"), "{text}");
    let writes: Vec<String> = rig.deploy.arm.requests()[arm_before..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(nomad_writes(&rig).is_empty(), "{:?}", nomad_writes(&rig));
    assert!(!rig.snapshot(1).exists());
    assert!(outcome.of("snapshot").is_empty());
    assert!(rig.old_instances_left().len() == 9);
}

#[test]
fn a_degraded_cluster_is_refused_before_any_change() {
    let rig = Rig::new(RigOptions::default());
    rig.properties.fault_armed();
    let follower = rig
        .old_servers
        .iter()
        .find(|s| **s != rig.old_leader)
        .unwrap()
        .clone();
    rig.sim.act(Action::Kill(follower));
    rig.sim.advance(std::time::Duration::from_secs(15));
    for extra in [&[][..], &["--accept-no-failure-tolerance"][..]] {
        let outcome = rig.roll(extra);
        let error = outcome.error();
        assert!(error.contains("precondition"), "{error}");
        assert!(error.contains("nothing was changed"), "{error}");
        let failed: Vec<&str> = outcome
            .of("check")
            .iter()
            .filter(|c| c["ok"] == false)
            .map(|c| c["check"].as_str().unwrap())
            .collect();
        assert!(failed.contains(&"servers"), "{failed:?}");
        if extra.is_empty() {
            assert!(failed.contains(&"failure tolerance"), "{failed:?}");
        } else {
            assert!(!failed.contains(&"failure tolerance"), "{failed:?}");
        }
    }
    assert_eq!(arm_requests(&rig, "PATCH", SERVERS), 0);
    assert!(nomad_writes(&rig).is_empty());
    assert!(!rig.snapshot(1).exists() && !rig.snapshot(2).exists());
    rig.assert_properties(true);
}

#[test]
fn an_unsupported_version_step_is_refused_up_front_or_at_the_first_new_server() {
    // Told up front: 1.9.7 -> 1.11.0 skips 1.10.
    let rig = Rig::new(RigOptions {
        new_version: "1.11.2",
        ..RigOptions::default()
    });
    let outcome = rig.roll(&["--nomad-version", "1.11.2"]);
    let error = outcome.error();
    assert!(error.contains("version"), "{error}");
    let check = outcome
        .of("check")
        .into_iter()
        .find(|c| c["check"] == "version")
        .unwrap();
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("skips a point release"),
        "{check}"
    );
    assert_eq!(arm_requests(&rig, "PATCH", SERVERS), 0);

    // Not told: the first new server's version is checked before any old one goes; it is
    // deleted and the old servers stay.
    let outcome = rig.roll(&[]);
    let error = outcome.error();
    assert!(error.contains("skips a point release"), "{error}");
    let stopped = outcome.stopped();
    assert_eq!(stopped["kind"], "unsafe");
    assert!(stopped["done"][0]
        .as_str()
        .unwrap()
        .contains("deleted the new instance"));
    assert_eq!(arm_requests(&rig, "PATCH", SERVERS), 1);
    assert_eq!(arm_requests(&rig, "POST", &format!("{SERVERS}/delete")), 1);
    old_servers_untouched(&rig);
    assert!(rig
        .deleted()
        .iter()
        .all(|name| !rig.old_servers.contains(name)));
    rig.assert_properties(false);
}

#[test]
fn a_new_server_that_never_becomes_a_voter_is_removed_and_a_rerun_finishes() {
    let rig = Rig::new(RigOptions::default());
    rig.sim.inject(SimFault::NewServersNeverVoters { count: 1 });
    let outcome = rig.roll(&["--server-gate-timeout", "5m"]);
    let error = outcome.error();
    assert!(error.contains("did not open within 5m"), "{error}");
    let stopped = outcome.stopped();
    assert_eq!(stopped["kind"], "gate-timeout");
    let message = stopped["message"].as_str().unwrap();
    for expected in [
        "ROLL STOPPED",
        "deleted the new instance 3",
        "this run changed:",
        "the cluster now:",
        "OLD MODEL",
        "what to do:",
        "re-run `cluster-deploy roll --config",
    ] {
        assert!(message.contains(expected), "{expected}:\n{message}");
    }
    // The new server is gone, the old ones as they were.
    old_servers_untouched(&rig);
    assert_eq!(rig.deleted().len(), 1);
    assert!(!rig.old_servers.contains(&rig.deleted()[0]));
    assert_eq!(
        stopped["state"]["servers"]["instances"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // The fault is spent: a re-run replaces everything.
    let again = rig.roll(&[]);
    again.ok();
    assert!(rig.old_instances_left().is_empty());
    rig.assert_properties(false);
}

#[test]
fn the_leader_dying_mid_roll_keeps_quorum_and_the_roll_finishes() {
    let rig = Rig::new(RigOptions::default());
    rig.properties.fault_armed();
    // When the first new server has just been promoted to voter (the roll is soaking it),
    // the leader's VM vanishes.
    let old = rig.old_servers.clone();
    rig.sim.when(
        Trigger::Event(Box::new(
            move |e| matches!(e, SimEvent::ServerPromoted { name } if !old.contains(name)),
        )),
        Action::KillLeader,
    );
    let outcome = rig.roll(&[]);
    outcome.ok();
    let lost = rig.sim.journal().iter().any(|(_, e)| {
        matches!(e, SimEvent::LeaderLost { name, why } if *name == rig.old_leader && why.contains("vanished"))
    });
    assert!(lost, "the fault fired");
    assert!(rig.old_instances_left().is_empty());
    let view = rig.sim.view();
    assert_eq!((view.voters, view.healthy_voters), (3, 3));
    // The dead leader's instance was deleted as a dead server, before the live ones left.
    let dead = outcome
        .of("delete")
        .into_iter()
        .find(|d| d["reason"] == "dead")
        .expect("the dead leader's instance deleted");
    assert!(dead["message"]
        .as_str()
        .unwrap()
        .contains("deleting it first"));
    rig.assert_properties(true);
}

#[test]
fn a_drain_that_never_finishes_ends_at_its_deadline_before_the_client_goes() {
    let rig = Rig::new(RigOptions::default());
    let stuck = rig.old_clients[0].clone();
    rig.sim.inject(SimFault::DrainNeverFinishes {
        node: stuck.clone(),
    });
    let outcome = rig.roll(&["--drain-deadline", "10m"]);
    outcome.ok();
    let journal = rig.sim.journal();
    let reached = journal
        .iter()
        .find(|(_, e)| matches!(e, SimEvent::DrainDeadlineReached { node } if *node == stuck))
        .map(|(t, _)| *t)
        .expect("the deadline ended the drain");
    let started = journal
        .iter()
        .find(|(_, e)| matches!(e, SimEvent::DrainStarted { node, .. } if *node == stuck))
        .map(|(t, _)| *t)
        .unwrap();
    assert!(reached.since(started) >= std::time::Duration::from_secs(600));
    let deleted = journal
        .iter()
        .find(|(_, e)| matches!(e, SimEvent::InstanceDeleted { name, .. } if *name == stuck))
        .unwrap();
    assert!(deleted.0 >= reached);
    assert!(rig.old_instances_left().is_empty());
    rig.assert_properties(false);
}

#[test]
fn an_arm_throttling_storm_is_ridden_out_and_one_that_outlasts_the_retries_resumes() {
    let rig = Rig::new(RigOptions::default());
    let throttle = FaultKind::Throttle {
        retry_after_secs: 0,
    };
    // A storm on the first surge and on the instance listing: each request is retried.
    for _ in 0..5 {
        rig.deploy
            .arm
            .inject(Fault::on("PATCH", SERVERS, throttle.clone()));
        rig.deploy
            .arm
            .inject(Fault::on("GET", "/virtualMachines", throttle.clone()));
    }
    // One longer than the client's eight attempts, on the first deletion.
    for _ in 0..10 {
        rig.deploy.arm.inject(Fault::on(
            "POST",
            &format!("{SERVERS}/delete"),
            throttle.clone(),
        ));
    }
    let outcome = rig.roll(&[]);
    let error = outcome.error();
    assert!(error.contains("429"), "{error}");
    let stopped = outcome.stopped();
    assert_eq!(stopped["kind"], "failed");
    // It stopped with the new server in and the old ones untouched.
    assert_eq!(rig.deploy.arm.instances(SERVERS).len(), 4);
    assert!(rig.deleted().is_empty());
    let throttled = rig.deploy.arm.served().len();
    assert!(throttled > 0);
    // The re-run resumes: no second surge, the remaining throttles absorbed.
    let again = rig.roll(&[]);
    again.ok();
    assert_eq!(arm_requests(&rig, "PATCH", SERVERS), 5 + 3);
    assert!(rig.old_instances_left().is_empty());
    rig.assert_properties(false);
}

#[test]
fn an_interrupted_roll_stops_at_a_safe_point_and_reruns_resume() {
    let rig = Rig::new(RigOptions::default());
    // First interruption: as the first old server starts to leave.
    let first = Arc::new(AtomicBool::new(false));
    // Second: once a client drain runs.
    let second = Arc::new(AtomicBool::new(false));
    {
        let first = first.clone();
        let second = second.clone();
        rig.sim.observe(move |view| {
            if view.servers.iter().any(|s| s.phase == ServerPhase::Leaving) {
                first.store(true, Ordering::SeqCst);
            }
            if view.nodes.iter().any(|n| n.draining) {
                second.store(true, Ordering::SeqCst);
            }
        });
    }
    let outcome = rig.roll_with(&[], first);
    let stopped = outcome.stopped();
    assert_eq!(stopped["kind"], "interrupted", "{}", outcome.stdout);
    assert!(outcome.error().contains("interrupted"));
    assert!(stopped["message"]
        .as_str()
        .unwrap()
        .contains("nothing is half-done"));

    // status between the runs: the state the report describes.
    let status = rig.status();
    let servers = &status["scale_sets"][0]["instances"];
    let models: Vec<bool> = servers
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["latest_model_applied"].as_bool().unwrap())
        .collect();
    assert_eq!(models.iter().filter(|m| **m).count(), 1, "{status}");
    assert!(servers
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["nomad"]["voter"] == true));

    let outcome = rig.roll_with(&[], second);
    let stopped = outcome.stopped();
    assert_eq!(stopped["kind"], "interrupted", "{}", outcome.stdout);
    let draining: Vec<Value> = stopped["state"]["client_pools"][0]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["node"]["draining"] == true)
        .cloned()
        .collect();
    assert_eq!(draining.len(), 1, "the drain goes on without the roll");
    assert!(stopped["next_steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().contains("nomad node drain -disable")));

    let outcome = rig.roll(&[]);
    outcome.ok();
    assert!(rig.old_instances_left().is_empty());
    // Resumed, never redone: one surge per replaced instance over the three runs.
    assert_eq!(arm_requests(&rig, "PATCH", SERVERS), 3);
    assert_eq!(arm_requests(&rig, "PATCH", CLIENTS), 6);
    rig.assert_properties(false);
}

#[test]
fn without_leadership_transfer_the_leaders_leave_starts_an_election() {
    let rig = Rig::new(RigOptions::default());
    let outcome = rig.roll(&["--no-leadership-transfer", "--servers-only"]);
    outcome.ok();
    assert!(outcome.of("leadership").is_empty());
    let journal = rig.sim.journal();
    assert!(journal.iter().any(|(_, e)| matches!(e,
        SimEvent::LeaderLost { name, why } if *name == rig.old_leader && why.contains("left gracefully"))));
    assert!(!journal.iter().any(|(_, e)| matches!(e,
        SimEvent::LeaderLost { why, .. } if why.contains("transferred"))));
    // Servers only: the clients are still on the old model.
    assert_eq!(rig.old_instances_left().len(), 6);
    assert_eq!(arm_requests(&rig, "PATCH", CLIENTS), 0);
    rig.assert_properties(false);
}

#[test]
fn clients_go_in_bounded_batches() {
    let rig = Rig::new(RigOptions::default());
    let most_draining = Arc::new(std::sync::Mutex::new(0usize));
    {
        let most = most_draining.clone();
        rig.sim.observe(move |view| {
            let draining = view.nodes.iter().filter(|n| n.draining).count();
            let mut m = most.lock().unwrap();
            *m = (*m).max(draining);
        });
    }
    let outcome = rig.roll(&["--clients-only", "--client-batch-size", "4"]);
    outcome.ok();
    // Two batches: four, then the last two.
    let surges: Vec<(u64, u64)> = outcome
        .of("surge")
        .iter()
        .map(|s| (s["from"].as_u64().unwrap(), s["to"].as_u64().unwrap()))
        .collect();
    assert_eq!(surges, [(6, 10), (6, 8)]);
    assert_eq!(*most_draining.lock().unwrap(), 4);
    // Never more than the pool's count plus a batch.
    let mut live = 6i64;
    let mut most = 6i64;
    for (_, e) in rig.sim.journal().into_iter().skip_while(|(_, e)| {
        !matches!(e, SimEvent::InstanceCreated { name, .. } if !rig.old_clients.contains(name) && !rig.old_servers.contains(name))
    }) {
        match e {
            SimEvent::InstanceCreated { .. } => live += 1,
            SimEvent::InstanceDeleted { .. } => live -= 1,
            _ => {}
        }
        most = most.max(live);
    }
    assert_eq!(most, 10);
    assert_eq!(
        rig.old_instances_left().len(),
        3,
        "the servers were left alone"
    );
    rig.assert_properties(false);
}

#[test]
fn a_new_client_that_never_starts_is_removed_and_the_old_ones_stay() {
    let rig = Rig::new(RigOptions::default());
    rig.sim.inject(SimFault::NewClientsNeverStart { count: 1 });
    let outcome = rig.roll(&["--clients-only", "--client-gate-timeout", "4m"]);
    let error = outcome.error();
    assert!(error.contains("new clients ready"), "{error}");
    let stopped = outcome.stopped();
    assert_eq!(stopped["kind"], "gate-timeout");
    assert!(stopped["done"][0]
        .as_str()
        .unwrap()
        .contains("deleted the new instance"));
    // No old node was touched: all eligible, none draining, all six still there.
    let view = rig.sim.view();
    for name in &rig.old_clients {
        let node = view.nodes.iter().find(|n| &n.name == name).unwrap();
        assert!(
            node.eligible && !node.draining && node.agent_running,
            "{node:?}"
        );
    }
    assert_eq!(rig.deploy.arm.instances(CLIENTS).len(), 6);
    assert!(nomad_writes(&rig).is_empty(), "{:?}", nomad_writes(&rig));
    // Fixed (the fault is spent): a re-run replaces them all.
    rig.roll(&["--clients-only"]).ok();
    assert_eq!(rig.old_instances_left().len(), 3);
    rig.assert_properties(false);
}

#[test]
fn a_drain_canceled_by_someone_else_stops_the_roll_and_a_rerun_drains_again() {
    let rig = Rig::new(RigOptions::default());
    let first = rig.old_clients[0].clone();
    let target = first.clone();
    rig.sim.when(
        Trigger::Event(Box::new(
            move |e| matches!(e, SimEvent::DrainStarted { node, .. } if *node == target),
        )),
        Action::CancelDrain(first.clone()),
    );
    let outcome = rig.roll(&["--clients-only"]);
    let error = outcome.error();
    assert!(error.contains("was canceled (not by this roll)"), "{error}");
    let stopped = outcome.stopped();
    assert_eq!(stopped["kind"], "unsafe");
    // It was not deleted, and it is still there, ineligible, running its allocations.
    assert!(!rig.deleted().contains(&first));
    let view = rig.sim.view();
    let node = view.nodes.iter().find(|n| n.name == first).unwrap();
    assert!(
        !node.draining && !node.eligible && node.live_allocs > 0,
        "{node:?}"
    );
    assert!(stopped["next_steps"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s.as_str().unwrap().contains("ineligible")));
    rig.roll(&["--clients-only"]).ok();
    assert_eq!(rig.old_instances_left().len(), 3);
    rig.assert_properties(false);
}
