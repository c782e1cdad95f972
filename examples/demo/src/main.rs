//! The project's demo: starts the example model server and the local gateway
//! with `kong/kong.yml`, sends inference traffic from several clients, and
//! prints what the rate-limiting filter admitted and limited.
//!
//! Run it with `./build.sh demo`, which builds everything first. Every
//! process it starts is stopped when it ends, also on Ctrl-C.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the request-rate part of the demo sends traffic.
const RUN_SECONDS: u64 = 5;

/// One simulated client of the keyed route.
struct Client {
    name: &'static str,
    description: &'static str,
    /// Request path on the gateway.
    path: &'static str,
    /// `X-API-Key`, or `None` to be counted by IP.
    api_key: Option<&'static str>,
    /// Send times in milliseconds from the start.
    schedule: Vec<u64>,
}

fn steady(per_second: u64) -> Vec<u64> {
    (0..per_second * RUN_SECONDS)
        .map(|i| i * 1000 / per_second)
        .collect()
}

fn bursts(size: u64, every_ms: u64) -> Vec<u64> {
    (0..RUN_SECONDS * 1000 / every_ms)
        .flat_map(|burst| std::iter::repeat_n(burst * every_ms, size as usize))
        .collect()
}

fn clients() -> Vec<Client> {
    vec![
        Client {
            name: "alice",
            description: "10/s, under her key's 20/s",
            path: "/ml-model-keyed/predict?features=5.1,3.5,1.4,0.2",
            api_key: Some("alice-key"),
            schedule: steady(10),
        },
        Client {
            name: "bob",
            description: "35/s, over his key's 20/s",
            path: "/ml-model-keyed/predict?features=6.7,3.0,5.2,2.3",
            api_key: Some("bob-key"),
            schedule: steady(35),
        },
        Client {
            name: "carol",
            description: "bursts of 40 every 2.5 s",
            path: "/ml-model-keyed/predict?features=5.9,3.0,4.2,1.5",
            api_key: Some("carol-key"),
            schedule: bursts(40, 2500),
        },
        Client {
            name: "127.0.0.1",
            description: "150/s by IP, over the route's 100/s",
            path: "/ml-model/predict?features=6.3,2.9,5.6,1.8",
            api_key: None,
            schedule: steady(150),
        },
    ]
}

/// Stops the started processes when dropped.
struct Processes(Arc<Mutex<Vec<Child>>>);

impl Processes {
    fn stop_all(children: &Mutex<Vec<Child>>) {
        let mut children = children
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for child in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        children.clear();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        Processes::stop_all(&self.0);
    }
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

fn wait_for_port(port: u16, what: &str, child: &mut Child, log: &Path) -> Result<(), String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "{what} exited with {status} before it listened; see {}",
                log.display()
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{what} did not listen on 127.0.0.1:{port} within 30 s; see {}",
        log.display()
    ))
}

fn spawn(binary: &Path, arguments: &[String], log: &Path) -> Result<Child, String> {
    if !binary.exists() {
        return Err(format!(
            "{} not found; run ./build.sh demo, which builds it",
            binary.display()
        ));
    }
    let file =
        std::fs::File::create(log).map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    let stdout = file
        .try_clone()
        .map_err(|e| format!("cannot write {}: {e}", log.display()))?;
    Command::new(binary)
        .args(arguments)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))
}

/// The status, headers and body of one response.
type Reply = (u16, Vec<(String, String)>, String);

/// Sends a request through the gateway and returns its response.
fn send(
    agent: &ureq::Agent,
    gateway: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Result<Reply, String> {
    let url = format!("{gateway}{path}");
    let request = match body {
        Some(_) => agent.post(&url),
        None => agent.get(&url),
    };
    let request = match key {
        Some(key) => request.set("X-API-Key", key),
        None => request,
    };
    let result = match body {
        Some(body) => request.send_json(body.clone()),
        None => request.call(),
    };
    let response = match result {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(error) => return Err(format!("request to {url} failed: {error}")),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            response
                .header(&name)
                .map(|value| (name.clone(), value.to_string()))
        })
        .collect();
    let body = response
        .into_string()
        .map_err(|e| format!("reading {url}: {e}"))?;
    Ok((status, headers, body))
}

