//! Secure by default, end to end against the loopback doubles (ARM, login, the Key Vault data
//! plane linked to the ARM double's vaults and role assignments, a Nomad API over TLS): the
//! generated secrets never reach a template, a deployment request, custom data or any output;
//! uploads ride out role assignments that have not propagated; a re-apply keeps every secret
//! version; rotation makes new ones; ACLs are bootstrapped once; `env` writes 0600 files and
//! prints exports; destroy soft-deletes the vault, purges it when asked, a re-created
//! cluster recovers its own (tagged) vault by default, and another cluster's deleted vault
//! needs the operator's choice; opt-outs are warnings and an open API
//! without TLS and ACLs is refused. Every request meets the specs (the doubles fail the test
//! otherwise).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cluster_deploy::secrets::pki::{CertificateAuthority, IssuedCertificate, Role};
use common::deploy::{Deploy, Run};
use common::secure::nomad_cluster;
use serde_json::Value;
use support::cluster_secrets::SecretItem;
use support::doubles::arm::{CALLER_OBJECT_ID, TENANT};
use support::doubles::keyvault::Origin;
use support::doubles::nomad_api::NomadApiDouble;
use support::doubles::tokens::Claims;
use support::keyvault::{KeyVaultClient, Options, TokenSource, RESOURCE};
use support::secret::Secret;

/// The example with the generated CA (a `[nomad.tls]` table of its own keeps the harness from
/// giving it an own CA).
fn generated(extra: &str) -> Deploy {
    Deploy::example(&[], &format!("\n[nomad.tls]\nenabled = true\n{extra}"))
}

fn secret(env: &Deploy, item: SecretItem) -> String {
    env.stack
        .kv
        .as_ref()
        .unwrap()
        .secret_value(item.vault_name())
        .unwrap_or_else(|| panic!("{} is not in the vault", item.vault_name()))
}

fn versions(env: &Deploy, item: SecretItem) -> usize {
    let store = env.stack.kv.as_ref().unwrap().store();
    let store = store.lock().unwrap();
    store.version_count(item.vault_name())
}

/// A Nomad cluster serving the vault's server certificate.
fn nomad_with_vault_cert(env: &Deploy) -> NomadApiDouble {
    let server = IssuedCertificate {
        role: Role::Server,
        cert_pem: secret(env, SecretItem::ServerCertificate),
        key_pem: Secret::new(secret(env, SecretItem::ServerKey)),
    };
    nomad_cluster(Some(&server))
}

/// A new Nomad cluster (fresh servers, ACLs not bootstrapped) with a certificate from the
/// harness's own CA: what a re-created cluster comes up as.
fn fresh_nomad(env: &Deploy) -> NomadApiDouble {
    let read = |f: &str| std::fs::read_to_string(env.dir.path().join(f)).unwrap();
    let ca = CertificateAuthority::from_pem(
        &read("ca.pem"),
        &Secret::new(read("ca-key.pem")),
        SystemTime::now(),
    )
    .unwrap();
    let server = ca
        .issue(
            Role::Server,
            "global",
            &[],
            std::time::Duration::from_secs(86_400 * 30),
            SystemTime::now(),
        )
        .unwrap();
    nomad_cluster(Some(&server))
}

fn fails(run: &Run) -> &str {
    assert_ne!(run.code, 0, "expected a failure:\n{}", run.stdout);
    &run.stderr
}

