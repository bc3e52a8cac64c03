//! Extraction of verified archives, refusing anything that could write outside the staging
//! directory or plant a link: absolute paths, `..`, symlinks, hard links and device entries.
//!
//! A whole archive is refused if any entry is unsafe, even one we would not extract: a release
//! that carries such an entry is not what the publisher builds, so it is not installed.
//!
//! - HashiCorp zips: the binary is extracted by name (recent zips also carry `LICENSE.txt`).
//! - CNI tarballs (`.tgz`): every regular file at the top level (`./bridge`, `./LICENSE`...).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::files::{apply_spec, FileSpec};

/// Why an archive was refused or could not be extracted; each names the archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read archive {archive}: {reason}")]
    Corrupt { archive: PathBuf, reason: String },
    #[error("archive {archive} has an unsafe entry {entry:?}: {reason}")]
    Unsafe {
        archive: PathBuf,
        entry: String,
        reason: &'static str,
    },
    #[error("archive {archive} has no file {entry:?}")]
    Missing { archive: PathBuf, entry: String },
    #[error("archive {archive} has {count} entries named {entry:?}")]
    Duplicate {
        archive: PathBuf,
        entry: String,
        count: usize,
    },
    #[error("cannot write {path} from archive {archive}: {source}")]
    Write {
        archive: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A file written from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The entry's file name (no directories).
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// Whether the archive marked it executable.
    pub executable: bool,
    /// Where the time went.
    pub timings: Timings,
}

/// Where the time of one extraction went: the inflating thread (inflating, and waiting for a
/// free block when the writer is behind), the writing thread (writing, hashing), the flushing
/// thread, and the final fsync. `-v` logs it; the benchmark prints it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timings {
    pub total: Duration,
    pub inflating: Duration,
    pub waiting_for_writer: Duration,
    pub writing: Duration,
    pub hashing: Duration,
    pub background_syncs: Duration,
    pub final_sync: Duration,
}

impl std::fmt::Display for Timings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = |d: Duration| format!("{:.2}s", d.as_secs_f64());
        write!(
            f,
            "{} in all: inflating {} (plus {} waiting for the writer); writing {}, hashing {} and fdatasync {} on other threads; final fsync {}",
            s(self.total),
            s(self.inflating),
            s(self.waiting_for_writer),
            s(self.writing),
            s(self.hashing),
            s(self.background_syncs),
            s(self.final_sync)
        )
    }
}

/// Why an entry name is unsafe, if it is: empty, absolute, `..`, NUL or backslash (a Windows
/// separator that Linux would take as part of a name, hiding a `..`).
pub fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty name");
    }
    if name.contains('\0') {
        return Some("NUL in the name");
    }
    if name.contains('\\') {
        return Some("backslash in the name");
    }
    let path = Path::new(name);
    if path.is_absolute() {
        return Some("absolute path");
    }
    for component in path.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Some("`..` in the path"),
            Component::RootDir | Component::Prefix(_) => return Some("absolute path"),
        }
    }
    None
}

