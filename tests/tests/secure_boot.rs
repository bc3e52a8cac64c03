//! The secure path once, with the real binaries and only loopback doubles (issue 10): the
//! cluster's secrets live in its Key Vault, each VM fetches its role's items at boot with its
//! own managed identity, and no key material travels through the template, the deployment,
//! custom data or any output.
//!
//! 1. bake: as `bake_deploy_boot.rs` (the real Packer running install-nomad);
//! 2. deploy: `cluster-deploy apply` of the example cluster, with no gossip key file;
//! 3. the vault: the cluster's secrets made with cluster-deploy's own `ClusterSecrets::generate`
//!    and uploaded through the Key Vault data-plane double by an operator principal (Key Vault
//!    Secrets Officer), and each scale set's identity (its `principalId` in the ARM double)
//!    granted Key Vault Secrets User on exactly its role's items, at each secret's scope, with
//!    the propagation delay a new assignment has;
//! 4. boot: each scale set's custom data runs in a chroot of the image; run-nomad takes the
//!    VM's token from the IMDS double (naming the scale set's principal) and reads the vault,
//!    whose URL the environment points at the double (custom data only names the vault);
//! 5. the checks: the files, their modes and owners, the configurations (TLS with
//!    `verify_server_hostname`, gossip encryption on servers only, ACLs, clients draining
//!    themselves), and no PEM block, gossip key or token in the template, the deployment
//!    request, the decoded custom data, or any output.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use cluster_deploy::secrets::material::ClusterSecrets;
use cluster_deploy::secrets::pki::{Lifetimes, PkiSpec};
use common::*;
use serde_json::Value;
use support::cluster_secrets::{AgentRole, SecretItem};
use support::doubles::arm::{ArmDouble, LoginDouble, TENANT};
use support::doubles::imds::ImdsDouble;
use support::doubles::keyvault::{KeyVaultDouble, KeyVaultRole, Scope};
use support::doubles::mirror::{Mirror, NOMAD_LATEST};
use support::doubles::tokens::Claims;
use support::keyvault::{KeyVaultClient, Options, TokenSource, RESOURCE};
use support::secret::Secret;

/// The cluster's vault (a name cluster-deploy would derive from the cluster's).
const VAULT: &str = "nomad-example-kv";
/// The operator's principal, which uploads the secrets.
const OPERATOR: &str = "00000000-0000-0000-0000-0000000000e1";

/// The principal of a scale set's system-assigned identity, as the ARM double made it.
fn principal(arm: &ArmDouble, scale_set: &str) -> String {
    arm.resource_named("Microsoft.Compute/virtualMachineScaleSets", scale_set)
        .unwrap_or_else(|| panic!("no scale set {scale_set}"))["identity"]["principalId"]
        .as_str()
        .unwrap_or_else(|| panic!("scale set {scale_set} has no system-assigned identity"))
        .to_string()
}

/// The secrets in the vault, as cluster-deploy's upload puts them there: every item through
/// the data plane (SetSecret 7.6) as the operator, then read access per item for each scale
/// set's identity.
fn fill_vault(kv: &KeyVaultDouble, secrets: &ClusterSecrets, readers: &[(String, AgentRole)]) {
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    let token = Claims::new(RESOURCE, OPERATOR, TENANT).issue();
    let tokens: Arc<dyn TokenSource> = Arc::new(move || Ok(Secret::new(token.clone())));
    let client = KeyVaultClient::new(kv.url(), tokens, Options::default()).unwrap();
    for (item, value) in secrets.entries() {
        client
            .set_secret(item.vault_name(), &value, Some(item.content_type()))
            .unwrap();
    }
    // A new assignment refuses its principal's first requests, as a real one does for minutes.
    kv.set_propagation_requests(2);
    for (principal, role) in readers {
        for item in SecretItem::for_role(*role) {
            kv.assign(
                principal,
                Scope::Secret(item.vault_name().to_string()),
                KeyVaultRole::SecretsUser,
            );
        }
    }
}

/// The scale set's boot script, naming the vault. cluster-deploy's side of issue 10 (on its own
/// branch) writes `--key-vault` on run-nomad's line itself; until then the flag is added here to
/// the line cluster-deploy wrote, and nothing else changes. A script that already names a vault
/// is taken as it is.
fn naming_the_vault(script: &str) -> String {
    if script.contains("--key-vault") {
        return script.to_string();
    }
    let mut out = String::new();
    for line in script.lines() {
        out.push_str(line);
        if line.starts_with("exec ") && line.contains("/run-nomad ") {
            out.push_str(&format!(" --key-vault {VAULT}"));
        }
        out.push('\n');
    }
    assert!(
        out.contains("--key-vault"),
        "no run-nomad line in:\n{script}"
    );
    out
}

