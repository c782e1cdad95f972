//! The stream state one guest reads and writes for one request: header maps,
//! body buffers, properties and the local response.

use std::borrow::Cow;
use std::ops::ControlFlow;

use proxy_wasm_host::abi::v0_2_1::types::{BufferType, MapType, Status, StreamType};
use proxy_wasm_host::abi::v0_2_1::{Access, Invocation, LocalResponse, StreamState};
use proxy_wasm_host::{Buffer, HeaderMap, NotAllowed, PairVisitor};

use super::http::Request;
use super::HostFlavor;

/// An ordered header list whose names compare without ASCII case, as nginx
/// and Envoy compare them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HeaderList {
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl HeaderList {
    /// Builds the request headers a guest reads: the pseudo-headers first, in
    /// the order of the flavor, then the request's own headers.
    ///
    /// Kong's engine serves `:path`, `:method`, `:scheme` and `:authority`
    /// before the other headers; Envoy starts with `:authority`.
    pub(crate) fn for_request(request: &Request, flavor: HostFlavor) -> Self {
        let path = ("path", request.path.as_str());
        let method = ("method", request.method.as_str());
        let scheme = ("scheme", request.scheme.as_str());
        let authority = ("authority", request.authority.as_str());
        let pseudo = match flavor {
            HostFlavor::Kong => [path, method, scheme, authority],
            HostFlavor::Envoy => [authority, path, method, scheme],
        };
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = pseudo
            .iter()
            .map(|(name, value)| (format!(":{name}").into_bytes(), value.as_bytes().to_vec()))
            .collect();
        pairs.extend(
            request
                .headers
                .iter()
                .map(|(name, value)| (name.as_bytes().to_vec(), value.clone())),
        );
        Self { pairs }
    }

    /// Builds the response headers a guest reads. Envoy adds `:status` first,
    /// and Kong's engine serves no pseudo-header in responses.
    pub(crate) fn for_response(
        status: u16,
        headers: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
        flavor: HostFlavor,
    ) -> Self {
        let mut pairs = Vec::new();
        if flavor == HostFlavor::Envoy {
            pairs.push((b":status".to_vec(), status.to_string().into_bytes()));
        }
        pairs.extend(headers);
        Self { pairs }
    }

    /// Returns the first value of `name`, ignoring ASCII case.
    pub(crate) fn value(&self, name: &str) -> Option<&[u8]> {
        self.pairs
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value.as_slice())
    }

    /// Returns the first value of `name` decoded as UTF-8 with replacement
    /// characters, or an empty string.
    pub(crate) fn text(&self, name: &str) -> String {
        self.value(name)
            .map(|value| String::from_utf8_lossy(value).into_owned())
            .unwrap_or_default()
    }

    /// Returns the pairs whose names do not start with `:`, with names
    /// decoded as UTF-8 with replacement characters.
    pub(crate) fn regular(&self) -> Vec<(String, Vec<u8>)> {
        self.pairs
            .iter()
            .filter(|(name, _)| !name.starts_with(b":"))
            .map(|(name, value)| (String::from_utf8_lossy(name).into_owned(), value.clone()))
            .collect()
    }
}

impl HeaderMap for HeaderList {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        self.pairs
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map(|(_, value)| Cow::Borrowed(value.as_slice()))
    }

    fn for_each_pair(&self, f: &mut PairVisitor<'_>) -> ControlFlow<()> {
        for (name, value) in &self.pairs {
            f(name, value)?;
        }
        ControlFlow::Continue(())
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), NotAllowed> {
        let mut kept = false;
        self.pairs.retain_mut(|(name, old)| {
            if !name.eq_ignore_ascii_case(key) {
                return true;
            }
            if kept {
                return false;
            }
            kept = true;
            *old = value.to_vec();
            true
        });
        if !kept {
            self.pairs.push((key.to_vec(), value.to_vec()));
        }
        Ok(())
    }

    fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), NotAllowed> {
        self.pairs.push((key.to_vec(), value.to_vec()));
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), NotAllowed> {
        self.pairs
            .retain(|(name, _)| !name.eq_ignore_ascii_case(key));
        Ok(())
    }

    fn replace_all(&mut self, pairs: &[(&[u8], &[u8])]) -> Result<(), NotAllowed> {
        self.pairs = pairs
            .iter()
            .map(|(name, value)| (name.to_vec(), value.to_vec()))
            .collect();
        Ok(())
    }

    fn len(&self) -> usize {
        self.pairs.len()
    }
}

