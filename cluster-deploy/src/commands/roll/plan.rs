//! What a roll will do, decided from the state alone (pure): the order servers are replaced in
//! (servers whose agent is already gone first, then followers, the leader last) and the
//! batches clients go in. The same functions pick each next step during the roll, so the plan
//! `--dry-run` prints is the order the roll follows.

use serde::Serialize;

use super::state::{ClientInstance, ClientSet, Instance, ServerInstance, ServerSet};

/// New-model servers that are not yet healthy voters: joining (or failing to).
pub(super) fn joining_servers(set: &ServerSet) -> Vec<&ServerInstance> {
    set.new_model().filter(|s| !s.healthy_voter()).collect()
}

/// Old servers in the order they go: dead agents first (they hold nothing), then followers by
/// instance id, then the leader.
pub(super) fn server_order(set: &ServerSet) -> Vec<&ServerInstance> {
    let mut old: Vec<&ServerInstance> = set.old().collect();
    old.sort_by_key(|s| (!s.dead(), s.leader(), s.instance.order_key()));
    old
}

/// Old clients in batches of `size`: those a previous run already took out of service (drain
/// started or done, or ineligible) first, then dead ones (no node, or down), then the rest by
/// instance id.
pub(super) fn client_batches(set: &ClientSet, size: u32) -> Vec<Vec<&ClientInstance>> {
    let mut old: Vec<&ClientInstance> = set.old().collect();
    old.sort_by_key(|c| {
        let started = c
            .node
            .as_ref()
            .is_some_and(|n| n.draining || n.drained || !n.eligible);
        let dead = c.node.as_ref().is_none_or(|n| n.status == "down");
        (!started, !dead, c.instance.order_key())
    });
    old.chunks(size.max(1) as usize)
        .map(<[_]>::to_vec)
        .collect()
}

/// New-model clients beyond the pool's count once no old one is left to replace (instances
/// Azure's automatic repairs re-created on the latest model during a roll, or old ones an
/// operator upgraded in place): the roll drains and deletes them, so the pool ends at its
/// count. Nodes not in service go first (nothing to move), then those with the fewest
/// allocations, then the newest instance (as Azure's default scale-in policy would pick).
pub(super) fn surplus_clients(set: &ClientSet) -> Vec<&ClientInstance> {
    if set.old().next().is_some() {
        // The batches still to come bring the pool back to its count.
        return Vec::new();
    }
    let surplus = set.instances.len().saturating_sub(set.wanted as usize);
    let mut new: Vec<&ClientInstance> = set.new_model().collect();
    new.sort_by_key(|c| {
        let in_service = c.node.as_ref().is_some_and(|n| n.in_service());
        let allocations = c.node.as_ref().map_or(0, |n| n.allocations);
        (
            in_service,
            allocations,
            std::cmp::Reverse(c.instance.order_key()),
        )
    });
    new.truncate(surplus);
    new
}

