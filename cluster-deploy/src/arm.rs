//! The Azure Resource Manager REST client: bearer auth, an `api-version` on every call,
//! long-running operations (201/202 with `Azure-AsyncOperation` or `Location`, honouring
//! `Retry-After`), bounded jittered retries for the transient answers named in
//! [`is_retryable`], and errors that carry ARM's `code` and `message`.
//!
//! Sources: "Track asynchronous Azure operations" and "Azure Resource Manager request limits and
//! throttling" (learn.microsoft.com/azure/azure-resource-manager/management/), the
//! Microsoft.Resources REST reference (deployments, what-if, deployment operations), summarised
//! in `../shared/REFERENCE.md`.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};
use support::http::Url;
use support::retry::{Attempt, Policy};

use crate::auth::{error_chain, AuthError, TokenProvider};
use crate::template::{AUTHORIZATION_API, COMPUTE_API, RESOURCES_API};

/// The api-version of Network's scale-set proxy operations (`ApiVersionVmssParameter`, enum
/// `["2017-03-30"]` in Network's `network.json`; INDEX.md fact 2).
pub const VMSS_NETWORK_API: &str = "2017-03-30";

/// The api-version of Resource SKUs (`Microsoft.Compute/Skus/stable/2021-07-01/skus.json`).
pub const SKUS_API: &str = "2021-07-01";

/// Timing of retries and polling. Production defaults in [`Timing::default`]; tests shorten
/// the intervals through the CLI's hidden flags, never by sleeping.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Retries of one request (429, 5xx, 409 AnotherOperationInProgress, dropped connections).
    pub retry: Policy,
    /// Wait between polls when the service gives no `Retry-After`.
    pub poll_interval: Duration,
    /// Give up on a long-running operation after this long.
    pub poll_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            retry: Policy {
                what: "ARM request",
                max_attempts: 8,
                initial_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(60),
                deadline: Some(Duration::from_secs(600)),
            },
            poll_interval: Duration::from_secs(10),
            poll_timeout: Duration::from_secs(3600),
        }
    }
}

/// What went wrong talking to ARM. Every variant names the request.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("{method} {url}: {status} {error}")]
    Api {
        method: String,
        url: String,
        status: u16,
        error: Box<CloudError>,
    },
    #[error("{method} {url}: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
    },
    #[error("{method} {url}: {retry}")]
    GaveUp {
        method: String,
        url: String,
        retry: String,
        #[source]
        last: Box<ArmError>,
    },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{what} did not finish within {}s (last status {status}; polling {url})", waited.as_secs())]
    Timeout {
        what: String,
        url: String,
        status: String,
        waited: Duration,
    },
    #[error("refusing to follow {url}: it is not on the ARM endpoint {endpoint} (the bearer token would go elsewhere)")]
    ForeignUrl { url: String, endpoint: String },
    #[error("{url}: unexpected answer: {message}")]
    Unexpected { url: String, message: String },
}

impl ArmError {
    /// ARM's error code, when the service gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::Api { error, .. } => Some(&error.code),
            ArmError::GaveUp { last, .. } => last.code(),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Api { status, .. } => Some(*status),
            ArmError::GaveUp { last, .. } => last.status(),
            _ => None,
        }
    }
}

/// The one place that says which answers are worth another try: throttling (429), server
/// errors (5xx), and a conflict with an operation still running on the same resource (409
/// `AnotherOperationInProgress`, ARM's documented "retry later" conflict).
pub fn is_retryable(status: u16, code: &str) -> bool {
    status == 429
        || (500..600).contains(&status) && status != 501 && status != 505
        || status == 409 && code == "AnotherOperationInProgress"
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

/// How a long-running operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// With the final resource when there is one.
    Succeeded(Value),
    /// `Failed` or `Canceled`, with ARM's error.
    Failed { status: String, error: CloudError },
}

/// ARM's error (`ErrorDetail` of common-types: code, message, target, nested `details`,
/// `additionalInfo`), kept whole so every cause reaches the operator.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CloudError {
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    pub details: Vec<CloudError>,
    /// `additionalInfo` entries as `type: info` text.
    pub additional_info: Vec<String>,
}

