//! Shared data with the semantics of Kong's Wasm engine or of Envoy.
//!
//! One [`SharedStore`] in an `Arc` serves every guest of a test or of the
//! gateway, the way one shared memory zone serves every nginx worker.
//! It implements the shared-data and metric calls of
//! [`SharedServices`]. Shared queues stay unserved, so their calls return
//! `NOT_FOUND`.
//!
//! # Kong semantics ([`SharedStore::kong`])
//!
//! These follow ngx_wasm_module, the Wasm engine of Kong Gateway 3.4 to 3.10:
//!
//! - A key `zone/rest` goes to the zone named `zone` when one is declared,
//!   else to the `*` zone when that is declared. With neither, the call
//!   fails with `INTERNAL_FAILURE` and the store records a [`StoreFailure`];
//!   Kong traps the guest there instead.
//! - Keys are compared by the CRC32 (IEEE) of the whole key, so two keys with
//!   equal CRC32 share one entry, which keeps the text of the first key.
//! - A write without a CAS (the guest passed 0) requires the key to be
//!   absent. A write with a CAS succeeds only when the entry exists with that
//!   CAS. Every other write fails with `CAS_MISMATCH`.
//! - The CAS of a new entry is 1 and grows by one with each write.
//! - A zone holds at most its capacity of entries. A new entry in a full zone
//!   evicts the least recently used entry (reads and writes count as use),
//!   or, in a zone declared without eviction, fails with `INTERNAL_FAILURE`
//!   and is recorded (Kong traps there).
//!
//! Kong sizes zones in bytes, not entries. An entry costs roughly 256 bytes
//! after slab rounding, so a `12m` zone holds about 49,000 small entries.
//!
//! # Envoy semantics ([`SharedStore::envoy`])
//!
//! Keys are compared by their bytes, there are no zones and no capacity, a
//! write without a CAS always succeeds, and a write with a CAS must match when
//! the key exists (a write with a CAS to an absent key succeeds).
//!
//! Both semantics ignore the VM id, so every guest of one store shares one
//! namespace. Envoy separates shared data by VM id; give each plugin its own
//! store to get that.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard, PoisonError};

use proxy_wasm_host::abi::v0_2_1::types::{MetricType, Status};
use proxy_wasm_host::abi::v0_2_1::{Invocation, MetricId, SharedServices, SharedValue};

/// The name of Kong's default zone, which takes every key whose prefix names
/// no declared zone.
pub const DEFAULT_ZONE: &str = "*";

/// The capacity of the `*` zone that [`SharedStore::kong`] declares.
///
/// It is large enough that tests which do not test eviction never see one.
pub const DEFAULT_ZONE_ENTRIES: usize = 65_536;

/// The estimated bytes one entry costs in a Kong zone besides its value,
/// after slab rounding.
pub const ENTRY_OVERHEAD_BYTES: usize = 256;

/// The proxy whose shared-data rules a store follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Semantics {
    /// Kong's engine, ngx_wasm_module.
    Kong,
    /// Envoy.
    Envoy,
}

/// The policy of a full zone for a write of a new entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Evicts the least recently used entry.
    Lru,
    /// Fails the write.
    None,
}

/// Counters of the guest calls a store served.
///
/// The test controls ([`SharedStore::put`], [`SharedStore::get`] and the
/// others) are not counted, except that an eviction caused by `put` or
/// requested with [`SharedStore::evict`] counts as an eviction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Guest reads, found or not.
    pub reads: u64,
    /// Guest reads of a key that was absent.
    pub read_misses: u64,
    /// Guest writes that were applied.
    pub writes: u64,
    /// Guest writes rejected with `CAS_MISMATCH`.
    pub cas_mismatches: u64,
    /// Entries removed to make room, or with [`SharedStore::evict`].
    pub evictions: u64,
    /// Guest calls that returned `INTERNAL_FAILURE`.
    pub failed_calls: u64,
}

