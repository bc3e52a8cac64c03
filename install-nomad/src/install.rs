//! The install transaction: resolve, download, verify and extract everything into staging
//! directories first; only then create the user and move files into place, all or nothing.
//!
//! 1. Check what can be checked without the network: the root, the user database (the user must
//!    exist with `--skip-user`), the run-nomad binary.
//! 2. Lock `<path>` (one install at a time) and remove stale staging directories of a crashed run.
//! 3. For each product (Nomad, then Consul if asked): resolve `latest` from the signed-over
//!    index, fetch `SHA256SUMS` and its signature (`.<KEYID>.sig`, then `.sig`), verify the
//!    signature (fail closed), read the archive's hash from the sums. If the receipt says this
//!    very archive is installed and intact, skip it. Otherwise download to
//!    `<staging>/<archive>.partial` hashing on the way, compare, rename, extract the binary by
//!    name (root:root 0755, fsynced). CNI the same way, checked against the pinned hash.
//! 4. Create the user if missing; then, in one [`Transaction`]: the directories (bin dirs
//!    root:root 0755, data dirs owned by the user), the binaries, run-nomad, the symlinks in
//!    `--system-bin-dir`, and the receipt. Any failure rolls all of it back.
//! 5. Staging directories live next to the final directories (same filesystem, so the renames
//!    are atomic) and are removed whatever happens.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use support::files::{FileSpec, Ownership};
use url::Url;

use crate::archive;
use crate::cni::CniRelease;
use crate::download::{self, Downloader};
use crate::layout::Layout;
use crate::receipt::{self, Installed, Receipt};
use crate::release::{self, Arch, Product, Release, Source, Version, VersionRequest};
use crate::transaction::Transaction;
use crate::users;
use crate::verify::{self, TrustedKeys};

/// Largest `index.json` accepted (HashiCorp's Consul index is a few MB).
const INDEX_LIMIT: u64 = 64 << 20;
/// Largest SHA256SUMS or signature file accepted.
const SMALL_FILE_LIMIT: u64 = 1 << 20;
/// Staging directories start with this, so a later run can recognise and remove stale ones.
const STAGING_PREFIX: &str = ".install-nomad-staging.";

/// Binaries and the directories holding them: root's, not writable by the service user.
const ROOT_EXEC: FileSpec = FileSpec {
    mode: 0o755,
    owner: Ownership {
        uid: Some(0),
        gid: Some(0),
    },
};
const ROOT_FILE: FileSpec = FileSpec {
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
}

/// `--cni-version` and `--cni-sha256`.
#[derive(Debug, Clone)]
pub struct CniRequest {
    pub version: String,
    pub sha256: Option<String>,
}

/// What an install did, one line per component, for the final report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub changed: bool,
    pub lines: Vec<String>,
}

/// Shared by the staging steps.
struct Run<'a> {
    request: &'a Request,
    downloader: Downloader,
    receipt: Receipt,
}

/// A component resolved and, unless already installed, downloaded, verified and extracted.
struct Staged {
    /// Receipt key: `nomad`, `consul`, `cni`.
    key: &'static str,
    title: String,
    installed: Installed,
    /// `(staged file, host target)` pairs; empty when it is already installed.
    files: Vec<(PathBuf, PathBuf)>,
    /// Where the files go (inside the target), for messages.
    destination: PathBuf,
    _staging: Option<tempfile::TempDir>,
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

    // Declared first so it is dropped last: a failed run removes the directories it created
    // after the staging directories inside them are gone.
    let mut tx = Transaction::new();
    let install_dir = layout.host(&layout.nomad_path);
    tx.ensure_dir(&install_dir, ROOT_EXEC, false)?;
    let _lock = lock_dir(&install_dir)?;
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

    let mut staged = vec![stage_release(
        &ctx,
        release::NOMAD,
        &request.nomad,
        &nomad_staging,
    )?];
    if let Some(consul) = &request.consul {
        let consul_dir = layout.host(&layout.consul_path);
        tx.ensure_dir(&consul_dir, ROOT_EXEC, false)?;
        remove_stale_staging(&consul_dir);
        let staging = new_staging(&consul_dir)?;
        let mut component = stage_release(&ctx, release::CONSUL, consul, &staging)?;
        component._staging = Some(staging);
        staged.push(component);
    }
    if let Some(cni) = &request.cni {
        let parent = layout.staging_parent(&layout.cni_path);
        tx.ensure_dir(&parent, FileSpec::mode(0o755), false)?;
        remove_stale_staging(&parent);
        let staging = new_staging(&parent)?;
        let mut component = stage_cni(&ctx, cni, &staging)?;
        component._staging = Some(staging);
        staged.push(component);
    }

