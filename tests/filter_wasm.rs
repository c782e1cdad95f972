//! The compiled filter in a real proxy-wasm host (wasmtime through the
//! `proxy-wasm-host` crate), with a shared store that behaves like Kong's
//! engine or Envoy.
//!
//! Build the filter first with `./build.sh`; `./build.sh test` does both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{get_from, header, rate_limit_header_names, send, Node, T0};
use local_gateway::{Error, LogLevel, Request, SharedStore, UpstreamResponse};

#[test]
fn limit_reached_then_429_with_headers_and_body() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 3}"#);
    node.set_ms(T0 + 15_000);

    for remaining in ["2", "1", "0"] {
        let exchange = get_from(&mut worker, "10.0.0.1");
        assert_eq!(exchange.status, 200);
        assert!(exchange.reached_upstream);
        assert_eq!(header(&exchange, "X-RateLimit-Limit-Minute"), "3");
        assert_eq!(header(&exchange, "X-RateLimit-Remaining-Minute"), remaining);
        assert_eq!(header(&exchange, "RateLimit-Limit"), "3");
        assert_eq!(header(&exchange, "RateLimit-Remaining"), remaining);
        assert_eq!(header(&exchange, "RateLimit-Reset"), "45");
        assert_eq!(exchange.header("Retry-After"), None);
        assert_eq!(exchange.body_text(), r#"{"label":"setosa"}"#);
    }

    let limited = get_from(&mut worker, "10.0.0.1");
    assert_eq!(limited.status, 429);
    assert!(!limited.reached_upstream);
    assert_eq!(
        header(&limited, "Content-Type"),
        "application/json; charset=utf-8"
    );
    assert_eq!(
        limited.body_text(),
        "{\"message\":\"API rate limit exceeded\"}\n"
    );
    // The next minute starts in 45 s; 20 s into it the previous minute's 3
    // requests weigh 2, so one more fits: 65 s.
    assert_eq!(header(&limited, "Retry-After"), "65");
    assert_eq!(header(&limited, "RateLimit-Reset"), "65");
    assert_eq!(header(&limited, "RateLimit-Remaining"), "0");
    assert_eq!(header(&limited, "X-RateLimit-Remaining-Minute"), "0");
    // Headers are added once, not again by the response phase.
    assert_eq!(limited.header_values("Retry-After").len(), 1);
    assert_eq!(limited.header_values("X-RateLimit-Limit-Minute").len(), 1);

    node.set_ms(T0 + 15_000 + 64_999);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 429);
    node.set_ms(T0 + 15_000 + 65_000);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 200);
}

#[test]
fn other_clients_keep_their_own_budget() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 1}"#);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 200);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 429);
    assert_eq!(get_from(&mut worker, "10.0.0.2").status, 200);
}

#[test]
fn sliding_estimate_at_several_points() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"windows": [{"seconds": 10, "limit": 10}]}"#);
    node.set_ms(T0 + 5_000);
    for _ in 0..10 {
        assert_eq!(get_from(&mut worker, "10.0.0.1").status, 200);
    }

    // 25% into the next window the previous one weighs 7.5.
    node.set_ms(T0 + 12_500);
    let first = get_from(&mut worker, "10.0.0.1");
    assert_eq!(header(&first, "X-RateLimit-Remaining-10"), "1");
    let second = get_from(&mut worker, "10.0.0.1");
    assert_eq!(header(&second, "X-RateLimit-Remaining-10"), "0");
    let limited = get_from(&mut worker, "10.0.0.1");
    assert_eq!(limited.status, 429);
    // 7 × 10 000 / 10 = 7 000 ms must slide out: at 3 000 ms, 500 ms away.
    assert_eq!(header(&limited, "Retry-After"), "1");

    // 75% in it weighs 2.5, with 2 counted in this window: 5 remain.
    node.set_ms(T0 + 17_500);
    let later = get_from(&mut worker, "10.0.0.1");
    assert_eq!(later.status, 200);
    assert_eq!(header(&later, "X-RateLimit-Remaining-10"), "4");
}