struct Outcome {
    second: usize,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

fn run_client(client: &Client, gateway: &str, start: Instant) -> Result<Vec<Outcome>, String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let mut outcomes = Vec::with_capacity(client.schedule.len());
    for at_ms in &client.schedule {
        let due = start + Duration::from_millis(*at_ms);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let second = usize::try_from(start.elapsed().as_secs()).unwrap_or(usize::MAX);
        let (status, headers, body) = send(&agent, gateway, client.path, client.api_key, None)?;
        outcomes.push(Outcome {
            second,
            status,
            headers,
            body,
        });
    }
    Ok(outcomes)
}

fn print_rate_table(clients: &[Client], results: &[Vec<Outcome>]) {
    println!();
    println!("Requests per second, admitted (200) / limited (429):");
    println!();
    let mut title = format!("{:>6}", "second");
    for client in clients {
        title.push_str(&format!("  {:>12}", client.name));
    }
    println!("{title}");
    for second in 0..usize::try_from(RUN_SECONDS).unwrap_or(5) {
        let mut row = format!("{:>6}", second + 1);
        for outcomes in results {
            let admitted = outcomes
                .iter()
                .filter(|o| o.second == second && o.status == 200)
                .count();
            let limited = outcomes
                .iter()
                .filter(|o| o.second == second && o.status == 429)
                .count();
            row.push_str(&format!("  {:>12}", format!("{admitted} / {limited}")));
        }
        println!("{row}");
    }
    let mut totals = format!("{:>6}", "total");
    for outcomes in results {
        let admitted = outcomes.iter().filter(|o| o.status == 200).count();
        let limited = outcomes.iter().filter(|o| o.status == 429).count();
        totals.push_str(&format!("  {:>12}", format!("{admitted} / {limited}")));
    }
    println!("{totals}");
    println!();
    for client in clients {
        println!("  {:>10}: {}", client.name, client.description);
    }
    println!();
    println!("Rows count seconds from the start of the demo, not the filter's aligned");
    println!("windows, so one row can hold parts of two windows and a little more than");
    println!("the per-second limit; see Limitations in README.md.");
    let others: usize = results
        .iter()
        .flatten()
        .filter(|o| o.status != 200 && o.status != 429)
        .count();
    if others > 0 {
        println!("  {others} responses had another status; see the gateway log");
    }
}

fn print_response(status: u16, headers: &[(String, String)], body: &str) {
    println!("HTTP/1.1 {status}");
    let mut headers = headers.to_vec();
    headers.sort();
    for (name, value) in headers {
        println!("{name}: {value}");
    }
    println!();
    println!("{}", body.trim_end());
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map_or("-", |(_, v)| v.as_str())
}

fn token_demo(gateway: &str) -> Result<(), String> {
    println!();
    println!("Token budget on /llm: 2000 tokens a minute per API key and model. The filter");
    println!("reserves max_tokens when it admits a completion and settles against the");
    println!("model's usage.total_tokens when the response arrives.");
    println!();
    println!(
        "{:>3}  {:>12}  {:>17}  {:>6}  {:>10}  {:>4}  {:>9}  {:>11}",
        "#", "key", "model", "status", "max_tokens", "used", "remaining", "retry-after"
    );
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let mut number = 0;
    let mut row = |key: &str, model: &str, max_tokens: u64| -> Result<u16, String> {
        number += 1;
        let body = serde_json::json!({
            "model": model,
            "prompt": "The bridge keeper counted",
            "max_tokens": max_tokens,
        });
        let (status, headers, body) = send(
            &agent,
            gateway,
            "/llm/v1/completions",
            Some(key),
            Some(&body),
        )?;
        let used = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.pointer("/usage/total_tokens")
                    .and_then(serde_json::Value::as_u64)
            })
            .map_or("-".to_string(), |n| n.to_string());
        println!(
            "{number:>3}  {key:>12}  {model:>17}  {status:>6}  {max_tokens:>10}  {used:>4}  {:>9}  {:>11}",
            header(&headers, "X-RateLimit-Remaining-Tokens-Minute"),
            header(&headers, "Retry-After"),
        );
        // Stay under the route's 10 requests a second, so tokens are what runs out.
        thread::sleep(Duration::from_millis(150));
        Ok(status)
    };
    for _ in 0..30 {
        if row("free-key", "tiny-markov-large", 600)? == 429 {
            break;
        }
    }
    row("free-key", "tiny-markov-large", 50)?;
    row("free-key", "tiny-markov", 600)?;
    row("team-pro-key", "tiny-markov-large", 600)?;
    println!();
    println!("The remaining column counts the settled usage plus the reservation of the");
    println!("request itself. Once a 600-token reservation no longer fits, a 50-token one");
    println!("still does; the same key has a separate budget for the other model, and");
    println!("team-pro-key is on the pro plan with 20000 tokens a minute.");
    Ok(())
}

