//! How to reach a Nomad API, with the Nomad CLI's conventions
//! (developer.hashicorp.com/nomad/commands, "Environment variables"): `NOMAD_ADDR` (default
//! `http://127.0.0.1:4646`), `NOMAD_TOKEN`, `NOMAD_REGION`, `NOMAD_CACERT` / `NOMAD_CAPATH`,
//! `NOMAD_CLIENT_CERT` + `NOMAD_CLIENT_KEY` (mutual TLS), `NOMAD_TLS_SERVER_NAME` (the name
//! the server's certificate is checked against, and the SNI, as `curl --connect-to` does),
//! `NOMAD_HTTP_AUTH` (`user[:password]`). `NOMAD_SKIP_VERIFY` is refused: we do not talk to a
//! server we cannot verify.
//!
//! With a CA set, only that CA is trusted (as the Nomad CLI does), not the public roots.
//!
//! A tool that takes these settings from its own flags instead (run-nomad's watcher:
//! `--nomad-ca-file`, ...) gives their names in [`NomadSettings::names`], so that an error
//! names what the user typed.

use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::http::Url;
use crate::retry::Policy;
use crate::secret::Secret;

use super::NomadError;

/// Where Nomad's CLI looks when `NOMAD_ADDR` is unset.
pub const DEFAULT_ADDRESS: &str = "http://127.0.0.1:4646";

/// What each setting is called where the user gave it, for messages: the Nomad CLI's
/// environment variables ([`SettingNames::ENV`]) or a tool's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingNames {
    pub address: &'static str,
    pub ca_cert: &'static str,
    pub ca_path: &'static str,
    pub client_cert: &'static str,
    pub client_key: &'static str,
    pub server_name: &'static str,
}

impl SettingNames {
    /// The Nomad CLI's environment variables.
    pub const ENV: SettingNames = SettingNames {
        address: "NOMAD_ADDR",
        ca_cert: "NOMAD_CACERT",
        ca_path: "NOMAD_CAPATH",
        client_cert: "NOMAD_CLIENT_CERT",
        client_key: "NOMAD_CLIENT_KEY",
        server_name: "NOMAD_TLS_SERVER_NAME",
    };
}

/// TLS files, all on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: Option<PathBuf>,
    /// A directory of PEM CA certificates (used when `ca_cert` is not set).
    pub ca_path: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// The name to verify the server's certificate against (e.g. `server.global.nomad`).
    pub server_name: Option<String>,
}

/// How long to wait, and how often to try. Tests set these small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// Longest wait for a response, and then for each read of its body.
    pub request: Duration,
    /// Reads (GET): retried on transport errors and 502/503/504.
    pub read_retries: Policy,
    /// Writes (all idempotent here: drain, eligibility, peer removal, ...): retried likewise.
    pub write_retries: Policy,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            read_retries: Policy {
                what: "Nomad API read",
                max_attempts: 4,
                initial_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(4),
                deadline: Some(Duration::from_secs(60)),
            },
            write_retries: Policy {
                what: "Nomad API write",
                max_attempts: 3,
                initial_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(4),
                deadline: Some(Duration::from_secs(60)),
            },
        }
    }
}

/// Everything needed to talk to one Nomad API address.
#[derive(Debug, Clone)]
pub struct NomadSettings {
    pub address: Url,
    pub token: Option<Secret>,
    pub region: Option<String>,
    pub http_auth: Option<Secret>,
    pub tls: TlsFiles,
    pub timeouts: Timeouts,
    /// How the settings are named in messages.
    pub names: SettingNames,
    /// Ignore `HTTP_PROXY`/`HTTPS_PROXY` (an agent on this host is never behind a proxy).
    pub no_proxy: bool,
    /// The largest JSON body read; a larger one is an error (`None`: no limit).
    pub body_limit: Option<u64>,
}

impl NomadSettings {
    /// Settings for `address` with nothing else set.
    pub fn new(address: Url) -> Self {
        Self {
            address,
            token: None,
            region: None,
            http_auth: None,
            tls: TlsFiles::default(),
            timeouts: Timeouts::default(),
            names: SettingNames::ENV,
            no_proxy: false,
            body_limit: None,
        }
    }

