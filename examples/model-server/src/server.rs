//! The HTTP side: worker threads take requests from tiny_http, read the body
//! within the size limit, route it, send the reply and log one line.

use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tiny_http::{Header, Request, Response, Server, StatusCode};

use crate::error::HttpError;
use crate::models::Models;
use crate::routes::{self, Reply};

/// Largest accepted request body: 1 MiB. Larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Serves requests until `shutting_down` is set and the server is unblocked.
pub fn run_worker(server: &Server, models: &Models, shutting_down: &AtomicBool) {
    loop {
        match server.recv() {
            Ok(request) => serve(models, request),
            // `Server::unblock` makes `recv` return an error; other errors
            // come from accepting a connection and do not stop the server.
            Err(_) if shutting_down.load(Ordering::SeqCst) => return,
            Err(e) => eprintln!("failed to accept a request: {e}"),
        }
    }
}

fn serve(models: &Models, mut request: Request) {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let url = request.url().to_string();
    let (path, _) = routes::split_url(&url);
    let client = request
        .remote_addr()
        .map_or_else(|| "unknown".to_string(), ToString::to_string);

    let reply = match read_body(&mut request) {
        Ok(body) => routes::handle(models, &method, &url, &body),
        Err(error) => Reply::error(path, &error),
    };
    let status = reply.status;
    let log_details = describe_reply(&reply);

    if let Err(e) = request.respond(into_response(reply)) {
        eprintln!("failed to send the response to {client} for {method} {path}: {e}");
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The query string is left out of the log: clients may put data there.
    eprintln!("{method} {path} {status} {latency_ms:.2}ms client={client}{log_details}");
}

/// Reads the request body, rejecting bodies over [`MAX_BODY_BYTES`] with 413.
fn read_body(request: &mut Request) -> Result<Vec<u8>, HttpError> {
    let too_large = || {
        HttpError::new(
            413,
            format!("request body is larger than the limit of {MAX_BODY_BYTES} bytes (1 MiB)"),
        )
    };
    if request
        .body_length()
        .is_some_and(|length| length > MAX_BODY_BYTES)
    {
        return Err(too_large());
    }

    let mut body = Vec::new();
    // Reading one byte past the limit distinguishes a body of exactly the
    // limit from a larger one when the client sent no Content-Length.
    request
        .as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| HttpError::new(400, format!("failed to read the request body: {e}")))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    Ok(body)
}

/// Formats the access-log fields that depend on the reply.
fn describe_reply(reply: &Reply) -> String {
    let mut details = String::new();
    if let Some(model) = &reply.model {
        details.push_str(&format!(" model={model}"));
    }
    if let Some(usage) = &reply.usage {
        details.push_str(&format!(
            " prompt_tokens={} completion_tokens={} total_tokens={}",
            usage.prompt_tokens, usage.completion_tokens, usage.total_tokens
        ));
    }
    if reply.streamed {
        details.push_str(" stream=true");
    }
    details
}

fn into_response(reply: Reply) -> Response<Cursor<Vec<u8>>> {
    let mut headers: Vec<Header> = Vec::with_capacity(reply.headers.len() + 1);
    headers.extend(Header::from_bytes("Content-Type", reply.content_type).ok());
    for (name, value) in &reply.headers {
        headers.extend(Header::from_bytes(*name, value.as_bytes()).ok());
    }
    // Event streams go out with chunked encoding, as streaming servers send
    // them; every other body gets a Content-Length.
    let length = if reply.streamed {
        None
    } else {
        Some(reply.body.len())
    };
    Response::new(
        StatusCode(reply.status),
        headers,
        Cursor::new(reply.body),
        length,
        None,
    )
}
