//! The Key Vault client against the Key Vault double (and the identity doubles that issue its
//! tokens): versions, the 401 challenge, 403 while a role assignment propagates, the deadline,
//! per-principal access, soft delete, recovery, purge, paging and faults.
#![cfg(feature = "doubles")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::doubles::imds::{self, ImdsDouble};
use support::doubles::keyvault::{KeyVaultDouble, KeyVaultRole, KvFault, Origin, Scope};
use support::doubles::server::{Reply, Server};
use support::doubles::tokens::Claims;
use support::keyvault::{KeyVaultClient, KeyVaultError, Options, TokenSource, API_VERSION};
use support::managed_identity::ImdsTokens;
use support::secret::Secret;

const TENANT: &str = support::doubles::arm::TENANT;
const OPERATOR: &str = "00000000-0000-0000-0000-00000000aaaa";
const SERVERS: &str = "00000000-0000-0000-0000-00000000bbbb";
const CLIENTS: &str = "00000000-0000-0000-0000-00000000cccc";

fn quick(deadline_ms: u64) -> Options {
    Options {
        deadline: Duration::from_millis(deadline_ms),
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        ..Options::default()
    }
}

/// Tokens for `principal` and the Key Vault audience.
fn tokens_for(principal: &str) -> Arc<dyn TokenSource> {
    let principal = principal.to_string();
    Arc::new(move || {
        Ok(Secret::new(
            Claims::new(support::keyvault::RESOURCE, &principal, TENANT).issue(),
        ))
    })
}

fn client(kv: &KeyVaultDouble, principal: &str, options: Options) -> KeyVaultClient {
    KeyVaultClient::new(kv.url(), tokens_for(principal), options).unwrap()
}

fn secret(v: &str) -> Secret {
    Secret::new(v.to_string())
}

fn statuses(kv: &KeyVaultDouble) -> Vec<u16> {
    kv.served().iter().map(|s| s.status).collect()
}

#[test]
fn versions_are_kept_and_read_back_latest_or_by_id() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    let c = client(&kv, OPERATOR, quick(2000));
    let first = c
        .set_secret("nomad-gossip-key", &secret("one"), Some("text/plain"))
        .unwrap();
    let second = c
        .set_secret("nomad-gossip-key", &secret("two"), None)
        .unwrap();
    assert_eq!(first.name, "nomad-gossip-key");
    assert_eq!(first.version.len(), 32, "{first:?}");
    assert_ne!(first.version, second.version);
    assert_eq!(
        first.recovery_level.as_deref(),
        Some("Recoverable+Purgeable")
    );

    let latest = c.get_secret("nomad-gossip-key", None).unwrap();
    assert_eq!(latest.value.expose(), "two");
    assert_eq!(latest.properties.version, second.version);
    let old = c
        .get_secret("nomad-gossip-key", Some(&first.version))
        .unwrap();
    assert_eq!(old.value.expose(), "one");
    assert_eq!(old.properties.content_type.as_deref(), Some("text/plain"));

    let versions = c.secret_versions("nomad-gossip-key").unwrap();
    let ids: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(ids, [first.version.as_str(), second.version.as_str()]);
    let all = c.secrets().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name, "nomad-gossip-key");

    let missing = c.get_secret("nomad-ca-key", None).unwrap_err();
    assert!(missing.is_not_found(), "{missing}");
    let text = missing.to_string();
    assert!(
        text.contains(kv.url()) && text.contains("nomad-ca-key") && text.contains("404"),
        "{text}"
    );

    // Every request was a secrets.json operation at 7.6 (the double's drop also checks it).
    let used = kv.operations_used();
    for op in ["SetSecret", "GetSecret", "GetSecretVersions", "GetSecrets"] {
        assert!(
            used.contains(&(op.to_string(), API_VERSION.to_string())),
            "{op}: {used:?}"
        );
    }
    // The latest version is asked for with an empty `secret-version` segment.
    assert!(kv
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path == "/secrets/nomad-gossip-key/"));
}

