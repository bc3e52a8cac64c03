//! `image-builder render`: golden files for every fixture spec (regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p image-builder --test render` and review the diff), hostile
//! values read back exactly through an HCL parser and a real shell, secrets kept out of every
//! rendered file, and renders that fail or would clobber a directory writing nothing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use hcl::eval::{Context, Evaluate};

/// Renders a spec with `--packer-version` (so the output does not depend on the Packer here).
fn render(spec: &Path, out: &Path, packer_version: &str, extra: &[&str]) -> Run {
    let mut cmd = image_builder();
    cmd.args(["render", "--packer-version", packer_version, "--config"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .args(extra);
    let text = std::fs::read_to_string(spec).unwrap_or_default();
    if text.contains("arch = \"arm64\"") && !extra.contains(&"local") {
        // The image's CPU is not this machine's: header-only stand-ins of the right CPU.
        let stubs = out.parent().unwrap().join("arm64-bins");
        std::fs::create_dir_all(&stubs).unwrap();
        with_stub_bins(&mut cmd, &stubs, "arm64");
    } else {
        with_tool_bins(&mut cmd);
    }
    run(&mut cmd)
}

fn check_golden(name: &str, rendered_dir: &Path) {
    let golden_dir = fixture("golden").join(name);
    for file in ["image.pkr.hcl", "provision.sh"] {
        let actual = std::fs::read_to_string(rendered_dir.join(file)).unwrap();
        let golden = golden_dir.join(file);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(&golden_dir).unwrap();
            std::fs::write(&golden, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
                golden.display()
            )
        });
        assert_eq!(
            actual,
            expected,
            "{} differs from the golden file {} (UPDATE_GOLDEN=1 regenerates it)",
            file,
            golden.display()
        );
    }
}

#[test]
fn rendered_templates_match_the_golden_files() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        ("managed-image", "specs/managed-image.toml", "1.6.6", &[]),
        ("gallery", "specs/gallery.toml", "1.6.6", &[]),
        ("client-secret", "specs/client-secret.toml", "1.6.6", &[]),
        ("cli-auth", "specs/cli-auth.toml", "1.6.6", &[]),
        ("cli-auth-packer-1.11", "specs/cli-auth.toml", "1.11.2", &[]),
        ("arm64-gallery", "specs/arm64-gallery.toml", "1.11.2", &[]),
        (
            "gallery-default-region",
            "specs/gallery-default-region.toml",
            "1.6.6",
            &[],
        ),
        (
            "gallery-default-region-packer-1.11",
            "specs/gallery-default-region.toml",
            "1.11.2",
            &[],
        ),
        ("docker-client", "specs/docker-client.toml", "1.6.6", &[]),
        (
            "local",
            "specs/cli-auth.toml",
            "1.11.2",
            &["--target", "local", "--root", "/srv/nomad image root"],
        ),
    ];
    for (name, spec, version, extra) in cases {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let result = render(&fixture(spec), &out, version, extra);
        assert!(result.ok(), "{name}: {result:?}");
        check_golden(name, &out);
    }
}

#[test]
fn the_plugin_block_follows_the_packer_version() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture("specs/cli-auth.toml");
    for (version, wanted) in [("1.6.6", false), ("1.7.0", true), ("1.11.2", true)] {
        let out = dir.path().join(version);
        assert!(render(&spec, &out, version, &[]).ok());
        let template = std::fs::read_to_string(out.join("image.pkr.hcl")).unwrap();
        assert_eq!(
            template.contains("required_plugins"),
            wanted,
            "Packer {version}"
        );
    }
}

/// Finds `source "azure-arm" "nomad"` in a parsed template.
fn azure_source(body: &hcl::Body) -> &hcl::Body {
    body.blocks()
        .find(|b| {
            b.identifier() == "source"
                && b.labels().iter().map(|l| l.as_str()).collect::<Vec<_>>()
                    == ["azure-arm", "nomad"]
        })
        .expect("the template has source \"azure-arm\" \"nomad\"")
        .body()
}

