//! The double checked against HashiCorp's definitions: `../shared/nomad-api/endpoints.json`
//! (methods, query parameters, status codes with their body kinds, response headers) and the
//! JSON Schemas of `schemas/` (draft 2020-12, formats checked). Every reply the double sends and
//! every request it receives goes through here; what does not conform is recorded, and the
//! double fails the test when it is dropped.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

use super::super::server::RecordedRequest;

/// One status code of an endpoint.
#[derive(Debug, Clone)]
pub(crate) struct StatusSpec {
    /// `json`, `text`, `empty` or `binary`.
    pub body: String,
    pub schema: Option<String>,
}

/// One endpoint of endpoints.json.
#[derive(Debug, Clone)]
pub(crate) struct EndpointSpec {
    pub id: String,
    pub accepted_methods: Vec<String>,
    pub path: String,
    pub query_params: Vec<String>,
    pub request_schema: Option<String>,
    pub status_codes: BTreeMap<u16, StatusSpec>,
    /// Header names (lower case) this endpoint may send besides Content-Type.
    pub response_headers: Vec<String>,
    /// The ACL capabilities it needs (`node:read`, `management`, ...); empty for `none`.
    pub acl: Vec<String>,
}

pub(crate) struct Spec {
    pub endpoints: Vec<EndpointSpec>,
    validators: HashMap<String, Validator>,
}

/// `shared/nomad-api` found above the crate (`/work/shared` beside a checkout or a worktree).
pub fn shared_dir() -> PathBuf {
    let start = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .map(|dir| dir.join("shared/nomad-api"))
        .find(|dir| dir.join("endpoints.json").is_file())
        .unwrap_or_else(|| {
            panic!(
                "shared/nomad-api/endpoints.json not found above {}",
                start.display()
            )
        })
}

/// The endpoints and compiled schemas, loaded once per test binary.
pub(crate) fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(load)
}

fn load() -> Spec {
    let dir = shared_dir();
    let read = |relative: &str| -> Value {
        let path = dir.join(relative);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
    };
    let doc = read("endpoints.json");
    let mut endpoints = Vec::new();
    let mut schema_files = Vec::new();
    for e in doc["endpoints"].as_array().expect("endpoints[]") {
        let text = |v: &Value| v.as_str().map(str::to_string);
        let mut status_codes = BTreeMap::new();
        for (code, s) in e["status_codes"].as_object().expect("status_codes") {
            let schema = text(&s["schema"]);
            schema_files.extend(schema.clone());
            status_codes.insert(
                code.parse().expect("a numeric status"),
                StatusSpec {
                    body: text(&s["body"]).expect("body kind"),
                    schema,
                },
            );
        }
        let request_schema = text(&e["request_schema"]);
        schema_files.extend(request_schema.clone());
        endpoints.push(EndpointSpec {
            id: text(&e["id"]).expect("id"),
            accepted_methods: e["accepted_methods"]
                .as_array()
                .expect("accepted_methods")
                .iter()
                .filter_map(text)
                .collect(),
            path: text(&e["path"]).expect("path"),
            query_params: e["query_params"]
                .as_array()
                .expect("query_params")
                .iter()
                .filter_map(|q| text(&q["name"]))
                .collect(),
            request_schema,
            status_codes,
            response_headers: e["response_headers"]
                .as_array()
                .expect("response_headers")
                .iter()
                .filter_map(text)
                .map(|h| {
                    h.split([' ', ':'])
                        .next()
                        .unwrap_or_default()
                        .to_ascii_lowercase()
                })
                .collect(),
            acl: acl_capabilities(e["acl"].as_str().unwrap_or("none")),
        });
    }
    let mut validators = HashMap::new();
    for file in schema_files {
        if validators.contains_key(&file) {
            continue;
        }
        let schema = read(&file);
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("compiling {file}: {e}"));
        validators.insert(file, validator);
    }
    Spec {
        endpoints,
        validators,
    }
}