#[test]
fn no_secret_in_the_template_the_requests_custom_data_or_any_output_and_acls_bootstrap_once() {
    let env = generated("");
    // The first apply deploys everything; the servers are not up yet (nothing answers at the
    // Nomad address), so the bootstrap is pending and apply says to run it again.
    let first = env.run(&["apply"]);
    let stderr = fails(&first);
    assert!(
        stderr.contains("the deployment succeeded, but the Nomad servers at https://127.0.0.1:9"),
        "{stderr}"
    );
    assert!(stderr.contains("run `cluster-deploy apply`"), "{stderr}");
    assert_eq!(
        env.arm.deployments().last().unwrap().state,
        "Succeeded",
        "the cluster itself is deployed"
    );
    // What the vault holds, generated here: every item, each a real value.
    for item in SecretItem::ALL {
        assert!(!secret(&env, item).is_empty(), "{item:?}");
    }
    CertificateAuthority::from_pem(
        &secret(&env, SecretItem::CaCertificate),
        &Secret::new(secret(&env, SecretItem::CaKey)),
        SystemTime::now(),
    )
    .expect("a CA with its key");

    // The servers are up: the re-run bootstraps with the vault's token, over TLS.
    let nomad = nomad_with_vault_cert(&env);
    let second = env.ok(&["apply", "--nomad-address", nomad.url()]);
    assert!(
        second.stderr.contains("Nomad ACLs bootstrapped"),
        "{}",
        second.stderr
    );
    let bootstraps = |n: &NomadApiDouble| {
        n.requests()
            .iter()
            .filter(|r| r.path == "/v1/acl/bootstrap")
            .count()
    };
    assert_eq!(bootstraps(&nomad), 1);
    let token = secret(&env, SecretItem::BootstrapToken);
    let body: Value = serde_json::from_str(
        &nomad
            .requests()
            .iter()
            .find(|r| r.path == "/v1/acl/bootstrap")
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(body["BootstrapSecret"], token.as_str(), "the vault's token");
    // A third apply: already done is not an error; the token is checked as a management one.
    let third = env.ok(&["apply", "--nomad-address", nomad.url()]);
    assert!(
        third
            .stderr
            .contains("Nomad ACLs were bootstrapped before, with the vault's token"),
        "{}",
        third.stderr
    );
    assert_eq!(bootstraps(&nomad), 2);
    let checked = nomad.requests().iter().any(|r| {
        r.path == "/v1/operator/raft/configuration"
            && r.header("x-nomad-token") == Some(token.as_str())
    });
    assert!(checked);

    // The template, every deployment request, every scale set's decoded custom data: nothing
    // of the vault's (env.run searched every output already).
    let template = cluster_deploy::template::render(&common::cluster_from(&env.config));
    env.stack
        .assert_no_secret("the template", &template.to_string());
    for d in env.arm.deployments() {
        env.stack
            .assert_no_secret(&format!("deployment {}", d.name), &d.request.to_string());
        assert!(!d.request.to_string().contains("securestring"));
    }
    for set in ["nomad-example-servers", "nomad-example-clients"] {
        let data = env.arm.custom_data(set).unwrap();
        env.stack.assert_no_secret(set, &data);
        assert!(data.contains("--key-vault"), "{data}");
    }
    // Nor any request ARM saw.
    for r in env.arm.requests() {
        env.stack.assert_no_secret(&r.path, &r.body);
    }
}

#[test]
fn uploads_ride_out_unpropagated_roles_and_a_reapply_keeps_every_version() {
    let env = generated("");
    let kv = env.stack.kv.as_ref().unwrap();
    kv.set_propagation_requests(4);
    let _ = env.run(&["apply"]);
    // 403 ForbiddenByRbac while the operator's new Secrets Officer role propagated, then the
    // uploads went through.
    let served = kv.served();
    let refused = served
        .iter()
        .filter(|s| s.status == 403 && s.caller.as_deref() == Some(CALLER_OBJECT_ID))
        .count();
    assert!(refused >= 1, "no 403 while the role propagated");
    let first_ok = served.iter().position(|s| s.status == 200).unwrap();
    let last_refused = served.iter().rposition(|s| s.status == 403).unwrap();
    assert!(last_refused < first_ok, "refused first, then served");
    let before: Vec<usize> = SecretItem::ALL.iter().map(|i| versions(&env, *i)).collect();
    assert!(before.iter().all(|v| *v == 1), "{before:?}");
    let values: Vec<String> = SecretItem::ALL.iter().map(|i| secret(&env, *i)).collect();
    let nomad = nomad_with_vault_cert(&env);
    let again = env.ok(&["apply", "--nomad-address", nomad.url()]);
    assert!(
        again.stderr.contains("every secret is kept as it is"),
        "{}",
        again.stderr
    );
    let after: Vec<usize> = SecretItem::ALL.iter().map(|i| versions(&env, *i)).collect();
    assert_eq!(after, before, "no new version");
    let kept: Vec<String> = SecretItem::ALL.iter().map(|i| secret(&env, *i)).collect();
    assert_eq!(kept, values);
    let sets = kv
        .served()
        .iter()
        .filter(|s| s.request.method == "PUT")
        .count();
    assert_eq!(sets, SecretItem::ALL.len(), "one SetSecret per item, ever");
}

#[test]
fn rotation_makes_new_versions_of_what_it_names_only() {
    let env = generated("");
    let _ = env.run(&["apply"]);
    let run = env.ok(&["rotate"]);
    assert!(
        run.stdout.contains("no CA rotation in progress") && run.stdout.contains("usage:"),
        "{}",
        run.stdout
    );
    let gossip = secret(&env, SecretItem::GossipKey);
    let ca = secret(&env, SecretItem::CaCertificate);
    let server = secret(&env, SecretItem::ServerCertificate);
    let run = env.ok(&["rotate", "--certificates"]);
    for item in [
        SecretItem::ServerCertificate,
        SecretItem::ServerKey,
        SecretItem::ClientCertificate,
        SecretItem::ClientKey,
        SecretItem::CliCertificate,
        SecretItem::CliKey,
    ] {
        assert_eq!(versions(&env, item), 2, "{item:?}");
        assert!(run.stdout.contains(item.vault_name()), "{}", run.stdout);
    }
    for item in [
        SecretItem::GossipKey,
        SecretItem::CaCertificate,
        SecretItem::CaKey,
        SecretItem::BootstrapToken,
    ] {
        assert_eq!(versions(&env, item), 1, "{item:?}");
    }
    assert_ne!(secret(&env, SecretItem::ServerCertificate), server);
    assert!(run.stdout.contains("cluster-deploy roll"), "{}", run.stdout);
    // The new server certificate is still the same CA's.
    let authority = CertificateAuthority::from_pem(
        &ca,
        &Secret::new(secret(&env, SecretItem::CaKey)),
        SystemTime::now(),
    )
    .unwrap();
    authority
        .check(
            Role::Server,
            "global",
            &secret(&env, SecretItem::ServerCertificate),
            &Secret::new(secret(&env, SecretItem::ServerKey)),
            SystemTime::now(),
        )
        .unwrap();
    let run = env.ok(&["rotate", "--gossip-key", "--json"]);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["new_versions"][0]["secret"], "nomad-gossip-key");
    assert_eq!(versions(&env, SecretItem::GossipKey), 2);
    assert_ne!(secret(&env, SecretItem::GossipKey), gossip);
    assert!(
        out["next_steps"][0]
            .as_str()
            .unwrap()
            .contains("nomad operator gossip keyring install"),
        "{out}"
    );
    // A new CA starts as a second trusted CA; the certificates stay (tests/ca_rotation.rs
    // follows the whole rotation).
    let run = env.ok(&["rotate", "--ca"]);
    assert_eq!(versions(&env, SecretItem::CaCertificate), 2);
    assert_eq!(versions(&env, SecretItem::ServerCertificate), 2);
    assert!(
        run.stdout.contains("replace every server and client"),
        "{}",
        run.stdout
    );
}