fn run(root: &Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the demo binary: {e}"))?;
    let bin = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let logs = root.join("target").join("demo");
    std::fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;

    let model_port = free_port()?;
    let gateway_port = free_port()?;
    let children = Arc::new(Mutex::new(Vec::new()));
    let processes = Processes(Arc::clone(&children));
    let on_signal = Arc::clone(&children);
    ctrlc::set_handler(move || {
        Processes::stop_all(&on_signal);
        std::process::exit(130);
    })
    .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;

    let model_log = logs.join("model-server.log");
    let mut model = spawn(
        &bin.join("model-server"),
        &[
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            model_port.to_string(),
        ],
        &model_log,
    )?;
    let model_ready = wait_for_port(model_port, "the model server", &mut model, &model_log);
    children.lock().map_err(|_| "lock poisoned")?.push(model);
    model_ready?;
    println!(
        "model server   http://127.0.0.1:{model_port}  (log: {})",
        model_log.display()
    );

    let gateway_log = logs.join("local-gateway.log");
    let mut gateway = spawn(
        &bin.join("local-gateway"),
        &[
            "--config".into(),
            root.join("kong/kong.yml").display().to_string(),
            "--filters-dir".into(),
            root.join("dist").display().to_string(),
            "--listen".into(),
            format!("127.0.0.1:{gateway_port}"),
            "--workers".into(),
            "2".into(),
            "--upstream".into(),
            format!("ml-model-service=127.0.0.1:{model_port}"),
            // Declares the counters' zone, as kong/kong.conf does.
            "--shm-zone".into(),
            "rate_limits".into(),
        ],
        &gateway_log,
    )?;
    let gateway_ready = wait_for_port(
        gateway_port,
        "the local gateway",
        &mut gateway,
        &gateway_log,
    );
    children.lock().map_err(|_| "lock poisoned")?.push(gateway);
    gateway_ready?;
    let gateway_url = format!("http://127.0.0.1:{gateway_port}");
    println!("local gateway  {gateway_url}  serving kong/kong.yml with dist/sliding_window_rate_limit.wasm (log: {})", gateway_log.display());
    println!();
    println!("Sending {RUN_SECONDS} s of traffic from 4 clients...");

    let clients = clients();
    let start = Instant::now() + Duration::from_millis(100);
    let results: Vec<Result<Vec<Outcome>, String>> = thread::scope(|scope| {
        let handles: Vec<_> = clients
            .iter()
            .map(|client| {
                let gateway_url = gateway_url.as_str();
                scope.spawn(move || run_client(client, gateway_url, start))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err("a client thread failed".to_string()))
            })
            .collect()
    });
    let results: Vec<Vec<Outcome>> = results.into_iter().collect::<Result<_, _>>()?;
    print_rate_table(&clients, &results);

    if let Some(limited) = results.iter().flatten().find(|o| o.status == 429) {
        println!();
        println!("One limited response in full:");
        println!();
        print_response(limited.status, &limited.headers, &limited.body);
    }
    if let Some(admitted) = results
        .first()
        .and_then(|outcomes| outcomes.iter().find(|o| o.status == 200))
    {
        println!();
        println!("One admitted response (alice):");
        println!();
        print_response(admitted.status, &admitted.headers, &admitted.body);
    }

    token_demo(&gateway_url)?;

    drop(processes);
    println!();
    println!("Stopped the model server and the local gateway.");
    let _ = std::io::stdout().flush();
    Ok(())
}

fn main() {
    let root = std::env::var_os("DEMO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")));
    if let Err(message) = run(&root) {
        eprintln!("demo failed: {message}");
        for log in ["model-server.log", "local-gateway.log"] {
            let path = root.join("target").join("demo").join(log);
            if let Ok(file) = std::fs::File::open(&path) {
                eprintln!("--- last lines of {} ---", path.display());
                let lines: Vec<String> =
                    BufReader::new(file).lines().map_while(Result::ok).collect();
                for line in lines.iter().rev().take(10).rev() {
                    eprintln!("{line}");
                }
            }
        }
        std::process::exit(1);
    }
}
