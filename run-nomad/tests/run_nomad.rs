//! run-nomad end to end, as custom data runs it: against the IMDS double (scripted failures),
//! with a stub systemctl that records its calls, with --dry-run and --no-start, and with bad
//! input. A failed run writes no file and runs no service command.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::{
    instance, output, run_nomad, write_executable, FakeRoot, LiveInstall, StubSystemctl,
    GOSSIP_KEY, IS_ACTIVE, LAYOUT_ARGS, NOMAD_GID, NOMAD_UNIT, RESTART_AGENT, START_BOTH,
    WATCHER_UNIT,
};
use serde_json::json;
use support::doubles::imds::{ImdsDouble, Reply};

const START: [&str; 7] = START_BOTH;

/// run-nomad against a fake root, reading the IMDS double, with a stub systemctl.
fn against_imds(
    root: &FakeRoot,
    imds: &ImdsDouble,
    systemctl: &StubSystemctl,
    args: &[&str],
) -> (bool, String, String) {
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .arg("--imds-endpoint")
        .arg(imds.url())
        .arg("--systemctl")
        .arg(systemctl.program())
        .args(LAYOUT_ARGS)
        .args(args);
    output(&mut cmd)
}

fn nothing_written(root: &FakeRoot) {
    assert!(!root.at("/opt/nomad/config/default.hcl").exists());
    assert!(!root.at("/etc/systemd/system/nomad.service").exists());
}

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

/// The systemd sequence on a live install: start, leave alone when unchanged and active,
/// restart on change.
#[test]
fn systemd_is_started_then_left_alone_until_something_changes() {
    let live = LiveInstall::new("live");
    let systemctl = StubSystemctl::new();
    let metadata = live.path("imds.json");
    fs::write(&metadata, instance().to_string()).unwrap();
    let run = |extra: &[&str]| {
        let mut cmd = run_nomad();
        cmd.arg("--metadata-file")
            .arg(&metadata)
            .arg("--systemctl")
            .arg(systemctl.program())
            .args(live.args("live"))
            .arg("--client")
            .args(extra);
        let (ok, stdout, stderr) = output(&mut cmd);
        assert!(ok, "{stdout}\n{stderr}");
        stderr
    };
    run(&[]);
    assert_eq!(systemctl.take_calls(), START);

    let stderr = run(&[]);
    assert_eq!(systemctl.take_calls(), IS_ACTIVE);
    assert!(stderr.contains("leaving it be"), "{stderr}");

    // The agent's configuration changes: the agent restarts, the watcher is left running.
    run(&["--meta", "rack=r9"]);
    assert_eq!(systemctl.take_calls(), RESTART_AGENT);

    // The unit changes (an environment variable): daemon-reload and restart.
    run(&["--meta", "rack=r9", "--environment", "X=1"]);
    assert_eq!(systemctl.take_calls(), RESTART_AGENT);

    // Stopped behind our back, files unchanged: started.
    systemctl.set_inactive(NOMAD_UNIT);
    run(&["--meta", "rack=r9", "--environment", "X=1"]);
    assert_eq!(systemctl.take_calls(), RESTART_AGENT);

    // The watcher stopped: started again, the agent left alone.
    systemctl.set_inactive(WATCHER_UNIT);
    run(&["--meta", "rack=r9", "--environment", "X=1"]);
    let mut expected = IS_ACTIVE.to_vec();
    expected.extend([
        "enable nomad-scheduled-events.service",
        "restart nomad-scheduled-events.service",
    ]);
    assert_eq!(systemctl.take_calls(), expected);

    // A change to what the watcher is told (an ACL token for it): only the watcher restarts.
    let token = live.path("watcher.token");
    fs::write(&token, "00000000-0000-4000-8000-000000000001\n").unwrap();
    let token_arg = token.display().to_string();
    run(&[
        "--meta",
        "rack=r9",
        "--environment",
        "X=1",
        "--watch-events-token-file",
        &token_arg,
    ]);
    let mut expected = IS_ACTIVE.to_vec();
    expected.extend([
        "daemon-reload",
        "enable nomad-scheduled-events.service",
        "restart nomad-scheduled-events.service",
    ]);
    assert_eq!(systemctl.take_calls(), expected);
    let unit = fs::read_to_string(live.path("unit").join(WATCHER_UNIT)).unwrap();
    assert!(
        unit.contains(&format!("--nomad-token-file {token_arg}")),
        "{unit}"
    );
    assert!(
        !unit.contains("00000000-0000-4000-8000-000000000001"),
        "{unit}"
    );

    // Turned off: stopped and disabled, its unit removed, systemd reloaded.
    run(&[
        "--meta",
        "rack=r9",
        "--environment",
        "X=1",
        "--no-watch-events",
    ]);
    let mut expected = vec!["is-active --quiet nomad.service"];
    expected.extend([
        "disable --now nomad-scheduled-events.service",
        "daemon-reload",
    ]);
    assert_eq!(systemctl.take_calls(), expected);
    assert!(!live.path("unit").join(WATCHER_UNIT).exists());
}

