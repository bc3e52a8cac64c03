//! One run of the installer, start to end.
//!
//! 1. Check what can be checked without the network: the root, the user database (the user must
//!    exist with `--skip-user`), the run-nomad binary.
//! 2. Lock `<path>` (one install at a time). Complete an install a killed run left journaled
//!    ([`transaction::recover`]), then remove what interrupted runs leave: staging directories,
//!    backups and half-made symlinks, wherever this layout puts files.
//! 3. Stage every component ([`crate::stage`]): resolve, verify the signed sums, download and
//!    extract into staging directories beside the final directories (same filesystem).
//! 4. Create the user if missing. Then plan the changes as [`Step`]s (directories, files,
//!    symlinks, the receipt last) and run them as one journaled, crash-consistent
//!    [`transaction::commit`]: a failure undoes every step, a kill is completed by the next run.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;
use support::files::{FileSpec, Ownership};

use crate::download::{self, Downloader};
use crate::layout::Layout;
use crate::receipt::{Installed, Receipt};
use crate::release::{self, Arch, Source, VersionRequest};
use crate::stage::{self, Run, Staged};
use crate::transaction::{self, CommitError, CommitHook, CreatedDirs, Journal, Step};
use crate::users;
use crate::verify::TrustedKeys;

/// Staging directories start with this, so a later run can recognise and remove stale ones.
const STAGING_PREFIX: &str = ".install-nomad-staging.";

/// Binaries and the directories holding them: root's, not writable by the service user.
pub(crate) const ROOT_EXEC: FileSpec = FileSpec {
    mode: 0o755,
    owner: Ownership {
        uid: Some(0),
        gid: Some(0),
    },
};
pub(crate) const ROOT_FILE: FileSpec = FileSpec {
    mode: 0o644,
    owner: Ownership {
        uid: Some(0),
        gid: Some(0),
    },
};

/// Everything an install needs, from the command line.
#[derive(Debug, Clone)]
pub struct Request {
    pub nomad: VersionRequest,
    pub consul: Option<VersionRequest>,
    pub cni: Option<CniRequest>,
    pub arch: Arch,
    pub source: Source,
    pub cni_source: Source,
    pub keys: TrustedKeys,
    pub layout: Layout,
    pub user: String,
    /// False with `--skip-user`: the user must exist.
    pub create_user: bool,
    /// The run-nomad binary to install beside nomad.
    pub run_nomad: PathBuf,
    pub download: download::Options,
    /// Called at each point of the commit (tests stop it there as a kill would); `None` in
    /// production.
    pub commit_hook: Option<CommitHook>,
}

/// `--cni-version` and `--cni-sha256`.
#[derive(Debug, Clone)]
pub struct CniRequest {
    pub version: String,
    pub sha256: Option<String>,
}

