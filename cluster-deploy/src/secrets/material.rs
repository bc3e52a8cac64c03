//! The cluster's secret material: the gossip key, the TLS PKI ([`super::pki`]) and the ACL
//! bootstrap token, made together, turned into the Key Vault items of
//! [`support::cluster_secrets::SecretItem`] for upload, and read back (and checked) from them.
//!
//! - Gossip key: "The key must be a base64-encoded string of 32 random bytes" (Nomad, "Enable
//!   gossip encryption"; 32 bytes select AES-256, 16 AES-128), standard base64 with padding, as
//!   `openssl rand -base64 32` prints it. Read back, 16, 24 or 32 bytes are accepted (Serf's
//!   key sizes) so an operator's existing key keeps working.
//! - ACL bootstrap token: a random (v4) UUID, which Nomad's `POST /v1/acl/bootstrap` takes as
//!   `BootstrapSecret` (Nomad's ACL bootstrap docs; REFERENCE.md).
//! - Every value is a [`Secret`] (never in `Debug` output); certificates, which are public, are
//!   plain strings inside [`super::pki`].

use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rand::RngCore;
use support::cluster_secrets::SecretItem;
use support::secret::Secret;

use super::pki::{
    self, CertificateAuthority, ClusterPki, IssuedCertificate, PkiError, PkiSpec, Role,
};

