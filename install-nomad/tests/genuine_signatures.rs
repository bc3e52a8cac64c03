//! HashiCorp's genuine signed SHA256SUMS files (`../shared/fixtures/hashicorp/`) through the
//! verification code the installer runs: the embedded key, validity at signature time, and the
//! sums rules.

use std::path::PathBuf;

use install_nomad::verify::{
    parse_sums, Invalidity, TrustedKeys, VerifyError, HASHICORP_FINGERPRINT,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/hashicorp")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn verify(sums: &str, sig: &str) -> Result<install_nomad::verify::Verified, VerifyError> {
    TrustedKeys::hashicorp()
        .unwrap()
        .verify(&fixture(sums), &fixture(sig))
}

#[test]
fn current_releases_verify_against_the_embedded_key() {
    for (version, sig) in [
        ("1.14.9", "terraform_1.14.9_SHA256SUMS.72D7468F.sig"),
        ("1.12.2", "terraform_1.12.2_SHA256SUMS.72D7468F.sig"),
        ("1.6.6", "terraform_1.6.6_SHA256SUMS.sig"),
    ] {
        let sums = format!("terraform_{version}_SHA256SUMS");
        let verified = verify(&sums, sig).unwrap_or_else(|e| panic!("{version}: {e}"));
        assert_eq!(verified.primary, HASHICORP_FINGERPRINT);
        // Subkey C820C6D5CD27AB87 signs current releases.
        assert!(
            verified.signer.ends_with("C820C6D5CD27AB87"),
            "{verified:?}"
        );
        // And the verified file lists the archive exactly once.
        let parsed = parse_sums(&fixture(&sums)).unwrap();
        let hash = parsed
            .sha256_of(&format!("terraform_{version}_linux_amd64.zip"))
            .unwrap();
        assert_eq!(hash.len(), 64);
    }
}

#[test]
fn a_subkey_that_has_expired_since_still_vouches_for_what_it_signed_then() {
    // 0.15.1 was signed 2021-04-26 by subkey B0B441097685B676, which expired 2022-04-20.
    let verified = verify(
        "terraform_0.15.1_SHA256SUMS",
        "terraform_0.15.1_SHA256SUMS.sig",
    )
    .unwrap();
    assert!(
        verified.signer.ends_with("B0B441097685B676"),
        "{verified:?}"
    );
    assert_eq!(verified.created.0, 1_619_464_667);
}

#[test]
fn the_retired_2021_key_is_not_trusted() {
    // 0.12.26 is signed by the old key 51852D87348FFC4C (retired after the 2021 incident).
    let err = verify(
        "terraform_0.12.26_SHA256SUMS",
        "terraform_0.12.26_SHA256SUMS.sig",
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::UnknownSigner { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("51852D87348FFC4C"), "{text}");
    assert!(text.contains(HASHICORP_FINGERPRINT), "{text}");
}

#[test]
fn a_signature_over_another_file_is_refused() {
    let err = verify(
        "terraform_1.12.2_SHA256SUMS",
        "terraform_1.14.9_SHA256SUMS.72D7468F.sig",
    )
    .unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
    assert!(err.to_string().contains("C820C6D5CD27AB87"), "{err}");
}

#[test]
fn a_one_byte_change_is_refused() {
    let mut sums = fixture("terraform_1.14.9_SHA256SUMS");
    // Change one hex digit of the first hash: still a well-formed sums file.
    sums[0] = if sums[0] == b'0' { b'1' } else { b'0' };
    let err = TrustedKeys::hashicorp()
        .unwrap()
        .verify(&sums, &fixture("terraform_1.14.9_SHA256SUMS.72D7468F.sig"))
        .unwrap_err();
    assert!(matches!(err, VerifyError::BadSignature { .. }), "{err}");
    // And a one-byte change of the signature itself.
    let mut sig = fixture("terraform_1.14.9_SHA256SUMS.72D7468F.sig");
    let last = sig.len() - 1;
    sig[last] ^= 0x01;
    assert!(TrustedKeys::hashicorp()
        .unwrap()
        .verify(&fixture("terraform_1.14.9_SHA256SUMS"), &sig)
        .is_err());
}

#[test]
fn the_key_split_in_two_blocks_as_published_still_verifies_both_generations() {
    // HashiCorp publishes the refreshed key as two armored blocks: the 2021 certificate and the
    // 2026 refresh. Rebuild that shape from the merged copy and load it as --public-key would.
    use pgp::composed::{ArmorOptions, Deserializable, SignedPublicKey};
    let merged = fixture("hashicorp-release-key.asc");
    let (full, _) = SignedPublicKey::from_armor_single(&merged[..]).unwrap();
    let refresh_time = 1_771_000_000; // 2026-02-13: between the two generations
    let before = |s: &pgp::packet::Signature| s.created().unwrap().as_secs() < refresh_time;
    let mut old = full.clone();
    let mut new = full.clone();
    for user in &mut old.details.users {
        user.signatures.retain(before);
    }
    for user in &mut new.details.users {
        user.signatures.retain(|s| !before(s));
    }
    for sub in &mut old.public_subkeys {
        sub.signatures.retain(before);
    }
    for sub in &mut new.public_subkeys {
        sub.signatures.retain(|s| !before(s));
    }
    new.public_subkeys.retain(|s| !s.signatures.is_empty());
    let text = format!(
        "{}\n{}",
        old.to_armored_string(ArmorOptions::default()).unwrap(),
        new.to_armored_string(ArmorOptions::default()).unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hashicorp-two-blocks.asc");
    std::fs::write(&path, text).unwrap();
    let keys = TrustedKeys::from_file(&path).unwrap();
    assert_eq!(keys.fingerprints(), [HASHICORP_FINGERPRINT]);
    for (sums, sig) in [
        (
            "terraform_1.14.9_SHA256SUMS",
            "terraform_1.14.9_SHA256SUMS.72D7468F.sig",
        ),
        (
            "terraform_0.15.1_SHA256SUMS",
            "terraform_0.15.1_SHA256SUMS.sig",
        ),
    ] {
        keys.verify(&fixture(sums), &fixture(sig))
            .unwrap_or_else(|e| panic!("{sums}: {e}"));
    }
    // The first block alone (the 2021 generation) cannot vouch for a signature made after its
    // primary key's 2021 self-signature expired (2026-04-19): 1.14.9 was signed 2026-04-20.
    std::fs::write(
        &path,
        old.to_armored_string(ArmorOptions::default()).unwrap(),
    )
    .unwrap();
    let err = TrustedKeys::from_file(&path)
        .unwrap()
        .verify(
            &fixture("terraform_1.14.9_SHA256SUMS"),
            &fixture("terraform_1.14.9_SHA256SUMS.72D7468F.sig"),
        )
        .unwrap_err();
    match err {
        VerifyError::KeyNotValid { reason, .. } => assert!(
            matches!(reason, Invalidity::Primary(_) | Invalidity::Expired(_)),
            "{reason}"
        ),
        other => panic!("expected KeyNotValid, got {other}"),
    }
}
