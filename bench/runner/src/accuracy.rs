//! Accuracy: the limiter core's sliding-window estimate against an exact
//! sliding log, on arrival traces generated from a fixed seed.

use std::collections::{HashMap, VecDeque};

use sliding_window_rate_limit::counter::Counter;
use sliding_window_rate_limit::limiter::{self, Decision, Window};

use crate::table::{fixed, thousands, Table};

/// Window length of every trace: one second, as in `"second": 100`.
const WINDOW_MS: u64 = 1_000;

/// Limit of every trace, per client and window.
const LIMIT: u64 = 100;

/// The start of every trace, in milliseconds since the Unix epoch. It is not
/// on a window boundary, so no trace starts with a fresh window.
const START_MS: u64 = 1_700_000_000_137;

/// The seed of every trace.
const SEED: u64 = 0x5eed_2026;

/// How long the traces run.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Windows covered by the single-client traces.
    pub windows: u64,
    /// Windows covered by the many-client trace.
    pub many_client_windows: u64,
    /// Clients of the many-client trace.
    pub clients: u32,
}

/// The splitmix64 generator: a 64-bit counter passed through a mixing
/// function. It is small, fast and reproducible from its seed, which is all
/// the traces need.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Returns a uniform float in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Returns an exponential sample with mean `mean`.
    fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.next_f64()).ln()
    }

    /// Returns a Pareto sample with minimum 1 and tail index `alpha`.
    fn pareto(&mut self, alpha: f64) -> f64 {
        (1.0 - self.next_f64()).powf(-1.0 / alpha)
    }
}

/// Arrivals of all clients, sorted by time.
struct Trace {
    label: String,
    clients: u32,
    /// Offered load, in multiples of the limit, averaged over the clients.
    offered: f64,
    /// (time in ms, client) pairs.
    arrivals: Vec<(u64, u32)>,
}

/// Appends Poisson arrivals for `client` at `per_window` requests per window
/// between `from_ms` and `to_ms`.
fn poisson(
    random: &mut SplitMix64,
    arrivals: &mut Vec<(u64, u32)>,
    client: u32,
    per_window: f64,
    from_ms: f64,
    to_ms: f64,
) {
    let mean_gap = WINDOW_MS as f64 / per_window;
    let mut time = from_ms + random.exponential(mean_gap);
    while time < to_ms {
        arrivals.push((START_MS + time as u64, client));
        time += random.exponential(mean_gap);
    }
}

fn steady(label: &str, load: f64, windows: u64, seed: u64) -> Trace {
    let mut random = SplitMix64(seed);
    let mut arrivals = Vec::new();
    let end = (windows * WINDOW_MS) as f64;
    poisson(&mut random, &mut arrivals, 0, load * LIMIT as f64, 0.0, end);
    Trace {
        label: label.to_owned(),
        clients: 1,
        offered: load,
        arrivals,
    }
}

/// On periods at 3× the limit, of 500 ms on average, alternate with silent
/// periods of 1,000 ms on average (both exponential), so the mean load is
/// about the limit.
fn bursty(windows: u64, seed: u64) -> Trace {
    let mut random = SplitMix64(seed);
    let mut arrivals = Vec::new();
    let end = (windows * WINDOW_MS) as f64;
    let mut time = 0.0;
    while time < end {
        let on_end = (time + random.exponential(500.0)).min(end);
        poisson(
            &mut random,
            &mut arrivals,
            0,
            3.0 * LIMIT as f64,
            time,
            on_end,
        );
        time = on_end + random.exponential(1_000.0);
    }
    let offered = arrivals.len() as f64 / (windows * LIMIT) as f64;
    Trace {
        label: "bursty on/off (3× the limit when on)".to_owned(),
        clients: 1,
        offered,
        arrivals,
    }
}

/// Clients whose rates follow a Pareto distribution with tail index 1.2:
/// most send a tenth of the limit or a little more, a few send many times
/// it (capped at 8×).
fn heavy_tailed(clients: u32, windows: u64, seed: u64) -> Trace {
    let mut random = SplitMix64(seed);
    let mut arrivals = Vec::new();
    let end = (windows * WINDOW_MS) as f64;
    let mut total_load = 0.0;
    for client in 0..clients {
        let load = (0.1 * random.pareto(1.2)).min(8.0);
        total_load += load;
        poisson(
            &mut random,
            &mut arrivals,
            client,
            load * LIMIT as f64,
            0.0,
            end,
        );
    }
    arrivals.sort_unstable();
    Trace {
        label: format!("{clients} clients, Pareto rates (tail index 1.2)"),
        clients,
        offered: total_load / f64::from(clients),
        arrivals,
    }
}

