//! Drives one HTTP exchange through a chain of workers.

use proxy_wasm_host::abi::v0_2_1::types::Action;
use proxy_wasm_host::HeaderMap;

use super::http::{Exchange, Request, UpstreamRequest, UpstreamResponse};
use super::stream::{HeaderList, HttpStream, LocalReply, Phase, Properties};
use super::{HostFlavor, OpenStream, Worker};
use crate::error::Error;

/// The direction of a body.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
}

/// The result of one filter's body callbacks.
struct BodyOutcome {
    /// The chunks the filter let through, for the next filter or the peer.
    chunks: Vec<Vec<u8>>,
    /// The callback name when the last callback left the body paused.
    paused_in: Option<&'static str>,
}

/// The result of the request phase.
struct RequestOutcome {
    /// The local response a filter sent, if one did.
    local: Option<LocalReply>,
    /// The request headers after the last filter that ran.
    headers: HeaderList,
    /// The body chunks that reach the upstream.
    chunks: Vec<Vec<u8>>,
}

/// The response that enters the response phase.
struct Response {
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body_chunks: Vec<Vec<u8>>,
    details: Option<String>,
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

pub(super) fn run_chain(
    workers: &mut [Worker],
    request: Request,
    upstream: &mut dyn FnMut(&UpstreamRequest) -> UpstreamResponse,
) -> Result<Exchange, Error> {
    for worker in workers.iter_mut() {
        if worker.is_poisoned() {
            worker.restart()?;
        }
    }
    let mut open: Vec<Option<OpenStream>> = workers.iter().map(|_| None).collect();
    let result = drive(workers, &mut open, &request, upstream);

    // Every opened context ends, also after an error, unless its guest failed.
    let mut close_error = None;
    for (worker, stream) in workers.iter_mut().zip(open) {
        if let Some(stream) = stream {
            if worker.is_poisoned() {
                continue;
            }
            if let Err(error) = worker.close(stream) {
                close_error.get_or_insert(error);
            }
        }
    }
    let exchange = result?;
    match close_error {
        Some(error) => Err(error),
        None => Ok(exchange),
    }
}

fn drive(
    workers: &mut [Worker],
    open: &mut [Option<OpenStream>],
    request: &Request,
    upstream: &mut dyn FnMut(&UpstreamRequest) -> UpstreamResponse,
) -> Result<Exchange, Error> {
    let flavor = workers
        .first()
        .map_or(HostFlavor::Kong, |worker| worker.options.flavor);

    let RequestOutcome {
        local,
        headers: request_headers,
        chunks: request_chunks,
    } = request_phase(workers, open, request, flavor)?;

    let mut upstream_request = None;
    let response = match local {
        Some(reply) => Response {
            status: reply.status,
            headers: reply.headers,
            body_chunks: if reply.body.is_empty() {
                Vec::new()
            } else {
                vec![reply.body]
            },
            details: Some(reply.details),
        },
        None => {
            let sent = UpstreamRequest {
                method: request_headers.text(":method"),
                path: request_headers.text(":path"),
                authority: request_headers.text(":authority"),
                scheme: request_headers.text(":scheme"),
                headers: request_headers.regular(),
                body: request_chunks.concat(),
            };
            let answer = upstream(&sent);
            upstream_request = Some(sent);
            Response {
                status: answer.status,
                headers: answer
                    .headers
                    .into_iter()
                    .map(|(name, value)| (name.into_bytes(), value))
                    .collect(),
                body_chunks: answer.body_chunks,
                details: None,
            }
        }
    };

    let status_details = response.details.clone();
    let (status, headers, body_chunks) = response_phase(workers, open, request, flavor, response)?;
    Ok(Exchange {
        status,
        headers: headers.regular(),
        body: body_chunks.concat(),
        body_chunks,
        reached_upstream: upstream_request.is_some(),
        upstream_request,
        local_response: status_details.is_some(),
        status_details,
    })
}

/// Runs the request callbacks of the chain, and returns the local response
/// if a filter sent one, the request headers and the body chunks that
/// reach the upstream.
fn request_phase(
    workers: &mut [Worker],
    open: &mut [Option<OpenStream>],
    request: &Request,
    flavor: HostFlavor,
) -> Result<RequestOutcome, Error> {
    let has_body = !request.body_chunks.is_empty();
    let mut headers = HeaderList::for_request(request, flavor);
    let mut paused = vec![false; workers.len()];

    for (index, worker) in workers.iter_mut().enumerate() {
        let properties = Properties::new(request, flavor, &worker.options.properties);
        let mut stream = worker.open(HttpStream::new(headers.clone(), properties))?;
        let count = len_u32(stream.stream.request_headers.len());
        let end_of_stream = flavor == HostFlavor::Envoy && !has_body;
        let action = worker.callback(&mut stream, |scope, context| {
            scope.on_request_headers(context, count, end_of_stream)
        })?;
        headers = stream.stream.request_headers.clone();
        paused[index] = action == Action::Pause && !stream.stream.resumed;
        let reply = stream.stream.local_reply.clone();
        open[index] = Some(stream);
        if reply.is_some() {
            return Ok(RequestOutcome {
                local: reply,
                headers,
                chunks: Vec::new(),
            });
        }
        if paused[index] && !has_body {
            return Err(Error::Stalled {
                filter: worker.filter.clone(),
                callback: "on_request_headers",
            });
        }
    }

    let mut chunks = request.body_chunks.clone();
    for (index, worker) in workers.iter_mut().enumerate() {
        let Some(stream) = open[index].as_mut() else {
            continue;
        };
        if !has_body {
            continue;
        }
        let outcome = deliver_body(worker, stream, Direction::Request, chunks, flavor)?;
        headers = stream.stream.request_headers.clone();
        if let Some(reply) = stream.stream.local_reply.clone() {
            return Ok(RequestOutcome {
                local: Some(reply),
                headers,
                chunks: Vec::new(),
            });
        }
        if let Some(callback) = outcome.paused_in {
            return Err(Error::Stalled {
                filter: worker.filter.clone(),
                callback,
            });
        }
        chunks = outcome.chunks;
    }
    Ok(RequestOutcome {
        local: None,
        headers,
        chunks,
    })
}

/// Runs the response callbacks of the chain and returns the status, the
/// headers and the body chunks the client receives.
fn response_phase(
    workers: &mut [Worker],
    open: &mut [Option<OpenStream>],
    request: &Request,
    flavor: HostFlavor,
    response: Response,
) -> Result<(u16, HeaderList, Vec<Vec<u8>>), Error> {
    let mut order: Vec<usize> = (0..workers.len()).collect();
    if flavor == HostFlavor::Envoy {
        order.reverse();
    }
    let has_body = !response.body_chunks.is_empty();
    let mut status = response.status;
    let mut headers = HeaderList::for_response(status, response.headers, flavor);
    let mut header_pause = vec![false; workers.len()];

    for &index in &order {
        let worker = &mut workers[index];
        if open[index].is_none() {
            if flavor == HostFlavor::Envoy {
                continue;
            }
            // Kong runs the response phase of every filter in the chain, also
            // of those that a local response kept from the request phase.
            let properties = Properties::new(request, flavor, &worker.options.properties);
            let request_headers = HeaderList::for_request(request, flavor);
            open[index] = Some(worker.open(HttpStream::new(request_headers, properties))?);
        }
        let Some(stream) = open[index].as_mut() else {
            continue;
        };
        stream.stream.phase = Phase::Response;
        stream.stream.response_headers = headers.clone();
        let count = len_u32(stream.stream.response_headers.len());
        let end_of_stream = flavor == HostFlavor::Envoy && !has_body;
        let action = worker.callback(stream, |scope, context| {
            scope.on_response_headers(context, count, end_of_stream)
        })?;
        headers = stream.stream.response_headers.clone();
        header_pause[index] = action == Action::Pause && !stream.stream.resumed;
        if header_pause[index] && flavor == HostFlavor::Envoy && !has_body {
            return Err(Error::Stalled {
                filter: worker.filter.clone(),
                callback: "on_response_headers",
            });
        }
    }
    if flavor == HostFlavor::Envoy {
        if let Some(changed) = headers
            .value(":status")
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| value.parse::<u16>().ok())
        {
            status = changed;
        }
    }

