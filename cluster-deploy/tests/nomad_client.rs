//! The Nomad API client against the Nomad API double and its simulated cluster: every call,
//! ACL tokens, TLS with a test CA (and a TLS server name), mutual TLS, the guards on
//! force-leave and Raft peer removal, snapshot saving, retries, and errors that name the URL,
//! status and Nomad's text. (The double checks every exchange against `../shared/nomad-api`
//! and fails a test when one does not conform.)

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_deploy::auth::Secret;
use cluster_deploy::nomad::settings::parse_address;
use cluster_deploy::nomad::{
    BootstrapOutcome, DrainDeadline, MemberStatus, NomadClient, NomadError, NomadSettings,
    QueryOptions, TransferOutcome,
};
use support::doubles::nomad_api::{NomadApiDouble, SnapshotFault};
use support::doubles::nomad_sim::{Action, JobSpec, SimConfig, Simulation};
use support::doubles::server::{Reply, Server};
use support::doubles::tls::TestCa;
use support::retry::Policy;

const MANAGEMENT: &str = "5f0c2b4e-7d0f-4b8e-9d36-1c2b3a4d5e6f";

fn quick(what: &'static str) -> Policy {
    Policy {
        what,
        max_attempts: 3,
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        deadline: Some(Duration::from_secs(10)),
    }
}

fn settings(url: &str) -> NomadSettings {
    let mut s = NomadSettings::new(parse_address(url, "test").unwrap());
    s.timeouts.connect = Duration::from_secs(2);
    s.timeouts.request = Duration::from_secs(10);
    s.timeouts.read_retries = quick("Nomad API read");
    s.timeouts.write_retries = quick("Nomad API write");
    s
}

fn client(nomad: &NomadApiDouble) -> NomadClient {
    NomadClient::with_settings(settings(nomad.url())).unwrap()
}

/// Three servers (s0 leads), three ready clients, a service job of 6 and a system job.
fn cluster() -> (Simulation, NomadApiDouble) {
    let sim = Simulation::new(SimConfig::default());
    sim.start_running(&["s0", "s1", "s2"], &["c0", "c1", "c2"]);
    sim.add_job(JobSpec::service("web", 6));
    sim.add_job(JobSpec::system("logs"));
    sim.advance(Duration::from_secs(5));
    let nomad = NomadApiDouble::serve(&sim);
    (sim, nomad)
}

fn paths(nomad: &NomadApiDouble, path: &str) -> usize {
    nomad.requests().iter().filter(|r| r.path == path).count()
}

#[test]
fn agent_and_status_reads() {
    let (sim, nomad) = cluster();
    let nomad_client = client(&nomad);
    let members = nomad_client.agent_members().unwrap();
    assert_eq!(members.server_name, "s0");
    assert_eq!(members.members.len(), 3);
    let s1 = &members.members[1];
    assert_eq!((s1.name.as_str(), s1.node_name()), ("s1.global", "s1"));
    assert_eq!(s1.state(), MemberStatus::Alive);
    assert_eq!(s1.raft_id(), Some(sim.view().servers[1].id.as_str()));
    assert_eq!(s1.build(), Some("1.10.5"));

    let own = nomad_client.agent_self().unwrap();
    assert_eq!(own.version(), "1.10.5");
    assert!(own.config.server.enabled);
    let raft = own.raft_stats().unwrap();
    assert_eq!(raft.state, "Leader");
    assert_eq!(raft.num_peers, Some(2));
    // One server's own view, at its own address.
    let s2 = nomad_client
        .for_agent(parse_address(&nomad.agent_url("s2"), "agent").unwrap())
        .unwrap();
    let s2_raft = s2.agent_self().unwrap().raft_stats().unwrap();
    assert_eq!(s2_raft.state, "Follower");
    assert_eq!(s2_raft.applied_index, raft.applied_index);

    let health = nomad_client.agent_health().unwrap();
    assert!(health.ok() && health.server.unwrap().ok);
    assert_eq!(
        nomad_client.leader().unwrap().as_deref(),
        Some("10.0.1.10:4647")
    );
    assert_eq!(
        nomad_client.leader_stale().unwrap().as_deref(),
        Some("10.0.1.10:4647")
    );
    assert_eq!(nomad_client.peers().unwrap().len(), 3);
    let configuration = nomad_client.raft_configuration().unwrap();
    assert_eq!(configuration.servers.len(), 3);
    assert!(configuration.servers.iter().all(|s| s.voter));
    assert!(configuration.servers[0].leader);
    let status = nomad_client.health().unwrap();
    assert_eq!(status.servers.len(), 3);
    assert_eq!(status.nodes.len(), 3);
}

