//! A small fixture for driving the compiled filter: one Kong (or Envoy) node
//! with a shared store, a clock the test sets and captured logs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use local_gateway::{
    filter_wasm_path, Error, Exchange, FilterModule, HostFlavor, LogCapture, ManualClock, Request,
    SharedStore, UpstreamRequest, UpstreamResponse, Worker, WorkerOptions,
};

/// A minute-aligned instant (2023-11-14T22:14:00Z) in milliseconds.
pub const T0: u64 = 1_700_000_040_000;

/// Loads the compiled filter once per test binary.
pub fn module() -> FilterModule {
    FilterModule::load_cached(filter_wasm_path()).unwrap_or_else(|error| panic!("{error}"))
}

/// One proxy node: the workers it starts share its store, clock and logs.
pub struct Node {
    pub module: FilterModule,
    pub store: Arc<SharedStore>,
    pub clock: Arc<ManualClock>,
    pub logs: Arc<LogCapture>,
    pub flavor: HostFlavor,
}

impl Node {
    pub fn kong() -> Node {
        Node::with_store(SharedStore::kong(), HostFlavor::Kong)
    }

    pub fn envoy() -> Node {
        Node::with_store(SharedStore::envoy(), HostFlavor::Envoy)
    }

    pub fn with_store(store: SharedStore, flavor: HostFlavor) -> Node {
        Node {
            module: module(),
            store: Arc::new(store),
            clock: Arc::new(ManualClock::new(T0)),
            logs: Arc::new(LogCapture::new()),
            flavor,
        }
    }

    pub fn options(&self, config: &str) -> WorkerOptions {
        WorkerOptions::new(config)
            .store(Arc::clone(&self.store))
            .clock(self.clock.clone())
            .logs(Arc::clone(&self.logs))
            .flavor(self.flavor)
            .property("kong.route_id", "route-1")
            .property("kong.service_id", "service-1")
    }

    pub fn try_worker(&self, config: &str) -> Result<Worker, Error> {
        Worker::start(&self.module, self.options(config))
    }

    pub fn worker(&self, config: &str) -> Worker {
        self.try_worker(config)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    pub fn set_ms(&self, ms: u64) {
        self.clock.set_ms(ms);
    }
}

/// An upstream that returns 200 with a small JSON body.
pub fn model_answer(_: &UpstreamRequest) -> UpstreamResponse {
    UpstreamResponse::ok()
        .header("content-type", "application/json")
        .body(r#"{"label":"setosa"}"#)
}

/// Sends `request` through `worker` to an upstream that returns 200.
pub fn send(worker: &mut Worker, request: Request) -> Exchange {
    worker
        .run(request, &mut model_answer)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Sends a GET from the client address `ip`.
pub fn get_from(worker: &mut Worker, ip: &str) -> Exchange {
    send(worker, Request::get("/ml-model/predict").source_address(ip))
}

/// Returns a header's value, failing the test with the header list when absent.
pub fn header(exchange: &Exchange, name: &str) -> String {
    exchange.header(name).unwrap_or_else(|| {
        let names: Vec<&str> = exchange.headers.iter().map(|(n, _)| n.as_str()).collect();
        panic!("no {name} header; headers: {names:?}")
    })
}

/// Returns every header whose name starts with `X-RateLimit` or `RateLimit`
/// or is `Retry-After`.
pub fn rate_limit_header_names(exchange: &Exchange) -> Vec<String> {
    exchange
        .headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .filter(|name| {
            name.starts_with("x-ratelimit")
                || name.starts_with("ratelimit")
                || name == "retry-after"
        })
        .collect()
}
