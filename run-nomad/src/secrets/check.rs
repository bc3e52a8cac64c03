//! What a fetched item must be before it is written and Nomad is pointed at it: pure.
//!
//! A value Nomad cannot use would otherwise surface as an agent that exits at start (a key it
//! cannot parse) or, worse, one that starts and can never talk to the others (a certificate for
//! another region fails `verify_server_hostname` on every connection). So, naming the Key Vault
//! secret and never showing a value:
//!
//! - the gossip key is standard base64 of 16, 24 or 32 bytes (Serf's AES-128/192/256 key sizes;
//!   32 is what Nomad's docs ask for and what cluster-deploy generates, the others are what an
//!   operator's older key may be, which cluster-deploy also accepts);
//! - the CA item holds one or more PEM certificates, each a CA (`basicConstraints CA:TRUE`);
//! - the agent's certificate is a PEM certificate naming `<role>.<region>.nomad` (Nomad's TLS
//!   guide: "Nomad certificates are signed with their region and role"), signed by one of those
//!   CAs, and not expired (one not yet valid is only warned about: a VM's clock can lag before
//!   time sync);
//! - the key is an unencrypted PEM private key (PKCS#8, SEC1 or PKCS#1), which Nomad reads.
//!
//! Whether the key belongs to the certificate is cluster-deploy's check when it stores them
//! (`ClusterSecrets::from_items`); here the agent would report it at start.

use std::time::SystemTime;

use base64::Engine;
use support::cluster_secrets::{AgentRole, SecretItem};
use support::secret::Secret;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;

/// Why an item is refused (no value in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Key Vault secret {secret}: {reason}")]
pub struct Refused {
    pub secret: &'static str,
    pub reason: String,
}

fn refuse(item: SecretItem, reason: impl Into<String>) -> Refused {
    Refused {
        secret: item.vault_name(),
        reason: reason.into(),
    }
}

/// The gossip key, trimmed: standard base64 (Go's `StdEncoding`, as Nomad decodes
/// `server.encrypt`) of 16, 24 or 32 bytes.
pub fn gossip_key(value: &Secret) -> Result<Secret, Refused> {
    let item = SecretItem::GossipKey;
    let text = value.expose().trim();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| refuse(item, "is not standard base64, as server.encrypt must be"))?;
    match bytes.len() {
        16 | 24 | 32 => Ok(Secret::new(text.to_string())),
        n => Err(refuse(
            item,
            format!("decodes to {n} bytes; a gossip key has 32 (or 16 or 24)"),
        )),
    }
}

/// The PEM blocks of a value, with their labels.
fn pem_blocks(item: SecretItem, value: &str) -> Result<Vec<Pem>, Refused> {
    let blocks: Vec<Pem> = Pem::iter_from_buffer(value.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| refuse(item, format!("is not PEM ({e})")))?;
    if blocks.is_empty() {
        return Err(refuse(item, "holds no PEM block"));
    }
    Ok(blocks)
}

fn certificates(item: SecretItem, blocks: &[Pem]) -> Result<Vec<X509Certificate<'_>>, Refused> {
    blocks
        .iter()
        .map(|block| {
            if block.label != "CERTIFICATE" {
                return Err(refuse(
                    item,
                    format!("holds a PEM {} block, not a CERTIFICATE", block.label),
                ));
            }
            block
                .parse_x509()
                .map_err(|e| refuse(item, format!("is not a readable X.509 certificate ({e})")))
        })
        .collect()
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