/// `"node:read + namespace:read-job (allocations ... dropped)"` -> `["node:read",
/// "namespace:read-job"]`; `"none"` -> `[]`.
fn acl_capabilities(text: &str) -> Vec<String> {
    if text == "none" {
        return Vec::new();
    }
    text.split('+')
        .filter_map(|part| part.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

impl Spec {
    pub(crate) fn endpoint(&self, id: &str) -> &EndpointSpec {
        self.endpoints
            .iter()
            .find(|e| e.id == id)
            .unwrap_or_else(|| panic!("endpoints.json has no endpoint {id}"))
    }

    /// The errors of `instance` against the schema file, one line each.
    pub(crate) fn schema_errors(&self, file: &str, instance: &Value) -> Vec<String> {
        let validator = self
            .validators
            .get(file)
            .unwrap_or_else(|| panic!("no compiled schema {file}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{file}: {} at {}", e.masked(), e.instance_path()))
            .collect()
    }

    /// What is wrong with a request to endpoint `id`: query parameters endpoints.json does not
    /// list, a body that fails `request_schema`.
    pub(crate) fn check_request(&self, id: &str, request: &RecordedRequest) -> Vec<String> {
        let endpoint = self.endpoint(id);
        let mut problems = Vec::new();
        for (name, _) in &request.query {
            if !endpoint.query_params.iter().any(|q| q == name) {
                problems.push(format!(
                    "{} {}: query parameter {name:?} is not one endpoints.json lists for {id}",
                    request.method, request.path
                ));
            }
        }
        if let (Some(schema), false) = (&endpoint.request_schema, request.body.trim().is_empty()) {
            match serde_json::from_str::<Value>(&request.body) {
                Ok(body) => problems.extend(
                    self.schema_errors(schema, &body)
                        .into_iter()
                        .map(|e| format!("{} {} request body: {e}", request.method, request.path)),
                ),
                Err(e) => problems.push(format!(
                    "{} {}: request body is not JSON: {e}",
                    request.method, request.path
                )),
            }
        }
        problems
    }

    /// What is wrong with a reply of endpoint `id`: a status it does not document, a body of
    /// the wrong kind or failing its schema, a header it does not send.
    pub(crate) fn check_reply(
        &self,
        id: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Vec<String> {
        let endpoint = self.endpoint(id);
        let Some(spec) = endpoint.status_codes.get(&status) else {
            return vec![format!(
                "{id}: status {status} is not documented for {}",
                endpoint.path
            )];
        };
        let mut problems = Vec::new();
        let content_type = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str());
        for (name, _) in headers {
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("x-nomad-") && !endpoint.response_headers.contains(&lower) {
                problems.push(format!(
                    "{id}: sends {name}, which endpoints.json does not list"
                ));
            }
        }
        match spec.body.as_str() {
            "json" => {
                // agent/health's 500 is JSON labelled text/plain, as Nomad sends it.
                let expected = if id == "agent-health" && status == 500 {
                    "text/plain; charset=utf-8"
                } else {
                    "application/json"
                };
                if content_type != Some(expected) {
                    problems.push(format!(
                        "{id} {status}: Content-Type {content_type:?}, expected {expected:?}"
                    ));
                }
                match serde_json::from_slice::<Value>(body) {
                    Ok(value) => {
                        if let Some(schema) = &spec.schema {
                            problems.extend(
                                self.schema_errors(schema, &value)
                                    .into_iter()
                                    .map(|e| format!("{id} {status}: {e}")),
                            );
                        }
                    }
                    Err(e) => problems.push(format!("{id} {status}: body is not JSON: {e}")),
                }
            }
            "text" => {
                if content_type != Some("text/plain; charset=utf-8") {
                    problems.push(format!(
                        "{id} {status}: error body with Content-Type {content_type:?}"
                    ));
                }
                if body.is_empty() {
                    problems.push(format!("{id} {status}: empty error body"));
                }
            }
            "empty" if !body.is_empty() => {
                problems.push(format!("{id} {status}: a body where none is documented"));
            }
            _ => {}
        }
        problems
    }
}