/// The shared-data call that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `proxy_get_shared_data`.
    Read,
    /// `proxy_set_shared_data`.
    Write,
}

/// The cause of an `INTERNAL_FAILURE` from a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// No zone matches the key and no `*` zone is declared; Kong traps here.
    NoZone,
    /// The zone is full and declared without eviction; Kong traps here.
    ZoneFull {
        /// The name of the full zone.
        zone: String,
    },
    /// A test asked for read failures with [`SharedStore::fail_reads`].
    InjectedReadFailure,
    /// A test asked for write failures with [`SharedStore::fail_writes`].
    InjectedWriteFailure,
}

/// One call for which a store returned `INTERNAL_FAILURE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    /// The call that failed.
    pub operation: Operation,
    /// The key, decoded as UTF-8 with replacement characters.
    pub key: String,
    /// The cause of the failure.
    pub reason: FailureReason,
}

/// A test hook that runs once before the next guest write.
pub type WriteHook = Box<dyn FnOnce(&SharedStore) + Send>;

/// Shared data, and simple metrics, for every guest that shares the same `Arc`.
///
/// See the [module documentation](self) for the rules of each semantics.
/// Every method takes `&self` and locks a mutex, so the store serves many
/// worker threads at once.
pub struct SharedStore {
    semantics: Semantics,
    state: Mutex<State>,
    next_write_hook: Mutex<Option<WriteHook>>,
}

struct State {
    zones: Vec<Zone>,
    /// A counter that orders uses for the least-recently-used eviction.
    use_counter: u64,
    stats: StoreStats,
    failures: Vec<StoreFailure>,
    fail_reads: bool,
    fail_writes: bool,
    metrics: Vec<Metric>,
}

struct Zone {
    name: String,
    capacity: usize,
    eviction: Eviction,
    /// Entries by identity: the CRC32 of the key for Kong, the key for Envoy.
    entries: HashMap<Vec<u8>, Entry>,
    /// Identities by their last use, oldest first.
    by_last_use: BTreeMap<u64, Vec<u8>>,
}

struct Entry {
    key: Vec<u8>,
    value: Vec<u8>,
    cas: NonZeroU32,
    last_use: u64,
}

struct Metric {
    name: Vec<u8>,
    kind: MetricType,
    value: u64,
}

/// The CAS comparison of one write.
#[derive(Clone, Copy)]
enum CasCheck {
    /// A guest write, with the CAS it passed (`None` for 0).
    Guest(Option<u32>),
    /// A test write that replaces whatever is there.
    Unchecked,
}

