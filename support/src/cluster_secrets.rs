//! The cluster's secrets as they live in its Azure Key Vault: one Key Vault secret per item,
//! named here once so that cluster-deploy (which generates and uploads them) and run-nomad
//! (which fetches them at boot) agree, and which agent role reads which item.
//!
//! Each scale set's identity is granted read access to exactly the items of its role
//! ([`SecretItem::for_role`]), at the scope of each secret (`.../vaults/<v>/secrets/<name>`,
//! "Secret scope role assignment" in Microsoft's Key Vault RBAC guide), so a client node can
//! never read the server key or the gossip key. The CA key, the CLI certificate and the ACL
//! bootstrap token are read by no VM: only the operator's principal reads them.

/// An agent role, as far as secrets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentRole {
    Server,
    Client,
}

/// One item of the cluster's secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretItem {
    /// Serf gossip encryption key: 32 random bytes, base64 (Nomad's `server.encrypt`).
    GossipKey,
    /// The cluster CA certificate (PEM), trusted by every agent and the operator's CLI.
    CaCertificate,
    /// The CA's private key (PEM). Needed only to issue certificates (rotation).
    CaKey,
    /// `server.<region>.nomad` certificate and key (PEM).
    ServerCertificate,
    ServerKey,
    /// `client.<region>.nomad` certificate and key (PEM).
    ClientCertificate,
    ClientKey,
    /// The operator CLI's client certificate and key (PEM).
    CliCertificate,
    CliKey,
    /// The ACL bootstrap token (a UUID), given to `POST /v1/acl/bootstrap` as `BootstrapSecret`.
    BootstrapToken,
}

impl SecretItem {
    /// Every item, in upload order.
    pub const ALL: [SecretItem; 10] = [
        SecretItem::GossipKey,
        SecretItem::CaCertificate,
        SecretItem::CaKey,
        SecretItem::ServerCertificate,
        SecretItem::ServerKey,
        SecretItem::ClientCertificate,
        SecretItem::ClientKey,
        SecretItem::CliCertificate,
        SecretItem::CliKey,
        SecretItem::BootstrapToken,
    ];

    /// The Key Vault secret name. Key Vault secret names match `^[0-9a-zA-Z-]+$` (SetSecret's
    /// `secret-name` pattern in secrets.json 7.6).
    pub fn vault_name(self) -> &'static str {
        match self {
            SecretItem::GossipKey => "nomad-gossip-key",
            SecretItem::CaCertificate => "nomad-ca-cert",
            SecretItem::CaKey => "nomad-ca-key",
            SecretItem::ServerCertificate => "nomad-server-cert",
            SecretItem::ServerKey => "nomad-server-key",
            SecretItem::ClientCertificate => "nomad-client-cert",
            SecretItem::ClientKey => "nomad-client-key",
            SecretItem::CliCertificate => "nomad-cli-cert",
            SecretItem::CliKey => "nomad-cli-key",
            SecretItem::BootstrapToken => "nomad-acl-bootstrap-token",
        }
    }

    /// The item a Key Vault secret name stands for.
    pub fn from_vault_name(name: &str) -> Option<SecretItem> {
        SecretItem::ALL
            .into_iter()
            .find(|i| i.vault_name().eq_ignore_ascii_case(name))
    }

    /// The `contentType` stored with the secret (SecretSetParameters), so a person browsing
    /// the vault sees what each value is.
    pub fn content_type(self) -> &'static str {
        match self {
            SecretItem::GossipKey => "application/vnd.nomad.gossip-key+base64",
            SecretItem::BootstrapToken => "application/vnd.nomad.acl-token+uuid",
            _ => "application/x-pem-file",
        }
    }

    /// Whether the value is itself secret (a private key, the gossip key, a token), as opposed
    /// to a certificate: on disk such files are 0640 root:nomad (or tighter), never 0644.
    pub fn is_private(self) -> bool {
        !matches!(
            self,
            SecretItem::CaCertificate
                | SecretItem::ServerCertificate
                | SecretItem::ClientCertificate
                | SecretItem::CliCertificate
        )
    }

    /// Whether agents of `role` read this item at boot.
    pub fn read_by(self, role: AgentRole) -> bool {
        match role {
            AgentRole::Server => matches!(
                self,
                SecretItem::GossipKey
                    | SecretItem::CaCertificate
                    | SecretItem::ServerCertificate
                    | SecretItem::ServerKey
            ),
            AgentRole::Client => matches!(
                self,
                SecretItem::CaCertificate | SecretItem::ClientCertificate | SecretItem::ClientKey
            ),
        }
    }

    /// The items agents of `role` read, and nothing else.
    pub fn for_role(role: AgentRole) -> Vec<SecretItem> {
        SecretItem::ALL
            .into_iter()
            .filter(|i| i.read_by(role))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_key_vault_secret_names_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for item in SecretItem::ALL {
            let name = item.vault_name();
            assert!(
                !name.is_empty()
                    && name.len() <= 127
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{name}"
            );
            assert!(seen.insert(name), "{name} twice");
            assert_eq!(SecretItem::from_vault_name(name), Some(item));
        }
        assert_eq!(SecretItem::from_vault_name("other"), None);
    }

    #[test]
    fn each_role_reads_only_what_it_needs() {
        assert_eq!(
            SecretItem::for_role(AgentRole::Server),
            vec![
                SecretItem::GossipKey,
                SecretItem::CaCertificate,
                SecretItem::ServerCertificate,
                SecretItem::ServerKey
            ]
        );
        assert_eq!(
            SecretItem::for_role(AgentRole::Client),
            vec![
                SecretItem::CaCertificate,
                SecretItem::ClientCertificate,
                SecretItem::ClientKey
            ]
        );
        for never in [
            SecretItem::CaKey,
            SecretItem::CliCertificate,
            SecretItem::CliKey,
            SecretItem::BootstrapToken,
        ] {
            assert!(!never.read_by(AgentRole::Server) && !never.read_by(AgentRole::Client));
        }
        assert!(SecretItem::ServerKey.is_private() && !SecretItem::CaCertificate.is_private());
    }
}
