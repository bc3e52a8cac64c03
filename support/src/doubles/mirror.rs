//! A HashiCorp-style release mirror on 127.0.0.1, laid out like `releases.hashicorp.com` (see
//! `../shared/REFERENCE.md`, "HashiCorp releases"), plus the containernetworking CNI release
//! layout. Every release is signed with an OpenPGP key generated for this mirror (Ed25519, fast
//! to make in a debug build), so a test trusts it with `--public-key <mirror.public_key_file()>`.
//!
//! # API
//!
//! ```no_run
//! use support::doubles::mirror::{Failure, Mirror, Tamper, UnsafeEntry, NOMAD_LATEST};
//!
//! let mirror = Mirror::start(); // the standard catalogue below
//! let base = mirror.url(); // "http://127.0.0.1:PORT": pass it as --download-url
//! let key = mirror.public_key_file(); // armored public key: pass it as --public-key
//! let cni = mirror.cni_url(); // pass it as --cni-download-url
//! let sha = mirror.cni_sha256("1.6.2", "amd64"); // pass it as --cni-sha256 (the tarball is fake)
//! let tree = mirror.file_url(); // "file:///tmp/...": the same tree, for file:// mirrors
//!
//! // Content faults change the files (so file:// sees them too); they stay until the end.
//! mirror.tamper("nomad", "1.10.0", Tamper::Archive);
//! mirror.tamper("nomad", "1.9.7", Tamper::UnsafeArchive(UnsafeEntry::ParentDir));
//! // Transport faults answer the next N requests for one path, then the file is served.
//! let zip = Mirror::archive_path("nomad", NOMAD_LATEST, "amd64");
//! mirror.fail(&zip, Failure::Status { code: 429, retry_after_secs: Some(1) }, 2);
//! mirror.fail(&zip, Failure::DropMidBody, 1);
//! mirror.set_range_support(false);
//! // Misbehaving transports: an endless error body, a trickle, a redirect.
//! mirror.fail(&zip, Failure::EndlessErrorBody { code: 503 }, 1);
//! mirror.fail(&zip, Failure::Trickle { pause_ms: 100 }, 1);
//! mirror.fail(&zip, Failure::Redirect { location: "http://0.0.0.0:1/x".into() }, 1);
//! // More content faults: two entries named `nomad`, a big binary, garbage signatures.
//! mirror.tamper("nomad", "1.10.0", Tamper::DuplicateEntry);
//! mirror.tamper_cni("1.6.2", Tamper::DuplicateEntry);
//! mirror.tamper("nomad", "1.10.0", Tamper::LargeBinary { bytes: 8 << 20 });
//! mirror.set_signatures("nomad", "1.10.0", b"garbage");
//! let seen = mirror.requests(); // every request: method, path, Range header, status sent
//! assert_eq!(mirror.binary("nomad", NOMAD_LATEST, "amd64"), std::fs::read("/opt/nomad/bin/nomad").unwrap());
//! ```
//!
//! # Layout (the real site's, per version `<v>` of product `<p>`)
//!
//! - `/<p>/index.json`: `{"name", "versions": {"<v>": <version object>}}`, every version,
//!   prereleases and `+ent` builds included.
//! - `/<p>/<v>/index.json`: `{"name", "version", "shasums", "shasums_signature",
//!   "shasums_signatures": [...], "builds": [{"name", "version", "os", "arch", "filename", "url"}]}`;
//!   `url` points at this mirror.
//! - `/<p>/<v>/<p>_<v>_linux_{amd64,arm64}.zip`: the binary `<p>` (mode 0755) and `LICENSE.txt`.
//!   The binary is a POSIX shell script: `<p> version` prints `Nomad v<v>` (or `Consul v<v>`) and
//!   build lines as the real one does, `<p> agent ...` runs until SIGINT/SIGTERM, anything else
//!   prints its arguments and exits 0.
//! - `/<p>/<v>/<p>_<v>_SHA256SUMS`: `<sha256>  <file>` lines, sorted, newline-terminated.
//! - `/<p>/<v>/<p>_<v>_SHA256SUMS.<KEYID>.sig` and `..._SHA256SUMS.sig`: detached binary
//!   signatures by the mirror key's signing subkey (`<KEYID>`: the last 8 hex digits of the
//!   primary fingerprint, as `72D7468F` is HashiCorp's). [`Catalogue::signatures`] can leave one
//!   of them out.
//! - CNI, under [`CNI_PREFIX`] (so [`Mirror::cni_url`] stands in for
//!   `https://github.com/containernetworking/plugins/releases/download`):
//!   `/v<X>/cni-plugins-linux-<arch>-v<X>.tgz` with `.sha256` and `.sha512` files beside it. The
//!   tarball holds `./`, a few plugins (shell scripts) and `./LICENSE`, `./README.md`.
//!
//! # HTTP behaviour
//!
//! `GET` and `HEAD` (other methods get 405), served by [`super::server`]: one request per
//! connection (`Connection: close`). `Range: bytes=N-` and `bytes=N-M` get 206 with
//! `Content-Range` while range support is on (the default, announced by `Accept-Ranges: bytes`),
//! 416 past the end; with range support off the header is ignored and the whole file is sent with
//! 200. Unknown paths (and unknown versions) get 404.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use pgp::composed::{ArmorOptions, SignedSecretKey};
use pgp::types::KeyDetails as _;
use serde_json::{json, Value};

