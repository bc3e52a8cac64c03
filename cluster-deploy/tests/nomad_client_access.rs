//! How the Nomad API client reaches and authenticates to the Nomad API double: ACL bootstrap
//! with the caller's secret (twice), ACL tokens sent and never shown; settings from the Nomad
//! CLI's variables, TLS with a test CA and a TLS server name, mutual TLS; the region only on
//! the endpoints that take it; transport failures retried within the policy, and errors that
//! name the URL. (The double checks every exchange against `../shared/nomad-api` and fails a
//! test when one does not conform; the shared set-up: tests/common/nomad.rs.)

mod common;

use std::collections::BTreeMap;

use cluster_deploy::auth::Secret;
use cluster_deploy::nomad::{BootstrapOutcome, NomadClient, NomadError, NomadSettings};
use support::doubles::nomad_api::NomadApiDouble;
use support::doubles::nomad_sim::{SimConfig, Simulation};
use support::doubles::tls::TestCa;

use common::nomad::{client, cluster, quick, settings};

const MANAGEMENT: &str = "5f0c2b4e-7d0f-4b8e-9d36-1c2b3a4d5e6f";

#[test]
fn acl_bootstrap_is_idempotent_with_the_callers_secret() {
    let (_sim, nomad) = cluster();
    nomad.enable_acls();
    let nomad_client = client(&nomad);
    let secret = Secret::new("0f6b54a7-3d1c-4c8e-8a6f-2b1d9e7c5a40".to_string());
    match nomad_client.acl_bootstrap(&secret).unwrap() {
        BootstrapOutcome::Bootstrapped(token) => {
            assert_eq!(token.secret_id, secret);
            assert_eq!(token.kind, "management");
            assert!(!format!("{token:?}").contains(secret.expose()));
        }
        other => panic!("{other:?}"),
    }
    let again = nomad_client.acl_bootstrap(&secret).unwrap();
    assert!(
        matches!(again, BootstrapOutcome::AlreadyDone { reset_index: Some(i) } if i > 0),
        "{again:?}"
    );
    let err = nomad_client
        .acl_bootstrap(&Secret::new("not-a-uuid".to_string()))
        .unwrap_err();
    assert!(matches!(err, NomadError::Refused { .. }));
    // The secret is the management token now.
    let mut with_token = settings(nomad.url());
    with_token.token = Some(secret);
    let managed = NomadClient::with_settings(with_token).unwrap();
    assert_eq!(managed.raft_configuration().unwrap().servers.len(), 3);
}

#[test]
fn acl_tokens_are_sent_and_never_shown() {
    let (_sim, nomad) = cluster();
    nomad.add_token(MANAGEMENT, &["management"]);
    nomad.add_token("6a1e5d2c-0b9f-4e7a-8c3d-4f5e6a7b8c9d", &["node:read"]);
    let anonymous = client(&nomad);
    let err = anonymous.nodes().unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(err.to_string().ends_with("403: Permission denied"), "{err}");
    let mut wrong = settings(nomad.url());
    wrong.token = Some(Secret::new(
        "9d1f2e3c-aaaa-4bbb-8ccc-ddddeeeeffff".to_string(),
    ));
    let err = NomadClient::with_settings(wrong)
        .unwrap()
        .nodes()
        .unwrap_err();
    assert!(err.to_string().ends_with("ACL token not found"), "{err}");
    assert!(!err.to_string().contains("9d1f2e3c"), "{err}");

    let mut reader = settings(nomad.url());
    reader.token = Some(Secret::new(
        "6a1e5d2c-0b9f-4e7a-8c3d-4f5e6a7b8c9d".to_string(),
    ));
    let reader = NomadClient::with_settings(reader).unwrap();
    assert_eq!(reader.nodes().unwrap().len(), 3);
    let err = reader.raft_configuration().unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert!(!format!("{reader:?}").contains("6a1e5d2c"));

    let mut manager = settings(nomad.url());
    manager.token = Some(Secret::new(MANAGEMENT.to_string()));
    let manager = NomadClient::with_settings(manager).unwrap();
    manager.raft_configuration().unwrap();
    let sent: Vec<_> = nomad
        .requests()
        .into_iter()
        .filter_map(|r| r.header("x-nomad-token").map(str::to_string))
        .collect();
    assert!(sent.contains(&MANAGEMENT.to_string()));
    assert!(nomad
        .requests()
        .iter()
        .all(|r| !r.path.contains(MANAGEMENT) && r.query.iter().all(|(_, v)| v != MANAGEMENT)));
}

