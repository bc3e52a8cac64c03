//! The cluster's secrets at boot (`--key-vault NAME`): cluster-deploy keeps them in the
//! cluster's Azure Key Vault ([`support::cluster_secrets`] names each item and says which role
//! reads it); run-nomad fetches this role's items with the VM's managed identity ([`fetch`]),
//! checks them ([`check`]) and has them written beside the agent configuration, in the same
//! transaction.
//!
//! Which items is cluster-deploy's choice, per item, and the flags say it ([`Selection`]; the
//! contract is cluster-deploy's `custom_data` module): `--tls-from-key-vault` the CA and this
//! role's certificate and key, `--gossip-key-from-key-vault` (servers) the gossip key. A vault
//! named with neither is refused: it would fetch nothing. ACLs are not a vault item (the
//! bootstrap token never reaches a VM): they are `--acl`, on their own.
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

/// What `--key-vault` fetches: the items the `--*-from-key-vault` flags select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selection {
    /// `--tls-from-key-vault`: the CA and this role's certificate and key.
    pub tls: bool,
    /// `--gossip-key-from-key-vault` (servers only): the gossip key.
    pub gossip_key: bool,
}

impl Selection {
    /// The selected items a node of `role` reads, in [`SecretItem::for_role`] order.
    pub fn items(self, role: AgentRole) -> Vec<SecretItem> {
        SecretItem::for_role(role)
            .into_iter()
            .filter(|item| match item {
                SecretItem::GossipKey => self.gossip_key,
                _ => self.tls,
            })
            .collect()
    }
}

/// The vault the secrets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSource {
    /// `--key-vault`.
    pub name: String,
    /// `https://<name>.vault.azure.net/`, or `--key-vault-url`.
    pub url: Url,
    /// `--secrets-timeout`: the deadline for everything the fetch does.
    pub timeout: Duration,
    /// What to fetch.
    pub selection: Selection,
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

