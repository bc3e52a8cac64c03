//! A secret rotation followed by `roll --created-before`, on the simulated cluster: `rotate`
//! changes the vault but not the scale sets' model, so a plain roll has nothing to do; the
//! command `rotate` prints (with the time of its step) replaces every instance Azure created
//! before that time, with the safety properties checked at every simulated step, and a re-run
//! with the same time replaces nothing more. The ARM double reports each instance's
//! `timeCreated` in the simulation's virtual time, which is also the clock `rotate` and `roll`
//! run on here, and the Key Vault double's (the printed time is the `created` of the version
//! the step wrote). `switch` and `finish` are refused, naming the instances, until the roll
//! after the previous step has replaced every one. Also: the flag is checked (a time in the future, not RFC 3339) and an instance
//! without `timeCreated` is refused by name, before anything changes.

mod common;
mod rolling;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rolling::{Rig, RigOptions, CLIENTS, SERVERS};
use serde_json::Value;
use support::doubles::nomad_sim::ServerPhase;

fn current() -> Rig {
    Rig::new(RigOptions {
        new_image: false,
        generated_ca: true,
        ..RigOptions::default()
    })
}

/// VM ids of every instance of both scale sets.
fn vm_ids(rig: &Rig) -> Vec<String> {
    [SERVERS, CLIENTS]
        .iter()
        .flat_map(|set| rig.deploy.arm.instances(set))
        .map(|i| i.vm_id)
        .collect()
}

/// `rotate <step> --json` in-process on the simulation's clock: the printed time and command.
fn rotate(rig: &Rig, step: &[&str]) -> (String, Value) {
    let mut args = vec!["rotate"];
    args.extend(step);
    args.push("--json");
    let (result, stdout) = rig.command(&args);
    if let Err(e) = result {
        panic!("{args:?}: {e:#}\n{stdout}");
    }
    let out: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let time = out["created_before"]
        .as_str()
        .expect("created_before")
        .to_string();
    let config = rig.deploy.config.to_str().unwrap();
    assert_eq!(
        out["roll_command"],
        format!("cluster-deploy roll --config {config} --created-before {time}"),
        "{out}"
    );
    (time, out)
}

fn done(outcome: &rolling::Outcome) -> Value {
    outcome
        .of("done")
        .last()
        .copied()
        .cloned()
        .expect("a done event")
}

