//! `cluster-deploy roll` and `status` as the binary runs them (wall clock, real signals)
//! against the same rig as `tests/roll.rs`: the text output, the flags' checks, the
//! confirmation, SIGINT at a safe point and a re-run that finishes.

mod common;
mod rolling;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rolling::{Rig, RigOptions, SERVERS};

use common::deploy::{CLIENT_ID, CLIENT_SECRET};

/// The binary with the rig's roll arguments (text mode), ARM credentials in its environment.
fn command(rig: &Rig, extra: &[&str]) -> Command {
    let args = rig.args(extra);
    let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("cluster-deploy"));
    cmd.env_clear()
        .env("ARM_TENANT_ID", "contoso.onmicrosoft.com")
        .env("ARM_CLIENT_ID", CLIENT_ID)
        .env("ARM_CLIENT_SECRET", CLIENT_SECRET)
        .args(&args[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(mut cmd: Command) -> Run {
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn fast() -> RigOptions {
    RigOptions {
        // The binary waits on the wall clock: let each request move the cluster further.
        advance_per_request: Duration::from_millis(500),
        ..RigOptions::default()
    }
}

#[test]
fn a_dry_run_prints_the_plan_as_text() {
    let rig = Rig::new(RigOptions::default());
    let out = run(command(&rig, &["--dry-run"]));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for expected in [
        "] rolling cluster nomad-example",
        "ok   failure tolerance: 1",
        "servers (nomad-example-servers), one at a time, never fewer than 3 healthy voters:",
        "  3. surge one server, gate it, transfer leadership to it, delete the leader 0",
        "client pool clients (nomad-example-clients), in batches (drain deadline 1h):",
        "dry run: nothing was changed",
    ] {
        assert!(out.stdout.contains(expected), "{expected}:\n{}", out.stdout);
    }
    assert!(!out.stdout.contains(CLIENT_SECRET) && !out.stderr.contains(CLIENT_SECRET));
}

#[test]
fn without_a_terminal_it_needs_yes_and_bad_flags_are_named() {
    let rig = Rig::new(RigOptions::default());
    let mut cmd = command(&rig, &[]);
    // The rig adds --yes: a command line without it.
    let args: Vec<String> = rig
        .args(&[])
        .into_iter()
        .skip(1)
        .filter(|a| a != "--yes")
        .collect();
    cmd = {
        let mut bare = Command::new(assert_cmd::cargo::cargo_bin("cluster-deploy"));
        bare.env_clear()
            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .args(args)
            .stdin(Stdio::null());
        bare
    };
    let out = run(cmd);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("pass --yes"), "{}", out.stderr);
    assert!(
        !rig.snapshot(2).exists(),
        "no snapshot before the confirmation"
    );
    assert_eq!(rig.deploy.arm.instances(SERVERS).len(), 3);

    for (flags, named) in [
        (&["--drain-deadline", "0"][..], "--drain-deadline"),
        (&["--soak", "soon"][..], "--soak"),
        (&["--servers-only", "--clients-only"][..], "--clients-only"),
        (&["--client-batch-size", "0"][..], "--client-batch-size"),
        (&["--nomad-version", "1.10"][..], "--nomad-version"),
        (
            &["--soak", "20m", "--server-gate-timeout", "20m"][..],
            "--soak 20m is not shorter than --server-gate-timeout 20m",
        ),
        (&["--soak", "30m"][..], "--server-gate-timeout 20m"),
    ] {
        let out = run(command(&rig, flags));
        assert_ne!(out.code, 0, "{flags:?}");
        assert!(out.stderr.contains(named), "{flags:?}: {}", out.stderr);
    }
    assert_eq!(rig.deploy.arm.instances(SERVERS).len(), 3);
}

#[test]
fn sigint_stops_at_a_safe_point_and_a_rerun_finishes() {
    let rig = Rig::new(fast());
    let flags = ["--check-interval", "5ms", "--soak", "0s", "--servers-only"];
    let mut child = command(&rig, &flags).spawn().unwrap();
    // Wait for the first surge, then interrupt.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rig.deploy.arm.instances(SERVERS).len() < 4 {
        assert!(Instant::now() < deadline, "the roll never surged");
        assert!(child.try_wait().unwrap().is_none(), "the roll ended early");
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("ROLL STOPPED: interrupted"), "{stdout}");
    assert!(
        stdout.contains("re-run `cluster-deploy roll --config"),
        "{stdout}"
    );
    assert!(stderr.contains("roll stopped: interrupted"), "{stderr}");
    assert!(
        rig.deleted().is_empty(),
        "no old server went: {:?}",
        rig.deleted()
    );

    let again = run(command(&rig, &flags));
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert!(again.stdout.contains("roll complete"), "{}", again.stdout);
    assert_eq!(
        rig.old_instances_left().len(),
        6,
        "the servers were replaced"
    );
    rig.assert_properties(false);
}

#[test]
fn status_shows_each_instance_with_its_agent_and_the_failure_tolerance() {
    let rig = Rig::new(RigOptions::default());
    rig.roll(&["--servers-only", "--no-leadership-transfer"])
        .ok();
    let out = rig
        .deploy
        .ok(&["status", "--nomad-address", rig.nomad.url()]);
    let text = out.stdout;
    for expected in [
        "scale set nomad-example-servers (3 of 3 instances): servers, Standard_D2s_v5",
        "latest model  alive voter LEADER healthy nomad 1.10.5",
        "OLD MODEL     node ready eligible",
        "  leader: ",
        "  servers: leader ",
        "failure tolerance 1; autopilot healthy",
    ] {
        assert!(text.contains(expected), "{expected}:\n{text}");
    }
    let status = rig.status();
    let clients = &status["scale_sets"][1]["instances"];
    let node = &clients[0]["nomad"];
    assert_eq!(node["status"], "ready");
    assert_eq!(node["eligible"], true);
    assert!(node["allocations"].as_u64().unwrap() > 0);
    assert_eq!(clients[0]["latest_model_applied"], false);
    assert_eq!(status["nomad"]["autopilot_healthy"], true);
}

#[test]
fn status_reaches_nomad_with_the_cli_variables_and_shows_what_the_token_may_read() {
    use support::doubles::nomad_api::NomadApiDouble;
    use support::doubles::tls::TestCa;
    let rig = Rig::new(RigOptions::default());
    // The same cluster behind mutual TLS, with a certificate for the region's server name
    // only (as `nomad tls cert create -server` makes it) and a token without operator:read.
    let ca = TestCa::new("nomad-agent-ca");
    let server = ca.server_cert(&["server.global.nomad"]);
    let tls = NomadApiDouble::serve_tls(&rig.sim, server.server_config(Some(&ca)));
    let token = "6c1f3a52-0b7e-4d2a-9e51-3f0c7d8b9a14";
    tls.add_token(token, &["node:read", "agent:read", "namespace:read-job"]);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_cert(dir.path(), "nomad-agent-ca.pem");
    let (cert, key) = ca.client_cert("global-cli-nomad").write(dir.path(), "cli");
    let out = run({
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("cluster-deploy"));
        cmd.env_clear()
            .env("ARM_TENANT_ID", "contoso.onmicrosoft.com")
            .env("ARM_CLIENT_ID", CLIENT_ID)
            .env("ARM_CLIENT_SECRET", CLIENT_SECRET)
            .env("ARM_SUBSCRIPTION_ID", rig.deploy.arm.subscription())
            .env("NOMAD_ADDR", tls.url())
            .env("NOMAD_TOKEN", token)
            .env("NOMAD_CACERT", &ca_file)
            .env("NOMAD_CLIENT_CERT", &cert)
            .env("NOMAD_CLIENT_KEY", &key)
            .env("NOMAD_TLS_SERVER_NAME", "server.global.nomad")
            .args(["status", "--config"])
            .arg(&rig.deploy.config)
            .args(["--arm-endpoint", rig.deploy.arm.url()])
            .args(["--login-endpoint", rig.deploy.login.url()])
            .args([
                "--imds-endpoint",
                "http://127.0.0.1:9",
                "--az-program",
                "/nonexistent/az",
            ])
            .args(["--poll-interval-ms", "1", "--retry-delay-ms", "1"]);
        cmd
    });
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let text = &out.stdout;
    assert!(text.contains(&format!("nomad at {}/", tls.url())), "{text}");
    assert!(
        text.contains("OLD MODEL     alive raft unknown nomad 1.9.7"),
        "{text}"
    );
    assert!(text.contains("OLD MODEL     node ready eligible"), "{text}");
    assert!(
        text.contains("note: reading the Raft configuration at"),
        "{text}"
    );
    assert!(
        text.contains("raft/configuration: 403: Permission denied"),
        "{text}"
    );
    assert!(!text.contains(token) && !out.stderr.contains(token));
    assert!(tls
        .requests()
        .iter()
        .all(|r| r.header("x-nomad-token") == Some(token)));
}
