//! Per-request cost in the proxy-wasm host over the whole lifecycle that
//! `Worker::run` drives: request headers, the upstream, response headers,
//! then `on_done`, `on_log` and `on_delete`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use local_gateway::{
    FilterModule, ManualClock, Request, SharedStore, UpstreamResponse, Worker, WorkerOptions,
};

use crate::error::{Context, Result};
use crate::stats::{iqr_percent, median, paired_ratios, quantile};
use crate::table::{fixed, thousands, Table};
use crate::Modules;

/// The target this section checks: the filter with one window costs at most
/// this many times the floor per request.
const TARGET_RATIO: f64 = 2.0;

/// A limit that the requests of one run never reach, so every request takes
/// the admitted path, which reads and writes the counter.
const UNREACHED: &str = "1000000000";

const ONE_WINDOW: &str = "filter, 1 window";
const ONE_WINDOW_NAMESPACE: &str = "filter, 1 window, namespace";

/// How many requests each case runs.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Requests before the first measured round.
    pub warmup: usize,
    /// Measured rounds; each round times every case once.
    pub rounds: usize,
    /// Requests in one timed sample.
    pub requests: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Module {
    Noop,
    Floor,
    Filter,
}

struct Case {
    label: &'static str,
    module: Module,
    config: String,
    /// The status every measured request must get.
    expected_status: u16,
}

