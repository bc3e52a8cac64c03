//! run-nomad's checks of its input, as custom data runs it: bad flags and files are refused
//! naming the flag or file (those that need no metadata before IMDS is read), and a refused
//! `--environment` item never shows its value; a failed run writes no file and runs no service
//! command. An even number of servers and a world-readable gossip key file are warned about
//! once, and the run goes on.

mod common;

use std::fs;

use common::{
    against_imds, instance, nothing_written, output, run_nomad, FakeRoot, StubSystemctl,
    GOSSIP_KEY, LAYOUT_ARGS,
};
use support::doubles::imds::ImdsDouble;

#[test]
fn bad_input_names_the_flag_or_file_and_writes_nothing() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--client", "--environment", "1BAD=x"],
            "invalid --environment \"1BAD=<redacted>\"",
        ),
        (&["--server", "--num-servers", "0"], "invalid --num-servers"),
        (
            &["--server", "--meta", "a=b", "--num-servers", "1"],
            "--meta applies to the client block",
        ),
        (&["--client", "--gossip-key", GOSSIP_KEY], "add --server"),
        (
            &[
                "--client",
                "--tls-ca-file",
                "/opt/nomad/tls/missing.pem",
                "--tls-cert-file",
                "/opt/nomad/tls/server.pem",
                "--tls-key-file",
                "/opt/nomad/tls/server-key.pem",
            ],
            "opt/nomad/tls/missing.pem",
        ),
        (
            &["--client", "--systemd-stdout", "syslog"],
            "invalid --systemd-stdout \"syslog\"",
        ),
        (
            &["--client", "--user", "nobody-here"],
            "--user \"nobody-here\": no such user in",
        ),
        (
            &["--client", "--cluster-tag-key", "absent"],
            "this VM has no tag \"absent\"",
        ),
        (
            &[
                "--client",
                "--init",
                "supervisor",
                "--environment",
                "A=both ' and \" inside",
            ],
            "supervisor cannot quote",
        ),
        (
            &["--client", "--skip-nomad-config", "--acl"],
            "--acl, --metadata-file only shape default.hcl",
        ),
    ];
    for (args, message) in cases {
        let root = FakeRoot::new();
        let metadata = root.metadata_file(&instance());
        let mut cmd = run_nomad();
        cmd.arg("--root")
            .arg(root.path())
            .arg("--metadata-file")
            .arg(&metadata)
            .args(LAYOUT_ARGS)
            .args(*args);
        let (ok, _, stderr) = output(&mut cmd);
        assert!(!ok, "{args:?} succeeded");
        assert!(
            stderr.contains(message),
            "{args:?}: expected {message:?} in\n{stderr}"
        );
        nothing_written(&root);
        assert!(!root.at("/etc/supervisor/conf.d/run-nomad.conf").exists());
    }
    // A missing config directory, and a missing nomad binary.
    let root = FakeRoot::new();
    fs::remove_dir_all(root.at("/opt/nomad/config")).unwrap();
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .args(LAYOUT_ARGS)
        .arg("--client");
    let (ok, _, stderr) = output(&mut cmd);
    assert!(!ok);
    assert!(
        stderr.contains("the config directory (see --config-dir) is not usable"),
        "{stderr}"
    );
    let root = FakeRoot::new();
    fs::remove_file(root.at("/opt/nomad/bin/nomad")).unwrap();
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .args(LAYOUT_ARGS)
        .arg("--client");
    let (ok, _, stderr) = output(&mut cmd);
    assert!(!ok);
    assert!(
        stderr.contains("the Nomad binary (see --bin-dir) is missing"),
        "{stderr}"
    );
}

