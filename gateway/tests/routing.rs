//! The gateway served in-process: routing, errors, filter chains and the
//! shared store, against a real upstream on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;

use common::{closed_port, get, send, EchoUpstream, ScratchDir};
use local_gateway::config;
use local_gateway::gateway::{self, GatewayOptions, RunningGateway, StartError};

/// A gateway on a free port of 127.0.0.1, stopped on drop.
struct TestGateway {
    running: Option<RunningGateway>,
}

impl TestGateway {
    fn start(yaml: &str, filters_dir: PathBuf) -> Self {
        Self::try_start(yaml, filters_dir).unwrap_or_else(|error| panic!("{error}"))
    }

    fn try_start(yaml: &str, filters_dir: PathBuf) -> Result<Self, StartError> {
        let config = config::parse(yaml).unwrap_or_else(|error| panic!("{error}"));
        let options = GatewayOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            filters_dir,
            echo_filter_logs: false,
            ..GatewayOptions::default()
        };
        let running = gateway::start(config, &options)?;
        Ok(Self {
            running: Some(running),
        })
    }

    fn running(&self) -> &RunningGateway {
        self.running.as_ref().unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().address())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
    }
}

fn plain_config(upstream_port: u16) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: echo
    url: http://127.0.0.1:{upstream_port}/base
    routes:
      - name: stripped
        paths: [/svc]
      - name: kept
        paths: [/keep]
        strip_path: false
      - name: get-only
        paths: [/read]
        methods: [GET]
"#
    )
}

#[test]
fn strip_path_joins_service_path() {
    let upstream = EchoUpstream::start();
    let dir = ScratchDir::new("strip");
    let gateway = TestGateway::start(&plain_config(upstream.port()), dir.path.clone());

    let answer = get(&gateway.url("/svc/items?x=1"));

    assert_eq!(answer.status, 200);
    assert_eq!(answer.echo().path(), "/base/items?x=1");
    assert!(answer.header("X-Kong-Request-Id").is_some());
}

#[test]
fn strip_path_false_keeps_route_prefix() {
    let upstream = EchoUpstream::start();
    let dir = ScratchDir::new("keep");
    let gateway = TestGateway::start(&plain_config(upstream.port()), dir.path.clone());

    let answer = get(&gateway.url("/keep/x"));

    assert_eq!(answer.echo().path(), "/base/keep/x");
}

