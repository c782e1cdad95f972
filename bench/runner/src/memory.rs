//! Memory: the size of one counter in shared data and of a store that
//! contains the counters of many clients.

use std::sync::Arc;

use local_gateway::gateway::DEFAULT_SHM_ENTRIES;
use local_gateway::store::ENTRY_OVERHEAD_BYTES;
use local_gateway::{
    FilterModule, ManualClock, Request, SharedStore, UpstreamResponse, Worker, WorkerOptions,
};
use sliding_window_rate_limit::counter::Counter;

use crate::error::{Context, Result};
use crate::table::{thousands, Table};

/// The zone the filter writes to by default (its `shm_zone` setting).
const ZONE: &str = "rate_limits";

/// Bytes in Kong's default zone size used in the docs, `12m`.
const TWELVE_MIB: usize = 12 * 1024 * 1024;

const WINDOW_NAMES: [&str; 4] = ["second", "minute", "hour", "day"];

/// How many distinct clients the store section sends.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Distinct client addresses, one request each.
    pub clients: u32,
    /// The capacity of the small zone, in entries.
    pub small_zone_entries: usize,
}

/// Returns a config with the first `windows` of second, minute, hour and
/// day, each with a limit of 1,000.
fn config(windows: usize, namespace: bool) -> String {
    let mut fields: Vec<String> = WINDOW_NAMES[..windows]
        .iter()
        .map(|name| format!(r#""{name}": 1000"#))
        .collect();
    if namespace {
        fields.push(r#""namespace": "bench""#.to_owned());
    }
    format!("{{{}}}", fields.join(", "))
}

fn start(filter: &FilterModule, config: &str, store: &Arc<SharedStore>) -> Result<Worker> {
    // Kong serves route and service ids as UUIDs; the filter puts them in
    // the key when the config has no namespace.
    let options = WorkerOptions::new(config)
        .store(Arc::clone(store))
        .clock(Arc::new(ManualClock::default()))
        .property("kong.route_id", "8f3e1a52-6c1d-4b5e-9d0a-2f7c4e9b1a63")
        .property("kong.service_id", "c2b7d9e4-1f8a-4c3d-a6e5-7b0f9d2c8e14");
    Worker::start(filter, options).context(|| format!("starting the filter with config {config}"))
}

/// Runs one request from 10.0.0.1 into an empty store and returns the
/// store's key length and estimated bytes.
fn one_counter(filter: &FilterModule, config: &str) -> Result<(usize, usize)> {
    let store = Arc::new(SharedStore::kong());
    let mut worker = start(filter, config, &store)?;
    run(&mut worker, "10.0.0.1")?;
    let key_bytes = store.keys().first().map_or(0, String::len);
    Ok((key_bytes, store.approx_bytes()))
}

/// Returns the client address of client `index`: 10.0.0.0 and up.
fn client_address(index: u32) -> String {
    let [_, b, c, d] = index.to_be_bytes();
    format!("10.{b}.{c}.{d}")
}

fn run(worker: &mut Worker, address: &str) -> Result<u16> {
    let mut upstream = |_: &local_gateway::UpstreamRequest| UpstreamResponse::ok();
    let exchange = worker
        .run(
            Request::get("/ml-model/health").source_address(address),
            &mut upstream,
        )
        .context(|| format!("running a request from {address}"))?;
    Ok(exchange.status)
}

/// Measures the bytes of one counter for one to four windows.
pub fn per_key(filter: &FilterModule) -> Result<Table> {
    let mut table = Table::new(
        "Memory: one counter in shared data",
        &[
            "windows",
            "value bytes (`Counter::encoded_len`)",
            "key bytes, namespace",
            "key bytes, route and service scope",
            "Kong estimate per entry (`approx_bytes`)",
        ],
    );
    for windows in 1..=4 {
        let (namespaced_key_bytes, bytes) = one_counter(filter, &config(windows, true))?;
        let (scoped_key_bytes, _) = one_counter(filter, &config(windows, false))?;
        table.row(vec![
            format!("{windows} ({})", WINDOW_NAMES[..windows].join(", ")),
            Counter::encoded_len(windows).to_string(),
            namespaced_key_bytes.to_string(),
            scoped_key_bytes.to_string(),
            thousands(bytes as u64),
        ]);
    }
    table.note(format!(
        "The estimate is `SharedStore::approx_bytes`: {ENTRY_OVERHEAD_BYTES} bytes per entry, the \
         test store's estimate of Kong's per-entry cost after slab rounding, plus the value \
         rounded up to 8 bytes. It is not a measurement of Kong, and it leaves out the key, \
         which Kong also stores."
    ));
    table.note(
        "Keys are for client 10.0.0.1, with `\"namespace\": \"bench\"` or with the default \
         scope, which puts the route and service ids (two UUIDs) in the key.",
    );
    Ok(table)
}

/// Sends one request from each of `settings.clients` distinct clients into
/// stores with and without a capacity, and reports entries, evictions and
/// bytes.
pub fn many_clients(filter: &FilterModule, settings: Settings) -> Result<Table> {
    let variants = [
        ("no capacity limit".to_owned(), usize::MAX),
        (
            format!(
                "zone of {} entries (about Kong's 12m)",
                thousands(DEFAULT_SHM_ENTRIES as u64)
            ),
            DEFAULT_SHM_ENTRIES,
        ),
        (
            format!(
                "zone of {} entries",
                thousands(settings.small_zone_entries as u64)
            ),
            settings.small_zone_entries,
        ),
    ];
    let mut table = Table::new(
        &format!(
            "Memory: {} distinct clients, one request each, 1 window",
            thousands(u64::from(settings.clients))
        ),
        &[
            "store",
            "entries",
            "evictions",
            "estimated bytes",
            "bytes per entry",
            "admitted",
        ],
    );
    for (label, capacity) in variants {
        let store = Arc::new(SharedStore::kong().with_zone(ZONE, capacity));
        let mut worker = start(filter, &config(1, true), &store)?;
        let mut admitted = 0u64;
        for client in 0..settings.clients {
            if run(&mut worker, &client_address(client))? == 200 {
                admitted += 1;
            }
        }
        let entries = store.len();
        let bytes = store.approx_bytes();
        table.row(vec![
            label,
            thousands(entries as u64),
            thousands(store.stats().evictions),
            thousands(bytes as u64),
            thousands((bytes / entries.max(1)) as u64),
            thousands(admitted),
        ]);
    }
    let per_entry = ENTRY_OVERHEAD_BYTES + Counter::encoded_len(1).next_multiple_of(8);
    table.note(format!(
        "At the estimate of {per_entry} bytes per one-window counter, a 12m zone \
         ({} bytes) holds about {} clients; the gateway's default of {} entries assumes \
         256 bytes each. Past the capacity the least recently used counter is evicted, \
         which resets that client's budget.",
        thousands(TWELVE_MIB as u64),
        thousands((TWELVE_MIB / per_entry) as u64),
        thousands(DEFAULT_SHM_ENTRIES as u64)
    ));
    table.note(format!(
        "Config `{}`; the zone is `{ZONE}`, the filter's default `shm_zone`.",
        config(1, true)
    ));
    Ok(table)
}
