//! Everything before the commit: resolve the version, fetch and verify the signed sums, and
//! (unless the receipt says this very archive is installed and intact) download the archive to
//! `<staging>/<archive>.partial` hashing on the way, compare, rename, and extract the files into
//! the staging directory. Nothing outside staging directories is touched here.
//!
//! Errors name their real cause: an archive that breaks a rule is "refusing <url>: ...", but a
//! full disk while downloading or extracting says the disk is full (which filesystem, how much
//! is free), not that the archive was refused.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use url::Url;

use crate::archive::{self, ArchiveError};
use crate::cni::CniRelease;
use crate::download::{self, Downloader};
use crate::install::{short, CniRequest, Request, ROOT_EXEC, ROOT_FILE};
use crate::receipt::{self, Installed, Receipt};
use crate::release::{self, Product, Release, Version, VersionRequest};
use crate::verify;

/// Largest `index.json` accepted (HashiCorp's Consul index is a few MB).
const INDEX_LIMIT: u64 = 64 << 20;
/// Largest SHA256SUMS or signature file accepted.
const SMALL_FILE_LIMIT: u64 = 1 << 20;

/// Shared by the staging steps.
pub struct Run<'a> {
    pub request: &'a Request,
    pub downloader: Downloader,
    /// The receipt as the run found it.
    pub receipt: Receipt,
}

/// One file extracted into staging.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// Host path inside the staging directory.
    pub staged: PathBuf,
    /// Where it goes, inside the target.
    pub target: PathBuf,
    pub sha256: String,
}

/// A component resolved and, unless already installed, downloaded, verified and extracted.
#[derive(Debug)]
pub struct Staged {
    /// Receipt key: `nomad`, `consul`, `cni`.
    pub key: &'static str,
    pub title: String,
    pub installed: Installed,
    /// Empty when it is already installed.
    pub files: Vec<StagedFile>,
    /// Where the files go (inside the target), for messages.
    pub destination: PathBuf,
}

/// Resolves, verifies and (unless already installed) downloads and extracts one HashiCorp
/// product into `staging`.
pub fn stage_release(
    ctx: &Run<'_>,
    product: Product,
    request: &VersionRequest,
    staging: &Path,
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

    if let Some(installed) = already_installed(
        ctx,
        product.name,
        release.version.as_str(),
        &expected,
        &archive_url,
    ) {
        return Ok(Staged {
            key: product.name,
            title,
            installed,
            files: Vec::new(),
            destination,
        });
    }

    let archive_path = download_verified(ctx, &archive_url, &archive_name, &expected, staging)?;
    tracing::info!(
        "{archive_name} matches the signed SHA-256 {}; extracting {}",
        short(&expected),
        product.name
    );
    let staged_binary = staging.join(product.name);
    let extracted =
        archive::extract_zip_file(&archive_path, product.name, &staged_binary, ROOT_EXEC)
            .map_err(|e| archive_failure(e, &archive_url))?;
    tracing::debug!(
        "extracted {} ({}): {}",
        product.name,
        support::files::human_size(extracted.size),
        extracted.timings
    );
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
            files: [(
                binary_inside.display().to_string(),
                extracted.sha256.clone(),
            )]
            .into_iter()
            .collect(),
        },
        files: vec![StagedFile {
            staged: staged_binary,
            target: binary_inside,
            sha256: extracted.sha256,
        }],
        destination,
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
    staging: &Path,
) -> anyhow::Result<PathBuf> {
    let partial = staging.join(format!("{name}.partial"));
    let fetched = ctx.downloader.fetch_to_file(url, &partial).map_err(|e| {
        match e
            .write_error()
            .and_then(|(path, io)| support::files::disk_full(path, io))
        {
            Some(full) => anyhow::Error::new(e).context(format!("downloading {url}: {full}")),
            None => anyhow::Error::new(e),
        }
    })?;
    if !fetched.sha256.eq_ignore_ascii_case(expected) {
        bail!(
            "refusing {url}: its SHA-256 is {} but {expected} was expected ({} bytes received); nothing was extracted",
            fetched.sha256,
            fetched.size
        );
    }
    let done = staging.join(name);
    fs::rename(&partial, &done)
        .with_context(|| format!("renaming {} to {}", partial.display(), done.display()))?;
    Ok(done)
}

/// Downloads the CNI tarball, checks it against the pinned (or given) SHA-256 and extracts its
/// top-level files.
pub fn stage_cni(ctx: &Run<'_>, cni: &CniRequest, staging: &Path) -> anyhow::Result<Staged> {
    let r = ctx.request;
    let release = CniRelease::parse(&cni.version, r.arch)?;
    let expected = release.expected_sha256(cni.sha256.as_deref())?;
    let url = release.url(&r.cni_source);
    let archive_name = release.archive_name();
    let title = format!("CNI plugins v{} (linux_{})", release.version, r.arch);
    let destination = r.layout.cni_path.clone();
    if let Some(installed) =
        already_installed(ctx, "cni", release.version.as_str(), &expected, &url)
    {
        return Ok(Staged {
            key: "cni",
            title,
            installed,
            files: Vec::new(),
            destination,
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
    let out = staging.join("plugins");
    fs::create_dir(&out).with_context(|| format!("creating {}", out.display()))?;
    let extracted = archive::extract_tgz_files(&archive_path, &out, |executable| {
        if executable {
            ROOT_EXEC
        } else {
            ROOT_FILE
        }
    })
    .map_err(|e| archive_failure(e, &url))?;
    let _ = fs::remove_file(&archive_path);
    if extracted.is_empty() {
        bail!("refusing {url}: the archive holds no files");
    }
    let mut files = Vec::new();
    let mut hashes = std::collections::BTreeMap::new();
    for file in extracted {
        let inside = r.layout.cni_path.join(&file.name);
        hashes.insert(inside.display().to_string(), file.sha256.clone());
        files.push(StagedFile {
            staged: file.path,
            target: inside,
            sha256: file.sha256,
        });
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
    })
}

/// The receipt's entry for `key` when it describes exactly this archive with every file intact
/// ([`receipt::is_current`]), with the URL it is vouched for at now.
fn already_installed(
    ctx: &Run<'_>,
    key: &str,
    version: &str,
    archive_sha256: &str,
    url: &Url,
) -> Option<Installed> {
    let r = ctx.request;
    let previous = ctx.receipt.components.get(key);
    let current = receipt::is_current(
        previous,
        version,
        r.arch.as_str(),
        archive_sha256,
        |inside| support::hash::sha256_file(&r.layout.host(Path::new(inside))).ok(),
    );
    current.then(|| {
        let mut installed = previous.cloned().expect("is_current needs a receipt");
        installed.url = url.to_string();
        installed
    })
}

/// An extraction failure as the user should read it: a full disk is the disk's fault and says
/// so; anything about the archive itself refuses the URL.
fn archive_failure(error: ArchiveError, url: &Url) -> anyhow::Error {
    if let ArchiveError::Write { path, source, .. } = &error {
        if let Some(full) = support::files::disk_full(path, source) {
            return anyhow::Error::new(error).context(format!("extracting {url}: {full}"));
        }
        let text = format!("extracting {url}");
        return anyhow::Error::new(error).context(text);
    }
    anyhow::Error::new(error).context(format!("refusing {url}"))
}
