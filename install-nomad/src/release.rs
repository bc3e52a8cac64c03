//! Release names and URLs: which product, version and architecture, where a mirror keeps its
//! files, and which version `latest` means.
//!
//! The layout is `releases.hashicorp.com`'s (see `../shared/REFERENCE.md`, "HashiCorp
//! releases"): `/<product>/<v>/<product>_<v>_linux_<arch>.zip`, `<product>_<v>_SHA256SUMS`,
//! `<product>_<v>_SHA256SUMS.<KEYID>.sig` (preferred, as hc-install does) and
//! `<product>_<v>_SHA256SUMS.sig`; `/<product>/index.json` lists every version. Everything here is
//! pure; the download module does the I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
pub use support::arch::Arch;
use url::Url;

/// A HashiCorp product this tool installs. The release code takes it as a parameter, so Nomad
/// and Consul go through the same resolution and verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// The name in URLs and file names, and the binary's name inside the zip.
    pub name: &'static str,
    /// How people write it ("Nomad"), for messages.
    pub title: &'static str,
}

pub const NOMAD: Product = Product {
    name: "nomad",
    title: "Nomad",
};

pub const CONSUL: Product = Product {
    name: "consul",
    title: "Consul",
};

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.title)
    }
}

/// A bad name, version or URL given on the command line or found in an index.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    #[error(
        "this host's architecture {0:?} has no HashiCorp Linux build we install: pass --arch amd64 or --arch arm64"
    )]
    HostArch(String),
    #[error("invalid version {0:?}: expected something like 1.10.5, 1.11.0-rc.1 or latest")]
    Version(String),
    #[error("{flag} {url:?} is not a valid URL: {reason}")]
    Url {
        flag: &'static str,
        url: String,
        reason: String,
    },
    #[error(
        "{flag} {url}: plain http is only allowed for a mirror on this machine (127.0.0.1, ::1, localhost); use https"
    )]
    InsecureUrl { flag: &'static str, url: String },
    #[error("{flag} {url}: unsupported scheme {scheme:?} (use https, http for loopback, or file)")]
    Scheme {
        flag: &'static str,
        url: String,
        scheme: String,
    },
}

/// The architecture this program runs on, in HashiCorp's spelling.
pub fn host_arch() -> Result<Arch, ReleaseError> {
    arch_of_rust(std::env::consts::ARCH)
}

fn arch_of_rust(arch: &str) -> Result<Arch, ReleaseError> {
    Arch::from_rust_arch(arch).ok_or_else(|| ReleaseError::HostArch(arch.to_string()))
}

/// A release version as HashiCorp writes it: `1.10.5`, `1.11.0-rc.1`, `1.10.6+ent`. It ends up
/// in URLs and file names, so only digits, letters, `.`, `-` and `+` are accepted, starting with
/// a digit; a leading `v` is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(String);

