//! Azure Resource Manager double on 127.0.0.1, and a Microsoft identity platform token
//! endpoint double for the client-secret login. Both follow the published REST behaviour
//! (learn.microsoft.com: "Azure REST API reference" for Resources 2025-04-01 (resource groups,
//! deployments, what-if, deployment operations, resources list), Compute 2024-11-01 (scale set
//! VMs), Network 2025-07-01 (scale set NICs), Authorization 2022-04-01 (role assignments);
//! "Track asynchronous Azure operations"; "Microsoft identity platform and the OAuth 2.0 client
//! credentials flow"), summarised in `../shared/REFERENCE.md`, never our own client.
//!
//! # API
//!
//! ```no_run
//! use support::doubles::arm::{ArmDouble, Fault, FaultKind, LoginDouble, OperationFailure};
//!
//! let arm = ArmDouble::start();
//! let login = LoginDouble::start("app-id", "app-secret", arm.token());
//! // --arm-endpoint arm.url(), --login-endpoint login.url(), --subscription arm.subscription()
//! arm.set_polls(2); // each long-running operation answers "in progress" twice
//! arm.inject(Fault::any(FaultKind::Throttle { retry_after_secs: 1 })); // next request: 429
//! arm.inject(Fault::on("PUT", "/deployments/", FaultKind::DropConnection));
//! arm.fail_next_deployment(vec![OperationFailure::new(
//!     "Microsoft.Compute/virtualMachineScaleSets", None, "BadRequest", "quota exceeded")]);
//! let seen = arm.requests(); // method, path, query, headers (Authorization included)
//! let vmss = arm.resource_named("Microsoft.Compute/virtualMachineScaleSets", "x-servers");
//! ```
//!
//! - [`ArmDouble::token`] (or one set by [`ArmDouble::set_token`]) is the only bearer token it accepts (401 `AuthenticationFailed` or
//!   `InvalidAuthenticationToken` otherwise). Every request needs `api-version`, and it must be
//!   the one the double serves for that provider (400 `MissingApiVersionParameter` /
//!   `InvalidApiVersionParameter`): Resources 2025-04-01, Compute 2024-11-01, Network
//!   2025-07-01, Authorization 2022-04-01.
//! - Faults ([`ArmDouble::inject`]) answer the next request they match, before any other
//!   handling: 429 with `Retry-After`, a 5xx, 409 `AnotherOperationInProgress`, or a connection
//!   closed without an answer.
//! - Long-running operations (deployment PUT: 201 + `Azure-AsyncOperation`; what-if POST and
//!   DELETE: 202 + `Location`) stay in progress for [`ArmDouble::set_polls`] polls (default 1),
//!   each answer carrying `Retry-After` ([`ArmDouble::set_retry_after`], default 0 seconds).
//! - Lists page after [`ArmDouble::set_page_size`] items (default 100) with `nextLink`.
//!
//! # What a deployment does
//!
//! When its operation completes, the double evaluates the template the way ARM does for the
//! functions it knows (`resourceId`, `subscriptionResourceId`, `resourceGroup`, `subscription`,
//! `parameters`, `variables`, `concat`, `base64`, `guid`, `reference`, `not`, property access;
//! `condition`s, and Network's child resources and collections, as `arm_children` describes); any
//! other function fails the deployment with `InvalidTemplate`, as would a missing parameter,
//! a `dependsOn` naming no resource, mode other than Incremental/Complete, or a missing
//! resource group. Then each resource is created or updated in template order: public IPs get
//! an address, resources with a system-assigned identity a `principalId`, scale sets
//! `sku.capacity` instances with a NIC each (10.0.0.4 upwards). Role assignments need an existing
//! principal (else `PrincipalNotFound`). Failures from [`ArmDouble::fail_next_deployment`] fail
//! their resources instead; the deployment then ends `Failed` with `DeploymentFailed`, and
//! `GET .../deployments/{name}/operations` lists every resource's operation with its
//! `statusMessage`. `customData` is never returned by GET (as on Azure);
//! [`ArmDouble::custom_data`] shows what the scale set received.
//!
//! What-if compares each template resource with what exists: `Create`, `Modify` (with a `delta`
//! of changed top-level paths), `NoChange`; existing resources the template does not name are
//! `Ignore` (Incremental mode). DELETE of a resource another resource still references fails
//! with 400 `InUseResourceCannotBeDeleted` (e.g. an NSG used by a scale set's NICs).
//!
//! # Endpoints
//!
//! - `GET|PUT|DELETE /subscriptions/{s}/resourcegroups/{rg}`
//! - `GET /subscriptions/{s}/resourcegroups/{rg}/resources[?$filter=tagName eq 'k' and tagValue eq 'v']`
//! - `PUT|GET .../resourcegroups/{rg}/providers/Microsoft.Resources/deployments/{name}`,
//!   `GET .../deployments/{name}/operationStatuses/{id}`, `GET .../deployments/{name}/operations`,
//!   `POST .../deployments/{name}/whatIf`
//! - `GET /subscriptions/{s}/operationresults/{id}` (the `Location` of 202 answers)
//! - `GET|DELETE` of any resource id the double holds, under `.../providers/{ns}/{type}/{name}`
//! - `GET .../virtualMachineScaleSets/{name}/virtualMachines` (Compute) and
//!   `.../virtualMachineScaleSets/{name}/networkInterfaces` (Network api-version)
//! - `GET .../resourcegroups/{rg}/providers/Microsoft.Authorization/roleAssignments[?$filter=principalId eq 'x']`
//!
//! [`LoginDouble`] serves `POST /{tenant}/oauth2/v2.0/token` (form: `grant_type=client_credentials`,
//! `client_id`, `client_secret`, `scope=<resource>/.default`) and answers
//! `{token_type, expires_in, ext_expires_in, access_token}`, or 400/401 with the documented
//! `{error, error_description, error_codes}` body.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Map, Value};

pub use super::server::RecordedRequest;
use super::server::{Reply, Server};

/// The subscription the double serves.
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000a1";
/// The tenant the identities live in.
pub const TENANT: &str = "00000000-0000-0000-0000-0000000000b2";

const RESOURCES_API: &str = "2025-04-01";
const COMPUTE_API: &str = "2024-11-01";
const NETWORK_API: &str = "2025-07-01";
const AUTHORIZATION_API: &str = "2022-04-01";

fn arm_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({ "error": { "code": code, "message": message } }),
    )
}

// ------------------------------------------------------------------ faults and failures

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// 429 with `Retry-After` and ARM's throttling error.
    Throttle { retry_after_secs: u64 },
    /// A server error (500, 502, 503...) with ARM's error body.
    ServerError(u16),
    /// 409 `AnotherOperationInProgress`.
    AnotherOperationInProgress,
    /// The connection closes with no answer at all.
    DropConnection,
}

/// A fault for the next request that matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// Only this method (`PUT`...), when set.
    pub method: Option<String>,
    /// Only paths containing this (case-insensitive), when set.
    pub path_contains: Option<String>,
    pub kind: FaultKind,
}

impl Fault {
    pub fn any(kind: FaultKind) -> Self {
        Self {
            method: None,
            path_contains: None,
            kind,
        }
    }

    pub fn on(method: &str, path_contains: &str, kind: FaultKind) -> Self {
        Self {
            method: Some(method.to_string()),
            path_contains: Some(path_contains.to_string()),
            kind,
        }
    }

    fn matches(&self, request: &RecordedRequest) -> bool {
        self.method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(&request.method))
            && self.path_contains.as_deref().is_none_or(|p| {
                request
                    .path
                    .to_ascii_lowercase()
                    .contains(&p.to_ascii_lowercase())
            })
    }
}

/// A resource a deployment fails to create, with the provider's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationFailure {
    pub resource_type: String,
    /// Only the resource of this name; every resource of the type when `None`.
    pub resource_name: Option<String>,
    pub code: String,
    pub message: String,
}

impl OperationFailure {
    pub fn new(
        resource_type: &str,
        resource_name: Option<&str>,
        code: &str,
        message: &str,
    ) -> Self {
        Self {
            resource_type: resource_type.to_string(),
            resource_name: resource_name.map(str::to_string),
            code: code.to_string(),
            message: message.to_string(),
        }
    }
}

// ------------------------------------------------------------------ state

#[derive(Debug, Clone)]
struct Instance {
    id: String,
    ip: String,
}

