//! HTTP load against a server on this machine: `wrk` when it is installed,
//! else a small keep-alive load generator. Both stop after a fixed time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

/// How long one request may take before the generator gives up on it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Maximum requests that one connection of the built-in generator sends in
/// a run, a bound in addition to the run's duration.
const MAX_REQUESTS_PER_CONNECTION: u64 = 5_000_000;

/// Totals of one load run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadResult {
    /// Completed requests.
    pub requests: u64,
    /// Completed requests whose status was not 2xx or 3xx.
    pub non_success: u64,
    /// Connection errors, failed reads and writes and timeouts.
    pub errors: u64,
    /// Requests per second as the tool computed it.
    pub requests_per_second: f64,
}

/// A load generator.
#[derive(Debug, Clone)]
pub enum Generator {
    /// `wrk`, with the version line it printed.
    Wrk(String),
    /// The generator in this file.
    BuiltIn,
}

impl Generator {
    /// Picks `wrk` when `wrk --version` runs, else the built-in generator.
    pub fn detect() -> Self {
        // wrk prints its version and usage and exits with status 1.
        match Command::new("wrk").arg("--version").output() {
            Ok(output) => {
                let text = String::from_utf8_lossy(&output.stdout).into_owned()
                    + &String::from_utf8_lossy(&output.stderr);
                // "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
                let version: Vec<&str> = text.split_whitespace().take(2).collect();
                Generator::Wrk(version.join(" "))
            }
            Err(_) => Generator::BuiltIn,
        }
    }

    /// Describes the generator for the report.
    pub fn describe(&self) -> String {
        match self {
            Generator::Wrk(version) => format!("`{version}`"),
            Generator::BuiltIn => {
                "the runner's built-in keep-alive generator (wrk was not found)".to_owned()
            }
        }
    }

    /// Sends GET `path` to `address` over `connections` keep-alive
    /// connections for `duration`.
    pub fn run(
        &self,
        address: SocketAddr,
        path: &str,
        connections: usize,
        duration: Duration,
    ) -> Result<LoadResult> {
        match self {
            Generator::Wrk(_) => run_wrk(address, path, connections, duration),
            Generator::BuiltIn => run_built_in(address, path, connections, duration),
        }
    }
}

fn run_wrk(
    address: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> Result<LoadResult> {
    let url = format!("http://{address}{path}");
    let output = Command::new("wrk")
        .args(["-t1", "-c", &connections.to_string()])
        .args(["-d", &format!("{}s", duration.as_secs().max(1))])
        .args(["--timeout", &format!("{}s", REQUEST_TIMEOUT.as_secs())])
        .arg(&url)
        .output()
        .context(|| format!("running wrk against {url}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(Error::new(format!(
            "wrk against {url} exited with {}: {}{}",
            output.status,
            text,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    parse_wrk(&text).ok_or_else(|| Error::new(format!("unexpected wrk output: {text}")))
}

/// Reads the totals from wrk 4's report.
fn parse_wrk(text: &str) -> Option<LoadResult> {
    let mut requests = None;
    let mut requests_per_second = None;
    let mut non_success = 0;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some((count, _)) = line.split_once(" requests in ") {
            requests = count.trim().parse::<u64>().ok();
        } else if let Some(rate) = line.strip_prefix("Requests/sec:") {
            requests_per_second = rate.trim().parse::<f64>().ok();
        } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_success = count.trim().parse::<u64>().ok()?;
        } else if let Some(kinds) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for kind in kinds.split(',') {
                let count = kind.split_whitespace().nth(1)?;
                errors += count.parse::<u64>().ok()?;
            }
        }
    }
    Some(LoadResult {
        requests: requests?,
        non_success,
        errors,
        requests_per_second: requests_per_second?,
    })
}

/// The status of one response and whether the server closes the connection
/// after it.
struct Response {
    status: u16,
    close: bool,
}

