//! The cluster's TLS: a private CA and the certificates Nomad's TLS guide prescribes ("Enable
//! TLS encryption for Nomad"), generated with rcgen on ring.
//!
//! What each certificate is, and why (facts from the guide and from what `nomad tls ca create`
//! and `nomad tls cert create` make, hashicorp/nomad `helper/tlsutil/generate.go`,
//! `command/tls_cert_create.go`):
//!
//! - Keys are ECDSA P-256, as Nomad's own tooling makes them; private keys are PKCS#8 PEM,
//!   which Nomad reads.
//! - The CA: `CA:TRUE` with `pathlen:0` (agents' certificates are signed by it directly, no
//!   intermediate may be minted), key usage `keyCertSign`, `cRLSign` (critical). "Nomad requires
//!   all certificates be signed by the same Certificate Authority (CA). This should be a
//!   private CA": one per cluster.
//! - Agent certificates are named by role and region, never by host: "Nomad certificates are
//!   signed with their region and role such as `client.global.nomad` ... `server.us-west.nomad`".
//!   Server: CN and DNS SAN `server.<region>.nomad`; client: `client.<region>.nomad`; both
//!   also `localhost` and IP `127.0.0.1` ("Using localhost and 127.0.0.1 as subject alternate
//!   names (SANs) allows tools like curl to ... communicate with Nomad's HTTP API when run on
//!   the same host. Other SANs may be added": [`PkiSpec::server_sans`], e.g. the load
//!   balancer's address and DNS name, on the server certificate, which is what serves the API
//!   behind it). Unlike `nomad tls cert create` we do not add `server.global.nomad` to a
//!   non-global region's certificate: `verify_server_hostname` checks the role *and region*,
//!   and a second region name would weaken that.
//! - Agents act as TLS servers (HTTP API, RPC) and TLS clients (RPC to servers, server to
//!   server): extended key usage `serverAuth` and `clientAuth`. The CLI certificate
//!   (`cli.<region>.nomad`, `localhost`) only ever connects: `clientAuth` alone, so it cannot
//!   stand in for an agent. Leaf key usage is `digitalSignature` only: with ECDSA keys TLS
//!   uses the key to sign, never to encipher (`keyEncipherment` is an RSA key-transport usage).
//! - Lifetimes ([`Lifetimes`]): the CA 5 years, leaves 1 year (the defaults of `nomad tls ca
//!   create` and `nomad tls cert create`). The CA lives long because replacing it means every
//!   agent must trust old and new at once (a disruptive, coordinated rollout), while a leaf is
//!   re-issued from the same CA and reloaded with SIGHUP ("Nomad supports dynamic certificate
//!   reloading via SIGHUP"), so a short life limits how long a stolen node key is worth having.
//!   A leaf never outlives its CA. Every certificate starts one hour in the past: a VM that
//!   boots with its clock behind (before time sync) must not reject a certificate "not yet
//!   valid".
//! - Serial numbers are 128 random bits (as Nomad's), positive.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use support::secret::Secret;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

/// How far back every certificate's validity starts (clock skew on freshly booted VMs).
pub const BACKDATE: Duration = Duration::from_secs(3600);

const DAY: u64 = 86_400;

/// Certificate lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    pub ca: Duration,
    pub agent: Duration,
    pub cli: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            ca: Duration::from_secs(5 * 365 * DAY),
            agent: Duration::from_secs(365 * DAY),
            cli: Duration::from_secs(365 * DAY),
        }
    }
}

/// Whose certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Server,
    Client,
    Cli,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Cli => "cli",
        }
    }

    /// The name Nomad verifies: `<role>.<region>.nomad`.
    pub fn tls_name(self, region: &str) -> String {
        format!("{}.{region}.nomad", self.as_str())
    }
}

/// An extra subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraSan {
    Dns(String),
    Ip(IpAddr),
}

