//! A cluster's vault for run-nomad's Key Vault tests: the Key Vault double filled the way
//! cluster-deploy fills it, a VM (fake root, IMDS double, stub systemctl) booted against it,
//! and checks on what was (not) written.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use support::cluster_secrets::{AgentRole, SecretItem};
use support::doubles::arm::TENANT;
use support::doubles::imds::{ImdsDouble, IDENTITY_PRINCIPAL_ID};
use support::doubles::keyvault::{KeyVaultDouble, KeyVaultRole, Scope};
use support::doubles::tls::{IssuedCert, TestCa};
use support::doubles::tokens::Claims;
use support::keyvault::{KeyVaultClient, Options, TokenSource, RESOURCE};
use support::secret::Secret;

use super::{instance, output, with_imds, FakeRoot, StubSystemctl, LAYOUT_ARGS};

/// The fixture's location, which is the agent's region by default.
pub const REGION: &str = "eastus2";
pub const VAULT: &str = "nomad-test-kv";
pub const OPERATOR: &str = "00000000-0000-0000-0000-0000000000e1";
/// base64 of 32 bytes.
pub const GOSSIP: &str = "pUqJrVyVRPIZzUAR4x7WgHo0GkzLyQ7Ih4j9PMvEqRg=";
pub const TOKEN: &str = "2f7c4c7e-6d3a-4c4b-9d5e-0a1b2c3d4e5f";

/// The cluster's secrets and the vault that holds them.
pub struct ClusterVault {
    pub kv: KeyVaultDouble,
    pub ca: TestCa,
    pub server: IssuedCert,
    pub client: IssuedCert,
}

impl ClusterVault {
    /// A vault holding every item (the CLI's and the CA key aside), uploaded by the operator.
    pub fn start() -> Self {
        let kv = KeyVaultDouble::start(VAULT);
        kv.assign(OPERATOR, Scope::Vault, KeyVaultRole::SecretsOfficer);
        let ca = TestCa::new("nomad-test-cluster CA");
        let server = ca.server_cert(&[&format!("server.{REGION}.nomad"), "localhost", "127.0.0.1"]);
        let client = ca.server_cert(&[&format!("client.{REGION}.nomad"), "localhost", "127.0.0.1"]);
        let vault = Self {
            kv,
            ca,
            server,
            client,
        };
        for (item, value) in [
            (SecretItem::GossipKey, GOSSIP.to_string()),
            (SecretItem::CaCertificate, vault.ca.cert_pem().to_string()),
            (SecretItem::ServerCertificate, vault.server.cert_pem.clone()),
            (SecretItem::ServerKey, vault.server.key_pem.clone()),
            (SecretItem::ClientCertificate, vault.client.cert_pem.clone()),
            (SecretItem::ClientKey, vault.client.key_pem.clone()),
            (SecretItem::BootstrapToken, TOKEN.to_string()),
        ] {
            vault.upload(item, &value);
        }
        vault
    }

    /// [`ClusterVault::start`], with the VM's identity granted `role`'s items.
    pub fn granted(role: AgentRole) -> Self {
        let vault = Self::start();
        vault.grant(role);
        vault
    }

    /// SetSecret as the operator.
    pub fn upload(&self, item: SecretItem, value: &str) {
        let token = Claims::new(RESOURCE, OPERATOR, TENANT).issue();
        let tokens: Arc<dyn TokenSource> = Arc::new(move || Ok(Secret::new(token.clone())));
        let client = KeyVaultClient::new(self.kv.url(), tokens, Options::default()).unwrap();
        client
            .set_secret(
                item.vault_name(),
                &Secret::new(value.to_string()),
                Some(item.content_type()),
            )
            .unwrap();
    }

    /// Key Vault Secrets User for the VM's identity on each item of `role`, at the secret's
    /// scope.
    pub fn grant(&self, role: AgentRole) {
        for item in SecretItem::for_role(role) {
            self.kv.assign(
                IDENTITY_PRINCIPAL_ID,
                Scope::Secret(item.vault_name().to_string()),
                KeyVaultRole::SecretsUser,
            );
        }
    }

