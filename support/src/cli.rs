//! What every `main` does: parse the command line (answering `--completions` and `--man-dir`
//! from the tool's own clap definition), set up logging, and turn an error into a full chain on
//! stderr plus a non-zero exit code (the ripgrep shape: the library does the work, `main` only
//! reports).

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Arg, ArgAction, CommandFactory, Parser};
pub use clap_complete::Shell;

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

const COMPLETIONS: &str = "completions";
const MAN_DIR: &str = "man-dir";

/// The tool's clap definition plus the two flags every tool shares: `--completions <SHELL>`
/// prints a completion script, `--man-dir <DIR>` writes man pages. Both stand alone, so they
/// work without the tool's required arguments or subcommand.
pub fn command<C: CommandFactory>() -> clap::Command {
    C::command()
        .arg(
            Arg::new(COMPLETIONS)
                .long(COMPLETIONS)
                .value_name("SHELL")
                .value_parser(clap::value_parser!(Shell))
                .exclusive(true)
                .action(ArgAction::Set)
                .help("Print a shell completion script (bash, zsh, fish, elvish, powershell) and exit"),
        )
        .arg(
            Arg::new(MAN_DIR)
                .long(MAN_DIR)
                .value_name("DIR")
                .value_parser(clap::value_parser!(PathBuf))
                .exclusive(true)
                .action(ArgAction::Set)
                .help("Write man pages (section 1, one per command and subcommand) into DIR and exit"),
        )
}

/// What the command line asked for: the tool's own work, or a generated file already written.
#[derive(Debug)]
pub enum Parsed<C> {
    Run(C),
    /// `--completions` or `--man-dir` was answered; exit with this code.
    Done(ExitCode),
}

/// Parses the process's command line for tool `C` (see [`parse_from`]).
pub fn parse<C: Parser>() -> Parsed<C> {
    parse_from(std::env::args_os(), &mut std::io::stdout().lock())
}

/// Parses `args` for tool `C`. A usage error exits the process as clap does (code 2, usage on
/// stderr). `--completions` writes to `out`; `--man-dir` writes files and names them on `out`.
pub fn parse_from<C: Parser>(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    out: &mut dyn Write,
) -> Parsed<C> {
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let generating = args.iter().skip(1).any(|a| {
        let a = a.to_string_lossy();
        [COMPLETIONS, MAN_DIR]
            .iter()
            .any(|flag| a == format!("--{flag}") || a.starts_with(&format!("--{flag}=")))
    });
    let mut cmd = command::<C>();
    if generating {
        // The generators stand alone: a required subcommand or a required group of flags
        // (`--server|--client`) is not required for them.
        let mut standalone = cmd
            .clone()
            .subcommand_required(false)
            .arg_required_else_help(false);
        let groups: Vec<clap::Id> = standalone
            .get_groups()
            .map(|g| g.get_id().clone())
            .collect();
        for id in groups {
            standalone = standalone.mut_group(id, |g| g.required(false));
        }
        let matches = standalone.get_matches_from(args);
        let result = if let Some(shell) = matches.get_one::<Shell>(COMPLETIONS) {
            write_completions::<C>(*shell, out)
        } else if let Some(dir) = matches.get_one::<PathBuf>(MAN_DIR) {
            write_man_pages::<C>(dir).and_then(|paths| {
                for path in paths {
                    writeln!(out, "{}", path.display())?;
                }
                Ok(())
            })
        } else {
            Ok(())
        };
        return Parsed::Done(exit_code(result));
    }
    let matches = cmd.clone().get_matches_from(args);
    match C::from_arg_matches(&matches) {
        Ok(parsed) => Parsed::Run(parsed),
        Err(e) => e.format(&mut cmd).exit(),
    }
}

/// Writes the completion script of tool `C` for `shell`.
pub fn write_completions<C: CommandFactory>(
    shell: Shell,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let mut cmd = command::<C>();
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, out);
    out.flush().context("writing the completion script")?;
    Ok(())
}

/// Writes one roff man page per command and subcommand of tool `C` into `dir` (created if
/// missing), each atomically: `tool.1`, `tool-sub.1`. Returns the paths written.
pub fn write_man_pages<C: CommandFactory>(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("failed to create the man page directory {}", dir.display()))?;
    let mut cmd = command::<C>();
    cmd.build();
    let mut written = Vec::new();
    write_man_page(&cmd, cmd.get_name(), dir, &mut written)?;
    Ok(written)
}

fn write_man_page(
    cmd: &clap::Command,
    page_name: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    // A subcommand's page is named after its whole path (`cluster-deploy-plan`), as git's are.
    let page = cmd.clone().name(page_name.to_string());
    let mut text = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut text)
        .with_context(|| format!("rendering the man page of {page_name}"))?;
    let path = dir.join(format!("{page_name}.1"));
    crate::files::write_atomic(&path, &text, crate::files::FileSpec::mode(0o644))?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_man_page(
            sub,
            &format!("{page_name}-{}", sub.get_name()),
            dir,
            written,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    /// A tool shaped like ours: a required flag and a required subcommand.
    #[derive(Debug, clap::Parser)]
    #[command(name = "demo-tool")]
    struct Demo {
        #[arg(long)]
        region: String,
        #[command(subcommand)]
        command: DemoCommand,
    }

    #[derive(Debug, clap::Subcommand)]
    enum DemoCommand {
        /// Plan it.
        Plan {
            #[arg(long)]
            out: Option<PathBuf>,
        },
        /// Apply it.
        Apply,
    }

    #[test]
    fn completions_stand_alone_without_required_arguments() {
        let mut out = Vec::new();
        let parsed = parse_from::<Demo>(["demo-tool", "--completions", "bash"], &mut out);
        assert!(matches!(parsed, Parsed::Done(_)), "{parsed:?}");
        let script = String::from_utf8(out).unwrap();
        assert!(
            script
                .lines()
                .any(|l| l.trim().starts_with("complete -F _demo__tool")
                    && l.ends_with(" demo-tool")),
            "{script}"
        );
        for word in ["plan", "apply", "--region", "--out", "--man-dir"] {
            assert!(script.contains(word), "{word} missing from the script");
        }
    }

    #[test]
    fn man_pages_one_per_command() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        let arg = format!("--man-dir={}", dir.path().display());
        let parsed = parse_from::<Demo>(["demo-tool", arg.as_str()], &mut out);
        assert!(matches!(parsed, Parsed::Done(_)));
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["demo-tool-apply.1", "demo-tool-plan.1", "demo-tool.1"]
        );
        let page = std::fs::read_to_string(dir.path().join("demo-tool-plan.1")).unwrap();
        assert!(page.starts_with(".ie"), "{page}");
        assert!(page.contains(".TH demo-tool-plan 1"), "{page}");
        assert!(page.contains("demo\\-tool\\-plan \\- Plan it"), "{page}");
        let listed = String::from_utf8(out).unwrap();
        assert_eq!(listed.lines().count(), 3, "{listed}");
    }

    #[test]
    fn ordinary_command_lines_parse_as_the_tool_defines_them() {
        let mut out = Vec::new();
        let parsed = parse_from::<Demo>(
            ["demo-tool", "--region", "global", "plan", "--out", "x.json"],
            &mut out,
        );
        let Parsed::Run(demo) = parsed else {
            panic!("not parsed as a run: {parsed:?}")
        };
        assert_eq!(demo.region, "global");
        assert!(matches!(demo.command, DemoCommand::Plan { out: Some(_) }));
        assert!(out.is_empty());
    }

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
