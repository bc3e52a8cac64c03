//! Signature and checksum rules: when a signed `SHA256SUMS` counts, and which archive hash it
//! vouches for. Everything fails closed.
//!
//! rPGP (`pgp` 0.21) parses keys and signatures and does the cryptography (the data signature,
//! self-signatures, subkey bindings and their embedded back-signatures). What rPGP leaves to the
//! caller is *validity at a time*, and that is written here as pure functions over plain facts
//! ([`Component`], [`Binding`], [`Revocation`]) so they can be tested without keys:
//!
//! - A signature is judged at its own creation time, never at "now". HashiCorp's 0.15.1 sums
//!   were signed in April 2021 by a subkey that expired in April 2022; they are still genuine. In
//!   April 2026 every hc-install broke for days ("openpgp: key expired") because it judged the
//!   key at the current date with a stale embedded copy (`../shared/REFERENCE.md`).
//! - At that time, the newest valid self-signature of the signing key (and of the primary key)
//!   decides its flags and expiry. HashiCorp's key carries two generations of self-signatures
//!   (2021, expiring 2026; and the 2026 refresh, expiring 2030-03-01): a signature from 2021 is
//!   judged by the 2021 bindings, one from after February 2026 by the refresh.
//! - The signing key must be marked for signing, bound by a valid binding signature (with a valid
//!   back-signature for a subkey), created no later than the signature, not expired then, and its
//!   primary key must be valid then too. A revocation for compromise (or without a reason)
//!   invalidates every signature; a "superseded"/"retired" revocation only those made after it.
//! - The data signature must be a binary document signature (type 0x00, what `gpg
//!   --detach-sign` and HashiCorp make), version 4 or 6, hashed with SHA-256 or stronger; every
//!   self-signature we rely on must be SHA-256 or stronger too.
//! - The trusted certificate is HashiCorp's, embedded here and pinned to fingerprint
//!   [`HASHICORP_FINGERPRINT`], unless `--public-key` names another one.

use std::fmt;
use std::io::Cursor;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey, SignedPublicSubKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{RevocationCode, Signature, SignatureType, SignatureVersion};
use pgp::types::{KeyDetails, Tag};

use crate::boundary::{catch_panic, pgp_error_text};

mod sums;
pub use sums::{parse_sums, Sums, SumsError};

/// Primary key fingerprint of HashiCorp's release signing key ("HashiCorp Security
/// (hashicorp.com/security) <security@hashicorp.com>"), published at
/// hashicorp.com/.well-known/pgp-key.txt.
pub const HASHICORP_FINGERPRINT: &str = "C874011F0AB405110D02105534365D9472D7468F";

/// HashiCorp's public key: one armored block merging the 2021 bindings with the 2026 refresh
/// (expiry 2030-03-01), copied from `../shared/fixtures/hashicorp/hashicorp-release-key.asc`.
/// Keep it current: when HashiCorp refreshes the key again, append the new self-signatures.
const HASHICORP_KEY: &str = include_str!("hashicorp-release-key.asc");

/// A point in time as OpenPGP stores it (seconds since the Unix epoch), shown in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(pub u64);

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = UNIX_EPOCH + Duration::from_secs(self.0);
        f.write_str(&httpdate::fmt_http_date(when))
    }
}

// ---------------------------------------------------------------------------------------------
// Pure validity rules.

/// What one valid self-signature (user ID certification, direct-key signature or subkey
/// binding) says about a key, once its cryptography has been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// When the self-signature was made.
    pub created: u64,
    /// Key Expiration Time subpacket: seconds after the *key's* creation; `None` or 0 = never.
    pub key_expires_after: Option<u64>,
    /// The self-signature stops counting at this time (its own expiration, or the revocation of
    /// the user ID it certifies).
    pub valid_until: Option<u64>,
    /// Key flags include "sign data".
    pub can_sign: bool,
}

/// A valid revocation signature on a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    pub created: u64,
    /// Compromised, no reason, or an unknown reason: no signature by the key counts, whenever
    /// it was made. Otherwise (superseded, retired) only signatures made after `created` are
    /// refused.
    pub hard: bool,
}

/// The facts about one key (the primary or a subkey) that decide its validity at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Component {
    /// The key's creation time.
    pub created: u64,
    pub bindings: Vec<Binding>,
    pub revocations: Vec<Revocation>,
}