impl ExtraSan {
    /// An IP address, or else a DNS name (checked: letters, digits, hyphens, dots).
    pub fn parse(value: &str) -> Result<Self, PkiError> {
        let value = value.trim();
        if let Ok(ip) = value.parse::<IpAddr>() {
            return Ok(ExtraSan::Ip(ip));
        }
        let bad = |reason: &str| {
            Err(PkiError::InvalidSan {
                value: value.to_string(),
                reason: reason.to_string(),
            })
        };
        if value.is_empty() || value.len() > 253 {
            return bad("a DNS name has 1 to 253 characters");
        }
        for label in value.trim_end_matches('.').split('.') {
            if label.is_empty() || label.len() > 63 {
                return bad("each DNS label has 1 to 63 characters");
            }
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                || label.starts_with('-')
                || label.ends_with('-')
            {
                return bad(
                    "a DNS label has only letters, digits and inner hyphens (no wildcards)",
                );
            }
        }
        Ok(ExtraSan::Dns(
            value.trim_end_matches('.').to_ascii_lowercase(),
        ))
    }
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct PkiSpec {
    /// The cluster's name, in the CA's common name.
    pub cluster: String,
    /// Nomad's region (`global` unless the cluster sets one).
    pub region: String,
    /// More SANs for the server certificate (the load balancer's IP and DNS name).
    pub server_sans: Vec<ExtraSan>,
    pub lifetimes: Lifetimes,
}

/// Why no certificate.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid Nomad region {region:?} for TLS names (<role>.<region>.nomad): {reason}")]
    InvalidRegion { region: String, reason: String },
    #[error("invalid extra subject alternative name {value:?}: {reason}")]
    InvalidSan { value: String, reason: String },
    #[error("{what}: {reason}")]
    Lifetime { what: String, reason: String },
    #[error("generating {what}: {source}")]
    Generate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{what} is not a usable PEM {expected}: {reason}")]
    Parse {
        what: String,
        expected: &'static str,
        reason: String,
    },
    #[error("{what}: the private key does not belong to the certificate")]
    KeyMismatch { what: String },
    #[error("{what} is not signed by the cluster CA: {reason}")]
    NotSignedByCa { what: String, reason: String },
    #[error("{what} is not a CA certificate (basicConstraints CA:TRUE)")]
    NotACa { what: String },
    #[error("{what} expired (not after {not_after})")]
    Expired { what: String, not_after: String },
    #[error("{what} is not for {expected} (its DNS names: {found})")]
    WrongName {
        what: String,
        expected: String,
        found: String,
    },
}

fn generate_error(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_string(),
        source,
    }
}

/// Region names become a DNS label of every certificate name.
pub fn validate_region(region: &str) -> Result<(), PkiError> {
    let bad = |reason: &str| {
        Err(PkiError::InvalidRegion {
            region: region.to_string(),
            reason: reason.to_string(),
        })
    };
    if region.is_empty() || region.len() > 63 {
        return bad("1 to 63 characters");
    }
    if !region
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || region.starts_with('-')
        || region.ends_with('-')
    {
        return bad("lower-case letters, digits and inner hyphens only");
    }
    Ok(())
}

fn offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // and 16 bytes long
    SerialNumber::from_slice(&bytes)
}

/// The cluster's CA: certificate and private key.
#[derive(Debug, Clone)]
pub struct CertificateAuthority {
    cert_pem: String,
    key_pem: Secret,
    not_after: SystemTime,
}

/// A certificate and its private key.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub role: Role,
    pub cert_pem: String,
    pub key_pem: Secret,
}

/// The CA and the three certificates.
#[derive(Debug, Clone)]
pub struct ClusterPki {
    pub ca: CertificateAuthority,
    pub server: IssuedCertificate,
    pub client: IssuedCertificate,
    pub cli: IssuedCertificate,
}

/// Generates the CA and the server, client and CLI certificates at `now`.
pub fn generate(spec: &PkiSpec, now: SystemTime) -> Result<ClusterPki, PkiError> {
    validate_region(&spec.region)?;
    let ca = CertificateAuthority::generate(&spec.cluster, spec.lifetimes.ca, now)?;
    let server = ca.issue(
        Role::Server,
        &spec.region,
        &spec.server_sans,
        spec.lifetimes.agent,
        now,
    )?;
    let client = ca.issue(Role::Client, &spec.region, &[], spec.lifetimes.agent, now)?;
    let cli = ca.issue(Role::Cli, &spec.region, &[], spec.lifetimes.cli, now)?;
    Ok(ClusterPki {
        ca,
        server,
        client,
        cli,
    })
}

