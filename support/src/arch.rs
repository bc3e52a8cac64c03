//! [`Arch`]: the CPU architectures the tools install and bake for, spelled as HashiCorp's release
//! files spell them (`nomad_<v>_linux_amd64.zip`, `..._linux_arm64.zip`; the same words as
//! Go's `GOARCH`). install-nomad picks its downloads by it; image-builder reads it from
//! `image.toml` (serde, lower-case) and picks its VM size and musl target by it.

use std::fmt;
use std::str::FromStr;

/// A CPU architecture with HashiCorp Linux builds. `amd64` by default (image-builder's
/// `arch` default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    #[default]
    Amd64,
    Arm64,
}

/// A name [`Arch`] does not know, as given (e.g. on `--arch`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported architecture {0:?}: use amd64 or arm64")]
pub struct UnknownArch(pub String);

impl Arch {
    /// `amd64` or `arm64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The architecture this program runs on, when it is one of ours.
    pub fn host() -> Option<Arch> {
        Self::from_rust_arch(std::env::consts::ARCH)
    }

    /// Rust's spelling (`std::env::consts::ARCH`: `x86_64`, `aarch64`) turned into ours.
    pub fn from_rust_arch(arch: &str) -> Option<Arch> {
        match arch {
            "x86_64" => Some(Arch::Amd64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

/// Accepts HashiCorp's spelling and Rust's (`amd64` or `x86_64`, `arm64` or `aarch64`), as a
/// user typing `--arch` might. Serde reads only HashiCorp's.
impl FromStr for Arch {
    type Err = UnknownArch;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(UnknownArch(other.to_string())),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for arch in [Arch::Amd64, Arch::Arm64] {
            assert_eq!(arch.as_str().parse::<Arch>(), Ok(arch));
            assert_eq!(arch.to_string(), arch.as_str());
        }
        assert_eq!(Arch::default(), Arch::Amd64);
    }

    #[test]
    fn parsing_takes_both_spellings_and_names_a_bad_value() {
        assert_eq!("x86_64".parse::<Arch>(), Ok(Arch::Amd64));
        assert_eq!("aarch64".parse::<Arch>(), Ok(Arch::Arm64));
        let err = "386".parse::<Arch>().unwrap_err();
        assert_eq!(err, UnknownArch("386".to_string()));
        assert_eq!(
            err.to_string(),
            "unsupported architecture \"386\": use amd64 or arm64"
        );
        assert!("AMD64".parse::<Arch>().is_err());
    }

    #[test]
    fn rust_spelling_and_host() {
        assert_eq!(Arch::from_rust_arch("x86_64"), Some(Arch::Amd64));
        assert_eq!(Arch::from_rust_arch("aarch64"), Some(Arch::Arm64));
        assert_eq!(Arch::from_rust_arch("riscv64"), None);
        assert_eq!(Arch::host(), Arch::from_rust_arch(std::env::consts::ARCH));
    }

    #[test]
    fn serde_uses_only_the_lower_case_release_names() {
        #[derive(serde::Deserialize)]
        struct Spec {
            arch: Arch,
        }
        let spec: Spec = serde_json::from_str(r#"{"arch": "arm64"}"#).unwrap();
        assert_eq!(spec.arch, Arch::Arm64);
        assert_eq!(serde_json::to_string(&Arch::Amd64).unwrap(), r#""amd64""#);
        let err = serde_json::from_str::<Spec>(r#"{"arch": "x86_64"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("unknown variant `x86_64`, expected `amd64` or `arm64`"),
            "{err}"
        );
    }
}
