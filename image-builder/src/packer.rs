//! Driving the Packer binary: finding it and its version, `packer init` / `validate` / `build`
//! as subprocesses. `build` streams `-machine-readable` output into progress events, turns
//! SIGINT/SIGTERM/SIGHUP and its timeout into one orderly stop request so Packer deletes its
//! temporary Azure resources, and leaves nothing of Packer's running when it returns.
//!
//! Packer runs in its own process group: a Ctrl-C on the terminal reaches image-builder only.
//! The `packer` program is Packer's crash-reporting wrapper (panicwrap): it ignores SIGINT and
//! forwards SIGTERM to the real Packer (checked against Debian's Packer 1.6.6), so the stop
//! request is SIGTERM to the wrapper; the real Packer answers "Cancelling build after receiving
//! terminated" and cleans up. Its plugins and provisioner children live in the same group, which
//! is how image-builder finds and ends them. `CHECKPOINT_DISABLE=1` stops Packer from calling
//! HashiCorp's update check.
//!
//! Packer writes its output to files in the build's working directory, which image-builder
//! reads as they grow, not to pipes: if image-builder is killed outright, a pipe would lose its
//! reader and Packer would die of SIGPIPE at its next line, before deleting its temporary
//! resources and ending its plugins (seen with the real Packer 1.6.6). A file keeps taking
//! Packer's output, so the cancellation the parent-death SIGTERM starts runs to the end, and
//! the operator can read what it did in the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::process::{self, CommandError, GroupChild};

use crate::machine_readable::{self, Event, Transcript};

/// How an operator gets Packer.
pub const INSTALL_HINT: &str = "install Packer (Debian/Ubuntu: `apt-get install packer`; \
     otherwise https://developer.hashicorp.com/packer/install) or pass --packer-bin PATH";

/// A Packer version, as `packer version` prints it (`Packer v1.6.6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PackerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl PackerVersion {
    /// Finds the version in `packer version` output (newer Packers add lines, e.g. an
    /// out-of-date notice; old ones print `1.6.6` for `--version`).
    pub fn parse(output: &str) -> Option<Self> {
        output.lines().find_map(|line| {
            let line = line.trim();
            let rest = line
                .strip_prefix("Packer v")
                .or_else(|| line.strip_prefix('v'))
                .unwrap_or(line);
            let core: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = core.split('.').map(|p| p.parse::<u32>());
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Ok(major)), Some(Ok(minor)), Some(Ok(patch))) => Some(Self {
                    major,
                    minor,
                    patch,
                }),
                _ => None,
            }
        })
    }

    /// Packer 1.7 moved the azure builder into a plugin: the template then needs
    /// `required_plugins` and `packer init`. Packer 1.6 rejects that block.
    pub fn needs_plugin_block(self) -> bool {
        (self.major, self.minor) >= (1, 7)
    }
}

