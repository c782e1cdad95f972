//! Token budgets, settlement from the model's usage, plans and per-model
//! keys, on the compiled filter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{header, Node, T0};
use local_gateway::{Exchange, LogLevel, Request, UpstreamResponse, Worker};
use serde_json::json;

const TOKENS: &str = r#"{
    "minute": 100,
    "limit_by": "header", "header_name": "X-API-Key",
    "tokens": {"minute": 1000, "max_cost": 500, "default_cost": 50, "usage_pointer": "/usage/total_tokens"}
}"#;

fn completion(key: &str, body: &serde_json::Value) -> Request {
    let body = body.to_string();
    Request::post("/llm/v1/completions")
        .header("X-API-Key", key.to_string())
        .header("content-type", "application/json")
        .header("content-length", body.len().to_string())
        .body(body)
}

fn answer_with_usage(total_tokens: u64) -> UpstreamResponse {
    UpstreamResponse::ok()
        .header("content-type", "application/json")
        .body(
            json!({"choices": [{"text": "hi"}], "usage": {"total_tokens": total_tokens}})
                .to_string(),
        )
}

fn run(worker: &mut Worker, request: Request, response: UpstreamResponse) -> Exchange {
    let mut response = Some(response);
    worker
        .run(request, &mut |_| response.take().unwrap())
        .unwrap_or_else(|error| panic!("{error}"))
}

fn remaining_tokens(exchange: &Exchange) -> u64 {
    header(exchange, "X-RateLimit-Remaining-Tokens-Minute")
        .parse()
        .unwrap()
}

#[test]
fn token_budget_reached_across_requests() {
    let node = Node::kong();
    let config = r#"{"minute": 100, "tokens": {"minute": 1000, "max_cost": 500}}"#;
    let mut worker = node.worker(config);
    let ask = |n: u64| completion("k", &json!({"model": "tiny", "max_tokens": n}));

    let first = run(&mut worker, ask(400), UpstreamResponse::ok());
    assert_eq!(first.status, 200);
    assert_eq!(header(&first, "X-RateLimit-Limit-Tokens-Minute"), "1000");
    assert_eq!(remaining_tokens(&first), 600);
    assert_eq!(header(&first, "X-RateLimit-Remaining-Minute"), "99");
    let second = run(&mut worker, ask(400), UpstreamResponse::ok());
    assert_eq!(remaining_tokens(&second), 200);

    let limited = run(&mut worker, ask(400), UpstreamResponse::ok());
    assert_eq!(limited.status, 429);
    assert_eq!(header(&limited, "RateLimit-Limit"), "1000");
    assert_eq!(
        header(&limited, "X-RateLimit-Remaining-Tokens-Minute"),
        "200"
    );
    // A smaller request still fits, and a limited one counted nothing.
    let small = run(&mut worker, ask(200), UpstreamResponse::ok());
    assert_eq!(small.status, 200);
    assert_eq!(remaining_tokens(&small), 0);
}

#[test]
fn client_estimate_is_capped_and_defaults_apply() {
    let node = Node::kong();
    let mut worker = node.worker(TOKENS);
    // Capped at max_cost 500.
    let capped = run(
        &mut worker,
        completion("a", &json!({"max_tokens": 100_000})),
        UpstreamResponse::ok(),
    );
    assert_eq!(remaining_tokens(&capped), 500);
    // No estimate in the body: default_cost 50.
    let missing = run(
        &mut worker,
        completion("b", &json!({"prompt": "hi"})),
        UpstreamResponse::ok(),
    );
    assert_eq!(remaining_tokens(&missing), 950);
    // A body that is not JSON: default_cost, and the request still passes.
    let invalid = Request::post("/llm")
        .header("X-API-Key", "c")
        .header("content-length", "9")
        .body("not json!");
    let invalid = run(&mut worker, invalid, UpstreamResponse::ok());
    assert_eq!(invalid.status, 200);
    assert_eq!(remaining_tokens(&invalid), 950);
    // A negative or non-numeric estimate: default_cost.
    let negative = run(
        &mut worker,
        completion("d", &json!({"max_tokens": -5})),
        UpstreamResponse::ok(),
    );
    assert_eq!(remaining_tokens(&negative), 950);
}

