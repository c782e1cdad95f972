//! `local-gateway`: serves a Kong declarative config on this machine with the
//! proxy-wasm filters in `dist/`, for trying and testing filters.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;

use local_gateway::config::{self, GatewayConfig};
use local_gateway::gateway::{self, log, GatewayOptions, Level};

const HELP: &str = "\
local-gateway: a local runner for trying and testing proxy-wasm filters

It serves a Kong declarative config (kong.yml, _format_version \"3.0\") on this
machine: it matches routes by path prefix and method, runs each route's filter
chain (the service's filters, then the route's) in an embedded proxy-wasm
host that behaves like Kong's Wasm engine, and proxies admitted requests to
the service's upstream over HTTP. Worker threads share one shared-data store
with Kong's semantics, like the nginx workers of one Kong node.

It is not Kong. It does not implement: Lua plugins (the plugins section is
ignored), consumers and authentication, TLS (no https listener, no https
upstreams), host, header, SNI and L4 route matching, regex paths, the
expressions router, upstreams/targets load balancing and health checks,
retries, preserve_host, the Admin API, streaming (request and response
bodies are buffered), trailers, and filter callouts (dispatch_http_call) and
timers (on_tick).

USAGE:
    local-gateway [OPTIONS]

OPTIONS:
    -c, --config <PATH>        Declarative config to serve [default: kong/kong.yml]
    -l, --listen <ADDR>        Address to listen on, as PORT or IP:PORT
                               [default: 127.0.0.1:8000]
    -w, --workers <N>          Worker threads, each with its own filter instances
                               [default: 2]
        --filters-dir <DIR>    Folder that holds <filter name>.wasm [default: dist]
        --shm-entries <N>      Capacity of each shared-data zone, in entries
                               [default: 49152, about a 12m Kong zone]
        --shm-zone <NAME>      Declares the shared-data zone NAME besides \"*\",
                               like nginx_wasm_shm_kv_NAME; repeatable
        --shm-no-eviction      Fails writes to a full zone instead of evicting
                               the least recently used entry (eviction=none)
        --upstream <SERVICE=HOST:PORT>
                               Sends the service's requests to HOST:PORT instead
                               of its configured host and port; repeatable
        --quiet-filters        Does not print the filters' log lines
    -h, --help                 Prints this help
    -V, --version              Prints the version

Build the rate-limit filter first with ./build.sh, which writes
dist/sliding_window_rate_limit.wasm. Ctrl-C or SIGTERM stops the gateway.
";

/// The settings from the command line.
struct Arguments {
    config_path: PathBuf,
    options: GatewayOptions,
}

/// An invalid command line.
struct UsageError(String);

fn main() -> ExitCode {
    let arguments = match parse_arguments(std::env::args().skip(1)) {
        Ok(Some(arguments)) => arguments,
        Ok(None) => return ExitCode::SUCCESS,
        Err(UsageError(message)) => {
            eprintln!("error: {message}\nrun `local-gateway --help` for the options");
            return ExitCode::from(2);
        }
    };
    match run(&arguments) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(arguments: &Arguments) -> Result<(), String> {
    let path = &arguments.config_path;
    let text = std::fs::read_to_string(path).map_err(|source| {
        format!(
            "failed to read the config {}: {source}; pass its path with --config",
            path.display()
        )
    })?;
    let config = config::parse(&text)
        .map_err(|source| format!("invalid config {}: {source}", path.display()))?;
    for warning in &config.warnings {
        log(Level::Warn, format_args!("{}: {warning}", path.display()));
    }

    let (stop_sender, stop_receiver) = mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop_sender.send(());
    })
    .map_err(|source| format!("failed to install the Ctrl-C and SIGTERM handler: {source}"))?;

    let running =
        gateway::start(config.clone(), &arguments.options).map_err(|source| source.to_string())?;
    log_start(&config, &arguments.options, running.address(), path);

    // A receive error means the handler's sender is gone, which also means
    // it is time to stop.
    let _ = stop_receiver.recv();
    log(Level::Info, "stopping; waiting for requests in progress");
    let served = running.requests();
    running.stop();
    log(
        Level::Info,
        format_args!("stopped; requests served: {served}"),
    );
    Ok(())
}

