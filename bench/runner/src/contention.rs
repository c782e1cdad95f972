//! Contention: worker threads, one guest each, that share one store, like
//! the nginx workers of one Kong node.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use local_gateway::{
    start_workers, FilterModule, ManualClock, Request, SharedStore, UpstreamResponse, WorkerOptions,
};

use crate::error::{Context, Error, Result};
use crate::stats::{iqr_percent, median, paired_ratios, quantile};
use crate::table::{fixed, thousands, Table};

/// The thread counts measured.
const THREADS: [usize; 4] = [1, 2, 4, 8];

/// How many requests each run sends and how often each setup is repeated.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Requests in one run, split evenly over the threads; a multiple of 16.
    pub requests: usize,
    /// Runs of each setup.
    pub runs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Every thread sends as the same client, so all share one counter.
    One,
    /// Each thread sends as its own client, with its own counter.
    Distinct,
}

/// Totals of one run over all its threads.
struct RunResult {
    requests_per_second: f64,
    cas_mismatches: u64,
    /// Admitted requests of each key: one entry for [`Keys::One`], one per
    /// thread for [`Keys::Distinct`].
    admitted: Vec<u64>,
    /// Responses that were neither 200 nor 429.
    other: u64,
}

struct Counts {
    admitted: u64,
    other: u64,
}

/// Returns the limit of each key: half of the requests that reach it, so
/// half of them are admitted and half limited.
fn limit_per_key(keys: Keys, threads: usize, requests: usize) -> usize {
    match keys {
        Keys::One => requests / 2,
        Keys::Distinct => requests / threads / 2,
    }
}

