//! `model-server --health-check`: a client for `GET /health`, for container
//! health checks in images that have no curl or wget.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

/// Requests `GET /health` from a server listening on `listen_address` and
/// succeeds on status 200.
///
/// A server listening on every address (0.0.0.0 or ::) is reached through
/// the loopback address.
pub fn check(listen_address: SocketAddr) -> Result<(), String> {
    let address = connect_address(listen_address);
    let mut stream = TcpStream::connect_timeout(&address, TIMEOUT)
        .map_err(|e| format!("failed to connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("failed to set socket timeouts: {e}"))?;

    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("failed to send the request to {address}: {e}"))?;

    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("failed to read the response from {address}: {e}"))?;
    let response = String::from_utf8_lossy(&response);
    let status_line = response.lines().next().unwrap_or("");
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => Err(format!(
            "GET http://{address}/health returned {status_line:?}, expected status 200"
        )),
    }
}

fn connect_address(listen_address: SocketAddr) -> SocketAddr {
    let ip = match listen_address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen_address.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_address_becomes_loopback() {
        let address = connect_address("0.0.0.0:8080".parse().unwrap());
        assert_eq!(address, "127.0.0.1:8080".parse().unwrap());
        let address = connect_address("[::]:8080".parse().unwrap());
        assert_eq!(address, "[::1]:8080".parse().unwrap());
        let address = connect_address("127.0.0.2:9".parse().unwrap());
        assert_eq!(address, "127.0.0.2:9".parse().unwrap());
    }

    #[test]
    fn closed_port_fails() {
        // Bind to a free port, then close it so nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = check(SocketAddr::from(([127, 0, 0, 1], port))).unwrap_err();
        assert!(error.contains("failed to connect"), "{error}");
    }
}
