//! Helpers the integration tests share: running image-builder, the workspace's tool binaries,
//! fixture paths, and a stand-in `packer` script for the cases real Packer cannot produce on
//! demand (a failure at a chosen point, a build that waits for a signal).

#![allow(dead_code)]

pub mod azure;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The image-builder binary under test.
pub fn image_builder_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_image-builder"))
}

/// An image-builder command with no Azure credentials inherited from the developer's shell.
pub fn image_builder() -> Command {
    let mut cmd = Command::new(image_builder_bin());
    for name in [
        "ARM_CLIENT_ID",
        "ARM_CLIENT_SECRET",
        "ARM_TENANT_ID",
        "ARM_SUBSCRIPTION_ID",
    ] {
        cmd.env_remove(name);
    }
    cmd.env("CHECKPOINT_DISABLE", "1");
    cmd
}

/// The install-nomad and run-nomad binaries of this workspace (built for this machine).
pub fn tool_bins() -> (PathBuf, PathBuf) {
    (
        support::doubles::bins::workspace_bin("install-nomad", "install-nomad"),
        support::doubles::bins::workspace_bin("run-nomad", "run-nomad"),
    )
}

/// Small executables of this machine's CPU that stand in for install-nomad and run-nomad where
/// a command only reads, checks, hashes and copies them (render, validate): the real ones are
/// 100 MB debug builds, and these tests never run them.
pub fn stand_in_bins() -> (PathBuf, PathBuf) {
    let find = |name: &str| {
        ["/usr/bin", "/bin"]
            .iter()
            .map(|dir| Path::new(dir).join(name))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("no {name} executable on this machine"))
    };
    (find("true"), find("false"))
}

/// Adds `--install-nomad` and `--run-nomad` with [`stand_in_bins`].
pub fn with_tool_bins(cmd: &mut Command) -> &mut Command {
    let (install_nomad, run_nomad) = stand_in_bins();
    cmd.arg("--install-nomad")
        .arg(install_nomad)
        .arg("--run-nomad")
        .arg(run_nomad)
}

pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// The shared real-data directory (`../shared` from the repository root).
pub fn shared(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(relative)
}

pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("running image-builder");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Writes a spec file and returns its path.
pub fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Every file under a directory, relative, sorted (empty when it does not exist).
pub fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The real Packer on `PATH` (Debian's 1.6.6 in CI).
pub fn real_packer() -> PathBuf {
    let path = std::env::var_os("PATH").expect("PATH is set");
    std::env::split_paths(&path)
        .map(|dir| dir.join("packer"))
        .find(|p| p.is_file())
        .expect("Packer is installed (apt-get install packer)")
}

/// A stand-in `packer` for what the real one cannot do here: an azure-arm build. It answers
/// `version` with `version_line`, logs every invocation (argv and whether ARM_CLIENT_SECRET /
/// PKR_VAR_* were in its environment) to `<dir>/packer.log`, and runs `build_body` (POSIX sh)
/// for `build`, with `$dir` = the template directory (the last argument) and `$marks` =
/// `<dir>/marks`.
///
/// Everything else behaves as the Packer it claims to be. As 1.6.x, `validate` (and `init`,
/// which 1.6 does not have) are the real Packer's. As 1.7+, `init` needs a `required_plugins`
/// block and "installs" the plugin, and `validate` fails as Packer does ("Missing plugins ...
/// Did you run packer init for this project ?") until `init` ran.
pub fn fake_packer(dir: &Path, version_line: &str, build_body: &str) -> PathBuf {
    let marks = dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    let log = dir.join("packer.log");
    let path = dir.join("packer");
    let script = format!(
        r#"#!/bin/sh
marks={marks}
log={log}
real={real}
version={version_line}
for last in "$@"; do :; done
dir="$last"
printf 'argv:' >> "$log"
printf ' %s' "$@" >> "$log"
printf '\n' >> "$log"
env | grep -E '^(PKR_VAR_|ARM_CLIENT_SECRET|CHECKPOINT_DISABLE)' | sed 's/^/env: /' >> "$log"
case "$version" in
    "Packer v1.6."*) old=1 ;;
    *) old= ;;
esac
case "$1" in
    version) echo "$version" ;;
    init|validate)
        if [ -n "$old" ]; then
            exec "$real" "$@"
        fi
        if [ "$1" = init ]; then
            if ! grep -q required_plugins "$dir"/*.pkr.hcl; then
                echo 'No plugins requirement found, make sure you reference a Packer config containing a packer.required_plugins block.' >&2
                exit 1
            fi
            : > "$marks/azure-plugin-installed"
            echo 'Installed plugin github.com/hashicorp/azure v2.3.3 in "/root/.config/packer/plugins/github.com/hashicorp/azure/packer-plugin-azure_v2.3.3_x5.0_linux_amd64"'
            exit 0
        fi
        if [ ! -e "$marks/azure-plugin-installed" ]; then
            printf '%s\n' '1,,ui,error,Error: Missing plugins\n\nThe following plugins are required%!(PACKER_COMMA) but not installed:\n\n* github.com/hashicorp/azure ~> 2\n\nDid you run packer init for this project ?\n\n'
            exit 1
        fi
        ;;
    build)
{build_body}
        ;;
    *) echo "fake packer: unexpected $1" >&2; exit 2 ;;
esac
"#,
        marks = support::shell::quote(marks.to_str().unwrap()),
        log = support::shell::quote(log.to_str().unwrap()),
        real = support::shell::quote(real_packer().to_str().unwrap()),
        version_line = support::shell::quote(version_line),
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Waits (bounded) for a file a child process creates when it reaches a point.
pub fn wait_for_file(path: &Path, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what} ({})",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A stand-in Azure CLI (`az` is not installed here) answering the two commands image-builder
/// runs, in the shape the Azure CLI documents: `az account show --output json` (the current
/// subscription, read from `<dir>/az-subscription` so a test can switch accounts) and
/// `az account get-access-token --resource R --output json` (`accessToken`, `expires_on`,
/// `subscription`, `tenant`, `tokenType`). Every call is appended to `<dir>/az.log`.
pub fn fake_az(dir: &Path, subscription: &str, token: &str) -> PathBuf {
    std::fs::write(dir.join("az-subscription"), subscription).unwrap();
    let path = dir.join("az");
    let script = format!(
        r#"#!/bin/sh
dir={dir}
echo "$*" >> "$dir/az.log"
sub=$(cat "$dir/az-subscription")
case "$*" in
    "account show --output json")
        printf '{{"environmentName": "AzureCloud", "id": "%s", "isDefault": true, "name": "Ops", "state": "Enabled", "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47", "user": {{"name": "ops@example.com", "type": "user"}}}}\n' "$sub"
        ;;
    "account get-access-token --resource "*" --output json")
        printf '{{"accessToken": "%s", "expiresOn": "2099-01-01 00:00:00.000000", "expires_on": 4070908800, "subscription": "%s", "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47", "tokenType": "Bearer"}}\n' {token} "$sub"
        ;;
    *) echo "ERROR: fake az: unexpected arguments: $*" >&2; exit 2 ;;
esac
"#,
        dir = support::shell::quote(dir.to_str().unwrap()),
        token = support::shell::quote(token),
    );
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A 64-bit ELF executable header for `arch` and nothing else: what render and validate read
/// of the binaries they upload (they check the header, never run them). For specs whose image
/// CPU is not this machine's.
pub fn elf_stub(dir: &Path, name: &str, arch: &str) -> PathBuf {
    let machine: u16 = match arch {
        "amd64" => 62,
        "arm64" => 183,
        other => panic!("no ELF machine for {other}"),
    };
    let mut header = vec![0u8; 64];
    header[..4].copy_from_slice(b"\x7fELF");
    header[4] = 2; // 64-bit
    header[5] = 1; // little endian
    header[6] = 1; // ELF version
    header[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    header[18..20].copy_from_slice(&machine.to_le_bytes());
    header[20..24].copy_from_slice(&1u32.to_le_bytes());
    header[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    header[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize, no program headers
    let path = dir.join(name);
    std::fs::write(&path, header).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Adds `--install-nomad` and `--run-nomad` with [`elf_stub`]s for `arch` made in `dir`.
pub fn with_stub_bins<'a>(cmd: &'a mut Command, dir: &Path, arch: &str) -> &'a mut Command {
    cmd.arg("--install-nomad")
        .arg(elf_stub(dir, "install-nomad", arch))
        .arg("--run-nomad")
        .arg(elf_stub(dir, "run-nomad", arch))
}