/// Everything that needs no metadata is checked before IMDS is read: a typo never waits for
/// the IMDS deadline.
#[test]
fn bad_flags_and_files_fail_before_imds_is_read() {
    let imds = ImdsDouble::start(instance());
    let systemctl = StubSystemctl::new();
    let cases: &[&[&str]] = &[
        &["--client", "--environment", "NO EQUALS"],
        &["--client", "--meta", "=v"],
        &["--client", "--systemd-stdout", "syslog"],
        &["--server", "--num-servers", "3", "--gossip-key", "short"],
        &[
            "--server",
            "--num-servers",
            "3",
            "--gossip-key-file",
            "/opt/nomad/config/missing.key",
        ],
        &[
            "--client",
            "--tls-ca-file",
            "/x/ca.pem",
            "--tls-cert-file",
            "/x/c.pem",
            "--tls-key-file",
            "/x/k.pem",
        ],
        &[
            "--client",
            "--init",
            "supervisor",
            "--environment",
            "A=\"quoted\"",
        ],
        &["--client", "--user", "-bad"],
    ];
    for args in cases {
        let root = FakeRoot::new();
        let (ok, _, stderr) = against_imds(&root, &imds, &systemctl, args);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains("error:"), "{stderr}");
        nothing_written(&root);
    }
    assert!(
        imds.requests().is_empty(),
        "IMDS was read before the flags were checked"
    );
}

/// `--environment` carries secrets for Nomad's task drivers; custom data's output lands in
/// cloud-init's log, so no refusal of an `--environment` item ever prints its value.
#[test]
fn refused_environment_values_are_never_printed() {
    const SECRET: &str = "s3cr3t-value-xyz";
    let cases: Vec<Vec<String>> = vec![
        // Given twice.
        vec![
            "--environment".into(),
            format!("ARM_CLIENT_SECRET={SECRET}"),
            "--environment".into(),
            format!("ARM_CLIENT_SECRET={SECRET}"),
        ],
        // A bad name beside the value.
        vec!["--environment".into(), format!("1BAD={SECRET}")],
        // No `=`: the whole item may be the secret.
        vec!["--environment".into(), SECRET.into()],
        // A value supervisor cannot quote, one that looks like a comment, and a control
        // character.
        vec![
            "--init".into(),
            "supervisor".into(),
            "--environment".into(),
            format!("S=\"{SECRET}'"),
        ],
        vec![
            "--init".into(),
            "supervisor".into(),
            "--environment".into(),
            format!("S=a ;{SECRET}"),
        ],
        vec![
            "--init".into(),
            "supervisor".into(),
            "--environment".into(),
            format!("S={SECRET}\u{1}"),
        ],
        // A value a systemd environment file cannot carry.
        vec!["--environment".into(), format!("S={SECRET}\u{feff}")],
    ];
    for extra in cases {
        let root = FakeRoot::new();
        let metadata = root.metadata_file(&instance());
        let out = run_nomad()
            .arg("--root")
            .arg(root.path())
            .arg("--metadata-file")
            .arg(&metadata)
            .args(LAYOUT_ARGS)
            .arg("--client")
            .args(&extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{extra:?}: {stderr}");
        assert!(stderr.contains("--environment"), "{extra:?}: {stderr}");
        assert!(stderr.contains("<redacted>"), "{extra:?}: {stderr}");
        assert!(
            !stderr.contains(SECRET) && !stdout.contains(SECRET),
            "{extra:?} printed the value: {stderr}{stdout}"
        );
        nothing_written(&root);
    }
}

#[test]
fn an_even_number_of_servers_warns_and_still_configures() {
    let root = FakeRoot::new();
    let metadata = root.metadata_file(&instance());
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .arg("--no-start")
        .args(LAYOUT_ARGS)
        .args(["--server", "--num-servers", "4"]);
    let (ok, _, stderr) = output(&mut cmd);
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr.matches("--num-servers 4 is even").count(),
        1,
        "{stderr}"
    );
    let hcl = root.read("/opt/nomad/config/default.hcl");
    assert!(
        hcl.contains("bootstrap_expect = 4") && hcl.contains("min_quorum                = 4"),
        "{hcl}"
    );
}

#[test]
fn a_world_readable_gossip_key_file_warns_once() {
    use std::os::unix::fs::PermissionsExt;
    let root = FakeRoot::new();
    let key = root.at("/opt/nomad/config/gossip.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    let metadata = root.metadata_file(&instance());
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .arg("--no-start")
        .args(LAYOUT_ARGS)
        .args([
            "--server",
            "--num-servers",
            "3",
            "--gossip-key-file",
            "/opt/nomad/config/gossip.key",
        ]);
    let (ok, _, stderr) = output(&mut cmd);
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr.matches("is readable by every user").count(),
        1,
        "{stderr}"
    );
}