    let run_nomad_target = layout.host(&layout.run_nomad());
    let run_nomad_changed = support::hash::sha256_file(&run_nomad_target)
        .ok()
        .as_deref()
        != Some(run_nomad.1.as_str());
    let staged_run_nomad = nomad_staging.path().join("run-nomad");
    if run_nomad_changed {
        write_file(&staged_run_nomad, &run_nomad.0, ROOT_EXEC)?;
    }

    // Everything is downloaded and verified: now change the system.
    let mut outcome = Outcome::default();
    let (account, created) = users::ensure_account(
        layout,
        &request.user,
        &layout.nomad_path,
        request.create_user,
    )?;
    if created {
        outcome.changed = true;
        outcome.lines.push(format!(
            "created system user {} (uid {}, gid {}) in {}",
            account.name,
            account.uid,
            account.gid,
            layout.etc("passwd").display()
        ));
    }
    let service = FileSpec::owned(0o750, Ownership::new(account.uid, account.gid));

    // Root's, whatever an older install left: a directory the service user can write to would
    // let it swap the binaries root runs.
    tx.ensure_dir(&install_dir, ROOT_EXEC, true)?;
    tx.ensure_dir(
        &layout.host(&layout.bin_dir(release::NOMAD)),
        ROOT_EXEC,
        true,
    )?;
    if request.consul.is_some() {
        tx.ensure_dir(&layout.host(&layout.consul_path), ROOT_EXEC, true)?;
    }
    for (dir, data) in layout.data_dirs() {
        let spec = FileSpec {
            mode: data.mode,
            ..service
        };
        if tx.ensure_dir(&layout.host(&dir), spec, true)? {
            outcome.changed = true;
        }
    }
    let system_bin = layout.host(&layout.system_bin_dir);
    tx.ensure_dir(&system_bin, FileSpec::mode(0o755), false)?;

    let mut receipt = ctx.receipt.clone();
    for component in &staged {
        if component.files.is_empty() {
            outcome.lines.push(format!(
                "{} is already installed in {} with the same archive SHA-256 ({}): nothing to download",
                component.title,
                component.destination.display(),
                short(&component.installed.archive_sha256)
            ));
        } else {
            let dir = component
                .files
                .first()
                .and_then(|(_, target)| target.parent())
                .map(Path::to_path_buf);
            if let Some(dir) = dir {
                tx.ensure_dir(&dir, ROOT_EXEC, true)?;
            }
            for (staged_file, target) in &component.files {
                tx.place(staged_file, target)?;
            }
            outcome.changed = true;
            outcome.lines.push(format!(
                "installed {} in {} (archive SHA-256 {})",
                component.title,
                component.destination.display(),
                short(&component.installed.archive_sha256)
            ));
        }
        receipt
            .components
            .insert(component.key.to_string(), component.installed.clone());
    }
    if run_nomad_changed {
        tx.place(&staged_run_nomad, &run_nomad_target)?;
        outcome.changed = true;
        outcome.lines.push(format!(
            "installed run-nomad from {} as {}",
            request.run_nomad.display(),
            layout.run_nomad().display()
        ));
    }
    let mut products = vec![release::NOMAD];
    if request.consul.is_some() {
        products.push(release::CONSUL);
    }
    for product in products {
        let link = layout.system_link(product);
        if tx.symlink(&layout.binary(product), &layout.host(&link))? {
            outcome.changed = true;
            outcome.lines.push(format!(
                "linked {} -> {}",
                link.display(),
                layout.binary(product).display()
            ));
        }
    }
    if receipt != ctx.receipt {
        let staged_receipt = nomad_staging.path().join("receipt.json");
        write_file(&staged_receipt, &receipt.to_json(), ROOT_FILE)?;
        tx.place(&staged_receipt, &layout.receipt())?;
    }
    tx.commit();
    if !outcome.changed {
        outcome
            .lines
            .push("nothing to do: everything is already in place".to_string());
    }
    Ok(outcome)
}

