//! Stopping a build, with the real Packer (Debian's 1.6.6: the `packer` process is its
//! crash-reporting wrapper, which ignores SIGINT and forwards only SIGTERM to the real Packer):
//! a local-target build whose extra command is a slow step that starts children of its own.
//! SIGINT (Ctrl-C), SIGTERM and SIGHUP to image-builder, and `--timeout`, each make the real
//! Packer cancel the build (its own "Cancelling build after receiving terminated"), and
//! afterwards nothing of Packer's process group is left, the provisioner's children included;
//! a Packer that does not stop is killed with its whole group after `--cleanup-grace`. Every
//! one exits non-zero and writes no record.
//!
//! The tests wait on real conditions: a marker file the slow step writes once its children
//! run, and image-builder's exit; the process group is read from `/proc` right after.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::*;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use support::process::group_members;

struct Bake {
    dir: tempfile::TempDir,
    spec: PathBuf,
}

impl Bake {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn marker(&self) -> PathBuf {
        self.dir.path().join("slow-step-running")
    }
}

/// A directory with a local-target spec running `step` as its extra command. install-nomad is
/// a stand-in (`true`) and the root already holds what provision.sh checks for: these tests are
/// about stopping Packer, not about installing Nomad.
fn local_spec(step: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("root/opt/nomad/bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["nomad", "run-nomad"] {
        std::fs::write(bin.join(name), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let arch = match std::env::consts::ARCH {
        "aarch64" => "arm64",
        _ => "amd64",
    };
    let spec = write_spec(
        dir.path(),
        "image.toml",
        &format!(
            "nomad_version = \"1.10.5\"\narch = \"{arch}\"\ntarget = \"local\"\nextra_commands = [{}]\n\n[local]\nroot = \"root\"\n",
            serde_json::to_string(step).unwrap()
        ),
    );
    (dir, spec)
}

/// A local-target spec whose extra command writes the marker (its process group and the pid of
/// a child it started) and then waits for ever. install-nomad is a stand-in (`true`) and the
/// root already holds what provision.sh checks for: these tests are about stopping Packer.
fn slow_bake(child_ignores_sigterm: bool) -> Bake {
    let child = if child_ignores_sigterm {
        "(trap '' TERM; exec sleep 300) &"
    } else {
        "sleep 300 &"
    };
    // The marker's name is fixed relative to the spec's directory, which the step does not
    // know yet: write it through a placeholder.
    let (dir, spec) = local_spec("placeholder");
    let marker = dir.path().join("slow-step-running");
    // /proc/$$/stat: pid (comm) state ppid pgrp ...
    let step = format!(
        "read -r _ _ _ _ pgid _ < /proc/$$/stat; {child} echo \"$pgid $!\" > {m}.tmp && mv {m}.tmp {m}; wait",
        m = support::shell::quote(marker.to_str().unwrap()),
    );
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("\"placeholder\"", &serde_json::to_string(&step).unwrap());
    std::fs::write(&spec, text).unwrap();
    Bake { dir, spec }
}

fn spawn_build(bake: &Bake, extra: &[&str]) -> Child {
    let mut cmd = image_builder();
    cmd.args(["build", "-v", "--config"])
        .arg(&bake.spec)
        .arg("--state-dir")
        .arg(bake.state())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    with_tool_bins(&mut cmd);
    cmd.spawn().unwrap()
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The slow step's process group (Packer's) and its child, once it runs.
fn wait_for_slow_step(bake: &Bake) -> (i32, i32) {
    wait_for_file(&bake.marker(), "the slow step to start its child");
    let text = std::fs::read_to_string(bake.marker()).unwrap();
    let mut fields = text.split_whitespace().map(|f| f.parse::<i32>().unwrap());
    (fields.next().unwrap(), fields.next().unwrap())
}

/// Packer's process group as image-builder logs it at debug level.
fn packer_group(out: &Run) -> i32 {
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("in its own process group"))
        .unwrap_or_else(|| panic!("image-builder did not log Packer's process group: {out:?}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // A zombie is dead; only its parent (init here) has yet to reap it.
        Ok(stat) => !stat[stat.rfind(')').unwrap() + 1..]
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

fn assert_nothing_recorded(state: &Path) {
    assert_eq!(files_under(state), ["lock"], "no record, no manifest");
}

/// Packer's own words when the real Packer (not only the wrapper) got SIGTERM.
fn assert_packer_cancelled(out: &Run) {
    for words in [
        "Cancelling build after receiving terminated",
        "Cleanly cancelled builds after being interrupted.",
    ] {
        assert!(out.stderr.contains(words), "missing {words:?}: {out:?}");
    }
}

fn a_signal_stops_packer_cleanly(sig: Signal) {
    let bake = slow_bake(false);
    let child = spawn_build(&bake, &[]);
    let (pgid, slow_child) = wait_for_slow_step(&bake);
    assert!(
        group_members(pgid).len() >= 3,
        "Packer, its plugins and the provisioner run in one group"
    );
    signal::kill(Pid::from_raw(child.id() as i32), sig).unwrap();
    let out = finish(child);

    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains(&format!(
            "packer build was interrupted by {}; image-builder asked Packer to stop (SIGTERM)",
            sig.as_str()
        )),
        "{out:?}"
    );
    assert_packer_cancelled(&out);
    assert_eq!(packer_group(&out), pgid);
    // Right after image-builder exits, nothing of Packer's group runs: not Packer, not its
    // plugins, not the provisioner's shell nor the child it started.
    assert_eq!(group_members(pgid), Vec::new(), "{out:?}");
    assert!(!is_running(slow_child));
    // Packer 1.6 leaves the provisioner's shells and their children running when it
    // cancels: image-builder ends them and says so.
    assert!(
        out.stderr
            .contains("processes running in its process group")
            && out.stderr.contains(&format!("sleep (pid {slow_child})")),
        "{out:?}"
    );
    assert_nothing_recorded(&bake.state());
}

#[test]
fn ctrl_c_stops_packer_and_everything_it_started() {
    a_signal_stops_packer_cleanly(Signal::SIGINT);
}

#[test]
fn sigterm_stops_packer_and_everything_it_started() {
    a_signal_stops_packer_cleanly(Signal::SIGTERM);
}

#[test]
fn sighup_stops_packer_and_everything_it_started() {
    a_signal_stops_packer_cleanly(Signal::SIGHUP);
}

#[test]
fn a_child_ignoring_sigterm_is_killed_after_the_grace() {
    let bake = slow_bake(true);
    let child = spawn_build(&bake, &["--cleanup-grace", "1s"]);
    let (pgid, stubborn) = wait_for_slow_step(&bake);
    signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = finish(child);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_packer_cancelled(&out);
    assert_eq!(group_members(pgid), Vec::new(), "{out:?}");
    assert!(!is_running(stubborn));
    assert_nothing_recorded(&bake.state());
}

#[test]
fn the_timeout_stops_packer_cleanly() {
    let bake = slow_bake(false);
    let child = spawn_build(&bake, &["--timeout", "4s"]);
    let out = finish(child);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(
            "packer build timed out after 4s; image-builder asked Packer to stop (SIGTERM)"
        ),
        "{out:?}"
    );
    assert_packer_cancelled(&out);
    let pgid = packer_group(&out);
    assert_eq!(group_members(pgid), Vec::new(), "{out:?}");
    assert_nothing_recorded(&bake.state());
}

#[test]
fn a_packer_that_does_not_stop_is_killed_with_its_whole_group() {
    let bake = slow_bake(false);
    let child = spawn_build(&bake, &["--cleanup-grace", "1s"]);
    let (pgid, slow_child) = wait_for_slow_step(&bake);
    // A hung Packer: every process of its group stopped, so none can act on SIGTERM.
    signal::killpg(Pid::from_raw(pgid), Signal::SIGSTOP).unwrap();
    signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let out = finish(child);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(
            "Packer did not exit within 1s of being asked to stop (SIGINT); its whole process \
             group was killed (SIGKILL)"
        ),
        "{out:?}"
    );
    assert!(out.stderr.contains("pkr-Resource-Group-"), "{out:?}");
    assert_eq!(group_members(pgid), Vec::new(), "{out:?}");
    assert!(!is_running(slow_child));
    assert_nothing_recorded(&bake.state());
}

/// image-builder killed outright (SIGKILL: a CI runner's timeout, the OOM killer) cannot stop
/// Packer itself; the kernel sends Packer's wrapper SIGTERM for it (the parent-death signal),
/// which the wrapper forwards, so the real Packer cancels the build and exits instead of
/// building on unsupervised. Its output goes to a file, not a pipe whose reader has just died:
/// with a pipe, Packer died of SIGPIPE at its next line (under load, before ending its
/// plugins), leaving a `packer plugin` process running. The file shows the whole cancellation.
#[test]
fn packer_cancels_when_image_builder_is_killed() {
    let bake = slow_bake(false);
    let child = spawn_build(&bake, &[]);
    let (pgid, slow_child) = wait_for_slow_step(&bake);
    let packers = || {
        group_members(pgid)
            .into_iter()
            .filter(|m| m.name.starts_with("packer"))
            .collect::<Vec<_>>()
    };
    assert!(!packers().is_empty(), "Packer runs in group {pgid}");
    signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let out = finish(child);
    assert_eq!(out.code, None, "killed by a signal: {out:?}");
    // Packer's own cancellation takes a moment; it would otherwise run for the step's 300 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !packers().is_empty() && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    let left = packers();
    // Packer 1.6 leaves the provisioner's shell and its child behind (image-builder would end
    // them, but it is dead): clean them up before asserting.
    let _ = signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    let _ = signal::kill(Pid::from_raw(slow_child), Signal::SIGKILL);
    assert_eq!(left, Vec::new(), "Packer outlived image-builder");
    // No record; the working directory stays until the next build sweeps it (record.rs), with
    // Packer's account of the cancellation in it.
    let files = files_under(&bake.state());
    let records: Vec<&String> = files.iter().filter(|f| f.starts_with("records/")).collect();
    assert_eq!(records, Vec::<&String>::new());
    let output: Vec<&String> = files
        .iter()
        .filter(|f| f.ends_with("/packer-build.stdout"))
        .collect();
    assert_eq!(output.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(bake.state().join(output[0])).unwrap();
    for words in [
        "Cancelling build after receiving terminated",
        "Cleanly cancelled builds after being interrupted.",
    ] {
        assert!(text.contains(words), "missing {words:?} in {text}");
    }
}

/// A successful build leaves nothing running either: a provisioner that starts a background
/// process does not get to keep it.
#[test]
fn a_finished_build_leaves_no_process_behind() {
    let (dir, spec) = local_spec("placeholder");
    let pid_file = dir.path().join("daemon.pid");
    let step = format!(
        "sleep 300 > /dev/null 2>&1 & echo $! > {}",
        support::shell::quote(pid_file.to_str().unwrap())
    );
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("\"placeholder\"", &serde_json::to_string(&step).unwrap());
    std::fs::write(&spec, text).unwrap();
    let mut cmd = image_builder();
    cmd.args(["build", "-v", "--config"])
        .arg(&spec)
        .arg("--state-dir")
        .arg(dir.path().join("state"));
    with_tool_bins(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.ok(), "{out:?}");
    let daemon: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!is_running(daemon), "{out:?}");
    assert_eq!(group_members(packer_group(&out)), Vec::new());
    assert!(
        out.stderr
            .contains("left 1 process running in its process group"),
        "{out:?}"
    );
}