use super::server::{self, RecordedRequest, Reply, Server};
use crate::hash::sha256_hex;

mod release_files;
use release_files::{
    cni_tarball, fake_cni_plugin, flip_byte, generate_key, hex_upper, other_key, padded_binary,
    release_zip, sign, write_cni_files, ZipShape,
};

/// Nomad versions of the standard catalogue: stable releases, a prerelease and an enterprise
/// build that are both newer than [`NOMAD_LATEST`] (so `latest` must skip them).
pub const NOMAD_VERSIONS: &[&str] = &["1.9.7", "1.10.0", "1.10.5", "1.10.6+ent", "1.11.0-rc.1"];
/// The newest stable Nomad of the standard catalogue (1.10.5 > 1.9.7: compare numerically).
pub const NOMAD_LATEST: &str = "1.10.5";
/// Consul versions of the standard catalogue.
pub const CONSUL_VERSIONS: &[&str] = &["1.20.6", "1.21.4", "1.21.5+ent", "1.22.0-beta.1"];
/// The newest stable Consul of the standard catalogue.
pub const CONSUL_LATEST: &str = "1.21.4";
/// CNI plugin versions of the standard catalogue (no leading `v`).
pub const CNI_VERSIONS: &[&str] = &["1.6.2"];
/// Architectures every release is built for.
pub const ARCHES: &[&str] = &["amd64", "arm64"];
/// Where the CNI layout lives on the mirror.
pub const CNI_PREFIX: &str = "/containernetworking/plugins/releases/download";
/// The plugins each fake CNI tarball carries.
pub const CNI_PLUGINS: &[&str] = &["bridge", "firewall", "host-local", "loopback", "portmap"];

/// Which signature files each release carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFiles {
    /// `<sums>.<KEYID>.sig` and `<sums>.sig`, as current releases do.
    Both,
    /// Only `<sums>.<KEYID>.sig`.
    KeyIdOnly,
    /// Only `<sums>.sig`, as releases from before 2021 do.
    PlainOnly,
}

/// What the mirror serves.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// `(product, version)` pairs, e.g. `("nomad", "1.10.5")`.
    pub releases: Vec<(String, String)>,
    /// CNI plugin versions without the leading `v`.
    pub cni: Vec<String>,
    pub signatures: SignatureFiles,
}

impl Default for Catalogue {
    /// Nomad [`NOMAD_VERSIONS`], Consul [`CONSUL_VERSIONS`], CNI [`CNI_VERSIONS`], both
    /// signature files.
    fn default() -> Self {
        let mut releases = Vec::new();
        for v in NOMAD_VERSIONS {
            releases.push(("nomad".to_string(), v.to_string()));
        }
        for v in CONSUL_VERSIONS {
            releases.push(("consul".to_string(), v.to_string()));
        }
        Self {
            releases,
            cni: CNI_VERSIONS.iter().map(|v| v.to_string()).collect(),
            signatures: SignatureFiles::Both,
        }
    }
}

