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
    // The values live in the environment file, never in the unit.
    assert!(!text.contains("\nEnvironment="), "{text}");
    let env_file = live.path("config").join("run-nomad.env");
    assert!(
        text.contains(&format!("\nEnvironmentFile={}\n", env_file.display()).replace('%', "%%")),
        "{text}"
    );
    let read = read_environment_file(&env_file);
    for (i, v) in values.iter().enumerate() {
        assert_eq!(
            read.get(&format!("HOSTILE_{i}")).map(String::as_str),
            Some(*v),
            "HOSTILE_{i} read back wrong from:\n{}",
            std::fs::read_to_string(&env_file).unwrap()
        );
    }
}

/// Reads an environment file the way systemd.exec(5) documents for `EnvironmentFile=`: a
/// double-quoted value follows "the same escape sequences ... as in POSIX shell double-quoted
/// strings". No systemd parser runs offline here, so a real POSIX shell (Debian's dash, as
/// /bin/sh) reads it, with nothing expanded that systemd would not expand.
fn read_environment_file(path: &std::path::Path) -> std::collections::HashMap<String, String> {
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg("set -a && . \"$1\" && exec env -0")
        .arg("sh")
        .arg(path)
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8(entry.to_vec()).ok()?;
            let (k, v) = text.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn environment_values_go_to_a_root_only_file_not_the_world_readable_unit() {
    use std::os::unix::fs::MetadataExt;
    let live = LiveInstall::new("secret");
    let secret = "s3cr3t-client-secret";
    let path = unit(
        &live,
        "secret",
        &[
            "--client",
            "--environment",
            &format!("ARM_CLIENT_SECRET={secret}"),
        ],
    );
    assert_clean(&path);
    let unit_text = std::fs::read_to_string(&path).unwrap();
    assert!(!unit_text.contains(secret), "{unit_text}");
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);
    let env_file = live.path("config").join("run-nomad.env");
    let meta = std::fs::metadata(&env_file).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert_eq!(
        read_environment_file(&env_file)
            .get("ARM_CLIENT_SECRET")
            .map(String::as_str),
        Some(secret)
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

/// The Scheduled Events watcher's unit, written beside Nomad's, verifies cleanly too: for a
/// server with TLS, a client with an ACL token file, and paths systemd must be told to take
/// literally. Its ExecStart is run-nomad itself (the test binary, which exists).
#[test]
fn the_watcher_unit_verifies_cleanly() {
    let live = LiveInstall::new("watch");
    let tls = live.path("tls 100% $x");
    std::fs::create_dir_all(&tls).unwrap();
    let mut files = Vec::new();
    for name in ["ca.pem", "cert.pem", "key.pem"] {
        let path = tls.join(name);
        std::fs::write(&path, name).unwrap();
        files.push(path.display().to_string());
    }
    let token = live.path("watcher token");
    std::fs::write(&token, "00000000-0000-4000-8000-000000000001\n").unwrap();
    let token = token.display().to_string();
    unit(
        &live,
        "watch",
        &[
            "--server",
            "--num-servers",
            "3",
            "--tls-ca-file",
            &files[0],
            "--tls-cert-file",
            &files[1],
            "--tls-key-file",
            &files[2],
            "--watch-events-token-file",
            &token,
        ],
    );
    let path = live.path("unit").join("nomad-scheduled-events.service");
    assert_clean(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("--nomad-tls-server-name server.eastus2.nomad"),
        "{text}"
    );
    assert!(
        text.contains("--nomad-address https://127.0.0.1:4646"),
        "{text}"
    );
    assert!(
        !text.contains("00000000-0000-4000-8000-000000000001"),
        "{text}"
    );
    // It stops nomad.service itself: it must not be stopped with it.
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("PartOf=") || l.starts_with("BindsTo=")),
        "{text}"
    );

    let live = LiveInstall::new("watch-client");
    unit(&live, "watch-client", &["--client"]);
    let path = live.path("unit").join("nomad-scheduled-events.service");
    assert_clean(&path);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(" watch-events --client "), "{text}");
    assert!(
        text.contains("--nomad-address http://127.0.0.1:4646"),
        "{text}"
    );
}

#[test]
fn no_watch_events_writes_no_watcher_unit() {
    let live = LiveInstall::new("none");
    unit(&live, "none", &["--client", "--no-watch-events"]);
    assert!(!live
        .path("unit")
        .join("nomad-scheduled-events.service")
        .exists());
}

/// The watcher's leave signal and process query are command lines the real systemctl takes:
/// with no systemd as PID 1 here it fails to connect, but only after parsing its options, and
/// an option it does not know is refused before that (the control case shows the difference).
#[test]
fn the_self_drain_commands_parse_with_the_real_systemctl() {
    use run_nomad::cli::InitSystem;
    use run_nomad::events::agent::{InitService, ServiceControl};
    let service = InitService {
        init: InitSystem::Systemd,
        program: "systemctl".into(),
    };
    let outcomes = [
        service.signal_leave().err().unwrap_or_default(),
        service.main_pid().err().unwrap_or_default(),
    ];
    for outcome in &outcomes {
        assert!(
            !outcome.contains("unrecognized option") && !outcome.contains("invalid"),
            "{outcome}"
        );
    }
    let control = Command::new("systemctl")
        .args(["kill", "--kill-whoever=main", "nomad.service"])
        .output()
        .expect("systemctl (Debian package systemd, installed by .ci/run)");
    assert!(String::from_utf8_lossy(&control.stderr).contains("unrecognized option"));
}
