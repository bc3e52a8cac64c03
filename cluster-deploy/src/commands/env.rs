//! `env`: what the Nomad CLI needs to talk to the cluster, as shell exports
//! (`eval "$(cluster-deploy env)"`), after writing the files they name, 0600, under the user's
//! configuration directory ([`crate::secrets::local`]). The CA certificate and the CLI
//! certificate and key come from the cluster's vault; with `--token`, the ACL bootstrap token
//! too, written to a file and exported as `NOMAD_TOKEN="$(cat <file>)"`, so its value never
//! appears in the output (a terminal scrollback, a CI log).

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use support::cluster_secrets::SecretItem;
use support::shell;

use crate::auth::Env;
use crate::cli::Cli;
use crate::secrets::local::{cluster_dir, LocalFiles};
use crate::secrets::vault::read_items;

use super::connect::connect_required;
use super::outputs::outputs;
use super::{vault, write_json, Loaded};

pub(super) fn env(
    cli: &Cli,
    env: &Env,
    loaded: &Loaded,
    token: bool,
    nomad_address: Option<&str>,
    out: &mut dyn Write,
) -> Result<()> {
    let cluster = &loaded.cluster;
    let security = &cluster.security;
    if token && !security.acl_bootstrap {
        bail!(
            "--token: the cluster keeps no ACL bootstrap token (`nomad.acl` or \
             `nomad.acl_bootstrap` is off in {})",
            loaded.path.display()
        );
    }
    let files = LocalFiles::at(&cluster_dir(env, &cluster.name)?);
    let arm = connect_required(&cli.azure, env)?;
    let address = match nomad_address {
        Some(a) => a.to_string(),
        None => outputs(&arm, cluster)?.nomad_api.context(
            "the cluster has no public load balancer: pass --nomad-address https://<a server>:<port>",
        )?,
    };
    let url = support::http::Url::parse(&address)
        .with_context(|| format!("--nomad-address {address:?} is not a URL"))?;
    if url.scheme() != security.scheme() {
        bail!(
            "the cluster's Nomad API is {}://: --nomad-address {address} does not match",
            security.scheme()
        );
    }
    let mut exports: Vec<(&str, String)> = vec![("NOMAD_ADDR", address.clone())];
    let mut items = Vec::new();
    if security.tls() {
        items.extend([
            SecretItem::CaCertificate,
            SecretItem::CliCertificate,
            SecretItem::CliKey,
        ]);
    }
    if token {
        items.push(SecretItem::BootstrapToken);
    }
    if let (Some(kv), false) = (&security.key_vault, items.is_empty()) {
        let session = vault::open_existing(&cli.azure, env, &arm, cluster, kv)?;
        let values = read_items(&session.client, &items)
            .map_err(|e| vault::explain(e, kv, "reading the CLI's certificate and the CA"))?;
        files.prepare()?;
        for item in &items {
            let value = values.get(item).with_context(|| {
                format!(
                    "{} is not in Key Vault {} yet: run `cluster-deploy apply`",
                    item.vault_name(),
                    kv.name
                )
            })?;
            let path = match item {
                SecretItem::CaCertificate => &files.ca_cert,
                SecretItem::CliCertificate => &files.cli_cert,
                SecretItem::CliKey => &files.cli_key,
                _ => &files.token,
            };
            files.write(path, value)?;
            tracing::info!("wrote {} (0600)", path.display());
        }
    }
    if security.tls() {
        exports.push(("NOMAD_CACERT", files.ca_cert.display().to_string()));
        exports.push(("NOMAD_CLIENT_CERT", files.cli_cert.display().to_string()));
        exports.push(("NOMAD_CLIENT_KEY", files.cli_key.display().to_string()));
        // The address is the load balancer's: the name on the servers' certificate is this.
        exports.push(("NOMAD_TLS_SERVER_NAME", security.server_name()));
    }
    if cli.json {
        let map: Map<String, Value> = exports
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        return write_json(
            out,
            &json!({
                "exports": map,
                "token_file": token.then(|| files.token.display().to_string()),
                "directory": files.dir.display().to_string(),
            }),
        );
    }
    for (name, value) in &exports {
        writeln!(out, "export {name}={}", shell::quote(value))?;
    }
    if token {
        writeln!(
            out,
            "export NOMAD_TOKEN=\"$(cat {})\"",
            shell::quote(&files.token.display().to_string())
        )?;
    }
    Ok(())
}
