//! The filter's configuration: parsed once from JSON into validated types.
//!
//! Field names follow Kong's Lua `rate-limiting` plugin where they overlap.
//! Every error names the field, shows the rejected value and states what is
//! expected. `kong/sliding_window_rate_limit.meta.json` describes the same
//! rules as a JSON Schema; a test checks that both accept the same configs.

use hashbrown::HashMap;
use serde_json::{Map, Value};

use crate::limiter::Window;

/// Default response status of a limited request.
pub const DEFAULT_ERROR_CODE: u16 = 429;
/// Default message of a limited request, as in Kong's plugin.
pub const DEFAULT_ERROR_MESSAGE: &str = "API rate limit exceeded";
/// Default `shm_kv` zone holding the counters.
pub const DEFAULT_SHM_ZONE: &str = "rate_limits";
/// Default number of request-body bytes inspected for a cost or a model.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024;
/// Upper bound of `max_body_bytes`.
pub const MAX_BODY_BYTES_LIMIT: u64 = 1024 * 1024;
/// Maximum length of a custom window: 365 days.
pub const MAX_WINDOW_SECONDS: u64 = 365 * 24 * 3600;
/// Longest `error_message`, `namespace` and identifier-like strings.
pub const MAX_MESSAGE_LEN: usize = 1024;

const NAMED_WINDOWS: [(&str, &str, u64); 4] = [
    ("second", "Second", 1),
    ("minute", "Minute", 60),
    ("hour", "Hour", 3600),
    ("day", "Day", 86_400),
];

/// Fields of Kong's Lua plugin that this filter does not take, with the hint
/// shown when a config contains one.
const KONG_ONLY_FIELDS: [(&str, &str); 8] = [
    (
        "month",
        "months differ in length; use `windows` with a length in seconds",
    ),
    (
        "year",
        "years differ in length; use `windows` with a length in seconds",
    ),
    (
        "policy",
        "counters always live in the node's shared data, like Kong's `local` policy; remove it",
    ),
    (
        "sync_rate",
        "counters are updated on every request; remove it",
    ),
    (
        "redis",
        "counters live in shared data, not Redis; remove it",
    ),
    (
        "redis_host",
        "counters live in shared data, not Redis; remove it",
    ),
    (
        "redis_port",
        "counters live in shared data, not Redis; remove it",
    ),
    (
        "redis_password",
        "counters live in shared data, not Redis; remove it",
    ),
];

/// An invalid configuration: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the field, such as `tokens.minute`.
    pub field: String,
    /// The problem and the expected value.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "invalid config: {}", self.message)
        } else {
            write!(
                f,
                "invalid config: field `{}`: {}",
                self.field, self.message
            )
        }
    }
}

fn error(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Shows a rejected value in a message, cut so a large value stays readable.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        let cut: String = text.chars().take(57).collect();
        format!("{cut}...")
    } else {
        text
    }
}

/// The source of the identifier of the client a counter belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitBy {
    /// The client address from the `source.address` property.
    Ip,
    /// The value of a request header (lower-case name).
    Header(String),
    /// The request path, when it equals the configured path.
    Path(String),
    /// The Kong service (`kong.service_id`).
    Service,
    /// The Kong route (`kong.route_id`).
    Route,
    /// The consumer set by an auth plugin (`X-Consumer-ID`, then
    /// `X-Credential-Identifier`).
    Consumer,
    /// The credential set by an auth plugin (`X-Credential-Identifier`).
    Credential,
    /// One counter for every request.
    Global,
}

impl LimitBy {
    /// Returns the name used in config and keys.
    pub fn name(&self) -> &'static str {
        match self {
            LimitBy::Ip => "ip",
            LimitBy::Header(_) => "header",
            LimitBy::Path(_) => "path",
            LimitBy::Service => "service",
            LimitBy::Route => "route",
            LimitBy::Consumer => "consumer",
            LimitBy::Credential => "credential",
            LimitBy::Global => "global",
        }
    }
}

/// A window with the names of its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedWindow {
    /// Header suffix: `Second`, `Minute`, `Hour`, `Day`, or the length in
    /// seconds for a custom window.
    pub label: String,
    /// Length and limit.
    pub window: Window,
    /// `X-RateLimit-Limit-<label>`, with `Tokens-` before the label for a
    /// token window.
    pub limit_header: String,
    /// `X-RateLimit-Remaining-<label>`, likewise.
    pub remaining_header: String,
}

