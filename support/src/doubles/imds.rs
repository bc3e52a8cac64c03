//! Azure Instance Metadata Service double on 127.0.0.1, shaped after Microsoft's IMDS
//! documentation (learn.microsoft.com/azure/virtual-machines/instance-metadata-service, summarised
//! in `../shared/REFERENCE.md`), never after our own client. It serves the example documents in
//! `../shared/fixtures/imds/` and can be scripted to fail the way the real service does.
//!
//! # API
//!
//! ```no_run
//! use support::doubles::imds::{self, ImdsDouble, Reply};
//!
//! let imds = ImdsDouble::start(imds::fixture("instance.json"));
//! imds.script([Reply::Status(410), Reply::Throttled { retry_after_secs: 1 }]); // then 200
//! imds.set_fallback(Reply::Status(500)); // once the script is used up: 500 forever
//! let base = imds.url(); // "http://127.0.0.1:PORT": pass it as the tool's --imds-endpoint
//! let seen = imds.requests(); // every request, in order, as received
//! ```
//!
//! - [`ImdsDouble::start`] serves an instance document (`serde_json::Value`); [`fixture`] reads one
//!   of the shared fixture files. [`ImdsDouble::set_instance`] replaces it while running.
//! - [`ImdsDouble::script`] queues replies; each request that passes the service's own checks
//!   (below) takes the next one. When the queue is empty the fallback answers
//!   ([`ImdsDouble::set_fallback`], [`Reply::Instance`] by default).
//! - [`ImdsDouble::requests`] returns what was received: method, path, query pairs, headers
//!   (a [`RecordedRequest`] of [`super::server`], the server every double runs on).
//! - The server stops when the double is dropped.
//!
//! # What it checks, as the real service does
//!
//! - `GET` only: other methods get 405.
//! - The `Metadata: true` header is required and `X-Forwarded-For` is refused: 400
//!   `{"error": "Bad request. Required metadata header not specified"}` (the FAQ's message).
//! - `api-version` is required (except on `/metadata/versions`) and must be one the region
//!   supports ([`SUPPORTED_API_VERSIONS`] unless [`ImdsDouble::set_supported_api_versions`]
//!   says otherwise): otherwise 400 with `error` and `newest-versions`, the three newest
//!   versions this IMDS supports. Microsoft's IMDS documentation, "Versioning": "When you
//!   don't specify a version, you get an error with a list of the newest supported versions"
//!   (its example lists three), and a newly published version "is currently being rolled out
//!   and may not yet be available in every region": a client pinned to the newest version can
//!   meet a region that refuses it and must fall back to one the list names.
//! - A query parameter given twice is refused with 400.
//!
//! # Endpoints
//!
//! - `/metadata/instance[/<key or index>...]`: the instance document, or the part the route
//!   parameters select (404 when it does not exist). A leaf needs `format=text` and is returned
//!   as plain text; `format=json` on a leaf is a 400, as documented. `format=text` on an object
//!   or array is not modelled (the documentation does not define it) and answers 400.
//!   With `extended=true` the answer carries an `extended` block, as the real service's does
//!   (`{"compute": {"hasCustomData": false, "ppsType": "None"}}` unless the document has one).
//! - `/metadata/versions`: `{"apiVersions": [...]}`, no `api-version` needed.
//! - `/metadata/identity/oauth2/token?api-version=...&resource=...`: the managed identity token
//!   of `identity-token.json` (400 without `resource`). For the Key Vault audience
//!   (`resource=https://vault.azure.net`) the same document carries a token that names the
//!   VM's identity ([`ImdsDouble::set_identity_principal`], default [`IDENTITY_PRINCIPAL_ID`])
//!   and that audience ([`super::tokens`]), which the Key Vault double authorizes.
//! - `/metadata/scheduledevents`: Scheduled Events, `GET` and `POST`, in
//!   [`super::imds_events`] (its own api-versions, faults and clock), reached through
//!   [`ImdsDouble::scheduled_events`].
//! - anything else: 404 `{"error": "Not found"}`.
//!
//! Scripted replies apply to every endpoint. Error bodies are JSON objects with an `error`
//! string, the shape the documentation shows.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use super::imds_events::{self, ScheduledEvents};
pub use super::server::RecordedRequest;
use super::server::{self, Server};

