//! The `-machine-readable` parser on the transcript recorded from Debian's Packer 1.6.6
//! (`../shared/fixtures/packer/null-build-machine-readable.txt`: a successful HCL2 build, a JSON
//! build with `%!(PACKER_COMMA)` and stderr output, a failing build, a failing validate) and on
//! transcripts with errors and multi-line messages.

mod common;

use image_builder::machine_readable::{parse_line, readable_lines, Event, Transcript, UiLevel};

/// The fixture's sections, split at its `# ...` comment lines (which are not Packer output).
fn fixture_sections() -> Vec<String> {
    let text = std::fs::read_to_string(common::shared(
        "fixtures/packer/null-build-machine-readable.txt",
    ))
    .expect("the shared Packer transcript fixture (../shared/fixtures/packer/)");
    let mut sections = vec![String::new()];
    for line in text.lines() {
        if line.starts_with('#') {
            sections.push(String::new());
        } else {
            let last = sections.last_mut().unwrap();
            last.push_str(line);
            last.push('\n');
        }
    }
    sections
        .into_iter()
        .filter(|s| s.lines().any(|l| parse_line(l).is_some()))
        .collect()
}

#[test]
fn every_record_of_the_recorded_transcript_parses() {
    let text = std::fs::read_to_string(common::shared(
        "fixtures/packer/null-build-machine-readable.txt",
    ))
    .unwrap();
    let records: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert!(records.len() > 40, "{} records", records.len());
    for line in records {
        let parsed = parse_line(line).unwrap_or_else(|| panic!("not parsed: {line}"));
        assert!(parsed.timestamp >= 1_795_803_117, "{line}");
        assert!(!parsed.kind.is_empty());
    }
}