#[test]
fn autopilot_health_configuration_and_raft_indexes() {
    let (sim, nomad) = cluster();
    let nomad_client = client(&nomad);
    let health = nomad_client.autopilot_health().unwrap();
    assert!(health.healthy);
    assert_eq!(health.failure_tolerance, 1);
    assert_eq!(health.voters.len(), 3);
    assert_eq!(health.leader, sim.view().servers[0].id);
    assert!(health.servers[1].last_contact().unwrap() < Duration::from_millis(200));

    // A new server: joins as a non-voter, trails the leader until it catches up, then is
    // promoted; autopilot reports it unhealthy meanwhile (429 with the body, not an error).
    sim.boot_server("s3", "10.0.1.13");
    sim.advance(Duration::from_secs(41));
    let indexes = nomad_client.raft_indexes().unwrap();
    let s3 = indexes.servers.iter().find(|s| s.name == "s3").unwrap();
    assert!(!s3.voter && !s3.healthy);
    assert!(indexes.lag(&s3.id).unwrap() > 250, "{indexes:?}");
    let health = nomad_client.autopilot_health().unwrap();
    assert!(!health.healthy, "429 is an answer");
    assert!(sim.run_until(Duration::from_secs(60), |v| v.voters == 4));
    sim.advance(Duration::from_secs(3));
    let indexes = nomad_client.raft_indexes().unwrap();
    let s3 = indexes.servers.iter().find(|s| s.name == "s3").unwrap();
    assert!(s3.voter && s3.healthy);
    assert_eq!(indexes.lag(&s3.id), Some(0));
    assert!(nomad_client.autopilot_health().unwrap().healthy);

    // Read, change, write back with check-and-set.
    let mut config = nomad_client.autopilot_configuration().unwrap();
    assert_eq!(
        config.server_stabilization_time(),
        Some(Duration::from_secs(10))
    );
    let index = config.modify_index;
    config.server_stabilization_time = "30s".to_string();
    assert!(!nomad_client
        .set_autopilot_configuration(&config, Some(index + 99))
        .unwrap());
    assert!(nomad_client
        .set_autopilot_configuration(&config, Some(index))
        .unwrap());
    let config = nomad_client.autopilot_configuration().unwrap();
    assert_eq!(config.server_stabilization_time, "30s");
    assert!(
        config.cleanup_dead_servers,
        "the rest of the configuration was kept"
    );
    assert_eq!(config.max_trailing_logs, 250);
}

#[test]
fn without_a_leader() {
    let sim = Simulation::new(SimConfig::default());
    sim.configure(|c| c.autopilot.cleanup_dead_servers = false);
    sim.start_running(&["s0", "s1", "s2"], &[]);
    sim.act(Action::Kill("s0".into()));
    sim.act(Action::Kill("s1".into()));
    sim.advance(Duration::from_secs(30));
    let nomad = NomadApiDouble::serve(&sim);
    let nomad_client = client(&nomad);
    assert_eq!(nomad_client.leader().unwrap(), None);
    assert_eq!(nomad_client.leader_stale().unwrap(), None);
    let health = nomad_client.agent_health().unwrap();
    assert!(!health.ok());
    assert_eq!(health.server.unwrap().message, "No cluster leader");
    let err = nomad_client.raft_configuration().unwrap_err();
    assert!(err.is_no_leader(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "GET {}/v1/operator/raft/configuration",
            nomad.url()
        )) && text.contains("500")
            && text.contains("No cluster leader"),
        "{text}"
    );
    assert_eq!(
        paths(&nomad, "/v1/operator/raft/configuration"),
        1,
        "a 500 is not retried"
    );
}

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
fn acl_bootstrap_is_idempotent_with_the_callers_secret() {
    let (_sim, nomad) = cluster();
    nomad.enable_acls();
    let nomad_client = client(&nomad);
    let secret = Secret::new("0f6b54a7-3d1c-4c8e-8a6f-2b1d9e7c5a40".to_string());
    match nomad_client.acl_bootstrap(&secret).unwrap() {
        BootstrapOutcome::Bootstrapped(token) => {
            assert_eq!(token.secret_id, secret);
            assert_eq!(token.kind, "management");
            assert!(!format!("{token:?}").contains(secret.expose()));
        }
        other => panic!("{other:?}"),
    }
    let again = nomad_client.acl_bootstrap(&secret).unwrap();
    assert!(
        matches!(again, BootstrapOutcome::AlreadyDone { reset_index: Some(i) } if i > 0),
        "{again:?}"
    );
    let err = nomad_client
        .acl_bootstrap(&Secret::new("not-a-uuid".to_string()))
        .unwrap_err();
    assert!(matches!(err, NomadError::Refused { .. }));
    // The secret is the management token now.
    let mut with_token = settings(nomad.url());
    with_token.token = Some(secret);
    let managed = NomadClient::with_settings(with_token).unwrap();
    assert_eq!(managed.raft_configuration().unwrap().servers.len(), 3);
}

