//! Shared set-up of cluster-deploy's integration tests.
#![allow(dead_code)]

pub mod azure;
pub mod deploy;
pub mod nomad;
pub mod secure;

use std::path::{Path, PathBuf};

use cluster_deploy::config;
use cluster_deploy::model::Cluster;
use cluster_deploy::template;
use serde_json::Value;

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/cluster.toml` at the workspace root.
pub fn example_config() -> PathBuf {
    manifest_dir().join("../examples/cluster.toml")
}

/// The shared Azure schemas (`../shared/azure-schemas/schemas` from the workspace).
pub fn schemas_dir() -> PathBuf {
    manifest_dir().join("../../shared/azure-schemas/schemas")
}

pub fn fixture(name: &str) -> PathBuf {
    manifest_dir().join("tests/fixtures").join(name)
}

pub fn cluster_from(path: &Path) -> Cluster {
    let file = config::load(path).unwrap_or_else(|e| panic!("{e}"));
    Cluster::from_file(&file)
}

pub fn example_template() -> Value {
    template::render(&cluster_from(&example_config()))
}

/// The example cluster file with some keys replaced (`key = value` lines; `key = DROP` removes
/// the key) and lines added at the end (tables), written to `dir`.
pub fn variant(dir: &Path, replace: &[&str], append: &str) -> PathBuf {
    let text = std::fs::read_to_string(example_config()).unwrap();
    let keys: Vec<&str> = replace
        .iter()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.trim()))
        .collect();
    let mut out = String::new();
    for line in replace.iter().filter(|l| !l.ends_with("= DROP")) {
        out.push_str(line);
        out.push('\n');
    }
    for line in text.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim()).unwrap_or("");
        if !keys.contains(&key) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str(append);
    let path = dir.join("cluster.toml");
    std::fs::write(&path, out).unwrap();
    path
}

/// A valid gossip key for tests (base64 of 32 bytes).
pub const GOSSIP_KEY: &str = "kGBHU6u7XuB0vq9Y3zT0l2tZ7yV3p3hKx5m9bJ8rG2c=";

/// A command running `tests/sdk/<script>` with the interpreter of the virtualenv holding
/// Microsoft's Python SDKs (`target/azure-sdk`, made by scripts/install-test-deps.sh;
/// `AZURE_SDK_PYTHON` names another), talking to loopback doubles only. Fails, never skips,
/// when the interpreter is missing.
pub fn sdk_command(script: &str) -> std::process::Command {
    let python = match std::env::var_os("AZURE_SDK_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => manifest_dir().join("../target/azure-sdk/bin/python"),
    };
    assert!(
        python.is_file(),
        "{} is missing: create it with\n  python3 -m venv target/azure-sdk && target/azure-sdk/bin/pip install -r cluster-deploy/tests/sdk/requirements.txt",
        python.display()
    );
    let mut command = std::process::Command::new(python);
    command
        .arg(manifest_dir().join("tests/sdk").join(script))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env("NO_PROXY", "127.0.0.1");
    command
}
