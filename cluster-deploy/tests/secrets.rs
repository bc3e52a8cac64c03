//! The generated certificates, checked by independent implementations: OpenSSL (`openssl
//! verify`, `openssl x509 -text`, `-checkend`) for the chain, names, key usages, extended key
//! usages and lifetimes, and rustls for TLS handshakes the way Nomad's mTLS uses them (the right
//! name passes, another role's name fails, a certificate of another role or CA fails).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cluster_deploy::secrets::material::ClusterSecrets;
use cluster_deploy::secrets::pki::{
    self, CertificateAuthority, ClusterPki, ExtraSan, Lifetimes, PkiSpec, Role,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use support::cluster_secrets::SecretItem;

const DAY: u64 = 86_400;

fn spec() -> PkiSpec {
    PkiSpec {
        cluster: "tls-test".into(),
        region: "global".into(),
        server_sans: vec![
            ExtraSan::parse("20.0.0.5").unwrap(),
            ExtraSan::parse("nomad.example.com").unwrap(),
        ],
        lifetimes: Lifetimes::default(),
    }
}

/// The files as an operator (or `nomad tls cert create`) would have them.
fn write_files(dir: &Path, pki: &ClusterPki) {
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("nomad-agent-ca.pem", pki.ca.cert_pem());
    write("nomad-agent-ca-key.pem", pki.ca.key_pem().expose());
    for (prefix, c) in [
        ("global-server-nomad", &pki.server),
        ("global-client-nomad", &pki.client),
        ("global-cli-nomad", &pki.cli),
    ] {
        write(&format!("{prefix}.pem"), &c.cert_pem);
        write(&format!("{prefix}-key.pem"), c.key_pem.expose());
    }
}

/// Runs openssl in `dir`; (success, stdout + stderr).
fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("running openssl (installed by scripts/install-test-deps.sh): {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn verify(dir: &Path, extra: &[&str], cert: &str) -> (bool, String) {
    let mut args = vec!["verify", "-x509_strict", "-CAfile", "nomad-agent-ca.pem"];
    args.extend_from_slice(extra);
    args.push(cert);
    openssl(dir, &args)
}

fn generated() -> (tempfile::TempDir, ClusterPki) {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(&spec(), SystemTime::now()).unwrap();
    write_files(dir.path(), &pki);
    (dir, pki)
}

#[test]
fn openssl_verifies_the_chain_and_the_names() {
    let (dir, _) = generated();
    let d = dir.path();
    for cert in [
        "global-server-nomad.pem",
        "global-client-nomad.pem",
        "global-cli-nomad.pem",
    ] {
        let (ok, out) = verify(d, &[], cert);
        assert!(ok, "{cert}: {out}");
        assert!(out.contains(&format!("{cert}: OK")), "{out}");
    }
    for (cert, name) in [
        ("global-server-nomad.pem", "server.global.nomad"),
        ("global-server-nomad.pem", "localhost"),
        ("global-server-nomad.pem", "nomad.example.com"),
        ("global-client-nomad.pem", "client.global.nomad"),
        ("global-cli-nomad.pem", "cli.global.nomad"),
    ] {
        let (ok, out) = verify(d, &["-verify_hostname", name], cert);
        assert!(ok, "{cert} for {name}: {out}");
    }
    for ip in ["127.0.0.1", "20.0.0.5"] {
        let (ok, out) = verify(d, &["-verify_ip", ip], "global-server-nomad.pem");
        assert!(ok, "{ip}: {out}");
    }
    // The server certificate is refused for a client's name, and the other way round.
    let (ok, out) = verify(
        d,
        &["-verify_hostname", "client.global.nomad"],
        "global-server-nomad.pem",
    );
    assert!(!ok, "{out}");
    assert!(out.contains("hostname mismatch"), "{out}");
    let (ok, _) = verify(
        d,
        &["-verify_hostname", "server.global.nomad"],
        "global-client-nomad.pem",
    );
    assert!(!ok);
    let (ok, _) = verify(
        d,
        &["-verify_hostname", "server.us-west.nomad"],
        "global-server-nomad.pem",
    );
    assert!(!ok, "another region's name");
    let (ok, _) = verify(d, &["-verify_ip", "127.0.0.1"], "global-cli-nomad.pem");
    assert!(!ok, "the CLI certificate has no IP SAN");
    // Another cluster's CA does not vouch for these.
    let other =
        CertificateAuthority::generate("other", Duration::from_secs(400 * DAY), SystemTime::now())
            .unwrap();
    std::fs::write(d.join("other-ca.pem"), other.cert_pem()).unwrap();
    let (ok, out) = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "other-ca.pem",
            "global-server-nomad.pem",
        ],
    );
    assert!(!ok, "{out}");
}

