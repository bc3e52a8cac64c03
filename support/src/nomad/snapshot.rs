//! `GET /v1/operator/snapshot` saved to a local file: streamed to a `.partial` file beside
//! the target while hashed, checked against the `Digest: sha-256=<base64>` header (as
//! HashiCorp's Go client does), then opened as Nomad's snapshot archive (gzip'd tar of
//! `meta.json`, `state.bin` and `SHA256SUMS`, helper/snapshot/archive.go) with every checksum
//! verified, synced and renamed into place. A failure at any step leaves no file behind, and
//! an existing file is never overwritten.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::hash::HashingWriter;
use crate::retry::Attempt;
use base64::Engine;
use serde::Serialize;

use super::{Call, NomadClient, NomadError};
use crate::azure_auth::error_chain;

/// A snapshot on disk, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SavedSnapshot {
    pub path: PathBuf,
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// The Raft index and term the snapshot was taken at (its `meta.json`).
    pub index: u64,
    pub term: u64,
}

fn snapshot_error(path: &Path, message: impl Into<String>) -> NomadError {
    NomadError::Snapshot {
        path: path.display().to_string(),
        message: message.into(),
    }
}

impl NomadClient {
    /// Saves a snapshot of the cluster's state to `path` (management token). With `stale`, the
    /// answering server snapshots its own state instead of the leader's.
    pub fn save_snapshot(&self, path: &Path, stale: bool) -> Result<SavedSnapshot, NomadError> {
        if path.exists() {
            return Err(snapshot_error(
                path,
                "already exists: choose a new file (a snapshot is never overwritten)",
            ));
        }
        let file_name = path
            .file_name()
            .ok_or_else(|| snapshot_error(path, "not a file path"))?;
        let dir = crate::files::parent_dir(path).to_path_buf();
        let partial = dir.join(format!(".{}.partial", file_name.to_string_lossy()));
        let result = self.download_snapshot(path, &partial, stale);
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result
    }

    fn download_snapshot(
        &self,
        path: &Path,
        partial: &Path,
        stale: bool,
    ) -> Result<SavedSnapshot, NomadError> {
        let mut call = Call::get("v1/operator/snapshot");
        if stale {
            call = call.query("stale", "");
        }
        let (bytes, sha256) = self.settings.timeouts.read_retries.run(|_| {
            let (url, mut response) = self.send_once(&call, true, &[200])?;
            let digest = response
                .headers()
                .get("digest")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let file = File::create(partial)
                .map_err(|e| Attempt::Fail(snapshot_error(partial, format!("creating: {e}"))))?;
            let mut writer = HashingWriter::new(BufWriter::new(file));
            std::io::copy(&mut response, &mut writer).map_err(|e| {
                Attempt::retry(NomadError::Transport {
                    method: "GET".to_string(),
                    url: url.to_string(),
                    message: format!("reading the snapshot: {e}"),
                })
            })?;
            let written = writer.written();
            let (buffered, sha256) = writer.finish();
            let file = buffered
                .into_inner()
                .map_err(|e| Attempt::Fail(snapshot_error(partial, format!("writing: {e}"))))?;
            file.sync_all()
                .map_err(|e| Attempt::Fail(snapshot_error(partial, format!("syncing: {e}"))))?;
            check_digest(digest.as_deref(), &sha256)
                .map_err(|m| Attempt::Fail(snapshot_error(path, format!("GET {url}: {m}"))))?;
            Ok((written, sha256))
        })?;
        let (index, term) = verify_archive(partial).map_err(|m| {
            snapshot_error(
                path,
                format!("the downloaded archive is not a valid Nomad snapshot: {m}"),
            )
        })?;
        std::fs::rename(partial, path).map_err(|e| {
            snapshot_error(
                path,
                format!("renaming {} into place: {e}", partial.display()),
            )
        })?;
        crate::files::sync_dir(crate::files::parent_dir(path))
            .map_err(|e| snapshot_error(path, format!("syncing its directory: {e}")))?;
        Ok(SavedSnapshot {
            path: path.to_path_buf(),
            bytes,
            sha256,
            index,
            term,
        })
    }
}

