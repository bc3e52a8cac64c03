//! The three commands, end to end: `render`, `validate` and `build` (render, validate, re-check
//! a recorded image or bake, record). Everything here is orchestration at the edge; the
//! decisions live in the modules it calls.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use support::files::{write_atomic, FileSpec};

use serde::Serialize;
use support::azure_auth::Env;

use crate::azure::{self, ArmReader};
use crate::bundle::{self, Bundle};
use crate::cli::{BuildArgs, RenderArgs, SpecArgs, ValidateArgs};
use crate::machine_readable::{readable_lines, severity, Event, Severity, Transcript};
use crate::packer::{Limits, Packer, PackerError, PackerVersion};
use crate::recheck::{self, Verdict};
use crate::record::{BuildRecord, PackerManifest, RecordStore};
use crate::spec::{self, AuthMode, Placement, Settings, SpecError, Target, CLIENT_SECRET_ENV};
use crate::template::{self, ForPacker};

/// The Packer variable that carries the input hash into the template (via `PKR_VAR_...`).
const INPUT_HASH_VAR: &str = "image_builder_input_hash";
/// The Packer variable that carries the effective subscription, when the spec names none.
const SUBSCRIPTION_VAR: &str = "subscription_id";

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The spec file read, parsed and resolved.
struct Loaded {
    bytes: Vec<u8>,
    settings: Settings,
}

fn load(args: &SpecArgs) -> anyhow::Result<Loaded> {
    let path = &args.config;
    let bytes = std::fs::read(path)
        .with_context(|| format!("failed to read the image spec {}", path.display()))?;
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("the image spec {} is not UTF-8", path.display()))?;
    let settings = spec::parse(text, path)?.resolve(path, &args.overrides())?;
    Ok(Loaded { bytes, settings })
}

/// The subscription `render` and `validate` can know without asking anyone (they stay
/// offline): the spec's, or `ARM_SUBSCRIPTION_ID` with client-secret auth.
fn offline_subscription(settings: &Settings) -> Option<String> {
    match &settings.target {
        Target::Azure(azure) => {
            azure::offline_subscription(azure, &Env::from_process()).map(|s| s.0)
        }
        Target::Local { .. } => None,
    }
}

/// Packer variables, passed through the environment (`PKR_VAR_<name>`), never the command line.
fn packer_vars(
    settings: &Settings,
    bundle: &Bundle,
    subscription: Option<&str>,
) -> Vec<(String, String)> {
    let mut vars = vec![(INPUT_HASH_VAR.to_string(), bundle.input_hash.clone())];
    // The template declares `subscription_id` only when the spec does not name one.
    if let (Target::Azure(azure), Some(sub)) = (&settings.target, subscription) {
        if azure.subscription_id.is_none() {
            vars.push((SUBSCRIPTION_VAR.to_string(), sub.to_string()));
        }
    }
    vars
}

/// What `render --json` prints.
#[derive(Serialize)]
struct RenderReport<'a> {
    out: String,
    target: &'static str,
    packer_version: String,
    input_hash: &'a str,
    inputs: &'a crate::record::Inputs,
}

/// `image-builder render`.
pub fn render(args: &RenderArgs) -> anyhow::Result<()> {
    let loaded = load(&args.spec)?;
    let version = match &args.packer_version {
        Some(text) => PackerVersion::parse(text)
            .with_context(|| format!("--packer-version {text:?} is not a version like 1.6.6"))?,
        None => match Packer::locate(&args.packer.packer_bin) {
            Ok(packer) => packer.version,
            Err(PackerError::NotFound { bin }) => {
                // Rendering needs no Packer; assume a current one and say so.
                tracing::warn!(
                    "Packer not found at {}; rendering for Packer 1.7+ (with required_plugins). \
                     Pass --packer-version to render for another version",
                    bin.display()
                );
                PackerVersion {
                    major: 1,
                    minor: 7,
                    patch: 0,
                }
            }
            Err(e) => return Err(e.into()),
        },
    };
    let for_packer = ForPacker::decide(&loaded.settings, version)?;
    let subscription = offline_subscription(&loaded.settings);
    let bundle = bundle::assemble(
        &loaded.settings,
        &loaded.bytes,
        &for_packer,
        subscription.as_deref(),
    )?;
    bundle.publish(&args.out)?;
    tracing::info!(
        "rendered the {} template for Packer {version} into {} (inputs {})",
        loaded.settings.target.kind(),
        args.out.display(),
        bundle.input_hash
    );
    if args.json {
        print_json(&RenderReport {
            out: args.out.display().to_string(),
            target: loaded.settings.target.kind().as_str(),
            packer_version: version.to_string(),
            input_hash: &bundle.input_hash,
            inputs: &bundle.inputs,
        });
    }
    Ok(())
}

fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialize")
    );
}

/// Renders into a fresh private directory under `parent` (or the system temp directory).
fn work_dir(bundle: &Bundle, parent: Option<&Path>) -> anyhow::Result<tempfile::TempDir> {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix(crate::record::WORK_DIR_PREFIX);
        b
    };
    let dir = match parent {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .context("failed to create a working directory for Packer")?;
    bundle.write_into(dir.path())?;
    Ok(dir)
}

fn locate_packer(bin: &Path) -> anyhow::Result<Packer> {
    let packer = Packer::locate(bin)?;
    tracing::debug!("using Packer {} at {}", packer.version, bin.display());
    Ok(packer)
}

fn init_and_validate(
    packer: &Packer,
    for_packer: &ForPacker,
    dir: &Path,
    vars: &[(String, String)],
) -> anyhow::Result<()> {
    if for_packer.plugins {
        tracing::info!("packer init: installing the azure plugin");
        packer.init(dir)?;
    }
    packer.validate(dir, vars)?;
    Ok(())
}

/// What `validate --json` prints, for a valid template and a refused one alike.
#[derive(Serialize, Default)]
struct ValidateReport {
    config: String,
    valid: bool,
    target: Option<&'static str>,
    packer_version: Option<String>,
    input_hash: Option<String>,
    /// Spec fields refused before Packer ran: `field: reason`.
    problems: Vec<String>,
    /// Packer's own error lines, when `packer validate` refused the template.
    packer_errors: Option<String>,
    /// Any other error, as image-builder reports it.
    error: Option<String>,
}

/// `image-builder validate`.
pub fn validate(args: &ValidateArgs) -> anyhow::Result<()> {
    let mut report = ValidateReport {
        config: args.spec.config.display().to_string(),
        ..ValidateReport::default()
    };
    let result = validate_into(args, &mut report);
    if let Err(error) = &result {
        if let Some(SpecError::Invalid { problems, .. }) = error.downcast_ref::<SpecError>() {
            report.problems = problems.iter().map(ToString::to_string).collect();
        } else if let Some(PackerError::Invalid { report: lines, .. }) =
            error.downcast_ref::<PackerError>()
        {
            report.packer_errors = Some(lines.clone());
        } else {
            report.error = Some(format!("{error:#}"));
        }
    }
    report.valid = result.is_ok();
    if args.json {
        print_json(&report);
    }
    result
}

fn validate_into(args: &ValidateArgs, report: &mut ValidateReport) -> anyhow::Result<()> {
    let loaded = load(&args.spec)?;
    report.target = Some(loaded.settings.target.kind().as_str());
    let packer = locate_packer(&args.packer.packer_bin)?;
    report.packer_version = Some(packer.version.to_string());
    let for_packer = ForPacker::decide(&loaded.settings, packer.version)?;
    let subscription = offline_subscription(&loaded.settings);
    let bundle = bundle::assemble(
        &loaded.settings,
        &loaded.bytes,
        &for_packer,
        subscription.as_deref(),
    )?;
    report.input_hash = Some(bundle.input_hash.clone());
    let dir = work_dir(&bundle, None)?;
    let vars = packer_vars(&loaded.settings, &bundle, subscription.as_deref());
    init_and_validate(&packer, &for_packer, dir.path(), &vars)?;
    tracing::info!(
        "{}: the {} template is valid for Packer {}",
        args.spec.config.display(),
        loaded.settings.target.kind(),
        packer.version
    );
    Ok(())
}

/// Client-secret auth reads the service principal from the environment: check it is all there
/// before starting a build that would fail after minutes. Only names are reported, never values.
fn check_credentials(settings: &Settings, env: bundle::Env<'_>) -> anyhow::Result<()> {
    let Target::Azure(azure) = &settings.target else {
        return Ok(());
    };
    if azure.auth != AuthMode::ClientSecret {
        return Ok(());
    }
    let missing: Vec<&str> = CLIENT_SECRET_ENV
        .iter()
        .copied()
        .filter(|name| !(*name == "ARM_SUBSCRIPTION_ID" && azure.subscription_id.is_some()))
        .filter(|name| env(name).is_none_or(|v| v.is_empty()))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{}: auth = \"client_secret\" reads the service principal from the environment, but \
             {} {} not set",
            settings.spec_path.display(),
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        );
    }
    Ok(())
}