/// The values that must appear nowhere but in the vault and on the VMs that read them.
fn needles(secrets: &ClusterSecrets) -> Vec<(String, String)> {
    let mut out = vec![("a PEM block".to_string(), "-----BEGIN".to_string())];
    for (item, value) in secrets.entries() {
        if matches!(item, SecretItem::GossipKey | SecretItem::BootstrapToken) {
            out.push((item.vault_name().to_string(), value.expose().to_string()));
        }
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

/// The gid of `name` in the VM's `/etc/group`.
fn group_id(vm: &Path, name: &str) -> u32 {
    fs::read_to_string(vm.join("etc/group"))
        .unwrap()
        .lines()
        .find_map(|l| {
            let fields: Vec<&str> = l.split(':').collect();
            (fields.first() == Some(&name)).then(|| fields[2].parse().unwrap())
        })
        .unwrap_or_else(|| panic!("the image has no group {name}"))
}

fn owner_and_mode(path: &Path) -> (u32, u32, u32) {
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.uid(), meta.gid(), meta.mode() & 0o7777)
}

#[test]
fn secure_bake_deploy_boot() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // 1. Bake.
    let mirror = Mirror::start();
    let image = bake(&mirror, dir);

    // 2. Deploy, without a gossip key file: the key lives in the vault.
    let image_id = format!(
        "/subscriptions/{}/resourceGroups/nomad-images/providers/Microsoft.Compute/images/nomad-{NOMAD_LATEST}",
        "00000000-0000-0000-0000-000000000000"
    );
    let arm = ArmDouble::start();
    let login = LoginDouble::start(CLIENT_ID, CLIENT_SECRET, arm.token());
    let config = cluster_file(dir, &image_id);
    let apply = cluster_deploy(&config, &arm, &login, &["apply"]);
    let deployment = arm.deployments().pop().expect("a deployment");

    // 3. The vault and its secrets.
    let secrets = ClusterSecrets::generate(
        &PkiSpec {
            cluster: "nomad-example".into(),
            region: "global".into(),
            server_sans: Vec::new(),
            lifetimes: Lifetimes::default(),
        },
        SystemTime::now(),
    )
    .unwrap();
    let kv = KeyVaultDouble::start(VAULT);
    let (server_principal, client_principal) = (principal(&arm, SERVERS), principal(&arm, CLIENTS));
    fill_vault(
        &kv,
        &secrets,
        &[
            (server_principal.clone(), AgentRole::Server),
            (client_principal.clone(), AgentRole::Client),
        ],
    );

    // 4. Boot one server and one client; the custom data only names the vault.
    let server_data = naming_the_vault(&arm.custom_data(SERVERS).expect("server custom data"));
    let client_data = naming_the_vault(&arm.custom_data(CLIENTS).expect("client custom data"));
    for data in [&server_data, &client_data] {
        assert!(data.contains(&format!("--key-vault {VAULT}")), "{data}");
        assert!(
            !data.contains(kv.url()),
            "the vault's URL comes from the name: {data}"
        );
    }
    let vault_env = [("RUN_NOMAD_KEY_VAULT_URL", kv.url())];
    let subscription = arm.subscription();
    let server_imds = ImdsDouble::start(instance_metadata(
        SERVERS,
        subscription,
        "10.0.10.4",
        "11111111-1111-4111-8111-111111111111",
    ));
    server_imds.set_identity_principal(&server_principal);
    let server = dir.join("vm-server");
    let server_log = boot(&image, &server, &server_data, &server_imds, &vault_env);
    let client_imds = ImdsDouble::start(instance_metadata(
        CLIENTS,
        subscription,
        "10.0.10.10",
        "22222222-2222-4222-8222-222222222222",
    ));
    client_imds.set_identity_principal(&client_principal);
    let client = dir.join("vm-client");
    let client_log = boot(&image, &client, &client_data, &client_imds, &vault_env);
    for log in [&server_log, &client_log] {
        assert!(
            log.contains("ForbiddenByRbac") && log.contains("waiting for the role assignment"),
            "the VM waited for its role assignments to propagate:\n{log}"
        );
    }

    // 5a. Each VM read its role's items with its own identity, and nothing else.
    let read_by = |who: &str| -> Vec<String> {
        let mut names: Vec<String> = kv
            .served()
            .into_iter()
            .filter(|s| s.caller.as_deref() == Some(who) && s.status == 200)
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
    };
    let expected = |role| -> Vec<String> {
        let mut names: Vec<String> = SecretItem::for_role(role)
            .into_iter()
            .map(|i| i.vault_name().to_string())
            .collect();
        names.sort();
        names
    };
    assert_eq!(read_by(&server_principal), expected(AgentRole::Server));
    assert_eq!(read_by(&client_principal), expected(AgentRole::Client));

    // 5b. The files on each VM: as stored, keys readable by the nomad group only.
    let nomad_gid = group_id(&server, "nomad");
    let value = |item: SecretItem| secrets.value(item).expose().to_string();
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
            assert_eq!(on_disk.trim_end(), value(item).trim_end(), "{path}");
            let expected = if item.is_private() {
                (0, nomad_gid, 0o640)
            } else {
                (0, 0, 0o644)
            };
            assert_eq!(owner_and_mode(&vm.join(path)), expected, "{path}");
        }
        assert_eq!(
            owner_and_mode(&vm.join("opt/nomad/config/default.hcl")),
            (0, nomad_gid, 0o640)
        );
    }
    assert!(!client.join("opt/nomad/secrets/gossip.key").exists());
    assert!(!client.join("opt/nomad/tls/server-key.pem").exists());

    // 5c. The configurations: TLS with verify_server_hostname, gossip on servers, ACLs.
    let server_hcl = fs::read_to_string(server.join("opt/nomad/config/default.hcl")).unwrap();
    let client_hcl = fs::read_to_string(client.join("opt/nomad/config/default.hcl")).unwrap();
    for (hcl, role) in [(&server_hcl, "server"), (&client_hcl, "client")] {
        for line in [
            "http = true".to_string(),
            "rpc  = true".to_string(),
            "ca_file   = \"/opt/nomad/tls/ca.pem\"".to_string(),
            format!("cert_file = \"/opt/nomad/tls/{role}.pem\""),
            format!("key_file  = \"/opt/nomad/tls/{role}-key.pem\""),
            "verify_server_hostname = true".to_string(),
            "acl {\n  enabled = true\n}".to_string(),
            "region     = \"global\"".to_string(),
        ] {
            assert!(
                hcl.contains(&line),
                "the {role} config lacks {line}:\n{hcl}"
            );
        }
    }
    assert!(
        server_hcl.contains(&format!(
            "encrypt          = \"{}\"",
            value(SecretItem::GossipKey)
        )),
        "{server_hcl}"
    );
    assert!(!client_hcl.contains("encrypt"), "{client_hcl}");
    assert!(client_hcl.contains("drain_on_shutdown {"), "{client_hcl}");
    // The watchers reach their agents over HTTPS; the client's, with no token, lets its agent
    // drain itself.
    let watcher = |vm: &Path| {
        fs::read_to_string(vm.join("etc/systemd/system/nomad-scheduled-events.service")).unwrap()
    };
    assert!(watcher(&server).contains("--nomad-tls-server-name server.global.nomad"));
    let client_watcher = watcher(&client);
    assert!(
        client_watcher.contains("--nomad-tls-server-name client.global.nomad")
            && client_watcher.contains(" --self-drain "),
        "{client_watcher}"
    );
    // Started, after the files were written.
    for vm in [&server, &client] {
        let calls = fs::read_to_string(vm.join("rehearsal/systemctl.log")).unwrap();
        assert!(calls.contains("restart nomad.service"), "{calls}");
    }

    // 5d. No key material, gossip key or token anywhere it could leak.
    let outputs = cluster_deploy(&config, &arm, &login, &["outputs", "--json"]);
    let template = &deployment.request["properties"]["template"];
    let parameters = &deployment.request["properties"]["parameters"];
    let needles = needles(&secrets);
    for (what, haystack) in [
        ("the template", template.to_string()),
        ("the deployment parameters", parameters.to_string()),
        ("the deployment request", deployment.request.to_string()),
        ("the server's custom data", server_data.clone()),
        ("the client's custom data", client_data.clone()),
        (
            "apply's output",
            format!("{}{}", text(&apply.stdout), text(&apply.stderr)),
        ),
        (
            "outputs --json",
            format!("{}{}", text(&outputs.stdout), text(&outputs.stderr)),
        ),
        ("the server's boot log", server_log.clone()),
        ("the client's boot log", client_log.clone()),
        (
            "the server's units",
            fs::read_to_string(server.join("etc/systemd/system/nomad.service")).unwrap()
                + &watcher(&server),
        ),
        ("the client's watcher", client_watcher.clone()),
    ] {
        assert_clean(what, &haystack, &needles);
    }
    // Every template resource's custom data, decoded, as ARM keeps it.
    let decoded: Vec<Value> = arm
        .resources()
        .into_iter()
        .filter(|r| r["type"] == "Microsoft.Compute/virtualMachineScaleSets")
        .collect();
    assert!(decoded.len() >= 2);
    for set in decoded {
        let name = set["name"].as_str().unwrap_or_default().to_string();
        let data = arm.custom_data(&name).unwrap_or_default();
        assert_clean(&format!("{name}'s decoded custom data"), &data, &needles);
    }
}