/// The exact reference: the times of the admitted requests of the last
/// window, per client.
struct SlidingLog {
    admitted: VecDeque<u64>,
}

impl SlidingLog {
    /// Admits a request at `now_ms` when the requests admitted in
    /// `(now_ms − WINDOW_MS, now_ms]`, plus this one, stay within the limit.
    fn admit(&mut self, now_ms: u64) -> bool {
        while self
            .admitted
            .front()
            .is_some_and(|time| *time + WINDOW_MS <= now_ms)
        {
            self.admitted.pop_front();
        }
        if self.admitted.len() as u64 + 1 > LIMIT {
            return false;
        }
        self.admitted.push_back(now_ms);
        true
    }
}

/// Returns the maximum number of `times` that fall in one window
/// `(t − WINDOW_MS, t]`; `times` must be sorted.
fn max_in_any_window(times: &[u64]) -> usize {
    let mut first = 0;
    let mut max_count = 0;
    for (last, time) in times.iter().enumerate() {
        while times[first] + WINDOW_MS <= *time {
            first += 1;
        }
        max_count = max_count.max(last + 1 - first);
    }
    max_count
}

/// Comparison of the limiter's decisions with the log's on one trace.
struct Comparison {
    requests: u64,
    admitted_by_log: u64,
    admitted_by_limiter: u64,
    /// The limiter admitted, the log did not.
    extra: u64,
    /// The log admitted, the limiter did not.
    missing: u64,
    /// Mean of |limiter − log| admitted per client and aligned window, as a
    /// fraction of the limit, over windows with at least one request.
    mean_window_difference: f64,
    /// The signed difference of largest magnitude, in requests.
    worst_window_difference: i64,
    /// Maximum requests the limiter admitted for one client in any sliding
    /// window.
    limiter_max_in_window: usize,
    /// The same for the log, which never exceeds the limit.
    log_max_in_window: usize,
}

fn compare(trace: &Trace) -> Comparison {
    let windows = [Window {
        length_ms: WINDOW_MS,
        limit: LIMIT,
    }];
    let clients = trace.clients as usize;
    let mut counters: Vec<Counter> = (0..clients)
        .map(|client| Counter::for_windows(&windows, client as u64))
        .collect();
    let mut logs: Vec<SlidingLog> = (0..clients)
        .map(|_| SlidingLog {
            admitted: VecDeque::new(),
        })
        .collect();
    let mut limiter_times: Vec<Vec<u64>> = vec![Vec::new(); clients];
    let mut log_times: Vec<Vec<u64>> = vec![Vec::new(); clients];
    // (client, aligned window) → (admitted by the limiter, admitted by the log)
    let mut per_window: HashMap<(u32, u64), (i64, i64)> = HashMap::new();

    let mut comparison = Comparison {
        requests: trace.arrivals.len() as u64,
        admitted_by_log: 0,
        admitted_by_limiter: 0,
        extra: 0,
        missing: 0,
        mean_window_difference: 0.0,
        worst_window_difference: 0,
        limiter_max_in_window: 0,
        log_max_in_window: 0,
    };
    for &(time, client) in &trace.arrivals {
        let index = client as usize;
        let (decision, _) = limiter::check(&windows, &mut counters[index], time, &[1]);
        let by_limiter = matches!(decision, Decision::Admitted { .. });
        let by_log = logs[index].admit(time);
        let counts = per_window
            .entry((client, time / WINDOW_MS))
            .or_insert((0, 0));
        if by_limiter {
            comparison.admitted_by_limiter += 1;
            limiter_times[index].push(time);
            counts.0 += 1;
        }
        if by_log {
            comparison.admitted_by_log += 1;
            log_times[index].push(time);
            counts.1 += 1;
        }
        match (by_limiter, by_log) {
            (true, false) => comparison.extra += 1,
            (false, true) => comparison.missing += 1,
            _ => {}
        }
    }

    let differences: Vec<i64> = per_window
        .values()
        .map(|(limiter, log)| limiter - log)
        .collect();
    let absolute_sum: i64 = differences.iter().map(|difference| difference.abs()).sum();
    comparison.mean_window_difference =
        absolute_sum as f64 / differences.len().max(1) as f64 / LIMIT as f64;
    comparison.worst_window_difference = differences
        .iter()
        .copied()
        .max_by_key(|difference| difference.abs())
        .unwrap_or(0);
    comparison.limiter_max_in_window = limiter_times
        .iter()
        .map(|times| max_in_any_window(times))
        .max()
        .unwrap_or(0);
    comparison.log_max_in_window = log_times
        .iter()
        .map(|times| max_in_any_window(times))
        .max()
        .unwrap_or(0);
    comparison
}

