//! The `.meta.json` schema Kong checks and the filter's own parser must
//! accept the same configs. Each row is checked against the draft-4 schema
//! and by configuring the compiled filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Node;
use local_gateway::Error;
use serde_json::{json, Value};

fn schema() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/kong/sliding_window_rate_limit.meta.json"
    );
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    meta["config_schema"].clone()
}

fn schema_accepts(validator: &jsonschema::Validator, config: &Value) -> bool {
    validator.is_valid(config)
}

fn filter_accepts(node: &Node, config: &Value) -> bool {
    match node.try_worker(&config.to_string()) {
        Ok(_) => true,
        Err(Error::ConfigRejected { .. }) => false,
        Err(other) => panic!("{config}: {other}"),
    }
}

/// Configs both accept.
fn valid_rows() -> Vec<Value> {
    vec![
        json!({"second": 100}),
        json!({"minute": 10, "hour": 100, "day": 1000}),
        json!({"second": 5, "minute": null, "hour": null, "day": null}),
        json!({"windows": [{"seconds": 10, "limit": 5}, {"seconds": 300, "limit": 50}]}),
        json!({"minute": 10, "limit_by": "header", "header_name": "X-API-Key"}),
        json!({"minute": 10, "limit_by": "path", "path": "/ml-model/predict"}),
        json!({"minute": 10, "limit_by": "path", "path": "/"}),
        json!({"minute": 10, "limit_by": null}),
        json!({"minute": 10, "limit_by": "consumer"}),
        json!({"minute": 10, "limit_by": "credential"}),
        json!({"minute": 10, "limit_by": "service"}),
        json!({"minute": 10, "limit_by": "route"}),
        json!({"minute": 10, "limit_by": "global"}),
        json!({"minute": 10, "limit_by": "ip", "header_name": "X-Unused"}),
        json!({"minute": 10, "ipv6_prefix_length": 64}),
        json!({"minute": 10, "error_code": 503, "error_message": "Model busy \"retry\""}),
        json!({"minute": 10, "hide_client_headers": true, "fault_tolerant": false}),
        json!({"minute": 10, "namespace": "team-a:models", "shm_zone": "counters_1"}),
        json!({"minute": 10, "cost": 10}),
        json!({"minute": 10, "max_body_bytes": 1048576, "log_level": "debug"}),
        json!({"minute": 10, "per_model": true, "model_pointer": "/model"}),
        json!({"minute": 10, "tokens": {"minute": 1000}}),
        json!({"minute": 10, "tokens": {"minute": 1000, "source": "header", "header_name": "X-Token-Estimate"}}),
        json!({"minute": 10, "tokens": {"hour": 1000, "source": "fixed", "default_cost": 5}}),
        json!({"minute": 10, "tokens": {"minute": 1000, "max_cost": 500, "default_cost": 0, "usage_pointer": "/usage/total_tokens"}}),
        json!({"minute": 10, "plans": {"members": {"k1": "pro"}, "limits": {"pro": {"minute": 100}}}}),
        json!({"minute": 10, "tokens": {"minute": 100}, "plans": {"header_name": "X-Consumer-Username", "members": {}, "limits": {"pro": {"minute": 100, "tokens": {"minute": 1000}}}}}),
        json!({"minute": 10, "tokens": {"minute": 100}, "plans": {"members": {}, "limits": {"pro": {"minute": 100, "tokens": null}}}}),
        json!({"minute": 10, "tokens": null, "plans": null}),
    ]
}