    /// From the process environment (see the module docs).
    pub fn from_env() -> Result<Self, NomadError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// From environment variables read through `var` (empty values count as unset).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, NomadError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(skip) = get("NOMAD_SKIP_VERIFY") {
            if !matches!(skip.as_str(), "0" | "false" | "f" | "F" | "FALSE" | "False") {
                return Err(NomadError::Settings(format!(
                    "NOMAD_SKIP_VERIFY={skip}: refusing to talk to a Nomad API without verifying its certificate; set NOMAD_CACERT to its CA instead"
                )));
            }
        }
        let address = get("NOMAD_ADDR").unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
        let address = parse_address(&address, "NOMAD_ADDR")?;
        Ok(Self {
            token: get("NOMAD_TOKEN").map(|t| Secret::new(t.trim().to_string())),
            region: get("NOMAD_REGION"),
            http_auth: get("NOMAD_HTTP_AUTH").map(Secret::new),
            tls: TlsFiles {
                ca_cert: get("NOMAD_CACERT").map(PathBuf::from),
                ca_path: get("NOMAD_CAPATH").map(PathBuf::from),
                client_cert: get("NOMAD_CLIENT_CERT").map(PathBuf::from),
                client_key: get("NOMAD_CLIENT_KEY").map(PathBuf::from),
                server_name: get("NOMAD_TLS_SERVER_NAME"),
            },
            ..Self::new(address)
        })
    }

    /// The same settings for another agent's address (e.g. one server's own HTTP API).
    pub fn for_address(&self, address: Url) -> Self {
        Self {
            address,
            ..self.clone()
        }
    }
}

/// A Nomad API address: `http(s)://host[:port]`, nothing after the authority.
pub fn parse_address(text: &str, what: &str) -> Result<Url, NomadError> {
    let url = Url::parse(text.trim())
        .map_err(|e| NomadError::Settings(format!("{what} {text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(NomadError::Settings(format!(
            "{what} {text:?}: expected http://HOST:PORT or https://HOST:PORT"
        )));
    }
    if url.path() != "/" || url.query().is_some() {
        return Err(NomadError::Settings(format!(
            "{what} {text:?}: give the address only (no path or query); the client adds /v1/..."
        )));
    }
    Ok(url)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, NomadError> {
    std::fs::read(path).map_err(|e| NomadError::Settings(format!("{what} {}: {e}", path.display())))
}

