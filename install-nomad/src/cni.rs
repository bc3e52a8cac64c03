//! CNI reference plugins (bridge, host-local, loopback, portmap, firewall...), which Nomad
//! clients need for `bridge` networking. The containernetworking project publishes
//! `https://github.com/containernetworking/plugins/releases/download/v<X>/cni-plugins-linux-<arch>-v<X>.tgz`
//! with `.sha256`/`.sha512` files beside it but no signature, so a checksum fetched from the same
//! place proves nothing: the expected SHA-256 comes from the table pinned here, or from
//! `--cni-sha256` for versions the table does not know.

use url::Url;

use crate::release::{Arch, ReleaseError, Source, Version};

/// SHA-256 of each `cni-plugins-linux-<arch>-v<X>.tgz` we trust without `--cni-sha256`.
///
/// Source: kubernetes-sigs/kubespray, `roles/kubespray_defaults/vars/main/checksums.yml`
/// (`cni_binary_checksums`, commit 005bdce7f1867958838a2d0bb4f7e67893d98f64), cross-checked
/// against other public pins: v1.6.2 amd64/arm64 in several installers' scripts, v1.8.0 amd64 in
/// published install guides quoting the release's `.sha256` file. Add a version only from the
/// release's own `.sha256` file checked against an independent copy like these.
pub const PINNED_SHA256: &[(&str, Arch, &str)] = &[
    (
        "1.8.0",
        Arch::Amd64,
        "ab3bda535f9d90766cccc90d3dddb5482003dd744d7f22bcf98186bf8eea8be6",
    ),
    (
        "1.8.0",
        Arch::Arm64,
        "57ce466fc3b79db1f19b8f4c63e07a1112306efa53c94fe810a2150dd9e07ddb",
    ),
    (
        "1.7.1",
        Arch::Amd64,
        "1a28a0506bfe5bcdc981caf1a49eeab7e72da8321f1119b7be85f22621013098",
    ),
    (
        "1.7.1",
        Arch::Arm64,
        "119fcb508d1ac2149e49a550752f9cd64d023a1d70e189b59c476e4d2bf7c497",
    ),
    (
        "1.6.2",
        Arch::Amd64,
        "b8e811578fb66023f90d2e238d80cec3bdfca4b44049af74c374d4fae0f9c090",
    ),
    (
        "1.6.2",
        Arch::Arm64,
        "01e0e22acc7f7004e4588c1fe1871cc86d7ab562cd858e1761c4641d89ebfaa4",
    ),
    (
        "1.6.0",
        Arch::Amd64,
        "682b49ff8933a997a52107161f1745f8312364b4c7f605ccdf7a77499130d89d",
    ),
    (
        "1.6.0",
        Arch::Arm64,
        "db09ab057ecf60b05ba05cbec38d55b95cc139c7f1078e2e4857cc13af158cee",
    ),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CniError {
    #[error("--cni-version latest is not supported: CNI releases are not signed, so name a version whose SHA-256 is pinned ({known}) or pass --cni-sha256")]
    Latest { known: String },
    #[error(transparent)]
    Version(#[from] ReleaseError),
    #[error("CNI plugins v{version} for linux/{arch} have no pinned SHA-256 in this program: pass --cni-sha256 with the hash you checked (pinned versions: {known})")]
    NotPinned {
        version: String,
        arch: Arch,
        known: String,
    },
    #[error("--cni-sha256 {0:?} is not a SHA-256 (64 hex digits)")]
    BadHash(String),
}

/// One CNI plugins release for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniRelease {
    pub version: Version,
    pub arch: Arch,
}

impl CniRelease {
    /// Parses `--cni-version` (`1.6.2` or `v1.6.2`; not `latest`).
    pub fn parse(version: &str, arch: Arch) -> Result<CniRelease, CniError> {
        if version.trim().eq_ignore_ascii_case("latest") {
            return Err(CniError::Latest {
                known: known_versions(),
            });
        }
        Ok(CniRelease {
            version: Version::parse(version)?,
            arch,
        })
    }

    /// `cni-plugins-linux-amd64-v1.6.2.tgz`
    pub fn archive_name(&self) -> String {
        format!("cni-plugins-linux-{}-v{}.tgz", self.arch, self.version)
    }

    /// `<base>/v<X>/<archive>`
    pub fn url(&self, source: &Source) -> Url {
        source.url(&[&format!("v{}", self.version), &self.archive_name()])
    }

    /// The SHA-256 to expect: `--cni-sha256` if given, otherwise the pinned one. The flag wins
    /// over the table the way `--public-key` replaces the embedded HashiCorp key: it is the
    /// operator's explicit statement of what to trust (a private mirror may carry its own build
    /// of a version). A disagreement with the pin is logged as a warning.
    pub fn expected_sha256(&self, flag: Option<&str>) -> Result<String, CniError> {
        let pinned = PINNED_SHA256
            .iter()
            .find(|(v, a, _)| *v == self.version.as_str() && *a == self.arch)
            .map(|(_, _, h)| *h);
        let given = flag
            .map(|h| {
                let h = h.trim().to_ascii_lowercase();
                if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(h)
                } else {
                    Err(CniError::BadHash(h))
                }
            })
            .transpose()?;
        match (given, pinned) {
            (Some(given), Some(pinned)) => {
                if given != pinned {
                    tracing::warn!(
                        "--cni-sha256 {given} differs from the SHA-256 pinned for the upstream CNI plugins v{} linux/{} ({pinned}); trusting --cni-sha256",
                        self.version,
                        self.arch
                    );
                }
                Ok(given)
            }
            (Some(given), None) => Ok(given),
            (None, Some(pinned)) => Ok(pinned.to_string()),
            (None, None) => Err(CniError::NotPinned {
                version: self.version.to_string(),
                arch: self.arch,
                known: known_versions(),
            }),
        }
    }
}

