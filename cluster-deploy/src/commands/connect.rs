//! Reaching Azure: endpoint flags, the credential choice, the ARM client, progress logging.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use support::http::Url;
use support::retry::Policy;

use crate::arm::{ArmClient, Progress, Timing};
use crate::auth::{self, Env, TokenEndpoints, TokenProvider};
use crate::cli::AzureArgs;

pub(super) fn endpoint(flag: &str, value: &str) -> Result<Url> {
    let url = Url::parse(value).with_context(|| format!("{flag} {value:?} is not a URL"))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if support::http::is_loopback(&url) => Ok(url),
        "http" => {
            bail!("{flag} {value}: plain http is only accepted for a loopback address; use https")
        }
        other => bail!("{flag} {value}: unsupported scheme {other:?}"),
    }
}

pub(super) fn imds_endpoint(value: &str) -> Result<Url> {
    let url =
        Url::parse(value).with_context(|| format!("--imds-endpoint {value:?} is not a URL"))?;
    let link_local = url.host_str() == Some("169.254.169.254");
    if url.scheme() == "http" && (link_local || support::http::is_loopback(&url)) {
        Ok(url)
    } else {
        bail!(
            "--imds-endpoint {value}: use http://169.254.169.254 (or a loopback address in tests)"
        )
    }
}

pub(super) fn timing(args: &AzureArgs) -> (Timing, Duration) {
    let mut timing = Timing {
        poll_interval: Duration::from_millis(args.poll_interval_ms),
        ..Timing::default()
    };
    timing.retry.initial_delay = Duration::from_millis(args.retry_delay_ms);
    (timing, Duration::from_millis(args.principal_retry_ms))
}

/// An ARM client, or `None` when there are no credentials.
pub(super) fn connect(args: &AzureArgs, env: &Env) -> Result<Option<ArmClient>> {
    let arm = endpoint("--arm-endpoint", &args.arm_endpoint)?;
    let login = endpoint("--login-endpoint", &args.login_endpoint)?;
    let imds = imds_endpoint(&args.imds_endpoint)?;
    let Some(method) = auth::choose(args.auth, env, &args.az_program)? else {
        return Ok(None);
    };
    tracing::info!("authenticating as {}", method.describe());
    let audience = args
        .token_audience
        .clone()
        .unwrap_or_else(|| format!("{}/", arm.as_str().trim_end_matches('/')));
    let (timing, _) = timing(args);
    let token_retry = token_retry(args);
    let is_managed = matches!(method, auth::Method::ManagedIdentity { .. });
    let tokens = TokenProvider::new(
        method,
        TokenEndpoints {
            login,
            imds,
            audience,
        },
        token_retry,
    )?;
    // The first token proves the credential.
    tokens.token().context("getting an Azure token")?;
    let subscription = match (&args.subscription, tokens.method()) {
        (Some(s), _) => s.clone(),
        (None, auth::Method::AzureCli { program }) => auth::azure_cli_subscription(program)
            .context("reading the Azure CLI's current subscription")?,
        (None, _) if is_managed => tokens
            .imds_subscription()
            .context("reading the VM's subscription from IMDS")?,
        (None, _) => bail!("no subscription: set ARM_SUBSCRIPTION_ID or pass --subscription"),
    };
    let subscription_ok = !subscription.is_empty()
        && subscription
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !subscription_ok {
        bail!("subscription {subscription:?} is not a subscription id");
    }
    Ok(Some(ArmClient::new(arm, tokens, subscription, timing)?))
}

fn token_retry(args: &AzureArgs) -> Policy {
    Policy {
        what: "token request",
        max_attempts: 5,
        initial_delay: Duration::from_millis(args.retry_delay_ms),
        max_delay: Duration::from_secs(30),
        deadline: Some(Duration::from_secs(120)),
    }
}

/// Tokens for the Key Vault data plane (audience `https://vault.azure.net`) from the same
/// credential as ARM's.
pub(super) fn key_vault_tokens(args: &AzureArgs, env: &Env) -> Result<TokenProvider> {
    let login = endpoint("--login-endpoint", &args.login_endpoint)?;
    let imds = imds_endpoint(&args.imds_endpoint)?;
    let Some(method) = auth::choose(args.auth, env, &args.az_program)? else {
        bail!("no Azure credentials for the Key Vault");
    };
    Ok(TokenProvider::new(
        method,
        TokenEndpoints {
            login,
            imds,
            audience: support::keyvault::RESOURCE.to_string(),
        },
        token_retry(args),
    )?)
}

pub(super) fn connect_required(args: &AzureArgs, env: &Env) -> Result<ArmClient> {
    match connect(args, env)? {
        Some(arm) => Ok(arm),
        None => bail!(
            "no Azure credentials: set ARM_TENANT_ID, ARM_CLIENT_ID and ARM_CLIENT_SECRET (and \
             ARM_SUBSCRIPTION_ID), log in with the Azure CLI (`az login`), or use --auth \
             managed-identity on an Azure VM"
        ),
    }
}

pub(super) fn log_progress(what: &str) -> impl FnMut(&Progress) + '_ {
    let mut last = String::new();
    move |p: &Progress| {
        if p.status != last {
            tracing::info!("{what}: {} ({}s)", p.status, p.elapsed.as_secs());
            last = p.status.clone();
        }
    }
}
