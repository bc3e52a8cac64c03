//! Parity with the script run-nomad replaces (hashicorp/terraform-azurerm-nomad,
//! modules/run-nomad/run-nomad): for the same metadata, what it configured is contained in
//! what run-nomad configures. The original's output is described here as facts about its
//! behaviour (which metadata field fed which setting), not as its text:
//!
//! - `datacenter` and `region` = `compute.location`, `name` = `compute.vmId`,
//!   `bind_addr` = "0.0.0.0";
//! - `advertise` `http`/`rpc`/`serf` = `network.interface[0].ipv4.ipAddress[0].privateIpAddress`;
//! - `server { enabled = true, bootstrap_expect = --num-servers }` with --server,
//!   `client { enabled = true }` with --client;
//! - `consul { address = "127.0.0.1:8500" }`;
//! - supervisor program `nomad` at /etc/supervisor/conf.d/run-nomad.conf: command
//!   `<bin>/nomad agent -config <config> -data-dir <data>`, stdout/stderr logs
//!   `<log>/nomad-stdout.log` and `<log>/nomad-error.log`, numprocs=1, autostart=true,
//!   autorestart=true, stopsignal=INT, user = --user, or root with --use-sudo and for clients.
//!
//! run-nomad's configuration is decoded with the real HCL1 parser and must be a superset.

mod common;

use std::collections::BTreeMap;

use common::{generate, hcl1_decode, instance, FakeRoot};
use serde_json::{json, Value};

/// What the original wrote into default.hcl, decoded the way HCL1 decodes it.
fn original_config(doc: &Value, num_servers: Option<u32>, client: bool) -> Value {
    let compute = &doc["compute"];
    let ip = &doc["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"];
    let mut config = json!({
        "datacenter": compute["location"],
        "name": compute["vmId"],
        "region": compute["location"],
        "bind_addr": "0.0.0.0",
        "advertise": [{ "http": ip, "rpc": ip, "serf": ip }],
        "consul": [{ "address": "127.0.0.1:8500" }],
    });
    if client {
        config["client"] = json!([{ "enabled": true }]);
    }
    if let Some(n) = num_servers {
        config["server"] = json!([{ "enabled": true, "bootstrap_expect": n }]);
    }
    config
}

/// `ours` holds everything `original` holds: same scalars, objects with at least the same
/// keys, and lists (HCL1 decodes blocks as lists) element by element.
fn contains(ours: &Value, original: &Value, path: &str) -> Result<(), String> {
    match (ours, original) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in b {
                let Some(mine) = a.get(key) else {
                    return Err(format!("{path}/{key} is missing"));
                };
                contains(mine, value, &format!("{path}/{key}"))?;
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() < b.len() {
                return Err(format!(
                    "{path} has {} entries, the original {}",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (mine, theirs)) in a.iter().zip(b).enumerate() {
                contains(mine, theirs, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{path}: {a} where the original had {b}")),
    }
}

fn check(args: &[&str], num_servers: Option<u32>, client: bool) {
    let doc = instance();
    let root = FakeRoot::new();
    generate(&root, &doc, args);
    let ours = hcl1_decode(&root.read("/opt/nomad/config/default.hcl")).unwrap();
    let original = original_config(&doc, num_servers, client);
    if let Err(difference) = contains(&ours, &original, "") {
        panic!("{difference}\nours: {ours:#}\noriginal: {original:#}");
    }
}

#[test]
fn a_server_config_contains_the_originals() {
    check(&["--server", "--num-servers", "3"], Some(3), false);
}

#[test]
fn a_client_config_contains_the_originals() {
    check(&["--client"], None, true);
}

#[test]
fn a_server_and_client_config_contains_the_originals() {
    check(
        &["--server", "--client", "--num-servers", "1"],
        Some(1),
        true,
    );
}

#[test]
fn the_comparison_notices_a_difference() {
    let doc = instance();
    let mut other = original_config(&doc, Some(3), false);
    other["advertise"][0]["rpc"] = json!("10.0.0.99");
    assert!(contains(&original_config(&doc, Some(3), false), &other, "").is_err());
    let missing = original_config(&doc, Some(3), true);
    assert!(
        contains(&original_config(&doc, Some(3), false), &missing, "")
            .unwrap_err()
            .contains("/client is missing")
    );
}

/// `key=value` lines of the `[program:nomad]` section.
fn program_section(text: &str) -> BTreeMap<String, String> {
    let mut in_section = false;
    let mut keys = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == "[program:nomad]";
        } else if in_section && !line.starts_with(';') && !line.is_empty() {
            let (k, v) = line.split_once('=').unwrap();
            keys.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    keys
}

#[test]
fn the_supervisor_program_contains_the_originals() {
    for (args, user) in [
        (&["--server", "--num-servers", "3"][..], "nomad"),
        (
            &["--server", "--num-servers", "3", "--use-sudo"][..],
            "root",
        ),
        (&["--client"][..], "root"),
    ] {
        let root = FakeRoot::new();
        let mut all = vec!["--init", "supervisor"];
        all.extend_from_slice(args);
        generate(&root, &instance(), &all);
        let ours = program_section(&root.read("/etc/supervisor/conf.d/run-nomad.conf"));
        let original = [
            (
                "command",
                "/opt/nomad/bin/nomad agent -config /opt/nomad/config -data-dir /opt/nomad/data",
            ),
            ("stdout_logfile", "/opt/nomad/log/nomad-stdout.log"),
            ("stderr_logfile", "/opt/nomad/log/nomad-error.log"),
            ("numprocs", "1"),
            ("autostart", "true"),
            ("autorestart", "true"),
            ("stopsignal", "INT"),
            ("user", user),
        ];
        for (key, value) in original {
            assert_eq!(
                ours.get(key).map(String::as_str),
                Some(value),
                "{args:?}: {key} in {ours:?}"
            );
        }
    }
}
