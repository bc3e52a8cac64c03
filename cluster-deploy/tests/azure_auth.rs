//! How the commands authenticate, against the ARM, token and IMDS doubles on 127.0.0.1: plan
//! without credentials, or with a logged-out Azure CLI, stays offline; the three ways to
//! authenticate (a client secret, the Azure CLI's login, a managed identity's token from
//! IMDS); a wrong client secret is reported without the secret; plain-http endpoints are
//! refused unless loopback. (The shared environment, which keeps secrets out of every output:
//! tests/common/azure.rs.)

mod common;

use std::path::{Path, PathBuf};

use support::doubles::arm::LoginDouble;

use common::azure::{setup, CLIENT_ID};

#[test]
fn plan_without_credentials_never_touches_the_network() {
    let env = setup();
    let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    cmd.env_clear()
        .args(["plan", "--config"])
        .arg(&env.config)
        .args([
            "--arm-endpoint",
            env.arm.url(),
            "--login-endpoint",
            env.login.url(),
        ])
        .args(["--az-program", "/nonexistent/az", "--out"])
        .arg(env.dir.path().join("t.json"));
    let run = env.run_with(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("what-if was not run"), "{}", run.stdout);
    assert!(env.arm.requests().is_empty());
    assert!(env.login.requests().is_empty());
}

#[test]
fn plan_with_a_logged_out_azure_cli_stays_offline() {
    let env = setup();
    let az = write_script(
        env.dir.path(),
        "az",
        "#!/bin/sh\necho 'ERROR: Please run az login to setup account.' >&2\nexit 1\n",
    );
    let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    cmd.env_clear()
        .args(["plan", "--config"])
        .arg(&env.config)
        .arg("--az-program")
        .arg(&az)
        .args(["--arm-endpoint", env.arm.url()]);
    let run = env.run_with(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("the Azure CLI gave no token (ERROR: Please run az login to setup account.): what-if was not run"), "{}", run.stdout);
    assert!(env.arm.requests().is_empty());
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn the_azure_cli_login_is_used_when_asked() {
    let env = setup();
    let az = write_script(
        env.dir.path(),
        "az",
        &format!(
            // `az account get-access-token` and `az account show`, answering the JSON the CLI
            // documents for each (the subscription comes from `account show`'s `id`).
            "#!/bin/sh\nif [ \"$1 $2\" = 'account show' ]; then printf '{{\"id\": \"{sub}\", \"isDefault\": true, \"name\": \"Dev\", \"state\": \"Enabled\", \"tenantId\": \"t\"}}'; exit 0; fi\n[ \"$1 $2\" = 'account get-access-token' ] || exit 2\necho \"$@\" >> \"$(dirname \"$0\")/az-args\"\ntoken='{token}'\ncase \"$*\" in *vault.azure.net*) token='{vault_token}';; esac\nprintf '{{\"accessToken\": \"%s\", \"expires_on\": 4102444800, \"subscription\": \"{sub}\", \"tenant\": \"t\", \"tokenType\": \"Bearer\"}}' \"$token\"\n",
            token = env.arm.token(),
            // What the CLI gives for `--resource https://vault.azure.net`: a token naming the
            // signed-in principal (`oid`), whom apply makes Secrets Officer.
            vault_token = support::doubles::tokens::Claims::new(
                support::keyvault::RESOURCE,
                support::doubles::arm::CALLER_OBJECT_ID,
                support::doubles::arm::TENANT
            )
            .issue(),
            sub = env.arm.subscription()
        ),
    );
    let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    cmd.env_clear()
        .args(["apply", "--auth", "azure-cli", "--config"])
        .arg(&env.config)
        .arg("--az-program")
        .arg(&az)
        .args(["--arm-endpoint", env.arm.url(), "--poll-interval-ms", "5"])
        .args(["--retry-delay-ms", "5"])
        .args(env.stack.args(&["apply"]))
        .env("XDG_CONFIG_HOME", env.stack.config_home.path());
    let run = env.run_with(cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let args = std::fs::read_to_string(env.dir.path().join("az-args")).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            format!(
                "account get-access-token --resource {}/ --output json",
                env.arm.url()
            ),
            "account get-access-token --resource https://vault.azure.net --output json".to_string()
        ]
    );
    assert_eq!(
        env.arm.deployments().len(),
        2,
        "the vault's, then the main one"
    );
    // A failing CLI is an error naming the command.
    let bad = write_script(
        env.dir.path(),
        "az-bad",
        "#!/bin/sh\necho 'Please run az login to setup account.' >&2\nexit 1\n",
    );
    let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    cmd.env_clear()
        .args(["outputs", "--auth", "azure-cli", "--config"])
        .arg(&env.config)
        .arg("--az-program")
        .arg(&bad)
        .args(["--arm-endpoint", env.arm.url()]);
    let run = env.run_with(cmd);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("az-bad account get-access-token"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("Please run az login"), "{}", run.stderr);
}

