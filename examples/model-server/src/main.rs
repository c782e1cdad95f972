//! Example ML inference server for the rate-limiting filter's demo.
//!
//! It trains two kinds of small models at start-up and serves them over HTTP:
//! an Iris flower classifier on `/predict` and word Markov chain text models
//! on the OpenAI-compatible `/v1/completions` and `/v1/chat/completions`.
//! The README lists every endpoint with example requests.

mod completions;
mod error;
mod health_check;
mod iris;
mod markov;
mod models;
mod predict;
mod routes;
mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use tiny_http::Server;

use crate::models::Models;

const DEFAULT_PORT: u16 = 8080;
const DEFAULT_THREADS: usize = 4;

const USAGE: &str = "\
Usage: model-server [--host ADDRESS] [--port PORT] [--threads N]
       model-server --health-check [--host ADDRESS] [--port PORT]

Options:
  --host ADDRESS  IP address to listen on (env HOST, default 127.0.0.1;
                  use 0.0.0.0 to accept connections from other hosts)
  --port PORT     TCP port to listen on (env PORT, default 8080; 0 picks a
                  free port, which the start log line shows)
  --threads N     number of worker threads serving requests (env THREADS,
                  default 4)
  --health-check  request GET /health from a server started with the same
                  host and port, exit with 0 if it returns 200, else 1
  -h, --help      print this help

Command-line options override the environment variables.";

/// Listening address and worker thread count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    address: SocketAddr,
    threads: usize,
}

/// Action requested on the command line.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Serve(Config),
    HealthCheck(Config),
    Help,
}

/// Parses the options (without the program name), falling back to the
/// environment through `env`.
fn parse_command(
    args: impl IntoIterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let mut host = env("HOST");
    let mut port = env("PORT");
    let mut threads = env("THREADS");
    let mut health_check = false;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) => (name.to_string(), Some(value.to_string())),
            None => (arg.clone(), None),
        };
        let slot = match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--health-check" if inline_value.is_none() => {
                health_check = true;
                continue;
            }
            "--host" => &mut host,
            "--port" => &mut port,
            "--threads" => &mut threads,
            _ => return Err(format!("unknown option {arg:?}")),
        };
        let value = match inline_value {
            Some(value) => value,
            None => args
                .next()
                .ok_or_else(|| format!("option {name} needs a value"))?,
        };
        *slot = Some(value);
    }

    let ip: IpAddr = match host {
        Some(text) => text.trim().parse().map_err(|_| {
            format!("invalid host {text:?}: expected an IP address such as 127.0.0.1 or 0.0.0.0")
        })?,
        None => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let port: u16 = match port {
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("invalid port {text:?}: expected a number from 0 to 65535"))?,
        None => DEFAULT_PORT,
    };
    let threads: usize = match threads {
        Some(text) => match text.trim().parse() {
            Ok(n) if (1..=256).contains(&n) => n,
            _ => {
                return Err(format!(
                    "invalid thread count {text:?}: expected a number from 1 to 256"
                ))
            }
        },
        None => DEFAULT_THREADS,
    };

    let config = Config {
        address: SocketAddr::new(ip, port),
        threads,
    };
    if health_check {
        Ok(Command::HealthCheck(config))
    } else {
        Ok(Command::Serve(config))
    }
}

