//! What `default.hcl` says, from the flags and the instance metadata: names, addresses,
//! discovery, roles, leaving and logging, placement metadata. Every value a default takes from
//! the metadata passes the same rule as the flag it stands for, and the error names the field.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use support::files::under_root;

use super::values::{gossip_key, meta};
use super::{
    absolute_path, given, invalid, non_empty, require_file, Agent, ClientAgent, Discovery, Facts,
    Layout, Lifecycle, NomadVersion, Secret, ServerAgent, SettingsError, Telemetry, Tls,
    DEFAULT_CONSUL_ADDRESS, PLACEMENT_META,
};
use crate::cli::Cli;
use crate::metadata::Instance;
use crate::rules;

pub(super) fn discovery(cli: &Cli, instance: &Instance) -> Result<Discovery, SettingsError> {
    let compute = &instance.compute;
    let subscription = || {
        non_empty(
            &compute.subscription_id,
            "compute.subscriptionId",
            "give a go-discover string with --retry-join instead",
        )
    };
    if !cli.retry_join.is_empty() {
        return Ok(Discovery::RetryJoin(cli.retry_join.clone()));
    }
    if let Some(scale_set) = given("--scale-set-name", &cli.scale_set_name)? {
        let resource_group =
            match given("--scale-set-resource-group", &cli.scale_set_resource_group)? {
                Some(rg) => rg,
                None => non_empty(
                    &compute.resource_group_name,
                    "compute.resourceGroupName",
                    "pass --scale-set-resource-group",
                )?,
            };
        return Ok(Discovery::ScaleSet {
            subscription_id: subscription()?,
            resource_group,
            scale_set,
        });
    }
    if let Some(tag_name) = given("--cluster-tag-key", &cli.cluster_tag_key)? {
        let tag_value = match &cli.cluster_tag_value {
            Some(v) => v.clone(),
            None => {
                let value = compute.tag(&tag_name).ok_or_else(|| {
                    SettingsError::Missing(format!(
                        "this VM has no tag {tag_name:?} in compute.tagsList: pass --cluster-tag-value"
                    ))
                })?;
                if value.is_empty() {
                    // go-discover's azure provider needs a non-empty tag_value.
                    return Err(SettingsError::Missing(format!(
                        "this VM's tag {tag_name:?} (compute.tagsList) has an empty value, which \
                         go-discover cannot join by: pass --cluster-tag-value"
                    )));
                }
                value.to_string()
            }
        };
        return Ok(Discovery::Tag {
            subscription_id: subscription()?,
            tag_name,
            tag_value,
        });
    }
    Ok(Discovery::Consul {
        address: cli
            .consul_address
            .clone()
            .unwrap_or_else(|| DEFAULT_CONSUL_ADDRESS.to_string()),
    })
}

pub(super) fn read_gossip_key(cli: &Cli, root: &Path) -> Result<Option<Secret>, SettingsError> {
    if let Some(key) = &cli.gossip_key {
        return gossip_key("--gossip-key", key).map(Some);
    }
    let Some(file) = &cli.gossip_key_file else {
        return Ok(None);
    };
    let path = absolute_path("--gossip-key-file", file)?;
    let on_disk = under_root(root, &path);
    let text = std::fs::read_to_string(&on_disk).map_err(|cause| SettingsError::Io {
        what: "failed to read the gossip key file",
        path: on_disk.clone(),
        cause,
    })?;
    let key = gossip_key(&format!("--gossip-key-file {}", path.display()), &text)?;
    Ok(Some(key))
}

/// Warns about a secret file every local user can read.
pub(super) fn warn_if_world_readable(what: &str, root: &Path, path: &Path) {
    let on_disk = under_root(root, path);
    if let Ok(meta) = std::fs::metadata(&on_disk) {
        if meta.permissions().mode() & 0o004 != 0 {
            tracing::warn!(
                "the {what} {} is readable by every user; make it 0600 or 0640",
                on_disk.display()
            );
        }
    }
}

