//! Checks of single fields: names Azure and Nomad accept, ports, tags. Each returns the field
//! at fault and why, in words an operator can act on.

use super::{bad, ClusterFile, NomadOptions, Problem};

pub(super) fn check_location(location: &str) -> Result<(), Problem> {
    let ok = !location.is_empty()
        && location
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(bad(
            "location",
            format!(
                "is {location:?}: use the region's programmatic name, lower case without spaces \
                 (e.g. \"westeurope\", as `az account list-locations` shows it)"
            ),
        ))
    }
}

/// Azure's rule for resource group names: 1-90 of letters, digits, `-_.()`, not ending in `.`.
pub(super) fn check_resource_group(name: &str) -> Result<(), Problem> {
    let ok = (1..=90).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
        && !name.ends_with('.');
    if ok {
        Ok(())
    } else {
        Err(bad(
            "resource_group_name",
            format!(
                "is {name:?}: use 1-90 letters, digits, '-', '_', '.', '(' or ')', not ending in '.'"
            ),
        ))
    }
}

/// `len` lower-case letters, digits and '-', starting with a letter, not ending with '-': the
/// shape of cluster names, pool names and DNS labels.
pub(super) fn is_lower_name(name: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    let b = name.as_bytes();
    len.contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !name.ends_with('-')
}

/// `len` letters, digits and '-', starting with a letter: a host name prefix.
fn is_host_prefix(prefix: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&prefix.len())
        && prefix.as_bytes()[0].is_ascii_alphabetic()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Every resource name is derived from the cluster name, so it must fit the strictest of them
/// (scale set and load balancer names; the computer name prefix is separate).
pub(super) fn check_cluster_name(name: &str) -> Result<(), Problem> {
    if is_lower_name(name, 1..=40) {
        Ok(())
    } else {
        Err(bad(
            "cluster_name",
            format!(
                "is {name:?}: use 1-40 lower-case letters, digits and '-', starting with a letter \
                 and not ending with '-' (it names every resource and tags them)"
            ),
        ))
    }
}

pub(super) fn check_image_id(id: &str) -> Result<(), Problem> {
    let lower = id.to_ascii_lowercase();
    let segments: Vec<&str> = lower.split('/').collect();
    let shaped = lower.starts_with("/subscriptions/")
        && segments.len() >= 9
        && segments.iter().skip(1).all(|s| !s.is_empty())
        && segments[3] == "resourcegroups"
        && segments[5] == "providers"
        && segments[6] == "microsoft.compute"
        && (segments[7] == "images" || segments[7] == "galleries");
    if shaped {
        Ok(())
    } else {
        Err(bad(
            "image_id",
            format!(
                "is {id:?}: use the resource id of a managed image \
                 (/subscriptions/<id>/resourceGroups/<rg>/providers/Microsoft.Compute/images/<name>) \
                 or of a gallery image version, as image-builder records it"
            ),
        ))
    }
}

pub(super) fn check_vm_size(field: &str, size: &str) -> Result<(), Problem> {
    let ok = size.starts_with("Standard_")
        && size.len() > "Standard_".len()
        && size.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("is {size:?}: use an Azure VM size such as \"Standard_D2s_v5\""),
        ))
    }
}

/// Linux computer names: letters, digits and '-'; Azure appends a 6-character instance suffix,
/// and the server/client prefixes add 2 more, to a 15-character host name limit we keep to so
/// that names stay readable in `nomad node status`.
pub(super) fn check_computer_name_prefix(prefix: &str) -> Result<(), Problem> {
    if is_host_prefix(prefix, 1..=7) {
        Ok(())
    } else {
        Err(bad(
            "computer_name_prefix",
            format!(
                "is {prefix:?}: use 1-7 letters, digits and '-', starting with a letter (the \
                 scale sets add \"-s\"/\"-c\" and Azure a 6-character instance suffix)"
            ),
        ))
    }
}

/// Names Azure refuses as the admin user of a Linux VM.
const RESERVED_USERS: &[&str] = &[
    "administrator",
    "admin",
    "user",
    "user1",
    "test",
    "user2",
    "test1",
    "user3",
    "admin1",
    "1",
    "123",
    "a",
    "actuser",
    "adm",
    "admin2",
    "aspnet",
    "backup",
    "console",
    "david",
    "guest",
    "john",
    "owner",
    "root",
    "server",
    "sql",
    "support",
    "support_388945a0",
    "sys",
    "test2",
    "test3",
    "user4",
    "user5",
    "nomad",
];

pub(super) fn check_admin_user(user: &str) -> Result<(), Problem> {
    let shaped = (1..=32).contains(&user.len())
        && (user.as_bytes()[0].is_ascii_lowercase() || user.starts_with('_'))
        && user
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !shaped {
        return Err(bad(
            "admin_user_name",
            format!("is {user:?}: use 1-32 lower-case letters, digits, '_' or '-', starting with a letter"),
        ));
    }
    if RESERVED_USERS.contains(&user) {
        return Err(bad(
            "admin_user_name",
            format!("is {user:?}, a name Azure reserves (or Nomad's own service user)"),
        ));
    }
    Ok(())
}

