//! `image-builder build` of the Azure target, which cannot run for real here: a stand-in `packer`
//! prints what an azure-arm build prints (the machine-readable format and the manifest
//! post-processor's JSON, see `../shared/fixtures/packer/`) while `version` and `validate` are
//! the real Packer 1.6.6's. Covered: the record read back, skipping identical inputs, `--force`,
//! Packer 1.7+ with `packer init`, a build failing mid-way, Packer missing, bad specs and missing
//! credentials. Stopping a build is tested with the real Packer in `signals.rs`; the real Packer
//! also runs in `packer_validate.rs` and `local_build.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

const SUB: &str = "11111111-2222-3333-4444-555555555555";
const GALLERY_SUB: &str = "66666666-7777-8888-9999-000000000000";

fn managed_image_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/nomad-images/providers/Microsoft.Compute/images/nomad-1.10.5"
    )
}

fn gallery_version_id() -> String {
    format!(
        "/subscriptions/{GALLERY_SUB}/resourceGroups/nomad-images/providers/Microsoft.Compute/galleries/nomad_gallery/images/nomad/versions/1.10.5"
    )
}

/// A successful azure-arm build as Packer reports it: progress, then the artifact (its
/// description laid out as packer-plugin-azure's `Artifact.String()`), then the manifest.
fn azure_success_body() -> String {
    format!(
        r#"cat <<'EOT'
1700000000,,ui,say,==> azure-arm.nomad: Running builder ...
1700000001,,ui,say,==> azure-arm.nomad: Provisioning with shell script: {{dir}}/provision.sh
1700000002,,ui,message,    azure-arm.nomad: image-builder: installing Nomad 1.10.5 into /
1700000003,,ui,say,Build 'azure-arm.nomad' finished after 12 minutes 3 seconds.
1700000003,azure-arm.nomad,artifact-count,1
1700000003,azure-arm.nomad,artifact,0,builder-id,Azure.ResourceManagement.VMImage
1700000003,azure-arm.nomad,artifact,0,id,{managed}
1700000003,azure-arm.nomad,artifact,0,string,Azure.ResourceManagement.VMImage:\n\nOSType: Linux\nManagedImageResourceGroupName: nomad-images\nManagedImageName: nomad-1.10.5\nManagedImageId: {managed}\nManagedImageLocation: westeurope\nManagedImageSharedImageGalleryId: {gallery}\nSharedImageGalleryResourceGroup: nomad-images\n
1700000003,azure-arm.nomad,artifact,0,files-count,0
1700000003,azure-arm.nomad,artifact,0,end
EOT
cat > "$dir/packer-manifest.json" <<EOT
{{"builds": [{{"name": "nomad", "builder_type": "azure-arm", "build_time": 1700000003, "files": null,
  "artifact_id": "{managed}", "packer_run_uuid": "run-1",
  "custom_data": {{"image_builder_input_hash": "$PKR_VAR_image_builder_input_hash", "nomad_version": "1.10.5", "target": "azure"}}}}],
 "last_run_uuid": "run-1"}}
EOT"#,
        managed = managed_image_id(),
        gallery = gallery_version_id(),
    )
}

fn build_cmd(spec: &Path, packer: &Path, state: &Path) -> Command {
    let mut cmd = image_builder();
    cmd.args(["build", "--config"])
        .arg(spec)
        .arg("--packer-bin")
        .arg(packer)
        .arg("--state-dir")
        .arg(state);
    with_tool_bins(&mut cmd);
    cmd
}

fn packer_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("packer.log")).unwrap_or_default()
}

fn builds_run(dir: &Path) -> usize {
    packer_log(dir)
        .lines()
        .filter(|l| l.starts_with("argv: build"))
        .count()
}

fn records(state: &Path) -> Vec<String> {
    files_under(&state.join("records"))
}

