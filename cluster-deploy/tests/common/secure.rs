//! The secure stack a deploying test needs beside the ARM double: the cluster's Key Vault data
//! plane (the Key Vault double, linked to the ARM double's vaults and role assignments), a
//! Nomad API for apply's ACL bootstrap (the simulated cluster over TLS, its server
//! certificate issued by the cluster's own CA), and a private configuration home for `env`.
//!
//! Deploying tests give their cluster an own CA ([`with_own_ca`]): then the Nomad double can
//! present a certificate from the CA apply uses, before apply runs. The generated-CA path has
//! its own tests (`tests/secure.rs`).

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cluster_deploy::model::{Cluster, TlsSource};
use cluster_deploy::secrets::pki::{CertificateAuthority, IssuedCertificate, Lifetimes, Role};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use support::doubles::arm::{ArmDouble, CALLER_OBJECT_ID};
use support::doubles::keyvault::{KeyVaultDouble, Origin};
use support::doubles::nomad_api::NomadApiDouble;
use support::doubles::nomad_sim::{SimConfig, Simulation};
use support::secret::Secret;

/// Writes a CA into `dir` (`ca.pem`, `ca-key.pem`) and returns `text` with a `[nomad.tls]`
/// table naming them, unless `text` has its own.
pub fn with_own_ca(dir: &Path, text: &str) -> String {
    if text.lines().any(|l| l.trim() == "[nomad.tls]") {
        return text.to_string();
    }
    let ca = CertificateAuthority::generate("test-own", Lifetimes::default().ca, SystemTime::now())
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(dir.join("ca-key.pem"), ca.key_pem().expose()).unwrap();
    format!(
        "{text}\n[nomad.tls]\nca_cert_file = \"{}\"\nca_key_file = \"{}\"\n",
        dir.join("ca.pem").display(),
        dir.join("ca-key.pem").display()
    )
}

fn der(pem: &str) -> Vec<u8> {
    x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .unwrap()
        .1
        .contents
}

/// A rustls server configuration presenting `cert` (no client certificate asked: Nomad's
/// default `verify_https_client = false`).
pub fn server_config(cert: &IssuedCertificate) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(der(&cert.cert_pem))],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der(cert.key_pem.expose()))),
            )
            .unwrap(),
    )
}

/// A running simulated cluster with a leader, ACLs on, served over TLS with `server` (or plain
/// http without).
pub fn nomad_cluster(server: Option<&IssuedCertificate>) -> NomadApiDouble {
    let sim = Simulation::new(SimConfig {
        advance_per_request: Duration::from_millis(100),
        ..SimConfig::default()
    });
    sim.start_running(&["s0", "s1", "s2"], &["c0"]);
    let nomad = match server {
        Some(cert) => NomadApiDouble::serve_tls(&sim, server_config(cert)),
        None => NomadApiDouble::serve(&sim),
    };
    nomad.enable_acls();
    nomad
}

/// The doubles and settings beside the ARM double.
pub struct Stack {
    pub kv: Option<KeyVaultDouble>,
    pub nomad: Option<NomadApiDouble>,
    pub config_home: tempfile::TempDir,
    pub vault: Option<String>,
}

/// An address the vault's firewall admits (the operator's), for the caller's requests.
pub fn operator_address(cluster: &Cluster) -> Ipv4Addr {
    let first = cluster
        .security
        .key_vault
        .as_ref()
        .and_then(|kv| kv.allowed_cidrs.first().cloned())
        .unwrap_or_else(|| "203.0.113.0/24".into());
    let net = cluster_deploy::config::parse_cidr(&first).unwrap();
    let base = u32::from(net.network());
    Ipv4Addr::from(if net.prefix_len() >= 31 {
        base
    } else {
        base + 10
    })
}

impl Stack {
    /// For the cluster file at `config` (final): the vault's data plane linked to `arm`, and
    /// a Nomad for the bootstrap when the cluster's CA is known beforehand (an own CA) or
    /// there is no TLS.
    pub fn start(arm: &ArmDouble, config: &Path) -> Self {
        let cluster = super::cluster_from(config);
        let security = &cluster.security;
        let vault = security.key_vault.as_ref().map(|kv| kv.name.clone());
        let kv = vault.as_ref().map(|name| {
            let kv = KeyVaultDouble::start_linked(name, arm.key_vault_directory());
            // New role assignments refuse a few requests first, as they do for minutes.
            kv.set_propagation_requests(2);
            kv.set_origin(
                CALLER_OBJECT_ID,
                Origin {
                    address: operator_address(&cluster).into(),
                    subnet: None,
                },
            );
            kv
        });
        let nomad = match (&security.tls, security.acl_bootstrap) {
            (_, false) => None,
            (
                TlsSource::OwnCa {
                    cert_file,
                    key_file,
                },
                true,
            ) => {
                let ca = CertificateAuthority::from_pem(
                    &std::fs::read_to_string(cert_file).unwrap(),
                    &Secret::new(std::fs::read_to_string(key_file).unwrap()),
                    SystemTime::now(),
                )
                .unwrap();
                let server = ca
                    .issue(
                        Role::Server,
                        &security.region,
                        &[],
                        Lifetimes::default().agent,
                        SystemTime::now(),
                    )
                    .unwrap();
                Some(nomad_cluster(Some(&server)))
            }
            (TlsSource::Off, true) => Some(nomad_cluster(None)),
            (TlsSource::Generated, true) => None,
        };
        Self {
            kv,
            nomad,
            config_home: tempfile::tempdir().unwrap(),
            vault,
        }
    }

    /// Flags for a command line: the vault's URL; for apply, a loopback Nomad address
    /// (unless given): the Nomad double, or, without one, an address where nothing listens with
    /// no wait (the load balancer's address the ARM double hands out is not loopback, and a
    /// test never leaves 127.0.0.1).
    pub fn args(&self, command: &[&str]) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(kv) = &self.kv {
            args.extend(["--key-vault-url".to_string(), kv.url().to_string()]);
        }
        let apply = command.first() == Some(&"apply");
        let given = command.contains(&"--nomad-address");
        if apply && !given {
            match &self.nomad {
                Some(nomad) => args.extend(["--nomad-address".into(), nomad.url().to_string()]),
                None => args.extend([
                    "--nomad-address".into(),
                    "https://127.0.0.1:9".into(),
                    "--bootstrap-timeout-secs".into(),
                    "0".into(),
                ]),
            }
        }
        args
    }

    /// Every secret value the vault holds (the latest versions), to search outputs for.
    pub fn secret_values(&self) -> Vec<String> {
        let Some(kv) = &self.kv else {
            return Vec::new();
        };
        support::cluster_secrets::SecretItem::ALL
            .into_iter()
            .filter_map(|i| kv.secret_value(i.vault_name()))
            .collect()
    }

    /// Fails when `text` holds a PEM block or any of the vault's values.
    pub fn assert_no_secret(&self, what: &str, text: &str) {
        assert!(
            !text.contains("-----BEGIN"),
            "a PEM block in {what}:\n{text}"
        );
        for value in self.secret_values() {
            let probe = value.lines().find(|l| l.len() > 20).unwrap_or(&value);
            assert!(!text.contains(probe), "a vault secret in {what}:\n{text}");
        }
    }
}
