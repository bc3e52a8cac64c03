//! What a build finds in Azure before it runs Packer: a recorded image is read back from ARM
//! (Images_Get, GalleryImageVersions_Get) before a build is skipped on its strength, and a
//! Packer 1.6 gallery build in a build resource group publishes to that group's region
//! (ResourceGroups_Get). The same stand-in Packer as `build.rs`, with the real Packer 1.6.6's
//! `version` and `validate`.

mod common;

use std::path::{Path, PathBuf};

use common::azure::*;
use common::*;
use support::doubles::arm::{Fault, FaultKind};
use support::doubles::imds;

#[test]
fn a_recorded_image_deleted_since_is_built_again() {
    let azure = AzureDoubles::start();
    let (dir, state, packer) = recorded_gallery_build(&azure);
    azure.add_recorded_images();
    // Someone deleted the gallery version; the managed image is still there.
    azure.arm.remove_resource(&gallery_version_id());
    let again = run(&mut build_cmd(
        &azure,
        &fixture("specs/gallery.toml"),
        &packer,
        &state,
    ));
    assert!(again.ok(), "{again:?}");
    assert_eq!(builds_run(dir.path()), 2, "{again:?}");
    assert!(
        again.stderr.contains(&format!(
            "{} no longer exists (ARM answered 404 ResourceNotFound",
            gallery_version_id()
        )),
        "{again:?}"
    );
    assert!(again.stderr.contains("building again"), "{again:?}");
    assert_eq!(again.stdout, format!("{}\n", gallery_version_id()));
}

/// A gallery build recorded, then Azure holding its managed image and gallery version in
/// these provisioning states, and the same build run again: the directory (for the stand-in
/// Packer's log) and the second run.
fn build_again_with_images(managed: &str, gallery: &str) -> (tempfile::TempDir, Run) {
    let azure = AzureDoubles::start();
    let (dir, state, packer) = recorded_gallery_build(&azure);
    azure
        .arm
        .add_image(&managed_image_id(), "westeurope", managed);
    azure
        .arm
        .add_image(&gallery_version_id(), "westeurope", gallery);
    let out = run(&mut build_cmd(
        &azure,
        &fixture("specs/gallery.toml"),
        &packer,
        &state,
    ));
    (dir, out)
}

#[test]
fn a_recorded_image_in_a_failed_state_is_neither_trusted_nor_overwritten() {
    let (dir, out) = build_again_with_images("Succeeded", "Failed");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains(&format!(
            "the recorded image {} exists but is in provisioning state Failed",
            gallery_version_id()
        )),
        "{out:?}"
    );
    assert!(out.stderr.contains("--force"), "{out:?}");
    assert_eq!(builds_run(dir.path()), 1);
}

/// The gallery spec, built in its resource group with no `replication_regions`.
fn gallery_spec_without_regions(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fixture("specs/gallery.toml"))
        .unwrap()
        .replace(
            "replication_regions = [\"westeurope\", \"northeurope\"]\n",
            "",
        );
    assert!(!text.contains("replication_regions"));
    let spec = dir.join("gallery-no-regions.toml");
    std::fs::write(&spec, text).unwrap();
    spec
}

/// Packer 1.6 needs `replication_regions`; in a build resource group the build region is the
/// group's, which `build` reads from ARM (ResourceGroups_Get) and publishes to, as the azure
/// plugin would by default. The real Packer 1.6.6 validates the template it renders.
#[test]
fn a_gallery_without_regions_publishes_to_the_build_groups_region() {
    let azure = AzureDoubles::start();
    azure.arm.serve_subscription(SUB);
    azure
        .arm
        .add_resource_group("nomad-image-builds", "swedencentral", serde_json::json!({}));
    let dir = tempfile::tempdir().unwrap();
    let spec = gallery_spec_without_regions(dir.path());
    let kept = dir.path().join("rendered.pkr.hcl");
    let body = format!(
        "cp \"$dir/image.pkr.hcl\" {}\n{}",
        support::shell::quote(kept.to_str().unwrap()),
        azure_success_body()
    );
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &body);
    let out = run(&mut build_cmd(
        &azure,
        &spec,
        &packer,
        &dir.path().join("state"),
    ));
    assert!(out.ok(), "{out:?}");
    let template = std::fs::read_to_string(&kept).unwrap();
    assert!(
        template.contains("replication_regions = [\"swedencentral\"]"),
        "{template}"
    );
    assert!(
        out.stderr
            .contains("the region of resource group nomad-image-builds"),
        "{out:?}"
    );
    assert!(
        azure
            .arm
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path.ends_with("/resourcegroups/nomad-image-builds")),
        "{:?}",
        azure.arm.requests()
    );
}