#[test]
fn oversized_body_falls_back_to_default_cost() {
    let node = Node::kong();
    let config =
        r#"{"minute": 100, "max_body_bytes": 64, "tokens": {"minute": 1000, "default_cost": 7}}"#;
    let mut worker = node.worker(config);
    let body = json!({"max_tokens": 300, "prompt": "x".repeat(500)}).to_string();
    let request = Request::post("/llm")
        .header("content-length", body.len().to_string())
        .body_chunks(body.as_bytes().chunks(100).map(<[u8]>::to_vec));
    let exchange = run(&mut worker, request, UpstreamResponse::ok());
    assert_eq!(exchange.status, 200);
    assert_eq!(remaining_tokens(&exchange), 993);
    // The upstream still receives the whole body.
    assert_eq!(exchange.upstream_request.unwrap().body, body.as_bytes());
}

#[test]
fn chunked_body_is_read_whole() {
    let node = Node::kong();
    let mut worker = node.worker(r#"{"minute": 100, "tokens": {"minute": 1000}}"#);
    let body = json!({"prompt": "y".repeat(300), "max_tokens": 321}).to_string();
    let request = Request::post("/llm")
        .header("transfer-encoding", "chunked")
        .body_chunks(body.as_bytes().chunks(7).map(<[u8]>::to_vec));
    let exchange = run(&mut worker, request, UpstreamResponse::ok());
    assert_eq!(remaining_tokens(&exchange), 679);
}

#[test]
fn settlement_refunds_unused_tokens() {
    let node = Node::kong();
    let mut worker = node.worker(TOKENS);
    let first = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 400})),
        answer_with_usage(100),
    );
    assert_eq!(remaining_tokens(&first), 600);
    // 300 of the 400 reserved came back.
    let second = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 10})),
        answer_with_usage(10),
    );
    assert_eq!(remaining_tokens(&second), 890);
}

#[test]
fn settlement_charges_extra_usage() {
    let node = Node::kong();
    let mut worker = node.worker(TOKENS);
    let first = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 10})),
        answer_with_usage(460),
    );
    assert_eq!(remaining_tokens(&first), 990);
    let second = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 40})),
        answer_with_usage(40),
    );
    assert_eq!(remaining_tokens(&second), 500);
    // The budget can be overrun by one answer's worth, then nothing fits.
    let big = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 500})),
        answer_with_usage(900),
    );
    assert_eq!(big.status, 200);
    let after = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 1})),
        answer_with_usage(1),
    );
    assert_eq!(after.status, 429);
    assert_eq!(remaining_tokens(&after), 0);
}

#[test]
fn streamed_usage_in_last_chunk_is_settled() {
    let node = Node::kong();
    let mut worker = node.worker(TOKENS);
    let events = [
        "data: {\"choices\":[{\"text\":\"Once\"}]}\n\n",
        "data: {\"choices\":[{\"text\":\" upon\"}]}\n\nda",
        "ta: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n",
        "data: [DONE]\n\n",
    ];
    let stream = UpstreamResponse::ok()
        .header("content-type", "text/event-stream")
        .body_chunks(events);
    let first = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 300, "stream": true})),
        stream,
    );
    assert_eq!(first.status, 200);
    assert_eq!(first.body_text(), events.concat());
    let next = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 10})),
        answer_with_usage(10),
    );
    // 300 reserved, 5 used: 995 - 10.
    assert_eq!(remaining_tokens(&next), 985);
}

#[test]
fn response_without_usage_keeps_the_reservation() {
    let node = Node::kong();
    let config = TOKENS.replace(
        "\"minute\": 100,",
        "\"minute\": 100, \"log_level\": \"debug\",",
    );
    let mut worker = node.worker(&config);
    let error = UpstreamResponse::new(502)
        .header("content-type", "application/json")
        .body(r#"{"error":"model down"}"#);
    let first = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 300})),
        error,
    );
    assert_eq!(first.status, 502);
    assert!(node
        .logs
        .contains("reported no usage; the reservation of 300 token(s) stands"));
    let next = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 10})),
        answer_with_usage(10),
    );
    assert_eq!(remaining_tokens(&next), 690);
}

