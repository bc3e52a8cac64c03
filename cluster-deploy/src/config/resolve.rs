//! From the file as written to the settings cluster-deploy uses: the Terraform module's
//! variables mapped onto ours (or kept as warnings that say why they no longer apply), aliases
//! checked against each other, custom data files read, client pools built.
//!
//! The module (`terraform-azurerm-nomad`, `modules/nomad-cluster/vars.tf`, and the names its
//! README uses) had these variables beyond ours:
//!
//! | variable | here |
//! |---|---|
//! | `ami_id` (README) | `image_id` |
//! | `user_data` (README), `custom_data` | extra boot commands, run before run-nomad |
//! | `subnet_ids` | `subnet_id` (one subnet: an Azure subnet spans every zone) |
//! | `instance_tier` | the scale set SKU tier; `basic` is refused (those sizes are retired) |
//! | `root_volume_type` | `os_disk_type` (EBS names translated, with a warning) |
//! | `instance_root_volume_size` | `root_volume_size` |
//! | `storage_account_name` | warning: managed disks need no storage account |
//! | `wait_for_capacity_timeout` | warning: a Terraform wait, not an Azure setting |
//! | `tenancy` (README) | warning for `default`; `dedicated` is refused (no dedicated hosts here) |

use std::path::Path;

use super::raw::{RawClusterFile, RawHealth};
use super::{
    bad, BootCommands, ClusterFile, Egress, HealthOptions, NatGatewaySku, Problem, Warning,
    DEFAULT_REPAIR_GRACE_MINUTES, DISK_TYPES,
};

/// The OS disk type when nothing says otherwise.
const DEFAULT_OS_DISK_TYPE: &str = "StandardSSD_LRS";
/// The OS disk size (GB) when nothing says otherwise.
const DEFAULT_ROOT_VOLUME_SIZE: u32 = 30;

pub(super) fn resolve(base: &Path, raw: RawClusterFile) -> Result<ClusterFile, Problem> {
    let mut warnings = Vec::new();
    let image_id = one_of(
        "image_id",
        raw.image_id.clone(),
        "ami_id",
        raw.ami_id.clone(),
    )?
    .ok_or_else(|| {
        bad(
            "image_id",
            "is missing: give the resource id of the image image-builder made",
        )
    })?;
    let custom_data = boot_commands(
        base,
        &[
            ("custom_data", raw.custom_data.as_deref()),
            ("user_data", raw.user_data.as_deref()),
        ],
        ("custom_data_file", raw.custom_data_file.as_deref()),
    )?;
    let subnet_id = subnet(&raw)?;
    let instance_tier = tier(raw.instance_tier.as_deref())?;
    let os_disk_type = disk_type(&raw, &mut warnings)?;
    let root_volume_size = match (raw.root_volume_size, raw.instance_root_volume_size) {
        (Some(a), Some(b)) if a != b => {
            return Err(bad(
                "instance_root_volume_size",
                format!(
                    "is {b} but `root_volume_size` is {a}: the module had both names for the \
                     OS disk size; give one"
                ),
            ))
        }
        (a, b) => a.or(b).unwrap_or(DEFAULT_ROOT_VOLUME_SIZE),
    };
    obsolete(&raw, &mut warnings)?;
    let egress = raw.egress;
    let nat_gateway_sku = nat_sku(&raw, subnet_id.is_some(), &mut warnings)?;
    let health = health(&raw.health);
    let client_pools = super::pools::resolve_pools(base, &raw)?;
    let num_clients = client_pools.iter().map(|p| p.count).sum();
    Ok(ClusterFile {
        location: raw.location,
        resource_group_name: raw.resource_group_name,
        cluster_name: raw.cluster_name,
        image_id,
        instance_size: raw.instance_size,
        client_instance_size: raw.client_instance_size,
        cluster_size: raw.cluster_size,
        num_clients,
        client_pools,
        key_data: raw.key_data,
        allowed_inbound_cidr_blocks: raw.allowed_inbound_cidr_blocks,
        allowed_ssh_cidr_blocks: raw.allowed_ssh_cidr_blocks,
        associate_public_ip_address_load_balancer: raw.associate_public_ip_address_load_balancer,
        domain_name_label: raw.domain_name_label,
        computer_name_prefix: raw.computer_name_prefix,
        admin_user_name: raw.admin_user_name,
        root_volume_size,
        os_disk_type,
        instance_tier,
        encryption_at_host: raw.encryption_at_host,
        http_port: raw.http_port,
        rpc_port: raw.rpc_port,
        serf_port: raw.serf_port,
        ssh_port: raw.ssh_port,
        subnet_id,
        address_space: raw.address_space,
        subnet_address: raw.subnet_address,
        zones: raw.zones,
        egress,
        nat_gateway_sku,
        tags: raw.tags,
        nomad: raw.nomad,
        key_vault: raw.key_vault,
        health,
        custom_data,
        warnings,
    })
}

