//! The IMDS client: the request Microsoft's documentation prescribes, the retry policy, the
//! api-version fallback, and bounded reads of what comes back.

use std::cell::RefCell;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use support::http::{error_body, retry_after, ClientOptions, Url};
use support::retry::{Attempt, Policy, RetryError};

use super::{
    parse, Instance, MetadataError, API_VERSION, MAX_DOCUMENT_BYTES, MIN_API_VERSION,
    RETRYABLE_STATUSES,
};

/// A reqwest error with its causes on one line ("error sending request: connection refused").
fn request_error(url: &str, error: &reqwest::Error) -> MetadataError {
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    MetadataError::Request {
        url: url.to_string(),
        detail,
    }
}

/// The IMDS client.
#[derive(Debug, Clone)]
pub struct ImdsClient {
    /// `<endpoint>/metadata/instance`, without a query.
    base: Url,
    deadline: Duration,
}

/// Which api-version to fall back to when IMDS refused `refused` and listed `offered` as its
/// newest: the newest offered version not tried yet that has what run-nomad reads
/// ([`MIN_API_VERSION`] or later), preferring those no newer than the pinned [`API_VERSION`]
/// (whose document shape run-nomad was tested with). Versions are dates, so they compare as
/// strings.
pub fn fallback_version(offered: &[String], tried: &[String]) -> Option<String> {
    let usable = |v: &&String| {
        v.len() == 10
            && v.as_str() >= MIN_API_VERSION
            && !tried.contains(v)
            && v.bytes().all(|b| b.is_ascii_digit() || b == b'-')
    };
    let mut candidates: Vec<&String> = offered.iter().filter(usable).collect();
    candidates.sort_by(|a, b| b.cmp(a));
    candidates
        .iter()
        .find(|v| v.as_str() <= API_VERSION)
        .or_else(|| candidates.last())
        .map(|v| v.to_string())
}

/// The `newest-versions` list of a 400 answer, when the body is IMDS's version error.
fn newest_versions(body: &str) -> Option<Vec<String>> {
    let doc: serde_json::Value = serde_json::from_str(body).ok()?;
    let list = doc.get("newest-versions")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
    )
}

impl ImdsClient {
    /// A client for the `/metadata/instance` document under `endpoint`, retrying until
    /// `deadline` has passed.
    pub fn new(endpoint: &str, deadline: Duration) -> Result<Self, MetadataError> {
        let invalid = |reason: String| MetadataError::Endpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let base = Url::parse(endpoint).map_err(|e| invalid(e.to_string()))?;
        if base.scheme() != "http" {
            // IMDS is plain HTTP on a link-local address that never leaves the host.
            return Err(invalid("IMDS is served over http://".to_string()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid(
                "give the base URL only, without a query".to_string(),
            ));
        }
        let base = base
            .join("/metadata/instance")
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self { base, deadline })
    }

    /// The request URL with the pinned api-version.
    pub fn url(&self) -> Url {
        self.url_for(API_VERSION)
    }

    /// The request URL for an api-version.
    pub fn url_for(&self, version: &str) -> Url {
        let mut url = self.base.clone();
        url.query_pairs_mut()
            .append_pair("api-version", version)
            .append_pair("extended", "true");
        url
    }

    /// The retry policy: backoff from 0.5 s up to 5 s, Retry-After honoured, until the deadline.
    pub fn policy(&self) -> Policy {
        Policy {
            what: "IMDS request",
            max_attempts: u32::MAX,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            deadline: Some(self.deadline),
        }
    }

    /// The source address this host uses to reach the IMDS endpoint, which IMDS requires to be
    /// the primary NIC's primary address. A connected UDP socket asks the kernel's routing table
    /// without sending anything.
    pub fn local_source(&self) -> Option<IpAddr> {
        let host = self.base.host_str()?;
        let port = self.base.port_or_known_default()?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let target: SocketAddr = (host, port).to_socket_addrs().ok()?.next()?;
        let bind: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(bind).ok()?;
        socket.connect(target).ok()?;
        Some(socket.local_addr().ok()?.ip())
    }

