//! The release mirror's files: the signing key and detached signatures, the stand-in binaries
//! and CNI plugins, and the zips and tarballs that carry them (including the faulty ones
//! [`super::Tamper`] asks for). What the mirror serves is in `super`.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use pgp::composed::{
    DetachedSignature, KeyType, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder,
};
use pgp::crypto::hash::HashAlgorithm;
use pgp::ser::Serialize as _;
use pgp::types::Password;

use super::{UnsafeEntry, CNI_PLUGINS};
use crate::hash::sha256_hex;

/// An Ed25519 (legacy EdDSA, readable by gpg 2.2 too) primary that certifies, with one signing
/// subkey, like HashiCorp's key (an RSA primary with signing subkeys).
pub(super) fn generate_key(user_id: &str) -> SignedSecretKey {
    let subkey = SubkeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_sign(true)
        .build()
        .expect("subkey parameters");
    let params = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(false)
        .primary_user_id(user_id.into())
        .preferred_hash_algorithms(vec![HashAlgorithm::Sha256].into())
        .subkeys(vec![subkey])
        .build()
        .expect("key parameters");
    params
        .generate(rand::thread_rng())
        .expect("generating the mirror key")
}

pub(super) fn other_key() -> &'static SignedSecretKey {
    static OTHER: OnceLock<SignedSecretKey> = OnceLock::new();
    OTHER.get_or_init(|| generate_key("Somebody Else <other@example.invalid>"))
}

/// A detached binary signature over `data` by the key's signing subkey, as bytes.
pub(super) fn sign(key: &SignedSecretKey, data: &[u8]) -> Vec<u8> {
    let subkey = &key.secret_subkeys[0].key;
    DetachedSignature::sign_binary_data(
        rand::thread_rng(),
        subkey,
        &Password::empty(),
        HashAlgorithm::Sha256,
        data,
    )
    .expect("signing")
    .to_bytes()
    .expect("serializing the signature")
}

pub(super) fn display_name(product: &str) -> String {
    let mut chars = product.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The stand-in binary: a POSIX shell script that answers `version` like the real one.
pub(super) fn fake_binary(product: &str, version: &str, arch: &str) -> String {
    let name = display_name(product);
    format!(
        r#"#!/bin/sh
# Stand-in for HashiCorp {name} {version} (linux/{arch}), served by the test release mirror.
case "$1" in
  version|-version|--version|-v)
    echo "{name} v{version}"
    echo "BuildDate 2025-01-01T00:00:00Z"
    echo "Revision 0000000000000000000000000000000000000000"
    ;;
  agent)
    echo "==> {name} stand-in agent started: $*"
    trap 'exit 0' INT TERM
    while :; do sleep 1 & wait $!; done
    ;;
  *)
    echo "{product} stand-in: $*"
    ;;
esac
"#
    )
}

pub(super) fn fake_cni_plugin(name: &str, version: &str, arch: &str) -> String {
    format!(
        "#!/bin/sh\n# Stand-in CNI plugin {name} v{version} (linux/{arch}).\n\
         echo '{{\"cniVersion\": \"1.0.0\", \"supportedVersions\": [\"1.0.0\"]}}'\n"
    )
}

pub(super) const LICENSE_TEXT: &str = "Stand-in license text of the test release mirror.\n";

/// The stand-in binary, padded to `padded_to` bytes (when larger) with a shell comment after
/// an `exit`, so it still runs.
pub(super) fn padded_binary(
    product: &str,
    version: &str,
    arch: &str,
    padded_to: Option<u64>,
) -> Vec<u8> {
    let mut binary = fake_binary(product, version, arch).into_bytes();
    if let Some(size) = padded_to.and_then(|s| usize::try_from(s).ok()) {
        if size > binary.len() {
            binary.extend_from_slice(b"exit 0\n#");
            let target = size.max(binary.len() + 1);
            binary.resize(target - 1, b' ');
            binary.push(b'\n');
        }
    }
    binary
}

/// The second `<product>` entry of [`Tamper::DuplicateEntry`].
pub(super) fn duplicate_binary(product: &str) -> String {
    format!("#!/bin/sh\necho 'the second entry named {product}: never to be installed'\nexit 1\n")
}

/// What goes into a release zip.
pub(super) struct ZipShape {
    pub(super) binary: Vec<u8>,
    pub(super) unsafe_entry: Option<UnsafeEntry>,
    /// A second entry named like the binary, after it.
    pub(super) duplicate: bool,
}

impl ZipShape {
    pub(super) fn standard(product: &str, version: &str, arch: &str) -> ZipShape {
        ZipShape {
            binary: fake_binary(product, version, arch).into_bytes(),
            unsafe_entry: None,
            duplicate: false,
        }
    }
}

