//! `cluster-deploy roll` re-runs after a stop, on the simulated cluster (see `roll.rs`): what a
//! previous run surged and Nomad made a voter (or a client Nomad made ready) is never deleted,
//! whatever this run's flags or gates say; a wrong `--nomad-version` is refused before anything
//! changes; a pool a previous run (and an operator) left above its count is drained back to it.

mod common;
mod rolling;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::doubles::nomad_sim::{
    Action, Fault as SimFault, Role, ServerPhase, SimEvent, Trigger,
};

use rolling::{Rig, RigOptions, CLIENTS, SERVERS};

/// A roll interrupted as the first old server leaves: one new server (a voter), two old.
fn interrupted_after_the_first_server(rig: &Rig) -> String {
    let leaving = Arc::new(AtomicBool::new(false));
    {
        let leaving = leaving.clone();
        rig.sim.observe(move |view| {
            if view.servers.iter().any(|s| s.phase == ServerPhase::Leaving) {
                leaving.store(true, Ordering::SeqCst);
            }
        });
    }
    let outcome = rig.roll_with(&[], leaving);
    assert_eq!(
        outcome.stopped()["kind"],
        "interrupted",
        "{}",
        outcome.stdout
    );
    // The old server finishes leaving without the roll.
    rig.sim.advance(Duration::from_secs(60));
    let view = rig.sim.view();
    let new: Vec<String> = view
        .servers
        .iter()
        .filter(|s| s.running && !rig.old_servers.contains(&s.name))
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(new.len(), 1, "{view:?}");
    let s = view.servers.iter().find(|s| s.name == new[0]).unwrap();
    assert!(s.voter && s.healthy, "{s:?}");
    assert_eq!(rig.deploy.arm.instances(SERVERS).len(), 3);
    assert_eq!((view.voters, view.healthy_voters), (3, 3));
    new[0].clone()
}

#[test]
fn a_rerun_with_another_nomad_version_is_refused_before_it_deletes_anything() {
    let rig = Rig::new(RigOptions::default());
    let new = interrupted_after_the_first_server(&rig);
    let deleted = rig.deleted();
    assert_eq!(deleted.len(), 1);
    let requests = rig.deploy.arm.requests().len();

    // The new image runs 1.10.5; the operator names 1.10.6 (a step the old 1.9.7 servers
    // could take, so only the new server's version tells).
    let outcome = rig.roll(&["--nomad-version", "1.10.6"]);
    let error = outcome.error();
    assert!(
        error.contains("precondition failed: version (nothing was changed)"),
        "{error}"
    );
    let check = outcome
        .of("check")
        .into_iter()
        .find(|c| c["check"] == "version")
        .unwrap();
    let detail = check["detail"].as_str().unwrap();
    assert!(
        detail.contains("is already on the latest model and runs Nomad 1.10.5, not the --nomad-version 1.10.6 given"),
        "{detail}"
    );
    // Nothing deleted, nothing written to Azure; the new voter serves on.
    assert_eq!(rig.deleted(), deleted);
    assert!(rig.deploy.arm.requests()[requests..]
        .iter()
        .all(|r| r.method == "GET"));
    let view = rig.sim.view();
    assert!(view
        .servers
        .iter()
        .any(|s| s.name == new && s.voter && s.healthy));
    assert_eq!((view.voters, view.healthy_voters), (3, 3));

    // The right version (or none) resumes.
    rig.roll(&["--nomad-version", "1.10.5"]).ok();
    assert!(rig.old_instances_left().is_empty());
    rig.assert_properties(false);
}

#[test]
fn a_gate_timeout_on_a_new_server_that_is_already_a_voter_deletes_nothing() {
    let rig = Rig::new(RigOptions::default());
    rig.properties.fault_armed();
    let new = interrupted_after_the_first_server(&rig);
    // Then the new voter stops hearing the leader (a partition): autopilot finds it unhealthy,
    // so its gate cannot open on the re-run.
    rig.sim.act(Action::StallReplication {
        server: Some(new.clone()),
        after: Duration::ZERO,
        lasting: Duration::from_secs(7200),
    });
    rig.sim.advance(Duration::from_secs(30));
    assert_eq!(rig.sim.view().healthy_voters, 2);
    let deleted = rig.deleted();

    // Tolerance is 0 now: the operator accepts it, so the roll gets as far as the gate.
    let outcome = rig.roll(&[
        "--accept-no-failure-tolerance",
        "--server-gate-timeout",
        "3m",
    ]);
    let error = outcome.error();
    assert!(error.contains("did not open within 3m"), "{error}");
    let stopped = outcome.stopped();
    assert_eq!(stopped["kind"], "gate-timeout");
    let done = stopped["done"][0].as_str().unwrap();
    assert!(
        done.contains("kept the new instance") && done.contains("it is a Raft voter"),
        "{done}"
    );
    assert!(done.contains("nothing was deleted"), "{done}");
    assert_eq!(outcome.of("keep").len(), 1);
    assert!(outcome.of("delete").is_empty());
    assert_eq!(rig.deleted(), deleted, "nothing deleted");
    assert_eq!(rig.deploy.arm.instances(SERVERS).len(), 3);
    let view = rig.sim.view();
    assert_eq!(view.voters, 3);
    assert!(view
        .servers
        .iter()
        .any(|s| s.name == new && s.voter && s.running));
    assert!(stopped["message"]
        .as_str()
        .unwrap()
        .contains("kept the new instance"));
    let steps: Vec<&str> = stopped["next_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        steps
            .iter()
            .any(|s| s.contains("is a Raft voter that is not healthy: do not delete it")),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|s| s.contains("az vmss delete-instances")),
        "{steps:?}"
    );
    rig.assert_properties(true);
}

