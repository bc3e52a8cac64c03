//! Microsoft's Python SDKs (azure-mgmt-resource, -resource-deployments, -compute, -network,
//! -authorization; pinned in `tests/sdk/requirements.txt`) drive the ARM double through every
//! operation cluster-deploy uses and read every answer with their generated models: a second,
//! independent client that follows Microsoft's REST specs, so the double cannot drift into
//! answers only our own client accepts. Every operation the tools send in the conformance run
//! (tests/common/azure.rs) must be among those the SDKs exercised.
//!
//! The SDKs live in a virtualenv that `.ci/run` (and the README's test command) creates:
//! `target/azure-sdk` (`AZURE_SDK_PYTHON` names another interpreter). Without it this test
//! fails and says how to create it; it never skips.

mod common;

use support::doubles::arm::ArmDouble;

/// The (operationId, api-version) pairs the tools send in the conformance run (every command
/// once, as `every_command_uses_only_operations_of_the_specs` runs them).
fn operations_the_tools_send() -> Vec<(String, String)> {
    let env = common::azure::setup();
    common::azure::conformance_run(&env);
    env.arm.operations_used()
}

/// Runs the SDK script against a fresh double; returns its stdout and the operations served.
fn sdk_run() -> (String, Vec<(String, String)>) {
    let arm = ArmDouble::start();
    // Small pages, so every list is followed through nextLink; two polls per operation.
    arm.set_page_size(2);
    arm.set_polls(2);
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("azuredeploy.json");
    // The SDK script sends no parameters: the operator's object id (the one parameter without
    // a default) gets the caller's as its default here, as apply would pass it.
    let mut example = common::example_template();
    example["parameters"]["operatorObjectId"]["defaultValue"] =
        serde_json::json!(support::doubles::arm::CALLER_OBJECT_ID);
    std::fs::write(&template, example.to_string()).unwrap();
    let output = common::sdk_command("check_arm_double.py")
        .args([arm.url(), arm.subscription(), &arm.token()])
        .arg(&template)
        .args(["nomad-example", "nomad-example-servers"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK check failed:\n{stdout}\n{stderr}"
    );
    (stdout.into_owned(), arm.operations_used())
}

#[test]
fn microsofts_python_sdks_read_every_answer_of_the_double() {
    let (stdout, used) = sdk_run();
    for operation in [
        "Deployments_CreateOrUpdate",
        "NetworkInterfaces_ListVirtualMachineScaleSetNetworkInterfaces at 2017-03-30",
        "VirtualMachineScaleSets_DeleteInstances",
        "ResourceGroups_Delete",
    ] {
        assert!(
            stdout.contains(&format!("ok {operation}")),
            "{operation}:\n{stdout}"
        );
    }
    let used: Vec<String> = used.into_iter().map(|(o, v)| format!("{o} {v}")).collect();
    eprintln!("operations the SDKs used:\n  {}", used.join("\n  "));
    for operation in [
        "Usage_List 2024-11-01",
        "Subnets_Get 2025-07-01",
        "Subnets_Delete 2025-07-01",
        "SecurityRules_Get 2025-07-01",
        "SecurityRules_Delete 2025-07-01",
        "Deployments_Delete 2025-04-01",
    ] {
        assert!(used.iter().any(|u| u == operation), "{operation}: {used:?}");
    }
}

/// A new operation in a tool without SDK coverage fails here: every (operationId, api-version)
/// the tools send in the conformance run is one the SDKs drove the double through.
#[test]
fn every_operation_the_tools_send_is_one_the_sdks_checked() {
    let tools = operations_the_tools_send();
    let (_, sdk) = sdk_run();
    let missing: Vec<String> = tools
        .iter()
        .filter(|pair| !sdk.contains(pair))
        .map(|(o, v)| format!("{o} {v}"))
        .collect();
    assert!(
        missing.is_empty(),
        "operations the tools send that tests/sdk/check_arm_double.py does not drive through Microsoft's SDKs:\n  {}",
        missing.join("\n  ")
    );
}