pub(super) fn release_zip(product: &str, shape: &ZipShape) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let unsafe_entry = shape.unsafe_entry;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let exec = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o755);
    let plain = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    zip.start_file("LICENSE.txt", plain).expect("zip entry");
    zip.write_all(LICENSE_TEXT.as_bytes()).expect("zip write");
    if unsafe_entry == Some(UnsafeEntry::Symlink) {
        zip.add_symlink(product, "/bin/sh", SimpleFileOptions::default())
            .expect("zip symlink");
    } else {
        zip.start_file(product, exec).expect("zip entry");
        zip.write_all(&shape.binary).expect("zip write");
    }
    // ZipWriter refuses a duplicate name, so the second entry gets a stand-in name of the same
    // length (the product in capitals), patched to the real name in the local header and the
    // central directory once the zip is written.
    let stand_in = product.to_uppercase();
    if shape.duplicate {
        zip.start_file(stand_in.as_str(), exec).expect("zip entry");
        zip.write_all(duplicate_binary(product).as_bytes())
            .expect("zip write");
    }
    let extra = match unsafe_entry {
        Some(UnsafeEntry::ParentDir) => Some("../escaped.txt"),
        Some(UnsafeEntry::AbsolutePath) => Some("/tmp/escaped.txt"),
        _ => None,
    };
    if let Some(name) = extra {
        zip.start_file(name, plain).expect("zip entry");
        zip.write_all(b"this entry must never be extracted\n")
            .expect("zip write");
    }
    let mut bytes = zip.finish().expect("finishing zip").into_inner();
    if shape.duplicate {
        replace_all(&mut bytes, stand_in.as_bytes(), product.as_bytes());
    }
    bytes
}

pub(super) fn replace_all(bytes: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let mut at = 0;
    while let Some(found) = bytes[at..].windows(from.len()).position(|w| w == from) {
        bytes[at + found..at + found + to.len()].copy_from_slice(to);
        at += found + to.len();
    }
}

/// Writes a CNI tarball and its `.sha256` and `.sha512` files beside it.
pub(super) fn write_cni_files(local: &Path, tgz: &[u8]) {
    let name = local
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();
    fs::write(
        local.with_file_name(format!("{name}.sha256")),
        format!("{}  {name}\n", sha256_hex(tgz)),
    )
    .expect("writing .sha256");
    fs::write(
        local.with_file_name(format!("{name}.sha512")),
        format!("{}  {name}\n", sha512_hex(tgz)),
    )
    .expect("writing .sha512");
    fs::write(local, tgz).expect("writing cni tarball");
}

pub(super) fn cni_tarball(version: &str, arch: &str, duplicate: bool) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut entries: Vec<(String, Vec<u8>, u32, tar::EntryType)> =
        vec![("./".into(), Vec::new(), 0o755, tar::EntryType::Directory)];
    for p in CNI_PLUGINS {
        let script = fake_cni_plugin(p, version, arch).into_bytes();
        entries.push((format!("./{p}"), script, 0o755, tar::EntryType::Regular));
    }
    let license = LICENSE_TEXT.as_bytes().to_vec();
    entries.push(("./LICENSE".into(), license, 0o644, tar::EntryType::Regular));
    let readme = b"# Stand-in CNI plugins\n".to_vec();
    entries.push(("./README.md".into(), readme, 0o644, tar::EntryType::Regular));
    if duplicate {
        let second = duplicate_binary("bridge").into_bytes();
        entries.push(("./bridge".into(), second, 0o755, tar::EntryType::Regular));
    }
    for (name, data, mode, kind) in entries {
        append_raw(&mut tar, &name, kind, mode, &data);
    }
    tar.into_inner()
        .expect("finishing tar")
        .finish()
        .expect("finishing gzip")
}

/// Appends a tar entry with its name written verbatim: the real CNI tarballs name entries
/// `./bridge`, which `tar::Builder`'s path helpers would normalise to `bridge`.
pub(super) fn append_raw<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    kind: tar::EntryType,
    mode: u32,
    data: &[u8],
) {
    let mut header = tar::Header::new_gnu();
    let raw = name.as_bytes();
    header.as_old_mut().name[..raw.len()].copy_from_slice(raw);
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(data.len() as u64);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    tar.append(&header, data).expect("tar entry");
}

pub(super) fn flip_byte(path: &Path) {
    let mut bytes = fs::read(path).expect("reading file to tamper");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(path, bytes).expect("writing tampered file");
}

pub(super) fn sha512_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    crate::hash::hex(&sha2::Sha512::digest(bytes))
}

pub(super) fn hex_upper(bytes: &[u8]) -> String {
    crate::hash::hex(bytes).to_uppercase()
}
