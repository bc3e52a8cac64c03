//! Shared set-up for the CLI tests: a release mirror double on 127.0.0.1, a seeded filesystem
//! root, a stand-in run-nomad, and helpers to compare a root before and after a run.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use support::doubles::mirror::{Catalogue, Mirror};

pub const RUN_NOMAD: &[u8] = b"#!/bin/sh\necho run-nomad stand-in \"$@\"\n";

pub struct Env {
    pub mirror: Mirror,
    pub root: tempfile::TempDir,
    scratch: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env::with_catalogue(Catalogue::default())
    }

    pub fn with_catalogue(catalogue: Catalogue) -> Env {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        // What the image-builder's local target seeds: a root entry in each.
        fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/bash\n",
        )
        .unwrap();
        fs::write(root.path().join("etc/group"), "root:x:0:\n").unwrap();
        let scratch = tempfile::tempdir().unwrap();
        fs::write(scratch.path().join("run-nomad"), RUN_NOMAD).unwrap();
        Env {
            mirror: Mirror::start_with(catalogue),
            root,
            scratch,
        }
    }

    pub fn run_nomad(&self) -> PathBuf {
        self.scratch.path().join("run-nomad")
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// The arguments [`Env::cmd`] passes: every endpoint pointed at the double and every path
    /// under the root.
    pub fn args(&self, version: &str) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        let mut add = |a: &dyn AsRef<std::ffi::OsStr>| args.push(a.as_ref().to_os_string());
        add(&"--version");
        add(&version);
        add(&"--root");
        add(&self.root.path());
        add(&"--download-url");
        add(&self.mirror.url());
        add(&"--public-key");
        add(&self.mirror.public_key_file());
        add(&"--run-nomad");
        add(&self.run_nomad());
        add(&"--arch");
        add(&"amd64");
        add(&"--download-attempts");
        add(&"3");
        args
    }

    /// The binary with every endpoint pointed at the double and every path under the root.
    pub fn cmd(&self, version: &str) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_install-nomad"));
        cmd.args(self.args(version))
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            // Set as a user debugging a failure might have it: no error may show a backtrace.
            .env("RUST_BACKTRACE", "1")
            .timeout(std::time::Duration::from_secs(120));
        cmd
    }

    /// A path inside the root, given as the target system sees it.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.root.path().join(inside.trim_start_matches('/'))
    }

    /// The uid and gid of a user in the root's passwd.
    pub fn account(&self, name: &str) -> Option<(u32, u32)> {
        let passwd = fs::read_to_string(self.path("/etc/passwd")).unwrap();
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields[0] == name).then(|| (fields[2].parse().unwrap(), fields[3].parse().unwrap()))
        })
    }

    /// Every entry under the root: content (files), target (symlinks), mode and owner.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        walk(self.root.path(), self.root.path(), &mut out);
        out
    }

    /// [`Env::snapshot`] comparable across environments: without inode numbers, and with the
    /// receipt shown as its JSON without the `url` fields (they name this mirror's port).
    pub fn portable_snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut snapshot = self.snapshot();
        for (path, value) in snapshot.iter_mut() {
            if path.ends_with(".install-nomad.json") {
                let mut receipt: serde_json::Value =
                    serde_json::from_slice(&fs::read(self.root.path().join(path)).unwrap())
                        .unwrap();
                for component in receipt["components"].as_object_mut().unwrap().values_mut() {
                    component.as_object_mut().unwrap().remove("url");
                }
                *value = format!("receipt {receipt}");
            } else if let Some(at) = value.find(" ino ") {
                value.truncate(at);
            }
        }
        snapshot
    }

    /// Checks that the receipt describes the files on disk: every file it lists has the
    /// recorded SHA-256. Returns the receipt.
    pub fn assert_receipt_matches_files(&self) -> serde_json::Value {
        let receipt: serde_json::Value =
            serde_json::from_slice(&fs::read(self.path("/opt/nomad/.install-nomad.json")).unwrap())
                .unwrap();
        for (key, component) in receipt["components"].as_object().unwrap() {
            for (file, sha) in component["files"].as_object().unwrap() {
                let actual = support::hash::sha256_file(&self.path(file))
                    .unwrap_or_else(|e| panic!("{key}: {file}: {e}"));
                assert_eq!(&actual, sha.as_str().unwrap(), "{key}: {file}");
            }
        }
        receipt
    }

    /// Leftovers a failed or finished run must never leave: staging directories, partial
    /// downloads, backups, new symlinks not renamed, journals.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        self.snapshot()
            .into_keys()
            .filter(|p| {
                let s = p.to_string_lossy();
                s.contains(".install-nomad-staging")
                    || s.ends_with(".partial")
                    || s.contains("install-nomad-backup")
                    || s.contains("install-nomad-new")
                    || s.contains("install-nomad-journal")
            })
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).unwrap();
        let relative = path.strip_prefix(root).unwrap().to_path_buf();
        let owner = format!("{:o} {}:{}", meta.mode() & 0o7777, meta.uid(), meta.gid());
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).unwrap();
            out.insert(relative, format!("symlink -> {}", target.display()));
        } else if meta.is_dir() {
            out.insert(relative, format!("dir {owner}"));
            walk(root, &path, out);
        } else {
            let sha = support::hash::sha256_file(&path).unwrap();
            out.insert(relative, format!("file {owner} {sha} ino {}", meta.ino()));
        }
    }
}

/// Mode bits, uid and gid of a path.
pub fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (meta.mode() & 0o7777, meta.uid(), meta.gid())
}

pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails when a log shows Rust internals instead of an error for a user: a panic message, a
/// backtrace (the CLI runs with `RUST_BACKTRACE=1`), or a debug dump.
pub fn assert_no_rust_internals(log: &str) {
    for marker in [
        "panicked",
        "backtrace",
        "Backtrace",
        "RUST_BACKTRACE",
        "snafu",
        ".rs:",
    ] {
        assert!(
            !log.contains(marker),
            "{marker:?} in a user-facing error:\n{log}"
        );
    }
}
