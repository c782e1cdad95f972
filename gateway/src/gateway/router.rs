//! Route matching and upstream paths, following Kong's traditional router
//! for plain path prefixes.

use crate::config::{GatewayConfig, PathHandling, Route, Service};

/// The result of matching one request against the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteMatch<'a> {
    /// The route at `index` matched with the path prefix `prefix` (empty for
    /// a route without paths).
    Matched {
        /// The index in [`GatewayConfig::routes`].
        index: usize,
        /// The matched prefix.
        prefix: &'a str,
    },
    /// The best route accepts only `https`, so Kong responds with 426.
    HttpsRequired,
    /// No route matched the method and path, so Kong responds with 404.
    NoRoute,
}

/// Finds the route for `method` and `path` (without its query string): the
/// longest matching path prefix among routes that accept the method, the
/// first declared among equals.
///
/// A route of a disabled service never matches. As in Kong, a prefix is a
/// plain string prefix, so `/ml-model` also matches `/ml-modelx`.
pub fn find_route<'a>(config: &'a GatewayConfig, method: &str, path: &str) -> RouteMatch<'a> {
    let mut best: Option<(usize, &'a str)> = None;
    for (index, route) in config.routes.iter().enumerate() {
        if !service_enabled(config, route) {
            continue;
        }
        if !route.methods.is_empty() && !route.methods.iter().any(|allowed| allowed == method) {
            continue;
        }
        let Some(prefix) = longest_prefix(route, path) else {
            continue;
        };
        if best.is_none_or(|(_, current)| prefix.len() > current.len()) {
            best = Some((index, prefix));
        }
    }
    match best {
        None => RouteMatch::NoRoute,
        Some((index, _)) if !config.routes[index].protocols.iter().any(|p| p == "http") => {
            RouteMatch::HttpsRequired
        }
        Some((index, prefix)) => RouteMatch::Matched { index, prefix },
    }
}

fn service_enabled(config: &GatewayConfig, route: &Route) -> bool {
    route
        .service
        .and_then(|index| config.services.get(index))
        .is_none_or(|service| service.enabled)
}

fn longest_prefix<'a>(route: &'a Route, path: &str) -> Option<&'a str> {
    if route.paths.is_empty() {
        return Some("");
    }
    route
        .paths
        .iter()
        .filter(|prefix| path.starts_with(prefix.as_str()))
        .max_by_key(|prefix| prefix.len())
        .map(String::as_str)
}

/// Builds the path and query the upstream receives for `path_and_query`,
/// which the filters may have changed, after the route matched `prefix`.
///
/// With `strip_path` the prefix is removed when the path still starts with
/// it. The rest joins the service path as the route's `path_handling` sets:
/// `v0` puts exactly one `/` between them, `v1` concatenates them.
pub fn upstream_path(
    route: &Route,
    service: &Service,
    prefix: &str,
    path_and_query: &str,
) -> String {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let rest = if route.strip_path {
        path.strip_prefix(prefix).unwrap_or(path)
    } else {
        path
    };
    let mut joined = join(&service.path, rest, route.path_handling);
    if let Some(query) = query {
        joined.push('?');
        joined.push_str(query);
    }
    joined
}

fn join(service_path: &str, rest: &str, handling: PathHandling) -> String {
    if rest.is_empty() {
        return service_path.to_owned();
    }
    let joined = match handling {
        PathHandling::V0 => format!(
            "{}/{}",
            service_path.trim_end_matches('/'),
            rest.trim_start_matches('/')
        ),
        PathHandling::V1 => match (service_path.ends_with('/'), rest.strip_prefix('/')) {
            (true, Some(rest)) => format!("{service_path}{rest}"),
            _ => format!("{service_path}{rest}"),
        },
    };
    if joined.is_empty() {
        "/".to_owned()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    const CONFIG: &str = r#"
_format_version: "3.0"
services:
  - name: api
    url: http://127.0.0.1:9000/base
    routes:
      - name: short
        paths: [/api]
      - name: long
        paths: [/api/v2]
        methods: [GET]
      - name: secure
        paths: [/secure]
        protocols: [https]
  - name: off
    host: 127.0.0.1
    enabled: false
    routes:
      - name: disabled
        paths: [/off]
"#;

    fn parsed() -> GatewayConfig {
        config::parse(CONFIG).unwrap()
    }

    fn matched_name(config: &GatewayConfig, method: &str, path: &str) -> Option<String> {
        match find_route(config, method, path) {
            RouteMatch::Matched { index, .. } => config.routes[index].name.clone(),
            _ => None,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let config = parsed();

        assert_eq!(
            matched_name(&config, "GET", "/api/v2/x").as_deref(),
            Some("long")
        );
        assert_eq!(
            matched_name(&config, "GET", "/api/v1").as_deref(),
            Some("short")
        );
    }

    #[test]
    fn method_mismatch_falls_back_to_other_routes() {
        let config = parsed();

        assert_eq!(
            matched_name(&config, "POST", "/api/v2/x").as_deref(),
            Some("short")
        );
    }

    #[test]
    fn unknown_path_matches_nothing() {
        let config = parsed();

        assert_eq!(find_route(&config, "GET", "/nothing"), RouteMatch::NoRoute);
    }

    #[test]
    fn https_only_route_requires_https() {
        let config = parsed();

        assert_eq!(
            find_route(&config, "GET", "/secure"),
            RouteMatch::HttpsRequired
        );
    }

    #[test]
    fn disabled_service_routes_do_not_match() {
        let config = parsed();

        assert_eq!(find_route(&config, "GET", "/off"), RouteMatch::NoRoute);
    }

    #[test]
    fn upstream_path_table() {
        let config = parsed();
        let mut route = config.routes[0].clone();
        let mut service = config.services[0].clone();
        let cases = [
            // (service path, strip_path, handling, prefix, request, expected)
            ("/", true, PathHandling::V0, "/api", "/api/x?a=1", "/x?a=1"),
            ("/", true, PathHandling::V0, "/api", "/api", "/"),
            (
                "/base",
                true,
                PathHandling::V0,
                "/api",
                "/apireq",
                "/base/req",
            ),
            (
                "/base",
                true,
                PathHandling::V0,
                "/api",
                "/api/req",
                "/base/req",
            ),
            (
                "/base/",
                true,
                PathHandling::V0,
                "/api/",
                "/api/req",
                "/base/req",
            ),
            (
                "/base",
                true,
                PathHandling::V1,
                "/api",
                "/apireq",
                "/basereq",
            ),
            (
                "/base/",
                true,
                PathHandling::V1,
                "/api",
                "/api/req",
                "/base/req",
            ),
            ("/", false, PathHandling::V0, "/api", "/api/x", "/api/x"),
            (
                "/base",
                false,
                PathHandling::V0,
                "/api",
                "/api/x",
                "/base/api/x",
            ),
            ("/", true, PathHandling::V0, "/api", "/moved", "/moved"),
        ];
        for (service_path, strip, handling, prefix, request, expected) in cases {
            service.path = service_path.to_owned();
            route.strip_path = strip;
            route.path_handling = handling;

            let actual = upstream_path(&route, &service, prefix, request);

            assert_eq!(
                actual, expected,
                "service path {service_path}, strip {strip}, {handling:?}, request {request}"
            );
        }
    }
}
