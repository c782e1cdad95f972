//! Starts the real `model-server` binary on a free loopback port and talks
//! to it over HTTP.

// The helpers below run only inside tests, where a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running server, stopped with SIGTERM (or killed) when dropped.
struct ServerProcess {
    child: Child,
    base_url: String,
    log: Arc<Mutex<Vec<String>>>,
    log_reader: Option<thread::JoinHandle<()>>,
    agent: ureq::Agent,
}

impl ServerProcess {
    /// Starts the binary with `--port 0` and reads the chosen address from
    /// its start log line.
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_model-server"))
            .args(["--host", "127.0.0.1", "--port", "0", "--threads", "3"])
            .env_remove("HOST")
            .env_remove("PORT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("failed to start the model-server binary");

        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let log_writer = Arc::clone(&log);
        let log_reader = thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some((_, address)) = line.split_once("listening on http://") {
                    let address = address.split_whitespace().next().unwrap_or("").to_string();
                    let _ = address_sender.send(address);
                }
                log_writer.lock().unwrap().push(line);
            }
        });

        let address = match address_receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server printed no start line; log: {:?}",
                    log.lock().unwrap()
                );
            }
        };
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        Self {
            child,
            base_url: format!("http://{address}"),
            log,
            log_reader: Some(log_reader),
            agent,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request and returns the status, Content-Type and body, for
    /// error statuses too.
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
        let request = self.agent.request(method, &self.url(path));
        let result = match body {
            Some(body) => request
                .set("Content-Type", "application/json")
                .send_string(body),
            None => request.call(),
        };
        let response = match result {
            Ok(response) => response,
            Err(ureq::Error::Status(_, response)) => response,
            Err(e) => panic!("{method} {path} failed: {e}"),
        };
        let status = response.status();
        let content_type = response.header("Content-Type").unwrap_or("").to_string();
        let text = response.into_string().unwrap();
        (status, content_type, text)
    }

    fn call_json(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, content_type, text) = self.call(method, path, body);
        assert_eq!(content_type, "application/json", "{method} {path}");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: invalid JSON {text:?}: {e}"));
        (status, value)
    }

    /// Runs `model-server --health-check` against this server.
    fn health_check(&self) -> std::process::ExitStatus {
        let address = self.base_url.trim_start_matches("http://");
        let (host, port) = address.rsplit_once(':').unwrap();
        Command::new(env!("CARGO_BIN_EXE_model-server"))
            .args(["--health-check", "--host", host, "--port", port])
            .stderr(Stdio::null())
            .status()
            .unwrap()
    }

    fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM, waits for the process to exit and for its whole log.
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The pipe is closed now, so the reader ends after the last line.
                if let Some(reader) = self.log_reader.take() {
                    reader.join().unwrap();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit within 10 s of SIGTERM"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Returns the payloads of the `data:` lines of an event stream.
fn event_payloads(stream: &str) -> Vec<&str> {
    stream
        .split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| event.strip_prefix("data: ").unwrap())
        .collect()
}