#[test]
fn openssl_sees_the_purposes_each_certificate_is_for() {
    let (dir, _) = generated();
    let d = dir.path();
    for (cert, server_ok, client_ok) in [
        ("global-server-nomad.pem", true, true),
        ("global-client-nomad.pem", true, true),
        ("global-cli-nomad.pem", false, true),
    ] {
        let (ok, out) = verify(d, &["-purpose", "sslserver"], cert);
        assert_eq!(ok, server_ok, "{cert} as a TLS server: {out}");
        let (ok, out) = verify(d, &["-purpose", "sslclient"], cert);
        assert_eq!(ok, client_ok, "{cert} as a TLS client: {out}");
    }
}

#[test]
fn openssl_reads_the_extensions_back() {
    let (dir, _) = generated();
    let d = dir.path();
    let text = |cert: &str| {
        let (ok, out) = openssl(d, &["x509", "-in", cert, "-noout", "-text"]);
        assert!(ok, "{out}");
        // One line per extension value, for simple matching.
        out.lines().map(str::trim).collect::<Vec<_>>().join("\n")
    };
    let ca = text("nomad-agent-ca.pem");
    for want in [
        "X509v3 Basic Constraints: critical\nCA:TRUE, pathlen:0",
        "X509v3 Key Usage: critical\nCertificate Sign, CRL Sign",
        "Subject: CN = Nomad agent CA tls-test ",
        ", O = nomad-azure-tools",
        "ASN1 OID: prime256v1",
        "Signature Algorithm: ecdsa-with-SHA256",
        "X509v3 Subject Key Identifier",
    ] {
        assert!(ca.contains(want), "CA lacks {want:?}:\n{ca}");
    }
    assert!(!ca.contains("Extended Key Usage"), "{ca}");
    let server = text("global-server-nomad.pem");
    for want in [
        "Subject: CN = server.global.nomad",
        "X509v3 Basic Constraints: critical\nCA:FALSE",
        "X509v3 Key Usage: critical\nDigital Signature",
        "X509v3 Extended Key Usage:\nTLS Web Server Authentication, TLS Web Client Authentication",
        "X509v3 Subject Alternative Name:\nDNS:server.global.nomad, DNS:localhost, IP Address:127.0.0.1, IP Address:20.0.0.5, DNS:nomad.example.com",
        "X509v3 Authority Key Identifier",
        "Issuer: CN = Nomad agent CA tls-test ",
    ] {
        assert!(server.contains(want), "server lacks {want:?}:\n{server}");
    }
    assert!(!server.contains("Key Encipherment"), "{server}");
    let client = text("global-client-nomad.pem");
    assert!(client.contains(
        "X509v3 Subject Alternative Name:\nDNS:client.global.nomad, DNS:localhost, IP Address:127.0.0.1"
    ), "{client}");
    let cli = text("global-cli-nomad.pem");
    assert!(
        cli.contains("X509v3 Extended Key Usage:\nTLS Web Client Authentication\n"),
        "{cli}"
    );
    assert!(
        cli.contains("X509v3 Subject Alternative Name:\nDNS:cli.global.nomad, DNS:localhost\n"),
        "{cli}"
    );
    // Each key belongs to its certificate.
    for prefix in [
        "nomad-agent-ca",
        "global-server-nomad",
        "global-client-nomad",
        "global-cli-nomad",
    ] {
        let key = format!("{prefix}-key.pem");
        let (_, from_cert) = openssl(
            d,
            &["x509", "-in", &format!("{prefix}.pem"), "-noout", "-pubkey"],
        );
        let (ok, from_key) = openssl(d, &["pkey", "-in", &key, "-pubout"]);
        assert!(ok, "{from_key}");
        assert_eq!(from_cert, from_key, "{prefix}");
    }
}

