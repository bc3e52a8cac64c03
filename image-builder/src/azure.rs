//! What image-builder asks Azure itself, with the credential Packer uses for the same spec: the
//! subscription a build really goes to, and whether a recorded image still exists.
//!
//! - The effective subscription: `[azure] subscription_id`, else `ARM_SUBSCRIPTION_ID`
//!   (client-secret auth), the Azure CLI's current subscription (`az account show`), or the
//!   managed identity's VM's (IMDS `compute.subscriptionId`). It is part of the input hash and
//!   is handed to Packer, so the hash, the build and the checks all mean the same subscription.
//! - Existence: an ARM GET of the resource id, `Images_Get` (api-version 2024-11-01,
//!   ComputeRP/stable/2024-11-01/image.json) for a managed image, `GalleryImageVersions_Get`
//!   (api-version 2024-03-03, GalleryRP/stable/2024-03-03/GalleryRP.json) for a gallery image
//!   version, both in Azure/azure-rest-api-specs. 429, 5xx and connection failures are retried
//!   (honouring `Retry-After`); 404 means the image is gone; anything else is an error that
//!   names the URL and ARM's code and message.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::azure_auth::{self, AuthError, Env, Method, TokenEndpoints, TokenProvider};
use support::http::Url;
use support::retry::{Attempt, Policy};

use crate::spec::{AuthMode, AzureTarget};

/// Production endpoints; every one is a flag, and tests point them at loopback doubles.
pub const DEFAULT_ARM_ENDPOINT: &str = "https://management.azure.com";
pub const DEFAULT_LOGIN_ENDPOINT: &str = "https://login.microsoftonline.com";
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// `Images_Get`'s api-version.
pub const IMAGES_API_VERSION: &str = "2024-11-01";
/// `GalleryImageVersions_Get`'s api-version.
pub const GALLERY_IMAGE_VERSIONS_API_VERSION: &str = "2024-03-03";
/// `ResourceGroups_Get`'s api-version (shared/azure-rest-specs: Resources 2025-04-01).
pub const RESOURCE_GROUPS_API_VERSION: &str = "2025-04-01";

/// Where image-builder reaches Azure, and with which Azure CLI.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub arm: Url,
    pub login: Url,
    pub imds: Url,
    pub az_program: PathBuf,
    /// Retries of token and ARM requests.
    pub retry: Policy,
}

/// The retry policy of image-builder's Azure requests: five attempts within a minute, the
/// first wait `initial_delay` (1 s by default), doubling up to 16 times that.
pub fn retry_policy(initial_delay: Duration) -> Policy {
    Policy {
        what: "Azure request",
        max_attempts: 5,
        initial_delay,
        max_delay: initial_delay * 16,
        deadline: Some(Duration::from_secs(60)),
    }
}

/// Where the effective subscription came from, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionSource {
    Spec,
    Environment,
    AzureCli,
    Imds,
}

impl SubscriptionSource {
    pub fn describe(self) -> &'static str {
        match self {
            SubscriptionSource::Spec => "[azure] subscription_id",
            SubscriptionSource::Environment => "ARM_SUBSCRIPTION_ID",
            SubscriptionSource::AzureCli => "the Azure CLI's current subscription",
            SubscriptionSource::Imds => "the managed identity's VM (instance metadata)",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0:?} is not an Azure resource id image-builder would send to ARM")]
    BadResourceId(String),
    #[error("GET {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("GET {url} answered {status} {code}: {message}")]
    Refused {
        url: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("GET {url} answered 200 with a body that is not a resource: {message}")]
    BadAnswer { url: String, message: String },
}

/// The credential Packer uses for `auth`, so image-builder's own calls see what Packer sees.
pub fn credential(auth: AuthMode, env: &Env, az_program: &Path) -> Result<Method, AuthError> {
    match auth {
        AuthMode::ClientSecret => Method::client_secret_from(env),
        AuthMode::AzureCli => match azure_auth::find_program(az_program) {
            Some(program) => Ok(Method::AzureCli { program }),
            None => Err(AuthError::NoAzureCli(az_program.to_path_buf())),
        },
        // The template gives Packer no client id: the VM's system-assigned identity.
        AuthMode::ManagedIdentity => Ok(Method::ManagedIdentity { client_id: None }),
    }
}