#[test]
fn cut_stream_keeps_the_reservation() {
    let node = Node::kong();
    let mut worker = node.worker(TOKENS);
    let cut = UpstreamResponse::ok()
        .header("content-type", "text/event-stream")
        .body_chunks(["data: {\"choices\":[{\"text\":\"a\"}]}\n\n", "data: {\"usa"]);
    run(
        &mut worker,
        completion("k", &json!({"max_tokens": 200})),
        cut,
    );
    let next = run(
        &mut worker,
        completion("k", &json!({"max_tokens": 10})),
        answer_with_usage(10),
    );
    assert_eq!(remaining_tokens(&next), 790);
}

#[test]
fn plans_for_known_and_unknown_identifiers() {
    let node = Node::kong();
    let config = r#"{
        "second": 1, "limit_by": "header", "header_name": "X-API-Key",
        "tokens": {"minute": 100, "max_cost": 100},
        "plans": {"members": {"pro-key": "pro"},
                  "limits": {"pro": {"second": 3, "tokens": {"minute": 10000}}}}
    }"#;
    let mut worker = node.worker(config);
    let ask = |key: &str| completion(key, &json!({"max_tokens": 50}));

    let pro: Vec<u16> = (0..4)
        .map(|_| run(&mut worker, ask("pro-key"), UpstreamResponse::ok()).status)
        .collect();
    assert_eq!(pro, [200, 200, 200, 429]);
    let pro_headers = run(&mut worker, ask("pro-key"), UpstreamResponse::ok());
    assert_eq!(
        header(&pro_headers, "X-RateLimit-Limit-Tokens-Minute"),
        "10000"
    );
    assert_eq!(header(&pro_headers, "X-RateLimit-Limit-Second"), "3");

    let free: Vec<u16> = (0..2)
        .map(|_| run(&mut worker, ask("free-key"), UpstreamResponse::ok()).status)
        .collect();
    assert_eq!(free, [200, 429]);
    let free_headers = run(&mut worker, ask("other-key"), UpstreamResponse::ok());
    assert_eq!(
        header(&free_headers, "X-RateLimit-Limit-Tokens-Minute"),
        "100"
    );
    assert_eq!(header(&free_headers, "X-RateLimit-Limit-Second"), "1");
}

#[test]
fn plan_chosen_by_auth_plugin_header() {
    let node = Node::kong();
    let config = r#"{
        "minute": 1, "limit_by": "consumer",
        "plans": {"header_name": "X-Consumer-Username", "members": {"alice": "gold"},
                  "limits": {"gold": {"minute": 3}}}
    }"#;
    let mut worker = node.worker(config);
    let alice = || {
        Request::get("/x")
            .header("X-Consumer-ID", "id-1")
            .header("X-Consumer-Username", "alice")
    };
    let bob = || {
        Request::get("/x")
            .header("X-Consumer-ID", "id-2")
            .header("X-Consumer-Username", "bob")
    };
    let alice_statuses: Vec<u16> = (0..4)
        .map(|_| run(&mut worker, alice(), UpstreamResponse::ok()).status)
        .collect();
    assert_eq!(alice_statuses, [200, 200, 200, 429]);
    let bob_statuses: Vec<u16> = (0..2)
        .map(|_| run(&mut worker, bob(), UpstreamResponse::ok()).status)
        .collect();
    assert_eq!(bob_statuses, [200, 429]);
}

#[test]
fn per_model_keys_keep_budgets_apart() {
    let node = Node::kong();
    let config = r#"{"minute": 100, "per_model": true, "tokens": {"minute": 500}}"#;
    let mut worker = node.worker(config);
    let ask = |model: &str, n: u64| completion("k", &json!({"model": model, "max_tokens": n}));
    assert_eq!(
        run(&mut worker, ask("large", 500), UpstreamResponse::ok()).status,
        200
    );
    assert_eq!(
        run(&mut worker, ask("large", 1), UpstreamResponse::ok()).status,
        429
    );
    // The same client can still use the small model.
    let small = run(&mut worker, ask("small", 100), UpstreamResponse::ok());
    assert_eq!(small.status, 200);
    assert_eq!(remaining_tokens(&small), 400);
    // A GET without a body has no model; it gets a budget of its own.
    let get = run(
        &mut worker,
        Request::get("/llm/models"),
        UpstreamResponse::ok(),
    );
    assert_eq!(get.status, 200);
}

