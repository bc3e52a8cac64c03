//! Azure Key Vault data-plane double (secrets) on 127.0.0.1, shaped after Microsoft's
//! `secrets.json` 7.6 (`../shared/azure-rest-specs/`) and the Key Vault documentation
//! ("Authentication, requests, and responses", "Azure Key Vault REST API Error Codes", the RBAC
//! guide), never after our client.
//!
//! # API
//!
//! ```no_run
//! use support::doubles::keyvault::{KeyVaultDouble, KeyVaultRole, Scope};
//!
//! let kv = KeyVaultDouble::start("nomad-test-kv");
//! kv.assign("principal-oid", Scope::Vault, KeyVaultRole::SecretsOfficer);
//! kv.set_propagation_requests(2); // new assignments refuse the next 2 requests (403)
//! let vault_url = kv.url(); // "http://127.0.0.1:PORT": the client's vault URL
//! ```
//!
//! [`KeyVaultDouble::start_linked`] serves a vault of the ARM double instead
//! ([`super::arm::ArmDouble::key_vault_directory`]): its existence, `enableRbacAuthorization`,
//! `enablePurgeProtection`, retention, network rules, secrets and role assignments (made by
//! deployments or RoleAssignments_Create at any scope) come from there.
//!
//! # What it checks, in the service's order
//!
//! 1. The request is an operation of `secrets.json` at its api-version (the same matcher as
//!    the ARM double, [`super::arm::spec::key_vault_secrets_table`]); GetSecret's
//!    `secret-version` may be empty ("This URI fragment is optional", INDEX.md fact 11).
//!    Anything else is refused and recorded; dropping the double fails the test then
//!    ([`KeyVaultDouble::expect_refusals`] for tests that do it on purpose).
//! 2. Injected faults ([`KvFault`]): 429 with `Retry-After`, a 5xx, a dropped connection.
//! 3. A linked vault that does not exist (never made, soft-deleted or purged) has no DNS name:
//!    the connection closes without an answer.
//! 4. Authentication: 401 with `WWW-Authenticate: Bearer authorization="https://login.windows.net/<tenant>",
//!    resource="https://vault.azure.net"` and `{"error":{"code":"Unauthorized","message":...}}`:
//!    "AKV10000: Request is missing a Bearer or PoP token." without a token, "AKV10022: Invalid
//!    audience. Expected https://vault.azure.net, found: <aud>." for another audience (tokens
//!    are the doubles' JWTs, [`super::tokens`]), and for an expired token or another tenant.
//! 5. The firewall ([`access::firewall_refuses`]): 403 `Forbidden`/`ForbiddenByFirewall`.
//! 6. Authorization: a vault without `enableRbacAuthorization` uses access policies, which the
//!    double does not model (403 `AccessDenied`). With RBAC the caller (`oid`) needs a role
//!    assignment granting the operation's data action ([`access`]); a new assignment refuses the
//!    principal's next [`KeyVaultDouble::set_propagation_requests`] requests first, as a real
//!    one does for minutes. Both answer 403 `Forbidden` with `innererror.code`
//!    `ForbiddenByRbac` and the message Key Vault gives ("Caller is not authorized to perform
//!    action on resource. If role assignments, deny assignments or role definitions were
//!    changed recently, please observe propagation time. ...").
//! 7. The operation ([`store`]): versions, 404 `SecretNotFound`, soft delete, 409 `Conflict`
//!    `ObjectIsDeletedButRecoverable` ("Secret X is currently in a deleted but recoverable
//!    state, and its name cannot be reused; in this state, the secret can only be recovered or
//!    purged."), recovery, purge (403 while the vault has purge protection: 'Operation "purge"
//!    is not allowed because purge protection is enabled for this vault. Key Vault service will
//!    automatically purge it after the retention period has passed.'), paging with
//!    `maxresults` (at most 25) and `nextLink`, and the 25 KB value limit.
//!
//! Deletions and recoveries settle in the background: for [`KeyVaultDouble::set_settling_requests`]
//! requests after one, the object is neither live nor deleted (404), as the SDKs' pollers
//! expect. UpdateSecret, BackupSecret and RestoreSecret are spec operations the double does not
//! model (501).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{json, Value};