/// Why a key was not valid at a signature's creation time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalidity {
    #[error("the key did not exist yet (it was created {0})")]
    NotYetCreated(Time),
    #[error("no valid self-signature bound the key at that time")]
    Unbound,
    #[error("the key had expired ({0})")]
    Expired(Time),
    #[error("the key had been revoked ({0})")]
    Revoked(Time),
    #[error(
        "the key is revoked as compromised (or without a reason), so none of its signatures count"
    )]
    Compromised,
    #[error("the key is not marked for signing at that time")]
    NotForSigning,
    #[error("its primary key was not valid: {0}")]
    Primary(Box<Invalidity>),
}

/// The self-signature in effect at `at`: the newest one made at or before `at` (and not before
/// the key itself) that still counted then.
pub fn binding_at(component: &Component, at: u64) -> Option<Binding> {
    component
        .bindings
        .iter()
        .filter(|b| b.created <= at && b.created >= component.created)
        .filter(|b| b.valid_until.is_none_or(|until| at < until))
        .max_by_key(|b| b.created)
        .copied()
}

/// Whether the key was valid at `at`; on success, the binding in effect then.
pub fn valid_at(component: &Component, at: u64) -> Result<Binding, Invalidity> {
    if at < component.created {
        return Err(Invalidity::NotYetCreated(Time(component.created)));
    }
    if component.revocations.iter().any(|r| r.hard) {
        return Err(Invalidity::Compromised);
    }
    if let Some(r) = component
        .revocations
        .iter()
        .filter(|r| r.created <= at)
        .min_by_key(|r| r.created)
    {
        return Err(Invalidity::Revoked(Time(r.created)));
    }
    let binding = binding_at(component, at).ok_or(Invalidity::Unbound)?;
    if let Some(after) = binding.key_expires_after.filter(|s| *s > 0) {
        let end = component.created + after;
        if at >= end {
            return Err(Invalidity::Expired(Time(end)));
        }
    }
    Ok(binding)
}

/// Whether a signature made at `at` by `signer` (a subkey of `primary`, or the primary itself
/// when `signer` is `None`) counts: the primary must be valid then, and the signing key valid and
/// marked for signing.
pub fn signer_valid_at(
    primary: &Component,
    signer: Option<&Component>,
    at: u64,
) -> Result<(), Invalidity> {
    let primary_binding = match valid_at(primary, at) {
        Ok(b) => b,
        Err(e) if signer.is_some() => return Err(Invalidity::Primary(Box::new(e))),
        Err(e) => return Err(e),
    };
    let binding = match signer {
        None => primary_binding,
        Some(subkey) => valid_at(subkey, at)?,
    };
    if binding.can_sign {
        Ok(())
    } else {
        Err(Invalidity::NotForSigning)
    }
}

/// SHA-256 or stronger (RFC 9580 §9.5 lists these as the hashes to accept).
pub fn hash_is_strong(hash: HashAlgorithm) -> bool {
    matches!(
        hash,
        HashAlgorithm::Sha256
            | HashAlgorithm::Sha384
            | HashAlgorithm::Sha512
            | HashAlgorithm::Sha3_256
            | HashAlgorithm::Sha3_512
    )
}

/// RFC 9580 §5.2.3.31: only "superseded" and "retired" (and, for user IDs, "no longer valid")
/// are soft revocations; no reason, "compromised" and anything unknown are hard.
pub fn revocation_is_hard(code: Option<&RevocationCode>) -> bool {
    !matches!(
        code,
        Some(RevocationCode::KeySuperseded)
            | Some(RevocationCode::KeyRetired)
            | Some(RevocationCode::CertUserIdInvalid)
    )
}

// ---------------------------------------------------------------------------------------------
// OpenPGP: trusted certificates and detached signatures.

