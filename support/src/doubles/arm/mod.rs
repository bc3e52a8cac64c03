//! Azure Resource Manager double on 127.0.0.1, and a Microsoft identity platform token endpoint
//! double for the client-secret login.
//!
//! Every request is matched against Microsoft's REST specifications ([`spec`]: the operation
//! table of `../shared/azure-rest-specs/operations.json`, matched by INDEX.md's rules) before
//! anything else: a method + path + api-version that is no operation there is refused as ARM
//! refuses it (400 `NoRegisteredProviderFound` / `InvalidApiVersionParameter`, 405 for a method
//! the path does not have, 404 for no route at all), and recorded. Dropping the double fails the
//! test when any request was refused that way ([`ArmDouble::expect_refusals`] for the tests that
//! send such requests on purpose); [`ArmDouble::operations_used`] lists the (operationId,
//! api-version) pairs served.
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
//! arm.set_caller_permissions(support::doubles::arm::rbac::contributor());
//! arm.set_usage("westeurope", "standardDSv5Family", 8, 10);
//! let image = "/subscriptions/66666666-7777-8888-9999-000000000000/resourceGroups/images/providers/Microsoft.Compute/images/nomad-1.10.5";
//! arm.add_image(image, "westeurope", "Succeeded"); // Images_Get answers 200
//! arm.remove_resource(image); // ... and now 404 ResourceNotFound
//! let used = arm.operations_used(); // [("Deployments_CreateOrUpdate", "2025-04-01"), ...]
//! ```
//!
//! - [`ArmDouble::token`] (or one set by [`ArmDouble::set_token`]) is the only bearer token it
//!   accepts (401 `AuthenticationFailed` or `InvalidAuthenticationToken` otherwise).
//! - Faults ([`ArmDouble::inject`]) answer the next request they match, before any other
//!   handling: 429 with `Retry-After`, a 5xx, 409 `AnotherOperationInProgress`, or a connection
//!   closed without an answer.
//! - Long-running operations answer in the style their spec declares ([`lro`]) and stay in
//!   progress for [`ArmDouble::set_polls`] polls (default 1), each answer carrying `Retry-After`
//!   ([`ArmDouble::set_retry_after`], default 0 seconds).
//! - Lists page after [`ArmDouble::set_page_size`] items (default 100) with `nextLink`
//!   (`x-ms-pageable`, `nextLinkName: nextLink`, INDEX.md fact 7).
//! - It serves [`SUBSCRIPTION`] (404 `SubscriptionNotFound` for any other), plus the
//!   subscription of each image added with [`ArmDouble::add_image`].
//! - [`ArmDouble::remove_resource`] deletes a resource out of band, as an operator would.
//!
//! # What it models, by domain
//!
//! - [`resources`]: resource groups (answers shaped after the spec's `CreateResourceGroup.json`
//!   example), Resources_ListByResourceGroup (a tag `$filter` returns the matching resources
//!   *without* their tags, INDEX.md fact 1), GET/DELETE by id for every type the specs declare,
//!   with the type's own api-versions (fact 8), and `InUseResourceCannotBeDeleted`.
//! - [`deploy`]: deployments, what-if, validate, deployment operations; ARM's preflight
//!   (template errors, policy denials, SKU restrictions, quota) answered as 400
//!   `InvalidTemplateDeployment` with the causes in nested `details`; template evaluation through
//!   [`expr`] (`condition`s and `not()` included); Network's child resources (subnets,
//!   security rules) and the collections a parent PUT keeps or replaces, in [`children`].
//! - [`compute`]: scale sets and their instances (VirtualMachineScaleSetVMs_List with
//!   `$expand`/`$filter` per fact 10, capacity PATCH, DeleteInstances, UpdateInstances, model
//!   changes that leave old instances `latestModelApplied: false`), the scale-set NIC listing
//!   (Network's own 2017-03-30 operation), Usage_List and ResourceSkus_List. Instance creation
//!   and deletion are told to an [`InstanceEvents`] the test installs.
//! - [`rbac`]: role assignments (a `principalId` filter returns those at, above and below the
//!   scope; RoleAssignments_Create at any scope, a vault's or a secret's included) and
//!   Permissions_ListForResourceGroup for the caller.
//! - [`images`]: the managed image and Compute Gallery image version reads (`Images_Get`,
//!   `GalleryImageVersions_Get`) image-builder makes before it trusts a build record; the test
//!   adds each image, in the provisioning state it wants, with [`ArmDouble::add_image`].
//! - `keyvault`: Key Vault management (vaults, soft delete, recovery, purge, name
//!   availability); [`ArmDouble::key_vault_directory`] lets the Key Vault data-plane double
//!   ([`super::keyvault`]) serve a vault made here, with the role assignments made here.
//!
//! [`LoginDouble`] serves `POST /{tenant}/oauth2/v2.0/token` (client credentials).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