/// The subscription known without asking anyone: the spec's, or `ARM_SUBSCRIPTION_ID` with
/// client-secret auth (what `render` and `validate`, which stay offline, can use).
pub fn offline_subscription(
    azure: &AzureTarget,
    env: &Env,
) -> Option<(String, SubscriptionSource)> {
    if let Some(sub) = &azure.subscription_id {
        return Some((sub.clone(), SubscriptionSource::Spec));
    }
    if azure.auth == AuthMode::ClientSecret {
        if let Some(sub) = env.get("ARM_SUBSCRIPTION_ID") {
            return Some((sub.to_string(), SubscriptionSource::Environment));
        }
    }
    None
}

/// The subscription a build goes to, for every auth mode.
pub fn effective_subscription(
    azure: &AzureTarget,
    env: &Env,
    endpoints: &Endpoints,
) -> Result<(String, SubscriptionSource), AzureError> {
    if let Some(found) = offline_subscription(azure, env) {
        return Ok(found);
    }
    match azure.auth {
        AuthMode::ClientSecret => Err(AuthError::MissingVariable("ARM_SUBSCRIPTION_ID").into()),
        AuthMode::AzureCli => Ok((
            azure_auth::azure_cli_subscription(&endpoints.az_program)?,
            SubscriptionSource::AzureCli,
        )),
        AuthMode::ManagedIdentity => {
            let tokens = token_provider(Method::ManagedIdentity { client_id: None }, endpoints)?;
            Ok((tokens.imds_subscription()?, SubscriptionSource::Imds))
        }
    }
}

fn token_provider(method: Method, endpoints: &Endpoints) -> Result<TokenProvider, AuthError> {
    // The token audience is ARM's endpoint with a trailing slash, as `az` and IMDS expect it.
    let audience = format!("{}/", endpoints.arm.as_str().trim_end_matches('/'));
    TokenProvider::new(
        method,
        TokenEndpoints {
            login: endpoints.login.clone(),
            imds: endpoints.imds.clone(),
            audience,
        },
        endpoints.retry.clone(),
    )
}

/// What ARM says about a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// 200, with the resource's `properties.provisioningState` when it has one.
    Present { provisioning_state: Option<String> },
    /// 404, with ARM's code and message.
    Missing { code: String, message: String },
}

/// Reads resources from ARM with one credential.
pub struct ArmReader {
    tokens: TokenProvider,
    http: reqwest::blocking::Client,
    arm: Url,
    retry: Policy,
}

impl ArmReader {
    pub fn new(method: Method, endpoints: &Endpoints) -> Result<Self, AzureError> {
        let http =
            support::http::client(&support::http::ClientOptions::default()).map_err(|e| {
                AzureError::Transport {
                    url: endpoints.arm.to_string(),
                    message: azure_auth::error_chain(&e),
                }
            })?;
        Ok(Self {
            tokens: token_provider(method, endpoints)?,
            http,
            arm: endpoints.arm.clone(),
            retry: endpoints.retry.clone(),
        })
    }

    pub fn describe(&self) -> String {
        self.tokens.method().describe()
    }

    /// GETs a managed image or gallery image version by its ARM id, with the api-version of
    /// its operation.
    pub fn image(&self, id: &str) -> Result<Presence, AzureError> {
        let api_version = api_version_for(id)?;
        Ok(match self.get(id, api_version)? {
            Found::Body(body) => Presence::Present {
                provisioning_state: body["properties"]["provisioningState"]
                    .as_str()
                    .map(str::to_string),
            },
            Found::Missing { code, message } => Presence::Missing { code, message },
        })
    }

    /// The region of a resource group (ResourceGroups_Get, Resources 2025-04-01: `location`).
    pub fn resource_group_location(
        &self,
        subscription: &str,
        group: &str,
    ) -> Result<String, AzureError> {
        let path = format!("/subscriptions/{subscription}/resourcegroups/{group}");
        if !is_plain_segment(subscription) || !is_plain_segment(group) {
            return Err(AzureError::BadResourceId(path));
        }
        match self.get(&path, RESOURCE_GROUPS_API_VERSION)? {
            Found::Body(body) => body["location"]
                .as_str()
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .ok_or_else(|| AzureError::BadAnswer {
                    url: path.clone(),
                    message: "the resource group has no location".to_string(),
                }),
            Found::Missing { code, message } => Err(AzureError::Refused {
                url: path,
                status: 404,
                code,
                message,
            }),
        }
    }

