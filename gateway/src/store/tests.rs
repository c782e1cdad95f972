use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use proxy_wasm_host::abi::v0_2_1::{ContextId, GuestId};

use super::*;

fn call() -> Invocation {
    Invocation::new(GuestId::next(), ContextId::try_from(1).unwrap())
}

fn read(store: &SharedStore, key: &str) -> Result<(Vec<u8>, u32), Status> {
    store
        .get_shared_data(call(), b"vm", key.as_bytes())
        .map(|value| (value.bytes, value.cas.get()))
}

fn write(store: &SharedStore, key: &str, value: &str, cas: Option<u32>) -> Result<(), Status> {
    store.set_shared_data(call(), b"vm", key.as_bytes(), value.as_bytes(), cas)
}

/// Two ASCII keys with the same CRC32 (IEEE), found by a search over short
/// keys of the form `rl/<n>`.
fn colliding_keys() -> (String, String) {
    let mut seen: HashMap<u32, String> = HashMap::new();
    for n in 0_u64.. {
        let key = format!("rl/{n}");
        let crc = crc32fast::hash(key.as_bytes());
        if let Some(first) = seen.insert(crc, key.clone()) {
            return (first, key);
        }
    }
    unreachable!("the search over u64 keys finds a collision long before it ends")
}

#[test]
fn kong_new_entry_starts_at_cas_one() {
    let store = SharedStore::kong();

    write(&store, "a", "1", None).unwrap();

    assert_eq!(read(&store, "a"), Ok((b"1".to_vec(), 1)));
}

#[test]
fn kong_cas_grows_by_one_per_write() {
    let store = SharedStore::kong();
    write(&store, "a", "1", None).unwrap();

    write(&store, "a", "2", Some(1)).unwrap();
    write(&store, "a", "3", Some(2)).unwrap();

    assert_eq!(read(&store, "a"), Ok((b"3".to_vec(), 3)));
}

#[test]
fn kong_write_without_cas_to_existing_key_mismatches() {
    let store = SharedStore::kong();
    write(&store, "a", "1", None).unwrap();

    let result = write(&store, "a", "2", None);

    assert_eq!(result, Err(Status::CasMismatch));
    assert_eq!(read(&store, "a"), Ok((b"1".to_vec(), 1)));
    assert_eq!(store.stats().cas_mismatches, 1);
}

#[test]
fn kong_write_with_cas_to_absent_key_mismatches() {
    let store = SharedStore::kong();

    let result = write(&store, "a", "1", Some(1));

    assert_eq!(result, Err(Status::CasMismatch));
    assert!(store.is_empty());
}

#[test]
fn kong_write_with_stale_cas_mismatches() {
    let store = SharedStore::kong();
    write(&store, "a", "1", None).unwrap();
    write(&store, "a", "2", Some(1)).unwrap();

    let result = write(&store, "a", "3", Some(1));

    assert_eq!(result, Err(Status::CasMismatch));
    assert_eq!(read(&store, "a"), Ok((b"2".to_vec(), 2)));
}

#[test]
fn kong_read_of_absent_key_is_not_found() {
    let store = SharedStore::kong();

    assert_eq!(read(&store, "missing"), Err(Status::NotFound));
    assert_eq!(store.stats().reads, 1);
    assert_eq!(store.stats().read_misses, 1);
}

#[test]
fn kong_keys_with_equal_crc32_share_one_entry() {
    let (first, second) = colliding_keys();
    assert_ne!(first, second);
    let store = SharedStore::kong();
    write(&store, &first, "from first", None).unwrap();

    let absent_write = write(&store, &second, "from second", None);

    assert_eq!(absent_write, Err(Status::CasMismatch));
    assert_eq!(read(&store, &second), Ok((b"from first".to_vec(), 1)));
    write(&store, &second, "from second", Some(1)).unwrap();
    assert_eq!(read(&store, &first), Ok((b"from second".to_vec(), 2)));
    assert_eq!(store.len(), 1);
    assert_eq!(store.keys(), vec![first]);
}

#[test]
fn envoy_keys_with_equal_crc32_stay_apart() {
    let (first, second) = colliding_keys();
    let store = SharedStore::envoy();

    write(&store, &first, "1", None).unwrap();
    write(&store, &second, "2", None).unwrap();

    assert_eq!(store.len(), 2);
    assert_eq!(read(&store, &first), Ok((b"1".to_vec(), 1)));
    assert_eq!(read(&store, &second), Ok((b"2".to_vec(), 1)));
}

#[test]
fn kong_key_goes_to_its_named_zone() {
    let store = SharedStore::kong().with_zone("limits", 10);

    write(&store, "limits/a", "1", None).unwrap();
    write(&store, "other/b", "1", None).unwrap();
    write(&store, "plain", "1", None).unwrap();

    assert_eq!(store.zone_len("limits"), Some(1));
    assert_eq!(store.zone_len(DEFAULT_ZONE), Some(2));
}

