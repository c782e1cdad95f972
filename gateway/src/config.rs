//! Reads the part of a Kong declarative config (`_format_version: "3.0"`)
//! that the local gateway serves: services, routes and filter chains.
//!
//! Kong rejects unknown fields, and so does this reader: an error names the
//! field by its path, such as `services[0].routes[1].paths[0]`. Fields of
//! Kong features the gateway does not implement, such as `plugins` or a
//! route's `hosts`, are accepted and reported as warnings, so a config that
//! Kong loads also loads here.

use std::fmt;

use serde_json::{Map, Value};

/// An invalid declarative config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The path of the field, such as `services[0].port`; empty for the
    /// document itself.
    pub field: String,
    /// The problem with the field.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// The rule that joins the service path and the request path into the
/// upstream path, as the route field `path_handling` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PathHandling {
    /// Kong's default: exactly one `/` between the two parts.
    #[default]
    V0,
    /// Plain concatenation, with a doubled `/` merged.
    V1,
}

/// One filter of a chain, ready to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterSpec {
    /// The filter name, which is also the `.wasm` file name without `.wasm`.
    pub name: String,
    /// The configuration bytes the filter receives: a JSON object
    /// re-encoded as JSON, a string as its bytes, or nothing.
    pub config: Vec<u8>,
    /// The path of the filter's declaration, such as
    /// `routes[0].filter_chains[0].filters[1]`, for messages.
    pub origin: String,
}

/// A service: where admitted requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The entity id from the config, or one derived from the name.
    pub id: String,
    /// The name, when the config gives one.
    pub name: Option<String>,
    /// The upstream host name or address.
    pub host: String,
    /// The upstream port.
    pub port: u16,
    /// The path prefix on the upstream, `/` when absent.
    pub path: String,
    /// Whether its routes are served.
    pub enabled: bool,
    /// The connect timeout in milliseconds (Kong's default is 60,000).
    pub connect_timeout_ms: u64,
    /// The read timeout in milliseconds (Kong's default is 60,000).
    pub read_timeout_ms: u64,
    /// The write timeout in milliseconds (Kong's default is 60,000).
    pub write_timeout_ms: u64,
    /// The enabled filters of the service's enabled chain, in order.
    pub filters: Vec<FilterSpec>,
}

/// A route: which requests reach a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The entity id from the config, or one derived from the name.
    pub id: String,
    /// The name, when the config gives one.
    pub name: Option<String>,
    /// The index of the route's service in [`GatewayConfig::services`].
    pub service: Option<usize>,
    /// Path prefixes; empty matches every path.
    pub paths: Vec<String>,
    /// Upper-case methods; empty matches every method.
    pub methods: Vec<String>,
    /// The protocols the route accepts, such as `http` and `https`.
    pub protocols: Vec<String>,
    /// Whether the matched prefix is removed before proxying (default true).
    pub strip_path: bool,
    /// The rule that joins the upstream path.
    pub path_handling: PathHandling,
    /// The enabled filters of the route's enabled chain, in order.
    pub filters: Vec<FilterSpec>,
}

impl Route {
    /// Returns the name for log lines: the name, else the id.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// The services and routes of a declarative config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Every service, in document order.
    pub services: Vec<Service>,
    /// Every route, nested ones first in document order, then top-level ones.
    pub routes: Vec<Route>,
    /// Fields that Kong accepts and the gateway ignores.
    pub warnings: Vec<String>,
}

const DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// Top-level keys of Kong entities that the gateway does not serve.
const IGNORED_ENTITIES: &[&str] = &[
    "plugins",
    "consumers",
    "consumer_groups",
    "upstreams",
    "targets",
    "certificates",
    "ca_certificates",
    "snis",
    "vaults",
    "keys",
    "key_sets",
    "acls",
    "basicauth_credentials",
    "keyauth_credentials",
    "jwt_secrets",
    "hmacauth_credentials",
    "oauth2_credentials",
    "mtls_auth_credentials",
];

