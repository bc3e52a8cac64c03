//! What must be refused (tampered archive or sums, a signature by another key, truncated and
//! cut-off downloads, unsafe zip entries), each with a clear error naming the URL, the previous
//! install left byte for byte as it was, and no staging left; and the transient faults that
//! must be ridden out (dropped connections resumed with Range, 429 with Retry-After, 5xx).

mod common;

use std::fs;

use common::{assert_no_rust_internals, stderr, Env};
use support::doubles::mirror::{Failure, Mirror, Tamper, UnsafeEntry};

/// Installs 1.9.7, then tries 1.10.0 after `break_it`, and checks the refusal: non-zero exit,
/// every `expected` text in stderr, the root unchanged, nothing left behind.
fn assert_refused(env: &Env, break_it: impl FnOnce(&Env), expected: &[String]) -> String {
    let out = env.cmd("1.9.7").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let before = env.snapshot();
    let old_binary = fs::read(env.path("/opt/nomad/bin/nomad")).unwrap();
    break_it(env);
    let out = env.cmd("1.10.0").output().unwrap();
    let log = stderr(&out);
    assert!(!out.status.success(), "expected a refusal:\n{log}");
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_no_rust_internals(&log);
    for text in expected {
        assert!(log.contains(text.as_str()), "missing {text:?} in:\n{log}");
    }
    assert_eq!(
        env.snapshot(),
        before,
        "the previous install changed:\n{log}"
    );
    assert_eq!(
        fs::read(env.path("/opt/nomad/bin/nomad")).unwrap(),
        old_binary
    );
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
    log
}

fn url(env: &Env, path: &str) -> String {
    format!("{}{path}", env.mirror.url())
}

#[test]
fn a_tampered_archive_is_refused_before_extraction() {
    let env = Env::new();
    let zip = url(&env, &Mirror::archive_path("nomad", "1.10.0", "amd64"));
    let log = assert_refused(
        &env,
        |env| env.mirror.tamper("nomad", "1.10.0", Tamper::Archive),
        &[
            format!("refusing {zip}: its SHA-256 is"),
            "nothing was extracted".into(),
        ],
    );
    assert!(log.contains("was expected"), "{log}");
}

#[test]
fn tampered_sums_are_refused() {
    let env = Env::new();
    let sums = url(&env, &Mirror::sums_path("nomad", "1.10.0"));
    let log = assert_refused(
        &env,
        |env| env.mirror.tamper("nomad", "1.10.0", Tamper::Sums),
        &[
            format!("refusing {sums}: its signature"),
            "does not verify".into(),
        ],
    );
    assert!(log.contains("does not match the signed file"), "{log}");
    // Refused before the archive was even requested.
    assert!(!env
        .mirror
        .requests()
        .iter()
        .any(|r| r.path == Mirror::archive_path("nomad", "1.10.0", "amd64")));
}

#[test]
fn a_signature_by_another_key_is_refused() {
    let env = Env::new();
    let sums = url(&env, &Mirror::sums_path("nomad", "1.10.0"));
    let trusted = env.mirror.fingerprint();
    assert_refused(
        &env,
        |env| {
            env.mirror
                .tamper("nomad", "1.10.0", Tamper::OtherKeySignature)
        },
        &[
            format!("refusing {sums}"),
            "which is not a key of the trusted certificate".into(),
            trusted,
        ],
    );
}

#[test]
fn a_truncated_download_is_refused() {
    let env = Env::new();
    let path = Mirror::archive_path("nomad", "1.10.0", "amd64");
    let zip = url(&env, &path);
    assert_refused(
        &env,
        |env| env.mirror.fail(&path, Failure::Truncate, u32::MAX),
        &[format!("refusing {zip}: its SHA-256 is")],
    );
}

#[test]
fn a_connection_dropped_mid_body_every_time_is_refused() {
    let env = Env::new();
    let path = Mirror::archive_path("nomad", "1.10.0", "amd64");
    let zip = url(&env, &path);
    let log = assert_refused(
        &env,
        |env| env.mirror.fail(&path, Failure::DropMidBody, u32::MAX),
        &[format!("gave up on {zip} after 3 attempts")],
    );
    assert!(log.contains("retrying"), "{log}");
}

