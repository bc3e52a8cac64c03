//! A multi-file install that is all or nothing (after rustup's `transaction.rs`).
//!
//! Each step records how to undo itself: a file placed over an existing one first hard-links the
//! old one to a hidden sibling (`.<name>.install-nomad-backup`), then renames the new file over
//! it, so the target is never missing and the old bytes can be put back; a directory we create is
//! removed again. Dropping the transaction without [`Transaction::commit`] undoes every step in
//! reverse order. Ownership or mode fixes on directories that already existed are not undone:
//! they only ever tighten them to root.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use support::files::{sync_dir, FileSpec};

/// A step that failed, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct StepError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

fn step_error<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> StepError + 'a {
    move |source| StepError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug)]
enum Step {
    CreatedDir(PathBuf),
    Placed {
        target: PathBuf,
        backup: Option<PathBuf>,
    },
}

/// The undo log of an install in progress.
#[derive(Debug, Default)]
pub struct Transaction {
    steps: Vec<Step>,
    committed: bool,
}

impl Transaction {
    pub fn new() -> Transaction {
        Transaction::default()
    }

    /// Makes sure `dir` exists as a directory with `spec`'s owner and mode. Missing parents are
    /// created 0755 (owned by whoever runs this, root in practice). When `dir` already exists its
    /// owner and mode are set to `spec` only if `fix_existing`. Returns whether it was created.
    pub fn ensure_dir(
        &mut self,
        dir: &Path,
        spec: FileSpec,
        fix_existing: bool,
    ) -> Result<bool, StepError> {
        match fs::metadata(dir) {
            Ok(meta) if meta.is_dir() => {
                if fix_existing {
                    apply_to_path(dir, spec, &meta)?;
                }
                return Ok(false);
            }
            Ok(_) => {
                return Err(StepError {
                    action: "expected a directory at",
                    path: dir.to_path_buf(),
                    source: io::Error::new(io::ErrorKind::AlreadyExists, "it is not a directory"),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(step_error("checking", dir)(e)),
        }
        let mut missing = Vec::new();
        let mut current = dir;
        while !current.exists() {
            missing.push(current.to_path_buf());
            match current.parent() {
                Some(parent) => current = parent,
                None => break,
            }
        }
        for path in missing.iter().rev() {
            let mode = if path == dir { spec.mode } else { 0o755 };
            fs::DirBuilder::new()
                .mode(mode)
                .create(path)
                .map_err(step_error("creating directory", path))?;
            self.steps.push(Step::CreatedDir(path.clone()));
            if path == dir {
                let meta = fs::metadata(path).map_err(step_error("checking", path))?;
                apply_to_path(path, spec, &meta)?;
            } else {
                // The umask may have narrowed the mode.
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .map_err(step_error("setting the mode of", path))?;
            }
            if let Some(parent) = path.parent() {
                let _ = sync_dir(parent);
            }
        }
        Ok(true)
    }

    /// Renames `staged` (already complete, with its final mode and owner, fsynced) over
    /// `target`, keeping the old file (or symlink) for a rollback. Both must be on the same
    /// filesystem.
    pub fn place(&mut self, staged: &Path, target: &Path) -> Result<(), StepError> {
        let backup = match fs::symlink_metadata(target) {
            Ok(meta) if meta.is_dir() => {
                return Err(StepError {
                    action: "replacing",
                    path: target.to_path_buf(),
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a directory is in the way",
                    ),
                })
            }
            Ok(_) => {
                let backup = backup_path(target);
                let _ = fs::remove_file(&backup);
                // A hard link of the old file (or of the symlink itself: linkat does not follow
                // symlinks) keeps it reachable while the new one takes its name.
                fs::hard_link(target, &backup)
                    .map_err(step_error("keeping a backup of", target))?;
                Some(backup)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(step_error("checking", target)(e)),
        };
        if let Err(e) = fs::rename(staged, target) {
            if let Some(backup) = &backup {
                let _ = fs::remove_file(backup);
            }
            return Err(step_error("renaming into place", target)(e));
        }
        self.steps.push(Step::Placed {
            target: target.to_path_buf(),
            backup,
        });
        if let Some(parent) = target.parent() {
            sync_dir(parent).map_err(step_error("syncing the directory of", target))?;
        }
        Ok(())
    }

    /// Makes `at` a symlink to `value` (written verbatim: a path inside the target system),
    /// replacing what is there. Returns false when it already was exactly that symlink.
    pub fn symlink(&mut self, value: &Path, at: &Path) -> Result<bool, StepError> {
        if fs::read_link(at).is_ok_and(|current| current == value) {
            return Ok(false);
        }
        if let Ok(meta) = fs::symlink_metadata(at) {
            if meta.is_file() {
                tracing::warn!(
                    "replacing the regular file {} with a symlink to {}",
                    at.display(),
                    value.display()
                );
            }
        }
        let name = at
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = at.with_file_name(format!(".{name}.install-nomad-new"));
        let _ = fs::remove_file(&temp);
        std::os::unix::fs::symlink(value, &temp).map_err(step_error("creating symlink", &temp))?;
        if let Err(e) = self.place(&temp, at) {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        Ok(true)
    }

    /// Keeps every step: removes the backups.
    pub fn commit(mut self) {
        self.committed = true;
        for step in &self.steps {
            if let Step::Placed {
                backup: Some(backup),
                ..
            } = step
            {
                if let Err(e) = fs::remove_file(backup) {
                    tracing::warn!("could not remove backup {}: {e}", backup.display());
                }
            }
        }
    }

    fn rollback(&mut self) {
        for step in self.steps.drain(..).rev() {
            let result = match &step {
                Step::Placed {
                    target,
                    backup: Some(backup),
                } => fs::rename(backup, target),
                Step::Placed {
                    target,
                    backup: None,
                } => fs::remove_file(target),
                Step::CreatedDir(dir) => fs::remove_dir(dir),
            };
            match (&step, result) {
                (_, Ok(())) => tracing::debug!("rolled back {step:?}"),
                (Step::CreatedDir(dir), Err(e)) => {
                    tracing::warn!("rollback: could not remove {}: {e}", dir.display())
                }
                (step, Err(e)) => tracing::error!("rollback of {step:?} failed: {e}"),
            }
        }
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.committed && !self.steps.is_empty() {
            tracing::warn!("install failed: undoing {} step(s)", self.steps.len());
            self.rollback();
        }
    }
}

fn backup_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.install-nomad-backup"))
}

/// chown (when asked and different) then chmod a path; chown first because it can clear
/// set-id bits.
fn apply_to_path(path: &Path, spec: FileSpec, meta: &fs::Metadata) -> Result<(), StepError> {
    let uid = spec.owner.uid.filter(|u| *u != meta.uid());
    let gid = spec.owner.gid.filter(|g| *g != meta.gid());
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(path, uid, gid)
            .map_err(step_error("changing the owner of", path))?;
    }
    if meta.permissions().mode() & 0o7777 != spec.mode {
        fs::set_permissions(path, fs::Permissions::from_mode(spec.mode))
            .map_err(step_error("setting the mode of", path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_restores_files_and_removes_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let existing = dir.path().join("nomad");
        fs::write(&existing, "old").unwrap();
        let staged_a = dir.path().join("staged-a");
        fs::write(&staged_a, "new").unwrap();
        let staged_b = dir.path().join("staged-b");
        fs::write(&staged_b, "brand new").unwrap();
        let fresh = dir.path().join("sub/dir/run-nomad");
        {
            let mut tx = Transaction::new();
            assert!(tx
                .ensure_dir(&dir.path().join("sub/dir"), FileSpec::mode(0o755), false)
                .unwrap());
            tx.place(&staged_a, &existing).unwrap();
            tx.place(&staged_b, &fresh).unwrap();
            assert_eq!(fs::read_to_string(&existing).unwrap(), "new");
            // Dropped without commit.
        }
        assert_eq!(fs::read_to_string(&existing).unwrap(), "old");
        assert!(!fresh.exists());
        assert!(!dir.path().join("sub").exists());
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["nomad"], "no backups left behind");
    }

    #[test]
    fn commit_keeps_changes_and_drops_backups() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("nomad");
        fs::write(&target, "old").unwrap();
        let staged = dir.path().join("staged");
        fs::write(&staged, "new").unwrap();
        let link = dir.path().join("link");
        let mut tx = Transaction::new();
        tx.place(&staged, &target).unwrap();
        assert!(tx
            .symlink(Path::new("/opt/nomad/bin/nomad"), &link)
            .unwrap());
        tx.commit();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("/opt/nomad/bin/nomad")
        );
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["link", "nomad"]);
        // The same symlink again is not a change.
        let mut tx = Transaction::new();
        assert!(!tx
            .symlink(Path::new("/opt/nomad/bin/nomad"), &link)
            .unwrap());
        tx.commit();
    }

    #[test]
    fn symlink_rollback_restores_the_old_link() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("nomad");
        std::os::unix::fs::symlink("/old/nomad", &link).unwrap();
        {
            let mut tx = Transaction::new();
            tx.symlink(Path::new("/opt/nomad/bin/nomad"), &link)
                .unwrap();
        }
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("/old/nomad"));
    }

    #[test]
    fn existing_directories_are_fixed_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o777)).unwrap();
        let mut tx = Transaction::new();
        assert!(!tx.ensure_dir(&bin, FileSpec::mode(0o755), true).unwrap());
        tx.commit();
        assert_eq!(
            fs::metadata(&bin).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let mut tx = Transaction::new();
        assert!(tx.ensure_dir(&file, FileSpec::mode(0o755), true).is_err());
    }
}
