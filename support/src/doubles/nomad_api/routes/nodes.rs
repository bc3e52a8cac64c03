//! Node, allocation, drain and eligibility handlers.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::super::render;
use super::*;
use crate::doubles::nomad_sim::NodeOpError;
use crate::doubles::server::RecordedRequest;

pub(super) fn prefix_ok(request: &RecordedRequest) -> Result<Option<String>, Answer> {
    for unmodelled in ["filter", "per_page", "next_token"] {
        if request.query_param(unmodelled).is_some() {
            return Err(Answer::text(
                400,
                &format!("the Nomad API double does not model ?{unmodelled}"),
            ));
        }
    }
    Ok(request.query_param("prefix").map(str::to_string))
}

pub(super) fn bool_param(request: &RecordedRequest, name: &str) -> Result<Option<bool>, Answer> {
    match request.query_param(name) {
        None => Ok(None),
        Some(v) => parse_bool(v).map(Some).ok_or_else(|| {
            Answer::text(
                400,
                &format!("Failed to parse value of {name:?} ({v}) as a bool"),
            )
        }),
    }
}

pub(super) fn nodes(ctx: &mut Ctx<'_>) -> Answer {
    let prefix = match prefix_ok(ctx.request) {
        Ok(p) => p,
        Err(a) => return a,
    };
    let os = match bool_param(ctx.request, "os") {
        Ok(v) => v.unwrap_or(false),
        Err(a) => return a,
    };
    if let Err(a) = bool_param(ctx.request, "resources") {
        return a;
    }
    let _caller = authorized!(ctx);
    if !read_needs_leader(ctx) {
        return Answer::text(500, NO_LEADER);
    }
    block(ctx, |c| c.nodes_index);
    let cluster = &*ctx.cluster;
    let stubs: Vec<Value> = cluster
        .nodes
        .iter()
        .filter(|n| prefix.as_deref().is_none_or(|p| n.id.starts_with(p)))
        .map(|n| {
            let mut stub = render::node_stub(cluster, n);
            if os {
                stub["Attributes"] = json!({ "os.name": "ubuntu" });
            }
            stub
        })
        .collect();
    let index = cluster.nodes_index;
    with_meta(ctx, Answer::json(200, &json!(stubs)), index)
}

pub(super) fn node_id(request: &RecordedRequest) -> String {
    let rest = request
        .path
        .trim_end_matches('/')
        .strip_prefix("/v1/node/")
        .unwrap_or_default();
    rest.split('/').next().unwrap_or_default().to_string()
}

pub(super) fn node(ctx: &mut Ctx<'_>) -> Answer {
    let id = node_id(ctx.request);
    let _caller = authorized!(ctx);
    if !read_needs_leader(ctx) {
        return Answer::text(500, NO_LEADER);
    }
    block(ctx, |c| {
        c.node(&id).map(|n| n.modify_index).unwrap_or(c.nodes_index)
    });
    let cluster = &*ctx.cluster;
    match cluster.node(&id) {
        Some(n) => {
            let body = render::node(cluster, n);
            let index = n.modify_index;
            with_meta(ctx, Answer::json(200, &body), index)
        }
        None => {
            let index = cluster.nodes_index;
            with_meta(ctx, Answer::text(404, "node not found"), index)
        }
    }
}

pub(super) fn node_allocations(ctx: &mut Ctx<'_>) -> Answer {
    let id = node_id(ctx.request);
    let caller = authorized!(ctx);
    if !read_needs_leader(ctx) {
        return Answer::text(500, NO_LEADER);
    }
    block(ctx, |c| c.allocs_index);
    let cluster = &*ctx.cluster;
    let allocs: Vec<Value> = cluster
        .allocs
        .iter()
        .filter(|a| a.node_id == id && caller.can("namespace:read-job"))
        .map(|a| render::allocation(cluster, a))
        .collect();
    let index = cluster.allocs_index;
    with_meta(ctx, Answer::json(200, &json!(allocs)), index)
}

pub(super) fn write_response(write: &crate::doubles::nomad_sim::NodeWrite) -> Answer {
    Answer::json(
        200,
        &json!({
            "NodeModifyIndex": write.node_modify_index,
            "EvalIDs": if write.eval_ids.is_empty() { Value::Null } else { json!(write.eval_ids) },
            "EvalCreateIndex": write.eval_create_index,
            "Index": write.index,
        }),
    )
    .header("X-Nomad-Index", write.index.to_string())
}

