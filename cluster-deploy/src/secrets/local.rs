//! The operator's copies of what the Nomad CLI needs to reach the cluster: the CA certificate,
//! the CLI certificate and key, and (only when asked) the ACL bootstrap token, under
//! `$XDG_CONFIG_HOME/nomad-azure/<cluster>/` (or `~/.config/nomad-azure/<cluster>/`, the XDG
//! Base Directory default). The directories are 0700, every file 0600, each written atomically
//! (a temporary file made 0600, fsynced, renamed), so no reader ever sees half a key and no
//! other user ever sees any of it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use support::files::{write_atomic, FileSpec};
use support::secret::Secret;

use crate::auth::Env;

/// The directory under the configuration directory that holds every cluster's files.
pub const APP_DIR: &str = "nomad-azure";

/// Why the files could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("no configuration directory: set XDG_CONFIG_HOME or HOME")]
    NoHome,
    #[error("XDG_CONFIG_HOME={0:?} is not an absolute path (the XDG Base Directory rules ignore it then, and so does cluster-deploy: set HOME instead, or an absolute XDG_CONFIG_HOME)")]
    RelativeConfigHome(String),
    #[error("creating {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] support::files::WriteError),
}

/// `<config home>/nomad-azure/<cluster>`.
pub fn cluster_dir(env: &Env, cluster: &str) -> Result<PathBuf, LocalError> {
    let base = match env.get("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(dir) if Path::new(dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => return Err(LocalError::RelativeConfigHome(dir.to_string())),
        None => match env.get("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Path::new(home).join(".config"),
            None => return Err(LocalError::NoHome),
        },
    };
    Ok(base.join(APP_DIR).join(cluster))
}

/// The files of one cluster.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LocalFiles {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub cli_cert: PathBuf,
    pub cli_key: PathBuf,
    pub token: PathBuf,
}

impl LocalFiles {
    pub fn at(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.pem"),
            cli_cert: dir.join("cli.pem"),
            cli_key: dir.join("cli-key.pem"),
            token: dir.join("bootstrap-token"),
        }
    }

    /// Makes the cluster's directory and its `nomad-azure` parent, both 0700.
    pub fn prepare(&self) -> Result<(), LocalError> {
        let dir_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LocalError::Dir { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(dir_err(&self.dir))?;
        let mut private = vec![self.dir.clone()];
        if let Some(parent) = self.dir.parent().filter(|p| p.ends_with(APP_DIR)) {
            private.push(parent.to_path_buf());
        }
        for dir in private {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(dir_err(&dir))?;
        }
        Ok(())
    }

    /// Writes one file, 0600, atomically.
    pub fn write(&self, path: &Path, value: &Secret) -> Result<(), LocalError> {
        write_atomic(path, value.expose().as_bytes(), FileSpec::mode(0o600))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env(pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    #[test]
    fn xdg_config_home_then_home() {
        assert_eq!(
            cluster_dir(&env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]), "c").unwrap(),
            PathBuf::from("/x/nomad-azure/c")
        );
        assert_eq!(
            cluster_dir(&env(&[("XDG_CONFIG_HOME", ""), ("HOME", "/h")]), "c").unwrap(),
            PathBuf::from("/h/.config/nomad-azure/c")
        );
        assert!(matches!(
            cluster_dir(&env(&[("XDG_CONFIG_HOME", "rel")]), "c"),
            Err(LocalError::RelativeConfigHome(_))
        ));
        assert!(matches!(
            cluster_dir(&env(&[]), "c"),
            Err(LocalError::NoHome)
        ));
    }

    #[test]
    fn directories_are_0700_and_files_0600() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join(APP_DIR).join("c");
        std::fs::create_dir_all(home.path().join(APP_DIR)).unwrap();
        std::fs::set_permissions(
            home.path().join(APP_DIR),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let files = LocalFiles::at(&dir);
        files.prepare().unwrap();
        files
            .write(&files.cli_key, &Secret::new("key".into()))
            .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&home.path().join(APP_DIR)), 0o700);
        assert_eq!(mode(&files.cli_key), 0o600);
        assert_eq!(std::fs::read_to_string(&files.cli_key).unwrap(), "key");
    }
}