pub use super::instance_events::{InstanceEvents, InstanceInfo};
pub use super::server::RecordedRequest;
use super::server::{Reply, Server};
pub use created::Clock;
pub use login::LoginDouble;

mod children;
pub mod compute;
pub(crate) mod created;
mod deploy;
mod expr;
pub mod images;
mod keyvault;
mod login;
pub mod lro;
pub mod rbac;
mod resources;
pub mod spec;

/// The subscription the double serves.
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000a1";
/// The tenant the identities live in.
pub const TENANT: &str = "00000000-0000-0000-0000-0000000000b2";
/// The object id of the caller (the service principal the token stands for).
pub const CALLER_OBJECT_ID: &str = "00000000-0000-0000-0000-0000000000c3";

/// ARM's error body (`ErrorResponse` of common-types v6: `{"error": {code, message, target?,
/// details?}}`).
pub(crate) fn arm_error(status: u16, code: &str, message: &str) -> Reply {
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

    fn reply(&self) -> Reply {
        match self.kind {
            FaultKind::DropConnection => Reply::no_answer(),
            FaultKind::Throttle { retry_after_secs } => arm_error(
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
        }
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

/// An Azure Policy assignment that denies a resource type (`RequestDisallowedByPolicy` at
/// preflight).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub denied_type: Option<String>,
}

// ------------------------------------------------------------------ state

/// How the double judged one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A spec operation.
    Operation {
        operation_id: String,
        api_version: String,
    },
    /// A status or result URL the double handed out for a long-running operation.
    Poll { of: String },
    /// Not an operation of the specs: ARM's refusal.
    Refused {
        status: u16,
        code: String,
        message: String,
    },
}

/// A request and its verdict.
#[derive(Debug, Clone)]
pub struct Served {
    pub request: RecordedRequest,
    pub verdict: Verdict,
}

#[derive(Debug, Clone)]
pub(crate) struct Deployment {
    pub(crate) group: String,
    pub(crate) name: String,
    /// The request body as sent (template and parameters).
    pub(crate) request: Value,
    pub(crate) state: String,
    pub(crate) error: Option<Value>,
    pub(crate) operations: Vec<Value>,
    pub(crate) outputs: Value,
    pub(crate) output_resources: Vec<String>,
    pub(crate) timestamp: u64,
}

pub(crate) struct State {
    token: String,
    polls: u32,
    retry_after: u64,
    page_size: usize,
    /// Lower-cased subscription ids: [`SUBSCRIPTION`], and those [`images::add`] adds.
    pub(crate) subscriptions: BTreeSet<String>,
    pub(crate) groups: BTreeMap<String, Value>,
    /// By lower-cased id.
    pub(crate) resources: BTreeMap<String, resources::Stored>,
    pub(crate) deployments: Vec<Deployment>,
    operations: BTreeMap<String, lro::Operation>,
    faults: VecDeque<Fault>,
    failures: VecDeque<Vec<OperationFailure>>,
    served: Vec<Served>,
    pub(crate) counter: u64,
    pub(crate) next_ip: u32,
    /// Permissions_ListForResourceGroup's answer for the caller (`Permission` objects).
    pub(crate) permissions: Vec<Value>,
    pub(crate) usages: Vec<compute::Usage>,
    pub(crate) skus: Vec<Value>,
    pub(crate) policies: Vec<Policy>,
    /// Tags an Azure Policy "inherit a tag from the resource group" assignment adds.
    pub(crate) inherited_tags: bool,
    pub(crate) events: Option<Arc<dyn InstanceEvents>>,
    /// Where Azure's times come from (`timeCreated` of new instances): the wall clock unless a
    /// test installs another ([`ArmDouble::set_clock`]).
    pub(crate) clock: Clock,
    pub(crate) key_vaults: keyvault::KeyVaults,
    expect_refusals: bool,
}

impl State {
    fn new() -> Self {
        State {
            token: "arm-double-token-3f9c".to_string(),
            polls: 1,
            retry_after: 0,
            page_size: 100,
            subscriptions: BTreeSet::from([SUBSCRIPTION.to_ascii_lowercase()]),
            groups: BTreeMap::new(),
            resources: BTreeMap::new(),
            deployments: Vec::new(),
            operations: BTreeMap::new(),
            faults: VecDeque::new(),
            failures: VecDeque::new(),
            served: Vec::new(),
            counter: 0,
            next_ip: 4,
            permissions: rbac::owner(),
            usages: compute::default_usages(),
            skus: compute::default_skus(),
            policies: Vec::new(),
            inherited_tags: false,
            events: None,
            clock: Arc::new(std::time::SystemTime::now),
            key_vaults: keyvault::KeyVaults::default(),
            expect_refusals: false,
        }
    }
}

pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running ARM double. Dropping it stops the server and checks that every request was an
/// operation of the specs.
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
        // Read the operation table now, so a missing spec fails the set-up, not a request.
        let _ = spec::table();
        let state = Arc::new(Mutex::new(State::new()));
        let handler_state = state.clone();
        let server = Server::start_with_url(|url| {
            let base = url.to_string();
            move |request: &RecordedRequest| {
                let mut state = lock(&handler_state);
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

    /// The `Retry-After` (seconds) on long-running answers and in-progress polls.
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

    /// What Permissions_ListForResourceGroup answers for the caller, and what deployments are
    /// allowed to write ([`rbac::owner`] by default; [`rbac::contributor`]...).
    pub fn set_caller_permissions(&self, permissions: Vec<Value>) {
        lock(&self.state).permissions = permissions;
    }

    /// Sets a Compute usage (`cores`, `standardDSv5Family`, `lowPriorityCores`...) of a location.
    pub fn set_usage(&self, location: &str, name: &str, current: u64, limit: u64) {
        compute::set_usage(&mut lock(&self.state), location, name, current, limit);
    }

    /// Adds (or replaces, by name) a Resource SKU (`ResourceSku` of skus.json).
    pub fn add_sku(&self, sku: Value) {
        let mut state = lock(&self.state);
        state.skus.retain(|s| s["name"] != sku["name"]);
        state.skus.push(sku);
    }

    /// An Azure Policy assignment that denies a resource type at preflight.
    pub fn deny_by_policy(&self, name: &str, resource_type: &str) {
        lock(&self.state).policies.push(Policy {
            name: name.to_string(),
            denied_type: Some(resource_type.to_string()),
        });
    }

    /// Azure Policy's "inherit a tag from the resource group": every resource created from now
    /// on gets the group's tags it lacks.
    pub fn inherit_group_tags(&self) {
        lock(&self.state).inherited_tags = true;
    }

    /// Tells `events` about every instance created or deleted from now on.
    pub fn set_instance_events(&self, events: Arc<dyn InstanceEvents>) {
        lock(&self.state).events = Some(events);
    }

    /// This test sends requests the specs do not have on purpose: dropping the double does not
    /// fail it for them.
    pub fn expect_refusals(&self) {
        lock(&self.state).expect_refusals = true;
    }

    /// Serves another subscription too (ARM answers 404 `SubscriptionNotFound` for one the
    /// caller cannot see); resource groups stay one namespace across the subscriptions served.
    pub fn serve_subscription(&self, subscription: &str) {
        lock(&self.state)
            .subscriptions
            .insert(subscription.to_ascii_lowercase());
    }

    /// Adds a resource group.
    pub fn add_resource_group(&self, name: &str, location: &str, tags: Value) {
        let value = resources::group_value(name, location, &tags);
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
        let names: Vec<&str> = name.split('/').collect();
        let id = resource_id(group, &kind, &names);
        // A child resource (a subnet, a security rule) made out of band lands in its parent's
        // collection, where a PUT of the parent replaces it (REFERENCE.md).
        let types: Vec<&str> = kind.split('/').collect();
        if let ([namespace, parent_type, child_type], [parent, child]) =
            (types.as_slice(), names.as_slice())
        {
            let parent_id = resource_id(group, &format!("{namespace}/{parent_type}"), &[parent]);
            if let Some(stored) = state.resources.get_mut(&parent_id.to_ascii_lowercase()) {
                if let Some(items) = stored.value["properties"][*child_type].as_array_mut() {
                    items.retain(|i| i["name"] != *child);
                    let mut entry = json!({ "id": id, "name": child, "type": kind, "properties": resource["properties"] });
                    if !entry["properties"].is_object() {
                        entry["properties"] = json!({});
                    }
                    entry["properties"]["provisioningState"] = json!("Succeeded");
                    items.push(entry);
                    return id;
                }
            }
        }
        resources::materialize(&mut state, group, &id, resource);
        id
    }

    /// Adds a managed image or a Compute Gallery image version at `id` (any id `Images_Get` or
    /// `GalleryImageVersions_Get` matches, in any subscription), answered as the spec's
    /// examples, in `provisioning_state` (`Succeeded`, `Failed`, `Creating`...). See [`images`].
    pub fn add_image(&self, id: &str, location: &str, provisioning_state: &str) {
        images::add(&mut lock(&self.state), id, location, provisioning_state);
    }

    /// Deletes a resource out of band, as an operator in the portal would (a scale set takes
    /// its instances with it, a vault goes to soft delete).
    pub fn remove_resource(&self, id: &str) {
        resources::remove(&mut lock(&self.state), id);
    }

    /// Adds a role assignment at any scope (`/subscriptions/{s}` for one above the group);
    /// returns its id.
    pub fn add_role_assignment(
        &self,
        scope: &str,
        name: &str,
        principal_id: &str,
        role: &str,
    ) -> String {
        rbac::add(&mut lock(&self.state), scope, name, principal_id, role)
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

    /// The instances of a scale set as the double holds them.
    pub fn instances(&self, scale_set: &str) -> Vec<InstanceInfo> {
        compute::instances_of(&lock(&self.state), scale_set)
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
        lock(&self.state)
            .served
            .iter()
            .map(|s| s.request.clone())
            .collect()
    }

    /// Every request with its verdict.
    pub fn served(&self) -> Vec<Served> {
        lock(&self.state).served.clone()
    }

    /// The distinct (operationId, api-version) pairs served, in the order first used.
    pub fn operations_used(&self) -> Vec<(String, String)> {
        operations_used_in(lock(&self.state).served.iter().map(|s| &s.verdict))
    }

    /// The requests refused as no operation of the specs.
    pub fn refused(&self) -> Vec<Served> {
        lock(&self.state)
            .served
            .iter()
            .filter(|s| matches!(s.verdict, Verdict::Refused { .. }))
            .cloned()
            .collect()
    }
}

impl Drop for ArmDouble {
    /// The conformance check every test gets: a request that is no operation of the specs fails
    /// the test that made it.
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let state = lock(&self.state);
        if state.expect_refusals {
            return;
        }
        let refused = refusal_lines(state.served.iter().map(|s| (&s.request, &s.verdict)));
        if !refused.is_empty() {
            panic!(
                "the ARM double received requests that are no operation of Microsoft's REST specs (../shared/azure-rest-specs):\n{}",
                refused.join("\n")
            );
        }
    }
}

/// The distinct (operationId, api-version) pairs of a request log, in the order first used
/// (the ARM and Key Vault doubles keep one each).
pub(crate) fn operations_used_in<'a>(
    verdicts: impl Iterator<Item = &'a Verdict>,
) -> Vec<(String, String)> {
    let mut used: Vec<(String, String)> = Vec::new();
    for verdict in verdicts {
        if let Verdict::Operation {
            operation_id,
            api_version,
        } = verdict
        {
            let pair = (operation_id.clone(), api_version.clone());
            if !used.contains(&pair) {
                used.push(pair);
            }
        }
    }
    used
}

/// One line per refused request of a log, for the conformance check a double makes when dropped.
pub(crate) fn refusal_lines<'a>(
    log: impl Iterator<Item = (&'a RecordedRequest, &'a Verdict)>,
) -> Vec<String> {
    log.filter_map(|(request, verdict)| match verdict {
        Verdict::Refused { code, message, .. } => Some(format!(
            "  {} {}?api-version={}: {code}: {message}",
            request.method,
            request.path,
            request.query_param("api-version").unwrap_or("(none)")
        )),
        _ => None,
    })
    .collect()
}

/// `/subscriptions/{s}/resourceGroups/{g}/providers/{ns}/{t1}/{n1}/{t2}/{n2}...`
pub(crate) fn resource_id(group: &str, kind: &str, names: &[&str]) -> String {
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

/// One matched request, for the handlers.
pub(crate) struct Call<'a> {
    pub(crate) base: &'a str,
    pub(crate) request: &'a RecordedRequest,
    pub(crate) matched: spec::Matched,
}

impl Call<'_> {
    pub(crate) fn op(&self) -> &'static spec::SpecOperation {
        self.matched.operation
    }

    /// A path parameter; `resourceGroupName` also from a `{scope}` that is a resource group.
    pub(crate) fn param(&self, name: &str) -> &str {
        let value = self.matched.param(name);
        if value.is_empty() && name == "resourceGroupName" {
            let scope = self.matched.param("scope");
            let segments: Vec<&str> = scope.split('/').collect();
            if let [s, _, g, group] = segments.as_slice() {
                if s.eq_ignore_ascii_case("subscriptions")
                    && g.eq_ignore_ascii_case("resourcegroups")
                {
                    return group;
                }
            }
        }
        value
    }

    pub(crate) fn body(&self) -> Result<Value, Reply> {
        if self.request.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.request.body).map_err(|e| {
            arm_error(
                400,
                "InvalidRequestContent",
                &format!("The request content was invalid and could not be deserialized: '{e}'."),
            )
        })
    }

    /// A long-running answer in this operation's style.
    pub(crate) fn long_running(
        &self,
        state: &mut State,
        status: u16,
        body: &Value,
        pending: lro::Pending,
    ) -> Reply {
        lro::reply(
            state,
            self.base,
            self.op(),
            self.request.path.trim_end_matches('/'),
            &self.matched.api_version,
            status,
            body,
            pending,
        )
    }
}