impl std::fmt::Display for PackerVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why Packer could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum PackerError {
    #[error("Packer was not found at {bin}: {hint}", bin = .bin.display(), hint = INSTALL_HINT)]
    NotFound { bin: PathBuf },
    #[error("could not tell the version of Packer {bin} from `packer version`: {output:?}", bin = .bin.display())]
    UnknownVersion { bin: PathBuf, output: String },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("`packer validate` rejected the template in {dir}:\n{report}", dir = .dir.display())]
    Invalid { dir: PathBuf, report: String },
    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("packer build failed ({status})\n{report}")]
    BuildFailed { status: ExitStatus, report: String },
    #[error(
        "packer build was interrupted by {signal}; image-builder asked Packer to stop (SIGTERM), \
         and it exited ({status}) after cleaning up what it could\n{report}"
    )]
    Interrupted {
        signal: &'static str,
        status: ExitStatus,
        report: String,
    },
    #[error(
        "packer build timed out after {timeout}; image-builder asked Packer to stop (SIGTERM) so \
         it deletes its temporary resources, and it exited ({status})\n{report}",
        timeout = humanize(*.timeout)
    )]
    TimedOut {
        timeout: Duration,
        status: ExitStatus,
        report: String,
    },
    #[error(
        "Packer did not exit within {grace} of being asked to stop ({reason}); its whole process \
         group was killed (SIGKILL): temporary Azure resources (a `pkr-Resource-Group-*` resource \
         group, or `pkr*` resources in the build resource group) may remain; delete them by hand\n{report}",
        grace = humanize(*.grace)
    )]
    Killed {
        reason: String,
        grace: Duration,
        report: String,
    },
    #[error("failed while waiting for Packer: {0}")]
    Wait(#[source] std::io::Error),
    #[error("could not {action} Packer's output file {path}: {source}", path = .path.display())]
    Output {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The files in the working directory that take `packer build`'s stdout (the machine-readable
/// stream) and stderr.
pub const BUILD_STDOUT_FILE: &str = "packer-build.stdout";
pub const BUILD_STDERR_FILE: &str = "packer-build.stderr";
/// The file in the working directory that names Packer's process group while it runs: if
/// image-builder is killed, the next build leaves the directory alone while that group lives
/// (Packer cancelling, and writing its output there).
pub const BUILD_GROUP_FILE: &str = "packer-build.pgid";

/// A located Packer binary and its version.
#[derive(Debug, Clone)]
pub struct Packer {
    pub bin: PathBuf,
    pub version: PackerVersion,
}

/// Limits of a `packer build`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total time the build may take before image-builder asks Packer to stop.
    pub timeout: Duration,
    /// How long Packer gets to clean up after being asked to stop before it is killed.
    pub cleanup_grace: Duration,
}

impl Packer {
    /// Runs `<bin> version` to find Packer and its version.
    pub fn locate(bin: &Path) -> Result<Self, PackerError> {
        let mut cmd = Command::new(bin);
        cmd.arg("version")
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(Stdio::null());
        let output = process::run(&mut cmd).map_err(|e| {
            if e.is_not_found() {
                PackerError::NotFound {
                    bin: bin.to_path_buf(),
                }
            } else {
                PackerError::Command(e)
            }
        })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let version = PackerVersion::parse(&text).ok_or_else(|| PackerError::UnknownVersion {
            bin: bin.to_path_buf(),
            output: text.trim().to_string(),
        })?;
        Ok(Self {
            bin: bin.to_path_buf(),
            version,
        })
    }

    fn command(&self, dir: &Path, vars: &[(String, String)]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(dir)
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(Stdio::null());
        // Variables go through the environment (PKR_VAR_<name>), never the command line.
        for (name, value) in vars {
            cmd.env(format!("PKR_VAR_{name}"), value);
        }
        cmd
    }

    /// `packer init <dir>`: installs the plugins `required_plugins` names (Packer 1.7+ only).
    pub fn init(&self, dir: &Path) -> Result<(), PackerError> {
        let mut cmd = self.command(dir, &[]);
        cmd.arg("init").arg(dir);
        process::run(&mut cmd)?;
        Ok(())
    }

    /// `packer validate -machine-readable <dir>`; a rejection reports Packer's error lines.
    pub fn validate(&self, dir: &Path, vars: &[(String, String)]) -> Result<(), PackerError> {
        let mut cmd = self.command(dir, vars);
        cmd.args(["validate", "-machine-readable"]).arg(dir);
        let output = process::run_unchecked(&mut cmd)?;
        if output.status.success() {
            return Ok(());
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let transcript = Transcript::from_text(&stdout);
        let mut report = transcript.error_report();
        if report.is_empty() {
            // Not machine-readable (or nothing on stdout): show what Packer printed.
            report = format!("{}{}", stdout.trim(), process::tail(&output.stderr));
        }
        Err(PackerError::Invalid {
            dir: dir.to_path_buf(),
            report,
        })
    }

    /// `packer build -machine-readable <dir>` (plus `-force` when asked), streaming every event
    /// to `on_event`. Returns the transcript of a successful build.
    ///
    /// Packer runs as the leader of its own process group. SIGINT, SIGTERM or SIGHUP sent to
    /// image-builder, or the timeout, become one SIGTERM to Packer: the `packer` process is
    /// Packer's crash-reporting wrapper (panicwrap), which ignores SIGINT and forwards SIGTERM to
    /// the real Packer, which then cancels the build and deletes its temporary resources. If it
    /// has not exited `cleanup_grace` later, the whole group gets SIGKILL. Whatever Packer leaves
    /// running in its group when it exits (a provisioner's children) is ended too.
    ///
    /// Packer's stdout and stderr go to [`BUILD_STDOUT_FILE`] and [`BUILD_STDERR_FILE`] in
    /// `dir` (see the module's documentation for why files and not pipes).
    pub fn build(
        &self,
        dir: &Path,
        vars: &[(String, String)],
        force: bool,
        limits: Limits,
        on_event: &mut dyn FnMut(&Event),
    ) -> Result<Transcript, PackerError> {
        let mut cmd = self.command(dir, vars);
        cmd.args(["build", "-machine-readable"]);
        if force {
            cmd.arg("-force");
        }
        let stdout_path = dir.join(BUILD_STDOUT_FILE);
        let stderr_path = dir.join(BUILD_STDERR_FILE);
        let output = OutputFile::create(&stdout_path)?;
        cmd.arg(dir)
            .stdout(Stdio::from(output.writer(&stdout_path)?))
            .stderr(Stdio::from(OutputFile::create(&stderr_path)?.file));
        let command_line = process::command_line(&cmd);

        // Listen for signals before Packer exists, so none is lost in between.
        let (signal_tx, rx) = mpsc::channel::<i32>();
        let mut signals = signal_hook::iterator::Signals::new(STOP_SIGNALS).map_err(|source| {
            PackerError::Spawn {
                command: command_line.clone(),
                source,
            }
        })?;
        let signal_handle = signals.handle();
        let signal_thread = std::thread::spawn(move || {
            for signal in signals.forever() {
                if signal_tx.send(signal).is_err() {
                    break;
                }
            }
        });

        // SIGTERM, not SIGKILL, if image-builder itself is killed: Packer's wrapper forwards it
        // to the real Packer, which then cancels the build and deletes what it made.
        let spawned = GroupChild::spawn_ended_with_parent(&mut cmd, nix::sys::signal::SIGTERM);
        let result = match spawned {
            Ok(group) => {
                let group_file = dir.join(BUILD_GROUP_FILE);
                if let Err(e) = std::fs::write(&group_file, format!("{}\n", group.pgid())) {
                    tracing::warn!("could not write {}: {e}", group_file.display());
                }
                supervise(group, &rx, output, &stderr_path, limits, on_event)
            }
            Err(e) if e.is_not_found() => Err(PackerError::NotFound {
                bin: self.bin.clone(),
            }),
            Err(e) => Err(PackerError::Command(e)),
        };
        signal_handle.close();
        let _ = signal_thread.join();
        result
    }
}

/// The signals that stop a build: Ctrl-C, `kill`, and the terminal going away.
const STOP_SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
];

/// A file Packer writes to and image-builder reads back as it grows, line by line.
struct OutputFile {
    file: File,
    /// Bytes read after the last complete line.
    partial: Vec<u8>,
}

impl OutputFile {
    /// Creates (truncating) the file, readable by its owner only: Packer's output can name
    /// resources and paths the operator would rather not share.
    fn create(path: &Path) -> Result<Self, PackerError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| PackerError::Output {
                action: "create",
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Self {
            file,
            partial: Vec::new(),
        })
    }

    /// A descriptor for Packer to write to, appending: its wrapper, the real Packer and its
    /// plugins all write through it.
    fn writer(&self, path: &Path) -> Result<File, PackerError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
            .map_err(|source| PackerError::Output {
                action: "open",
                path: path.to_path_buf(),
                source,
            })
    }

    /// The complete lines written since the last call.
    fn new_lines(&mut self) -> Vec<String> {
        let mut chunk = [0u8; 8192];
        loop {
            match self.file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => self.partial.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("could not read Packer's output: {e}");
                    break;
                }
            }
        }
        let Some(last_newline) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let complete: Vec<u8> = self.partial.drain(..=last_newline).collect();
        complete
            .split_inclusive(|&b| b == b'\n')
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect()
    }

    /// Every line still unread once Packer has exited, the last one even without its newline.
    fn remaining_lines(mut self) -> Vec<String> {
        let mut lines = self.new_lines();
        if !self.partial.is_empty() {
            lines.push(String::from_utf8_lossy(&self.partial).into_owned());
        }
        lines
    }
}