/// Why a key file or a signature was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("cannot read an OpenPGP public key from {origin}: {reason}")]
    Key { origin: String, reason: String },
    #[error("{origin} has primary fingerprint {found}, not the pinned {expected}")]
    Fingerprint {
        origin: String,
        found: String,
        expected: String,
    },
    #[error("the signature is not valid OpenPGP data: {0}")]
    SignatureFormat(String),
    #[error("the signature file holds no signature")]
    NoSignature,
    #[error("it is a {0} signature; a binary document signature (type 0x00) is required")]
    WrongType(String),
    #[error("it is a {0:?} signature; version 4 or 6 is required")]
    WrongVersion(String),
    #[error("it uses hash {0}; SHA-256 or stronger is required")]
    WeakHash(String),
    #[error("it has no creation time")]
    NoCreationTime,
    #[error(
        "it was made by key {issuer}, which is not a key of the trusted certificate ({trusted})"
    )]
    UnknownSigner { issuer: String, trusted: String },
    #[error("it does not match the signed file (signing key {signer}): {reason}")]
    BadSignature { signer: String, reason: String },
    #[error("it expired {0}")]
    SignatureExpired(Time),
    #[error("it was made {at} by key {signer}, which was not valid then: {reason}")]
    KeyNotValid {
        signer: String,
        at: Time,
        reason: Invalidity,
    },
}

/// A signature that counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Fingerprint of the key that signed (a subkey, usually).
    pub signer: String,
    /// Fingerprint of its certificate's primary key.
    pub primary: String,
    /// When the signature was made.
    pub created: Time,
}

/// The certificates whose signatures we accept.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    certs: Vec<SignedPublicKey>,
    origin: String,
}

impl TrustedKeys {
    /// HashiCorp's key, embedded in this program and pinned to [`HASHICORP_FINGERPRINT`].
    pub fn hashicorp() -> Result<TrustedKeys, VerifyError> {
        let origin = "the embedded HashiCorp release key".to_string();
        let certs = parse_certificates(HASHICORP_KEY.as_bytes(), &origin)?;
        for cert in &certs {
            let found = fingerprint_hex(&cert.primary_key);
            if found != HASHICORP_FINGERPRINT {
                return Err(VerifyError::Fingerprint {
                    origin,
                    found,
                    expected: HASHICORP_FINGERPRINT.to_string(),
                });
            }
        }
        Ok(TrustedKeys { certs, origin })
    }

    /// The certificate(s) in an armored or binary key file (`--public-key`). Several armored
    /// blocks are read, and blocks for the same primary key are merged (HashiCorp publishes its
    /// refreshed key as two blocks).
    pub fn from_file(path: &Path) -> Result<TrustedKeys, VerifyError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| VerifyError::Key {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        let certs = parse_certificates(&bytes, &origin)?;
        Ok(TrustedKeys { certs, origin })
    }

