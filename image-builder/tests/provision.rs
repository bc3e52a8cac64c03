//! The rendered provisioning script, run by a real shell as Packer runs it on the Azure build VM
//! (`IMAGE_BUILDER_TARGET=azure`) and for the local target, with stand-ins for the programs that
//! only exist on the VM: `cloud-init` (its documented `status --wait` exit codes: 0 done,
//! 1 unrecoverable error, 2 done with recoverable errors), `apt-get`, and install-nomad. Every
//! stand-in logs its arguments to one file, so the order of the steps is visible.
//!
//! What the script does to a root is also checked with the real Packer and the real
//! install-nomad in `local_build.rs`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A rendered build directory for a spec (its `provision.sh` and `files/`).
fn rendered(spec: &str, dir: &Path) -> PathBuf {
    let out = dir.join("rendered");
    let mut cmd = image_builder();
    cmd.args(["render", "--packer-version", "1.6.6", "--config"])
        .arg(fixture(spec))
        .arg("--out")
        .arg(&out);
    with_tool_bins(&mut cmd);
    let result = run(&mut cmd);
    assert!(result.ok(), "{result:?}");
    out
}

fn executable(path: &Path, script: &str) {
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Vm {
    dir: tempfile::TempDir,
    rendered: PathBuf,
    root: PathBuf,
    bin: PathBuf,
}

impl Vm {
    /// A build VM for `spec`: the rendered script, a root, and stand-ins on PATH. cloud-init
    /// exits `cloud_init_status` (None: not installed).
    fn new(spec: &str, cloud_init_status: Option<u8>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rendered = rendered(spec, dir.path());
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let log = dir.path().join("calls.log");
        let log = support::shell::quote(log.to_str().unwrap());
        if let Some(status) = cloud_init_status {
            let (word, detail) = match status {
                0 => ("done", "errors: []\nrecoverable_errors: {}"),
                2 => (
                    "done",
                    "extended_status: degraded done\nrecoverable_errors:\nWARNING:\n\t- Deprecated cloud-config key: ...",
                ),
                _ => (
                    "error",
                    "extended_status: error - done\nerrors:\n\t- (scripts_user) Failed to run module scripts_user",
                ),
            };
            executable(
                &bin.join("cloud-init"),
                &format!(
                    "#!/bin/sh\necho \"cloud-init $*\" >> {log}\ncase \"$*\" in\n\
                     'status --wait') echo '...'; echo 'status: {word}'; exit {status} ;;\n\
                     'status --long') printf 'status: {word}\\n{detail}\\n'; exit {status} ;;\n\
                     *) exit 2 ;;\nesac\n"
                ),
            );
        }
        executable(
            &bin.join("apt-get"),
            &format!(
                "#!/bin/sh\necho \"apt-get $* (DEBIAN_FRONTEND=$DEBIAN_FRONTEND)\" >> {log}\n"
            ),
        );
        // install-nomad as far as the script can tell: it records its arguments and installs
        // the two files the script checks for.
        executable(
            &rendered.join("files/install-nomad"),
            &format!(
                "#!/bin/sh\necho \"install-nomad $*\" >> {log}\n\
                 mkdir -p \"$IMAGE_ROOT/opt/nomad/bin\"\n\
                 printf '#!/bin/sh\\n' > \"$IMAGE_ROOT/opt/nomad/bin/nomad\"\n\
                 printf '#!/bin/sh\\n' > \"$IMAGE_ROOT/opt/nomad/bin/run-nomad\"\n\
                 chmod 0755 \"$IMAGE_ROOT/opt/nomad/bin/nomad\" \"$IMAGE_ROOT/opt/nomad/bin/run-nomad\"\n"
            ),
        );
        Vm {
            dir,
            rendered,
            root,
            bin,
        }
    }

    fn run(&self, target: &str) -> Run {
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.bin.display());
        run(Command::new("/bin/sh")
            .arg(self.rendered.join("provision.sh"))
            .env_clear()
            .env("PATH", path)
            .env("IMAGE_ROOT", &self.root)
            .env("IMAGE_BUILDER_FILES", self.rendered.join("files"))
            .env("IMAGE_BUILDER_TARGET", target))
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }

    fn call_lines(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("calls.log")).unwrap_or_default()
    }
}

#[test]
fn on_the_vm_cloud_init_is_awaited_before_apt_installs_docker_and_supervisor() {
    let vm = Vm::new("specs/docker-client.toml", Some(0));
    let out = vm.run("azure");
    assert!(out.ok(), "{out:?}");
    assert_eq!(
        vm.calls(),
        [
            "cloud-init status",
            "apt-get -o",
            "apt-get -o",
            "install-nomad --version"
        ]
    );
    let lines = vm.call_lines();
    assert!(lines.contains("cloud-init status --wait\n"), "{lines}");
    assert!(
        lines
            .contains("apt-get -o DPkg::Lock::Timeout=600 update (DEBIAN_FRONTEND=noninteractive)"),
        "{lines}"
    );
    assert!(
        lines.contains(
            "apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends docker.io supervisor (DEBIAN_FRONTEND=noninteractive)"
        ),
        "{lines}"
    );
    assert!(
        out.stdout.contains("image-builder: cloud-init is done"),
        "{out:?}"
    );
}