/// A setting with two accepted names: either, or both when they agree.
fn one_of(
    name: &str,
    value: Option<String>,
    other_name: &str,
    other: Option<String>,
) -> Result<Option<String>, Problem> {
    match (value, other) {
        (Some(a), Some(b)) if a != b => Err(bad(
            other_name,
            format!("and `{name}` name the same setting with different values: give one"),
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// Extra boot commands: inline under one of `inline`'s names, or from the file `file` names
/// (relative to the cluster file). At most one of them.
pub(super) fn boot_commands(
    base: &Path,
    inline: &[(&str, Option<&str>)],
    file: (&str, Option<&Path>),
) -> Result<Option<BootCommands>, Problem> {
    let named: Vec<&str> = inline
        .iter()
        .filter(|(_, value)| value.is_some())
        .map(|(field, _)| *field)
        .chain(file.1.map(|_| file.0))
        .collect();
    if named.len() > 1 {
        return Err(bad(
            named[1],
            format!("is given with `{}`: give the boot commands once", named[0]),
        ));
    }
    let mut given: Vec<(String, String, String)> = Vec::new();
    for (field, value) in inline {
        if let Some(text) = value {
            given.push((field.to_string(), field.to_string(), text.to_string()));
        }
    }
    if let (field, Some(path)) = file {
        let path = if path.is_relative() {
            base.join(path)
        } else {
            path.to_path_buf()
        };
        let bytes =
            std::fs::read(&path).map_err(|e| bad(field, format!("{}: {e}", path.display())))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            bad(
                field,
                format!("{} is not UTF-8 text: give a shell script", path.display()),
            )
        })?;
        given.push((
            field.to_string(),
            format!("{field} {}", path.display()),
            text,
        ));
    }
    let Some((field, origin, script)) = given.pop() else {
        return Ok(None);
    };
    if script.trim().is_empty() {
        return Ok(None);
    }
    crate::custom_data::check_boot_commands(&script).map_err(|problem| bad(&field, problem))?;
    Ok(Some(BootCommands {
        field,
        origin,
        script,
    }))
}

/// `subnet_id`, or the module's `subnet_ids` list when it names one subnet.
fn subnet(raw: &RawClusterFile) -> Result<Option<String>, Problem> {
    let Some(ids) = &raw.subnet_ids else {
        return Ok(raw.subnet_id.clone());
    };
    let mut distinct: Vec<&String> = Vec::new();
    for id in ids {
        if !distinct.iter().any(|d| d.eq_ignore_ascii_case(id)) {
            distinct.push(id);
        }
    }
    match distinct.as_slice() {
        [] => Ok(raw.subnet_id.clone()),
        [one] => {
            if let Some(id) = &raw.subnet_id {
                if !id.eq_ignore_ascii_case(one) {
                    return Err(bad(
                        "subnet_ids",
                        format!("names {one}, but `subnet_id` is {id}: give one subnet"),
                    ));
                }
            }
            Ok(Some((*one).clone()))
        }
        many => Err(bad(
            "subnet_ids",
            format!(
                "names {} subnets: a scale set's NICs are in one subnet, and an Azure subnet \
                 spans every availability zone of its region (one subnet per instance was the \
                 AWS way to spread them); give one subnet, and `zones` to spread the instances",
                many.len()
            ),
        )),
    }
}

/// `instance_tier`: the module's "standard" is the only tier Azure still sells.
fn tier(value: Option<&str>) -> Result<String, Problem> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("standard") => Ok("Standard".to_string()),
        Some("basic") => Err(bad(
            "instance_tier",
            "is \"basic\": the Basic tier holds only the Basic_A sizes, which Azure retired \
             with the A-series v1 on 2024-08-31; use \"standard\" (or leave it out)",
        )),
        Some(_) => Err(bad(
            "instance_tier",
            format!(
                "is {:?}: use \"standard\" (the module's other value, \"basic\", is retired)",
                value.unwrap_or_default()
            ),
        )),
    }
}

