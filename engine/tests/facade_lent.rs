//! A thread with a large facade cache lends one counter handle per call instead of cloning the
//! series' `Arc` (see `CounterSlot` in `recorder.rs`). These tests keep that handle past the call
//! that returned it, move it to other threads, and keep it across cache resets, expiry and the end
//! of the thread that lent it: it must keep recording into the series it was returned for, and
//! keep that series alive.

use std::time::Duration;

use mmo_metrics::{MetricKind, MetricsManager, MetricsRecorder, SeriesValue};

/// The counter value of `name{k="<k>"}`, if the series exists.
fn value(m: &MetricsManager, name: &str, k: &str) -> Option<u64> {
    let mut out = None;
    m.visit(|f| {
        if f.name() != name {
            return;
        }
        f.for_each_series(|labels, v| {
            if labels.iter().any(|(_, v)| v == k) {
                if let SeriesValue::Counter(c) = v {
                    out = Some(c);
                }
            }
        });
    });
    out
}

/// Series past which this thread's cache lends (a table of 512 slots holds at most 384).
const LARGE: usize = 400;

/// Fills this thread's counter cache past [`LARGE`] series of `filler_total`.
fn fill(recorder: &MetricsRecorder) {
    metrics::with_local_recorder(recorder, || {
        for i in 0..LARGE {
            metrics::counter!("filler_total", "k" => i.to_string()).increment(1);
        }
    });
}

fn manager() -> MetricsManager {
    MetricsManager::builder()
        .idle_timeout([MetricKind::Counter], Duration::from_millis(20))
        .build()
}

#[test]
fn a_kept_handle_records_into_its_own_series_while_others_are_called() {
    let m = manager();
    let r = m.recorder();
    fill(&r);
    metrics::with_local_recorder(&r, || {
        metrics::counter!("lent_total", "k" => "kept").increment(0);
        for round in 0..3 {
            let kept = metrics::counter!("lent_total", "k" => "kept");
            for _ in 0..10 {
                metrics::counter!("lent_total", "k" => "other").increment(1);
                metrics::counter!("filler_total", "k" => "7").increment(1);
            }
            kept.increment(5);
            assert_eq!(value(&m, "lent", "kept"), Some(5 * (round + 1)));
            assert_eq!(value(&m, "lent", "other"), Some(10 * (round + 1)));
        }
        // Handles made and dropped one per call keep landing in their own series.
        for i in 0..1000u64 {
            metrics::counter!("lent_total", "k" => if i % 2 == 0 { "even" } else { "odd" }).increment(i);
        }
    });
    assert_eq!(value(&m, "lent", "even"), Some((0..1000).step_by(2).sum()));
    assert_eq!(value(&m, "lent", "odd"), Some((1..1000).step_by(2).sum()));
    assert_eq!(value(&m, "filler", "7"), Some(31));
}

#[test]
fn a_kept_handle_outlives_cache_resets_and_keeps_its_series_from_expiring() {
    let m = manager();
    let r = m.recorder();
    fill(&r);
    let kept = metrics::with_local_recorder(&r, || {
        // Resolved and cached first: the handle kept is the one a hit lends.
        metrics::counter!("lent_total", "k" => "kept").increment(0);
        let kept = metrics::counter!("lent_total", "k" => "kept");
        kept.increment(1);
        kept
    });
    for round in 0..5u64 {
        std::thread::sleep(Duration::from_millis(30));
        // A sweep lets every thread's cache go (a new epoch); the next facade call resets this
        // thread's table, dropping the entry the kept handle was lent from.
        m.expire_idle();
        metrics::with_local_recorder(&r, || {
            metrics::counter!("lent_total", "k" => format!("new{round}")).increment(1);
        });
        m.expire_idle();
        kept.increment(2);
        assert_eq!(value(&m, "lent", "kept"), Some(1 + 2 * (round + 1)), "round {round}");
    }
    drop(kept);
    std::thread::sleep(Duration::from_millis(30));
    m.expire_idle();
    assert_eq!(value(&m, "lent", "kept"), None, "let go of, it expires");
}

#[test]
fn a_kept_handle_records_from_other_threads_and_after_its_thread_ended() {
    let m = manager();
    let r = m.recorder();
    let kept = std::thread::scope(|s| {
        s.spawn(|| {
            fill(&r);
            metrics::with_local_recorder(&r, || {
                metrics::counter!("lent_total", "k" => "kept").increment(0);
                let kept = metrics::counter!("lent_total", "k" => "kept");
                kept.increment(1);
                kept
            })
        })
        .join()
        .unwrap()
    });
    // The thread that lent it has ended.
    kept.increment(1);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let kept = kept.clone();
            s.spawn(move || {
                for _ in 0..10_000 {
                    kept.increment(1);
                }
            });
        }
    });
    kept.increment(1);
    assert_eq!(value(&m, "lent", "kept"), Some(40_003));
    std::thread::sleep(Duration::from_millis(30));
    m.expire_idle();
    assert_eq!(value(&m, "lent", "kept"), Some(40_003), "held, it stays");
}
