//! The one subprocess helper. Its error carries the program, the arguments, the exit status and
//! the tail of stderr, so "systemctl failed" never reaches an operator without the why.
//!
//! [`GroupChild`] runs a long-lived child in its own process group: the caller forwards stop
//! requests to it, and nothing the child started outlives it ([`GroupChild::terminate_group`]).

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

use crate::shell;

/// How many bytes of stderr an error keeps: enough for Packer's or systemctl's last lines.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// What went wrong running a command.
#[derive(Debug)]
pub enum Failure {
    /// The program could not be started (not found, not executable...).
    Spawn(io::Error),
    /// It ran and exited unsuccessfully (or was killed by a signal).
    Exit(ExitStatus),
}

/// A failed command: names the command line, the status and the tail of its stderr.
#[derive(Debug)]
pub struct CommandError {
    pub program: String,
    pub args: Vec<String>,
    pub failure: Failure,
    pub stderr_tail: String,
}

impl CommandError {
    /// The command line as an operator could paste it into a shell.
    pub fn command_line(&self) -> String {
        shell::join(
            std::iter::once(self.program.as_str()).chain(self.args.iter().map(String::as_str)),
        )
    }

    /// True when the program itself was not found, so a caller can add an install hint.
    pub fn is_not_found(&self) -> bool {
        matches!(&self.failure, Failure::Spawn(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// The exit code, when the program ran and exited with one.
    pub fn exit_code(&self) -> Option<i32> {
        match &self.failure {
            Failure::Exit(status) => status.code(),
            Failure::Spawn(_) => None,
        }
    }

    /// Builds the error for a command the caller ran itself (for example a streamed one).
    pub fn from_status(cmd: &Command, status: ExitStatus, stderr: &[u8]) -> Self {
        let (program, args) = describe(cmd);
        Self {
            program,
            args,
            failure: Failure::Exit(status),
            stderr_tail: tail(stderr),
        }
    }

    /// Builds the error for a command that could not be started.
    pub fn from_spawn(cmd: &Command, error: io::Error) -> Self {
        let (program, args) = describe(cmd);
        Self {
            program,
            args,
            failure: Failure::Spawn(error),
            stderr_tail: String::new(),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let line = self.command_line();
        match &self.failure {
            Failure::Spawn(e) => write!(f, "could not run `{line}`: {e}")?,
            Failure::Exit(status) => write!(f, "`{line}` failed ({status})")?,
        }
        let tail = self.stderr_tail.trim_end();
        if !tail.is_empty() {
            write!(f, "; stderr:\n{tail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.failure {
            Failure::Spawn(e) => Some(e),
            Failure::Exit(_) => None,
        }
    }
}

/// Runs a command to completion with stdout and stderr captured; a non-zero exit is an error.
pub fn run(cmd: &mut Command) -> Result<Output, CommandError> {
    let output = cmd.output().map_err(|e| CommandError::from_spawn(cmd, e))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(CommandError::from_status(
            cmd,
            output.status,
            &output.stderr,
        ))
    }
}

/// Runs a command with captured output and returns it whatever the exit status; only a failure
/// to start is an error. For commands whose exit code is an answer (`systemctl is-active`).
pub fn run_unchecked(cmd: &mut Command) -> Result<Output, CommandError> {
    cmd.output().map_err(|e| CommandError::from_spawn(cmd, e))
}

/// The program and arguments of a command, lossily as text.
pub fn describe(cmd: &Command) -> (String, Vec<String>) {
    let program = lossy(cmd.get_program());
    let args = cmd.get_args().map(lossy).collect();
    (program, args)
}

/// The command line of a command, shell-quoted, for logs and `--dry-run` output.
pub fn command_line(cmd: &Command) -> String {
    let (program, args) = describe(cmd);
    shell::join(std::iter::once(program.as_str()).chain(args.iter().map(String::as_str)))
}

fn lossy(s: &OsStr) -> String {
    s.to_string_lossy().into_owned()
}

/// The last [`STDERR_TAIL_BYTES`] of a stream, cut at a character boundary.
pub fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    let text = String::from_utf8_lossy(&bytes[start..]);
    // A cut in the middle of a UTF-8 sequence shows as a replacement character; drop it.
    text.trim_start_matches('\u{FFFD}').to_string()
}

/// A child process started as the leader of its own process group, and what is left of that
/// group after the leader exits.
///
/// Why a group: a Ctrl-C on the terminal reaches only the tool, which then decides what the
/// child gets (one orderly stop request), and everything the child starts (plugins,
/// provisioner scripts and their children) stays findable by the group id even after the
/// child exits and they are re-parented to init. Stop the child with [`GroupChild::signal_leader`]
/// (a wrapper such as Packer's forwards it to the real program), kill it with
/// [`GroupChild::signal_group`], and finish with [`GroupChild::terminate_group`] so nothing
/// it started outlives it.
#[derive(Debug)]
pub struct GroupChild {
    child: Child,
    pgid: Pid,
    /// Set once the leader has been waited for: its pid may then be reused by an unrelated
    /// process, so it must not be signalled any more.
    exited: Option<ExitStatus>,
}

/// A live member of a process group, as `/proc` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub pid: i32,
    /// The executable name (`/proc/<pid>/stat` field 2), for logs.
    pub name: String,
}

impl fmt::Display for GroupMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}

/// Members of a process group that survived SIGKILL (for example stuck in uninterruptible
/// sleep on a dead NFS mount).
#[derive(Debug, thiserror::Error)]
#[error("process group {pgid} still has {} after SIGKILL: {}", plural(.survivors.len()), list_members(.survivors))]
pub struct GroupSurvivors {
    pub pgid: i32,
    pub survivors: Vec<GroupMember>,
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 process".to_string()
    } else {
        format!("{n} processes")
    }
}

