use super::*;

const MINIMAL_AZURE: &str = r#"
nomad_version = "1.9.3"

[azure]
location = "westeurope"
managed_image_name = "nomad-1.9.3"
managed_image_resource_group_name = "images"
"#;

fn resolve(text: &str) -> Result<Settings, SpecError> {
    let path = Path::new("/specs/image.toml");
    parse(text, path)?.resolve(path, &Overrides::default())
}

fn problems(text: &str) -> Vec<String> {
    match resolve(text) {
        Err(SpecError::Invalid { problems, .. }) => {
            problems.iter().map(ToString::to_string).collect()
        }
        other => panic!("expected an invalid spec, got {other:?}"),
    }
}

#[test]
fn minimal_azure_spec_takes_the_documented_defaults() {
    let settings = resolve(MINIMAL_AZURE).unwrap();
    assert_eq!(settings.arch, Arch::Amd64);
    assert_eq!(settings.release_url, DEFAULT_RELEASE_URL);
    let Target::Azure(azure) = settings.target else {
        panic!("expected the azure target")
    };
    assert_eq!(
        (
            azure.base_image.offer.as_str(),
            azure.base_image.sku.as_str()
        ),
        ("ubuntu-24_04-lts", "server")
    );
    assert_eq!(azure.auth, AuthMode::AzureCli);
    assert_eq!(azure.vm_size, "Standard_D2s_v5");
    assert_eq!(azure.placement, Placement::Location("westeurope".into()));
}

#[test]
fn unknown_fields_are_refused_with_their_name_and_line() {
    let err = resolve(&format!("{MINIMAL_AZURE}vm_sise = \"x\"\n")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("/specs/image.toml"), "{text}");
    assert!(text.contains("unknown field `vm_sise`"), "{text}");
    assert!(text.contains("line 8, column 1 (in [azure])"), "{text}");
}

#[test]
fn unknown_field_right_under_its_table_header_names_the_table() {
    let text = "nomad_version = \"1.9.3\"\n[local]\nroot = \"r\"\nrot = 1\n";
    let err = resolve(text).unwrap_err().to_string();
    assert!(err.contains("line 4, column 1 (in [local])"), "{err}");
    let err = resolve("nomad_version = \"1.9.3\"\n[local]\nrot = 1\n").unwrap_err();
    assert!(err.to_string().contains("(in [local])"), "{err}");
}

#[test]
fn missing_nomad_version_is_named() {
    let err = resolve("[local]\nroot = \"r\"\n").unwrap_err();
    assert!(
        err.to_string().contains("missing field `nomad_version`"),
        "{err}"
    );
}

#[test]
fn location_and_build_resource_group_are_exclusive() {
    let both = MINIMAL_AZURE.replace(
        "location = \"westeurope\"",
        "location = \"westeurope\"\nbuild_resource_group_name = \"rg\"",
    );
    let found = problems(&both);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("azure.location: and azure.build_resource_group_name are both set")
    );
    let neither = MINIMAL_AZURE.replace("location = \"westeurope\"", "");
    assert!(problems(&neither)[0].contains("must be set (exactly one)"));
}

#[test]
fn latest_and_malformed_versions_are_refused() {
    let latest = MINIMAL_AZURE.replace("1.9.3\"\n\n", "latest\"\n\n");
    assert!(problems(&latest)[0].starts_with("nomad_version: \"latest\" is not allowed"));
    for bad in ["1.9", "v1.9.3", "1.9.3-", "1..3", "1.9.3 "] {
        assert!(check_release_version(bad).is_err(), "{bad}");
    }
    for good in ["1.9.3", "1.10.0-rc.1", "1.9.3+ent", "0.12.26"] {
        assert!(check_release_version(good).is_ok(), "{good}");
    }
    assert!(check_cni_version("v1.6.2")
        .unwrap_err()
        .contains("leave out the leading"));
}

#[test]
fn all_problems_are_reported_at_once() {
    let text = r#"
nomad_version = "latest"
cni_sha256 = "abc"

[release]
url = "http://mirror.example.com"

[azure]
location = "westeurope"
managed_image_name = ""
managed_image_resource_group_name = "images"
tags = { "a/b" = "x", "image-builder-input-hash" = "y" }

[azure.gallery]
resource_group = "g"
gallery_name = "gal"
image_name = "nomad"
image_version = "1.9"
"#;
    let found = problems(text);
    let fields: Vec<&str> = found.iter().map(|p| p.split(':').next().unwrap()).collect();
    for expected in [
        "nomad_version",
        "cni_sha256",
        "release.url",
        "azure.managed_image_name",
        "azure.tags.\"a/b\"",
        "azure.tags.\"image-builder-input-hash\"",
        "azure.gallery.image_version",
    ] {
        assert!(fields.contains(&expected), "{expected} not in {found:#?}");
    }
}

