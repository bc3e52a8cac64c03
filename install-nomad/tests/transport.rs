//! Mirrors that misbehave at the HTTP level: an error answer with an endless body, a download
//! trickling a byte at a time, one that is steady but too slow for the deadline, and redirects
//! (followed on loopback, refused to plain http anywhere else). The real binary, the mirror
//! double on 127.0.0.1.

mod common;

use std::fs;
use std::time::{Duration, Instant};

use common::{assert_no_rust_internals, stderr, Env};
use support::doubles::mirror::{Failure, Mirror};

fn archive(env: &Env) -> (String, String) {
    let path = Mirror::archive_path("nomad", "1.10.0", "amd64");
    let url = format!("{}{path}", env.mirror.url());
    (path, url)
}

fn requests_for(env: &Env, path: &str) -> Vec<u16> {
    env.mirror
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .map(|r| r.status)
        .collect()
}

#[test]
fn an_endless_error_body_is_read_only_in_part() {
    let env = Env::new();
    let sums = Mirror::sums_path("nomad", "1.10.0");
    env.mirror
        .fail(&sums, Failure::EndlessErrorBody { code: 503 }, 1);
    let started = Instant::now();
    let out = env
        .cmd("1.10.0")
        // Reading the endless body whole would never end: fail fast instead of hanging CI.
        .timeout(Duration::from_secs(30))
        .output()
        .unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // The retry's log line quotes a bounded excerpt of the body.
    let line = log
        .lines()
        .find(|l| l.contains("answered HTTP 503"))
        .unwrap_or_else(|| panic!("no 503 in:\n{log}"));
    assert!(line.contains("the mirror is unwell"), "{line}");
    assert!(line.contains("... (cut); retrying in"), "{line}");
    assert!(line.len() < 3000, "{} bytes logged", line.len());
    assert_eq!(requests_for(&env, &sums), [503, 200]);
}

/// An error answer whose long body arrives a byte every 100 ms (an hour for the whole of it):
/// the excerpt is given up, and the file's `--download-timeout` still holds.
#[test]
fn a_trickling_error_body_does_not_outlast_the_download_timeout() {
    let env = Env::new();
    let sums = Mirror::sums_path("nomad", "1.10.0");
    env.mirror.fail(
        &sums,
        Failure::TrickleErrorBody {
            code: 503,
            pause_ms: 100,
        },
        u32::MAX,
    );
    let out = env
        .cmd("1.10.0")
        .args([
            "--download-timeout",
            "2s",
            "--stall-timeout",
            "1",
            "--download-attempts",
            "5",
        ])
        // Reading the whole trickle would take an hour: fail the test instead of hanging CI.
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_no_rust_internals(&log);
    assert!(log.contains("answered HTTP 503"), "{log}");
    assert!(
        log.contains("the time for it ran out"),
        "the excerpt should say it was given up:\n{log}"
    );
    assert!(
        log.contains("--download-timeout"),
        "the file's deadline should end it:\n{log}"
    );
}

#[test]
fn a_trickling_download_is_cut_off_and_resumed() {
    let env = Env::new();
    let (path, url) = archive(&env);
    // One byte every 200 ms (5 B/s) against 100 B/s over a 1 s window.
    env.mirror
        .fail(&path, Failure::Trickle { pause_ms: 200 }, 1);
    let out = env
        .cmd("1.10.0")
        .args(["--stall-timeout", "1", "--stall-min-speed", "100"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains(&format!("downloading {url} was cut off: stalled: ")),
        "{log}"
    );
    assert!(
        log.contains("slower than the 100 bytes/s of --stall-min-speed"),
        "{log}"
    );
    assert!(log.contains("resuming at byte"), "{log}");
    assert_eq!(
        fs::read(env.path("/opt/nomad/bin/nomad")).unwrap(),
        env.mirror.binary("nomad", "1.10.0", "amd64")
    );
    assert_eq!(requests_for(&env, &path), [200, 206]);
}

#[test]
fn a_download_that_always_trickles_is_given_up_and_nothing_changes() {
    let env = Env::new();
    let out = env.cmd("1.9.7").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let before = env.snapshot();
    let (path, url) = archive(&env);
    env.mirror
        .fail(&path, Failure::Trickle { pause_ms: 300 }, u32::MAX);
    let out = env
        .cmd("1.10.0")
        .args(["--stall-timeout", "0.5", "--download-attempts", "2"])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_no_rust_internals(&log);
    assert!(
        log.contains(&format!("error: gave up on {url} after 2 attempts")),
        "{log}"
    );
    assert!(log.contains("cut off: stalled"), "{log}");
    assert_eq!(env.snapshot(), before, "{log}");
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn a_steady_but_slow_download_is_cut_off_at_the_download_timeout() {
    let env = Env::new();
    let (path, url) = archive(&env);
    // ~100 bytes a second: no stall at 10 B/s, but the archive needs several seconds.
    env.mirror
        .fail(&path, Failure::Trickle { pause_ms: 10 }, u32::MAX);
    let started = Instant::now();
    let out = env
        .cmd("1.10.0")
        .args([
            "--download-timeout",
            "1.5s",
            "--stall-timeout",
            "0.5",
            "--stall-min-speed",
            "10",
        ])
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(started.elapsed() < Duration::from_secs(10), "{log}");
    assert!(
        log.contains(&format!(
            "downloading {url} was cut off: it took longer than the 1.5s --download-timeout allows"
        )),
        "{log}"
    );
    // The deadline is for the file, so it is not retried.
    assert_eq!(requests_for(&env, &path), [200]);
    assert!(!env.path("/opt/nomad/bin/nomad").exists());
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

#[test]
fn a_redirect_to_another_loopback_name_is_followed() {
    let env = Env::new();
    let (path, _) = archive(&env);
    let port = env.mirror.url().rsplit(':').next().unwrap().to_string();
    env.mirror.fail(
        &path,
        Failure::Redirect {
            location: format!("http://localhost:{port}{path}"),
        },
        1,
    );
    let out = env.cmd("1.10.0").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(requests_for(&env, &path), [302, 200]);
}

#[test]
fn a_loopback_mirror_cannot_redirect_to_plain_http_elsewhere() {
    let env = Env::new();
    let out = env.cmd("1.9.7").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let before = env.snapshot();
    let (path, url) = archive(&env);
    // 0.0.0.0 is not a loopback name, yet Linux delivers a connection to it locally: without
    // the rule the download would succeed through it, so the test stays on this machine.
    let port = env.mirror.url().rsplit(':').next().unwrap().to_string();
    let elsewhere = format!("http://0.0.0.0:{port}{path}");
    env.mirror.fail(
        &path,
        Failure::Redirect {
            location: elsewhere.clone(),
        },
        u32::MAX,
    );
    let out = env.cmd("1.10.0").output().unwrap();
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_no_rust_internals(&log);
    assert!(
        log.contains(&format!(
            "refusing the redirect from {url} to {elsewhere}: plain http is only allowed to a loopback host"
        )),
        "{log}"
    );
    // Refused, not retried: it is the mirror's answer, not a transient fault.
    assert_eq!(requests_for(&env, &path), [302]);
    assert_eq!(env.snapshot(), before, "{log}");
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}
