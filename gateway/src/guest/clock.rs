//! Clocks with the millisecond resolution of Kong's engine.

use std::sync::atomic::{AtomicU64, Ordering};

use proxy_wasm_host::abi::v0_2_1::{Clock, SystemClock};

const NANOS_PER_MILLI: u64 = 1_000_000;

/// A clock that moves only when a test moves it.
///
/// Both the real-time and the monotonic reading are the set milliseconds
/// times 1,000,000, because Kong's engine reads time in milliseconds.
///
/// # Examples
///
/// ```
/// use local_gateway::ManualClock;
///
/// let clock = ManualClock::new(1_000);
/// clock.advance_ms(250);
/// assert_eq!(clock.now_ms(), 1_250);
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// Creates a clock that reads `start_ms` milliseconds since the Unix epoch.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: AtomicU64::new(start_ms),
        }
    }

    /// Sets the time to `ms` milliseconds since the Unix epoch, which may be
    /// earlier than the current reading.
    pub fn set_ms(&self, ms: u64) {
        self.now_ms.store(ms, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Returns the time in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

impl Default for ManualClock {
    /// Creates a clock at 2023-11-14T22:13:20Z (1,700,000,000,000 ms), a
    /// fixed and plausible time.
    fn default() -> Self {
        Self::new(1_700_000_000_000)
    }
}

impl Clock for ManualClock {
    fn realtime_nanos(&self) -> u64 {
        self.now_ms().saturating_mul(NANOS_PER_MILLI)
    }

    fn monotonic_nanos(&self) -> u64 {
        self.now_ms().saturating_mul(NANOS_PER_MILLI)
    }
}

/// The system clock cut to whole milliseconds, as Kong's engine reads it.
#[derive(Debug, Default, Clone, Copy)]
pub struct MillisecondSystemClock;

impl Clock for MillisecondSystemClock {
    fn realtime_nanos(&self) -> u64 {
        let nanos = SystemClock.realtime_nanos();
        nanos - nanos % NANOS_PER_MILLI
    }

    fn monotonic_nanos(&self) -> u64 {
        let nanos = SystemClock.monotonic_nanos();
        nanos - nanos % NANOS_PER_MILLI
    }
}
