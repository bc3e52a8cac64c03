//! The Nomad API client changing a cluster through the Nomad API double and its simulated
//! cluster: nodes and their allocations, eligibility, drains (waited for with blocking
//! queries, cancelled, forced); the guards on force-leave and Raft peer removal (nothing sent
//! when refused); leadership transfer (and a pre-1.7 server's 404); snapshot saving, checked
//! and atomic. (The double checks every exchange against `../shared/nomad-api` and fails a test
//! when one does not conform; the shared set-up: tests/common/nomad.rs.)

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_deploy::nomad::{
    DrainDeadline, MemberStatus, NomadClient, NomadError, QueryOptions, TransferOutcome,
};
use support::doubles::nomad_api::SnapshotFault;
use support::doubles::nomad_sim::Action;
use support::doubles::server::{Reply, Server};

use common::nomad::{client, cluster, paths, settings};

#[test]
fn nodes_allocations_eligibility_and_drain() {
    let (sim, nomad) = cluster();
    let nomad_client = client(&nomad);
    let nodes = nomad_client.nodes().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n.status == "ready" && !n.drain));
    let c0 = nodes.iter().find(|n| n.name == "c0").unwrap().id.clone();
    let node = nomad_client.node(&c0).unwrap().unwrap();
    assert!(node.eligible() && node.drain_strategy.is_none());
    assert_eq!(
        nomad_client
            .node("00000000-0000-0000-0000-000000000000")
            .unwrap(),
        None
    );
    let allocs = nomad_client.node_allocations(&c0).unwrap();
    assert_eq!(allocs.iter().filter(|a| a.is_live()).count(), 3);
    assert!(allocs.iter().any(|a| a.job_type() == Some("system")));
    assert_eq!(nomad_client.allocations("*").unwrap().len(), 9);

    let write = nomad_client.set_eligibility(&c0, false).unwrap();
    assert!(write.index > 0);
    assert_eq!(
        nomad_client.set_eligibility(&c0, false).unwrap().index,
        0,
        "no change"
    );
    nomad_client.set_eligibility(&c0, true).unwrap();

    let meta = BTreeMap::from([("message".to_string(), "roll".to_string())]);
    let write = nomad_client
        .drain(
            &c0,
            DrainDeadline::After(Duration::from_secs(600)),
            false,
            meta,
        )
        .unwrap();
    assert!(write.node_modify_index > 0);
    let drain_body = nomad
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/drain"))
        .unwrap()
        .body;
    assert!(
        drain_body.contains("\"Deadline\":600000000000"),
        "integer nanoseconds: {drain_body}"
    );
    let node = nomad_client.node(&c0).unwrap().unwrap();
    assert!(node.drain && !node.eligible());
    assert_eq!(
        node.drain_strategy.as_ref().unwrap().deadline,
        600_000_000_000
    );
    assert!(node.drain_strategy.unwrap().force_deadline.is_some());
    let err = nomad_client.set_eligibility(&c0, true).unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert!(err.to_string().contains("while it is draining"), "{err}");

    // Wait for the drain with a blocking query, as roll will.
    let (_, meta) = nomad_client
        .node_with(&c0, &QueryOptions::default())
        .unwrap();
    let mut index = meta.last_index;
    let mut done = false;
    for _ in 0..20 {
        let (node, meta) = nomad_client
            .node_with(
                &c0,
                &QueryOptions {
                    wait_index: Some(index),
                    wait: Some(Duration::from_secs(30)),
                    ..QueryOptions::default()
                },
            )
            .unwrap();
        index = meta.last_index;
        if node.unwrap().drain_complete() {
            done = true;
            break;
        }
    }
    assert!(done, "the drain completed");
    let node = nomad_client.node(&c0).unwrap().unwrap();
    assert!(!node.eligible(), "stays ineligible after the drain");
    assert_eq!(node.last_drain.unwrap().meta["message"], "roll");
    assert!(nomad_client
        .node_allocations(&c0)
        .unwrap()
        .iter()
        .all(|a| !a.is_live()));
    assert_eq!(
        sim.allocations()
            .iter()
            .filter(|a| a.job_id == "web" && a.is_live())
            .count(),
        6,
        "the service allocations moved"
    );
    // Cancel (nothing to cancel now) and make it eligible again in one request.
    let write = nomad_client.cancel_drain(&c0, true).unwrap();
    assert_eq!(write.eval_ids.len(), 1);
    assert!(nomad_client.node(&c0).unwrap().unwrap().eligible());

    let err = nomad_client
        .drain(
            &c0,
            DrainDeadline::After(Duration::ZERO),
            false,
            BTreeMap::new(),
        )
        .unwrap_err();
    assert!(matches!(err, NomadError::Refused { .. }), "{err}");
    nomad_client
        .drain(&c0, DrainDeadline::ForceNow, false, BTreeMap::new())
        .unwrap();
    assert!(nomad
        .requests()
        .iter()
        .any(|r| r.body.contains("\"Deadline\":-1000000000")));
    let unknown = nomad_client
        .drain(
            "00000000-0000-0000-0000-000000000000",
            DrainDeadline::None,
            false,
            BTreeMap::new(),
        )
        .unwrap_err();
    assert_eq!(unknown.status(), Some(500));
    assert!(unknown.to_string().ends_with("node not found"), "{unknown}");
    assert!(
        nomad_client.node("../agent/self").is_err(),
        "ids cannot change the path"
    );
}