#[test]
fn several_windows_report_the_blocking_one() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"second": 2, "minute": 3}"#);
    node.set_ms(T0 + 500);

    let first = get_from(&mut worker, "10.0.0.1");
    assert_eq!(header(&first, "X-RateLimit-Remaining-Second"), "1");
    assert_eq!(header(&first, "X-RateLimit-Remaining-Minute"), "2");
    assert_eq!(header(&first, "RateLimit-Limit"), "2");
    get_from(&mut worker, "10.0.0.1");

    let by_second = get_from(&mut worker, "10.0.0.1");
    assert_eq!(by_second.status, 429);
    assert_eq!(header(&by_second, "RateLimit-Limit"), "2");
    assert_eq!(header(&by_second, "Retry-After"), "1");
    assert_eq!(header(&by_second, "X-RateLimit-Remaining-Minute"), "1");

    node.set_ms(T0 + 1_500);
    let last = get_from(&mut worker, "10.0.0.1");
    assert_eq!(last.status, 200);
    // Both windows are at 0; the longer one is reported.
    assert_eq!(header(&last, "RateLimit-Limit"), "3");
    assert_eq!(header(&last, "RateLimit-Reset"), "59");

    let by_minute = get_from(&mut worker, "10.0.0.1");
    assert_eq!(by_minute.status, 429);
    assert_eq!(header(&by_minute, "RateLimit-Limit"), "3");
    // Next minute at 58.5 s, plus 20 s for the previous 3 to weigh 2.
    assert_eq!(header(&by_minute, "Retry-After"), "79");
}

#[test]
fn denied_requests_do_not_count_later() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"second": 2}"#);
    node.set_ms(T0);
    for _ in 0..2 {
        assert_eq!(get_from(&mut worker, "10.0.0.1").status, 200);
    }
    for _ in 0..20 {
        assert_eq!(get_from(&mut worker, "10.0.0.1").status, 429);
    }
    // Once the admitted two have slid out, the whole budget is back.
    node.set_ms(T0 + 2_000);
    let exchange = get_from(&mut worker, "10.0.0.1");
    assert_eq!(exchange.status, 200);
    assert_eq!(header(&exchange, "X-RateLimit-Remaining-Second"), "1");
}

#[test]
fn retry_after_is_honest() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"second": 5, "minute": 20, "hour": 22}"#);
    let mut now = T0 + 123;
    let mut limited = 0;
    for _ in 0..200 {
        node.set_ms(now);
        let exchange = get_from(&mut worker, "10.0.0.1");
        if exchange.status == 429 {
            limited += 1;
            let wait: u64 = header(&exchange, "Retry-After").parse().unwrap();
            assert!(wait >= 1);
            node.set_ms(now + wait * 1000);
            assert_eq!(
                get_from(&mut worker, "10.0.0.1").status,
                200,
                "retry after {wait} s at {now}"
            );
            now += wait * 1000;
        }
        now += 37;
    }
    assert!(limited > 5, "only {limited} limits");
}

#[test]
fn four_workers_admit_exactly_the_limit() {
    for node in [Node::kong(), Node::envoy()] {
        let config = r#"{"minute": 50, "fault_tolerant": false}"#;
        let mut workers: Vec<_> = (0..4).map(|_| node.worker(config)).collect();
        // Envoy writes a CAS of 0 without checking, so the key is created
        // before the race; Kong's engine makes creation atomic too.
        let mut admitted = usize::from(get_from(&mut workers[0], "10.0.0.1").status == 200);
        let threads: Vec<_> = workers
            .into_iter()
            .map(|mut worker| {
                std::thread::spawn(move || {
                    let mut statuses = Vec::new();
                    for _ in 0..40 {
                        statuses.push(get_from(&mut worker, "10.0.0.1").status);
                    }
                    statuses
                })
            })
            .collect();
        let statuses: Vec<u16> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        admitted += statuses.iter().filter(|s| **s == 200).count();
        let limited = statuses.iter().filter(|s| **s == 429).count();
        assert_eq!(admitted, 50, "{:?}", node.store.semantics());
        assert_eq!(limited, 160 - 49, "{:?}", node.store.semantics());
    }
}

