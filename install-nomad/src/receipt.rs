//! What this tool installed last time, kept in `<path>/.install-nomad.json`, so that running it
//! again with the same version is a fast no-op that says so.
//!
//! "The same" means: the same product, version and architecture, the same archive SHA-256 (as
//! vouched for now by the freshly verified SHA256SUMS, or by the CNI pin), and every file the
//! archive put in place still present with the SHA-256 recorded then. Only then is the archive
//! not downloaded again. A receipt that is missing, unreadable or from another layout simply
//! means "install".

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// One installed component (`nomad`, `consul`, `cni`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub version: String,
    pub arch: String,
    /// The archive's file name and SHA-256.
    pub archive: String,
    pub archive_sha256: String,
    /// Where it came from (informational).
    pub url: String,
    /// Installed file (path inside the target system) -> SHA-256.
    pub files: BTreeMap<String, String>,
}

/// The whole receipt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    #[serde(default)]
    pub components: BTreeMap<String, Installed>,
}

impl Receipt {
    /// Reads the receipt at a host path; a missing or unreadable one is an empty receipt.
    pub fn load(path: &Path) -> Receipt {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!("ignoring unreadable receipt {}: {e}", path.display());
                Receipt::default()
            }),
            Err(_) => Receipt::default(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a receipt serializes");
        bytes.push(b'\n');
        bytes
    }
}

/// Whether `previous` describes exactly this archive, with all its files intact. `file_sha256`
/// hashes an installed file given its path inside the target (`None` when it is missing).
pub fn is_current(
    previous: Option<&Installed>,
    version: &str,
    arch: &str,
    archive_sha256: &str,
    file_sha256: impl Fn(&str) -> Option<String>,
) -> bool {
    let Some(previous) = previous else {
        return false;
    };
    previous.version == version
        && previous.arch == arch
        && previous.archive_sha256 == archive_sha256
        && !previous.files.is_empty()
        && previous
            .files
            .iter()
            .all(|(path, sha)| file_sha256(path).as_deref() == Some(sha.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed() -> Installed {
        Installed {
            version: "1.10.5".into(),
            arch: "amd64".into(),
            archive: "nomad_1.10.5_linux_amd64.zip".into(),
            archive_sha256: "aa".into(),
            url: "https://releases.hashicorp.com/nomad/1.10.5/nomad_1.10.5_linux_amd64.zip".into(),
            files: [("/opt/nomad/bin/nomad".to_string(), "bb".to_string())]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn same_means_version_arch_archive_and_intact_files() {
        let prev = installed();
        let intact = |_: &str| Some("bb".to_string());
        assert!(is_current(Some(&prev), "1.10.5", "amd64", "aa", intact));
        assert!(!is_current(None, "1.10.5", "amd64", "aa", intact));
        assert!(!is_current(Some(&prev), "1.10.6", "amd64", "aa", intact));
        assert!(!is_current(Some(&prev), "1.10.5", "arm64", "aa", intact));
        assert!(!is_current(Some(&prev), "1.10.5", "amd64", "cc", intact));
        assert!(!is_current(Some(&prev), "1.10.5", "amd64", "aa", |_| Some(
            "xx".into()
        )));
        assert!(!is_current(Some(&prev), "1.10.5", "amd64", "aa", |_| None));
    }

    #[test]
    fn round_trip_and_unreadable_receipts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let mut receipt = Receipt::default();
        receipt.components.insert("nomad".into(), installed());
        std::fs::write(&path, receipt.to_json()).unwrap();
        assert_eq!(Receipt::load(&path), receipt);
        std::fs::write(&path, "{not json").unwrap();
        assert_eq!(Receipt::load(&path), Receipt::default());
        assert_eq!(
            Receipt::load(&dir.path().join("missing")),
            Receipt::default()
        );
    }
}