    /// Where the keys came from, for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Upper-case hex fingerprints of the trusted primary keys.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs
            .iter()
            .map(|c| fingerprint_hex(&c.primary_key))
            .collect()
    }

    /// The `<KEYID>` part of `<sums>.<KEYID>.sig` file names: the last 8 hex digits of each
    /// primary fingerprint (`72D7468F` for HashiCorp).
    pub fn key_id_suffixes(&self) -> Vec<String> {
        self.fingerprints()
            .into_iter()
            .map(|fp| fp[fp.len().saturating_sub(8)..].to_string())
            .collect()
    }

    /// Checks a detached signature (binary or armored) over `data`. When the file holds several
    /// signatures, one that counts is enough (as gpg does); otherwise the first refusal is
    /// returned.
    ///
    /// rPGP parses bytes the mirror chose: a panic inside it is caught here and reported as an
    /// unreadable signature, like any other garbage.
    pub fn verify(&self, data: &[u8], signature: &[u8]) -> Result<Verified, VerifyError> {
        catch_panic(|| self.verify_unguarded(data, signature)).unwrap_or_else(|panic| {
            Err(VerifyError::SignatureFormat(format!(
                "the OpenPGP parser failed on it ({panic})"
            )))
        })
    }

    fn verify_unguarded(&self, data: &[u8], signature: &[u8]) -> Result<Verified, VerifyError> {
        let format_error = |e: pgp::errors::Error| VerifyError::SignatureFormat(pgp_error_text(&e));
        let (signatures, _) =
            DetachedSignature::from_reader_many(Cursor::new(signature)).map_err(format_error)?;
        let mut first_error = None;
        for parsed in signatures {
            let parsed = parsed.map_err(format_error)?;
            match self.verify_one(&parsed.signature, data, now()) {
                Ok(verified) => return Ok(verified),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(VerifyError::NoSignature))
    }

    fn verify_one(&self, sig: &Signature, data: &[u8], now: u64) -> Result<Verified, VerifyError> {
        match sig.version() {
            SignatureVersion::V4 | SignatureVersion::V6 => {}
            other => return Err(VerifyError::WrongVersion(format!("{other:?}"))),
        }
        match sig.typ() {
            Some(SignatureType::Binary) => {}
            other => return Err(VerifyError::WrongType(format!("{other:?}"))),
        }
        let candidates: Vec<(
            &SignedPublicKey,
            &dyn SignerKey,
            Option<&SignedPublicSubKey>,
        )> = self
            .certs
            .iter()
            .flat_map(|cert| {
                std::iter::once((cert, &cert.primary_key as &dyn SignerKey, None)).chain(
                    cert.public_subkeys
                        .iter()
                        .map(move |s| (cert, &s.key as &dyn SignerKey, Some(s))),
                )
            })
            .filter(|(_, key, _)| issued_by(sig, *key))
            .collect();
        if candidates.is_empty() {
            return Err(VerifyError::UnknownSigner {
                issuer: issuer_names(sig),
                trusted: format!("{}: {}", self.origin, self.fingerprints().join(", ")),
            });
        }
        let hash = sig
            .hash_alg()
            .ok_or_else(|| VerifyError::WeakHash("unknown".to_string()))?;
        if !hash_is_strong(hash) {
            return Err(VerifyError::WeakHash(hash.to_string()));
        }
        let created = u64::from(sig.created().ok_or(VerifyError::NoCreationTime)?.as_secs());
        if let Some(after) = sig
            .signature_expiration_time()
            .map(|d| u64::from(d.as_secs()))
            .filter(|s| *s > 0)
        {
            if now >= created + after {
                return Err(VerifyError::SignatureExpired(Time(created + after)));
            }
        }

        let mut crypto_error = None;
        for (cert, key, subkey) in candidates {
            let signer = key.fingerprint_hex();
            if let Err(e) = key.verify_data(sig, data) {
                crypto_error.get_or_insert(VerifyError::BadSignature {
                    signer,
                    reason: crypto_failure(&pgp_error_text(&e)),
                });
                continue;
            }
            let primary_facts = primary_component(cert);
            let subkey_facts = subkey.map(|s| subkey_component(cert, s));
            signer_valid_at(&primary_facts, subkey_facts.as_ref(), created).map_err(|reason| {
                VerifyError::KeyNotValid {
                    signer: signer.clone(),
                    at: Time(created),
                    reason,
                }
            })?;
            return Ok(Verified {
                signer,
                primary: fingerprint_hex(&cert.primary_key),
                created: Time(created),
            });
        }
        Err(crypto_error.unwrap_or(VerifyError::NoSignature))
    }
}

