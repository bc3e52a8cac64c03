//! outputs and status reading an applied cluster back: from the ARM double (lists in pages of
//! two, nextLink followed) and from the Nomad API double (with an ACL token, which is never
//! shown); status without a reachable Nomad API still reports the scale sets. (The shared
//! environment, which keeps secrets out of every output: tests/common/azure.rs.)

mod common;

use serde_json::Value;
use support::doubles::nomad_api::{Member, NodeStub, NomadApiDouble};

use common::azure::setup;

#[test]
fn outputs_and_status_read_back_the_cluster() {
    let env = setup();
    env.apply();
    // Lists come in pages of two: nextLink is followed.
    env.arm.set_page_size(2);
    let run = env.run(&["outputs", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let outputs: Value = serde_json::from_str(&run.stdout).unwrap();
    let lb = env
        .arm
        .resource_named("Microsoft.Network/publicIPAddresses", "nomad-example-lb-ip")
        .unwrap();
    assert_eq!(
        outputs["load_balancer_address"],
        lb["properties"]["ipAddress"]
    );
    assert_eq!(outputs["server_private_ips"].as_array().unwrap().len(), 3);
    assert_eq!(
        outputs["nomad_api"],
        format!(
            "https://{}:4646",
            lb["properties"]["ipAddress"].as_str().unwrap()
        ),
        "TLS is on"
    );
    assert_eq!(outputs["nomad_tls_server_name"], "server.global.nomad");
    assert_eq!(outputs["key_vault"], env.stack.vault.clone().unwrap());

    let nomad = NomadApiDouble::start();
    nomad.require_token("nomad-acl-token");
    nomad.set_servers(vec![
        Member::server("nomad-s000000.global", "10.0.0.4"),
        Member::server("nomad-s000001.global", "10.0.0.5"),
    ]);
    nomad.set_leader(Some("10.0.0.4:4647"));
    nomad.set_nodes(vec![NodeStub::ready("nomad-c000000", "dc1")]);
    let mut cmd = env.command(&["status", "--nomad-address", nomad.url()]);
    cmd.env("NOMAD_TOKEN", "nomad-acl-token");
    let run = env.run_with(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("scale set nomad-example-servers (3 of 3 instances)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("scale set nomad-example-clients (6 of 6 instances)"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("leader: 10.0.0.4:4647"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("server nomad-s000001.global"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("client nomad-c000000"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("nomad-acl-token") && !run.stderr.contains("nomad-acl-token"));
    assert!(nomad
        .requests()
        .iter()
        .all(|r| r.header("x-nomad-token") == Some("nomad-acl-token")));

    // Without a reachable API, status still reports the scale sets.
    drop(nomad);
    let run = env.run(&["status", "--nomad-address", "http://127.0.0.1:9"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("is not reachable"), "{}", run.stdout);
}