fn timestamp(now: SystemTime) -> i64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Checks the CA, the agent's certificate and its key for an agent of `role` in `region` at
/// `now`. Returns warnings worth logging (a certificate not yet valid).
pub fn tls(
    role: AgentRole,
    region: &str,
    ca: &Secret,
    cert: &Secret,
    key: &Secret,
    now: SystemTime,
) -> Result<Vec<String>, Refused> {
    let (ca_item, cert_item, key_item) = super::tls_items(role);
    let ca_blocks = pem_blocks(ca_item, ca.expose())?;
    let cas = certificates(ca_item, &ca_blocks)?;
    for authority in &cas {
        let is_ca = authority
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|b| b.value.ca);
        if !is_ca {
            return Err(refuse(
                ca_item,
                format!(
                    "the certificate for {:?} is not a CA (no basicConstraints CA:TRUE)",
                    authority.subject().to_string()
                ),
            ));
        }
    }
    let cert_blocks = pem_blocks(cert_item, cert.expose())?;
    let chain = certificates(cert_item, &cert_blocks)?;
    let leaf = &chain[0];
    let role_name = match role {
        AgentRole::Server => "server",
        AgentRole::Client => "client",
    };
    let expected = format!("{role_name}.{region}.nomad");
    let names = dns_names(leaf);
    if !names.iter().any(|n| n.eq_ignore_ascii_case(&expected)) {
        return Err(refuse(
            cert_item,
            format!(
                "the certificate names [{}], not {expected}, which verify_server_hostname \
                 requires of this agent (is --region the region the certificates were made \
                 for?)",
                names.join(", ")
            ),
        ));
    }
    let signed = cas
        .iter()
        .any(|authority| leaf.verify_signature(Some(authority.public_key())).is_ok());
    if !signed {
        return Err(refuse(
            cert_item,
            format!(
                "the certificate is not signed by the CA in {}",
                ca_item.vault_name()
            ),
        ));
    }
    let now = timestamp(now);
    let validity = leaf.validity();
    if validity.not_after.timestamp() <= now {
        return Err(refuse(
            cert_item,
            format!(
                "the certificate expired on {} (cluster-deploy rotate issues new ones)",
                validity.not_after
            ),
        ));
    }
    let mut warnings = Vec::new();
    if validity.not_before.timestamp() > now {
        warnings.push(format!(
            "Key Vault secret {}: the certificate is valid only from {}; is this VM's clock \
             behind?",
            cert_item.vault_name(),
            validity.not_before
        ));
    }
    let key_blocks = pem_blocks(key_item, key.expose())?;
    match key_blocks[0].label.as_str() {
        "PRIVATE KEY" | "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {}
        "ENCRYPTED PRIVATE KEY" => {
            return Err(refuse(
                key_item,
                "the private key is encrypted, which Nomad cannot read",
            ))
        }
        other => {
            return Err(refuse(
                key_item,
                format!("holds a PEM {other} block, not a private key"),
            ))
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_keys_of_serfs_sizes_pass_and_nothing_else() {
        let b64 = |n: usize| base64::engine::general_purpose::STANDARD.encode(vec![7u8; n]);
        for n in [16, 24, 32] {
            let key = gossip_key(&Secret::new(format!("{}\n", b64(n)))).unwrap();
            assert_eq!(key.expose(), b64(n));
        }
        let err = gossip_key(&Secret::new(b64(31))).unwrap_err();
        assert!(err.to_string().contains("31 bytes"), "{err}");
        assert!(!err.to_string().contains(&b64(31)), "{err}");
        let err = gossip_key(&Secret::new("not*base64".into())).unwrap_err();
        assert!(err.to_string().contains("nomad-gossip-key"), "{err}");
        assert!(!err.to_string().contains("not*base64"), "{err}");
    }

    use support::doubles::tls::TestCa;

    fn s(text: &str) -> Secret {
        Secret::new(text.to_string())
    }

    #[test]
    fn a_cluster_pki_passes_for_its_role_and_region_only() {
        let ca = TestCa::new("nomad-ca");
        let server = ca.server_cert(&["server.global.nomad", "localhost", "127.0.0.1"]);
        let now = SystemTime::now();
        let check = |role, region: &str, cert: &str| {
            tls(
                role,
                region,
                &s(ca.cert_pem()),
                &s(cert),
                &s(&server.key_pem),
                now,
            )
        };
        assert_eq!(
            check(AgentRole::Server, "global", &server.cert_pem).unwrap(),
            Vec::<String>::new()
        );
        // Another region, or the other role: verify_server_hostname would refuse it.
        let err = check(AgentRole::Server, "westeurope", &server.cert_pem).unwrap_err();
        assert_eq!(err.secret, "nomad-server-cert");
        assert!(err.reason.contains("not server.westeurope.nomad"), "{err}");
        let err = check(AgentRole::Client, "global", &server.cert_pem).unwrap_err();
        assert_eq!(err.secret, "nomad-client-cert");
        // Signed by another CA.
        let other = TestCa::new("other").server_cert(&["server.global.nomad"]);
        let err = check(AgentRole::Server, "global", &other.cert_pem).unwrap_err();
        assert!(err.reason.contains("not signed by the CA"), "{err}");
        // A leaf where the CA belongs.
        let err = tls(
            AgentRole::Server,
            "global",
            &s(&server.cert_pem),
            &s(&server.cert_pem),
            &s(&server.key_pem),
            now,
        )
        .unwrap_err();
        assert_eq!(err.secret, "nomad-ca-cert");
        assert!(err.reason.contains("not a CA"), "{err}");
        // A certificate where the key belongs, and an encrypted key.
        for (key, why) in [
            (server.cert_pem.clone(), "not a private key"),
            (
                "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
                    .to_string(),
                "encrypted",
            ),
        ] {
            let err = tls(
                AgentRole::Server,
                "global",
                &s(ca.cert_pem()),
                &s(&server.cert_pem),
                &s(&key),
                now,
            )
            .unwrap_err();
            assert_eq!(err.secret, "nomad-server-key");
            assert!(err.reason.contains(why), "{err}");
        }
        // A bundle of CAs (old and new during a rotation) is fine.
        let bundle = format!("{}{}", TestCa::new("new").cert_pem(), ca.cert_pem());
        tls(
            AgentRole::Server,
            "global",
            &s(&bundle),
            &s(&server.cert_pem),
            &s(&server.key_pem),
            now,
        )
        .unwrap();
    }

    #[test]
    fn an_expired_certificate_is_refused_and_an_early_one_warned_about() {
        let ca = TestCa::new("nomad-ca");
        let client = ca.server_cert(&["client.global.nomad"]);
        let at =
            |year_secs: u64| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(year_secs);
        let check = |now| {
            tls(
                AgentRole::Client,
                "global",
                &s(ca.cert_pem()),
                &s(&client.cert_pem),
                &s(&client.key_pem),
                now,
            )
        };
        // rcgen's certificates are valid from 1975 to 4096.
        let err = check(at(100_000_000_000)).unwrap_err();
        assert!(err.reason.contains("expired"), "{err}");
        let warnings = check(at(0)).unwrap();
        assert!(warnings[0].contains("valid only from"), "{warnings:?}");
    }

    #[test]
    fn values_that_are_not_pem_are_refused_by_secret_name() {
        let junk = Secret::new("certainly not PEM".into());
        let err = tls(
            AgentRole::Client,
            "global",
            &junk,
            &junk,
            &junk,
            SystemTime::now(),
        )
        .unwrap_err();
        assert_eq!(err.secret, "nomad-ca-cert");
        assert!(err.reason.contains("no PEM block"), "{err}");
        assert!(!err.to_string().contains("certainly"), "{err}");
    }
}
