//! Every command once (apply, plan with what-if, outputs, status, destroy: the conformance run
//! of tests/common/azure.rs) against the ARM double, which matches each request against
//! Microsoft's REST specs: every (operationId, api-version) used is printed, the expected ones
//! are among them, and nothing was refused. (What the SDKs exercise: tests/sdk.rs.)

mod common;

use common::azure::setup;

#[test]
fn every_command_uses_only_operations_of_the_specs() {
    let env = setup();
    common::azure::conformance_run(&env);
    let used = env.arm.operations_used();
    let listing: Vec<String> = used.iter().map(|(o, v)| format!("{o} {v}")).collect();
    eprintln!("operations used:\n  {}", listing.join("\n  "));
    for expected in [
        "ResourceGroups_CreateOrUpdate 2025-04-01",
        "Deployments_WhatIf 2025-04-01",
        "Deployments_CreateOrUpdate 2025-04-01",
        "NetworkInterfaces_ListVirtualMachineScaleSetNetworkInterfaces 2017-03-30",
        "VirtualMachineScaleSetVMs_List 2024-11-01",
        "Permissions_ListForResourceGroup 2022-04-01",
        "Usage_List 2024-11-01",
        "ResourceSkus_List 2021-07-01",
        "VirtualMachineScaleSets_Delete 2024-11-01",
        "NetworkSecurityGroups_Delete 2025-07-01",
        "RoleAssignments_Delete 2022-04-01",
        "ResourceGroups_Delete 2025-04-01",
    ] {
        assert!(
            listing.iter().any(|l| l == expected),
            "{expected} not used:\n{listing:#?}"
        );
    }
    // Dropping the double checks that nothing else was sent; say so here too.
    assert!(env.arm.refused().is_empty(), "{:#?}", env.arm.refused());
}