/// The last [`process::STDERR_TAIL_BYTES`] of Packer's stderr file.
fn stderr_tail(path: &Path) -> String {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let keep = process::STDERR_TAIL_BYTES as u64;
        file.seek(SeekFrom::Start(len.saturating_sub(keep)))?;
        let mut bytes = Vec::new();
        file.take(keep).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    match read() {
        Ok(bytes) => process::tail(&bytes),
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}

/// Why Packer was asked to stop.
#[derive(Clone, Copy)]
enum Stop {
    Signal(i32),
    Timeout,
}

/// How often the loop checks whether Packer has exited and reads its new output.
const POLL: Duration = Duration::from_millis(100);
/// How long processes Packer left in its group get after SIGTERM before SIGKILL (at most the
/// cleanup grace).
const LEFTOVER_GRACE: Duration = Duration::from_secs(5);

fn supervise(
    mut group: GroupChild,
    signals: &mpsc::Receiver<i32>,
    mut output: OutputFile,
    stderr_path: &Path,
    limits: Limits,
    on_event: &mut dyn FnMut(&Event),
) -> Result<Transcript, PackerError> {
    tracing::debug!(
        "packer build runs as pid {} in its own process group {}",
        group.pid(),
        group.pgid()
    );
    let mut transcript = Transcript::default();
    let mut show = |line: String| match machine_readable::parse_line(&line) {
        Some(record) => {
            let event = Event::from(record);
            transcript.record(&event);
            on_event(&event);
        }
        None => {
            let text = line.trim_end();
            if !text.is_empty() {
                tracing::info!("{text}");
            }
        }
    };
    let deadline = Instant::now() + limits.timeout;
    let mut stop: Option<(Stop, Instant)> = None;
    let mut killed = false;

    let status = loop {
        output.new_lines().into_iter().for_each(&mut show);
        if let Some(status) = group.try_wait().map_err(PackerError::Wait)? {
            end_leftovers(&mut group, limits);
            // Packer and its process group have exited: the file holds all they wrote.
            output.remaining_lines().into_iter().for_each(&mut show);
            break status;
        }
        let now = Instant::now();
        if stop.is_none() && now >= deadline {
            tracing::warn!(
                "packer build ran longer than {}: asking Packer to stop (SIGTERM) so it \
                 deletes its temporary resources",
                humanize(limits.timeout)
            );
            let _ = group.signal_leader(Signal::SIGTERM);
            stop = Some((Stop::Timeout, now + limits.cleanup_grace));
        }
        if let Some((_, kill_at)) = stop {
            if !killed && now >= kill_at {
                tracing::error!(
                    "Packer did not exit within {} of being asked to stop: killing its \
                     process group {}",
                    humanize(limits.cleanup_grace),
                    group.pgid()
                );
                let _ = group.signal_group(Signal::SIGKILL);
                killed = true;
            }
        }
        match signals.recv_timeout(POLL) {
            Ok(raw) => {
                let name = signal_name(raw);
                match stop {
                    None => {
                        tracing::warn!(
                            "received {name}: asking Packer to stop (SIGTERM); it deletes its \
                             temporary resources before exiting, which can take minutes"
                        );
                        let _ = group.signal_leader(Signal::SIGTERM);
                        stop = Some((Stop::Signal(raw), Instant::now() + limits.cleanup_grace));
                    }
                    Some((_, kill_at)) => {
                        let left = kill_at.saturating_duration_since(Instant::now());
                        tracing::warn!(
                            "received {name} again: Packer is still cleaning up; its process \
                             group is killed if it has not exited within {}",
                            humanize(left)
                        );
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The signal thread is gone (it only ends when build() closes it): keep polling.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
        }
    };

    let mut report = transcript.error_report();
    let stderr = stderr_tail(stderr_path);
    if !stderr.trim().is_empty() {
        if !report.is_empty() {
            report.push('\n');
        }
        report.push_str("stderr:\n");
        report.push_str(stderr.trim_end());
    }

    match stop {
        Some((reason, _)) if killed => Err(PackerError::Killed {
            reason: match reason {
                Stop::Signal(raw) => signal_name(raw).to_string(),
                Stop::Timeout => format!("timeout of {}", humanize(limits.timeout)),
            },
            grace: limits.cleanup_grace,
            report,
        }),
        Some((Stop::Signal(raw), _)) => Err(PackerError::Interrupted {
            signal: signal_name(raw),
            status,
            report,
        }),
        Some((Stop::Timeout, _)) => Err(PackerError::TimedOut {
            timeout: limits.timeout,
            status,
            report,
        }),
        None if status.success() => Ok(transcript),
        None => Err(PackerError::BuildFailed { status, report }),
    }
}

/// Ends what Packer left running in its process group: Packer 1.6 does not stop a
/// provisioner's children when it cancels, and they would keep running (and writing into the
/// image root) after image-builder exits.
fn end_leftovers(group: &mut GroupChild, limits: Limits) {
    let grace = limits.cleanup_grace.min(LEFTOVER_GRACE);
    match group.terminate_group(grace) {
        Ok(ended) if ended.is_empty() => {}
        Ok(ended) => tracing::warn!(
            "Packer exited but left {} running in its process group {}; ended: {}",
            if ended.len() == 1 {
                "1 process".to_string()
            } else {
                format!("{} processes", ended.len())
            },
            group.pgid(),
            ended
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Err(survivors) => tracing::error!("{survivors}"),
    }
}

fn signal_name(raw: i32) -> &'static str {
    match Signal::try_from(raw) {
        Ok(sig) => sig.as_str(),
        Err(_) => "a signal",
    }
}
/// A duration as an operator writes it: `2h`, `90m`, `1h30m`, `45s`.
pub fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Parses `2h`, `90m`, `1h30m`, `45s`, `500ms` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "{text:?} is not a duration like 2h, 90m, 1h30m or 45s"
            ));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "h" => Duration::from_secs(value * 3600),
            "m" => Duration::from_secs(value * 60),
            "s" => Duration::from_secs(value),
            "ms" => Duration::from_millis(value),
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use h, m, s or ms)"
                ))
            }
        };
        total += part;
    }
    if total.is_zero() {
        return Err(format!("{text:?}: a duration must be more than zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn packer_output_is_read_back_in_whole_lines_as_the_file_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BUILD_STDOUT_FILE);
        let mut output = OutputFile::create(&path).unwrap();
        let mut packer = output.writer(&path).unwrap();
        assert_eq!(output.new_lines(), Vec::<String>::new());
        packer.write_all(b"1,,ui,say,first\n1,,ui,say,sec").unwrap();
        assert_eq!(output.new_lines(), vec!["1,,ui,say,first\n"]);
        packer.write_all(b"ond\nno newline at the end").unwrap();
        assert_eq!(output.new_lines(), vec!["1,,ui,say,second\n"]);
        assert_eq!(output.remaining_lines(), vec!["no newline at the end"]);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_stderr_tail_is_the_end_of_a_long_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(BUILD_STDERR_FILE);
        let long = "x".repeat(process::STDERR_TAIL_BYTES * 3) + "the last words";
        std::fs::write(&path, &long).unwrap();
        let tail = stderr_tail(&path);
        assert!(tail.ends_with("the last words"), "{tail}");
        assert_eq!(tail.len(), process::STDERR_TAIL_BYTES);
        let missing = stderr_tail(&dir.path().join("gone"));
        assert!(
            missing.contains("could not read") && missing.contains("gone"),
            "{missing}"
        );
    }

    #[test]
    fn versions_are_parsed_from_old_and_new_output() {
        let v = PackerVersion::parse("Packer v1.6.6\n").unwrap();
        assert_eq!(v.to_string(), "1.6.6");
        assert!(!v.needs_plugin_block());
        let v = PackerVersion::parse(
            "Packer v1.11.2\n\nYour version of Packer is out of date! The latest version\nis 1.12.0.\n",
        )
        .unwrap();
        assert_eq!(
            v,
            PackerVersion {
                major: 1,
                minor: 11,
                patch: 2
            }
        );
        assert!(v.needs_plugin_block());
        assert!(PackerVersion::parse("1.7.0").unwrap().needs_plugin_block());
        assert_eq!(PackerVersion::parse("something else"), None);
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("2 hours").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(humanize(Duration::from_secs(5400)), "1h30m");
        assert_eq!(humanize(Duration::from_millis(300)), "300ms");
    }

    #[test]
    fn a_missing_packer_gets_an_install_hint() {
        let err = Packer::locate(Path::new("/nonexistent/packer")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/packer"), "{text}");
        assert!(text.contains("apt-get install packer"), "{text}");
        assert!(text.contains("--packer-bin"), "{text}");
    }
}