/// The reason a write was not applied.
enum WriteError {
    CasMismatch,
    ZoneFull(String),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn next_cas(cas: NonZeroU32) -> NonZeroU32 {
    NonZeroU32::new(cas.get().wrapping_add(1)).unwrap_or(NonZeroU32::MIN)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Zone {
    fn new(name: &str, capacity: usize, eviction: Eviction) -> Self {
        Self {
            name: name.to_owned(),
            capacity,
            eviction,
            entries: HashMap::new(),
            by_last_use: BTreeMap::new(),
        }
    }

    fn touch(&mut self, identity: &[u8], use_counter: u64) {
        if let Some(entry) = self.entries.get_mut(identity) {
            self.by_last_use.remove(&entry.last_use);
            entry.last_use = use_counter;
            self.by_last_use.insert(use_counter, identity.to_vec());
        }
    }

    fn remove(&mut self, identity: &[u8]) -> bool {
        match self.entries.remove(identity) {
            Some(entry) => {
                self.by_last_use.remove(&entry.last_use);
                true
            }
            None => false,
        }
    }

    /// Removes the least recently used entry, and returns false when the
    /// zone is empty.
    fn evict_oldest(&mut self) -> bool {
        match self.by_last_use.pop_first() {
            Some((_, identity)) => {
                self.entries.remove(&identity);
                true
            }
            None => false,
        }
    }
}

impl SharedStore {
    /// Creates a store with Kong's semantics and a `*` zone of
    /// [`DEFAULT_ZONE_ENTRIES`] entries that evicts the least recently used.
    pub fn kong() -> Self {
        Self::with_semantics(
            Semantics::Kong,
            vec![Zone::new(DEFAULT_ZONE, DEFAULT_ZONE_ENTRIES, Eviction::Lru)],
        )
    }

    /// Creates a store with Envoy's semantics: one namespace with no capacity.
    pub fn envoy() -> Self {
        Self::with_semantics(
            Semantics::Envoy,
            vec![Zone::new("", usize::MAX, Eviction::None)],
        )
    }

    fn with_semantics(semantics: Semantics, zones: Vec<Zone>) -> Self {
        Self {
            semantics,
            state: Mutex::new(State {
                zones,
                use_counter: 0,
                stats: StoreStats::default(),
                failures: Vec::new(),
                fail_reads: false,
                fail_writes: false,
                metrics: Vec::new(),
            }),
            next_write_hook: Mutex::new(None),
        }
    }

    /// Declares a zone that contains at most `capacity_entries` entries and
    /// evicts the least recently used one when full.
    ///
    /// A zone of the same name, `*` included, is replaced with its entries.
    /// An Envoy store has no zones, so there this changes nothing.
    #[must_use]
    pub fn with_zone(self, name: &str, capacity_entries: usize) -> Self {
        self.declare_zone(name, capacity_entries, Eviction::Lru)
    }

    /// Declares a zone that contains at most `capacity_entries` entries and
    /// fails a write of a new entry when full, like Kong's `eviction=none`.
    ///
    /// An Envoy store has no zones, so there this changes nothing.
    #[must_use]
    pub fn with_zone_no_eviction(self, name: &str, capacity_entries: usize) -> Self {
        self.declare_zone(name, capacity_entries, Eviction::None)
    }

    /// Removes the `*` zone, so a key whose prefix names no declared zone
    /// fails as it does in Kong with no default zone.
    #[must_use]
    pub fn without_default_zone(self) -> Self {
        if self.semantics == Semantics::Kong {
            lock(&self.state)
                .zones
                .retain(|zone| zone.name != DEFAULT_ZONE);
        }
        self
    }

    fn declare_zone(self, name: &str, capacity_entries: usize, eviction: Eviction) -> Self {
        if self.semantics == Semantics::Kong {
            let mut state = lock(&self.state);
            state.zones.retain(|zone| zone.name != name);
            state
                .zones
                .push(Zone::new(name, capacity_entries, eviction));
        }
        self
    }

    /// Returns the rules this store follows.
    pub fn semantics(&self) -> Semantics {
        self.semantics
    }

    /// Makes every later guest read fail with `INTERNAL_FAILURE`, or stops
    /// doing so.
    pub fn fail_reads(&self, fail: bool) {
        lock(&self.state).fail_reads = fail;
    }

    /// Makes every later guest write fail with `INTERNAL_FAILURE`, or stops
    /// doing so.
    pub fn fail_writes(&self, fail: bool) {
        lock(&self.state).fail_writes = fail;
    }

    /// Runs `hook` once, just before the next guest write is applied.
    ///
    /// The hook receives this store, so it can slip a competing write in
    /// between a guest's read and its write with [`SharedStore::put`].
    /// It runs without the store's lock held. A second call before the next
    /// write replaces the first hook.
    pub fn before_next_write(&self, hook: WriteHook) {
        *lock(&self.next_write_hook) = Some(hook);
    }

    /// Writes `value` under `key` the way a guest does, with no CAS check,
    /// and returns the new CAS.
    ///
    /// The key goes to its zone and may evict an entry, as a guest write
    /// does, but the write is not counted in [`SharedStore::stats`].
    ///
    /// # Errors
    ///
    /// Returns `Status::InternalFailure` when no zone takes the key or the
    /// zone is full and declared without eviction.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u32, Status> {
        let key = key.as_ref();
        let mut state = lock(&self.state);
        let zone = self
            .zone_index(&state, key)
            .ok_or(Status::InternalFailure)?;
        match self.apply_write(&mut state, zone, key, value.as_ref(), CasCheck::Unchecked) {
            Ok(cas) => Ok(cas.get()),
            Err(_) => Err(Status::InternalFailure),
        }
    }

    /// Removes the entry that `key` maps to, as an eviction would, and
    /// returns whether there was one.
    pub fn evict(&self, key: impl AsRef<[u8]>) -> bool {
        let key = key.as_ref();
        let mut state = lock(&self.state);
        let Some(zone) = self.zone_index(&state, key) else {
            return false;
        };
        let identity = self.identity(key);
        let removed = state.zones[zone].remove(&identity);
        if removed {
            state.stats.evictions += 1;
        }
        removed
    }

    /// Returns the value and CAS of the entry `key` maps to, without
    /// counting a use.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<(Vec<u8>, u32)> {
        let key = key.as_ref();
        let state = lock(&self.state);
        let zone = self.zone_index(&state, key)?;
        state.zones[zone]
            .entries
            .get(&self.identity(key))
            .map(|entry| (entry.value.clone(), entry.cas.get()))
    }

