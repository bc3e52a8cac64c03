//! Every tool's `--completions` and `--man-dir`, checked by the programs that consume them: the
//! real bash loads each completion script and completes a partial word with it, and the real
//! `man` (groff) renders each page with its warnings on.

use std::path::{Path, PathBuf};
use std::process::Command;

use support::doubles::bins::workspace_bin;

/// (package, binary, a partial word, what bash must complete it to)
const TOOLS: &[(&str, &str, &str, &str)] = &[
    (
        "install-nomad",
        "install-nomad",
        "--downl",
        "--download-url",
    ),
    ("run-nomad", "run-nomad", "--imds-end", "--imds-endpoint"),
    ("image-builder", "image-builder", "vali", "validate"),
    ("cluster-deploy", "cluster-deploy", "dest", "destroy"),
];

fn run(program: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bash_completes_each_tool_from_its_generated_script() {
    for (package, bin, partial, expected) in TOOLS {
        let tool = workspace_bin(package, bin);
        let (ok, script, stderr) = run(&tool, &["--completions", "bash"]);
        assert!(ok, "{bin} --completions bash failed: {stderr}");
        let dir = tempfile::tempdir().unwrap();
        let script_path = dir.path().join(format!("{bin}.bash"));
        std::fs::write(&script_path, &script).unwrap();
        // Load the script, find the function it registered for the tool, and call it the way
        // bash's programmable completion does for `<tool> <partial><TAB>`.
        let probe = format!(
            r#"set -e
source "$1"
spec=$(complete -p {bin})
fn=$(printf '%s\n' "$spec" | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
COMP_WORDS=({bin} {partial})
COMP_CWORD=1
COMP_LINE="{bin} {partial}"
COMP_POINT=${{#COMP_LINE}}
"$fn" {bin} {partial} {bin}
printf '%s\n' "${{COMPREPLY[@]}}"
"#
        );
        let out = Command::new("bash")
            .args(["-c", &probe, "probe"])
            .arg(&script_path)
            .output()
            .expect("running bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "bash could not load or run {bin}'s completion: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.lines().any(|l| l.trim() == *expected),
            "bash completed `{bin} {partial}` to {stdout:?}, expected {expected}"
        );
    }
}

#[test]
fn man_renders_every_page_without_warnings() {
    if Command::new("man").arg("--version").output().is_err() {
        panic!("`man` is not installed: .ci/run installs man-db (see the README's test command)");
    }
    for (package, bin, _, _) in TOOLS {
        let tool = workspace_bin(package, bin);
        let dir = tempfile::tempdir().unwrap();
        let (ok, listed, stderr) = run(&tool, &["--man-dir", dir.path().to_str().unwrap()]);
        assert!(ok, "{bin} --man-dir failed: {stderr}");
        let pages: Vec<PathBuf> = listed.lines().map(PathBuf::from).collect();
        assert!(
            pages.iter().any(|p| p.ends_with(format!("{bin}.1"))),
            "{bin}: {listed}"
        );
        for page in &pages {
            assert!(
                page.starts_with(dir.path()),
                "{} outside the directory",
                page.display()
            );
            let out = Command::new("man")
                .args(["--warnings", "-E", "UTF-8", "-l"])
                .arg(page)
                .env("MANWIDTH", "100")
                .env("MAN_KEEP_FORMATTING", "0")
                .output()
                .expect("running man");
            let text = without_overstrike(&String::from_utf8_lossy(&out.stdout));
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "man {}: {warnings}", page.display());
            assert!(
                warnings.trim().is_empty(),
                "man {}: {warnings}",
                page.display()
            );
            let stem = page.file_stem().unwrap().to_string_lossy();
            assert!(
                text.contains("NAME") && text.contains("SYNOPSIS"),
                "{stem}: {text}"
            );
            assert!(text.contains(&*stem), "{stem} does not name itself: {text}");
        }
    }
}

/// man's bold and underline on a non-terminal are `X\bX` and `_\bX`: the character after a
/// backspace replaces the one before it.
fn without_overstrike(text: &str) -> String {
    let mut out: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c == '\u{8}' {
            out.pop();
            continue;
        }
        out.push(c);
    }
    out.into_iter().collect()
}
