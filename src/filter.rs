//! The proxy-wasm contexts: configuration in the root context, one decision
//! per request in the HTTP context.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType};

use crate::body::{self, EventStreamUsage};
use crate::config::{self, CostSource, FilterConfig, LimitBy, Limits};
use crate::headers;
use crate::host::{self, SharedData};
use crate::key;
use crate::limiter::{Decision, Reservation, Window};
use crate::store::{self, StoreFault};

/// The filter's name in Kong, taken from the `.wasm` file name.
pub const FILTER_NAME: &str = "sliding_window_rate_limit";
/// The filter's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Shortest time between two warnings of one worker, so a failing store does
/// not flood the log.
const WARNING_INTERVAL_MS: u64 = 10_000;

/// Body of the response when the store fails and `fault_tolerant` is off,
/// as Kong words its own internal errors.
const INTERNAL_ERROR_MESSAGE: &str = "An unexpected error occurred";

fn now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Rate-limits warnings to one per interval and counts the ones left out.
#[derive(Default)]
struct Warnings {
    last_ms: Option<u64>,
    suppressed: u64,
}

impl Warnings {
    fn warn(&mut self, now_ms: u64, message: &str) {
        let due = self
            .last_ms
            .is_none_or(|last| now_ms.saturating_sub(last) >= WARNING_INTERVAL_MS || now_ms < last);
        if !due {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            log::warn!(
                "{FILTER_NAME}: {message} ({} similar warnings suppressed)",
                self.suppressed
            );
        } else {
            log::warn!("{FILTER_NAME}: {message}");
        }
        self.last_ms = Some(now_ms);
        self.suppressed = 0;
    }
}

/// Registers the root context; called once per VM by the SDK's entry point.
pub fn start() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(RateLimitRoot {
            config: None,
            warnings: Rc::new(RefCell::new(Warnings::default())),
        })
    });
}

struct RateLimitRoot {
    config: Option<Rc<FilterConfig>>,
    warnings: Rc<RefCell<Warnings>>,
}

impl Context for RateLimitRoot {}

