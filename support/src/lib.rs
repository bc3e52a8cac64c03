//! The one library the four tools share. Only code that two or more tools really use lives here:
//!
//! - [`arch`]: [`arch::Arch`], the CPU architectures (amd64, arm64) in HashiCorp's spelling.
//! - [`azure_auth`]: Azure credentials (client secret, Azure CLI, managed identity) and the
//!   subscription each implies.
//! - [`go_duration`]: Go's `time.Duration` text (`200ms`, `1m30s`), as Nomad's API uses it.
//! - [`files`]: atomic writes (temp file beside the target, fsync, rename, fsync the directory).
//! - [`process`]: run a subprocess; its error names the program, arguments, status and stderr tail.
//! - [`retry`]: explicit, bounded, logged retry policies with jittered backoff and a deadline.
//! - [`http`]: the blocking HTTP client every tool builds, and `Retry-After` parsing.
//! - [`shell`]: POSIX shell quoting for every value that reaches a shell line.
//! - [`hash`]: streaming SHA-256.
//! - [`secret`]: [`secret::Secret`], a string whose `Debug` is redacted and that has no `Display`.
//! - [`cli`]: logging set-up and the error-chain printing every `main` does.
//! - [`keyvault`]: the Azure Key Vault data-plane client for secrets (api-version 7.6).
//! - [`managed_identity`]: managed identity tokens from IMDS for one audience.
//! - [`nomad`]: the Nomad HTTP API client (cluster-deploy's `status`, `roll` and ACL bootstrap,
//!   run-nomad's Scheduled Events watcher); snapshot saving behind feature `nomad-snapshot`.
//! - [`cluster_secrets`]: the names of the cluster's secrets in its vault, and who reads which.
//! - [`doubles`] (feature `doubles`, tests only): loopback servers shaped after published APIs.

pub mod arch;
pub mod azure_auth;
pub mod cli;
pub mod cluster_secrets;
pub mod files;
pub mod go_duration;
pub mod hash;
pub mod http;
pub mod keyvault;
pub mod managed_identity;
pub mod nomad;
pub mod process;
pub mod retry;
pub mod secret;
pub mod shell;

#[cfg(feature = "doubles")]
pub mod doubles;
