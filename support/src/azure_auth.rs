//! Azure credentials for Azure Resource Manager: a service principal's client secret (`ARM_*`
//! variables, as Terraform's azurerm provider and Packer's azure builder read them), the Azure
//! CLI's login, or a managed identity. Each gives a bearer token; tokens and secrets are
//! [`Secret`]s, which never print. Also the subscription each credential implies when none is
//! named: the Azure CLI's current one (`az account show`) or the managed identity's VM's (IMDS).
//!
//! This is cluster-deploy's credential code (its `auth` module) moved here for image-builder,
//! which must check recorded images with the same credential Packer used; cluster-deploy's
//! `--auth` choice stays in cluster-deploy.
//!
//! Sources: Microsoft identity platform, "OAuth 2.0 client credentials flow" (v2.0 token
//! endpoint); Azure CLI `az account get-access-token` / `az account show` JSON output; IMDS
//! "Managed identities" (`/metadata/identity/oauth2/token`, api-version 2018-02-01, as
//! REFERENCE.md) and `Instances_GetMetadata` (`/metadata/instance`, api-version 2023-07-01,
//! `../shared/azure-rest-specs/operations.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::http::Url;
use crate::retry::{Attempt, Policy};
pub use crate::secret::Secret;

/// The IMDS api-version of the instance document request (`Instances_GetMetadata`).
pub const IMDS_INSTANCE_API_VERSION: &str = "2023-07-01";
/// The IMDS api-version of the managed identity token request.
pub const IMDS_TOKEN_API_VERSION: &str = "2018-02-01";

/// A credential, chosen and complete.
#[derive(Debug, Clone)]
pub enum Method {
    ClientSecret {
        tenant: String,
        client_id: String,
        secret: Secret,
    },
    AzureCli {
        program: PathBuf,
    },
    ManagedIdentity {
        /// A user-assigned identity's client id (ARM_CLIENT_ID with ARM_USE_MSI).
        client_id: Option<String>,
    },
}

impl Method {
    pub fn describe(&self) -> String {
        match self {
            Method::ClientSecret {
                tenant, client_id, ..
            } => format!("service principal {client_id} (tenant {tenant}) with a client secret"),
            Method::AzureCli { program } => format!("the Azure CLI login ({})", program.display()),
            Method::ManagedIdentity { client_id: None } => "the managed identity".to_string(),
            Method::ManagedIdentity {
                client_id: Some(id),
            } => format!("the managed identity {id}"),
        }
    }