pub(super) fn agent(
    cli: &Cli,
    facts: &Facts<'_>,
    root: &Path,
    layout: &Layout,
) -> Result<Agent, SettingsError> {
    let instance = facts
        .instance
        .ok_or_else(|| SettingsError::Missing("no instance metadata was read".to_string()))?;
    let compute = &instance.compute;
    let location = || {
        non_empty(
            &compute.location,
            "compute.location",
            "pass --datacenter and --region",
        )
    };
    // A value from the metadata must pass Nomad's rule too; the error names the field.
    let checked = |value: String, field: &str, check: fn(&str) -> Result<(), String>| {
        check(&value)
            .map(|()| value.clone())
            .map_err(|reason| invalid(field, &value, format!("{reason} (pass the flag instead)")))
    };
    let datacenter = match given("--datacenter", &cli.datacenter)? {
        Some(dc) => dc,
        None => checked(
            location()?,
            "compute.location (the default --datacenter)",
            rules::datacenter,
        )?,
    };
    let region = match given("--region", &cli.region)? {
        Some(r) => r,
        None => checked(
            location()?,
            "compute.location (the default --region)",
            rules::region,
        )?,
    };
    let name = non_empty(
        &compute.vm_id,
        "compute.vmId",
        "the node name comes from it (is this an Azure VM?)",
    )?;
    let advertise = match cli.advertise_addr {
        Some(address) => address,
        None => {
            let primary = instance.primary_ipv4(facts.local_source)?;
            let address = IpAddr::V4(primary.address);
            rules::advertise_address(address).map_err(|reason| {
                invalid(
                    "privateIpAddress (of the primary network interface, from the instance metadata)",
                    address,
                    format!("{reason} (pass --advertise-addr)"),
                )
            })?;
            tracing::info!(
                "advertising {} (network interface {})",
                primary.address,
                primary.mac_address
            );
            address
        }
    };
    let tls = match (&cli.tls_ca_file, &cli.tls_cert_file, &cli.tls_key_file) {
        (Some(ca), Some(cert), Some(key)) => {
            let tls = Tls {
                ca_file: require_file("--tls-ca-file", root, ca)?,
                cert_file: require_file("--tls-cert-file", root, cert)?,
                key_file: require_file("--tls-key-file", root, key)?,
            };
            Some(tls)
        }
        // --tls-from-key-vault: the files it fetched, which are written with this
        // configuration.
        _ => facts.secrets.filter(|f| f.has_tls()).map(|fetched| {
            let (ca, cert, key) = crate::secrets::tls_items(fetched.role);
            Tls {
                ca_file: crate::secrets::path(ca, layout),
                cert_file: crate::secrets::path(cert, layout),
                key_file: crate::secrets::path(key, layout),
            }
        }),
    };
    let lifecycle = lifecycle(cli, facts.nomad_version);
    let gossip_key = match facts
        .secrets
        .and_then(|f| f.value(support::cluster_secrets::SecretItem::GossipKey))
    {
        Some(value) => Some(crate::secrets::check::gossip_key(value)?),
        None => read_gossip_key(cli, root)?,
    };
    let server = if cli.server {
        Some(ServerAgent {
            num_servers: cli.num_servers.unwrap_or(1),
            gossip_key,
            rejoin_after_leave: lifecycle.leave_on_interrupt || lifecycle.leave_on_terminate,
        })
    } else {
        None
    };
    let client = if cli.client {
        let mut meta = meta(&cli.meta)?;
        if !cli.no_placement_meta {
            meta.extend(placement_meta(instance, &meta));
        }
        Some(ClientAgent {
            node_class: given("--node-class", &cli.node_class)?,
            node_pool: cli.node_pool.clone(),
            meta,
            drain_on_shutdown: drain_on_shutdown(cli, facts.nomad_version, &lifecycle),
        })
    } else {
        None
    };
    let telemetry = Telemetry {
        prometheus_metrics: cli.prometheus_metrics,
        publish_allocation_metrics: cli.publish_allocation_metrics,
        publish_node_metrics: cli.publish_node_metrics,
    };
    Ok(Agent {
        datacenter,
        region,
        name,
        advertise,
        server,
        client,
        discovery: discovery(cli, instance)?,
        tls,
        acl: cli.acl,
        lifecycle,
        telemetry: (telemetry != Telemetry::default()).then_some(telemetry),
    })
}

