//! What was built from what: the inputs of a build and their hashes, Packer's manifest read
//! back, and image-builder's own build record, kept in a state directory:
//!
//! ```text
//! <state-dir>/lock                              held while a build runs
//! <state-dir>/records/<input-hash>.json         the build record (written last: the commit)
//! <state-dir>/records/<input-hash>.manifest.json Packer's manifest, as Packer wrote it
//! ```
//!
//! A record exists only for a build that succeeded; both files are written atomically.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use support::files::{write_atomic, FileSpec};

/// One input of a build and its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// `spec`, `template`, `script`, `install-nomad`, `run-nomad`, `public-key`.
    pub name: String,
    /// Where it came from: a file path, or `rendered` for generated text.
    pub source: String,
    pub sha256: String,
}

/// Every input of a build, plus facts outside the files that change what gets built (for
/// example a subscription taken from the environment).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub files: Vec<Input>,
    pub context: BTreeMap<String, String>,
}

impl Inputs {
    pub fn add(&mut self, name: &str, source: impl Into<String>, bytes: &[u8]) {
        self.files.push(Input {
            name: name.to_string(),
            source: source.into(),
            sha256: support::hash::sha256_hex(bytes),
        });
    }

    /// The SHA-256 of the canonical listing: one `file <name> <sha256>` line per input sorted
    /// by name, then `context <key>=<value>` lines. Paths are left out on purpose: the same
    /// bytes from another directory are the same input.
    pub fn hash(&self) -> String {
        let mut files: Vec<&Input> = self.files.iter().collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let mut listing = String::from("image-builder inputs v1\n");
        for input in files {
            listing.push_str(&format!("file {} {}\n", input.name, input.sha256));
        }
        for (key, value) in &self.context {
            listing.push_str(&format!("context {key}={value}\n"));
        }
        support::hash::sha256_hex(listing.as_bytes())
    }
}

/// Packer's manifest post-processor output (`builds[]`, `last_run_uuid`).
/// Source: https://developer.hashicorp.com/packer/docs/post-processors/manifest
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PackerManifest {
    pub builds: Vec<ManifestBuild>,
    pub last_run_uuid: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ManifestBuild {
    pub name: String,
    pub builder_type: String,
    pub build_time: i64,
    /// For azure-arm the managed image resource id; the null builder writes `Null`.
    pub artifact_id: String,
    pub packer_run_uuid: String,
    #[serde(default)]
    pub custom_data: Option<BTreeMap<String, String>>,
}

/// A manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("failed to read Packer's manifest {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Packer's manifest {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("Packer's manifest {path} has no build for its last run {run}")]
    NoBuildForLastRun { path: PathBuf, run: String },
    #[error(
        "Packer's manifest {path} was written for inputs {found:?}, not this build's {expected}"
    )]
    WrongInputs {
        path: PathBuf,
        expected: String,
        found: Option<String>,
    },
}

impl PackerManifest {
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The build of the last run, checked to carry this build's input hash (the manifest
    /// post-processor appends to an existing file, so the last run is the one to read).
    pub fn this_build(
        &self,
        path: &Path,
        input_hash: &str,
    ) -> Result<&ManifestBuild, ManifestError> {
        let build = self
            .builds
            .iter()
            .rev()
            .find(|b| b.packer_run_uuid == self.last_run_uuid)
            .ok_or_else(|| ManifestError::NoBuildForLastRun {
                path: path.to_path_buf(),
                run: self.last_run_uuid.clone(),
            })?;
        let found = build
            .custom_data
            .as_ref()
            .and_then(|d| d.get("image_builder_input_hash"))
            .cloned();
        if found.as_deref() != Some(input_hash) {
            return Err(ManifestError::WrongInputs {
                path: path.to_path_buf(),
                expected: input_hash.to_string(),
                found,
            });
        }
        Ok(build)
    }
}

/// image-builder's record of one successful build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub input_hash: String,
    /// `azure` or `local`.
    pub target: String,
    /// What to boot from: the gallery image version id when the build published one, else the
    /// managed image id; for the `local` target, the root directory.
    pub image_id: String,
    /// Packer's artifact id as the manifest has it (azure-arm: the managed image id).
    pub artifact_id: String,
    pub managed_image_id: Option<String>,
    pub gallery_image_version_id: Option<String>,
    pub nomad_version: String,
    pub consul_version: Option<String>,
    pub cni_version: Option<String>,
    pub arch: String,
    pub packer_version: String,
    pub packer_run_uuid: String,
    /// Unix time of the build, from the manifest.
    pub build_time: i64,
    pub inputs: Inputs,
    /// File name (in the records directory) of the manifest Packer wrote.
    pub manifest: String,
}