/// `os_disk_type`, or the module's `root_volume_type`. The module documented AWS EBS volume
/// types (`standard`, `gp2`, `io1`, and hard-coded Standard_LRS regardless); those are
/// translated to the nearest managed disk type, with a warning saying so.
fn disk_type(raw: &RawClusterFile, warnings: &mut Vec<Warning>) -> Result<String, Problem> {
    let from_volume_type = match &raw.root_volume_type {
        None => None,
        Some(v) => {
            let azure = DISK_TYPES.iter().find(|t| t.eq_ignore_ascii_case(v));
            let translated = match v.to_ascii_lowercase().as_str() {
                "standard" => Some("Standard_LRS"),
                "gp2" | "gp3" => Some("StandardSSD_LRS"),
                "io1" | "io2" => Some("Premium_LRS"),
                _ => None,
            };
            match (azure, translated) {
                (Some(t), _) => Some(t.to_string()),
                (None, Some(t)) => {
                    warnings.push(Warning {
                        field: "root_volume_type".into(),
                        message: format!(
                            "is {v:?}, an AWS EBS volume type: the OS disk is Azure's {t} \
                             (standard -> Standard_LRS, gp2 -> StandardSSD_LRS, io1 -> \
                             Premium_LRS); set `os_disk_type` to choose"
                        ),
                    });
                    Some(t.to_string())
                }
                (None, None) => {
                    return Err(bad(
                        "root_volume_type",
                        format!(
                            "is {v:?}: use a managed disk type ({}) or one of the module's \
                             standard, gp2, io1",
                            DISK_TYPES.join(", ")
                        ),
                    ))
                }
            }
        }
    };
    match (&raw.os_disk_type, from_volume_type) {
        (Some(a), Some(b)) if *a != b => Err(bad(
            "root_volume_type",
            format!("means {b}, but `os_disk_type` is {a}: give one"),
        )),
        (Some(a), _) => Ok(a.clone()),
        (None, Some(b)) => Ok(b),
        (None, None) => Ok(DEFAULT_OS_DISK_TYPE.to_string()),
    }
}

/// The module's variables that no longer mean anything: accepted, with a warning that says why.
fn obsolete(raw: &RawClusterFile, warnings: &mut Vec<Warning>) -> Result<(), Problem> {
    if raw.storage_account_name.is_some() {
        warnings.push(Warning {
            field: "storage_account_name".into(),
            message: "is obsolete and ignored: the scale sets use managed disks, which need no \
                      storage account (`os_disk_type` chooses the disk type)"
                .into(),
        });
    }
    if raw.wait_for_capacity_timeout.is_some() {
        warnings.push(Warning {
            field: "wait_for_capacity_timeout".into(),
            message: "is obsolete and ignored: it was how long Terraform waited for healthy \
                      instances; `apply` waits for the ARM deployment, the instances report \
                      their health to Azure, and `status` shows each one"
                .into(),
        });
    }
    match raw
        .tenancy
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None => {}
        Some("default") => warnings.push(Warning {
            field: "tenancy".into(),
            message: "is obsolete and ignored: it is an AWS EC2 setting; Azure scale sets run \
                      on shared hosts unless placed in a dedicated host group"
                .into(),
        }),
        Some(other) => {
            return Err(bad(
                "tenancy",
                format!(
                    "is {other:?}: dedicated hardware on Azure means a dedicated host group, \
                     which cluster-deploy does not create; remove `tenancy` to run on shared \
                     hosts (nothing is silently downgraded)"
                ),
            ))
        }
    }
    Ok(())
}

