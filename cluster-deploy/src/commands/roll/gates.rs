//! Gates: what must hold before the roll takes its next step, and the bounded wait for it.
//!
//! The predicates are pure (a state in, what is still missing out), so each condition is tested
//! on its own; [`Roll::wait`] polls one every `--check-interval` until it holds or its timeout
//! passes, says what it is waiting for whenever that changes, and stops at once when
//! interrupted. Time is the roll's clock (virtual in tests).

use std::time::Duration;

use serde_json::json;

use super::events::duration_text;
use super::options::CAUGHT_UP_LAG;
use super::state::{ClientInstance, ClientSet, ServerSet};
use super::{Roll, Stop};

/// One look at a gate.
pub(super) enum Look<T> {
    /// It holds: go on with this.
    Open(T),
    /// Not yet: what is missing.
    Closed(String),
    /// Stop waiting without it opening: something else comes first (why).
    SetAside(T, String),
}

impl Roll<'_> {
    /// Polls `look` until it opens, `timeout` passes (a [`Stop::Timeout`] naming what was still
    /// missing) or the roll is interrupted.
    pub(super) fn wait<T>(
        &mut self,
        gate: &str,
        timeout: Duration,
        mut look: impl FnMut(&mut Self) -> Result<Look<T>, Stop>,
    ) -> Result<T, Stop> {
        let start = self.hooks.now();
        let mut said = String::new();
        loop {
            self.checkpoint()?;
            let waited = self.hooks.now().saturating_sub(start);
            match look(self)? {
                Look::Open(value) => {
                    self.events.emit(
                        "gate",
                        format!("{gate}: open after {}", duration_text(round(waited))),
                        json!({ "gate": gate, "open": true, "waited_s": waited.as_secs() }),
                    );
                    return Ok(value);
                }
                Look::SetAside(value, why) => {
                    self.events.emit(
                        "gate",
                        format!("{gate}: set aside after {}: {why}", duration_text(round(waited))),
                        json!({ "gate": gate, "open": false, "set_aside": why, "waited_s": waited.as_secs() }),
                    );
                    return Ok(value);
                }
                Look::Closed(missing) => {
                    if waited >= timeout {
                        self.events.emit(
                            "gate",
                            format!(
                                "{gate}: still closed after {}: {missing}",
                                duration_text(round(waited))
                            ),
                            json!({ "gate": gate, "open": false, "waited_s": waited.as_secs(), "missing": missing }),
                        );
                        return Err(Stop::Timeout {
                            gate: gate.to_string(),
                            waited: round(waited),
                            missing,
                            done: Vec::new(),
                        });
                    }
                    if missing != said {
                        self.events.emit(
                            "waiting",
                            format!("{gate}: waiting: {missing}"),
                            json!({ "gate": gate, "missing": missing }),
                        );
                        said = missing;
                    }
                }
            }
            self.hooks.sleep(self.options.check_interval);
        }
    }
}

/// Whole seconds (what messages show).
fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// Where a new server is on its way to being a full member. `Ok` when it is an alive,
/// caught-up voter that autopilot finds healthy, with a leader and autopilot healthy overall;
/// else the first thing missing.
pub(super) fn new_server(set: &ServerSet, instance_id: &str) -> Result<(), String> {
    let Some(server) = set.find(instance_id) else {
        return Err(format!(
            "instance {instance_id} is no longer in scale set {}",
            set.scale_set
        ));
    };
    let Some(agent) = &server.agent else {
        return Err(format!(
            "booting: no Nomad server named after vm {} yet",
            server.instance.vm_id
        ));
    };
    if !agent.alive() {
        return Err(format!("its agent is {} in gossip", agent.status));
    }
    if set.leader.is_none() {
        return Err("the cluster has no leader".to_string());
    }
    if !agent.in_raft {
        return Err("alive, not in the Raft configuration yet".to_string());
    }
    match agent.lag {
        Some(lag) if lag > CAUGHT_UP_LAG => {
            return Err(format!("catching up: {lag} Raft entries behind the leader"))
        }
        None => return Err("its Raft index is not known to autopilot yet".to_string()),
        Some(_) => {}
    }
    if !agent.voter {
        return Err(
            "a non-voter: autopilot promotes it once stable for server_stabilization_time"
                .to_string(),
        );
    }
    if agent.healthy != Some(true) {
        return Err("autopilot does not find it healthy yet".to_string());
    }
    if set.autopilot_healthy != Some(true) {
        return Err(unhealthy_servers(set));
    }
    Ok(())
}