#[test]
fn kong_and_envoy_semantics_count_alike() {
    for node in [Node::kong(), Node::envoy()] {
        let mut worker = node.worker(r#"{"second": 3}"#);
        let statuses: Vec<u16> = (0..5)
            .map(|_| get_from(&mut worker, "10.0.0.1").status)
            .collect();
        assert_eq!(
            statuses,
            [200, 200, 200, 429, 429],
            "{:?}",
            node.store.semantics()
        );
        let keys = node.store.keys();
        assert_eq!(keys.len(), 1);
        assert!(keys[0].starts_with("rate_limits/swrl:"), "{keys:?}");
    }
}

#[test]
fn competing_write_between_read_and_write_is_retried() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"second": 2, "log_level": "debug"}"#);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 200);
    let key = node.store.keys().remaining_one();
    // Another worker counts one more request just before our next write.
    let (value, _) = node.store.get(&key).unwrap();
    let mut other = value.clone();
    let current_at = 10 + 8;
    other[current_at] += 1;
    let hook_key = key.clone();
    node.store
        .before_next_write(Box::new(move |store: &SharedStore| {
            store.put(&hook_key, &other).unwrap();
        }));
    let exchange = get_from(&mut worker, "10.0.0.1");
    // The retry sees the other worker's count: 2 of 2 used, so this one is
    // limited instead of overwriting it.
    assert_eq!(exchange.status, 429);
    assert!(node.store.stats().cas_mismatches >= 1);
}

trait RemainingOne {
    fn remaining_one(self) -> String;
}

impl RemainingOne for Vec<String> {
    fn remaining_one(mut self) -> String {
        assert_eq!(self.len(), 1, "{self:?}");
        self.remove(0)
    }
}

/// Finds two identifiers of equal length whose keys share a CRC32.
fn colliding_identifiers(prefix: &str) -> (String, String) {
    let mut seen: HashMap<u32, String> = HashMap::new();
    for i in 0u64.. {
        let identifier = format!("client-{i:010}");
        let checksum = crc32fast::hash(format!("{prefix}{identifier}").as_bytes());
        if let Some(other) = seen.insert(checksum, identifier.clone()) {
            return (other, identifier);
        }
    }
    unreachable!()
}

#[test]
fn crc32_collision_keeps_clients_apart() {
    let node = Node::kong();
    let config = r#"{"minute": 2, "limit_by": "header", "header_name": "X-API-Key"}"#;
    let mut worker = node.worker(config);
    let keyed = |key: &str| Request::get("/ml-model/predict").header("X-API-Key", key.to_string());
    send(&mut worker, keyed("probe"));
    let probe_key = node.store.keys().remaining_one();
    let prefix = probe_key.strip_suffix("probe").unwrap().to_string();
    let (first, second) = colliding_identifiers(&prefix);
    assert_eq!(
        crc32fast::hash(format!("{prefix}{first}").as_bytes()),
        crc32fast::hash(format!("{prefix}{second}").as_bytes())
    );

    assert_eq!(send(&mut worker, keyed(&first)).status, 200);
    assert_eq!(send(&mut worker, keyed(&first)).status, 200);
    assert_eq!(send(&mut worker, keyed(&first)).status, 429);
    // The colliding client has its own full budget, on a probe key.
    let other = send(&mut worker, keyed(&second));
    assert_eq!(other.status, 200);
    assert_eq!(header(&other, "X-RateLimit-Remaining-Minute"), "1");
    assert_eq!(send(&mut worker, keyed(&second)).status, 200);
    assert_eq!(send(&mut worker, keyed(&second)).status, 429);
    assert!(
        node.store.keys().iter().any(|key| key.ends_with("#1")),
        "{:?}",
        node.store.keys()
    );
    assert_eq!(send(&mut worker, keyed(&first)).status, 429);
}