#[test]
fn force_leave_is_only_for_failed_members() {
    let (sim, nomad) = cluster();
    sim.configure(|c| c.autopilot.cleanup_dead_servers = false);
    let nomad_client = client(&nomad);
    let err = nomad_client
        .force_leave_failed("s2.global", false)
        .unwrap_err();
    assert!(
        matches!(&err, NomadError::Refused { reason, .. } if reason.contains("alive")),
        "{err}"
    );
    let err = nomad_client
        .force_leave_failed("s9.global", false)
        .unwrap_err();
    assert!(err.to_string().contains("no such member"), "{err}");
    assert_eq!(
        paths(&nomad, "/v1/agent/force-leave"),
        0,
        "nothing was sent"
    );

    sim.act(Action::Kill("s2".into()));
    sim.advance(Duration::from_secs(5));
    let err = nomad_client
        .force_leave_failed("s2.global", false)
        .unwrap_err();
    assert!(err.to_string().contains("alive"), "not yet failed: {err}");
    sim.advance(Duration::from_secs(10));
    nomad_client.force_leave_failed("s2.global", false).unwrap();
    assert_eq!(paths(&nomad, "/v1/agent/force-leave"), 1);
    sim.advance(Duration::from_secs(1));
    let members = nomad_client.members().unwrap();
    let s2 = members.iter().find(|m| m.name == "s2.global").unwrap();
    assert_eq!(s2.state(), MemberStatus::Left);
    assert!(
        nomad_client
            .raft_configuration()
            .unwrap()
            .servers
            .iter()
            .all(|s| s.node != "s2.global"),
        "the leader dropped the left server from Raft"
    );
}

#[test]
fn raft_peer_removal_is_only_for_dead_servers() {
    let (sim, nomad) = cluster();
    sim.configure(|c| c.autopilot.cleanup_dead_servers = false);
    let nomad_client = client(&nomad);
    let ids: Vec<String> = sim.view().servers.iter().map(|s| s.id.clone()).collect();
    let err = nomad_client.remove_dead_raft_peer(&ids[0]).unwrap_err();
    assert!(err.to_string().contains("it is the leader"), "{err}");
    let err = nomad_client.remove_dead_raft_peer(&ids[1]).unwrap_err();
    assert!(err.to_string().contains("is alive in gossip"), "{err}");
    let err = nomad_client
        .remove_dead_raft_peer("00000000-0000-0000-0000-000000000000")
        .unwrap_err();
    assert!(
        err.to_string().contains("not in the Raft configuration"),
        "{err}"
    );
    assert_eq!(
        paths(&nomad, "/v1/operator/raft/peer"),
        0,
        "nothing was sent"
    );

    sim.act(Action::Kill("s1".into()));
    sim.advance(Duration::from_secs(15));
    nomad_client.remove_dead_raft_peer(&ids[1]).unwrap();
    let request = nomad
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/operator/raft/peer")
        .unwrap();
    assert_eq!(request.method, "DELETE");
    assert_eq!(request.query, [("id".to_string(), ids[1].clone())]);
    let configuration = nomad_client.raft_configuration().unwrap();
    assert_eq!(configuration.servers.len(), 2);
}

#[test]
fn leadership_transfer() {
    let (sim, nomad) = cluster();
    let nomad_client = client(&nomad);
    let s1 = sim.view().servers[1].id.clone();
    assert_eq!(
        nomad_client.transfer_leadership(&s1).unwrap(),
        TransferOutcome::Transferred {
            from: sim.view().servers[0].id.clone(),
            to: s1.clone()
        }
    );
    assert_eq!(sim.view().leader.as_deref(), Some("s1"));
    assert_eq!(
        nomad_client.transfer_leadership(&s1).unwrap(),
        TransferOutcome::AlreadyLeader
    );
    let err = nomad_client.transfer_leadership("not-a-uuid").unwrap_err();
    assert_eq!(err.status(), Some(400));
    // A server older than 1.7.0 has no such endpoint: its router answers 404 "Invalid method"
    // (endpoints.json notes). A stand-in for such a server, not the Nomad double:
    let old = Server::start(|_| Reply::text(404, "Invalid method"));
    let old_client = NomadClient::with_settings(settings(old.url())).unwrap();
    assert_eq!(
        old_client.transfer_leadership(&s1).unwrap(),
        TransferOutcome::NotSupported
    );
}

#[test]
fn snapshots_are_streamed_checked_and_atomic() {
    let (_sim, nomad) = cluster();
    nomad.set_snapshot_state_bytes(1024 * 1024);
    let nomad_client = client(&nomad);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("before-roll.snap");
    let saved = nomad_client.save_snapshot(&path, false).unwrap();
    assert!(saved.index >= 1000 && saved.term >= 1);
    let on_disk = std::fs::read(&path).unwrap();
    assert_eq!(saved.bytes, on_disk.len() as u64);
    assert_eq!(saved.sha256, support::hash::sha256_hex(&on_disk));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no partial file left"
    );

    let err = nomad_client.save_snapshot(&path, false).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), on_disk, "never overwritten");

    for (fault, expected) in [
        (SnapshotFault::DigestMismatch, "corrupt"),
        (SnapshotFault::CorruptArchive, "not a valid Nomad snapshot"),
        (SnapshotFault::CutShort, "reading the snapshot"),
    ] {
        nomad.set_snapshot_fault(Some(fault));
        let target = dir.path().join(format!("{fault:?}.snap"));
        let err = nomad_client.save_snapshot(&target, false).unwrap_err();
        assert!(err.to_string().contains(expected), "{fault:?}: {err}");
        assert!(!target.exists(), "{fault:?}: nothing at the final path");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "{fault:?}: no partial file left"
        );
    }
    nomad.set_snapshot_fault(None);
    let stale = nomad_client
        .save_snapshot(&dir.path().join("stale.snap"), true)
        .unwrap();
    assert!(stale.bytes > 0);
}