#[test]
fn rotate_then_roll_created_before_replaces_every_instance_and_a_rerun_nothing_more() {
    let rig = current();
    let first = vm_ids(&rig);
    assert_eq!(first.len(), 9);
    let status = rig.status();
    for set in status["scale_sets"].as_array().unwrap() {
        for i in set["instances"].as_array().unwrap() {
            assert_eq!(i["latest_model_applied"], true, "{i}");
            assert!(
                i["time_created"]
                    .as_str()
                    .unwrap()
                    .starts_with("2026-01-01T"),
                "{i}"
            );
        }
    }
    // The problem: the rotation leaves the model as it is, a plain roll has nothing to do.
    let (t1, step) = rotate(&rig, &["--ca", "start"]);
    assert!(
        step["next_steps"][0]
            .as_str()
            .unwrap()
            .contains(step["roll_command"].as_str().unwrap()),
        "{step}"
    );
    assert_eq!(done(rig.roll(&[]).ok())["changed"], false);

    // The dry run lists every instance, selected by its age.
    let dry = rig.roll(&["--created-before", &t1, "--dry-run"]);
    dry.ok();
    let plan = &dry.of("plan")[0];
    let steps = plan["plan"]["servers"].as_array().unwrap();
    let batches: Vec<&Value> = plan["plan"]["pools"][0]["batches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b.as_array().unwrap())
        .collect();
    assert_eq!((steps.len(), batches.len()), (3, 6), "{plan}");
    for i in steps.iter().map(|s| &s["instance"]).chain(batches) {
        assert_eq!(
            (&i["latest_model"], &i["created_before_cutoff"]),
            (&Value::Bool(true), &Value::Bool(true)),
            "{i}"
        );
    }
    let text = plan["message"].as_str().unwrap();
    assert_eq!(
        text.matches(", before --created-before]").count(),
        9,
        "{}",
        dry.stdout
    );
    assert_eq!(
        rig.deleted(),
        Vec::<String>::new(),
        "a dry run changes nothing"
    );

    // Interrupted as the first old server leaves: the stop report's re-run keeps the time,
    // and the re-run resumes (the server surged before the stop is newer than the time).
    let leaving = Arc::new(AtomicBool::new(false));
    {
        let leaving = leaving.clone();
        rig.sim.observe(move |view| {
            if view.servers.iter().any(|s| s.phase == ServerPhase::Leaving) {
                leaving.store(true, Ordering::SeqCst);
            }
        });
    }
    let stopped = rig.roll_with(&["--created-before", &t1], leaving);
    assert_eq!(
        stopped.stopped()["kind"],
        "interrupted",
        "{}",
        stopped.stdout
    );
    let rerun = format!(
        "re-run `cluster-deploy roll --config {} --created-before {t1}`",
        rig.deploy.config.display()
    );
    assert!(stopped.stdout.contains(&rerun), "{}", stopped.stdout);
    let midway = vm_ids(&rig);
    assert_eq!(
        midway.iter().filter(|vm| !first.contains(vm)).count(),
        1,
        "one new server: {midway:?}"
    );
    rig.roll(&["--created-before", &t1]).ok();
    let second = vm_ids(&rig);
    assert_eq!(second.len(), 9, "{second:?}");
    assert!(second.iter().all(|vm| !first.contains(vm)), "{second:?}");
    assert!(rig.old_instances_left().is_empty());
    rig.assert_properties(false);

    // The same time again: the instances the roll made are newer than it.
    let deleted = rig.deleted().len();
    let again = rig.roll(&["--created-before", &t1]);
    assert_eq!(done(again.ok())["changed"], false, "{}", again.stdout);
    assert_eq!(rig.deleted().len(), deleted);
    assert_eq!(vm_ids(&rig), second);

    // The next step has a later time: the nodes of the first roll are old by it.
    let (t2, _) = rotate(&rig, &["--ca", "switch"]);
    assert!(t2 > t1, "{t2} after {t1}");
    rig.roll(&["--created-before", &t2]).ok();
    let third = vm_ids(&rig);
    assert_eq!(third.len(), 9);
    assert!(third
        .iter()
        .all(|vm| !second.contains(vm) && !first.contains(vm)));
    rig.assert_properties(false);
    assert_eq!(
        done(rig.roll(&["--created-before", &t2]).ok())["changed"],
        false
    );
}

#[test]
fn the_time_and_the_instances_ages_are_checked_before_anything_changes() {
    let rig = current();
    let before = vm_ids(&rig);
    // The simulation's calendar starts on 2026-01-01: a day later is in its future.
    for (value, why) in [
        ("2026-01-02T00:00:00Z", "the time is in the future"),
        ("2026-01-01", "not an RFC 3339 time"),
        ("yesterday", "not an RFC 3339 time"),
    ] {
        let error = rig.roll(&["--created-before", value]).error();
        assert!(
            error.starts_with(&format!("--created-before {value}: {why}")),
            "{error}"
        );
    }
    // Compute left timeCreated out for one server: its age is unknown, nothing is guessed.
    rig.deploy.arm.forget_time_created(SERVERS, "1");
    let (t, _) = rotate(&rig, &["--certificates"]);
    let outcome = rig.roll(&["--created-before", &t]);
    let error = outcome.error();
    assert!(
        error.contains(&format!(
            "--created-before {t}: scale set {SERVERS}: instance 1 ("
        )) && error.contains("has no properties.timeCreated"),
        "{error}"
    );
    // Without the flag the age does not matter: nothing to roll, and no refusal.
    assert_eq!(done(rig.roll(&[]).ok())["changed"], false);
    assert_eq!(vm_ids(&rig), before);
    assert_eq!(rig.deleted(), Vec::<String>::new());
}

/// The refusal of a CA step that comes before the previous roll finished: it names the
/// instances, the time and the roll to run, and changes nothing.
fn refused(rig: &Rig, step: &str, previous: &str, time: &str) -> String {
    let instances = vm_ids(rig);
    let settled = kv_versions(rig);
    let (result, stdout) = rig.command(&["rotate", "--ca", step, "--json"]);
    let error = format!("{:#}", result.expect_err(step));
    assert!(stdout.is_empty(), "{stdout}");
    let roll = format!(
        "`cluster-deploy roll --config {} --created-before {time}`",
        rig.deploy.config.display()
    );
    for part in [
        format!(
            "`cluster-deploy rotate --ca {step}`: the roll after `cluster-deploy rotate --ca \
             {previous}` has not finished: 9 instances were not replaced since that step ({time},"
        ),
        format!("scale set {SERVERS}: instance "),
        format!("scale set {CLIENTS}: instance "),
        format!("Run {roll} first"),
        "--skip-roll-check".to_string(),
        "nothing was changed".to_string(),
    ] {
        assert!(error.contains(&part), "{part}\n{error}");
    }
    assert_eq!(error.matches(" created 2026-").count(), 9, "{error}");
    assert_eq!(vm_ids(rig), instances);
    assert_eq!(kv_versions(rig), settled);
    error
}

fn kv_versions(rig: &Rig) -> Vec<usize> {
    let store = rig.deploy.stack.kv.as_ref().unwrap().store();
    let store = store.lock().unwrap();
    support::cluster_secrets::SecretItem::ALL
        .iter()
        .map(|i| store.version_count(i.vault_name()))
        .chain([store.version_count("nomad-ca-key-next")])
        .collect()
}

/// The printed time is the `created` of the last version the step wrote (one of `written`),
/// by the vault's clock.
fn vault_time(rig: &Rig, written: &[&str], printed: &str, out: &Value) {
    let kv = rig.deploy.stack.kv.as_ref().unwrap();
    let created = written
        .iter()
        .filter_map(|name| kv.latest_created(name))
        .max()
        .unwrap();
    let at = time::OffsetDateTime::from_unix_timestamp(created).unwrap();
    assert_eq!(
        printed,
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        "{out}"
    );
    assert!(
        printed.starts_with("2026-01-01T"),
        "the simulation's day: {printed}"
    );
    assert_eq!(out["created_before_source"], "key_vault", "{out}");
}

#[test]
fn switch_and_finish_wait_for_the_roll_after_the_previous_step() {
    let rig = current();
    let (t1, start) = rotate(&rig, &["--ca", "start"]);
    vault_time(&rig, &["nomad-ca-cert", "nomad-ca-key-next"], &t1, &start);
    // Right after start every instance still trusts only the old CA: refused, nothing changes.
    refused(&rig, "switch", "start", &t1);
    assert_eq!(rig.deleted(), Vec::<String>::new());

    // Half a roll (interrupted after the first server is replaced) is not enough.
    let leaving = Arc::new(AtomicBool::new(false));
    {
        let leaving = leaving.clone();
        rig.sim.observe(move |view| {
            if view.servers.iter().any(|s| s.phase == ServerPhase::Leaving) {
                leaving.store(true, Ordering::SeqCst);
            }
        });
    }
    rig.roll_with(&["--created-before", &t1], leaving);
    let (result, _) = rig.command(&["rotate", "--ca", "switch"]);
    let error = format!("{:#}", result.unwrap_err());
    assert!(
        error.contains("instances were not replaced") && !error.contains(": 9 instances"),
        "{error}"
    );

    // After the roll: accepted.
    rig.roll(&["--created-before", &t1]).ok();
    let (t2, switch) = rotate(&rig, &["--ca", "switch"]);
    assert_eq!(switch["phase"], "phase-2", "{switch}");
    let written = [
        "nomad-ca-key",
        "nomad-server-cert",
        "nomad-server-key",
        "nomad-client-cert",
        "nomad-client-key",
        "nomad-cli-cert",
        "nomad-cli-key",
    ];
    vault_time(&rig, &written, &t2, &switch);
    assert!(t2 > t1);

    // Finish waits for the roll after the switch in the same way.
    refused(&rig, "finish", "switch", &t2);
    rig.roll(&["--created-before", &t2]).ok();
    let (_, finish) = rotate(&rig, &["--ca", "finish"]);
    assert_eq!(finish["phase"], "idle", "{finish}");
    rig.assert_properties(false);
}