use super::arm::spec;
use super::arm::{SUBSCRIPTION, TENANT};
pub use super::server::RecordedRequest;
use super::server::{Reply, Server};
use super::tokens::Claims;

pub mod access;
mod operations;
pub mod store;

pub use access::{KeyVaultRole, Origin};
pub use store::{new_store, SecretStore, SharedStore};

/// A vault as the management plane holds it.
#[derive(Debug, Clone)]
pub struct VaultInfo {
    pub name: String,
    /// `/subscriptions/.../providers/Microsoft.KeyVault/vaults/<name>`.
    pub resource_id: String,
    pub location: String,
    pub rbac_authorization: bool,
    pub purge_protection: bool,
    pub retention_days: u32,
    pub network_acls: Value,
    pub public_network_access: String,
    pub store: SharedStore,
}

/// A role assignment as the management plane holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    pub id: String,
    pub scope: String,
    pub principal_id: String,
    /// A role definition GUID or full id.
    pub role_definition_id: String,
}

/// Where a linked double learns about its vault and the role assignments.
pub trait Directory: Send + Sync {
    /// The live vault of this name; `None` when it does not exist or is soft-deleted.
    fn vault(&self, name: &str) -> Option<VaultInfo>;
    /// Every role assignment, at every scope.
    fn role_assignments(&self) -> Vec<RoleAssignment>;
}

/// The scope of an assignment made through the double itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Subscription,
    ResourceGroup,
    Vault,
    Secret(String),
}

/// A fault for the next request that matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvFault {
    /// 429 with `Retry-After`.
    Throttle { retry_after_secs: u64 },
    /// A server error.
    ServerError(u16),
    /// The connection closes without an answer.
    DropConnection,
}

/// How the double judged one request (the ARM double's verdicts; a data plane has no polls).
pub use super::arm::Verdict;

/// A request, its verdict and the caller its token named.
#[derive(Debug, Clone)]
pub struct Served {
    pub request: RecordedRequest,
    pub verdict: Verdict,
    pub caller: Option<String>,
    pub status: u16,
}

struct State {
    name: String,
    base: String,
    standalone: VaultInfo,
    link: Option<Arc<dyn Directory>>,
    assignments: Vec<RoleAssignment>,
    propagation_requests: u32,
    /// Assignment id -> requests it still refuses.
    pending: BTreeMap<String, u32>,
    origins: BTreeMap<String, Origin>,
    settling_requests: u32,
    faults: VecDeque<(Option<String>, KvFault)>,
    served: Vec<Served>,
    expect_refusals: bool,
    counter: u64,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock_store(store: &SharedStore) -> MutexGuard<'_, SecretStore> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// The resource group of the standalone vault.
pub const STANDALONE_GROUP: &str = "nomad-kv-rg";

/// Key Vault's error body (secrets.json `KeyVaultError`).
fn kv_error(status: u16, code: &str, message: &str, inner: Option<&str>) -> Reply {
    let mut error = json!({ "code": code, "message": message });
    if let Some(inner) = inner {
        error["innererror"] = json!({ "code": inner });
    }
    Reply::json(status, &json!({ "error": error }))
}

/// A running Key Vault double. Dropping it stops the server and checks every request was an
/// operation of the spec.
pub struct KeyVaultDouble {
    server: Server,
    state: Arc<Mutex<State>>,
}

impl KeyVaultDouble {
    /// A vault of its own (RBAC authorization on, soft delete with 90 days' retention, no purge
    /// protection, no network rules), in [`STANDALONE_GROUP`].
    pub fn start(vault_name: &str) -> Self {
        Self::start_with(vault_name, None)
    }

    /// The data plane of the ARM double's vault `vault_name`.
    pub fn start_linked(vault_name: &str, directory: Arc<dyn Directory>) -> Self {
        Self::start_with(vault_name, Some(directory))
    }