fn cases() -> Vec<Case> {
    let case = |label, module, config: String, expected_status| Case {
        label,
        module,
        config,
        expected_status,
    };
    let four = format!(
        r#""second": {UNREACHED}, "minute": {UNREACHED}, "hour": {UNREACHED}, "day": {UNREACHED}"#
    );
    let header =
        format!(r#""minute": {UNREACHED}, "limit_by": "header", "header_name": "X-API-Key""#);
    let mut cases = vec![
        case("no-op filter", Module::Noop, String::new(), 200),
        case(
            "floor: 1 read + 1 CAS write",
            Module::Floor,
            String::new(),
            200,
        ),
    ];
    for (label, namespaced_label, body, status) in [
        (
            ONE_WINDOW,
            ONE_WINDOW_NAMESPACE,
            format!(r#""second": {UNREACHED}"#),
            200,
        ),
        (
            "filter, 4 windows",
            "filter, 4 windows, namespace",
            four,
            200,
        ),
        (
            "filter, header identifier",
            "filter, header identifier, namespace",
            header,
            200,
        ),
        (
            "filter, 1 window, limited path",
            "filter, 1 window, limited path, namespace",
            r#""second": 1"#.to_owned(),
            429,
        ),
    ] {
        cases.push(case(label, Module::Filter, format!("{{{body}}}"), status));
        let namespaced = format!(r#"{{{body}, "namespace": "bench"}}"#);
        cases.push(case(namespaced_label, Module::Filter, namespaced, status));
    }
    cases
}

/// Returns the request that every case runs: one fixed client, a few ordinary headers and
/// the `X-API-Key` that the header-identifier cases count by.
fn request() -> Request {
    Request::get("/ml-model/predict?features=5.1,3.5,1.4,0.2")
        .source_address("10.0.0.1")
        .header("host", "localhost:8000")
        .header("user-agent", "bench-runner")
        .header("accept", "application/json")
        .header("x-api-key", "bench-key-0001")
}

fn start(modules: &Modules, case: &Case) -> Result<Worker> {
    let module: &FilterModule = match case.module {
        Module::Noop => &modules.noop,
        Module::Floor => &modules.floor,
        Module::Filter => &modules.filter,
    };
    // The clock does not move, so the limited cases stay limited and the
    // others never reach their limit.
    let options = WorkerOptions::new(case.config.clone())
        .store(Arc::new(SharedStore::kong()))
        .clock(Arc::new(ManualClock::default()))
        .property("kong.route_id", "8f3e1a52-6c1d-4b5e-9d0a-2f7c4e9b1a63")
        .property("kong.service_id", "c2b7d9e4-1f8a-4c3d-a6e5-7b0f9d2c8e14");
    Worker::start(module, options).context(|| format!("starting the worker for {}", case.label))
}

/// Runs `count` requests and returns how many got another status than
/// `expected_status`.
fn run_requests(worker: &mut Worker, count: usize, expected_status: u16) -> Result<u64> {
    let template = request();
    let mut upstream = |_: &local_gateway::UpstreamRequest| UpstreamResponse::ok();
    let mut unexpected = 0;
    for _ in 0..count {
        let exchange = worker
            .run(template.clone(), &mut upstream)
            .context(|| format!("running a request through {}", worker.filter_name()))?;
        if exchange.status != expected_status {
            unexpected += 1;
        }
        black_box(exchange);
    }
    Ok(unexpected)
}

/// Measures every case and returns the table.
pub fn run(modules: &Modules, settings: Settings) -> Result<Table> {
    let cases = cases();
    let mut workers = Vec::with_capacity(cases.len());
    for case in &cases {
        let mut worker = start(modules, case)?;
        // The warm-up also takes the limited cases past their one admitted
        // request.
        run_requests(&mut worker, settings.warmup, case.expected_status)?;
        workers.push(worker);
    }

    // Rounds interleave the cases, so a slow spell caused by other work on
    // the machine spreads over all of them instead of one.
    let mut samples = vec![Vec::with_capacity(settings.rounds); cases.len()];
    let mut unexpected = vec![0u64; cases.len()];
    for _ in 0..settings.rounds {
        for (index, (case, worker)) in cases.iter().zip(&mut workers).enumerate() {
            let started = Instant::now();
            unexpected[index] += run_requests(worker, settings.requests, case.expected_status)?;
            let nanos = started.elapsed().as_nanos() as f64;
            samples[index].push(nanos / settings.requests as f64);
        }
    }

    // Ratios are taken within each round, then summarized over rounds.
    let noop = &samples[0];
    let floor = &samples[1];
    let mut table = Table::new(
        "Per-request cost in the proxy-wasm host",
        &[
            "case",
            "ns/request (median)",
            "IQR",
            "ratio to floor (median)",
            "ratio IQR",
            "(x − no-op) / (floor − no-op)",
            "status check",
        ],
    );
    let mut ratio_summaries = Vec::with_capacity(cases.len());
    for (index, case) in cases.iter().enumerate() {
        let ratios = paired_ratios(&samples[index], floor);
        let added: Vec<f64> = samples[index]
            .iter()
            .zip(noop)
            .zip(floor)
            .map(|((case, noop), floor)| (case - noop) / (floor - noop))
            .collect();
        let status = if unexpected[index] == 0 {
            format!("all {} ✓", case.expected_status)
        } else {
            format!("FAIL: {} not {}", unexpected[index], case.expected_status)
        };
        let ratio = median(&ratios);
        let ratio_range = format!(
            "{}–{}",
            fixed(quantile(&ratios, 0.25), 2),
            fixed(quantile(&ratios, 0.75), 2)
        );
        table.row(vec![
            case.label.to_owned(),
            thousands(median(&samples[index]).round() as u64),
            format!("{}%", fixed(iqr_percent(&samples[index]), 0)),
            fixed(ratio, 2),
            ratio_range.clone(),
            fixed(median(&added), 2),
            status,
        ]);
        ratio_summaries.push((ratio, ratio_range));
    }

    let mut verdicts = Vec::new();
    for (scope, label) in [
        ("default scope", ONE_WINDOW),
        ("with namespace", ONE_WINDOW_NAMESPACE),
    ] {
        if let Some(index) = cases.iter().position(|case| case.label == label) {
            let (ratio, range) = &ratio_summaries[index];
            let verdict = if *ratio <= TARGET_RATIO {
                "met"
            } else {
                "not met"
            };
            verdicts.push(format!(
                "{scope} {}× (IQR {range}), {verdict}",
                fixed(*ratio, 2)
            ));
        }
    }
    table.note(format!(
        "Target: the filter with one window within {TARGET_RATIO}× the floor per request: {}.",
        verdicts.join("; ")
    ));
    table.note(format!(
        "{} rounds of {} requests per case, after {} warm-up requests; rounds interleave the \
         cases. ns/request is the median over rounds and IQR its interquartile range over \
         the median. Each ratio is taken within one round, where the case and the floor ran \
         moments apart, and then summarized over rounds: median and interquartile range.",
        settings.rounds,
        thousands(settings.requests as u64),
        thousands(settings.warmup as u64)
    ));
    table.note(
        "Every request comes from one client (10.0.0.1) with a fixed clock. The admitted \
         cases have a limit of 1,000,000,000, which they never reach, so each request \
         reads and writes its counter; the limited path (`\"second\": 1`) reads it and \
         answers 429 without writing.",
    );
    table.note(
        "(x − no-op) / (floor − no-op) compares the work each case adds to the host's own \
         cost with the work the floor adds. Its denominator is a small difference, so it \
         moves more from run to run than the plain ratio.",
    );
    let configs: Vec<String> = cases
        .iter()
        .filter(|case| case.module == Module::Filter)
        .map(|case| format!("{}: `{}`", case.label, case.config))
        .collect();
    table.note(format!("Configs: {}", configs.join("; ")));
    Ok(table)
}