#[test]
fn upstream_gets_forwarded_headers() {
    let upstream = EchoUpstream::start();
    let dir = ScratchDir::new("forwarded");
    let gateway = TestGateway::start(&plain_config(upstream.port()), dir.path.clone());

    let answer = send(
        "GET",
        &gateway.url("/svc/a"),
        &[("X-Forwarded-For", "203.0.113.9")],
        None,
    );

    let echo = answer.echo();
    assert_eq!(
        echo.header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(echo.header("x-real-ip").as_deref(), Some("127.0.0.1"));
    assert_eq!(echo.header("x-forwarded-prefix").as_deref(), Some("/svc"));
    assert_eq!(echo.header("x-forwarded-path").as_deref(), Some("/svc/a"));
}

#[test]
fn request_body_reaches_upstream() {
    let upstream = EchoUpstream::start();
    let dir = ScratchDir::new("body");
    let gateway = TestGateway::start(&plain_config(upstream.port()), dir.path.clone());

    let answer = send("POST", &gateway.url("/svc/p"), &[], Some(r#"{"a":1}"#));

    let echo = answer.echo();
    assert_eq!(echo.method(), "POST");
    assert_eq!(echo.body(), r#"{"a":1}"#);
}

#[test]
fn unknown_path_returns_kong_404() {
    let upstream = EchoUpstream::start();
    let dir = ScratchDir::new("404");
    let gateway = TestGateway::start(&plain_config(upstream.port()), dir.path.clone());

    let answer = get(&gateway.url("/nowhere"));

    assert_eq!(answer.status, 404);
    assert_eq!(
        answer.body,
        r#"{"message":"no Route matched with those values"}"#
    );
    assert_eq!(
        answer.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(upstream.hits(), 0);
}

#[test]
fn method_not_allowed_returns_404() {
    let upstream = EchoUpstream::start();
    let dir = ScratchDir::new("method");
    let gateway = TestGateway::start(&plain_config(upstream.port()), dir.path.clone());

    let allowed = get(&gateway.url("/read/x"));
    let refused = send("POST", &gateway.url("/read/x"), &[], Some("x"));

    assert_eq!(allowed.status, 200);
    assert_eq!(refused.status, 404);
    assert_eq!(
        refused.body,
        r#"{"message":"no Route matched with those values"}"#
    );
}

#[test]
fn unreachable_upstream_returns_502() {
    let dir = ScratchDir::new("502");
    let gateway = TestGateway::start(&plain_config(closed_port()), dir.path.clone());

    let answer = get(&gateway.url("/svc/x"));

    assert_eq!(answer.status, 502);
    assert_eq!(
        answer.body,
        r#"{"message":"An invalid response was received from the upstream server"}"#
    );
}

#[test]
fn slow_upstream_returns_504() {
    // A listener that accepts connections and never responds.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let (connection, _) = listener.accept().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(2));
        drop(connection);
    });
    let dir = ScratchDir::new("504");
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
  - name: slow
    url: http://127.0.0.1:{port}
    read_timeout: 200
    routes:
      - name: slow
        paths: [/slow]
"#
    );
    let gateway = TestGateway::start(&yaml, dir.path.clone());

    let answer = get(&gateway.url("/slow"));

    assert_eq!(answer.status, 504);
    assert_eq!(
        answer.body,
        r#"{"message":"The upstream server is timing out"}"#
    );
    holder.join().unwrap();
}

fn chain_config(upstream_port: u16) -> String {
    format!(
        r#"
_format_version: "3.0"
services:
  - name: echo
    url: http://127.0.0.1:{upstream_port}
    filter_chains:
      - name: service-chain
        filters:
          - name: svc_probe
            config: {{"tag": "svc"}}
    routes:
      - name: chained
        id: 6f1c2a52-0000-4000-8000-000000000001
        paths: [/chain]
        filter_chains:
          - filters:
              - name: route_probe
                config: {{"tag": "route"}}
              - name: disabled_probe
                enabled: false
      - name: denied
        paths: [/deny]
        filter_chains:
          - filters:
              - name: route_probe
                config: "D"
      - name: counted
        paths: [/count]
        filter_chains:
          - filters:
              - name: route_probe
                config: "C"
"#
    )
}

fn probe_dir() -> ScratchDir {
    let dir = ScratchDir::new("filters");
    dir.probe_filter("svc_probe");
    dir.probe_filter("route_probe");
    dir
}

#[test]
fn service_chain_runs_before_route_chain() {
    let upstream = EchoUpstream::start();
    let dir = probe_dir();
    let gateway = TestGateway::start(&chain_config(upstream.port()), dir.path.clone());

    let answer = get(&gateway.url("/chain/x"));

    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.echo().header_values("x-probe"),
        vec![r#"{"tag":"svc"}"#, r#"{"tag":"route"}"#]
    );
    let response_tags: Vec<&str> = answer
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-probe-response"))
        .map(|(_, value)| value.as_str())
        .collect();
    assert_eq!(
        response_tags,
        vec![r#"{"tag":"svc"}"#, r#"{"tag":"route"}"#]
    );
}

#[test]
fn filters_read_route_id_and_client_address() {
    let upstream = EchoUpstream::start();
    let dir = probe_dir();
    let gateway = TestGateway::start(&chain_config(upstream.port()), dir.path.clone());

    let echo = get(&gateway.url("/chain/x")).echo();

    assert_eq!(
        echo.header_values("x-probe-route"),
        vec![
            "6f1c2a52-0000-4000-8000-000000000001",
            "6f1c2a52-0000-4000-8000-000000000001"
        ]
    );
    assert_eq!(echo.header("x-probe-source").as_deref(), Some("127.0.0.1"));
}

#[test]
fn local_response_skips_upstream() {
    let upstream = EchoUpstream::start();
    let dir = probe_dir();
    let gateway = TestGateway::start(&chain_config(upstream.port()), dir.path.clone());

    let answer = get(&gateway.url("/deny"));

    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("x-probe-deny"), Some("1"));
    // The service's probe and the route's probe each add one header in the
    // response phase, also for a local response.
    assert_eq!(answer.body, "||denied");
    assert_eq!(upstream.hits(), 0);
}

#[test]
fn workers_share_the_store() {
    let upstream = EchoUpstream::start();
    let dir = probe_dir();
    let gateway = TestGateway::start(&chain_config(upstream.port()), dir.path.clone());
    let url = gateway.url("/count");

    let threads: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    assert_eq!(get(&url).status, 200);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }

    let store = gateway.running().store();
    let stats = store.stats();
    let (value, _) = store.get("probe/count").unwrap();
    let count = u32::from_le_bytes(value.try_into().unwrap());
    assert_eq!(stats.writes + stats.cas_mismatches, 20);
    assert_eq!(u64::from(count), stats.writes);
}

#[test]
fn event_stream_chunks_reach_the_filter() {
    let upstream = EchoUpstream::start();
    let dir = probe_dir();
    let gateway = TestGateway::start(&chain_config(upstream.port()), dir.path.clone());

    // The route's probe prepends "|" to each chunk it receives, and the
    // service's probe does too, so each event carries two marks when it
    // arrives in its own read.
    let answer = get(&gateway.url("/chain/sse"));

    assert_eq!(answer.status, 200);
    assert!(answer.body.contains("data: one"), "{}", answer.body);
    assert!(answer.body.contains("data: [DONE]"), "{}", answer.body);
    assert!(answer.body.starts_with("||data: one"), "{}", answer.body);
}

#[test]
fn missing_filter_stops_start_and_names_build_script() {
    let dir = ScratchDir::new("missing");
    let yaml = chain_config(closed_port());

    let error = TestGateway::try_start(&yaml, dir.path.clone())
        .err()
        .unwrap();

    let message = error.to_string();
    assert!(message.contains("svc_probe.wasm"), "{message}");
    assert!(message.contains("./build.sh"), "{message}");
}

#[test]
fn rejected_filter_config_stops_start_with_filter_lines() {
    let dir = probe_dir();
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
  - name: echo
    url: http://127.0.0.1:{}
    routes:
      - name: broken
        paths: [/]
        filter_chains:
          - filters:
              - name: route_probe
                config: "R"
"#,
        closed_port()
    );

    let error = TestGateway::try_start(&yaml, dir.path.clone())
        .err()
        .unwrap();

    let message = error.to_string();
    assert!(message.contains("route broken"), "{message}");
    assert!(
        message.contains("probe: rejected configuration"),
        "{message}"
    );
}

#[test]
fn real_filter_limits_requests_when_built() {
    let Some(filter) = common::built_filter() else {
        eprintln!(
            "note: skipped, because dist/sliding_window_rate_limit.wasm is not built; run ./build.sh"
        );
        return;
    };
    let upstream = EchoUpstream::start();
    let dir = ScratchDir::new("real");
    common::copy_into(&dir.path, &filter);
    let yaml = format!(
        r#"
_format_version: "3.0"
services:
  - name: echo
    url: http://127.0.0.1:{}
    routes:
      - name: limited
        paths: [/limited]
        filter_chains:
          - filters:
              - name: sliding_window_rate_limit
                config:
                  minute: 2
                  limit_by: ip
"#,
        upstream.port()
    );
    let gateway = TestGateway::start(&yaml, dir.path.clone());

    let statuses: Vec<u16> = (0..3)
        .map(|_| get(&gateway.url("/limited")).status)
        .collect();

    assert_eq!(statuses, vec![200, 200, 429]);
    assert_eq!(upstream.hits(), 2);
}
