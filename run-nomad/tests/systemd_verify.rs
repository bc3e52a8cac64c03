//! The generated unit passes `systemd-analyze verify` (systemd's own unit loader, run offline)
//! with nothing on stderr. It exits 0 on unknown keys and bad values, so stderr is the check;
//! a control unit with a deliberate mistake shows the check can fail. A stand-in executable
//! sits at the ExecStart path, which verify requires to exist.

mod common;

use std::process::Command;

use common::{instance, output, run_nomad, LiveInstall};

/// Writes the unit for `extra` flags and returns its path.
fn unit(live: &LiveInstall, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let metadata = live.path("imds.json");
    std::fs::write(&metadata, instance().to_string()).unwrap();
    let mut cmd = run_nomad();
    cmd.arg("--metadata-file")
        .arg(&metadata)
        .arg("--no-start")
        .args(live.args(name))
        .args(extra);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(ok, "{stdout}\n{stderr}");
    live.path("unit").join("nomad.service")
}

/// Runs `systemd-analyze verify` and returns (exit success, stderr).
fn verify(unit: &std::path::Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("systemd-analyze (Debian package systemd, installed by .ci/run)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_clean(unit: &std::path::Path) {
    let (ok, stderr) = verify(unit);
    let text = std::fs::read_to_string(unit).unwrap();
    assert!(
        ok && stderr.trim().is_empty(),
        "systemd-analyze verify complained:\n{stderr}\nunit:\n{text}"
    );
}

#[test]
fn server_and_client_units_verify_cleanly() {
    let live = LiveInstall::new("plain");
    assert_clean(&unit(&live, "plain", &["--server", "--num-servers", "3"]));
    let live = LiveInstall::new("plain");
    assert_clean(&unit(
        &live,
        "plain",
        &[
            "--client",
            "--environment",
            "ARM_ENVIRONMENT=AzurePublicCloud",
            "--systemd-stdout",
            "journal",
            "--systemd-stderr",
            "append:/var/log/nomad-error.log",
        ],
    ));
}

#[test]
fn hostile_paths_and_environment_values_verify_cleanly() {
    // The bin directory holds the executable, so it must really exist with this name
    // (quotes and backslashes systemd refuses in a program path; the data directory has them).
    let name = "with space $HOME %n ✓";
    let live = LiveInstall::new(name);
    let mut args = vec!["--client".to_string()];
    let values = [
        "plain",
        "two words",
        "q\"uote and \\backslash",
        "$HOME ${USER} $$",
        "%n %h %%",
        "new\nline\ttab\rcr",
        "ctl\u{1}\u{1b}\u{7f}",
        "c1 \u{85}",
        "unicode ✓ é 😀",
        "trailing\\",
        "",
    ];
    for (i, v) in values.iter().enumerate() {
        args.push("--environment".into());
        args.push(format!("HOSTILE_{i}={v}"));
    }
    args.push("--systemd-stdout".into());
    args.push("append:/var/log/nomad 100%.log".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let path = unit(&live, name, &args);
    assert_clean(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text.matches("\nEnvironment=").count(),
        values.len(),
        "{text}"
    );
}

#[test]
fn the_check_sees_mistakes() {
    let live = LiveInstall::new("control");
    let path = unit(&live, "control", &["--client"]);
    let text = std::fs::read_to_string(&path).unwrap();
    // The AWS sibling's misspelt key, and an escape systemd does not know.
    let broken = text.replace(
        "KillMode=process\n",
        "KillMode=process\nConditionalFileNotEmpty=/x\nEnvironment=\"A=\\q\"\n",
    );
    let control = live.path("unit").join("control.service");
    std::fs::write(&control, broken).unwrap();
    let (ok, stderr) = verify(&control);
    assert!(ok, "verify exits 0 even so");
    assert!(stderr.contains("Unknown key"), "{stderr}");
    assert!(stderr.contains("Invalid syntax"), "{stderr}");
}

#[test]
fn a_program_path_systemd_would_refuse_is_refused_before_writing() {
    let name = "o'brien";
    let live = LiveInstall::new(name);
    let metadata = live.path("imds.json");
    std::fs::write(&metadata, instance().to_string()).unwrap();
    let mut cmd = run_nomad();
    cmd.arg("--metadata-file")
        .arg(&metadata)
        .arg("--no-start")
        .args(live.args(name))
        .arg("--client");
    let (ok, _, stderr) = output(&mut cmd);
    assert!(!ok);
    assert!(stderr.contains("invalid --bin-dir"), "{stderr}");
    assert!(
        stderr.contains("systemd refuses an executable path"),
        "{stderr}"
    );
    assert!(!live.path("unit").join("nomad.service").exists());
    assert!(!live.path("config").join("default.hcl").exists());
}