#[derive(Debug, Clone)]
struct Stored {
    /// The resource as GET returns it (customData removed).
    value: Value,
    group: String,
    custom_data: Option<String>,
    instances: Vec<Instance>,
}

#[derive(Debug, Clone)]
enum Pending {
    Deployment { group: String, name: String },
    WhatIf { result: Value },
    Delete { id: String },
    DeleteGroup { group: String },
}

#[derive(Debug, Clone)]
struct Operation {
    polls_left: u32,
    pending: Pending,
}

#[derive(Debug, Clone)]
struct Deployment {
    group: String,
    name: String,
    /// The request body as sent (template and parameters).
    request: Value,
    state: String,
    error: Option<Value>,
    operations: Vec<Value>,
    outputs: Value,
    timestamp: u64,
}

struct State {
    token: String,
    polls: u32,
    retry_after: u64,
    page_size: usize,
    groups: BTreeMap<String, Value>,
    /// By lower-cased id.
    resources: BTreeMap<String, Stored>,
    deployments: Vec<Deployment>,
    operations: BTreeMap<String, Operation>,
    faults: VecDeque<Fault>,
    failures: VecDeque<Vec<OperationFailure>>,
    requests: Vec<RecordedRequest>,
    counter: u64,
    next_ip: u32,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running ARM double. Dropping it stops the server.
pub struct ArmDouble {
    server: Server,
    state: Arc<Mutex<State>>,
}

/// A deployment the double received, for assertions.
#[derive(Debug, Clone)]
pub struct RecordedDeployment {
    pub group: String,
    pub name: String,
    /// The PUT body: `{"properties": {"mode", "template", "parameters"}}`.
    pub request: Value,
    pub state: String,
}

impl ArmDouble {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            token: "arm-double-token-3f9c".to_string(),
            polls: 1,
            retry_after: 0,
            page_size: 100,
            groups: BTreeMap::new(),
            resources: BTreeMap::new(),
            deployments: Vec::new(),
            operations: BTreeMap::new(),
            faults: VecDeque::new(),
            failures: VecDeque::new(),
            requests: Vec::new(),
            counter: 0,
            next_ip: 4,
        }));
        let handler_state = state.clone();
        let server = Server::start_with_url(|url| {
            let base = url.to_string();
            move |request: &RecordedRequest| {
                let mut state = lock(&handler_state);
                state.requests.push(request.clone());
                handle(&mut state, &base, request)
            }
        });
        Self { server, state }
    }

    /// `http://127.0.0.1:PORT`, for `--arm-endpoint`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// The bearer token the double accepts.
    pub fn token(&self) -> String {
        lock(&self.state).token.clone()
    }

    /// Accepts this bearer token instead (e.g. the one a managed identity double issues).
    pub fn set_token(&self, token: &str) {
        lock(&self.state).token = token.to_string();
    }

    pub fn subscription(&self) -> &'static str {
        SUBSCRIPTION
    }

    /// Polls each long-running operation answers "in progress" before it ends.
    pub fn set_polls(&self, polls: u32) {
        lock(&self.state).polls = polls;
    }

    /// The `Retry-After` (seconds) on 201/202 answers and in-progress polls.
    pub fn set_retry_after(&self, secs: u64) {
        lock(&self.state).retry_after = secs;
    }

    /// Items per page of list answers.
    pub fn set_page_size(&self, size: usize) {
        lock(&self.state).page_size = size.max(1);
    }

    /// Queues a fault for the next matching request.
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// The next deployment to complete fails these resources (each call queues one deployment).
    pub fn fail_next_deployment(&self, failures: Vec<OperationFailure>) {
        lock(&self.state).failures.push_back(failures);
    }

    /// Adds a resource group.
    pub fn add_resource_group(&self, name: &str, location: &str, tags: Value) {
        let value = group_value(name, location, &tags);
        lock(&self.state)
            .groups
            .insert(name.to_ascii_lowercase(), value);
    }

    /// Adds a resource (`{"type", "name", "location", "tags", "properties"...}`) to a group;
    /// returns its id.
    pub fn add_resource(&self, group: &str, resource: Value) -> String {
        let mut state = lock(&self.state);
        let kind = resource["type"].as_str().expect("type").to_string();
        let name = resource["name"].as_str().expect("name").to_string();
        let id = resource_id(group, &kind, &[&name]);
        materialize(&mut state, group, &id, resource);
        id
    }

    pub fn resource_group(&self, name: &str) -> Option<Value> {
        lock(&self.state)
            .groups
            .get(&name.to_ascii_lowercase())
            .cloned()
    }

    /// Every resource as GET shows it.
    pub fn resources(&self) -> Vec<Value> {
        lock(&self.state)
            .resources
            .values()
            .map(|s| s.value.clone())
            .collect()
    }

    pub fn resource_named(&self, kind: &str, name: &str) -> Option<Value> {
        lock(&self.state)
            .resources
            .values()
            .find(|s| {
                s.value["type"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case(kind))
                    && s.value["name"] == name
            })
            .map(|s| s.value.clone())
    }

    /// The decoded custom data a scale set was given (GET never returns it).
    pub fn custom_data(&self, scale_set: &str) -> Option<String> {
        lock(&self.state)
            .resources
            .values()
            .find(|s| s.value["name"] == scale_set && s.custom_data.is_some())
            .and_then(|s| s.custom_data.clone())
    }

    pub fn deployments(&self) -> Vec<RecordedDeployment> {
        lock(&self.state)
            .deployments
            .iter()
            .map(|d| RecordedDeployment {
                group: d.group.clone(),
                name: d.name.clone(),
                request: d.request.clone(),
                state: d.state.clone(),
            })
            .collect()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }
}

fn group_value(name: &str, location: &str, tags: &Value) -> Value {
    json!({
        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}"),
        "name": name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": location,
        "tags": if tags.is_object() { tags.clone() } else { json!({}) },
        "properties": { "provisioningState": "Succeeded" },
    })
}

/// `/subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{t1}/{n1}/{t2}/{n2}...`
fn resource_id(group: &str, kind: &str, names: &[&str]) -> String {
    let mut parts = kind.split('/');
    let namespace = parts.next().unwrap_or("");
    let mut id =
        format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{namespace}");
    for (t, n) in parts.zip(names.iter()) {
        id.push_str(&format!("/{t}/{n}"));
    }
    id
}

// ------------------------------------------------------------------ request handling

fn handle(state: &mut State, base: &str, request: &RecordedRequest) -> Reply {
    if let Some(i) = state.faults.iter().position(|f| f.matches(request)) {
        let fault = state.faults.remove(i).expect("position is valid");
        return match fault.kind {
            FaultKind::DropConnection => Reply::no_answer(),
            FaultKind::Throttle { retry_after_secs } =>
                arm_error(
                    429,
                    "TooManyRequests",
                    "The request is being throttled as the limit has been reached for operation type.",
                )
                .header("Retry-After", retry_after_secs.to_string()),
            FaultKind::ServerError(status) => arm_error(
                status,
                "InternalServerError",
                "Encountered internal server error. Please try again.",
            ),
            FaultKind::AnotherOperationInProgress => arm_error(
                409,
                "AnotherOperationInProgress",
                "Another operation on this or dependent resource is in progress. Retry the request after the operation completes.",
            ),
        };
    }
    let auth = request.header("authorization");
    match auth {
        None => {
            return arm_error(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
            )
        }
        Some(value) if value != format!("Bearer {}", state.token) => {
            return arm_error(
                401,
                "InvalidAuthenticationToken",
                "The access token is invalid.",
            )
        }
        Some(_) => {}
    }
    let Some(version) = request.query_param("api-version") else {
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    };
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    if l.len() < 2 || l[0] != "subscriptions" || !segments[1].eq_ignore_ascii_case(SUBSCRIPTION) {
        return arm_error(
            404,
            "SubscriptionNotFound",
            &format!(
                "The subscription '{}' could not be found.",
                segments.get(1).unwrap_or(&"")
            ),
        );
    }
    let expected = expected_version(&l);
    if version != expected {
        return arm_error(
            400,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{version}' is invalid. The supported versions for this double are '{expected}'."
            ),
        );
    }
    let method = request.method.as_str();
    match (method, &l[2..]) {
        ("GET", ["operationresults", id]) => poll_location(state, base, id),
        (_, ["resourcegroups", _]) => resource_group(state, base, method, segments[3], request),
        ("GET", ["resourcegroups", _, "resources"]) => {
            list_resources(state, base, segments[3], request)
        }
        (
            _,
            ["resourcegroups", _, "providers", "microsoft.resources", "deployments", rest @ ..],
        ) => deployment_route(
            state,
            base,
            method,
            segments[3],
            &segments[7..],
            rest,
            request,
        ),
        (
            "GET",
            ["resourcegroups", _, "providers", "microsoft.authorization", "roleassignments"],
        ) => list_role_assignments(state, base, segments[3], request),
        (
            "GET",
            ["resourcegroups", _, "providers", "microsoft.compute", "virtualmachinescalesets", _, sub],
        ) if *sub == "virtualmachines" || *sub == "networkinterfaces" => {
            scale_set_children(state, base, segments[3], segments[7], sub, request)
        }
        (_, ["resourcegroups", _, "providers", ..]) => {
            resource_route(state, base, method, segments[3], request)
        }
        _ => arm_error(
            404,
            "NotFound",
            "No route for this request in the ARM double.",
        ),
    }
}

