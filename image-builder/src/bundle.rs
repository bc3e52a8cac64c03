//! The rendered build directory: Packer template, provisioning script, the files the build
//! uploads, and `inputs.json` (every input and its SHA-256). Assembled in memory first, so a
//! problem with any input stops the render before a single file is written.
//!
//! ```text
//! image.pkr.hcl          the Packer template (azure or local)
//! provision.sh           the provisioning script (the same for both targets)
//! files/install-nomad    uploaded / run by the script
//! files/run-nomad
//! files/release-key.asc  only with [release] public_key
//! inputs.json            the inputs and the input hash (also marks the directory as ours)
//! ```

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Serialize;
use support::files::{write_atomic, FileSpec};

use crate::binaries::{self, RunsOn, ToolBinary};
use crate::record::Inputs;
use crate::spec::{Arch, Settings, Target};
use crate::template::{self, ForPacker, Rendered};

/// The marker and listing every rendered directory carries.
pub const INPUTS_FILE: &str = "inputs.json";

/// Everything a build directory holds, in memory.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub rendered: Rendered,
    pub install_nomad: ToolBinary,
    pub run_nomad: ToolBinary,
    pub public_key: Option<Vec<u8>>,
    pub inputs: Inputs,
    pub input_hash: String,
}

/// Reads the environment: the caller passes it in so tests and commands agree on one source.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Renders and gathers a build: the binaries are read and checked, the key read, every input
/// hashed. `spec_bytes` is the spec file as read (its hash is an input); `subscription` is the
/// subscription the build goes to, when known.
pub fn assemble(
    settings: &Settings,
    spec_bytes: &[u8],
    packer: &ForPacker,
    subscription: Option<&str>,
) -> anyhow::Result<Bundle> {
    // The binaries run where the script runs: on the image for Azure, here for `local`.
    let (binary_arch, runs_on) = match settings.target {
        Target::Azure(_) => (settings.arch, RunsOn::Image),
        Target::Local { .. } => (
            Arch::host().context("the local target needs an amd64 or arm64 machine")?,
            RunsOn::ThisMachine,
        ),
    };
    let install_nomad_path = binaries::locate(
        "install-nomad",
        "install_nomad",
        settings.install_nomad.as_deref(),
        binary_arch,
    )?;
    let run_nomad_path = binaries::locate(
        "run-nomad",
        "run_nomad",
        settings.run_nomad.as_deref(),
        binary_arch,
    )?;
    let install_nomad = binaries::load("install-nomad", &install_nomad_path, binary_arch, runs_on)?;
    let run_nomad = binaries::load("run-nomad", &run_nomad_path, binary_arch, runs_on)?;
    let public_key = match &settings.public_key {
        Some(path) => Some(std::fs::read(path).with_context(|| {
            format!(
                "failed to read the release public key {} ([release] public_key)",
                path.display()
            )
        })?),
        None => None,
    };

    let rendered = template::render(settings, packer)?;

    let mut inputs = Inputs::default();
    inputs.add("spec", display(&settings.spec_path), spec_bytes);
    inputs.add("template", "rendered", rendered.template.as_bytes());
    inputs.add("script", "rendered", rendered.script.as_bytes());
    inputs.add(
        "install-nomad",
        display(&install_nomad.path),
        &install_nomad.bytes,
    );
    inputs.add("run-nomad", display(&run_nomad.path), &run_nomad.bytes);
    if let (Some(path), Some(bytes)) = (&settings.public_key, &public_key) {
        inputs.add("public-key", display(path), bytes);
    }
    inputs.context = context(subscription);
    let input_hash = inputs.hash();

    Ok(Bundle {
        rendered,
        install_nomad,
        run_nomad,
        public_key,
        inputs,
        input_hash,
    })
}

/// Facts outside the rendered files that change what a build produces: the subscription the
/// build goes to (whichever way it was found: spec, environment, the Azure CLI, the identity).
fn context(subscription: Option<&str>) -> std::collections::BTreeMap<String, String> {
    let mut context = std::collections::BTreeMap::new();
    if let Some(sub) = subscription {
        context.insert("subscription_id".to_string(), sub.to_string());
    }
    context
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[derive(Serialize)]
struct InputsFile<'a> {
    rendered_by: String,
    input_hash: &'a str,
    inputs: &'a Inputs,
}