    fn start_with(vault_name: &str, link: Option<Arc<dyn Directory>>) -> Self {
        let _ = spec::key_vault_secrets_table();
        let state = Arc::new(Mutex::new(State {
            name: vault_name.to_string(),
            base: String::new(),
            standalone: VaultInfo {
                name: vault_name.to_string(),
                resource_id: format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{STANDALONE_GROUP}/providers/Microsoft.KeyVault/vaults/{vault_name}"),
                location: "westeurope".into(),
                rbac_authorization: true,
                purge_protection: false,
                retention_days: 90,
                network_acls: Value::Null,
                public_network_access: "Enabled".into(),
                store: new_store(),
            },
            link,
            assignments: Vec::new(),
            propagation_requests: 0,
            pending: BTreeMap::new(),
            origins: BTreeMap::new(),
            settling_requests: 0,
            faults: VecDeque::new(),
            served: Vec::new(),
            expect_refusals: false,
            counter: 0,
        }));
        let handler_state = state.clone();
        let server = Server::start_with_url(|url| {
            lock(&handler_state).base = url.to_string();
            move |request: &RecordedRequest| handle(&handler_state, request)
        });
        Self { server, state }
    }

    /// `http://127.0.0.1:PORT`: the vault URL a client uses.
    pub fn url(&self) -> &str {
        self.server.url()
    }

    pub fn vault_name(&self) -> String {
        lock(&self.state).name.clone()
    }

    /// The vault's resource id (the standalone one; a linked vault's comes from ARM).
    pub fn resource_id(&self) -> String {
        let state = lock(&self.state);
        match vault_info(&state) {
            Some(v) => v.resource_id,
            None => state.standalone.resource_id.clone(),
        }
    }

    /// Grants `role` to `principal` at `scope` (relative to the vault); returns the id.
    pub fn assign(&self, principal: &str, scope: Scope, role: KeyVaultRole) -> String {
        let mut state = lock(&self.state);
        let vault = vault_info(&state)
            .map(|v| v.resource_id)
            .unwrap_or_else(|| state.standalone.resource_id.clone());
        let scope = match scope {
            Scope::Subscription => format!("/subscriptions/{SUBSCRIPTION}"),
            Scope::ResourceGroup => vault
                .split("/providers/")
                .next()
                .unwrap_or_default()
                .to_string(),
            Scope::Vault => vault,
            Scope::Secret(name) => format!("{vault}/secrets/{name}"),
        };
        state.counter += 1;
        let id = format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments/00000000-0000-0000-0000-{:012}",
            state.counter
        );
        state.assignments.push(RoleAssignment {
            id: id.clone(),
            scope,
            principal_id: principal.to_string(),
            role_definition_id: role.definition_id().to_string(),
        });
        id
    }

    /// Role assignments the double sees from now on refuse their principal's next `requests`
    /// requests (403 `ForbiddenByRbac`) before they take effect.
    pub fn set_propagation_requests(&self, requests: u32) {
        lock(&self.state).propagation_requests = requests;
    }

    /// Every assignment takes effect now.
    pub fn propagate_all(&self) {
        for left in lock(&self.state).pending.values_mut() {
            *left = 0;
        }
    }

    /// Deletions and recoveries take this many requests on the object to settle.
    pub fn set_settling_requests(&self, requests: u32) {
        lock(&self.state).settling_requests = requests;
    }

    /// Where `principal`'s requests come from (for network rules).
    pub fn set_origin(&self, principal: &str, origin: Origin) {
        lock(&self.state)
            .origins
            .insert(principal.to_string(), origin);
    }

    /// The standalone vault's purge protection.
    pub fn set_purge_protection(&self, enabled: bool) {
        lock(&self.state).standalone.purge_protection = enabled;
    }

    /// The standalone vault's network rules (`networkAcls`) and `publicNetworkAccess`.
    pub fn set_network_rules(&self, network_acls: Value, public_network_access: &str) {
        let mut state = lock(&self.state);
        state.standalone.network_acls = network_acls;
        state.standalone.public_network_access = public_network_access.to_string();
    }

    /// The standalone vault's authorization model.
    pub fn set_rbac_authorization(&self, enabled: bool) {
        lock(&self.state).standalone.rbac_authorization = enabled;
    }