#[test]
fn zips_with_unsafe_entries_are_refused() {
    for (entry, name, reason) in [
        (UnsafeEntry::ParentDir, "../escaped.txt", "`..` in the path"),
        (
            UnsafeEntry::AbsolutePath,
            "/tmp/escaped.txt",
            "absolute path",
        ),
        (UnsafeEntry::Symlink, "nomad", "symbolic link"),
    ] {
        let env = Env::new();
        let zip = url(&env, &Mirror::archive_path("nomad", "1.10.0", "amd64"));
        assert_refused(
            &env,
            |env| {
                env.mirror
                    .tamper("nomad", "1.10.0", Tamper::UnsafeArchive(entry))
            },
            &[
                format!("refusing {zip}"),
                format!("has an unsafe entry {name:?}: {reason}"),
            ],
        );
        assert!(!env.path("/escaped.txt").exists());
        assert!(!env.path("/opt/escaped.txt").exists());
    }
}

#[test]
fn a_first_install_that_fails_leaves_nothing_at_all() {
    let env = Env::new();
    env.mirror.tamper("nomad", "1.10.0", Tamper::Archive);
    let before = env.snapshot();
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(!out.status.success());
    assert_eq!(env.snapshot(), before, "{}", stderr(&out));
    assert!(!env.path("/opt/nomad").exists());
}

#[test]
fn a_dropped_connection_resumes_with_range() {
    let env = Env::new();
    let path = Mirror::archive_path("nomad", "1.10.0", "amd64");
    env.mirror.fail(&path, Failure::DropMidBody, 1);
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("resuming at byte"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read(env.path("/opt/nomad/bin/nomad")).unwrap(),
        env.mirror.binary("nomad", "1.10.0", "amd64")
    );
    let gets: Vec<_> = env
        .mirror
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    let range = gets[1].range.clone().expect("second request resumes");
    let from: u64 = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .unwrap()
        .parse()
        .unwrap();
    assert!(from > 0, "{range}");
    assert_eq!(gets[1].status, 206);
}

#[test]
fn without_range_support_the_download_restarts_cleanly() {
    let env = Env::new();
    let path = Mirror::archive_path("nomad", "1.10.0", "amd64");
    env.mirror.set_range_support(false);
    env.mirror.fail(&path, Failure::DropMidBody, 1);
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("starting over"), "{}", stderr(&out));
    assert_eq!(
        fs::read(env.path("/opt/nomad/bin/nomad")).unwrap(),
        env.mirror.binary("nomad", "1.10.0", "amd64")
    );
    let statuses: Vec<u16> = env
        .mirror
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 200]);
}

#[test]
fn throttling_is_waited_out_as_the_server_asks() {
    let env = Env::new();
    let path = Mirror::archive_path("nomad", "1.10.0", "amd64");
    env.mirror.fail(
        &path,
        Failure::Status {
            code: 429,
            retry_after_secs: Some(1),
        },
        2,
    );
    let started = std::time::Instant::now();
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(log.contains("HTTP 429"), "{log}");
    assert!(log.contains("retrying in 1.0s"), "{log}");
    // Two waits of the requested second each: the Retry-After was honoured, not ignored.
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    let statuses: Vec<u16> = env
        .mirror
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
}

#[test]
fn server_errors_are_retried_and_a_persistent_one_is_reported() {
    let env = Env::new();
    let sums = Mirror::sums_path("nomad", "1.10.0");
    env.mirror.fail(
        &sums,
        Failure::Status {
            code: 503,
            retry_after_secs: None,
        },
        2,
    );
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let env = Env::new();
    env.mirror.fail(
        &sums,
        Failure::Status {
            code: 500,
            retry_after_secs: Some(0),
        },
        u32::MAX,
    );
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(!out.status.success());
    let log = stderr(&out);
    assert!(
        log.contains(&format!("gave up on {} after 3 attempts", url(&env, &sums))),
        "{log}"
    );
    assert!(log.contains("answered HTTP 500"), "{log}");
    // A 404 is not retried: it is an answer.
    let env = Env::new();
    env.cmd("8.8.8").assert().failure();
    let tries = env
        .mirror
        .requests()
        .iter()
        .filter(|r| r.path.contains("8.8.8"))
        .count();
    assert_eq!(tries, 1);
}

