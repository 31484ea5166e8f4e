//! Counters saturate at `u64::MAX`, never wrap: a wrapped counter reads as a reset to Prometheus.
//! By name, through handles, over shards (exclusive and shared), through the facade's `absolute`,
//! through a `TickBatch`; histogram bucket counts too.

mod common;

use common::value;
use mmo_metrics::{MetricsManager, TickBatch};

const MAX: f64 = u64::MAX as f64;

#[test]
fn counter_by_name_saturates_at_u64_max() {
    let m = MetricsManager::new();
    m.register_counter("bytes", "", &[]).unwrap();
    m.increment_counter("bytes", u64::MAX, &[]).unwrap();
    m.increment_counter("bytes", 2, &[]).unwrap();
    assert_eq!(m.counter("bytes", &[]).unwrap().get(), u64::MAX);
    assert_eq!(value(&m, "bytes_total"), Some(MAX));
    // Stays there.
    m.counter("bytes", &[]).unwrap().increment(u64::MAX);
    assert_eq!(m.counter("bytes", &[]).unwrap().get(), u64::MAX);
}

#[test]
fn counter_sum_over_shards_saturates() {
    let m = MetricsManager::builder().shards(8).build();
    m.register_counter("bytes", "", &[]).unwrap();
    let h = m.counter("bytes", &[]).unwrap();
    h.increment(u64::MAX - 1);
    // Another live thread writes another shard: the sum saturates, it does not wrap.
    std::thread::scope(|s| {
        s.spawn(|| h.increment(5));
    });
    assert_eq!(h.get(), u64::MAX);
}

#[test]
fn counter_on_a_shared_shard_saturates() {
    // One shard: shared by every thread, written atomically.
    let m = MetricsManager::builder().shards(1).build();
    m.register_counter("bytes", "", &[]).unwrap();
    let h = m.counter("bytes", &[]).unwrap();
    h.increment(u64::MAX - 1);
    h.increment(3);
    assert_eq!(h.get(), u64::MAX);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| (0..1000).for_each(|_| h.increment(u64::MAX / 3)));
        }
    });
    assert_eq!(h.get(), u64::MAX);
}

#[test]
fn facade_absolute_then_increment_saturates() {
    let m = MetricsManager::new();
    metrics::with_local_recorder(&m.recorder(), || {
        metrics::counter!("mirrored").absolute(u64::MAX);
        metrics::counter!("mirrored").increment(1);
    });
    assert_eq!(m.counter("mirrored", &[]).unwrap().get(), u64::MAX);
    // set_float_counter on an integer counter is `absolute` too.
    m.set_float_counter("mirrored", 1e30, &[]).unwrap();
    assert_eq!(m.counter("mirrored", &[]).unwrap().get(), u64::MAX);
}

#[test]
fn tick_batch_counter_saturates() {
    let m = MetricsManager::new();
    m.register_counter("kills", "", &[]).unwrap();
    let h = m.counter("kills", &[]).unwrap();
    let mut tick = TickBatch::new();
    let c = tick.counter(&h);
    tick.add(c, u64::MAX);
    tick.add(c, 1);
    tick.flush();
    assert_eq!(h.get(), u64::MAX);
    tick.add(c, 7);
    tick.flush();
    assert_eq!(h.get(), u64::MAX);
}

#[test]
fn histogram_bucket_counts_saturate() {
    let m = MetricsManager::new();
    m.register_histogram("h", "", &[], &[1.0]).unwrap();
    let h = m.histogram("h", &[]).unwrap();
    h.record_many(0.5, u64::MAX);
    h.record(0.5);
    h.record(2.0);
    assert_eq!(value(&m, "h_bucket{le=\"1\"}"), Some(MAX));
    assert_eq!(value(&m, "h_bucket{le=\"+Inf\"}"), Some(MAX));
    assert_eq!(value(&m, "h_count"), Some(MAX));
}
