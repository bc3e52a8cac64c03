//! Starting Nomad under systemd or supervisor through [`support::process`], and the one fact
//! about the installed binary the unit needs (its version).
//!
//! What runs is planned by pure functions from two facts: which files changed and whether the
//! agent is running. Unchanged files and a running agent mean nothing is touched; otherwise
//! systemd gets `daemon-reload`, `enable`, `restart` (the AWS sibling's sequence) and
//! supervisor gets `reread`, `update` (the original's), plus a `restart` when only the agent
//! configuration changed (supervisor restarts a program itself only when its own section
//! changed) or a `start` when it is not running.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::process::{self, CommandError};

use crate::apply::{changed, Outcome};
use crate::cli::InitSystem;
use crate::render::FileKind;
use crate::settings::watcher::{WATCHER_PROGRAM, WATCHER_UNIT};
use crate::settings::{NomadVersion, Settings};

/// The systemd unit name.
pub const UNIT: &str = "nomad.service";
/// The supervisor program name (the original's `[program:nomad]`).
pub const PROGRAM: &str = "nomad";

/// Which files changed, as the service step sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Changes {
    pub agent_config: bool,
    pub service_definition: bool,
    /// The Scheduled Events watcher's unit or program (absent in markers of older runs).
    #[serde(default)]
    pub watcher: bool,
}

impl Changes {
    pub fn from_outcomes(outcomes: &[Outcome]) -> Self {
        Self {
            agent_config: outcomes
                .iter()
                .any(|o| o.kind.is_agent_config() && o.changed),
            service_definition: changed(outcomes, FileKind::SystemdUnit)
                || changed(outcomes, FileKind::SupervisorProgram)
                || changed(outcomes, FileKind::EnvironmentFile),
            watcher: changed(outcomes, FileKind::WatcherUnit)
                || changed(outcomes, FileKind::WatcherProgram),
        }
    }

    pub fn any(&self) -> bool {
        self.agent_config || self.service_definition || self.watcher
    }

    /// Whether anything of the agent's own changed (its configuration or service).
    pub fn agent(&self) -> bool {
        self.agent_config || self.service_definition
    }

    /// Both sets of changes.
    pub fn union(self, other: Changes) -> Changes {
        Changes {
            agent_config: self.agent_config || other.agent_config,
            service_definition: self.service_definition || other.service_definition,
            watcher: self.watcher || other.watcher,
        }
    }

    /// The changes a plan would make (content differs or the file is new).
    pub fn from_plan(plan: &[crate::apply::Planned]) -> Self {
        let changed = |kinds: &[FileKind]| {
            plan.iter()
                .any(|p| kinds.contains(&p.file.kind) && p.content_changed())
        };
        Self {
            agent_config: plan
                .iter()
                .any(|p| p.file.kind.is_agent_config() && p.content_changed()),
            service_definition: changed(&[
                FileKind::SystemdUnit,
                FileKind::SupervisorProgram,
                FileKind::EnvironmentFile,
            ]),
            watcher: changed(&[FileKind::WatcherUnit, FileKind::WatcherProgram]),
        }
    }
}

/// What runs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    pub agent: bool,
    /// The watcher (false when it is not installed).
    pub watcher: bool,
}

/// One command of the plan: the program's arguments (the program is systemctl or
/// supervisorctl).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub args: Vec<&'static str>,
    /// `supervisorctl start` answers "already started" with an error status when autostart won
    /// the race; that is the state we want.
    pub tolerate_already_started: bool,
}