#[test]
fn a_failing_systemctl_is_reported_with_its_stderr() {
    let live = LiveInstall::new("live");
    let dir = tempfile::tempdir().unwrap();
    let failing = dir.path().join("systemctl");
    write_executable(
        &failing,
        "#!/bin/sh\n[ \"$1\" = is-active ] && exit 3\necho 'Failed to connect to bus' >&2\nexit 1\n",
    );
    let metadata = live.path("imds.json");
    fs::write(&metadata, instance().to_string()).unwrap();
    let mut cmd = run_nomad();
    cmd.arg("--metadata-file")
        .arg(&metadata)
        .arg("--systemctl")
        .arg(&failing)
        .args(live.args("live"))
        .arg("--client");
    let (ok, _, stderr) = output(&mut cmd);
    assert!(!ok);
    assert!(stderr.contains("failed to start Nomad"), "{stderr}");
    assert!(stderr.contains("daemon-reload` failed"), "{stderr}");
    assert!(stderr.contains("Failed to connect to bus"), "{stderr}");
}

#[test]
fn dry_run_prints_files_and_commands_and_touches_nothing() {
    let root = FakeRoot::new();
    let imds = ImdsDouble::start(instance());
    let systemctl = StubSystemctl::new();
    let (ok, stdout, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &[
            "--dry-run",
            "--server",
            "--num-servers",
            "3",
            "--gossip-key-file",
            "/opt/nomad/config/gossip.key",
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    let hcl_path = root.at("/opt/nomad/config/default.hcl");
    assert!(
        stdout.contains(&format!(
            "would write {} (mode 0640, owner 0:{NOMAD_GID}, new):",
            hcl_path.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("    bootstrap_expect = 3"), "{stdout}");
    assert!(
        stdout.contains("encrypt          = \"<redacted>\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("nomad.service (mode 0644, owner 0:0, new):"),
        "{stdout}"
    );
    let ctl = systemctl.program().display().to_string();
    assert!(
        stdout.contains(&format!("would run: {ctl} daemon-reload")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("would run: {ctl} restart nomad.service")),
        "{stdout}"
    );
    assert!(!stdout.contains(GOSSIP_KEY) && !stderr.contains(GOSSIP_KEY));
    nothing_written(&root);
    assert!(systemctl.take_calls().is_empty(), "dry-run ran systemctl");
}

#[test]
fn the_gossip_key_is_never_logged_and_the_config_is_0640_root_and_the_nomad_group() {
    let root = FakeRoot::new();
    let metadata = root.metadata_file(&instance());
    let mut cmd = run_nomad();
    cmd.arg("-vv")
        .arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .arg("--no-start")
        .args(LAYOUT_ARGS)
        .args(["--server", "--num-servers", "3", "--gossip-key", GOSSIP_KEY]);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(GOSSIP_KEY) && !stderr.contains(GOSSIP_KEY),
        "{stderr}"
    );
    let hcl = root.at("/opt/nomad/config/default.hcl");
    let meta = fs::metadata(&hcl).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (0, NOMAD_GID));
    assert!(fs::read_to_string(&hcl).unwrap().contains(GOSSIP_KEY));
    let unit = fs::metadata(root.at("/etc/systemd/system/nomad.service")).unwrap();
    assert_eq!(
        (unit.mode() & 0o7777, unit.uid(), unit.gid()),
        (0o644, 0, 0)
    );

    // A bad key is refused without being echoed.
    let bad = "c2hvcnQta2V5";
    let root = FakeRoot::new();
    fs::write(root.at("/opt/nomad/config/gossip.key"), bad).unwrap();
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .args(LAYOUT_ARGS)
        .args([
            "--server",
            "--num-servers",
            "3",
            "--gossip-key-file",
            "/opt/nomad/config/gossip.key",
        ]);
    let (ok, _, stderr) = output(&mut cmd);
    assert!(!ok);
    assert!(
        stderr.contains("--gossip-key-file /opt/nomad/config/gossip.key"),
        "{stderr}"
    );
    assert!(stderr.contains("decodes to 9 bytes"), "{stderr}");
    assert!(!stderr.contains(bad), "{stderr}");
    nothing_written(&root);
}

#[test]
fn defaults_follow_the_executable_like_the_original() {
    let root = FakeRoot::new();
    let exe = root.at("/opt/nomad/bin/run-nomad");
    // Not fs::copy: see copy_executable (ETXTBSY under parallel tests).
    support::doubles::bins::copy_executable(env!("CARGO_BIN_EXE_run-nomad").as_ref(), &exe);
    let metadata = root.metadata_file(&instance());
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .args(["--no-start", "--server", "--num-servers", "1"]);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(ok, "{stdout}\n{stderr}");
    let unit = root.read("/etc/systemd/system/nomad.service");
    assert!(
        unit.contains(
            "ExecStart=/opt/nomad/bin/nomad agent -config /opt/nomad/config -data-dir /opt/nomad/data"
        ),
        "{unit}"
    );
    // The default user is the owner of the config directory: the nomad user.
    assert!(unit.contains("\nUser=nomad\nGroup=nomad\n"), "{unit}");
    assert!(root.at("/opt/nomad/config/default.hcl").exists());
}

#[test]
fn bad_input_names_the_flag_or_file_and_writes_nothing() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--client", "--environment", "1BAD=x"],
            "invalid --environment \"1BAD=<redacted>\"",
        ),
        (&["--server", "--num-servers", "0"], "invalid --num-servers"),
        (
            &["--server", "--meta", "a=b", "--num-servers", "1"],
            "--meta applies to the client block",
        ),
        (&["--client", "--gossip-key", GOSSIP_KEY], "add --server"),
        (
            &[
                "--client",
                "--tls-ca-file",
                "/opt/nomad/tls/missing.pem",
                "--tls-cert-file",
                "/opt/nomad/tls/server.pem",
                "--tls-key-file",
                "/opt/nomad/tls/server-key.pem",
            ],
            "opt/nomad/tls/missing.pem",
        ),
        (
            &["--client", "--systemd-stdout", "syslog"],
            "invalid --systemd-stdout \"syslog\"",
        ),
        (
            &["--client", "--user", "nobody-here"],
            "--user \"nobody-here\": no such user in",
        ),
        (
            &["--client", "--cluster-tag-key", "absent"],
            "this VM has no tag \"absent\"",
        ),
        (
            &[
                "--client",
                "--init",
                "supervisor",
                "--environment",
                "A=both ' and \" inside",
            ],
            "supervisor cannot quote",
        ),
        (
            &["--client", "--skip-nomad-config", "--acl"],
            "--acl, --metadata-file only shape default.hcl",
        ),
    ];
    for (args, message) in cases {
        let root = FakeRoot::new();
        let metadata = root.metadata_file(&instance());
        let mut cmd = run_nomad();
        cmd.arg("--root")
            .arg(root.path())
            .arg("--metadata-file")
            .arg(&metadata)
            .args(LAYOUT_ARGS)
            .args(*args);
        let (ok, _, stderr) = output(&mut cmd);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?} in\n{stderr}"
        );
        nothing_written(&root);
        assert!(!root.at("/etc/supervisor/conf.d/run-nomad.conf").exists());
    }
    // A missing config directory, and a missing nomad binary.
    let root = FakeRoot::new();
    fs::remove_dir_all(root.at("/opt/nomad/config")).unwrap();
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .args(LAYOUT_ARGS)
        .arg("--client");
    let (ok, _, stderr) = output(&mut cmd);
    assert!(!ok);
    assert!(
        stderr.contains("the config directory (see --config-dir) is not usable"),
        "{stderr}"
    );
    let root = FakeRoot::new();
    fs::remove_file(root.at("/opt/nomad/bin/nomad")).unwrap();
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .args(LAYOUT_ARGS)
        .arg("--client");
    let (ok, _, stderr) = output(&mut cmd);
    assert!(!ok);
    assert!(
        stderr.contains("the Nomad binary (see --bin-dir) is missing"),
        "{stderr}"
    );
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

