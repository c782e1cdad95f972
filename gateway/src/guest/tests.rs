use std::sync::Arc;

use super::*;
use crate::LogLevel;

const PROBE_WAT: &str = include_str!("../../tests/guests/probe.wat");

fn probe() -> FilterModule {
    static MODULE: OnceLock<FilterModule> = OnceLock::new();
    MODULE
        .get_or_init(|| {
            let bytes = wat::parse_str(PROBE_WAT).unwrap();
            FilterModule::from_bytes("probe", &bytes).unwrap()
        })
        .clone()
}

fn worker(config: &str) -> Worker {
    Worker::start(&probe(), WorkerOptions::new(config)).unwrap()
}

fn ok_upstream() -> impl FnMut(&UpstreamRequest) -> UpstreamResponse {
    |_| UpstreamResponse::ok().body("hello")
}

fn probe_lines(logs: &LogCapture) -> Vec<String> {
    logs.lines_at(LogLevel::Info)
        .into_iter()
        .filter(|line| line.starts_with("probe: on_"))
        .collect()
}

#[test]
fn upstream_sees_header_added_by_filter() {
    let mut worker = worker("first");

    let exchange = worker
        .run(Request::get("/a?b=1"), &mut ok_upstream())
        .unwrap();

    let sent = exchange.upstream_request.unwrap();
    assert_eq!(sent.header("x-probe").as_deref(), Some("first"));
    assert_eq!(sent.method, "GET");
    assert_eq!(sent.path, "/a?b=1");
    assert_eq!(exchange.status, 200);
    assert_eq!(exchange.body, b"|hello");
    assert!(exchange.reached_upstream);
}

#[test]
fn response_header_added_once_for_upstream_response() {
    let mut worker = worker("first");

    let exchange = worker.run(Request::get("/"), &mut ok_upstream()).unwrap();

    assert_eq!(exchange.header_values("x-probe-response").len(), 1);
}

#[test]
fn local_response_skips_upstream_and_runs_response_phase() {
    let mut worker = worker("D");
    let mut upstream_calls = 0;

    let exchange = worker
        .run(Request::get("/"), &mut |_| {
            upstream_calls += 1;
            UpstreamResponse::ok()
        })
        .unwrap();

    assert_eq!(upstream_calls, 0);
    assert!(!exchange.reached_upstream);
    assert!(exchange.local_response);
    assert_eq!(exchange.status, 429);
    assert_eq!(exchange.header("x-probe-deny").as_deref(), Some("1"));
    assert_eq!(exchange.header_values("x-probe-response").len(), 1);
    assert_eq!(exchange.body, b"|denied");
    assert_eq!(exchange.status_details.as_deref(), Some("rate limited"));
}

#[test]
fn kong_response_body_ends_with_empty_eos_call() {
    let logs = Arc::new(LogCapture::new());
    let options = WorkerOptions::new("x").logs(Arc::clone(&logs));
    let mut worker = Worker::start(&probe(), options).unwrap();

    let exchange = worker
        .run(Request::get("/"), &mut |_| {
            UpstreamResponse::ok().body_chunks(["data: 1\n\n", "data: 2\n\n"])
        })
        .unwrap();

    assert_eq!(
        exchange.body_chunks,
        vec![b"|data: 1\n\n".to_vec(), b"|data: 2\n\n".to_vec()]
    );
    assert_eq!(
        probe_lines(&logs),
        vec![
            "probe: on_request_headers",
            "probe: on_response_headers",
            "probe: on_response_body more",
            "probe: on_response_body more",
            "probe: on_response_body eos",
            "probe: on_log",
        ]
    );
}

#[test]
fn envoy_response_body_marks_last_chunk() {
    let logs = Arc::new(LogCapture::new());
    let options = WorkerOptions::new("x")
        .logs(Arc::clone(&logs))
        .flavor(HostFlavor::Envoy);
    let mut worker = Worker::start(&probe(), options).unwrap();

    worker
        .run(Request::get("/"), &mut |_| {
            UpstreamResponse::ok().body_chunks(["a", "b"])
        })
        .unwrap();

    let lines = probe_lines(&logs);
    assert_eq!(
        &lines[2..4],
        &[
            "probe: on_response_body more",
            "probe: on_response_body eos"
        ]
    );
}

#[test]
fn envoy_response_status_is_a_pseudo_header() {
    let options = WorkerOptions::new("x").flavor(HostFlavor::Envoy);
    let mut worker = Worker::start(&probe(), options).unwrap();

    let exchange = worker
        .run(Request::get("/"), &mut |_| UpstreamResponse::new(201))
        .unwrap();

    assert_eq!(exchange.status, 201);
    assert_eq!(exchange.header(":status"), None);
}

