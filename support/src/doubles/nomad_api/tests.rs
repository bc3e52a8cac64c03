//! The double's answers, checked by raw HTTP against what endpoints.json documents. (Every test
//! here also passes the double's own conformance check when the double is dropped.)

use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::doubles::nomad_sim::{JobSpec, SimConfig, Simulation};
use crate::doubles::server::test_client;

struct Got {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> Got {
    let client = test_client();
    let mut request = client.request(method.parse().unwrap(), url);
    if let Some(t) = token {
        request = request.header("X-Nomad-Token", t);
    }
    if let Some(b) = body {
        request = request.body(b.to_string());
    }
    let response = request.send().expect("an answer");
    Got {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().unwrap().to_vec(),
    }
}

fn get(nomad: &NomadApiDouble, path: &str) -> Got {
    call("GET", &format!("{}{path}", nomad.url()), None, None)
}

fn cluster() -> (Simulation, NomadApiDouble) {
    let sim = Simulation::new(SimConfig::default());
    sim.start_running(&["s0", "s1", "s2"], &["c0", "c1"]);
    sim.add_job(JobSpec::service("web", 4));
    sim.advance(Duration::from_secs(5));
    let nomad = NomadApiDouble::serve(&sim);
    (sim, nomad)
}

#[test]
fn every_read_endpoint_answers_and_conforms() {
    let (sim, nomad) = cluster();
    let leader = get(&nomad, "/v1/status/leader");
    assert_eq!(
        (leader.status, leader.json()),
        (200, json!("10.0.1.10:4647"))
    );
    assert_eq!(
        get(&nomad, "/v1/status/peers")
            .json()
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let members = get(&nomad, "/v1/agent/members").json();
    assert_eq!(members["Members"][1]["Name"], "s1.global");
    assert_eq!(
        members["Members"][1]["Tags"]["id"],
        sim.view().servers[1].id
    );
    let own = get(&nomad, "/v1/agent/self").json();
    assert_eq!(own["stats"]["raft"]["state"], "Leader");
    assert_eq!(own["config"]["Version"]["Version"], "1.10.5");
    assert_eq!(get(&nomad, "/v1/agent/health").status, 200);
    let raft = get(&nomad, "/v1/operator/raft/configuration").json();
    assert_eq!(raft["Servers"].as_array().unwrap().len(), 3);
    assert!(raft["Servers"][0]["Leader"].as_bool().unwrap());
    let health = get(&nomad, "/v1/operator/autopilot/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["FailureTolerance"], 1);
    assert_eq!(
        get(&nomad, "/v1/operator/autopilot/configuration").json()["ServerStabilizationTime"],
        "10s"
    );
    let nodes = get(&nomad, "/v1/nodes");
    assert_eq!(nodes.json().as_array().unwrap().len(), 2);
    assert!(nodes.header("x-nomad-index").is_some());
    assert_eq!(nodes.header("x-nomad-knownleader"), Some("true"));
    let id = nodes.json()[0]["ID"].as_str().unwrap().to_string();
    assert_eq!(get(&nomad, &format!("/v1/node/{id}")).json()["Name"], "c0");
    let allocs = get(&nomad, &format!("/v1/node/{id}/allocations")).json();
    assert_eq!(allocs.as_array().unwrap().len(), 2);
    assert!(
        allocs[0].get("DesiredTransition").is_none(),
        "empty fields are left out"
    );
    assert_eq!(
        get(&nomad, "/v1/allocations")
            .json()
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert!(nomad.violations().is_empty(), "{:?}", nomad.violations());
}

#[test]
fn agent_urls_answer_as_that_agent() {
    let (_sim, nomad) = cluster();
    let s1 = nomad.agent_url("s1");
    let own = call("GET", &format!("{s1}/v1/agent/self"), None, None).json();
    assert_eq!(own["config"]["NodeName"], "s1");
    assert_eq!(own["stats"]["raft"]["state"], "Follower");
    assert_eq!(own["stats"]["raft"]["num_peers"], "2");
    let c0 = nomad.agent_url("c0");
    let own = call("GET", &format!("{c0}/v1/agent/self"), None, None).json();
    assert_eq!(own["member"]["Status"], "none");
    assert!(own["stats"].get("raft").is_none());
    // force-leave is a server endpoint.
    let refused = call(
        "PUT",
        &format!("{c0}/v1/agent/force-leave?node=s1.global"),
        None,
        None,
    );
    assert_eq!(
        (refused.status, refused.text().as_str()),
        (501, "Invalid method")
    );
    // A dead agent does not answer.
    nomad
        .simulation()
        .act(crate::doubles::nomad_sim::Action::Kill("s1".into()));
    assert!(test_client()
        .get(format!("{s1}/v1/agent/self"))
        .send()
        .is_err());
}

#[test]
fn wrong_methods_get_the_documented_answers() {
    let (_sim, nomad) = cluster();
    let base = nomad.url();
    let leader = call("POST", &format!("{base}/v1/status/leader"), None, None);
    assert_eq!(
        (leader.status, leader.text().as_str()),
        (405, "Invalid method")
    );
    assert_eq!(
        leader.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    let raft = call(
        "PUT",
        &format!("{base}/v1/operator/raft/configuration"),
        None,
        None,
    );
    assert_eq!((raft.status, raft.body.len()), (405, 0));
    let peer = call(
        "GET",
        &format!("{base}/v1/operator/raft/peer?id=x"),
        None,
        None,
    );
    assert_eq!((peer.status, peer.text().as_str()), (404, "Invalid method"));
    let autopilot = call(
        "POST",
        &format!("{base}/v1/operator/autopilot/configuration"),
        None,
        Some(json!({})),
    );
    assert_eq!(autopilot.status, 404);
    let health = call(
        "DELETE",
        &format!("{base}/v1/operator/autopilot/health"),
        None,
        None,
    );
    assert_eq!(health.status, 404);
    assert!(nomad.violations().is_empty(), "{:?}", nomad.violations());
}

#[test]
fn acl_tokens_are_checked_with_nomads_texts() {
    let (_sim, nomad) = cluster();
    nomad.add_token("11111111-1111-4111-8111-111111111111", &["node:read"]);
    let manager = "22222222-2222-4222-8222-222222222222";
    nomad.add_token(manager, &["management"]);
    let base = nomad.url();
    let nodes = format!("{base}/v1/nodes");
    let none = call("GET", &nodes, None, None);
    assert_eq!(
        (none.status, none.text().as_str()),
        (403, "Permission denied")
    );
    let unknown = call("GET", &nodes, Some("no-such-token"), None);
    assert_eq!(
        (unknown.status, unknown.text().as_str()),
        (403, "ACL token not found")
    );
    let reader = Some("11111111-1111-4111-8111-111111111111");
    assert_eq!(call("GET", &nodes, reader, None).status, 200);
    // node:read without namespace:read-job: the node's allocations are silently dropped.
    let id = call("GET", &nodes, reader, None).json()[0]["ID"]
        .as_str()
        .unwrap()
        .to_string();
    let allocs = call(
        "GET",
        &format!("{base}/v1/node/{id}/allocations"),
        reader,
        None,
    );
    assert_eq!((allocs.status, allocs.json()), (200, json!([])));
    let drain = call(
        "POST",
        &format!("{base}/v1/node/{id}/drain"),
        reader,
        Some(json!({ "DrainSpec": { "Deadline": 0 } })),
    );
    assert_eq!(drain.status, 403, "node:read cannot drain");
    let raft = call(
        "GET",
        &format!("{base}/v1/operator/raft/configuration"),
        reader,
        None,
    );
    assert_eq!(raft.status, 403, "management only");
    assert_eq!(
        call(
            "GET",
            &format!("{base}/v1/operator/raft/configuration"),
            Some(manager),
            None
        )
        .status,
        200
    );
    // Bearer works as X-Nomad-Token does; status and health need no token.
    let bearer = test_client()
        .get(&nodes)
        .header("Authorization", format!("Bearer {manager}"))
        .send()
        .unwrap();
    assert_eq!(bearer.status().as_u16(), 200);
    assert_eq!(
        call("GET", &format!("{base}/v1/status/leader"), None, None).status,
        200
    );
    assert_eq!(
        call("GET", &format!("{base}/v1/agent/health"), None, None).status,
        200
    );
}

#[test]
fn without_a_leader_forwarded_requests_wait_then_fail_and_stale_ones_answer() {
    let (sim, nomad) = cluster();
    sim.configure(|c| c.autopilot.cleanup_dead_servers = false);
    sim.act(crate::doubles::nomad_sim::Action::Kill("s1".into()));
    sim.act(crate::doubles::nomad_sim::Action::Kill("s2".into()));
    sim.kill_leader();
    // Nobody answers: every server is gone.
    assert!(test_client()
        .get(format!("{}/v1/status/leader", nomad.url()))
        .send()
        .is_err());
    // A cluster left with one of its three servers answers, but cannot elect a leader.
    let sim2 = Simulation::new(SimConfig::default());
    sim2.start_running(&["s0", "s1", "s2"], &[]);
    sim2.configure(|c| c.autopilot.cleanup_dead_servers = false);
    sim2.act(crate::doubles::nomad_sim::Action::Kill("s0".into()));
    sim2.act(crate::doubles::nomad_sim::Action::Kill("s1".into()));
    sim2.advance(Duration::from_secs(30));
    let nomad2 = NomadApiDouble::serve(&sim2);
    let before = sim2.now();
    let leader = get(&nomad2, "/v1/status/leader");
    assert_eq!(
        (leader.status, leader.text().as_str()),
        (500, "No cluster leader")
    );
    assert!(
        sim2.now().since(before) >= Duration::from_secs(5),
        "the request was held for the RPC hold timeout (virtual)"
    );
    let stale = get(&nomad2, "/v1/status/leader?stale");
    assert_eq!((stale.status, stale.json()), (200, json!("")));
    let health = get(&nomad2, "/v1/agent/health");
    assert_eq!(health.status, 500);
    assert_eq!(
        health.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(health.json()["server"]["ok"], false);
    assert_eq!(get(&nomad2, "/v1/nodes").status, 500);
    assert_eq!(get(&nomad2, "/v1/nodes?stale=true").status, 200);
    drop(nomad);
}

#[test]
fn a_leader_elected_during_the_hold_answers_the_request() {
    let (sim, nomad) = cluster();
    sim.kill_leader();
    let leader = get(&nomad, "/v1/status/leader");
    assert_eq!(leader.status, 200, "{}", leader.text());
    assert_ne!(leader.json(), json!("10.0.1.10:4647"));
}

#[test]
fn autopilot_health_is_429_with_the_full_body_when_unhealthy() {
    let (sim, nomad) = cluster();
    sim.act(crate::doubles::nomad_sim::Action::Kill("s2".into()));
    sim.advance(Duration::from_secs(3));
    let health = get(&nomad, "/v1/operator/autopilot/health");
    assert_eq!(health.status, 429);
    let body = health.json();
    assert_eq!(body["Healthy"], false);
    assert_eq!(body["FailureTolerance"], 0);
    let dead = body["Servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Name"] == "s2")
        .unwrap()
        .clone();
    assert_eq!(dead["Healthy"], false);
    assert_eq!(dead["Voter"], true);
}

#[test]
fn drain_and_eligibility_writes_follow_the_api() {
    let (sim, nomad) = cluster();
    let base = nomad.url();
    let id = sim.node_named("c0").unwrap().id;
    let drain = call(
        "POST",
        &format!("{base}/v1/node/{id}/drain"),
        None,
        Some(
            json!({ "DrainSpec": { "Deadline": 60_000_000_000i64, "IgnoreSystemJobs": false }, "Meta": { "message": "roll" } }),
        ),
    );
    assert_eq!(drain.status, 200, "{}", drain.text());
    assert_eq!(
        drain.header("x-nomad-index").unwrap(),
        drain.json()["Index"].to_string()
    );
    assert!(drain.header("x-nomad-knownleader").is_none());
    let node = get(&nomad, &format!("/v1/node/{id}")).json();
    assert_eq!(node["Drain"], true);
    assert_eq!(node["SchedulingEligibility"], "ineligible");
    assert_eq!(node["DrainStrategy"]["Deadline"], 60_000_000_000i64);
    assert_eq!(
        node["DrainStrategy"]["ForceDeadline"],
        "2026-01-01T00:01:05Z"
    );
    assert_eq!(node["LastDrain"]["Meta"]["message"], "roll");
    let eligible = call(
        "POST",
        &format!("{base}/v1/node/{id}/eligibility"),
        None,
        Some(json!({ "Eligibility": "eligible" })),
    );
    assert_eq!(
        (eligible.status, eligible.text().as_str()),
        (
            500,
            "can not set node's scheduling eligibility to eligible while it is draining"
        )
    );
    let bad = call(
        "POST",
        &format!("{base}/v1/node/{id}/drain"),
        None,
        Some(json!({ "DrainSpec": { "Deadline": "1h" } })),
    );
    assert_eq!(bad.status, 400, "a duration string is refused");
    let unknown = call(
        "POST",
        &format!("{base}/v1/node/00000000-0000-0000-0000-000000000000/drain"),
        None,
        Some(json!({ "DrainSpec": null })),
    );
    assert_eq!(
        (unknown.status, unknown.text().as_str()),
        (500, "node not found")
    );
    let empty = call("POST", &format!("{base}/v1/node/{id}/drain"), None, None);
    assert_eq!(empty.status, 400);
    // The string Deadline was also a request-schema violation: recorded, then cleared here.
    let violations = nomad.take_violations();
    assert!(
        violations.iter().any(|v| v.contains("request body")),
        "{violations:?}"
    );
    let missing = get(&nomad, "/v1/node/no-such-node");
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (404, "node not found")
    );
    assert!(missing.header("x-nomad-index").is_some());
}

#[test]
fn blocking_queries_wait_in_virtual_time_for_a_change() {
    let (sim, nomad) = cluster();
    let id = sim.node_named("c0").unwrap().id;
    let first = get(&nomad, &format!("/v1/node/{id}"));
    let index: u64 = first.header("x-nomad-index").unwrap().parse().unwrap();
    sim.when(
        crate::doubles::nomad_sim::Trigger::At(sim.now().plus(Duration::from_secs(20))),
        crate::doubles::nomad_sim::Action::Kill("c0".into()),
    );
    let before = sim.now();
    let next = get(&nomad, &format!("/v1/node/{id}?index={index}&wait=2m"));
    let waited = sim.now().since(before);
    assert_eq!(next.json()["Status"], "down");
    assert!(
        next.header("x-nomad-index")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > index
    );
    assert!(
        waited >= Duration::from_secs(39) && waited < Duration::from_secs(120),
        "{waited:?}"
    );
    // Nothing changes: the wait runs out.
    let index: u64 = next.header("x-nomad-index").unwrap().parse().unwrap();
    let before = sim.now();
    let same = get(&nomad, &format!("/v1/node/{id}?index={index}&wait=30s"));
    assert_eq!(same.header("x-nomad-index").unwrap(), index.to_string());
    assert_eq!(sim.now().since(before), Duration::from_secs(30));
}

#[test]
fn operator_writes_follow_the_api() {
    let (sim, nomad) = cluster();
    let base = nomad.url();
    let view = sim.view();
    let s2 = view.servers[2].id.clone();
    let by_address = call(
        "DELETE",
        &format!("{base}/v1/operator/raft/peer?address=10.0.1.12:4647"),
        None,
        None,
    );
    assert_eq!(by_address.status, 400, "1.10.1+ refuses ?address=");
    let missing = call(
        "DELETE",
        &format!("{base}/v1/operator/raft/peer?id=00000000-0000-0000-0000-000000000000"),
        None,
        None,
    );
    assert_eq!(missing.status, 500);
    assert!(missing
        .text()
        .contains("was not found in the Raft configuration"));
    let transfer = call(
        "PUT",
        &format!("{base}/v1/operator/raft/transfer-leadership?id={s2}"),
        None,
        None,
    );
    assert_eq!(transfer.status, 200, "{}", transfer.text());
    assert_eq!(transfer.json()["To"]["ID"], s2.as_str());
    assert_eq!(transfer.json()["Noop"], false);
    assert_eq!(sim.view().leader.as_deref(), Some("s2"));
    let not_uuid = call(
        "PUT",
        &format!("{base}/v1/operator/raft/transfer-leadership?id=s2"),
        None,
        None,
    );
    assert_eq!(
        (not_uuid.status, not_uuid.text().as_str()),
        (400, "id must be a uuid")
    );
    // Autopilot configuration: durations as strings, PUT replaces, ?cas.
    let config = get(&nomad, "/v1/operator/autopilot/configuration").json();
    let modify = config["ModifyIndex"].as_u64().unwrap();
    let stale_cas = call(
        "PUT",
        &format!(
            "{base}/v1/operator/autopilot/configuration?cas={}",
            modify + 1000
        ),
        None,
        Some(
            json!({ "CleanupDeadServers": true, "LastContactThreshold": "200ms", "MaxTrailingLogs": 250, "ServerStabilizationTime": "20s" }),
        ),
    );
    assert_eq!(stale_cas.json(), json!(false));
    let put = call(
        "PUT",
        &format!("{base}/v1/operator/autopilot/configuration?cas={modify}"),
        None,
        Some(
            json!({ "CleanupDeadServers": true, "LastContactThreshold": "200ms", "MaxTrailingLogs": 250, "ServerStabilizationTime": "20s" }),
        ),
    );
    assert_eq!(put.json(), json!(true));
    let config = get(&nomad, "/v1/operator/autopilot/configuration").json();
    assert_eq!(config["ServerStabilizationTime"], "20s");
    assert_eq!(config["MinQuorum"], 0, "absent fields become zero");
    let number = call(
        "PUT",
        &format!("{base}/v1/operator/autopilot/configuration"),
        None,
        Some(json!({ "ServerStabilizationTime": 10 })),
    );
    assert_eq!(number.status, 400);
    assert!(nomad
        .take_violations()
        .iter()
        .all(|v| v.contains("request body")));
}

#[test]
fn acl_bootstrap_works_once_with_the_callers_secret() {
    let (_sim, nomad) = cluster();
    let base = nomad.url();
    let off = call("POST", &format!("{base}/v1/acl/bootstrap"), None, None);
    assert_eq!(
        (off.status, off.text().as_str()),
        (400, "ACL support disabled")
    );
    nomad.enable_acls();
    let secret = "3f4a0fcd-7c42-473c-a5db-2d31ba0c05fe";
    let first = call(
        "POST",
        &format!("{base}/v1/acl/bootstrap"),
        None,
        Some(json!({ "BootstrapSecret": secret })),
    );
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["SecretID"], secret);
    assert_eq!(first.json()["Type"], "management");
    let index = first.header("x-nomad-index").unwrap().to_string();
    let again = call(
        "POST",
        &format!("{base}/v1/acl/bootstrap"),
        None,
        Some(json!({ "BootstrapSecret": secret })),
    );
    assert_eq!(again.status, 400);
    assert_eq!(
        again.text(),
        format!("ACL bootstrap already done (reset index: {index})")
    );
    // The token now works.
    assert_eq!(
        call("GET", &format!("{base}/v1/nodes"), Some(secret), None).status,
        200
    );
}

#[test]
fn the_snapshot_is_a_checked_gzip_tar_with_a_digest() {
    use std::io::Read;
    let (_sim, nomad) = cluster();
    let snap = get(&nomad, "/v1/operator/snapshot");
    assert_eq!(snap.status, 200);
    assert_eq!(
        snap.header("digest").unwrap(),
        snapshot::digest(&snap.body),
        "the digest covers the whole body"
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(snap.body.as_slice()));
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        files.insert(name, data);
    }
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["SHA256SUMS", "meta.json", "state.bin"]
    );
    let sums = String::from_utf8(files["SHA256SUMS"].clone()).unwrap();
    for name in ["meta.json", "state.bin"] {
        let line = format!("{}  {name}", crate::hash::sha256_hex(&files[name]));
        assert!(sums.contains(&line), "{sums}");
    }
    let meta: Value = serde_json::from_slice(&files["meta.json"]).unwrap();
    assert!(meta["Index"].as_u64().unwrap() >= 1000);
    nomad.set_snapshot_fault(Some(SnapshotFault::DigestMismatch));
    let bad = get(&nomad, "/v1/operator/snapshot");
    assert_ne!(bad.header("digest").unwrap(), snapshot::digest(&bad.body));
}

#[test]
fn non_conforming_requests_are_recorded() {
    let (_sim, nomad) = cluster();
    get(&nomad, "/v1/agent/members?stale=true");
    get(&nomad, "/v1/no/such/endpoint");
    let violations = nomad.take_violations();
    assert_eq!(violations.len(), 2, "{violations:?}");
    assert!(violations[0].contains("query parameter \"stale\""));
    assert!(violations[1].contains("not an endpoint"));
}

#[test]
fn hand_set_clusters_still_serve_status() {
    let nomad = NomadApiDouble::start();
    nomad.require_token("t0k");
    nomad.set_servers(vec![
        Member::server("s1.global", "10.0.0.4"),
        Member {
            status: "failed".to_string(),
            ..Member::server("s2.global", "10.0.0.5")
        },
    ]);
    nomad.set_leader(Some("10.0.0.4:4647"));
    nomad.set_nodes(vec![NodeStub::ready("c1", "dc1")]);
    let base = nomad.url();
    let leader = call(
        "GET",
        &format!("{base}/v1/status/leader"),
        Some("t0k"),
        None,
    );
    assert_eq!(leader.json(), json!("10.0.0.4:4647"));
    let members = call(
        "GET",
        &format!("{base}/v1/agent/members"),
        Some("t0k"),
        None,
    )
    .json();
    assert_eq!(members["Members"][1]["Status"], "failed");
    let nodes = call("GET", &format!("{base}/v1/nodes"), Some("t0k"), None).json();
    assert_eq!(nodes[0]["Status"], "ready");
    assert_eq!(
        call("GET", &format!("{base}/v1/nodes"), None, None).status,
        403
    );
    nomad.set_leader(None);
    let none = call("GET", &format!("{base}/v1/status/leader"), None, None);
    assert_eq!(
        (none.status, none.text().as_str()),
        (500, "No cluster leader")
    );
}

fn tls_client(
    ca: &crate::doubles::tls::TestCa,
    identity: Option<&crate::doubles::tls::IssuedCert>,
) -> reqwest::blocking::Client {
    let mut builder = reqwest::blocking::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap());
    if let Some(id) = identity {
        let pem = format!("{}{}", id.cert_pem, id.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

#[test]
fn https_with_and_without_client_certificates() {
    use crate::doubles::tls::TestCa;
    let ca = TestCa::new("nomad-agent-ca");
    let server = ca.server_cert(&["server.global.nomad", "localhost", "127.0.0.1"]);
    let sim = Simulation::new(SimConfig::default());
    sim.start_running(&["s0"], &[]);
    // One-way TLS: any client trusting the CA gets in.
    let nomad = NomadApiDouble::serve_tls(&sim, server.server_config(None));
    assert!(nomad.url().starts_with("https://127.0.0.1:"));
    let url = format!("{}/v1/status/leader", nomad.url());
    let got = tls_client(&ca, None).get(&url).send().unwrap();
    assert_eq!(got.status().as_u16(), 200);
    // A client that does not trust the CA is refused by itself.
    let other = TestCa::new("someone-else");
    assert!(tls_client(&other, None).get(&url).send().is_err());
    // Mutual TLS: no certificate, no answer; a certificate from the CA, an answer.
    let mtls = NomadApiDouble::serve_tls(&sim, server.server_config(Some(&ca)));
    let url = format!("{}/v1/status/leader", mtls.url());
    assert!(tls_client(&ca, None).get(&url).send().is_err());
    let stranger = other.client_cert("cli");
    assert!(tls_client(&ca, Some(&stranger)).get(&url).send().is_err());
    let cli = ca.client_cert("global-cli-nomad");
    let got = tls_client(&ca, Some(&cli)).get(&url).send().unwrap();
    assert_eq!(got.status().as_u16(), 200);
}

#[test]
fn a_pending_certificate_refuses_handshakes_until_it_is_presented() {
    use crate::doubles::tls::{PendingCertificate, TestCa};
    let ca = TestCa::new("nomad-agent-ca");
    let sim = Simulation::new(SimConfig::default());
    sim.start_running(&["s0"], &[]);
    let pending = PendingCertificate::new();
    let nomad = NomadApiDouble::serve_tls(&sim, pending.server_config());
    let url = format!("{}/v1/status/leader", nomad.url());
    assert!(tls_client(&ca, None).get(&url).send().is_err());
    let server = ca.server_cert(&["server.global.nomad", "localhost", "127.0.0.1"]);
    pending.present(&server.cert_pem, &server.key_pem);
    let got = tls_client(&ca, None).get(&url).send().unwrap();
    assert_eq!(got.status().as_u16(), 200);
}
