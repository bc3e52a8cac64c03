//! Managed identity tokens from Azure IMDS for one audience (run-nomad's Key Vault reads at
//! boot): `GET {imds}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=<r>` with
//! `Metadata: true`, never through a proxy (REFERENCE.md, "Azure Instance Metadata Service";
//! the IMDS spec's Identity_GetToken). The answer's `expires_in` and `expires_on` are strings
//! (INDEX.md fact 14); numbers are accepted too.
//!
//! IMDS answers 404/410/429/5xx while the VM (or its identity) is still being set up: those and
//! connection errors are retried until the deadline; 400 (no identity, bad request) is final.
//! Tokens are cached until five minutes before they expire.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::blocking::Client;
use reqwest::Url;
use serde::Deserialize;

use crate::http::{self, ClientOptions};
use crate::retry::{Attempt, Policy};
use crate::secret::Secret;

/// The api-version of Identity_GetToken that every IMDS answers (REFERENCE.md).
pub const TOKEN_API_VERSION: &str = "2018-02-01";

const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// Why no token.
#[derive(Debug, thiserror::Error)]
pub enum ImdsTokenError {
    #[error("invalid IMDS endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("managed identity token for {resource} from {url}: {message}")]
    Request {
        url: String,
        resource: String,
        message: String,
    },
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<serde_json::Value>,
}

/// Tokens for one audience from IMDS.
pub struct ImdsTokens {
    url: Url,
    resource: String,
    http: Client,
    policy: Policy,
    cached: Mutex<Option<(Secret, SystemTime)>>,
}

impl std::fmt::Debug for ImdsTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImdsTokens")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl ImdsTokens {
    /// `endpoint` is `--imds-endpoint` (`http://169.254.169.254` in production); `client_id`
    /// picks a user-assigned identity. Retries end after `deadline`.
    pub fn new(
        endpoint: &str,
        resource: &str,
        client_id: Option<&str>,
        deadline: Duration,
    ) -> Result<Self, ImdsTokenError> {
        let bad = |reason: String| ImdsTokenError::Endpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let base = Url::parse(endpoint).map_err(|e| bad(e.to_string()))?;
        if base.scheme() != "http" {
            return Err(bad("IMDS is plain http".into()));
        }
        let mut url = base
            .join("/metadata/identity/oauth2/token")
            .map_err(|e| bad(e.to_string()))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", TOKEN_API_VERSION);
            q.append_pair("resource", resource);
            if let Some(id) = client_id {
                q.append_pair("client_id", id);
            }
        }
        let http = http::client(&ClientOptions {
            no_proxy: true,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
        })
        .map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            url,
            resource: resource.to_string(),
            http,
            policy: Policy {
                what: "IMDS token request",
                max_attempts: u32::MAX,
                initial_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(10),
                deadline: Some(deadline),
            },
            cached: Mutex::new(None),
        })
    }

    /// Shorter waits between retries (tests).
    pub fn with_delays(mut self, initial: Duration, max: Duration) -> Self {
        self.policy.initial_delay = initial;
        self.policy.max_delay = max;
        self
    }

    /// A token, from the cache while it has more than five minutes left.
    pub fn token(&self) -> Result<Secret, ImdsTokenError> {
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, until)) = cached.as_ref() {
            if *until > SystemTime::now() + RENEW_BEFORE {
                return Ok(token.clone());
            }
        }
        let (token, until) = self.fetch()?;
        *cached = Some((token.clone(), until));
        Ok(token)
    }

    /// Forgets the cached token.
    pub fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn error(&self, message: String) -> ImdsTokenError {
        ImdsTokenError::Request {
            url: self.url.to_string(),
            resource: self.resource.clone(),
            message,
        }
    }

    fn fetch(&self) -> Result<(Secret, SystemTime), ImdsTokenError> {
        let answer = self
            .policy
            .run(|info| {
                let response = self
                    .http
                    .get(self.url.clone())
                    .header("Metadata", "true")
                    .send()
                    .map_err(|e| Attempt::retry(self.error(e.to_string())))?;
                let status = response.status().as_u16();
                if response.status().is_success() {
                    let bytes = http::read_small_answer(response)
                        .map_err(|e| Attempt::retry(self.error(e.to_string())))?;
                    return serde_json::from_slice::<TokenAnswer>(&bytes).map_err(|e| {
                        Attempt::Fail(self.error(format!(
                            "the answer is not a token document ({:?} error at line {} column {})",
                            e.classify(),
                            e.line(),
                            e.column()
                        )))
                    });
                }
                let after = http::retry_after(response.headers());
                // The excerpt is waited for no longer than the token's own deadline.
                let body = match info.remaining {
                    Some(left) => {
                        http::error_body_until(response, std::time::Instant::now() + left)
                    }
                    None => http::error_body(response),
                };
                let error = self.error(format!("HTTP {status}: {body}"));
                match status {
                    404 | 410 | 429 | 500..=599 => Err(Attempt::Retry { error, after }),
                    _ => Err(Attempt::Fail(error)),
                }
            })
            .map_err(|e| match e {
                crate::retry::RetryError::Fatal(e) => e,
                exhausted @ crate::retry::RetryError::Exhausted { .. } => {
                    let text = exhausted.to_string();
                    self.error(text)
                }
            })?;
        let seconds = match &answer.expires_in {
            Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        .unwrap_or(0);
        Ok((
            Secret::new(answer.access_token),
            SystemTime::now() + Duration::from_secs(seconds),
        ))
    }
}

impl crate::keyvault::TokenSource for ImdsTokens {
    fn token(&self) -> Result<Secret, Box<dyn std::error::Error + Send + Sync>> {
        ImdsTokens::token(self).map_err(Into::into)
    }

    fn invalidate(&self) {
        ImdsTokens::invalidate(self)
    }
}
