//! The Scheduled Events endpoint of IMDS: one read or one approval per call, each failure
//! classified as worth retrying or not. The retry loop is the watcher's (its clock, its
//! deadlines), so nothing here waits.
//!
//! From Microsoft's documentation ([SE], learn.microsoft.com/azure/virtual-machines/linux/
//! scheduled-events): `GET http://169.254.169.254/metadata/scheduledevents?api-version=2020-07-01`
//! with `Metadata: true` ("required for all scheduled events requests"); approval is a `POST` to
//! the same URL with `{"StartRequests": [{"EventId": ...}]}`, answered 200 for a valid event ID
//! "even if another VM already approved the event" and 400 for a malformed header or payload.
//! "Versions are mandatory; the current version is `2020-07-01`". The first request enables the
//! service and may take "up to two minutes", so it gets its own, longer timeout. Like every IMDS
//! request it never goes through a proxy; 404, 410, 429 (over 5 requests a second) and 5xx are
//! transient (the instance endpoint's [`RETRYABLE_STATUSES`]).

use std::io::Read;
use std::time::Duration;

use support::http::{error_body, retry_after, ClientOptions, Url};

use super::document::{self, Document};
use crate::metadata::RETRYABLE_STATUSES;

/// The Scheduled Events api-version (the documentation's current one; 2019-01-01 or later is
/// needed for Terminate events, [TN]).
pub const API_VERSION: &str = "2020-07-01";

/// The path of the endpoint.
pub const PATH: &str = "/metadata/scheduledevents";

/// The largest document read (a real one holds a handful of events).
const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// A request that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Worth trying again (after `retry_after` when IMDS said so).
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Trying again will not help (400, 403...).
    Permanent(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transient { message, .. } | CallError::Permanent(message) => {
                f.write_str(message)
            }
        }
    }
}

/// Request timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Until a first document has been read: the call that enables the service.
    pub first: Duration,
    /// Every later request.
    pub normal: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(150),
            normal: Duration::from_secs(10),
        }
    }
}

/// The client.
#[derive(Debug, Clone)]
pub struct EventsClient {
    http: reqwest::blocking::Client,
    url: Url,
    timeouts: Timeouts,
}

/// The approval body for these events, exactly as the documentation shows it.
pub fn approval_body(event_ids: &[&str]) -> String {
    let requests: Vec<_> = event_ids
        .iter()
        .map(|id| serde_json::json!({ "EventId": id }))
        .collect();
    serde_json::json!({ "StartRequests": requests }).to_string()
}

impl EventsClient {
    /// A client for the endpoint under `endpoint` (`--imds-endpoint`).
    pub fn new(endpoint: &str, timeouts: Timeouts) -> Result<Self, String> {
        let invalid = |reason: &str| format!("invalid --imds-endpoint {endpoint:?}: {reason}");
        let base = Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
        if base.scheme() != "http" {
            return Err(invalid("IMDS is served over http://"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("give the base URL only, without a query"));
        }
        let mut url = base.join(PATH).map_err(|e| invalid(&e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("api-version", API_VERSION);
        let http = support::http::client(&ClientOptions {
            connect_timeout: Duration::from_secs(3),
            timeout: timeouts.first.max(timeouts.normal),
            no_proxy: true,
        })
        .map_err(|e| format!("building the IMDS client: {e}"))?;
        Ok(Self {
            http,
            url,
            timeouts,
        })
    }

    /// The request URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Reads the document; `first` until one has been read (the longer timeout).
    pub fn fetch(&self, first: bool) -> Result<Document, CallError> {
        let timeout = if first {
            self.timeouts.first
        } else {
            self.timeouts.normal
        };
        let response = self
            .http
            .get(self.url.clone())
            .header("Metadata", "true")
            .timeout(timeout)
            .send()
            .map_err(|e| self.transport("GET", &e))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(self.status_error("GET", response));
        }
        let mut body = Vec::new();
        response
            .take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| CallError::Transient {
                message: format!("GET {}: reading the body: {e}", self.url),
                retry_after: None,
            })?;
        if body.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(CallError::Transient {
                message: format!(
                    "GET {}: the document is larger than {MAX_DOCUMENT_BYTES} bytes",
                    self.url
                ),
                retry_after: None,
            });
        }
        let text = String::from_utf8_lossy(&body);
        // A garbled 200 is the service's fault and may pass: try again.
        document::parse(&text).map_err(|e| CallError::Transient {
            message: format!(
                "GET {}: {e}; it starts: {}",
                self.url,
                support::http::body_excerpt(&text.chars().take(200).collect::<String>())
            ),
            retry_after: None,
        })
    }

