//! Azure Key Vault data-plane client for secrets (api-version 7.6, Microsoft's `secrets.json`,
//! `../shared/azure-rest-specs/specification/keyvault/data-plane/Microsoft.KeyVault/stable/7.6`).
//! cluster-deploy uploads the cluster's secrets with it; run-nomad fetches them at boot.
//!
//! - The vault URL is a parameter: `https://<name>.vault.azure.net/` in production
//!   ([`vault_url`]); plain `http://` only for a loopback address (the tests' double).
//! - Tokens come from a [`TokenSource`] for the Key Vault audience ([`RESOURCE`]; a v2.0 token
//!   endpoint wants [`SCOPE`]): Key Vault refuses a token for any other audience ("AKV10022:
//!   Invalid audience"). A 401 carries a challenge, `WWW-Authenticate: Bearer
//!   authorization="https://login.windows.net/<tenant>", resource="https://vault.azure.net"`
//!   ("Authentication, requests, and responses", Key Vault docs): the client then asks its
//!   token source for a fresh token and tries once more, unless the challenge names another
//!   resource (a vault of another cloud), which is an error, not a retry.
//! - Retries ([`Options`]) are bounded by one deadline per call: connection errors, 429 (with
//!   `Retry-After`), 5xx, and 403 `ForbiddenByRbac`, which is what Key Vault answers while a new
//!   role assignment propagates ("If role assignments ... were changed recently, please observe
//!   propagation time"; the REST error-code page: "If you receive a 403 error immediately after
//!   adding an identity ..., you can handle it by adding periodic retry"). 403
//!   `ForbiddenByFirewall` (network rules) and other 4xx fail at once.
//! - Errors name the vault URL, the operation, the secret name and the status, with at most
//!   [`crate::http::ERROR_BODY_LIMIT`] bytes of the body. Secret values never reach an error, a
//!   log line or a `Debug` print: they travel as [`Secret`].

use std::sync::Arc;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::json;

use crate::http::{self, ClientOptions};
use crate::retry::{Attempt, Policy, RetryError};
use crate::secret::Secret;

/// The data-plane api-version every request carries.
pub const API_VERSION: &str = "7.6";
/// The token audience (IMDS's and the v1 endpoints' `resource`): "The resource for all tokens to
/// access a Key Vault is https://vault.azure.net (with no trailing slash)" (REST error codes).
pub const RESOURCE: &str = "https://vault.azure.net";
/// The Microsoft identity platform v2.0 scope for the same audience (secrets.json `security`).
pub const SCOPE: &str = "https://vault.azure.net/.default";
/// Public cloud vault host suffix: `https://<vault-name>.vault.azure.net`.
pub const DNS_SUFFIX: &str = "vault.azure.net";