#[test]
fn invalid_configs_name_their_field() {
    let node = Node::kong();
    let cases = [
        ("", "the config is empty"),
        ("not json", "not valid JSON"),
        (r#"{}"#, "no limit configured"),
        (
            r#"{"minute": 0}"#,
            "field `minute`: expected an integer of at least 1, got",
        ),
        (
            r#"{"minute": "100"}"#,
            "field `minute`: expected an integer of at least 1, got",
        ),
        (
            r#"{"second": 10, "minute": 5}"#,
            "field `minute`: the limit of the 60-second window (5)",
        ),
        (
            r#"{"minute": 5, "limit_by": "cookie"}"#,
            "field `limit_by`: expected one of ip, header",
        ),
        (
            r#"{"minute": 5, "limit_by": "header"}"#,
            "field `header_name`: missing",
        ),
        (
            r#"{"minute": 5, "error_code": 200}"#,
            "field `error_code`: expected an integer from 400 to 599, got 200",
        ),
        (
            r#"{"minute": 5, "fault_tolerant": "no"}"#,
            "field `fault_tolerant`: expected true or false",
        ),
        (
            r#"{"minute": 5, "policy": "redis"}"#,
            "field `policy`: not supported",
        ),
        (
            r#"{"minute": 5, "minutes": 5}"#,
            "field `minutes`: unknown field",
        ),
        (
            r#"{"minute": 5, "windows": [{"seconds": 0, "limit": 1}]}"#,
            "field `windows[0].seconds`",
        ),
        (
            r#"{"minute": 5, "tokens": {"minute": 10, "max_cost": 11}}"#,
            "field `tokens.max_cost`",
        ),
    ];
    for (config, expected) in cases {
        let error = node
            .try_worker(config)
            .err()
            .unwrap_or_else(|| panic!("accepted {config}"));
        let Error::ConfigRejected { log_lines, .. } = &error else {
            panic!("{config}: {error}");
        };
        assert_eq!(log_lines.len(), 1, "{config}: {log_lines:?}");
        assert!(
            log_lines[0].contains("sliding_window_rate_limit: invalid config"),
            "{config}: {log_lines:?}"
        );
        assert!(log_lines[0].contains(expected), "{config}: {log_lines:?}");
    }
}

#[test]
fn configure_logs_version_and_summary() {
    let node = Node::kong();
    node.worker(r#"{"second": 100, "minute": 3000}"#);
    let info = node.logs.lines_at(LogLevel::Info);
    let line = info
        .iter()
        .find(|l| l.contains("sliding_window_rate_limit 0."))
        .unwrap();
    assert!(line.contains("limits 100/1s, 3000/60s by ip"), "{line}");
}

#[test]
fn missing_header_falls_back_to_client_ip() {
    let node = Node::kong();
    let mut worker = node.worker(
        r#"{"minute": 1, "limit_by": "header", "header_name": "X-API-Key", "log_level": "debug"}"#,
    );
    assert_eq!(get_from(&mut worker, "10.0.0.7").status, 200);
    assert!(node
        .logs
        .contains("no header identifier; counting by client address"));
    // Same address, still no key: same counter.
    assert_eq!(get_from(&mut worker, "10.0.0.7").status, 429);
    // An empty header counts as missing too.
    let empty = Request::get("/ml-model/predict")
        .source_address("10.0.0.7")
        .header("X-API-Key", "");
    assert_eq!(send(&mut worker, empty).status, 429);
    // A key has its own counter, even from the same address.
    let keyed = Request::get("/ml-model/predict")
        .source_address("10.0.0.7")
        .header("X-API-Key", "k1");
    assert_eq!(send(&mut worker, keyed).status, 200);
}

#[test]
fn consumer_uses_auth_plugin_headers_then_ip() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 1, "limit_by": "consumer"}"#);
    let consumer = || {
        Request::get("/ml-model")
            .source_address("10.0.0.1")
            .header("X-Consumer-ID", "c-1")
    };
    let credential = || {
        Request::get("/ml-model")
            .source_address("10.0.0.1")
            .header("X-Credential-Identifier", "cred-1")
    };
    assert_eq!(send(&mut worker, consumer()).status, 200);
    assert_eq!(send(&mut worker, consumer()).status, 429);
    assert_eq!(send(&mut worker, credential()).status, 200);
    assert_eq!(send(&mut worker, credential()).status, 429);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 200);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 429);
}