    /// Approves these events (one `POST`).
    pub fn approve(&self, event_ids: &[&str]) -> Result<(), CallError> {
        let response = self
            .http
            .post(self.url.clone())
            .header("Metadata", "true")
            .header("Content-Type", "application/json")
            .body(approval_body(event_ids))
            .timeout(self.timeouts.normal)
            .send()
            .map_err(|e| self.transport("POST", &e))?;
        if response.status().as_u16() == 200 {
            return Ok(());
        }
        Err(self.status_error("POST", response))
    }

    fn transport(&self, method: &str, error: &reqwest::Error) -> CallError {
        let mut message = format!("{method} {}: {error}", self.url);
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        CallError::Transient {
            message,
            retry_after: None,
        }
    }

    fn status_error(&self, method: &str, response: reqwest::blocking::Response) -> CallError {
        let status = response.status().as_u16();
        let after = retry_after(response.headers());
        let message = format!(
            "{method} {} answered {status}: {}",
            self.url,
            error_body(response)
        );
        if RETRYABLE_STATUSES.contains(&status) {
            CallError::Transient {
                message,
                retry_after: after,
            }
        } else {
            CallError::Permanent(message)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use support::doubles::imds::{fixture, ImdsDouble, Reply};
    use support::doubles::imds_events::{self, Event};

    #[test]
    fn the_version_is_one_the_double_serves_and_the_url_is_right() {
        assert!(imds_events::API_VERSIONS.contains(&API_VERSION));
        let client = EventsClient::new("http://127.0.0.1:9", Timeouts::default()).unwrap();
        assert_eq!(
            client.url().as_str(),
            "http://127.0.0.1:9/metadata/scheduledevents?api-version=2020-07-01"
        );
        for bad in ["https://169.254.169.254", "nope", "http://h/?a=1"] {
            let err = EventsClient::new(bad, Timeouts::default()).unwrap_err();
            assert!(err.contains("--imds-endpoint"), "{err}");
        }
    }

    #[test]
    fn the_approval_body_is_the_documented_shape() {
        assert_eq!(
            approval_body(&["f020ba2e-3bc0-4c40-a10b-86575a9eabd5"]),
            r#"{"StartRequests":[{"EventId":"f020ba2e-3bc0-4c40-a10b-86575a9eabd5"}]}"#
        );
    }

    #[test]
    fn reads_and_approves_with_the_header() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let events = imds.scheduled_events();
        let when = std::time::SystemTime::now() + Duration::from_secs(300);
        events.schedule(Event::terminate("e-1", "vmss_0", when));
        let client = EventsClient::new(imds.url(), Timeouts::default()).unwrap();
        let doc = client.fetch(true).unwrap();
        assert_eq!(doc.events[0].id, "e-1");
        client.approve(&["e-1"]).unwrap();
        assert_eq!(events.approvals()[0].event_ids, ["e-1"]);
        let requests = imds.requests();
        assert!(requests
            .iter()
            .all(|r| r.header("metadata") == Some("true")));
    }

    #[test]
    fn failures_are_classified() {
        let imds = ImdsDouble::start(fixture("instance.json"));
        let events = imds.scheduled_events();
        events.script([
            Reply::Throttled {
                retry_after_secs: 3,
            },
            Reply::Status(410),
            Reply::Status(503),
            Reply::Body {
                status: 200,
                body: "<html>".into(),
            },
            Reply::Status(403),
        ]);
        let client = EventsClient::new(imds.url(), Timeouts::default()).unwrap();
        match client.fetch(false) {
            Err(CallError::Transient { retry_after, .. }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)))
            }
            other => panic!("{other:?}"),
        }
        for _ in 0..3 {
            assert!(matches!(
                client.fetch(false),
                Err(CallError::Transient { .. })
            ));
        }
        let err = client.fetch(false).unwrap_err();
        assert!(matches!(err, CallError::Permanent(_)), "{err}");
        assert!(err.to_string().contains("403"), "{err}");
        // An event IMDS does not list: the double's 400 is permanent.
        let err = client.approve(&["unknown"]).unwrap_err();
        assert!(matches!(err, CallError::Permanent(_)), "{err}");
        let dead = EventsClient::new("http://127.0.0.1:9", Timeouts::default()).unwrap();
        assert!(matches!(dead.fetch(true), Err(CallError::Transient { .. })));
    }
}