/// The NAT gateway SKU: as given, else zone-redundant StandardV2 when the scale sets span
/// zones (a Standard gateway lives in one zone, so that zone's outage would cut every node's
/// egress, and with it cloud auto-join).
fn nat_sku(
    raw: &RawClusterFile,
    existing_subnet: bool,
    warnings: &mut Vec<Warning>,
) -> Result<NatGatewaySku, Problem> {
    let spread = raw.zones.len() > 1;
    let egress = raw.egress.unwrap_or(if existing_subnet {
        Egress::Existing
    } else {
        Egress::NatGateway
    });
    let given = match raw.nat_gateway_sku.as_deref() {
        None => None,
        Some(v) if v.eq_ignore_ascii_case("standardv2") => Some(NatGatewaySku::StandardV2),
        Some(v) if v.eq_ignore_ascii_case("standard") => Some(NatGatewaySku::Standard),
        Some(v) => {
            return Err(bad(
                "nat_gateway_sku",
                format!("is {v:?}: use \"StandardV2\" (zone-redundant) or \"Standard\""),
            ))
        }
    };
    if given.is_some() && egress != Egress::NatGateway {
        return Err(bad(
            "nat_gateway_sku",
            format!("applies to `egress = \"nat-gateway\"`, not \"{egress}\""),
        ));
    }
    if given == Some(NatGatewaySku::Standard) && spread {
        warnings.push(Warning {
            field: "nat_gateway_sku".into(),
            message: format!(
                "is \"Standard\", a gateway in one zone, while the scale sets span zones {}: \
                 that zone's outage cuts every node's egress (and cloud auto-join); \
                 \"StandardV2\" is zone-redundant",
                raw.zones.join(", ")
            ),
        });
    }
    Ok(given.unwrap_or(if spread {
        NatGatewaySku::StandardV2
    } else {
        NatGatewaySku::Standard
    }))
}

