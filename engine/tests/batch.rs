//! TickBatch: nothing lost at flush, buffer overflow, drop, and thread exit.

use std::cell::RefCell;

use mmo_metrics::{MetricsManager, TickBatch, BATCH_HISTOGRAM_BUFFER};

fn value(m: &MetricsManager, sample: &str) -> f64 {
    mmo_metrics_exporter::encode_text(m)
        .lines()
        .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {sample}"))
        .parse()
        .unwrap()
}

fn manager() -> MetricsManager {
    let m = MetricsManager::new();
    m.register_counter("hits_total", "", &[]).unwrap();
    m.register_histogram("dmg", "", &[], &[1.0, 10.0]).unwrap();
    m
}

#[test]
fn flush_publishes_exact_totals_and_overflow_flushes_early() {
    let m = manager();
    let mut b = TickBatch::new();
    let hits = b.counter(&m.counter("hits_total", &[]).unwrap());
    let dmg = b.histogram(&m.histogram("dmg", &[]).unwrap());
    let n = BATCH_HISTOGRAM_BUFFER * 3 + 7;
    for i in 0..n {
        b.add(hits, 2);
        b.record(dmg, (i % 20) as f64);
    }
    // Full buffers were bucketed already; the tail waits for the flush.
    assert_eq!(value(&m, "dmg_count"), (BATCH_HISTOGRAM_BUFFER * 3) as f64);
    assert_eq!(value(&m, "hits_total"), 0.0);
    b.flush();
    assert_eq!(value(&m, "hits_total"), (2 * n) as f64);
    assert_eq!(value(&m, "dmg_count"), n as f64);
    let le1 = (0..n).filter(|i| i % 20 <= 1).count() as f64;
    let le10 = (0..n).filter(|i| i % 20 <= 10).count() as f64;
    assert_eq!(value(&m, "dmg_bucket{le=\"1\"}"), le1);
    assert_eq!(value(&m, "dmg_bucket{le=\"10\"}"), le10);
    assert_eq!(value(&m, "dmg_sum"), (0..n).map(|i| (i % 20) as f64).sum::<f64>());
    b.flush(); // nothing pending: no change
    assert_eq!(value(&m, "hits_total"), (2 * n) as f64);
}

#[test]
fn drop_and_thread_exit_flush() {
    let m = manager();
    {
        let mut b = TickBatch::new();
        let hits = b.counter(&m.counter("hits_total", &[]).unwrap());
        b.add(hits, 5);
    }
    assert_eq!(value(&m, "hits_total"), 5.0);

    thread_local! {
        static BATCH: RefCell<Option<(TickBatch, mmo_metrics::BatchCounter)>> = const { RefCell::new(None) };
    }
    let handle = m.counter("hits_total", &[]).unwrap();
    std::thread::spawn(move || {
        BATCH.with(|b| {
            let mut batch = TickBatch::new();
            let c = batch.counter(&handle);
            *b.borrow_mut() = Some((batch, c));
        });
        for _ in 0..1000 {
            BATCH.with(|b| {
                let mut b = b.borrow_mut();
                let (batch, c) = b.as_mut().unwrap();
                batch.add(*c, 1);
            });
        }
        // No flush: the thread-local batch flushes when the thread exits.
    })
    .join()
    .unwrap();
    assert_eq!(value(&m, "hits_total"), 1005.0);
}

#[test]
#[should_panic(expected = "used with a TickBatch other than the one that created it")]
fn a_histogram_of_another_batch_is_refused() {
    let m = manager();
    let mut a = TickBatch::new();
    let mut b = TickBatch::new();
    let dmg = a.histogram(&m.histogram("dmg", &[]).unwrap());
    b.histogram(&m.histogram("dmg", &[]).unwrap());
    b.record(dmg, 1.0);
}

#[test]
#[should_panic(expected = "used with a TickBatch other than the one that created it")]
fn a_counter_of_a_dropped_batch_is_refused() {
    let m = manager();
    let hits = TickBatch::new().counter(&m.counter("hits_total", &[]).unwrap());
    let mut b = TickBatch::new();
    b.counter(&m.counter("hits_total", &[]).unwrap());
    b.add(hits, 1);
}
