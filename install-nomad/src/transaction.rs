//! Placing a verified install, crash-consistently: a journaled transaction whose steps can be
//! counted, replayed and undone.
//!
//! Everything is downloaded, verified and extracted into staging directories first (beside the
//! final directories, so every rename stays on one filesystem). Then the commit:
//!
//! 1. The plan, a list of [`Step`]s (directories to ensure, staged files to rename into place,
//!    symlinks), is written as a journal, `<path>/.install-nomad-journal.json` (atomically,
//!    fsynced). From here on the install is *decided*: a crash is completed by the next run.
//! 2. Each step runs in order. Every step is idempotent and knows whether it already ran (a
//!    staged file that is gone was renamed into place), so replaying the journal from the top
//!    after a crash at any point completes exactly the missing steps. A file placed over an
//!    old one is hard-linked to `.<name>.install-nomad-backup` first, so the name never
//!    disappears and the old bytes can be put back. The receipt is the last file placed.
//! 3. Every directory whose entries changed is fsynced once, then the journal is removed (the
//!    commit point), then the backups, then the staging directories.
//!
//! The next run, under the install lock, replays a journal it finds ([`recover`]) before doing
//! anything else, then removes leftover backups and staging directories wherever the layout
//! puts files ([`remove_leftovers`]): an install is always found either as it was or as the
//! interrupted run meant it, receipt included. A step that *fails* (rather than a kill) undoes
//! the steps before it in reverse ([`commit`]); each undo is the exact inverse (a placed file
//! goes back to staging, its backup back to its name), so a crash during the undo still leaves
//! a journal that replays correctly.
//!
//! [`CommitHook`] is called at every point of the commit and can stop it there as a kill
//! would: the tests use it to interrupt the commit after each step in turn.

use std::fmt;
use std::fs;
use std::io;
use std::ops::ControlFlow;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use support::files::{sync_dir, under_root, FileSpec, Ownership};

/// The journal's file name, in the Nomad install directory.
pub const JOURNAL_NAME: &str = ".install-nomad-journal.json";
const BACKUP_SUFFIX: &str = ".install-nomad-backup";
const NEW_LINK_SUFFIX: &str = ".install-nomad-new";

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

/// One step of the plan. Paths are inside the target system (`/opt/nomad/bin/nomad`) and
/// mapped under the root when the step runs, so a journal does not depend on where the root is
/// mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Make sure a directory exists (missing parents 0755) with this mode and owner; an
    /// existing one is given them only with `fix_existing`.
    Dir {
        path: PathBuf,
        mode: u32,
        uid: Option<u32>,
        gid: Option<u32>,
        fix_existing: bool,
    },
    /// Rename a staged file (final mode and owner, fsynced) over `target`.
    Place {
        staged: PathBuf,
        target: PathBuf,
        sha256: String,
    },
    /// Make `at` a symlink to `value`.
    Symlink { at: PathBuf, value: PathBuf },
}

impl Step {
    pub fn dir(path: &Path, spec: FileSpec, fix_existing: bool) -> Step {
        Step::Dir {
            path: path.to_path_buf(),
            mode: spec.mode,
            uid: spec.owner.uid,
            gid: spec.owner.gid,
            fix_existing,
        }
    }

    /// The path the step changes, inside the target.
    pub fn path(&self) -> &Path {
        match self {
            Step::Dir { path, .. } => path,
            Step::Place { target, .. } => target,
            Step::Symlink { at, .. } => at,
        }
    }

    /// Whether the step replaces or creates a file (so the plan needs a journal).
    fn writes_a_file(&self) -> bool {
        !matches!(self, Step::Dir { .. })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Dir { path, mode, .. } => write!(f, "directory {} ({mode:o})", path.display()),
            Step::Place { target, .. } => write!(f, "place {}", target.display()),
            Step::Symlink { at, value } => {
                write!(f, "link {} -> {}", at.display(), value.display())
            }
        }
    }
}

/// What the journal holds: the plan, the staging directories to remove at the end, and a line
/// saying what is being installed (for the next run's message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    pub what: String,
    pub steps: Vec<Step>,
    /// Inside the target.
    pub staging: Vec<PathBuf>,
}