    let mut chunks = response.body_chunks;
    for &index in &order {
        let worker = &mut workers[index];
        let Some(stream) = open[index].as_mut() else {
            continue;
        };
        if flavor == HostFlavor::Envoy && !has_body {
            continue;
        }
        let outcome = deliver_body(worker, stream, Direction::Response, chunks, flavor)?;
        if let Some(callback) = outcome.paused_in {
            return Err(Error::Stalled {
                filter: worker.filter.clone(),
                callback,
            });
        }
        chunks = outcome.chunks;
    }
    Ok((status, headers, chunks))
}

/// Delivers `chunks` to one filter's body callback of `direction` and
/// returns the chunks it lets through.
///
/// A callback that returns `Pause` keeps its buffer: the next chunk is
/// appended to it, and the filter reads both in its next call, as Envoy
/// buffers. A call to `proxy_continue_stream` inside the callback counts as
/// `Continue`. With [`HostFlavor::Kong`] each response chunk arrives with
/// `end_of_stream` false, followed by an empty call with `end_of_stream`
/// true, as nginx sends its last buffer.
fn deliver_body(
    worker: &mut Worker,
    stream: &mut OpenStream,
    direction: Direction,
    chunks: Vec<Vec<u8>>,
    flavor: HostFlavor,
) -> Result<BodyOutcome, Error> {
    let mut deliveries: Vec<(Vec<u8>, bool)> = Vec::new();
    let chunk_count = chunks.len();
    let kong_response = flavor == HostFlavor::Kong && direction == Direction::Response;
    for (position, chunk) in chunks.into_iter().enumerate() {
        let last = position + 1 == chunk_count;
        deliveries.push((chunk, last && !kong_response));
    }
    if kong_response {
        deliveries.push((Vec::new(), true));
    }

    let callback_name = match direction {
        Direction::Request => "on_request_body",
        Direction::Response => "on_response_body",
    };
    let mut passed = Vec::new();
    let mut held = Vec::new();
    let mut paused_in = None;
    for (chunk, end_of_stream) in deliveries {
        held.extend_from_slice(&chunk);
        let size = len_u32(held.len());
        let action = match direction {
            Direction::Request => {
                stream.stream.request_body = std::mem::take(&mut held);
                worker.callback(stream, |scope, context| {
                    scope.on_request_body(context, size, end_of_stream)
                })?
            }
            Direction::Response => {
                stream.stream.response_body = std::mem::take(&mut held);
                worker.callback(stream, |scope, context| {
                    scope.on_response_body(context, size, end_of_stream)
                })?
            }
        };
        let buffer = match direction {
            Direction::Request => std::mem::take(&mut stream.stream.request_body),
            Direction::Response => std::mem::take(&mut stream.stream.response_body),
        };
        if direction == Direction::Request && stream.stream.local_reply.is_some() {
            return Ok(BodyOutcome {
                chunks: Vec::new(),
                paused_in: None,
            });
        }
        if action == Action::Continue || stream.stream.resumed {
            if !buffer.is_empty() {
                passed.push(buffer);
            }
            paused_in = None;
        } else {
            held = buffer;
            paused_in = Some(callback_name);
        }
    }
    Ok(BodyOutcome {
        chunks: passed,
        paused_in,
    })
}
