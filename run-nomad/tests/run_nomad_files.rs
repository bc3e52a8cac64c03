//! What run-nomad writes, as custom data runs it: `--dry-run` prints the files and commands and
//! touches nothing; the gossip key is never logged, a bad one is refused without being echoed,
//! and the configuration is `0640` root and the nomad group; the layout and the user default
//! from the executable's location, like the original script; the command lines
//! cluster-deploy's custom data uses produce a server and a client (`--no-start`).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::{
    against_imds, instance, nothing_written, output, run_nomad, FakeRoot, StubSystemctl,
    GOSSIP_KEY, LAYOUT_ARGS, NOMAD_GID,
};
use support::doubles::imds::ImdsDouble;

#[test]
fn dry_run_prints_files_and_commands_and_touches_nothing() {
    let root = FakeRoot::new();
    let imds = ImdsDouble::start(instance());
    let systemctl = StubSystemctl::new();
    let (ok, stdout, stderr) = against_imds(
        &root,
        &imds,
        &systemctl,
        &[
            "--dry-run",
            "--server",
            "--num-servers",
            "3",
            "--gossip-key-file",
            "/opt/nomad/config/gossip.key",
        ],
    );
    assert!(ok, "{stdout}\n{stderr}");
    let hcl_path = root.at("/opt/nomad/config/default.hcl");
    assert!(
        stdout.contains(&format!(
            "would write {} (mode 0640, owner 0:{NOMAD_GID}, new):",
            hcl_path.display()
        )),
        "{stdout}"
    );
    assert!(stdout.contains("    bootstrap_expect = 3"), "{stdout}");
    assert!(
        stdout.contains("encrypt          = \"<redacted>\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("nomad.service (mode 0644, owner 0:0, new):"),
        "{stdout}"
    );
    let ctl = systemctl.program().display().to_string();
    assert!(
        stdout.contains(&format!("would run: {ctl} daemon-reload")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("would run: {ctl} restart nomad.service")),
        "{stdout}"
    );
    assert!(!stdout.contains(GOSSIP_KEY) && !stderr.contains(GOSSIP_KEY));
    nothing_written(&root);
    assert!(systemctl.take_calls().is_empty(), "dry-run ran systemctl");
}

#[test]
fn the_gossip_key_is_never_logged_and_the_config_is_0640_root_and_the_nomad_group() {
    let root = FakeRoot::new();
    let metadata = root.metadata_file(&instance());
    let mut cmd = run_nomad();
    cmd.arg("-vv")
        .arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .arg("--no-start")
        .args(LAYOUT_ARGS)
        .args(["--server", "--num-servers", "3", "--gossip-key", GOSSIP_KEY]);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        !stdout.contains(GOSSIP_KEY) && !stderr.contains(GOSSIP_KEY),
        "{stderr}"
    );
    let hcl = root.at("/opt/nomad/config/default.hcl");
    let meta = fs::metadata(&hcl).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    assert_eq!((meta.uid(), meta.gid()), (0, NOMAD_GID));
    assert!(fs::read_to_string(&hcl).unwrap().contains(GOSSIP_KEY));
    let unit = fs::metadata(root.at("/etc/systemd/system/nomad.service")).unwrap();
    assert_eq!(
        (unit.mode() & 0o7777, unit.uid(), unit.gid()),
        (0o644, 0, 0)
    );

    // A bad key is refused without being echoed.
    let bad = "c2hvcnQta2V5";
    let root = FakeRoot::new();
    fs::write(root.at("/opt/nomad/config/gossip.key"), bad).unwrap();
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .args(LAYOUT_ARGS)
        .args([
            "--server",
            "--num-servers",
            "3",
            "--gossip-key-file",
            "/opt/nomad/config/gossip.key",
        ]);
    let (ok, _, stderr) = output(&mut cmd);
    assert!(!ok);
    assert!(
        stderr.contains("--gossip-key-file /opt/nomad/config/gossip.key"),
        "{stderr}"
    );
    assert!(stderr.contains("decodes to 9 bytes"), "{stderr}");
    assert!(!stderr.contains(bad), "{stderr}");
    nothing_written(&root);
}

#[test]
fn defaults_follow_the_executable_like_the_original() {
    let root = FakeRoot::new();
    let exe = root.at("/opt/nomad/bin/run-nomad");
    // Not fs::copy: see copy_executable (ETXTBSY under parallel tests).
    support::doubles::bins::copy_executable(env!("CARGO_BIN_EXE_run-nomad").as_ref(), &exe);
    let metadata = root.metadata_file(&instance());
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .args(["--no-start", "--server", "--num-servers", "1"]);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(ok, "{stdout}\n{stderr}");
    let unit = root.read("/etc/systemd/system/nomad.service");
    assert!(
        unit.contains(
            "ExecStart=/opt/nomad/bin/nomad agent -config /opt/nomad/config -data-dir /opt/nomad/data"
        ),
        "{unit}"
    );
    // The default user is the owner of the config directory: the nomad user.
    assert!(unit.contains("\nUser=nomad\nGroup=nomad\n"), "{unit}");
    assert!(root.at("/opt/nomad/config/default.hcl").exists());
}

/// The flags cluster-deploy's custom data uses parse and produce a server and a client.
#[test]
fn the_cluster_deploy_command_lines_work() {
    let root = FakeRoot::new();
    let metadata = root.metadata_file(&instance());
    let tls = |name: &str| format!("/opt/nomad/tls/{name}");
    let server: Vec<String> = [
        "--server",
        "--num-servers",
        "3",
        "--scale-set-name",
        "prod-servers",
        "--gossip-key-file",
        "/opt/nomad/config/gossip.key",
        "--tls-ca-file",
        &tls("ca.pem"),
        "--tls-cert-file",
        &tls("server.pem"),
        "--tls-key-file",
        &tls("server-key.pem"),
        "--acl",
        "--datacenter",
        "dc1",
        "--region",
        "global",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for args in [
        server,
        vec![
            "--client".into(),
            "--scale-set-name".into(),
            "prod-servers".into(),
            "--node-class".into(),
            "web".into(),
        ],
    ] {
        let mut cmd = run_nomad();
        cmd.arg("--root")
            .arg(root.path())
            .arg("--metadata-file")
            .arg(&metadata)
            .arg("--no-start")
            .args(LAYOUT_ARGS)
            .args(&args);
        let (ok, stdout, stderr) = output(&mut cmd);
        assert!(ok, "{args:?}\n{stdout}\n{stderr}");
        let hcl = root.read("/opt/nomad/config/default.hcl");
        assert!(
            hcl.contains("provider=azure resource_group=nomad-prod-rg vm_scale_set=prod-servers subscription_id=0b1f6471-1bf0-4dda-aec3-111122223333"),
            "{hcl}"
        );
    }
}