/// New-model clients whose node does not take work yet.
pub(super) fn joining_clients(set: &ClientSet) -> Vec<&ClientInstance> {
    set.new_model()
        .filter(|c| !c.node.as_ref().is_some_and(|n| n.in_service()))
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ServerStep {
    pub(super) instance: Instance,
    pub(super) leader: bool,
    pub(super) dead: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct PoolPlan {
    pub(super) scale_set: String,
    pub(super) label: String,
    pub(super) wanted: u32,
    pub(super) joining: Vec<Instance>,
    pub(super) batches: Vec<Vec<Instance>>,
    /// New-model instances above the count, drained and deleted once no old one is left
    /// (known now only when none is left already).
    pub(super) surplus: Vec<Instance>,
}

/// The whole plan, for `--dry-run` and the `plan` event.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Plan {
    pub(super) server_scale_set: Option<String>,
    pub(super) servers_joining: Vec<Instance>,
    pub(super) servers: Vec<ServerStep>,
    pub(super) pools: Vec<PoolPlan>,
}

impl Plan {
    pub(super) fn new(servers: Option<&ServerSet>, pools: &[ClientSet], batch: u32) -> Self {
        Self {
            server_scale_set: servers.map(|s| s.scale_set.clone()),
            servers_joining: servers
                .map(|s| {
                    joining_servers(s)
                        .into_iter()
                        .map(|i| i.instance.clone())
                        .collect()
                })
                .unwrap_or_default(),
            servers: servers
                .map(|s| {
                    server_order(s)
                        .into_iter()
                        .map(|i| ServerStep {
                            instance: i.instance.clone(),
                            leader: i.leader(),
                            dead: i.dead(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            pools: pools
                .iter()
                .map(|p| PoolPlan {
                    scale_set: p.scale_set.clone(),
                    label: p.label(),
                    wanted: p.wanted,
                    joining: joining_clients(p)
                        .into_iter()
                        .map(|c| c.instance.clone())
                        .collect(),
                    batches: client_batches(p, batch)
                        .into_iter()
                        .map(|b| b.into_iter().map(|c| c.instance.clone()).collect())
                        .collect(),
                    surplus: surplus_clients(p)
                        .into_iter()
                        .map(|c| c.instance.clone())
                        .collect(),
                })
                .collect(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.servers.is_empty()
            && self.servers_joining.is_empty()
            && self
                .pools
                .iter()
                .all(|p| p.batches.is_empty() && p.joining.is_empty() && p.surplus.is_empty())
    }

    /// The plan as the text lines `--dry-run` prints.
    pub(super) fn describe(&self, wanted_servers: u32, drain: &str) -> String {
        let mut lines = Vec::new();
        if let Some(set) = &self.server_scale_set {
            if self.servers.is_empty() && self.servers_joining.is_empty() {
                lines.push(format!("servers ({set}): all on the latest model"));
            } else {
                lines.push(format!(
                    "servers ({set}), one at a time, never fewer than {wanted_servers} healthy voters:"
                ));
                for joining in &self.servers_joining {
                    lines.push(format!(
                        "  first: wait for the new server {} to become a caught-up healthy voter",
                        joining.label()
                    ));
                }
                for (n, step) in self.servers.iter().enumerate() {
                    let what = if step.dead {
                        format!(
                            "delete {} (its agent is gone; its Raft peer is removed if still there)",
                            step.instance.plan_label()
                        )
                    } else if step.leader {
                        format!(
                            "surge one server, gate it, transfer leadership to it, delete the leader {}, check it left",
                            step.instance.plan_label()
                        )
                    } else {
                        format!(
                            "surge one server, gate it, delete {}, check it left",
                            step.instance.plan_label()
                        )
                    };
                    lines.push(format!("  {}. {what}", n + 1));
                }
            }
        }
        for pool in &self.pools {
            if pool.batches.is_empty() && pool.joining.is_empty() && pool.surplus.is_empty() {
                lines.push(format!(
                    "{} ({}): all on the latest model",
                    pool.label, pool.scale_set
                ));
                continue;
            }
            lines.push(format!(
                "{} ({}), in batches (drain deadline {drain}):",
                pool.label, pool.scale_set
            ));
            for joining in &pool.joining {
                lines.push(format!(
                    "  first: wait for the new client {} to be ready and eligible",
                    joining.label()
                ));
            }
            for (n, batch) in pool.batches.iter().enumerate() {
                let names: Vec<String> = batch.iter().map(Instance::plan_label).collect();
                lines.push(format!(
                    "  {}. surge {} client{}, wait until ready, mark ineligible and drain {}, delete once empty",
                    n + 1,
                    batch.len(),
                    if batch.len() == 1 { "" } else { "s" },
                    names.join(", ")
                ));
            }
            if !pool.surplus.is_empty() {
                let names: Vec<String> = pool.surplus.iter().map(Instance::plan_label).collect();
                lines.push(format!(
                    "  then: the pool is above its count of {}: mark ineligible and drain {}, delete once empty",
                    pool.wanted,
                    names.join(", ")
                ));
            }
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::{facts, instance};
    use super::super::state::{join_clients, join_servers, ClientFacts, ClientNode};
    use super::*;

    #[test]
    fn dead_servers_first_then_followers_and_the_leader_last() {
        let set = join_servers(
            "s",
            3,
            vec![
                instance("s", 0, false),
                instance("s", 1, false),
                instance("s", 2, false),
                instance("s", 3, false),
            ],
            &facts(&[
                ("vm-s-0", "alive", true, true),
                ("vm-s-1", "alive", true, true),
                ("vm-s-2", "failed", true, false),
                ("vm-s-3", "alive", true, true),
            ]),
        );
        let order: Vec<&str> = server_order(&set)
            .iter()
            .map(|s| s.instance.instance_id.as_str())
            .collect();
        assert_eq!(order, ["2", "1", "3", "0"], "vm-s-0 leads");
        let plan = Plan::new(Some(&set), &[], 1);
        let text = plan.describe(3, "1h");
        assert!(
            text.contains("4. surge one server, gate it, transfer leadership"),
            "{text}"
        );
    }

    #[test]
    fn a_pool_above_its_count_sheds_idle_nodes_first_once_no_old_one_is_left() {
        let node = |status: &str, allocations: usize| ClientNode {
            id: format!("n-{status}-{allocations}"),
            status: status.into(),
            eligible: true,
            draining: false,
            drained: false,
            drain_canceled: false,
            version: "1.10.5".into(),
            allocations,
        };
        let mut set = join_clients(
            "c",
            None,
            3,
            (0..6).map(|i| instance("c", i, true)).collect(),
            &ClientFacts::default(),
        );
        set.instances[0].node = Some(node("ready", 0));
        set.instances[1].node = Some(node("ready", 2));
        set.instances[2].node = Some(node("ready", 1));
        set.instances[3].node = Some(node("down", 0));
        set.instances[4].node = Some(node("ready", 0));
        set.instances[5].node = Some(node("ready", 5));
        let ids = |set: &ClientSet| -> Vec<String> {
            surplus_clients(set)
                .iter()
                .map(|c| c.instance.instance_id.clone())
                .collect()
        };
        // Three above the count: the down node, then the idle ones, the newer first.
        assert_eq!(ids(&set), ["3", "4", "0"]);
        let plan = Plan::new(None, std::slice::from_ref(&set), 1);
        assert!(!plan.is_empty());
        let text = plan.describe(3, "1h");
        assert!(
            text.contains("then: the pool is above its count of 3: mark ineligible and drain"),
            "{text}"
        );
        // While an old instance is left, its batch brings the pool down instead.
        set.instances[5].instance = instance("c", 5, false);
        assert_eq!(ids(&set), Vec::<String>::new());
        // At its count, nothing is surplus.
        set.instances.truncate(3);
        set.instances
            .iter_mut()
            .for_each(|c| c.instance.latest_model = true);
        assert_eq!(ids(&set), Vec::<String>::new());
        assert!(Plan::new(None, std::slice::from_ref(&set), 1).is_empty());
    }

    #[test]
    fn clients_already_out_of_service_go_first() {
        let mut set = join_clients(
            "c",
            Some("web"),
            4,
            (0..4).map(|i| instance("c", i, false)).collect(),
            &ClientFacts::default(),
        );
        let node = |eligible: bool, draining: bool| ClientNode {
            id: "n".into(),
            status: "ready".into(),
            eligible,
            draining,
            drained: false,
            drain_canceled: false,
            version: "1.9.7".into(),
            allocations: 1,
        };
        set.instances[0].node = Some(node(true, false));
        set.instances[1].node = Some(node(true, false));
        set.instances[2].node = Some(node(false, true));
        // instance 3 has no node: dead.
        let batches: Vec<Vec<&str>> = client_batches(&set, 3)
            .iter()
            .map(|b| b.iter().map(|c| c.instance.instance_id.as_str()).collect())
            .collect();
        assert_eq!(batches, [vec!["2", "3", "0"], vec!["1"]]);
    }
}
