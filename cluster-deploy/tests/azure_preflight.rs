//! What plan and apply check against the ARM double before anything is deployed: a caller who
//! cannot grant roles (Contributor only) and a short quota are told, with the missing
//! permission and the shortfall; in a new group, quota is read before the first write, and a
//! group created only to read the caller's permissions is deleted again. (The shared
//! environment: tests/common/azure.rs.)

mod common;

use serde_json::json;

use common::azure::{count, setup};

#[test]
fn a_caller_who_cannot_grant_roles_is_told_before_anything_is_deployed() {
    let env = setup();
    env.arm
        .add_resource_group("nomad-example", "westeurope", json!({}));
    env.arm
        .set_caller_permissions(support::doubles::arm::rbac::contributor());
    let run = env.run(&["plan"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("Microsoft.Authorization/roleAssignments/write"),
        "{}",
        run.stderr
    );
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("Microsoft.Authorization/roleAssignments/write")
            && run
                .stderr
                .contains("Role Based Access Control Administrator"),
        "{}",
        run.stderr
    );
    assert_eq!(count(&env.arm, "PUT", "/deployments/"), 0);
    assert!(env
        .arm
        .resource_named(
            "Microsoft.Compute/virtualMachineScaleSets",
            "nomad-example-servers"
        )
        .is_none());
}

#[test]
fn short_quota_is_reported_with_the_shortfall_before_deploying() {
    let env = setup();
    env.arm
        .add_resource_group("nomad-example", "westeurope", json!({}));
    // Servers: 3 x Standard_D2s_v5, clients: 6 x Standard_D4s_v5 = 30 vCPUs of DSv5.
    env.arm.set_usage("westeurope", "standardDSv5Family", 8, 20);
    let run = env.run(&["plan"]);
    assert_ne!(run.code, 0, "{}", run.stdout);
    assert!(
        run.stderr.contains("standardDSv5Family")
            && run.stderr.contains("needs 30")
            && run.stderr.contains("short by 18"),
        "{}",
        run.stderr
    );
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("short by 18"), "{}", run.stderr);
    assert_eq!(count(&env.arm, "PUT", "/deployments/"), 0);
}

/// Quota is read before the first write: a short quota leaves no trace, not even the group.
#[test]
fn short_quota_in_a_new_group_writes_nothing_at_all() {
    let env = setup();
    env.arm.set_usage("westeurope", "standardDSv5Family", 8, 20);
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("short by 18"), "{}", run.stderr);
    let writes: Vec<String> = env
        .arm
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.method != "POST")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
    assert!(env.arm.resource_group("nomad-example").is_none());
}

/// Permissions can be read only on a group that exists: apply creates the group, reads them,
/// and takes the new, empty group away again when the caller cannot grant roles.
#[test]
fn a_new_group_is_not_left_behind_when_the_caller_cannot_grant_roles() {
    let env = setup();
    env.arm
        .set_caller_permissions(support::doubles::arm::rbac::contributor());
    let run = env.run(&["apply"]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("Microsoft.Authorization/roleAssignments/write"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the resource group nomad-example it had just created was deleted again"),
        "{}",
        run.stderr
    );
    assert_eq!(count(&env.arm, "PUT", "/deployments/"), 0);
    assert!(env.arm.resource_group("nomad-example").is_none());
}