    /// Returns the key of every entry, decoded as UTF-8 with replacement
    /// characters, sorted.
    ///
    /// An entry shared by two keys with equal CRC32 appears once, under the
    /// key that created it.
    pub fn keys(&self) -> Vec<String> {
        let state = lock(&self.state);
        let mut keys: Vec<String> = state
            .zones
            .iter()
            .flat_map(|zone| zone.entries.values().map(|entry| lossy(&entry.key)))
            .collect();
        keys.sort();
        keys
    }

    /// Returns the number of entries in all zones.
    pub fn len(&self) -> usize {
        lock(&self.state)
            .zones
            .iter()
            .map(|zone| zone.entries.len())
            .sum()
    }

    /// Returns whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Returns the number of entries in the zone `name`, or `None` when no
    /// such zone is declared.
    pub fn zone_len(&self, name: &str) -> Option<usize> {
        lock(&self.state)
            .zones
            .iter()
            .find(|zone| zone.name == name)
            .map(|zone| zone.entries.len())
    }

    /// Returns the counters of the guest calls so far.
    pub fn stats(&self) -> StoreStats {
        lock(&self.state).stats
    }

    /// Returns every call that got `INTERNAL_FAILURE` so far, oldest first.
    pub fn failures(&self) -> Vec<StoreFailure> {
        lock(&self.state).failures.clone()
    }

    /// Estimates the bytes a Kong zone would use for these entries:
    /// [`ENTRY_OVERHEAD_BYTES`] per entry plus its value rounded up to 8
    /// bytes.
    ///
    /// It is an estimate of slab use, not a measurement.
    pub fn approx_bytes(&self) -> usize {
        lock(&self.state)
            .zones
            .iter()
            .flat_map(|zone| zone.entries.values())
            .map(|entry| ENTRY_OVERHEAD_BYTES + entry.value.len().next_multiple_of(8))
            .sum()
    }

    /// Returns the value of the metric `name`, or `None` when no guest
    /// defined it or it is a histogram.
    pub fn metric(&self, name: &str) -> Option<u64> {
        lock(&self.state)
            .metrics
            .iter()
            .find(|metric| metric.name == name.as_bytes() && metric.kind != MetricType::Histogram)
            .map(|metric| metric.value)
    }

    /// Returns the bytes that identify an entry: the CRC32 of the key for
    /// Kong, the key itself for Envoy.
    fn identity(&self, key: &[u8]) -> Vec<u8> {
        match self.semantics {
            Semantics::Kong => crc32fast::hash(key).to_be_bytes().to_vec(),
            Semantics::Envoy => key.to_vec(),
        }
    }