#[test]
fn settings_from_the_nomad_cli_variables_reach_a_tls_cluster() {
    let ca = TestCa::new("nomad-agent-ca");
    // Like `nomad tls cert create -server`: the region's server name, not 127.0.0.1.
    let server = ca.server_cert(&["server.global.nomad"]);
    let sim = Simulation::new(SimConfig::default());
    sim.start_running(&["s0", "s1", "s2"], &["c0"]);
    let nomad = NomadApiDouble::serve_tls(&sim, server.server_config(None));
    nomad.add_token(MANAGEMENT, &["management"]);
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_cert(dir.path(), "nomad-agent-ca.pem");
    let env = |extra: &[(&str, String)]| {
        let mut vars = BTreeMap::from([
            ("NOMAD_ADDR".to_string(), nomad.url().to_string()),
            ("NOMAD_TOKEN".to_string(), MANAGEMENT.to_string()),
            ("NOMAD_CACERT".to_string(), ca_file.display().to_string()),
        ]);
        for (k, v) in extra {
            vars.insert(k.to_string(), v.clone());
        }
        let mut s = NomadSettings::from_vars(|name| vars.get(name).cloned()).unwrap();
        s.timeouts.read_retries = quick("read");
        s
    };
    // The certificate does not name 127.0.0.1: verification fails without the server name.
    let err = NomadClient::with_settings(env(&[]))
        .unwrap()
        .leader()
        .unwrap_err();
    assert!(
        matches!(
            err,
            NomadError::Transport { .. } | NomadError::GaveUp { .. }
        ),
        "{err}"
    );
    let tls = NomadClient::with_settings(env(&[(
        "NOMAD_TLS_SERVER_NAME",
        "server.global.nomad".to_string(),
    )]))
    .unwrap();
    assert_eq!(tls.leader().unwrap().as_deref(), Some("10.0.1.10:4647"));
    assert_eq!(tls.raft_configuration().unwrap().servers.len(), 3);
    // Only the given CA is trusted.
    let other = TestCa::new("other-ca");
    let other_file = other.write_cert(dir.path(), "other-ca.pem");
    let err = NomadClient::with_settings(env(&[
        ("NOMAD_TLS_SERVER_NAME", "server.global.nomad".to_string()),
        ("NOMAD_CACERT", other_file.display().to_string()),
    ]))
    .unwrap()
    .leader()
    .unwrap_err();
    assert!(!matches!(err, NomadError::Status { .. }), "{err}");
    // NOMAD_CAPATH: a directory of CA files.
    let ca_dir = dir.path().join("cas");
    std::fs::create_dir(&ca_dir).unwrap();
    ca.write_cert(&ca_dir, "ca.pem");
    let mut by_dir = env(&[("NOMAD_TLS_SERVER_NAME", "server.global.nomad".to_string())]);
    by_dir.tls.ca_cert = None;
    by_dir.tls.ca_path = Some(ca_dir);
    assert!(NomadClient::with_settings(by_dir).unwrap().leader().is_ok());
}

