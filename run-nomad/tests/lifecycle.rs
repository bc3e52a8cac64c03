//! What one run leaves for the next: changes whose restart failed or was cut short by a kill are
//! applied by the next run (a durable marker), temporary files of a killed run are removed, and
//! two runs never write at once (a lock). run-nomad runs as the binary against a fake root with
//! a stub systemctl that can fail or hang its restart; processes are killed for real.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    against_root, instance, output, FakeRoot, StubSystemctl, IS_ACTIVE, RESTART_AGENT, START_BOTH,
};

fn command(root: &FakeRoot, systemctl: &StubSystemctl, args: &[&str]) -> std::process::Command {
    let mut cmd = against_root(root, &instance());
    cmd.arg("--systemctl").arg(systemctl.program()).args(args);
    cmd
}

fn run(root: &FakeRoot, systemctl: &StubSystemctl, args: &[&str]) -> (bool, String, String) {
    output(&mut command(root, systemctl, args))
}

fn marker(root: &FakeRoot) -> std::path::PathBuf {
    root.at("/opt/nomad/config/.run-nomad.pending")
}

#[test]
fn a_failed_restart_is_completed_by_the_next_run() {
    let root = FakeRoot::new();
    let systemctl = StubSystemctl::new();
    // Nomad runs an old configuration; the restart onto the new one fails.
    systemctl.set_active();
    systemctl.fail_next_restart();
    let args = ["--client", "--meta", "rack=r1"];
    let (ok, _, stderr) = run(&root, &systemctl, &args);
    assert!(!ok, "the failed restart fails the run");
    assert!(stderr.contains("Job for nomad.service failed"), "{stderr}");
    assert_eq!(
        systemctl.take_calls(),
        RESTART_AGENT,
        "stopped at the failure"
    );
    assert!(marker(&root).exists(), "the unapplied change is recorded");

    // The same command again: the files are already right and Nomad is running (the old
    // configuration). The recorded work is what makes it restart, the watcher's new unit too.
    let (ok, stdout, stderr) = run(&root, &systemctl, &args);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(systemctl.take_calls(), START_BOTH);
    assert!(!marker(&root).exists(), "done: the marker is gone");

    // And after that, an unchanged run leaves Nomad alone again.
    let (ok, _, _) = run(&root, &systemctl, &args);
    assert!(ok);
    assert_eq!(systemctl.take_calls(), IS_ACTIVE);
}

fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_run_killed_during_the_restart_leaves_the_work_to_the_next_and_holds_off_others() {
    let root = FakeRoot::new();
    let systemctl = StubSystemctl::new();
    systemctl.set_active();
    systemctl.hang_next_restart();
    let args = ["--client", "--node-class", "batch"];
    // Its own process group, so the kill takes the hanging systemctl with it.
    let mut first = command(&root, &systemctl, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    wait_until("the restart to hang", || systemctl.is_hanging());

    // While it holds the lock, another run refuses to write.
    let (ok, _, stderr) = run(&root, &systemctl, &args);
    assert!(!ok);
    assert!(stderr.contains("another run-nomad is running"), "{stderr}");
    assert!(stderr.contains(".run-nomad.lock"), "{stderr}");

    let group = nix::unistd::Pid::from_raw(first.id() as i32);
    nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).unwrap();
    first.wait().unwrap();
    assert!(marker(&root).exists());
    systemctl.take_calls();

    // The next run finds the files written and Nomad running: the marker makes it restart.
    let (ok, stdout, stderr) = run(&root, &systemctl, &args);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(systemctl.take_calls(), START_BOTH);
    assert!(!marker(&root).exists());
}

/// A temporary file named the way support::files::write_atomic names them, as a run killed
/// between creating and renaming it leaves it.
fn leftover(dir: &Path, target: &str) -> std::path::PathBuf {
    let (_, path) = tempfile::Builder::new()
        .prefix(&format!(".{target}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .unwrap()
        .keep()
        .unwrap();
    std::fs::write(&path, "half a config").unwrap();
    path
}

#[test]
fn temporary_files_of_a_killed_run_are_removed_by_the_next() {
    let root = FakeRoot::new();
    let systemctl = StubSystemctl::new();
    let config = root.at("/opt/nomad/config");
    let units = root.at("/etc/systemd/system");
    let stale = [
        leftover(&config, "default.hcl"),
        leftover(&config, "run-nomad.env"),
        leftover(&units, "nomad.service"),
    ];
    // Not run-nomad's: left alone.
    let foreign = units.join(".other.service.abc123.tmp");
    std::fs::write(&foreign, "x").unwrap();

    // --dry-run names them and removes nothing.
    let (ok, stdout, _) = run(&root, &systemctl, &["--client", "--dry-run"]);
    assert!(ok);
    for path in &stale {
        assert!(
            stdout.contains(&format!("would remove {}", path.display())),
            "{stdout}"
        );
        assert!(path.exists());
    }

    let (ok, stdout, stderr) = run(&root, &systemctl, &["--client"]);
    assert!(ok, "{stdout}\n{stderr}");
    for path in &stale {
        assert!(!path.exists(), "{} is still there", path.display());
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    }
    assert!(foreign.exists());
    assert!(root.at("/opt/nomad/config/default.hcl").exists());
}
