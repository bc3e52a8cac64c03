//! Values Nomad or go-discover refuse at start are refused by run-nomad first, naming the flag
//! (or the metadata field a default came from), before anything is written: otherwise Nomad
//! crash-loops under systemd or joins nothing forever. The new agent settings parse with
//! HashiCorp's HCL v1 parser into exactly the keys Nomad's configuration docs name.

mod common;

use common::{against_root, generate, hcl1_decode, instance, output, FakeRoot};
use serde_json::{json, Value};

fn refused(doc: &Value, args: &[&str], names: &[&str]) {
    let root = FakeRoot::new();
    let mut cmd = against_root(&root, doc);
    cmd.arg("--no-start").args(args);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(!ok, "{args:?} was accepted:\n{stdout}");
    for name in names {
        assert!(stderr.contains(name), "{args:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !root.at("/opt/nomad/config/default.hcl").exists(),
        "{args:?}"
    );
    assert!(
        !root.at("/etc/systemd/system/nomad.service").exists(),
        "{args:?}"
    );
}

#[test]
fn meta_keys_nomad_refuses_are_refused_naming_the_flag() {
    for key in [".rack", "a..b", "zone.", "."] {
        refused(
            &instance(),
            &["--client", "--meta", &format!("{key}=1")],
            &["invalid --meta", key, "^[^.]+(\\.[^.]+)*$"],
        );
    }
}

#[test]
fn datacenters_and_regions_nomad_refuses_are_refused() {
    refused(
        &instance(),
        &["--client", "--datacenter", "dc*"],
        &["invalid --datacenter \"dc*\""],
    );
    refused(
        &instance(),
        &["--client", "--datacenter", ""],
        &["--datacenter"],
    );
    refused(&instance(), &["--client", "--region", ""], &["--region"]);
    // The default comes from the metadata: the error names the field.
    let mut doc = instance();
    doc["compute"]["location"] = json!("east*");
    refused(
        &doc,
        &["--client"],
        &["compute.location", "--datacenter", "`*`"],
    );
    doc["compute"]["location"] = json!("east\u{0}us");
    refused(
        &doc,
        &["--client", "--datacenter", "dc1"],
        &["compute.location", "--region"],
    );
}

#[test]
fn node_pools_and_classes_nomad_refuses_are_refused() {
    for pool in ["all", "with space", "dot.ted", ""] {
        refused(
            &instance(),
            &["--client", "--node-pool", pool],
            &["invalid --node-pool"],
        );
    }
    refused(
        &instance(),
        &["--server", "--num-servers", "1", "--node-pool", "gpu"],
        &["--node-pool", "add --client"],
    );
    refused(
        &instance(),
        &["--client", "--node-class", ""],
        &["invalid --node-class"],
    );
}

#[test]
fn unusable_advertise_addresses_are_refused() {
    for address in [
        "0.0.0.0",
        "::",
        "127.0.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "fe80::1",
    ] {
        refused(
            &instance(),
            &["--client", "--advertise-addr", address],
            &["invalid --advertise-addr", address],
        );
    }
    // From the metadata as well.
    let mut doc = instance();
    doc["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"] = json!("127.0.0.1");
    refused(
        &doc,
        &["--client"],
        &["invalid privateIpAddress", "loopback", "--advertise-addr"],
    );
}

#[test]
fn tag_discovery_without_a_value_is_refused() {
    refused(
        &instance(),
        &[
            "--client",
            "--cluster-tag-key",
            "cluster",
            "--cluster-tag-value",
            "",
        ],
        &["invalid --cluster-tag-value", "empty"],
    );
    let mut doc = instance();
    doc["compute"]["tagsList"] = json!([{ "name": "cluster", "value": "" }]);
    refused(
        &doc,
        &["--client", "--cluster-tag-key", "cluster"],
        &["compute.tagsList", "empty value", "--cluster-tag-value"],
    );
}

#[test]
fn retry_join_entries_nomad_cannot_use_are_refused() {
    for (entry, reason) in [
        (
            "provider=azure tag_name=k tag_value=\"unbalanced",
            "unbalanced quotes",
        ),
        (
            "provider=azure tag_name=k tag_value=v resource_group=r vm_scale_set=s",
            "not both",
        ),
        ("provider=azure tag_name=k", "tag_name and tag_value"),
        ("provider=aws region=a region=b", "duplicate key"),
        ("nomad server 1", "white space"),
        ("10.0.0.4\n10.0.0.5", "control character"),
    ] {
        refused(
            &instance(),
            &["--client", "--retry-join", entry],
            &["invalid --retry-join", reason],
        );
    }
}

#[test]
fn operator_settings_parse_back_with_hcl1_to_nomads_keys() {
    let root = FakeRoot::new();
    generate(
        &root,
        &instance(),
        &[
            "--server",
            "--client",
            "--num-servers",
            "3",
            "--retry-join",
            "10.0.0.4",
            "--node-pool",
            "gpu_pool-1",
            "--log-level",
            "warn",
            "--log-json",
            "--disable-update-check",
            "--prometheus-metrics",
            "--publish-allocation-metrics",
            "--publish-node-metrics",
            "--leave-on-terminate",
            "false",
            "--meta",
            "azure.zone=override",
        ],
    );
    let text = root.read("/opt/nomad/config/default.hcl");
    let doc = hcl1_decode(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let ip = "10.10.1.6";
    let join = json!([{ "retry_join": ["10.0.0.4"] }]);
    assert_eq!(
        doc,
        json!({
            "datacenter": "eastus2",
            "region": "eastus2",
            "name": "5f3c1e2a-7b6d-4c21-9e8f-0a1b2c3d4e5f",
            "bind_addr": "0.0.0.0",
            "data_dir": "/opt/nomad/data",
            // Nomad's agent configuration (configuration/index.mdx): top-level keys.
            "leave_on_interrupt": true,
            "leave_on_terminate": false,
            "log_level": "WARN",
            "log_json": true,
            "disable_update_check": true,
            "advertise": [{ "http": ip, "rpc": ip, "serf": ip }],
            // configuration/server.mdx: rejoin_after_leave.
            "server": [{
                "enabled": true,
                "bootstrap_expect": 3,
                "rejoin_after_leave": true,
                "server_join": join,
            }],
            "autopilot": [{
                "cleanup_dead_servers": true,
                "last_contact_threshold": "200ms",
                "max_trailing_logs": 250,
                "server_stabilization_time": "10s",
                "min_quorum": 3,
            }],
            // configuration/client.mdx: node_pool, meta.
            "client": [{
                "enabled": true,
                "node_pool": "gpu_pool-1",
                "server_join": join,
                "meta": [{
                    "azure.zone": "override",
                    "azure.fault_domain": "0",
                    "azure.vm_size": "Standard_D2ds_v5",
                }],
            }],
            // configuration/telemetry.mdx.
            "telemetry": [{
                "prometheus_metrics": true,
                "disable_hostname": true,
                "publish_allocation_metrics": true,
                "publish_node_metrics": true,
            }],
        }),
        "{text}"
    );
}

#[test]
fn placement_meta_can_be_left_out_and_is_absent_outside_a_zone() {
    let root = FakeRoot::new();
    generate(&root, &instance(), &["--client", "--no-placement-meta"]);
    let doc = hcl1_decode(&root.read("/opt/nomad/config/default.hcl")).unwrap();
    assert!(doc["client"][0].get("meta").is_none(), "{doc}");

    let mut vm = instance();
    vm["compute"]["zone"] = json!("");
    let root = FakeRoot::new();
    generate(&root, &vm, &["--client"]);
    let doc = hcl1_decode(&root.read("/opt/nomad/config/default.hcl")).unwrap();
    assert_eq!(
        doc["client"][0]["meta"],
        json!([{ "azure.fault_domain": "0", "azure.vm_size": "Standard_D2ds_v5" }])
    );
}