#[test]
fn a_401_challenge_gets_a_fresh_token_once() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    // The first token has expired (as a cached one may have); the fresh one is valid.
    struct Expiring {
        calls: AtomicUsize,
        invalidated: AtomicUsize,
    }
    impl TokenSource for Expiring {
        fn token(&self) -> Result<Secret, Box<dyn std::error::Error + Send + Sync>> {
            let mut claims = Claims::new(support::keyvault::RESOURCE, OPERATOR, TENANT);
            if self.invalidated.load(Ordering::SeqCst) == 0 {
                claims.expires_at = 1;
            }
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(Secret::new(claims.issue()))
        }
        fn invalidate(&self) {
            self.invalidated.fetch_add(1, Ordering::SeqCst);
        }
    }
    let tokens = Arc::new(Expiring {
        calls: AtomicUsize::new(0),
        invalidated: AtomicUsize::new(0),
    });
    let c = KeyVaultClient::new(kv.url(), tokens.clone(), quick(2000)).unwrap();
    c.set_secret("nomad-ca-cert", &secret("pem"), None).unwrap();
    assert_eq!(tokens.invalidated.load(Ordering::SeqCst), 1);
    assert_eq!(statuses(&kv), [401, 200]);
    let first = &kv.requests()[0];
    assert!(first.header("authorization").is_some());

    // A token for another audience is refused with AKV10022, again after a fresh one: an error
    // that names the vault, the operation and the secret.
    let arm_tokens: Arc<dyn TokenSource> = Arc::new(|| {
        Ok(Secret::new(
            Claims::new("https://management.azure.com/", OPERATOR, TENANT).issue(),
        ))
    });
    let wrong = KeyVaultClient::new(kv.url(), arm_tokens, quick(2000)).unwrap();
    let e = wrong.get_secret("nomad-ca-cert", None).unwrap_err();
    let text = e.to_string();
    assert_eq!(e.status(), Some(401), "{text}");
    for part in [kv.url(), "GetSecret", "nomad-ca-cert", "AKV10022"] {
        assert!(text.contains(part), "{part} not in {text}");
    }
}

#[test]
fn the_challenge_of_another_cloud_is_an_error_not_a_retry() {
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let server = Server::start(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        Reply::json(401, &serde_json::json!({"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}}))
            .header("WWW-Authenticate", r#"Bearer authorization="https://login.chinacloudapi.cn/t", resource="https://vault.azure.cn""#)
    });
    let c = KeyVaultClient::new(server.url(), tokens_for(OPERATOR), quick(2000)).unwrap();
    let e = c.get_secret("x", None).unwrap_err();
    assert!(matches!(e, KeyVaultError::Challenge { .. }), "{e}");
    assert!(e.to_string().contains("https://vault.azure.cn"), "{e}");
    assert_eq!(served.load(Ordering::SeqCst), 1);
}

#[test]
fn a_403_while_the_role_assignment_propagates_is_retried_within_the_deadline() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.set_propagation_requests(3);
    kv.assign(SERVERS, Scope::Vault, KeyVaultRole::SecretsUser);
    kv.store()
        .lock()
        .unwrap()
        .put("nomad-server-key", "key pem");
    let c = client(&kv, SERVERS, quick(5000));
    let got = c.get_secret("nomad-server-key", None).unwrap();
    assert_eq!(got.value.expose(), "key pem");
    assert_eq!(statuses(&kv), [403, 403, 403, 200]);
    let refusal = kv.served()[0].clone();
    assert_eq!(refusal.caller.as_deref(), Some(SERVERS));
}

#[test]
fn a_deadline_that_passes_while_forbidden_fails_clearly() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    let c = client(&kv, SERVERS, quick(300));
    let started = std::time::Instant::now();
    let e = c.get_secret("nomad-server-key", None).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.is_forbidden_by_rbac(), "{e}");
    assert!(matches!(e, KeyVaultError::GaveUp { .. }), "{e}");
    let text = e.to_string();
    for part in [
        "gave up after",
        "deadline",
        kv.url(),
        "GetSecret",
        "nomad-server-key",
        "403",
        "ForbiddenByRbac",
        "propagation time",
    ] {
        assert!(text.contains(part), "{part} not in {text}");
    }
    assert!(kv.served().len() > 1, "the 403 was retried");
}

