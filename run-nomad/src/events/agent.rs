//! Stopping and starting the Nomad agent through its service manager, as run-nomad installed
//! it: `systemctl stop|start nomad.service` or `supervisorctl stop|start nomad`. The stop signal
//! is the service definition's (SIGINT in both), so the agent leaves as run-nomad configured it
//! (`leave_on_interrupt`: servers leave Raft). Each command is bounded: a stop that outlasts its
//! time is left to the service manager and reported.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::process;

use crate::cli::InitSystem;
use crate::service::{PROGRAM, UNIT};

/// What the watcher needs from the service manager.
pub trait ServiceControl {
    /// Stops Nomad, waiting at most `timeout`. Stopping a stopped agent succeeds.
    fn stop(&self, timeout: Duration) -> Result<(), String>;
    /// Starts Nomad (a running agent is left running).
    fn start(&self, timeout: Duration) -> Result<(), String>;
    /// For logs: what stops and starts it.
    fn describe(&self) -> String;
}

/// systemd or supervisor.
#[derive(Debug, Clone)]
pub struct InitService {
    pub init: InitSystem,
    /// systemctl or supervisorctl.
    pub program: PathBuf,
}

impl InitService {
    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new(&self.program);
        match self.init {
            InitSystem::Systemd => cmd.args([verb, UNIT]),
            InitSystem::Supervisor => cmd.args([verb, PROGRAM]),
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    fn run(&self, verb: &str, timeout: Duration, fine: &[&str]) -> Result<(), String> {
        let mut cmd = self.command(verb);
        let line = process::command_line(&cmd);
        let output = run_bounded(&mut cmd, timeout).map_err(|e| format!("{line}: {e}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // supervisorctl answers "ERROR (not running)" / "ERROR (already started)" for the state
        // wanted, with a failing status in some versions.
        if output.status.success() || fine.iter().any(|f| text.contains(f)) {
            return Ok(());
        }
        Err(format!(
            "{line} failed ({}): {}",
            output.status,
            process::tail(text.as_bytes())
        ))
    }
}

impl ServiceControl for InitService {
    fn stop(&self, timeout: Duration) -> Result<(), String> {
        self.run("stop", timeout, &["not running"])
    }

    fn start(&self, timeout: Duration) -> Result<(), String> {
        self.run("start", timeout, &["already started"])
    }

    fn describe(&self) -> String {
        match self.init {
            InitSystem::Systemd => format!("{} ... {UNIT}", self.program.display()),
            InitSystem::Supervisor => format!("{} ... {PROGRAM}", self.program.display()),
        }
    }
}

/// Runs `cmd` to its end, or kills it after `timeout` (the service manager carries on with a
/// stop job on its own; only our wait ends).
fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<std::process::Output, String> {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let pid = Pid::from_raw(child.id() as i32);
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        // The receiver may be gone after a timeout; nothing to tell then.
        let _ = send.send(child.wait_with_output());
    });
    match receive.recv_timeout(timeout) {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => {
            // Not reaped yet (the thread is still waiting), so the pid is still this child's.
            let _ = kill(pid, Signal::SIGKILL);
            let _ = receive.recv_timeout(Duration::from_secs(5));
            Err(format!(
                "did not finish within {:.1}s",
                timeout.as_secs_f64()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &std::path::Path, body: &str) -> PathBuf {
        let path = dir.join("ctl");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn stop_and_start_name_the_unit_or_program() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let program = script(dir.path(), &format!("echo \"$@\" >> '{}'", log.display()));
        for (init, expected) in [
            (
                InitSystem::Systemd,
                "stop nomad.service\nstart nomad.service\n",
            ),
            (InitSystem::Supervisor, "stop nomad\nstart nomad\n"),
        ] {
            let _ = std::fs::remove_file(&log);
            let service = InitService {
                init,
                program: program.clone(),
            };
            service.stop(Duration::from_secs(10)).unwrap();
            service.start(Duration::from_secs(10)).unwrap();
            assert_eq!(std::fs::read_to_string(&log).unwrap(), expected);
        }
    }

    #[test]
    fn supervisors_not_running_is_a_stopped_agent() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(dir.path(), "echo 'nomad: ERROR (not running)'; exit 1");
        let service = InitService {
            init: InitSystem::Supervisor,
            program,
        };
        service.stop(Duration::from_secs(10)).unwrap();
        let err = service.start(Duration::from_secs(10)).unwrap_err();
        assert!(err.contains("start nomad failed"), "{err}");
    }

    #[test]
    fn a_stop_that_hangs_is_cut_off_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let program = script(dir.path(), "exec sleep 30");
        let service = InitService {
            init: InitSystem::Systemd,
            program,
        };
        let started = std::time::Instant::now();
        let err = service.stop(Duration::from_millis(200)).unwrap_err();
        assert!(err.contains("did not finish within 0.2s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
