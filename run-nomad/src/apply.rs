//! Writing the rendered files under the root, as one transaction: every target directory is
//! checked before the first write, each file is replaced atomically (temporary file, fsync,
//! rename: [`support::files::write_atomic`]), and if a later file fails the earlier ones are
//! put back as they were. A file whose content, mode and owner are already right is left alone,
//! and the outcome says which files changed, so the service step can leave a running agent be.
//!
//! A run killed in the middle of a write leaves its temporary file behind
//! (`.<name>.<6 random letters or digits>.tmp`, as [`support::files::write_atomic`] names them).
//! Each run first removes those of the files it owns ([`stale_temporaries`]), and nothing else.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use support::files::{under_root, write_atomic, FileSpec, Ownership, WriteError};

use crate::render::{FileKind, RenderedFile};
use crate::secrets::Directory;

/// A write that could not be done; nothing is left half-written.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot write {path}: its directory {dir} does not exist", path = path.display(), dir = dir.display())]
    MissingDirectory { path: PathBuf, dir: PathBuf },
    #[error("failed to read the current {path}: {cause}", path = path.display())]
    ReadExisting {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// Its message already names the path, the step and the cause.
    #[error("{0}")]
    Write(WriteError),
    #[error("cannot create the directory {path}: {cause}", path = path.display())]
    CreateDirectory {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot remove {path}, left by an interrupted run: {cause}", path = path.display())]
    RemoveStale {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{error}; restoring the files written before it also failed: {rollback}")]
    RollbackFailed {
        error: Box<ApplyError>,
        rollback: String,
    },
}

/// What one file on disk looked like before.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Previous {
    contents: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// One file of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub file: RenderedFile,
    /// Where it is written: the production path under the root.
    pub target: PathBuf,
    previous: Option<Previous>,
}

/// How a planned file relates to what is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileState {
    New,
    Changed,
    /// Same content; the mode or owner is fixed.
    ModeOrOwner,
    Unchanged,
}

impl FileState {
    pub fn text(self) -> &'static str {
        match self {
            FileState::New => "new",
            FileState::Changed => "changed",
            FileState::ModeOrOwner => "mode or owner changed",
            FileState::Unchanged => "unchanged",
        }
    }
}

impl Planned {
    pub fn state(&self) -> FileState {
        if !self.needs_write() {
            FileState::Unchanged
        } else if self.previous.is_none() {
            FileState::New
        } else if self.content_changed() {
            FileState::Changed
        } else {
            FileState::ModeOrOwner
        }
    }

    /// The content differs from what is there (or nothing is there).
    pub fn content_changed(&self) -> bool {
        self.previous
            .as_ref()
            .is_none_or(|p| p.contents != self.file.contents.as_bytes())
    }

    /// Content, mode or owner differ: the file has to be (re)written.
    pub fn needs_write(&self) -> bool {
        match &self.previous {
            None => true,
            Some(p) => {
                p.contents != self.file.contents.as_bytes()
                    || p.mode != self.file.mode
                    || (p.uid, p.gid) != (self.file.uid, self.file.gid)
            }
        }
    }
}

/// What was done to each file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub kind: FileKind,
    pub target: PathBuf,
    /// The content changed (a new file counts as changed).
    pub changed: bool,
}

/// Whether any file of a kind changed.
pub fn changed(outcomes: &[Outcome], kind: FileKind) -> bool {
    outcomes.iter().any(|o| o.kind == kind && o.changed)
}

/// Looks at the targets without writing: every directory must exist.
pub fn plan(files: &[RenderedFile], root: &Path) -> Result<Vec<Planned>, ApplyError> {
    plan_with(files, root, &[])
}

/// [`plan`], where the directories `will_create` (production paths; [`create_directories`]
/// makes them before the files are written) may be missing: their files are new.
pub fn plan_with(
    files: &[RenderedFile],
    root: &Path,
    will_create: &[Directory],
) -> Result<Vec<Planned>, ApplyError> {
    files
        .iter()
        .map(|file| {
            let target = under_root(root, &file.path);
            let dir = support::files::parent_dir(&target).to_path_buf();
            if !dir.is_dir() {
                let created = will_create
                    .iter()
                    .any(|d| Some(d.path.as_path()) == file.path.parent());
                if !created {
                    return Err(ApplyError::MissingDirectory { path: target, dir });
                }
                return Ok(Planned {
                    file: file.clone(),
                    target,
                    previous: None,
                });
            }
            let previous = read_previous(&target)?;
            Ok(Planned {
                file: file.clone(),
                target,
                previous,
            })
        })
        .collect()
}

