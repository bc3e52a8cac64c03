//! The binary against the ARM and token doubles on 127.0.0.1, for tests that deploy: a
//! cluster file in a temporary directory (with an own CA, see [`super::secure`]), the Key
//! Vault and Nomad doubles beside them, the command with client-secret credentials and short
//! waits, and every output searched for the secrets (the credential, the token, and every value
//! the vault holds).

use std::path::PathBuf;

use support::doubles::arm::{ArmDouble, LoginDouble};

use super::secure::{with_own_ca, Stack};

pub const CLIENT_ID: &str = "00000000-0000-0000-0000-00000000c1d0";
pub const CLIENT_SECRET: &str = "client-secret-never-printed~2";

pub struct Deploy {
    pub arm: ArmDouble,
    pub login: LoginDouble,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub stack: Stack,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Deploy {
    /// The doubles and `text` as the cluster file.
    pub fn new(text: &str) -> Self {
        let arm = ArmDouble::start();
        let login = LoginDouble::start(CLIENT_ID, CLIENT_SECRET, arm.token());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cluster.toml");
        std::fs::write(&config, with_own_ca(dir.path(), text)).unwrap();
        let stack = Stack::start(&arm, &config);
        Self {
            arm,
            login,
            dir,
            config,
            stack,
        }
    }

    /// The example cluster file with `replace` lines and `append`ed tables.
    pub fn example(replace: &[&str], append: &str) -> Self {
        let scratch = tempfile::tempdir().unwrap();
        let path = super::variant(scratch.path(), replace, append);
        Self::new(&std::fs::read_to_string(path).unwrap())
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
        cmd.env_clear()
            .env("ARM_TENANT_ID", "contoso.onmicrosoft.com")
            .env("ARM_CLIENT_ID", CLIENT_ID)
            .env("ARM_CLIENT_SECRET", CLIENT_SECRET)
            .env("ARM_SUBSCRIPTION_ID", self.arm.subscription())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .args(["--arm-endpoint", self.arm.url()])
            .args(["--login-endpoint", self.login.url()])
            .args(["--imds-endpoint", "http://127.0.0.1:9"])
            .args(["--az-program", "/nonexistent/az"])
            .args(["--poll-interval-ms", "5", "--retry-delay-ms", "5"])
            .args(["--principal-retry-ms", "5"])
            .args(self.stack.args(args))
            .env("XDG_CONFIG_HOME", self.stack.config_home.path());
        let output = cmd.output().unwrap();
        let run = Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        for secret in [CLIENT_SECRET.to_string(), self.arm.token()] {
            assert!(!run.stdout.contains(&secret) && !run.stderr.contains(&secret));
        }
        self.stack.assert_no_secret("stdout", &run.stdout);
        self.stack.assert_no_secret("stderr", &run.stderr);
        run
    }

    /// Runs and insists on success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(
            run.code, 0,
            "{args:?} failed:\n{}\n{}",
            run.stdout, run.stderr
        );
        run
    }
}