impl CertificateAuthority {
    /// A new self-signed CA for `cluster`, valid for `lifetime` from `now`.
    pub fn generate(cluster: &str, lifetime: Duration, now: SystemTime) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(generate_error("the CA key"))?;
        let mut params = CertificateParams::default();
        let serial = random_serial();
        // Two clusters of the same name must not have CAs of the same name: a verifier finds
        // an issuer by name, and would check against the wrong one (as Nomad's own CA names
        // carry their serial).
        let tag: String = serial.to_bytes()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!(
                "Nomad agent CA {} {tag}",
                cluster.chars().take(40).collect::<String>()
            ),
        );
        dn.push(DnType::OrganizationName, "nomad-azure-tools");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(serial);
        params.not_before = offset(now - BACKDATE);
        let not_after = now + lifetime;
        params.not_after = offset(not_after);
        let cert = params
            .self_signed(&key)
            .map_err(generate_error("the CA certificate"))?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: Secret::new(key.serialize_pem()),
            not_after: truncate_to_seconds(not_after),
        })
    }

    /// A CA read back (from the vault, or the operator's own files): the certificate must be a
    /// CA, current, and match the key.
    pub fn from_pem(cert_pem: &str, key_pem: &Secret, now: SystemTime) -> Result<Self, PkiError> {
        let what = "the CA certificate";
        let facts = inspect(cert_pem, what)?;
        if !facts.is_ca {
            return Err(PkiError::NotACa { what: what.into() });
        }
        if facts.not_after <= now {
            return Err(PkiError::Expired {
                what: what.into(),
                not_after: fmt_time(facts.not_after),
            });
        }
        check_key(cert_pem, key_pem, what)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.clone(),
            not_after: facts.not_after,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &Secret {
        &self.key_pem
    }

    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// Issues `role`'s certificate for `region` from this CA, valid for `lifetime` from `now`
    /// or until the CA expires, whichever comes first.
    pub fn issue(
        &self,
        role: Role,
        region: &str,
        extra_sans: &[ExtraSan],
        lifetime: Duration,
        now: SystemTime,
    ) -> Result<IssuedCertificate, PkiError> {
        validate_region(region)?;
        let what = format!("the {} certificate", role.as_str());
        let not_after = (now + lifetime).min(self.not_after);
        if not_after <= now + Duration::from_secs(DAY) {
            return Err(PkiError::Lifetime {
                what,
                reason: "the CA expires within a day: rotate the CA first".into(),
            });
        }
        let ca_key = KeyPair::from_pem(self.key_pem.expose()).map_err(|e| PkiError::Parse {
            what: "the CA key".into(),
            expected: "private key",
            reason: e.to_string(),
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(&self.cert_pem, ca_key).map_err(|e| PkiError::Parse {
                what: "the CA certificate".into(),
                expected: "certificate",
                reason: e.to_string(),
            })?;
        let key = KeyPair::generate().map_err(generate_error(&what))?;
        let name = role.tls_name(region);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name.clone());
        params.distinguished_name = dn;
        let ia5 = |s: &str| {
            s.to_string()
                .try_into()
                .map_err(generate_error(&what))
                .map(SanType::DnsName)
        };
        let mut sans = vec![ia5(&name)?, ia5("localhost")?];
        if role != Role::Cli {
            sans.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        }
        for extra in extra_sans {
            let san = match extra {
                ExtraSan::Dns(d) => ia5(d)?,
                ExtraSan::Ip(ip) => SanType::IpAddress(*ip),
            };
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match role {
            Role::Server | Role::Client => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Role::Cli => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial());
        params.not_before = offset(now - BACKDATE);
        params.not_after = offset(not_after);
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(generate_error(&what))?;
        Ok(IssuedCertificate {
            role,
            cert_pem: cert.pem(),
            key_pem: Secret::new(key.serialize_pem()),
        })
    }

    /// Checks a certificate read back (from the vault, or the operator's own): signed by this
    /// CA, named for `role` in `region`, current, and matching its key.
    pub fn check(
        &self,
        role: Role,
        region: &str,
        cert_pem: &str,
        key_pem: &Secret,
        now: SystemTime,
    ) -> Result<CertificateFacts, PkiError> {
        let what = format!("the {} certificate", role.as_str());
        let facts = inspect(cert_pem, &what)?;
        let expected = role.tls_name(region);
        if !facts.dns_names.iter().any(|d| d == &expected) {
            return Err(PkiError::WrongName {
                what,
                expected,
                found: facts.dns_names.join(", "),
            });
        }
        if facts.not_after <= now {
            return Err(PkiError::Expired {
                what,
                not_after: fmt_time(facts.not_after),
            });
        }
        let ca_der = pem_der(&self.cert_pem, "the CA certificate")?;
        let (_, ca) =
            x509_parser::parse_x509_certificate(&ca_der).map_err(|e| PkiError::Parse {
                what: "the CA certificate".into(),
                expected: "certificate",
                reason: e.to_string(),
            })?;
        let der = pem_der(cert_pem, &what)?;
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Parse {
            what: what.clone(),
            expected: "certificate",
            reason: e.to_string(),
        })?;
        leaf.verify_signature(Some(ca.public_key()))
            .map_err(|e| PkiError::NotSignedByCa {
                what: what.clone(),
                reason: e.to_string(),
            })?;
        check_key(cert_pem, key_pem, &what)?;
        Ok(facts)
    }
}

/// A time for an error message (UTC).
fn fmt_time(t: SystemTime) -> String {
    offset(t).to_string()
}

fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub is_ca: bool,
}