#[test]
fn service_route_global_and_path_identifiers() {
    let node = Node::kong();
    let mut by_service = node.worker(r#"{"minute": 1, "limit_by": "service", "namespace": "svc"}"#);
    assert_eq!(get_from(&mut by_service, "10.0.0.1").status, 200);
    // Another client of the same service shares the counter.
    assert_eq!(get_from(&mut by_service, "10.0.0.2").status, 429);
    let other_service = Request::get("/x")
        .source_address("10.0.0.2")
        .service("service-2", "other");
    assert_eq!(send(&mut by_service, other_service).status, 200);

    let mut global = node.worker(r#"{"minute": 1, "limit_by": "global", "namespace": "all"}"#);
    assert_eq!(get_from(&mut global, "10.0.0.1").status, 200);
    assert_eq!(get_from(&mut global, "10.0.0.9").status, 429);

    let mut by_path = node.worker(
        r#"{"minute": 1, "limit_by": "path", "path": "/ml-model/predict", "namespace": "p"}"#,
    );
    assert_eq!(get_from(&mut by_path, "10.0.0.1").status, 200);
    assert_eq!(get_from(&mut by_path, "10.0.0.2").status, 429);
    // Another path falls back to the client address.
    let elsewhere = Request::get("/ml-model/other").source_address("10.0.0.2");
    assert_eq!(send(&mut by_path, elsewhere).status, 200);
}

#[test]
fn ip_forms_and_ipv6_prefix() {
    let node = Node::envoy();
    let mut worker = node.worker(r#"{"minute": 2}"#);
    // Envoy serves ip:port; the port does not split a client.
    assert_eq!(get_from(&mut worker, "[2001:db8::1]:4431").status, 200);
    assert_eq!(get_from(&mut worker, "[2001:db8::1]:4432").status, 200);
    assert_eq!(get_from(&mut worker, "2001:db8::1").status, 429);
    assert_eq!(get_from(&mut worker, "[2001:db8::2]:1").status, 200);
    assert_eq!(get_from(&mut worker, "10.0.0.1:80").status, 200);
    assert_eq!(get_from(&mut worker, "10.0.0.1:81").status, 200);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 429);

    let mut grouped = node.worker(r#"{"minute": 2, "ipv6_prefix_length": 64, "namespace": "v6"}"#);
    assert_eq!(get_from(&mut grouped, "[2001:db8::1]:1").status, 200);
    assert_eq!(get_from(&mut grouped, "[2001:db8::ffff]:1").status, 200);
    assert_eq!(get_from(&mut grouped, "2001:db8::abcd").status, 429);
    assert_eq!(get_from(&mut grouped, "2001:db8:0:1::1").status, 200);
}

#[test]
fn oversized_and_non_utf8_identifiers() {
    let node = Node::kong();
    let mut worker =
        node.worker(r#"{"minute": 1, "limit_by": "header", "header_name": "X-API-Key"}"#);
    let big = vec![b'k'; 60_000];
    let mut big_other = big.clone();
    big_other[30_000] = b'j';
    let keyed = |value: Vec<u8>| Request::get("/ml-model").header("X-API-Key", value);
    assert_eq!(send(&mut worker, keyed(big.clone())).status, 200);
    assert_eq!(send(&mut worker, keyed(big)).status, 429);
    assert_eq!(send(&mut worker, keyed(big_other)).status, 200);
    assert_eq!(
        send(&mut worker, keyed(b"\xff\xfe\x80".to_vec())).status,
        200
    );
    assert_eq!(
        send(&mut worker, keyed(b"\xff\xfe\x80".to_vec())).status,
        429
    );
    assert_eq!(
        send(&mut worker, keyed(b"\xff\xfe\x81".to_vec())).status,
        200
    );
    for key in node.store.keys() {
        assert!(key.len() < 160, "{} bytes: {key}", key.len());
    }
}

#[test]
fn store_write_failure_with_fault_tolerant() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 1}"#);
    node.store.fail_writes(true);
    for _ in 0..5 {
        let exchange = get_from(&mut worker, "10.0.0.1");
        assert_eq!(exchange.status, 200);
        assert!(exchange.reached_upstream);
        assert_eq!(rate_limit_header_names(&exchange), Vec::<String>::new());
    }
    let warnings = node.logs.lines_at(LogLevel::Warn);
    // Repeats within ten seconds are suppressed.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("shared data write failed"),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("fault_tolerant is on"), "{warnings:?}");

    node.set_ms(T0 + 11_000);
    get_from(&mut worker, "10.0.0.1");
    let warnings = node.logs.lines_at(LogLevel::Warn);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[1].contains("(4 similar warnings suppressed)"),
        "{warnings:?}"
    );

    // Once the store works again, limiting resumes; nothing was counted.
    node.store.fail_writes(false);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 200);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 429);
}

