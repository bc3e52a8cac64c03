//! The Nomad API client reading a cluster's state from the Nomad API double and its simulated
//! cluster: the agent's members, self and health, the leader, peers and the Raft
//! configuration; autopilot's health (429 is an answer), its configuration written back with
//! check-and-set, and the Raft indexes of a server catching up; a cluster without a leader
//! (errors that name the URL, status and Nomad's text, a 500 not retried); a roll-style gate
//! polling a surged server until it is a caught-up voter. (The double checks every exchange
//! against `../shared/nomad-api` and fails a test when one does not conform; the shared set-up:
//! tests/common/nomad.rs.)

mod common;

use std::time::Duration;

use cluster_deploy::nomad::settings::parse_address;
use cluster_deploy::nomad::MemberStatus;
use support::doubles::nomad_api::NomadApiDouble;
use support::doubles::nomad_sim::{Action, SimConfig, Simulation};

use common::nomad::{client, cluster, paths};

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