/// What an install did and what is installed now: the log lines, and (for `--json`) the
/// receipt, the run-nomad binary, the symlinks and the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Whether anything on the system changed.
    pub changed: bool,
    /// What an interrupted earlier run was installing, when this run completed it first.
    pub recovered: Option<String>,
    /// The receipt's path, inside the target.
    pub receipt: PathBuf,
    /// The receipt's components (`nomad`, `consul`, `cni`), each with `changed`.
    pub components: BTreeMap<String, ComponentOutcome>,
    pub run_nomad: FileOutcome,
    /// Symlink (inside the target) -> what it points at.
    pub links: BTreeMap<PathBuf, PathBuf>,
    pub user: UserOutcome,
    /// One line per change, as logged.
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentOutcome {
    #[serde(flatten)]
    pub installed: Installed,
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileOutcome {
    pub path: PathBuf,
    pub sha256: String,
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserOutcome {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub created: bool,
}

/// Runs the install.
pub fn install(request: &Request) -> anyhow::Result<Outcome> {
    let layout = &request.layout;
    match fs::metadata(&layout.root) {
        Ok(meta) if meta.is_dir() => {}
        _ => bail!("--root {} is not a directory", layout.root.display()),
    }
    users::preflight(layout, &request.user, request.create_user)?;
    let run_nomad = read_run_nomad(&request.run_nomad)?;

    // Declared first so it is dropped last: a run that fails before its commit removes the
    // directories it created, after the staging directories inside them are gone.
    let mut created = CreatedDirs::default();
    let install_dir = layout.host(&layout.nomad_path);
    created.ensure(&install_dir, ROOT_EXEC)?;
    let _lock = lock_dir(&install_dir)?;
    let mut actions = Vec::new();
    let recovered = transaction::recover(&layout.root, &journal_path(layout))?;
    if let Some(what) = &recovered {
        actions.push(format!(
            "completed the install an interrupted run had begun: {what}"
        ));
    }
    remove_leftovers(layout);

    let nomad_staging = new_staging(&install_dir)?;
    let ctx = Run {
        request,
        downloader: Downloader::new(&request.download)?,
        receipt: Receipt::load(&layout.receipt()),
    };
    tracing::info!(
        "release mirror {}, trusting {} ({})",
        request.source,
        request.keys.origin(),
        request.keys.fingerprints().join(", ")
    );
    let mut staging = vec![nomad_staging];
    let mut staged = vec![stage::stage_release(
        &ctx,
        release::NOMAD,
        &request.nomad,
        staging[0].path(),
    )?];
    if let Some(consul) = &request.consul {
        let consul_dir = layout.host(&layout.consul_path);
        created.ensure(&consul_dir, ROOT_EXEC)?;
        staging.push(new_staging(&consul_dir)?);
        let dir = staging.last().expect("just pushed").path();
        staged.push(stage::stage_release(&ctx, release::CONSUL, consul, dir)?);
    }
    if let Some(cni) = &request.cni {
        let parent = layout.staging_parent(&layout.cni_path);
        created.ensure(&parent, FileSpec::mode(0o755))?;
        staging.push(new_staging(&parent)?);
        let dir = staging.last().expect("just pushed").path();
        staged.push(stage::stage_cni(&ctx, cni, dir)?);
    }

    // Everything is downloaded and verified: now change the system.
    let (account, user_created) = users::ensure_account(
        layout,
        &request.user,
        &layout.nomad_path,
        request.create_user,
    )?;
    if user_created {
        actions.push(format!(
            "created system user {} (uid {}, gid {}) in {}",
            account.name,
            account.uid,
            account.gid,
            layout.etc("passwd").display()
        ));
    }
    let mut plan = Plan::new(layout);
    plan.directories(request, &account);
    let mut receipt = ctx.receipt.clone();
    let mut components = BTreeMap::new();
    for component in &staged {
        plan.component(component);
        receipt
            .components
            .insert(component.key.to_string(), component.installed.clone());
        components.insert(
            component.key.to_string(),
            ComponentOutcome {
                installed: component.installed.clone(),
                changed: !component.files.is_empty(),
            },
        );
    }
    let run_nomad_target = layout.run_nomad();
    let run_nomad_changed = support::hash::sha256_file(&layout.host(&run_nomad_target))
        .ok()
        .as_deref()
        != Some(run_nomad.1.as_str());
    if run_nomad_changed {
        let staged_file = staging[0].path().join("run-nomad");
        write_file(&staged_file, &run_nomad.0, ROOT_EXEC)?;
        plan.place(&staged_file, &run_nomad_target, &run_nomad.1);
        plan.actions.push(format!(
            "installed run-nomad from {} as {}",
            request.run_nomad.display(),
            run_nomad_target.display()
        ));
    }
    let mut links = BTreeMap::new();
    for product in [
        Some(release::NOMAD),
        request.consul.as_ref().map(|_| release::CONSUL),
    ]
    .into_iter()
    .flatten()
    {
        let (link, value) = (layout.system_link(product), layout.binary(product));
        plan.symlink(&link, &value);
        links.insert(link, value);
    }
    if receipt != ctx.receipt {
        let staged_file = staging[0].path().join("receipt.json");
        let bytes = receipt.to_json();
        write_file(&staged_file, &bytes, ROOT_FILE)?;
        plan.place(
            &staged_file,
            &layout.nomad_path.join(crate::layout::RECEIPT_NAME),
            &support::hash::sha256_hex(&bytes),
        );
    }

    // From here the staging directories belong to the transaction: it removes them when it
    // completes or undoes, and a kill leaves them for the journal's replay.
    let staging_dirs: Vec<PathBuf> = staging
        .into_iter()
        .map(|dir| layout.inside(&dir.keep()))
        .collect();
    let journal = Journal {
        what: staged
            .iter()
            .map(|c| c.title.clone())
            .collect::<Vec<_>>()
            .join(", "),
        steps: plan.steps,
        staging: staging_dirs,
    };
    let committed = match transaction::commit(
        &layout.root,
        &journal_path(layout),
        &journal,
        request.commit_hook.as_ref(),
    ) {
        Ok(committed) => committed,
        Err(error @ CommitError::Interrupted { .. }) => {
            created.keep();
            return Err(error.into());
        }
        Err(error) => return Err(commit_failure(error)),
    };
    created.keep();

    let data_dirs_created = committed
        .created_dirs
        .iter()
        .any(|dir| layout.data_dirs().iter().any(|(d, _)| d == dir));
    for component in &staged {
        if component.files.is_empty() {
            actions.push(format!(
                "{} is already installed in {} with the same archive SHA-256 ({}): nothing to download",
                component.title,
                component.destination.display(),
                short(&component.installed.archive_sha256)
            ));
        }
    }
    actions.extend(plan.actions);
    let changed = recovered.is_some() || user_created || data_dirs_created || plan.changes > 0;
    if !changed {
        actions.push("nothing to do: everything is already in place".to_string());
    }
    Ok(Outcome {
        changed,
        recovered,
        receipt: layout.nomad_path.join(crate::layout::RECEIPT_NAME),
        components,
        run_nomad: FileOutcome {
            path: run_nomad_target,
            sha256: run_nomad.1,
            changed: run_nomad_changed,
        },
        links,
        user: UserOutcome {
            name: account.name,
            uid: account.uid,
            gid: account.gid,
            created: user_created,
        },
        actions,
    })
}

/// The steps of the commit, in order, with the log line for each change.
struct Plan<'a> {
    layout: &'a Layout,
    steps: Vec<Step>,
    actions: Vec<String>,
    /// Files placed and symlinks changed.
    changes: usize,
}

impl<'a> Plan<'a> {
    fn new(layout: &'a Layout) -> Self {
        Plan {
            layout,
            steps: Vec::new(),
            actions: Vec::new(),
            changes: 0,
        }
    }

    /// The install directories, root's whatever an older install left (a directory the
    /// service user can write to would let it swap the binaries root runs), and the data
    /// directories, the service user's.
    fn directories(&mut self, request: &Request, account: &users::Account) {
        let layout = self.layout;
        self.steps
            .push(Step::dir(&layout.nomad_path, ROOT_EXEC, true));
        self.steps
            .push(Step::dir(&layout.bin_dir(release::NOMAD), ROOT_EXEC, true));
        if request.consul.is_some() {
            self.steps
                .push(Step::dir(&layout.consul_path, ROOT_EXEC, true));
        }
        for (dir, data) in layout.data_dirs() {
            let spec = FileSpec::owned(data.mode, Ownership::new(account.uid, account.gid));
            self.steps.push(Step::dir(&dir, spec, true));
        }
        self.steps.push(Step::dir(
            &layout.system_bin_dir,
            FileSpec::mode(0o755),
            false,
        ));
    }

    fn component(&mut self, component: &Staged) {
        if component.files.is_empty() {
            return;
        }
        let dir = component
            .files
            .first()
            .and_then(|f| f.target.parent())
            .map(Path::to_path_buf);
        if let Some(dir) = dir {
            self.steps.push(Step::dir(&dir, ROOT_EXEC, true));
        }
        for file in &component.files {
            self.place(&file.staged, &file.target, &file.sha256);
        }
        self.actions.push(format!(
            "installed {} in {} (archive SHA-256 {})",
            component.title,
            component.destination.display(),
            short(&component.installed.archive_sha256)
        ));
    }

    /// `staged` is a host path; `target` is inside the target.
    fn place(&mut self, staged: &Path, target: &Path, sha256: &str) {
        self.steps.push(Step::Place {
            staged: self.layout.inside(staged),
            target: target.to_path_buf(),
            sha256: sha256.to_string(),
        });
        self.changes += 1;
    }

    /// A symlink step, only when the link does not already point at `value`.
    fn symlink(&mut self, link: &Path, value: &Path) {
        if fs::read_link(self.layout.host(link)).is_ok_and(|current| current == value) {
            return;
        }
        self.steps.push(Step::Symlink {
            at: link.to_path_buf(),
            value: value.to_path_buf(),
        });
        self.changes += 1;
        self.actions
            .push(format!("linked {} -> {}", link.display(), value.display()));
    }
}

/// `<path>/.install-nomad-journal.json`, host path.
fn journal_path(layout: &Layout) -> PathBuf {
    layout
        .host(&layout.nomad_path)
        .join(transaction::JOURNAL_NAME)
}

/// A failed commit, named by its real cause (a full disk says so).
fn commit_failure(error: CommitError) -> anyhow::Error {
    let full = match &error {
        CommitError::RolledBack(step) | CommitError::Stuck { error: step, .. } => {
            support::files::disk_full(&step.path, &step.source)
        }
        CommitError::Journal { path, source } => support::files::disk_full(path, &source.source),
        CommitError::Interrupted { .. } => None,
    };
    match full {
        Some(full) => anyhow::Error::new(error).context(full),
        None => anyhow::Error::new(error),
    }
}

/// Removes what interrupted runs leave, now that no journal refers to it: staging directories
/// beside the install, Consul and CNI directories, and backups or half-made symlinks in every
/// directory this layout places files in. Run under the install lock, so none is in use.
fn remove_leftovers(layout: &Layout) {
    let staging_parents = [
        layout.host(&layout.nomad_path),
        layout.host(&layout.consul_path),
        layout.staging_parent(&layout.cni_path),
    ];
    for parent in &staging_parents {
        remove_stale_staging(parent);
    }
    let file_dirs = [
        layout.host(&layout.nomad_path),
        layout.host(&layout.bin_dir(release::NOMAD)),
        layout.host(&layout.bin_dir(release::CONSUL)),
        layout.host(&layout.cni_path),
        layout.host(&layout.system_bin_dir),
    ];
    for dir in &file_dirs {
        for removed in transaction::remove_leftovers(dir) {
            tracing::info!("removed {} left by an interrupted run", removed.display());
        }
    }
}

/// The run-nomad binary's bytes and SHA-256.
fn read_run_nomad(path: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    let meta = fs::metadata(path).with_context(|| {
        format!(
            "cannot use {} as the run-nomad binary (--run-nomad)",
            path.display()
        )
    })?;
    if !meta.is_file() {
        bail!(
            "{} is not a regular file (--run-nomad expects the run-nomad binary)",
            path.display()
        );
    }
    let bytes = fs::read(path)
        .with_context(|| format!("cannot read the run-nomad binary {}", path.display()))?;
    let sha = support::hash::sha256_hex(&bytes);
    Ok((bytes, sha))
}

/// Writes a staged file with its final mode and owner and fsyncs it.
fn write_file(path: &Path, bytes: &[u8], spec: FileSpec) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| support::files::apply_spec(&file, spec))
        .and_then(|()| file.sync_all())
        .map_err(|e| match support::files::disk_full(path, &e) {
            Some(full) => anyhow::Error::new(e).context(full),
            None => anyhow::Error::new(e).context(format!("writing {}", path.display())),
        })
}

