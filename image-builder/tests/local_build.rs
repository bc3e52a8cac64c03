//! The `local` target end to end with the real Packer (null builder + shell-local) and the real
//! install-nomad and run-nomad, pulling from the loopback release mirror double: the root ends
//! up with a verified Nomad, run-nomad, the nomad user's directories, and a record plus
//! manifest; identical inputs are skipped, a changed input rebuilds, and a build that fails
//! mid-way (a tampered release, a failing extra command) records nothing.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use support::doubles::mirror::{Mirror, Tamper, CONSUL_LATEST, NOMAD_LATEST};

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no release builds for {other}"),
    }
}

fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap()
}

/// A local-target spec pulling from the mirror.
fn spec_text(mirror: &Mirror, nomad_version: &str, extra_commands: &[&str]) -> String {
    let commands: Vec<String> = extra_commands.iter().map(|c| toml_string(c)).collect();
    format!(
        r#"nomad_version = "{nomad_version}"
consul_version = "{CONSUL_LATEST}"
cni_version = "1.6.2"
cni_sha256 = "{cni_sha}"
arch = "{arch}"
target = "local"
extra_commands = [{commands}]

[release]
url = {url}
public_key = {key}
cni_url = {cni_url}

[local]
root = "root"
"#,
        cni_sha = mirror.cni_sha256("1.6.2", host_arch()),
        arch = host_arch(),
        commands = commands.join(", "),
        url = toml_string(&mirror.url()),
        key = toml_string(mirror.public_key_file().to_str().unwrap()),
        cni_url = toml_string(&mirror.cni_url()),
    )
}

fn build(spec: &Path, state: &Path) -> Run {
    let (install_nomad, run_nomad) = tool_bins();
    let mut cmd = image_builder();
    cmd.args(["build", "--config"])
        .arg(spec)
        .arg("--state-dir")
        .arg(state)
        .arg("--install-nomad")
        .arg(install_nomad)
        .arg("--run-nomad")
        .arg(run_nomad);
    run(&mut cmd)
}

fn records(state: &Path) -> Vec<String> {
    files_under(&state.join("records"))
}