fn step(args: &[&'static str]) -> Step {
    Step {
        args: args.to_vec(),
        tolerate_already_started: false,
    }
}

/// The systemd commands for the agent.
pub fn systemd_plan(changes: Changes, running: bool) -> Vec<Step> {
    if !changes.agent() && running {
        return Vec::new();
    }
    vec![
        step(&["daemon-reload"]),
        step(&["enable", UNIT]),
        step(&["restart", UNIT]),
    ]
}

/// The supervisorctl commands for the agent.
pub fn supervisor_plan(changes: Changes, running: bool) -> Vec<Step> {
    if !changes.agent() && running {
        return Vec::new();
    }
    let mut steps = vec![step(&["reread"]), step(&["update"])];
    if !changes.service_definition {
        if running {
            // Only default.hcl changed: `update` leaves an unchanged program running.
            steps.push(step(&["restart", PROGRAM]));
        } else {
            steps.push(Step {
                args: vec!["start", PROGRAM],
                tolerate_already_started: true,
            });
        }
    }
    steps
}

/// The commands that bring the watcher up to date after the agent's `steps`: when its unit
/// changed or it does not run, systemd reloads (unless the agent's steps did), enables and
/// restarts it; supervisor's `reread` and `update` add or restart a changed program, and a
/// stopped one is started. The agent is never restarted for the watcher's sake.
pub fn watcher_plan(init: InitSystem, steps: &[Step], changed: bool, running: bool) -> Vec<Step> {
    if !changed && running {
        return Vec::new();
    }
    let has = |args: &[&str]| steps.iter().any(|s| s.args == args);
    let mut out = Vec::new();
    match init {
        InitSystem::Systemd => {
            if changed && !has(&["daemon-reload"]) {
                out.push(step(&["daemon-reload"]));
            }
            out.push(step(&["enable", WATCHER_UNIT]));
            out.push(step(&["restart", WATCHER_UNIT]));
        }
        InitSystem::Supervisor => {
            if changed {
                if !has(&["update"]) {
                    out.push(step(&["reread"]));
                    out.push(step(&["update"]));
                }
            } else {
                out.push(Step {
                    args: vec!["start", WATCHER_PROGRAM],
                    tolerate_already_started: true,
                });
            }
        }
    }
    out
}

/// Every command for these changes and states: the agent's, then the watcher's (when
/// `watcher` is installed).
pub fn full_plan(init: InitSystem, changes: Changes, running: Running, watcher: bool) -> Vec<Step> {
    let mut steps = match init {
        InitSystem::Systemd => systemd_plan(changes, running.agent),
        InitSystem::Supervisor => supervisor_plan(changes, running.agent),
    };
    if watcher {
        let more = watcher_plan(init, &steps, changes.watcher, running.watcher);
        steps.extend(more);
    }
    steps
}

/// Taking out a watcher an earlier run installed (--no-watch-events): the commands before its
/// file is removed, and after.
pub fn watcher_removal(init: InitSystem) -> (Vec<Step>, Vec<Step>) {
    match init {
        InitSystem::Systemd => (
            vec![step(&["disable", "--now", WATCHER_UNIT])],
            vec![step(&["daemon-reload"])],
        ),
        // `update` stops and removes a program whose section is gone.
        InitSystem::Supervisor => (Vec::new(), vec![step(&["reread"]), step(&["update"])]),
    }
}

/// Runs the service commands.
pub struct ServiceManager<'a> {
    settings: &'a Settings,
}

impl<'a> ServiceManager<'a> {
    pub fn new(settings: &'a Settings) -> Self {
        Self { settings }
    }

