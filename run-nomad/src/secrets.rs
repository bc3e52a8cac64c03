//! The cluster's secrets at boot (`--key-vault NAME`): cluster-deploy keeps them in the
//! cluster's Azure Key Vault ([`support::cluster_secrets`] names each item and says which role
//! reads it); run-nomad fetches this role's items with the VM's managed identity ([`fetch`]),
//! checks them ([`check`]) and has them written beside the agent configuration, in the same
//! transaction.
//!
//! Where each item goes, and how it is protected on disk:
//!
//! | item | file | mode |
//! |---|---|---|
//! | `nomad-ca-cert` | `<tls-dir>/ca.pem` | `0644 root:root` |
//! | `nomad-server-cert` / `nomad-client-cert` | `<tls-dir>/server.pem` / `client.pem` | `0644 root:root` |
//! | `nomad-server-key` / `nomad-client-key` | `<tls-dir>/server-key.pem` / `client-key.pem` | `0640 root:<nomad group>` |
//! | `nomad-gossip-key` (servers) | `<secrets-dir>/gossip.key` | `0640 root:<nomad group>` |
//!
//! A node that is both server and client uses the server's items: its agent serves RPC as a
//! server, which `verify_server_hostname` checks against `server.<region>.nomad`.

pub mod check;
pub mod fetch;

use std::path::PathBuf;
use std::time::Duration;

use support::cluster_secrets::{AgentRole, SecretItem};
use support::http::{is_loopback, Url};
use support::keyvault::{validate_vault_name, vault_url};
use support::secret::Secret;

use crate::cli::Cli;
use crate::settings::{Layout, SettingsError};

/// The vault the secrets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSource {
    /// `--key-vault`.
    pub name: String,
    /// `https://<name>.vault.azure.net/`, or `--key-vault-url`.
    pub url: Url,
    /// `--secrets-timeout`: the deadline for everything the fetch does.
    pub timeout: Duration,
}

impl VaultSource {
    /// `<name> (<url>)` for messages.
    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, self.url)
    }
}

fn invalid(flag: &str, value: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        flag: flag.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The vault of `--key-vault`, checked: a valid vault name, and a URL that is https (or plain
/// http to a loopback address, for tests). `None` without `--key-vault`.
pub fn source(cli: &Cli) -> Result<Option<VaultSource>, SettingsError> {
    let Some(name) = &cli.key_vault else {
        return Ok(None);
    };
    validate_vault_name(name).map_err(|e| invalid("--key-vault", name, e.to_string()))?;
    let url =
        match &cli.key_vault_url {
            None => vault_url(name).map_err(|e| invalid("--key-vault", name, e.to_string()))?,
            Some(text) => {
                let mut url = Url::parse(text)
                    .map_err(|e| invalid("--key-vault-url", text, format!("not a URL: {e}")))?;
                match url.scheme() {
                    "https" => {}
                    "http" if is_loopback(&url) => {}
                    _ => return Err(invalid(
                        "--key-vault-url",
                        text,
                        "a vault is reached over https (plain http only for a loopback address)",
                    )),
                }
                if url.query().is_some() || url.fragment().is_some() || url.host_str().is_none() {
                    return Err(invalid(
                        "--key-vault-url",
                        text,
                        "expected https://HOST/ with no query or fragment",
                    ));
                }
                if !url.path().ends_with('/') {
                    let path = format!("{}/", url.path());
                    url.set_path(&path);
                }
                url
            }
        };
    if cli.secrets_timeout.is_zero() {
        return Err(invalid("--secrets-timeout", "0s", "must be more than zero"));
    }
    Ok(Some(VaultSource {
        name: name.clone(),
        url,
        timeout: cli.secrets_timeout,
    }))
}

/// Whose items a node reads: a server's when it is a server at all (see the module docs).
pub fn role(cli: &Cli) -> AgentRole {
    if cli.server {
        AgentRole::Server
    } else {
        AgentRole::Client
    }
}

/// One fetched item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedItem {
    pub item: SecretItem,
    /// The Key Vault version read (the latest), for the log.
    pub version: String,
    pub value: Secret,
}

/// What [`fetch::fetch`] brought back: every item of the role, in [`SecretItem::for_role`]
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub vault: VaultSource,
    pub role: AgentRole,
    pub items: Vec<FetchedItem>,
}