#[test]
fn local_target_needs_a_root_and_resolves_it_against_the_spec() {
    let text = "nomad_version = \"1.9.3\"\ntarget = \"local\"\n";
    assert!(problems(text)[0].starts_with("local.root:"));
    let with_root = format!("{text}\n[local]\nroot = \"build/root\"\n");
    let settings = resolve(&with_root).unwrap();
    assert_eq!(
        settings.target,
        Target::Local {
            root: PathBuf::from("/specs/build/root")
        }
    );
}

#[test]
fn overrides_win_over_the_spec() {
    let path = Path::new("/specs/image.toml");
    let spec = parse(MINIMAL_AZURE, path).unwrap();
    let overrides = Overrides {
        target: Some(TargetKind::Local),
        root: Some(PathBuf::from("/tmp/root")),
        install_nomad: Some(PathBuf::from("/bin/in")),
        run_nomad: None,
    };
    let settings = spec.resolve(path, &overrides).unwrap();
    assert_eq!(
        settings.target,
        Target::Local {
            root: PathBuf::from("/tmp/root")
        }
    );
    assert_eq!(settings.install_nomad, Some(PathBuf::from("/bin/in")));
    assert_eq!(settings.run_nomad, None);
}

#[test]
fn a_relative_root_becomes_absolute() {
    let path = Path::new("specs/image.toml");
    let spec = parse("nomad_version = \"1.9.3\"\n[local]\nroot = \"r\"\n", path).unwrap();
    let overrides = Overrides {
        target: Some(TargetKind::Local),
        ..Overrides::default()
    };
    let Target::Local { root } = spec.resolve(path, &overrides).unwrap().target else {
        panic!()
    };
    assert_eq!(root, std::env::current_dir().unwrap().join("specs/r"));
}

#[test]
fn a_root_without_the_local_target_is_a_mistake() {
    let path = Path::new("/specs/image.toml");
    let spec = parse(MINIMAL_AZURE, path).unwrap();
    let overrides = Overrides {
        root: Some(PathBuf::from("/tmp/root")),
        ..Overrides::default()
    };
    let err = spec.resolve(path, &overrides).unwrap_err().to_string();
    assert!(
        err.contains("--root: only applies to the local target"),
        "{err}"
    );
}

#[test]
fn loopback_http_and_file_mirrors_are_accepted() {
    assert!(check_mirror_url("http://127.0.0.1:8080").is_ok());
    assert!(check_mirror_url("file:///srv/mirror").is_ok());
    assert!(check_mirror_url("https://releases.hashicorp.com").is_ok());
    assert!(check_mirror_url("ftp://x").is_err());
}

const ARM64_GALLERY: &str = r#"
nomad_version = "1.9.3"
arch = "arm64"

[azure]
location = "westeurope"

[azure.gallery]
resource_group = "images"
gallery_name = "nomad_gallery"
image_name = "nomad-arm64"
image_version = "1.9.3"
"#;

fn azure_of(text: &str) -> AzureTarget {
    match resolve(text).unwrap().target {
        Target::Azure(azure) => *azure,
        other => panic!("expected the azure target, got {other:?}"),
    }
}

#[test]
fn arm64_picks_an_arm_vm_size_and_base_image() {
    let azure = azure_of(ARM64_GALLERY);
    assert_eq!(azure.vm_size, "Standard_D2ps_v5");
    assert_eq!(azure.base_image.sku, "server-arm64");
    assert_eq!(azure.managed_image, None);
}

#[test]
fn arm64_refuses_a_managed_image_and_needs_a_gallery() {
    let with_managed = ARM64_GALLERY.replace(
            "location = \"westeurope\"",
            "location = \"westeurope\"\nmanaged_image_name = \"n\"\nmanaged_image_resource_group_name = \"g\"",
        );
    let found = problems(&with_managed);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with(
            "azure.managed_image_name: arch is arm64, and Azure cannot capture a managed image from an Arm64 VM"
        ));
    let no_gallery = MINIMAL_AZURE
            .replace("\n\n[azure]", "\narch = \"arm64\"\n\n[azure]")
            .replace("managed_image_name = \"nomad-1.9.3\"\nmanaged_image_resource_group_name = \"images\"\n", "");
    assert!(problems(&no_gallery)[0].starts_with("azure.gallery: arch is arm64"));
}

#[test]
fn a_gallery_only_amd64_image_is_a_destination_but_nothing_is_not() {
    let gallery_only = ARM64_GALLERY.replace("arch = \"arm64\"\n", "");
    let azure = azure_of(&gallery_only);
    assert_eq!(azure.managed_image, None);
    assert_eq!(azure.base_image.sku, "server");
    let nothing = MINIMAL_AZURE.replace(
        "managed_image_name = \"nomad-1.9.3\"\nmanaged_image_resource_group_name = \"images\"\n",
        "",
    );
    assert!(problems(&nothing)[0].starts_with("azure.managed_image_name: no destination"));
    let half = MINIMAL_AZURE.replace("managed_image_resource_group_name = \"images\"\n", "");
    assert!(problems(&half)[0].starts_with("azure.managed_image_resource_group_name: must be set"));
}

