//! End to end: requests per second through the `local-gateway` binary on
//! 127.0.0.1, with and without the filter chain, in front of the example
//! model server.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};
use crate::load::{get_status, Generator, LoadResult};
use crate::paths::Paths;
use crate::stats::{median, paired_ratios, quantile, range_percent};
use crate::table::{fixed, thousands, Table};

/// How long a started server may take to respond to its first request,
/// which includes the gateway compiling the filter before it listens.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The range of one gateway's rates, in percent of their median, above which
/// the table warns that other work disturbed the runs.
const NOISY_RANGE_PERCENT: f64 = 20.0;

/// How much load each gateway gets.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Measured rounds; each round loads every gateway once.
    pub rounds: usize,
    /// Length of one measured load run.
    pub run: Duration,
    /// Length of the unmeasured run before the first round.
    pub warmup: Duration,
    /// Keep-alive connections of the load generator.
    pub connections: usize,
}

/// The section's result: a table, or the reason it could not run.
pub enum Outcome {
    /// The measurements.
    Measured(Table),
    /// Why the section did not run.
    Skipped(String),
}

/// A server this section started, stopped by its PID when dropped.
struct Server {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Server {
    fn spawn(name: &str, program: &Path, args: &[String], log: PathBuf) -> Result<Self> {
        let log_file =
            File::create(&log).context(|| format!("creating the log {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context(|| format!("starting {} ({})", name, program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log,
        })
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Waits until GET `path` returns `expected_status`.
    fn wait_ready(&mut self, address: SocketAddr, path: &str, expected_status: u16) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::new(format!(
                    "{} exited with {status} before it served; its log ({}) ends with:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail()
                )));
            }
            match get_status(address, path) {
                Ok(status) if status == expected_status => return Ok(()),
                Ok(status) => last = format!("status {status}"),
                Err(error) => last = error.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(Error::new(format!(
            "{} timed out: GET {path} did not return {expected_status} within {} s (last: \
             {last}); its log ({}) ends with:\n{}",
            self.name,
            READY_TIMEOUT.as_secs(),
            self.log.display(),
            self.log_tail()
        )))
    }
}