/// A fresh staging directory in `parent` (same filesystem as the final files).
fn new_staging(parent: &Path) -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(parent)
        .with_context(|| format!("creating a staging directory in {}", parent.display()))
}

/// Removes staging directories a killed run left behind (we hold the install lock, so none is
/// in use).
fn remove_stale_staging(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            tracing::info!(
                "removing stale staging directory {}",
                entry.path().display()
            );
            if let Err(e) = fs::remove_dir_all(entry.path()) {
                tracing::warn!("could not remove {}: {e}", entry.path().display());
            }
        }
    }
}

/// An exclusive `flock` on the install directory for the whole run, so two installs into the
/// same path cannot interleave. A lock held by another run is an error that says so (and which
/// process holds it, when `/proc/locks` tells); it is not waited for.
fn lock_dir(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<File>> {
    let handle = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    nix::fcntl::Flock::lock(handle, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(handle, errno)| {
            if errno != nix::errno::Errno::EWOULDBLOCK {
                return anyhow::anyhow!("cannot lock {}: {errno}", dir.display());
            }
            let holder = lock_holder(&handle)
                .map(|pid| format!(" (process {pid})"))
                .unwrap_or_default();
            anyhow::anyhow!(
                "another install-nomad run{holder} holds the install lock on {}: wait for it to finish and run again",
                dir.display()
            )
        },
    )
}

/// The process holding a `flock` on `file`, from `/proc/locks` (lines such as
/// `1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF`, device as hex major:minor).
fn lock_holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    let dev = meta.dev();
    let id = format!(
        "{:02x}:{:02x}:{}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev),
        meta.ino()
    );
    let locks = fs::read_to_string("/proc/locks").ok()?;
    parse_lock_holder(&locks, &id)
}

