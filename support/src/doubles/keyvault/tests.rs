//! The Key Vault double's own tests: what it answers on the wire, checked against secrets.json
//! and Microsoft's documented answers (the client's behaviour is in `support/tests/keyvault.rs`).

use serde_json::Value;

use super::super::server::test_client as client;
use super::*;

const PRINCIPAL: &str = "00000000-0000-0000-0000-00000000abcd";

fn token(audience: &str) -> String {
    Claims::new(audience, PRINCIPAL, TENANT).issue()
}

fn send(
    kv: &KeyVaultDouble,
    method: &str,
    path_and_query: &str,
    body: Option<Value>,
    bearer: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = client().request(
        method.parse().unwrap(),
        format!("{}{path_and_query}", kv.url()),
    );
    if let Some(t) = bearer {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().unwrap_or(Value::Null))
}

fn officer() -> KeyVaultDouble {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.assign(PRINCIPAL, Scope::Vault, KeyVaultRole::SecretsOfficer);
    kv
}

#[test]
fn requests_outside_secrets_json_are_refused_and_fail_the_test_on_drop() {
    let kv = officer();
    let t = token(crate::keyvault::RESOURCE);
    let (status, _, body) = send(&kv, "GET", "/secrets/x/?api-version=7.5", None, Some(&t));
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "BadParameter");
    assert!(body["error"]["message"].as_str().unwrap().contains("(7.5)"));
    assert_eq!(
        send(&kv, "GET", "/keys/x?api-version=7.6", None, Some(&t)).0,
        404
    );
    assert_eq!(send(&kv, "GET", "/secrets/x/", None, Some(&t)).0, 400);
    assert_eq!(
        send(&kv, "PATCH", "/secrets/x?api-version=7.6", None, Some(&t)).0,
        405
    );
    assert_eq!(kv.refused().len(), 4);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(kv)));
    let message = outcome.unwrap_err();
    let text = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(text.contains("no operation of secrets.json"), "{text}");
    assert!(text.contains("GET /keys/x?api-version=7.6"), "{text}");
}

#[test]
fn the_latest_version_is_read_with_or_without_the_trailing_segment() {
    let kv = officer();
    let t = token(crate::keyvault::RESOURCE);
    let (status, _, set) = send(
        &kv,
        "PUT",
        "/secrets/nomad-ca-cert?api-version=7.6",
        Some(serde_json::json!({ "value": "pem", "contentType": "application/x-pem-file" })),
        Some(&t),
    );
    assert_eq!(status, 200);
    // SecretBundle as Key Vault answers it.
    let id = set["id"].as_str().unwrap();
    let version = id.rsplit('/').next().unwrap();
    assert_eq!(version.len(), 32);
    assert!(version
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(set["value"], "pem");
    assert_eq!(set["contentType"], "application/x-pem-file");
    assert_eq!(set["attributes"]["enabled"], true);
    assert_eq!(set["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
    assert_eq!(set["attributes"]["recoverableDays"], 90);
    assert!(set["attributes"]["created"].as_i64().unwrap() > 1_700_000_000);
    for path in [
        "/secrets/nomad-ca-cert?api-version=7.6".to_string(),
        "/secrets/nomad-ca-cert/?api-version=7.6".to_string(),
        format!("/secrets/nomad-ca-cert/{version}?api-version=7.6"),
    ] {
        let (status, _, got) = send(&kv, "GET", &path, None, Some(&t));
        assert_eq!(
            (status, got["value"].as_str()),
            (200, Some("pem")),
            "{path}"
        );
    }
    let (status, _, missing) = send(
        &kv,
        "GET",
        "/secrets/nomad-ca-cert/00000000000000000000000000000000?api-version=7.6",
        None,
        Some(&t),
    );
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "SecretNotFound");
    assert!(kv
        .operations_used()
        .iter()
        .all(|(op, v)| v == "7.6" && (op == "SetSecret" || op == "GetSecret")));
}

#[test]
fn a_request_without_a_usable_token_gets_the_documented_challenge() {
    let kv = officer();
    let (status, headers, body) = send(&kv, "GET", "/secrets?api-version=7.6", None, None);
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        format!("Bearer authorization=\"https://login.windows.net/{TENANT}\", resource=\"https://vault.azure.net\"")
    );
    assert_eq!(body["error"]["code"], "Unauthorized");
    assert_eq!(
        body["error"]["message"],
        "AKV10000: Request is missing a Bearer or PoP token."
    );
    let arm = token("https://management.azure.com/");
    let (status, headers, body) = send(&kv, "GET", "/secrets?api-version=7.6", None, Some(&arm));
    assert_eq!(status, 401);
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(
        body["error"]["message"],
        "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://management.azure.com/."
    );
    let foreign = Claims::new(crate::keyvault::RESOURCE, PRINCIPAL, "another-tenant").issue();
    assert_eq!(
        send(&kv, "GET", "/secrets?api-version=7.6", None, Some(&foreign)).0,
        401
    );
    assert_eq!(
        send(&kv, "GET", "/secrets?api-version=7.6", None, Some("opaque")).0,
        401
    );
}

#[test]
fn rbac_refusals_carry_the_documented_body() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    // Owner of the whole subscription: management rights only, no data actions.
    kv.assign(PRINCIPAL, Scope::Subscription, KeyVaultRole::Reader);
    let t = token(crate::keyvault::RESOURCE);
    let (status, _, body) = send(&kv, "GET", "/secrets/x/?api-version=7.6", None, Some(&t));
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "Forbidden");
    assert_eq!(body["error"]["innererror"]["code"], "ForbiddenByRbac");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("Caller is not authorized to perform action on resource."));
    assert!(message.contains(&format!("oid={PRINCIPAL}")));
    assert!(message.contains("Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'"));
    assert!(message.contains("/providers/microsoft.keyvault/vaults/nomad-test-kv/secrets/x'"));
    // Reader may list (readMetadata) but not read values.
    assert_eq!(
        send(&kv, "GET", "/secrets?api-version=7.6", None, Some(&t)).0,
        200
    );
    // A vault with access policies is not modelled: refused, never silently allowed.
    kv.set_rbac_authorization(false);
    let (status, _, body) = send(&kv, "GET", "/secrets?api-version=7.6", None, Some(&t));
    assert_eq!(
        (status, body["error"]["innererror"]["code"].as_str()),
        (403, Some("AccessDenied"))
    );
}