#[test]
fn each_principal_reads_only_what_its_assignments_cover() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    for name in ["nomad-server-key", "nomad-ca-cert"] {
        kv.assign(
            SERVERS,
            Scope::Secret(name.into()),
            KeyVaultRole::SecretsUser,
        );
    }
    for name in ["nomad-client-key", "nomad-ca-cert"] {
        kv.assign(
            CLIENTS,
            Scope::Secret(name.into()),
            KeyVaultRole::SecretsUser,
        );
    }
    let operator = client(&kv, OPERATOR, quick(2000));
    for name in ["nomad-server-key", "nomad-client-key", "nomad-ca-cert"] {
        operator.set_secret(name, &secret(name), None).unwrap();
    }
    let servers = client(&kv, SERVERS, quick(100));
    let clients = client(&kv, CLIENTS, quick(100));
    assert_eq!(
        servers
            .get_secret("nomad-server-key", None)
            .unwrap()
            .value
            .expose(),
        "nomad-server-key"
    );
    assert_eq!(
        clients
            .get_secret("nomad-client-key", None)
            .unwrap()
            .value
            .expose(),
        "nomad-client-key"
    );
    assert!(servers.get_secret("nomad-ca-cert", None).is_ok());
    assert!(clients.get_secret("nomad-ca-cert", None).is_ok());
    assert!(clients
        .get_secret("nomad-server-key", None)
        .unwrap_err()
        .is_forbidden_by_rbac());
    assert!(servers
        .get_secret("nomad-client-key", None)
        .unwrap_err()
        .is_forbidden_by_rbac());
    // Readers cannot write, list the vault, or delete.
    assert!(servers
        .set_secret("nomad-server-key", &secret("evil"), None)
        .unwrap_err()
        .is_forbidden_by_rbac());
    assert!(servers.secrets().unwrap_err().is_forbidden_by_rbac());
    assert!(servers
        .delete_secret("nomad-server-key")
        .unwrap_err()
        .is_forbidden_by_rbac());
    assert_eq!(
        kv.secret_value("nomad-server-key").as_deref(),
        Some("nomad-server-key")
    );
}

#[test]
fn soft_deleted_secrets_block_their_name_until_recovered_or_purged() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.set_settling_requests(2);
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    let c = client(&kv, OPERATOR, quick(3000));
    c.set_secret("nomad-acl-bootstrap-token", &secret("t1"), None)
        .unwrap();
    let deleted = c.delete_secret("nomad-acl-bootstrap-token").unwrap();
    assert!(deleted
        .recovery_id
        .as_deref()
        .is_some_and(|r| r.ends_with("/deletedsecrets/nomad-acl-bootstrap-token")));
    assert!(deleted.scheduled_purge_date > deleted.deleted_date);
    // The deletion settled in the background: the client waited through 404s.
    let waits = kv
        .served()
        .iter()
        .filter(|s| s.request.path.starts_with("/deletedsecrets/") && s.status == 404)
        .count();
    assert_eq!(waits, 2);

    assert!(c
        .get_secret("nomad-acl-bootstrap-token", None)
        .unwrap_err()
        .is_not_found());
    let conflict = c
        .set_secret("nomad-acl-bootstrap-token", &secret("t2"), None)
        .unwrap_err();
    assert!(conflict.is_deleted_but_recoverable(), "{conflict}");
    assert!(
        conflict.to_string().contains("deleted but recoverable"),
        "{conflict}"
    );

    c.recover_deleted_secret("nomad-acl-bootstrap-token")
        .unwrap();
    assert_eq!(
        c.get_secret("nomad-acl-bootstrap-token", None)
            .unwrap()
            .value
            .expose(),
        "t1"
    );

    c.delete_secret("nomad-acl-bootstrap-token").unwrap();
    c.purge_deleted_secret("nomad-acl-bootstrap-token").unwrap();
    assert!(c
        .get_deleted_secret("nomad-acl-bootstrap-token")
        .unwrap_err()
        .is_not_found());
    c.set_secret("nomad-acl-bootstrap-token", &secret("t3"), None)
        .unwrap();
    assert_eq!(
        c.secret_versions("nomad-acl-bootstrap-token")
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn purge_protection_refuses_the_purge() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.set_purge_protection(true);
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    let c = client(&kv, OPERATOR, quick(2000));
    let props = c.set_secret("nomad-ca-key", &secret("k"), None).unwrap();
    assert_eq!(props.recovery_level.as_deref(), Some("Recoverable"));
    c.delete_secret("nomad-ca-key").unwrap();
    let e = c.purge_deleted_secret("nomad-ca-key").unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert!(e.to_string().contains("purge protection is enabled"), "{e}");
    assert!(!e.is_forbidden_by_rbac());
    c.recover_deleted_secret("nomad-ca-key").unwrap();
}

