//! `image-builder validate` against the real Packer (Debian's 1.6.6, installed by `.ci/run`):
//! the rendered Azure template passes `packer validate` for a managed image, gallery
//! destinations, every auth mode and a Docker client image; what Packer 1.6 cannot build
//! (arm64, gallery-only, `target_region`, a gallery in a build resource group without regions)
//! is refused before Packer runs, naming the field; `--json` reports both. azure-arm's
//! validation needs no credentials and no network, so these tests stay offline.

mod common;

use common::*;

fn validate(spec: &str) -> Run {
    validate_file(&fixture(spec))
}

fn validate_file(spec: &std::path::Path) -> Run {
    let mut cmd = image_builder();
    cmd.args(["validate", "--config"]).arg(spec);
    with_tool_bins(&mut cmd);
    run(&mut cmd)
}

fn assert_valid(spec: &str) {
    let out = validate(spec);
    assert!(out.ok(), "{spec}: {out:?}");
    assert!(
        out.stderr
            .contains("the azure template is valid for Packer"),
        "{out:?}"
    );
}

#[test]
fn managed_image_with_hostile_tags_validates() {
    assert_valid("specs/managed-image.toml");
}

#[test]
fn gallery_destination_validates() {
    assert_valid("specs/gallery.toml");
}

#[test]
fn client_secret_auth_validates_without_credentials() {
    // validate needs no credentials: ARM_* are unset here (image_builder() removes them).
    assert_valid("specs/client-secret.toml");
}

#[test]
fn azure_cli_auth_validates() {
    assert_valid("specs/cli-auth.toml");
}

#[test]
fn packer_rejections_are_reported_with_packers_own_words() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("specs/cli-auth.toml"))
        .unwrap()
        .replace(
            "managed_image_name = \"nomad-1.10.5\"",
            "managed_image_name = \"nomad 1.10.5!\"",
        );
    let spec = write_spec(dir.path(), "image.toml", &text);
    let out = validate_file(&spec);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("`packer validate` rejected the template"),
        "{out:?}"
    );
    // Packer's message (unescaped from the machine-readable stream) names the setting.
    assert!(out.stderr.contains("managed_image_name"), "{out:?}");
}

#[test]
fn the_local_template_validates_too() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut cmd = image_builder();
    cmd.args(["validate", "--target", "local", "--root"])
        .arg(&root)
        .arg("--config")
        .arg(fixture("specs/cli-auth.toml"));
    with_tool_bins(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.ok(), "{out:?}");
    assert!(
        out.stderr.contains("the local template is valid"),
        "{out:?}"
    );
    assert!(!root.exists(), "validate must not touch the local root");
}

#[test]
fn the_documented_example_validates() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/image.toml");
    let mut cmd = image_builder();
    cmd.args(["validate", "--config"]).arg(&example);
    with_tool_bins(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.ok(), "{out:?}");
}

#[test]
fn a_gallery_without_replication_regions_validates() {
    // Packer 1.6.6 itself requires replication_regions; image-builder defaults them to the
    // build region (the location), as the azure plugin documents for its default.
    assert_valid("specs/gallery-default-region.toml");
}

#[test]
fn a_docker_client_image_under_supervisor_validates() {
    assert_valid("specs/docker-client.toml");
}

#[test]
fn managed_identity_without_a_subscription_validates() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("specs/gallery.toml"))
        .unwrap()
        .replace(
            "subscription_id = \"11111111-2222-3333-4444-555555555555\"\n",
            "",
        );
    let spec = write_spec(dir.path(), "image.toml", &text);
    let out = validate_file(&spec);
    assert!(out.ok(), "{out:?}");
}

/// Runs `validate --json` on spec text with the real Packer 1.6.6.
fn validate_json(dir: &std::path::Path, text: &str, arch: &str) -> (Run, serde_json::Value) {
    let spec = write_spec(dir, "image.toml", text);
    let mut cmd = image_builder();
    cmd.args(["validate", "--json", "--config"]).arg(&spec);
    with_stub_bins(&mut cmd, dir, arch);
    let out = run(&mut cmd);
    let report = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("validate --json printed no JSON ({e}): {out:?}"));
    (out, report)
}

#[test]
fn arm64_is_refused_on_packer_1_6_before_packer_runs_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("specs/arm64-gallery.toml")).unwrap();
    let (out, report) = validate_json(dir.path(), &text, "arm64");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(report["valid"], false);
    assert_eq!(report["packer_version"], "1.6.6");
    let problems: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems[0].starts_with(
            "arch: arm64 images must be published to a Compute Gallery without a managed image \
             (Azure cannot capture a managed image from an Arm64 VM); Packer 1.6.6 bundles the \
             azure-arm builder of Packer 1.6, which cannot do this; use Packer 1.7 or later"
        ),
        "{problems:?}"
    );
    // target_region is a plugin setting too.
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("azure.gallery.target_region: is an azure plugin setting")),
        "{problems:?}"
    );
    assert!(out.stderr.contains("is not a valid image spec"), "{out:?}");
}

#[test]
fn what_packer_1_6_cannot_build_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(fixture("specs/gallery-default-region.toml")).unwrap();
    // A gallery-only amd64 destination.
    let gallery_only = base.replace(
        "managed_image_name = \"nomad-1.10.5\"\nmanaged_image_resource_group_name = \"nomad-images\"\n",
        "",
    );
    let (out, report) = validate_json(dir.path(), &gallery_only, "amd64");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        report["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("azure.managed_image_name: a gallery-only destination (no managed image) needs the azure plugin"),
        "{report}"
    );
    // A build resource group, whose region only Azure knows, and no replication_regions.
    let in_group = base.replace(
        "location = \"westeurope\"",
        "build_resource_group_name = \"nomad-image-builds\"",
    );
    let (out, report) = validate_json(dir.path(), &in_group, "amd64");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        report["problems"][0].as_str().unwrap().starts_with(
            "azure.gallery.replication_regions: Packer 1.6.6 requires replication_regions"
        ),
        "{report}"
    );
    // With the list named, the same spec validates for real.
    let named = in_group.replace(
        "image_version = \"1.10.5\"\n",
        "image_version = \"1.10.5\"\nreplication_regions = [\"westeurope\"]\n",
    );
    let (out, report) = validate_json(dir.path(), &named, "amd64");
    assert!(out.ok(), "{out:?}");
    assert_eq!(report["valid"], true);
    assert_eq!(report["target"], "azure");
    assert_eq!(report["input_hash"].as_str().unwrap().len(), 64);
}

#[test]
fn packers_own_refusal_is_in_the_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("specs/cli-auth.toml"))
        .unwrap()
        .replace(
            "managed_image_name = \"nomad-1.10.5\"",
            "managed_image_name = \"nomad 1.10.5!\"",
        );
    let (out, report) = validate_json(dir.path(), &text, "amd64");
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(report["valid"], false);
    assert!(
        report["packer_errors"]
            .as_str()
            .unwrap()
            .contains("managed_image_name"),
        "{report}"
    );
}