/// Extracts the regular file `entry` of a zip into `dest` (created, must not exist) with
/// `spec`'s mode and owner, and fsyncs it.
pub fn extract_zip_file(
    archive: &Path,
    entry: &str,
    dest: &Path,
    spec: FileSpec,
) -> Result<Extracted, ArchiveError> {
    let corrupt = |reason: String| ArchiveError::Corrupt {
        archive: archive.to_path_buf(),
        reason,
    };
    let file = File::open(archive).map_err(|e| corrupt(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| corrupt(e.to_string()))?;
    // The zip crate indexes entries by name and keeps the last of a repeated name, so a second
    // `nomad` would silently replace the first. Two entries of one name are refused, whichever
    // name it is.
    if zip.has_duplicate_names() {
        let start = zip.central_directory_start();
        let (entry, count) = File::open(archive)
            .and_then(|file| repeated_central_name(&mut io::BufReader::new(file), start))
            .map_err(|e| corrupt(format!("reading its central directory: {e}")))?
            .unwrap_or_else(|| ("(unknown)".to_string(), 2));
        return Err(ArchiveError::Duplicate {
            archive: archive.to_path_buf(),
            entry,
            count,
        });
    }
    let mut found = Vec::new();
    for index in 0..zip.len() {
        let item = zip
            .by_index_raw(index)
            .map_err(|e| corrupt(e.to_string()))?;
        let name = String::from_utf8_lossy(item.name_raw()).into_owned();
        let refuse = |reason| ArchiveError::Unsafe {
            archive: archive.to_path_buf(),
            entry: name.clone(),
            reason,
        };
        if let Some(reason) = unsafe_name(&name) {
            return Err(refuse(reason));
        }
        if item.is_symlink() {
            return Err(refuse("symbolic link"));
        }
        let kind = item.unix_mode().map(|m| m & 0o170000);
        if kind.is_some_and(|k| k != 0 && k != 0o100000 && k != 0o040000) {
            return Err(refuse("not a regular file or directory"));
        }
        if name == entry {
            found.push(index);
        }
    }
    let index = match found.as_slice() {
        [one] => *one,
        [] => {
            return Err(ArchiveError::Missing {
                archive: archive.to_path_buf(),
                entry: entry.to_string(),
            })
        }
        more => {
            return Err(ArchiveError::Duplicate {
                archive: archive.to_path_buf(),
                entry: entry.to_string(),
                count: more.len(),
            })
        }
    };
    let mut item = zip.by_index(index).map_err(|e| corrupt(e.to_string()))?;
    if !item.is_file() {
        return Err(ArchiveError::Unsafe {
            archive: archive.to_path_buf(),
            entry: entry.to_string(),
            reason: "not a regular file",
        });
    }
    let executable = item.unix_mode().is_some_and(|m| m & 0o111 != 0);
    // The zip reader checks the entry's CRC-32 when it reaches the end, so a read error here
    // can be a corrupt entry as well as an I/O failure.
    let (sha256, size, timings) = write_new_file(&mut item, dest, spec).map_err(|e| match e {
        CopyError::Read(e) => corrupt(format!("{entry}: {e}")),
        CopyError::Write(source) => ArchiveError::Write {
            archive: archive.to_path_buf(),
            path: dest.to_path_buf(),
            source,
        },
    })?;
    Ok(Extracted {
        name: entry.to_string(),
        path: dest.to_path_buf(),
        sha256,
        size,
        executable,
        timings,
    })
}

/// Central directory file header signature (APPNOTE.TXT 4.3.12, "central file header
/// signature 0x02014b50") and the offsets of its name fields.
const CENTRAL_HEADER_SIGNATURE: u32 = 0x0201_4b50;
const CENTRAL_HEADER_LEN: usize = 46;

/// The first name that appears more than once in the central directory starting at `start`, and
/// how many times: the zip crate says *that* names repeat, not which. Walks the fixed 46-byte
/// headers (name length at offset 28, extra field length at 30, comment length at 32,
/// APPNOTE.TXT 4.3.12) until the signature stops.
fn repeated_central_name(
    reader: &mut (impl Read + io::Seek),
    start: u64,
) -> io::Result<Option<(String, usize)>> {
    reader.seek(io::SeekFrom::Start(start))?;
    let mut counts: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
    let mut order = Vec::new();
    loop {
        let mut header = [0u8; CENTRAL_HEADER_LEN];
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let field = |at: usize| u16::from_le_bytes([header[at], header[at + 1]]) as usize;
        if u32::from_le_bytes([header[0], header[1], header[2], header[3]])
            != CENTRAL_HEADER_SIGNATURE
        {
            break;
        }
        let mut name = vec![0u8; field(28)];
        reader.read_exact(&mut name)?;
        reader.seek(io::SeekFrom::Current((field(30) + field(32)) as i64))?;
        let count = counts.entry(name.clone()).or_insert(0);
        *count += 1;
        if *count == 2 {
            order.push(name);
        }
    }
    Ok(order
        .first()
        .map(|name| (String::from_utf8_lossy(name).into_owned(), counts[name])))
}

/// Extracts every regular file of a gzip-compressed tarball into `dest_dir` (which must exist
/// and be empty of those names). Entries must sit at the top level (`./bridge` or `bridge`);
/// the only directory allowed is the top one (`./`). `spec` gives each file's mode and owner
/// from whether the archive marked it executable.
pub fn extract_tgz_files(
    archive: &Path,
    dest_dir: &Path,
    spec: impl Fn(bool) -> FileSpec,
) -> Result<Vec<Extracted>, ArchiveError> {
    let corrupt = |reason: String| ArchiveError::Corrupt {
        archive: archive.to_path_buf(),
        reason,
    };
    let file = File::open(archive).map_err(|e| corrupt(e.to_string()))?;
    let gz = flate2::read::GzDecoder::new(io::BufReader::with_capacity(1 << 20, file));
    let mut tar = tar::Archive::new(gz);
    let mut seen = HashSet::new();
    let mut extracted = Vec::new();
    for item in tar.entries().map_err(|e| corrupt(e.to_string()))? {
        let mut item = item.map_err(|e| corrupt(e.to_string()))?;
        let name = String::from_utf8_lossy(&item.path_bytes()).into_owned();
        let refuse = |reason| ArchiveError::Unsafe {
            archive: archive.to_path_buf(),
            entry: name.clone(),
            reason,
        };
        if let Some(reason) = unsafe_name(&name) {
            return Err(refuse(reason));
        }
        let parts: Vec<&str> = name
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let kind = item.header().entry_type();
        if kind.is_dir() {
            if parts.is_empty() {
                continue;
            }
            return Err(refuse("a subdirectory (only top-level files are expected)"));
        }
        if kind.is_symlink() {
            return Err(refuse("symbolic link"));
        }
        if kind.is_hard_link() {
            return Err(refuse("hard link"));
        }
        if !kind.is_file() {
            return Err(refuse("not a regular file"));
        }
        let [file_name] = parts.as_slice() else {
            return Err(refuse(
                "a file below a subdirectory (only top-level files are expected)",
            ));
        };
        let file_name = file_name.to_string();
        if !seen.insert(file_name.clone()) {
            return Err(ArchiveError::Duplicate {
                archive: archive.to_path_buf(),
                entry: file_name,
                count: 2,
            });
        }
        let executable = item.header().mode().is_ok_and(|m| m & 0o111 != 0);
        let dest = dest_dir.join(&file_name);
        let (sha256, size, timings) =
            write_new_file(&mut item, &dest, spec(executable)).map_err(|e| match e {
                CopyError::Read(e) => corrupt(format!("{file_name}: {e}")),
                CopyError::Write(source) => ArchiveError::Write {
                    archive: archive.to_path_buf(),
                    path: dest.clone(),
                    source,
                },
            })?;
        extracted.push(Extracted {
            name: file_name,
            path: dest,
            sha256,
            size,
            executable,
            timings,
        });
    }
    Ok(extracted)
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Writes a reader into a new file (0600 while being written, then `spec`), hashing it, and
/// fsyncs it. A partial file is removed on failure.
fn write_new_file(
    reader: &mut dyn Read,
    dest: &Path,
    spec: FileSpec,
) -> Result<(String, u64, Timings), CopyError> {
    let started = Instant::now();
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(CopyError::Write)?;
    let result = copy_hashing(reader, &mut file).and_then(|(sha256, size, mut timings)| {
        apply_spec(&file, spec).map_err(CopyError::Write)?;
        let syncing = Instant::now();
        file.sync_all().map_err(CopyError::Write)?;
        timings.final_sync = syncing.elapsed();
        timings.total = started.elapsed();
        Ok((sha256, size, timings))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}

/// Bytes written between two background `fdatasync` calls while extracting.
const FLUSH_EVERY: u64 = 32 << 20;
/// Size and number of the blocks passed from the inflating thread to the writing one: 8 MiB in
/// flight absorbs the writer's stalls (a `write` waiting on writeback) without stopping the
/// inflater.
const BLOCK: usize = 1 << 20;
const BLOCKS: usize = 8;

/// Copies `reader` (usually an inflating zip entry) into `file` and hashes it, using both
/// cores: this thread inflates into 1 MiB blocks, each filled completely (a zip entry's reader
/// returns ~20 KiB a call; passing those on one by one meant 24,000 hand-overs, writes and
/// wake-ups for a 577 MB binary instead of 551), a second thread writes and hashes them, and a
/// third runs `fdatasync` every [`FLUSH_EVERY`] bytes so the disk writes the file while it is
/// still being inflated and the caller's final fsync has little left to wait for (a flush
/// request is dropped while the previous one runs). Memory stays at [`BLOCKS`] blocks whatever
/// the file's size. The README's benchmark section has the numbers.
fn copy_hashing(
    reader: &mut dyn Read,
    file: &mut File,
) -> Result<(String, u64, Timings), CopyError> {
    let flusher_file = file.try_clone().map_err(CopyError::Write)?;
    let (flush, flush_requests) = std::sync::mpsc::sync_channel::<()>(1);
    let (full, full_blocks) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(BLOCKS);
    let (empty, empty_blocks) = std::sync::mpsc::sync_channel::<Vec<u8>>(BLOCKS);
    for _ in 0..BLOCKS {
        empty.send(vec![0u8; BLOCK]).expect("the receiver is alive");
    }
    std::thread::scope(|scope| {
        let flusher = scope.spawn(move || {
            let mut syncing = Duration::ZERO;
            while flush_requests.recv().is_ok() {
                // A failure here shows again in the caller's final sync_all.
                let started = Instant::now();
                let _ = flusher_file.sync_data();
                syncing += started.elapsed();
            }
            syncing
        });
        let writer = scope.spawn(move || -> io::Result<(String, u64, Timings)> {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            let mut flushed_at = 0u64;
            let mut timings = Timings::default();
            for (block, len) in full_blocks {
                let started = Instant::now();
                file.write_all(&block[..len])?;
                let written = Instant::now();
                hasher.update(&block[..len]);
                timings.writing += written - started;
                timings.hashing += written.elapsed();
                size += len as u64;
                if size - flushed_at >= FLUSH_EVERY {
                    flushed_at = size;
                    let _ = flush.try_send(());
                }
                // The reader may have stopped; then the block is simply dropped.
                let _ = empty.send(block);
            }
            Ok((support::hash::hex(&hasher.finalize()), size, timings))
        });
        let (mut inflating, mut waiting) = (Duration::ZERO, Duration::ZERO);
        let read_result = loop {
            // No block back means the writer stopped on an error, reported below.
            let started = Instant::now();
            let Ok(mut block) = empty_blocks.recv() else {
                break Ok(());
            };
            let got_block = Instant::now();
            waiting += got_block - started;
            let read = read_full(reader, &mut block);
            inflating += got_block.elapsed();
            let len = match read {
                Ok(0) => break Ok(()),
                Ok(len) => len,
                Err(e) => break Err(e),
            };
            if full.send((block, len)).is_err() {
                break Ok(());
            }
        };
        drop(full);
        let written = writer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let syncing = flusher
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (read_result, written) {
            (Err(e), _) => Err(CopyError::Read(e)),
            (Ok(()), Err(e)) => Err(CopyError::Write(e)),
            (Ok(()), Ok((sha256, size, timings))) => Ok((
                sha256,
                size,
                Timings {
                    inflating,
                    waiting_for_writer: waiting,
                    background_syncs: syncing,
                    ..timings
                },
            )),
        }
    })
}

/// Fills `buffer` from as many reads as it takes; short only at the end of the data.
fn read_full(reader: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match read_some(reader, &mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// One successful read, retrying on EINTR.
fn read_some(reader: &mut dyn Read, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use zip::write::SimpleFileOptions;

    fn zip_with(entries: &[(&str, &[u8])], symlink: Option<(&str, &str)>) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, data) in entries {
            zip.start_file(*name, SimpleFileOptions::default().unix_permissions(0o755))
                .unwrap();
            zip.write_all(data).unwrap();
        }
        if let Some((name, target)) = symlink {
            zip.add_symlink(name, target, SimpleFileOptions::default())
                .unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn names() {
        assert_eq!(unsafe_name("nomad"), None);
        assert_eq!(unsafe_name("./bridge"), None);
        assert_eq!(unsafe_name("docs/LICENSE.txt"), None);
        assert_eq!(unsafe_name("../x"), Some("`..` in the path"));
        assert_eq!(unsafe_name("a/../../x"), Some("`..` in the path"));
        assert_eq!(unsafe_name("/etc/passwd"), Some("absolute path"));
        assert_eq!(unsafe_name("..\\x"), Some("backslash in the name"));
        assert_eq!(unsafe_name(""), Some("empty name"));
    }

    #[test]
    fn extracts_the_binary_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let archive = write(
            dir.path(),
            "r.zip",
            &zip_with(
                &[("LICENSE.txt", b"license"), ("nomad", b"#!/bin/sh\n")],
                None,
            ),
        );
        let dest = dir.path().join("nomad");
        let got = extract_zip_file(&archive, "nomad", &dest, FileSpec::mode(0o755)).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"#!/bin/sh\n");
        assert_eq!(got.size, 10);
        assert_eq!(got.sha256, support::hash::sha256_hex(b"#!/bin/sh\n"));
        assert!(got.executable);
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o755);
    }

    #[test]
    fn refuses_unsafe_zips_whole() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                zip_with(&[("nomad", b"x"), ("../escaped.txt", b"x")], None),
                "../escaped.txt",
            ),
            (
                zip_with(&[("nomad", b"x"), ("/tmp/escaped.txt", b"x")], None),
                "/tmp/escaped.txt",
            ),
            (zip_with(&[], Some(("nomad", "/bin/sh"))), "nomad"),
            (
                zip_with(&[("nomad", b"x")], Some(("link", "/etc/passwd"))),
                "link",
            ),
        ];
        for (i, (bytes, entry)) in cases.into_iter().enumerate() {
            let archive = write(dir.path(), &format!("bad{i}.zip"), &bytes);
            let dest = dir.path().join(format!("out{i}"));
            let err =
                extract_zip_file(&archive, "nomad", &dest, FileSpec::mode(0o755)).unwrap_err();
            match &err {
                ArchiveError::Unsafe { entry: e, .. } => assert_eq!(e, entry),
                other => panic!("case {i}: {other}"),
            }
            assert!(err.to_string().contains(&format!("bad{i}.zip")), "{err}");
            assert!(!dest.exists());
        }
    }

    /// A zip whose entries `from` are renamed `to` afterwards (same length): `ZipWriter` refuses
    /// to write a repeated name itself.
    fn renamed(mut bytes: Vec<u8>, renames: &[(&str, &str)]) -> Vec<u8> {
        for (from, to) in renames {
            let mut at = 0;
            while let Some(i) = bytes[at..]
                .windows(from.len())
                .position(|w| w == from.as_bytes())
            {
                bytes[at + i..at + i + to.len()].copy_from_slice(to.as_bytes());
                at += i + to.len();
            }
        }
        bytes
    }

    #[test]
    fn refuses_zips_with_a_repeated_name() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            // The binary twice: the zip crate would keep the second.
            (
                renamed(
                    zip_with(&[("nomad", b"genuine"), ("NOMAD", b"foreign")], None),
                    &[("NOMAD", "nomad")],
                ),
                "nomad",
                2,
            ),
            // Another name three times is refused as well.
            (
                renamed(
                    zip_with(
                        &[
                            ("nomad", b"x"),
                            ("LICENSE.txt", b"a"),
                            ("LICENSE.tx1", b"b"),
                            ("LICENSE.tx2", b"c"),
                        ],
                        None,
                    ),
                    &[
                        ("LICENSE.tx1", "LICENSE.txt"),
                        ("LICENSE.tx2", "LICENSE.txt"),
                    ],
                ),
                "LICENSE.txt",
                3,
            ),
        ];
        for (i, (bytes, name, times)) in cases.into_iter().enumerate() {
            let archive = write(dir.path(), &format!("dup{i}.zip"), &bytes);
            let dest = dir.path().join(format!("out{i}"));
            let err =
                extract_zip_file(&archive, "nomad", &dest, FileSpec::mode(0o755)).unwrap_err();
            match &err {
                ArchiveError::Duplicate { entry, count, .. } => {
                    assert_eq!((entry.as_str(), *count), (name, times), "case {i}")
                }
                other => panic!("case {i}: {other}"),
            }
            assert!(
                err.to_string()
                    .contains(&format!("dup{i}.zip has {times} entries named {name:?}")),
                "{err}"
            );
            assert!(!dest.exists());
        }
    }

    #[test]
    fn refuses_tarballs_with_a_repeated_name() {
        let dir = tempfile::tempdir().unwrap();
        let archive = write(
            dir.path(),
            "cni.tgz",
            &tgz(&[
                ("./plugin-a", tar::EntryType::Regular, b"first", None),
                ("plugin-a", tar::EntryType::Regular, b"second", None),
            ]),
        );
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let err = extract_tgz_files(&archive, &out, |_| FileSpec::mode(0o755)).unwrap_err();
        assert!(
            err.to_string()
                .contains("cni.tgz has 2 entries named \"plugin-a\""),
            "{err}"
        );
    }

    #[test]
    fn missing_and_corrupt_zips() {
        let dir = tempfile::tempdir().unwrap();
        let archive = write(
            dir.path(),
            "r.zip",
            &zip_with(&[("LICENSE.txt", b"x")], None),
        );
        let err = extract_zip_file(
            &archive,
            "nomad",
            &dir.path().join("n"),
            FileSpec::mode(0o755),
        )
        .unwrap_err();
        assert!(matches!(err, ArchiveError::Missing { .. }), "{err}");
        let junk = write(dir.path(), "junk.zip", b"this is not a zip");
        let err = extract_zip_file(&junk, "nomad", &dir.path().join("n"), FileSpec::mode(0o755))
            .unwrap_err();
        assert!(matches!(err, ArchiveError::Corrupt { .. }), "{err}");
    }

    fn tgz(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, kind, data, link) in entries {
            let mut header = tar::Header::new_gnu();
            let raw = name.as_bytes();
            header.as_old_mut().name[..raw.len()].copy_from_slice(raw);
            header.set_entry_type(*kind);
            header.set_mode(
                if *kind == tar::EntryType::Regular && name.contains("plugin") {
                    0o755
                } else {
                    0o644
                },
            );
            header.set_size(data.len() as u64);
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn extracts_top_level_files_of_a_tarball() {
        let dir = tempfile::tempdir().unwrap();
        let archive = write(
            dir.path(),
            "cni.tgz",
            &tgz(&[
                ("./", tar::EntryType::Directory, b"", None),
                ("./plugin-a", tar::EntryType::Regular, b"aaa", None),
                ("./LICENSE", tar::EntryType::Regular, b"l", None),
            ]),
        );
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let files = extract_tgz_files(&archive, &out, |exec| {
            FileSpec::mode(if exec { 0o755 } else { 0o644 })
        })
        .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["plugin-a", "LICENSE"]);
        assert!(files[0].executable && !files[1].executable);
        assert_eq!(std::fs::read(out.join("plugin-a")).unwrap(), b"aaa");
        let mode = std::fs::metadata(out.join("LICENSE"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn refuses_unsafe_tarballs() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            tgz(&[("../plugin", tar::EntryType::Regular, b"x", None)]),
            tgz(&[("/plugin", tar::EntryType::Regular, b"x", None)]),
            tgz(&[("./bridge", tar::EntryType::Symlink, b"", Some("/bin/sh"))]),
            tgz(&[("./bridge", tar::EntryType::Link, b"", Some("./other"))]),
            tgz(&[("./dev", tar::EntryType::Char, b"", None)]),
            tgz(&[("./sub/plugin", tar::EntryType::Regular, b"x", None)]),
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let archive = write(dir.path(), &format!("bad{i}.tgz"), bytes);
            let out = dir.path().join(format!("out{i}"));
            std::fs::create_dir(&out).unwrap();
            let err = extract_tgz_files(&archive, &out, |_| FileSpec::mode(0o644)).unwrap_err();
            assert!(
                matches!(err, ArchiveError::Unsafe { .. }),
                "case {i}: {err}"
            );
            assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "case {i}");
        }
    }
}