#[test]
fn openssl_sees_the_lifetimes() {
    let (dir, _) = generated();
    let d = dir.path();
    // `-checkend N` succeeds when the certificate is still valid N seconds from now.
    let valid_in = |cert: &str, days: u64| {
        openssl(
            d,
            &[
                "x509",
                "-in",
                cert,
                "-noout",
                "-checkend",
                &(days * DAY).to_string(),
            ],
        )
        .0
    };
    assert!(valid_in("nomad-agent-ca.pem", 5 * 365 - 1));
    assert!(!valid_in("nomad-agent-ca.pem", 5 * 365 + 1));
    for cert in [
        "global-server-nomad.pem",
        "global-client-nomad.pem",
        "global-cli-nomad.pem",
    ] {
        assert!(valid_in(cert, 364), "{cert}");
        assert!(!valid_in(cert, 366), "{cert}");
    }
    // Valid already an hour ago (clock skew on a freshly booted VM).
    let (ok, out) = openssl(
        d,
        &[
            "verify",
            "-CAfile",
            "nomad-agent-ca.pem",
            "-attime",
            &(SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                - 3000)
                .to_string(),
            "global-server-nomad.pem",
        ],
    );
    assert!(ok, "{out}");
}

#[test]
fn openssl_reads_the_gossip_key_as_32_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = ClusterSecrets::generate(&spec(), SystemTime::now()).unwrap();
    let path = dir.path().join("gossip.b64");
    std::fs::write(
        &path,
        format!("{}\n", secrets.value(SecretItem::GossipKey).expose()),
    )
    .unwrap();
    let output = Command::new("openssl")
        .args(["base64", "-d", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(output.stdout.len(), 32);
}

// ------------------------------------------------------------------ rustls handshakes

fn der_of(pem: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    block.contents
}

fn cert(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from(der_of(pem))
}

fn key(pem: &support::secret::Secret) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der_of(pem.expose())))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &CertificateAuthority) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(cert(ca.cert_pem())).unwrap();
    Arc::new(roots)
}

/// A Nomad agent's listener: its certificate, and client certificates required
/// (`verify_https_client`), chained to `ca`.
fn server_config(ca: &CertificateAuthority, me: &pki::IssuedCertificate) -> Arc<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert(&me.cert_pem)], key(&me.key_pem))
            .unwrap(),
    )
}

/// A caller that trusts `ca` and presents `me`.
fn client_config(
    ca: &CertificateAuthority,
    me: Option<&pki::IssuedCertificate>,
) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca));
    Arc::new(match me {
        Some(me) => builder
            .with_client_auth_cert(vec![cert(&me.cert_pem)], key(&me.key_pem))
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

/// Runs a handshake in memory; the first error either side raises.
fn handshake(
    client: Arc<ClientConfig>,
    server: Arc<ServerConfig>,
    name: &str,
) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(name.to_string()).unwrap();
    let mut c = ClientConnection::new(client, name)?;
    let mut s = ServerConnection::new(server)?;
    for _ in 0..20 {
        let mut to_server = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut to_server).unwrap();
        }
        if !to_server.is_empty() {
            s.read_tls(&mut &to_server[..]).unwrap();
            s.process_new_packets()?;
        }
        let mut to_client = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut to_client).unwrap();
        }
        if !to_client.is_empty() {
            c.read_tls(&mut &to_client[..]).unwrap();
            c.process_new_packets()?;
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            // Round-trip application data to be sure both ends are in business.
            use std::io::{Read, Write};
            c.writer().write_all(b"GET /v1/agent/self").unwrap();
            let mut bytes = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut bytes).unwrap();
            }
            s.read_tls(&mut &bytes[..]).unwrap();
            s.process_new_packets()?;
            let mut got = [0u8; 18];
            s.reader().read_exact(&mut got).unwrap();
            assert_eq!(&got, b"GET /v1/agent/self");
            return Ok(());
        }
    }
    panic!("the handshake did not finish");
}

