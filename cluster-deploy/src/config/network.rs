//! The network the cluster lives in: CIDR blocks, the subnet (existing or created), egress,
//! zones, and the load balancer's port ranges.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{bad, ClusterFile, Egress, Problem};

/// An IPv4 CIDR block in canonical form (no host bits set), or a single address.
pub fn parse_cidr(value: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net = if value.contains('/') {
        value
            .parse()
            .map_err(|_| format!("{value:?} is not an IPv4 CIDR block such as 203.0.113.0/24"))?
    } else {
        let ip: Ipv4Addr = value
            .parse()
            .map_err(|_| format!("{value:?} is not an IPv4 CIDR block such as 203.0.113.0/24"))?;
        Ipv4Net::new(ip, 32).expect("32 is a valid prefix length")
    };
    if net.trunc() != net {
        return Err(format!(
            "{value:?} has host bits set: did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}

pub(super) fn check_cidr(field: &str, value: &str) -> Result<(), Problem> {
    parse_cidr(value).map(|_| ()).map_err(|e| bad(field, e))
}

pub(super) fn check_network(f: &ClusterFile) -> Result<(), Problem> {
    match (&f.subnet_id, &f.address_space, &f.subnet_address) {
        (Some(id), None, None) => {
            check_subnet_id(id)?;
            match f.egress {
                None => {
                    return Err(bad(
                        "egress",
                        "must be set with `subnet_id`: \"existing\" when that subnet already has \
                         outbound access (NAT gateway, firewall), or \"load-balancer\" for an \
                         outbound rule on the cluster's load balancer (subnets made with Network \
                         api-version 2025-07-01 or later have no default outbound access)",
                    ))
                }
                Some(Egress::NatGateway) => {
                    return Err(bad(
                        "egress",
                        "is \"nat-gateway\", which needs a subnet cluster-deploy creates: with \
                         `subnet_id`, attach a NAT gateway to that subnet yourself and say \
                         \"existing\", or use \"load-balancer\"",
                    ))
                }
                Some(_) => {}
            }
        }
        (Some(_), _, _) => {
            return Err(bad(
                "subnet_id",
                "cannot be combined with `address_space`/`subnet_address`: use an existing \
                 subnet or let cluster-deploy create one, not both",
            ))
        }
        (None, Some(space), Some(subnet)) => {
            let space_net = parse_cidr(space).map_err(|e| bad("address_space", e))?;
            let subnet_net = parse_cidr(subnet).map_err(|e| bad("subnet_address", e))?;
            if !space_net.contains(&subnet_net) {
                return Err(bad(
                    "subnet_address",
                    format!("{subnet} is not inside address_space {space}"),
                ));
            }
            // Azure keeps 5 addresses of every subnet; /29 is its smallest.
            if subnet_net.prefix_len() > 29 {
                return Err(bad(
                    "subnet_address",
                    format!("{subnet} is smaller than /29, the smallest subnet Azure allows"),
                ));
            }
            let usable = (1u64 << (32 - subnet_net.prefix_len())) - 5;
            let wanted = u64::from(f.instances());
            if wanted > usable {
                return Err(bad(
                    "subnet_address",
                    format!(
                        "{subnet} has {usable} usable addresses, fewer than the {wanted} instances"
                    ),
                ));
            }
            if f.egress == Some(Egress::Existing) {
                return Err(bad(
                    "egress",
                    "is \"existing\", but the subnet is created here and has no egress of its \
                     own: use \"nat-gateway\" or \"load-balancer\"",
                ));
            }
        }
        (None, None, None) => {
            return Err(bad(
                "subnet_id",
                "is missing: give `subnet_id` (an existing subnet) or `address_space` and \
                 `subnet_address` (a virtual network to create)",
            ))
        }
        (None, None, Some(_)) => return Err(bad("address_space", "is missing")),
        (None, Some(_), None) => return Err(bad("subnet_address", "is missing")),
    }
    let egress = f.egress.unwrap_or(Egress::NatGateway);
    if egress == Egress::LoadBalancer && !f.associate_public_ip_address_load_balancer {
        return Err(bad(
            "egress",
            "is \"load-balancer\", which needs `associate_public_ip_address_load_balancer = true`",
        ));
    }
    if f.associate_public_ip_address_load_balancer {
        // One frontend port per instance on the SSH NAT rule: the range grows with the
        // cluster, and must stay clear of the API rule's frontend port.
        let (first, last) = crate::model::ssh_frontend_ports(f.instances());
        if (first..=last).contains(&f.http_port) {
            return Err(bad(
                "http_port",
                format!(
                    "is {}, inside the load balancer's SSH port range {first}-{last} (one port \
                     per instance of the {} instances): use a port above {last}",
                    f.http_port,
                    f.instances()
                ),
            ));
        }
    } else if let Some(label) = &f.domain_name_label {
        return Err(bad(
            "domain_name_label",
            format!(
                "is {label:?}, but there is no public IP to carry it: set \
                 `associate_public_ip_address_load_balancer = true`"
            ),
        ));
    }
    if let Some(label) = &f.domain_name_label {
        super::checks::check_domain_name_label(label)?;
    }
    check_zones(&f.zones)?;
    Ok(())
}

pub(super) fn check_subnet_id(id: &str) -> Result<(), Problem> {
    let lower = id.to_ascii_lowercase();
    let s: Vec<&str> = lower.split('/').collect();
    let ok = s.len() == 11
        && s[0].is_empty()
        && s[1] == "subscriptions"
        && s[3] == "resourcegroups"
        && s[5] == "providers"
        && s[6] == "microsoft.network"
        && s[7] == "virtualnetworks"
        && s[9] == "subnets"
        && s.iter().skip(1).all(|p| !p.is_empty());
    if ok {
        Ok(())
    } else {
        Err(bad(
            "subnet_id",
            format!(
                "is {id:?}: use a subnet resource id, /subscriptions/<id>/resourceGroups/<rg>/\
                 providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>"
            ),
        ))
    }
}

/// Availability zones: "1", "2" or "3", each once.
fn check_zones(zones: &[String]) -> Result<(), Problem> {
    for (i, zone) in zones.iter().enumerate() {
        if !matches!(zone.as_str(), "1" | "2" | "3") {
            return Err(bad(
                &format!("zones[{i}]"),
                format!("is {zone:?}: Azure availability zones are \"1\", \"2\" and \"3\""),
            ));
        }
    }
    let mut sorted = zones.to_vec();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != zones.len() {
        return Err(bad("zones", "lists a zone twice"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load_text, minimal_with, problem};

    #[test]
    fn the_dns_label_follows_azure_rules_and_needs_the_public_ip() {
        let lb = "associate_public_ip_address_load_balancer = true\n";
        let f = load_text(&minimal_with(&format!(
            "{lb}domain_name_label = \"nomad-prod-1\""
        )))
        .unwrap();
        assert_eq!(f.domain_name_label.as_deref(), Some("nomad-prod-1"));
        for label in [
            "ab",
            "Nomad",
            "1nomad",
            "nomad-",
            "nomad_prod",
            &"a".repeat(64),
        ] {
            let text = problem(&minimal_with(&format!(
                "{lb}domain_name_label = \"{label}\""
            )));
            assert!(text.contains("`domain_name_label`"), "{label}: {text}");
        }
        let text = problem(&minimal_with("domain_name_label = \"nomad-prod\""));
        assert!(text.contains("no public IP"), "{text}");
    }

    #[test]
    fn the_ssh_port_range_must_miss_the_api_port() {
        let text = problem(&minimal_with(
            "associate_public_ip_address_load_balancer = true\nhttp_port = 2250",
        ));
        assert!(
            text.contains(
                "`http_port` is 2250, inside the load balancer's SSH port range 2200-2299"
            ),
            "{text}"
        );
        // 150 clients and a load balancer: the range grows to 2200-2399, clear of 4646.
        assert!(load_text(&minimal_with(
            "associate_public_ip_address_load_balancer = true\nsubnet_address = \"10.0.0.0/20\"\nnum_clients = 150",
        ))
        .is_ok());
    }
}