/// rPGP's verification errors on one line: a changed file shows as an assertion on the two
/// "signed hash value" bytes, spread over several lines.
fn crypto_failure(message: &str) -> String {
    if message.contains("invalid signed hash value") {
        return "the hash it signs is not the file's hash (the file or the signature was changed, or it belongs to another file)".to_string();
    }
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The two key packet types a signature can come from, seen the same way.
trait SignerKey {
    fn fingerprint_hex(&self) -> String;
    fn key_id(&self) -> pgp::types::KeyId;
    fn fingerprint(&self) -> pgp::types::Fingerprint;
    fn verify_data(&self, sig: &Signature, data: &[u8]) -> pgp::errors::Result<()>;
}

impl SignerKey for pgp::packet::PublicKey {
    fn fingerprint_hex(&self) -> String {
        fingerprint_hex(self)
    }
    fn key_id(&self) -> pgp::types::KeyId {
        self.legacy_key_id()
    }
    fn fingerprint(&self) -> pgp::types::Fingerprint {
        KeyDetails::fingerprint(self)
    }
    fn verify_data(&self, sig: &Signature, data: &[u8]) -> pgp::errors::Result<()> {
        sig.verify(self, data)
    }
}

impl SignerKey for pgp::packet::PublicSubkey {
    fn fingerprint_hex(&self) -> String {
        fingerprint_hex(self)
    }
    fn key_id(&self) -> pgp::types::KeyId {
        self.legacy_key_id()
    }
    fn fingerprint(&self) -> pgp::types::Fingerprint {
        KeyDetails::fingerprint(self)
    }
    fn verify_data(&self, sig: &Signature, data: &[u8]) -> pgp::errors::Result<()> {
        sig.verify(self, data)
    }
}

/// Whether the signature names `key` as its issuer (or names no issuer at all, in which case
/// every trusted key is tried).
fn issued_by(sig: &Signature, key: &dyn SignerKey) -> bool {
    let ids = sig.issuer_key_id();
    let fps = sig.issuer_fingerprint();
    if ids.is_empty() && fps.is_empty() {
        return true;
    }
    ids.iter().any(|id| **id == key.key_id()) || fps.iter().any(|fp| **fp == key.fingerprint())
}

fn issuer_names(sig: &Signature) -> String {
    let mut names: Vec<String> = sig
        .issuer_fingerprint()
        .iter()
        .map(|fp| support::hash::hex(fp.as_bytes()).to_uppercase())
        .collect();
    if names.is_empty() {
        names = sig
            .issuer_key_id()
            .iter()
            .map(|id| support::hash::hex(id.as_ref()).to_uppercase())
            .collect();
    }
    if names.is_empty() {
        "(unnamed)".to_string()
    } else {
        names.join(", ")
    }
}

fn fingerprint_hex(key: &impl KeyDetails) -> String {
    support::hash::hex(key.fingerprint().as_bytes()).to_uppercase()
}

/// The facts of one self-signature, if it uses a strong hash and has a creation time.
fn binding_from(sig: &Signature, valid_until: Option<u64>) -> Option<Binding> {
    if !sig.hash_alg().is_some_and(hash_is_strong) {
        return None;
    }
    let created = u64::from(sig.created()?.as_secs());
    let own_end = sig
        .signature_expiration_time()
        .map(|d| u64::from(d.as_secs()))
        .filter(|s| *s > 0)
        .map(|s| created + s);
    let valid_until = match (own_end, valid_until) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Some(Binding {
        created,
        key_expires_after: sig.key_expiration_time().map(|d| u64::from(d.as_secs())),
        valid_until,
        can_sign: sig.key_flags().sign(),
    })
}

fn revocation_from(sig: &Signature) -> Option<Revocation> {
    Some(Revocation {
        created: u64::from(sig.created()?.as_secs()),
        hard: revocation_is_hard(sig.revocation_reason_code()),
    })
}

/// The primary key's facts: its direct-key signatures and user ID self-certifications (each
/// checked cryptographically), and its key revocations.
fn primary_component(cert: &SignedPublicKey) -> Component {
    let key = &cert.primary_key;
    let mut bindings: Vec<Binding> = cert
        .details
        .direct_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::Key) && s.verify_key(key).is_ok())
        .filter_map(|s| binding_from(s, None))
        .collect();
    for user in &cert.details.users {
        let certifies = |s: &Signature| s.verify_certification(key, Tag::UserId, &user.id).is_ok();
        let revoked = user
            .signatures
            .iter()
            .filter(|s| s.typ() == Some(SignatureType::CertRevocation) && certifies(s))
            .filter_map(|s| s.created().map(|t| u64::from(t.as_secs())))
            .min();
        bindings.extend(
            user.signatures
                .iter()
                .filter(|s| {
                    s.is_certification()
                        && s.typ() != Some(SignatureType::CertRevocation)
                        && certifies(s)
                })
                .filter_map(|s| binding_from(s, revoked)),
        );
    }
    let revocations = cert
        .details
        .revocation_signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::KeyRevocation) && s.verify_key(key).is_ok())
        .filter_map(revocation_from)
        .collect();
    Component {
        created: u64::from(key.created_at().as_secs()),
        bindings,
        revocations,
    }
}