#[test]
fn hostile_tags_read_back_exactly_through_an_hcl_parser() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let spec = fixture("specs/managed-image.toml");
    assert!(render(&spec, &out, "1.6.6", &[]).ok());
    let text = std::fs::read_to_string(out.join("image.pkr.hcl")).unwrap();
    let body = hcl::parse(&text).expect("the rendered template is valid HCL");
    let source = azure_source(&body);

    // No value added a setting: the source block has exactly these attributes.
    let mut keys: Vec<&str> = source.attributes().map(|a| a.key()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "azure_tags",
            "image_offer",
            "image_publisher",
            "image_sku",
            "image_version",
            "location",
            "managed_image_name",
            "managed_image_resource_group_name",
            "os_type",
            "subscription_id",
            "use_azure_cli_auth",
            "vm_size",
        ]
    );

    // Evaluating the tags (as Packer would) gives back the spec's strings, byte for byte:
    // `${...}` and `%{...}` stay literal text.
    let tags = source
        .attributes()
        .find(|a| a.key() == "azure_tags")
        .unwrap()
        .expr();
    let mut ctx = Context::new();
    let mut var = hcl::Map::new();
    var.insert(
        "image_builder_input_hash".to_string(),
        hcl::Value::from("HASH"),
    );
    ctx.declare_var("var", hcl::Value::Object(var));
    let evaluated = tags.evaluate(&ctx).expect("tags evaluate");
    let hcl::Value::Object(map) = evaluated else {
        panic!("azure_tags is not an object: {evaluated:?}")
    };
    let got: BTreeMap<String, String> = map
        .into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap().to_string()))
        .collect();
    let expected: BTreeMap<String, String> = [
        ("project", "nomad"),
        (
            "q\"uote ${x}",
            "back\\slash ${var.client_secret} %{ if true }x%{ endif }",
        ),
        ("image-builder-input-hash", "HASH"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, expected);
}

/// A stand-in install-nomad that records its arguments (NUL-separated) and creates what the
/// script checks for.
fn recording_install_nomad(dir: &Path) -> PathBuf {
    let path = dir.join("install-nomad");
    let args = dir.join("install-nomad.args");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nprintf '%s\\0' \"$@\" > {}\nmkdir -p \"$IMAGE_ROOT/opt/nomad/bin\"\n\
             : > \"$IMAGE_ROOT/opt/nomad/bin/nomad\"; : > \"$IMAGE_ROOT/opt/nomad/bin/run-nomad\"\n\
             chmod 0755 \"$IMAGE_ROOT/opt/nomad/bin/nomad\" \"$IMAGE_ROOT/opt/nomad/bin/run-nomad\"\n",
            support::shell::quote(args.to_str().unwrap())
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_script_passes_every_value_as_exactly_one_word() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root with space");
    std::fs::create_dir_all(&root).unwrap();
    let key = dir.path().join("mirror key.asc");
    std::fs::write(&key, "key").unwrap();
    // Values a careless script would split, expand or execute.
    let url = "http://127.0.0.1:9/a'b/$(touch${IFS}pwned)/`id`;x";
    let spec = write_spec(
        dir.path(),
        "image.toml",
        &format!(
            r#"nomad_version = "1.10.5"
consul_version = "1.21.4"
cni_version = "1.6.2"
cni_sha256 = "{sha}"
target = "local"
extra_commands = ["printf '%s' \"it's $IMAGE_ROOT\" > extra.out", "test \"$(pwd)\" = \"$IMAGE_ROOT\""]

[release]
url = "{url}"
cni_url = "{url}"
public_key = "mirror key.asc"

[local]
root = "root with space"
"#,
            sha = "ab".repeat(32),
            url = url.replace('\\', "\\\\").replace('"', "\\\""),
        ),
    );
    let out = dir.path().join("out");
    let result = render(&spec, &out, "1.6.6", &[]);
    assert!(result.ok(), "{result:?}");

    // Run the rendered script as shell-local would, with a recording install-nomad.
    let files = out.join("files");
    std::fs::copy(
        recording_install_nomad(dir.path()),
        files.join("install-nomad"),
    )
    .unwrap();
    let output = std::process::Command::new("/bin/sh")
        .arg(out.join("provision.sh"))
        .env("IMAGE_ROOT", &root)
        .env("IMAGE_BUILDER_FILES", &files)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.ends_with("image-builder: provisioning finished\n"),
        "{said}"
    );
    assert!(!dir.path().join("pwned").exists() && !root.join("pwned").exists());

    let args = std::fs::read(dir.path().join("install-nomad.args")).unwrap();
    let args: Vec<String> = args
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8(a.to_vec()).unwrap())
        .collect();
    let files = files.canonicalize().unwrap();
    let expected: Vec<String> = [
        "--version",
        "1.10.5",
        "--arch",
        "amd64",
        "--download-url",
        url,
        "--root",
        root.to_str().unwrap(),
        "--run-nomad",
        files.join("run-nomad").to_str().unwrap(),
        "--public-key",
        files.join("release-key.asc").to_str().unwrap(),
        "--consul-version",
        "1.21.4",
        "--cni-version",
        "1.6.2",
        "--cni-download-url",
        url,
        "--cni-sha256",
        &"ab".repeat(32),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(args, expected);
    // The extra commands ran as written, in the root, with $IMAGE_ROOT set.
    assert_eq!(
        std::fs::read_to_string(root.join("extra.out")).unwrap(),
        format!("it's {}", root.display())
    );
}