/// A fresh root for the local target has what a base image has: `/etc/passwd` and
/// `/etc/group` with root in them (install-nomad adds its user there).
pub fn prepare_local_root(root: &Path) -> anyhow::Result<()> {
    let etc = root.join("etc");
    std::fs::create_dir_all(&etc)
        .with_context(|| format!("failed to create the local root {}", etc.display()))?;
    for (name, line) in [
        ("passwd", "root:x:0:0:root:/root:/bin/sh\n"),
        ("group", "root:x:0:\n"),
    ] {
        let path = etc.join(name);
        if !path.exists() {
            write_atomic(&path, line.as_bytes(), FileSpec::mode(0o644))?;
        }
    }
    Ok(())
}

/// Shows one event of the build stream as a readable progress line.
fn show(event: &Event) {
    match event {
        Event::Ui { level, text } => {
            for line in readable_lines(text) {
                match severity(*level, line) {
                    Severity::Debug => tracing::debug!("{line}"),
                    Severity::Info => tracing::info!("{line}"),
                    Severity::Warn | Severity::Error => tracing::warn!("{line}"),
                }
            }
        }
        Event::BuildError { target, message } => {
            tracing::error!("{target}: {}", message.trim())
        }
        Event::Artifact { .. } | Event::ArtifactCount { .. } | Event::ErrorCount(_) => {}
        Event::Other(line) => tracing::debug!("packer: {} {:?}", line.kind, line.data),
    }
}

/// What `build --json` prints: the record, and whether this run built it or found it.
#[derive(Serialize)]
struct BuildReport<'a> {
    /// True when these inputs were built before and the image is still there.
    skipped: bool,
    record_path: String,
    #[serde(flatten)]
    record: &'a BuildRecord,
}

fn report_built(record: &BuildRecord, record_path: &Path, skipped: bool, json: bool) {
    if json {
        print_json(&BuildReport {
            skipped,
            record_path: record_path.display().to_string(),
            record,
        });
    } else {
        println!("{}", record.image_id);
    }
}

/// Is the recorded image still there? Azure: read back from ARM with the build's credential.
fn recheck(
    settings: &Settings,
    record: &BuildRecord,
    endpoints: &azure::Endpoints,
) -> anyhow::Result<Verdict> {
    match &settings.target {
        Target::Local { .. } => Ok(recheck::local(record)),
        Target::Azure(azure) => {
            let method =
                azure::credential(azure.auth, &Env::from_process(), &endpoints.az_program)?;
            let arm = ArmReader::new(method, endpoints)?;
            tracing::debug!(
                "checking the recorded image {} with {}",
                record.image_id,
                arm.describe()
            );
            Ok(recheck::azure(record, &arm)?)
        }
    }
}

/// Packer 1.6 needs a gallery destination's `replication_regions` listed, and the azure plugin
/// defaults it to the build region. With a `location` that region is known offline; inside a
/// `build_resource_group_name` it is the group's, which only ARM knows: `build` asks
/// (ResourceGroups_Get, with the build's credential) and publishes there, as the plugin would.
/// `render` and `validate` stay offline and ask for the list instead.
fn fill_in_build_group_region(
    settings: &mut Settings,
    packer: PackerVersion,
    subscription: &str,
    endpoints: &azure::Endpoints,
) -> anyhow::Result<()> {
    let Target::Azure(azure) = &mut settings.target else {
        return Ok(());
    };
    let Placement::BuildResourceGroup(group) = &azure.placement else {
        return Ok(());
    };
    let Some(gallery) = azure.gallery.as_mut() else {
        return Ok(());
    };
    if packer.needs_plugin_block()
        || !gallery.replication_regions.is_empty()
        || !gallery.target_region.is_empty()
    {
        return Ok(());
    }
    let method = azure::credential(azure.auth, &Env::from_process(), &endpoints.az_program)?;
    let arm = ArmReader::new(method, endpoints)?;
    let location = arm
        .resource_group_location(subscription, group)
        .with_context(|| {
            format!(
                "failed to find the region of build_resource_group_name {group:?}, which Packer \
                 {packer} needs as the gallery's replication_regions (or list them in \
                 [azure.gallery])"
            )
        })?;
    tracing::info!(
        "publishing the gallery version to {location}, the region of resource group {group} \
         (replication_regions not set)"
    );
    gallery.replication_regions = vec![location];
    Ok(())
}

