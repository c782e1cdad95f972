//! Size: the `.wasm` files, the time to compile them and the time to start
//! one configured worker.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use local_gateway::{FilterModule, SharedStore, Worker, WorkerOptions};

use crate::error::{Context, Result};
use crate::paths::Paths;
use crate::stats::{iqr_percent, median};
use crate::table::{fixed, thousands, Table};

/// The config every module starts with; the fixtures ignore it.
const CONFIG: &str = r#"{"second": 100}"#;

/// How often each step is repeated.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Compilations of each module.
    pub compiles: usize,
    /// Worker starts of each module.
    pub starts: usize,
}

fn compile(path: &Path) -> Result<(FilterModule, f64)> {
    let started = Instant::now();
    let module = FilterModule::load(path).context(|| format!("compiling {}", path.display()))?;
    Ok((module, started.elapsed().as_secs_f64() * 1_000.0))
}

fn start_worker(module: &FilterModule) -> Result<f64> {
    let options = WorkerOptions::new(CONFIG).store(Arc::new(SharedStore::kong()));
    let started = Instant::now();
    let worker = Worker::start(module, options)
        .context(|| format!("starting a worker of {}", module.name()))?;
    let millis = started.elapsed().as_secs_f64() * 1_000.0;
    drop(worker);
    Ok(millis)
}

/// Measures the three modules and returns the table.
pub fn run(paths: &Paths, settings: Settings) -> Result<Table> {
    let modules = [
        ("no-op fixture", &paths.noop),
        ("floor fixture", &paths.floor),
        ("rate-limit filter", &paths.filter),
    ];
    let mut sizes = Vec::new();
    for (_, path) in modules {
        let metadata = std::fs::metadata(path)
            .context(|| format!("reading the size of {}", path.display()))?;
        sizes.push(metadata.len());
    }

    // Repeats interleave the modules, like the other sections.
    let mut compile_ms = vec![Vec::new(); modules.len()];
    let mut compiled = Vec::new();
    for repeat in 0..settings.compiles {
        for (index, (_, path)) in modules.iter().enumerate() {
            let (module, millis) = compile(path)?;
            compile_ms[index].push(millis);
            if repeat == 0 {
                compiled.push(module);
            }
        }
    }
    let mut start_ms = vec![Vec::new(); modules.len()];
    for _ in 0..settings.starts {
        for (index, module) in compiled.iter().enumerate() {
            start_ms[index].push(start_worker(module)?);
        }
    }

    let mut table = Table::new(
        "Size: modules, compile time and worker start",
        &[
            "module",
            ".wasm bytes",
            "ratio to no-op",
            "compile ms (median)",
            "IQR",
            "ratio to no-op",
            "worker start ms (median)",
            "IQR",
            "ratio to no-op",
        ],
    );
    let noop_compile = median(&compile_ms[0]);
    let noop_start = median(&start_ms[0]);
    for (index, (label, _)) in modules.iter().enumerate() {
        let compile = median(&compile_ms[index]);
        let start = median(&start_ms[index]);
        table.row(vec![
            (*label).to_owned(),
            thousands(sizes[index]),
            fixed(sizes[index] as f64 / sizes[0] as f64, 1),
            fixed(compile, 1),
            format!("{}%", fixed(iqr_percent(&compile_ms[index]), 0)),
            fixed(compile / noop_compile, 1),
            fixed(start, 2),
            format!("{}%", fixed(iqr_percent(&start_ms[index]), 0)),
            fixed(start / noop_start, 1),
        ]);
    }
    table.note(format!(
        "Compile is `FilterModule::load` (read the file, build a wasmtime engine, compile the \
         module), median of {} runs. Worker start is `Worker::start` (instantiate, \
         `proxy_on_vm_start`, `proxy_on_configure` with `{CONFIG}`), median of {} runs. \
         IQR is the interquartile range over the median.",
        settings.compiles, settings.starts
    ));
    table.note(
        "The filter's size is dist/sliding_window_rate_limit.wasm as ./build.sh writes it; \
         all three modules use the workspace release profile.",
    );
    Ok(table)
}
