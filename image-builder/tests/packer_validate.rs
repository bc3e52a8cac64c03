//! `image-builder validate` against the real Packer (Debian's 1.6.6, installed by `.ci/run`):
//! the rendered Azure template passes `packer validate` for a managed image, a gallery
//! destination, client-secret auth and Azure CLI auth. azure-arm's validation needs no
//! credentials and no network, so these tests stay offline.

mod common;

use common::*;

fn validate(spec: &str) -> Run {
    let mut cmd = image_builder();
    cmd.args(["validate", "--config"]).arg(fixture(spec));
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
    let mut cmd = image_builder();
    cmd.args(["validate", "--config"]).arg(&spec);
    with_tool_bins(&mut cmd);
    let out = run(&mut cmd);
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