#[test]
fn target_regions_must_hold_the_build_region_and_not_mix_with_the_list() {
    let with = |extra: &str| format!("{ARM64_GALLERY}{extra}");
    let ok = with("\n[[azure.gallery.target_region]]\nname = \"West Europe\"\nstorage_account_type = \"Standard_ZRS\"\n\n[[azure.gallery.target_region]]\nname = \"northeurope\"\n");
    assert_eq!(azure_of(&ok).gallery.unwrap().target_region.len(), 2);
    let missing = with("\n[[azure.gallery.target_region]]\nname = \"northeurope\"\n");
    assert!(problems(&missing)[0]
        .starts_with("azure.gallery.target_region: must include the build region \"westeurope\""));
    let both = ok.replace(
        "image_version = \"1.9.3\"\n",
        "image_version = \"1.9.3\"\nreplication_regions = [\"westeurope\"]\n",
    );
    assert!(problems(&both)[0].contains("are both set"));
    let bad_type = with("\n[[azure.gallery.target_region]]\nname = \"westeurope\"\nstorage_account_type = \"Premium_ZRS\"\n");
    assert!(problems(&bad_type)[0].starts_with(
        "azure.gallery.target_region[0].storage_account_type: \"Premium_ZRS\" is not one of"
    ));
}

#[test]
fn each_packer_generation_gets_what_it_can_build() {
    let arm = azure_of(ARM64_GALLERY);
    // Packer 1.6: refused, with the reason.
    let refused = for_packer(&arm, Arch::Arm64, false, "1.6.6").unwrap_err();
    let text: Vec<String> = refused.iter().map(ToString::to_string).collect();
    assert!(
        text[0].starts_with("arch: arm64 images must be published to a Compute Gallery"),
        "{text:?}"
    );
    assert!(
        text[0].contains("Packer 1.6.6 bundles the azure-arm builder of Packer 1.6"),
        "{text:?}"
    );
    // The plugin: the build region named as the primary target region.
    assert_eq!(
        for_packer(&arm, Arch::Arm64, true, "1.11.2").unwrap(),
        Some(GalleryRegions::TargetRegions(vec![TargetRegion {
            name: "westeurope".into(),
            storage_account_type: None,
            disk_encryption_set_id: None
        }]))
    );
    // amd64 with a managed image and a gallery: Packer 1.6 gets the list, defaulted.
    let both = azure_of(&ARM64_GALLERY.replace("arch = \"arm64\"\n", "").replace(
            "location = \"westeurope\"",
            "location = \"westeurope\"\nmanaged_image_name = \"n\"\nmanaged_image_resource_group_name = \"g\"",
        ));
    assert_eq!(
        for_packer(&both, Arch::Amd64, false, "1.6.6").unwrap(),
        Some(GalleryRegions::ReplicationRegions(
            vec!["westeurope".into()]
        ))
    );
    // In a build resource group only Azure knows the region: the plugin defaults it, and
    // Packer 1.6 needs the list named.
    let mut in_group = both.clone();
    in_group.placement = Placement::BuildResourceGroup("builds".into());
    assert_eq!(
        for_packer(&in_group, Arch::Amd64, true, "1.11.2").unwrap(),
        Some(GalleryRegions::PluginDefault)
    );
    let refused = for_packer(&in_group, Arch::Amd64, false, "1.6.6").unwrap_err();
    assert!(refused[0].to_string().starts_with(
        "azure.gallery.replication_regions: Packer 1.6.6 requires replication_regions"
    ));
    // Gallery-only amd64 and target_region need the plugin too.
    let mut gallery_only = both.clone();
    gallery_only.managed_image = None;
    assert!(
        for_packer(&gallery_only, Arch::Amd64, false, "1.6.6").unwrap_err()[0]
            .to_string()
            .starts_with("azure.managed_image_name: a gallery-only destination")
    );
    assert!(for_packer(&gallery_only, Arch::Amd64, true, "1.7.0").is_ok());
}

#[test]
fn docker_needs_the_cni_plugins_and_supervisor_needs_its_package() {
    let docker = MINIMAL_AZURE.replace("\n\n[azure]", "\ndocker = true\n\n[azure]");
    assert!(problems(&docker)[0].starts_with("docker: Docker jobs use Nomad's bridge networking"));
    let with_cni = docker.replace(
        "docker = true",
        "docker = true\ncni_version = \"1.6.2\"\ninit = \"supervisor\"",
    );
    let settings = resolve(&with_cni).unwrap();
    assert_eq!(settings.packages(), ["docker.io", "supervisor"]);
    assert_eq!(
        resolve(MINIMAL_AZURE).unwrap().packages(),
        Vec::<&str>::new()
    );
}