/// Service fields that Kong accepts and the gateway ignores, with why.
const IGNORED_SERVICE_FIELDS: &[(&str, &str)] = &[
    ("retries", "retries are not implemented"),
    ("client_certificate", "TLS is not implemented"),
    ("tls_verify", "TLS is not implemented"),
    ("tls_verify_depth", "TLS is not implemented"),
    ("ca_certificates", "TLS is not implemented"),
];

/// Route fields that Kong accepts and the gateway ignores, with why.
const IGNORED_ROUTE_FIELDS: &[(&str, &str)] = &[
    (
        "hosts",
        "host matching is not implemented, so the route matches any host",
    ),
    (
        "headers",
        "header matching is not implemented, so the route matches any headers",
    ),
    ("snis", "TLS is not implemented"),
    ("sources", "L4 matching is not implemented"),
    ("destinations", "L4 matching is not implemented"),
    (
        "preserve_host",
        "the upstream always receives the service's host",
    ),
    ("regex_priority", "regex paths are not implemented"),
    ("https_redirect_status_code", "TLS is not implemented"),
    ("request_buffering", "requests are always buffered"),
    ("response_buffering", "responses are always buffered"),
    ("expression", "the expressions router is not implemented"),
    ("priority", "the expressions router is not implemented"),
];

fn error(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) => format!("{text:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a map".to_owned(),
    }
}

