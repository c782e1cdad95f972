//! `bench-runner`: benchmarks of the rate-limit filter, each reported as a
//! ratio to a baseline measured in the same run.
//!
//! `./build.sh bench` builds the filter, the fixture modules in
//! `bench/fixtures/` and this program in release mode, runs every section
//! and writes the report to `target/bench/latest.txt`. The report is
//! Markdown, so a run can be pasted into `BENCHMARKS.md` as it is.

mod accuracy;
mod contention;
mod e2e;
mod error;
mod host;
mod load;
mod machine;
mod memory;
mod paths;
mod size;
mod stats;
mod table;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use local_gateway::FilterModule;

use crate::error::{Context, Result};
use crate::paths::Paths;
use crate::table::Table;

const HELP: &str = "\
bench-runner: benchmarks of the sliding-window rate-limit filter

Every figure is printed next to its ratio to a baseline measured in the same
run: the no-op and floor fixture modules, one thread, or no filter chain.
The report is Markdown on standard output; progress goes to standard error.

USAGE:
    bench-runner [OPTIONS] [SECTION...]

SECTIONS (default: all, in this order):
    size         .wasm sizes, compile time and worker start time
    host         per-request cost in the proxy-wasm host
    contention   1 to 8 worker threads sharing one store
    memory       bytes per counter and per 100,000 clients
    accuracy     limiter core against an exact sliding log
    e2e          requests/s through the local-gateway binary on 127.0.0.1

OPTIONS:
    --quick      Runs about a tenth of the requests, for trying the runner;
                 the figures are noisier
    -h, --help   Prints this help

Build everything first with ./build.sh bench, which also runs all sections.
";

/// The sections in the order they run.
const SECTIONS: [&str; 6] = ["size", "host", "contention", "memory", "accuracy", "e2e"];

/// The three modules compiled once for the sections that run requests.
pub struct Modules {
    /// The rate-limit filter.
    pub filter: FilterModule,
    /// The fixture whose HTTP context does nothing.
    pub noop: FilterModule,
    /// The fixture with one shared-data read and one CAS write per request.
    pub floor: FilterModule,
}

/// How much work each section does.
struct Settings {
    host: host::Settings,
    contention: contention::Settings,
    memory: memory::Settings,
    size: size::Settings,
    e2e: e2e::Settings,
    accuracy: accuracy::Settings,
}

impl Settings {
    fn full() -> Self {
        Self {
            host: host::Settings {
                warmup: 2_000,
                rounds: 31,
                requests: 5_000,
            },
            contention: contention::Settings {
                requests: 32_000,
                runs: 9,
            },
            memory: memory::Settings {
                clients: 100_000,
                small_zone_entries: 10_000,
            },
            size: size::Settings {
                compiles: 7,
                starts: 50,
            },
            e2e: e2e::Settings {
                rounds: 5,
                run: Duration::from_secs(3),
                warmup: Duration::from_secs(2),
                connections: 8,
            },
            accuracy: accuracy::Settings {
                windows: 600,
                many_client_windows: 120,
                clients: 200,
            },
        }
    }

    fn quick() -> Self {
        Self {
            host: host::Settings {
                warmup: 200,
                rounds: 3,
                requests: 500,
            },
            contention: contention::Settings {
                requests: 1_600,
                runs: 2,
            },
            memory: memory::Settings {
                clients: 10_000,
                small_zone_entries: 1_000,
            },
            size: size::Settings {
                compiles: 2,
                starts: 5,
            },
            e2e: e2e::Settings {
                rounds: 1,
                run: Duration::from_secs(1),
                warmup: Duration::from_secs(1),
                connections: 4,
            },
            accuracy: accuracy::Settings {
                windows: 60,
                many_client_windows: 20,
                clients: 50,
            },
        }
    }
}

/// The command line.
struct Arguments {
    sections: Vec<&'static str>,
    quick: bool,
}