#[test]
fn kong_key_without_zone_fails() {
    let store = SharedStore::kong()
        .without_default_zone()
        .with_zone("limits", 10);

    let write_result = write(&store, "other/a", "1", None);
    let read_result = read(&store, "other/a");

    assert_eq!(write_result, Err(Status::InternalFailure));
    assert_eq!(read_result, Err(Status::InternalFailure));
    assert_eq!(store.stats().failed_calls, 2);
    let failures = store.failures();
    assert_eq!(failures.len(), 2);
    assert_eq!(failures[0].operation, Operation::Write);
    assert_eq!(failures[0].key, "other/a");
    assert_eq!(failures[0].reason, FailureReason::NoZone);
    assert_eq!(failures[1].operation, Operation::Read);
}

#[test]
fn kong_full_zone_evicts_least_recently_used() {
    let store = SharedStore::kong().with_zone("z", 2);
    write(&store, "z/a", "1", None).unwrap();
    write(&store, "z/b", "1", None).unwrap();
    // Reading a makes b the least recently used entry.
    read(&store, "z/a").unwrap();

    write(&store, "z/c", "1", None).unwrap();

    assert_eq!(store.keys(), vec!["z/a".to_owned(), "z/c".to_owned()]);
    assert_eq!(store.stats().evictions, 1);
}

#[test]
fn kong_write_counts_as_use_for_eviction() {
    let store = SharedStore::kong().with_zone("z", 2);
    write(&store, "z/a", "1", None).unwrap();
    write(&store, "z/b", "1", None).unwrap();
    write(&store, "z/a", "2", Some(1)).unwrap();

    write(&store, "z/c", "1", None).unwrap();

    assert_eq!(store.keys(), vec!["z/a".to_owned(), "z/c".to_owned()]);
}

#[test]
fn kong_full_zone_without_eviction_fails_write() {
    let store = SharedStore::kong().with_zone_no_eviction("z", 1);
    write(&store, "z/a", "1", None).unwrap();

    let new_key = write(&store, "z/b", "1", None);
    let existing_key = write(&store, "z/a", "2", Some(1));

    assert_eq!(new_key, Err(Status::InternalFailure));
    assert_eq!(existing_key, Ok(()));
    assert_eq!(store.stats().evictions, 0);
    let failures = store.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(
        failures[0].reason,
        FailureReason::ZoneFull {
            zone: "z".to_owned()
        }
    );
}

#[test]
fn kong_zero_capacity_zone_fails_writes() {
    let store = SharedStore::kong().with_zone("z", 0);

    assert_eq!(
        write(&store, "z/a", "1", None),
        Err(Status::InternalFailure)
    );
}

#[test]
fn envoy_write_without_cas_overwrites() {
    let store = SharedStore::envoy();
    write(&store, "a", "1", None).unwrap();

    write(&store, "a", "2", None).unwrap();

    assert_eq!(read(&store, "a"), Ok((b"2".to_vec(), 2)));
}

#[test]
fn envoy_write_with_cas_to_absent_key_succeeds() {
    let store = SharedStore::envoy();

    write(&store, "a", "1", Some(7)).unwrap();

    assert_eq!(read(&store, "a"), Ok((b"1".to_vec(), 1)));
}

#[test]
fn envoy_write_with_wrong_cas_mismatches() {
    let store = SharedStore::envoy();
    write(&store, "a", "1", None).unwrap();

    assert_eq!(write(&store, "a", "2", Some(5)), Err(Status::CasMismatch));
    assert_eq!(write(&store, "a", "2", Some(1)), Ok(()));
}

#[test]
fn envoy_ignores_zone_declarations() {
    let store = SharedStore::envoy().with_zone_no_eviction("z", 0);

    write(&store, "z/a", "1", None).unwrap();

    assert_eq!(store.zone_len("z"), None);
    assert_eq!(store.len(), 1);
}

#[test]
fn fail_reads_answers_internal_failure() {
    let store = SharedStore::kong();
    write(&store, "a", "1", None).unwrap();

    store.fail_reads(true);
    let failed = read(&store, "a");
    store.fail_reads(false);
    let recovered = read(&store, "a");

    assert_eq!(failed, Err(Status::InternalFailure));
    assert_eq!(recovered, Ok((b"1".to_vec(), 1)));
    assert_eq!(
        store.failures()[0].reason,
        FailureReason::InjectedReadFailure
    );
}

