use super::*;

fn parse_error(text: &str) -> ConfigError {
    parse(text).unwrap_err()
}

#[test]
fn repository_kong_yml_parses() {
    let text = include_str!("../../../kong/kong.yml");

    let config = parse(text).unwrap();

    assert!(!config.routes.is_empty());
    for route in &config.routes {
        assert!(route.service.is_some(), "route {}", route.label());
        assert!(!route.filters.is_empty(), "route {}", route.label());
        let filter_config: Value = serde_json::from_slice(&route.filters[0].config).unwrap();
        assert!(filter_config.is_object(), "route {}", route.label());
    }
}

#[test]
fn service_url_sets_host_port_and_path() {
    let config = parse(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: http://[::1]:9000/base
"#,
    )
    .unwrap();

    let service = &config.services[0];
    assert_eq!(service.host, "[::1]");
    assert_eq!(service.port, 9000);
    assert_eq!(service.path, "/base");
}

#[test]
fn service_defaults() {
    let config = parse(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: example.test
"#,
    )
    .unwrap();

    let service = &config.services[0];
    assert_eq!(service.port, 80);
    assert_eq!(service.path, "/");
    assert!(service.enabled);
    assert_eq!(service.read_timeout_ms, 60_000);
    assert_eq!(service.id, derived_id("service", "s"));
}

#[test]
fn missing_format_version_is_named() {
    let error = parse_error("services: []\n");

    assert_eq!(error.field, "_format_version");
}

#[test]
fn wrong_format_version_is_named() {
    let error = parse_error("_format_version: \"1.1\"\n");

    assert_eq!(error.field, "_format_version");
    assert!(error.message.contains("3.0"), "{error}");
}

#[test]
fn invalid_yaml_is_reported() {
    let error = parse_error("_format_version: [unclosed\n");

    assert!(error.message.starts_with("invalid YAML"), "{error}");
}

#[test]
fn unknown_field_is_named_by_path() {
    let error = parse_error(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    routes:
      - name: r
        pathz: [/x]
"#,
    );

    assert_eq!(error.field, "services[0].routes[0].pathz");
    assert_eq!(error.message, "unknown field");
}

#[test]
fn wrong_port_type_is_named() {
    let error = parse_error(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    port: eighty
"#,
    );

    assert_eq!(error.field, "services[0].port");
    assert!(error.message.contains("\"eighty\""), "{error}");
}

#[test]
fn https_service_is_rejected() {
    let error = parse_error(
        r#"
_format_version: "3.0"
services:
  - name: s
    url: https://example.test
"#,
    );

    assert_eq!(error.field, "services[0].protocol");
}

#[test]
fn regex_path_is_rejected() {
    let error = parse_error(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    routes:
      - paths: ["~/items/\\d+"]
"#,
    );

    assert_eq!(error.field, "services[0].routes[0].paths[0]");
    assert!(error.message.contains("regex"), "{error}");
}

#[test]
fn unimplemented_features_become_warnings() {
    let config = parse(
        r#"
_format_version: "3.0"
plugins:
  - name: key-auth
services:
  - name: s
    host: h
    retries: 3
    routes:
      - name: r
        hosts: [example.test]
        paths: [/]
"#,
    )
    .unwrap();

    assert_eq!(config.warnings.len(), 3, "{:?}", config.warnings);
    assert!(config
        .warnings
        .iter()
        .any(|warning| warning.starts_with("plugins:")));
    assert!(config
        .warnings
        .iter()
        .any(|warning| warning.starts_with("services[0].routes[0].hosts:")));
}

#[test]
fn top_level_route_and_chain_reference_by_name() {
    let config = parse(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    filter_chains:
      - filters:
          - name: svc_filter
routes:
  - name: r
    service: s
    paths: [/r]
    strip_path: false
    path_handling: v1
filter_chains:
  - route: { name: r }
    filters:
      - name: route_filter
        config: "plain string"
      - name: off_filter
        enabled: false
"#,
    )
    .unwrap();

    let route = &config.routes[0];
    assert_eq!(route.service, Some(0));
    assert!(!route.strip_path);
    assert_eq!(route.path_handling, PathHandling::V1);
    assert_eq!(route.filters.len(), 1);
    assert_eq!(route.filters[0].name, "route_filter");
    assert_eq!(route.filters[0].config, b"plain string");
    assert_eq!(config.services[0].filters[0].name, "svc_filter");
    assert!(config.services[0].filters[0].config.is_empty());
}

#[test]
fn disabled_chain_contributes_no_filters() {
    let config = parse(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    routes:
      - name: r
        paths: [/]
        filter_chains:
          - enabled: false
            filters:
              - name: f
"#,
    )
    .unwrap();

    assert!(config.routes[0].filters.is_empty());
}

#[test]
fn second_chain_on_one_route_is_rejected() {
    let error = parse_error(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    routes:
      - name: r
        paths: [/]
        filter_chains:
          - filters: [{name: a}]
          - filters: [{name: b}]
"#,
    );

    assert_eq!(error.field, "services[0].routes[0].filter_chains");
}

#[test]
fn chain_without_filters_is_rejected() {
    let error = parse_error(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    filter_chains:
      - filters: []
"#,
    );

    assert_eq!(error.field, "services[0].filter_chains[0].filters");
}

#[test]
fn filter_config_must_be_object_or_string() {
    let error = parse_error(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    filter_chains:
      - filters:
          - name: f
            config: [1, 2]
"#,
    );

    assert_eq!(
        error.field,
        "services[0].filter_chains[0].filters[0].config"
    );
}

#[test]
fn filter_name_with_path_is_rejected() {
    let error = parse_error(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    filter_chains:
      - filters:
          - name: ../evil
"#,
    );

    assert_eq!(error.field, "services[0].filter_chains[0].filters[0].name");
}

#[test]
fn route_to_unknown_service_is_named() {
    let error = parse_error(
        r#"
_format_version: "3.0"
routes:
  - name: r
    service: nowhere
"#,
    );

    assert_eq!(error.field, "routes[0].service");
}

#[test]
fn duplicate_route_names_are_rejected() {
    let error = parse_error(
        r#"
_format_version: "3.0"
services:
  - name: s
    host: h
    routes:
      - name: r
        paths: [/a]
      - name: r
        paths: [/b]
"#,
    );

    assert!(error.message.contains("duplicate route name"), "{error}");
}

#[test]
fn derived_ids_are_stable_and_distinct() {
    let first = derived_id("route", "a");

    assert_eq!(first, derived_id("route", "a"));
    assert_ne!(first, derived_id("route", "b"));
    assert_ne!(first, derived_id("service", "a"));
    assert_eq!(first.len(), 36);
}