/// The api-version the double serves for a path (by provider namespace).
fn expected_version(l: &[&str]) -> &'static str {
    let provider = l
        .iter()
        .position(|s| *s == "providers")
        .and_then(|i| l.get(i + 1))
        .copied()
        .unwrap_or("microsoft.resources");
    match provider {
        "microsoft.compute" => {
            if l.last() == Some(&"networkinterfaces") {
                NETWORK_API
            } else {
                COMPUTE_API
            }
        }
        "microsoft.network" => NETWORK_API,
        "microsoft.authorization" => AUTHORIZATION_API,
        _ => RESOURCES_API,
    }
}

fn next_id(state: &mut State) -> String {
    state.counter += 1;
    format!("{:016x}", 0x0858_4000_0000_0000u64 + state.counter)
}

fn start_operation(state: &mut State, pending: Pending) -> String {
    let id = next_id(state);
    state.operations.insert(
        id.clone(),
        Operation {
            polls_left: state.polls,
            pending,
        },
    );
    id
}

fn location_reply(
    state: &mut State,
    base: &str,
    status: u16,
    body: &Value,
    pending: Pending,
) -> Reply {
    let id = start_operation(state, pending);
    Reply::json(status, body)
        .header(
            "Location",
            format!("{base}/subscriptions/{SUBSCRIPTION}/operationresults/{id}?api-version={RESOURCES_API}"),
        )
        .header("Retry-After", state.retry_after.to_string())
}

fn resource_group(
    state: &mut State,
    base: &str,
    method: &str,
    name: &str,
    request: &RecordedRequest,
) -> Reply {
    let key = name.to_ascii_lowercase();
    match method {
        "GET" | "HEAD" => match state.groups.get(&key) {
            Some(g) if method == "GET" => Reply::json(200, g),
            Some(_) => Reply::json(204, &Value::Null),
            None => arm_error(
                404,
                "ResourceGroupNotFound",
                &format!("Resource group '{name}' could not be found."),
            ),
        },
        "PUT" => {
            let body: Value = serde_json::from_str(&request.body).unwrap_or(Value::Null);
            let Some(location) = body["location"].as_str() else {
                return arm_error(
                    400,
                    "LocationRequired",
                    "The location property is required for this definition.",
                );
            };
            let existed = state.groups.contains_key(&key);
            if let Some(g) = state.groups.get(&key) {
                if g["location"]
                    .as_str()
                    .is_some_and(|l| !l.eq_ignore_ascii_case(location))
                {
                    return arm_error(
                        409,
                        "InvalidResourceGroupLocation",
                        &format!("Invalid resource group location '{location}'. The Resource group already exists in location '{}'.", g["location"].as_str().unwrap_or("")),
                    );
                }
            }
            let value = group_value(name, location, &body["tags"]);
            state.groups.insert(key, value.clone());
            Reply::json(if existed { 200 } else { 201 }, &value)
        }
        "DELETE" => {
            if !state.groups.contains_key(&key) {
                return arm_error(
                    404,
                    "ResourceGroupNotFound",
                    &format!("Resource group '{name}' could not be found."),
                );
            }
            location_reply(
                state,
                base,
                202,
                &Value::Null,
                Pending::DeleteGroup {
                    group: name.to_string(),
                },
            )
        }
        _ => arm_error(405, "MethodNotAllowed", "The method is not allowed."),
    }
}

/// Pages `items` after `skip`, with a `nextLink` when more remain.
fn page(state: &State, base: &str, request: &RecordedRequest, items: Vec<Value>) -> Reply {
    let skip: usize = request
        .query_param("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end = (skip + state.page_size).min(items.len());
    let mut body = json!({ "value": items.get(skip..end).unwrap_or(&[]) });
    if end < items.len() {
        let mut url = url::Url::parse(&format!("{base}{}", request.path)).expect("base URL parses");
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &request.query {
                if k != "$skiptoken" {
                    pairs.append_pair(k, v);
                }
            }
            pairs.append_pair("$skiptoken", &end.to_string());
        }
        body["nextLink"] = json!(url.to_string());
    }
    Reply::json(200, &body)
}

/// `tagName eq 'k' and tagValue eq 'v'` (the documented tag filter); other filters are refused.
fn tag_filter(filter: &str) -> Option<(String, Option<String>)> {
    let quoted = |s: &str| -> Option<String> {
        let s = s.trim();
        let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
        Some(inner.replace("''", "'"))
    };
    let (name_part, value_part) = match filter.split_once(" and ") {
        Some((a, b)) => (a, Some(b)),
        None => (filter, None),
    };
    let name = quoted(name_part.trim().strip_prefix("tagName eq ")?)?;
    let value = match value_part {
        Some(v) => Some(quoted(v.trim().strip_prefix("tagValue eq ")?)?),
        None => None,
    };
    Some((name, value))
}

fn list_resources(state: &State, base: &str, group: &str, request: &RecordedRequest) -> Reply {
    if !state.groups.contains_key(&group.to_ascii_lowercase()) {
        return arm_error(
            404,
            "ResourceGroupNotFound",
            &format!("Resource group '{group}' could not be found."),
        );
    }
    let filter = match request.query_param("$filter") {
        None => None,
        Some(f) => match tag_filter(f) {
            Some(parsed) => Some(parsed),
            None => {
                return arm_error(
                    400,
                    "InvalidFilterInQueryString",
                    &format!("Invalid $filter '{f}' specified in the query string."),
                )
            }
        },
    };
    let items: Vec<Value> = state
        .resources
        .values()
        .filter(|s| s.group.eq_ignore_ascii_case(group))
        // Role assignments are extension resources: not in the resource list.
        .filter(|s| s.value["type"] != "Microsoft.Authorization/roleAssignments")
        .filter(|s| match &filter {
            None => true,
            Some((name, value)) => match s.value["tags"][name.as_str()].as_str() {
                None => false,
                Some(v) => value.as_deref().is_none_or(|want| want == v),
            },
        })
        .map(|s| {
            json!({
                "id": s.value["id"], "name": s.value["name"], "type": s.value["type"],
                "location": s.value["location"], "tags": s.value["tags"],
            })
        })
        .collect();
    page(state, base, request, items)
}

fn list_role_assignments(
    state: &State,
    base: &str,
    group: &str,
    request: &RecordedRequest,
) -> Reply {
    let principal = request.query_param("$filter").and_then(|f| {
        let rest = f.trim().strip_prefix("principalId eq ")?;
        Some(rest.trim().trim_matches('\'').to_string())
    });
    let items: Vec<Value> = state
        .resources
        .values()
        .filter(|s| {
            s.group.eq_ignore_ascii_case(group)
                && s.value["type"] == "Microsoft.Authorization/roleAssignments"
        })
        .filter(|s| {
            principal
                .as_deref()
                .is_none_or(|p| s.value["properties"]["principalId"] == p)
        })
        .map(|s| s.value.clone())
        .collect();
    page(state, base, request, items)
}