/// A secret value's size limit: "Secret value size: 25 KB" (Key Vault service limits).
pub const MAX_SECRET_BYTES: usize = 25 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where bearer tokens for the Key Vault audience come from (cluster-deploy's login, run-nomad's
/// managed identity, [`crate::managed_identity::ImdsTokens`]).
pub trait TokenSource: Send + Sync {
    /// A token for [`RESOURCE`]; may be cached.
    fn token(&self) -> Result<Secret, BoxError>;
    /// Forget a cached token: the vault refused it (401).
    fn invalidate(&self) {}
}

impl<F> TokenSource for F
where
    F: Fn() -> Result<Secret, BoxError> + Send + Sync,
{
    fn token(&self) -> Result<Secret, BoxError> {
        self()
    }
}

/// Time and retry settings. Production defaults; tests set them small.
#[derive(Debug, Clone)]
pub struct Options {
    pub http: ClientOptions,
    /// Every call gives up once this much time has passed (role assignment propagation takes
    /// minutes, so the default is generous).
    pub deadline: Duration,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            http: ClientOptions::default(),
            deadline: Duration::from_secs(600),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// What went wrong, with enough to act on.
#[derive(Debug, thiserror::Error)]
pub enum KeyVaultError {
    #[error("invalid Key Vault URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("invalid Key Vault name {name:?}: {reason}")]
    InvalidVaultName { name: String, reason: String },
    #[error("invalid Key Vault secret name {name:?}: {reason}")]
    InvalidSecretName { name: String, reason: String },
    #[error("{operation} {target} in Key Vault {vault}: the value is {size} bytes, more than Key Vault's {MAX_SECRET_BYTES}")]
    TooLarge {
        vault: String,
        operation: &'static str,
        target: String,
        size: usize,
    },
    #[error("{operation} {target} in Key Vault {vault}: no token for {RESOURCE}: {message}")]
    Token {
        vault: String,
        operation: &'static str,
        target: String,
        message: String,
    },
    #[error("{operation} {target} in Key Vault {vault}: {message}")]
    Transport {
        vault: String,
        operation: &'static str,
        target: String,
        message: String,
    },
    #[error("{0}")]
    Status(Box<HttpFailure>),
    #[error("{operation} {target} in Key Vault {vault}: the vault's challenge asks for a token of another audience ({challenge}), not {RESOURCE}: is the vault in another cloud or tenant?")]
    Challenge {
        vault: String,
        operation: &'static str,
        target: String,
        challenge: String,
    },
    #[error("{operation} {target} in Key Vault {vault}: the answer is not a {expected}: {reason}")]
    Decode {
        vault: String,
        operation: &'static str,
        target: String,
        expected: &'static str,
        reason: String,
    },
    #[error("gave up after {attempts} attempt{} in {:.1}s (deadline {:.0}s): {last}", if *.attempts == 1 { "" } else { "s" }, .elapsed.as_secs_f64(), .deadline.as_secs_f64())]
    GaveUp {
        attempts: u32,
        elapsed: Duration,
        deadline: Duration,
        last: Box<KeyVaultError>,
    },
}

/// An error answer of the vault.
#[derive(Debug)]
pub struct HttpFailure {
    pub vault: String,
    pub operation: &'static str,
    pub target: String,
    pub status: u16,
    /// `error.code` of the KeyVaultError body (`Forbidden`, `SecretNotFound`...).
    pub code: Option<String>,
    /// `error.innererror.code` (`ForbiddenByRbac`, `ObjectIsDeletedButRecoverable`...).
    pub inner_code: Option<String>,
    /// At most [`http::ERROR_BODY_LIMIT`] bytes of the body.
    pub body: String,
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} in Key Vault {}: HTTP {}{}: {}",
            self.operation,
            self.target,
            self.vault,
            self.status,
            codes(&self.code, &self.inner_code),
            self.body
        )
    }
}

fn codes(code: &Option<String>, inner: &Option<String>) -> String {
    match (code, inner) {
        (Some(c), Some(i)) => format!(" {c} ({i})"),
        (Some(c), None) => format!(" {c}"),
        (None, Some(i)) => format!(" ({i})"),
        (None, None) => String::new(),
    }
}

impl KeyVaultError {
    /// The error the last attempt met (through [`KeyVaultError::GaveUp`]).
    pub fn last(&self) -> &KeyVaultError {
        match self {
            KeyVaultError::GaveUp { last, .. } => last.last(),
            other => other,
        }
    }

    /// The HTTP status of the (last) answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self.last() {
            KeyVaultError::Status(f) => Some(f.status),
            _ => None,
        }
    }

    fn inner_code(&self) -> Option<&str> {
        match self.last() {
            KeyVaultError::Status(f) => f.inner_code.as_deref(),
            _ => None,
        }
    }

    /// 404: no such secret (or version).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// 409 `ObjectIsDeletedButRecoverable`: the name belongs to a soft-deleted secret, which
    /// must be recovered or purged before the name can be set again.
    pub fn is_deleted_but_recoverable(&self) -> bool {
        self.status() == Some(409) && self.inner_code() == Some("ObjectIsDeletedButRecoverable")
    }

    /// 403 from RBAC (a missing or not yet propagated role assignment).
    pub fn is_forbidden_by_rbac(&self) -> bool {
        self.status() == Some(403) && self.inner_code() == Some("ForbiddenByRbac")
    }
}

