//! Shared set-up for run-nomad's integration tests: a fake install (layout, users, a stand-in
//! `nomad`), the real HCL1 parser, and the binary.

#![allow(dead_code)] // each test file uses a different part

pub mod events;
pub mod vault;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use support::doubles::imds::ImdsDouble;

/// The uid and gid the fake root's `nomad` user has.
pub const NOMAD_UID: u32 = 4646;
pub const NOMAD_GID: u32 = 4647;

/// A test gossip key (base64 of 32 bytes); tests check it never shows up in output.
pub const GOSSIP_KEY: &str = "QmFzZTY0S2V5Rm9yVGVzdHNPbmx5LTMyLWJ5dGVzISE=";

pub fn write_executable(path: &Path, script: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, script).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The stand-in `nomad`: answers `version` like Nomad 1.9.3, otherwise records its arguments
/// (one per line) and environment (NUL-separated) under `record_dir` and stays running until
/// signalled, as the agent does.
pub fn stand_in_nomad(path: &Path, record_dir: &Path) {
    fs::create_dir_all(record_dir).unwrap();
    let record = record_dir.display();
    write_executable(
        path,
        &format!(
            "#!/bin/sh\n\
             if [ \"$1\" = version ]; then\n\
             \techo 'Nomad v1.9.3'\n\
             \techo 'BuildDate 2025-01-01T00:00:00Z'\n\
             \texit 0\n\
             fi\n\
             printf '%s\\n' \"$@\" > '{record}/args.tmp' && mv '{record}/args.tmp' '{record}/args'\n\
             env -0 > '{record}/env'\n\
             exec sleep 3600\n"
        ),
    );
}

/// A filesystem root laid out as install-nomad leaves a VM: `/opt/nomad/{bin,config,data,log,tls}`
/// with a stand-in `nomad`, a `nomad` user owning the config directory, and the directories
/// of the systemd unit and the supervisor program. run-nomad is pointed at it with `--root`.
pub struct FakeRoot {
    pub dir: tempfile::TempDir,
}

impl FakeRoot {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "opt/nomad/config",
            "opt/nomad/data",
            "opt/nomad/log",
            "opt/nomad/tls",
            "etc/systemd/system",
            "etc/supervisor/conf.d",
        ] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(
            root.join("etc/passwd"),
            format!(
                "root:x:0:0:root:/root:/bin/bash\n\
                 nomad:x:{NOMAD_UID}:{NOMAD_GID}:Nomad:/opt/nomad:/usr/sbin/nologin\n"
            ),
        )
        .unwrap();
        fs::write(
            root.join("etc/group"),
            format!("root:x:0:\nnomad:x:{NOMAD_GID}:\n"),
        )
        .unwrap();
        std::os::unix::fs::chown(
            root.join("opt/nomad/config"),
            Some(NOMAD_UID),
            Some(NOMAD_GID),
        )
        .expect("chown needs root, as run-nomad does (CI runs as root)");
        stand_in_nomad(&root.join("opt/nomad/bin/nomad"), &root.join("stand-in"));
        for (name, text) in [
            ("ca.pem", "ca"),
            ("server.pem", "cert"),
            ("server-key.pem", "key"),
        ] {
            let path = root.join("opt/nomad/tls").join(name);
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        }
        let key = root.join("opt/nomad/config/gossip.key");
        fs::write(&key, format!("{GOSSIP_KEY}\n")).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the root, from its production path.
    pub fn at(&self, production: &str) -> PathBuf {
        self.path().join(production.trim_start_matches('/'))
    }

    pub fn read(&self, production: &str) -> String {
        let path = self.at(production);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Writes a metadata document into the root and returns its host path.
    pub fn metadata_file(&self, instance: &Value) -> PathBuf {
        let path = self.path().join("imds.json");
        fs::write(&path, serde_json::to_string_pretty(instance).unwrap()).unwrap();
        path
    }
}

/// An install whose paths are real paths on this host (no `--root`): what a service manager
/// running here (systemd-analyze, supervisord) can execute. The agent runs as root, the
/// directories are temporary, and the unit and program directories are given by flag.
pub struct LiveInstall {
    pub dir: tempfile::TempDir,
}