    fn program(&self) -> &Path {
        match self.settings.service.init {
            InitSystem::Systemd => &self.settings.systemctl,
            InitSystem::Supervisor => &self.settings.supervisorctl,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.program());
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// Whether the agent is running now.
    pub fn is_running(&self) -> Result<bool, CommandError> {
        self.runs(UNIT, PROGRAM)
    }

    /// Whether the unit (systemd) or program (supervisor) runs now.
    fn runs(&self, unit: &'static str, program: &'static str) -> Result<bool, CommandError> {
        match self.settings.service.init {
            InitSystem::Systemd => {
                let mut cmd = self.command(&["is-active", "--quiet", unit]);
                Ok(process::run_unchecked(&mut cmd)?.status.success())
            }
            InitSystem::Supervisor => {
                // `status` exits 3 when the program is not running and 4 when it is unknown or
                // supervisord is unreachable; the state word is what counts.
                let mut cmd = self.command(&["status", program]);
                let output = process::run_unchecked(&mut cmd)?;
                let state = program_state(&String::from_utf8_lossy(&output.stdout), program);
                Ok(matches!(state.as_deref(), Some("RUNNING" | "STARTING")))
            }
        }
    }

    /// The plan for these changes, asking the init system whether the agent and the watcher
    /// run.
    pub fn plan(&self, changes: Changes) -> Result<Vec<Step>, CommandError> {
        let agent = self.is_running()?;
        let installed = self.settings.watcher.is_some();
        let watcher = installed && self.runs(WATCHER_UNIT, WATCHER_PROGRAM)?;
        if agent && !changes.agent() {
            tracing::info!("the files are unchanged and Nomad is running: leaving it be");
        }
        Ok(full_plan(
            self.settings.service.init,
            changes,
            Running { agent, watcher },
            installed,
        ))
    }

    /// The command line of a step, for logs and `--dry-run`.
    pub fn describe(&self, step: &Step) -> String {
        process::command_line(&self.command(&step.args))
    }

    /// Runs the steps in order; the first failure stops with the command's error.
    pub fn run(&self, steps: &[Step]) -> Result<(), CommandError> {
        for step in steps {
            let mut cmd = self.command(&step.args);
            tracing::info!("running {}", process::command_line(&cmd));
            if step.tolerate_already_started {
                let output = process::run_unchecked(&mut cmd)?;
                let text = String::from_utf8_lossy(&output.stdout);
                if output.status.success() || text.contains("already started") {
                    continue;
                }
                return Err(CommandError::from_status(
                    &cmd,
                    output.status,
                    &[output.stdout.as_slice(), output.stderr.as_slice()].concat(),
                ));
            }
            process::run(&mut cmd)?;
        }
        Ok(())
    }
}

/// The state word of `supervisorctl status nomad`: `nomad   RUNNING   pid 12, uptime ...`.
pub fn supervisor_state(output: &str) -> Option<String> {
    program_state(output, PROGRAM)
}

/// The state word of program `name` in `supervisorctl status` output.
pub fn program_state(output: &str, name: &str) -> Option<String> {
    output
        .lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == name).then(|| words.next().map(str::to_string))
        })
        .flatten()
}

/// `<binary> version`, started early so it runs while IMDS answers, and read without polling:
/// a thread reads the child's output to its end while the caller waits on a channel with the
/// time left of [`VersionProbe::TIMEOUT`].
pub struct VersionProbe {
    binary: PathBuf,
    started: Instant,
    running: Option<(Child, mpsc::Receiver<std::io::Result<Vec<u8>>>)>,
}

impl VersionProbe {
    /// How long `nomad version` may take before the unit falls back to `Type=exec`.
    pub const TIMEOUT: Duration = Duration::from_secs(5);

