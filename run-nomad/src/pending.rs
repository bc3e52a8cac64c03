//! What one run leaves for the next: a lock that keeps two runs from writing at once, and a
//! durable marker of work a run started but did not finish.
//!
//! Files are written before the service is restarted. If the restart fails (or the run is
//! killed in between), the next run finds the files already right and Nomad running the old
//! configuration: without a record it would leave it be for good. So before the first file is
//! replaced, the run records which kinds of file are changing in the marker (written
//! atomically and fsynced), and removes the marker only once the service commands have
//! succeeded. A run that finds the marker treats those changes as still to apply. Both files
//! live in the config directory as dot-files without `.hcl`/`.json`, which Nomad does not load.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use support::files::{under_root, write_atomic, FileSpec, Ownership};

use crate::service::Changes;
use crate::settings::Layout;

/// The marker's file name in the config directory.
pub const MARKER: &str = ".run-nomad.pending";
/// The lock's file name in the config directory.
pub const LOCK: &str = ".run-nomad.lock";

#[derive(Debug, thiserror::Error)]
pub enum PendingError {
    #[error("another run-nomad is running (it holds the lock {path}); try again when it ends", path = path.display())]
    Busy { path: PathBuf },
    #[error("{what} {path}: {cause}", path = path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// An exclusive lock on `<config-dir>/.run-nomad.lock`, released when dropped (or when the
/// process dies: it is a `flock`).
#[derive(Debug)]
pub struct Lock {
    _file: Flock<File>,
}

impl Lock {
    /// Takes the lock, or fails at once naming it when another run holds it.
    pub fn acquire(root: &Path, layout: &Layout) -> Result<Self, PendingError> {
        let path = under_root(root, &layout.config_dir.join(LOCK));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|cause| PendingError::Io {
                what: "cannot open the lock",
                path: path.clone(),
                cause,
            })?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(file) => Ok(Self { _file: file }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(PendingError::Busy { path }),
            Err((_, errno)) => Err(PendingError::Io {
                what: "cannot lock",
                path,
                cause: errno.into(),
            }),
        }
    }
}

/// The marker of unfinished work.
#[derive(Debug, Clone)]
pub struct Marker {
    path: PathBuf,
}

impl Marker {
    /// The marker of the install under `root`.
    pub fn new(root: &Path, layout: &Layout) -> Self {
        Self {
            path: under_root(root, &layout.config_dir.join(MARKER)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The changes an earlier run left unapplied, if any. A marker that cannot be read as one
    /// counts as "everything", which costs at most one restart.
    pub fn read(&self) -> Result<Option<Changes>, PendingError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(
                    "{} is not a marker run-nomad wrote ({e}); applying everything",
                    self.path.display()
                );
                Changes {
                    agent_config: true,
                    service_definition: true,
                    watcher: true,
                }
            }))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(cause) => Err(PendingError::Io {
                what: "cannot read the marker of unfinished work",
                path: self.path.clone(),
                cause,
            }),
        }
    }

    /// The marker recording `changes`, for [`crate::apply::apply`] to put in place before the
    /// first file it replaces. It need not be durable before them: a machine that crashes
    /// restarts Nomad with whatever files are on disk anyway; what the marker must survive is
    /// a run that dies or a restart that fails, and for those being in place is enough.
    pub fn forerunner(&self, changes: Changes) -> crate::apply::Forerunner {
        crate::apply::Forerunner {
            target: self.path.clone(),
            contents: serde_json::to_vec(&changes).expect("booleans serialize"),
            mode: 0o600,
        }
    }

    /// Records `changes` as still to apply, durably (atomic write, fsync of file and
    /// directory).
    pub fn record(&self, changes: Changes) -> Result<(), PendingError> {
        let text = serde_json::to_vec(&changes).expect("booleans serialize");
        write_atomic(
            &self.path,
            &text,
            FileSpec::owned(0o600, Ownership::new(0, 0)),
        )
        .map_err(|e| PendingError::Io {
            what: "cannot record the work in progress in",
            path: self.path.clone(),
            cause: e.source,
        })
    }

    /// Removes the marker once the work is done. The removal is not fsynced: should a crash
    /// bring the marker back, the next run restarts Nomad once more, which is harmless.
    pub fn clear(&self) -> Result<(), PendingError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(cause) => Err(PendingError::Io {
                what: "cannot remove the marker of finished work",
                path: self.path.clone(),
                cause,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path) -> Layout {
        Layout {
            config_dir: dir.to_path_buf(),
            data_dir: dir.join("data"),
            bin_dir: dir.join("bin"),
            log_dir: dir.join("log"),
            tls_dir: dir.join("tls"),
            secrets_dir: dir.join("secrets"),
        }
    }

    #[test]
    fn the_marker_round_trips_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let marker = Marker::new(Path::new("/"), &layout(dir.path()));
        assert_eq!(marker.read().unwrap(), None);
        let changes = Changes {
            agent_config: true,
            service_definition: false,
            watcher: true,
        };
        marker.record(changes).unwrap();
        assert_eq!(marker.read().unwrap(), Some(changes));
        marker.clear().unwrap();
        assert_eq!(marker.read().unwrap(), None);
        marker.clear().unwrap();
    }

    #[test]
    fn a_garbled_marker_means_everything() {
        let dir = tempfile::tempdir().unwrap();
        let marker = Marker::new(Path::new("/"), &layout(dir.path()));
        std::fs::write(marker.path(), "half-writ").unwrap();
        let all = marker.read().unwrap().unwrap();
        assert!(all.agent_config && all.service_definition && all.watcher);
        // A marker an older run-nomad wrote (no watcher field) still reads.
        std::fs::write(
            marker.path(),
            r#"{"agent_config":true,"service_definition":false}"#,
        )
        .unwrap();
        let old = marker.read().unwrap().unwrap();
        assert!(old.agent_config && !old.service_definition && !old.watcher);
    }

    #[test]
    fn a_second_run_is_refused_while_the_lock_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let first = Lock::acquire(Path::new("/"), &layout(dir.path())).unwrap();
        let err = Lock::acquire(Path::new("/"), &layout(dir.path())).unwrap_err();
        assert!(err.to_string().contains(".run-nomad.lock"), "{err}");
        drop(first);
        Lock::acquire(Path::new("/"), &layout(dir.path())).unwrap();
    }
}