impl LiveInstall {
    /// `name` becomes part of the bin directory's path, so hostile names test the escaping of
    /// the program path; the data directory's name is `data {name}` with quotes and a
    /// backslash added, which only arguments may hold.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let live = Self { dir };
        for d in ["config", "log", "unit", "supervisor", "record"] {
            fs::create_dir_all(live.path(d)).unwrap();
        }
        fs::create_dir_all(live.bin_dir(name)).unwrap();
        fs::create_dir_all(live.data_dir(name)).unwrap();
        stand_in_nomad(&live.bin_dir(name).join("nomad"), &live.path("record"));
        live
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn bin_dir(&self, name: &str) -> PathBuf {
        self.path(&format!("bin {name}"))
    }

    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.path(&format!("data {name} \"q'\\"))
    }

    /// The layout flags and the service definition directories.
    pub fn args(&self, name: &str) -> Vec<String> {
        let p = |d: &str| self.path(d).display().to_string();
        vec![
            "--config-dir".into(),
            p("config"),
            "--data-dir".into(),
            self.data_dir(name).display().to_string(),
            "--bin-dir".into(),
            self.bin_dir(name).display().to_string(),
            "--log-dir".into(),
            p("log"),
            "--systemd-unit-dir".into(),
            p("unit"),
            "--supervisor-conf-dir".into(),
            p("supervisor"),
            "--user".into(),
            "root".into(),
        ]
    }
}

/// The install layout's flags, as the production defaults would be for
/// `/opt/nomad/bin/run-nomad` (the test binary lives elsewhere).
pub const LAYOUT_ARGS: &[&str] = &[
    "--config-dir",
    "/opt/nomad/config",
    "--data-dir",
    "/opt/nomad/data",
    "--bin-dir",
    "/opt/nomad/bin",
    "--log-dir",
    "/opt/nomad/log",
    "--tls-dir",
    "/opt/nomad/tls",
    "--secrets-dir",
    "/opt/nomad/secrets",
];