fn run_once(
    filter: &FilterModule,
    keys: Keys,
    threads: usize,
    requests: usize,
) -> Result<RunResult> {
    let limit = limit_per_key(keys, threads, requests);
    // The clock does not move, so no window slides and no budget comes back
    // during the run: exactly `limit` requests of each key may pass.
    let store = Arc::new(SharedStore::kong());
    let options = WorkerOptions::new(format!(r#"{{"minute": {limit}, "namespace": "bench"}}"#))
        .store(Arc::clone(&store))
        .clock(Arc::new(ManualClock::default()));
    let workers = start_workers(filter, &options, threads)
        .context(|| format!("starting {threads} workers"))?;

    let per_thread = requests / threads;
    let barrier = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = workers
        .into_iter()
        .enumerate()
        .map(|(index, mut worker)| {
            let barrier = Arc::clone(&barrier);
            let address = match keys {
                Keys::One => "10.0.0.1".to_owned(),
                Keys::Distinct => format!("10.0.1.{index}"),
            };
            std::thread::spawn(move || -> std::result::Result<Counts, String> {
                let request = Request::get("/ml-model/health").source_address(&address);
                let mut upstream = |_: &local_gateway::UpstreamRequest| UpstreamResponse::ok();
                let mut counts = Counts {
                    admitted: 0,
                    other: 0,
                };
                barrier.wait();
                for _ in 0..per_thread {
                    let exchange = worker
                        .run(request.clone(), &mut upstream)
                        .map_err(|error| format!("thread {index}: {error}"))?;
                    match exchange.status {
                        200 => counts.admitted += 1,
                        429 => {}
                        _ => counts.other += 1,
                    }
                }
                Ok(counts)
            })
        })
        .collect();

    barrier.wait();
    let started = Instant::now();
    let mut per_thread_counts = Vec::with_capacity(threads);
    for handle in handles {
        let counts = handle
            .join()
            .map_err(|_| Error::new("a contention thread panicked"))?
            .map_err(Error::new)?;
        per_thread_counts.push(counts);
    }
    let seconds = started.elapsed().as_secs_f64();

    let admitted = match keys {
        Keys::One => vec![per_thread_counts.iter().map(|counts| counts.admitted).sum()],
        Keys::Distinct => per_thread_counts
            .iter()
            .map(|counts| counts.admitted)
            .collect(),
    };
    Ok(RunResult {
        requests_per_second: (per_thread * threads) as f64 / seconds,
        cas_mismatches: store.stats().cas_mismatches,
        admitted,
        other: per_thread_counts.iter().map(|counts| counts.other).sum(),
    })
}

/// Measures every thread count with one key and with distinct keys.
pub fn run(filter: &FilterModule, settings: Settings) -> Result<Table> {
    let setups: Vec<(Keys, usize)> = [Keys::One, Keys::Distinct]
        .into_iter()
        .flat_map(|keys| THREADS.into_iter().map(move |threads| (keys, threads)))
        .collect();

    // Runs interleave the setups, so other work on the machine spreads over
    // all of them.
    let mut results: Vec<Vec<RunResult>> = setups.iter().map(|_| Vec::new()).collect();
    for _ in 0..settings.runs {
        for (index, (keys, threads)) in setups.iter().enumerate() {
            results[index].push(run_once(filter, *keys, *threads, settings.requests)?);
        }
    }

    let mut table = Table::new(
        "Contention: worker threads sharing one store",
        &[
            "keys",
            "threads",
            "requests/s (median)",
            "IQR",
            "ratio to 1 thread (median)",
            "ratio IQR",
            "CAS mismatches per request",
            "admitted per key / limit",
            "check",
        ],
    );
    let rates_of = |runs: &[RunResult]| -> Vec<f64> {
        runs.iter().map(|run| run.requests_per_second).collect()
    };
    for ((keys, threads), runs) in setups.iter().zip(&results) {
        let rates = rates_of(runs);
        // The ratio pairs each run with the 1-thread run of the same round
        // and the same keys.
        let single_thread = setups
            .iter()
            .position(|setup| *setup == (*keys, 1))
            .map(|index| rates_of(&results[index]))
            .unwrap_or_default();
        let ratios = paired_ratios(&rates, &single_thread);
        let limit = limit_per_key(*keys, *threads, settings.requests) as u64;
        let mismatches: u64 = runs.iter().map(|run| run.cas_mismatches).sum();
        let sent = (settings.requests / threads * threads * runs.len()) as f64;

        let admitted: Vec<u64> = runs.iter().flat_map(|run| run.admitted.clone()).collect();
        let other: u64 = runs.iter().map(|run| run.other).sum();
        let smallest = admitted.iter().copied().min().unwrap_or(0);
        let largest = admitted.iter().copied().max().unwrap_or(0);
        let admitted_text = if smallest == largest {
            format!("{} / {}", thousands(smallest), thousands(limit))
        } else {
            format!(
                "{} to {} / {}",
                thousands(smallest),
                thousands(largest),
                thousands(limit)
            )
        };
        let check = if smallest == limit && largest == limit && other == 0 {
            "✓".to_owned()
        } else if other > 0 {
            format!("FAIL: {other} responses neither 200 nor 429")
        } else {
            "FAIL".to_owned()
        };

        table.row(vec![
            match keys {
                Keys::One => "one key".to_owned(),
                Keys::Distinct => "distinct keys".to_owned(),
            },
            threads.to_string(),
            thousands(median(&rates).round() as u64),
            format!("{}%", fixed(iqr_percent(&rates), 0)),
            fixed(median(&ratios), 2),
            format!(
                "{}–{}",
                fixed(quantile(&ratios, 0.25), 2),
                fixed(quantile(&ratios, 0.75), 2)
            ),
            fixed(mismatches as f64 / sent, 4),
            admitted_text,
            check,
        ]);
    }
    table.note(format!(
        "Each run sends {} requests split evenly over the threads, with one guest per thread \
         and one `SharedStore::kong()` for all; medians and interquartile ranges of {} runs, \
         with each ratio taken within one round. Config \
         `{{\"minute\": LIMIT, \"namespace\": \"bench\"}}` with a fixed clock, where LIMIT is half \
         the requests that reach each key, so half are admitted and half limited.",
        thousands(settings.requests as u64),
        settings.runs
    ));
    table.note(
        "The check passes when every key admitted exactly its limit in every run: \
         a lost update would admit more, and a request that failed open on exhausted \
         CAS retries would too.",
    );
    table.note(format!(
        "This machine has {} cores, so the speed-up over 1 thread cannot pass about that \
         number; more threads than cores take turns on them.",
        std::thread::available_parallelism().map_or(0, usize::from)
    ));
    Ok(table)
}