impl Version {
    pub fn parse(s: &str) -> Result<Version, ReleaseError> {
        let trimmed = s.trim();
        let bare = trimmed.strip_prefix('v').unwrap_or(trimmed);
        let valid = bare.len() <= 64
            && bare.starts_with(|c: char| c.is_ascii_digit())
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
            && !bare.contains("..");
        if valid {
            Ok(Version(bare.to_string()))
        } else {
            Err(ReleaseError::Version(s.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `(major, minor, patch)` for a stable release; `None` for a prerelease (`-rc.1`), a build
    /// with metadata (`+ent`, `+ent.fips1402`) or anything that is not three numbers.
    pub fn stable(&self) -> Option<(u64, u64, u64)> {
        if self.0.contains(['-', '+']) {
            return None;
        }
        let mut parts = self.0.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some((major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `--version` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRequest {
    /// The newest stable release on the mirror.
    Latest,
    Exact(Version),
}

impl FromStr for VersionRequest {
    type Err = ReleaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("latest") {
            Ok(VersionRequest::Latest)
        } else {
            Version::parse(s).map(VersionRequest::Exact)
        }
    }
}

/// Where releases come from: an `https://` site, an `http://` mirror on this machine, or a
/// `file://` directory laid out like the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    base: Url,
}

impl Source {
    /// Checks the scheme policy for the URL given to `flag` (named in errors).
    pub fn parse(flag: &'static str, url: &str) -> Result<Source, ReleaseError> {
        let base = Url::parse(url.trim()).map_err(|e| ReleaseError::Url {
            flag,
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        match base.scheme() {
            "https" | "file" => {}
            "http" if support::http::is_loopback(&base) => {}
            "http" => {
                return Err(ReleaseError::InsecureUrl {
                    flag,
                    url: url.to_string(),
                })
            }
            other => {
                return Err(ReleaseError::Scheme {
                    flag,
                    url: url.to_string(),
                    scheme: other.to_string(),
                })
            }
        }
        if base.query().is_some() || base.fragment().is_some() || base.cannot_be_a_base() {
            return Err(ReleaseError::Url {
                flag,
                url: url.to_string(),
                reason: "expected a base URL without query or fragment".to_string(),
            });
        }
        Ok(Source { base })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// The URL of `segments` below the base, each segment percent-encoded as needed.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("checked in Source::parse: the URL can be a base");
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base.as_str().trim_end_matches('/'))
    }
}

/// One product, version and architecture: the names of its files on the mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub product: Product,
    pub version: Version,
    pub arch: Arch,
}

impl Release {
    /// `nomad_1.10.5_linux_amd64.zip`
    pub fn archive_name(&self) -> String {
        format!(
            "{}_{}_linux_{}.zip",
            self.product.name, self.version, self.arch
        )
    }

    /// `nomad_1.10.5_SHA256SUMS`
    pub fn sums_name(&self) -> String {
        format!("{}_{}_SHA256SUMS", self.product.name, self.version)
    }

    /// Signature file names to try, in order: `<sums>.<KEYID>.sig` for each trusted key id (as
    /// `72D7468F` for HashiCorp's key), then `<sums>.sig`.
    pub fn signature_names(&self, key_ids: &[String]) -> Vec<String> {
        let sums = self.sums_name();
        key_ids
            .iter()
            .map(|id| format!("{sums}.{id}.sig"))
            .chain(std::iter::once(format!("{sums}.sig")))
            .collect()
    }

    /// The URL of one of this release's files.
    pub fn file_url(&self, source: &Source, file: &str) -> Url {
        source.url(&[self.product.name, self.version.as_str(), file])
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (linux_{})", self.product, self.version, self.arch)
    }
}

/// The URL of a product's version index, `/<product>/index.json`.
pub fn index_url(source: &Source, product: Product) -> Url {
    source.url(&[product.name, "index.json"])
}

/// `/<product>/index.json`: every version the mirror has.
#[derive(Debug, Clone, Deserialize)]
pub struct ProductIndex {
    #[serde(default)]
    pub versions: BTreeMap<String, VersionIndex>,
}

/// One version's entry (also served alone as `/<product>/<v>/index.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct VersionIndex {
    #[serde(default)]
    pub builds: Vec<Build>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Build {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
}

/// The newest stable version in the index that has a Linux build for `arch`. Prereleases and
/// builds with metadata (`+ent`) never count; versions are compared numerically (1.10.0 is
/// newer than 1.9.7). A version whose entry lists no builds at all is trusted to have them (the
/// sums file decides later); one that lists builds but not ours is skipped, so `latest` on arm64
/// never picks a release that was only built for amd64.
pub fn latest_stable(index: &ProductIndex, arch: Arch) -> Option<Version> {
    index
        .versions
        .iter()
        .filter_map(|(key, entry)| {
            let version = Version::parse(key).ok()?;
            let triple = version.stable()?;
            let has_build = entry.builds.is_empty()
                || entry
                    .builds
                    .iter()
                    .any(|b| b.os == "linux" && b.arch == arch.as_str());
            has_build.then_some((triple, version))
        })
        .max_by_key(|(triple, _)| *triple)
        .map(|(_, version)| version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn versions_are_validated() {
        assert_eq!(v("v1.10.5").as_str(), "1.10.5");
        assert_eq!(v("1.11.0-rc.1").as_str(), "1.11.0-rc.1");
        assert_eq!(v("1.10.6+ent").as_str(), "1.10.6+ent");
        for bad in [
            "",
            "latest-ish",
            "../1.0.0",
            "1.0.0/x",
            "1.0 .0",
            "1..0",
            "x1.0",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            "latest".parse::<VersionRequest>().unwrap(),
            VersionRequest::Latest
        );
        assert_eq!(
            "1.9.7".parse::<VersionRequest>().unwrap(),
            VersionRequest::Exact(v("1.9.7"))
        );
    }

    #[test]
    fn stable_versions_only() {
        assert_eq!(v("1.10.5").stable(), Some((1, 10, 5)));
        assert_eq!(v("1.11.0-rc.1").stable(), None);
        assert_eq!(v("1.10.6+ent").stable(), None);
        assert_eq!(v("1.10.6+ent.fips1402").stable(), None);
        assert_eq!(v("1.10").stable(), None);
    }

    #[test]
    fn file_names() {
        let release = Release {
            product: NOMAD,
            version: v("1.10.5"),
            arch: Arch::Arm64,
        };
        assert_eq!(release.archive_name(), "nomad_1.10.5_linux_arm64.zip");
        assert_eq!(release.sums_name(), "nomad_1.10.5_SHA256SUMS");
        assert_eq!(
            release.signature_names(&["72D7468F".to_string()]),
            [
                "nomad_1.10.5_SHA256SUMS.72D7468F.sig",
                "nomad_1.10.5_SHA256SUMS.sig"
            ]
        );
        let consul = Release {
            product: CONSUL,
            ..release
        };
        assert_eq!(consul.archive_name(), "consul_1.10.5_linux_arm64.zip");
    }

    #[test]
    fn source_urls_and_scheme_policy() {
        let https = Source::parse("--download-url", "https://releases.hashicorp.com").unwrap();
        let release = Release {
            product: NOMAD,
            version: v("1.10.6+ent"),
            arch: Arch::Amd64,
        };
        assert_eq!(
            release.file_url(&https, &release.sums_name()).as_str(),
            "https://releases.hashicorp.com/nomad/1.10.6+ent/nomad_1.10.6+ent_SHA256SUMS"
        );
        let with_path =
            Source::parse("--download-url", "https://mirror.example/hashicorp/").unwrap();
        assert_eq!(
            index_url(&with_path, NOMAD).as_str(),
            "https://mirror.example/hashicorp/nomad/index.json"
        );
        assert!(Source::parse("--download-url", "http://127.0.0.1:8080").is_ok());
        assert!(Source::parse("--download-url", "http://localhost/x").is_ok());
        assert!(Source::parse("--download-url", "file:///srv/mirror").is_ok());
        assert!(matches!(
            Source::parse("--download-url", "http://mirror.example"),
            Err(ReleaseError::InsecureUrl { .. })
        ));
        assert!(matches!(
            Source::parse("--download-url", "ftp://mirror.example"),
            Err(ReleaseError::Scheme { .. })
        ));
        let err = Source::parse("--cni-download-url", "not a url").unwrap_err();
        assert!(err.to_string().contains("--cni-download-url"), "{err}");
        let file = Source::parse("--download-url", "file:///srv/mirror").unwrap();
        assert_eq!(
            file.url(&["nomad", "index.json"]).as_str(),
            "file:///srv/mirror/nomad/index.json"
        );
    }

    fn index(json: &str) -> ProductIndex {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn latest_skips_prereleases_and_enterprise_and_compares_numerically() {
        let idx = index(
            r#"{"name":"nomad","versions":{
                "1.9.7":{"builds":[{"os":"linux","arch":"amd64"},{"os":"linux","arch":"arm64"}]},
                "1.10.5":{"builds":[{"os":"linux","arch":"amd64"},{"os":"linux","arch":"arm64"}]},
                "1.10.6+ent":{"builds":[{"os":"linux","arch":"amd64"}]},
                "1.11.0-rc.1":{"builds":[{"os":"linux","arch":"amd64"}]},
                "1.11.0":{"builds":[{"os":"linux","arch":"amd64"},{"os":"darwin","arch":"arm64"}]}
            }}"#,
        );
        assert_eq!(latest_stable(&idx, Arch::Amd64), Some(v("1.11.0")));
        // 1.11.0 has no linux/arm64 build: arm64's latest is 1.10.5.
        assert_eq!(latest_stable(&idx, Arch::Arm64), Some(v("1.10.5")));
        assert_eq!(
            latest_stable(&index(r#"{"versions":{}}"#), Arch::Amd64),
            None
        );
        assert_eq!(
            latest_stable(&index(r#"{"versions":{"0.1.0":{}}}"#), Arch::Arm64),
            Some(v("0.1.0"))
        );
    }

    #[test]
    fn arches() {
        assert_eq!("amd64".parse::<Arch>().unwrap(), Arch::Amd64);
        assert_eq!("aarch64".parse::<Arch>().unwrap(), Arch::Arm64);
        assert!("386".parse::<Arch>().is_err());
        assert_eq!(arch_of_rust("x86_64").unwrap(), Arch::Amd64);
        assert!(arch_of_rust("riscv64").is_err());
    }
}
