//! The whole flow once, with the four real binaries and only loopback doubles:
//!
//! 1. bake: `image-builder build` (local target: the real Packer, null builder + shell-local)
//!    runs install-nomad against the release mirror double into an image root;
//! 2. deploy: `cluster-deploy apply` sends the cluster's ARM template to the ARM double, which
//!    evaluates it as Azure would and keeps each scale set's decoded custom data;
//! 3. boot: each scale set's custom data runs VERBATIM as root inside a copy of the baked image
//!    (a chroot in a private mount namespace, the host's programs bind-mounted read-only), where
//!    the baked run-nomad reads the IMDS double and writes the agent config and systemd unit;
//! 4. operate: `cluster-deploy outputs` and `status` read the ARM and Nomad API doubles.
//!
//! What this proves beyond each crate's own tests is the seams: the flags cluster-deploy writes
//! are the flags run-nomad takes, and the baked layout is the one run-nomad expects.
//!
//! The example cluster is secure by default: its TLS, gossip key and ACL token live in a Key
//! Vault that run-nomad fetches from at boot (`--key-vault`, cluster-deploy's custom_data
//! module documents the flags). Until run-nomad reads that vault, this rehearsal opts the
//! example out of every vault item (TLS, gossip encryption, the ACL bootstrap), each a warning
//! in plan, so the line cluster-deploy writes is one today's run-nomad takes; ACLs stay on.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::*;
use serde_json::Value;
use support::doubles::arm::{ArmDouble, LoginDouble};
use support::doubles::imds::ImdsDouble;
use support::doubles::mirror::{Mirror, NOMAD_LATEST};
use support::doubles::nomad_api::{Member, NodeStub, NomadApiDouble};