#[test]
fn rustls_handshakes_succeed_for_the_right_names_and_fail_for_the_wrong_ones() {
    let pki = pki::generate(&spec(), SystemTime::now()).unwrap();
    let server = server_config(&pki.ca, &pki.server);
    // The operator's CLI and a client agent reach the server by its role name, by localhost,
    // by 127.0.0.1 and by the load balancer's names.
    for name in [
        "server.global.nomad",
        "localhost",
        "127.0.0.1",
        "20.0.0.5",
        "nomad.example.com",
    ] {
        handshake(client_config(&pki.ca, Some(&pki.cli)), server.clone(), name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    handshake(
        client_config(&pki.ca, Some(&pki.client)),
        server.clone(),
        "server.global.nomad",
    )
    .unwrap();
    // A server reaching another server (RPC) with its own certificate.
    handshake(
        client_config(&pki.ca, Some(&pki.server)),
        server.clone(),
        "server.global.nomad",
    )
    .unwrap();

    // verify_server_hostname: a client expecting a server must not accept a client's
    // certificate, and a server certificate is not a client's name.
    let e = handshake(
        client_config(&pki.ca, Some(&pki.cli)),
        server.clone(),
        "client.global.nomad",
    )
    .unwrap_err();
    assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");
    let posing_client = server_config(&pki.ca, &pki.client);
    let e = handshake(
        client_config(&pki.ca, Some(&pki.cli)),
        posing_client,
        "server.global.nomad",
    )
    .unwrap_err();
    assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");
    let e = handshake(
        client_config(&pki.ca, Some(&pki.cli)),
        server.clone(),
        "server.us-west.nomad",
    )
    .unwrap_err();
    assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");

    // The CLI certificate cannot serve (no serverAuth), even under its own name.
    let cli_as_server = server_config(&pki.ca, &pki.cli);
    let e = handshake(
        client_config(&pki.ca, Some(&pki.client)),
        cli_as_server,
        "cli.global.nomad",
    )
    .unwrap_err();
    assert!(format!("{e:?}").contains("InvalidPurpose"), "{e:?}");

    // verify_https_client: no certificate, or one from another CA, is refused.
    let e = handshake(
        client_config(&pki.ca, None),
        server.clone(),
        "server.global.nomad",
    )
    .unwrap_err();
    assert!(
        format!("{e:?}").contains("NoCertificatesPresented"),
        "{e:?}"
    );
    let other = pki::generate(&spec(), SystemTime::now()).unwrap();
    let e = handshake(
        client_config(&pki.ca, Some(&other.cli)),
        server.clone(),
        "server.global.nomad",
    )
    .unwrap_err();
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
    // And a caller trusting another CA refuses this server.
    let e = handshake(
        client_config(&other.ca, Some(&other.cli)),
        server,
        "server.global.nomad",
    )
    .unwrap_err();
    assert!(format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
}

#[test]
fn leaves_issued_from_a_ca_read_back_work_with_the_old_ones() {
    let now = SystemTime::now();
    let pki = pki::generate(&spec(), now).unwrap();
    let ca = CertificateAuthority::from_pem(pki.ca.cert_pem(), pki.ca.key_pem(), now).unwrap();
    let rotated = ca
        .issue(Role::Server, "global", &[], Lifetimes::default().agent, now)
        .unwrap();
    handshake(
        client_config(&pki.ca, Some(&pki.client)),
        server_config(&ca, &rotated),
        "server.global.nomad",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nomad-agent-ca.pem"), pki.ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("rotated.pem"), &rotated.cert_pem).unwrap();
    let (ok, out) = verify(
        dir.path(),
        &["-verify_hostname", "server.global.nomad"],
        "rotated.pem",
    );
    assert!(ok, "{out}");
}
