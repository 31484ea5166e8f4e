//! Counter cells take memory only for the shards that write them (one test in its own binary, so
//! no other test allocates while it reads the process' resident memory).
#![cfg(all(target_os = "linux", not(loom)))]

use mmo_metrics::{MetricsManager, SeriesValue};

fn resident_bytes() -> u64 {
    mmo_metrics::system::process_stats()
        .expect("/proc/self readable")
        .resident_memory_bytes as u64
}

/// 256 shards × 8 B × 8192 series would be 16 MiB of cells if every shard's cells were resident;
/// written from one thread and then read back in full, only that thread's shard (64 KiB) may be.
#[test]
fn unwritten_shards_take_no_memory() {
    const SERIES: usize = 8192;
    const SHARDS: u32 = 256;
    let m = MetricsManager::builder().shards(SHARDS).series_limit(SERIES).build();
    m.register_counter("events_total", "Events.", &["id"]).unwrap();
    let ids: Vec<String> = (0..SERIES).map(|i| i.to_string()).collect();

    let before = resident_bytes();
    let handles: Vec<_> = ids.iter().map(|id| m.counter("events_total", &[id]).unwrap()).collect();
    for (i, h) in handles.iter().enumerate() {
        h.increment(i as u64 + 1);
    }
    let mut total = 0u64;
    m.visit(|family| {
        family.for_each_series(|_, value| {
            if let SeriesValue::Counter(v) = value {
                total += v;
            }
        })
    });
    let grown = resident_bytes().saturating_sub(before);

    let n = SERIES as u64;
    assert_eq!(total, n * (n + 1) / 2, "every increment is read back");
    let all_shards = SERIES as u64 * 8 * u64::from(SHARDS);
    // The series' index (labels, hash table, handles) is ~100 B a series, under 1 MiB here.
    assert!(
        grown < all_shards / 4,
        "resident memory grew by {grown} B for {SERIES} series at {SHARDS} shards written by one thread; \
         all shards' cells would be {all_shards} B"
    );
}