fn parse_lock_holder(locks: &str, id: &str) -> Option<u32> {
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == id => pid.parse().ok(),
            _ => None,
        }
    })
}

pub(crate) fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_install_at_a_time_and_the_error_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_dir(dir.path()).unwrap();
        let err = lock_dir(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "another install-nomad run (process {}) holds the install lock on {}: wait for it to finish and run again",
                std::process::id(),
                dir.path().display()
            )
        );
        drop(held);
        assert!(lock_dir(dir.path()).is_ok());
    }

    #[test]
    fn the_lock_holder_is_read_from_proc_locks() {
        let locks = "1: POSIX  ADVISORY  WRITE 99 fd:01:5678 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 77 fd:01:9 0 EOF\n";
        assert_eq!(parse_lock_holder(locks, "fd:01:5678"), Some(1234));
        assert_eq!(parse_lock_holder(locks, "fd:01:1"), None);
    }

    #[test]
    fn stale_staging_is_cleared_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(format!("{STAGING_PREFIX}crashed"));
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("nomad_1.0.0_linux_amd64.zip.partial"), "half").unwrap();
        let other = dir.path().join("config");
        fs::create_dir(&other).unwrap();
        remove_stale_staging(dir.path());
        assert!(!stale.exists());
        assert!(other.exists(), "only our staging directories are removed");
    }
}