#[test]
fn env_writes_0600_files_and_prints_the_exports_and_outputs_names_the_ca() {
    let env = generated("");
    let _ = env.run(&["apply"]);
    let nomad = nomad_with_vault_cert(&env);
    env.ok(&["apply", "--nomad-address", nomad.url()]);
    let dir = env
        .stack
        .config_home
        .path()
        .join("nomad-azure/nomad-example");
    let ca_file = dir.join("ca.pem").display().to_string();
    // Before env: outputs says how to get the CA the https API needs.
    let text = env.ok(&["outputs"]).stdout;
    let line = text
        .lines()
        .find(|l| l.starts_with("nomad_ca_cert "))
        .unwrap_or_else(|| panic!("no CA line: {text}"));
    assert!(
        line.contains("run `cluster-deploy env`") && line.contains(&ca_file),
        "{line}"
    );
    let json: Value = serde_json::from_str(&env.ok(&["outputs", "--json"]).stdout).unwrap();
    assert_eq!(json["nomad_ca_cert"], Value::Null);
    assert!(json["nomad_ca_cert_hint"]
        .as_str()
        .unwrap()
        .contains("cluster-deploy env"));
    let run = env.ok(&["env", "--nomad-address", nomad.url()]);
    // After it: outputs names the file.
    let text = env.ok(&["outputs"]).stdout;
    assert!(
        text.lines()
            .any(|l| l == format!("nomad_ca_cert          {ca_file}")),
        "{text}"
    );
    let json: Value = serde_json::from_str(&env.ok(&["outputs", "--json"]).stdout).unwrap();
    assert_eq!(json["nomad_ca_cert"], ca_file.as_str());
    assert_eq!(json["nomad_ca_cert_hint"], Value::Null);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(dir.parent().unwrap()), 0o700);
    for (file, item) in [
        ("ca.pem", SecretItem::CaCertificate),
        ("cli.pem", SecretItem::CliCertificate),
        ("cli-key.pem", SecretItem::CliKey),
    ] {
        let path = dir.join(file);
        assert_eq!(mode(&path), 0o600, "{file}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), secret(&env, item));
    }
    assert!(!dir.join("bootstrap-token").exists(), "only with --token");
    let q = |p: &str| support::shell::quote(&dir.join(p).display().to_string());
    for line in [
        format!("export NOMAD_ADDR={}", nomad.url()),
        format!("export NOMAD_CACERT={}", q("ca.pem")),
        format!("export NOMAD_CLIENT_CERT={}", q("cli.pem")),
        format!("export NOMAD_CLIENT_KEY={}", q("cli-key.pem")),
        "export NOMAD_TLS_SERVER_NAME=server.global.nomad".to_string(),
    ] {
        assert!(
            run.stdout.lines().any(|l| l == line),
            "{line}\n{}",
            run.stdout
        );
    }
    assert!(!run.stdout.contains("NOMAD_TOKEN"), "{}", run.stdout);
    // With --token: the token in its own 0600 file, exported by reference, never printed.
    let run = env.ok(&["env", "--token", "--nomad-address", nomad.url()]);
    let token_file = dir.join("bootstrap-token");
    assert_eq!(mode(&token_file), 0o600);
    let token = secret(&env, SecretItem::BootstrapToken);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), token);
    assert!(
        run.stdout.contains(&format!(
            "export NOMAD_TOKEN=\"$(cat {})\"",
            q("bootstrap-token")
        )),
        "{}",
        run.stdout
    );
    let sh = std::process::Command::new("sh")
        .args(["-c", &format!("{}\nprintf %s \"$NOMAD_TOKEN\"", run.stdout)])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&sh.stdout),
        token,
        "the exports work in a shell"
    );
    let run = env.ok(&["env", "--json", "--nomad-address", nomad.url()]);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        out["exports"]["NOMAD_TLS_SERVER_NAME"],
        "server.global.nomad"
    );
    assert_eq!(
        out["exports"]["NOMAD_CACERT"],
        dir.join("ca.pem").display().to_string()
    );
    // status trusts the env files' CA by default, and names the server it expects.
    let cmd = ["status", "--nomad-address", nomad.url(), "--json"];
    let status = {
        let mut c = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
        c.env_clear()
            .env("ARM_TENANT_ID", "contoso.onmicrosoft.com")
            .env("ARM_CLIENT_ID", common::deploy::CLIENT_ID)
            .env("ARM_CLIENT_SECRET", common::deploy::CLIENT_SECRET)
            .env("ARM_SUBSCRIPTION_ID", env.arm.subscription())
            .env("XDG_CONFIG_HOME", env.stack.config_home.path())
            .env("NOMAD_TOKEN", &token)
            .args(cmd)
            .arg("--config")
            .arg(&env.config)
            .args([
                "--arm-endpoint",
                env.arm.url(),
                "--login-endpoint",
                env.login.url(),
            ])
            .args(["--az-program", "/nonexistent/az", "--retry-delay-ms", "5"]);
        c.output().unwrap()
    };
    let out: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(out["nomad"]["leader"].is_string(), "{out}");
}