    /// GETs `path` (an ARM id, segments already checked) with `api_version`: the JSON object
    /// on 200, ARM's code and message on 404; throttling and server errors are retried.
    fn get(&self, path: &str, api_version: &str) -> Result<Found, AzureError> {
        let url = format!("{}{path}", self.arm.as_str().trim_end_matches('/'));
        let mut url = Url::parse(&url).map_err(|_| AzureError::BadResourceId(path.to_string()))?;
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        let token = self.tokens.token()?;
        let result = self.retry.run(|_| {
            let response = self
                .http
                .get(url.clone())
                .bearer_auth(token.expose())
                .send()
                .map_err(|e| {
                    Attempt::retry(AzureError::Transport {
                        url: url.to_string(),
                        message: azure_auth::error_chain(&e),
                    })
                })?;
            let status = response.status().as_u16();
            let after = support::http::retry_after(response.headers());
            if status == 200 {
                let bytes = support::http::read_small_answer(response).map_err(|e| {
                    Attempt::retry(AzureError::Transport {
                        url: url.to_string(),
                        message: e.to_string(),
                    })
                })?;
                let body: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    Attempt::Fail(AzureError::BadAnswer {
                        url: url.to_string(),
                        message: format!("not JSON: {e}"),
                    })
                })?;
                if !body.is_object() {
                    return Err(Attempt::Fail(AzureError::BadAnswer {
                        url: url.to_string(),
                        message: "not a JSON object".to_string(),
                    }));
                }
                return Ok(Found::Body(body));
            }
            let text = support::http::error_body(response);
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let code = parsed["error"]["code"].as_str().unwrap_or("").to_string();
            let message = parsed["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or(text);
            if status == 404 {
                return Ok(Found::Missing { code, message });
            }
            let error = AzureError::Refused {
                url: url.to_string(),
                status,
                code,
                message,
            };
            // ARM: throttling and server errors are transient.
            if status == 429 || status >= 500 {
                Err(Attempt::Retry { error, after })
            } else {
                Err(Attempt::Fail(error))
            }
        });
        result.map_err(|e| e.into_inner())
    }
}

/// One GET's answer.
enum Found {
    Body(Value),
    Missing { code: String, message: String },
}

/// One segment of an ARM path that can be sent as it is: ARM's name characters only (letters,
/// digits, `-_.()`), never empty, never `.` or `..`.
fn is_plain_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
}

/// The api-version of the GET for a resource id, which must be a managed image or a gallery
/// image version id (nothing else is ever sent).
fn api_version_for(id: &str) -> Result<&'static str, AzureError> {
    let bad = || AzureError::BadResourceId(id.to_string());
    let segments: Vec<&str> = id.split('/').collect();
    let clean = segments.first() == Some(&"") && segments[1..].iter().all(|s| is_plain_segment(s));
    if !clean {
        return Err(bad());
    }
    let lower: Vec<String> = segments[1..]
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();
    match l.as_slice() {
        ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.compute", "images", _] => {
            Ok(IMAGES_API_VERSION)
        }
        ["subscriptions", _, "resourcegroups", _, "providers", "microsoft.compute", "galleries", _, "images", _, "versions", _] => {
            Ok(GALLERY_IMAGE_VERSIONS_API_VERSION)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_image_ids_are_sent_each_with_its_api_version() {
        assert_eq!(
            api_version_for(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/nomad-1.10.5"
            )
            .unwrap(),
            "2024-11-01"
        );
        assert_eq!(
            api_version_for("/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/images/i/versions/1.2.3").unwrap(),
            "2024-03-03"
        );
        for bad in [
            "/subscriptions/s/resourceGroups/rg",
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/x?api-version=1",
            "/subscriptions/s/resourceGroups/../providers/Microsoft.Compute/images/x",
            "subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/x",
            "/tmp/root",
        ] {
            assert!(api_version_for(bad).is_err(), "{bad}");
        }
    }
}
