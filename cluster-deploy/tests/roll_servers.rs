//! `cluster-deploy roll`'s server steps read back from the simulation's journal (see
//! `roll.rs` for the rig): the soak between a new server's promotion and the next old server's
//! deletion, restarted by a lagging sample; and an old server deleted without a graceful leave
//! (no terminate-notification watcher), whose dead peer the roll removes itself.

mod common;
mod rolling;

use std::time::Duration;

use support::doubles::nomad_sim::{Action, Fault as SimFault, SimEvent, SimTime, Trigger};

use rolling::{Rig, RigOptions, SERVERS};

/// (time, name) of every journaled event `pick` names.
fn times(rig: &Rig, pick: impl Fn(&SimEvent) -> Option<&String>) -> Vec<(SimTime, String)> {
    rig.sim
        .journal()
        .iter()
        .filter_map(|(t, e)| pick(e).map(|n| (*t, n.clone())))
        .collect()
}

/// For each new server's promotion, the first deletion of an old server after it.
fn promotion_to_next_deletion(rig: &Rig) -> Vec<(SimTime, SimTime)> {
    let promoted = times(rig, |e| match e {
        SimEvent::ServerPromoted { name } if !rig.old_servers.contains(name) => Some(name),
        _ => None,
    });
    let deleted = times(rig, |e| match e {
        SimEvent::InstanceDeleted { name, .. } if rig.old_servers.contains(name) => Some(name),
        _ => None,
    });
    promoted
        .iter()
        .map(|(at, name)| {
            let next = deleted
                .iter()
                .find(|(t, _)| t >= at)
                .unwrap_or_else(|| panic!("no old server deleted after {name} was promoted"));
            (*at, next.0)
        })
        .collect()
}

#[test]
fn the_soak_holds_between_a_promotion_and_the_next_deletion_and_a_lag_restarts_it() {
    let rig = Rig::new(RigOptions::default());
    let soak = Duration::from_secs(60);
    // 20 s into the first new server's soak, it stops hearing the leader for 30 s.
    let old = rig.old_servers.clone();
    rig.sim.when(
        Trigger::Event(Box::new(
            move |e| matches!(e, SimEvent::ServerPromoted { name } if !old.contains(name)),
        )),
        Action::StallReplication {
            server: None,
            after: Duration::from_secs(20),
            lasting: Duration::from_secs(30),
        },
    );
    let outcome = rig.roll(&["--servers-only", "--soak", "60s"]);
    outcome.ok();
    let pairs = promotion_to_next_deletion(&rig);
    assert_eq!(pairs.len(), 3, "{pairs:?}");
    for (promoted, deleted) in &pairs {
        assert!(
            deleted.since(*promoted) >= soak,
            "an old server went {:?} after a promotion, within the soak",
            deleted.since(*promoted)
        );
    }
    // The lag: the first soak started again once the server caught up.
    let stalled = times(&rig, |e| match e {
        SimEvent::ReplicationStalled { name } => Some(name),
        _ => None,
    });
    let resumed = times(&rig, |e| match e {
        SimEvent::ReplicationResumed { name } => Some(name),
        _ => None,
    });
    assert_eq!((stalled.len(), resumed.len()), (1, 1), "the stall fired");
    let (promoted, first_deletion) = pairs[0];
    assert!(stalled[0].0 > promoted && resumed[0].0 < first_deletion);
    assert!(
        first_deletion.since(resumed[0].0) >= soak,
        "the first old server went {:?} after the lag ended: the lag did not restart the soak",
        first_deletion.since(resumed[0].0)
    );
    let restarted = outcome.events.iter().any(|e| {
        e["event"] == "waiting"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("does not find it healthy"))
    });
    assert!(
        restarted,
        "the gate said why it waited:\n{}",
        outcome.stdout
    );
    // With the watcher every old server left by itself: no peer removal.
    assert!(outcome.of("peer-removed").is_empty());
    rig.assert_properties(false);
}