    /// Queues a fault for the next request (whose path contains `path_contains`, when given).
    pub fn inject(&self, path_contains: Option<&str>, fault: KvFault) {
        lock(&self.state)
            .faults
            .push_back((path_contains.map(str::to_string), fault));
    }

    /// This test sends non-spec requests on purpose.
    pub fn expect_refusals(&self) {
        lock(&self.state).expect_refusals = true;
    }

    /// The store of the vault served (for seeding and assertions).
    pub fn store(&self) -> SharedStore {
        let state = lock(&self.state);
        vault_info(&state)
            .map(|v| v.store)
            .unwrap_or_else(|| state.standalone.store.clone())
    }

    /// The vault's clock (`attributes.created` of new versions) from now on: `clock` instead of
    /// the wall clock. Set on the store of the vault served now (after apply made it).
    pub fn set_clock(&self, clock: Arc<dyn Fn() -> std::time::SystemTime + Send + Sync>) {
        lock_store(&self.store()).set_clock(clock);
    }

    /// `attributes.created` (Unix seconds) of the latest version of a live secret.
    pub fn latest_created(&self, name: &str) -> Option<i64> {
        lock_store(&self.store()).latest_created(name)
    }

    /// The latest value of a live secret.
    pub fn secret_value(&self, name: &str) -> Option<String> {
        lock_store(&self.store()).latest_value(name)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state)
            .served
            .iter()
            .map(|s| s.request.clone())
            .collect()
    }

    pub fn served(&self) -> Vec<Served> {
        lock(&self.state).served.clone()
    }

    /// The distinct (operationId, api-version) pairs served, in the order first used.
    pub fn operations_used(&self) -> Vec<(String, String)> {
        super::arm::operations_used_in(lock(&self.state).served.iter().map(|s| &s.verdict))
    }

    /// Requests refused as no operation of the spec.
    pub fn refused(&self) -> Vec<Served> {
        lock(&self.state)
            .served
            .iter()
            .filter(|s| matches!(s.verdict, Verdict::Refused { .. }))
            .cloned()
            .collect()
    }
}

impl Drop for KeyVaultDouble {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        let state = lock(&self.state);
        if state.expect_refusals {
            return;
        }
        let refused =
            super::arm::refusal_lines(state.served.iter().map(|s| (&s.request, &s.verdict)));
        if !refused.is_empty() {
            panic!(
                "the Key Vault double received requests that are no operation of secrets.json (../shared/azure-rest-specs):\n{}",
                refused.join("\n")
            );
        }
    }
}

fn vault_info(state: &State) -> Option<VaultInfo> {
    match &state.link {
        Some(directory) => directory.vault(&state.name),
        None => Some(state.standalone.clone()),
    }
}

// ------------------------------------------------------------------ request handling

/// A matched request.
struct Call<'a> {
    request: &'a RecordedRequest,
    operation_id: String,
    params: BTreeMap<String, String>,
}