/// A response a filter sent with `proxy_send_local_response`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LocalReply {
    pub(crate) status: u16,
    pub(crate) details: String,
    pub(crate) headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

/// Splits `10.0.0.1:5000` or `[2001:db8::1]:5000` into the address and the
/// port; a bare address, IPv6 included, has no port.
pub(crate) fn split_address(address: &str) -> (&str, Option<&str>) {
    if let Some(rest) = address.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':'));
        }
        return (address, None);
    }
    match address.split_once(':') {
        Some((host, port)) if !port.contains(':') => (host, Some(port)),
        _ => (address, None),
    }
}

/// The properties one worker serves for one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Properties {
    flavor: HostFlavor,
    source_address: String,
    method: String,
    path: String,
    scheme: String,
    authority: String,
    /// Named values, the request's before the worker's, so the first match
    /// wins.
    values: Vec<(String, Vec<u8>)>,
}

impl Properties {
    pub(crate) fn new(request: &Request, flavor: HostFlavor, worker: &[(String, Vec<u8>)]) -> Self {
        let mut values = request.properties.clone();
        values.extend(worker.iter().cloned());
        Self {
            flavor,
            source_address: request.source_address.clone(),
            method: request.method.clone(),
            path: request.path.clone(),
            scheme: request.scheme.clone(),
            authority: request.authority.clone(),
            values,
        }
    }

    /// Returns the value of the dotted property `name`, or `None`.
    fn lookup(&self, name: &str, request_headers: &HeaderList) -> Option<Vec<u8>> {
        if let Some((_, value)) = self.values.iter().find(|(key, _)| key == name) {
            return Some(value.clone());
        }
        let (address, port) = split_address(&self.source_address);
        let text = match name {
            "source.address" => match self.flavor {
                HostFlavor::Kong => address.to_owned(),
                HostFlavor::Envoy => self.source_address.clone(),
            },
            "source.port" => {
                let port = port?;
                return Some(match self.flavor {
                    HostFlavor::Kong => port.as_bytes().to_vec(),
                    // Envoy serves a port as an 8-byte little-endian integer.
                    HostFlavor::Envoy => port.parse::<u64>().ok()?.to_le_bytes().to_vec(),
                });
            }
            "request.path" => self.path.clone(),
            "request.url_path" => self
                .path
                .split_once('?')
                .map_or(self.path.as_str(), |(path, _)| path)
                .to_owned(),
            "request.query" => self
                .path
                .split_once('?')
                .map(|(_, query)| query)?
                .to_owned(),
            "request.method" => self.method.clone(),
            "request.scheme" => self.scheme.clone(),
            "request.host" => self.authority.clone(),
            _ => {
                let header = name.strip_prefix("request.headers.")?;
                return request_headers.value(header).map(<[u8]>::to_vec);
            }
        };
        Some(text.into_bytes())
    }

    fn set(&mut self, name: String, value: Vec<u8>) {
        self.values.retain(|(key, _)| *key != name);
        self.values.insert(0, (name, value));
    }
}

/// The phase of a stream's exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    #[default]
    Request,
    Response,
}