/// A map in the document with the path that leads to it.
struct Node<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Node<'a> {
    fn new(value: &'a Value, path: String) -> Result<Self, ConfigError> {
        match value {
            Value::Object(map) => Ok(Self { map, path }),
            other => Err(error(
                &path,
                format!("expected a map, found {}", describe(other)),
            )),
        }
    }

    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// Rejects a key outside `known`, and warns about each key of `ignored`.
    fn check_keys(
        &self,
        known: &[&str],
        ignored: &[(&str, &str)],
        warnings: &mut Vec<String>,
    ) -> Result<(), ConfigError> {
        for key in self.map.keys() {
            if let Some((_, reason)) = ignored.iter().find(|(name, _)| name == key) {
                warnings.push(format!("{}: ignored, because {reason}", self.field(key)));
            } else if !known.contains(&key.as_str()) {
                return Err(error(&self.field(key), "unknown field"));
            }
        }
        Ok(())
    }

    fn value(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|value| !value.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(error(
                &self.field(key),
                format!("expected a string, found {}", describe(other)),
            )),
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.value(key) {
            None => Ok(default),
            Some(Value::Bool(flag)) => Ok(*flag),
            Some(other) => Err(error(
                &self.field(key),
                format!("expected true or false, found {}", describe(other)),
            )),
        }
    }

    fn integer(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
        let Some(value) = self.value(key) else {
            return Ok(None);
        };
        match value.as_u64() {
            Some(number) if (min..=max).contains(&number) => Ok(Some(number)),
            _ => Err(error(
                &self.field(key),
                format!(
                    "expected an integer from {min} to {max}, found {}",
                    describe(value)
                ),
            )),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let Some(value) = self.value(key) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = value else {
            return Err(error(
                &self.field(key),
                format!("expected a list of strings, found {}", describe(value)),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(index, item)| match item {
                Value::String(text) => Ok(text.clone()),
                other => Err(error(
                    &format!("{}[{index}]", self.field(key)),
                    format!("expected a string, found {}", describe(other)),
                )),
            })
            .collect()
    }

    fn children(&self, key: &str) -> Result<Vec<Node<'a>>, ConfigError> {
        let Some(value) = self.value(key) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = value else {
            return Err(error(
                &self.field(key),
                format!("expected a list, found {}", describe(value)),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(index, item)| Node::new(item, format!("{}[{index}]", self.field(key))))
            .collect()
    }

    /// Reads a reference to another entity: its name or id as a string, or a
    /// map with `name` or `id`.
    fn reference(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.value(key) {
            None => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(value @ Value::Object(_)) => {
                let node = Node::new(value, self.field(key))?;
                node.check_keys(&["name", "id"], &[], &mut Vec::new())?;
                match node.string("name")?.or(node.string("id")?) {
                    Some(target) => Ok(Some(target)),
                    None => Err(error(&node.path, "expected a name or an id")),
                }
            }
            Some(other) => Err(error(
                &self.field(key),
                format!("expected a name, an id or a map, found {}", describe(other)),
            )),
        }
    }
}

/// Derives a stable UUID-shaped id from an entity kind and its name, so a
/// config without ids gives the same ids on every start.
pub fn derived_id(kind: &str, name: &str) -> String {
    let words: Vec<u32> = (0_u8..4)
        .map(|salt| {
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&[salt]);
            hasher.update(kind.as_bytes());
            hasher.update(b"\0");
            hasher.update(name.as_bytes());
            hasher.finalize()
        })
        .collect();
    let hex: String = words.iter().map(|word| format!("{word:08x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses a declarative config from YAML (JSON is YAML too).
///
/// # Errors
///
/// Returns a [`ConfigError`] that names the first invalid field.
pub fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
    let document: Value = serde_norway::from_str(text)
        .map_err(|source| error("", format!("invalid YAML: {source}")))?;
    let root = Node::new(&document, String::new())?;
    let mut config = GatewayConfig::default();

    match root.string("_format_version")? {
        Some(version) if version == "3.0" => {}
        Some(version) => {
            return Err(error(
                "_format_version",
                format!("expected \"3.0\", found {version:?}"),
            ))
        }
        None => return Err(error("_format_version", "missing; set it to \"3.0\"")),
    }
    let known = [
        "_format_version",
        "_transform",
        "services",
        "routes",
        "filter_chains",
    ];
    for key in root.map.keys() {
        if IGNORED_ENTITIES.contains(&key.as_str()) {
            config.warnings.push(format!(
                "{key}: ignored, because the local gateway does not implement them"
            ));
        } else if !known.contains(&key.as_str()) && !key.starts_with('_') {
            return Err(error(key, "unknown field"));
        }
    }

    let mut nested_routes = Vec::new();
    for node in root.children("services")? {
        let index = config.services.len();
        let service = parse_service(&node, &mut config.warnings)?;
        config.services.push(service);
        for route in node.children("routes")? {
            nested_routes.push((route, Some(index)));
        }
    }
    for (node, service) in nested_routes {
        let route = parse_route(&node, service, &config.services, &mut config.warnings)?;
        config.routes.push(route);
    }
    for node in root.children("routes")? {
        let route = parse_route(&node, None, &config.services, &mut config.warnings)?;
        config.routes.push(route);
    }
    for node in root.children("filter_chains")? {
        attach_top_level_chain(&node, &mut config)?;
    }

    check_unique_names(&config)?;
    Ok(config)
}

fn parse_service(node: &Node<'_>, warnings: &mut Vec<String>) -> Result<Service, ConfigError> {
    node.check_keys(
        &[
            "id",
            "name",
            "protocol",
            "host",
            "port",
            "path",
            "url",
            "routes",
            "filter_chains",
            "enabled",
            "connect_timeout",
            "read_timeout",
            "write_timeout",
            "tags",
        ],
        IGNORED_SERVICE_FIELDS,
        warnings,
    )?;
    let name = node.string("name")?;
    let url = match node.string("url")? {
        Some(url) => parse_url(&url).map_err(|message| error(&node.field("url"), message))?,
        None => UrlParts::default(),
    };

    let protocol = node
        .string("protocol")?
        .or(url.scheme)
        .unwrap_or_else(|| "http".to_owned());
    if protocol != "http" {
        return Err(error(
            &node.field("protocol"),
            format!("{protocol:?} is not implemented, because the local gateway proxies to http upstreams only"),
        ));
    }
    let host = node
        .string("host")?
        .or(url.host)
        .ok_or_else(|| error(&node.field("host"), "missing; set host or url"))?;
    let port = match node.integer("port", 1, 65_535)? {
        Some(number) => u16::try_from(number).unwrap_or(80),
        None => url.port.unwrap_or(80),
    };
    let path = node
        .string("path")?
        .or(url.path)
        .unwrap_or_else(|| "/".to_owned());
    if !path.starts_with('/') {
        return Err(error(
            &node.field("path"),
            format!("must start with /, found {path:?}"),
        ));
    }

    let timeout = |key: &str| -> Result<u64, ConfigError> {
        Ok(node
            .integer(key, 1, 2_147_483_646)?
            .unwrap_or(DEFAULT_TIMEOUT_MS))
    };
    let id = match node.string("id")? {
        Some(id) => id,
        None => derived_id("service", name.as_deref().unwrap_or(&node.path)),
    };
    Ok(Service {
        id,
        name,
        host,
        port,
        path,
        enabled: node.boolean("enabled", true)?,
        connect_timeout_ms: timeout("connect_timeout")?,
        read_timeout_ms: timeout("read_timeout")?,
        write_timeout_ms: timeout("write_timeout")?,
        filters: parse_chains(node, "service")?,
    })
}

/// The parts of a service `url`.
#[derive(Debug, Default)]
struct UrlParts {
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: Option<String>,
}

/// Splits `http://host:port/path` into its parts.
fn parse_url(url: &str) -> Result<UrlParts, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("expected scheme://host[:port][/path], found {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], Some(rest[slash..].to_owned())),
        None => (rest, None),
    };
    let parse_port = |port: &str| {
        port.parse::<u16>()
            .map_err(|_| format!("invalid port {port:?} in {url:?}"))
    };
    // An IPv6 address keeps its brackets, which the upstream URL needs.
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or_else(|| format!("missing ] in {url:?}"))?;
        let port = match authority[end + 1..].strip_prefix(':') {
            Some(port) => Some(parse_port(port)?),
            None => None,
        };
        (&authority[..=end], port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(format!("missing host in {url:?}"));
    }
    Ok(UrlParts {
        scheme: Some(scheme.to_owned()),
        host: Some(host.to_owned()),
        port,
        path,
    })
}

fn parse_route(
    node: &Node<'_>,
    parent: Option<usize>,
    services: &[Service],
    warnings: &mut Vec<String>,
) -> Result<Route, ConfigError> {
    node.check_keys(
        &[
            "id",
            "name",
            "paths",
            "methods",
            "protocols",
            "strip_path",
            "path_handling",
            "service",
            "filter_chains",
            "tags",
        ],
        IGNORED_ROUTE_FIELDS,
        warnings,
    )?;
    let name = node.string("name")?;
    let paths = node.strings("paths")?;
    for (index, path) in paths.iter().enumerate() {
        let field = format!("{}[{index}]", node.field("paths"));
        if path.starts_with('~') {
            return Err(error(
                &field,
                "regex paths are not implemented by the local gateway",
            ));
        }
        if !path.starts_with('/') {
            return Err(error(&field, format!("must start with /, found {path:?}")));
        }
    }
    let methods = node
        .strings("methods")?
        .into_iter()
        .map(|method| method.to_ascii_uppercase())
        .collect();
    let mut protocols = node.strings("protocols")?;
    if protocols.is_empty() {
        protocols = vec!["http".to_owned(), "https".to_owned()];
    }
    let path_handling = match node.string("path_handling")?.as_deref() {
        None | Some("v0") => PathHandling::V0,
        Some("v1") => PathHandling::V1,
        Some(other) => {
            return Err(error(
                &node.field("path_handling"),
                format!("expected \"v0\" or \"v1\", found {other:?}"),
            ))
        }
    };
    let service = match (parent, node.reference("service")?) {
        (Some(index), _) => Some(index),
        (None, None) => None,
        (None, Some(target)) => Some(find_service(services, &target).ok_or_else(|| {
            error(
                &node.field("service"),
                format!("no service named or with id {target:?}"),
            )
        })?),
    };
    let id = match node.string("id")? {
        Some(id) => id,
        None => derived_id("route", name.as_deref().unwrap_or(&node.path)),
    };
    Ok(Route {
        id,
        name,
        service,
        paths,
        methods,
        protocols,
        strip_path: node.boolean("strip_path", true)?,
        path_handling,
        filters: parse_chains(node, "route")?,
    })
}

fn find_service(services: &[Service], target: &str) -> Option<usize> {
    services
        .iter()
        .position(|service| service.name.as_deref() == Some(target) || service.id == target)
}

/// Reads the enabled filters of the one enabled chain nested under `node`.
fn parse_chains(node: &Node<'_>, owner: &str) -> Result<Vec<FilterSpec>, ConfigError> {
    let mut enabled_chains = Vec::new();
    for chain in node.children("filter_chains")? {
        if let Some(filters) = parse_chain(&chain, false)? {
            enabled_chains.push(filters);
        }
    }
    if enabled_chains.len() > 1 {
        return Err(error(
            &node.field("filter_chains"),
            format!("Kong allows at most one filter chain per {owner}"),
        ));
    }
    Ok(enabled_chains.pop().unwrap_or_default())
}

/// Reads the enabled filters of one chain, or `None` when the chain is
/// disabled.
fn parse_chain(chain: &Node<'_>, top_level: bool) -> Result<Option<Vec<FilterSpec>>, ConfigError> {
    let mut known = vec!["id", "name", "enabled", "filters", "tags"];
    if top_level {
        known.extend(["route", "service"]);
    }
    chain.check_keys(&known, &[], &mut Vec::new())?;
    chain.string("name")?;
    let enabled = chain.boolean("enabled", true)?;
    let nodes = chain.children("filters")?;
    if nodes.is_empty() {
        return Err(error(
            &chain.field("filters"),
            "a filter chain needs at least one filter",
        ));
    }
    let mut filters = Vec::new();
    for filter in nodes {
        filter.check_keys(&["name", "config", "enabled"], &[], &mut Vec::new())?;
        let name = filter
            .string("name")?
            .ok_or_else(|| error(&filter.field("name"), "missing"))?;
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(error(
                &filter.field("name"),
                format!("invalid filter name {name:?}"),
            ));
        }
        let config = match filter.value("config") {
            None => Vec::new(),
            Some(Value::String(text)) => text.clone().into_bytes(),
            Some(value @ Value::Object(_)) => serde_json::to_vec(value)
                .map_err(|source| error(&filter.field("config"), source.to_string()))?,
            Some(other) => {
                return Err(error(
                    &filter.field("config"),
                    format!(
                        "expected a JSON object or a string, found {}",
                        describe(other)
                    ),
                ))
            }
        };
        if filter.boolean("enabled", true)? {
            filters.push(FilterSpec {
                name,
                config,
                origin: filter.path.clone(),
            });
        }
    }
    Ok(enabled.then_some(filters))
}

fn attach_top_level_chain(node: &Node<'_>, config: &mut GatewayConfig) -> Result<(), ConfigError> {
    let route = node.reference("route")?;
    let service = node.reference("service")?;
    let Some(filters) = parse_chain(node, true)? else {
        return Ok(());
    };
    let target: &mut Vec<FilterSpec> = match (route, service) {
        (Some(route), None) => {
            let index = config
                .routes
                .iter()
                .position(|entry| {
                    entry.name.as_deref() == Some(route.as_str()) || entry.id == route
                })
                .ok_or_else(|| {
                    error(
                        &node.field("route"),
                        format!("no route named or with id {route:?}"),
                    )
                })?;
            &mut config.routes[index].filters
        }
        (None, Some(service)) => {
            let index = find_service(&config.services, &service).ok_or_else(|| {
                error(
                    &node.field("service"),
                    format!("no service named or with id {service:?}"),
                )
            })?;
            &mut config.services[index].filters
        }
        _ => return Err(error(&node.path, "set exactly one of route and service")),
    };
    if !target.is_empty() {
        return Err(error(
            &node.path,
            "Kong allows at most one filter chain per route and one per service",
        ));
    }
    *target = filters;
    Ok(())
}

fn check_unique_names(config: &GatewayConfig) -> Result<(), ConfigError> {
    for (index, service) in config.services.iter().enumerate() {
        let duplicate = config.services[..index]
            .iter()
            .any(|earlier| earlier.name.is_some() && earlier.name == service.name);
        if duplicate {
            return Err(error(
                &format!("services[{index}].name"),
                format!(
                    "duplicate service name {:?}",
                    service.name.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    for (index, route) in config.routes.iter().enumerate() {
        let duplicate = config.routes[..index]
            .iter()
            .any(|earlier| earlier.name.is_some() && earlier.name == route.name);
        if duplicate {
            return Err(error(
                "routes",
                format!(
                    "duplicate route name {:?}",
                    route.name.as_deref().unwrap_or("")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