fn pem_der(pem: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    let (_, block) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| PkiError::Parse {
            what: what.to_string(),
            expected: "certificate",
            reason: e.to_string(),
        })?;
    if block.label != "CERTIFICATE" {
        return Err(PkiError::Parse {
            what: what.to_string(),
            expected: "certificate",
            reason: format!("the PEM block is a {}", block.label),
        });
    }
    Ok(block.contents)
}

/// Reads a PEM certificate's names, validity and CA flag.
pub fn inspect(cert_pem: &str, what: &str) -> Result<CertificateFacts, PkiError> {
    let der = pem_der(cert_pem, what)?;
    let parse = |reason: String| PkiError::Parse {
        what: what.to_string(),
        expected: "certificate",
        reason,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| parse(e.to_string()))?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| parse(e.to_string()))?
    {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => dns_names.push(d.to_string()),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => ip_addresses
                        .push(IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("4 bytes"))),
                    16 => ip_addresses.push(IpAddr::from(
                        <[u8; 16]>::try_from(*bytes).expect("16 bytes"),
                    )),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let time = |t: &x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    };
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| parse(e.to_string()))?
        .is_some_and(|b| b.value.ca);
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let facts = CertificateFacts {
        common_name,
        dns_names,
        ip_addresses,
        not_before: time(&cert.validity().not_before),
        not_after: time(&cert.validity().not_after),
        is_ca,
    };
    Ok(facts)
}

