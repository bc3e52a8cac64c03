//! Command-line arguments of `install-nomad`. The first three flags and their defaults are the
//! original bash script's; the rest extend it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "install-nomad",
    // A flag given twice takes its last value, so scripts can append overrides.
    args_override_self = true,
    about = "Resolve, download, verify (signed SHA256SUMS) and atomically install a Nomad release.",
    long_about = "Resolve, download, verify (signed SHA256SUMS) and atomically install a Nomad \
                  release, the run-nomad binary, and optionally Consul and the CNI plugins.\n\n\
                  Signatures are checked against HashiCorp's release key built into this program \
                  (fingerprint C874 011F 0AB4 0511 0D02 1055 3436 5D94 72D7 468F) unless \
                  --public-key names another. Nothing is changed unless every download verifies."
)]
pub struct Cli {
    /// Nomad version to install, e.g. 1.10.5, or `latest` for the newest stable release on the
    /// mirror (prereleases and +ent builds are skipped).
    #[arg(long, value_name = "V")]
    pub version: String,

    /// Where Nomad is installed: binaries in <path>/bin, and config/, data/, log/, tls/.
    #[arg(long, value_name = "DIR", default_value = "/opt/nomad")]
    pub path: PathBuf,

    /// The user Nomad's directories belong to; created as a system user without login if
    /// missing.
    #[arg(long, value_name = "NAME", default_value = "nomad")]
    pub user: String,

    /// CPU architecture of the release: amd64 or arm64 [default: this host's].
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,

    /// Release mirror laid out like releases.hashicorp.com: https://..., http:// only for a
    /// loopback host, or file:///dir.
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://releases.hashicorp.com"
    )]
    pub download_url: String,

    /// Trust the OpenPGP public key(s) in FILE (armored or binary) instead of the embedded
    /// HashiCorp key, for a private mirror that signs its own SHA256SUMS.
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,

    /// Install into this filesystem root (an image being built, a test directory): every path,
    /// the user database included, is taken under it.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Directory for the `nomad` (and `consul`) symlinks.
    #[arg(long, value_name = "DIR", default_value = "/usr/local/bin")]
    pub system_bin_dir: PathBuf,

    /// The run-nomad binary to install as <path>/bin/run-nomad [default: run-nomad next to this
    /// executable].
    #[arg(long, value_name = "FILE")]
    pub run_nomad: Option<PathBuf>,

    /// Do not create the user: it must already exist.
    #[arg(long)]
    pub skip_user: bool,

    /// Also install the CNI reference plugins of this version (e.g. 1.6.2), needed by Nomad
    /// clients for bridge networking.
    #[arg(long, value_name = "V")]
    pub cni_version: Option<String>,

    /// Where the CNI plugins go.
    #[arg(long, value_name = "DIR", default_value = "/opt/cni/bin")]
    pub cni_path: PathBuf,

    /// Expected SHA-256 of the CNI tarball; required for versions without a hash pinned in this
    /// program.
    #[arg(long, value_name = "HEX", requires = "cni_version")]
    pub cni_sha256: Option<String>,

    /// Where CNI releases are downloaded from (layout /v<X>/cni-plugins-linux-<arch>-v<X>.tgz).
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://github.com/containernetworking/plugins/releases/download"
    )]
    pub cni_download_url: String,

    /// Also install HashiCorp's consul binary of this version (or `latest`), verified the same
    /// way as Nomad.
    #[arg(long, value_name = "V")]
    pub consul_version: Option<String>,

    /// Where Consul is installed (binary in <consul-path>/bin).
    #[arg(long, value_name = "DIR", default_value = "/opt/consul")]
    pub consul_path: PathBuf,

    /// Attempts per download (connection errors, 429 and 5xx are retried with backoff).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub download_attempts: u32,

    /// Longest time one file may take to download, every attempt and wait included: seconds,
    /// or a number with s, m or h (`90`, `90s`, `15m`).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub download_timeout: Duration,

    /// An attempt counts as stalled, and is cut off and retried, when this long brings less
    /// than --stall-min-speed (or nothing at all).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub stall_timeout: Duration,

    /// The slowest transfer that is not a stall, in bytes per second.
    #[arg(long, value_name = "BYTES", default_value_t = 1024)]
    pub stall_min_speed: u64,

    /// Print the result as one JSON document on stdout: what changed, and what is installed
    /// (each component's version, arch, archive and file hashes, run-nomad, the symlinks, the
    /// user). The log still goes to stderr.
    #[arg(long)]
    pub json: bool,

    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

/// A duration flag: seconds (`90`, `0.5`) or a number with a unit (`90s`, `15m`, `1h`); more
/// than zero and at most a day.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("{text:?}: the unit must be s, m or h")),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90, 90s, 15m or 1h"))?;
    let secs = value * scale;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!("{text:?}: must be more than 0 and at most 24h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "0", "-1", "10d", "abc", "25h", "1.5.2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
