//! Errors name their real cause: a full disk while downloading or extracting says the disk is
//! full (which filesystem, how much is free), not that the release was refused; a lock held by
//! another run says so and names the process. The full disk is a real tmpfs of a few MiB
//! mounted under the test root (the tests run as root).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{assert_no_rust_internals, stderr, Env};
use support::doubles::mirror::{Mirror, Tamper};

/// A tmpfs mounted for the test's lifetime; unmounted (lazily, so a busy file cannot keep it)
/// when dropped, panics included.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} (the tests run as root): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            at: at.to_path_buf(),
        }
    }

    fn free(&self) -> u64 {
        let fs = nix::sys::statvfs::statvfs(&self.at).unwrap();
        fs.blocks_available() * fs.fragment_size()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

fn zip_url(env: &Env) -> String {
    format!(
        "{}{}",
        env.mirror.url(),
        Mirror::archive_path("nomad", "1.10.0", "amd64")
    )
}

/// Installs 1.9.7 onto a root whose `/opt` is a small tmpfs, lets `fill` use up space, then
/// tries 1.10.0 (whose binary is 8 MiB): it must fail naming the full filesystem, and leave
/// 1.9.7 exactly as it was.
fn assert_disk_full(fill: impl FnOnce(&Tmpfs), during: &str) -> String {
    let env = Env::new();
    let opt = Tmpfs::mount(&env.path("/opt"), "4m");
    let out = env.cmd("1.9.7").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    env.mirror
        .tamper("nomad", "1.10.0", Tamper::LargeBinary { bytes: 8 << 20 });
    fill(&opt);
    let before = env.snapshot();
    let out = env.cmd("1.10.0").output().unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_no_rust_internals(&log);
    let mount = fs::canonicalize(&opt.at).unwrap();
    let error = log
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line in:\n{log}"));
    assert!(
        error.starts_with(&format!(
            "error: {during} {}: the filesystem mounted at {} is full (no space left on device; it holds ",
            zip_url(&env),
            mount.display()
        )),
        "{log}"
    );
    assert!(!log.contains("refusing"), "{log}");
    assert_eq!(env.snapshot(), before, "{log}");
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
    log
}

#[test]
fn a_full_disk_while_extracting_says_so() {
    assert_disk_full(|_| {}, "extracting");
}

#[test]
fn a_full_disk_while_downloading_says_so() {
    // Leave 4 KiB: less than the zip.
    assert_disk_full(
        |opt| {
            let filler = opt.at.join("filler");
            let keep = 4 << 10;
            fs::write(&filler, vec![0u8; (opt.free() - keep) as usize]).unwrap();
        },
        "downloading",
    );
}

#[test]
fn a_lock_held_by_another_run_is_named_and_nothing_is_fetched() {
    let env = Env::new();
    let out = env.cmd("1.9.7").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let before = env.snapshot();
    env.mirror.clear_requests();
    let dir = fs::File::open(env.path("/opt/nomad")).unwrap();
    let held = nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusiveNonblock).unwrap();
    let out = env.cmd("1.10.0").output().unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "error: another install-nomad run (process {}) holds the install lock on {}: wait for it to finish and run again",
            std::process::id(),
            env.path("/opt/nomad").display()
        )),
        "{log}"
    );
    assert!(
        env.mirror.requests().is_empty(),
        "{:?}",
        env.mirror.requests()
    );
    assert_eq!(env.snapshot(), before);
    drop(held);
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