/// Judges the request against the specs (or as a poll of an operation the double started).
fn judge(state: &State, request: &RecordedRequest) -> (Verdict, Option<spec::Matched>) {
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    if let Some((id, _)) = lro::is_poll(state, &segments) {
        let of = state.operations[&id].of.clone();
        return (Verdict::Poll { of }, None);
    }
    let Some(version) = request.query_param("api-version") else {
        return (
            Verdict::Refused {
                status: 400,
                code: "MissingApiVersionParameter".into(),
                message:
                    "The api-version query parameter (?api-version=) is required for all requests."
                        .into(),
            },
            None,
        );
    };
    match spec::resolve(&request.method, &request.path, version) {
        Ok(m) => (
            Verdict::Operation {
                operation_id: m.operation.operation_id.clone(),
                api_version: m.api_version.clone(),
            },
            Some(m),
        ),
        Err(r) => (
            Verdict::Refused {
                status: r.status,
                code: r.code.to_string(),
                message: r.message,
            },
            None,
        ),
    }
}

fn handle(state: &mut State, base: &str, request: &RecordedRequest) -> Reply {
    let (verdict, matched) = judge(state, request);
    state.served.push(Served {
        request: request.clone(),
        verdict: verdict.clone(),
    });
    if let Some(i) = state.faults.iter().position(|f| f.matches(request)) {
        let fault = state.faults.remove(i).expect("position is valid");
        return fault.reply();
    }
    match request.header("authorization") {
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
    let segments: Vec<&str> = request.path.split('/').filter(|s| !s.is_empty()).collect();
    if segments
        .get(1)
        .is_some_and(|s| !state.subscriptions.contains(&s.to_ascii_lowercase()))
        && segments
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("subscriptions"))
    {
        return arm_error(
            404,
            "SubscriptionNotFound",
            &format!("The subscription '{}' could not be found.", segments[1]),
        );
    }
    match verdict {
        Verdict::Refused {
            status,
            code,
            message,
        } => arm_error(status, &code, &message),
        Verdict::Poll { .. } => {
            let (id, async_style) = lro::is_poll(state, &segments).expect("judged a poll");
            lro::poll(state, base, &id, async_style)
        }
        Verdict::Operation { .. } => {
            let call = Call {
                base,
                request,
                matched: matched.expect("an operation verdict has its match"),
            };
            dispatch(state, &call)
        }
    }
}

