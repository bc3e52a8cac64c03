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
//!   `ForbiddenByFirewall` (network rules) and other 4xx fail at once, unless
//!   [`Options::retry_forbidden_by_firewall`] (a VM booting while the rule that admits its
//!   subnet is still being applied) makes `ForbiddenByFirewall` a retry too.
//! - Errors name the vault URL, the operation, the secret name and the status, with at most
//!   [`crate::http::ERROR_BODY_LIMIT`] bytes of the body. Secret values never reach an error, a
//!   log line or a `Debug` print: they travel as [`Secret`].
//!
//! Beside the client: `error` (what went wrong, with the vault, operation, secret and status)
//! and `wire` (names, the 401 challenge, and secrets.json's JSON shapes).

mod error;
mod wire;

pub use error::{HttpFailure, KeyVaultError};
pub use wire::{
    parse_challenge, validate_secret_name, validate_vault_name, vault_url, DeletedSecret,
    SecretProperties, SecretValue,
};

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
use error::error_chain;
use wire::{challenge_resource, decode_reason, error_codes, same_audience, Bundle, ListPage};

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
    /// Retry 403 `ForbiddenByFirewall` within the deadline instead of failing at once. A VM at
    /// first boot sets it: the deployment that adds its subnet to the vault's network rules
    /// may still be settling (ARM applies a vault update, then the service applies the rule).
    /// An operator's tool leaves it off: its address is either admitted or not, and an
    /// immediate error with a hint is what helps there.
    pub retry_forbidden_by_firewall: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            http: ClientOptions::default(),
            deadline: Duration::from_secs(600),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            retry_forbidden_by_firewall: false,
        }
    }
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
        let bytes = http::read_small_answer(response).map_err(|e| KeyVaultError::Transport {
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
                403 if inner_code.as_deref() == Some("ForbiddenByFirewall")
                    && self.options.retry_forbidden_by_firewall =>
                {
                    tracing::info!(
                        "{} {}: Key Vault {} refuses this address (ForbiddenByFirewall); waiting for its network rules to admit it",
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