/// A change to a release's files, made on disk so HTTP and `file://` both see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// One byte of both zips flipped after the sums were signed.
    Archive,
    /// One byte of the SHA256SUMS file changed after it was signed.
    Sums,
    /// SHA256SUMS re-signed (both signature files) by another key the test does not trust.
    OtherKeySignature,
    /// Both zips rebuilt with an unsafe entry; sums and signatures are redone to match, so only
    /// the archive checks can catch it.
    UnsafeArchive(UnsafeEntry),
    /// Both zips rebuilt with a second entry named like the binary (`nomad`) after the genuine
    /// one, holding a different script (for CNI: a second `./bridge`); sums and signatures redone
    /// to match. A zip reader that indexes entries by name keeps the second one.
    DuplicateEntry,
    /// Both zips rebuilt with the stand-in binary padded to `bytes` with a shell comment (it
    /// still runs, and deflates to almost nothing); sums and signatures redone.
    /// [`Mirror::binary`] returns the padded binary from then on.
    LargeBinary { bytes: u64 },
}

/// The unsafe entry of [`Tamper::UnsafeArchive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafeEntry {
    /// An extra entry `../escaped.txt`.
    ParentDir,
    /// An extra entry `/tmp/escaped.txt`.
    AbsolutePath,
    /// The binary entry itself is a symlink to `/bin/sh`.
    Symlink,
}

/// A transport fault for the next requests of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Answer with this status (429, 500, 503...) and a short body, with `Retry-After` if given.
    Status {
        code: u16,
        retry_after_secs: Option<u64>,
    },
    /// Serve the first half of the file as if it were all of it (a consistent, short body, as a
    /// half-synced mirror would).
    Truncate,
    /// Announce the full `Content-Length`, send half the body, then close the connection.
    DropMidBody,
    /// Answer with this status and a body without `Content-Length` that never ends (the same
    /// line over and over until the client closes the connection).
    EndlessErrorBody { code: u16 },
    /// Answer with this status and a long body (declared in `Content-Length`) sent one byte
    /// at a time, `pause_ms` apart: an unwell server that is slow even to say so.
    TrickleErrorBody { code: u16, pause_ms: u64 },
    /// Serve the file (200, full `Content-Length`) one byte at a time, `pause_ms` apart.
    Trickle { pause_ms: u64 },
    /// Answer `302 Found` with this `Location` (absolute URL), as a CDN in front of a mirror
    /// does.
    Redirect { location: String },
}

/// One request the mirror received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The status the mirror answered with.
    pub status: u16,
}

#[derive(Debug, Clone)]
struct PathFailure {
    path: String,
    failure: Failure,
    remaining: u32,
}

#[derive(Debug, Default)]
struct State {
    failures: Vec<PathFailure>,
    requests: Vec<Request>,
}

#[derive(Debug)]
struct Shared {
    tree: PathBuf,
    ranges: AtomicBool,
    state: Mutex<State>,
    /// `"<product>/<version>"` -> the size [`Tamper::LargeBinary`] padded its binary to.
    padded: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running mirror; it stops and its files are removed when it is dropped.
pub struct Mirror {
    // First, so the server stops before the files go.
    server: Server,
    dir: tempfile::TempDir,
    shared: Arc<Shared>,
    key: SignedSecretKey,
    catalogue: Catalogue,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("url", &self.url())
            .field("tree", &self.shared.tree)
            .finish()
    }
}

impl Mirror {
    /// Starts a mirror serving the standard [`Catalogue`].
    pub fn start() -> Self {
        Self::start_with(Catalogue::default())
    }

