//! run-nomad reading the instance metadata, as custom data runs it: against the IMDS double
//! (scripted failures: 410 and 404, 429 with Retry-After, 500s until the deadline, malformed
//! JSON, 403 with its body), with missing or ambiguous network data, with a proxy in the
//! environment, and with `--skip-nomad-config`, which reads none. A failed run writes no file
//! and runs no service command.

mod common;

use std::time::{Duration, Instant};

use common::{
    against_imds, instance, nothing_written, output, run_nomad, FakeRoot, StubSystemctl,
    LAYOUT_ARGS, START_BOTH as START,
};
use serde_json::json;
use support::doubles::imds::{ImdsDouble, Reply};

#[test]
fn imds_410_then_200_configures_and_starts_nomad() {
    let root = FakeRoot::new();
    let imds = ImdsDouble::start(instance());
    imds.script([Reply::Status(410), Reply::Status(404)]);
    let systemctl = StubSystemctl::new();
    let (ok, stdout, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &[
            "--server",
            "--num-servers",
            "3",
            "--scale-set-name",
            "nomad-servers",
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("answered 410"),
        "the retry is logged: {stderr}"
    );
    let requests = imds.requests();
    assert_eq!(requests.len(), 3);
    for r in &requests {
        assert_eq!(r.path, "/metadata/instance");
        assert_eq!(r.header("Metadata"), Some("true"));
        assert_eq!(r.query_param("api-version"), Some("2025-04-07"));
        assert_eq!(r.query_param("extended"), Some("true"));
    }
    let hcl = root.read("/opt/nomad/config/default.hcl");
    assert!(hcl.contains("vm_scale_set=nomad-servers"), "{hcl}");
    assert_eq!(systemctl.take_calls(), START);
}

#[test]
fn imds_429_waits_as_long_as_retry_after_says() {
    let root = FakeRoot::new();
    let imds = ImdsDouble::start(instance());
    imds.script([Reply::Throttled {
        retry_after_secs: 2,
    }]);
    let systemctl = StubSystemctl::new();
    let start = Instant::now();
    let (ok, stdout, stderr) = against_imds(&root, &imds, &systemctl, &["--client", "--no-start"]);
    assert!(ok, "{stdout}\n{stderr}");
    // The backoff alone would retry within half a second.
    assert!(
        start.elapsed() >= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert!(stderr.contains("retrying in 2.0s"), "{stderr}");
    assert_eq!(imds.requests().len(), 2);
}

#[test]
fn imds_500s_until_the_deadline_fail_clearly_and_write_nothing() {
    let root = FakeRoot::new();
    let imds = ImdsDouble::start(instance());
    imds.set_fallback(Reply::Status(500));
    let systemctl = StubSystemctl::new();
    let (ok, _, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &["--client", "--imds-timeout", "2"],
    );
    assert!(!ok);
    assert!(
        stderr.contains("failed to read the instance metadata from http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(stderr.contains("gave up reading IMDS after"), "{stderr}");
    assert!(stderr.contains("(--imds-timeout)"), "{stderr}");
    assert!(stderr.contains("answered 500"), "{stderr}");
    assert!(imds.requests().len() >= 2);
    nothing_written(&root);
    assert!(systemctl.take_calls().is_empty());
}

#[test]
fn malformed_json_is_retried_then_reported() {
    let root = FakeRoot::new();
    let imds = ImdsDouble::start(instance());
    let garbage = Reply::Body {
        status: 200,
        body: "{\"compute\": {\"vmId\": ".into(),
    };
    imds.script([garbage.clone()]);
    let systemctl = StubSystemctl::new();
    let (ok, _, stderr) = against_imds(&root, &imds, &systemctl, &["--client", "--no-start"]);
    assert!(ok, "one garbled answer is retried: {stderr}");

    let root = FakeRoot::new();
    imds.set_fallback(garbage);
    let (ok, _, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &["--client", "--imds-timeout", "1"],
    );
    assert!(!ok);
    assert!(
        stderr.contains("is not a valid instance metadata document"),
        "{stderr}"
    );
    assert!(
        stderr.contains("it starts: {\"compute\": {\"vmId\":"),
        "{stderr}"
    );
    nothing_written(&root);
}

#[test]
fn missing_network_data_says_what_is_missing_and_writes_nothing() {
    let imds = ImdsDouble::start(instance());
    let systemctl = StubSystemctl::new();
    let cases = [
        (json!(null), "the instance metadata has no `network` object"),
        (json!({}), "no `network.interface` list"),
        (json!({ "interface": [] }), "`network.interface` is empty"),
        (
            json!({ "interface": [{ "macAddress": "7C1E52A4B3F2", "ipv4": { "ipAddress": [] } }] }),
            "interface[0] (MAC 7C1E52A4B3F2) has an empty ipv4.ipAddress list",
        ),
        (
            json!({ "interface": [{ "ipv4": { "ipAddress": [{ "privateIpAddress": "10.0.0.1\"}" }] } }] }),
            "`network.interface[0].ipv4.ipAddress[0].privateIpAddress` is not an IPv4 address",
        ),
    ];
    for (network, message) in cases {
        let mut doc = instance();
        match network {
            serde_json::Value::Null => {
                doc.as_object_mut().unwrap().remove("network");
            }
            n => doc["network"] = n,
        }
        imds.set_instance(doc);
        let root = FakeRoot::new();
        let before = imds.requests().len();
        let (ok, _, stderr) = against_imds(&root, &imds, &systemctl, &["--client"]);
        assert!(!ok);
        assert!(stderr.contains("no advertise address"), "{stderr}");
        assert!(stderr.contains(message), "{message}: {stderr}");
        assert_eq!(
            imds.requests().len(),
            before + 1,
            "a complete answer is not retried"
        );
        nothing_written(&root);
    }
    assert!(systemctl.take_calls().is_empty());
}

#[test]
fn client_errors_fail_at_once_with_the_body() {
    let root = FakeRoot::new();
    let imds = ImdsDouble::start(instance());
    imds.script([Reply::Body {
        status: 403,
        body: "{\"error\": \"Forbidden by a local policy\"}".into(),
    }]);
    let systemctl = StubSystemctl::new();
    let (ok, _, stderr) = against_imds(&root, &imds, &systemctl, &["--client"]);
    assert!(!ok);
    assert!(stderr.contains("answered 403"), "{stderr}");
    assert!(stderr.contains("Forbidden by a local policy"), "{stderr}");
    assert_eq!(imds.requests().len(), 1);
    nothing_written(&root);
}

#[test]
fn imds_is_never_reached_through_a_proxy() {
    let root = FakeRoot::new();
    let imds = ImdsDouble::start(instance());
    let systemctl = StubSystemctl::new();
    let mut cmd = run_nomad();
    // A proxy that refuses every connection: honouring it would fail the run.
    cmd.env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .arg("--root")
        .arg(root.path())
        .arg("--imds-endpoint")
        .arg(imds.url())
        .arg("--systemctl")
        .arg(systemctl.program())
        .arg("--no-start")
        .args(LAYOUT_ARGS)
        .args(["--client", "--imds-timeout", "3"]);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(imds.requests().len(), 1);
}

#[test]
fn several_interfaces_need_the_route_or_advertise_addr() {
    let mut doc = instance();
    doc["network"]["interface"] = json!([
        { "macAddress": "000D3A000001", "ipv4": { "ipAddress": [{ "privateIpAddress": "10.1.0.4" }] } },
        { "macAddress": "000D3A000002", "ipv4": { "ipAddress": [{ "privateIpAddress": "10.2.0.4" }] } },
    ]);
    let root = FakeRoot::new();
    let metadata = root.metadata_file(&doc);
    let base = |root: &FakeRoot| {
        let mut cmd = run_nomad();
        cmd.arg("--root")
            .arg(root.path())
            .arg("--metadata-file")
            .arg(&metadata)
            .arg("--no-start")
            .args(LAYOUT_ARGS)
            .arg("--client");
        cmd
    };
    let (ok, _, stderr) = output(&mut base(&root));
    assert!(!ok);
    assert!(stderr.contains("2 network interfaces"), "{stderr}");
    assert!(stderr.contains("pass --advertise-addr"), "{stderr}");
    nothing_written(&root);

    let (ok, _, stderr) = output(base(&root).args(["--advertise-addr", "10.2.0.4"]));
    assert!(ok, "{stderr}");
    let hcl = root.read("/opt/nomad/config/default.hcl");
    assert!(hcl.contains("http = \"10.2.0.4\""), "{hcl}");
}

#[test]
fn skip_nomad_config_writes_only_the_service_and_reads_no_metadata() {
    let root = FakeRoot::new();
    // Nothing listens here: reading IMDS would fail the run.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .arg("--imds-endpoint")
        .arg(format!("http://127.0.0.1:{port}"))
        .args(LAYOUT_ARGS)
        .args([
            "--no-start",
            "--server",
            "--num-servers",
            "3",
            "--skip-nomad-config",
        ]);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(!root.at("/opt/nomad/config/default.hcl").exists());
    let unit = root.read("/etc/systemd/system/nomad.service");
    assert!(!unit.contains("ConditionFileNotEmpty"), "{unit}");
    assert!(
        unit.contains("ExecStart=/opt/nomad/bin/nomad agent"),
        "{unit}"
    );
}