/// Configs both reject.
fn invalid_rows() -> Vec<Value> {
    vec![
        json!({}),
        json!([]),
        json!("minute=10"),
        json!({"minute": 0}),
        json!({"minute": -5}),
        json!({"minute": 1.5}),
        json!({"minute": "10"}),
        json!({"minute": true}),
        json!({"second": null}),
        json!({"minute": 10, "month": 100}),
        json!({"minute": 10, "policy": "local"}),
        json!({"minute": 10, "unknown": 1}),
        json!({"windows": []}),
        json!({"windows": [{"seconds": 10}]}),
        json!({"windows": [{"seconds": 0, "limit": 1}]}),
        json!({"windows": [{"seconds": 31536001, "limit": 1}]}),
        json!({"windows": [{"seconds": 10, "limit": 1, "burst": 2}]}),
        json!({"windows": [{"seconds": 1, "limit": 1}, {"seconds": 2, "limit": 1}, {"seconds": 3, "limit": 1}, {"seconds": 4, "limit": 1}, {"seconds": 5, "limit": 1}, {"seconds": 6, "limit": 1}, {"seconds": 7, "limit": 1}, {"seconds": 8, "limit": 1}, {"seconds": 9, "limit": 1}]}),
        json!({"minute": 10, "limit_by": "cookie"}),
        json!({"minute": 10, "limit_by": "header"}),
        json!({"minute": 10, "limit_by": "header", "header_name": null}),
        json!({"minute": 10, "limit_by": "header", "header_name": ""}),
        json!({"minute": 10, "limit_by": "header", "header_name": "X API Key"}),
        json!({"minute": 10, "limit_by": "path"}),
        json!({"minute": 10, "limit_by": "path", "path": "ml-model"}),
        json!({"minute": 10, "limit_by": "path", "path": "/a//b"}),
        json!({"minute": 10, "header_name": "bad name"}),
        json!({"minute": 10, "ipv6_prefix_length": 0}),
        json!({"minute": 10, "ipv6_prefix_length": 129}),
        json!({"minute": 10, "error_code": 200}),
        json!({"minute": 10, "error_code": 600}),
        json!({"minute": 10, "error_message": ""}),
        json!({"minute": 10, "error_message": "x".repeat(1025)}),
        json!({"minute": 10, "hide_client_headers": "true"}),
        json!({"minute": 10, "fault_tolerant": 1}),
        json!({"minute": 10, "namespace": "has space"}),
        json!({"minute": 10, "namespace": "n".repeat(65)}),
        json!({"minute": 10, "shm_zone": "zone/with/slash"}),
        json!({"minute": 10, "shm_zone": ""}),
        json!({"minute": 10, "cost": 0}),
        json!({"minute": 10, "max_body_bytes": 0}),
        json!({"minute": 10, "max_body_bytes": 1048577}),
        json!({"minute": 10, "log_level": "trace"}),
        json!({"minute": 10, "per_model": "yes"}),
        json!({"minute": 10, "model_pointer": "model"}),
        json!({"minute": 10, "tokens": {}}),
        json!({"minute": 10, "tokens": {"minute": 0}}),
        json!({"minute": 10, "tokens": {"minute": 100, "source": "query"}}),
        json!({"minute": 10, "tokens": {"minute": 100, "source": "header"}}),
        json!({"minute": 10, "tokens": {"minute": 100, "body_pointer": "max_tokens"}}),
        json!({"minute": 10, "tokens": {"minute": 100, "usage_pointer": ""}}),
        json!({"minute": 10, "tokens": {"minute": 100, "default_cost": -1}}),
        json!({"minute": 10, "tokens": {"minute": 100, "max_cost": 0}}),
        json!({"minute": 10, "tokens": {"minute": 100, "extra": 1}}),
        json!({"minute": 10, "plans": {}}),
        json!({"minute": 10, "plans": {"members": {}}}),
        json!({"minute": 10, "plans": {"limits": {"pro": {"minute": 5}}}}),
        json!({"minute": 10, "plans": {"members": {}, "limits": {}}}),
        json!({"minute": 10, "plans": {"members": {"k": 1}, "limits": {"pro": {"minute": 5}}}}),
        json!({"minute": 10, "plans": {"members": {}, "limits": {"bad name": {"minute": 5}}}}),
        json!({"minute": 10, "plans": {"members": {}, "limits": {"pro": {}}}}),
        json!({"minute": 10, "plans": {"members": {}, "limits": {"pro": {"minute": 5, "extra": 1}}}}),
        json!({"minute": 10, "plans": {"members": {}, "limits": {"pro": {"minute": 5}}, "extra": 1}}),
    ]
}

/// Cross-field rules JSON Schema draft 4 cannot state: Kong accepts these,
/// and the filter rejects them when it is configured. The README lists them.
fn parser_only_rows() -> Vec<Value> {
    vec![
        json!({"second": 10, "minute": 5}),
        json!({"minute": 10, "windows": [{"seconds": 60, "limit": 10}]}),
        json!({"minute": 10, "cost": 11}),
        json!({"minute": 10, "tokens": {"minute": 100, "max_cost": 101}}),
        json!({"minute": 10, "tokens": {"minute": 100, "max_cost": 10, "default_cost": 11}}),
        json!({"minute": 10, "plans": {"members": {"k": "gold"}, "limits": {"pro": {"minute": 5}}}}),
        json!({"minute": 10, "plans": {"members": {}, "limits": {"pro": {"minute": 5, "tokens": {"minute": 5}}}}}),
    ]
}

#[test]
fn schema_and_filter_agree_on_every_row() {
    let validator = jsonschema::draft4::new(&schema()).unwrap();
    let node = Node::kong();
    let mut disagreements = Vec::new();
    for (rows, expected) in [(valid_rows(), true), (invalid_rows(), false)] {
        for config in rows {
            let by_schema = schema_accepts(&validator, &config);
            let by_filter = filter_accepts(&node, &config);
            if by_schema != expected || by_filter != expected {
                disagreements.push(format!(
                    "{config}: schema {by_schema}, filter {by_filter}, expected {expected}"
                ));
            }
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn cross_field_rules_are_the_filter_s_alone() {
    let validator = jsonschema::draft4::new(&schema()).unwrap();
    let node = Node::kong();
    for config in parser_only_rows() {
        assert!(
            schema_accepts(&validator, &config),
            "schema rejects {config}"
        );
        assert!(!filter_accepts(&node, &config), "filter accepts {config}");
    }
}

#[test]
fn schema_declares_draft_4_and_no_extra_fields() {
    let schema = schema();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
    assert_eq!(schema["additionalProperties"], false);
    // Every default has the type of its field.
    for (name, field) in schema["properties"].as_object().unwrap() {
        let Some(default) = field.get("default") else {
            continue;
        };
        let types: Vec<&str> = match &field["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
            other => panic!("{name}: type {other}"),
        };
        let actual = match default {
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() => "integer",
            Value::String(_) => "string",
            other => panic!("{name}: default {other}"),
        };
        assert!(
            types.contains(&actual),
            "{name}: default {default} is not {types:?}"
        );
    }
}