#[test]
fn store_failure_without_fault_tolerant_answers_500() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 1, "fault_tolerant": false}"#);
    node.store.fail_reads(true);
    let exchange = get_from(&mut worker, "10.0.0.1");
    assert_eq!(exchange.status, 500);
    assert!(!exchange.reached_upstream);
    assert_eq!(
        exchange.body_text(),
        "{\"message\":\"An unexpected error occurred\"}\n"
    );
    assert!(node
        .logs
        .lines_at(LogLevel::Error)
        .iter()
        .any(|l| l.contains("shared data read failed")));
}

#[test]
fn evicted_counter_starts_over() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 1}"#);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 200);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 429);
    assert!(node.store.evict(node.store.keys().remaining_one()));
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 200);
}

#[test]
fn hidden_headers() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 1, "hide_client_headers": true}"#);
    let admitted = get_from(&mut worker, "10.0.0.1");
    assert_eq!(admitted.status, 200);
    assert_eq!(rate_limit_header_names(&admitted), Vec::<String>::new());
    let limited = get_from(&mut worker, "10.0.0.1");
    assert_eq!(limited.status, 429);
    assert_eq!(rate_limit_header_names(&limited), Vec::<String>::new());
}

#[test]
fn custom_status_and_message_stay_valid_json() {
    let node = Node::kong();
    let message = "Slow down \"friend\" \\ <b>busy</b>\nretry later";
    let config =
        serde_json::json!({"minute": 1, "error_code": 503, "error_message": message}).to_string();
    let mut worker = node.worker(&config);
    get_from(&mut worker, "10.0.0.1");
    let limited = get_from(&mut worker, "10.0.0.1");
    assert_eq!(limited.status, 503);
    let body: serde_json::Value = serde_json::from_slice(&limited.body).unwrap();
    assert_eq!(body["message"], message);
}