    /// Every value that must never show up in output.
    pub fn private_values(&self) -> Vec<String> {
        vec![
            GOSSIP.to_string(),
            TOKEN.to_string(),
            self.server.key_pem.clone(),
            self.client.key_pem.clone(),
        ]
    }
}

/// One VM booting against a vault: its fake root, the IMDS double serving the instance
/// fixture (and the identity's tokens), and a stub systemctl.
pub struct Vm {
    pub root: FakeRoot,
    pub imds: ImdsDouble,
    pub systemctl: StubSystemctl,
}

impl Vm {
    pub fn new() -> Self {
        Self {
            root: FakeRoot::new(),
            imds: ImdsDouble::start(instance()),
            systemctl: StubSystemctl::new(),
        }
    }

    /// run-nomad on this VM with the vault, `args` after the layout flags.
    pub fn boot(&self, vault: &ClusterVault, args: &[&str]) -> (bool, String, String) {
        self.boot_at(vault.kv.url(), args)
    }

    /// [`Vm::boot`] with the vault at `vault_url`.
    pub fn boot_at(&self, vault_url: &str, args: &[&str]) -> (bool, String, String) {
        let mut cmd = with_imds(&self.root, &self.imds, &self.systemctl);
        cmd.args(["--key-vault", VAULT, "--key-vault-url", vault_url])
            .args(LAYOUT_ARGS)
            .args(args);
        output(&mut cmd)
    }

    /// The mode, uid and gid of a file of the root, from its production path.
    pub fn mode_and_owner(&self, production: &str) -> (u32, u32, u32) {
        let meta = fs::metadata(self.root.at(production)).unwrap();
        (meta.mode() & 0o7777, meta.uid(), meta.gid())
    }

    /// A run that failed left no file and ran no service command.
    pub fn nothing_written(&self) {
        let (root, systemctl) = (&self.root, &self.systemctl);
        for path in [
            "/opt/nomad/config/default.hcl",
            "/etc/systemd/system/nomad.service",
            "/opt/nomad/secrets",
            "/opt/nomad/tls/client.pem",
            "/opt/nomad/tls/client-key.pem",
        ] {
            assert!(!root.at(path).exists(), "{path} was written");
        }
        // The fake install's own placeholder files are untouched.
        for (path, text) in [
            ("/opt/nomad/tls/ca.pem", "ca"),
            ("/opt/nomad/tls/server.pem", "cert"),
            ("/opt/nomad/tls/server-key.pem", "key"),
        ] {
            assert_eq!(root.read(path), text, "{path}");
        }
        assert!(
            systemctl.take_calls().is_empty(),
            "a service command ran although nothing was written"
        );
    }
}

/// The lines cluster-deploy writes for a secure cluster (its custom_data module), less the
/// vault's name and URL, which [`Vm::boot`] adds.
pub const SERVER: &[&str] = &[
    "--server",
    "--num-servers",
    "3",
    "--scale-set-name",
    "nomad-servers",
    "--tls-from-key-vault",
    "--gossip-key-from-key-vault",
    "--acl",
];
pub const CLIENT: &[&str] = &[
    "--client",
    "--scale-set-name",
    "nomad-servers",
    "--tls-from-key-vault",
    "--acl",
];

/// The names of the secrets `principal` read successfully, sorted.
pub fn read_by(vault: &ClusterVault, principal: &str) -> Vec<String> {
    let mut names: Vec<String> = vault
        .kv
        .served()
        .into_iter()
        .filter(|s| s.caller.as_deref() == Some(principal) && s.status == 200)
        .map(|s| {
            s.request
                .path
                .trim_start_matches("/secrets/")
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    names.sort();
    names
}

pub fn assert_no_secret_in(vault: &ClusterVault, what: &str, text: &str) {
    for value in vault.private_values() {
        assert!(!text.contains(value.trim()), "a secret in {what}:\n{text}");
    }
    assert!(!text.contains("PRIVATE KEY"), "a key in {what}:\n{text}");
}