/// A secret's identity and attributes, without its value (SecretItem / SecretBundle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProperties {
    pub name: String,
    /// `https://<vault>/secrets/<name>/<version>` (versionless in a vault-wide listing).
    pub id: String,
    /// Empty when the id carries none (GetSecrets lists base ids).
    pub version: String,
    pub enabled: bool,
    pub content_type: Option<String>,
    /// Unix seconds.
    pub created: Option<i64>,
    pub updated: Option<i64>,
    pub recovery_level: Option<String>,
}

/// A secret with its value.
#[derive(Debug, Clone)]
pub struct SecretValue {
    pub properties: SecretProperties,
    pub value: Secret,
}

/// A soft-deleted secret (DeletedSecretBundle), without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSecret {
    pub properties: SecretProperties,
    pub recovery_id: Option<String>,
    pub deleted_date: Option<i64>,
    pub scheduled_purge_date: Option<i64>,
}

/// `https://<name>.vault.azure.net/` for a vault name, which is checked first.
pub fn vault_url(name: &str) -> Result<Url, KeyVaultError> {
    validate_vault_name(name)?;
    Url::parse(&format!("https://{name}.{DNS_SUFFIX}/")).map_err(|e| KeyVaultError::InvalidUrl {
        url: name.to_string(),
        reason: e.to_string(),
    })
}

/// Vault names: "3 to 24 characters and can contain only numbers (0-9), letters (a-z, A-Z),
/// and hyphens (-)" (`VaultNameNotValid`, Key Vault common error codes); ARM also wants a letter
/// first, a letter or digit last, and no two hyphens in a row.
pub fn validate_vault_name(name: &str) -> Result<(), KeyVaultError> {
    let bad = |reason: &str| {
        Err(KeyVaultError::InvalidVaultName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if !(3..=24).contains(&name.len()) {
        return bad("a vault name has 3 to 24 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return bad("only letters, digits and hyphens");
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return bad("it must start with a letter");
    }
    if name.ends_with('-') {
        return bad("it must end with a letter or a digit");
    }
    if name.contains("--") {
        return bad("no two hyphens in a row");
    }
    Ok(())
}

/// Secret names: SetSecret's `secret-name` pattern `^[0-9a-zA-Z-]+$`, at most 127 characters
/// (Key Vault object names).
pub fn validate_secret_name(name: &str) -> Result<(), KeyVaultError> {
    if name.is_empty() || name.len() > 127 {
        return Err(KeyVaultError::InvalidSecretName {
            name: name.to_string(),
            reason: "a secret name has 1 to 127 characters".into(),
        });
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(KeyVaultError::InvalidSecretName {
            name: name.to_string(),
            reason: "only letters, digits and hyphens (^[0-9a-zA-Z-]+$)".into(),
        });
    }
    Ok(())
}

/// The parameters of a `WWW-Authenticate: Bearer k="v", k="v"` challenge.
pub fn parse_challenge(header: &str) -> Option<Vec<(String, String)>> {
    let rest = header.trim();
    let (scheme, params) = rest.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return None;
    }
    let mut out = Vec::new();
    for part in params.split(',') {
        let (k, v) = part.split_once('=')?;
        out.push((
            k.trim().to_ascii_lowercase(),
            v.trim().trim_matches('"').to_string(),
        ));
    }
    Some(out)
}

/// The audience a challenge asks for: `resource`, or `scope` without `/.default`.
fn challenge_resource(params: &[(String, String)]) -> Option<String> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    get("resource").or_else(|| get("scope").map(|s| s.trim_end_matches("/.default").to_string()))
}

fn same_audience(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

// ------------------------------------------------------------------ wire types

#[derive(Deserialize, Default)]
struct Attributes {
    #[serde(default = "yes")]
    enabled: bool,
    created: Option<i64>,
    updated: Option<i64>,
    #[serde(rename = "recoveryLevel")]
    recovery_level: Option<String>,
}

fn yes() -> bool {
    true
}

/// SecretBundle / DeletedSecretBundle / SecretItem. No `Debug`: it may hold a value.
#[derive(Deserialize)]
struct Bundle {
    value: Option<String>,
    id: Option<String>,
    #[serde(rename = "contentType")]
    content_type: Option<String>,
    #[serde(default)]
    attributes: Attributes,
    #[serde(rename = "recoveryId")]
    recovery_id: Option<String>,
    #[serde(rename = "deletedDate")]
    deleted_date: Option<i64>,
    #[serde(rename = "scheduledPurgeDate")]
    scheduled_purge_date: Option<i64>,
}

#[derive(Deserialize)]
struct ListPage {
    #[serde(default)]
    value: Vec<Bundle>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    innererror: Option<Box<ErrorDetail>>,
}

impl Bundle {
    fn properties(&self) -> SecretProperties {
        let id = self.id.clone().unwrap_or_default();
        let (name, version) = name_and_version(&id);
        SecretProperties {
            name,
            id,
            version,
            enabled: self.attributes.enabled,
            content_type: self.content_type.clone(),
            created: self.attributes.created,
            updated: self.attributes.updated,
            recovery_level: self.attributes.recovery_level.clone(),
        }
    }

    fn deleted(&self) -> DeletedSecret {
        DeletedSecret {
            properties: self.properties(),
            recovery_id: self.recovery_id.clone(),
            deleted_date: self.deleted_date,
            scheduled_purge_date: self.scheduled_purge_date,
        }
    }
}

/// `.../secrets/<name>[/<version>]` (or `.../deletedsecrets/<name>`) -> (name, version).
fn name_and_version(id: &str) -> (String, String) {
    let path = Url::parse(id)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., kind, name, version] if kind.eq_ignore_ascii_case("secrets") => {
            (name.to_string(), version.to_string())
        }
        [.., _, name] => (name.to_string(), String::new()),
        _ => (String::new(), String::new()),
    }
}