#[test]
fn acl_tokens_are_sent_and_never_shown() {
    let (_sim, nomad) = cluster();
    nomad.add_token(MANAGEMENT, &["management"]);
    nomad.add_token("6a1e5d2c-0b9f-4e7a-8c3d-4f5e6a7b8c9d", &["node:read"]);
    let anonymous = client(&nomad);
    let err = anonymous.nodes().unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(err.to_string().ends_with("403: Permission denied"), "{err}");
    let mut wrong = settings(nomad.url());
    wrong.token = Some(Secret::new(
        "9d1f2e3c-aaaa-4bbb-8ccc-ddddeeeeffff".to_string(),
    ));
    let err = NomadClient::with_settings(wrong)
        .unwrap()
        .nodes()
        .unwrap_err();
    assert!(err.to_string().ends_with("ACL token not found"), "{err}");
    assert!(!err.to_string().contains("9d1f2e3c"), "{err}");

    let mut reader = settings(nomad.url());
    reader.token = Some(Secret::new(
        "6a1e5d2c-0b9f-4e7a-8c3d-4f5e6a7b8c9d".to_string(),
    ));
    let reader = NomadClient::with_settings(reader).unwrap();
    assert_eq!(reader.nodes().unwrap().len(), 3);
    let err = reader.raft_configuration().unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(!format!("{reader:?}").contains("6a1e5d2c"));

    let mut manager = settings(nomad.url());
    manager.token = Some(Secret::new(MANAGEMENT.to_string()));
    let manager = NomadClient::with_settings(manager).unwrap();
    manager.raft_configuration().unwrap();
    let sent: Vec<_> = nomad
        .requests()
        .into_iter()
        .filter_map(|r| r.header("x-nomad-token").map(str::to_string))
        .collect();
    assert!(sent.contains(&MANAGEMENT.to_string()));
    assert!(nomad
        .requests()
        .iter()
        .all(|r| !r.path.contains(MANAGEMENT) && r.query.iter().all(|(_, v)| v != MANAGEMENT)));
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

#[test]
fn transport_failures_are_retried_within_the_policy() {
    let (_sim, nomad) = cluster();
    let nomad_client = client(&nomad);
    nomad.drop_next_requests(2);
    assert_eq!(
        nomad_client.nodes().unwrap().len(),
        3,
        "third attempt answers"
    );
    nomad.drop_next_requests(5);
    let err = nomad_client.peers().unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("gave up after 3 attempts"), "{text}");
    assert!(
        text.contains(&format!("GET {}/v1/status/peers", nomad.url())),
        "{text}"
    );
    nomad.drop_next_requests(0);
    // A refused write is not retried.
    let before = nomad.requests().len();
    assert!(nomad_client
        .set_eligibility("00000000-0000-0000-0000-000000000000", true)
        .is_err());
    assert_eq!(nomad.requests().len(), before + 1);
}