impl CloudError {
    /// From an `ErrorDetail` object (or an `ErrorResponse` holding one in `error`).
    pub fn from_value(value: &Value) -> Self {
        let e = if value["error"].is_object() {
            &value["error"]
        } else {
            value
        };
        Self {
            code: e["code"].as_str().unwrap_or("").to_string(),
            message: e["message"].as_str().unwrap_or("").to_string(),
            target: e["target"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
            details: e["details"]
                .as_array()
                .into_iter()
                .flatten()
                .map(CloudError::from_value)
                .collect(),
            additional_info: e["additionalInfo"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| format!("{}: {}", i["type"].as_str().unwrap_or(""), i["info"]))
                .collect(),
        }
    }

    /// Every code in the tree, this one first.
    pub fn codes(&self) -> Vec<&str> {
        let mut out = vec![self.code.as_str()];
        for d in &self.details {
            out.extend(d.codes());
        }
        out
    }

    fn write(&self, f: &mut std::fmt::Formatter<'_>, depth: usize) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(t) = &self.target {
            write!(f, " (target: {t})")?;
        }
        for info in &self.additional_info {
            write!(
                f,
                "\n{:indent$}additional info {info}",
                "",
                indent = depth * 2 + 2
            )?;
        }
        for d in &self.details {
            write!(f, "\n{:indent$}- ", "", indent = depth * 2 + 2)?;
            d.write(f, depth + 1)?;
        }
        Ok(())
    }
}

impl std::fmt::Display for CloudError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.write(f, 0)
    }
}

/// A progress report while polling.
#[derive(Debug, Clone)]
pub struct Progress {
    pub status: String,
    pub elapsed: Duration,
}

pub struct ArmClient {
    http: reqwest::blocking::Client,
    base: Url,
    tokens: TokenProvider,
    pub subscription: String,
    pub timing: Timing,
}

impl ArmClient {
    pub fn new(
        base: Url,
        tokens: TokenProvider,
        subscription: String,
        timing: Timing,
    ) -> Result<Self, ArmError> {
        let http =
            support::http::client(&support::http::ClientOptions::default()).map_err(|e| {
                ArmError::Transport {
                    method: "-".into(),
                    url: base.to_string(),
                    message: e.to_string(),
                }
            })?;
        Ok(Self {
            http,
            base,
            tokens,
            subscription,
            timing,
        })
    }

