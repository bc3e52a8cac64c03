//! The checks before a roll changes anything (pure, over the state read from Azure and Nomad).
//! Each is named and says what it found; any failed check stops the roll before its snapshot.
//!
//! A re-run resumes: a new-model server that is still joining (a surge a previous run made) is
//! allowed, since the roll gates it before anything else; everything else must be as healthy
//! as a fresh start needs.

use serde::Serialize;

use super::options::{RollOptions, Scope};
use super::plan::joining_servers;
use super::state::{ClientSet, Instance, ServerSet};
use super::version::{supported_step, Version};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Check {
    pub(super) name: String,
    pub(super) ok: bool,
    pub(super) detail: String,
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_string(),
        ok,
        detail: detail.into(),
    }
}

/// Every check, in order.
pub(super) fn checks(
    servers: &ServerSet,
    pools: &[ClientSet],
    options: &RollOptions,
) -> Vec<Check> {
    let mut out = vec![leader(servers)];
    out.push(server_count(servers));
    out.push(server_agents(servers));
    out.push(autopilot(servers));
    out.push(failure_tolerance(servers, options));
    out.push(version(servers, pools, options));
    if options.scope.clients() {
        for pool in pools {
            out.push(pool_count(pool, options));
        }
    }
    out
}

fn leader(servers: &ServerSet) -> Check {
    let leaders: Vec<&str> = servers
        .instances
        .iter()
        .filter(|s| s.leader())
        .map(|s| s.instance.instance_id.as_str())
        .collect();
    match (&servers.leader, leaders.as_slice()) {
        (None, _) => check("leader", false, "the cluster has no leader"),
        (Some(address), [one]) => check(
            "leader",
            true,
            format!("instance {one} leads ({address})"),
        ),
        (Some(address), []) => check(
            "leader",
            false,
            format!(
                "the leader {address} is not an instance of scale set {}: roll cannot keep it for last",
                servers.scale_set
            ),
        ),
        (Some(_), many) => check(
            "leader",
            false,
            format!("instances {} all claim to lead", many.join(", ")),
        ),
    }
}

fn server_count(servers: &ServerSet) -> Check {
    let n = servers.instances.len() as u32;
    let wanted = servers.wanted;
    let new = servers.new_model().count();
    if n == wanted || (n == wanted + 1 && new > 0 && servers.old().count() > 0) {
        check(
            "server count",
            true,
            format!("{n} instances, cluster_size {wanted}"),
        )
    } else {
        check(
            "server count",
            false,
            format!(
                "scale set {} has {n} instances but the cluster file says cluster_size = {wanted}: roll replaces instances, it does not resize (run apply, or fix cluster_size)",
                servers.scale_set
            ),
        )
    }
}

/// A server whose instance Azure is still deleting: with the terminate notification that lasts
/// until the VM approves its Terminate event or NotBefore passes ("Terminate notification for
/// Azure Virtual Machine Scale Set instances", learn.microsoft.com).
fn deleting_problem(member: &str, instance: &Instance) -> String {
    format!(
        "server {member} is still in the cluster, and Azure is deleting its instance {} (provisioningState Deleting): wait until Azure has deleted it (its watcher approves the Terminate event, or the event's NotBefore passes) and the server is out of Raft, then re-run",
        instance.label()
    )
}