#[test]
fn settings_from_the_nomad_cli_variables_reach_a_tls_cluster() {
    let ca = TestCa::new("nomad-agent-ca");
    // Like `nomad tls cert create -server`: the region's server name, not 127.0.0.1.
    let server = ca.server_cert(&["server.global.nomad"]);
    let sim = Simulation::new(SimConfig::default());
    sim.start_running(&["s0", "s1", "s2"], &["c0"]);
    let nomad = NomadApiDouble::serve_tls(&sim, server.server_config(None));
    nomad.add_token(MANAGEMENT, &["management"]);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_cert(dir.path(), "nomad-agent-ca.pem");
    let env = |extra: &[(&str, String)]| {
        let mut vars = BTreeMap::from([
            ("NOMAD_ADDR".to_string(), nomad.url().to_string()),
            ("NOMAD_TOKEN".to_string(), MANAGEMENT.to_string()),
            ("NOMAD_CACERT".to_string(), ca_file.display().to_string()),
        ]);
        for (k, v) in extra {
            vars.insert(k.to_string(), v.clone());
        }
        let mut s = NomadSettings::from_vars(|name| vars.get(name).cloned()).unwrap();
        s.timeouts.read_retries = quick("read");
        s
    };
    // The certificate does not name 127.0.0.1: verification fails without the server name.
    let err = NomadClient::with_settings(env(&[]))
        .unwrap()
        .leader()
        .unwrap_err();
    assert!(
        matches!(
            err,
            NomadError::Transport { .. } | NomadError::GaveUp { .. }
        ),
        "{err}"
    );
    let tls = NomadClient::with_settings(env(&[(
        "NOMAD_TLS_SERVER_NAME",
        "server.global.nomad".to_string(),
    )]))
    .unwrap();
    assert_eq!(tls.leader().unwrap().as_deref(), Some("10.0.1.10:4647"));
    assert_eq!(tls.raft_configuration().unwrap().servers.len(), 3);
    // Only the given CA is trusted.
    let other = TestCa::new("other-ca");
    let other_file = other.write_cert(dir.path(), "other-ca.pem");
    let err = NomadClient::with_settings(env(&[
        ("NOMAD_TLS_SERVER_NAME", "server.global.nomad".to_string()),
        ("NOMAD_CACERT", other_file.display().to_string()),
    ]))
    .unwrap()
    .leader()
    .unwrap_err();
    assert!(!matches!(err, NomadError::Status { .. }), "{err}");
    // NOMAD_CAPATH: a directory of CA files.
    let ca_dir = dir.path().join("cas");
    std::fs::create_dir(&ca_dir).unwrap();
    ca.write_cert(&ca_dir, "ca.pem");
    let mut by_dir = env(&[("NOMAD_TLS_SERVER_NAME", "server.global.nomad".to_string())]);
    by_dir.tls.ca_cert = None;
    by_dir.tls.ca_path = Some(ca_dir);
    assert!(NomadClient::with_settings(by_dir).unwrap().leader().is_ok());
}

#[test]
fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let ca = TestCa::new("nomad-agent-ca");
    let server = ca.server_cert(&["server.global.nomad", "127.0.0.1"]);
    let sim = Simulation::new(SimConfig::default());
    sim.start_running(&["s0"], &[]);
    let nomad = NomadApiDouble::serve_tls(&sim, server.server_config(Some(&ca)));
    let dir = tempfile::tempdir().unwrap();
    let tls_settings = || {
        let mut s = settings(nomad.url());
        s.tls.ca_cert = Some(ca.write_cert(dir.path(), "ca.pem"));
        s
    };
    let err = NomadClient::with_settings(tls_settings())
        .unwrap()
        .leader()
        .unwrap_err();
    assert!(
        !matches!(err, NomadError::Status { .. }),
        "no certificate, no answer: {err}"
    );
    let stranger = TestCa::new("stranger").client_cert("cli");
    let (cert, key) = stranger.write(dir.path(), "stranger");
    let mut s = tls_settings();
    s.tls.client_cert = Some(cert);
    s.tls.client_key = Some(key);
    assert!(NomadClient::with_settings(s).unwrap().leader().is_err());
    let cli = ca.client_cert("global-cli-nomad");
    let (cert, key) = cli.write(dir.path(), "cli");
    let mut s = tls_settings();
    s.tls.client_cert = Some(cert);
    s.tls.client_key = Some(key.clone());
    let mtls = NomadClient::with_settings(s).unwrap();
    assert_eq!(mtls.leader().unwrap().as_deref(), Some("10.0.1.10:4647"));
    // A key that is not PEM is named.
    std::fs::write(&key, "not a key").unwrap();
    let mut s = tls_settings();
    s.tls.client_cert = Some(dir.path().join("cli.pem"));
    s.tls.client_key = Some(key);
    let err = NomadClient::with_settings(s).unwrap_err().to_string();
    assert!(err.contains("NOMAD_CLIENT_KEY"), "{err}");
}

