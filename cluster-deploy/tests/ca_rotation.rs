//! Replacing the CA in three steps against the loopback doubles (ARM, login, the Key Vault data
//! plane), each phase read back from the vault: `rotate --ca start | switch | finish`, and
//! `rotate` alone reporting the phase. At every phase the certificates are checked with OpenSSL
//! (`openssl verify`) as Nomad's mutual TLS uses them: a node booted before the step and a node
//! booted after it (the two kinds a roll has running side by side) each accept the other's
//! certificate, as server and as client; the CLI's files from `env` verify against both; and
//! `status` reaches servers of both kinds through the CA bundle. Also: steps out of order are
//! refused and change nothing, every step run twice changes nothing the second time, and no
//! key ever reaches the output.

mod common;

use std::path::Path;
use std::process::Command;

use cluster_deploy::secrets::pki::{IssuedCertificate, Role};
use common::deploy::{Deploy, Run};
use common::secure::nomad_cluster;
use serde_json::Value;
use support::cluster_secrets::SecretItem;
use support::secret::Secret;

const PENDING: &str = "nomad-ca-key-next";

fn generated() -> Deploy {
    Deploy::example(&[], "\n[nomad.tls]\nenabled = true\n")
}

fn value(env: &Deploy, name: &str) -> Option<String> {
    env.stack.kv.as_ref().unwrap().secret_value(name)
}

fn secret(env: &Deploy, item: SecretItem) -> String {
    value(env, item.vault_name()).unwrap_or_else(|| panic!("{} missing", item.vault_name()))
}

fn versions(env: &Deploy) -> Vec<(&'static str, usize)> {
    let store = env.stack.kv.as_ref().unwrap().store();
    let store = store.lock().unwrap();
    SecretItem::ALL
        .iter()
        .map(|i| (i.vault_name(), store.version_count(i.vault_name())))
        .chain([(PENDING, store.version_count(PENDING))])
        .collect()
}