#[test]
fn mutual_tls_needs_a_client_certificate_from_the_ca() {
    let ca = TestCa::new("nomad-agent-ca");
    let server = ca.server_cert(&["server.global.nomad", "127.0.0.1"]);
    let sim = Simulation::new(SimConfig::default());
    sim.start_running(&["s0"], &[]);
    let nomad = NomadApiDouble::serve_tls(&sim, server.server_config(Some(&ca)));
    let dir = tempfile::tempdir().unwrap();
    let tls_settings = || {
        let mut s = settings(nomad.url());
        s.tls.ca_cert = Some(ca.write_cert(dir.path(), "ca.pem"));
        s
    };
    let err = NomadClient::with_settings(tls_settings())
        .unwrap()
        .leader()
        .unwrap_err();
    assert!(
        !matches!(err, NomadError::Status { .. }),
        "no certificate, no answer: {err}"
    );
    let stranger = TestCa::new("stranger").client_cert("cli");
    let (cert, key) = stranger.write(dir.path(), "stranger");
    let mut s = tls_settings();
    s.tls.client_cert = Some(cert);
    s.tls.client_key = Some(key);
    assert!(NomadClient::with_settings(s).unwrap().leader().is_err());
    let cli = ca.client_cert("global-cli-nomad");
    let (cert, key) = cli.write(dir.path(), "cli");
    let mut s = tls_settings();
    s.tls.client_cert = Some(cert);
    s.tls.client_key = Some(key.clone());
    let mtls = NomadClient::with_settings(s).unwrap();
    assert_eq!(mtls.leader().unwrap().as_deref(), Some("10.0.1.10:4647"));
    // A key that is not PEM is named.
    std::fs::write(&key, "not a key").unwrap();
    let mut s = tls_settings();
    s.tls.client_cert = Some(dir.path().join("cli.pem"));
    s.tls.client_key = Some(key);
    let err = NomadClient::with_settings(s).unwrap_err().to_string();
    assert!(err.contains("NOMAD_CLIENT_KEY"), "{err}");
}

#[test]
fn the_region_goes_only_to_endpoints_that_take_it() {
    let (sim, nomad) = cluster();
    let mut s = settings(nomad.url());
    s.region = Some("global".to_string());
    let nomad_client = NomadClient::with_settings(s).unwrap();
    nomad_client.health().unwrap();
    nomad_client.agent_self().unwrap();
    nomad_client.agent_health().unwrap();
    nomad_client.raft_configuration().unwrap();
    nomad_client.autopilot_health().unwrap();
    let c0 = sim.node_named("c0").unwrap().id;
    nomad_client.node_allocations(&c0).unwrap();
    nomad_client.set_eligibility(&c0, false).unwrap();
    let s1 = sim.view().servers[1].id.clone();
    nomad_client.transfer_leadership(&s1).unwrap();
    let with_region: Vec<String> = nomad
        .requests()
        .iter()
        .filter(|r| r.query_param("region") == Some("global"))
        .map(|r| r.path.clone())
        .collect();
    assert!(with_region.contains(&"/v1/status/leader".to_string()));
    assert!(with_region.contains(&format!("/v1/node/{c0}/eligibility")));
    for path in [
        "/v1/agent/members",
        "/v1/agent/self",
        "/v1/agent/health",
        "/v1/operator/raft/transfer-leadership",
    ] {
        assert!(!with_region.iter().any(|p| p == path), "{path}");
    }
    // (The double fails this test on drop if a parameter went where endpoints.json does not
    // list it.)
    assert!(nomad.violations().is_empty(), "{:?}", nomad.violations());
}

#[test]
fn transport_failures_are_retried_within_the_policy() {
    let (_sim, nomad) = cluster();
    let nomad_client = client(&nomad);
    nomad.drop_next_requests(2);
    assert_eq!(
        nomad_client.nodes().unwrap().len(),
        3,
        "third attempt answers"
    );
    nomad.drop_next_requests(5);
    let err = nomad_client.peers().unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("gave up after 3 attempts"), "{text}");
    assert!(
        text.contains(&format!("GET {}/v1/status/peers", nomad.url())),
        "{text}"
    );
    nomad.drop_next_requests(0);
    // A refused write is not retried.
    let before = nomad.requests().len();
    assert!(nomad_client
        .set_eligibility("00000000-0000-0000-0000-000000000000", true)
        .is_err());
    assert_eq!(nomad.requests().len(), before + 1);
}