/// The api-versions the documentation lists as supported, newest first.
pub const SUPPORTED_API_VERSIONS: &[&str] = &[
    "2025-04-07",
    "2024-07-17",
    "2024-03-15",
    "2023-11-15",
    "2023-07-01",
    "2021-12-13",
    "2021-11-15",
    "2021-11-01",
    "2021-10-01",
    "2021-08-01",
    "2021-05-01",
    "2021-03-01",
    "2021-02-01",
    "2021-01-01",
    "2020-12-01",
    "2020-10-01",
    "2020-09-01",
    "2020-07-15",
    "2020-06-01",
    "2019-11-01",
    "2019-08-15",
    "2019-08-01",
    "2019-06-04",
    "2019-06-01",
    "2019-04-30",
    "2019-03-11",
    "2019-02-01",
    "2018-10-01",
    "2018-04-02",
    "2018-02-01",
    "2017-12-01",
    "2017-10-01",
    "2017-08-01",
    "2017-04-02",
    "2017-03-01",
];

/// The message the documentation shows for a missing or unknown api-version.
pub const BAD_API_VERSION_ERROR: &str = "Bad request. api-version is invalid or was not specified in the request. For more information refer to aka.ms/azureimds";

/// The message the documentation's FAQ shows for a request without `Metadata: true`.
pub const MISSING_HEADER_ERROR: &str = "Bad request. Required metadata header not specified";

/// The object id of the VM's managed identity, unless a test sets another.
pub const IDENTITY_PRINCIPAL_ID: &str = "00000000-0000-0000-0000-0000000000d4";

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The normal answer for the endpoint (200 with the instance document, a token...).
    Instance,
    /// An error status with the documented JSON error body, e.g. 404, 410, 500, 503.
    Status(u16),
    /// 429 Too Many Requests with a `Retry-After` header in seconds.
    Throttled { retry_after_secs: u64 },
    /// Any status and body verbatim (`application/json` content type), e.g. malformed JSON or
    /// a 200 with a document missing its network data.
    Body { status: u16, body: String },
}

#[derive(Debug)]
struct State {
    instance: Value,
    token: Value,
    script: VecDeque<Reply>,
    fallback: Reply,
    requests: Vec<RecordedRequest>,
    /// What this region's IMDS supports, newest first.
    supported: Vec<String>,
    identity_principal: String,
    /// `/metadata/scheduledevents` (see [`super::imds_events`]).
    events: ScheduledEvents,
}

/// A running IMDS double. Dropping it stops the server.
pub struct ImdsDouble {
    state: Arc<Mutex<State>>,
    server: Server,
}

/// The directory of the shared IMDS fixtures (`../shared/fixtures/imds`).
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/imds")
}

