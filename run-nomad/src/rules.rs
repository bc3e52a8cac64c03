//! The rules Nomad applies to agent settings when it starts, so that a value Nomad would refuse
//! (and crash-loop on under systemd) is refused here first, naming the flag. Each rule cites
//! where Nomad applies it; each function returns the reason a value breaks it. Pure.
//!
//! Sources (hashicorp/nomad): `command/agent/command.go` `IsValidConfig` (region, datacenter,
//! meta keys, node pool), `helper.IsValidInterpVariable` (meta keys), `nomad/structs`
//! `ValidateNodePoolName`, `command/agent/log_levels.go` (log levels), `nomad/server.go`
//! `setupRPC` ("Client RPC advertise address is not advertisable" for 0.0.0.0 and ::).

use std::net::IpAddr;

/// `IsValidConfig`: "Region contains invalid characters" for a NUL. Empty means Nomad's
/// default, which we never write.
pub fn region(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value.contains('\0') {
        return Err("contains a NUL character, which Nomad refuses in a region".into());
    }
    Ok(())
}

/// `IsValidConfig`: "Datacenter contains invalid characters (null or '*')". `*` is refused
/// because job specifications use it as a datacenter wildcard.
pub fn datacenter(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty".into());
    }
    if value.contains(['\0', '*']) {
        return Err(
            "contains `*` or a NUL character, which Nomad refuses in a datacenter (`*` is the \
             wildcard of a job's datacenters)"
                .into(),
        );
    }
    Ok(())
}

/// `IsValidConfig` refuses client meta keys that do not match `^[^.]+(\.[^.]+)*$`
/// (`helper.IsValidInterpVariable`): non-empty, dot-separated parts, none of them empty.
pub fn meta_key(key: &str) -> Result<(), String> {
    if key.split('.').any(str::is_empty) {
        return Err(
            "Nomad refuses meta keys that are empty, start or end with `.`, or hold `..` (it \
             requires ^[^.]+(\\.[^.]+)*$)"
                .into(),
        );
    }
    Ok(())
}

/// The node pool Nomad creates or joins: `^[a-zA-Z0-9-_]{1,128}$`, and never `all`, the built-in
/// pool of every node (`IsValidConfig`: "Invalid node pool").
pub fn node_pool(value: &str) -> Result<(), String> {
    let valid = (1..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err("Nomad requires 1 to 128 letters, digits, `-` or `_`".into());
    }
    if value == "all" {
        return Err(
            "`all` is Nomad's built-in pool of every node; no node may register in it".into(),
        );
    }
    Ok(())
}

/// `node_class` is "an arbitrary string" in Nomad's documentation and has no start-time rule;
/// an empty one means "no class", which the flag cannot mean.
pub fn node_class(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("is empty (leave --node-class out for no class)".into());
    }
    Ok(())
}

/// An address other agents can reach this one at. Nomad's server refuses an unspecified
/// address at start ("Client RPC advertise address is not advertisable"); loopback, multicast,
/// broadcast and link-local addresses start but can never be reached by another VM, so the
/// cluster never forms.
pub fn advertise_address(address: IpAddr) -> Result<(), String> {
    let problem = match address {
        a if a.is_unspecified() => {
            Some("the unspecified address, which Nomad refuses to advertise")
        }
        a if a.is_loopback() => Some("a loopback address, which no other agent can reach"),
        a if a.is_multicast() => Some("a multicast address"),
        IpAddr::V4(v4) if v4.is_broadcast() => Some("the broadcast address"),
        IpAddr::V4(v4) if v4.is_link_local() => {
            Some("a link-local address (169.254.0.0/16 is Azure's platform range, such as IMDS)")
        }
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => {
            Some("an IPv6 link-local address, which needs an interface scope no other agent has")
        }
        _ => None,
    };
    match problem {
        Some(p) => Err(format!("is {p}; give a private address of this VM")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keys_follow_nomads_pattern() {
        for ok in ["rack", "a.b", "azure.zone", "a b", "x/y=z", "ü.ß"] {
            meta_key(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["", ".rack", "a..b", "zone.", ".", "a.b."] {
            assert!(meta_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn datacenters_and_regions() {
        datacenter("eastus2").unwrap();
        for bad in ["dc*", "*", "", "a\0b"] {
            assert!(datacenter(bad).is_err(), "{bad:?}");
        }
        region("europe*").unwrap();
        assert!(region("").is_err());
        assert!(region("a\0").is_err());
    }

    #[test]
    fn node_pools() {
        for ok in ["default", "gpu_pool-2", &"a".repeat(128)] {
            node_pool(ok).unwrap();
        }
        for bad in ["", "all", "with space", "dot.ted", &"a".repeat(129), "é"] {
            assert!(node_pool(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn advertise_addresses_must_be_reachable() {
        for ok in [
            "10.0.0.4",
            "172.16.5.4",
            "192.168.1.1",
            "fd00::4",
            "20.1.2.3",
        ] {
            advertise_address(ok.parse().unwrap()).unwrap();
        }
        for bad in [
            "0.0.0.0",
            "::",
            "127.0.0.1",
            "::1",
            "224.0.0.1",
            "255.255.255.255",
            "169.254.169.254",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(advertise_address(bad.parse().unwrap()).is_err(), "{bad}");
        }
    }
}