fn main() -> ExitCode {
    let config = match parse_command(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(Command::Serve(config)) => config,
        Ok(Command::HealthCheck(config)) => {
            return match health_check::check(config.address) {
                Ok(()) => ExitCode::SUCCESS,
                Err(message) => {
                    eprintln!("model-server: health check failed: {message}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("model-server: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let models = match Models::train() {
        Ok(models) => Arc::new(models),
        Err(message) => {
            eprintln!("model-server: failed to train the models: {message}");
            return ExitCode::FAILURE;
        }
    };
    log_models(&models);

    let server = match Server::http(config.address) {
        Ok(server) => Arc::new(server),
        Err(e) => {
            eprintln!("model-server: failed to listen on {}: {e}", config.address);
            return ExitCode::FAILURE;
        }
    };
    let shutting_down = Arc::new(AtomicBool::new(false));
    install_shutdown_handler(&server, &shutting_down, config.threads);

    eprintln!(
        "model-server {} listening on http://{} with {} worker threads",
        env!("CARGO_PKG_VERSION"),
        server.server_addr(),
        config.threads
    );

    let workers: Vec<_> = (0..config.threads)
        .map(|_| {
            let server = Arc::clone(&server);
            let models = Arc::clone(&models);
            let shutting_down = Arc::clone(&shutting_down);
            thread::spawn(move || server::run_worker(&server, &models, &shutting_down))
        })
        .collect();
    for worker in workers {
        if worker.join().is_err() {
            eprintln!("model-server: a worker thread panicked");
        }
    }

    eprintln!("model-server stopped");
    ExitCode::SUCCESS
}

fn log_models(models: &Models) {
    eprintln!(
        "trained {} on {} rows: training accuracy {:.3}",
        models::IRIS_MODEL_ID,
        models.iris_training_rows,
        models.iris_training_accuracy
    );
    for text_model in &models.text_models {
        eprintln!(
            "trained {} ({}-word context) on {} words: {} distinct words",
            text_model.id,
            text_model.chain.order(),
            text_model.chain.training_words(),
            text_model.chain.vocabulary_size()
        );
    }
    eprintln!(
        "training took {:.1} ms",
        models.training_time.as_secs_f64() * 1000.0
    );
}

/// On SIGINT or SIGTERM, lets each worker finish its current request and
/// then stop. Without the handler the signal's default action ends the
/// process at once (and a container's PID 1 ignores SIGTERM).
fn install_shutdown_handler(server: &Arc<Server>, shutting_down: &Arc<AtomicBool>, threads: usize) {
    let server = Arc::clone(server);
    let shutting_down = Arc::clone(shutting_down);
    let result = ctrlc::set_handler(move || {
        eprintln!("model-server: stopping after the requests in progress");
        shutting_down.store(true, Ordering::SeqCst);
        // Each unblock call wakes one worker waiting in `recv`.
        for _ in 0..threads {
            server.unblock();
        }
    });
    if let Err(e) = result {
        eprintln!(
            "model-server: failed to install the SIGINT/SIGTERM handler: {e}. \
             These signals will end the process without finishing requests in progress."
        );
    }
}

#[cfg(test)]
mod test_support {
    use std::sync::OnceLock;

    use crate::models::Models;

    /// Models trained once and shared by every unit test.
    pub fn models() -> &'static Models {
        static MODELS: OnceLock<Models> = OnceLock::new();
        MODELS.get_or_init(|| Models::train().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Command, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_command(args.iter().map(|a| a.to_string()), move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    fn serve(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse(args, env).unwrap() {
            Command::Serve(config) => config,
            other => panic!("expected a server config, got {other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let config = serve(&[], &[]);
        assert_eq!(config.address, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(config.threads, DEFAULT_THREADS);
    }

    #[test]
    fn environment_sets_host_and_port() {
        let config = serve(&[], &[("HOST", "0.0.0.0"), ("PORT", "9000")]);
        assert_eq!(config.address, "0.0.0.0:9000".parse().unwrap());
    }

    #[test]
    fn flags_override_environment() {
        let config = serve(&["--port", "9100", "--host=::1"], &[("PORT", "9000")]);
        assert_eq!(config.address, "[::1]:9100".parse().unwrap());
    }

    #[test]
    fn bad_options_are_rejected() {
        for (args, expected) in [
            (vec!["--port", "http"], "invalid port"),
            (vec!["--port", "70000"], "invalid port"),
            (vec!["--port"], "needs a value"),
            (vec!["--host", "localhost"], "invalid host"),
            (vec!["--threads", "0"], "invalid thread count"),
            (vec!["--verbose"], "unknown option"),
        ] {
            let message = parse(&args, &[]).unwrap_err();
            assert!(message.contains(expected), "{args:?}: {message}");
        }
    }

    #[test]
    fn health_check_flag() {
        let command = parse(&["--health-check"], &[("PORT", "9000")]).unwrap();
        let expected = Config {
            address: "127.0.0.1:9000".parse().unwrap(),
            threads: DEFAULT_THREADS,
        };
        assert_eq!(command, Command::HealthCheck(expected));
    }

    #[test]
    fn help_flag() {
        assert_eq!(parse(&["--help"], &[]).unwrap(), Command::Help);
    }
}