/// A point of the commit, given to the [`CommitHook`] once it is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPoint<'a> {
    /// 0 (everything staged, nothing changed yet) to `total - 1` (staging removed).
    pub index: usize,
    pub total: usize,
    pub what: &'a str,
}

type HookFn = dyn Fn(&CommitPoint<'_>) -> ControlFlow<()> + Send + Sync;

/// Called at every point of the commit; `Break` stops the run right there, with no undo and no
/// clean-up, as a kill would. For tests of crash consistency; production runs pass none.
#[derive(Clone)]
pub struct CommitHook(pub Arc<HookFn>);

impl CommitHook {
    pub fn new(f: impl Fn(&CommitPoint<'_>) -> ControlFlow<()> + Send + Sync + 'static) -> Self {
        CommitHook(Arc::new(f))
    }
}

impl fmt::Debug for CommitHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CommitHook")
    }
}

/// Why the commit did not complete.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A step failed and every step before it was undone: the install is as it was.
    #[error("{0} (every change was undone)")]
    RolledBack(#[source] StepError),
    /// A step failed and undoing failed too: the journal stays for the next run to complete.
    #[error("{error}; undoing failed as well, so {journal} was kept: the next run completes the install")]
    Stuck {
        #[source]
        error: StepError,
        journal: PathBuf,
    },
    /// The journal could not be written: nothing was changed.
    #[error("cannot write the install journal {path}: {source}")]
    Journal {
        path: PathBuf,
        #[source]
        source: support::files::WriteError,
    },
    /// The [`CommitHook`] stopped the run.
    #[error("stopped at commit point {index} of {total} ({what})")]
    Interrupted {
        index: usize,
        total: usize,
        what: String,
    },
}

/// What a commit did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Directories it created, inside the target.
    pub created_dirs: Vec<PathBuf>,
}

/// Runs the plan: journal, steps, journal removed, backups removed, staging removed, calling
/// `hook` at each of these points. A plan without a file to place needs no journal.
pub fn commit(
    root: &Path,
    journal_path: &Path,
    journal: &Journal,
    hook: Option<&CommitHook>,
) -> Result<Committed, CommitError> {
    let total = journal.steps.len() + 5;
    let point = |index: usize, what: &str| -> Result<(), CommitError> {
        match hook.map(|h| (h.0)(&CommitPoint { index, total, what })) {
            Some(ControlFlow::Break(())) => Err(CommitError::Interrupted {
                index,
                total,
                what: what.to_string(),
            }),
            _ => Ok(()),
        }
    };
    point(0, "staged; nothing changed yet")?;
    let journaled = journal.steps.iter().any(Step::writes_a_file);
    if journaled {
        let json = serde_json::to_vec_pretty(journal).expect("a journal serializes");
        support::files::write_atomic(journal_path, &json, FileSpec::mode(0o600)).map_err(
            |source| CommitError::Journal {
                path: journal_path.to_path_buf(),
                source,
            },
        )?;
    }
    point(1, "journal written")?;
    let mut done: Vec<Applied> = Vec::new();
    for (i, step) in journal.steps.iter().enumerate() {
        match apply(root, step, false) {
            Ok(applied) => done.push(applied),
            Err(error) => {
                return Err(undo(root, journal_path, journal, done, error, journaled));
            }
        }
        point(i + 2, &step.to_string())?;
    }
    if let Err(error) = sync_changed_dirs(&done) {
        return Err(undo(root, journal_path, journal, done, error, journaled));
    }
    let created_dirs = done
        .iter()
        .flat_map(|a| match a {
            Applied::CreatedDirs(dirs) => dirs.clone(),
            _ => Vec::new(),
        })
        .map(|host| inside(root, &host))
        .collect();
    finish(root, journal_path, journal, journaled, |i, what| {
        point(journal.steps.len() + 2 + i, what)
    })?;
    Ok(Committed { created_dirs })
}