#[test]
fn someone_elses_bootstrap_is_an_alarm_not_a_success() {
    let env = Deploy::example(&[], "");
    let nomad = env.stack.nomad.as_ref().unwrap();
    // Someone bootstrapped the cluster before apply could.
    let other = "6f0e8d2c-0000-4000-8000-00000000beef";
    let ca = std::fs::read_to_string(env.dir.path().join("ca.pem")).unwrap();
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve(
            "server.global.nomad",
            nomad.url().trim_start_matches("https://").parse().unwrap(),
        )
        .build()
        .unwrap();
    let port = nomad.url().rsplit(':').next().unwrap();
    let answer = client
        .post(format!(
            "https://server.global.nomad:{port}/v1/acl/bootstrap"
        ))
        .json(&serde_json::json!({ "BootstrapSecret": other }))
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    let run = env.run(&["apply"]);
    let stderr = fails(&run);
    assert!(
        stderr.contains("bootstrapped by someone else") && stderr.contains("compromised"),
        "{stderr}"
    );
}

#[test]
fn destroy_soft_deletes_the_vault_and_a_recreated_cluster_recovers_or_purges_it() {
    let env = Deploy::example(&[], "");
    env.ok(&["apply"]);
    let kv = env.stack.vault.clone().unwrap();
    let gossip = secret(&env, SecretItem::GossipKey);
    let run = env.ok(&["destroy", "--yes"]);
    assert!(
        run.stdout
            .contains(&format!("Key Vault {kv} is soft-deleted")),
        "{}",
        run.stdout
    );
    assert!(env.arm.deleted_vault(&kv).is_some());
    assert!(
        env.arm.resource_group("nomad-example").is_none(),
        "the group went, empty"
    );

    // Re-created: the soft-deleted vault carries this cluster's tag (Vaults_GetDeleted's
    // `properties.tags`), so a plain apply recovers it with its secrets (the same gossip key:
    // old servers' data still fits) and says so; the role assignments are made again
    // (recovery does not restore them).
    assert_eq!(
        env.arm.deleted_vault(&kv).unwrap()["properties"]["tags"]["nomad-cluster"],
        "nomad-example"
    );
    let run = env.ok(&["apply"]);
    assert!(
        run.stderr
            .contains(&format!("Key Vault {kv} was soft-deleted"))
            && run.stderr.contains("recovered with its secrets")
            && run.stderr.contains("--purge-deleted-vault"),
        "{}",
        run.stderr
    );
    assert!(env.arm.deleted_vault(&kv).is_none());
    assert_eq!(secret(&env, SecretItem::GossipKey), gossip);
    assert_eq!(versions(&env, SecretItem::GossipKey), 1);
    let recovered = env
        .arm
        .deployments()
        .into_iter()
        .rfind(|d| d.name == "nomad-example.vault")
        .unwrap();
    assert_eq!(
        recovered.request["properties"]["template"]["resources"][0]["properties"]["createMode"],
        "recover"
    );
    let grants = env
        .arm
        .resources()
        .into_iter()
        .filter(|r| {
            r["type"] == "Microsoft.Authorization/roleAssignments"
                && r["properties"]["scope"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("/secrets/")
        })
        .count();
    assert_eq!(grants, 7);

    // Destroy with --purge-vault: gone for good; the next cluster starts with new secrets.
    let run = env.ok(&["destroy", "--yes", "--purge-vault", "--json"]);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["key_vault"]["state"], "purged");
    assert!(env.arm.deleted_vault(&kv).is_none());
    let nomad = fresh_nomad(&env);
    env.ok(&["apply", "--nomad-address", nomad.url()]);
    assert_ne!(secret(&env, SecretItem::GossipKey), gossip);
    // --purge-deleted-vault also frees the name at apply time.
    env.ok(&["destroy", "--yes"]);
    let nomad = fresh_nomad(&env);
    env.ok(&[
        "apply",
        "--purge-deleted-vault",
        "--nomad-address",
        nomad.url(),
    ]);
    assert!(env.arm.deleted_vault(&kv).is_none());
}

