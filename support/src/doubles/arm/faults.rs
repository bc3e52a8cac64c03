//! Faults and failures a test injects: a fault answers the next request it matches before any
//! other handling (429 with `Retry-After`, a 5xx, 409 `AnotherOperationInProgress`, or a
//! connection closed without an answer); an [`OperationFailure`] fails a resource of the next
//! deployment; a [`Policy`] denies a resource type at preflight.

use super::super::server::Reply;
use super::{arm_error, lock, ArmDouble, RecordedRequest};

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

    pub(super) fn matches(&self, request: &RecordedRequest) -> bool {
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

    pub(super) fn reply(&self) -> Reply {
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

impl ArmDouble {
    /// Queues a fault for the next matching request.
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push_back(fault);
    }

    /// The next deployment to complete fails these resources (each call queues one deployment).
    pub fn fail_next_deployment(&self, failures: Vec<OperationFailure>) {
        lock(&self.state).failures.push_back(failures);
    }

    /// An Azure Policy assignment that denies a resource type at preflight.
    pub fn deny_by_policy(&self, name: &str, resource_type: &str) {
        lock(&self.state).policies.push(Policy {
            name: name.to_string(),
            denied_type: Some(resource_type.to_string()),
        });
    }
}