/// Reads one of the shared IMDS fixtures (`instance.json`, `instance-extended.json`,
/// `identity-token.json`). Panics when it is missing or not JSON: this is test set-up.
pub fn fixture(name: &str) -> Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading IMDS fixture {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("IMDS fixture {} is not JSON: {e}", path.display()))
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl ImdsDouble {
    /// Starts the double on 127.0.0.1 with an ephemeral port, serving `instance`.
    pub fn start(instance: Value) -> Self {
        let state = Arc::new(Mutex::new(State {
            instance,
            token: fixture("identity-token.json"),
            script: VecDeque::new(),
            fallback: Reply::Instance,
            requests: Vec::new(),
            supported: SUPPORTED_API_VERSIONS
                .iter()
                .map(|v| v.to_string())
                .collect(),
            identity_principal: IDENTITY_PRINCIPAL_ID.to_string(),
            events: ScheduledEvents::default(),
        }));
        let server = {
            let state = Arc::clone(&state);
            Server::start(move |request| {
                let mut state = lock(&state);
                state.requests.push(request.clone());
                if request.path.trim_end_matches('/') == imds_events::PATH {
                    // Its own checks and answers; unlocked, as its first answer may be slow.
                    let events = state.events.clone();
                    drop(state);
                    return events.answer(request);
                }
                answer(&mut state, request)
            })
        };
        Self { state, server }
    }

    /// The base URL, `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Queues replies; each request that passes the service's checks takes the next one.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.state).script.extend(replies);
    }

    /// The reply once the script is used up (default [`Reply::Instance`]).
    pub fn set_fallback(&self, reply: Reply) {
        lock(&self.state).fallback = reply;
    }

    /// Replaces the instance document.
    pub fn set_instance(&self, instance: Value) {
        lock(&self.state).instance = instance;
    }

    /// The object id the VM's managed identity tokens name (e.g. a scale set's
    /// `identity.principalId` in the ARM double).
    pub fn set_identity_principal(&self, principal_id: &str) {
        lock(&self.state).identity_principal = principal_id.to_string();
    }

    /// The Scheduled Events this IMDS serves (a handle: schedule, start, cancel events, read
    /// the approvals; see [`super::imds_events`]).
    pub fn scheduled_events(&self) -> ScheduledEvents {
        lock(&self.state).events.clone()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// The api-versions this IMDS accepts, newest first: a region where the newest documented
    /// version has not rolled out yet (see the module documentation). `/metadata/versions`
    /// lists them, and a refused request's `newest-versions` names the first three.
    pub fn set_supported_api_versions<S: AsRef<str>>(&self, versions: &[S]) {
        lock(&self.state).supported = versions.iter().map(|v| v.as_ref().to_string()).collect();
    }
}

/// The documented error body: a JSON object with an `error` string.
fn error(status: u16, message: &str) -> server::Reply {
    server::Reply::json(status, &json!({ "error": message }))
}

fn answer(state: &mut State, request: &RecordedRequest) -> server::Reply {
    if request.method != "GET" {
        return error(405, "Method not allowed");
    }
    // Both requirements of "Security and authentication": the header, and no forwarding.
    let has_metadata_header = request
        .header("metadata")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !has_metadata_header || request.header("x-forwarded-for").is_some() {
        return error(400, MISSING_HEADER_ERROR);
    }
    let mut names: Vec<&str> = request.query.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return error(400, "Bad request. Duplicate query parameter names");
    }
    let path = request.path.trim_end_matches('/');
    if path == "/metadata/versions" {
        return server::Reply::json(200, &json!({ "apiVersions": state.supported }));
    }
    let version_ok = request
        .query_param("api-version")
        .is_some_and(|v| state.supported.iter().any(|s| s == v));
    if !version_ok {
        let newest = &state.supported[..state.supported.len().min(3)];
        return server::Reply::json(
            400,
            &json!({
                "error": BAD_API_VERSION_ERROR,
                "newest-versions": newest,
            }),
        );
    }
    let reply = state
        .script
        .pop_front()
        .unwrap_or_else(|| state.fallback.clone());
    match reply {
        Reply::Instance => normal_answer(state, request, path),
        Reply::Status(status) => error(status, error_message(status)),
        Reply::Throttled { retry_after_secs } => {
            error(429, error_message(429)).header("Retry-After", retry_after_secs.to_string())
        }
        Reply::Body { status, body } => server::Reply::new(status)
            .header("Content-Type", "application/json; charset=utf-8")
            .body(body),
    }
}