/// `image-builder build`.
pub fn build(args: &BuildArgs) -> anyhow::Result<()> {
    let mut loaded = load(&args.spec)?;
    let packer = locate_packer(&args.packer.packer_bin)?;
    check_credentials(&loaded.settings, &process_env)?;
    let endpoints = args.azure.endpoints();
    let subscription = match &loaded.settings.target {
        Target::Azure(azure) => {
            let (subscription, source) =
                azure::effective_subscription(azure, &Env::from_process(), &endpoints)
                    .context("failed to find the subscription to build in")?;
            tracing::info!(
                "building in subscription {subscription} ({})",
                source.describe()
            );
            Some(subscription)
        }
        Target::Local { .. } => None,
    };
    if let Some(subscription) = &subscription {
        fill_in_build_group_region(
            &mut loaded.settings,
            packer.version,
            subscription,
            &endpoints,
        )?;
    }
    let settings = &loaded.settings;
    let for_packer = ForPacker::decide(settings, packer.version)?;
    let bundle = bundle::assemble(
        settings,
        &loaded.bytes,
        &for_packer,
        subscription.as_deref(),
    )?;
    let hash = bundle.input_hash.clone();

    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&args.spec.config));
    let store = RecordStore::open(&state_dir)?;
    if !args.force {
        if let Some(record) = store.find(&hash)? {
            let record_path = store.record_path(&hash);
            match recheck(settings, &record, &endpoints)? {
                Verdict::Present => {
                    tracing::info!(
                        "these inputs ({hash}) were built already (record {}) and {} is still \
                         there: skipping the build; --force builds again",
                        record_path.display(),
                        record.image_id
                    );
                    report_built(&record, &record_path, true, args.json);
                    return Ok(());
                }
                Verdict::Gone(reasons) => {
                    tracing::warn!(
                        "these inputs ({hash}) were built already (record {}), but {}: building \
                         again",
                        record_path.display(),
                        reasons.join("; ")
                    );
                }
            }
        }
    }

    if let Target::Local { root } = &settings.target {
        prepare_local_root(root)?;
    }
    let work = work_dir(&bundle, Some(&state_dir))?;
    let vars = packer_vars(settings, &bundle, subscription.as_deref());
    init_and_validate(&packer, &for_packer, work.path(), &vars)?;

    tracing::info!(
        "building the {} image (Nomad {}, inputs {hash}) with Packer {}",
        settings.target.kind(),
        settings.nomad_version,
        packer.version
    );
    let limits = Limits {
        timeout: args.timeout,
        cleanup_grace: args.cleanup_grace,
    };
    let transcript = packer
        .build(work.path(), &vars, args.force, limits, &mut show)
        .with_context(|| {
            format!(
                "failed to bake the {} image of {}",
                settings.target.kind(),
                args.spec.config.display()
            )
        })?;

    let manifest_path = work.path().join(template::MANIFEST_FILE);
    let manifest_bytes = std::fs::read(&manifest_path).with_context(|| {
        format!(
            "Packer finished but wrote no manifest at {}",
            manifest_path.display()
        )
    })?;
    let manifest = PackerManifest::parse(&manifest_bytes, &manifest_path)?;
    let built = manifest.this_build(&manifest_path, &hash)?;
    let record = make_record(
        settings,
        &packer,
        &bundle,
        built,
        &transcript,
        subscription.as_deref(),
    )?;
    let record_path = store.save(&record, &manifest_bytes)?;
    tracing::info!(
        "built {}; record {}",
        record.image_id,
        record_path.display()
    );
    report_built(&record, &record_path, false, args.json);
    Ok(())
}

