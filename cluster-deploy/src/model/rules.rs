//! The NSG's inbound rules, decided from the cluster file.

use super::{Protocol, Rule, Source, DYNAMIC_PORTS};
use crate::config::ClusterFile;

/// The NSG's inbound rules: the API from the allowed CIDRs, SSH from the SSH CIDRs, Nomad's
/// RPC, Serf and dynamic ports within the cluster, the load balancer's probe, and a final deny
/// so that nothing else (not even the rest of the virtual network, which Azure's default
/// `AllowVnetInBound` would admit) gets in.
///
/// Every rule is always there, under the same name and priority: once the NSG exists, each
/// rule is deployed as its own child resource (so rules added outside cluster-deploy stay,
/// see [`crate::template`]), and a rule left out of the template would then stay in Azure as it
/// was. So a rule with nothing to admit (an empty CIDR list, no load balancer) becomes a deny
/// rule rather than disappearing.
pub(super) fn rules(f: &ClusterFile, lb: bool) -> Vec<Rule> {
    let mut rules = Vec::new();
    let mut priority = 100;
    let mut push = |name: &str, protocol, source: Source, ports: String, description: &str| {
        let allow = !matches!(&source, Source::Cidrs(c) if c.is_empty());
        let source = if allow { source } else { Source::Any };
        rules.push(Rule {
            name: name.to_string(),
            priority,
            allow,
            protocol: Some(protocol),
            source,
            ports,
            description: description.to_string(),
        });
        priority += 10;
    };
    push(
        "nomad-http",
        Protocol::Tcp,
        Source::Cidrs(f.allowed_inbound_cidr_blocks.clone()),
        f.http_port.to_string(),
        if f.allowed_inbound_cidr_blocks.is_empty() {
            "Nomad HTTP API: closed (allowed_inbound_cidr_blocks is empty)"
        } else {
            "Nomad HTTP API from allowed_inbound_cidr_blocks"
        },
    );
    push(
        "ssh",
        Protocol::Tcp,
        Source::Cidrs(f.allowed_ssh_cidr_blocks.clone()),
        f.ssh_port.to_string(),
        if f.allowed_ssh_cidr_blocks.is_empty() {
            "SSH: closed (allowed_ssh_cidr_blocks is empty)"
        } else {
            "SSH from allowed_ssh_cidr_blocks"
        },
    );
    push(
        "nomad-rpc",
        Protocol::Tcp,
        Source::Cluster,
        f.rpc_port.to_string(),
        "Nomad RPC between cluster nodes",
    );
    push(
        "nomad-serf-tcp",
        Protocol::Tcp,
        Source::Cluster,
        f.serf_port.to_string(),
        "Nomad Serf gossip (TCP) between cluster nodes",
    );
    push(
        "nomad-serf-udp",
        Protocol::Udp,
        Source::Cluster,
        f.serf_port.to_string(),
        "Nomad Serf gossip (UDP) between cluster nodes",
    );
    let dynamic = format!("{}-{}", DYNAMIC_PORTS.0, DYNAMIC_PORTS.1);
    push(
        "nomad-dynamic-tcp",
        Protocol::Tcp,
        Source::Cluster,
        dynamic.clone(),
        "Nomad task dynamic ports (TCP) between cluster nodes",
    );
    push(
        "nomad-dynamic-udp",
        Protocol::Udp,
        Source::Cluster,
        dynamic,
        "Nomad task dynamic ports (UDP) between cluster nodes",
    );
    push(
        "lb-probe",
        Protocol::Tcp,
        Source::AzureLoadBalancer,
        f.http_port.to_string(),
        "the load balancer's health probe of the Nomad API",
    );
    if !lb {
        let probe = rules.last_mut().expect("just pushed");
        probe.allow = false;
        probe.description = "no load balancer: its probe is not admitted".to_string();
    }
    rules.push(Rule {
        name: "deny-other-inbound".to_string(),
        priority: 4096,
        allow: false,
        protocol: None,
        source: Source::Any,
        ports: "*".to_string(),
        description: "nothing else: overrides Azure's default AllowVnetInBound".to_string(),
    });
    rules
}

#[cfg(test)]
mod tests {
    use super::super::tests::{example, example_with};
    use super::super::*;

    #[test]
    fn rules_admit_exactly_the_configured_cidrs_and_the_cluster() {
        let cluster = example();
        let by_name = |n: &str| cluster.rules.iter().find(|r| r.name == n).unwrap();
        assert_eq!(
            by_name("nomad-http").source,
            Source::Cidrs(vec!["203.0.113.0/24".into()])
        );
        assert_eq!(by_name("nomad-http").ports, "4646");
        assert_eq!(
            by_name("ssh").source,
            Source::Cidrs(vec!["198.51.100.7/32".into()])
        );
        assert_eq!(by_name("ssh").ports, "22");
        for name in ["nomad-rpc", "nomad-serf-tcp", "nomad-serf-udp"] {
            assert_eq!(by_name(name).source, Source::Cluster, "{name}");
        }
        let last = cluster.rules.last().unwrap();
        assert!(!last.allow && last.source == Source::Any && last.priority == 4096);
        let mut priorities: Vec<_> = cluster.rules.iter().map(|r| r.priority).collect();
        priorities.dedup();
        assert_eq!(
            priorities.len(),
            cluster.rules.len(),
            "priorities are unique"
        );
    }

    #[test]
    fn empty_cidr_lists_open_nothing_and_keep_their_rules_as_denies() {
        let open = example();
        let cluster =
            example_with("allowed_ssh_cidr_blocks = []\nallowed_inbound_cidr_blocks = []");
        assert!(cluster
            .rules
            .iter()
            .all(|r| !matches!(r.source, Source::Cidrs(_))));
        // Same names, same priorities: a redeploy overwrites the rule that used to admit.
        let names = |c: &Cluster| -> Vec<(String, u16)> {
            c.rules
                .iter()
                .map(|r| (r.name.clone(), r.priority))
                .collect()
        };
        assert_eq!(names(&open), names(&cluster));
        for name in ["nomad-http", "ssh"] {
            let rule = cluster.rules.iter().find(|r| r.name == name).unwrap();
            assert!(!rule.allow && rule.source == Source::Any, "{rule:?}");
        }
    }
}