/// The uid of `user` in a root's /etc/passwd.
fn uid_in(root: &Path, user: &str) -> u32 {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields[0] == user).then(|| fields[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no {user} in {passwd}"))
}

#[test]
fn a_local_build_provisions_the_root_records_it_and_skips_identical_inputs() {
    let mirror = Mirror::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let root: PathBuf = dir.path().join("root");
    let spec = write_spec(
        dir.path(),
        "image.toml",
        &spec_text(
            &mirror,
            NOMAD_LATEST,
            &["mkdir -p etc/nomad.d && echo \"baked into $IMAGE_ROOT\" > etc/nomad.d/marker"],
        ),
    );

    // The root starts like a booted image: a machine id, and D-Bus's copy of it.
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("var/lib/dbus")).unwrap();
    for id in ["etc/machine-id", "var/lib/dbus/machine-id"] {
        std::fs::write(root.join(id), "4c4c4544003510518042b2c04f4d3332\n").unwrap();
    }

    let first = build(&spec, &state);
    assert!(first.ok(), "{first:?}");
    let root = root.canonicalize().unwrap();
    assert_eq!(first.stdout, format!("{}\n", root.display()));
    // Readable progress from Packer's stream, including the script's own lines.
    assert!(
        first
            .stderr
            .contains(&format!("image-builder: installing Nomad {NOMAD_LATEST}")),
        "{first:?}"
    );
    assert!(
        first
            .stderr
            .contains("image-builder: provisioning finished"),
        "{first:?}"
    );

    // Nomad as the mirror published it (install-nomad verified the signature and checksum).
    let nomad = root.join("opt/nomad/bin/nomad");
    assert_eq!(
        std::fs::read(&nomad).unwrap(),
        mirror.binary("nomad", NOMAD_LATEST, host_arch())
    );
    let meta = std::fs::metadata(&nomad).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o755));
    // run-nomad beside it, byte for byte the one uploaded.
    assert_eq!(
        std::fs::read(root.join("opt/nomad/bin/run-nomad")).unwrap(),
        std::fs::read(tool_bins().1).unwrap()
    );
    // The nomad user and its directories.
    let nomad_uid = uid_in(&root, "nomad");
    for name in ["config", "data", "log", "tls"] {
        let meta = std::fs::metadata(root.join("opt/nomad").join(name)).unwrap();
        assert!(meta.is_dir(), "{name}");
        assert_eq!(meta.uid(), nomad_uid, "{name} belongs to nomad");
    }
    assert_eq!(
        std::fs::metadata(root.join("opt/nomad/data"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(
        std::fs::read_link(root.join("usr/local/bin/nomad")).unwrap(),
        Path::new("/opt/nomad/bin/nomad")
    );
    // Consul and the CNI plugins through the same verified code.
    assert_eq!(
        std::fs::read(root.join("opt/consul/bin/consul")).unwrap(),
        mirror.binary("consul", CONSUL_LATEST, host_arch())
    );
    assert_eq!(
        std::fs::read(root.join("opt/cni/bin/bridge")).unwrap(),
        mirror.cni_plugin("bridge", "1.6.2", host_arch())
    );
    // Nomad's bridge networking is set up for boot (the spec installs the CNI plugins).
    assert!(
        std::fs::read_to_string(root.join("etc/modules-load.d/nomad-bridge.conf"))
            .unwrap()
            .contains("\nbr_netfilter\n")
    );
    assert!(
        std::fs::read_to_string(root.join("etc/sysctl.d/90-nomad-bridge.conf"))
            .unwrap()
            .contains("net.bridge.bridge-nf-call-iptables = 1\n")
    );
    // Every VM will make its own machine id.
    assert_eq!(std::fs::read(root.join("etc/machine-id")).unwrap(), b"");
    assert_eq!(
        std::fs::read_link(root.join("var/lib/dbus/machine-id")).unwrap(),
        Path::new("/etc/machine-id")
    );
    // The extra command ran in the root.
    assert_eq!(
        std::fs::read_to_string(root.join("etc/nomad.d/marker")).unwrap(),
        format!("baked into {}\n", root.display())
    );

    // The record and Packer's manifest.
    let found = records(&state);
    assert_eq!(found.len(), 2, "{found:?}");
    let record_file = found
        .iter()
        .find(|f| !f.ends_with(".manifest.json"))
        .unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("records").join(record_file)).unwrap())
            .unwrap();
    let hash = record["input_hash"].as_str().unwrap().to_string();
    assert_eq!(record["target"], "local");
    assert_eq!(record["image_id"], root.to_str().unwrap());
    assert_eq!(record["artifact_id"], "Null");
    assert_eq!(record["nomad_version"], NOMAD_LATEST);
    assert_eq!(record["packer_version"], "1.6.6");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.join("records").join(format!("{hash}.manifest.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["builds"][0]["builder_type"], "null");
    assert_eq!(
        manifest["builds"][0]["custom_data"]["image_builder_input_hash"],
        hash.as_str()
    );
    assert_eq!(manifest["last_run_uuid"], record["packer_run_uuid"]);

    // Identical inputs: skipped, nothing downloaded, the recorded root printed.
    let downloads = mirror.requests().len();
    let second = build(&spec, &state);
    assert!(second.ok(), "{second:?}");
    assert_eq!(second.stdout, first.stdout);
    assert!(second.stderr.contains("were built already"), "{second:?}");
    assert_eq!(
        mirror.requests().len(),
        downloads,
        "the skipped build downloaded"
    );
    assert_eq!(records(&state).len(), 2);

    // The recorded root lost its Nomad: the record is not trusted, the same inputs build again.
    std::fs::remove_file(&nomad).unwrap();
    let repaired = build(&spec, &state);
    assert!(repaired.ok(), "{repaired:?}");
    assert!(
        repaired.stderr.contains(&format!(
            "but {} is missing: building again",
            nomad.display()
        )),
        "{repaired:?}"
    );
    assert_eq!(
        std::fs::read(&nomad).unwrap(),
        mirror.binary("nomad", NOMAD_LATEST, host_arch())
    );
    assert_eq!(records(&state).len(), 2, "the same inputs, the same record");

    // A changed input (one more extra command) rebuilds.
    std::fs::write(
        &spec,
        spec_text(
            &mirror,
            NOMAD_LATEST,
            &[
                "mkdir -p etc/nomad.d && echo \"baked into $IMAGE_ROOT\" > etc/nomad.d/marker",
                "touch etc/nomad.d/second",
            ],
        ),
    )
    .unwrap();
    let third = build(&spec, &state);
    assert!(third.ok(), "{third:?}");
    assert!(!third.stderr.contains("were built already"), "{third:?}");
    assert!(root.join("etc/nomad.d/second").exists());
    assert_eq!(records(&state).len(), 4);
}

#[test]
fn a_tampered_release_fails_the_build_and_records_nothing() {
    let mirror = Mirror::start();
    mirror.tamper("nomad", "1.10.0", Tamper::Archive);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let spec = write_spec(dir.path(), "image.toml", &spec_text(&mirror, "1.10.0", &[]));
    let out = build(&spec, &state);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("packer build failed"), "{out:?}");
    assert!(
        out.stderr
            .contains("null.local: Script exited with non-zero exit status"),
        "{out:?}"
    );
    // install-nomad's own words reach the report (it names the archive it refused).
    assert!(out.stderr.contains("nomad_1.10.0_linux_"), "{out:?}");
    assert!(!dir.path().join("root/opt/nomad/bin/nomad").exists());
    assert_eq!(records(&state), Vec::<String>::new());
    assert_eq!(files_under(&state), ["lock"]);
}

#[test]
fn a_failing_extra_command_fails_the_build_and_records_nothing() {
    let mirror = Mirror::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let spec = write_spec(
        dir.path(),
        "image.toml",
        &spec_text(
            &mirror,
            NOMAD_LATEST,
            &["echo 'about to fail, on purpose' >&2; exit 3"],
        ),
    );
    let out = build(&spec, &state);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("Script exited with non-zero exit status: 3"),
        "{out:?}"
    );
    assert!(out.stderr.contains("about to fail, on purpose"), "{out:?}");
    assert_eq!(records(&state), Vec::<String>::new());
    assert_eq!(files_under(&state), ["lock"]);
}
