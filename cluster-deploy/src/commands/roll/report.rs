//! What the cluster looks like, instance by instance (shared with `status`), and the report a
//! stopped roll prints: why it stopped, what it did about it, what this run changed, the state
//! read back from Azure and Nomad, and what to do next.

use serde_json::json;

use super::plan::{joining_clients, joining_servers};
use super::state::{ClientInstance, ClientSet, ServerInstance, ServerSet};
use super::{Roll, Stop};

/// `  3    nomad-s000003    latest model  alive voter LEADER healthy nomad 1.10.5`
pub(crate) fn server_line(s: &ServerInstance) -> String {
    let agent = match &s.agent {
        Some(a) => a.describe(),
        None => format!("no Nomad server named after vm {}", s.instance.vm_id),
    };
    instance_line(
        &s.instance.instance_id,
        &s.instance.computer_name,
        &s.instance.provisioning_state,
        &s.instance.model_words(),
        &agent,
    )
}

/// `  0    nomad-c000000    OLD MODEL     node ready eligible 2 allocs nomad 1.9.7`
pub(crate) fn client_line(c: &ClientInstance) -> String {
    let node = match &c.node {
        Some(n) => format!("node {}", n.describe()),
        None => format!("no Nomad node named after vm {}", c.instance.vm_id),
    };
    instance_line(
        &c.instance.instance_id,
        &c.instance.computer_name,
        &c.instance.provisioning_state,
        &c.instance.model_words(),
        &node,
    )
}

fn instance_line(id: &str, computer: &str, provisioning: &str, model: &str, nomad: &str) -> String {
    format!("  {id:<4} {computer:<16} {provisioning:<10} {model:<12}  {nomad}")
}

/// The servers' cluster-wide verdicts in one line.
pub(crate) fn server_summary(set: &ServerSet) -> String {
    format!(
        "leader {}; {} voters, {} healthy; failure tolerance {}; autopilot {}",
        set.leader.as_deref().unwrap_or("NONE"),
        set.voters,
        set.healthy_voters(),
        set.failure_tolerance
            .map(|t| t.to_string())
            .unwrap_or_else(|| "unknown".to_string()),
        match set.autopilot_healthy {
            Some(true) => "healthy",
            Some(false) => "UNHEALTHY",
            None => "unknown",
        }
    )
}

/// Every scale set, instance by instance.
pub(super) fn state_text(servers: &ServerSet, pools: &[ClientSet]) -> String {
    let mut lines = vec![format!(
        "servers ({}): {} instances, cluster_size {}; {}",
        servers.scale_set,
        servers.instances.len(),
        servers.wanted,
        server_summary(servers)
    )];
    lines.extend(servers.instances.iter().map(server_line));
    for (name, status) in servers.strays.iter().filter(|(_, s)| s != "left") {
        lines.push(match servers.deleting_instance_of(name) {
            Some(i) => format!(
                "  -    {name} ({status}): its instance {} is Deleting (Azure is deleting it)",
                i.label()
            ),
            None => format!("  -    {name} ({status}): no instance of the scale set"),
        });
    }
    for pool in pools {
        lines.push(format!(
            "{} ({}): {} instances, count {}",
            pool.label(),
            pool.scale_set,
            pool.instances.len(),
            pool.wanted
        ));
        lines.extend(pool.instances.iter().map(client_line));
    }
    lines.join("\n")
}