/// The flags cluster-deploy's custom data uses parse and produce a server and a client.
#[test]
fn the_cluster_deploy_command_lines_work() {
    let root = FakeRoot::new();
    let metadata = root.metadata_file(&instance());
    let tls = |name: &str| format!("/opt/nomad/tls/{name}");
    let server: Vec<String> = [
        "--server",
        "--num-servers",
        "3",
        "--scale-set-name",
        "prod-servers",
        "--gossip-key-file",
        "/opt/nomad/config/gossip.key",
        "--tls-ca-file",
        &tls("ca.pem"),
        "--tls-cert-file",
        &tls("server.pem"),
        "--tls-key-file",
        &tls("server-key.pem"),
        "--acl",
        "--datacenter",
        "dc1",
        "--region",
        "global",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for args in [
        server,
        vec![
            "--client".into(),
            "--scale-set-name".into(),
            "prod-servers".into(),
            "--node-class".into(),
            "web".into(),
        ],
    ] {
        let mut cmd = run_nomad();
        cmd.arg("--root")
            .arg(root.path())
            .arg("--metadata-file")
            .arg(&metadata)
            .arg("--no-start")
            .args(LAYOUT_ARGS)
            .args(&args);
        let (ok, stdout, stderr) = output(&mut cmd);
        assert!(ok, "{args:?}\n{stdout}\n{stderr}");
        let hcl = root.read("/opt/nomad/config/default.hcl");
        assert!(
            hcl.contains("provider=azure resource_group=nomad-prod-rg vm_scale_set=prod-servers subscription_id=0b1f6471-1bf0-4dda-aec3-111122223333"),
            "{hcl}"
        );
    }
}

#[test]
fn an_even_number_of_servers_warns_and_still_configures() {
    let root = FakeRoot::new();
    let metadata = root.metadata_file(&instance());
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .arg("--no-start")
        .args(LAYOUT_ARGS)
        .args(["--server", "--num-servers", "4"]);
    let (ok, _, stderr) = output(&mut cmd);
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr.matches("--num-servers 4 is even").count(),
        1,
        "{stderr}"
    );
    let hcl = root.read("/opt/nomad/config/default.hcl");
    assert!(
        hcl.contains("bootstrap_expect = 4") && hcl.contains("min_quorum                = 4"),
        "{hcl}"
    );
}