/// The handler of each operation the double implements.
fn dispatch(state: &mut State, call: &Call) -> Reply {
    let id = call.op().operation_id.as_str();
    match id {
        "ResourceGroups_Get"
        | "ResourceGroups_CheckExistence"
        | "ResourceGroups_CreateOrUpdate"
        | "ResourceGroups_Delete" => resources::group(state, call),
        "Resources_ListByResourceGroup" => resources::list(state, call),
        // The `{scope}` forms with a resource group as the scope are the same operations.
        "Deployments_CreateOrUpdate" | "Deployments_CreateOrUpdateAtScope" => deploy::put(state, call),
        "Deployments_Get" | "Deployments_GetAtScope" => deploy::get(state, call),
        "Deployments_Delete" | "Deployments_DeleteAtScope" => {
            resources::delete_deployment(state, call)
        }
        "Deployments_Validate" | "Deployments_ValidateAtScope" => deploy::validate(state, call),
        "Deployments_WhatIf" => deploy::what_if(state, call),
        "DeploymentOperations_List" | "DeploymentOperations_ListAtScope" => {
            deploy::operations(state, call)
        }
        "VirtualMachineScaleSetVMs_List" => compute::list_instances(state, call),
        "VirtualMachineScaleSets_Update" => compute::update(state, call),
        "VirtualMachineScaleSets_DeleteInstances" => compute::delete_instances(state, call),
        "VirtualMachineScaleSets_UpdateInstances" => compute::update_instances(state, call),
        "NetworkInterfaces_ListVirtualMachineScaleSetNetworkInterfaces" => {
            compute::list_nics(state, call)
        }
        "Usage_List" => compute::usages(state, call),
        "Images_Get" | "GalleryImageVersions_Get" => images::get(state, call),
        "ResourceSkus_List" => compute::skus(state, call),
        "RoleAssignments_ListForScope"
        | "RoleAssignments_ListForResourceGroup"
        | "RoleAssignments_ListForResource" => {
            rbac::list(state, call)
        }
        "Permissions_ListForResourceGroup" => rbac::permissions(state, call),
        "RoleAssignments_Create" => rbac::create(state, call),
        "Vaults_CreateOrUpdate" => keyvault::create_or_update(state, call),
        "Vaults_Delete" => keyvault::delete(state, call),
        "Vaults_GetDeleted" => keyvault::get_deleted(state, call),
        "Vaults_ListDeleted" => keyvault::list_deleted(state, call),
        "Vaults_PurgeDeleted" => keyvault::purge(state, call),
        "Vaults_CheckNameAvailability" => keyvault::check_name(state, call),
        "Vaults_ListByResourceGroup" | "Vaults_ListBySubscription" => keyvault::list(state, call),
        _ => match call.op().method.as_str() {
            "GET" | "HEAD" => resources::get(state, call),
            "DELETE" => resources::delete(state, call),
            _ => arm_error(
                501,
                "NotImplemented",
                &format!(
                    "{id} is an operation of the specs, but the ARM double does not model it; resources are created through deployments."
                ),
            ),
        },
    }
}