/// The operator's data-plane client for the cluster's vault (the principal apply runs as).
fn operator_client(env: &Deploy) -> KeyVaultClient {
    let token = Claims::new(RESOURCE, CALLER_OBJECT_ID, TENANT).issue();
    let tokens: Arc<dyn TokenSource> = Arc::new(move || Ok(Secret::new(token.clone())));
    let options = Options {
        deadline: Duration::from_secs(30),
        initial_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        ..Options::default()
    };
    KeyVaultClient::new(env.stack.kv.as_ref().unwrap().url(), tokens, options).unwrap()
}

#[test]
fn a_soft_deleted_secret_is_recovered_not_replaced_and_only_a_purged_one_is_made_anew() {
    let env = Deploy::example(&[], "");
    env.ok(&["apply"]);
    let gossip = secret(&env, SecretItem::GossipKey);
    let token = secret(&env, SecretItem::BootstrapToken);
    let client = operator_client(&env);
    // Someone deletes two items (DeleteSecret: soft delete, recoverable).
    for item in [SecretItem::GossipKey, SecretItem::BootstrapToken] {
        client.delete_secret(item.vault_name()).unwrap();
    }
    let kv = env.stack.kv.as_ref().unwrap();
    assert_eq!(kv.secret_value(SecretItem::GossipKey.vault_name()), None);
    let run = env.ok(&["apply"]);
    assert!(
        run.stderr.contains("nomad-gossip-key is soft-deleted")
            && run
                .stderr
                .contains("nomad-acl-bootstrap-token is soft-deleted")
            && run.stderr.contains("recovered soft-deleted"),
        "{}",
        run.stderr
    );
    // The same values, and no new version: the recovered ones were reconciled against.
    assert_eq!(secret(&env, SecretItem::GossipKey), gossip);
    assert_eq!(secret(&env, SecretItem::BootstrapToken), token);
    assert_eq!(versions(&env, SecretItem::GossipKey), 1);
    assert_eq!(versions(&env, SecretItem::BootstrapToken), 1);
    let operations: Vec<String> = kv
        .served()
        .into_iter()
        .filter_map(|s| match s.verdict {
            support::doubles::keyvault::Verdict::Operation { operation_id, .. } => {
                Some(operation_id)
            }
            _ => None,
        })
        .collect();
    for op in ["GetDeletedSecret", "RecoverDeletedSecret"] {
        assert!(operations.iter().any(|o| o == op), "{op}: {operations:?}");
    }
    // Deleted and purged: nothing to recover, so a new key is made.
    client
        .delete_secret(SecretItem::GossipKey.vault_name())
        .unwrap();
    client
        .purge_deleted_secret(SecretItem::GossipKey.vault_name())
        .unwrap();
    env.ok(&["apply"]);
    assert_ne!(secret(&env, SecretItem::GossipKey), gossip);
}