impl Drop for Server {
    /// Sends SIGTERM to this server's PID, and SIGKILL when it has not
    /// exited after [`STOP_TIMEOUT`].
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let terminated = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|status| status.success());
        if terminated {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        eprintln!(
            "bench: {} (pid {pid}) did not stop on SIGTERM; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
fn free_address() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .context(|| "finding a free port on 127.0.0.1".to_owned())?;
    listener
        .local_addr()
        .context(|| "reading the free port".to_owned())
}

/// Returns why `program` cannot run, or `None` when `program --help` exits
/// with success.
fn unusable(program: &Path, build: &str) -> Option<String> {
    if !program.is_file() {
        return Some(format!(
            "{} is not built; build it with `{build}`",
            program.display()
        ));
    }
    match Command::new(program).arg("--help").output() {
        Ok(output) if output.status.success() => None,
        Ok(output) => Some(format!(
            "`{} --help` exited with {}",
            program.display(),
            output.status
        )),
        Err(error) => Some(format!("{} could not run: {error}", program.display())),
    }
}

/// Writes a declarative config with one route, `/bench`, to the model
/// server at `upstream`, with or without the rate-limit filter.
fn write_config(path: &Path, upstream: SocketAddr, with_filter: bool) -> Result<()> {
    let filter_chain = if with_filter {
        "        filter_chains:
          - name: bench-rate-limit
            filters:
              - name: sliding_window_rate_limit
                config:
                  second: 1000000000
                  limit_by: ip
                  shm_zone: rate_limits
"
    } else {
        ""
    };
    let text = format!(
        "# Written by bench-runner for one benchmark run.
_format_version: \"3.0\"
services:
  - name: bench-upstream
    protocol: http
    host: {}
    port: {}
    path: /
    routes:
      - name: bench
        paths:
          - /bench
        methods:
          - GET
{filter_chain}",
        upstream.ip(),
        upstream.port()
    );
    std::fs::write(path, text).context(|| format!("writing {}", path.display()))
}

/// One gateway under load.
struct Target {
    label: String,
    path: &'static str,
    address: SocketAddr,
    results: Vec<LoadResult>,
}

/// Starts the model server and three gateways, loads each in turn and
/// returns the table; skips when a binary is missing.
pub fn run(paths: &Paths, settings: Settings) -> Result<Outcome> {
    let gateway = paths.bin_dir.join("local-gateway");
    let model_server = paths.bin_dir.join("model-server");
    if let Some(reason) = unusable(&gateway, "cargo build --release -p local-gateway") {
        return Ok(Outcome::Skipped(reason));
    }
    if let Some(reason) = unusable(&model_server, "cargo build --release -p model-server") {
        return Ok(Outcome::Skipped(reason));
    }

    let work_dir = std::env::temp_dir().join(format!("bench-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&work_dir).context(|| format!("creating {}", work_dir.display()))?;
    let outcome = run_in(paths, settings, &gateway, &model_server, &work_dir);
    if outcome.is_ok() {
        // Only this run's configs and logs are in the folder.
        let _ = std::fs::remove_dir_all(&work_dir);
    } else {
        eprintln!("bench: end-to-end logs kept in {}", work_dir.display());
    }
    outcome
}

fn run_in(
    paths: &Paths,
    settings: Settings,
    gateway: &Path,
    model_server: &Path,
    work_dir: &Path,
) -> Result<Outcome> {
    let generator = Generator::detect();

    let upstream = free_address()?;
    let mut servers = Vec::new();
    let mut model = Server::spawn(
        "model-server",
        model_server,
        &[
            "--host".to_owned(),
            upstream.ip().to_string(),
            "--port".to_owned(),
            upstream.port().to_string(),
            "--threads".to_owned(),
            "2".to_owned(),
        ],
        work_dir.join("model-server.log"),
    )?;
    model.wait_ready(upstream, "/health", 200)?;
    servers.push(model);

    let plain = work_dir.join("no-filter-chain.yml");
    let filtered = work_dir.join("filter-chain.yml");
    write_config(&plain, upstream, false)?;
    write_config(&filtered, upstream, true)?;
    let shipped = paths.root.join("kong/kong.yml");
    // (label, config, request path, whether the config names the model
    // server's service, which --upstream points at this run's model server)
    let specs = [
        ("no filter chain", plain, "/bench/health", false),
        (
            "filter chain, 1 window, limit never reached",
            filtered,
            "/bench/health",
            false,
        ),
        (
            "kong/kong.yml route /ml-model: 100/s and 3000/min per IP",
            shipped,
            "/ml-model/health",
            true,
        ),
    ];

    let mut targets = Vec::new();
    for (index, (label, config, path, shipped_service)) in specs.into_iter().enumerate() {
        let address = free_address()?;
        let mut args: Vec<String> = [
            "--config",
            &config.to_string_lossy(),
            "--listen",
            &address.to_string(),
            "--workers",
            "2",
            "--filters-dir",
            &paths.root.join("dist").to_string_lossy(),
            "--shm-zone",
            "rate_limits",
            "--quiet-filters",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        if shipped_service {
            args.push("--upstream".to_owned());
            args.push(format!("ml-model-service={upstream}"));
        }
        let mut server = Server::spawn(
            &format!("local-gateway ({label})"),
            gateway,
            &args,
            work_dir.join(format!("gateway-{index}.log")),
        )?;
        server.wait_ready(address, path, 200)?;
        servers.push(server);
        targets.push(Target {
            label: label.to_owned(),
            path,
            address,
            results: Vec::new(),
        });
    }

    for target in &targets {
        generator.run(
            target.address,
            target.path,
            settings.connections,
            settings.warmup,
        )?;
    }
    // Each round starts with another gateway, so none always runs first.
    for round in 0..settings.rounds {
        for offset in 0..targets.len() {
            let count = targets.len();
            let target = &mut targets[(round + offset) % count];
            let result = generator.run(
                target.address,
                target.path,
                settings.connections,
                settings.run,
            )?;
            target.results.push(result);
        }
    }
    drop(servers);

    let mut table = Table::new(
        "End to end through the local gateway on 127.0.0.1",
        &[
            "gateway config",
            "requests/s (median)",
            "range",
            "ratio to no filter chain (median)",
            "ratio range",
            "non-2xx share",
            "socket errors",
        ],
    );
    let rates = |target: &Target| -> Vec<f64> {
        target
            .results
            .iter()
            .map(|result| result.requests_per_second)
            .collect()
    };
    // Each ratio pairs a run with the run without a filter chain in the
    // same round.
    let baseline = rates(&targets[0]);
    let mut widest_range: f64 = 0.0;
    for target in &targets {
        let target_rates = rates(target);
        let ratios = paired_ratios(&target_rates, &baseline);
        widest_range = widest_range.max(range_percent(&target_rates));
        let requests: u64 = target.results.iter().map(|result| result.requests).sum();
        let non_success: u64 = target.results.iter().map(|result| result.non_success).sum();
        let errors: u64 = target.results.iter().map(|result| result.errors).sum();
        table.row(vec![
            target.label.clone(),
            thousands(median(&target_rates).round() as u64),
            format!("{}%", fixed(range_percent(&target_rates), 0)),
            fixed(median(&ratios), 2),
            format!(
                "{}–{}",
                fixed(quantile(&ratios, 0.0), 2),
                fixed(quantile(&ratios, 1.0), 2)
            ),
            format!(
                "{}%",
                fixed(non_success as f64 / requests.max(1) as f64 * 100.0, 1)
            ),
            thousands(errors),
        ]);
    }
    table.note(format!(
        "Load: {} with {} keep-alive connections from one client address, GET of the model \
         server's /health through each route; {} rounds of {} s per gateway after a {} s \
         warm-up. Medians over rounds; range is (largest − smallest) / median; each ratio is \
         taken within one round.",
        generator.describe(),
        settings.connections,
        settings.rounds,
        settings.run.as_secs(),
        settings.warmup.as_secs()
    ));
    let shown_gateway = gateway.strip_prefix(&paths.root).unwrap_or(gateway);
    table.note(format!(
        "Each gateway is `{} --workers 2` with the filter from dist/; the model server runs \
         with 2 threads. The load generator, the gateways and the model server share this \
         machine's cores, so the figures describe this setup, not Kong.",
        shown_gateway.display()
    ));
    table.note(
        "The first two configs are written to /tmp for the run and differ only in the filter \
         chain. The third is the shipped config: after its budget the filter answers 429 \
         itself and the upstream is not called, so its rate mostly measures the limited path.",
    );
    if widest_range > NOISY_RANGE_PERCENT {
        table.note(format!(
            "The runs of one gateway differed by up to {}% of their median, so other work \
             competed for the cores during this section; the medians are less certain than \
             the other sections' figures.",
            fixed(widest_range, 0)
        ));
    }
    Ok(Outcome::Measured(table))
}