#[test]
fn the_successful_hcl2_build_has_two_null_artifacts_and_no_errors() {
    let sections = fixture_sections();
    let first = Transcript::from_text(&sections[0]);
    assert_eq!(first.artifacts.len(), 2);
    for (i, artifact) in first.artifacts.iter().enumerate() {
        assert_eq!(artifact.target, "null.local");
        assert_eq!(artifact.index, i);
        assert_eq!(artifact.builder_id, "fnoeding.null");
        assert_eq!(artifact.id, "Null");
        assert_eq!(
            artifact.string,
            "Did not export anything. This is the null builder"
        );
        assert!(artifact.files.is_empty());
    }
    assert!(first.build_errors.is_empty());
    assert!(first.ui_errors.is_empty());
    assert_eq!(first.error_count, None);

    let provisioner_output: Vec<String> = sections[0]
        .lines()
        .filter_map(parse_line)
        .filter_map(|l| match Event::from(l) {
            Event::Ui {
                level: UiLevel::Message,
                text,
            } => Some(text.trim().to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        provisioner_output,
        ["null.local: installing nomad 1.7.7", "null.local: done"]
    );
}

#[test]
fn packer_comma_escapes_and_stderr_lines_are_decoded() {
    let sections = fixture_sections();
    let json_build = &sections[1];
    let events: Vec<Event> = json_build
        .lines()
        .filter_map(parse_line)
        .map(Event::from)
        .collect();
    assert!(events.contains(&Event::Ui {
        level: UiLevel::Message,
        text: "    nomad-null: line with, comma".into()
    }));
    // A provisioner's stderr arrives as `ui,error`.
    assert!(events.contains(&Event::Ui {
        level: UiLevel::Error,
        text: "==> nomad-null: to-stderr".into()
    }));
    let transcript = Transcript::from_text(json_build);
    assert_eq!(transcript.ui_errors, ["==> nomad-null: to-stderr"]);
    assert!(transcript.build_errors.is_empty());
}

#[test]
fn the_failing_build_reports_packers_error_and_the_error_output() {
    let sections = fixture_sections();
    let failing = Transcript::from_text(&sections[2]);
    assert_eq!(failing.error_count, Some(1));
    assert_eq!(
        failing.build_errors,
        [(
            "null".to_string(),
            "Script exited with non-zero exit status: 3.Allowed exit codes are: [0]".to_string()
        )]
    );
    assert!(failing.artifacts.is_empty());
    let report = failing.error_report();
    assert!(
        report.starts_with("Packer reported:\n  null: Script exited with non-zero exit status: 3."),
        "{report}"
    );
    assert!(
        report.contains("  Build 'null' errored after 7 milliseconds 501 microseconds"),
        "{report}"
    );
    // The `\n==> Some builds didn't complete...` message is split into its lines.
    assert!(
        report.contains("\n  ==> Some builds didn't complete successfully and had errors:"),
        "{report}"
    );
}

#[test]
fn a_multi_line_validate_error_is_unescaped_into_lines() {
    let sections = fixture_sections();
    let validate = Transcript::from_text(&sections[3]);
    assert_eq!(
        validate.ui_errors,
        [
            "Error: Failed to prepare build: \"azure-arm\"",
            "1 error(s) occurred:",
            "* A capture_name_prefix or managed_image_resource_group_name must be specified",
        ]
    );
}

#[test]
fn a_transcript_with_errors_commas_and_multi_line_messages() {
    // As Packer 1.6.6 writes an azure-arm failure: the provisioner's stderr (with a comma and a
    // multi-line error chain), the cleanup notice, then the build error.
    let text = "\
1795900000,,ui,say,==> azure-arm.nomad: Provisioning with shell script: /tmp/image-builder/provision.sh
1795900001,,ui,message,    azure-arm.nomad: image-builder: installing Nomad 1.10.5 into /
1795900002,,ui,error,==> azure-arm.nomad: error: failed to install Nomad 1.10.5\\n==> azure-arm.nomad:   caused by: GET https://releases.hashicorp.com/nomad/1.10.5/nomad_1.10.5_SHA256SUMS: 404 Not Found%!(PACKER_COMMA) the version does not exist\\r
1795900003,,ui,say,==> azure-arm.nomad: Provisioning step had errors: Running the cleanup provisioner%!(PACKER_COMMA) if present...
1795900004,,ui,say,==> azure-arm.nomad: Deleting resource group ...
1795900005,,ui,error,Build 'azure-arm.nomad' errored after 4 minutes 2 seconds: Script exited with non-zero exit status: 1.Allowed exit codes are: [0]
1795900005,,error-count,1
1795900005,,ui,error,\\n==> Some builds didn't complete successfully and had errors:
1795900005,azure-arm.nomad,error,Script exited with non-zero exit status: 1.Allowed exit codes are: [0]
1795900005,,ui,error,--> azure-arm.nomad: Script exited with non-zero exit status: 1.Allowed exit codes are: [0]
1795900005,,ui,say,\\n==> Builds finished but no artifacts were created.
";
    let transcript = Transcript::from_text(text);
    assert_eq!(transcript.error_count, Some(1));
    assert_eq!(transcript.build_errors.len(), 1);
    assert_eq!(
        &transcript.ui_errors[..2],
        [
            "==> azure-arm.nomad: error: failed to install Nomad 1.10.5",
            "==> azure-arm.nomad:   caused by: GET https://releases.hashicorp.com/nomad/1.10.5/nomad_1.10.5_SHA256SUMS: 404 Not Found, the version does not exist",
        ]
    );
    let cleanup = parse_line(text.lines().nth(3).unwrap()).unwrap();
    assert_eq!(
        cleanup.data[1],
        "==> azure-arm.nomad: Provisioning step had errors: Running the cleanup provisioner, if present..."
    );
    let finished = parse_line(text.lines().last().unwrap()).unwrap();
    let lines: Vec<&str> = readable_lines(&finished.data[1]).collect();
    assert_eq!(
        lines,
        ["==> Builds finished but no artifacts were created."]
    );
    assert!(transcript.artifacts.is_empty());
}

#[test]
fn an_azure_artifact_description_yields_the_image_ids() {
    // The artifact lines of a successful azure-arm build; the description is laid out as
    // packer-plugin-azure's `Artifact.String()` writes it.
    let text = "\
1795900100,azure-arm.nomad,artifact-count,1
1795900100,azure-arm.nomad,artifact,0,builder-id,Azure.ResourceManagement.VMImage
1795900100,azure-arm.nomad,artifact,0,id,/subscriptions/s/resourceGroups/img/providers/Microsoft.Compute/images/nomad-1.10.5
1795900100,azure-arm.nomad,artifact,0,string,Azure.ResourceManagement.VMImage:\\n\\nOSType: Linux\\nManagedImageResourceGroupName: img\\nManagedImageName: nomad-1.10.5\\nManagedImageId: /subscriptions/s/resourceGroups/img/providers/Microsoft.Compute/images/nomad-1.10.5\\nManagedImageLocation: westeurope\\nManagedImageSharedImageGalleryId: /subscriptions/s/resourceGroups/img/providers/Microsoft.Compute/galleries/g/images/nomad/versions/1.10.5\\nSharedImageGalleryReplicatedRegions: westeurope%!(PACKER_COMMA) northeurope\\n
1795900100,azure-arm.nomad,artifact,0,files-count,0
1795900100,azure-arm.nomad,artifact,0,end
";
    let transcript = Transcript::from_text(text);
    let artifact = &transcript.artifacts[0];
    assert_eq!(artifact.builder_id, "Azure.ResourceManagement.VMImage");
    assert_eq!(
        artifact.described("ManagedImageId"),
        Some("/subscriptions/s/resourceGroups/img/providers/Microsoft.Compute/images/nomad-1.10.5")
    );
    assert_eq!(
        artifact.described("ManagedImageSharedImageGalleryId"),
        Some("/subscriptions/s/resourceGroups/img/providers/Microsoft.Compute/galleries/g/images/nomad/versions/1.10.5")
    );
    assert_eq!(
        artifact.described("SharedImageGalleryReplicatedRegions"),
        Some("westeurope, northeurope")
    );
}
