//! Long-running operations, answered in the style each operation's spec declares
//! (`azure-rest-specs/INDEX.md`, fact 4; "Track asynchronous Azure operations"):
//!
//! - `final-state-via: location` (Deployments_WhatIf, Network DELETEs): 202 with `Location` and
//!   `Retry-After`; the `Location` URL answers 202 while running, then the result (200 with a
//!   body, or 204).
//! - `final-state-via: azure-async-operation` and PUT/PATCH without one (Deployments_CreateOrUpdate,
//!   VirtualMachineScaleSets_Update): 201/200 with `Azure-AsyncOperation`; its URL answers
//!   `{"status": "InProgress"}` (deployments: `Running`) then `Succeeded`/`Failed` with `error`;
//!   the client then GETs the resource.
//! - POST/DELETE without one (Compute's DeleteInstances, manualupgrade, VMSS delete; resource
//!   group delete): 202 with both headers (ResourceGroups_Delete: `Location` only, as its spec
//!   says).
//!
//! Both URLs of one operation count down the same polls ([`super::ArmDouble::set_polls`]); the
//! work (a deletion, a deployment) happens when the count reaches zero, whichever URL saw it, and
//! the final answer stays available, so a client may read `Location` after `Azure-AsyncOperation`
//! said Succeeded (azure-core's ARMPolling does).

use serde_json::{json, Value};

use super::super::server::Reply;
use super::spec::SpecOperation;
use super::{State, SUBSCRIPTION};

/// What finishes when an operation's polls run out.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Deployment {
        group: String,
        name: String,
    },
    WhatIf {
        result: Value,
    },
    Delete {
        id: String,
    },
    DeleteGroup {
        group: String,
    },
    /// Deployments_Delete: the record goes, the resources it made stay.
    DeleteDeployment {
        group: String,
        name: String,
    },
    /// Vaults_PurgeDeleted: the soft-deleted vault's name is free when it ends.
    PurgeVault {
        name: String,
    },
    /// VirtualMachineScaleSets_DeleteInstances: succeeds once these instances of the scale set
    /// (by lower-cased id) are gone ([`super::deleting`]).
    DeleteInstances {
        key: String,
        ids: Vec<u32>,
    },
    /// Work already done at the request (capacity changes, instance deletes): only the wait.
    Done,
}

#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub(super) polls_left: u32,
    pub(super) pending: Option<Pending>,
    /// The operation it belongs to, for the request log.
    pub(super) of: String,
    /// `Succeeded`/`Failed` and the error, once finished.
    pub(super) outcome: Option<(String, Option<Value>)>,
    /// The body the `Location` URL gives at the end (what-if's result).
    pub(super) result: Option<Value>,
}

/// Which headers a long-running answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    Location,
    AsyncOperation,
    Both,
}

impl Style {
    /// The style of an operation, from its spec.
    pub(super) fn of(op: &SpecOperation) -> Style {
        match op.final_state_via.as_deref() {
            Some("location") => Style::Location,
            Some("azure-async-operation") => Style::AsyncOperation,
            _ if op.operation_id == "ResourceGroups_Delete"
                || op.operation_id == "Deployments_Delete" =>
            {
                Style::Location
            }
            _ if op.method == "PUT" || op.method == "PATCH" => Style::AsyncOperation,
            _ => Style::Both,
        }
    }
}

fn next_id(state: &mut State) -> String {
    state.counter += 1;
    format!("{:016x}", 0x0858_4000_0000_0000u64 + state.counter)
}

/// Registers an operation; returns its id.
pub(super) fn start(state: &mut State, of: &str, pending: Pending) -> String {
    let id = next_id(state);
    state.operations.insert(
        id.clone(),
        Operation {
            polls_left: state.polls,
            pending: Some(pending),
            of: of.to_string(),
            outcome: None,
            result: None,
        },
    );
    id
}

/// The status URL of an operation of a provider (`Azure-AsyncOperation`).
fn async_url(base: &str, namespace: &str, id: &str, api_version: &str) -> String {
    format!("{base}/subscriptions/{SUBSCRIPTION}/providers/{namespace}/locations/westeurope/operations/{id}?api-version={api_version}")
}

