//! The request a test sends, the request and response at the upstream, and
//! the response the client receives.

/// Finds the first value of `name` in `headers`, ignoring ASCII case.
fn find<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_slice())
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A client request, built with the methods below.
///
/// # Examples
///
/// ```
/// use local_gateway::Request;
///
/// let request = Request::post("/v1/chat?stream=true")
///     .header("x-api-key", "alice")
///     .header("x-raw", b"\xff\xfe".to_vec())
///     .body_chunks(["first ", "second"])
///     .source_address("[2001:db8::1]:52000");
/// assert_eq!(request.body_bytes(), b"first second");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, such as `GET`.
    pub method: String,
    /// The path with its query string, such as `/a?b=c`.
    pub path: String,
    /// The `:authority` pseudo-header.
    ///
    /// Kong's engine serves the server name and port of the listener here,
    /// not the `Host` header; the default is `localhost:8000`.
    pub authority: String,
    /// The `:scheme` pseudo-header; the default is `http`.
    pub scheme: String,
    /// The headers in order; values may be any bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body as the chunks the filter receives, none for no body.
    pub body_chunks: Vec<Vec<u8>>,
    /// The client address, with or without a port: `10.0.0.1`,
    /// `10.0.0.1:5000` or `[2001:db8::1]:5000`.
    ///
    /// Kong serves `source.address` without the port and Envoy with it, so
    /// the worker removes or keeps the port for its [`HostFlavor`](crate::HostFlavor).
    pub source_address: String,
    /// Properties for this request, by dotted name, which take precedence
    /// over the worker's own.
    pub properties: Vec<(String, Vec<u8>)>,
}

impl Request {
    /// Creates a request with `method` and `path`, no headers and no body,
    /// from `127.0.0.1`.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            authority: "localhost:8000".to_owned(),
            scheme: "http".to_owned(),
            headers: Vec::new(),
            body_chunks: Vec::new(),
            source_address: "127.0.0.1".to_owned(),
            properties: Vec::new(),
        }
    }

    /// Creates a `GET` request for `path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// Creates a `POST` request for `path`.
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// Appends a header; a second call with the same name adds a second
    /// value.
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body, delivered to the filter in one chunk; an empty body
    /// means no body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        self.body_chunks = if body.is_empty() {
            Vec::new()
        } else {
            vec![body]
        };
        self
    }

    /// Sets the body as chunks, each delivered in its own `on_request_body`
    /// call; empty chunks are dropped.
    #[must_use]
    pub fn body_chunks<I, C>(mut self, chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        self.body_chunks = chunks
            .into_iter()
            .map(Into::into)
            .filter(|chunk| !chunk.is_empty())
            .collect();
        self
    }

    /// Sets the `:authority` pseudo-header.
    #[must_use]
    pub fn authority(mut self, authority: &str) -> Self {
        self.authority = authority.to_owned();
        self
    }

    /// Sets the `:scheme` pseudo-header.
    #[must_use]
    pub fn scheme(mut self, scheme: &str) -> Self {
        self.scheme = scheme.to_owned();
        self
    }

    /// Sets the client address, with or without a port.
    #[must_use]
    pub fn source_address(mut self, address: &str) -> Self {
        self.source_address = address.to_owned();
        self
    }

    /// Sets a property by its dotted name, such as `kong.route_id`.
    #[must_use]
    pub fn property(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.properties.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the `kong.route_id` and `kong.route_name` properties.
    #[must_use]
    pub fn route(self, id: &str, name: &str) -> Self {
        self.property("kong.route_id", id)
            .property("kong.route_name", name)
    }

    /// Sets the `kong.service_id` and `kong.service_name` properties.
    #[must_use]
    pub fn service(self, id: &str, name: &str) -> Self {
        self.property("kong.service_id", id)
            .property("kong.service_name", name)
    }

    /// Returns the whole body.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.body_chunks.concat()
    }
}

/// The request as the upstream receives it, after every filter ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequest {
    /// The method, from the `:method` pseudo-header.
    pub method: String,
    /// The path with its query string, from the `:path` pseudo-header.
    pub path: String,
    /// The `:authority` pseudo-header.
    pub authority: String,
    /// The `:scheme` pseudo-header.
    pub scheme: String,
    /// The headers without pseudo-headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body the filters let through.
    pub body: Vec<u8>,
}

impl UpstreamRequest {
    /// Returns the first value of header `name`, ignoring case, decoded as
    /// UTF-8 with replacement characters.
    pub fn header(&self, name: &str) -> Option<String> {
        find(&self.headers, name).map(lossy)
    }

    /// Returns the first value of header `name`, ignoring case.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        find(&self.headers, name)
    }

    /// Returns every value of header `name`, ignoring case, in order.
    pub fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
            .collect()
    }
}

/// The upstream's response, which a test's upstream closure returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamResponse {
    /// The status code.
    pub status: u16,
    /// The headers in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body as the chunks the filter receives, none for no body.
    pub body_chunks: Vec<Vec<u8>>,
}

impl UpstreamResponse {
    /// Creates a response with `status`, no headers and no body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body_chunks: Vec::new(),
        }
    }

    /// Creates a `200` response with no headers and no body.
    pub fn ok() -> Self {
        Self::new(200)
    }

    /// Appends a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body, delivered to the filter in one chunk.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        self.body_chunks = if body.is_empty() {
            Vec::new()
        } else {
            vec![body]
        };
        self
    }

    /// Sets the body as chunks, such as the events of a server-sent event
    /// stream, each delivered in its own `on_response_body` call; empty
    /// chunks are dropped.
    #[must_use]
    pub fn body_chunks<I, C>(mut self, chunks: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: Into<Vec<u8>>,
    {
        self.body_chunks = chunks
            .into_iter()
            .map(Into::into)
            .filter(|chunk| !chunk.is_empty())
            .collect();
        self
    }
}

/// The response the client received for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// The status code.
    pub status: u16,
    /// The response headers without pseudo-headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole response body.
    pub body: Vec<u8>,
    /// The body as the chunks the client received, after the filters.
    pub body_chunks: Vec<Vec<u8>>,
    /// Whether the upstream was called.
    pub reached_upstream: bool,
    /// The request as the upstream saw it, when it was called.
    pub upstream_request: Option<UpstreamRequest>,
    /// Whether a filter sent the response with `proxy_send_local_response`.
    pub local_response: bool,
    /// The status details the filter passed with its local response.
    pub status_details: Option<String>,
}

impl Exchange {
    /// Returns the first value of response header `name`, ignoring case,
    /// decoded as UTF-8 with replacement characters.
    pub fn header(&self, name: &str) -> Option<String> {
        find(&self.headers, name).map(lossy)
    }

    /// Returns the first value of response header `name`, ignoring case.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        find(&self.headers, name)
    }

    /// Returns every value of response header `name`, ignoring case, in order.
    pub fn header_values(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_slice())
            .collect()
    }

    /// Returns the body decoded as UTF-8 with replacement characters.
    pub fn body_text(&self) -> String {
        lossy(&self.body)
    }
}
