//! After the deployment: wait for the servers to elect a leader, then bootstrap Nomad's ACLs
//! with the token pre-generated in the vault (`POST /v1/acl/bootstrap` with `BootstrapSecret`).
//!
//! - Idempotent: a cluster already bootstrapped answers "ACL bootstrap already done", which is
//!   an outcome. Then the vault's token must work as a management token (`GET
//!   /v1/operator/raft/configuration` needs `management`): if it does not, someone else
//!   bootstrapped the cluster, and that is reported as the alarm it is.
//! - Over https with the cluster's CA, the CLI certificate (mutual TLS where the agents ask
//!   for it) and `server.<region>.nomad` as the name the certificate must carry (the address is
//!   the load balancer's IP). The CA and CLI files are written 0600 into a private temporary
//!   directory for the client and removed afterwards.
//! - The token is sent only in the request body, never printed or logged.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use support::cluster_secrets::SecretItem;
use support::http::Url;
use support::retry::Policy;
use support::secret::Secret;

use crate::model::Cluster;
use crate::nomad::{BootstrapOutcome, NomadClient, NomadSettings, Timeouts};
use crate::secrets::local::LocalFiles;
use crate::secrets::reconcile::Plan;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Bootstrap {
    /// This run bootstrapped the ACL system.
    Done,
    /// It had been bootstrapped before, with the vault's token.
    AlreadyDone,
}

/// How to reach the cluster's API for the bootstrap.
pub(super) struct Reach {
    pub(super) address: Url,
    pub(super) timeout: Duration,
    pub(super) poll: Duration,
}

fn settings(
    cluster: &Cluster,
    plan: &Plan,
    address: &Url,
    dir: &LocalFiles,
) -> Result<NomadSettings> {
    let mut settings = NomadSettings::new(address.clone());
    // Each probe is one attempt: the wait loop below is the retry.
    settings.timeouts = Timeouts {
        connect: Duration::from_secs(5),
        request: Duration::from_secs(30),
        read_retries: Policy::once("Nomad API read"),
        ..Timeouts::default()
    };
    if cluster.security.tls() {
        if address.scheme() != "https" {
            bail!("the cluster's Nomad API serves TLS: give an https:// address, not {address}");
        }
        let get = |item: SecretItem| {
            plan.values
                .get(&item)
                .with_context(|| format!("{} is not in the plan", item.vault_name()))
        };
        dir.write(&dir.ca_cert, get(SecretItem::CaCertificate)?)?;
        dir.write(&dir.cli_cert, get(SecretItem::CliCertificate)?)?;
        dir.write(&dir.cli_key, get(SecretItem::CliKey)?)?;
        settings.tls.ca_cert = Some(dir.ca_cert.clone());
        settings.tls.client_cert = Some(dir.cli_cert.clone());
        settings.tls.client_key = Some(dir.cli_key.clone());
        settings.tls.server_name = Some(cluster.security.server_name());
    }
    Ok(settings)
}

/// Waits for a leader at `reach.address`, then bootstraps with the vault's token.
pub(super) fn bootstrap(cluster: &Cluster, plan: &Plan, reach: &Reach) -> Result<Bootstrap> {
    let token: &Secret = plan
        .values
        .get(&SecretItem::BootstrapToken)
        .context("the ACL bootstrap token is not in the vault's plan")?;
    let scratch = tempfile::Builder::new()
        .prefix("cluster-deploy-tls-")
        .tempdir()
        .context("making a private temporary directory for the Nomad client's TLS files")?;
    let files = LocalFiles::at(scratch.path());
    let settings = settings(cluster, plan, &reach.address, &files)?;
    let client = NomadClient::with_settings(settings.clone())?;
    let address = &reach.address;
    tracing::info!("waiting for the Nomad servers at {address} to elect a leader");
    let start = Instant::now();
    let mut last: String;
    loop {
        match client.leader() {
            Ok(Some(leader)) => {
                tracing::info!("Nomad leader: {leader}");
                break;
            }
            Ok(None) => last = "the servers answer but have no leader yet".into(),
            Err(e) => last = e.to_string(),
        }
        if start.elapsed() >= reach.timeout {
            bail!(
                "the deployment succeeded, but the Nomad servers at {address} elected no leader \
                 within {}s ({last}); ACLs are not bootstrapped yet: run `cluster-deploy apply` \
                 again once they are up (or pass --nomad-address)",
                reach.timeout.as_secs()
            );
        }
        std::thread::sleep(reach.poll);
    }
    match client
        .acl_bootstrap(token)
        .context("bootstrapping Nomad's ACLs")?
    {
        BootstrapOutcome::Bootstrapped(_) => {
            tracing::info!(
                "Nomad ACLs bootstrapped; the management token is in the cluster's Key Vault \
                 (nomad-acl-bootstrap-token): `cluster-deploy env --token` exports it"
            );
            Ok(Bootstrap::Done)
        }
        BootstrapOutcome::AlreadyDone { .. } => {
            let mut with_token = settings;
            with_token.token = Some(token.clone());
            let check = NomadClient::with_settings(with_token)?;
            match check.raft_configuration() {
                Ok(_) => {
                    tracing::info!("Nomad ACLs were bootstrapped before, with the vault's token");
                    Ok(Bootstrap::AlreadyDone)
                }
                Err(e) if e.status() == Some(403) => bail!(
                    "Nomad's ACLs were bootstrapped by someone else: the vault's token is not a \
                     management token of this cluster. Treat the cluster as compromised \
                     (whoever holds that token controls it): investigate, and re-create it"
                ),
                Err(e) => Err(e).context("checking the vault's token against the cluster"),
            }
        }
    }
}