#[test]
fn binary_serves_every_endpoint() {
    let mut server = ServerProcess::start();

    let (status, body) = server.call_json("GET", "/health", None);
    assert_eq!(status, 200);
    assert_eq!(body, json!({"status": "ok"}));

    let (status, body) = server.call_json("GET", "/", None);
    assert_eq!(status, 200);
    assert_eq!(body["models"][0]["id"], "iris-softmax");

    let (status, body) = server.call_json(
        "POST",
        "/predict",
        Some(r#"{"features": [5.1, 3.5, 1.4, 0.2]}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(body["model"], "iris-softmax");
    assert_eq!(body["predictions"][0]["label"], "setosa");

    let (status, body) = server.call_json("GET", "/predict?features=6.3,3.3,6.0,2.5", None);
    assert_eq!(status, 200);
    assert_eq!(body["predictions"][0]["label"], "virginica");

    let (status, body) = server.call_json(
        "POST",
        "/v1/completions",
        Some(r#"{"model": "tiny-markov", "prompt": "The old bridge", "max_tokens": 12}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(body["object"], "text_completion");
    let completion_tokens = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion_tokens <= 12);
    assert_eq!(body["usage"]["prompt_tokens"], 3);
    assert_eq!(body["usage"]["total_tokens"], 3 + completion_tokens);

    let (status, content_type, stream) = server.call(
        "POST",
        "/v1/chat/completions",
        Some(r#"{"model": "tiny-markov-large", "messages": [{"role": "user", "content": "The keeper"}], "max_tokens": 8, "stream": true}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/event-stream");
    let payloads = event_payloads(&stream);
    assert_eq!(payloads.last(), Some(&"[DONE]"));
    let usage_event: Value = serde_json::from_str(payloads[payloads.len() - 2]).unwrap();
    assert_eq!(usage_event["usage"]["prompt_tokens"], 2);
    assert!(usage_event["usage"]["total_tokens"].as_u64().unwrap() <= 2 + 8);

    assert!(
        server.health_check().success(),
        "--health-check against a running server"
    );

    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(
        !server.health_check().success(),
        "--health-check after the server stopped"
    );
    let log = server.log_lines();
    assert!(
        log.iter().any(|line| line.contains("training accuracy")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|line| line.starts_with("POST /v1/completions 200 ")
                && line.contains(&format!("total_tokens={}", 3 + completion_tokens))),
        "{log:?}"
    );
    assert_eq!(log.last().map(String::as_str), Some("model-server stopped"));
}

#[test]
fn binary_rejects_bad_input() {
    let server = ServerProcess::start();

    let cases = [
        (
            "POST",
            "/predict",
            "{\"features\": [1, 2, 3]}",
            400,
            "got 3 values",
        ),
        (
            "POST",
            "/predict",
            "{\"features\": [1, \"x\", 3, 4]}",
            400,
            "features[1] must be a number",
        ),
        (
            "POST",
            "/predict",
            "{\"sepal\": 1}",
            400,
            "missing field features",
        ),
        ("POST", "/predict", "{not json", 400, "not valid JSON"),
        ("GET", "/nowhere", "", 404, "no route for /nowhere"),
    ];
    for (method, path, body, expected_status, expected_message) in cases {
        let body = (method == "POST").then_some(body);
        let (status, value) = server.call_json(method, path, body);
        assert_eq!(status, expected_status, "{method} {path} {body:?}");
        let message = value["error"].as_str().unwrap();
        assert!(message.contains(expected_message), "{message}");
    }

    let (status, value) = server.call_json(
        "POST",
        "/v1/completions",
        Some(r#"{"model": "gpt-4", "prompt": "hi"}"#),
    );
    assert_eq!(status, 404);
    assert_eq!(value["error"]["code"], "model_not_found");

    let (status, value) = server.call_json(
        "POST",
        "/v1/completions",
        Some(r#"{"model": "tiny-markov", "prompt": "hi", "max_tokens": 4097}"#),
    );
    assert_eq!(status, 400);
    assert_eq!(value["error"]["param"], "max_tokens");

    let oversized = format!("{{\"features\": \"{}\"}}", "a".repeat(1024 * 1024));
    let (status, value) = server.call_json("POST", "/predict", Some(&oversized));
    assert_eq!(status, 413);
    assert!(value["error"].as_str().unwrap().contains("1 MiB"));
}

#[test]
fn binary_serves_concurrent_clients() {
    let server = Arc::new(ServerProcess::start());
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let server = Arc::clone(&server);
            thread::spawn(move || {
                let body = format!(
                    r#"{{"model": "tiny-markov", "prompt": "cart {i}", "max_tokens": 32}}"#
                );
                for _ in 0..10 {
                    let (status, value) = server.call_json("POST", "/v1/completions", Some(&body));
                    assert_eq!(status, 200);
                    assert!(value["usage"]["total_tokens"].as_u64().unwrap() >= 2);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    // The server logs a request after sending the reply, so wait briefly for
    // the last lines.
    let deadline = Instant::now() + Duration::from_secs(5);
    let served = loop {
        let served = server
            .log_lines()
            .iter()
            .filter(|line| line.starts_with("POST /v1/completions 200 "))
            .count();
        if served >= 80 || Instant::now() > deadline {
            break served;
        }
        thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(served, 80);
}
