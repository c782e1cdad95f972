//! Check-and-count against a shared store through compare-and-swap.
//!
//! All windows of one key live in one value, so a single CAS write makes the
//! check and the increment of every window one atomic step across workers.

use crate::counter::{Counter, DecodeError};
use crate::limiter::{self, Decision, Reservation, Window};

/// Maximum CAS attempts for one request before it is treated as a store fault.
pub const MAX_ATTEMPTS: u32 = 32;

/// Extra keys tried when the key's entry belongs to another key with the
/// same checksum (Kong's engine compares keys by CRC32 alone).
pub const MAX_PROBES: usize = 2;

/// A failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The entry changed since it was read (or, with CAS 0, it exists).
    CasMismatch,
    /// The store failed with this proxy-wasm status.
    Failed(u32),
}

/// The store failure that kept a request from being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFault {
    /// A read failed with this proxy-wasm status.
    ReadFailed(u32),
    /// A write failed with this proxy-wasm status.
    WriteFailed(u32),
    /// Every attempt lost a race with another worker.
    RetriesExhausted,
    /// The key and every probe key hold live counters of other keys.
    KeyTaken,
}

impl std::fmt::Display for StoreFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreFault::ReadFailed(status) => write!(f, "shared data read failed with status {status}"),
            StoreFault::WriteFailed(status) => write!(f, "shared data write failed with status {status}"),
            StoreFault::RetriesExhausted => {
                write!(f, "compare-and-swap lost {MAX_ATTEMPTS} times in a row")
            }
            StoreFault::KeyTaken => write!(
                f,
                "the key and {MAX_PROBES} probe keys hold counters of other keys with the same CRC32"
            ),
        }
    }
}

/// Shared data as the limiter needs it.
pub trait CounterStore {
    /// Returns the value and its CAS, or `None` when the key is absent.
    fn get(&mut self, key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, u32>;
    /// Writes `value` if the entry's CAS is still `cas`; a `cas` of 0 means
    /// the key was absent when read.
    fn set(&mut self, key: &[u8], value: &[u8], cas: u32) -> Result<(), WriteError>;
}

/// The result of checking one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Admitted or limited, with every window's usage.
    pub decision: Decision,
    /// The aligned windows the cost was counted in; not counted when limited.
    pub reservation: Reservation,
    /// The key of the counter, after probing.
    pub slot: Vec<u8>,
    /// CAS mismatches before the write went through.
    pub retries: u32,
}

fn probe_key(key: &[u8], probe: usize) -> Vec<u8> {
    let mut slot = key.to_vec();
    if probe > 0 {
        slot.push(b'#');
        slot.extend_from_slice(probe.to_string().as_bytes());
    }
    slot
}

/// Reads the counter at `slot`, or `None` when the slot contains a live counter
/// of another key. An absent, expired or malformed value yields a new counter.
fn read_slot(
    store: &mut dyn CounterStore,
    slot: &[u8],
    fingerprint: u64,
    windows: &[Window],
    now_ms: u64,
) -> Result<Option<(Counter, u32)>, StoreFault> {
    let Some((bytes, cas)) = store.get(slot).map_err(StoreFault::ReadFailed)? else {
        return Ok(Some((Counter::for_windows(windows, fingerprint), 0)));
    };
    match Counter::decode(&bytes, fingerprint, windows.len()) {
        Ok(counter) => Ok(Some((counter, cas))),
        Err(DecodeError::ForeignKey) if !Counter::is_expired(&bytes, windows, now_ms) => Ok(None),
        Err(_) => Ok(Some((Counter::for_windows(windows, fingerprint), cas))),
    }
}

/// Checks a request for `key`, with its cost in each window, and counts it
/// when admitted.
pub fn check_and_count(
    store: &mut dyn CounterStore,
    key: &[u8],
    fingerprint: u64,
    windows: &[Window],
    now_ms: u64,
    costs: &[u64],
) -> Result<Checked, StoreFault> {
    let mut retries = 0;
    let mut probe = 0;
    while retries < MAX_ATTEMPTS {
        let slot = probe_key(key, probe);
        let Some((mut counter, cas)) = read_slot(store, &slot, fingerprint, windows, now_ms)?
        else {
            probe += 1;
            if probe > MAX_PROBES {
                return Err(StoreFault::KeyTaken);
            }
            continue;
        };
        let (decision, reservation) = limiter::check(windows, &mut counter, now_ms, costs);
        if matches!(decision, Decision::Limited { .. }) {
            return Ok(Checked {
                decision,
                reservation,
                slot,
                retries,
            });
        }
        match store.set(&slot, &counter.encode(), cas) {
            Ok(()) => {
                return Ok(Checked {
                    decision,
                    reservation,
                    slot,
                    retries,
                })
            }
            Err(WriteError::CasMismatch) => retries += 1,
            Err(WriteError::Failed(status)) => return Err(StoreFault::WriteFailed(status)),
        }
    }
    Err(StoreFault::RetriesExhausted)
}

