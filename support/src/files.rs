//! Atomic writes for every file a tool owns.
//!
//! A file is written to a temporary file in the same directory (so the final rename never crosses
//! a filesystem), given its mode and owner while it is still private, fsynced, renamed over the
//! target, and the directory is fsynced so the rename itself survives a crash. A reader sees the
//! old content or the new content, never a mix, and a failed write leaves the old file intact.
//!
//! [`disk_full`] turns `ENOSPC`/`EDQUOT` into a sentence naming the full filesystem, so a tool
//! reports a full disk as such rather than as a failure of whatever it was doing.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid};

/// Who owns a file. `None` keeps what the process creates by default (its own uid/gid).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ownership {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Ownership {
    pub fn new(uid: u32, gid: u32) -> Self {
        Self {
            uid: Some(uid),
            gid: Some(gid),
        }
    }
}

/// Mode and ownership of a file we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpec {
    /// Permission bits, e.g. `0o640`.
    pub mode: u32,
    pub owner: Ownership,
}

impl FileSpec {
    pub fn mode(mode: u32) -> Self {
        Self {
            mode,
            owner: Ownership::default(),
        }
    }

    pub fn owned(mode: u32, owner: Ownership) -> Self {
        Self { mode, owner }
    }
}

/// A write that failed; it names the final path and what step failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to write {path}: {step}: {source}")]
pub struct WriteError {
    pub path: PathBuf,
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

fn step<'a>(path: &'a Path, step: &'static str) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError {
        path: path.to_path_buf(),
        step,
        source,
    }
}

/// Writes `contents` to `path` atomically with the given mode and owner.
///
/// The parent directory must exist. The temporary file is created 0600, so a secret is never
/// readable by others even for a moment; mode and owner are applied before the rename.
pub fn write_atomic(path: &Path, contents: &[u8], spec: FileSpec) -> Result<(), WriteError> {
    let dir = parent_dir(path);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(step(path, "creating a temporary file"))?;
    temp.write_all(contents)
        .map_err(step(path, "writing the temporary file"))?;
    apply_spec(temp.as_file(), spec).map_err(step(path, "setting mode and owner"))?;
    temp.as_file()
        .sync_all()
        .map_err(step(path, "syncing the temporary file"))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .map_err(step(path, "renaming into place"))?;
    sync_dir(dir).map_err(step(path, "syncing the directory"))?;
    Ok(())
}

/// Applies a mode and ownership to an open file.
pub fn apply_spec(file: &File, spec: FileSpec) -> io::Result<()> {
    if spec.owner.uid.is_some() || spec.owner.gid.is_some() {
        nix::unistd::fchown(
            file,
            spec.owner.uid.map(Uid::from_raw),
            spec.owner.gid.map(Gid::from_raw),
        )
        .map_err(io::Error::from)?;
    }
    // chown can clear set-id bits, so the mode goes last.
    file.set_permissions(fs::Permissions::from_mode(spec.mode))
}

/// fsyncs a directory so that renames and creations inside it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory a path lives in; `.` for a bare file name.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Joins an absolute path onto a filesystem root: `under_root("/mnt/img", "/opt/nomad")` is
/// `/mnt/img/opt/nomad`. Every tool that takes `--root` maps its production paths through this.
pub fn under_root(root: &Path, absolute: &Path) -> PathBuf {
    let relative = absolute.strip_prefix("/").unwrap_or(absolute);
    root.join(relative)
}

/// When `error` says the filesystem is full (`ENOSPC`, or `EDQUOT`: a quota), a sentence that
/// says so and names the filesystem (its mount point) and the space left, so a tool reports the
/// real cause instead of whatever it was doing: "the filesystem mounted at /mnt/image is full
/// (no space left on device; it holds 2.0 MiB in all) while writing /mnt/image/opt/nomad/x".
/// `None` for any other error.
pub fn disk_full(path: &Path, error: &io::Error) -> Option<String> {
    let errno = error.raw_os_error()?;
    let what = if errno == nix::errno::Errno::ENOSPC as i32 {
        "no space left on device"
    } else if errno == nix::errno::Errno::EDQUOT as i32 {
        "disk quota exceeded"
    } else {
        return None;
    };
    let existing = path.ancestors().find(|p| p.exists()).unwrap_or(path);
    let mount = mount_point(existing);
    // Its size, not what is free now: the writer has usually removed its partial file by the
    // time this is asked, so "free" would read as if there had been room.
    let space = nix::sys::statvfs::statvfs(existing)
        .map(|fs| {
            let size = fs.blocks().saturating_mul(fs.fragment_size());
            format!("; it holds {} in all", human_size(size))
        })
        .unwrap_or_default();
    Some(format!(
        "the filesystem mounted at {} is full ({what}{space}) while writing {}",
        mount.display(),
        path.display()
    ))
}

/// The mount point of the filesystem holding `path`: its highest ancestor on the same device.
pub fn mount_point(path: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(device) = fs::metadata(&path).map(|m| m.dev()) else {
        return path;
    };
    let mut mount = path.clone();
    for ancestor in path.ancestors().skip(1) {
        match fs::metadata(ancestor) {
            Ok(meta) if meta.dev() == device => mount = ancestor.to_path_buf(),
            _ => break,
        }
    }
    mount
}

/// `1.5 MiB`-style sizes for messages.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn writes_content_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("default.hcl");
        write_atomic(&path, b"a = 1\n", FileSpec::mode(0o640)).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"a = 1\n");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o640);
    }

    #[test]
    fn replaces_existing_file_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unit");
        fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", FileSpec::mode(0o644)).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("unit")]);
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/x.conf");
        let err = write_atomic(&path, b"x", FileSpec::mode(0o600)).unwrap_err();
        assert!(err.to_string().contains("missing/x.conf"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn ownership_is_applied_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owned");
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        write_atomic(
            &path,
            b"x",
            FileSpec::owned(0o600, Ownership::new(uid, gid)),
        )
        .unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (uid, gid));
    }

    #[test]
    fn a_full_disk_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/nomad");
        let full = io::Error::from_raw_os_error(nix::errno::Errno::ENOSPC as i32);
        let text = disk_full(&path, &full).unwrap();
        let mount = mount_point(dir.path());
        assert!(
            text.starts_with(&format!(
                "the filesystem mounted at {} is full (no space left on device; it holds ",
                mount.display()
            )),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("while writing {}", path.display())),
            "{text}"
        );
        let quota = io::Error::from_raw_os_error(nix::errno::Errno::EDQUOT as i32);
        assert!(disk_full(&path, &quota)
            .unwrap()
            .contains("disk quota exceeded"));
        let other = io::Error::from_raw_os_error(nix::errno::Errno::EACCES as i32);
        assert_eq!(disk_full(&path, &other), None);
        assert_eq!(disk_full(&path, &io::Error::other("x")), None);
        assert_eq!(mount_point(Path::new("/")), PathBuf::from("/"));
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(200 * 1024 * 1024), "200.0 MiB");
    }

    #[test]
    fn under_root_maps_absolute_paths() {
        assert_eq!(
            under_root(Path::new("/mnt/img"), Path::new("/opt/nomad/bin")),
            PathBuf::from("/mnt/img/opt/nomad/bin")
        );
        assert_eq!(
            under_root(Path::new("/"), Path::new("/etc/x")),
            PathBuf::from("/etc/x")
        );
    }
}
