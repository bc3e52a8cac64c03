//! Streaming SHA-256. `sha2` picks the SHA-NI instructions at run time where the CPU has them.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Lower-case hex of a digest, as SHA256SUMS files and ARM write it.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// SHA-256 of a byte slice, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 of everything a reader yields, as lower-case hex; reads in 256 KiB blocks.
pub fn sha256_reader(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// SHA-256 of a file, as lower-case hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    sha256_reader(File::open(path)?)
}

/// A writer that hashes every byte it passes on, so a download is hashed in the same pass
/// that writes it to disk.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Starts from bytes already on disk (a resumed download): they are hashed first.
    pub fn resume(inner: W, mut existing: impl Read) -> io::Result<Self> {
        let mut this = Self::new(inner);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = existing.read(&mut buf)?;
            if n == 0 {
                break;
            }
            this.hasher.update(&buf[..n]);
            this.written += n as u64;
        }
        Ok(this)
    }

    /// Bytes seen so far (resumed bytes included).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The inner writer and the hex digest of everything written.
    pub fn finish(self) -> (W, String) {
        (self.inner, hex(&self.hasher.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // FIPS 180-2 test vector.
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn known_vector() {
        assert_eq!(sha256_hex(b"abc"), ABC);
        assert_eq!(sha256_reader(&b"abc"[..]).unwrap(), ABC);
    }

    #[test]
    fn hashing_writer_matches_and_passes_bytes_on() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        assert_eq!(w.written(), 3);
        let (inner, digest) = w.finish();
        assert_eq!(inner, b"abc");
        assert_eq!(digest, ABC);
    }

    #[test]
    fn resumed_writer_hashes_existing_bytes_first() {
        let mut w = HashingWriter::resume(Vec::new(), &b"ab"[..]).unwrap();
        w.write_all(b"c").unwrap();
        assert_eq!(w.written(), 3);
        let (inner, digest) = w.finish();
        assert_eq!(inner, b"c");
        assert_eq!(digest, ABC);
    }

    #[test]
    fn file_hash() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), ABC);
    }
}
