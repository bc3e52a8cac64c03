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
//!   `$expand`/`$filter` per fact 10, capacity PATCH, DeleteInstances through `Deleting` ([`deleting`]), UpdateInstances, model
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
//!
//! # Layout
//!
//! The double's own machinery, one concern a module: [`ArmDouble`]'s handle and set-up API
//! (`double`), its shared state (`state`), how each request is judged against the specs and the
//! log of those verdicts (`verdict`), injected faults and failures (`faults`), the order a request
//! is handled in and the handler of each operation (`dispatch`), and what a handler gets (`call`:
//! the matched request, its body, long-running and paged answers).

use serde_json::json;

pub use super::instance_events::{InstanceEvents, InstanceInfo};
pub use super::server::RecordedRequest;
use super::server::Reply;
use call::{page, Call};
pub use created::Clock;
use dispatch::finish;
pub use double::{ArmDouble, RecordedDeployment};
pub use faults::{Fault, FaultKind, OperationFailure, Policy};
pub use login::LoginDouble;
use state::{lock, State};
pub(crate) use verdict::{operations_used_in, refusal_lines};
pub use verdict::{Served, Verdict};

mod call;
mod children;
pub mod compute;
pub(crate) mod created;
mod deleting;
mod deploy;
mod dispatch;
mod double;
mod expr;
mod faults;
pub mod images;
mod keyvault;
mod login;
pub mod lro;
pub mod rbac;
mod resources;
pub mod spec;
mod state;
mod verdict;

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

#[cfg(test)]
mod tests;

#[cfg(test)]
mod keyvault_tests;

#[cfg(test)]
mod deleting_tests;