pub(super) fn check_ports(f: &ClusterFile) -> Result<(), Problem> {
    let ports = [
        ("http_port", f.http_port),
        ("rpc_port", f.rpc_port),
        ("serf_port", f.serf_port),
        ("ssh_port", f.ssh_port),
    ];
    for (field, port) in ports {
        if port == 0 {
            return Err(bad(field, "is 0: use a port from 1 to 65535"));
        }
    }
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if pa == pb {
                return Err(bad(b, format!("is {pb}, the same port as `{a}`")));
            }
        }
    }
    Ok(())
}

/// Azure tag rules: names up to 512 characters without `<>%&\?/`, values up to 256.
pub(super) fn check_tag(key: &str, value: &str) -> Result<(), Problem> {
    let field = format!("tags.{key}");
    // A key starting with '[' would be read as a template expression.
    if key.is_empty()
        || key.len() > 512
        || key.starts_with('[')
        || key.contains(['<', '>', '%', '&', '\\', '?', '/'])
    {
        return Err(bad(
            &field,
            "is not a valid Azure tag name (1-512 characters, none of < > % & \\ ? /, not starting with [)",
        ));
    }
    if value.len() > 256 {
        return Err(bad(&field, "is longer than 256 characters"));
    }
    Ok(())
}

pub(super) fn check_nomad(n: &NomadOptions) -> Result<(), Problem> {
    if !n.run_nomad.starts_with('/') {
        return Err(bad(
            "nomad.run_nomad",
            format!("is {:?}: give the absolute path on the image", n.run_nomad),
        ));
    }
    for (field, value) in [
        ("nomad.datacenter", &n.datacenter),
        ("nomad.region", &n.region),
        ("nomad.node_class", &n.node_class),
    ] {
        if let Some(v) = value {
            check_nomad_name(field, v)?;
        }
    }
    for key in n.meta.keys() {
        check_meta_key(&format!("nomad.meta.{key}"), key)?;
    }
    Ok(())
}

/// Datacenter, region and node class: Nomad accepts free text, but these reach HCL and a shell
/// line, so keep them to the characters any sane name uses.
pub(super) fn check_nomad_name(field: &str, value: &str) -> Result<(), Problem> {
    let ok = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            format!("is {value:?}: use 1-128 letters, digits, '_', '-' or '.'"),
        ))
    }
}

/// Client metadata keys: these characters only, and the dotted form Nomad's agent accepts at
/// start (`^[^.]+(\.[^.]+)*$`: no leading, trailing or doubled dot).
pub(super) fn check_meta_key(field: &str, key: &str) -> Result<(), Problem> {
    let ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && key.split('.').all(|part| !part.is_empty());
    if ok {
        Ok(())
    } else {
        Err(bad(
            field,
            "is not a usable meta key (letters, digits, '_', '-', '.'; no leading, trailing or \
             doubled '.', which Nomad refuses at start)",
        ))
    }
}

/// Nomad's rule for node pool names (`nomad/structs/node_pool.go`, `validNodePoolName`:
/// `^[a-zA-Z0-9-_]{1,128}$`); the built-in `all` pool cannot be a node's pool (the agent
/// refuses it at start).
pub(super) fn check_node_pool(field: &str, value: &str) -> Result<(), Problem> {
    let shaped = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if !shaped {
        return Err(bad(
            field,
            format!("is {value:?}: Nomad node pool names are 1-128 letters, digits, '_' or '-'"),
        ));
    }
    if value == "all" {
        return Err(bad(
            field,
            "is \"all\", Nomad's built-in pool of every node: a client cannot be placed in it",
        ));
    }
    Ok(())
}

/// A scale set's computer name prefix: Azure allows 1-15 characters
/// (`VirtualMachineScaleSetOSProfile.computerNamePrefix`, Compute 2024-11-01) and appends a
/// 6-character instance suffix; Linux host names are letters, digits and '-'.
pub(super) fn check_scale_set_prefix(field: &str, prefix: &str) -> Result<(), Problem> {
    if is_host_prefix(prefix, 1..=15) {
        Ok(())
    } else {
        Err(bad(
            field,
            format!(
                "is {prefix:?}: a scale set's computer name prefix is 1-15 letters, digits and \
                 '-', starting with a letter (Azure's limit; it appends a 6-character instance \
                 suffix)"
            ),
        ))
    }
}

/// Azure's rule for a public IP's DNS label (`<label>.<region>.cloudapp.azure.com`): 3-63
/// characters, lower-case letters, digits and '-', starting with a letter and ending with a
/// letter or digit (`^[a-z][a-z0-9-]{1,61}[a-z0-9]$`, the pattern Network's
/// `DnsRecordInvalid` error quotes).
pub(super) fn check_domain_name_label(label: &str) -> Result<(), Problem> {
    if is_lower_name(label, 3..=63) {
        Ok(())
    } else {
        Err(bad(
            "domain_name_label",
            format!(
                "is {label:?}: Azure DNS labels are 3-63 lower-case letters, digits and '-', \
                 starting with a letter and ending with a letter or digit"
            ),
        ))
    }
}
