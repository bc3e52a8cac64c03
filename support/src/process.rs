//! The one subprocess helper. Its error carries the program, the arguments, the exit status and
//! the tail of stderr, so "systemctl failed" never reaches an operator without the why.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::process::{Command, ExitStatus, Output};

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
}