    /// Starts a mirror serving `catalogue`. Panics on set-up failure (this is test set-up).
    pub fn start_with(catalogue: Catalogue) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory for the mirror");
        let tree = dir.path().join("tree");
        fs::create_dir(&tree).expect("mirror tree directory");
        let key = generate_key("Test Release Mirror <mirror@example.invalid>");
        let shared = Arc::new(Shared {
            tree,
            ranges: AtomicBool::new(true),
            state: Mutex::new(State::default()),
            padded: Mutex::new(BTreeMap::new()),
        });
        // The URL goes into the index files, so the server starts first; nobody knows its port
        // before the tree is built.
        let server = {
            let shared = shared.clone();
            Server::start(move |request| {
                handle(&shared, request).header("Server", "test-release-mirror")
            })
        };
        let mirror = Mirror {
            server,
            dir,
            shared,
            key,
            catalogue,
        };
        fs::write(
            mirror.public_key_file(),
            mirror
                .key
                .to_public_key()
                .to_armored_string(ArmorOptions::default())
                .expect("armoring the mirror key"),
        )
        .expect("writing the mirror public key");
        mirror.build_tree();
        mirror
    }

    /// `http://127.0.0.1:PORT`, for `--download-url`.
    pub fn url(&self) -> String {
        self.server.url().to_string()
    }

    /// The CNI release base, for `--cni-download-url`.
    pub fn cni_url(&self) -> String {
        format!("{}{CNI_PREFIX}", self.url())
    }

    /// The directory holding the same tree the server serves.
    pub fn tree(&self) -> &Path {
        &self.shared.tree
    }

    /// `file://` URL of [`Mirror::tree`], for `--download-url`.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.shared.tree.display())
    }

    /// `file://` URL of the CNI layout inside [`Mirror::tree`], for `--cni-download-url`.
    pub fn cni_file_url(&self) -> String {
        format!("{}{CNI_PREFIX}", self.file_url())
    }

    /// The armored public key (primary + signing subkey) that signs every release.
    pub fn public_key_file(&self) -> PathBuf {
        self.dir.path().join("mirror-key.asc")
    }

    /// Upper-case hex fingerprint of the key's primary.
    pub fn fingerprint(&self) -> String {
        hex_upper(self.key.fingerprint().as_bytes())
    }

    /// The key id suffix of the `.<KEYID>.sig` file names: the fingerprint's last 8 hex digits.
    pub fn key_id_suffix(&self) -> String {
        let fp = self.fingerprint();
        fp[fp.len() - 8..].to_string()
    }

    /// `/<p>/<v>/<p>_<v>_linux_<arch>.zip`
    pub fn archive_path(product: &str, version: &str, arch: &str) -> String {
        format!("/{product}/{version}/{product}_{version}_linux_{arch}.zip")
    }

    /// `/<p>/<v>/<p>_<v>_SHA256SUMS`
    pub fn sums_path(product: &str, version: &str) -> String {
        format!("/{product}/{version}/{product}_{version}_SHA256SUMS")
    }

    /// The CNI tarball's path on the mirror (under [`CNI_PREFIX`]).
    pub fn cni_archive_path(version: &str, arch: &str) -> String {
        format!("{CNI_PREFIX}/v{version}/cni-plugins-linux-{arch}-v{version}.tgz")
    }

    /// The stand-in binary inside a release's zip, byte for byte.
    pub fn binary(&self, product: &str, version: &str, arch: &str) -> Vec<u8> {
        let padded = self
            .shared
            .padded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&format!("{product}/{version}"))
            .copied();
        padded_binary(product, version, arch, padded)
    }

    /// The stand-in CNI plugin `name`, byte for byte.
    pub fn cni_plugin(&self, name: &str, version: &str, arch: &str) -> Vec<u8> {
        fake_cni_plugin(name, version, arch).into_bytes()
    }

    /// SHA-256 (hex) of a release zip as currently on the mirror.
    pub fn archive_sha256(&self, product: &str, version: &str, arch: &str) -> String {
        self.file_sha256(&Self::archive_path(product, version, arch))
    }

    /// SHA-256 (hex) of a CNI tarball as currently on the mirror.
    pub fn cni_sha256(&self, version: &str, arch: &str) -> String {
        self.file_sha256(&Self::cni_archive_path(version, arch))
    }

    fn file_sha256(&self, path: &str) -> String {
        let local = self.local(path);
        sha256_hex(&fs::read(&local).unwrap_or_else(|e| panic!("{}: {e}", local.display())))
    }

    /// Changes a release's files on disk; see [`Tamper`].
    pub fn tamper(&self, product: &str, version: &str, tamper: Tamper) {
        let sums = self.local(&Self::sums_path(product, version));
        match tamper {
            Tamper::Archive => {
                for arch in ARCHES {
                    flip_byte(&self.local(&Self::archive_path(product, version, arch)));
                }
            }
            Tamper::Sums => {
                // Change one hex digit of the first line: still a well-formed file.
                let mut bytes = fs::read(&sums).expect("reading sums");
                bytes[0] = if bytes[0] == b'0' { b'1' } else { b'0' };
                fs::write(&sums, bytes).expect("writing sums");
            }
            Tamper::OtherKeySignature => {
                let other = other_key();
                let bytes = fs::read(&sums).expect("reading sums");
                self.write_signatures(product, version, &sign(other, &bytes));
            }
            Tamper::UnsafeArchive(entry) => self.rebuild_zips(product, version, |arch| ZipShape {
                unsafe_entry: Some(entry),
                ..ZipShape::standard(product, version, arch)
            }),
            Tamper::DuplicateEntry => self.rebuild_zips(product, version, |arch| ZipShape {
                duplicate: true,
                ..ZipShape::standard(product, version, arch)
            }),
            Tamper::LargeBinary { bytes } => {
                self.shared
                    .padded
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(format!("{product}/{version}"), bytes);
                self.rebuild_zips(product, version, |arch| ZipShape {
                    binary: self.binary(product, version, arch),
                    ..ZipShape::standard(product, version, arch)
                });
            }
        }
    }

    /// Changes a CNI release's tarballs on disk (both arches; `.sha256`/`.sha512` redone, so
    /// only the pin or `--cni-sha256` can tell). Supports [`Tamper::Archive`] (one byte flipped,
    /// side files left as they were) and [`Tamper::DuplicateEntry`] (a second `./bridge`).
    pub fn tamper_cni(&self, version: &str, tamper: Tamper) {
        for arch in ARCHES {
            let path = self.local(&Self::cni_archive_path(version, arch));
            match tamper {
                Tamper::Archive => flip_byte(&path),
                Tamper::DuplicateEntry => {
                    write_cni_files(&path, &cni_tarball(version, arch, true));
                }
                other => panic!("tamper_cni does not support {other:?}"),
            }
        }
    }

    /// Replaces both signature files of a release with `bytes` (garbage, truncated, empty...).
    pub fn set_signatures(&self, product: &str, version: &str, bytes: &[u8]) {
        self.write_signatures(product, version, bytes);
    }

    fn rebuild_zips(&self, product: &str, version: &str, shape: impl Fn(&str) -> ZipShape) {
        for arch in ARCHES {
            let zip = release_zip(product, &shape(arch));
            fs::write(self.local(&Self::archive_path(product, version, arch)), zip)
                .expect("writing rebuilt zip");
        }
        self.write_sums_and_signatures(product, version);
    }

    /// Makes the next `times` requests for `path` (as in [`Mirror::archive_path`]) fail.
    /// `u32::MAX` means every request.
    pub fn fail(&self, path: &str, failure: Failure, times: u32) {
        self.shared.state().failures.push(PathFailure {
            path: path.to_string(),
            failure,
            remaining: times,
        });
    }

    /// Turns `Range` support on (the default) or off.
    pub fn set_range_support(&self, on: bool) {
        self.shared.ranges.store(on, Ordering::SeqCst);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.state().requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.shared.state().requests.clear();
    }

    fn local(&self, path: &str) -> PathBuf {
        self.shared.tree.join(path.trim_start_matches('/'))
    }

    fn build_tree(&self) {
        let mut by_product: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (product, version) in &self.catalogue.releases {
            by_product
                .entry(product.clone())
                .or_default()
                .push(version.clone());
        }
        for (product, versions) in &by_product {
            let mut index_versions = serde_json::Map::new();
            for version in versions {
                let dir = self.local(&format!("/{product}/{version}"));
                fs::create_dir_all(&dir).expect("release directory");
                for arch in ARCHES {
                    fs::write(
                        self.local(&Self::archive_path(product, version, arch)),
                        release_zip(product, &ZipShape::standard(product, version, arch)),
                    )
                    .expect("writing release zip");
                }
                self.write_sums_and_signatures(product, version);
                let object = self.version_object(product, version);
                fs::write(
                    dir.join("index.json"),
                    serde_json::to_vec_pretty(&object).expect("json"),
                )
                .expect("writing version index");
                index_versions.insert(version.clone(), object);
            }
            let index = json!({"name": product, "versions": index_versions});
            fs::write(
                self.local(&format!("/{product}/index.json")),
                serde_json::to_vec_pretty(&index).expect("json"),
            )
            .expect("writing product index");
        }
        for version in &self.catalogue.cni {
            for arch in ARCHES {
                let local = self.local(&Self::cni_archive_path(version, arch));
                fs::create_dir_all(local.parent().expect("parent")).expect("cni directory");
                write_cni_files(&local, &cni_tarball(version, arch, false));
            }
        }
    }

    fn signature_names(&self, product: &str, version: &str) -> Vec<String> {
        let sums = format!("{product}_{version}_SHA256SUMS");
        let keyed = format!("{sums}.{}.sig", self.key_id_suffix());
        let plain = format!("{sums}.sig");
        match self.catalogue.signatures {
            SignatureFiles::Both => vec![keyed, plain],
            SignatureFiles::KeyIdOnly => vec![keyed],
            SignatureFiles::PlainOnly => vec![plain],
        }
    }

    fn version_object(&self, product: &str, version: &str) -> Value {
        let signatures = self.signature_names(product, version);
        let builds: Vec<Value> = ARCHES
            .iter()
            .map(|arch| {
                let filename = format!("{product}_{version}_linux_{arch}.zip");
                json!({
                    "name": product,
                    "version": version,
                    "os": "linux",
                    "arch": arch,
                    "filename": filename,
                    "url": format!("{}/{product}/{version}/{filename}", self.url()),
                })
            })
            .collect();
        json!({
            "name": product,
            "version": version,
            "shasums": format!("{product}_{version}_SHA256SUMS"),
            "shasums_signature": signatures.last().expect("at least one signature"),
            "shasums_signatures": signatures,
            "builds": builds,
        })
    }

    fn write_sums_and_signatures(&self, product: &str, version: &str) {
        let mut lines: Vec<String> = ARCHES
            .iter()
            .map(|arch| {
                let path = Self::archive_path(product, version, arch);
                let name = path.rsplit('/').next().expect("name").to_string();
                format!("{}  {name}\n", self.file_sha256(&path))
            })
            .collect();
        lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
        let sums = lines.concat();
        fs::write(self.local(&Self::sums_path(product, version)), &sums).expect("writing sums");
        self.write_signatures(product, version, &sign(&self.key, sums.as_bytes()));
    }

    fn write_signatures(&self, product: &str, version: &str, signature: &[u8]) {
        for name in self.signature_names(product, version) {
            fs::write(
                self.local(&format!("/{product}/{version}/{name}")),
                signature,
            )
            .expect("writing signature");
        }
    }
}