#[test]
fn an_old_server_that_does_not_leave_has_its_dead_peer_removed_and_no_live_one() {
    // No watcher on the VMs, and autopilot does not clean up dead servers: only the roll's
    // check that the deleted server left can take it out of Raft.
    let rig = Rig::new(RigOptions {
        cleanup_dead_servers: false,
        ..RigOptions::default()
    });
    rig.sim.inject(SimFault::NoTerminateWatcher);
    let outcome = rig.roll(&["--servers-only"]);
    outcome.ok();
    assert_eq!(rig.deploy.arm.instances(SERVERS).len(), 3);
    let view = rig.sim.view();
    assert_eq!((view.voters, view.healthy_voters), (3, 3));
    assert!(view
        .servers
        .iter()
        .filter(|s| s.voter)
        .all(|s| s.running && !rig.old_servers.contains(&s.name)));

    // Each old server vanished (no graceful leave), was removed from Raft by the roll, then
    // force-left once out of Raft.
    let removed = outcome.of("peer-removed");
    assert_eq!(removed.len(), 3, "{}", outcome.stdout);
    let force_left = outcome
        .of("left")
        .into_iter()
        .filter(|l| l["force_left"] == true && l["peer_removed"] == true)
        .count();
    assert_eq!(force_left, 3, "{}", outcome.stdout);
    let journal = rig.sim.journal();
    // The ARM double sent the terminate notification, but nothing acted on it: no old agent
    // stopped gracefully.
    assert!(!journal.iter().any(|(_, e)| matches!(e,
        SimEvent::AgentStopped { name } if rig.old_servers.contains(name))));
    // A peer removed is always one whose instance was deleted before, never a live one.
    for (at, event) in &journal {
        let SimEvent::PeerRemoved { name, why } = event else {
            continue;
        };
        let deleted_before = journal.iter().any(|(t, e)| {
            t <= at && matches!(e, SimEvent::InstanceDeleted { name: n, notified: true, .. } if n == name)
        });
        assert!(
            deleted_before,
            "{name} removed from Raft while live ({why})"
        );
        assert!(rig.old_servers.contains(name), "{name}: {why}");
        if why.contains("operator") {
            // The roll did it, after the member had failed.
            let failed_before = journal.iter().any(|(t, e)| {
                t <= at && matches!(e, SimEvent::MemberFailed { name: n } if n == name)
            });
            assert!(failed_before, "{name} removed before it failed");
        }
    }
    let by_roll = journal
        .iter()
        .filter(|(_, e)| matches!(e, SimEvent::PeerRemoved { why, .. } if why.contains("operator raft remove-peer")))
        .count();
    assert_eq!(by_roll, 3);
    // Voters never below quorum, never fewer than three healthy, one server changing at a time.
    rig.assert_properties(false);
}

#[test]
fn a_single_server_cluster_rolls_only_with_accept_no_failure_tolerance_and_then_finishes() {
    let rig = Rig::new(RigOptions {
        cluster_size: 1,
        ..RigOptions::default()
    });
    let outcome = rig.roll(&["--servers-only"]);
    let error = outcome.error();
    assert!(
        error.contains("precondition failed: failure tolerance (nothing was changed)"),
        "{error}"
    );
    let check = outcome
        .of("check")
        .into_iter()
        .find(|c| c["check"] == "failure tolerance")
        .unwrap();
    assert!(
        check["detail"]
            .as_str()
            .unwrap()
            .contains("--accept-no-failure-tolerance"),
        "{check}"
    );
    assert!(rig.deleted().is_empty());

    // Accepted: the whole roll runs, surge, gate, leadership handed over, old server gone.
    let outcome = rig.roll(&["--servers-only", "--accept-no-failure-tolerance"]);
    outcome.ok();
    let check = outcome
        .of("check")
        .into_iter()
        .find(|c| c["check"] == "failure tolerance")
        .unwrap();
    assert_eq!(check["ok"], true);
    assert!(check["detail"]
        .as_str()
        .unwrap()
        .contains("accepted with --accept-no-failure-tolerance"));
    assert_eq!(outcome.of("leadership")[0]["transferred"], true);
    assert_eq!(rig.deleted(), rig.old_servers);
    assert_eq!(rig.deploy.arm.instances(SERVERS).len(), 1);
    let view = rig.sim.view();
    assert_eq!((view.voters, view.healthy_voters), (1, 1));
    assert!(view.leader.is_some() && !rig.old_servers.contains(view.leader.as_ref().unwrap()));
    // Never fewer than one healthy voter, never below quorum, one server changing at a time.
    rig.assert_properties(false);
}