fn health(raw: &RawHealth) -> HealthOptions {
    HealthOptions {
        automatic_repairs: raw.automatic_repairs.unwrap_or(true),
        repair_grace_period_minutes: raw
            .repair_grace_period_minutes
            .unwrap_or(DEFAULT_REPAIR_GRACE_MINUTES),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load_text, minimal_with, problem};
    use super::super::*;

    fn warnings_of(f: &ClusterFile) -> Vec<String> {
        f.warnings.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_module_variables_are_mapped_or_kept_as_warnings() {
        let f = load_text(&minimal_with(
            "image_id = DROP\n\
             ami_id = \"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/nomad\"\n\
             storage_account_name = \"nomadimages\"\n\
             wait_for_capacity_timeout = \"10m\"\n\
             tenancy = \"default\"\n\
             instance_tier = \"standard\"\n\
             root_volume_type = \"gp2\"\n\
             instance_root_volume_size = 40\n",
        ))
        .unwrap();
        assert!(f.image_id.ends_with("/images/nomad"));
        assert_eq!(f.instance_tier, "Standard");
        assert_eq!(f.os_disk_type, "StandardSSD_LRS");
        assert_eq!(f.root_volume_size, 40);
        let warnings = warnings_of(&f);
        for (field, why) in [
            ("storage_account_name", "managed disks"),
            ("wait_for_capacity_timeout", "Terraform"),
            ("tenancy", "AWS EC2"),
            ("root_volume_type", "AWS EBS volume type"),
        ] {
            assert!(
                warnings
                    .iter()
                    .any(|w| w.starts_with(&format!("`{field}`")) && w.contains(why)),
                "{field}: {warnings:?}"
            );
        }
        // Azure names need no translation, hence no warning.
        let f = load_text(&minimal_with("root_volume_type = \"Premium_LRS\"")).unwrap();
        assert_eq!(f.os_disk_type, "Premium_LRS");
        assert!(f.warnings.is_empty());
    }

    #[test]
    fn module_variables_that_cannot_hold_are_refused_by_name() {
        for (extra, field, why) in [
            ("instance_tier = \"basic\"", "instance_tier", "retired"),
            ("tenancy = \"dedicated\"", "tenancy", "dedicated host group"),
            ("root_volume_type = \"sc1\"", "root_volume_type", "managed disk type"),
            (
                "root_volume_type = \"io1\"\nos_disk_type = \"Standard_LRS\"",
                "root_volume_type",
                "give one",
            ),
            (
                "root_volume_size = 50\ninstance_root_volume_size = 40",
                "instance_root_volume_size",
                "give one",
            ),
            (
                "ami_id = \"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/images/other\"",
                "ami_id",
                "give one",
            ),
            ("custom_data = \"echo a\"\nuser_data = \"echo b\"", "user_data", "once"),
        ] {
            let text = problem(&minimal_with(extra));
            assert!(text.contains(&format!("`{field}`")), "{extra}: {text}");
            assert!(text.contains(why), "{extra}: {text}");
        }
    }

    #[test]
    fn subnet_ids_name_one_subnet() {
        let a = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/a";
        let b = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/b";
        let f = load_text(&minimal_with(&format!(
            "address_space = DROP\nsubnet_address = DROP\negress = \"existing\"\nsubnet_ids = [\"{a}\", \"{a}\"]"
        )))
        .unwrap();
        assert_eq!(f.subnet_id.as_deref(), Some(a));
        let text = problem(&minimal_with(&format!(
            "address_space = DROP\nsubnet_address = DROP\negress = \"existing\"\nsubnet_ids = [\"{a}\", \"{b}\"]"
        )));
        assert!(text.contains("`subnet_ids` names 2 subnets"), "{text}");
        assert!(text.contains("spans every availability zone"), "{text}");
    }

    #[test]
    fn custom_data_is_read_checked_and_relative_to_the_cluster_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("boot")).unwrap();
        std::fs::write(
            dir.path().join("boot/extra.sh"),
            "#!/bin/bash\napt-get install -y jq\n",
        )
        .unwrap();
        let path = dir.path().join("cluster.toml");
        let f = parse(&path, &minimal_with("custom_data_file = \"boot/extra.sh\"")).unwrap();
        let commands = f.custom_data.unwrap();
        assert_eq!(commands.script, "#!/bin/bash\napt-get install -y jq\n");
        assert_eq!(commands.field, "custom_data_file");
        let text = parse(
            &path,
            &minimal_with("custom_data_file = \"boot/missing.sh\""),
        )
        .unwrap_err()
        .to_string();
        assert!(text.contains("`custom_data_file`"), "{text}");
        assert!(text.contains("missing.sh"), "{text}");
        // The module's custom_data started Nomad itself; ours runs before run-nomad.
        let text = problem(&minimal_with(
            "custom_data = \"#!/bin/bash\\n/opt/nomad/bin/run-nomad --server --num-servers 3\\n\"",
        ));
        assert!(
            text.contains("`custom_data` runs run-nomad (line 2)"),
            "{text}"
        );
        let text = problem(&minimal_with(
            "custom_data = \"echo\"\ncustom_data_file = \"x.sh\"",
        ));
        assert!(
            text.contains("`custom_data_file` is given with `custom_data`"),
            "{text}"
        );
        // The README's user_data is the same setting.
        let f = load_text(&minimal_with("user_data = \"echo hi\"")).unwrap();
        assert_eq!(f.custom_data.unwrap().field, "user_data");
    }

    #[test]
    fn the_nat_gateway_is_zone_redundant_when_the_scale_sets_span_zones() {
        let f = load_text(&minimal_with("zones = [\"1\", \"2\"]")).unwrap();
        assert_eq!(f.nat_gateway_sku, NatGatewaySku::StandardV2);
        let f = load_text(&minimal_with("zones = [\"1\"]")).unwrap();
        assert_eq!(f.nat_gateway_sku, NatGatewaySku::Standard);
        let f = load_text(&minimal_with(
            "zones = [\"1\", \"2\", \"3\"]\nnat_gateway_sku = \"Standard\"",
        ))
        .unwrap();
        assert_eq!(f.nat_gateway_sku, NatGatewaySku::Standard);
        assert!(
            warnings_of(&f)[0].contains("that zone's outage"),
            "{:?}",
            f.warnings
        );
        let text = problem(&minimal_with(
            "associate_public_ip_address_load_balancer = true\negress = \"load-balancer\"\nnat_gateway_sku = \"StandardV2\"",
        ));
        assert!(text.contains("`nat_gateway_sku` applies to"), "{text}");
    }
}