/// Adjusts a counted request by one delta per window once its real cost is
/// known.
///
/// A missing or foreign entry means the counter was evicted or taken over,
/// so there is nothing left to adjust.
pub fn settle(
    store: &mut dyn CounterStore,
    slot: &[u8],
    fingerprint: u64,
    windows: &[Window],
    reservation: &Reservation,
    now_ms: u64,
    deltas: &[i64],
) -> Result<(), StoreFault> {
    if deltas.iter().all(|delta| *delta == 0) {
        return Ok(());
    }
    for _ in 0..MAX_ATTEMPTS {
        let Some((bytes, cas)) = store.get(slot).map_err(StoreFault::ReadFailed)? else {
            return Ok(());
        };
        let Ok(mut counter) = Counter::decode(&bytes, fingerprint, windows.len()) else {
            return Ok(());
        };
        limiter::settle(windows, &mut counter, reservation, now_ms, deltas);
        match store.set(slot, &counter.encode(), cas) {
            Ok(()) => return Ok(()),
            Err(WriteError::CasMismatch) => continue,
            Err(WriteError::Failed(status)) => return Err(StoreFault::WriteFailed(status)),
        }
    }
    Err(StoreFault::RetriesExhausted)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hashbrown::HashMap;

    /// A store with Kong's CAS rules: CAS 0 writes only an absent key.
    #[derive(Default)]
    pub(crate) struct MemoryStore {
        pub entries: HashMap<Vec<u8>, (Vec<u8>, u32)>,
        pub fail_writes: bool,
        /// Writes that land between the next read and its write.
        pub interpose: Vec<(Vec<u8>, Vec<u8>)>,
    }

    impl CounterStore for MemoryStore {
        fn get(&mut self, key: &[u8]) -> Result<Option<(Vec<u8>, u32)>, u32> {
            let found = self.entries.get(key).cloned();
            for (key, value) in self.interpose.drain(..) {
                let cas = self.entries.get(&key).map_or(0, |e| e.1);
                self.entries.insert(key, (value, cas + 1));
            }
            Ok(found)
        }

        fn set(&mut self, key: &[u8], value: &[u8], cas: u32) -> Result<(), WriteError> {
            if self.fail_writes {
                return Err(WriteError::Failed(10));
            }
            let current = self.entries.get(key).map_or(0, |e| e.1);
            if current != cas {
                return Err(WriteError::CasMismatch);
            }
            self.entries.insert(key.to_vec(), (value.to_vec(), cas + 1));
            Ok(())
        }
    }

    fn windows() -> [Window; 1] {
        [Window {
            length_ms: 1000,
            limit: 2,
        }]
    }

    #[test]
    fn counts_across_calls() {
        let mut store = MemoryStore::default();
        for _ in 0..2 {
            let checked = check_and_count(&mut store, b"k", 1, &windows(), 0, &[1]).unwrap();
            assert!(matches!(checked.decision, Decision::Admitted { .. }));
        }
        let checked = check_and_count(&mut store, b"k", 1, &windows(), 0, &[1]).unwrap();
        assert!(matches!(checked.decision, Decision::Limited { .. }));
    }

    #[test]
    fn competing_write_is_retried_not_lost() {
        let mut store = MemoryStore::default();
        check_and_count(&mut store, b"k", 1, &windows(), 0, &[1]).unwrap();
        // Another worker counts one more between our read and our write.
        let mut other = Counter::for_windows(&windows(), 1);
        limiter::check(&windows(), &mut other, 0, &[2]);
        store.interpose.push((b"k".to_vec(), other.encode()));
        let checked = check_and_count(&mut store, b"k", 1, &windows(), 0, &[1]).unwrap();
        assert_eq!(checked.retries, 1);
        assert!(matches!(checked.decision, Decision::Limited { .. }));
    }

    #[test]
    fn foreign_live_entry_moves_to_probe_key() {
        let mut store = MemoryStore::default();
        check_and_count(&mut store, b"k", 111, &windows(), 0, &[2]).unwrap();
        let checked = check_and_count(&mut store, b"k", 222, &windows(), 0, &[1]).unwrap();
        assert_eq!(checked.slot, b"k#1".to_vec());
        assert!(matches!(checked.decision, Decision::Admitted { .. }));
        // The first key's counter is untouched.
        let first = check_and_count(&mut store, b"k", 111, &windows(), 0, &[1]).unwrap();
        assert!(matches!(first.decision, Decision::Limited { .. }));
    }

    #[test]
    fn foreign_expired_entry_is_taken_over() {
        let mut store = MemoryStore::default();
        check_and_count(&mut store, b"k", 111, &windows(), 0, &[2]).unwrap();
        let checked = check_and_count(&mut store, b"k", 222, &windows(), 5000, &[1]).unwrap();
        assert_eq!(checked.slot, b"k".to_vec());
    }

    #[test]
    fn every_probe_taken_is_a_fault() {
        let mut store = MemoryStore::default();
        for (i, slot) in ["k", "k#1", "k#2"].iter().enumerate() {
            let fingerprint = 10 + i as u64;
            let mut counter = Counter::for_windows(&windows(), fingerprint);
            limiter::check(&windows(), &mut counter, 0, &[1]);
            store
                .entries
                .insert(slot.as_bytes().to_vec(), (counter.encode(), 1));
        }
        let fault = check_and_count(&mut store, b"k", 99, &windows(), 0, &[1]).unwrap_err();
        assert_eq!(fault, StoreFault::KeyTaken);
    }

    #[test]
    fn write_failure_is_a_fault() {
        let mut store = MemoryStore {
            fail_writes: true,
            ..MemoryStore::default()
        };
        let fault = check_and_count(&mut store, b"k", 1, &windows(), 0, &[1]).unwrap_err();
        assert_eq!(fault, StoreFault::WriteFailed(10));
    }

    #[test]
    fn settle_adjusts_stored_counter() {
        let mut store = MemoryStore::default();
        let checked = check_and_count(&mut store, b"k", 1, &windows(), 0, &[2]).unwrap();
        settle(
            &mut store,
            &checked.slot,
            1,
            &windows(),
            &checked.reservation,
            10,
            &[-1],
        )
        .unwrap();
        let again = check_and_count(&mut store, b"k", 1, &windows(), 20, &[1]).unwrap();
        assert!(matches!(again.decision, Decision::Admitted { .. }));
    }
}