fn scale_set_children(
    state: &State,
    base: &str,
    group: &str,
    name: &str,
    sub: &str,
    request: &RecordedRequest,
) -> Reply {
    let id = resource_id(group, "Microsoft.Compute/virtualMachineScaleSets", &[name]);
    let Some(stored) = state.resources.get(&id.to_ascii_lowercase()) else {
        return arm_error(404, "ResourceNotFound", &format!("The Resource 'Microsoft.Compute/virtualMachineScaleSets/{name}' under resource group '{group}' was not found."));
    };
    let prefix = stored.value["properties"]["virtualMachineProfile"]["osProfile"]
        ["computerNamePrefix"]
        .as_str()
        .unwrap_or("vm")
        .to_string();
    let items: Vec<Value> = stored
        .instances
        .iter()
        .map(|i| {
            let vm_id = format!("{id}/virtualMachines/{}", i.id);
            if sub == "virtualmachines" {
                json!({
                    "id": vm_id,
                    "instanceId": i.id,
                    "name": format!("{name}_{}", i.id),
                    "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
                    "location": stored.value["location"],
                    "properties": {
                        "provisioningState": "Succeeded",
                        "latestModelApplied": true,
                        "osProfile": { "computerName": format!("{prefix}{:06X}", i.id.parse::<u32>().unwrap_or(0)) },
                    },
                })
            } else {
                json!({
                    "id": format!("{vm_id}/networkInterfaces/nic"),
                    "name": "nic",
                    "properties": {
                        "primary": true,
                        "virtualMachine": { "id": vm_id },
                        "ipConfigurations": [{
                            "name": "ipconfig",
                            "properties": { "primary": true, "privateIPAddress": i.ip, "privateIPAllocationMethod": "Dynamic" },
                        }],
                    },
                })
            }
        })
        .collect();
    page(state, base, request, items)
}

fn resource_route(
    state: &mut State,
    base: &str,
    method: &str,
    group: &str,
    request: &RecordedRequest,
) -> Reply {
    let key = request.path.trim_end_matches('/').to_ascii_lowercase();
    match method {
        "GET" => match state.resources.get(&key) {
            Some(s) => Reply::json(200, &s.value),
            None => not_found(&request.path, group),
        },
        "DELETE" => {
            let Some(stored) = state.resources.get(&key) else {
                return Reply::json(204, &Value::Null);
            };
            let id = stored.value["id"].as_str().unwrap_or_default().to_string();
            if let Some(user) = user_of(state, &id) {
                return arm_error(
                    400,
                    "InUseResourceCannotBeDeleted",
                    &format!("Resource {id} is in use by {user} and cannot be deleted."),
                );
            }
            if stored.value["type"] == "Microsoft.Authorization/roleAssignments" {
                // Role assignment deletes answer at once with the deleted assignment.
                let value = stored.value.clone();
                state.resources.remove(&key);
                return Reply::json(200, &value);
            }
            location_reply(state, base, 202, &Value::Null, Pending::Delete { id })
        }
        _ => arm_error(
            405,
            "MethodNotAllowed",
            "The double creates resources through deployments only.",
        ),
    }
}

fn not_found(path: &str, group: &str) -> Reply {
    let short = path.split_once("/providers/").map_or(path, |(_, r)| r);
    arm_error(
        404,
        "ResourceNotFound",
        &format!("The Resource '{short}' under resource group '{group}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"),
    )
}

/// Another resource whose JSON names `id` (a NIC configuration naming an NSG...).
fn user_of(state: &State, id: &str) -> Option<String> {
    let needle = id.to_ascii_lowercase();
    state
        .resources
        .values()
        .filter(|s| {
            s.value["id"]
                .as_str()
                .is_some_and(|other| !other.eq_ignore_ascii_case(id))
        })
        .find(|s| {
            let mut v = s.value.clone();
            v["id"] = Value::Null;
            v.to_string().to_ascii_lowercase().contains(&needle)
        })
        .and_then(|s| s.value["id"].as_str().map(str::to_string))
}

fn deployment_route(
    state: &mut State,
    base: &str,
    method: &str,
    group: &str,
    original: &[&str],
    rest: &[&str],
    request: &RecordedRequest,
) -> Reply {
    let name = original.first().copied().unwrap_or("");
    match (method, rest) {
        ("PUT", [_]) => put_deployment(state, base, group, name, request),
        ("GET", [_]) => match find_deployment(state, group, name) {
            Some(d) => Reply::json(200, &deployment_value(d)),
            None => arm_error(
                404,
                "DeploymentNotFound",
                &format!("Deployment '{name}' could not be found."),
            ),
        },
        ("GET", [_, "operationstatuses", id]) => poll_deployment(state, group, name, id),
        ("GET", [_, "operations"]) => match find_deployment(state, group, name) {
            Some(d) => {
                let ops = d.operations.clone();
                page(state, base, request, ops)
            }
            None => arm_error(
                404,
                "DeploymentNotFound",
                &format!("Deployment '{name}' could not be found."),
            ),
        },
        ("POST", [_, "whatif"]) => what_if(state, base, group, name, request),
        _ => arm_error(
            405,
            "MethodNotAllowed",
            "Not a deployment operation the double serves.",
        ),
    }
}

fn find_deployment<'a>(state: &'a State, group: &str, name: &str) -> Option<&'a Deployment> {
    state
        .deployments
        .iter()
        .rev()
        .find(|d| d.group.eq_ignore_ascii_case(group) && d.name == name)
}

fn deployment_id(group: &str, name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/Microsoft.Resources/deployments/{name}")
}

fn deployment_value(d: &Deployment) -> Value {
    let mut properties = json!({
        "provisioningState": d.state,
        "mode": d.request["properties"]["mode"],
        "timestamp": format!("2026-01-01T00:00:{:02}Z", d.timestamp % 60),
        "correlationId": format!("00000000-0000-0000-0000-{:012}", d.timestamp),
        "outputs": d.outputs,
    });
    if let Some(e) = &d.error {
        properties["error"] = e.clone();
    }
    json!({
        "id": deployment_id(&d.group, &d.name),
        "name": d.name,
        "type": "Microsoft.Resources/deployments",
        "properties": properties,
    })
}

/// The checks ARM makes before accepting a deployment or a what-if.
fn validate_request(state: &State, group: &str, body: &Value) -> Result<(), Reply> {
    if !state.groups.contains_key(&group.to_ascii_lowercase()) {
        return Err(arm_error(
            404,
            "ResourceGroupNotFound",
            &format!("Resource group '{group}' could not be found."),
        ));
    }
    let mode = body["properties"]["mode"].as_str().unwrap_or("");
    if mode != "Incremental" && mode != "Complete" {
        return Err(arm_error(
            400,
            "InvalidDeploymentMode",
            &format!("The deployment mode '{mode}' is not valid."),
        ));
    }
    let template = &body["properties"]["template"];
    if !template["resources"].is_array() {
        return Err(arm_error(
            400,
            "InvalidTemplate",
            "Deployment template validation failed: 'The template resources property is missing.'",
        ));
    }
    let given = &body["properties"]["parameters"];
    for (name, declared) in template["parameters"].as_object().into_iter().flatten() {
        if given[name]["value"].is_null() && declared.get("defaultValue").is_none() {
            return Err(arm_error(
                400,
                "InvalidTemplate",
                &format!("Deployment template validation failed: 'The value for the template parameter '{name}' at line '1' and column '1' is not provided. Please see https://aka.ms/arm-create-parameter-file for usage details.'."),
            ));
        }
        if let (Some(v), Some(min)) = (
            given[name]["value"].as_str(),
            declared["minLength"].as_u64(),
        ) {
            if (v.len() as u64) < min {
                return Err(arm_error(400, "InvalidTemplate", &format!("Deployment template validation failed: 'The provided value for the template parameter '{name}' is not valid. Length of the value should be greater than or equal to '{min}'.'")));
            }
        }
    }
    Ok(())
}

