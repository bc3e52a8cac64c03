//! The install-nomad binary against the release mirror double on 127.0.0.1: installs,
//! reinstalls, upgrades, `latest`, arm64, file://, CNI and Consul, plus the CLI's own checks.
//! Tests run as root here, so ownership and modes are asserted for real.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{owner_mode, stderr, Env, RUN_NOMAD};
use support::doubles::mirror::{Catalogue, Mirror, SignatureFiles, CONSUL_LATEST, NOMAD_LATEST};

#[test]
fn installs_nomad_run_nomad_the_user_its_directories_and_the_symlink() {
    let env = Env::new();
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("installed Nomad 1.10.0 (linux_amd64) in /opt/nomad/bin"),
        "{log}"
    );
    assert!(log.contains("created system user nomad"), "{log}");

    let nomad = env.path("/opt/nomad/bin/nomad");
    assert_eq!(
        fs::read(&nomad).unwrap(),
        env.mirror.binary("nomad", "1.10.0", "amd64")
    );
    assert_eq!(owner_mode(&nomad), (0o755, 0, 0));
    let run_nomad = env.path("/opt/nomad/bin/run-nomad");
    assert_eq!(fs::read(&run_nomad).unwrap(), RUN_NOMAD);
    assert_eq!(owner_mode(&run_nomad), (0o755, 0, 0));
    assert_eq!(owner_mode(&env.path("/opt/nomad")), (0o755, 0, 0));
    assert_eq!(owner_mode(&env.path("/opt/nomad/bin")), (0o755, 0, 0));

    let (uid, gid) = env
        .account("nomad")
        .expect("nomad user in the root's passwd");
    assert!((100..1000).contains(&uid), "system uid, got {uid}");
    let passwd = fs::read_to_string(env.path("/etc/passwd")).unwrap();
    assert!(
        passwd.contains(&format!(
            "nomad:x:{uid}:{gid}:Nomad:/opt/nomad:/usr/sbin/nologin\n"
        )),
        "{passwd}"
    );
    let group = fs::read_to_string(env.path("/etc/group")).unwrap();
    assert!(group.contains(&format!("nomad:x:{gid}:\n")), "{group}");
    for (dir, mode) in [
        ("config", 0o750),
        ("data", 0o700),
        ("log", 0o750),
        ("tls", 0o750),
    ] {
        assert_eq!(
            owner_mode(&env.path(&format!("/opt/nomad/{dir}"))),
            (mode, uid, gid),
            "{dir}"
        );
    }
    let link = env.path("/usr/local/bin/nomad");
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("/opt/nomad/bin/nomad")
    );

    // The installed stand-in answers `version` like the real binary.
    let version = Command::new(&nomad).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("Nomad v1.10.0\n"));
    assert_eq!(env.leftovers(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn the_same_version_again_is_a_fast_no_op_that_says_so() {
    let env = Env::new();
    env.cmd("1.10.0").assert().success();
    let before = env.snapshot();
    env.mirror.clear_requests();
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.contains("Nomad 1.10.0 (linux_amd64) is already installed"),
        "{log}"
    );
    assert!(log.contains("nothing to do"), "{log}");
    let zips: Vec<_> = env
        .mirror
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with(".zip"))
        .collect();
    assert!(zips.is_empty(), "archive downloaded again: {zips:?}");
    // Not a byte, mode, owner or inode changed (the lock file of the user database aside).
    let mut after = env.snapshot();
    after.remove(Path::new("etc/.pwd.lock"));
    let mut before = before;
    before.remove(Path::new("etc/.pwd.lock"));
    assert_eq!(before, after);
}

#[test]
fn a_changed_installed_binary_is_not_the_same_install() {
    let env = Env::new();
    env.cmd("1.10.0").assert().success();
    let nomad = env.path("/opt/nomad/bin/nomad");
    fs::write(&nomad, "#!/bin/sh\necho replaced\n").unwrap();
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("installed Nomad 1.10.0"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read(&nomad).unwrap(),
        env.mirror.binary("nomad", "1.10.0", "amd64")
    );
}

