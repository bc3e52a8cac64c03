//! The commands' environment against the ARM, token, Key Vault and Nomad API doubles on
//! 127.0.0.1 (tests/azure_*.rs, tests/destroy.rs, tests/sdk.rs), and the conformance run: every
//! command once (apply, plan with what-if, outputs, status, destroy).

use std::path::PathBuf;

use support::doubles::arm::{ArmDouble, LoginDouble};

use super::secure::{with_own_ca, Stack};

pub const CLIENT_ID: &str = "00000000-0000-0000-0000-00000000c1d0";
pub const CLIENT_SECRET: &str = "client-secret-never-printed~1";

pub struct Env {
    pub arm: ArmDouble,
    pub login: LoginDouble,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub stack: Stack,
}

/// The doubles (ARM, login, the Key Vault data plane and a Nomad for the ACL bootstrap) and a
/// copy of the example cluster file with an own CA (see `common::secure`).
pub fn setup() -> Env {
    setup_with(&[], "")
}

/// [`setup`] with a variant of the example cluster file (see `common::variant`).
pub fn setup_with(replace: &[&str], append: &str) -> Env {
    let arm = ArmDouble::start();
    let login = LoginDouble::start(CLIENT_ID, CLIENT_SECRET, arm.token());
    let dir = tempfile::tempdir().unwrap();
    let config = super::variant(dir.path(), replace, append);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, with_own_ca(dir.path(), &text)).unwrap();
    let stack = Stack::start(&arm, &config);
    Env {
        arm,
        login,
        dir,
        config,
        stack,
    }
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Env {
    pub fn command(&self, args: &[&str]) -> assert_cmd::Command {
        self.command_at(args, self.arm.url(), self.login.url())
    }

    /// The command with its environment and flags, against these endpoints.
    pub fn command_at(&self, args: &[&str], arm: &str, login: &str) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
        cmd.env_clear()
            .env("ARM_TENANT_ID", "contoso.onmicrosoft.com")
            .env("ARM_CLIENT_ID", CLIENT_ID)
            .env("ARM_CLIENT_SECRET", CLIENT_SECRET)
            .env("ARM_SUBSCRIPTION_ID", self.arm.subscription())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .args(["--arm-endpoint", arm, "--login-endpoint", login])
            .args([
                "--imds-endpoint",
                "http://127.0.0.1:9",
                "--az-program",
                "/nonexistent/az",
            ])
            .args([
                "--poll-interval-ms",
                "5",
                "--retry-delay-ms",
                "5",
                "--principal-retry-ms",
                "5",
                "-v",
            ])
            .args(self.stack.args(args))
            .env("XDG_CONFIG_HOME", self.stack.config_home.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with(self.command(args))
    }

    pub fn run_with(&self, mut cmd: assert_cmd::Command) -> Run {
        let output = cmd.output().unwrap();
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        // Never, in any command: the client secret, the bearer token, a PEM block, any value of
        // the vault (the gossip key, the ACL token, every key).
        self.stack.assert_no_secret("stdout", &run.stdout);
        self.stack.assert_no_secret("stderr", &run.stderr);
        for secret in [CLIENT_SECRET, &self.arm.token()] {
            assert!(
                !run.stdout.contains(secret),
                "a secret on stdout:\n{}",
                run.stdout
            );
            assert!(
                !run.stderr.contains(secret),
                "a secret on stderr:\n{}",
                run.stderr
            );
        }
        run
    }

    pub fn apply(&self) -> Run {
        let run = self.run(&["apply"]);
        assert_eq!(run.code, 0, "apply failed:\n{}\n{}", run.stdout, run.stderr);
        run
    }
}

pub fn count(arm: &ArmDouble, method: &str, path_part: &str) -> usize {
    arm.requests()
        .iter()
        .filter(|r| r.method == method && r.path.to_lowercase().contains(&path_part.to_lowercase()))
        .count()
}

/// Every command once, against one double: apply creates the group, plan then runs what-if
/// against it, and destroy may delete the group again. Each must succeed.
pub fn conformance_run(env: &Env) {
    for args in [
        &["apply"][..],
        &["plan"],
        &["outputs", "--json"],
        &["status", "--nomad-address", "http://127.0.0.1:9"],
        &["destroy", "--yes"],
    ] {
        let run = env.run(args);
        assert_eq!(run.code, 0, "{args:?}:\n{}\n{}", run.stdout, run.stderr);
    }
}
