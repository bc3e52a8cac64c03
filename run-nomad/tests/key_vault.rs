//! `--key-vault`: run-nomad fetches the cluster's secrets at boot with the VM's managed identity
//! (the IMDS double's identity endpoint, a token for the Key Vault audience naming the VM's
//! principal) from the Key Vault data-plane double (per-secret RBAC, propagation delays,
//! firewall), writes them with the agent configuration, and configures TLS
//! (`--tls-from-key-vault`) and gossip encryption (`--gossip-key-from-key-vault`, servers), each
//! only when its flag selects it, as cluster-deploy's per-item opt-outs write them; ACLs are
//! `--acl`. A vault it cannot read by the deadline leaves nothing written and nothing started.
//!
//! The vault is filled the way cluster-deploy fills it: an operator principal with Key Vault
//! Secrets Officer uploads each item through the data plane (SetSecret, api-version 7.6), and
//! each scale set's identity gets Key Vault Secrets User on exactly the items of its role.

mod common;

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use common::vault::*;
use common::{
    hcl1_decode, instance, output, run_nomad, FakeRoot, LAYOUT_ARGS, NOMAD_GID, RESTART_AGENT,
    START_BOTH,
};
use serde_json::{json, Value};
use support::cluster_secrets::{AgentRole, SecretItem};
use support::doubles::imds::{ImdsDouble, Reply, IDENTITY_PRINCIPAL_ID};
use support::doubles::keyvault::Origin;
use support::doubles::tls::TestCa;

#[test]
fn a_server_fetches_its_secrets_and_is_configured_with_tls_gossip_and_acls() {
    let vault = ClusterVault::granted(AgentRole::Server);
    let vm = Vm::new();
    let (ok, stdout, stderr) = vm.boot(&vault, SERVER);
    assert!(ok, "{stdout}\n{stderr}");

    // The files: contents as stored, keys readable by the agent's group only.
    assert_eq!(vm.root.read("/opt/nomad/tls/ca.pem"), vault.ca.cert_pem());
    assert_eq!(
        vm.root.read("/opt/nomad/tls/server.pem"),
        vault.server.cert_pem
    );
    assert_eq!(
        vm.root.read("/opt/nomad/tls/server-key.pem"),
        vault.server.key_pem
    );
    assert_eq!(
        vm.root.read("/opt/nomad/secrets/gossip.key"),
        format!("{GOSSIP}\n")
    );
    assert_eq!(
        vm.mode_and_owner("/opt/nomad/tls/server-key.pem"),
        (0o640, 0, NOMAD_GID)
    );
    assert_eq!(
        vm.mode_and_owner("/opt/nomad/secrets/gossip.key"),
        (0o640, 0, NOMAD_GID)
    );
    for cert in ["/opt/nomad/tls/ca.pem", "/opt/nomad/tls/server.pem"] {
        assert_eq!(vm.mode_and_owner(cert), (0o644, 0, 0), "{cert}");
    }
    assert_eq!(
        vm.mode_and_owner("/opt/nomad/secrets"),
        (0o750, 0, NOMAD_GID),
        "the secrets directory is made root's, the agent's group may enter"
    );
    // The configuration holds the key itself (server.encrypt takes no file), so it is as
    // closed as the key file.
    assert_eq!(
        vm.mode_and_owner("/opt/nomad/config/default.hcl"),
        (0o640, 0, NOMAD_GID)
    );
    // Only this role's items were read: the client's and the bootstrap token are not.
    assert_eq!(
        read_by(&vault, IDENTITY_PRINCIPAL_ID),
        [
            "nomad-ca-cert",
            "nomad-gossip-key",
            "nomad-server-cert",
            "nomad-server-key"
        ]
    );
    // With the VM's managed identity: a token for the Key Vault audience from IMDS.
    let token_requests: Vec<_> = vm
        .imds
        .requests()
        .into_iter()
        .filter(|r| r.path == "/metadata/identity/oauth2/token")
        .collect();
    assert_eq!(
        token_requests.len(),
        1,
        "the token is fetched once and reused"
    );
    assert_eq!(
        token_requests[0].query_param("resource"),
        Some("https://vault.azure.net")
    );
    assert_eq!(token_requests[0].header("metadata"), Some("true"));
    // Started, as without --key-vault.
    assert_eq!(vm.systemctl.take_calls(), START_BOTH);
    assert_no_secret_in(&vault, "run-nomad's output", &format!("{stdout}{stderr}"));
    for unit in [
        "/etc/systemd/system/nomad.service",
        "/etc/systemd/system/nomad-scheduled-events.service",
    ] {
        assert_no_secret_in(&vault, unit, &vm.root.read(unit));
    }
}

