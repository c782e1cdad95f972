//! A sliding-window rate-limiting filter for proxy-wasm hosts, built for Kong
//! Gateway's Wasm filter chains.
//!
//! # Vocabulary
//!
//! - **window**: a length of time, such as a minute, with a **limit**: the
//!   most cost admitted in any sliding window of that length. Request windows
//!   count one unit (or `cost`) per request; token windows count a request's
//!   token cost.
//! - **key**: the shared-data key of one client's **counter**, built from the
//!   zone, the scope, the client identifier and the window layout.
//! - **counter**: the counts of the current and previous aligned window of
//!   every configured window, in one fixed-width value.
//! - **remaining**: unit-cost requests that would still be admitted now.
//! - **reset**: seconds until the current aligned window ends.
//! - **retry-after**: seconds after which a limited request is admitted when
//!   no other traffic arrives.
//!
//! The limiter core ([`limiter`], [`counter`], [`store`]) makes no host calls:
//! time and costs are arguments and the store is a trait, so the same code runs
//! in unit tests, property tests and the filter.

pub mod body;
pub mod config;
pub mod counter;
pub mod headers;
pub mod key;
pub mod limiter;
pub mod store;

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    filter::start();
}}
