//! Microsoft's Python SDKs (azure-mgmt-keyvault, azure-mgmt-authorization, azure-keyvault-secrets;
//! pinned in `tests/sdk/requirements.txt`) drive the Key Vault management of the ARM double and
//! the Key Vault data-plane double: an independent client that follows Microsoft's REST specs
//! and, for the data plane, runs the SDK's own challenge flow against the double's 401. The data
//! plane is reached over TLS with certificates made by `cluster_deploy::secrets::pki`, so
//! Python's ssl (OpenSSL) also checks those.
//!
//! The SDKs live in the `target/azure-sdk` virtualenv that `scripts/install-test-deps.sh` makes
//! (`AZURE_SDK_PYTHON` names another interpreter); without it this test fails and says how to
//! create it. It never skips.

mod common;

use std::time::SystemTime;

use cluster_deploy::secrets::pki::{self, Lifetimes, PkiSpec};
use support::doubles::arm::{ArmDouble, CALLER_OBJECT_ID, TENANT};
use support::doubles::keyvault::KeyVaultDouble;
use support::doubles::tokens::Claims;

#[test]
fn microsofts_python_sdks_drive_the_key_vault_doubles() {
    let arm = ArmDouble::start();
    arm.set_page_size(1);
    arm.set_polls(2);
    let vault = "nomad-sdk-kv";
    let kv = KeyVaultDouble::start_linked(vault, arm.key_vault_directory());
    kv.set_settling_requests(1);
    let tls = tempfile::tempdir().unwrap();
    let certs = pki::generate(
        &PkiSpec {
            cluster: "sdk".into(),
            region: "global".into(),
            server_sans: Vec::new(),
            lifetimes: Lifetimes::default(),
        },
        SystemTime::now(),
    )
    .unwrap();
    std::fs::write(tls.path().join("ca.pem"), certs.ca.cert_pem()).unwrap();
    std::fs::write(tls.path().join("server.pem"), &certs.server.cert_pem).unwrap();
    std::fs::write(
        tls.path().join("server-key.pem"),
        certs.server.key_pem.expose(),
    )
    .unwrap();
    let kv_token = Claims::new(support::keyvault::RESOURCE, CALLER_OBJECT_ID, TENANT).issue();
    let output = common::sdk_command("check_keyvault_doubles.py")
        .args([
            arm.url(),
            arm.subscription(),
            &arm.token(),
            kv.url(),
            vault,
            CALLER_OBJECT_ID,
            &kv_token,
            TENANT,
        ])
        .arg(tls.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the SDK check failed:\n{stdout}\n{stderr}"
    );
    for line in [
        "ok the SDK's challenge flow asked for the scope and tenant the 401 named",
        "ok DeleteSecret, polled until GetDeletedSecret answers",
        "ok Vaults_CreateOrUpdate on a soft-deleted name (409 ConflictError)",
        "ok recovered vault keeps its secrets",
        "ok Vaults_PurgeDeleted (long-running)",
    ] {
        assert!(stdout.contains(line), "{line}:\n{stdout}");
    }
    // The SDK's first request carries no token, as Key Vault's docs say SDK clients do.
    let first = &kv.served()[0];
    assert_eq!(first.status, 401);
    assert!(first.request.header("authorization").is_none());
    // The pollers waited through the settling deletion and recovery (404, then 200).
    let polls: Vec<u16> = kv
        .served()
        .iter()
        .filter(|s| s.request.method == "GET" && s.request.path == "/deletedsecrets/nomad-extra-0")
        .map(|s| s.status)
        .collect();
    assert!(polls.starts_with(&[404, 200]), "{polls:?}");
    let used: Vec<String> = arm
        .operations_used()
        .into_iter()
        .chain(kv.operations_used())
        .map(|(o, v)| format!("{o} {v}"))
        .collect();
    eprintln!("operations the SDKs used:\n  {}", used.join("\n  "));
    for op in [
        "Vaults_CreateOrUpdate 2025-05-01",
        "Vaults_PurgeDeleted 2025-05-01",
        "RoleAssignments_Create 2022-04-01",
        "SetSecret 7.6",
        "GetSecretVersions 7.6",
        "RecoverDeletedSecret 7.6",
        "PurgeDeletedSecret 7.6",
    ] {
        assert!(used.contains(&op.to_string()), "{op}: {used:?}");
    }
}