/// What to do next, from the stop and the state read back.
fn next_steps(
    stop: &Stop,
    servers: Option<&ServerSet>,
    pools: &[ClientSet],
    config: &str,
    group: &str,
    rerun_flags: &str,
) -> Vec<String> {
    let mut steps = Vec::new();
    match stop {
        Stop::Interrupted => steps.push(
            "nothing is half-done: the roll stopped between steps (a wait, or before the next change)".to_string(),
        ),
        Stop::Timeout { gate, .. } if gate.starts_with("new server") || gate.contains("new clients") => {
            steps.push("a new instance on the latest model did not become healthy: look at why before re-running (boot diagnostics: az vmss get-instance-view; on a new VM: journalctl -u nomad, /var/log/cloud-init-output.log); fix the image or the cluster file, apply, and re-run".to_string());
        }
        Stop::Timeout { gate, .. } if gate.contains("drained") => steps.push(
            "a drain is taking longer than its deadline allows: see `nomad node status <node>` and its allocations; re-run to keep waiting".to_string(),
        ),
        Stop::Timeout { .. } => steps.push(
            "the cluster did not get healthy again in time: look at `nomad server members`, `nomad operator raft list-peers` and `nomad operator autopilot health` before re-running".to_string(),
        ),
        Stop::Unsafe { .. } => steps.push(
            "the roll found a state it will not act in (above): fix that first".to_string(),
        ),
        Stop::Failed(_) => steps.push(
            "an Azure or Nomad call failed after its retries (above): once it works again, re-run".to_string(),
        ),
    }
    if let Some(set) = servers {
        for s in joining_servers(set) {
            if s.agent.as_ref().is_some_and(|a| a.voter) {
                steps.push(format!(
                    "the new server {} is a Raft voter that is not healthy: do not delete it (that would leave fewer voters than cluster_size); see why in `nomad operator autopilot health` and `nomad server members`; a re-run gates it again",
                    s.instance.label()
                ));
                continue;
            }
            steps.push(format!(
                "the new server {} is not a healthy voter yet: a re-run gates it before anything else (or remove it: az vmss delete-instances -g {group} -n {} --instance-ids {})",
                s.instance.label(),
                set.scale_set,
                s.instance.instance_id
            ));
        }
        let n = set.instances.len() as u32;
        if n > set.wanted {
            steps.push(format!(
                "{} has {n} instances for cluster_size {}: the surged server stays until a re-run removes an old one",
                set.scale_set, set.wanted
            ));
        }
    }
    for pool in pools {
        for c in pool.old() {
            let Some(node) = &c.node else { continue };
            if node.draining || node.drained || !node.eligible {
                steps.push(format!(
                    "old node {} ({}) is {}: a re-run finishes it and deletes the instance; to put it back in service instead: nomad node drain -disable -yes {id} && nomad node eligibility -enable {id}",
                    node.id,
                    c.instance.label(),
                    if node.draining { "draining" } else if node.drained { "drained" } else { "ineligible" },
                    id = node.id
                ));
            }
        }
        for c in joining_clients(pool) {
            steps.push(format!(
                "the new client {} does not take work yet: a re-run waits for it",
                c.instance.label()
            ));
        }
        let n = pool.instances.len() as u32;
        if n > pool.wanted {
            steps.push(format!(
                "{} has {n} instances for a count of {}: a re-run brings it back to the count (old instances are replaced without another surge, then surplus new ones are drained and deleted)",
                pool.scale_set, pool.wanted
            ));
        }
    }
    steps.push(format!(
        "re-run `cluster-deploy roll --config {config}{rerun_flags}` to resume: it reads the state back from Azure and Nomad (there is no state file); `cluster-deploy status --config {config}` shows it"
    ));
    steps
}

/// Prints the stop report and returns the error the command ends with.
pub(super) fn stopped(roll: &mut Roll<'_>, stop: Stop) -> anyhow::Error {
    let reason = stop.reason();
    let done = match &stop {
        Stop::Timeout { done, .. } | Stop::Unsafe { done, .. } => done.clone(),
        _ => Vec::new(),
    };
    let state = roll.read_all();
    let (state_text, state_json, servers, pools) = match &state {
        Ok((servers, pools)) => (
            state_text(servers, pools),
            json!({ "servers": servers, "client_pools": pools }),
            Some(servers),
            pools.as_slice(),
        ),
        Err(e) => (
            format!("(the state could not be read back: {})", e.reason()),
            serde_json::Value::Null,
            None,
            &[][..],
        ),
    };
    let config = roll.config_path.display().to_string();
    // The same time again: the instances this run made are newer than it.
    let rerun_flags = match &roll.options.created_before_text {
        Some(t) => format!(" --created-before {t}"),
        None => String::new(),
    };
    let steps = next_steps(&stop, servers, pools, &config, roll.group(), &rerun_flags);
    let mut text = vec![format!("ROLL STOPPED: {reason}")];
    for d in &done {
        text.push(format!("done about it: {d}"));
    }
    if roll.changes.is_empty() {
        text.push("this run changed nothing".to_string());
    } else {
        text.push("this run changed:".to_string());
        text.extend(roll.changes.iter().map(|c| format!("  - {c}")));
    }
    text.push("the cluster now:".to_string());
    text.extend(state_text.lines().map(|l| format!("  {l}")));
    text.push("what to do:".to_string());
    text.extend(steps.iter().map(|s| format!("  - {s}")));
    roll.events.emit(
        "stopped",
        text.join("\n"),
        json!({
            "reason": reason,
            "kind": stop.kind(),
            "done": done,
            "changes": roll.changes,
            "state": state_json,
            "next_steps": steps,
        }),
    );
    match stop {
        Stop::Failed(e) => e.context("roll stopped (see the report above)"),
        other => anyhow::anyhow!("roll stopped: {}", other.reason()),
    }
}
