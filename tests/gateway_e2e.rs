//! End to end: the `local-gateway` binary serves a declarative config with the
//! compiled filter in front of the `model-server` binary, both on free
//! loopback ports, and real HTTP requests go through them.
//!
//! `./build.sh test` builds both binaries first; alone, run
//! `cargo build -p local-gateway -p model-server` before these tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn binary(name: &str) -> PathBuf {
    let path = repository().join("target/debug").join(name);
    assert!(
        path.exists(),
        "{} is missing; run `cargo build -p local-gateway -p model-server` (./build.sh test does)",
        path.display()
    );
    path
}

/// A started process, stopped when dropped.
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    /// Starts `name` and waits for the stderr line that contains `marker`,
    /// returning the `host:port` that follows `http://` in it.
    fn start(name: &str, arguments: &[&str], marker: &str) -> (Process, String) {
        let mut child = Command::new(binary(name))
            .args(arguments)
            .current_dir(repository())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stderr: ChildStderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = Process { child, lines };
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match process.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    if line.contains(marker) {
                        let address = line
                            .split("http://")
                            .nth(1)
                            .unwrap()
                            .split_whitespace()
                            .next()
                            .unwrap();
                        return (process, address.trim_end_matches('/').to_string());
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = process.child.try_wait() {
                        panic!("{name} exited with {status}: {seen:#?}");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{name} closed stderr: {seen:#?}")
                }
            }
        }
        panic!("{name} did not start within 60 s: {seen:#?}");
    }

    fn log_lines(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The model server and a gateway serving `config` in front of it.
struct Stack {
    gateway_url: String,
    gateway: Process,
    _model: Process,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stack(config: &str) -> Stack {
    let (model, model_address) = Process::start(
        "model-server",
        &["--host", "127.0.0.1", "--port", "0"],
        "listening on",
    );
    let dir = std::env::temp_dir().join(format!(
        "swrl-e2e-{}-{}",
        std::process::id(),
        model_address.replace(':', "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("kong.yml");
    std::fs::write(&config_path, config).unwrap();
    let (gateway, gateway_address) = Process::start(
        "local-gateway",
        &[
            "--config",
            config_path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--filters-dir",
            repository().join("dist").to_str().unwrap(),
            "--upstream",
            &format!("ml-model-service={model_address}"),
        ],
        "listening on",
    );
    Stack {
        gateway_url: format!("http://{gateway_address}"),
        gateway,
        _model: model,
        _dir: TempDir(dir),
    }
}

fn config_with(filter_config: &str) -> String {
    format!(
        r#"_format_version: "3.0"
services:
  - name: ml-model-service
    host: model
    port: 8080
    path: /
    routes:
      - name: ml-model
        paths: [/ml-model]
        methods: [GET, POST]
        filter_chains:
          - filters:
              - name: sliding_window_rate_limit
                config: {filter_config}
"#
    )
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&str>) -> Answer {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let mut request = agent.request(method, url);
    for (name, value) in headers {
        request = request.set(name, value);
    }
    let result = match body {
        Some(body) => request
            .set("content-type", "application/json")
            .send_string(body),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {url}: {error}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .map(|name| {
            (
                name.clone(),
                response.header(&name).unwrap_or_default().to_string(),
            )
        })
        .collect();
    Answer {
        status,
        headers,
        body: response.into_string().unwrap(),
    }
}

fn get(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> Answer {
    request(
        "GET",
        &format!("{}{path}", stack.gateway_url),
        headers,
        None,
    )
}

#[test]
fn admitted_requests_reach_the_model_with_headers() {
    let stack = stack(&config_with(
        r#"{"minute": 5, "limit_by": "header", "header_name": "X-API-Key"}"#,
    ));
    let answer = get(
        &stack,
        "/ml-model/predict?features=5.1,3.5,1.4,0.2",
        &[("X-API-Key", "a")],
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let prediction: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(prediction["model"], "iris-softmax");
    assert_eq!(prediction["predictions"][0]["label"], "setosa");
    assert_eq!(answer.header("X-RateLimit-Limit-Minute"), Some("5"));
    assert_eq!(answer.header("X-RateLimit-Remaining-Minute"), Some("4"));
    assert_eq!(answer.header("RateLimit-Limit"), Some("5"));
    assert!(answer.header("RateLimit-Reset").is_some());

    let posted = request(
        "POST",
        &format!("{}/ml-model/predict", stack.gateway_url),
        &[("X-API-Key", "a")],
        Some(r#"{"features": [6.7, 3.0, 5.2, 2.3]}"#),
    );
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert!(posted.body.contains("virginica"), "{}", posted.body);
}

#[test]
fn limit_gives_429_and_keys_have_separate_budgets() {
    let stack = stack(&config_with(
        r#"{"minute": 3, "limit_by": "header", "header_name": "X-API-Key"}"#,
    ));
    for _ in 0..3 {
        assert_eq!(
            get(&stack, "/ml-model/", &[("X-API-Key", "alice")]).status,
            200
        );
    }
    let limited = get(&stack, "/ml-model/", &[("X-API-Key", "alice")]);
    assert_eq!(limited.status, 429);
    assert_eq!(
        limited.header("Content-Type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        limited.body.trim_end(),
        r#"{"message":"API rate limit exceeded"}"#
    );
    let retry_after: u64 = limited.header("Retry-After").unwrap().parse().unwrap();
    assert!(
        (1..=120).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    assert_eq!(limited.header("RateLimit-Remaining"), Some("0"));
    assert_eq!(limited.header("X-RateLimit-Remaining-Minute"), Some("0"));

    let bob = get(&stack, "/ml-model/", &[("X-API-Key", "bob")]);
    assert_eq!(bob.status, 200);
    assert_eq!(bob.header("X-RateLimit-Remaining-Minute"), Some("2"));
}

#[test]
fn budget_comes_back_as_the_window_slides() {
    let stack = stack(&config_with(r#"{"second": 2}"#));
    let mut limited = None;
    for _ in 0..10 {
        let answer = get(&stack, "/ml-model/health", &[]);
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("ten quick requests never hit a limit of 2 a second");
    let retry_after: u64 = limited.header("Retry-After").unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    std::thread::sleep(Duration::from_secs(retry_after));
    let again = get(&stack, "/ml-model/health", &[]);
    assert_eq!(
        again.status, 200,
        "still limited {retry_after} s after a 429"
    );
}

#[test]
fn token_budget_settles_through_model() {
    let config = config_with(
        r#"{"minute": 100, "limit_by": "header", "header_name": "X-API-Key", "tokens": {"minute": 300, "usage_pointer": "/usage/total_tokens"}}"#,
    );
    let stack = stack(&config);
    let complete = |max_tokens: u64| {
        let body = serde_json::json!({"model": "tiny-markov", "prompt": "The keeper", "max_tokens": max_tokens}).to_string();
        request(
            "POST",
            &format!("{}/ml-model/v1/completions", stack.gateway_url),
            &[("X-API-Key", "k")],
            Some(&body),
        )
    };
    let first = complete(250);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        first.header("X-RateLimit-Remaining-Tokens-Minute"),
        Some("50")
    );
    let usage: serde_json::Value = serde_json::from_str(&first.body).unwrap();
    let used = usage["usage"]["total_tokens"].as_u64().unwrap();
    assert!(used < 250, "the model used {used} tokens");

    // The reservation of 250 was settled to the real usage.
    let second = complete(100);
    assert_eq!(second.status, 200, "{}", second.body);
    let expected = 300 - used - 100;
    assert_eq!(
        second.header("X-RateLimit-Remaining-Tokens-Minute"),
        Some(expected.to_string().as_str())
    );

    let too_big = complete(300);
    assert_eq!(too_big.status, 429);
    assert_eq!(too_big.header("RateLimit-Limit"), Some("300"));
}

#[test]
fn bundled_kong_yml_limits_per_api_key() {
    let config = std::fs::read_to_string(repository().join("kong/kong.yml")).unwrap();
    let stack = stack(&config);
    let mut alice = Vec::new();
    for _ in 0..25 {
        alice.push(
            get(
                &stack,
                "/ml-model-keyed/predict?features=5.1,3.5,1.4,0.2",
                &[("X-API-Key", "alice")],
            )
            .status,
        );
    }
    let admitted = alice.iter().filter(|s| **s == 200).count();
    // 20 a second; a burst that straddles a second boundary still counts
    // nearly all of the previous second.
    assert!((20..=22).contains(&admitted), "{alice:?}");
    assert!(alice.iter().all(|s| *s == 200 || *s == 429), "{alice:?}");
    let bob = get(
        &stack,
        "/ml-model-keyed/predict?features=5.1,3.5,1.4,0.2",
        &[("X-API-Key", "bob")],
    );
    assert_eq!(bob.status, 200);
    assert_eq!(bob.header("X-RateLimit-Limit-Second"), Some("20"));
    let unknown = get(&stack, "/no-such-route", &[]);
    assert_eq!(unknown.status, 404);
    let _ = stack.gateway.log_lines();
}