impl NamedWindow {
    /// Names a request window (`tokens` false) or a token window.
    pub fn new(label: &str, window: Window, tokens: bool) -> NamedWindow {
        let kind = if tokens { "Tokens-" } else { "" };
        NamedWindow {
            label: label.to_string(),
            window,
            limit_header: format!("X-RateLimit-Limit-{kind}{label}"),
            remaining_header: format!("X-RateLimit-Remaining-{kind}{label}"),
        }
    }
}

/// The source of a request's token cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CostSource {
    /// The same cost for every request.
    Fixed,
    /// A number in the JSON request body at a JSON pointer.
    Body(String),
    /// A number in a request header (lower-case name) set by a trusted plugin.
    Header(String),
}

/// Token budgets, counted separately from requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    /// Token windows, shortest first.
    pub windows: Vec<NamedWindow>,
    /// The source of the estimate.
    pub source: CostSource,
    /// Cost of a request whose estimate is absent or invalid, or of every
    /// request with the fixed source.
    pub default_cost: u64,
    /// Cap on an estimate taken from the client.
    pub max_cost: u64,
    /// JSON pointer to the real usage in the response, for settlement.
    pub usage_pointer: Option<String>,
}

/// The limits of one plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Request windows, shortest first.
    pub windows: Vec<NamedWindow>,
    /// Token windows, shortest first; empty without `tokens`.
    pub token_windows: Vec<NamedWindow>,
    /// Every window, request windows first, as the counter stores them.
    pub counter_windows: Vec<Window>,
    /// Hash of the plan name and the window lengths, part of every key, so
    /// a changed window set or another plan starts new counters.
    pub layout: u64,
}

impl Limits {
    /// Builds the limits of plan `plan` (empty for the top-level limits).
    pub fn new(plan: &str, windows: Vec<NamedWindow>, token_windows: Vec<NamedWindow>) -> Limits {
        let counter_windows: Vec<Window> = windows
            .iter()
            .chain(&token_windows)
            .map(|named| named.window)
            .collect();
        let mut layout = plan.as_bytes().to_vec();
        for window in &counter_windows {
            layout.extend_from_slice(&window.length_ms.to_le_bytes());
        }
        Limits {
            windows,
            token_windows,
            counter_windows,
            layout: crate::key::hash64(&layout),
        }
    }
}

/// Named plans and who is on them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plans {
    /// Header that contains the plan member value; `None` uses the identifier.
    pub header_name: Option<String>,
    /// Member value to plan name.
    pub members: HashMap<String, String>,
    /// Plan name to its limits.
    pub limits: HashMap<String, Limits>,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterConfig {
    /// Limits for clients on no plan.
    pub limits: Limits,
    /// Cost of one request in every request window.
    pub cost: u64,
    /// The source of the client identifier.
    pub limit_by: LimitBy,
    /// Prefix length that groups IPv6 clients (128 keeps each address apart).
    pub ipv6_prefix_length: u8,
    /// Whether the key also includes the request body's model.
    pub per_model: Option<String>,
    /// Status of a limited response.
    pub error_code: u16,
    /// Message of a limited response.
    pub error_message: String,
    /// Whether to leave out every rate-limit header.
    pub hide_client_headers: bool,
    /// Whether a store fault lets the request through instead of failing it.
    pub fault_tolerant: bool,
    /// Counter scope shared by filter instances; `None` scopes by route and
    /// service as Kong's plugin does.
    pub namespace: Option<String>,
    /// `shm_kv` zone holding the counters.
    pub shm_zone: String,
    /// Request-body bytes inspected for a cost or a model.
    pub max_body_bytes: u64,
    /// Token budgets.
    pub tokens: Option<TokenConfig>,
    /// Plans with their own limits.
    pub plans: Option<Plans>,
    /// Most detailed level the filter logs at; `debug` logs every decision.
    pub log_level: log::LevelFilter,
}

impl FilterConfig {
    /// Tells whether the decision needs the request body.
    pub fn needs_body(&self) -> bool {
        self.per_model.is_some()
            || matches!(
                self.tokens,
                Some(TokenConfig {
                    source: CostSource::Body(_),
                    ..
                })
            )
    }