fn list_members(members: &[GroupMember]) -> String {
    members
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// How long [`GroupChild::terminate_group`] waits for the group to empty after SIGKILL, which
/// the kernel delivers at once (only a process stuck in the kernel can outlast it).
const AFTER_KILL: Duration = Duration::from_secs(5);

impl GroupChild {
    /// Starts `cmd` as the leader of a new process group (`setpgid(0, 0)` in the child).
    pub fn spawn(cmd: &mut Command) -> Result<Self, CommandError> {
        cmd.process_group(0);
        let child = cmd.spawn().map_err(|e| CommandError::from_spawn(cmd, e))?;
        let pgid = Pid::from_raw(child.id() as i32);
        Ok(Self {
            child,
            pgid,
            exited: None,
        })
    }

    /// [`GroupChild::spawn`], and the kernel sends `signal` to the leader if this tool dies
    /// first (`PR_SET_PDEATHSIG`, prctl(2)): a tool killed with SIGKILL gets no chance to stop
    /// its child, and a child in its own process group gets no terminal signal either, so
    /// without this it would run on unsupervised (a Packer build keeps its Azure resources).
    ///
    /// prctl(2): the signal follows the death of the *thread* that forked, so call this from a
    /// thread that lives as long as the child is wanted (image-builder's main thread).
    // The workspace denies unsafe code; this is its one exception: `pre_exec` is the only way
    // std offers to act in the child between fork and exec.
    #[allow(unsafe_code)]
    pub fn spawn_ended_with_parent(
        cmd: &mut Command,
        signal: Signal,
    ) -> Result<Self, CommandError> {
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // async-signal-safe calls prctl, getppid and kill.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(signal)?;
                // The parent may have died between fork and prctl: then the signal would never
                // come, so act on it now.
                if nix::unistd::getppid() != parent {
                    nix::sys::signal::kill(nix::unistd::getpid(), signal)?;
                }
                Ok(())
            });
        }
        Self::spawn(cmd)
    }

    /// The leader's pid, which is also the group id.
    pub fn pid(&self) -> i32 {
        self.pgid.as_raw()
    }

    pub fn pgid(&self) -> i32 {
        self.pgid.as_raw()
    }

    /// The child, to take its pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The leader's exit status once it has exited (reaps it; does not block).
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Waits for the leader to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self.child.wait()?;
        self.exited = Some(status);
        Ok(status)
    }

    /// Sends `signal` to the leader only. Does nothing once the leader has been reaped (its pid
    /// could belong to another process by then).
    pub fn signal_leader(&mut self, signal: Signal) -> nix::Result<()> {
        if self.try_wait().ok().flatten().is_some() {
            return Ok(());
        }
        match signal::kill(self.pgid, signal) {
            Err(Errno::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// Sends `signal` to every process of the group (a no-op when the group is empty).
    pub fn signal_group(&self, signal: Signal) -> nix::Result<()> {
        match signal::killpg(self.pgid, signal) {
            Err(Errno::ESRCH) => Ok(()),
            other => other,
        }
    }

    /// The group's live members (zombies are dead and left out), the leader included while it
    /// runs.
    pub fn members(&self) -> Vec<GroupMember> {
        group_members(self.pgid.as_raw())
    }

    /// Ends whatever is left of the group once the leader has exited (or been killed): SIGTERM
    /// (plus SIGCONT, so a stopped process can act on it), up to `linger` for them to exit,
    /// then SIGKILL. Returns the members that were still running when it started, for the
    /// caller to report; an error names any that outlived SIGKILL.
    ///
    /// Polls `/proc` while it waits: processes that are not our children cannot be waited for.
    pub fn terminate_group(
        &mut self,
        linger: Duration,
    ) -> Result<Vec<GroupMember>, GroupSurvivors> {
        let _ = self.try_wait();
        let found = self.members();
        if found.is_empty() {
            return Ok(found);
        }
        let _ = self.signal_group(Signal::SIGTERM);
        let _ = self.signal_group(Signal::SIGCONT);
        if self.wait_until_empty(linger) {
            return Ok(found);
        }
        let _ = self.signal_group(Signal::SIGKILL);
        if self.wait_until_empty(AFTER_KILL) {
            return Ok(found);
        }
        Err(GroupSurvivors {
            pgid: self.pgid.as_raw(),
            survivors: self.members(),
        })
    }

    /// Waits (bounded, polling `/proc` with a growing interval) until the group has no live
    /// member; reaps the leader when it exits meanwhile. True when it emptied in time.
    pub fn wait_until_empty(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut interval = Duration::from_millis(2);
        loop {
            let _ = self.try_wait();
            if self.members().is_empty() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(interval.min(deadline - now));
            interval = (interval * 2).min(Duration::from_millis(100));
        }
    }
}

/// The live (not zombie) processes whose process group is `pgid`, read from `/proc`. Empty
/// when `/proc` cannot be read (this tool only runs on Linux, where it can).
pub fn group_members(pgid: i32) -> Vec<GroupMember> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut members: Vec<GroupMember> = entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            // A process can exit between the listing and this read: then it is not a member.
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (name, state, group) = parse_stat(&stat)?;
            (group == pgid && state != 'Z' && state != 'X').then_some(GroupMember { pid, name })
        })
        .collect();
    members.sort_by_key(|m| m.pid);
    members
}