#[test]
fn a_managed_identity_token_comes_from_imds() {
    use support::doubles::imds::{self, ImdsDouble};
    let env = setup();
    let imds = ImdsDouble::start(imds::fixture("instance.json"));
    let token = imds::fixture("identity-token.json")["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    env.arm.set_token(&token);
    let mut cmd = assert_cmd::Command::cargo_bin("cluster-deploy").unwrap();
    cmd.env_clear()
        .args(["outputs", "--auth", "managed-identity", "--config"])
        .arg(&env.config)
        .args([
            "--subscription",
            env.arm.subscription(),
            "--arm-endpoint",
            env.arm.url(),
            "--imds-endpoint",
            imds.url(),
        ]);
    let output = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Nothing is deployed, so outputs fails on the missing scale set, after authenticating.
    assert!(
        stderr.contains("ResourceNotFound") || stderr.contains("ResourceGroupNotFound"),
        "{stderr}"
    );
    assert!(!stderr.contains(&token));
    let token_requests: Vec<_> = imds
        .requests()
        .into_iter()
        .filter(|r| r.path == "/metadata/identity/oauth2/token")
        .collect();
    // The fixture's token expired on 2026-01-02, so each request fetches a fresh one.
    assert!(!token_requests.is_empty());
    for r in &token_requests {
        assert_eq!(
            r.query_param("resource"),
            Some(format!("{}/", env.arm.url()).as_str())
        );
        assert_eq!(r.query_param("api-version"), Some("2018-02-01"));
        assert_eq!(r.header("metadata"), Some("true"));
    }
    assert!(env
        .arm
        .requests()
        .iter()
        .all(|r| r.header("authorization") == Some(format!("Bearer {token}").as_str())));
}

#[test]
fn a_wrong_client_secret_is_reported_without_the_secret() {
    let env = setup();
    let login = LoginDouble::start(CLIENT_ID, "another-secret", env.arm.token());
    let cmd = env.command_at(&["apply"], env.arm.url(), login.url());
    let run = env.run_with(cmd);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("invalid_client"), "{}", run.stderr);
    assert!(run.stderr.contains("/oauth2/v2.0/token"), "{}", run.stderr);
    let form = &login.requests()[0].body;
    assert!(form.contains("scope=http%3A%2F%2F127.0.0.1"), "{form}");
    assert!(form.contains("grant_type=client_credentials"));
}

#[test]
fn plain_http_endpoints_are_refused_unless_loopback() {
    let env = setup();
    let cmd = env.command_at(
        &["outputs"],
        "http://management.example.com",
        env.login.url(),
    );
    let run = env.run_with(cmd);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("--arm-endpoint http://management.example.com"),
        "{}",
        run.stderr
    );
    assert!(env.arm.requests().is_empty() && env.login.requests().is_empty());
}