#[test]
fn request_body_chunks_pass_one_by_one() {
    let logs = Arc::new(LogCapture::new());
    let options = WorkerOptions::new("x").logs(Arc::clone(&logs));
    let mut worker = Worker::start(&probe(), options).unwrap();

    let exchange = worker
        .run(
            Request::post("/").body_chunks(["ab", "cd"]),
            &mut ok_upstream(),
        )
        .unwrap();

    assert_eq!(exchange.upstream_request.unwrap().body, b"[ab[cd");
    let lines = probe_lines(&logs);
    assert_eq!(
        &lines[1..3],
        &["probe: on_request_body more", "probe: on_request_body eos"]
    );
}

#[test]
fn paused_request_body_is_buffered_until_eos() {
    let mut worker = worker("B");

    let exchange = worker
        .run(
            Request::post("/").body_chunks(["ab", "cd", "ef"]),
            &mut ok_upstream(),
        )
        .unwrap();

    assert_eq!(exchange.upstream_request.unwrap().body, b"[abcdef");
}

#[test]
fn request_without_body_gets_no_body_callback() {
    let logs = Arc::new(LogCapture::new());
    let options = WorkerOptions::new("x").logs(Arc::clone(&logs));
    let mut worker = Worker::start(&probe(), options).unwrap();

    worker.run(Request::get("/"), &mut ok_upstream()).unwrap();

    assert!(!logs.contains("on_request_body"));
}

#[test]
fn rejected_config_returns_filter_log_lines() {
    let result = Worker::start(&probe(), WorkerOptions::new("R"));

    let error = result.unwrap_err();
    assert!(matches!(error, Error::ConfigRejected { .. }), "{error}");
    assert_eq!(error.log_lines(), ["error: probe: rejected configuration"]);
    assert!(error.to_string().contains("rejected its configuration"));
}

#[test]
fn trap_fails_request_and_worker_restarts() {
    let mut worker = worker("T");

    let first = worker.run(Request::get("/"), &mut ok_upstream());
    let poisoned_after_first = worker.is_poisoned();
    let second = worker.run(Request::get("/"), &mut ok_upstream());

    assert!(matches!(first, Err(Error::Guest { .. })));
    assert!(poisoned_after_first);
    assert!(matches!(second, Err(Error::Guest { .. })));
    assert_eq!(worker.restarts(), 1);
}

#[test]
fn pause_without_resume_stalls() {
    let mut worker = worker("P");

    let result = worker.run(Request::get("/"), &mut ok_upstream());

    match result {
        Err(Error::Stalled { callback, .. }) => assert_eq!(callback, "on_request_headers"),
        other => panic!("expected a stall, got {other:?}"),
    }
}

#[test]
fn pause_after_continue_stream_does_not_stall() {
    let mut worker = worker("U");

    let exchange = worker.run(Request::get("/"), &mut ok_upstream()).unwrap();

    assert!(exchange.reached_upstream);
}

#[test]
fn kong_source_address_has_no_port() {
    let mut worker = worker("x");

    let exchange = worker
        .run(
            Request::get("/").source_address("10.1.2.3:4000"),
            &mut ok_upstream(),
        )
        .unwrap();

    let sent = exchange.upstream_request.unwrap();
    assert_eq!(sent.header("x-probe-source").as_deref(), Some("10.1.2.3"));
}

#[test]
fn envoy_source_address_keeps_port() {
    let options = WorkerOptions::new("x").flavor(HostFlavor::Envoy);
    let mut worker = Worker::start(&probe(), options).unwrap();

    let exchange = worker
        .run(
            Request::get("/").source_address("[2001:db8::7]:4000"),
            &mut ok_upstream(),
        )
        .unwrap();

    let sent = exchange.upstream_request.unwrap();
    assert_eq!(
        sent.header("x-probe-source").as_deref(),
        Some("[2001:db8::7]:4000")
    );
}

#[test]
fn worker_property_reaches_filter() {
    let options = WorkerOptions::new("x").property("kong.route_id", "route-1");
    let mut worker = Worker::start(&probe(), options).unwrap();

    let plain = worker.run(Request::get("/"), &mut ok_upstream()).unwrap();
    let overridden = worker
        .run(
            Request::get("/").route("route-2", "second"),
            &mut ok_upstream(),
        )
        .unwrap();

    assert_eq!(
        plain
            .upstream_request
            .unwrap()
            .header("x-probe-route")
            .as_deref(),
        Some("route-1")
    );
    assert_eq!(
        overridden
            .upstream_request
            .unwrap()
            .header("x-probe-route")
            .as_deref(),
        Some("route-2")
    );
}

#[test]
fn non_utf8_header_reaches_upstream_unchanged() {
    let mut worker = worker("x");

    let exchange = worker
        .run(
            Request::get("/").header("x-raw", vec![0xff, 0x00, 0xfe]),
            &mut ok_upstream(),
        )
        .unwrap();

    let sent = exchange.upstream_request.unwrap();
    assert_eq!(sent.header_bytes("X-RAW"), Some(&[0xff, 0x00, 0xfe][..]));
}