#[test]
fn bake_deploy_boot_operate() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // 1. Bake.
    let mirror = Mirror::start();
    let image = bake(&mirror, dir);
    assert_eq!(
        fs::read(image.join("opt/nomad/bin/nomad")).unwrap(),
        mirror.binary("nomad", NOMAD_LATEST, host_arch()),
        "the image carries the release the mirror signed"
    );

    // 2. Deploy. An Azure bake would have recorded a managed image id; the local bake proves
    //    the provisioning, so the cluster names an image as the Azure target would record it.
    let image_id = format!(
        "/subscriptions/{}/resourceGroups/nomad-images/providers/Microsoft.Compute/images/nomad-{NOMAD_LATEST}",
        "00000000-0000-0000-0000-000000000000"
    );
    let arm = ArmDouble::start();
    let login = LoginDouble::start(CLIENT_ID, CLIENT_SECRET, arm.token());
    let config = cluster_file(dir, &image_id);
    cluster_deploy(&config, &arm, &login, &["apply"]);
    let deployment = arm.deployments().pop().expect("a deployment");
    assert_eq!(deployment.request["properties"]["mode"], "Incremental");
    let server_data = arm.custom_data(SERVERS).expect("server custom data");
    let client_data = arm.custom_data(CLIENTS).expect("client custom data");
    for data in [&server_data, &client_data] {
        assert!(
            !data.contains("--key-vault"),
            "every vault item is opted out"
        );
    }

    // 3. Boot one server and one client from their custom data.
    let subscription = arm.subscription();
    let server_imds = ImdsDouble::start(instance_metadata(
        SERVERS,
        subscription,
        "10.0.10.4",
        "11111111-1111-4111-8111-111111111111",
    ));
    let server = dir.join("vm-server");
    boot(&image, &server, &server_data, &server_imds, &[]);
    let client_imds = ImdsDouble::start(instance_metadata(
        CLIENTS,
        subscription,
        "10.0.10.10",
        "22222222-2222-4222-8222-222222222222",
    ));
    let client = dir.join("vm-client");
    boot(&image, &client, &client_data, &client_imds, &[]);

    let join = format!(
        "\"provider=azure resource_group={RESOURCE_GROUP} vm_scale_set={SERVERS} subscription_id={subscription}\""
    );
    let server_hcl = fs::read_to_string(server.join("opt/nomad/config/default.hcl")).unwrap();
    for line in [
        "datacenter = \"dc1\"".to_string(),
        "region     = \"global\"".to_string(),
        "name       = \"11111111-1111-4111-8111-111111111111\"".to_string(),
        "bootstrap_expect = 3".to_string(),
        join.clone(),
        "min_quorum                = 3".to_string(),
        "http = \"10.0.10.4\"".to_string(),
    ] {
        assert!(
            server_hcl.contains(&line),
            "server config lacks {line}:\n{server_hcl}"
        );
    }
    assert!(server_hcl.contains("acl {"), "{server_hcl}");
    assert!(
        !server_hcl.contains("encrypt"),
        "gossip encryption opted out"
    );
    let config_file = server.join("opt/nomad/config/default.hcl");
    assert_eq!(mode(&config_file), 0o640);
    assert_eq!(fs::metadata(&config_file).unwrap().uid(), 0);

    let client_hcl = fs::read_to_string(client.join("opt/nomad/config/default.hcl")).unwrap();
    for line in [
        "node_class = \"general\"".to_string(),
        "\"pool\" = \"general\"".to_string(),
        join,
        "http = \"10.0.10.10\"".to_string(),
    ] {
        assert!(
            client_hcl.contains(&line),
            "client config lacks {line}:\n{client_hcl}"
        );
    }
    assert!(!client_hcl.contains("encrypt"), "{client_hcl}");
    assert!(!client_hcl.contains("bootstrap_expect"), "{client_hcl}");

    for vm in [&server, &client] {
        let unit = fs::read_to_string(vm.join("etc/systemd/system/nomad.service")).unwrap();
        assert!(
            unit.contains("ExecStart=/opt/nomad/bin/nomad agent"),
            "the unit starts the baked binary:\n{unit}"
        );
        let calls = fs::read_to_string(vm.join("rehearsal/systemctl.log")).unwrap();
        let calls: Vec<&str> = calls.lines().collect();
        let position = |needle: &str| calls.iter().position(|c| c.starts_with(needle));
        let (reload, enable, restart) = (
            position("daemon-reload").expect("daemon-reload"),
            position("enable").expect("enable"),
            position("restart").expect("restart"),
        );
        assert!(reload < enable && enable < restart, "{calls:?}");
    }
    // Each VM asked its own metadata, properly (the header IMDS requires, never a proxy).
    for imds in [&server_imds, &client_imds] {
        let requests = imds.requests();
        assert!(!requests.is_empty());
        assert!(requests
            .iter()
            .all(|r| r.header("metadata") == Some("true")));
    }

    // 4. Operate: what the old helper script printed, and the cluster's health.
    let outputs = cluster_deploy(&config, &arm, &login, &["outputs", "--json"]);
    let outputs: Value = serde_json::from_slice(&outputs.stdout).unwrap();
    let text_outputs = outputs.to_string();
    assert!(
        text_outputs.contains(SERVERS) && text_outputs.contains(CLIENTS),
        "{outputs}"
    );

    let nomad = NomadApiDouble::start();
    let members: Vec<Member> = (0..3)
        .map(|i| {
            Member::server(
                &format!("{SERVERS}_{i}.global"),
                &format!("10.0.10.{}", 4 + i),
            )
        })
        .collect();
    nomad.set_servers(members);
    nomad.set_leader(Some("10.0.10.4:4647"));
    nomad.set_nodes(vec![NodeStub::ready(&format!("{CLIENTS}_0"), "dc1")]);
    let status = cluster_deploy(
        &config,
        &arm,
        &login,
        &["status", "--nomad-address", nomad.url()],
    );
    let status = text(&status.stdout);
    assert!(
        status.contains("10.0.10.4:4647"),
        "the leader is shown:\n{status}"
    );
    assert!(status.contains(&format!("{SERVERS}_2.global")), "{status}");
}
