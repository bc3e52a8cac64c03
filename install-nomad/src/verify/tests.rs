use super::*;

const YEAR: u64 = 365 * 24 * 3600;

fn binding(created: u64, expires_after: Option<u64>, can_sign: bool) -> Binding {
    Binding {
        created,
        key_expires_after: expires_after,
        valid_until: None,
        can_sign,
    }
}

fn component(created: u64, bindings: Vec<Binding>) -> Component {
    Component {
        created,
        bindings,
        revocations: Vec::new(),
    }
}

#[test]
fn validity_is_judged_at_the_given_time_not_now() {
    // A subkey valid for one year from 1000.
    let subkey = component(1000, vec![binding(1000, Some(YEAR), true)]);
    let primary = component(0, vec![binding(0, None, false)]);
    assert_eq!(signer_valid_at(&primary, Some(&subkey), 2000), Ok(()));
    assert_eq!(
        signer_valid_at(&primary, Some(&subkey), 1000 + YEAR),
        Err(Invalidity::Expired(Time(1000 + YEAR)))
    );
    assert_eq!(
        signer_valid_at(&primary, Some(&subkey), 999),
        Err(Invalidity::NotYetCreated(Time(1000)))
    );
}

#[test]
fn the_newest_binding_at_that_time_decides() {
    // Bound in year 0 for 5 years, refreshed in year 4 for 9 years.
    let subkey = component(
        0,
        vec![
            binding(0, Some(5 * YEAR), true),
            binding(4 * YEAR, Some(9 * YEAR), true),
        ],
    );
    let primary = component(0, vec![binding(0, None, false)]);
    // Year 6: only the refresh keeps it alive.
    assert_eq!(signer_valid_at(&primary, Some(&subkey), 6 * YEAR), Ok(()));
    // Year 3: the refresh did not exist yet; the first binding (alive) decides.
    assert_eq!(binding_at(&subkey, 3 * YEAR).unwrap().created, 0);
    assert_eq!(signer_valid_at(&primary, Some(&subkey), 3 * YEAR), Ok(()));
    // Without the refresh, year 6 is past the expiry.
    let old_only = component(0, vec![binding(0, Some(5 * YEAR), true)]);
    assert_eq!(
        signer_valid_at(&primary, Some(&old_only), 6 * YEAR),
        Err(Invalidity::Expired(Time(5 * YEAR)))
    );
}

#[test]
fn a_newer_binding_can_take_the_sign_flag_away() {
    let subkey = component(0, vec![binding(0, None, true), binding(10, None, false)]);
    let primary = component(0, vec![binding(0, None, false)]);
    assert_eq!(signer_valid_at(&primary, Some(&subkey), 5), Ok(()));
    assert_eq!(
        signer_valid_at(&primary, Some(&subkey), 20),
        Err(Invalidity::NotForSigning)
    );
}

#[test]
fn the_primary_must_be_valid_too() {
    let subkey = component(0, vec![binding(0, None, true)]);
    let primary = component(0, vec![binding(0, Some(100), false)]);
    assert_eq!(signer_valid_at(&primary, Some(&subkey), 50), Ok(()));
    assert_eq!(
        signer_valid_at(&primary, Some(&subkey), 150),
        Err(Invalidity::Primary(Box::new(Invalidity::Expired(Time(
            100
        )))))
    );
    // A primary signing for itself needs the sign flag.
    assert_eq!(
        signer_valid_at(&primary, None, 50),
        Err(Invalidity::NotForSigning)
    );
    let signing_primary = component(0, vec![binding(0, None, true)]);
    assert_eq!(signer_valid_at(&signing_primary, None, 50), Ok(()));
}

#[test]
fn revocations() {
    let primary = component(0, vec![binding(0, None, false)]);
    let mut subkey = component(0, vec![binding(0, None, true)]);
    subkey.revocations.push(Revocation {
        created: 100,
        hard: false,
    });
    // Retired at 100: earlier signatures still count, later ones do not.
    assert_eq!(signer_valid_at(&primary, Some(&subkey), 50), Ok(()));
    assert_eq!(
        signer_valid_at(&primary, Some(&subkey), 150),
        Err(Invalidity::Revoked(Time(100)))
    );
    // Compromised: nothing counts, not even signatures from before.
    subkey.revocations[0].hard = true;
    assert_eq!(
        signer_valid_at(&primary, Some(&subkey), 50),
        Err(Invalidity::Compromised)
    );
    assert!(revocation_is_hard(None));
    assert!(revocation_is_hard(Some(&RevocationCode::KeyCompromised)));
    assert!(revocation_is_hard(Some(&RevocationCode::NoReason)));
    assert!(!revocation_is_hard(Some(&RevocationCode::KeyRetired)));
    assert!(!revocation_is_hard(Some(&RevocationCode::KeySuperseded)));
}