/// Completes an install a killed run left journaled at `journal_path`, if there is one:
/// replays every step (those already done are recognised and skipped) and cleans up. Returns
/// what was being installed.
pub fn recover(root: &Path, journal_path: &Path) -> anyhow::Result<Option<String>> {
    let bytes = match fs::read(journal_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => anyhow::bail!(
            "cannot read the install journal {}: {e}",
            journal_path.display()
        ),
    };
    let journal: Journal = serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "the install journal {} of an interrupted run is unreadable ({e}); check the install and remove the file to go on",
            journal_path.display()
        )
    })?;
    tracing::warn!(
        "completing an install that was interrupted: {} (journal {})",
        journal.what,
        journal_path.display()
    );
    let cannot = |e: StepError| {
        anyhow::anyhow!(
            "cannot complete the interrupted install recorded in {}: {e}; nothing else was changed (remove that file to install from scratch: files that do not match the receipt are then installed again)",
            journal_path.display()
        )
    };
    let mut done = Vec::new();
    for step in &journal.steps {
        done.push(apply(root, step, true).map_err(cannot)?);
    }
    sync_changed_dirs(&done).map_err(cannot)?;
    finish(root, journal_path, &journal, true, |_, _| Ok(()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Some(journal.what))
}

/// The end of a commit: the journal goes (the commit point), then the backups, then staging.
fn finish(
    root: &Path,
    journal_path: &Path,
    journal: &Journal,
    journaled: bool,
    point: impl Fn(usize, &str) -> Result<(), CommitError>,
) -> Result<(), CommitError> {
    if journaled {
        if let Err(e) = fs::remove_file(journal_path) {
            tracing::warn!("could not remove {}: {e}", journal_path.display());
        }
        if let Some(dir) = journal_path.parent() {
            let _ = sync_dir(dir);
        }
    }
    point(0, "journal removed")?;
    for step in &journal.steps {
        if step.writes_a_file() {
            let target = under_root(root, step.path());
            for leftover in [backup_path(&target), new_link_path(&target)] {
                remove_if_there(&leftover);
            }
        }
    }
    point(1, "backups removed")?;
    for dir in &journal.staging {
        let dir = under_root(root, dir);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("could not remove {}: {e}", dir.display()),
        }
    }
    point(2, "staging removed")
}

/// Undoes `done` in reverse after `error`; removes the journal and staging when that worked.
fn undo(
    root: &Path,
    journal_path: &Path,
    journal: &Journal,
    done: Vec<Applied>,
    error: StepError,
    journaled: bool,
) -> CommitError {
    tracing::warn!("install failed: undoing {} step(s)", done.len());
    let mut clean = true;
    for applied in done.into_iter().rev() {
        if let Err(e) = applied.undo() {
            tracing::error!("undoing failed: {e}");
            clean = false;
        }
    }
    if !clean && journaled {
        return CommitError::Stuck {
            error,
            journal: journal_path.to_path_buf(),
        };
    }
    let _ = finish(root, journal_path, journal, journaled, |_, _| Ok(()));
    CommitError::RolledBack(error)
}

/// What a step did, so it can be undone.
#[derive(Debug)]
enum Applied {
    Nothing,
    CreatedDirs(Vec<PathBuf>),
    /// `staged` was renamed to `target`; the old file (if any) is at `backup`.
    Placed {
        staged: PathBuf,
        target: PathBuf,
        backup: Option<PathBuf>,
    },
    Linked {
        at: PathBuf,
        backup: Option<PathBuf>,
    },
}

impl Applied {
    /// The exact inverse of the step, so a journal left by a crash during the undo still
    /// replays: a placed file goes back to its staged name before its backup takes the target
    /// name again.
    fn undo(self) -> Result<(), StepError> {
        match self {
            Applied::Nothing => Ok(()),
            Applied::CreatedDirs(dirs) => {
                for dir in dirs.iter().rev() {
                    if let Err(e) = fs::remove_dir(dir) {
                        tracing::warn!("undo: could not remove {}: {e}", dir.display());
                    }
                }
                Ok(())
            }
            Applied::Placed {
                staged,
                target,
                backup,
            } => {
                fs::rename(&target, &staged).map_err(step_error("moving back", &target))?;
                if let Some(backup) = backup {
                    fs::rename(&backup, &target).map_err(step_error("restoring", &target))?;
                }
                Ok(())
            }
            Applied::Linked { at, backup } => {
                match backup {
                    Some(backup) => {
                        fs::rename(&backup, &at).map_err(step_error("restoring", &at))?
                    }
                    None => fs::remove_file(&at).map_err(step_error("removing", &at))?,
                }
                Ok(())
            }
        }
    }
}