fn make_record(
    settings: &Settings,
    packer: &Packer,
    bundle: &Bundle,
    built: &crate::record::ManifestBuild,
    transcript: &Transcript,
    subscription: Option<&str>,
) -> anyhow::Result<BuildRecord> {
    let (image_id, managed_image_id, gallery_image_version_id) = match &settings.target {
        Target::Local { root } => {
            let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.clone());
            (root.display().to_string(), None, None)
        }
        Target::Azure(azure) => {
            // The layout of packer-plugin-azure's Artifact.String(); the manifest's
            // artifact_id is the managed image id, or the gallery version's without one.
            let artifact = transcript.artifacts.first();
            let managed = azure.managed_image.as_ref().map(|_| {
                artifact
                    .and_then(|a| a.described("ManagedImageId"))
                    .map(str::to_string)
                    .unwrap_or_else(|| built.artifact_id.clone())
            });
            let gallery = azure.gallery.as_ref().and_then(|gallery| {
                artifact
                    .and_then(|a| a.described("ManagedImageSharedImageGalleryId"))
                    .map(str::to_string)
                    .or_else(|| {
                        (azure.managed_image.is_none() && built.artifact_id.starts_with('/'))
                            .then(|| built.artifact_id.clone())
                    })
                    .or_else(|| {
                        let subscription = gallery.subscription.as_deref().or(subscription)?;
                        Some(gallery_version_id(subscription, gallery))
                    })
            });
            let image_id = match (&gallery, &managed) {
                (Some(id), _) | (None, Some(id)) => id.clone(),
                (None, None) => bail!(
                    "Packer finished but reported no image id (manifest artifact {:?})",
                    built.artifact_id
                ),
            };
            (image_id, managed, gallery)
        }
    };
    Ok(BuildRecord {
        input_hash: bundle.input_hash.clone(),
        target: settings.target.kind().to_string(),
        image_id,
        artifact_id: built.artifact_id.clone(),
        managed_image_id,
        gallery_image_version_id,
        nomad_version: settings.nomad_version.clone(),
        consul_version: settings.consul_version.clone(),
        cni_version: settings.cni_version.clone(),
        arch: settings.arch.to_string(),
        packer_version: packer.version.to_string(),
        packer_run_uuid: built.packer_run_uuid.clone(),
        build_time: built.build_time,
        inputs: bundle.inputs.clone(),
        manifest: RecordStore::manifest_file_name(&bundle.input_hash),
    })
}

/// The ARM id of a gallery image version.
/// Source: https://learn.microsoft.com/rest/api/compute/gallery-image-versions/get
fn gallery_version_id(subscription: &str, gallery: &spec::GallerySpec) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{}/providers/Microsoft.Compute/galleries/{}/images/{}/versions/{}",
        gallery.resource_group, gallery.gallery_name, gallery.image_name, gallery.image_version
    )
}

/// The default state directory for a spec.
pub fn default_state_dir(config: &Path) -> PathBuf {
    support::files::parent_dir(config).join(".image-builder")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_secret_auth_names_every_missing_variable_and_no_value() {
        let path = Path::new("/s/image.toml");
        let spec = spec::parse(
            "nomad_version = \"1.9.3\"\n[azure]\nauth = \"client_secret\"\nlocation = \"x\"\n\
             managed_image_name = \"n\"\nmanaged_image_resource_group_name = \"g\"\n",
            path,
        )
        .unwrap();
        let settings = spec.resolve(path, &Default::default()).unwrap();
        let env = |name: &str| (name == "ARM_CLIENT_SECRET").then(|| "hunter2".to_string());
        let err = check_credentials(&settings, &env).unwrap_err().to_string();
        assert!(
            err.contains("ARM_CLIENT_ID, ARM_TENANT_ID, ARM_SUBSCRIPTION_ID are not set"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let all = |_: &str| Some("x".to_string());
        assert!(check_credentials(&settings, &all).is_ok());
    }

    #[test]
    fn local_root_is_seeded_once() {
        let dir = tempfile::tempdir().unwrap();
        prepare_local_root(dir.path()).unwrap();
        let passwd = dir.path().join("etc/passwd");
        assert_eq!(
            std::fs::read_to_string(&passwd).unwrap(),
            "root:x:0:0:root:/root:/bin/sh\n"
        );
        std::fs::write(
            &passwd,
            "root:x:0:0::/root:/bin/sh\nnomad:x:999:999::/:/usr/sbin/nologin\n",
        )
        .unwrap();
        prepare_local_root(dir.path()).unwrap();
        assert!(std::fs::read_to_string(&passwd).unwrap().contains("nomad"));
    }

    #[test]
    fn gallery_version_ids_follow_the_arm_layout() {
        let gallery = spec::GallerySpec {
            subscription: None,
            resource_group: "rg".into(),
            gallery_name: "gal".into(),
            image_name: "nomad".into(),
            image_version: "1.9.3".into(),
            replication_regions: vec![],
            target_region: vec![],
        };
        assert_eq!(
            gallery_version_id("sub", &gallery),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Compute/galleries/gal/images/nomad/versions/1.9.3"
        );
    }
}
