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
use super::state::{ClientSet, ServerSet};
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
    fn the_servers_are_healthy_only_when_every_one_is() {
        assert_eq!(servers_healthy(&surged(("alive", true, true))), Ok(()));
        let err = servers_healthy(&surged(("failed", true, false))).unwrap_err();
        assert!(err.contains("3 (s000003, vm vm-s-3) is failed"), "{err}");
    }
}