/// `run-nomad` with no inherited proxy settings or service program overrides.
pub fn run_nomad() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_run-nomad"));
    // A test that forgets --imds-endpoint or --metadata-file must not reach for the real
    // IMDS address: point the default at a loopback port where nothing listens.
    cmd.env("RUN_NOMAD_IMDS_ENDPOINT", "http://127.0.0.1:9");
    for var in [
        "RUN_NOMAD_SYSTEMCTL",
        "RUN_NOMAD_SUPERVISORCTL",
        "RUN_NOMAD_KEY_VAULT_URL",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// run-nomad against a fake root reading `instance` from a metadata file, with the layout
/// flags; the caller adds the rest.
pub fn against_root(root: &FakeRoot, instance: &Value) -> Command {
    let metadata = root.metadata_file(instance);
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .arg("--metadata-file")
        .arg(&metadata)
        .args(LAYOUT_ARGS);
    cmd
}

/// run-nomad against a fake root, reading the IMDS double, with a stub systemctl; the caller
/// adds the rest.
pub fn with_imds(root: &FakeRoot, imds: &ImdsDouble, systemctl: &StubSystemctl) -> Command {
    let mut cmd = run_nomad();
    cmd.arg("--root")
        .arg(root.path())
        .arg("--imds-endpoint")
        .arg(imds.url())
        .arg("--systemctl")
        .arg(systemctl.program());
    cmd
}

/// run-nomad against a fake root, reading the IMDS double, with a stub systemctl.
pub fn against_imds(
    root: &FakeRoot,
    imds: &ImdsDouble,
    systemctl: &StubSystemctl,
    args: &[&str],
) -> (bool, String, String) {
    let mut cmd = with_imds(root, imds, systemctl);
    cmd.args(LAYOUT_ARGS).args(args);
    output(&mut cmd)
}

/// Neither the agent's configuration nor its unit was written (what a failed run leaves).
pub fn nothing_written(root: &FakeRoot) {
    assert!(!root.at("/opt/nomad/config/default.hcl").exists());
    assert!(!root.at("/etc/systemd/system/nomad.service").exists());
}

/// Runs run-nomad against a fake root with `--metadata-file` and `--no-start`, the layout
/// flags, then `args`; panics with its output when it fails.
pub fn generate(root: &FakeRoot, instance: &Value, args: &[&str]) {
    let mut cmd = against_root(root, instance);
    cmd.arg("--no-start").args(args);
    let (ok, stdout, stderr) = output(&mut cmd);
    assert!(ok, "run-nomad {args:?} failed:\n{stdout}\n{stderr}");
}

/// Runs a command, returning (success, stdout, stderr).
pub fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("running run-nomad");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The shared instance fixture.
pub fn instance() -> Value {
    support::doubles::imds::fixture("instance.json")
}

/// Builds `tests/fixtures/<name>/main.go` offline with GOPATH `gopath` and modules off, as
/// Debian's Go packages are laid out (`/usr/share/gocode`).
fn build_go_program(name: &str, gopath: &str, package: &str) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    fs::create_dir_all(&out_dir).unwrap();
    let binary = out_dir.join(format!("{name}.{}", std::process::id()));
    let result = Command::new("go")
        .args(["build", "-o"])
        .arg(&binary)
        .arg("main.go")
        .current_dir(&source)
        .env("GOPATH", gopath)
        .env("GO111MODULE", "off")
        .env("GOCACHE", out_dir.join("gocache"))
        .env("GOPROXY", "off")
        .output();
    let out = result.unwrap_or_else(|e| {
        panic!(
            "running `go build` for tests/fixtures/{name} failed ({e}): install golang-go and \
             {package}, as .ci/run does"
        )
    });
    assert!(
        out.status.success(),
        "building tests/fixtures/{name} failed (is {package} installed?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

fn hcl1_decoder() -> &'static Path {
    static DECODER: OnceLock<PathBuf> = OnceLock::new();
    DECODER.get_or_init(|| {
        build_go_program(
            "hcl1-decode",
            "/usr/share/gocode",
            "golang-github-hashicorp-hcl-dev",
        )
    })
}

/// Debian's copy of go-discover's config parser.
pub const GO_DISCOVER_CONFIG: &str =
    "/usr/share/gocode/src/github.com/hashicorp/go-discover/config.go";

fn go_discover_parser() -> &'static Path {
    static PARSER: OnceLock<PathBuf> = OnceLock::new();
    PARSER.get_or_init(|| {
        // A GOPATH whose github.com/hashicorp/go-discover is Debian's config.go alone (see
        // tests/fixtures/go-discover-parse/main.go for why).
        let gopath = Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-discover-gopath");
        let package = gopath.join("src/github.com/hashicorp/go-discover");
        fs::create_dir_all(&package).unwrap();
        let link = package.join("config.go");
        let _ = fs::remove_file(&link);
        assert!(
            Path::new(GO_DISCOVER_CONFIG).is_file(),
            "{GO_DISCOVER_CONFIG} is missing: install golang-github-hashicorp-go-discover-dev, \
             as .ci/run does"
        );
        std::os::unix::fs::symlink(GO_DISCOVER_CONFIG, &link).unwrap();
        build_go_program(
            "go-discover-parse",
            gopath.to_str().unwrap(),
            "golang-github-hashicorp-go-discover-dev",
        )
    })
}

