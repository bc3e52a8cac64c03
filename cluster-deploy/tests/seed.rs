//! The Terraform module moves over: a tfvars-style cluster file that sets every variable of
//! `modules/nomad-cluster/vars.tf` loads, each variable mapped or kept with a warning that
//! says why it is obsolete; the warnings surface in `plan` (text and `--json`); the names the
//! module's README uses (`ami_id`, `user_data`, `tenancy`) are accepted too.

mod common;

use cluster_deploy::config;
use cluster_deploy::model::Cluster;
use serde_json::Value;

fn seed() -> std::path::PathBuf {
    common::fixture("seed-terraform.toml")
}

#[test]
fn a_seed_tfvars_with_every_module_variable_loads() {
    let file = config::load(&seed()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.instance_tier, "Standard");
    assert_eq!(
        file.os_disk_type, "Standard_LRS",
        "root_volume_type standard"
    );
    assert_eq!(file.root_volume_size, 50);
    assert!(file
        .subnet_id
        .as_deref()
        .unwrap()
        .ends_with("/subnets/nomad"));
    let commands = file.custom_data.as_ref().unwrap();
    assert_eq!(commands.field, "custom_data");
    assert!(commands.script.contains("/etc/motd"));
    let warned: Vec<&str> = file.warnings.iter().map(|w| w.field.as_str()).collect();
    assert_eq!(
        warned,
        [
            "root_volume_type",
            "storage_account_name",
            "wait_for_capacity_timeout"
        ]
    );
    // The RSA key is 2048 bits: accepted.
    let cluster = Cluster::from_file(&file);
    assert_eq!(cluster.sku_tier, "Standard");
    assert_eq!(cluster.client_pools.len(), 1);
    // The boot commands run on every VM before run-nomad.
    for set in cluster.scale_sets() {
        let script = cluster_deploy::custom_data::script(&cluster, set);
        let commands = script.find("Boot commands from `custom_data`").unwrap();
        let run_nomad = script.find("exec /opt/nomad/bin/run-nomad").unwrap();
        assert!(commands < run_nomad, "{script}");
    }
}

fn plan(args: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("cluster-deploy")
        .unwrap()
        .env_clear()
        .args(["plan", "--offline", "--config"])
        .arg(seed())
        .arg("--out")
        .arg(dir.path().join("azuredeploy.json"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plan_shows_why_obsolete_variables_are_ignored() {
    let (text, log) = plan(&[]);
    for line in [
        "warning: `storage_account_name` is obsolete and ignored: the scale sets use managed disks",
        "warning: `wait_for_capacity_timeout` is obsolete and ignored",
        "warning: `root_volume_type` is \"standard\", an AWS EBS volume type: the OS disk is Azure's Standard_LRS",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    // Logged for every command, too.
    assert!(log.contains("storage_account_name"), "{log}");
    let (json, _) = plan(&["--json"]);
    let plan: Value = serde_json::from_str(&json).unwrap();
    let warnings: Vec<&str> = plan["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[1].starts_with("`storage_account_name` is obsolete"));
}

#[test]
fn the_readme_names_are_accepted_too() {
    let text = std::fs::read_to_string(seed()).unwrap();
    let text = text
        .replace("image_id  ", "ami_id    ")
        .replace("custom_data  ", "user_data    ")
        .replace(
            "egress = \"existing\"",
            "egress = \"existing\"\ntenancy = \"default\"",
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    let file = config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(file.image_id.ends_with("/images/nomad-1.10.5"));
    assert_eq!(file.custom_data.unwrap().field, "user_data");
    assert!(file.warnings.iter().any(|w| w.field == "tenancy"));
}

#[test]
fn the_module_custom_data_that_starts_nomad_is_refused_with_the_reason() {
    let text = std::fs::read_to_string(seed()).unwrap().replace(
        "echo 'nomad-prod node' > /etc/motd\\n",
        "/opt/nomad/bin/run-nomad --server --num-servers 3\\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    let err = config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("`custom_data` runs run-nomad (line 3)"),
        "{err}"
    );
    assert!(
        err.contains("cluster-deploy runs run-nomad itself"),
        "{err}"
    );
}