/// A state directory that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("failed to create the state directory {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another image-builder build holds {path}; wait for it or use another --state-dir")]
    Busy { path: PathBuf },
    #[error("failed to lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read the build record {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the build record {path} is not valid (delete it to build again): {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] support::files::WriteError),
}

/// The records of a state directory, locked for the life of this value.
#[derive(Debug)]
pub struct RecordStore {
    records: PathBuf,
    _lock: Flock<File>,
}

impl RecordStore {
    /// Opens (creating) `<state-dir>/records` and takes the state directory's lock, so two
    /// builds cannot bake the same inputs at once.
    pub fn open(state_dir: &Path) -> Result<Self, StateError> {
        let records = state_dir.join("records");
        std::fs::create_dir_all(&records).map_err(|source| StateError::Create {
            path: records.clone(),
            source,
        })?;
        let lock_path = state_dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StateError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                StateError::Busy {
                    path: lock_path.clone(),
                }
            } else {
                StateError::Lock {
                    path: lock_path.clone(),
                    source: errno.into(),
                }
            }
        })?;
        sweep_stale_work_dirs(state_dir);
        Ok(Self {
            records,
            _lock: lock,
        })
    }

    pub fn record_path(&self, input_hash: &str) -> PathBuf {
        self.records.join(format!("{input_hash}.json"))
    }

    fn manifest_name(input_hash: &str) -> String {
        format!("{input_hash}.manifest.json")
    }

    pub fn manifest_path(&self, input_hash: &str) -> PathBuf {
        self.records.join(Self::manifest_name(input_hash))
    }

    /// The record of a successful build of these inputs, if there is one.
    pub fn find(&self, input_hash: &str) -> Result<Option<BuildRecord>, StateError> {
        let path = self.record_path(input_hash);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StateError::Parse { path, source })
    }

    /// Saves Packer's manifest, then the record that points at it (the record is the commit:
    /// without it, the build counts as not done).
    pub fn save(&self, record: &BuildRecord, manifest: &[u8]) -> Result<PathBuf, StateError> {
        write_atomic(
            &self.manifest_path(&record.input_hash),
            manifest,
            FileSpec::mode(0o644),
        )?;
        let mut json = serde_json::to_vec_pretty(record).expect("a record serializes");
        json.push(b'\n');
        let path = self.record_path(&record.input_hash);
        write_atomic(&path, &json, FileSpec::mode(0o644))?;
        Ok(path)
    }

    /// The manifest file name recorded for an input hash.
    pub fn manifest_file_name(input_hash: &str) -> String {
        Self::manifest_name(input_hash)
    }
}

/// The prefix of the private directory a build renders Packer's files into, under the state
/// directory.
pub const WORK_DIR_PREFIX: &str = "image-builder-work.";

/// Removes the working directories of builds that were killed outright (SIGKILL, a power
/// cut): only a build holding the state directory's lock makes one, and this one holds it now,
/// so any that exists is a leftover. One whose Packer still runs (the killed build's Packer,
/// cancelling after its parent-death SIGTERM, writes its output there) is left for a later
/// build. Failures only warn: a leftover wastes space, nothing else.
fn sweep_stale_work_dirs(state_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_work_dir = name
            .to_str()
            .is_some_and(|n| n.starts_with(WORK_DIR_PREFIX))
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_work_dir {
            continue;
        }
        let path = entry.path();
        if let Some(pgid) = packer_still_running(&path) {
            tracing::info!(
                "left {} alone: the Packer of a killed build still runs there (process group \
                 {pgid}, cancelling); its output is in {}",
                path.display(),
                path.join(crate::packer::BUILD_STDOUT_FILE).display()
            );
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(
                "removed {}, left by a build that was killed",
                path.display()
            ),
            Err(e) => tracing::warn!(
                "could not remove {}, left by a build that was killed: {e}",
                path.display()
            ),
        }
    }
}

