//! What-if (202 + `Location`, fact 4) compares each template resource with what exists:
//! `Create`, `Modify` (delta per top-level property; child collections such as
//! `properties.subnets` and `properties.securityRules` as `Array` changes whose children say
//! which items are created, modified or deleted), `NoChange`; resources the template does not
//! name are `Ignore` (Incremental).

use serde_json::{json, Map, Value};

use super::{check_template, invalid_template, plan};
use crate::doubles::arm::children;
use crate::doubles::arm::expr::Context;
use crate::doubles::arm::lro::Pending;
use crate::doubles::arm::{Call, State};
use crate::doubles::server::Reply;

/// Server-set values that what-if does not count as changes.
fn strip_read_only(v: &mut Value) {
    if let Some(o) = v.as_object_mut() {
        o.remove("provisioningState");
        o.remove("ipAddress");
        o.remove("scope");
        if let Some(os) = o
            .get_mut("virtualMachineProfile")
            .and_then(|p| p.get_mut("osProfile"))
            .and_then(Value::as_object_mut)
        {
            os.remove("customData");
        }
    }
}

fn named_items(v: &Value) -> Option<Vec<(String, Value)>> {
    let items = v.as_array()?;
    items
        .iter()
        .map(|i| Some((i["name"].as_str()?.to_string(), i.clone())))
        .collect()
}

/// The what-if delta of `properties`: one change per differing top-level property; arrays of
/// named items (child collections) as `Array` changes with per-item children.
fn properties_delta(before: &Value, after: &Value) -> Vec<Value> {
    let mut delta = Vec::new();
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (bv, av) = (
            b.get(key).cloned().unwrap_or(Value::Null),
            a.get(key).cloned().unwrap_or(Value::Null),
        );
        if bv == av || av.is_null() {
            continue;
        }
        let path = format!("properties.{key}");
        match (named_items(&bv), named_items(&av)) {
            (Some(old), Some(new)) => {
                let mut children = Vec::new();
                for (i, (n, item)) in old.iter().enumerate() {
                    match new.iter().find(|(m, _)| m == n) {
                        None => children.push(json!({ "path": i.to_string(), "propertyChangeType": "Delete", "before": item })),
                        Some((_, now)) if now != item => children.push(json!({ "path": i.to_string(), "propertyChangeType": "Modify", "before": item, "after": now })),
                        Some(_) => {}
                    }
                }
                for (i, (n, item)) in new.iter().enumerate() {
                    if !old.iter().any(|(m, _)| m == n) {
                        children.push(json!({ "path": i.to_string(), "propertyChangeType": "Create", "after": item }));
                    }
                }
                delta.push(json!({ "path": path, "propertyChangeType": "Array", "before": bv, "after": av, "children": children }));
            }
            _ => delta.push(json!({ "path": path, "propertyChangeType": if bv.is_null() { "Create" } else { "Modify" }, "before": bv, "after": av })),
        }
    }
    delta
}

/// Deployments_WhatIf.
pub(crate) fn what_if(state: &mut State, call: &Call) -> Reply {
    let group = call.param("resourceGroupName").to_string();
    let body = match call.body() {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(reply) = check_template(state, &group, &body) {
        return reply;
    }
    let template = &body["properties"]["template"];
    let parameters = &body["properties"]["parameters"];
    let group_location = state.groups[&group.to_ascii_lowercase()]["location"].clone();
    let ctx = Context {
        state,
        group: &group,
        group_location: &group_location,
        template,
        parameters,
    };
    let result = (|| -> Result<Value, String> {
        let planned = plan(&ctx)?;
        let mut changes = Vec::new();
        for (raw, (id, _, _)) in template["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(&planned)
        {
            let condition = raw
                .get("condition")
                .map(|c| ctx.eval_value(c))
                .transpose()?;
            if !children::deployed(condition.as_ref())? {
                continue;
            }
            // reference() to a resource that does not exist yet is unknown until deployment.
            let mut after = ctx.eval_value(raw).unwrap_or_else(|_| raw.clone());
            let kind = raw["type"].as_str().unwrap_or_default();
            // A child (subnet, security rule) lives in its parent's collection.
            let existing = match children::parent_of(kind, id) {
                Some((parent, collection, name)) => state
                    .resources
                    .get(&parent.to_ascii_lowercase())
                    .and_then(|p| children::find_child(&p.value, collection, &name)),
                None => state
                    .resources
                    .get(&id.to_ascii_lowercase())
                    .map(|s| s.value.clone()),
            };
            match existing {
                None => changes
                    .push(json!({ "resourceId": id, "changeType": "Create", "after": after })),
                Some(existing_value) => {
                    // What the provider keeps when the PUT leaves a collection out.
                    children::keep_omitted_children(kind, Some(&existing_value), &mut after);
                    let mut delta = Vec::new();
                    for key in ["location", "tags", "sku", "zones", "identity"] {
                        let mut before = existing_value[key].clone();
                        let mut wanted = after[key].clone();
                        if key == "identity" {
                            before = json!(before["type"]);
                            wanted = json!(wanted["type"]);
                        }
                        if !wanted.is_null() && before != wanted {
                            delta.push(json!({ "path": key, "propertyChangeType": "Modify", "before": before, "after": wanted }));
                        }
                    }
                    let mut before = existing_value["properties"].clone();
                    let mut wanted = after["properties"].clone();
                    strip_read_only(&mut before);
                    strip_read_only(&mut wanted);
                    delta.extend(properties_delta(&before, &wanted));
                    let kind = if delta.is_empty() {
                        "NoChange"
                    } else {
                        "Modify"
                    };
                    changes.push(json!({ "resourceId": id, "changeType": kind, "before": existing_value, "after": after, "delta": delta }));
                }
            }
        }
        for stored in state
            .resources
            .values()
            .filter(|s| s.group.eq_ignore_ascii_case(&group))
        {
            let id = stored.value["id"].as_str().unwrap_or_default();
            if !planned.iter().any(|(p, _, _)| p.eq_ignore_ascii_case(id)) {
                changes.push(
                    json!({ "resourceId": id, "changeType": "Ignore", "before": stored.value }),
                );
            }
        }
        Ok(json!({ "status": "Succeeded", "properties": { "changes": changes } }))
    })();
    let result = result.unwrap_or_else(
        |message| json!({ "status": "Failed", "error": invalid_template(&message) }),
    );
    call.long_running(state, 202, &Value::Null, Pending::WhatIf { result })
}
