//! The whole flow once, with the four real binaries and only loopback doubles:
//!
//! 1. bake: `image-builder build` (local target: the real Packer, null builder + shell-local)
//!    runs install-nomad against the release mirror double into an image root;
//! 2. deploy: `cluster-deploy apply` sends the cluster's ARM template to the ARM double, which
//!    evaluates it as Azure would and keeps each scale set's decoded custom data;
//! 3. boot: each scale set's custom data runs VERBATIM as root inside a copy of the baked image
//!    (a chroot in a private mount namespace, the host's programs bind-mounted read-only), where
//!    the baked run-nomad reads the IMDS double and writes the agent config and systemd unit;
//! 4. operate: `cluster-deploy outputs` and `status` read the ARM and Nomad API doubles.
//!
//! What this proves beyond each crate's own tests is the seams: the flags cluster-deploy writes
//! are the flags run-nomad takes, and the baked layout is the one run-nomad expects.
//!
//! The example cluster is secure by default: its TLS, gossip key and ACL token live in a Key
//! Vault that run-nomad fetches from at boot (`--key-vault`, cluster-deploy's custom_data
//! module documents the flags). Until run-nomad reads that vault, this rehearsal opts the
//! example out of every vault item (TLS, gossip encryption, the ACL bootstrap), each a warning
//! in plan, so the line cluster-deploy writes is one today's run-nomad takes; ACLs stay on.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use support::doubles::arm::{ArmDouble, LoginDouble};
use support::doubles::bins::workspace_bin;
use support::doubles::imds::{self, ImdsDouble};
use support::doubles::mirror::{Mirror, NOMAD_LATEST};
use support::doubles::nomad_api::{Member, NodeStub, NomadApiDouble};
use support::shell;

const CLIENT_ID: &str = "00000000-0000-0000-0000-0000000000c1";
const CLIENT_SECRET: &str = "rehearsal-client-secret~never-printed";
/// The example cluster's names (examples/cluster.toml).
const RESOURCE_GROUP: &str = "nomad-example";
const SERVERS: &str = "nomad-example-servers";
const CLIENTS: &str = "nomad-example-clients";

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("HashiCorp publishes no Linux release for {other}"),
    }
}

fn toml_string(value: &str) -> String {
    serde_json::to_string(value).unwrap()
}