    /// Returns a one-line summary for the start-up log.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .limits
            .windows
            .iter()
            .map(|w| format!("{}/{}s", w.window.limit, w.window.length_ms / 1000))
            .collect();
        for w in &self.limits.token_windows {
            parts.push(format!(
                "{} tokens/{}s",
                w.window.limit,
                w.window.length_ms / 1000
            ));
        }
        let plans = self.plans.as_ref().map_or(0, |plans| plans.limits.len());
        format!(
            "limits {} by {}{}, {} plan(s), zone {}, fault_tolerant {}",
            parts.join(", "),
            self.limit_by.name(),
            if self.per_model.is_some() {
                " and model"
            } else {
                ""
            },
            plans,
            self.shm_zone,
            self.fault_tolerant
        )
    }
}

/// Fields read from one JSON object, so leftovers can be reported as unknown.
struct Fields<'a> {
    object: &'a Map<String, Value>,
    path: String,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Value, path: &str) -> Result<Fields<'a>, ConfigError> {
        match value {
            Value::Object(object) => Ok(Fields {
                object,
                path: path.to_string(),
            }),
            other => Err(error(
                path,
                format!("expected a JSON object, got {}", shown(other)),
            )),
        }
    }

    fn name(&self, field: &str) -> String {
        if self.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.path)
        }
    }

    /// Returns a field's value; JSON `null` counts as absent, as Kong's
    /// Admin API writes unset fields as null.
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.object.get(field).filter(|value| !value.is_null())
    }

    fn reject_unknown(&self, known: &[&str]) -> Result<(), ConfigError> {
        for key in self.object.keys() {
            if known.contains(&key.as_str()) {
                continue;
            }
            if let Some((_, hint)) = KONG_ONLY_FIELDS.iter().find(|(name, _)| name == key) {
                return Err(error(&self.name(key), format!("not supported: {hint}")));
            }
            return Err(error(
                &self.name(key),
                format!("unknown field; expected one of: {}", known.join(", ")),
            ));
        }
        Ok(())
    }

    fn integer(&self, field: &str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let number = value.as_u64().filter(|n| (min..=max).contains(n));
        match number {
            Some(n) => Ok(Some(n)),
            None => {
                let expected = if max == u64::MAX {
                    format!("an integer of at least {min}")
                } else {
                    format!("an integer from {min} to {max}")
                };
                Err(error(
                    &self.name(field),
                    format!("expected {expected}, got {}", shown(value)),
                ))
            }
        }
    }

    fn boolean(&self, field: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(field) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(error(
                &self.name(field),
                format!("expected true or false, got {}", shown(other)),
            )),
        }
    }

    fn string(&self, field: &str, max_len: usize) -> Result<Option<&'a str>, ConfigError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max_len => Ok(Some(s)),
            Some(other) => Err(error(
                &self.name(field),
                format!(
                    "expected a non-empty string of at most {max_len} characters, got {}",
                    shown(other)
                ),
            )),
        }
    }

    /// Reads a string made only of the characters `allowed` accepts.
    fn token(
        &self,
        field: &str,
        max_len: usize,
        allowed: fn(char) -> bool,
        what: &str,
    ) -> Result<Option<&'a str>, ConfigError> {
        let Some(text) = self.string(field, max_len)? else {
            return Ok(None);
        };
        if text.chars().all(allowed) {
            Ok(Some(text))
        } else {
            Err(error(
                &self.name(field),
                format!("expected {what}, got {}", shown(&Value::from(text))),
            ))
        }
    }

    fn header_name(&self, field: &str) -> Result<Option<String>, ConfigError> {
        let name = self.token(
            field,
            256,
            is_header_char,
            "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)",
        )?;
        Ok(name.map(str::to_ascii_lowercase))
    }

    fn pointer(&self, field: &str) -> Result<Option<String>, ConfigError> {
        let Some(text) = self.string(field, 256)? else {
            return Ok(None);
        };
        if text.starts_with('/') {
            Ok(Some(text.to_string()))
        } else {
            Err(error(
                &self.name(field),
                format!(
                    "expected a JSON pointer starting with '/', such as \"/max_tokens\", got {}",
                    shown(&Value::from(text))
                ),
            ))
        }
    }
}

fn is_header_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-.".contains(c)
}

fn is_namespace_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_-.:".contains(c)
}

const WINDOW_FIELDS: [&str; 5] = ["second", "minute", "hour", "day", "windows"];