#[test]
fn a_deleted_vault_of_another_cluster_needs_the_operators_choice() {
    // Cluster nomad-other made the vault, then was destroyed; nomad-example names the same
    // vault in its file.
    let env = Deploy::example(
        &["cluster_name = \"nomad-other\""],
        "\n[key_vault]\nname = \"nomad-shared-kv\"\n",
    );
    env.ok(&["apply"]);
    env.ok(&["destroy", "--yes"]);
    assert!(env.arm.deleted_vault("nomad-shared-kv").is_some());
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "cluster_name = \"nomad-other\"",
        "cluster_name = \"nomad-example\"",
    );
    std::fs::write(&env.config, text).unwrap();
    let before = env.arm.deployments().len();
    let run = env.run(&["apply"]);
    let stderr = fails(&run);
    assert!(
        stderr.contains("nomad-shared-kv")
            && stderr.contains("tagged nomad-cluster=nomad-other, not nomad-example"),
        "{stderr}"
    );
    for choice in ["--recover-vault", "--purge-deleted-vault", "key_vault.name"] {
        assert!(stderr.contains(choice), "{choice}: {stderr}");
    }
    assert_eq!(env.arm.deployments().len(), before, "nothing deployed");
    assert!(env.arm.deleted_vault("nomad-shared-kv").is_some());
    // Nor does destroy --purge-vault purge another cluster's vault for good.
    let run = env.run(&["destroy", "--yes", "--purge-vault"]);
    let stderr = fails(&run);
    assert!(
        stderr.contains("is not this cluster's (tag nomad-cluster: nomad-other"),
        "{stderr}"
    );
    assert!(env.arm.deleted_vault("nomad-shared-kv").is_some());
    // The explicit flag still recovers it.
    env.ok(&["apply", "--recover-vault"]);
    assert!(env.arm.deleted_vault("nomad-shared-kv").is_none());
}