fn put_deployment(
    state: &mut State,
    base: &str,
    group: &str,
    name: &str,
    request: &RecordedRequest,
) -> Reply {
    let body: Value = match serde_json::from_str(&request.body) {
        Ok(b) => b,
        Err(e) => {
            return arm_error(
                400,
                "InvalidRequestContent",
                &format!("The request content was invalid and could not be deserialized: '{e}'."),
            )
        }
    };
    if let Err(reply) = validate_request(state, group, &body) {
        return reply;
    }
    if find_deployment(state, group, name)
        .is_some_and(|d| d.state == "Running" || d.state == "Accepted")
    {
        return arm_error(409, "DeploymentActive", &format!("The deployment '{name}' cannot be saved, because this would overwrite an existing deployment which is still active."));
    }
    state.counter += 1;
    let deployment = Deployment {
        group: group.to_string(),
        name: name.to_string(),
        request: body,
        state: "Running".to_string(),
        error: None,
        operations: Vec::new(),
        outputs: json!({}),
        timestamp: state.counter,
    };
    let mut value = deployment_value(&deployment);
    value["properties"]["provisioningState"] = json!("Accepted");
    state.deployments.push(deployment);
    let op = start_operation(
        state,
        Pending::Deployment {
            group: group.to_string(),
            name: name.to_string(),
        },
    );
    Reply::json(201, &value)
        .header(
            "Azure-AsyncOperation",
            format!(
                "{base}{}/operationStatuses/{op}?api-version={RESOURCES_API}",
                deployment_id(group, name)
            ),
        )
        .header("Retry-After", state.retry_after.to_string())
}

fn poll_deployment(state: &mut State, group: &str, name: &str, id: &str) -> Reply {
    let retry_after = state.retry_after.to_string();
    let Some(op) = state.operations.get_mut(&id.to_ascii_lowercase()) else {
        return arm_error(
            404,
            "OperationNotFound",
            &format!("Operation '{id}' was not found."),
        );
    };
    if op.polls_left > 0 {
        op.polls_left -= 1;
        return Reply::json(200, &json!({ "status": "Running" }))
            .header("Retry-After", retry_after);
    }
    let ours = matches!(&op.pending, Pending::Deployment { group: g, name: n } if g.eq_ignore_ascii_case(group) && n == name);
    if !ours {
        return arm_error(
            404,
            "OperationNotFound",
            &format!("Operation '{id}' is not a deployment's."),
        );
    }
    run_deployment(state, group, name);
    state.operations.remove(&id.to_ascii_lowercase());
    let d = find_deployment(state, group, name).expect("the deployment exists");
    match &d.error {
        None => Reply::json(200, &json!({ "status": d.state })),
        Some(error) => Reply::json(200, &json!({ "status": d.state, "error": error })),
    }
}

fn poll_location(state: &mut State, base: &str, id: &str) -> Reply {
    let retry_after = state.retry_after.to_string();
    let Some(op) = state.operations.get_mut(&id.to_ascii_lowercase()) else {
        return arm_error(
            404,
            "OperationNotFound",
            &format!("Operation '{id}' was not found."),
        );
    };
    if op.polls_left > 0 {
        op.polls_left -= 1;
        return Reply::json(202, &Value::Null)
            .header("Location", format!("{base}/subscriptions/{SUBSCRIPTION}/operationresults/{id}?api-version={RESOURCES_API}"))
            .header("Retry-After", retry_after);
    }
    let op = state
        .operations
        .remove(&id.to_ascii_lowercase())
        .expect("present");
    match op.pending {
        Pending::WhatIf { result, .. } => Reply::json(200, &result),
        Pending::Delete { id } => {
            let key = id.to_ascii_lowercase();
            state.resources.remove(&key);
            // A scale set takes its instances (and their NICs) with it.
            Reply::json(200, &Value::Null)
        }
        Pending::DeleteGroup { group } => {
            state.groups.remove(&group.to_ascii_lowercase());
            state
                .resources
                .retain(|_, s| !s.group.eq_ignore_ascii_case(&group));
            Reply::json(200, &Value::Null)
        }
        Pending::Deployment { .. } => arm_error(
            404,
            "OperationNotFound",
            "Deployments are polled through Azure-AsyncOperation.",
        ),
    }
}

// ------------------------------------------------------------------ deployments at work

/// Evaluates and creates the template's resources; records one operation per resource.
fn run_deployment(state: &mut State, group: &str, name: &str) {
    let index = state
        .deployments
        .iter()
        .rposition(|d| d.group.eq_ignore_ascii_case(group) && d.name == name)
        .expect("the deployment exists");
    let request = state.deployments[index].request.clone();
    let failures = state.failures.pop_front().unwrap_or_default();
    let template = &request["properties"]["template"];
    let parameters = &request["properties"]["parameters"];
    let group_location = state.groups[&group.to_ascii_lowercase()]["location"].clone();
    let mut operations = Vec::new();
    let mut failed = Vec::new();
    let mut not_deployed: Vec<String> = Vec::new();
    let mut error: Option<Value> = None;
    let planned = match plan_resources(state, group, &group_location, template, parameters) {
        Ok(p) => p,
        Err(message) => {
            let d = &mut state.deployments[index];
            d.state = "Failed".into();
            d.error = Some(json!({ "code": "InvalidTemplate", "message": message }));
            return;
        }
    };
    for (position, raw) in template["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let ctx = Context {
            state,
            group,
            group_location: &group_location,
            template,
            parameters,
        };
        let (id, kind, res_name) = planned[position].clone();
        // A resource whose condition is false is not deployed (arm_children).
        match raw
            .get("condition")
            .map(|c| ctx.eval_value(c))
            .transpose()
            .and_then(|c| super::arm_children::deployed(c.as_ref()))
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(message) => {
                error = Some(json!({ "code": "InvalidTemplate", "message": message }));
                break;
            }
        }
        // ARM never starts a resource whose dependency failed; it is left out.
        let blocked = raw["dependsOn"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|dep| {
                ctx.eval_value(dep)
                    .ok()
                    .and_then(|d| d.as_str().map(str::to_ascii_lowercase))
                    .is_some_and(|d| not_deployed.contains(&d))
            });
        if blocked {
            not_deployed.push(id.to_ascii_lowercase());
            continue;
        }
        let evaluated = match ctx.eval_value(raw) {
            Ok(v) => v,
            Err(message) => {
                error = Some(json!({ "code": "InvalidTemplate", "message": message }));
                break;
            }
        };
        let failure = failures.iter().find(|f| {
            f.resource_type.eq_ignore_ascii_case(&kind)
                && f.resource_name.as_deref().is_none_or(|n| n == res_name)
        });
        let principal_missing = kind == "Microsoft.Authorization/roleAssignments"
            && evaluated["properties"]["principalId"]
                .as_str()
                .is_some_and(|p| {
                    !state
                        .resources
                        .values()
                        .any(|s| s.value["identity"]["principalId"] == p)
                });
        let orphan = super::arm_children::parent_of(&kind, &id)
            .filter(|(parent, _, _)| !state.resources.contains_key(&parent.to_ascii_lowercase()));
        let outcome = match failure {
            Some(f) => Err((f.code.clone(), f.message.clone())),
            None if orphan.is_some() => Err((
                "ParentResourceNotFound".to_string(),
                format!("Can not perform requested operation on nested resource. Parent resource '{}' not found.", orphan.as_ref().map_or("", |o| o.0.as_str())),
            )),
            None if principal_missing => Err((
                "PrincipalNotFound".to_string(),
                format!(
                    "Principal {} does not exist in the directory {TENANT}.",
                    evaluated["properties"]["principalId"]
                        .as_str()
                        .unwrap_or("")
                ),
            )),
            None => Ok(()),
        };
        let op_id = format!("{:016X}", 0x3A00_0000_0000_0000u64 + position as u64);
        let target = json!({ "id": id, "resourceType": kind, "resourceName": res_name });
        match outcome {
            Ok(()) => {
                materialize(state, group, &id, evaluated);
                operations.push(json!({
                    "id": format!("{}/operations/{op_id}", deployment_id(group, name)),
                    "operationId": op_id,
                    "properties": {
                        "provisioningOperation": "Create",
                        "provisioningState": "Succeeded",
                        "timestamp": "2026-01-01T00:00:00Z",
                        "duration": "PT1S",
                        "statusCode": "OK",
                        "targetResource": target,
                    },
                }));
            }
            Err((code, message)) => {
                not_deployed.push(id.to_ascii_lowercase());
                failed.push(json!({ "code": code, "message": message }));
                operations.push(json!({
                    "id": format!("{}/operations/{op_id}", deployment_id(group, name)),
                    "operationId": op_id,
                    "properties": {
                        "provisioningOperation": "Create",
                        "provisioningState": "Failed",
                        "timestamp": "2026-01-01T00:00:00Z",
                        "duration": "PT1S",
                        "statusCode": "BadRequest",
                        "statusMessage": {
                            "status": "Failed",
                            "error": { "code": code, "message": message },
                        },
                        "targetResource": target,
                    },
                }));
            }
        }
    }
    let mut outputs = Map::new();
    if error.is_none() && failed.is_empty() {
        for (key, output) in template["outputs"].as_object().into_iter().flatten() {
            let ctx = Context {
                state,
                group,
                group_location: &group_location,
                template,
                parameters,
            };
            match ctx.eval_value(&output["value"]) {
                Ok(v) => {
                    outputs.insert(key.clone(), json!({ "type": output["type"], "value": v }));
                }
                Err(message) => {
                    error = Some(json!({ "code": "InvalidTemplate", "message": message }));
                }
            }
        }
    }
    if error.is_none() && !failed.is_empty() {
        error = Some(json!({
            "code": "DeploymentFailed",
            "message": "At least one resource deployment operation failed. Please list deployment operations for details. Please see https://aka.ms/arm-deployment-operations for usage details.",
            "details": failed,
        }));
    }
    let d = &mut state.deployments[index];
    d.operations = operations;
    d.outputs = Value::Object(outputs);
    d.state = if error.is_some() {
        "Failed"
    } else {
        "Succeeded"
    }
    .to_string();
    d.error = error;
}

