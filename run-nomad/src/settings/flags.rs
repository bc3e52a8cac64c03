//! The checks that need neither metadata nor the filesystem: flag combinations, and every
//! value Nomad or go-discover would refuse at start ([`crate::rules`], [`crate::discover`]),
//! so that a typo fails before IMDS is read and Nomad never crash-loops on it.

use super::values::{environment, gossip_key, meta, systemd_output};
use super::{account_name, invalid, SettingsError};
use crate::cli::{Cli, InitSystem};
use crate::rules;

/// Everything config-only that --skip-nomad-config makes meaningless.
fn config_only_flags(cli: &Cli) -> Vec<&'static str> {
    let mut flags = Vec::new();
    let mut check = |set: bool, flag: &'static str| {
        if set {
            flags.push(flag);
        }
    };
    check(!cli.retry_join.is_empty(), "--retry-join");
    check(cli.scale_set_name.is_some(), "--scale-set-name");
    check(cli.cluster_tag_key.is_some(), "--cluster-tag-key");
    check(cli.consul_address.is_some(), "--consul-address");
    check(
        cli.gossip_key.is_some() || cli.gossip_key_file.is_some(),
        "--gossip-key",
    );
    check(cli.tls_ca_file.is_some(), "--tls-*-file");
    check(cli.acl, "--acl");
    check(cli.node_class.is_some(), "--node-class");
    check(!cli.meta.is_empty(), "--meta");
    check(cli.datacenter.is_some(), "--datacenter");
    check(cli.region.is_some(), "--region");
    check(cli.advertise_addr.is_some(), "--advertise-addr");
    check(cli.metadata_file.is_some(), "--metadata-file");
    check(cli.node_pool.is_some(), "--node-pool");
    check(cli.no_placement_meta, "--no-placement-meta");
    check(cli.leave_on_interrupt.is_some(), "--leave-on-interrupt");
    check(cli.leave_on_terminate.is_some(), "--leave-on-terminate");
    check(cli.log_level.is_some(), "--log-level");
    check(cli.log_json, "--log-json");
    check(cli.disable_update_check, "--disable-update-check");
    check(
        cli.prometheus_metrics || cli.publish_allocation_metrics || cli.publish_node_metrics,
        "--prometheus-metrics/--publish-*-metrics",
    );
    flags
}

/// Logs the warnings about flags that are accepted but probably not meant (once per run).
pub fn warn_about_flags(cli: &Cli) {
    for item in &cli.environment {
        if let Some((key, value)) = item.split_once('=') {
            if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
                tracing::warn!(
                    "--environment {key}: the value is taken literally, so its double quotes \
                     are part of it (the AWS run-nomad's KEY=\"val\" quoting is not needed)"
                );
            }
        }
    }
    match (cli.server, cli.num_servers) {
        (true, Some(n)) if n > 0 && n % 2 == 0 => tracing::warn!(
            "--num-servers {n} is even: a cluster of {n} servers tolerates no more failures \
             than one of {}; an odd number is recommended",
            n - 1
        ),
        (false, Some(_)) => {
            tracing::warn!("--num-servers only applies to servers; ignored without --server")
        }
        _ => {}
    }
}