/// What HashiCorp's go-discover `Parse` makes of each string: the map (`None` for no pairs)
/// or its error message.
pub fn go_discover_parse(
    strings: &[String],
) -> Vec<Result<Option<std::collections::BTreeMap<String, String>>, String>> {
    let out = with_input(
        Command::new(go_discover_parser()),
        &serde_json::to_string(strings).unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    results
        .into_iter()
        .map(|r| match r.get("error") {
            Some(e) => Err(e.as_str().unwrap().to_string()),
            None => Ok(serde_json::from_value(r["config"].clone()).unwrap()),
        })
        .collect()
}

/// Runs `cmd` with `input` on its standard input and returns its output.
fn with_input(mut cmd: Command, input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn run_decoder(args: &[&str], input: &str) -> Result<Value, String> {
    let mut cmd = Command::new(hcl1_decoder());
    cmd.args(args);
    let out = with_input(cmd, input);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Decodes HCL with HashiCorp's HCL1 library (`hcl.Decode` into a generic map), as JSON.
pub fn hcl1_decode(text: &str) -> Result<Value, String> {
    run_decoder(&[], text)
}

/// Go's `strconv.Unquote` of each string, which go-discover applies to quoted values.
pub fn go_unquote(quoted: &[String]) -> Result<Vec<String>, String> {
    run_decoder(&["unquote"], &serde_json::to_string(quoted).unwrap())
        .map(|v| serde_json::from_value(v).unwrap())
}

/// Compares `actual` with a golden file under `tests/golden/`, or rewrites it when
/// `UPDATE_GOLDEN=1`.
pub fn assert_golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output (UPDATE_GOLDEN=1 rewrites it; review the diff):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

pub const NOMAD_UNIT: &str = "nomad.service";
pub const WATCHER_UNIT: &str = "nomad-scheduled-events.service";

/// What a run asks first: whether the agent and the watcher run.
pub const IS_ACTIVE: [&str; 2] = [
    "is-active --quiet nomad.service",
    "is-active --quiet nomad-scheduled-events.service",
];

/// A first start: both queried, then the agent, then the watcher.
pub const START_BOTH: [&str; 7] = [
    "is-active --quiet nomad.service",
    "is-active --quiet nomad-scheduled-events.service",
    "daemon-reload",
    "enable nomad.service",
    "restart nomad.service",
    "enable nomad-scheduled-events.service",
    "restart nomad-scheduled-events.service",
];

/// The agent restarted onto new files, the watcher left running.
pub const RESTART_AGENT: [&str; 5] = [
    "is-active --quiet nomad.service",
    "is-active --quiet nomad-scheduled-events.service",
    "daemon-reload",
    "enable nomad.service",
    "restart nomad.service",
];

/// A stub systemctl: records each call's arguments on a line of `calls`, answers `is-active`
/// for a unit from the presence of `active-<unit>` (and `show --property=MainPID --value`
/// with 4242 or 0), makes a unit active on `restart` and inactive on `disable --now` and on
/// `kill` (the agent's leave signal: it drains itself and exits), unless told to fail or hang the next restart of
/// `nomad.service` (as a unit that cannot start does: exit 1 with systemd's message).
pub struct StubSystemctl {
    pub dir: tempfile::TempDir,
}

impl StubSystemctl {
    /// A stub that keeps one `active-<unit>` file per running unit; `restart` of nomad.service
    /// can be made to fail or hang.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        write_executable(
            &dir.path().join("systemctl"),
            &format!(
                "#!/bin/sh\n\
                 echo \"$*\" >> '{d}/calls'\n\
                 case \"$1\" in\n\
                 is-active) [ -e \"{d}/active-$3\" ] && exit 0 || exit 3 ;;\n\
                 restart) if [ \"$2\" = nomad.service ] && [ -e '{d}/fail-restart' ]; then \
                 rm '{d}/fail-restart'; \
                 echo 'Job for nomad.service failed because the control process exited with \
                 error code.' >&2; exit 1; fi; \
                 if [ \"$2\" = nomad.service ] && [ -e '{d}/hang-restart' ]; then \
                 rm '{d}/hang-restart'; touch '{d}/hanging'; exec sleep 600; fi; \
                 touch \"{d}/active-$2\" ;;\n\
                 disable) [ \"$2\" = --now ] && rm -f \"{d}/active-$3\" ;;\n\
                 kill) rm -f \"{d}/active-$4\" ;;\n\
                 show) if [ -e \"{d}/active-$4\" ]; then echo 4242; else echo 0; fi ;;\n\
                 esac\n\
                 exit 0\n"
            ),
        );
        Self { dir }
    }

    pub fn program(&self) -> PathBuf {
        self.dir.path().join("systemctl")
    }

    /// Nomad and its Scheduled Events watcher are running (the old configuration, as far as
    /// the stub knows).
    pub fn set_active(&self) {
        for unit in [NOMAD_UNIT, WATCHER_UNIT] {
            fs::write(self.dir.path().join(format!("active-{unit}")), "").unwrap();
        }
    }

    /// The unit is stopped (behind run-nomad's back).
    pub fn set_inactive(&self, unit: &str) {
        let _ = fs::remove_file(self.dir.path().join(format!("active-{unit}")));
    }

    /// The next `restart` fails.
    pub fn fail_next_restart(&self) {
        fs::write(self.dir.path().join("fail-restart"), "").unwrap();
    }

    /// The next `restart` hangs (a slow unit start), after creating `hanging`.
    pub fn hang_next_restart(&self) {
        fs::write(self.dir.path().join("hang-restart"), "").unwrap();
    }

    /// Whether a restart is hanging now.
    pub fn is_hanging(&self) -> bool {
        self.dir.path().join("hanging").exists()
    }

    /// The calls so far, and forget them.
    pub fn take_calls(&self) -> Vec<String> {
        let path = self.dir.path().join("calls");
        let calls = fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        let _ = fs::remove_file(&path);
        calls
    }
}