impl Fetched {
    /// The value of `item`, if it was fetched.
    pub fn value(&self, item: SecretItem) -> Option<&Secret> {
        self.items.iter().find(|i| i.item == item).map(|i| &i.value)
    }
}

/// The file name of an item under its directory.
pub fn file_name(item: SecretItem) -> &'static str {
    match item {
        SecretItem::CaCertificate => "ca.pem",
        SecretItem::ServerCertificate => "server.pem",
        SecretItem::ServerKey => "server-key.pem",
        SecretItem::ClientCertificate => "client.pem",
        SecretItem::ClientKey => "client-key.pem",
        SecretItem::GossipKey => "gossip.key",
        SecretItem::CaKey => "ca-key.pem",
        SecretItem::CliCertificate => "cli.pem",
        SecretItem::CliKey => "cli-key.pem",
        SecretItem::BootstrapToken => "bootstrap.token",
    }
}

/// Where an item goes (production path): the gossip key under the secrets directory, the TLS
/// files under the TLS directory.
pub fn path(item: SecretItem, layout: &Layout) -> PathBuf {
    let dir = match item {
        SecretItem::GossipKey | SecretItem::BootstrapToken => &layout.secrets_dir,
        _ => &layout.tls_dir,
    };
    dir.join(file_name(item))
}

/// The mode of an item's file: `0640` for what is itself secret (readable by the agent's group,
/// which a server running as `nomad` needs), `0644` for certificates.
pub fn mode(item: SecretItem) -> u32 {
    if item.is_private() {
        0o640
    } else {
        0o644
    }
}

/// The mode of the secrets directory when run-nomad creates it: root writes, the agent's group
/// may enter.
pub const SECRETS_DIR_MODE: u32 = 0o750;

/// A fetched item's file (production path), owned by root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    pub item: SecretItem,
    pub path: PathBuf,
    pub mode: u32,
    pub gid: u32,
    pub value: Secret,
}

/// A directory run-nomad creates when it is missing (production path), owned by root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    pub path: PathBuf,
    pub mode: u32,
    pub gid: u32,
}

/// The files for what was fetched, after [`check`]ing every value for an agent in `region`
/// at `now`; `group` (the agent's group) may read the private ones. Also returns warnings
/// worth logging.
pub fn files(
    fetched: &Fetched,
    layout: &Layout,
    region: &str,
    group: u32,
    now: std::time::SystemTime,
) -> Result<(Vec<SecretFile>, Vec<String>), check::Refused> {
    let (ca, cert, key) = tls_items(fetched.role);
    let get = |item: SecretItem| {
        fetched.value(item).ok_or_else(|| check::Refused {
            secret: item.vault_name(),
            reason: "was not fetched".to_string(),
        })
    };
    let warnings = check::tls(fetched.role, region, get(ca)?, get(cert)?, get(key)?, now)?;
    let mut out = Vec::new();
    for fetched_item in &fetched.items {
        let item = fetched_item.item;
        let value = if item == SecretItem::GossipKey {
            let key = check::gossip_key(&fetched_item.value)?;
            Secret::new(format!("{}\n", key.expose()))
        } else {
            fetched_item.value.clone()
        };
        out.push(SecretFile {
            item,
            path: path(item, layout),
            mode: mode(item),
            gid: if item.is_private() { group } else { 0 },
            value,
        });
    }
    Ok((out, warnings))
}

/// The directories `files` live in, to be created (`0750 root:<group>`) where missing.
pub fn directories(files: &[SecretFile], group: u32) -> Vec<Directory> {
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.path.parent().map(PathBuf::from))
        .collect();
    dirs.sort();
    dirs.dedup();
    dirs.into_iter()
        .map(|path| Directory {
            path,
            mode: SECRETS_DIR_MODE,
            gid: group,
        })
        .collect()
}