/// A serde error without its message, which may quote the value it choked on.
fn decode_reason(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

// ------------------------------------------------------------------ the client

/// One request, as the retry loop sees it.
struct Call<'a> {
    operation: &'static str,
    target: String,
    method: Method,
    url: Url,
    body: Option<serde_json::Value>,
    /// Statuses that mean "not there yet" for this call (a deletion or recovery settling).
    settling: &'a [u16],
}

/// A Key Vault's secrets.
pub struct KeyVaultClient {
    base: Url,
    tokens: Arc<dyn TokenSource>,
    http: Client,
    options: Options,
}

impl std::fmt::Debug for KeyVaultClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultClient")
            .field("vault", &self.base.as_str())
            .finish()
    }
}

impl KeyVaultClient {
    /// A client for the vault at `vault` (`https://<name>.vault.azure.net/`, or a loopback
    /// `http://` URL in tests).
    pub fn new(
        vault: &str,
        tokens: Arc<dyn TokenSource>,
        options: Options,
    ) -> Result<Self, KeyVaultError> {
        let invalid = |reason: &str| KeyVaultError::InvalidUrl {
            url: vault.to_string(),
            reason: reason.to_string(),
        };
        let mut base = Url::parse(vault).map_err(|e| invalid(&e.to_string()))?;
        match base.scheme() {
            "https" => {}
            "http" if http::is_loopback(&base) => {}
            "http" => return Err(invalid("plain http is accepted only for a loopback address; a vault is https://<name>.vault.azure.net/")),
            _ => return Err(invalid("not an https URL")),
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("a vault URL has no query or fragment"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let loopback = http::is_loopback(&base);
        let http = http::client(&ClientOptions {
            // A proxy never stands between a test and its loopback double.
            no_proxy: options.http.no_proxy || loopback,
            ..options.http.clone()
        })
        .map_err(|e| invalid(&format!("building the HTTP client: {e}")))?;
        Ok(Self {
            base,
            tokens,
            http,
            options,
        })
    }

    /// The vault's URL (with a trailing slash).
    pub fn vault_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.join(path).expect("a relative path joins");
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
        url
    }

    fn vault(&self) -> String {
        self.base.to_string()
    }

    /// SetSecret: stores `value` as a new version of `name` (creating the secret if needed).
    pub fn set_secret(
        &self,
        name: &str,
        value: &Secret,
        content_type: Option<&str>,
    ) -> Result<SecretProperties, KeyVaultError> {
        validate_secret_name(name)?;
        let size = value.expose().len();
        if size > MAX_SECRET_BYTES {
            return Err(KeyVaultError::TooLarge {
                vault: self.vault(),
                operation: "SetSecret",
                target: name.to_string(),
                size,
            });
        }
        let mut body = json!({ "value": value.expose() });
        if let Some(ct) = content_type {
            body["contentType"] = json!(ct);
        }
        let call = Call {
            operation: "SetSecret",
            target: name.to_string(),
            method: Method::PUT,
            url: self.url(&format!("secrets/{name}")),
            body: Some(body),
            settling: &[],
        };
        let bundle: Bundle = self.json(&call, "SecretBundle")?;
        tracing::info!("stored a new version of {name} in Key Vault {}", self.base);
        Ok(bundle.properties())
    }

    /// GetSecret: the latest version (`version` None) or a given one, with its value.
    pub fn get_secret(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<SecretValue, KeyVaultError> {
        validate_secret_name(name)?;
        if let Some(v) = version {
            validate_secret_name(v)?;
        }
        // secrets.json: `secret-version` "is optional. If not specified, the latest version of
        // the secret is returned" (INDEX.md fact 11): an empty last segment.
        let call = Call {
            operation: "GetSecret",
            target: match version {
                Some(v) => format!("{name} (version {v})"),
                None => name.to_string(),
            },
            method: Method::GET,
            url: self.url(&format!("secrets/{name}/{}", version.unwrap_or(""))),
            body: None,
            settling: &[],
        };
        let bundle: Bundle = self.json(&call, "SecretBundle")?;
        let properties = bundle.properties();
        let Some(value) = bundle.value else {
            return Err(KeyVaultError::Decode {
                vault: self.vault(),
                operation: call.operation,
                target: call.target,
                expected: "SecretBundle with a value",
                reason: "no `value`".into(),
            });
        };
        tracing::debug!(
            "read {name} version {} from Key Vault {}",
            properties.version,
            self.base
        );
        Ok(SecretValue {
            properties,
            value: Secret::new(value),
        })
    }

    /// GetSecretVersions: every version of `name` (ids and attributes, no values), all pages.
    pub fn secret_versions(&self, name: &str) -> Result<Vec<SecretProperties>, KeyVaultError> {
        validate_secret_name(name)?;
        self.list(
            "GetSecretVersions",
            name,
            self.url(&format!("secrets/{name}/versions")),
        )
    }

    /// GetSecrets: every secret of the vault (base ids and attributes, no values), all pages.
    pub fn secrets(&self) -> Result<Vec<SecretProperties>, KeyVaultError> {
        self.list("GetSecrets", "(all secrets)", self.url("secrets"))
    }

    fn list(
        &self,
        operation: &'static str,
        target: &str,
        first: Url,
    ) -> Result<Vec<SecretProperties>, KeyVaultError> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let call = Call {
                operation,
                target: target.to_string(),
                method: Method::GET,
                url,
                body: None,
                settling: &[],
            };
            let page: ListPage = self.json(&call, "SecretListResult")?;
            out.extend(page.value.iter().map(Bundle::properties));
            if let Some(link) = page.next_link.filter(|l| !l.is_empty()) {
                next = Some(self.same_vault(&call, &link)?);
            }
        }
        Ok(out)
    }

