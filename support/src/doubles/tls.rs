//! Test PKIs for the HTTPS doubles: a CA made in the test, server and client certificates it
//! signs (rcgen, ring), and the rustls server configuration a double listens with.
//!
//! ```no_run
//! use support::doubles::tls::TestCa;
//!
//! let ca = TestCa::new("nomad-agent-ca");
//! // Nomad's own convention (`nomad tls cert create -server`): `server.<region>.nomad`,
//! // `localhost` and 127.0.0.1 in the server certificate's names.
//! let server = ca.server_cert(&["server.global.nomad", "localhost", "127.0.0.1"]);
//! let cli = ca.client_cert("global-cli-nomad");
//! let config = server.server_config(Some(&ca)); // client certificates required (mutual TLS)
//! ```
//!
//! The certificates are valid from 1975 to 4096 (rcgen's defaults), so a test never depends on
//! today's date.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority made for one test.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
    der: CertificateDer<'static>,
}

/// A certificate signed by a [`TestCa`], with its private key.
#[derive(Clone)]
pub struct IssuedCert {
    /// PEM of the certificate.
    pub cert_pem: String,
    /// PEM (PKCS #8) of the private key.
    pub key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new self-signed CA whose common name is `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a self-signed CA");
        Self {
            pem: cert.pem(),
            der: cert.der().clone(),
            params,
            key,
        }
    }

    /// PEM of the CA certificate (what `NOMAD_CACERT` points at).
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for these names (DNS names or IP addresses). Like Nomad's own
    /// agent certificates it is good for both server and client authentication.
    pub fn server_cert(&self, names: &[&str]) -> IssuedCert {
        self.issue(
            names,
            names.first().copied().unwrap_or("server"),
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A client certificate (client authentication only), e.g. for an operator's CLI.
    pub fn client_cert(&self, common_name: &str) -> IssuedCert {
        self.issue(&[], common_name, &[ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn issue(
        &self,
        names: &[&str],
        common_name: &str,
        usages: &[ExtendedKeyUsagePurpose],
    ) -> IssuedCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate names");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = usages.to_vec();
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("a key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signing");
        IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// Writes the CA certificate to `dir/<file>` and returns the path.
    pub fn write_cert(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, &self.pem).expect("writing the CA certificate");
        path
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("the CA as a root");
        roots
    }
}

impl IssuedCert {
    /// Writes `<stem>.pem` and `<stem>-key.pem` into `dir` (the key 0600) and returns both
    /// paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        std::fs::write(&cert, &self.cert_pem).expect("writing a certificate");
        std::fs::write(&key, &self.key_pem).expect("writing a key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .expect("key permissions");
        (cert, key)
    }

    /// A rustls server configuration presenting this certificate. With `client_ca`, every
    /// client must present a certificate that CA signed (mutual TLS, as Nomad's
    /// `verify_https_client = true` asks); without, any client may connect.
    pub fn server_config(&self, client_ca: Option<&TestCa>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = match client_ca {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(ca.roots()),
                    provider,
                )
                .build()
                .expect("a client certificate verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        Arc::new(
            builder
                .with_single_cert(vec![self.der.clone()], key)
                .expect("the server certificate and key"),
        )
    }
}

/// A server whose certificate is not there yet: the TLS configuration refuses every handshake
/// until [`PendingCertificate::present`] hands it a certificate and key (PEM) that something
/// else made, as a Nomad server's API answers nothing before the agent has started with the
/// files it was given. Clients see a failed handshake, which they retry like a refused
/// connection.
#[derive(Debug, Default)]
pub struct PendingCertificate {
    current: std::sync::Mutex<Option<Arc<rustls::sign::CertifiedKey>>>,
}

impl PendingCertificate {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// From now on, present `cert_pem` (the leaf first, as a chain) with `key_pem` (PKCS #8,
    /// SEC1 or PKCS #1).
    pub fn present(&self, cert_pem: &str, key_pem: &str) {
        use rustls::pki_types::pem::PemObject;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("PEM certificates");
        assert!(!chain.is_empty(), "no certificate in the PEM");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("a PEM private key");
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)
            .expect("a key rustls can sign with");
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(rustls::sign::CertifiedKey::new(chain, signing)));
    }

    /// A rustls server configuration presenting whatever [`Self::present`] gave last (no
    /// client certificate asked, as Nomad's `verify_https_client = false`).
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_no_client_auth()
                .with_cert_resolver(self.clone()),
        )
    }
}

impl rustls::server::ResolvesServerCert for PendingCertificate {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