/// Runs one step, recognising one that already ran. `replaying` (a journal from a killed run)
/// also checks the staged file's SHA-256 before placing it and the target's when the staged
/// file is gone, so a replay never places or accepts bytes that are not the planned ones.
fn apply(root: &Path, step: &Step, replaying: bool) -> Result<Applied, StepError> {
    match step {
        Step::Dir {
            path,
            mode,
            uid,
            gid,
            fix_existing,
        } => {
            let spec = FileSpec {
                mode: *mode,
                owner: Ownership {
                    uid: *uid,
                    gid: *gid,
                },
            };
            ensure_dir(&under_root(root, path), spec, *fix_existing).map(Applied::CreatedDirs)
        }
        Step::Place {
            staged,
            target,
            sha256,
        } => place(
            &under_root(root, staged),
            &under_root(root, target),
            sha256,
            replaying,
        ),
        Step::Symlink { at, value } => symlink(value, &under_root(root, at)),
    }
}

fn place(staged: &Path, target: &Path, want: &str, replaying: bool) -> Result<Applied, StepError> {
    let staged_there = fs::symlink_metadata(staged).is_ok();
    if !staged_there && !replaying {
        return Err(StepError {
            action: "placing",
            path: target.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::NotFound,
                format!("its staged file {} is missing", staged.display()),
            ),
        });
    }
    if !staged_there {
        // Renamed into place before the crash; make sure it is what was planned.
        let sha = support::hash::sha256_file(target).map_err(step_error("checking", target))?;
        if sha != want {
            return Err(StepError {
                action: "completing",
                path: target.to_path_buf(),
                source: io::Error::other(format!(
                    "its staged file {} is gone and it does not hold the planned bytes",
                    staged.display()
                )),
            });
        }
        return Ok(Applied::Nothing);
    }
    if replaying {
        let sha = support::hash::sha256_file(staged).map_err(step_error("checking", staged))?;
        if sha != want {
            return Err(StepError {
                action: "completing",
                path: target.to_path_buf(),
                source: io::Error::other(format!(
                    "the staged file {} changed since it was verified",
                    staged.display()
                )),
            });
        }
    }
    let backup = keep_backup(target)?;
    fs::rename(staged, target).map_err(step_error("renaming into place", target))?;
    Ok(Applied::Placed {
        staged: staged.to_path_buf(),
        target: target.to_path_buf(),
        backup,
    })
}

/// Hard-links what is at `target` (a file, or a symlink itself: linkat does not follow) to its
/// backup name, unless a replayed step made that backup already. `None` when nothing is there.
fn keep_backup(target: &Path) -> Result<Option<PathBuf>, StepError> {
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_dir() => Err(StepError {
            action: "replacing",
            path: target.to_path_buf(),
            source: io::Error::new(io::ErrorKind::AlreadyExists, "a directory is in the way"),
        }),
        Ok(_) => {
            let backup = backup_path(target);
            if fs::symlink_metadata(&backup).is_err() {
                fs::hard_link(target, &backup)
                    .map_err(step_error("keeping a backup of", target))?;
            }
            Ok(Some(backup))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(step_error("checking", target)(e)),
    }
}

fn symlink(value: &Path, at: &Path) -> Result<Applied, StepError> {
    if fs::read_link(at).is_ok_and(|current| current == value) {
        return Ok(Applied::Nothing);
    }
    if fs::symlink_metadata(at).is_ok_and(|meta| meta.is_file()) {
        tracing::warn!(
            "replacing the regular file {} with a symlink to {}",
            at.display(),
            value.display()
        );
    }
    let temp = new_link_path(at);
    remove_if_there(&temp);
    std::os::unix::fs::symlink(value, &temp).map_err(step_error("creating symlink", &temp))?;
    let backup = keep_backup(at)?;
    if let Err(e) = fs::rename(&temp, at) {
        remove_if_there(&temp);
        return Err(step_error("renaming into place", at)(e));
    }
    Ok(Applied::Linked {
        at: at.to_path_buf(),
        backup,
    })
}