/// Each template resource's id, type and name, and the `dependsOn` check.
fn plan_resources(
    state: &State,
    group: &str,
    group_location: &Value,
    template: &Value,
    parameters: &Value,
) -> Result<Vec<(String, String, String)>, String> {
    let ctx = Context {
        state,
        group,
        group_location,
        template,
        parameters,
    };
    let mut planned = Vec::new();
    for raw in template["resources"].as_array().into_iter().flatten() {
        let kind = raw["type"]
            .as_str()
            .ok_or("a resource has no type")?
            .to_string();
        let name = ctx.eval_value(&raw["name"])?;
        let name = name
            .as_str()
            .ok_or("a resource name is not a string")?
            .to_string();
        let names: Vec<&str> = name.split('/').collect();
        let id = resource_id(group, &kind, &names);
        planned.push((id, kind, name));
    }
    for raw in template["resources"].as_array().into_iter().flatten() {
        for dep in raw["dependsOn"].as_array().into_iter().flatten() {
            let dep = ctx.eval_value(dep)?;
            let dep = dep.as_str().unwrap_or_default();
            if !planned
                .iter()
                .any(|(id, _, _)| id.eq_ignore_ascii_case(dep))
            {
                return Err(format!("Deployment template validation failed: 'The resource '{dep}' is not defined in the template.'"));
            }
        }
    }
    Ok(planned)
}

