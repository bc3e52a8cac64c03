//! What every `main` does: set up logging and turn an error into a full chain on stderr plus a
//! non-zero exit code (the ripgrep shape: the library does the work, `main` only reports).

use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::filter::LevelFilter;

/// Logging verbosity from `-v`/`-q` style flags: 0 is INFO, each `-v` one level more, `quiet`
/// shows warnings and errors only.
pub fn init_logging(verbose: u8, quiet: bool) {
    let level = if quiet {
        LevelFilter::WARN
    } else {
        match verbose {
            0 => LevelFilter::INFO,
            1 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        }
    };
    let stderr_is_terminal = std::io::stderr().is_terminal();
    // Cloud-init and journald add their own timestamps; a terminal user does not need them.
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(stderr_is_terminal)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Formats an error and its causes, one per line: `error: X` then `  caused by: Y`.
pub fn error_report(error: &anyhow::Error) -> String {
    let mut out = format!("error: {error}");
    for cause in error.chain().skip(1) {
        out.push_str(&format!("\n  caused by: {cause}"));
    }
    out
}

/// Maps a tool's result to its exit code, printing the error chain on failure.
pub fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", error_report(&error));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn report_lists_the_whole_chain() {
        let err = std::fs::read("/nonexistent/config.toml")
            .context("failed to read /nonexistent/config.toml")
            .context("loading the cluster file")
            .unwrap_err();
        let report = error_report(&err);
        let lines: Vec<_> = report.lines().collect();
        assert_eq!(lines[0], "error: loading the cluster file");
        assert_eq!(
            lines[1],
            "  caused by: failed to read /nonexistent/config.toml"
        );
        assert!(
            lines[2].starts_with("  caused by: No such file or directory"),
            "{report}"
        );
    }
}