#[test]
fn throttling_server_errors_and_dropped_connections_are_retried() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    kv.inject(
        None,
        KvFault::Throttle {
            retry_after_secs: 0,
        },
    );
    kv.inject(None, KvFault::ServerError(503));
    kv.inject(None, KvFault::DropConnection);
    let c = client(&kv, OPERATOR, quick(5000));
    c.set_secret("nomad-cli-key", &secret("k"), None).unwrap();
    assert_eq!(statuses(&kv), [429, 503, 0, 200]);
}

#[test]
fn the_firewall_refusal_is_not_retried_by_default() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    kv.set_network_rules(
        serde_json::json!({ "defaultAction": "Deny", "ipRules": [{ "value": "198.51.100.7/32" }] }),
        "Enabled",
    );
    kv.set_origin(
        OPERATOR,
        Origin {
            address: "203.0.113.9".parse().unwrap(),
            subnet: None,
        },
    );
    let c = client(&kv, OPERATOR, quick(2000));
    let e = c
        .set_secret("nomad-ca-cert", &secret("x"), None)
        .unwrap_err();
    assert_eq!(e.status(), Some(403));
    assert!(e.to_string().contains("ForbiddenByFirewall"), "{e}");
    assert_eq!(kv.served().len(), 1);
    kv.set_origin(
        OPERATOR,
        Origin {
            address: "198.51.100.7".parse().unwrap(),
            subnet: None,
        },
    );
    c.set_secret("nomad-ca-cert", &secret("x"), None).unwrap();
}

#[test]
fn the_firewall_refusal_is_retried_within_the_deadline_when_asked() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    kv.set_network_rules(
        serde_json::json!({ "defaultAction": "Deny", "ipRules": [{ "value": "198.51.100.7/32" }] }),
        "Enabled",
    );
    kv.set_origin(
        OPERATOR,
        Origin {
            address: "203.0.113.9".parse().unwrap(),
            subnet: None,
        },
    );
    let options = Options {
        retry_forbidden_by_firewall: true,
        ..quick(300)
    };
    // Never admitted: every try refused, then the deadline.
    let c = client(&kv, OPERATOR, options.clone());
    let e = c.get_secret("nomad-ca-cert", None).unwrap_err();
    assert!(matches!(e, KeyVaultError::GaveUp { .. }), "{e}");
    assert!(e.to_string().contains("ForbiddenByFirewall"), "{e}");
    assert!(kv.served().len() > 1, "retried");
    // Admitted while it waits: the rule arrives after three refusals.
    let before = kv.served().len();
    let c = client(
        &kv,
        OPERATOR,
        Options {
            deadline: Duration::from_secs(20),
            ..options
        },
    );
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while kv.served().len() < before + 3 {
                std::thread::sleep(Duration::from_millis(1));
            }
            kv.set_network_rules(
                serde_json::json!({ "defaultAction": "Deny", "ipRules": [{ "value": "203.0.113.9/32" }] }),
                "Enabled",
            );
        });
        let e = c.get_secret("nomad-ca-cert", None).unwrap_err();
        // Through the firewall: the secret is simply not there.
        assert!(e.is_not_found(), "{e}");
    });
    assert!(
        kv.served()[before..]
            .iter()
            .filter(|s| s.status == 403)
            .count()
            >= 3
    );
}

#[test]
fn values_never_reach_errors_or_debug_output() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    let c = client(&kv, SERVERS, quick(100));
    let value = "s3cr3t-gossip-value";
    let e = c
        .set_secret("nomad-gossip-key", &secret(value), None)
        .unwrap_err();
    assert!(!e.to_string().contains(value) && !format!("{e:?}").contains(value));
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    let c = client(&kv, OPERATOR, quick(2000));
    c.set_secret("nomad-gossip-key", &secret(value), None)
        .unwrap();
    let got = c.get_secret("nomad-gossip-key", None).unwrap();
    assert!(!format!("{got:?}").contains(value));
    assert!(!format!("{c:?}").contains(value));
    let too_big = Secret::new("x".repeat(support::keyvault::MAX_SECRET_BYTES + 1));
    let e = c
        .set_secret("nomad-gossip-key", &too_big, None)
        .unwrap_err();
    assert!(matches!(e, KeyVaultError::TooLarge { .. }), "{e}");
}