pub(super) fn node_error(e: NodeOpError) -> Answer {
    match e {
        NodeOpError::NoLeader => Answer::text(500, NO_LEADER),
        NodeOpError::NodeNotFound => Answer::text(500, "node not found"),
        NodeOpError::EligibleWhileDraining => Answer::text(
            500,
            "can not set node's scheduling eligibility to eligible while it is draining",
        ),
    }
}

pub(super) fn decode_body(request: &RecordedRequest) -> Result<Value, Answer> {
    if request.body.trim().is_empty() {
        return Err(Answer::text(400, "Request body is empty"));
    }
    serde_json::from_str(&request.body)
        .map_err(|e| Answer::text(400, &format!("failed to decode request body: {e}")))
}

pub(super) fn node_drain(ctx: &mut Ctx<'_>) -> Answer {
    let id = node_id(ctx.request);
    let body = match decode_body(ctx.request) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let spec = match &body["DrainSpec"] {
        Value::Null => None,
        Value::Object(spec) => {
            let deadline = match spec.get("Deadline") {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or(0),
                Some(other) => {
                    return Answer::text(
                        400,
                        &format!(
                            "failed to decode request body: json: cannot unmarshal {} into Go struct field DrainSpec.DrainSpec.Deadline of type time.Duration",
                            json_kind(other)
                        ),
                    )
                }
            };
            let ignore = spec
                .get("IgnoreSystemJobs")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            Some((deadline, ignore))
        }
        other => {
            return Answer::text(
                400,
                &format!(
                    "failed to decode request body: json: cannot unmarshal {} into Go struct field NodeUpdateDrainRequest.DrainSpec of type api.DrainSpec",
                    json_kind(other)
                ),
            )
        }
    };
    let mark_eligible = body["MarkEligible"].as_bool().unwrap_or(false);
    let meta: BTreeMap<String, String> = body["Meta"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let caller = authorized!(ctx);
    if !hold_for_leader(ctx.cluster) {
        return Answer::text(500, NO_LEADER);
    }
    match ctx
        .cluster
        .set_drain(&id, spec, mark_eligible, meta, &caller.accessor_id)
    {
        Ok(write) => write_response(&write),
        Err(e) => node_error(e),
    }
}

pub(super) fn node_eligibility(ctx: &mut Ctx<'_>) -> Answer {
    let path_id = node_id(ctx.request);
    let body = match decode_body(ctx.request) {
        Ok(b) => b,
        Err(a) => return a,
    };
    let id = body["NodeID"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or(path_id);
    let eligibility = body["Eligibility"].as_str().unwrap_or_default().to_string();
    let _caller = authorized!(ctx);
    let eligible = match eligibility.as_str() {
        "eligible" => true,
        "ineligible" => false,
        other => {
            return Answer::text(500, &format!("invalid scheduling eligibility {other:?}"));
        }
    };
    if !hold_for_leader(ctx.cluster) {
        return Answer::text(500, NO_LEADER);
    }
    match ctx.cluster.set_eligibility(&id, eligible) {
        Ok(write) => write_response(&write),
        Err(e) => node_error(e),
    }
}

pub(super) fn allocations(ctx: &mut Ctx<'_>) -> Answer {
    let prefix = match prefix_ok(ctx.request) {
        Ok(p) => p,
        Err(a) => return a,
    };
    let task_states = match bool_param(ctx.request, "task_states") {
        Ok(v) => v.unwrap_or(true),
        Err(a) => return a,
    };
    let namespace = ctx
        .request
        .query_param("namespace")
        .unwrap_or("default")
        .to_string();
    let _caller = authorized!(ctx);
    if !read_needs_leader(ctx) {
        return Answer::text(500, NO_LEADER);
    }
    block(ctx, |c| c.allocs_index);
    let cluster = &*ctx.cluster;
    let reverse = ctx
        .request
        .query_param("reverse")
        .and_then(parse_bool)
        .unwrap_or(false);
    let mut stubs: Vec<Value> = cluster
        .allocs
        .iter()
        .filter(|a| namespace == "*" || a.namespace == namespace)
        .filter(|a| prefix.as_deref().is_none_or(|p| a.id.starts_with(p)))
        .map(|a| {
            let mut stub = render::allocation_stub(cluster, a);
            if !task_states {
                stub["TaskStates"] = Value::Null;
            }
            stub
        })
        .collect();
    if reverse {
        stubs.reverse();
    }
    let index = cluster.allocs_index;
    with_meta(ctx, Answer::json(200, &json!(stubs)), index)
}