impl RootContext for RateLimitRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        if bytes.is_empty() {
            log::error!(
                "{FILTER_NAME}: invalid config: the config is empty; give a JSON object with at least one limit, such as {{\"minute\": 100}}"
            );
            return false;
        }
        match config::parse(&bytes) {
            Ok(config) => {
                log::set_max_level(config.log_level);
                log::info!("{FILTER_NAME} {VERSION}: {}", config.summary());
                self.config = Some(Rc::new(config));
                true
            }
            Err(error) => {
                log::error!("{FILTER_NAME}: {error}");
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(RateLimitRequest {
            context_id,
            config: self.config.clone(),
            warnings: Rc::clone(&self.warnings),
            stage: Stage::Start,
            forwarded: false,
            client: None,
            response_headers: Vec::new(),
            settlement: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Start,
    /// Waiting for the request body, which contains the cost or the model.
    AwaitingBody,
    Decided,
    /// The filter sent its own response.
    Responded,
}

/// The client a request counts against.
struct Client {
    /// Kind and value, such as `ip=10.0.0.1`, already escaped for the key.
    identifier: Vec<u8>,
    /// The value looked up in `plans.members`.
    plan_member: Option<String>,
}

/// The reader of the real usage in a response.
enum UsageReader {
    Json(Vec<u8>),
    Stream(EventStreamUsage),
    Overflowed,
}

/// A token reservation that waits for the response's real usage.
struct Settlement {
    slot: Vec<u8>,
    fingerprint: u64,
    windows: Vec<Window>,
    request_windows: usize,
    reservation: Reservation,
    reserved: u64,
    reader: Option<UsageReader>,
}

struct RateLimitRequest {
    context_id: u32,
    config: Option<Rc<FilterConfig>>,
    warnings: Rc<RefCell<Warnings>>,
    stage: Stage,
    /// Whether the host forwarded the request before the filter decided, so
    /// the filter can no longer send its own response.
    forwarded: bool,
    client: Option<Client>,
    response_headers: Vec<(String, String)>,
    settlement: Option<Settlement>,
}

impl Context for RateLimitRequest {}

fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
        .filter(|value| !value.is_empty())
}

impl RateLimitRequest {
    fn client_address(&self, config: &FilterConfig) -> Vec<u8> {
        let mut identifier = b"ip=".to_vec();
        match host::property(&["source", "address"]) {
            Some(raw) => match std::str::from_utf8(&raw).ok().and_then(key::parse_address) {
                Some(ip) => identifier.extend_from_slice(
                    key::canonical_address(ip, config.ipv6_prefix_length).as_bytes(),
                ),
                None => key::push_identifier(&mut identifier, &raw),
            },
            None => {
                let now = now_ms();
                self.warnings
                    .borrow_mut()
                    .warn(now, "the host has no source.address property; clients without another identifier share one counter");
                identifier.extend_from_slice(b"unknown");
            }
        }
        identifier
    }

    /// Reads the configured identifier, falling back to the client address
    /// when it is missing or empty, as Kong's plugin does.
    fn identify(&self, config: &FilterConfig) -> Client {
        let found: Option<(&str, Vec<u8>)> = match &config.limit_by {
            LimitBy::Ip => None,
            LimitBy::Global => Some(("global", b"*".to_vec())),
            LimitBy::Header(name) => request_header(name).map(|v| ("header", v)),
            LimitBy::Path(path) => {
                let request_path = host::property(&["request", "path"]).or_else(|| {
                    request_header(":path")
                        .map(|p| p.split(|b| *b == b'?').next().unwrap_or_default().to_vec())
                });
                request_path
                    .filter(|p| p == path.as_bytes())
                    .map(|p| ("path", p))
            }
            LimitBy::Service => host::property(&["kong", "service_id"])
                .filter(|v| !v.is_empty())
                .map(|v| ("service", v)),
            LimitBy::Route => host::property(&["kong", "route_id"])
                .filter(|v| !v.is_empty())
                .map(|v| ("route", v)),
            LimitBy::Consumer => request_header("x-consumer-id")
                .map(|v| ("consumer", v))
                .or_else(|| request_header("x-credential-identifier").map(|v| ("credential", v))),
            LimitBy::Credential => {
                request_header("x-credential-identifier").map(|v| ("credential", v))
            }
        };

        let plan_from_header = config
            .plans
            .as_ref()
            .and_then(|plans| plans.header_name.as_deref())
            .and_then(request_header)
            .map(|v| String::from_utf8_lossy(&v).into_owned());

        match found {
            Some((kind, value)) => {
                let mut identifier = format!("{kind}=").into_bytes();
                key::push_identifier(&mut identifier, &value);
                let plan_member = plan_from_header.or_else(|| String::from_utf8(value).ok());
                Client {
                    identifier,
                    plan_member,
                }
            }
            None => {
                if config.limit_by != LimitBy::Ip {
                    log::debug!(
                        "{FILTER_NAME}: context {}: no {} identifier; counting by client address",
                        self.context_id,
                        config.limit_by.name()
                    );
                }
                let identifier = self.client_address(config);
                let plan_member = plan_from_header.or_else(|| {
                    (config.limit_by == LimitBy::Ip)
                        .then(|| String::from_utf8_lossy(&identifier[3..]).into_owned())
                });
                Client {
                    identifier,
                    plan_member,
                }
            }
        }
    }

    fn scope(config: &FilterConfig) -> Vec<u8> {
        if let Some(namespace) = &config.namespace {
            return format!("ns={namespace}").into_bytes();
        }
        // Without a namespace, counters are per route and service, as with
        // Kong's plugin.
        let mut scope = b"rs=".to_vec();
        let route = host::property(&["kong", "route_id"]).unwrap_or_default();
        let service = host::property(&["kong", "service_id"]).unwrap_or_default();
        key::push_identifier(&mut scope, &route);
        scope.push(b',');
        key::push_identifier(&mut scope, &service);
        scope
    }

    fn token_cost(config: &FilterConfig, body: Option<&[u8]>) -> u64 {
        let Some(tokens) = &config.tokens else {
            return 0;
        };
        let estimate = match &tokens.source {
            CostSource::Fixed => None,
            CostSource::Body(pointer) => body.and_then(|b| body::number_at(b, pointer)),
            CostSource::Header(name) => {
                request_header(name).and_then(|v| body::number_in_header(&v))
            }
        };
        estimate.map_or(tokens.default_cost, |n| n.min(tokens.max_cost))
    }

    fn decide(&mut self, config: &FilterConfig, body: Option<&[u8]>) -> Action {
        self.stage = Stage::Decided;
        let Some(client) = self.client.take() else {
            return Action::Continue;
        };

        let limits: &Limits = config
            .plans
            .as_ref()
            .and_then(|plans| {
                let member = client.plan_member.as_ref()?;
                plans.limits.get(plans.members.get(member)?)
            })
            .unwrap_or(&config.limits);
        let windows = &limits.counter_windows;

        let token_cost = Self::token_cost(config, body);
        let costs: Vec<u64> = limits
            .windows
            .iter()
            .map(|_| config.cost)
            .chain(limits.token_windows.iter().map(|_| token_cost))
            .collect();

        let mut counter_key =
            format!("{}/swrl:{:016x}:", config.shm_zone, limits.layout).into_bytes();
        counter_key.extend_from_slice(&Self::scope(config));
        counter_key.push(b':');
        counter_key.extend_from_slice(&client.identifier);
        if let Some(pointer) = &config.per_model {
            let model = body
                .and_then(|b| body::string_at(b, pointer))
                .unwrap_or_default();
            counter_key.extend_from_slice(b"|model=");
            key::push_identifier(&mut counter_key, model.as_bytes());
        }
        let fingerprint = key::hash64(&counter_key);

        let now = now_ms();
        let checked = match store::check_and_count(
            &mut SharedData,
            &counter_key,
            fingerprint,
            windows,
            now,
            &costs,
        ) {
            Ok(checked) => checked,
            Err(fault) => return self.on_store_fault(config, &fault, now),
        };
        // The key contains the identifier, which can be an API key, so only its
        // fingerprint is logged.
        log::debug!(
            "{FILTER_NAME}: context {}: counter {fingerprint:016x} ({}) {} (cost {} request(s), {token_cost} token(s), {} CAS retries)",
            self.context_id,
            config.limit_by.name(),
            if matches!(checked.decision, Decision::Admitted { .. }) {
                "admitted"
            } else {
                "limited"
            },
            config.cost,
            checked.retries
        );

        let rate_headers = if config.hide_client_headers {
            Vec::new()
        } else {
            headers::rate_limit_headers(limits, &checked.decision)
        };

        if matches!(checked.decision, Decision::Limited { .. }) {
            if self.forwarded {
                log::debug!(
                    "{FILTER_NAME}: context {}: over the limit, but the request was already forwarded; it was not counted",
                    self.context_id
                );
                return Action::Continue;
            }
            return self.respond(config.error_code, &config.error_message, rate_headers);
        }

        self.response_headers = rate_headers;
        let settles = config
            .tokens
            .as_ref()
            .is_some_and(|t| t.usage_pointer.is_some());
        if settles && !limits.token_windows.is_empty() {
            self.settlement = Some(Settlement {
                slot: checked.slot,
                fingerprint,
                windows: windows.clone(),
                request_windows: limits.windows.len(),
                reservation: checked.reservation,
                reserved: token_cost,
                reader: None,
            });
        }
        Action::Continue
    }

    fn on_store_fault(&mut self, config: &FilterConfig, fault: &StoreFault, now: u64) -> Action {
        if config.fault_tolerant {
            self.warnings.borrow_mut().warn(
                now,
                &format!("{fault}; the request passes unlimited because fault_tolerant is on"),
            );
            return Action::Continue;
        }
        if self.forwarded {
            log::error!(
                "{FILTER_NAME}: context {}: {fault}; the request was already forwarded, so it passes",
                self.context_id
            );
            return Action::Continue;
        }
        log::error!(
            "{FILTER_NAME}: context {}: {fault}; answering 500 because fault_tolerant is off",
            self.context_id
        );
        self.respond(500, INTERNAL_ERROR_MESSAGE, Vec::new())
    }

    fn respond(&mut self, status: u16, message: &str, extra: Vec<(String, String)>) -> Action {
        let body = headers::message_body(message);
        let mut pairs: Vec<(&str, &str)> =
            vec![("Content-Type", "application/json; charset=utf-8")];
        pairs.extend(
            extra
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        if let Err(status) = host::send_local_response(status, &pairs, &body) {
            log::error!(
                "{FILTER_NAME}: context {}: sending the local response failed with status {status}; the request continues",
                self.context_id
            );
            return Action::Continue;
        }
        self.stage = Stage::Responded;
        Action::Pause
    }

    fn request_has_body() -> bool {
        if request_header("transfer-encoding").is_some() {
            return true;
        }
        request_header("content-length")
            .and_then(|v| body::number_in_header(&v))
            .is_some_and(|length| length > 0)
    }

    fn settle(&mut self, usage: Option<u64>) {
        let Some(settlement) = self.settlement.take() else {
            return;
        };
        let Some(actual) = usage else {
            log::debug!(
                "{FILTER_NAME}: context {}: the response reported no usage; the reservation of {} token(s) stands",
                self.context_id,
                settlement.reserved
            );
            return;
        };
        let delta = i64::try_from(actual)
            .unwrap_or(i64::MAX)
            .saturating_sub(i64::try_from(settlement.reserved).unwrap_or(i64::MAX));
        let deltas: Vec<i64> = (0..settlement.windows.len())
            .map(|i| {
                if i < settlement.request_windows {
                    0
                } else {
                    delta
                }
            })
            .collect();
        let now = now_ms();
        let result = store::settle(
            &mut SharedData,
            &settlement.slot,
            settlement.fingerprint,
            &settlement.windows,
            &settlement.reservation,
            now,
            &deltas,
        );
        match result {
            Ok(()) => log::debug!(
                "{FILTER_NAME}: context {}: settled {actual} token(s) against {} reserved",
                self.context_id,
                settlement.reserved
            ),
            Err(fault) => self.warnings.borrow_mut().warn(
                now,
                &format!("settling token usage failed: {fault}; the reservation stands"),
            ),
        }
    }
}

impl HttpContext for RateLimitRequest {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        if self.stage != Stage::Start {
            return Action::Continue;
        }
        self.client = Some(self.identify(&config));
        // Kong's engine passes end_of_stream = false here even without a
        // body, so the request headers tell whether one follows.
        if config.needs_body() && Self::request_has_body() {
            self.stage = Stage::AwaitingBody;
            return Action::Continue;
        }
        self.decide(&config, None)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        if self.stage != Stage::AwaitingBody {
            return Action::Continue;
        }
        let limit = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
        if !end_of_stream && body_size <= limit {
            // Buffer until the whole body, or more than the limit, is here.
            return Action::Pause;
        }
        let body = if body_size > limit {
            log::debug!(
                "{FILTER_NAME}: context {}: body of {body_size} bytes exceeds max_body_bytes ({limit}); using the default cost",
                self.context_id
            );
            None
        } else {
            hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
                .ok()
                .flatten()
        };
        self.decide(&config, body.as_deref())
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        match self.stage {
            // The filter's own response already carries its headers.
            Stage::Responded => return Action::Continue,
            // The host sent the request on without delivering its body:
            // count it now, too late to refuse it.
            Stage::AwaitingBody | Stage::Start => {
                if self.client.is_none() {
                    self.client = Some(self.identify(&config));
                }
                self.forwarded = true;
                self.decide(&config, None);
            }
            Stage::Decided => {}
        }
        for (name, value) in &self.response_headers {
            if let Err(status) =
                hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value))
            {
                log::debug!(
                    "{FILTER_NAME}: context {}: setting {name} failed: {status:?}",
                    self.context_id
                );
            }
        }
        if let Some(settlement) = &mut self.settlement {
            let content_type =
                hostcalls::get_map_value_bytes(MapType::HttpResponseHeaders, "content-type")
                    .ok()
                    .flatten()
                    .unwrap_or_default();
            let streaming = content_type
                .windows(17)
                .any(|w| w.eq_ignore_ascii_case(b"text/event-stream"));
            settlement.reader = Some(if streaming {
                UsageReader::Stream(EventStreamUsage::default())
            } else {
                UsageReader::Json(Vec::new())
            });
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return Action::Continue;
        };
        let Some(pointer) = config
            .tokens
            .as_ref()
            .and_then(|t| t.usage_pointer.as_deref())
        else {
            return Action::Continue;
        };
        let Some(settlement) = &mut self.settlement else {
            return Action::Continue;
        };
        let limit = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
        let chunk = if body_size == 0 {
            Vec::new()
        } else {
            hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default()
        };
        let mut usage = None;
        match &mut settlement.reader {
            Some(UsageReader::Stream(reader)) => {
                reader.feed(&chunk, pointer);
                if end_of_stream {
                    reader.finish(pointer);
                    usage = reader.usage;
                }
            }
            Some(UsageReader::Json(buffer)) => {
                if buffer.len() + chunk.len() > limit {
                    settlement.reader = Some(UsageReader::Overflowed);
                } else {
                    buffer.extend_from_slice(&chunk);
                    if end_of_stream {
                        usage = body::number_at(buffer, pointer);
                    }
                }
            }
            Some(UsageReader::Overflowed) | None => {}
        }
        if end_of_stream {
            self.settle(usage);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if self.settlement.is_some() {
            // The response ended without a readable usage figure.
            self.settle(None);
        }
    }
}
