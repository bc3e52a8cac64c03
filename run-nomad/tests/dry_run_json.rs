//! `--dry-run --json`: one JSON document on stdout with every file run-nomad would write (path,
//! target under --root, mode, owner, state, redacted content), the leftovers it would remove,
//! unfinished work from an earlier run, and the service commands; nothing is touched.

mod common;

use common::{against_root, instance, output, FakeRoot, StubSystemctl, GOSSIP_KEY};
use serde_json::Value;

fn dry_run(root: &FakeRoot, systemctl: &StubSystemctl, args: &[&str]) -> Value {
    let mut cmd = against_root(root, &instance());
    cmd.arg("--systemctl")
        .arg(systemctl.program())
        .args(["--dry-run", "--json"])
        .args(args);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(ok, "{stdout}\n{stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\n{stdout}"))
}

#[test]
fn the_plan_lists_files_states_and_commands_and_redacts_secrets() {
    let root = FakeRoot::new();
    let systemctl = StubSystemctl::new();
    let plan = dry_run(
        &root,
        &systemctl,
        &[
            "--server",
            "--num-servers",
            "3",
            "--gossip-key-file",
            "/opt/nomad/config/gossip.key",
            "--environment",
            "ARM_CLIENT_SECRET=hunter2",
        ],
    );
    let text = plan.to_string();
    assert!(!text.contains(GOSSIP_KEY), "the gossip key leaked: {text}");
    assert!(
        !text.contains("hunter2"),
        "an environment value leaked: {text}"
    );

    assert!(plan["key_vault"].is_null(), "no --key-vault: {plan}");
    let files = plan["files"].as_array().unwrap();
    let kinds: Vec<&str> = files.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "agent-config",
            "environment-file",
            "systemd-unit",
            "watcher-unit"
        ]
    );
    let watcher = &files[3];
    assert_eq!(
        watcher["path"],
        "/etc/systemd/system/nomad-scheduled-events.service"
    );
    assert_eq!(watcher["mode"], "0644");
    let unit = watcher["contents"].as_str().unwrap();
    assert!(
        unit.contains(" watch-events --server --imds-endpoint "),
        "{unit}"
    );
    let config = &files[0];
    assert_eq!(config["path"], "/opt/nomad/config/default.hcl");
    assert_eq!(
        config["target"].as_str().unwrap(),
        root.at("/opt/nomad/config/default.hcl").to_str().unwrap()
    );
    assert_eq!(config["mode"], "0640");
    assert_eq!(config["uid"], 0);
    assert_eq!(config["state"], "new");
    assert!(config["contents"]
        .as_str()
        .unwrap()
        .contains("encrypt          = \"<redacted>\""));
    assert_eq!(files[1]["mode"], "0600");
    assert!(files[1]["contents"]
        .as_str()
        .unwrap()
        .contains("ARM_CLIENT_SECRET=\"<redacted>\""));
    assert_eq!(plan["remove"], serde_json::json!([]));
    assert_eq!(plan["pending"], Value::Null);
    assert_eq!(plan["service"]["action"], "commands");
    let program = systemctl.program().display().to_string();
    assert_eq!(
        plan["service"]["if_stopped"],
        serde_json::json!([
            format!("{program} daemon-reload"),
            format!("{program} enable nomad.service"),
            format!("{program} restart nomad.service"),
            format!("{program} enable nomad-scheduled-events.service"),
            format!("{program} restart nomad-scheduled-events.service"),
        ])
    );
    // Nothing was written, nothing was asked of systemd.
    assert!(!root.at("/opt/nomad/config/default.hcl").exists());
    assert!(!root.at("/opt/nomad/config/run-nomad.env").exists());
    assert!(systemctl.take_calls().is_empty());
}

#[test]
fn unfinished_work_and_no_start_show_in_the_plan() {
    let root = FakeRoot::new();
    let systemctl = StubSystemctl::new();
    std::fs::write(
        root.at("/opt/nomad/config/.run-nomad.pending"),
        r#"{"agent_config":true,"service_definition":false}"#,
    )
    .unwrap();
    let plan = dry_run(&root, &systemctl, &["--client", "--no-start"]);
    assert_eq!(
        plan["pending"],
        serde_json::json!({ "agent_config": true, "service_definition": false, "watcher": false })
    );
    assert_eq!(
        plan["service"],
        serde_json::json!({ "action": "not-touched" })
    );
}

#[test]
fn without_the_watcher_the_plan_has_no_watcher_and_removes_an_earlier_one() {
    let root = FakeRoot::new();
    let systemctl = StubSystemctl::new();
    let earlier = root.at("/etc/systemd/system/nomad-scheduled-events.service");
    std::fs::write(&earlier, "[Service]\nExecStart=/bin/true\n").unwrap();
    let plan = dry_run(&root, &systemctl, &["--client", "--no-watch-events"]);
    let kinds: Vec<&str> = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["agent-config", "environment-file", "systemd-unit"]);
    assert_eq!(
        plan["remove"],
        serde_json::json!([earlier.display().to_string()])
    );
    let program = systemctl.program().display().to_string();
    let commands = plan["service"]["if_running"].as_array().unwrap();
    assert!(commands.contains(&Value::String(format!(
        "{program} disable --now nomad-scheduled-events.service"
    ))));
    assert!(earlier.exists(), "a dry run touches nothing");
}
