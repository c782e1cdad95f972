//! Sends an admitted request to its upstream with ureq.

use std::io::Read;
use std::time::Duration;

use crate::config::Service;
use crate::guest::{UpstreamRequest, UpstreamResponse};

/// The largest upstream response body the gateway reads, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Headers that describe one connection, not the message, which a proxy
/// does not forward; `content-length` and `host` are set again for the next
/// hop.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
    "host",
];

/// Returns whether a proxy drops `name` between hops.
pub fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|hop| hop.eq_ignore_ascii_case(name))
}

/// The destination of one service's requests, and the HTTP client with its
/// timeouts.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// `http://host:port`, without a path.
    pub origin: String,
    agent: ureq::Agent,
}

/// A failure to get a response from the upstream.
#[derive(Debug)]
pub struct UpstreamFailure {
    /// The status Kong responds with: 502, or 504 for a timeout.
    pub status: u16,
    /// The description of the failure, for the log.
    pub reason: String,
}

impl UpstreamFailure {
    /// Returns the JSON body Kong sends for this failure.
    pub fn body(&self) -> &'static str {
        match self.status {
            504 => r#"{"message":"The upstream server is timing out"}"#,
            _ => r#"{"message":"An invalid response was received from the upstream server"}"#,
        }
    }
}

impl Upstream {
    /// Creates the upstream of `service`, at `host` and `port` when given (a
    /// `--upstream` override), else at the service's own.
    pub fn new(service: &Service, address: Option<(&str, u16)>) -> Self {
        let (host, port) = address.unwrap_or((&service.host, service.port));
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_millis(service.connect_timeout_ms))
            .timeout_read(Duration::from_millis(service.read_timeout_ms))
            .timeout_write(Duration::from_millis(service.write_timeout_ms))
            .redirects(0)
            .build();
        Self {
            origin: format!("http://{host}:{port}"),
            agent,
        }
    }

    /// Sends `request` to `path` on this upstream, and reads the whole
    /// response.
    ///
    /// Header values that are not UTF-8 cannot be sent with ureq and are
    /// left out; their names are returned in `skipped_headers`.
    ///
    /// # Errors
    ///
    /// Returns an [`UpstreamFailure`] when no response arrives or its body
    /// is larger than [`MAX_RESPONSE_BYTES`].
    pub fn send(
        &self,
        path: &str,
        request: &UpstreamRequest,
        extra_headers: &[(String, String)],
        skipped_headers: &mut Vec<String>,
    ) -> Result<UpstreamResponse, UpstreamFailure> {
        let url = format!("{}{path}", self.origin);
        let mut outgoing = self.agent.request(&request.method, &url);
        let mut merged: Vec<(String, String)> = Vec::new();
        for (name, value) in &request.headers {
            if is_hop_by_hop(name) {
                continue;
            }
            let Ok(value) = std::str::from_utf8(value) else {
                skipped_headers.push(name.clone());
                continue;
            };
            // ureq sends every value of an `x-` header but keeps one value of
            // any other name, so repeated values of other headers are joined
            // as HTTP allows for list-valued fields.
            let repeatable = name.len() > 2 && name[..2].eq_ignore_ascii_case("x-");
            let existing = merged
                .iter_mut()
                .find(|(existing, _)| existing.eq_ignore_ascii_case(name));
            match existing {
                Some((_, joined)) if !repeatable => {
                    joined.push_str(", ");
                    joined.push_str(value);
                }
                _ => merged.push((name.clone(), value.to_owned())),
            }
        }
        merged.retain(|(name, _)| {
            !extra_headers
                .iter()
                .any(|(extra, _)| extra.eq_ignore_ascii_case(name))
        });
        for (name, value) in merged.iter().chain(extra_headers) {
            outgoing = outgoing.set(name, value);
        }

        let sent = if request.body.is_empty() {
            outgoing.call()
        } else {
            outgoing.send_bytes(&request.body)
        };
        let response = match sent {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(ureq::Error::Transport(transport)) => return Err(failure(&url, &transport)),
        };
        read_response(&url, response)
    }
}

fn failure(url: &str, transport: &ureq::Transport) -> UpstreamFailure {
    let timed_out = std::error::Error::source(transport)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            )
        });
    UpstreamFailure {
        status: if timed_out { 504 } else { 502 },
        reason: format!("{url}: {transport}"),
    }
}

fn read_response(url: &str, response: ureq::Response) -> Result<UpstreamResponse, UpstreamFailure> {
    let mut answer = UpstreamResponse::new(response.status());
    // ureq lists a name once per value, in lower case, and `all` returns
    // every value of a name, so each name is visited once.
    let mut seen: Vec<String> = Vec::new();
    for name in response.headers_names() {
        if is_hop_by_hop(&name) || seen.contains(&name) {
            continue;
        }
        seen.push(name.clone());
        for value in response.all(&name) {
            answer = answer.header(&name, value.as_bytes());
        }
    }

    // Each read becomes one chunk, so a server-sent event stream reaches the
    // filter in pieces close to the upstream's writes.
    let mut reader = response.into_reader();
    let mut chunks = Vec::new();
    let mut total = 0;
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let read = reader.read(&mut buffer).map_err(|source| UpstreamFailure {
            status: 502,
            reason: format!("{url}: failed to read the response body: {source}"),
        })?;
        if read == 0 {
            break;
        }
        total += read;
        if total > MAX_RESPONSE_BYTES {
            return Err(UpstreamFailure {
                status: 502,
                reason: format!("{url}: response body larger than {MAX_RESPONSE_BYTES} bytes"),
            });
        }
        chunks.push(buffer[..read].to_vec());
    }
    Ok(answer.body_chunks(chunks))
}