/// Parses the command line; `Ok(None)` means the help was printed.
fn parse_arguments(
    args: impl Iterator<Item = String>,
) -> std::result::Result<Option<Arguments>, String> {
    let mut arguments = Arguments {
        sections: Vec::new(),
        quick: false,
    };
    for arg in args {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(None);
            }
            "--quick" => arguments.quick = true,
            name => match SECTIONS.iter().find(|section| **section == name) {
                Some(section) => arguments.sections.push(section),
                None => {
                    return Err(format!(
                        "unknown section or option {name:?}; expected one of {} or --quick",
                        SECTIONS.join(", ")
                    ))
                }
            },
        }
    }
    if arguments.sections.is_empty() {
        arguments.sections = SECTIONS.to_vec();
    }
    // Run in the documented order whatever order they were given in.
    arguments
        .sections
        .sort_by_key(|name| SECTIONS.iter().position(|section| section == name));
    arguments.sections.dedup();
    Ok(Some(arguments))
}

fn load_modules(paths: &Paths) -> Result<Modules> {
    paths.check_modules()?;
    let load = |path: &std::path::Path| {
        FilterModule::load(path).context(|| format!("compiling {}", path.display()))
    };
    Ok(Modules {
        filter: load(&paths.filter)?,
        noop: load(&paths.noop)?,
        floor: load(&paths.floor)?,
    })
}

/// Runs one section and returns its tables.
fn run_section(
    name: &str,
    paths: &Paths,
    modules: Option<&Modules>,
    settings: &Settings,
) -> Result<Vec<Table>> {
    let modules = || {
        modules.ok_or_else(|| error::Error::new("the modules failed to load; see the error above"))
    };
    match name {
        "size" => Ok(vec![size::run(paths, settings.size)?]),
        "host" => Ok(vec![host::run(modules()?, settings.host)?]),
        "contention" => Ok(vec![contention::run(
            &modules()?.filter,
            settings.contention,
        )?]),
        "memory" => Ok(vec![
            memory::per_key(&modules()?.filter)?,
            memory::many_clients(&modules()?.filter, settings.memory)?,
        ]),
        "accuracy" => Ok(vec![accuracy::run(settings.accuracy)]),
        "e2e" => match e2e::run(paths, settings.e2e)? {
            e2e::Outcome::Measured(table) => Ok(vec![table]),
            e2e::Outcome::Skipped(reason) => {
                let mut table =
                    Table::new("End to end through the local gateway on 127.0.0.1", &[]);
                table.note(format!("skipped: {reason}"));
                Ok(vec![table])
            }
        },
        other => Err(error::Error::new(format!("unknown section {other:?}"))),
    }
}

fn main() -> ExitCode {
    let arguments = match parse_arguments(std::env::args().skip(1)) {
        Ok(Some(arguments)) => arguments,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}\nrun `bench-runner --help` for the usage");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let settings = if arguments.quick {
        Settings::quick()
    } else {
        Settings::full()
    };
    let paths = match Paths::discover() {
        Ok(paths) => paths,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };

    let mut command = vec!["bench-runner".to_owned()];
    command.extend(std::env::args().skip(1));
    println!("# Benchmark run\n");
    println!("- command: `{}`", command.join(" "));
    for line in machine::describe(&paths.root) {
        println!("{line}");
    }
    if arguments.quick {
        println!("- mode: --quick, about a tenth of the requests; noisier figures");
    }
    println!();

    let needs_modules = arguments
        .sections
        .iter()
        .any(|name| matches!(*name, "host" | "contention" | "memory"));
    let mut failed = false;
    let modules = if needs_modules {
        match load_modules(&paths) {
            Ok(modules) => Some(modules),
            Err(error) => {
                eprintln!("error: {error}");
                failed = true;
                None
            }
        }
    } else {
        None
    };

    for name in &arguments.sections {
        eprintln!(
            "bench: running {name} ({:.0} s so far)",
            started.elapsed().as_secs_f64()
        );
        match run_section(name, &paths, modules.as_ref(), &settings) {
            Ok(tables) => {
                for table in tables {
                    failed |= table.has_failure();
                    print!("{}", table.render());
                }
            }
            Err(error) => {
                failed = true;
                println!("### {name}\n\n- error: {error}\n");
                eprintln!("error: section {name}: {error}");
            }
        }
    }

    println!(
        "Run time {:.0} s; load average at the end (1, 5, 15 min): {}.",
        started.elapsed().as_secs_f64(),
        machine::load_average()
    );
    if failed {
        eprintln!("bench: a section failed or a check printed FAIL; see above");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