    /// A `nextLink` is followed only on the vault itself: the bearer token goes nowhere else.
    fn same_vault(&self, call: &Call, link: &str) -> Result<Url, KeyVaultError> {
        let url = Url::parse(link).map_err(|e| KeyVaultError::Decode {
            vault: self.vault(),
            operation: call.operation,
            target: call.target.clone(),
            expected: "nextLink URL",
            reason: e.to_string(),
        })?;
        if url.scheme() != self.base.scheme()
            || url.host_str() != self.base.host_str()
            || url.port_or_known_default() != self.base.port_or_known_default()
        {
            return Err(KeyVaultError::Decode {
                vault: self.vault(),
                operation: call.operation,
                target: call.target.clone(),
                expected: "nextLink on the same vault",
                reason: format!("it points to {url}"),
            });
        }
        Ok(url)
    }

    /// DeleteSecret (soft delete: every version), then waits until GetDeletedSecret shows it:
    /// the deletion completes in the background, and a purge or a recovery before that fails
    /// (the SDKs poll the same way).
    pub fn delete_secret(&self, name: &str) -> Result<DeletedSecret, KeyVaultError> {
        validate_secret_name(name)?;
        let call = Call {
            operation: "DeleteSecret",
            target: name.to_string(),
            method: Method::DELETE,
            url: self.url(&format!("secrets/{name}")),
            body: None,
            settling: &[],
        };
        let _: Bundle = self.json(&call, "DeletedSecretBundle")?;
        let wait = Call {
            operation: "GetDeletedSecret",
            target: format!("{name} (waiting for the deletion)"),
            method: Method::GET,
            url: self.url(&format!("deletedsecrets/{name}")),
            body: None,
            settling: &[404],
        };
        let deleted: Bundle = self.json(&wait, "DeletedSecretBundle")?;
        tracing::info!("deleted {name} in Key Vault {} (recoverable)", self.base);
        Ok(deleted.deleted())
    }

