//! `cluster-deploy roll` meeting instances Azure is still deleting (`provisioningState`
//! `Deleting`: a terminate-notified delete waits for the VM's watcher, up to NotBefore; see the
//! ARM double's `deleting` module): a roll killed while Azure deleted an old server, re-run.

mod common;
mod rolling;

use std::time::Duration;

use serde_json::json;
use support::doubles::arm::InstanceInfo;
use support::doubles::nomad_sim::{Fault as SimFault, ServerPhase};

use rolling::{Rig, RigOptions, SERVERS};

/// What a previous run did before it was killed: surge one new server, see it a voter, ask
/// Azure to delete an old follower, die before the delete finished. Returns that follower.
fn killed_while_azure_deletes_a_server(rig: &Rig) -> InstanceInfo {
    assert_eq!(
        rig.scale_set_request(
            SERVERS,
            reqwest::Method::PATCH,
            "",
            json!({ "sku": { "capacity": 4 } })
        ),
        200
    );
    assert!(rig
        .sim
        .run_until(Duration::from_secs(300), |v| v.healthy_voters == 4));
    let victim = rig
        .deploy
        .arm
        .instances(SERVERS)
        .into_iter()
        .find(|i| rig.old_servers.contains(&i.vm_id) && i.vm_id != rig.old_leader)
        .unwrap();
    assert_eq!(
        rig.scale_set_request(
            SERVERS,
            reqwest::Method::POST,
            "/delete",
            json!({ "instanceIds": [victim.instance_id] })
        ),
        202
    );
    rig.sim.advance(Duration::from_secs(1));
    victim
}

#[test]
fn a_server_azure_is_deleting_while_its_agent_runs_is_named_as_such_and_a_rerun_finishes() {
    let rig = Rig::new(RigOptions::default());
    // No watcher on the VMs: the deleted server's agent runs on until NotBefore (PT5M).
    rig.sim.inject(SimFault::NoTerminateWatcher);
    let victim = killed_while_azure_deletes_a_server(&rig);
    let outcome = rig.roll(&["--servers-only"]);
    let error = outcome.error();
    assert!(error.contains("precondition failed: servers"), "{error}");
    let servers = outcome
        .of("check")
        .into_iter()
        .find(|c| c["check"] == "servers")
        .cloned()
        .unwrap();
    let detail = servers["detail"].as_str().unwrap();
    // Named for what it is: an instance Azure is deleting, not a server nothing accounts for
    // (nor a peer to remove by hand).
    assert!(
        detail.contains(&format!(
            "Azure is deleting its instance {} ({}",
            victim.instance_id, victim.computer_name
        )),
        "{detail}"
    );
    assert!(!detail.contains("no instance of"), "{detail}");
    assert!(!detail.contains("remove-peer"), "{detail}");
    let state = outcome.of("state")[0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        state.contains(&format!(
            "its instance {} ({}, vm {}) is Deleting",
            victim.instance_id, victim.computer_name, victim.vm_id
        )),
        "{state}"
    );
    assert!(rig.deleted().len() == 1, "nothing more was deleted");
    // NotBefore passes: Azure deletes the VM; autopilot prunes the dead server; a re-run
    // finishes the roll.
    rig.sim.advance(Duration::from_secs(5 * 60));
    rig.status();
    assert!(rig
        .deploy
        .arm
        .instances(SERVERS)
        .iter()
        .all(|i| i.vm_id != victim.vm_id));
    assert!(rig
        .sim
        .run_until(Duration::from_secs(300), |v| v.voters == 3
            && v.healthy_voters == 3));
    rig.roll(&["--servers-only"]).ok();
    assert!(rig
        .old_instances_left()
        .iter()
        .all(|vm| !rig.old_servers.contains(vm)));
    rig.assert_properties(true);
}

#[test]
fn a_rerun_waits_for_an_old_server_azure_is_still_deleting_before_it_surges() {
    let rig = Rig::new(RigOptions::default());
    // The watcher's graceful stop takes a while (the agent leaves, then the VM approves its
    // Terminate event): the delete stays `Deleting` for that long.
    rig.sim
        .configure(|c| c.leave_time = Duration::from_secs(120));
    let victim = killed_while_azure_deletes_a_server(&rig);
    assert!(rig
        .sim
        .view()
        .servers
        .iter()
        .any(|s| s.name == victim.vm_id && s.phase == ServerPhase::Leaving));

    // status shows the instance as Azure does: still there, Deleting, its agent leaving.
    let status = rig.status();
    let row = status["scale_sets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["instances"].as_array().unwrap())
        .find(|i| i["vm_id"] == victim.vm_id.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no row for the deleting instance: {status}"));
    assert_eq!(row["provisioning_state"], "Deleting", "{row}");
    let text = rig
        .deploy
        .ok(&["status", "--nomad-address", rig.nomad.url()])
        .stdout;
    let line = text
        .lines()
        .find(|l| l.contains(&format!("nomad-s{:0>6}", victim.instance_id)))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("Deleting"), "{text}");

    let outcome = rig.roll(&["--servers-only"]);
    outcome.ok();
    let view = rig.sim.view();
    assert_eq!(
        rig.deploy.arm.instances(SERVERS).len(),
        3,
        "{}",
        outcome.stdout
    );
    assert_eq!((view.voters, view.healthy_voters), (3, 3));
    assert!(
        rig.old_instances_left()
            .iter()
            .all(|vm| !rig.old_servers.contains(vm)),
        "{}",
        outcome.stdout
    );
    // It waited for Azure's delete, then surged once per old server left: no repeated
    // surge (a capacity PATCH that, counted from the instances left, would add nothing).
    assert!(
        outcome.stdout.contains(&format!(
            "Azure is still deleting instance {}",
            victim.instance_id
        )),
        "{}",
        outcome.stdout
    );
    assert_eq!(outcome.of("surge").len(), 2, "{}", outcome.stdout);
    rig.assert_properties(false);
}
