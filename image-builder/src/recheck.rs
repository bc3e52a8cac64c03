//! A build record is a claim that an image exists; before a build is skipped on its strength,
//! the claim is checked. For Azure, every image the record names (the gallery image version and
//! the managed image) is read back from ARM with the build's credential; for the local target,
//! the root must still hold install-nomad's receipt for the recorded Nomad, with every file it
//! lists intact.

use std::path::Path;

use serde::Deserialize;

use crate::azure::{ArmReader, AzureError, Presence};
use crate::record::BuildRecord;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Everything the record names is there: skip the build.
    Present,
    /// Something is gone: build again. Each line says what and why.
    Gone(Vec<String>),
}

/// Why a recorded Azure image can neither be trusted nor rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RecheckError {
    #[error("could not check that the recorded image {id} still exists")]
    Azure {
        id: String,
        #[source]
        source: AzureError,
    },
    #[error(
        "the recorded image {id} exists but is in provisioning state {state}: delete it (or wait \
         for Azure), or build again with --force to replace it"
    )]
    NotUsable { id: String, state: String },
}

/// Checks the Azure images of a record.
pub fn azure(record: &BuildRecord, arm: &ArmReader) -> Result<Verdict, RecheckError> {
    let mut ids: Vec<&str> = Vec::new();
    for id in [
        record.gallery_image_version_id.as_deref(),
        record.managed_image_id.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.is_empty() {
        ids.push(record.image_id.as_str());
    }
    let mut gone = Vec::new();
    for id in ids {
        let presence = arm.image(id).map_err(|source| RecheckError::Azure {
            id: id.to_string(),
            source,
        })?;
        match presence {
            Presence::Missing { code, message } => gone.push(format!(
                "{id} no longer exists (ARM answered 404 {code}: {message})"
            )),
            // A version being deleted is as good as gone; one that failed, or is still being
            // created or replicated, cannot be booted and must not be overwritten silently.
            Presence::Present {
                provisioning_state: Some(state),
            } if state.eq_ignore_ascii_case("Deleting") => {
                gone.push(format!("{id} is being deleted"))
            }
            Presence::Present {
                provisioning_state: Some(state),
            } if !is_finished(&state) => {
                return Err(RecheckError::NotUsable {
                    id: id.to_string(),
                    state,
                })
            }
            Presence::Present { .. } => {}
        }
    }
    Ok(if gone.is_empty() {
        Verdict::Present
    } else {
        Verdict::Gone(gone)
    })
}

/// Whether a provisioning state means the image is finished and bootable. A gallery version's
/// state is the `GalleryProvisioningState` enum, finished at `Succeeded`; a managed image's is a
/// free string that Microsoft's own `Image_Get.json` example (ComputeRP 2024-11-01) shows as
/// `created`, so both words count. Anything else (Creating, Updating, Failed, Migrating, a word
/// we have never seen) is not trusted.
fn is_finished(state: &str) -> bool {
    ["Succeeded", "Created"]
        .iter()
        .any(|done| state.eq_ignore_ascii_case(done))
}

/// install-nomad's receipt, as far as this check reads it (`<root>/opt/nomad/.install-nomad.json`:
/// `components.<name>.{version, files: {path in the target: sha256}}`).
#[derive(Debug, Deserialize)]
struct Receipt {
    #[serde(default)]
    components: std::collections::BTreeMap<String, Component>,
}

#[derive(Debug, Deserialize)]
struct Component {
    version: String,
    #[serde(default)]
    files: std::collections::BTreeMap<String, String>,
}

/// Where install-nomad keeps its receipt, inside the target.
pub const RECEIPT: &str = "opt/nomad/.install-nomad.json";

/// Checks a local-target record: the root, its receipt, and the files the receipt lists for the
/// recorded Nomad.
pub fn local(record: &BuildRecord) -> Verdict {
    let root = Path::new(&record.image_id);
    if !root.is_dir() {
        return Verdict::Gone(vec![format!(
            "the root {} no longer exists",
            root.display()
        )]);
    }
    let receipt_path = root.join(RECEIPT);
    let receipt: Receipt = match std::fs::read(&receipt_path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(receipt) => receipt,
        Err(e) => {
            return Verdict::Gone(vec![format!(
                "install-nomad's receipt {} cannot be read: {e}",
                receipt_path.display()
            )])
        }
    };
    let Some(nomad) = receipt.components.get("nomad") else {
        return Verdict::Gone(vec![format!(
            "install-nomad's receipt {} lists no Nomad",
            receipt_path.display()
        )]);
    };
    if nomad.version != record.nomad_version {
        return Verdict::Gone(vec![format!(
            "the root holds Nomad {} now, not the recorded {}",
            nomad.version, record.nomad_version
        )]);
    }
    let mut gone = Vec::new();
    for (inside, sha256) in &nomad.files {
        let path = root.join(inside.trim_start_matches('/'));
        match support::hash::sha256_file(&path) {
            Ok(found) if found.eq_ignore_ascii_case(sha256) => {}
            Ok(_) => gone.push(format!("{} was changed since the build", path.display())),
            Err(_) => gone.push(format!("{} is missing", path.display())),
        }
    }
    if gone.is_empty() {
        Verdict::Present
    } else {
        Verdict::Gone(gone)
    }
}
