//! What the rehearsals share: the real binaries, a local bake, cluster-deploy against the ARM
//! and login doubles, and a VM's first boot in a chroot of the baked image.

#![allow(dead_code)] // each rehearsal uses a different part

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use support::doubles::arm::{ArmDouble, LoginDouble};
use support::doubles::bins::workspace_bin;
use support::doubles::imds::{self, ImdsDouble};
use support::doubles::mirror::{Mirror, NOMAD_LATEST};
use support::shell;

pub const CLIENT_ID: &str = "00000000-0000-0000-0000-0000000000c1";
pub const CLIENT_SECRET: &str = "rehearsal-client-secret~never-printed";
/// The example cluster's names (examples/cluster.toml).
pub const RESOURCE_GROUP: &str = "nomad-example";
pub const SERVERS: &str = "nomad-example-servers";
pub const CLIENTS: &str = "nomad-example-clients";

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("HashiCorp publishes no Linux release for {other}"),
    }
}

pub fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap()
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Step 1: a local bake from the mirror; returns the image root.
pub fn bake(mirror: &Mirror, dir: &Path) -> PathBuf {
    let spec = dir.join("image.toml");
    fs::write(
        &spec,
        format!(
            r#"nomad_version = "{NOMAD_LATEST}"
arch = "{arch}"
target = "local"

[release]
url = {url}
public_key = {key}

[local]
root = "image-root"
"#,
            arch = host_arch(),
            url = toml_string(&mirror.url()),
            key = toml_string(mirror.public_key_file().to_str().unwrap()),
        ),
    )
    .unwrap();
    let out = run(
        Command::new(workspace_bin("image-builder", "image-builder"))
            .args(["build", "--config"])
            .arg(&spec)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--install-nomad")
            .arg(workspace_bin("install-nomad", "install-nomad"))
            .arg("--run-nomad")
            .arg(workspace_bin("run-nomad", "run-nomad")),
    );
    let root = dir.join("image-root").canonicalize().unwrap();
    // For the local target the recorded image is the root itself.
    assert_eq!(text(&out.stdout).trim(), root.display().to_string());
    root
}

/// The example cluster, as it is (secure by default), with the image.
pub fn cluster_file(dir: &Path, image_id: &str) -> PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.toml");
    let mut text = fs::read_to_string(&example).unwrap();
    let image_line = text
        .lines()
        .find(|l| l.starts_with("image_id"))
        .expect("the example names an image")
        .to_string();
    text = text.replace(
        &image_line,
        &format!("image_id = {}", toml_string(image_id)),
    );
    let path = dir.join("cluster.toml");
    fs::write(&path, text).unwrap();
    path
}

/// The operator: cluster-deploy with client-secret credentials against the doubles, the
/// cluster's vault at `vault_url` (its data plane's DNS name, in effect), and a configuration
/// directory of its own (where `env` writes).
pub struct Operator<'a> {
    pub config: &'a Path,
    pub arm: &'a ArmDouble,
    pub login: &'a LoginDouble,
    /// `--key-vault-url`, once the vault's data plane is up.
    pub vault_url: Option<String>,
    pub config_home: PathBuf,
}

impl Operator<'_> {
    /// The command for `args` (a subcommand and its flags), with `env` added to the
    /// otherwise empty environment.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(workspace_bin("cluster-deploy", "cluster-deploy"));
        cmd.env_clear()
            .env("ARM_TENANT_ID", "contoso.onmicrosoft.com")
            .env("ARM_CLIENT_ID", CLIENT_ID)
            .env("ARM_CLIENT_SECRET", CLIENT_SECRET)
            .env("ARM_SUBSCRIPTION_ID", self.arm.subscription())
            .env("XDG_CONFIG_HOME", &self.config_home)
            .envs(env.iter().copied())
            .args(args)
            .arg("--config")
            .arg(self.config)
            .args(["--arm-endpoint", self.arm.url()])
            .args(["--login-endpoint", self.login.url()])
            .args(
                self.vault_url
                    .iter()
                    .flat_map(|url| ["--key-vault-url", url.as_str()]),
            )
            // Nothing of the operator's machine: no IMDS, no Azure CLI.
            .args(["--imds-endpoint", "http://127.0.0.1:9"])
            .args(["--az-program", "/nonexistent/az"])
            .args(["--poll-interval-ms", "5", "--retry-delay-ms", "5"])
            .args(["--principal-retry-ms", "5"]);
        cmd
    }

    /// Runs `args` to success; the credentials never show in its output.
    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = run(&mut self.command(args, env));
        self.assert_no_credential(&out);
        out
    }

    pub fn assert_no_credential(&self, out: &Output) {
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        for secret in [CLIENT_SECRET, self.arm.token().as_str()] {
            assert!(
                !all.contains(secret),
                "a credential in cluster-deploy's output:\n{all}"
            );
        }
    }
}