    /// `<endpoint><path>?api-version=<v>` plus extra query pairs.
    pub fn url(&self, path: &str, api_version: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}{path}"));
        {
            let mut pairs = url.query_pairs_mut();
            pairs.clear();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("api-version", api_version);
        }
        url
    }

    fn subscription_path(&self) -> String {
        format!("/subscriptions/{}", self.subscription)
    }

    fn group_path(&self, group: &str) -> String {
        format!("{}/resourcegroups/{group}", self.subscription_path())
    }

    /// Sends one request with retries. Any URL must be on the ARM endpoint.
    pub fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<Answer, ArmError> {
        self.check_origin(url)?;
        let label = method.to_string();
        let mut refreshed = false;
        let result = self.timing.retry.run(|_| {
            let token = self
                .tokens
                .token()
                .map_err(|e| Attempt::Fail(ArmError::Auth(e)))?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose())
                .header("Accept", "application/json");
            if let Some(b) = body {
                request = request.json(b);
            }
            let response = request.send().map_err(|e| {
                // A dropped or refused connection, a timeout: the request may not have been
                // handled, and every request here is idempotent, so try again.
                Attempt::retry(ArmError::Transport {
                    method: label.clone(),
                    url: url.to_string(),
                    message: error_chain(&e),
                })
            })?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let text = response.text().map_err(|e| {
                Attempt::retry(ArmError::Transport {
                    method: label.clone(),
                    url: url.to_string(),
                    message: error_chain(&e),
                })
            })?;
            if status < 400 {
                let body = if text.trim().is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).map_err(|e| {
                        Attempt::Fail(ArmError::Unexpected {
                            url: url.to_string(),
                            message: format!("{status} with a body that is not JSON: {e}"),
                        })
                    })?
                };
                return Ok(Answer {
                    status,
                    headers,
                    body,
                });
            }
            let cloud = error_of(&text);
            let code = cloud.code.clone();
            let error = ArmError::Api {
                method: label.clone(),
                url: url.to_string(),
                status,
                error: Box::new(cloud),
            };
            if status == 401 && !refreshed {
                // An expired or revoked token: fetch a new one once.
                refreshed = true;
                self.tokens.invalidate();
                return Err(Attempt::retry(error));
            }
            if is_retryable(status, &code) {
                Err(Attempt::Retry {
                    error,
                    after: support::http::retry_after(&headers),
                })
            } else {
                Err(Attempt::Fail(error))
            }
        });
        result.map_err(|e| match e {
            support::retry::RetryError::Fatal(e) => e,
            exhausted @ support::retry::RetryError::Exhausted { .. } => {
                let retry = exhausted.to_string();
                let last = exhausted.into_inner();
                ArmError::GaveUp {
                    method: label.clone(),
                    url: url.to_string(),
                    retry: retry.split(':').next().unwrap_or("gave up").to_string(),
                    last: Box::new(last),
                }
            }
        })
    }

    fn check_origin(&self, url: &Url) -> Result<(), ArmError> {
        if url.origin() == self.base.origin() {
            Ok(())
        } else {
            Err(ArmError::ForeignUrl {
                url: url.to_string(),
                endpoint: self.base.to_string(),
            })
        }
    }

    /// GET that maps 404 to `None`.
    pub fn get_optional(&self, url: &Url) -> Result<Option<Value>, ArmError> {
        match self.send(Method::GET, url, None) {
            Ok(answer) => Ok(Some(answer.body)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a list, following `nextLink`.
    pub fn list(&self, url: &Url) -> Result<Vec<Value>, ArmError> {
        let mut items = Vec::new();
        let mut next = Some(url.clone());
        while let Some(url) = next.take() {
            let body = self.send(Method::GET, &url, None)?.body;
            if let Some(values) = body["value"].as_array() {
                items.extend(values.iter().cloned());
            }
            if let Some(link) = body["nextLink"].as_str().filter(|l| !l.is_empty()) {
                next = Some(Url::parse(link).map_err(|e| ArmError::Unexpected {
                    url: url.to_string(),
                    message: format!("nextLink {link:?}: {e}"),
                })?);
            }
        }
        Ok(items)
    }

    /// Follows a long-running operation to its end. `initial` is the answer to the request that
    /// started it; `final_url` is fetched after an `Azure-AsyncOperation` succeeds (the
    /// resource, for a PUT); `progress` hears every poll.
    pub fn wait(
        &self,
        what: &str,
        initial: Answer,
        final_url: Option<&Url>,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Outcome, ArmError> {
        let start = Instant::now();
        let async_url = header_url(&initial.headers, "azure-asyncoperation")?;
        let location = header_url(&initial.headers, "location")?;
        let mut wait = self.wait_after(&initial.headers);
        if let Some(url) = async_url {
            let mut status = String::from("Accepted");
            loop {
                self.check_deadline(what, &url, &status, start)?;
                std::thread::sleep(wait);
                let answer = self.send(Method::GET, &url, None)?;
                wait = self.wait_after(&answer.headers);
                status = answer.body["status"].as_str().unwrap_or("").to_string();
                progress(&Progress {
                    status: status.clone(),
                    elapsed: start.elapsed(),
                });
                match status.as_str() {
                    "Succeeded" => {
                        let body = match final_url {
                            Some(u) => self.send(Method::GET, u, None)?.body,
                            None => Value::Null,
                        };
                        return Ok(Outcome::Succeeded(body));
                    }
                    "Failed" | "Canceled" => {
                        return Ok(Outcome::Failed {
                            status,
                            error: CloudError::from_value(&answer.body["error"]),
                        });
                    }
                    "" => {
                        return Err(ArmError::Unexpected {
                            url: url.to_string(),
                            message: "operation status without `status`".into(),
                        })
                    }
                    // InProgress, Running, Accepted, and any other non-terminal state.
                    _ => {}
                }
            }
        }
        if let Some(url) = location {
            let mut status = String::from("Accepted");
            loop {
                self.check_deadline(what, &url, &status, start)?;
                std::thread::sleep(wait);
                let answer = self.send(Method::GET, &url, None)?;
                wait = self.wait_after(&answer.headers);
                if answer.status == 202 {
                    status = "InProgress".into();
                    progress(&Progress {
                        status: status.clone(),
                        elapsed: start.elapsed(),
                    });
                    continue;
                }
                progress(&Progress {
                    status: "Succeeded".into(),
                    elapsed: start.elapsed(),
                });
                return Ok(Outcome::Succeeded(answer.body));
            }
        }
        Ok(Outcome::Succeeded(initial.body))
    }

    fn wait_after(&self, headers: &HeaderMap) -> Duration {
        support::http::retry_after(headers)
            .map(|d| d.min(support::retry::MAX_RETRY_AFTER))
            .unwrap_or(self.timing.poll_interval)
    }

    fn check_deadline(
        &self,
        what: &str,
        url: &Url,
        status: &str,
        start: Instant,
    ) -> Result<(), ArmError> {
        if start.elapsed() > self.timing.poll_timeout {
            return Err(ArmError::Timeout {
                what: what.to_string(),
                url: url.to_string(),
                status: status.to_string(),
                waited: start.elapsed(),
            });
        }
        Ok(())
    }

    // ---- resource groups

    pub fn resource_group(&self, group: &str) -> Result<Option<Value>, ArmError> {
        self.get_optional(&self.url(&self.group_path(group), RESOURCES_API, &[]))
    }

    pub fn create_resource_group(
        &self,
        group: &str,
        location: &str,
        tags: &Value,
    ) -> Result<Value, ArmError> {
        let url = self.url(&self.group_path(group), RESOURCES_API, &[]);
        let body = json!({ "location": location, "tags": tags });
        let answer = self.send(Method::PUT, &url, Some(&body))?;
        Ok(answer.body)
    }

    pub fn delete_resource_group(
        &self,
        group: &str,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Outcome, ArmError> {
        let url = self.url(&self.group_path(group), RESOURCES_API, &[]);
        let answer = self.send(Method::DELETE, &url, None)?;
        self.wait(
            &format!("deleting resource group {group}"),
            answer,
            None,
            progress,
        )
    }

    // ---- deployments

    fn deployment_path(&self, group: &str, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.Resources/deployments/{name}",
            self.group_path(group)
        )
    }

    /// PUTs an Incremental deployment (never Complete: it would delete whatever else the resource
    /// group holds) and follows it to its end.
    pub fn deploy(
        &self,
        group: &str,
        name: &str,
        template: &Value,
        parameters: &Value,
        tags: &Value,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Outcome, ArmError> {
        let url = self.url(&self.deployment_path(group, name), RESOURCES_API, &[]);
        // `tags` (Deployment.tags): the record then says whose it is, which destroy checks
        // before it trusts what the record names.
        let body = json!({
            "properties": {
                "mode": "Incremental",
                "template": template,
                "parameters": parameters,
            },
            "tags": tags,
        });
        let answer = self.send(Method::PUT, &url, Some(&body))?;
        self.wait(&format!("deployment {name}"), answer, Some(&url), progress)
    }

    pub fn deployment(&self, group: &str, name: &str) -> Result<Option<Value>, ArmError> {
        self.get_optional(&self.url(&self.deployment_path(group, name), RESOURCES_API, &[]))
    }

    pub fn deployment_operations(&self, group: &str, name: &str) -> Result<Vec<Value>, ArmError> {
        // DeploymentOperations_List: `.../resourcegroups/{rg}/deployments/{name}/operations`,
        // without `providers/Microsoft.Resources` (resources.json).
        let url = self.url(
            &format!("{}/deployments/{name}/operations", self.group_path(group)),
            RESOURCES_API,
            &[],
        );
        self.list(&url)
    }

    /// Runs what-if for an Incremental deployment and returns the `WhatIfOperationResult`.
    pub fn what_if(
        &self,
        group: &str,
        name: &str,
        template: &Value,
        parameters: &Value,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Outcome, ArmError> {
        let url = self.url(
            &format!("{}/whatIf", self.deployment_path(group, name)),
            RESOURCES_API,
            &[],
        );
        let body = json!({
            "properties": {
                "mode": "Incremental",
                "template": template,
                "parameters": parameters,
            }
        });
        let answer = self.send(Method::POST, &url, Some(&body))?;
        match self.wait(&format!("what-if of {name}"), answer, None, progress)? {
            Outcome::Succeeded(result) => {
                // The result carries its own status and, on failure, an error.
                match result["status"].as_str() {
                    Some("Failed") | Some("Canceled") => Ok(Outcome::Failed {
                        status: result["status"].as_str().unwrap_or_default().to_string(),
                        error: CloudError::from_value(&result["error"]),
                    }),
                    _ => Ok(Outcome::Succeeded(result)),
                }
            }
            failed => Ok(failed),
        }
    }

    // ---- resources

    /// Every resource of a group (Resources_ListByResourceGroup, no filter: a tag filter would
    /// drop the tags, INDEX.md fact 1).
    pub fn resources_in_group(&self, group: &str) -> Result<Vec<Value>, ArmError> {
        let url = self.url(
            &format!("{}/resources", self.group_path(group)),
            RESOURCES_API,
            &[],
        );
        self.list(&url)
    }

    /// The caller's permissions on a group (Permissions_ListForResourceGroup).
    pub fn permissions(&self, group: &str) -> Result<Vec<Value>, ArmError> {
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Authorization/permissions",
                self.group_path(group)
            ),
            AUTHORIZATION_API,
            &[],
        );
        self.list(&url)
    }

    /// Compute usages of a location (Usage_List): `{name: {value}, currentValue, limit}`.
    pub fn usages(&self, location: &str) -> Result<Vec<Value>, ArmError> {
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Compute/locations/{location}/usages",
                self.subscription_path()
            ),
            COMPUTE_API,
            &[],
        );
        self.list(&url)
    }

    /// The Compute SKUs offered in a location (ResourceSkus_List, `$filter=location eq`).
    pub fn skus(&self, location: &str) -> Result<Vec<Value>, ArmError> {
        let filter = format!("location eq '{location}'");
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Compute/skus",
                self.subscription_path()
            ),
            SKUS_API,
            &[("$filter", &filter)],
        );
        self.list(&url)
    }

    pub fn get_resource(&self, id: &str, api_version: &str) -> Result<Option<Value>, ArmError> {
        self.get_optional(&self.url(id, api_version, &[]))
    }

    /// Deletes a resource by id and waits for it to be gone.
    pub fn delete_resource(
        &self,
        id: &str,
        api_version: &str,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<Outcome, ArmError> {
        let url = self.url(id, api_version, &[]);
        match self.send(Method::DELETE, &url, None) {
            Ok(answer) => self.wait(&format!("deleting {id}"), answer, None, progress),
            Err(e) if e.status() == Some(404) => Ok(Outcome::Succeeded(Value::Null)),
            Err(e) => Err(e),
        }
    }

    pub fn scale_set_path(&self, group: &str, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}",
            self.group_path(group)
        )
    }

    /// The instances of a Uniform scale set (Virtual Machine Scale Set VMs - List).
    pub fn scale_set_instances(&self, group: &str, name: &str) -> Result<Vec<Value>, ArmError> {
        let url = self.url(
            &format!("{}/virtualMachines", self.scale_set_path(group, name)),
            COMPUTE_API,
            &[],
        );
        self.list(&url)
    }

    /// The NICs of a scale set's instances (NetworkInterfaces_ListVirtualMachineScaleSetNetworkInterfaces:
    /// a Network proxy operation under the Compute path with its own api-version, 2017-03-30 in
    /// `vmssNetworkInterface.json`; Network's general versions are refused there).
    pub fn scale_set_nics(&self, group: &str, name: &str) -> Result<Vec<Value>, ArmError> {
        let url = self.url(
            &format!("{}/networkInterfaces", self.scale_set_path(group, name)),
            VMSS_NETWORK_API,
            &[],
        );
        self.list(&url)
    }

    /// Role assignments at the resource group's scope for one principal.
    pub fn role_assignments_of(
        &self,
        group: &str,
        principal_id: &str,
    ) -> Result<Vec<Value>, ArmError> {
        let filter = format!("principalId eq '{}'", principal_id.replace('\'', "''"));
        let url = self.url(
            &format!(
                "{}/providers/Microsoft.Authorization/roleAssignments",
                self.group_path(group)
            ),
            AUTHORIZATION_API,
            &[("$filter", &filter)],
        );
        self.list(&url)
    }
}

fn header_url(headers: &HeaderMap, name: &str) -> Result<Option<Url>, ArmError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| ArmError::Unexpected {
        url: name.to_string(),
        message: "header is not text".into(),
    })?;
    Url::parse(text)
        .map(Some)
        .map_err(|e| ArmError::Unexpected {
            url: text.to_string(),
            message: format!("{name} header is not a URL: {e}"),
        })
}

/// ARM's error body: `{"error": {code, message, target, details}}` (some services answer the
/// inner object alone). Falls back to the start of the body.
pub fn error_of(text: &str) -> CloudError {
    let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let error = CloudError::from_value(&value);
    if error.code.is_empty() {
        CloudError {
            code: "UnknownError".to_string(),
            message: support::http::body_excerpt(text),
            ..CloudError::default()
        }
    } else {
        error
    }
}

#[cfg(test)]
mod tests;