/// The result URL of an operation (`Location`).
fn location_url(base: &str, namespace: &str, id: &str, api_version: &str) -> String {
    if namespace.eq_ignore_ascii_case("Microsoft.Resources") {
        format!(
            "{base}/subscriptions/{SUBSCRIPTION}/operationresults/{id}?api-version={api_version}"
        )
    } else {
        format!("{base}/subscriptions/{SUBSCRIPTION}/providers/{namespace}/locations/westeurope/operationResults/{id}?api-version={api_version}")
    }
}

/// A long-running answer in the operation's style.
#[allow(clippy::too_many_arguments)]
pub(super) fn reply(
    state: &mut State,
    base: &str,
    op: &SpecOperation,
    path: &str,
    api_version: &str,
    status: u16,
    body: &Value,
    pending: Pending,
) -> Reply {
    let id = start(state, &op.operation_id, pending);
    let namespace = op.provider.as_str();
    let mut reply = Reply::json(status, body);
    let style = Style::of(op);
    if matches!(style, Style::AsyncOperation | Style::Both) {
        // A deployment's status lives under the deployment (as ARM answers it).
        let url = if op.operation_id.starts_with("Deployments_CreateOrUpdate") {
            format!("{base}{path}/operationStatuses/{id}?api-version={api_version}")
        } else {
            async_url(base, namespace, &id, api_version)
        };
        reply = reply.header("Azure-AsyncOperation", url);
    }
    if matches!(style, Style::Location | Style::Both) {
        reply = reply.header("Location", location_url(base, namespace, &id, api_version));
    }
    reply.header("Retry-After", state.retry_after.to_string())
}

/// A request to one of the URLs above (or a deployment's `operationStatuses`), when `id` is an
/// operation the double started. `async_style` is true for status URLs.
pub(super) fn is_poll(state: &State, segments: &[&str]) -> Option<(String, bool)> {
    let (id, kind) = match segments {
        [.., kind, id] => (id.to_ascii_lowercase(), kind.to_ascii_lowercase()),
        _ => return None,
    };
    let op = state.operations.get(&id)?;
    let async_style = match kind.as_str() {
        "operationstatuses" | "operations" => true,
        "operationresults" => false,
        _ => return None,
    };
    let _ = op;
    Some((id, async_style))
}

/// Answers a poll; runs the pending work when the polls run out.
pub(super) fn poll(state: &mut State, base: &str, id: &str, async_style: bool) -> Reply {
    let retry_after = state.retry_after.to_string();
    let waiting = match &state.operations[id].pending {
        Some(Pending::DeleteInstances { key, ids }) => !super::deleting::done(state, key, ids),
        _ => false,
    };
    let op = state
        .operations
        .get_mut(id)
        .expect("is_poll checked the id");
    if op.polls_left > 0 || waiting {
        op.polls_left = op.polls_left.saturating_sub(1);
        let running = if op.of.starts_with("Deployments_CreateOrUpdate") {
            "Running"
        } else {
            "InProgress"
        };
        return if async_style {
            Reply::json(200, &json!({ "name": id, "status": running }))
                .header("Retry-After", retry_after)
        } else {
            Reply::json(202, &Value::Null)
                .header(
                    "Location",
                    format!("{base}/subscriptions/{SUBSCRIPTION}/operationresults/{id}?api-version=2025-04-01"),
                )
                .header("Retry-After", retry_after)
        };
    }
    if let Some(pending) = op.pending.take() {
        let (status, error, result) = super::finish(state, pending);
        let op = state.operations.get_mut(id).expect("still there");
        op.outcome = Some((status, error));
        op.result = result;
    }
    let op = &state.operations[id];
    let (status, error) = op.outcome.clone().expect("finished above");
    if async_style {
        let mut body = json!({ "name": id, "status": status, "startTime": "2026-01-01T00:00:00Z", "endTime": "2026-01-01T00:00:01Z" });
        if let Some(e) = error {
            body["error"] = e;
        }
        Reply::json(200, &body)
    } else if let Some(e) = error {
        Reply::json(400, &json!({ "error": e }))
    } else {
        match &op.result {
            Some(result) => Reply::json(200, result),
            None => Reply::json(204, &Value::Null),
        }
    }
}