impl Bundle {
    /// The files of the directory: relative path, contents, mode.
    fn files(&self) -> Vec<(PathBuf, &[u8], u32)> {
        let files_dir = Path::new(template::FILES_DIR);
        let mut files = vec![
            (
                PathBuf::from(template::TEMPLATE_FILE),
                self.rendered.template.as_bytes(),
                0o644,
            ),
            (
                PathBuf::from(template::SCRIPT_FILE),
                self.rendered.script.as_bytes(),
                0o755,
            ),
            (
                files_dir.join(template::INSTALL_NOMAD_FILE),
                self.install_nomad.bytes.as_slice(),
                0o755,
            ),
            (
                files_dir.join(template::RUN_NOMAD_FILE),
                self.run_nomad.bytes.as_slice(),
                0o755,
            ),
        ];
        if let Some(key) = &self.public_key {
            files.push((
                files_dir.join(template::PUBLIC_KEY_FILE),
                key.as_slice(),
                0o644,
            ));
        }
        files
    }

    fn inputs_json(&self) -> Vec<u8> {
        let listing = InputsFile {
            rendered_by: format!("image-builder {}", env!("CARGO_PKG_VERSION")),
            input_hash: &self.input_hash,
            inputs: &self.inputs,
        };
        let mut json = serde_json::to_vec_pretty(&listing).expect("inputs serialize");
        json.push(b'\n');
        json
    }

    /// Writes every file into an existing directory, each atomically.
    pub fn write_into(&self, dir: &Path) -> anyhow::Result<()> {
        let files_dir = dir.join(template::FILES_DIR);
        std::fs::create_dir_all(&files_dir)
            .with_context(|| format!("failed to create {}", files_dir.display()))?;
        for (relative, contents, mode) in self.files() {
            write_atomic(&dir.join(relative), contents, FileSpec::mode(mode))?;
        }
        write_atomic(
            &dir.join(INPUTS_FILE),
            &self.inputs_json(),
            FileSpec::mode(0o644),
        )?;
        Ok(())
    }

    /// Writes the directory to `out` all at once: into a staging directory beside it, then a
    /// rename. An existing `out` is replaced only when it is empty or was rendered by
    /// image-builder (it has `inputs.json`); a failure leaves `out` as it was.
    pub fn publish(&self, out: &Path) -> anyhow::Result<()> {
        let parent = support::files::parent_dir(out);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("failed to create {}", parent.display()))?;
        let replace = match std::fs::read_dir(out) {
            Ok(mut entries) => {
                let empty = entries.next().is_none();
                if !empty && !out.join(INPUTS_FILE).is_file() {
                    bail!(
                        "refusing to replace {}: it is not empty and was not rendered by \
                         image-builder (no {INPUTS_FILE}); choose another --out",
                        out.display()
                    );
                }
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                return Err(e).with_context(|| format!("failed to read {}", out.display()));
            }
        };
        let staging = tempfile::Builder::new()
            .prefix(".image-builder-render.")
            .tempdir_in(parent)
            .with_context(|| {
                format!(
                    "failed to create a staging directory in {}",
                    parent.display()
                )
            })?;
        self.write_into(staging.path())?;
        if replace {
            let old = tempfile::Builder::new()
                .prefix(".image-builder-old.")
                .tempdir_in(parent)
                .with_context(|| format!("failed to create a directory in {}", parent.display()))?;
            let old_out = old.path().join("out");
            std::fs::rename(out, &old_out)
                .with_context(|| format!("failed to move the previous {} aside", out.display()))?;
            if let Err(e) = std::fs::rename(staging.path(), out) {
                // Put the previous render back: nothing half-done stays behind.
                let _ = std::fs::rename(&old_out, out);
                return Err(e)
                    .with_context(|| format!("failed to move the render into {}", out.display()));
            }
            drop(old);
        } else {
            std::fs::rename(staging.path(), out)
                .with_context(|| format!("failed to move the render into {}", out.display()))?;
        }
        let _ = staging.keep();
        support::files::sync_dir(parent)
            .with_context(|| format!("failed to sync {}", parent.display()))?;
        Ok(())
    }
}