/// `--environment` carries secrets for Nomad's task drivers; custom data's output lands in
/// cloud-init's log, so no refusal of an `--environment` item ever prints its value.
#[test]
fn refused_environment_values_are_never_printed() {
    const SECRET: &str = "s3cr3t-value-xyz";
    let cases: Vec<Vec<String>> = vec![
        // Given twice.
        vec![
            "--environment".into(),
            format!("ARM_CLIENT_SECRET={SECRET}"),
            "--environment".into(),
            format!("ARM_CLIENT_SECRET={SECRET}"),
        ],
        // A bad name beside the value.
        vec!["--environment".into(), format!("1BAD={SECRET}")],
        // No `=`: the whole item may be the secret.
        vec!["--environment".into(), SECRET.into()],
        // A value supervisor cannot quote, one that looks like a comment, and a control
        // character.
        vec![
            "--init".into(),
            "supervisor".into(),
            "--environment".into(),
            format!("S=\"{SECRET}'"),
        ],
        vec![
            "--init".into(),
            "supervisor".into(),
            "--environment".into(),
            format!("S=a ;{SECRET}"),
        ],
        vec![
            "--init".into(),
            "supervisor".into(),
            "--environment".into(),
            format!("S={SECRET}\u{1}"),
        ],
        // A value a systemd environment file cannot carry.
        vec!["--environment".into(), format!("S={SECRET}\u{feff}")],
    ];
    for extra in cases {
        let root = FakeRoot::new();
        let metadata = root.metadata_file(&instance());
        let out = run_nomad()
            .arg("--root")
            .arg(root.path())
            .arg("--metadata-file")
            .arg(&metadata)
            .args(LAYOUT_ARGS)
            .arg("--client")
            .args(&extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{extra:?}: {stderr}");
        assert!(stderr.contains("--environment"), "{extra:?}: {stderr}");
        assert!(stderr.contains("<redacted>"), "{extra:?}: {stderr}");
        assert!(
            !stderr.contains(SECRET) && !stdout.contains(SECRET),
            "{extra:?} printed the value: {stderr}{stdout}"
        );
        nothing_written(&root);
    }
}

/// Everything that needs no metadata is checked before IMDS is read: a typo never waits for
/// the IMDS deadline.
#[test]
fn bad_flags_and_files_fail_before_imds_is_read() {
    let imds = ImdsDouble::start(instance());
    let systemctl = StubSystemctl::new();
    let cases: &[&[&str]] = &[
        &["--client", "--environment", "NO EQUALS"],
        &["--client", "--meta", "=v"],
        &["--client", "--systemd-stdout", "syslog"],
        &["--server", "--num-servers", "3", "--gossip-key", "short"],
        &[
            "--server",
            "--num-servers",
            "3",
            "--gossip-key-file",
            "/opt/nomad/config/missing.key",
        ],
        &[
            "--client",
            "--tls-ca-file",
            "/x/ca.pem",
            "--tls-cert-file",
            "/x/c.pem",
            "--tls-key-file",
            "/x/k.pem",
        ],
        &[
            "--client",
            "--init",
            "supervisor",
            "--environment",
            "A=\"quoted\"",
        ],
        &["--client", "--user", "-bad"],
    ];
    for args in cases {
        let root = FakeRoot::new();
        let (ok, _, stderr) = against_imds(&root, &imds, &systemctl, args);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains("error:"), "{stderr}");
        nothing_written(&root);
    }
    assert!(
        imds.requests().is_empty(),
        "IMDS was read before the flags were checked"
    );
}

