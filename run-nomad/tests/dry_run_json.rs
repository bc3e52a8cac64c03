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

    let files = plan["files"].as_array().unwrap();
    let kinds: Vec<&str> = files.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["agent-config", "environment-file", "systemd-unit"]);
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
        serde_json::json!({ "agent_config": true, "service_definition": false })
    );
    assert_eq!(
        plan["service"],
        serde_json::json!({ "action": "not-touched" })
    );
}