#[test]
fn a_missing_build_group_is_named_and_nothing_is_built() {
    let azure = AzureDoubles::start();
    azure.arm.serve_subscription(SUB);
    let dir = tempfile::tempdir().unwrap();
    let spec = gallery_spec_without_regions(dir.path());
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let out = run(&mut build_cmd(
        &azure,
        &spec,
        &packer,
        &dir.path().join("state"),
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(
            "failed to find the region of build_resource_group_name \"nomad-image-builds\""
        ),
        "{out:?}"
    );
    assert!(out.stderr.contains("ResourceGroupNotFound"), "{out:?}");
    assert_eq!(builds_run(dir.path()), 0);
}

#[test]
fn a_managed_image_in_the_state_microsofts_example_shows_is_trusted() {
    // ComputeRP 2024-11-01 `Image_Get.json` answers `"provisioningState": "created"` for a
    // finished managed image; the gallery version's enum says `Succeeded`.
    let (dir, out) = build_again_with_images("created", "Succeeded");
    assert!(out.ok(), "{out:?}");
    assert!(out.stderr.contains("were built already"), "{out:?}");
    assert_eq!(builds_run(dir.path()), 1);
}

#[test]
fn a_managed_image_still_being_created_is_neither_trusted_nor_overwritten() {
    // Image_CreateFromAVM.json shows `Creating` while the capture runs.
    let (dir, out) = build_again_with_images("Creating", "Succeeded");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "the recorded image {} exists but is in provisioning state Creating",
            managed_image_id()
        )),
        "{out:?}"
    );
    assert_eq!(builds_run(dir.path()), 1);
}

#[test]
fn arm_throttling_while_checking_is_retried() {
    let azure = AzureDoubles::start();
    let (dir, state, packer) = recorded_gallery_build(&azure);
    azure.add_recorded_images();
    azure.arm.inject(Fault::any(FaultKind::Throttle {
        retry_after_secs: 0,
    }));
    azure.arm.inject(Fault::any(FaultKind::ServerError(503)));
    let out = run(&mut build_cmd(
        &azure,
        &fixture("specs/gallery.toml"),
        &packer,
        &state,
    ));
    assert!(out.ok(), "{out:?}");
    assert!(out.stderr.contains("were built already"), "{out:?}");
    assert_eq!(builds_run(dir.path()), 1);
    assert_eq!(azure.arm.requests().len(), 4, "two retried, two answered");
}

#[test]
fn a_record_that_cannot_be_checked_is_an_error_not_a_skip() {
    let azure = AzureDoubles::start();
    let (dir, state, packer) = recorded_gallery_build(&azure);
    azure.add_recorded_images();
    // The identity gets a token ARM refuses (another tenant's, say).
    azure.imds.set_fallback(imds::Reply::Body {
        status: 200,
        body: serde_json::json!({
            "access_token": "not-this-tenants", "expires_on": "4102444800",
            "expires_in": "3599", "resource": "https://management.azure.com/",
            "token_type": "Bearer"
        })
        .to_string(),
    });
    let out = run(&mut build_cmd(
        &azure,
        &fixture("specs/gallery.toml"),
        &packer,
        &state,
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr
            .contains("could not check that the recorded image"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("401 InvalidAuthenticationToken"),
        "{out:?}"
    );
    assert_eq!(builds_run(dir.path()), 1);
}