/// Creates or replaces a resource as ARM would store it.
fn materialize(state: &mut State, group: &str, id: &str, resource: Value) {
    let kind = resource["type"].as_str().unwrap_or_default().to_string();
    if let Some((parent, collection, name)) = super::arm_children::parent_of(&kind, id) {
        if let Some(stored) = state.resources.get_mut(&parent.to_ascii_lowercase()) {
            super::arm_children::upsert_child(&mut stored.value, collection, id, &name, &resource);
        }
        return;
    }
    let mut value = resource;
    let object = value.as_object_mut().expect("a resource is an object");
    object.remove("dependsOn");
    object.remove("apiVersion");
    object.remove("condition");
    object.remove("comments");
    object.insert("id".into(), json!(id));
    let key = id.to_ascii_lowercase();
    let previous = state.resources.get(&key).cloned();
    if value["identity"]["type"]
        .as_str()
        .is_some_and(|t| t.contains("SystemAssigned"))
    {
        let principal = previous
            .as_ref()
            .and_then(|p| {
                p.value["identity"]["principalId"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                state.counter += 1;
                format!("11111111-2222-3333-4444-{:012x}", state.counter)
            });
        value["identity"]["principalId"] = json!(principal);
        value["identity"]["tenantId"] = json!(TENANT);
    }
    if !value["properties"].is_object() {
        value["properties"] = json!({});
    }
    value["properties"]["provisioningState"] = json!("Succeeded");
    super::arm_children::keep_omitted_children(
        &kind,
        previous.as_ref().map(|p| &p.value),
        &mut value,
    );
    super::arm_children::provider_defaults(&kind, &mut value);
    if kind == "Microsoft.Network/publicIPAddresses" {
        let address = previous
            .as_ref()
            .and_then(|p| {
                p.value["properties"]["ipAddress"]
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| {
                state.counter += 1;
                format!(
                    "20.0.{}.{}",
                    (state.counter / 250) % 250,
                    state.counter % 250 + 1
                )
            });
        value["properties"]["ipAddress"] = json!(address);
    }
    let mut custom_data = None;
    let mut instances = previous
        .as_ref()
        .map(|p| p.instances.clone())
        .unwrap_or_default();
    if kind == "Microsoft.Compute/virtualMachineScaleSets" {
        let os = &mut value["properties"]["virtualMachineProfile"]["osProfile"];
        if let Some(data) = os.as_object_mut().and_then(|o| o.remove("customData")) {
            custom_data = data.as_str().and_then(|b| {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
            });
        }
        let capacity = value["sku"]["capacity"].as_u64().unwrap_or(0) as usize;
        while instances.len() < capacity {
            let n = instances
                .last()
                .map_or(0, |i: &Instance| i.id.parse::<u32>().unwrap_or(0) + 1);
            let ip = format!("10.0.{}.{}", state.next_ip / 250, state.next_ip % 250);
            state.next_ip += 1;
            instances.push(Instance {
                id: n.to_string(),
                ip,
            });
        }
        instances.truncate(capacity);
    }
    if custom_data.is_none() {
        custom_data = previous.as_ref().and_then(|p| p.custom_data.clone());
    }
    state.resources.insert(
        key,
        Stored {
            value,
            group: group.to_string(),
            custom_data,
            instances,
        },
    );
}

fn what_if(
    state: &mut State,
    base: &str,
    group: &str,
    _name: &str,
    request: &RecordedRequest,
) -> Reply {
    let body: Value = match serde_json::from_str(&request.body) {
        Ok(b) => b,
        Err(e) => {
            return arm_error(
                400,
                "InvalidRequestContent",
                &format!("The request content was invalid: '{e}'."),
            )
        }
    };
    if let Err(reply) = validate_request(state, group, &body) {
        return reply;
    }
    let template = &body["properties"]["template"];
    let parameters = &body["properties"]["parameters"];
    let group_location = state.groups[&group.to_ascii_lowercase()]["location"].clone();
    let result = (|| -> Result<Value, String> {
        let planned = plan_resources(state, group, &group_location, template, parameters)?;
        let ctx = Context {
            state,
            group,
            group_location: &group_location,
            template,
            parameters,
        };
        let mut changes = Vec::new();
        for (raw, (id, _, _)) in template["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(&planned)
        {
            let condition = raw
                .get("condition")
                .map(|c| ctx.eval_value(c))
                .transpose()?;
            if !super::arm_children::deployed(condition.as_ref())? {
                continue;
            }
            // reference() to a resource that does not exist yet is unknown until deployment.
            let mut after = ctx.eval_value(raw).unwrap_or_else(|_| raw.clone());
            let kind = raw["type"].as_str().unwrap_or_default();
            let existing = match super::arm_children::parent_of(kind, id) {
                Some((parent, collection, name)) => state
                    .resources
                    .get(&parent.to_ascii_lowercase())
                    .and_then(|p| super::arm_children::find_child(&p.value, collection, &name)),
                None => state
                    .resources
                    .get(&id.to_ascii_lowercase())
                    .map(|s| s.value.clone()),
            };
            match existing {
                None => changes
                    .push(json!({ "resourceId": id, "changeType": "Create", "after": after })),
                Some(existing_value) => {
                    // What the provider keeps when the PUT leaves a collection out.
                    super::arm_children::keep_omitted_children(
                        kind,
                        Some(&existing_value),
                        &mut after,
                    );
                    let mut delta = Vec::new();
                    for key in ["location", "tags", "sku", "zones", "properties", "identity"] {
                        let mut before = existing_value[key].clone();
                        let mut wanted = after[key].clone();
                        if key == "properties" {
                            strip_read_only(&mut before);
                            strip_read_only(&mut wanted);
                        }
                        if key == "identity" {
                            before = json!(before["type"]);
                            wanted = json!(wanted["type"]);
                        }
                        if !wanted.is_null() && before != wanted {
                            delta.push(json!({
                                "path": key, "propertyChangeType": "Modify", "before": before, "after": wanted,
                            }));
                        }
                    }
                    let kind = if delta.is_empty() {
                        "NoChange"
                    } else {
                        "Modify"
                    };
                    changes.push(json!({
                        "resourceId": id, "changeType": kind, "before": existing_value, "after": after, "delta": delta,
                    }));
                }
            }
        }
        for stored in state
            .resources
            .values()
            .filter(|s| s.group.eq_ignore_ascii_case(group))
        {
            let id = stored.value["id"].as_str().unwrap_or_default();
            if !planned.iter().any(|(p, _, _)| p.eq_ignore_ascii_case(id)) {
                changes.push(
                    json!({ "resourceId": id, "changeType": "Ignore", "before": stored.value }),
                );
            }
        }
        Ok(json!({ "status": "Succeeded", "properties": { "changes": changes } }))
    })();
    let result = match result {
        Ok(r) => r,
        Err(message) => {
            json!({ "status": "Failed", "error": { "code": "InvalidTemplate", "message": message } })
        }
    };
    location_reply(state, base, 202, &Value::Null, Pending::WhatIf { result })
}

/// Server-set values that what-if does not count as changes.
fn strip_read_only(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("provisioningState");
        o.remove("ipAddress");
        if let Some(os) = o
            .get_mut("virtualMachineProfile")
            .and_then(|p| p.get_mut("osProfile"))
            .and_then(Value::as_object_mut)
        {
            os.remove("customData");
        }
    }
}

// ------------------------------------------------------------------ template expressions

struct Context<'a> {
    state: &'a State,
    group: &'a str,
    group_location: &'a Value,
    template: &'a Value,
    parameters: &'a Value,
}

impl Context<'_> {
    /// Evaluates every expression string inside a value.
    fn eval_value(&self, value: &Value) -> Result<Value, String> {
        Ok(match value {
            Value::String(s) if s.starts_with('[') && s.ends_with(']') && !s.starts_with("[[") => {
                let mut parser = Parser {
                    text: &s[1..s.len() - 1],
                    pos: 0,
                };
                let expr = parser.expression()?;
                parser.skip_ws();
                if parser.pos != parser.text.len() {
                    return Err(format!("The template language expression '{s}' is not valid: unexpected text at {}", parser.pos));
                }
                self.eval(&expr)?
            }
            Value::String(s) if s.starts_with("[[") => Value::String(s[1..].to_string()),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| self.eval_value(i))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.eval_value(v)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }

    fn eval(&self, expr: &Expr) -> Result<Value, String> {
        match expr {
            Expr::Str(s) => Ok(json!(s)),
            Expr::Int(i) => Ok(json!(i)),
            Expr::Member(inner, name) => {
                let v = self.eval(inner)?;
                v.get(name).cloned().ok_or_else(|| {
                    format!("The template language expression property '{name}' doesn't exist")
                })
            }
            Expr::Call(name, args) => {
                let values = args
                    .iter()
                    .map(|a| self.eval(a))
                    .collect::<Result<Vec<_>, _>>()?;
                let text = |i: usize| -> Result<String, String> {
                    values
                        .get(i)
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .ok_or_else(|| {
                            format!("The template function '{name}' expects a string argument {i}")
                        })
                };
                match name.to_ascii_lowercase().as_str() {
                    "resourceid" => {
                        let kind = text(0)?;
                        let names: Vec<String> = (1..values.len()).map(&text).collect::<Result<_, _>>()?;
                        let names: Vec<&str> = names.iter().map(String::as_str).collect();
                        Ok(json!(resource_id(self.group, &kind, &names)))
                    }
                    "subscriptionresourceid" => {
                        let kind = text(0)?;
                        let mut parts = kind.split('/');
                        let ns = parts.next().unwrap_or("");
                        let mut id = format!("/subscriptions/{SUBSCRIPTION}/providers/{ns}");
                        for (i, t) in parts.enumerate() {
                            id.push_str(&format!("/{t}/{}", text(i + 1)?));
                        }
                        Ok(json!(id))
                    }
                    "resourcegroup" => Ok(json!({
                        "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{}", self.group),
                        "name": self.group,
                        "location": self.group_location,
                    })),
                    "subscription" => Ok(json!({
                        "id": format!("/subscriptions/{SUBSCRIPTION}"),
                        "subscriptionId": SUBSCRIPTION,
                        "tenantId": TENANT,
                    })),
                    "parameters" => {
                        let p = text(0)?;
                        let given = &self.parameters[&p]["value"];
                        if !given.is_null() {
                            return Ok(given.clone());
                        }
                        self.template["parameters"][&p]
                            .get("defaultValue")
                            .cloned()
                            .ok_or_else(|| format!("The template parameter '{p}' is not found."))
                    }
                    "variables" => {
                        let v = text(0)?;
                        let raw = self.template["variables"]
                            .get(&v)
                            .ok_or_else(|| format!("The template variable '{v}' is not found."))?;
                        self.eval_value(raw)
                    }
                    "concat" => {
                        if values.iter().all(Value::is_string) {
                            Ok(json!(values.iter().filter_map(Value::as_str).collect::<String>()))
                        } else {
                            Err("The template function 'concat' is used with arguments of mixed types in the double.".into())
                        }
                    }
                    "not" => match values.first() {
                        Some(Value::Bool(b)) => Ok(json!(!b)),
                        _ => Err("The template function 'not' expects a boolean argument.".into()),
                    },
                    "base64" => {
                        use base64::Engine;
                        Ok(json!(base64::engine::general_purpose::STANDARD.encode(text(0)?)))
                    }
                    "guid" => {
                        use sha2::Digest;
                        let joined: Vec<String> = (0..values.len()).map(&text).collect::<Result<_, _>>()?;
                        let hash = crate::hash::hex(&sha2::Sha256::digest(joined.join("-").as_bytes()));
                        Ok(json!(format!("{}-{}-{}-{}-{}", &hash[0..8], &hash[8..12], &hash[12..16], &hash[16..20], &hash[20..32])))
                    }
                    "reference" => {
                        let id = text(0)?;
                        let full = values.get(2).and_then(Value::as_str) == Some("full");
                        let stored = self
                            .state
                            .resources
                            .get(&id.to_ascii_lowercase())
                            .ok_or_else(|| format!("The Resource '{id}' was not found (reference())."))?;
                        Ok(if full {
                            stored.value.clone()
                        } else {
                            stored.value["properties"].clone()
                        })
                    }
                    _ => Err(format!("The template function '{name}' is not valid (not known to the ARM double).")),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Expr {
    Str(String),
    Int(i64),
    Call(String, Vec<Expr>),
    Member(Box<Expr>, String),
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expression(&mut self) -> Result<Expr, String> {
        self.skip_ws();
        let mut expr = match self.peek() {
            Some('\'') => {
                self.pos += 1;
                let mut s = String::new();
                loop {
                    let c = self.peek().ok_or("unterminated string in expression")?;
                    self.pos += c.len_utf8();
                    if c == '\'' {
                        if self.peek() == Some('\'') {
                            self.pos += 1;
                            s.push('\'');
                        } else {
                            break;
                        }
                    } else {
                        s.push(c);
                    }
                }
                Expr::Str(s)
            }
            Some(c) if c.is_ascii_digit() || c == '-' => {
                let start = self.pos;
                self.pos += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.pos += 1;
                }
                Expr::Int(
                    self.text[start..self.pos]
                        .parse()
                        .map_err(|_| "bad number")?,
                )
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let name = self.identifier();
                if !self.eat('(') {
                    return Err(format!("'{name}' must be a function call"));
                }
                let mut args = Vec::new();
                if !self.eat(')') {
                    loop {
                        args.push(self.expression()?);
                        if self.eat(')') {
                            break;
                        }
                        if !self.eat(',') {
                            return Err(format!("expected ',' or ')' in the arguments of {name}"));
                        }
                    }
                }
                Expr::Call(name, args)
            }
            other => return Err(format!("unexpected {other:?} in expression")),
        };
        while self.eat('.') {
            let name = self.identifier();
            if name.is_empty() {
                return Err("expected a property name after '.'".into());
            }
            expr = Expr::Member(Box::new(expr), name);
        }
        Ok(expr)
    }

    fn identifier(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        self.text[start..self.pos].to_string()
    }
}

// ------------------------------------------------------------------ token endpoint

/// The Microsoft identity platform's v2.0 token endpoint for the client credentials grant.
pub struct LoginDouble {
    server: Server,
    requests: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl LoginDouble {
    /// Accepts `client_id` with `client_secret` and issues `access_token`.
    pub fn start(client_id: &str, client_secret: &str, access_token: String) -> Self {
        let requests: Arc<Mutex<Vec<RecordedRequest>>> = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let (id, secret) = (client_id.to_string(), client_secret.to_string());
        let server = Server::start(move |request: &RecordedRequest| {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(request.clone());
            token_answer(request, &id, &secret, &access_token)
        });
        Self { server, requests }
    }

    /// `http://127.0.0.1:PORT`, for `--login-endpoint`.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn token_error(status: u16, error: &str, code: u32, description: &str) -> Reply {
    Reply::json(
        status,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}\r\nTrace ID: 00000000-0000-0000-0000-000000000000\r\nTimestamp: 2026-01-01 00:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
        }),
    )
}

fn token_answer(
    request: &RecordedRequest,
    client_id: &str,
    client_secret: &str,
    access_token: &str,
) -> Reply {
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    let path_ok = request.method == "POST"
        && segments.len() == 4
        && segments[1] == "oauth2"
        && segments[2] == "v2.0"
        && segments[3] == "token";
    if !path_ok {
        return token_error(
            404,
            "invalid_request",
            90002,
            "Not the v2.0 token endpoint.",
        );
    }
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(request.body.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return token_error(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if !form.get("scope").is_some_and(|s| s.ends_with("/.default")) {
        return token_error(400, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).");
    }
    if form.get("client_id").map(String::as_str) != Some(client_id) {
        return token_error(
            400,
            "unauthorized_client",
            700016,
            "Application was not found in the directory.",
        );
    }
    if form.get("client_secret").map(String::as_str) != Some(client_secret) {
        return token_error(401, "invalid_client", 7000215, "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.");
    }
    Reply::json(
        200,
        &json!({ "token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": access_token }),
    )
}

#[cfg(test)]
mod tests {
    use super::super::server::test_client as client;
    use super::*;

    fn url(arm: &ArmDouble, path: &str, version: &str) -> String {
        format!(
            "{}/subscriptions/{SUBSCRIPTION}{path}?api-version={version}",
            arm.url()
        )
    }

    #[test]
    fn requests_need_the_token_and_the_api_version() {
        let arm = ArmDouble::start();
        let c = client();
        let r = c
            .get(url(&arm, "/resourcegroups/rg", RESOURCES_API))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 401);
        let r = c
            .get(format!(
                "{}/subscriptions/{SUBSCRIPTION}/resourcegroups/rg",
                arm.url()
            ))
            .bearer_auth(arm.token())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 400);
        assert!(r.text().unwrap().contains("MissingApiVersionParameter"));
        let r = c
            .get(url(&arm, "/resourcegroups/rg", RESOURCES_API))
            .bearer_auth(arm.token())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
        assert!(r.text().unwrap().contains("ResourceGroupNotFound"));
    }

    #[test]
    fn a_deployment_evaluates_its_template_and_creates_resources() {
        let arm = ArmDouble::start();
        arm.add_resource_group("rg", "westeurope", json!({}));
        let template = json!({
            "$schema": "x", "contentVersion": "1.0.0.0",
            "parameters": { "key": { "type": "securestring" } },
            "variables": { "head": "#!/bin/sh\necho " },
            "resources": [
                { "type": "Microsoft.Compute/virtualMachineScaleSets", "apiVersion": COMPUTE_API, "name": "vmss",
                  "location": "westeurope", "sku": { "name": "Standard_D2s_v5", "capacity": 2 },
                  "identity": { "type": "SystemAssigned" },
                  "properties": { "virtualMachineProfile": { "osProfile": {
                      "customData": "[base64(concat(variables('head'), parameters('key')))]" } } } },
                { "type": "Microsoft.Authorization/roleAssignments", "apiVersion": AUTHORIZATION_API,
                  "name": "[guid(resourceGroup().id, 'vmss')]",
                  "dependsOn": ["[resourceId('Microsoft.Compute/virtualMachineScaleSets', 'vmss')]"],
                  "properties": { "principalId": "[reference(resourceId('Microsoft.Compute/virtualMachineScaleSets', 'vmss'), '2024-11-01', 'full').identity.principalId]" } }
            ]
        });
        let c = client();
        let r = c
            .put(url(&arm, "/resourcegroups/rg/providers/Microsoft.Resources/deployments/d", RESOURCES_API))
            .bearer_auth(arm.token())
            .json(&json!({ "properties": { "mode": "Incremental", "template": template, "parameters": { "key": { "value": "s3cret" } } } }))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let status_url = r.headers()["azure-asyncoperation"]
            .to_str()
            .unwrap()
            .to_string();
        let poll = |c: &reqwest::blocking::Client| -> Value {
            c.get(&status_url)
                .bearer_auth(arm.token())
                .send()
                .unwrap()
                .json()
                .unwrap()
        };
        assert_eq!(poll(&c)["status"], "Running");
        assert_eq!(poll(&c)["status"], "Succeeded");
        assert_eq!(arm.custom_data("vmss").unwrap(), "#!/bin/sh\necho s3cret");
        let vmss = arm
            .resource_named("Microsoft.Compute/virtualMachineScaleSets", "vmss")
            .unwrap();
        assert!(vmss["properties"]["virtualMachineProfile"]["osProfile"]
            .get("customData")
            .is_none());
        let principal = vmss["identity"]["principalId"].as_str().unwrap();
        let assignments: Vec<Value> = arm
            .resources()
            .into_iter()
            .filter(|r| r["type"] == "Microsoft.Authorization/roleAssignments")
            .collect();
        assert_eq!(assignments.len(), 1);
        assert_eq!(assignments[0]["properties"]["principalId"], principal);
    }

    #[test]
    fn faults_answer_the_next_matching_request() {
        let arm = ArmDouble::start();
        arm.inject(Fault::any(FaultKind::Throttle {
            retry_after_secs: 7,
        }));
        arm.inject(Fault::on(
            "GET",
            "/resourcegroups/",
            FaultKind::DropConnection,
        ));
        let c = client();
        let r = c
            .get(url(&arm, "/resourcegroups/rg", RESOURCES_API))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        assert!(c
            .get(url(&arm, "/resourcegroups/rg", RESOURCES_API))
            .send()
            .is_err());
        let r = c
            .get(url(&arm, "/resourcegroups/rg", RESOURCES_API))
            .bearer_auth(arm.token())
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 404);
    }

    #[test]
    fn the_login_double_checks_the_client_credentials() {
        let login = LoginDouble::start("app", "secret", "tok".into());
        let c = client();
        let post = |secret: &str| {
            c.post(format!("{}/tenant/oauth2/v2.0/token", login.url()))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", "app"),
                    ("client_secret", secret),
                    ("scope", "https://management.azure.com/.default"),
                ])
                .send()
                .unwrap()
        };
        let ok: Value = post("secret").json().unwrap();
        assert_eq!(ok["access_token"], "tok");
        let bad = post("wrong");
        assert_eq!(bad.status().as_u16(), 401);
        assert_eq!(bad.json::<Value>().unwrap()["error"], "invalid_client");
    }

    #[test]
    fn expressions_parse_and_unknown_functions_are_refused() {
        let state = State {
            token: String::new(),
            polls: 0,
            retry_after: 0,
            page_size: 10,
            groups: BTreeMap::new(),
            resources: BTreeMap::new(),
            deployments: Vec::new(),
            operations: BTreeMap::new(),
            faults: VecDeque::new(),
            failures: VecDeque::new(),
            requests: Vec::new(),
            counter: 0,
            next_ip: 4,
        };
        let template = json!({});
        let location = json!("westeurope");
        let ctx = Context {
            state: &state,
            group: "rg",
            group_location: &location,
            template: &template,
            parameters: &json!({}),
        };
        assert_eq!(
            ctx.eval_value(&json!("[resourceId('Microsoft.Network/loadBalancers/backendAddressPools', 'lb', 'it''s')]")).unwrap(),
            json!(format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb/backendAddressPools/it's"))
        );
        assert!(ctx
            .eval_value(&json!("[uniqueString('x')]"))
            .unwrap_err()
            .contains("uniqueString"));
        assert_eq!(
            ctx.eval_value(&json!("[[literal]")).unwrap(),
            json!("[literal]")
        );
    }
}