/// The state one guest's host functions reach during one request.
#[derive(Debug, Default)]
pub(crate) struct HttpStream {
    pub(crate) phase: Phase,
    pub(crate) request_headers: HeaderList,
    pub(crate) request_body: Vec<u8>,
    pub(crate) response_headers: HeaderList,
    pub(crate) response_body: Vec<u8>,
    pub(crate) local_reply: Option<LocalReply>,
    /// Set when the guest called `proxy_continue_stream` during the running
    /// callback.
    pub(crate) resumed: bool,
    request_trailers: HeaderList,
    response_trailers: HeaderList,
    properties: Properties,
}

impl HttpStream {
    pub(crate) fn new(request_headers: HeaderList, properties: Properties) -> Self {
        Self {
            request_headers,
            properties,
            ..Self::default()
        }
    }
}

impl StreamState for HttpStream {
    fn header_map(
        &mut self,
        _call: Invocation,
        _access: Access,
        map: MapType,
    ) -> Result<&mut dyn HeaderMap, Status> {
        match map {
            MapType::HttpRequestHeaders => Ok(&mut self.request_headers),
            MapType::HttpResponseHeaders => Ok(&mut self.response_headers),
            // Neither Kong's engine nor this host delivers trailers; an empty
            // map keeps guests of the Rust SDK, which stop on an error here,
            // running.
            MapType::HttpRequestTrailers => Ok(&mut self.request_trailers),
            MapType::HttpResponseTrailers => Ok(&mut self.response_trailers),
            _ => Err(Status::BadArgument),
        }
    }

    fn buffer(
        &mut self,
        _call: Invocation,
        _access: Access,
        buffer: BufferType,
    ) -> Result<&mut dyn Buffer, Status> {
        match buffer {
            BufferType::HttpRequestBody => Ok(&mut self.request_body),
            BufferType::HttpResponseBody => Ok(&mut self.response_body),
            _ => Err(Status::NotFound),
        }
    }

    fn continue_stream(&mut self, _call: Invocation, stream: StreamType) -> Result<(), Status> {
        match stream {
            StreamType::HttpRequest | StreamType::HttpResponse => {
                self.resumed = true;
                Ok(())
            }
            _ => Err(Status::BadArgument),
        }
    }

    fn send_local_response(
        &mut self,
        _call: Invocation,
        response: LocalResponse<'_>,
    ) -> Result<(), Status> {
        // NOTE: only the request phase may send a local response here. Envoy
        // also accepts one from the response headers callback, but this host
        // rejects it, because the upstream response is already chosen.
        if self.phase != Phase::Request || self.local_reply.is_some() {
            return Err(Status::BadArgument);
        }
        let status = u16::try_from(response.status_code)
            .ok()
            .filter(|status| (100..=999).contains(status))
            .ok_or(Status::BadArgument)?;
        self.local_reply = Some(LocalReply {
            status,
            details: String::from_utf8_lossy(&response.status_code_details).into_owned(),
            headers: response
                .headers
                .iter()
                .map(|(name, value)| (name.to_vec(), value.to_vec()))
                .collect(),
            body: response.body.to_vec(),
        });
        Ok(())
    }

    fn property(
        &mut self,
        _call: Invocation,
        path: &[&[u8]],
        out: &mut Vec<u8>,
    ) -> Result<(), Status> {
        let segments: Vec<Cow<'_, str>> = path
            .iter()
            .map(|segment| String::from_utf8_lossy(segment))
            .collect();
        let name = segments.join(".");
        let value = self
            .properties
            .lookup(&name, &self.request_headers)
            .ok_or(Status::NotFound)?;
        out.extend_from_slice(&value);
        Ok(())
    }