/// The process group a work dir's Packer ran in, if any process of it is still alive.
fn packer_still_running(work_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(work_dir.join(crate::packer::BUILD_GROUP_FILE)).ok()?;
    let pgid: i32 = text.trim().parse().ok().filter(|&g| g > 1)?;
    (!support::process::group_members(pgid).is_empty()).then_some(pgid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_the_store_removes_work_dirs_of_killed_builds_only() {
        let state = tempfile::tempdir().unwrap();
        let stale = state.path().join(format!("{WORK_DIR_PREFIX}AbC123"));
        std::fs::create_dir_all(stale.join("files")).unwrap();
        std::fs::write(stale.join("image.pkr.hcl"), "source {}").unwrap();
        // Not ours: a file with the prefix, and another directory.
        let file = state.path().join(format!("{WORK_DIR_PREFIX}note"));
        std::fs::write(&file, "x").unwrap();
        let other = state.path().join("keep");
        std::fs::create_dir(&other).unwrap();
        let store = RecordStore::open(state.path()).unwrap();
        assert!(!stale.exists());
        assert!(file.exists() && other.exists());
        // A second build waiting for the lock must not sweep the first one's directory: it
        // never gets the lock while the first holds it.
        let live = state.path().join(format!("{WORK_DIR_PREFIX}live"));
        std::fs::create_dir(&live).unwrap();
        assert!(matches!(
            RecordStore::open(state.path()),
            Err(StateError::Busy { .. })
        ));
        assert!(live.exists());
        drop(store);
    }

    #[test]
    fn a_killed_builds_dir_stays_while_its_packer_group_lives() {
        use std::os::unix::process::CommandExt;
        let state = tempfile::tempdir().unwrap();
        let work = state.path().join(format!("{WORK_DIR_PREFIX}killed"));
        std::fs::create_dir(&work).unwrap();
        // A stand-in for the orphaned Packer: a process leading its own group.
        let mut packer = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = packer.id() as i32;
        std::fs::write(
            work.join(crate::packer::BUILD_GROUP_FILE),
            format!("{pgid}\n"),
        )
        .unwrap();
        drop(RecordStore::open(state.path()).unwrap());
        assert!(work.exists(), "swept while its Packer ran");
        packer.kill().unwrap();
        packer.wait().unwrap();
        drop(RecordStore::open(state.path()).unwrap());
        assert!(!work.exists(), "kept after its Packer was gone");
        // A group file that is not a group id does not keep a directory.
        std::fs::create_dir(&work).unwrap();
        std::fs::write(work.join(crate::packer::BUILD_GROUP_FILE), "1\n").unwrap();
        drop(RecordStore::open(state.path()).unwrap());
        assert!(!work.exists());
    }

    fn inputs() -> Inputs {
        let mut inputs = Inputs::default();
        inputs.add("spec", "/a/image.toml", b"nomad_version = \"1.9.3\"\n");
        inputs.add("template", "rendered", b"source {}");
        inputs
    }

    #[test]
    fn hash_depends_on_content_and_context_not_order_or_paths() {
        let a = inputs();
        let mut b = Inputs::default();
        b.add("template", "rendered", b"source {}");
        b.add(
            "spec",
            "/elsewhere/image.toml",
            b"nomad_version = \"1.9.3\"\n",
        );
        assert_eq!(a.hash(), b.hash());

        let mut c = a.clone();
        c.files[1].sha256 = support::hash::sha256_hex(b"source { }");
        assert_ne!(a.hash(), c.hash());

        let mut d = a.clone();
        d.context.insert("subscription_id".into(), "s".into());
        assert_ne!(a.hash(), d.hash());
    }

    const MANIFEST: &str = r#"{
  "builds": [
    {"name": "old", "builder_type": "null", "build_time": 1, "files": null,
     "artifact_id": "Null", "packer_run_uuid": "run-1", "custom_data": null},
    {"name": "local", "builder_type": "null", "build_time": 2, "files": null,
     "artifact_id": "Null", "packer_run_uuid": "run-2",
     "custom_data": {"image_builder_input_hash": "abc", "nomad_version": "1.9.3"}}
  ],
  "last_run_uuid": "run-2"
}"#;

    #[test]
    fn manifest_last_run_is_read_and_checked() {
        let path = Path::new("/w/packer-manifest.json");
        let manifest = PackerManifest::parse(MANIFEST.as_bytes(), path).unwrap();
        let build = manifest.this_build(path, "abc").unwrap();
        assert_eq!(build.name, "local");
        assert_eq!(build.build_time, 2);
        let err = manifest.this_build(path, "def").unwrap_err();
        assert!(err.to_string().contains("not this build's def"), "{err}");
    }

    #[test]
    fn store_saves_and_finds_records_and_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(dir.path()).unwrap();
        assert!(store.find("abc").unwrap().is_none());
        assert!(matches!(
            RecordStore::open(dir.path()),
            Err(StateError::Busy { .. })
        ));
        let record = BuildRecord {
            input_hash: "abc".into(),
            target: "local".into(),
            image_id: "/root".into(),
            artifact_id: "Null".into(),
            managed_image_id: None,
            gallery_image_version_id: None,
            nomad_version: "1.9.3".into(),
            consul_version: None,
            cni_version: None,
            arch: "amd64".into(),
            packer_version: "1.6.6".into(),
            packer_run_uuid: "run-2".into(),
            build_time: 2,
            inputs: inputs(),
            manifest: RecordStore::manifest_file_name("abc"),
        };
        store.save(&record, MANIFEST.as_bytes()).unwrap();
        assert_eq!(store.find("abc").unwrap(), Some(record));
        assert_eq!(
            std::fs::read_to_string(store.manifest_path("abc")).unwrap(),
            MANIFEST
        );
        drop(store);
        assert!(RecordStore::open(dir.path()).is_ok());
    }
}
