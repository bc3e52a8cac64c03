//! What the cluster's security comes to: which of TLS, gossip encryption and the ACL bootstrap
//! are on and where their material comes from, the Key Vault that keeps it, and which scale
//! set reads which item. Pure, decided from the validated cluster file.

use std::path::PathBuf;

use support::cluster_secrets::{AgentRole, SecretItem};

use super::Role;
use crate::config::security::{
    default_vault_name, uses_vault, vault_cidrs, DEFAULT_RETENTION_DAYS,
};
use crate::config::ClusterFile;

/// Where the TLS CA comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSource {
    /// No TLS (an opt-out).
    Off,
    /// A CA cluster-deploy makes and keeps in the vault (with its key).
    Generated,
    /// The operator's own CA, read from these files on this machine at each apply; its key is
    /// never uploaded.
    OwnCa {
        cert_file: PathBuf,
        key_file: PathBuf,
    },
}

/// Where the gossip key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GossipSource {
    Off,
    Generated,
    /// The operator's key file (on this machine), uploaded to the vault.
    OwnKey(PathBuf),
}

/// The cluster's Key Vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVault {
    pub name: String,
    pub purge_protection: bool,
    pub retention_days: u32,
    /// Public blocks the firewall admits (the operators').
    pub allowed_cidrs: Vec<String>,
    /// No firewall (a `0.0.0.0/0` block): RBAC alone.
    pub open: bool,
}

/// The cluster's security settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    pub tls: TlsSource,
    pub gossip: GossipSource,
    pub acl: bool,
    /// `apply` bootstraps ACLs with the vault's token.
    pub acl_bootstrap: bool,
    /// The Nomad region the certificates name (`server.<region>.nomad`): `[nomad] region`, or
    /// the location, which is run-nomad's default region.
    pub region: String,
    /// Set when the vault holds anything.
    pub key_vault: Option<KeyVault>,
}

impl Security {
    pub fn from_file(f: &ClusterFile) -> Self {
        let tls = match (&f.nomad.tls.ca_cert_file, &f.nomad.tls.ca_key_file) {
            _ if !f.nomad.tls.enabled => TlsSource::Off,
            (Some(cert), Some(key)) => TlsSource::OwnCa {
                cert_file: cert.clone(),
                key_file: key.clone(),
            },
            _ => TlsSource::Generated,
        };
        let gossip = match &f.nomad.gossip_key_file {
            _ if !f.nomad.gossip_encryption => GossipSource::Off,
            Some(file) => GossipSource::OwnKey(file.clone()),
            None => GossipSource::Generated,
        };
        let key_vault =
            uses_vault(f).then(|| {
                let (allowed_cidrs, open) = vault_cidrs(f);
                KeyVault {
                    name: f.key_vault.name.clone().unwrap_or_else(|| {
                        default_vault_name(&f.cluster_name, &f.resource_group_name)
                    }),
                    purge_protection: f.key_vault.purge_protection,
                    retention_days: f
                        .key_vault
                        .soft_delete_retention_days
                        .unwrap_or(DEFAULT_RETENTION_DAYS),
                    allowed_cidrs,
                    open,
                }
            });
        Self {
            tls,
            gossip,
            acl: f.nomad.acl,
            acl_bootstrap: f.nomad.acl && f.nomad.acl_bootstrap,
            region: f.nomad.region.clone().unwrap_or_else(|| f.location.clone()),
            key_vault,
        }
    }

    pub fn tls(&self) -> bool {
        self.tls != TlsSource::Off
    }

    pub fn gossip(&self) -> bool {
        self.gossip != GossipSource::Off
    }

    /// `https` with TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls() {
            "https"
        } else {
            "http"
        }
    }

    /// The name the servers' certificate carries, which clients verify (`NOMAD_TLS_SERVER_NAME`).
    pub fn server_name(&self) -> String {
        format!("server.{}.nomad", self.region)
    }

    /// Every item the vault keeps, in upload order (a CA before what it signs).
    pub fn items(&self) -> Vec<SecretItem> {
        SecretItem::ALL
            .into_iter()
            .filter(|item| match item {
                SecretItem::GossipKey => self.gossip(),
                SecretItem::BootstrapToken => self.acl_bootstrap,
                // An operator's own CA key stays on the operator's machine.
                SecretItem::CaKey => self.tls == TlsSource::Generated,
                _ => self.tls(),
            })
            .collect()
    }

    /// The items the VMs of `role` read at boot: what their role needs ([`SecretItem::for_role`])
    /// of what the vault keeps.
    pub fn items_for(&self, role: Role) -> Vec<SecretItem> {
        let role = match role {
            Role::Server => AgentRole::Server,
            Role::Client => AgentRole::Client,
        };
        let kept = self.items();
        SecretItem::for_role(role)
            .into_iter()
            .filter(|i| kept.contains(i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::example_with;
    use super::*;

    #[test]
    fn by_default_the_vault_keeps_everything_and_each_role_reads_its_own() {
        let s = example_with("").security;
        assert_eq!(s.tls, TlsSource::Generated);
        assert_eq!(s.gossip, GossipSource::Generated);
        assert!(s.acl && s.acl_bootstrap);
        assert_eq!(s.region, "westeurope", "run-nomad's default region");
        assert_eq!(s.items(), SecretItem::ALL.to_vec());
        assert_eq!(
            s.items_for(Role::Server),
            SecretItem::for_role(AgentRole::Server)
        );
        assert_eq!(
            s.items_for(Role::Client),
            SecretItem::for_role(AgentRole::Client)
        );
        let vault = s.key_vault.unwrap();
        assert_eq!(vault.retention_days, 90);
        assert!(!vault.purge_protection && !vault.open);
        assert_eq!(vault.allowed_cidrs, ["203.0.113.0/24"]);
    }

    #[test]
    fn opt_outs_shrink_what_the_vault_keeps() {
        let s = example_with("[nomad]\nregion = \"eu\"\ngossip_encryption = false\n").security;
        assert_eq!(s.server_name(), "server.eu.nomad");
        assert!(!s.items().contains(&SecretItem::GossipKey));
        assert_eq!(s.items_for(Role::Server).len(), 3);
        let s =
            example_with("[nomad]\nacl_bootstrap = false\n[nomad.tls]\nenabled = false\n").security;
        assert_eq!(s.items(), [SecretItem::GossipKey]);
        assert!(s.items_for(Role::Client).is_empty());
        assert_eq!(s.scheme(), "http");
        let s = example_with(
            "[nomad]\nacl = false\ngossip_encryption = false\n[nomad.tls]\nenabled = false\n",
        )
        .security;
        assert!(s.items().is_empty() && s.key_vault.is_none());
        let s =
            example_with("[nomad.tls]\nca_cert_file = \"ca.pem\"\nca_key_file = \"ca-key.pem\"\n")
                .security;
        assert!(matches!(s.tls, TlsSource::OwnCa { .. }));
        assert!(
            !s.items().contains(&SecretItem::CaKey),
            "an own CA key is not uploaded"
        );
    }
}