fn run(cmd: &mut Command) -> Output {
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

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Step 1: a local bake from the mirror; returns the image root.
fn bake(mirror: &Mirror, dir: &Path) -> PathBuf {
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

/// The example cluster with the image, opted out of what the vault would hold.
fn cluster_file(dir: &Path, image_id: &str) -> PathBuf {
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
    let node_class = "node_class = \"general\"";
    assert!(text.contains(node_class), "the example's [nomad] table");
    text = text.replace(
        node_class,
        &format!("{node_class}\ngossip_encryption = false\nacl_bootstrap = false"),
    );
    text.push_str("\n[nomad.tls]\nenabled = false\n");
    let path = dir.join("cluster.toml");
    fs::write(&path, text).unwrap();
    path
}

/// cluster-deploy with client-secret credentials against the doubles.
fn cluster_deploy(config: &Path, arm: &ArmDouble, login: &LoginDouble, args: &[&str]) -> Output {
    let out = run(
        Command::new(workspace_bin("cluster-deploy", "cluster-deploy"))
            .env_clear()
            .env("ARM_TENANT_ID", "contoso.onmicrosoft.com")
            .env("ARM_CLIENT_ID", CLIENT_ID)
            .env("ARM_CLIENT_SECRET", CLIENT_SECRET)
            .env("ARM_SUBSCRIPTION_ID", arm.subscription())
            .args(args)
            .arg("--config")
            .arg(config)
            .args(["--arm-endpoint", arm.url(), "--login-endpoint", login.url()])
            .args(["--poll-interval-ms", "5", "--retry-delay-ms", "5"]),
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for secret in [CLIENT_SECRET, arm.token().as_str()] {
        assert!(
            !all.contains(secret),
            "a secret in cluster-deploy's output:\n{all}"
        );
    }
    out
}

/// The IMDS answer of instance 0 of a scale set of the example cluster.
fn instance_metadata(scale_set: &str, subscription: &str, ip: &str, vm_id: &str) -> Value {
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
/// and nothing the script does can reach the host's files.
fn boot(image: &Path, vm: &Path, custom_data: &str, imds: &ImdsDouble) -> String {
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
        .env("RUN_NOMAD_SYSTEMCTL", "/rehearsal/systemctl"));
    text(&out.stderr)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn bake_deploy_boot_operate() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // 1. Bake.
    let mirror = Mirror::start();
    let image = bake(&mirror, dir);
    assert_eq!(
        fs::read(image.join("opt/nomad/bin/nomad")).unwrap(),
        mirror.binary("nomad", NOMAD_LATEST, host_arch()),
        "the image carries the release the mirror signed"
    );

    // 2. Deploy. An Azure bake would have recorded a managed image id; the local bake proves
    //    the provisioning, so the cluster names an image as the Azure target would record it.
    let image_id = format!(
        "/subscriptions/{}/resourceGroups/nomad-images/providers/Microsoft.Compute/images/nomad-{NOMAD_LATEST}",
        "00000000-0000-0000-0000-000000000000"
    );
    let arm = ArmDouble::start();
    let login = LoginDouble::start(CLIENT_ID, CLIENT_SECRET, arm.token());
    let config = cluster_file(dir, &image_id);
    cluster_deploy(&config, &arm, &login, &["apply"]);
    let deployment = arm.deployments().pop().expect("a deployment");
    assert_eq!(deployment.request["properties"]["mode"], "Incremental");
    let server_data = arm.custom_data(SERVERS).expect("server custom data");
    let client_data = arm.custom_data(CLIENTS).expect("client custom data");
    for data in [&server_data, &client_data] {
        assert!(
            !data.contains("--key-vault"),
            "every vault item is opted out"
        );
    }

    // 3. Boot one server and one client from their custom data.
    let subscription = arm.subscription();
    let server_imds = ImdsDouble::start(instance_metadata(
        SERVERS,
        subscription,
        "10.0.10.4",
        "11111111-1111-4111-8111-111111111111",
    ));
    let server = dir.join("vm-server");
    boot(&image, &server, &server_data, &server_imds);
    let client_imds = ImdsDouble::start(instance_metadata(
        CLIENTS,
        subscription,
        "10.0.10.10",
        "22222222-2222-4222-8222-222222222222",
    ));
    let client = dir.join("vm-client");
    boot(&image, &client, &client_data, &client_imds);

    let join = format!(
        "\"provider=azure resource_group={RESOURCE_GROUP} vm_scale_set={SERVERS} subscription_id={subscription}\""
    );
    let server_hcl = fs::read_to_string(server.join("opt/nomad/config/default.hcl")).unwrap();
    for line in [
        "datacenter = \"dc1\"".to_string(),
        "region     = \"global\"".to_string(),
        "name       = \"11111111-1111-4111-8111-111111111111\"".to_string(),
        "bootstrap_expect = 3".to_string(),
        join.clone(),
        "min_quorum                = 3".to_string(),
        "http = \"10.0.10.4\"".to_string(),
    ] {
        assert!(
            server_hcl.contains(&line),
            "server config lacks {line}:\n{server_hcl}"
        );
    }
    assert!(server_hcl.contains("acl {"), "{server_hcl}");
    assert!(
        !server_hcl.contains("encrypt"),
        "gossip encryption opted out"
    );
    let config_file = server.join("opt/nomad/config/default.hcl");
    assert_eq!(mode(&config_file), 0o640);
    assert_eq!(fs::metadata(&config_file).unwrap().uid(), 0);

    let client_hcl = fs::read_to_string(client.join("opt/nomad/config/default.hcl")).unwrap();
    for line in [
        "node_class = \"general\"".to_string(),
        "\"pool\" = \"general\"".to_string(),
        join,
        "http = \"10.0.10.10\"".to_string(),
    ] {
        assert!(
            client_hcl.contains(&line),
            "client config lacks {line}:\n{client_hcl}"
        );
    }
    assert!(!client_hcl.contains("encrypt"), "{client_hcl}");
    assert!(!client_hcl.contains("bootstrap_expect"), "{client_hcl}");

    for vm in [&server, &client] {
        let unit = fs::read_to_string(vm.join("etc/systemd/system/nomad.service")).unwrap();
        assert!(
            unit.contains("ExecStart=/opt/nomad/bin/nomad agent"),
            "the unit starts the baked binary:\n{unit}"
        );
        let calls = fs::read_to_string(vm.join("rehearsal/systemctl.log")).unwrap();
        let calls: Vec<&str> = calls.lines().collect();
        let position = |needle: &str| calls.iter().position(|c| c.starts_with(needle));
        let (reload, enable, restart) = (
            position("daemon-reload").expect("daemon-reload"),
            position("enable").expect("enable"),
            position("restart").expect("restart"),
        );
        assert!(reload < enable && enable < restart, "{calls:?}");
    }
    // Each VM asked its own metadata, properly (the header IMDS requires, never a proxy).
    for imds in [&server_imds, &client_imds] {
        let requests = imds.requests();
        assert!(!requests.is_empty());
        assert!(requests
            .iter()
            .all(|r| r.header("metadata") == Some("true")));
    }

    // 4. Operate: what the old helper script printed, and the cluster's health.
    let outputs = cluster_deploy(&config, &arm, &login, &["outputs", "--json"]);
    let outputs: Value = serde_json::from_slice(&outputs.stdout).unwrap();
    let text_outputs = outputs.to_string();
    assert!(
        text_outputs.contains(SERVERS) && text_outputs.contains(CLIENTS),
        "{outputs}"
    );

    let nomad = NomadApiDouble::start();
    let members: Vec<Member> = (0..3)
        .map(|i| {
            Member::server(
                &format!("{SERVERS}_{i}.global"),
                &format!("10.0.10.{}", 4 + i),
            )
        })
        .collect();
    nomad.set_servers(members);
    nomad.set_leader(Some("10.0.10.4:4647"));
    nomad.set_nodes(vec![NodeStub::ready(&format!("{CLIENTS}_0"), "dc1")]);
    let status = cluster_deploy(
        &config,
        &arm,
        &login,
        &["status", "--nomad-address", nomad.url()],
    );
    let status = text(&status.stdout);
    assert!(
        status.contains("10.0.10.4:4647"),
        "the leader is shown:\n{status}"
    );
    assert!(status.contains(&format!("{SERVERS}_2.global")), "{status}");
}