/// The certificate and key items of a role, as (CA, certificate, key).
pub fn tls_items(role: AgentRole) -> (SecretItem, SecretItem, SecretItem) {
    match role {
        AgentRole::Server => (
            SecretItem::CaCertificate,
            SecretItem::ServerCertificate,
            SecretItem::ServerKey,
        ),
        AgentRole::Client => (
            SecretItem::CaCertificate,
            SecretItem::ClientCertificate,
            SecretItem::ClientKey,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["run-nomad"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    #[test]
    fn the_vault_url_follows_the_name_unless_overridden() {
        let src = source(&cli(&["--client", "--key-vault", "nomad-prod-kv"]))
            .unwrap()
            .unwrap();
        assert_eq!(src.url.as_str(), "https://nomad-prod-kv.vault.azure.net/");
        assert_eq!(src.timeout, Duration::from_secs(600));
        let src = source(&cli(&[
            "--client",
            "--key-vault",
            "nomad-prod-kv",
            "--key-vault-url",
            "https://nomad-prod-kv.vault.azure.cn",
            "--secrets-timeout",
            "90s",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(src.url.as_str(), "https://nomad-prod-kv.vault.azure.cn/");
        assert_eq!(src.timeout, Duration::from_secs(90));
        assert!(source(&cli(&["--client"])).unwrap().is_none());
    }

    #[test]
    fn bad_names_and_urls_name_their_flag() {
        let e = |args: &[&str]| source(&cli(args)).unwrap_err().to_string();
        assert!(e(&["--client", "--key-vault", "x"]).contains("--key-vault \"x\""));
        assert!(e(&["--client", "--key-vault", "bad_name"]).contains("letters, digits"));
        for (url, why) in [
            ("http://kv.vault.azure.net/", "https"),
            ("ftp://127.0.0.1/", "https"),
            ("https://kv.vault.azure.net/?x=1", "no query"),
            ("not a url", "not a URL"),
        ] {
            let err = e(&[
                "--client",
                "--key-vault",
                "nomad-kv",
                "--key-vault-url",
                url,
            ]);
            assert!(
                err.contains("--key-vault-url") && err.contains(why),
                "{err}"
            );
        }
        let err = e(&[
            "--client",
            "--key-vault",
            "nomad-kv",
            "--secrets-timeout",
            "0s",
        ]);
        assert!(err.contains("--secrets-timeout"), "{err}");
        source(&cli(&[
            "--client",
            "--key-vault",
            "nomad-kv",
            "--key-vault-url",
            "http://127.0.0.1:8200",
        ]))
        .unwrap();
    }

    #[test]
    fn the_vault_replaces_the_file_flags() {
        for flag in ["--gossip-key-file", "--tls-ca-file"] {
            let err = Cli::try_parse_from([
                "run-nomad",
                "--server",
                "--key-vault",
                "nomad-kv",
                flag,
                "/x",
            ])
            .unwrap_err();
            assert!(err.to_string().contains("cannot be used with"), "{err}");
        }
    }

    #[test]
    fn items_are_placed_and_protected_by_what_they_are() {
        let layout = Layout {
            config_dir: "/opt/nomad/config".into(),
            data_dir: "/opt/nomad/data".into(),
            bin_dir: "/opt/nomad/bin".into(),
            log_dir: "/opt/nomad/log".into(),
            tls_dir: "/opt/nomad/tls".into(),
            secrets_dir: "/opt/nomad/secrets".into(),
        };
        let placed: Vec<(String, u32)> = SecretItem::for_role(AgentRole::Server)
            .into_iter()
            .map(|i| (path(i, &layout).display().to_string(), mode(i)))
            .collect();
        assert_eq!(
            placed,
            [
                ("/opt/nomad/secrets/gossip.key".to_string(), 0o640),
                ("/opt/nomad/tls/ca.pem".to_string(), 0o644),
                ("/opt/nomad/tls/server.pem".to_string(), 0o644),
                ("/opt/nomad/tls/server-key.pem".to_string(), 0o640),
            ]
        );
        assert_eq!(
            path(SecretItem::ClientKey, &layout),
            PathBuf::from("/opt/nomad/tls/client-key.pem")
        );
        assert_eq!(role(&cli(&["--server", "--client"])), AgentRole::Server);
        assert_eq!(role(&cli(&["--client"])), AgentRole::Client);
    }
}