// ---- answering requests ----

fn content_type(path: &str) -> &'static str {
    if path.ends_with(".json") {
        "application/json"
    } else if path.ends_with("SHA256SUMS") || path.ends_with(".sha256") || path.ends_with(".sha512")
    {
        "text/plain; charset=utf-8"
    } else if path.ends_with(".zip") {
        "application/zip"
    } else if path.ends_with(".tgz") {
        "application/gzip"
    } else {
        "application/octet-stream"
    }
}

/// `bytes=N-` or `bytes=N-M` against a body of `len` bytes: `Ok(Some((start, end_inclusive)))`,
/// `Ok(None)` when the header is not one we understand (serve the whole file), `Err(())` when
/// the start is past the end (416).
fn parse_range(header: &str, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.strip_prefix("bytes=") else {
        return Ok(None);
    };
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let Ok(start) = start.trim().parse::<u64>() else {
        return Ok(None);
    };
    if start >= len {
        return Err(());
    }
    let end = match end.trim() {
        "" => len - 1,
        e => match e.parse::<u64>() {
            Ok(e) => e.min(len - 1),
            Err(_) => return Ok(None),
        },
    };
    if end < start {
        return Ok(None);
    }
    Ok(Some((start, end)))
}

fn take_failure(shared: &Shared, path: &str) -> Option<Failure> {
    let mut state = shared.state();
    let entry = state
        .failures
        .iter_mut()
        .find(|f| f.path == path && f.remaining > 0)?;
    if entry.remaining != u32::MAX {
        entry.remaining -= 1;
    }
    Some(entry.failure.clone())
}