    /// Fetches and parses the document, retrying transient failures until the deadline. A
    /// refused api-version falls back to one IMDS names (at once, within the same deadline);
    /// other client errors fail at once with the start of the response body.
    pub fn fetch(&self) -> Result<Instance, MetadataError> {
        let client = support::http::client(&ClientOptions {
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(10),
            no_proxy: true,
        })
        .map_err(|e| request_error(self.url().as_str(), &e))?;
        tracing::info!("reading instance metadata from {}", self.url());
        let tried = RefCell::new(vec![API_VERSION.to_string()]);
        let result = self.policy().run(|info| {
            let version = tried.borrow().last().cloned().unwrap_or_default();
            let url = self.url_for(&version);
            let text = url.to_string();
            let mut request = client.get(url).header("Metadata", "true");
            if let Some(remaining) = info.remaining {
                request = request
                    .timeout(remaining.clamp(Duration::from_millis(100), Duration::from_secs(10)));
            }
            let response = request
                .send()
                .map_err(|e| Attempt::retry(request_error(&text, &e)))?;
            let status = response.status().as_u16();
            let after = retry_after(response.headers());
            if status == 200 {
                let body = read_document(response, &text).map_err(Attempt::retry)?;
                // A garbled 200 is the service's fault and may be transient: retry it.
                return parse(&body, &text).map_err(Attempt::retry);
            }
            let body = error_body(response);
            if status == 400 {
                if let Some(offered) = newest_versions(&body) {
                    let next = fallback_version(&offered, &tried.borrow());
                    let Some(next) = next else {
                        return Err(Attempt::Fail(MetadataError::NoUsableVersion {
                            url: text,
                            version,
                            offered: offered.join(", "),
                            body,
                        }));
                    };
                    tracing::warn!(
                        "IMDS refused api-version {version} (newest-versions: {}); \
                         falling back to {next}",
                        offered.join(", ")
                    );
                    tried.borrow_mut().push(next);
                    let error = MetadataError::Status {
                        url: text,
                        status,
                        body,
                    };
                    return Err(Attempt::Retry {
                        error,
                        after: Some(Duration::ZERO),
                    });
                }
            }
            let error = MetadataError::Status {
                url: text,
                status,
                body,
            };
            if RETRYABLE_STATUSES.contains(&status) {
                Err(Attempt::Retry { error, after })
            } else {
                Err(Attempt::Fail(error))
            }
        });
        result.map_err(|e| match e {
            RetryError::Fatal(error) => error,
            RetryError::Exhausted {
                attempts,
                elapsed,
                last,
            } => MetadataError::Deadline {
                attempts,
                seconds: elapsed.as_secs_f64(),
                last: Box::new(last),
            },
        })
    }
}