#[test]
fn clock_stepping_back_neither_resets_nor_inflates() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 3}"#);
    node.set_ms(T0 + 30_000);
    for _ in 0..3 {
        assert_eq!(get_from(&mut worker, "10.0.0.1").status, 200);
    }
    // Two minutes back: the counts stay, so the client is still limited.
    node.set_ms(T0 - 90_000);
    let back = get_from(&mut worker, "10.0.0.1");
    assert_eq!(back.status, 429);
    node.set_ms(T0 + 30_000);
    assert_eq!(get_from(&mut worker, "10.0.0.1").status, 429);
    // Nothing was added while the clock was behind: two minutes on, the
    // whole budget is back.
    node.set_ms(T0 + 150_000);
    let later = get_from(&mut worker, "10.0.0.1");
    assert_eq!(later.status, 200);
    assert_eq!(header(&later, "X-RateLimit-Remaining-Minute"), "2");
}

#[test]
fn counters_are_per_route_without_namespace() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 1}"#);
    let on_route = |route: &str| {
        Request::get("/x")
            .source_address("10.0.0.1")
            .route(route, route)
    };
    assert_eq!(send(&mut worker, on_route("route-a")).status, 200);
    assert_eq!(send(&mut worker, on_route("route-a")).status, 429);
    assert_eq!(send(&mut worker, on_route("route-b")).status, 200);

    // Two filter instances with one namespace share counters across routes.
    let mut first = node.worker(r#"{"minute": 1, "namespace": "shared"}"#);
    let mut second = node.worker(r#"{"minute": 1, "namespace": "shared"}"#);
    assert_eq!(send(&mut first, on_route("route-a")).status, 200);
    assert_eq!(send(&mut second, on_route("route-b")).status, 429);
}

#[test]
fn upstream_headers_are_replaced_not_duplicated() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 5}"#);
    let exchange = worker
        .run(Request::get("/x"), &mut |_| {
            UpstreamResponse::ok().header("X-RateLimit-Limit-Minute", "999")
        })
        .unwrap();
    assert_eq!(
        exchange.header_values("X-RateLimit-Limit-Minute"),
        vec![b"5".as_slice()]
    );
}

#[test]
fn missing_filter_names_the_build_command() {
    let error = local_gateway::FilterModule::load("/nonexistent/sliding_window_rate_limit.wasm")
        .unwrap_err();
    assert!(error.to_string().contains("./build.sh"), "{error}");
}

#[test]
fn many_clients_fill_and_evict_a_small_zone() {
    let node = Node::with_store(
        SharedStore::kong().with_zone("rate_limits", 100),
        local_gateway::HostFlavor::Kong,
    );
    let mut worker = node.worker(r#"{"minute": 1}"#);
    for i in 0..300 {
        assert_eq!(
            get_from(&mut worker, &format!("10.1.{}.{}", i / 250, i % 250)).status,
            200
        );
    }
    assert_eq!(node.store.zone_len("rate_limits"), Some(100));
    assert_eq!(node.store.stats().evictions, 200);
    // The most recent client is still counted; the first was evicted.
    assert_eq!(get_from(&mut worker, "10.1.1.49").status, 429);
    assert_eq!(get_from(&mut worker, "10.1.0.0").status, 200);
    let _ = Arc::clone(&node.store);
}

#[test]
fn debug_logs_leave_out_identifier_values() {
    let node = Node::kong();
    let config =
        r#"{"minute": 1, "limit_by": "header", "header_name": "X-API-Key", "log_level": "debug"}"#;
    let mut worker = node.worker(config);
    let keyed = || Request::get("/ml-model").header("X-API-Key", "sk-secret-4242");
    assert_eq!(send(&mut worker, keyed()).status, 200);
    assert_eq!(send(&mut worker, keyed()).status, 429);
    let debug = node.logs.lines_at(LogLevel::Debug);
    assert!(
        debug.iter().any(|l| l.contains("(header) admitted")),
        "{debug:?}"
    );
    assert!(
        debug.iter().any(|l| l.contains("(header) limited")),
        "{debug:?}"
    );
    for (_, line) in node.logs.lines() {
        assert!(!line.contains("sk-secret-4242"), "{line}");
    }
}
