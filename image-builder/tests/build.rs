//! `image-builder build` of the Azure target, which cannot run for real here: a stand-in `packer`
//! prints what an azure-arm build prints (the machine-readable format and the manifest
//! post-processor's JSON, see `../shared/fixtures/packer/`) while `version` and `validate` are
//! the real Packer 1.6.6's. Covered: the record read back, skipping identical inputs, `--force`,
//! Packer 1.7+ with `packer init`, a build failing mid-way, Packer missing, bad specs and missing
//! credentials; what a build reads from Azure first is in `recorded_images.rs`. Stopping a build
//! is tested with the real Packer in `signals.rs`; the real Packer
//! also runs in `packer_validate.rs` and `local_build.rs`.

mod common;

use std::path::{Path, PathBuf};

use common::azure::*;
use common::*;
use support::doubles::imds;

#[test]
fn an_azure_build_is_recorded_then_skipped_then_forced() {
    let azure = AzureDoubles::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let spec = fixture("specs/gallery.toml");

    let first = run(&mut build_cmd(&azure, &spec, &packer, &state));
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

    // Same inputs, and Azure still has both images: no Packer build, the recorded image printed.
    azure.add_recorded_images();
    let second = run(&mut build_cmd(&azure, &spec, &packer, &state));
    assert!(second.ok(), "{second:?}");
    assert_eq!(second.stdout, first.stdout);
    assert!(second.stderr.contains("were built already"), "{second:?}");
    assert_eq!(builds_run(dir.path()), 1);
    // Both recorded images were read back, each with its operation's api-version and the
    // managed identity's token (the spec's auth), from the identity's IMDS.
    let reads: Vec<(String, String, String)> = azure
        .arm
        .requests()
        .iter()
        .map(|r| {
            (
                r.path.clone(),
                r.query_param("api-version").unwrap_or_default().to_string(),
                r.header("authorization").unwrap_or_default().to_string(),
            )
        })
        .collect();
    let bearer = format!("Bearer {}", imds_token());
    assert_eq!(
        reads,
        [
            (
                gallery_version_id(),
                "2024-03-03".to_string(),
                bearer.clone()
            ),
            (managed_image_id(), "2024-11-01".to_string(), bearer),
        ]
    );
    // Each is the operation of Microsoft's spec it is meant to be.
    assert_eq!(
        azure.arm.operations_used(),
        [
            (
                "GalleryImageVersions_Get".to_string(),
                "2024-03-03".to_string()
            ),
            ("Images_Get".to_string(), "2024-11-01".to_string()),
        ]
    );

    // --force builds again and asks Packer to replace the existing image.
    let forced = run(build_cmd(&azure, &spec, &packer, &state).arg("--force"));
    assert!(forced.ok(), "{forced:?}");
    assert_eq!(builds_run(dir.path()), 2);
    assert!(packer_log(dir.path()).contains("argv: build -machine-readable -force "));

    // A changed input (a tag) is a different build.
    let changed_spec = dir.path().join("image.toml");
    let text = std::fs::read_to_string(&spec).unwrap() + "\n[azure.tags]\nowner = \"ops\"\n";
    std::fs::write(&changed_spec, text).unwrap();
    let changed = run(&mut build_cmd(&azure, &changed_spec, &packer, &state));
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
    let azure = AzureDoubles::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let secret = CLIENT_SECRET;
    let build = || {
        let mut cmd = build_cmd(
            &azure,
            &fixture("specs/client-secret.toml"),
            &packer,
            &state,
        );
        cmd.arg("-vv")
            .env("ARM_CLIENT_ID", CLIENT_ID)
            .env("ARM_CLIENT_SECRET", secret)
            .env("ARM_TENANT_ID", "tenant-id")
            .env("ARM_SUBSCRIPTION_ID", SUB);
        run(&mut cmd)
    };
    let out = build();
    assert!(out.ok(), "{out:?}");
    // The recorded image is checked with the same service principal: a client-credentials
    // login for ARM, and the token it gave.
    azure
        .arm
        .add_image(&managed_image_id(), "westeurope", "Succeeded");
    let again = build();
    assert!(again.ok(), "{again:?}");
    assert!(again.stderr.contains("were built already"), "{again:?}");
    let logins = azure.login.requests();
    assert_eq!(logins.len(), 1);
    assert_eq!(logins[0].path, "/tenant-id/oauth2/v2.0/token");
    assert!(logins[0].body.contains("grant_type=client_credentials"));
    assert!(logins[0].body.contains(&format!(
        "scope={}",
        urlencode(&format!("{}/.default", azure.arm.url()))
    )));
    assert_eq!(
        azure.arm.requests()[0].header("authorization"),
        Some(format!("Bearer {}", imds_token()).as_str())
    );
    for out in [&out, &again] {
        assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
    }
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
    let azure = AzureDoubles::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let out = run(build_cmd(
        &azure,
        &fixture("specs/client-secret.toml"),
        &packer,
        &state,
    )
    .env("ARM_CLIENT_ID", "client-id"));
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
    let azure = AzureDoubles::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let body = format!(
        "cp \"$dir/image.pkr.hcl\" \"$marks/template\"\n{}",
        azure_success_body()
    );
    let packer = fake_packer(dir.path(), "Packer v1.11.2", &body);
    let out = run(&mut build_cmd(
        &azure,
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
    let azure = AzureDoubles::start();
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
        &azure,
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
    let azure = AzureDoubles::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = run(&mut build_cmd(
        &azure,
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
    let azure = AzureDoubles::start();
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
        let out = run(&mut build_cmd(&azure, &path, &packer, &state));
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
    let azure = AzureDoubles::start();
    let mut cmd = image_builder();
    cmd.args(["build", "--config"])
        .arg(&spec)
        .arg("--packer-bin")
        .arg(&packer);
    azure.args(&mut cmd);
    with_tool_bins(&mut cmd);
    let out = run(&mut cmd);
    assert!(out.ok(), "{out:?}");
    assert_eq!(records(&dir.path().join(".image-builder")).len(), 2);
}

/// Records one gallery.toml build; returns the state directory and the stand-in's directory.
/// The values of `name` in the environment of each `packer build`.
fn env_lines(dir: &Path, name: &str) -> Vec<String> {
    let mut in_build = false;
    let mut values = Vec::new();
    for line in packer_log(dir).lines() {
        if let Some(argv) = line.strip_prefix("argv: ") {
            in_build = argv.starts_with("build ");
        } else if let Some(value) = line.strip_prefix(&format!("env: {name}=")) {
            if in_build {
                values.push(value.to_string());
            }
        }
    }
    values
}

fn record_context(state: &Path, stdout_json: &str) -> serde_json::Value {
    let report: serde_json::Value = serde_json::from_str(stdout_json).unwrap();
    let path = report["record_path"].as_str().unwrap();
    assert!(Path::new(path).starts_with(state.join("records")));
    report["inputs"]["context"].clone()
}

/// Azure CLI auth without `subscription_id`: the build goes to the CLI's current subscription,
/// which is hashed, handed to Packer, and used to check the record. Switching `az` to another
/// subscription is another build, not the old image id.
#[test]
fn the_cli_subscription_is_part_of_the_inputs_and_goes_to_packer() {
    let azure = AzureDoubles::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let az = fake_az(dir.path(), SUB, &imds_token());
    let spec = fixture("specs/managed-image.toml");
    let build = |extra: &[&str]| {
        let mut cmd = build_cmd(&azure, &spec, &packer, &state);
        cmd.arg("--az-program").arg(&az).args(extra);
        run(&mut cmd)
    };

    let first = build(&["--json"]);
    assert!(first.ok(), "{first:?}");
    assert_eq!(
        record_context(&state, &first.stdout)["subscription_id"],
        SUB
    );
    assert_eq!(env_lines(dir.path(), "PKR_VAR_subscription_id"), [SUB]);
    assert!(first.stderr.contains(&format!(
        "building in subscription {SUB} (the Azure CLI's current subscription)"
    )));

    // `az account set` to another subscription: a different build.
    let other = "99999999-8888-7777-6666-555555555555";
    std::fs::write(dir.path().join("az-subscription"), other).unwrap();
    let second = build(&["--json"]);
    assert!(second.ok(), "{second:?}");
    assert!(!second.stderr.contains("were built already"), "{second:?}");
    assert_eq!(builds_run(dir.path()), 2);
    assert_eq!(
        record_context(&state, &second.stdout)["subscription_id"],
        other
    );
    assert_eq!(
        env_lines(dir.path(), "PKR_VAR_subscription_id"),
        [SUB, other]
    );

    // Back in the first subscription, whose image still exists: skipped, checked with the
    // CLI's token.
    std::fs::write(dir.path().join("az-subscription"), SUB).unwrap();
    azure
        .arm
        .add_image(&managed_image_id(), "westeurope", "Succeeded");
    let third = build(&["--json"]);
    assert!(third.ok(), "{third:?}");
    let report: serde_json::Value = serde_json::from_str(&third.stdout).unwrap();
    assert_eq!(report["skipped"], true);
    assert_eq!(report["image_id"], managed_image_id().as_str());
    assert_eq!(builds_run(dir.path()), 2);
    let az_log = std::fs::read_to_string(dir.path().join("az.log")).unwrap();
    assert!(
        az_log.contains(&format!(
            "account get-access-token --resource {}/ --output json",
            azure.arm.url()
        )),
        "{az_log}"
    );
}

/// Managed identity without `subscription_id`: the VM's subscription, from IMDS.
#[test]
fn the_managed_identity_subscription_comes_from_instance_metadata() {
    let azure = AzureDoubles::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let text = std::fs::read_to_string(fixture("specs/gallery.toml"))
        .unwrap()
        .replace(
            "subscription_id = \"11111111-2222-3333-4444-555555555555\"\n",
            "",
        );
    let spec = write_spec(dir.path(), "image.toml", &text);
    let out = run(build_cmd(&azure, &spec, &packer, &state).arg("--json"));
    assert!(out.ok(), "{out:?}");
    let vm_subscription = imds::fixture("instance.json")["compute"]["subscriptionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        record_context(&state, &out.stdout)["subscription_id"],
        vm_subscription.as_str()
    );
    assert_eq!(
        env_lines(dir.path(), "PKR_VAR_subscription_id"),
        [vm_subscription]
    );
    let imds_reads: Vec<String> = azure
        .imds
        .requests()
        .iter()
        .map(|r| {
            format!(
                "{}?api-version={}",
                r.path,
                r.query_param("api-version").unwrap()
            )
        })
        .collect();
    assert_eq!(imds_reads, ["/metadata/instance?api-version=2023-07-01"]);
}

/// An arm64 image through Packer 1.7+ and the azure plugin: gallery only, the Arm base image and
/// VM size, target regions; recorded as the gallery version and re-checked as such.
#[test]
fn an_arm64_gallery_only_build_with_the_azure_plugin() {
    let azure = AzureDoubles::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let gallery = format!(
        "/subscriptions/{SUB}/resourceGroups/nomad-images/providers/Microsoft.Compute/galleries/nomad_gallery/images/nomad-arm64/versions/1.10.5"
    );
    // What packer-plugin-azure prints for a gallery-only build: no managed image lines, and
    // the artifact id (and the manifest's artifact_id) is the gallery version's.
    let body = format!(
        r#"cp "$dir/image.pkr.hcl" "$marks/template"
cat <<'EOT'
1700000003,azure-arm.nomad,artifact-count,1
1700000003,azure-arm.nomad,artifact,0,builder-id,Azure.ResourceManagement.VMImage
1700000003,azure-arm.nomad,artifact,0,id,{gallery}
1700000003,azure-arm.nomad,artifact,0,string,Azure.ResourceManagement.VMImage:\n\nOSType: Linux\nManagedImageSharedImageGalleryId: {gallery}\nSharedImageGalleryResourceGroup: nomad-images\nSharedImageGalleryName: nomad_gallery\nSharedImageGalleryImageName: nomad-arm64\nSharedImageGalleryImageVersion: 1.10.5\nSharedImageGalleryReplicatedRegions: westeurope%!(PACKER_COMMA) northeurope\n
1700000003,azure-arm.nomad,artifact,0,files-count,0
1700000003,azure-arm.nomad,artifact,0,end
EOT
cat > "$dir/packer-manifest.json" <<EOT
{{"builds": [{{"name": "nomad", "builder_type": "azure-arm", "build_time": 1700000003, "files": null,
  "artifact_id": "{gallery}", "packer_run_uuid": "run-1",
  "custom_data": {{"image_builder_input_hash": "$PKR_VAR_image_builder_input_hash", "nomad_version": "1.10.5", "target": "azure"}}}}],
 "last_run_uuid": "run-1"}}
EOT"#
    );
    let packer = fake_packer(dir.path(), "Packer v1.11.2", &body);
    let az = fake_az(dir.path(), SUB, &imds_token());
    let bins = dir.path().join("bins");
    std::fs::create_dir_all(&bins).unwrap();
    let build = || {
        let mut cmd = image_builder();
        cmd.args(["build", "--json", "--config"])
            .arg(fixture("specs/arm64-gallery.toml"))
            .arg("--packer-bin")
            .arg(&packer)
            .arg("--state-dir")
            .arg(&state)
            .arg("--az-program")
            .arg(&az);
        azure.args(&mut cmd);
        with_stub_bins(&mut cmd, &bins, "arm64");
        run(&mut cmd)
    };

    let first = build();
    assert!(first.ok(), "{first:?}");
    let report: serde_json::Value = serde_json::from_str(&first.stdout).unwrap();
    assert_eq!(report["skipped"], false);
    assert_eq!(report["image_id"], gallery.as_str());
    assert_eq!(report["gallery_image_version_id"], gallery.as_str());
    assert_eq!(report["managed_image_id"], serde_json::Value::Null);
    assert_eq!(report["arch"], "arm64");

    let template = std::fs::read_to_string(dir.path().join("marks/template")).unwrap();
    let body = hcl::parse(&template).unwrap();
    let source = body
        .blocks()
        .find(|b| b.identifier() == "source")
        .unwrap()
        .body();
    let attr = |key: &str| {
        source
            .attributes()
            .find(|a| a.key() == key)
            .map(|a| a.expr().to_string())
    };
    assert_eq!(attr("image_sku").as_deref(), Some("\"server-arm64\""));
    assert_eq!(attr("vm_size").as_deref(), Some("\"Standard_D2ps_v5\""));
    assert_eq!(attr("managed_image_name"), None);
    let destination = source
        .blocks()
        .find(|b| b.identifier() == "shared_image_gallery_destination")
        .unwrap()
        .body();
    let regions: Vec<String> = destination
        .blocks()
        .filter(|b| b.identifier() == "target_region")
        .map(|b| {
            b.body()
                .attributes()
                .find(|a| a.key() == "name")
                .unwrap()
                .expr()
                .to_string()
        })
        .collect();
    assert_eq!(regions, ["\"westeurope\"", "\"northeurope\""]);

    // Skipped while the version exists; only the gallery version is read back.
    azure.arm.add_image(&gallery, "westeurope", "Succeeded");
    let second = build();
    assert!(second.ok(), "{second:?}");
    let report: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(report["skipped"], true);
    let read: Vec<String> = azure
        .arm
        .requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(read, [gallery]);
}