/// Compares the `Digest` header (`sha-256=<standard base64>`, possibly among others) with the
/// body's SHA-256 (hex).
fn check_digest(header: Option<&str>, sha256_hex: &str) -> Result<(), String> {
    let header = header.ok_or("no Digest header: the body cannot be checked")?;
    let value = header
        .split(',')
        .map(str::trim)
        .find_map(|d| {
            let (algorithm, value) = d.split_once('=')?;
            algorithm.eq_ignore_ascii_case("sha-256").then_some(value)
        })
        .ok_or_else(|| format!("Digest {header:?} has no sha-256"))?;
    let expected = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| format!("Digest {header:?}: {e}"))?;
    let expected = crate::hash::hex(&expected);
    if expected != sha256_hex {
        return Err(format!(
            "the body's SHA-256 is {sha256_hex}, the Digest header says {expected}: the download is corrupt"
        ));
    }
    Ok(())
}

/// Opens the archive and checks it the way `nomad operator snapshot inspect` does: exactly
/// `meta.json`, `state.bin` and `SHA256SUMS`, each listed file's hash matching, the gzip stream
/// complete. Returns the snapshot's index and term.
fn verify_archive(path: &Path) -> Result<(u64, u64), String> {
    let file = File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let gz = flate2::read::GzDecoder::new(BufReader::new(file));
    let mut archive = tar::Archive::new(gz);
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let mut sums = String::new();
    let mut meta = Vec::new();
    let entries = archive.entries().map_err(|e| e.to_string())?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("reading the tar: {e}"))?;
        let name = entry
            .path()
            .map_err(|e| e.to_string())?
            .to_string_lossy()
            .into_owned();
        match name.as_str() {
            "meta.json" => {
                entry
                    .read_to_end(&mut meta)
                    .map_err(|e| format!("reading meta.json: {}", error_chain(&e)))?;
                hashes.insert(name, crate::hash::sha256_hex(&meta));
            }
            "state.bin" => {
                let hash = crate::hash::sha256_reader(&mut entry)
                    .map_err(|e| format!("reading state.bin: {}", error_chain(&e)))?;
                hashes.insert(name, hash);
            }
            "SHA256SUMS" => {
                entry
                    .read_to_string(&mut sums)
                    .map_err(|e| format!("reading SHA256SUMS: {e}"))?;
            }
            other => return Err(format!("unexpected file {other:?} in the archive")),
        }
    }
    let mut rest = Vec::new();
    archive
        .into_inner()
        .read_to_end(&mut rest)
        .map_err(|e| format!("the gzip stream: {e}"))?;
    let mut listed = BTreeMap::new();
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, name) = line
            .split_once("  ")
            .ok_or_else(|| format!("SHA256SUMS line {line:?} is not `<sha256>  <file>`"))?;
        listed.insert(name.trim().to_string(), hash.trim().to_ascii_lowercase());
    }
    for name in ["meta.json", "state.bin"] {
        let actual = hashes
            .get(name)
            .ok_or_else(|| format!("{name} is missing"))?;
        match listed.get(name) {
            None => return Err(format!("SHA256SUMS does not list {name}")),
            Some(expected) if expected != actual => {
                return Err(format!(
                    "{name} has SHA-256 {actual}, SHA256SUMS says {expected}"
                ))
            }
            Some(_) => {}
        }
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&meta).map_err(|e| format!("meta.json: {e}"))?;
    let number = |key: &str| {
        meta[key]
            .as_u64()
            .ok_or_else(|| format!("meta.json has no {key}"))
    };
    Ok((number("Index")?, number("Term")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn digest_headers() {
        let hex = crate::hash::sha256_hex(b"abc");
        let b64 = base64::engine::general_purpose::STANDARD.encode(Sha256Bytes::of(b"abc"));
        assert!(check_digest(Some(&format!("sha-256={b64}")), &hex).is_ok());
        assert!(check_digest(Some(&format!("md5=xyz, SHA-256={b64}")), &hex).is_ok());
        assert!(check_digest(Some("sha-256=AAAA"), &hex)
            .unwrap_err()
            .contains("corrupt"));
        assert!(check_digest(None, &hex).is_err());
        assert!(check_digest(Some("md5=xyz"), &hex).is_err());
    }

    struct Sha256Bytes;
    impl Sha256Bytes {
        fn of(data: &[u8]) -> Vec<u8> {
            let hex = crate::hash::sha256_hex(data);
            (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect()
        }
    }

    #[test]
    fn partial_file_writes_flush() {
        // The buffered writer must be flushed before hashing is final: a smoke check of the
        // HashingWriter + BufWriter pairing used above.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        let mut writer = HashingWriter::new(BufWriter::new(File::create(&path).unwrap()));
        writer.write_all(b"hello").unwrap();
        let (buffered, hash) = writer.finish();
        buffered.into_inner().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert_eq!(hash, crate::hash::sha256_hex(b"hello"));
    }
}