#[test]
fn an_azure_build_is_recorded_then_skipped_then_forced() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let spec = fixture("specs/gallery.toml");

    let first = run(&mut build_cmd(&spec, &packer, &state));
    assert!(first.ok(), "{first:?}");
    // stdout is the image to boot from: the gallery version, read from Packer's artifact.
    assert_eq!(first.stdout, format!("{}\n", gallery_version_id()));
    assert!(
        first
            .stderr
            .contains("azure-arm.nomad: image-builder: installing Nomad 1.10.5"),
        "progress lines are shown: {first:?}"
    );
    assert_eq!(builds_run(dir.path()), 1);

    let found = records(&state);
    assert_eq!(found.len(), 2, "{found:?}");
    let record_file = found
        .iter()
        .find(|f| !f.ends_with(".manifest.json"))
        .unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("records").join(record_file)).unwrap())
            .unwrap();
    let hash = record["input_hash"].as_str().unwrap();
    assert_eq!(record_file, &format!("{hash}.json"));
    assert_eq!(record["target"], "azure");
    assert_eq!(record["image_id"], gallery_version_id().as_str());
    assert_eq!(record["managed_image_id"], managed_image_id().as_str());
    assert_eq!(
        record["gallery_image_version_id"],
        gallery_version_id().as_str()
    );
    assert_eq!(record["artifact_id"], managed_image_id().as_str());
    assert_eq!(record["nomad_version"], "1.10.5");
    assert_eq!(record["consul_version"], "1.21.4");
    assert_eq!(record["packer_version"], "1.6.6");
    assert_eq!(record["packer_run_uuid"], "run-1");
    let inputs: Vec<&str> = record["inputs"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        inputs,
        ["spec", "template", "script", "install-nomad", "run-nomad"]
    );
    let spec_sha = support::hash::sha256_file(&spec).unwrap();
    assert_eq!(record["inputs"]["files"][0]["sha256"], spec_sha.as_str());
    // Packer's manifest is kept beside the record, as Packer wrote it.
    let manifest =
        std::fs::read_to_string(state.join("records").join(format!("{hash}.manifest.json")))
            .unwrap();
    assert!(manifest.contains(&format!("\"image_builder_input_hash\": \"{hash}\"")));
    // The input hash reached Packer through the environment, not the command line.
    let log = packer_log(dir.path());
    assert!(
        log.contains(&format!("env: PKR_VAR_image_builder_input_hash={hash}")),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("argv:") && l.contains(hash)),
        "{log}"
    );

    // Same inputs: no Packer build, the recorded image printed.
    let second = run(&mut build_cmd(&spec, &packer, &state));
    assert!(second.ok(), "{second:?}");
    assert_eq!(second.stdout, first.stdout);
    assert!(second.stderr.contains("were built already"), "{second:?}");
    assert_eq!(builds_run(dir.path()), 1);

    // --force builds again and asks Packer to replace the existing image.
    let forced = run(build_cmd(&spec, &packer, &state).arg("--force"));
    assert!(forced.ok(), "{forced:?}");
    assert_eq!(builds_run(dir.path()), 2);
    assert!(packer_log(dir.path()).contains("argv: build -machine-readable -force "));

    // A changed input (a tag) is a different build.
    let changed_spec = dir.path().join("image.toml");
    let text = std::fs::read_to_string(&spec).unwrap() + "\n[azure.tags]\nowner = \"ops\"\n";
    std::fs::write(&changed_spec, text).unwrap();
    let changed = run(&mut build_cmd(&changed_spec, &packer, &state));
    assert!(changed.ok(), "{changed:?}");
    assert_eq!(builds_run(dir.path()), 3);
    assert_eq!(records(&state).len(), 4);
    // Nothing else is left in the state directory (no working directories).
    let top: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut top = top;
    top.sort();
    assert_eq!(top, ["lock", "records"]);
}

#[test]
fn client_secret_builds_keep_the_secret_out_of_files_logs_and_command_lines() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let secret = "pa55-w0rd-never-to-be-seen";
    let mut cmd = build_cmd(&fixture("specs/client-secret.toml"), &packer, &state);
    cmd.arg("-vv")
        .env("ARM_CLIENT_ID", "client-id")
        .env("ARM_CLIENT_SECRET", secret)
        .env("ARM_TENANT_ID", "tenant-id")
        .env("ARM_SUBSCRIPTION_ID", SUB);
    let out = run(&mut cmd);
    assert!(out.ok(), "{out:?}");
    assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    for file in files_under(&state) {
        let text = std::fs::read_to_string(state.join(&file)).unwrap_or_default();
        assert!(!text.contains(secret), "{file} contains the secret");
    }
    let log = packer_log(dir.path());
    // Packer gets it the only way it should: in its environment.
    assert!(
        log.contains(&format!("env: ARM_CLIENT_SECRET={secret}")),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.starts_with("argv:") && l.contains(secret)),
        "{log}"
    );
}

#[test]
fn client_secret_auth_without_the_environment_fails_before_packer_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let out = run(
        build_cmd(&fixture("specs/client-secret.toml"), &packer, &state)
            .env("ARM_CLIENT_ID", "client-id"),
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("ARM_CLIENT_SECRET, ARM_TENANT_ID, ARM_SUBSCRIPTION_ID are not set"),
        "{out:?}"
    );
    assert_eq!(builds_run(dir.path()), 0);
    assert!(!state.exists());
}