/// A subkey's facts: its binding signatures by the primary (a signing subkey's binding counts
/// only with a valid embedded back-signature, RFC 9580 §5.2.1) and its revocations.
fn subkey_component(cert: &SignedPublicKey, subkey: &SignedPublicSubKey) -> Component {
    let primary = &cert.primary_key;
    let bound = |s: &Signature| s.verify_subkey_binding(primary, &subkey.key).is_ok();
    let bindings = subkey
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyBinding) && bound(s))
        .filter(|s| {
            !s.key_flags().sign()
                || s.embedded_signature().is_some_and(|back| {
                    back.hash_alg().is_some_and(hash_is_strong)
                        && back
                            .verify_primary_key_binding(&subkey.key, primary)
                            .is_ok()
                })
        })
        .filter_map(|s| binding_from(s, None))
        .collect();
    let revocations = subkey
        .signatures
        .iter()
        .filter(|s| s.typ() == Some(SignatureType::SubkeyRevocation) && bound(s))
        .filter_map(revocation_from)
        .collect();
    Component {
        created: u64::from(subkey.key.created_at().as_secs()),
        bindings,
        revocations,
    }
}

/// Every certificate in a key file: each armored block in turn (or the binary packets), with
/// blocks for the same primary key merged into one certificate.
fn parse_certificates(bytes: &[u8], origin: &str) -> Result<Vec<SignedPublicKey>, VerifyError> {
    let key_error = |reason: String| VerifyError::Key {
        origin: origin.to_string(),
        reason,
    };
    let mut parsed = Vec::new();
    let blocks = armored_blocks(bytes);
    let inputs: Vec<&[u8]> = if blocks.is_empty() {
        vec![bytes]
    } else {
        blocks
    };
    for input in inputs {
        let certs = catch_panic(|| {
            SignedPublicKey::from_reader_many(Cursor::new(input))
                .map(|(certs, _)| certs.collect::<Vec<_>>())
        })
        .map_err(|panic| key_error(format!("the OpenPGP parser failed on it ({panic})")))?
        .map_err(|e| key_error(pgp_error_text(&e)))?;
        for cert in certs {
            parsed.push(cert.map_err(|e| key_error(pgp_error_text(&e)))?);
        }
    }
    if parsed.is_empty() {
        return Err(key_error("no public key found".to_string()));
    }
    let mut merged: Vec<SignedPublicKey> = Vec::new();
    for cert in parsed {
        let fp = fingerprint_hex(&cert.primary_key);
        match merged
            .iter_mut()
            .find(|m| fingerprint_hex(&m.primary_key) == fp)
        {
            Some(existing) => merge_into(existing, cert),
            None => merged.push(cert),
        }
    }
    Ok(merged)
}

/// The byte ranges of each `-----BEGIN PGP ...-----` ... `-----END PGP ...-----` block.
fn armored_blocks(bytes: &[u8]) -> Vec<&[u8]> {
    const BEGIN: &[u8] = b"-----BEGIN PGP ";
    const END: &[u8] = b"-----END PGP ";
    let mut blocks = Vec::new();
    let mut rest = bytes;
    while let Some(start) = find(rest, BEGIN) {
        let Some(end_rel) = find(&rest[start..], END) else {
            break;
        };
        let end_marker = start + end_rel;
        // The END line runs to the next newline (or the end of the input).
        let line_end = rest[end_marker..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| end_marker + p + 1);
        blocks.push(&rest[start..line_end]);
        rest = &rest[line_end..];
    }
    blocks
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Adds the signatures, user IDs and subkeys of `other` (same primary key) to `into`, without
/// duplicates.
fn merge_into(into: &mut SignedPublicKey, other: SignedPublicKey) {
    fn add_all(into: &mut Vec<Signature>, from: Vec<Signature>) {
        for sig in from {
            if !into.contains(&sig) {
                into.push(sig);
            }
        }
    }
    add_all(
        &mut into.details.revocation_signatures,
        other.details.revocation_signatures,
    );
    add_all(
        &mut into.details.direct_signatures,
        other.details.direct_signatures,
    );
    for user in other.details.users {
        match into.details.users.iter_mut().find(|u| u.id == user.id) {
            Some(existing) => add_all(&mut existing.signatures, user.signatures),
            None => into.details.users.push(user),
        }
    }
    for subkey in other.public_subkeys {
        let fp = fingerprint_hex(&subkey.key);
        match into
            .public_subkeys
            .iter_mut()
            .find(|s| fingerprint_hex(&s.key) == fp)
        {
            Some(existing) => add_all(&mut existing.signatures, subkey.signatures),
            None => into.public_subkeys.push(subkey),
        }
    }
}

#[cfg(test)]
mod tests;
