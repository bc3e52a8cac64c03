//! Crash consistency of the commit: the install is stopped at every point of its commit in
//! turn, as a kill would stop it (the library's commit hook), and a later run of the real
//! binary must find the install either as it was or as the interrupted run meant it (receipt
//! included), complete it, and leave no backup, staging directory or journal. One test also
//! SIGKILLs a real process in the middle of its commit.
//!
//! Two shapes of commit: a first install (Nomad, Consul, the CNI plugins: directories, new
//! files, new symlinks) and an upgrade (every file replaced over an old one, with backups).

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use clap::Parser;
use common::{stderr, Env};
use install_nomad::transaction::{CommitError, CommitHook, JOURNAL_NAME};

/// The run that gets interrupted: the old install it starts from (if any) and its own flags.
#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    /// Installed first, with the CLI; `None` for a first install.
    old: Option<(&'static str, &'static [&'static str])>,
    new: (&'static str, &'static [&'static str]),
}

const FIRST_INSTALL: Scenario = Scenario {
    name: "first install",
    old: None,
    new: (
        "1.10.0",
        &["--consul-version", "1.21.4", "--cni-version", "1.6.2"],
    ),
};

const UPGRADE: Scenario = Scenario {
    name: "upgrade",
    old: Some(("1.9.7", &["--consul-version", "1.20.6"])),
    new: ("1.10.0", &["--consul-version", "1.21.4"]),
};

/// A newer run-nomad for the upgrade, so it is replaced too.
const NEW_RUN_NOMAD: &[u8] = b"#!/bin/sh\necho run-nomad stand-in, newer \"$@\"\n";

fn args(env: &Env, (version, extra): (&str, &[&str])) -> Vec<OsString> {
    let mut args = env.args(version);
    args.extend(extra.iter().map(OsString::from));
    if extra.contains(&"--cni-version") {
        args.push("--cni-download-url".into());
        args.push(env.mirror.cni_url().into());
        args.push("--cni-sha256".into());
        args.push(env.mirror.cni_sha256("1.6.2", "amd64").into());
    }
    args
}

/// Runs the real binary with `args`; it must succeed. Returns its log.
fn run_cli(args: &[OsString]) -> String {
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_install-nomad"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    common::assert_no_rust_internals(&log);
    log
}

/// Runs the install in this process through the library, with a commit hook.
fn run_library(args: &[OsString], hook: CommitHook) -> anyhow::Result<()> {
    let cli = install_nomad::cli::Cli::parse_from(
        std::iter::once(OsString::from("install-nomad")).chain(args.iter().cloned()),
    );
    let mut request = install_nomad::request(&cli)?;
    request.commit_hook = Some(hook);
    install_nomad::install::install(&request).map(|_| ())
}

/// A fresh environment with the scenario's old install in place.
fn prepared(scenario: Scenario) -> Env {
    let env = Env::new();
    if let Some(old) = scenario.old {
        run_cli(&args(&env, old));
        fs::write(env.run_nomad(), NEW_RUN_NOMAD).unwrap();
    }
    env
}

/// What the scenario's new install looks like when nothing interrupts it, and the points of
/// its commit.
fn reference(scenario: Scenario) -> (BTreeMap<PathBuf, String>, Vec<String>) {
    let env = prepared(scenario);
    let points = Arc::new(Mutex::new(Vec::new()));
    let seen = points.clone();
    let hook = CommitHook::new(move |p| {
        seen.lock().unwrap().push(format!("{} {}", p.index, p.what));
        ControlFlow::Continue(())
    });
    run_library(&args(&env, scenario.new), hook).unwrap();
    env.assert_receipt_matches_files();
    let points = points.lock().unwrap().clone();
    (env.portable_snapshot(), points)
}

fn journal(env: &Env) -> PathBuf {
    env.path("/opt/nomad").join(JOURNAL_NAME)
}

/// Stops the scenario's commit at every point, then runs the binary again with the same
/// flags: it must complete the install to exactly what an uninterrupted run makes.
fn stop_at_every_point(scenario: Scenario) {
    let (expected, points) = reference(scenario);
    let total = points.len();
    assert!(total > 10, "{}: {points:?}", scenario.name);
    for (stop, point) in points.iter().enumerate() {
        let context = format!("{}, stopped after {point}", scenario.name);
        let env = prepared(scenario);
        let hook = CommitHook::new(move |p| {
            if p.index == stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        let err = run_library(&args(&env, scenario.new), hook).unwrap_err();
        assert!(
            matches!(err.downcast_ref(), Some(CommitError::Interrupted { index, .. }) if *index == stop),
            "{context}: {err:#}"
        );
        // The journal exists from the moment it is written until the commit point.
        let journaled = (1..total - 3).contains(&stop);
        assert_eq!(journal(&env).exists(), journaled, "{context}");

        let log = run_cli(&args(&env, scenario.new));
        assert_eq!(
            log.contains("completing an install that was interrupted"),
            journaled,
            "{context}:\n{log}"
        );
        env.assert_receipt_matches_files();
        assert_eq!(env.portable_snapshot(), expected, "{context}:\n{log}");
        assert!(
            env.leftovers().is_empty(),
            "{context}: {:?}",
            env.leftovers()
        );
    }
}

#[test]
fn a_first_install_stopped_at_any_point_of_its_commit_is_completed_by_the_next_run() {
    stop_at_every_point(FIRST_INSTALL);
}

#[test]
fn an_upgrade_stopped_at_any_point_of_its_commit_is_completed_by_the_next_run() {
    stop_at_every_point(UPGRADE);
}

#[test]
fn after_a_stopped_upgrade_a_run_for_the_old_version_finds_a_whole_install() {
    // Whatever point the upgrade stopped at, a run asking for the old version again finds
    // the install either old or new (never a mix: the receipt always matches the files) and
    // ends with the old version, byte for byte what old -> new -> old gives without a crash.
    let expected = {
        let env = prepared(UPGRADE);
        run_cli(&args(&env, UPGRADE.new));
        run_cli(&args(&env, UPGRADE.old.unwrap()));
        env.portable_snapshot()
    };
    let (_, points) = reference(UPGRADE);
    for (stop, point) in points.iter().enumerate() {
        let env = prepared(UPGRADE);
        let hook = CommitHook::new(move |p| {
            if p.index == stop {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert!(run_library(&args(&env, UPGRADE.new), hook).is_err());
        let log = run_cli(&args(&env, UPGRADE.old.unwrap()));
        let receipt = env.assert_receipt_matches_files();
        assert_eq!(receipt["components"]["nomad"]["version"], "1.9.7");
        assert_eq!(
            env.portable_snapshot(),
            expected,
            "stopped after {point}:\n{log}"
        );
        assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
    }
}

/// Set in the child process of the SIGKILL test: which commit point to wait at, and the
/// arguments to install with.
const CHILD: &str = "INSTALL_NOMAD_CRASH_TEST_CHILD";

#[test]
fn a_sigkilled_install_is_completed_by_the_next_run() {
    if let Ok(spec) = std::env::var(CHILD) {
        // The child: install, and wait at the requested point to be killed.
        let (wait_at, args): (String, Vec<String>) = serde_json::from_str(&spec).unwrap();
        let args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
        let hook = CommitHook::new(move |p| {
            if p.what == wait_at {
                // Straight to the pipe through a duplicate of the descriptor: the test
                // harness captures what goes through `std::io::stdout()`.
                use std::io::Write;
                use std::os::fd::AsFd;
                let fd = std::io::stdout().as_fd().try_clone_to_owned().unwrap();
                let mut pipe = fs::File::from(fd);
                let _ = writeln!(pipe, "WAITING AT {}", p.what);
                loop {
                    std::thread::park();
                }
            }
            ControlFlow::Continue(())
        });
        let _ = run_library(&args, hook);
        unreachable!("the parent kills this process first");
    }

    let (expected, points) = reference(UPGRADE);
    // Between the binary's rename and the receipt's (the case an earlier version got wrong),
    // and after the commit point, with backups and staging still there.
    let binary_placed = points
        .iter()
        .find(|p| p.ends_with("place /opt/nomad/bin/nomad"))
        .expect("the binary is placed")
        .split_once(' ')
        .unwrap()
        .1
        .to_string();
    for wait_at in [binary_placed.as_str(), "journal removed"] {
        let env = prepared(UPGRADE);
        let args: Vec<String> = args(&env, UPGRADE.new)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_sigkilled_install_is_completed_by_the_next_run",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD, serde_json::to_string(&(wait_at, &args)).unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut reached = false;
        for line in stdout.lines() {
            // The harness may have written the test's name on the same line first.
            if line.unwrap().ends_with(&format!("WAITING AT {wait_at}")) {
                reached = true;
                break;
            }
        }
        assert!(reached, "the child never reached {wait_at:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );

        let log = run_cli(&args.iter().map(OsString::from).collect::<Vec<_>>());
        assert_eq!(
            log.contains("completing an install that was interrupted"),
            wait_at != "journal removed",
            "{log}"
        );
        env.assert_receipt_matches_files();
        assert_eq!(
            env.portable_snapshot(),
            expected,
            "killed at {wait_at}:\n{log}"
        );
        assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
    }
}