#[test]
fn listings_follow_next_link_across_pages() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
    {
        let store = kv.store();
        let mut store = store.lock().unwrap();
        for i in 0..30 {
            store.put(&format!("s{i:02}"), "v");
        }
        for _ in 0..27 {
            store.put("many", "v");
        }
    }
    let c = client(&kv, OPERATOR, quick(2000));
    assert_eq!(c.secrets().unwrap().len(), 31);
    assert_eq!(c.secret_versions("many").unwrap().len(), 27);
    assert!(kv
        .requests()
        .iter()
        .any(|r| r.query_param("$skiptoken") == Some("25")));
}

#[test]
fn a_vm_reads_with_its_managed_identity_token_from_imds() {
    let imds = ImdsDouble::start(imds::fixture("instance.json"));
    imds.set_identity_principal(SERVERS);
    imds.script([
        imds::Reply::Status(404),
        imds::Reply::Throttled {
            retry_after_secs: 0,
        },
    ]);
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.assign(
        SERVERS,
        Scope::Secret("nomad-gossip-key".into()),
        KeyVaultRole::SecretsUser,
    );
    kv.store().lock().unwrap().put("nomad-gossip-key", "gossip");
    let tokens = ImdsTokens::new(
        imds.url(),
        support::keyvault::RESOURCE,
        None,
        Duration::from_secs(5),
    )
    .unwrap()
    .with_delays(Duration::from_millis(1), Duration::from_millis(5));
    let c = KeyVaultClient::new(kv.url(), Arc::new(tokens), quick(2000)).unwrap();
    assert_eq!(
        c.get_secret("nomad-gossip-key", None)
            .unwrap()
            .value
            .expose(),
        "gossip"
    );
    let asked = imds.requests();
    assert_eq!(asked.len(), 3, "404 and 429 were retried");
    let last = asked.last().unwrap();
    assert_eq!(last.path, "/metadata/identity/oauth2/token");
    assert_eq!(
        last.query_param("resource"),
        Some("https://vault.azure.net")
    );
    assert_eq!(last.query_param("api-version"), Some("2018-02-01"));
    assert_eq!(last.header("metadata"), Some("true"));
    // The token named the VM's identity; a second read uses the cached token.
    c.get_secret("nomad-gossip-key", None).unwrap();
    assert_eq!(imds.requests().len(), 3);
    assert!(kv
        .served()
        .iter()
        .all(|s| s.caller.as_deref() == Some(SERVERS)));
}

#[test]
fn the_login_double_issues_key_vault_tokens_for_the_caller() {
    use support::doubles::arm::{LoginDouble, CALLER_OBJECT_ID};
    let login = LoginDouble::start("app-id", "app-secret", "arm-token".into());
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let token = |scope: &str| -> String {
        let answer: serde_json::Value = http
            .post(format!("{}/{TENANT}/oauth2/v2.0/token", login.url()))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "app-id"),
                ("client_secret", "app-secret"),
                ("scope", scope),
            ])
            .send()
            .unwrap()
            .json()
            .unwrap();
        answer["access_token"].as_str().unwrap().to_string()
    };
    assert_eq!(token("https://management.azure.com/.default"), "arm-token");
    let vault_token = token(support::keyvault::SCOPE);
    let claims = Claims::read(&vault_token).unwrap();
    assert_eq!(claims.object_id, CALLER_OBJECT_ID);
    assert_eq!(claims.audience, "https://vault.azure.net");
    assert_eq!(claims.app_id, "app-id");

    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.assign(CALLER_OBJECT_ID, Scope::Vault, KeyVaultRole::SecretsOfficer);
    let fixed: Arc<dyn TokenSource> = Arc::new(move || Ok(Secret::new(vault_token.clone())));
    let c = KeyVaultClient::new(kv.url(), fixed, quick(2000)).unwrap();
    c.set_secret("nomad-ca-cert", &secret("pem"), None).unwrap();
}
