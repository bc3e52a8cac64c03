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

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use support::http::body_excerpt;

mod imds;

pub use imds::{fallback_version, ImdsClient};

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

#[cfg(test)]
mod tests {
    use super::*;
    use support::doubles::imds as double;

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
    fn reads_a_metadata_file() {
        let path = double::fixtures_dir().join("instance-extended.json");
        let instance = read_file(&path).unwrap();
        assert_eq!(instance.compute.location, "eastus2");
        let err = read_file(Path::new("/nonexistent/imds.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/imds.json"), "{err}");
    }
}
