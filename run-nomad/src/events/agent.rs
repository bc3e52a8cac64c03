//! Stopping and starting the Nomad agent through its service manager, as run-nomad installed
//! it: `systemctl stop|start nomad.service` or `supervisorctl stop|start nomad`. The stop signal
//! is the service definition's (SIGINT in both), so the agent leaves as run-nomad configured it
//! (`leave_on_interrupt`: servers leave Raft). Each command is bounded: a stop that outlasts its
//! time is left to the service manager and reported.
//!
//! A client whose agent drains itself (`drain_on_shutdown`, which run-nomad ties to
//! `leave_on_terminate`) is sent SIGTERM instead, through the service manager
//! (`systemctl kill --kill-who=main --signal=SIGTERM nomad.service`, `supervisorctl signal TERM
//! nomad`), and watched until it has exited: a second signal would cut its drain short.

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
    /// Sends the agent SIGTERM, its leave signal (`leave_on_terminate`: a client with
    /// `drain_on_shutdown` drains itself, then exits), without waiting.
    fn signal_leave(&self) -> Result<(), String>;
    /// The agent's process id, `None` when it does not run: a new id means the one that was
    /// signalled has exited and the service manager started another (systemd's
    /// `Restart=on-failure` after an exit with an error, supervisor's `autorestart`).
    fn main_pid(&self) -> Result<Option<u32>, String>;
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
        self.run_command(self.command(verb), timeout, fine)
    }

    fn run_command(
        &self,
        mut cmd: Command,
        timeout: Duration,
        fine: &[&str],
    ) -> Result<(), String> {
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

    fn signal_leave(&self) -> Result<(), String> {
        let mut cmd = Command::new(&self.program);
        match self.init {
            // `--kill-who` (renamed `--kill-whom` in systemd 252, which still takes the old
            // spelling): only the main process, as `KillMode=process` stops it.
            InitSystem::Systemd => cmd.args(["kill", "--kill-who=main", "--signal=SIGTERM", UNIT]),
            InitSystem::Supervisor => cmd.args(["signal", "TERM", PROGRAM]),
        };
        cmd.stdin(Stdio::null());
        self.run_command(cmd, SIGNAL_TIMEOUT, &[])
    }

    fn main_pid(&self) -> Result<Option<u32>, String> {
        let mut cmd = Command::new(&self.program);
        match self.init {
            // `MainPID` is 0 when the unit has no main process.
            InitSystem::Systemd => cmd.args(["show", "--property=MainPID", "--value", UNIT]),
            InitSystem::Supervisor => cmd.args(["status", PROGRAM]),
        };
        cmd.stdin(Stdio::null());
        let line = process::command_line(&cmd);
        let output = run_bounded(&mut cmd, SIGNAL_TIMEOUT).map_err(|e| format!("{line}: {e}"))?;
        let text = String::from_utf8_lossy(&output.stdout);
        match self.init {
            InitSystem::Systemd => {
                if !output.status.success() {
                    return Err(format!(
                        "{line} failed ({}): {}",
                        output.status,
                        process::tail(&output.stderr)
                    ));
                }
                let pid: u32 = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("{line} printed {:?}, not a process id", text.trim()))?;
                Ok((pid != 0).then_some(pid))
            }
            // `nomad  RUNNING   pid 1234, uptime 0:01:02`; `status` exits 3 when the program is
            // not running, and the state word is what counts.
            InitSystem::Supervisor => Ok(supervisor_pid(&text)),
        }
    }

    fn describe(&self) -> String {
        match self.init {
            InitSystem::Systemd => format!("{} ... {UNIT}", self.program.display()),
            InitSystem::Supervisor => format!("{} ... {PROGRAM}", self.program.display()),
        }
    }
}

/// The pid in `supervisorctl status nomad` output, when the program runs (or is stopping).
fn supervisor_pid(output: &str) -> Option<u32> {
    let line = output
        .lines()
        .find(|l| l.split_whitespace().next() == Some(PROGRAM))?;
    let mut words = line.split_whitespace().skip(1);
    if !matches!(words.next(), Some("RUNNING" | "STOPPING")) {
        return None;
    }
    let mut rest = words.skip_while(|w| *w != "pid");
    rest.next()?;
    rest.next()?.trim_end_matches(',').parse().ok()
}

/// How long a signal or a state query through the service manager may take.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

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
    fn the_leave_signal_goes_to_the_main_process_through_the_service_manager() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let program = script(
            dir.path(),
            &format!(
                "echo \"$@\" >> '{}'\n\
                 [ \"$1\" = status ] && echo 'nomad                            RUNNING   pid 7, uptime 0:00:09' \
                 && exit 0\n\
                 [ \"$1\" = show ] && echo 0\nexit 0",
                log.display()
            ),
        );
        for (init, expected, pid) in [
            (
                InitSystem::Systemd,
                "kill --kill-who=main --signal=SIGTERM nomad.service\n\
                 show --property=MainPID --value nomad.service\n",
                None,
            ),
            (
                InitSystem::Supervisor,
                "signal TERM nomad\nstatus nomad\n",
                Some(7),
            ),
        ] {
            let _ = std::fs::remove_file(&log);
            let service = InitService {
                init,
                program: program.clone(),
            };
            service.signal_leave().unwrap();
            assert_eq!(service.main_pid().unwrap(), pid);
            assert_eq!(std::fs::read_to_string(&log).unwrap(), expected);
        }
    }

    #[test]
    fn supervisor_status_lines_give_the_pid_of_a_live_program_only() {
        for (line, pid) in [
            (
                "nomad                            RUNNING   pid 4242, uptime 1:02:03",
                Some(4242),
            ),
            (
                "nomad                            STOPPING  pid 17, uptime 0:00:01",
                Some(17),
            ),
            ("nomad                            STARTING  ", None),
            (
                "nomad                            EXITED    Jul 01 10:00 AM",
                None,
            ),
            (
                "nomad                            STOPPED   Not started",
                None,
            ),
            (
                "nomad-scheduled-events           RUNNING   pid 9, uptime 0:00:01",
                None,
            ),
        ] {
            assert_eq!(supervisor_pid(line), pid, "{line}");
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