/// Resolves, verifies and (unless already installed) downloads and extracts one HashiCorp
/// product into `staging`.
fn stage_release(
    ctx: &Run<'_>,
    product: Product,
    request: &VersionRequest,
    staging: &tempfile::TempDir,
) -> anyhow::Result<Staged> {
    let r = ctx.request;
    let version = match request {
        VersionRequest::Exact(v) => v.clone(),
        VersionRequest::Latest => resolve_latest(ctx, product)?,
    };
    let release = Release {
        product,
        version,
        arch: r.arch,
    };
    let sums_url = release.file_url(&r.source, &release.sums_name());
    let sums_bytes = ctx
        .downloader
        .fetch_bytes(&sums_url, SMALL_FILE_LIMIT)
        .map_err(|e| {
            if e.is_not_found() {
                anyhow::anyhow!(
                    "{product} version {} does not exist on the mirror {}: {e}",
                    release.version,
                    r.source
                )
            } else {
                anyhow::Error::new(e)
            }
        })?;
    let verified = verify_sums(ctx, &release, &sums_bytes, &sums_url)?;
    tracing::info!(
        "{} is signed by {} (key {}, made {})",
        sums_url,
        verified.primary,
        verified.signer,
        verified.created
    );
    let archive_name = release.archive_name();
    let expected = verify::parse_sums(&sums_bytes)
        .and_then(|sums| sums.sha256_of(&archive_name).map(str::to_string))
        .with_context(|| {
            format!(
                "{sums_url} (signature verified) cannot vouch for {archive_name}: is there a linux_{} build of {product} {}?",
                r.arch, release.version
            )
        })?;
    let archive_url = release.file_url(&r.source, &archive_name);
    let binary_inside = r.layout.binary(product);
    let destination = r.layout.bin_dir(product);
    let title = release.to_string();

    let previous = ctx.receipt.components.get(product.name);
    if receipt::is_current(
        previous,
        release.version.as_str(),
        r.arch.as_str(),
        &expected,
        |inside| support::hash::sha256_file(&r.layout.host(Path::new(inside))).ok(),
    ) {
        let mut installed = previous.cloned().expect("is_current needs a receipt");
        installed.url = archive_url.to_string();
        return Ok(Staged {
            key: product.name,
            title,
            installed,
            files: Vec::new(),
            destination,
            _staging: None,
        });
    }

    let archive_path = download_verified(ctx, &archive_url, &archive_name, &expected, staging)?;
    tracing::info!(
        "{archive_name} matches the signed SHA-256 {}; extracting {}",
        short(&expected),
        product.name
    );
    let staged_binary = staging.path().join(product.name);
    let extracted =
        archive::extract_zip_file(&archive_path, product.name, &staged_binary, ROOT_EXEC)
            .with_context(|| format!("refusing {archive_url}"))?;
    let _ = fs::remove_file(&archive_path);
    Ok(Staged {
        key: product.name,
        title,
        installed: Installed {
            version: release.version.to_string(),
            arch: r.arch.to_string(),
            archive: archive_name,
            archive_sha256: expected,
            url: archive_url.to_string(),
            files: [(binary_inside.display().to_string(), extracted.sha256)]
                .into_iter()
                .collect(),
        },
        files: vec![(staged_binary, r.layout.host(&binary_inside))],
        destination,
        _staging: None,
    })
}

/// `latest`: the newest stable version in `/<product>/index.json` with a build for our arch.
fn resolve_latest(ctx: &Run<'_>, product: Product) -> anyhow::Result<Version> {
    let r = ctx.request;
    let url = release::index_url(&r.source, product);
    let bytes = ctx
        .downloader
        .fetch_bytes(&url, INDEX_LIMIT)
        .with_context(|| format!("resolving the latest {product} release"))?;
    let index: release::ProductIndex =
        serde_json::from_slice(&bytes).with_context(|| format!("{url} is not a release index"))?;
    let version = release::latest_stable(&index, r.arch).with_context(|| {
        format!(
            "{url} lists no stable {product} release with a linux_{} build",
            r.arch
        )
    })?;
    tracing::info!("latest stable {product} on {} is {version}", r.source);
    Ok(version)
}

/// Finds the sums' signature (`.<KEYID>.sig` for each trusted key, then `.sig`) and verifies
/// it. The first signature file that exists decides: a bad one is never skipped for another.
fn verify_sums(
    ctx: &Run<'_>,
    release: &Release,
    sums: &[u8],
    sums_url: &Url,
) -> anyhow::Result<verify::Verified> {
    let r = ctx.request;
    let mut tried = Vec::new();
    for name in release.signature_names(&r.keys.key_id_suffixes()) {
        let url = release.file_url(&r.source, &name);
        match ctx.downloader.fetch_bytes(&url, SMALL_FILE_LIMIT) {
            Ok(signature) => {
                return r.keys.verify(sums, &signature).with_context(|| {
                    format!(
                        "refusing {sums_url}: its signature {url} does not verify against {}",
                        r.keys.origin()
                    )
                });
            }
            Err(e) if e.is_not_found() => tried.push(url.to_string()),
            Err(e) => return Err(e).context("fetching the signature of the checksums"),
        }
    }
    bail!(
        "refusing {sums_url}: no signature found (tried {})",
        tried.join(", ")
    )
}