/// Makes sure `dir` exists as a directory with `spec`'s owner and mode. Missing parents are
/// created 0755 (owned by whoever runs this, root in practice). When `dir` already exists its
/// owner and mode are set to `spec` only if `fix_existing`. Returns the directories created,
/// outermost first.
pub fn ensure_dir(
    dir: &Path,
    spec: FileSpec,
    fix_existing: bool,
) -> Result<Vec<PathBuf>, StepError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if fix_existing {
                apply_to_path(dir, spec, &meta)?;
            }
            return Ok(Vec::new());
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
    missing.reverse();
    for path in &missing {
        let mode = if path == dir { spec.mode } else { 0o755 };
        fs::DirBuilder::new()
            .mode(mode)
            .create(path)
            .map_err(step_error("creating directory", path))?;
        if path == dir {
            let meta = fs::metadata(path).map_err(step_error("checking", path))?;
            apply_to_path(path, spec, &meta)?;
        } else {
            // The umask may have narrowed the mode.
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(step_error("setting the mode of", path))?;
        }
    }
    Ok(missing)
}

/// Directories made before the commit (the install directory to lock, the staging parents):
/// removed again, innermost first, when the run fails before its commit, so a failed first
/// install leaves nothing. A run stopped by the [`CommitHook`] calls [`CreatedDirs::keep`], as
/// a kill would leave them.
#[derive(Debug, Default)]
pub struct CreatedDirs {
    dirs: Vec<PathBuf>,
}

impl CreatedDirs {
    pub fn ensure(&mut self, dir: &Path, spec: FileSpec) -> Result<(), StepError> {
        self.dirs.extend(ensure_dir(dir, spec, false)?);
        Ok(())
    }

    pub fn keep(mut self) {
        self.dirs.clear();
    }
}

impl Drop for CreatedDirs {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            if let Err(e) = fs::remove_dir(dir) {
                tracing::warn!("could not remove {}: {e}", dir.display());
            }
        }
    }
}

/// Removes what an interrupted commit can leave in `dir` once no journal refers to it: backups
/// (`.<name>.install-nomad-backup`), new symlinks not renamed yet (`.<name>.install-nomad-new`)
/// and half-written journals. Returns what it removed.
pub fn remove_leftovers(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with('.')
            && (name.ends_with(BACKUP_SUFFIX)
                || name.ends_with(NEW_LINK_SUFFIX)
                || (name.starts_with(&format!("{JOURNAL_NAME}.")) && name.ends_with(".tmp")));
        if ours && entry.file_type().is_ok_and(|t| !t.is_dir()) {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                Err(e) => tracing::warn!("could not remove {}: {e}", path.display()),
            }
        }
    }
    removed
}

fn remove_if_there(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("could not remove {}: {e}", path.display()),
    }
}

/// fsyncs, once each, the directories whose entries the steps changed (the parent of every
/// file placed, symlink made and directory created), so every rename and creation is on disk
/// before the journal that could redo them is removed. One pass at the end instead of an
/// fsync per step: until the journal goes, a step lost to a power cut is simply replayed.
fn sync_changed_dirs(applied: &[Applied]) -> Result<(), StepError> {
    let mut dirs = std::collections::BTreeSet::new();
    for step in applied {
        match step {
            Applied::Nothing => {}
            Applied::CreatedDirs(created) => {
                dirs.extend(created.iter().filter_map(|d| d.parent()));
            }
            Applied::Placed { target, .. } => dirs.extend(target.parent()),
            Applied::Linked { at, .. } => dirs.extend(at.parent()),
        }
    }
    for dir in dirs {
        sync_dir(dir).map_err(step_error("syncing the directory", dir))?;
    }
    Ok(())
}

fn sibling(target: &Path, suffix: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}{suffix}"))
}

fn backup_path(target: &Path) -> PathBuf {
    sibling(target, BACKUP_SUFFIX)
}

fn new_link_path(at: &Path) -> PathBuf {
    sibling(at, NEW_LINK_SUFFIX)
}

/// A host path seen from inside the target.
fn inside(root: &Path, host: &Path) -> PathBuf {
    match host.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => host.to_path_buf(),
    }
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
mod tests;
