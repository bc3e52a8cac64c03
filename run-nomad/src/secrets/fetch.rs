//! Fetching a role's secrets from Key Vault with the VM's managed identity: the edge.
//!
//! - The token comes from IMDS's identity endpoint for the Key Vault audience
//!   ([`support::managed_identity::ImdsTokens`], `resource=https://vault.azure.net`): IMDS
//!   answers 404/410/429/5xx while the VM's identity is being set up, which are retried.
//! - Each item is read with GetSecret (latest version) through
//!   [`support::keyvault::KeyVaultClient`], all at once. Key Vault answers 403
//!   `ForbiddenByRbac` until a new role assignment has propagated ("please observe propagation
//!   time"), which on a scale set created with its assignments is the normal first answer:
//!   that, throttling, 5xx and connection errors are retried. So is 403
//!   `ForbiddenByFirewall`: cluster-deploy's first deployment makes the vault before the
//!   subnet exists, and the main one adds the subnet's rule; the scale sets wait for that in
//!   the template, but custom data runs only once, so a VM that still meets the firewall
//!   waits for the rule within the same deadline rather than fail for good. Other refusals
//!   fail at once.
//! - One deadline, `--secrets-timeout`, bounds all of it: the token takes what it needs, the
//!   reads get the rest. Waits between tries start at a second (or a twentieth of the
//!   deadline, when shorter) and double up to 30 s (or a quarter of it).
//!
//! Nothing is written here: the caller writes the files only once every item has arrived and
//! passed [`super::check`]. Values travel as [`Secret`]s and reach no log or error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::cluster_secrets::{AgentRole, SecretItem};
use support::http::ClientOptions;
use support::keyvault::{KeyVaultClient, KeyVaultError, Options, TokenSource, RESOURCE};
use support::managed_identity::{ImdsTokenError, ImdsTokens};

use super::{Fetched, FetchedItem, VaultSource};

/// Why the secrets could not be fetched. Every message names the vault and says that nothing
/// was written or started.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(
        "cannot fetch the cluster's secrets from Key Vault {vault}: this VM has no managed \
         identity token for {RESOURCE}: {error}{NOTHING_DONE}"
    )]
    Token {
        vault: String,
        // In the message, not the error chain, so the report shows it once.
        error: Box<ImdsTokenError>,
    },
    #[error(
        "cannot fetch Key Vault secret {secret} from {vault} with this VM's managed identity: \
         {error}{hint}{others}{NOTHING_DONE}"
    )]
    Secret {
        vault: String,
        secret: &'static str,
        error: Box<KeyVaultError>,
        hint: String,
        /// The other items that failed too, if any.
        others: String,
    },
    #[error("cannot fetch the cluster's secrets from Key Vault {vault}: {message}{NOTHING_DONE}")]
    Client { vault: String, message: String },
}

const NOTHING_DONE: &str = "; nothing was written and Nomad was not started";

/// The longest wait between tries, and the first.
fn delays(timeout: Duration) -> (Duration, Duration) {
    (
        Duration::from_secs(1).min(timeout / 20),
        Duration::from_secs(30).min(timeout / 4),
    )
}

/// What an operator can do about a refusal.
fn hint(error: &KeyVaultError) -> String {
    let last = error.last();
    if error.is_forbidden_by_rbac() {
        return " (the scale set's identity needs the Key Vault Secrets User role on this \
                secret; cluster-deploy apply grants it, and a new assignment can take several \
                minutes to take effect: a longer --secrets-timeout waits for it)"
            .to_string();
    }
    if let KeyVaultError::Status(failure) = last {
        if failure.inner_code.as_deref() == Some("ForbiddenByFirewall") {
            return " (the vault's network rules still do not admit this VM after the whole \
                    --secrets-timeout: allow its subnet or address in the vault's firewall; \
                    cluster-deploy apply adds the cluster's subnet)"
                .to_string();
        }
        if failure.status == 404 {
            return " (the vault has no such secret: has cluster-deploy apply uploaded the \
                    cluster's secrets?)"
                .to_string();
        }
    }
    if matches!(last, KeyVaultError::Transport { .. }) {
        return " (the vault did not answer: check its name, DNS and this VM's outbound access)"
            .to_string();
    }
    String::new()
}