/// Downloads `url` to `<staging>/<name>.partial`, compares its SHA-256 with `expected`, and
/// renames it to `<staging>/<name>`.
fn download_verified(
    ctx: &Run<'_>,
    url: &Url,
    name: &str,
    expected: &str,
    staging: &tempfile::TempDir,
) -> anyhow::Result<PathBuf> {
    let partial = staging.path().join(format!("{name}.partial"));
    let fetched = ctx.downloader.fetch_to_file(url, &partial)?;
    if !fetched.sha256.eq_ignore_ascii_case(expected) {
        bail!(
            "refusing {url}: its SHA-256 is {} but {expected} was expected ({} bytes received); nothing was extracted",
            fetched.sha256,
            fetched.size
        );
    }
    let done = staging.path().join(name);
    fs::rename(&partial, &done)
        .with_context(|| format!("renaming {} to {}", partial.display(), done.display()))?;
    Ok(done)
}

/// Downloads the CNI tarball, checks it against the pinned (or given) SHA-256 and extracts its
/// top-level files.
fn stage_cni(
    ctx: &Run<'_>,
    cni: &CniRequest,
    staging: &tempfile::TempDir,
) -> anyhow::Result<Staged> {
    let r = ctx.request;
    let release = CniRelease::parse(&cni.version, r.arch)?;
    let expected = release.expected_sha256(cni.sha256.as_deref())?;
    let url = release.url(&r.cni_source);
    let archive_name = release.archive_name();
    let title = format!("CNI plugins v{} (linux_{})", release.version, r.arch);
    let destination = r.layout.cni_path.clone();
    let previous = ctx.receipt.components.get("cni");
    if receipt::is_current(
        previous,
        release.version.as_str(),
        r.arch.as_str(),
        &expected,
        |inside| support::hash::sha256_file(&r.layout.host(Path::new(inside))).ok(),
    ) {
        let mut installed = previous.cloned().expect("is_current needs a receipt");
        installed.url = url.to_string();
        return Ok(Staged {
            key: "cni",
            title,
            installed,
            files: Vec::new(),
            destination,
            _staging: None,
        });
    }
    let archive_path =
        download_verified(ctx, &url, &archive_name, &expected, staging).map_err(|e| {
            if e.downcast_ref::<download::FetchError>()
                .is_some_and(|f| f.is_not_found())
            {
                e.context(format!(
                    "CNI plugins v{} do not exist on {}",
                    release.version, r.cni_source
                ))
            } else {
                e
            }
        })?;
    let out = staging.path().join("plugins");
    fs::create_dir(&out).with_context(|| format!("creating {}", out.display()))?;
    let extracted = archive::extract_tgz_files(&archive_path, &out, |executable| {
        if executable {
            ROOT_EXEC
        } else {
            ROOT_FILE
        }
    })
    .with_context(|| format!("refusing {url}"))?;
    let _ = fs::remove_file(&archive_path);
    if extracted.is_empty() {
        bail!("refusing {url}: the archive holds no files");
    }
    let mut files = Vec::new();
    let mut hashes = std::collections::BTreeMap::new();
    for file in extracted {
        let inside = r.layout.cni_path.join(&file.name);
        hashes.insert(inside.display().to_string(), file.sha256);
        files.push((file.path, r.layout.host(&inside)));
    }
    Ok(Staged {
        key: "cni",
        title,
        installed: Installed {
            version: release.version.to_string(),
            arch: r.arch.to_string(),
            archive: archive_name,
            archive_sha256: expected,
            url: url.to_string(),
            files: hashes,
        },
        files,
        destination,
        _staging: None,
    })
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
        .with_context(|| format!("writing {}", path.display()))
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
/// same path cannot interleave. Also clears the stale staging directories of a killed run.
fn lock_dir(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<File>> {
    let handle = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let lock = nix::fcntl::Flock::lock(handle, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, errno)| {
            anyhow::anyhow!(
                "another install-nomad is running on {} ({errno})",
                dir.display()
            )
        })?;
    remove_stale_staging(dir);
    Ok(lock)
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_install_at_a_time_and_stale_staging_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(format!("{STAGING_PREFIX}crashed"));
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("nomad_1.0.0_linux_amd64.zip.partial"), "half").unwrap();
        let other = dir.path().join("config");
        fs::create_dir(&other).unwrap();

        let held = lock_dir(dir.path()).unwrap();
        assert!(
            !stale.exists(),
            "a killed run's staging is removed under the lock"
        );
        assert!(other.exists(), "only our staging directories are removed");
        let err = lock_dir(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("another install-nomad is running on"),
            "{err}"
        );
        drop(held);
        assert!(lock_dir(dir.path()).is_ok());
    }
}
