//! [`ArmDouble`], the handle a test holds: it starts the server, and sets up and inspects the
//! state the requests are answered from (token, polls, paging, permissions, usages, SKUs,
//! resource groups, resources, images, role assignments, the deployments received).
//! Fault injection is in `faults`, the request log and its verdicts in `verdict`, the clock in
//! `created`, Key Vault's set-up in `keyvault`.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::super::server::Server;
use super::dispatch::handle;
use super::{
    compute, images, lock, rbac, resource_id, resources, spec, InstanceEvents, InstanceInfo,
    RecordedRequest, State, SUBSCRIPTION,
};

/// A running ARM double. Dropping it stops the server and checks that every request was an
/// operation of the specs.
pub struct ArmDouble {
    pub(super) server: Server,
    pub(super) state: Arc<Mutex<State>>,
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

    /// How many requests (any, polls included) an instance delete without a terminate
    /// notification stays `Deleting` (default 2; 0 or 1 ends it at the next request).
    pub fn set_delete_requests(&self, requests: u32) {
        lock(&self.state).delete_requests = requests;
    }

    /// The `Retry-After` (seconds) on long-running answers and in-progress polls.
    pub fn set_retry_after(&self, secs: u64) {
        lock(&self.state).retry_after = secs;
    }

    /// Items per page of list answers.
    pub fn set_page_size(&self, size: usize) {
        lock(&self.state).page_size = size.max(1);
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

    /// Azure Policy's "inherit a tag from the resource group": every resource created from now
    /// on gets the group's tags it lacks.
    pub fn inherit_group_tags(&self) {
        lock(&self.state).inherited_tags = true;
    }

    /// Tells `events` about every instance created or deleted from now on.
    pub fn set_instance_events(&self, events: Arc<dyn InstanceEvents>) {
        lock(&self.state).events = Some(events);
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
}