    /// The client-secret credential from `ARM_TENANT_ID`, `ARM_CLIENT_ID` and
    /// `ARM_CLIENT_SECRET`, naming the first one missing.
    pub fn client_secret_from(env: &Env) -> Result<Self, AuthError> {
        let tenant = env
            .get("ARM_TENANT_ID")
            .ok_or(AuthError::MissingVariable("ARM_TENANT_ID"))?;
        let client_id = env
            .get("ARM_CLIENT_ID")
            .ok_or(AuthError::MissingVariable("ARM_CLIENT_ID"))?;
        let secret = env
            .get("ARM_CLIENT_SECRET")
            .ok_or(AuthError::MissingVariable("ARM_CLIENT_SECRET"))?;
        check_tenant(tenant)?;
        Ok(Method::ClientSecret {
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            secret: Secret::new(secret.to_string()),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0} is not set in the environment")]
    MissingVariable(&'static str),
    #[error("the Azure CLI program {0} was not found (install it, or name it with --az-program)")]
    NoAzureCli(PathBuf),
    #[error("ARM_TENANT_ID {0:?} is not a tenant id or domain")]
    BadTenant(String),
    #[error("token request to {url} failed: {status}: {error}: {description}")]
    Refused {
        url: String,
        status: u16,
        error: String,
        description: String,
    },
    #[error("request to {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("the answer from {source_name} is not usable: {message}")]
    BadAnswer {
        source_name: String,
        message: String,
    },
    #[error("the Azure CLI failed")]
    Cli(#[from] crate::process::CommandError),
}

/// The environment variables auth reads, captured once (tests give their own).
#[derive(Debug, Clone, Default)]
pub struct Env(pub BTreeMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Self(
            std::env::vars()
                .filter(|(k, _)| k.starts_with("ARM_"))
                .collect(),
        )
    }

    /// A variable's value; empty or blank counts as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

fn check_tenant(tenant: &str) -> Result<(), AuthError> {
    let ok = !tenant.is_empty()
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(AuthError::BadTenant(tenant.to_string()))
    }
}

/// A program given as a path, or looked up on `PATH`.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The Azure CLI's current subscription: `az account show --output json`, field `id`. Local
/// only: the CLI reads its profile and makes no request.
pub fn azure_cli_subscription(program: &Path) -> Result<String, AuthError> {
    let found =
        find_program(program).ok_or_else(|| AuthError::NoAzureCli(program.to_path_buf()))?;
    let mut cmd = Command::new(&found);
    cmd.args(["account", "show", "--output", "json"]);
    let output = crate::process::run(&mut cmd)?;
    let value: Value =
        serde_json::from_slice(&output.stdout).map_err(|e| AuthError::BadAnswer {
            source_name: format!("{} account show", found.display()),
            message: format!("not JSON: {e}"),
        })?;
    value["id"]
        .as_str()
        .filter(|id| !id.trim().is_empty())
        .map(str::to_string)
        .ok_or_else(|| AuthError::BadAnswer {
            source_name: format!("{} account show", found.display()),
            message: "no subscription id (`id`)".to_string(),
        })
}

/// Where tokens come from.
#[derive(Debug, Clone)]
pub struct TokenEndpoints {
    /// `--login-endpoint`, e.g. `https://login.microsoftonline.com`.
    pub login: Url,
    /// `--imds-endpoint`, e.g. `http://169.254.169.254`.
    pub imds: Url,
    /// The token audience: ARM's endpoint, e.g. `https://management.azure.com/`.
    pub audience: String,
}

struct Cached {
    token: Secret,
    expires_at: SystemTime,
}

/// Gets and caches tokens for one credential.
pub struct TokenProvider {
    method: Method,
    endpoints: TokenEndpoints,
    http: reqwest::blocking::Client,
    imds_http: reqwest::blocking::Client,
    cached: Mutex<Option<Cached>>,
    retry: Policy,
}

/// Tokens are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

impl TokenProvider {
    pub fn new(
        method: Method,
        endpoints: TokenEndpoints,
        retry: Policy,
    ) -> Result<Self, AuthError> {
        let build = |no_proxy| {
            crate::http::client(&crate::http::ClientOptions {
                no_proxy,
                ..Default::default()
            })
            .map_err(|e| AuthError::Transport {
                url: endpoints.login.to_string(),
                message: e.to_string(),
            })
        };
        Ok(Self {
            http: build(false)?,
            // IMDS must never be reached through a proxy.
            imds_http: build(true)?,
            method,
            endpoints,
            cached: Mutex::new(None),
            retry,
        })
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// A valid token, from the cache when it has more than five minutes left.
    pub fn token(&self) -> Result<Secret, AuthError> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cached.as_ref() {
            if c.expires_at > SystemTime::now() + RENEW_BEFORE {
                return Ok(c.token.clone());
            }
        }
        let fresh = self.fetch()?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets the cached token (after a 401).
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn fetch(&self) -> Result<Cached, AuthError> {
        match &self.method {
            Method::ClientSecret {
                tenant,
                client_id,
                secret,
            } => self.client_secret(tenant, client_id, secret),
            Method::AzureCli { program } => self.azure_cli(program),
            Method::ManagedIdentity { client_id } => self.managed_identity(client_id.as_deref()),
        }
    }

    /// OAuth 2.0 client credentials grant (Microsoft identity platform v2.0 token endpoint).
    fn client_secret(
        &self,
        tenant: &str,
        client_id: &str,
        secret: &Secret,
    ) -> Result<Cached, AuthError> {
        let url = self
            .endpoints
            .login
            .join(&format!("{tenant}/oauth2/v2.0/token"))
            .map_err(|e| AuthError::Transport {
                url: self.endpoints.login.to_string(),
                message: e.to_string(),
            })?;
        let scope = format!("{}/.default", self.endpoints.audience.trim_end_matches('/'));
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret.expose()),
            ("scope", scope.as_str()),
        ];
        // Microsoft identity platform: throttling and server errors are transient.
        let body = self.token_request(
            &url,
            || self.http.post(url.clone()).form(&form).send(),
            |status| status == 429 || status >= 500,
        )?;
        parse_token(&body, url.as_str(), "access_token", "expires_in", true)
    }

    /// Sends a token request under the retry policy; returns the 200 body. An error answer
    /// carries OAuth's `error` and the first line of `error_description` (or the body's start).
    fn token_request(
        &self,
        url: &Url,
        send: impl Fn() -> reqwest::Result<reqwest::blocking::Response>,
        retryable: impl Fn(u16) -> bool,
    ) -> Result<String, AuthError> {
        let body = self.retry.run(|_| {
            let response = send().map_err(|e| Attempt::retry(transport(url, &e)))?;
            let status = response.status().as_u16();
            let after = crate::http::retry_after(response.headers());
            if status == 200 {
                let bytes = crate::http::read_small_answer(response).map_err(|e| {
                    Attempt::retry(AuthError::Transport {
                        url: url.to_string(),
                        message: e.to_string(),
                    })
                })?;
                return String::from_utf8(bytes).map_err(|_| {
                    Attempt::Fail(AuthError::Transport {
                        url: url.to_string(),
                        message: "the token answer is not UTF-8".to_string(),
                    })
                });
            }
            // An error body is read only up to a bound: it is shown, never trusted.
            let text = crate::http::error_body(response);
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error = AuthError::Refused {
                url: url.to_string(),
                status,
                error: parsed["error"].as_str().unwrap_or("error").to_string(),
                description: parsed["error_description"]
                    .as_str()
                    .map(|d| d.lines().next().unwrap_or_default().to_string())
                    .unwrap_or(text),
            };
            if retryable(status) {
                Err(Attempt::Retry { error, after })
            } else {
                Err(Attempt::Fail(error))
            }
        });
        body.map_err(|e| e.into_inner())
    }

    /// `az account get-access-token --resource <audience> --output json`.
    fn azure_cli(&self, program: &Path) -> Result<Cached, AuthError> {
        let mut cmd = Command::new(program);
        cmd.args([
            "account",
            "get-access-token",
            "--resource",
            &self.endpoints.audience,
            "--output",
            "json",
        ]);
        let output = crate::process::run(&mut cmd)?;
        let value: Value =
            serde_json::from_slice(&output.stdout).map_err(|e| AuthError::BadAnswer {
                source_name: program.display().to_string(),
                message: format!("not JSON: {e}"),
            })?;
        // Newer CLIs give `expires_on` (POSIX seconds); older ones only `expiresOn` (local
        // time text), for which an hour is assumed, the usual token lifetime.
        let token = value["accessToken"]
            .as_str()
            .ok_or_else(|| AuthError::BadAnswer {
                source_name: program.display().to_string(),
                message: "no accessToken".to_string(),
            })?;
        let expires_at = value["expires_on"]
            .as_u64()
            .or_else(|| value["expires_on"].as_str().and_then(|s| s.parse().ok()))
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(3600));
        Ok(Cached {
            token: Secret::new(token.to_string()),
            expires_at,
        })
    }

    /// IMDS identity endpoint (`Metadata: true`, never through a proxy).
    fn managed_identity(&self, client_id: Option<&str>) -> Result<Cached, AuthError> {
        let mut url = self.imds_url("metadata/identity/oauth2/token")?;
        url.query_pairs_mut()
            .append_pair("api-version", IMDS_TOKEN_API_VERSION)
            .append_pair("resource", &self.endpoints.audience);
        if let Some(id) = client_id {
            url.query_pairs_mut().append_pair("client_id", id);
        }
        let body = self.imds_get(&url)?;
        parse_token(&body, url.as_str(), "access_token", "expires_on", false)
    }

    /// A GET to IMDS under the retry policy (`Metadata: true`, never through a proxy): 404 (an
    /// identity not ready yet), 410, 429 and 5xx are transient, as IMDS documents.
    fn imds_get(&self, url: &Url) -> Result<String, AuthError> {
        self.token_request(
            url,
            || {
                self.imds_http
                    .get(url.clone())
                    .header("Metadata", "true")
                    .send()
            },
            |status| matches!(status, 404 | 410 | 429) || status >= 500,
        )
    }

    fn imds_url(&self, path: &str) -> Result<Url, AuthError> {
        self.endpoints
            .imds
            .join(path)
            .map_err(|e| AuthError::Transport {
                url: self.endpoints.imds.to_string(),
                message: e.to_string(),
            })
    }

    /// The subscription of the VM this runs on: `compute.subscriptionId` of the IMDS instance
    /// document (what Packer's azure builder uses for a managed identity without
    /// `subscription_id`).
    pub fn imds_subscription(&self) -> Result<String, AuthError> {
        let mut url = self.imds_url("metadata/instance")?;
        url.query_pairs_mut()
            .append_pair("api-version", IMDS_INSTANCE_API_VERSION);
        let body = self.imds_get(&url)?;
        let value: Value = serde_json::from_str(&body).map_err(|e| AuthError::BadAnswer {
            source_name: url.to_string(),
            message: format!("not JSON: {e}"),
        })?;
        value["compute"]["subscriptionId"]
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
            .ok_or_else(|| AuthError::BadAnswer {
                source_name: url.to_string(),
                message: "no compute.subscriptionId".to_string(),
            })
    }
}

fn transport(url: &Url, e: &reqwest::Error) -> AuthError {
    AuthError::Transport {
        url: url.to_string(),
        message: error_chain(e),
    }
}

/// An error with its causes ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Reads a token answer. `relative` says the expiry field is seconds from now (v2.0 endpoint)
/// rather than POSIX seconds (IMDS); both may be numbers or strings.
fn parse_token(
    body: &str,
    from: &str,
    token_field: &str,
    expiry_field: &str,
    relative: bool,
) -> Result<Cached, AuthError> {
    let bad = |message: &str| AuthError::BadAnswer {
        source_name: from.to_string(),
        message: message.to_string(),
    };
    let value: Value = serde_json::from_str(body).map_err(|_| bad("not JSON"))?;
    let token = value[token_field]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad(&format!("no {token_field}")))?;
    let seconds = value[expiry_field]
        .as_u64()
        .or_else(|| value[expiry_field].as_str().and_then(|s| s.parse().ok()))
        .ok_or_else(|| bad(&format!("no {expiry_field}")))?;
    let expires_at = if relative {
        SystemTime::now() + Duration::from_secs(seconds)
    } else {
        UNIX_EPOCH + Duration::from_secs(seconds)
    };
    Ok(Cached {
        token: Secret::new(token.to_string()),
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    #[test]
    fn secrets_never_print() {
        let m = Method::client_secret_from(&env(&[
            ("ARM_TENANT_ID", "contoso.onmicrosoft.com"),
            ("ARM_CLIENT_ID", "app"),
            ("ARM_CLIENT_SECRET", "hunter2"),
        ]))
        .unwrap();
        assert!(!format!("{m:?}").contains("hunter2"));
        assert!(!m.describe().contains("hunter2"));
    }

    #[test]
    fn a_missing_variable_or_bad_tenant_is_named() {
        let err = Method::client_secret_from(&env(&[("ARM_CLIENT_ID", "a")])).unwrap_err();
        assert!(err.to_string().contains("ARM_TENANT_ID"), "{err}");
        let err = Method::client_secret_from(&env(&[
            ("ARM_TENANT_ID", "../evil"),
            ("ARM_CLIENT_ID", "a"),
            ("ARM_CLIENT_SECRET", "b"),
        ]))
        .unwrap_err();
        assert!(matches!(err, AuthError::BadTenant(_)));
    }

    #[test]
    fn token_answers_parse_numbers_and_strings() {
        let c = parse_token(
            r#"{"access_token":"abc","expires_in":3599}"#,
            "u",
            "access_token",
            "expires_in",
            true,
        )
        .unwrap();
        assert_eq!(c.token.expose(), "abc");
        let c = parse_token(
            r#"{"access_token":"abc","expires_on":"1700000000"}"#,
            "u",
            "access_token",
            "expires_on",
            false,
        )
        .unwrap();
        assert_eq!(
            c.expires_at,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        assert!(parse_token(
            r#"{"expires_in":1}"#,
            "u",
            "access_token",
            "expires_in",
            true
        )
        .is_err());
    }

    #[test]
    fn the_cli_subscription_comes_from_az_account_show() {
        let dir = tempfile::tempdir().unwrap();
        let az = dir.path().join("az");
        // The shape `az account show --output json` prints (Azure CLI docs).
        std::fs::write(
            &az,
            "#!/bin/sh\n[ \"$*\" = 'account show --output json' ] || exit 2\n\
             echo '{\"environmentName\": \"AzureCloud\", \"id\": \"11111111-2222-3333-4444-555555555555\", \
             \"isDefault\": true, \"name\": \"Ops\", \"state\": \"Enabled\", \
             \"tenantId\": \"t\", \"user\": {\"name\": \"a@b\", \"type\": \"user\"}}'\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            azure_cli_subscription(&az).unwrap(),
            "11111111-2222-3333-4444-555555555555"
        );
        let err = azure_cli_subscription(Path::new("/nonexistent/az")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/az"), "{err}");
    }
}
