//! The order a request is handled in (recorded with its verdict, then an injected fault, the
//! bearer token, the subscription, the verdict) and the handler of each operation the double
//! implements; [`finish`] runs what a long-running operation left pending when its polls end.

use serde_json::Value;

use super::super::server::Reply;
use super::verdict::judge;
use super::{
    arm_error, compute, deploy, images, keyvault, lro, rbac, resources, Call, RecordedRequest,
    Served, State, Verdict,
};

/// Records and judges one request, then answers it.
pub(super) fn handle(state: &mut State, base: &str, request: &RecordedRequest) -> Reply {
    // Azure's deletes go on between requests (`deleting`): this request sees where they are.
    super::deleting::settle(state);
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
        lro::Pending::Done | lro::Pending::DeleteInstances { .. } => {
            ("Succeeded".into(), None, None)
        }
    }
}