fn read_response(reader: &mut BufReader<TcpStream>) -> Result<Response> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .context(|| "reading the status line".to_owned())?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| Error::new(format!("invalid status line {line:?}")))?;
    let mut length: Option<usize> = None;
    let mut close = false;
    loop {
        line.clear();
        reader
            .read_line(&mut line)
            .context(|| "reading a header line".to_owned())?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().ok();
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(Error::new("chunked responses are not supported"));
            }
        }
    }
    let length = length.ok_or_else(|| Error::new("response without content-length"))?;
    let mut body = vec![0; length];
    reader
        .read_exact(&mut body)
        .context(|| "reading the body".to_owned())?;
    Ok(Response { status, close })
}

fn connect(address: SocketAddr) -> Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(&address, REQUEST_TIMEOUT)
        .context(|| format!("connecting to {address}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .context(|| "setting the read timeout".to_owned())?;
    stream
        .set_write_timeout(Some(REQUEST_TIMEOUT))
        .context(|| "setting the write timeout".to_owned())?;
    // Requests are small and sent one at a time.
    stream
        .set_nodelay(true)
        .context(|| "setting TCP_NODELAY".to_owned())?;
    Ok(BufReader::new(stream))
}

/// Sends one GET and returns its status.
pub fn get_status(address: SocketAddr, path: &str) -> Result<u16> {
    let mut reader = connect(address)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .context(|| format!("sending GET {path} to {address}"))?;
    Ok(read_response(&mut reader)?.status)
}

/// Runs one connection until `deadline`: returns (requests, non-success,
/// errors).
fn run_connection(address: SocketAddr, request: &[u8], deadline: Instant) -> (u64, u64, u64) {
    let (mut requests, mut non_success, mut errors) = (0, 0, 0);
    let mut connection: Option<BufReader<TcpStream>> = None;
    while Instant::now() < deadline && requests < MAX_REQUESTS_PER_CONNECTION {
        let reader = match connection.as_mut() {
            Some(reader) => reader,
            None => match connect(address) {
                Ok(reader) => connection.insert(reader),
                Err(_) => {
                    errors += 1;
                    // Back off a little so a refused port does not spin.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        if reader.get_mut().write_all(request).is_err() {
            errors += 1;
            connection = None;
            continue;
        }
        match read_response(reader) {
            Ok(response) => {
                requests += 1;
                if !(200..400).contains(&response.status) {
                    non_success += 1;
                }
                if response.close {
                    connection = None;
                }
            }
            Err(_) => {
                errors += 1;
                connection = None;
            }
        }
    }
    (requests, non_success, errors)
}

fn run_built_in(
    address: SocketAddr,
    path: &str,
    connections: usize,
    duration: Duration,
) -> Result<LoadResult> {
    let request: Arc<[u8]> =
        Arc::from(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").into_bytes());
    let started = Instant::now();
    let deadline = started + duration;
    let handles: Vec<_> = (0..connections)
        .map(|_| {
            let request = Arc::clone(&request);
            std::thread::spawn(move || run_connection(address, &request, deadline))
        })
        .collect();
    let mut result = LoadResult {
        requests: 0,
        non_success: 0,
        errors: 0,
        requests_per_second: 0.0,
    };
    for handle in handles {
        let (requests, non_success, errors) = handle
            .join()
            .map_err(|_| Error::new("a load generator thread panicked"))?;
        result.requests += requests;
        result.non_success += non_success;
        result.errors += errors;
    }
    result.requests_per_second = result.requests as f64 / started.elapsed().as_secs_f64();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_wrk_report_with_errors() {
        let report = "Running 5s test @ http://127.0.0.1:8000/bench/health
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us   9.00ms   90.00%
    Req/Sec     6.50k   400.00     7.00k    80.00%
  32345 requests in 5.00s, 4.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 30000
Requests/sec:   6469.00
Transfer/sec:    800.00KB
";
        assert_eq!(
            parse_wrk(report),
            Some(LoadResult {
                requests: 32_345,
                non_success: 30_000,
                errors: 3,
                requests_per_second: 6_469.0,
            })
        );
    }

    #[test]
    fn parse_wrk_rejects_missing_totals() {
        assert_eq!(parse_wrk("unable to connect to 127.0.0.1:1"), None);
    }
}
