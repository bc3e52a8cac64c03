//! The Azure side of image-builder's integration tests: the loopback doubles image-builder
//! calls (IMDS, ARM, the token endpoint), the ids the stand-in Packer reports, running
//! `build` against them, and reading back what the stand-in Packer logged.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use support::doubles::arm::{ArmDouble, LoginDouble};
use support::doubles::imds::{self, ImdsDouble};

pub const SUB: &str = "11111111-2222-3333-4444-555555555555";
pub const GALLERY_SUB: &str = "66666666-7777-8888-9999-000000000000";

pub fn managed_image_id() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/nomad-images/providers/Microsoft.Compute/images/nomad-1.10.5"
    )
}

pub fn gallery_version_id() -> String {
    format!(
        "/subscriptions/{GALLERY_SUB}/resourceGroups/nomad-images/providers/Microsoft.Compute/galleries/nomad_gallery/images/nomad/versions/1.10.5"
    )
}

/// A successful azure-arm build as Packer reports it: progress, then the artifact (its
/// description laid out as packer-plugin-azure's `Artifact.String()`), then the manifest.
pub fn azure_success_body() -> String {
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

/// The Azure endpoints image-builder itself calls, as loopback doubles: IMDS (the managed
/// identity's token and its VM's subscription), ARM (the image reads, matched against
/// Microsoft's REST specs, every request checked when the double drops), and the Microsoft
/// identity platform's token endpoint (for `CLIENT_ID` with `CLIENT_SECRET`). All hand out, or
/// accept, the same token.
pub struct AzureDoubles {
    pub imds: ImdsDouble,
    pub arm: ArmDouble,
    pub login: LoginDouble,
}

pub const CLIENT_ID: &str = "client-id";
pub const CLIENT_SECRET: &str = "pa55-w0rd-never-to-be-seen";

impl AzureDoubles {
    /// The images `azure_success_body` reports, as Azure would hold them after the build.
    pub fn add_recorded_images(&self) {
        self.arm
            .add_image(&managed_image_id(), "westeurope", "Succeeded");
        self.arm
            .add_image(&gallery_version_id(), "westeurope", "Succeeded");
    }

    pub fn start() -> Self {
        let imds = ImdsDouble::start(imds::fixture("instance.json"));
        let arm = ArmDouble::start();
        arm.set_token(&imds_token());
        let login = LoginDouble::start(CLIENT_ID, CLIENT_SECRET, imds_token());
        Self { imds, arm, login }
    }

    pub fn args(&self, cmd: &mut Command) {
        cmd.args(["--arm-endpoint", self.arm.url()])
            .args(["--imds-endpoint", self.imds.url()])
            .args(["--login-endpoint", self.login.url()])
            .args(["--retry-delay-ms", "5"]);
    }
}

/// The token the IMDS double hands out (Microsoft's documented shape, `identity-token.json`).
/// `application/x-www-form-urlencoded` encoding, as the token request's body uses.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn imds_token() -> String {
    imds::fixture("identity-token.json")["access_token"]
        .as_str()
        .unwrap()
        .to_string()
}

pub fn build_cmd(azure: &AzureDoubles, spec: &Path, packer: &Path, state: &Path) -> Command {
    let mut cmd = image_builder();
    cmd.args(["build", "--config"])
        .arg(spec)
        .arg("--packer-bin")
        .arg(packer)
        .arg("--state-dir")
        .arg(state);
    azure.args(&mut cmd);
    with_tool_bins(&mut cmd);
    cmd
}

pub fn packer_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("packer.log")).unwrap_or_default()
}

pub fn builds_run(dir: &Path) -> usize {
    packer_log(dir)
        .lines()
        .filter(|l| l.starts_with("argv: build"))
        .count()
}

pub fn records(state: &Path) -> Vec<String> {
    files_under(&state.join("records"))
}

pub fn recorded_gallery_build(azure: &AzureDoubles) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let packer = fake_packer(dir.path(), "Packer v1.6.6", &azure_success_body());
    let first = run(&mut build_cmd(
        azure,
        &fixture("specs/gallery.toml"),
        &packer,
        &state,
    ));
    assert!(first.ok(), "{first:?}");
    assert_eq!(builds_run(dir.path()), 1);
    (dir, state, packer)
}
