//! The local gateway: serves a declarative config on 127.0.0.1 with filter
//! chains run by [`Worker`]s, and proxies admitted requests to their
//! upstreams.
//!
//! It is a local runner for trying and testing filters, not a replacement
//! for Kong. The binary's `--help` and the README list what it leaves out.

mod log;
mod proxy;
pub mod router;

use std::collections::HashMap;
use std::fmt;
use std::io::{Cursor, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{FilterSpec, GatewayConfig, Route, Service};
use crate::error::Error;
use crate::guest::{
    run_chain, Exchange, FilterModule, LogCapture, MillisecondSystemClock, Request,
    UpstreamRequest, UpstreamResponse, Worker, WorkerOptions,
};
use crate::store::SharedStore;
use crate::LogLevel;

pub use log::{log, Level};
pub use proxy::{is_hop_by_hop, Upstream, UpstreamFailure, MAX_RESPONSE_BYTES};
use router::{find_route, upstream_path, RouteMatch};

/// The default capacity of each shared-data zone, in entries. It is an
/// estimate of what a `12m` Kong zone stores at roughly 256 bytes an entry.
pub const DEFAULT_SHM_ENTRIES: usize = 49_152;

/// The largest request body the gateway accepts, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How often a worker thread checks whether the gateway is stopping.
const STOP_POLL: Duration = Duration::from_millis(100);

/// How to run the gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The number of worker threads, each with its own guest instances.
    pub workers: usize,
    /// The folder that contains `<filter name>.wasm`.
    pub filters_dir: PathBuf,
    /// The capacity of each shared-data zone, in entries.
    pub shm_entries: usize,
    /// Zones to declare besides `*`, like Kong's `nginx_wasm_shm_kv_<zone>`.
    pub shm_zones: Vec<String>,
    /// Whether full zones fail writes instead of evicting, like
    /// `eviction=none`.
    pub shm_no_eviction: bool,
    /// Upstream addresses that replace a service's host and port, by
    /// service name or id.
    pub upstream_overrides: Vec<(String, String, u16)>,
    /// Whether filter log lines are printed to standard error.
    pub echo_filter_logs: bool,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            workers: 2,
            filters_dir: PathBuf::from("dist"),
            shm_entries: DEFAULT_SHM_ENTRIES,
            shm_zones: Vec::new(),
            shm_no_eviction: false,
            upstream_overrides: Vec::new(),
            echo_filter_logs: true,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// An error that stopped the gateway from starting.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// Occurs when a filter cannot be loaded or rejects its configuration.
    Filter {
        /// The path of the filter's declaration, such as
        /// `services[0].routes[0].filter_chains[0].filters[0]`.
        origin: String,
        /// The route whose chain contains it.
        route: String,
        /// The error, with the filter's own log lines.
        source: Box<Error>,
    },
    /// Occurs when `--upstream` names no service.
    UnknownService {
        /// The name or id given.
        service: String,
    },
    /// Occurs when the listener cannot be opened.
    Bind {
        /// The address.
        address: SocketAddr,
        /// The error of the listener.
        message: String,
    },
    /// Occurs when the number of workers is zero.
    NoWorkers,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Filter {
                origin,
                route,
                source,
            } => write!(f, "{origin} (route {route}): {source}"),
            Self::UnknownService { service } => write!(
                f,
                "--upstream names service {service:?}, which the config does not declare"
            ),
            Self::Bind { address, message } => {
                write!(f, "failed to listen on {address}: {message}")
            }
            Self::NoWorkers => write!(f, "--workers must be at least 1"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Filter { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// The state that every worker thread shares.
struct Shared {
    config: GatewayConfig,
    /// The upstream of each service, by service index.
    upstreams: Vec<Upstream>,
    server: tiny_http::Server,
    address: SocketAddr,
    max_body_bytes: usize,
    stopping: AtomicBool,
    requests: AtomicU64,
    id_seed: u64,
}

/// A gateway that is serving; [`RunningGateway::stop`] ends it.
pub struct RunningGateway {
    shared: Arc<Shared>,
    store: Arc<SharedStore>,
    threads: Vec<JoinHandle<()>>,
}

impl fmt::Debug for RunningGateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningGateway")
            .field("address", &self.shared.address)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}

impl RunningGateway {
    /// Returns the address the gateway listens on.
    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// Returns the shared data of every worker.
    pub fn store(&self) -> &Arc<SharedStore> {
        &self.store
    }

    /// Returns the number of requests served so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Stops accepting requests, lets each worker finish the request it is
    /// serving, and waits for the worker threads.
    pub fn stop(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.server.unblock();
        for thread in self.threads {
            if thread.join().is_err() {
                log(Level::Error, "a worker thread panicked");
            }
        }
    }
}

/// Starts the gateway: loads every filter, starts `options.workers` guest
/// instances of each chain (one per worker thread), opens the listener and
/// starts the worker threads.
///
/// # Errors
///
/// Returns a [`StartError`] when a filter is missing or rejects its
/// configuration, when `--upstream` names no service, or when the listener
/// cannot be opened.
pub fn start(
    config: GatewayConfig,
    options: &GatewayOptions,
) -> Result<RunningGateway, StartError> {
    if options.workers == 0 {
        return Err(StartError::NoWorkers);
    }
    let upstreams = upstreams(&config, options)?;
    let store = Arc::new(build_store(options));
    let mut logs = LogCapture::new().with_max_lines(1_000);
    if options.echo_filter_logs {
        logs = logs.with_echo(|line| {
            let plugin = line.plugin.as_deref().unwrap_or("-");
            let level = match line.level {
                LogLevel::Trace | LogLevel::Debug | LogLevel::Info => Level::Info,
                LogLevel::Warn => Level::Warn,
                LogLevel::Error | LogLevel::Critical => Level::Error,
            };
            log(level, format_args!("filter {plugin}: {}", line.message));
        });
    }
    let logs = Arc::new(logs);

    let mut chains_per_thread = Vec::new();
    let mut modules = HashMap::new();
    for _ in 0..options.workers {
        let mut chains = Vec::new();
        for route in &config.routes {
            let chain = start_chain(&config, route, options, &store, &logs, &mut modules)?;
            chains.push(chain);
        }
        chains_per_thread.push(chains);
    }

    let server = tiny_http::Server::http(options.listen).map_err(|source| StartError::Bind {
        address: options.listen,
        message: source.to_string(),
    })?;
    let address = server.server_addr().to_ip().unwrap_or(options.listen);
    let shared = Arc::new(Shared {
        config,
        upstreams,
        server,
        address,
        max_body_bytes: options.max_body_bytes,
        stopping: AtomicBool::new(false),
        requests: AtomicU64::new(0),
        id_seed: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
    });

    let threads = chains_per_thread
        .into_iter()
        .enumerate()
        .map(|(number, chains)| {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("gateway-worker-{number}"))
                .spawn(move || serve(&shared, chains))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| StartError::Bind {
            address,
            message: format!("failed to start a worker thread: {source}"),
        })?;
    Ok(RunningGateway {
        shared,
        store,
        threads,
    })
}

fn build_store(options: &GatewayOptions) -> SharedStore {
    let mut store = SharedStore::kong();
    for zone in std::iter::once(crate::store::DEFAULT_ZONE)
        .chain(options.shm_zones.iter().map(String::as_str))
    {
        store = if options.shm_no_eviction {
            store.with_zone_no_eviction(zone, options.shm_entries)
        } else {
            store.with_zone(zone, options.shm_entries)
        };
    }
    store
}

fn upstreams(
    config: &GatewayConfig,
    options: &GatewayOptions,
) -> Result<Vec<Upstream>, StartError> {
    for (service, _, _) in &options.upstream_overrides {
        let known = config
            .services
            .iter()
            .any(|entry| entry.name.as_deref() == Some(service.as_str()) || entry.id == *service);
        if !known {
            return Err(StartError::UnknownService {
                service: service.clone(),
            });
        }
    }
    Ok(config
        .services
        .iter()
        .map(|service| {
            let address = options
                .upstream_overrides
                .iter()
                .find(|(name, _, _)| {
                    service.name.as_deref() == Some(name.as_str()) || service.id == *name
                })
                .map(|(_, host, port)| (host.as_str(), *port));
            Upstream::new(service, address)
        })
        .collect())
}

/// Starts one worker for each filter of `route`'s chain: the service's
/// filters first, then the route's, as Kong orders them.
fn start_chain(
    config: &GatewayConfig,
    route: &Route,
    options: &GatewayOptions,
    store: &Arc<SharedStore>,
    logs: &Arc<LogCapture>,
    modules: &mut HashMap<String, FilterModule>,
) -> Result<Vec<Worker>, StartError> {
    let service = route.service.and_then(|index| config.services.get(index));
    let service_filters = service.map_or(&[][..], |service| service.filters.as_slice());
    let mut workers = Vec::new();
    for spec in service_filters.iter().chain(&route.filters) {
        let filter_error = |source| StartError::Filter {
            origin: spec.origin.clone(),
            route: route.label().to_owned(),
            source: Box::new(source),
        };
        let module = match modules.get(&spec.name) {
            Some(module) => module.clone(),
            None => {
                let module = FilterModule::load(filter_path(&options.filters_dir, spec))
                    .map_err(filter_error)?;
                modules.insert(spec.name.clone(), module.clone());
                module
            }
        };
        let worker_options = worker_options(route, service, spec, store, logs);
        workers.push(Worker::start(&module, worker_options).map_err(filter_error)?);
    }
    Ok(workers)
}

fn filter_path(filters_dir: &Path, spec: &FilterSpec) -> PathBuf {
    filters_dir.join(format!("{}.wasm", spec.name))
}

fn worker_options(
    route: &Route,
    service: Option<&Service>,
    spec: &FilterSpec,
    store: &Arc<SharedStore>,
    logs: &Arc<LogCapture>,
) -> WorkerOptions {
    let mut options = WorkerOptions::new(spec.config.clone())
        .store(Arc::clone(store))
        .clock(Arc::new(MillisecondSystemClock))
        .logs(Arc::clone(logs))
        .plugin_name(&spec.name)
        .property("kong.route_id", route.id.as_str());
    if let Some(name) = &route.name {
        options = options.property("kong.route_name", name.as_str());
    }
    if let Some(service) = service {
        options = options.property("kong.service_id", service.id.as_str());
        if let Some(name) = &service.name {
            options = options.property("kong.service_name", name.as_str());
        }
    }
    options
}

/// Serves requests on one worker thread until the gateway stops.
fn serve(shared: &Shared, mut chains: Vec<Vec<Worker>>) {
    while !shared.stopping.load(Ordering::SeqCst) {
        match shared.server.recv_timeout(STOP_POLL) {
            Ok(Some(request)) => {
                handle(shared, &mut chains, request);
                shared.requests.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(source) => {
                log(
                    Level::Error,
                    format_args!("failed to accept a request: {source}"),
                );
                std::thread::sleep(STOP_POLL);
            }
        }
    }
}

/// Creates a Kong-style id for one request from the start time and a
/// counter, unique in this process.
fn request_id(shared: &Shared) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let sequence = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{:08x}{sequence:016x}", shared.id_seed & 0xffff_ffff)
}

/// A response the gateway writes itself.
struct Reply {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl Reply {
    /// Creates a Kong-style JSON error response.
    fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![(
                "Content-Type".to_owned(),
                b"application/json; charset=utf-8".to_vec(),
            )],
            body: body.as_bytes().to_vec(),
        }
    }

    fn from_exchange(exchange: Exchange) -> Self {
        Self {
            status: exchange.status,
            headers: exchange.headers,
            body: exchange.body,
        }
    }
}

fn handle(shared: &Shared, chains: &mut [Vec<Worker>], mut request: tiny_http::Request) {
    let id = request_id(shared);
    let reply = build_reply(shared, chains, &mut request, &id);
    respond(request, reply, &id);
}

fn build_reply(
    shared: &Shared,
    chains: &mut [Vec<Worker>],
    request: &mut tiny_http::Request,
    id: &str,
) -> Reply {
    let method = request.method().as_str().to_owned();
    let url = request.url().to_owned();
    let path = url.split_once('?').map_or(url.as_str(), |(path, _)| path);

    let (index, prefix) = match find_route(&shared.config, &method, path) {
        RouteMatch::NoRoute => {
            return Reply::json(404, r#"{"message":"no Route matched with those values"}"#)
        }
        RouteMatch::HttpsRequired => {
            return Reply::json(426, r#"{"message":"Please use HTTPS protocol"}"#)
        }
        RouteMatch::Matched { index, prefix } => (index, prefix.to_owned()),
    };
    let route = &shared.config.routes[index];
    let Some(service_index) = route.service else {
        return Reply::json(503, r#"{"message":"no Service found with those values"}"#);
    };
    let service = &shared.config.services[service_index];
    let upstream = &shared.upstreams[service_index];

    let mut body = Vec::new();
    let limit = u64::try_from(shared.max_body_bytes).unwrap_or(u64::MAX);
    if let Err(source) = request.as_reader().take(limit + 1).read_to_end(&mut body) {
        log(
            Level::Error,
            format_args!(
                "request {id} route {}: failed to read the request body: {source}",
                route.label()
            ),
        );
        return Reply::json(400, r#"{"message":"Bad request"}"#);
    }
    if body.len() > shared.max_body_bytes {
        return Reply::json(413, r#"{"message":"Request size limit exceeded"}"#);
    }

    let headers: Vec<(String, Vec<u8>)> = request
        .headers()
        .iter()
        .map(|header| {
            (
                header.field.as_str().as_str().to_owned(),
                header.value.as_str().as_bytes().to_vec(),
            )
        })
        .collect();
    let client = request.remote_addr().copied();
    let client_ip = client.map_or_else(String::new, |address| address.ip().to_string());
    let host_header = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned());

    let mut guest_request = Request::new(&method, &url)
        // Kong's engine serves its server name and port as :authority.
        .authority(&format!("kong:{}", shared.address.port()))
        .source_address(
            &client.map_or_else(|| "127.0.0.1".to_owned(), |address| address.to_string()),
        )
        .body(body);
    guest_request.headers = headers;

    let earlier_hops = guest_request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|(_, value)| String::from_utf8_lossy(value).into_owned());
    let forwarded = forwarded_headers(&Forwarding {
        client_ip: &client_ip,
        earlier_hops: earlier_hops.as_deref(),
        host: host_header.as_deref(),
        port: shared.address.port(),
        path,
        stripped_prefix: route.strip_path.then_some(prefix.as_str()),
    });
    let mut proxy = |sent: &UpstreamRequest| -> UpstreamResponse {
        let target = upstream_path(route, service, &prefix, &sent.path);
        let mut skipped = Vec::new();
        let result = upstream.send(&target, sent, &forwarded, &mut skipped);
        if !skipped.is_empty() {
            log(
                Level::Warn,
                format_args!(
                    "request {id} route {}: left out headers that are not UTF-8: {}",
                    route.label(),
                    skipped.join(", ")
                ),
            );
        }
        result.unwrap_or_else(|failure| {
            log(
                Level::Error,
                format_args!(
                    "request {id} route {}: upstream failed with {}: {}",
                    route.label(),
                    failure.status,
                    failure.reason
                ),
            );
            UpstreamResponse::new(failure.status)
                .header("Content-Type", "application/json; charset=utf-8")
                .body(failure.body())
        })
    };

    match run_chain(&mut chains[index], guest_request, &mut proxy) {
        Ok(exchange) => Reply::from_exchange(exchange),
        Err(error) => {
            log(
                Level::Error,
                format_args!("request {id} route {}: {error}", route.label()),
            );
            Reply::json(500, r#"{"message":"An unexpected error occurred"}"#)
        }
    }
}

/// The request facts that the `X-Forwarded-*` headers describe.
struct Forwarding<'a> {
    client_ip: &'a str,
    /// The client's own `X-Forwarded-For`, which the client address extends.
    earlier_hops: Option<&'a str>,
    host: Option<&'a str>,
    port: u16,
    path: &'a str,
    stripped_prefix: Option<&'a str>,
}

/// Builds the headers Kong adds to every proxied request after the filters
/// ran.
fn forwarded_headers(forwarding: &Forwarding<'_>) -> Vec<(String, String)> {
    let client_ip = forwarding.client_ip;
    let forwarded_for = match forwarding.earlier_hops {
        Some(earlier) => format!("{earlier}, {client_ip}"),
        None => client_ip.to_owned(),
    };
    let mut headers = vec![
        ("X-Real-IP".to_owned(), client_ip.to_owned()),
        ("X-Forwarded-For".to_owned(), forwarded_for),
        ("X-Forwarded-Proto".to_owned(), "http".to_owned()),
        ("X-Forwarded-Port".to_owned(), forwarding.port.to_string()),
        ("X-Forwarded-Path".to_owned(), forwarding.path.to_owned()),
    ];
    if let Some(host) = forwarding.host {
        let host = host.rsplit_once(':').map_or(host, |(name, _)| name);
        headers.push(("X-Forwarded-Host".to_owned(), host.to_owned()));
    }
    if let Some(prefix) = forwarding
        .stripped_prefix
        .filter(|prefix| !prefix.is_empty())
    {
        headers.push(("X-Forwarded-Prefix".to_owned(), prefix.to_owned()));
    }
    headers
}

fn respond(request: tiny_http::Request, reply: Reply, id: &str) {
    let mut headers = Vec::new();
    for (name, value) in &reply.headers {
        if is_hop_by_hop(name) {
            continue;
        }
        match tiny_http::Header::from_bytes(name.as_bytes(), value.as_slice()) {
            Ok(header) => headers.push(header),
            Err(()) => log(
                Level::Warn,
                format_args!(
                    "request {id}: left out response header {name}, whose value is not ASCII"
                ),
            ),
        }
    }
    if let Ok(header) = tiny_http::Header::from_bytes(&b"X-Kong-Request-Id"[..], id.as_bytes()) {
        headers.push(header);
    }
    let length = reply.body.len();
    let response = tiny_http::Response::new(
        tiny_http::StatusCode(reply.status),
        headers,
        Cursor::new(reply.body),
        Some(length),
        None,
    );
    if let Err(source) = request.respond(response) {
        log(
            Level::Warn,
            format_args!("request {id}: failed to send the response: {source}"),
        );
    }
}
