//! The workspace's binaries for tests of another crate (image-builder runs install-nomad, the
//! rehearsals run all four). `cargo test --workspace` has built them already; `cargo test -p X`
//! has not, so each is built once per test process with the same profile the test runs under.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The path of binary `bin` of workspace package `package`, built if needed.
///
/// Panics with cargo's output when the build fails: this is test set-up.
pub fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = built.get(bin) {
        return path.clone();
    }
    let profile_dir = profile_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--locked", "-p", package, "--bin", bin]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    // The target directory is the one this test binary was built into.
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let out = cmd
        .output()
        .expect("running cargo build for a workspace binary");
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = profile_dir.join(bin);
    assert!(path.is_file(), "{} was not built", path.display());
    built.insert(bin.to_string(), path.clone());
    path
}

/// `target/<profile>`: test binaries live in `target/<profile>/deps/`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current test executable");
    let deps = exe.parent().expect("test executable has a directory");
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("deps has a parent")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// Copies an executable for a test to run, through `cp` in a child process.
///
/// A test that copies a binary with `std::fs::copy` holds a writable descriptor to it while the
/// copy runs; a test on another thread that forks meanwhile inherits that descriptor until its
/// child execs, and running the copy then fails with ETXTBSY ("Text file busy"). Letting `cp`
/// hold the only writable descriptor keeps it out of every fork of the test process.
pub fn copy_executable(from: &std::path::Path, to: &std::path::Path) {
    let status = Command::new("cp")
        .arg("--")
        .arg(from)
        .arg(to)
        .status()
        .expect("running cp");
    assert!(
        status.success(),
        "cp {} {} failed: {status}",
        from.display(),
        to.display()
    );
}