/// The IMDS answer of instance 0 of a scale set of the example cluster.
pub fn instance_metadata(scale_set: &str, subscription: &str, ip: &str, vm_id: &str) -> Value {
    let mut doc = imds::fixture("instance.json");
    let compute = &mut doc["compute"];
    compute["name"] = json!(format!("{scale_set}_0"));
    compute["vmScaleSetName"] = json!(scale_set);
    compute["resourceGroupName"] = json!(RESOURCE_GROUP);
    compute["subscriptionId"] = json!(subscription);
    compute["location"] = json!("westeurope");
    compute["vmId"] = json!(vm_id);
    doc["network"]["interface"][0]["ipv4"]["ipAddress"][0]["privateIpAddress"] = json!(ip);
    doc
}

/// Step 3: a VM's first boot. Copies the image, then runs `custom_data` as cloud-init would
/// (as root, from `/`), chrooted into the copy. The host's programs and libraries are
/// bind-mounted read-only in a private mount namespace, so every mount ends with the process
/// and nothing the script does can reach the host's files. The environment points run-nomad's
/// endpoints at the doubles: IMDS, and `env`'s other variables (a Key Vault's URL). Returns
/// the boot's standard error.
pub fn boot(
    image: &Path,
    vm: &Path,
    custom_data: &str,
    imds: &ImdsDouble,
    env: &[(&str, &str)],
) -> String {
    run(Command::new("cp").arg("-a").arg(image).arg(vm));
    // What the base image would have: the unit directory, /tmp, and a systemctl that records
    // what it is asked (systemd is not PID 1 here) and reports the unit as not yet running.
    fs::create_dir_all(vm.join("etc/systemd/system")).unwrap();
    fs::create_dir_all(vm.join("tmp")).unwrap();
    fs::set_permissions(vm.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir_all(vm.join("rehearsal")).unwrap();
    let systemctl = vm.join("rehearsal/systemctl");
    fs::write(
        &systemctl,
        "#!/bin/sh\necho \"$*\" >> /rehearsal/systemctl.log\n[ \"$1\" = is-active ] && exit 3\nexit 0\n",
    )
    .unwrap();
    fs::set_permissions(&systemctl, fs::Permissions::from_mode(0o755)).unwrap();
    let script = vm.join("rehearsal/custom-data");
    fs::write(&script, custom_data).unwrap();

    let mut mounts = Vec::new();
    for dir in [
        "bin",
        "sbin",
        "lib",
        "lib64",
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "dev",
    ] {
        let host = Path::new("/").join(dir);
        let inside = vm.join(dir);
        match fs::symlink_metadata(&host) {
            // A merged-/usr host: the same link inside, unless the image has its own.
            Ok(meta) if meta.file_type().is_symlink() && fs::symlink_metadata(&inside).is_err() => {
                std::os::unix::fs::symlink(fs::read_link(&host).unwrap(), &inside).unwrap();
            }
            Ok(meta) if meta.is_dir() => {
                fs::create_dir_all(&inside).unwrap();
                let (host, inside) = (host.to_str().unwrap(), inside.to_str().unwrap());
                mounts.push(format!(
                    "mount --bind {h} {i} && mount -o remount,bind,ro {i}",
                    h = shell::quote(host),
                    i = shell::quote(inside)
                ));
            }
            _ => {}
        }
    }
    // A booted VM has /proc (run-nomad finds its own path through /proc/self/exe).
    fs::create_dir_all(vm.join("proc")).unwrap();
    mounts.push(format!(
        "mount -t proc proc {}",
        shell::quote(vm.join("proc").to_str().unwrap())
    ));
    let inner = format!(
        "set -e; {}; exec chroot {} /bin/sh /rehearsal/custom-data",
        mounts.join("; "),
        shell::quote(vm.to_str().unwrap())
    );
    let out = run(Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &inner])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("RUN_NOMAD_IMDS_ENDPOINT", imds.url())
        .env("RUN_NOMAD_SYSTEMCTL", "/rehearsal/systemctl")
        .envs(env.iter().copied()));
    text(&out.stderr)
}

/// (uid, gid, mode) of a file.
pub fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

/// The gid of `name` in the VM's `/etc/group`.
pub fn group_id(vm: &Path, name: &str) -> u32 {
    fs::read_to_string(vm.join("etc/group"))
        .unwrap()
        .lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            (fields.first() == Some(&name)).then(|| fields[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("the image has no group {name}"))
}
