//! Azure Instance Metadata: the IMDS client with its retry policy, the file source, and the typed
//! view of the document that run-nomad uses (what it means is decided in [`crate::settings`]).
//!
//! Facts from Microsoft's IMDS documentation
//! (learn.microsoft.com/azure/virtual-machines/instance-metadata-service): requests carry
//! `Metadata: true` and never go through a proxy; every value in `compute` and `network` is a
//! string and missing values are `""`; `tagsList` is the unambiguous form of the tags; the
//! network interfaces are "not guaranteed to be in order"; 404/410/429/5xx are transient. We ask
//! with `extended=true` so that IMDS fails instead of answering 200 with partial data (the
//! guidance given to azure-init, Azure/azure-init#134).
//!
//! The api-version is pinned to the newest documented one, but a new version rolls out region
//! by region ("Versioning": it "may not yet be available in every region"), and a refused or
//! missing version is answered 400 with `newest-versions`, the newest versions that IMDS
//! supports. The client then falls back to the newest of those it can use ([`fallback_version`]).
//! Error bodies are read only up to a bounded prefix, and a document only up to
//! [`MAX_DOCUMENT_BYTES`], so a misbehaving endpoint cannot make run-nomad read without end.

use std::cell::RefCell;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use support::http::{body_excerpt, error_body, retry_after, ClientOptions, Url};
use support::retry::{Attempt, Policy, RetryError};

/// Production IMDS endpoint; tests always override it with a 127.0.0.1 double.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// The api-version we ask for: the newest the documentation lists.
pub const API_VERSION: &str = "2025-04-07";

/// The oldest api-version whose document has everything run-nomad reads: `tagsList` is the
/// newest of those fields (the documentation's "Version introduced" column: 2019-06-04).
pub const MIN_API_VERSION: &str = "2019-06-04";

/// The largest instance document run-nomad reads (a real one is about 10 KB).
pub const MAX_DOCUMENT_BYTES: u64 = 1024 * 1024;

/// Statuses worth retrying, named once: "not found (yet)", "gone, retry for up to 70 s",
/// throttling, and server errors.
pub const RETRYABLE_STATUSES: &[u16] = &[404, 410, 429, 500, 502, 503, 504];

/// The parts of the instance document run-nomad uses. Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Instance {
    #[serde(default)]
    pub compute: Compute,
    /// `None` when the document has no `network` object at all.
    #[serde(default)]
    pub network: Option<Network>,
}

/// `compute`: every value is a string, `""` when missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Compute {
    pub vm_id: String,
    pub name: String,
    pub location: String,
    pub zone: String,
    pub resource_group_name: String,
    pub subscription_id: String,
    pub vm_scale_set_name: String,
    /// The VM size, e.g. `Standard_D2ds_v5`.
    pub vm_size: String,
    /// The fault domain within the availability set or scale set, e.g. `"0"`.
    pub platform_fault_domain: String,
    pub tags_list: Vec<Tag>,
}

/// One entry of `compute.tagsList`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Network {
    /// `None` when `network` has no `interface` list.
    #[serde(default)]
    pub interface: Option<Vec<Interface>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Interface {
    pub mac_address: String,
    pub ipv4: Ipv4Config,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Ipv4Config {
    pub ip_address: Vec<IpAddress>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IpAddress {
    pub private_ip_address: String,
}

impl Compute {
    /// The value of a VM tag, from `tagsList` (names compared case-insensitively, as Azure
    /// treats tag names).
    pub fn tag(&self, name: &str) -> Option<&str> {
        self.tags_list
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
            .map(|t| t.value.as_str())
    }
}

/// Why no advertise address could be taken from the network data. Each variant says what was
/// missing, so an operator can compare with `curl -H Metadata:true ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error("the instance metadata has no `network` object")]
    NoNetwork,
    #[error("the instance metadata has no `network.interface` list")]
    NoInterfaceList,
    #[error("`network.interface` is empty")]
    NoInterfaces,
    #[error(
        "no network interface has a private IPv4 address \
         (`network.interface[].ipv4.ipAddress[].privateIpAddress`): {0}"
    )]
    NoPrivateIpv4(String),
    #[error("`{field}` is not an IPv4 address: {value:?}")]
    BadAddress { field: String, value: String },
    #[error(
        "the VM has {count} network interfaces with private IPv4 addresses ({summary}) and none \
         holds the address this host uses to reach IMDS{hint}; IMDS does not say which one is \
         primary, so pass --advertise-addr"
    )]
    Ambiguous {
        count: usize,
        summary: String,
        hint: String,
    },
}