/// The checks that need neither metadata nor the filesystem.
pub fn check_flags(cli: &Cli) -> Result<(), SettingsError> {
    if cli.server {
        match cli.num_servers {
            None => {
                return Err(SettingsError::Missing(
                    "--num-servers is required with --server".to_string(),
                ))
            }
            Some(0) => return Err(invalid("--num-servers", 0, "must be at least 1")),
            Some(_) => {}
        }
    }
    if !cli.client {
        if cli.node_class.is_some() {
            return Err(SettingsError::Missing(
                "--node-class applies to the client block: add --client".to_string(),
            ));
        }
        if !cli.meta.is_empty() {
            return Err(SettingsError::Missing(
                "--meta applies to the client block: add --client".to_string(),
            ));
        }
        if cli.node_pool.is_some() {
            return Err(SettingsError::Missing(
                "--node-pool applies to the client block: add --client".to_string(),
            ));
        }
    }
    if !cli.server {
        for (flag, set) in [
            ("--gossip-key", cli.gossip_key.is_some()),
            ("--gossip-key-file", cli.gossip_key_file.is_some()),
            ("--gossip-key-from-key-vault", cli.gossip_key_from_key_vault),
        ] {
            if set {
                return Err(SettingsError::Missing(format!(
                    "{flag}: the gossip key is server.encrypt (servers gossip, clients do \
                     not): add --server"
                )));
            }
        }
    }
    if cli.init != InitSystem::Systemd {
        for (flag, set) in [
            ("--systemd-stdout", cli.systemd_stdout.is_some()),
            ("--systemd-stderr", cli.systemd_stderr.is_some()),
        ] {
            if set {
                return Err(SettingsError::Missing(format!(
                    "{flag} only applies to --init systemd"
                )));
            }
        }
    }
    if cli.skip_nomad_config {
        let flags = config_only_flags(cli);
        if !flags.is_empty() {
            return Err(SettingsError::Missing(format!(
                "{} only shape default.hcl, which --skip-nomad-config does not write",
                flags.join(", ")
            )));
        }
        if cli.watch_events_token_file.is_some() {
            return Err(SettingsError::Missing(
                "--watch-events-token-file is for the Scheduled Events watcher, which \
                 --skip-nomad-config does not install"
                    .to_string(),
            ));
        }
    }
    for entry in &cli.retry_join {
        crate::discover::check_retry_join(entry)
            .map_err(|reason| invalid("--retry-join", entry, reason))?;
    }
    // The values Nomad checks at start (rules), so that Nomad never crash-loops on them.
    let rule = |flag: &str, value: &Option<String>, check: fn(&str) -> Result<(), String>| {
        value.as_deref().map_or(Ok(()), |v| {
            check(v).map_err(|reason| invalid(flag, v, reason))
        })
    };
    rule("--datacenter", &cli.datacenter, rules::datacenter)?;
    rule("--region", &cli.region, rules::region)?;
    rule("--node-class", &cli.node_class, rules::node_class)?;
    rule("--node-pool", &cli.node_pool, rules::node_pool)?;
    rule("--cluster-tag-value", &cli.cluster_tag_value, |v| {
        if v.is_empty() {
            Err("is empty; go-discover's azure provider ignores a tag without a value".into())
        } else {
            Ok(())
        }
    })?;
    if let Some(address) = cli.advertise_addr {
        rules::advertise_address(address)
            .map_err(|reason| invalid("--advertise-addr", address, reason))?;
    }
    if let Some(address) = &cli.consul_address {
        if address.is_empty() || address.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("--consul-address", address, "expected HOST:PORT"));
        }
    }
    // Azure's terminate notification: "between 5 and 15 minutes" (notBeforeTimeout PT5M to
    // PT15M, "Terminate notification for Azure Virtual Machine Scale Set instances").
    let notice = cli.terminate_notice;
    if notice < std::time::Duration::from_secs(300) || notice > std::time::Duration::from_secs(900)
    {
        return Err(invalid(
            "--terminate-notice",
            support::go_duration::format(notice),
            "Azure's terminate notification is 5 to 15 minutes",
        ));
    }
    crate::secrets::source(cli)?;
    // The values that need neither metadata nor files, so that a typo fails before IMDS.
    environment(&cli.environment)?;
    meta(&cli.meta)?;
    if let Some(key) = &cli.gossip_key {
        gossip_key("--gossip-key", key)?;
    }
    for (flag, value) in [
        ("--systemd-stdout", &cli.systemd_stdout),
        ("--systemd-stderr", &cli.systemd_stderr),
    ] {
        if let Some(v) = value {
            systemd_output(flag, v)?;
        }
    }
    if let Some(user) = &cli.user {
        account_name("--user", user)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn cli(args: &[&str]) -> Cli {
        let mut all = vec!["run-nomad"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap()
    }

    #[test]
    fn flag_combinations_are_checked_before_anything_else() {
        let e = |args: &[&str]| check_flags(&cli(args)).unwrap_err().to_string();
        assert!(e(&["--server"]).contains("--num-servers is required"));
        assert!(e(&["--server", "--num-servers", "0"]).contains("at least 1"));
        assert!(e(&["--server", "--num-servers", "1", "--meta", "a=b"]).contains("add --client"));
        assert!(e(&["--client", "--gossip-key", "x"]).contains("--gossip-key: "));
        let err = e(&[
            "--client",
            "--key-vault",
            "nomad-kv",
            "--tls-from-key-vault",
            "--gossip-key-from-key-vault",
        ]);
        assert!(
            err.contains("--gossip-key-from-key-vault: ") && err.contains("add --server"),
            "{err}"
        );
        assert!(e(&["--client", "--key-vault", "nomad-kv"]).contains("--tls-from-key-vault"));
        assert!(e(&[
            "--client",
            "--init",
            "supervisor",
            "--systemd-stdout",
            "null"
        ])
        .contains("--init systemd"));
        assert!(
            e(&["--client", "--skip-nomad-config", "--acl", "--meta", "a=b"])
                .contains("--acl, --meta only shape default.hcl")
        );
        assert!(e(&["--client", "--retry-join", " "]).contains("--retry-join"));
        check_flags(&cli(&["--server", "--num-servers", "2"])).unwrap();
    }
}