/// The key must be the certificate's: compare the public keys.
fn check_key(cert_pem: &str, key_pem: &Secret, what: &str) -> Result<(), PkiError> {
    let key = KeyPair::from_pem(key_pem.expose()).map_err(|e| PkiError::Parse {
        what: format!("{what}'s key"),
        expected: "private key",
        reason: e.to_string(),
    })?;
    let der = pem_der(cert_pem, what)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Parse {
        what: what.to_string(),
        expected: "certificate",
        reason: e.to_string(),
    })?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(PkiError::KeyMismatch {
            what: what.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PkiSpec {
        PkiSpec {
            cluster: "c1".into(),
            region: "global".into(),
            server_sans: vec![
                ExtraSan::parse("20.0.0.5").unwrap(),
                ExtraSan::parse("Nomad.Example.COM.").unwrap(),
            ],
            lifetimes: Lifetimes::default(),
        }
    }

    #[test]
    fn names_sans_and_lifetimes_follow_the_guide() {
        let now = SystemTime::now();
        let pki = generate(&spec(), now).unwrap();
        let server = inspect(&pki.server.cert_pem, "server").unwrap();
        assert_eq!(server.common_name, "server.global.nomad");
        assert_eq!(
            server.dns_names,
            ["server.global.nomad", "localhost", "nomad.example.com"]
        );
        assert_eq!(
            server.ip_addresses,
            [
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "20.0.0.5".parse().unwrap()
            ]
        );
        assert!(!server.is_ca);
        let cli = inspect(&pki.cli.cert_pem, "cli").unwrap();
        assert_eq!(cli.dns_names, ["cli.global.nomad", "localhost"]);
        assert!(cli.ip_addresses.is_empty());
        let ca = inspect(pki.ca.cert_pem(), "ca").unwrap();
        assert!(ca.is_ca);
        // X.509 times have whole seconds.
        let close = |t: SystemTime, want: SystemTime| {
            let d = want.duration_since(t).unwrap_or_else(|e| e.duration());
            assert!(d < Duration::from_secs(1), "{t:?} vs {want:?}");
        };
        close(ca.not_after, now + Lifetimes::default().ca);
        close(server.not_after, now + Lifetimes::default().agent);
        close(cli.not_after, now + Lifetimes::default().cli);
        assert!(server.not_before <= now - BACKDATE + Duration::from_secs(1));
        for issued in [&pki.server, &pki.client, &pki.cli] {
            pki.ca
                .check(
                    issued.role,
                    "global",
                    &issued.cert_pem,
                    &issued.key_pem,
                    now,
                )
                .unwrap();
            assert!(issued
                .key_pem
                .expose()
                .starts_with("-----BEGIN PRIVATE KEY-----"));
        }
    }

    #[test]
    fn a_ca_read_back_issues_leaves_that_check_against_it_and_not_another() {
        let now = SystemTime::now();
        let pki = generate(&spec(), now).unwrap();
        let again =
            CertificateAuthority::from_pem(pki.ca.cert_pem(), pki.ca.key_pem(), now).unwrap();
        let leaf = again
            .issue(
                Role::Client,
                "global",
                &[],
                Duration::from_secs(30 * DAY),
                now,
            )
            .unwrap();
        pki.ca
            .check(Role::Client, "global", &leaf.cert_pem, &leaf.key_pem, now)
            .unwrap();
        let other =
            CertificateAuthority::generate("other", Duration::from_secs(400 * DAY), now).unwrap();
        let e = other
            .check(Role::Client, "global", &leaf.cert_pem, &leaf.key_pem, now)
            .unwrap_err();
        assert!(matches!(e, PkiError::NotSignedByCa { .. }), "{e}");
        let e = pki
            .ca
            .check(Role::Server, "global", &leaf.cert_pem, &leaf.key_pem, now)
            .unwrap_err();
        assert!(matches!(e, PkiError::WrongName { .. }), "{e}");
        let e = pki
            .ca
            .check(
                Role::Client,
                "global",
                &leaf.cert_pem,
                &pki.client.key_pem,
                now,
            )
            .unwrap_err();
        assert!(matches!(e, PkiError::KeyMismatch { .. }), "{e}");
        let e = CertificateAuthority::from_pem(&leaf.cert_pem, &leaf.key_pem, now).unwrap_err();
        assert!(matches!(e, PkiError::NotACa { .. }), "{e}");
        let e = CertificateAuthority::from_pem(pki.ca.cert_pem(), &leaf.key_pem, now).unwrap_err();
        assert!(matches!(e, PkiError::KeyMismatch { .. }), "{e}");
        let later = now + Duration::from_secs(6 * 365 * DAY);
        assert!(matches!(
            CertificateAuthority::from_pem(pki.ca.cert_pem(), pki.ca.key_pem(), later).unwrap_err(),
            PkiError::Expired { .. }
        ));
    }

    #[test]
    fn a_leaf_never_outlives_its_ca() {
        let now = SystemTime::now();
        let ca = CertificateAuthority::generate("c1", Duration::from_secs(100 * DAY), now).unwrap();
        let leaf = ca
            .issue(
                Role::Server,
                "global",
                &[],
                Duration::from_secs(365 * DAY),
                now,
            )
            .unwrap();
        assert_eq!(
            inspect(&leaf.cert_pem, "leaf").unwrap().not_after,
            ca.not_after()
        );
        let near_end = now + Duration::from_secs(100 * DAY - 3600);
        let e = ca
            .issue(
                Role::Server,
                "global",
                &[],
                Duration::from_secs(DAY),
                near_end,
            )
            .unwrap_err();
        assert!(e.to_string().contains("rotate the CA"), "{e}");
    }

    #[test]
    fn bad_regions_and_sans_are_refused_by_name() {
        for region in ["", "Global", "us.west", "-x", "a_b"] {
            let e = validate_region(region).unwrap_err();
            assert!(e.to_string().contains(&format!("{region:?}")), "{e}");
        }
        validate_region("us-west-2").unwrap();
        for san in ["*.example.com", "a..b", "bad_name.example", ""] {
            assert!(ExtraSan::parse(san).is_err(), "{san}");
        }
        assert_eq!(
            ExtraSan::parse("::1").unwrap(),
            ExtraSan::Ip("::1".parse().unwrap())
        );
    }

    #[test]
    fn keys_stay_out_of_debug_output() {
        let pki = generate(&spec(), SystemTime::now()).unwrap();
        let printed = format!("{pki:?}");
        assert!(!printed.contains("PRIVATE KEY"), "{printed}");
        assert!(printed.contains("BEGIN CERTIFICATE"));
    }
}