    /// Returns the zone that takes `key`, or `None` when no zone does.
    fn zone_index(&self, state: &State, key: &[u8]) -> Option<usize> {
        if self.semantics == Semantics::Envoy {
            return Some(0);
        }
        let named = key.iter().position(|byte| *byte == b'/').and_then(|slash| {
            let prefix = &key[..slash];
            state
                .zones
                .iter()
                .position(|zone| zone.name.as_bytes() == prefix)
        });
        named.or_else(|| {
            state
                .zones
                .iter()
                .position(|zone| zone.name == DEFAULT_ZONE)
        })
    }

    fn record_failure(
        state: &mut State,
        operation: Operation,
        key: &[u8],
        reason: FailureReason,
    ) -> Status {
        state.stats.failed_calls += 1;
        state.failures.push(StoreFailure {
            operation,
            key: lossy(key),
            reason,
        });
        Status::InternalFailure
    }

    /// Applies one write to zone `zone` and returns the new CAS.
    fn apply_write(
        &self,
        state: &mut State,
        zone: usize,
        key: &[u8],
        value: &[u8],
        check: CasCheck,
    ) -> Result<NonZeroU32, WriteError> {
        let identity = self.identity(key);
        state.use_counter += 1;
        let use_counter = state.use_counter;
        let semantics = self.semantics;
        let zone = &mut state.zones[zone];

        if let Some(entry) = zone.entries.get_mut(&identity) {
            let matches = match (check, semantics) {
                (CasCheck::Unchecked, _) | (CasCheck::Guest(None), Semantics::Envoy) => true,
                (CasCheck::Guest(None), Semantics::Kong) => false,
                (CasCheck::Guest(Some(cas)), _) => cas == entry.cas.get(),
            };
            if !matches {
                return Err(WriteError::CasMismatch);
            }
            entry.value = value.to_vec();
            entry.cas = next_cas(entry.cas);
            let cas = entry.cas;
            zone.touch(&identity, use_counter);
            return Ok(cas);
        }

        if let (CasCheck::Guest(Some(_)), Semantics::Kong) = (check, semantics) {
            return Err(WriteError::CasMismatch);
        }
        let mut evicted = false;
        if zone.entries.len() >= zone.capacity {
            if zone.eviction == Eviction::None || !zone.evict_oldest() {
                return Err(WriteError::ZoneFull(zone.name.clone()));
            }
            evicted = true;
        }
        zone.entries.insert(
            identity.clone(),
            Entry {
                key: key.to_vec(),
                value: value.to_vec(),
                cas: NonZeroU32::MIN,
                last_use: use_counter,
            },
        );
        zone.by_last_use.insert(use_counter, identity);
        if evicted {
            state.stats.evictions += 1;
        }
        Ok(NonZeroU32::MIN)
    }
}

impl Default for SharedStore {
    fn default() -> Self {
        Self::kong()
    }
}

impl fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.state);
        let zones: Vec<(&str, usize, usize)> = state
            .zones
            .iter()
            .map(|zone| (zone.name.as_str(), zone.entries.len(), zone.capacity))
            .collect();
        f.debug_struct("SharedStore")
            .field("semantics", &self.semantics)
            .field("zones (name, entries, capacity)", &zones)
            .field("stats", &state.stats)
            .finish_non_exhaustive()
    }
}

impl SharedServices for SharedStore {
    fn get_shared_data(
        &self,
        _call: Invocation,
        _vm_id: &[u8],
        key: &[u8],
    ) -> Result<SharedValue, Status> {
        let mut state = lock(&self.state);
        if state.fail_reads {
            let reason = FailureReason::InjectedReadFailure;
            return Err(Self::record_failure(
                &mut state,
                Operation::Read,
                key,
                reason,
            ));
        }
        let Some(zone) = self.zone_index(&state, key) else {
            let reason = FailureReason::NoZone;
            return Err(Self::record_failure(
                &mut state,
                Operation::Read,
                key,
                reason,
            ));
        };
        state.stats.reads += 1;
        state.use_counter += 1;
        let use_counter = state.use_counter;
        let identity = self.identity(key);
        let zone = &mut state.zones[zone];
        let found = zone
            .entries
            .get(&identity)
            .map(|entry| SharedValue::new(entry.value.clone(), entry.cas));
        match found {
            Some(value) => {
                zone.touch(&identity, use_counter);
                Ok(value)
            }
            None => {
                state.stats.read_misses += 1;
                Err(Status::NotFound)
            }
        }
    }