fn read_previous(target: &Path) -> Result<Option<Previous>, ApplyError> {
    let meta = match fs::symlink_metadata(target) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => {
            return Err(ApplyError::ReadExisting {
                path: target.to_path_buf(),
                cause,
            })
        }
    };
    if !meta.is_file() {
        // A symlink or anything else is replaced by our regular file; nothing to compare.
        return Ok(None);
    }
    let contents = fs::read(target).map_err(|cause| ApplyError::ReadExisting {
        path: target.to_path_buf(),
        cause,
    })?;
    Ok(Some(Previous {
        contents,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    }))
}

/// The directories of `dirs` that do not exist under `root` (host paths).
pub fn missing_directories(dirs: &[Directory], root: &Path) -> Vec<PathBuf> {
    dirs.iter()
        .map(|d| under_root(root, &d.path))
        .filter(|target| !target.is_dir())
        .collect()
}

/// Creates the directories of `dirs` that are missing under `root`, each with its mode and
/// owner (root and the directory's group) before anything goes into it, and syncs their
/// parents. Returns those it created (host paths), for [`remove_directories`] when the files
/// then fail.
pub fn create_directories(dirs: &[Directory], root: &Path) -> Result<Vec<PathBuf>, ApplyError> {
    use std::os::unix::fs::DirBuilderExt;
    let mut created = Vec::new();
    for dir in dirs {
        let target = under_root(root, &dir.path);
        if target.is_dir() {
            continue;
        }
        let failed = |cause: std::io::Error| ApplyError::CreateDirectory {
            path: target.clone(),
            cause,
        };
        let result = fs::DirBuilder::new()
            .mode(0o700)
            .create(&target)
            .and_then(|()| {
                std::os::unix::fs::chown(&target, Some(0), Some(dir.gid))?;
                fs::set_permissions(
                    &target,
                    std::os::unix::fs::PermissionsExt::from_mode(dir.mode),
                )?;
                support::files::sync_dir(support::files::parent_dir(&target))
            });
        if let Err(cause) = result {
            remove_directories(&created);
            let _ = fs::remove_dir(&target);
            return Err(failed(cause));
        }
        tracing::info!(
            "created {} ({:o}, 0:{})",
            target.display(),
            dir.mode,
            dir.gid
        );
        created.push(target);
    }
    Ok(created)
}

/// Removes directories [`create_directories`] made, newest first, when they are still empty.
pub fn remove_directories(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        if let Err(e) = fs::remove_dir(dir) {
            tracing::warn!("could not remove {} again: {e}", dir.display());
        }
    }
}