#[test]
fn packer_1_7_and_newer_gets_required_plugins_and_init() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let body = format!(
        "cp \"$dir/image.pkr.hcl\" \"$marks/template\"\n{}",
        azure_success_body()
    );
    let packer = fake_packer(dir.path(), "Packer v1.11.2", &body);
    let out = run(&mut build_cmd(
        &fixture("specs/gallery.toml"),
        &packer,
        &state,
    ));
    assert!(out.ok(), "{out:?}");
    let commands: Vec<String> = packer_log(dir.path())
        .lines()
        .filter_map(|l| l.strip_prefix("argv: "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(commands, ["version", "init", "validate", "build"]);
    let template = std::fs::read_to_string(dir.path().join("marks/template")).unwrap();
    assert!(template.contains("source  = \"github.com/hashicorp/azure\""));
    assert!(template.contains("version = \"~> 2\""));
}

#[test]
fn packer_failing_mid_build_reports_its_errors_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Shaped after the failing build in ../shared/fixtures/packer/null-build-machine-readable.txt.
    // It even leaves a manifest behind: image-builder must not take it.
    let body = r#"
printf '%s\n' '1,,ui,say,==> azure-arm.nomad: Provisioning with shell script: provision.sh'
printf '%s\n' '2,,ui,message,    azure-arm.nomad: image-builder: installing Nomad 1.10.5 into /'
printf '%s\n' '3,,ui,error,==> azure-arm.nomad: error: signature check failed for nomad_1.10.5_SHA256SUMS%!(PACKER_COMMA) refusing to install\n  caused by: bad signature'
printf '%s\n' "4,,ui,say,==> azure-arm.nomad: Provisioning step had errors: Running the cleanup provisioner%!(PACKER_COMMA) if present..."
printf '%s\n' "5,,ui,error,Build 'azure-arm.nomad' errored after 3 minutes: Script exited with non-zero exit status: 1.Allowed exit codes are: [0]"
printf '%s\n' '6,,error-count,1'
printf '%s\n' '6,azure-arm.nomad,error,Script exited with non-zero exit status: 1.Allowed exit codes are: [0]'
echo '{"builds": [], "last_run_uuid": ""}' > "$dir/packer-manifest.json"
exit 1
"#;
    let packer = fake_packer(dir.path(), "Packer v1.6.6", body);
    let out = run(&mut build_cmd(
        &fixture("specs/gallery.toml"),
        &packer,
        &state,
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stdout, "");
    for expected in [
        "packer build failed (exit status: 1)",
        "Packer reported:\n  azure-arm.nomad: Script exited with non-zero exit status: 1.",
        "signature check failed for nomad_1.10.5_SHA256SUMS, refusing to install",
        "    caused by: bad signature",
    ] {
        assert!(
            out.stderr.contains(expected),
            "missing {expected:?}: {out:?}"
        );
    }
    assert_eq!(records(&state), Vec::<String>::new());
    assert_eq!(files_under(&state), ["lock"]);
}

#[test]
fn a_missing_packer_gets_an_install_hint() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = run(&mut build_cmd(
        &fixture("specs/gallery.toml"),
        Path::new("/nonexistent/packer"),
        &state,
    ));
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("Packer was not found at /nonexistent/packer"),
        "{out:?}"
    );
    assert!(out.stderr.contains("apt-get install packer"), "{out:?}");
    assert!(!state.exists());

    // The default, `packer` on PATH, when PATH has none.
    let mut cmd = image_builder();
    cmd.args(["build", "--config"])
        .arg(fixture("specs/gallery.toml"))
        .arg("--state-dir")
        .arg(&state)
        .env("PATH", dir.path());
    with_tool_bins(&mut cmd);
    let out = run(&mut cmd);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains("Packer was not found at packer: install Packer"),
        "{out:?}"
    );
    assert!(!state.exists());
}

#[test]
fn bad_specs_fail_naming_the_field_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let cases: &[(&str, &[&str])] = &[
        (
            "bad/both-placements.toml",
            &["azure.location: and azure.build_resource_group_name are both set"],
        ),
        (
            "bad/unknown-field.toml",
            &["line 7, column 1 (in [azure])", "unknown field `vm_sise`"],
        ),
        (
            "bad/missing-nomad-version.toml",
            &["missing field `nomad_version`"],
        ),
    ];
    for (spec, expected) in cases {
        let state = dir.path().join("state");
        let path = fixture(spec);
        let out = run(&mut build_cmd(&path, &packer, &state));
        assert_eq!(out.code, Some(1), "{spec}: {out:?}");
        assert!(
            out.stderr.contains(path.to_str().unwrap()),
            "{spec}: {out:?}"
        );
        for e in *expected {
            assert!(out.stderr.contains(e), "{spec}: missing {e:?}: {out:?}");
        }
        assert!(!state.exists(), "{spec}: nothing may be written");
        assert_eq!(packer_log(dir.path()), "", "{spec}: Packer must not run");
    }
}

#[test]
fn the_default_state_directory_is_beside_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let spec: PathBuf = dir.path().join("image.toml");
    std::fs::copy(fixture("specs/gallery.toml"), &spec).unwrap();
    let mut cmd = image_builder();
    cmd.args(["build", "--config"])
        .arg(&spec)
        .arg("--packer-bin")
        .arg(&packer);
    with_tool_bins(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.ok(), "{out:?}");
    assert_eq!(records(&dir.path().join(".image-builder")).len(), 2);
}