#[test]
fn a_polling_gate_sees_a_surged_server_become_a_caught_up_voter() {
    use std::sync::{Arc, Mutex};
    use support::doubles::instance_events::{InstanceEvents, InstanceInfo};
    use support::doubles::nomad_sim::Role;
    // Each request moves the cluster on by a second, so polling is all it takes.
    let sim = Simulation::new(SimConfig {
        advance_per_request: Duration::from_secs(1),
        ..SimConfig::default()
    });
    sim.map_scale_set("nomad-servers", Role::Server);
    sim.start_running(&["s0", "s1", "s2"], &[]);
    let fewest_healthy = Arc::new(Mutex::new(usize::MAX));
    {
        let fewest = fewest_healthy.clone();
        sim.observe(move |v| {
            let mut f = fewest.lock().unwrap();
            *f = (*f).min(v.healthy_voters);
        });
    }
    let nomad = NomadApiDouble::serve(&sim);
    let nomad_client = client(&nomad);
    // What the ARM double does when the server scale set grows by one.
    sim.instance_created(&InstanceInfo {
        scale_set: "nomad-servers".to_string(),
        instance_id: "3".to_string(),
        vm_id: "0b7c3e1a-5d2f-4e8b-9a6c-7d8e9f0a1b2c".to_string(),
        computer_name: "nomad-s000003".to_string(),
        private_ip: "10.0.1.13".to_string(),
    });
    let member = "0b7c3e1a-5d2f-4e8b-9a6c-7d8e9f0a1b2c.global";
    let start = sim.now();
    let mut polls = 0;
    let mut saw_non_voter = false;
    loop {
        polls += 1;
        assert!(polls < 200, "the gate never opened");
        let alive = nomad_client
            .members()
            .unwrap()
            .iter()
            .any(|m| m.name == member && m.state() == MemberStatus::Alive);
        let raft = nomad_client.raft_configuration().unwrap();
        let Some(peer) = raft.servers.iter().find(|s| s.node == member) else {
            continue;
        };
        saw_non_voter |= !peer.voter;
        let indexes = nomad_client.raft_indexes().unwrap();
        let caught_up = indexes.lag(&peer.id) == Some(0);
        let healthy = nomad_client.autopilot_health().unwrap().healthy;
        if alive && peer.voter && caught_up && healthy {
            break;
        }
    }
    assert!(saw_non_voter, "it joined as a non-voter first");
    let took = sim.now().since(start);
    assert!(
        took >= Duration::from_secs(50),
        "booting (40 s) and stabilization (10 s) take virtual time: {took:?}"
    );
    assert_eq!(
        *fewest_healthy.lock().unwrap(),
        3,
        "never fewer healthy voters than before"
    );
}

#[test]
fn the_region_goes_only_to_endpoints_that_take_it() {
    let (sim, nomad) = cluster();
    let mut s = settings(nomad.url());
    s.region = Some("global".to_string());
    let nomad_client = NomadClient::with_settings(s).unwrap();
    nomad_client.health().unwrap();
    nomad_client.agent_self().unwrap();
    nomad_client.agent_health().unwrap();
    nomad_client.raft_configuration().unwrap();
    nomad_client.autopilot_health().unwrap();
    let c0 = sim.node_named("c0").unwrap().id;
    nomad_client.node_allocations(&c0).unwrap();
    nomad_client.set_eligibility(&c0, false).unwrap();
    let s1 = sim.view().servers[1].id.clone();
    nomad_client.transfer_leadership(&s1).unwrap();
    let with_region: Vec<String> = nomad
        .requests()
        .iter()
        .filter(|r| r.query_param("region") == Some("global"))
        .map(|r| r.path.clone())
        .collect();
    assert!(with_region.contains(&"/v1/status/leader".to_string()));
    assert!(with_region.contains(&format!("/v1/node/{c0}/eligibility")));
    for path in [
        "/v1/agent/members",
        "/v1/agent/self",
        "/v1/agent/health",
        "/v1/operator/raft/transfer-leadership",
    ] {
        assert!(!with_region.iter().any(|p| p == path), "{path}");
    }
    // (The double fails this test on drop if a parameter went where endpoints.json does not
    // list it.)
    assert!(nomad.violations().is_empty(), "{:?}", nomad.violations());
}