    fn set_property(
        &mut self,
        _call: Invocation,
        path: &[&[u8]],
        value: &[u8],
    ) -> Result<(), Status> {
        let segments: Vec<Cow<'_, str>> = path
            .iter()
            .map(|segment| String::from_utf8_lossy(segment))
            .collect();
        self.properties.set(segments.join("."), value.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_address_handles_each_form() {
        let cases = [
            ("10.0.0.1", ("10.0.0.1", None)),
            ("10.0.0.1:5000", ("10.0.0.1", Some("5000"))),
            ("[2001:db8::1]:5000", ("2001:db8::1", Some("5000"))),
            ("[2001:db8::1]", ("2001:db8::1", None)),
            ("2001:db8::1", ("2001:db8::1", None)),
            ("::1", ("::1", None)),
        ];
        for (input, expected) in cases {
            assert_eq!(split_address(input), expected, "input {input}");
        }
    }

    #[test]
    fn header_list_ignores_case() {
        let mut headers = HeaderList::default();
        headers.add(b"X-Key", b"1").unwrap();
        headers.add(b"x-key", b"2").unwrap();

        headers.set(b"X-KEY", b"3").unwrap();

        assert_eq!(headers.get(b"x-key").as_deref(), Some(&b"3"[..]));
        assert_eq!(headers.len(), 1);
        headers.remove(b"x-KEY").unwrap();
        assert!(headers.is_empty());
    }

    #[test]
    fn kong_request_headers_start_with_pseudo_headers() {
        let request = Request::get("/a?b=1").header("host", "example.com");

        let headers = HeaderList::for_request(&request, HostFlavor::Kong);

        let names: Vec<&[u8]> = headers
            .pairs
            .iter()
            .map(|(name, _)| name.as_slice())
            .collect();
        assert_eq!(
            names,
            vec![
                &b":path"[..],
                b":method",
                b":scheme",
                b":authority",
                b"host"
            ]
        );
        assert_eq!(headers.text(":path"), "/a?b=1");
    }

    #[test]
    fn response_status_pseudo_header_only_for_envoy() {
        let kong = HeaderList::for_response(429, Vec::new(), HostFlavor::Kong);
        let envoy = HeaderList::for_response(429, Vec::new(), HostFlavor::Envoy);

        assert_eq!(kong.value(":status"), None);
        assert_eq!(envoy.value(":status"), Some(&b"429"[..]));
    }

    #[test]
    fn source_address_drops_port_for_kong_only() {
        let request = Request::get("/").source_address("[2001:db8::1]:5000");
        let headers = HeaderList::default();

        let kong = Properties::new(&request, HostFlavor::Kong, &[]);
        let envoy = Properties::new(&request, HostFlavor::Envoy, &[]);

        assert_eq!(
            kong.lookup("source.address", &headers),
            Some(b"2001:db8::1".to_vec())
        );
        assert_eq!(
            envoy.lookup("source.address", &headers),
            Some(b"[2001:db8::1]:5000".to_vec())
        );
        assert_eq!(kong.lookup("source.port", &headers), Some(b"5000".to_vec()));
    }

    #[test]
    fn request_properties_win_over_worker_properties() {
        let request = Request::get("/").property("kong.route_id", "from-request");
        let worker = [
            ("kong.route_id".to_owned(), b"from-worker".to_vec()),
            ("kong.service_id".to_owned(), b"svc".to_vec()),
        ];

        let properties = Properties::new(&request, HostFlavor::Kong, &worker);

        let headers = HeaderList::default();
        assert_eq!(
            properties.lookup("kong.route_id", &headers),
            Some(b"from-request".to_vec())
        );
        assert_eq!(
            properties.lookup("kong.service_id", &headers),
            Some(b"svc".to_vec())
        );
        assert_eq!(properties.lookup("kong.consumer", &headers), None);
    }

    #[test]
    fn request_header_property_reads_the_current_map() {
        let request = Request::get("/x?y=1").header("X-Api-Key", "alice");
        let headers = HeaderList::for_request(&request, HostFlavor::Kong);
        let properties = Properties::new(&request, HostFlavor::Kong, &[]);

        assert_eq!(
            properties.lookup("request.headers.x-api-key", &headers),
            Some(b"alice".to_vec())
        );
        assert_eq!(
            properties.lookup("request.url_path", &headers),
            Some(b"/x".to_vec())
        );
        assert_eq!(
            properties.lookup("request.query", &headers),
            Some(b"y=1".to_vec())
        );
    }
}