    /// Starts `<binary> version`; a binary that cannot start gives `None` at [`Self::finish`].
    pub fn start(binary: &Path) -> Self {
        let spawned = Command::new(binary)
            .arg("version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let running = spawned.ok().and_then(|mut child| {
            let mut stdout = child.stdout.take()?;
            let (send, receive) = mpsc::channel();
            std::thread::spawn(move || {
                let mut text = Vec::new();
                let read = std::io::Read::read_to_end(&mut stdout, &mut text).map(|_| text);
                // The receiver is gone when the probe timed out; nothing to tell then.
                let _ = send.send(read);
            });
            Some((child, receive))
        });
        Self {
            binary: binary.to_path_buf(),
            started: Instant::now(),
            running,
        }
    }

    /// The version the binary printed, or `None` when it could not start, did not finish its
    /// output within [`Self::TIMEOUT`], or printed something else. The child is always reaped.
    pub fn finish(self) -> Option<NomadVersion> {
        let (mut child, receive) = self.running?;
        let left = Self::TIMEOUT.saturating_sub(self.started.elapsed());
        let output = receive.recv_timeout(left);
        // Its output is complete (or it is late): it has nothing more to say. Killing an
        // exited, not yet reaped child is harmless, and the pid cannot have been reused.
        let _ = child.kill();
        let _ = child.wait();
        let text = match output {
            Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            Ok(Err(e)) => {
                tracing::warn!("reading `{} version` failed: {e}", self.binary.display());
                return None;
            }
            Err(_) => {
                tracing::warn!("{} version did not answer in time", self.binary.display());
                return None;
            }
        };
        let version = NomadVersion::parse(&text);
        match version {
            Some(v) => tracing::info!("{} is Nomad {v}", self.binary.display()),
            None => tracing::warn!(
                "could not tell the version of {}; the unit uses Type=exec",
                self.binary.display()
            ),
        }
        version
    }
}