/// Reads `second`, `minute`, `hour`, `day` and `windows` from `fields`.
fn read_windows(
    fields: &Fields<'_>,
    required: bool,
    tokens: bool,
) -> Result<Vec<NamedWindow>, ConfigError> {
    let mut windows = Vec::new();
    for (field, label, seconds) in NAMED_WINDOWS {
        if let Some(limit) = fields.integer(field, 1, u64::MAX)? {
            let window = Window {
                length_ms: seconds * 1000,
                limit,
            };
            windows.push(NamedWindow::new(label, window, tokens));
        }
    }
    if let Some(value) = fields.get("windows") {
        let path = fields.name("windows");
        let Value::Array(items) = value else {
            return Err(error(
                &path,
                format!(
                    "expected an array of {{\"seconds\", \"limit\"}} objects, got {}",
                    shown(value)
                ),
            ));
        };
        if items.is_empty() || items.len() > 8 {
            return Err(error(
                &path,
                format!("expected 1 to 8 windows, got {}", items.len()),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            let item_fields = Fields::new(item, &format!("{path}[{i}]"))?;
            item_fields.reject_unknown(&["seconds", "limit"])?;
            let Some(seconds) = item_fields.integer("seconds", 1, MAX_WINDOW_SECONDS)? else {
                return Err(error(
                    &item_fields.name("seconds"),
                    "missing; give the window length in seconds",
                ));
            };
            let Some(limit) = item_fields.integer("limit", 1, u64::MAX)? else {
                return Err(error(
                    &item_fields.name("limit"),
                    "missing; give the most requests the window admits",
                ));
            };
            let window = Window {
                length_ms: seconds * 1000,
                limit,
            };
            windows.push(NamedWindow::new(&seconds.to_string(), window, tokens));
        }
    }
    if windows.is_empty() {
        if required {
            let at = if fields.path.is_empty() {
                String::new()
            } else {
                format!(" in `{}`", fields.path)
            };
            return Err(error(
                &fields.path,
                format!("no limit configured{at}; set at least one of second, minute, hour, day or windows"),
            ));
        }
        return Ok(windows);
    }
    windows.sort_by_key(|named| named.window.length_ms);
    for pair in windows.windows(2) {
        let (shorter, longer) = (&pair[0], &pair[1]);
        let field = if longer.label.starts_with(|c: char| c.is_ascii_digit()) {
            fields.name("windows")
        } else {
            fields.name(&longer.label.to_lowercase())
        };
        if shorter.window.length_ms == longer.window.length_ms {
            return Err(error(
                &field,
                format!(
                    "two windows of {} seconds; keep one",
                    longer.window.length_ms / 1000
                ),
            ));
        }
        if longer.window.limit < shorter.window.limit {
            return Err(error(
                &field,
                format!(
                    "the limit of the {}-second window ({}) is below the limit of the shorter {}-second window ({}); a longer window's limit must not be lower",
                    longer.window.length_ms / 1000,
                    longer.window.limit,
                    shorter.window.length_ms / 1000,
                    shorter.window.limit
                ),
            ));
        }
    }
    Ok(windows)
}

const TOKEN_FIELDS: [&str; 10] = [
    "second",
    "minute",
    "hour",
    "day",
    "windows",
    "source",
    "body_pointer",
    "header_name",
    "default_cost",
    "max_cost",
];

fn read_tokens(value: &Value) -> Result<TokenConfig, ConfigError> {
    let fields = Fields::new(value, "tokens")?;
    let mut known = TOKEN_FIELDS.to_vec();
    known.push("usage_pointer");
    fields.reject_unknown(&known)?;
    let windows = read_windows(&fields, true, true)?;
    let smallest = windows.iter().map(|w| w.window.limit).min().unwrap_or(1);
    // Both are checked whatever the source, as the schema does.
    let body_pointer = fields.pointer("body_pointer")?;
    let header_name = fields.header_name("header_name")?;
    let source =
        match fields.string("source", 16)? {
            None | Some("body") => {
                CostSource::Body(body_pointer.unwrap_or_else(|| "/max_tokens".to_string()))
            }
            Some("header") => match header_name {
                Some(name) => CostSource::Header(name),
                None => return Err(error(
                    "tokens.header_name",
                    "missing; `source: header` needs the header that carries the token estimate",
                )),
            },
            Some("fixed") => CostSource::Fixed,
            Some(other) => {
                return Err(error(
                    "tokens.source",
                    format!(
                        "expected \"body\", \"header\" or \"fixed\", got {}",
                        shown(&Value::from(other))
                    ),
                ))
            }
        };
    let default_cost = fields.integer("default_cost", 0, u64::MAX)?.unwrap_or(1);
    let max_cost = fields.integer("max_cost", 1, u64::MAX)?.unwrap_or(smallest);
    if max_cost > smallest {
        return Err(error(
            "tokens.max_cost",
            format!("{max_cost} exceeds the smallest token limit ({smallest}), so such a request could never be admitted; lower it"),
        ));
    }
    if default_cost > max_cost {
        return Err(error(
            "tokens.default_cost",
            format!("{default_cost} exceeds max_cost ({max_cost}); lower it"),
        ));
    }
    Ok(TokenConfig {
        windows,
        source,
        default_cost,
        max_cost,
        usage_pointer: fields.pointer("usage_pointer")?,
    })
}

fn read_plan_limits(
    plan: &str,
    value: &Value,
    path: &str,
    tokens: Option<&TokenConfig>,
) -> Result<Limits, ConfigError> {
    let fields = Fields::new(value, path)?;
    let mut known = WINDOW_FIELDS.to_vec();
    known.push("tokens");
    fields.reject_unknown(&known)?;
    let windows = read_windows(&fields, true, false)?;
    let token_windows = match (fields.get("tokens"), tokens) {
        (None, None) => Vec::new(),
        (Some(_), None) => {
            return Err(error(
                &fields.name("tokens"),
                "token limits need a top-level `tokens` block that says where the cost comes from",
            ))
        }
        (None, Some(tokens)) => tokens.windows.clone(),
        (Some(value), Some(tokens)) => {
            let token_fields = Fields::new(value, &fields.name("tokens"))?;
            token_fields.reject_unknown(&WINDOW_FIELDS)?;
            let windows = read_windows(&token_fields, true, true)?;
            let smallest = windows.iter().map(|w| w.window.limit).min().unwrap_or(1);
            if tokens.max_cost > smallest {
                return Err(error(
                    &fields.name("tokens"),
                    format!("the smallest token limit ({smallest}) is below tokens.max_cost ({}); raise it or lower max_cost", tokens.max_cost),
                ));
            }
            windows
        }
    };
    Ok(Limits::new(plan, windows, token_windows))
}

fn read_plans(
    value: &Value,
    limit_cost: u64,
    tokens: Option<&TokenConfig>,
) -> Result<Plans, ConfigError> {
    let fields = Fields::new(value, "plans")?;
    fields.reject_unknown(&["header_name", "members", "limits"])?;
    let header_name = fields.header_name("header_name")?;

    let Some(limits_value) = fields.get("limits") else {
        return Err(error(
            "plans.limits",
            "missing; give each plan's limits, such as {\"pro\": {\"minute\": 600}}",
        ));
    };
    let limit_fields = Fields::new(limits_value, "plans.limits")?;
    if limit_fields.object.is_empty() || limit_fields.object.len() > 32 {
        return Err(error(
            "plans.limits",
            format!("expected 1 to 32 plans, got {}", limit_fields.object.len()),
        ));
    }
    let mut limits = HashMap::new();
    for (name, plan) in limit_fields.object {
        let path = limit_fields.name(name);
        if name.is_empty() || name.len() > 64 || !name.chars().all(is_name_char) {
            return Err(error(
                &path,
                "a plan name has 1 to 64 letters, digits, '_', '-' or '.'",
            ));
        }
        let plan_limits = read_plan_limits(name, plan, &path, tokens)?;
        if let Some(window) = plan_limits
            .windows
            .iter()
            .find(|w| w.window.limit < limit_cost)
        {
            return Err(error(
                &path,
                format!("the {}-second limit ({}) is below `cost` ({limit_cost}), so no request could be admitted", window.window.length_ms / 1000, window.window.limit),
            ));
        }
        limits.insert(name.clone(), plan_limits);
    }

    let Some(members_value) = fields.get("members") else {
        return Err(error(
            "plans.members",
            "missing; map identifier values to plan names, such as {\"consumer-id\": \"pro\"}",
        ));
    };
    let member_fields = Fields::new(members_value, "plans.members")?;
    let mut members = HashMap::new();
    for (member, plan) in member_fields.object {
        let path = member_fields.name(member);
        match plan.as_str() {
            Some(plan) if limits.contains_key(plan) => {
                members.insert(member.clone(), plan.to_string());
            }
            _ => {
                let mut names: Vec<&str> = limits.keys().map(String::as_str).collect();
                names.sort_unstable();
                return Err(error(
                    &path,
                    format!(
                        "expected the name of a plan in plans.limits ({}), got {}",
                        names.join(", "),
                        shown(plan)
                    ),
                ));
            }
        }
    }
    Ok(Plans {
        header_name,
        members,
        limits,
    })
}

const TOP_FIELDS: [&str; 22] = [
    "second",
    "minute",
    "hour",
    "day",
    "windows",
    "cost",
    "limit_by",
    "header_name",
    "path",
    "ipv6_prefix_length",
    "per_model",
    "model_pointer",
    "error_code",
    "error_message",
    "hide_client_headers",
    "fault_tolerant",
    "namespace",
    "shm_zone",
    "max_body_bytes",
    "tokens",
    "plans",
    "log_level",
];

/// Parses and validates the filter's JSON configuration.
pub fn parse(bytes: &[u8]) -> Result<FilterConfig, ConfigError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        error(
            "",
            format!("not valid JSON ({e}); the config must be a JSON object"),
        )
    })?;
    let fields = Fields::new(&value, "")?;
    fields.reject_unknown(&TOP_FIELDS)?;

    let windows = read_windows(&fields, true, false)?;

    // Both are checked whatever `limit_by` is, as the schema does.
    let header_name = fields.header_name("header_name")?;
    let path = match fields.string("path", MAX_MESSAGE_LEN)? {
        Some(path) if path.starts_with('/') && !path.contains("//") => Some(path.to_string()),
        Some(path) => {
            return Err(error(
                "path",
                format!(
                    "expected a path starting with '/' and without empty segments, got {}",
                    shown(&Value::from(path))
                ),
            ))
        }
        None => None,
    };
    let limit_by = match fields.string("limit_by", 16)? {
        None | Some("ip") => LimitBy::Ip,
        Some("header") => match header_name {
            Some(name) => LimitBy::Header(name),
            None => return Err(error("header_name", "missing; `limit_by: header` needs the name of the header that identifies a client")),
        },
        Some("path") => match path {
            Some(path) => LimitBy::Path(path),
            None => return Err(error("path", "missing; `limit_by: path` needs the path to limit, such as \"/ml-model\"")),
        },
        Some("service") => LimitBy::Service,
        Some("route") => LimitBy::Route,
        Some("consumer") => LimitBy::Consumer,
        Some("credential") => LimitBy::Credential,
        Some("global") => LimitBy::Global,
        Some(other) => {
            return Err(error(
                "limit_by",
                format!(
                    "expected one of ip, header, path, service, route, consumer, credential, global, got {}",
                    shown(&Value::from(other))
                ),
            ))
        }
    };

    let cost = fields.integer("cost", 1, u64::MAX)?.unwrap_or(1);
    if let Some(window) = windows.iter().find(|w| w.window.limit < cost) {
        return Err(error(
            "cost",
            format!("{cost} exceeds the {}-second limit ({}), so no request could be admitted; lower it", window.window.length_ms / 1000, window.window.limit),
        ));
    }

    let per_model = if fields.boolean("per_model", false)? {
        Some(
            fields
                .pointer("model_pointer")?
                .unwrap_or_else(|| "/model".to_string()),
        )
    } else {
        fields.pointer("model_pointer")?;
        None
    };

    let error_code = fields
        .integer("error_code", 400, 599)?
        .map_or(DEFAULT_ERROR_CODE, |c| c as u16);
    let error_message = fields
        .string("error_message", MAX_MESSAGE_LEN)?
        .unwrap_or(DEFAULT_ERROR_MESSAGE)
        .to_string();
    let namespace = fields
        .token(
            "namespace",
            64,
            is_namespace_char,
            "1 to 64 letters, digits, '_', '-', '.' or ':'",
        )?
        .map(str::to_string);
    let shm_zone = fields
        .token(
            "shm_zone",
            64,
            is_name_char,
            "a zone name of letters, digits, '_', '-' or '.'",
        )?
        .unwrap_or(DEFAULT_SHM_ZONE)
        .to_string();

    let tokens = fields.get("tokens").map(read_tokens).transpose()?;
    let token_windows = tokens
        .as_ref()
        .map(|t| t.windows.clone())
        .unwrap_or_default();
    let plans = fields
        .get("plans")
        .map(|value| read_plans(value, cost, tokens.as_ref()))
        .transpose()?;

    let log_level = match fields.string("log_level", 8)? {
        None | Some("info") => log::LevelFilter::Info,
        Some("debug") => log::LevelFilter::Debug,
        Some("warn") => log::LevelFilter::Warn,
        Some("error") => log::LevelFilter::Error,
        Some(other) => {
            return Err(error(
                "log_level",
                format!(
                    "expected \"debug\", \"info\", \"warn\" or \"error\", got {}",
                    shown(&Value::from(other))
                ),
            ))
        }
    };

    Ok(FilterConfig {
        limits: Limits::new("", windows, token_windows),
        cost,
        limit_by,
        ipv6_prefix_length: fields
            .integer("ipv6_prefix_length", 1, 128)?
            .map_or(128, |n| n as u8),
        per_model,
        error_code,
        error_message,
        hide_client_headers: fields.boolean("hide_client_headers", false)?,
        fault_tolerant: fields.boolean("fault_tolerant", true)?,
        namespace,
        shm_zone,
        max_body_bytes: fields
            .integer("max_body_bytes", 1, MAX_BODY_BYTES_LIMIT)?
            .unwrap_or(DEFAULT_MAX_BODY_BYTES),
        tokens,
        plans,
        log_level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<FilterConfig, ConfigError> {
        parse(text.as_bytes())
    }

    fn rejected_field(text: &str) -> String {
        parse_str(text).unwrap_err().field
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = parse_str(r#"{"minute": 10}"#).unwrap();
        assert_eq!(config.limit_by, LimitBy::Ip);
        assert_eq!(config.error_code, 429);
        assert_eq!(config.error_message, "API rate limit exceeded");
        assert!(config.fault_tolerant);
        assert!(!config.hide_client_headers);
        assert_eq!(config.shm_zone, "rate_limits");
        assert_eq!(config.cost, 1);
        assert_eq!(config.limits.windows[0].label, "Minute");
        assert_eq!(
            config.limits.windows[0].window,
            Window {
                length_ms: 60_000,
                limit: 10
            }
        );
    }

    #[test]
    fn windows_are_sorted_shortest_first() {
        let config =
            parse_str(r#"{"hour": 100, "second": 1, "windows": [{"seconds": 10, "limit": 5}]}"#)
                .unwrap();
        let labels: Vec<&str> = config
            .limits
            .windows
            .iter()
            .map(|w| w.label.as_str())
            .collect();
        assert_eq!(labels, ["Second", "10", "Hour"]);
    }

    #[test]
    fn null_fields_count_as_absent() {
        let config = parse_str(r#"{"second": null, "minute": 5, "header_name": null}"#).unwrap();
        assert_eq!(config.limits.windows.len(), 1);
    }

    #[test]
    fn invalid_configs_name_their_field() {
        let cases = [
            (r#"{}"#, ""),
            (r#"{"minute": 0}"#, "minute"),
            (r#"{"minute": "10"}"#, "minute"),
            (r#"{"minute": 1.5}"#, "minute"),
            (r#"{"minute": -1}"#, "minute"),
            (r#"{"minute": 10, "second": 20}"#, "minute"),
            (
                r#"{"minute": 10, "windows": [{"seconds": 60, "limit": 10}]}"#,
                "windows",
            ),
            (r#"{"minute": 10, "limit_by": "cookie"}"#, "limit_by"),
            (r#"{"minute": 10, "limit_by": "header"}"#, "header_name"),
            (
                r#"{"minute": 10, "limit_by": "header", "header_name": "bad name"}"#,
                "header_name",
            ),
            (r#"{"minute": 10, "limit_by": "path"}"#, "path"),
            (
                r#"{"minute": 10, "limit_by": "path", "path": "no-slash"}"#,
                "path",
            ),
            (r#"{"minute": 10, "error_code": 200}"#, "error_code"),
            (r#"{"minute": 10, "error_message": ""}"#, "error_message"),
            (
                r#"{"minute": 10, "fault_tolerant": "yes"}"#,
                "fault_tolerant",
            ),
            (r#"{"minute": 10, "namespace": "a b"}"#, "namespace"),
            (r#"{"minute": 10, "shm_zone": "a/b"}"#, "shm_zone"),
            (r#"{"minute": 10, "colour": "red"}"#, "colour"),
            (r#"{"minute": 10, "policy": "redis"}"#, "policy"),
            (r#"{"minute": 10, "month": 100}"#, "month"),
            (r#"{"minute": 10, "cost": 11}"#, "cost"),
            (
                r#"{"minute": 10, "ipv6_prefix_length": 0}"#,
                "ipv6_prefix_length",
            ),
            (r#"{"minute": 10, "windows": []}"#, "windows"),
            (
                r#"{"minute": 10, "windows": [{"seconds": 5}]}"#,
                "windows[0].limit",
            ),
            (
                r#"{"minute": 10, "windows": [{"seconds": 5, "limit": 1, "x": 1}]}"#,
                "windows[0].x",
            ),
            (r#"{"minute": 10, "tokens": {}}"#, "tokens"),
            (
                r#"{"minute": 10, "tokens": {"minute": 100, "max_cost": 101}}"#,
                "tokens.max_cost",
            ),
            (
                r#"{"minute": 10, "tokens": {"minute": 100, "source": "query"}}"#,
                "tokens.source",
            ),
            (
                r#"{"minute": 10, "tokens": {"minute": 100, "source": "header"}}"#,
                "tokens.header_name",
            ),
            (
                r#"{"minute": 10, "tokens": {"minute": 100, "body_pointer": "max_tokens"}}"#,
                "tokens.body_pointer",
            ),
            (
                r#"{"minute": 10, "plans": {"limits": {"pro": {"minute": 100}}, "members": {"a": "gold"}}}"#,
                "plans.members.a",
            ),
            (
                r#"{"minute": 10, "plans": {"members": {}}}"#,
                "plans.limits",
            ),
            (
                r#"{"minute": 10, "plans": {"limits": {"pro": {"tokens": {"minute": 5}, "minute": 5}}, "members": {}}}"#,
                "plans.limits.pro.tokens",
            ),
            (r#"{"minute": 10, "log_level": "trace"}"#, "log_level"),
            (r#"[1]"#, ""),
            (r#"not json"#, ""),
        ];
        for (text, field) in cases {
            assert_eq!(rejected_field(text), field, "config {text}");
        }
    }

    #[test]
    fn error_message_shows_value_and_fix() {
        let message = parse_str(r#"{"minute": "10"}"#).unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid config: field `minute`: expected an integer of at least 1, got \"10\""
        );
        let message = parse_str(r#"{"minute": 10, "policy": "redis"}"#)
            .unwrap_err()
            .to_string();
        assert!(message.contains("Kong's `local` policy"), "{message}");
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "x".repeat(5000);
        let message = parse_str(&format!(r#"{{"minute": "{long}"}}"#))
            .unwrap_err()
            .to_string();
        assert!(message.len() < 200, "{message}");
    }

    #[test]
    fn header_name_is_lower_cased() {
        let config =
            parse_str(r#"{"minute": 10, "limit_by": "header", "header_name": "X-API-Key"}"#)
                .unwrap();
        assert_eq!(config.limit_by, LimitBy::Header("x-api-key".to_string()));
    }

    #[test]
    fn tokens_and_plans_parse() {
        let config = parse_str(
            r#"{"second": 10, "tokens": {"minute": 20000, "max_cost": 4096, "usage_pointer": "/usage/total_tokens"},
                "plans": {"header_name": "X-Consumer-Username", "members": {"alice": "pro"},
                          "limits": {"pro": {"second": 100, "tokens": {"minute": 200000}}}}}"#,
        )
        .unwrap();
        let tokens = config.tokens.as_ref().unwrap();
        assert_eq!(tokens.source, CostSource::Body("/max_tokens".to_string()));
        assert_eq!(tokens.max_cost, 4096);
        assert_eq!(tokens.default_cost, 1);
        assert!(config.needs_body());
        let plans = config.plans.as_ref().unwrap();
        assert_eq!(plans.header_name.as_deref(), Some("x-consumer-username"));
        assert_eq!(plans.limits["pro"].token_windows[0].window.limit, 200_000);
        assert_eq!(config.limits.counter_windows.len(), 2);
    }
}