    fn set_shared_data(
        &self,
        _call: Invocation,
        _vm_id: &[u8],
        key: &[u8],
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), Status> {
        // The hook is taken and run before the state is locked, because it
        // calls back into the store.
        let hook = lock(&self.next_write_hook).take();
        if let Some(hook) = hook {
            hook(self);
        }

        let mut state = lock(&self.state);
        if state.fail_writes {
            let reason = FailureReason::InjectedWriteFailure;
            return Err(Self::record_failure(
                &mut state,
                Operation::Write,
                key,
                reason,
            ));
        }
        let Some(zone) = self.zone_index(&state, key) else {
            let reason = FailureReason::NoZone;
            return Err(Self::record_failure(
                &mut state,
                Operation::Write,
                key,
                reason,
            ));
        };
        match self.apply_write(&mut state, zone, key, value, CasCheck::Guest(cas)) {
            Ok(_) => {
                state.stats.writes += 1;
                Ok(())
            }
            Err(WriteError::CasMismatch) => {
                state.stats.cas_mismatches += 1;
                Err(Status::CasMismatch)
            }
            Err(WriteError::ZoneFull(zone)) => {
                let reason = FailureReason::ZoneFull { zone };
                Err(Self::record_failure(
                    &mut state,
                    Operation::Write,
                    key,
                    reason,
                ))
            }
        }
    }

    fn define_metric(
        &self,
        _call: Invocation,
        _vm_id: &[u8],
        kind: MetricType,
        name: &[u8],
    ) -> Result<MetricId, Status> {
        let mut state = lock(&self.state);
        let index = match state.metrics.iter().position(|metric| metric.name == name) {
            Some(index) if state.metrics[index].kind != kind => return Err(Status::BadArgument),
            Some(index) => index,
            None => {
                state.metrics.push(Metric {
                    name: name.to_vec(),
                    kind,
                    value: 0,
                });
                state.metrics.len() - 1
            }
        };
        let id = u32::try_from(index + 1).map_err(|_| Status::InternalFailure)?;
        MetricId::try_from(id).map_err(|_| Status::InternalFailure)
    }

    fn record_metric(&self, _call: Invocation, metric: MetricId, value: u64) -> Result<(), Status> {
        let mut state = lock(&self.state);
        let metric = metric_mut(&mut state, metric)?;
        if metric.kind != MetricType::Histogram {
            metric.value = value;
        }
        Ok(())
    }

    fn increment_metric(
        &self,
        _call: Invocation,
        metric: MetricId,
        delta: i64,
    ) -> Result<(), Status> {
        let mut state = lock(&self.state);
        let metric = metric_mut(&mut state, metric)?;
        match metric.kind {
            MetricType::Counter if delta < 0 => Err(Status::BadArgument),
            MetricType::Histogram => Err(Status::BadArgument),
            _ => {
                metric.value = metric.value.saturating_add_signed(delta);
                Ok(())
            }
        }
    }

    fn get_metric(&self, _call: Invocation, metric: MetricId) -> Result<u64, Status> {
        let mut state = lock(&self.state);
        let metric = metric_mut(&mut state, metric)?;
        match metric.kind {
            MetricType::Histogram => Err(Status::BadArgument),
            _ => Ok(metric.value),
        }
    }
}

fn metric_mut(state: &mut State, metric: MetricId) -> Result<&mut Metric, Status> {
    let index = usize::try_from(metric.get()).map_err(|_| Status::NotFound)?;
    index
        .checked_sub(1)
        .and_then(|index| state.metrics.get_mut(index))
        .ok_or(Status::NotFound)
}

#[cfg(test)]
mod tests;