    /// GetDeletedSecret.
    pub fn get_deleted_secret(&self, name: &str) -> Result<DeletedSecret, KeyVaultError> {
        validate_secret_name(name)?;
        let call = Call {
            operation: "GetDeletedSecret",
            target: name.to_string(),
            method: Method::GET,
            url: self.url(&format!("deletedsecrets/{name}")),
            body: None,
            settling: &[],
        };
        let deleted: Bundle = self.json(&call, "DeletedSecretBundle")?;
        Ok(deleted.deleted())
    }

    /// RecoverDeletedSecret, then waits until GetSecret finds it again.
    pub fn recover_deleted_secret(&self, name: &str) -> Result<SecretProperties, KeyVaultError> {
        validate_secret_name(name)?;
        let call = Call {
            operation: "RecoverDeletedSecret",
            target: name.to_string(),
            method: Method::POST,
            url: self.url(&format!("deletedsecrets/{name}/recover")),
            body: Some(json!({})),
            settling: &[],
        };
        let _: Bundle = self.json(&call, "SecretBundle")?;
        let wait = Call {
            operation: "GetSecret",
            target: format!("{name} (waiting for the recovery)"),
            method: Method::GET,
            url: self.url(&format!("secrets/{name}/")),
            body: None,
            settling: &[404],
        };
        let recovered: Bundle = self.json(&wait, "SecretBundle")?;
        tracing::info!("recovered {name} in Key Vault {}", self.base);
        Ok(recovered.properties())
    }

    /// PurgeDeletedSecret: permanent (refused while the vault has purge protection).
    pub fn purge_deleted_secret(&self, name: &str) -> Result<(), KeyVaultError> {
        validate_secret_name(name)?;
        let call = Call {
            operation: "PurgeDeletedSecret",
            target: name.to_string(),
            method: Method::DELETE,
            url: self.url(&format!("deletedsecrets/{name}")),
            body: None,
            settling: &[],
        };
        self.send(&call)?;
        tracing::info!("purged {name} from Key Vault {}", self.base);
        Ok(())
    }