#[test]
fn a_clients_rerun_with_another_nomad_version_is_refused_and_keeps_the_new_nodes() {
    let rig = Rig::new(RigOptions::default());
    let draining = Arc::new(AtomicBool::new(false));
    {
        let draining = draining.clone();
        rig.sim.observe(move |view| {
            if view.nodes.iter().any(|n| n.draining) {
                draining.store(true, Ordering::SeqCst);
            }
        });
    }
    let outcome = rig.roll_with(&["--clients-only"], draining);
    assert_eq!(
        outcome.stopped()["kind"],
        "interrupted",
        "{}",
        outcome.stdout
    );
    let instances = rig.deploy.arm.instances(CLIENTS).len();
    assert_eq!(instances, 7, "the surge is in");
    let outcome = rig.roll(&["--clients-only", "--nomad-version", "1.10.6"]);
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
            .contains("clients instance 6 is already on the latest model and runs Nomad 1.10.5"),
        "{check}"
    );
    assert_eq!(rig.deploy.arm.instances(CLIENTS).len(), 7);
    assert!(rig.deleted().is_empty());
    rig.roll(&["--clients-only"]).ok();
    assert_eq!(rig.old_instances_left().len(), 3);
    rig.assert_properties(false);
}

#[test]
fn a_new_client_holding_allocations_is_never_deleted() {
    let rig = Rig::new(RigOptions::default());
    // A batch of two: one new client starts (and takes the system job's allocation), the
    // other never does.
    rig.sim.inject(SimFault::NewClientsNeverStart { count: 1 });
    let outcome = rig.roll(&[
        "--clients-only",
        "--client-batch-size",
        "2",
        "--client-gate-timeout",
        "4m",
    ]);
    let stopped = outcome.stopped();
    assert_eq!(stopped["kind"], "gate-timeout", "{}", outcome.stdout);
    let view = rig.sim.view();
    let started: Vec<_> = view
        .nodes
        .iter()
        .filter(|n| !rig.old_clients.contains(&n.name))
        .collect();
    assert_eq!(started.len(), 1, "{started:?}");
    assert!(started[0].live_allocs > 0, "{:?}", started[0]);
    // Only the one that never started went; the one holding work stays.
    let deleted = rig.deleted();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert!(!deleted.contains(&started[0].name));
    assert!(!rig.old_clients.contains(&deleted[0]));
    assert_eq!(rig.deploy.arm.instances(CLIENTS).len(), 7);
    assert!(stopped["done"][0]
        .as_str()
        .unwrap()
        .contains("deleted the new instance(s)"));
    rig.assert_properties(false);
}

#[test]
fn a_node_put_back_in_service_during_the_surge_is_drained_from_its_state_after_the_gate() {
    let rig = Rig::new(RigOptions::default());
    // A first run is interrupted once its first old node is drained (ineligible, its drain
    // complete, nothing on it), before it deletes it.
    let drained = Arc::new(AtomicBool::new(false));
    {
        let drained = drained.clone();
        let old = rig.old_clients.clone();
        rig.sim.observe(move |view| {
            if view.nodes.iter().any(|n| {
                old.contains(&n.name)
                    && n.agent_running
                    && !n.eligible
                    && !n.draining
                    && n.live_allocs == 0
            }) {
                drained.store(true, Ordering::SeqCst);
            }
        });
    }
    let outcome = rig.roll_with(&["--clients-only"], drained);
    assert_eq!(
        outcome.stopped()["kind"],
        "interrupted",
        "{}",
        outcome.stdout
    );
    let view = rig.sim.view();
    let node = view
        .nodes
        .iter()
        .find(|n| rig.old_clients.contains(&n.name) && !n.eligible && !n.draining)
        .expect("a drained old node")
        .name
        .clone();
    assert!(rig.deleted().is_empty());
    // The re-run (batches of two) surges one more client; while it boots, an operator puts the
    // drained node back in service, and the scheduler places work there again.
    let existing: Vec<String> = rig
        .deploy
        .arm
        .instances(CLIENTS)
        .into_iter()
        .map(|i| i.vm_id)
        .collect();
    rig.sim.when(
        Trigger::Event(Box::new(move |e| {
            matches!(e, SimEvent::InstanceCreated { name, role: Role::Client } if !existing.contains(name))
        })),
        Action::MarkEligible(node.clone()),
    );
    let outcome = rig.roll(&[
        "--clients-only",
        "--client-batch-size",
        "2",
        "--drain-deadline",
        "10m",
    ]);
    outcome.ok();
    let journal = rig.sim.journal();
    let first_drained = journal
        .iter()
        .find(|(_, e)| matches!(e, SimEvent::DrainComplete { node: n } if *n == node))
        .map(|(t, _)| *t)
        .expect("the first run's drain completed");
    let placed_again = journal
        .iter()
        .filter(|(t, e)| {
            *t > first_drained && matches!(e, SimEvent::AllocPlaced { node: n, .. } if *n == node)
        })
        .count();
    assert!(
        placed_again > 0,
        "the node took work again during the surge"
    );
    let drains = journal
        .iter()
        .filter(|(_, e)| matches!(e, SimEvent::DrainStarted { node: n, .. } if *n == node))
        .count();
    assert_eq!(drains, 2, "drained again after it took work");
    let eligibility = outcome
        .of("eligibility")
        .into_iter()
        .filter(|e| e["message"].as_str().unwrap().contains(&node))
        .count();
    assert_eq!(eligibility, 1, "{}", outcome.stdout);
    assert!(
        rig.old_instances_left().len() == 3,
        "only the servers are old"
    );
    rig.assert_properties(false);
}