#[test]
fn propagation_is_counted_per_assignment_and_can_be_ended() {
    let kv = KeyVaultDouble::start("nomad-test-kv");
    kv.set_propagation_requests(100);
    kv.assign(PRINCIPAL, Scope::Vault, KeyVaultRole::SecretsOfficer);
    let t = token(crate::keyvault::RESOURCE);
    assert_eq!(
        send(&kv, "GET", "/secrets?api-version=7.6", None, Some(&t)).0,
        403
    );
    kv.propagate_all();
    assert_eq!(
        send(&kv, "GET", "/secrets?api-version=7.6", None, Some(&t)).0,
        200
    );
}

#[test]
fn limits_and_paging_parameters_are_enforced() {
    let kv = officer();
    let t = token(crate::keyvault::RESOURCE);
    let big = "x".repeat(crate::keyvault::MAX_SECRET_BYTES + 1);
    let (status, _, body) = send(
        &kv,
        "PUT",
        "/secrets/big?api-version=7.6",
        Some(serde_json::json!({ "value": big })),
        Some(&t),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("BadParameter"))
    );
    let (status, _, _) = send(
        &kv,
        "PUT",
        "/secrets/novalue?api-version=7.6",
        Some(serde_json::json!({ "contentType": "x" })),
        Some(&t),
    );
    assert_eq!(status, 400);
    assert_eq!(
        send(
            &kv,
            "GET",
            "/secrets?api-version=7.6&maxresults=26",
            None,
            Some(&t)
        )
        .0,
        400
    );
    let (status, _, page) = send(
        &kv,
        "GET",
        "/secrets?api-version=7.6&maxresults=25",
        None,
        Some(&t),
    );
    assert_eq!(status, 200);
    assert_eq!(page["value"], serde_json::json!([]));
    assert!(page["nextLink"].is_null());
}

#[test]
fn unmodelled_operations_say_so() {
    let kv = officer();
    let t = token(crate::keyvault::RESOURCE);
    let (status, _, body) = send(
        &kv,
        "POST",
        "/secrets/x/backup?api-version=7.6",
        Some(serde_json::json!({})),
        Some(&t),
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (501, Some("NotImplemented"))
    );
}

#[test]
fn created_comes_from_the_vaults_clock() {
    let kv = officer();
    let t = token(crate::keyvault::RESOURCE);
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_767_225_600);
    kv.set_clock(std::sync::Arc::new(move || at));
    let (status, _, set) = send(
        &kv,
        "PUT",
        "/secrets/nomad-ca-cert?api-version=7.6",
        Some(serde_json::json!({ "value": "pem" })),
        Some(&t),
    );
    assert_eq!(status, 200);
    assert_eq!(set["attributes"]["created"], 1_767_225_600);
    assert_eq!(kv.latest_created("nomad-ca-cert"), Some(1_767_225_600));
    assert_eq!(kv.latest_created("nomad-gossip-key"), None);
}