/// Fetches the items of `role` that `vault.selection` selects, with tokens from the IMDS at
/// `imds_endpoint`, within `vault.timeout`.
pub fn fetch(
    vault: &VaultSource,
    imds_endpoint: &str,
    role: AgentRole,
) -> Result<Fetched, FetchError> {
    let started = Instant::now();
    let (initial, max) = delays(vault.timeout);
    let client_error = |message: String| FetchError::Client {
        vault: vault.describe(),
        message,
    };
    let tokens = ImdsTokens::new(imds_endpoint, RESOURCE, None, vault.timeout)
        .map_err(|e| client_error(e.to_string()))?
        .with_delays(initial, max);
    // The token first, on its own: its wait counts against the same deadline as the reads.
    tokens.token().map_err(|error| FetchError::Token {
        vault: vault.describe(),
        error: Box::new(error),
    })?;
    let remaining = vault
        .timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(100));
    let tokens: Arc<dyn TokenSource> = Arc::new(tokens);
    let client = KeyVaultClient::new(
        vault.url.as_str(),
        tokens,
        Options {
            http: ClientOptions {
                connect_timeout: Duration::from_secs(10).min(remaining),
                timeout: Duration::from_secs(30).min(remaining),
                no_proxy: false,
            },
            deadline: remaining,
            initial_delay: initial,
            max_delay: max,
            // The vault may not admit this subnet yet (see the module docs).
            retry_forbidden_by_firewall: true,
        },
    )
    .map_err(|e| client_error(e.to_string()))?;
    let items = vault.selection.items(role);
    tracing::info!(
        "fetching {} from Key Vault {} with this VM's managed identity (deadline {:.0}s)",
        items
            .iter()
            .map(|i| i.vault_name())
            .collect::<Vec<_>>()
            .join(", "),
        vault.describe(),
        vault.timeout.as_secs_f64()
    );
    let results: Vec<(SecretItem, Result<FetchedItem, KeyVaultError>)> =
        std::thread::scope(|scope| {
            let handles: Vec<_> = items
                .iter()
                .map(|&item| {
                    let client = &client;
                    let handle = scope.spawn(move || {
                        client
                            .get_secret(item.vault_name(), None)
                            .map(|got| FetchedItem {
                                item,
                                version: got.properties.version,
                                value: got.value,
                            })
                    });
                    (item, handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(item, h)| (item, h.join().expect("a Key Vault read does not panic")))
                .collect()
        });
    let mut fetched = Vec::new();
    let mut failures = Vec::new();
    for (item, result) in results {
        match result {
            Ok(got) => fetched.push(got),
            Err(e) => failures.push((item, e)),
        }
    }
    if !failures.is_empty() {
        let (item, error) = failures.remove(0);
        let others = if failures.is_empty() {
            String::new()
        } else {
            format!(
                "; {} failed too",
                failures
                    .iter()
                    .map(|(i, _)| i.vault_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        return Err(FetchError::Secret {
            vault: vault.describe(),
            secret: item.vault_name(),
            hint: hint(&error),
            error: Box::new(error),
            others,
        });
    }
    for got in &fetched {
        tracing::info!(
            "fetched {} (version {}) from Key Vault {}",
            got.item.vault_name(),
            got.version,
            vault.name
        );
    }
    Ok(Fetched {
        vault: vault.clone(),
        role,
        items: fetched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_scale_with_the_deadline() {
        assert_eq!(
            delays(Duration::from_secs(600)),
            (Duration::from_secs(1), Duration::from_secs(30))
        );
        assert_eq!(
            delays(Duration::from_secs(2)),
            (Duration::from_millis(100), Duration::from_millis(500))
        );
    }
}