#[test]
fn a_pool_left_above_its_count_is_drained_back_to_it() {
    let rig = Rig::new(RigOptions::default());
    // A first run is interrupted once its first surged client takes work: seven instances,
    // the six old ones untouched.
    let surged_ready = Arc::new(AtomicBool::new(false));
    {
        let surged_ready = surged_ready.clone();
        let old = rig.old_clients.clone();
        rig.sim.observe(move |view| {
            if view
                .nodes
                .iter()
                .any(|n| !old.contains(&n.name) && n.status.as_str() == "ready" && n.eligible)
            {
                surged_ready.store(true, Ordering::SeqCst);
            }
        });
    }
    let outcome = rig.roll_with(
        &["--clients-only", "--client-batch-size", "1"],
        surged_ready,
    );
    assert_eq!(
        outcome.stopped()["kind"],
        "interrupted",
        "{}",
        outcome.stdout
    );
    let instances = rig.deploy.arm.instances(CLIENTS);
    assert_eq!(instances.len(), 7);
    assert!(rig.deleted().is_empty());
    // Meanwhile an operator upgrades the old clients in place (`az vmss update-instances`):
    // every instance is on the latest model, one more than the pool's count. (The double
    // keeps their agents running; a real upgrade restarts them.)
    let old_ids: Vec<String> = instances
        .iter()
        .filter(|i| rig.old_clients.contains(&i.vm_id))
        .map(|i| i.instance_id.clone())
        .collect();
    assert_eq!(old_ids.len(), 6);
    assert_eq!(
        rig.scale_set_request(
            CLIENTS,
            reqwest::Method::POST,
            "/manualupgrade",
            serde_json::json!({ "instanceIds": old_ids }),
        ),
        202
    );
    rig.sim.advance(Duration::from_secs(1));

    let dry = rig.roll(&["--clients-only", "--dry-run"]);
    let plan = dry.ok().of("plan")[0];
    assert_eq!(
        plan["plan"]["pools"][0]["surplus"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        plan["message"]
            .as_str()
            .unwrap()
            .contains("the pool is above its count of 6"),
        "{plan}"
    );

    let outcome = rig.roll(&["--clients-only"]);
    outcome.ok();
    let trims = outcome.of("trim");
    assert_eq!(trims.len(), 1, "{}", outcome.stdout);
    let deletes = outcome.of("delete");
    assert_eq!(deletes.len(), 1, "{}", outcome.stdout);
    assert_eq!(deletes[0]["reason"], "above the pool's count, drained");
    // The one that went was drained first: nothing ran there when it went.
    let gone = rig.deleted();
    assert_eq!(gone.len(), 1, "{gone:?}");
    let journal = rig.sim.journal();
    let drained_at = journal
        .iter()
        .find(|(_, e)| matches!(e, SimEvent::DrainStarted { node, .. } if *node == gone[0]))
        .map(|(t, _)| *t)
        .expect("drained before its delete");
    let (deleted_at, allocations_then) = journal
        .iter()
        .find_map(|(t, e)| match e {
            SimEvent::InstanceDeleted {
                name,
                running_allocs,
                ..
            } if *name == gone[0] => Some((*t, *running_allocs)),
            _ => None,
        })
        .unwrap();
    assert!(drained_at < deleted_at);
    assert_eq!(allocations_then, 0);
    assert_eq!(rig.deploy.arm.instances(CLIENTS).len(), 6);
    let view = rig.sim.view();
    let running: Vec<_> = view.nodes.iter().filter(|n| n.agent_running).collect();
    assert_eq!(running.len(), 6, "{running:?}");
    rig.assert_properties(false);
}