#[test]
fn a_zip_with_two_entries_named_like_the_binary_is_refused() {
    let env = Env::new();
    let zip = url(&env, &Mirror::archive_path("nomad", "1.10.0", "amd64"));
    assert_refused(
        &env,
        |env| env.mirror.tamper("nomad", "1.10.0", Tamper::DuplicateEntry),
        &[
            format!("refusing {zip}"),
            "nomad_1.10.0_linux_amd64.zip has 2 entries named \"nomad\"".into(),
        ],
    );
}

#[test]
fn a_cni_tarball_with_two_entries_of_one_name_is_refused() {
    let env = Env::new();
    let cni = |env: &Env| {
        let mut cmd = env.cmd("1.10.0");
        cmd.args(["--cni-version", "1.6.2", "--cni-download-url"])
            .arg(env.mirror.cni_url())
            .arg("--cni-sha256")
            .arg(env.mirror.cni_sha256("1.6.2", "amd64"));
        cmd
    };
    let out = cni(&env).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let before = env.snapshot();
    env.mirror.tamper_cni("1.6.2", Tamper::DuplicateEntry);
    let out = cni(&env).output().unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    let tgz = url(&env, &Mirror::cni_archive_path("1.6.2", "amd64"));
    assert!(log.contains(&format!("refusing {tgz}")), "{log}");
    assert!(
        log.contains("cni-plugins-linux-amd64-v1.6.2.tgz has 2 entries named \"bridge\""),
        "{log}"
    );
    assert_eq!(env.snapshot(), before, "{log}");
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn garbage_signatures_are_refused_as_invalid_without_rust_internals() {
    let env = Env::new();
    let sums = url(&env, &Mirror::sums_path("nomad", "1.10.0"));
    let keyed = format!("nomad_1.10.0_SHA256SUMS.{}.sig", env.mirror.key_id_suffix());
    let genuine = fs::read(env.mirror.tree().join("nomad/1.10.0").join(&keyed)).unwrap();
    let mut random = Vec::new();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..517 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        random.push(state as u8);
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random),
        ("truncated packet", genuine[..genuine.len() / 2].to_vec()),
        (
            "armored garbage",
            b"-----BEGIN PGP SIGNATURE-----\n\nbm90IGEgc2lnbmF0dXJlIGF0IGFsbA==\n=AAAA\n-----END PGP SIGNATURE-----\n"
                .to_vec(),
        ),
        ("empty", Vec::new()),
        // A version 6 signature packet whose salt does not fit its hash: rPGP reports it as
        // invalid packet content, with a debug dump of the inner error.
        (
            "v6 packet with a bad salt",
            [&[0xc2, 20, 6, 0, 1, 8][..], &[0; 16]].concat(),
        ),
        // A version 3 signature packet with a wrong hashed-material length.
        ("v3 packet", vec![0xc2, 10, 3, 0, 1, 8, 0, 200, 1, 2, 3, 4]),
    ];
    for (what, bytes) in cases {
        let log = assert_refused(
            &env,
            |env| env.mirror.set_signatures("nomad", "1.10.0", &bytes),
            &[format!(
                "refusing {sums}: its signature {} does not verify",
                url(&env, &format!("/nomad/1.10.0/{keyed}"))
            )],
        );
        assert!(
            log.contains("the signature is not valid OpenPGP data")
                || log.contains("the signature file holds no signature"),
            "{what}:\n{log}"
        );
        let error_lines = log.lines().filter(|l| l.contains("caused by")).count();
        assert!(error_lines <= 2, "{what}: one clean cause expected:\n{log}");
    }
}