fn known_versions() -> String {
    let mut versions: Vec<&str> = PINNED_SHA256.iter().map(|(v, _, _)| *v).collect();
    versions.dedup();
    versions.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        let release = CniRelease::parse("v1.6.2", Arch::Arm64).unwrap();
        assert_eq!(release.archive_name(), "cni-plugins-linux-arm64-v1.6.2.tgz");
        let source = Source::parse(
            "--cni-download-url",
            "https://github.com/containernetworking/plugins/releases/download",
        )
        .unwrap();
        assert_eq!(
            release.url(&source).as_str(),
            "https://github.com/containernetworking/plugins/releases/download/v1.6.2/cni-plugins-linux-arm64-v1.6.2.tgz"
        );
    }

    #[test]
    fn hashes_come_from_the_table_or_the_flag() {
        let pinned = CniRelease::parse("1.6.2", Arch::Amd64).unwrap();
        assert_eq!(
            pinned.expected_sha256(None).unwrap(),
            "b8e811578fb66023f90d2e238d80cec3bdfca4b44049af74c374d4fae0f9c090"
        );
        // The flag may repeat the pin (any case)...
        assert!(pinned
            .expected_sha256(Some(
                "B8E811578FB66023F90D2E238D80CEC3BDFCA4B44049AF74C374D4FAE0F9C090"
            ))
            .is_ok());
        // ...or replace it (a private mirror's own build).
        let other = "0".repeat(64);
        assert_eq!(pinned.expected_sha256(Some(&other)).unwrap(), other);
        let unknown = CniRelease::parse("1.5.1", Arch::Amd64).unwrap();
        let err = unknown.expected_sha256(None).unwrap_err();
        assert!(err.to_string().contains("--cni-sha256"), "{err}");
        assert_eq!(unknown.expected_sha256(Some(&other)).unwrap(), other);
        assert!(matches!(
            unknown.expected_sha256(Some("abc")),
            Err(CniError::BadHash(_))
        ));
        assert!(matches!(
            CniRelease::parse("latest", Arch::Amd64),
            Err(CniError::Latest { .. })
        ));
    }

    #[test]
    fn every_pinned_version_has_both_arches() {
        for (version, _, hash) in PINNED_SHA256 {
            assert_eq!(hash.len(), 64);
            for arch in [Arch::Amd64, Arch::Arm64] {
                assert!(
                    PINNED_SHA256
                        .iter()
                        .any(|(v, a, _)| v == version && *a == arch),
                    "{version} {arch}"
                );
            }
        }
    }
}