/// Reads a 200 body up to [`MAX_DOCUMENT_BYTES`].
fn read_document(
    response: reqwest::blocking::Response,
    url: &str,
) -> Result<String, MetadataError> {
    let mut body = Vec::new();
    response
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| MetadataError::Request {
            url: url.to_string(),
            detail: format!("reading the body: {e}"),
        })?;
    if body.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(MetadataError::TooLarge {
            url: url.to_string(),
        });
    }
    String::from_utf8(body).map_err(|e| MetadataError::Request {
        url: url.to_string(),
        detail: format!("the body is not UTF-8: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use support::doubles::imds::{self as double, ImdsDouble, Reply};

    fn fixture_instance() -> Instance {
        parse(&double::fixture("instance.json").to_string(), "fixture").unwrap()
    }

    #[test]
    fn the_request_url_has_the_version_and_extended() {
        let client = ImdsClient::new("http://127.0.0.1:9", Duration::from_secs(1)).unwrap();
        assert_eq!(
            client.url().as_str(),
            "http://127.0.0.1:9/metadata/instance?api-version=2025-04-07&extended=true"
        );
        assert_eq!(client.local_source(), Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        for bad in ["https://169.254.169.254", "not a url", "http://h/?x=1"] {
            let err = ImdsClient::new(bad, Duration::from_secs(1)).unwrap_err();
            assert!(err.to_string().contains("--imds-endpoint"), "{err}");
        }
    }

    #[test]
    fn fetches_with_the_header_and_the_current_version() {
        let imds = ImdsDouble::start(double::fixture("instance.json"));
        let client = ImdsClient::new(imds.url(), Duration::from_secs(5)).unwrap();
        let instance = client.fetch().unwrap();
        assert_eq!(instance, fixture_instance());
        let requests = imds.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].header("metadata"), Some("true"));
        assert_eq!(requests[0].query_param("api-version"), Some(API_VERSION));
        assert!(double::SUPPORTED_API_VERSIONS.contains(&API_VERSION));
    }

    #[test]
    fn retries_410_then_succeeds() {
        let imds = ImdsDouble::start(double::fixture("instance.json"));
        imds.script([Reply::Status(410), Reply::Status(404)]);
        let client = ImdsClient::new(imds.url(), Duration::from_secs(20)).unwrap();
        assert_eq!(client.fetch().unwrap(), fixture_instance());
        assert_eq!(imds.requests().len(), 3);
    }

    #[test]
    fn honours_retry_after_on_429() {
        let imds = ImdsDouble::start(double::fixture("instance.json"));
        imds.script([Reply::Throttled {
            retry_after_secs: 1,
        }]);
        let client = ImdsClient::new(imds.url(), Duration::from_secs(20)).unwrap();
        let start = std::time::Instant::now();
        client.fetch().unwrap();
        // The backoff alone would have waited at most 0.5 s.
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn fails_at_once_on_403_with_the_body() {
        let imds = ImdsDouble::start(double::fixture("instance.json"));
        imds.script([Reply::Body {
            status: 403,
            body: r#"{"error": "denied by policy"}"#.into(),
        }]);
        let client = ImdsClient::new(imds.url(), Duration::from_secs(20)).unwrap();
        let err = client.fetch().unwrap_err();
        assert!(
            matches!(err, MetadataError::Status { status: 403, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("denied by policy"), "{err}");
        assert_eq!(imds.requests().len(), 1);
    }

    #[test]
    fn gives_up_at_the_deadline_with_the_last_error() {
        let imds = ImdsDouble::start(double::fixture("instance.json"));
        imds.set_fallback(Reply::Status(500));
        let client = ImdsClient::new(imds.url(), Duration::from_secs(2)).unwrap();
        let start = std::time::Instant::now();
        let err = client.fetch().unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "{:?}",
            start.elapsed()
        );
        let text = err.to_string();
        assert!(text.starts_with("gave up reading IMDS after"), "{text}");
        assert!(text.contains("answered 500"), "{text}");
        assert!(imds.requests().len() >= 2);
    }

    #[test]
    fn retries_connection_errors() {
        // A port with nothing listening: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client =
            ImdsClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(1)).unwrap();
        let err = client.fetch().unwrap_err();
        match err {
            MetadataError::Deadline { attempts, last, .. } => {
                assert!(attempts >= 2, "{attempts}");
                assert!(matches!(*last, MetadataError::Request { .. }), "{last}");
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn retries_malformed_json_then_succeeds() {
        let imds = ImdsDouble::start(double::fixture("instance.json"));
        imds.script([Reply::Body {
            status: 200,
            body: "{\"compute\": ".into(),
        }]);
        let client = ImdsClient::new(imds.url(), Duration::from_secs(20)).unwrap();
        assert_eq!(client.fetch().unwrap(), fixture_instance());
    }

    #[test]
    fn a_refused_api_version_falls_back_to_one_imds_names() {
        // A region where the pinned (newest documented) version has not rolled out yet.
        let imds = ImdsDouble::start(double::fixture("instance.json"));
        imds.set_supported_api_versions(&["2024-07-17", "2024-03-15", "2023-11-15", "2021-02-01"]);
        let client = ImdsClient::new(imds.url(), Duration::from_secs(20)).unwrap();
        let start = std::time::Instant::now();
        assert_eq!(client.fetch().unwrap(), fixture_instance());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "no backoff for a fallback"
        );
        let versions: Vec<String> = imds
            .requests()
            .iter()
            .map(|r| r.query_param("api-version").unwrap().to_string())
            .collect();
        assert_eq!(versions, [API_VERSION, "2024-07-17"]);
        assert!(imds
            .requests()
            .iter()
            .all(|r| r.query_param("extended") == Some("true")));
    }

    #[test]
    fn no_usable_version_fails_at_once_naming_what_was_offered() {
        let imds = ImdsDouble::start(double::fixture("instance.json"));
        imds.set_supported_api_versions(&["2019-03-11", "2019-02-01", "2018-10-01"]);
        let client = ImdsClient::new(imds.url(), Duration::from_secs(20)).unwrap();
        let err = client.fetch().unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, MetadataError::NoUsableVersion { .. }),
            "{text}"
        );
        assert!(
            text.contains("2019-03-11, 2019-02-01, 2018-10-01"),
            "{text}"
        );
        assert!(text.contains(MIN_API_VERSION), "{text}");
        assert_eq!(imds.requests().len(), 1);
    }

    #[test]
    fn fallback_prefers_the_newest_usable_version_not_newer_than_the_pin() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let tried = list(&[API_VERSION]);
        assert_eq!(
            fallback_version(&list(&["2023-11-15", "2024-07-17", "2024-03-15"]), &tried),
            Some("2024-07-17".into())
        );
        // Only newer versions than the pin: the oldest of them.
        assert_eq!(
            fallback_version(&list(&["2099-02-01", "2099-01-01"]), &tried),
            Some("2099-01-01".into())
        );
        // Already tried, too old, or not a date: nothing.
        assert_eq!(fallback_version(&list(&[API_VERSION]), &tried), None);
        assert_eq!(fallback_version(&list(&["2018-10-01"]), &tried), None);
        assert_eq!(
            fallback_version(&list(&["latest", "2024-7-1"]), &tried),
            None
        );
    }

    /// A misbehaving endpoint answering an error with an endless body: run-nomad reads a
    /// bounded prefix and lets the connection go. Returns how many bytes the server managed to
    /// send before the client stopped reading.
    fn endless_error(status: &'static str) -> (String, std::thread::JoinHandle<usize>) {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut stream = stream;
            let head = format!("HTTP/1.1 {status}\r\nContent-Length: 1000000000\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b'x'; 64 * 1024];
            let mut sent = 0usize;
            // Stop on our own at 256 MB so a client that reads everything still ends.
            while sent < 256 << 20 && stream.write_all(&chunk).is_ok() {
                sent += chunk.len();
            }
            sent
        });
        (url, server)
    }

    #[test]
    fn error_bodies_are_read_only_up_to_a_bounded_prefix() {
        let (url, server) = endless_error("403 Forbidden");
        let client = ImdsClient::new(&url, Duration::from_secs(20)).unwrap();
        let err = client.fetch().unwrap_err().to_string();
        assert!(
            err.contains("answered 403: xxxx"),
            "{}",
            &err[..200.min(err.len())]
        );
        assert!(
            err.ends_with("... (1000000000 bytes in all)"),
            "{}",
            &err[err.len() - 100..]
        );
        assert!(err.len() < 4096, "{} bytes of error message", err.len());
        let sent = server.join().unwrap();
        assert!(
            sent < 64 << 20,
            "the client read {sent} bytes of the error body"
        );
    }
}
