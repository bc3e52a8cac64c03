//! Keys and signatures made by GnuPG (which `.ci/run` installs), so the validity rules are
//! checked against another implementation's output and not only against our own double's:
//! a subkey that has expired since still vouches for what it signed while valid, a primary key
//! that signs is accepted, and a revocation without a reason voids every signature.

use std::path::Path;
use std::process::Command;

use install_nomad::verify::{Invalidity, TrustedKeys, VerifyError};

struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        Gpg { home }
    }

    /// Runs gpg in the private home at a faked time ("20200101T000000") and returns stdout.
    fn run(&self, at: Option<&str>, args: &[&str]) -> Vec<u8> {
        let mut cmd = Command::new("gpg");
        cmd.env("GNUPGHOME", self.home.path()).args([
            "--batch",
            "--quiet",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ]);
        if let Some(at) = at {
            cmd.arg(format!("--faked-system-time={at}!"));
        }
        let out = cmd
            .args(args)
            .output()
            .expect("gpg must be installed (apt-get install gnupg; .ci/run does)");
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn fingerprint(&self) -> String {
        let listing = String::from_utf8(self.run(None, &["--list-keys", "--with-colons"])).unwrap();
        listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:::::::::"))
            .map(|rest| rest.trim_end_matches(':').to_string())
            .unwrap()
    }

    fn export(&self, fpr: &str, dir: &Path) -> TrustedKeys {
        let armored = self.run(None, &["--armor", "--export", fpr]);
        let path = dir.join("key.asc");
        std::fs::write(&path, armored).unwrap();
        TrustedKeys::from_file(&path).unwrap()
    }

    fn sign(&self, at: &str, data_path: &Path) -> Vec<u8> {
        let sig = data_path.with_extension("sig");
        let _ = std::fs::remove_file(&sig);
        self.run(
            Some(at),
            &[
                "--detach-sign",
                "-o",
                sig.to_str().unwrap(),
                data_path.to_str().unwrap(),
            ],
        );
        std::fs::read(sig).unwrap()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        // Stop the agent gpg started for this home (and only that one).
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.home.path())
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

#[test]
fn an_expired_subkey_vouches_for_what_it_signed_and_a_revocation_voids_it() {
    let gpg = Gpg::new();
    // A certify-only primary (valid 2 years) with a signing subkey valid for 1 year, both made
    // in January 2020; long expired today.
    gpg.run(
        Some("20200101T000000"),
        &[
            "--quick-gen-key",
            "Old Mirror <old@example.invalid>",
            "ed25519",
            "cert",
            "2y",
        ],
    );
    let fpr = gpg.fingerprint();
    gpg.run(
        Some("20200101T000100"),
        &["--quick-add-key", &fpr, "ed25519", "sign", "1y"],
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("SHA256SUMS");
    std::fs::write(
        &data,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  x.zip\n",
    )
    .unwrap();
    let signature = gpg.sign("20200601T000000", &data);
    let bytes = std::fs::read(&data).unwrap();

    let keys = gpg.export(&fpr, dir.path());
    let verified = keys.verify(&bytes, &signature).unwrap();
    assert_eq!(verified.primary, fpr);
    assert_ne!(verified.signer, fpr, "the subkey signed");

    // The revocation certificate gpg made at key generation has no reason: a hard revocation.
    let revocation = gpg.home.path().join(format!("openpgp-revocs.d/{fpr}.rev"));
    let text = std::fs::read_to_string(&revocation).unwrap();
    // gpg protects the certificate from accidental import with a leading colon.
    let importable = text.replace(":-----BEGIN", "-----BEGIN");
    let cert = dir.path().join("revocation.asc");
    std::fs::write(&cert, importable).unwrap();
    gpg.run(None, &["--import", cert.to_str().unwrap()]);
    let revoked = gpg.export(&fpr, dir.path());
    match revoked.verify(&bytes, &signature).unwrap_err() {
        VerifyError::KeyNotValid { reason, .. } => {
            assert_eq!(
                reason,
                Invalidity::Primary(Box::new(Invalidity::Compromised))
            )
        }
        other => panic!("expected a revoked key, got {other}"),
    }
}

#[test]
fn a_signing_primary_key_is_accepted() {
    let gpg = Gpg::new();
    gpg.run(
        Some("20200101T000000"),
        &[
            "--quick-gen-key",
            "Mirror <m@example.invalid>",
            "ed25519",
            "sign",
            "1y",
        ],
    );
    let fpr = gpg.fingerprint();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("SHA256SUMS");
    std::fs::write(&data, "sums\n").unwrap();
    let signature = gpg.sign("20200301T000000", &data);
    let keys = gpg.export(&fpr, dir.path());
    let verified = keys
        .verify(&std::fs::read(&data).unwrap(), &signature)
        .unwrap();
    assert_eq!(verified.signer, fpr);
    // A different file under the same signature is refused.
    assert!(matches!(
        keys.verify(b"other\n", &signature),
        Err(VerifyError::BadSignature { .. })
    ));
}
