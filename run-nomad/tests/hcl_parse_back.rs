//! The generated agent configuration, parsed back with HashiCorp's own HCL version 1 library
//! (the parser Nomad uses; see tests/fixtures/hcl1-decode), must hold exactly the intended
//! settings: for each role and mode, and with hostile values in the metadata and the flags.
//! Comparing the whole decoded document means a value that added, removed or changed any
//! other setting fails the test.

mod common;

use common::{generate, go_unquote, hcl1_decode, instance, FakeRoot, GOSSIP_KEY};
use run_nomad::discover::format as go_discover;
use serde_json::{json, Value};

const VM_ID: &str = "5f3c1e2a-7b6d-4c21-9e8f-0a1b2c3d4e5f";
const SUBSCRIPTION: &str = "0b1f6471-1bf0-4dda-aec3-111122223333";
const IP: &str = "10.10.1.6";

/// Strings built to break out of a quoted HCL1 string, start an interpolation or a template
/// directive, or smuggle in another setting.
fn hostile() -> Vec<String> {
    [
        "q\"uote",
        "back\\slash",
        "trailing\\",
        "new\nline",
        "tab\tand\rreturn",
        "ctl\u{1}\u{1b}\u{7f}\u{85}",
        "${interpolation}",
        "${\"} acl { enabled = false } x = {\"",
        "$${escaped}",
        "\\${backslashed}",
        "%{ if true }directive%{ endif }",
        "\"}\nserver { enabled = false }\n#",
        "unicode ✓ é 😀 \u{2028}\u{feff}",
        " spaced = value ",
        "{{ tera }} {% raw %}",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn advertise() -> Value {
    json!([{ "http": IP, "rpc": IP, "serf": IP }])
}

fn autopilot(n: u32) -> Value {
    json!([{
        "cleanup_dead_servers": true,
        "last_contact_threshold": "200ms",
        "max_trailing_logs": 250,
        "server_stabilization_time": "10s",
        "min_quorum": n,
    }])
}

/// What every generated config holds besides the test's own settings: leaving the cluster on
/// stop signals (servers on both and rejoin after a reboot; pure clients on SIGTERM only, when
/// they drain themselves within the 5-minute terminate notice, as the stand-in is Nomad
/// 1.9.3), HTTPS without client certificates, and, for clients, the VM's zone, fault domain and
/// size from the fixture as node metadata.
fn complete(mut doc: Value) -> Value {
    let server = doc.get("server").is_some();
    doc["leave_on_interrupt"] = json!(server);
    doc["leave_on_terminate"] = json!(true);
    if server {
        doc["server"][0]["rejoin_after_leave"] = json!(true);
    } else if let Some(client) = doc.get_mut("client") {
        client[0]["drain_on_shutdown"] = json!([{
            "deadline": "4m15s",
            "force": false,
            "ignore_system_jobs": false,
        }]);
    }
    if let Some(tls) = doc.get_mut("tls") {
        tls[0]["verify_https_client"] = json!(false);
    }
    if let Some(client) = doc.get_mut("client") {
        let client = &mut client[0];
        if client.get("meta").is_none() {
            client["meta"] = json!([{}]);
        }
        let meta = client["meta"][0].as_object_mut().unwrap();
        for (key, value) in [
            ("azure.zone", "2"),
            ("azure.fault_domain", "0"),
            ("azure.vm_size", "Standard_D2ds_v5"),
        ] {
            meta.entry(key).or_insert(json!(value));
        }
    }
    doc
}

fn decode(root: &FakeRoot) -> Value {
    let text = root.read("/opt/nomad/config/default.hcl");
    hcl1_decode(&text).unwrap_or_else(|e| panic!("HCL1 refused the config: {e}\n{text}"))
}

fn assert_decodes_to(root: &FakeRoot, expected: Value) {
    let expected = complete(expected);
    let decoded = decode(root);
    assert!(
        decoded == expected,
        "decoded:\n{}\nexpected:\n{}\nfile:\n{}",
        serde_json::to_string_pretty(&decoded).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap(),
        root.read("/opt/nomad/config/default.hcl")
    );
}

fn scale_set_join(rg: &str, name: &str) -> String {
    go_discover(&[
        ("provider", "azure"),
        ("resource_group", rg),
        ("vm_scale_set", name),
        ("subscription_id", SUBSCRIPTION),
    ])
}

#[test]
fn a_server_like_the_original_plus_autopilot() {
    let root = FakeRoot::new();
    generate(&root, &instance(), &["--server", "--num-servers", "3"]);
    assert_decodes_to(
        &root,
        json!({
            "datacenter": "eastus2",
            "region": "eastus2",
            "name": VM_ID,
            "bind_addr": "0.0.0.0",
            "data_dir": "/opt/nomad/data",
            "advertise": advertise(),
            "server": [{ "enabled": true, "bootstrap_expect": 3 }],
            "autopilot": autopilot(3),
            "consul": [{ "address": "127.0.0.1:8500" }],
        }),
    );
}

#[test]
fn a_client_joining_by_tag() {
    let root = FakeRoot::new();
    generate(
        &root,
        &instance(),
        &["--client", "--cluster-tag-key", "cluster"],
    );
    assert_decodes_to(
        &root,
        json!({
            "datacenter": "eastus2",
            "region": "eastus2",
            "name": VM_ID,
            "bind_addr": "0.0.0.0",
            "data_dir": "/opt/nomad/data",
            "advertise": advertise(),
            "client": [{
                "enabled": true,
                "server_join": [{ "retry_join": [format!(
                    "provider=azure tag_name=cluster tag_value=nomad-prod subscription_id={SUBSCRIPTION}"
                )] }],
            }],
        }),
    );
}

#[test]
fn a_secured_server_and_client_joining_by_scale_set() {
    let root = FakeRoot::new();
    generate(
        &root,
        &instance(),
        &[
            "--server",
            "--client",
            "--num-servers",
            "5",
            "--scale-set-name",
            "nomad-servers",
            "--gossip-key-file",
            "/opt/nomad/config/gossip.key",
            "--tls-ca-file",
            "/opt/nomad/tls/ca.pem",
            "--tls-cert-file",
            "/opt/nomad/tls/server.pem",
            "--tls-key-file",
            "/opt/nomad/tls/server-key.pem",
            "--acl",
            "--node-class",
            "batch",
            "--meta",
            "rack=r7",
        ],
    );
    let join = json!([{ "retry_join": [scale_set_join("nomad-prod-rg", "nomad-servers")] }]);
    assert_decodes_to(
        &root,
        json!({
            "datacenter": "eastus2",
            "region": "eastus2",
            "name": VM_ID,
            "bind_addr": "0.0.0.0",
            "data_dir": "/opt/nomad/data",
            "advertise": advertise(),
            "server": [{
                "enabled": true,
                "bootstrap_expect": 5,
                "encrypt": GOSSIP_KEY,
                "server_join": join,
            }],
            "autopilot": autopilot(5),
            "client": [{
                "enabled": true,
                "node_class": "batch",
                "server_join": join,
                "meta": [{ "rack": "r7" }],
            }],
            "tls": [{
                "http": true,
                "rpc": true,
                "ca_file": "/opt/nomad/tls/ca.pem",
                "cert_file": "/opt/nomad/tls/server.pem",
                "key_file": "/opt/nomad/tls/server-key.pem",
                "verify_server_hostname": true,
            }],
            "acl": [{ "enabled": true }],
        }),
    );
}

#[test]
fn retry_join_and_consul_modes() {
    let root = FakeRoot::new();
    generate(
        &root,
        &instance(),
        &[
            "--client",
            "--retry-join",
            "10.0.0.4",
            "--retry-join",
            "nomad-1.internal:4648",
        ],
    );
    let client = &decode(&root)["client"][0];
    assert_eq!(
        client["server_join"],
        json!([{ "retry_join": ["10.0.0.4", "nomad-1.internal:4648"] }])
    );
    assert!(decode(&root).get("consul").is_none());

    let root = FakeRoot::new();
    generate(
        &root,
        &instance(),
        &["--client", "--consul-address", "10.0.0.9:8500"],
    );
    let decoded = decode(&root);
    assert_eq!(decoded["consul"], json!([{ "address": "10.0.0.9:8500" }]));
    assert!(decoded["client"][0].get("server_join").is_none());
}

/// Values from the instance metadata: location (datacenter and region), vmId (name), the
/// subscription, and the VM's own tag, all hostile.
#[test]
fn hostile_metadata_values_decode_to_exactly_themselves() {
    for (i, bad) in hostile().into_iter().enumerate() {
        if bad.is_empty() {
            continue; // empty location and vmId are refused; covered elsewhere
        }
        let mut doc = instance();
        let tag_key = format!("cluster {bad}");
        doc["compute"]["location"] = json!(format!("loc{i} {bad}"));
        doc["compute"]["vmId"] = json!(format!("vm{i} {bad}"));
        doc["compute"]["subscriptionId"] = json!(format!("sub{i} {bad}"));
        doc["compute"]["tagsList"] = json!([{ "name": tag_key, "value": bad }]);
        let root = FakeRoot::new();
        generate(&root, &doc, &["--client", "--cluster-tag-key", &tag_key]);
        let join = go_discover(&[
            ("provider", "azure"),
            ("tag_name", &tag_key),
            ("tag_value", &bad),
            ("subscription_id", &format!("sub{i} {bad}")),
        ]);
        assert_decodes_to(
            &root,
            json!({
                "datacenter": format!("loc{i} {bad}"),
                "region": format!("loc{i} {bad}"),
                "name": format!("vm{i} {bad}"),
                "bind_addr": "0.0.0.0",
                "data_dir": "/opt/nomad/data",
            "data_dir": "/opt/nomad/data",
                "advertise": advertise(),
                "client": [{
                    "enabled": true,
                    "server_join": [{ "retry_join": [join] }],
                }],
            }),
        );
    }
}

/// Values from flags: datacenter, region, node class, meta keys and values, the scale set and
/// its resource group, and the environment (which belongs to the unit, never to the config).
#[test]
fn hostile_flag_values_decode_to_exactly_themselves() {
    let values = hostile();
    let mut args: Vec<String> = vec![
        "--server".into(),
        "--client".into(),
        "--num-servers".into(),
        "3".into(),
        "--datacenter".into(),
        format!("dc {}", values[7]),
        "--region".into(),
        format!("region {}", values[11]),
        "--node-class".into(),
        format!("class {}", values[6]),
        "--scale-set-name".into(),
        format!("servers {}", values[3]),
        "--scale-set-resource-group".into(),
        format!("rg {}", values[0]),
    ];
    let mut meta = serde_json::Map::new();
    for (i, bad) in values.iter().enumerate() {
        // Keys may not hold control characters, and the first `=` ends the key.
        let key: String = format!("key{i} {bad}")
            .chars()
            .filter(|c| !c.is_control() && *c != '=')
            .collect();
        args.push("--meta".into());
        args.push(format!("{key}={bad}"));
        meta.insert(key, json!(bad));
        // systemd's environment file refuses U+FEFF (systemd.exec(5)); run-nomad does too.
        if !bad.contains(['\0', '\u{feff}']) {
            args.push("--environment".into());
            args.push(format!("HOSTILE_{i}={bad}"));
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = FakeRoot::new();
    generate(&root, &instance(), &args);
    let join = json!([{ "retry_join": [scale_set_join(
        &format!("rg {}", values[0]),
        &format!("servers {}", values[3]),
    )] }]);
    assert_decodes_to(
        &root,
        json!({
            "datacenter": format!("dc {}", values[7]),
            "region": format!("region {}", values[11]),
            "name": VM_ID,
            "bind_addr": "0.0.0.0",
            "data_dir": "/opt/nomad/data",
            "advertise": advertise(),
            "server": [{ "enabled": true, "bootstrap_expect": 3, "server_join": join }],
            "autopilot": autopilot(3),
            "client": [{
                "enabled": true,
                "node_class": format!("class {}", values[6]),
                "server_join": join,
                "meta": [Value::Object(meta)],
            }],
        }),
    );
}

#[test]
fn hostile_retry_join_and_consul_addresses_stay_single_strings() {
    // go-discover strings with hostile values, quoted the way go-discover reads them: the
    // entries reach the config unchanged, each one string.
    let values = hostile();
    let mut args = vec!["--client".to_string()];
    let expected: Vec<String> = values
        .iter()
        .map(|v| go_discover(&[("provider", "aws"), ("tag_key", "role"), ("tag_value", v)]))
        .collect();
    for v in &expected {
        args.push("--retry-join".into());
        args.push(v.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = FakeRoot::new();
    generate(&root, &instance(), &args);
    assert_eq!(
        decode(&root)["client"][0]["server_join"],
        json!([{ "retry_join": expected }])
    );

    let consul = "consul\"}${x}%{y}\\:8500";
    let root = FakeRoot::new();
    generate(
        &root,
        &instance(),
        &["--client", "--consul-address", consul],
    );
    assert_decodes_to(
        &root,
        json!({
            "datacenter": "eastus2",
            "region": "eastus2",
            "name": VM_ID,
            "bind_addr": "0.0.0.0",
            "data_dir": "/opt/nomad/data",
            "advertise": advertise(),
            "client": [{ "enabled": true }],
            "consul": [{ "address": consul }],
        }),
    );
}

/// go-discover reads a quoted value with Go's strconv.Unquote: the words run-nomad quotes
/// come back as the values.
#[test]
fn go_discover_values_unquote_to_themselves_in_go() {
    let values = hostile();
    let quoted: Vec<String> = values
        .iter()
        .map(|v| {
            let pair = go_discover(&[("k", v)]);
            pair.strip_prefix("k=").unwrap().to_string()
        })
        .collect();
    // Only quoted words go through Unquote; bare words are taken as they are.
    let (to_unquote, originals): (Vec<String>, Vec<String>) = quoted
        .iter()
        .zip(&values)
        .filter(|(q, _)| q.starts_with('"'))
        .map(|(q, v)| (q.clone(), v.clone()))
        .unzip();
    assert!(to_unquote.len() >= values.len() - 2, "{quoted:?}");
    assert_eq!(go_unquote(&to_unquote).unwrap(), originals);
    for (q, v) in quoted.iter().zip(&values) {
        if !q.starts_with('"') {
            assert_eq!(q, v);
            assert!(!v.contains([' ', '=', '"', '\\']), "{v:?} needed quotes");
        }
    }
}

/// A control check: the parser really rejects what escaping prevents.
#[test]
fn the_parser_rejects_unescaped_breakouts() {
    assert!(
        hcl1_decode("a = \"x\\$y\"\n").is_err(),
        "\\$ is not an HCL1 escape"
    );
    let smuggled = hcl1_decode("a = \"${\" acl = \"}\"\n").unwrap();
    assert_eq!(
        smuggled,
        json!({ "a": "${\" acl = \"}" }),
        "${{ swallows quotes"
    );
    assert!(hcl1_decode("a = \"new\nline\"\n").is_err());
}