/// The CA certificates of a PEM file (all of them: a bundle is fine).
fn certificates(path: &Path, what: &str) -> Result<Vec<reqwest::Certificate>, NomadError> {
    let pem = read(path, what)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        NomadError::Settings(format!(
            "{what} {}: not PEM certificates: {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(NomadError::Settings(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// The blocking HTTP client and the base URL requests go to (the TLS server name in place of
/// the host when one is set; the connection still goes to the address's host).
pub(super) fn build(
    settings: &NomadSettings,
) -> Result<(reqwest::blocking::Client, Url), NomadError> {
    let t = &settings.timeouts;
    let names = &settings.names;
    let mut builder = reqwest::blocking::Client::builder()
        .user_agent(crate::http::USER_AGENT)
        .connect_timeout(t.connect)
        .timeout(t.request);
    if settings.no_proxy {
        builder = builder.no_proxy();
    }
    let mut base = settings.address.clone();
    let https = base.scheme() == "https";
    let tls = &settings.tls;
    let mut roots = Vec::new();
    if let Some(ca) = &tls.ca_cert {
        roots.extend(certificates(ca, names.ca_cert)?);
    } else if let Some(dir) = &tls.ca_path {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            NomadError::Settings(format!("{} {}: {e}", names.ca_path, dir.display()))
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            roots.extend(certificates(&file, &format!("{} file", names.ca_path))?);
        }
        if roots.is_empty() {
            return Err(NomadError::Settings(format!(
                "{} {}: no PEM certificate in it",
                names.ca_path,
                dir.display()
            )));
        }
    }
    if !roots.is_empty() {
        builder = builder.tls_built_in_root_certs(false);
        for cert in roots {
            builder = builder.add_root_certificate(cert);
        }
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read(cert, names.client_cert)?;
            pem.push(b'\n');
            pem.extend(read(key, names.client_key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                NomadError::Settings(format!(
                    "{} {} with {} {}: {e}",
                    names.client_cert,
                    cert.display(),
                    names.client_key,
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        (Some(cert), None) => {
            return Err(NomadError::Settings(format!(
                "{} {} is set without {}",
                names.client_cert,
                cert.display(),
                names.client_key
            )))
        }
        (None, Some(key)) => {
            return Err(NomadError::Settings(format!(
                "{} {} is set without {}",
                names.client_key,
                key.display(),
                names.client_cert
            )))
        }
        (None, None) => {}
    }
    let tls_set: Vec<&str> = [
        (tls.ca_cert.is_some(), names.ca_cert),
        (tls.ca_path.is_some(), names.ca_path),
        (tls.client_cert.is_some(), names.client_cert),
        (tls.server_name.is_some(), names.server_name),
    ]
    .into_iter()
    .filter_map(|(set, name)| set.then_some(name))
    .collect();
    if !tls_set.is_empty() && !https {
        tracing::warn!(
            "TLS settings ({}) are set but {} is plain http: they are not used",
            tls_set.join(", "),
            settings.address
        );
    }
    if !https && settings.token.is_some() && !crate::http::is_loopback(&base) {
        tracing::warn!(
            "the ACL token goes to {} over plain http: anyone on the path can read it",
            settings.address
        );
    }
    if let (Some(name), true) = (&tls.server_name, https) {
        let host = base.host_str().unwrap_or_default().to_string();
        let port = base.port_or_known_default().unwrap_or(443);
        let addrs: Vec<_> = (host.trim_matches(['[', ']']), port)
            .to_socket_addrs()
            .map_err(|e| {
                NomadError::Settings(format!("resolving {host} ({}): {e}", names.address))
            })?
            .collect();
        base.set_host(Some(name))
            .map_err(|e| NomadError::Settings(format!("{} {name:?}: {e}", names.server_name)))?;
        builder = builder.resolve_to_addrs(name, &addrs);
    }
    let client = builder.build().map_err(|e| {
        NomadError::Settings(format!(
            "building the HTTP client for {}: {}",
            settings.address,
            crate::azure_auth::error_chain(&e)
        ))
    })?;
    Ok((client, base))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_cli_defaults_and_variables() {
        let s = NomadSettings::from_vars(vars(&[])).unwrap();
        assert_eq!(s.address.as_str(), "http://127.0.0.1:4646/");
        assert!(s.token.is_none());
        let s = NomadSettings::from_vars(vars(&[
            ("NOMAD_ADDR", "https://10.0.0.4:4646"),
            ("NOMAD_TOKEN", " 3f4a0fcd-7c42-473c-a5db-2d31ba0c05fe\n"),
            ("NOMAD_CACERT", "/etc/nomad/ca.pem"),
            ("NOMAD_CLIENT_CERT", "/etc/nomad/cli.pem"),
            ("NOMAD_CLIENT_KEY", "/etc/nomad/cli-key.pem"),
            ("NOMAD_TLS_SERVER_NAME", "server.global.nomad"),
            ("NOMAD_REGION", "europe"),
        ]))
        .unwrap();
        assert_eq!(
            s.token.as_ref().unwrap().expose(),
            "3f4a0fcd-7c42-473c-a5db-2d31ba0c05fe",
            "trimmed, as Nomad trims it"
        );
        assert_eq!(s.tls.server_name.as_deref(), Some("server.global.nomad"));
        assert_eq!(s.region.as_deref(), Some("europe"));
        assert!(
            !format!("{s:?}").contains("3f4a0fcd"),
            "the token is never printed"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let err = NomadSettings::from_vars(vars(&[("NOMAD_ADDR", "10.0.0.4:4646")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("NOMAD_ADDR"), "{err}");
        let err = NomadSettings::from_vars(vars(&[("NOMAD_ADDR", "http://10.0.0.4:4646/v1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no path"), "{err}");
        let err = NomadSettings::from_vars(vars(&[("NOMAD_SKIP_VERIFY", "true")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("NOMAD_SKIP_VERIFY"), "{err}");
        assert!(NomadSettings::from_vars(vars(&[("NOMAD_SKIP_VERIFY", "false")])).is_ok());
        let mut s = NomadSettings::new(parse_address("https://127.0.0.1:1", "x").unwrap());
        s.tls.client_cert = Some("/nowhere/cli.pem".into());
        let err = build(&s).unwrap_err().to_string();
        assert!(err.contains("without NOMAD_CLIENT_KEY"), "{err}");
        s.tls.client_cert = None;
        s.tls.ca_cert = Some("/nowhere/ca.pem".into());
        let err = build(&s).unwrap_err().to_string();
        assert!(err.contains("NOMAD_CACERT /nowhere/ca.pem"), "{err}");
    }

    #[test]
    fn errors_name_the_settings_as_the_user_gave_them() {
        let mut s = NomadSettings::new(parse_address("https://127.0.0.1:1", "x").unwrap());
        s.names = SettingNames {
            address: "--address",
            ca_cert: "--ca-file",
            ca_path: "--ca-dir",
            client_cert: "--cert",
            client_key: "--key",
            server_name: "--server-name",
        };
        s.tls.ca_cert = Some("/nowhere/ca.pem".into());
        let err = build(&s).unwrap_err().to_string();
        assert!(err.contains("--ca-file /nowhere/ca.pem"), "{err}");
        s.tls.ca_cert = None;
        s.tls.client_key = Some("/nowhere/key.pem".into());
        let err = build(&s).unwrap_err().to_string();
        assert!(
            err.contains("--key /nowhere/key.pem is set without --cert"),
            "{err}"
        );
    }
}