fn server_agents(servers: &ServerSet) -> Check {
    let joining: Vec<&str> = joining_servers(servers)
        .iter()
        .map(|s| s.instance.instance_id.as_str())
        .collect();
    let mut problems = Vec::new();
    if joining.len() > 1 {
        problems.push(format!(
            "new instances {} are all still joining: at most one server changes at a time",
            joining.join(", ")
        ));
    }
    for s in servers.old() {
        match &s.agent {
            None => problems.push(format!(
                "no Nomad server is named after instance {}'s VM id (run-nomad names the agent after it): is it down, or not a run-nomad agent?",
                s.instance.label()
            )),
            Some(a) if !a.alive() => problems.push(format!(
                "instance {} is {} in gossip",
                s.instance.label(),
                a.status
            )),
            Some(a) if !(a.in_raft && a.voter) => problems.push(format!(
                "instance {} is alive but not a Raft voter",
                s.instance.label()
            )),
            Some(_) => {}
        }
    }
    let mut deleting = Vec::new();
    for (name, status) in &servers.strays {
        if let Some(i) = servers.deleting_instance_of(name) {
            // Its VM is on its way out: say so, not that nothing accounts for it.
            if status == "alive" && !deleting.contains(&i.instance_id) {
                deleting.push(i.instance_id.clone());
                problems.push(deleting_problem(name, i));
            }
            continue;
        }
        if status == "alive" {
            problems.push(format!(
                "server {name} is alive but no instance of {} is named after it: roll cannot account for it",
                servers.scale_set
            ));
        }
    }
    for (id, node) in &servers.unknown_peers {
        if let Some(i) = servers.deleting_instance_of(node) {
            if !deleting.contains(&i.instance_id) {
                deleting.push(i.instance_id.clone());
                problems.push(deleting_problem(node, i));
            }
            continue;
        }
        problems.push(format!(
            "Raft peer {id} ({node}) belongs to no instance of {}: remove it once dead (nomad operator raft remove-peer -peer-id {id})",
            servers.scale_set
        ));
    }
    if problems.is_empty() {
        let mut detail = format!(
            "{} servers alive and voters",
            servers
                .instances
                .iter()
                .filter(|s| s.healthy_voter()
                    || (s.alive() && s.agent.as_ref().is_some_and(|a| a.voter)))
                .count()
        );
        if let [one] = joining.as_slice() {
            detail.push_str(&format!(
                "; new instance {one} is joining (a previous run's surge): it is gated first"
            ));
        }
        check("servers", true, detail)
    } else {
        check("servers", false, problems.join("; "))
    }
}

fn autopilot(servers: &ServerSet) -> Check {
    match servers.autopilot_healthy {
        None => check(
            "autopilot",
            false,
            "autopilot health could not be read (no leader?)",
        ),
        Some(true) => check("autopilot", true, "healthy"),
        Some(false) => {
            let joining = joining_servers(servers);
            let unhealthy: Vec<String> = servers
                .instances
                .iter()
                .filter(|s| s.agent.as_ref().is_some_and(|a| a.healthy == Some(false)))
                .filter(|s| !joining.iter().any(|j| j.instance == s.instance))
                .map(|s| s.instance.label())
                .collect();
            if unhealthy.is_empty() && !joining.is_empty() && servers.unknown_peers.is_empty() {
                check(
                    "autopilot",
                    true,
                    "unhealthy only because the new server is still joining",
                )
            } else {
                check(
                    "autopilot",
                    false,
                    if unhealthy.is_empty() {
                        "autopilot reports the servers unhealthy".to_string()
                    } else {
                        format!("unhealthy: {}", unhealthy.join(", "))
                    },
                )
            }
        }
    }
}

fn failure_tolerance(servers: &ServerSet, options: &RollOptions) -> Check {
    match servers.failure_tolerance {
        None => check("failure tolerance", false, "unknown (autopilot could not be read)"),
        Some(t) if t >= 1 => check(
            "failure tolerance",
            true,
            format!("{t} (the cluster survives losing {t} server{})", if t == 1 { "" } else { "s" }),
        ),
        Some(t) if options.accept_no_failure_tolerance => check(
            "failure tolerance",
            true,
            format!("{t}: accepted with --accept-no-failure-tolerance (one more server lost during the roll loses quorum)"),
        ),
        Some(t) => check(
            "failure tolerance",
            false,
            format!(
                "{t}: losing one more server would lose quorum; restore the servers first, or pass --accept-no-failure-tolerance to roll anyway (a single-server cluster always needs it)"
            ),
        ),
    }
}