impl Call<'_> {
    fn secret(&self) -> &str {
        self.params
            .get("secret-name")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Matches the request against secrets.json.
fn judge(request: &RecordedRequest) -> Result<(String, String, BTreeMap<String, String>), Verdict> {
    let refuse = |status: u16, code: &str, message: String| Verdict::Refused {
        status,
        code: code.to_string(),
        message,
    };
    let Some(version) = request.query_param("api-version") else {
        return Err(refuse(
            400,
            "BadParameter",
            "The api-version query parameter is required. Supported version: 7.6.".into(),
        ));
    };
    let table = spec::key_vault_secrets_table();
    let matched = table
        .resolve(&request.method, &request.path, version)
        .or_else(|refusal| {
            // GetSecret's `secret-version` "is optional. If not specified, the latest version
            // of the secret is returned": `/secrets/{name}` and `/secrets/{name}/`.
            let trimmed = request.path.trim_end_matches('/');
            match table.resolve(&request.method, &format!("{trimmed}/latest"), version) {
                Ok(mut m) if m.operation.operation_id == "GetSecret" => {
                    m.params.insert("secret-version".into(), String::new());
                    Ok(m)
                }
                // GetSecret's path at a version it does not have.
                Err(r) if r.status == 400 => Err(r),
                _ => Err(refusal),
            }
        });
    match matched {
        Ok(m) => Ok((
            m.operation.operation_id.clone(),
            m.api_version.clone(),
            m.params.clone(),
        )),
        Err(r) => Err(match r.status {
            400 => refuse(
                400,
                "BadParameter",
                format!(
                    "The specified version ({version}) is not recognized. Consider using the latest supported version (7.6)."
                ),
            ),
            405 => refuse(
                405,
                "BadParameter",
                format!("The requested resource does not support http method '{}'.", request.method),
            ),
            _ => refuse(
                404,
                "NotFound",
                format!("No operation of secrets.json matches '{}'.", request.path),
            ),
        }),
    }
}

fn handle(shared: &Arc<Mutex<State>>, request: &RecordedRequest) -> Reply {
    let mut state = lock(shared);
    let judged = judge(request);
    let (verdict, matched) = match judged {
        Ok((operation_id, api_version, params)) => (
            Verdict::Operation {
                operation_id: operation_id.clone(),
                api_version,
            },
            Some((operation_id, params)),
        ),
        Err(v) => (v, None),
    };
    let index = state.served.len();
    state.served.push(Served {
        request: request.clone(),
        verdict: verdict.clone(),
        caller: None,
        status: 0,
    });
    let (reply, caller) = answer(&mut state, request, &verdict, matched);
    let served = &mut state.served[index];
    served.caller = caller;
    served.status = reply.status();
    reply
}

fn answer(
    state: &mut State,
    request: &RecordedRequest,
    verdict: &Verdict,
    matched: Option<(String, BTreeMap<String, String>)>,
) -> (Reply, Option<String>) {
    if let Verdict::Refused {
        status,
        code,
        message,
    } = verdict
    {
        return (kv_error(*status, code, message, None), None);
    }
    if let Some(i) = state.faults.iter().position(|(path, _)| {
        path.as_deref().is_none_or(|p| {
            request
                .path
                .to_ascii_lowercase()
                .contains(&p.to_ascii_lowercase())
        })
    }) {
        let (_, fault) = state.faults.remove(i).expect("position is valid");
        return (
            match fault {
                KvFault::DropConnection => Reply::no_answer(),
                KvFault::ServerError(status) => kv_error(
                    status,
                    "InternalServerError",
                    "The service encountered an internal error. Please try again.",
                    None,
                ),
                KvFault::Throttle { retry_after_secs } => kv_error(
                    429,
                    "Throttled",
                    "Request was not processed because too many requests were received.",
                    None,
                )
                .header("Retry-After", retry_after_secs.to_string()),
            },
            None,
        );
    }
    let Some(vault) = vault_info(state) else {
        // No vault by this name: its DNS name resolves nowhere.
        return (Reply::no_answer(), None);
    };
    let (operation_id, params) = matched.expect("an operation verdict has its match");
    let call = Call {
        request,
        operation_id,
        params,
    };
    let claims = match authenticate(request) {
        Ok(c) => c,
        Err(message) => return (unauthorized(&message), None),
    };
    let caller = claims.object_id.clone();
    let origin = state.origins.get(&caller).cloned().unwrap_or_default();
    if access::firewall_refuses(&vault.network_acls, &vault.public_network_access, &origin) {
        return (
            kv_error(
                403,
                "Forbidden",
                &format!(
                    "Client address is not authorized and caller is not a trusted service.\r\nClient address: {}\r\nCaller: appid={};oid={};iss=https://sts.windows.net/{}/\r\nVault: {};location={}",
                    origin.address, claims.app_id, caller, claims.tenant_id, vault.name, vault.location
                ),
                Some("ForbiddenByFirewall"),
            ),
            Some(caller),
        );
    }
    if let Some(refusal) = authorize(state, &vault, &call, &claims) {
        return (refusal, Some(caller));
    }
    let settling = state.settling_requests;
    let base = public_base(request, &state.base);
    (
        operations::operate(&base, &vault, &call, settling),
        Some(caller),
    )
}

/// The vault URL the client used, for ids and `nextLink`s: the `Host` it asked for (behind a
/// TLS front, `X-Forwarded-Proto: https`), as the service names itself by the host it is
/// reached at.
fn public_base(request: &RecordedRequest, own: &str) -> String {
    let Some(host) = request.header("host").filter(|h| !h.is_empty()) else {
        return own.to_string();
    };
    let scheme = match request.header("x-forwarded-proto") {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

fn unauthorized(message: &str) -> Reply {
    kv_error(401, "Unauthorized", message, None).header(
        "WWW-Authenticate",
        format!(
            "Bearer authorization=\"https://login.windows.net/{TENANT}\", resource=\"{}\"",
            crate::keyvault::RESOURCE
        ),
    )
}

fn authenticate(request: &RecordedRequest) -> Result<Claims, String> {
    let Some(token) = request
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return Err("AKV10000: Request is missing a Bearer or PoP token.".into());
    };
    let claims = Claims::read(token).ok_or_else(|| {
        "Token validation failed: the bearer token is not a valid JWT.".to_string()
    })?;
    if !super::tokens::is_key_vault_resource(&claims.audience) {
        return Err(format!(
            "AKV10022: Invalid audience. Expected {}, found: {}.",
            crate::keyvault::RESOURCE,
            claims.audience
        ));
    }
    if claims.expired() {
        return Err("Token validation failed: the token has expired.".into());
    }
    if claims.tenant_id != TENANT {
        return Err(format!(
            "Token validation failed: the token's tenant {} is not the vault's tenant {TENANT}.",
            claims.tenant_id
        ));
    }
    Ok(claims)
}

/// The caller's right to the operation (RBAC), or the 403.
fn authorize(state: &mut State, vault: &VaultInfo, call: &Call, claims: &Claims) -> Option<Reply> {
    let action = access::action_of(&call.operation_id)?;
    let caller_line = format!(
        "Caller: appid={};oid={};iss=https://sts.windows.net/{}/",
        claims.app_id, claims.object_id, claims.tenant_id
    );
    if !vault.rbac_authorization {
        return Some(kv_error(
            403,
            "Forbidden",
            &format!(
                "The user, group or application '{}' does not have secrets permission on key vault '{};location={}'. The double models only vaults with enableRbacAuthorization.",
                caller_line.trim_start_matches("Caller: "),
                vault.name,
                vault.location
            ),
            Some("AccessDenied"),
        ));
    }
    let target = match call.operation_id.as_str() {
        "GetSecrets" | "GetDeletedSecrets" | "RestoreSecret" => vault.resource_id.clone(),
        _ => format!("{}/secrets/{}", vault.resource_id, call.secret()),
    };
    let mut all = state.assignments.clone();
    if let Some(directory) = &state.link {
        all.extend(directory.role_assignments());
    }
    for a in &all {
        let delay = state.propagation_requests;
        state
            .pending
            .entry(a.id.to_ascii_lowercase())
            .or_insert(delay);
    }
    let applicable: Vec<&RoleAssignment> = all
        .iter()
        .filter(|a| a.principal_id.eq_ignore_ascii_case(&claims.object_id))
        .filter(|a| access::covers(&a.scope, &target))
        .filter(|a| access::grants(&a.role_definition_id, action))
        .collect();
    let mut propagated = false;
    for a in &applicable {
        let left = state
            .pending
            .get_mut(&a.id.to_ascii_lowercase())
            .expect("registered above");
        if *left == 0 {
            propagated = true;
        }
    }
    if propagated {
        return None;
    }
    for a in &applicable {
        if let Some(left) = state.pending.get_mut(&a.id.to_ascii_lowercase()) {
            *left = left.saturating_sub(1);
        }
    }
    Some(kv_error(
        403,
        "Forbidden",
        &format!(
            "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time.\r\n{caller_line}\r\nAction: '{action}'\r\nResource: '{}'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: {};location={}\r\n",
            target.to_ascii_lowercase(),
            vault.name,
            vault.location
        ),
        Some("ForbiddenByRbac"),
    ))
}

#[cfg(test)]
mod tests;