#[test]
fn upgrades_keep_configuration_and_data() {
    let env = Env::new();
    env.cmd("1.9.7").assert().success();
    fs::write(
        env.path("/opt/nomad/config/nomad.hcl"),
        "datacenter = \"dc1\"\n",
    )
    .unwrap();
    fs::write(env.path("/opt/nomad/data/state"), "raft").unwrap();
    let out = env.cmd("1.10.5").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(env.path("/opt/nomad/bin/nomad")).unwrap(),
        env.mirror.binary("nomad", "1.10.5", "amd64")
    );
    assert_eq!(
        fs::read_to_string(env.path("/opt/nomad/config/nomad.hcl")).unwrap(),
        "datacenter = \"dc1\"\n"
    );
    assert_eq!(
        fs::read_to_string(env.path("/opt/nomad/data/state")).unwrap(),
        "raft"
    );
    let receipt = fs::read_to_string(env.path("/opt/nomad/.install-nomad.json")).unwrap();
    assert!(receipt.contains("\"version\": \"1.10.5\""), "{receipt}");
    assert_eq!(env.leftovers(), Vec::<std::path::PathBuf>::new());
}

#[test]
fn latest_is_the_newest_stable_release() {
    let env = Env::new();
    let out = env.cmd("latest").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "latest stable Nomad on {} is {NOMAD_LATEST}",
            env.mirror.url()
        )),
        "{}",
        stderr(&out)
    );
    // The catalogue has 1.10.6+ent and 1.11.0-rc.1, both newer: neither is taken.
    assert_eq!(
        fs::read(env.path("/opt/nomad/bin/nomad")).unwrap(),
        env.mirror.binary("nomad", NOMAD_LATEST, "amd64")
    );
}