fn handle(shared: &Shared, request: &RecordedRequest) -> Reply {
    let range = request.header("range");
    let record = |status: u16| {
        shared.state().requests.push(Request {
            method: request.method.clone(),
            path: request.path.clone(),
            range: range.map(str::to_string),
            status,
        });
    };
    // The server sends only the head of any answer to HEAD.
    if request.method != "GET" && request.method != "HEAD" {
        record(405);
        return Reply::text(405, "method not allowed\n");
    }
    let failure = take_failure(shared, &request.path);
    match &failure {
        Some(Failure::Status {
            code,
            retry_after_secs,
        }) => {
            record(*code);
            let reply = Reply::text(*code, format!("{code} {}\n", server::reason_phrase(*code)));
            return match retry_after_secs {
                Some(secs) => reply.header("Retry-After", secs.to_string()),
                None => reply,
            };
        }
        Some(Failure::EndlessErrorBody { code }) => {
            record(*code);
            let line = format!(
                "{code} {}: the mirror is unwell\n",
                server::reason_phrase(*code)
            );
            return Reply::text(*code, line.repeat(64)).endless();
        }
        Some(Failure::TrickleErrorBody { code, pause_ms }) => {
            record(*code);
            let line = format!(
                "{code} {}: the mirror is unwell\n",
                server::reason_phrase(*code)
            );
            return Reply::text(*code, line.repeat(2000))
                .trickle(std::time::Duration::from_millis(*pause_ms));
        }
        Some(Failure::Redirect { location }) => {
            record(302);
            return Reply::text(302, format!("Found: {location}\n"))
                .header("Location", location.clone());
        }
        _ => {}
    }
    let local = match safe_local_path(&shared.tree, &request.path) {
        Some(p) if p.is_file() => p,
        _ => {
            record(404);
            return Reply::text(404, "Not found\n");
        }
    };
    let mut body = match fs::read(&local) {
        Ok(body) => body,
        Err(_) => return Reply::no_answer(),
    };
    if failure == Some(Failure::Truncate) {
        body.truncate(body.len() / 2);
    }
    let total = body.len() as u64;
    let ranges = shared.ranges.load(Ordering::SeqCst);
    let wanted = match range.filter(|_| ranges).map(|r| parse_range(r, total)) {
        Some(Ok(wanted)) => wanted,
        Some(Err(())) => {
            record(416);
            return Reply::text(416, "").header("Content-Range", format!("bytes */{total}"));
        }
        None => None,
    };
    let (status, slice) = match wanted {
        Some((start, end)) => (206, &body[start as usize..=end as usize]),
        None => (200, &body[..]),
    };
    record(status);
    let mut reply = Reply::new(status).header("Content-Type", content_type(&request.path));
    if ranges {
        reply = reply.header("Accept-Ranges", "bytes");
    }
    if let Some((start, end)) = wanted {
        reply = reply.header("Content-Range", format!("bytes {start}-{end}/{total}"));
    }
    let reply = reply.body(slice);
    match failure {
        Some(Failure::DropMidBody) => reply.cut_after(slice.len() / 2),
        Some(Failure::Trickle { pause_ms }) => {
            reply.trickle(std::time::Duration::from_millis(pause_ms))
        }
        _ => reply,
    }
}

fn safe_local_path(tree: &Path, path: &str) -> Option<PathBuf> {
    let relative = path.strip_prefix('/')?;
    if relative.split('/').any(|c| c == ".." || c == ".") || relative.contains('\\') {
        return None;
    }
    Some(tree.join(relative))
}

#[cfg(test)]
mod tests;