/// The servers are healthy enough to touch another one: a leader, autopilot healthy, and every
/// instance's agent an alive, healthy voter.
pub(super) fn servers_healthy(set: &ServerSet) -> Result<(), String> {
    if set.leader.is_none() {
        return Err("the cluster has no leader".to_string());
    }
    let not_ready: Vec<String> = set
        .instances
        .iter()
        .filter(|s| !s.healthy_voter())
        .map(|s| {
            format!(
                "{} is {}",
                s.instance.label(),
                s.agent
                    .as_ref()
                    .map(|a| a.describe())
                    .unwrap_or_else(|| "not a member".to_string())
            )
        })
        .collect();
    if !not_ready.is_empty() {
        return Err(not_ready.join("; "));
    }
    if set.autopilot_healthy != Some(true) {
        return Err(unhealthy_servers(set));
    }
    Ok(())
}

fn unhealthy_servers(set: &ServerSet) -> String {
    if set.unknown_peers.is_empty() {
        "autopilot reports the servers unhealthy".to_string()
    } else {
        let peers: Vec<String> = set
            .unknown_peers
            .iter()
            .map(|(id, node)| format!("{id} ({node})"))
            .collect();
        format!(
            "autopilot reports the servers unhealthy; Raft still lists {}",
            peers.join(", ")
        )
    }
}

/// Every new-model client of the pool takes work (ready, eligible, not draining).
pub(super) fn new_clients(set: &ClientSet) -> Result<(), String> {
    let waiting: Vec<String> = set
        .new_model()
        .filter(|c| !c.node.as_ref().is_some_and(|n| n.in_service()))
        .map(|c| match &c.node {
            None => format!(
                "{}: booting, no node named after its vm yet",
                c.instance.label()
            ),
            Some(n) => format!("{}: {}", c.instance.label(), n.describe()),
        })
        .collect();
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(waiting.join("; "))
    }
}