#[test]
fn fail_writes_answers_internal_failure() {
    let store = SharedStore::kong();

    store.fail_writes(true);
    let failed = write(&store, "a", "1", None);

    assert_eq!(failed, Err(Status::InternalFailure));
    assert!(store.is_empty());
    assert_eq!(store.stats().failed_calls, 1);
    assert_eq!(
        store.failures()[0].reason,
        FailureReason::InjectedWriteFailure
    );
}

#[test]
fn before_next_write_runs_once_before_the_write() {
    let store = SharedStore::kong();
    write(&store, "a", "1", None).unwrap();
    let (_, cas) = read(&store, "a").unwrap();
    store.before_next_write(Box::new(|store: &SharedStore| {
        store.put("a", "competitor").unwrap();
    }));

    let guest_write = write(&store, "a", "guest", Some(cas));
    let next_write = write(&store, "a", "guest again", Some(2));

    assert_eq!(guest_write, Err(Status::CasMismatch));
    assert_eq!(next_write, Ok(()));
    assert_eq!(store.get("a"), Some((b"guest again".to_vec(), 3)));
}

#[test]
fn before_next_write_replaces_earlier_hook() {
    let store = SharedStore::kong();
    let first_ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&first_ran);
    store.before_next_write(Box::new(move |_: &SharedStore| {
        flag.store(true, Ordering::SeqCst);
    }));
    store.before_next_write(Box::new(|_: &SharedStore| {}));

    write(&store, "a", "1", None).unwrap();

    assert!(!first_ran.load(Ordering::SeqCst));
}

#[test]
fn put_bumps_cas_and_is_not_counted() {
    let store = SharedStore::kong();

    let first = store.put("a", "1").unwrap();
    let second = store.put("a", "2").unwrap();

    assert_eq!((first, second), (1, 2));
    assert_eq!(store.stats(), StoreStats::default());
}

#[test]
fn put_without_a_zone_fails() {
    let store = SharedStore::kong().without_default_zone();

    assert_eq!(store.put("a", "1"), Err(Status::InternalFailure));
}

#[test]
fn evict_removes_entry_and_counts() {
    let store = SharedStore::kong();
    store.put("a", "1").unwrap();

    assert!(store.evict("a"));
    assert!(!store.evict("a"));
    assert_eq!(store.get("a"), None);
    assert_eq!(store.stats().evictions, 1);
}

#[test]
fn get_does_not_count_as_use() {
    let store = SharedStore::kong().with_zone("z", 2);
    write(&store, "z/a", "1", None).unwrap();
    write(&store, "z/b", "1", None).unwrap();
    let _ = store.get("z/a");

    write(&store, "z/c", "1", None).unwrap();

    assert_eq!(store.keys(), vec!["z/b".to_owned(), "z/c".to_owned()]);
}

#[test]
fn approx_bytes_counts_overhead_and_rounded_value() {
    let store = SharedStore::kong();
    store.put("a", [0_u8; 10]).unwrap();
    store.put("b", []).unwrap();

    assert_eq!(store.approx_bytes(), 256 + 16 + 256);
}

#[test]
fn stats_count_reads_and_writes() {
    let store = SharedStore::kong();
    write(&store, "a", "1", None).unwrap();
    read(&store, "a").unwrap();
    let _ = read(&store, "b");

    let stats = store.stats();

    assert_eq!(stats.writes, 1);
    assert_eq!(stats.reads, 2);
    assert_eq!(stats.read_misses, 1);
}

#[test]
fn counter_metric_increments_and_reads_back() {
    let store = SharedStore::kong();
    let id = store
        .define_metric(call(), b"vm", MetricType::Counter, b"requests")
        .unwrap();

    store.increment_metric(call(), id, 3).unwrap();
    store.increment_metric(call(), id, 2).unwrap();

    assert_eq!(store.get_metric(call(), id), Ok(5));
    assert_eq!(store.metric("requests"), Some(5));
    assert_eq!(
        store.increment_metric(call(), id, -1),
        Err(Status::BadArgument)
    );
}

#[test]
fn metric_defined_twice_keeps_one_id() {
    let store = SharedStore::kong();
    let first = store
        .define_metric(call(), b"vm", MetricType::Gauge, b"g")
        .unwrap();

    let second = store.define_metric(call(), b"vm", MetricType::Gauge, b"g");
    let other_kind = store.define_metric(call(), b"vm", MetricType::Counter, b"g");

    assert_eq!(second, Ok(first));
    assert_eq!(other_kind, Err(Status::BadArgument));
}

#[test]
fn store_serves_many_threads() {
    let store = Arc::new(SharedStore::kong());
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                for n in 0..100 {
                    write(&store, &format!("t{thread}/{n}"), "1", None).unwrap();
                }
            })
        })
        .collect();

    for thread in threads {
        thread.join().unwrap();
    }

    assert_eq!(store.len(), 400);
    assert_eq!(store.stats().writes, 400);
}
