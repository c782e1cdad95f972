//! Fixtures for the gateway tests: an echoing upstream on 127.0.0.1, a
//! scratch folder, and the probe filter from `tests/guests/probe.wat`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub const PROBE_WAT: &str = include_str!("../guests/probe.wat");

/// Compiles the probe filter to binary WebAssembly.
pub fn probe_wasm() -> Vec<u8> {
    wat::parse_str(PROBE_WAT).unwrap()
}

/// A folder under the system temp folder, removed on drop.
pub struct ScratchDir {
    pub path: PathBuf,
}

impl ScratchDir {
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "local-gateway-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self { path }
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Writes the probe filter as `<name>.wasm`.
    pub fn probe_filter(&self, name: &str) -> PathBuf {
        self.write(&format!("{name}.wasm"), probe_wasm())
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Returns a port on 127.0.0.1 that nothing listens on, as far as a test
/// can tell.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// An HTTP server on 127.0.0.1 that responds to every request with a JSON
/// echo of it: `{"method", "path", "headers": [[name, value]...], "body"}`.
///
/// `GET /sse` returns a server-sent event stream of three events instead,
/// written with pauses so they arrive in separate reads.
pub struct EchoUpstream {
    pub address: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EchoUpstream {
    pub fn start() -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let address = server.server_addr().to_ip().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let hits = Arc::clone(&hits);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok(Some(request)) = server.recv_timeout(Duration::from_millis(50)) else {
                        continue;
                    };
                    hits.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || answer(request));
                }
            })
        };
        Self {
            address,
            hits,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes three events with pauses between them.
struct EventStream {
    events: Vec<&'static [u8]>,
    started: bool,
}

impl Read for EventStream {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        if self.events.is_empty() {
            return Ok(0);
        }
        if self.started {
            std::thread::sleep(Duration::from_millis(30));
        }
        self.started = true;
        let event = self.events.remove(0);
        buffer[..event.len()].copy_from_slice(event);
        Ok(event.len())
    }
}

fn answer(mut request: tiny_http::Request) {
    if request.url() == "/sse" {
        let header =
            tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"text/event-stream"[..]).unwrap();
        let stream = EventStream {
            events: vec![b"data: one\n\n", b"data: two\n\n", b"data: [DONE]\n\n"],
            started: false,
        };
        let response =
            tiny_http::Response::new(tiny_http::StatusCode(200), vec![header], stream, None, None);
        let _ = request.respond(response);
        return;
    }
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|header| {
            (
                header.field.as_str().as_str().to_owned(),
                header.value.as_str().to_owned(),
            )
        })
        .collect();
    let echo = serde_json::json!({
        "method": request.method().as_str(),
        "path": request.url(),
        "headers": headers,
        "body": body,
    });
    let header =
        tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]).unwrap();
    let response = tiny_http::Response::from_string(echo.to_string()).with_header(header);
    let _ = request.respond(response);
}

/// The echo of one request, parsed.
pub struct Echo(pub serde_json::Value);

impl Echo {
    pub fn path(&self) -> &str {
        self.0["path"].as_str().unwrap()
    }

    pub fn method(&self) -> &str {
        self.0["method"].as_str().unwrap()
    }

    pub fn body(&self) -> &str {
        self.0["body"].as_str().unwrap()
    }

    /// Returns every value of header `name`, ignoring case, in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.0["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pair| pair[0].as_str().unwrap().eq_ignore_ascii_case(name))
            .map(|pair| pair[1].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }
}

/// A client response: status, headers and body.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Parses the upstream's echo in the body, after the `|` marks that each probe
    /// filter puts before each chunk.
    pub fn echo(&self) -> Echo {
        let body = self.body.trim_start_matches('|');
        Echo(
            serde_json::from_str(body)
                .unwrap_or_else(|error| panic!("the body is not an echo ({error}): {}", self.body)),
        )
    }
}

/// Sends one request with ureq and returns the response, whatever its
/// status.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(20))
        .redirects(0)
        .build();
    let mut request = agent.request(method, url);
    for (name, value) in headers {
        request = request.set(name, value);
    }

    let result = match body {
        Some(body) => request.send_string(body),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {url} failed: {error}"),
    };

    let status = response.status();
    let mut names = response.headers_names();
    // ureq lists a name once per value.
    names.sort();
    names.dedup();
    let headers = names
        .into_iter()
        .flat_map(|name| {
            response
                .all(&name)
                .into_iter()
                .map(|value| (name.clone(), value.to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    let body = response.into_string().unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

pub fn get(url: &str) -> Answer {
    send("GET", url, &[], None)
}

/// Returns the path of the compiled rate-limit filter, when `./build.sh` has
/// run.
pub fn built_filter() -> Option<PathBuf> {
    let path = local_gateway::filter_wasm_path();
    path.exists().then_some(path)
}

/// Copies `source` into `dir` under its own file name.
pub fn copy_into(dir: &Path, source: &Path) {
    let name = source.file_name().unwrap();
    std::fs::copy(source, dir.join(name)).unwrap();
}