#[test]
fn the_configuration_read_back_by_hcl1_has_tls_gossip_on_servers_only_and_acls() {
    let vault = ClusterVault::granted(AgentRole::Server);
    vault.grant(AgentRole::Client);
    let tls = |cert: &str| {
        json!([{
            "http": true,
            "rpc": true,
            "ca_file": "/opt/nomad/tls/ca.pem",
            "cert_file": format!("/opt/nomad/tls/{cert}.pem"),
            "key_file": format!("/opt/nomad/tls/{cert}-key.pem"),
            "verify_server_hostname": true,
            "verify_https_client": false,
        }])
    };
    for (role, args, cert) in [("server", SERVER, "server"), ("client", CLIENT, "client")] {
        let vm = Vm::new();
        let (ok, stdout, stderr) = vm.boot(&vault, args);
        assert!(ok, "{role}: {stdout}\n{stderr}");
        let text = vm.root.read("/opt/nomad/config/default.hcl");
        common::assert_golden(&format!("key-vault/{role}.hcl"), &text);
        let doc: Value = hcl1_decode(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(doc["tls"], tls(cert), "{role}:\n{text}");
        assert_eq!(doc["acl"], json!([{ "enabled": true }]), "{role}");
        if role == "server" {
            assert_eq!(doc["server"][0]["encrypt"], GOSSIP, "{text}");
            assert!(doc.get("client").is_none());
        } else {
            assert!(doc.get("server").is_none(), "no gossip key on a client");
            assert!(!text.contains(GOSSIP));
            // Clients leave (drain themselves) on SIGTERM only, within the terminate notice.
            assert_eq!(doc["leave_on_terminate"], true);
            assert_eq!(doc["leave_on_interrupt"], false);
            assert_eq!(
                doc["client"][0]["drain_on_shutdown"],
                json!([{ "deadline": "4m15s", "force": false, "ignore_system_jobs": false }])
            );
            // The watcher has no token, so it relies on that drain.
            let unit = vm
                .root
                .read("/etc/systemd/system/nomad-scheduled-events.service");
            assert!(unit.contains(" --self-drain "), "{unit}");
            assert!(
                unit.contains("--nomad-address https://127.0.0.1:4646"),
                "{unit}"
            );
            assert!(
                unit.contains(&format!("--nomad-tls-server-name client.{REGION}.nomad")),
                "{unit}"
            );
        }
    }
}

/// `openssl verify` of `cert` against the CA file `ca`, both as run-nomad wrote them.
fn openssl_verifies(root: &FakeRoot, ca: &str, cert: &str) -> (bool, String) {
    let out = std::process::Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
        .arg(root.path().join(ca.trim_start_matches('/')))
        .arg(root.path().join(cert.trim_start_matches('/')))
        .output()
        .expect("running openssl (installed by scripts/install-test-deps.sh)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// During a CA rotation (cluster-deploy's `rotate --ca`), `nomad-ca-cert` holds the old and
/// the new CA: run-nomad accepts a certificate of either, writes the bundle whole as the
/// `ca_file` Nomad reads (Nomad loads every certificate of it), and the written files verify
/// with OpenSSL in both phases.
#[test]
fn a_ca_bundle_mid_rotation_is_written_whole_as_the_ca_file() {
    let vault = ClusterVault::granted(AgentRole::Server);
    let new_ca = TestCa::new("nomad-test-cluster CA 2");
    let bundle = format!("{}{}", vault.ca.cert_pem(), new_ca.cert_pem());
    vault.upload(SecretItem::CaCertificate, &bundle);
    let new_server = new_ca.server_cert(&[&format!("server.{REGION}.nomad"), "localhost"]);
    for phase in ["old CA signs", "new CA signs"] {
        if phase == "new CA signs" {
            vault.upload(SecretItem::ServerCertificate, &new_server.cert_pem);
            vault.upload(SecretItem::ServerKey, &new_server.key_pem);
        }
        let vm = Vm::new();
        let (ok, stdout, stderr) = vm.boot(&vault, SERVER);
        assert!(ok, "{phase}: {stdout}\n{stderr}");
        assert_eq!(vm.root.read("/opt/nomad/tls/ca.pem"), bundle, "{phase}");
        let text = vm.root.read("/opt/nomad/config/default.hcl");
        let doc: Value = hcl1_decode(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(doc["tls"][0]["ca_file"], "/opt/nomad/tls/ca.pem", "{text}");
        let (ok, out) = openssl_verifies(
            &vm.root,
            "/opt/nomad/tls/ca.pem",
            "/opt/nomad/tls/server.pem",
        );
        assert!(ok, "{phase}: {out}");
        assert_eq!(vm.systemctl.take_calls(), START_BOTH, "{phase}");
    }
}

#[test]
fn forbidden_until_the_role_assignment_propagates_is_waited_for() {
    let vault = ClusterVault::start();
    // New assignments refuse their principal's next 3 requests (403 ForbiddenByRbac), as a
    // real one does for minutes after the scale set is created.
    vault.kv.set_propagation_requests(3);
    vault.grant(AgentRole::Client);
    let vm = Vm::new();
    let (ok, stdout, stderr) = vm.boot(&vault, &[CLIENT, &["--secrets-timeout", "30s"]].concat());
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("ForbiddenByRbac") && stderr.contains("waiting for the role assignment"),
        "the wait is logged: {stderr}"
    );
    let statuses: Vec<(String, u16)> = vault
        .kv
        .served()
        .into_iter()
        .filter(|s| s.caller.as_deref() == Some(IDENTITY_PRINCIPAL_ID))
        .map(|s| (s.request.path.clone(), s.status))
        .collect();
    for item in SecretItem::for_role(AgentRole::Client) {
        let path = format!("/secrets/{}/", item.vault_name());
        let of_item: Vec<u16> = statuses
            .iter()
            .filter(|(p, _)| *p == path)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(of_item, [403, 403, 403, 200], "{path}");
    }
    assert_eq!(
        vm.root.read("/opt/nomad/tls/client.pem"),
        vault.client.cert_pem
    );
    assert_eq!(vm.systemctl.take_calls(), START_BOTH);
    assert_no_secret_in(&vault, "run-nomad's output", &format!("{stdout}{stderr}"));
}

#[test]
fn imds_without_a_token_yet_is_retried() {
    let vault = ClusterVault::granted(AgentRole::Client);
    let vm = Vm::new();
    // The instance document first, then the identity endpoint still being set up.
    vm.imds
        .script([Reply::Instance, Reply::Status(404), Reply::Status(503)]);
    let (ok, stdout, stderr) = vm.boot(
        &vault,
        &[CLIENT, &["--no-start", "--secrets-timeout", "30s"]].concat(),
    );
    assert!(ok, "{stdout}\n{stderr}");
    let token_requests = vm
        .imds
        .requests()
        .into_iter()
        .filter(|r| r.path == "/metadata/identity/oauth2/token")
        .count();
    assert_eq!(token_requests, 3);
    assert_eq!(
        vm.root.read("/opt/nomad/tls/client-key.pem"),
        vault.client.key_pem
    );
}

#[test]
fn a_vault_that_stays_unreachable_fails_clearly_by_the_deadline_and_starts_nothing() {
    // A port where nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/");
    let vm = Vm::new();
    let started = Instant::now();
    let (ok, _, stderr) = vm.boot_at(&url, &[SERVER, &["--secrets-timeout", "2s"]].concat());
    assert!(!ok);
    assert!(
        started.elapsed() >= Duration::from_secs(1) && started.elapsed() < Duration::from_secs(20),
        "bounded by --secrets-timeout: {:?}",
        started.elapsed()
    );
    assert!(stderr.contains(&url), "names the vault URL: {stderr}");
    assert!(
        stderr.contains("cannot fetch Key Vault secret nomad-"),
        "names the secret: {stderr}"
    );
    assert!(stderr.contains("gave up after"), "{stderr}");
    assert!(
        stderr.contains("did not answer"),
        "says what it means: {stderr}"
    );
    assert!(
        stderr.contains("nothing was written and Nomad was not started"),
        "{stderr}"
    );
    vm.nothing_written();
}

#[test]
fn a_vault_that_keeps_refusing_this_identity_fails_with_the_last_status() {
    // The vault is there, but the scale set's identity was never granted anything.
    let vault = ClusterVault::start();
    let vm = Vm::new();
    let (ok, _, stderr) = vm.boot(&vault, &[CLIENT, &["--secrets-timeout", "2s"]].concat());
    assert!(!ok);
    assert!(
        stderr.contains("HTTP 403 Forbidden (ForbiddenByRbac)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Key Vault Secrets User"),
        "the remedy: {stderr}"
    );
    assert!(stderr.contains(vault.kv.url()), "{stderr}");
    vm.nothing_written();
}

/// The cluster's subnet, as the vault's virtual network rule names it.
const SUBNET: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/nomad-rg/providers/microsoft.network/virtualnetworks/nomad-vnet/subnets/nomad-subnet";

/// The vault as cluster-deploy's first deployment leaves it (Key Vault's `networkAcls`,
/// keyvault.json 2025-05-01 `NetworkRuleSet`): deny by default, no rule for the subnet yet.
fn firewall_without_the_subnet(vault: &ClusterVault) {
    vault.kv.set_network_rules(
        json!({ "defaultAction": "Deny", "bypass": "None", "ipRules": [], "virtualNetworkRules": [] }),
        "Enabled",
    );
    // The VM reaches the vault from the cluster's subnet, through its service endpoint.
    vault.kv.set_origin(
        IDENTITY_PRINCIPAL_ID,
        Origin {
            address: "10.0.0.5".parse().unwrap(),
            subnet: Some(SUBNET.to_string()),
        },
    );
}

/// The VM's requests the firewall refused so far.
fn firewall_refusals(vault: &ClusterVault) -> usize {
    vault
        .kv
        .served()
        .into_iter()
        .filter(|s| s.caller.as_deref() == Some(IDENTITY_PRINCIPAL_ID) && s.status == 403)
        .count()
}

#[test]
fn a_firewall_that_admits_the_subnet_later_is_waited_for() {
    let vault = ClusterVault::granted(AgentRole::Server);
    firewall_without_the_subnet(&vault);
    let vm = Vm::new();
    const REFUSALS: usize = 6;
    let (ok, stdout, stderr) = std::thread::scope(|scope| {
        // The main deployment re-declares the vault with the subnet's rule while the VM
        // boots: after the first REFUSALS refusals, the rule is there.
        scope.spawn(|| {
            let started = Instant::now();
            while firewall_refusals(&vault) < REFUSALS {
                assert!(started.elapsed() < Duration::from_secs(30), "no refusals");
                std::thread::sleep(Duration::from_millis(5));
            }
            vault.kv.set_network_rules(
                json!({
                    "defaultAction": "Deny",
                    "bypass": "None",
                    "ipRules": [],
                    "virtualNetworkRules": [{ "id": SUBNET, "ignoreMissingVnetServiceEndpoint": false }],
                }),
                "Enabled",
            );
        });
        vm.boot(&vault, &[SERVER, &["--secrets-timeout", "20s"]].concat())
    });
    assert!(ok, "{stdout}\n{stderr}");
    assert!(firewall_refusals(&vault) >= REFUSALS);
    assert!(
        stderr.contains("ForbiddenByFirewall") && stderr.contains("waiting for its network rules"),
        "the wait is logged: {stderr}"
    );
    for item in SecretItem::for_role(AgentRole::Server) {
        let path = format!("/secrets/{}/", item.vault_name());
        let statuses: Vec<u16> = vault
            .kv
            .served()
            .into_iter()
            .filter(|s| {
                s.caller.as_deref() == Some(IDENTITY_PRINCIPAL_ID) && s.request.path == path
            })
            .map(|s| s.status)
            .collect();
        assert_eq!(statuses.last(), Some(&200), "{path}: {statuses:?}");
        assert!(
            statuses[..statuses.len() - 1].iter().all(|s| *s == 403),
            "{path}: {statuses:?}"
        );
    }
    assert_eq!(
        vm.root.read("/opt/nomad/tls/server-key.pem"),
        vault.server.key_pem
    );
    assert_eq!(vm.systemctl.take_calls(), START_BOTH);
    assert_no_secret_in(&vault, "run-nomad's output", &format!("{stdout}{stderr}"));
}

#[test]
fn a_firewall_that_never_admits_the_subnet_fails_after_the_deadline_and_starts_nothing() {
    let vault = ClusterVault::granted(AgentRole::Server);
    firewall_without_the_subnet(&vault);
    let vm = Vm::new();
    let started = Instant::now();
    let (ok, _, stderr) = vm.boot(&vault, &[SERVER, &["--secrets-timeout", "3s"]].concat());
    assert!(!ok);
    assert!(
        started.elapsed() >= Duration::from_secs(2) && started.elapsed() < Duration::from_secs(20),
        "retried until --secrets-timeout: {:?}",
        started.elapsed()
    );
    assert!(firewall_refusals(&vault) > SecretItem::for_role(AgentRole::Server).len());
    assert!(stderr.contains("gave up after"), "{stderr}");
    assert!(stderr.contains("ForbiddenByFirewall"), "{stderr}");
    assert!(stderr.contains("network rules"), "{stderr}");
    assert!(stderr.contains("--secrets-timeout"), "{stderr}");
    assert!(
        stderr.contains("nothing was written and Nomad was not started"),
        "{stderr}"
    );
    vm.nothing_written();
}

#[test]
fn a_certificate_for_another_region_is_refused_naming_the_secret() {
    let vault = ClusterVault::granted(AgentRole::Server);
    let vm = Vm::new();
    let (ok, _, stderr) = vm.boot(&vault, &[SERVER, &["--region", "europe"]].concat());
    assert!(!ok);
    assert!(
        stderr.contains("Key Vault secret nomad-server-cert")
            && stderr.contains("not server.europe.nomad"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was written"), "{stderr}");
    vm.nothing_written();
}

#[test]
fn a_second_boot_rewrites_nothing_and_a_rotated_certificate_restarts_nomad() {
    let vault = ClusterVault::granted(AgentRole::Server);
    let vm = Vm::new();
    let (ok, stdout, stderr) = vm.boot(&vault, SERVER);
    assert!(ok, "{stdout}\n{stderr}");
    vm.systemctl.take_calls();
    let inode = |p: &str| fs::metadata(vm.root.at(p)).unwrap().ino();
    let key_inode = inode("/opt/nomad/tls/server-key.pem");
    let cert_inode = inode("/opt/nomad/tls/server.pem");
    let ca_inode = inode("/opt/nomad/tls/ca.pem");

    let (ok, _, stderr) = vm.boot(&vault, SERVER);
    assert!(ok, "{stderr}");
    assert_eq!(
        vm.systemctl.take_calls(),
        common::IS_ACTIVE,
        "nothing to restart"
    );
    assert_eq!(inode("/opt/nomad/tls/server-key.pem"), key_inode);
    assert_eq!(inode("/opt/nomad/tls/server.pem"), cert_inode);

    // A new version of the server certificate (same key is not needed: a new leaf and key).
    let renewed = vault
        .ca
        .server_cert(&[&format!("server.{REGION}.nomad"), "localhost"]);
    vault.upload(SecretItem::ServerCertificate, &renewed.cert_pem);
    vault.upload(SecretItem::ServerKey, &renewed.key_pem);
    let (ok, _, stderr) = vm.boot(&vault, SERVER);
    assert!(ok, "{stderr}");
    assert_eq!(vm.root.read("/opt/nomad/tls/server.pem"), renewed.cert_pem);
    assert_eq!(
        vm.mode_and_owner("/opt/nomad/tls/server-key.pem"),
        (0o640, 0, NOMAD_GID)
    );
    assert_eq!(vm.systemctl.take_calls(), RESTART_AGENT);
    assert_eq!(
        inode("/opt/nomad/tls/ca.pem"),
        ca_inode,
        "the CA did not change"
    );
}

#[test]
fn dry_run_shows_where_the_secrets_go_but_never_what_they_are() {
    let vault = ClusterVault::granted(AgentRole::Server);
    let vm = Vm::new();
    let (ok, stdout, stderr) = vm.boot(&vault, &[SERVER, &["--dry-run", "--json"]].concat());
    assert!(ok, "{stderr}");
    let plan: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        plan["key_vault"],
        json!({
            "name": VAULT,
            "url": format!("{}/", vault.kv.url()),
            "secrets": ["nomad-gossip-key", "nomad-ca-cert", "nomad-server-cert", "nomad-server-key"],
        }),
        "the plan says what was fetched, and from where"
    );
    let secrets_dir = vm.root.at("/opt/nomad/secrets");
    assert_eq!(plan["directories"], json!([secrets_dir]));
    let files = plan["files"].as_array().unwrap();
    let kinds: Vec<(&str, &str, &str)> = files
        .iter()
        .take(4)
        .map(|f| {
            (
                f["kind"].as_str().unwrap(),
                f["path"].as_str().unwrap(),
                f["mode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("gossip-key", "/opt/nomad/secrets/gossip.key", "0640"),
            ("tls-ca-certificate", "/opt/nomad/tls/ca.pem", "0644"),
            ("tls-certificate", "/opt/nomad/tls/server.pem", "0644"),
            ("tls-key", "/opt/nomad/tls/server-key.pem", "0640"),
        ]
    );
    for file in &files[..4] {
        assert_eq!(file["contents"], "<redacted>");
    }
    assert_eq!(files[0]["state"], "new");
    assert_eq!(
        files[1]["state"], "changed",
        "the placeholder CA is replaced"
    );
    let config = files.iter().find(|f| f["kind"] == "agent-config").unwrap();
    assert!(config["contents"]
        .as_str()
        .unwrap()
        .contains("encrypt          = \"<redacted>\""));
    assert_no_secret_in(&vault, "--dry-run --json", &format!("{stdout}{stderr}"));
    assert!(!stdout.contains("BEGIN CERTIFICATE"), "{stdout}");
    vm.nothing_written();
}

#[test]
fn only_what_the_flags_select_is_fetched_and_configured() {
    let vault = ClusterVault::granted(AgentRole::Server);
    let server = &SERVER[..5];

    // TLS opted out: the gossip key alone, no tls block, no TLS file touched.
    let vm = Vm::new();
    let args = [server, &["--gossip-key-from-key-vault", "--acl"]].concat();
    let (ok, stdout, stderr) = vm.boot(&vault, &args);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(read_by(&vault, IDENTITY_PRINCIPAL_ID), ["nomad-gossip-key"]);
    let text = vm.root.read("/opt/nomad/config/default.hcl");
    let doc: Value = hcl1_decode(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(doc["server"][0]["encrypt"], GOSSIP, "{text}");
    assert!(doc.get("tls").is_none(), "{text}");
    assert_eq!(doc["acl"], json!([{ "enabled": true }]));
    assert_eq!(
        vm.root.read("/opt/nomad/tls/server.pem"),
        "cert",
        "the install's own file is left alone"
    );
    let watcher = vm
        .root
        .read("/etc/systemd/system/nomad-scheduled-events.service");
    assert!(
        watcher.contains("--nomad-address http://127.0.0.1:4646"),
        "{watcher}"
    );

    // Gossip encryption opted out: TLS alone, no encrypt, no secrets directory; and without
    // --acl no ACLs (the vault does not imply them).
    let vault = ClusterVault::granted(AgentRole::Server);
    let vm = Vm {
        root: FakeRoot::new(),
        imds: ImdsDouble::start(instance()),
        ..vm
    };
    let args = [server, &["--tls-from-key-vault"]].concat();
    let (ok, stdout, stderr) = vm.boot(&vault, &args);
    assert!(ok, "{stdout}\n{stderr}");
    assert_eq!(
        read_by(&vault, IDENTITY_PRINCIPAL_ID),
        ["nomad-ca-cert", "nomad-server-cert", "nomad-server-key"]
    );
    let text = vm.root.read("/opt/nomad/config/default.hcl");
    let doc: Value = hcl1_decode(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(doc["server"][0].get("encrypt").is_none(), "{text}");
    assert_eq!(doc["tls"][0]["verify_server_hostname"], true, "{text}");
    assert!(doc.get("acl").is_none(), "{text}");
    assert!(!vm.root.at("/opt/nomad/secrets").exists());
    assert_eq!(
        vm.root.read("/opt/nomad/tls/server.pem"),
        vault.server.cert_pem
    );
}

#[test]
fn the_vault_flags_are_checked_before_imds_is_read_naming_the_flag() {
    let vault = ClusterVault::start();
    for (args, expected) in [
        // --key-vault alone would fetch nothing.
        (
            &["--server", "--num-servers", "3", "--acl"][..],
            "--tls-from-key-vault and --gossip-key-from-key-vault",
        ),
        // Clients do not gossip.
        (
            &[
                "--client",
                "--tls-from-key-vault",
                "--gossip-key-from-key-vault",
            ][..],
            "--gossip-key-from-key-vault: the gossip key is server.encrypt",
        ),
        // Each item comes from one place.
        (
            &[
                "--server",
                "--num-servers",
                "3",
                "--gossip-key-from-key-vault",
                "--gossip-key-file",
                "/opt/nomad/config/gossip.key",
            ][..],
            "cannot be used with",
        ),
    ] {
        let vm = Vm::new();
        let (ok, _, stderr) = vm.boot(&vault, args);
        assert!(!ok, "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(vm.imds.requests().is_empty(), "{args:?}: IMDS was read");
        assert!(
            !vault
                .kv
                .served()
                .iter()
                .any(|s| s.caller.as_deref() == Some(IDENTITY_PRINCIPAL_ID)),
            "{args:?}: the vault was read"
        );
        vm.nothing_written();
    }
    // Without the vault, a from-key-vault flag names what it needs.
    let root = FakeRoot::new();
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .args(["--imds-endpoint", "http://127.0.0.1:9"])
        .args(LAYOUT_ARGS)
        .args(["--client", "--tls-from-key-vault"]);
    let (ok, _, stderr) = output(&mut cmd);
    assert!(!ok);
    assert!(stderr.contains("--key-vault <NAME>"), "{stderr}");
}