#[test]
fn secrets_never_reach_rendered_files_or_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let secret = "s3cr3t-value-that-must-not-leak";
    let mut cmd = image_builder();
    cmd.args(["render", "--packer-version", "1.6.6", "--config"])
        .arg(fixture("specs/client-secret.toml"))
        .arg("--out")
        .arg(&out)
        .env("ARM_CLIENT_SECRET", secret)
        .env("ARM_CLIENT_ID", "client-id")
        .env("ARM_TENANT_ID", "tenant-id")
        .env("ARM_SUBSCRIPTION_ID", "subscription-id");
    with_tool_bins(&mut cmd);
    let result = run(&mut cmd);
    assert!(result.ok(), "{result:?}");
    assert!(!result.stderr.contains(secret) && !result.stdout.contains(secret));
    for file in files_under(&out) {
        let bytes = std::fs::read(out.join(&file)).unwrap();
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "{file} contains the client secret");
    }
    let template = std::fs::read_to_string(out.join("image.pkr.hcl")).unwrap();
    assert!(template.contains("default   = env(\"ARM_CLIENT_SECRET\")"));
    assert!(template.contains("sensitive = true"));
    // The subscription from the environment is part of the input hash (not a secret).
    let inputs = std::fs::read_to_string(out.join("inputs.json")).unwrap();
    assert!(
        inputs.contains("\"subscription_id\": \"subscription-id\""),
        "{inputs}"
    );
}

#[test]
fn a_failed_render_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut cmd = image_builder();
    cmd.args(["render", "--packer-version", "1.6.6", "--config"])
        .arg(fixture("specs/cli-auth.toml"))
        .arg("--out")
        .arg(&out)
        .args(["--install-nomad", "/nonexistent/install-nomad"])
        .arg("--run-nomad")
        .arg(stand_in_bins().1);
    let result = run(&mut cmd);
    assert_eq!(result.code, Some(1), "{result:?}");
    assert!(
        result
            .stderr
            .contains("failed to read install-nomad binary /nonexistent/install-nomad"),
        "{result:?}"
    );
    assert!(!out.exists());
    assert_eq!(files_under(dir.path()), Vec::<String>::new());
}

#[test]
fn binaries_for_the_wrong_cpu_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture("specs/arm64-gallery.toml");
    let out = dir.path().join("out");
    let mut cmd = image_builder();
    cmd.args(["render", "--packer-version", "1.11.2", "--config"])
        .arg(&spec)
        .arg("--out")
        .arg(&out);
    with_tool_bins(&mut cmd);
    let result = run(&mut cmd);
    assert_eq!(result.code, Some(1), "{result:?}");
    assert!(
        result
            .stderr
            .contains("is built for x86-64 (amd64), but it runs on the image (arm64)"),
        "{result:?}"
    );
    assert!(
        result.stderr.contains("aarch64-unknown-linux-musl"),
        "{result:?}"
    );
    assert!(!out.exists());
}

#[test]
fn render_replaces_its_own_output_but_never_a_foreign_directory() {
    let dir = tempfile::tempdir().unwrap();
    let spec = fixture("specs/cli-auth.toml");

    let foreign = dir.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let result = render(&spec, &foreign, "1.6.6", &[]);
    assert_eq!(result.code, Some(1), "{result:?}");
    assert!(result.stderr.contains("refusing to replace"), "{result:?}");
    assert_eq!(files_under(&foreign), ["notes.txt"]);

    let out = dir.path().join("out");
    assert!(render(&spec, &out, "1.6.6", &[]).ok());
    std::fs::write(out.join("stale.txt"), "old").unwrap();
    assert!(render(&spec, &out, "1.11.2", &[]).ok());
    assert_eq!(
        files_under(&out),
        [
            "files/install-nomad",
            "files/run-nomad",
            "image.pkr.hcl",
            "inputs.json",
            "provision.sh"
        ]
    );
    assert!(std::fs::read_to_string(out.join("image.pkr.hcl"))
        .unwrap()
        .contains("required_plugins"));
    // No staging or moved-aside directories are left beside it.
    let siblings: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut siblings = siblings;
    siblings.sort();
    assert_eq!(siblings, ["foreign", "out"]);
}