    fn json<T: for<'de> Deserialize<'de>>(
        &self,
        call: &Call,
        expected: &'static str,
    ) -> Result<T, KeyVaultError> {
        let response = self.send(call)?;
        let bytes = response.bytes().map_err(|e| KeyVaultError::Transport {
            vault: self.vault(),
            operation: call.operation,
            target: call.target.clone(),
            message: format!("reading the answer: {e}"),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| KeyVaultError::Decode {
            vault: self.vault(),
            operation: call.operation,
            target: call.target.clone(),
            expected,
            reason: decode_reason(&e),
        })
    }

    fn policy(&self, call: &Call) -> Policy {
        Policy {
            what: call.operation,
            max_attempts: u32::MAX,
            initial_delay: self.options.initial_delay,
            max_delay: self.options.max_delay,
            deadline: Some(self.options.deadline),
        }
    }

    /// Sends `call` until it succeeds, fails for good, or the deadline passes.
    fn send(&self, call: &Call) -> Result<Response, KeyVaultError> {
        let mut challenged = false;
        let result = self.policy(call).run(|info| {
            let token = self.tokens.token().map_err(|e| {
                // A token source has its own retries; its failure is final here.
                Attempt::Fail(KeyVaultError::Token {
                    vault: self.vault(),
                    operation: call.operation,
                    target: call.target.clone(),
                    message: error_chain(&*e),
                })
            })?;
            let mut request: RequestBuilder = self
                .http
                .request(call.method.clone(), call.url.clone())
                .bearer_auth(token.expose());
            if let Some(remaining) = info.remaining {
                request = request.timeout(remaining.max(Duration::from_millis(100)));
            }
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            let response = request.send().map_err(|e| {
                Attempt::retry(KeyVaultError::Transport {
                    vault: self.vault(),
                    operation: call.operation,
                    target: call.target.clone(),
                    message: error_chain(&e),
                })
            })?;
            let status = response.status().as_u16();
            if response.status().is_success() {
                return Ok(response);
            }
            let after = http::retry_after(response.headers());
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = http::error_body(response);
            let (code, inner_code) = error_codes(&body);
            let error = KeyVaultError::Status(Box::new(HttpFailure {
                vault: self.vault(),
                operation: call.operation,
                target: call.target.clone(),
                status,
                code,
                inner_code: inner_code.clone(),
                body,
            }));
            match status {
                401 => {
                    let params = challenge.as_deref().and_then(parse_challenge);
                    if let Some(resource) = params.as_deref().and_then(challenge_resource) {
                        if !same_audience(&resource, RESOURCE) {
                            return Err(Attempt::Fail(KeyVaultError::Challenge {
                                vault: self.vault(),
                                operation: call.operation,
                                target: call.target.clone(),
                                challenge: challenge.unwrap_or_default(),
                            }));
                        }
                    }
                    if challenged {
                        return Err(Attempt::Fail(error));
                    }
                    // An expired or revoked token: one more try with a fresh one.
                    challenged = true;
                    self.tokens.invalidate();
                    Err(Attempt::Retry {
                        error,
                        after: Some(Duration::ZERO),
                    })
                }
                403 if inner_code.as_deref() == Some("ForbiddenByRbac") => {
                    tracing::info!(
                        "{} {}: Key Vault {} refuses the caller (ForbiddenByRbac); waiting for the role assignment to propagate",
                        call.operation,
                        call.target,
                        self.base
                    );
                    Err(Attempt::retry(error))
                }
                429 | 500 | 502 | 503 | 504 => Err(Attempt::Retry { error, after }),
                s if call.settling.contains(&s) => Err(Attempt::retry(error)),
                _ => Err(Attempt::Fail(error)),
            }
        });
        result.map_err(|e| match e {
            RetryError::Fatal(e) => e,
            RetryError::Exhausted {
                attempts,
                elapsed,
                last,
            } => KeyVaultError::GaveUp {
                attempts,
                elapsed,
                deadline: self.options.deadline,
                last: Box::new(last),
            },
        })
    }
}

/// An error and its sources on one line (reqwest hides the cause of "error sending request").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// `error.code` and `error.innererror.code` of a KeyVaultError body (secrets.json).
fn error_codes(body: &str) -> (Option<String>, Option<String>) {
    match serde_json::from_str::<ErrorBody>(body) {
        Ok(ErrorBody { error: Some(e) }) => (e.code, e.innererror.and_then(|i| i.code)),
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_names_follow_the_documented_rules() {
        assert_eq!(
            vault_url("nomad-prod-kv").unwrap().as_str(),
            "https://nomad-prod-kv.vault.azure.net/"
        );
        for bad in [
            "kv",
            "a-very-long-vault-name-abcd",
            "1vault",
            "vault-",
            "va--ult",
            "vault_x",
        ] {
            let e = validate_vault_name(bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn secret_names_follow_the_spec_pattern() {
        validate_secret_name("nomad-ca-cert").unwrap();
        for bad in ["", "a/b", "a_b", "a.b", &"x".repeat(128)] {
            assert!(validate_secret_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn challenges_are_parsed() {
        let params = parse_challenge(
            r#"Bearer authorization="https://login.windows.net/72f988bf", resource="https://vault.azure.net""#,
        )
        .unwrap();
        assert_eq!(
            challenge_resource(&params).as_deref(),
            Some("https://vault.azure.net")
        );
        let scoped = parse_challenge(
            r#"Bearer authorization="https://login.microsoftonline.com/t", scope="https://vault.azure.cn/.default""#,
        )
        .unwrap();
        assert_eq!(
            challenge_resource(&scoped).as_deref(),
            Some("https://vault.azure.cn")
        );
        assert!(parse_challenge("Basic realm=x").is_none());
        assert!(same_audience("https://vault.azure.net/", RESOURCE));
    }

    #[test]
    fn ids_give_name_and_version() {
        assert_eq!(
            name_and_version("https://v.vault.azure.net/secrets/nomad-ca-cert/0a1b"),
            ("nomad-ca-cert".into(), "0a1b".into())
        );
        assert_eq!(
            name_and_version("https://v.vault.azure.net/secrets/nomad-ca-cert"),
            ("nomad-ca-cert".into(), String::new())
        );
        assert_eq!(
            name_and_version("http://127.0.0.1:9/deletedsecrets/x"),
            ("x".into(), String::new())
        );
    }

    #[test]
    fn urls_must_be_https_unless_loopback() {
        let tokens: Arc<dyn TokenSource> = Arc::new(|| Ok(Secret::new("t".into())));
        for bad in [
            "http://v.vault.azure.net/",
            "ftp://x/",
            "https://v.vault.azure.net/?x=1",
            "not a url",
        ] {
            let e = KeyVaultClient::new(bad, tokens.clone(), Options::default()).unwrap_err();
            assert!(matches!(e, KeyVaultError::InvalidUrl { .. }), "{bad}: {e}");
        }
        let ok = KeyVaultClient::new("http://127.0.0.1:1", tokens, Options::default()).unwrap();
        assert_eq!(ok.vault_url().as_str(), "http://127.0.0.1:1/");
        assert_eq!(
            ok.url("secrets/x/").as_str(),
            "http://127.0.0.1:1/secrets/x/?api-version=7.6"
        );
    }

    #[test]
    fn decode_errors_never_quote_the_value() {
        let e = serde_json::from_str::<Bundle>(r#"{"value": 12345678}"#)
            .err()
            .unwrap();
        let reason = decode_reason(&e);
        assert!(!reason.contains("12345678"), "{reason}");
    }
}