#[test]
fn a_world_readable_gossip_key_file_warns_once() {
    use std::os::unix::fs::PermissionsExt;
    let root = FakeRoot::new();
    let key = root.at("/opt/nomad/config/gossip.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let metadata = root.metadata_file(&instance());
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .arg("--no-start")
        .args(LAYOUT_ARGS)
        .args([
            "--server",
            "--num-servers",
            "3",
            "--gossip-key-file",
            "/opt/nomad/config/gossip.key",
        ]);
    let (ok, _, stderr) = output(&mut cmd);
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr.matches("is readable by every user").count(),
        1,
        "{stderr}"
    );
}

#[test]
fn the_watchers_token_file_is_checked_before_imds_and_refused_without_the_watcher() {
    let root = FakeRoot::new();
    let imds = ImdsDouble::start(instance());
    let systemctl = StubSystemctl::new();
    let (ok, _, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &[
            "--client",
            "--acl",
            "--watch-events-token-file",
            "/opt/nomad/secrets/missing.token",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("missing.token"), "{stderr}");
    assert!(imds.requests().is_empty(), "a typo does not wait for IMDS");
    nothing_written(&root);
    let (ok, _, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &[
            "--client",
            "--skip-nomad-config",
            "--watch-events-token-file",
            "/opt/nomad/config/gossip.key",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("--watch-events-token-file is for the Scheduled Events watcher"),
        "{stderr}"
    );
    let (ok, _, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &[
            "--client",
            "--no-watch-events",
            "--watch-events-token-file",
            "/x",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    assert!(systemctl.take_calls().is_empty());
}

#[test]
fn a_client_with_acls_and_no_watcher_token_drains_itself_or_is_warned_about() {
    // Nomad 1.9.3 (the stand-in) has drain_on_shutdown: the watcher relies on it.
    let root = FakeRoot::new();
    let imds = ImdsDouble::start(instance());
    let systemctl = StubSystemctl::new();
    let (ok, stdout, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &["--client", "--acl", "--no-start"],
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(!stderr.contains("cannot drain"), "{stderr}");
    let unit = root.read("/etc/systemd/system/nomad-scheduled-events.service");
    assert!(unit.contains(" --client --imds-endpoint "), "{unit}");
    assert!(unit.contains(" --self-drain "), "{unit}");
    // Without leave_on_terminate there is no self-drain to rely on.
    let root = FakeRoot::new();
    let (ok, stdout, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &[
            "--client",
            "--acl",
            "--leave-on-terminate",
            "false",
            "--no-start",
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("cannot drain this client, only stop Nomad"),
        "{stderr}"
    );
    let unit = root.read("/etc/systemd/system/nomad-scheduled-events.service");
    assert!(!unit.contains("--self-drain"), "{unit}");
    assert!(!root
        .read("/opt/nomad/config/default.hcl")
        .contains("drain_on_shutdown {"));
    // A server needs no token: it leaves by stopping.
    let root = FakeRoot::new();
    let (ok, _, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &["--server", "--num-servers", "3", "--acl", "--no-start"],
    );
    assert!(ok);
    assert!(!stderr.contains("cannot drain"), "{stderr}");
}