#[test]
fn workers_share_one_store_across_threads() {
    let store = Arc::new(SharedStore::kong());
    let options = WorkerOptions::new("C").store(Arc::clone(&store));
    let workers = start_workers(&probe(), &options, 4).unwrap();

    let threads: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            std::thread::spawn(move || {
                for _ in 0..25 {
                    worker.run(Request::get("/"), &mut ok_upstream()).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }

    let stats = store.stats();
    let (value, _) = store.get("probe/count").unwrap();
    let count = u32::from_le_bytes(value.try_into().unwrap());
    assert_eq!(stats.writes + stats.cas_mismatches, 100);
    assert_eq!(u64::from(count), stats.writes);
}

#[test]
fn competing_write_makes_guest_see_cas_mismatch() {
    let store = Arc::new(SharedStore::kong());
    let logs = Arc::new(LogCapture::new());
    let options = WorkerOptions::new("C")
        .store(Arc::clone(&store))
        .logs(Arc::clone(&logs));
    let mut worker = Worker::start(&probe(), options).unwrap();
    worker.run(Request::get("/"), &mut ok_upstream()).unwrap();
    store.before_next_write(Box::new(|store: &SharedStore| {
        store.put("probe/count", 7_u32.to_le_bytes()).unwrap();
    }));

    worker.run(Request::get("/"), &mut ok_upstream()).unwrap();

    assert!(logs.contains("probe: cas mismatch"));
    assert_eq!(
        store.get("probe/count"),
        Some((7_u32.to_le_bytes().to_vec(), 2))
    );
}

#[test]
fn store_read_failure_reaches_guest() {
    let store = Arc::new(SharedStore::kong());
    let logs = Arc::new(LogCapture::new());
    let options = WorkerOptions::new("C")
        .store(Arc::clone(&store))
        .logs(Arc::clone(&logs));
    let mut worker = Worker::start(&probe(), options).unwrap();
    store.fail_reads(true);

    let exchange = worker.run(Request::get("/"), &mut ok_upstream()).unwrap();

    assert!(exchange.reached_upstream);
    assert!(logs.contains("probe: store failure"));
}

#[test]
fn manual_clock_reaches_guest_in_milliseconds() {
    let clock = ManualClock::new(1_234);

    clock.advance_ms(6);

    assert_eq!(clock.realtime_nanos(), 1_240_000_000);
    assert_eq!(clock.monotonic_nanos(), 1_240_000_000);
}

#[test]
fn missing_module_names_build_script() {
    let error = FilterModule::load("/nonexistent/dir/filter.wasm").unwrap_err();

    assert!(matches!(error, Error::FilterNotBuilt { .. }));
    assert!(error.to_string().contains("./build.sh"), "{error}");
}

#[test]
fn invalid_module_fails_to_compile() {
    let error = FilterModule::from_bytes("junk", b"not wasm").unwrap_err();

    assert!(matches!(error, Error::CompileFilter { .. }), "{error}");
}

#[test]
fn kong_chain_runs_both_phases_in_chain_order() {
    let mut workers = vec![worker("first"), worker("second")];

    let exchange = run_chain(&mut workers, Request::get("/"), &mut ok_upstream()).unwrap();

    let sent = exchange.upstream_request.as_ref().unwrap();
    assert_eq!(
        sent.header_values("x-probe"),
        vec![&b"first"[..], b"second"]
    );
    assert_eq!(
        exchange.header_values("x-probe-response"),
        vec![&b"first"[..], b"second"]
    );
    assert_eq!(exchange.body, b"||hello");
}

#[test]
fn envoy_chain_runs_response_phase_in_reverse() {
    let envoy = |config: &str| {
        Worker::start(
            &probe(),
            WorkerOptions::new(config).flavor(HostFlavor::Envoy),
        )
        .unwrap()
    };
    let mut workers = vec![envoy("first"), envoy("second")];

    let exchange = run_chain(&mut workers, Request::get("/"), &mut ok_upstream()).unwrap();

    assert_eq!(
        exchange.header_values("x-probe-response"),
        vec![&b"second"[..], b"first"]
    );
}

#[test]
fn kong_chain_local_response_reaches_later_filters() {
    let mut workers = vec![worker("D"), worker("second")];

    let exchange = run_chain(&mut workers, Request::get("/"), &mut ok_upstream()).unwrap();

    assert_eq!(exchange.status, 429);
    assert_eq!(
        exchange.header_values("x-probe-response"),
        vec![&b"D"[..], b"second"]
    );
}

#[test]
fn empty_chain_calls_upstream_directly() {
    let exchange = run_chain(&mut [], Request::get("/"), &mut ok_upstream()).unwrap();

    assert_eq!(exchange.body, b"hello");
    assert!(exchange.reached_upstream);
}