fn log_start(
    config: &GatewayConfig,
    options: &GatewayOptions,
    address: SocketAddr,
    path: &std::path::Path,
) {
    log(
        Level::Info,
        format_args!(
            "listening on http://{address} with {} workers, config {}, filters from {}",
            options.workers,
            path.display(),
            options.filters_dir.display()
        ),
    );
    for route in &config.routes {
        let service = route.service.and_then(|index| config.services.get(index));
        let target = service.map_or_else(
            || "no service".to_owned(),
            |service| {
                let name = service.name.as_deref().unwrap_or(&service.id);
                let address = options
                    .upstream_overrides
                    .iter()
                    .find(|(key, _, _)| {
                        service.name.as_deref() == Some(key.as_str()) || service.id == *key
                    })
                    .map_or_else(
                        || format!("{}:{}", service.host, service.port),
                        |(_, host, port)| format!("{host}:{port}"),
                    );
                format!("service {name} (http://{address}{})", service.path)
            },
        );
        let filters: Vec<&str> = service
            .map_or(&[][..], |service| service.filters.as_slice())
            .iter()
            .chain(&route.filters)
            .map(|filter| filter.name.as_str())
            .collect();
        let methods = if route.methods.is_empty() {
            "any method".to_owned()
        } else {
            route.methods.join(",")
        };
        let paths = if route.paths.is_empty() {
            "any path".to_owned()
        } else {
            route.paths.join(",")
        };
        log(
            Level::Info,
            format_args!(
                "route {}: {methods} {paths} -> {target}, filters [{}]",
                route.label(),
                filters.join(", ")
            ),
        );
    }
    let zones: Vec<&str> = std::iter::once("*")
        .chain(options.shm_zones.iter().map(String::as_str))
        .collect();
    log(
        Level::Info,
        format_args!(
            "shared data: zones [{}] of {} entries each, {}",
            zones.join(", "),
            options.shm_entries,
            if options.shm_no_eviction {
                "failing writes when full"
            } else {
                "evicting the least recently used entry when full"
            }
        ),
    );
}

/// Parses the command line; `Ok(None)` means help or the version was
/// printed.
fn parse_arguments(
    mut args: impl Iterator<Item = String>,
) -> Result<Option<Arguments>, UsageError> {
    let mut arguments = Arguments {
        config_path: PathBuf::from("kong/kong.yml"),
        options: GatewayOptions::default(),
    };
    while let Some(flag) = args.next() {
        let (flag, inline) = match flag.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_owned(), Some(value.to_owned()))
            }
            _ => (flag, None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| UsageError(format!("{name} needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("local-gateway {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "-c" | "--config" => arguments.config_path = PathBuf::from(value("--config")?),
            "-l" | "--listen" => arguments.options.listen = parse_listen(&value("--listen")?)?,
            "-w" | "--workers" => {
                arguments.options.workers = parse_count("--workers", &value("--workers")?, 1)?;
            }
            "--filters-dir" => {
                arguments.options.filters_dir = PathBuf::from(value("--filters-dir")?)
            }
            "--shm-entries" => {
                arguments.options.shm_entries =
                    parse_count("--shm-entries", &value("--shm-entries")?, 1)?;
            }
            "--shm-zone" => arguments.options.shm_zones.push(value("--shm-zone")?),
            "--shm-no-eviction" => arguments.options.shm_no_eviction = true,
            "--upstream" => {
                let override_ = parse_upstream(&value("--upstream")?)?;
                arguments.options.upstream_overrides.push(override_);
            }
            "--quiet-filters" => arguments.options.echo_filter_logs = false,
            other => return Err(UsageError(format!("unknown option {other:?}"))),
        }
    }
    Ok(Some(arguments))
}

fn parse_listen(text: &str) -> Result<SocketAddr, UsageError> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        UsageError(format!(
            "invalid --listen {text:?}; expected PORT or IP:PORT, such as 127.0.0.1:8000"
        ))
    })
}

fn parse_count(flag: &str, text: &str, min: usize) -> Result<usize, UsageError> {
    match text.parse::<usize>() {
        Ok(count) if count >= min => Ok(count),
        _ => Err(UsageError(format!(
            "invalid {flag} {text:?}; expected an integer of at least {min}"
        ))),
    }
}

fn parse_upstream(text: &str) -> Result<(String, String, u16), UsageError> {
    let invalid = || {
        UsageError(format!(
            "invalid --upstream {text:?}; expected SERVICE=HOST:PORT, such as ml-model-service=127.0.0.1:8080"
        ))
    };
    let (service, address) = text.split_once('=').ok_or_else(invalid)?;
    let (host, port) = address.rsplit_once(':').ok_or_else(invalid)?;
    let port = port.parse::<u16>().map_err(|_| invalid())?;
    if service.is_empty() || host.is_empty() || port == 0 {
        return Err(invalid());
    }
    Ok((service.to_owned(), host.to_owned(), port))
}