/// Leaving on stop signals, per role, for immutable scale sets. A server that stops is either
/// deleted for good (scale-in, a roll, eviction), and must leave the Raft peer set so quorum
/// is counted right, or rebooted, and `rejoin_after_leave` brings it back. A client's leave is
/// its `drain_on_shutdown` (Nomad 1.5.4+): a pure client leaves, and so drains itself, on
/// SIGTERM only, while the unit's and the program's stop signal (SIGINT) stops it without a
/// drain, so a restart never empties a node. On an older Nomad clients keep Nomad's default.
/// The flags override either.
pub fn lifecycle(cli: &Cli, nomad_version: Option<NomadVersion>) -> Lifecycle {
    let role_default = cli.server;
    let leave_on_interrupt = cli.leave_on_interrupt.unwrap_or(role_default);
    let drains_on_terminate = cli.client
        && !leave_on_interrupt
        && nomad_version.is_some_and(|v| v.supports_drain_on_shutdown());
    Lifecycle {
        leave_on_interrupt,
        leave_on_terminate: cli
            .leave_on_terminate
            .unwrap_or(leave_on_interrupt || drains_on_terminate),
        log_level: cli.log_level.map(|l| l.as_nomad()),
        log_json: cli.log_json,
        disable_update_check: cli.disable_update_check,
    }
}

/// A client's `drain_on_shutdown` deadline, when it gets the block: a client (Nomad docs,
/// `client` block: the agent sends itself a drain "when it shuts down" with `leave_on_interrupt`
/// or `leave_on_terminate`) that leaves on SIGTERM but not on SIGINT, on a Nomad known to take
/// the block. The deadline is the one the Scheduled Events watcher would give a drain for the
/// scale set's terminate notice ([`crate::events::timeline`]), so a self-drained client is gone
/// before Azure deletes the VM.
pub fn drain_on_shutdown(
    cli: &Cli,
    nomad_version: Option<NomadVersion>,
    lifecycle: &Lifecycle,
) -> Option<std::time::Duration> {
    if !cli.client || !lifecycle.leave_on_terminate || lifecycle.leave_on_interrupt {
        return None;
    }
    match nomad_version {
        Some(v) if v.supports_drain_on_shutdown() => Some(drain_deadline(cli.terminate_notice)),
        Some(v) => {
            tracing::info!(
                "Nomad {v} has no client drain_on_shutdown (1.5.4+): a client stopped with \
                 SIGTERM does not drain itself"
            );
            None
        }
        None => None,
    }
}

/// The drain deadline for a terminate notice of `notice`: the notice less the watcher's
/// reserves for stopping Nomad, the allocations' kill time and the approval.
pub fn drain_deadline(notice: std::time::Duration) -> std::time::Duration {
    use crate::events::document::EventType;
    use crate::events::timeline::{plan, Margins};
    let start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    let timeline = plan(
        start,
        &EventType::Terminate,
        Some(start + notice),
        start,
        true,
        Margins::default(),
    );
    timeline
        .drain_until
        .duration_since(start)
        .unwrap_or_default()
}

