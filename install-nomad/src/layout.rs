//! Where every file goes. Paths are written as they are seen inside the target system
//! (`/opt/nomad/bin/nomad`) and mapped under `--root` for I/O, so a symlink made in an image
//! root points at `/opt/nomad/bin/nomad`, not at the build machine's path to the image.

use std::path::{Path, PathBuf};

use support::files::under_root;

use crate::release::Product;

/// The receipt's file name, in `<path>`.
pub const RECEIPT_NAME: &str = ".install-nomad.json";

/// A directory Nomad writes to, owned by the Nomad user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataDir {
    pub name: &'static str,
    pub mode: u32,
}

/// `config/` (agent configuration; run-nomad writes it, it may hold the gossip key), `data/`
/// (Raft and client state, 0700 as the issue asks), `log/`, `tls/` (certificates and keys).
pub const DATA_DIRS: [DataDir; 4] = [
    DataDir {
        name: "config",
        mode: 0o750,
    },
    DataDir {
        name: "data",
        mode: 0o700,
    },
    DataDir {
        name: "log",
        mode: 0o750,
    },
    DataDir {
        name: "tls",
        mode: 0o750,
    },
];

/// The install's paths, inside the target system, plus the root they live under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `--root`: `/` on a live host, the image directory in a build or a test.
    pub root: PathBuf,
    /// `--path`, e.g. `/opt/nomad`.
    pub nomad_path: PathBuf,
    /// `--system-bin-dir`, e.g. `/usr/local/bin`.
    pub system_bin_dir: PathBuf,
    /// `--consul-path`, e.g. `/opt/consul`.
    pub consul_path: PathBuf,
    /// `--cni-path`, e.g. `/opt/cni/bin`.
    pub cni_path: PathBuf,
}

impl Layout {
    /// The host path of a path inside the target system.
    pub fn host(&self, inside: &Path) -> PathBuf {
        under_root(&self.root, inside)
    }

    /// The install directory of a product (`--path` or `--consul-path`), inside the target.
    pub fn product_path(&self, product: Product) -> &Path {
        if product == crate::release::CONSUL {
            &self.consul_path
        } else {
            &self.nomad_path
        }
    }

    /// `<product path>/bin`, inside the target.
    pub fn bin_dir(&self, product: Product) -> PathBuf {
        self.product_path(product).join("bin")
    }

    /// `<product path>/bin/<product>`, inside the target: what the system symlink points at.
    pub fn binary(&self, product: Product) -> PathBuf {
        self.bin_dir(product).join(product.name)
    }

    /// `<system-bin-dir>/<product>`, inside the target.
    pub fn system_link(&self, product: Product) -> PathBuf {
        self.system_bin_dir.join(product.name)
    }

    /// `<path>/bin/run-nomad`, inside the target.
    pub fn run_nomad(&self) -> PathBuf {
        self.nomad_path.join("bin").join("run-nomad")
    }

    /// `<path>/<name>` for each of [`DATA_DIRS`], inside the target.
    pub fn data_dirs(&self) -> Vec<(PathBuf, DataDir)> {
        DATA_DIRS
            .iter()
            .map(|d| (self.nomad_path.join(d.name), *d))
            .collect()
    }

    /// What this tool installed last time (host path): `<path>/.install-nomad.json`.
    pub fn receipt(&self) -> PathBuf {
        self.host(&self.nomad_path.join(RECEIPT_NAME))
    }

    /// A host path under the root as the target system sees it (`/mnt/img/opt/nomad` is
    /// `/opt/nomad`); a path outside the root is returned as it is.
    pub fn inside(&self, host: &Path) -> PathBuf {
        match host.strip_prefix(&self.root) {
            Ok(relative) => Path::new("/").join(relative),
            Err(_) => host.to_path_buf(),
        }
    }

    /// The directory a staging directory for files bound for `final_dir` is made in: the
    /// parent of `final_dir`, so the last rename never crosses a filesystem (`/opt/nomad` for
    /// `/opt/nomad/bin`, `/opt/cni` for `/opt/cni/bin`). Host path.
    pub fn staging_parent(&self, final_dir: &Path) -> PathBuf {
        let parent = final_dir.parent().unwrap_or(Path::new("/"));
        self.host(parent)
    }

    /// `/etc/passwd` under the root (host path).
    pub fn etc(&self, name: &str) -> PathBuf {
        self.host(&Path::new("/etc").join(name))
    }
}

/// Checks that a path flag names an absolute, normal path (no `..`), as seen inside the target.
pub fn check_absolute(flag: &str, path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!(
            "{flag} {} must be an absolute path",
            path.display()
        ));
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("{flag} {} must not contain `..`", path.display()));
    }
    if path == Path::new("/") {
        return Err(format!("{flag} must not be /"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::{CONSUL, NOMAD};

    fn layout(root: &str) -> Layout {
        Layout {
            root: PathBuf::from(root),
            nomad_path: PathBuf::from("/opt/nomad"),
            system_bin_dir: PathBuf::from("/usr/local/bin"),
            consul_path: PathBuf::from("/opt/consul"),
            cni_path: PathBuf::from("/opt/cni/bin"),
        }
    }

    #[test]
    fn paths_inside_and_on_the_host() {
        let l = layout("/mnt/image");
        assert_eq!(l.binary(NOMAD), Path::new("/opt/nomad/bin/nomad"));
        assert_eq!(l.binary(CONSUL), Path::new("/opt/consul/bin/consul"));
        assert_eq!(l.system_link(CONSUL), Path::new("/usr/local/bin/consul"));
        assert_eq!(
            l.host(&l.binary(NOMAD)),
            Path::new("/mnt/image/opt/nomad/bin/nomad")
        );
        assert_eq!(
            l.receipt(),
            Path::new("/mnt/image/opt/nomad/.install-nomad.json")
        );
        assert_eq!(
            l.staging_parent(&l.cni_path),
            Path::new("/mnt/image/opt/cni")
        );
        assert_eq!(l.etc("passwd"), Path::new("/mnt/image/etc/passwd"));
        assert_eq!(
            l.inside(Path::new("/mnt/image/opt/nomad/.staging")),
            Path::new("/opt/nomad/.staging")
        );
        assert_eq!(layout("/").inside(Path::new("/opt/x")), Path::new("/opt/x"));
        assert_eq!(layout("/").etc("group"), Path::new("/etc/group"));
        let dirs: Vec<_> = l
            .data_dirs()
            .into_iter()
            .map(|(p, d)| (p.display().to_string(), d.mode))
            .collect();
        assert!(dirs.contains(&("/opt/nomad/data".to_string(), 0o700)));
    }

    #[test]
    fn path_flags_must_be_absolute() {
        assert!(check_absolute("--path", Path::new("/opt/nomad")).is_ok());
        assert!(check_absolute("--path", Path::new("opt/nomad"))
            .unwrap_err()
            .contains("--path opt/nomad"));
        assert!(check_absolute("--path", Path::new("/opt/../etc")).is_err());
        assert!(check_absolute("--path", Path::new("/")).is_err());
    }
}