fn percent(part: u64, whole: u64) -> String {
    format!("{}%", fixed(part as f64 / whole.max(1) as f64 * 100.0, 2))
}

/// Replays every trace and returns the table.
pub fn run(settings: Settings) -> Table {
    let traces = [
        steady(
            "steady, below the limit (0.8×)",
            0.8,
            settings.windows,
            SEED,
        ),
        steady("steady, at the limit (1×)", 1.0, settings.windows, SEED + 1),
        steady(
            "steady, above the limit (2×)",
            2.0,
            settings.windows,
            SEED + 2,
        ),
        bursty(settings.windows, SEED + 3),
        heavy_tailed(settings.clients, settings.many_client_windows, SEED + 4),
    ];
    let mut table = Table::new(
        "Accuracy: limiter core against an exact sliding log",
        &[
            "trace",
            "requests",
            "offered load",
            "admitted, exact log",
            "admitted, limiter",
            "decided differently",
            "limiter admits, log limits",
            "limiter limits, log admits",
            "mean abs. difference per client window",
            "worst difference per client window",
            "max admitted in any sliding 1 s, limiter",
        ],
    );
    let mut log_over_limit = false;
    for trace in &traces {
        let comparison = compare(trace);
        log_over_limit |= comparison.log_max_in_window as u64 > LIMIT;
        table.row(vec![
            trace.label.clone(),
            thousands(comparison.requests),
            format!("{}×", fixed(trace.offered, 2)),
            thousands(comparison.admitted_by_log),
            thousands(comparison.admitted_by_limiter),
            percent(comparison.extra + comparison.missing, comparison.requests),
            percent(comparison.extra, comparison.requests),
            percent(comparison.missing, comparison.requests),
            format!(
                "{}% of limit",
                fixed(comparison.mean_window_difference * 100.0, 2)
            ),
            format!(
                "{:+} ({:+.0}% of limit)",
                comparison.worst_window_difference,
                comparison.worst_window_difference as f64 / LIMIT as f64 * 100.0
            ),
            format!(
                "{} ({}×)",
                comparison.limiter_max_in_window,
                fixed(comparison.limiter_max_in_window as f64 / LIMIT as f64, 2)
            ),
        ]);
    }
    table.note(format!(
        "Limit {LIMIT} requests per {WINDOW_MS} ms window per client (`\"second\": {LIMIT}`). \
         The exact log admits a request when the requests it admitted in the last \
         {WINDOW_MS} ms, (t − {WINDOW_MS}, t], plus this one, are at most {LIMIT}. The limiter is \
         `limiter::check` with one counter per client. Both see the same arrivals, with \
         millisecond timestamps, and each keeps its own state, so one early difference can \
         lead to later ones."
    ));
    table.note(format!(
        "Traces are Poisson arrivals from splitmix64 seeded with {SEED:#x} (plus the trace's \
         position): {} windows for the single-client traces, {} windows for the many-client \
         trace. Offered load is in multiples of the limit, averaged over clients.",
        settings.windows, settings.many_client_windows
    ));
    table.note(
        "Client windows are the aligned 1 s windows of each client with at least one request; \
         a difference is limiter minus log in requests admitted there. The last column is the \
         maximum the limiter admitted for one client in any sliding 1 s, which the exact log \
         keeps at or below the limit.",
    );
    if log_over_limit {
        table.note("FAIL: the exact log admitted more than the limit in some window.");
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_log_admits_limit_per_window() {
        let mut log = SlidingLog {
            admitted: VecDeque::new(),
        };
        let admitted = (0..LIMIT + 5).filter(|_| log.admit(10)).count() as u64;
        assert_eq!(admitted, LIMIT);
        assert!(!log.admit(10 + WINDOW_MS - 1));
        assert!(log.admit(10 + WINDOW_MS));
    }

    #[test]
    fn max_in_any_window_uses_half_open_window() {
        assert_eq!(max_in_any_window(&[0, 999, 1000, 1999]), 2);
        assert_eq!(max_in_any_window(&[0, 1, 2, 5000]), 3);
        assert_eq!(max_in_any_window(&[]), 0);
    }

    #[test]
    fn splitmix64_matches_reference_output() {
        // The published first output of splitmix64 seeded with 0.
        assert_eq!(SplitMix64(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    }
}