fn version(servers: &ServerSet, pools: &[ClientSet], options: &RollOptions) -> Check {
    let Some(target) = &options.target_version else {
        return check(
            "version",
            true,
            "no --nomad-version: the first new agent's version is checked before any old instance goes",
        );
    };
    let mut problems = Vec::new();
    let mut running = Vec::new();
    let mut judge = |what: String, version: Option<&str>| match version.map(Version::parse) {
        Some(Ok(v)) => {
            if let Err(e) = supported_step(&v, target) {
                problems.push(format!("{what}: {e}"));
            }
            running.push(v.to_string());
        }
        Some(Err(e)) => problems.push(format!("{what}: {e}")),
        None => {}
    };
    if options.scope.servers() {
        for s in servers.old() {
            judge(
                format!("server {}", s.instance.instance_id),
                s.agent.as_ref().and_then(|a| a.version.as_deref()),
            );
        }
    }
    if options.scope.clients() {
        for pool in pools {
            for c in pool.old() {
                judge(
                    format!("{} instance {}", pool.label(), c.instance.instance_id),
                    c.node
                        .as_ref()
                        .map(|n| n.version.as_str())
                        .filter(|v| !v.is_empty()),
                );
            }
        }
    }
    // The agents already on the latest model (a previous run's surge) run the new image's
    // version: a different --nomad-version is a mistake about the image, found before anything
    // changes rather than at a gate that would then stop on a server that already serves.
    let mut already = |what: String, version: Option<&str>| {
        if let Some(Ok(v)) = version.map(Version::parse) {
            if v.precedence(target).is_ne() {
                problems.push(format!(
                    "{what} is already on the latest model and runs Nomad {v}, not the --nomad-version {target} given (name the version the new image runs, or leave --nomad-version out)"
                ));
            }
        }
    };
    if options.scope.servers() {
        for s in servers.new_model() {
            already(
                format!("server {}", s.instance.instance_id),
                s.agent.as_ref().and_then(|a| a.version.as_deref()),
            );
        }
    }
    if options.scope.clients() {
        for pool in pools {
            for c in pool.new_model() {
                already(
                    format!("{} instance {}", pool.label(), c.instance.instance_id),
                    c.node
                        .as_ref()
                        .map(|n| n.version.as_str())
                        .filter(|v| !v.is_empty()),
                );
            }
        }
    }
    // Nomad's upgrade guide: "While it is possible to upgrade Nomad client nodes before
    // servers, this guide recommends upgrading servers first": a note, not a refusal.
    let mut notes = Vec::new();
    if options.scope == Scope::ClientsOnly {
        let behind: Vec<String> = servers
            .instances
            .iter()
            .filter_map(|s| {
                let v = Version::parse(s.agent.as_ref()?.version.as_deref()?).ok()?;
                ((target.major, target.minor) > (v.major, v.minor))
                    .then(|| format!("{} runs {v}", s.instance.instance_id))
            })
            .collect();
        if !behind.is_empty() {
            notes.push(format!(
                "note: the clients would be newer than servers {} (Nomad recommends upgrading the servers first)",
                behind.join(", ")
            ));
        }
    }
    running.sort();
    running.dedup();
    if problems.is_empty() {
        let mut detail = format!("{} -> {target}: a step Nomad supports", running.join(", "));
        for note in notes {
            detail.push_str("; ");
            detail.push_str(&note);
        }
        check("version", true, detail)
    } else {
        check("version", false, problems.join("; "))
    }
}

