//! The whole flow once, with the four real binaries and only loopback doubles, for the example
//! cluster as it is: secure by default (TLS, gossip encryption and ACLs, every secret in the
//! cluster's Key Vault).
//!
//! 1. bake: `image-builder build` (local target: the real Packer, null builder + shell-local)
//!    runs install-nomad against the release mirror double into an image root;
//! 2. deploy: `cluster-deploy plan` writes the template; the Key Vault it declares is served by
//!    the data-plane double, linked to the ARM double's vaults and role assignments (its
//!    firewall admits the operator's address and the cluster's subnet; each new role
//!    assignment refuses its first requests, as a real one does for minutes). `cluster-deploy
//!    apply` deploys the vault, uploads the secrets it makes through the data plane, deploys
//!    the cluster (each scale set's identity granted its role's secrets), then waits for the
//!    servers to elect a leader, to bootstrap ACLs;
//! 3. boot, while apply waits: each scale set's custom data runs VERBATIM as root inside a copy
//!    of the baked image (a chroot in a private mount namespace, the host's programs
//!    bind-mounted read-only), where the baked run-nomad reads the IMDS double, takes a Key
//!    Vault token naming its scale set's identity, fetches its role's secrets (the environment
//!    stands in for the vault name's DNS), and writes them with the agent config and systemd
//!    units. The Nomad API double (the simulated cluster over TLS) then presents the
//!    certificate the booted server holds, and apply bootstraps ACLs with the vault's token; a
//!    second apply keeps every secret and finds ACLs bootstrapped;
//! 4. operate: `cluster-deploy outputs`, `env --token` and `status` over TLS with the token.
//!
//! What this proves beyond each crate's own tests is the seams: the flags cluster-deploy writes
//! are the flags run-nomad takes; the secrets apply uploads are the ones each VM's identity may
//! read and run-nomad accepts; the certificate a booted server holds is the one apply trusts;
//! the baked layout is the one run-nomad expects; and no key, gossip key or token is in the
//! template, a deployment request, custom data, any output or log.

mod common;

use std::fs;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use support::cluster_secrets::{AgentRole, SecretItem};
use support::doubles::arm::{ArmDouble, LoginDouble, CALLER_OBJECT_ID};
use support::doubles::imds::ImdsDouble;
use support::doubles::keyvault::{KeyVaultDouble, Origin};
use support::doubles::mirror::{Mirror, NOMAD_LATEST};
use support::doubles::nomad_api::NomadApiDouble;
use support::doubles::nomad_sim::{SimConfig, Simulation};
use support::doubles::tls::PendingCertificate;

/// An address in the example's `allowed_inbound_cidr_blocks`: where the operator runs from.
const OPERATOR_ADDRESS: &str = "203.0.113.10";
/// How long apply waits for a leader; the boots take seconds.
const BOOTSTRAP_TIMEOUT_SECS: &str = "300";

/// A command running in the background, its output going to files.
struct Background {
    child: Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Background {
    fn spawn(mut cmd: Command, dir: &Path, name: &str) -> Self {
        let (stdout, stderr) = (
            dir.join(format!("{name}.stdout")),
            dir.join(format!("{name}.stderr")),
        );
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Fails the test if the command has already ended.
    fn assert_running(&mut self, waiting_for: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "the command ended ({status}) before {waiting_for}:\n{}",
                self.stderr()
            );
        }
    }