/// Whether `name` is a temporary file [`write_atomic`] makes for `target_name`:
/// `.<target_name>.<6 ASCII letters or digits>.tmp` (the tempfile crate's random part).
pub fn is_temporary_of(name: &str, target_name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_prefix(target_name))
        .and_then(|n| n.strip_prefix('.'))
        .and_then(|n| n.strip_suffix(".tmp"))
        .is_some_and(|random| {
            random.len() == 6 && random.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// The temporary files a killed run left beside `targets` (paths on disk): regular files
/// named as [`is_temporary_of`] says, never symlinks or directories.
pub fn stale_temporaries(targets: &[PathBuf]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for target in targets {
        let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let dir = support::files::parent_dir(target);
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let entry_name = entry.file_name();
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file
                && entry_name
                    .to_str()
                    .is_some_and(|n| is_temporary_of(n, name))
            {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// Removes what [`stale_temporaries`] found; a file already gone is not an error.
pub fn remove_stale_temporaries(stale: &[PathBuf]) -> Result<(), ApplyError> {
    for path in stale {
        match fs::remove_file(path) {
            Ok(()) => tracing::warn!("removed {}, left by an interrupted run", path.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(cause) => {
                return Err(ApplyError::RemoveStale {
                    path: path.clone(),
                    cause,
                })
            }
        }
    }
    Ok(())
}

fn spec(mode: u32, uid: u32, gid: u32) -> FileSpec {
    FileSpec::owned(mode, Ownership::new(uid, gid))
}

/// A small file written ahead of the plan's renames (the pending-work marker): it only has to
/// be in place before the first file is replaced, so a run that dies later leaves it for the
/// next; its data is not fsynced on its own (see [`apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forerunner {
    pub target: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// A file written to its temporary name, not yet renamed.
struct Staged<'a> {
    planned: &'a Planned,
    temp: tempfile::NamedTempFile,
}

fn write_error<'a>(
    path: &'a Path,
    step: &'static str,
) -> impl FnOnce(std::io::Error) -> ApplyError + 'a {
    move |source| {
        ApplyError::Write(WriteError {
            path: path.to_path_buf(),
            step,
            source,
        })
    }
}

/// A temporary file beside `target`, named as [`support::files::write_atomic`] names them (so
/// [`stale_temporaries`] finds a killed run's), holding `contents` with its mode and owner.
fn stage(
    target: &Path,
    contents: &[u8],
    spec: FileSpec,
) -> Result<tempfile::NamedTempFile, ApplyError> {
    use std::io::Write;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(support::files::parent_dir(target))
        .map_err(write_error(target, "creating a temporary file"))?;
    temp.write_all(contents)
        .map_err(write_error(target, "writing the temporary file"))?;
    support::files::apply_spec(temp.as_file(), spec)
        .map_err(write_error(target, "setting mode and owner"))?;
    Ok(temp)
}

/// Runs `work` on every item at once and returns the first error. Concurrent fsyncs on one
/// filesystem share journal commits, which is most of what writing these files costs.
fn all_at_once<T: Sync>(
    items: &[T],
    work: impl Fn(&T) -> Result<(), ApplyError> + Sync,
) -> Result<(), ApplyError> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .iter()
            .map(|item| scope.spawn(|| work(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("an fsync thread does not panic"))
            .collect::<Result<Vec<()>, ApplyError>>()
            .map(drop)
    })
}

/// Writes the plan, with `forerunner` (if any) put in place before the first file. On failure
/// the files already replaced are restored (or removed when they did not exist), so the
/// system is as it was.
///
/// Every changed file is first written to a temporary file beside its target with its mode
/// and owner, and all of them are fsynced at once; then the forerunner and the files are
/// renamed into place, in order; then each directory involved is fsynced once. A reader (or a
/// later run) sees each file old or new, never partial. A crash of the machine before the
/// directories are synced can lose renames, but then Nomad restarts with whatever is on disk
/// anyway, so the forerunner (the pending-work marker) only needs to be in place, not durable,
/// before the files are.
pub fn apply(
    plan: &[Planned],
    forerunner: Option<&Forerunner>,
) -> Result<Vec<Outcome>, ApplyError> {
    let mut staged = Vec::new();
    for planned in plan {
        if !planned.needs_write() {
            tracing::info!("{} is up to date", planned.target.display());
            continue;
        }
        let file = &planned.file;
        let temp = stage(
            &planned.target,
            file.contents.as_bytes(),
            spec(file.mode, file.uid, file.gid),
        )?;
        staged.push(Staged { planned, temp });
    }
    all_at_once(&staged, |s| {
        s.temp
            .as_file()
            .sync_all()
            .map_err(write_error(&s.planned.target, "syncing the temporary file"))
    })?;
    let mut dirs: Vec<PathBuf> = staged
        .iter()
        .map(|s| support::files::parent_dir(&s.planned.target).to_path_buf())
        .collect();
    if let (Some(first), false) = (forerunner, staged.is_empty()) {
        let temp = stage(&first.target, &first.contents, spec(first.mode, 0, 0))?;
        temp.persist(&first.target)
            .map_err(|e| write_error(&first.target, "renaming into place")(e.error))?;
        dirs.push(support::files::parent_dir(&first.target).to_path_buf());
    }
    let mut done: Vec<&Planned> = Vec::new();
    for Staged { planned, temp } in staged {
        if let Err(e) = temp.persist(&planned.target) {
            let error = write_error(&planned.target, "renaming into place")(e.error);
            return Err(match roll_back(&done) {
                Ok(()) => error,
                Err(rollback) => ApplyError::RollbackFailed {
                    error: Box::new(error),
                    rollback,
                },
            });
        }
        let file = &planned.file;
        tracing::info!(
            "wrote {} ({:o}, {}:{})",
            planned.target.display(),
            file.mode,
            file.uid,
            file.gid
        );
        done.push(planned);
    }
    dirs.sort();
    dirs.dedup();
    all_at_once(&dirs, |dir| {
        support::files::sync_dir(dir).map_err(write_error(dir, "syncing the directory"))
    })?;
    Ok(plan
        .iter()
        .map(|p| Outcome {
            kind: p.file.kind,
            target: p.target.clone(),
            changed: p.content_changed(),
        })
        .collect())
}

fn roll_back(done: &[&Planned]) -> Result<(), String> {
    let mut failures = Vec::new();
    for planned in done.iter().rev() {
        let result = match &planned.previous {
            Some(p) => write_atomic(&planned.target, &p.contents, spec(p.mode, p.uid, p.gid))
                .map_err(|e| e.to_string()),
            None => fs::remove_file(&planned.target)
                .map_err(|e| format!("removing {}: {e}", planned.target.display())),
        };
        match result {
            Ok(()) => tracing::warn!("restored {}", planned.target.display()),
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> (u32, u32) {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    }

    fn file(kind: FileKind, path: &str, contents: &str) -> RenderedFile {
        let (uid, gid) = me();
        RenderedFile {
            kind,
            path: PathBuf::from(path),
            contents: contents.to_string(),
            mode: 0o640,
            uid,
            gid,
        }
    }

    fn root_with(dirs: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for d in dirs {
            fs::create_dir_all(under_root(root.path(), Path::new(d))).unwrap();
        }
        root
    }

    #[test]
    fn writes_under_the_root_with_mode_and_reports_changes() {
        let root = root_with(&["/opt/nomad/config", "/etc/systemd/system"]);
        let files = [
            file(
                FileKind::AgentConfig,
                "/opt/nomad/config/default.hcl",
                "a = 1\n",
            ),
            file(
                FileKind::SystemdUnit,
                "/etc/systemd/system/nomad.service",
                "[Unit]\n",
            ),
        ];
        let outcomes = apply(&plan(&files, root.path()).unwrap(), None).unwrap();
        assert!(outcomes.iter().all(|o| o.changed));
        let hcl = root.path().join("opt/nomad/config/default.hcl");
        assert_eq!(fs::read_to_string(&hcl).unwrap(), "a = 1\n");
        assert_eq!(
            fs::metadata(&hcl).unwrap().permissions().mode() & 0o7777,
            0o640
        );

        // Same files again: nothing changes, nothing is rewritten.
        let before = fs::metadata(&hcl).unwrap().ino();
        let outcomes = apply(&plan(&files, root.path()).unwrap(), None).unwrap();
        assert!(outcomes.iter().all(|o| !o.changed));
        assert_eq!(fs::metadata(&hcl).unwrap().ino(), before);

        // One file changes: only it is reported.
        let mut files = files.to_vec();
        files[0].contents = "a = 2\n".into();
        let outcomes = apply(&plan(&files, root.path()).unwrap(), None).unwrap();
        assert!(changed(&outcomes, FileKind::AgentConfig));
        assert!(!changed(&outcomes, FileKind::SystemdUnit));
    }

    #[test]
    fn the_forerunner_is_in_place_with_the_files_and_only_when_one_changes() {
        let root = root_with(&["/c"]);
        let files = [file(FileKind::AgentConfig, "/c/default.hcl", "a = 1\n")];
        let marker = Forerunner {
            target: root.path().join("c/.marker"),
            contents: b"{}".to_vec(),
            mode: 0o600,
        };
        apply(&plan(&files, root.path()).unwrap(), Some(&marker)).unwrap();
        assert_eq!(fs::read(&marker.target).unwrap(), b"{}");
        assert_eq!(
            fs::metadata(&marker.target).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        fs::remove_file(&marker.target).unwrap();
        // Nothing to write: no marker either.
        apply(&plan(&files, root.path()).unwrap(), Some(&marker)).unwrap();
        assert!(!marker.target.exists());
        // No temporary file is left behind by either run.
        let names: Vec<_> = fs::read_dir(root.path().join("c"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("default.hcl")]);
    }

    #[test]
    fn a_wrong_mode_is_fixed_without_counting_as_a_change() {
        let root = root_with(&["/c"]);
        let files = [file(FileKind::AgentConfig, "/c/default.hcl", "x\n")];
        apply(&plan(&files, root.path()).unwrap(), None).unwrap();
        let path = root.path().join("c/default.hcl");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let planned = plan(&files, root.path()).unwrap();
        assert!(planned[0].needs_write() && !planned[0].content_changed());
        let outcomes = apply(&planned, None).unwrap();
        assert!(!outcomes[0].changed);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o640
        );
    }

    #[test]
    fn a_missing_directory_is_found_before_anything_is_written() {
        let root = root_with(&["/opt/nomad/config"]);
        let files = [
            file(
                FileKind::AgentConfig,
                "/opt/nomad/config/default.hcl",
                "a = 1\n",
            ),
            file(
                FileKind::SystemdUnit,
                "/etc/systemd/system/nomad.service",
                "[Unit]\n",
            ),
        ];
        let err = plan(&files, root.path()).unwrap_err();
        assert!(err.to_string().contains("etc/systemd/system"), "{err}");
        assert!(!root.path().join("opt/nomad/config/default.hcl").exists());
    }

    #[test]
    fn a_failed_write_restores_the_files_written_before_it() {
        let root = root_with(&["/c", "/u"]);
        let hcl = root.path().join("c/default.hcl");
        fs::write(&hcl, "old\n").unwrap();
        fs::set_permissions(&hcl, fs::Permissions::from_mode(0o640)).unwrap();
        let files = [
            file(FileKind::AgentConfig, "/c/default.hcl", "new\n"),
            file(FileKind::SystemdUnit, "/u/nomad.service", "[Unit]\n"),
        ];
        let planned = plan(&files, root.path()).unwrap();
        // The directory of the second file disappears between planning and writing.
        fs::remove_dir_all(root.path().join("u")).unwrap();
        let err = apply(&planned, None).unwrap_err();
        assert!(err.to_string().contains("nomad.service"), "{err}");
        assert_eq!(fs::read_to_string(&hcl).unwrap(), "old\n");
        let names: Vec<_> = fs::read_dir(root.path().join("c"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("default.hcl")]);
    }

    #[test]
    fn a_new_file_is_removed_again_when_a_later_one_fails() {
        let root = root_with(&["/c", "/u"]);
        let files = [
            file(FileKind::AgentConfig, "/c/default.hcl", "new\n"),
            file(FileKind::SystemdUnit, "/u/nomad.service", "[Unit]\n"),
        ];
        let planned = plan(&files, root.path()).unwrap();
        fs::remove_dir_all(root.path().join("u")).unwrap();
        apply(&planned, None).unwrap_err();
        assert!(!root.path().join("c/default.hcl").exists());
    }

    #[test]
    fn temporaries_of_killed_runs_are_found_by_the_name_write_atomic_gives_them() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("default.hcl");
        // A real temporary file, named by the same crate and pattern write_atomic uses, kept
        // as a killed run would leave it.
        let (_, left) = tempfile::Builder::new()
            .prefix(".default.hcl.")
            .suffix(".tmp")
            .tempfile_in(dir.path())
            .unwrap()
            .keep()
            .unwrap();
        // Not ours: another file's temporary, a look-alike with a different random part, a
        // directory, a symlink.
        for other in [
            ".nomad.hcl.abc123.tmp",
            ".default.hcl.abc12.tmp",
            ".default.hcl.abc123.bak",
        ] {
            fs::write(dir.path().join(other), "x").unwrap();
        }
        fs::create_dir(dir.path().join(".default.hcl.dir123.tmp")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(".default.hcl.lnk123.tmp"))
            .unwrap();
        let stale = stale_temporaries(&[target]);
        assert_eq!(stale, std::slice::from_ref(&left));
        remove_stale_temporaries(&stale).unwrap();
        assert!(!left.exists());
        assert!(dir.path().join(".nomad.hcl.abc123.tmp").exists());
        assert!(fs::symlink_metadata(dir.path().join(".default.hcl.lnk123.tmp")).is_ok());
    }
}