fn pool_count(pool: &ClientSet, options: &RollOptions) -> Check {
    let n = pool.instances.len() as u32;
    let most = pool.wanted + options.client_batch_size;
    let name = format!("{} instances", pool.label());
    if n <= most {
        check(
            &name,
            true,
            format!(
                "{n} instances, count {} ({} on an old model)",
                pool.wanted,
                pool.old().count()
            ),
        )
    } else {
        check(
            &name,
            false,
            format!(
                "scale set {} has {n} instances, more than its count {} plus a batch of {}: run apply or fix the count",
                pool.scale_set, pool.wanted, options.client_batch_size
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::join_servers;
    use super::super::state::tests::{facts, instance, surged};
    use super::*;
    use std::time::Duration;

    fn options() -> RollOptions {
        RollOptions {
            scope: Scope::All,
            dry_run: false,
            yes: true,
            target_version: None,
            accept_no_failure_tolerance: false,
            transfer_leadership: true,
            client_batch_size: 1,
            drain_deadline: Duration::from_secs(3600),
            soak: Duration::from_secs(60),
            server_gate_timeout: Duration::from_secs(1200),
            client_gate_timeout: Duration::from_secs(900),
            leave_timeout: Duration::from_secs(300),
            check_interval: Duration::from_secs(5),
            snapshot: None,
            created_before: None,
            created_before_text: None,
        }
    }

    fn failed(checks: &[Check]) -> Vec<&str> {
        checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }

    fn three(states: [(&'static str, bool, bool); 3]) -> ServerSet {
        let vms = ["vm-s-0", "vm-s-1", "vm-s-2"];
        let rows: Vec<(&str, &str, bool, bool)> = vms
            .iter()
            .zip(states)
            .map(|(vm, (status, voter, healthy))| (*vm, status, voter, healthy))
            .collect();
        join_servers(
            "s",
            3,
            (0..3).map(|i| instance("s", i, false)).collect(),
            &facts(&rows),
        )
    }

    #[test]
    fn a_healthy_cluster_passes() {
        let set = three([("alive", true, true); 3]);
        let checks = checks(&set, &[], &options());
        assert!(failed(&checks).is_empty(), "{checks:?}");
    }

    #[test]
    fn a_failed_server_is_refused_and_tolerance_must_be_accepted() {
        let set = three([
            ("alive", true, true),
            ("failed", true, false),
            ("alive", true, true),
        ]);
        let found = checks(&set, &[], &options());
        assert_eq!(
            failed(&found),
            ["servers", "autopilot", "failure tolerance"]
        );
        let mut accept = options();
        accept.accept_no_failure_tolerance = true;
        let found = checks(&set, &[], &accept);
        assert_eq!(failed(&found), ["servers", "autopilot"]);
    }

    #[test]
    fn a_joining_new_server_from_an_earlier_run_is_allowed() {
        let set = surged(("alive", false, false));
        let found = checks(&set, &[], &options());
        assert!(failed(&found).is_empty(), "{found:?}");
        assert!(found[2].detail.contains("joining"), "{:?}", found[2]);
    }

    #[test]
    fn version_steps_are_checked_when_the_target_is_known() {
        let set = three([("alive", true, true); 3]);
        let mut o = options();
        o.target_version = Some(Version::parse("1.10.5").unwrap());
        let found = checks(&set, &[], &o);
        assert!(failed(&found).is_empty(), "1.9.7 -> 1.10.5: {found:?}");
        o.target_version = Some(Version::parse("1.11.0").unwrap());
        let found = checks(&set, &[], &o);
        assert_eq!(failed(&found), ["version"]);
        assert!(
            found[5].detail.contains("skips a point release"),
            "{:?}",
            found[5]
        );
        o.target_version = Some(Version::parse("1.10.0").unwrap());
        o.scope = Scope::ClientsOnly;
        let found = checks(&set, &[], &o);
        assert!(failed(&found).is_empty(), "{found:?}");
        assert!(
            found[5]
                .detail
                .contains("recommends upgrading the servers first"),
            "{:?}",
            found[5]
        );
    }

    #[test]
    fn the_target_version_must_be_what_the_latest_model_already_runs() {
        let mut set = surged(("alive", true, true));
        set.instances[3].agent.as_mut().unwrap().version = Some("1.10.5".to_string());
        let mut o = options();
        o.target_version = Some(Version::parse("1.10.5").unwrap());
        assert!(failed(&checks(&set, &[], &o)).is_empty());
        o.target_version = Some(Version::parse("1.10.6").unwrap());
        let found = checks(&set, &[], &o);
        assert_eq!(failed(&found), ["version"]);
        assert!(
            found[5].detail.contains(
                "server 3 is already on the latest model and runs Nomad 1.10.5, not the --nomad-version 1.10.6 given"
            ),
            "{:?}",
            found[5]
        );
        // A clients-only roll does not judge the servers' image.
        o.scope = Scope::ClientsOnly;
        assert!(failed(&checks(&set, &[], &o)).is_empty());
    }

    #[test]
    fn a_resized_scale_set_is_not_rolled() {
        let mut set = three([("alive", true, true); 3]);
        set.wanted = 5;
        assert_eq!(failed(&checks(&set, &[], &options())), ["server count"]);
    }
}