#[test]
fn header_source_with_trusted_estimate() {
    let node = Node::kong();
    let config = r#"{"minute": 100, "tokens": {"minute": 100, "source": "header", "header_name": "X-Token-Estimate", "default_cost": 10}}"#;
    let mut worker = node.worker(config);
    let with = |value: &str| Request::get("/x").header("X-Token-Estimate", value.to_string());
    assert_eq!(
        remaining_tokens(&run(&mut worker, with("30"), UpstreamResponse::ok())),
        70
    );
    assert_eq!(
        remaining_tokens(&run(&mut worker, with("bogus"), UpstreamResponse::ok())),
        60
    );
    assert_eq!(
        run(&mut worker, with("61"), UpstreamResponse::ok()).status,
        429
    );
}

/// Four workers share one token budget. Each response uses up to 50 tokens
/// more than reserved, so the budget can be overrun by the extra usage of
/// the requests in flight at once, at most one per worker.
#[test]
fn four_workers_share_one_token_budget() {
    let node = Node::kong();
    node.set_ms(T0);
    let workers: Vec<Worker> = (0..4).map(|_| node.worker(TOKENS)).collect();
    let threads: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(worker_index, mut worker)| {
            std::thread::spawn(move || {
                let mut used = 0u64;
                for i in 0..40u64 {
                    let actual = 50 + (i * 7 + worker_index as u64 * 13) % 51;
                    let exchange = run(
                        &mut worker,
                        completion("shared", &json!({"max_tokens": 50})),
                        answer_with_usage(actual),
                    );
                    if exchange.status == 200 {
                        used += actual;
                    }
                }
                used
            })
        })
        .collect();
    let used: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(used <= 1000 + 4 * 50, "{used} tokens used of 1000");
    assert!(used >= 900, "only {used} tokens used of 1000");
    assert!(
        node.logs.lines_at(LogLevel::Warn).is_empty(),
        "{:?}",
        node.logs.lines_at(LogLevel::Warn)
    );
}

/// With responses that use no more than they reserved, four workers never
/// exceed the token budget at all.
#[test]
fn four_workers_never_exceed_with_honest_estimates() {
    let node = Node::kong();
    node.set_ms(T0);
    let workers: Vec<Worker> = (0..4).map(|_| node.worker(TOKENS)).collect();
    let threads: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            std::thread::spawn(move || {
                let mut used = 0u64;
                for i in 0..40u64 {
                    let actual = 20 + i % 31;
                    let exchange = run(
                        &mut worker,
                        completion("shared", &json!({"max_tokens": 50})),
                        answer_with_usage(actual),
                    );
                    if exchange.status == 200 {
                        used += actual;
                    }
                }
                used
            })
        })
        .collect();
    let used: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(used <= 1000, "{used} tokens used of 1000");
}

/// A host that forwards a request without delivering the body it announced
/// leaves the filter to count it in the response phase, too late to refuse.
#[test]
fn announced_body_never_delivered_is_counted_late() {
    let node = Node::kong();
    let config = r#"{"minute": 1, "per_model": true, "log_level": "debug"}"#;
    let mut worker = node.worker(config);
    let announced = || Request::post("/llm").header("content-length", "20");
    let first = run(&mut worker, announced(), UpstreamResponse::ok());
    assert_eq!(first.status, 200);
    assert_eq!(header(&first, "X-RateLimit-Remaining-Minute"), "0");
    let second = run(&mut worker, announced(), UpstreamResponse::ok());
    assert_eq!(second.status, 200);
    assert!(second.reached_upstream);
    assert_eq!(second.header("X-RateLimit-Remaining-Minute"), None);
    assert!(node
        .logs
        .contains("over the limit, but the request was already forwarded"));
}