#[test]
fn cloud_init_done_with_recoverable_errors_is_reported_and_tolerated() {
    let vm = Vm::new("specs/docker-client.toml", Some(2));
    let out = vm.run("azure");
    assert!(out.ok(), "{out:?}");
    assert!(
        out.stderr
            .contains("cloud-init is done, with recoverable errors (continuing)"),
        "{out:?}"
    );
    // The details come from `cloud-init status --long`.
    assert!(out.stderr.contains("degraded done"), "{out:?}");
    assert!(vm.root.join("opt/nomad/bin/nomad").exists());
}

#[test]
fn cloud_init_failing_stops_the_bake_before_anything_is_installed() {
    let vm = Vm::new("specs/docker-client.toml", Some(1));
    let out = vm.run("azure");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("cloud-init failed (cloud-init status --wait exited 1)"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("Failed to run module scripts_user"),
        "{out:?}"
    );
    assert_eq!(vm.calls(), ["cloud-init status", "cloud-init status"]);
    assert!(!vm.root.join("opt").exists());
}

#[test]
fn an_image_without_cloud_init_is_not_waited_for() {
    let vm = Vm::new("specs/managed-image.toml", None);
    let out = vm.run("azure");
    assert!(out.ok(), "{out:?}");
    assert!(
        out.stdout
            .contains("cloud-init is not installed: nothing to wait for"),
        "{out:?}"
    );
    // No packages asked for: apt-get does not run.
    assert_eq!(vm.calls(), ["install-nomad --version"]);
}

#[test]
fn the_local_target_neither_waits_for_cloud_init_nor_runs_apt() {
    let vm = Vm::new("specs/docker-client.toml", Some(1));
    let out = vm.run("local");
    assert!(out.ok(), "{out:?}");
    assert_eq!(vm.calls(), ["install-nomad --version"]);
    assert!(
        out.stdout.contains(
            "the local target provisions a directory: not installing Ubuntu packages docker.io supervisor"
        ),
        "{out:?}"
    );
}

#[test]
fn bridge_networking_is_configured_for_boot() {
    let vm = Vm::new("specs/docker-client.toml", Some(0));
    assert!(vm.run("azure").ok());
    let module = vm.root.join("etc/modules-load.d/nomad-bridge.conf");
    let sysctl = vm.root.join("etc/sysctl.d/90-nomad-bridge.conf");
    let lines = |path: &Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(lines(&module), ["br_netfilter"]);
    assert_eq!(
        lines(&sysctl),
        [
            "net.bridge.bridge-nf-call-arptables = 1",
            "net.bridge.bridge-nf-call-ip6tables = 1",
            "net.bridge.bridge-nf-call-iptables = 1",
        ]
    );
    for path in [&module, &sysctl] {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", path.display());
    }
    // No temporary file is left beside them.
    assert_eq!(
        files_under(&vm.root.join("etc")),
        [
            "modules-load.d/nomad-bridge.conf",
            "sysctl.d/90-nomad-bridge.conf"
        ]
    );
    // Without CNI plugins there is no bridge networking to configure.
    let plain = Vm::new("specs/cli-auth.toml", Some(0));
    assert!(plain.run("azure").ok());
    assert!(!plain.root.join("etc/sysctl.d").exists());
}

#[test]
fn the_machine_id_is_emptied_not_deleted_and_dbus_follows_it() {
    let vm = Vm::new("specs/managed-image.toml", Some(0));
    std::fs::create_dir_all(vm.root.join("etc")).unwrap();
    std::fs::create_dir_all(vm.root.join("var/lib/dbus")).unwrap();
    std::fs::write(
        vm.root.join("etc/machine-id"),
        "4c4c4544003510518042b2c04f4d3332\n",
    )
    .unwrap();
    std::fs::write(
        vm.root.join("var/lib/dbus/machine-id"),
        "4c4c4544003510518042b2c04f4d3332\n",
    )
    .unwrap();
    let out = vm.run("azure");
    assert!(out.ok(), "{out:?}");
    assert_eq!(std::fs::read(vm.root.join("etc/machine-id")).unwrap(), b"");
    assert_eq!(
        std::fs::read_link(vm.root.join("var/lib/dbus/machine-id")).unwrap(),
        Path::new("/etc/machine-id")
    );
    // Run again (a link already in place stays as it is).
    assert!(vm.run("azure").ok());
    assert_eq!(
        std::fs::read_link(vm.root.join("var/lib/dbus/machine-id")).unwrap(),
        Path::new("/etc/machine-id")
    );
}