/// The vault of `--key-vault`, checked: something selected to fetch from it, a valid vault
/// name, and a URL that is https (or plain http to a loopback address, for tests). `None`
/// without `--key-vault`.
pub fn source(cli: &Cli) -> Result<Option<VaultSource>, SettingsError> {
    let Some(name) = &cli.key_vault else {
        return Ok(None);
    };
    let selection = Selection {
        tls: cli.tls_from_key_vault,
        gossip_key: cli.gossip_key_from_key_vault,
    };
    if !selection.tls && !selection.gossip_key {
        return Err(SettingsError::Missing(format!(
            "--key-vault {name} fetches what --tls-from-key-vault and \
             --gossip-key-from-key-vault select, and neither is given: add one or both (ACLs \
             are --acl, on their own)"
        )));
    }
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
        selection,
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

/// What [`fetch::fetch`] brought back: every selected item of the role, in
/// [`Selection::items`] order.
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

    /// Whether TLS came from the vault (`--tls-from-key-vault`).
    pub fn has_tls(&self) -> bool {
        self.vault.selection.tls
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
    let get = |item: SecretItem| {
        fetched.value(item).ok_or_else(|| check::Refused {
            secret: item.vault_name(),
            reason: "was not fetched".to_string(),
        })
    };
    let warnings = if fetched.has_tls() {
        let (ca, cert, key) = tls_items(fetched.role);
        check::tls(fetched.role, region, get(ca)?, get(cert)?, get(key)?, now)?
    } else {
        Vec::new()
    };
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
        let src = source(&cli(&[
            "--client",
            "--key-vault",
            "nomad-prod-kv",
            "--tls-from-key-vault",
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(src.url.as_str(), "https://nomad-prod-kv.vault.azure.net/");
        assert_eq!(src.timeout, Duration::from_secs(600));
        let src = source(&cli(&[
            "--client",
            "--key-vault",
            "nomad-prod-kv",
            "--tls-from-key-vault",
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
        let e = |args: &[&str]| {
            let args = [args, &["--tls-from-key-vault"]].concat();
            source(&cli(&args)).unwrap_err().to_string()
        };
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
            "--tls-from-key-vault",
            "--key-vault-url",
            "http://127.0.0.1:8200",
        ]))
        .unwrap();
    }

    #[test]
    fn the_flags_select_what_is_fetched() {
        let selected = |args: &[&str]| {
            let cli = cli(&[args, &["--key-vault", "nomad-kv"]].concat());
            let names: Vec<&str> = source(&cli)
                .unwrap()
                .unwrap()
                .selection
                .items(role(&cli))
                .into_iter()
                .map(SecretItem::vault_name)
                .collect();
            names
        };
        let server = ["--server", "--num-servers", "3"];
        assert_eq!(
            selected(
                &[
                    &server[..],
                    &["--tls-from-key-vault", "--gossip-key-from-key-vault"]
                ]
                .concat()
            ),
            [
                "nomad-gossip-key",
                "nomad-ca-cert",
                "nomad-server-cert",
                "nomad-server-key"
            ]
        );
        assert_eq!(
            selected(&[&server[..], &["--gossip-key-from-key-vault"]].concat()),
            ["nomad-gossip-key"]
        );
        assert_eq!(
            selected(&[&server[..], &["--tls-from-key-vault"]].concat()),
            ["nomad-ca-cert", "nomad-server-cert", "nomad-server-key"]
        );
        assert_eq!(
            selected(&["--client", "--tls-from-key-vault"]),
            ["nomad-ca-cert", "nomad-client-cert", "nomad-client-key"]
        );
    }

    #[test]
    fn a_vault_that_would_give_nothing_is_refused_naming_both_flags() {
        let err = source(&cli(&["--server", "--key-vault", "nomad-kv"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--key-vault nomad-kv")
                && err.contains("--tls-from-key-vault")
                && err.contains("--gossip-key-from-key-vault"),
            "{err}"
        );
    }

    #[test]
    fn each_from_key_vault_flag_needs_the_vault_and_excludes_its_file_flags() {
        let parse = |args: &[&str]| {
            let mut all = vec!["run-nomad", "--server", "--num-servers", "1"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
        };
        for flag in ["--tls-from-key-vault", "--gossip-key-from-key-vault"] {
            let err = parse(&[flag]).unwrap_err().to_string();
            assert!(err.contains("--key-vault <NAME>"), "{err}");
        }
        for (from_vault, file_flag) in [
            ("--tls-from-key-vault", "--tls-ca-file"),
            ("--tls-from-key-vault", "--tls-cert-file"),
            ("--tls-from-key-vault", "--tls-key-file"),
            ("--gossip-key-from-key-vault", "--gossip-key-file"),
            ("--gossip-key-from-key-vault", "--gossip-key"),
        ] {
            let err = parse(&["--key-vault", "nomad-kv", from_vault, file_flag, "/x"])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("cannot be used with") && err.contains(from_vault),
                "{err}"
            );
        }
        // One item from the vault, the other from files: each flag excludes only its own.
        let cli = parse(&[
            "--key-vault",
            "nomad-kv",
            "--gossip-key-from-key-vault",
            "--tls-ca-file",
            "/ca.pem",
            "--tls-cert-file",
            "/server.pem",
            "--tls-key-file",
            "/server-key.pem",
        ])
        .unwrap();
        let src = source(&cli).unwrap().unwrap();
        assert!(src.selection.gossip_key && !src.selection.tls);
        parse(&[
            "--key-vault",
            "nomad-kv",
            "--tls-from-key-vault",
            "--gossip-key-file",
            "/gossip.key",
        ])
        .unwrap();
        // Nothing to write the secrets into with --skip-nomad-config.
        let err = parse(&["--skip-nomad-config", "--key-vault", "nomad-kv"]).unwrap_err();
        assert!(err.to_string().contains("cannot be used with"), "{err}");
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