fn count(env: &Deploy, item: SecretItem) -> usize {
    versions(env)
        .into_iter()
        .find(|(n, _)| *n == item.vault_name())
        .unwrap()
        .1
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// What a node booted at some point has: the CA bundle it trusts and its certificates.
#[derive(Clone)]
struct Node {
    label: &'static str,
    trust: String,
    server: String,
    server_key: String,
    client: String,
}

fn booted(env: &Deploy, label: &'static str) -> Node {
    Node {
        label,
        trust: secret(env, SecretItem::CaCertificate),
        server: secret(env, SecretItem::ServerCertificate),
        server_key: secret(env, SecretItem::ServerKey),
        client: secret(env, SecretItem::ClientCertificate),
    }
}

/// `openssl verify` of `cert` against the bundle `trust` for `purpose`.
fn verify(dir: &Path, trust: &str, cert: &str, purpose: &str) -> (bool, String) {
    std::fs::write(dir.join("trust.pem"), trust).unwrap();
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    let output = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", purpose])
        .args(["-CAfile", "trust.pem", "cert.pem"])
        .current_dir(dir)
        .output()
        .expect("running openssl (installed by scripts/install-test-deps.sh)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// `a` and `b` accept each other: each one's server and client certificates verify against
/// the other's trust, as TLS server (RPC and HTTP) and as TLS client (RPC dials).
fn mutual(dir: &Path, a: &Node, b: &Node) {
    for (from, to) in [(a, b), (b, a)] {
        for (cert, purpose) in [
            (&from.server, "sslserver"),
            (&from.server, "sslclient"),
            (&from.client, "sslserver"),
            (&from.client, "sslclient"),
        ] {
            let (ok, out) = verify(dir, &to.trust, cert, purpose);
            assert!(
                ok,
                "a node booted {} rejects a certificate of a node booted {} ({purpose}): {out}",
                to.label, from.label
            );
        }
    }
}

/// `a`'s certificates are rejected by `b`: the pair a skipped roll would leave.
fn rejects(dir: &Path, a: &Node, b: &Node) {
    let (ok, out) = verify(dir, &b.trust, &a.server, "sslserver");
    assert!(
        !ok,
        "a node booted {} should not accept one booted {}: {out}",
        b.label, a.label
    );
}

/// `status` with the CLI's files from `env` and the management token.
fn status(env: &Deploy, address: &str) -> Value {
    let mut c = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    c.env_clear()
        .env("ARM_TENANT_ID", "contoso.onmicrosoft.com")
        .env("ARM_CLIENT_ID", common::deploy::CLIENT_ID)
        .env("ARM_CLIENT_SECRET", common::deploy::CLIENT_SECRET)
        .env("ARM_SUBSCRIPTION_ID", env.arm.subscription())
        .env("XDG_CONFIG_HOME", env.stack.config_home.path())
        .env("NOMAD_TOKEN", secret(env, SecretItem::BootstrapToken))
        .args(["status", "--nomad-address", address, "--json", "--config"])
        .arg(&env.config)
        .args([
            "--arm-endpoint",
            env.arm.url(),
            "--login-endpoint",
            env.login.url(),
        ])
        .args(["--az-program", "/nonexistent/az", "--retry-delay-ms", "5"]);
    let output = c.output().unwrap();
    assert!(
        output.status.success(),
        "status: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The operator's tools work with servers booted as `nodes` are, and change nothing in the
/// vault: `apply` (its ACL bootstrap reaches the server through the bundle), `env` (the CLI's
/// files: the CLI trusts each server's certificate and each server trusts the CLI's, checked
/// with OpenSSL) and `status` (through the bundle).
fn tools_work(env: &Deploy, dir: &Path, nodes: &[&Node]) {
    let settled = versions(env);
    for node in nodes {
        let nomad = nomad_cluster(Some(&IssuedCertificate {
            role: Role::Server,
            cert_pem: node.server.clone(),
            key_pem: Secret::new(node.server_key.clone()),
        }));
        env.ok(&["apply", "--nomad-address", nomad.url()]);
        let exports = env.ok(&["env", "--nomad-address", nomad.url()]);
        assert!(
            exports.stdout.contains("NOMAD_CACERT"),
            "{}",
            exports.stdout
        );
        let files = env
            .stack
            .config_home
            .path()
            .join("nomad-azure/nomad-example");
        let ca_file = std::fs::read_to_string(files.join("ca.pem")).unwrap();
        assert_eq!(ca_file, secret(env, SecretItem::CaCertificate));
        let cli = std::fs::read_to_string(files.join("cli.pem")).unwrap();
        let (ok, out) = verify(dir, &ca_file, &node.server, "sslserver");
        assert!(ok, "the CLI rejects a server booted {}: {out}", node.label);
        let (ok, out) = verify(dir, &node.trust, &cli, "sslclient");
        assert!(ok, "a server booted {} rejects the CLI: {out}", node.label);
        let out = status(env, nomad.url());
        assert!(
            out["nomad"]["leader"].is_string(),
            "status through the bundle to a server booted {}: {out}",
            node.label
        );
    }
    assert_eq!(
        versions(env),
        settled,
        "apply, env and status keep the phase"
    );
}

/// Every instance of every scale set, from `status`: (name, latest model).
fn models(env: &Deploy, address: &str) -> Vec<(String, bool)> {
    let out = status(env, address);
    out["scale_sets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|set| set["instances"].as_array().unwrap().clone())
        .map(|i| {
            (
                i["name"].as_str().unwrap_or_default().to_string(),
                i["latest_model_applied"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Seconds since the Unix epoch of `2026-11-30T12:34:56Z` (the form rotate prints).
fn unix_seconds(text: &str) -> u64 {
    assert!(
        text.len() == 20 && text.ends_with('Z') && text.as_bytes()[10] == b'T',
        "{text}"
    );
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from civil (the inverse of the simulation clock's conversion).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The vault's time of a step: `created` of the newest version among those the step's output
/// lists as written.
fn vault_time(env: &Deploy, out: &Value) -> u64 {
    let kv = env.stack.kv.as_ref().unwrap();
    let mut written: Vec<&str> = out["new_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["secret"].as_str().unwrap())
        .collect();
    if out["pending_key"]
        .as_str()
        .is_some_and(|p| p.starts_with("stored"))
    {
        written.push(PENDING);
    }
    written
        .iter()
        .filter_map(|name| kv.latest_created(name))
        .max()
        .unwrap_or_else(|| panic!("no version written: {out}")) as u64
}

/// Key Vault's clock from now on: the process's, `skew` seconds behind (negative: ahead).
fn skew_vault_clock(env: &Deploy, skew: i64) {
    let kv = env.stack.kv.as_ref().unwrap();
    kv.set_clock(std::sync::Arc::new(move || {
        let now = std::time::SystemTime::now();
        let by = std::time::Duration::from_secs(skew.unsigned_abs());
        if skew >= 0 {
            now - by
        } else {
            now + by
        }
    }));
}

/// A step's roll command: the cluster file and the time of the step, which is `created` of
/// the version the step wrote last (by the vault's clock, not this machine's).
fn roll_command(env: &Deploy, out: &Value, servers_only: bool) -> String {
    let time = out["created_before"]
        .as_str()
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(unix_seconds(time), vault_time(env, out), "{out}");
    assert_eq!(out["created_before_source"], "key_vault", "{out}");
    let command = format!(
        "cluster-deploy roll --config {}{} --created-before {time}",
        env.config.display(),
        if servers_only { " --servers-only" } else { "" }
    );
    assert_eq!(out["roll_command"], command.as_str(), "{out}");
    assert!(
        out["next_steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_str().unwrap().contains(&command)),
        "{out}"
    );
    command
}

#[test]
fn a_rotation_leaves_the_model_as_it_is_and_prints_the_roll_by_creation_time() {
    let env = generated();
    let _ = env.run(&["apply"]);
    let nomad = nomad_cluster(Some(&IssuedCertificate {
        role: Role::Server,
        cert_pem: secret(&env, SecretItem::ServerCertificate),
        key_pem: Secret::new(secret(&env, SecretItem::ServerKey)),
    }));
    env.ok(&["apply", "--nomad-address", nomad.url()]);
    env.ok(&["env", "--nomad-address", nomad.url()]);
    // Key Vault's clock (Azure's) is three hours behind this machine's: the printed time is
    // the vault's, so that roll compares Azure's times with Azure's times.
    skew_vault_clock(&env, 3 * 3600);
    let step = json(&env.ok(&["rotate", "--ca", "start", "--json"]));
    let command = roll_command(&env, &step, false);
    let printed = unix_seconds(step["created_before"].as_str().unwrap());
    assert!(
        printed + 3 * 3600 <= now() && now() < printed + 3 * 3600 + 60,
        "{step}"
    );
    // No model change: every instance stays on the latest model, the roll selects by age.
    let models = models(&env, nomad.url());
    assert!(models.len() >= 4, "{models:?}");
    assert!(models.iter().all(|(_, latest)| *latest), "{models:?}");
    assert!(!command.contains("custom_data"));

    // The text form prints the same command on a line of its own; a repeated step too.
    let text = env.ok(&["rotate", "--ca", "start"]).stdout;
    assert!(text.contains("nothing to do"), "{text}");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("roll: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.starts_with(&format!(
            "cluster-deploy roll --config {} --created-before ",
            env.config.display()
        )),
        "{line}"
    );
    assert!(
        !text.contains("custom_data") && !text.contains("marker"),
        "{text}"
    );

    // Certificates: every node; the gossip key: the servers only hold it.
    let certs = json(&env.ok(&["rotate", "--certificates", "--json"]));
    roll_command(&env, &certs, false);
    let gossip = json(&env.ok(&["rotate", "--gossip-key", "--json"]));
    roll_command(&env, &gossip, true);
    let all = json(&env.ok(&["rotate", "--all", "--json"]));
    roll_command(&env, &all, false);
}

#[test]
fn a_ca_rotation_in_three_steps_keeps_old_and_new_nodes_talking_at_every_phase() {
    let env = generated();
    let _ = env.run(&["apply"]);
    // The vault's clock a little ahead of ARM's: every instance apply made is older than the
    // first step, even when both fall within one second.
    skew_vault_clock(&env, -30);
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();

    // Idle: `rotate` alone reports and changes nothing.
    let before = versions(&env);
    let run = env.ok(&["rotate"]);
    assert!(
        run.stdout.contains("no CA rotation in progress")
            && run.stdout.contains("rotate --ca start"),
        "{}",
        run.stdout
    );
    let report = json(&env.ok(&["rotate", "--json"]));
    assert_eq!(report["ca_rotation"]["phase"], "idle", "{report}");
    assert_eq!(
        report["ca_rotation"]["trusted"].as_array().unwrap().len(),
        1
    );
    let run = env.run(&["rotate", "--ca", "switch"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("out of order") && run.stderr.contains("idle"),
        "{}",
        run.stderr
    );
    let run = env.ok(&["rotate", "--ca", "finish"]);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
    let run = env.run(&["rotate", "--ca", "--certificates"]);
    assert!(run.stderr.contains("--ca runs alone"), "{}", run.stderr);
    assert_eq!(
        versions(&env),
        before,
        "reports and refusals change nothing"
    );
    let n0 = booted(&env, "before the rotation");

    // Phase 1: both CAs trusted, the old one signs.
    let step = json(&env.ok(&["rotate", "--ca", "--json"]));
    let t1 = step["created_before"].as_str().unwrap().to_string();
    assert_eq!(
        (&step["phase_before"], &step["phase"], &step["already_done"]),
        (&"idle".into(), &"phase-1".into(), &false.into()),
        "{step}"
    );
    assert_eq!(step["new_versions"][0]["secret"], "nomad-ca-cert", "{step}");
    assert_eq!(step["new_versions"].as_array().unwrap().len(), 1, "{step}");
    assert!(step["pending_key"].as_str().unwrap().starts_with("stored"));
    assert!(step["next_steps"][0]
        .as_str()
        .unwrap()
        .contains("rotate --ca switch"));
    let pending = value(&env, PENDING).expect("the new CA's key is pending in the vault");
    assert!(!step.to_string().contains(pending.lines().nth(1).unwrap()));
    assert_eq!(count(&env, SecretItem::CaCertificate), 2);
    assert_eq!(count(&env, SecretItem::CaKey), 1);
    assert_eq!(count(&env, SecretItem::ServerCertificate), 1);
    let n1 = booted(&env, "in phase 1");
    assert!(n1.trust.starts_with(&n0.trust), "the old CA stays first");
    assert_eq!(n1.trust.matches("BEGIN CERTIFICATE").count(), 2);
    assert_eq!(n1.server, n0.server);
    mutual(dir, &n0, &n1);
    tools_work(&env, dir, &[&n0, &n1]);
    // Again: nothing changes; out of order: refused.
    let settled = versions(&env);
    let run = env.ok(&["rotate", "--ca", "start"]);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
    let run = env.run(&["rotate", "--ca", "finish"]);
    assert!(
        run.stderr.contains("phase-1") && run.stderr.contains("rotate --ca switch"),
        "{}",
        run.stderr
    );
    let run = env.run(&["rotate", "--ca", "start", "--skip-roll-check"]);
    assert!(
        run.stderr
            .contains("--skip-roll-check goes only with --ca switch or --ca finish"),
        "{}",
        run.stderr
    );
    // No roll since the start: every instance trusts only the old CA, the switch is refused.
    refused_before_roll(&env, "switch", "start", &t1);
    assert_eq!(versions(&env), settled, "re-runs and refusals keep phase 1");
    let report = json(&env.ok(&["rotate", "--json"]));
    assert_eq!(report["ca_rotation"]["phase"], "phase-1", "{report}");

    // Phase 2: the new CA signs; both still trusted. (The roll is skipped here, with the
    // override and its warning: the nodes of each phase are checked with OpenSSL instead.)
    let run = env.ok(&["rotate", "--ca", "switch", "--json", "--skip-roll-check"]);
    assert!(
        run.stderr
            .contains("--skip-roll-check: going ahead although `cluster-deploy rotate --ca switch`: the roll after"),
        "{}",
        run.stderr
    );
    let step = json(&run);
    let t2 = step["created_before"].as_str().unwrap().to_string();
    assert_eq!(step["phase"], "phase-2", "{step}");
    assert_eq!(step["pending_key"], "deleted", "{step}");
    assert_eq!(value(&env, PENDING), None);
    assert_eq!(count(&env, SecretItem::CaKey), 2);
    assert_eq!(count(&env, SecretItem::CaCertificate), 2);
    assert_eq!(secret(&env, SecretItem::CaKey), pending);
    for item in [
        SecretItem::ServerCertificate,
        SecretItem::ClientCertificate,
        SecretItem::CliCertificate,
    ] {
        assert_eq!(count(&env, item), 2, "{item:?}");
    }
    let n2 = booted(&env, "in phase 2");
    assert_eq!(n2.trust, n1.trust);
    mutual(dir, &n1, &n2);
    rejects(dir, &n2, &n0); // why phase 1's roll must finish before the switch
    tools_work(&env, dir, &[&n1, &n2]);
    let settled = versions(&env);
    let run = env.ok(&["rotate", "--ca", "switch"]);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
    let run = env.run(&["rotate", "--ca", "start"]);
    assert!(
        run.stderr.contains("phase-2") && run.stderr.contains("rotate --ca finish"),
        "{}",
        run.stderr
    );
    refused_before_roll(&env, "finish", "switch", &t2);
    assert_eq!(versions(&env), settled, "re-runs and refusals keep phase 2");

    // Finish: only the new CA.
    let run = env.ok(&["rotate", "--ca", "finish", "--json", "--skip-roll-check"]);
    assert!(
        run.stderr.contains("--skip-roll-check: going ahead"),
        "{}",
        run.stderr
    );
    let step = json(&run);
    assert_eq!(
        (&step["phase_before"], &step["phase"]),
        (&"phase-2".into(), &"idle".into())
    );
    assert!(
        step["next_steps"][0].as_str().unwrap().contains("roll"),
        "{step}"
    );
    let n3 = booted(&env, "after the rotation");
    assert_eq!(n3.trust.matches("BEGIN CERTIFICATE").count(), 1);
    assert!(n1.trust.ends_with(&n3.trust), "the new CA stays");
    assert_eq!(n3.server, n2.server);
    mutual(dir, &n2, &n3);
    rejects(dir, &n1, &n3); // why phase 2's roll must finish before the old CA goes
    tools_work(&env, dir, &[&n2, &n3]);
    let settled = versions(&env);
    let run = env.ok(&["rotate", "--ca", "finish"]);
    assert!(run.stdout.contains("nothing to do"), "{}", run.stdout);
    assert_eq!(versions(&env), settled);

    // A second rotation reuses the pending key's name (soft-deleted by the first).
    let step = json(&env.ok(&["rotate", "--ca", "start", "--json"]));
    assert_eq!(step["phase"], "phase-1", "{step}");
    assert!(value(&env, PENDING).is_some_and(|k| k != pending));
    let text = env.ok(&["rotate"]).stdout;
    assert!(
        text.contains("phase 1") && text.contains("signs the certificates"),
        "{text}"
    );
}

/// `step` refused: instances created before `previous` (at `time`) are still running.
fn refused_before_roll(env: &Deploy, step: &str, previous: &str, time: &str) {
    let run = env.run(&["rotate", "--ca", step]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    for part in [
        format!(
            "`cluster-deploy rotate --ca {step}`: the roll after `cluster-deploy rotate --ca \
             {previous}` has not finished:"
        ),
        format!(
            "Run `cluster-deploy roll --config {} --created-before {time}` first",
            env.config.display()
        ),
        "scale set ".to_string(),
        "--skip-roll-check".to_string(),
        "nothing was changed".to_string(),
    ] {
        assert!(run.stderr.contains(&part), "{part}\n{}", run.stderr);
    }
    // Every instance of the deployment is named, with the time Azure created it.
    let named = run.stderr.matches(": instance ").count();
    assert!(named >= 4, "{}", run.stderr);
    assert_eq!(
        run.stderr.matches(" created ").count(),
        named,
        "{}",
        run.stderr
    );
}