/// Why no material.
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("the system's random number generator failed: {0}")]
    Random(String),
    #[error("invalid gossip key ({item}): {reason}")]
    GossipKey { item: &'static str, reason: String },
    #[error("invalid ACL bootstrap token ({item}): {reason}")]
    BootstrapToken { item: &'static str, reason: String },
    #[error("{item} is missing")]
    Missing { item: &'static str },
    #[error(transparent)]
    Pki(#[from] PkiError),
}

fn random_bytes<const N: usize>() -> Result<[u8; N], MaterialError> {
    let mut bytes = [0u8; N];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| MaterialError::Random(e.to_string()))?;
    Ok(bytes)
}

/// Nomad's `server.encrypt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipKey(Secret);

impl GossipKey {
    /// 32 random bytes, base64.
    pub fn generate() -> Result<Self, MaterialError> {
        Ok(Self(Secret::new(STANDARD.encode(random_bytes::<32>()?))))
    }

    /// A key read back: standard base64 of 16, 24 or 32 bytes.
    pub fn parse(value: &Secret) -> Result<Self, MaterialError> {
        let text = value.expose().trim();
        let bad = |reason: &str| MaterialError::GossipKey {
            item: SecretItem::GossipKey.vault_name(),
            reason: reason.to_string(),
        };
        let bytes = STANDARD
            .decode(text)
            .map_err(|_| bad("not standard base64"))?;
        match bytes.len() {
            16 | 24 | 32 => Ok(Self(Secret::new(text.to_string()))),
            n => Err(bad(&format!("{n} bytes; Nomad takes 32 (or 16 or 24)"))),
        }
    }

    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

/// The token `POST /v1/acl/bootstrap` is given as `BootstrapSecret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapToken(Secret);

impl BootstrapToken {
    /// A random UUID.
    pub fn generate() -> Result<Self, MaterialError> {
        let uuid = uuid::Builder::from_random_bytes(random_bytes::<16>()?).into_uuid();
        Ok(Self(Secret::new(uuid.hyphenated().to_string())))
    }

    /// A token read back: a UUID in its hyphenated form.
    pub fn parse(value: &Secret) -> Result<Self, MaterialError> {
        let text = value.expose().trim();
        match uuid::Uuid::try_parse(text) {
            Ok(u) if u.hyphenated().to_string() == text.to_ascii_lowercase() => {
                Ok(Self(Secret::new(text.to_ascii_lowercase())))
            }
            _ => Err(MaterialError::BootstrapToken {
                item: SecretItem::BootstrapToken.vault_name(),
                reason: "not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)".into(),
            }),
        }
    }

    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

/// Everything the cluster keeps in its vault.
#[derive(Debug, Clone)]
pub struct ClusterSecrets {
    pub gossip_key: GossipKey,
    pub pki: ClusterPki,
    pub bootstrap_token: BootstrapToken,
}

impl ClusterSecrets {
    /// New material for a cluster.
    pub fn generate(spec: &PkiSpec, now: SystemTime) -> Result<Self, MaterialError> {
        Ok(Self {
            gossip_key: GossipKey::generate()?,
            pki: pki::generate(spec, now)?,
            bootstrap_token: BootstrapToken::generate()?,
        })
    }

    /// The value stored under `item`.
    pub fn value(&self, item: SecretItem) -> Secret {
        let cert = |c: &IssuedCertificate| Secret::new(c.cert_pem.clone());
        match item {
            SecretItem::GossipKey => self.gossip_key.secret().clone(),
            SecretItem::CaCertificate => Secret::new(self.pki.ca.cert_pem().to_string()),
            SecretItem::CaKey => self.pki.ca.key_pem().clone(),
            SecretItem::ServerCertificate => cert(&self.pki.server),
            SecretItem::ServerKey => self.pki.server.key_pem.clone(),
            SecretItem::ClientCertificate => cert(&self.pki.client),
            SecretItem::ClientKey => self.pki.client.key_pem.clone(),
            SecretItem::CliCertificate => cert(&self.pki.cli),
            SecretItem::CliKey => self.pki.cli.key_pem.clone(),
            SecretItem::BootstrapToken => self.bootstrap_token.secret().clone(),
        }
    }

    /// Every item with its value, in upload order.
    pub fn entries(&self) -> Vec<(SecretItem, Secret)> {
        SecretItem::ALL
            .into_iter()
            .map(|item| (item, self.value(item)))
            .collect()
    }

    /// The material read back from its items (a re-run keeps what the vault holds), checked:
    /// the gossip key and token are well-formed, the CA is a current CA matching its key, and
    /// each certificate is signed by it, named for its role in `region`, current and matching
    /// its key.
    pub fn from_items(
        mut lookup: impl FnMut(SecretItem) -> Option<Secret>,
        region: &str,
        now: SystemTime,
    ) -> Result<Self, MaterialError> {
        let mut get = |item: SecretItem| {
            lookup(item).ok_or(MaterialError::Missing {
                item: item.vault_name(),
            })
        };
        let gossip_key = GossipKey::parse(&get(SecretItem::GossipKey)?)?;
        let bootstrap_token = BootstrapToken::parse(&get(SecretItem::BootstrapToken)?)?;
        let ca = CertificateAuthority::from_pem(
            get(SecretItem::CaCertificate)?.expose(),
            &get(SecretItem::CaKey)?,
            now,
        )?;
        let mut leaf = |role: Role,
                        cert: SecretItem,
                        key: SecretItem|
         -> Result<IssuedCertificate, MaterialError> {
            let cert_pem = get(cert)?.expose().to_string();
            let key_pem = get(key)?;
            ca.check(role, region, &cert_pem, &key_pem, now)?;
            Ok(IssuedCertificate {
                role,
                cert_pem,
                key_pem,
            })
        };
        let server = leaf(
            Role::Server,
            SecretItem::ServerCertificate,
            SecretItem::ServerKey,
        )?;
        let client = leaf(
            Role::Client,
            SecretItem::ClientCertificate,
            SecretItem::ClientKey,
        )?;
        let cli = leaf(Role::Cli, SecretItem::CliCertificate, SecretItem::CliKey)?;
        Ok(Self {
            gossip_key,
            pki: ClusterPki {
                ca,
                server,
                client,
                cli,
            },
            bootstrap_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec() -> PkiSpec {
        PkiSpec {
            cluster: "c1".into(),
            region: "global".into(),
            server_sans: Vec::new(),
            lifetimes: pki::Lifetimes::default(),
        }
    }

    #[test]
    fn the_gossip_key_is_32_random_bytes_in_standard_base64() {
        let a = GossipKey::generate().unwrap();
        let b = GossipKey::generate().unwrap();
        assert_ne!(a, b);
        let text = a.secret().expose();
        assert_eq!(text.len(), 44);
        assert!(text.ends_with('='));
        assert_eq!(STANDARD.decode(text).unwrap().len(), 32);
        assert_eq!(GossipKey::parse(a.secret()).unwrap(), a);
        // A 16-byte key (what `nomad operator gossip keyring generate` prints) is accepted.
        GossipKey::parse(&Secret::new(STANDARD.encode([7u8; 16]))).unwrap();
        for bad in ["not base64!", &STANDARD.encode([1u8; 20]), ""] {
            let e = GossipKey::parse(&Secret::new(bad.to_string())).unwrap_err();
            assert!(e.to_string().contains("nomad-gossip-key"), "{e}");
            // The value itself stays out of the message.
            if !bad.is_empty() {
                assert!(!e.to_string().contains(bad), "{e}");
            }
        }
    }

    #[test]
    fn the_bootstrap_token_is_a_random_uuid() {
        let a = BootstrapToken::generate().unwrap();
        let b = BootstrapToken::generate().unwrap();
        assert_ne!(a, b);
        let parsed = uuid::Uuid::parse_str(a.secret().expose()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(a.secret().expose().len(), 36);
        assert_eq!(BootstrapToken::parse(a.secret()).unwrap(), a);
        for bad in ["", "not-a-uuid", "0123456789abcdef0123456789abcdef"] {
            assert!(
                BootstrapToken::parse(&Secret::new(bad.into())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_material_round_trips_through_its_vault_items() {
        let now = SystemTime::now();
        let secrets = ClusterSecrets::generate(&spec(), now).unwrap();
        let stored: BTreeMap<SecretItem, Secret> = secrets.entries().into_iter().collect();
        assert_eq!(stored.len(), SecretItem::ALL.len());
        let again = ClusterSecrets::from_items(|i| stored.get(&i).cloned(), "global", now).unwrap();
        assert_eq!(again.gossip_key, secrets.gossip_key);
        assert_eq!(again.bootstrap_token, secrets.bootstrap_token);
        assert_eq!(again.pki.server.cert_pem, secrets.pki.server.cert_pem);

        let missing = ClusterSecrets::from_items(
            |i| (i != SecretItem::ClientKey).then(|| stored[&i].clone()),
            "global",
            now,
        )
        .unwrap_err();
        assert_eq!(missing.to_string(), "nomad-client-key is missing");
        // Swapped certificates are caught, as is another region.
        let swapped = ClusterSecrets::from_items(
            |i| {
                let i = match i {
                    SecretItem::ServerCertificate => SecretItem::ClientCertificate,
                    SecretItem::ClientCertificate => SecretItem::ServerCertificate,
                    other => other,
                };
                stored.get(&i).cloned()
            },
            "global",
            now,
        )
        .unwrap_err();
        assert!(
            swapped.to_string().contains("not for server.global.nomad"),
            "{swapped}"
        );
        let region =
            ClusterSecrets::from_items(|i| stored.get(&i).cloned(), "us-west", now).unwrap_err();
        assert!(
            region.to_string().contains("server.us-west.nomad"),
            "{region}"
        );
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let secrets = ClusterSecrets::generate(&spec(), SystemTime::now()).unwrap();
        let printed = format!("{secrets:?}");
        for (item, value) in secrets.entries() {
            if item.is_private() {
                assert!(!printed.contains(value.expose()), "{item:?} leaked");
            }
        }
    }
}