/// The name, state and process group of a `/proc/<pid>/stat` line:
/// `pid (comm) state ppid pgrp ...`. The name may hold spaces and parentheses, so it ends at
/// the last `)` (proc(5)).
fn parse_stat(stat: &str) -> Option<(String, char, i32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let _ppid = rest.next()?;
    let pgrp = rest.next()?.parse().ok()?;
    Some((name, state, pgrp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_returns_output() {
        let out = run(Command::new("sh").args(["-c", "echo hi"])).unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }

    #[test]
    fn failure_names_command_status_and_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`sh -c 'echo boom >&2; exit 3'`"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("boom"), "{text}");
        assert_eq!(err.exit_code(), Some(3));
        assert!(!err.is_not_found());
    }

    #[test]
    fn missing_program_is_reported_as_not_found() {
        let err = run(&mut Command::new("/nonexistent/packer-xyz")).unwrap_err();
        assert!(err.is_not_found());
        assert!(err.to_string().contains("/nonexistent/packer-xyz"), "{err}");
    }

    #[test]
    fn tail_keeps_only_the_end() {
        let long = "x".repeat(STDERR_TAIL_BYTES + 100) + "END";
        let t = tail(long.as_bytes());
        assert!(t.ends_with("END"));
        assert_eq!(t.len(), STDERR_TAIL_BYTES);
    }

    #[test]
    fn unchecked_returns_nonzero_status() {
        let out = run_unchecked(Command::new("sh").args(["-c", "exit 3"])).unwrap();
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn stat_lines_with_odd_names_are_parsed() {
        assert_eq!(
            parse_stat("42 (sh) S 1 42 42 0 -1"),
            Some(("sh".to_string(), 'S', 42))
        );
        assert_eq!(
            parse_stat("7 (a) b (c) Z 1 9 9 0"),
            Some(("a) b (c".to_string(), 'Z', 9))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    /// Reads lines a child writes to a pipe: a real condition to wait on, instead of a sleep.
    fn read_line(reader: &mut impl std::io::BufRead) -> String {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    #[test]
    fn a_group_outlives_its_leader_until_terminated() {
        // The leader starts two background children (one ignoring SIGTERM), reports their pids
        // and exits: they are orphans, but still members of its group.
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "sleep 300 & echo $!; (trap '' TERM; exec sleep 301) & echo $!",
        ])
        .stdout(std::process::Stdio::piped());
        let mut group = GroupChild::spawn(&mut cmd).unwrap();
        let stdout = group.child_mut().stdout.take().unwrap();
        let mut reader = std::io::BufReader::new(stdout);
        let first: i32 = read_line(&mut reader).parse().unwrap();
        let second: i32 = read_line(&mut reader).parse().unwrap();
        assert!(group.wait().unwrap().success());

        let pids: Vec<i32> = group.members().iter().map(|m| m.pid).collect();
        assert_eq!(pids, [first, second], "the orphans stay in the group");
        assert!(group.members().iter().all(|m| m.name == "sleep"));

        let ended = group.terminate_group(Duration::from_millis(200)).unwrap();
        assert_eq!(ended.len(), 2);
        assert_eq!(
            group.members(),
            Vec::new(),
            "SIGKILL ended the one ignoring SIGTERM"
        );
        assert_eq!(group_members(group.pgid()), Vec::new());
    }

    #[test]
    fn the_leader_is_not_signalled_after_it_was_reaped() {
        let mut group =
            GroupChild::spawn(Command::new("true").stdout(std::process::Stdio::null())).unwrap();
        assert!(group.wait().unwrap().success());
        // Its pid may belong to someone else now: nothing is sent, and that is not an error.
        assert!(group.signal_leader(Signal::SIGTERM).is_ok());
        assert!(group.signal_group(Signal::SIGTERM).is_ok());
        assert_eq!(group.terminate_group(Duration::ZERO).unwrap(), Vec::new());
    }

    #[test]
    fn signalling_the_leader_stops_it_and_it_reports_the_signal() {
        use std::os::unix::process::ExitStatusExt;
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo ready; exec sleep 300"])
            .stdout(std::process::Stdio::piped());
        let mut group = GroupChild::spawn(&mut cmd).unwrap();
        let stdout = group.child_mut().stdout.take().unwrap();
        assert_eq!(read_line(&mut std::io::BufReader::new(stdout)), "ready");
        assert_eq!(group.members().len(), 1);
        group.signal_leader(Signal::SIGTERM).unwrap();
        assert_eq!(group.wait().unwrap().signal(), Some(Signal::SIGTERM as i32));
        assert!(group.wait_until_empty(Duration::from_secs(5)));
    }
}