/// The address the agent advertises, and why it was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryAddress {
    pub address: Ipv4Addr,
    /// The MAC address of the interface (IMDS spelling: upper-case hex, no separators).
    pub mac_address: String,
}

impl Network {
    /// The first private IPv4 address of the primary interface.
    ///
    /// IMDS lists interfaces in no guaranteed order and marks none as primary, but it only
    /// answers requests from the primary NIC's primary address ("IMDS requests must be sent
    /// using VM's primary NIC and primary IP"). So `local_source`, the source address this host
    /// uses to reach IMDS, identifies the primary interface. Without a match (a metadata file,
    /// a test double on loopback) a VM with a single addressed interface is unambiguous; with
    /// several, this refuses to guess.
    pub fn primary_ipv4(
        &self,
        local_source: Option<IpAddr>,
    ) -> Result<PrimaryAddress, NetworkError> {
        let interfaces = self
            .interface
            .as_ref()
            .ok_or(NetworkError::NoInterfaceList)?;
        if interfaces.is_empty() {
            return Err(NetworkError::NoInterfaces);
        }
        let mut candidates = Vec::new();
        let mut empty = Vec::new();
        for (i, nic) in interfaces.iter().enumerate() {
            let mut addresses = Vec::new();
            for (j, ip) in nic.ipv4.ip_address.iter().enumerate() {
                let value = ip.private_ip_address.trim();
                if value.is_empty() {
                    continue;
                }
                let address: Ipv4Addr = value.parse().map_err(|_| NetworkError::BadAddress {
                    field: format!("network.interface[{i}].ipv4.ipAddress[{j}].privateIpAddress"),
                    value: ip.private_ip_address.clone(),
                })?;
                addresses.push(address);
            }
            if addresses.is_empty() {
                empty.push(format!(
                    "interface[{i}] (MAC {}) has {}",
                    display_mac(&nic.mac_address),
                    if nic.ipv4.ip_address.is_empty() {
                        "an empty ipv4.ipAddress list"
                    } else {
                        "only empty privateIpAddress values"
                    }
                ));
            } else {
                candidates.push((nic, addresses));
            }
        }
        if candidates.is_empty() {
            return Err(NetworkError::NoPrivateIpv4(empty.join("; ")));
        }
        let by_source = local_source.and_then(|source| {
            candidates
                .iter()
                .find(|(_, addresses)| addresses.iter().any(|a| IpAddr::V4(*a) == source))
        });
        let chosen = match (by_source, candidates.len()) {
            (Some(found), _) => found,
            (None, 1) => &candidates[0],
            (None, count) => {
                let summary = candidates
                    .iter()
                    .map(|(nic, addresses)| {
                        let list: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
                        format!("MAC {}: {}", display_mac(&nic.mac_address), list.join(" "))
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let hint = match local_source {
                    Some(source) => format!(" ({source})"),
                    None => String::new(),
                };
                return Err(NetworkError::Ambiguous {
                    count,
                    summary,
                    hint,
                });
            }
        };
        Ok(PrimaryAddress {
            address: chosen.1[0],
            mac_address: chosen.0.mac_address.clone(),
        })
    }
}

impl Instance {
    /// The advertise address: see [`Network::primary_ipv4`].
    pub fn primary_ipv4(
        &self,
        local_source: Option<IpAddr>,
    ) -> Result<PrimaryAddress, NetworkError> {
        self.network
            .as_ref()
            .ok_or(NetworkError::NoNetwork)?
            .primary_ipv4(local_source)
    }
}

fn display_mac(mac: &str) -> &str {
    if mac.is_empty() {
        "unknown"
    } else {
        mac
    }
}

/// A failure reading the metadata document.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("request to {url} failed: {detail}")]
    Request { url: String, detail: String },
    #[error("{url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "{url} refused api-version {version} and offers no version run-nomad can use \
         (newest-versions: {offered}; run-nomad needs {MIN_API_VERSION} or later): {body}"
    )]
    NoUsableVersion {
        url: String,
        version: String,
        offered: String,
        body: String,
    },
    #[error("{url} sent a document larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge { url: String },
    #[error("{origin} is not a valid instance metadata document: {cause}; it starts: {excerpt}")]
    Json {
        origin: String,
        excerpt: String,
        cause: serde_json::Error,
    },
    #[error("failed to read {path}: {cause}", path = path.display())]
    ReadFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid --imds-endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error(
        "gave up reading IMDS after {attempts} attempts in {seconds:.0}s (--imds-timeout): {last}"
    )]
    Deadline {
        attempts: u32,
        seconds: f64,
        last: Box<MetadataError>,
    },
}

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

