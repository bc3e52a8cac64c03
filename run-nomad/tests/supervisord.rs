//! A real supervisord (Debian's package) loads the program run-nomad writes and keeps the
//! stand-in `nomad` RUNNING with the arguments and environment intended; run-nomad drives it
//! with the real supervisorctl, leaves an unchanged running agent alone and restarts it when
//! its configuration changes. supervisord runs in a temporary directory with its own config,
//! socket and pidfile, and is shut down at the end; states are polled with a deadline.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{instance, output, run_nomad, write_executable, LiveInstall};

/// A supervisord of our own; killed (and reaped) when dropped, even when a test fails.
struct Supervisord {
    child: Child,
    config: PathBuf,
    ctl: PathBuf,
}

impl Supervisord {
    fn start(live: &LiveInstall) -> Self {
        let dir = live.path("supervisord");
        fs::create_dir_all(&dir).unwrap();
        let config = dir.join("supervisord.conf");
        let d = dir.display();
        fs::write(
            &config,
            format!(
                "[unix_http_server]\nfile={d}/supervisor.sock\nchmod=0700\n\n\
                 [supervisord]\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
                 childlogdir={d}\nnodaemon=true\n\n\
                 [rpcinterface:supervisor]\n\
                 supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
                 [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n\n\
                 [include]\nfiles = {}/*.conf\n",
                live.path("supervisor").display()
            ),
        )
        .unwrap();
        let child = Command::new("supervisord")
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("supervisord (Debian package supervisor, installed by .ci/run)");
        // The supervisorctl run-nomad is given: the real one, pointed at our supervisord.
        let ctl = dir.join("supervisorctl");
        write_executable(
            &ctl,
            &format!(
                "#!/bin/sh\nexec supervisorctl -c '{}' \"$@\"\n",
                config.display()
            ),
        );
        let supervisord = Self { child, config, ctl };
        supervisord.wait_for("supervisord to answer", |s| s.ctl(&["pid"]).0.then_some(()));
        supervisord
    }

    /// Runs `supervisorctl ARGS` against our supervisord: (exit success, stdout).
    fn ctl(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("supervisorctl")
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    fn state(&self) -> Option<String> {
        run_nomad::service::supervisor_state(&self.ctl(&["status", "nomad"]).1)
    }

    fn pid(&self) -> u32 {
        self.ctl(&["pid", "nomad"]).1.trim().parse().unwrap()
    }

    /// Polls `check` every 50 ms until it answers or 30 s pass.
    fn wait_for<T>(&self, what: &str, check: impl Fn(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {:?}",
                self.ctl(&["status"])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_running(&self) -> u32 {
        self.wait_for("nomad to be RUNNING", |s| {
            (s.state().as_deref() == Some("RUNNING")).then(|| s.pid())
        })
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        let _ = self.ctl(&["shutdown"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(live: &LiveInstall, name: &str, supervisord: &Supervisord, extra: &[&str]) {
    run_with(live, &live.args(name), supervisord, extra);
}

/// `run` with the layout arguments given.
fn run_with(live: &LiveInstall, layout: &[String], supervisord: &Supervisord, extra: &[&str]) {
    let metadata = live.path("imds.json");
    fs::write(&metadata, instance().to_string()).unwrap();
    let mut cmd = run_nomad();
    cmd.arg("--init")
        .arg("supervisor")
        .arg("--supervisorctl")
        .arg(&supervisord.ctl)
        .arg("--metadata-file")
        .arg(&metadata)
        .args(layout)
        .args(extra);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(ok, "{stdout}\n{stderr}");
}

fn recorded_args(live: &LiveInstall) -> Vec<String> {
    fs::read_to_string(live.path("record/args"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn recorded_env(live: &LiveInstall) -> Vec<(String, String)> {
    fs::read_to_string(live.path("record/env"))
        .unwrap()
        .split('\0')
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn supervisord_runs_the_agent_and_run_nomad_restarts_it_only_on_change() {
    let name = "space $HOME %n ✓";
    let live = LiveInstall::new(name);
    let supervisord = Supervisord::start(&live);
    let environment = [
        ("PLAIN", "value"),
        ("SPACES_AND_COMMAS", "a b, c=d"),
        ("DOLLAR_AND_PERCENT", "$HOME %(ENV_HOME)s 100%"),
        ("DOUBLE_QUOTES", "say \"hi\" twice"),
        ("SINGLE_QUOTES", "it's"),
        ("UNICODE", "✓ é 😀"),
        ("EMPTY", ""),
    ];
    let mut extra: Vec<String> = vec!["--client".into()];
    for (k, v) in environment {
        extra.push("--environment".into());
        extra.push(format!("{k}={v}"));
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    run(&live, name, &supervisord, &extra);

    let pid = supervisord.wait_running();
    assert_eq!(
        recorded_args(&live),
        [
            "agent".to_string(),
            "-config".to_string(),
            path_text(&live.path("config")),
            "-data-dir".to_string(),
            path_text(&live.data_dir(name)),
        ]
    );
    let env = recorded_env(&live);
    for (k, v) in environment {
        assert!(
            env.contains(&(k.to_string(), v.to_string())),
            "{k}={v:?} missing from {env:?}"
        );
    }
    // The original's log files.
    assert!(live.path("log/nomad-stdout.log").exists());
    assert!(live.path("log/nomad-error.log").exists());

    // Unchanged files and a running agent: nothing is restarted.
    run(&live, name, &supervisord, &extra);
    assert_eq!(supervisord.state().as_deref(), Some("RUNNING"));
    assert_eq!(supervisord.pid(), pid, "an unchanged agent was restarted");

    // A changed default.hcl (not the program): restarted.
    let mut changed = extra.clone();
    changed.extend(["--meta", "rack=r2"]);
    run(&live, name, &supervisord, &changed);
    let restarted = supervisord.wait_for("a new nomad process", |s| {
        (s.state().as_deref() == Some("RUNNING") && s.pid() != pid).then(|| s.pid())
    });
    assert_ne!(restarted, pid);

    // Stopped behind our back, files unchanged: started again.
    assert!(supervisord.ctl(&["stop", "nomad"]).0);
    run(&live, name, &supervisord, &changed);
    supervisord.wait_running();
}

/// supervisor expands `%(name)s` in a log file path twice (when it reads the option, and again
/// with the process's expansions), so a `%` in `--log-dir` must survive both. The program file
/// carries the `--environment` values, so it is readable by root alone.
#[test]
fn a_log_directory_with_percent_signs_reaches_supervisord_intact() {
    use std::os::unix::fs::MetadataExt;
    let name = "percent";
    let live = LiveInstall::new(name);
    let log_dir = live.path("logs 100% %(program_name)s %%");
    fs::create_dir_all(&log_dir).unwrap();
    let mut args = live.args(name);
    let at = args.iter().position(|a| a == "--log-dir").unwrap();
    args[at + 1] = path_text(&log_dir);
    let supervisord = Supervisord::start(&live);
    run_with(
        &live,
        &args,
        &supervisord,
        &["--client", "--environment", "ARM_CLIENT_SECRET=s3cr3t"],
    );
    supervisord.wait_running();
    assert!(
        log_dir.join("nomad-stdout.log").exists(),
        "supervisord logs elsewhere"
    );
    assert!(log_dir.join("nomad-error.log").exists());
    let program = live.path("supervisor").join("run-nomad.conf");
    let meta = fs::metadata(&program).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
    assert!(recorded_env(&live).contains(&("ARM_CLIENT_SECRET".to_string(), "s3cr3t".to_string())));
}

/// The watcher under the real supervisord: run-nomad installs it beside Nomad, supervisord keeps
/// it RUNNING, and on a Terminate of this VM (the IMDS double's Scheduled Events, for the
/// fixture's `compute.name`) it stops the agent through the real supervisorctl, then approves
/// the event; the agent's program is STOPPED and the watcher still runs.
#[test]
fn the_watcher_runs_under_supervisord_and_stops_nomad_before_approving() {
    use support::doubles::imds::ImdsDouble;
    use support::doubles::imds_events::Event;
    let name = "watcher";
    let live = LiveInstall::new(name);
    let supervisord = Supervisord::start(&live);
    let imds = ImdsDouble::start(instance());
    let events = imds.scheduled_events();
    run(
        &live,
        name,
        &supervisord,
        &[
            "--server",
            "--num-servers",
            "1",
            "--imds-endpoint",
            imds.url(),
        ],
    );
    supervisord.wait_running();
    let watcher_state = |s: &Supervisord| {
        run_nomad::service::program_state(
            &s.ctl(&["status", "nomad-scheduled-events"]).1,
            "nomad-scheduled-events",
        )
    };
    supervisord.wait_for("the watcher to be RUNNING", |s| {
        (watcher_state(s).as_deref() == Some("RUNNING")).then_some(())
    });
    let program =
        fs::read_to_string(live.path("supervisor").join("nomad-scheduled-events.conf")).unwrap();
    assert!(
        program.contains(" watch-events --server --imds-endpoint "),
        "{program}"
    );
    // The watcher has enabled Scheduled Events (its first request) before the event comes.
    supervisord.wait_for("the watcher's first request", |_| {
        events.enabled().then_some(())
    });

    let vm = instance()["compute"]["name"].as_str().unwrap().to_string();
    let not_before = std::time::SystemTime::now() + Duration::from_secs(300);
    events.schedule(Event::terminate(
        "5e1ce7e0-0000-4000-8000-000000000001",
        &vm,
        not_before,
    ));
    supervisord.wait_for("the approval", |_| {
        (!events.approvals().is_empty()).then_some(())
    });
    assert_eq!(supervisord.state().as_deref(), Some("STOPPED"));
    assert_eq!(watcher_state(&supervisord).as_deref(), Some("RUNNING"));
    let log = fs::read_to_string(live.path("log").join("nomad-scheduled-events.log")).unwrap();
    assert!(log.contains("stopping Nomad"), "{log}");
    assert!(
        log.contains("approved event 5e1ce7e0-0000-4000-8000-000000000001"),
        "{log}"
    );
    let state = fs::read_to_string(live.path("config").join(".watch-events.state")).unwrap();
    assert!(state.contains("\"finished\": true"), "{state}");
}

/// A client on an ACL cluster whose watcher has no token: its agent drains itself
/// (`drain_on_shutdown`, on SIGTERM). On a Terminate the watcher sends SIGTERM through the real
/// supervisorctl (`signal TERM nomad`), sees the signalled process gone (supervisord's
/// `autorestart` starts another, which the watcher then stops), and approves. The stand-in
/// agent records the signals it gets: the drain is never cut short by a second signal.
#[test]
fn a_client_without_a_token_is_sent_sigterm_to_drain_itself_under_supervisord() {
    use support::doubles::imds::ImdsDouble;
    use support::doubles::imds_events::Event;
    let name = "self-drain";
    let live = LiveInstall::new(name);
    let signals = live.path("record/signals");
    write_executable(
        &live.path(&format!("bin {name}")).join("nomad"),
        &format!(
            "#!/bin/sh\n\
             if [ \"$1\" = version ]; then echo 'Nomad v1.9.3'; exit 0; fi\n\
             trap 'echo \"TERM $$\" >> \"{s}\"; kill $! 2>/dev/null; exit 0' TERM\n\
             trap 'echo \"INT $$\" >> \"{s}\"; kill $! 2>/dev/null; exit 0' INT\n\
             sleep 3600 &\n\
             wait\n",
            s = signals.display()
        ),
    );
    let supervisord = Supervisord::start(&live);
    let imds = ImdsDouble::start(instance());
    let events = imds.scheduled_events();
    run(
        &live,
        name,
        &supervisord,
        &["--client", "--acl", "--imds-endpoint", imds.url()],
    );
    let first = supervisord.wait_running();
    let program =
        fs::read_to_string(live.path("supervisor").join("nomad-scheduled-events.conf")).unwrap();
    assert!(program.contains(" --self-drain "), "{program}");
    supervisord.wait_for("the watcher's first request", |_| {
        events.enabled().then_some(())
    });
    let vm = instance()["compute"]["name"].as_str().unwrap().to_string();
    events.schedule(Event::terminate(
        "5e1ce7e0-0000-4000-8000-0000000000d5",
        &vm,
        std::time::SystemTime::now() + Duration::from_secs(300),
    ));
    supervisord.wait_for("the approval", |_| {
        (!events.approvals().is_empty()).then_some(())
    });
    assert_eq!(supervisord.state().as_deref(), Some("STOPPED"));
    let received = fs::read_to_string(&signals).unwrap();
    let lines: Vec<&str> = received.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some(format!("TERM {first}").as_str()),
        "the agent that ran got SIGTERM first: {received}"
    );
    assert!(
        !lines.contains(&format!("INT {first}").as_str()),
        "no second signal to the draining agent: {received}"
    );
    let log = fs::read_to_string(live.path("log").join("nomad-scheduled-events.log")).unwrap();
    assert!(log.contains("sending Nomad SIGTERM"), "{log}");
    assert!(log.contains("drained its node and exited"), "{log}");
    assert!(!log.contains("NOT done"), "{log}");
}
