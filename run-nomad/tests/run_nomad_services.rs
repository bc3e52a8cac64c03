//! run-nomad driving the services, as custom data runs it, with a stub systemctl that records
//! its calls: on a live install the agent and the Scheduled Events watcher are started, left
//! alone while nothing changed, restarted on a change (the watcher alone when only what it is
//! told changed), started again when stopped, and the watcher disabled and its unit removed
//! with `--no-watch-events`; a failing systemctl is reported with its stderr. The watcher's
//! token file is checked before IMDS is read, and a client with ACLs and no token for the
//! watcher drains itself (`--self-drain`) or is warned about.

mod common;

use std::fs;

use common::{
    against_imds, instance, nothing_written, output, run_nomad, write_executable, FakeRoot,
    LiveInstall, StubSystemctl, IS_ACTIVE, NOMAD_UNIT, RESTART_AGENT, START_BOTH as START,
    WATCHER_UNIT,
};
use support::doubles::imds::ImdsDouble;

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
