//! The `local-gateway` binary: help, bad input, start-up errors and a clean
//! stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{closed_port, get, EchoUpstream, ScratchDir};

const BINARY: &str = env!("CARGO_BIN_EXE_local-gateway");

fn run(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_describes_a_local_runner_and_its_gaps() {
    let output = run(&["--help"]);

    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        text.contains("local runner for trying and testing"),
        "{text}"
    );
    for gap in [
        "Lua plugins",
        "consumers",
        "TLS",
        "regex paths",
        "load balancing",
    ] {
        assert!(text.contains(gap), "help does not mention {gap}");
    }
}

#[test]
fn unknown_option_exits_with_usage_error() {
    let output = run(&["--colour"]);

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("unknown option \"--colour\""));
}

#[test]
fn invalid_listen_address_is_explained() {
    let output = run(&["--listen", "localhost:eighty"]);

    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("expected PORT or IP:PORT"));
}

#[test]
fn missing_config_file_names_the_option() {
    let output = run(&["--config", "/nonexistent/kong.yml"]);

    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("/nonexistent/kong.yml"), "{message}");
    assert!(message.contains("--config"), "{message}");
}

#[test]
fn invalid_config_names_the_field() {
    let dir = ScratchDir::new("cli-invalid");
    let config = dir.write(
        "kong.yml",
        "_format_version: \"3.0\"\nservices:\n  - name: s\n    host: h\n    port: eighty\n",
    );

    let output = run(&["--config", config.to_str().unwrap()]);

    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("services[0].port"),
        "{}",
        stderr(&output)
    );
}

fn one_filter_config(dir: &ScratchDir, filter_config: &str, upstream_port: u16) -> String {
    let yaml = format!(
        r#"_format_version: "3.0"
services:
  - name: echo
    url: http://127.0.0.1:{upstream_port}
    routes:
      - name: probed
        paths: [/]
        filter_chains:
          - filters:
              - name: probe
                config: "{filter_config}"
"#
    );
    dir.write("kong.yml", yaml).to_str().unwrap().to_owned()
}

#[test]
fn missing_filter_names_build_script() {
    let dir = ScratchDir::new("cli-missing");
    let config = one_filter_config(&dir, "x", closed_port());

    let output = run(&[
        "--config",
        &config,
        "--filters-dir",
        dir.path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);

    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("probe.wasm"), "{message}");
    assert!(message.contains("./build.sh"), "{message}");
}

#[test]
fn rejected_filter_config_prints_filter_lines() {
    let dir = ScratchDir::new("cli-reject");
    dir.probe_filter("probe");
    let config = one_filter_config(&dir, "R", closed_port());

    let output = run(&[
        "--config",
        &config,
        "--filters-dir",
        dir.path.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);

    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("rejected its configuration"), "{message}");
    assert!(
        message.contains("probe: rejected configuration"),
        "{message}"
    );
}

/// Kills the child by its PID when a test fails before stopping it.
struct Running {
    child: Child,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serves_then_stops_cleanly_on_sigterm() {
    let upstream = EchoUpstream::start();
    let dir = ScratchDir::new("cli-serve");
    dir.probe_filter("probe");
    let config = one_filter_config(&dir, "x", upstream.port());
    let child = Command::new(BINARY)
        .args([
            "--config",
            &config,
            "--filters-dir",
            dir.path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running { child };
    let (lines_sender, lines) = mpsc::channel();
    let stderr = running.child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_sender.send(line).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| -> String {
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no stderr line containing {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    };

    let listening = wait_for("listening on http://");
    let address = listening
        .split("listening on http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let answer = get(&format!("http://{address}/hello"));
    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .unwrap();
    let stopped = wait_for("stopped; requests served");
    let exit = running.child.wait().unwrap();

    assert_eq!(answer.status, 200);
    assert_eq!(answer.echo().header("x-probe").as_deref(), Some("x"));
    assert!(status.success());
    assert!(stopped.ends_with("requests served: 1"), "{stopped}");
    assert!(exit.success(), "{exit:?}");
}