#[test]
fn bindings_that_stopped_counting_or_predate_the_key_are_ignored() {
    let mut b = binding(10, None, true);
    b.valid_until = Some(20);
    let c = component(5, vec![b, binding(1, None, true)]);
    assert!(binding_at(&c, 15).is_some());
    assert_eq!(binding_at(&c, 25), None);
    // The binding made at 1 predates the key (created 5) and never counts.
    assert_eq!(binding_at(&c, 8), None);
    assert_eq!(valid_at(&c, 8), Err(Invalidity::Unbound));
}

#[test]
fn hash_strength() {
    assert!(hash_is_strong(HashAlgorithm::Sha256));
    assert!(hash_is_strong(HashAlgorithm::Sha512));
    assert!(hash_is_strong(HashAlgorithm::Sha3_256));
    assert!(!hash_is_strong(HashAlgorithm::Sha1));
    assert!(!hash_is_strong(HashAlgorithm::Sha224));
    assert!(!hash_is_strong(HashAlgorithm::Md5));
    assert!(!hash_is_strong(HashAlgorithm::Ripemd160));
}

const A: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const B: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

#[test]
fn sums_match_exact_names_once() {
    let text = format!("{A}  nomad_0.8.7_linux_amd64-lxc.zip\n{B}  nomad_0.8.7_linux_amd64.zip\n");
    let sums = parse_sums(text.as_bytes()).unwrap();
    assert_eq!(sums.sha256_of("nomad_0.8.7_linux_amd64.zip"), Ok(B));
    assert_eq!(sums.sha256_of("nomad_0.8.7_linux_amd64-lxc.zip"), Ok(A));
    assert_eq!(
        sums.sha256_of("nomad_0.8.7_linux_arm64.zip"),
        Err(SumsError::Missing("nomad_0.8.7_linux_arm64.zip".into()))
    );
    assert_eq!(
        sums.sha256_of("linux_amd64.zip").unwrap_err(),
        SumsError::Missing("linux_amd64.zip".into())
    );
    let twice = format!("{A}  x.zip\n{B}  x.zip\n");
    assert_eq!(
        parse_sums(twice.as_bytes()).unwrap().sha256_of("x.zip"),
        Err(SumsError::Duplicate {
            name: "x.zip".into(),
            count: 2
        })
    );
}

#[test]
fn sums_are_parsed_strictly() {
    let upper = format!("{}  x.zip\n", A.to_uppercase());
    assert_eq!(
        parse_sums(upper.as_bytes()).unwrap().sha256_of("x.zip"),
        Ok(A)
    );
    let binary_mode = format!("{A} *x.zip\n");
    assert!(parse_sums(binary_mode.as_bytes()).is_ok());
    for bad in [
        format!("{A} x.zip\n"),
        format!("{}  x.zip\n", &A[..63]),
        format!("{}g  x.zip\n", &A[..63]),
        format!("{A}  \n"),
        "not a sums file\n".to_string(),
    ] {
        assert!(
            matches!(
                parse_sums(bad.as_bytes()),
                Err(SumsError::Malformed { line: 1, .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(parse_sums(&[0xff, 0xfe]), Err(SumsError::NotText));
}

#[test]
fn the_embedded_key_is_hashicorps() {
    let keys = TrustedKeys::hashicorp().unwrap();
    assert_eq!(keys.fingerprints(), [HASHICORP_FINGERPRINT]);
    assert_eq!(keys.key_id_suffixes(), ["72D7468F"]);
}

#[test]
fn armored_blocks_are_split() {
    let text = b"junk\n-----BEGIN PGP PUBLIC KEY BLOCK-----\nAAA\n-----END PGP PUBLIC KEY BLOCK-----\nmiddle\n-----BEGIN PGP PUBLIC KEY BLOCK-----\nBBB\n-----END PGP PUBLIC KEY BLOCK-----";
    let blocks = armored_blocks(text);
    assert_eq!(blocks.len(), 2);
    assert!(blocks[0].starts_with(b"-----BEGIN") && blocks[0].ends_with(b"BLOCK-----\n"));
    assert!(blocks[1].ends_with(b"BLOCK-----"));
    assert!(armored_blocks(b"\x99\x02binary").is_empty());
}
