//! The client's types parse every sample of `../shared/nomad-api/examples/` (HashiCorp's doc
//! samples), and stay tolerant: each sample still parses with an unknown field added to every
//! object, with every nullable field set to `null`, and with every optional field removed
//! (what "optional" and "nullable" mean comes from the sample's own schema).

use std::path::PathBuf;

use cluster_deploy::nomad::{
    AclToken, AgentHealth, AgentSelf, Allocation, AllocationListStub, AutopilotConfiguration,
    BootstrapRequest, DrainRequest, EligibilityRequest, LeadershipTransferResponse, Node,
    NodeListStub, NodeUpdateResponse, OperatorHealth, RaftConfiguration, ServerMembers,
};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

fn shared() -> PathBuf {
    support::doubles::nomad_api::shared_dir()
}

fn read(relative: &str) -> Value {
    let path = shared().join(relative);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_as<T: DeserializeOwned>(value: &Value) -> Result<(), String> {
    serde_json::from_value::<T>(value.clone())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Parses `value` with the client type for schema `schema` (a `schemas/` file name).
fn parse(schema: &str, value: &Value) -> Result<(), String> {
    match schema {
        "StatusLeader.json" => parse_as::<String>(value),
        "StatusPeers.json" => parse_as::<Vec<String>>(value),
        "ServerMembers.json" => parse_as::<ServerMembers>(value),
        "AgentSelf.json" => parse_as::<AgentSelf>(value),
        "AgentHealthResponse.json" => parse_as::<AgentHealth>(value),
        "RaftConfiguration.json" => parse_as::<RaftConfiguration>(value),
        "OperatorHealthReply.json" => parse_as::<OperatorHealth>(value),
        "AutopilotConfiguration.json" | "AutopilotConfigurationRequest.json" => {
            parse_as::<AutopilotConfiguration>(value)
        }
        "AutopilotSetConfigurationResponse.json" => parse_as::<bool>(value),
        "NodeListStubs.json" => parse_as::<Vec<NodeListStub>>(value),
        "Node.json" => parse_as::<Node>(value),
        "Allocations.json" => parse_as::<Vec<Allocation>>(value),
        "AllocationListStubs.json" => parse_as::<Vec<AllocationListStub>>(value),
        "NodeUpdateDrainRequest.json" => parse_as::<DrainRequest>(value),
        "NodeUpdateEligibilityRequest.json" => parse_as::<EligibilityRequest>(value),
        "NodeDrainUpdateResponse.json" | "NodeEligibilityUpdateResponse.json" => {
            parse_as::<NodeUpdateResponse>(value)
        }
        "BootstrapRequest.json" => parse_as::<BootstrapRequest>(value),
        "ACLToken.json" => parse_as::<AclToken>(value),
        "LeadershipTransferResponse.json" => parse_as::<LeadershipTransferResponse>(value),
        other => Err(format!("no client type for schema {other}")),
    }
}

fn examples() -> Vec<(String, String, Value)> {
    let index = read("examples/INDEX.json");
    index["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let file = e["file"].as_str().unwrap().to_string();
            let schema = e["schema"]
                .as_str()
                .unwrap()
                .trim_start_matches("schemas/")
                .to_string();
            let value = read(&format!("examples/{file}"));
            (file, schema, value)
        })
        .collect()
}

#[test]
fn every_sample_parses() {
    let examples = examples();
    assert!(examples.len() >= 20, "{} examples", examples.len());
    for (file, schema, value) in &examples {
        parse(schema, value).unwrap_or_else(|e| panic!("{file} as {schema}: {e}"));
    }
    // Every response schema endpoints.json names has a client type.
    let endpoints = read("endpoints.json");
    for e in endpoints["endpoints"].as_array().unwrap() {
        for key in ["response_schema", "request_schema"] {
            if let Some(s) = e[key].as_str().and_then(|s| s.strip_prefix("schemas/")) {
                assert!(
                    !parse(s, &Value::Null)
                        .unwrap_err()
                        .starts_with("no client type"),
                    "{s} has no client type"
                );
            }
        }
    }
}

/// A schema node with `$ref`s into the document's `$defs` resolved and `anyOf` branches
/// narrowed to the one that fits `instance`'s JSON type.
fn resolve<'a>(root: &'a Value, mut schema: &'a Value, instance: &Value) -> &'a Value {
    loop {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.trim_start_matches("#/$defs/");
            schema = &root["$defs"][name];
            continue;
        }
        if let Some(branches) = schema["anyOf"].as_array() {
            let wanted = if instance.is_object() {
                "object"
            } else {
                "null"
            };
            schema = branches
                .iter()
                .find(|b| b["type"] == wanted || (wanted == "object" && b.get("$ref").is_some()))
                .unwrap_or(&branches[0]);
            continue;
        }
        return schema;
    }
}

fn nullable(schema: &Value) -> bool {
    match &schema["type"] {
        Value::Array(types) => types.iter().any(|t| t == "null"),
        _ => schema["anyOf"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["type"] == "null")),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    UnknownFields,
    Nulls,
    Absent,
}

/// `instance` changed as `variant` says, everywhere the schema describes it.
fn vary(root: &Value, schema: &Value, instance: &Value, variant: Variant) -> Value {
    let schema = resolve(root, schema, instance);
    match instance {
        Value::Object(map) => {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut out = Map::new();
            for (key, value) in map {
                let Some(property) = schema["properties"].get(key) else {
                    out.insert(key.clone(), value.clone());
                    continue;
                };
                let property_schema = resolve(root, property, value);
                match variant {
                    Variant::Absent if !required.contains(&key.as_str()) => continue,
                    Variant::Nulls if nullable(property) || nullable(property_schema) => {
                        out.insert(key.clone(), Value::Null);
                    }
                    _ => {
                        out.insert(key.clone(), vary(root, property, value, variant));
                    }
                }
            }
            // Structs take unknown fields; maps (typed additionalProperties) keep their type.
            let is_struct = !schema["additionalProperties"].is_object();
            if variant == Variant::UnknownFields && is_struct {
                out.insert(
                    "FieldFromAFutureNomad".to_string(),
                    serde_json::json!({"x": [1]}),
                );
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| vary(root, &schema["items"], item, variant))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn samples_still_parse_with_unknown_fields_nulls_and_absent_optional_fields() {
    for (file, schema_file, value) in examples() {
        // Request bodies are ours to write; their schemas forbid unknown fields on purpose.
        let request = file.ends_with(".request.json");
        let schema = read(&format!("schemas/{schema_file}"));
        for variant in [Variant::UnknownFields, Variant::Nulls, Variant::Absent] {
            if request && variant == Variant::UnknownFields {
                continue;
            }
            let varied = vary(&schema, &schema, &value, variant);
            parse(&schema_file, &varied).unwrap_or_else(|e| {
                panic!(
                    "{file} ({}) no longer parses: {e}\n{varied:#}",
                    match variant {
                        Variant::UnknownFields => "unknown fields added",
                        Variant::Nulls => "nullable fields null",
                        Variant::Absent => "optional fields removed",
                    }
                )
            });
        }
    }
}