/// The installed Nomad's version, from `<binary> version` (see [`VersionProbe`]).
pub fn installed_version(binary: &Path) -> Option<NomadVersion> {
    VersionProbe::start(binary).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Changes = Changes {
        agent_config: false,
        service_definition: false,
        watcher: false,
    };
    const CONFIG: Changes = Changes {
        agent_config: true,
        service_definition: false,
        watcher: false,
    };
    const UNIT_CHANGED: Changes = Changes {
        agent_config: false,
        service_definition: true,
        watcher: false,
    };
    const WATCHER: Changes = Changes {
        agent_config: false,
        service_definition: false,
        watcher: true,
    };
    const BOTH_RUN: Running = Running {
        agent: true,
        watcher: true,
    };

    fn args(steps: &[Step]) -> Vec<Vec<&'static str>> {
        steps.iter().map(|s| s.args.clone()).collect()
    }

    #[test]
    fn systemd_leaves_a_running_agent_with_unchanged_files_alone() {
        assert!(systemd_plan(NONE, true).is_empty());
        let start = vec![
            vec!["daemon-reload"],
            vec!["enable", "nomad.service"],
            vec!["restart", "nomad.service"],
        ];
        assert_eq!(args(&systemd_plan(NONE, false)), start);
        assert_eq!(args(&systemd_plan(CONFIG, true)), start);
        assert_eq!(args(&systemd_plan(UNIT_CHANGED, true)), start);
    }

    #[test]
    fn supervisor_restarts_only_what_update_does_not() {
        assert!(supervisor_plan(NONE, true).is_empty());
        assert_eq!(
            args(&supervisor_plan(UNIT_CHANGED, true)),
            vec![vec!["reread"], vec!["update"]]
        );
        assert_eq!(
            args(&supervisor_plan(CONFIG, true)),
            vec![vec!["reread"], vec!["update"], vec!["restart", "nomad"]]
        );
        let plan = supervisor_plan(NONE, false);
        assert_eq!(
            args(&plan),
            vec![vec!["reread"], vec!["update"], vec!["start", "nomad"]]
        );
        assert!(plan[2].tolerate_already_started);
    }

    #[test]
    fn the_watcher_is_started_beside_the_agent_and_never_restarts_it() {
        let systemd =
            |changes, running| args(&full_plan(InitSystem::Systemd, changes, running, true));
        assert!(systemd(NONE, BOTH_RUN).is_empty());
        // A new install: the agent, then the watcher, one reload.
        let stopped = Running {
            agent: false,
            watcher: false,
        };
        assert_eq!(
            systemd(CONFIG.union(WATCHER), stopped),
            vec![
                vec!["daemon-reload"],
                vec!["enable", "nomad.service"],
                vec!["restart", "nomad.service"],
                vec!["enable", "nomad-scheduled-events.service"],
                vec!["restart", "nomad-scheduled-events.service"],
            ]
        );
        // Only the watcher's unit changed: the agent is left running.
        assert_eq!(
            systemd(WATCHER, BOTH_RUN),
            vec![
                vec!["daemon-reload"],
                vec!["enable", "nomad-scheduled-events.service"],
                vec!["restart", "nomad-scheduled-events.service"],
            ]
        );
        // The watcher stopped behind our back: started, no reload.
        let watcher_down = Running {
            agent: true,
            watcher: false,
        };
        assert_eq!(
            systemd(NONE, watcher_down),
            vec![
                vec!["enable", "nomad-scheduled-events.service"],
                vec!["restart", "nomad-scheduled-events.service"],
            ]
        );
        // Without the watcher, the agent's plan alone.
        assert_eq!(
            full_plan(InitSystem::Systemd, CONFIG, BOTH_RUN, false),
            systemd_plan(CONFIG, true)
        );
        let supervisor =
            |changes, running| args(&full_plan(InitSystem::Supervisor, changes, running, true));
        assert_eq!(
            supervisor(WATCHER, BOTH_RUN),
            vec![vec!["reread"], vec!["update"]]
        );
        assert_eq!(
            supervisor(CONFIG.union(WATCHER), BOTH_RUN),
            vec![vec!["reread"], vec!["update"], vec!["restart", "nomad"]]
        );
        let plan = full_plan(InitSystem::Supervisor, NONE, watcher_down, true);
        assert_eq!(args(&plan), vec![vec!["start", "nomad-scheduled-events"]]);
        assert!(plan[0].tolerate_already_started);
    }

    #[test]
    fn a_removed_watcher_is_stopped_and_disabled_first() {
        let (before, after) = watcher_removal(InitSystem::Systemd);
        assert_eq!(
            args(&before),
            vec![vec!["disable", "--now", "nomad-scheduled-events.service"]]
        );
        assert_eq!(args(&after), vec![vec!["daemon-reload"]]);
        let (before, after) = watcher_removal(InitSystem::Supervisor);
        assert!(before.is_empty());
        assert_eq!(args(&after), vec![vec!["reread"], vec!["update"]]);
    }

    #[test]
    fn supervisor_status_lines_give_the_state() {
        assert_eq!(
            program_state(
                "nomad                            RUNNING   pid 1, uptime 0:00:03\n\
                 nomad-scheduled-events           STOPPED   Nov 30 09:00 AM\n",
                "nomad-scheduled-events"
            )
            .as_deref(),
            Some("STOPPED")
        );
        assert_eq!(
            supervisor_state(
                "nomad                            RUNNING   pid 4242, uptime 0:00:03\n"
            )
            .as_deref(),
            Some("RUNNING")
        );
        assert_eq!(
            supervisor_state("nomad                            FATAL     Exited too quickly\n")
                .as_deref(),
            Some("FATAL")
        );
        assert_eq!(supervisor_state("nomad: ERROR (no such process)\n"), None);
        assert_eq!(
            supervisor_state("unix:///var/run/supervisor.sock no such file\n"),
            None
        );
    }

    #[test]
    fn the_version_of_a_binary_that_prints_one() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("nomad");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'Nomad v1.9.3'\necho 'BuildDate x'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let v = installed_version(&fake).unwrap();
        assert_eq!(v.to_string(), "1.9.3");
        assert_eq!(installed_version(&dir.path().join("missing")), None);
    }

    #[test]
    fn a_quick_version_is_read_as_soon_as_it_is_printed() {
        // The old probe slept 20 ms between checks; this one returns when the output ends.
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("nomad");
        std::fs::write(&fake, "#!/bin/sh\necho 'Nomad v1.10.5'\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let probe = VersionProbe::start(&fake);
        assert_eq!(probe.finish().unwrap().to_string(), "1.10.5");
    }
}