fn normal_answer(state: &State, request: &RecordedRequest, path: &str) -> server::Reply {
    if path == "/metadata/identity/oauth2/token" {
        return match request.query_param("resource") {
            Some(r) if super::tokens::is_key_vault_resource(r) => {
                let mut token = state.token.clone();
                token["access_token"] = json!(super::tokens::Claims::new(
                    r,
                    &state.identity_principal,
                    super::arm::TENANT
                )
                .issue());
                token["resource"] = json!(r);
                server::Reply::json(200, &token)
            }
            Some(r) if !r.is_empty() => server::Reply::json(200, &state.token),
            _ => error(
                400,
                "Bad request. Required query parameter resource is missing",
            ),
        };
    }
    let Some(route) = path.strip_prefix("/metadata/instance") else {
        return error(404, "Not found");
    };
    if !(route.is_empty() || route.starts_with('/')) {
        return error(404, "Not found");
    }
    let mut document = state.instance.clone();
    if request.query_param("extended") == Some("true") {
        if let Some(object) = document.as_object_mut() {
            object.entry("extended").or_insert_with(
                || json!({ "compute": { "hasCustomData": false, "ppsType": "None" } }),
            );
        }
    }
    let mut node = &document;
    for segment in route.split('/').filter(|s| !s.is_empty()) {
        let next = match node {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => return error(404, "Not found"),
        }
    }
    let text = request.query_param("format") == Some("text");
    let leaf = !matches!(node, Value::Object(_) | Value::Array(_));
    match (leaf, text) {
        (true, true) => server::Reply::text(
            200,
            match node {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        ),
        (true, false) => error(
            400,
            "Bad request. Querying a leaf node requires the parameter format=text",
        ),
        (false, true) => error(
            400,
            "Bad request. format=text on a non-leaf node is not modelled by this double",
        ),
        (false, false) => server::Reply::json(200, node),
    }
}

/// The error message of each status, in the documentation's words where it gives them.
fn error_message(status: u16) -> &'static str {
    match status {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        405 => "Method not allowed",
        410 => "Gone. Retry after some time for a max of 70 seconds",
        429 => "Too many requests",
        500 => "Internal server error. Retry after some time",
        503 => "Service unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str, metadata_header: bool) -> (u16, Option<String>, String) {
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .unwrap();
        let mut request = client.get(url);
        if metadata_header {
            request = request.header("Metadata", "true");
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (status, retry_after, response.text().unwrap())
    }

    fn instance_url(imds: &ImdsDouble) -> String {
        format!("{}/metadata/instance?api-version=2025-04-07", imds.url())
    }

    #[test]
    fn serves_the_fixture_with_the_header_and_a_supported_version() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let (status, _, body) = get(&instance_url(&imds), true);
        assert_eq!(status, 200);
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc, fixture("instance.json"));
        let requests = imds.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path, "/metadata/instance");
        assert_eq!(requests[0].query_param("api-version"), Some("2025-04-07"));
        assert_eq!(requests[0].header("Metadata"), Some("true"));
    }

    #[test]
    fn refuses_requests_without_the_metadata_header() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        imds.script([Reply::Status(500)]);
        let (status, _, body) = get(&instance_url(&imds), false);
        assert_eq!(status, 400);
        assert!(body.contains(MISSING_HEADER_ERROR), "{body}");
        // The check comes before the script, as on the real service.
        assert_eq!(get(&instance_url(&imds), true).0, 500);
    }

    #[test]
    fn refuses_missing_and_unknown_api_versions_with_the_newest_list() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        for url in [
            format!("{}/metadata/instance", imds.url()),
            format!("{}/metadata/instance?api-version=2099-01-01", imds.url()),
        ] {
            let (status, _, body) = get(&url, true);
            assert_eq!(status, 400, "{url}");
            let doc: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(doc["error"], BAD_API_VERSION_ERROR);
            assert_eq!(doc["newest-versions"][0], "2025-04-07");
        }
        let (status, _, body) = get(&format!("{}/metadata/versions", imds.url()), true);
        assert_eq!(status, 200);
        assert!(body.contains("2021-02-01"), "{body}");
    }

    #[test]
    fn a_region_without_the_newest_version_refuses_it_and_names_its_own() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        imds.set_supported_api_versions(&["2024-07-17", "2024-03-15", "2023-11-15", "2021-02-01"]);
        let (status, _, body) = get(&instance_url(&imds), true);
        assert_eq!(status, 400);
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            doc["newest-versions"],
            json!(["2024-07-17", "2024-03-15", "2023-11-15"])
        );
        let older = format!("{}/metadata/instance?api-version=2021-02-01", imds.url());
        assert_eq!(get(&older, true).0, 200);
        let (_, _, body) = get(&format!("{}/metadata/versions", imds.url()), true);
        assert!(!body.contains("2025-04-07"), "{body}");
    }

    #[test]
    fn refuses_duplicate_query_parameters_and_forwarded_requests() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let url = format!(
            "{}/metadata/instance?api-version=2025-04-07&api-version=2021-02-01",
            imds.url()
        );
        assert_eq!(get(&url, true).0, 400);
        let client = reqwest::blocking::Client::builder()
            .no_proxy()
            .build()
            .unwrap();
        let response = client
            .get(instance_url(&imds))
            .header("Metadata", "true")
            .header("X-Forwarded-For", "10.0.0.1")
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
    }

    #[test]
    fn scripted_replies_come_in_order_then_the_fallback() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        imds.script([
            Reply::Status(410),
            Reply::Throttled {
                retry_after_secs: 3,
            },
            Reply::Body {
                status: 200,
                body: "{not json".into(),
            },
        ]);
        assert_eq!(get(&instance_url(&imds), true).0, 410);
        let (status, retry_after, _) = get(&instance_url(&imds), true);
        assert_eq!((status, retry_after.as_deref()), (429, Some("3")));
        assert_eq!(get(&instance_url(&imds), true).2, "{not json");
        assert_eq!(get(&instance_url(&imds), true).0, 200);
        imds.set_fallback(Reply::Status(500));
        assert_eq!(get(&instance_url(&imds), true).0, 500);
        assert_eq!(get(&instance_url(&imds), true).0, 500);
    }

    #[test]
    fn route_parameters_select_parts_and_leaves_need_text() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let base = imds.url();
        let (status, _, body) = get(
            &format!("{base}/metadata/instance/compute/vmId?api-version=2025-04-07&format=text"),
            true,
        );
        assert_eq!(
            (status, body.as_str()),
            (200, "5f3c1e2a-7b6d-4c21-9e8f-0a1b2c3d4e5f")
        );
        let (status, _, body) = get(
            &format!("{base}/metadata/instance/network/interface/0?api-version=2025-04-07"),
            true,
        );
        assert_eq!(status, 200);
        assert!(body.contains("10.10.1.6"), "{body}");
        let (status, _, _) = get(
            &format!("{base}/metadata/instance/compute/vmId?api-version=2025-04-07"),
            true,
        );
        assert_eq!(status, 400);
        let (status, _, _) = get(
            &format!("{base}/metadata/instance/compute/nope?api-version=2025-04-07"),
            true,
        );
        assert_eq!(status, 404);
    }

    #[test]
    fn extended_requests_get_an_extended_block() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let url = format!("{}&extended=true", instance_url(&imds));
        let doc: Value = serde_json::from_str(&get(&url, true).2).unwrap();
        assert_eq!(doc["extended"]["compute"]["ppsType"], "None");
        let plain: Value = serde_json::from_str(&get(&instance_url(&imds), true).2).unwrap();
        assert!(plain.get("extended").is_none());
    }

    #[test]
    fn serves_the_identity_token() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let url = format!(
            "{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F",
            imds.url()
        );
        let (status, _, body) = get(&url, true);
        assert_eq!(status, 200);
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["token_type"], "Bearer");
        assert_eq!(
            imds.requests()[0].query_param("resource"),
            Some("https://management.azure.com/")
        );
    }
}