/// Parses an instance document.
pub fn parse(text: &str, origin: &str) -> Result<Instance, MetadataError> {
    serde_json::from_str(text).map_err(|cause| MetadataError::Json {
        origin: origin.to_string(),
        excerpt: body_excerpt(&text.chars().take(200).collect::<String>()),
        cause,
    })
}

/// Reads the instance document from a file (`--metadata-file`).
pub fn read_file(path: &Path) -> Result<Instance, MetadataError> {
    let text = std::fs::read_to_string(path).map_err(|cause| MetadataError::ReadFile {
        path: path.to_path_buf(),
        cause,
    })?;
    parse(&text, &path.display().to_string())
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

    fn nic(mac: &str, addresses: &[&str]) -> Interface {
        Interface {
            mac_address: mac.to_string(),
            ipv4: Ipv4Config {
                ip_address: addresses
                    .iter()
                    .map(|a| IpAddress {
                        private_ip_address: a.to_string(),
                    })
                    .collect(),
            },
        }
    }

    fn network(nics: Vec<Interface>) -> Network {
        Network {
            interface: Some(nics),
        }
    }

    #[test]
    fn reads_the_fields_of_the_fixture_as_strings() {
        let instance = fixture_instance();
        let c = &instance.compute;
        assert_eq!(c.vm_id, "5f3c1e2a-7b6d-4c21-9e8f-0a1b2c3d4e5f");
        assert_eq!(c.location, "eastus2");
        assert_eq!(c.resource_group_name, "nomad-prod-rg");
        assert_eq!(c.subscription_id, "0b1f6471-1bf0-4dda-aec3-111122223333");
        assert_eq!(c.vm_scale_set_name, "nomad-servers");
        assert_eq!(c.zone, "2");
        assert_eq!(c.tag("cluster"), Some("nomad-prod"));
        assert_eq!(c.tag("Nomad-Role"), Some("server"));
        assert_eq!(c.tag("missing"), None);
        assert_eq!(
            instance.primary_ipv4(None).unwrap().address,
            Ipv4Addr::new(10, 10, 1, 6)
        );
    }

    #[test]
    fn tags_come_from_tags_list_not_the_ambiguous_string() {
        // A tag value with ';' and ':' would split the `tags` string wrongly.
        let text =
            r#"{"compute": {"tags": "a:b;c:d", "tagsList": [{"name": "a", "value": "b;c:d"}]}}"#;
        let instance = parse(text, "test").unwrap();
        assert_eq!(instance.compute.tag("a"), Some("b;c:d"));
        assert_eq!(instance.compute.tag("c"), None);
    }

    #[test]
    fn the_primary_interface_is_the_one_holding_the_imds_source_address() {
        // Listed second, as IMDS may: "not guaranteed to be in order".
        let net = network(vec![
            nic("000D3A000001", &["10.1.0.4", "10.1.0.5"]),
            nic("000D3A000002", &["10.2.0.4"]),
        ]);
        let primary = net.primary_ipv4(Some("10.2.0.4".parse().unwrap())).unwrap();
        assert_eq!(primary.address, Ipv4Addr::new(10, 2, 0, 4));
        assert_eq!(primary.mac_address, "000D3A000002");
        // A secondary address of an interface still identifies it; its first address is used.
        let primary = net.primary_ipv4(Some("10.1.0.5".parse().unwrap())).unwrap();
        assert_eq!(primary.address, Ipv4Addr::new(10, 1, 0, 4));
    }

    #[test]
    fn several_interfaces_without_a_match_are_refused_not_guessed() {
        let net = network(vec![
            nic("000D3A000001", &["10.1.0.4"]),
            nic("000D3A000002", &["10.2.0.4"]),
        ]);
        let err = net
            .primary_ipv4(Some("127.0.0.1".parse().unwrap()))
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("2 network interfaces"), "{text}");
        assert!(text.contains("MAC 000D3A000002: 10.2.0.4"), "{text}");
        assert!(text.contains("(127.0.0.1)"), "{text}");
        assert!(text.contains("--advertise-addr"), "{text}");
    }

    #[test]
    fn a_single_addressed_interface_needs_no_hint() {
        let net = network(vec![
            nic("000D3A000001", &[]),
            nic("000D3A000002", &["", "10.2.0.9"]),
        ]);
        assert_eq!(
            net.primary_ipv4(None).unwrap().address,
            Ipv4Addr::new(10, 2, 0, 9)
        );
    }

    #[test]
    fn missing_network_data_says_what_is_missing() {
        let no_network = parse(r#"{"compute": {}}"#, "t").unwrap();
        assert_eq!(
            no_network.primary_ipv4(None).unwrap_err(),
            NetworkError::NoNetwork
        );
        let no_list = parse(r#"{"network": {}}"#, "t").unwrap();
        assert_eq!(
            no_list.primary_ipv4(None).unwrap_err(),
            NetworkError::NoInterfaceList
        );
        let empty = parse(r#"{"network": {"interface": []}}"#, "t").unwrap();
        assert_eq!(
            empty.primary_ipv4(None).unwrap_err(),
            NetworkError::NoInterfaces
        );
        let blank = parse(
            r#"{"network": {"interface": [{"macAddress": "AB", "ipv4": {"ipAddress": [{"privateIpAddress": ""}]}}]}}"#,
            "t",
        )
        .unwrap();
        let text = blank.primary_ipv4(None).unwrap_err().to_string();
        assert!(text.contains("privateIpAddress"), "{text}");
        assert!(text.contains("interface[0] (MAC AB)"), "{text}");
        let bad = parse(
            r#"{"network": {"interface": [{"ipv4": {"ipAddress": [{"privateIpAddress": "fe80::1"}]}}]}}"#,
            "t",
        )
        .unwrap();
        let text = bad.primary_ipv4(None).unwrap_err().to_string();
        assert!(
            text.contains("network.interface[0].ipv4.ipAddress[0].privateIpAddress"),
            "{text}"
        );
    }

    #[test]
    fn malformed_json_names_the_origin_and_shows_the_start() {
        let err = parse("{\"compute\": [", "http://x/metadata").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("http://x/metadata"), "{text}");
        assert!(text.contains("{\"compute\": ["), "{text}");
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

    #[test]
    fn reads_a_metadata_file() {
        let path = double::fixtures_dir().join("instance-extended.json");
        let instance = read_file(&path).unwrap();
        assert_eq!(instance.compute.location, "eastus2");
        let err = read_file(Path::new("/nonexistent/imds.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/imds.json"), "{err}");
    }
}
