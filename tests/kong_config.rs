//! Checks `kong/kong.yml` the way Kong checks a declarative config before it
//! loads it, and every filter config in it against the schema and the filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use common::Node;
use serde_json::Value;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn items<'a>(value: &'a Value, field: &str) -> Vec<&'a Value> {
    value
        .get(field)
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn name_of(value: &Value) -> &str {
    value["name"]
        .as_str()
        .unwrap_or_else(|| panic!("entity without a name: {value}"))
}

/// A filter chain with the entity it is attached to.
struct Chain<'a> {
    attached_to: String,
    chain: &'a Value,
}

/// Walks services, routes and filter chains, nested or top-level, and checks
/// the references between them.
fn chains_of(config: &Value) -> Vec<Chain<'_>> {
    assert_eq!(config["_format_version"], "3.0");
    let mut services: HashSet<&str> = HashSet::new();
    let mut routes: HashMap<&str, &str> = HashMap::new();
    let mut chains = Vec::new();

    for service in items(config, "services") {
        let service_name = name_of(service);
        assert!(
            services.insert(service_name),
            "service {service_name} declared twice"
        );
        assert!(
            service["host"].is_string(),
            "service {service_name} has no host"
        );
        let protocol = service["protocol"].as_str().unwrap_or("http");
        assert!(
            ["http", "https"].contains(&protocol),
            "service {service_name}: protocol {protocol}"
        );
        let port = service["port"].as_u64().unwrap_or(80);
        assert!(
            (1..=65535).contains(&port),
            "service {service_name}: port {port}"
        );
        for route in items(service, "routes") {
            let route_name = name_of(route);
            assert!(
                routes.insert(route_name, service_name).is_none(),
                "route {route_name} declared twice"
            );
            for chain in items(route, "filter_chains") {
                chains.push(Chain {
                    attached_to: format!("route {route_name}"),
                    chain,
                });
            }
        }
        for chain in items(service, "filter_chains") {
            chains.push(Chain {
                attached_to: format!("service {service_name}"),
                chain,
            });
        }
    }
    for route in items(config, "routes") {
        let route_name = name_of(route);
        let service = route["service"]
            .as_str()
            .or_else(|| route["service"]["name"].as_str())
            .unwrap();
        assert!(
            services.contains(service),
            "route {route_name} names unknown service {service}"
        );
        assert!(
            routes.insert(route_name, service).is_none(),
            "route {route_name} declared twice"
        );
    }
    for chain in items(config, "filter_chains") {
        let attached_to = match (chain["route"].as_str(), chain["service"].as_str()) {
            (Some(route), None) => {
                assert!(
                    routes.contains_key(route),
                    "filter chain names unknown route {route}"
                );
                format!("route {route}")
            }
            (None, Some(service)) => {
                assert!(
                    services.contains(service),
                    "filter chain names unknown service {service}"
                );
                format!("service {service}")
            }
            _ => panic!("a top-level filter chain names exactly one route or service: {chain}"),
        };
        chains.push(Chain { attached_to, chain });
    }

    for route in items(config, "services")
        .iter()
        .flat_map(|s| items(s, "routes"))
        .chain(items(config, "routes"))
    {
        let paths = items(route, "paths");
        assert!(!paths.is_empty(), "route {} has no paths", name_of(route));
        for path in paths {
            assert!(
                path.as_str().unwrap().starts_with('/'),
                "route {}: path {path}",
                name_of(route)
            );
        }
    }

    let mut seen = HashSet::new();
    for chain in &chains {
        assert!(
            seen.insert(chain.attached_to.clone()),
            "more than one filter chain on {}",
            chain.attached_to
        );
        assert!(
            !items(chain.chain, "filters").is_empty(),
            "empty filter chain on {}",
            chain.attached_to
        );
    }
    chains
}

#[test]
fn kong_yml_is_a_valid_declarative_config() {
    let config = load_yaml(&repository().join("kong/kong.yml"));
    let chains = chains_of(&config);
    assert_eq!(chains.len(), 3);
    let service = &items(&config, "services")[0];
    assert_eq!(service["name"], "ml-model-service");
    assert_eq!(service["path"], "/");
    let route = &items(service, "routes")[0];
    assert_eq!(route["name"], "ml-model");
    assert_eq!(route["paths"][0], "/ml-model");
    let methods: Vec<&str> = items(route, "methods")
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(methods, ["GET", "POST"]);
    let protocols: Vec<&str> = items(route, "protocols")
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(protocols, ["http", "https"]);
}

#[test]
fn filters_have_built_wasm_and_schema() {
    let config = load_yaml(&repository().join("kong/kong.yml"));
    for chain in chains_of(&config) {
        for filter in items(chain.chain, "filters") {
            let name = name_of(filter);
            let wasm = repository().join("dist").join(format!("{name}.wasm"));
            assert!(
                wasm.exists(),
                "{}: {} is missing; run ./build.sh",
                chain.attached_to,
                wasm.display()
            );
            let meta = repository().join("dist").join(format!("{name}.meta.json"));
            assert!(
                meta.exists(),
                "{}: {} is missing; run ./build.sh",
                chain.attached_to,
                meta.display()
            );
        }
    }
}

/// Collects every filter config of a declarative file, with its location.
fn filter_configs(path: &Path) -> Vec<(String, Value)> {
    let config = load_yaml(path);
    let mut configs = Vec::new();
    for chain in chains_of(&config) {
        for filter in items(chain.chain, "filters") {
            let config = filter["config"].clone();
            assert!(
                config.is_object(),
                "{}: config must be a JSON object, not {config}",
                chain.attached_to
            );
            configs.push((
                format!("{} in {}", chain.attached_to, path.display()),
                config,
            ));
        }
    }
    configs
}

fn declarative_files() -> Vec<PathBuf> {
    let mut files = vec![repository().join("kong/kong.yml")];
    let mut folders = vec![repository().join("examples")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains("_format_version") {
                    files.push(path);
                }
            }
        }
    }
    files
}

#[test]
fn every_bundled_filter_config_passes_schema_and_filter() {
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(repository().join("kong/sliding_window_rate_limit.meta.json"))
            .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft4::new(&meta["config_schema"]).unwrap();
    let node = Node::kong();
    let mut checked = 0;
    for file in declarative_files() {
        for (place, config) in filter_configs(&file) {
            let errors: Vec<String> = validator
                .iter_errors(&config)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{place}: schema rejects {config}: {errors:?}"
            );
            if let Err(error) = node.try_worker(&config.to_string()) {
                panic!("{place}: the filter rejects {config}: {error}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 3, "only {checked} filter configs found");
}