/// Whether a new server that failed its gate may be deleted (`Err`: why it stays). Only a
/// surge beyond `cluster_size` that has never been a voter goes, as read back from Nomad:
/// autopilot promotes a server to voter only once it has been healthy for
/// `server_stabilization_time`, and Nomad never demotes one, so a voter in the Raft
/// configuration is a server that was a healthy voter. Deleting that, or any server when the
/// scale set is not above its capacity, would take a voter away (a re-run would then find too
/// few servers to roll).
pub(super) fn discardable_server(set: &ServerSet, instance_id: &str) -> Result<(), String> {
    let Some(server) = set.find(instance_id) else {
        return Err(format!(
            "instance {instance_id} is no longer in scale set {}",
            set.scale_set
        ));
    };
    match &server.agent {
        Some(a) if a.voter => {
            return Err(format!(
                "it is a Raft voter ({}): autopilot promoted it once it was healthy, so deleting it would take a voter away",
                a.describe()
            ))
        }
        Some(a) if !a.raft_known => {
            return Err(
                "the Raft configuration could not be read, so whether it ever became a voter is unknown"
                    .to_string(),
            )
        }
        // Not matched to an agent, while Raft lists a peer the roll could not match to an
        // instance: that peer may be this server (gossip has not converged on the server that
        // answered), and it may be a voter.
        None if !set.unknown_peers.is_empty() => {
            return Err(format!(
                "it is not matched to an agent while Raft lists {} peer(s) matched to no instance \
                 ({}): it may be one of them, and a voter",
                set.unknown_peers.len(),
                set.unknown_peers
                    .iter()
                    .map(|(id, node)| format!("{id} ({node})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
        // Never a voter (or never even a member of the gossip pool).
        _ => {}
    }
    let count = set.instances.len();
    if count <= set.wanted as usize {
        return Err(format!(
            "scale set {} has {count} instances for cluster_size {}: it is not a surge beyond the capacity",
            set.scale_set, set.wanted
        ));
    }
    Ok(())
}

/// Which new clients that failed their gate may be deleted: at most the pool's surplus over
/// its count, and only nodes that never became ready (no node registered, or one still
/// `initializing`) and hold no allocation, as read back from Nomad. A node that was ready once
/// may hold or have held work: it stays.
pub(super) fn discardable_clients(set: &ClientSet) -> Vec<&ClientInstance> {
    let surplus = set.instances.len().saturating_sub(set.wanted as usize);
    set.new_model()
        .filter(|c| match &c.node {
            None => true,
            Some(n) => n.status == "initializing" && n.allocations == 0,
        })
        .take(surplus)
        .collect()
}

/// Every client of the batch holds nothing more: its drain finished and no allocation is
/// pending or running there (or its node is down or gone: nothing runs there any more).
pub(super) fn drained(set: &ClientSet, batch: &[String]) -> Result<(), String> {
    let mut waiting = Vec::new();
    for id in batch {
        let Some(client) = set.instances.iter().find(|c| &c.instance.instance_id == id) else {
            continue;
        };
        let Some(node) = &client.node else {
            continue;
        };
        if node.status == "down" {
            continue;
        }
        if node.draining {
            waiting.push(format!(
                "{}: draining, {} allocation{} left",
                client.instance.label(),
                node.allocations,
                if node.allocations == 1 { "" } else { "s" }
            ));
        } else if node.allocations > 0 {
            waiting.push(format!(
                "{}: not draining but {} allocation{} still there",
                client.instance.label(),
                node.allocations,
                if node.allocations == 1 { "" } else { "s" }
            ));
        }
    }
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(waiting.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::tests::surged;
    use super::*;

    #[test]
    fn a_new_server_must_be_a_caught_up_healthy_voter() {
        assert_eq!(new_server(&surged(("alive", true, true)), "3"), Ok(()));
        let joining = new_server(&surged(("alive", false, false)), "3").unwrap_err();
        assert!(joining.contains("behind the leader"), "{joining}");
        let mut caught_up = surged(("alive", false, true));
        caught_up.autopilot_healthy = Some(false);
        let err = new_server(&caught_up, "3").unwrap_err();
        assert!(err.contains("non-voter"), "{err}");
        let mut booting = surged(("alive", true, true));
        booting.instances[3].agent = None;
        assert!(new_server(&booting, "3")
            .unwrap_err()
            .starts_with("booting"));
        let mut leaderless = surged(("alive", true, true));
        leaderless.leader = None;
        assert!(new_server(&leaderless, "3")
            .unwrap_err()
            .contains("no leader"));
        assert!(new_server(&surged(("alive", true, true)), "9").is_err());
    }

    #[test]
    fn a_voter_autopilot_finds_unhealthy_does_not_pass() {
        // Caught up with the leader's index, a voter, and still unhealthy to autopilot (its
        // last contact too long ago, say).
        let mut set = surged(("alive", true, true));
        let agent = set.instances[3].agent.as_mut().unwrap();
        agent.healthy = Some(false);
        assert_eq!(agent.lag, Some(0));
        let err = new_server(&set, "3").unwrap_err();
        assert!(err.contains("does not find it healthy"), "{err}");
    }

    #[test]
    fn a_healthy_voter_in_an_unhealthy_cluster_does_not_pass() {
        let mut set = surged(("alive", true, true));
        set.autopilot_healthy = Some(false);
        let err = new_server(&set, "3").unwrap_err();
        assert_eq!(err, "autopilot reports the servers unhealthy");
        set.unknown_peers = vec![("id-x".into(), "gone.global".into())];
        let err = new_server(&set, "3").unwrap_err();
        assert!(err.contains("Raft still lists id-x (gone.global)"), "{err}");
    }

    #[test]
    fn only_a_surge_that_never_became_a_voter_may_be_deleted() {
        // A surged non-voter (still joining, or never caught up): it goes.
        assert_eq!(
            discardable_server(&surged(("alive", false, false)), "3"),
            Ok(())
        );
        // Not even a member yet (booting, or a broken image): it goes.
        let mut booting = surged(("alive", true, true));
        booting.instances[3].agent = None;
        assert_eq!(discardable_server(&booting, "3"), Ok(()));
        // Unmatched, while Raft lists a peer no instance matched: it may be that voter.
        booting.unknown_peers = vec![("id-x".into(), "n-x.global".into())];
        let err = discardable_server(&booting, "3").unwrap_err();
        assert!(err.contains("id-x (n-x.global)"), "{err}");
        // A voter stays, healthy or not: autopilot only promotes a server once it was healthy.
        for healthy in [true, false] {
            let err = discardable_server(&surged(("alive", true, healthy)), "3").unwrap_err();
            assert!(err.contains("it is a Raft voter"), "{err}");
        }
        // Raft unknown: it may be a voter, so it stays.
        let mut unknown = surged(("alive", false, false));
        unknown.instances[3].agent.as_mut().unwrap().raft_known = false;
        let err = discardable_server(&unknown, "3").unwrap_err();
        assert!(err.contains("could not be read"), "{err}");
        // Not a surge (an old server already went): even a non-voter stays.
        let mut replaced = surged(("alive", false, false));
        replaced.instances.remove(0);
        let err = discardable_server(&replaced, "3").unwrap_err();
        assert!(
            err.contains("3 instances for cluster_size 3: it is not a surge"),
            "{err}"
        );
        assert!(discardable_server(&surged(("alive", false, false)), "9").is_err());
    }

    #[test]
    fn only_surplus_new_clients_that_never_became_ready_may_be_deleted() {
        use super::super::state::{tests::instance, ClientInstance, ClientNode};
        let node = |status: &str, allocations: usize| ClientNode {
            id: format!("node-{status}-{allocations}"),
            status: status.to_string(),
            eligible: true,
            draining: false,
            drained: false,
            drain_canceled: false,
            version: "1.10.5".to_string(),
            allocations,
        };
        let pool = |new: Vec<Option<ClientNode>>| {
            let mut instances: Vec<ClientInstance> = (0..2)
                .map(|i| ClientInstance {
                    instance: instance("c", i, false),
                    node: Some(node("ready", 3)),
                })
                .collect();
            for (i, n) in new.into_iter().enumerate() {
                instances.push(ClientInstance {
                    instance: instance("c", 10 + i as u32, true),
                    node: n,
                });
            }
            ClientSet {
                scale_set: "c".to_string(),
                pool: None,
                wanted: 2,
                instances,
            }
        };
        let ids = |set: &ClientSet| -> Vec<String> {
            discardable_clients(set)
                .iter()
                .map(|c| c.instance.instance_id.clone())
                .collect()
        };
        // Never registered, or registered and never ready: they go.
        let set = pool(vec![None, Some(node("initializing", 0))]);
        assert_eq!(ids(&set), ["10", "11"]);
        // Ready once (ready, or down since), or holding allocations: they stay.
        let set = pool(vec![
            Some(node("ready", 0)),
            Some(node("down", 0)),
            Some(node("ready", 2)),
            Some(node("initializing", 1)),
        ]);
        assert!(ids(&set).is_empty(), "{:?}", ids(&set));
        // Never beyond the surplus over the pool's count.
        let mut set = pool(vec![None, None]);
        set.instances.remove(0);
        assert_eq!(ids(&set), ["10"]);
    }

    #[test]
    fn the_servers_are_healthy_only_when_every_one_is() {
        assert_eq!(servers_healthy(&surged(("alive", true, true))), Ok(()));
        let err = servers_healthy(&surged(("failed", true, false))).unwrap_err();
        assert!(err.contains("3 (s000003, vm vm-s-3) is failed"), "{err}");
    }
}
