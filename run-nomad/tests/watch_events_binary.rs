//! `run-nomad watch-events` as the service runs it: the binary, against the IMDS double (the
//! instance document for this VM's name, Scheduled Events for its events), a stub systemctl
//! that records its calls, and for a client the Nomad API double over mutual TLS with an ACL
//! token, as run-nomad configures a secured agent. It is stopped with SIGTERM, as systemd
//! stops it. Real time, but short: a 100 ms poll interval, and every wait is a poll of the
//! doubles with a deadline.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::{instance, run_nomad, StubSystemctl};
use support::doubles::imds::ImdsDouble;
use support::doubles::imds_events::{Event, ScheduledEvents};
use support::doubles::nomad_api::NomadApiDouble;
use support::doubles::nomad_sim::{JobSpec, SimConfig, Simulation};
use support::doubles::tls::TestCa;

/// The fixture's `compute.name`, which `Resources` names.
fn vm_name() -> String {
    instance()["compute"]["name"].as_str().unwrap().to_string()
}

fn wait_for(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The watcher process; killed when dropped (a failing test leaves nothing behind).
struct Running {
    child: Option<Child>,
}

impl Running {
    fn start(mut cmd: Command) -> Self {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self { child: Some(child) }
    }

    /// SIGTERM, as systemd stops the unit; returns (exit success, stderr).
    fn stop(mut self) -> (bool, String) {
        let child = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn watcher(
    imds: &ImdsDouble,
    systemctl: &StubSystemctl,
    state: &PathBuf,
    extra: &[&str],
) -> Command {
    let mut cmd = run_nomad();
    cmd.args(["watch-events", "--imds-endpoint", imds.url()])
        .arg("--systemctl")
        .arg(systemctl.program())
        .arg("--state-file")
        .arg(state)
        .args(["--poll-interval", "100ms", "--request-timeout", "5s"])
        .args(extra);
    cmd
}

fn terminate_now_plus_five_minutes(events: &ScheduledEvents, id: &str) -> SystemTime {
    let not_before = SystemTime::now() + Duration::from_secs(300);
    events.schedule(Event::terminate(id, &vm_name(), not_before));
    not_before
}

#[test]
fn a_client_without_a_token_is_sent_sigterm_and_needs_no_nomad_api() {
    let dir = tempfile::tempdir().unwrap();
    let imds = ImdsDouble::start(instance());
    let events = imds.scheduled_events();
    let systemctl = StubSystemctl::new();
    systemctl.set_active();
    let state = dir.path().join("events.json");
    // Nothing listens at the agent's address: a self-draining client never calls its API.
    let running = Running::start(watcher(
        &imds,
        &systemctl,
        &state,
        &[
            "--client",
            "--self-drain",
            "--nomad-address",
            "http://127.0.0.1:9",
        ],
    ));
    wait_for("the first Scheduled Events request", || events.enabled());
    let id = "0e1d2c3b-0000-4000-8000-0000000000d5";
    let not_before = terminate_now_plus_five_minutes(&events, id);
    wait_for("the approval", || !events.approvals().is_empty());
    assert!(events.approvals()[0].at < not_before);
    assert_eq!(
        systemctl.take_calls(),
        [
            "show --property=MainPID --value nomad.service",
            "kill --kill-who=main --signal=SIGTERM nomad.service",
            "show --property=MainPID --value nomad.service",
            "stop nomad.service",
        ]
    );
    let (ok, stderr) = running.stop();
    assert!(ok, "{stderr}");
    for line in [
        "sending Nomad SIGTERM",
        "drained its node and exited",
        &format!("approved event {id}"),
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("NOT done"), "{stderr}");
}

#[test]
fn a_server_watcher_stops_nomad_through_systemctl_then_approves_and_exits_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let imds = ImdsDouble::start(instance());
    let events = imds.scheduled_events();
    let systemctl = StubSystemctl::new();
    let state = dir.path().join("state/events.json");
    let running = Running::start(watcher(&imds, &systemctl, &state, &["--server"]));
    wait_for("the first Scheduled Events request", || events.enabled());
    let id = "0e1d2c3b-0000-4000-8000-000000000001";
    let not_before = terminate_now_plus_five_minutes(&events, id);
    wait_for("the approval", || !events.approvals().is_empty());
    assert!(events.approvals()[0].at < not_before);
    assert_eq!(systemctl.take_calls(), ["stop nomad.service"]);
    let (ok, stderr) = running.stop();
    assert!(ok, "{stderr}");
    for line in [
        "watching Scheduled Events at http://127.0.0.1",
        &format!("Terminate event {id} for this VM ({})", vm_name()),
        "stopping Nomad",
        &format!("approved event {id}"),
        "asked to stop",
    ] {
        assert!(stderr.contains(line), "missing {line:?} in:\n{stderr}");
    }
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(
        saved.contains(id) && saved.contains("\"finished\": true"),
        "{saved}"
    );
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The state directory was made for it, root-only.
    assert_eq!(
        std::fs::metadata(state.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // Started again (systemd's Restart=always): the event is still listed, nothing is redone.
    let running = Running::start(watcher(&imds, &systemctl, &state, &["--server"]));
    let polls = || {
        imds.requests()
            .iter()
            .filter(|r| r.path == "/metadata/scheduledevents" && r.method == "GET")
            .count()
    };
    let before = polls();
    wait_for("a few more polls", || polls() >= before + 3);
    let (ok, stderr) = running.stop();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("was handled before"), "{stderr}");
    assert!(systemctl.take_calls().is_empty());
    assert_eq!(events.approvals().len(), 1);
}

/// A cluster whose client `c0` runs allocations, served over mutual TLS with ACLs on: the
/// agent's certificate names `client.global.nomad`, as Nomad's convention for TLS with
/// `verify_server_hostname` wants.
struct SecureCluster {
    nomad: NomadApiDouble,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    cert: (PathBuf, PathBuf),
    token_file: PathBuf,
}

const TOKEN: &str = "3f4a0fcd-7c42-473c-a5db-2d31ba0c05fe";

impl SecureCluster {
    fn new() -> Self {
        let sim = Simulation::new(SimConfig {
            advance_per_request: Duration::from_secs(2),
            ..SimConfig::default()
        });
        sim.start_running(&["s0", "s1", "s2"], &["c0", "c1"]);
        sim.add_job(JobSpec::service("web", 4));
        sim.advance(Duration::from_secs(10));
        let ca = TestCa::new("nomad-agent-ca");
        let agent = ca.server_cert(&["client.global.nomad", "localhost"]);
        let nomad = NomadApiDouble::serve_tls(&sim, agent.server_config(Some(&ca)));
        nomad.add_token(
            TOKEN,
            &[
                "agent:read",
                "node:read",
                "node:write",
                "namespace:read-job",
            ],
        );
        let dir = tempfile::tempdir().unwrap();
        let ca_file = ca.write_cert(dir.path(), "ca.pem");
        let cert = agent.write(dir.path(), "client");
        let token_file = dir.path().join("watcher.token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self {
            nomad,
            dir,
            ca_file,
            cert,
            token_file,
        }
    }

    fn args(&self, server_name: &str) -> Vec<String> {
        let p = |p: &PathBuf| p.display().to_string();
        vec![
            "--client".into(),
            "--nomad-address".into(),
            self.nomad.agent_url("c0"),
            "--nomad-ca-file".into(),
            p(&self.ca_file),
            "--nomad-client-cert".into(),
            p(&self.cert.0),
            "--nomad-client-key".into(),
            p(&self.cert.1),
            "--nomad-tls-server-name".into(),
            server_name.into(),
            "--nomad-token-file".into(),
            p(&self.token_file),
        ]
    }
}

#[test]
fn a_client_watcher_drains_over_mutual_tls_with_its_token_then_stops_and_approves() {
    let cluster = SecureCluster::new();
    let imds = ImdsDouble::start(instance());
    let events = imds.scheduled_events();
    let systemctl = StubSystemctl::new();
    let state = cluster.dir.path().join("state.json");
    let args = cluster.args("client.global.nomad");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = Running::start(watcher(&imds, &systemctl, &state, &args));
    wait_for("the first Scheduled Events request", || events.enabled());
    terminate_now_plus_five_minutes(&events, "0e1d2c3b-0000-4000-8000-000000000002");
    wait_for("the approval", || !events.approvals().is_empty());
    let (ok, stderr) = running.stop();
    assert!(ok, "{stderr}");
    assert!(stderr.contains("is drained"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token was logged:\n{stderr}");
    let drains: Vec<_> = cluster
        .nomad
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/drain"))
        .collect();
    assert_eq!(drains.len(), 1);
    assert_eq!(drains[0].header("x-nomad-token"), Some(TOKEN));
    assert_eq!(systemctl.take_calls(), ["stop nomad.service"]);
    let sim = cluster.nomad.simulation();
    let c0 = sim
        .view()
        .nodes
        .into_iter()
        .find(|n| n.name == "c0")
        .unwrap();
    assert_eq!(c0.live_allocs, 0);
}

#[test]
fn a_certificate_without_the_expected_name_is_refused_and_the_event_still_approved() {
    let cluster = SecureCluster::new();
    let imds = ImdsDouble::start(instance());
    let events = imds.scheduled_events();
    let systemctl = StubSystemctl::new();
    let state = cluster.dir.path().join("state.json");
    // The agent's certificate names client.global.nomad, not server.global.nomad.
    let args = cluster.args("server.global.nomad");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = Running::start(watcher(&imds, &systemctl, &state, &args));
    wait_for("the first Scheduled Events request", || events.enabled());
    terminate_now_plus_five_minutes(&events, "0e1d2c3b-0000-4000-8000-000000000003");
    wait_for("the approval", || !events.approvals().is_empty());
    let (ok, stderr) = running.stop();
    assert!(ok, "{stderr}");
    assert!(
        cluster.nomad.requests().is_empty(),
        "nothing reached the agent"
    );
    assert!(stderr.contains("NOT done: drain:"), "{stderr}");
    assert_eq!(systemctl.take_calls(), ["stop nomad.service"]);
}

#[test]
fn bad_flags_fail_at_once_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let imds = ImdsDouble::start(instance());
    let systemctl = StubSystemctl::new();
    let state = dir.path().join("s.json");
    let empty = dir.path().join("empty.token");
    std::fs::write(&empty, "\n").unwrap();
    for (extra, expected) in [
        (
            vec!["--client", "--nomad-token-file", empty.to_str().unwrap()],
            "--nomad-token-file",
        ),
        (
            vec!["--client", "--nomad-ca-file", "/nonexistent/ca.pem"],
            "--nomad-ca-file /nonexistent/ca.pem",
        ),
        (
            vec!["--client", "--nomad-address", "127.0.0.1:4646"],
            "--nomad-address",
        ),
    ] {
        let out = watcher(&imds, &systemctl, &state, &extra).output().unwrap();
        assert!(!out.status.success(), "{extra:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
    let out = run_nomad()
        .args(["watch-events", "--server"])
        .args(["--imds-endpoint", "https://169.254.169.254"])
        .arg("--state-file")
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "invalid --imds-endpoint \"https://169.254.169.254\": IMDS is served over http://"
        ),
        "{stderr}"
    );
    assert!(imds.requests().is_empty(), "nothing was asked of IMDS");
}
