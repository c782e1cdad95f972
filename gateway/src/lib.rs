//! An in-process proxy-wasm host for testing filters, and a local gateway
//! built on it.
//!
//! - [`store`]: [`SharedStore`], shared data with the semantics of Kong's
//!   engine (zones, CRC32 keys, CAS rules, eviction) or of Envoy, plus test
//!   controls that inject failures and competing writes.
//! - [`guest`]: [`FilterModule`] compiles a `.wasm` file, a [`Worker`] runs it
//!   like one Kong worker's VM, and [`Request`], [`UpstreamResponse`] and
//!   [`Exchange`] describe one HTTP exchange.
//! - The `local-gateway` binary serves a Kong declarative config with these
//!   workers, for trying filters by hand.
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use local_gateway::{
//!     filter_wasm_path, FilterModule, ManualClock, Request, SharedStore, UpstreamResponse,
//!     Worker, WorkerOptions,
//! };
//!
//! # fn main() -> Result<(), local_gateway::Error> {
//! let module = FilterModule::load_cached(filter_wasm_path())?;
//! let store = Arc::new(SharedStore::kong());
//! let clock = Arc::new(ManualClock::default());
//! let options = WorkerOptions::new(r#"{"limit": 1, "window_secs": 60}"#)
//!     .store(Arc::clone(&store))
//!     .clock(clock.clone());
//! let mut worker = Worker::start(&module, options)?;
//!
//! let first = worker.run(Request::get("/"), &mut |_| UpstreamResponse::ok())?;
//! let second = worker.run(Request::get("/"), &mut |_| UpstreamResponse::ok())?;
//! println!("{} then {}", first.status, second.status);
//! # Ok(())
//! # }
//! ```
pub mod config;
mod error;
pub mod gateway;
pub mod guest;
pub mod store;

use std::path::PathBuf;

pub use error::Error;
pub use guest::{
    run_chain, start_workers, Exchange, FilterModule, HostFlavor, LogCapture, LogLine, ManualClock,
    MillisecondSystemClock, Request, UpstreamRequest, UpstreamResponse, Worker, WorkerOptions,
};
pub use proxy_wasm_host::abi::v0_2_1::types::{LogLevel, Status};
pub use proxy_wasm_host::abi::v0_2_1::Clock;
pub use store::{SharedStore, StoreStats};

/// Returns the path of the compiled rate-limit filter,
/// `<workspace root>/dist/sliding_window_rate_limit.wasm`, which
/// `./build.sh` writes.
pub fn filter_wasm_path() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/sliding_window_rate_limit.wasm"
    ))
}