#[test]
fn arm64_installs_the_arm64_build() {
    let env = Env::new();
    let out = env
        .cmd("1.10.0")
        .args(["--arch", "arm64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(env.path("/opt/nomad/bin/nomad")).unwrap(),
        env.mirror.binary("nomad", "1.10.0", "arm64")
    );
    let paths: Vec<String> = env.mirror.requests().into_iter().map(|r| r.path).collect();
    assert!(
        paths.contains(&Mirror::archive_path("nomad", "1.10.0", "arm64")),
        "{paths:?}"
    );
    assert!(!paths.iter().any(|p| p.contains("amd64")), "{paths:?}");
}

#[test]
fn a_file_mirror_works_without_a_server() {
    let env = Env::new();
    let out = env
        .cmd("latest")
        .args(["--download-url", &env.mirror.file_url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(env.path("/opt/nomad/bin/nomad")).unwrap(),
        env.mirror.binary("nomad", NOMAD_LATEST, "amd64")
    );
    assert!(env.mirror.requests().is_empty());
}

#[test]
fn installs_the_cni_plugins() {
    let env = Env::new();
    let sha = env.mirror.cni_sha256("1.6.2", "amd64");
    let out = env
        .cmd("1.10.0")
        .args(["--cni-version", "1.6.2", "--cni-sha256", &sha])
        .args(["--cni-download-url", &env.mirror.cni_url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("installed CNI plugins v1.6.2 (linux_amd64) in /opt/cni/bin"));
    for plugin in support::doubles::mirror::CNI_PLUGINS {
        let path = env.path(&format!("/opt/cni/bin/{plugin}"));
        assert_eq!(
            fs::read(&path).unwrap(),
            env.mirror.cni_plugin(plugin, "1.6.2", "amd64")
        );
        assert_eq!(owner_mode(&path), (0o755, 0, 0), "{plugin}");
    }
    assert_eq!(owner_mode(&env.path("/opt/cni/bin/LICENSE")), (0o644, 0, 0));
    assert_eq!(owner_mode(&env.path("/opt/cni/bin")), (0o755, 0, 0));

    // Again: nothing downloaded, and it says so.
    env.mirror.clear_requests();
    let again = env
        .cmd("1.10.0")
        .args(["--cni-version", "v1.6.2", "--cni-sha256", &sha])
        .args(["--cni-download-url", &env.mirror.cni_url()])
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("CNI plugins v1.6.2 (linux_amd64) is already installed"));
    assert!(!env
        .mirror
        .requests()
        .iter()
        .any(|r| r.path.ends_with(".tgz")));
}

#[test]
fn cni_from_a_file_mirror() {
    let env = Env::new();
    let sha = env.mirror.cni_sha256("1.6.2", "arm64");
    let out = env
        .cmd("1.10.0")
        .args([
            "--arch",
            "arm64",
            "--cni-version",
            "1.6.2",
            "--cni-sha256",
            &sha,
        ])
        .args(["--cni-download-url", &env.mirror.cni_file_url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(env.path("/opt/cni/bin/bridge")).unwrap(),
        env.mirror.cni_plugin("bridge", "1.6.2", "arm64")
    );
}

#[test]
fn cni_is_checked_against_the_pinned_hash() {
    // 1.6.2 is pinned with the real release's SHA-256; the double's tarball is a stand-in, so
    // the pin refuses it, and nothing at all is installed.
    let env = Env::new();
    let before = env.snapshot();
    let out = env
        .cmd("1.10.0")
        .args([
            "--cni-version",
            "1.6.2",
            "--cni-download-url",
            &env.mirror.cni_url(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = stderr(&out);
    let url = format!(
        "{}/v1.6.2/cni-plugins-linux-amd64-v1.6.2.tgz",
        env.mirror.cni_url()
    );
    assert!(log.contains(&format!("refusing {url}")), "{log}");
    assert!(
        log.contains(
            "b8e811578fb66023f90d2e238d80cec3bdfca4b44049af74c374d4fae0f9c090 was expected"
        ),
        "{log}"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn cni_without_a_pin_needs_the_flag() {
    let env = Env::new();
    let before = env.snapshot();
    let out = env
        .cmd("1.10.0")
        .args([
            "--cni-version",
            "1.5.1",
            "--cni-download-url",
            &env.mirror.cni_url(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("pass --cni-sha256"),
        "{}",
        stderr(&out)
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn installs_consul_through_the_same_verified_release_code() {
    let env = Env::new();
    let out = env
        .cmd("1.10.0")
        .args(["--consul-version", "latest"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let consul = env.path("/opt/consul/bin/consul");
    assert_eq!(
        fs::read(&consul).unwrap(),
        env.mirror.binary("consul", CONSUL_LATEST, "amd64")
    );
    assert_eq!(owner_mode(&consul), (0o755, 0, 0));
    assert_eq!(
        fs::read_link(env.path("/usr/local/bin/consul")).unwrap(),
        Path::new("/opt/consul/bin/consul")
    );
    let paths: Vec<String> = env.mirror.requests().into_iter().map(|r| r.path).collect();
    for expected in [
        "/consul/index.json".to_string(),
        Mirror::sums_path("consul", CONSUL_LATEST),
        format!(
            "/consul/{CONSUL_LATEST}/consul_{CONSUL_LATEST}_SHA256SUMS.{}.sig",
            env.mirror.key_id_suffix()
        ),
    ] {
        assert!(paths.contains(&expected), "{expected} not in {paths:?}");
    }
    let version = Command::new(&consul).arg("version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with(&format!("Consul v{CONSUL_LATEST}\n"))
    );
}

#[test]
fn consul_tampering_is_refused_and_nothing_changes() {
    let env = Env::new();
    env.cmd("1.10.0").assert().success();
    env.mirror.tamper(
        "consul",
        "1.20.6",
        support::doubles::mirror::Tamper::Archive,
    );
    let before = env.snapshot();
    let out = env
        .cmd("1.10.5")
        .args(["--consul-version", "1.20.6"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("consul_1.20.6_linux_amd64.zip"),
        "{}",
        stderr(&out)
    );
    // Nomad 1.10.5 verified fine, but nothing is placed unless everything verifies.
    assert_eq!(env.snapshot(), before);
    assert!(env.leftovers().is_empty());
}

#[test]
fn signature_file_fallbacks() {
    for signatures in [SignatureFiles::PlainOnly, SignatureFiles::KeyIdOnly] {
        let env = Env::with_catalogue(Catalogue {
            signatures,
            ..Catalogue::default()
        });
        let out = env.cmd("1.10.0").output().unwrap();
        assert!(out.status.success(), "{signatures:?}: {}", stderr(&out));
    }
}

#[test]
fn an_unknown_version_says_it_does_not_exist_on_the_mirror() {
    let env = Env::new();
    let before = env.snapshot();
    let out = env.cmd("9.9.9").output().unwrap();
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(
        log.contains(&format!(
            "Nomad version 9.9.9 does not exist on the mirror {}",
            env.mirror.url()
        )),
        "{log}"
    );
    assert!(log.contains("nomad_9.9.9_SHA256SUMS"), "{log}");
    assert_eq!(env.snapshot(), before, "not even /opt/nomad is left behind");
}

#[test]
fn a_root_without_a_user_database_is_a_clear_error() {
    let env = Env::new();
    fs::remove_file(env.path("/etc/passwd")).unwrap();
    let before = env.snapshot();
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(
        log.contains(&format!(
            "{} does not exist",
            env.path("/etc/passwd").display()
        )),
        "{log}"
    );
    assert!(
        env.mirror.requests().is_empty(),
        "checked before any download"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn skip_user_uses_an_existing_user_and_never_creates_one() {
    let env = Env::new();
    let out = env.cmd("1.10.0").arg("--skip-user").output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("user nomad does not exist in"),
        "{}",
        stderr(&out)
    );
    assert!(env.mirror.requests().is_empty());

    fs::write(
        env.path("/etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nnomad:x:4242:4343::/opt/nomad:/usr/sbin/nologin\n",
    )
    .unwrap();
    fs::write(env.path("/etc/group"), "root:x:0:\nnomad:x:4343:\n").unwrap();
    let out = env.cmd("1.10.0").arg("--skip-user").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        owner_mode(&env.path("/opt/nomad/data")),
        (0o700, 4242, 4343)
    );
    assert_eq!(env.account("nomad"), Some((4242, 4343)));
}

#[test]
fn plain_http_is_only_for_loopback() {
    let env = Env::new();
    let out = env
        .cmd("1.10.0")
        .args(["--download-url", "http://releases.example.invalid"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out)
            .contains("--download-url http://releases.example.invalid: plain http is only allowed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn run_nomad_defaults_to_the_one_next_to_the_executable() {
    let env = Env::new();
    let exe = env.scratch().join("bin/install-nomad");
    fs::create_dir(env.scratch().join("bin")).unwrap();
    // Not fs::copy: see copy_executable (ETXTBSY under parallel tests).
    support::doubles::bins::copy_executable(env!("CARGO_BIN_EXE_install-nomad").as_ref(), &exe);
    let run = |exe: &Path| {
        assert_cmd::Command::new(exe)
            .args(["--version", "1.10.0", "--arch", "amd64"])
            .arg("--root")
            .arg(env.root.path())
            .args(["--download-url", &env.mirror.url()])
            .arg("--public-key")
            .arg(env.mirror.public_key_file())
            .output()
            .unwrap()
    };
    let out = run(&exe);
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(log.contains("pass --run-nomad FILE"), "{log}");
    assert!(
        log.contains(&env.scratch().join("bin/run-nomad").display().to_string()),
        "{log}"
    );

    fs::write(
        env.scratch().join("bin/run-nomad"),
        b"#!/bin/sh\necho beside\n",
    )
    .unwrap();
    let out = run(&exe);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read(env.path("/opt/nomad/bin/run-nomad")).unwrap(),
        b"#!/bin/sh\necho beside\n"
    );
}

#[test]
fn a_missing_run_nomad_file_is_named() {
    let env = Env::new();
    let out = env
        .cmd("1.10.0")
        .args(["--run-nomad", "/nonexistent/run-nomad"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/run-nomad"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_embedded_hashicorp_key_does_not_trust_the_test_mirror() {
    let env = Env::new();
    let before = env.snapshot();
    let out = assert_cmd::Command::new(env!("CARGO_BIN_EXE_install-nomad"))
        .args(["--version", "1.10.0", "--arch", "amd64"])
        .arg("--root")
        .arg(env.root.path())
        .args(["--download-url", &env.mirror.url()])
        .arg("--run-nomad")
        .arg(env.run_nomad())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(
        log.contains("does not verify against the embedded HashiCorp release key"),
        "{log}"
    );
    assert!(
        log.contains("C874011F0AB405110D02105534365D9472D7468F"),
        "{log}"
    );
    assert_eq!(env.snapshot(), before);
}

#[test]
fn the_symlink_replaces_an_old_one_and_a_second_nomad_path_works() {
    let env = Env::new();
    fs::create_dir_all(env.path("/usr/local/bin")).unwrap();
    std::os::unix::fs::symlink("/old/place/nomad", env.path("/usr/local/bin/nomad")).unwrap();
    let out = env
        .cmd("1.10.0")
        .args([
            "--path",
            "/srv/hashicorp/nomad",
            "--system-bin-dir",
            "/usr/bin",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs::read_link(env.path("/usr/bin/nomad")).unwrap(),
        Path::new("/srv/hashicorp/nomad/bin/nomad")
    );
    // The other directory's link is not ours to change.
    assert_eq!(
        fs::read_link(env.path("/usr/local/bin/nomad")).unwrap(),
        Path::new("/old/place/nomad")
    );
    let meta = fs::metadata(env.path("/srv/hashicorp/nomad/bin/nomad")).unwrap();
    assert_eq!(meta.uid(), 0);
}

#[test]
fn an_install_left_by_the_old_script_is_taken_back_by_root() {
    // The bash script chowned everything under --path to the nomad user, who could then swap
    // the binary root runs. Seed that state and check root owns the chain afterwards.
    let env = Env::new();
    fs::write(
        env.path("/etc/passwd"),
        "root:x:0:0:root:/root:/bin/bash\nnomad:x:4242:4242::/opt/nomad:/bin/false\n",
    )
    .unwrap();
    fs::write(env.path("/etc/group"), "root:x:0:\nnomad:x:4242:\n").unwrap();
    fs::create_dir_all(env.path("/opt/nomad/bin")).unwrap();
    fs::write(env.path("/opt/nomad/bin/nomad"), "old").unwrap();
    for p in ["/opt/nomad", "/opt/nomad/bin", "/opt/nomad/bin/nomad"] {
        std::os::unix::fs::chown(env.path(p), Some(4242), Some(4242)).unwrap();
        fs::set_permissions(
            env.path(p),
            std::os::unix::fs::PermissionsExt::from_mode(0o775),
        )
        .unwrap();
    }
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for p in ["/opt/nomad", "/opt/nomad/bin", "/opt/nomad/bin/nomad"] {
        assert_eq!(owner_mode(&env.path(p)), (0o755, 0, 0), "{p}");
    }
    assert_eq!(
        owner_mode(&env.path("/opt/nomad/data")),
        (0o700, 4242, 4242)
    );
}

#[test]
fn a_proxy_in_the_environment_is_not_used_for_a_loopback_mirror() {
    let env = Env::new();
    // Port 9 (discard) has no proxy behind it: going through it would fail.
    let out = env
        .cmd("1.10.0")
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn bad_flags_are_named_before_anything_happens() {
    let env = Env::new();
    let before = env.snapshot();
    for (args, expected) in [
        (
            vec!["--version", "../1.0.0"],
            "invalid version \"../1.0.0\"",
        ),
        (vec!["--arch", "386"], "unsupported architecture \"386\""),
        (
            vec!["--path", "opt/nomad"],
            "--path opt/nomad must be an absolute path",
        ),
        (
            vec!["--public-key", "/nonexistent/key.asc"],
            "/nonexistent/key.asc",
        ),
        (
            vec!["--cni-download-url", "ftp://x.example"],
            "--cni-download-url ftp://x.example",
        ),
        (vec!["--user", "No:Body"], "invalid user name \"No:Body\""),
    ] {
        let out = env.cmd("1.10.0").args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(
            stderr(&out).contains(expected),
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(env.mirror.requests().is_empty());
    assert_eq!(env.snapshot(), before);
}

#[test]
fn json_prints_what_is_installed_and_whether_anything_changed() {
    let env = Env::new();
    let mut args = vec!["--json", "--consul-version", "1.21.4"];
    let out = env.cmd("1.10.0").args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // stdout is exactly one JSON document; the log stays on stderr.
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["changed"], true);
    assert_eq!(first["recovered"], serde_json::Value::Null);
    assert_eq!(first["receipt"], "/opt/nomad/.install-nomad.json");
    let nomad = &first["components"]["nomad"];
    assert_eq!(nomad["version"], "1.10.0");
    assert_eq!(nomad["arch"], "amd64");
    assert_eq!(nomad["archive"], "nomad_1.10.0_linux_amd64.zip");
    assert_eq!(
        nomad["archive_sha256"],
        env.mirror.archive_sha256("nomad", "1.10.0", "amd64")
    );
    assert_eq!(
        nomad["files"]["/opt/nomad/bin/nomad"],
        support::hash::sha256_hex(&env.mirror.binary("nomad", "1.10.0", "amd64"))
    );
    assert_eq!(nomad["changed"], true);
    assert_eq!(first["components"]["consul"]["version"], "1.21.4");
    assert_eq!(first["run_nomad"]["path"], "/opt/nomad/bin/run-nomad");
    assert_eq!(
        first["run_nomad"]["sha256"],
        support::hash::sha256_hex(RUN_NOMAD)
    );
    assert_eq!(first["run_nomad"]["changed"], true);
    assert_eq!(
        first["links"]["/usr/local/bin/nomad"],
        "/opt/nomad/bin/nomad"
    );
    assert_eq!(
        first["links"]["/usr/local/bin/consul"],
        "/opt/consul/bin/consul"
    );
    let (uid, gid) = env.account("nomad").unwrap();
    assert_eq!(
        first["user"],
        serde_json::json!({"name": "nomad", "uid": uid, "gid": gid, "created": true})
    );
    assert!(first["actions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "linked /usr/local/bin/nomad -> /opt/nomad/bin/nomad"));
    // The components are the receipt's, as written to disk.
    let receipt: serde_json::Value =
        serde_json::from_slice(&fs::read(env.path("/opt/nomad/.install-nomad.json")).unwrap())
            .unwrap();
    for (key, installed) in receipt["components"].as_object().unwrap() {
        let mut reported = first["components"][key].clone();
        reported.as_object_mut().unwrap().remove("changed");
        assert_eq!(&reported, installed, "{key}");
    }

    // Again: nothing changes, and the document says so.
    let out = env.cmd("1.10.0").args(&args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["changed"], false);
    assert_eq!(again["components"]["nomad"]["changed"], false);
    assert_eq!(again["run_nomad"]["changed"], false);
    assert_eq!(again["user"]["created"], false);
    assert_eq!(
        again["components"]["nomad"]["files"],
        first["components"]["nomad"]["files"]
    );
    let actions = again["actions"].as_array().unwrap();
    assert_eq!(
        actions.last().unwrap(),
        "nothing to do: everything is already in place"
    );

    // Without --json nothing goes to stdout.
    args.remove(0);
    let out = env.cmd("1.10.0").args(&args).output().unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}