/// The VM's zone, fault domain and size as node metadata ([`PLACEMENT_META`]), for the keys
/// `--meta` does not set; empty values (a VM in no zone) are left out.
fn placement_meta(instance: &Instance, given: &[(String, String)]) -> Vec<(String, String)> {
    let compute = &instance.compute;
    let values = [
        &compute.zone,
        &compute.platform_fault_domain,
        &compute.vm_size,
    ];
    PLACEMENT_META
        .iter()
        .zip(values)
        .filter(|(_, value)| !value.is_empty())
        .filter(|((key, _), _)| {
            let overridden = given.iter().any(|(k, _)| k == key);
            if overridden {
                tracing::info!("--meta {key} overrides the value from the instance metadata");
            }
            !overridden
        })
        .map(|((key, _), value)| (key.to_string(), value.clone()))
        .collect()
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

    fn instance(json: &str) -> Instance {
        crate::metadata::parse(json, "test").unwrap()
    }

    fn version(text: &str) -> Option<NomadVersion> {
        NomadVersion::parse(text)
    }

    #[test]
    fn pure_clients_drain_themselves_on_sigterm_where_nomad_can() {
        let new = version("Nomad v1.9.3");
        let client = cli(&["--client"]);
        let life = lifecycle(&client, new);
        assert!(!life.leave_on_interrupt && life.leave_on_terminate);
        assert_eq!(
            drain_on_shutdown(&client, new, &life),
            Some(std::time::Duration::from_secs(255))
        );
        // 1.5.4 brought the block; 1.5.3 would refuse it, and an unknown version is not risked.
        for old in [version("Nomad v1.5.3"), None] {
            let life = lifecycle(&client, old);
            assert!(!life.leave_on_terminate, "{old:?}");
            assert_eq!(drain_on_shutdown(&client, old, &life), None);
        }
        let first = version("Nomad v1.5.4");
        assert!(drain_on_shutdown(&client, first, &lifecycle(&client, first)).is_some());
        // A client that also leaves on SIGINT would drain on every restart: no block.
        let both = cli(&["--client", "--leave-on-interrupt", "true"]);
        let life = lifecycle(&both, new);
        assert!(life.leave_on_interrupt && life.leave_on_terminate);
        assert_eq!(drain_on_shutdown(&both, new, &life), None);
        // Nor for servers and combined nodes, which leave on SIGINT.
        let combined = cli(&["--server", "--client", "--num-servers", "1"]);
        assert_eq!(
            drain_on_shutdown(&combined, new, &lifecycle(&combined, new)),
            None
        );
        // Turned off by flag.
        let off = cli(&["--client", "--leave-on-terminate", "false"]);
        assert_eq!(drain_on_shutdown(&off, new, &lifecycle(&off, new)), None);
    }

    #[test]
    fn the_drain_deadline_fits_the_terminate_notice() {
        use std::time::Duration;
        // Less the watcher's reserves: 30 s to stop, 10 s to kill, 5 s to approve.
        assert_eq!(
            drain_deadline(Duration::from_secs(300)),
            Duration::from_secs(255)
        );
        assert_eq!(
            drain_deadline(Duration::from_secs(900)),
            Duration::from_secs(855)
        );
        let long = cli(&["--client", "--terminate-notice", "15m"]);
        let new = version("Nomad v1.10.0");
        assert_eq!(
            drain_on_shutdown(&long, new, &lifecycle(&long, new)),
            Some(Duration::from_secs(855))
        );
        let err = super::super::check_flags(&cli(&["--client", "--terminate-notice", "1m"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--terminate-notice") && err.contains("5 to 15"),
            "{err}"
        );
    }

    #[test]
    fn discovery_takes_resource_group_subscription_and_tag_from_metadata() {
        let vm = instance(
            r#"{"compute": {"resourceGroupName": "rg1", "subscriptionId": "sub1",
                "tagsList": [{"name": "cluster", "value": "prod"}]}}"#,
        );
        assert_eq!(
            discovery(&cli(&["--client", "--scale-set-name", "srv"]), &vm).unwrap(),
            Discovery::ScaleSet {
                subscription_id: "sub1".into(),
                resource_group: "rg1".into(),
                scale_set: "srv".into()
            }
        );
        assert_eq!(
            discovery(
                &cli(&[
                    "--client",
                    "--scale-set-name",
                    "srv",
                    "--scale-set-resource-group",
                    "other"
                ]),
                &vm
            )
            .unwrap(),
            Discovery::ScaleSet {
                subscription_id: "sub1".into(),
                resource_group: "other".into(),
                scale_set: "srv".into()
            }
        );
        assert_eq!(
            discovery(&cli(&["--client", "--cluster-tag-key", "cluster"]), &vm).unwrap(),
            Discovery::Tag {
                subscription_id: "sub1".into(),
                tag_name: "cluster".into(),
                tag_value: "prod".into()
            }
        );
        let err = discovery(&cli(&["--client", "--cluster-tag-key", "nope"]), &vm).unwrap_err();
        assert!(err.to_string().contains("--cluster-tag-value"), "{err}");
        let bare = instance(r#"{"compute": {}}"#);
        let err = discovery(&cli(&["--client", "--scale-set-name", "srv"]), &bare).unwrap_err();
        assert!(
            err.to_string().contains("compute.resourceGroupName"),
            "{err}"
        );
        assert_eq!(
            discovery(&cli(&["--client"]), &bare).unwrap(),
            Discovery::Consul {
                address: DEFAULT_CONSUL_ADDRESS.into()
            }
        );
    }
}