    /// Waits for the command and insists on success.
    fn finish(mut self) -> Output {
        let status = self.child.wait().unwrap();
        let out = Output {
            status,
            stdout: fs::read(&self.stdout).unwrap(),
            stderr: fs::read(&self.stderr).unwrap(),
        };
        assert!(
            status.success(),
            "failed ({status})\nstdout:\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }
}

/// The scale set as the ARM double holds it (the template evaluated).
fn scale_set(arm: &ArmDouble, name: &str) -> Value {
    arm.resource_named("Microsoft.Compute/virtualMachineScaleSets", name)
        .unwrap_or_else(|| panic!("no scale set {name}"))
}

/// The principal of a scale set's system-assigned identity.
fn principal(arm: &ArmDouble, name: &str) -> String {
    scale_set(arm, name)["identity"]["principalId"]
        .as_str()
        .unwrap_or_else(|| panic!("scale set {name} has no system-assigned identity"))
        .to_string()
}

/// The subnet a scale set's VMs are in.
fn subnet(arm: &ArmDouble, name: &str) -> String {
    let set = scale_set(arm, name);
    let nic = &set["properties"]["virtualMachineProfile"]["networkProfile"]
        ["networkInterfaceConfigurations"][0];
    nic["properties"]["ipConfigurations"][0]["properties"]["subnet"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("scale set {name} names no subnet: {set}"))
        .to_string()
}

/// The Key Vault secrets `principal` read, sorted.
fn read_by(kv: &KeyVaultDouble, principal: &str) -> Vec<String> {
    let mut names: Vec<String> = kv
        .served()
        .into_iter()
        .filter(|s| {
            s.caller.as_deref() == Some(principal) && s.status == 200 && s.request.method == "GET"
        })
        .map(|s| {
            s.request
                .path
                .trim_start_matches("/secrets/")
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    names.sort();
    names
}

fn names(role: AgentRole) -> Vec<String> {
    let mut names: Vec<String> = SecretItem::for_role(role)
        .into_iter()
        .map(|i| i.vault_name().to_string())
        .collect();
    names.sort();
    names
}

/// What must appear nowhere but in the vault and on the VMs that read it: a PEM block, and each
/// value the vault holds (a PEM's first base64 line stands for it).
fn needles(kv: &KeyVaultDouble) -> Vec<(String, String)> {
    let mut out = vec![("a PEM block".to_string(), "-----BEGIN".to_string())];
    for item in SecretItem::ALL {
        let value = kv
            .secret_value(item.vault_name())
            .unwrap_or_else(|| panic!("{} is not in the vault", item.vault_name()));
        let probe = value
            .lines()
            .map(str::trim)
            .find(|l| l.len() > 20 && !l.starts_with("-----"))
            .unwrap_or(value.trim())
            .to_string();
        out.push((item.vault_name().to_string(), probe));
    }
    out
}

fn assert_clean(what: &str, haystack: &str, needles: &[(String, String)]) {
    for (name, needle) in needles {
        assert!(
            !haystack.contains(needle.as_str()),
            "{name} is in {what}:\n{haystack}"
        );
    }
}

fn all_output(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
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
    let mut operator = Operator {
        config: &config,
        arm: &arm,
        login: &login,
        vault_url: None,
        config_home: dir.join("operator-config"),
    };
    let template_file = dir.join("azuredeploy.json");
    let plan = operator.run(
        &[
            "plan",
            "--offline",
            "--out",
            template_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !all_output(&plan).contains("warning:"),
        "the example needs no opt-out:\n{}",
        all_output(&plan)
    );
    let template_text = fs::read_to_string(&template_file).unwrap();
    let template: Value = serde_json::from_str(&template_text).unwrap();
    let vault_name = template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Microsoft.KeyVault/vaults")
        .expect("the template declares the cluster's vault")["name"]
        .as_str()
        .unwrap()
        .to_string();
    let kv = KeyVaultDouble::start_linked(&vault_name, arm.key_vault_directory());
    kv.set_propagation_requests(2);
    kv.set_origin(
        CALLER_OBJECT_ID,
        Origin {
            address: OPERATOR_ADDRESS.parse().unwrap(),
            subnet: None,
        },
    );
    operator.vault_url = Some(kv.url().to_string());

    // The servers' API as the load balancer reaches it: the simulated cluster over TLS, which
    // completes no handshake before a server has booted with its certificate.
    let server_certificate = PendingCertificate::new();
    let sim = Simulation::new(SimConfig::default());
    let nomad = NomadApiDouble::serve_tls(&sim, server_certificate.server_config());
    nomad.enable_acls();
    let apply_args = [
        "apply",
        "--nomad-address",
        nomad.url(),
        "--bootstrap-timeout-secs",
        BOOTSTRAP_TIMEOUT_SECS,
    ];
    let mut first_apply = Background::spawn(operator.command(&apply_args, &[]), dir, "apply-1");
    // Until the cluster's deployment has succeeded (apply then waits for a leader).
    let deadline = Instant::now() + Duration::from_secs(120);
    while !arm
        .deployments()
        .iter()
        .any(|d| d.name == "nomad-example" && d.state == "Succeeded")
    {
        first_apply.assert_running("the cluster was deployed");
        assert!(
            Instant::now() < deadline,
            "the cluster was not deployed within 120 s:\n{}",
            first_apply.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let deployments = arm.deployments();
    let names_deployed: Vec<&str> = deployments.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names_deployed,
        ["nomad-example.vault", "nomad-example"],
        "the vault first, then the cluster"
    );
    for d in &deployments {
        assert_eq!(d.request["properties"]["mode"], "Incremental");
    }
    // The secrets went up through the data plane, as the operator, before any VM could boot.
    let mut uploaded: Vec<String> = kv
        .served()
        .into_iter()
        .filter(|s| {
            s.caller.as_deref() == Some(CALLER_OBJECT_ID)
                && s.status == 200
                && s.request.method == "PUT"
        })
        .map(|s| s.request.path.trim_start_matches("/secrets/").to_string())
        .collect();
    uploaded.sort();
    let mut every: Vec<String> = SecretItem::ALL
        .iter()
        .map(|i| i.vault_name().to_string())
        .collect();
    every.sort();
    assert_eq!(
        uploaded, every,
        "every secret uploaded once, by the operator"
    );

    // 3. Boot one server and one client from their custom data, which names the vault and
    //    what each role takes from it.
    let server_data = arm.custom_data(SERVERS).expect("server custom data");
    let client_data = arm.custom_data(CLIENTS).expect("client custom data");
    assert!(
        server_data.contains(&format!(
            " --key-vault {vault_name} --tls-from-key-vault --gossip-key-from-key-vault --acl "
        )),
        "{server_data}"
    );
    assert!(
        client_data.contains(&format!(
            " --key-vault {vault_name} --tls-from-key-vault --acl "
        )),
        "{client_data}"
    );
    assert!(!client_data.contains("gossip"), "{client_data}");
    for data in [&server_data, &client_data] {
        assert!(
            !data.contains(kv.url()),
            "the vault's URL comes from its name: {data}"
        );
    }
    let vault_env = [("RUN_NOMAD_KEY_VAULT_URL", kv.url())];
    let subscription = arm.subscription();
    // Instance 0 of each scale set, as ARM made it; its identity is the scale set's.
    let (server_vm, client_vm) = (&arm.instances(SERVERS)[0], &arm.instances(CLIENTS)[0]);
    let (server_principal, client_principal) = (principal(&arm, SERVERS), principal(&arm, CLIENTS));
    assert_ne!(server_principal, client_principal);
    let mut imds = Vec::new();
    for (vm, set, principal) in [
        (server_vm, SERVERS, &server_principal),
        (client_vm, CLIENTS, &client_principal),
    ] {
        // From the scale set's subnet, which the vault's firewall admits.
        kv.set_origin(
            principal,
            Origin {
                address: vm.private_ip.parse().unwrap(),
                subnet: Some(subnet(&arm, set)),
            },
        );
        let double = ImdsDouble::start(instance_metadata(
            set,
            subscription,
            &vm.private_ip,
            &vm.vm_id,
        ));
        double.set_identity_principal(principal);
        imds.push(double);
    }
    let (server_imds, client_imds) = (&imds[0], &imds[1]);
    let server = dir.join("vm-server");
    let server_log = boot(&image, &server, &server_data, server_imds, &vault_env);
    let client = dir.join("vm-client");
    let client_log = boot(&image, &client, &client_data, client_imds, &vault_env);
    for log in [&server_log, &client_log] {
        assert!(
            log.contains("ForbiddenByRbac") && log.contains("waiting for the role assignment"),
            "the VM waited for its role assignments to propagate:\n{log}"
        );
    }
    // Each VM read its role's secrets with its own identity, and nothing else.
    assert_eq!(read_by(&kv, &server_principal), names(AgentRole::Server));
    assert_eq!(read_by(&kv, &client_principal), names(AgentRole::Client));

    // The servers are up (the simulated agents named after their VMs, as run-nomad names
    // them): the API presents the certificate the booted server holds, and the waiting apply
    // bootstraps ACLs over TLS with the vault's token.
    let vm_ids =
        |set: &str| -> Vec<String> { arm.instances(set).into_iter().map(|i| i.vm_id).collect() };
    let (server_ids, client_ids) = (vm_ids(SERVERS), vm_ids(CLIENTS));
    let servers: Vec<&str> = server_ids.iter().map(String::as_str).collect();
    sim.start_running(&servers, &[client_ids[0].as_str()]);
    let tls = |vm: &Path, file: &str| fs::read_to_string(vm.join("opt/nomad/tls").join(file));
    server_certificate.present(
        &tls(&server, "server.pem").unwrap(),
        &tls(&server, "server-key.pem").unwrap(),
    );
    let first_apply = first_apply.finish();
    operator.assert_no_credential(&first_apply);
    assert!(
        text(&first_apply.stderr).contains("Nomad ACLs bootstrapped"),
        "{}",
        text(&first_apply.stderr)
    );
    // Again: every secret kept, ACLs found bootstrapped with the vault's token.
    let second_apply = operator.run(&apply_args, &[]);
    let stderr = text(&second_apply.stderr);
    assert!(stderr.contains("every secret is kept as it is"), "{stderr}");
    assert!(
        stderr.contains("Nomad ACLs were bootstrapped before, with the vault's token"),
        "{stderr}"
    );
    let token = kv
        .secret_value(SecretItem::BootstrapToken.vault_name())
        .unwrap();
    let bootstraps: Vec<Value> = nomad
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/acl/bootstrap")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    assert_eq!(bootstraps.len(), 2, "one per apply");
    for body in &bootstraps {
        assert_eq!(body["BootstrapSecret"], token.as_str(), "the vault's token");
    }
    let store = kv.store();
    for item in SecretItem::ALL {
        let versions = store.lock().unwrap().version_count(item.vault_name());
        assert_eq!(versions, 1, "{} was kept", item.vault_name());
    }

    // The files on each VM: as the vault holds them, keys readable by the nomad group only.
    let nomad_gid = group_id(&server, "nomad");
    let stored = |item: SecretItem| kv.secret_value(item.vault_name()).unwrap();
    for (vm, files) in [
        (
            &server,
            vec![
                ("opt/nomad/tls/ca.pem", SecretItem::CaCertificate),
                ("opt/nomad/tls/server.pem", SecretItem::ServerCertificate),
                ("opt/nomad/tls/server-key.pem", SecretItem::ServerKey),
                ("opt/nomad/secrets/gossip.key", SecretItem::GossipKey),
            ],
        ),
        (
            &client,
            vec![
                ("opt/nomad/tls/ca.pem", SecretItem::CaCertificate),
                ("opt/nomad/tls/client.pem", SecretItem::ClientCertificate),
                ("opt/nomad/tls/client-key.pem", SecretItem::ClientKey),
            ],
        ),
    ] {
        for (path, item) in files {
            let on_disk = fs::read_to_string(vm.join(path)).unwrap();
            assert_eq!(on_disk.trim_end(), stored(item).trim_end(), "{path}");
            let expected = if item.is_private() {
                (0, nomad_gid, 0o640)
            } else {
                (0, 0, 0o644)
            };
            assert_eq!(owner_and_mode(&vm.join(path)), expected, "{path}");
        }
        assert_eq!(
            owner_and_mode(&vm.join("opt/nomad/config/default.hcl")),
            (0, nomad_gid, 0o640),
            "the configuration can hold the gossip key"
        );
    }
    assert!(!client.join("opt/nomad/secrets/gossip.key").exists());
    assert!(!client.join("opt/nomad/tls/server-key.pem").exists());

    // The configurations: the cluster's settings, TLS with verify_server_hostname on both,
    // gossip encryption on the server only, ACLs on both.
    let join = format!(
        "\"provider=azure resource_group={RESOURCE_GROUP} vm_scale_set={SERVERS} subscription_id={subscription}\""
    );
    let server_hcl = fs::read_to_string(server.join("opt/nomad/config/default.hcl")).unwrap();
    let client_hcl = fs::read_to_string(client.join("opt/nomad/config/default.hcl")).unwrap();
    for line in [
        "datacenter = \"dc1\"".to_string(),
        format!("name       = \"{}\"", server_vm.vm_id),
        "bootstrap_expect = 3".to_string(),
        format!(
            "encrypt          = \"{}\"",
            stored(SecretItem::GossipKey).trim()
        ),
        join.clone(),
        "min_quorum                = 3".to_string(),
        format!("http = \"{}\"", server_vm.private_ip),
    ] {
        assert!(
            server_hcl.contains(&line),
            "server config lacks {line}:\n{server_hcl}"
        );
    }
    for line in [
        "node_class = \"general\"".to_string(),
        "\"pool\" = \"general\"".to_string(),
        join,
        format!("http = \"{}\"", client_vm.private_ip),
        "drain_on_shutdown {".to_string(),
    ] {
        assert!(
            client_hcl.contains(&line),
            "client config lacks {line}:\n{client_hcl}"
        );
    }
    for (hcl, role) in [(&server_hcl, "server"), (&client_hcl, "client")] {
        for line in [
            "region     = \"global\"".to_string(),
            "http = true".to_string(),
            "rpc  = true".to_string(),
            "ca_file   = \"/opt/nomad/tls/ca.pem\"".to_string(),
            format!("cert_file = \"/opt/nomad/tls/{role}.pem\""),
            format!("key_file  = \"/opt/nomad/tls/{role}-key.pem\""),
            "verify_server_hostname = true".to_string(),
            "acl {\n  enabled = true\n}".to_string(),
        ] {
            assert!(
                hcl.contains(&line),
                "the {role} config lacks {line}:\n{hcl}"
            );
        }
    }
    assert!(!client_hcl.contains("encrypt"), "{client_hcl}");
    assert!(!client_hcl.contains("bootstrap_expect"), "{client_hcl}");

    // The units: the baked binary, started after the files were written; the watchers reach
    // their agents over HTTPS, the client's (no token on an ACL cluster) letting its agent
    // drain itself.
    let unit = |vm: &Path, name: &str| {
        fs::read_to_string(vm.join("etc/systemd/system").join(name)).unwrap()
    };
    for vm in [&server, &client] {
        let agent = unit(vm, "nomad.service");
        assert!(
            agent.contains("ExecStart=/opt/nomad/bin/nomad agent"),
            "the unit starts the baked binary:\n{agent}"
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
    let server_watcher = unit(&server, "nomad-scheduled-events.service");
    let client_watcher = unit(&client, "nomad-scheduled-events.service");
    assert!(
        server_watcher.contains("--nomad-tls-server-name server.global.nomad"),
        "{server_watcher}"
    );
    assert!(
        client_watcher.contains("--nomad-tls-server-name client.global.nomad")
            && client_watcher.contains(" --self-drain "),
        "{client_watcher}"
    );
    // Each VM asked its own metadata and its identity's token, properly (the header IMDS
    // requires, never a proxy).
    for imds in &imds {
        let requests = imds.requests();
        assert!(requests
            .iter()
            .any(|r| r.path == "/metadata/identity/oauth2/token"));
        assert!(requests
            .iter()
            .all(|r| r.header("metadata") == Some("true")));
    }

    // 4. Operate: what the old helper script printed, the CLI's exports, and the cluster's
    //    health over TLS with the management token.
    let outputs = operator.run(&["outputs", "--json"], &[]);
    let outputs_json: Value = serde_json::from_slice(&outputs.stdout).unwrap();
    let text_outputs = outputs_json.to_string();
    assert!(
        text_outputs.contains(SERVERS) && text_outputs.contains(CLIENTS),
        "{outputs_json}"
    );
    let env = operator.run(
        &["env", "--token", "--json", "--nomad-address", nomad.url()],
        &[],
    );
    let env_json: Value = serde_json::from_slice(&env.stdout).unwrap();
    let token_file = env_json["token_file"].as_str().unwrap().to_string();
    let mut exports: Vec<(String, String)> = env_json["exports"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    for (name, value) in &exports {
        if name != "NOMAD_ADDR" && name != "NOMAD_TLS_SERVER_NAME" {
            assert_eq!(owner_and_mode(Path::new(value)).2, 0o600, "{name} {value}");
        }
    }
    assert_eq!(owner_and_mode(Path::new(&token_file)).2, 0o600);
    // Without the token the cluster shows nothing of itself.
    let anonymous: Vec<(&str, &str)> = exports
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let anonymous = operator.run(&["status"], &anonymous);
    assert!(
        !text(&anonymous.stdout).contains("alive voter"),
        "{}",
        text(&anonymous.stdout)
    );
    // As `eval "$(cluster-deploy env --token)"` leaves the shell.
    exports.push((
        "NOMAD_TOKEN".to_string(),
        fs::read_to_string(&token_file).unwrap(),
    ));
    let exports: Vec<(&str, &str)> = exports
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let status = operator.run(&["status"], &exports);
    let status_text = text(&status.stdout);
    // The API answers only a token (ACLs are bootstrapped): the members shown prove it works,
    // joined to the scale sets' instances by the VM ids run-nomad names the agents after.
    for line in [
        format!("server {}.global", server_vm.vm_id),
        "alive voter LEADER healthy".to_string(),
        "3 voters, 3 healthy; failure tolerance 1".to_string(),
        "node ready eligible".to_string(),
    ] {
        assert!(
            status_text.contains(&line),
            "status lacks {line}:\n{status_text}"
        );
    }

    // No key material, gossip key or token anywhere it could leak.
    let needles = needles(&kv);
    let mut haystacks: Vec<(String, String)> = vec![
        ("the template".into(), template_text),
        ("the server's custom data".into(), server_data.clone()),
        ("the client's custom data".into(), client_data.clone()),
        ("the server's boot log".into(), server_log),
        ("the client's boot log".into(), client_log),
        (
            "the server's units".into(),
            unit(&server, "nomad.service") + &server_watcher,
        ),
        (
            "the client's units".into(),
            unit(&client, "nomad.service") + &client_watcher,
        ),
    ];
    for (what, out) in [
        ("plan", &plan),
        ("the first apply", &first_apply),
        ("the second apply", &second_apply),
        ("outputs", &outputs),
        ("env", &env),
        ("status", &status),
        ("status without a token", &anonymous),
    ] {
        haystacks.push((format!("{what}'s output"), all_output(out)));
    }
    for d in arm.deployments() {
        haystacks.push((format!("deployment {}", d.name), d.request.to_string()));
    }
    for r in arm.requests() {
        haystacks.push((format!("ARM request {} {}", r.method, r.path), r.body));
    }
    // Every scale set's custom data, decoded, as ARM keeps it.
    let sets: Vec<String> = arm
        .resources()
        .into_iter()
        .filter(|r| r["type"] == "Microsoft.Compute/virtualMachineScaleSets")
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sets.len(), 2, "{sets:?}");
    for set in sets {
        let data = arm.custom_data(&set).expect("custom data");
        haystacks.push((format!("{set}'s decoded custom data"), data));
    }
    for (what, haystack) in &haystacks {
        assert_clean(what, haystack, &needles);
    }
}