/// Runs what a long-running operation left pending; returns its final status, error and result.
pub(crate) fn finish(
    state: &mut State,
    pending: lro::Pending,
) -> (String, Option<Value>, Option<Value>) {
    match pending {
        lro::Pending::Deployment { group, name } => {
            deploy::run(state, &group, &name);
            let d = deploy::find(state, &group, &name).expect("the deployment exists");
            (d.state.clone(), d.error.clone(), None)
        }
        lro::Pending::WhatIf { result } => ("Succeeded".into(), None, Some(result)),
        lro::Pending::Delete { id } => {
            resources::remove(state, &id);
            ("Succeeded".into(), None, None)
        }
        lro::Pending::DeleteGroup { group } => {
            let ids: Vec<String> = state
                .resources
                .iter()
                .filter(|(_, s)| s.group.eq_ignore_ascii_case(&group))
                .map(|(k, _)| k.clone())
                .collect();
            for id in ids {
                resources::remove(state, &id);
            }
            state.groups.remove(&group.to_ascii_lowercase());
            state
                .deployments
                .retain(|d| !d.group.eq_ignore_ascii_case(&group));
            ("Succeeded".into(), None, None)
        }
        lro::Pending::DeleteDeployment { group, name } => {
            state
                .deployments
                .retain(|d| !(d.group.eq_ignore_ascii_case(&group) && d.name == name));
            ("Succeeded".into(), None, None)
        }
        lro::Pending::PurgeVault { name } => {
            keyvault::purged(state, &name);
            ("Succeeded".into(), None, None)
        }
        lro::Pending::Done => ("Succeeded".into(), None, None),
    }
}

/// Pages `items` after `$skiptoken`, with a `nextLink` when more remain.
pub(crate) fn page(state: &State, call: &Call, items: Vec<Value>) -> Reply {
    let request = call.request;
    let skip: usize = request
        .query_param("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let end = (skip + state.page_size).min(items.len());
    let mut body = json!({ "value": items.get(skip..end).unwrap_or(&[]) });
    if end < items.len() {
        let mut url =
            url::Url::parse(&format!("{}{}", call.base, request.path)).expect("base URL parses");
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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod keyvault_tests;