#[test]
fn purge_protection_keeps_a_deleted_vault_and_says_so() {
    let env = Deploy::example(&[], "\n[key_vault]\npurge_protection = true\n");
    env.ok(&["apply"]);
    let kv = env.stack.vault.clone().unwrap();
    let run = env.ok(&["destroy", "--yes"]);
    assert!(run.stdout.contains("purge protection"), "{}", run.stdout);
    assert!(!run.stdout.contains("--purge-vault"), "{}", run.stdout);
    let run = env.run(&["destroy", "--yes", "--purge-vault"]);
    assert!(
        fails(&run).contains("has purge protection"),
        "{}",
        run.stderr
    );
    let run = env.run(&["apply", "--purge-deleted-vault"]);
    assert!(
        fails(&run).contains("has purge protection"),
        "{}",
        run.stderr
    );
    assert!(env.arm.deleted_vault(&kv).is_some());
    env.ok(&["apply", "--recover-vault"]);
}

#[test]
fn an_operator_outside_the_vault_firewall_is_told_which_field_admits_them() {
    let env = Deploy::example(&[], "");
    env.stack.kv.as_ref().unwrap().set_origin(
        CALLER_OBJECT_ID,
        Origin {
            address: "198.51.100.99".parse().unwrap(),
            subnet: None,
        },
    );
    let run = env.run(&["apply"]);
    let stderr = fails(&run);
    assert!(stderr.contains("ForbiddenByFirewall"), "{stderr}");
    assert!(stderr.contains("key_vault.allowed_cidr_blocks"), "{stderr}");
    assert!(stderr.contains("203.0.113.0/24"), "{stderr}");
}

#[test]
fn plan_warns_of_every_opt_out_and_refuses_an_open_api_without_tls_and_acls() {
    let env = Deploy::example(&[], "\n[nomad.tls]\nenabled = false\n");
    let text = std::fs::read_to_string(&env.config).unwrap().replace(
        "node_class = \"general\"",
        "node_class = \"general\"\ngossip_encryption = false\nacl_bootstrap = false",
    );
    std::fs::write(&env.config, &text).unwrap();
    let run = env.ok(&["plan", "--offline"]);
    for field in [
        "nomad.tls.enabled",
        "nomad.gossip_encryption",
        "nomad.acl_bootstrap",
    ] {
        assert!(
            run.stdout.contains(&format!("warning: `{field}`")),
            "{field}: {}",
            run.stdout
        );
    }
    let run = env.ok(&["plan", "--offline", "--json"]);
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["warnings"].as_array().unwrap().len(), 3, "{out}");
    // The same cluster open to the internet is refused, naming the fields.
    std::fs::write(
        &env.config,
        text.replace(
            "allowed_inbound_cidr_blocks = [\"203.0.113.0/24\"]",
            "allowed_inbound_cidr_blocks = [\"0.0.0.0/0\"]",
        ),
    )
    .unwrap();
    let run = env.run(&["plan", "--offline"]);
    let stderr = fails(&run);
    for field in [
        "allowed_inbound_cidr_blocks[0]",
        "nomad.tls.enabled = false",
        "nomad.acl_bootstrap = false",
    ] {
        assert!(stderr.contains(field), "{field}: {stderr}");
    }
}

#[test]
fn every_request_is_an_operation_of_the_specs() {
    let env = generated("");
    let _ = env.run(&["apply"]);
    let nomad = nomad_with_vault_cert(&env);
    env.ok(&["apply", "--nomad-address", nomad.url()]);
    env.ok(&["env", "--token", "--nomad-address", nomad.url()]);
    env.ok(&["rotate", "--all"]);
    env.ok(&["destroy", "--yes"]);
    env.ok(&["apply", "--recover-vault", "--nomad-address", nomad.url()]);
    env.ok(&["destroy", "--yes", "--purge-vault"]);
    let kv = env.stack.kv.as_ref().unwrap();
    assert!(kv.refused().is_empty() && env.arm.refused().is_empty());
    let mut used: Vec<String> = env
        .arm
        .operations_used()
        .into_iter()
        .chain(kv.operations_used())
        .map(|(o, v)| format!("{o} {v}"))
        .collect();
    used.sort();
    eprintln!("operations used:\n  {}", used.join("\n  "));
    for op in [
        "Vaults_GetDeleted 2025-05-01",
        "Vaults_PurgeDeleted 2025-05-01",
        "RoleAssignments_Delete 2022-04-01",
        "SetSecret 7.6",
        "GetSecret 7.6",
    ] {
        assert!(used.iter().any(|u| u == op), "{op}: {used:?}");
    }
}
